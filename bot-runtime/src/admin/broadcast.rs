//! Broadcasts (docs/ADMIN.md, "Broadcast"): an announcement to the members of a bot (several
//! bots at once: one broadcast each),
//! queued by a producer in the admin role onto that bot's outbox, on the bulk lane — so the
//! bot's own sender delivers it through its rate limiter, after its chats (interactive lane).
//!
//! * **Pace.** The producer keeps at most `broadcast_queue` jobs in the bot's outbox for a bot
//!   sending Telegram's 30 messages a second (about three seconds), proportionally more for a
//!   faster bot (its `perBotPerSecond`): it never sends itself, so it cannot bypass the
//!   limiter, and a busy bot's chats hold the broadcast back.
//! * **Progress** lives in Postgres: the audience is walked by user id, `cursor_user` the last
//!   member queued. One step claims the next batch (`pending_to`), queues it, then moves the
//!   cursor. A graceful stop lets the step finish: after a restart nobody gets it twice and
//!   nobody is skipped. A process killed between queuing and moving the cursor leaves the
//!   batch pending; after `STALE_MS` it is queued again. Two admin replicas never take the
//!   same batch (the claim is one conditional update).
//! * **Once per member** at the sender: before each message the bot's sender records that it
//!   is sending it (`Registry::broadcast_attempt`); a member whose message is settled is not
//!   sent it again (a batch queued twice), and one whose earlier send was in flight when its
//!   sender was killed gets it again, counted in `repeated_max` (at most those may have it
//!   twice).
//! * **Who gets it**: members of the bot with a complete profile, reachable, not banned or
//!   restricted, in the audience (`all`, `vip`, `free`, optionally one language and members
//!   active since a day), who have not sent `/news off`. Each message ends with a line (in
//!   the member's language) saying how to turn them off.
//! * **When**: now, or at a time (`scheduled` until then; the producer starts it, counting the
//!   audience again). A scheduled broadcast can be cancelled before it starts.
//! * **What became of each message** is counted by the bot's sender (the job carries the
//!   broadcast's id): delivered, failed, blocked (the member blocked the bot: marked
//!   unreachable, so no later broadcast tries them again) — each member once.
//! * **The text** is checked as Telegram HTML, links http(s)/tg only (`telegram_html.rs`), and
//!   can be previewed before it is sent.

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
use super::telegram_html;
use super::{AdminState, ApiError, Body};
use crate::chat::text_key::TextKey;
use crate::hot::{Job, Lane, Marker};
use crate::matching::Member;
use crate::store::admin::{Audience, Broadcast, NewBroadcastRow, RegisteredBot};
use crate::texts::Lang;

/// A claimed batch older than this belongs to a process that died (a step takes well under a
/// second).
const STALE_MS: i64 = 30_000;
/// The furthest ahead a broadcast may be scheduled.
const MAX_AHEAD_MS: i64 = 90 * 86_400_000;
/// A start time this far in the past is a mistake, not "now".
const PAST_GRACE_MS: i64 = 60_000;
/// The outline of [`telegram_html::check`] as the OpenAPI document's pattern: every `<` opens
/// one of [`telegram_html::TAGS`] (closing slashes allowed), followed by `>` or by a space and
/// attributes up to the next `>`. The check itself is stricter (attributes, link schemes).
const TEXT_PATTERN: &str =
    "^[^<]*(</*(b|strong|i|em|u|ins|s|strike|del|code|pre|a|tg-spoiler|span|tg-emoji|blockquote)(>|[ ][^<>]*>)[^<]*)*$";

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/broadcasts", get(list).post(create))
        .route("/api/v1/broadcasts/preview", post(preview))
        .route("/api/v1/broadcasts/{broadcast_id}/cancel", post(cancel))
        .route("/api/v1/gifts", post(gift_audience))
}

/// The most members one gift to an audience reaches (it is given while the request waits).
pub const MAX_GIFT_AUDIENCE: i64 = 10_000;

