//! The inbound queue on Redis: one stream per bot (`…inb:<bot>`, under the pool's hash tag);
//! an update is one entry. The push is one script (push_inbound.lua), so the cap is checked and
//! the entry added atomically — never trimmed.

use redis::Value;

use super::{RedisHot, unavailable};
use crate::hot::{HotError, HotResult, Inbound, InboundUpdate};

/// The stream field holding an update's JSON (push_inbound.lua writes it).
const UPDATE_FIELD: &str = "u";

fn bulk_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

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
        let entries = match reply {
            Value::Array(entries) => entries,
            Value::Nil => return Ok(Vec::new()),
            other => return Err(HotError::Corrupt(format!("XRANGE answered {other:?}"))),
        };
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let Value::Array(parts) = entry else {
                return Err(HotError::Corrupt(format!("stream entry is {entry:?}")));
            };
            let [id, Value::Array(fields)] = parts.as_slice() else {
                return Err(HotError::Corrupt(format!("stream entry is {parts:?}")));
            };
            let id = bulk_string(id).ok_or_else(|| HotError::Corrupt(format!("stream entry id is {id:?}")))?;
            let raw = fields
                .chunks(2)
                .find_map(|kv| match kv {
                    [k, v] if bulk_string(k).as_deref() == Some(UPDATE_FIELD) => bulk_string(v),
                    _ => None,
                })
                .ok_or_else(|| HotError::Corrupt(format!("inbound entry {id} has no update")))?;
            out.push(InboundUpdate { id, raw });
        }
        Ok(out)
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
