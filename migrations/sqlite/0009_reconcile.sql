-- Reconciliation with Telegram's Stars ledger (docs/MONEY.md, "Reconciliation"): how far
-- each bot's getStarTransactions list (chronological) has been checked, so each pass reads
-- only what is new. Same table in migrations/postgres/0009_reconcile.sql.
CREATE TABLE star_reconcile (
    bot         TEXT    PRIMARY KEY,
    next_offset INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
