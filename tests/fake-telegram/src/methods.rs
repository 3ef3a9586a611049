//! The Bot API methods the fake implements, each as Telegram answers it.
//!
//! Every function here runs under the world lock and never waits. Methods that wait
//! (getUpdates long polls) or start background work (webhook delivery) have their
//! synchronous halves here and their waiting halves in `server.rs`.

use serde_json::{Value, json};

use super::html;
use super::params::{ApiError, ApiResult, ChatRef, InputFile, Params};
use super::state::{
    Charge, InboxEvent, InvoiceSpec, MAX_DOWNLOAD_BYTES, MAX_UPLOAD_BYTES, MediaKind, Subscription, Webhook, World, unix_now,
};

/// Every method the fake serves, by its canonical name. Lookups are case-insensitive
/// (teloxide sends `SendMessage`, Telegram accepts any case).
pub const METHODS: &[&str] = &[
    "getMe",
    "getUpdates",
    "setWebhook",
    "deleteWebhook",
    "getWebhookInfo",
    "sendMessage",
    "copyMessage",
    "copyMessages",
    "forwardMessage",
    "sendPhoto",
    "sendVideo",
    "sendVoice",
    "sendAudio",
    "sendDocument",
    "sendSticker",
    "sendAnimation",
    "sendVideoNote",
    "sendChatAction",
    "editMessageText",
    "editMessageReplyMarkup",
    "deleteMessage",
    "answerCallbackQuery",
    "getChatMember",
    "setMyCommands",
    "getMyCommands",
    "deleteMyCommands",
    "setMyDescription",
    "getMyDescription",
    "setMyShortDescription",
    "getMyShortDescription",
    "getFile",
    "sendInvoice",
    "createInvoiceLink",
    "answerPreCheckoutQuery",
    "refundStarPayment",
    "getStarTransactions",
    "getMyStarBalance",
    "editUserStarSubscription",
];

pub fn canonical(method: &str) -> Option<&'static str> {
    METHODS.iter().copied().find(|m| m.eq_ignore_ascii_case(method))
}

const MAX_TEXT: usize = 4096;
const MAX_CAPTION: usize = 1024;
const MAX_PHOTO_UPLOAD: usize = 10 * 1024 * 1024;
/// Content fields a copy carries over (everything that is not metadata of the original).
const CONTENT_FIELDS: &[&str] = &[
    "text",
    "entities",
    "photo",
    "video",
    "voice",
    "audio",
    "document",
    "sticker",
    "animation",
    "video_note",
    "caption",
    "caption_entities",
    "has_media_spoiler",
    "contact",
    "location",
];
/// Service messages Telegram refuses to copy or forward.
const SERVICE_FIELDS: &[&str] = &["invoice", "successful_payment", "refunded_payment"];

/// Runs one synchronous method. `getUpdates` is not here: it may wait (see server.rs).
pub fn call(world: &mut World, bot_id: i64, method: &str, p: &Params) -> ApiResult<Value> {
    match method {
        "getMe" => Ok(world.bot(bot_id)?.get_me_json()),
        "setWebhook" => set_webhook(world, bot_id, p),
        "deleteWebhook" => delete_webhook(world, bot_id, p),
        "getWebhookInfo" => webhook_info(world, bot_id),
        "sendMessage" => send_message(world, bot_id, p),
        "copyMessage" => copy_message(world, bot_id, p),
        "copyMessages" => copy_messages(world, bot_id, p),
        "forwardMessage" => forward_message(world, bot_id, p),
        "sendChatAction" => {
            let chat = world.writable_chat(bot_id, &p.chat_ref("chat_id")?)?;
            p.str("action")?;
            let _ = chat;
            Ok(json!(true))
        }
        "editMessageText" => edit_message_text(world, bot_id, p),
        "editMessageReplyMarkup" => edit_message_reply_markup(world, bot_id, p),
        "deleteMessage" => delete_message(world, bot_id, p),
        "answerCallbackQuery" => answer_callback_query(world, bot_id, p),
        "getChatMember" => get_chat_member(world, bot_id, p),
        "setMyCommands" => set_my_commands(world, bot_id, p),
        "getMyCommands" => {
            let key = commands_key(p)?;
            Ok(world.bot(bot_id)?.commands.get(&key).cloned().unwrap_or_else(|| json!([])))
        }
        "deleteMyCommands" => {
            let key = commands_key(p)?;
            world.bot_mut(bot_id)?.commands.remove(&key);
            Ok(json!(true))
        }
        "setMyDescription" => set_my_description(world, bot_id, p, "description", 512),
        "setMyShortDescription" => set_my_description(world, bot_id, p, "short_description", 120),
        "getMyDescription" => get_my_description(world, bot_id, p, "description"),
        "getMyShortDescription" => get_my_description(world, bot_id, p, "short_description"),
        "getFile" => get_file(world, bot_id, p),
        "sendInvoice" => send_invoice(world, bot_id, p),
        "createInvoiceLink" => create_invoice_link(world, bot_id, p),
        "answerPreCheckoutQuery" => answer_pre_checkout_query(world, bot_id, p),
        "refundStarPayment" => refund_star_payment(world, bot_id, p),
        "getStarTransactions" => get_star_transactions(world, bot_id, p),
        "editUserStarSubscription" => edit_user_star_subscription(world, bot_id, p),
        "getMyStarBalance" => {
            let bot = world.bot(bot_id)?;
            // The tenths a paid broadcast took ahead and has not used yet.
            Ok(match bot.paid_credit_tenths {
                0 => json!({"amount": bot.star_balance}),
                tenths => json!({"amount": bot.star_balance, "nanostar_amount": tenths * 100_000_000}),
            })
        }
        other => match MediaKind::ALL.iter().find(|k| k.send_method() == other) {
            Some(kind) => send_media(world, bot_id, *kind, p),
            None => Err(ApiError::not_found()),
        },
    }
}

// ---- building messages ---------------------------------------------------------------------

