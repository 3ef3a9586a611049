//! A raw Bot API client for tests: calls one method with JSON, form or multipart bodies and
//! returns Telegram's `result` or its error. Every successful result is checked against the
//! Bot API specification, so a fake (or a real server) that invents or drops fields fails the
//! test that saw it.

use serde_json::Value;

use crate::api_spec::ApiSpec;
use crate::fake_telegram::ApiError;

/// How the parameters travel, as different client libraries send them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/json` (teloxide, most Node libraries)
    Json,
    /// `application/x-www-form-urlencoded` with structured values as JSON strings (aiogram,
    /// python-telegram-bot, curl scripts)
    Form,
    /// `multipart/form-data`, the only way to upload files
    Multipart,
    /// GET with a query string
    Query,
}

#[derive(Debug, Clone)]
pub struct RawBot {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl RawBot {
    pub fn new(api_url: &str, token: &str) -> Self {
        Self { http: reqwest::Client::new(), base: api_url.trim_end_matches('/').to_string(), token: token.to_string() }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Calls a method with a JSON body; checks the result against the spec.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, ApiError> {
        self.call_as(method, params, Encoding::Json).await
    }

    pub async fn call_as(&self, method: &str, params: Value, encoding: Encoding) -> Result<Value, ApiError> {
        self.call_with_files(method, params, encoding, Vec::new()).await
    }

    /// Uploads files (field name, file name, bytes) with the other parameters in one multipart body.
    pub async fn upload(&self, method: &str, params: Value, files: Vec<(&str, &str, Vec<u8>)>) -> Result<Value, ApiError> {
        self.call_with_files(method, params, Encoding::Multipart, files).await
    }

    async fn call_with_files(
        &self,
        method: &str,
        params: Value,
        encoding: Encoding,
        files: Vec<(&str, &str, Vec<u8>)>,
    ) -> Result<Value, ApiError> {
        let url = format!("{}/bot{}/{}", self.base, self.token, method);
        let pairs = form_pairs(&params);
        let request = match encoding {
            Encoding::Json => self.http.post(&url).json(&params),
            Encoding::Form => self.http.post(&url).form(&pairs),
            Encoding::Query => self.http.get(&url).query(&pairs),
            Encoding::Multipart => {
                let mut form = reqwest::multipart::Form::new();
                for (k, v) in pairs {
                    form = form.text(k, v);
                }
                for (field, name, bytes) in files {
                    form = form.part(field.to_string(), reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()));
                }
                self.http.post(&url).multipart(form)
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| ApiError::server(599, format!("transport: {}", without_token(&e.to_string(), &self.token))))?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.map_err(|e| ApiError::server(598, format!("non-JSON answer with status {status}: {e}")))?;
        parse_envelope(method, status, body)
    }
}

/// Reads Telegram's envelope; on success checks the result against the spec.
pub fn parse_envelope(method: &str, status: u16, body: Value) -> Result<Value, ApiError> {
    if body["ok"] == Value::Bool(true) {
        assert_eq!(status, 200, "ok:true must come with HTTP 200");
        let result = body.get("result").cloned().unwrap_or(Value::Null);
        let spec = ApiSpec::get();
        if let Some(name) = spec.method_name(method) {
            let name = name.to_string();
            if let Err(problems) = spec.check_result(&name, &result) {
                panic!("{name} answered a result that breaks the Bot API spec: {problems:#?}\nresult: {result:#}");
            }
        }
        return Ok(result);
    }
    assert_eq!(body["ok"], Value::Bool(false), "envelope must have ok: {body}");
    let code = body["error_code"].as_u64().unwrap_or(0) as u16;
    assert_eq!(code, status, "error_code must equal the HTTP status: {body}");
    let description = body["description"].as_str().unwrap_or_default().to_string();
    let mut err = ApiError::server(code, description);
    err.retry_after = body["parameters"]["retry_after"].as_u64();
    Err(err)
}

/// Top-level parameters as strings, structured values JSON-serialized, the way form clients send them.
pub fn form_pairs(params: &Value) -> Vec<(String, String)> {
    params
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), s)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn without_token(text: &str, token: &str) -> String {
    if token.is_empty() { text.to_string() } else { text.replace(token, "<token>") }
}
