//! Broadcasts (docs/ADMIN.md, "Broadcast"): an announcement to the members of one bot,
//! queued by a producer in the admin role onto that bot's outbox, on the bulk lane — so the
//! bot's own sender delivers it through its rate limiter, after its chats (interactive lane).
//!
//! * **Pace.** The producer keeps at most `broadcast_queue` jobs in the bot's outbox (about
//!   three seconds of a bot's 30 messages a second): it never sends itself, so it cannot
//!   bypass the limiter, and a busy bot's chats hold the broadcast back.
//! * **Progress** lives in Postgres: the audience is walked by user id, `cursor_user` the last
//!   member queued. One step claims the next batch (`pending_to`), queues it, then moves the
//!   cursor. A graceful stop lets the step finish: after a restart nobody gets it twice and
//!   nobody is skipped. A process killed between queuing and moving the cursor leaves the
//!   batch pending; after `STALE_MS` it is queued again (at most that batch repeats) and
//!   counted in `repeated_max`. Two admin replicas never take the same batch (the claim is
//!   one conditional update).
//! * **Who gets it**: members of the bot with a complete profile, reachable, not banned or
//!   restricted, in the audience (`all`, `vip`, `free`), who have not sent `/news off`. Each
//!   message ends with a line (in the member's language) saying how to turn them off.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;

use super::api::{audit_action, registered};
use super::auth::{Admin, Identity};
use super::{AdminState, ApiError, Body};
use crate::chat::text_key::TextKey;
use crate::hot::{Job, Lane, Marker};
use crate::matching::Member;
use crate::store::admin::{Broadcast, RegisteredBot};
use crate::texts::Lang;