/// Who a broadcast or a gift to an audience reaches: the bots and the filters (one struct,
/// flattened into both requests, so the two can never drift apart).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[schemars(extend("anyOf" = [
    {"required": ["bot"]},
    {"required": ["bots"], "properties": {"bots": {"minItems": 1}}},
]))]
pub struct AudienceFilter {
    /// The bot whose members it reaches (`<namespace>/<name>`), or `*`: every bot this admin
    /// acts on (one broadcast per bot; a person who uses several of them is reached by each).
    #[serde(default)]
    pub bot: String,
    /// Several bots at once (instead of `bot`), each reaching its own members, at most 100.
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub bots: Option<Vec<String>>,
    /// `all` (default), `vip` or `free`.
    #[serde(default)]
    #[schemars(extend("enum" = ["all", "vip", "free", null]))]
    pub audience: Option<String>,
    /// Only members with this language (`en`, `ru`, …: 2 to 8 lowercase letters); absent or
    /// empty: any. Spaces around it are ignored (a form's field).
    #[serde(default)]
    #[schemars(pattern(r"^\s*([a-z]{2,8})?\s*$"))]
    pub language: Option<String>,
    /// Only members active on or after this UTC day (`YYYY-MM-DD`); absent: any.
    #[serde(default)]
    pub active_since: Option<String>,
}

impl AudienceFilter {
    /// The filter of a dashboard form sent as a GET (the broadcast's preview, the gift's
    /// confirmation): one bot or `*`, the audience and its filters as typed.
    pub(super) fn from_query(q: &std::collections::HashMap<String, String>) -> Self {
        AudienceFilter {
            bot: q.get("bot").cloned().unwrap_or_default(),
            bots: None,
            audience: q.get("audience").cloned(),
            language: q.get("language").cloned(),
            active_since: q.get("active_since").cloned(),
        }
    }

    /// The filters, checked (bad input is a 400 that says what to fix).
    pub(super) fn check(&self) -> Result<Audience, ApiError> {
        let kind = self.audience.clone().unwrap_or_else(|| "all".into());
        if !["all", "vip", "free"].contains(&kind.as_str()) {
            return Err(ApiError::bad("audience: all, vip or free"));
        }
        let language = match self.language.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
            None => None,
            Some(l) if (2..=8).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_lowercase()) => Some(l.to_string()),
            Some(_) => return Err(ApiError::bad("language: a language code of 2 to 8 lowercase letters (en, ru, …)")),
        };
        let active_since_day = match self.active_since.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
            None => None,
            Some(d) => {
                let day = format!("{d}T00:00:00Z")
                    .parse::<jiff::Timestamp>()
                    .map_err(|_| ApiError::bad("active_since: a day, YYYY-MM-DD (UTC)"))?;
                Some(crate::store::day_of(day.as_millisecond()))
            }
        };
        Ok(Audience { kind, language, active_since_day })
    }
}

/// A gift to an audience (`POST /api/v1/gifts`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
// `allOf`, not `anyOf` at the top: the flattened filter's `anyOf` (a bot or bots) is kept.
#[schemars(extend("allOf" = [{"anyOf": [
    {"required": ["vip_days"], "properties": {"vip_days": {"minimum": 1}}},
    {"required": ["credits"], "properties": {"credits": {"minimum": 1}}},
]}]))]
pub struct AudienceGift {
    /// Who gets it: the members a broadcast with these filters would reach.
    #[serde(flatten)]
    pub to: AudienceFilter,
    /// VIP days to add to each (0 to 3650), stacked onto an unexpired VIP.
    #[serde(default)]
    #[schemars(range(min = 0, max = 3650))]
    pub vip_days: i64,
    /// Credits to add to each (0 to 100000); at least one of the two above 0.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100_000))]
    pub credits: i64,
    /// Makes a retry harmless, per member: a member who got this key's gift gets nothing more;
    /// a retry after a failure part-way gives the rest (1 to 100 of `A-Za-z0-9_-.:`).
    #[schemars(pattern(r"^[A-Za-z0-9_.:-]{1,100}$"))]
    pub idempotency_key: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AudienceGiftAnswer {
    /// Members in the audience (summed over the bots; a person on two bots counts twice).
    pub members: i64,
    /// Members given it now.
    pub given: i64,
    /// Members who had this key's gift already (nothing more given).
    pub already: i64,
}

/// A gift to every member of an audience (docs/ADMIN.md, "Gifts to an audience"): the member's
/// gift (`api::give`) for each, keyed per member, told on the bulk lane.
async fn gift_audience(
    State(s): State<AdminState>,
    admin: Admin,
    Body(req): Body<AudienceGift>,
) -> Result<axum::Json<AudienceGiftAnswer>, ApiError> {
    if !(0..=3650).contains(&req.vip_days) || !(0..=100_000).contains(&req.credits) || req.vip_days + req.credits == 0 {
        return Err(ApiError::bad("give vip_days (0 to 3650) and/or credits (0 to 100000), at least one above 0"));
    }
    let key = req.idempotency_key.trim();
    if key.is_empty() || key.len() > 100 || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b)) {
        return Err(ApiError::bad("idempotency_key: 1 to 100 of A-Z a-z 0-9 _ - . :"));
    }
    let now = crate::bot::now_ms();
    let (audience, bots, members) = gift_audience_of(&s, &admin.identity, &req.to, now).await?;
    if members > MAX_GIFT_AUDIENCE {
        return Err(too_many(members));
    }
    let (mut given, mut already) = (0, 0);
    let member_key = format!("audience:{key}");
    for bot in &bots {
        let mut cursor = 0;
        loop {
            let page = s.store.recipients(&bot.id, &audience, cursor, i64::MAX, 500, now).await?;
            let Some(last) = page.last() else { break };
            cursor = last.user_id;
            for r in &page {
                match super::api::give(
                    &s,
                    bot,
                    admin.identity.telegram_id,
                    r.user_id,
                    req.vip_days,
                    req.credits,
                    &member_key,
                    Lane::Bulk,
                    now,
                )
                .await?
                {
                    Some(o) if o.first => given += 1,
                    Some(_) => already += 1,
                    None => {}
                }
            }
        }
        let detail = json!({
            "audience": audience.kind, "language": audience.language, "active_since_day": audience.active_since_day,
            "vip_days": req.vip_days, "credits": req.credits, "key": key,
        });
        audit_action(&s, &admin, "gift_audience", Some(&bot.id), None, detail).await?;
    }
    s.fleet.metrics.admin_action("gift", "audience");
    Ok(axum::Json(AudienceGiftAnswer { members, given, already }))
}

