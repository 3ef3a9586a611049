//! Always reachable; nothing of a previous release to adopt (the embedded store starts empty).

use super::MemoryHot;
use crate::hot::{HotResult, Maintenance};

#[async_trait::async_trait]
impl Maintenance for MemoryHot {
    async fn ping(&self) -> HotResult<()> {
        Ok(())
    }

    async fn adopt_legacy_pool(&self, _legacy: &str, _pool: &str) -> HotResult<u64> {
        Ok(0)
    }
}