/// A claimed batch older than this belongs to a process that died (a step takes well under a
/// second).
const STALE_MS: i64 = 30_000;
/// The longest text accepted (Telegram's limit is 4096, with room for the footer).
const MAX_TEXT: usize = 3500;
/// Tags Telegram's HTML parse mode understands.
const TAGS: &[&str] = &["b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "a", "tg-spoiler", "span", "blockquote"];
/// [`check_html`] as the OpenAPI document's pattern: every `<` opens one of [`TAGS`] (closing
/// slashes allowed), followed by `>` or by a space and attributes up to the next `>`.
const TEXT_PATTERN: &str = "^[^<]*(</*(b|strong|i|em|u|ins|s|strike|del|code|pre|a|tg-spoiler|span|blockquote)(>|[ ][^<>]*>)[^<]*)*$";

pub fn routes() -> Router<AdminState> {
    Router::new().route("/api/v1/broadcasts", get(list).post(create)).route("/api/v1/broadcasts/{broadcast_id}/cancel", post(cancel))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NewBroadcast {
    /// The bot whose members get it (`<namespace>/<name>`).
    pub bot: String,
    /// The message as Telegram HTML (`<b>`, `<i>`, `<a href>`, … ; `&lt;` for a literal `<`),
    /// 1 to 3500 characters.
    #[schemars(length(min = 1, max = 3500), pattern(TEXT_PATTERN))]
    pub text: String,
    /// `all` (default), `vip` or `free`.
    #[serde(default)]
    #[schemars(extend("enum" = ["all", "vip", "free", null]))]
    pub audience: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BroadcastAnswer {
    pub broadcast: Broadcast,
    /// Members in the audience now (who will get it, unless they leave or turn it off).
    pub audience_size: i64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BroadcastsAnswer {
    /// The broadcasts of this admin's bots, newest first.
    pub broadcasts: Vec<Broadcast>,
}

/// Refuses text Telegram would refuse for every member (a tag it does not know, or `<` that
/// starts no tag), before anything is queued.
fn check_html(text: &str) -> Result<(), ApiError> {
    let len = text.chars().count();
    if len == 0 || len > MAX_TEXT {
        return Err(ApiError::bad(format!("text: 1 to {MAX_TEXT} characters")));
    }
    for part in text.split('<').skip(1) {
        let tag = part.split(['>', ' ']).next().unwrap_or_default().trim_start_matches('/');
        if !part.contains('>') || !TAGS.contains(&tag) {
            return Err(ApiError::bad(format!("text: Telegram HTML allows only the tags {}; write &lt; for a literal <", TAGS.join(", "))));
        }
    }
    Ok(())
}

async fn create(State(s): State<AdminState>, admin: Admin, Body(req): Body<NewBroadcast>) -> Result<Response, ApiError> {
    admin.identity.require_bot(&req.bot)?;
    let audience = req.audience.unwrap_or_else(|| "all".into());
    if !["all", "vip", "free"].contains(&audience.as_str()) {
        return Err(ApiError::bad("audience: all, vip or free"));
    }
    check_html(&req.text)?;
    let bot = registered(&s, &req.bot).await?;
    let now = crate::bot::now_ms();
    let size = s.store.audience_size(&bot.id, &audience, now).await?;
    let id = s.store.create_broadcast(&bot.id, &req.text, &audience, admin.identity.telegram_id, now).await?;
    let Some(broadcast) = s.store.broadcast(id).await? else {
        return Err(ApiError::Internal("the broadcast just written is missing".into()));
    };
    s.fleet.metrics.admin_action("broadcast", "started");
    let detail = json!({"id": id, "audience": audience, "audience_size": size, "text": req.text});
    audit_action(&s, &admin, "broadcast", Some(&bot.id), None, detail).await?;
    Ok((StatusCode::CREATED, axum::Json(BroadcastAnswer { broadcast, audience_size: size })).into_response())
}

/// The broadcasts `id` may see (the API's and the dashboard's).
pub(super) async fn broadcasts_of(s: &AdminState, id: &Identity) -> Result<Vec<Broadcast>, ApiError> {
    let mut all = s.store.broadcasts(200).await?;
    all.retain(|b| id.may_act_on(&b.bot));
    Ok(all)
}

async fn list(State(s): State<AdminState>, admin: Admin) -> Result<axum::Json<BroadcastsAnswer>, ApiError> {
    Ok(axum::Json(BroadcastsAnswer { broadcasts: broadcasts_of(&s, &admin.identity).await? }))
}

async fn cancel(State(s): State<AdminState>, admin: Admin, Path(raw): Path<String>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let id: i64 = raw.parse().map_err(|_| ApiError::bad("broadcast_id: a broadcast's id"))?;
    let Some(b) = s.store.broadcast(id).await?.filter(|b| admin.identity.may_act_on(&b.bot)) else {
        return Err(ApiError::NotFound(format!("no broadcast {id} on your bots")));
    };
    if !s.store.finish_broadcast(id, "cancelled", crate::bot::now_ms()).await? {
        return Err(ApiError::Conflict(format!("broadcast {id} is {} already", b.status)));
    }
    s.fleet.metrics.admin_action("broadcast", "cancelled");
    audit_action(&s, &admin, "broadcast_cancel", Some(&b.bot), None, json!({"id": id, "queued": b.queued})).await?;
    Ok(axum::Json(json!({"id": id, "cancelled": true, "queued": b.queued})))
}

// ---- the producer ----------------------------------------------------------------------------

/// Queues the running broadcasts until `shutdown`; a step in progress is finished first.
pub async fn run(state: AdminState, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = step_all(&state).await {
            tracing::warn!(error = ?e, "broadcast: a step failed; retrying");
        }
        tokio::select! {
            changed = shutdown.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(state.settings.broadcast_tick) => {}
        }
    }
}

async fn step_all(s: &AdminState) -> Result<(), ApiError> {
    let running = s.store.running_broadcasts().await?;
    if running.is_empty() {
        return Ok(());
    }
    let bots = s.store.bots().await?;
    for b in &running {
        // A bot not registered (yet, or any more) waits: nothing can send for it.
        if let Some(bot) = bots.iter().find(|r| r.id == b.bot) {
            step(s, b, bot).await?;
        }
    }
    Ok(())
}

/// One batch of one broadcast, if the bot's outbox has room for it.
async fn step(s: &AdminState, b: &Broadcast, bot: &RegisteredBot) -> Result<(), ApiError> {
    let now = crate::bot::now_ms();
    // A batch claimed by a process that died: queue it again (its members may get it twice).
    let (to, repeated) = match (b.pending_to, b.pending_ms) {
        (Some(to), Some(at)) if at < now - STALE_MS => (to, true),
        (Some(_), _) => return Ok(()),
        (None, _) => {
            let (depth, _) = s.fleet.hot.outbox_depth(&bot.pool, &bot.name, now).await?;
            let room = s.settings.broadcast_queue.saturating_sub(depth);
            if room == 0 {
                return Ok(());
            }
            let next = s.store.recipients(&b.bot, &b.audience, b.cursor_user, i64::MAX, room as i64, now).await?;
            let Some(last) = next.last() else {
                if s.store.finish_broadcast(b.id, "done", now).await? {
                    s.fleet.metrics.admin_action("broadcast", "done");
                    tracing::info!(bot = %b.bot, id = b.id, queued = b.queued, "broadcast: every member is queued");
                }
                return Ok(());
            };
            (last.user_id, false)
        }
    };
    if !s.store.claim_batch(b.id, b.cursor_user, to, now, now - STALE_MS).await? {
        return Ok(()); // another admin replica took it, or it was cancelled
    }
    let batch = s.store.recipients(&b.bot, &b.audience, b.cursor_user, to, 100_000, now).await?;
    let mut jobs = Vec::with_capacity(batch.len());
    for r in &batch {
        let lang = Lang::parse(&r.language).unwrap_or(Lang::En);
        let text = format!("{}{}", b.text, TextKey::BroadcastFooter.text(lang));
        let mut job = Job::to(
            &Member::new(bot.name.clone(), r.user_id),
            Lane::Bulk,
            "sendMessage",
            json!({"chat_id": r.user_id, "text": text, "parse_mode": "HTML"}),
        );
        job.enqueued_ms = now;
        jobs.push(job);
    }
    if !jobs.is_empty() {
        s.fleet.hot.commit(&bot.pool, Marker::None, &jobs).await?;
        s.fleet.ring(&jobs);
    }
    let n = jobs.len() as i64;
    s.store.batch_queued(b.id, to, n, if repeated { n } else { 0 }).await?;
    if repeated {
        tracing::warn!(bot = %b.bot, id = b.id, members = n, "broadcast: a batch of a stopped process was queued again");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{TAGS, TEXT_PATTERN, check_html};

    /// The document's pattern names the same tags the check accepts.
    #[test]
    fn the_documented_pattern_lists_the_accepted_tags() {
        assert!(TEXT_PATTERN.contains(&format!("</*({})(>|", TAGS.join("|"))), "{TEXT_PATTERN}");
    }

    #[test]
    fn only_telegram_html_is_accepted() {
        for ok in ["plain", "<b>bold</b> and <a href=\"https://t.me/x\">a link</a>", "1 &lt; 2", "<tg-spoiler>x</tg-spoiler>"] {
            assert!(check_html(ok).is_ok(), "{ok}");
        }
        for bad in ["", "<script>x</script>", "1 < 2", "<div>x</div>", &"x".repeat(3501)] {
            assert!(check_html(bad).is_err(), "{bad}");
        }
    }
}