fn too_many(members: i64) -> ApiError {
    ApiError::bad(format!(
        "the audience has {members} members; at most {MAX_GIFT_AUDIENCE} at once (narrow it: one language, members active since a day, or one bot at a time)"
    ))
}

/// A gift's audience, checked: the filters, the bots (each one the admin may act on) and the
/// members it reaches now, summed over the bots (the dashboard's confirmation shows the sum).
pub(super) async fn gift_audience_of(
    s: &AdminState,
    id: &Identity,
    to: &AudienceFilter,
    now: i64,
) -> Result<(Audience, Vec<RegisteredBot>, i64), ApiError> {
    let audience = to.check()?;
    let bots = targets(s, id, to).await?;
    let mut members = 0;
    for bot in &bots {
        members += s.store.count_recipients(&bot.id, &audience, 0, now).await?;
    }
    Ok((audience, bots, members))
}

/// What the dashboard's gift form confirms before it gives: the members reached now, and
/// whether that is within [`MAX_GIFT_AUDIENCE`] (else the 400 the gift would answer).
pub(super) async fn gift_confirmation(s: &AdminState, id: &Identity, to: &AudienceFilter) -> Result<i64, ApiError> {
    let (_, _, members) = gift_audience_of(s, id, to, crate::bot::now_ms()).await?;
    if members > MAX_GIFT_AUDIENCE {
        return Err(too_many(members));
    }
    Ok(members)
}

/// A broadcast (`POST /api/v1/broadcasts`, and its preview).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NewBroadcast {
    /// Who gets it: the bots (one broadcast per bot) and the filters.
    #[serde(flatten)]
    pub to: AudienceFilter,
    /// The message as Telegram HTML (`<b>`, `<i>`, `<a href>`, … ; `&lt;` for a literal `<`),
    /// 1 to 3500 characters.
    #[schemars(length(min = 1, max = 3500), pattern(TEXT_PATTERN))]
    pub text: String,
    /// When to start: an RFC 3339 time (`2026-12-24T18:00:00Z`) or `YYYY-MM-DDTHH:MM` in UTC
    /// (the dashboard's field), at most 90 days ahead; absent: now.
    #[serde(default)]
    pub start_at: Option<String>,
    /// A paid broadcast (docs/ADMIN.md, "Paid broadcasts"): every message is sent with
    /// Telegram's `allow_paid_broadcast`, at the bot's `paidBroadcastPerSecond` (300/s by
    /// default) instead of its free 30/s, for 0.1 Star a message from the bot's Stars balance.
    /// `POST /api/v1/broadcasts/preview` gives the estimated cost first. Absent: false.
    #[serde(default)]
    pub paid: bool,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PreviewAnswer {
    /// The message as the dashboard shows it: HTML rebuilt from the checked text (every piece
    /// of text escaped, links http(s)/tg only), safe to put in a page.
    pub preview_html: String,
    /// Members who would get it now, summed over the bots named.
    pub audience_size: i64,
    /// When it would start (ms since the epoch; absent: now).
    pub start_ms: Option<i64>,
    /// Per bot named: its audience, pace and, for a paid broadcast, the Stars it would cost
    /// against its balance.
    pub bots: Vec<BotEstimate>,
    /// A paid broadcast's estimated cost, summed over the bots (whole Stars, rounded up); 0
    /// for a free one.
    pub stars_estimate: i64,
    /// The most it can cost: every message charged (0.1 Star each), rounded up; 0 for a free one.
    pub stars_at_most: i64,
}

