//! Telegram's Update, parsed by teloxide's Bot API types ("parse, don't validate") and turned
//! into the few small view types the handlers read (chat/). An update of a kind we don't
//! handle, or from a group, parses to [`Event::Ignored`] rather than failing — Telegram would
//! otherwise redeliver it forever.
//!
//! **Why views, not teloxide's types in the handlers.** teloxide's `Message` is a tree of
//! enums (`MessageKind::Common` → `MediaKind::Photo` → `PhotoSize` → `FileMeta` …) built for
//! a general-purpose bot; the handlers need a dozen fields of it. Converting once here keeps
//! chat/ unchanged, keeps the handlers' tests building events from small literals, and keeps
//! every place where teloxide lags the Bot API in this one file.
//!
//! **One parse.** The update is parsed once, from the `serde_json::Value` the pipeline already
//! holds (dedupe reads `update_id` from it before anything is parsed). We dispatch on the
//! update's kind ourselves and deserialize that kind's teloxide type (`Message`,
//! `CallbackQuery`, `PreCheckoutQuery`, `ChatMemberUpdated` — the types of
//! `teloxide::types::UpdateKind`) rather than `teloxide::types::Update` as a whole, because
//! `Update` (a) turns any error into an empty `UpdateKind::Error` (the raw update and the
//! reason are lost: teloxide's own dispatcher re-parses to fill it in), (b) has a `u32`
//! `update_id` where ours is an `i64`, and (c) buffers the whole update once more for its
//! `#[serde(flatten)]`. A test checks that `Update` reads each of our fixtures as the same kind.
//!
//! **Where teloxide 0.17 (teloxide-core 0.13, Bot API 9.x) lags Bot API 10.1, and what we
//! do.** teloxide's `MessageKind` and `MediaKind` are untagged enums ending in
//! `MessageKind::Empty {}`, which matches anything: when a nested object fails to parse, the
//! message does not fail — it silently becomes another kind, or `Empty`. Found (each has a test):
//!
//! - `MessageEntity` of type `date_time` (10.x; and any later entity type): teloxide's
//!   `MessageEntityKind` rejects it, so a text (or caption) carrying one reads as `Empty` — the
//!   text is gone. The same happens for any nested field teloxide rejects (a new shape inside
//!   `reply_to_message`, `reply_markup`, `link_preview_options`, an unparsable `mime_type` …).
//! - `mime_type` is optional in the Bot API, but teloxide's `Video`, `Audio`, `Voice` and
//!   `Animation` require the key (a `with` deserializer without `default`): a voice without it
//!   reads as `Empty`, an animation without it as a *document* (the copy Telegram adds for old
//!   clients).
//! - `file_size` is optional; teloxide puts `u32::MAX` where it is missing. Mapped back to
//!   "unknown" (else every such file would be refused as too big). A `total_amount` beyond
//!   `u32` would make a payment read as `Empty`.
//! - New message kinds (`live_photo`, `rich_message`, `poll_option_added`, `chat_owner_left`,
//!   `suggested_post_*`, `gift_upgrade_sent`, `managed_bot_created`, …) read as `Empty`: not
//!   relayed, answered "unsupported" — what we want anyway.
//! - Not gaps: `SuccessfulPayment.is_recurring` / `subscription_expiration_date`,
//!   `RefundedPayment` and inaccessible callback messages (`date` 0) are in teloxide; the 10.x
//!   fields we don't read (`ChatMemberMember.tag`, `Message.sender_tag`, `User.supports_guest_queries`
//!   …) are ignored by its serde. `refunded_payment` stays raw JSON until the refunds slice
//!   reads it.
//!
//! Handled in two ways. `entities` and `caption_entities` are always taken from the raw JSON
//! (we forward them verbatim: nothing lost, nothing re-serialized). And after the conversion,
//! if the JSON has a field we relay or apply (`text`, a file, a payment) that the conversion
//! did not produce — or teloxide failed on the message altogether — the message is read by the
//! view's own lenient `Deserialize` (the parser of before teloxide), so such a message is
//! relayed as before, a payment is never dropped, and a message with nothing we relay still
//! gets the "unsupported" answer; only a message without even an id and a chat is
//! `Ignored("malformed")`. That second parse happens only on this fallback (logged).
//!
//! teloxide's *request* types are not used: the outbox sends generic method + JSON jobs
//! (durable, replayed, rate-limited per chat), which teloxide's typed, immediately-sent
//! requests don't fit — see docs/ARCHITECTURE.md, "Decisions worth knowing".

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::Value;
use teloxide::types as tg;

