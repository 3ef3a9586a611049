//! The admin role's durable state (docs/ADMIN.md): the registry of the fleet's bots, login
//! codes, login attempts, sessions, the audit log, per-bot bans and gifts, and the read-only
//! queries of the overview and the user page. Tables: `migrations/*/0011_admin.sql`.
//!
//! [`Registry`] is part of every bot's [`Store`](super::Store) (each bot registers itself at
//! start); [`AdminStore`] is what only the admin role uses. Codes and session tokens arrive
//! here already hashed (keyed, by the admin role): nothing stored can be replayed.

use serde::Serialize;

use super::analytics::{CohortRow, MismatchRow, RefreshStats, RevenueRow};
use super::sql::{SqlStore, col, corrupt, db_err};
use super::{StoreResult, day_of};

/// What a bot tells the fleet about itself at start and on every configuration change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotRegistration {
    /// `<namespace>/<name>`.
    pub id: String,
    pub namespace: String,
    pub name: String,
    /// The keyed pool, `<namespace>/<pool>` (where its outbox and timers live).
    pub pool: String,
    /// Telegram ids of the bot's admins (`spec.admins.telegramIds`).
    pub admins: Vec<i64>,
    /// The resolved configuration as JSON (file paths only, never a secret).
    pub config: String,
    pub config_hash: String,
    pub now_ms: i64,
}

/// Which bots' items a reader may see (the admin's reach), applied before an item's details
/// are read.
pub type BotFilter = dyn Fn(&str) -> bool + Send + Sync;

/// An in-bot `/broadcast` draft not confirmed within this time expires: its Send button says
/// it is gone. Drafts are never listed (`broadcasts`): they are the admin's, in their chat.
pub const DRAFT_TTL_MS: i64 = 3_600_000;

/// A bot as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RegisteredBot {
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub pool: String,
    pub admins: Vec<i64>,
    pub config_hash: String,
    pub registered_ms: i64,
    pub updated_ms: i64,
    /// The bot's Stars balance (Bot API `getMyStarBalance`, whole Stars), as its runtime last
    /// read it, and when; absent until the first read.
    pub star_balance: Option<i64>,
    pub star_balance_ms: Option<i64>,
}

#[async_trait::async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Inserts or refreshes the bot's row (idempotent, any replica at any time).
    async fn register_bot(&self, bot: &BotRegistration) -> StoreResult<()>;
    /// What became of a broadcast's message to `user_id` (the bot's sender reports it): counted
    /// once per member and broadcast, the first outcome wins (a message sent again after a
    /// kill counts once). True if this call counted it.
    async fn broadcast_outcome(&self, broadcast_id: i64, user_id: i64, outcome: BroadcastOutcome, now_ms: i64) -> StoreResult<bool>;
    /// Before a broadcast's message to `user_id` is sent: records that it is being sent (a
    /// `sending` row) and says whether it may go (docs/ADMIN.md, "Restarts"). A message whose
    /// outcome is recorded already is not sent again (a batch queued twice, a send settled just
    /// before a kill); one whose earlier send's outcome is unknown (a kill in flight) goes again
    /// and is counted in the broadcast's `repeated_max`.
    async fn broadcast_attempt(&self, broadcast_id: i64, user_id: i64, now_ms: i64) -> StoreResult<BroadcastAttempt>;
    /// The send that [`Registry::broadcast_attempt`] announced certainly did not happen (Telegram
    /// answered 429, or refused the token): its `sending` row is removed, so the next try is
    /// not counted as a possible repeat.
    async fn broadcast_unsent(&self, broadcast_id: i64, user_id: i64) -> StoreResult<()>;
    /// Ends a broadcast with a reason (the bot's sender: `failed` when a paid broadcast's bot
    /// ran out of Stars) — running, scheduled, or `done` (every member queued, not every
    /// message sent); false if it was cancelled or stopped already.
    async fn stop_broadcast(&self, id: i64, status: &str, reason: &str, now_ms: i64) -> StoreResult<bool>;

    // In-bot admin commands (chat/admin_commands.rs): the admin role's own steps, run by the
    // bot an admin wrote to.
    /// A bot's numbers now and its Stars over the last 7 days.
    async fn bot_stats(&self, bot: &str, now_ms: i64) -> StoreResult<(BotNumbers, i64)>;
    /// The bot's Stars balance as Telegram said it (`getMyStarBalance`) at `now_ms`; false if
    /// the bot is not registered (yet).
    async fn set_star_balance(&self, bot: &str, stars: i64, now_ms: i64) -> StoreResult<bool>;
    /// The admins a bot registered (none if it is not registered).
    async fn bot_admins(&self, bot: &str) -> StoreResult<Vec<i64>>;
    /// The fleet admins, as the admin role last wrote them (none without an admin role).
    async fn fleet_admins(&self) -> StoreResult<Vec<i64>>;
    /// Replaces the fleet admins (the admin role, at start: its `ADMIN_FLEET_ADMINS`).
    async fn set_fleet_admins(&self, ids: &[i64]) -> StoreResult<()>;
    async fn ban_member(&self, bot: &str, user_id: i64, until_ms: i64, admin_id: i64, now_ms: i64) -> StoreResult<()>;
    async fn unban_member(&self, bot: &str, user_id: i64) -> StoreResult<bool>;
    async fn audit_in_bot(&self, entry: &NewAudit) -> StoreResult<()>;
    async fn broadcast_audience(&self, bot: &str, audience: &Audience, now_ms: i64) -> StoreResult<i64>;
    /// A broadcast written as a `draft` (the admin confirms it with a button); its id.
    async fn draft_broadcast(&self, bot: &str, text: &str, by: i64, total: i64, now_ms: i64) -> StoreResult<i64>;
    /// Starts (`go`) or cancels a draft of `bot` made by `by`, once; false if it is not such a
    /// draft any more (settled, or older than [`DRAFT_TTL_MS`]).
    async fn settle_draft(&self, id: i64, bot: &str, by: i64, go: bool, now_ms: i64) -> StoreResult<bool>;
}

/// What a broadcast's message became (docs/ADMIN.md, "Broadcast").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastOutcome {
    /// Telegram accepted it.
    Delivered,
    /// Telegram refused it for good (a bad request, or it kept failing past the bulk lane's
    /// maximum age).
    Failed,
    /// The member blocked the bot (403): marked unreachable, in no later audience.
    Blocked,
}

/// Whether a broadcast's message may be sent now ([`Registry::broadcast_attempt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastAttempt {
    /// Never tried: send it.
    First,
    /// Its outcome is recorded: it is not sent again.
    Settled,
    /// Tried before without a recorded outcome (the process died in flight): sent again, and
    /// counted as possibly repeated.
    Unknown,
}

impl BroadcastOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            BroadcastOutcome::Delivered => "delivered",
            BroadcastOutcome::Failed => "failed",
            BroadcastOutcome::Blocked => "blocked",
        }
    }
}

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    /// The admin's Telegram id.
    pub admin_id: i64,
    /// `login`, `logout`, `ban`, `unban`, `gift`, `refund`, …
    pub action: String,
    /// The bot acted on (`<namespace>/<name>`); none for fleet-wide actions.
    pub bot: Option<String>,
    /// The Telegram user acted on.
    pub target_user: Option<i64>,
    /// What was done, as JSON text.
    pub detail: String,
    /// The client address the action came from.
    pub client: Option<String>,
    /// The API key the action was made with (its id; never the key), if any.
    pub api_key: Option<String>,
}

/// An audit row to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    pub at_ms: i64,
    pub admin_id: i64,
    pub action: String,
    pub bot: Option<String>,
    pub target_user: Option<i64>,
    pub detail: String,
    pub client: Option<String>,
    pub api_key: Option<String>,
}

/// An API key as shown (never the key itself, nor its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ApiKey {
    /// The key's public part (`bfk_<id>_…`).
    pub id: String,
    pub name: String,
    /// `fleet_admin` or `bot_admin` (a row of the permission matrix).
    pub role: String,
    /// For `bot_admin`: the bots (`<namespace>/<name>`) it may act on.
    pub bots: Vec<String>,
    /// Refuses every state change.
    pub read_only: bool,
    /// The fleet admin who created it.
    pub created_by: i64,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
}

/// A key as stored: what is shown, and the keyed hash a presented key must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    pub key: ApiKey,
    pub hash: String,
}

/// A member of a bot with open (unreviewed) reports: the moderation queue's item. Metadata
/// only — the chat core never stores what was said; the mirror items are ids of copies in
/// the bot's moderation mirror chat, which its admins own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ReportedMember {
    /// Why the member is in the queue: `reports` (open reports) or `thumbs_down` (no open
    /// report, but at least the threshold of 👎 on this bot within 30 days and since their last
    /// review; `ADMIN_THUMBS_DOWN_TO_REVIEW`).
    #[schemars(extend("enum" = ["reports", "thumbs_down"]))]
    pub why: String,
    pub bot: String,
    pub user_id: i64,
    pub username: Option<String>,
    /// Open reports, and the distinct people who made them.
    pub reports: i64,
    pub reporters: i64,
    /// The open reports' reasons (`spam`, `abuse`, `minor`, `other`; `none` if not given).
    pub reasons: Vec<ReasonCount>,
    pub first_ms: i64,
    pub last_ms: i64,
    /// 👎 and 👍 received on this bot in the last 30 days.
    pub thumbs_down: i64,
    pub thumbs_up: i64,
    /// The chats the open reports came from (for `thumbs_down`: the chats rated 👎).
    pub sessions: Vec<i64>,
    /// Media-mirror copies of what this member sent in those chats (at most 50).
    pub mirror: Vec<MirrorItem>,
    /// The later of the member's and the person's restriction or ban.
    pub restricted_until_ms: Option<i64>,
    /// Warnings the member was sent on this bot before (reviews with `warn`).
    pub warnings: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ReasonCount {
    pub reason: String,
    pub reports: i64,
}

