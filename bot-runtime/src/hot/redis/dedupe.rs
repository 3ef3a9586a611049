//! Update dedupe on Redis: claim_update.lua and release_update.lua.

use std::time::Duration;

use super::{RedisHot, px, unavailable};
use crate::hot::{Claim, Dedupe, HotError, HotResult};

#[async_trait::async_trait]
impl Dedupe for RedisHot {
    async fn claim_update_at(&self, pool: &str, bot: &str, update_id: i64, lease: Duration, now_ms: i64) -> HotResult<(Claim, i64)> {
        let mut conn = self.conn.clone();
        let token = format!("lease:{:016x}", rand::random::<u64>());
        let (segment, bit) = self.keys.update_done(pool, bot, update_id);
        let found: String = self
            .claim_update
            .key(self.keys.update(pool, bot, update_id))
            .key(segment)
            .key(self.keys.update_clock(pool, bot, update_id))
            .arg(token)
            .arg(px(lease))
            .arg(bit)
            .arg(now_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match found.as_str() {
            "done" => Ok((Claim::Done, now_ms)),
            other if other.starts_with("lease:") => Ok((Claim::Busy, now_ms)),
            other => match other.strip_prefix("taken:").map(str::parse::<i64>) {
                Some(Ok(at)) => Ok((Claim::Taken, at)),
                _ => Err(HotError::Corrupt(format!("update marker {bot}/{update_id} is {other:?}"))),
            },
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

    async fn release_update_at(&self, pool: &str, bot: &str, update_id: i64, clock: Option<(i64, Duration)>) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let (at, keep) = clock.map_or((String::new(), 1), |(at, keep)| (at.to_string(), px(keep)));
        let _: i64 = self
            .release_update
            .key(self.keys.update(pool, bot, update_id))
            .key(self.keys.update_clock(pool, bot, update_id))
            .arg(at)
            .arg(keep)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
