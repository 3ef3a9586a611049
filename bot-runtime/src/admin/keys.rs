//! API keys for automation (docs/ADMIN.md, "API keys").
//!
//! * A key is `bfk_<id>_<secret>`: 8 random bytes of public id and 32 of secret, in hex. It is
//!   shown once, in the answer that creates it; the database keeps only
//!   `HMAC(session secret, "apikey|" + key)` (a stolen table yields no usable key), and
//!   nothing logs or audits more than the id.
//! * A key has a role of the permission matrix — `fleet_admin`, or `bot_admin` of listed
//!   bots — and may be read-only. It never exceeds its owner: the fleet admin who made it must
//!   still be one when it is used.
//! * Every use is an audit row (`api_key_use`, with the method and path) naming the key; the
//!   key's limit counts those rows over the last minute, so every admin replica sees one count.
//! * Keys are made and revoked only by a fleet admin with a session (the dashboard, or the API
//!   with the session cookie): a key cannot make keys.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::api::{audit_action, write_audit};
use super::auth::{Admin, Identity};
use super::{AdminState, ApiError, Body};
use crate::store::admin::{ApiKey, StoredApiKey};

pub const PREFIX: &str = "bfk_";
/// The audit action of one use of a key.
pub const KEY_USE: &str = "api_key_use";
const MINUTE_MS: i64 = 60_000;

pub fn routes() -> Router<AdminState> {
    Router::new().route("/api/v1/keys", get(list).post(create)).route("/api/v1/keys/{key_id}/revoke", post(revoke))
}

/// The key of `Authorization: Bearer <key>`, if the request has one.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim().to_string())
}

/// The id of a well-formed key.
fn id_of(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    (hex(id, 16) && hex(secret, 64)).then_some(id)
}

fn hash(state: &AdminState, presented: &str) -> String {
    state.settings.secret.tag("apikey", presented)
}

/// Who a request with an API key is (see the module's comment for the rules).
pub async fn authenticate(state: &AdminState, parts: &Parts, presented: String, client: String) -> Result<Admin, ApiError> {
    let unknown = || ApiError::Unauthorized("unknown or malformed API key (send Authorization: Bearer bfk_…)".into());
    let Some(id) = id_of(&presented) else {
        state.fleet.metrics.admin_action("api_key", "unknown");
        return Err(unknown());
    };
    let stored = match state.store.api_key(id).await? {
        Some(k) if crate::payload::constant_time_eq(hash(state, &presented).as_bytes(), k.hash.as_bytes()) => k.key,
        _ => {
            state.fleet.metrics.admin_action("api_key", "unknown");
            return Err(unknown());
        }
    };
    let now = crate::bot::now_ms();
    let used = json!({"method": parts.method.as_str(), "path": parts.uri.path()});
    // A real key used where it may not be (revoked, or writing while read-only): its holder
    // is worth a line in the audit log.
    let refusal = if stored.revoked_ms.is_some() {
        Some(("revoked", ApiError::Unauthorized("this API key was revoked".into())))
    } else if stored.read_only && !matches!(parts.method, Method::GET | Method::HEAD) {
        Some(("read_only", ApiError::Forbidden("this API key is read-only".into())))
    } else {
        None
    };
    if let Some((why, error)) = refusal {
        state.fleet.metrics.admin_action("api_key", why);
        let detail = json!({"why": why, "used": used});
        write_audit(state, stored.created_by, Some(&stored.id), "api_key_refused", None, None, detail, &client).await?;
        return Err(error);
    }
    let limit = i64::from(state.settings.api_key_per_minute);
    if state.store.key_uses_since(&stored.id, KEY_USE, now - MINUTE_MS).await? >= limit {
        state.fleet.metrics.admin_action("api_key", "limited");
        return Err(ApiError::TooManyTries {
            message: format!("this API key made {limit} requests in the last minute, its limit; wait and try again"),
            retry_after_s: 60,
        });
    }
    let bots = state.store.bots().await?;
    let Some(owner) = Identity::resolve(stored.created_by, &state.settings.fleet_admins, &bots).filter(|o| o.fleet_admin) else {
        state.fleet.metrics.admin_action("api_key", "owner_gone");
        return Err(ApiError::Forbidden("the key's owner is no longer a fleet admin, so the key no longer works".into()));
    };
    let identity = match stored.role.as_str() {
        "fleet_admin" => owner,
        _ => Identity {
            telegram_id: owner.telegram_id,
            fleet_admin: false,
            bots: owner.bots.into_iter().filter(|b| stored.bots.contains(b)).collect(),
        },
    };
    write_audit(state, stored.created_by, Some(&stored.id), KEY_USE, None, None, used, &client).await?;
    state.store.touch_api_key(&stored.id, now).await?;
    state.fleet.metrics.admin_action("api_key", "used");
    Ok(Admin { identity, token_hash: String::new(), csrf: String::new(), client, api_key: Some(stored.id) })
}