/// A new message from the bot in a private chat, with its id taken from the chat's sequence.
fn new_bot_message(world: &mut World, bot_id: i64, chat_id: i64) -> ApiResult<Value> {
    let from = world.bot(bot_id)?.user_json();
    let chat = world.users.get(&chat_id).map(|u| u.to_private_chat_json()).ok_or_else(|| ApiError::bad_request("chat not found"))?;
    let message_id = world.chat_mut(bot_id, chat_id)?.next_id();
    Ok(json!({"message_id": message_id, "from": from, "chat": chat, "date": unix_now()}))
}

/// Stores the message in the chat's history and hands it to the simulated user.
fn store_and_deliver(world: &mut World, bot_id: i64, chat_id: i64, message: Value) -> ApiResult<Value> {
    let id = message["message_id"].as_i64().unwrap_or_default();
    world.chat_mut(bot_id, chat_id)?.store(id, message.clone());
    world.deliver_to_user(bot_id, chat_id, InboxEvent::Message { message: message.clone() });
    Ok(message)
}

/// Text (or a caption) with its entities, from parse_mode or explicit entities.
fn formatted(p: &Params, text_key: &str, mode_key: &str, entities_key: &str, raw: &str) -> ApiResult<(String, Vec<Value>)> {
    let mode = p.opt_str(mode_key)?.filter(|m| !m.is_empty());
    let explicit = p.opt_json(entities_key, "message entities")?;
    let _ = text_key;
    match (mode.as_deref(), explicit) {
        (Some(m), _) if m.eq_ignore_ascii_case("html") => {
            html::parse_html(raw).map_err(|e| ApiError::bad_request(format!("can't parse entities: {e}")))
        }
        // The fake does not parse Markdown: the text goes through as plain text.
        (Some(m), _) if m.eq_ignore_ascii_case("markdownv2") || m.eq_ignore_ascii_case("markdown") => Ok((raw.to_string(), vec![])),
        (Some(m), _) => Err(ApiError::bad_request(format!("unsupported parse_mode \"{m}\""))),
        (None, Some(Value::Array(list))) => {
            let checked = html::check_entities(raw, &list).map_err(ApiError::bad_request)?;
            Ok((raw.to_string(), checked))
        }
        (None, Some(_)) => Err(ApiError::bad_request("can't parse entities JSON object")),
        (None, None) => Ok((raw.to_string(), vec![])),
    }
}

/// Validates reply_markup as Telegram does; returns the inline keyboard a Message carries
/// (reply keyboards, removal and force-reply are not part of the Message object).
fn reply_markup(p: &Params) -> ApiResult<Option<Value>> {
    let Some(markup) = p.opt_json("reply_markup", "reply keyboard markup")? else {
        return Ok(None);
    };
    let Some(obj) = markup.as_object() else {
        return Err(ApiError::bad_request("object expected as reply markup"));
    };
    if let Some(rows) = obj.get("inline_keyboard") {
        check_inline_keyboard(rows)?;
        return Ok(Some(json!({"inline_keyboard": rows})));
    }
    if let Some(rows) = obj.get("keyboard") {
        let rows =
            rows.as_array().ok_or_else(|| ApiError::bad_request("field \"keyboard\" of the ReplyKeyboardMarkup should be an Array"))?;
        for row in rows {
            for button in row.as_array().ok_or_else(|| ApiError::bad_request("keyboard row must be an Array"))? {
                let text = button.as_str().or_else(|| button.get("text").and_then(Value::as_str));
                if text.is_none_or(str::is_empty) {
                    return Err(ApiError::bad_request("keyboard button text must be non-empty"));
                }
            }
        }
        return Ok(None);
    }
    if obj.get("remove_keyboard").is_some() || obj.get("force_reply").is_some() {
        return Ok(None);
    }
    Err(ApiError::bad_request("object expected as reply markup"))
}

fn check_inline_keyboard(rows: &Value) -> ApiResult<()> {
    const ACTIONS: &[&str] = &[
        "url",
        "callback_data",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    ];
    let rows = rows
        .as_array()
        .ok_or_else(|| ApiError::bad_request("field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays"))?;
    for row in rows {
        let buttons = row
            .as_array()
            .ok_or_else(|| ApiError::bad_request("field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays"))?;
        for b in buttons {
            if b.get("text").and_then(Value::as_str).is_none_or(str::is_empty) {
                return Err(ApiError::bad_request("can't find field \"text\""));
            }
            let actions = ACTIONS.iter().filter(|a| b.get(**a).is_some()).count();
            if actions == 0 {
                return Err(ApiError::bad_request("text buttons are unallowed in the inline keyboard"));
            }
            if let Some(data) = b.get("callback_data") {
                let len = data.as_str().map(str::len).unwrap_or(0);
                if !(1..=64).contains(&len) {
                    return Err(ApiError::bad_request("BUTTON_DATA_INVALID"));
                }
            }
            if let Some(url) = b.get("url") {
                let ok = url.as_str().is_some_and(|u| u.starts_with("https://") || u.starts_with("http://") || u.starts_with("tg://"));
                if !ok {
                    return Err(ApiError::bad_request("BUTTON_URL_INVALID"));
                }
            }
        }
    }
    Ok(())
}

/// What a new message replies to: a message of the same chat (`reply_to_message`) or of
/// another chat (`external_reply`, as Telegram shows cross-chat replies).
enum Reply {
    Same(Value),
    External(Value),
}

fn attach_reply(msg: &mut Value, reply: Option<Reply>) {
    match reply {
        Some(Reply::Same(m)) => msg["reply_to_message"] = m,
        Some(Reply::External(info)) => msg["external_reply"] = info,
        None => {}
    }
}

