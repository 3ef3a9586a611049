-- The same table and semantics as migrations/postgres/0006_locks.sql, in SQLite's dialect:
-- one row per chat session that a member locked with credits (docs/MONEY.md, "Lock chat").
CREATE TABLE chat_locks (
    session_id   INTEGER PRIMARY KEY,
    locker_bot   TEXT    NOT NULL,
    locker_user  INTEGER NOT NULL,
    started_ms   INTEGER NOT NULL,
    until_ms     INTEGER NOT NULL,
    credits      INTEGER NOT NULL CHECK (credits >= 0),
    settled_ms   INTEGER,
    returned     INTEGER NOT NULL DEFAULT 0 CHECK (returned >= 0)
);
