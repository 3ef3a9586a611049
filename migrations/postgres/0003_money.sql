-- Money (slice 1): quotes, payments, the credit ledger and the member's wallet.
-- Same tables and semantics as migrations/sqlite/0003_money.sql. Rules: docs/MONEY.md.
-- Bots are "<namespace>/<name>"; times are ms since the Unix epoch.

-- quotes: an offer made when a member tapped Buy: the price at that second and the grants,
-- single use, owned by the buyer, honoured until expires_ms. id is random (the invoice
-- payload carries it). checkout_* is set when a pre_checkout_query claimed it (the same
-- query may claim it again: a redelivered update), used_ms when the payment was applied.
CREATE TABLE quotes (
    id            TEXT     PRIMARY KEY,
    bot           TEXT     NOT NULL,
    user_id       BIGINT   NOT NULL,
    plan_id       TEXT     NOT NULL,
    price_stars   BIGINT   NOT NULL CHECK (price_stars >= 1),
    base_stars    BIGINT   NOT NULL CHECK (base_stars >= price_stars),
    campaign_id   TEXT,
    vip_days      BIGINT   NOT NULL DEFAULT 0 CHECK (vip_days >= 0),
    lock_credits  BIGINT   NOT NULL DEFAULT 0 CHECK (lock_credits >= 0),
    created_ms    BIGINT   NOT NULL,
    expires_ms    BIGINT   NOT NULL,
    checkout_id   TEXT,
    checkout_ms   BIGINT,
    used_ms       BIGINT
);
COMMENT ON TABLE quotes IS 'A price offer for one plan to one member: single use, expires; the invoice payload names it.';
CREATE INDEX quotes_member ON quotes (bot, user_id, created_ms);

-- payments: one row per Telegram charge, applied exactly once (the charge id is the key).
-- What it granted is recorded with it, so a second application returns the first result.
CREATE TABLE payments (
    telegram_payment_charge_id TEXT   PRIMARY KEY,
    bot                        TEXT   NOT NULL,
    user_id                    BIGINT NOT NULL,
    quote_id                   TEXT,
    plan_id                    TEXT   NOT NULL,
    stars                      BIGINT NOT NULL,
    vip_days                   BIGINT NOT NULL DEFAULT 0,
    lock_credits               BIGINT NOT NULL DEFAULT 0,
    -- the member's VIP deadline right after this payment (NULL: granted no VIP days)
    vip_until_ms               BIGINT,
    created_ms                 BIGINT NOT NULL,
    refunded_ms                BIGINT
);
COMMENT ON TABLE payments IS 'Telegram Stars payments, one per telegram_payment_charge_id, with what each granted. Kept for refunds and disputes.';
CREATE INDEX payments_member ON payments (bot, user_id, created_ms);

-- ledger: append-only credit changes of a member; balance = SUM(delta). Every row has an
-- idempotency key (pay:<charge id>, refund:<charge id>, lock:<…>), so a retried grant or
-- debit is written once. Rows are never updated or deleted.
CREATE TABLE ledger (
    id         BIGSERIAL PRIMARY KEY,
    idem_key   TEXT   NOT NULL UNIQUE,
    bot        TEXT   NOT NULL,
    user_id    BIGINT NOT NULL,
    delta      BIGINT NOT NULL CHECK (delta <> 0),
    reason     TEXT   NOT NULL,
    ref        TEXT   NOT NULL DEFAULT '',
    created_ms BIGINT NOT NULL
);
COMMENT ON TABLE ledger IS 'Append-only credit ledger per member; balance = SUM(delta), never negative (see wallets).';
CREATE INDEX ledger_member ON ledger (bot, user_id);

-- wallets: the member's balance, written in the same transaction as each ledger row. It is
-- the row a debit locks (so concurrent debits of one member take turns) and the CHECK that
-- keeps the balance from going negative. Not deleted by /delete_me.
CREATE TABLE wallets (
    bot        TEXT   NOT NULL,
    user_id    BIGINT NOT NULL,
    balance    BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0),
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (bot, user_id)
);
COMMENT ON TABLE wallets IS 'A member''s credit balance: always the SUM of their ledger rows, never negative.';
