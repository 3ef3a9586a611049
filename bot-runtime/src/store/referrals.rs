//! Referrals: invite codes, who invited whom, whether it counted, and the referrer's share of
//! a referee's purchases. The rules are docs/MONEY.md, "Referrals"; the tables are
//! `migrations/*/0007_referrals.sql`.
//!
//! Exactly once: a referral is one row per (bot, referee), written once; it is counted by one
//! `UPDATE … WHERE status = 'pending'` in the same transaction that grants the VIP days, so two
//! replicas completing the same profile grant once. The commission is a ledger row keyed by
//! the purchase's charge id, and its reversal one keyed by the same charge.

use sqlx::AnyConnection;

use super::StoreResult;
use super::money::Ledger as _;
use super::money::{LedgerEntry, LedgerOutcome};
use super::money_sql::{append_in, stack_vip_in};
use super::sql::{SqlStore, col, db_err};

/// Where a referral stands (the `status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferralStatus {
    /// Joined through a link; the profile is not complete yet.
    Pending,
    /// Counted: the referrer got the VIP days and earns a share of purchases.
    Rewarded,
    /// Looked like abuse: no reward, flagged for admins.
    Withheld,
    /// Never counts (self-referral, not new to the fleet).
    Void,
}

impl ReferralStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReferralStatus::Pending => "pending",
            ReferralStatus::Rewarded => "rewarded",
            ReferralStatus::Withheld => "withheld",
            ReferralStatus::Void => "void",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [ReferralStatus::Pending, ReferralStatus::Rewarded, ReferralStatus::Withheld, ReferralStatus::Void]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Why a referral does not count (the `flag` column; shown to admins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferralFlag {
    /// The referee opened their own link.
    SelfReferral,
    /// The referee had used a bot of the fleet before (or deleted a profile).
    NotNew,
    /// The referrer was invited by the referee (A invites B, B invites A).
    Loop,
    /// The referrer's recent referees mostly never chat: a burst of accounts made for rewards.
    Farming,
}

impl ReferralFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            ReferralFlag::SelfReferral => "self",
            ReferralFlag::NotNew => "not_new",
            ReferralFlag::Loop => "loop",
            ReferralFlag::Farming => "farming",
        }
    }
}

/// The farming check: within [`FARMING_WINDOW_MS`] before a referee completes the profile, if
/// the referrer has at least [`FARMING_MIN_REFEREES`] other counted referees and fewer than half
/// of them have ever chatted, this one is withheld.
pub const FARMING_WINDOW_MS: i64 = 24 * 3_600_000;
pub const FARMING_MIN_REFEREES: i64 = 5;

/// A referral being counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub referrer_user: i64,
    pub status: ReferralStatus,
    pub flag: Option<ReferralFlag>,
    /// The referrer's VIP deadline after the reward (None: no reward, or no VIP days, or the
    /// referrer's profile is gone).
    pub referrer_vip_until_ms: Option<i64>,
}

/// A member's referral figures, for `/invite`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferralStats {
    /// Joined through the member's link (any status).
    pub joined: i64,
    pub counted: i64,
    pub pending: i64,
    /// Withheld or void.
    pub not_counted: i64,
    /// Credits earned from referees' purchases, net of reversals.
    pub credits_earned: i64,
}

#[async_trait::async_trait]
pub trait Referrals: Send + Sync + 'static {
    /// The member's invite code, made now if they have none.
    async fn referral_code(&self, bot: &str, user_id: i64, now_ms: i64) -> StoreResult<String>;
    /// Whose code it is on `bot` (None: no such code on this bot).
    async fn code_owner(&self, bot: &str, code: &str) -> StoreResult<Option<i64>>;
    /// Records that `referee` joined through `referrer`'s link, unless the referee already has
    /// a referrer on this bot; `void` records it as never counting, with its flag. True if
    /// this call recorded it.
    async fn record_referral(&self, bot: &str, referee: i64, referrer: i64, void: Option<ReferralFlag>, now_ms: i64) -> StoreResult<bool>;
    /// The referee completed the profile: counts their pending referral once (the checks of
    /// docs/MONEY.md), granting the referrer `vip_days` in the same transaction. None when
    /// there is no pending referral (none, or counted already).
    async fn complete_referral(&self, bot: &str, referee: i64, vip_days: i64, now_ms: i64) -> StoreResult<Option<Completed>>;
    /// The referrer of a counted referral of `referee` on `bot`.
    async fn rewarded_referrer(&self, bot: &str, referee: i64) -> StoreResult<Option<i64>>;
    /// Credits the referrer `credits` for the purchase `charge_id` (once per charge). The
    /// balance after it, or None if it was credited before.
    async fn credit_commission(&self, bot: &str, referrer: i64, charge_id: &str, credits: i64, now_ms: i64) -> StoreResult<Option<i64>>;
    /// Takes back the commission of a refunded purchase once, as far as the referrer's balance
    /// allows (never below zero). (referrer, credits taken back), or None if there was no
    /// commission or it was reversed before.
    async fn reverse_commission(&self, bot: &str, charge_id: &str, now_ms: i64) -> StoreResult<Option<(i64, i64)>>;
    async fn referral_stats(&self, bot: &str, referrer: i64) -> StoreResult<ReferralStats>;
}

