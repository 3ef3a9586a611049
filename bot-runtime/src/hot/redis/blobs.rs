//! Media blobs on Redis: one binary string key each, with PX.

use std::time::Duration;

use bytes::Bytes;

use super::{RedisHot, px, unavailable};
use crate::hot::{Blobs, HotResult};

#[async_trait::async_trait]
impl Blobs for RedisHot {
    async fn put_blob(&self, pool: &str, id: &str, bytes: Bytes, ttl: Duration) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(self.keys.blob(pool, id))
            .arg(bytes.as_ref())
            .arg("PX")
            .arg(px(ttl))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_blob(&self, pool: &str, id: &str) -> HotResult<Option<Bytes>> {
        let mut conn = self.conn.clone();
        let v: Option<Vec<u8>> = redis::cmd("GET").arg(self.keys.blob(pool, id)).query_async(&mut conn).await.map_err(unavailable)?;
        Ok(v.map(Bytes::from))
    }
}
