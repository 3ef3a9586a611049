//! Playing the users: the `/sim` control API and the same operations as Rust calls.
//!
//! Everything a test needs to do as a Telegram user (write to a bot, press a button, block a
//! bot, join a channel, pay an invoice) and to the platform (switch limits and faults, read
//! counters). Documented with examples in tests/README.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use super::html::utf16_len;
use super::methods;
use super::server::Shared;
use super::state::{
    Channel, ChatState, FaultSpec, InboxEntry, InvoiceSpec, Limits, MediaKind, PreCheckout, Settings, SimError, SimUser, Stats, World,
    unix_now,
};

/// A registered bot as the sim reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BotInfo {
    pub id: i64,
    pub token: String,
    pub username: String,
}

/// Media a simulated user sends. Either real bytes (`content_base64`) or only a declared
/// `size` (the fake synthesizes the bytes on download), so tests can send a 25 MB video
/// without moving 25 MB.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MediaSpec {
    pub content_base64: Option<String>,
    pub size: Option<u64>,
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
    pub caption: Option<String>,
    pub duration: Option<i64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
}

/// How a sim payment ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PayOutcome {
    Paid {
        telegram_payment_charge_id: String,
        message_id: i64,
        amount: i64,
    },
    Declined {
        error_message: String,
    },
    /// The bot did not answer the pre_checkout_query within Telegram's deadline.
    TimedOut,
}

/// Which invoice a simulated user pays: an invoice message in their chat, or a link from
/// createInvoiceLink.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InvoiceRef {
    Message { message_id: i64 },
    Link { invoice_link: String },
}

/// The in-process handle to the simulation; `/sim` HTTP routes call exactly these.
#[derive(Debug, Clone)]
pub struct Sim {
    shared: Arc<Shared>,
}