/// The message this one replies to, from reply_parameters (or the legacy reply_to_message_id).
fn reply_target(world: &World, bot_id: i64, chat_id: i64, p: &Params) -> ApiResult<Option<Reply>> {
    let (message_id, in_chat, lenient) = match p.opt_json("reply_parameters", "reply parameters")? {
        Some(rp) => {
            let mid =
                rp.get("message_id").and_then(Value::as_i64).ok_or_else(|| ApiError::bad_request("message to be replied not found"))?;
            let chat = match rp.get("chat_id") {
                Some(Value::Number(n)) => n.as_i64().unwrap_or(chat_id),
                Some(Value::String(s)) => s.parse().unwrap_or(chat_id),
                _ => chat_id,
            };
            (mid, chat, rp.get("allow_sending_without_reply").and_then(Value::as_bool).unwrap_or(false))
        }
        None => match p.opt_i64("reply_to_message_id")? {
            Some(mid) => (mid, chat_id, p.bool_or("allow_sending_without_reply", false)?),
            None => return Ok(None),
        },
    };
    match world.message(bot_id, in_chat, message_id) {
        Some(m) if in_chat == chat_id => {
            let mut quoted = m.clone();
            if let Some(o) = quoted.as_object_mut() {
                o.remove("reply_to_message");
                o.remove("external_reply");
            }
            Ok(Some(Reply::Same(quoted)))
        }
        Some(m) => {
            let mut info = json!({"origin": {"type": "user", "date": m["date"], "sender_user": m["from"]}});
            for f in ["photo", "video", "voice", "audio", "document", "sticker", "animation", "video_note"] {
                if let Some(v) = m.get(f) {
                    info[f] = v.clone();
                }
            }
            Ok(Some(Reply::External(info)))
        }
        None if lenient => Ok(None),
        None => Err(ApiError::bad_request("message to be replied not found")),
    }
}

fn check_len(text: &str, max: usize, too_long: &str) -> ApiResult<()> {
    if text.chars().count() > max { Err(ApiError::bad_request(too_long)) } else { Ok(()) }
}

// ---- sending -------------------------------------------------------------------------------

fn send_message(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let chat_id = world.writable_chat(bot_id, &p.chat_ref("chat_id")?)?;
    let raw = p.opt_str("text")?.unwrap_or_default();
    let (text, entities) = formatted(p, "text", "parse_mode", "entities", &raw)?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("message text is empty"));
    }
    check_len(&text, MAX_TEXT, "message is too long")?;
    let markup = reply_markup(p)?;
    let reply = reply_target(world, bot_id, chat_id, p)?;
    let paid = p.bool_or("allow_paid_broadcast", false)?;
    world.charge_sends_as(bot_id, chat_id, 1, paid)?;
    let mut msg = new_bot_message(world, bot_id, chat_id)?;
    msg["text"] = json!(text);
    if !entities.is_empty() {
        msg["entities"] = json!(entities);
    }
    attach_reply(&mut msg, reply);
    if let Some(m) = markup {
        msg["reply_markup"] = m;
    }
    store_and_deliver(world, bot_id, chat_id, msg)
}

fn send_media(world: &mut World, bot_id: i64, kind: MediaKind, p: &Params) -> ApiResult<Value> {
    let chat_id = world.writable_chat(bot_id, &p.chat_ref("chat_id")?)?;
    let field = kind.field();
    let input = p.input_file(field)?.ok_or_else(|| ApiError::bad_request(format!("there is no {field} in the request")))?;
    // Everything is checked before a new file is stored: a refused call leaves nothing behind.
    let existing = match &input {
        InputFile::FileId(id) => {
            let rec = world
                .files
                .get(id)
                .filter(|f| f.owner_bot == bot_id)
                .cloned()
                .ok_or_else(|| ApiError::bad_request("wrong file identifier/HTTP URL specified"))?;
            if !kind.accepts(rec.kind) {
                return Err(ApiError::bad_request(format!("can't use file of type {:?} as {:?}", rec.kind, kind)));
            }
            Some(rec)
        }
        // The fake has no internet to fetch from, as a bot's URL might point anywhere.
        InputFile::Url(_) => return Err(ApiError::bad_request("failed to get HTTP URL content")),
        InputFile::Upload(upload) => {
            if upload.data.len() > MAX_UPLOAD_BYTES {
                return Err(ApiError::server(413, "Request Entity Too Large"));
            }
            if upload.data.is_empty() {
                return Err(ApiError::bad_request("file must be non-empty"));
            }
            if kind == MediaKind::Photo && upload.data.len() > MAX_PHOTO_UPLOAD {
                return Err(ApiError::bad_request("PHOTO_SAVE_FILE_INVALID"));
            }
            None
        }
    };
    let caption = if kind.has_caption() { p.opt_str("caption")?.unwrap_or_default() } else { String::new() };
    let (caption, caption_entities) = formatted(p, "caption", "parse_mode", "caption_entities", &caption)?;
    check_len(&caption, MAX_CAPTION, "message caption is too long")?;
    let markup = reply_markup(p)?;
    let reply = reply_target(world, bot_id, chat_id, p)?;
    world.charge_send(bot_id, chat_id)?;
    let file = match (existing, input) {
        (Some(rec), _) => rec,
        (None, InputFile::Upload(upload)) => {
            let size = upload.data.len() as u64;
            world.new_file(bot_id, kind, Some(upload.data), size, upload.content_type, upload.file_name)
        }
        (None, _) => return Err(ApiError::bad_request("wrong file identifier/HTTP URL specified")),
    };
    let meta = p.as_json();
    let media = world.media_json(&file, kind, &meta);
    let mut msg = new_bot_message(world, bot_id, chat_id)?;
    msg[field] = media;
    if !caption.is_empty() {
        msg["caption"] = json!(caption);
    }
    if !caption_entities.is_empty() {
        msg["caption_entities"] = json!(caption_entities);
    }
    attach_reply(&mut msg, reply);
    if let Some(m) = markup {
        msg["reply_markup"] = m;
    }
    store_and_deliver(world, bot_id, chat_id, msg)
}

/// The source of a copy or forward, refused when Telegram would refuse it.
fn copy_source(world: &World, bot_id: i64, p: &Params, message_id: i64) -> ApiResult<Option<Value>> {
    let from_chat = world.readable_chat(bot_id, &p.chat_ref("from_chat_id")?)?;
    let Some(src) = world.message(bot_id, from_chat, message_id) else {
        return Ok(None);
    };
    if SERVICE_FIELDS.iter().any(|f| src.get(*f).is_some()) {
        return Err(ApiError::bad_request("message can't be copied"));
    }
    Ok(Some(src.clone()))
}

fn copied_content(src: &Value) -> serde_json::Map<String, Value> {
    CONTENT_FIELDS.iter().filter_map(|f| src.get(*f).map(|v| (f.to_string(), v.clone()))).collect()
}

