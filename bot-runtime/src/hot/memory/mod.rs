//! The embedded hot state: the same semantics as the Redis one (same scripts' steps, same GCRA
//! arithmetic), in this process, under one mutex that is never held across an `.await` (every
//! method does its work synchronously). TTLs are deadlines on the monotonic clock, like Redis'
//! PX; an expired entry is dropped when touched, and a sweep (at most every few seconds, run by
//! whichever call comes along) drops the ones nobody touches, so memory stays bounded.
//!
//! This file holds the state (every concern's maps, so one sweep sees them all); each
//! concern's trait is implemented in its own file (`dedupe.rs`, `commit.rs`, `outbox.rs`, …),
//! as in `hot/`.

mod blobs;
mod commit;
mod dedupe;
mod inbound;
mod leases;
mod limiter;
mod maintenance;
mod outbox;
mod refs;
mod timers;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Job;
use super::gcra::SendBucket;

/// How often expired entries nobody touches are swept away.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

pub struct MemoryHot {
    shards: u32,
    state: Mutex<State>,
}

impl MemoryHot {
    /// `outbox_shards` is taken as at least 1.
    pub fn new(outbox_shards: u32) -> Self {
        Self { shards: outbox_shards.max(1), state: Mutex::new(State::new()) }
    }

    /// Locks the state (a panic elsewhere while holding it leaves the data consistent: every
    /// change below is made after all checks) and sweeps it if due.
    fn lock(&self) -> (MutexGuard<'_, State>, Instant) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if now.duration_since(state.last_sweep) >= SWEEP_EVERY {
            state.sweep(now);
        }
        (state, now)
    }
}

impl Default for MemoryHot {
    fn default() -> Self {
        Self::new(16)
    }
}

/// A value with a deadline (Redis' PX).
struct Expiring<T> {
    value: T,
    until: Instant,
}

impl<T> Expiring<T> {
    fn new(value: T, now: Instant, ttl: Duration) -> Self {
        Self { value, until: deadline(now, ttl) }
    }
    fn live(&self, now: Instant) -> bool {
        self.until > now
    }
}

fn deadline(now: Instant, ttl: Duration) -> Instant {
    // Like PX: at least 1 ms; "forever" capped at a century.
    let ttl = ttl.max(Duration::from_millis(1));
    now.checked_add(ttl).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

fn ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The live entry under `key`; an expired one is dropped.
fn live<'a, K: std::hash::Hash + Eq, V>(map: &'a mut HashMap<K, Expiring<V>>, key: &K, now: Instant) -> Option<&'a mut Expiring<V>> {
    if map.get(key).is_some_and(|e| !e.live(now)) {
        map.remove(key);
    }
    map.get_mut(key)
}

fn system_now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

use limiter::LimiterKey;
use outbox::StreamKey;
use timers::BotTimers;

/// (pool, name): leases, refs, blobs, rate limits.
type Named = (String, String);
/// (pool, bot): timers, inbound queues.
type BotKey = (String, String);

struct State {
    /// Leases on updates being handled (done-ness is in `done`).
    leases_on_updates: HashMap<(String, String, i64), Expiring<()>>,
    /// Done-marks: (pool, bot, segment) → one bit per update (see `dedupe.rs`).
    done: HashMap<(String, String, i64), Expiring<dedupe::Segment>>,
    /// Failed attempts per update (see `Dedupe::note_failure`).
    update_failures: HashMap<(String, String, i64), Expiring<u32>>,
    /// An update's first attempt's time, kept after a failed attempt (its retries' clock).
    update_clocks: HashMap<(String, String, i64), Expiring<i64>>,
    leases: HashMap<Named, Expiring<String>>,
    refs: HashMap<Named, Expiring<String>>,
    /// The reply map, in buckets, bounded (see `refs.rs`).
    replies: refs::Replies,
    blobs: HashMap<Named, Expiring<blobs::Blob>>,
    media: blobs::MediaLedger,
    send_limits: HashMap<LimiterKey, Expiring<SendBucket>>,
    /// Theoretical arrival times (µs) of the per-key rate limits.
    rate_limits: HashMap<Named, Expiring<i64>>,
    /// Job sequence number → job; empty streams are removed.
    outboxes: HashMap<StreamKey, BTreeMap<u64, Job>>,
    next_job: u64,
    timers: HashMap<BotKey, BotTimers>,
    /// Inbound queues: entry sequence number → the update's JSON; empty queues are removed.
    inbound: HashMap<BotKey, BTreeMap<u64, String>>,
    next_inbound: u64,
    last_sweep: Instant,
}