impl Sim {
    /// A handle over shared state, e.g. the one an embedding server mounted with `router`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.shared.world()
    }

    pub fn register_bot(&self, username: &str) -> Result<BotInfo, SimError> {
        self.register_bot_with(username, None, None)
    }

    pub fn register_bot_with(&self, username: &str, first_name: Option<&str>, token: Option<&str>) -> Result<BotInfo, SimError> {
        let mut world = self.world();
        let bot = world.register_bot(username, first_name, token)?;
        Ok(BotInfo { id: bot.id, token: bot.token.clone(), username: bot.username.clone() })
    }

    /// What @BotFather's /revoke does: the bot gets a new token, the old one answers 401.
    pub fn rotate_token(&self, bot: &str) -> Result<BotInfo, SimError> {
        let mut world = self.world();
        let id = world.find_bot(bot)?;
        let secret = world.opaque_id("AA");
        let new_token = format!("{id}:{secret}");
        let b = world.bots.get_mut(&id).ok_or_else(|| SimError::UnknownBot(bot.into()))?;
        let old = std::mem::replace(&mut b.token, new_token.clone());
        let username = b.username.clone();
        world.tokens.remove(&old);
        world.tokens.insert(new_token.clone(), id);
        Ok(BotInfo { id, token: new_token, username })
    }

    pub fn bots(&self) -> Vec<BotInfo> {
        let world = self.world();
        let mut list: Vec<_> =
            world.bots.values().map(|b| BotInfo { id: b.id, token: b.token.clone(), username: b.username.clone() }).collect();
        list.sort_by_key(|b| b.id);
        list
    }

    /// Adds a user; `id` 0 picks a fresh one.
    pub fn add_user(&self, user: SimUser) -> Result<SimUser, SimError> {
        self.world().add_user(user)
    }

    /// Shorthand: a user with a first name and a language.
    pub fn user(&self, first_name: &str, language_code: Option<&str>) -> Result<SimUser, SimError> {
        self.add_user(SimUser {
            id: 0,
            first_name: first_name.to_string(),
            last_name: None,
            username: None,
            language_code: language_code.map(String::from),
            is_premium: false,
        })
    }

    /// The user writes text to the bot (a leading /command gets its bot_command entity).
    /// Returns the Message the bot receives.
    pub fn send_text(&self, bot: &str, user: i64, text: &str, reply_to: Option<i64>) -> Result<Value, SimError> {
        if text.is_empty() {
            return Err(SimError::Invalid("text must be non-empty".into()));
        }
        let mut content = Map::new();
        content.insert("text".into(), json!(text));
        if text.starts_with('/') {
            let command = text.split_whitespace().next().unwrap_or(text);
            content.insert("entities".into(), json!([{"type": "bot_command", "offset": 0, "length": utf16_len(command)}]));
        }
        let mut world = self.world();
        let bot_id = world.find_bot(bot)?;
        user_message(&mut world, bot_id, user, content, reply_to)
    }

    /// The user sends media to the bot. The file becomes the bot's (its file_id works for
    /// that bot only, as on Telegram).
    pub fn send_media(&self, bot: &str, user: i64, kind: MediaKind, spec: MediaSpec, reply_to: Option<i64>) -> Result<Value, SimError> {
        let data = match &spec.content_base64 {
            Some(b64) => Some(Bytes::from(
                base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| SimError::Invalid(format!("content_base64: {e}")))?,
            )),
            None => None,
        };
        let size = data.as_ref().map(|d| d.len() as u64).or(spec.size).unwrap_or(2_048);
        let mut world = self.world();
        let bot_id = world.find_bot(bot)?;
        world.user(user)?;
        let file = world.new_file(bot_id, kind, data, size, spec.mime_type.clone(), spec.file_name.clone());
        let meta = json!({"duration": spec.duration, "width": spec.width, "height": spec.height});
        let mut content = Map::new();
        content.insert(kind.field().into(), world.media_json(&file, kind, &meta));
        if let Some(c) = spec.caption.filter(|c| !c.is_empty() && kind.has_caption()) {
            content.insert("caption".into(), json!(c));
        }
        user_message(&mut world, bot_id, user, content, reply_to)
    }

    /// The user presses an inline button of a bot message. The button must exist, as in a
    /// real client. Returns the callback_query id.
    pub fn press_button(&self, bot: &str, user: i64, message_id: i64, callback_data: &str) -> Result<String, SimError> {
        let mut world = self.world();
        let bot_id = world.find_bot(bot)?;
        let from = world.user(user)?.to_user_json();
        let message = world
            .message(bot_id, user, message_id)
            .cloned()
            .ok_or_else(|| SimError::NotFound(format!("message {message_id} not in the chat")))?;
        let has_button = message["reply_markup"]["inline_keyboard"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .any(|b| b["callback_data"].as_str() == Some(callback_data));
        if !has_button {
            return Err(SimError::Invalid(format!("message {message_id} has no button with callback_data {callback_data:?}")));
        }
        let id = format!("{}", rand::random::<u64>() >> 1);
        world.bot_mut(bot_id).map_err(|_| SimError::UnknownBot(bot.into()))?.callback_queries.insert(id.clone(), (user, false));
        let chat_instance = format!("{}", (bot_id ^ user.rotate_left(17)).unsigned_abs());
        let query = json!({"id": id, "from": from, "message": message, "chat_instance": chat_instance, "data": callback_data});
        world.push_update(bot_id, "callback_query", query, user);
        Ok(id)
    }

    /// The user has a started chat with the bot (as after /start) without sending it anything:
    /// the bot may write to them. For seeding many members at once (broadcast tests, benches).
    pub fn start_chat(&self, bot: &str, user: i64) -> Result<(), SimError> {
        let mut world = self.world();
        let bot_id = world.find_bot(bot)?;
        world.user(user)?;
        ensure_chat(&mut world, bot_id, user);
        Ok(())
    }

    /// Per user: how many messages the bot sent them (`sendMessage` and the like, in their
    /// inbox) whose text contains `needle`. For counting a broadcast's copies at scale.
    pub fn message_counts(&self, bot: &str, needle: &str) -> Result<std::collections::HashMap<i64, u64>, SimError> {
        let world = self.world();
        let bot_id = world.find_bot(bot)?;
        let mut counts = std::collections::HashMap::new();
        for (user, entries) in &world.inbox {
            for e in entries.iter().filter(|e| e.bot_id == bot_id) {
                if let super::state::InboxEvent::Message { message } = &e.event
                    && message["text"].as_str().is_some_and(|t| t.contains(needle))
                {
                    *counts.entry(*user).or_insert(0) += 1;
                }
            }
        }
        Ok(counts)
    }

    /// How many messages the bot sent with `allow_paid_broadcast` (0.1 Star each).
    pub fn paid_broadcast_messages(&self, bot: &str) -> Result<u64, SimError> {
        let world = self.world();
        let bot_id = world.find_bot(bot)?;
        Ok(world.bots.get(&bot_id).map_or(0, |b| b.paid_broadcast_messages))
    }

    /// Sets the bot's Stars balance (whole Stars), as if users had paid it that much.
    pub fn set_star_balance(&self, bot: &str, stars: i64) -> Result<(), SimError> {
        let mut world = self.world();
        let bot_id = world.find_bot(bot)?;
        let b = world.bot_mut(bot_id).map_err(|e| SimError::Invalid(e.description))?;
        b.star_balance = stars;
        b.paid_credit_tenths = 0;
        Ok(())
    }

    /// The bot's Stars balance in tenths of a Star (a paid broadcast's message costs one).
    pub fn star_balance_tenths(&self, bot: &str) -> Result<i64, SimError> {
        let world = self.world();
        let bot_id = world.find_bot(bot)?;
        Ok(world.bots.get(&bot_id).map_or(0, |b| b.star_balance * 10 + b.paid_credit_tenths))
    }

    /// The user blocks the bot: the bot gets my_chat_member (kicked) and 403 on every send.
    pub fn block(&self, bot: &str, user: i64) -> Result<(), SimError> {
        let mut world = self.world();
        let bot_id = world.find_bot(bot)?;
        set_blocked(&mut world, bot_id, user, true)
    }

    pub fn unblock(&self, bot: &str, user: i64) -> Result<(), SimError> {
        let mut world = self.world();
        let bot_id = world.find_bot(bot)?;
        set_blocked(&mut world, bot_id, user, false)
    }

    /// A channel for required-subscription checks. `admin_bots`: bots that may read its
    /// members (None: every bot).
    pub fn add_channel(&self, username: &str, title: &str, admin_bots: Option<Vec<String>>) -> Result<Value, SimError> {
        let mut world = self.world();
        let username = username.trim_start_matches('@').to_string();
        if world.channels.values().any(|c| c.username.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(&username))) {
            return Err(SimError::Invalid(format!("channel @{username} already exists")));
        }
        let admins = match admin_bots {
            Some(list) => Some(list.iter().map(|b| world.find_bot(b)).collect::<Result<_, _>>()?),
            None => None,
        };
        let id = world.new_channel_id();
        let channel = Channel { id, title: title.to_string(), username: Some(username), members: Default::default(), admin_bots: admins };
        let out = json!({"id": id, "title": channel.title, "username": channel.username});
        world.channels.insert(id, channel);
        Ok(out)
    }

    /// Sets a user's status in a channel: member, administrator, creator, restricted, left, kicked.
    pub fn set_membership(&self, channel: &str, user: i64, status: &str) -> Result<(), SimError> {
        const STATUSES: &[&str] = &["member", "administrator", "creator", "restricted", "left", "kicked"];
        if !STATUSES.contains(&status) {
            return Err(SimError::Invalid(format!("status must be one of {STATUSES:?}")));
        }
        let mut world = self.world();
        world.user(user)?;
        let name = channel.trim_start_matches('@');
        let chan = world
            .channels
            .values_mut()
            .find(|c| c.username.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(name)) || c.id.to_string() == name)
            .ok_or_else(|| SimError::UnknownChannel(channel.into()))?;
        chan.members.insert(user, status.to_string());
        Ok(())
    }

    /// The user pays an invoice: the bot gets a pre_checkout_query and has Telegram's
    /// deadline to approve it; on approval it gets the successful_payment message.
    pub async fn pay(&self, bot: &str, user: i64, invoice: InvoiceRef) -> Result<PayOutcome, SimError> {
        let (rx, deadline, bot_id, spec, query_id) = {
            let mut world = self.world();
            let bot_id = world.find_bot(bot)?;
            let from = world.user(user)?.to_user_json();
            let spec = find_invoice(&world, bot_id, user, &invoice)?;
            ensure_chat(&mut world, bot_id, user);
            let query_id = format!("{}", rand::random::<u64>() >> 1);
            let (tx, rx) = oneshot::channel();
            let deadline = Instant::now() + Duration::from_millis(world.settings.pre_checkout_deadline_ms);
            let b = world.bot_mut(bot_id).map_err(|_| SimError::UnknownBot(bot.into()))?;
            b.pre_checkouts.insert(query_id.clone(), PreCheckout { user_id: user, deadline, answer: Some(tx) });
            let query = json!({"id": query_id, "from": from, "currency": spec.currency, "total_amount": spec.amount, "invoice_payload": spec.payload});
            world.push_update(bot_id, "pre_checkout_query", query, user);
            (rx, deadline, bot_id, spec, query_id)
        };
        let answer = tokio::time::timeout_at(deadline.into(), rx).await;
        let mut world = self.world();
        match answer {
            Ok(Ok(Ok(()))) => {
                let (charge, message_id) =
                    methods::complete_payment(&mut world, bot_id, user, &spec).map_err(|e| SimError::Invalid(e.description))?;
                Ok(PayOutcome::Paid { telegram_payment_charge_id: charge, message_id, amount: spec.amount })
            }
            Ok(Ok(Err(error_message))) => Ok(PayOutcome::Declined { error_message }),
            Ok(Err(_)) | Err(_) => {
                if let Some(b) = world.bots.get_mut(&bot_id) {
                    b.pre_checkouts.remove(&query_id);
                }
                Ok(PayOutcome::TimedOut)
            }
        }
    }

    /// Telegram renews a subscription (named by its first charge id): a new charge and the
    /// bot's successful_payment with `is_recurring`. Renewals ask no pre-checkout.
    pub fn renew_subscription(&self, first_charge_id: &str) -> Result<PayOutcome, SimError> {
        let mut world = self.world();
        let amount = world.subscriptions.get(first_charge_id).map(|s| s.spec.amount).unwrap_or_default();
        let (charge, message_id) =
            methods::renew_subscription(&mut world, first_charge_id).map_err(|e| SimError::Invalid(e.description))?;
        Ok(PayOutcome::Paid { telegram_payment_charge_id: charge, message_id, amount })
    }

    /// The user cancels a subscription in Telegram: it runs to the end of the period paid
    /// for and is not renewed. (The bot is not told; Telegram sends no update for it.)
    pub fn cancel_subscription(&self, first_charge_id: &str) -> Result<(), SimError> {
        let mut world = self.world();
        let sub =
            world.subscriptions.get_mut(first_charge_id).ok_or_else(|| SimError::NotFound(format!("no subscription {first_charge_id}")))?;
        sub.canceled = true;
        Ok(())
    }

    /// The subscriptions of a bot's users.
    pub fn subscriptions(&self, bot: &str) -> Result<Vec<super::state::Subscription>, SimError> {
        let world = self.world();
        let bot_id = world.find_bot(bot)?;
        Ok(world.subscriptions.values().filter(|s| s.bot_id == bot_id).cloned().collect())
    }

    /// What the user received, in order; `bot` filters by bot, `after` by sequence number.
    pub fn inbox(&self, user: i64, bot: Option<&str>, after: u64) -> Result<Vec<InboxEntry>, SimError> {
        let world = self.world();
        world.user(user)?;
        let bot_id = bot.map(|b| world.find_bot(b)).transpose()?;
        Ok(world
            .inbox
            .get(&user)
            .map(|list| list.iter().filter(|e| e.seq > after && bot_id.is_none_or(|b| b == e.bot_id)).cloned().collect())
            .unwrap_or_default())
    }

    /// Like `inbox`, but waits up to `wait` for at least one entry.
    pub async fn wait_inbox(&self, user: i64, bot: Option<&str>, after: u64, wait: Duration) -> Result<Vec<InboxEntry>, SimError> {
        let notify = self.world().inbox_notify.clone();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let entries = self.inbox(user, bot, after)?;
            if !entries.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(entries);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    pub fn stats(&self) -> Stats {
        self.world().stats.clone()
    }

    pub fn reset_stats(&self) {
        self.world().stats = Stats::default();
    }

    pub fn limits(&self) -> Limits {
        self.world().limits.clone()
    }

    pub fn set_limits(&self, limits: Limits) -> Result<(), SimError> {
        let rates_ok = [limits.per_bot_per_sec, limits.per_chat_per_sec].iter().all(|r| r.is_finite() && *r > 0.0);
        // A burst below one message would refuse every send forever.
        let bursts_ok = [limits.per_bot_burst, limits.per_chat_burst].iter().all(|b| b.is_finite() && *b >= 1.0);
        if !rates_ok || !bursts_ok {
            return Err(SimError::Invalid("rates must be positive and bursts at least 1".into()));
        }
        let mut world = self.world();
        world.limits = limits;
        // New limits start from full buckets.
        for bot in world.bots.values_mut() {
            bot.bucket = None;
            for chat in bot.chats.values_mut() {
                chat.bucket = None;
            }
        }
        Ok(())
    }

    pub fn add_fault(&self, spec: FaultSpec) -> Result<u64, SimError> {
        self.world().add_fault(spec)
    }

    pub fn faults(&self) -> Vec<super::state::Fault> {
        self.world().faults.clone()
    }

    pub fn clear_faults(&self) {
        self.world().faults.clear();
    }

    pub fn settings(&self) -> Settings {
        self.world().settings.clone()
    }

    pub fn set_settings(&self, settings: Settings) {
        self.world().settings = settings;
    }

    /// Updates queued for the bot and not yet confirmed (polling) or accepted (webhook).
    pub fn pending_updates(&self, bot: &str) -> Result<Vec<Value>, SimError> {
        let mut world = self.world();
        let bot_id = world.find_bot(bot)?;
        world.expire_updates(bot_id);
        Ok(world.bots.get(&bot_id).map(|b| b.updates.iter().map(|u| u.to_json()).collect()).unwrap_or_default())
    }
}

