-- The moderation queue of the admin role (docs/ADMIN.md, "Moderation"): a report is open until
-- a moderator reviews it. Same columns as migrations/postgres/0013_admin_moderation.sql, in SQLite's dialect.
-- review: "dismiss", "restrict" or "ban"; reviewed_by: the admin's Telegram id.
ALTER TABLE reports ADD COLUMN reviewed_ms INTEGER;
ALTER TABLE reports ADD COLUMN reviewed_by INTEGER;
ALTER TABLE reports ADD COLUMN review TEXT;
-- The queue: open reports by reported member.
CREATE INDEX reports_open ON reports (other_bot, other_user) WHERE reviewed_ms IS NULL;