#[derive(Debug, Clone, Deserialize)]
pub struct From {
    pub id: i64,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub language_code: Option<String>,
    /// The @username, if the user has one (recorded for admin search; erased by /delete_me).
    #[serde(default)]
    pub username: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Chat {
    pub id: i64,
    #[serde(rename = "type", default)]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct File {
    pub file_id: String,
    #[serde(default)]
    pub file_unique_id: String,
    /// None when Telegram did not say.
    #[serde(default)]
    pub file_size: Option<u64>,
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub is_animated: bool,
    #[serde(default)]
    pub is_video: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReplyTo {
    pub message_id: i64,
}

/// A message as the handlers read it. Built from teloxide's `Message`; its `Deserialize` (the
/// lenient parser of before teloxide) is only the fallback for a message teloxide reads less
/// of than Telegram sent (see the module comment).
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub message_id: i64,
    /// When the user sent it (Unix seconds, set by Telegram; 0 if absent): a message that
    /// waited at Telegram (an outage, a token rotation) is not charged to the per-user budget.
    #[serde(default)]
    pub date: i64,
    #[serde(default)]
    pub from: Option<From>,
    pub chat: Chat,
    #[serde(default)]
    pub text: Option<String>,
    /// As Telegram sent them (raw JSON: forwarded verbatim).
    #[serde(default)]
    pub entities: Option<Value>,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default)]
    pub caption_entities: Option<Value>,
    #[serde(default)]
    pub photo: Option<Vec<File>>,
    #[serde(default)]
    pub video: Option<File>,
    #[serde(default)]
    pub voice: Option<File>,
    #[serde(default)]
    pub audio: Option<File>,
    #[serde(default)]
    pub document: Option<File>,
    #[serde(default)]
    pub sticker: Option<File>,
    #[serde(default)]
    pub animation: Option<File>,
    #[serde(default)]
    pub video_note: Option<File>,
    #[serde(default)]
    pub reply_to_message: Option<ReplyTo>,
    #[serde(default)]
    pub has_protected_content: bool,
    /// A Stars payment went through (a service message from the payer).
    #[serde(default)]
    pub successful_payment: Option<SuccessfulPayment>,
    /// A payment was refunded (handled by the refunds slice; acknowledged until then).
    #[serde(default)]
    pub refunded_payment: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SuccessfulPayment {
    pub currency: String,
    pub total_amount: i64,
    pub invoice_payload: String,
    pub telegram_payment_charge_id: String,
    /// A subscription's payment (the first or a renewal).
    #[serde(default)]
    pub is_recurring: bool,
    /// When the subscription it pays for ends (Unix seconds).
    #[serde(default)]
    pub subscription_expiration_date: Option<i64>,
    /// The first payment of a subscription (a renewal has `is_recurring` only).
    #[serde(default)]
    pub is_first_recurring: bool,
}

/// Telegram asks whether to take a payment; the bot must answer within 10 s.
#[derive(Debug, Clone)]
pub struct PreCheckoutQuery {
    pub id: String,
    pub from: From,
    pub currency: String,
    pub total_amount: i64,
    pub invoice_payload: String,
}

#[derive(Debug, Clone)]
pub struct CallbackQuery {
    pub id: String,
    pub from: From,
    pub message: Option<CallbackMessage>,
    pub data: Option<String>,
}

/// The message a button belongs to (may be "inaccessible": then only chat and id are set).
#[derive(Debug, Clone)]
pub struct CallbackMessage {
    pub message_id: i64,
    pub chat: Chat,
}

/// What the runtime does with an update.
#[derive(Debug, Clone)]
pub enum Event {
    /// A message in a private chat (boxed: it is by far the largest variant).
    Message(Box<Message>),
    /// The user edited a message they sent in a private chat.
    Edited(Box<Message>),
    Callback(CallbackQuery),
    /// A payment waits for the bot's approval (answered inline, never through the outbox).
    PreCheckout(PreCheckoutQuery),
    /// The user blocked (`kicked`) or unblocked (`member`) the bot.
    MemberStatus {
        user: From,
        status: String,
    },
    /// Anything else (edits, channel posts, groups, reactions, …): acknowledged, no effect.
    Ignored(&'static str),
}

/// The update id, if the JSON has one (dedupe needs it; without it nothing can be done).
pub fn update_id(raw: &Value) -> Option<i64> {
    raw.get("update_id")?.as_i64()
}

/// The user an update comes from and their app's language code, whatever its kind (for
/// per-chat ordering and for telling the sender when their update had to be abandoned).
/// Read from the raw JSON: it must work for an update nothing else could parse.
pub fn sender_of(raw: &Value) -> Option<(i64, Option<&str>)> {
    let object = raw.as_object()?;
    object.iter().filter(|(k, _)| k.as_str() != "update_id").find_map(|(_, v)| {
        let from = v.get("from")?;
        Some((from.get("id")?.as_i64()?, from.get("language_code").and_then(Value::as_str)))
    })
}

/// The kind of an update (its one field besides `update_id`), for logs and metrics.
pub fn kind_of(raw: &Value) -> &str {
    raw.as_object().and_then(|o| o.keys().find(|k| k.as_str() != "update_id")).map_or("unknown", String::as_str)
}

/// Parses one update. Only private chats are served: the bot is a 1:1 chat service.
pub fn parse(raw: &Value) -> Event {
    let Some((kind, body)) = raw.as_object().and_then(|o| o.iter().find(|(k, _)| k.as_str() != "update_id")) else {
        return Event::Ignored("other_kind");
    };
    match kind.as_str() {
        "message" => message(body).map_or(Event::Ignored("malformed"), |m| m.map_or(Event::Ignored("not_private"), Event::Message)),
        "edited_message" => message(body).map_or(Event::Ignored("malformed"), |m| m.map_or(Event::Ignored("not_private"), Event::Edited)),
        "callback_query" => match tg::CallbackQuery::deserialize(body) {
            Ok(q) => Event::Callback(CallbackQuery {
                id: q.id.0,
                from: user(q.from),
                message: q.message.map(|m| CallbackMessage { message_id: i64::from(m.id().0), chat: chat(m.chat()) }),
                data: q.data,
            }),
            Err(_) => Event::Ignored("malformed"),
        },
        "pre_checkout_query" => match tg::PreCheckoutQuery::deserialize(body) {
            Ok(q) => Event::PreCheckout(PreCheckoutQuery {
                id: q.id.0,
                from: user(q.from),
                currency: q.currency,
                total_amount: i64::from(q.total_amount),
                invoice_payload: q.invoice_payload,
            }),
            Err(_) => Event::Ignored("malformed"),
        },
        "my_chat_member" => match tg::ChatMemberUpdated::deserialize(body) {
            Ok(c) if c.chat.is_private() => Event::MemberStatus { user: user(c.from), status: status(&c.new_chat_member.kind).to_string() },
            Ok(_) => Event::Ignored("not_private"),
            Err(_) => Event::Ignored("malformed"),
        },
        _ => Event::Ignored("other_kind"),
    }
}

/// A message: `Err` when not even its envelope (id, chat) can be read, `Ok(None)` when it is
/// not a user's message in a private chat.
fn message(body: &Value) -> Result<Option<Box<Message>>, ()> {
    let m = match tg::Message::deserialize(body) {
        Ok(m) => m,
        // teloxide cannot read it (a Bot API change, or a broken update).
        Err(e) => {
            let error = crate::delivery::outbox::quoted_parts_removed(&e.to_string());
            return lenient(body, &error);
        }
    };
    if !m.chat.is_private() || m.from.as_ref().is_none_or(|f| f.is_bot) {
        return Ok(None);
    }
    let mut out = Message::new(i64::from(m.id.0), m.from.map(user), chat(&m.chat));
    out.date = m.date.timestamp();
    match m.kind {
        tg::MessageKind::Common(c) => {
            out.reply_to_message = c.reply_to_message.map(|r| ReplyTo { message_id: i64::from(r.id.0) });
            out.has_protected_content = c.has_protected_content;
            out.media(c.media_kind, body);
        }
        tg::MessageKind::SuccessfulPayment(p) => {
            let p = p.successful_payment;
            out.successful_payment = Some(SuccessfulPayment {
                currency: p.currency,
                total_amount: i64::from(p.total_amount),
                invoice_payload: p.invoice_payload,
                telegram_payment_charge_id: p.telegram_payment_charge_id.0,
                is_recurring: p.is_recurring,
                subscription_expiration_date: p.subscription_expiration_date.map(|d| d.timestamp()),
                is_first_recurring: p.is_first_recurring,
            });
        }
        tg::MessageKind::RefundedPayment(_) => out.refunded_payment = body.get("refunded_payment").cloned(),
        // Service messages, dice, and `Empty`: no content teloxide knows — a kind newer than
        // teloxide (not relayed anyway), or one it failed to read (caught just below).
        _ => {}
    }
    if let Some(field) = out.missed(body) {
        return lenient(body, &format!("teloxide did not read `{field}`"));
    }
    Ok(Some(Box::new(out)))
}

/// The fallback: the message read by the view's own lenient `Deserialize`, for a message
/// teloxide failed on or read less of than we relay. Logged (at most once a minute: a Bot API
/// change would otherwise log once per message), never its content.
fn lenient(body: &Value, why: &str) -> Result<Option<Box<Message>>, ()> {
    static LAST_WARNED_S: AtomicU64 = AtomicU64::new(0);
    let Ok(m) = Message::deserialize(body) else { return Err(()) };
    if m.chat.kind != "private" || m.from.as_ref().is_none_or(|f| f.is_bot) {
        return Ok(None);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let last = LAST_WARNED_S.load(Ordering::Relaxed);
    if now >= last + 60 && LAST_WARNED_S.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        tracing::warn!(why, "a private message was read without teloxide (a Bot API field teloxide does not know?)");
    } else {
        tracing::debug!(why, "a private message was read without teloxide");
    }
    Ok(Some(Box::new(m)))
}

/// The fields we relay or apply: if the JSON has one, the view must have it.
const READ_FIELDS: [&str; 11] = [
    "text",
    "photo",
    "video",
    "voice",
    "audio",
    "document",
    "sticker",
    "animation",
    "video_note",
    "successful_payment",
    "refunded_payment",
];

impl Message {
    fn new(message_id: i64, from: Option<From>, chat: Chat) -> Message {
        Message {
            message_id,
            date: 0,
            from,
            chat,
            text: None,
            entities: None,
            caption: None,
            caption_entities: None,
            photo: None,
            video: None,
            voice: None,
            audio: None,
            document: None,
            sticker: None,
            animation: None,
            video_note: None,
            reply_to_message: None,
            has_protected_content: false,
            successful_payment: None,
            refunded_payment: None,
        }
    }

