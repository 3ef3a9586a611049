//! Small references in memory: a string with a deadline for saved ids; the reply map in
//! buckets (as on Redis, see `hot/refs.rs`), at most [`MAX_REPLY_ENTRIES`] entries.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Expiring, MemoryHot, live, named};
use crate::hot::refs::{MAX_REPLY_ENTRIES, reply_bucket, reply_of, reply_value};
use crate::hot::{HotResult, MessageRef, Refs};

/// (pool, member, bucket).
type BucketKey = (Box<str>, Box<str>, i64);

/// The reply map: per bucket, (place in the bucket, the other copy) pairs.
#[derive(Default)]
pub(super) struct Replies {
    buckets: HashMap<BucketKey, Expiring<Vec<(u8, Box<str>)>>>,
    entries: usize,
    cap: usize,
}

impl Replies {
    /// A reply map holding at most `cap` entries.
    #[cfg(test)]
    pub(super) fn with_cap(cap: usize) -> Self {
        Self { cap, ..Self::default() }
    }

    fn cap(&self) -> usize {
        if self.cap == 0 { MAX_REPLY_ENTRIES } else { self.cap }
    }

    fn put(&mut self, pool: &str, of: &MessageRef, other: &MessageRef, ttl: Duration, now: Instant) {
        let (bucket, place) = reply_bucket(of.message_id);
        let key: BucketKey = (pool.into(), of.member.as_str().into(), bucket);
        let mut slots = match self.buckets.remove(&key) {
            Some(e) if e.live(now) => e.value,
            Some(e) => {
                self.entries -= e.value.len();
                Vec::new()
            }
            None => Vec::new(),
        };
        let value: Box<str> = reply_value(other).into();
        match slots.iter_mut().find(|(p, _)| i64::from(*p) == place) {
            Some(slot) => slot.1 = value,
            None => {
                slots.push((place as u8, value));
                self.entries += 1;
            }
        }
        self.buckets.insert(key, Expiring::new(slots, now, ttl));
        if self.entries > self.cap() {
            self.evict(now);
        }
    }

    fn get(&mut self, pool: &str, of: &MessageRef, now: Instant) -> Option<String> {
        let (bucket, place) = reply_bucket(of.message_id);
        let key: BucketKey = (pool.into(), of.member.as_str().into(), bucket);
        if self.buckets.get(&key).is_some_and(|e| !e.live(now)) {
            self.remove(&key);
        }
        let slots = &self.buckets.get(&key)?.value;
        slots.iter().find(|(p, _)| i64::from(*p) == place).map(|(_, v)| v.to_string())
    }

    fn remove(&mut self, key: &BucketKey) {
        if let Some(e) = self.buckets.remove(key) {
            self.entries -= e.value.len();
        }
    }

    /// Over the cap: drops the expired buckets, then the ones written longest ago, down to
    /// nine tenths of the cap (so this sort runs once per tenth of the cap written, not per
    /// write).
    fn evict(&mut self, now: Instant) {
        self.sweep(now);
        let target = self.cap() / 10 * 9;
        if self.entries <= target {
            return;
        }
        let mut by_age: Vec<(Instant, BucketKey)> = self.buckets.iter().map(|(k, e)| (e.until, k.clone())).collect();
        by_age.sort_unstable_by_key(|(until, _)| *until);
        for (_, key) in by_age {
            if self.entries <= target {
                break;
            }
            self.remove(&key);
        }
    }

    pub(super) fn sweep(&mut self, now: Instant) {
        self.buckets.retain(|_, e| e.live(now));
        self.entries = self.buckets.values().map(|e| e.value.len()).sum();
    }

    /// Buckets held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Entries held.
    #[cfg(test)]
    pub(super) fn entries(&self) -> usize {
        self.entries
    }
}

#[async_trait::async_trait]
impl Refs for MemoryHot {
    async fn put_ref(&self, pool: &str, name: &str, value: &str, ttl: Duration) -> HotResult<()> {
        let (mut s, now) = self.lock();
        s.refs.insert(named(pool, name), Expiring::new(value.to_string(), now, ttl));
        Ok(())
    }

    async fn get_ref(&self, pool: &str, name: &str) -> HotResult<Option<String>> {
        if let Some(of) = reply_of(name) {
            return self.get_reply(pool, &of).await;
        }
        let (mut s, now) = self.lock();
        Ok(live(&mut s.refs, &named(pool, name), now).map(|e| e.value.clone()))
    }

    async fn del_ref(&self, pool: &str, name: &str) -> HotResult<()> {
        let (mut s, _) = self.lock();
        s.refs.remove(&named(pool, name));
        Ok(())
    }

    async fn put_reply(&self, pool: &str, a: &MessageRef, b: &MessageRef, ttl: Duration) -> HotResult<()> {
        let (mut s, now) = self.lock();
        s.replies.put(pool, a, b, ttl, now);
        s.replies.put(pool, b, a, ttl, now);
        Ok(())
    }

    async fn get_reply(&self, pool: &str, of: &MessageRef) -> HotResult<Option<String>> {
        let (mut s, now) = self.lock();
        Ok(s.replies.get(pool, of, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(user: i64, id: i64) -> MessageRef {
        MessageRef { member: format!("alpha:{user}"), message_id: id }
    }

    #[test]
    fn the_reply_map_keeps_at_most_its_cap_dropping_what_was_written_longest_ago() {
        let mut r = Replies::with_cap(1_000);
        let start = Instant::now();
        let hour = Duration::from_secs(3600);
        for i in 0..5_000i64 {
            // Later writes expire later, as in the runtime (one TTL for every entry).
            let now = start + Duration::from_millis(i as u64);
            r.put("p", &msg(1 + i % 50, i), &msg(1_000 + i % 50, i), hour, now);
            assert!(r.entries() <= 1_000, "{} entries after {i} writes", r.entries());
        }
        let now = start + Duration::from_secs(5);
        assert_eq!(r.get("p", &msg(1 + 4_999 % 50, 4_999), now), Some(reply_value(&msg(1_000 + 4_999 % 50, 4_999))));
        assert_eq!(r.get("p", &msg(1, 0), now), None, "the oldest entries went first");
        // An entry written again replaces its value and is not counted twice.
        let entries = r.entries();
        r.put("p", &msg(1 + 4_999 % 50, 4_999), &msg(7, 7), hour, now);
        assert_eq!(r.entries(), entries);
        assert_eq!(r.get("p", &msg(1 + 4_999 % 50, 4_999), now), Some(reply_value(&msg(7, 7))));
        // Expired buckets are dropped by the sweep and counted out.
        r.sweep(now + 2 * hour);
        assert_eq!((r.entries(), r.len()), (0, 0));
    }
}
