//! Analytics (docs/ADMIN.md, "Analytics"): the funnel (start → profile → first search → first
//! chat → first purchase), D1/D7/D30 retention by signup week, revenue by plan and campaign,
//! reconciliation mismatches — read from the rollups (`store/analytics.rs`), which a refresher
//! here keeps current: every minute in the background, and before a read that finds them older
//! than `analytics_max_age` (a minute by default; incremental, so it costs what changed since
//! the last one, not the fleet's size).
//!
//! Choices, written down:
//! * A member's **cohort** is the UTC day of their `start` event; the funnel counts the members
//!   of the period's cohorts who ever reached each step (a member reaches "first purchase" with
//!   their first payment).
//! * **D-N retention** is "active on exactly day N after signing up" (classic N-day retention:
//!   active means any update the bot handled that day). A week's D-N counts only the cohort
//!   days whose day N has ended; until one has, it is absent (not a misleading 0 %).
//! * Weeks start on Monday (ISO), days are UTC (no fleet time zone is configured).
//! * Revenue is by payment day; refunded payments are counted and shown apart (net = Stars −
//!   refunded Stars). A payment's campaign is its quote's.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Serialize;
use tokio::sync::watch;

use super::auth::{Admin, Identity};
use super::{AdminState, ApiError};
use crate::store::analytics::MismatchRow;

/// How often the background refresher runs.
const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
const DAY_MS: i64 = 86_400_000;