/// A new invite code: 48 random bits in lower-case base 32 (10 characters), safe in a
/// `start` parameter (`[A-Za-z0-9_-]`, at most 64 bytes).
fn new_code() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut bits = rand::random::<u64>();
    (0..10)
        .map(|_| {
            let c = ALPHABET[(bits & 31) as usize] as char;
            bits >>= 5;
            c
        })
        .collect()
}

fn commission_key(charge_id: &str) -> String {
    format!("refcom:{charge_id}")
}

async fn scalar(conn: &mut AnyConnection, sql: &'static str, bot: &str, user: i64, since: i64) -> StoreResult<i64> {
    let row = sqlx::query(sql).bind(bot).bind(user).bind(since).fetch_one(&mut *conn).await.map_err(db_err)?;
    col(&row, "n")
}

#[async_trait::async_trait]
impl Referrals for SqlStore {
    async fn referral_code(&self, bot: &str, user_id: i64, now_ms: i64) -> StoreResult<String> {
        // A collision of 48 random bits is not expected; a few tries make it impossible.
        for _ in 0..4 {
            let existing = sqlx::query("SELECT code FROM referral_codes WHERE bot = $1 AND user_id = $2")
                .bind(bot)
                .bind(user_id)
                .fetch_optional(self.pool())
                .await
                .map_err(db_err)?;
            if let Some(row) = existing {
                return col(&row, "code");
            }
            sqlx::query("INSERT INTO referral_codes (code, bot, user_id, created_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                .bind(new_code())
                .bind(bot)
                .bind(user_id)
                .bind(now_ms)
                .execute(self.pool())
                .await
                .map_err(db_err)?;
        }
        Err(super::sql::corrupt(format_args!("no invite code could be made for a member of {bot}")))
    }

    async fn code_owner(&self, bot: &str, code: &str) -> StoreResult<Option<i64>> {
        let row = sqlx::query("SELECT user_id FROM referral_codes WHERE code = $1 AND bot = $2")
            .bind(code)
            .bind(bot)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        row.as_ref().map(|r| col(r, "user_id")).transpose()
    }

    async fn record_referral(&self, bot: &str, referee: i64, referrer: i64, void: Option<ReferralFlag>, now_ms: i64) -> StoreResult<bool> {
        let status = if void.is_some() { ReferralStatus::Void } else { ReferralStatus::Pending };
        let done = sqlx::query(
            "INSERT INTO referrals (bot, referee_user, referrer_user, created_ms, status, flag) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (bot, referee_user) DO NOTHING",
        )
        .bind(bot)
        .bind(referee)
        .bind(referrer)
        .bind(now_ms)
        .bind(status.as_str())
        .bind(void.map(ReferralFlag::as_str))
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn complete_referral(&self, bot: &str, referee: i64, vip_days: i64, now_ms: i64) -> StoreResult<Option<Completed>> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        // Claims the pending row first (a write: the row lock on Postgres, the writer lock on
        // SQLite), so one transaction counts it.
        let row = sqlx::query(
            "UPDATE referrals SET completed_ms = $3 WHERE bot = $1 AND referee_user = $2 AND status = 'pending' RETURNING referrer_user",
        )
        .bind(bot)
        .bind(referee)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(db_err)?;
            return Ok(None);
        };
        let referrer: i64 = col(&row, "referrer_user")?;
        // A loop: the referrer joined through the referee's link (on any bot of the fleet).
        let looped = sqlx::query("SELECT 1 AS seen FROM referrals WHERE referee_user = $1 AND referrer_user = $2")
            .bind(referrer)
            .bind(referee)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .is_some();
        let since = now_ms - FARMING_WINDOW_MS;
        let recent = scalar(
            &mut tx,
            "SELECT COUNT(*) AS n FROM referrals WHERE bot = $1 AND referrer_user = $2 AND completed_ms >= $3 \
             AND status IN ('rewarded', 'withheld')",
            bot,
            referrer,
            since,
        )
        .await?;
        let chatted = scalar(
            &mut tx,
            "SELECT COUNT(*) AS n FROM referrals r WHERE r.bot = $1 AND r.referrer_user = $2 AND r.completed_ms >= $3 \
             AND r.status IN ('rewarded', 'withheld') AND EXISTS (SELECT 1 FROM chat_sessions s WHERE \
             (s.a_bot = r.bot AND s.a_user = r.referee_user) OR (s.b_bot = r.bot AND s.b_user = r.referee_user))",
            bot,
            referrer,
            since,
        )
        .await?;
        let flag = if looped {
            Some(ReferralFlag::Loop)
        } else if recent >= FARMING_MIN_REFEREES && chatted * 2 < recent {
            Some(ReferralFlag::Farming)
        } else {
            None
        };
        let status = if flag.is_some() { ReferralStatus::Withheld } else { ReferralStatus::Rewarded };
        let days = if flag.is_none() { vip_days.max(0) } else { 0 };
        sqlx::query("UPDATE referrals SET status = $3, flag = $4, reward_vip_days = $5 WHERE bot = $1 AND referee_user = $2")
            .bind(bot)
            .bind(referee)
            .bind(status.as_str())
            .bind(flag.map(ReferralFlag::as_str))
            .bind(days)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // VIP days stack onto an unexpired VIP, as a purchase's do.
        let referrer_vip_until_ms = if days > 0 { stack_vip_in(&mut tx, bot, referrer, now_ms, days).await? } else { None };
        tx.commit().await.map_err(db_err)?;
        Ok(Some(Completed { referrer_user: referrer, status, flag, referrer_vip_until_ms }))
    }

