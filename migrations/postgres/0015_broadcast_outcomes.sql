-- Broadcasts, slice 2 (docs/ADMIN.md, "Broadcast"): what each message became, audience
-- filters, a start time. Same tables and columns as migrations/sqlite/0015_broadcast_outcomes.sql.

-- delivered / failed / blocked: counted by the bots' senders from the outbox results, each
-- member once (admin_broadcast_results); blocked members are marked unreachable (users.reachable
-- = 0) and are in no later audience until they write to the bot again.
-- total: the audience's size when the broadcast started (the progress bar's end).
-- language: only members with this language ("en", "ru"; NULL: any). active_since_day: only
-- members active on or after this UTC day (days since the epoch; NULL: any).
-- start_ms: when it starts (status "scheduled" until then; the producer starts it).
ALTER TABLE admin_broadcasts ADD COLUMN delivered BIGINT NOT NULL DEFAULT 0;
ALTER TABLE admin_broadcasts ADD COLUMN failed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE admin_broadcasts ADD COLUMN blocked BIGINT NOT NULL DEFAULT 0;
ALTER TABLE admin_broadcasts ADD COLUMN total BIGINT NOT NULL DEFAULT 0;
ALTER TABLE admin_broadcasts ADD COLUMN language TEXT;
ALTER TABLE admin_broadcasts ADD COLUMN active_since_day BIGINT;
ALTER TABLE admin_broadcasts ADD COLUMN start_ms BIGINT;

-- admin_broadcast_results: one outcome per member and broadcast ("delivered", "failed",
-- "blocked"), written by the sender of the member's bot. The key makes a repeated send (a
-- batch queued again after a kill) count once: the first outcome counts.
CREATE TABLE admin_broadcast_results (
    broadcast_id BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
    outcome      TEXT   NOT NULL,
    at_ms        BIGINT NOT NULL,
    PRIMARY KEY (broadcast_id, user_id)
);
