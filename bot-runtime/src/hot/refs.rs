//! Small references with a TTL: the reply map (a message in one chat ↔ its copy in the
//! partner's) and saved message ids (e.g. the "searching…" message to edit later).

use std::time::Duration;

use super::{HotResult, MessageRef};
use crate::matching::Member;

#[async_trait::async_trait]
pub trait Refs: Send + Sync {
    /// Reply map and saved message ids: `put_ref(name, value, ttl)`, `get_ref(name)`.
    async fn put_ref(&self, pool: &str, name: &str, value: &str, ttl: Duration) -> HotResult<()>;
    async fn get_ref(&self, pool: &str, name: &str) -> HotResult<Option<String>>;
    async fn del_ref(&self, pool: &str, name: &str) -> HotResult<()>;
}

/// The reply-map entry name for a message in a member's chat.
pub fn reply_ref(m: &MessageRef) -> String {
    format!("rm:{}:{}", m.member, m.message_id)
}

/// The name a member's message is saved under (e.g. the "searching…" message).
pub fn saved_ref(member: &Member, what: &str) -> String {
    format!("msg:{member}:{what}")
}
