//! The send limiter and per-user rate limits on Redis: reserve_send.lua, hold_sends.lua and
//! allow.lua, with the GCRA parameters from `gcra.rs`.

use std::time::Duration;

use super::{RedisHot, system_now_ms, unavailable};
use crate::hot::gcra;
use crate::hot::{Budget, HotResult, RateLimit, SendLimiter, SendSlot};

impl RedisHot {
    fn bot_limiter(&self, pool: &str, bot: &str, budget: Budget) -> String {
        match budget {
            Budget::Free => self.keys.send_limit_bot(pool, bot),
            Budget::Paid => self.keys.send_limit_bot_paid(pool, bot),
        }
    }
}

#[async_trait::async_trait]
impl SendLimiter for RedisHot {
    async fn reserve_slot_at(
        &self,
        pool: &str,
        bot: &str,
        budget: Budget,
        chat_id: i64,
        per_bot: u32,
        per_chat_per_minute: u32,
        chat_burst: u32,
        now_us: i64,
    ) -> HotResult<SendSlot> {
        let (bot_interval, bot_tolerance) = gcra::per_bot(per_bot);
        let (chat_interval, chat_tolerance) = gcra::per_chat(per_chat_per_minute, chat_burst);
        let mut conn = self.conn.clone();
        let (wait_ms, bot_wait_ms, bot_at_us): (i64, i64, i64) = self
            .reserve_send
            .key(self.bot_limiter(pool, bot, budget))
            .key(self.keys.send_limit_chat(pool, bot, chat_id))
            .arg(now_us)
            .arg(bot_interval)
            .arg(bot_tolerance)
            .arg(chat_interval)
            .arg(chat_tolerance)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
        Ok(SendSlot { wait: ms(wait_ms), bot_wait: ms(bot_wait_ms), bot_at_us })
    }

    async fn hold_sends_in(&self, pool: &str, bot: &str, budget: Budget, chat_id: Option<i64>, until_ms: i64) -> HotResult<()> {
        let mut inv = self.hold_sends.key(self.bot_limiter(pool, bot, budget));
        if let Some(chat) = chat_id {
            inv.key(self.keys.send_limit_chat(pool, bot, chat));
        }
        // No `now` is given here: the hold is kept from the wall clock until it has passed.
        let ttl = (until_ms.saturating_sub(system_now_ms())).max(0).saturating_add(gcra::MARGIN_MS);
        let mut conn = self.conn.clone();
        let _: i64 = inv.arg(until_ms).arg(ttl).invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl RateLimit for RedisHot {
    async fn allow(&self, pool: &str, key: &str, rate: u32, per: Duration, burst: u32, now_ms: i64) -> HotResult<bool> {
        let (interval, tolerance) = gcra::params(rate, per, burst);
        if interval == 0 {
            return Ok(true);
        }
        let mut conn = self.conn.clone();
        let allowed: i64 = self
            .allow
            .key(self.keys.rate_limit(pool, key))
            .arg(now_ms)
            .arg(interval)
            .arg(tolerance)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(allowed == 1)
    }
}