    /// The content of a common message. Entities come from the raw JSON (see the module
    /// comment); an animation also carries `document`, which teloxide drops: only the
    /// animation is set.
    fn media(&mut self, kind: tg::MediaKind, raw: &Value) {
        use tg::MediaKind as K;
        let caption = |this: &mut Message, caption: Option<String>| {
            this.caption = caption;
            this.caption_entities = raw.get("caption_entities").cloned();
        };
        match kind {
            K::Text(t) => {
                self.text = Some(t.text);
                self.entities = raw.get("entities").cloned();
            }
            K::Photo(p) => {
                self.photo = Some(p.photo.into_iter().map(|s| file(s.file, None, None)).collect());
                caption(self, p.caption);
            }
            K::Video(v) => {
                self.video = Some(file(v.video.file, v.video.file_name, v.video.mime_type.map(|m| m.to_string())));
                caption(self, v.caption);
            }
            K::Voice(v) => {
                self.voice = Some(file(v.voice.file, None, v.voice.mime_type.map(|m| m.to_string())));
                caption(self, v.caption);
            }
            K::Audio(a) => {
                self.audio = Some(file(a.audio.file, a.audio.file_name, a.audio.mime_type.map(|m| m.to_string())));
                caption(self, a.caption);
            }
            K::Document(d) => {
                self.document = Some(file(d.document.file, d.document.file_name, d.document.mime_type.map(|m| m.to_string())));
                caption(self, d.caption);
            }
            K::Animation(a) => {
                self.animation = Some(file(a.animation.file, a.animation.file_name, a.animation.mime_type.map(|m| m.to_string())));
                caption(self, a.caption);
            }
            K::Sticker(s) => {
                let (is_animated, is_video) = (s.sticker.is_animated(), s.sticker.is_video());
                self.sticker = Some(File { is_animated, is_video, ..file(s.sticker.file, None, None) });
            }
            K::VideoNote(v) => self.video_note = Some(file(v.video_note.file, None, None)),
            // Contacts, locations, polls, games, stories, paid media, checklists, venues:
            // never relayed.
            _ => {}
        }
    }

