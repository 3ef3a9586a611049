//! The runtime's Bot API client: JSON calls, multipart uploads and file downloads, with every
//! call counted by method and outcome and every error text masked (Bot API URLs carry the
//! token; reqwest's errors quote the URL).
//!
//! Our own small client rather than teloxide's `Bot`: the runtime needs the raw outcome of
//! each call (429 `retry_after`, 403 "blocked", 5xx) to drive the shared limiter and the
//! outbox, generic method + params jobs that survive a restart as JSON, and error texts that
//! can never carry the token. That is ~250 lines; the typed layer would be in the way.
//! Files move in pieces both ways (a download is read piece by piece, an upload body is a
//! stream): a 20 MB video never sits whole in the process.

use std::time::Duration;

use botfleet_crds::token::{BotToken, mask_tokens};
use bytes::Bytes;
use serde_json::Value;

use crate::metrics::Metrics;

pub const DEFAULT_API_URL: &str = "https://api.telegram.org";

/// Telegram's download limit for bots (getFile): larger files can't be relayed across bots.
pub const MAX_DOWNLOAD_BYTES: u64 = 20 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TgError {
    /// Telegram refused the call. `description` is Telegram's text (masked).
    #[error("Telegram answered {code}: {description}")]
    Api { code: u16, description: String, retry_after: Option<u64> },
    /// Telegram could not be reached, or answered something that isn't the Bot API envelope.
    #[error("cannot reach Telegram: {0}")]
    Transport(String),
}

impl TgError {
    pub fn code(&self) -> Option<u16> {
        match self {
            TgError::Api { code, .. } => Some(*code),
            TgError::Transport(_) => None,
        }
    }

    /// Flood control: wait this long, then try again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TgError::Api { code: 429, retry_after, .. } => Some(Duration::from_secs(retry_after.unwrap_or(1).max(1))),
            _ => None,
        }
    }

    /// Worth retrying (network trouble, Telegram's 5xx, flood control).
    pub fn is_transient(&self) -> bool {
        match self {
            TgError::Transport(_) => true,
            TgError::Api { code, .. } => *code == 429 || *code >= 500,
        }
    }

    /// Telegram's token refusal: 401 (revoked) or 404 (unknown token). During a rotation the
    /// old token stops working before the new pods are up.
    pub fn is_token_refused(&self) -> bool {
        matches!(self, TgError::Api { code: 401 | 404, .. })
    }

    /// What a 400 means where we act on it. The Bot API gives these no code of their own —
    /// only a 400 and a stable description — so the descriptions are read here, in one place
    /// (as teloxide's `ApiError` does), and callers branch on the variant.
    pub fn bad_request(&self) -> Option<BadRequest> {
        let TgError::Api { code: 400, description, .. } = self else { return None };
        let d = description.to_ascii_lowercase();
        Some(if d.contains("message is not modified") {
            BadRequest::MessageNotModified
        } else if d.contains("message to edit not found") || d.contains("message to delete not found") {
            BadRequest::MessageGone
        } else if d.contains("file is too big") {
            BadRequest::FileTooBig
        } else if d.contains("query is too old") || d.contains("query id is invalid") {
            BadRequest::QueryExpired
        } else if d.contains("balance_too_low") || d.contains("not enough stars") {
            BadRequest::BalanceTooLow
        } else {
            BadRequest::Other
        })
    }

    /// The user blocked the bot (or deleted their account): 403 on a private chat.
    pub fn is_unreachable_user(&self) -> bool {
        matches!(self, TgError::Api { code: 403, .. })
    }

    /// The metric outcome label: `rate_limited` (429) and `blocked` (403: the user blocked
    /// the bot) are normal life for a bot and kept apart from real errors (alerts use them).
    pub fn outcome(&self) -> &'static str {
        match self.code() {
            Some(429) => "rate_limited",
            Some(403) => "blocked",
            _ => "error",
        }
    }
}

/// Telegram's answer to a download over the bots' limit (as its getFile says it).
fn too_big() -> TgError {
    TgError::Api { code: 400, description: "Bad Request: file is too big".into(), retry_after: None }
}

/// A file the bot may download: getFile's `file_path`, and its size when Telegram says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub path: String,
    pub size: Option<u64>,
}

/// A download in progress (see [`TelegramApi::download`]).
pub struct FileDownload {
    api: TelegramApi,
    response: reqwest::Response,
    /// Received past the last piece, not yet handed out.
    pending: Option<Bytes>,
    piece: usize,
    max_bytes: u64,
    read: u64,
    ended: bool,
}

