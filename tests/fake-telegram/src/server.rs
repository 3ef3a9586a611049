//! The HTTP face of the fake: `/bot<token>/<method>`, `/file/bot<token>/<path>`, long polls
//! and webhook delivery. All state changes go through `methods.rs` under the world lock.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};

use super::methods::{self, canonical};
use super::params::{ApiError, ApiResult, Params, Upload};
use super::state::{FaultKind, MAX_DOWNLOAD_BYTES, MAX_UPLOAD_BYTES, World, unix_now};

/// What every handler shares: the world and an HTTP client for webhook calls.
#[derive(Debug)]
pub struct Shared {
    world: Mutex<World>,
    pub(crate) http: reqwest::Client,
    /// Set when the server stops: background workers (webhook delivery) end.
    stopped: AtomicBool,
}

impl Shared {
    pub fn new(world: World) -> Arc<Self> {
        Self::trusting(world, None)
    }

    /// As [`Shared::new`], with webhook calls also trusting `ca` (a test CA's HTTPS front).
    pub fn trusting(world: World, ca: Option<reqwest::Certificate>) -> Arc<Self> {
        // Telegram does not follow redirects: a 3xx from a webhook is a failed delivery.
        let mut builder = reqwest::Client::builder().pool_max_idle_per_host(64).redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = ca {
            builder = builder.add_root_certificate(ca);
        }
        let http = builder.build().unwrap_or_default();
        Arc::new(Self { world: Mutex::new(world), http, stopped: AtomicBool::new(false) })
    }

    /// Ends background work (webhook workers); used when the server stops.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let world = self.world();
        for bot in world.bots.values() {
            bot.notify.notify_waiters();
        }
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The world, even if a panicking thread poisoned the lock: the fake keeps serving.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{bot}/{method}", any(bot_api))
        .route("/file/{bot}/{*path}", get(download))
        .merge(super::sim::routes())
        // Telegram accepts uploads up to 50 MB; leave room for the multipart framing.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BYTES + 1024 * 1024))
        .with_state(shared)
}

fn envelope(result: ApiResult<Value>) -> Response {
    match result {
        Ok(v) => (StatusCode::OK, axum::Json(json!({"ok": true, "result": v}))).into_response(),
        Err(e) => {
            let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::BAD_REQUEST);
            (status, axum::Json(e.to_json())).into_response()
        }
    }
}

fn token_of(segment: &str) -> Option<&str> {
    segment.strip_prefix("bot").filter(|t| !t.is_empty())
}

async fn bot_api(State(shared): State<Arc<Shared>>, Path((segment, method)): Path<(String, String)>, req: Request) -> Response {
    let result = authenticated_call(&shared, &segment, &method, req).await;
    if let Err(e) = &result {
        *shared.world().stats.errors_by_code.entry(e.code).or_default() += 1;
    }
    envelope(result)
}

async fn authenticated_call(shared: &Arc<Shared>, segment: &str, method: &str, req: Request) -> ApiResult<Value> {
    let token = token_of(segment).ok_or_else(ApiError::not_found)?;
    let bot_id = shared.world().bot_id_by_token(token).ok_or_else(ApiError::unauthorized)?;
    let method = canonical(method).ok_or_else(ApiError::not_found)?;
    let params = read_params(req).await?;
    call(shared, bot_id, method, params).await
}

/// One Bot API call after authentication: faults first, then the method.
pub async fn call(shared: &Arc<Shared>, bot_id: i64, method: &'static str, params: Params) -> ApiResult<Value> {
    let fault = {
        let mut world = shared.world();
        world.count_call(bot_id, method);
        world.take_fault(bot_id, method)
    };
    match fault {
        None => {}
        Some(FaultKind::ServerError { code }) => return Err(server_error(code)),
        Some(FaultKind::Outage) => return Err(server_error(502)),
        Some(FaultKind::Unauthorized) => return Err(ApiError::unauthorized()),
        Some(FaultKind::TooManyRequests { retry_after }) => {
            let mut world = shared.world();
            world.stats.too_many_requests += 1;
            if let Some(name) = world.bots.get(&bot_id).map(|b| b.username.clone()) {
                *world.stats.too_many_requests_by_bot.entry(name).or_default() += 1;
            }
            return Err(ApiError::too_many_requests(retry_after.max(1)));
        }
        Some(FaultKind::Timeout { delay_ms, apply }) => {
            if !apply {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                return Err(server_error(504));
            }
            let result = dispatch(shared, bot_id, method, params).await;
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            return result;
        }
    }
    dispatch(shared, bot_id, method, params).await
}

fn server_error(code: u16) -> ApiError {
    let text = match code {
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Server Error",
    };
    ApiError::server(code, text)
}

async fn dispatch(shared: &Arc<Shared>, bot_id: i64, method: &'static str, params: Params) -> ApiResult<Value> {
    if method == "getUpdates" {
        return get_updates(shared, bot_id, params).await;
    }
    let result = methods::call(&mut shared.world(), bot_id, method, &params);
    if method == "setWebhook" && result.is_ok() {
        spawn_webhook_worker(shared, bot_id);
    }
    result
}

