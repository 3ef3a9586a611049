//! Durable state in SQL: users per bot, blocks, reports, chat session metadata (who, when, how
//! long — never content) and ratings. One implementation, [`sql::SqlStore`], over sqlx's `Any`
//! driver, runs the same queries on PostgreSQL (production, `migrations/postgres`) and SQLite
//! (the embedded default, `migrations/sqlite`); one behaviour suite (`tests/store.rs`) runs
//! against both databases.
//!
//! Times are milliseconds since the Unix epoch (`i64`) everywhere: one representation on both
//! databases, no time-zone surprises.

pub mod admin;
pub mod analytics;
pub mod locks;
pub mod money;
mod money_sql;
pub mod referrals;
pub mod scoped;
pub mod sql;

use serde::{Deserialize, Serialize};

use crate::matching::{Gender, Member};

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("unexpected data in the database: {0}")]
    Corrupt(String),
    #[error("database migration failed: {0}")]
    Migration(String),
}

/// Where a user is in onboarding. Stored as its `as_str` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// Has not accepted the terms yet.
    Terms,
    /// Must join the required channels.
    Channels,
    Gender,
    Age,
    /// Profile complete: the main menu.
    Ready,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Terms => "terms",
            Stage::Channels => "channels",
            Stage::Gender => "gender",
            Stage::Age => "age",
            Stage::Ready => "ready",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "terms" => Stage::Terms,
            "channels" => Stage::Channels,
            "gender" => Stage::Gender,
            "age" => Stage::Age,
            "ready" => Stage::Ready,
            _ => return None,
        })
    }
}

/// A member: a person on one bot. `bot` is the bot's id as stored ("<namespace>/<name>" in
/// SQL; [`scoped::BotStore`] shows the runtime the bot's name, as matching and the hot state
/// use it). Profile and commerce (VIP, credits) belong to the member; safety belongs to the
/// person ([`Person`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub bot: String,
    pub user_id: i64,
    /// "en" or "ru" (the texts we have), from the user's language_code at first contact.
    pub language: String,
    pub stage: Stage,
    pub gender: Option<Gender>,
    pub age: Option<u8>,
    /// A VIP's chosen partner gender (None: anyone).
    pub wants: Option<Gender>,
    /// VIP until (ms); None or past: not VIP. Written by payments (later issue).
    pub vip_until_ms: Option<i64>,
    /// Matching is refused until (ms): a ban (far future) or an automatic restriction. The
    /// person's, fleet-wide: read from `persons` (and, during a rolling update from the
    /// previous release, the later of that and this member's own column).
    pub restricted_until_ms: Option<i64>,
    /// False once the user blocked the bot (a send answered 403); true again when they write.
    pub reachable: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The Telegram @username as last seen (admin search); erased by /delete_me.
    pub username: Option<String>,
    /// The last day (days since the Unix epoch, UTC) the member was active.
    pub active_day: Option<i64>,
}

/// A Telegram user across every bot of the fleet: what outlives /delete_me.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub user_id: i64,
    /// First contact with any bot (campaign audiences and referrals: "new to the fleet").
    pub first_seen_ms: i64,
    pub restricted_until_ms: Option<i64>,
    /// The last /delete_me of any of the person's profiles.
    pub deleted_ms: Option<i64>,
}

/// A funnel event of a member (analytics); one-time kinds are recorded once per member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Funnel {
    Start,
    ProfileDone,
    FirstSearch,
    FirstChat,
    Purchase,
}

impl Funnel {
    pub fn as_str(self) -> &'static str {
        match self {
            Funnel::Start => "start",
            Funnel::ProfileDone => "profile_done",
            Funnel::FirstSearch => "first_search",
            Funnel::FirstChat => "first_chat",
            Funnel::Purchase => "purchase",
        }
    }
}

/// Days since the Unix epoch (UTC) of a time in ms: the unit of the activity record.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

