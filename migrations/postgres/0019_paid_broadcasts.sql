-- Paid broadcasts (docs/ADMIN.md, "Paid broadcasts"). Same columns as
-- migrations/sqlite/0019_paid_broadcasts.sql.
-- admin_broadcasts.paid: 1 for a paid broadcast (sent with allow_paid_broadcast, at the bot's
-- paid pace, 0.1 Star a message); NULL or 0: free. stop_reason: why a broadcast stopped by
-- itself (status 'failed': the bot's Stars ran out); NULL otherwise.
ALTER TABLE admin_broadcasts ADD COLUMN paid BIGINT;
ALTER TABLE admin_broadcasts ADD COLUMN stop_reason TEXT;