fn copy_message(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let chat_id = world.writable_chat(bot_id, &p.chat_ref("chat_id")?)?;
    let message_id = p.i64("message_id")?;
    let src = copy_source(world, bot_id, p, message_id)?.ok_or_else(|| ApiError::bad_request("message to copy not found"))?;
    let mut content = copied_content(&src);
    if p.has("caption") {
        let raw = p.opt_str("caption")?.unwrap_or_default();
        let (caption, entities) = formatted(p, "caption", "parse_mode", "caption_entities", &raw)?;
        check_len(&caption, MAX_CAPTION, "message caption is too long")?;
        content.remove("caption");
        content.remove("caption_entities");
        if !caption.is_empty() {
            content.insert("caption".into(), json!(caption));
        }
        if !entities.is_empty() {
            content.insert("caption_entities".into(), json!(entities));
        }
    }
    let markup = reply_markup(p)?;
    let reply = reply_target(world, bot_id, chat_id, p)?;
    world.charge_send(bot_id, chat_id)?;
    let mut msg = new_bot_message(world, bot_id, chat_id)?;
    let new_id = msg["message_id"].clone();
    if let Some(obj) = msg.as_object_mut() {
        obj.extend(content);
    }
    attach_reply(&mut msg, reply);
    if let Some(m) = markup {
        msg["reply_markup"] = m;
    }
    store_and_deliver(world, bot_id, chat_id, msg)?;
    Ok(json!({"message_id": new_id}))
}

fn copy_messages(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let chat_id = world.writable_chat(bot_id, &p.chat_ref("chat_id")?)?;
    let ids = p.opt_json("message_ids", "message identifiers")?.ok_or_else(|| ApiError::bad_request("message_ids is empty"))?;
    let ids: Vec<i64> = ids
        .as_array()
        .ok_or_else(|| ApiError::bad_request("message_ids must be an Array"))?
        .iter()
        .map(|v| v.as_i64().ok_or_else(|| ApiError::bad_request("message_ids must be an Array of Integer")))
        .collect::<ApiResult<_>>()?;
    if ids.is_empty() || ids.len() > 100 {
        return Err(ApiError::bad_request("too many messages to copy"));
    }
    if ids.windows(2).any(|w| w[0] >= w[1]) {
        return Err(ApiError::bad_request("message identifiers must be in strictly increasing order"));
    }
    let remove_caption = p.bool_or("remove_caption", false)?;
    // Messages that can't be found are skipped, as on Telegram; if none is left, it's an error.
    let mut sources = Vec::new();
    for id in ids {
        if let Some(src) = copy_source(world, bot_id, p, id)? {
            sources.push(src);
        }
    }
    if sources.is_empty() {
        return Err(ApiError::bad_request("there are no messages to copy"));
    }
    world.charge_sends(bot_id, chat_id, sources.len() as u32)?;
    let mut out = Vec::new();
    for src in sources {
        let mut content = copied_content(&src);
        if remove_caption {
            content.remove("caption");
            content.remove("caption_entities");
        }
        let mut msg = new_bot_message(world, bot_id, chat_id)?;
        out.push(json!({"message_id": msg["message_id"]}));
        if let Some(obj) = msg.as_object_mut() {
            obj.extend(content);
        }
        store_and_deliver(world, bot_id, chat_id, msg)?;
    }
    Ok(Value::Array(out))
}

fn forward_message(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let chat_id = world.writable_chat(bot_id, &p.chat_ref("chat_id")?)?;
    let message_id = p.i64("message_id")?;
    let src = copy_source(world, bot_id, p, message_id)?.ok_or_else(|| ApiError::bad_request("message to forward not found"))?;
    world.charge_send(bot_id, chat_id)?;
    let mut msg = new_bot_message(world, bot_id, chat_id)?;
    if let Some(obj) = msg.as_object_mut() {
        obj.extend(copied_content(&src));
    }
    msg["forward_origin"] = json!({"type": "user", "date": src["date"], "sender_user": src["from"]});
    store_and_deliver(world, bot_id, chat_id, msg)
}

// ---- editing -------------------------------------------------------------------------------

/// The bot's own message named by chat_id + message_id (inline messages are not simulated).
fn own_message(world: &World, bot_id: i64, p: &Params, not_found: &str) -> ApiResult<(i64, i64, Value)> {
    if p.has("inline_message_id") {
        return Err(ApiError::bad_request("MESSAGE_ID_INVALID"));
    }
    let chat_id = world.readable_chat(bot_id, &p.chat_ref("chat_id")?)?;
    let message_id = p.i64("message_id")?;
    let msg = world.message(bot_id, chat_id, message_id).cloned().ok_or_else(|| ApiError::bad_request(not_found))?;
    if msg["from"]["id"].as_i64() != Some(bot_id) {
        return Err(ApiError::bad_request("message can't be edited"));
    }
    Ok((chat_id, message_id, msg))
}

fn save_edit(world: &mut World, bot_id: i64, chat_id: i64, message_id: i64, mut msg: Value) -> ApiResult<Value> {
    msg["edit_date"] = json!(unix_now());
    world.chat_mut(bot_id, chat_id)?.messages.insert(message_id, msg.clone());
    world.deliver_to_user(bot_id, chat_id, InboxEvent::Edited { message: msg.clone() });
    Ok(msg)
}

fn set_or_remove(msg: &mut Value, key: &str, value: Option<Value>) {
    if let Some(obj) = msg.as_object_mut() {
        match value {
            Some(v) => {
                obj.insert(key.to_string(), v);
            }
            None => {
                obj.remove(key);
            }
        }
    }
}

const NOT_MODIFIED: &str = "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message";

fn edit_message_text(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let (chat_id, message_id, mut msg) = own_message(world, bot_id, p, "message to edit not found")?;
    if msg.get("text").is_none() {
        return Err(ApiError::bad_request("there is no text in the message to edit"));
    }
    let raw = p.opt_str("text")?.unwrap_or_default();
    let (text, entities) = formatted(p, "text", "parse_mode", "entities", &raw)?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("message text is empty"));
    }
    check_len(&text, MAX_TEXT, "message is too long")?;
    let markup = reply_markup(p)?;
    let entities = (!entities.is_empty()).then(|| json!(entities));
    if msg["text"] == json!(text) && msg.get("entities") == entities.as_ref() && msg.get("reply_markup") == markup.as_ref() {
        return Err(ApiError::bad_request(NOT_MODIFIED));
    }
    // Edits count against the same flood limits as sends (Telegram answers 429 to fast edits).
    world.charge_send(bot_id, chat_id)?;
    msg["text"] = json!(text);
    set_or_remove(&mut msg, "entities", entities);
    set_or_remove(&mut msg, "reply_markup", markup);
    save_edit(world, bot_id, chat_id, message_id, msg)
}