/// The day (days since 1970-01-01) of the civil date at `ms` in `tz` (the admin role's fleet
/// time zone; [`day_of`] for UTC).
pub fn local_day(tz: &jiff::tz::TimeZone, ms: i64) -> i64 {
    let offset_s = jiff::Timestamp::from_millisecond(ms).map(|t| tz.to_offset(t).seconds()).unwrap_or(0);
    day_of(ms + i64::from(offset_s) * 1000)
}

/// The first instant (ms since the epoch) of `day` (days since 1970-01-01) in `tz`: its
/// midnight, or the first time after a gap if a clock change skips midnight.
pub fn local_day_start(tz: &jiff::tz::TimeZone, day: i64) -> i64 {
    jiff::civil::date(1970, 1, 1)
        .checked_add(jiff::Span::new().days(day))
        .and_then(|d| d.to_zoned(tz.clone()))
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(day * 86_400_000)
}

impl User {
    pub fn member(&self) -> Member {
        Member::new(self.bot.clone(), self.user_id)
    }
    pub fn is_vip(&self, now_ms: i64) -> bool {
        self.vip_until_ms.is_some_and(|t| t > now_ms)
    }
    pub fn is_restricted(&self, now_ms: i64) -> bool {
        self.restricted_until_ms.is_some_and(|t| t > now_ms)
    }
}

/// Why a chat ended (stored as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    Stop,
    Next,
    Report,
    Block,
    Idle,
    /// The partner blocked the bot (a send answered 403) or deleted their profile.
    Gone,
    /// The bot of one side was retired (deleted or scaled to zero).
    Retired,
    /// An admin banned one side (docs/ADMIN.md).
    Banned,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Stop => "stop",
            EndReason::Next => "next",
            EndReason::Report => "report",
            EndReason::Block => "block",
            EndReason::Idle => "idle",
            EndReason::Gone => "gone",
            EndReason::Retired => "retired",
            EndReason::Banned => "banned",
        }
    }
}

/// A chat between two members: metadata only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: i64,
    pub a: Member,
    pub b: Member,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub end_reason: Option<String>,
    /// Who ended it (a or b), if someone did.
    pub ended_by: Option<Member>,
}

/// A user's own history, for /stats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserStats {
    pub chats: u64,
    pub seconds_chatted: u64,
    pub thumbs_up: u64,
    pub thumbs_down: u64,
}

#[async_trait::async_trait]
pub trait Users: Send + Sync + 'static {
    async fn user(&self, bot: &str, user_id: i64) -> StoreResult<Option<User>>;
    /// The user, created at stage Terms with `language` if new (idempotent under retries
    /// and concurrent first updates).
    async fn user_or_create(&self, bot: &str, user_id: i64, language: &str, now_ms: i64) -> StoreResult<User>;
    /// Writes stage, gender, age, wants, language and updated_ms of an existing user.
    async fn save_profile(&self, user: &User) -> StoreResult<()>;
    /// Erases the profile (/delete_me), username included. What belongs to the person stays:
    /// the `persons` row (first seen, restriction or ban) becomes a tombstone, and blocks and
    /// reports the user made or received stay (safety). True if there was a profile.
    async fn delete_user(&self, bot: &str, user_id: i64, now_ms: i64) -> StoreResult<bool>;
    async fn set_reachable(&self, bot: &str, user_id: i64, reachable: bool) -> StoreResult<()>;
    /// The member's choice about admin broadcasts (`/news on|off`; on unless turned off).
    async fn set_broadcasts(&self, bot: &str, user_id: i64, on: bool) -> StoreResult<()>;
    async fn broadcasts_on(&self, bot: &str, user_id: i64) -> StoreResult<bool>;
    /// Records that the member was active on `day` (see [`day_of`]) with this username: the
    /// caller writes only when the day or the username changed, so at most once a day.
    async fn record_activity(&self, bot: &str, user_id: i64, username: Option<&str>, day: i64) -> StoreResult<()>;
    /// Sets (or with None clears) the person's matching restriction / ban, on every bot.
    async fn restrict(&self, user_id: i64, until_ms: Option<i64>, now_ms: i64) -> StoreResult<()>;
    /// The person behind every member with this user id; None if the fleet never saw them.
    async fn person(&self, user_id: i64) -> StoreResult<Option<Person>>;
    /// Records a funnel event (idempotent per member, kind and `reference`).
    async fn record_event(&self, bot: &str, user_id: i64, event: Funnel, reference: &str, at_ms: i64) -> StoreResult<()>;
    /// Users of a bot with a completed profile.
    async fn count_users(&self, bot: &str) -> StoreResult<u64>;
    /// Moves the rows release N keyed by the bot's bare `name` to its id (`<namespace>/<name>`);
    /// idempotent, safe from every replica at once; how many rows moved.
    async fn adopt_legacy_bot(&self, name: &str, id: &str) -> StoreResult<u64>;
}