    /// The first field of [`READ_FIELDS`] the JSON has and the conversion did not produce:
    /// teloxide read the message as another kind (an animation without `mime_type` reads as a
    /// document) or as `Empty` (a nested field it rejected).
    fn missed(&self, raw: &Value) -> Option<&'static str> {
        let obj = raw.as_object()?;
        READ_FIELDS.into_iter().find(|&field| {
            obj.contains_key(field)
                && match field {
                    "text" => self.text.is_none(),
                    "photo" => self.photo.is_none(),
                    "video" => self.video.is_none(),
                    "voice" => self.voice.is_none(),
                    "audio" => self.audio.is_none(),
                    // Sent along with an animation, for old clients; teloxide drops it.
                    "document" => self.document.is_none() && self.animation.is_none(),
                    "sticker" => self.sticker.is_none(),
                    "animation" => self.animation.is_none(),
                    "video_note" => self.video_note.is_none(),
                    "successful_payment" => self.successful_payment.is_none(),
                    _ => self.refunded_payment.is_none(),
                }
        })
    }
}

fn user(u: tg::User) -> From {
    // Telegram's user ids fit in 52 bits.
    From { id: u.id.0 as i64, is_bot: u.is_bot, language_code: u.language_code, username: u.username }
}

fn chat(c: &tg::Chat) -> Chat {
    let kind = match &c.kind {
        tg::ChatKind::Private(_) => "private",
        tg::ChatKind::Public(p) => match p.kind {
            tg::PublicChatKind::Channel(_) => "channel",
            tg::PublicChatKind::Group => "group",
            tg::PublicChatKind::Supergroup(_) => "supergroup",
        },
    };
    Chat { id: c.id.0, kind: kind.to_string() }
}

/// The Bot API's `status` of a chat member.
fn status(kind: &tg::ChatMemberKind) -> &'static str {
    match kind {
        tg::ChatMemberKind::Owner(_) => "creator",
        tg::ChatMemberKind::Administrator(_) => "administrator",
        tg::ChatMemberKind::Member(_) => "member",
        tg::ChatMemberKind::Restricted(_) => "restricted",
        tg::ChatMemberKind::Left => "left",
        tg::ChatMemberKind::Banned(_) => "kicked",
    }
}

fn file(meta: tg::FileMeta, file_name: Option<String>, mime_type: Option<String>) -> File {
    File {
        file_id: meta.id.0,
        file_unique_id: meta.unique_id.0,
        // teloxide's stand-in for a missing file_size.
        file_size: (meta.size != u32::MAX).then_some(u64::from(meta.size)),
        file_name,
        mime_type,
        is_animated: false,
        is_video: false,
    }
}

/// The relayable content of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content<'a> {
    Text,
    /// A file: kind (the Bot API's field and the `send<Kind>` method), the file.
    Media {
        kind: MediaKind,
        file: &'a File,
    },
    /// Contacts, locations, polls, dice, …: never relayed (a contact or a location would break
    /// anonymity; the rest has no meaning across an anonymous chat).
    Unsupported,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// The parameter / field name (`photo`, `video_note`, …), also the metric kind.
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
    pub fn method(self) -> &'static str {
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
    /// Stickers and video notes carry no caption.
    pub fn has_caption(self) -> bool {
        !matches!(self, MediaKind::Sticker | MediaKind::VideoNote)
    }
    /// A file name for the re-upload when the original has none.
    pub fn default_file_name(self, file: &File) -> String {
        if let Some(name) = &file.file_name {
            return name.clone();
        }
        match self {
            MediaKind::Photo => "photo.jpg",
            MediaKind::Video => "video.mp4",
            MediaKind::Voice => "voice.ogg",
            MediaKind::Audio => "audio.mp3",
            MediaKind::Document => "file.bin",
            MediaKind::Sticker if file.is_animated => "sticker.tgs",
            MediaKind::Sticker if file.is_video => "sticker.webm",
            MediaKind::Sticker => "sticker.webp",
            MediaKind::Animation => "animation.mp4",
            MediaKind::VideoNote => "video_note.mp4",
        }
        .to_string()
    }
}

