//! Per-endpoint limits of `/api/v1` (docs/ADMIN.md, "Limits").
//!
//! * **Which limit.** A route that concerns one bot — a `bot` in the query or the body, or a
//!   broadcast's bot for `/api/v1/broadcasts/{id}/…` — takes the limit of that bot's resolved
//!   RateLimitPolicies: their `adminApiPerMinute`, keyed by path template, already merged to the
//!   strictest per key by the operator's resolve. A key applies to its route and the routes
//!   under it (`/api/v1/users` covers `/api/v1/users/{user_id}/ban`); the longest matching key
//!   wins. A fleet route (no bot), or a bot whose policies set nothing for the route, takes the
//!   chart's value (`admin.apiPerMinute`, `ADMIN_API_PER_MINUTE`).
//! * **Whose requests.** Each caller is counted apart — a session, an API key, or (without
//!   either) a client address — so one runaway script never locks the other admins out. The
//!   count is a token bucket in the hot store (every admin replica shares it): `limit`
//!   requests at once, then one every `60 / limit` seconds.
//! * **Over the limit:** `429` with the JSON error and `Retry-After` (the seconds until one
//!   request is allowed again), counted in `botfleet_admin_api_limited_total{scope}` (`fleet`
//!   or the bot's id; never a user).
//!
//! The login routes keep their own limits (5 per 15 minutes, `auth.rs`) and are not counted
//! here; the per-key limit of API keys (`keys.rs`) applies on top.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AdminState, ApiError};

/// The largest body read to find its `bot` (the API's bodies are small; a bigger one is
/// passed on untouched and the handler refuses it).
const MAX_BODY: usize = 1 << 20;
/// The hot store's "pool" of fleet routes' buckets.
const FLEET_POOL: &str = "admin";

/// What a bot's resolved configuration says about the admin API (the rest is not read).
#[derive(Deserialize)]
struct Limits {
    limits: AdminLimits,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdminLimits {
    #[serde(default)]
    admin_api_per_minute: BTreeMap<String, u32>,
}

/// The limit of `template` among a policy's keys: the longest key that is the template or a
/// prefix of it on a `/` boundary.
pub fn limit_for(keys: &BTreeMap<String, u32>, template: &str) -> Option<(String, u32)> {
    keys.iter()
        .filter(|(k, _)| {
            let k = k.trim_end_matches('/');
            template == k || template.strip_prefix(k).is_some_and(|rest| rest.starts_with('/'))
        })
        .max_by_key(|(k, _)| k.len())
        .map(|(k, v)| (k.clone(), *v))
}

/// The documented route (path template) a path is, from the OpenAPI route table (a test
/// checks every route of the router is in it).
pub fn template_of(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    super::openapi::OPERATIONS
        .iter()
        .map(|op| op.path)
        .filter(|t| {
            let parts: Vec<&str> = t.split('/').collect();
            parts.len() == segments.len() && parts.iter().zip(&segments).all(|(p, s)| p == s || (p.starts_with('{') && !s.is_empty()))
        })
        // A literal segment wins over a parameter (`/broadcasts/preview` over `/broadcasts/{id}`).
        .min_by_key(|t| t.matches('{').count())
        .map(str::to_string)
}

/// The bot a request concerns, if any: `?bot=`, or `bot` in a JSON or form body.
fn bot_in(query: Option<&str>, content_type: &str, body: &[u8]) -> Option<String> {
    let from_query = query
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok()?.into_iter().find(|(k, _)| k == "bot").map(|(_, v)| v));
    if from_query.is_some() {
        return from_query;
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).ok()?.into_iter().find(|(k, _)| k == "bot").map(|(_, v)| v);
    }
    serde_json::from_slice::<serde_json::Value>(body).ok()?.get("bot")?.as_str().map(str::to_string)
}

/// Who is calling, for counting: an API key's id, a session (keyed hash), or the address.
fn caller(s: &AdminState, req: &Request) -> String {
    if let Some(key) = super::keys::bearer(req.headers()) {
        let id = key.strip_prefix("bfk_").and_then(|r| r.split('_').next()).unwrap_or("malformed");
        return format!("key:{id}");
    }
    let cookie = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == super::auth::COOKIE)
        .map(|(_, v)| v.to_string());
    match cookie {
        Some(token) => format!("session:{}", &s.settings.secret.tag("limit", &token)[..32]),
        None => {
            let peer = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
            let addr = super::auth::forwarded_client(peer, req.headers(), &s.settings.trusted_proxies);
            format!("addr:{}", addr.map_or_else(|| "unknown".to_string(), |a| a.to_string()))
        }
    }
}

