//! The Redis hot state: any number of replicas share it. Every key comes from `keys.rs` and
//! carries its pool's hash tag; every step that must be atomic is one Lua script (the `.lua`
//! files next to this one, each with its KEYS/ARGV and invariant) or one MULTI.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::{Script, Value};

use super::gcra;
use super::{Claim, HotError, HotResult, HotState, Job, Lane, Marker, QueuedJob, Timer};
use crate::keys::Keys;

/// The stream field holding a job's JSON.
const JOB_FIELD: &str = "j";

pub struct RedisHot {
    conn: ConnectionManager,
    keys: Keys,
    outbox_shards: u32,
    claim_update: Script,
    release_update: Script,
    commit: Script,
    lease: Script,
    unlease: Script,
    reserve_send: Script,
    hold_sends: Script,
    allow: Script,
    claim_timers: Script,
}

impl RedisHot {
    /// `outbox_shards` is taken as at least 1.
    pub fn new(conn: ConnectionManager, keys: Keys, outbox_shards: u32) -> Self {
        Self {
            conn,
            keys,
            outbox_shards: outbox_shards.max(1),
            claim_update: Script::new(include_str!("claim_update.lua")),
            release_update: Script::new(include_str!("release_update.lua")),
            commit: Script::new(include_str!("commit.lua")),
            lease: Script::new(include_str!("lease.lua")),
            unlease: Script::new(include_str!("unlease.lua")),
            reserve_send: Script::new(include_str!("reserve_send.lua")),
            hold_sends: Script::new(include_str!("hold_sends.lua")),
            allow: Script::new(include_str!("allow.lua")),
            claim_timers: Script::new(include_str!("claim_timers.lua")),
        }
    }
}

fn unavailable(e: redis::RedisError) -> HotError {
    HotError::Unavailable(e.to_string())
}

