//! Request parameters as Telegram reads them, and Telegram's error envelope.
//!
//! Telegram accepts the same parameters as a query string, form-urlencoded body, JSON body or
//! multipart body. In the non-JSON encodings every value is a string, and structured values
//! (reply_markup, entities, reply_parameters …) are JSON-serialized strings. Other clients
//! (aiogram, python-telegram-bot, curl scripts) send them that way, so every accessor here takes
//! either form.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value};

/// An error answered in Telegram's envelope: `{ok:false, error_code, description, parameters}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub description: String,
    pub retry_after: Option<u64>,
    pub migrate_to_chat_id: Option<i64>,
}

impl ApiError {
    fn new(code: u16, description: impl Into<String>) -> Self {
        Self { code, description: description.into(), retry_after: None, migrate_to_chat_id: None }
    }
    pub fn bad_request(what: impl AsRef<str>) -> Self {
        Self::new(400, format!("Bad Request: {}", what.as_ref()))
    }
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized")
    }
    pub fn forbidden(what: impl AsRef<str>) -> Self {
        Self::new(403, format!("Forbidden: {}", what.as_ref()))
    }
    pub fn not_found() -> Self {
        Self::new(404, "Not Found")
    }
    pub fn conflict(what: impl AsRef<str>) -> Self {
        Self::new(409, format!("Conflict: {}", what.as_ref()))
    }
    pub fn too_many_requests(retry_after: u64) -> Self {
        let mut e = Self::new(429, format!("Too Many Requests: retry after {retry_after}"));
        e.retry_after = Some(retry_after);
        e
    }
    pub fn server(code: u16, description: impl Into<String>) -> Self {
        Self::new(code, description)
    }
    pub fn to_json(&self) -> Value {
        let mut body = serde_json::json!({
            "ok": false,
            "error_code": self.code,
            "description": self.description,
        });
        let mut parameters = Map::new();
        if let Some(retry) = self.retry_after {
            parameters.insert("retry_after".into(), retry.into());
        }
        if let Some(chat) = self.migrate_to_chat_id {
            parameters.insert("migrate_to_chat_id".into(), chat.into());
        }
        if !parameters.is_empty() {
            body["parameters"] = Value::Object(parameters);
        }
        body
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.description)
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

/// A file sent in a multipart body.
#[derive(Debug, Clone)]
pub struct Upload {
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

/// The parameters of one Bot API call, whatever encoding they came in.
#[derive(Debug, Default, Clone)]
pub struct Params {
    fields: Map<String, Value>,
    uploads: HashMap<String, Upload>,
}

impl Params {
    pub fn from_json(value: Value) -> ApiResult<Self> {
        match value {
            Value::Object(fields) => Ok(Self { fields, uploads: HashMap::new() }),
            Value::Null => Ok(Self::default()),
            _ => Err(ApiError::bad_request("parameters must be a JSON object")),
        }
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let fields = pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        Self { fields, uploads: HashMap::new() }
    }

    /// Query-string parameters are merged under body parameters, as Telegram does.
    pub fn merge_under(&mut self, other: Params) {
        for (k, v) in other.fields {
            self.fields.entry(k).or_insert(v);
        }
    }

    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        self.fields.insert(key.into(), value);
    }

    pub fn add_upload(&mut self, field: String, upload: Upload) {
        self.uploads.insert(field, upload);
    }

    pub fn has(&self, key: &str) -> bool {
        self.fields.get(key).is_some_and(|v| !v.is_null()) || self.uploads.contains_key(key)
    }

    /// The parameters as one JSON object with structured strings decoded; what a spec check reads.
    pub fn as_json(&self) -> Value {
        let mut out = Map::new();
        for (k, v) in &self.fields {
            out.insert(k.clone(), v.clone());
        }
        for k in self.uploads.keys() {
            out.insert(k.clone(), Value::String(format!("attach://{k}")));
        }
        Value::Object(out)
    }

    fn raw(&self, key: &str) -> Option<&Value> {
        self.fields.get(key).filter(|v| !v.is_null())
    }

