//! One behaviour suite for the hot state, run against both implementations: Redis (the Lua
//! scripts, real Redis, a key prefix per test) and the embedded in-memory one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bot_runtime::hot::memory::MemoryHot;
use bot_runtime::hot::redis::RedisHot;
use bot_runtime::hot::{
    BlobInfo, BlobStart, Budget, Claim, Commit, Dedupe, HotState, Job, Lane, Marker, MediaBudget, MediaGrant, MessageRef, Outbox, Refs,
    SendSlot, Timer, Timers, reply_ref,
};
use bot_runtime::keys::Keys;
use botfleet_tests::fixtures::TestRedis;
use serde_json::json;

const POOL: &str = "eu-chat";
const SHARDS: u32 = 4;
const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A job whose params carry a sequence number `n`, to check order.
fn job(bot: &str, chat_id: i64, lane: Lane, n: i64) -> Job {
    Job {
        bot: bot.to_string(),
        chat_id,
        lane,
        method: "sendMessage".to_string(),
        params: json!({ "chat_id": chat_id, "text": format!("m{n}"), "n": n }),
        upload: None,
        origin: None,
        reply_to: None,
        save_as: None,
        target: None,
        chat_member: None,
        enqueued_ms: 1_000 + n,
        mirror_of: None,
        broadcast: None,
    }
}

fn seq(j: &Job) -> i64 {
    j.params["n"].as_i64().unwrap()
}

fn timer(id: &str, due_ms: i64, v: i64) -> Timer {
    Timer { id: id.to_string(), due_ms, payload: json!({ "v": v }) }
}

fn done(bot: &str, update_id: i64) -> Marker {
    Marker::Update { bot: bot.to_string(), update_id, keep: DAY }
}

fn fired(bot: &str, id: &str) -> Marker {
    Marker::Timer { bot: bot.to_string(), id: id.to_string() }
}

/// Every job waiting in one shard and lane, oldest first.
async fn all<H: HotState>(h: &H, bot: &str, shard: u32, lane: Lane) -> Vec<Job> {
    h.outbox_read(POOL, bot, shard, lane, 10_000).await.unwrap().into_iter().map(|q| q.job).collect()
}

/// Reserves a send; true if it may go now.
async fn send<H: HotState>(h: &H, bot: &str, chat: i64, limits: (u32, u32, u32), now: i64) -> Duration {
    h.reserve_send(POOL, bot, chat, limits.0, limits.1, limits.2, now).await.unwrap()
}

// ---- update dedupe ---------------------------------------------------------------------

async fn a_taken_update_is_busy_for_everyone_else<H: HotState>(h: H) {
    assert_eq!(h.claim_update(POOL, "alpha", 1, MINUTE).await.unwrap(), Claim::Taken);
    assert_eq!(h.claim_update(POOL, "alpha", 1, MINUTE).await.unwrap(), Claim::Busy);
    // Another update, another bot, another pool: unaffected.
    assert_eq!(h.claim_update(POOL, "alpha", 2, MINUTE).await.unwrap(), Claim::Taken);
    assert_eq!(h.claim_update(POOL, "beta", 1, MINUTE).await.unwrap(), Claim::Taken);
    assert_eq!(h.claim_update("us-chat", "alpha", 1, MINUTE).await.unwrap(), Claim::Taken);
}

async fn a_done_update_is_never_taken_again<H: HotState>(h: H) {
    assert_eq!(h.claim_update(POOL, "alpha", 7, MINUTE).await.unwrap(), Claim::Taken);
    h.commit(POOL, done("alpha", 7), &[]).await.unwrap();
    assert_eq!(h.claim_update(POOL, "alpha", 7, MINUTE).await.unwrap(), Claim::Done);
    // Giving it back after the fact does not undo it.
    h.release_update(POOL, "alpha", 7).await.unwrap();
    assert_eq!(h.claim_update(POOL, "alpha", 7, Duration::from_millis(10)).await.unwrap(), Claim::Done);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.claim_update(POOL, "alpha", 7, MINUTE).await.unwrap(), Claim::Done);
}

async fn an_expired_lease_can_be_taken_by_another_replica<H: HotState>(h: H) {
    assert_eq!(h.claim_update(POOL, "alpha", 3, Duration::from_millis(30)).await.unwrap(), Claim::Taken);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(h.claim_update(POOL, "alpha", 3, MINUTE).await.unwrap(), Claim::Taken);
    assert_eq!(h.claim_update(POOL, "alpha", 3, MINUTE).await.unwrap(), Claim::Busy);
}

async fn a_renewed_lease_outlives_its_first_term_and_a_done_update_stays_done<H: HotState>(h: H) {
    assert_eq!(h.claim_update(POOL, "alpha", 5, Duration::from_millis(100)).await.unwrap(), Claim::Taken);
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        h.renew_update(POOL, "alpha", 5, Duration::from_millis(100)).await.unwrap();
    }
    assert_eq!(h.claim_update(POOL, "alpha", 5, MINUTE).await.unwrap(), Claim::Busy, "still held after twice its first term");
    h.commit(POOL, Marker::Update { bot: "alpha".into(), update_id: 5, keep: MINUTE }, &[]).await.unwrap();
    h.renew_update(POOL, "alpha", 5, Duration::from_millis(10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.claim_update(POOL, "alpha", 5, MINUTE).await.unwrap(), Claim::Done, "a renewal never shortens a done mark");
    // Renewing an update nobody holds does not create a lease.
    h.renew_update(POOL, "alpha", 98, MINUTE).await.unwrap();
    assert_eq!(h.claim_update(POOL, "alpha", 98, MINUTE).await.unwrap(), Claim::Taken);
}

async fn a_released_update_can_be_retried_at_once<H: HotState>(h: H) {
    assert_eq!(h.claim_update(POOL, "alpha", 4, MINUTE).await.unwrap(), Claim::Taken);
    h.release_update(POOL, "alpha", 4).await.unwrap();
    assert_eq!(h.claim_update(POOL, "alpha", 4, MINUTE).await.unwrap(), Claim::Taken);
    // Releasing an update nobody holds is harmless.
    h.release_update(POOL, "alpha", 99).await.unwrap();
}

/// Defect 4: an update's retries are handled at its first attempt's time (kept when an attempt
/// fails and gives the update back), whichever replica retries it.
async fn a_retried_update_keeps_its_first_attempts_clock<H: HotState>(h: H) {
    let (t1, t2, t3) = (1_800_000_000_000, 1_800_000_005_000, 1_800_000_009_000);
    assert_eq!(h.claim_update_at(POOL, "alpha", 7, MINUTE, t1).await.unwrap(), (Claim::Taken, t1), "a first attempt: now");
    h.release_update_at(POOL, "alpha", 7, Some((t1, MINUTE))).await.unwrap();
    assert_eq!(h.claim_update_at(POOL, "alpha", 7, MINUTE, t2).await.unwrap(), (Claim::Taken, t1), "the retry: the first time");
    // A second failure keeps the first time, not its own.
    h.release_update_at(POOL, "alpha", 7, Some((t2, MINUTE))).await.unwrap();
    assert_eq!(h.claim_update_at(POOL, "alpha", 7, MINUTE, t3).await.unwrap(), (Claim::Taken, t1));
    h.commit(POOL, done("alpha", 7), &[]).await.unwrap();
    assert_eq!(h.claim_update_at(POOL, "alpha", 7, MINUTE, t3).await.unwrap().0, Claim::Done);
    // Another update, released without a clock: its retry gets its own time.
    assert_eq!(h.claim_update_at(POOL, "alpha", 8, MINUTE, t1).await.unwrap(), (Claim::Taken, t1));
    h.release_update(POOL, "alpha", 8).await.unwrap();
    assert_eq!(h.claim_update_at(POOL, "alpha", 8, MINUTE, t2).await.unwrap(), (Claim::Taken, t2));
}

async fn one_of_many_concurrent_claimers_takes_an_update<H: HotState>(h: H) {
    let h = Arc::new(h);
    for update_id in 0..20 {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move { h.claim_update(POOL, "alpha", update_id, MINUTE).await.unwrap() })
            })
            .collect();
        let mut taken = 0;
        for t in tasks {
            match t.await.unwrap() {
                Claim::Taken => taken += 1,
                Claim::Busy => {}
                Claim::Done => panic!("nobody committed {update_id}"),
            }
        }
        assert_eq!(taken, 1, "update {update_id}");
    }
}

// ---- the commit and the outbox ---------------------------------------------------------

