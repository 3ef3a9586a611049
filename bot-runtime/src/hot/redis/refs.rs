//! Small references on Redis: one string key each, with PX.

use std::time::Duration;

use super::{RedisHot, px, unavailable};
use crate::hot::{HotError, HotResult, Refs};

#[async_trait::async_trait]
impl Refs for RedisHot {
    async fn put_ref(&self, pool: &str, name: &str, value: &str, ttl: Duration) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(self.keys.reference(pool, name))
            .arg(value)
            .arg("PX")
            .arg(px(ttl))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_ref(&self, pool: &str, name: &str) -> HotResult<Option<String>> {
        let mut conn = self.conn.clone();
        let v: Option<Vec<u8>> =
            redis::cmd("GET").arg(self.keys.reference(pool, name)).query_async(&mut conn).await.map_err(unavailable)?;
        v.map(|b| String::from_utf8(b).map_err(|_| HotError::Corrupt(format!("ref {name} is not UTF-8")))).transpose()
    }

    async fn del_ref(&self, pool: &str, name: &str) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("DEL").arg(self.keys.reference(pool, name)).query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }
}