    pub fn opt_str(&self, key: &str) -> ApiResult<Option<String>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(ApiError::bad_request(format!("field \"{key}\" must be of type String"))),
        }
    }

    pub fn str(&self, key: &str) -> ApiResult<String> {
        self.opt_str(key)?.ok_or_else(|| ApiError::bad_request(format!("{key} is empty")))
    }

    pub fn opt_i64(&self, key: &str) -> ApiResult<Option<i64>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                n.as_i64().map(Some).ok_or_else(|| ApiError::bad_request(format!("field \"{key}\" must be of type Integer")))
            }
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => {
                s.trim().parse::<i64>().map(Some).map_err(|_| ApiError::bad_request(format!("field \"{key}\" must be of type Integer")))
            }
            Some(_) => Err(ApiError::bad_request(format!("field \"{key}\" must be of type Integer"))),
        }
    }

    pub fn i64(&self, key: &str) -> ApiResult<i64> {
        self.opt_i64(key)?.ok_or_else(|| ApiError::bad_request(format!("{key} is empty")))
    }

    pub fn opt_bool(&self, key: &str) -> ApiResult<Option<bool>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) => Ok(Some(n.as_i64() != Some(0))),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(Some(true)),
                "false" | "0" | "no" | "off" | "" => Ok(Some(false)),
                _ => Err(ApiError::bad_request(format!("field \"{key}\" must be of type Boolean"))),
            },
            Some(_) => Err(ApiError::bad_request(format!("field \"{key}\" must be of type Boolean"))),
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> ApiResult<bool> {
        Ok(self.opt_bool(key)?.unwrap_or(default))
    }

    /// A structured value (object or array), given as JSON or as a JSON-serialized string.
    /// `what` names it in the error the way Telegram does ("reply keyboard markup").
    pub fn opt_json(&self, key: &str, what: &str) -> ApiResult<Option<Value>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => {
                serde_json::from_str::<Value>(s).map(Some).map_err(|_| ApiError::bad_request(format!("can't parse {what} JSON object")))
            }
            Some(v) => Ok(Some(v.clone())),
        }
    }

    /// A chat identifier: an integer or "@username".
    pub fn chat_ref(&self, key: &str) -> ApiResult<ChatRef> {
        match self.raw(key) {
            None => Err(ApiError::bad_request("chat_id is empty")),
            Some(Value::Number(n)) => n.as_i64().map(ChatRef::Id).ok_or_else(|| ApiError::bad_request("chat not found")),
            Some(Value::String(s)) => {
                let s = s.trim();
                if let Some(name) = s.strip_prefix('@') {
                    Ok(ChatRef::Username(name.to_ascii_lowercase()))
                } else if s.is_empty() {
                    Err(ApiError::bad_request("chat_id is empty"))
                } else {
                    s.parse::<i64>().map(ChatRef::Id).map_err(|_| ApiError::bad_request("chat not found"))
                }
            }
            Some(_) => Err(ApiError::bad_request("chat not found")),
        }
    }

    /// An InputFile parameter: a file_id or URL string, `attach://<field>`, or the upload itself
    /// sent under the parameter's own name.
    pub fn input_file(&self, key: &str) -> ApiResult<Option<InputFile>> {
        if let Some(upload) = self.uploads.get(key) {
            return Ok(Some(InputFile::Upload(upload.clone())));
        }
        match self.opt_str(key)? {
            None => Ok(None),
            Some(s) => match s.strip_prefix("attach://") {
                Some(field) => self
                    .uploads
                    .get(field)
                    .cloned()
                    .map(|u| Some(InputFile::Upload(u)))
                    .ok_or_else(|| ApiError::bad_request(format!("file \"{field}\" must be uploaded in the request"))),
                None if s.starts_with("http://") || s.starts_with("https://") => Ok(Some(InputFile::Url(s))),
                None if s.trim().is_empty() => Ok(None),
                None => Ok(Some(InputFile::FileId(s))),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatRef {
    Id(i64),
    Username(String),
}

#[derive(Debug, Clone)]
pub enum InputFile {
    FileId(String),
    Url(String),
    Upload(Upload),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn form_strings_are_read_as_typed_values() {
        let p = Params::from_pairs([
            ("chat_id".to_string(), "42".to_string()),
            ("disable_notification".to_string(), "true".to_string()),
            ("reply_markup".to_string(), r#"{"inline_keyboard":[[{"text":"a","callback_data":"b"}]]}"#.to_string()),
        ]);
        assert_eq!(p.chat_ref("chat_id").ok(), Some(ChatRef::Id(42)));
        assert_eq!(p.opt_bool("disable_notification").ok().flatten(), Some(true));
        let markup = p.opt_json("reply_markup", "reply keyboard markup").ok().flatten();
        assert_eq!(markup.and_then(|m| m["inline_keyboard"][0][0]["callback_data"].as_str().map(String::from)), Some("b".into()));
    }

    #[test]
    fn malformed_json_field_is_a_bad_request_naming_the_field() {
        let p = Params::from_pairs([("reply_markup".to_string(), "{not json".to_string())]);
        let err = p.opt_json("reply_markup", "reply keyboard markup").unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(err.description, "Bad Request: can't parse reply keyboard markup JSON object");
    }

    #[test]
    fn username_chat_ids_are_lowercased_without_at() {
        let p = Params::from_json(json!({"chat_id": "@MyChannel"})).unwrap();
        assert_eq!(p.chat_ref("chat_id").ok(), Some(ChatRef::Username("mychannel".into())));
    }

    #[test]
    fn too_many_requests_carries_retry_after_in_parameters() {
        let body = ApiError::too_many_requests(3).to_json();
        assert_eq!(body["error_code"], 429);
        assert_eq!(body["parameters"]["retry_after"], 3);
        assert_eq!(body["description"], "Too Many Requests: retry after 3");
    }

    #[test]
    fn non_integer_is_rejected_not_truncated() {
        let p = Params::from_json(json!({"limit": "ten", "offset": 1.5})).unwrap();
        assert!(p.opt_i64("limit").is_err());
        assert!(p.opt_i64("offset").is_err());
    }
}
