//! PING, and moving release N's keys under the namespaced hash tag (SCAN, then adopt_key.lua per key: rename or merge).

use super::{RedisHot, unavailable};
use crate::hot::{HotError, HotResult, Maintenance};

#[async_trait::async_trait]
impl Maintenance for RedisHot {
    async fn ping(&self) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let pong: String = redis::cmd("PING").query_async(&mut conn).await.map_err(unavailable)?;
        if pong == "PONG" { Ok(()) } else { Err(HotError::Corrupt(format!("PING answered {pong:?}"))) }
    }

    async fn adopt_legacy_pool(&self, legacy: &str, pool: &str) -> HotResult<u64> {
        let (from, to) = (self.keys.pool(legacy), self.keys.pool(pool));
        if from == to {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        let mut moved = 0;
        for key in crate::keys::scan_prefix(&mut conn, &from).await.map_err(unavailable)? {
            let Some(rest) = key.strip_prefix(&from) else { continue };
            // Moved, or merged into what this release already wrote (adopt_key.lua); a key
            // that expired meanwhile is simply gone. (On a Redis Cluster the two hash tags may
            // live on different slots; we deploy one Redis, see DEPLOY.md.)
            let done: i64 = self
                .adopt_key
                .key(&key)
                .key(format!("{to}{rest}"))
                .arg(&from)
                .arg(&to)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            moved += u64::try_from(done).unwrap_or(0);
        }
        Ok(moved)
    }
}
