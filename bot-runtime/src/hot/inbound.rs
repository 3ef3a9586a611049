//! The durable inbound queue of a bot: webhook updates taken while the process was overloaded
//! past its 503 grace period (see `ingress/server.rs`), worked in order by the bot's drainer
//! (`ingress/inbound.rs`). Nothing is ever trimmed: a full queue refuses the push (the webhook
//! then answers 503 and Telegram keeps the update), so no accepted update is lost.

use super::HotResult;

/// One queued update: its id in the queue (for [`Inbound::inbound_ack`]) and the update's JSON
/// as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundUpdate {
    pub id: String,
    pub raw: String,
}

#[async_trait::async_trait]
pub trait Inbound: Send + Sync {
    /// Appends an update (its JSON text) to the bot's queue, unless the queue already holds
    /// `max` entries: then nothing is written and the answer is `false`.
    async fn inbound_push(&self, pool: &str, bot: &str, raw: &str, max: u64) -> HotResult<bool>;
    /// Up to `max` oldest unacknowledged updates of the bot, oldest first.
    async fn inbound_read(&self, pool: &str, bot: &str, max: usize) -> HotResult<Vec<InboundUpdate>>;
    /// Removes an update that is done with (acknowledging an unknown id does nothing).
    async fn inbound_ack(&self, pool: &str, bot: &str, id: &str) -> HotResult<()>;
    /// Updates waiting in the bot's queue.
    async fn inbound_depth(&self, pool: &str, bot: &str) -> HotResult<u64>;
}
