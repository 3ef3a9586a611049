-- The same tables and semantics as migrations/postgres/0002_people.sql, in SQLite's dialect.
--
-- People across bots, namespaced bot ids, and what money and admin need recorded. A Telegram
-- user id is one person on every bot: safety state (restrictions and bans here; blocks and
-- reports read by user id) holds fleet-wide and survives /delete_me (tombstone); commerce
-- stays with the member (users). Bot ids become "<namespace>/<name>"; rows of the previous
-- release are adopted by each bot at start-up (SqlStore::adopt_legacy_bot).

CREATE TABLE persons (
    user_id             INTEGER PRIMARY KEY,
    first_seen_ms       INTEGER NOT NULL,
    restricted_until_ms INTEGER,
    deleted_ms          INTEGER,
    updated_ms          INTEGER NOT NULL
);

INSERT INTO persons (user_id, first_seen_ms, restricted_until_ms, updated_ms)
SELECT user_id, MIN(created_ms), MAX(restricted_until_ms), MAX(updated_ms) FROM users GROUP BY user_id;

CREATE INDEX blocks_by_user ON blocks (by_user);
CREATE INDEX reports_by_user ON reports (by_user);
CREATE INDEX reports_other_user_created ON reports (other_user, created_ms);

ALTER TABLE users ADD COLUMN username TEXT;
ALTER TABLE users ADD COLUMN active_day INTEGER;

CREATE TABLE analytics_events (
    bot     TEXT    NOT NULL,
    user_id INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    ref     TEXT    NOT NULL DEFAULT '',
    at_ms   INTEGER NOT NULL,
    PRIMARY KEY (bot, user_id, kind, ref)
);
CREATE INDEX analytics_events_kind_at ON analytics_events (kind, at_ms);