/// What a broadcast would take on one bot (the preview's estimate).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BotEstimate {
    pub bot: String,
    /// Members who would get it now.
    pub audience_size: i64,
    /// Messages a second it would be sent at: the bot's `perBotPerSecond` (free) or
    /// `paidBroadcastPerSecond` (paid).
    pub per_second: u64,
    /// About how long the sending takes, in seconds (audience / pace, rounded up), the bot's
    /// chats aside.
    pub seconds: i64,
    /// Paid: the messages above Telegram's free 30 a second — audience × (pace − 30) / pace,
    /// rounded up: in each second of the broadcast 30 go free — each charged 0.1 Star; 0 for
    /// a free broadcast.
    pub charged_messages: i64,
    /// `charged_messages` × 0.1 Star, rounded up to a whole Star.
    pub stars_estimate: i64,
    /// Every message charged (if the bot's chats use its free 30 a second meanwhile):
    /// audience × 0.1 Star, rounded up.
    pub stars_at_most: i64,
    /// The bot's Stars balance as its runtime last read it (`getMyStarBalance`); absent:
    /// not read yet.
    pub star_balance: Option<i64>,
    /// Paid: whether that balance covers `stars_estimate` (absent: balance unknown). When it
    /// does not, the broadcast stops when Telegram refuses a message for lack of Stars.
    pub enough_stars: Option<bool>,
}

/// Telegram's free messages a second per bot (beyond them a paid broadcast's messages cost).
const FREE_PER_SECOND: u64 = 30;

