//! Leases on Redis: lease.lua and unlease.lua.

use std::time::Duration;

use super::{RedisHot, px, unavailable};
use crate::hot::{HotResult, Leases};

#[async_trait::async_trait]
impl Leases for RedisHot {
    async fn lease(&self, pool: &str, name: &str, holder: &str, ttl: Duration) -> HotResult<bool> {
        let mut conn = self.conn.clone();
        let held: i64 =
            self.lease.key(self.keys.lease(pool, name)).arg(holder).arg(px(ttl)).invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(held == 1)
    }

    async fn unlease(&self, pool: &str, name: &str, holder: &str) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = self.unlease.key(self.keys.lease(pool, name)).arg(holder).invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }
}
