//! The store itself rather than anything a chat keeps in it: is it reachable, and carrying a
//! previous release's keys over on upgrade.

use super::HotResult;

#[async_trait::async_trait]
pub trait Maintenance: Send + Sync {
    /// Reachability (for /readyz).
    async fn ping(&self) -> HotResult<()>;

    /// Moves every key of the pool as release N keyed it (`legacy`, the bare pool name) under
    /// the pool's namespaced id (`pool`); keys already there are kept (never overwritten).
    /// Idempotent; how many keys moved. The embedded store starts empty, so it has none.
    async fn adopt_legacy_pool(&self, legacy: &str, pool: &str) -> HotResult<u64>;
}