/// The estimate for `audience` members sent at `per_second` (paid or not), against `balance`.
pub(super) fn estimate(bot: &str, audience: i64, per_second: u64, paid: bool, balance: Option<i64>) -> BotEstimate {
    let rate = per_second.max(1) as i64;
    let audience = audience.max(0);
    let charged = if paid { (audience * (rate - FREE_PER_SECOND as i64).max(0) + rate - 1) / rate } else { 0 };
    // 0.1 Star each, rounded up to a whole Star.
    let stars = (charged + 9) / 10;
    let at_most = if paid { (audience + 9) / 10 } else { 0 };
    BotEstimate {
        bot: bot.to_string(),
        audience_size: audience,
        per_second,
        seconds: (audience + rate - 1) / rate,
        charged_messages: charged,
        stars_estimate: stars,
        stars_at_most: at_most,
        star_balance: balance,
        enough_stars: if paid { balance.map(|b| b >= stars) } else { None },
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BroadcastAnswer {
    /// The broadcast (the first bot's, when several bots were named).
    pub broadcast: Broadcast,
    /// One broadcast per bot named, in the order named.
    pub broadcasts: Vec<Broadcast>,
    /// Members in the audience now, summed over the bots (who will get it, unless they leave
    /// or turn it off); a person on two of the bots counts twice (they get two messages).
    pub audience_size: i64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BroadcastsAnswer {
    /// The broadcasts of this admin's bots, newest first.
    pub broadcasts: Vec<Broadcast>,
}

/// A broadcast request, checked: the audience, the start time, the text's preview.
pub(super) struct Checked {
    pub audience: Audience,
    pub start_ms: Option<i64>,
    pub preview_html: String,
}

/// Checks everything but the admin's reach: bad input is a 400 that says what to fix, before
/// anything is queued.
pub(super) fn check_request(req: &NewBroadcast, now_ms: i64) -> Result<Checked, ApiError> {
    let audience = req.to.check()?;
    let start_ms = match req.start_at.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => {
            let at = [t.to_string(), format!("{t}:00Z"), format!("{t}Z")]
                .iter()
                .find_map(|c| c.parse::<jiff::Timestamp>().ok())
                .ok_or_else(|| ApiError::bad("start_at: an RFC 3339 time (2026-12-24T18:00:00Z) or YYYY-MM-DDTHH:MM in UTC"))?
                .as_millisecond();
            if at < now_ms - PAST_GRACE_MS {
                return Err(ApiError::bad("start_at: that time has passed; leave it out to send now"));
            }
            if at > now_ms + MAX_AHEAD_MS {
                return Err(ApiError::bad("start_at: at most 90 days ahead"));
            }
            Some(at)
        }
    };
    let preview_html = telegram_html::check(&req.text).map_err(ApiError::BadRequest)?;
    Ok(Checked { audience, start_ms, preview_html })
}

/// The bots a request names (`bots`, or `bot`, `*` for every bot of the admin), each one the
/// admin may act on and registered, each once, in the order named.
async fn targets(s: &AdminState, id: &Identity, req: &AudienceFilter) -> Result<Vec<RegisteredBot>, ApiError> {
    let named: Vec<String> = match &req.bots {
        Some(list) if !list.is_empty() => list.iter().map(|b| b.trim().to_string()).collect(),
        _ if req.bot.trim() == "*" => id.bots.clone(),
        _ => vec![req.bot.trim().to_string()],
    };
    if named.len() > 100 {
        return Err(ApiError::bad("bots: at most 100"));
    }
    if named.is_empty() {
        return Err(ApiError::NotFound("no bot is registered in this fleet yet".into()));
    }
    let mut out: Vec<RegisteredBot> = Vec::new();
    for name in named {
        id.require_bot(&name)?;
        if !out.iter().any(|b| b.id == name) {
            out.push(registered(s, &name).await?);
        }
    }
    Ok(out)
}

async fn create(State(s): State<AdminState>, admin: Admin, Body(req): Body<NewBroadcast>) -> Result<Response, ApiError> {
    let now = crate::bot::now_ms();
    let checked = check_request(&req, now)?;
    let bots = targets(&s, &admin.identity, &req.to).await?;
    let mut made = Vec::with_capacity(bots.len());
    let mut total = 0;
    for bot in &bots {
        let size = s.store.count_recipients(&bot.id, &checked.audience, 0, now).await?;
        let row = NewBroadcastRow {
            bot: &bot.id,
            text: &req.text,
            audience: &checked.audience,
            by: admin.identity.telegram_id,
            now_ms: now,
            start_ms: checked.start_ms,
            total: size,
            paid: req.paid,
        };
        let id = s.store.create_broadcast(&row).await?;
        let Some(broadcast) = s.store.broadcast(id).await? else {
            return Err(ApiError::Internal("the broadcast just written is missing".into()));
        };
        s.fleet.metrics.admin_action("broadcast", if broadcast.status == "scheduled" { "scheduled" } else { "started" });
        let a = &checked.audience;
        let detail = json!({
            "id": id, "audience": a.kind, "language": a.language, "active_since_day": a.active_since_day,
            "start_ms": checked.start_ms, "audience_size": size, "text": req.text, "paid": req.paid,
        });
        audit_action(&s, &admin, "broadcast", Some(&bot.id), None, detail).await?;
        total += size;
        made.push(broadcast);
    }
    let Some(first) = made.first().cloned() else {
        return Err(ApiError::bad("bot: name at least one bot"));
    };
    Ok((StatusCode::CREATED, axum::Json(BroadcastAnswer { broadcast: first, broadcasts: made, audience_size: total })).into_response())
}

/// What a broadcast would look like and reach, without sending it (the dashboard's preview).
pub(super) async fn preview_of(s: &AdminState, admin: &Admin, req: &NewBroadcast) -> Result<PreviewAnswer, ApiError> {
    let now = crate::bot::now_ms();
    let checked = check_request(req, now)?;
    let mut audience_size = 0;
    let configs = s.store.bot_configs().await?;
    let mut bots = Vec::new();
    for bot in targets(s, &admin.identity, &req.to).await? {
        let size = s.store.count_recipients(&bot.id, &checked.audience, 0, now).await?;
        audience_size += size;
        let config = configs.iter().find(|(id, _, _)| *id == bot.id).map_or("", |(_, _, c)| c.as_str());
        // Unknown (not registered with a rate): Telegram's free 30/s.
        let free = match per_bot_per_second(config) {
            0 => BASE_RATE,
            n => n,
        };
        let per_second = if req.paid { paid_per_second(config) } else { free };
        bots.push(estimate(&bot.id, size, per_second, req.paid, bot.star_balance));
    }
    let stars_estimate = bots.iter().map(|b| b.stars_estimate).sum();
    let stars_at_most = bots.iter().map(|b| b.stars_at_most).sum();
    Ok(PreviewAnswer { preview_html: checked.preview_html, audience_size, start_ms: checked.start_ms, bots, stars_estimate, stars_at_most })
}

async fn preview(State(s): State<AdminState>, admin: Admin, Body(req): Body<NewBroadcast>) -> Result<axum::Json<PreviewAnswer>, ApiError> {
    Ok(axum::Json(preview_of(&s, &admin, &req).await?))
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
    // Scheduled broadcasts whose time has come start, with their audience counted again
    // (one replica starts each: a conditional update).
    let now = crate::bot::now_ms();
    for b in s.store.due_broadcasts(now).await? {
        let total = s.store.count_recipients(&b.bot, &Audience::of(&b), 0, now).await?;
        if s.store.start_broadcast(b.id, total).await? {
            s.fleet.metrics.admin_action("broadcast", "started");
            tracing::info!(bot = %b.bot, id = b.id, total, "broadcast: a scheduled broadcast started");
        }
    }
    let running = s.store.running_broadcasts().await?;
    if running.is_empty() {
        return Ok(());
    }
    let bots = s.store.bots().await?;
    let configs = s.store.bot_configs().await?;
    for b in &running {
        // A bot not registered (yet, or any more) waits: nothing can send for it.
        if let Some(bot) = bots.iter().find(|r| r.id == b.bot) {
            let config = configs.iter().find(|(id, _, _)| *id == b.bot).map_or("", |(_, _, config)| config.as_str());
            // A paid broadcast keeps as many seconds of its own (paid) pace queued.
            let rate = if b.paid { paid_per_second(config) } else { per_bot_per_second(config) };
            step(s, b, bot, queue_for(s.settings.broadcast_queue, rate)).await?;
        }
    }
    Ok(())
}

/// Telegram's free rate per bot, the rate `broadcast_queue` is sized for (3 s of it by default).
const BASE_RATE: u64 = 30;

/// A bot's configured send rate (`limits.outbound.perBotPerSecond` of its registered
/// configuration); 0 if unknown.
fn per_bot_per_second(config: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(config).ok().and_then(|v| v["limits"]["outbound"]["perBotPerSecond"].as_u64()).unwrap_or(0)
}

/// A bot's paid-broadcast pace (`limits.outbound.paidBroadcastPerSecond`), the default (300)
/// if its registered configuration does not say.
fn paid_per_second(config: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(config)
        .ok()
        .and_then(|v| v["limits"]["outbound"]["paidBroadcastPerSecond"].as_u64())
        .unwrap_or(u64::from(botfleet_crds::rate_limit_policy::OutboundLimits::default().paid_broadcast_per_second))
}

/// The jobs a broadcast keeps queued for a bot sending `rate` messages a second: `queue` for
/// Telegram's 30/s, as many seconds' worth for a faster bot (a bot allowed 300/s keeps ten
/// times as many), so the producer never starves a fast bot's sender and never queues more
/// than a few seconds of any bot's budget.
fn queue_for(queue: u64, rate: u64) -> u64 {
    queue.saturating_mul(rate.max(BASE_RATE).div_ceil(BASE_RATE))
}

/// One batch of one broadcast, if the bot's outbox has room for it.
async fn step(s: &AdminState, b: &Broadcast, bot: &RegisteredBot, queue: u64) -> Result<(), ApiError> {
    let now = crate::bot::now_ms();
    // A batch claimed by a process that died: queue it again (its members may get it twice).
    let (to, repeated) = match (b.pending_to, b.pending_ms) {
        (Some(to), Some(at)) if at < now - STALE_MS => (to, true),
        (Some(_), _) => return Ok(()),
        (None, _) => {
            let (depth, _) = s.fleet.hot.outbox_depth(&bot.pool, &bot.name, now).await?;
            let room = queue.saturating_sub(depth);
            if room == 0 {
                return Ok(());
            }
            let next = s.store.recipients(&b.bot, &Audience::of(b), b.cursor_user, i64::MAX, room as i64, now).await?;
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
    let batch = s.store.recipients(&b.bot, &Audience::of(b), b.cursor_user, to, 100_000, now).await?;
    let mut jobs = Vec::with_capacity(batch.len());
    for r in &batch {
        let lang = Lang::parse(&r.language).unwrap_or(Lang::En);
        let text = format!("{}{}", b.text, TextKey::BroadcastFooter.text(lang));
        let mut job = Job::to(
            &Member::new(bot.name.clone(), r.user_id),
            Lane::Bulk,
            "sendMessage",
            if b.paid {
                json!({"chat_id": r.user_id, "text": text, "parse_mode": "HTML", "allow_paid_broadcast": true})
            } else {
                json!({"chat_id": r.user_id, "text": text, "parse_mode": "HTML"})
            },
        );
        job.enqueued_ms = now;
        job.broadcast = Some(b.id);
        jobs.push(job);
    }
    if !jobs.is_empty() {
        s.fleet.hot.commit(&bot.pool, Marker::None, &jobs).await?;
        s.fleet.ring(&jobs);
    }
    let n = jobs.len() as i64;
    // A batch queued again repeats nothing by itself: the sender sends each member's message
    // once (`Registry::broadcast_attempt`) and counts the sends a kill left unknown.
    s.store.batch_queued(b.id, to, n, 0).await?;
    if repeated {
        tracing::warn!(bot = %b.bot, id = b.id, members = n, "broadcast: a batch of a stopped process was queued again");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{TEXT_PATTERN, telegram_html};

    /// A broadcast keeps a few seconds of its bot's budget queued, whatever the budget.
    #[test]
    fn the_queue_is_seconds_of_the_bots_budget() {
        assert_eq!(super::queue_for(90, 30), 90);
        assert_eq!(super::queue_for(90, 0), 90, "unknown: Telegram's free rate");
        assert_eq!(super::queue_for(90, 300), 900);
        assert_eq!(super::queue_for(3, 100), 12);
        let config = r#"{"limits":{"outbound":{"perBotPerSecond":250,"perChatPerMinute":20}}}"#;
        assert_eq!(super::per_bot_per_second(config), 250);
        assert_eq!(super::per_bot_per_second("not json"), 0);
        let paid = r#"{"limits":{"outbound":{"perBotPerSecond":30,"paidBroadcastPerSecond":500}}}"#;
        assert_eq!(super::paid_per_second(paid), 500);
        assert_eq!(super::paid_per_second(config), 300, "the default");
    }

    /// The cost of a paid broadcast: the messages above the free 30 a second, 0.1 Star each.
    #[test]
    fn a_paid_broadcast_costs_the_messages_above_the_free_rate() {
        // 10,000 members at 300/s: 34 s, of which 30/s free → 9,000 charged → 900 Stars.
        let e = super::estimate("ns/a", 10_000, 300, true, Some(850));
        assert_eq!((e.seconds, e.charged_messages, e.stars_estimate, e.stars_at_most), (34, 9_000, 900, 1_000));
        assert_eq!(e.enough_stars, Some(false));
        assert_eq!(super::estimate("ns/a", 10_000, 300, true, Some(900)).enough_stars, Some(true));
        assert_eq!(super::estimate("ns/a", 10_000, 300, true, None).enough_stars, None);
        // Rounded up: 7 members at 100/s → 5 charged (4.9) → 1 Star.
        let e = super::estimate("ns/a", 7, 100, true, Some(0));
        assert_eq!((e.charged_messages, e.stars_estimate, e.stars_at_most), (5, 1, 1));
        // Free: nothing charged, at the bot's own pace.
        let e = super::estimate("ns/a", 10_000, 30, false, Some(0));
        assert_eq!((e.seconds, e.charged_messages, e.stars_estimate, e.enough_stars), (334, 0, 0, None));
    }

    /// The document's pattern names the same tags the check accepts.
    #[test]
    fn the_documented_pattern_lists_the_accepted_tags() {
        assert!(TEXT_PATTERN.contains(&format!("</*({})(>|", telegram_html::TAGS.join("|"))), "{TEXT_PATTERN}");
    }
}
