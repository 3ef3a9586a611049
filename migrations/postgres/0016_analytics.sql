-- Analytics of the admin role (docs/ADMIN.md, "Analytics"): the activity record by day, the
-- rollups the dashboard reads (refreshed incrementally, so a page is fast on 1M people), and
-- reconciliation mismatches kept for the admins. Same tables as
-- migrations/sqlite/0016_analytics.sql. Days are days since the Unix epoch (UTC).

-- activity_days: the days a member was active (one row per member per day, written with the
-- member's activity record, never per message); at_ms: the first activity of that day (what
-- the rollup's incremental refresh reads since its watermark). Metadata only.
CREATE TABLE activity_days (
    bot     TEXT   NOT NULL,
    user_id BIGINT NOT NULL,
    day     BIGINT NOT NULL,
    at_ms   BIGINT NOT NULL,
    PRIMARY KEY (bot, user_id, day)
);
CREATE INDEX activity_days_at ON activity_days (at_ms);
-- What the record held so far: each member's last active day.
INSERT INTO activity_days (bot, user_id, day, at_ms)
SELECT bot, user_id, active_day, active_day * 86400000 FROM users WHERE active_day IS NOT NULL;

-- The refresh finds what changed since its watermark.
CREATE INDEX analytics_events_at ON analytics_events (at_ms);
CREATE INDEX payments_created ON payments (created_ms);
CREATE INDEX payments_refunded ON payments (refunded_ms);

-- analytics_cohorts: per bot and signup day (the day of the member's `start` event): members,
-- how many reached each funnel step (ever), and how many were active exactly 1, 7 and 30 days
-- after signing up.
CREATE TABLE analytics_cohorts (
    bot          TEXT   NOT NULL,
    signup_day   BIGINT NOT NULL,
    members      BIGINT NOT NULL,
    profile_done BIGINT NOT NULL,
    first_search BIGINT NOT NULL,
    first_chat   BIGINT NOT NULL,
    purchasers   BIGINT NOT NULL,
    d1           BIGINT NOT NULL,
    d7           BIGINT NOT NULL,
    d30          BIGINT NOT NULL,
    refreshed_ms BIGINT NOT NULL,
    PRIMARY KEY (bot, signup_day)
);
CREATE INDEX analytics_cohorts_day ON analytics_cohorts (signup_day);

-- analytics_members: each member's place in the rollup (signup day, and flags: 1 profile,
-- 2 first search, 4 first chat, 8 purchase, 16/32/64 active on day 1/7/30), so a refresh
-- applies only what changed for the members it touches.
CREATE TABLE analytics_members (
    bot        TEXT   NOT NULL,
    user_id    BIGINT NOT NULL,
    signup_day BIGINT NOT NULL,
    flags      BIGINT NOT NULL,
    PRIMARY KEY (bot, user_id)
);

-- analytics_revenue: per bot, payment day, plan and campaign ('' without one): payments and
-- Stars, and how many of them were refunded since.
CREATE TABLE analytics_revenue (
    bot            TEXT   NOT NULL,
    day            BIGINT NOT NULL,
    plan_id        TEXT   NOT NULL,
    campaign_id    TEXT   NOT NULL,
    payments       BIGINT NOT NULL,
    stars          BIGINT NOT NULL,
    refunds        BIGINT NOT NULL,
    refunded_stars BIGINT NOT NULL,
    PRIMARY KEY (bot, day, plan_id, campaign_id)
);
CREATE INDEX analytics_revenue_day ON analytics_revenue (day);

-- analytics_state: each rollup's watermark (what changed after it is refreshed next).
CREATE TABLE analytics_state (
    name         TEXT   PRIMARY KEY,
    watermark_ms BIGINT NOT NULL,
    refreshed_ms BIGINT NOT NULL
);

-- reconcile_mismatches: what Stars reconciliation found (docs/MONEY.md), once per charge and
-- kind: the charge id names the payment; no user id, no payload.
CREATE TABLE reconcile_mismatches (
    bot       TEXT   NOT NULL,
    charge_id TEXT   NOT NULL,
    kind      TEXT   NOT NULL,
    stars     BIGINT NOT NULL,
    at_ms     BIGINT NOT NULL,
    PRIMARY KEY (bot, charge_id, kind)
);
CREATE INDEX reconcile_mismatches_at ON reconcile_mismatches (at_ms);
