//! The admin role's analytics rollups (docs/ADMIN.md, "Analytics"; tables:
//! `migrations/*/0016_analytics.sql`).
//!
//! The dashboard never scans the event and activity records: it reads two small rollups —
//! `analytics_cohorts` (per bot and signup day: the funnel's steps and D1/D7/D30 activity) and
//! `analytics_revenue` (per bot, day, plan and campaign) — which [`SqlStore::refresh_rollups`]
//! keeps current **incrementally**. Each member's place is kept in `analytics_members` (signup
//! day and flags: the steps reached, active on day 1/7/30). A refresh finds the members touched
//! since its watermark (funnel events and first activity of a day after it, through their
//! `at_ms` indexes), recomputes each one's flags (index lookups) and applies the difference to
//! their cohort's counters — so it costs the touched members, not their cohorts' size; payment
//! days touched (payments and refunds after it) are recomputed whole (payments are few). The
//! first refresh (no watermark) computes everyone once, set-based. A refresh holds the state
//! row's write lock for its whole transaction (two replicas never apply a change twice); the
//! window starts a minute before the watermark, so a row committed late is still seen, and a
//! member seen twice with unchanged flags changes nothing.

use serde::Serialize;

use super::StoreResult;
use super::sql::{SqlStore, col, db_err};

/// How far before its watermark a refresh looks again (rows committed late).
const OVERLAP_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
const STATE: &str = "rollups";

/// One cohort: a bot's members who started on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct CohortRow {
    pub bot: String,
    /// Days since the Unix epoch (UTC).
    pub signup_day: i64,
    pub members: i64,
    pub profile_done: i64,
    pub first_search: i64,
    pub first_chat: i64,
    pub purchasers: i64,
    /// Active exactly 1, 7 and 30 days after the signup day.
    pub d1: i64,
    pub d7: i64,
    pub d30: i64,
}

/// Payments of one bot, day, plan and campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RevenueRow {
    pub bot: String,
    pub day: i64,
    pub plan: String,
    /// Empty: no campaign.
    pub campaign: String,
    pub payments: i64,
    pub stars: i64,
    pub refunds: i64,
    pub refunded_stars: i64,
}

/// A reconciliation mismatch as kept for the admins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct MismatchRow {
    pub bot: String,
    pub charge_id: String,
    /// `unknown_charge`, `amount`, `refund_not_applied`, `unknown_refund` (docs/MONEY.md).
    pub kind: String,
    pub stars: i64,
    pub at_ms: i64,
}

/// What one refresh did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RefreshStats {
    pub cohorts: u64,
    pub revenue_days: u64,
    /// The watermark it read (None: the first refresh, everything computed).
    pub since_ms: Option<i64>,
}

/// A member reached a funnel step (ever) — `$bit` if so: the events' primary key.
macro_rules! step {
    ($kind:literal, $bit:literal) => {
        concat!(
            "(CASE WHEN EXISTS (SELECT 1 FROM analytics_events e WHERE e.bot = s.bot AND e.user_id = s.user_id AND e.kind = '",
            $kind,
            "') THEN ",
            $bit,
            " ELSE 0 END)"
        )
    };
}

/// A member was active `$n` days after signing up — `$bit` if so: the activity's key.
macro_rules! active {
    ($n:literal, $bit:literal) => {
        concat!(
            "(CASE WHEN EXISTS (SELECT 1 FROM activity_days a WHERE a.bot = s.bot AND a.user_id = s.user_id \
             AND a.day = CAST(s.at_ms / 86400000 AS BIGINT) + ",
            $n,
            ") THEN ",
            $bit,
            " ELSE 0 END)"
        )
    };
}

/// A member's flags (see `analytics_members`).
macro_rules! flags {
    () => {
        concat!(
            step!("profile_done", "1"),
            " + ",
            step!("first_search", "2"),
            " + ",
            step!("first_chat", "4"),
            " + ",
            step!("purchase", "8"),
            " + ",
            active!("1", "16"),
            " + ",
            active!("7", "32"),
            " + ",
            active!("30", "64")
        )
    };
}

/// Every member's place in the rollup, from the records (the first refresh).
const ALL_MEMBERS_SQL: &str = concat!(
    "INSERT INTO analytics_members (bot, user_id, signup_day, flags) SELECT s.bot, s.user_id, CAST(s.at_ms / 86400000 AS BIGINT), ",
    flags!(),
    " FROM analytics_events s WHERE s.kind = 'start' AND s.ref = ''"
);

/// One member's signup day and flags ($1 bot, $2 user).
const MEMBER_SQL: &str = concat!(
    "SELECT CAST(s.at_ms / 86400000 AS BIGINT) AS day, CAST(",
    flags!(),
    " AS BIGINT) AS flags FROM analytics_events s WHERE s.bot = $1 AND s.user_id = $2 AND s.kind = 'start' AND s.ref = ''"
);

/// The bits of `flags`, in the order of a cohort's counters after `members`.
const BITS: [i64; 7] = [1, 2, 4, 8, 16, 32, 64];

