-- The admin role (docs/ADMIN.md): the registry of the fleet's bots, admin login (one-time
-- codes, attempts, sessions), the audit log, per-bot bans and gifts.
-- Same tables and semantics as migrations/postgres/0011_admin.sql, in SQLite's dialect. Times are ms since the epoch.
-- Nothing here holds a token, a code or a session id in clear: codes and session ids are
-- stored as HMAC-SHA256 under the admin role's session secret.

-- admin_bots: each serve/local bot registers its resolved configuration at start and on every
-- change (the admin role holds no tokens and no Kubernetes access; this is how it knows the
-- fleet). id is "<namespace>/<name>", pool the keyed pool "<namespace>/<pool>", admins a JSON
-- array of Telegram ids, config the resolved configuration as JSON (file paths, never secrets).
CREATE TABLE admin_bots (
    id            TEXT   PRIMARY KEY,
    namespace     TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    pool          TEXT   NOT NULL,
    admins        TEXT   NOT NULL,
    config        TEXT   NOT NULL,
    config_hash   TEXT   NOT NULL,
    registered_ms INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
);

-- admin_login_codes: one-time login codes (single use, 5 minutes), by keyed hash.
CREATE TABLE admin_login_codes (
    code_hash  TEXT   PRIMARY KEY,
    admin_id   INTEGER NOT NULL,
    bot        TEXT   NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    used_ms    INTEGER
);
CREATE INDEX admin_login_codes_admin ON admin_login_codes (admin_id, expires_ms);

-- admin_login_attempts: login tries per subject ("id:<telegram id>" or "addr:<client>") and
-- kind ("code": a code asked for, "verify": a code entered), for the 5-per-15-minutes limit.
CREATE TABLE admin_login_attempts (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT   NOT NULL,
    kind    TEXT   NOT NULL,
    at_ms   INTEGER NOT NULL
);
CREATE INDEX admin_login_attempts_subject ON admin_login_attempts (subject, kind, at_ms);

-- admin_sessions: a logged-in admin, by keyed hash of the cookie's token.
CREATE TABLE admin_sessions (
    token_hash TEXT   PRIMARY KEY,
    admin_id   INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);

-- admin_audit: every admin action (who, what, when, on whom); detail is JSON.
CREATE TABLE admin_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms       INTEGER NOT NULL,
    admin_id    INTEGER NOT NULL,
    action      TEXT   NOT NULL,
    bot         TEXT,
    target_user INTEGER,
    detail      TEXT   NOT NULL,
    client      TEXT
);
CREATE INDEX admin_audit_at ON admin_audit (at_ms);

-- admin_bans: a ban on one bot ("<namespace>/<name>"). Copied onto the member's row when the
-- member is created again, so it holds across /delete_me (fleet-wide bans are
-- persons.restricted_until_ms).
CREATE TABLE admin_bans (
    bot        TEXT   NOT NULL,
    user_id    INTEGER NOT NULL,
    until_ms   INTEGER NOT NULL,
    admin_id   INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (bot, user_id)
);

-- admin_gifts: VIP days and credits an admin gave, once per idempotency key (credits are
-- also the ledger row "gift:<key>").
CREATE TABLE admin_gifts (
    idem_key     TEXT   PRIMARY KEY,
    bot          TEXT   NOT NULL,
    user_id      INTEGER NOT NULL,
    vip_days     INTEGER NOT NULL,
    credits      INTEGER NOT NULL,
    vip_until_ms INTEGER,
    admin_id     INTEGER NOT NULL,
    created_ms   INTEGER NOT NULL
);