// ---- user-side actions on the world -------------------------------------------------------

fn ensure_chat(world: &mut World, bot_id: i64, user: i64) {
    if let Some(bot) = world.bots.get_mut(&bot_id) {
        bot.chats.entry(user).or_insert_with(ChatState::default).started = true;
    }
}

/// A message from the user to the bot: stored in the chat and queued as an update. Writing to
/// a bot one blocked unblocks it first (the "Restart" button), with its my_chat_member update.
fn user_message(world: &mut World, bot_id: i64, user: i64, content: Map<String, Value>, reply_to: Option<i64>) -> Result<Value, SimError> {
    let u = world.user(user)?.clone();
    if world.bots.get(&bot_id).and_then(|b| b.chats.get(&user)).is_some_and(|c| c.blocked) {
        set_blocked(world, bot_id, user, false)?;
    }
    ensure_chat(world, bot_id, user);
    let reply = match reply_to {
        Some(id) => {
            let mut m =
                world.message(bot_id, user, id).cloned().ok_or_else(|| SimError::NotFound(format!("message {id} not in the chat")))?;
            if let Some(o) = m.as_object_mut() {
                o.remove("reply_to_message");
            }
            Some(m)
        }
        None => None,
    };
    let chat = world.chat_mut(bot_id, user).map_err(|e| SimError::Invalid(e.description))?;
    let message_id = chat.next_id();
    let mut msg = json!({"message_id": message_id, "from": u.to_user_json(), "chat": u.to_private_chat_json(), "date": unix_now()});
    if let Some(obj) = msg.as_object_mut() {
        obj.extend(content);
    }
    if let Some(r) = reply {
        msg["reply_to_message"] = r;
    }
    chat.store(message_id, msg.clone());
    world.push_update(bot_id, "message", msg.clone(), user);
    Ok(msg)
}

