//! Rate limits, both GCRA (the arithmetic is `gcra.rs`, shared by both implementations): the
//! send limiter every replica of a bot shares towards Telegram, and per-user rate limits on
//! what users may ask of the bot.

use std::time::Duration;

use super::HotResult;

/// What the send limiter answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendSlot {
    /// Zero: the send may go now (both slots are taken). Otherwise how long to wait before
    /// asking again for this chat (nothing is taken): the longer of the two limits' waits.
    pub wait: Duration,
    /// How long the bot-wide limit (or a hold on the bot) alone says to wait: when it is not
    /// zero no chat of the bot may send before it, so a consumer stops asking until then.
    pub bot_wait: Duration,
}

/// The shared send limiter: Telegram's limits per bot and per chat, and its 429 holds.
#[async_trait::async_trait]
pub trait SendLimiter: Send + Sync {
    /// [`reserve_slot`](Self::reserve_slot)'s wait alone.
    #[allow(clippy::too_many_arguments)] // one atomic step needs every limit at once
    async fn reserve_send(
        &self,
        pool: &str,
        bot: &str,
        chat_id: i64,
        per_bot: u32,
        per_chat_per_minute: u32,
        chat_burst: u32,
        now_ms: i64,
    ) -> HotResult<Duration> {
        Ok(self.reserve_slot(pool, bot, chat_id, per_bot, per_chat_per_minute, chat_burst, now_ms).await?.wait)
    }
    /// Reserves one send for `bot` to `chat_id` under both limits (GCRA: per bot `per_bot`
    /// per second without burst, so no one-second window carries more than `per_bot`; per chat
    /// `per_chat_per_minute` per minute with burst `chat_burst`). The slots are taken only when
    /// the answer's `wait` is zero. `per_bot == 0` or `per_chat_per_minute == 0` turns that
    /// limit off (holds still apply); a zero `chat_burst` is taken as 1.
    #[allow(clippy::too_many_arguments)] // one atomic step needs every limit at once
    async fn reserve_slot(
        &self,
        pool: &str,
        bot: &str,
        chat_id: i64,
        per_bot: u32,
        per_chat_per_minute: u32,
        chat_burst: u32,
        now_ms: i64,
    ) -> HotResult<SendSlot>;
    /// Pushes the bot's (and the chat's, if given) next free slot to at least `until_ms`
    /// (after a 429 with retry_after: every replica of the bot waits). Never moves a hold
    /// backwards. The held buckets are empty at `until_ms` and refill at their rates from there.
    async fn hold_sends(&self, pool: &str, bot: &str, chat_id: Option<i64>, until_ms: i64) -> HotResult<()>;
}

/// Per-user rate limits (searches, commands, relayed messages), one bucket per key.
#[async_trait::async_trait]
pub trait RateLimit: Send + Sync {
    /// A token bucket per key (GCRA): `rate` per `per`, burst `burst`. True if allowed (and
    /// counted), false if over. A zero `rate` (or `per`) means no limit; a zero `burst` is 1.
    async fn allow(&self, pool: &str, key: &str, rate: u32, per: Duration, burst: u32, now_ms: i64) -> HotResult<bool>;
}