async fn commit_appends_jobs_and_marks_done_atomically<H: HotState>(h: H) {
    assert_eq!(h.claim_update(POOL, "alpha", 10, MINUTE).await.unwrap(), Claim::Taken);
    let jobs = [job("alpha", 1, Lane::Interactive, 1), job("beta", 2, Lane::Interactive, 2), job("beta", 2, Lane::Bulk, 3)];
    h.commit(POOL, done("alpha", 10), &jobs).await.unwrap();
    assert_eq!(h.claim_update(POOL, "alpha", 10, MINUTE).await.unwrap(), Claim::Done);
    assert_eq!(all(&h, "alpha", h.shard_of(1), Lane::Interactive).await, vec![jobs[0].clone()]);
    assert_eq!(all(&h, "beta", h.shard_of(2), Lane::Interactive).await, vec![jobs[1].clone()]);
    assert_eq!(all(&h, "beta", h.shard_of(2), Lane::Bulk).await, vec![jobs[2].clone()]);

    // A replica whose lease ran out while it worked commits late: its effects are not added twice.
    h.commit(POOL, done("alpha", 10), &jobs).await.unwrap();
    assert_eq!(h.outbox_depth(POOL, "alpha", 0).await.unwrap().0, 1);
    assert_eq!(h.outbox_depth(POOL, "beta", 0).await.unwrap().0, 2);

    // Effects with nothing to mark are simply appended.
    h.commit(POOL, Marker::None, &[job("alpha", 1, Lane::Interactive, 4)]).await.unwrap();
    let seqs: Vec<i64> = all(&h, "alpha", h.shard_of(1), Lane::Interactive).await.iter().map(seq).collect();
    assert_eq!(seqs, vec![1, 4]);
}

async fn outbox_keeps_per_chat_order_within_a_shard<H: HotState>(h: H) {
    assert_eq!(h.outbox_shards(), SHARDS);
    // Chats 1 and 5 share a shard (4 shards); negative ids land in a shard too.
    let chats = [1i64, 5, 2, 3, -7, 4];
    assert_eq!(h.shard_of(1), h.shard_of(5));
    assert!(h.shard_of(-7) < SHARDS);
    let mut n = 0;
    for round in 0..10 {
        let mut jobs = Vec::new();
        for chat in chats {
            for _ in 0..=(round % 3) {
                n += 1;
                jobs.push(job("alpha", chat, Lane::Interactive, n));
            }
        }
        h.commit(POOL, done("alpha", round), &jobs).await.unwrap();
    }
    let mut seen = 0;
    for shard in 0..SHARDS {
        let queued = all(&h, "alpha", shard, Lane::Interactive).await;
        seen += queued.len();
        let mut last: HashMap<i64, i64> = HashMap::new();
        for j in &queued {
            assert_eq!(h.shard_of(j.chat_id), shard, "chat {} in the wrong shard", j.chat_id);
            let prev = last.insert(j.chat_id, seq(j)).unwrap_or(0);
            assert!(seq(j) > prev, "chat {} out of order", j.chat_id);
        }
    }
    assert_eq!(seen, n as usize);

    // Reading takes the oldest first, acknowledging removes exactly what was sent.
    let shard = h.shard_of(1);
    let expected: Vec<i64> = all(&h, "alpha", shard, Lane::Interactive).await.iter().map(seq).collect();
    let first = h.outbox_read(POOL, "alpha", shard, Lane::Interactive, 3).await.unwrap();
    assert_eq!(first.iter().map(|q| seq(&q.job)).collect::<Vec<_>>(), expected[..3]);
    for q in &first[..2] {
        h.outbox_ack(POOL, "alpha", shard, Lane::Interactive, &q.id).await.unwrap();
    }
    let rest: Vec<i64> = all(&h, "alpha", shard, Lane::Interactive).await.iter().map(seq).collect();
    assert_eq!(rest, expected[2..]);
}

async fn interactive_and_bulk_lanes_are_separate<H: HotState>(h: H) {
    let jobs = [job("alpha", 1, Lane::Bulk, 1), job("alpha", 1, Lane::Interactive, 2), job("alpha", 1, Lane::Bulk, 3)];
    h.commit(POOL, Marker::None, &jobs).await.unwrap();
    let shard = h.shard_of(1);
    assert_eq!(all(&h, "alpha", shard, Lane::Interactive).await.iter().map(seq).collect::<Vec<_>>(), vec![2]);
    let bulk = h.outbox_read(POOL, "alpha", shard, Lane::Bulk, 10).await.unwrap();
    assert_eq!(bulk.iter().map(|q| seq(&q.job)).collect::<Vec<_>>(), vec![1, 3]);
    // Acknowledging in one lane leaves the other alone.
    h.outbox_ack(POOL, "alpha", shard, Lane::Bulk, &bulk[0].id).await.unwrap();
    assert_eq!(all(&h, "alpha", shard, Lane::Bulk).await.iter().map(seq).collect::<Vec<_>>(), vec![3]);
    assert_eq!(all(&h, "alpha", shard, Lane::Interactive).await.len(), 1);
}

async fn outbox_depth_counts_every_shard_and_lane<H: HotState>(h: H) {
    assert_eq!(h.outbox_depth(POOL, "alpha", 50_000).await.unwrap(), (0, 0));
    let mut a = job("alpha", 1, Lane::Interactive, 0);
    a.enqueued_ms = 3_000;
    let mut b = job("alpha", 2, Lane::Bulk, 0);
    b.enqueued_ms = 2_000;
    let mut c = job("alpha", 2, Lane::Bulk, 0);
    c.enqueued_ms = 1_000; // behind b in its stream: not the head, so not looked at
    let mut other = job("beta", 3, Lane::Interactive, 0);
    other.enqueued_ms = 10;
    h.commit(POOL, Marker::None, &[a, b, c, other]).await.unwrap();
    assert_eq!(h.outbox_depth(POOL, "alpha", 10_000).await.unwrap(), (3, 8_000));
    for lane in [Lane::Interactive, Lane::Bulk] {
        for shard in 0..SHARDS {
            for q in h.outbox_read(POOL, "alpha", shard, lane, 10).await.unwrap() {
                h.outbox_ack(POOL, "alpha", shard, lane, &q.id).await.unwrap();
            }
        }
    }
    assert_eq!(h.outbox_depth(POOL, "alpha", 10_000).await.unwrap(), (0, 0));
    assert_eq!(h.outbox_depth(POOL, "beta", 10_000).await.unwrap(), (1, 9_990));
}

/// An idle consumer asks once which shards hold jobs (either lane), not every shard.
async fn the_shards_holding_jobs_are_found_in_one_call<H: HotState>(h: H) {
    assert_eq!(h.outbox_busy_shards(POOL, "alpha").await.unwrap(), Vec::<u32>::new());
    let (a, b) = (job("alpha", 3, Lane::Interactive, 0), job("alpha", 7, Lane::Bulk, 0));
    h.commit(POOL, Marker::None, &[a, b, job("beta", 5, Lane::Interactive, 0)]).await.unwrap();
    let mut busy = h.outbox_busy_shards(POOL, "alpha").await.unwrap();
    busy.sort();
    let mut expected = vec![h.shard_of(3), h.shard_of(7)];
    expected.sort();
    expected.dedup();
    assert_eq!(busy, expected, "per bot, both lanes");
    let lengths = h.outbox_lengths(POOL, "alpha").await.unwrap();
    assert_eq!(lengths.len(), SHARDS as usize);
    assert_eq!(lengths.iter().map(|[i, _]| i).sum::<u64>(), 1, "interactive counted apart");
    assert_eq!(lengths.iter().map(|[_, b]| b).sum::<u64>(), 1, "bulk counted apart");
    for lane in [Lane::Interactive, Lane::Bulk] {
        for shard in 0..SHARDS {
            for q in h.outbox_read(POOL, "alpha", shard, lane, 10).await.unwrap() {
                h.outbox_ack(POOL, "alpha", shard, lane, &q.id).await.unwrap();
            }
        }
    }
    assert_eq!(h.outbox_busy_shards(POOL, "alpha").await.unwrap(), Vec::<u32>::new());
}

// ---- leases ----------------------------------------------------------------------------

async fn leases_are_exclusive_and_renewable<H: HotState>(h: H) {
    assert!(h.lease(POOL, "poll:alpha", "pod-a", MINUTE).await.unwrap());
    assert!(!h.lease(POOL, "poll:alpha", "pod-b", MINUTE).await.unwrap());
    assert!(h.lease(POOL, "poll:alpha", "pod-a", Duration::from_millis(40)).await.unwrap(), "renewed");
    // Only the holder can give it up.
    h.unlease(POOL, "poll:alpha", "pod-b").await.unwrap();
    assert!(!h.lease(POOL, "poll:alpha", "pod-b", MINUTE).await.unwrap());
    // Renewed with a short TTL: it runs out, and another takes it.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(h.lease(POOL, "poll:alpha", "pod-b", MINUTE).await.unwrap());
    assert!(!h.lease(POOL, "poll:alpha", "pod-a", MINUTE).await.unwrap());
    h.unlease(POOL, "poll:alpha", "pod-b").await.unwrap();
    assert!(h.lease(POOL, "poll:alpha", "pod-a", MINUTE).await.unwrap());
    // Names and pools are separate.
    assert!(h.lease(POOL, "out:alpha:0", "pod-b", MINUTE).await.unwrap());
    assert!(h.lease("us-chat", "poll:alpha", "pod-b", MINUTE).await.unwrap());
}