/// A message in a moderation mirror chat (ids only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct MirrorItem {
    pub chat_id: i64,
    pub message_id: i64,
    pub at_ms: i64,
}

/// A member other members blocked (the blocks table: one row per pair, kept across
/// /delete_me). Who blocked them is not shown: the count is what a moderator needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct BlockedMember {
    pub bot: String,
    pub user_id: i64,
    pub username: Option<String>,
    /// Distinct people who blocked this member (from any bot of the fleet).
    pub blocked_by: i64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// A ban or restriction in force: fleet-wide (`bot` absent: the person's, by an admin or
/// automatic after reports) or on one bot (an admin's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct BannedEntry {
    pub user_id: i64,
    pub bot: Option<String>,
    pub until_ms: i64,
    /// The admin who banned on one bot.
    pub admin_id: Option<i64>,
}

/// An announcement to the members of one bot (docs/ADMIN.md, "Broadcast").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Broadcast {
    pub id: i64,
    pub bot: String,
    /// The message, as Telegram HTML.
    pub text: String,
    /// `all`, `vip` or `free`.
    pub audience: String,
    /// Only members with this language (`en`, `ru`, …); absent: any.
    pub language: Option<String>,
    /// Only members active on or after this UTC day (days since the Unix epoch); absent: any.
    pub active_since_day: Option<i64>,
    /// `scheduled` (until `start_ms`), `running`, `done`, `cancelled` or `failed` (it stopped
    /// by itself: `stop_reason` says why).
    pub status: String,
    /// A paid broadcast (docs/ADMIN.md, "Paid broadcasts"): sent with `allow_paid_broadcast`
    /// at the bot's paid pace, 0.1 Star a message from the bot's balance.
    pub paid: bool,
    /// Why it stopped by itself (`failed`: the bot's Stars ran out); absent otherwise.
    pub stop_reason: Option<String>,
    /// When it starts (absent: when it was made).
    pub start_ms: Option<i64>,
    /// The audience's size when it started (the progress bar's end; members who join or
    /// leave during the walk move it a little).
    pub total: i64,
    /// The last member (user id) whose message is queued.
    pub cursor_user: i64,
    /// A batch being queued (up to this user id), and since when.
    pub pending_to: Option<i64>,
    pub pending_ms: Option<i64>,
    /// Messages queued on the bot's outbox (its sender delivers them at the bot's pace).
    pub queued: i64,
    /// Telegram accepted them (counted by the bot's sender, each member once).
    pub delivered: i64,
    /// Telegram refused them for good, or they kept failing past the bulk lane's maximum age.
    pub failed: i64,
    /// The member had blocked the bot: marked unreachable, in no later audience.
    pub blocked: i64,
    /// At most this many messages may have reached their member twice: sends in flight when a
    /// bot's sender was killed (their outcome unknown), sent again by the next sender.
    pub repeated_max: i64,
    pub created_by: i64,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
}

/// Who a broadcast is for, besides the bot: members with a complete profile, reachable, not
/// banned, announcements on, and these filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    /// `all`, `vip` (an unexpired VIP) or `free`.
    pub kind: String,
    /// Only this language (None: any).
    pub language: Option<String>,
    /// Only members active on or after this UTC day (None: any).
    pub active_since_day: Option<i64>,
}

impl Audience {
    pub fn all() -> Self {
        Audience { kind: "all".into(), language: None, active_since_day: None }
    }

    pub fn of(b: &Broadcast) -> Self {
        Audience { kind: b.audience.clone(), language: b.language.clone(), active_since_day: b.active_since_day }
    }
}

/// Who a broadcast goes to next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub user_id: i64,
    pub language: String,
}

/// A broadcast to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBroadcastRow<'a> {
    pub bot: &'a str,
    pub text: &'a str,
    pub audience: &'a Audience,
    pub by: i64,
    pub now_ms: i64,
    /// None: now.
    pub start_ms: Option<i64>,
    pub total: i64,
    /// A paid broadcast (`allow_paid_broadcast`).
    pub paid: bool,
}

/// A member as the admin sees it: profile, VIP, credits, counts — never content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct MemberView {
    pub bot: String,
    pub user_id: i64,
    pub username: Option<String>,
    pub language: String,
    pub stage: String,
    pub gender: Option<String>,
    pub age: Option<i64>,
    pub vip_until_ms: Option<i64>,
    /// The member's own restriction column (a ban on this bot, or a copy of the person's).
    pub restricted_until_ms: Option<i64>,
    /// A ban on this bot only (holds across /delete_me).
    pub bot_ban_until_ms: Option<i64>,
    pub reachable: bool,
    pub created_ms: i64,
    pub credits: i64,
    /// Chats this member had (open or finished).
    pub chats: i64,
    /// Payments of this member.
    pub payments: i64,
}

/// A person across the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct PersonView {
    pub user_id: i64,
    pub first_seen_ms: Option<i64>,
    /// Fleet-wide restriction or ban.
    pub restricted_until_ms: Option<i64>,
    pub deleted_ms: Option<i64>,
    /// Reports received through any bot.
    pub reports: i64,
    pub members: Vec<MemberView>,
}

/// Numbers of one bot for the overview.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct BotNumbers {
    pub bot: String,
    pub members: i64,
    pub new_today: i64,
    pub new_this_week: i64,
    pub active_vips: i64,
    /// Open chats with a member of this bot (a chat across two bots counts on both).
    pub chats_now: i64,
    /// The bot's Stars balance and when its runtime read it (the overview's; absent until
    /// the first read, or where the numbers are not the overview's).
    pub star_balance: Option<i64>,
    pub star_balance_ms: Option<i64>,
}

/// Stars taken on one day (in the fleet's time zone), by bot and plan (refunded payments excluded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Revenue {
    /// The day, as days since 1970-01-01, of the civil date in the fleet's time zone
    /// (`ADMIN_TIME_ZONE`, UTC by default).
    pub day: i64,
    pub bot: String,
    pub plan: String,
    pub payments: i64,
    pub stars: i64,
}

/// Fleet-wide people counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct People {
    pub people: i64,
    pub new_today: i64,
    pub new_this_week: i64,
    pub chats_now: i64,
}

/// What a gift did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct GiftOutcome {
    /// False: this idempotency key was used before; nothing was given again.
    pub first: bool,
    pub vip_until_ms: Option<i64>,
    pub credits: i64,
}

/// A gift to write (credits go through the ledger first, see [`AdminStore::gift_vip`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gift {
    pub idem_key: String,
    pub bot: String,
    pub user_id: i64,
    pub vip_days: i64,
    pub credits: i64,
    pub admin_id: i64,
    pub now_ms: i64,
}

const DAY_MS: i64 = 86_400_000;

/// The end of a ban without an end (9999-12-31T23:59:59Z, the last second times can show).
pub const BAN_FOREVER_MS: i64 = 253_402_300_799_000;