/// A TTL for PX: at least 1 ms (PX 0 is an error), at most what an i64 holds.
fn px(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn system_now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

fn bulk_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Parses one XRANGE reply (`[[id, [field, value, ...]], ...]`) into jobs.
fn parse_entries(reply: Value) -> HotResult<Vec<QueuedJob>> {
    let Value::Array(entries) = reply else {
        return match reply {
            Value::Nil => Ok(Vec::new()),
            other => Err(HotError::Corrupt(format!("XRANGE answered {other:?}"))),
        };
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
        let json = fields
            .chunks(2)
            .find_map(|kv| match kv {
                [k, v] if bulk_string(k).as_deref() == Some(JOB_FIELD) => bulk_string(v),
                _ => None,
            })
            .ok_or_else(|| HotError::Corrupt(format!("outbox entry {id} has no job")))?;
        let job: Job = serde_json::from_str(&json).map_err(|e| HotError::Corrupt(format!("outbox entry {id}: {e}")))?;
        out.push(QueuedJob { id, job });
    }
    Ok(out)
}

fn parse_timer(json: &str) -> HotResult<Timer> {
    serde_json::from_str(json).map_err(|e| HotError::Corrupt(format!("timer payload: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> HotResult<String> {
    // Serializing our own types (string keys, JSON values) cannot fail; kept as an error anyway.
    serde_json::to_string(v).map_err(|e| HotError::Corrupt(format!("cannot serialize: {e}")))
}

#[async_trait::async_trait]
impl HotState for RedisHot {
    async fn claim_update(&self, pool: &str, bot: &str, update_id: i64, lease: Duration) -> HotResult<Claim> {
        let mut conn = self.conn.clone();
        let token = format!("lease:{:016x}", rand::random::<u64>());
        let found: String = self
            .claim_update
            .key(self.keys.update(pool, bot, update_id))
            .arg(token)
            .arg(px(lease))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match found.as_str() {
            "taken" => Ok(Claim::Taken),
            "done" => Ok(Claim::Done),
            other if other.starts_with("lease:") => Ok(Claim::Busy),
            other => Err(HotError::Corrupt(format!("update marker {bot}/{update_id} is {other:?}"))),
        }
    }

    async fn release_update(&self, pool: &str, bot: &str, update_id: i64) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = self.release_update.key(self.keys.update(pool, bot, update_id)).invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn commit(&self, pool: &str, marker: Marker, jobs: &[Job]) -> HotResult<()> {
        let mut inv = self.commit.prepare_invoke();
        match &marker {
            Marker::Update { bot, update_id, keep } => {
                inv.key(self.keys.update(pool, bot, *update_id)).arg("update").arg(px(*keep)).arg(1);
            }
            Marker::Timer { bot, id } => {
                inv.key(self.keys.timers_in_flight(pool, bot))
                    .key(self.keys.timers_due(pool, bot))
                    .key(self.keys.timers_payload(pool, bot))
                    .arg("timer")
                    .arg(id.as_str())
                    .arg(3);
            }
            Marker::None => {
                if jobs.is_empty() {
                    return Ok(());
                }
                inv.arg("none").arg("").arg(0);
            }
        }
        for job in jobs {
            inv.key(self.keys.outbox(pool, &job.bot, self.shard_of(job.chat_id), job.lane)).arg(to_json(job)?);
        }
        let mut conn = self.conn.clone();
        let _: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    fn outbox_shards(&self) -> u32 {
        self.outbox_shards
    }

    async fn outbox_read(&self, pool: &str, bot: &str, shard: u32, lane: Lane, max: usize) -> HotResult<Vec<QueuedJob>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let reply: Value = redis::cmd("XRANGE")
            .arg(self.keys.outbox(pool, bot, shard, lane))
            .arg("-")
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
            redis::cmd("XDEL").arg(self.keys.outbox(pool, bot, shard, lane)).arg(id).query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn outbox_depth(&self, pool: &str, bot: &str, now_ms: i64) -> HotResult<(u64, i64)> {
        let streams = self.keys.outboxes(pool, bot, self.outbox_shards);
        let mut pipe = redis::pipe();
        for s in &streams {
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

    async fn lease(&self, pool: &str, name: &str, holder: &str, ttl: Duration) -> HotResult<bool> {
        let mut conn = self.conn.clone();
        let held: i64 =
            self.lease.key(self.keys.lease(pool, name)).arg(holder).arg(px(ttl)).invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(held == 1)
    }

    async fn unlease(&self, pool: &str, name: &str, holder: &str) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = self.unlease.key(self.keys.lease(pool, name)).arg(holder).invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

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
        let (bot_interval, bot_tolerance) = gcra::per_bot(per_bot);
        let (chat_interval, chat_tolerance) = gcra::per_chat(per_chat_per_minute, chat_burst);
        let mut conn = self.conn.clone();
        let wait_ms: i64 = self
            .reserve_send
            .key(self.keys.send_limit_bot(pool, bot))
            .key(self.keys.send_limit_chat(pool, bot, chat_id))
            .arg(now_ms)
            .arg(bot_interval)
            .arg(bot_tolerance)
            .arg(chat_interval)
            .arg(chat_tolerance)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)))
    }

    async fn hold_sends(&self, pool: &str, bot: &str, chat_id: Option<i64>, until_ms: i64) -> HotResult<()> {
        let mut inv = self.hold_sends.key(self.keys.send_limit_bot(pool, bot));
        if let Some(chat) = chat_id {
            inv.key(self.keys.send_limit_chat(pool, bot, chat));
        }
        // No `now` is given here: the hold is kept from the wall clock until it has passed.
        let ttl = (until_ms.saturating_sub(system_now_ms())).max(0).saturating_add(gcra::MARGIN_MS);
        let mut conn = self.conn.clone();
        let _: i64 = inv.arg(until_ms).arg(ttl).invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

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

    async fn put_ref(&self, pool: &str, name: &str, value: &str, ttl: Duration) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(self.keys.reference(pool, name))
            .arg(value)
            .arg("PX")
            .arg(px(ttl))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_ref(&self, pool: &str, name: &str) -> HotResult<Option<String>> {
        let mut conn = self.conn.clone();
        let v: Option<Vec<u8>> =
            redis::cmd("GET").arg(self.keys.reference(pool, name)).query_async(&mut conn).await.map_err(unavailable)?;
        v.map(|b| String::from_utf8(b).map_err(|_| HotError::Corrupt(format!("ref {name} is not UTF-8")))).transpose()
    }

    async fn del_ref(&self, pool: &str, name: &str) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("DEL").arg(self.keys.reference(pool, name)).query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn put_blob(&self, pool: &str, id: &str, bytes: Bytes, ttl: Duration) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(self.keys.blob(pool, id))
            .arg(bytes.as_ref())
            .arg("PX")
            .arg(px(ttl))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_blob(&self, pool: &str, id: &str) -> HotResult<Option<Bytes>> {
        let mut conn = self.conn.clone();
        let v: Option<Vec<u8>> = redis::cmd("GET").arg(self.keys.blob(pool, id)).query_async(&mut conn).await.map_err(unavailable)?;
        Ok(v.map(Bytes::from))
    }

    async fn ping(&self) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let pong: String = redis::cmd("PING").query_async(&mut conn).await.map_err(unavailable)?;
        if pong == "PONG" { Ok(()) } else { Err(HotError::Corrupt(format!("PING answered {pong:?}"))) }
    }

    async fn adopt_legacy_pool(&self, legacy: &str, pool: &str) -> HotResult<u64> {
        let (from, to) = (self.keys.pool(legacy), self.keys.pool(pool));
        if from == to {
            return Ok(0);
        }
        // Pool names are DNS labels: nothing in `from` is a glob character.
        let pattern = format!("{from}*");
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut moved = 0;
        loop {
            let (next, batch): (u64, Vec<String>) =
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query_async(&mut conn).await.map_err(unavailable)?;
            for key in batch {
                let Some(rest) = key.strip_prefix(&from) else { continue };
                // RENAMENX: a key the new release already wrote wins over release N's. (On a
                // Redis Cluster the two hash tags may live on different slots; we deploy one
                // Redis, see DEPLOY.md.) A key that expired meanwhile is simply gone.
                match redis::cmd("RENAMENX").arg(&key).arg(format!("{to}{rest}")).query_async::<i64>(&mut conn).await {
                    Ok(1) => moved += 1,
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), redis::ErrorKind::Server(_)) => {}
                    Err(e) => return Err(unavailable(e)),
                }
            }
            if next == 0 {
                return Ok(moved);
            }
            cursor = next;
        }
    }
}