impl FileDownload {
    /// The next piece of the file: `piece` bytes, the last one shorter; None at the end. More
    /// than the limit → Telegram's "file is too big", as if getFile had said so. Each piece is
    /// one allocation of exactly its size: what arrives past it waits, uncopied, for the next.
    pub async fn next_piece(&mut self) -> Result<Option<Bytes>, TgError> {
        let mut buffer = bytes::BytesMut::with_capacity(self.piece);
        while buffer.len() < self.piece {
            let chunk = match self.pending.take() {
                Some(rest) => rest,
                None if self.ended => break,
                None => match self.response.chunk().await {
                    Ok(Some(chunk)) => {
                        self.read += chunk.len() as u64;
                        if self.read > self.max_bytes {
                            self.api.metrics.api_call(&self.api.bot, "download", "error");
                            return Err(too_big());
                        }
                        chunk
                    }
                    Ok(None) => {
                        self.ended = true;
                        self.api.metrics.api_call(&self.api.bot, "download", "ok");
                        break;
                    }
                    Err(e) => return Err(self.api.transport("download", e)),
                },
            };
            let room = self.piece - buffer.len();
            if chunk.len() > room {
                buffer.extend_from_slice(&chunk[..room]);
                self.pending = Some(chunk.slice(room..));
            } else {
                buffer.extend_from_slice(&chunk);
            }
        }
        Ok((!buffer.is_empty()).then(|| buffer.freeze()))
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.read
    }
}

/// The 400s the runtime tells apart (see [`TgError::bad_request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequest {
    /// An edit that changes nothing (a refresh raced another): done.
    MessageNotModified,
    /// The message to edit or delete is gone (the user deleted it): done.
    MessageGone,
    /// A callback query answered after Telegram forgot it.
    QueryExpired,
    /// A file over the 20 MB a bot may download.
    FileTooBig,
    /// The bot's Stars balance cannot pay for it (a paid broadcast's message, a refund).
    BalanceTooLow,
    Other,
}

#[derive(Clone)]
pub struct TelegramApi {
    http: reqwest::Client,
    base: String,
    token: BotToken,
    bot: String,
    metrics: Metrics,
}

impl std::fmt::Debug for TelegramApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramApi").field("base", &self.base).field("bot", &self.bot).field("token", &self.token.fingerprint()).finish()
    }
}

impl TelegramApi {
    pub fn new(base_url: &str, token: BotToken, bot: &str, metrics: Metrics) -> Self {
        // Long polls take up to `timeout` seconds; calls carry their own shorter timeouts.
        let http =
            // The Bot API never redirects: no redirect policy runs on each call.
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(64)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default();
        Self { http, base: base_url.trim_end_matches('/').to_string(), token, bot: bot.to_string(), metrics }
    }

    /// One Bot API call with JSON parameters.
    pub async fn call(&self, method: &str, params: &Value) -> Result<Value, TgError> {
        self.call_with_timeout(method, params, Duration::from_secs(30)).await
    }

    pub async fn call_with_timeout(&self, method: &str, params: &Value, timeout: Duration) -> Result<Value, TgError> {
        let url = format!("{}/bot{}/{method}", self.base, self.token.expose());
        let request = self.http.post(url).timeout(timeout).json(params);
        self.finish(method, request.send().await).await
    }

