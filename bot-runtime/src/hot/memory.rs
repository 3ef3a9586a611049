//! The embedded hot state: the same semantics as the Redis one (same scripts' steps, same GCRA
//! arithmetic), in this process, under one mutex that is never held across an `.await` (every
//! method does its work synchronously). TTLs are deadlines on the monotonic clock, like Redis'
//! PX; an expired entry is dropped when touched, and a sweep (at most every few seconds, run by
//! whichever call comes along) drops the ones nobody touches, so memory stays bounded.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::gcra::{self, SendLimiter};
use super::{Claim, HotResult, HotState, Job, Lane, Marker, QueuedJob, Timer};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpdateMark {
    Lease,
    Done,
}

/// (pool, name): leases, refs, blobs, rate limits.
type Named = (String, String);
/// (pool, bot): timers.
type BotKey = (String, String);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LimiterKey {
    Bot(String, String),
    Chat(String, String, i64),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StreamKey {
    pool: String,
    bot: String,
    shard: u32,
    lane: Lane,
}

/// A sorted set like Redis' ZSET: by score, then by member.
#[derive(Default)]
struct ZSet {
    ordered: BTreeSet<(i64, String)>,
    scores: HashMap<String, i64>,
}

impl ZSet {
    fn add(&mut self, id: &str, score: i64) {
        if let Some(old) = self.scores.insert(id.to_string(), score) {
            self.ordered.remove(&(old, id.to_string()));
        }
        self.ordered.insert((score, id.to_string()));
    }
    fn remove(&mut self, id: &str) {
        if let Some(old) = self.scores.remove(id) {
            self.ordered.remove(&(old, id.to_string()));
        }
    }
    fn score(&self, id: &str) -> Option<i64> {
        self.scores.get(id).copied()
    }
    /// Members with a score <= `max`, lowest first.
    fn up_to(&self, max: i64) -> impl Iterator<Item = &str> {
        self.ordered.iter().take_while(move |(s, _)| *s <= max).map(|(_, id)| id.as_str())
    }
    fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

/// A bot's timers, as in claim_timers.lua: due (id → due ms), in flight (id → lease end ms),
/// payloads.
#[derive(Default)]
struct Timers {
    due: ZSet,
    in_flight: ZSet,
    payloads: HashMap<String, Timer>,
}

impl Timers {
    fn is_empty(&self) -> bool {
        self.due.is_empty() && self.in_flight.is_empty() && self.payloads.is_empty()
    }
}

struct State {
    updates: HashMap<(String, String, i64), Expiring<UpdateMark>>,
    leases: HashMap<Named, Expiring<String>>,
    refs: HashMap<Named, Expiring<String>>,
    blobs: HashMap<Named, Expiring<Bytes>>,
    send_limits: HashMap<LimiterKey, Expiring<SendLimiter>>,
    /// Theoretical arrival times (µs) of the per-key rate limits.
    rate_limits: HashMap<Named, Expiring<i64>>,
    /// Job sequence number → job; empty streams are removed.
    outboxes: HashMap<StreamKey, BTreeMap<u64, Job>>,
    next_job: u64,
    timers: HashMap<BotKey, Timers>,
    last_sweep: Instant,
}

impl State {
    fn new() -> Self {
        Self {
            updates: HashMap::new(),
            leases: HashMap::new(),
            refs: HashMap::new(),
            blobs: HashMap::new(),
            send_limits: HashMap::new(),
            rate_limits: HashMap::new(),
            outboxes: HashMap::new(),
            next_job: 0,
            timers: HashMap::new(),
            last_sweep: Instant::now(),
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.updates.retain(|_, e| e.live(now));
        self.leases.retain(|_, e| e.live(now));
        self.refs.retain(|_, e| e.live(now));
        self.blobs.retain(|_, e| e.live(now));
        self.send_limits.retain(|_, e| e.live(now));
        self.rate_limits.retain(|_, e| e.live(now));
        self.outboxes.retain(|_, s| !s.is_empty());
        self.timers.retain(|_, t| !t.is_empty());
        self.last_sweep = now;
    }

    /// Entries held, expired or not (for tests of the sweep).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.updates.len()
            + self.leases.len()
            + self.refs.len()
            + self.blobs.len()
            + self.send_limits.len()
            + self.rate_limits.len()
            + self.outboxes.len()
            + self.timers.len()
    }

    fn push(&mut self, key: StreamKey, job: Job) {
        self.next_job += 1;
        self.outboxes.entry(key).or_default().insert(self.next_job, job);
    }

    /// The limiter under `key` (a fresh one if none).
    fn limiter(&mut self, key: &LimiterKey, now: Instant) -> SendLimiter {
        live(&mut self.send_limits, key, now).map(|e| e.value).unwrap_or_default()
    }

    /// Stores a limiter, keeping it (at least) `ttl` from now: TTLs only ever grow, as in the
    /// scripts.
    fn store_limiter(&mut self, key: LimiterKey, limiter: SendLimiter, ttl: Duration, now: Instant) {
        let until = deadline(now, ttl);
        match self.send_limits.get_mut(&key) {
            Some(e) if e.live(now) => {
                e.value = limiter;
                e.until = e.until.max(until);
            }
            _ => {
                self.send_limits.insert(key, Expiring { value: limiter, until });
            }
        }
    }
}

impl MemoryHot {
    fn stream(&self, pool: &str, job: &Job) -> StreamKey {
        StreamKey { pool: pool.to_string(), bot: job.bot.clone(), shard: self.shard_of(job.chat_id), lane: job.lane }
    }
}

fn named(pool: &str, name: &str) -> Named {
    (pool.to_string(), name.to_string())
}

#[async_trait::async_trait]
impl HotState for MemoryHot {
    async fn claim_update(&self, pool: &str, bot: &str, update_id: i64, lease: Duration) -> HotResult<Claim> {
        let (mut s, now) = self.lock();
        let key = (pool.to_string(), bot.to_string(), update_id);
        match live(&mut s.updates, &key, now).map(|e| e.value) {
            Some(UpdateMark::Done) => Ok(Claim::Done),
            Some(UpdateMark::Lease) => Ok(Claim::Busy),
            None => {
                s.updates.insert(key, Expiring::new(UpdateMark::Lease, now, lease));
                Ok(Claim::Taken)
            }
        }
    }

    async fn release_update(&self, pool: &str, bot: &str, update_id: i64) -> HotResult<()> {
        let (mut s, now) = self.lock();
        let key = (pool.to_string(), bot.to_string(), update_id);
        if live(&mut s.updates, &key, now).is_some_and(|e| e.value == UpdateMark::Lease) {
            s.updates.remove(&key);
        }
        Ok(())
    }

    async fn commit(&self, pool: &str, marker: Marker, jobs: &[Job]) -> HotResult<()> {
        // Built before locking: the lock only covers the (infallible) changes.
        let entries: Vec<(StreamKey, Job)> = jobs.iter().map(|j| (self.stream(pool, j), j.clone())).collect();
        let (mut s, now) = self.lock();
        if let Marker::Update { bot, update_id, .. } = &marker {
            let key = (pool.to_string(), bot.clone(), *update_id);
            if live(&mut s.updates, &key, now).is_some_and(|e| e.value == UpdateMark::Done) {
                // Committed already (by a holder whose lease outlived ours): effects exist once.
                return Ok(());
            }
        }
        for (key, job) in entries {
            s.push(key, job);
        }
        match marker {
            Marker::Update { bot, update_id, keep } => {
                s.updates.insert((pool.to_string(), bot, update_id), Expiring::new(UpdateMark::Done, now, keep));
            }
            Marker::Timer { bot, id } => {
                let key = (pool.to_string(), bot);
                if let Some(t) = s.timers.get_mut(&key) {
                    t.in_flight.remove(&id);
                    if t.due.score(&id).is_none() {
                        t.payloads.remove(&id);
                    }
                    if t.is_empty() {
                        s.timers.remove(&key);
                    }
                }
            }
            Marker::None => {}
        }
        Ok(())
    }

    fn outbox_shards(&self) -> u32 {
        self.shards
    }

    async fn outbox_read(&self, pool: &str, bot: &str, shard: u32, lane: Lane, max: usize) -> HotResult<Vec<QueuedJob>> {
        let (s, _) = self.lock();
        let key = StreamKey { pool: pool.to_string(), bot: bot.to_string(), shard, lane };
        Ok(s.outboxes
            .get(&key)
            .map(|q| q.iter().take(max).map(|(id, job)| QueuedJob { id: id.to_string(), job: job.clone() }).collect())
            .unwrap_or_default())
    }

    async fn outbox_ack(&self, pool: &str, bot: &str, shard: u32, lane: Lane, id: &str) -> HotResult<()> {
        // An id this store never made names no job: nothing to remove.
        let Ok(seq) = id.parse::<u64>() else { return Ok(()) };
        let (mut s, _) = self.lock();
        let key = StreamKey { pool: pool.to_string(), bot: bot.to_string(), shard, lane };
        if let Some(q) = s.outboxes.get_mut(&key) {
            q.remove(&seq);
            if q.is_empty() {
                s.outboxes.remove(&key);
            }
        }
        Ok(())
    }

    async fn outbox_depth(&self, pool: &str, bot: &str, now_ms: i64) -> HotResult<(u64, i64)> {
        let (s, _) = self.lock();
        let (mut depth, mut oldest) = (0u64, None::<i64>);
        for shard in 0..self.shards {
            for lane in [Lane::Interactive, Lane::Bulk] {
                let key = StreamKey { pool: pool.to_string(), bot: bot.to_string(), shard, lane };
                if let Some(q) = s.outboxes.get(&key) {
                    depth += q.len() as u64;
                    if let Some(first) = q.values().next() {
                        oldest = Some(oldest.map_or(first.enqueued_ms, |o| o.min(first.enqueued_ms)));
                    }
                }
            }
        }
        Ok((depth, oldest.map_or(0, |o| (now_ms - o).max(0))))
    }

    async fn lease(&self, pool: &str, name: &str, holder: &str, ttl: Duration) -> HotResult<bool> {
        let (mut s, now) = self.lock();
        let key = named(pool, name);
        match live(&mut s.leases, &key, now) {
            Some(e) if e.value == holder => {
                e.until = deadline(now, ttl);
                Ok(true)
            }
            Some(_) => Ok(false),
            None => {
                s.leases.insert(key, Expiring::new(holder.to_string(), now, ttl));
                Ok(true)
            }
        }
    }

    async fn unlease(&self, pool: &str, name: &str, holder: &str) -> HotResult<()> {
        let (mut s, now) = self.lock();
        let key = named(pool, name);
        if live(&mut s.leases, &key, now).is_some_and(|e| e.value == holder) {
            s.leases.remove(&key);
        }
        Ok(())
    }

    async fn reserve_send(
        &self,
        pool: &str,
        bot: &str,
        chat_id: i64,
        per_bot: u32,
        per_chat_per_minute: u32,
        chat_burst: u32,
        now_ms: i64,
    ) -> HotResult<Duration> {
        let (bot_interval, bot_tolerance) = gcra::per_bot(per_bot);
        let (chat_interval, chat_tolerance) = gcra::per_chat(per_chat_per_minute, chat_burst);
        let now_us = now_ms.saturating_mul(1000);
        let bot_key = LimiterKey::Bot(pool.to_string(), bot.to_string());
        let chat_key = LimiterKey::Chat(pool.to_string(), bot.to_string(), chat_id);
        let (mut s, now) = self.lock();
        let bot_limiter = s.limiter(&bot_key, now);
        let chat_limiter = s.limiter(&chat_key, now);
        let (bot_at, bot_tat) = bot_limiter.check(bot_interval, bot_tolerance, now_us);
        let (chat_at, chat_tat) = chat_limiter.check(chat_interval, chat_tolerance, now_us);
        let at = bot_at.max(chat_at);
        if at > now_us {
            return Ok(ms(gcra::ceil_ms(at - now_us)));
        }
        for (key, limiter, tat, tolerance) in
            [(bot_key, bot_limiter, bot_tat, bot_tolerance), (chat_key, chat_limiter, chat_tat, chat_tolerance)]
        {
            if let Some(tat) = tat {
                let limiter = SendLimiter { tat_us: tat, ..limiter };
                let ttl = gcra::ceil_ms(limiter.relevant_until_us(tolerance) - now_us) + gcra::MARGIN_MS;
                s.store_limiter(key, limiter, ms(ttl), now);
            }
        }
        Ok(Duration::ZERO)
    }

    async fn hold_sends(&self, pool: &str, bot: &str, chat_id: Option<i64>, until_ms: i64) -> HotResult<()> {
        let ttl = ms(until_ms.saturating_sub(system_now_ms()).max(0).saturating_add(gcra::MARGIN_MS));
        let mut keys = vec![LimiterKey::Bot(pool.to_string(), bot.to_string())];
        if let Some(chat) = chat_id {
            keys.push(LimiterKey::Chat(pool.to_string(), bot.to_string(), chat));
        }
        let (mut s, now) = self.lock();
        for key in keys {
            let mut limiter = s.limiter(&key, now);
            limiter.hold_ms = limiter.hold_ms.max(until_ms);
            s.store_limiter(key, limiter, ttl, now);
        }
        Ok(())
    }

    async fn allow(&self, pool: &str, key: &str, rate: u32, per: Duration, burst: u32, now_ms: i64) -> HotResult<bool> {
        let (interval, tolerance) = gcra::params(rate, per, burst);
        if interval == 0 {
            return Ok(true);
        }
        let now_us = now_ms.saturating_mul(1000);
        let key = named(pool, key);
        let (mut s, now) = self.lock();
        let tat = live(&mut s.rate_limits, &key, now).map_or(0, |e| e.value);
        if now_us < tat.saturating_sub(tolerance) {
            return Ok(false);
        }
        let tat = tat.max(now_us).saturating_add(interval);
        let ttl = ms(gcra::ceil_ms(tat - now_us) + gcra::MARGIN_MS);
        s.rate_limits.insert(key, Expiring::new(tat, now, ttl));
        Ok(true)
    }

    async fn schedule(&self, pool: &str, bot: &str, timer: &Timer) -> HotResult<()> {
        let timer = timer.clone();
        let (mut s, _) = self.lock();
        let t = s.timers.entry((pool.to_string(), bot.to_string())).or_default();
        t.due.add(&timer.id, timer.due_ms);
        t.payloads.insert(timer.id.clone(), timer);
        Ok(())
    }

    async fn unschedule(&self, pool: &str, bot: &str, id: &str) -> HotResult<()> {
        let (mut s, _) = self.lock();
        let key = (pool.to_string(), bot.to_string());
        if let Some(t) = s.timers.get_mut(&key) {
            t.due.remove(id);
            t.in_flight.remove(id);
            t.payloads.remove(id);
            if t.is_empty() {
                s.timers.remove(&key);
            }
        }
        Ok(())
    }

    async fn claim_timers(&self, pool: &str, bot: &str, now_ms: i64, lease: Duration, max: usize) -> HotResult<Vec<Timer>> {
        let lease_end = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1));
        let (mut s, _) = self.lock();
        let Some(t) = s.timers.get_mut(&(pool.to_string(), bot.to_string())) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        // In flight, lease ran out (its replica died): fire again (see claim_timers.lua).
        let expired: Vec<String> = t.in_flight.up_to(now_ms).take(max).map(str::to_string).collect();
        for id in expired {
            match t.payloads.get(&id) {
                Some(p) => {
                    out.push(p.clone());
                    t.in_flight.add(&id, lease_end);
                    if t.due.score(&id).is_some_and(|d| d <= now_ms) {
                        t.due.remove(&id);
                    }
                }
                None => t.in_flight.remove(&id),
            }
        }
        // Due, oldest first, skipping ids still in flight (they stay due, in place).
        let due: Vec<String> =
            t.due.up_to(now_ms).filter(|id| t.in_flight.score(id).is_none()).take(max - out.len()).map(str::to_string).collect();
        for id in due {
            t.due.remove(&id);
            if let Some(p) = t.payloads.get(&id) {
                out.push(p.clone());
                t.in_flight.add(&id, lease_end);
            }
        }
        Ok(out)
    }

    async fn put_ref(&self, pool: &str, name: &str, value: &str, ttl: Duration) -> HotResult<()> {
        let (mut s, now) = self.lock();
        s.refs.insert(named(pool, name), Expiring::new(value.to_string(), now, ttl));
        Ok(())
    }

    async fn get_ref(&self, pool: &str, name: &str) -> HotResult<Option<String>> {
        let (mut s, now) = self.lock();
        Ok(live(&mut s.refs, &named(pool, name), now).map(|e| e.value.clone()))
    }

    async fn del_ref(&self, pool: &str, name: &str) -> HotResult<()> {
        let (mut s, _) = self.lock();
        s.refs.remove(&named(pool, name));
        Ok(())
    }

    async fn put_blob(&self, pool: &str, id: &str, bytes: Bytes, ttl: Duration) -> HotResult<()> {
        let (mut s, now) = self.lock();
        s.blobs.insert(named(pool, id), Expiring::new(bytes, now, ttl));
        Ok(())
    }

    async fn get_blob(&self, pool: &str, id: &str) -> HotResult<Option<Bytes>> {
        let (mut s, now) = self.lock();
        Ok(live(&mut s.blobs, &named(pool, id), now).map(|e| e.value.clone()))
    }

    async fn ping(&self) -> HotResult<()> {
        Ok(())
    }

    async fn adopt_legacy_pool(&self, _legacy: &str, _pool: &str) -> HotResult<u64> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sweep_drops_expired_entries_nobody_touches() {
        let hot = MemoryHot::new(4);
        let short = Duration::from_millis(5);
        for i in 0..100 {
            hot.claim_update("p", "alpha", i, short).await.unwrap();
            hot.put_ref("p", &format!("r{i}"), "v", short).await.unwrap();
            hot.put_blob("p", &format!("b{i}"), Bytes::from_static(b"x"), short).await.unwrap();
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
        };
        hot.commit("p", Marker::Timer { bot: "alpha".into(), id: "t".into() }, std::slice::from_ref(&job)).await.unwrap();
        let queued = hot.outbox_read("p", "alpha", 1, Lane::Bulk, 10).await.unwrap();
        hot.outbox_ack("p", "alpha", 1, Lane::Bulk, &queued[0].id).await.unwrap();
        assert_eq!(hot.state.lock().unwrap().entries(), 0);
    }
}
