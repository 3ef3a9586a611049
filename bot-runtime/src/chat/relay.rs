//! Relaying a chat message to the partner: a copy on the same bot, a new message (text) or a
//! re-upload (media, downloaded by our bot) through the partner's bot; edits of texts; the
//! media mirror for moderation.

use serde_json::{Value, json};

use super::plain_job;
use super::search::touch_idle;
use super::text_key::TextKey;
use crate::bot::{Effects, HandleError, message_ref};
use crate::delivery::media::{self, Staged};
use crate::hot::{Lane, MessageRef, MirrorOf, Upload, reply_ref};
use crate::ingress::update::{Content, Message};
use crate::matching::Member;
use crate::store::User;
use crate::telegram::MAX_DOWNLOAD_BYTES;
use crate::texts::Lang;

pub(super) async fn relay(fx: &mut Effects<'_>, user: &User, lang: Lang, partner: &Member, m: &Message) -> Result<(), HandleError> {
    let me = user.member();
    let cfg = fx.bot.cfg();
    // The per-user budget was charged before the update was handled (chat::handle).
    touch_idle(fx, &me, partner, false).await?;
    let origin = message_ref(&me, m.message_id);
    let reply_to = m.reply_to_message.as_ref().map(|r| message_ref(&me, r.message_id));
    let same_bot = partner.bot == me.bot;
    let kind = match m.content() {
        Content::Unsupported => {
            fx.say(&me, TextKey::Unsupported.text(lang), None);
            return Ok(());
        }
        Content::Media { .. } if !cfg.bot.features.media_relay => {
            fx.say(&me, TextKey::MediaDisabled.text(lang), None);
            return Ok(());
        }
        Content::Text if same_bot => {
            copy_job(fx, &me, partner, m.message_id, origin, reply_to);
            "text"
        }
        Content::Text => {
            let mut params = json!({"chat_id": partner.user, "text": m.text.clone().unwrap_or_default()});
            if let Some(e) = &m.entities {
                params["entities"] = e.clone();
            }
            let mut job = plain_job(partner, Lane::Interactive, "sendMessage", params);
            job.origin = Some(origin);
            job.reply_to = reply_to;
            job.chat_member = Some(partner.to_string());
            fx.push(job);
            "text"
        }
        Content::Media { kind, .. } if same_bot => {
            copy_job(fx, &me, partner, m.message_id, origin, reply_to);
            kind.field()
        }
        Content::Media { kind, file } => {
            if file.file_size.is_some_and(|s| s > MAX_DOWNLOAD_BYTES) {
                fx.bot.metrics().media_refused(&me.bot, media::Refusal::TooBig.reason());
                fx.say(&me, TextKey::TooBig.text(lang), None);
                return Ok(());
            }
            // File ids are per bot: our bot downloads, the partner's bot uploads; the bytes go
            // through the hot store in pieces (delivery/media.rs). One hold per relayed
            // message, the same on every retry of its update.
            let blob = format!("{}:{}", me.bot, if file.file_unique_id.is_empty() { &file.file_id } else { &file.file_unique_id });
            let holder = reply_ref(&origin);
            let blob = match media::stage(fx.bot, me.user, file, &blob, &holder).await? {
                Staged::Ready(blob) => blob,
                Staged::Refused(why) => {
                    // Told at once; the update is done and nothing retries it.
                    fx.say(&me, why.text().text(lang), None);
                    return Ok(());
                }
            };
            let mut params = json!({"chat_id": partner.user});
            if kind.has_caption() {
                if let Some(c) = &m.caption {
                    params["caption"] = Value::String(c.clone());
                }
                if let Some(e) = &m.caption_entities {
                    params["caption_entities"] = e.clone();
                }
            }
            let mut job = plain_job(partner, Lane::Interactive, kind.method(), params);
            job.upload = Some(Upload {
                blob,
                field: kind.field().to_string(),
                file_name: kind.default_file_name(file),
                mime_type: file.mime_type.clone(),
                holder: Some(holder),
            });
            job.origin = Some(origin);
            job.reply_to = reply_to;
            job.chat_member = Some(partner.to_string());
            fx.push(job);
            kind.field()
        }
    };
    if kind != "text"
        && let Some(mirror) = cfg.bot.moderation.media_mirror_chat_id
    {
        let params = json!({"chat_id": mirror, "from_chat_id": me.user, "message_id": m.message_id});
        let mut job = plain_job(&me, Lane::Bulk, "copyMessage", params);
        job.chat_id = mirror;
        // One read for mirrored media only (never per text message): the copy is indexed by
        // the chat session, so a report can be reviewed with what was sent.
        if let Some(session) = fx.store().open_session(&me, partner).await? {
            job.mirror_of = Some(MirrorOf { session_id: session.id, sender: me.to_string() });
        }
        fx.push(job);
    }
    fx.bot.metrics().relayed(&me.bot, kind);
    Ok(())
}

/// An edited text reaches the partner as an edit of the message they got (resolved through
/// the reply map at send time, so an edit of a message still in the outbox waits for it).
/// Caption and media edits are not relayed: the partner keeps the original.
pub(super) async fn on_edited(fx: &mut Effects<'_>, m: Message) -> Result<(), HandleError> {
    let (Some(from), Some(text)) = (m.from.as_ref(), m.text.clone()) else { return Ok(()) };
    let me = fx.bot.member(from.id);
    let Some(partner) = fx.matcher().partner(fx.pool(), &me).await? else { return Ok(()) };
    let mut params = json!({"chat_id": partner.user, "text": text});
    if let Some(e) = &m.entities {
        params["entities"] = e.clone();
    }
    let mut job = plain_job(&partner, Lane::Interactive, "editMessageText", params);
    job.target = Some(reply_ref(&message_ref(&me, m.message_id)));
    fx.push(job);
    Ok(())
}

/// Same bot: `copyMessage` (hides the sender, keeps the media as is).
fn copy_job(fx: &mut Effects<'_>, me: &Member, partner: &Member, message_id: i64, origin: MessageRef, reply_to: Option<MessageRef>) {
    let params = json!({"chat_id": partner.user, "from_chat_id": me.user, "message_id": message_id});
    let mut job = plain_job(partner, Lane::Interactive, "copyMessage", params);
    job.origin = Some(origin);
    job.reply_to = reply_to;
    job.chat_member = Some(partner.to_string());
    fx.push(job);
}
