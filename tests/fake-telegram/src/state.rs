//! Everything the fake Telegram knows: bots, users, chats, messages, files, updates, payments.
//!
//! One `World` behind one mutex. Every operation on it is short and never awaits, so the lock
//! is held for microseconds; waiting (long polls, webhook deliveries, pre-checkout answers)
//! happens outside it in `server.rs`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

use super::params::{ApiError, ApiResult, ChatRef};

/// How many messages of one chat are kept (for replies, copies, edits and the sim inbox).
/// Older ones are forgotten, so a long benchmark keeps bounded memory.
pub const MESSAGES_KEPT_PER_CHAT: usize = 2_000;
/// How many inbox entries of one simulated user are kept (oldest dropped first).
pub const INBOX_KEPT_PER_USER: usize = 10_000;
/// Telegram lets bots download files up to 20 MB with getFile.
pub const MAX_DOWNLOAD_BYTES: u64 = 20 * 1024 * 1024;
/// Telegram lets bots upload files up to 50 MB.
pub const MAX_UPLOAD_BYTES: usize = 50 * 1024 * 1024;

pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Telegram's flood limits as the fake enforces them (token buckets).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Limits {
    pub enabled: bool,
    pub per_bot_per_sec: f64,
    pub per_bot_burst: f64,
    pub per_chat_per_sec: f64,
    pub per_chat_burst: f64,
    /// A bot's budget for sends with `allow_paid_broadcast` (Bot API: "up to 1000 messages per
    /// second, ignoring broadcasting limits", for 0.1 Star each): a bucket of its own, burst
    /// one second's worth; the per-chat limit still applies.
    pub paid_per_bot_per_sec: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            enabled: true,
            per_bot_per_sec: 30.0,
            per_bot_burst: 30.0,
            per_chat_per_sec: 1.0,
            per_chat_burst: 3.0,
            paid_per_bot_per_sec: 1000.0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn full(burst: f64) -> Self {
        Self { tokens: burst, last: Instant::now() }
    }

    /// Seconds to wait before `n` tokens are available (0 when they are available now).
    /// More than the burst can never be available: that waits as long as a full refill.
    pub fn wait_for(&mut self, now: Instant, n: f64, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
        let need = n.min(burst);
        if self.tokens >= need { 0.0 } else { (need - self.tokens) / rate.max(1e-9) }
    }

    pub fn take(&mut self, n: f64) {
        self.tokens -= n;
    }
}

/// A fault switched on from /sim.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultSpec {
    /// Method name (case-insensitive); absent means every method.
    #[serde(default)]
    pub method: Option<String>,
    /// Bot username, id or token; absent means every bot.
    #[serde(default)]
    pub bot: Option<String>,
    #[serde(flatten)]
    pub kind: FaultKind,
    /// How many calls it hits; absent means until cleared.
    #[serde(default)]
    pub count: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this 5xx status (Telegram's envelope), without applying the call.
    ServerError {
        #[serde(default = "default_5xx")]
        code: u16,
    },
    /// Answer 429 with this retry_after, without applying the call.
    TooManyRequests {
        #[serde(default = "default_retry_after")]
        retry_after: u64,
    },
    /// Hold the request this long. With `apply`, the call takes effect and only the answer is
    /// late (the "sent, but the client timed out" case); without, the answer is a 504 and
    /// nothing happened.
    Timeout {
        #[serde(default = "default_timeout_ms")]
        delay_ms: u64,
        #[serde(default)]
        apply: bool,
    },
    /// Telegram unreachable behind its front end: 502 Bad Gateway.
    Outage,
    /// Answer 401 Unauthorized without applying the call, as Telegram does for a token that
    /// was just revoked (the moment of a rotation before the new pods are up).
    Unauthorized,
}

fn default_5xx() -> u16 {
    500
}
fn default_retry_after() -> u64 {
    1
}
fn default_timeout_ms() -> u64 {
    30_000
}

#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub id: u64,
    pub method: Option<String>,
    pub bot_id: Option<i64>,
    pub kind: FaultKind,
    pub remaining: Option<u32>,
}

/// Call counters, readable from /sim for tests and benchmarks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub calls: BTreeMap<String, u64>,
    pub calls_by_bot: BTreeMap<String, BTreeMap<String, u64>>,
    pub errors_by_code: BTreeMap<u16, u64>,
    pub too_many_requests: u64,
    pub too_many_requests_by_bot: BTreeMap<String, u64>,
    pub faults_injected: u64,
    pub webhook_deliveries: u64,
    pub webhook_failures: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimUser {
    pub id: i64,
    pub first_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_code: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_premium: bool,
}

impl SimUser {
    pub fn to_user_json(&self) -> Value {
        let mut v = json!({"id": self.id, "is_bot": false, "first_name": self.first_name});
        if let Some(x) = &self.last_name {
            v["last_name"] = json!(x);
        }
        if let Some(x) = &self.username {
            v["username"] = json!(x);
        }
        if let Some(x) = &self.language_code {
            v["language_code"] = json!(x);
        }
        if self.is_premium {
            v["is_premium"] = json!(true);
        }
        v
    }

