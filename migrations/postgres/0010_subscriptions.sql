-- Stars subscriptions (docs/MONEY.md, "Subscriptions"): a member's subscription to a Monthly
-- plan, named by its first payment's charge id (what editUserStarSubscription takes).
-- until_ms: the end of the period paid for (Telegram's subscription_expiration_date);
-- canceled_ms: when the member cancelled it through the bot (it then runs to until_ms).
-- A member subscribing to the same plan again replaces the row. Payments of a subscription
-- record the expiration they paid up to. Same table in migrations/sqlite/0010_subscriptions.sql.
CREATE TABLE subscriptions (
    bot             TEXT    NOT NULL,
    user_id         BIGINT NOT NULL,
    plan_id         TEXT    NOT NULL,
    first_charge_id TEXT    NOT NULL,
    until_ms        BIGINT NOT NULL,
    canceled_ms     BIGINT,
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    PRIMARY KEY (bot, user_id, plan_id)
);
ALTER TABLE payments ADD COLUMN subscription_until_ms BIGINT;
