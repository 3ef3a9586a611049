//! Leases: one holder at a time across replicas (the poller of a bot, each outbox shard).

use std::time::Duration;

use super::HotResult;

#[async_trait::async_trait]
pub trait Leases: Send + Sync {
    /// Takes or renews lease `name` for `holder`; true if `holder` holds it afterwards.
    async fn lease(&self, pool: &str, name: &str, holder: &str, ttl: Duration) -> HotResult<bool>;
    /// Gives a lease up (only if `holder` holds it).
    async fn unlease(&self, pool: &str, name: &str, holder: &str) -> HotResult<()>;
}
