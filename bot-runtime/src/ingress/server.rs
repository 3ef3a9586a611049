//! The runtime's HTTP side: Telegram's webhook (`POST /telegram/{bot}`), `/metrics`,
//! `/healthz` (the process runs) and `/readyz` (Postgres and Redis answer).
//!
//! Webhook answers, and why:
//! - 401 for a missing or wrong secret header (checked in constant time, before the body is
//!   read), and the same 401 for a bot this process does not serve — an answer never tells
//!   which bot names exist;
//! - 413 for a body over [`MAX_BODY`] (Telegram's updates are a few KiB), 408 for a body that
//!   does not arrive within [`BODY_TIMEOUT`];
//! - 400 for a body that isn't JSON (not something Telegram sends);
//! - 200 once the update's effects are durable, or when it was handled before, or when it was
//!   written to the bot's durable inbound queue (below);
//! - 503 with Retry-After when another replica holds the update, when too many updates are
//!   in flight (backpressure: Telegram keeps and redelivers them, nothing is lost), or when a
//!   store is down (nothing of the update was committed), or while the bot's outbox holds more
//!   than a few seconds of delivery (admission control by egress, `admission.rs`; money and
//!   safety updates are never refused by it).
//!
//! Backpressure counts the interactive lane only (a `pre_checkout_query` never needs a permit,
//! is never queued and never delayed by it). With no permit free the process is overloaded
//! since that moment; for [`OVERLOAD_GRACE`] it answers 503 as above, past it an update goes
//! to the bot's durable inbound queue (`hot::Inbound`, drained by `ingress/inbound.rs`) and is
//! answered 200 — the 503 period is bounded; if the push fails or the queue is full, 503. While
//! a bot's queue may hold updates (the per-bot gate of this process), its new updates are
//! queued behind them, so per-chat order holds within this process. Acquiring a permit ends the
//! overload (the clock restarts at the next refusal). `botfleet_inbound_queue_depth` and the
//! `BotFleetInboundQueued` alert show that the queue is in use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use botfleet_crds::webhook::WebhookSecret;
use tokio::sync::Semaphore;

use crate::bot::{Bot, Fleet};
use crate::ingress::admission::{self, Admit};
use crate::ingress::inbound::INBOUND_MAX;
use crate::ingress::pipeline::{self, Outcome};
use crate::ingress::secret;

/// Telegram's updates are a few KiB (a message's text is at most 4096 characters, a caption
/// 1024; entities and a reply's copy add to that): 256 KiB is far above any of them.
pub const MAX_BODY: usize = 256 * 1024;
/// The body must arrive within this once the headers are in (see listener.rs for those).
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Updates handled at once per process before the webhook starts answering 503.
pub const MAX_IN_FLIGHT: usize = 512;
/// How long an overloaded process answers 503 before it queues updates durably instead.
pub const OVERLOAD_GRACE: Duration = Duration::from_secs(30);

/// Since when this process has had no permit to give (none: not overloaded), and how long
/// it answers 503 before queueing.
#[derive(Debug)]
pub struct Overload {
    grace: Duration,
    since: Mutex<Option<Instant>>,
}

impl Overload {
    pub fn new(grace: Duration) -> Self {
        Self { grace, since: Mutex::new(None) }
    }

