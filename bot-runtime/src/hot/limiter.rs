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
    /// When `bot_wait` is not zero: the bot-wide limit's next free slot exactly (µs since the
    /// epoch), so a caller can ask for that slot by its time ([`SendLimiter::reserve_slot_at`]).
    pub bot_at_us: i64,
}

/// Which of a bot's send budgets a send takes (docs/ADMIN.md, "Paid broadcasts"): Telegram's
/// free one (chats, answers, free broadcasts), or the budget of `allow_paid_broadcast` sends,
/// a limiter of its own so a paid broadcast never eats the chats' budget. The per-chat limit
/// is the same for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Budget {
    #[default]
    Free,
    Paid,
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
    /// [`reserve_slot_at`](Self::reserve_slot_at) on the free budget at `now_ms`.
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
    ) -> HotResult<SendSlot> {
        self.reserve_slot_at(pool, bot, Budget::Free, chat_id, per_bot, per_chat_per_minute, chat_burst, now_ms.saturating_mul(1000)).await
    }
    /// Reserves one send for `bot` to `chat_id` under both limits (GCRA: per bot `per_bot`
    /// per second without burst, so no one-second window carries more than `per_bot`; per chat
    /// `per_chat_per_minute` per minute with burst `chat_burst`), at `at_us` (µs since the
    /// epoch): the limiter's clock is the caller's, so a sender asking for a slot it booked
    /// gives the slot's time, and the wake's lateness does not push the schedule (the sends
    /// are still at least one interval apart on that clock). The slots are taken only when the
    /// answer's `wait` is zero. `per_bot == 0` or `per_chat_per_minute == 0` turns that limit
    /// off (holds still apply); a zero `chat_burst` is taken as 1. `budget` picks the bot-wide
    /// limiter (each its own key); the chat's is shared.
    #[allow(clippy::too_many_arguments)] // one atomic step needs every limit at once
    async fn reserve_slot_at(
        &self,
        pool: &str,
        bot: &str,
        budget: Budget,
        chat_id: i64,
        per_bot: u32,
        per_chat_per_minute: u32,
        chat_burst: u32,
        at_us: i64,
    ) -> HotResult<SendSlot>;
    /// [`hold_sends_in`](Self::hold_sends_in) the free budget.
    async fn hold_sends(&self, pool: &str, bot: &str, chat_id: Option<i64>, until_ms: i64) -> HotResult<()> {
        self.hold_sends_in(pool, bot, Budget::Free, chat_id, until_ms).await
    }
    /// Pushes the bot's (`budget`'s limiter) and the chat's, if given, next free slot to at
    /// least `until_ms` (after a 429 with retry_after: every replica of the bot waits). Never
    /// moves a hold backwards. The held buckets are empty at `until_ms` and refill at their
    /// rates from there.
    async fn hold_sends_in(&self, pool: &str, bot: &str, budget: Budget, chat_id: Option<i64>, until_ms: i64) -> HotResult<()>;
}

/// Per-user rate limits (searches, commands, relayed messages), one bucket per key.
#[async_trait::async_trait]
pub trait RateLimit: Send + Sync {
    /// A token bucket per key (GCRA): `rate` per `per`, burst `burst`. True if allowed (and
    /// counted), false if over. A zero `rate` (or `per`) means no limit; a zero `burst` is 1.
    async fn allow(&self, pool: &str, key: &str, rate: u32, per: Duration, burst: u32, now_ms: i64) -> HotResult<bool>;
}
