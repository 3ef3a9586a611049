-- Broadcasts of the admin role (docs/ADMIN.md, "Broadcast"). Same tables and columns as
-- migrations/sqlite/0014_admin_broadcasts.sql.

-- users.broadcasts_off: 1 once the member sent /news off (NULL or 0: announcements on).
ALTER TABLE users ADD COLUMN broadcasts_off SMALLINT;

-- admin_broadcasts: one announcement to the members of one bot. The producer (in the admin
-- role) walks the audience by user id: cursor_user is the last member enqueued; pending_to,
-- set before a batch is enqueued and cleared with the cursor's advance, marks a batch that
-- may have been enqueued by a process that died (it is enqueued again: repeated_max counts
-- who may get it twice; pending_ms: when, so a live producer's batch is not taken for a dead one's). audience: "all", "vip" or "free"; status: "running", "done",
-- "cancelled".
CREATE TABLE admin_broadcasts (
    id           BIGSERIAL PRIMARY KEY,
    bot          TEXT   NOT NULL,
    text         TEXT   NOT NULL,
    audience     TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    cursor_user  BIGINT NOT NULL,
    pending_to   BIGINT,
    pending_ms   BIGINT,
    queued       BIGINT NOT NULL,
    repeated_max BIGINT NOT NULL,
    created_by   BIGINT NOT NULL,
    created_ms   BIGINT NOT NULL,
    finished_ms  BIGINT
);
CREATE INDEX admin_broadcasts_status ON admin_broadcasts (status);
