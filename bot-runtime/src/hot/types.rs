//! The values the hot state stores and hands back, shared by every concern and both
//! implementations.

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
    /// Cross-bot media: the blob (see [`Blobs`](super::Blobs)) to upload as multipart field
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
    /// A moderation mirror copy: once sent, its message id is recorded for this chat session
    /// (and sender), so a report can be reviewed with what was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_of: Option<MirrorOf>,
    /// A broadcast's message (the broadcast's id): the sender records what became of it
    /// (delivered, failed, blocked) for the broadcast's counts (docs/ADMIN.md, "Broadcast").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<i64>,
}

/// What a mirror copy belongs to (see [`Job::mirror_of`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorOf {
    pub session_id: i64,
    /// The sender, as a member string (`<bot>:<user>`).
    pub sender: String,
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
            mirror_of: None,
            broadcast: None,
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
    /// This job's hold on the blob ([`Blobs::hold_blob`](super::Blobs::hold_blob)), released
    /// once the job is done so the blob is deleted with its last holder. Release-N jobs have
    /// none (their blobs expire on their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
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
