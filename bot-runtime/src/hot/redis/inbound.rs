//! The inbound queue on Redis: one stream per bot (`…inb:<bot>`, under the pool's hash tag);
//! an update is one entry. The push is one script (push_inbound.lua), so the cap is checked and
//! the entry added atomically — never trimmed.

use redis::Value;

use super::{RedisHot, stream_entries, unavailable};
use crate::hot::{HotResult, Inbound, InboundUpdate};

/// The stream field holding an update's JSON (push_inbound.lua writes it).
const UPDATE_FIELD: &str = "u";

#[async_trait::async_trait]
impl Inbound for RedisHot {
    async fn inbound_push(&self, pool: &str, bot: &str, raw: &str, max: u64) -> HotResult<bool> {
        let mut conn = self.conn.clone();
        let added: i64 = self
            .push_inbound
            .key(self.keys.inbound(pool, bot))
            .arg(max)
            .arg(UPDATE_FIELD)
            .arg(raw)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(added == 1)
    }

    async fn inbound_read(&self, pool: &str, bot: &str, max: usize) -> HotResult<Vec<InboundUpdate>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let reply: Value = redis::cmd("XRANGE")
            .arg(self.keys.inbound(pool, bot))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(stream_entries(reply, UPDATE_FIELD, "inbound")?.into_iter().map(|(id, raw)| InboundUpdate { id, raw }).collect())
    }

    async fn inbound_ack(&self, pool: &str, bot: &str, id: &str) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("XDEL").arg(self.keys.inbound(pool, bot)).arg(id).query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn inbound_depth(&self, pool: &str, bot: &str) -> HotResult<u64> {
        let mut conn = self.conn.clone();
        let n: u64 = redis::cmd("XLEN").arg(self.keys.inbound(pool, bot)).query_async(&mut conn).await.map_err(unavailable)?;
        Ok(n)
    }
}
