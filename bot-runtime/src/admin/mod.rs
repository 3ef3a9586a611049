//! The admin role's web side (docs/ADMIN.md): the REST API under `/api/v1`, its OpenAPI
//! document, and a small server-rendered dashboard, for one fleet (the bots sharing one
//! database and one hot store). It holds no bot token: it reads the registry the bots write,
//! and whatever must reach Telegram goes as jobs on a bot's outbox or as a timer the bot runs.
//!
//! | file | job |
//! |---|---|
//! | `analytics.rs` | the funnel, retention, revenue by plan and campaign, mismatches: read from rollups refreshed incrementally |
//! | `auth.rs` | login codes, sessions, the CSRF token, login limits, the client address, roles |
//! | `api.rs` | the `/api/v1` handlers |
//! | `broadcast.rs` | broadcasts: the API, and the producer that queues them on the bots' outboxes |
//! | `limits.rs` | per-endpoint limits: the bot's RateLimitPolicy `adminApiPerMinute`, else the chart's value |
//! | `keys.rs` | API keys: made and revoked by fleet admins, checked on every use |
//! | `moderation.rs` | the report queue and its reviews, bans in force |
//! | `openapi.rs` | the OpenAPI document, from the API's types and its route table |
//! | `pages.rs` | the HTML dashboard (forms post to the documented routes) |
//! | `pricing.rs` | each bot's effective plans and campaigns (from the registry) and the `kubectl` that changes each |
//! | `telegram_html.rs` | a broadcast's text: Telegram HTML checked strictly, and its preview |

pub mod analytics;
pub mod api;
pub mod auth;
pub mod broadcast;
pub mod keys;
pub mod limits;
pub mod moderation;
pub mod openapi;
pub mod pages;
pub mod pricing;
pub mod telegram_html;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequest;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::bot::Fleet;
use crate::store::StoreError;
use crate::store::admin::AdminStore;

/// The admin role's settings.
pub struct AdminSettings {
    /// Telegram ids of the fleet's admins (the chart's values): every bot, every route.
    pub fleet_admins: Vec<i64>,
    /// Proxies whose `X-Forwarded-For` is believed (an Ingress controller); anyone else's
    /// address is the TCP peer's.
    pub trusted_proxies: Vec<IpAddr>,
    /// Cookies carry `Secure` (everywhere but a dashboard served on localhost).
    pub secure_cookies: bool,
    pub secret: SessionSecret,
    /// Requests per minute one API key may make (the chart's value; a sliding minute).
    pub api_key_per_minute: u32,
    /// Requests per minute per caller to a fleet route, or to a bot's route its
    /// RateLimitPolicies set no `adminApiPerMinute` for (the chart's value; `limits.rs`).
    pub api_per_minute: u32,
    /// Jobs a broadcast keeps queued in a bot's outbox at most (see `broadcast.rs`).
    pub broadcast_queue: u64,
    /// How often the broadcast producer looks for room.
    pub broadcast_tick: std::time::Duration,
    /// An analytics read refreshes the rollups first when they are older than this (the
    /// background refresher keeps them within a minute; 0: always, as tests want).
    pub analytics_max_age: std::time::Duration,
    /// 👎 received on a bot within 30 days (since the member's last review) that put a member
    /// without open reports in the moderation queue (0: never; `moderation.rs`).
    pub thumbs_down_to_review: u32,
    /// The fleet's time zone: the overview's days (new today, Stars per day) are its civil
    /// days (`ADMIN_TIME_ZONE`, an IANA name; UTC by default).
    pub time_zone: FleetZone,
}

/// The fleet's time zone and its name.
#[derive(Debug, Clone)]
pub struct FleetZone {
    pub name: String,
    pub tz: jiff::tz::TimeZone,
}

impl FleetZone {
    pub fn utc() -> Self {
        Self { name: "UTC".into(), tz: jiff::tz::TimeZone::UTC }
    }

