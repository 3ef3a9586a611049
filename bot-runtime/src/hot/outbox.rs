//! The outboxes: per bot, `outbox_shards` shards × two lanes of jobs in order. Jobs are only
//! ever appended by [`Commit`](super::Commit); the bot's outbox consumer reads and acknowledges.

use super::{HotResult, Lane, QueuedJob};

/// See [`Outbox::outbox_wakes`].
pub type WakeStream = std::pin::Pin<Box<dyn futures::Stream<Item = ()> + Send>>;

#[async_trait::async_trait]
pub trait Outbox: super::Refs + Send + Sync {
    /// The shard of a chat: `chat_id.rem_euclid(shards)`.
    fn shard_of(&self, chat_id: i64) -> u32 {
        chat_id.rem_euclid(i64::from(self.outbox_shards())) as u32
    }
    /// How many shards each bot's outbox has (per-chat order holds within a shard).
    fn outbox_shards(&self) -> u32;
    /// Up to `max` oldest unacknowledged jobs of one shard and lane, in order.
    async fn outbox_read(&self, pool: &str, bot: &str, shard: u32, lane: Lane, max: usize) -> HotResult<Vec<QueuedJob>> {
        self.outbox_read_after(pool, bot, shard, lane, None, max).await
    }
    /// Up to `max` oldest unacknowledged jobs of one shard and lane queued after the job `after`
    /// (an id from an earlier read; `None`: from the start), in order. Lets a consumer page past
    /// jobs that must wait without acknowledging them.
    async fn outbox_read_after(
        &self,
        pool: &str,
        bot: &str,
        shard: u32,
        lane: Lane,
        after: Option<&str>,
        max: usize,
    ) -> HotResult<Vec<QueuedJob>>;
    /// Removes a sent (or given-up) job.
    async fn outbox_ack(&self, pool: &str, bot: &str, shard: u32, lane: Lane, id: &str) -> HotResult<()>;
    /// Removes several sent jobs of one stream (the sender settles its batches with
    /// [`Outbox::outbox_settle`], which a store does in one round trip).
    async fn outbox_ack_many(&self, pool: &str, bot: &str, shard: u32, lane: Lane, ids: &[&str]) -> HotResult<()> {
        for id in ids {
            self.outbox_ack(pool, bot, shard, lane, id).await?;
        }
        Ok(())
    }
    /// Settles a batch: records the reply-map entries of the copies it sent (original, copy;
    /// see [`Refs::put_reply`](super::Refs::put_reply)), then removes its sent jobs — in one
    /// round trip where the store can.
    #[allow(clippy::too_many_arguments)]
    async fn outbox_settle(
        &self,
        pool: &str,
        bot: &str,
        shard: u32,
        lane: Lane,
        ids: &[&str],
        replies: &[(super::MessageRef, super::MessageRef)],
        reply_ttl: std::time::Duration,
    ) -> HotResult<()> {
        for (original, copy) in replies {
            self.put_reply(pool, original, copy, reply_ttl).await?;
        }
        self.outbox_ack_many(pool, bot, shard, lane, ids).await
    }
    /// How many jobs each shard of a bot holds, per lane: `[interactive, bulk]` by shard. One
    /// cheap call for all shards (O(1) per stream): what an idle consumer asks instead of
    /// reading every shard, and what egress admission control samples (ingress/admission.rs).
    async fn outbox_lengths(&self, pool: &str, bot: &str) -> HotResult<Vec<[u64; 2]>>;
    /// The shards of a bot that hold jobs (in either lane).
    async fn outbox_busy_shards(&self, pool: &str, bot: &str) -> HotResult<Vec<u32>> {
        Ok(busy_shards(&self.outbox_lengths(pool, bot).await?))
    }
    /// Yields whenever any process committed jobs for the bot (Redis: pub/sub on the bot's wake
    /// channel, a connection of its own); the stream ends if that connection is lost. `None`:
    /// this store has no such signal — only commits of this process exist (embedded store),
    /// and those ring the bot's bell directly.
    async fn outbox_wakes(&self, _pool: &str, _bot: &str) -> HotResult<Option<WakeStream>> {
        Ok(None)
    }
    /// Jobs waiting in all shards and lanes of a bot, and the age of the oldest (ms).
    async fn outbox_depth(&self, pool: &str, bot: &str, now_ms: i64) -> HotResult<(u64, i64)>;
}

/// The shards with jobs in either lane, from [`Outbox::outbox_lengths`].
pub fn busy_shards(lengths: &[[u64; 2]]) -> Vec<u32> {
    lengths.iter().enumerate().filter(|(_, l)| l.iter().any(|n| *n > 0)).map(|(shard, _)| shard as u32).collect()
}
