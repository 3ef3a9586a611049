-- Referrals (docs/MONEY.md, "Referrals"). Same tables and semantics as
-- migrations/sqlite/0007_referrals.sql.

-- referral_codes: each member's invite code (t.me/<bot>?start=ref_<code>): random, so a link
-- never reveals the referrer's Telegram id. One per member, made on first /invite.
CREATE TABLE referral_codes (
    code       TEXT   PRIMARY KEY,
    bot        TEXT   NOT NULL,
    user_id    BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    UNIQUE (bot, user_id)
);
COMMENT ON TABLE referral_codes IS 'Invite codes of members: random, one per member.';

-- referrals: who invited a member of this bot (at most one referrer per referee and bot).
-- status: pending (joined through a link, profile not complete), rewarded (counted: the
-- referrer got the VIP days), withheld (counted as suspicious: no reward, flag for admins),
-- void (never counts: self-referral, or not new to the fleet). flag says why.
CREATE TABLE referrals (
    bot            TEXT   NOT NULL,
    referee_user   BIGINT NOT NULL,
    referrer_user  BIGINT NOT NULL,
    created_ms     BIGINT NOT NULL,
    status         TEXT   NOT NULL,
    flag           TEXT,
    completed_ms   BIGINT,
    reward_vip_days BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (bot, referee_user)
);
COMMENT ON TABLE referrals IS 'Who invited whom on a bot, whether it counted, and why not (flags for admins).';
-- A referrer's referrals (stats, the farming check).
CREATE INDEX referrals_referrer ON referrals (bot, referrer_user, completed_ms);