    /// A zone by its IANA name (`Europe/Berlin`), from the system's time zone database
    /// (`/usr/share/zoneinfo`, or `TZDIR`; the runtime image carries it). `UTC` needs none.
    pub fn parse(name: &str) -> Result<Self, String> {
        let name = name.trim();
        if name.is_empty() || name.eq_ignore_ascii_case("utc") {
            return Ok(Self::utc());
        }
        match jiff::tz::TimeZone::get(name) {
            Ok(tz) => Ok(Self { name: name.to_string(), tz }),
            Err(e) => Err(format!(
                "unknown time zone {name:?}: give an IANA name such as Europe/Berlin or America/New_York (or UTC); \
                 looked up in the system's time zone database (/usr/share/zoneinfo, or TZDIR): {e}"
            )),
        }
    }

    /// The day (days since 1970-01-01) of the civil date at `ms` in this zone.
    pub fn day_of(&self, ms: i64) -> i64 {
        crate::store::local_day(&self.tz, ms)
    }

    /// The first instant of `day` in this zone (ms since the epoch).
    pub fn day_start(&self, day: i64) -> i64 {
        crate::store::local_day_start(&self.tz, day)
    }
}

/// The key of every hash and token the admin role derives (codes and session ids are stored
/// as HMACs under it; the CSRF token is one). Never printed.
#[derive(Clone)]
pub struct SessionSecret(Arc<Vec<u8>>);

/// Requests per minute one API key may make, unless configured.
pub const DEFAULT_API_KEY_PER_MINUTE: u32 = 120;

/// Requests per minute per caller and endpoint, unless configured or set by a bot's policy
/// (a dashboard page makes one request; a busy admin clicks far less).
pub const DEFAULT_API_PER_MINUTE: u32 = 600;

/// About three seconds of a bot's sends at Telegram's 30 messages a second.
pub const DEFAULT_BROADCAST_QUEUE: u64 = 90;
pub const DEFAULT_BROADCAST_TICK: std::time::Duration = std::time::Duration::from_millis(500);
/// Rollups at most this old are read as they are (see `analytics.rs`).
pub const DEFAULT_ANALYTICS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// 👎 in 30 days that bring a member to the moderation queue without a report, unless configured.
pub const DEFAULT_THUMBS_DOWN_TO_REVIEW: u32 = 5;

/// The shortest secret accepted (bytes).
pub const MIN_SECRET_LEN: usize = 32;

impl SessionSecret {
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(format!("the session secret must be at least {MIN_SECRET_LEN} bytes (it has {})", bytes.len()));
        }
        Ok(Self(Arc::new(bytes)))
    }

    /// A random secret (`bot-runtime local`: sessions end with the process).
    pub fn generate() -> Self {
        Self(Arc::new(rand::random::<[u8; 32]>().to_vec()))
    }

    /// HMAC-SHA256 of `purpose|value`, hex.
    pub fn tag(&self, purpose: &str, value: &str) -> String {
        crate::payload::hex(&crate::payload::hmac_sha256(&self.0, format!("{purpose}|{value}").as_bytes()))
    }
}

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSecret(…)")
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AdminState {
    pub fleet: Arc<Fleet>,
    pub store: Arc<dyn AdminStore>,
    pub settings: Arc<AdminSettings>,
    /// One analytics refresh at a time in this process (`analytics.rs`).
    pub analytics_lock: Arc<tokio::sync::Mutex<()>>,
}

impl AdminState {
    pub fn new(fleet: Arc<Fleet>, store: Arc<dyn AdminStore>, settings: AdminSettings) -> Self {
        Self { fleet, store, settings: Arc::new(settings), analytics_lock: Arc::new(tokio::sync::Mutex::new(())) }
    }
}

/// The dashboard and the API, with the security headers on every answer.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .merge(
            api::routes()
                .merge(keys::routes())
                .merge(moderation::routes())
                .merge(broadcast::routes())
                .merge(analytics::routes())
                .merge(pricing::routes())
                .route_layer(axum::middleware::from_fn_with_state(state.clone(), limits::api_limits))
                .layer(axum::middleware::from_fn(pages::form_posts)),
        )
        .merge(pages::routes())
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn readyz(axum::extract::State(s): axum::extract::State<AdminState>) -> Response {
    match s.fleet.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}")).into_response(),
    }
}

async fn metrics(axum::extract::State(s): axum::extract::State<AdminState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.fleet.metrics.render()).into_response()
}

/// A strict Content-Security-Policy (script, styles and fetches from our own origin only: no
/// inline script or style, nothing from elsewhere), no framing, no referrer (the CSRF token may
/// be in a form's URL), no caching.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::CACHE_CONTROL, "no-store");
    r
}

