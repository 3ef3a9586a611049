-- The admin role, slice 4 (docs/ADMIN.md). Same as migrations/postgres/0018_fleet_admins.sql, in SQLite's dialect.
-- The fleet admins (the chart's admin.fleetAdmins), written by the admin role when it starts,
-- so every bot of the fleet answers their in-bot admin commands (bots know only their own
-- BotInstance's admins otherwise).
CREATE TABLE admin_fleet_admins (
    telegram_id INTEGER PRIMARY KEY
);