// ---- request decoding ----------------------------------------------------------------------

async fn read_params(req: Request) -> ApiResult<Params> {
    let query = req.uri().query().map(|q| Params::from_pairs(form_urlencoded::parse(q.as_bytes()).into_owned())).unwrap_or_default();
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let mut params = if content_type.starts_with("multipart/form-data") {
        read_multipart(req).await?
    } else {
        let body = Bytes::from_request(req, &()).await.map_err(|e| match e.status().as_u16() {
            413 => ApiError::server(413, "Request Entity Too Large"),
            code => ApiError::server(code, e.body_text()),
        })?;
        if body.is_empty() {
            Params::default()
        } else if content_type.starts_with("application/json") {
            let value: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("can't parse JSON body: {e}")))?;
            Params::from_json(value)?
        } else {
            Params::from_pairs(form_urlencoded::parse(&body).into_owned())
        }
    };
    params.merge_under(query);
    Ok(params)
}

async fn read_multipart(req: Request) -> ApiResult<Params> {
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::bad_request(format!("can't parse multipart body: {}", e.body_text())))?;
    let mut params = Params::default();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(ApiError::bad_request(format!("can't parse multipart body: {}", e.body_text()))),
        };
        let Some(name) = field.name().map(String::from) else { continue };
        let file_name = field.file_name().map(String::from);
        let content_type = field.content_type().map(String::from);
        let data = field.bytes().await.map_err(|e| match e.status().as_u16() {
            413 => ApiError::server(413, "Request Entity Too Large"),
            _ => ApiError::bad_request(format!("can't read multipart field: {}", e.body_text())),
        })?;
        // A part with a file name is a file; a nameless part is a value if it is text.
        match (file_name, std::str::from_utf8(&data)) {
            (None, Ok(text)) => params.insert(name, Value::String(text.to_string())),
            (file_name, _) => params.add_upload(name, Upload { file_name, content_type, data }),
        }
    }
    Ok(params)
}

// ---- file downloads ------------------------------------------------------------------------

async fn download(State(shared): State<Arc<Shared>>, Path((segment, path)): Path<(String, String)>) -> Response {
    let file = {
        let mut world = shared.world();
        let Some(bot_id) = token_of(&segment).and_then(|t| world.bot_id_by_token(t)) else {
            return envelope(Err(ApiError::unauthorized()));
        };
        // Counted as a call named "download" (stats), so tests can tell a re-download.
        world.count_call(bot_id, "download");
        // Bots download only what getFile would hand out: their own files up to 20 MB.
        world.file_paths.get(&(bot_id, path)).and_then(|id| world.files.get(id)).filter(|f| f.size <= MAX_DOWNLOAD_BYTES).cloned()
    };
    match file {
        // The body is built outside the lock: it may be megabytes.
        Some(file) => {
            let mime = file.mime_type.clone().unwrap_or_else(|| "application/octet-stream".into());
            ([(header::CONTENT_TYPE, mime)], file.bytes()).into_response()
        }
        None => envelope(Err(ApiError::not_found())),
    }
}

// ---- getUpdates ----------------------------------------------------------------------------

const TERMINATED: &str = "terminated by other getUpdates request; make sure that only one bot instance is running";
const TERMINATED_BY_WEBHOOK: &str = "terminated by setWebhook request";
const WEBHOOK_ACTIVE: &str = "can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";