fn edit_message_reply_markup(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let (chat_id, message_id, mut msg) = own_message(world, bot_id, p, "message to edit not found")?;
    let markup = reply_markup(p)?;
    if msg.get("reply_markup") == markup.as_ref() {
        return Err(ApiError::bad_request(NOT_MODIFIED));
    }
    world.charge_send(bot_id, chat_id)?;
    set_or_remove(&mut msg, "reply_markup", markup);
    save_edit(world, bot_id, chat_id, message_id, msg)
}

fn delete_message(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let chat_id = world.readable_chat(bot_id, &p.chat_ref("chat_id")?)?;
    let message_id = p.i64("message_id")?;
    let removed = world.chat_mut(bot_id, chat_id)?.messages.remove(&message_id);
    if removed.is_none() {
        return Err(ApiError::bad_request("message to delete not found"));
    }
    world.deliver_to_user(bot_id, chat_id, InboxEvent::Deleted { message_id });
    Ok(json!(true))
}

// ---- callbacks, members, commands, files ---------------------------------------------------

const QUERY_TOO_OLD: &str = "query is too old and response timeout expired or query ID is invalid";

fn answer_callback_query(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let id = p.str("callback_query_id")?;
    let text = p.opt_str("text")?.filter(|t| !t.is_empty());
    if text.as_ref().is_some_and(|t| t.chars().count() > 200) {
        return Err(ApiError::bad_request("MESSAGE_TOO_LONG"));
    }
    let show_alert = p.bool_or("show_alert", false)?;
    let url = p.opt_str("url")?;
    let bot = world.bot_mut(bot_id)?;
    let user_id = match bot.callback_queries.get_mut(&id) {
        Some((user, answered)) if !*answered => {
            *answered = true;
            *user
        }
        _ => return Err(ApiError::bad_request(QUERY_TOO_OLD)),
    };
    world.deliver_to_user(bot_id, user_id, InboxEvent::CallbackAnswer { callback_query_id: id, text, show_alert, url });
    Ok(json!(true))
}

fn get_chat_member(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let chat = p.chat_ref("chat_id")?;
    let user_id = p.i64("user_id")?;
    let user = world.users.get(&user_id).map(|u| u.to_user_json()).ok_or_else(|| ApiError::bad_request("PARTICIPANT_ID_INVALID"))?;
    let channel = world.channels.values().find(|c| match &chat {
        ChatRef::Id(id) => c.id == *id,
        ChatRef::Username(name) => c.username.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(name)),
    });
    let status = match channel {
        Some(c) => {
            if c.admin_bots.as_ref().is_some_and(|admins| !admins.contains(&bot_id)) {
                return Err(ApiError::bad_request("member list is inaccessible"));
            }
            c.members.get(&user_id).cloned().unwrap_or_else(|| "left".into())
        }
        None => {
            // A private chat with the bot: the user is its member.
            let id = world.readable_chat(bot_id, &chat)?;
            if id != user_id {
                return Err(ApiError::bad_request("PARTICIPANT_ID_INVALID"));
            }
            "member".into()
        }
    };
    Ok(chat_member_json(&status, user))
}

/// A ChatMember object with the fields its subtype requires.
pub fn chat_member_json(status: &str, user: Value) -> Value {
    match status {
        "creator" => json!({"status": "creator", "user": user, "is_anonymous": false}),
        "administrator" => json!({
            "status": "administrator", "user": user, "can_be_edited": false, "is_anonymous": false,
            "can_manage_chat": true, "can_delete_messages": true, "can_manage_video_chats": true,
            "can_restrict_members": true, "can_promote_members": false, "can_change_info": true,
            "can_invite_users": true, "can_post_stories": false, "can_edit_stories": false, "can_delete_stories": false,
        }),
        "restricted" => json!({
            "status": "restricted", "user": user, "is_member": true, "can_send_messages": false,
            "can_send_audios": false, "can_send_documents": false, "can_send_photos": false,
            "can_send_videos": false, "can_send_video_notes": false, "can_send_voice_notes": false,
            "can_send_polls": false, "can_send_other_messages": false, "can_add_web_page_previews": false,
            "can_react_to_messages": false, "can_edit_tag": false, "can_change_info": false,
            "can_invite_users": false, "can_pin_messages": false, "can_manage_topics": false, "until_date": 0,
        }),
        "kicked" => json!({"status": "kicked", "user": user, "until_date": 0}),
        "member" => json!({"status": "member", "user": user}),
        _ => json!({"status": "left", "user": user}),
    }
}

/// 42 and "42" name the same chat.
fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn commands_key(p: &Params) -> ApiResult<String> {
    // A scope is its type plus the chat and user it names (per-chat lists are distinct).
    let scope = match p.opt_json("scope", "bot command scope")? {
        Some(s) => format!(
            "{}:{}:{}",
            s.get("type").and_then(Value::as_str).unwrap_or("default"),
            s.get("chat_id").map(id_text).unwrap_or_default(),
            s.get("user_id").map(id_text).unwrap_or_default()
        ),
        None => "default::".into(),
    };
    let lang = p.opt_str("language_code")?.unwrap_or_default();
    Ok(format!("{scope}/{lang}"))
}

fn set_my_commands(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let commands = p.opt_json("commands", "bot commands")?.ok_or_else(|| ApiError::bad_request("commands is empty"))?;
    let list = commands.as_array().ok_or_else(|| ApiError::bad_request("field \"commands\" must be an Array"))?;
    if list.len() > 100 {
        return Err(ApiError::bad_request("too many commands"));
    }
    for c in list {
        let name = c.get("command").and_then(Value::as_str).unwrap_or("");
        let valid = (1..=32).contains(&name.len()) && name.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
        if !valid {
            return Err(ApiError::bad_request("BOT_COMMAND_INVALID"));
        }
        let desc = c.get("description").and_then(Value::as_str).unwrap_or("");
        if !(1..=256).contains(&desc.chars().count()) {
            return Err(ApiError::bad_request("BOT_COMMAND_DESCRIPTION_INVALID"));
        }
    }
    let key = commands_key(p)?;
    world.bot_mut(bot_id)?.commands.insert(key, commands);
    Ok(json!(true))
}