async fn many_leases_are_taken_and_renewed_in_one_step<H: HotState>(h: H) {
    let names: Vec<String> = (0..4).map(|k| format!("outbox:alpha:{k}")).collect();
    assert!(h.lease(POOL, &names[2], "pod-b", MINUTE).await.unwrap());
    assert_eq!(h.lease_many(POOL, &names, "pod-a", MINUTE).await.unwrap(), [true, true, false, true], "one is pod-b's");
    assert_eq!(h.lease_many(POOL, &names, "pod-a", Duration::from_millis(40)).await.unwrap(), [true, true, false, true], "renewed");
    assert!(!h.lease(POOL, &names[0], "pod-b", MINUTE).await.unwrap(), "held by pod-a");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(h.lease_many(POOL, &names[..2], "pod-b", MINUTE).await.unwrap(), [true, true], "the short renewal ran out");
    assert!(h.lease_many(POOL, &[], "pod-b", MINUTE).await.unwrap().is_empty());
}

// ---- the send limiter ------------------------------------------------------------------

async fn limiter_paces_per_bot_from_the_first_send<H: HotState>(h: H) {
    let t0 = wall_ms();
    let limits = (5, 0, 0); // 5 per second per bot, no per-chat limit
    // No burst at the bot level (defect 13): one send, then one per 200 ms.
    assert_eq!(send(&h, "alpha", 0, limits, t0).await, Duration::ZERO);
    let wait = send(&h, "alpha", 5, limits, t0).await;
    assert_eq!(wait, Duration::from_millis(200));
    // Another bot has its own limit.
    assert_eq!(send(&h, "beta", 5, limits, t0).await, Duration::ZERO);
    // Steady state: one every 200 ms, whoever asks how often.
    let mut sent = 0;
    for step in 1..=200 {
        if send(&h, "alpha", step, limits, t0 + step * 10).await.is_zero() {
            sent += 1;
        }
    }
    assert_eq!(sent, 10, "5 per second over 2 s");
}

/// The consumer stops its pass when the bot-wide limit says wait, and goes on to other chats
/// when only the chat must wait: the answer tells the two apart.
async fn the_limiter_says_whether_the_bot_or_the_chat_must_wait<H: HotState>(h: H) {
    let t0 = wall_ms();
    let limits = (2, 60, 1); // 2 per second per bot; one per second per chat
    let slot = |chat: i64, now: i64| {
        let h = &h;
        async move {
            let s = h.reserve_slot(POOL, "alpha", chat, limits.0, limits.1, limits.2, now).await.unwrap();
            SendSlot { bot_at_us: 0, ..s }
        }
    };
    let go = SendSlot { wait: Duration::ZERO, bot_wait: Duration::ZERO, bot_at_us: 0 };
    assert_eq!(slot(1, t0).await, go);
    // The bot's next slot is 500 ms away: the bot must wait (whatever the chat).
    assert_eq!(slot(2, t0).await, SendSlot { wait: Duration::from_millis(500), bot_wait: Duration::from_millis(500), bot_at_us: 0 });
    // Chat 1 waits longer than the bot: both said, the longer wait first.
    assert_eq!(slot(1, t0 + 100).await, SendSlot { wait: Duration::from_millis(900), bot_wait: Duration::from_millis(400), bot_at_us: 0 });
    // The bot is free again, chat 1 is not: only the chat waits, and nothing is taken...
    assert_eq!(slot(1, t0 + 500).await, SendSlot { wait: Duration::from_millis(500), bot_wait: Duration::ZERO, bot_at_us: 0 });
    // ...so another chat goes at once.
    assert_eq!(slot(2, t0 + 500).await, go);
}

/// Paging through a shard (defect 2): a read after a job returns the jobs behind it, so a
/// consumer can look past a chat that must wait without acknowledging anything.
async fn a_read_after_a_job_pages_past_it<H: HotState>(h: H) {
    let shard = h.shard_of(1);
    let other = 1 + i64::from(h.outbox_shards());
    let jobs: Vec<Job> = (0..5).map(|n| job("alpha", if n < 3 { 1 } else { other }, Lane::Interactive, n)).collect();
    h.commit(POOL, Marker::None, &jobs).await.unwrap();
    let first = h.outbox_read_after(POOL, "alpha", shard, Lane::Interactive, None, 2).await.unwrap();
    assert_eq!(first.iter().map(|q| seq(&q.job)).collect::<Vec<_>>(), [0, 1]);
    let next = h.outbox_read_after(POOL, "alpha", shard, Lane::Interactive, Some(&first[1].id), 2).await.unwrap();
    assert_eq!(next.iter().map(|q| seq(&q.job)).collect::<Vec<_>>(), [2, 3]);
    // Acknowledging a job does not move the others; reading after the last one finds the rest.
    h.outbox_ack(POOL, "alpha", shard, Lane::Interactive, &next[0].id).await.unwrap();
    let rest = h.outbox_read_after(POOL, "alpha", shard, Lane::Interactive, Some(&next[1].id), 10).await.unwrap();
    assert_eq!(rest.iter().map(|q| seq(&q.job)).collect::<Vec<_>>(), [4]);
    assert!(h.outbox_read_after(POOL, "alpha", shard, Lane::Interactive, Some(&rest[0].id), 10).await.unwrap().is_empty());
    assert_eq!(all(&h, "alpha", shard, Lane::Interactive).await.iter().map(seq).collect::<Vec<_>>(), [0, 1, 3, 4]);
    // A batch's sent jobs are acknowledged together; the others stay, in order.
    h.outbox_ack_many(POOL, "alpha", shard, Lane::Interactive, &[first[0].id.as_str(), rest[0].id.as_str()]).await.unwrap();
    h.outbox_ack_many(POOL, "alpha", shard, Lane::Interactive, &[]).await.unwrap();
    assert_eq!(all(&h, "alpha", shard, Lane::Interactive).await.iter().map(seq).collect::<Vec<_>>(), [1, 3]);
}

/// Defect 13: after an idle period the bot-wide limit used to let a full burst through at once
/// and then the steady pace on top (45–48 sends in the first second at 30/s). Asked every
/// millisecond for 3 s by ever new chats, no window of one second may carry more than the rate.
async fn no_one_second_window_exceeds_the_per_bot_rate<H: HotState>(h: H) {
    let t0 = wall_ms();
    let limits = (30, 60, 3);
    let mut granted: Vec<i64> = Vec::new();
    for step in 0..3_000i64 {
        if send(&h, "alpha", step, limits, t0 + step).await.is_zero() {
            granted.push(step);
        }
    }
    // The most sends in any window [t, t + 1000 ms).
    let most = (0..granted.len()).map(|i| granted[i..].iter().take_while(|&&t| t < granted[i] + 1_000).count()).max().unwrap_or(0);
    let first_second = granted.iter().filter(|&&t| t < 1_000).count();
    println!("per-bot 30/s asked every ms for 3 s: {} sends, first second {first_second}, busiest 1 s window {most}", granted.len());
    assert!(most <= 30, "{most} sends in one second at 30/s (first second: {first_second})");
    // ...and the rate is still used: 30 per second, give or take the edges.
    assert!(granted.len() >= 88, "{} sends in 3 s at 30/s", granted.len());
}