impl State {
    fn new() -> Self {
        Self {
            leases_on_updates: HashMap::new(),
            done: HashMap::new(),
            update_failures: HashMap::new(),
            update_clocks: HashMap::new(),
            leases: HashMap::new(),
            refs: HashMap::new(),
            replies: refs::Replies::default(),
            blobs: HashMap::new(),
            media: blobs::MediaLedger::default(),
            send_limits: HashMap::new(),
            rate_limits: HashMap::new(),
            outboxes: HashMap::new(),
            next_job: 0,
            timers: HashMap::new(),
            inbound: HashMap::new(),
            next_inbound: 0,
            last_sweep: Instant::now(),
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.leases_on_updates.retain(|_, e| e.live(now));
        self.done.retain(|_, e| e.live(now));
        self.update_failures.retain(|_, e| e.live(now));
        self.update_clocks.retain(|_, e| e.live(now));
        self.leases.retain(|_, e| e.live(now));
        self.refs.retain(|_, e| e.live(now));
        self.replies.sweep(now);
        self.blobs.retain(|_, e| e.live(now));
        self.media.sweep(now);
        self.send_limits.retain(|_, e| e.live(now));
        self.rate_limits.retain(|_, e| e.live(now));
        self.outboxes.retain(|_, s| !s.is_empty());
        self.timers.retain(|_, t| !t.is_empty());
        self.inbound.retain(|_, q| !q.is_empty());
        self.last_sweep = now;
    }

    /// Entries held, expired or not (for tests of the sweep).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.leases_on_updates.len()
            + self.done.len()
            + self.replies.len()
            + self.leases.len()
            + self.refs.len()
            + self.blobs.len()
            + self.media.len()
            + self.send_limits.len()
            + self.rate_limits.len()
            + self.outboxes.len()
            + self.timers.len()
            + self.inbound.len()
    }
}

fn named(pool: &str, name: &str) -> Named {
    (pool.to_string(), name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hot::{Blobs, Commit, Dedupe, Lane, Leases, Marker, Outbox, RateLimit, Refs, Timer, Timers};

    #[tokio::test]
    async fn the_sweep_drops_expired_entries_nobody_touches() {
        let hot = MemoryHot::new(4);
        let short = Duration::from_millis(5);
        for i in 0..100 {
            hot.claim_update("p", "alpha", i, short).await.unwrap();
            hot.put_ref("p", &format!("r{i}"), "v", short).await.unwrap();
            let blob = format!("b{i}");
            hot.begin_blob("p", &blob, short, short).await.unwrap();
            hot.append_blob("p", &blob, bytes::Bytes::from_static(b"x"), short).await.unwrap();
            let budget = crate::hot::MediaBudget { fleet_bytes: 1 << 30, user_bytes: 1 << 20, user_window: short };
            hot.reserve_media("p", &blob, i, 1, &budget, short).await.unwrap();
            hot.lease("p", &format!("l{i}"), "me", short).await.unwrap();
            hot.allow("p", &format!("k{i}"), 1, Duration::from_millis(1), 1, 0).await.unwrap();
        }
        assert!(hot.state.lock().unwrap().entries() >= 500);
        std::thread::sleep(Duration::from_millis(1100 + 10));
        let (mut s, _) = hot.lock();
        s.sweep(Instant::now());
        assert_eq!(s.entries(), 0);
    }

    #[tokio::test]
    async fn committed_timers_and_acked_jobs_leave_nothing_behind() {
        let hot = MemoryHot::new(4);
        let timer = Timer { id: "t".into(), due_ms: 10, payload: serde_json::json!({}) };
        hot.schedule("p", "alpha", &timer).await.unwrap();
        assert_eq!(hot.claim_timers("p", "alpha", 10, Duration::from_secs(1), 10).await.unwrap(), vec![timer]);
        let job = Job {
            bot: "alpha".into(),
            chat_id: 1,
            lane: Lane::Bulk,
            method: "sendMessage".into(),
            params: serde_json::json!({}),
            upload: None,
            origin: None,
            reply_to: None,
            save_as: None,
            target: None,
            chat_member: None,
            enqueued_ms: 0,
            mirror_of: None,
            broadcast: None,
        };
        hot.commit("p", Marker::Timer { bot: "alpha".into(), id: "t".into() }, std::slice::from_ref(&job)).await.unwrap();
        let queued = hot.outbox_read("p", "alpha", 1, Lane::Bulk, 10).await.unwrap();
        hot.outbox_ack("p", "alpha", 1, Lane::Bulk, &queued[0].id).await.unwrap();
        assert_eq!(hot.state.lock().unwrap().entries(), 0);
    }
}
