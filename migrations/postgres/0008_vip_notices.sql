-- VIP notices (docs/MONEY.md, "VIP expiry"): the VIP deadline a member was last reminded of
-- (a day before it) and told had ended. Each notice is claimed by one UPDATE that sets its
-- column to the deadline, so every replica may sweep and each member hears of each deadline
-- once; a VIP extended later is a new deadline and gets its own notices.
-- Same columns in migrations/sqlite/0008_vip_notices.sql.
ALTER TABLE users ADD COLUMN vip_reminded_for BIGINT;
ALTER TABLE users ADD COLUMN vip_ended_for BIGINT;
-- The sweep: members of a bot whose VIP ends (or ended) around now.
CREATE INDEX users_vip_until ON users (bot, vip_until_ms) WHERE vip_until_ms IS NOT NULL;
