-- The same tables and semantics as migrations/postgres/0007_referrals.sql, in SQLite's dialect:
-- invite codes and who invited whom (docs/MONEY.md, "Referrals").
CREATE TABLE referral_codes (
    code       TEXT    PRIMARY KEY,
    bot        TEXT    NOT NULL,
    user_id    INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    UNIQUE (bot, user_id)
);

CREATE TABLE referrals (
    bot            TEXT    NOT NULL,
    referee_user   INTEGER NOT NULL,
    referrer_user  INTEGER NOT NULL,
    created_ms     INTEGER NOT NULL,
    status         TEXT    NOT NULL,
    flag           TEXT,
    completed_ms   INTEGER,
    reward_vip_days INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bot, referee_user)
);
CREATE INDEX referrals_referrer ON referrals (bot, referrer_user, completed_ms);
