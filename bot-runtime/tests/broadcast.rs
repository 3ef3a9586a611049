//! Broadcast in CI (issue #11; docs/ADMIN.md, "Broadcast"): 2,000 members on two bots, each
//! bot a real `bot-runtime serve` process and the producer a real `bot-runtime admin` process,
//! on Postgres + Redis, through the fake Telegram with its flood limits on. Every process is
//! stopped gracefully (SIGTERM) in the middle of one broadcast and started again: every member
//! gets it exactly once. Every process is killed (SIGKILL) in the middle of another: nobody is
//! skipped, and the copies beyond one that the fake saw are at most what the runtime reports
//! as possibly repeated (the sends in flight at the kill).
//!
//! The bots send 100 messages a second (the fake allows each bot as much), so a broadcast
//! takes about 10 s; the whole test about 45 s.

#[path = "../benches/common/mod.rs"]
mod common;

use std::time::Duration;

use common::broadcast::{BroadcastRun, Tally};

/// Members per bot.
const MEMBERS: i64 = 1_000;
/// Each bot's `perBotPerSecond`, and the fake's per-bot limit.
const RATE: u64 = 100;
/// How long any phase may take before the test gives up (not a timing target).
const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broadcast_to_2000_members_on_two_bots_reaches_each_once_across_a_graceful_restart_and_counts_what_a_kill_repeats() {
    let mut run = BroadcastRun::start(2, MEMBERS, RATE).await;

    // 1. A graceful restart of every process in the middle: nobody twice, nobody skipped.
    let ids = run.broadcast_to_all("<b>Graceful</b> news").await;
    run.wait_delivered(&ids, MEMBERS * 3 / 10, LIMIT).await;
    run.terminate_all();
    let middle = run.tally("Graceful news");
    assert!(middle.iter().all(|t| t.once > 0 && t.skipped > 0), "stopped in the middle: {middle:?}");
    run.start_processes().await;
    let settled = run.wait_settled(&ids, LIMIT).await;
    // Anything sent twice would arrive right after its first copy: give it a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tally = run.tally("Graceful news");
    for (t, b) in tally.iter().zip(&settled) {
        assert_eq!(*t, Tally { once: MEMBERS as u64, skipped: 0, duplicates: 0, strangers: 0 }, "{b:?}");
        assert_eq!((b.total, b.queued, b.delivered, b.failed, b.blocked), (MEMBERS, MEMBERS, MEMBERS, 0, 0), "{b:?}");
        assert_eq!(b.repeated_max, 0, "a graceful stop leaves nothing in flight: {b:?}");
    }

    // 2. A kill of every process in the middle: nobody skipped; the extra copies are at most
    //    what the runtime counts as possibly repeated, which is at most the sends in flight.
    let ids = run.broadcast_to_all("<i>Killed</i> news").await;
    run.wait_delivered(&ids, MEMBERS * 3 / 10, LIMIT).await;
    run.kill_all();
    let middle = run.tally("Killed news");
    assert!(middle.iter().all(|t| t.once > 0 && t.skipped > 0), "killed in the middle: {middle:?}");
    run.start_processes().await;
    let settled = run.wait_settled(&ids, LIMIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tally = run.tally("Killed news");
    for (t, b) in tally.iter().zip(&settled) {
        println!(
            "killed: {} got it, {} skipped, {} extra copies; reported as possibly repeated: {}",
            t.once, t.skipped, t.duplicates, b.repeated_max
        );
        assert_eq!((t.once, t.skipped, t.strangers), (MEMBERS as u64, 0, 0), "nobody skipped: {t:?} {b:?}");
        assert!(t.duplicates as i64 <= b.repeated_max, "every extra copy is counted: {t:?} {b:?}");
        // In flight at once: what the bot's budget lets its sender start before the answers
        // come back — well under a second's worth.
        assert!(b.repeated_max <= RATE as i64, "only sends in flight repeat: {b:?}");
        assert_eq!((b.total, b.queued, b.delivered, b.failed, b.blocked), (MEMBERS, MEMBERS, MEMBERS, 0, 0), "{b:?}");
    }
    let stats = run.sim.stats();
    println!("the fake answered 429 {} times", stats.too_many_requests);
    run.finish().await;
}

/// Members of the paid-broadcast test's bot.
const PAID_MEMBERS: i64 = 400;
/// Its free pace (Telegram's 30/s, the fake's free budget) and its paid pace
/// (`paidBroadcastPerSecond`, the fake's paid budget).
const FREE_RATE: u64 = 30;
const PAID_RATE: u64 = 200;

/// Waits until the broadcast has stopped (`done`, `failed`) and every message it queued is
/// settled; panics after `limit`.
async fn wait_stopped(run: &BroadcastRun, id: i64, limit: Duration) -> bot_runtime::store::admin::Broadcast {
    let started = std::time::Instant::now();
    loop {
        let b = run.broadcasts(&[id]).await.remove(0);
        if (b.status == "done" || b.status == "failed") && b.delivered + b.failed + b.blocked >= b.queued {
            return b;
        }
        assert!(started.elapsed() < limit, "the broadcast did not stop: {b:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Paid broadcasts (docs/ADMIN.md, "Paid broadcasts"), through real processes: a paid
/// broadcast's every message reaches Telegram with `allow_paid_broadcast` and a free one's
/// never; the paid one goes faster than the free budget could carry it; and when the bot's
/// Stars run out, Telegram's refusal stops the broadcast with the reason (`failed`), every
/// message it had queued settled once — nothing retried forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paid_broadcast_is_flagged_goes_past_the_free_rate_and_stops_when_the_stars_run_out() {
    let run = BroadcastRun::start_paid(1, PAID_MEMBERS, FREE_RATE, Some(PAID_RATE)).await;
    let bot = run.bots[0].username.clone();
    run.sim.set_star_balance(&bot, 1_000).expect("Stars");

    // A free broadcast: never flagged.
    let ids = run.broadcast_to_all("<b>Free</b> news").await;
    let free = run.wait_settled(&ids, LIMIT).await.remove(0);
    assert_eq!((free.delivered, free.failed, free.paid), (PAID_MEMBERS, 0, false), "{free:?}");
    assert_eq!(run.sim.paid_broadcast_messages(&bot).unwrap(), 0, "a free broadcast never sends allow_paid_broadcast");

    // A paid one: every message flagged (the fake counts the flagged sends, each member got
    // exactly one copy), 0.1 Star each.
    let started = std::time::Instant::now();
    let ids = run.broadcast_to_all_as("<b>Paid</b> news", true).await;
    let paid = run.wait_settled(&ids, LIMIT).await.remove(0);
    let took = started.elapsed();
    assert_eq!((paid.delivered, paid.failed, paid.paid), (PAID_MEMBERS, 0, true), "{paid:?}");
    let tally = run.tally("Paid news");
    assert_eq!(tally[0], Tally { once: PAID_MEMBERS as u64, skipped: 0, duplicates: 0, strangers: 0 });
    assert_eq!(run.sim.paid_broadcast_messages(&bot).unwrap(), PAID_MEMBERS as u64, "every message of a paid broadcast is flagged");
    assert_eq!(run.sim.star_balance_tenths(&bot).unwrap(), 10_000 - PAID_MEMBERS, "0.1 Star each");
    // Not a timing target: the fake lets free sends through at FREE_RATE (burst one second's
    // worth), so this many messages this fast could only go on the paid budget.
    let free_floor = Duration::from_secs_f64((PAID_MEMBERS as u64 - FREE_RATE) as f64 / FREE_RATE as f64);
    println!("paid: {PAID_MEMBERS} messages in {took:?} (the free budget needs at least {free_floor:?})");
    assert!(took < free_floor, "a paid broadcast went no faster than the free budget allows: {took:?}");

    // Out of Stars: 10 Stars pay for 100 messages; Telegram refuses the rest (400
    // BALANCE_TOO_LOW), and the broadcast stops with the reason.
    run.sim.set_star_balance(&bot, 10).expect("Stars");
    let ids = run.broadcast_to_all_as("<b>Broke</b> news", true).await;
    let broke = wait_stopped(&run, ids[0], LIMIT).await;
    println!("out of Stars: {broke:?}");
    assert_eq!(broke.status, "failed", "{broke:?}");
    assert!(broke.stop_reason.as_deref().is_some_and(|r| r.contains("Stars")), "the reason is shown: {broke:?}");
    assert_eq!(broke.delivered, 100, "what the Stars paid for: {broke:?}");
    assert_eq!(broke.delivered + broke.failed, broke.queued, "every queued message settled once: {broke:?}");
    assert_eq!(run.sim.paid_broadcast_messages(&bot).unwrap(), PAID_MEMBERS as u64 + 100);
    assert_eq!(run.tally("Broke news")[0].duplicates, 0);
    // Nothing is retried: a moment later nothing more reached Telegram, and the producer
    // queues nothing more for it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = run.broadcasts(&ids).await.remove(0);
    assert_eq!((later.status.as_str(), later.queued, later.delivered), ("failed", broke.queued, 100), "{later:?}");
    assert_eq!(run.sim.paid_broadcast_messages(&bot).unwrap(), PAID_MEMBERS as u64 + 100);
    run.finish().await;
}