fn set_blocked(world: &mut World, bot_id: i64, user: i64, blocked: bool) -> Result<(), SimError> {
    let u = world.user(user)?.clone();
    let bot = world.bots.get_mut(&bot_id).ok_or_else(|| SimError::UnknownBot(bot_id.to_string()))?;
    let bot_user = bot.user_json();
    let chat = bot.chats.get_mut(&user).ok_or_else(|| SimError::Invalid(format!("user {user} never talked to this bot")))?;
    if chat.blocked == blocked {
        return Ok(());
    }
    chat.blocked = blocked;
    let (old, new) = if blocked { ("member", "kicked") } else { ("kicked", "member") };
    let update = json!({
        "chat": u.to_private_chat_json(), "from": u.to_user_json(), "date": unix_now(),
        "old_chat_member": methods::chat_member_json(old, bot_user.clone()),
        "new_chat_member": methods::chat_member_json(new, bot_user),
    });
    world.push_update(bot_id, "my_chat_member", update, user);
    Ok(())
}

fn find_invoice(world: &World, bot_id: i64, user: i64, invoice: &InvoiceRef) -> Result<InvoiceSpec, SimError> {
    let bot = world.bots.get(&bot_id).ok_or_else(|| SimError::UnknownBot(bot_id.to_string()))?;
    match invoice {
        InvoiceRef::Message { message_id } => bot
            .chats
            .get(&user)
            .and_then(|c| c.invoices.get(message_id))
            .cloned()
            .ok_or_else(|| SimError::NotFound(format!("no invoice message {message_id} in the chat"))),
        InvoiceRef::Link { invoice_link } => {
            let slug = invoice_link.rsplit('$').next().unwrap_or(invoice_link);
            bot.invoice_links.get(slug).cloned().ok_or_else(|| SimError::NotFound(format!("no invoice link {invoice_link}")))
        }
    }
}

