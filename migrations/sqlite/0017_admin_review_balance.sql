-- The admin role, slice 3 (docs/ADMIN.md). Same as migrations/postgres/0017_admin_review_balance.sql, in SQLite's dialect.
-- The moderation queue's 👎 items: 👎 received in the last 30 days, and a member's last review
-- (the audit log's `review` rows).
CREATE INDEX ratings_down_created ON ratings (created_ms) WHERE up = 0;
CREATE INDEX admin_audit_review ON admin_audit (bot, target_user, at_ms) WHERE action = 'review';
-- Each bot's Stars balance (Bot API getMyStarBalance), written by the bot's runtime (the admin
-- role holds no token), and when it was read.
ALTER TABLE admin_bots ADD COLUMN star_balance INTEGER;
ALTER TABLE admin_bots ADD COLUMN star_balance_ms INTEGER;
