//! Who is asking: login codes, sessions, the CSRF token, login limits, the client address, and
//! the admin's role (docs/ADMIN.md, "Login" and "Permissions").
//!
//! * A code is 6 random digits, single use, 5 minutes, stored as an HMAC under the session
//!   secret (a stolen table cannot be brute-forced offline), sent by a bot's outbox.
//! * A session is 32 random bytes in an `HttpOnly; SameSite=Strict` cookie (`Secure` outside
//!   localhost), stored as an HMAC, 12 hours, revoked by logout.
//! * CSRF: a synchronizer token derived from the session (`HMAC(secret, "csrf|" + session)`),
//!   handed out at login and by `GET /api/v1/session`; every request that is not GET/HEAD must
//!   carry it in `X-CSRF-Token` (the API) or in the `_csrf` query parameter (the dashboard's
//!   forms, which have no script to set a header). [`Admin`] checks it, so no state-changing
//!   route can forget to.
//! * Login tries: 5 code requests and 5 code entries per 15 minutes, per Telegram id and per
//!   client address, counted in the database (every admin replica sees them).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use serde::Serialize;

use super::{AdminState, ApiError};
use crate::store::admin::RegisteredBot;

pub const COOKIE: &str = "botfleet_admin";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const CODE_TTL_MS: i64 = 5 * 60 * 1000;
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
pub const TRY_WINDOW_MS: i64 = 15 * 60 * 1000;
pub const MAX_TRIES: i64 = 5;

/// An admin's identity and reach, resolved from the registry at each request (a bot admin
/// removed from a BotInstance loses the bot at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Identity {
    pub telegram_id: i64,
    /// A fleet admin: every bot, fleet-wide actions, the audit log.
    pub fleet_admin: bool,
    /// The bots (`<namespace>/<name>`) this admin may act on.
    pub bots: Vec<String>,
}

impl Identity {
    /// Who `telegram_id` is in a fleet of `bots`; None: no admin at all.
    pub fn resolve(telegram_id: i64, fleet_admins: &[i64], bots: &[RegisteredBot]) -> Option<Identity> {
        let fleet_admin = fleet_admins.contains(&telegram_id);
        let bots: Vec<String> = bots.iter().filter(|b| fleet_admin || b.admins.contains(&telegram_id)).map(|b| b.id.clone()).collect();
        if !fleet_admin && bots.is_empty() {
            return None;
        }
        Some(Identity { telegram_id, fleet_admin, bots })
    }

    pub fn may_act_on(&self, bot: &str) -> bool {
        self.bots.iter().any(|b| b == bot)
    }

    pub fn require_bot(&self, bot: &str) -> Result<(), ApiError> {
        if self.may_act_on(bot) { Ok(()) } else { Err(ApiError::Forbidden(format!("you are not an admin of the bot {bot:?}"))) }
    }

    pub fn require_fleet(&self, what: &str) -> Result<(), ApiError> {
        if self.fleet_admin { Ok(()) } else { Err(ApiError::Forbidden(format!("{what} is for fleet admins only"))) }
    }
}