/// `setMyDescription` (≤ 512 characters) and `setMyShortDescription` (≤ 120), per language
/// code; an empty or absent text removes it (the default-language text then shows).
fn set_my_description(world: &mut World, bot_id: i64, p: &Params, kind: &str, max: usize) -> ApiResult<Value> {
    let text = p.opt_str(kind)?.unwrap_or_default();
    if text.chars().count() > max {
        return Err(ApiError::bad_request(format!("{} is too long", kind.replace('_', " "))));
    }
    let key = (kind.to_string(), p.opt_str("language_code")?.unwrap_or_default());
    let bot = world.bot_mut(bot_id)?;
    if text.is_empty() {
        bot.descriptions.remove(&key);
    } else {
        bot.descriptions.insert(key, text);
    }
    Ok(json!(true))
}

/// `getMyDescription` / `getMyShortDescription`: the language's text, else the default one.
fn get_my_description(world: &mut World, bot_id: i64, p: &Params, kind: &str) -> ApiResult<Value> {
    let lang = p.opt_str("language_code")?.unwrap_or_default();
    let bot = world.bot(bot_id)?;
    let text = bot
        .descriptions
        .get(&(kind.to_string(), lang))
        .or_else(|| bot.descriptions.get(&(kind.to_string(), String::new())))
        .cloned()
        .unwrap_or_default();
    Ok(json!({ kind: text }))
}

fn get_file(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let id = p.str("file_id")?;
    let rec = world
        .files
        .get(&id)
        .filter(|f| f.owner_bot == bot_id)
        .ok_or_else(|| ApiError::bad_request("wrong file_id or the file is temporarily unavailable"))?;
    if rec.size > MAX_DOWNLOAD_BYTES {
        return Err(ApiError::bad_request("file is too big"));
    }
    Ok(json!({"file_id": rec.file_id, "file_unique_id": rec.unique_id, "file_size": rec.size, "file_path": rec.path}))
}

// ---- Telegram Stars payments ---------------------------------------------------------------

/// Invoice parameters for Stars: currency XTR, exactly one price, no provider token.
fn invoice_spec(p: &Params) -> ApiResult<InvoiceSpec> {
    let title = p.opt_str("title")?.unwrap_or_default();
    if !(1..=32).contains(&title.chars().count()) {
        return Err(ApiError::bad_request("INVOICE_TITLE_EMPTY_OR_TOO_LONG"));
    }
    let description = p.opt_str("description")?.unwrap_or_default();
    if !(1..=255).contains(&description.chars().count()) {
        return Err(ApiError::bad_request("INVOICE_DESCRIPTION_EMPTY_OR_TOO_LONG"));
    }
    let payload = p.opt_str("payload")?.unwrap_or_default();
    if !(1..=128).contains(&payload.len()) {
        return Err(ApiError::bad_request("INVOICE_PAYLOAD_INVALID"));
    }
    let currency = p.str("currency")?;
    if currency != "XTR" {
        return Err(ApiError::bad_request("CURRENCY_INVALID: the fake Telegram sells only in Telegram Stars (XTR)"));
    }
    if p.opt_str("provider_token")?.is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad_request("provider_token must be empty for payments in Telegram Stars"));
    }
    let prices = p.opt_json("prices", "prices")?.ok_or_else(|| ApiError::bad_request("prices is empty"))?;
    let prices = prices.as_array().ok_or_else(|| ApiError::bad_request("field \"prices\" must be an Array"))?;
    if prices.len() != 1 {
        return Err(ApiError::bad_request("STARS_INVOICE_INVALID: exactly one price is allowed for payments in Telegram Stars"));
    }
    let amount = prices[0].get("amount").and_then(Value::as_i64).unwrap_or(0);
    if prices[0].get("label").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(ApiError::bad_request("price label must be non-empty"));
    }
    if !(1..=100_000).contains(&amount) {
        return Err(ApiError::bad_request("STARS_INVOICE_INVALID: amount must be between 1 and 100000"));
    }
    Ok(InvoiceSpec { title, description, payload, currency, amount, subscription_period: None })
}

fn send_invoice(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let chat_id = world.writable_chat(bot_id, &p.chat_ref("chat_id")?)?;
    let spec = invoice_spec(p)?;
    let markup = reply_markup(p)?;
    world.charge_send(bot_id, chat_id)?;
    let mut msg = new_bot_message(world, bot_id, chat_id)?;
    msg["invoice"] = json!({
        "title": spec.title, "description": spec.description,
        "start_parameter": p.opt_str("start_parameter")?.unwrap_or_default(),
        "currency": spec.currency, "total_amount": spec.amount,
    });
    if let Some(m) = markup {
        msg["reply_markup"] = m;
    }
    let message_id = msg["message_id"].as_i64().unwrap_or_default();
    world.chat_mut(bot_id, chat_id)?.invoices.insert(message_id, spec);
    store_and_deliver(world, bot_id, chat_id, msg)
}

/// Telegram's only subscription period (Bot API: "it must always be 2592000 (30 days)").
pub const SUBSCRIPTION_PERIOD: i64 = 2_592_000;
/// Bot API: "Subscription price must no exceed 10000 Telegram Stars".
const MAX_SUBSCRIPTION_STARS: i64 = 10_000;

fn create_invoice_link(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let mut spec = invoice_spec(p)?;
    if let Some(period) = p.opt_i64("subscription_period")? {
        if period != SUBSCRIPTION_PERIOD {
            return Err(ApiError::bad_request("SUBSCRIPTION_PERIOD_INVALID"));
        }
        if spec.amount > MAX_SUBSCRIPTION_STARS {
            return Err(ApiError::bad_request("SUBSCRIPTION_PRICE_INVALID"));
        }
        spec.subscription_period = Some(period);
    }
    let slug = world.opaque_id("");
    world.bot_mut(bot_id)?.invoice_links.insert(slug.clone(), spec);
    Ok(json!(format!("https://t.me/${slug}")))
}

