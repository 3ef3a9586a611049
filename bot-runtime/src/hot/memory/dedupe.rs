//! Update dedupe in memory: a lease per update being handled, and done-ness as bits — one
//! bitmap of [`DONE_SEGMENT_BITS`] consecutive updates of a bot (4 KiB), kept `keep` after its
//! last mark, as on Redis (claim_update.lua): an eighth of a byte per update instead of an
//! entry each (issue 9, defect 14).

use std::time::{Duration, Instant};

use super::{Expiring, MemoryHot, State, live};
use crate::hot::{Claim, Dedupe, HotResult};
use crate::keys::DONE_SEGMENT_BITS;

const WORDS: usize = (DONE_SEGMENT_BITS / 64) as usize;

/// The done-marks of one segment of a bot's updates.
pub(super) type Segment = Box<[u64; WORDS]>;

fn segment_of(update_id: i64) -> (i64, usize, u64) {
    let bit = update_id.rem_euclid(DONE_SEGMENT_BITS) as usize;
    (update_id.div_euclid(DONE_SEGMENT_BITS), bit / 64, 1u64 << (bit % 64))
}

impl State {
    pub(super) fn is_done(&mut self, pool: &str, bot: &str, update_id: i64, now: Instant) -> bool {
        let (segment, word, mask) = segment_of(update_id);
        live(&mut self.done, &(pool.to_string(), bot.to_string(), segment), now).is_some_and(|e| e.value[word] & mask != 0)
    }

    /// Marks the update done (its lease, if any, is over) and keeps its segment `keep` from now.
    pub(super) fn mark_done(&mut self, pool: &str, bot: &str, update_id: i64, keep: Duration, now: Instant) {
        let (segment, word, mask) = segment_of(update_id);
        let key = (pool.to_string(), bot.to_string(), segment);
        let mut bits = match self.done.remove(&key) {
            Some(e) if e.live(now) => e.value,
            _ => Box::new([0u64; WORDS]),
        };
        bits[word] |= mask;
        self.done.insert(key, Expiring::new(bits, now, keep));
        self.leases_on_updates.remove(&(pool.to_string(), bot.to_string(), update_id));
    }
}

#[async_trait::async_trait]
impl Dedupe for MemoryHot {
    async fn claim_update_at(&self, pool: &str, bot: &str, update_id: i64, lease: Duration, now_ms: i64) -> HotResult<(Claim, i64)> {
        let (mut s, now) = self.lock();
        if s.is_done(pool, bot, update_id, now) {
            return Ok((Claim::Done, now_ms));
        }
        let key = (pool.to_string(), bot.to_string(), update_id);
        if live(&mut s.leases_on_updates, &key, now).is_some() {
            return Ok((Claim::Busy, now_ms));
        }
        s.leases_on_updates.insert(key.clone(), Expiring::new((), now, lease));
        let at = live(&mut s.update_clocks, &key, now).map_or(now_ms, |e| e.value);
        Ok((Claim::Taken, at))
    }

    async fn renew_update(&self, pool: &str, bot: &str, update_id: i64, lease: Duration) -> HotResult<()> {
        let (mut s, now) = self.lock();
        let key = (pool.to_string(), bot.to_string(), update_id);
        if live(&mut s.leases_on_updates, &key, now).is_some() {
            s.leases_on_updates.insert(key, Expiring::new((), now, lease));
        }
        Ok(())
    }

    async fn note_failure(&self, pool: &str, bot: &str, update_id: i64, keep: Duration) -> HotResult<u32> {
        let (mut s, now) = self.lock();
        let key = (pool.to_string(), bot.to_string(), update_id);
        let n = live(&mut s.update_failures, &key, now).map_or(0, |e| e.value) + 1;
        s.update_failures.insert(key, Expiring::new(n, now, keep));
        Ok(n)
    }

    async fn release_update_at(&self, pool: &str, bot: &str, update_id: i64, clock: Option<(i64, Duration)>) -> HotResult<()> {
        let (mut s, now) = self.lock();
        let key = (pool.to_string(), bot.to_string(), update_id);
        if live(&mut s.leases_on_updates, &key, now).is_some() {
            s.leases_on_updates.remove(&key);
            if let Some((at, keep)) = clock
                && live(&mut s.update_clocks, &key, now).is_none()
            {
                s.update_clocks.insert(key, Expiring::new(at, now, keep));
            }
        }
        Ok(())
    }
}
