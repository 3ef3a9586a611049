//! Lock chat: a member spends lock credits so that their partner cannot leave the chat with
//! Next or Stop for a while (report and block always work). The rules are docs/MONEY.md,
//! "Lock chat"; the table is `migrations/*/0006_locks.sql`.
//!
//! Exactly once and never negative, on both databases:
//!
//! * A lock is one transaction that starts by touching its chat's session row with an UPDATE
//!   (`… WHERE ended_ms IS NULL`): on Postgres that row lock is held to the commit, so a lock
//!   and the chat's end (which updates the same row) take turns — a lock never lands on a chat
//!   that has just ended, and an end always sees a committed lock to settle. SQLite runs one
//!   writer at a time.
//! * The debit is a ledger entry keyed by the request (the button press), so a retried update
//!   debits once and confirms again; the ledger's wallet lock keeps the balance from going
//!   negative when two replicas debit one member at once.
//! * Settling (the chat ended) is one `UPDATE … WHERE settled_ms IS NULL`: once, whichever
//!   replica ends the chat; the credits returned are one more ledger entry, keyed by the session.

use sqlx::AnyConnection;

use super::money::{LedgerEntry, LedgerOutcome};
use super::money_sql::append_in;
use super::sql::{SqlStore, col, corrupt, db_err};
use super::{EndReason, StoreResult};
use crate::matching::Member;

/// A member asks to lock their current chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRequest {
    pub session_id: i64,
    pub locker: Member,
    pub minutes: u32,
    pub credits: i64,
    /// What makes the debit unique: the update that asked (a callback query id). A retry of
    /// the same update debits nothing more.
    pub request: String,
    pub now_ms: i64,
}

/// A chat's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLock {
    pub session_id: i64,
    pub locker: Member,
    pub started_ms: i64,
    pub until_ms: i64,
    /// Credits paid for it in total (a lock extended twice counts both).
    pub credits: i64,
    pub settled_ms: Option<i64>,
    pub returned: i64,
}

impl ChatLock {
    /// Whether it holds the partner of its locker at `now_ms`.
    pub fn holds(&self, now_ms: i64) -> bool {
        self.settled_ms.is_none() && self.until_ms > now_ms
    }

    /// The credits of the time not used at `now_ms`, rounded down (an extended lock spreads
    /// all its credits over the whole span).
    pub fn unused_credits(&self, now_ms: i64) -> i64 {
        let span = self.until_ms - self.started_ms;
        let left = (self.until_ms - now_ms).clamp(0, span.max(0));
        if span <= 0 {
            return 0;
        }
        // i128: credits × milliseconds overflows i64 only for absurd values; never panic.
        i64::try_from(i128::from(self.credits) * i128::from(left) / i128::from(span)).unwrap_or(0)
    }
}

/// What [`Locks::lock_chat`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    /// Locked (or extended) until `until_ms`; `balance` is the locker's credits after it.
    /// `first` is false when this request was applied before (a retried update).
    Locked { until_ms: i64, balance: i64, first: bool },
    /// Not enough credits: nothing changed.
    Insufficient { balance: i64 },
    /// The partner holds a lock on this chat already: nothing changed.
    HeldByPartner { until_ms: i64 },
    /// The chat has ended (or the member is not in it): nothing changed.
    NotInChat,
}

/// The unused share of a lock given back when the chat ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub lock: ChatLock,
    /// Credits returned to the locker now (0: nothing was due).
    pub returned: i64,
}

/// Whether the locker gets the unused share of a lock back when the chat ended for `reason`,
/// ended by `by` (None: nobody, e.g. the idle timeout). The table in docs/MONEY.md.
pub fn returns_unused(locker: &Member, by: Option<&Member>, reason: EndReason) -> bool {
    let by_locker = by == Some(locker);
    match reason {
        // The locker left by choice; a partner's Next or Stop that slipped in before the lock
        // was committed is returned.
        EndReason::Stop | EndReason::Next => !by_locker,
        // Safety never costs the locker: reporting the partner returns the rest. A report
        // against the locker returns nothing (an admin may gift it back if it is dismissed).
        EndReason::Report => by_locker,
        // A block is no accusation: the rest is returned whoever blocked.
        EndReason::Block => true,
        // Nobody talked for the idle timeout: the lock kept nothing alive.
        EndReason::Idle => false,
        // The partner blocked the bot or deleted their profile: returned. The locker doing so
        // leaves the bot; nothing to return to.
        EndReason::Gone => !by_locker,
        // The bot was retired: not the locker's doing.
        EndReason::Retired => true,
        // An admin banned a side: the banned locker gets nothing back; a banned partner is
        // not the locker's doing.
        EndReason::Banned => !by_locker,
    }
}

