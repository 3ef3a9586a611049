//! The profiles of a bot's members who are chatting, kept by the process that handled their
//! last message, so a relayed chat message reads no profile from the database (issue 9: that
//! one read was about 18 % of the CPU a relayed update cost, counting Postgres, and 9 % of the
//! runtime's; docs/BENCHMARKS.md, "Where the runtime's CPU goes").
//!
//! Why a copy can stand in for the row. What a plain chat message needs of its sender's row:
//!
//! - the stage — `Ready`, and it cannot change during a chat: editing the profile is refused
//!   while chatting (profile.rs), `/delete_me` ends the chat first;
//! - the language — set at first contact, changed only by a profile edit;
//! - `reachable` — false only while the member has blocked the bot, and then they cannot
//!   write; blocking ends their chat (`my_chat_member` "kicked", or a 403 on a send to them),
//!   and unblocking arrives as `my_chat_member` "member", which writes the row;
//! - today's activity record — a copy is not used on another day, or when the @username
//!   changed (both are written by the full path).
//!
//! A ban, a restriction, a report or a block end the chat. So a copy is used only while the
//! member is in the **same** chat as when it was taken: the partner is read from the matching
//! store on every message anyway (one Redis round trip, as before) and must be the partner
//! recorded with the copy; and for at most [`KEEP`]. Anything else reads the row. Each
//! replica keeps its own copies (Telegram's webhook may deliver a member's messages to any
//! replica; each reads the row once per chat and minute).
//!
//! Only plain chat messages use a copy: commands, keyboard buttons, payments, edits and
//! callbacks read the row as before. At most [`MAX_COPIES`] copies per bot (≈ 250 bytes
//! each); when full, the expired ones go, then all.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::matching::Member;
use crate::store::User;

/// How long a copy is used at most.
pub const KEEP: Duration = Duration::from_secs(60);
/// Copies kept per bot and process.
pub const MAX_COPIES: usize = 20_000;

struct Copy {
    user: User,
    partner: Member,
    taken: Instant,
}

#[derive(Default)]
pub struct ChattingSenders(Mutex<HashMap<i64, Copy>>);

impl ChattingSenders {
    /// The copy of `user_id`'s row and the partner it was taken with, if it is young, of
    /// `today` and of this @username.
    pub fn get(&self, user_id: i64, today: i64, username: Option<&str>) -> Option<(User, Member)> {
        let copies = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let copy = copies.get(&user_id)?;
        let fresh = copy.taken.elapsed() < KEEP && copy.user.active_day == Some(today) && copy.user.username.as_deref() == username;
        fresh.then(|| (copy.user.clone(), copy.partner.clone()))
    }

    /// Keeps `user`'s row as just read (with today's activity recorded) while chatting with
    /// `partner`.
    pub fn put(&self, user: &User, partner: &Member) {
        let mut copies = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if copies.len() >= MAX_COPIES && !copies.contains_key(&user.user_id) {
            copies.retain(|_, c| c.taken.elapsed() < KEEP);
            if copies.len() >= MAX_COPIES {
                copies.clear();
            }
        }
        copies.insert(user.user_id, Copy { user: user.clone(), partner: partner.clone(), taken: Instant::now() });
    }

    pub fn forget(&self, user_id: i64) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&user_id);
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Stage;

    fn user(id: i64, day: i64, username: Option<&str>) -> User {
        User {
            bot: "alpha".into(),
            user_id: id,
            language: "en".into(),
            stage: Stage::Ready,
            gender: None,
            age: Some(30),
            wants: None,
            vip_until_ms: None,
            restricted_until_ms: None,
            reachable: true,
            created_ms: 0,
            updated_ms: 0,
            username: username.map(str::to_string),
            active_day: Some(day),
        }
    }

    #[test]
    fn a_copy_serves_its_day_and_username_only_and_the_cache_stays_bounded() {
        let cache = ChattingSenders::default();
        let partner = Member::new("beta", 7);
        cache.put(&user(1, 100, Some("ann")), &partner);
        assert_eq!(cache.get(1, 100, Some("ann")).map(|(u, p)| (u.user_id, p)), Some((1, partner.clone())));
        assert!(cache.get(1, 101, Some("ann")).is_none(), "another day writes the activity record");
        assert!(cache.get(1, 100, Some("ann_new")).is_none(), "a new @username is recorded");
        assert!(cache.get(1, 100, None).is_none());
        assert!(cache.get(2, 100, None).is_none());
        cache.forget(1);
        assert!(cache.get(1, 100, Some("ann")).is_none());
        for id in 0..(MAX_COPIES as i64 + 10) {
            cache.put(&user(id, 100, None), &partner);
        }
        assert!(cache.len() <= MAX_COPIES, "{}", cache.len());
    }
}