    pub fn to_private_chat_json(&self) -> Value {
        let mut v = json!({"id": self.id, "type": "private", "first_name": self.first_name});
        if let Some(x) = &self.last_name {
            v["last_name"] = json!(x);
        }
        if let Some(x) = &self.username {
            v["username"] = json!(x);
        }
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Photo,
    Video,
    Voice,
    Audio,
    Document,
    Sticker,
    Animation,
    VideoNote,
}

impl MediaKind {
    pub const ALL: [MediaKind; 8] = [
        MediaKind::Photo,
        MediaKind::Video,
        MediaKind::Voice,
        MediaKind::Audio,
        MediaKind::Document,
        MediaKind::Sticker,
        MediaKind::Animation,
        MediaKind::VideoNote,
    ];

    /// The Message field and the send-method parameter share this name.
    pub fn field(self) -> &'static str {
        match self {
            MediaKind::Photo => "photo",
            MediaKind::Video => "video",
            MediaKind::Voice => "voice",
            MediaKind::Audio => "audio",
            MediaKind::Document => "document",
            MediaKind::Sticker => "sticker",
            MediaKind::Animation => "animation",
            MediaKind::VideoNote => "video_note",
        }
    }

    pub fn send_method(self) -> &'static str {
        match self {
            MediaKind::Photo => "sendPhoto",
            MediaKind::Video => "sendVideo",
            MediaKind::Voice => "sendVoice",
            MediaKind::Audio => "sendAudio",
            MediaKind::Document => "sendDocument",
            MediaKind::Sticker => "sendSticker",
            MediaKind::Animation => "sendAnimation",
            MediaKind::VideoNote => "sendVideoNote",
        }
    }

    /// Stickers and video notes carry no caption on Telegram.
    pub fn has_caption(self) -> bool {
        !matches!(self, MediaKind::Sticker | MediaKind::VideoNote)
    }

    fn dir(self) -> &'static str {
        match self {
            MediaKind::Photo => "photos",
            MediaKind::Video => "videos",
            MediaKind::Voice => "voice",
            MediaKind::Audio => "music",
            MediaKind::Document => "documents",
            MediaKind::Sticker => "stickers",
            MediaKind::Animation => "animations",
            MediaKind::VideoNote => "video_notes",
        }
    }

    fn ext(self) -> &'static str {
        match self {
            MediaKind::Photo => "jpg",
            MediaKind::Video | MediaKind::Animation | MediaKind::VideoNote => "mp4",
            MediaKind::Voice => "oga",
            MediaKind::Audio => "mp3",
            MediaKind::Document => "bin",
            MediaKind::Sticker => "webp",
        }
    }

    fn type_code(self) -> u8 {
        match self {
            MediaKind::Photo => 2,
            MediaKind::Video => 4,
            MediaKind::Voice => 3,
            MediaKind::Audio => 9,
            MediaKind::Document => 5,
            MediaKind::Sticker => 8,
            MediaKind::Animation => 10,
            MediaKind::VideoNote => 13,
        }
    }

    /// Telegram refuses a file_id of one kind for another (a voice as a photo); documents are
    /// the lenient exception the fake allows: anything may be sent as a document.
    pub fn accepts(self, stored: MediaKind) -> bool {
        self == stored || self == MediaKind::Document
    }
}

#[derive(Debug, Clone)]
pub struct FileRec {
    pub owner_bot: i64,
    pub file_id: String,
    pub unique_id: String,
    pub kind: MediaKind,
    pub size: u64,
    /// None for files the sim declared only by size: their bytes are synthesized on download.
    pub data: Option<Bytes>,
    pub path: String,
    pub mime_type: Option<String>,
    pub file_name: Option<String>,
}