/// Issue 11: a sender woken late asks for the slot it booked by the slot's time (µs), so the
/// lateness does not push the schedule — the sends stay exactly one interval apart on the
/// limiter's clock, never closer. A paid broadcast's budget (`Budget::Paid`) is a limiter of
/// its own (its sends never take the free budget's slots, nor wait for them); the chat's
/// limiter is shared.
async fn a_slot_booked_by_its_time_keeps_the_schedule_and_the_paid_budget_is_its_own<H: HotState>(h: H) {
    let t0 = wall_ms() * 1000;
    let ask = |budget: Budget, chat: i64, rate: u32, per_chat: u32, at_us: i64| {
        let h = &h;
        async move { h.reserve_slot_at(POOL, "alpha", budget, chat, rate, per_chat, 1, at_us).await.unwrap() }
    };
    // Free, 2/s: the next slot is exactly 500 ms on, and the limiter names it to the µs.
    assert!(ask(Budget::Free, 1, 2, 0, t0).await.wait.is_zero());
    let refused = ask(Budget::Free, 2, 2, 0, t0 + 1).await;
    assert_eq!((refused.bot_wait, refused.bot_at_us), (Duration::from_millis(500), t0 + 500_000), "{refused:?}");
    // The paid budget goes meanwhile, at its own pace.
    assert!(ask(Budget::Paid, 3, 10, 0, t0 + 2).await.wait.is_zero());
    let paid = ask(Budget::Paid, 4, 10, 0, t0 + 3).await;
    assert_eq!(paid.bot_at_us, t0 + 100_002, "{paid:?}");
    // The booked slot, asked for by its time (the worker woke late: that is its business), is
    // granted; the next is one interval after the slot, not after the wake...
    assert!(ask(Budget::Free, 2, 2, 0, t0 + 500_000).await.wait.is_zero());
    let next = ask(Budget::Free, 5, 2, 0, t0 + 999_999).await;
    assert_eq!(next.bot_at_us, t0 + 1_000_000, "{next:?}");
    // ...and never closer: the same slot is not granted twice.
    assert!(!ask(Budget::Free, 6, 2, 0, t0 + 500_000).await.wait.is_zero());
    // The chat's limiter is shared: a chat the free budget just served (60/min, burst 1) waits
    // on the paid one too, and only the chat waits.
    assert!(ask(Budget::Free, 7, 0, 60, t0 + 1_000_000).await.wait.is_zero());
    let chat = ask(Budget::Paid, 7, 10, 60, t0 + 1_200_000).await;
    assert_eq!((chat.wait, chat.bot_wait), (Duration::from_millis(800), Duration::ZERO), "{chat:?}");
    // A 429 on a paid send holds the paid budget only.
    h.hold_sends_in(POOL, "alpha", Budget::Paid, None, t0 / 1000 + 5_000).await.unwrap();
    assert!(!ask(Budget::Paid, 8, 10, 0, t0 + 2_000_000).await.bot_wait.is_zero());
    assert!(ask(Budget::Free, 8, 2, 0, t0 + 2_000_000).await.wait.is_zero());
}

async fn limiter_paces_one_chat<H: HotState>(h: H) {
    let t0 = wall_ms();
    let limits = (0, 20, 3); // no bot limit; 20 per minute per chat (one per 3 s), burst 3
    for _ in 0..3 {
        assert_eq!(send(&h, "alpha", 1, limits, t0).await, Duration::ZERO);
    }
    assert_eq!(send(&h, "alpha", 1, limits, t0).await, Duration::from_secs(3));
    assert_eq!(send(&h, "alpha", 1, limits, t0 + 1_000).await, Duration::from_secs(2));
    // Other chats of the bot are not held up.
    assert_eq!(send(&h, "alpha", 2, limits, t0 + 1_000).await, Duration::ZERO);
    assert_eq!(send(&h, "alpha", 1, limits, t0 + 3_000).await, Duration::ZERO);
    assert_eq!(send(&h, "alpha", 1, limits, t0 + 3_000).await, Duration::from_secs(3));
}

async fn a_refused_send_takes_no_slot<H: HotState>(h: H) {
    let t0 = wall_ms();
    let limits = (2, 60, 1); // 2 per second per bot (no burst); one per second per chat
    assert_eq!(send(&h, "alpha", 1, limits, t0).await, Duration::ZERO);
    // Refused by its chat's limit: the bot's next slot (in 500 ms) stays free...
    assert_eq!(send(&h, "alpha", 1, limits, t0 + 500).await, Duration::from_millis(500));
    assert_eq!(send(&h, "alpha", 2, limits, t0 + 500).await, Duration::ZERO);
    // ...and refused by the bot's limit: chat 3's slot stays free.
    assert_eq!(send(&h, "alpha", 3, limits, t0 + 500).await, Duration::from_millis(500));
    assert_eq!(send(&h, "alpha", 3, limits, t0 + 1_000).await, Duration::ZERO);
    // Both refuse: the longer wait counts.
    assert_eq!(send(&h, "alpha", 3, limits, t0 + 1_000).await, Duration::from_secs(1));
}

async fn hold_sends_blocks_every_caller_until_the_time<H: HotState>(h: H) {
    let t0 = wall_ms();
    let limits = (30, 20, 3);
    h.hold_sends(POOL, "alpha", None, t0 + 5_000).await.unwrap();
    // A shorter hold later does not shorten it.
    h.hold_sends(POOL, "alpha", None, t0 + 1_000).await.unwrap();
    for chat in [1, 2, 3] {
        assert_eq!(send(&h, "alpha", chat, limits, t0).await, Duration::from_secs(5));
    }
    assert_eq!(send(&h, "alpha", 1, limits, t0 + 4_000).await, Duration::from_secs(1));
    // No rate limit configured: the hold (Telegram's 429) still applies.
    assert_eq!(send(&h, "alpha", 1, (0, 0, 0), t0 + 4_000).await, Duration::from_secs(1));
    // Other bots are not held.
    assert_eq!(send(&h, "beta", 1, limits, t0).await, Duration::ZERO);
    assert_eq!(send(&h, "alpha", 1, limits, t0 + 5_000).await, Duration::ZERO);

    // With a chat: the bot and that chat are held.
    h.hold_sends(POOL, "alpha", Some(7), t0 + 9_000).await.unwrap();
    assert_eq!(send(&h, "alpha", 7, limits, t0 + 6_000).await, Duration::from_secs(3));
    assert_eq!(send(&h, "alpha", 8, limits, t0 + 6_000).await, Duration::from_secs(3));
    assert_eq!(send(&h, "beta", 7, limits, t0 + 6_000).await, Duration::ZERO);
    assert_eq!(send(&h, "alpha", 7, limits, t0 + 9_000).await, Duration::ZERO);
    // A hold leaves the buckets empty: they refill at their rates from its end, one send per
    // 1/30 s for the bot (rounded up to 34 ms) and one per 3 s for the chat.
    assert_eq!(send(&h, "alpha", 8, limits, t0 + 9_000).await, Duration::from_millis(34));
    assert_eq!(send(&h, "alpha", 8, limits, t0 + 9_034).await, Duration::ZERO);
    assert_eq!(send(&h, "alpha", 7, limits, t0 + 9_100).await, Duration::from_millis(2_900));
    assert_eq!(send(&h, "alpha", 7, limits, t0 + 12_000).await, Duration::ZERO);
}

async fn a_user_rate_limit_allows_the_burst_then_refuses<H: HotState>(h: H) {
    let t0 = wall_ms();
    let sec = Duration::from_secs(1);
    for _ in 0..3 {
        assert!(h.allow(POOL, "msg:alpha:1", 2, sec, 3, t0).await.unwrap());
    }
    assert!(!h.allow(POOL, "msg:alpha:1", 2, sec, 3, t0).await.unwrap());
    assert!(!h.allow(POOL, "msg:alpha:1", 2, sec, 3, t0 + 499).await.unwrap(), "refusals are not counted, but not yet");
    assert!(h.allow(POOL, "msg:alpha:1", 2, sec, 3, t0 + 500).await.unwrap());
    assert!(!h.allow(POOL, "msg:alpha:1", 2, sec, 3, t0 + 500).await.unwrap());
    // Keys are separate; a zero rate means no limit.
    assert!(h.allow(POOL, "msg:alpha:2", 2, sec, 3, t0).await.unwrap());
    for _ in 0..10 {
        assert!(h.allow(POOL, "msg:alpha:1", 0, sec, 0, t0).await.unwrap());
    }
}

// ---- timers ----------------------------------------------------------------------------

async fn a_timer_fires_when_due_and_not_before<H: HotState>(h: H) {
    let t = timer("search:1", 10_000, 1);
    h.schedule(POOL, "alpha", &t).await.unwrap();
    assert!(h.claim_timers(POOL, "alpha", 9_999, MINUTE, 10).await.unwrap().is_empty());
    assert!(h.claim_timers(POOL, "beta", 10_000, MINUTE, 10).await.unwrap().is_empty(), "timers are per bot");
    assert_eq!(h.claim_timers(POOL, "alpha", 10_000, MINUTE, 10).await.unwrap(), vec![t.clone()]);
    assert!(h.claim_timers(POOL, "alpha", 10_001, MINUTE, 10).await.unwrap().is_empty(), "in flight");
    h.commit(POOL, fired("alpha", "search:1"), &[job("alpha", 1, Lane::Interactive, 1)]).await.unwrap();
    assert_eq!(all(&h, "alpha", h.shard_of(1), Lane::Interactive).await.len(), 1, "its effects");
    assert!(h.claim_timers(POOL, "alpha", 10_000 + 3_600_000, MINUTE, 10).await.unwrap().is_empty(), "fired once");
}

async fn timers_fire_oldest_first_up_to_max<H: HotState>(h: H) {
    for i in 0..10 {
        h.schedule(POOL, "alpha", &timer(&format!("t{i}"), 1_000 - i * 10, i)).await.unwrap();
    }
    let ids = |ts: Vec<Timer>| ts.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(h.claim_timers(POOL, "alpha", 2_000, MINUTE, 3).await.unwrap()), vec!["t9", "t8", "t7"]);
    assert_eq!(ids(h.claim_timers(POOL, "alpha", 2_000, MINUTE, 3).await.unwrap()), vec!["t6", "t5", "t4"]);
    assert!(h.claim_timers(POOL, "alpha", 2_000, MINUTE, 0).await.unwrap().is_empty());
}

