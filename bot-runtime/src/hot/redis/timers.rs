//! Timers on Redis: a due set, an in-flight set and the payloads per bot; claim_timers.lua fires them.

use std::time::Duration;

use super::{RedisHot, px, to_json, unavailable};
use crate::hot::{HotError, HotResult, Timer, Timers};

fn parse_timer(json: &str) -> HotResult<Timer> {
    serde_json::from_str(json).map_err(|e| HotError::Corrupt(format!("timer payload: {e}")))
}

#[async_trait::async_trait]
impl Timers for RedisHot {
    async fn schedule(&self, pool: &str, bot: &str, timer: &Timer) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .cmd("ZADD")
            .arg(self.keys.timers_due(pool, bot))
            .arg(timer.due_ms)
            .arg(timer.id.as_str())
            .ignore()
            .cmd("HSET")
            .arg(self.keys.timers_payload(pool, bot))
            .arg(timer.id.as_str())
            .arg(to_json(timer)?)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn unschedule(&self, pool: &str, bot: &str, id: &str) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .cmd("ZREM")
            .arg(self.keys.timers_due(pool, bot))
            .arg(id)
            .ignore()
            .cmd("ZREM")
            .arg(self.keys.timers_in_flight(pool, bot))
            .arg(id)
            .ignore()
            .cmd("HDEL")
            .arg(self.keys.timers_payload(pool, bot))
            .arg(id)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn claim_timers(&self, pool: &str, bot: &str, now_ms: i64, lease: Duration, max: usize) -> HotResult<Vec<Timer>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let payloads: Vec<String> = self
            .claim_timers
            .key(self.keys.timers_due(pool, bot))
            .key(self.keys.timers_in_flight(pool, bot))
            .key(self.keys.timers_payload(pool, bot))
            .arg(now_ms)
            .arg(px(lease))
            .arg(max)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        payloads.iter().map(|p| parse_timer(p)).collect()
    }
}