/// A logged-in admin (and, for anything but GET/HEAD, a request that carried the CSRF token),
/// or an API key (`Authorization: Bearer bfk_…`, see `keys.rs`).
pub struct Admin {
    pub identity: Identity,
    /// The session's hash (empty for an API key).
    pub token_hash: String,
    /// The session's CSRF token (empty for an API key).
    pub csrf: String,
    pub client: String,
    /// The API key's id, when the request came with a key.
    pub api_key: Option<String>,
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn query_param(parts: &Parts, name: &str) -> Option<String> {
    parts.uri.query()?.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
}

impl FromRequestParts<AdminState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, Self::Rejection> {
        let client = client_address(parts, &state.settings.trusted_proxies);
        // A key is a credential of its own: no cookie, no CSRF token (nothing a browser sends
        // by itself), but its role, its read-only flag, its limit and an audit row per use.
        if let Some(presented) = super::keys::bearer(&parts.headers) {
            return super::keys::authenticate(state, parts, presented, client).await;
        }
        let Some(token) = cookie_token(&parts.headers) else {
            return Err(ApiError::Unauthorized("log in first: no session cookie".into()));
        };
        let secret = &state.settings.secret;
        let token_hash = secret.tag("session", &token);
        let now = crate::bot::now_ms();
        let Some(admin_id) = state.store.session_admin(&token_hash, now).await? else {
            return Err(ApiError::Unauthorized("the session has expired or ended; log in again".into()));
        };
        let csrf = secret.tag("csrf", &token);
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| query_param(parts, "_csrf"))
                .unwrap_or_default();
            if !crate::payload::constant_time_eq(sent.as_bytes(), csrf.as_bytes()) {
                return Err(ApiError::Forbidden(
                    "missing or wrong CSRF token: send the token from the login answer in the X-CSRF-Token header".into(),
                ));
            }
        }
        let bots = state.store.bots().await?;
        let Some(identity) = Identity::resolve(admin_id, &state.settings.fleet_admins, &bots) else {
            return Err(ApiError::Forbidden("you are no longer an admin of this fleet".into()));
        };
        Ok(Admin { identity, token_hash, csrf, client, api_key: None })
    }
}

/// The client's address (see [`client_address`]); never refuses.
pub struct Client(pub String);

impl FromRequestParts<AdminState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, Self::Rejection> {
        Ok(Client(client_address(parts, &state.settings.trusted_proxies)))
    }
}

/// The client's address: the TCP peer's, unless the peer is a trusted proxy; then the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries further
/// left were written by the client and prove nothing).
pub fn client_address(parts: &Parts, trusted: &[IpAddr]) -> String {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    forwarded_client(peer, &parts.headers, trusted).map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
}

pub fn forwarded_client(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(hops.into_iter().rev().find(|ip| !trusted.contains(ip)).unwrap_or(peer))
}

/// Refuses a login step once a subject used its tries in the window; records this try.
pub async fn spend_try(state: &AdminState, telegram_id: i64, client: &str, kind: &str, now: i64) -> Result<(), ApiError> {
    let subjects = [format!("id:{telegram_id}"), format!("addr:{client}")];
    for s in &subjects {
        if state.store.attempts_since(s, kind, now - TRY_WINDOW_MS).await? >= MAX_TRIES {
            state.fleet.metrics.admin_login("limited");
            return Err(ApiError::TooManyTries {
                message: format!("too many tries: at most {MAX_TRIES} per 15 minutes per Telegram id and per address; wait and try again"),
                retry_after_s: (TRY_WINDOW_MS / 1000) as u64,
            });
        }
    }
    state.store.record_attempt(&subjects, kind, now).await?;
    Ok(())
}

/// A fresh 6-digit code.
pub fn new_code() -> String {
    format!("{:06}", rand::random_range(0..1_000_000u32))
}

/// A fresh session token (hex of 32 random bytes).
pub fn new_session_token() -> String {
    crate::payload::hex(&rand::random::<[u8; 32]>())
}

/// The session cookie (empty value and `Max-Age=0` to clear it).
pub fn session_cookie(token: &str, secure: bool) -> String {
    let max_age = if token.is_empty() { 0 } else { SESSION_TTL_MS / 1000 };
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.2".parse().unwrap());
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        assert_eq!(forwarded_client(Some(ip("10.0.0.1")), &h, &trusted), Some(ip("1.2.3.4")), "right-most untrusted hop");
        assert_eq!(forwarded_client(Some(ip("9.9.9.9")), &h, &trusted), Some(ip("9.9.9.9")), "an untrusted peer's header is ignored");
        assert_eq!(forwarded_client(Some(ip("10.0.0.1")), &HeaderMap::new(), &trusted), Some(ip("10.0.0.1")));
    }

    #[test]
    fn codes_are_six_digits_and_cookies_are_strict() {
        for _ in 0..100 {
            let c = new_code();
            assert!(c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()), "{c}");
        }
        let c = session_cookie("ab", true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"), "{c}");
        assert!(!session_cookie("ab", false).contains("Secure"));
        assert!(session_cookie("", false).contains("Max-Age=0"));
    }
}
