//! The moderation queue (docs/ADMIN.md, "Moderation"): members with open reports, shown with
//! metadata only — counts, reasons, reporters, 👎/👍, the chats' ids and the ids of their
//! media-mirror copies, earlier warnings; never what was said (the chat core never stores
//! it) — and the actions on them: dismiss, warn (a fixed message in the member's language,
//! through the bot's outbox), restrict for a time, ban. Each closes the member's open reports
//! with the review, and is audited. Members without reports who received many 👎 are queued
//! too. The lists of bans and restrictions in force, and of the members most blocked, are here.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::api::{BanAnswer, BanRequest, apply_ban, audit_action, parse_user_id, registered, send_message};
use super::auth::{Admin, Identity};
use super::{AdminState, ApiError, Body};
use crate::chat::text_key::TextKey;
use crate::store::admin::{BannedEntry, BlockedMember, ReportedMember};
use crate::texts::Lang;

/// Members read for the queue before the admin's reach is applied (most reporters first).
const QUEUE_SCAN: i64 = 1000;
/// Items shown.
const QUEUE_SHOWN: usize = 100;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/moderation/reports", get(queue))
        .route("/api/v1/moderation/reports/{user_id}/review", post(review))
        .route("/api/v1/moderation/banned", get(banned))
        .route("/api/v1/moderation/blocked", get(blocked))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct QueueAnswer {
    /// Members of the admin's bots with open reports, most reporters first; then members
    /// without one over the 👎 threshold (`why`), most 👎 first.
    pub items: Vec<ReportedMember>,
}

/// The queue as `id` may see it (the API's and the dashboard's): members with open reports
/// (most reporters first), then members without one who crossed the 👎 threshold (most 👎
/// first). Crossing the report threshold (the bot's `reportsToRestrict`) needs reports, so
/// those members are in the queue by their open reports, restricted already.
pub(super) async fn queue_of(s: &AdminState, id: &Identity) -> Result<Vec<ReportedMember>, ApiError> {
    let now = crate::bot::now_ms();
    let reach = id.clone();
    let visible = move |bot: &str| reach.may_act_on(bot);
    let mut items = s.store.report_queue(now, QUEUE_SCAN, QUEUE_SHOWN, &visible).await?;
    let threshold = s.settings.thumbs_down_to_review;
    if threshold > 0 && items.len() < QUEUE_SHOWN {
        let room = QUEUE_SHOWN - items.len();
        items.extend(s.store.thumbs_down_queue(now - THUMBS_WINDOW_MS, i64::from(threshold), now, QUEUE_SCAN, room, &visible).await?);
    }
    Ok(items)
}

/// 👎 count toward the queue for this long (the window the items show).
const THUMBS_WINDOW_MS: i64 = 30 * 86_400_000;

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BlockedAnswer {
    /// Members of the admin's bots that other members blocked, most blockers first.
    pub entries: Vec<BlockedMember>,
}

/// The blocked list as `id` may see it: members of their bots (who blocked them is not shown).
pub(super) async fn blocked_of(s: &AdminState, id: &Identity) -> Result<Vec<BlockedMember>, ApiError> {
    let mut entries = s.store.blocked(QUEUE_SCAN).await?;
    entries.retain(|e| id.may_act_on(&e.bot));
    entries.truncate(QUEUE_SHOWN);
    Ok(entries)
}

async fn blocked(State(s): State<AdminState>, admin: Admin) -> Result<axum::Json<BlockedAnswer>, ApiError> {
    Ok(axum::Json(BlockedAnswer { entries: blocked_of(&s, &admin.identity).await? }))
}