impl Message {
    pub fn content(&self) -> Content<'_> {
        if self.text.is_some() {
            return Content::Text;
        }
        // A photo comes in several sizes; the largest is last.
        if let Some(file) = self.photo.as_ref().and_then(|sizes| sizes.last()) {
            return Content::Media { kind: MediaKind::Photo, file };
        }
        let kinds = [
            (MediaKind::Video, &self.video),
            (MediaKind::Voice, &self.voice),
            (MediaKind::Audio, &self.audio),
            (MediaKind::Document, &self.document),
            (MediaKind::Sticker, &self.sticker),
            (MediaKind::VideoNote, &self.video_note),
        ];
        // An animation also carries `document`: it must win over the document.
        if let Some(file) = &self.animation {
            return Content::Media { kind: MediaKind::Animation, file };
        }
        for (kind, file) in kinds {
            if let Some(file) = file {
                return Content::Media { kind, file };
            }
        }
        Content::Unsupported
    }

    /// The command (without `/` and `@botname`) and its argument, if the text is a command.
    pub fn command(&self) -> Option<(String, &str)> {
        let text = self.text.as_deref()?.trim();
        let rest = text.strip_prefix('/')?;
        let (word, arg) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let name = word.split('@').next().unwrap_or(word).to_ascii_lowercase();
        if name.is_empty() {
            return None;
        }
        Some((name, arg.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(extra: Value) -> Value {
        let mut m = json!({"message_id": 5, "date": 1, "chat": {"id": 7, "type": "private"}, "from": {"id": 7, "is_bot": false, "first_name": "A"}});
        if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        json!({"update_id": 1, "message": m})
    }

    #[test]
    fn commands_are_recognised_with_and_without_the_bot_name() {
        let Event::Message(m) = parse(&msg(json!({"text": "/Start@alpha_bot ref_42"}))) else { panic!() };
        assert_eq!(m.command(), Some(("start".to_string(), "ref_42")));
        let Event::Message(m) = parse(&msg(json!({"text": "hello /start"}))) else { panic!() };
        assert_eq!(m.command(), None);
        let Event::Message(m) = parse(&msg(json!({"text": "/"}))) else { panic!() };
        assert_eq!(m.command(), None);
    }

    #[test]
    fn the_largest_photo_size_is_relayed_and_animations_beat_documents() {
        let Event::Message(m) =
            parse(&msg(json!({"photo": [{"file_id": "small", "file_unique_id": "s"}, {"file_id": "big", "file_unique_id": "b"}]})))
        else {
            panic!()
        };
        assert!(matches!(m.content(), Content::Media { kind: MediaKind::Photo, file } if file.file_id == "big"));
        let Event::Message(m) =
            parse(&msg(json!({"animation": {"file_id": "a", "file_unique_id": "a"}, "document": {"file_id": "a", "file_unique_id": "a"}})))
        else {
            panic!()
        };
        assert!(matches!(m.content(), Content::Media { kind: MediaKind::Animation, .. }));
        let Event::Message(m) = parse(&msg(json!({"contact": {"phone_number": "1", "first_name": "x"}}))) else { panic!() };
        assert_eq!(m.content(), Content::Unsupported);
    }

    #[test]
    fn malformed_and_foreign_updates_are_ignored_not_errors() {
        assert!(matches!(parse(&json!({"update_id": 1, "message": {"text": 3}})), Event::Ignored("malformed")));
        assert!(matches!(parse(&json!({"update_id": 1, "edited_message": {}})), Event::Ignored("malformed")));
        assert!(matches!(parse(&json!({"update_id": 1, "channel_post": {}})), Event::Ignored("other_kind")));
        let group =
            json!({"update_id": 1, "message": {"message_id": 1, "chat": {"id": -5, "type": "group"}, "from": {"id": 1, "is_bot": false}}});
        assert!(matches!(parse(&group), Event::Ignored("not_private")));
        assert_eq!(update_id(&json!({"update_id": "x"})), None);
    }

    // ---- Bot API 10.1 updates through teloxide -------------------------------------------

    /// A user as Bot API 10.1 sends it (with fields newer than teloxide).
    fn ann() -> Value {
        json!({"id": 7, "is_bot": false, "first_name": "Ann", "username": "ann", "language_code": "ru",
               "supports_guest_queries": false, "has_topics_enabled": false})
    }

    /// A private message from Ann, as Bot API 10.1 sends it, with `content` merged in.
    fn message_of(content: Value) -> Value {
        let mut m = json!({
            "message_id": 42, "date": 1_781_000_000, "from": ann(), "sender_tag": "member",
            "chat": {"id": 7, "type": "private", "first_name": "Ann", "username": "ann", "is_direct_messages": false},
            "is_paid_post": false,
        });
        if let (Some(m), Some(c)) = (m.as_object_mut(), content.as_object()) {
            m.extend(c.clone());
        }
        m
    }

    fn file(id: &str) -> Value {
        json!({"file_id": format!("{id}-id"), "file_unique_id": format!("{id}-u"), "file_size": 2048})
    }

    fn with(mut v: Value, extra: Value) -> Value {
        if let (Some(v), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(e.clone());
        }
        v
    }

    fn caption() -> Value {
        json!({"caption": "look", "caption_entities": [{"type": "italic", "offset": 0, "length": 4}]})
    }

    /// One update of each kind of message we read, each valid Bot API 10.1, and what it must
    /// become: the kind relayed (`None`: answered "unsupported"), the file id.
    fn media_fixtures() -> Vec<(&'static str, Value, Option<MediaKind>)> {
        let thumb = json!({"file_id": "t-id", "file_unique_id": "t-u", "width": 90, "height": 90});
        vec![
            (
                "photo",
                message_of(with(
                    json!({"photo": [thumb.clone(), with(file("photo"), json!({"width": 1280, "height": 960}))], "show_caption_above_media": true}),
                    caption(),
                )),
                Some(MediaKind::Photo),
            ),
            (
                "video",
                message_of(with(
                    json!({"video": with(file("video"), json!({"width": 640, "height": 360, "duration": 5, "file_name": "v.mp4", "mime_type": "video/mp4", "qualities": []}))}),
                    caption(),
                )),
                Some(MediaKind::Video),
            ),
            (
                "voice",
                message_of(with(json!({"voice": with(file("voice"), json!({"duration": 3, "mime_type": "audio/ogg"}))}), caption())),
                Some(MediaKind::Voice),
            ),
            (
                "audio",
                message_of(with(
                    json!({"audio": with(file("audio"), json!({"duration": 3, "performer": "P", "title": "T", "file_name": "a.mp3", "mime_type": "audio/mpeg"}))}),
                    caption(),
                )),
                Some(MediaKind::Audio),
            ),
            (
                "document",
                message_of(with(
                    json!({"document": with(file("document"), json!({"file_name": "cv.pdf", "mime_type": "application/pdf", "thumbnail": thumb}))}),
                    caption(),
                )),
                Some(MediaKind::Document),
            ),
            (
                "sticker",
                message_of(
                    json!({"sticker": with(file("sticker"), json!({"type": "regular", "width": 512, "height": 512, "is_animated": true, "is_video": false, "emoji": "🙂", "set_name": "s"}))}),
                ),
                Some(MediaKind::Sticker),
            ),
            (
                "animation",
                message_of(with(
                    json!({
                        "animation": with(file("animation"), json!({"width": 320, "height": 240, "duration": 2, "file_name": "a.mp4", "mime_type": "video/mp4"})),
                        "document": with(file("animation"), json!({"file_name": "a.mp4", "mime_type": "video/mp4"})),
                    }),
                    caption(),
                )),
                Some(MediaKind::Animation),
            ),
            (
                "video_note",
                message_of(json!({"video_note": with(file("video_note"), json!({"length": 240, "duration": 5}))})),
                Some(MediaKind::VideoNote),
            ),
            ("contact", message_of(json!({"contact": {"phone_number": "+100", "first_name": "Ann", "user_id": 7}})), None),
            ("location", message_of(json!({"location": {"latitude": 51.5, "longitude": -0.12}})), None),
            (
                "live_photo (Bot API 10.x, unknown to teloxide)",
                message_of(json!({"live_photo": with(file("live"), json!({"width": 1, "height": 1, "duration": 2}))})),
                None,
            ),
        ]
    }

    fn update(kind: &str, body: Value) -> Value {
        json!({"update_id": 9, kind: body})
    }

    fn spec() -> botfleet_tests::api_spec::ApiSpec {
        botfleet_tests::api_spec::ApiSpec::load().expect("the Bot API 10.1 spec (shared/data/telegram-bot-api/api.json)")
    }

    #[test]
    fn every_message_kind_parses_through_teloxide() {
        let spec = spec();
        for (name, body, want) in media_fixtures() {
            let raw = update("message", body);
            if !name.contains("10.x") {
                assert_eq!(spec.check_update(&raw), Ok(()), "{name}: the fixture is valid Bot API 10.1");
            }
            // teloxide's own Update reads it as a message too (we parse the kind's type directly).
            let whole = tg::Update::deserialize(&raw).expect(name);
            let tg::UpdateKind::Message(tm) = whole.kind else { panic!("{name}: {:?}", whole.kind) };
            // ... and as the right kind: these go through teloxide, not the fallback.
            let teloxide_kind = match tm.kind {
                tg::MessageKind::Common(c) => match c.media_kind {
                    tg::MediaKind::Photo(_) => Some(MediaKind::Photo),
                    tg::MediaKind::Video(_) => Some(MediaKind::Video),
                    tg::MediaKind::Voice(_) => Some(MediaKind::Voice),
                    tg::MediaKind::Audio(_) => Some(MediaKind::Audio),
                    tg::MediaKind::Document(_) => Some(MediaKind::Document),
                    tg::MediaKind::Sticker(_) => Some(MediaKind::Sticker),
                    tg::MediaKind::Animation(_) => Some(MediaKind::Animation),
                    tg::MediaKind::VideoNote(_) => Some(MediaKind::VideoNote),
                    _ => None,
                },
                _ => None,
            };
            assert_eq!(teloxide_kind, want, "{name}: teloxide's reading");
            let Event::Message(m) = parse(&raw) else { panic!("{name}") };
            assert_eq!(m.message_id, 42, "{name}");
            let from = m.from.as_ref().expect(name);
            assert_eq!((from.id, from.language_code.as_deref(), from.username.as_deref()), (7, Some("ru"), Some("ann")), "{name}");
            assert_eq!((m.chat.id, m.chat.kind.as_str()), (7, "private"), "{name}");
            match (m.content(), want) {
                (Content::Media { kind, file }, Some(want)) => {
                    assert_eq!(kind, want, "{name}");
                    assert_eq!(file.file_id, format!("{}-id", kind.field()), "{name}");
                    assert_eq!(file.file_unique_id, format!("{}-u", kind.field()), "{name}");
                    assert_eq!(file.file_size, Some(2048), "{name}");
                    if kind.has_caption() {
                        assert_eq!(m.caption.as_deref(), Some("look"), "{name}");
                        assert_eq!(m.caption_entities, Some(json!([{"type": "italic", "offset": 0, "length": 4}])), "{name}");
                    }
                }
                (Content::Unsupported, None) => {}
                (got, want) => panic!("{name}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn file_details_survive_the_conversion() {
        let raw = |i: usize| update("message", media_fixtures().swap_remove(i).1);
        let Event::Message(video) = parse(&raw(1)) else { panic!() };
        let video = video.video.expect("video");
        assert_eq!((video.file_name.as_deref(), video.mime_type.as_deref()), (Some("v.mp4"), Some("video/mp4")));
        assert_eq!(MediaKind::Video.default_file_name(&video), "v.mp4");
        let Event::Message(sticker) = parse(&raw(5)) else { panic!() };
        let sticker = sticker.sticker.expect("sticker");
        assert!(sticker.is_animated && !sticker.is_video);
        assert_eq!(MediaKind::Sticker.default_file_name(&sticker), "sticker.tgs");
        // Optional file_size: teloxide's u32::MAX stand-in must not read as a 4 GiB file.
        let Event::Message(m) = parse(&msg(json!({"document": {"file_id": "d", "file_unique_id": "d"}}))) else { panic!() };
        assert_eq!(m.document.expect("document").file_size, None);
    }

    /// Gap: teloxide requires `mime_type` (optional in the Bot API) on videos, audios, voices
    /// and animations: a voice without it reads as `Empty`, an animation as a document.
    #[test]
    fn media_without_a_mime_type_is_still_relayed() {
        let voice = msg(json!({"voice": {"file_id": "v", "file_unique_id": "vu", "duration": 1}}));
        assert_eq!(spec().check_update(&voice), Ok(()));
        let tg::UpdateKind::Message(tm) = tg::Update::deserialize(&voice).expect("update").kind else { panic!() };
        assert!(matches!(tm.kind, tg::MessageKind::Empty {}), "still a teloxide gap? {:?}", tm.kind);
        let Event::Message(m) = parse(&voice) else { panic!() };
        assert!(matches!(m.content(), Content::Media { kind: MediaKind::Voice, file } if file.file_id == "v" && file.file_size.is_none()));

        let file = json!({"file_id": "a", "file_unique_id": "au", "file_name": "a.mp4"});
        let animation = msg(
            json!({"animation": with(file.clone(), json!({"width": 1, "height": 1, "duration": 1})), "document": file, "caption": "c"}),
        );
        assert_eq!(spec().check_update(&animation), Ok(()));
        let tg::UpdateKind::Message(tm) = tg::Update::deserialize(&animation).expect("update").kind else { panic!() };
        let tg::MessageKind::Common(c) = tm.kind else { panic!() };
        assert!(matches!(c.media_kind, tg::MediaKind::Document(_)), "still a teloxide gap? {:?}", c.media_kind);
        let Event::Message(m) = parse(&animation) else { panic!() };
        assert!(matches!(m.content(), Content::Media { kind: MediaKind::Animation, .. }));
        assert_eq!(m.caption.as_deref(), Some("c"));
    }

    #[test]
    fn text_entities_replies_and_protection_are_read() {
        let spec = spec();
        let replied = message_of(json!({"message_id": 41, "text": "earlier", "from": {"id": 1, "is_bot": true, "first_name": "Bot"},
            "reply_markup": {"inline_keyboard": [[{"text": "x", "callback_data": "x"}]]}}));
        let raw = update(
            "message",
            message_of(json!({
                "text": "hi @bob https://x.org",
                "entities": [{"type": "bold", "offset": 0, "length": 2}, {"type": "mention", "offset": 3, "length": 4}, {"type": "url", "offset": 8, "length": 13}],
                "link_preview_options": {"is_disabled": true},
                "reply_to_message": replied,
                "has_protected_content": true,
            })),
        );
        assert_eq!(spec.check_update(&raw), Ok(()));
        let Event::Message(m) = parse(&raw) else { panic!() };
        assert_eq!(m.content(), Content::Text);
        assert_eq!(m.text.as_deref(), Some("hi @bob https://x.org"));
        assert_eq!(m.entities.as_ref(), raw.pointer("/message/entities"), "entities forwarded verbatim");
        assert_eq!(m.reply_to_message.as_ref().map(|r| r.message_id), Some(41));
        assert!(m.has_protected_content);
    }

    /// Gap: teloxide's `MessageEntityKind` has no `date_time` (Bot API 10.x): its `MediaText`
    /// fails and its `MessageKind` falls through to `Empty`. The text must still be relayed.
    #[test]
    fn a_text_with_an_entity_teloxide_does_not_know_is_still_a_text() {
        let entities = json!([{"type": "date_time", "offset": 6, "length": 5, "unix_time": 1_781_000_000, "date_time_format": "t"}]);
        let raw = update(
            "message",
            message_of(
                json!({"text": "meet, 10:00", "entities": entities, "reply_to_message": message_of(json!({"message_id": 40, "text": "when?"}))}),
            ),
        );
        assert_eq!(spec().check_update(&raw), Ok(()));
        let whole = tg::Update::deserialize(&raw).expect("update");
        let tg::UpdateKind::Message(tm) = whole.kind else { panic!() };
        assert!(matches!(tm.kind, tg::MessageKind::Empty {}), "still a teloxide gap? {:?}", tm.kind);
        let Event::Message(m) = parse(&raw) else { panic!() };
        assert_eq!(m.content(), Content::Text);
        assert_eq!(m.text.as_deref(), Some("meet, 10:00"));
        assert_eq!(m.entities, Some(entities));
        assert_eq!(m.reply_to_message.map(|r| r.message_id), Some(40));
        // The same for an edit.
        let Event::Edited(e) = parse(&update("edited_message", raw["message"].clone())) else { panic!() };
        assert_eq!(e.text.as_deref(), Some("meet, 10:00"));
    }

    #[test]
    fn a_message_teloxide_cannot_parse_is_answered_not_dropped() {
        // No `date` (required): teloxide fails the whole message; the envelope holds.
        let no_date = json!({"update_id": 1, "message": {"message_id": 5, "chat": {"id": 7, "type": "private"}, "from": {"id": 7, "is_bot": false, "first_name": "A"}}});
        let Event::Message(m) = parse(&no_date) else { panic!() };
        assert_eq!((m.message_id, m.content()), (5, Content::Unsupported));
        let mut with_text = no_date.clone();
        with_text["message"]["text"] = json!("hello");
        let Event::Message(m) = parse(&with_text) else { panic!() };
        assert_eq!(m.text.as_deref(), Some("hello"));
        // A bot's message, a channel's: not ours to answer.
        let mut from_bot = no_date.clone();
        from_bot["message"]["from"]["is_bot"] = json!(true);
        assert!(matches!(parse(&from_bot), Event::Ignored("not_private")));
        // Never a panic, whatever the shape.
        for body in [
            json!(null),
            json!([]),
            json!("x"),
            json!({"message_id": "x", "chat": 1}),
            json!({"message_id": 1, "chat": {"id": 1}, "photo": "x"}),
        ] {
            for kind in ["message", "edited_message", "callback_query", "pre_checkout_query", "my_chat_member", "poll"] {
                let _ = parse(&json!({"update_id": 1, kind: body.clone()}));
            }
        }
        assert!(matches!(parse(&json!({"update_id": 1})), Event::Ignored("other_kind")));
        assert!(matches!(parse(&json!([1])), Event::Ignored("other_kind")));
    }

    #[test]
    fn edited_messages_are_edits() {
        let raw = update(
            "edited_message",
            message_of(json!({"text": "fixed", "edit_date": 1_781_000_100, "entities": [{"type": "code", "offset": 0, "length": 5}]})),
        );
        assert_eq!(spec().check_update(&raw), Ok(()));
        let Event::Edited(m) = parse(&raw) else { panic!() };
        assert_eq!((m.message_id, m.text.as_deref()), (42, Some("fixed")));
        assert_eq!(m.entities, Some(json!([{"type": "code", "offset": 0, "length": 5}])));
    }

    #[test]
    fn callbacks_on_accessible_and_inaccessible_messages() {
        let spec = spec();
        let inaccessible = update(
            "callback_query",
            json!({"id": "q1", "from": ann(), "chat_instance": "-55", "data": "rate:s1:up",
                   "message": {"message_id": 40, "date": 0, "chat": {"id": 7, "type": "private", "first_name": "Ann"}}}),
        );
        assert_eq!(spec.check_update(&inaccessible), Ok(()));
        let Event::Callback(q) = parse(&inaccessible) else { panic!() };
        assert_eq!((q.id.as_str(), q.from.id, q.data.as_deref()), ("q1", 7, Some("rate:s1:up")));
        let m = q.message.expect("message");
        assert_eq!((m.message_id, m.chat.id, m.chat.kind.as_str()), (40, 7, "private"));

        let bot_message = with(
            message_of(
                json!({"message_id": 41, "text": "Rate?", "reply_markup": {"inline_keyboard": [[{"text": "👍", "callback_data": "rate:s1:up"}]]}}),
            ),
            json!({"from": {"id": 1, "is_bot": true, "first_name": "Bot", "username": "alpha_bot"}}),
        );
        let accessible =
            update("callback_query", json!({"id": "q2", "from": ann(), "chat_instance": "-55", "data": "x", "message": bot_message}));
        assert_eq!(spec.check_update(&accessible), Ok(()));
        let Event::Callback(q) = parse(&accessible) else { panic!() };
        assert_eq!(q.message.map(|m| m.message_id), Some(41));
        // No message (an inline message's button), no data (a game): still a callback.
        let Event::Callback(q) =
            parse(&update("callback_query", json!({"id": "q3", "from": ann(), "chat_instance": "1", "inline_message_id": "i"})))
        else {
            panic!()
        };
        assert!(q.message.is_none() && q.data.is_none());
        assert!(matches!(parse(&update("callback_query", json!({"id": "q4", "chat_instance": "1"}))), Event::Ignored("malformed")));
    }

    #[test]
    fn payments_are_read_in_full() {
        let spec = spec();
        let pre = update(
            "pre_checkout_query",
            json!({"id": "pcq1", "from": ann(), "currency": "XTR", "total_amount": 250, "invoice_payload": "q:abc"}),
        );
        assert_eq!(spec.check_update(&pre), Ok(()));
        let Event::PreCheckout(q) = parse(&pre) else { panic!() };
        assert_eq!(
            (q.id.as_str(), q.from.id, q.currency.as_str(), q.total_amount, q.invoice_payload.as_str()),
            ("pcq1", 7, "XTR", 250, "q:abc")
        );

        let paid = update(
            "message",
            message_of(json!({"successful_payment": {
                "currency": "XTR", "total_amount": 250, "invoice_payload": "q:abc",
                "subscription_expiration_date": 1_783_600_000, "is_recurring": true, "is_first_recurring": true,
                "telegram_payment_charge_id": "ch_1", "provider_payment_charge_id": "",
            }})),
        );
        assert_eq!(spec.check_update(&paid), Ok(()));
        let Event::Message(m) = parse(&paid) else { panic!() };
        let p = m.successful_payment.expect("payment");
        assert_eq!(
            (p.currency.as_str(), p.total_amount, p.invoice_payload.as_str(), p.telegram_payment_charge_id.as_str()),
            ("XTR", 250, "q:abc", "ch_1")
        );
        assert!(p.is_recurring);
        assert_eq!(p.subscription_expiration_date, Some(1_783_600_000));

        let refund = json!({"currency": "XTR", "total_amount": 250, "invoice_payload": "q:abc", "telegram_payment_charge_id": "ch_1"});
        let refunded = update("message", message_of(json!({"refunded_payment": refund})));
        assert_eq!(spec.check_update(&refunded), Ok(()));
        let Event::Message(m) = parse(&refunded) else { panic!() };
        assert_eq!(m.refunded_payment, Some(refund));
        assert!(m.successful_payment.is_none());
    }

    /// Money is never dropped: a payment teloxide cannot read (here an amount beyond its
    /// `u32`) is read from the raw JSON.
    #[test]
    fn a_payment_teloxide_cannot_read_is_still_applied() {
        let raw = update(
            "message",
            message_of(json!({"successful_payment": {
                "currency": "XTR", "total_amount": 5_000_000_000_i64, "invoice_payload": "q:abc",
                "telegram_payment_charge_id": "ch_2", "provider_payment_charge_id": "",
            }})),
        );
        let Event::Message(m) = parse(&raw) else { panic!() };
        let p = m.successful_payment.expect("payment");
        assert_eq!((p.total_amount, p.telegram_payment_charge_id.as_str()), (5_000_000_000, "ch_2"));
    }

    #[test]
    fn blocking_and_unblocking_the_bot() {
        let spec = spec();
        let bot = json!({"id": 1, "is_bot": true, "first_name": "Bot", "username": "alpha_bot"});
        let chat = json!({"id": 7, "type": "private", "first_name": "Ann"});
        for (old, new) in [
            (json!({"status": "member", "user": bot, "tag": "t"}), json!({"status": "kicked", "user": bot, "until_date": 0})),
            (json!({"status": "kicked", "user": bot, "until_date": 0}), json!({"status": "member", "user": bot})),
        ] {
            let want = new["status"].as_str().unwrap_or_default().to_string();
            let raw = update(
                "my_chat_member",
                json!({"chat": chat, "from": ann(), "date": 1_781_000_000, "old_chat_member": old, "new_chat_member": new}),
            );
            assert_eq!(spec.check_update(&raw), Ok(()));
            let Event::MemberStatus { user, status } = parse(&raw) else { panic!() };
            assert_eq!((user.id, user.language_code.as_deref(), status), (7, Some("ru"), want));
        }
        let group = update(
            "my_chat_member",
            json!({"chat": {"id": -5, "type": "group", "title": "G"}, "from": ann(), "date": 1,
                   "old_chat_member": {"status": "left", "user": bot}, "new_chat_member": {"status": "member", "user": bot}}),
        );
        assert!(matches!(parse(&group), Event::Ignored("not_private")));
    }
}
