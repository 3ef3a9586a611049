//! The outboxes on Redis: one stream per bot, shard and lane; a job is one entry.

use redis::Value;

use super::{RedisHot, stream_entries, unavailable};
use crate::hot::{HotError, HotResult, Job, Lane, Outbox, QueuedJob, WakeStream};

/// The stream field holding a job's JSON (commit.lua writes it).
const JOB_FIELD: &str = "j";

/// Parses one XRANGE reply (`[[id, [field, value, ...]], ...]`) into jobs.
fn parse_entries(reply: Value) -> HotResult<Vec<QueuedJob>> {
    stream_entries(reply, JOB_FIELD, "outbox")?
        .into_iter()
        .map(|(id, json)| {
            let job: Job = serde_json::from_str(&json).map_err(|e| HotError::Corrupt(format!("outbox entry {id}: {e}")))?;
            Ok(QueuedJob { id, job })
        })
        .collect()
}

#[async_trait::async_trait]
impl Outbox for RedisHot {
    fn outbox_shards(&self) -> u32 {
        self.outbox_shards
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
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        // "(id": exclusive start (Redis ≥ 6.2).
        let start = after.map_or_else(|| "-".to_string(), |id| format!("({id}"));
        let reply: Value = redis::cmd("XRANGE")
            .arg(self.outbox_key(pool, bot, shard, lane))
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        parse_entries(reply)
    }

    async fn outbox_ack(&self, pool: &str, bot: &str, shard: u32, lane: Lane, id: &str) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 =
            redis::cmd("XDEL").arg(self.outbox_key(pool, bot, shard, lane)).arg(id).query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn outbox_settle(
        &self,
        pool: &str,
        bot: &str,
        shard: u32,
        lane: Lane,
        ids: &[&str],
        replies: &[(crate::hot::MessageRef, crate::hot::MessageRef)],
        reply_ttl: std::time::Duration,
    ) -> HotResult<()> {
        if ids.is_empty() && replies.is_empty() {
            return Ok(());
        }
        // The batch's reply-map writes and its XDEL in one round trip (the writes first: a
        // failure leaves the jobs queued, to be sent again, never a sent copy without its entry
        // while its job is gone).
        let mut pipe = redis::pipe();
        for (original, copy) in replies {
            self.pipe_reply(&mut pipe, pool, original, copy, reply_ttl);
        }
        if !ids.is_empty() {
            pipe.cmd("XDEL").arg(self.outbox_key(pool, bot, shard, lane)).arg(ids).ignore();
        }
        let mut conn = self.conn.clone();
        let _: () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn outbox_lengths(&self, pool: &str, bot: &str) -> HotResult<Vec<[u64; 2]>> {
        // One round trip of XLENs (O(1) each) for every shard and lane.
        let streams = self.outbox_keys(pool, bot);
        let mut pipe = redis::pipe();
        for s in streams.iter() {
            pipe.cmd("XLEN").arg(s);
        }
        let mut conn = self.conn.clone();
        let lens: Vec<u64> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        if lens.len() != streams.len() {
            return Err(HotError::Corrupt(format!("{} replies to {} XLENs", lens.len(), streams.len())));
        }
        // `outboxes` lists each shard's two lanes together, interactive first.
        Ok(lens.chunks(2).map(|l| [l[0], l.get(1).copied().unwrap_or(0)]).collect())
    }

    async fn outbox_wakes(&self, pool: &str, bot: &str) -> HotResult<Option<WakeStream>> {
        use futures::StreamExt as _;
        let Some(client) = &self.pubsub else { return Ok(None) };
        let mut pubsub = client.get_async_pubsub().await.map_err(unavailable)?;
        pubsub.subscribe(self.keys.outbox_wake(pool, bot)).await.map_err(unavailable)?;
        Ok(Some(Box::pin(pubsub.into_on_message().map(|_| ()))))
    }

    async fn outbox_depth(&self, pool: &str, bot: &str, now_ms: i64) -> HotResult<(u64, i64)> {
        let streams = self.outbox_keys(pool, bot);
        let mut pipe = redis::pipe();
        for s in streams.iter() {
            pipe.cmd("XLEN").arg(s).cmd("XRANGE").arg(s).arg("-").arg("+").arg("COUNT").arg(1);
        }
        let mut conn = self.conn.clone();
        let replies: Vec<Value> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        if replies.len() != streams.len() * 2 {
            return Err(HotError::Corrupt(format!("{} replies to {} commands", replies.len(), streams.len() * 2)));
        }
        let (mut depth, mut oldest) = (0u64, None::<i64>);
        for pair in replies.chunks(2) {
            let [len, first] = pair else { continue };
            match len {
                Value::Int(n) => depth += u64::try_from(*n).unwrap_or(0),
                other => return Err(HotError::Corrupt(format!("XLEN answered {other:?}"))),
            }
            if let Some(q) = parse_entries(first.clone())?.first() {
                oldest = Some(oldest.map_or(q.job.enqueued_ms, |o| o.min(q.job.enqueued_ms)));
            }
        }
        Ok((depth, oldest.map_or(0, |o| (now_ms - o).max(0))))
    }
}