// ---- HTTP routes ---------------------------------------------------------------------------

struct SimFailure(StatusCode, String);

impl From<SimError> for SimFailure {
    fn from(e: SimError) -> Self {
        let status = match e {
            SimError::UnknownBot(_) | SimError::UnknownUser(_) | SimError::UnknownChannel(_) | SimError::NotFound(_) => {
                StatusCode::NOT_FOUND
            }
            SimError::Invalid(_) => StatusCode::BAD_REQUEST,
        };
        SimFailure(status, e.to_string())
    }
}

impl IntoResponse for SimFailure {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"ok": false, "error": self.1}))).into_response()
    }
}

type SimResult = Result<Json<Value>, SimFailure>;

fn ok(v: impl Serialize) -> SimResult {
    serde_json::to_value(v).map(Json).map_err(|e| SimFailure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A JSON body that, when malformed, gets a 400 with the reason instead of axum's plain text.
struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = SimFailure;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| SimFailure(StatusCode::BAD_REQUEST, e.body_text()))?;
        serde_json::from_slice(&bytes).map(Body).map_err(|e| SimFailure(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
    }
}

/// Query-string arguments that, when missing or malformed, get a JSON 400 like every /sim error.
struct QueryArgs<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S> for QueryArgs<T> {
    type Rejection = SimFailure;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| QueryArgs(q.0))
            .map_err(|e| SimFailure(StatusCode::BAD_REQUEST, format!("invalid query: {}", e.body_text())))
    }
}

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/sim/health", get(|| async { Json(json!({"ok": true})) }))
        .route("/sim/bots", post(route_add_bot).get(route_bots))
        .route("/sim/users", post(route_add_user))
        .route("/sim/send", post(route_send))
        .route("/sim/press", post(route_press))
        .route("/sim/block", post(route_block))
        .route("/sim/unblock", post(route_unblock))
        .route("/sim/channels", post(route_add_channel))
        .route("/sim/channels/members", post(route_membership))
        .route("/sim/pay", post(route_pay))
        .route("/sim/subscriptions", get(route_subscriptions))
        .route("/sim/subscriptions/renew", post(route_renew))
        .route("/sim/subscriptions/cancel", post(route_cancel_subscription))
        .route("/sim/inbox", get(route_inbox))
        .route("/sim/updates", get(route_updates))
        .route("/sim/stats", get(route_stats))
        .route("/sim/stats/reset", post(route_reset_stats))
        .route("/sim/limits", get(route_limits).post(route_set_limits))
        .route("/sim/faults", post(route_add_fault).get(route_faults).delete(route_clear_faults))
        .route("/sim/settings", get(route_settings).post(route_set_settings))
}