async fn queue(State(s): State<AdminState>, admin: Admin) -> Result<axum::Json<QueueAnswer>, ApiError> {
    Ok(axum::Json(QueueAnswer { items: queue_of(&s, &admin.identity).await? }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(extend("oneOf" = [
    {"properties": {"action": {"const": "dismiss"}}},
    {"properties": {"action": {"const": "warn"}, "hours": {"type": "null"}}},
    {"properties": {"action": {"const": "restrict"}, "hours": {"type": "integer"}}, "required": ["hours"]},
    {"properties": {"action": {"const": "ban"}, "hours": {"type": "null"}}},
]))]
pub struct ReviewRequest {
    /// The bot the member was reported on (`<namespace>/<name>`).
    pub bot: String,
    /// `dismiss` (nothing to act on), `warn` (the member is sent a warning by the bot),
    /// `restrict` (no matching for `hours`) or `ban` (until lifted).
    #[schemars(extend("enum" = ["dismiss", "warn", "restrict", "ban"]))]
    pub action: String,
    /// For `restrict` (required): 1 to 87600; never for `ban`.
    #[serde(default)]
    #[schemars(range(min = 1, max = 87_600))]
    pub hours: Option<i64>,
    /// For `restrict` and `ban`: on every bot of the fleet (fleet admins), not just `bot`.
    #[serde(default)]
    pub fleet_wide: Option<bool>,
    /// Kept in the audit log (at most 500 characters).
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ReviewAnswer {
    pub user_id: i64,
    pub action: String,
    /// Open reports this review closed.
    pub reports_closed: u64,
    /// For `restrict` and `ban`: what the ban did.
    pub ban: Option<BanAnswer>,
    /// For `warn`: the warning is queued on the bot's outbox.
    pub warned: bool,
}

async fn review(
    State(s): State<AdminState>,
    admin: Admin,
    Path(raw): Path<String>,
    Body(req): Body<ReviewRequest>,
) -> Result<axum::Json<ReviewAnswer>, ApiError> {
    let user_id = parse_user_id(&raw)?;
    admin.identity.require_bot(&req.bot)?;
    let fleet_wide = req.fleet_wide.unwrap_or(false);
    if fleet_wide {
        admin.identity.require_fleet("a fleet-wide restriction or ban")?;
    }
    let hours = match (req.action.as_str(), req.hours) {
        ("warn", Some(_)) => return Err(ApiError::bad("hours: a warning has no length; use action restrict for a time")),
        ("warn", None) if fleet_wide => {
            return Err(ApiError::bad("fleet_wide: a warning is sent by one bot; fleet_wide is for restrict and ban"));
        }
        ("dismiss", _) | ("ban", None) | ("warn", None) => None,
        ("restrict", Some(h)) => Some(h),
        ("restrict", None) => return Err(ApiError::bad("hours: a restriction needs its length (1 to 87600 hours)")),
        ("ban", Some(_)) => return Err(ApiError::bad("hours: a ban lasts until lifted; use action restrict for a time")),
        _ => return Err(ApiError::bad("action: dismiss, warn, restrict or ban")),
    };
    // Acting first, closing the reports after: a failed ban or warning leaves them open.
    let warned = req.action == "warn";
    if warned {
        let bot = registered(&s, &req.bot).await?;
        let Some(member) = s.fleet.store.user(&bot.id, user_id).await? else {
            return Err(ApiError::NotFound(format!("{user_id} is not a member of {}", bot.id)));
        };
        let lang = Lang::parse(&member.language).unwrap_or(Lang::En);
        send_message(&s, &bot, user_id, TextKey::Warned.text(lang), crate::bot::now_ms()).await?;
    }
    let ban = if req.action == "dismiss" || warned {
        None
    } else {
        let bot = if fleet_wide { None } else { Some(req.bot.clone()) };
        Some(apply_ban(&s, &admin, user_id, BanRequest { bot, hours, reason: req.reason.clone() }).await?)
    };
    let scope = if fleet_wide { None } else { Some(req.bot.as_str()) };
    let closed = s.store.review_reports(scope, user_id, &req.action, admin.identity.telegram_id, crate::bot::now_ms()).await?;
    s.fleet.metrics.admin_action("review", &req.action);
    let detail = json!({"action": req.action, "reports_closed": closed, "hours": hours, "fleet_wide": fleet_wide, "warned": warned});
    audit_action(&s, &admin, "review", Some(&req.bot), Some(user_id), detail).await?;
    Ok(axum::Json(ReviewAnswer { user_id, action: req.action, reports_closed: closed, ban, warned }))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BannedAnswer {
    /// Fleet-wide entries (fleet admins only) and bans on the admin's bots, latest end first.
    pub entries: Vec<BannedEntry>,
}

/// Bans in force as `id` may see them (the API's and the dashboard's).
pub(super) async fn banned_of(s: &AdminState, id: &Identity) -> Result<Vec<BannedEntry>, ApiError> {
    let mut entries = s.store.banned(crate::bot::now_ms(), 1000).await?;
    entries.retain(|e| match &e.bot {
        None => id.fleet_admin,
        Some(bot) => id.may_act_on(bot),
    });
    Ok(entries)
}

async fn banned(State(s): State<AdminState>, admin: Admin) -> Result<axum::Json<BannedAnswer>, ApiError> {
    Ok(axum::Json(BannedAnswer { entries: banned_of(&s, &admin.identity).await? }))
}
