//! The Redis hot state: any number of replicas share it. Every key comes from `keys.rs` and
//! carries its pool's hash tag; every step that must be atomic is one Lua script (the `.lua`
//! files next to this one, each with its KEYS/ARGV and invariant) or one MULTI.
//!
//! This file holds the connection, the scripts and what every concern shares; each concern's
//! trait is implemented in its own file (`dedupe.rs`, `commit.rs`, `outbox.rs`, …), as in
//! `hot/`.

mod blobs;
mod commit;
mod dedupe;
mod inbound;
mod leases;
mod limiter;
mod maintenance;
mod outbox;
mod refs;
mod timers;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Script;
use redis::aio::ConnectionManager;

use super::{HotError, HotResult};
use crate::keys::Keys;

pub struct RedisHot {
    conn: ConnectionManager,
    /// Opens the pub/sub connections of [`Outbox::outbox_wakes`](crate::hot::Outbox::outbox_wakes)
    /// (None: no wake signal; consumers poll).
    pubsub: Option<redis::Client>,
    keys: Keys,
    outbox_shards: u32,
    /// Every outbox stream key of a (pool, bot), built once: they are named on every commit,
    /// read, acknowledgement and length check (callgrind: building them was ≈ 3 % of a relayed
    /// message's instructions).
    outbox_keys: std::sync::Mutex<HashMap<String, HashMap<String, Arc<[String]>>>>,
    claim_update: Script,
    release_update: Script,
    renew_update: Script,
    commit: Script,
    lease: Script,
    lease_many: Script,
    unlease: Script,
    reserve_send: Script,
    hold_sends: Script,
    allow: Script,
    claim_timers: Script,
    adopt_key: Script,
    push_inbound: Script,
    blob: Script,
    media_budget: Script,
}

impl RedisHot {
    /// `outbox_shards` is taken as at least 1.
    pub fn new(conn: ConnectionManager, keys: Keys, outbox_shards: u32) -> Self {
        Self {
            conn,
            pubsub: None,
            keys,
            outbox_shards: outbox_shards.max(1),
            outbox_keys: std::sync::Mutex::new(HashMap::new()),
            claim_update: Script::new(include_str!("claim_update.lua")),
            release_update: Script::new(include_str!("release_update.lua")),
            renew_update: Script::new(include_str!("renew_update.lua")),
            commit: Script::new(include_str!("commit.lua")),
            adopt_key: Script::new(include_str!("adopt_key.lua")),
            lease: Script::new(include_str!("lease.lua")),
            lease_many: Script::new(include_str!("lease_many.lua")),
            unlease: Script::new(include_str!("unlease.lua")),
            reserve_send: Script::new(include_str!("reserve_send.lua")),
            hold_sends: Script::new(include_str!("hold_sends.lua")),
            allow: Script::new(include_str!("allow.lua")),
            claim_timers: Script::new(include_str!("claim_timers.lua")),
            push_inbound: Script::new(include_str!("push_inbound.lua")),
            blob: Script::new(include_str!("blob.lua")),
            media_budget: Script::new(include_str!("media_budget.lua")),
        }
    }

    /// The outbox stream keys of a bot: shard by shard, interactive then bulk (as
    /// [`Keys::outboxes`]).
    fn outbox_keys(&self, pool: &str, bot: &str) -> Arc<[String]> {
        let mut cache = self.outbox_keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(keys) = cache.get(pool).and_then(|bots| bots.get(bot)) {
            return keys.clone();
        }
        let keys: Arc<[String]> = self.keys.outboxes(pool, bot, self.outbox_shards).into();
        cache.entry(pool.to_string()).or_default().insert(bot.to_string(), keys.clone());
        keys
    }

    /// One outbox stream's key.
    fn outbox_key(&self, pool: &str, bot: &str, shard: u32, lane: crate::hot::Lane) -> String {
        let lane_index = match lane {
            crate::hot::Lane::Interactive => 0,
            crate::hot::Lane::Bulk => 1,
        };
        match self.outbox_keys(pool, bot).get(shard as usize * 2 + lane_index) {
            Some(key) => key.clone(),
            // A shard past this store's count (never asked by the runtime): built as asked.
            None => self.keys.outbox(pool, bot, shard, lane),
        }
    }

    /// Lets idle consumers wait for commits' wake messages (pub/sub through `client`, the same
    /// Redis) instead of polling.
    pub fn with_pubsub(mut self, client: redis::Client) -> Self {
        self.pubsub = Some(client);
        self
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

fn to_json<T: serde::Serialize>(v: &T) -> HotResult<String> {
    // Serializing our own types (string keys, JSON values) cannot fail; kept as an error anyway.
    serde_json::to_string(v).map_err(|e| HotError::Corrupt(format!("cannot serialize: {e}")))
}

/// The entries of an `XRANGE` reply as (id, value of `field`): one parse for every stream we
/// keep (outbox jobs, inbound updates). An entry without the field is unexpected data.
pub(super) fn stream_entries(reply: redis::Value, field: &str, what: &str) -> HotResult<Vec<(String, String)>> {
    use redis::Value;
    fn bulk_string(v: &Value) -> Option<String> {
        match v {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        }
    }
    let entries = match reply {
        Value::Array(entries) => entries,
        Value::Nil => return Ok(Vec::new()),
        other => return Err(HotError::Corrupt(format!("XRANGE answered {other:?}"))),
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
        let value = fields
            .chunks(2)
            .find_map(|kv| match kv {
                [k, v] if bulk_string(k).as_deref() == Some(field) => bulk_string(v),
                _ => None,
            })
            .ok_or_else(|| HotError::Corrupt(format!("{what} entry {id} has no {field}")))?;
        out.push((id, value));
    }
    Ok(out)
}