fn sim(shared: Arc<Shared>) -> Sim {
    Sim::new(shared)
}

#[derive(Deserialize)]
struct AddBot {
    username: String,
    first_name: Option<String>,
    token: Option<String>,
}

async fn route_add_bot(State(s): State<Arc<Shared>>, Body(b): Body<AddBot>) -> SimResult {
    ok(sim(s).register_bot_with(&b.username, b.first_name.as_deref(), b.token.as_deref())?)
}

async fn route_bots(State(s): State<Arc<Shared>>) -> SimResult {
    ok(sim(s).bots())
}

#[derive(Deserialize)]
struct AddUser {
    #[serde(default)]
    id: i64,
    first_name: String,
    last_name: Option<String>,
    username: Option<String>,
    language_code: Option<String>,
    #[serde(default)]
    is_premium: bool,
}

async fn route_add_user(State(s): State<Arc<Shared>>, Body(u): Body<AddUser>) -> SimResult {
    let user = SimUser {
        id: u.id,
        first_name: u.first_name,
        last_name: u.last_name,
        username: u.username,
        language_code: u.language_code,
        is_premium: u.is_premium,
    };
    ok(sim(s).add_user(user)?)
}

#[derive(Deserialize)]
struct SendRequest {
    bot: String,
    user: i64,
    text: Option<String>,
    /// photo, video, voice, audio, document, sticker, animation, video_note
    media: Option<MediaKind>,
    #[serde(flatten)]
    spec: MediaSpec,
    reply_to: Option<i64>,
}