#[async_trait::async_trait]
pub trait Locks: Send + Sync + 'static {
    /// Debits the lock's credits and locks (or extends the lock of) the open chat session,
    /// in one transaction. See [`LockOutcome`].
    async fn lock_chat(&self, request: &LockRequest) -> StoreResult<LockOutcome>;
    /// The lock of a chat session, if it has one (held, expired or settled).
    async fn chat_lock(&self, session_id: i64) -> StoreResult<Option<ChatLock>>;
    /// Settles the lock of a chat that ended for `reason`, ended by `by` (once; None if it had
    /// no lock or was settled already), returning the unused share to the locker when
    /// [`returns_unused`] says so.
    async fn settle_lock(&self, session_id: i64, by: Option<&Member>, reason: EndReason, now_ms: i64) -> StoreResult<Option<Settled>>;
}

macro_rules! lock_columns {
    () => {
        "session_id, locker_bot, locker_user, started_ms, until_ms, credits, settled_ms, returned"
    };
}

fn lock_from_row(row: &sqlx::any::AnyRow) -> StoreResult<ChatLock> {
    Ok(ChatLock {
        session_id: col(row, "session_id")?,
        locker: Member::new(col::<String>(row, "locker_bot")?, col(row, "locker_user")?),
        started_ms: col(row, "started_ms")?,
        until_ms: col(row, "until_ms")?,
        credits: col(row, "credits")?,
        settled_ms: col(row, "settled_ms")?,
        returned: col(row, "returned")?,
    })
}

