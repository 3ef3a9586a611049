//! Small references with a TTL: the reply map (a message in one chat ↔ its copy in the
//! partner's) and saved message ids (e.g. the "searching…" message to edit later).
//!
//! The reply map is most of what a relayed message leaves behind (issue 9, defect 14), so it is
//! kept compactly: a member's entries are grouped in buckets of [`REPLY_BUCKET_IDS`]
//! consecutive message ids of their chat (Telegram numbers a chat's messages in sequence, both
//! directions), one small hash per bucket on Redis (a listpack: tens of bytes an entry instead
//! of a key each), and the embedded store holds at most [`MAX_REPLY_ENTRIES`].

use std::time::Duration;

use super::{HotResult, MessageRef};
use crate::matching::Member;

/// Message ids of one chat per reply-map bucket. Below Redis' `hash-max-listpack-entries`
/// (128 by default), so every bucket stays a listpack.
pub const REPLY_BUCKET_IDS: i64 = 64;

/// Reply-map entries the embedded store keeps at most (each ≈ 60 B); past it the buckets
/// written longest ago go first. A reply to a message that old is sent without its quote.
pub const MAX_REPLY_ENTRIES: usize = 200_000;

#[async_trait::async_trait]
pub trait Refs: Send + Sync {
    /// Saved message ids: `put_ref(name, value, ttl)`, `get_ref(name)`.
    async fn put_ref(&self, pool: &str, name: &str, value: &str, ttl: Duration) -> HotResult<()>;
    /// A saved id, or (for a [`reply_ref`] name) the reply-map entry of that message.
    async fn get_ref(&self, pool: &str, name: &str) -> HotResult<Option<String>>;
    async fn del_ref(&self, pool: &str, name: &str) -> HotResult<()>;
    /// Records that `a` and `b` are copies of one message (in two chats): each names the other,
    /// as `"<member>:<message id>"`, for `ttl` after its bucket's last write.
    async fn put_reply(&self, pool: &str, a: &MessageRef, b: &MessageRef, ttl: Duration) -> HotResult<()>;
    /// The copy of `of` in the other chat, as `"<member>:<message id>"`.
    async fn get_reply(&self, pool: &str, of: &MessageRef) -> HotResult<Option<String>>;
}

/// The reply-map entry name for a message in a member's chat (what jobs carry as their target;
/// [`Refs::get_ref`] reads it from the reply map).
pub fn reply_ref(m: &MessageRef) -> String {
    format!("rm:{}:{}", m.member, m.message_id)
}

/// The message a [`reply_ref`] name stands for.
pub fn reply_of(name: &str) -> Option<MessageRef> {
    let (member, id) = name.strip_prefix("rm:")?.rsplit_once(':')?;
    member.parse::<Member>().ok()?;
    Some(MessageRef { member: member.to_string(), message_id: id.parse().ok()? })
}

/// A message's reply-map bucket (of its chat) and its place in it.
pub fn reply_bucket(message_id: i64) -> (i64, i64) {
    (message_id.div_euclid(REPLY_BUCKET_IDS), message_id.rem_euclid(REPLY_BUCKET_IDS))
}

/// What a reply-map entry holds for `m`.
pub fn reply_value(m: &MessageRef) -> String {
    format!("{}:{}", m.member, m.message_id)
}

/// The name a member's message is saved under (e.g. the "searching…" message).
pub fn saved_ref(member: &Member, what: &str) -> String {
    format!("msg:{member}:{what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_name_reads_back_as_its_message_and_nothing_else_does() {
        let m = MessageRef { member: "alpha:42".into(), message_id: 7 };
        assert_eq!(reply_of(&reply_ref(&m)), Some(m));
        for name in ["msg:alpha:42:search", "rm:alpha:42", "rm:alpha:x:7", "rm:alpha:42:x", "rm:"] {
            assert_eq!(reply_of(name), None, "{name}");
        }
        assert_eq!(reply_bucket(130), (2, 2));
        assert_eq!(reply_bucket(63), (0, 63));
    }
}