/// Long poll: answers as soon as an update is pending or the timeout passes. A newer
/// getUpdates for the same bot ends this one with 409, as Telegram does.
async fn get_updates(shared: &Arc<Shared>, bot_id: i64, p: Params) -> ApiResult<Value> {
    let offset = p.opt_i64("offset")?;
    let limit = p.opt_i64("limit")?.unwrap_or(100).clamp(1, 100) as usize;
    let timeout = p.opt_i64("timeout")?.unwrap_or(0).clamp(0, 120) as u64;
    let (notify, generation) = {
        let mut world = shared.world();
        if world.bot(bot_id)?.webhook.is_some() {
            return Err(ApiError::conflict(WEBHOOK_ACTIVE));
        }
        methods::set_allowed_updates(&mut world, bot_id, &p)?;
        let bot = world.bot_mut(bot_id)?;
        bot.poll_generation += 1;
        bot.notify.notify_waiters();
        (bot.notify.clone(), bot.poll_generation)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut world = shared.world();
            let bot = world.bot(bot_id)?;
            if bot.webhook.is_some() {
                return Err(ApiError::conflict(TERMINATED_BY_WEBHOOK));
            }
            if bot.poll_generation != generation {
                return Err(ApiError::conflict(TERMINATED));
            }
            let updates = methods::take_updates(&mut world, bot_id, offset, limit)?;
            if !updates.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(Value::Array(updates));
            }
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

// ---- webhook delivery ----------------------------------------------------------------------

fn spawn_webhook_worker(shared: &Arc<Shared>, bot_id: i64) {
    let generation = {
        let world = shared.world();
        match world.bots.get(&bot_id).and_then(|b| b.webhook.as_ref()) {
            Some(h) => h.generation,
            None => return,
        }
    };
    tokio::spawn(webhook_worker(shared.clone(), bot_id, generation));
}

struct Delivery {
    update_id: i64,
    body: Value,
    url: String,
    secret: Option<String>,
}

/// Delivers the bot's pending updates to its webhook until the webhook changes: up to
/// max_connections at once, one at a time per chat and in order, retrying with backoff while
/// the bot answers anything but 2xx.
async fn webhook_worker(shared: Arc<Shared>, bot_id: i64, generation: u64) {
    let notify = match shared.world().bots.get(&bot_id) {
        Some(b) => b.notify.clone(),
        None => return,
    };
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if shared.is_stopped() {
            return;
        }
        let (jobs, wake_at) = {
            let mut world = shared.world();
            world.expire_updates(bot_id);
            let Some(bot) = world.bots.get_mut(&bot_id) else { return };
            let Some(hook) = bot.webhook.as_ref().filter(|h| h.generation == generation) else { return };
            let (url, secret, max) = (hook.url.clone(), hook.secret_token.clone(), hook.max_connections);
            let now = Instant::now();
            let mut busy: HashSet<i64> = bot.updates.iter().filter(|u| u.in_flight).map(|u| u.chat_key).collect();
            let mut slots = max.saturating_sub(busy.len());
            let mut waiting_chats = HashSet::new();
            let mut jobs = Vec::new();
            let mut wake_at: Option<Instant> = None;
            for u in bot.updates.iter_mut() {
                if slots == 0 {
                    break;
                }
                if u.in_flight || busy.contains(&u.chat_key) || !waiting_chats.insert(u.chat_key) {
                    // An earlier update of this chat is in flight or still pending: keep order.
                    continue;
                }
                if let Some(t) = u.not_before.filter(|t| *t > now) {
                    wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
                    continue;
                }
                u.in_flight = true;
                busy.insert(u.chat_key);
                slots -= 1;
                jobs.push(Delivery { update_id: u.id, body: u.to_json(), url: url.clone(), secret: secret.clone() });
            }
            (jobs, wake_at)
        };
        for job in jobs {
            tokio::spawn(deliver(shared.clone(), bot_id, job));
        }
        let sleep_for = wake_at.map(|t| t.saturating_duration_since(Instant::now())).unwrap_or(Duration::from_secs(1));
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(sleep_for) => {}
        }
    }
}

async fn deliver(shared: Arc<Shared>, bot_id: i64, job: Delivery) {
    let timeout = Duration::from_millis(shared.world().settings.webhook_timeout_ms);
    let mut request = shared.http.post(&job.url).timeout(timeout).json(&job.body);
    if let Some(secret) = &job.secret {
        request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
    }
    let outcome = match request.send().await {
        Ok(resp) if resp.status().is_success() => {
            let reply_is_json =
                resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
            let body = resp.bytes().await.unwrap_or_default();
            Ok(reply_is_json.then(|| serde_json::from_slice::<Value>(&body).ok()).flatten())
        }
        Ok(resp) => {
            let status = resp.status();
            Err(format!("Wrong response from the webhook: {} {}", status.as_u16(), status.canonical_reason().unwrap_or("")))
        }
        Err(e) if e.is_timeout() => Err("Read timeout expired".to_string()),
        Err(e) if e.is_connect() => Err("Connection refused".to_string()),
        Err(_) => Err("Connection reset by peer".to_string()),
    };
    let mut world = shared.world();
    let retry_ms = world.settings.webhook_retry_ms;
    let retry_max_ms = world.settings.webhook_retry_max_ms;
    match outcome {
        Ok(reply) => {
            world.stats.webhook_deliveries += 1;
            if let Some(bot) = world.bots.get_mut(&bot_id) {
                bot.updates.retain(|u| u.id != job.update_id);
                bot.notify.notify_waiters();
            }
            // Telegram executes a method call given in the webhook's answer.
            if let Some(reply) = reply
                && let Some(method) = reply.get("method").and_then(Value::as_str).and_then(canonical)
                && method != "getUpdates"
                && let Ok(params) = Params::from_json(reply.clone())
            {
                world.count_call(bot_id, method);
                let applied = methods::call(&mut world, bot_id, method, &params).is_ok();
                if applied && method == "setWebhook" {
                    drop(world);
                    spawn_webhook_worker(&shared, bot_id);
                }
            }
        }
        Err(message) => {
            world.stats.webhook_failures += 1;
            if let Some(bot) = world.bots.get_mut(&bot_id) {
                if let Some(u) = bot.updates.iter_mut().find(|u| u.id == job.update_id) {
                    u.attempts += 1;
                    let backoff = retry_ms.saturating_mul(1u64 << u.attempts.saturating_sub(1).min(16)).min(retry_max_ms);
                    u.not_before = Some(Instant::now() + Duration::from_millis(backoff));
                    u.in_flight = false;
                }
                if let Some(hook) = bot.webhook.as_mut() {
                    hook.last_error_date = Some(unix_now());
                    hook.last_error_message = Some(message);
                }
                bot.notify.notify_waiters();
            }
        }
    }
}