async fn a_timer_fires_exactly_once_across_concurrent_claimers<H: HotState>(h: H) {
    let h = Arc::new(h);
    let now = 1_000_000;
    for i in 0..500 {
        h.schedule(POOL, "alpha", &timer(&format!("t{i}"), now - 500 + i, i)).await.unwrap();
    }
    let fired_ids = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (h, fired_ids) = (h.clone(), fired_ids.clone());
            tokio::spawn(async move {
                loop {
                    let batch = h.claim_timers(POOL, "alpha", now, MINUTE, 7).await.unwrap();
                    if batch.is_empty() {
                        return;
                    }
                    for t in batch {
                        fired_ids.lock().unwrap().push(t.id.clone());
                        h.commit(POOL, fired("alpha", &t.id), &[]).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let fired_ids = fired_ids.lock().unwrap().clone();
    let unique: HashSet<&String> = fired_ids.iter().collect();
    assert_eq!(unique.len(), 500, "every timer fired");
    assert_eq!(fired_ids.len(), 500, "none fired twice");
    assert!(h.claim_timers(POOL, "alpha", now + 3_600_000, MINUTE, 1000).await.unwrap().is_empty());
}

async fn an_in_flight_timer_whose_lease_ran_out_is_taken_again<H: HotState>(h: H) {
    let t = timer("refresh", 1_000, 1);
    h.schedule(POOL, "alpha", &t).await.unwrap();
    let lease = Duration::from_secs(10);
    assert_eq!(h.claim_timers(POOL, "alpha", 1_000, lease, 10).await.unwrap(), vec![t.clone()]);
    // The replica that took it dies; until its lease runs out nobody else gets it.
    assert!(h.claim_timers(POOL, "alpha", 10_999, lease, 10).await.unwrap().is_empty());
    assert_eq!(h.claim_timers(POOL, "alpha", 11_000, lease, 10).await.unwrap(), vec![t.clone()]);
    assert!(h.claim_timers(POOL, "alpha", 11_001, lease, 10).await.unwrap().is_empty(), "leased again");
    h.commit(POOL, fired("alpha", "refresh"), &[]).await.unwrap();
    assert!(h.claim_timers(POOL, "alpha", 100_000, lease, 10).await.unwrap().is_empty());
}

async fn a_rescheduled_timer_keeps_its_new_time<H: HotState>(h: H) {
    // Rescheduled while in flight: the firing's commit does not cancel the new time.
    h.schedule(POOL, "alpha", &timer("nudge", 1_000, 1)).await.unwrap();
    assert_eq!(h.claim_timers(POOL, "alpha", 1_000, MINUTE, 10).await.unwrap(), vec![timer("nudge", 1_000, 1)]);
    h.schedule(POOL, "alpha", &timer("nudge", 20_000, 2)).await.unwrap();
    h.commit(POOL, fired("alpha", "nudge"), &[]).await.unwrap();
    assert!(h.claim_timers(POOL, "alpha", 19_999, MINUTE, 10).await.unwrap().is_empty());
    assert_eq!(h.claim_timers(POOL, "alpha", 20_000, MINUTE, 10).await.unwrap(), vec![timer("nudge", 20_000, 2)]);
    h.commit(POOL, fired("alpha", "nudge"), &[]).await.unwrap();
    assert!(h.claim_timers(POOL, "alpha", 1_000_000, MINUTE, 10).await.unwrap().is_empty());

    // Rescheduled before it fired: only the new time counts.
    h.schedule(POOL, "alpha", &timer("idle", 5_000, 1)).await.unwrap();
    h.schedule(POOL, "alpha", &timer("idle", 8_000, 2)).await.unwrap();
    assert!(h.claim_timers(POOL, "alpha", 7_999, MINUTE, 10).await.unwrap().is_empty());
    assert_eq!(h.claim_timers(POOL, "alpha", 8_000, MINUTE, 10).await.unwrap(), vec![timer("idle", 8_000, 2)]);
    h.commit(POOL, fired("alpha", "idle"), &[]).await.unwrap();

    // Rescheduled while in flight to a time that comes before the firing is done: one firing at
    // a time, the next one right after the commit.
    h.schedule(POOL, "alpha", &timer("soon", 1_000, 1)).await.unwrap();
    assert_eq!(h.claim_timers(POOL, "alpha", 1_000, MINUTE, 10).await.unwrap().len(), 1);
    h.schedule(POOL, "alpha", &timer("soon", 1_100, 2)).await.unwrap();
    assert!(h.claim_timers(POOL, "alpha", 1_200, MINUTE, 10).await.unwrap().is_empty());
    h.commit(POOL, fired("alpha", "soon"), &[]).await.unwrap();
    assert_eq!(h.claim_timers(POOL, "alpha", 1_200, MINUTE, 10).await.unwrap(), vec![timer("soon", 1_100, 2)]);
}

async fn an_unscheduled_timer_never_fires<H: HotState>(h: H) {
    h.schedule(POOL, "alpha", &timer("a", 1_000, 1)).await.unwrap();
    h.unschedule(POOL, "alpha", "a").await.unwrap();
    assert!(h.claim_timers(POOL, "alpha", 5_000, MINUTE, 10).await.unwrap().is_empty());
    // Unscheduled while in flight: not taken again when the lease runs out.
    h.schedule(POOL, "alpha", &timer("b", 1_000, 1)).await.unwrap();
    assert_eq!(h.claim_timers(POOL, "alpha", 1_000, Duration::from_secs(1), 10).await.unwrap().len(), 1);
    h.unschedule(POOL, "alpha", "b").await.unwrap();
    assert!(h.claim_timers(POOL, "alpha", 10_000, MINUTE, 10).await.unwrap().is_empty());
    h.commit(POOL, fired("alpha", "b"), &[]).await.unwrap();
    assert!(h.claim_timers(POOL, "alpha", 20_000, MINUTE, 10).await.unwrap().is_empty());
}

// ---- refs and blobs --------------------------------------------------------------------

fn msg_ref(member: &str, message_id: i64) -> MessageRef {
    MessageRef { member: member.into(), message_id }
}

/// Settling a batch records its copies in the reply map and removes its sent jobs, together;
/// jobs not named stay.
async fn settling_a_batch_records_its_copies_and_removes_its_jobs<H: HotState>(h: H) {
    let shard = h.shard_of(1);
    let jobs: Vec<Job> = (0..3).map(|n| job("alpha", 1, Lane::Interactive, n)).collect();
    h.commit(POOL, Marker::None, &jobs).await.unwrap();
    let queued = h.outbox_read_after(POOL, "alpha", shard, Lane::Interactive, None, 10).await.unwrap();
    let replies = [(msg_ref("beta:2", 7), msg_ref("alpha:1", 70)), (msg_ref("beta:2", 8), msg_ref("alpha:1", 71))];
    h.outbox_settle(POOL, "alpha", shard, Lane::Interactive, &[queued[0].id.as_str(), queued[2].id.as_str()], &replies, MINUTE)
        .await
        .unwrap();
    assert_eq!(all(&h, "alpha", shard, Lane::Interactive).await.iter().map(seq).collect::<Vec<_>>(), [1]);
    assert_eq!(h.get_reply(POOL, &msg_ref("beta:2", 8)).await.unwrap().as_deref(), Some("alpha:1:71"));
    assert_eq!(h.get_reply(POOL, &msg_ref("alpha:1", 70)).await.unwrap().as_deref(), Some("beta:2:7"));
    // Nothing to settle is no call at all.
    h.outbox_settle(POOL, "alpha", shard, Lane::Interactive, &[], &[], MINUTE).await.unwrap();
}

/// A reply map of many messages in one chat: every entry reads back, whichever bucket it fell in.
async fn the_reply_map_holds_a_chats_messages_in_buckets<H: HotState>(h: H) {
    for id in 1..=200 {
        h.put_reply(POOL, &msg_ref("alpha:1", id), &msg_ref("beta:2", 1_000 + id), MINUTE).await.unwrap();
    }
    for id in 1..=200 {
        assert_eq!(h.get_reply(POOL, &msg_ref("alpha:1", id)).await.unwrap(), Some(format!("beta:2:{}", 1_000 + id)));
        assert_eq!(h.get_reply(POOL, &msg_ref("beta:2", 1_000 + id)).await.unwrap(), Some(format!("alpha:1:{id}")));
    }
    // Written again (an edit's copy keeps its id): the new value.
    h.put_reply(POOL, &msg_ref("alpha:1", 5), &msg_ref("gamma:3", 9), MINUTE).await.unwrap();
    assert_eq!(h.get_reply(POOL, &msg_ref("alpha:1", 5)).await.unwrap().as_deref(), Some("gamma:3:9"));
}

async fn refs_expire<H: HotState>(h: H) {
    let (mine, theirs) = (msg_ref("alpha:1", 10), msg_ref("beta:2", 20));
    h.put_reply(POOL, &mine, &theirs, Duration::from_millis(40)).await.unwrap();
    h.put_ref(POOL, "msg:alpha:1:searching", "11", MINUTE).await.unwrap();
    // Both ways, and by the name jobs carry as their target.
    assert_eq!(h.get_reply(POOL, &mine).await.unwrap().as_deref(), Some("beta:2:20"));
    assert_eq!(h.get_reply(POOL, &theirs).await.unwrap().as_deref(), Some("alpha:1:10"));
    assert_eq!(h.get_ref(POOL, &reply_ref(&mine)).await.unwrap().as_deref(), Some("beta:2:20"));
    assert_eq!(h.get_ref("us-chat", "rm:alpha:1:10").await.unwrap(), None, "pools are separate");
    assert_eq!(h.get_reply(POOL, &msg_ref("alpha:1", 11)).await.unwrap(), None, "the bucket's other ids are not set");
    assert_eq!(h.get_reply(POOL, &msg_ref("alpha:3", 10)).await.unwrap(), None, "members are separate");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(h.get_ref(POOL, "rm:alpha:1:10").await.unwrap(), None);
    assert_eq!(h.get_reply(POOL, &theirs).await.unwrap(), None);
    assert_eq!(h.get_ref(POOL, "msg:alpha:1:searching").await.unwrap().as_deref(), Some("11"));
    // Overwritten, then deleted.
    h.put_ref(POOL, "msg:alpha:1:searching", "12", MINUTE).await.unwrap();
    assert_eq!(h.get_ref(POOL, "msg:alpha:1:searching").await.unwrap().as_deref(), Some("12"));
    h.del_ref(POOL, "msg:alpha:1:searching").await.unwrap();
    assert_eq!(h.get_ref(POOL, "msg:alpha:1:searching").await.unwrap(), None);
    h.del_ref(POOL, "never-there").await.unwrap();
}

const MIB: u64 = 1024 * 1024;

fn budget(fleet_bytes: u64, user_bytes: u64) -> MediaBudget {
    MediaBudget { fleet_bytes, user_bytes, user_window: MINUTE }
}

/// Issue 9, defect 1: a blob is written in pieces and read back by range (never whole), its
/// state is known without reading its bytes, and it is deleted — its budget freed — when the
/// last job holding it is done, not an hour later.
async fn a_blob_is_written_in_pieces_read_by_range_and_deleted_with_its_last_holder<H: HotState>(h: H) {
    let bytes: Vec<u8> = (0..=255u8).cycle().take(700_000).collect();
    let b = budget(10 * MIB, 10 * MIB);
    assert_eq!(h.blob_info(POOL, "alpha:f1").await.unwrap(), None);
    assert_eq!(h.reserve_media(POOL, "alpha:f1", 7, bytes.len() as u64, &b, MINUTE).await.unwrap(), MediaGrant::Granted);
    assert_eq!(h.begin_blob(POOL, "alpha:f1", MINUTE, MINUTE).await.unwrap(), BlobStart::Write);
    for piece in bytes.chunks(256 * 1024) {
        h.append_blob(POOL, "alpha:f1", bytes::Bytes::copy_from_slice(piece), MINUTE).await.unwrap();
    }
    assert!(!h.blob_info(POOL, "alpha:f1").await.unwrap().unwrap().complete, "not complete before finish");
    h.finish_blob(POOL, "alpha:f1", bytes.len() as u64, "rm:alpha:7:1", MINUTE).await.unwrap();
    assert_eq!(h.blob_info(POOL, "alpha:f1").await.unwrap(), Some(BlobInfo { size: 700_000, complete: true }));
    assert_eq!(h.blob_info("us-chat", "alpha:f1").await.unwrap(), None, "pools are separate");
    // Read by range, across the pieces' borders; the end is short, past it nothing.
    assert_eq!(h.read_blob(POOL, "alpha:f1", 0, 10).await.unwrap().as_ref(), &bytes[..10]);
    assert_eq!(h.read_blob(POOL, "alpha:f1", 262_000, 1_000).await.unwrap().as_ref(), &bytes[262_000..263_000]);
    assert_eq!(h.read_blob(POOL, "alpha:f1", 699_990, 100).await.unwrap().as_ref(), &bytes[699_990..]);
    assert!(h.read_blob(POOL, "alpha:f1", 800_000, 100).await.unwrap().is_empty());
    // A second message relaying the same file holds it too; the writer sees it complete.
    assert_eq!(h.begin_blob(POOL, "alpha:f1", MINUTE, MINUTE).await.unwrap(), BlobStart::Complete);
    assert!(h.hold_blob(POOL, "alpha:f1", "rm:alpha:7:2", MINUTE).await.unwrap());
    assert!(!h.hold_blob(POOL, "alpha:never", "rm:alpha:7:3", MINUTE).await.unwrap(), "nothing to hold");
    assert_eq!(h.media_reserved().await.unwrap(), 700_000);
    // The first upload is done: the other still needs the bytes.
    assert!(!h.release_blob(POOL, "alpha:f1", "rm:alpha:7:1").await.unwrap());
    assert_eq!(h.read_blob(POOL, "alpha:f1", 0, 3).await.unwrap().as_ref(), &bytes[..3]);
    // The last one: gone, and its budget free.
    assert!(h.release_blob(POOL, "alpha:f1", "rm:alpha:7:2").await.unwrap());
    assert_eq!(h.blob_info(POOL, "alpha:f1").await.unwrap(), None);
    assert!(h.read_blob(POOL, "alpha:f1", 0, 3).await.unwrap().is_empty());
    assert_eq!(h.media_reserved().await.unwrap(), 0);
    // A blob expires with its TTL even if nobody releases it.
    h.begin_blob(POOL, "short", MINUTE, Duration::from_millis(30)).await.unwrap();
    h.append_blob(POOL, "short", bytes::Bytes::from_static(b"\xff\x00"), Duration::from_millis(30)).await.unwrap();
    h.finish_blob(POOL, "short", 2, "rm:x", Duration::from_millis(30)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(h.blob_info(POOL, "short").await.unwrap(), None);
    h.ping().await.unwrap();
}

/// A failed download leaves nothing, and a second writer of the same blob is told it is busy
/// while the first one's lease lasts (then takes it over: the first one died).
async fn a_blob_has_one_writer_and_a_failed_write_leaves_nothing<H: HotState>(h: H) {
    let b = budget(10 * MIB, 10 * MIB);
    h.reserve_media(POOL, "alpha:f2", 7, 1_000, &b, MINUTE).await.unwrap();
    assert_eq!(h.begin_blob(POOL, "alpha:f2", Duration::from_millis(50), MINUTE).await.unwrap(), BlobStart::Write);
    h.append_blob(POOL, "alpha:f2", bytes::Bytes::from_static(b"half"), MINUTE).await.unwrap();
    assert_eq!(h.begin_blob(POOL, "alpha:f2", MINUTE, MINUTE).await.unwrap(), BlobStart::Busy);
    // Nobody may release a blob that is being written.
    assert!(!h.release_blob(POOL, "alpha:f2", "rm:someone").await.unwrap());
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(h.begin_blob(POOL, "alpha:f2", MINUTE, MINUTE).await.unwrap(), BlobStart::Write, "the dead writer's lease ran out");
    assert!(h.read_blob(POOL, "alpha:f2", 0, 10).await.unwrap().is_empty(), "its half-written bytes are gone");
    h.append_blob(POOL, "alpha:f2", bytes::Bytes::from_static(b"abc"), MINUTE).await.unwrap();
    h.drop_blob(POOL, "alpha:f2").await.unwrap();
    assert_eq!(h.blob_info(POOL, "alpha:f2").await.unwrap(), None);
    assert_eq!(h.media_reserved().await.unwrap(), 0, "a dropped blob's budget is free");
}

/// The fleet's byte budget and each user's bytes per window are checked atomically; a retry
/// (the same blob) is not charged twice; a reservation nobody frees (its process died) is
/// freed at its deadline.
async fn the_media_budget_refuses_past_the_fleet_budget_and_the_users_cap<H: HotState>(h: H) {
    let b = budget(50 * MIB, 30 * MIB);
    assert_eq!(h.reserve_media(POOL, "alpha:a", 1, 20 * MIB, &b, MINUTE).await.unwrap(), MediaGrant::Granted);
    assert_eq!(h.reserve_media(POOL, "alpha:a", 1, 20 * MIB, &b, MINUTE).await.unwrap(), MediaGrant::Granted, "held already");
    assert_eq!(h.media_reserved().await.unwrap(), 20 * MIB, "a retry is not charged twice");
    // User 1 has 10 MiB of their 30 left.
    assert_eq!(h.reserve_media(POOL, "alpha:b", 1, 11 * MIB, &b, MINUTE).await.unwrap(), MediaGrant::OverUserCap);
    assert_eq!(h.reserve_media(POOL, "alpha:b", 1, 10 * MIB, &b, MINUTE).await.unwrap(), MediaGrant::Granted);
    // The fleet has 20 MiB left; user 2 asks for 25.
    assert_eq!(h.reserve_media("us-chat", "beta:c", 2, 25 * MIB, &b, MINUTE).await.unwrap(), MediaGrant::OverBudget);
    assert_eq!(h.media_reserved().await.unwrap(), 30 * MIB, "a refusal reserves nothing");
    // A reservation whose holder died is freed at its deadline.
    assert_eq!(h.reserve_media("us-chat", "beta:d", 2, 20 * MIB, &b, Duration::from_millis(50)).await.unwrap(), MediaGrant::Granted);
    assert_eq!(h.reserve_media("us-chat", "beta:e", 3, 1, &b, MINUTE).await.unwrap(), MediaGrant::OverBudget, "the budget is full");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(h.media_reserved().await.unwrap(), 30 * MIB);
    assert_eq!(h.reserve_media("us-chat", "beta:e", 3, MIB, &b, MINUTE).await.unwrap(), MediaGrant::Granted);
    // Deleting a blob frees its reservation.
    h.drop_blob(POOL, "alpha:a").await.unwrap();
    assert_eq!(h.media_reserved().await.unwrap(), 11 * MIB);
}

// ---- inbound queue ---------------------------------------------------------------------

async fn the_inbound_queue_keeps_order_refuses_when_full_and_never_trims<H: HotState>(h: H) {
    assert_eq!(h.inbound_depth(POOL, "alpha").await.unwrap(), 0);
    assert!(h.inbound_read(POOL, "alpha", 10).await.unwrap().is_empty());
    for n in 0..3 {
        assert!(h.inbound_push(POOL, "alpha", &format!("{{\"update_id\":{n}}}"), 3).await.unwrap());
    }
    // Full: refused, and nothing accepted before is dropped.
    assert!(!h.inbound_push(POOL, "alpha", "{\"update_id\":3}", 3).await.unwrap());
    assert_eq!(h.inbound_depth(POOL, "alpha").await.unwrap(), 3);
    // Another bot, another pool: their own queues.
    assert!(h.inbound_push(POOL, "beta", "{}", 3).await.unwrap());
    assert!(h.inbound_push("us-chat", "alpha", "{}", 3).await.unwrap());
    let oldest = h.inbound_read(POOL, "alpha", 2).await.unwrap();
    assert_eq!(oldest.iter().map(|u| u.raw.as_str()).collect::<Vec<_>>(), ["{\"update_id\":0}", "{\"update_id\":1}"]);
    h.inbound_ack(POOL, "alpha", &oldest[0].id).await.unwrap();
    h.inbound_ack(POOL, "alpha", &oldest[0].id).await.unwrap();
    // An id the store never made: no entry removed (Redis may call it an invalid id).
    h.inbound_ack(POOL, "alpha", "no-such-id").await.unwrap_or(());
    assert_eq!(h.inbound_depth(POOL, "alpha").await.unwrap(), 2);
    // Room again: the next push goes behind the rest.
    assert!(h.inbound_push(POOL, "alpha", "{\"update_id\":3}", 3).await.unwrap());
    let rest = h.inbound_read(POOL, "alpha", 10).await.unwrap();
    assert_eq!(rest.iter().map(|u| u.raw.as_str()).collect::<Vec<_>>(), ["{\"update_id\":1}", "{\"update_id\":2}", "{\"update_id\":3}"]);
    for u in &rest {
        h.inbound_ack(POOL, "alpha", &u.id).await.unwrap();
    }
    assert_eq!(h.inbound_depth(POOL, "alpha").await.unwrap(), 0);
    assert_eq!(h.inbound_depth(POOL, "beta").await.unwrap(), 1);
}

async fn redis_hot() -> (RedisHot, TestRedis) {
    let r = TestRedis::create().await.expect("redis");
    (RedisHot::new(r.conn.clone(), Keys::new(r.prefix.clone()), SHARDS), r)
}

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(MemoryHot::new(SHARDS)).await; } )*
        }
        mod redis {
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { let (h, _r) = redis_hot().await; super::$name(h).await; } )*
        }
    };
}

