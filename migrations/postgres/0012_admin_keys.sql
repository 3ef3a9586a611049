-- API keys of the admin role (docs/ADMIN.md, "API keys"): automation acting with a role of the
-- permission matrix. Same tables and semantics as migrations/sqlite/0012_admin_keys.sql.
-- A key is never stored: only its HMAC-SHA256 under the admin role's session secret.

-- admin_api_keys: id is the key's public part ("bfk_<id>_<secret>"), role "fleet_admin" or
-- "bot_admin" (then bots, a JSON array of "<namespace>/<name>"), read_only 1 refuses every
-- state change; created_by the fleet admin who made it (answerable for it), revoked_* once.
CREATE TABLE admin_api_keys (
    id           TEXT     PRIMARY KEY,
    key_hash     TEXT     NOT NULL,
    name         TEXT     NOT NULL,
    role         TEXT     NOT NULL,
    bots         TEXT     NOT NULL,
    read_only    SMALLINT NOT NULL,
    created_by   BIGINT   NOT NULL,
    created_ms   BIGINT   NOT NULL,
    revoked_ms   BIGINT,
    revoked_by   BIGINT,
    last_used_ms BIGINT
);

-- Every use of a key is an audit row naming the key; the per-key limit counts them (a
-- sliding minute, every admin replica sees the same count).
ALTER TABLE admin_audit ADD COLUMN api_key TEXT;
CREATE INDEX admin_audit_key ON admin_audit (api_key, at_ms);
