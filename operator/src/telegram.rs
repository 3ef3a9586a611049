//! The operator's few Telegram calls: validate a token (getMe) and own the bot's webhook.
//!
//! The base URL is configurable (TELEGRAM_API_URL) so tests point it at the fake Telegram.
//! Errors never carry the token: Bot API URLs contain it, so transport errors are masked.

use std::time::Duration;

use botfleet_crds::token::{BotToken, mask_tokens};
use serde::Deserialize;
use serde_json::{Value, json};

pub const DEFAULT_API_URL: &str = "https://api.telegram.org";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TelegramError {
    /// Telegram does not know the token (revoked, mistyped).
    #[error("Telegram rejected the token (401 Unauthorized)")]
    Unauthorized,
    /// Telegram refused the call; `description` is Telegram's text.
    #[error("Telegram answered {code}: {description}")]
    Api { code: u16, description: String, retry_after: Option<u64> },
    /// Telegram could not be reached (the text is masked).
    #[error("cannot reach Telegram: {0}")]
    Transport(String),
    #[error("unexpected answer from Telegram: {0}")]
    InvalidResponse(String),
}

impl TelegramError {
    /// Worth retrying later (network trouble, Telegram's 5xx, flood control).
    pub fn is_transient(&self) -> bool {
        match self {
            TelegramError::Transport(_) => true,
            TelegramError::Api { code, .. } => *code == 429 || *code >= 500,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BotIdentity {
    pub id: i64,
    pub username: String,
    pub first_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WebhookInfo {
    pub url: String,
    pub pending_update_count: u64,
    #[serde(default)]
    pub last_error_date: Option<i64>,
    #[serde(default)]
    pub last_error_message: Option<String>,
    #[serde(default)]
    pub max_connections: Option<u32>,
    #[serde(default)]
    pub allowed_updates: Option<Vec<String>>,
}

/// What the operator registers for a bot in webhook mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRegistration {
    pub url: String,
    pub secret_token: String,
    pub allowed_updates: Vec<String>,
    pub max_connections: u32,
}

#[derive(Debug, Clone)]
pub struct TelegramClient {
    http: reqwest::Client,
    base: String,
}

impl TelegramClient {
    pub fn new(base_url: &str) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap_or_default();
        Self { http, base: base_url.trim_end_matches('/').to_string() }
    }

    pub async fn get_me(&self, token: &BotToken) -> Result<BotIdentity, TelegramError> {
        let v = self.call(token, "getMe", json!({})).await?;
        serde_json::from_value(v).map_err(|e| TelegramError::InvalidResponse(e.to_string()))
    }

    pub async fn set_webhook(&self, token: &BotToken, reg: &WebhookRegistration) -> Result<(), TelegramError> {
        let params = json!({
            "url": reg.url, "secret_token": reg.secret_token,
            "allowed_updates": reg.allowed_updates, "max_connections": reg.max_connections,
        });
        self.call(token, "setWebhook", params).await.map(|_| ())
    }

    pub async fn delete_webhook(&self, token: &BotToken, drop_pending_updates: bool) -> Result<(), TelegramError> {
        self.call(token, "deleteWebhook", json!({"drop_pending_updates": drop_pending_updates})).await.map(|_| ())
    }

    pub async fn get_webhook_info(&self, token: &BotToken) -> Result<WebhookInfo, TelegramError> {
        let v = self.call(token, "getWebhookInfo", json!({})).await?;
        serde_json::from_value(v).map_err(|e| TelegramError::InvalidResponse(e.to_string()))
    }

    async fn call(&self, token: &BotToken, method: &str, params: Value) -> Result<Value, TelegramError> {
        let url = format!("{}/bot{}/{method}", self.base, token.expose());
        let response = self
            .http
            .post(url)
            .json(&params)
            .send()
            .await
            .map_err(|e| TelegramError::Transport(mask_tokens(&e.to_string()).into_owned()))?;
        let status = response.status().as_u16();
        let body: Value =
            response.json().await.map_err(|e| TelegramError::InvalidResponse(format!("HTTP {status}: {}", mask_tokens(&e.to_string()))))?;
        if body["ok"] == Value::Bool(true) {
            return Ok(body.get("result").cloned().unwrap_or(Value::Null));
        }
        let code = body["error_code"].as_u64().map(|c| c as u16).unwrap_or(status);
        if code == 401 {
            return Err(TelegramError::Unauthorized);
        }
        Err(TelegramError::Api {
            code,
            description: mask_tokens(body["description"].as_str().unwrap_or("no description")).into_owned(),
            retry_after: body["parameters"]["retry_after"].as_u64(),
        })
    }
}
