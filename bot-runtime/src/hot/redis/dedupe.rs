//! Update dedupe on Redis: claim_update.lua and release_update.lua.

use std::time::Duration;

use super::{RedisHot, px, unavailable};
use crate::hot::{Claim, Dedupe, HotError, HotResult};

#[async_trait::async_trait]
impl Dedupe for RedisHot {
    async fn claim_update(&self, pool: &str, bot: &str, update_id: i64, lease: Duration) -> HotResult<Claim> {
        let mut conn = self.conn.clone();
        let token = format!("lease:{:016x}", rand::random::<u64>());
        let (segment, bit) = self.keys.update_done(pool, bot, update_id);
        let found: String = self
            .claim_update
            .key(self.keys.update(pool, bot, update_id))
            .key(segment)
            .arg(token)
            .arg(px(lease))
            .arg(bit)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match found.as_str() {
            "taken" => Ok(Claim::Taken),
            "done" => Ok(Claim::Done),
            other if other.starts_with("lease:") => Ok(Claim::Busy),
            other => Err(HotError::Corrupt(format!("update marker {bot}/{update_id} is {other:?}"))),
        }
    }

    async fn renew_update(&self, pool: &str, bot: &str, update_id: i64, lease: Duration) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .renew_update
            .key(self.keys.update(pool, bot, update_id))
            .arg(px(lease))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn note_failure(&self, pool: &str, bot: &str, update_id: i64, keep: Duration) -> HotResult<u32> {
        let mut conn = self.conn.clone();
        let key = self.keys.update_failures(pool, bot, update_id);
        let (n,): (i64,) = redis::pipe()
            .incr(&key, 1)
            .ignore()
            .pexpire(&key, px(keep))
            .ignore()
            .get(&key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(u32::try_from(n.max(0)).unwrap_or(u32::MAX))
    }

    async fn release_update(&self, pool: &str, bot: &str, update_id: i64) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = self.release_update.key(self.keys.update(pool, bot, update_id)).invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }
}
