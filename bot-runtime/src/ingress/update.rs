//! The parts of Telegram's Update the runtime reads, parsed leniently: unknown fields are
//! ignored, and an update of a kind we don't handle (or of an unexpected shape) parses to
//! [`Event::Ignored`] rather than failing — Telegram would otherwise redeliver it forever.

use serde::Deserialize;
use serde_json::Value;

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

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub message_id: i64,
    #[serde(default)]
    pub from: Option<From>,
    pub chat: Chat,
    #[serde(default)]
    pub text: Option<String>,
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
}

/// Telegram asks whether to take a payment; the bot must answer within 10 s.
#[derive(Debug, Clone, Deserialize)]
pub struct PreCheckoutQuery {
    pub id: String,
    pub from: From,
    pub currency: String,
    pub total_amount: i64,
    pub invoice_payload: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CallbackQuery {
    pub id: String,
    pub from: From,
    #[serde(default)]
    pub message: Option<CallbackMessage>,
    #[serde(default)]
    pub data: Option<String>,
}

/// The message a button belongs to (may be "inaccessible": then only chat and id are set).
#[derive(Debug, Clone, Deserialize)]
pub struct CallbackMessage {
    pub message_id: i64,
    pub chat: Chat,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatMemberUpdated {
    pub chat: Chat,
    pub from: From,
    pub new_chat_member: NewMember,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NewMember {
    pub status: String,
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
    if let Some(m) = raw.get("message") {
        return match Message::deserialize(m) {
            Ok(m) if m.chat.kind == "private" && m.from.as_ref().is_some_and(|f| !f.is_bot) => Event::Message(Box::new(m)),
            Ok(_) => Event::Ignored("not_private"),
            Err(_) => Event::Ignored("malformed"),
        };
    }
    if let Some(m) = raw.get("edited_message") {
        return match Message::deserialize(m) {
            Ok(m) if m.chat.kind == "private" && m.from.as_ref().is_some_and(|f| !f.is_bot) => Event::Edited(Box::new(m)),
            Ok(_) => Event::Ignored("not_private"),
            Err(_) => Event::Ignored("malformed"),
        };
    }
    if let Some(q) = raw.get("callback_query") {
        return match CallbackQuery::deserialize(q) {
            Ok(q) => Event::Callback(q),
            Err(_) => Event::Ignored("malformed"),
        };
    }
    if let Some(q) = raw.get("pre_checkout_query") {
        return match PreCheckoutQuery::deserialize(q) {
            Ok(q) => Event::PreCheckout(q),
            Err(_) => Event::Ignored("malformed"),
        };
    }
    if let Some(c) = raw.get("my_chat_member") {
        return match ChatMemberUpdated::deserialize(c) {
            Ok(c) if c.chat.kind == "private" => Event::MemberStatus { user: c.from, status: c.new_chat_member.status },
            Ok(_) => Event::Ignored("not_private"),
            Err(_) => Event::Ignored("malformed"),
        };
    }
    Event::Ignored("other_kind")
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
}
