-- Analytics of the admin role (docs/ADMIN.md, "Analytics"). Same tables as
-- migrations/postgres/0016_analytics.sql (comments there), in SQLite's dialect.

CREATE TABLE activity_days (
    bot     TEXT   NOT NULL,
    user_id INTEGER NOT NULL,
    day     INTEGER NOT NULL,
    at_ms   INTEGER NOT NULL,
    PRIMARY KEY (bot, user_id, day)
);
CREATE INDEX activity_days_at ON activity_days (at_ms);
INSERT INTO activity_days (bot, user_id, day, at_ms)
SELECT bot, user_id, active_day, active_day * 86400000 FROM users WHERE active_day IS NOT NULL;

CREATE INDEX analytics_events_at ON analytics_events (at_ms);
CREATE INDEX payments_created ON payments (created_ms);
CREATE INDEX payments_refunded ON payments (refunded_ms);

CREATE TABLE analytics_cohorts (
    bot          TEXT   NOT NULL,
    signup_day   INTEGER NOT NULL,
    members      INTEGER NOT NULL,
    profile_done INTEGER NOT NULL,
    first_search INTEGER NOT NULL,
    first_chat   INTEGER NOT NULL,
    purchasers   INTEGER NOT NULL,
    d1           INTEGER NOT NULL,
    d7           INTEGER NOT NULL,
    d30          INTEGER NOT NULL,
    refreshed_ms INTEGER NOT NULL,
    PRIMARY KEY (bot, signup_day)
);
CREATE INDEX analytics_cohorts_day ON analytics_cohorts (signup_day);

CREATE TABLE analytics_members (
    bot        TEXT   NOT NULL,
    user_id    INTEGER NOT NULL,
    signup_day INTEGER NOT NULL,
    flags      INTEGER NOT NULL,
    PRIMARY KEY (bot, user_id)
);

CREATE TABLE analytics_revenue (
    bot            TEXT   NOT NULL,
    day            INTEGER NOT NULL,
    plan_id        TEXT   NOT NULL,
    campaign_id    TEXT   NOT NULL,
    payments       INTEGER NOT NULL,
    stars          INTEGER NOT NULL,
    refunds        INTEGER NOT NULL,
    refunded_stars INTEGER NOT NULL,
    PRIMARY KEY (bot, day, plan_id, campaign_id)
);
CREATE INDEX analytics_revenue_day ON analytics_revenue (day);

CREATE TABLE analytics_state (
    name         TEXT   PRIMARY KEY,
    watermark_ms INTEGER NOT NULL,
    refreshed_ms INTEGER NOT NULL
);

CREATE TABLE reconcile_mismatches (
    bot       TEXT   NOT NULL,
    charge_id TEXT   NOT NULL,
    kind      TEXT   NOT NULL,
    stars     INTEGER NOT NULL,
    at_ms     INTEGER NOT NULL,
    PRIMARY KEY (bot, charge_id, kind)
);
CREATE INDEX reconcile_mismatches_at ON reconcile_mismatches (at_ms);