async fn route_send(State(s): State<Arc<Shared>>, Body(b): Body<SendRequest>) -> SimResult {
    let sim = sim(s);
    let message = match (b.text, b.media) {
        (Some(text), None) => sim.send_text(&b.bot, b.user, &text, b.reply_to)?,
        (None, Some(kind)) => sim.send_media(&b.bot, b.user, kind, b.spec, b.reply_to)?,
        _ => return Err(SimFailure(StatusCode::BAD_REQUEST, "give either text or media".into())),
    };
    ok(json!({"message": message}))
}

#[derive(Deserialize)]
struct Press {
    bot: String,
    user: i64,
    message_id: i64,
    data: String,
}

async fn route_press(State(s): State<Arc<Shared>>, Body(b): Body<Press>) -> SimResult {
    ok(json!({"callback_query_id": sim(s).press_button(&b.bot, b.user, b.message_id, &b.data)?}))
}

#[derive(Deserialize)]
struct BotUser {
    bot: String,
    user: i64,
}

async fn route_block(State(s): State<Arc<Shared>>, Body(b): Body<BotUser>) -> SimResult {
    sim(s).block(&b.bot, b.user)?;
    ok(json!({"blocked": true}))
}

async fn route_unblock(State(s): State<Arc<Shared>>, Body(b): Body<BotUser>) -> SimResult {
    sim(s).unblock(&b.bot, b.user)?;
    ok(json!({"blocked": false}))
}

#[derive(Deserialize)]
struct AddChannel {
    username: String,
    title: Option<String>,
    admin_bots: Option<Vec<String>>,
}

async fn route_add_channel(State(s): State<Arc<Shared>>, Body(b): Body<AddChannel>) -> SimResult {
    let title = b.title.unwrap_or_else(|| b.username.clone());
    ok(sim(s).add_channel(&b.username, &title, b.admin_bots)?)
}

#[derive(Deserialize)]
struct Membership {
    channel: String,
    user: i64,
    status: String,
}

async fn route_membership(State(s): State<Arc<Shared>>, Body(b): Body<Membership>) -> SimResult {
    sim(s).set_membership(&b.channel, b.user, &b.status)?;
    ok(json!({"status": b.status}))
}

#[derive(Deserialize)]
struct Pay {
    bot: String,
    user: i64,
    #[serde(flatten)]
    invoice: InvoiceRef,
}

