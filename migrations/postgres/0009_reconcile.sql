-- Reconciliation with Telegram's Stars ledger (docs/MONEY.md, "Reconciliation"): how far
-- each bot's getStarTransactions list (chronological) has been checked, so each pass reads
-- only what is new. Same table in migrations/sqlite/0009_reconcile.sql.
CREATE TABLE star_reconcile (
    bot         TEXT    PRIMARY KEY,
    next_offset BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);
