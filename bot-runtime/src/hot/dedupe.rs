//! Update dedupe: an update is taken by one replica at a time and, once its effects are
//! committed (see [`Commit`](super::Commit)), never again.

use std::time::Duration;

use super::{Claim, HotResult};

#[async_trait::async_trait]
pub trait Dedupe: Send + Sync {
    /// Takes update `update_id` of `bot` for processing, for `lease`, unless it is done or
    /// another live lease holds it. An expired lease (a crashed replica) can be taken again.
    async fn claim_update(&self, pool: &str, bot: &str, update_id: i64, lease: Duration) -> HotResult<Claim>;
    /// Extends the live lease on an update by `lease` (from now) while it is being handled; a
    /// done update, or one whose lease is gone, is left as it is.
    async fn renew_update(&self, pool: &str, bot: &str, update_id: i64, lease: Duration) -> HotResult<()>;
    /// Gives a taken update back after a failed attempt, so the retry need not wait the lease.
    /// Removes whatever lease is on it (leases carry no holder here); a done update stays done.
    async fn release_update(&self, pool: &str, bot: &str, update_id: i64) -> HotResult<()>;
    /// Counts one more failed attempt at the update (not an outage: a failure that repeats
    /// the same way), across replicas; returns the count so far. Forgotten after `keep`.
    async fn note_failure(&self, pool: &str, bot: &str, update_id: i64, keep: Duration) -> HotResult<u32>;
}
