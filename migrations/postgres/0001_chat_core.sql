-- The chat core: users per bot, blocks, reports, chat session metadata and ratings.
--
-- No table has a column for message content: chats are relayed, never stored.
-- Conventions (shared with migrations/sqlite/0001_chat_core.sql; the runtime runs the same
-- queries on both through sqlx's Any driver):
--   * times are milliseconds since the Unix epoch, BIGINT;
--   * flags are SMALLINT 0/1 (SQLite has no boolean type, and the Any driver cannot read a
--     column declared BOOLEAN on SQLite);
--   * a member (a user of one bot) is the pair (bot, user id); the same person on two bots is
--     two members. Blocks, reports, sessions and ratings are keyed by these ids only, so they
--     outlive a deleted profile (safety).

-- users: one row per user of one bot. Onboarding stage, profile (gender, age, wanted gender,
-- language), VIP and matching restriction deadlines, and whether the bot can still reach them.
CREATE TABLE users (
    bot                 TEXT     NOT NULL,
    user_id             BIGINT   NOT NULL,
    language            TEXT     NOT NULL,
    -- terms | channels | gender | age | ready
    stage               TEXT     NOT NULL,
    -- m | f | o, NULL until chosen
    gender              TEXT,
    age                 SMALLINT,
    -- a VIP's wanted partner gender (m | f | o); NULL: anyone
    wants               TEXT,
    vip_until_ms        BIGINT,
    -- matching refused until then: a ban (far future) or an automatic restriction
    restricted_until_ms BIGINT,
    -- 0 once a send was answered 403 (the user blocked the bot)
    reachable           SMALLINT NOT NULL DEFAULT 1 CHECK (reachable IN (0, 1)),
    created_ms          BIGINT   NOT NULL,
    updated_ms          BIGINT   NOT NULL,
    PRIMARY KEY (bot, user_id)
);
COMMENT ON TABLE users IS 'A user of one bot: onboarding stage, profile, VIP and restriction deadlines, reachability. Never message content.';
-- count_users: completed profiles of a bot.
CREATE INDEX users_bot_stage ON users (bot, stage);

-- blocks: by_* never wants to meet other_* again. One row per (by, other); restored into the
-- matching store's block lists.
CREATE TABLE blocks (
    by_bot     TEXT   NOT NULL,
    by_user    BIGINT NOT NULL,
    other_bot  TEXT   NOT NULL,
    other_user BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (by_bot, by_user, other_bot, other_user)
);
COMMENT ON TABLE blocks IS 'by_* blocked other_* (one row per pair); keyed by ids, kept when a profile is deleted.';

-- reports: by_* reported other_*, optionally from a chat session; the reason may be filled
-- in afterwards. Distinct recent reporters of a member drive the automatic restriction.
CREATE TABLE reports (
    id         BIGSERIAL PRIMARY KEY,
    by_bot     TEXT   NOT NULL,
    by_user    BIGINT NOT NULL,
    other_bot  TEXT   NOT NULL,
    other_user BIGINT NOT NULL,
    session_id BIGINT,
    reason     TEXT,
    created_ms BIGINT NOT NULL
);
COMMENT ON TABLE reports IS 'by_* reported other_* (reason optional, filled later); keyed by ids, kept when a profile is deleted.';
-- reporters_since: reports received by a member in a time window.
CREATE INDEX reports_other_created ON reports (other_bot, other_user, created_ms);
-- blocked_by: reports made by a member.
CREATE INDEX reports_by ON reports (by_bot, by_user);

-- chat_sessions: one chat between two members, metadata only: who, when it started and
-- ended, why, and who ended it. (a, b) is the order the chat was recorded in; lookups of a
-- pair accept either order.
CREATE TABLE chat_sessions (
    id            BIGSERIAL PRIMARY KEY,
    a_bot         TEXT   NOT NULL,
    a_user        BIGINT NOT NULL,
    b_bot         TEXT   NOT NULL,
    b_user        BIGINT NOT NULL,
    started_ms    BIGINT NOT NULL,
    ended_ms      BIGINT,
    -- stop | next | report | block | idle | gone
    end_reason    TEXT,
    ended_by_bot  TEXT,
    ended_by_user BIGINT,
    -- start_session is idempotent on this key (a redelivered update records the chat once).
    UNIQUE (a_bot, a_user, b_bot, b_user, started_ms)
);
COMMENT ON TABLE chat_sessions IS 'One chat between two members: who, when, why it ended. Metadata only, never message content.';
-- open_session / end_session: the open session of a pair (looked up in both orders).
CREATE INDEX chat_sessions_open_pair ON chat_sessions (a_bot, a_user, b_bot, b_user) WHERE ended_ms IS NULL;
-- stats: sessions where the member is side b (side a is served by the unique key's prefix).
CREATE INDEX chat_sessions_b ON chat_sessions (b_bot, b_user);

-- ratings: after a chat, each side may rate the other +1 (up = 1) or -1 (up = 0); a second
-- rating by the same side replaces the first.
CREATE TABLE ratings (
    session_id BIGINT   NOT NULL REFERENCES chat_sessions (id),
    rater_bot  TEXT     NOT NULL,
    rater_user BIGINT   NOT NULL,
    rated_bot  TEXT     NOT NULL,
    rated_user BIGINT   NOT NULL,
    up         SMALLINT NOT NULL CHECK (up IN (0, 1)),
    created_ms BIGINT   NOT NULL,
    PRIMARY KEY (session_id, rater_bot, rater_user)
);
COMMENT ON TABLE ratings IS 'A side of a chat session rated the other side (up = 1: thumbs up); one rating per side and session.';
-- stats: ratings received by a member.
CREATE INDEX ratings_rated ON ratings (rated_bot, rated_user);
