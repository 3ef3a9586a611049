//! The send limiter and per-user rate limits in memory: the steps of reserve_send.lua,
//! hold_sends.lua and allow.lua, with the arithmetic of `gcra.rs`.

use std::time::{Duration, Instant};

use super::{Expiring, MemoryHot, State, deadline, live, ms, named, system_now_ms};
use crate::hot::gcra::{self, SendBucket};
use crate::hot::{Budget, HotResult, RateLimit, SendLimiter, SendSlot};

/// Whose bucket: a bot's, or one chat's with a bot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum LimiterKey {
    Bot(String, String),
    /// A bot's paid-broadcast budget ([`Budget::Paid`]).
    PaidBot(String, String),
    Chat(String, String, i64),
}

impl State {
    /// The limiter under `key` (a fresh one if none).
    fn limiter(&mut self, key: &LimiterKey, now: Instant) -> SendBucket {
        live(&mut self.send_limits, key, now).map(|e| e.value).unwrap_or_default()
    }

    /// Stores a limiter, keeping it (at least) `ttl` from now: TTLs only ever grow, as in the
    /// scripts.
    fn store_limiter(&mut self, key: LimiterKey, limiter: SendBucket, ttl: Duration, now: Instant) {
        let until = deadline(now, ttl);
        match self.send_limits.get_mut(&key) {
            Some(e) if e.live(now) => {
                e.value = limiter;
                e.until = e.until.max(until);
            }
            _ => {
                self.send_limits.insert(key, Expiring { value: limiter, until });
            }
        }
    }
}

fn bot_key(pool: &str, bot: &str, budget: Budget) -> LimiterKey {
    match budget {
        Budget::Free => LimiterKey::Bot(pool.to_string(), bot.to_string()),
        Budget::Paid => LimiterKey::PaidBot(pool.to_string(), bot.to_string()),
    }
}

#[async_trait::async_trait]
impl SendLimiter for MemoryHot {
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
        let bot_key = bot_key(pool, bot, budget);
        let chat_key = LimiterKey::Chat(pool.to_string(), bot.to_string(), chat_id);
        let (mut s, now) = self.lock();
        let bot_limiter = s.limiter(&bot_key, now);
        let chat_limiter = s.limiter(&chat_key, now);
        let (bot_at, bot_tat) = bot_limiter.check(bot_interval, bot_tolerance, now_us);
        let (chat_at, chat_tat) = chat_limiter.check(chat_interval, chat_tolerance, now_us);
        let at = bot_at.max(chat_at);
        if at > now_us {
            let wait = |at: i64| ms(gcra::ceil_ms(at - now_us).max(0));
            return Ok(SendSlot { wait: wait(at), bot_wait: wait(bot_at), bot_at_us: if bot_at > now_us { bot_at } else { 0 } });
        }
        for (key, limiter, tat, tolerance) in
            [(bot_key, bot_limiter, bot_tat, bot_tolerance), (chat_key, chat_limiter, chat_tat, chat_tolerance)]
        {
            if let Some(tat) = tat {
                let limiter = SendBucket { tat_us: tat, ..limiter };
                let ttl = gcra::ceil_ms(limiter.relevant_until_us(tolerance) - now_us) + gcra::MARGIN_MS;
                s.store_limiter(key, limiter, ms(ttl), now);
            }
        }
        Ok(SendSlot { wait: Duration::ZERO, bot_wait: Duration::ZERO, bot_at_us: 0 })
    }

    async fn hold_sends_in(&self, pool: &str, bot: &str, budget: Budget, chat_id: Option<i64>, until_ms: i64) -> HotResult<()> {
        let ttl = ms(until_ms.saturating_sub(system_now_ms()).max(0).saturating_add(gcra::MARGIN_MS));
        let mut keys = vec![bot_key(pool, bot, budget)];
        if let Some(chat) = chat_id {
            keys.push(LimiterKey::Chat(pool.to_string(), bot.to_string(), chat));
        }
        let (mut s, now) = self.lock();
        for key in keys {
            let mut limiter = s.limiter(&key, now);
            limiter.hold_ms = limiter.hold_ms.max(until_ms);
            s.store_limiter(key, limiter, ttl, now);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl RateLimit for MemoryHot {
    async fn allow(&self, pool: &str, key: &str, rate: u32, per: Duration, burst: u32, now_ms: i64) -> HotResult<bool> {
        let (interval, tolerance) = gcra::params(rate, per, burst);
        if interval == 0 {
            return Ok(true);
        }
        let now_us = now_ms.saturating_mul(1000);
        let key = named(pool, key);
        let (mut s, now) = self.lock();
        let tat = live(&mut s.rate_limits, &key, now).map_or(0, |e| e.value);
        if now_us < tat.saturating_sub(tolerance) {
            return Ok(false);
        }
        let tat = tat.max(now_us).saturating_add(interval);
        let ttl = ms(gcra::ceil_ms(tat - now_us) + gcra::MARGIN_MS);
        s.rate_limits.insert(key, Expiring::new(tat, now, ttl));
        Ok(true)
    }
}
