//! Leases: one holder at a time across replicas (the poller of a bot, each outbox shard).

use std::time::Duration;

use super::HotResult;

#[async_trait::async_trait]
pub trait Leases: Send + Sync {
    /// Takes or renews lease `name` for `holder`; true if `holder` holds it afterwards.
    async fn lease(&self, pool: &str, name: &str, holder: &str, ttl: Duration) -> HotResult<bool>;
    /// [`Leases::lease`] for each of `names`, in one step where the store can (a replica renews
    /// all its outbox shard leases at once: one round trip, not one per shard).
    async fn lease_many(&self, pool: &str, names: &[String], holder: &str, ttl: Duration) -> HotResult<Vec<bool>> {
        let mut held = Vec::with_capacity(names.len());
        for name in names {
            held.push(self.lease(pool, name, holder, ttl).await?);
        }
        Ok(held)
    }
    /// Gives a lease up (only if `holder` holds it).
    async fn unlease(&self, pool: &str, name: &str, holder: &str) -> HotResult<()>;
}
