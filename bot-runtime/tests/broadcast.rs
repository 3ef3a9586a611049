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