/// The Content-Security-Policy of every answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Serves (and runs the broadcast producer) until `shutdown` turns true, then lets the
/// producer finish its step (with the peer's address for the login limits).
pub async fn serve(listener: tokio::net::TcpListener, state: AdminState, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    // The bots learn the fleet admins from the registry (they answer their in-bot commands);
    // retried until it is written, without holding the dashboard back.
    tokio::spawn(register_fleet_admins(state.clone(), shutdown.clone()));
    let producer = tokio::spawn(broadcast::run(state.clone(), shutdown.clone()));
    let refresher = tokio::spawn(analytics::run(state.clone(), shutdown.clone()));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    if producer.await.is_err() {
        tracing::warn!("the broadcast producer stopped abnormally");
    }
    if refresher.await.is_err() {
        tracing::warn!("the analytics refresher stopped abnormally");
    }
    served
}

/// Writes the fleet admins into the registry (the bots read them there), every 10 s until it
/// succeeds (Postgres may be starting too).
async fn register_fleet_admins(state: AdminState, mut shutdown: watch::Receiver<bool>) {
    loop {
        match crate::store::admin::Registry::set_fleet_admins(state.fleet.store.as_ref(), &state.settings.fleet_admins).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "could not register the fleet admins; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

// ---- errors ------------------------------------------------------------------------------

/// An answer that is not a success: JSON `{"error": {"code", "message"}}` with a message
/// meant for whoever sent the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    BadRequest(String),
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    TooManyTries { message: String, retry_after_s: u64 },
    Unavailable(String),
    Internal(String),
}

/// The error body (documented in the OpenAPI document).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`, `too_many_tries`,
    /// `unavailable`, `internal`.
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }

    pub(crate) fn parts(&self) -> (StatusCode, &'static str, &str) {
        match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            ApiError::TooManyTries { message, .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_tries", message),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let body = ErrorBody { error: ErrorDetail { code, message: message.to_string() } };
        let mut r = (status, axum::Json(body)).into_response();
        if let ApiError::TooManyTries { retry_after_s, .. } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "admin: database error");
        match e {
            StoreError::Unavailable(_) | StoreError::Migration(_) => ApiError::Unavailable("the database is unavailable; try again".into()),
            StoreError::Corrupt(_) => ApiError::Internal("unexpected data in the database (logged)".into()),
        }
    }
}

impl From<crate::hot::HotError> for ApiError {
    fn from(e: crate::hot::HotError) -> Self {
        tracing::warn!(error = %e, "admin: hot store error");
        ApiError::Unavailable("the hot state store (Redis) is unavailable; try again".into())
    }
}

impl From<crate::matching::MatchError> for ApiError {
    fn from(e: crate::matching::MatchError) -> Self {
        tracing::warn!(error = %e, "admin: matching store error");
        ApiError::Unavailable("the matching store (Redis) is unavailable; try again".into())
    }
}

/// A request body: JSON (`application/json`), or a form (`application/x-www-form-urlencoded`,
/// the dashboard's forms). A body that does not parse is a 400 with the parser's reason.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if form {
            let bytes =
                axum::body::Bytes::from_request(req, state).await.map_err(|e| ApiError::bad(format!("bad form: {}", e.body_text())))?;
            let fields: Vec<(String, String)> =
                serde_urlencoded::from_bytes(&bytes).map_err(|e| ApiError::bad(format!("bad form: {e}")))?;
            if fields.iter().any(|(k, v)| k.contains('\0') || v.contains('\0')) {
                return Err(no_nul());
            }
            let v = serde_urlencoded::from_bytes::<T>(&bytes).map_err(|e| ApiError::bad(format!("bad form: {e}")))?;
            return Ok(Body(v));
        }
        let axum::Json(mut v) = axum::Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(|e: JsonRejection| ApiError::bad(format!("bad JSON body: {}", e.body_text())))?;
        // serde would read a JSON array as a struct's fields in order: the API takes objects only.
        if !v.is_object() {
            return Err(ApiError::bad("bad JSON body: it must be a JSON object (see /api/v1/openapi.json)"));
        }
        if has_nul(&v) {
            return Err(no_nul());
        }
        integral_numbers(&mut v);
        let v = serde_json::from_value(v).map_err(|e| ApiError::bad(format!("bad JSON body: {e}")))?;
        Ok(Body(v))
    }
}

