//! Hot state: everything that changes per update and must be shared by every replica of every
//! bot of a pool — update dedupe, the outboxes, the shared send limiter, timers, the reply map
//! and small references, leases. Two implementations: Redis (any number of replicas,
//! [`redis::RedisHot`]) and in-process memory (the embedded default, [`memory::MemoryHot`]);
//! one behaviour suite (`tests/hot.rs`) runs against both.
//!
//! The central invariant: an update's (or a timer's) *effects* — the outbox jobs it produces —
//! are written in the same atomic step that marks it done ([`HotState::commit`]). So a crash
//! before the commit leaves nothing behind and the retry redoes the work; a crash after it
//! leaves the work done and the retry finds it done. Every key of one pool carries the pool's
//! hash tag (see `keys.rs`), so that step is one MULTI on one Redis Cluster slot.

mod gcra;
pub mod memory;
pub mod redis;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::matching::Member;

pub type HotResult<T> = Result<T, HotError>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HotError {
    #[error("hot state store unavailable: {0}")]
    Unavailable(String),
    #[error("unexpected data in the hot state store: {0}")]
    Corrupt(String),
}

/// The outcome of trying to take an update (or timer) for processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours now, for the lease duration: process it, then `commit`.
    Taken,
    /// Already processed and committed: answer OK, do nothing.
    Done,
    /// Another replica holds a live lease on it: ask Telegram to retry later.
    Busy,
}

/// What `commit` marks done together with the effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// Update `update_id` of `bot`; remembered as done for `keep` (Telegram keeps updates 24 h).
    Update { bot: String, update_id: i64, keep: Duration },
    /// A fired timer (its id as scheduled); removes it from the in-flight set.
    Timer { bot: String, id: String },
    /// Effects with nothing to mark (e.g. produced by an outbox consumer).
    None,
}

/// Interactive traffic (chat relay, answers) always goes before bulk (refreshes, broadcasts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    Interactive,
    Bulk,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Interactive => "i",
            Lane::Bulk => "b",
        }
    }
}

/// A message's identity in one user's chat with one bot: the member and the message id there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    pub member: String,
    pub message_id: i64,
}

/// One Bot API call to be made by the recipient bot's outbox consumer, in per-chat order.
///
/// Kept generic on purpose (method + JSON params): the consumer does not need to know what a
/// relay or a notice is, only how to resolve references, upload blobs and record results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The bot that sends (whose outbox this is).
    pub bot: String,
    /// The private chat (= the user id) it goes to; decides the shard, so order per chat holds.
    pub chat_id: i64,
    pub lane: Lane,
    /// Bot API method, e.g. `sendMessage`, `copyMessage`, `sendPhoto`, `editMessageText`.
    pub method: String,
    /// Its parameters (JSON object), `chat_id` included.
    pub params: Value,
    /// Cross-bot media: the blob (see [`HotState::put_blob`]) to upload as multipart field
    /// `field`, with this file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<Upload>,
    /// The sender's original message: after a successful send the consumer records the pair
    /// (origin ↔ delivered message) in the reply map, so replies stay replies both ways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<MessageRef>,
    /// The message the sender replied to (in the sender's chat); resolved through the reply
    /// map *at send time* (earlier jobs of the chat have been sent by then) into
    /// `reply_parameters` of the recipient's chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageRef>,
    /// Store the sent message's id under this name (for [`Job::target`] of a later job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_as: Option<String>,
    /// Fill `message_id` in params from the id saved under this name; skip the job if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// If the recipient has blocked the bot (403), end the chat this member is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_member: Option<String>,
    /// When it was enqueued (ms since the epoch): outbox age metric and latency.
    #[serde(default)]
    pub enqueued_ms: i64,
}

impl Job {
    /// A plain call to `to`'s chat through `to`'s bot (no upload, no references).
    pub fn to(to: &Member, lane: Lane, method: &str, params: Value) -> Job {
        Job {
            bot: to.bot.clone(),
            chat_id: to.user,
            lane,
            method: method.into(),
            params,
            upload: None,
            origin: None,
            reply_to: None,
            save_as: None,
            target: None,
            chat_member: None,
            enqueued_ms: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub blob: String,
    pub field: String,
    pub file_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// A job read back from an outbox, with the id the consumer acknowledges.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedJob {
    pub id: String,
    pub job: Job,
}

/// A timer as scheduled; `id` is unique per bot (scheduling the same id again moves it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timer {
    pub id: String,
    pub due_ms: i64,
    pub payload: Value,
}

/// The hot state of one fleet (all pools). Implementations must be safe under any number of
/// concurrent callers and (for Redis) replicas.
#[async_trait::async_trait]
pub trait HotState: Send + Sync + 'static {
    // ---- update dedupe -----------------------------------------------------------------

    /// Takes update `update_id` of `bot` for processing, for `lease`, unless it is done or
    /// another live lease holds it. An expired lease (a crashed replica) can be taken again.
    async fn claim_update(&self, pool: &str, bot: &str, update_id: i64, lease: Duration) -> HotResult<Claim>;
    /// Gives a taken update back after a failed attempt, so the retry need not wait the lease.
    /// Removes whatever lease is on it (leases carry no holder here); a done update stays done.
    async fn release_update(&self, pool: &str, bot: &str, update_id: i64) -> HotResult<()>;

    // ---- the commit --------------------------------------------------------------------

    /// Atomically: appends `jobs` to their bots' outboxes (each to the shard of its chat and
    /// its lane) and marks `marker` done. All jobs' bots are in `pool`.
    ///
    /// An update already marked done (a replica whose lease ran out while it worked, committing
    /// after the one that took it over) gets nothing appended: its effects exist once. A timer
    /// marker takes the timer out of the in-flight set; if it was scheduled again meanwhile it
    /// stays scheduled (new time, new payload).
    async fn commit(&self, pool: &str, marker: Marker, jobs: &[Job]) -> HotResult<()>;