impl FileRec {
    pub fn bytes(&self) -> Bytes {
        match &self.data {
            Some(b) => b.clone(),
            None => Bytes::from(vec![0x5a; self.size as usize]),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InvoiceSpec {
    pub title: String,
    pub description: String,
    pub payload: String,
    pub currency: String,
    pub amount: i64,
    /// createInvoiceLink's `subscription_period` (seconds): a Stars subscription.
    #[serde(default)]
    pub subscription_period: Option<i64>,
}

/// A user's Stars subscription to a bot: made by paying a subscription invoice link, renewed
/// every period until cancelled (by the user, or by the bot with editUserStarSubscription).
#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    /// The first payment's charge id: how the bot names the subscription.
    pub first_charge_id: String,
    pub bot_id: i64,
    pub user_id: i64,
    pub spec: InvoiceSpec,
    /// Unix seconds: the end of the period paid for.
    pub expires: i64,
    pub canceled: bool,
}

#[derive(Debug)]
pub struct PreCheckout {
    pub user_id: i64,
    pub deadline: Instant,
    pub answer: Option<oneshot::Sender<Result<(), String>>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Charge {
    pub telegram_payment_charge_id: String,
    pub bot_id: i64,
    pub user_id: i64,
    pub amount: i64,
    pub payload: String,
    pub date: i64,
    pub refunded: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Channel {
    pub id: i64,
    pub title: String,
    pub username: Option<String>,
    pub members: HashMap<i64, String>,
    /// Bots that are administrators (only they may read the member list). None: every bot.
    pub admin_bots: Option<HashSet<i64>>,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub secret_token: Option<String>,
    pub max_connections: usize,
    pub generation: u64,
    pub last_error_date: Option<i64>,
    pub last_error_message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PendingUpdate {
    pub id: i64,
    pub kind: &'static str,
    pub payload: Value,
    /// Updates of one chat are delivered in order, one at a time (webhook mode).
    pub chat_key: i64,
    pub attempts: u32,
    pub not_before: Option<Instant>,
    pub in_flight: bool,
    pub created: Instant,
}

impl PendingUpdate {
    pub fn to_json(&self) -> Value {
        let mut v = json!({"update_id": self.id});
        v[self.kind] = self.payload.clone();
        v
    }
}

#[derive(Debug, Default)]
pub struct ChatState {
    pub next_message_id: i64,
    pub messages: BTreeMap<i64, Value>,
    /// The user has written to the bot (a bot can't initiate a conversation).
    pub started: bool,
    pub blocked: bool,
    pub bucket: Option<TokenBucket>,
    /// Invoice payloads by message id (the Message object does not carry them).
    pub invoices: HashMap<i64, InvoiceSpec>,
}

impl ChatState {
    pub fn next_id(&mut self) -> i64 {
        self.next_message_id += 1;
        self.next_message_id
    }

    pub fn store(&mut self, message_id: i64, message: Value) {
        self.messages.insert(message_id, message);
        while self.messages.len() > MESSAGES_KEPT_PER_CHAT {
            self.messages.pop_first();
        }
    }
}

#[derive(Debug)]
pub struct BotState {
    pub id: i64,
    pub token: String,
    pub username: String,
    pub first_name: String,
    pub chats: HashMap<i64, ChatState>,
    pub updates: VecDeque<PendingUpdate>,
    pub next_update_id: i64,
    pub allowed_updates: Option<Vec<String>>,
    pub webhook: Option<Webhook>,
    pub webhook_generation: u64,
    pub poll_generation: u64,
    /// Open callback queries: id → (the user who pressed, answered yet).
    pub callback_queries: HashMap<String, (i64, bool)>,
    pub pre_checkouts: HashMap<String, PreCheckout>,
    pub invoice_links: HashMap<String, InvoiceSpec>,
    pub commands: BTreeMap<String, Value>,
    /// `setMyDescription` / `setMyShortDescription`: (kind, language code or "") → text.
    pub descriptions: BTreeMap<(String, String), String>,
    pub bucket: Option<TokenBucket>,
    /// The bucket of paid-broadcast sends (`allow_paid_broadcast`).
    pub paid_bucket: Option<TokenBucket>,
    /// Sends made with `allow_paid_broadcast` (0.1 Star each, from the balance).
    pub paid_broadcast_messages: u64,
    pub star_transactions: Vec<Value>,
    /// Whole Stars; a paid broadcast takes one Star per ten messages, ahead
    /// (`paid_credit_tenths`: tenths of a Star taken and not yet used).
    pub star_balance: i64,
    pub paid_credit_tenths: i64,
    /// Wakes long polls and the webhook worker when an update arrives.
    pub notify: Arc<Notify>,
}

impl BotState {
    pub fn user_json(&self) -> Value {
        json!({"id": self.id, "is_bot": true, "first_name": self.first_name, "username": self.username})
    }

    pub fn get_me_json(&self) -> Value {
        json!({
            "id": self.id, "is_bot": true, "first_name": self.first_name, "username": self.username,
            "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false,
        })
    }

    /// Telegram's default when allowed_updates is unset or empty: everything but these three.
    fn wants(&self, kind: &str) -> bool {
        match &self.allowed_updates {
            Some(list) if !list.is_empty() => list.iter().any(|k| k == kind),
            _ => !matches!(kind, "chat_member" | "message_reaction" | "message_reaction_count"),
        }
    }
}

/// One entry of what a simulated user received, in order.
#[derive(Debug, Clone, Serialize)]
pub struct InboxEntry {
    pub seq: u64,
    pub bot: String,
    pub bot_id: i64,
    /// When it reached the user (ms since the Unix epoch): latency measurements.
    pub at_ms: i64,
    #[serde(flatten)]
    pub event: InboxEvent,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum InboxEvent {
    Message { message: Value },
    Edited { message: Value },
    Deleted { message_id: i64 },
    CallbackAnswer { callback_query_id: String, text: Option<String>, show_alert: bool, url: Option<String> },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// First redelivery delay after a failed webhook call; doubles up to `webhook_retry_max_ms`.
    pub webhook_retry_ms: u64,
    pub webhook_retry_max_ms: u64,
    /// How long the fake waits for the bot's webhook to answer.
    pub webhook_timeout_ms: u64,
    /// Telegram's deadline for answerPreCheckoutQuery.
    pub pre_checkout_deadline_ms: u64,
    /// Reject setWebhook URLs that are not https (Telegram does); off so tests can use http.
    pub require_https_webhook: bool,
    /// Telegram keeps an undelivered update at most 24 hours, then drops it (polling and
    /// webhook alike).
    pub update_ttl_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            webhook_retry_ms: 200,
            webhook_retry_max_ms: 5_000,
            webhook_timeout_ms: 30_000,
            pre_checkout_deadline_ms: 10_000,
            require_https_webhook: false,
            update_ttl_ms: 24 * 60 * 60 * 1000,
        }
    }
}

#[derive(Debug)]
pub struct World {
    pub bots: HashMap<i64, BotState>,
    pub tokens: HashMap<String, i64>,
    pub users: HashMap<i64, SimUser>,
    pub channels: HashMap<i64, Channel>,
    pub files: HashMap<String, FileRec>,
    /// (owner bot, file_path) → file_id, for downloads.
    pub file_paths: HashMap<(i64, String), String>,
    /// Photo file_id → the file_id of its small size, so a photo resent by id keeps its sizes.
    pub photo_thumbs: HashMap<String, String>,
    pub charges: HashMap<String, Charge>,
    /// Stars subscriptions by their first charge id.
    pub subscriptions: HashMap<String, Subscription>,
    pub inbox: HashMap<i64, Vec<InboxEntry>>,
    pub inbox_seq: u64,
    pub limits: Limits,
    pub settings: Settings,
    pub faults: Vec<Fault>,
    pub stats: Stats,
    next_bot_id: i64,
    next_user_id: i64,
    next_channel_id: i64,
    next_seq: u64,
    /// Wakes sim readers waiting for a user's inbox to grow.
    pub inbox_notify: Arc<Notify>,
}

impl Default for World {
    fn default() -> Self {
        Self {
            bots: HashMap::new(),
            tokens: HashMap::new(),
            users: HashMap::new(),
            channels: HashMap::new(),
            files: HashMap::new(),
            file_paths: HashMap::new(),
            photo_thumbs: HashMap::new(),
            charges: HashMap::new(),
            subscriptions: HashMap::new(),
            inbox: HashMap::new(),
            inbox_seq: 0,
            limits: Limits::default(),
            settings: Settings::default(),
            faults: Vec::new(),
            stats: Stats::default(),
            next_bot_id: 7_000_000_000,
            next_user_id: 100_000_000,
            next_channel_id: 1_000_000_000_000,
            next_seq: 0,
            inbox_notify: Arc::new(Notify::new()),
        }
    }
}

/// A sim-side error: the caller of /sim asked for something impossible.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SimError {
    #[error("unknown bot {0:?}")]
    UnknownBot(String),
    #[error("unknown user {0}")]
    UnknownUser(i64),
    #[error("unknown channel {0:?}")]
    UnknownChannel(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
}

impl World {
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// An opaque, unguessable-looking identifier (file ids, query ids, charge ids).
    pub fn opaque_id(&mut self, prefix: &str) -> String {
        use base64::Engine as _;
        let seq = self.seq();
        let noise: u64 = rand::random();
        let mut raw = Vec::with_capacity(16);
        raw.extend_from_slice(&seq.to_be_bytes());
        raw.extend_from_slice(&noise.to_be_bytes());
        format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
    }

    /// Channel ids are negative, as on Telegram (-100…).
    pub fn new_channel_id(&mut self) -> i64 {
        self.next_channel_id += 1;
        -self.next_channel_id
    }

    // ---- bots -------------------------------------------------------------------------------

    pub fn register_bot(&mut self, username: &str, first_name: Option<&str>, token: Option<&str>) -> Result<&BotState, SimError> {
        let username = username.trim_start_matches('@').to_string();
        if username.is_empty() || !username.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(SimError::Invalid(format!("bot username {username:?} must be letters, digits or _")));
        }
        if self.bots.values().any(|b| b.username.eq_ignore_ascii_case(&username)) {
            return Err(SimError::Invalid(format!("bot @{username} already exists")));
        }
        let (id, token) = match token {
            Some(t) => {
                let id = t
                    .split_once(':')
                    .and_then(|(id, secret)| (!secret.is_empty()).then_some(id))
                    .and_then(|id| id.parse::<i64>().ok())
                    .ok_or_else(|| SimError::Invalid("a bot token looks like <bot id>:<secret>".into()))?;
                if self.bots.contains_key(&id) {
                    return Err(SimError::Invalid(format!("bot id {id} already exists")));
                }
                (id, t.to_string())
            }
            None => {
                self.next_bot_id += 1;
                while self.bots.contains_key(&self.next_bot_id) {
                    self.next_bot_id += 1;
                }
                let id = self.next_bot_id;
                let secret = self.opaque_id("AA");
                (id, format!("{id}:{secret}"))
            }
        };
        self.tokens.insert(token.clone(), id);
        self.bots.insert(
            id,
            BotState {
                id,
                token,
                first_name: first_name.unwrap_or(&username).to_string(),
                username,
                chats: HashMap::new(),
                updates: VecDeque::new(),
                next_update_id: 100_000 + (rand::random::<u32>() % 100_000) as i64,
                allowed_updates: None,
                webhook: None,
                webhook_generation: 0,
                poll_generation: 0,
                callback_queries: HashMap::new(),
                pre_checkouts: HashMap::new(),
                invoice_links: HashMap::new(),
                commands: BTreeMap::new(),
                descriptions: BTreeMap::new(),
                bucket: None,
                paid_bucket: None,
                paid_broadcast_messages: 0,
                star_transactions: Vec::new(),
                star_balance: 0,
                paid_credit_tenths: 0,
                notify: Arc::new(Notify::new()),
            },
        );
        self.bots.get(&id).ok_or_else(|| SimError::UnknownBot(id.to_string()))
    }

    pub fn bot_id_by_token(&self, token: &str) -> Option<i64> {
        self.tokens.get(token).copied()
    }

    /// A bot named by /sim: username (with or without @), numeric id, or token.
    pub fn find_bot(&self, name: &str) -> Result<i64, SimError> {
        let name = name.trim();
        if let Some(id) = self.tokens.get(name) {
            return Ok(*id);
        }
        if let Ok(id) = name.parse::<i64>()
            && self.bots.contains_key(&id)
        {
            return Ok(id);
        }
        let uname = name.trim_start_matches('@');
        self.bots
            .values()
            .find(|b| b.username.eq_ignore_ascii_case(uname))
            .map(|b| b.id)
            .ok_or_else(|| SimError::UnknownBot(name.to_string()))
    }

    pub fn bot(&self, id: i64) -> ApiResult<&BotState> {
        self.bots.get(&id).ok_or_else(ApiError::unauthorized)
    }

    pub fn bot_mut(&mut self, id: i64) -> ApiResult<&mut BotState> {
        self.bots.get_mut(&id).ok_or_else(ApiError::unauthorized)
    }

    // ---- users ------------------------------------------------------------------------------

    pub fn add_user(&mut self, mut user: SimUser) -> Result<SimUser, SimError> {
        if user.first_name.trim().is_empty() {
            return Err(SimError::Invalid("a user needs a first_name".into()));
        }
        if user.id == 0 {
            self.next_user_id += 1;
            while self.users.contains_key(&self.next_user_id) {
                self.next_user_id += 1;
            }
            user.id = self.next_user_id;
        } else if user.id < 0 {
            return Err(SimError::Invalid("user ids are positive".into()));
        } else if self.users.contains_key(&user.id) {
            return Err(SimError::Invalid(format!("user {} already exists", user.id)));
        }
        self.users.insert(user.id, user.clone());
        Ok(user)
    }

    pub fn user(&self, id: i64) -> Result<&SimUser, SimError> {
        self.users.get(&id).ok_or(SimError::UnknownUser(id))
    }

    // ---- chats as a bot sees them -----------------------------------------------------------

    /// The private chat a bot may write to, or Telegram's error for why not.
    pub fn writable_chat(&mut self, bot_id: i64, chat: &ChatRef) -> ApiResult<i64> {
        let chat_id = match chat {
            ChatRef::Id(id) => *id,
            ChatRef::Username(name) => self
                .users
                .values()
                .find(|u| u.username.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                .map(|u| u.id)
                .ok_or_else(|| ApiError::bad_request("chat not found"))?,
        };
        if !self.users.contains_key(&chat_id) {
            return Err(ApiError::bad_request("chat not found"));
        }
        let bot = self.bot_mut(bot_id)?;
        match bot.chats.get(&chat_id) {
            None => Err(ApiError::forbidden("bot can't initiate conversation with a user")),
            Some(c) if c.blocked => Err(ApiError::forbidden("bot was blocked by the user")),
            Some(c) if !c.started => Err(ApiError::forbidden("bot can't initiate conversation with a user")),
            Some(_) => Ok(chat_id),
        }
    }

    /// A chat the bot can read (for copy/forward sources and reply targets).
    pub fn readable_chat(&self, bot_id: i64, chat: &ChatRef) -> ApiResult<i64> {
        let id = match chat {
            ChatRef::Id(id) => *id,
            ChatRef::Username(name) => self
                .users
                .values()
                .find(|u| u.username.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                .map(|u| u.id)
                .ok_or_else(|| ApiError::bad_request("chat not found"))?,
        };
        let bot = self.bot(bot_id)?;
        if bot.chats.contains_key(&id) { Ok(id) } else { Err(ApiError::bad_request("chat not found")) }
    }

    pub fn chat_mut(&mut self, bot_id: i64, chat_id: i64) -> ApiResult<&mut ChatState> {
        self.bot_mut(bot_id)?.chats.get_mut(&chat_id).ok_or_else(|| ApiError::bad_request("chat not found"))
    }

    pub fn message(&self, bot_id: i64, chat_id: i64, message_id: i64) -> Option<&Value> {
        self.bots.get(&bot_id)?.chats.get(&chat_id)?.messages.get(&message_id)
    }

    // ---- flood control and faults -----------------------------------------------------------

    /// Charges one outgoing message against the bot's and the chat's budgets, or answers 429.
    pub fn charge_send(&mut self, bot_id: i64, chat_id: i64) -> ApiResult<()> {
        self.charge_sends(bot_id, chat_id, 1)
    }

    /// Charges `n` messages at once: all of them fit the budgets, or none is charged (so a
    /// call that sends several messages either happens whole or answers 429).
    pub fn charge_sends(&mut self, bot_id: i64, chat_id: i64, n: u32) -> ApiResult<()> {
        self.charge_sends_as(bot_id, chat_id, n, false)
    }

    /// [`World::charge_sends`], as a paid broadcast when `paid` (`allow_paid_broadcast`: the
    /// bot's paid budget instead of its free one; counted, 0.1 Star each from the bot's
    /// balance — without enough Stars the call fails, 400 `BALANCE_TOO_LOW`, nothing sent).
    pub fn charge_sends_as(&mut self, bot_id: i64, chat_id: i64, n: u32, paid: bool) -> ApiResult<()> {
        if paid {
            let bot = self.bot(bot_id)?;
            if bot.paid_credit_tenths + bot.star_balance.max(0) * 10 < i64::from(n) {
                return Err(ApiError::bad_request("BALANCE_TOO_LOW"));
            }
        }
        self.charge_limits(bot_id, chat_id, n, paid)?;
        if paid {
            let bot = self.bot_mut(bot_id)?;
            bot.paid_broadcast_messages += u64::from(n);
            while bot.paid_credit_tenths < i64::from(n) {
                bot.star_balance -= 1;
                bot.paid_credit_tenths += 10;
            }
            bot.paid_credit_tenths -= i64::from(n);
        }
        Ok(())
    }

    /// The flood limits' part of [`World::charge_sends_as`].
    fn charge_limits(&mut self, bot_id: i64, chat_id: i64, n: u32, paid: bool) -> ApiResult<()> {
        if !self.limits.enabled || n == 0 {
            return Ok(());
        }
        let limits = self.limits.clone();
        let now = Instant::now();
        let bot = self.bot_mut(bot_id)?;
        let (rate, burst) =
            if paid { (limits.paid_per_bot_per_sec, limits.paid_per_bot_per_sec) } else { (limits.per_bot_per_sec, limits.per_bot_burst) };
        let slot = if paid { &mut bot.paid_bucket } else { &mut bot.bucket };
        let bot_bucket = slot.get_or_insert_with(|| TokenBucket::full(burst));
        let bot_wait = bot_bucket.wait_for(now, f64::from(n), rate, burst);
        let chat = bot.chats.get_mut(&chat_id).ok_or_else(|| ApiError::bad_request("chat not found"))?;
        let chat_bucket = chat.bucket.get_or_insert_with(|| TokenBucket::full(limits.per_chat_burst));
        let chat_wait = chat_bucket.wait_for(now, f64::from(n), limits.per_chat_per_sec, limits.per_chat_burst);
        let wait = bot_wait.max(chat_wait);
        if wait > 0.0 {
            let name = bot.username.clone();
            self.stats.too_many_requests += 1;
            *self.stats.too_many_requests_by_bot.entry(name).or_default() += 1;
            return Err(ApiError::too_many_requests(wait.ceil().max(1.0) as u64));
        }
        chat_bucket.take(f64::from(n));
        if let Some(b) = if paid { bot.paid_bucket.as_mut() } else { bot.bucket.as_mut() } {
            b.take(f64::from(n));
        }
        Ok(())
    }

    /// The fault that hits this call, if any (its count is consumed).
    pub fn take_fault(&mut self, bot_id: i64, method: &str) -> Option<FaultKind> {
        let idx = self
            .faults
            .iter()
            .position(|f| f.bot_id.is_none_or(|b| b == bot_id) && f.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method)))?;
        let fault = &mut self.faults[idx];
        let kind = fault.kind.clone();
        if let Some(left) = fault.remaining.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.faults.remove(idx);
            }
        }
        self.stats.faults_injected += 1;
        Some(kind)
    }

    pub fn add_fault(&mut self, spec: FaultSpec) -> Result<u64, SimError> {
        let bot_id = spec.bot.as_deref().map(|b| self.find_bot(b)).transpose()?;
        if let FaultKind::ServerError { code } = spec.kind
            && !(500..600).contains(&code)
        {
            return Err(SimError::Invalid(format!("server_error code must be 5xx, got {code}")));
        }
        if let Some(m) = &spec.method
            && super::methods::canonical(m).is_none()
        {
            return Err(SimError::Invalid(format!("{m:?} is not a method the fake serves")));
        }
        if spec.count == Some(0) {
            return Err(SimError::Invalid("count must be at least 1 (omit it for 'until cleared')".into()));
        }
        let id = self.seq();
        self.faults.push(Fault { id, method: spec.method, bot_id, kind: spec.kind, remaining: spec.count });
        Ok(id)
    }

    pub fn count_call(&mut self, bot_id: i64, method: &str) {
        *self.stats.calls.entry(method.to_string()).or_default() += 1;
        if let Some(bot) = self.bots.get(&bot_id) {
            let per_bot = self.stats.calls_by_bot.entry(bot.username.clone()).or_default();
            *per_bot.entry(method.to_string()).or_default() += 1;
        }
    }

    // ---- updates ----------------------------------------------------------------------------

    /// Queues an update for the bot unless its allowed_updates exclude the kind (as on
    /// Telegram, the filter applies when the update is created). Returns the update_id.
    pub fn push_update(&mut self, bot_id: i64, kind: &'static str, payload: Value, chat_key: i64) -> Option<i64> {
        let bot = self.bots.get_mut(&bot_id)?;
        if !bot.wants(kind) {
            return None;
        }
        bot.next_update_id += 1;
        let id = bot.next_update_id;
        bot.updates.push_back(PendingUpdate {
            id,
            kind,
            payload,
            chat_key,
            attempts: 0,
            not_before: None,
            in_flight: false,
            created: Instant::now(),
        });
        bot.notify.notify_waiters();
        Some(id)
    }

    /// Drops updates older than Telegram keeps them (24 h by default) and not in flight.
    pub fn expire_updates(&mut self, bot_id: i64) {
        let ttl = std::time::Duration::from_millis(self.settings.update_ttl_ms);
        if let Some(bot) = self.bots.get_mut(&bot_id) {
            let now = Instant::now();
            bot.updates.retain(|u| u.in_flight || now.saturating_duration_since(u.created) < ttl);
        }
    }

    // ---- what users receive -----------------------------------------------------------------

    pub fn deliver_to_user(&mut self, bot_id: i64, user_id: i64, event: InboxEvent) {
        let bot = match self.bots.get(&bot_id) {
            Some(b) => b.username.clone(),
            None => return,
        };
        self.inbox_seq += 1;
        let at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let entry = InboxEntry { seq: self.inbox_seq, bot, bot_id, at_ms, event };
        let inbox = self.inbox.entry(user_id).or_default();
        inbox.push(entry);
        if inbox.len() > INBOX_KEPT_PER_USER {
            inbox.drain(..inbox.len() - INBOX_KEPT_PER_USER);
        }
        self.inbox_notify.notify_waiters();
    }

    // ---- files ------------------------------------------------------------------------------

    pub fn new_file(
        &mut self,
        bot_id: i64,
        kind: MediaKind,
        data: Option<Bytes>,
        size: u64,
        mime_type: Option<String>,
        file_name: Option<String>,
    ) -> FileRec {
        use base64::Engine as _;
        let seq = self.seq();
        let noise: u64 = rand::random();
        // Shaped like Telegram's: a type code and the owning bot inside an opaque string.
        let mut raw = vec![kind.type_code(), 0, 0, 0];
        raw.extend_from_slice(&bot_id.to_be_bytes());
        raw.extend_from_slice(&seq.to_be_bytes());
        raw.extend_from_slice(&noise.to_be_bytes());
        let file_id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
        let unique_id = format!("AQAD{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(seq.to_be_bytes()));
        let path = format!("{}/file_{seq}.{}", kind.dir(), kind.ext());
        let rec = FileRec { owner_bot: bot_id, file_id: file_id.clone(), unique_id, kind, size, data, path, mime_type, file_name };
        self.file_paths.insert((bot_id, rec.path.clone()), file_id.clone());
        self.files.insert(file_id, rec.clone());
        rec
    }

    /// The media object a Message carries for a file sent as `kind` (a voice file sent as a
    /// document is shaped like a document).
    pub fn media_json(&mut self, file: &FileRec, kind: MediaKind, meta: &Value) -> Value {
        let n = |k: &str, d: i64| meta.get(k).and_then(Value::as_i64).unwrap_or(d);
        let base = json!({"file_id": file.file_id, "file_unique_id": file.unique_id, "file_size": file.size});
        let mut v = base.clone();
        match kind {
            MediaKind::Photo => {
                // Telegram returns several sizes, smallest first; each is its own file.
                let thumb_size = file.size.min(1_200);
                let known = self.photo_thumbs.get(&file.file_id).and_then(|id| self.files.get(id)).cloned();
                let thumb = match known {
                    Some(t) => t,
                    None => {
                        let t = self.new_file(file.owner_bot, MediaKind::Photo, None, thumb_size, None, None);
                        self.photo_thumbs.insert(file.file_id.clone(), t.file_id.clone());
                        t
                    }
                };
                let mut small = json!({"file_id": thumb.file_id, "file_unique_id": thumb.unique_id, "file_size": thumb.size, "width": 90, "height": 90});
                if thumb.size == 0 {
                    small.as_object_mut().map(|o| o.remove("file_size"));
                }
                v["width"] = json!(n("width", 1280));
                v["height"] = json!(n("height", 960));
                return json!([small, v]);
            }
            MediaKind::Video | MediaKind::Animation => {
                v["width"] = json!(n("width", 640));
                v["height"] = json!(n("height", 360));
                v["duration"] = json!(n("duration", 5));
            }
            MediaKind::VideoNote => {
                v["length"] = json!(n("length", 240));
                v["duration"] = json!(n("duration", 5));
            }
            MediaKind::Voice | MediaKind::Audio => {
                v["duration"] = json!(n("duration", 3));
            }
            MediaKind::Sticker => {
                v["type"] = json!("regular");
                v["width"] = json!(n("width", 512));
                v["height"] = json!(n("height", 512));
                v["is_animated"] = json!(false);
                v["is_video"] = json!(false);
            }
            MediaKind::Document => {}
        }
        if let Some(m) = &file.mime_type
            && !matches!(kind, MediaKind::Sticker)
        {
            v["mime_type"] = json!(m);
        }
        if let Some(f) = &file.file_name
            && matches!(kind, MediaKind::Document | MediaKind::Audio | MediaKind::Video | MediaKind::Animation)
        {
            v["file_name"] = json!(f);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world_with_chat() -> (World, i64, i64) {
        let mut w = World::default();
        let bot = w.register_bot("alpha_bot", None, None).map(|b| b.id).unwrap();
        let user = w
            .add_user(SimUser { id: 0, first_name: "Ann".into(), last_name: None, username: None, language_code: None, is_premium: false })
            .unwrap();
        w.bots.get_mut(&bot).unwrap().chats.insert(user.id, ChatState { started: true, ..Default::default() });
        (w, bot, user.id)
    }

    #[test]
    fn per_chat_budget_allows_a_small_burst_then_answers_429() {
        let (mut w, bot, user) = world_with_chat();
        for _ in 0..3 {
            assert!(w.charge_send(bot, user).is_ok());
        }
        let err = w.charge_send(bot, user).unwrap_err();
        assert_eq!(err.code, 429);
        assert_eq!(err.retry_after, Some(1));
        assert_eq!(w.stats.too_many_requests, 1);
    }

    #[test]
    fn switched_off_limits_never_answer_429() {
        let (mut w, bot, user) = world_with_chat();
        w.limits.enabled = false;
        for _ in 0..1_000 {
            assert!(w.charge_send(bot, user).is_ok());
        }
    }

    #[test]
    fn counted_fault_expires_after_its_count() {
        let (mut w, bot, _) = world_with_chat();
        w.add_fault(FaultSpec {
            method: Some("sendmessage".into()),
            bot: None,
            kind: FaultKind::ServerError { code: 502 },
            count: Some(2),
        })
        .unwrap();
        assert_eq!(w.take_fault(bot, "getMe"), None);
        assert_eq!(w.take_fault(bot, "sendMessage"), Some(FaultKind::ServerError { code: 502 }));
        assert!(w.take_fault(bot, "sendMessage").is_some());
        assert_eq!(w.take_fault(bot, "sendMessage"), None);
    }

    #[test]
    fn updates_excluded_by_allowed_updates_are_never_queued() {
        let (mut w, bot, user) = world_with_chat();
        w.bots.get_mut(&bot).unwrap().allowed_updates = Some(vec!["callback_query".into()]);
        assert_eq!(w.push_update(bot, "message", json!({}), user), None);
        assert!(w.push_update(bot, "callback_query", json!({}), user).is_some());
        assert_eq!(w.bots[&bot].updates.len(), 1);
    }

    #[test]
    fn default_allowed_updates_exclude_chat_member() {
        let (mut w, bot, user) = world_with_chat();
        assert_eq!(w.push_update(bot, "chat_member", json!({}), user), None);
        assert!(w.push_update(bot, "my_chat_member", json!({}), user).is_some());
    }

    #[test]
    fn chat_keeps_a_bounded_history() {
        let mut chat = ChatState::default();
        for _ in 0..(MESSAGES_KEPT_PER_CHAT + 10) {
            let id = chat.next_id();
            chat.store(id, json!({}));
        }
        assert_eq!(chat.messages.len(), MESSAGES_KEPT_PER_CHAT);
        assert_eq!(chat.messages.keys().next().copied(), Some(11));
    }
}