impl SqlStore {
    /// Brings the rollups up to `now_ms` (see the module's comment).
    pub async fn refresh_rollups(&self, now_ms: i64) -> StoreResult<RefreshStats> {
        // One refresh at a time across replicas: each holds the state row's write lock (a row
        // lock in Postgres, the database's in SQLite) for its whole transaction, so two never
        // apply the same change twice.
        sqlx::query("INSERT INTO analytics_state (name, watermark_ms, refreshed_ms) VALUES ($1, -1, 0) ON CONFLICT (name) DO NOTHING")
            .bind(STATE)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        sqlx::query("UPDATE analytics_state SET refreshed_ms = refreshed_ms WHERE name = $1")
            .bind(STATE)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let row = sqlx::query("SELECT watermark_ms FROM analytics_state WHERE name = $1")
            .bind(STATE)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        let watermark: i64 = col(&row, "watermark_ms")?;
        let first = watermark < 0;
        let since = if first { -1 } else { watermark - OVERLAP_MS };
        let cohorts = if first {
            // Everyone, set-based, once.
            sqlx::query("DELETE FROM analytics_members").execute(&mut *tx).await.map_err(db_err)?;
            sqlx::query("DELETE FROM analytics_cohorts").execute(&mut *tx).await.map_err(db_err)?;
            sqlx::query(ALL_MEMBERS_SQL).execute(&mut *tx).await.map_err(db_err)?;
            let done = sqlx::query(
                "INSERT INTO analytics_cohorts (bot, signup_day, members, profile_done, first_search, first_chat, purchasers, d1, d7, d30, \
                 refreshed_ms) SELECT bot, signup_day, COUNT(*), \
                 CAST(SUM(CASE WHEN (flags & 1) <> 0 THEN 1 ELSE 0 END) AS BIGINT), CAST(SUM(CASE WHEN (flags & 2) <> 0 THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN (flags & 4) <> 0 THEN 1 ELSE 0 END) AS BIGINT), CAST(SUM(CASE WHEN (flags & 8) <> 0 THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN (flags & 16) <> 0 THEN 1 ELSE 0 END) AS BIGINT), CAST(SUM(CASE WHEN (flags & 32) <> 0 THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN (flags & 64) <> 0 THEN 1 ELSE 0 END) AS BIGINT), $1 FROM analytics_members GROUP BY bot, signup_day",
            )
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            done.rows_affected()
        } else {
            // The members touched since the watermark: recompute each one's flags and apply
            // the difference to their cohort's counters.
            let rows = sqlx::query(
                "SELECT bot, user_id FROM analytics_events WHERE at_ms > $1 UNION SELECT bot, user_id FROM activity_days WHERE at_ms > $1",
            )
            .bind(since)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
            let mut deltas: std::collections::BTreeMap<(String, i64), [i64; 8]> = std::collections::BTreeMap::new();
            for r in &rows {
                let (bot, user): (String, i64) = (col(r, "bot")?, col(r, "user_id")?);
                let Some(now) = sqlx::query(MEMBER_SQL).bind(&bot).bind(user).fetch_optional(&mut *tx).await.map_err(db_err)? else {
                    continue; // no start event (yet): not in any cohort
                };
                let (day, flags): (i64, i64) = (col(&now, "day")?, col(&now, "flags")?);
                let old = sqlx::query("SELECT flags FROM analytics_members WHERE bot = $1 AND user_id = $2")
                    .bind(&bot)
                    .bind(user)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?
                    .map(|o| col::<i64>(&o, "flags"))
                    .transpose()?;
                if old == Some(flags) {
                    continue;
                }
                let d = deltas.entry((bot.clone(), day)).or_default();
                if old.is_none() {
                    d[0] += 1;
                }
                let was = old.unwrap_or(0);
                for (i, bit) in BITS.iter().enumerate() {
                    d[i + 1] += i64::from(flags & bit != 0) - i64::from(was & bit != 0);
                }
                sqlx::query(
                    "INSERT INTO analytics_members (bot, user_id, signup_day, flags) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (bot, user_id) DO UPDATE SET flags = excluded.flags",
                )
                .bind(&bot)
                .bind(user)
                .bind(day)
                .bind(flags)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            for ((bot, day), d) in &deltas {
                sqlx::query(
                    "INSERT INTO analytics_cohorts (bot, signup_day, members, profile_done, first_search, first_chat, purchasers, d1, d7, d30, \
                     refreshed_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (bot, signup_day) DO UPDATE SET \
                     members = analytics_cohorts.members + excluded.members, profile_done = analytics_cohorts.profile_done + excluded.profile_done, \
                     first_search = analytics_cohorts.first_search + excluded.first_search, first_chat = analytics_cohorts.first_chat + excluded.first_chat, \
                     purchasers = analytics_cohorts.purchasers + excluded.purchasers, d1 = analytics_cohorts.d1 + excluded.d1, \
                     d7 = analytics_cohorts.d7 + excluded.d7, d30 = analytics_cohorts.d30 + excluded.d30, refreshed_ms = excluded.refreshed_ms",
                )
                .bind(bot)
                .bind(day)
                .bind(d[0])
                .bind(d[1])
                .bind(d[2])
                .bind(d[3])
                .bind(d[4])
                .bind(d[5])
                .bind(d[6])
                .bind(d[7])
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            deltas.len() as u64
        };
        let rows = sqlx::query(
            "SELECT DISTINCT bot, CAST(created_ms / 86400000 AS BIGINT) AS day FROM payments WHERE created_ms > $1 OR refunded_ms > $1",
        )
        .bind(since)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let mut days = Vec::with_capacity(rows.len());
        for r in &rows {
            days.push((col::<String>(r, "bot")?, col::<i64>(r, "day")?));
        }
        // Each touched payment day of a bot, recomputed by plan and campaign (the quote's).
        for (bot, day) in &days {
            sqlx::query("DELETE FROM analytics_revenue WHERE bot = $1 AND day = $2")
                .bind(bot)
                .bind(day)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            sqlx::query(
                "INSERT INTO analytics_revenue (bot, day, plan_id, campaign_id, payments, stars, refunds, refunded_stars) \
                 SELECT p.bot, $2, p.plan_id, COALESCE(q.campaign_id, ''), COUNT(*), CAST(SUM(p.stars) AS BIGINT), \
                 CAST(SUM(CASE WHEN p.refunded_ms IS NULL THEN 0 ELSE 1 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN p.refunded_ms IS NULL THEN 0 ELSE p.stars END) AS BIGINT) \
                 FROM payments p LEFT JOIN quotes q ON q.id = p.quote_id \
                 WHERE p.bot = $1 AND p.created_ms >= $3 AND p.created_ms < $4 GROUP BY p.bot, p.plan_id, COALESCE(q.campaign_id, '')",
            )
            .bind(bot)
            .bind(day)
            .bind(day * DAY_MS)
            .bind((day + 1) * DAY_MS)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        sqlx::query("UPDATE analytics_state SET watermark_ms = $2, refreshed_ms = $2 WHERE name = $1")
            .bind(STATE)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(RefreshStats { cohorts, revenue_days: days.len() as u64, since_ms: (!first).then_some(watermark) })
    }

    /// When the rollups were last refreshed (None: never).
    pub async fn rollups_refreshed(&self) -> StoreResult<Option<i64>> {
        sqlx::query("SELECT refreshed_ms FROM analytics_state WHERE name = $1")
            .bind(STATE)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?
            .map(|r| col(&r, "refreshed_ms"))
            .transpose()
    }

    /// The cohorts of signup days from `from_day` on, by day and bot.
    pub async fn cohorts_since(&self, from_day: i64) -> StoreResult<Vec<CohortRow>> {
        let rows = sqlx::query(
            "SELECT bot, signup_day, members, profile_done, first_search, first_chat, purchasers, d1, d7, d30 FROM analytics_cohorts \
             WHERE signup_day >= $1 ORDER BY signup_day, bot",
        )
        .bind(from_day)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(CohortRow {
                    bot: col(r, "bot")?,
                    signup_day: col(r, "signup_day")?,
                    members: col(r, "members")?,
                    profile_done: col(r, "profile_done")?,
                    first_search: col(r, "first_search")?,
                    first_chat: col(r, "first_chat")?,
                    purchasers: col(r, "purchasers")?,
                    d1: col(r, "d1")?,
                    d7: col(r, "d7")?,
                    d30: col(r, "d30")?,
                })
            })
            .collect()
    }

    /// Revenue rows of payment days from `from_day` on.
    pub async fn revenue_rows_since(&self, from_day: i64) -> StoreResult<Vec<RevenueRow>> {
        let rows = sqlx::query(
            "SELECT bot, day, plan_id, campaign_id, payments, stars, refunds, refunded_stars FROM analytics_revenue \
             WHERE day >= $1 ORDER BY day, bot, plan_id, campaign_id",
        )
        .bind(from_day)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(RevenueRow {
                    bot: col(r, "bot")?,
                    day: col(r, "day")?,
                    plan: col(r, "plan_id")?,
                    campaign: col(r, "campaign_id")?,
                    payments: col(r, "payments")?,
                    stars: col(r, "stars")?,
                    refunds: col(r, "refunds")?,
                    refunded_stars: col(r, "refunded_stars")?,
                })
            })
            .collect()
    }

    /// Reconciliation mismatches found since `since_ms`, newest first (at most `limit`).
    pub async fn mismatches_since(&self, since_ms: i64, limit: i64) -> StoreResult<Vec<MismatchRow>> {
        let rows = sqlx::query(
            "SELECT bot, charge_id, kind, stars, at_ms FROM reconcile_mismatches WHERE at_ms >= $1 ORDER BY at_ms DESC, charge_id LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(MismatchRow {
                    bot: col(r, "bot")?,
                    charge_id: col(r, "charge_id")?,
                    kind: col(r, "kind")?,
                    stars: col(r, "stars")?,
                    at_ms: col(r, "at_ms")?,
                })
            })
            .collect()
    }
}