#[async_trait::async_trait]
pub trait AdminStore: Send + Sync + 'static {
    /// Every registered bot, by id.
    async fn bots(&self) -> StoreResult<Vec<RegisteredBot>>;
    /// Every registered bot's id, configuration hash and resolved configuration (JSON), by id.
    async fn bot_configs(&self) -> StoreResult<Vec<(String, String, String)>>;
    /// Bots (ids) where the user is a member that has not blocked the bot.
    async fn reachable_on(&self, user_id: i64) -> StoreResult<Vec<String>>;
    /// The member's language on a bot, if a member.
    async fn language_on(&self, bot: &str, user_id: i64) -> StoreResult<Option<String>>;

    /// Stores a new code for the admin (by hash); earlier unused codes of the admin are voided.
    async fn save_code(&self, admin_id: i64, code_hash: &str, bot: &str, now_ms: i64, expires_ms: i64) -> StoreResult<()>;
    /// Uses the code once: true if it existed for this admin, unused and unexpired (and it is
    /// used now, atomically, whatever else tries at the same time).
    async fn take_code(&self, admin_id: i64, code_hash: &str, now_ms: i64) -> StoreResult<bool>;
    /// Records a login try of `kind` by each subject.
    async fn record_attempt(&self, subjects: &[String], kind: &str, now_ms: i64) -> StoreResult<()>;
    /// Tries of `kind` by `subject` since `since_ms`.
    async fn attempts_since(&self, subject: &str, kind: &str, since_ms: i64) -> StoreResult<i64>;

    async fn create_session(&self, token_hash: &str, admin_id: i64, now_ms: i64, expires_ms: i64) -> StoreResult<()>;
    /// The admin of a live session (not revoked, not expired).
    async fn session_admin(&self, token_hash: &str, now_ms: i64) -> StoreResult<Option<i64>>;
    async fn revoke_session(&self, token_hash: &str, now_ms: i64) -> StoreResult<()>;

    async fn audit(&self, entry: &NewAudit) -> StoreResult<i64>;
    /// Audit rows of `action` made with the API key `key` since `since_ms` (the key's limit).
    async fn key_uses_since(&self, key: &str, action: &str, since_ms: i64) -> StoreResult<i64>;

    async fn create_api_key(&self, key: &StoredApiKey) -> StoreResult<()>;
    async fn api_key(&self, id: &str) -> StoreResult<Option<StoredApiKey>>;
    /// Every key, newest first.
    async fn api_keys(&self) -> StoreResult<Vec<ApiKey>>;
    /// Revokes a key once; false if there is no such key or it was revoked already.
    async fn revoke_api_key(&self, id: &str, by: i64, now_ms: i64) -> StoreResult<bool>;
    async fn touch_api_key(&self, id: &str, now_ms: i64) -> StoreResult<()>;
    /// Newest first, ids below `before` (None: from the newest), at most `limit`.
    async fn audit_log(&self, before: Option<i64>, limit: i64) -> StoreResult<Vec<AuditEntry>>;

    /// Bans the member of one bot until `until_ms` (kept across /delete_me).
    async fn ban_on_bot(&self, bot: &str, user_id: i64, until_ms: i64, admin_id: i64, now_ms: i64) -> StoreResult<()>;
    /// Lifts a ban on one bot; true if there was one.
    async fn unban_on_bot(&self, bot: &str, user_id: i64) -> StoreResult<bool>;
    /// After a fleet-wide unban cleared every member row: puts the per-bot bans back.
    async fn reapply_bot_bans(&self, user_id: i64) -> StoreResult<()>;
    /// Gives VIP days once per key; the member must exist (None: no such member). Credits are
    /// the caller's ledger entry, written first, so a retry completes a half-done gift.
    async fn gift_vip(&self, gift: &Gift) -> StoreResult<Option<GiftOutcome>>;

    /// The moderation queue: members with open reports, most reporters first (of the first
    /// `scan`, the first `shown` that `visible` lets through, with their details).
    async fn report_queue(&self, now_ms: i64, scan: i64, shown: usize, visible: &BotFilter) -> StoreResult<Vec<ReportedMember>>;
    /// Members with at least `threshold` 👎 received on a bot since `since_ms` and since their
    /// last review there, and no open report; most 👎 first (the queue's `thumbs_down` items;
    /// `scan`, `shown` and `visible` as for `report_queue`).
    async fn thumbs_down_queue(
        &self,
        since_ms: i64,
        threshold: i64,
        now_ms: i64,
        scan: i64,
        shown: usize,
        visible: &BotFilter,
    ) -> StoreResult<Vec<ReportedMember>>;
    /// The members most blocked by other members, most blockers first (at most `limit`).
    async fn blocked(&self, limit: i64) -> StoreResult<Vec<BlockedMember>>;
    /// Closes the open reports of a member (`bot`) or of the person on every bot (None) with
    /// a review; returns how many.
    async fn review_reports(&self, bot: Option<&str>, user_id: i64, review: &str, by: i64, now_ms: i64) -> StoreResult<u64>;
    /// Bans and restrictions in force, latest end first (at most `limit`).
    async fn banned(&self, now_ms: i64, limit: i64) -> StoreResult<Vec<BannedEntry>>;

    /// A new broadcast: `scheduled` if `start_ms` is later than `now_ms`, else `running`, with
    /// `total` the audience's size now.
    async fn create_broadcast(&self, new: &NewBroadcastRow<'_>) -> StoreResult<i64>;
    async fn broadcast(&self, id: i64) -> StoreResult<Option<Broadcast>>;
    /// Newest first.
    async fn broadcasts(&self, limit: i64) -> StoreResult<Vec<Broadcast>>;
    async fn running_broadcasts(&self) -> StoreResult<Vec<Broadcast>>;
    /// Scheduled broadcasts whose start time has come.
    async fn due_broadcasts(&self, now_ms: i64) -> StoreResult<Vec<Broadcast>>;
    /// Starts a scheduled broadcast once (`total`: its audience now); false if it was not
    /// scheduled any more (cancelled, or started by another replica).
    async fn start_broadcast(&self, id: i64, total: i64) -> StoreResult<bool>;
    /// Members of `bot` in `audience` with user ids in `(after, up_to]`, by id, at most
    /// `limit`: profile complete, reachable, not banned, announcements not turned off.
    async fn recipients(
        &self,
        bot: &str,
        audience: &Audience,
        after: i64,
        up_to: i64,
        limit: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<Recipient>>;
    /// How many members `recipients` would give with ids above `after`.
    async fn count_recipients(&self, bot: &str, audience: &Audience, after: i64, now_ms: i64) -> StoreResult<i64>;
    /// Claims the next batch, `(cursor, to]`: only if the cursor is still `cursor` and no
    /// batch is pending, or the pending one was claimed before `stale_before_ms` (its process
    /// died). True: this caller queues it.
    async fn claim_batch(&self, id: i64, cursor: i64, to: i64, now_ms: i64, stale_before_ms: i64) -> StoreResult<bool>;
    /// The claimed batch is queued: the cursor moves to its end.
    async fn batch_queued(&self, id: i64, to: i64, queued: i64, repeated: i64) -> StoreResult<()>;
    /// Ends a running or scheduled broadcast (`done` or `cancelled`); false if it was neither.
    async fn finish_broadcast(&self, id: i64, status: &str, now_ms: i64) -> StoreResult<bool>;

    /// Payments of every bot in `[from_ms, to_ms)`, oldest first, at most `limit`.
    async fn payments_between(&self, from_ms: i64, to_ms: i64, limit: i64) -> StoreResult<Vec<crate::store::money::Payment>>;

    /// People now; "new today" counts from `today_ms` (the start of today in the fleet's zone).
    async fn people(&self, now_ms: i64, today_ms: i64) -> StoreResult<People>;
    async fn bot_numbers(&self, now_ms: i64, today_ms: i64) -> StoreResult<Vec<BotNumbers>>;
    /// Revenue since `since_ms` by day in `tz` (the fleet's time zone), bot and plan.
    async fn revenue_since(&self, since_ms: i64, tz: &jiff::tz::TimeZone) -> StoreResult<Vec<Revenue>>;
    /// User ids with this @username (case-insensitive, without the @) on any bot.
    async fn users_named(&self, username: &str) -> StoreResult<Vec<i64>>;
    /// The person and every member of theirs; None if the fleet never saw them.
    async fn person_view(&self, user_id: i64) -> StoreResult<Option<PersonView>>;

    /// Brings the analytics rollups up to date, incrementally (`store/analytics.rs`).
    async fn refresh_rollups(&self, now_ms: i64) -> StoreResult<RefreshStats>;
    async fn rollups_refreshed(&self) -> StoreResult<Option<i64>>;
    async fn cohorts_since(&self, from_day: i64) -> StoreResult<Vec<CohortRow>>;
    async fn revenue_rows_since(&self, from_day: i64) -> StoreResult<Vec<RevenueRow>>;
    async fn mismatches_since(&self, since_ms: i64, limit: i64) -> StoreResult<Vec<MismatchRow>>;
}

fn admins_json(admins: &[i64]) -> String {
    serde_json::Value::from(admins.to_vec()).to_string()
}

fn admins_of(text: &str) -> StoreResult<Vec<i64>> {
    serde_json::from_str(text).map_err(|e| corrupt(format_args!("admin_bots.admins: {e}")))
}

#[async_trait::async_trait]
impl Registry for SqlStore {
    async fn register_bot(&self, b: &BotRegistration) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO admin_bots (id, namespace, name, pool, admins, config, config_hash, registered_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (id) DO UPDATE SET namespace = excluded.namespace, \
             name = excluded.name, pool = excluded.pool, admins = excluded.admins, config = excluded.config, \
             config_hash = excluded.config_hash, updated_ms = excluded.updated_ms",
        )
        .bind(&b.id)
        .bind(&b.namespace)
        .bind(&b.name)
        .bind(&b.pool)
        .bind(admins_json(&b.admins))
        .bind(&b.config)
        .bind(&b.config_hash)
        .bind(b.now_ms)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn broadcast_outcome(&self, broadcast_id: i64, user_id: i64, outcome: BroadcastOutcome, now_ms: i64) -> StoreResult<bool> {
        // The result row and the counter in one transaction: the key makes a repeat count once
        // (a `sending` row becomes the outcome; a settled one stays as it is).
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let inserted = sqlx::query(
            "INSERT INTO admin_broadcast_results (broadcast_id, user_id, outcome, at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (broadcast_id, user_id) DO UPDATE SET outcome = excluded.outcome, at_ms = excluded.at_ms \
             WHERE admin_broadcast_results.outcome = 'sending'",
        )
        .bind(broadcast_id)
        .bind(user_id)
        .bind(outcome.as_str())
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        let update = match outcome {
            BroadcastOutcome::Delivered => "UPDATE admin_broadcasts SET delivered = delivered + 1 WHERE id = $1",
            BroadcastOutcome::Failed => "UPDATE admin_broadcasts SET failed = failed + 1 WHERE id = $1",
            BroadcastOutcome::Blocked => "UPDATE admin_broadcasts SET blocked = blocked + 1 WHERE id = $1",
        };
        sqlx::query(update).bind(broadcast_id).execute(&mut *tx).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn broadcast_attempt(&self, broadcast_id: i64, user_id: i64, now_ms: i64) -> StoreResult<BroadcastAttempt> {
        let inserted = sqlx::query(
            "INSERT INTO admin_broadcast_results (broadcast_id, user_id, outcome, at_ms) VALUES ($1, $2, 'sending', $3) \
             ON CONFLICT (broadcast_id, user_id) DO NOTHING",
        )
        .bind(broadcast_id)
        .bind(user_id)
        .bind(now_ms)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        if inserted.rows_affected() == 1 {
            return Ok(BroadcastAttempt::First);
        }
        // Tried before: settled (not sent again), or its outcome unknown (sent again, counted;
        // the row's time moves so the count is per try).
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let resent =
            sqlx::query("UPDATE admin_broadcast_results SET at_ms = $3 WHERE broadcast_id = $1 AND user_id = $2 AND outcome = 'sending'")
                .bind(broadcast_id)
                .bind(user_id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        if resent.rows_affected() == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(BroadcastAttempt::Settled);
        }
        sqlx::query("UPDATE admin_broadcasts SET repeated_max = repeated_max + 1 WHERE id = $1")
            .bind(broadcast_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(BroadcastAttempt::Unknown)
    }

    async fn stop_broadcast(&self, id: i64, status: &str, reason: &str, now_ms: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE admin_broadcasts SET status = $2, stop_reason = $3, finished_ms = $4 WHERE id = $1 AND status IN ('running', 'scheduled', 'done')",
        )
        .bind(id)
        .bind(status)
        .bind(reason)
        .bind(now_ms)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn broadcast_unsent(&self, broadcast_id: i64, user_id: i64) -> StoreResult<()> {
        sqlx::query("DELETE FROM admin_broadcast_results WHERE broadcast_id = $1 AND user_id = $2 AND outcome = 'sending'")
            .bind(broadcast_id)
            .bind(user_id)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn bot_stats(&self, bot: &str, now_ms: i64) -> StoreResult<(BotNumbers, i64)> {
        // The in-bot /stats counts UTC days.
        let today = day_of(now_ms) * DAY_MS;
        let numbers = AdminStore::bot_numbers(self, now_ms, today).await?.into_iter().find(|b| b.bot == bot).unwrap_or_default();
        let utc = jiff::tz::TimeZone::UTC;
        let stars =
            AdminStore::revenue_since(self, now_ms - 7 * DAY_MS, &utc).await?.iter().filter(|r| r.bot == bot).map(|r| r.stars).sum();
        Ok((numbers, stars))
    }

    async fn set_star_balance(&self, bot: &str, stars: i64, now_ms: i64) -> StoreResult<bool> {
        // A later read wins; an older one arriving late (another replica) changes nothing.
        let done = sqlx::query(
            "UPDATE admin_bots SET star_balance = $2, star_balance_ms = $3 WHERE id = $1 \
             AND (star_balance_ms IS NULL OR star_balance_ms <= $3)",
        )
        .bind(bot)
        .bind(stars)
        .bind(now_ms)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        let known =
            sqlx::query("SELECT 1 AS one FROM admin_bots WHERE id = $1").bind(bot).fetch_optional(self.pool()).await.map_err(db_err)?;
        Ok(known.is_some())
    }

    async fn bot_admins(&self, bot: &str) -> StoreResult<Vec<i64>> {
        let row = sqlx::query("SELECT admins FROM admin_bots WHERE id = $1").bind(bot).fetch_optional(self.pool()).await.map_err(db_err)?;
        match row {
            Some(r) => admins_of(&col::<String>(&r, "admins")?),
            None => Ok(Vec::new()),
        }
    }

    async fn fleet_admins(&self) -> StoreResult<Vec<i64>> {
        let rows =
            sqlx::query("SELECT telegram_id FROM admin_fleet_admins ORDER BY telegram_id").fetch_all(self.pool()).await.map_err(db_err)?;
        rows.iter().map(|r| col::<i64>(r, "telegram_id")).collect()
    }

    async fn set_fleet_admins(&self, ids: &[i64]) -> StoreResult<()> {
        // In one transaction: a bot reading meanwhile sees the old set or the new one.
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        sqlx::query("DELETE FROM admin_fleet_admins").execute(&mut *tx).await.map_err(db_err)?;
        for id in ids {
            sqlx::query("INSERT INTO admin_fleet_admins (telegram_id) VALUES ($1) ON CONFLICT (telegram_id) DO NOTHING")
                .bind(*id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn ban_member(&self, bot: &str, user_id: i64, until_ms: i64, admin_id: i64, now_ms: i64) -> StoreResult<()> {
        AdminStore::ban_on_bot(self, bot, user_id, until_ms, admin_id, now_ms).await
    }

    async fn unban_member(&self, bot: &str, user_id: i64) -> StoreResult<bool> {
        AdminStore::unban_on_bot(self, bot, user_id).await
    }

    async fn audit_in_bot(&self, entry: &NewAudit) -> StoreResult<()> {
        AdminStore::audit(self, entry).await.map(|_| ())
    }

    async fn broadcast_audience(&self, bot: &str, audience: &Audience, now_ms: i64) -> StoreResult<i64> {
        AdminStore::count_recipients(self, bot, audience, 0, now_ms).await
    }

    async fn draft_broadcast(&self, bot: &str, text: &str, by: i64, total: i64, now_ms: i64) -> StoreResult<i64> {
        let row = sqlx::query(
            "INSERT INTO admin_broadcasts (bot, text, audience, status, total, cursor_user, queued, repeated_max, created_by, created_ms) \
             VALUES ($1, $2, 'all', 'draft', $3, 0, 0, 0, $4, $5) RETURNING id",
        )
        .bind(bot)
        .bind(text)
        .bind(total)
        .bind(by)
        .bind(now_ms)
        .fetch_one(self.pool())
        .await
        .map_err(db_err)?;
        col(&row, "id")
    }

    async fn settle_draft(&self, id: i64, bot: &str, by: i64, go: bool, now_ms: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE admin_broadcasts SET status = $4, finished_ms = $5 WHERE id = $1 AND bot = $2 AND created_by = $3 AND status = 'draft' \
             AND created_ms > $6",
        )
        .bind(id)
        .bind(bot)
        .bind(by)
        .bind(if go { "running" } else { "cancelled" })
        .bind(if go { None } else { Some(now_ms) })
        .bind(now_ms - DRAFT_TTL_MS)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }
}

/// The columns of an [`ApiKey`] (a macro, so queries stay `&'static str`).
macro_rules! key_columns {
    () => {
        "id, name, role, bots, read_only, created_by, created_ms, revoked_ms, last_used_ms"
    };
}

fn api_key_of(r: &sqlx::any::AnyRow) -> StoreResult<ApiKey> {
    let bots: String = col(r, "bots")?;
    Ok(ApiKey {
        id: col(r, "id")?,
        name: col(r, "name")?,
        role: col(r, "role")?,
        bots: serde_json::from_str(&bots).map_err(|e| corrupt(format_args!("admin_api_keys.bots: {e}")))?,
        read_only: col::<i64>(r, "read_only")? != 0,
        created_by: col(r, "created_by")?,
        created_ms: col(r, "created_ms")?,
        revoked_ms: col(r, "revoked_ms")?,
        last_used_ms: col(r, "last_used_ms")?,
    })
}

impl SqlStore {
    /// The details of one queue item (its counts are in `row`).
    async fn reported_member(&self, row: &sqlx::any::AnyRow, bot: String, user_id: i64, now_ms: i64) -> StoreResult<ReportedMember> {
        self.queue_item(row, "reports", bot, user_id, now_ms).await
    }

    /// A queue item: `why` is `reports` (the open reports' chats) or `thumbs_down` (the chats
    /// rated 👎 since the row's `first_ms`).
    async fn queue_item(&self, row: &sqlx::any::AnyRow, why: &str, bot: String, user_id: i64, now_ms: i64) -> StoreResult<ReportedMember> {
        let by_thumbs = why == "thumbs_down";
        let since: i64 = col(row, "first_ms")?;
        let reasons = sqlx::query(
            "SELECT COALESCE(reason, 'none') AS reason, COUNT(*) AS n FROM reports \
             WHERE other_bot = $1 AND other_user = $2 AND reviewed_ms IS NULL GROUP BY 1 ORDER BY 2 DESC, 1",
        )
        .bind(&bot)
        .bind(user_id)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        let (sessions_sql, mirror_sql) = if by_thumbs {
            (
                "SELECT DISTINCT session_id FROM ratings WHERE rated_bot = $1 AND rated_user = $2 AND up = 0 AND created_ms >= $3 \
                 ORDER BY session_id",
                "SELECT m.mirror_chat_id, m.message_id, m.at_ms FROM mirror_messages m WHERE m.bot = $1 AND m.sender_user = $2 \
                 AND m.session_id IN (SELECT r.session_id FROM ratings r WHERE r.rated_bot = $1 AND r.rated_user = $2 AND r.up = 0 \
                 AND r.created_ms >= $3) ORDER BY m.at_ms, m.message_id LIMIT 50",
            )
        } else {
            (
                "SELECT DISTINCT session_id FROM reports WHERE other_bot = $1 AND other_user = $2 AND reviewed_ms IS NULL \
                 AND session_id IS NOT NULL ORDER BY session_id",
                "SELECT m.mirror_chat_id, m.message_id, m.at_ms FROM mirror_messages m WHERE m.bot = $1 AND m.sender_user = $2 \
                 AND m.session_id IN (SELECT r.session_id FROM reports r WHERE r.other_bot = $1 AND r.other_user = $2 AND r.reviewed_ms IS NULL) \
                 ORDER BY m.at_ms, m.message_id LIMIT 50",
            )
        };
        let (mut sessions, mut mirror) =
            (sqlx::query(sessions_sql).bind(&bot).bind(user_id), sqlx::query(mirror_sql).bind(&bot).bind(user_id));
        if by_thumbs {
            (sessions, mirror) = (sessions.bind(since), mirror.bind(since));
        }
        let sessions = sessions.fetch_all(self.pool()).await.map_err(db_err)?;
        let mirror = mirror.fetch_all(self.pool()).await.map_err(db_err)?;
        let thumbs = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN up = 0 THEN 1 ELSE 0 END), 0) AS BIGINT) AS down, \
             CAST(COALESCE(SUM(up), 0) AS BIGINT) AS up FROM ratings WHERE rated_bot = $1 AND rated_user = $2 AND created_ms >= $3",
        )
        .bind(&bot)
        .bind(user_id)
        .bind(now_ms - 30 * DAY_MS)
        .fetch_one(self.pool())
        .await
        .map_err(db_err)?;
        let warnings = sqlx::query(
            "SELECT COUNT(DISTINCT reviewed_ms) AS n FROM reports WHERE other_bot = $1 AND other_user = $2 AND review = 'warn'",
        )
        .bind(&bot)
        .bind(user_id)
        .fetch_one(self.pool())
        .await
        .map_err(db_err)?;
        let member = sqlx::query(
            "SELECT u.username, u.restricted_until_ms AS mine, p.restricted_until_ms AS person FROM users u \
             LEFT JOIN persons p ON p.user_id = u.user_id WHERE u.bot = $1 AND u.user_id = $2",
        )
        .bind(&bot)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?;
        let (username, restricted) = match &member {
            Some(m) => {
                let (mine, person): (Option<i64>, Option<i64>) = (col(m, "mine")?, col(m, "person")?);
                (col(m, "username")?, mine.max(person))
            }
            None => (None, None),
        };
        Ok(ReportedMember {
            why: why.to_string(),
            bot,
            user_id,
            username,
            reports: if by_thumbs { 0 } else { col(row, "reports")? },
            reporters: if by_thumbs { 0 } else { col(row, "reporters")? },
            reasons: reasons
                .iter()
                .map(|r| Ok(ReasonCount { reason: col(r, "reason")?, reports: col(r, "n")? }))
                .collect::<StoreResult<_>>()?,
            first_ms: col(row, "first_ms")?,
            last_ms: col(row, "last_ms")?,
            thumbs_down: col(&thumbs, "down")?,
            thumbs_up: col(&thumbs, "up")?,
            sessions: sessions.iter().map(|r| col(r, "session_id")).collect::<StoreResult<_>>()?,
            mirror: mirror
                .iter()
                .map(|r| Ok(MirrorItem { chat_id: col(r, "mirror_chat_id")?, message_id: col(r, "message_id")?, at_ms: col(r, "at_ms")? }))
                .collect::<StoreResult<_>>()?,
            restricted_until_ms: restricted,
            warnings: col(&warnings, "n")?,
        })
    }
}

macro_rules! broadcast_columns {
    () => {
        "id, bot, text, audience, language, active_since_day, status, start_ms, total, cursor_user, pending_to, pending_ms, queued, \
         delivered, failed, blocked, repeated_max, created_by, created_ms, finished_ms, paid, stop_reason"
    };
}

/// Who a broadcast reaches ($4 the audience, $5 now, $6 the language or NULL, $7 the first
/// active day or NULL): a completed profile, reachable, not banned or restricted,
/// announcements not turned off (/news off), and in the audience.
macro_rules! audience_filter {
    () => {
        "stage = 'ready' AND reachable = 1 AND COALESCE(broadcasts_off, 0) = 0 \
         AND (restricted_until_ms IS NULL OR restricted_until_ms <= $5) \
         AND ($4 = 'all' OR ($4 = 'vip' AND vip_until_ms > $5) OR ($4 = 'free' AND (vip_until_ms IS NULL OR vip_until_ms <= $5))) \
         AND ($6 IS NULL OR language = $6) AND ($7 IS NULL OR active_day >= $7)"
    };
}

fn broadcast_of(r: &sqlx::any::AnyRow) -> StoreResult<Broadcast> {
    Ok(Broadcast {
        id: col(r, "id")?,
        bot: col(r, "bot")?,
        text: col(r, "text")?,
        audience: col(r, "audience")?,
        language: col(r, "language")?,
        active_since_day: col(r, "active_since_day")?,
        status: col(r, "status")?,
        start_ms: col(r, "start_ms")?,
        total: col(r, "total")?,
        cursor_user: col(r, "cursor_user")?,
        pending_to: col(r, "pending_to")?,
        pending_ms: col(r, "pending_ms")?,
        queued: col(r, "queued")?,
        delivered: col(r, "delivered")?,
        failed: col(r, "failed")?,
        blocked: col(r, "blocked")?,
        repeated_max: col(r, "repeated_max")?,
        created_by: col(r, "created_by")?,
        created_ms: col(r, "created_ms")?,
        finished_ms: col(r, "finished_ms")?,
        paid: col::<Option<i64>>(r, "paid")?.unwrap_or(0) != 0,
        stop_reason: col(r, "stop_reason")?,
    })
}

fn member_view(row: &sqlx::any::AnyRow) -> StoreResult<MemberView> {
    Ok(MemberView {
        bot: col(row, "bot")?,
        user_id: col(row, "user_id")?,
        username: col(row, "username")?,
        language: col(row, "language")?,
        stage: col(row, "stage")?,
        gender: col(row, "gender")?,
        age: col(row, "age")?,
        vip_until_ms: col(row, "vip_until_ms")?,
        restricted_until_ms: col(row, "restricted_until_ms")?,
        bot_ban_until_ms: col(row, "ban_until_ms")?,
        reachable: col::<i64>(row, "reachable")? != 0,
        created_ms: col(row, "created_ms")?,
        credits: col(row, "credits")?,
        chats: col(row, "chats")?,
        payments: col(row, "payments")?,
    })
}

#[async_trait::async_trait]
impl AdminStore for SqlStore {
    async fn bots(&self) -> StoreResult<Vec<RegisteredBot>> {
        let rows = sqlx::query(
            "SELECT id, namespace, name, pool, admins, config_hash, registered_ms, updated_ms, star_balance, star_balance_ms \
                 FROM admin_bots ORDER BY id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(RegisteredBot {
                    id: col(r, "id")?,
                    namespace: col(r, "namespace")?,
                    name: col(r, "name")?,
                    pool: col(r, "pool")?,
                    admins: admins_of(&col::<String>(r, "admins")?)?,
                    config_hash: col(r, "config_hash")?,
                    registered_ms: col(r, "registered_ms")?,
                    updated_ms: col(r, "updated_ms")?,
                    star_balance: col(r, "star_balance")?,
                    star_balance_ms: col(r, "star_balance_ms")?,
                })
            })
            .collect()
    }

    async fn bot_configs(&self) -> StoreResult<Vec<(String, String, String)>> {
        let rows =
            sqlx::query("SELECT id, config_hash, config FROM admin_bots ORDER BY id").fetch_all(self.pool()).await.map_err(db_err)?;
        rows.iter().map(|r| Ok((col(r, "id")?, col(r, "config_hash")?, col(r, "config")?))).collect()
    }

    async fn reachable_on(&self, user_id: i64) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT bot FROM users WHERE user_id = $1 AND reachable = 1 ORDER BY bot")
            .bind(user_id)
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| col(r, "bot")).collect()
    }

    async fn language_on(&self, bot: &str, user_id: i64) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT language FROM users WHERE bot = $1 AND user_id = $2")
            .bind(bot)
            .bind(user_id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        row.map(|r| col(&r, "language")).transpose()
    }

    async fn save_code(&self, admin_id: i64, code_hash: &str, bot: &str, now_ms: i64, expires_ms: i64) -> StoreResult<()> {
        sqlx::query("UPDATE admin_login_codes SET used_ms = $2 WHERE admin_id = $1 AND used_ms IS NULL")
            .bind(admin_id)
            .bind(now_ms)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO admin_login_codes (code_hash, admin_id, bot, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (code_hash) DO UPDATE SET admin_id = excluded.admin_id, bot = excluded.bot, \
             created_ms = excluded.created_ms, expires_ms = excluded.expires_ms, used_ms = NULL",
        )
        .bind(code_hash)
        .bind(admin_id)
        .bind(bot)
        .bind(now_ms)
        .bind(expires_ms)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn take_code(&self, admin_id: i64, code_hash: &str, now_ms: i64) -> StoreResult<bool> {
        // One statement: of two concurrent uses exactly one sees `used_ms IS NULL`.
        let done = sqlx::query(
            "UPDATE admin_login_codes SET used_ms = $3 WHERE code_hash = $1 AND admin_id = $2 AND used_ms IS NULL AND expires_ms > $3",
        )
        .bind(code_hash)
        .bind(admin_id)
        .bind(now_ms)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_attempt(&self, subjects: &[String], kind: &str, now_ms: i64) -> StoreResult<()> {
        for subject in subjects {
            sqlx::query("INSERT INTO admin_login_attempts (subject, kind, at_ms) VALUES ($1, $2, $3)")
                .bind(subject)
                .bind(kind)
                .bind(now_ms)
                .execute(self.pool())
                .await
                .map_err(db_err)?;
        }
        // Old tries are never read again: keep the table small.
        sqlx::query("DELETE FROM admin_login_attempts WHERE at_ms < $1")
            .bind(now_ms - DAY_MS)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn attempts_since(&self, subject: &str, kind: &str, since_ms: i64) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM admin_login_attempts WHERE subject = $1 AND kind = $2 AND at_ms >= $3")
            .bind(subject)
            .bind(kind)
            .bind(since_ms)
            .fetch_one(self.pool())
            .await
            .map_err(db_err)?;
        col(&row, "n")
    }

    async fn create_session(&self, token_hash: &str, admin_id: i64, now_ms: i64, expires_ms: i64) -> StoreResult<()> {
        sqlx::query("INSERT INTO admin_sessions (token_hash, admin_id, created_ms, expires_ms) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(admin_id)
            .bind(now_ms)
            .bind(expires_ms)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn session_admin(&self, token_hash: &str, now_ms: i64) -> StoreResult<Option<i64>> {
        let row = sqlx::query("SELECT admin_id FROM admin_sessions WHERE token_hash = $1 AND revoked_ms IS NULL AND expires_ms > $2")
            .bind(token_hash)
            .bind(now_ms)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        row.map(|r| col(&r, "admin_id")).transpose()
    }

    async fn revoke_session(&self, token_hash: &str, now_ms: i64) -> StoreResult<()> {
        sqlx::query("UPDATE admin_sessions SET revoked_ms = $2 WHERE token_hash = $1 AND revoked_ms IS NULL")
            .bind(token_hash)
            .bind(now_ms)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn audit(&self, e: &NewAudit) -> StoreResult<i64> {
        let row = sqlx::query(
            "INSERT INTO admin_audit (at_ms, admin_id, action, bot, target_user, detail, client, api_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(e.at_ms)
        .bind(e.admin_id)
        .bind(&e.action)
        .bind(e.bot.as_deref())
        .bind(e.target_user)
        .bind(&e.detail)
        .bind(e.client.as_deref())
        .bind(e.api_key.as_deref())
        .fetch_one(self.pool())
        .await
        .map_err(db_err)?;
        col(&row, "id")
    }

    async fn key_uses_since(&self, key: &str, action: &str, since_ms: i64) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM admin_audit WHERE api_key = $1 AND at_ms >= $2 AND action = $3")
            .bind(key)
            .bind(since_ms)
            .bind(action)
            .fetch_one(self.pool())
            .await
            .map_err(db_err)?;
        col(&row, "n")
    }

    async fn create_api_key(&self, k: &StoredApiKey) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO admin_api_keys (id, key_hash, name, role, bots, read_only, created_by, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&k.key.id)
        .bind(&k.hash)
        .bind(&k.key.name)
        .bind(&k.key.role)
        .bind(serde_json::Value::from(k.key.bots.clone()).to_string())
        .bind(i16::from(k.key.read_only))
        .bind(k.key.created_by)
        .bind(k.key.created_ms)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn api_key(&self, id: &str) -> StoreResult<Option<StoredApiKey>> {
        let row = sqlx::query(concat!("SELECT key_hash, ", key_columns!(), " FROM admin_api_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        row.map(|r| Ok(StoredApiKey { key: api_key_of(&r)?, hash: col(&r, "key_hash")? })).transpose()
    }

    async fn api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query(concat!("SELECT ", key_columns!(), " FROM admin_api_keys ORDER BY created_ms DESC, id"))
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        rows.iter().map(api_key_of).collect()
    }

    async fn revoke_api_key(&self, id: &str, by: i64, now_ms: i64) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE admin_api_keys SET revoked_ms = $2, revoked_by = $3 WHERE id = $1 AND revoked_ms IS NULL")
            .bind(id)
            .bind(now_ms)
            .bind(by)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn touch_api_key(&self, id: &str, now_ms: i64) -> StoreResult<()> {
        sqlx::query("UPDATE admin_api_keys SET last_used_ms = $2 WHERE id = $1")
            .bind(id)
            .bind(now_ms)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn audit_log(&self, before: Option<i64>, limit: i64) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at_ms, admin_id, action, bot, target_user, detail, client, api_key FROM admin_audit \
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: col(r, "id")?,
                    at_ms: col(r, "at_ms")?,
                    admin_id: col(r, "admin_id")?,
                    action: col(r, "action")?,
                    bot: col(r, "bot")?,
                    target_user: col(r, "target_user")?,
                    detail: col(r, "detail")?,
                    client: col(r, "client")?,
                    api_key: col(r, "api_key")?,
                })
            })
            .collect()
    }

    async fn ban_on_bot(&self, bot: &str, user_id: i64, until_ms: i64, admin_id: i64, now_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO admin_bans (bot, user_id, until_ms, admin_id, created_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (bot, user_id) DO UPDATE SET until_ms = excluded.until_ms, admin_id = excluded.admin_id, \
             created_ms = excluded.created_ms",
        )
        .bind(bot)
        .bind(user_id)
        .bind(until_ms)
        .bind(admin_id)
        .bind(now_ms)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        // The member's own column is what the runtime reads for one bot (the later of it and
        // the person's); a member created again after /delete_me gets it from admin_bans.
        sqlx::query("UPDATE users SET restricted_until_ms = $3 WHERE bot = $1 AND user_id = $2")
            .bind(bot)
            .bind(user_id)
            .bind(until_ms)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn unban_on_bot(&self, bot: &str, user_id: i64) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM admin_bans WHERE bot = $1 AND user_id = $2")
            .bind(bot)
            .bind(user_id)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        sqlx::query("UPDATE users SET restricted_until_ms = NULL WHERE bot = $1 AND user_id = $2")
            .bind(bot)
            .bind(user_id)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn reapply_bot_bans(&self, user_id: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE users SET restricted_until_ms = (SELECT b.until_ms FROM admin_bans b WHERE b.bot = users.bot AND b.user_id = users.user_id) \
             WHERE user_id = $1",
        )
        .bind(user_id)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn gift_vip(&self, g: &Gift) -> StoreResult<Option<GiftOutcome>> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let member = sqlx::query("SELECT vip_until_ms FROM users WHERE bot = $1 AND user_id = $2")
            .bind(&g.bot)
            .bind(g.user_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(member) = member else { return Ok(None) };
        let current: Option<i64> = col(&member, "vip_until_ms")?;
        let inserted = sqlx::query(
            "INSERT INTO admin_gifts (idem_key, bot, user_id, vip_days, credits, admin_id, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (idem_key) DO NOTHING",
        )
        .bind(&g.idem_key)
        .bind(&g.bot)
        .bind(g.user_id)
        .bind(g.vip_days)
        .bind(g.credits)
        .bind(g.admin_id)
        .bind(g.now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(Some(GiftOutcome { first: false, vip_until_ms: current, credits: g.credits }));
        }
        let mut until = current;
        if g.vip_days > 0 {
            // VIP days stack onto an unexpired VIP, as a purchase's do.
            let from = current.filter(|t| *t > g.now_ms).unwrap_or(g.now_ms);
            let new_until = from.saturating_add(g.vip_days.saturating_mul(DAY_MS));
            sqlx::query("UPDATE users SET vip_until_ms = $3, updated_ms = $4 WHERE bot = $1 AND user_id = $2")
                .bind(&g.bot)
                .bind(g.user_id)
                .bind(new_until)
                .bind(g.now_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            sqlx::query("UPDATE admin_gifts SET vip_until_ms = $2 WHERE idem_key = $1")
                .bind(&g.idem_key)
                .bind(new_until)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            until = Some(new_until);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(Some(GiftOutcome { first: true, vip_until_ms: until, credits: g.credits }))
    }

    async fn report_queue(&self, now_ms: i64, limit: i64, shown: usize, visible: &BotFilter) -> StoreResult<Vec<ReportedMember>> {
        let rows = sqlx::query(
            "SELECT other_bot, other_user, COUNT(*) AS reports, COUNT(DISTINCT by_user) AS reporters, \
             MIN(created_ms) AS first_ms, MAX(created_ms) AS last_ms FROM reports WHERE reviewed_ms IS NULL \
             GROUP BY other_bot, other_user ORDER BY reporters DESC, last_ms DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        // The details (several queries an item) only for the items shown.
        let mut out = Vec::with_capacity(shown.min(rows.len()));
        for r in &rows {
            let (bot, user_id): (String, i64) = (col(r, "other_bot")?, col(r, "other_user")?);
            if out.len() == shown {
                break;
            }
            if visible(&bot) {
                out.push(self.reported_member(r, bot, user_id, now_ms).await?);
            }
        }
        Ok(out)
    }

    async fn thumbs_down_queue(
        &self,
        since_ms: i64,
        threshold: i64,
        now_ms: i64,
        limit: i64,
        shown: usize,
        visible: &BotFilter,
    ) -> StoreResult<Vec<ReportedMember>> {
        // A review (any action, audited as `review` with the bot and the member) resets the
        // count: only 👎 after it count again.
        let rows = sqlx::query(
            "SELECT r.rated_bot, r.rated_user, COUNT(*) AS downs, MIN(r.created_ms) AS first_ms, MAX(r.created_ms) AS last_ms \
             FROM ratings r WHERE r.up = 0 AND r.created_ms >= $1 \
             AND r.created_ms > COALESCE((SELECT MAX(a.at_ms) FROM admin_audit a WHERE a.action = 'review' \
                 AND a.bot = r.rated_bot AND a.target_user = r.rated_user), 0) \
             AND NOT EXISTS (SELECT 1 FROM reports o WHERE o.other_bot = r.rated_bot AND o.other_user = r.rated_user \
                 AND o.reviewed_ms IS NULL) \
             GROUP BY r.rated_bot, r.rated_user HAVING COUNT(*) >= $2 ORDER BY downs DESC, last_ms DESC LIMIT $3",
        )
        .bind(since_ms)
        .bind(threshold)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        let mut out = Vec::with_capacity(shown.min(rows.len()));
        for r in &rows {
            let (bot, user_id): (String, i64) = (col(r, "rated_bot")?, col(r, "rated_user")?);
            if out.len() == shown {
                break;
            }
            if visible(&bot) {
                out.push(self.queue_item(r, "thumbs_down", bot, user_id, now_ms).await?);
            }
        }
        Ok(out)
    }

    async fn blocked(&self, limit: i64) -> StoreResult<Vec<BlockedMember>> {
        let rows = sqlx::query(
            "SELECT b.other_bot, b.other_user, COUNT(DISTINCT b.by_user) AS blocked_by, MIN(b.created_ms) AS first_ms, \
             MAX(b.created_ms) AS last_ms, MAX(u.username) AS username FROM blocks b \
             LEFT JOIN users u ON u.bot = b.other_bot AND u.user_id = b.other_user \
             GROUP BY b.other_bot, b.other_user ORDER BY blocked_by DESC, last_ms DESC, b.other_user LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(BlockedMember {
                    bot: col(r, "other_bot")?,
                    user_id: col(r, "other_user")?,
                    username: col(r, "username")?,
                    blocked_by: col(r, "blocked_by")?,
                    first_ms: col(r, "first_ms")?,
                    last_ms: col(r, "last_ms")?,
                })
            })
            .collect()
    }

    async fn review_reports(&self, bot: Option<&str>, user_id: i64, review: &str, by: i64, now_ms: i64) -> StoreResult<u64> {
        // `$1 IS NULL`: every bot of the person.
        let done = sqlx::query(
            "UPDATE reports SET reviewed_ms = $3, reviewed_by = $4, review = $5 \
             WHERE other_user = $2 AND ($1 IS NULL OR other_bot = $1) AND reviewed_ms IS NULL",
        )
        .bind(bot)
        .bind(user_id)
        .bind(now_ms)
        .bind(by)
        .bind(review)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn banned(&self, now_ms: i64, limit: i64) -> StoreResult<Vec<BannedEntry>> {
        let rows = sqlx::query(
            "SELECT user_id, NULL AS bot, restricted_until_ms AS until_ms, NULL AS admin_id FROM persons WHERE restricted_until_ms > $1 \
             UNION ALL SELECT user_id, bot, until_ms, admin_id FROM admin_bans WHERE until_ms > $1 \
             ORDER BY until_ms DESC, user_id LIMIT $2",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(BannedEntry {
                    user_id: col(r, "user_id")?,
                    bot: col(r, "bot")?,
                    until_ms: col(r, "until_ms")?,
                    admin_id: col(r, "admin_id")?,
                })
            })
            .collect()
    }

    async fn create_broadcast(&self, n: &NewBroadcastRow<'_>) -> StoreResult<i64> {
        let status = if n.start_ms.is_some_and(|t| t > n.now_ms) { "scheduled" } else { "running" };
        let row = sqlx::query(
            "INSERT INTO admin_broadcasts (bot, text, audience, language, active_since_day, status, start_ms, total, cursor_user, \
             queued, repeated_max, created_by, created_ms, paid) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, 0, $9, $10, $11) RETURNING id",
        )
        .bind(n.bot)
        .bind(n.text)
        .bind(&n.audience.kind)
        .bind(n.audience.language.as_deref())
        .bind(n.audience.active_since_day)
        .bind(status)
        .bind(n.start_ms)
        .bind(n.total)
        .bind(n.by)
        .bind(n.now_ms)
        .bind(i64::from(n.paid))
        .fetch_one(self.pool())
        .await
        .map_err(db_err)?;
        col(&row, "id")
    }

    async fn broadcast(&self, id: i64) -> StoreResult<Option<Broadcast>> {
        let row = sqlx::query(concat!("SELECT ", broadcast_columns!(), " FROM admin_broadcasts WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        row.as_ref().map(broadcast_of).transpose()
    }

    async fn broadcasts(&self, limit: i64) -> StoreResult<Vec<Broadcast>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            broadcast_columns!(),
            " FROM admin_broadcasts WHERE status <> 'draft' ORDER BY id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        rows.iter().map(broadcast_of).collect()
    }

    async fn running_broadcasts(&self) -> StoreResult<Vec<Broadcast>> {
        let rows = sqlx::query(concat!("SELECT ", broadcast_columns!(), " FROM admin_broadcasts WHERE status = 'running' ORDER BY id"))
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        rows.iter().map(broadcast_of).collect()
    }

    async fn due_broadcasts(&self, now_ms: i64) -> StoreResult<Vec<Broadcast>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            broadcast_columns!(),
            " FROM admin_broadcasts WHERE status = 'scheduled' AND start_ms <= $1 ORDER BY id"
        ))
        .bind(now_ms)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        rows.iter().map(broadcast_of).collect()
    }

    async fn start_broadcast(&self, id: i64, total: i64) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE admin_broadcasts SET status = 'running', total = $2 WHERE id = $1 AND status = 'scheduled'")
            .bind(id)
            .bind(total)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn recipients(
        &self,
        bot: &str,
        audience: &Audience,
        after: i64,
        up_to: i64,
        limit: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<Recipient>> {
        let rows = sqlx::query(concat!(
            "SELECT user_id, language FROM users WHERE bot = $1 AND user_id > $2 AND user_id <= $3 AND ",
            audience_filter!(),
            " ORDER BY user_id LIMIT $8"
        ))
        .bind(bot)
        .bind(after)
        .bind(up_to)
        .bind(&audience.kind)
        .bind(now_ms)
        .bind(audience.language.as_deref())
        .bind(audience.active_since_day)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        rows.iter().map(|r| Ok(Recipient { user_id: col(r, "user_id")?, language: col(r, "language")? })).collect()
    }

    async fn count_recipients(&self, bot: &str, audience: &Audience, after: i64, now_ms: i64) -> StoreResult<i64> {
        // The same filter as `recipients` ($3 spans every id above `after`).
        let row = sqlx::query(concat!(
            "SELECT COUNT(*) AS n FROM users WHERE bot = $1 AND user_id > $2 AND user_id <= $3 AND ",
            audience_filter!()
        ))
        .bind(bot)
        .bind(after)
        .bind(i64::MAX)
        .bind(&audience.kind)
        .bind(now_ms)
        .bind(audience.language.as_deref())
        .bind(audience.active_since_day)
        .fetch_one(self.pool())
        .await
        .map_err(db_err)?;
        col(&row, "n")
    }

    async fn claim_batch(&self, id: i64, cursor: i64, to: i64, now_ms: i64, stale_before_ms: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE admin_broadcasts SET pending_to = $3, pending_ms = $4 WHERE id = $1 AND status = 'running' AND cursor_user = $2 \
             AND (pending_to IS NULL OR (pending_to = $3 AND pending_ms < $5))",
        )
        .bind(id)
        .bind(cursor)
        .bind(to)
        .bind(now_ms)
        .bind(stale_before_ms)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn batch_queued(&self, id: i64, to: i64, queued: i64, repeated: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE admin_broadcasts SET cursor_user = $2, pending_to = NULL, pending_ms = NULL, queued = queued + $3, \
             repeated_max = repeated_max + $4 WHERE id = $1 AND pending_to = $2",
        )
        .bind(id)
        .bind(to)
        .bind(queued)
        .bind(repeated)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn finish_broadcast(&self, id: i64, status: &str, now_ms: i64) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE admin_broadcasts SET status = $2, finished_ms = $3 WHERE id = $1 AND status IN ('running', 'scheduled')")
                .bind(id)
                .bind(status)
                .bind(now_ms)
                .execute(self.pool())
                .await
                .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn payments_between(&self, from_ms: i64, to_ms: i64, limit: i64) -> StoreResult<Vec<crate::store::money::Payment>> {
        SqlStore::payments_between(self, from_ms, to_ms, limit).await
    }

    async fn refresh_rollups(&self, now_ms: i64) -> StoreResult<RefreshStats> {
        SqlStore::refresh_rollups(self, now_ms).await
    }

    async fn rollups_refreshed(&self) -> StoreResult<Option<i64>> {
        SqlStore::rollups_refreshed(self).await
    }

    async fn cohorts_since(&self, from_day: i64) -> StoreResult<Vec<CohortRow>> {
        SqlStore::cohorts_since(self, from_day).await
    }

    async fn revenue_rows_since(&self, from_day: i64) -> StoreResult<Vec<RevenueRow>> {
        SqlStore::revenue_rows_since(self, from_day).await
    }

    async fn mismatches_since(&self, since_ms: i64, limit: i64) -> StoreResult<Vec<MismatchRow>> {
        SqlStore::mismatches_since(self, since_ms, limit).await
    }

    // The overview's numbers without a full scan (migration 0020): totals from the counters
    // the triggers keep (`admin_counts`), the windows from index ranges of the last 7 days and
    // of the VIPs in force.
    async fn people(&self, now_ms: i64, today: i64) -> StoreResult<People> {
        let total = sqlx::query("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM admin_counts WHERE name = 'people'")
            .fetch_one(self.pool())
            .await
            .map_err(db_err)?;
        let week = now_ms - 7 * DAY_MS;
        let row = sqlx::query(
            // A zone's midnight is never more than 7 days back: today's people are within the week's range.
            "SELECT CAST(COALESCE(SUM(CASE WHEN first_seen_ms >= $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS new_today, \
             COUNT(*) AS new_week FROM persons WHERE first_seen_ms >= $2",
        )
        .bind(today)
        .bind(week)
        .fetch_one(self.pool())
        .await
        .map_err(db_err)?;
        let chats =
            sqlx::query("SELECT COUNT(*) AS n FROM chat_sessions WHERE ended_ms IS NULL").fetch_one(self.pool()).await.map_err(db_err)?;
        Ok(People {
            people: col(&total, "n")?,
            new_today: col(&row, "new_today")?,
            new_this_week: col(&row, "new_week")?,
            chats_now: col(&chats, "n")?,
        })
    }

    async fn bot_numbers(&self, now_ms: i64, today: i64) -> StoreResult<Vec<BotNumbers>> {
        let week = now_ms - 7 * DAY_MS;
        let members = sqlx::query(
            "SELECT name, CAST(SUM(n) AS BIGINT) AS n FROM admin_counts WHERE name LIKE 'members:%' GROUP BY name ORDER BY name",
        )
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        let new = sqlx::query(
            "SELECT bot, CAST(SUM(CASE WHEN created_ms >= $1 THEN 1 ELSE 0 END) AS BIGINT) AS new_today, \
             CAST(SUM(CASE WHEN created_ms >= $2 THEN 1 ELSE 0 END) AS BIGINT) AS new_week \
             FROM users WHERE created_ms >= $3 GROUP BY bot",
        )
        .bind(today)
        .bind(week)
        .bind(week)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        let vips = sqlx::query("SELECT bot, COUNT(*) AS n FROM users WHERE vip_until_ms > $1 GROUP BY bot")
            .bind(now_ms)
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        let mut out: Vec<BotNumbers> = Vec::new();
        for r in &members {
            let (name, n): (String, i64) = (col(r, "name")?, col(r, "n")?);
            if n != 0 {
                let bot = name.strip_prefix("members:").unwrap_or(&name).to_string();
                out.push(BotNumbers { bot, members: n, ..BotNumbers::default() });
            }
        }
        fn row_of<'a>(out: &'a mut Vec<BotNumbers>, bot: String) -> &'a mut BotNumbers {
            match out.iter().position(|x| x.bot == bot) {
                Some(i) => &mut out[i],
                None => {
                    out.push(BotNumbers { bot, ..BotNumbers::default() });
                    out.last_mut().expect("just pushed")
                }
            }
        }
        for r in &new {
            let x = row_of(&mut out, col(r, "bot")?);
            (x.new_today, x.new_this_week) = (col(r, "new_today")?, col(r, "new_week")?);
        }
        for r in &vips {
            row_of(&mut out, col(r, "bot")?).active_vips = col(r, "n")?;
        }
        let open = sqlx::query("SELECT a_bot, b_bot, COUNT(*) AS n FROM chat_sessions WHERE ended_ms IS NULL GROUP BY a_bot, b_bot")
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        for r in &open {
            let (a, b, n): (String, String, i64) = (col(r, "a_bot")?, col(r, "b_bot")?, col(r, "n")?);
            for bot in if a == b { vec![a] } else { vec![a, b] } {
                match out.iter_mut().find(|x| x.bot == bot) {
                    Some(x) => x.chats_now += n,
                    None => out.push(BotNumbers { bot, chats_now: n, ..BotNumbers::default() }),
                }
            }
        }
        Ok(out)
    }

    async fn revenue_since(&self, since_ms: i64, tz: &jiff::tz::TimeZone) -> StoreResult<Vec<Revenue>> {
        // By quarter hour in SQL (every zone's offset is a multiple of 15 minutes), then by the
        // civil day of the fleet's zone here, DST included.
        let rows = sqlx::query(
            "SELECT CAST(created_ms / 900000 AS BIGINT) AS q, bot, plan_id, COUNT(*) AS n, CAST(SUM(stars) AS BIGINT) AS stars \
             FROM payments WHERE refunded_ms IS NULL AND created_ms >= $1 GROUP BY 1, 2, 3",
        )
        .bind(since_ms)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        let mut out: Vec<Revenue> = Vec::new();
        for r in &rows {
            let q: i64 = col(r, "q")?;
            let (day, bot, plan): (i64, String, String) = (super::local_day(tz, q * 900_000), col(r, "bot")?, col(r, "plan_id")?);
            let (n, stars): (i64, i64) = (col(r, "n")?, col(r, "stars")?);
            match out.iter_mut().find(|x| x.day == day && x.bot == bot && x.plan == plan) {
                Some(x) => {
                    x.payments += n;
                    x.stars += stars;
                }
                None => out.push(Revenue { day, bot, plan, payments: n, stars }),
            }
        }
        out.sort_by(|a, b| (a.day, &a.bot, &a.plan).cmp(&(b.day, &b.bot, &b.plan)));
        Ok(out)
    }

    async fn users_named(&self, username: &str) -> StoreResult<Vec<i64>> {
        let rows = sqlx::query("SELECT DISTINCT user_id FROM users WHERE LOWER(username) = LOWER($1) ORDER BY user_id")
            .bind(username)
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| col(r, "user_id")).collect()
    }

    async fn person_view(&self, user_id: i64) -> StoreResult<Option<PersonView>> {
        let person = sqlx::query("SELECT first_seen_ms, restricted_until_ms, deleted_ms FROM persons WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        let rows = sqlx::query(
            "SELECT u.bot, u.user_id, u.username, u.language, u.stage, u.gender, u.age, u.vip_until_ms, u.restricted_until_ms, \
             u.reachable, u.created_ms, b.until_ms AS ban_until_ms, \
             COALESCE((SELECT w.balance FROM wallets w WHERE w.bot = u.bot AND w.user_id = u.user_id), 0) AS credits, \
             (SELECT COUNT(*) FROM chat_sessions s WHERE (s.a_bot = u.bot AND s.a_user = u.user_id) \
                OR (s.b_bot = u.bot AND s.b_user = u.user_id)) AS chats, \
             (SELECT COUNT(*) FROM payments pm WHERE pm.bot = u.bot AND pm.user_id = u.user_id) AS payments \
             FROM users u LEFT JOIN admin_bans b ON b.bot = u.bot AND b.user_id = u.user_id \
             WHERE u.user_id = $1 ORDER BY u.bot",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        if person.is_none() && rows.is_empty() {
            return Ok(None);
        }
        let reports = sqlx::query("SELECT COUNT(*) AS n FROM reports WHERE other_user = $1")
            .bind(user_id)
            .fetch_one(self.pool())
            .await
            .map_err(db_err)?;
        Ok(Some(PersonView {
            user_id,
            first_seen_ms: person.as_ref().map(|p| col(p, "first_seen_ms")).transpose()?,
            restricted_until_ms: person.as_ref().map(|p| col::<Option<i64>>(p, "restricted_until_ms")).transpose()?.flatten(),
            deleted_ms: person.as_ref().map(|p| col::<Option<i64>>(p, "deleted_ms")).transpose()?.flatten(),
            reports: col(&reports, "n")?,
            members: rows.iter().map(member_view).collect::<StoreResult<_>>()?,
        }))
    }
}