    /// A call with one file uploaded as multipart field `field`, its `len` bytes streamed from
    /// `body` (never held whole); the other parameters are sent as form fields (objects as JSON
    /// strings, as Telegram expects in multipart).
    #[allow(clippy::too_many_arguments)] // one multipart call: the method, its fields, the file
    pub async fn upload(
        &self,
        method: &str,
        params: &Value,
        field: &str,
        file_name: &str,
        mime_type: Option<&str>,
        body: reqwest::Body,
        len: u64,
    ) -> Result<Value, TgError> {
        let mut form = reqwest::multipart::Form::new();
        if let Some(map) = params.as_object() {
            for (k, v) in map {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => continue,
                    other => other.to_string(),
                };
                form = form.text(k.clone(), text);
            }
        }
        let mut part = reqwest::multipart::Part::stream_with_length(body, len).file_name(file_name.to_string());
        if let Some(mime) = mime_type {
            part = part.mime_str(mime).map_err(|e| TgError::Transport(e.to_string()))?;
        }
        form = form.part(field.to_string(), part);
        let url = format!("{}/bot{}/{method}", self.base, self.token.expose());
        let request = self.http.post(url).timeout(Duration::from_secs(120)).multipart(form);
        self.finish(method, request.send().await).await
    }

    /// Where a file the bot received can be downloaded (getFile), refusing more than `max_bytes`
    /// when Telegram states the size.
    pub async fn file(&self, file_id: &str, max_bytes: u64) -> Result<RemoteFile, TgError> {
        let file = self.call("getFile", &serde_json::json!({ "file_id": file_id })).await?;
        let size = file["file_size"].as_u64();
        if size.is_some_and(|s| s > max_bytes) {
            return Err(too_big());
        }
        let Some(path) = file["file_path"].as_str() else {
            return Err(TgError::Transport("getFile returned no file_path".into()));
        };
        Ok(RemoteFile { path: path.to_string(), size })
    }

    /// Starts downloading `file`; its bytes come in pieces of `piece` bytes
    /// ([`FileDownload::next_piece`]), so no more than one piece is held at a time.
    pub async fn download(&self, file: &RemoteFile, max_bytes: u64, piece: usize) -> Result<FileDownload, TgError> {
        let url = format!("{}/file/bot{}/{}", self.base, self.token.expose(), file.path);
        let response = self.http.get(url).timeout(Duration::from_secs(120)).send().await.map_err(|e| self.transport("download", e))?;
        let status = response.status();
        if !status.is_success() {
            self.metrics.api_call(&self.bot, "download", "error");
            return Err(TgError::Api { code: status.as_u16(), description: format!("file download answered {status}"), retry_after: None });
        }
        if response.content_length().is_some_and(|n| n > max_bytes) {
            self.metrics.api_call(&self.bot, "download", "error");
            return Err(too_big());
        }
        Ok(FileDownload { api: self.clone(), response, pending: None, piece: piece.max(1), max_bytes, read: 0, ended: false })
    }

    fn transport(&self, method: &str, e: reqwest::Error) -> TgError {
        self.metrics.api_call(&self.bot, method, "error");
        TgError::Transport(mask_tokens(&e.without_url().to_string()).into_owned())
    }

    async fn finish(&self, method: &str, sent: Result<reqwest::Response, reqwest::Error>) -> Result<Value, TgError> {
        let response = sent.map_err(|e| self.transport(method, e))?;
        let status = response.status().as_u16();
        let body: Value = match response.json().await {
            Ok(v) => v,
            Err(e) => {
                let err = if status >= 400 {
                    TgError::Api { code: status, description: format!("HTTP {status}"), retry_after: None }
                } else {
                    TgError::Transport(format!("HTTP {status}: {}", mask_tokens(&e.without_url().to_string())))
                };
                self.metrics.api_call(&self.bot, method, err.outcome());
                return Err(err);
            }
        };
        if body["ok"] == Value::Bool(true) {
            self.metrics.api_call(&self.bot, method, "ok");
            return Ok(body.get("result").cloned().unwrap_or(Value::Null));
        }
        let code = body["error_code"].as_u64().map(|c| c as u16).unwrap_or(status);
        let err = TgError::Api {
            code,
            description: mask_tokens(body["description"].as_str().unwrap_or("no description")).into_owned(),
            retry_after: body["parameters"]["retry_after"].as_u64(),
        };
        if code == 429 {
            self.metrics.too_many_requests(&self.bot);
        }
        self.metrics.api_call(&self.bot, method, err.outcome());
        Err(err)
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    fn api(code: u16, description: &str) -> TgError {
        TgError::Api { code, description: description.into(), retry_after: None }
    }

    #[test]
    fn the_runtime_branches_on_codes_and_one_reading_of_telegrams_400_descriptions() {
        assert_eq!(
            api(400, "Bad Request: message is not modified: specified new message content ...").bad_request(),
            Some(BadRequest::MessageNotModified)
        );
        assert_eq!(api(400, "Bad Request: message to edit not found").bad_request(), Some(BadRequest::MessageGone));
        assert_eq!(api(400, "Bad Request: file is too big").bad_request(), Some(BadRequest::FileTooBig));
        assert_eq!(
            api(400, "Bad Request: query is too old and response timeout expired or query ID is invalid").bad_request(),
            Some(BadRequest::QueryExpired)
        );
        assert_eq!(api(400, "Bad Request: chat not found").bad_request(), Some(BadRequest::Other));
        assert_eq!(api(403, "Forbidden: bot was blocked by the user").bad_request(), None);
        assert!(api(401, "Unauthorized").is_token_refused() && api(404, "Not Found").is_token_refused());
        assert!(!api(403, "Forbidden").is_token_refused() && api(403, "Forbidden").is_unreachable_user());
        assert!(api(502, "Bad Gateway").is_transient() && !api(400, "x").is_transient());
    }
}
