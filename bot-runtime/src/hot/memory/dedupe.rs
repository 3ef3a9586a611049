//! Update dedupe in memory: a mark per update, a lease (with its deadline) or done.

use std::time::Duration;

use super::{Expiring, MemoryHot, live};
use crate::hot::{Claim, Dedupe, HotResult};

/// What is known of an update: taken (until the lease's deadline) or done (for the keep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UpdateMark {
    Lease,
    Done,
}

#[async_trait::async_trait]
impl Dedupe for MemoryHot {
    async fn claim_update_at(&self, pool: &str, bot: &str, update_id: i64, lease: Duration, now_ms: i64) -> HotResult<(Claim, i64)> {
        let (mut s, now) = self.lock();
        let key = (pool.to_string(), bot.to_string(), update_id);
        match live(&mut s.updates, &key, now).map(|e| e.value) {
            Some(UpdateMark::Done) => Ok((Claim::Done, now_ms)),
            Some(UpdateMark::Lease) => Ok((Claim::Busy, now_ms)),
            None => {
                s.updates.insert(key.clone(), Expiring::new(UpdateMark::Lease, now, lease));
                let at = live(&mut s.update_clocks, &key, now).map_or(now_ms, |e| e.value);
                Ok((Claim::Taken, at))
            }
        }
    }

    async fn renew_update(&self, pool: &str, bot: &str, update_id: i64, lease: Duration) -> HotResult<()> {
        let (mut s, now) = self.lock();
        let key = (pool.to_string(), bot.to_string(), update_id);
        if live(&mut s.updates, &key, now).is_some_and(|e| e.value == UpdateMark::Lease) {
            s.updates.insert(key, Expiring::new(UpdateMark::Lease, now, lease));
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
        if live(&mut s.updates, &key, now).is_some_and(|e| e.value == UpdateMark::Lease) {
            s.updates.remove(&key);
            if let Some((at, keep)) = clock
                && live(&mut s.update_clocks, &key, now).is_none()
            {
                s.update_clocks.insert(key, Expiring::new(at, now, keep));
            }
        }
        Ok(())
    }
}