    // ---- outbox ------------------------------------------------------------------------

    /// The shard of a chat: `chat_id.rem_euclid(shards)`.
    fn shard_of(&self, chat_id: i64) -> u32 {
        chat_id.rem_euclid(i64::from(self.outbox_shards())) as u32
    }
    /// How many shards each bot's outbox has (per-chat order holds within a shard).
    fn outbox_shards(&self) -> u32;
    /// Up to `max` oldest unacknowledged jobs of one shard and lane, in order.
    async fn outbox_read(&self, pool: &str, bot: &str, shard: u32, lane: Lane, max: usize) -> HotResult<Vec<QueuedJob>>;
    /// Removes a sent (or given-up) job.
    async fn outbox_ack(&self, pool: &str, bot: &str, shard: u32, lane: Lane, id: &str) -> HotResult<()>;
    /// Jobs waiting in all shards and lanes of a bot, and the age of the oldest (ms).
    async fn outbox_depth(&self, pool: &str, bot: &str, now_ms: i64) -> HotResult<(u64, i64)>;

    // ---- leases (poller, outbox shards) ------------------------------------------------

    /// Takes or renews lease `name` for `holder`; true if `holder` holds it afterwards.
    async fn lease(&self, pool: &str, name: &str, holder: &str, ttl: Duration) -> HotResult<bool>;
    /// Gives a lease up (only if `holder` holds it).
    async fn unlease(&self, pool: &str, name: &str, holder: &str) -> HotResult<()>;

    // ---- shared send limiter -----------------------------------------------------------

    /// Reserves one send for `bot` to `chat_id` under both limits (GCRA: per bot `per_bot`
    /// per second with burst `per_bot`; per chat `per_chat_per_minute` per minute with burst
    /// `chat_burst`). Returns zero when the send may go now (the slot is taken), or how long
    /// to wait before asking again (nothing is taken). `per_bot == 0` or
    /// `per_chat_per_minute == 0` turns that limit off (holds still apply); a zero
    /// `chat_burst` is taken as 1.
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
    ) -> HotResult<Duration>;
    /// Pushes the bot's (and the chat's, if given) next free slot to at least `until_ms`
    /// (after a 429 with retry_after: every replica of the bot waits). Never moves a hold
    /// backwards. The held buckets are empty at `until_ms` and refill at their rates from there.
    async fn hold_sends(&self, pool: &str, bot: &str, chat_id: Option<i64>, until_ms: i64) -> HotResult<()>;

    // ---- per-user rate limits ----------------------------------------------------------

    /// A token bucket per key (GCRA): `rate` per `per`, burst `burst`. True if allowed (and
    /// counted), false if over. A zero `rate` (or `per`) means no limit; a zero `burst` is 1.
    async fn allow(&self, pool: &str, key: &str, rate: u32, per: Duration, burst: u32, now_ms: i64) -> HotResult<bool>;

    // ---- timers ------------------------------------------------------------------------

    /// Schedules (or moves) timer `timer.id` of `bot`.
    async fn schedule(&self, pool: &str, bot: &str, timer: &Timer) -> HotResult<()>;
    async fn unschedule(&self, pool: &str, bot: &str, id: &str) -> HotResult<()>;
    /// Takes up to `max` timers of `bot` due at `now_ms` (and in-flight ones whose lease ran
    /// out: a replica died) for `lease`. Each is fired by one caller; finished with
    /// `commit(Marker::Timer)`. A timer rescheduled while in flight keeps its new due time.
    ///
    /// One firing at a time per id: a timer rescheduled while in flight does not fire again
    /// before that firing is committed (or its lease runs out). A timer whose lease ran out
    /// fires again with its current payload (at least once, not exactly once, if a replica is
    /// slower than its lease).
    async fn claim_timers(&self, pool: &str, bot: &str, now_ms: i64, lease: Duration, max: usize) -> HotResult<Vec<Timer>>;

    // ---- small references with a TTL ---------------------------------------------------

    /// Reply map and saved message ids: `put_ref(name, value, ttl)`, `get_ref(name)`.
    async fn put_ref(&self, pool: &str, name: &str, value: &str, ttl: Duration) -> HotResult<()>;
    async fn get_ref(&self, pool: &str, name: &str) -> HotResult<Option<String>>;
    async fn del_ref(&self, pool: &str, name: &str) -> HotResult<()>;

    // ---- media blobs for cross-bot re-upload -------------------------------------------

    async fn put_blob(&self, pool: &str, id: &str, bytes: bytes::Bytes, ttl: Duration) -> HotResult<()>;
    async fn get_blob(&self, pool: &str, id: &str) -> HotResult<Option<bytes::Bytes>>;

    /// Reachability (for /readyz).
    async fn ping(&self) -> HotResult<()>;

    // ---- upgrades ----------------------------------------------------------------------
    /// Moves every key of the pool as release N keyed it (`legacy`, the bare pool name) under
    /// the pool's namespaced id (`pool`); keys already there are kept (never overwritten).
    /// Idempotent; how many keys moved. The embedded store starts empty, so it has none.
    async fn adopt_legacy_pool(&self, legacy: &str, pool: &str) -> HotResult<u64>;
}

/// The reply-map entry name for a message in a member's chat.
pub fn reply_ref(m: &MessageRef) -> String {
    format!("rm:{}:{}", m.member, m.message_id)
}

/// The name a member's message is saved under (e.g. the "searching…" message).
pub fn saved_ref(member: &Member, what: &str) -> String {
    format!("msg:{member}:{what}")
}