pub fn routes() -> Router<AdminState> {
    Router::new().route("/api/v1/analytics", get(analytics))
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct FunnelStep {
    /// `start`, `profile_done`, `first_search`, `first_chat`, `first_purchase`.
    pub step: String,
    pub members: i64,
    /// Of those who started, in percent (one decimal).
    pub percent_of_start: f64,
}

/// N-day retention of a week: of the `eligible` members (those whose day N has ended),
/// `retained` were active on day N.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RetentionCell {
    pub eligible: i64,
    pub retained: i64,
    pub percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RetentionWeek {
    /// The Monday the week starts (`YYYY-MM-DD`, UTC).
    pub week: String,
    /// Members who signed up that week.
    pub members: i64,
    /// Absent until some day N of the week's cohorts has ended.
    pub d1: Option<RetentionCell>,
    pub d7: Option<RetentionCell>,
    pub d30: Option<RetentionCell>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RevenueLine {
    pub bot: String,
    /// The plan (in "by plan") or the campaign (in "by campaign"; absent: no campaign).
    pub plan: Option<String>,
    pub campaign: Option<String>,
    pub payments: i64,
    pub stars: i64,
    pub refunds: i64,
    pub refunded_stars: i64,
    /// Stars minus refunded Stars.
    pub net_stars: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct AnalyticsAnswer {
    /// The first UTC day counted (days since the Unix epoch) and the weeks asked for.
    pub from_day: i64,
    pub weeks: i64,
    /// The bots counted.
    pub bots: Vec<String>,
    pub funnel: Vec<FunnelStep>,
    /// Newest week first.
    pub retention: Vec<RetentionWeek>,
    pub revenue_by_plan: Vec<RevenueLine>,
    pub revenue_by_campaign: Vec<RevenueLine>,
    /// Found since `from_day`, newest first (at most 100).
    pub mismatches: Vec<MismatchRow>,
    /// When the rollups were brought up to date.
    pub refreshed_ms: Option<i64>,
}

/// `YYYY-MM-DD` of a day since the epoch.
pub fn date(day: i64) -> String {
    jiff::Timestamp::from_millisecond(day * DAY_MS).map(|t| t.to_string().chars().take(10).collect()).unwrap_or_default()
}

/// The Monday of a day's week (1970-01-01, day 0, was a Thursday).
fn monday(day: i64) -> i64 {
    day - (day + 3).rem_euclid(7)
}

fn percent(part: i64, whole: i64) -> f64 {
    if whole <= 0 { 0.0 } else { (part as f64 * 1000.0 / whole as f64).round() / 10.0 }
}

/// Brings the rollups up to date (one refresh at a time per process; a concurrent one on
/// another replica only repeats idempotent work).
pub async fn refresh(s: &AdminState) -> Result<(), ApiError> {
    let _one = s.analytics_lock.lock().await;
    match s.store.refresh_rollups(crate::bot::now_ms()).await {
        Ok(stats) => {
            s.fleet.metrics.admin_action("analytics_refresh", "done");
            tracing::debug!(cohorts = stats.cohorts, revenue_days = stats.revenue_days, "analytics: rollups refreshed");
            Ok(())
        }
        Err(e) => {
            s.fleet.metrics.admin_action("analytics_refresh", "failed");
            Err(e.into())
        }
    }
}

/// Refreshes the rollups every minute until `shutdown` (the first one at once: after an
/// upgrade it computes everything once, off the request path).
pub async fn run(s: AdminState, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = refresh(&s).await {
            tracing::warn!(error = ?e, "analytics: the rollups could not be refreshed; retrying");
        }
        tokio::select! {
            changed = shutdown.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(REFRESH_EVERY) => {}
        }
    }
}

/// The analytics `id` may see: their bots (or `bot`, one of them), the last `weeks` weeks.
pub(super) async fn analytics_of(s: &AdminState, id: &Identity, weeks: i64, bot: Option<&str>) -> Result<AnalyticsAnswer, ApiError> {
    if !(1..=104).contains(&weeks) {
        return Err(ApiError::bad("weeks: 1 to 104"));
    }
    if let Some(b) = bot {
        id.require_bot(b)?;
    }
    let counted = |b: &str| bot.map_or(id.may_act_on(b), |only| only == b);
    // The background refresher keeps the rollups within a minute; a read refreshes first only
    // when they are older than the setting (so a page on 1M people costs the read, not a
    // refresh; the answer says when they were refreshed).
    let max_age = s.settings.analytics_max_age.as_millis() as i64;
    let stale = s.store.rollups_refreshed().await?.is_none_or(|at| crate::bot::now_ms() - at >= max_age);
    if stale {
        refresh(s).await?;
    }
    let now = crate::bot::now_ms();
    let today = crate::store::day_of(now);
    let from_day = monday(today) - (weeks - 1) * 7;
    let cohorts: Vec<_> = s.store.cohorts_since(from_day).await?.into_iter().filter(|c| counted(&c.bot)).collect();

    let sum = |f: fn(&crate::store::analytics::CohortRow) -> i64| cohorts.iter().map(f).sum::<i64>();
    let started = sum(|c| c.members);
    let funnel = [
        ("start", started),
        ("profile_done", sum(|c| c.profile_done)),
        ("first_search", sum(|c| c.first_search)),
        ("first_chat", sum(|c| c.first_chat)),
        ("first_purchase", sum(|c| c.purchasers)),
    ]
    .into_iter()
    .map(|(step, members)| FunnelStep { step: step.into(), members, percent_of_start: percent(members, started) })
    .collect();

    let mut weeks_map: BTreeMap<i64, Vec<&crate::store::analytics::CohortRow>> = BTreeMap::new();
    for c in &cohorts {
        weeks_map.entry(monday(c.signup_day)).or_default().push(c);
    }
    let cell = |rows: &[&crate::store::analytics::CohortRow], n: i64, f: fn(&crate::store::analytics::CohortRow) -> i64| {
        // Only cohort days whose day N has ended (before today).
        let done: Vec<_> = rows.iter().filter(|c| c.signup_day + n < today).collect();
        let eligible: i64 = done.iter().map(|c| c.members).sum();
        (!done.is_empty() && eligible > 0).then(|| {
            let retained: i64 = done.iter().map(|c| f(c)).sum();
            RetentionCell { eligible, retained, percent: percent(retained, eligible) }
        })
    };
    let retention = weeks_map
        .iter()
        .rev()
        .map(|(week, rows)| RetentionWeek {
            week: date(*week),
            members: rows.iter().map(|c| c.members).sum(),
            d1: cell(rows, 1, |c| c.d1),
            d7: cell(rows, 7, |c| c.d7),
            d30: cell(rows, 30, |c| c.d30),
        })
        .collect();

    let revenue: Vec<_> = s.store.revenue_rows_since(from_day).await?.into_iter().filter(|r| counted(&r.bot)).collect();
    let mut by_plan: BTreeMap<(String, String), RevenueLine> = BTreeMap::new();
    let mut by_campaign: BTreeMap<(String, String), RevenueLine> = BTreeMap::new();
    for r in &revenue {
        let campaign = (!r.campaign.is_empty()).then(|| r.campaign.clone());
        for (map, key, line) in [
            (&mut by_plan, r.plan.clone(), RevenueLine { bot: r.bot.clone(), plan: Some(r.plan.clone()), ..Default::default() }),
            (&mut by_campaign, r.campaign.clone(), RevenueLine { bot: r.bot.clone(), campaign: campaign.clone(), ..Default::default() }),
        ] {
            let e = map.entry((r.bot.clone(), key)).or_insert(line);
            e.payments += r.payments;
            e.stars += r.stars;
            e.refunds += r.refunds;
            e.refunded_stars += r.refunded_stars;
            e.net_stars = e.stars - e.refunded_stars;
        }
    }
    let mut mismatches = s.store.mismatches_since(from_day * DAY_MS, 1000).await?;
    mismatches.retain(|m| counted(&m.bot));
    mismatches.truncate(100);
    let bots = s.store.bots().await?.into_iter().map(|b| b.id).filter(|b| counted(b)).collect();
    Ok(AnalyticsAnswer {
        from_day,
        weeks,
        bots,
        funnel,
        retention,
        revenue_by_plan: by_plan.into_values().collect(),
        revenue_by_campaign: by_campaign.into_values().collect(),
        mismatches,
        refreshed_ms: s.store.rollups_refreshed().await?,
    })
}

/// `?weeks=` (1 to 104, default 12) and `?bot=`.
pub(super) fn params(q: &std::collections::HashMap<String, String>) -> Result<(i64, Option<String>), ApiError> {
    let weeks = match q.get("weeks").map(|w| w.trim()).filter(|w| !w.is_empty()) {
        None => 12,
        Some(w) => w.parse::<i64>().map_err(|_| ApiError::bad("weeks: 1 to 104"))?,
    };
    let bot = q.get("bot").map(|b| b.trim().to_string()).filter(|b| !b.is_empty());
    Ok((weeks, bot))
}

async fn analytics(
    State(s): State<AdminState>,
    admin: Admin,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<axum::Json<AnalyticsAnswer>, ApiError> {
    let (weeks, bot) = params(&q)?;
    Ok(axum::Json(analytics_of(&s, &admin.identity, weeks, bot.as_deref()).await?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn weeks_start_on_monday_and_percentages_round_to_one_decimal() {
        // 2026-11-30 is a Monday: day 20_787.
        assert_eq!(super::date(20_787), "2026-11-30");
        for d in 20_787..20_794 {
            assert_eq!(super::monday(d), 20_787, "{}", super::date(d));
        }
        assert_eq!(super::monday(20_786), 20_780);
        assert_eq!(super::percent(1, 3), 33.3);
        assert_eq!(super::percent(2, 3), 66.7);
        assert_eq!(super::percent(0, 0), 0.0);
    }
}