fn answer_pre_checkout_query(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let id = p.str("pre_checkout_query_id")?;
    let ok = p.opt_bool("ok")?.ok_or_else(|| ApiError::bad_request("ok is empty"))?;
    let error = p.opt_str("error_message")?.filter(|e| !e.is_empty());
    if !ok && error.is_none() {
        return Err(ApiError::bad_request("ERROR_MESSAGE_EMPTY"));
    }
    let bot = world.bot_mut(bot_id)?;
    let Some(mut query) = bot.pre_checkouts.remove(&id) else {
        return Err(ApiError::bad_request(QUERY_TOO_OLD));
    };
    if std::time::Instant::now() > query.deadline {
        return Err(ApiError::bad_request(QUERY_TOO_OLD));
    }
    let answer = if ok { Ok(()) } else { Err(error.unwrap_or_default()) };
    if let Some(tx) = query.answer.take() {
        // The payer may have given up already; the answer then simply has nobody to reach.
        let _ = tx.send(answer);
    }
    Ok(json!(true))
}

/// Records a successful payment: the charge, the bot's Stars, the transaction and the service
/// message the bot receives. Called by the sim's pay flow once the bot approved in time.
pub fn complete_payment(world: &mut World, bot_id: i64, user_id: i64, spec: &InvoiceSpec) -> ApiResult<(String, i64)> {
    charge(world, bot_id, user_id, spec, None)
}

/// Renews a subscription: a new charge for the next period, and its service message
/// (`is_recurring`, not `is_first_recurring`). Refused once the subscription is cancelled.
pub fn renew_subscription(world: &mut World, first_charge_id: &str) -> ApiResult<(String, i64)> {
    let sub = world.subscriptions.get(first_charge_id).cloned().ok_or_else(|| ApiError::bad_request("SUBSCRIPTION_NOT_FOUND"))?;
    if sub.canceled {
        return Err(ApiError::bad_request("SUBSCRIPTION_CANCELED"));
    }
    charge(world, sub.bot_id, sub.user_id, &sub.spec, Some(first_charge_id))
}

/// One charge: `renewing` names the subscription a renewal is for.
fn charge(world: &mut World, bot_id: i64, user_id: i64, spec: &InvoiceSpec, renewing: Option<&str>) -> ApiResult<(String, i64)> {
    let charge_id = world.opaque_id("stxch_");
    let date = unix_now();
    let user = world.users.get(&user_id).cloned().ok_or_else(|| ApiError::bad_request("user not found"))?;
    world.charges.insert(
        charge_id.clone(),
        Charge {
            telegram_payment_charge_id: charge_id.clone(),
            bot_id,
            user_id,
            amount: spec.amount,
            payload: spec.payload.clone(),
            date,
            refunded: false,
        },
    );
    let bot = world.bot_mut(bot_id)?;
    bot.star_balance += spec.amount;
    bot.star_transactions.push(json!({
        "id": charge_id, "amount": spec.amount, "date": date,
        "source": {"type": "user", "transaction_type": "invoice_payment", "user": user.to_user_json(), "invoice_payload": spec.payload},
    }));
    if let (Some(period), Some(tx)) = (spec.subscription_period, bot.star_transactions.last_mut()) {
        tx["source"]["subscription_period"] = json!(period);
    }
    let mut payment = json!({
        "currency": spec.currency, "total_amount": spec.amount, "invoice_payload": spec.payload,
        "telegram_payment_charge_id": charge_id, "provider_payment_charge_id": "",
    });
    if let Some(period) = spec.subscription_period {
        let expires = match renewing {
            None => {
                let expires = date + period;
                let sub =
                    Subscription { first_charge_id: charge_id.clone(), bot_id, user_id, spec: spec.clone(), expires, canceled: false };
                world.subscriptions.insert(charge_id.clone(), sub);
                payment["is_first_recurring"] = json!(true);
                expires
            }
            Some(first) => {
                let sub = world.subscriptions.get_mut(first).ok_or_else(|| ApiError::bad_request("SUBSCRIPTION_NOT_FOUND"))?;
                sub.expires = sub.expires.max(date) + period;
                sub.expires
            }
        };
        payment["is_recurring"] = json!(true);
        payment["subscription_expiration_date"] = json!(expires);
    }
    let message_id = user_service_message(world, bot_id, user_id, "successful_payment", payment)?;
    Ok((charge_id, message_id))
}

fn edit_user_star_subscription(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let user_id = p.i64("user_id")?;
    let charge_id = p.str("telegram_payment_charge_id")?;
    let canceled = p.opt_bool("is_canceled")?.ok_or_else(|| ApiError::bad_request("is_canceled is empty"))?;
    let sub = world
        .subscriptions
        .get_mut(&charge_id)
        .filter(|s| s.bot_id == bot_id && s.user_id == user_id)
        .ok_or_else(|| ApiError::bad_request("SUBSCRIPTION_NOT_FOUND"))?;
    sub.canceled = canceled;
    Ok(json!(true))
}

/// A service message in the user's private chat that the bot receives as an update.
fn user_service_message(world: &mut World, bot_id: i64, user_id: i64, field: &str, body: Value) -> ApiResult<i64> {
    let user = world.users.get(&user_id).cloned().ok_or_else(|| ApiError::bad_request("user not found"))?;
    let chat = world.chat_mut(bot_id, user_id)?;
    let message_id = chat.next_id();
    let mut msg = json!({"message_id": message_id, "from": user.to_user_json(), "chat": user.to_private_chat_json(), "date": unix_now()});
    msg[field] = body;
    chat.store(message_id, msg.clone());
    world.push_update(bot_id, "message", msg, user_id);
    Ok(message_id)
}

