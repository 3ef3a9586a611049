-- People across bots, namespaced bot ids, and what money and admin need recorded.
--
-- A Telegram user id is one person on every bot. Safety state belongs to the person and holds
-- fleet-wide (restrictions and bans here; blocks and reports are read by user id across bots);
-- commerce stays with the member (users: person x bot). /delete_me removes the member's
-- profile but leaves the person row as a tombstone: the restriction and the first-seen time
-- survive, so a returning user is still banned and is not "new" for campaigns or referrals.
--
-- Bot ids become "<namespace>/<name>" (two `alpha` bots in two namespaces never share rows);
-- rows written with bare names by the previous release are adopted by each bot at start-up
-- (SqlStore::adopt_legacy_bot), since only the running bot knows its namespace.
--
-- Expand only: the previous release keeps working during a rolling update (it still reads and
-- writes users.restricted_until_ms; this release reads the later of the two and writes both).

CREATE TABLE persons (
    user_id             BIGINT PRIMARY KEY,
    -- first contact with any bot of the fleet (kept across /delete_me)
    first_seen_ms       BIGINT NOT NULL,
    -- matching refused on every bot until then: a ban (far future) or an automatic restriction
    restricted_until_ms BIGINT,
    -- the last /delete_me of any of the person's profiles (NULL: never)
    deleted_ms          BIGINT,
    updated_ms          BIGINT NOT NULL
);
COMMENT ON TABLE persons IS 'A Telegram user across every bot: first seen, fleet-wide restriction or ban, deletion tombstone. No profile data.';

INSERT INTO persons (user_id, first_seen_ms, restricted_until_ms, updated_ms)
SELECT user_id, MIN(created_ms), MAX(restricted_until_ms), MAX(updated_ms) FROM users GROUP BY user_id;

-- Person-level safety lookups (any bot): what a person blocked or reported, who reported them.
CREATE INDEX blocks_by_user ON blocks (by_user);
CREATE INDEX reports_by_user ON reports (by_user);
CREATE INDEX reports_other_user_created ON reports (other_user, created_ms);

-- The member's Telegram @username (admin search; erased by /delete_me with the row) and the
-- last day (days since the Unix epoch, UTC) the member was active: written at most once per
-- member per day, never per message.
ALTER TABLE users ADD COLUMN username TEXT;
ALTER TABLE users ADD COLUMN active_day INTEGER;

-- analytics_events: the funnel (start, profile_done, first_search, first_chat, purchase).
-- One-time events have ref '' and are recorded once per member (the key makes a retried
-- update harmless); a purchase's ref is its telegram_payment_charge_id.
CREATE TABLE analytics_events (
    bot     TEXT   NOT NULL,
    user_id BIGINT NOT NULL,
    kind    TEXT   NOT NULL,
    ref     TEXT   NOT NULL DEFAULT '',
    at_ms   BIGINT NOT NULL,
    PRIMARY KEY (bot, user_id, kind, ref)
);
COMMENT ON TABLE analytics_events IS 'Funnel events of a member (metadata only); purged with chat metadata except purchases.';
CREATE INDEX analytics_events_kind_at ON analytics_events (kind, at_ms);