both_stores!(
    a_taken_update_is_busy_for_everyone_else,
    a_done_update_is_never_taken_again,
    an_expired_lease_can_be_taken_by_another_replica,
    a_renewed_lease_outlives_its_first_term_and_a_done_update_stays_done,
    a_released_update_can_be_retried_at_once,
    one_of_many_concurrent_claimers_takes_an_update,
    a_retried_update_keeps_its_first_attempts_clock,
    commit_appends_jobs_and_marks_done_atomically,
    outbox_keeps_per_chat_order_within_a_shard,
    interactive_and_bulk_lanes_are_separate,
    outbox_depth_counts_every_shard_and_lane,
    the_shards_holding_jobs_are_found_in_one_call,
    leases_are_exclusive_and_renewable,
    many_leases_are_taken_and_renewed_in_one_step,
    limiter_paces_per_bot_from_the_first_send,
    the_limiter_says_whether_the_bot_or_the_chat_must_wait,
    a_read_after_a_job_pages_past_it,
    no_one_second_window_exceeds_the_per_bot_rate,
    a_slot_booked_by_its_time_keeps_the_schedule_and_the_paid_budget_is_its_own,
    limiter_paces_one_chat,
    a_refused_send_takes_no_slot,
    hold_sends_blocks_every_caller_until_the_time,
    a_user_rate_limit_allows_the_burst_then_refuses,
    a_timer_fires_when_due_and_not_before,
    timers_fire_oldest_first_up_to_max,
    a_timer_fires_exactly_once_across_concurrent_claimers,
    an_in_flight_timer_whose_lease_ran_out_is_taken_again,
    a_rescheduled_timer_keeps_its_new_time,
    an_unscheduled_timer_never_fires,
    refs_expire,
    the_reply_map_holds_a_chats_messages_in_buckets,
    settling_a_batch_records_its_copies_and_removes_its_jobs,
    a_blob_is_written_in_pieces_read_by_range_and_deleted_with_its_last_holder,
    a_blob_has_one_writer_and_a_failed_write_leaves_nothing,
    the_media_budget_refuses_past_the_fleet_budget_and_the_users_cap,
    the_inbound_queue_keeps_order_refuses_when_full_and_never_trims,
);

