-- Broadcasts, slice 2 (docs/ADMIN.md, "Broadcast"). Same tables and columns as
-- migrations/postgres/0015_broadcast_outcomes.sql (comments there), in SQLite's dialect.
ALTER TABLE admin_broadcasts ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE admin_broadcasts ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE admin_broadcasts ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE admin_broadcasts ADD COLUMN total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE admin_broadcasts ADD COLUMN language TEXT;
ALTER TABLE admin_broadcasts ADD COLUMN active_since_day INTEGER;
ALTER TABLE admin_broadcasts ADD COLUMN start_ms INTEGER;

CREATE TABLE admin_broadcast_results (
    broadcast_id INTEGER NOT NULL,
    user_id      INTEGER NOT NULL,
    outcome      TEXT    NOT NULL,
    at_ms        INTEGER NOT NULL,
    PRIMARY KEY (broadcast_id, user_id)
);