async fn route_pay(State(s): State<Arc<Shared>>, Body(b): Body<Pay>) -> SimResult {
    ok(sim(s).pay(&b.bot, b.user, b.invoice).await?)
}

#[derive(Deserialize)]
struct SubscriptionRef {
    /// The subscription's first charge id.
    telegram_payment_charge_id: String,
}

async fn route_subscriptions(State(s): State<Arc<Shared>>, QueryArgs(q): QueryArgs<BotQuery>) -> SimResult {
    ok(json!({"subscriptions": sim(s).subscriptions(&q.bot)?}))
}

async fn route_renew(State(s): State<Arc<Shared>>, Body(b): Body<SubscriptionRef>) -> SimResult {
    ok(sim(s).renew_subscription(&b.telegram_payment_charge_id)?)
}

async fn route_cancel_subscription(State(s): State<Arc<Shared>>, Body(b): Body<SubscriptionRef>) -> SimResult {
    sim(s).cancel_subscription(&b.telegram_payment_charge_id)?;
    ok(json!({"canceled": true}))
}

#[derive(Deserialize)]
struct InboxQuery {
    user: i64,
    bot: Option<String>,
    #[serde(default)]
    after: u64,
    /// Wait up to this long for at least one entry (long poll); 0 answers at once.
    #[serde(default)]
    wait_ms: u64,
}

async fn route_inbox(State(s): State<Arc<Shared>>, QueryArgs(q): QueryArgs<InboxQuery>) -> SimResult {
    let wait = Duration::from_millis(q.wait_ms.min(60_000));
    let entries = sim(s).wait_inbox(q.user, q.bot.as_deref(), q.after, wait).await?;
    let last_seq = entries.last().map(|e| e.seq).unwrap_or(q.after);
    ok(json!({"entries": entries, "last_seq": last_seq}))
}

#[derive(Deserialize)]
struct BotQuery {
    bot: String,
}

async fn route_updates(State(s): State<Arc<Shared>>, QueryArgs(q): QueryArgs<BotQuery>) -> SimResult {
    ok(sim(s).pending_updates(&q.bot)?)
}

async fn route_stats(State(s): State<Arc<Shared>>) -> SimResult {
    ok(sim(s).stats())
}

async fn route_reset_stats(State(s): State<Arc<Shared>>) -> SimResult {
    sim(s).reset_stats();
    ok(json!({"reset": true}))
}

async fn route_limits(State(s): State<Arc<Shared>>) -> SimResult {
    ok(sim(s).limits())
}

/// Fields left out keep their current value.
fn merged<T: Serialize + serde::de::DeserializeOwned>(current: &T, patch: Value) -> Result<T, SimFailure> {
    let mut base = serde_json::to_value(current).map_err(|e| SimFailure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let Value::Object(fields) = patch else {
        return Err(SimFailure(StatusCode::BAD_REQUEST, "expected a JSON object".into()));
    };
    if let Value::Object(b) = &mut base {
        b.extend(fields);
    }
    serde_json::from_value(base).map_err(|e| SimFailure(StatusCode::BAD_REQUEST, format!("invalid field: {e}")))
}

async fn route_set_limits(State(s): State<Arc<Shared>>, Body(patch): Body<Value>) -> SimResult {
    let sim = sim(s);
    sim.set_limits(merged(&sim.limits(), patch)?)?;
    ok(sim.limits())
}

async fn route_faults(State(s): State<Arc<Shared>>) -> SimResult {
    ok(sim(s).faults())
}

async fn route_add_fault(State(s): State<Arc<Shared>>, Body(f): Body<FaultSpec>) -> SimResult {
    ok(json!({"fault_id": sim(s).add_fault(f)?}))
}

async fn route_clear_faults(State(s): State<Arc<Shared>>) -> SimResult {
    sim(s).clear_faults();
    ok(json!({"cleared": true}))
}

async fn route_settings(State(s): State<Arc<Shared>>) -> SimResult {
    ok(sim(s).settings())
}

async fn route_set_settings(State(s): State<Arc<Shared>>, Body(patch): Body<Value>) -> SimResult {
    let sim = sim(s);
    sim.set_settings(merged(&sim.settings(), patch)?);
    ok(sim.settings())
}
