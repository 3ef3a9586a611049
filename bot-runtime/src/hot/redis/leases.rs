//! Leases on Redis: lease.lua, lease_many.lua and unlease.lua.

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

    async fn lease_many(&self, pool: &str, names: &[String], holder: &str, ttl: Duration) -> HotResult<Vec<bool>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.lease_many.prepare_invoke();
        for name in names {
            inv.key(self.keys.lease(pool, name));
        }
        let mut conn = self.conn.clone();
        let held: Vec<i64> = inv.arg(holder).arg(px(ttl)).invoke_async(&mut conn).await.map_err(unavailable)?;
        if held.len() != names.len() {
            return Err(crate::hot::HotError::Corrupt(format!("{} answers to {} leases", held.len(), names.len())));
        }
        Ok(held.into_iter().map(|h| h == 1).collect())
    }

    async fn unlease(&self, pool: &str, name: &str, holder: &str) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = self.unlease.key(self.keys.lease(pool, name)).arg(holder).invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }
}