/// The layer in front of `/api/v1` (see the module's comment).
pub async fn api_limits(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let Some(template) = template_of(req.uri().path()) else {
        return next.run(req).await;
    };
    if template.starts_with("/api/v1/login") {
        return next.run(req).await;
    }
    let who = caller(&s, &req);
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::bad("the request body is too large").into_response();
    };
    let mut bot = bot_in(parts.uri.query(), &content_type, &bytes);
    if bot.is_none() && template.contains("{broadcast_id}") {
        let id = parts.uri.path().split('/').nth(4).and_then(|v| v.parse::<i64>().ok());
        if let Some(id) = id
            && let Ok(Some(b)) = s.store.broadcast(id).await
        {
            bot = Some(b.bot);
        }
    }
    match limit_of(&s, bot.as_deref(), &template).await {
        Ok((pool, scope, endpoint, limit)) => {
            let key = format!("adminapi:{scope}:{endpoint}:{who}");
            let now = crate::bot::now_ms();
            match s.fleet.hot.allow(&pool, &key, limit, Duration::from_secs(60), limit, now).await {
                Ok(true) => {}
                Ok(false) => {
                    s.fleet.metrics.admin_api_limited(&scope);
                    let retry_after_s = 60_u64.div_ceil(u64::from(limit.max(1)));
                    return ApiError::TooManyTries {
                        message: format!(
                            "too many requests to {endpoint} ({limit} a minute for {scope}); wait {retry_after_s} s and try again"
                        ),
                        retry_after_s,
                    }
                    .into_response();
                }
                Err(e) => return ApiError::from(e).into_response(),
            }
        }
        Err(e) => return e.into_response(),
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// The bucket of a request: (hot store pool, scope, endpoint key, limit).
async fn limit_of(s: &AdminState, bot: Option<&str>, template: &str) -> Result<(String, String, String, u32), ApiError> {
    let fleet = || (FLEET_POOL.to_string(), "fleet".to_string(), template.to_string(), s.settings.api_per_minute);
    let Some(bot) = bot else { return Ok(fleet()) };
    // An unknown bot is the handler's to refuse (404/403); it is counted as a fleet route.
    let Some((_, config)) = s.store.bot_configs().await?.into_iter().map(|(id, _, c)| (id, c)).find(|(id, _)| id == bot) else {
        return Ok(fleet());
    };
    let pool = s.store.bots().await?.into_iter().find(|b| b.id == bot).map(|b| b.pool).unwrap_or_else(|| FLEET_POOL.to_string());
    let keys = serde_json::from_str::<Limits>(&config).map(|l| l.limits.admin_api_per_minute).unwrap_or_default();
    Ok(match limit_for(&keys, template) {
        Some((endpoint, limit)) => (pool, bot.to_string(), endpoint, limit),
        None => (pool, bot.to_string(), template.to_string(), s.settings.api_per_minute),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_key_on_a_segment_boundary_limits_a_route() {
        let keys: BTreeMap<String, u32> =
            [("/api/v1/users".to_string(), 120), ("/api/v1/users/{user_id}/ban".to_string(), 5), ("/api/v1/broadcasts".to_string(), 10)]
                .into_iter()
                .collect();
        assert_eq!(limit_for(&keys, "/api/v1/users/{user_id}/ban"), Some(("/api/v1/users/{user_id}/ban".into(), 5)));
        assert_eq!(limit_for(&keys, "/api/v1/users/{user_id}/gift"), Some(("/api/v1/users".into(), 120)));
        assert_eq!(limit_for(&keys, "/api/v1/broadcasts/preview"), Some(("/api/v1/broadcasts".into(), 10)));
        assert_eq!(limit_for(&keys, "/api/v1/userslist"), None, "a prefix counts on a / boundary only");
        assert_eq!(limit_for(&keys, "/api/v1/overview"), None);
    }

    #[test]
    fn a_path_is_matched_to_its_documented_template() {
        assert_eq!(template_of("/api/v1/users/42/ban").as_deref(), Some("/api/v1/users/{user_id}/ban"));
        assert_eq!(template_of("/api/v1/broadcasts/preview").as_deref(), Some("/api/v1/broadcasts/preview"));
        assert_eq!(template_of("/api/v1/broadcasts/7/cancel").as_deref(), Some("/api/v1/broadcasts/{broadcast_id}/cancel"));
        assert_eq!(template_of("/api/v1/overview").as_deref(), Some("/api/v1/overview"));
        assert_eq!(template_of("/api/v1/nothing"), None);
    }

    #[test]
    fn the_bot_is_read_from_the_query_a_form_or_json() {
        assert_eq!(bot_in(Some("weeks=2&bot=ns%2Fa"), "", b""), Some("ns/a".into()));
        assert_eq!(bot_in(None, "application/x-www-form-urlencoded", b"text=x&bot=ns%2Fb"), Some("ns/b".into()));
        assert_eq!(bot_in(None, "application/json", br#"{"bot": "ns/c", "text": "x"}"#), Some("ns/c".into()));
        assert_eq!(bot_in(None, "application/json", b"{}"), None);
        assert_eq!(bot_in(None, "application/json", b"not json"), None);
    }
}