async fn lock_in(conn: &mut AnyConnection, session_id: i64) -> StoreResult<Option<ChatLock>> {
    let row = sqlx::query(concat!("SELECT ", lock_columns!(), " FROM chat_locks WHERE session_id = $1"))
        .bind(session_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    row.as_ref().map(lock_from_row).transpose()
}

/// Locks the open session row (see the module's comment); whether `member` is one of its sides.
async fn hold_open_session(conn: &mut AnyConnection, session_id: i64, member: &Member) -> StoreResult<bool> {
    let row = sqlx::query(
        "UPDATE chat_sessions SET started_ms = started_ms WHERE id = $1 AND ended_ms IS NULL \
         RETURNING a_bot, a_user, b_bot, b_user",
    )
    .bind(session_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    let Some(row) = row else { return Ok(false) };
    let a = Member::new(col::<String>(&row, "a_bot")?, col(&row, "a_user")?);
    let b = Member::new(col::<String>(&row, "b_bot")?, col(&row, "b_user")?);
    Ok(*member == a || *member == b)
}

fn debit_key(r: &LockRequest) -> String {
    format!("lock:{}:{}", r.locker.bot, r.request)
}

#[async_trait::async_trait]
impl Locks for SqlStore {
    async fn lock_chat(&self, r: &LockRequest) -> StoreResult<LockOutcome> {
        if r.credits < 0 || r.minutes == 0 {
            return Err(corrupt(format_args!("a lock of {} minutes for {} credits", r.minutes, r.credits)));
        }
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        if !hold_open_session(&mut tx, r.session_id, &r.locker).await? {
            tx.rollback().await.map_err(db_err)?;
            return Ok(LockOutcome::NotInChat);
        }
        let existing = lock_in(&mut tx, r.session_id).await?;
        if let Some(l) = &existing
            && l.locker != r.locker
            && l.holds(r.now_ms)
        {
            tx.rollback().await.map_err(db_err)?;
            return Ok(LockOutcome::HeldByPartner { until_ms: l.until_ms });
        }
        let balance = if r.credits == 0 {
            None
        } else {
            let entry = LedgerEntry {
                idem_key: debit_key(r),
                bot: r.locker.bot.clone(),
                user_id: r.locker.user,
                delta: -r.credits,
                reason: "lock".into(),
                reference: format!("session:{}", r.session_id),
                created_ms: r.now_ms,
            };
            match append_in(&mut tx, &entry).await? {
                LedgerOutcome::Written { balance } => Some(balance),
                LedgerOutcome::Duplicate { balance } => {
                    // Applied by an earlier attempt of this update: confirm it again.
                    tx.rollback().await.map_err(db_err)?;
                    let until_ms = existing.map_or(r.now_ms, |l| l.until_ms);
                    return Ok(LockOutcome::Locked { until_ms, balance, first: false });
                }
                LedgerOutcome::Insufficient { balance } => {
                    tx.rollback().await.map_err(db_err)?;
                    return Ok(LockOutcome::Insufficient { balance });
                }
            }
        };
        let add_ms = i64::from(r.minutes) * 60_000;
        // The locker's own lock still running is extended; anything else starts afresh.
        let (started_ms, until_ms, credits) = match &existing {
            Some(l) if l.locker == r.locker && l.holds(r.now_ms) => (l.started_ms, l.until_ms + add_ms, l.credits + r.credits),
            _ => (r.now_ms, r.now_ms + add_ms, r.credits),
        };
        sqlx::query(
            "INSERT INTO chat_locks (session_id, locker_bot, locker_user, started_ms, until_ms, credits) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session_id) DO UPDATE SET \
             locker_bot = $2, locker_user = $3, started_ms = $4, until_ms = $5, credits = $6, settled_ms = NULL, returned = 0",
        )
        .bind(r.session_id)
        .bind(r.locker.bot.as_str())
        .bind(r.locker.user)
        .bind(started_ms)
        .bind(until_ms)
        .bind(credits)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        let balance = match balance {
            Some(b) => b,
            None => super::money::Ledger::credits(self, &r.locker.bot, r.locker.user).await?,
        };
        Ok(LockOutcome::Locked { until_ms, balance, first: true })
    }

    async fn chat_lock(&self, session_id: i64) -> StoreResult<Option<ChatLock>> {
        let mut conn = self.pool().acquire().await.map_err(db_err)?;
        lock_in(&mut conn, session_id).await
    }

    async fn settle_lock(&self, session_id: i64, by: Option<&Member>, reason: EndReason, now_ms: i64) -> StoreResult<Option<Settled>> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let row = sqlx::query(concat!(
            "UPDATE chat_locks SET settled_ms = $2 WHERE session_id = $1 AND settled_ms IS NULL RETURNING ",
            lock_columns!()
        ))
        .bind(session_id)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(db_err)?;
            return Ok(None);
        };
        let mut lock = lock_from_row(&row)?;
        let due = if returns_unused(&lock.locker, by, reason) { lock.unused_credits(now_ms) } else { 0 };
        let mut returned = 0;
        if due > 0 {
            let entry = LedgerEntry {
                idem_key: format!("lockback:{session_id}"),
                bot: lock.locker.bot.clone(),
                user_id: lock.locker.user,
                delta: due,
                reason: "lock_return".into(),
                reference: format!("session:{session_id}"),
                created_ms: now_ms,
            };
            if let LedgerOutcome::Written { .. } = append_in(&mut tx, &entry).await? {
                returned = due;
            }
            sqlx::query("UPDATE chat_locks SET returned = $2 WHERE session_id = $1")
                .bind(session_id)
                .bind(returned)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        lock.settled_ms = Some(now_ms);
        lock.returned = returned;
        Ok(Some(Settled { lock, returned }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(started_ms: i64, until_ms: i64, credits: i64) -> ChatLock {
        ChatLock { session_id: 1, locker: Member::new("a", 1), started_ms, until_ms, credits, settled_ms: None, returned: 0 }
    }

    #[test]
    fn the_unused_share_is_rounded_down_and_never_more_than_was_paid() {
        let l = lock(0, 600_000, 2);
        assert_eq!(l.unused_credits(0), 2);
        assert_eq!(l.unused_credits(1), 1, "a moment used rounds down");
        assert_eq!(l.unused_credits(300_000), 1);
        assert_eq!(l.unused_credits(300_001), 0);
        assert_eq!(l.unused_credits(-5), 2, "a clock behind the start returns everything, no more");
        assert_eq!(l.unused_credits(900_000), 0);
        assert_eq!(lock(0, 0, 3).unused_credits(0), 0, "an empty span returns nothing");
        assert_eq!(lock(0, i64::MAX, i64::MAX).unused_credits(0), i64::MAX, "no overflow");
    }

    #[test]
    fn who_gets_the_unused_share_back() {
        let locker = Member::new("a", 1);
        let partner = Member::new("b", 2);
        assert!(!returns_unused(&locker, Some(&locker), EndReason::Stop));
        assert!(!returns_unused(&locker, Some(&locker), EndReason::Next));
        assert!(returns_unused(&locker, Some(&partner), EndReason::Next), "a partner's Next that slipped in is returned");
        assert!(returns_unused(&locker, Some(&locker), EndReason::Report), "reporting costs the locker nothing");
        assert!(!returns_unused(&locker, Some(&partner), EndReason::Report), "a report against the locker returns nothing");
        assert!(returns_unused(&locker, Some(&partner), EndReason::Block));
        assert!(returns_unused(&locker, Some(&locker), EndReason::Block));
        assert!(!returns_unused(&locker, None, EndReason::Idle));
        assert!(returns_unused(&locker, Some(&partner), EndReason::Gone));
        assert!(!returns_unused(&locker, Some(&locker), EndReason::Gone));
        assert!(returns_unused(&locker, None, EndReason::Retired));
    }
}