    async fn rewarded_referrer(&self, bot: &str, referee: i64) -> StoreResult<Option<i64>> {
        let row = sqlx::query("SELECT referrer_user FROM referrals WHERE bot = $1 AND referee_user = $2 AND status = 'rewarded'")
            .bind(bot)
            .bind(referee)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        row.as_ref().map(|r| col(r, "referrer_user")).transpose()
    }

    async fn credit_commission(&self, bot: &str, referrer: i64, charge_id: &str, credits: i64, now_ms: i64) -> StoreResult<Option<i64>> {
        if credits <= 0 {
            return Ok(None);
        }
        let entry = LedgerEntry {
            idem_key: commission_key(charge_id),
            bot: bot.to_string(),
            user_id: referrer,
            delta: credits,
            reason: "referral".into(),
            reference: charge_id.to_string(),
            created_ms: now_ms,
        };
        // Once per charge: the ledger's idempotency key.
        Ok(match self.append(&entry).await? {
            LedgerOutcome::Written { balance } => Some(balance),
            _ => None,
        })
    }

    async fn reverse_commission(&self, bot: &str, charge_id: &str, now_ms: i64) -> StoreResult<Option<(i64, i64)>> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let row = sqlx::query("SELECT user_id, delta FROM ledger WHERE idem_key = $1 AND bot = $2")
            .bind(commission_key(charge_id))
            .bind(bot)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(db_err)?;
            return Ok(None);
        };
        let (referrer, earned): (i64, i64) = (col(&row, "user_id")?, col(&row, "delta")?);
        // The wallet row's lock (taken by the UPDATE) is held to the commit.
        let balance: i64 = sqlx::query("UPDATE wallets SET updated_ms = updated_ms WHERE bot = $1 AND user_id = $2 RETURNING balance")
            .bind(bot)
            .bind(referrer)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .map(|r| col(&r, "balance"))
            .transpose()?
            .unwrap_or(0);
        let take = earned.min(balance);
        let key = format!("refcomback:{charge_id}");
        let seen =
            sqlx::query("SELECT 1 AS seen FROM ledger WHERE idem_key = $1").bind(&key).fetch_optional(&mut *tx).await.map_err(db_err)?;
        if seen.is_some() {
            tx.rollback().await.map_err(db_err)?;
            return Ok(None);
        }
        if take > 0 {
            let entry = LedgerEntry {
                idem_key: key,
                bot: bot.to_string(),
                user_id: referrer,
                delta: -take,
                reason: "referral_refund".into(),
                reference: charge_id.to_string(),
                created_ms: now_ms,
            };
            append_in(&mut tx, &entry).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(Some((referrer, take.max(0))))
    }

    async fn referral_stats(&self, bot: &str, referrer: i64) -> StoreResult<ReferralStats> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM referrals WHERE bot = $1 AND referrer_user = $2 GROUP BY status")
            .bind(bot)
            .bind(referrer)
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        let mut stats = ReferralStats::default();
        for row in &rows {
            let n: i64 = col(row, "n")?;
            stats.joined += n;
            match ReferralStatus::parse(&col::<String>(row, "status")?) {
                Some(ReferralStatus::Rewarded) => stats.counted += n,
                Some(ReferralStatus::Pending) => stats.pending += n,
                _ => stats.not_counted += n,
            }
        }
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(delta), 0) AS BIGINT) AS n FROM ledger WHERE bot = $1 AND user_id = $2 \
             AND reason IN ('referral', 'referral_refund')",
        )
        .bind(bot)
        .bind(referrer)
        .fetch_one(self.pool())
        .await
        .map_err(db_err)?;
        stats.credits_earned = col(&row, "n")?;
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_ten_characters_fit_for_a_start_parameter() {
        for _ in 0..100 {
            let c = new_code();
            assert_eq!(c.len(), 10);
            assert!(c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{c}");
        }
        assert_ne!(new_code(), new_code());
    }
}
