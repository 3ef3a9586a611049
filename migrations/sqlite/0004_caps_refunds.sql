-- Money (slice 2): campaign redemption caps and refunds.
-- Same tables and semantics as migrations/postgres/0004_caps_refunds.sql, in SQLite's dialect. Rules: docs/MONEY.md.

-- A quote made under a capped campaign carries the cap's key ("<namespace>/<name>/<uid>")
-- and the cap in force when it was made; its checkout reserves a slot under that key.
ALTER TABLE quotes ADD COLUMN campaign_key TEXT;
ALTER TABLE quotes ADD COLUMN campaign_cap INTEGER;

-- campaign_counters: the slots of a capped campaign held now (reserved by an approved
-- checkout, or paid). A reservation increments it only WHERE used < cap, on the counter row
-- that every reservation of the campaign locks: atomic fleet-wide.
CREATE TABLE campaign_counters (
    campaign   TEXT   PRIMARY KEY,
    used       INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    updated_ms INTEGER NOT NULL
);

-- campaign_redemptions: one slot per quote. Reserved at pre-checkout until expires_ms; paid
-- when its payment is applied (kept for good); released when it expired unpaid (the counter
-- given back, once: the release is one UPDATE ... WHERE released_ms IS NULL).
CREATE TABLE campaign_redemptions (
    quote_id    TEXT   PRIMARY KEY,
    campaign    TEXT   NOT NULL,
    reserved_ms INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL,
    paid_ms     INTEGER,
    released_ms INTEGER
);
CREATE INDEX campaign_redemptions_open ON campaign_redemptions (campaign, expires_ms);

-- Refunds: how many of the refunded payment's credits were already spent (not clawed back).
ALTER TABLE payments ADD COLUMN refund_spent_credits INTEGER;