/// No text of the API may hold U+0000: PostgreSQL's text cannot store it (it was a 500), and
/// neither a Telegram message nor a name needs it.
fn no_nul() -> ApiError {
    ApiError::bad("text may not contain the NUL character (U+0000)")
}

fn has_nul(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(fields) => fields.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// A number without a fraction (`322.0`) is an integer in JSON Schema, so the OpenAPI
/// document's `integer` fields allow it; serde's integers do not. Such numbers become integers
/// (within i64), everything else is left as sent.
fn integral_numbers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f >= i64::MIN as f64
                && f < i64::MAX as f64
            {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Req {
        #[allow(dead_code)]
        n: i64,
    }

    async fn body(raw: &str) -> Result<Req, ApiError> {
        typed(raw, "application/json").await
    }

    async fn typed(raw: &str, content_type: &str) -> Result<Req, ApiError> {
        let req = axum::http::Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, content_type)
            .body(axum::body::Body::from(raw.to_string()))
            .unwrap();
        Body::<Req>::from_request(req, &()).await.map(|b| b.0)
    }

    #[test]
    fn a_fleet_zone_is_an_iana_name_and_its_days_are_civil_days() {
        assert_eq!(FleetZone::parse("").unwrap().name, "UTC");
        assert_eq!(FleetZone::parse("utc").unwrap().day_of(86_400_000 - 1), 0);
        for bad in ["Mars/Olympus_Mons", "Europe/Berlinn", "../etc/passwd"] {
            let e = FleetZone::parse(bad).unwrap_err();
            assert!(e.contains("unknown time zone") && e.contains("IANA"), "{e}");
        }
        // 2026-03-29 01:00 UTC is 03:00 in Berlin (summer time from that moment): the same day;
        // 22:30 UTC that day is 00:30 the next day in Berlin (UTC+2).
        let berlin = FleetZone::parse("Europe/Berlin").unwrap();
        let day = |y: i16, m: i8, d: i8| {
            jiff::civil::date(y, m, d).to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp().as_millisecond() / 86_400_000
        };
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        assert_eq!(berlin.day_of(at("2026-03-29T01:00:00Z")), day(2026, 3, 29));
        assert_eq!(berlin.day_of(at("2026-03-29T22:30:00Z")), day(2026, 3, 30));
        // Its first instant: midnight Berlin = 23:00 UTC the day before (winter), 22:00 (summer).
        assert_eq!(berlin.day_start(day(2026, 3, 29)), at("2026-03-28T23:00:00Z"));
        assert_eq!(berlin.day_start(day(2026, 3, 30)), at("2026-03-29T22:00:00Z"));
        // +14 h: Kiritimati's day starts at 10:00 UTC the day before.
        let kiritimati = FleetZone::parse("Pacific/Kiritimati").unwrap();
        assert_eq!(kiritimati.day_of(at("2026-12-01T10:00:00Z")), day(2026, 12, 2));
        assert_eq!(kiritimati.day_of(at("2026-12-01T09:59:59Z")), day(2026, 12, 1));
    }

    #[tokio::test]
    async fn a_json_body_is_an_object_and_whole_floats_are_integers() {
        assert!(body(r#"{"n": 322.0}"#).await.is_ok(), "322.0 is an integer in JSON Schema");
        for bad in [r#"{"n": 3.5}"#, "[1]", "[null, null]", "1", r#"{"n": 1e300}"#] {
            assert!(matches!(body(bad).await, Err(ApiError::BadRequest(_))), "{bad}");
        }
    }

    #[tokio::test]
    async fn no_text_holds_a_nul_character() {
        for bad in [r#"{"n": 1, "text": "a\u0000b"}"#, r#"{"n": 1, "x": ["\u0000"]}"#, r#"{"n": 1, "\u0000": 1}"#] {
            assert_eq!(body(bad).await.err(), Some(no_nul()), "{bad}");
        }
        let form = "application/x-www-form-urlencoded";
        assert!(typed("n=1&text=ok", form).await.is_ok());
        assert_eq!(typed("n=1&text=a%00b", form).await.err(), Some(no_nul()));
        assert!(matches!(typed("n=x", form).await, Err(ApiError::BadRequest(_))));
    }
}
