//! The admin role's analytics rollups (docs/ADMIN.md, "Analytics"; tables:
//! `migrations/*/0016_analytics.sql`).
//!
//! The dashboard never scans the event and activity records: it reads two small rollups —
//! `analytics_cohorts` (per bot and signup day: the funnel's steps and D1/D7/D30 activity) and
//! `analytics_revenue` (per bot, day, plan and campaign) — which [`SqlStore::refresh_rollups`]
//! keeps current **incrementally**: it finds what changed since its watermark (funnel events,
//! first activity of a day, payments and refunds after it, through their `at_ms` /
//! `created_ms` / `refunded_ms` indexes) and recomputes only the cohorts and days those touch,
//! each with index lookups bounded by the cohort's size. The first refresh (no watermark)
//! computes everything once. Recomputing a row is idempotent, so two refreshes at once, or a
//! window read twice, change nothing; the window starts a minute before the watermark, so a
//! row committed late (written just before the last refresh began, committed after) is still
//! seen.

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

/// A member reached a funnel step (ever): the events' primary key.
macro_rules! step {
    ($kind:literal) => {
        concat!(
            "CAST(COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM analytics_events e WHERE e.bot = s.bot AND e.user_id = s.user_id \
             AND e.kind = '",
            $kind,
            "') THEN 1 ELSE 0 END), 0) AS BIGINT) AS ",
            $kind
        )
    };
}

/// A member was active `$n` days after signing up ($4: the signup day): the activity's key.
macro_rules! active {
    ($n:literal) => {
        concat!(
            "CAST(COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM activity_days a WHERE a.bot = s.bot AND a.user_id = s.user_id \
             AND a.day = $4 + ",
            $n,
            ") THEN 1 ELSE 0 END), 0) AS BIGINT) AS d",
            $n
        )
    };
}

/// One cohort's numbers ($1 bot, [$2, $3) the signup day in ms, $4 the day).
const COHORT_SQL: &str = concat!(
    "SELECT COUNT(*) AS members, ",
    step!("profile_done"),
    ", ",
    step!("first_search"),
    ", ",
    step!("first_chat"),
    ", ",
    step!("purchase"),
    ", ",
    active!(1),
    ", ",
    active!(7),
    ", ",
    active!(30),
    " FROM analytics_events s WHERE s.bot = $1 AND s.kind = 'start' AND s.ref = '' AND s.at_ms >= $2 AND s.at_ms < $3"
);

impl SqlStore {
    /// Brings the rollups up to `now_ms` (see the module's comment).
    pub async fn refresh_rollups(&self, now_ms: i64) -> StoreResult<RefreshStats> {
        let watermark: Option<i64> = sqlx::query("SELECT watermark_ms FROM analytics_state WHERE name = $1")
            .bind(STATE)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?
            .map(|r| col(&r, "watermark_ms"))
            .transpose()?;
        let since = watermark.map_or(-1, |w| w - OVERLAP_MS);
        let mut cohorts: std::collections::BTreeSet<(String, i64)> = std::collections::BTreeSet::new();
        // Cohorts whose members reached a step (or signed up) since the watermark…
        let rows = sqlx::query(
            "SELECT DISTINCT s.bot, CAST(s.at_ms / 86400000 AS BIGINT) AS day FROM analytics_events e \
             JOIN analytics_events s ON s.bot = e.bot AND s.user_id = e.user_id AND s.kind = 'start' AND s.ref = '' \
             WHERE e.at_ms > $1",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        for r in &rows {
            cohorts.insert((col(r, "bot")?, col(r, "day")?));
        }
        // …and those whose members were first active on day 1, 7 or 30 since then.
        let rows = sqlx::query(
            "SELECT DISTINCT s.bot, CAST(s.at_ms / 86400000 AS BIGINT) AS day FROM activity_days a \
             JOIN analytics_events s ON s.bot = a.bot AND s.user_id = a.user_id AND s.kind = 'start' AND s.ref = '' \
             WHERE a.at_ms > $1 AND a.day - CAST(s.at_ms / 86400000 AS BIGINT) IN (1, 7, 30)",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        for r in &rows {
            cohorts.insert((col(r, "bot")?, col(r, "day")?));
        }
        for (bot, day) in &cohorts {
            self.refresh_cohort(bot, *day, now_ms).await?;
        }
        let rows = sqlx::query(
            "SELECT DISTINCT bot, CAST(created_ms / 86400000 AS BIGINT) AS day FROM payments WHERE created_ms > $1 OR refunded_ms > $1",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        let mut days = Vec::with_capacity(rows.len());
        for r in &rows {
            days.push((col::<String>(r, "bot")?, col::<i64>(r, "day")?));
        }
        for (bot, day) in &days {
            self.refresh_revenue_day(bot, *day).await?;
        }
        sqlx::query(
            "INSERT INTO analytics_state (name, watermark_ms, refreshed_ms) VALUES ($1, $2, $2) \
             ON CONFLICT (name) DO UPDATE SET watermark_ms = excluded.watermark_ms, refreshed_ms = excluded.refreshed_ms",
        )
        .bind(STATE)
        .bind(now_ms)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(RefreshStats { cohorts: cohorts.len() as u64, revenue_days: days.len() as u64, since_ms: watermark })
    }

    /// Recomputes one cohort from the records: each member's steps and activity are index
    /// lookups (the events' and activity's primary keys).
    async fn refresh_cohort(&self, bot: &str, day: i64, now_ms: i64) -> StoreResult<()> {
        let r = sqlx::query(COHORT_SQL)
            .bind(bot)
            .bind(day * DAY_MS)
            .bind((day + 1) * DAY_MS)
            .bind(day)
            .fetch_one(self.pool())
            .await
            .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO analytics_cohorts (bot, signup_day, members, profile_done, first_search, first_chat, purchasers, d1, d7, d30, \
             refreshed_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (bot, signup_day) DO UPDATE SET \
             members = excluded.members, profile_done = excluded.profile_done, first_search = excluded.first_search, \
             first_chat = excluded.first_chat, purchasers = excluded.purchasers, d1 = excluded.d1, d7 = excluded.d7, \
             d30 = excluded.d30, refreshed_ms = excluded.refreshed_ms",
        )
        .bind(bot)
        .bind(day)
        .bind(col::<i64>(&r, "members")?)
        .bind(col::<i64>(&r, "profile_done")?)
        .bind(col::<i64>(&r, "first_search")?)
        .bind(col::<i64>(&r, "first_chat")?)
        .bind(col::<i64>(&r, "purchase")?)
        .bind(col::<i64>(&r, "d1")?)
        .bind(col::<i64>(&r, "d7")?)
        .bind(col::<i64>(&r, "d30")?)
        .bind(now_ms)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Recomputes one bot's payments of one day, by plan and campaign (the quote's).
    async fn refresh_revenue_day(&self, bot: &str, day: i64) -> StoreResult<()> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
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
        tx.commit().await.map_err(db_err)?;
        Ok(())
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