#[test]
fn the_default_memory_store_has_16_shards() {
    assert_eq!(MemoryHot::default().outbox_shards(), 16);
}

/// The reply map on Redis is compact (issue 9, defect 14): a chat's entries share bucket
/// hashes that stay listpacks, one key per 64 message ids instead of one per entry; entries
/// release N wrote as keys of their own are still read.
#[tokio::test]
async fn the_reply_map_on_redis_is_bucketed_and_reads_release_n_entries() {
    let (h, r) = redis_hot().await;
    let keys = Keys::new(r.prefix.clone());
    for id in 1..=128 {
        h.put_reply(POOL, &msg_ref("alpha:1", id), &msg_ref("beta:2", id), MINUTE).await.unwrap();
    }
    let mut conn = r.conn.clone();
    let found: Vec<String> = ::redis::cmd("KEYS").arg(format!("{}*rmap*", r.prefix)).query_async(&mut conn).await.unwrap();
    assert_eq!(found.len(), 6, "two members × ids 1..=128 in buckets 0, 1 and 2: {found:?}");
    for key in &found {
        let encoding: String = ::redis::cmd("OBJECT").arg("ENCODING").arg(key).query_async(&mut conn).await.unwrap();
        assert_eq!(encoding, "listpack", "{key}");
        let ttl: i64 = ::redis::cmd("PTTL").arg(key).query_async(&mut conn).await.unwrap();
        assert!(ttl > 0 && ttl <= 60_000, "{key} expires: {ttl}");
    }
    // Release N: one string key per entry.
    let old = msg_ref("alpha:9", 77);
    let _: () = ::redis::cmd("SET").arg(keys.reference(POOL, &reply_ref(&old))).arg("beta:8:88").query_async(&mut conn).await.unwrap();
    assert_eq!(h.get_reply(POOL, &old).await.unwrap().as_deref(), Some("beta:8:88"));
    assert_eq!(h.get_ref(POOL, &reply_ref(&old)).await.unwrap().as_deref(), Some("beta:8:88"));
    r.cleanup().await.unwrap();
}