    /// A permit was acquired: not overloaded (any more).
    fn relieved(&self) {
        *self.since.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// No permit was free: whether the overload has lasted past the grace (it starts now if
    /// it had not started).
    fn past_grace(&self) -> bool {
        let now = Instant::now();
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        now.duration_since(*since.get_or_insert(now)) >= self.grace
    }
}

pub struct WebhookBot {
    pub bot: Arc<Bot>,
    /// None: the bot polls, so its webhook endpoint refuses everything.
    pub secret: Option<WebhookSecret>,
}

#[derive(Clone)]
pub struct AppState {
    pub fleet: Arc<Fleet>,
    pub bots: Arc<HashMap<String, WebhookBot>>,
    pub in_flight: Arc<Semaphore>,
    pub overload: Arc<Overload>,
}

impl AppState {
    /// `grace`: how long an overloaded process answers 503 before queueing ([`OVERLOAD_GRACE`]).
    pub fn new(fleet: Arc<Fleet>, bots: HashMap<String, WebhookBot>, in_flight: Arc<Semaphore>, grace: Duration) -> Self {
        Self { fleet, bots: Arc::new(bots), in_flight, overload: Arc::new(Overload::new(grace)) }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/telegram/{bot}", post(webhook))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Liveness: the process serves, and none of its background workers is crash-looping (a
/// worker that keeps dying fails this, so the kubelet restarts the pod; health.rs).
async fn healthz(State(state): State<AppState>) -> Response {
    match state.fleet.health.check() {
        Ok(()) => "ok".into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

fn retry_later(message: &'static str) -> Response {
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

async fn webhook(State(state): State<AppState>, Path(name): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let unauthorized = || (StatusCode::UNAUTHORIZED, "missing or wrong X-Telegram-Bot-Api-Secret-Token").into_response();
    // An unknown bot gets the wrong-secret answer: no probing for bot names. (Not counted:
    // the metric's `bot` label must not take values from the URL.)
    let Some(entry) = state.bots.get(&name) else { return unauthorized() };
    let authorized = match &entry.secret {
        Some(secret) => secret::authenticate(secret, &headers).is_ok(),
        None => false,
    };
    if !authorized {
        state.fleet.metrics.update(&name, "unauthorized");
        return unauthorized();
    }
    // Only now is the body read: capped, and within a deadline.
    let body: Bytes = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => bytes,
        // Over the cap (or the client went away mid-body, which nobody reads an answer to).
        Ok(Err(_)) => {
            state.fleet.metrics.update(&name, "too_large");
            return (StatusCode::PAYLOAD_TOO_LARGE, format!("an update is at most {} KiB", MAX_BODY / 1024)).into_response();
        }
        Err(_) => return (StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time").into_response(),
    };
    let raw: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            state.fleet.metrics.update(&name, "malformed");
            return (StatusCode::BAD_REQUEST, format!("the body is not a JSON update: {e}")).into_response();
        }
    };
    // Backpressure counts the interactive work only: a pre_checkout_query must be answered
    // within Telegram's 10 s, and refusing it would fail a payment, so it never waits for a
    // permit and is never queued (the lifecycle policy's payment lane).
    // Admission control by egress (ingress/admission.rs): while the bot's outbox holds more
    // than a few seconds of delivery, new work waits at Telegram — except money and safety.
    if let Admit::Later { backlog_seconds } =
        state.fleet.egress.admit(&name, entry.bot.cfg().limits.outbound.per_bot_per_second, crate::bot::now_ms())
        && !admission::exempt(&raw)
    {
        state.fleet.metrics.update(&name, "backlogged");
        let mut r = (StatusCode::SERVICE_UNAVAILABLE, "the bot is catching up, retry later").into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(backlog_seconds.clamp(1, 60)));
        return r;
    }
    let _permit = if raw.get("pre_checkout_query").is_some() {
        None
    } else if state.fleet.inbound.pending(&name) {
        // Older updates of this bot wait in its queue: this one goes behind them, so a chat's
        // order holds in this process. (Across replicas it is best effort while one of them
        // is overloaded: see ingress/inbound.rs.)
        return enqueue(&state, entry, &name, &raw).await;
    } else {
        match state.in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                state.overload.relieved();
                Some(permit)
            }
            Err(_) if state.overload.past_grace() => return enqueue(&state, entry, &name, &raw).await,
            Err(_) => {
                state.fleet.metrics.update(&name, "overloaded");
                return retry_later("busy, retry later");
            }
        }
    };
    match pipeline::process(&entry.bot, &raw).await {
        o if o.is_final() => StatusCode::OK.into_response(),
        Outcome::Busy => retry_later("update in progress elsewhere"),
        _ => retry_later("temporarily unavailable"),
    }
}

/// Writes the update to the bot's durable inbound queue: 200 once it is there (the drainer
/// handles it), 503 if the queue is full or the store is down (Telegram keeps the update).
async fn enqueue(state: &AppState, entry: &WebhookBot, name: &str, raw: &serde_json::Value) -> Response {
    let bot = &entry.bot;
    let gate = &state.fleet.inbound;
    gate.push_started(name);
    let pushed = bot.fleet.hot.inbound_push(&bot.pool, &bot.name, &raw.to_string(), INBOUND_MAX).await;
    gate.push_finished(name);
    match pushed {
        Ok(true) => {
            state.fleet.metrics.update(name, "queued");
            StatusCode::OK.into_response()
        }
        Ok(false) => {
            state.fleet.metrics.update(name, "overloaded");
            tracing::warn!(bot = %bot.name, max = INBOUND_MAX, "the inbound queue is full; answering 503");
            retry_later("busy, retry later")
        }
        Err(e) => {
            state.fleet.metrics.update(name, "overloaded");
            tracing::warn!(bot = %bot.name, error = %e, "cannot queue the update; answering 503");
            retry_later("temporarily unavailable")
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.fleet.metrics.render()).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.fleet.store.ping().await;
    let hot = state.fleet.hot.ping().await;
    match (store, hot) {
        (Ok(()), Ok(())) => (StatusCode::OK, "ready").into_response(),
        (s, h) => {
            let mut why = Vec::new();
            if let Err(e) = s {
                why.push(format!("database: {e}"));
            }
            if let Err(e) = h {
                why.push(format!("redis: {e}"));
            }
            (StatusCode::SERVICE_UNAVAILABLE, why.join("; ")).into_response()
        }
    }
}
