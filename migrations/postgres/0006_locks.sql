-- Lock chat (docs/MONEY.md, "Lock chat"): one row per chat session that a member locked.
-- Same table and semantics as migrations/sqlite/0006_locks.sql.
--
-- locker_*: who paid; while now < until_ms the partner's Next and Stop are refused (report
-- and block always work). A second lock by the locker extends until_ms and adds its credits.
-- started_ms..until_ms is the span the credits paid for; when the chat ends the lock is
-- settled once (settled_ms), and the unused share of the credits may be returned
-- (returned, as the ledger row lockback:<session_id>).
CREATE TABLE chat_locks (
    session_id   BIGINT PRIMARY KEY,
    locker_bot   TEXT   NOT NULL,
    locker_user  BIGINT NOT NULL,
    started_ms   BIGINT NOT NULL,
    until_ms     BIGINT NOT NULL,
    credits      BIGINT NOT NULL CHECK (credits >= 0),
    settled_ms   BIGINT,
    returned     BIGINT NOT NULL DEFAULT 0 CHECK (returned >= 0)
);
COMMENT ON TABLE chat_locks IS 'Chat locks bought with credits: who locked which chat until when, and what was returned when it ended early.';
