//! Matching: who waits, who is paired with whom, and the rules that decide a match.
//!
//! A pool spans every bot that names it. A search is one atomic step (a Lua script on Redis,
//! a mutex in the embedded store): look for the best compatible waiting partner — VIP queue
//! first, then the free queue, oldest first — and claim both users at once, or wait. So a user
//! is never in two chats and never matched twice, however many replicas search at once.

pub mod memory;
pub mod redis;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use crate::keys::Tier;

/// A person on one bot: the unit of queues, chats and delivery. The bot is named by its
/// Kubernetes name, which is unique within the pool (a pool belongs to one namespace, so the
/// pool's key prefix carries the namespace). The person (`user`, the Telegram user id) is the
/// same on every bot: safety rules hold per person (see ARCHITECTURE.md, "A person across bots").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Member {
    pub bot: String,
    pub user: i64,
}

impl Member {
    pub fn new(bot: impl Into<String>, user: i64) -> Self {
        Self { bot: bot.into(), user }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.bot, self.user)
    }
}

impl FromStr for Member {
    type Err = MatchError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Bot names are DNS labels (no ':'), so the last ':' separates the user id.
        let (bot, user) = s.rsplit_once(':').ok_or_else(|| MatchError::Corrupt(format!("member {s:?}")))?;
        let user = user.parse().map_err(|_| MatchError::Corrupt(format!("member {s:?}")))?;
        Ok(Self::new(bot, user))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gender {
    Male,
    Female,
    Other,
}

impl Gender {
    pub fn code(self) -> &'static str {
        match self {
            Gender::Male => "m",
            Gender::Female => "f",
            Gender::Other => "o",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "m" => Some(Gender::Male),
            "f" => Some(Gender::Female),
            "o" => Some(Gender::Other),
            _ => None,
        }
    }
}

/// Whom a seeker wants. Only VIPs with the gender-filter perk may choose; the caller enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Want {
    Anyone,
    Only(Gender),
}

impl Want {
    fn code(self) -> &'static str {
        match self {
            Want::Anyone => "*",
            Want::Only(g) => g.code(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeker {
    pub member: Member,
    pub gender: Gender,
    pub want: Want,
    pub vip: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchOutcome {
    Matched {
        partner: Member,
    },
    /// Already in a chat (a second tap on "Find partner", or a retried update).
    AlreadyInChat {
        partner: Member,
    },
    /// The person is in a chat of this pool through another of their bots (`holder`): a
    /// person is in at most one chat per pool.
    BusyElsewhere {
        holder: Member,
    },
    Queued,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Two members are not matched again within this window.
    pub recent_window: Duration,
    /// How many waiting members one search looks at per queue (bounds the atomic step).
    pub scan_limit: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Self { recent_window: Duration::from_secs(20 * 60), scan_limit: 200 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    #[error("matching store unavailable: {0}")]
    Unavailable(String),
    #[error("unexpected data in the matching store: {0}")]
    Corrupt(String),
}

/// The matching store, for one fleet. Two implementations: Redis (any number of replicas)
/// and in-process memory (the embedded default); one behaviour suite runs against both.
#[async_trait::async_trait]
pub trait MatchPool: Send + Sync + 'static {
    async fn search(&self, pool: &str, seeker: &Seeker, now_ms: i64, rules: Rules) -> Result<SearchOutcome, MatchError>;
    /// Leaves the waiting queues; true if the member was waiting.
    async fn cancel(&self, pool: &str, member: &Member) -> Result<bool, MatchError>;
    /// Ends the member's chat for both sides; the partner, if there was a chat. Only the first
    /// of concurrent calls (from either side) gets the partner.
    async fn end_chat(&self, pool: &str, member: &Member) -> Result<Option<Member>, MatchError>;
    async fn partner(&self, pool: &str, member: &Member) -> Result<Option<Member>, MatchError>;
    /// Whether the member is waiting in a queue.
    async fn waiting(&self, pool: &str, member: &Member) -> Result<bool, MatchError>;
    /// The person `by` never meets the person `other` again, through any bot (block or
    /// report); checked both ways.
    async fn block(&self, pool: &str, by: i64, other: i64) -> Result<(), MatchError>;
    /// Takes the person out of every queue of the pool (a restriction or ban is per person);
    /// how many queue entries were removed.
    async fn cancel_person(&self, pool: &str, person: i64) -> Result<u64, MatchError>;
    async fn queue_len(&self, pool: &str, tier: Tier) -> Result<u64, MatchError>;
    /// Every member of `bot` who waits or chats in the pool (for retiring the bot). Not
    /// atomic: a member who joins meanwhile is found by the next call.
    async fn members_of(&self, pool: &str, bot: &str) -> Result<Vec<Member>, MatchError>;
    /// Chats in progress in the pool.
    async fn active_chats(&self, pool: &str) -> Result<u64, MatchError>;
}