/// Key management is for a fleet admin with a session.
fn require_owner(admin: &Admin) -> Result<(), ApiError> {
    if admin.api_key.is_some() {
        return Err(ApiError::Forbidden(
            "API keys are made and revoked by a fleet admin logged in with a session, not by another key".into(),
        ));
    }
    admin.identity.require_fleet("managing API keys")
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct KeysAnswer {
    pub keys: Vec<ApiKey>,
}

async fn list(State(s): State<AdminState>, admin: Admin) -> Result<axum::Json<KeysAnswer>, ApiError> {
    require_owner(&admin)?;
    Ok(axum::Json(KeysAnswer { keys: s.store.api_keys().await? }))
}

/// One bot or several: a JSON array, or (a form) names separated by commas.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum BotList {
    Many(Vec<String>),
    Commas(String),
}

impl BotList {
    fn names(self) -> Vec<String> {
        let all = match self {
            BotList::Many(v) => v,
            BotList::Commas(s) => s.split(',').map(str::to_string).collect(),
        };
        all.into_iter().map(|b| b.trim().to_string()).filter(|b| !b.is_empty()).collect()
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NewKeyRequest {
    /// What the key is for (1 to 100 characters), shown in the list and the audit log.
    #[schemars(length(min = 1, max = 100), pattern(r"\S"))]
    pub name: String,
    /// `fleet_admin` (every bot, every route but key management) or `bot_admin` (the `bots`).
    #[schemars(extend("enum" = ["fleet_admin", "bot_admin"]))]
    pub role: String,
    /// For `bot_admin`: the bots (`<namespace>/<name>`) it may act on.
    #[serde(default)]
    pub bots: Option<BotList>,
    /// Refuse every state change (default false).
    #[serde(default)]
    pub read_only: Option<bool>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct NewKeyAnswer {
    pub key: ApiKey,
    /// The key, shown this once: send it as `Authorization: Bearer <secret>`. Only its keyed
    /// hash is kept; a lost key is revoked and replaced.
    pub secret: String,
}

async fn create(State(s): State<AdminState>, admin: Admin, Body(req): Body<NewKeyRequest>) -> Result<Response, ApiError> {
    require_owner(&admin)?;
    let name = req.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad("name: 1 to 100 characters saying what the key is for"));
    }
    let bots = req.bots.map(BotList::names).unwrap_or_default();
    let registered = s.store.bots().await?;
    match req.role.as_str() {
        "fleet_admin" if bots.is_empty() => {}
        "fleet_admin" => return Err(ApiError::bad("bots: a fleet_admin key acts on every bot; leave bots out")),
        "bot_admin" if bots.is_empty() => return Err(ApiError::bad("bots: a bot_admin key needs at least one bot (<namespace>/<name>)")),
        "bot_admin" => {
            if let Some(unknown) = bots.iter().find(|b| !registered.iter().any(|r| &r.id == *b)) {
                // Well-formed input naming a bot that does not exist: 404, as every route
                // answers for an unknown bot (`api::registered`).
                return Err(ApiError::NotFound(format!(
                    "bots: no bot {unknown:?} is registered in this fleet (bots are named <namespace>/<name>)"
                )));
            }
        }
        _ => return Err(ApiError::bad("role: fleet_admin or bot_admin")),
    }
    let id = crate::payload::hex(&rand::random::<[u8; 8]>());
    let secret = format!("{PREFIX}{id}_{}", crate::payload::hex(&rand::random::<[u8; 32]>()));
    let key = ApiKey {
        id,
        name,
        role: req.role,
        bots,
        read_only: req.read_only.unwrap_or(false),
        created_by: admin.identity.telegram_id,
        created_ms: crate::bot::now_ms(),
        revoked_ms: None,
        last_used_ms: None,
    };
    s.store.create_api_key(&StoredApiKey { key: key.clone(), hash: hash(&s, &secret) }).await?;
    s.fleet.metrics.admin_action("api_key_create", "done");
    let detail = json!({"id": key.id, "name": key.name, "role": key.role, "bots": key.bots, "read_only": key.read_only});
    audit_action(&s, &admin, "api_key_create", None, None, detail).await?;
    Ok((StatusCode::CREATED, axum::Json(NewKeyAnswer { key, secret })).into_response())
}

async fn revoke(State(s): State<AdminState>, admin: Admin, Path(key_id): Path<String>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    require_owner(&admin)?;
    if !(key_id.len() == 16 && key_id.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(ApiError::bad("key_id: the key's id (16 hex digits, as listed)"));
    }
    if !s.store.revoke_api_key(&key_id, admin.identity.telegram_id, crate::bot::now_ms()).await? {
        return Err(ApiError::NotFound(format!("no unrevoked API key has the id {key_id}")));
    }
    s.fleet.metrics.admin_action("api_key_revoke", "done");
    audit_action(&s, &admin, "api_key_revoke", None, None, json!({"id": key_id})).await?;
    Ok(axum::Json(json!({"id": key_id, "revoked": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_keys_have_an_id() {
        let good = format!("bfk_{}_{}", "0123456789abcdef", "a".repeat(64));
        assert_eq!(id_of(&good), Some("0123456789abcdef"));
        for bad in ["", "bfk_", "bfk_0123456789abcdef", "xyz_0123456789abcdef_aaaa", &good.to_uppercase(), &format!("{good}x")] {
            assert_eq!(id_of(bad), None, "{bad}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, format!("Bearer {good}").parse().unwrap());
        assert_eq!(bearer(&h), Some(good));
    }
}