/// Data in Redis that this code did not write is reported (or dropped), never a panic.
#[tokio::test]
async fn unexpected_data_in_redis_is_reported_as_corrupt() {
    use bot_runtime::hot::HotError;
    let (h, r) = redis_hot().await;
    let keys = Keys::new(r.prefix.clone());
    let mut conn = r.conn.clone();
    let _: () = ::redis::cmd("SET").arg(keys.update(POOL, "alpha", 1)).arg("what").query_async(&mut conn).await.unwrap();
    assert!(matches!(h.claim_update(POOL, "alpha", 1, MINUTE).await, Err(HotError::Corrupt(_))));

    let stream = keys.outbox(POOL, "alpha", 0, Lane::Interactive);
    let _: String = ::redis::cmd("XADD").arg(&stream).arg("*").arg("j").arg("{not json").query_async(&mut conn).await.unwrap();
    assert!(matches!(h.outbox_read(POOL, "alpha", 0, Lane::Interactive, 10).await, Err(HotError::Corrupt(_))));
    assert!(matches!(h.outbox_depth(POOL, "alpha", 0).await, Err(HotError::Corrupt(_))));

    let _: () = ::redis::pipe()
        .cmd("ZADD")
        .arg(keys.timers_due(POOL, "alpha"))
        .arg(1)
        .arg("t")
        .ignore()
        .cmd("HSET")
        .arg(keys.timers_payload(POOL, "alpha"))
        .arg("t")
        .arg("[]")
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    // A payload that is not a timer would fail every firing (and hold its batch back): it is
    // dropped, and the good timers fire.
    h.schedule(POOL, "alpha", &timer("good", 2, 1)).await.unwrap();
    assert_eq!(h.claim_timers(POOL, "alpha", 10, MINUTE, 10).await.unwrap(), vec![timer("good", 2, 1)]);
    let left: u64 = ::redis::cmd("HLEN").arg(keys.timers_payload(POOL, "alpha")).query_async(&mut conn).await.unwrap();
    assert_eq!(left, 1, "only the good one's payload is left");
}

/// Issue 9, defect 14: a handled update leaves one bit in Redis for the dedupe window, not a
/// key (the claim key says "done" only for a rollout's length, for replicas of the previous
/// release), and a mark written by the previous release is still honoured.
#[tokio::test]
async fn done_marks_are_bits_and_the_previous_releases_marks_still_count() {
    let (h, r) = redis_hot().await;
    let keys = Keys::new(r.prefix.clone());
    let mut conn = r.conn.clone();
    let keep = Duration::from_secs(26 * 3600);
    for id in [1_000_000_i64, 1_000_001, 1_032_768] {
        assert_eq!(h.claim_update(POOL, "alpha", id, MINUTE).await.unwrap(), Claim::Taken);
        h.commit(POOL, Marker::Update { bot: "alpha".into(), update_id: id, keep }, &[]).await.unwrap();
        assert_eq!(h.claim_update(POOL, "alpha", id, MINUTE).await.unwrap(), Claim::Done);
    }
    // The claim key is short-lived; the bit lives for the full keep.
    let claim_ttl: i64 = ::redis::cmd("PTTL").arg(keys.update(POOL, "alpha", 1_000_000)).query_async(&mut conn).await.unwrap();
    assert!(claim_ttl > 0 && claim_ttl <= 15 * 60 * 1000, "{claim_ttl}");
    let (segment, _) = keys.update_done(POOL, "alpha", 1_000_000);
    let segment_ttl: i64 = ::redis::cmd("PTTL").arg(&segment).query_async(&mut conn).await.unwrap();
    assert!(segment_ttl > 25 * 3600 * 1000, "{segment_ttl}");
    // Once the claim key is gone, the bit alone says done.
    let _: i64 = ::redis::cmd("DEL").arg(keys.update(POOL, "alpha", 1_000_001)).query_async(&mut conn).await.unwrap();
    assert_eq!(h.claim_update(POOL, "alpha", 1_000_001, MINUTE).await.unwrap(), Claim::Done);
    assert_eq!(h.claim_update(POOL, "alpha", 1_000_002, MINUTE).await.unwrap(), Claim::Taken, "a neighbour's bit is its own");
    // Two updates in different segments: two segment keys, 4 KiB at most each.
    let (other, _) = keys.update_done(POOL, "alpha", 1_032_768);
    assert_ne!(other, segment);
    let bytes: i64 = ::redis::cmd("STRLEN").arg(&segment).query_async(&mut conn).await.unwrap();
    assert!(bytes <= 4096, "{bytes}");
    // A done-mark of the previous release (the claim key itself, for 26 h).
    let _: () = ::redis::cmd("SET").arg(keys.update(POOL, "alpha", 7)).arg("done").query_async(&mut conn).await.unwrap();
    assert_eq!(h.claim_update(POOL, "alpha", 7, MINUTE).await.unwrap(), Claim::Done);
    let appended = Job::to(&bot_runtime::matching::Member::new("alpha", 1), Lane::Interactive, "sendMessage", json!({}));
    h.commit(POOL, Marker::Update { bot: "alpha".into(), update_id: 7, keep }, &[appended]).await.unwrap();
    let (depth, _) = h.outbox_depth(POOL, "alpha", 0).await.unwrap();
    assert_eq!(depth, 0, "an update the previous release committed appends nothing again");
}

/// Issue 9, defect 10: a `rediss://` URL is understood (the client is built with rustls); a
/// server that does not speak TLS gives a clear connection error, not a panic.
#[tokio::test]
async fn a_rediss_url_means_tls() {
    let client = ::redis::Client::open("rediss://127.0.0.1:6379/0").expect("rediss:// is understood");
    let connected = tokio::time::timeout(Duration::from_secs(10), client.get_multiplexed_async_connection()).await;
    match connected {
        Ok(Ok(_)) => panic!("a plain-text Redis accepted a TLS connection"),
        Ok(Err(e)) => assert!(!e.to_string().contains("feature"), "TLS support is compiled in: {e}"),
        Err(_) => {} // the plain-text server never answers the TLS handshake: no connection either
    }
}

/// Issue 9, idle cost: a commit from any process wakes the recipient bot's watchers through
/// pub/sub (so idle consumers need not poll), once per recipient bot, and only that bot's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_wakes_the_recipient_bots_subscribers_through_pubsub() {
    use futures::StreamExt as _;
    let r = TestRedis::create().await.expect("redis");
    let client = ::redis::Client::open(r.url.as_str()).expect("url");
    let h = RedisHot::new(r.conn.clone(), Keys::new(r.prefix.clone()), SHARDS).with_pubsub(client);
    let mut alpha = h.outbox_wakes(POOL, "alpha").await.unwrap().expect("Redis offers wakes");
    let mut beta = h.outbox_wakes(POOL, "beta").await.unwrap().expect("Redis offers wakes");
    // Another replica's store (no pub/sub of its own) commits for alpha.
    let other = RedisHot::new(r.conn.clone(), Keys::new(r.prefix.clone()), SHARDS);
    other.commit(POOL, Marker::None, &[job("alpha", 3, Lane::Interactive, 0), job("alpha", 4, Lane::Interactive, 1)]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), alpha.next()).await.expect("alpha is woken").expect("stream open");
    assert!(tokio::time::timeout(Duration::from_millis(300), alpha.next()).await.is_err(), "one wake per commit and bot, not one per job");
    assert!(tokio::time::timeout(Duration::from_millis(300), beta.next()).await.is_err(), "beta got nothing");
    // Without pub/sub there is no signal (consumers poll).
    assert!(other.outbox_wakes(POOL, "alpha").await.unwrap().is_none());
}

/// A Redis that pauses for longer than the client's default response timeout (0.5 s), as one
/// does during a slow AOF fsync, delays the runtime's commands but does not fail them
/// (`app::REDIS_RESPONSE_TIMEOUT`). On a private `redis-server`, so pausing it disturbs no other
/// test.
#[tokio::test]
async fn a_redis_that_pauses_for_a_second_delays_commands_without_failing_them() {
    let Ok(port) = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()) else {
        panic!("a free port");
    };
    let spawned = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if std::env::var_os("CI").is_none() => return eprintln!("skipped: no redis-server ({e})"),
        Err(e) => panic!("redis-server (.ci/run installs it): {e}"),
    };
    let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match bot_runtime::roles::app::connect_redis(&client).await {
            Ok(conn) => break conn,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "the private Redis never answered: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let mut admin = client.get_multiplexed_async_connection().await.expect("a second connection");
    let _: () = ::redis::cmd("CLIENT").arg("PAUSE").arg(1500).arg("ALL").query_async(&mut admin).await.expect("CLIENT PAUSE");
    let started = std::time::Instant::now();
    let set: ::redis::RedisResult<()> = ::redis::cmd("SET").arg("paused").arg("1").query_async(&mut conn).await;
    let waited = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    assert!(set.is_ok(), "a command during a 1.5 s pause failed after {waited:?}: {set:?}");
    assert!(waited >= Duration::from_millis(1000), "the pause held the command ({waited:?})");
}