#[async_trait::async_trait]
pub trait Safety: Send + Sync + 'static {
    /// `by` blocked `other` (idempotent per pair).
    async fn record_block(&self, by: &Member, other: &Member, now_ms: i64) -> StoreResult<()>;
    /// Every person the person `by` has blocked or reported, through any bot (to restore the
    /// matching blocks).
    async fn blocked_by(&self, by: i64) -> StoreResult<Vec<i64>>;
    /// Every person who blocked or reported the person `other`, through any bot.
    async fn blockers_of(&self, other: i64) -> StoreResult<Vec<i64>>;
    /// `by` reported `other`; returns the report's id. `reason` may be filled later.
    async fn record_report(&self, by: &Member, other: &Member, session_id: Option<i64>, now_ms: i64) -> StoreResult<i64>;
    /// Sets the reason of a report made by `by` (only theirs).
    async fn set_report_reason(&self, report_id: i64, by: &Member, reason: &str) -> StoreResult<bool>;
    /// Distinct people who reported the person since `since_ms`, through any bot (the
    /// automatic restriction rule).
    async fn reporters_since(&self, person: i64, since_ms: i64) -> StoreResult<u64>;
}

#[async_trait::async_trait]
pub trait Sessions: Send + Sync + 'static {
    /// Records a chat that started; idempotent for the same (a, b, started_ms). Returns its id.
    async fn start_session(&self, a: &Member, b: &Member, started_ms: i64) -> StoreResult<i64>;
    /// Ends the open session between the two (either order); None if none was open.
    async fn end_session(
        &self,
        a: &Member,
        b: &Member,
        by: Option<&Member>,
        reason: EndReason,
        ended_ms: i64,
    ) -> StoreResult<Option<Session>>;
    /// The open session between the two, if any.
    async fn open_session(&self, a: &Member, b: &Member) -> StoreResult<Option<Session>>;
    async fn session(&self, id: i64) -> StoreResult<Option<Session>>;
    /// `rater` (a side of the session) rates the other side: +1 or -1; one rating per side,
    /// a second one replaces the first. False if the rater was not in that session.
    async fn rate(&self, session_id: i64, rater: &Member, up: bool, now_ms: i64) -> StoreResult<bool>;
    /// `member`'s finished chats, seconds chatted, ratings received.
    async fn stats(&self, member: &Member) -> StoreResult<UserStats>;
    /// The moderation mirror's copy of a media message `sender` sent in the session went to
    /// `mirror_chat_id` as `message_id` (ids only; idempotent).
    async fn record_mirror(&self, session_id: i64, sender: &Member, mirror_chat_id: i64, message_id: i64, at_ms: i64) -> StoreResult<()>;
    /// The mirror copies of a session, oldest first: (sender, mirror chat, message id).
    async fn mirror_messages(&self, session_id: i64) -> StoreResult<Vec<(Member, i64, i64)>>;
    /// Reachability (for /readyz).
    async fn ping(&self) -> StoreResult<()>;
}

pub use admin::Registry;
pub use locks::Locks;
pub use money::{Ledger, Payments, Quotes, Subscriptions};
pub use referrals::Referrals;

/// Everything SQL, as one object the runtime holds.
pub trait Store: Users + Safety + Sessions + Quotes + Payments + Ledger + Locks + Referrals + Subscriptions + Registry {}
impl<T: Users + Safety + Sessions + Quotes + Payments + Ledger + Locks + Referrals + Subscriptions + Registry> Store for T {}