fn refund_star_payment(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let user_id = p.i64("user_id")?;
    let charge_id = p.str("telegram_payment_charge_id")?;
    let charge = world
        .charges
        .get(&charge_id)
        .filter(|c| c.bot_id == bot_id && c.user_id == user_id)
        .cloned()
        .ok_or_else(|| ApiError::bad_request("CHARGE_NOT_FOUND"))?;
    if charge.refunded {
        return Err(ApiError::bad_request("CHARGE_ALREADY_REFUNDED"));
    }
    let user = world.users.get(&user_id).cloned().ok_or_else(|| ApiError::bad_request("user not found"))?;
    let bot = world.bot_mut(bot_id)?;
    if bot.star_balance < charge.amount {
        return Err(ApiError::bad_request("BALANCE_TOO_LOW"));
    }
    bot.star_balance -= charge.amount;
    bot.star_transactions.push(json!({
        // Bot API: a refund's id "coincides with the identifier of the original transaction".
        "id": charge_id, "amount": charge.amount, "date": unix_now(),
        "receiver": {"type": "user", "transaction_type": "invoice_payment", "user": user.to_user_json(), "invoice_payload": charge.payload},
    }));
    if let Some(c) = world.charges.get_mut(&charge_id) {
        c.refunded = true;
    }
    user_service_message(
        world,
        bot_id,
        user_id,
        "refunded_payment",
        json!({"currency": "XTR", "total_amount": charge.amount, "invoice_payload": charge.payload, "telegram_payment_charge_id": charge_id}),
    )?;
    Ok(json!(true))
}

fn get_star_transactions(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let offset = p.opt_i64("offset")?.unwrap_or(0).max(0) as usize;
    let limit = p.opt_i64("limit")?.unwrap_or(100);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 100"));
    }
    let list: Vec<Value> = world.bot(bot_id)?.star_transactions.iter().skip(offset).take(limit as usize).cloned().collect();
    Ok(json!({"transactions": list}))
}

// ---- webhooks (the synchronous halves) -----------------------------------------------------

fn allowed_updates(p: &Params) -> ApiResult<Option<Vec<String>>> {
    match p.opt_json("allowed_updates", "allowed updates")? {
        None => Ok(None),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(String::from).ok_or_else(|| ApiError::bad_request("allowed_updates must be an Array of String")))
            .collect::<ApiResult<Vec<_>>>()
            .map(Some),
        Some(_) => Err(ApiError::bad_request("allowed_updates must be an Array of String")),
    }
}

pub fn set_allowed_updates(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<()> {
    if let Some(list) = allowed_updates(p)? {
        world.bot_mut(bot_id)?.allowed_updates = Some(list);
    }
    Ok(())
}

fn set_webhook(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let url = p.opt_str("url")?.unwrap_or_default();
    if url.is_empty() {
        return delete_webhook(world, bot_id, p);
    }
    let https = url.starts_with("https://");
    if !https && !url.starts_with("http://") {
        return Err(ApiError::bad_request("bad webhook: Unsupported URL protocol"));
    }
    if !https && world.settings.require_https_webhook {
        return Err(ApiError::bad_request("bad webhook: An HTTPS URL must be provided for webhook"));
    }
    let max_connections = p.opt_i64("max_connections")?.unwrap_or(40);
    if !(1..=100).contains(&max_connections) {
        return Err(ApiError::bad_request("bad webhook: max_connections must be between 1 and 100"));
    }
    let secret = p.opt_str("secret_token")?.filter(|s| !s.is_empty());
    if let Some(s) = &secret
        && (s.len() > 256 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(ApiError::bad_request("secret token contains unallowed characters"));
    }
    set_allowed_updates(world, bot_id, p)?;
    let drop_pending = p.bool_or("drop_pending_updates", false)?;
    let bot = world.bot_mut(bot_id)?;
    if drop_pending {
        bot.updates.clear();
    }
    bot.webhook_generation += 1;
    bot.webhook = Some(Webhook {
        url,
        secret_token: secret,
        max_connections: max_connections as usize,
        generation: bot.webhook_generation,
        last_error_date: None,
        last_error_message: None,
    });
    // A webhook ends any long poll in progress (it would now answer 409). Deliveries already
    // in flight finish (to the old URL) before the new worker may resend their updates.
    bot.poll_generation += 1;
    bot.notify.notify_waiters();
    Ok(json!(true))
}

fn delete_webhook(world: &mut World, bot_id: i64, p: &Params) -> ApiResult<Value> {
    let drop_pending = p.bool_or("drop_pending_updates", false)?;
    let bot = world.bot_mut(bot_id)?;
    if drop_pending {
        bot.updates.clear();
    }
    bot.webhook = None;
    bot.webhook_generation += 1;
    bot.notify.notify_waiters();
    Ok(json!(true))
}

fn webhook_info(world: &mut World, bot_id: i64) -> ApiResult<Value> {
    world.expire_updates(bot_id);
    let bot = world.bot(bot_id)?;
    let pending = bot.updates.len();
    let Some(hook) = &bot.webhook else {
        return Ok(json!({"url": "", "has_custom_certificate": false, "pending_update_count": pending}));
    };
    let mut info = json!({
        "url": hook.url, "has_custom_certificate": false, "pending_update_count": pending,
        "max_connections": hook.max_connections, "ip_address": "127.0.0.1",
    });
    if let Some(list) = &bot.allowed_updates {
        info["allowed_updates"] = json!(list);
    }
    if let Some(date) = hook.last_error_date {
        info["last_error_date"] = json!(date);
    }
    if let Some(msg) = &hook.last_error_message {
        info["last_error_message"] = json!(msg);
    }
    Ok(info)
}

// ---- getUpdates (the synchronous half) -----------------------------------------------------

/// Confirms updates below `offset` (negative: keep only the last -offset) and returns up to
/// `limit` pending ones.
pub fn take_updates(world: &mut World, bot_id: i64, offset: Option<i64>, limit: usize) -> ApiResult<Vec<Value>> {
    world.expire_updates(bot_id);
    let bot = world.bot_mut(bot_id)?;
    match offset {
        Some(o) if o < 0 => {
            let keep = o.unsigned_abs() as usize;
            while bot.updates.len() > keep {
                bot.updates.pop_front();
            }
        }
        Some(o) => {
            while bot.updates.front().is_some_and(|u| u.id < o) {
                bot.updates.pop_front();
            }
        }
        None => {}
    }
    Ok(bot.updates.iter().take(limit).map(|u| u.to_json()).collect())
}
