//! Update dedupe: an update is taken by one replica at a time and, once its effects are
//! committed (see [`Commit`](super::Commit)), never again.

use std::time::Duration;

use super::{Claim, HotResult};

#[async_trait::async_trait]
pub trait Dedupe: Send + Sync {
    /// Takes update `update_id` of `bot` for processing, for `lease`, unless it is done or
    /// another live lease holds it. An expired lease (a crashed replica) can be taken again.
    async fn claim_update(&self, pool: &str, bot: &str, update_id: i64, lease: Duration) -> HotResult<Claim> {
        Ok(self.claim_update_at(pool, bot, update_id, lease, wall_ms()).await?.0)
    }
    /// [`Dedupe::claim_update`], and the update's clock: `now_ms` on its first attempt, the
    /// first attempt's time on a retry after a failed one (kept by
    /// [`Dedupe::release_update_at`]), so every attempt handles the update at the same time
    /// (issue 9, defect 4). After a crash (no release) a retry gets its own time.
    async fn claim_update_at(&self, pool: &str, bot: &str, update_id: i64, lease: Duration, now_ms: i64) -> HotResult<(Claim, i64)>;
    /// Extends the live lease on an update by `lease` (from now) while it is being handled; a
    /// done update, or one whose lease is gone, is left as it is.
    async fn renew_update(&self, pool: &str, bot: &str, update_id: i64, lease: Duration) -> HotResult<()>;
    /// Gives a taken update back after a failed attempt, so the retry need not wait the lease.
    /// Removes whatever lease is on it (leases carry no holder here); a done update stays done.
    async fn release_update(&self, pool: &str, bot: &str, update_id: i64) -> HotResult<()> {
        self.release_update_at(pool, bot, update_id, None).await
    }
    /// [`Dedupe::release_update`], keeping `clock` = (the attempt's time, how long to keep it)
    /// for the update's retries, unless one is kept already.
    async fn release_update_at(&self, pool: &str, bot: &str, update_id: i64, clock: Option<(i64, Duration)>) -> HotResult<()>;
    /// Counts one more failed attempt at the update (not an outage: a failure that repeats
    /// the same way), across replicas; returns the count so far. Forgotten after `keep`.
    async fn note_failure(&self, pool: &str, bot: &str, update_id: i64, keep: Duration) -> HotResult<u32>;
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
