//! The outboxes in memory: per (pool, bot, shard, lane) a map from a sequence number (the job
//! id, increasing across all streams) to the job.

use super::MemoryHot;
use crate::hot::{HotResult, Lane, Outbox, QueuedJob};

/// One outbox stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct StreamKey {
    pub(super) pool: String,
    pub(super) bot: String,
    pub(super) shard: u32,
    pub(super) lane: Lane,
}

#[async_trait::async_trait]
impl Outbox for MemoryHot {
    fn outbox_shards(&self) -> u32 {
        self.shards
    }

    async fn outbox_read_after(
        &self,
        pool: &str,
        bot: &str,
        shard: u32,
        lane: Lane,
        after: Option<&str>,
        max: usize,
    ) -> HotResult<Vec<QueuedJob>> {
        use std::ops::Bound;
        let start = match after {
            None => Bound::Unbounded,
            // An id this store never made: read from the start.
            Some(id) => id.parse::<u64>().map_or(Bound::Unbounded, Bound::Excluded),
        };
        let (s, _) = self.lock();
        let key = StreamKey { pool: pool.to_string(), bot: bot.to_string(), shard, lane };
        Ok(s.outboxes
            .get(&key)
            .map(|q| {
                q.range((start, Bound::Unbounded)).take(max).map(|(id, job)| QueuedJob { id: id.to_string(), job: job.clone() }).collect()
            })
            .unwrap_or_default())
    }

    async fn outbox_ack(&self, pool: &str, bot: &str, shard: u32, lane: Lane, id: &str) -> HotResult<()> {
        // An id this store never made names no job: nothing to remove.
        let Ok(seq) = id.parse::<u64>() else { return Ok(()) };
        let (mut s, _) = self.lock();
        let key = StreamKey { pool: pool.to_string(), bot: bot.to_string(), shard, lane };
        if let Some(q) = s.outboxes.get_mut(&key) {
            q.remove(&seq);
            if q.is_empty() {
                s.outboxes.remove(&key);
            }
        }
        Ok(())
    }

    async fn outbox_lengths(&self, pool: &str, bot: &str) -> HotResult<Vec<[u64; 2]>> {
        let (s, _) = self.lock();
        Ok((0..self.shards)
            .map(|shard| {
                [Lane::Interactive, Lane::Bulk].map(|lane| {
                    let key = StreamKey { pool: pool.to_string(), bot: bot.to_string(), shard, lane };
                    s.outboxes.get(&key).map_or(0, |q| q.len() as u64)
                })
            })
            .collect())
    }

    async fn outbox_depth(&self, pool: &str, bot: &str, now_ms: i64) -> HotResult<(u64, i64)> {
        let (s, _) = self.lock();
        let (mut depth, mut oldest) = (0u64, None::<i64>);
        for shard in 0..self.shards {
            for lane in [Lane::Interactive, Lane::Bulk] {
                let key = StreamKey { pool: pool.to_string(), bot: bot.to_string(), shard, lane };
                if let Some(q) = s.outboxes.get(&key) {
                    depth += q.len() as u64;
                    if let Some(first) = q.values().next() {
                        oldest = Some(oldest.map_or(first.enqueued_ms, |o| o.min(first.enqueued_ms)));
                    }
                }
            }
        }
        Ok((depth, oldest.map_or(0, |o| (now_ms - o).max(0))))
    }
}
