//! `/api/v1`: the admin API (docs/ADMIN.md has the permission matrix; `openapi.rs` the
//! document). Every handler checks the admin's reach before it reads or changes anything,
//! and every action is written to the audit log.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::{self, Admin, Client, Identity};
use super::{AdminState, ApiError, Body};
use crate::chat::protocol::{TimerKind, admin_timer_id};
use crate::chat::text_key::TextKey;
use crate::hot::{Job, Lane, Marker};
use crate::matching::{Member, Tier};
use crate::store::admin::{AuditEntry, BAN_FOREVER_MS, BotNumbers, Gift, NewAudit, People, PersonView, RegisteredBot, Revenue};
use crate::store::money::{LedgerEntry, LedgerOutcome};
use crate::texts::Lang;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/login/code", post(login_code))
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/session", get(session))
        .route("/api/v1/bots", get(bots))
        .route("/api/v1/overview", get(overview))
        .route("/api/v1/users", get(find_users))
        .route("/api/v1/users/{user_id}", get(user))
        .route("/api/v1/users/{user_id}/ban", post(ban))
        .route("/api/v1/users/{user_id}/unban", post(unban))
        .route("/api/v1/users/{user_id}/gift", post(gift))
        .route("/api/v1/refunds", post(refund))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/audit.csv", get(audit_csv))
        .route("/api/v1/payments.csv", get(payments_csv))
}

async fn openapi() -> Response {
    axum::Json(super::openapi::document()).into_response()
}

// ---- login -------------------------------------------------------------------------------

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CodeRequest {
    /// The admin's Telegram user id.
    #[schemars(range(min = 1))]
    pub telegram_id: i64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CodeAnswer {
    /// Always the same, whether or not the id is an admin's (nobody learns who the admins are).
    pub message: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct LoginRequest {
    #[schemars(range(min = 1))]
    pub telegram_id: i64,
    /// The 6-digit code the bot sent.
    #[schemars(pattern(r"^[0-9]{6}$"))]
    pub code: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SessionAnswer {
    pub admin: Identity,
    /// Send it in `X-CSRF-Token` with every request that is not GET/HEAD.
    pub csrf_token: String,
}

/// Sends a login code through the first bot of the fleet that can reach the admin.
async fn login_code(State(s): State<AdminState>, Client(client): Client, Body(req): Body<CodeRequest>) -> Result<Response, ApiError> {
    let now = crate::bot::now_ms();
    if req.telegram_id <= 0 {
        return Err(ApiError::bad("telegram_id must be a Telegram user id (a positive whole number)"));
    }
    auth::spend_try(&s, req.telegram_id, &client, "code", now).await?;
    let answer = CodeAnswer { message: "If this Telegram id belongs to an admin, a bot of the fleet has sent it a code.".into() };
    let bots = s.store.bots().await?;
    let Some(identity) = Identity::resolve(req.telegram_id, &s.settings.fleet_admins, &bots) else {
        s.fleet.metrics.admin_login("code_not_sent");
        return Ok((StatusCode::ACCEPTED, axum::Json(answer)).into_response());
    };
    // The bots that list them as an admin first (by id), then (fleet admins) any bot; of
    // those, the first where they are a member who has not blocked the bot.
    let mut candidates: Vec<&RegisteredBot> = bots.iter().filter(|b| b.admins.contains(&req.telegram_id)).collect();
    candidates.extend(bots.iter().filter(|b| identity.fleet_admin && !b.admins.contains(&req.telegram_id)));
    let reachable = s.store.reachable_on(req.telegram_id).await?;
    let Some(bot) = candidates.iter().find(|b| reachable.contains(&b.id)).or(candidates.first()).copied() else {
        tracing::warn!("an admin asked for a login code but no bot is registered to send it");
        s.fleet.metrics.admin_login("code_not_sent");
        return Ok((StatusCode::ACCEPTED, axum::Json(answer)).into_response());
    };
    let code = auth::new_code();
    let hash = s.settings.secret.tag("code", &format!("{}|{code}", req.telegram_id));
    s.store.save_code(req.telegram_id, &hash, &bot.id, now, now + auth::CODE_TTL_MS).await?;
    let lang = s.store.language_on(&bot.id, req.telegram_id).await?.as_deref().and_then(Lang::parse).unwrap_or(Lang::En);
    send_message(&s, bot, req.telegram_id, TextKey::AdminLoginCode.fmt(lang, &[("code", &code)]), now).await?;
    s.fleet.metrics.admin_login("code_sent");
    write_audit(&s, req.telegram_id, None, "login_code", Some(&bot.id), None, json!({}), &client).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(answer)).into_response())
}

async fn login(State(s): State<AdminState>, Client(client): Client, Body(req): Body<LoginRequest>) -> Result<Response, ApiError> {
    let now = crate::bot::now_ms();
    auth::spend_try(&s, req.telegram_id, &client, "verify", now).await?;
    let code = req.code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad("the code is the 6 digits the bot sent"));
    }
    let hash = s.settings.secret.tag("code", &format!("{}|{code}", req.telegram_id));
    if !s.store.take_code(req.telegram_id, &hash, now).await? {
        s.fleet.metrics.admin_login("wrong_code");
        return Err(ApiError::Unauthorized("wrong, used or expired code: ask for a new one".into()));
    }
    let bots = s.store.bots().await?;
    let Some(identity) = Identity::resolve(req.telegram_id, &s.settings.fleet_admins, &bots) else {
        return Err(ApiError::Forbidden("this Telegram id is no longer an admin of this fleet".into()));
    };
    let token = auth::new_session_token();
    s.store.create_session(&s.settings.secret.tag("session", &token), req.telegram_id, now, now + auth::SESSION_TTL_MS).await?;
    s.fleet.metrics.admin_login("logged_in");
    write_audit(&s, req.telegram_id, None, "login", None, None, json!({}), &client).await?;
    let body = SessionAnswer { admin: identity, csrf_token: s.settings.secret.tag("csrf", &token) };
    Ok(([(header::SET_COOKIE, auth::session_cookie(&token, s.settings.secure_cookies))], axum::Json(body)).into_response())
}

async fn logout(State(s): State<AdminState>, admin: Admin) -> Result<Response, ApiError> {
    s.store.revoke_session(&admin.token_hash, crate::bot::now_ms()).await?;
    audit_action(&s, &admin, "logout", None, None, json!({})).await?;
    Ok(([(header::SET_COOKIE, auth::session_cookie("", s.settings.secure_cookies))], axum::Json(json!({"logged_out": true})))
        .into_response())
}

async fn session(admin: Admin) -> axum::Json<SessionAnswer> {
    axum::Json(SessionAnswer { admin: admin.identity, csrf_token: admin.csrf })
}

// ---- reading -----------------------------------------------------------------------------

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BotsAnswer {
    pub bots: Vec<RegisteredBot>,
}

async fn bots(State(s): State<AdminState>, admin: Admin) -> Result<axum::Json<BotsAnswer>, ApiError> {
    let bots = s.store.bots().await?.into_iter().filter(|b| admin.identity.may_act_on(&b.id)).collect();
    Ok(axum::Json(BotsAnswer { bots }))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PoolNow {
    pub pool: String,
    pub vip_waiting: u64,
    pub free_waiting: u64,
    pub chats: u64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Overview {
    pub now_ms: i64,
    /// Fleet-wide people (fleet admins only).
    pub people: Option<People>,
    pub bots: Vec<BotNumbers>,
    /// Queues and chats now, from the matching store, per pool of the admin's bots.
    pub pools: Vec<PoolNow>,
    /// The fleet's time zone (IANA name): `day`s, `daily` and "new today" are its days.
    pub time_zone: String,
    /// The last 30 days (today included) by bot and plan.
    pub revenue: Vec<Revenue>,
    /// Stars per day over the last 30 days, oldest first, every day present (the chart's bars).
    pub daily: Vec<DayStars>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DayStars {
    /// `YYYY-MM-DD` in the fleet's time zone.
    pub date: String,
    pub stars: i64,
}

async fn overview(State(s): State<AdminState>, admin: Admin) -> Result<axum::Json<Overview>, ApiError> {
    Ok(axum::Json(overview_of(&s, &admin.identity).await?))
}

/// The overview as `id` may see it (the API's and the dashboard's).
pub(super) async fn overview_of(s: &AdminState, id: &Identity) -> Result<Overview, ApiError> {
    let now = crate::bot::now_ms();
    let zone = &s.settings.time_zone;
    let today = zone.day_of(now);
    let today_ms = zone.day_start(today);
    let people = if id.fleet_admin { Some(s.store.people(now, today_ms).await?) } else { None };
    let registered = s.store.bots().await?;
    let mut bots: Vec<BotNumbers> = s.store.bot_numbers(now, today_ms).await?.into_iter().filter(|b| id.may_act_on(&b.bot)).collect();
    // Every registered bot has a row (a bot without members yet too), with its Stars balance.
    for r in registered.iter().filter(|r| id.may_act_on(&r.id)) {
        let i = match bots.iter().position(|b| b.bot == r.id) {
            Some(i) => i,
            None => {
                bots.push(BotNumbers { bot: r.id.clone(), ..BotNumbers::default() });
                bots.len() - 1
            }
        };
        (bots[i].star_balance, bots[i].star_balance_ms) = (r.star_balance, r.star_balance_ms);
    }
    bots.sort_by(|a, b| a.bot.cmp(&b.bot));
    let mut pools: Vec<PoolNow> = Vec::new();
    for b in registered.iter().filter(|b| id.may_act_on(&b.id)) {
        if pools.iter().any(|p| p.pool == b.pool) {
            continue;
        }
        pools.push(PoolNow {
            pool: b.pool.clone(),
            vip_waiting: s.fleet.matcher.queue_len(&b.pool, Tier::Vip).await?,
            free_waiting: s.fleet.matcher.queue_len(&b.pool, Tier::Free).await?,
            chats: s.fleet.matcher.active_chats(&b.pool).await?,
        });
    }
    let first = today - 29;
    let revenue: Vec<Revenue> = s
        .store
        .revenue_since(zone.day_start(first), &zone.tz)
        .await?
        .into_iter()
        .filter(|r| id.may_act_on(&r.bot) && r.day >= first)
        .collect();
    let daily = (first..=today)
        .map(|day| DayStars { date: date_of(day), stars: revenue.iter().filter(|r| r.day == day).map(|r| r.stars).sum() })
        .collect();
    Ok(Overview { now_ms: now, people, bots, pools, time_zone: zone.name.clone(), revenue, daily })
}

/// `YYYY-MM-DD` of a day (days since 1970-01-01).
pub(super) fn date_of(day: i64) -> String {
    jiff::civil::date(1970, 1, 1).checked_add(jiff::Span::new().days(day)).map(|d| d.to_string()).unwrap_or_default()
}

pub(super) fn parse_user_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad(format!("{raw:?} is not a Telegram user id (a positive whole number)")))
}

/// The person as this admin may see them: only their bots' members (None: nothing to see).
pub(super) async fn visible_person(s: &AdminState, id: &Identity, user_id: i64) -> Result<Option<PersonView>, ApiError> {
    let Some(mut p) = s.store.person_view(user_id).await? else { return Ok(None) };
    if id.fleet_admin {
        return Ok(Some(p));
    }
    p.members.retain(|m| id.may_act_on(&m.bot));
    Ok(if p.members.is_empty() { None } else { Some(p) })
}

async fn user(State(s): State<AdminState>, admin: Admin, Path(raw): Path<String>) -> Result<axum::Json<PersonView>, ApiError> {
    Ok(axum::Json(view_user(&s, &admin, parse_user_id(&raw)?).await?))
}

/// A person as this admin may see them, the view audited (the API's and the dashboard's).
pub(super) async fn view_user(s: &AdminState, admin: &Admin, user_id: i64) -> Result<PersonView, ApiError> {
    let Some(p) = visible_person(s, &admin.identity, user_id).await? else {
        return Err(ApiError::NotFound(format!("no member of your bots has the Telegram id {user_id}")));
    };
    audit_action(s, &admin, "view_user", None, Some(user_id), json!({})).await?;
    Ok(p)
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct UsersAnswer {
    pub users: Vec<PersonView>,
}

async fn find_users(
    State(s): State<AdminState>,
    admin: Admin,
    Query(q): Query<HashMap<String, String>>,
) -> Result<axum::Json<UsersAnswer>, ApiError> {
    let query = match (q.get("id"), q.get("username")) {
        (Some(raw), _) => UserQuery::Id(parse_user_id(raw)?),
        (None, Some(name)) => UserQuery::username(name)?,
        (None, None) => return Err(ApiError::bad("give ?id=<Telegram id> or ?username=<@username>")),
    };
    Ok(axum::Json(UsersAnswer { users: search_users(&s, &admin, &query).await? }))
}

/// What an admin searches people by.
pub(super) enum UserQuery {
    Id(i64),
    Username(String),
}

impl UserQuery {
    pub(super) fn username(raw: &str) -> Result<Self, ApiError> {
        let name = raw.trim().trim_start_matches('@');
        if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ApiError::bad("username: a Telegram @username (letters, digits, underscores)"));
        }
        Ok(UserQuery::Username(name.to_string()))
    }
}

/// The people matching a query that this admin may see, each view audited.
pub(super) async fn search_users(s: &AdminState, admin: &Admin, query: &UserQuery) -> Result<Vec<PersonView>, ApiError> {
    let ids = match query {
        UserQuery::Id(id) => vec![*id],
        UserQuery::Username(name) => s.store.users_named(name).await?,
    };
    let mut users = Vec::new();
    for user_id in ids {
        users.extend(visible_person(s, &admin.identity, user_id).await?);
    }
    for u in &users {
        audit_action(s, &admin, "view_user", None, Some(u.user_id), json!({})).await?;
    }
    Ok(users)
}

// ---- actions -----------------------------------------------------------------------------

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct BanRequest {
    /// `<namespace>/<name>`: ban on this bot only; absent: fleet-wide (fleet admins only).
    #[serde(default)]
    pub bot: Option<String>,
    /// How long (1 to 87600 hours); absent: until unbanned.
    #[serde(default)]
    #[schemars(range(min = 1, max = 87_600))]
    pub hours: Option<i64>,
    /// Why (kept in the audit log, at most 500 characters).
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BanAnswer {
    pub user_id: i64,
    pub bot: Option<String>,
    pub banned_until_ms: i64,
    /// Bots asked to end the person's running chat or search.
    pub chats_ended_on: Vec<String>,
}

fn reason_of(reason: Option<String>) -> Result<String, ApiError> {
    let r = reason.unwrap_or_default();
    if r.chars().count() > 500 {
        return Err(ApiError::bad("reason: at most 500 characters"));
    }
    Ok(r)
}

pub(super) async fn registered(s: &AdminState, bot: &str) -> Result<RegisteredBot, ApiError> {
    s.store
        .bots()
        .await?
        .into_iter()
        .find(|b| b.id == bot)
        .ok_or_else(|| ApiError::NotFound(format!("no bot {bot:?} is registered in this fleet (bots are named <namespace>/<name>)")))
}

async fn ban(
    State(s): State<AdminState>,
    admin: Admin,
    Path(raw): Path<String>,
    Body(req): Body<BanRequest>,
) -> Result<axum::Json<BanAnswer>, ApiError> {
    Ok(axum::Json(apply_ban(&s, &admin, parse_user_id(&raw)?, req).await?))
}

/// A ban (or, with `hours`, a restriction for a time) fleet-wide or on one bot, its running
/// chats ended by each bot's runtime; audited. The ban route's and the moderation queue's.
pub(super) async fn apply_ban(s: &AdminState, admin: &Admin, user_id: i64, req: BanRequest) -> Result<BanAnswer, ApiError> {
    let now = crate::bot::now_ms();
    let until = match req.hours {
        None => BAN_FOREVER_MS,
        Some(h) if (1..=87_600).contains(&h) => now + h * 3_600_000,
        Some(_) => return Err(ApiError::bad("hours: from 1 to 87600 (ten years); leave it out for a ban until unbanned")),
    };
    let reason = reason_of(req.reason)?;
    let bots = s.store.bots().await?;
    let targets: Vec<RegisteredBot> = match &req.bot {
        None => {
            admin.identity.require_fleet("a fleet-wide ban")?;
            // Only a person the fleet has seen (kept across /delete_me): a mistyped id would
            // otherwise make a phantom person, counted as people (docs/ADMIN.md, "No pre-bans").
            let Some(person) = s.store.person_view(user_id).await? else {
                return Err(ApiError::NotFound(format!("no bot of this fleet has ever seen the Telegram id {user_id}")));
            };
            s.fleet.store.restrict(user_id, Some(until), now).await?;
            let members = person.members;
            bots.into_iter().filter(|b| members.iter().any(|m| m.bot == b.id)).collect()
        }
        Some(bot) => {
            admin.identity.require_bot(bot)?;
            let b = registered(s, bot).await?;
            s.store.ban_on_bot(&b.id, user_id, until, admin.identity.telegram_id, now).await?;
            vec![b]
        }
    };
    // The chat core ends the running chat (telling the partner) on each bot: a timer that
    // bot's runtime fires (it holds the token and the chat's state).
    for b in &targets {
        let member = Member::new(b.name.clone(), user_id);
        let timer = TimerKind::Ban { member: member.clone(), until }.at(admin_timer_id("ban", &member), now);
        s.fleet.hot.schedule(&b.pool, &b.name, &timer).await?;
    }
    let chats_ended_on: Vec<String> = targets.iter().map(|b| b.id.clone()).collect();
    s.fleet.metrics.admin_action("ban", "done");
    let detail = json!({"until_ms": until, "reason": reason, "bots": chats_ended_on});
    audit_action(s, admin, "ban", req.bot.as_deref(), Some(user_id), detail).await?;
    Ok(BanAnswer { user_id, bot: req.bot, banned_until_ms: until, chats_ended_on })
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct UnbanRequest {
    /// `<namespace>/<name>`: lift the ban on this bot; absent: the fleet-wide ban.
    #[serde(default)]
    pub bot: Option<String>,
}

async fn unban(
    State(s): State<AdminState>,
    admin: Admin,
    Path(raw): Path<String>,
    Body(req): Body<UnbanRequest>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let user_id = parse_user_id(&raw)?;
    let now = crate::bot::now_ms();
    match &req.bot {
        None => {
            admin.identity.require_fleet("a fleet-wide unban")?;
            s.fleet.store.restrict(user_id, None, now).await?;
            // `restrict` clears every member row; bans on single bots stay.
            s.store.reapply_bot_bans(user_id).await?;
        }
        Some(bot) => {
            admin.identity.require_bot(bot)?;
            let b = registered(&s, bot).await?;
            s.store.unban_on_bot(&b.id, user_id).await?;
        }
    }
    s.fleet.metrics.admin_action("unban", "done");
    audit_action(&s, &admin, "unban", req.bot.as_deref(), Some(user_id), json!({})).await?;
    Ok(axum::Json(json!({"user_id": user_id, "bot": req.bot, "unbanned": true})))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(extend("anyOf" = [
    {"required": ["vip_days"], "properties": {"vip_days": {"minimum": 1}}},
    {"required": ["credits"], "properties": {"credits": {"minimum": 1}}},
]))]
pub struct GiftRequest {
    /// `<namespace>/<name>`: VIP and credits belong to a member of one bot.
    pub bot: String,
    /// VIP days to add (0 to 3650), stacked onto an unexpired VIP.
    #[serde(default)]
    #[schemars(range(min = 0, max = 3650))]
    pub vip_days: i64,
    /// Lock-chat credits to add (0 to 100000); at least one of the two above 0.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100_000))]
    pub credits: i64,
    /// Makes a retried request harmless: the same key gives nothing twice (1 to 100 of
    /// `A-Za-z0-9_-.:`).
    #[schemars(pattern(r"^[A-Za-z0-9_.:-]{1,100}$"))]
    pub idempotency_key: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct GiftAnswer {
    pub user_id: i64,
    pub bot: String,
    /// False: the key was used before; nothing more was given.
    pub first: bool,
    pub vip_until_ms: Option<i64>,
    pub credits_balance: i64,
}

async fn gift(
    State(s): State<AdminState>,
    admin: Admin,
    Path(raw): Path<String>,
    Body(req): Body<GiftRequest>,
) -> Result<axum::Json<GiftAnswer>, ApiError> {
    let user_id = parse_user_id(&raw)?;
    if !(0..=3650).contains(&req.vip_days) || !(0..=100_000).contains(&req.credits) || req.vip_days + req.credits == 0 {
        return Err(ApiError::bad("give vip_days (0 to 3650) and/or credits (0 to 100000), at least one above 0"));
    }
    let key = req.idempotency_key.trim();
    if key.is_empty() || key.len() > 100 || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b)) {
        return Err(ApiError::bad("idempotency_key: 1 to 100 of A-Z a-z 0-9 _ - . :"));
    }
    admin.identity.require_bot(&req.bot)?;
    let b = registered(&s, &req.bot).await?;
    if s.fleet.store.user(&b.id, user_id).await?.is_none() {
        return Err(ApiError::NotFound(format!("{user_id} is not a member of {}", b.id)));
    }
    let now = crate::bot::now_ms();
    let Some(outcome) = give(&s, &b, admin.identity.telegram_id, user_id, req.vip_days, req.credits, key, Lane::Interactive, now).await?
    else {
        return Err(ApiError::NotFound(format!("{user_id} is not a member of {}", b.id)));
    };
    let balance = s.fleet.store.credits(&b.id, user_id).await?;
    s.fleet.metrics.admin_action("gift", if outcome.first { "done" } else { "repeated" });
    let detail = json!({"vip_days": req.vip_days, "credits": req.credits, "key": key, "first": outcome.first});
    audit_action(&s, &admin, "gift", Some(&b.id), Some(user_id), detail).await?;
    Ok(axum::Json(GiftAnswer { user_id, bot: b.id, first: outcome.first, vip_until_ms: outcome.vip_until_ms, credits_balance: balance }))
}

/// Gives a member of `b` VIP days and credits once per `key` (the ledger's entry and the gift's
/// row are keyed by bot, member and key), and tells them on the first use, on `lane`. None: not
/// a member. Used by the member's gift and by a gift to an audience (`broadcast.rs`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn give(
    s: &AdminState,
    b: &RegisteredBot,
    admin_id: i64,
    user_id: i64,
    vip_days: i64,
    credits: i64,
    key: &str,
    lane: Lane,
    now: i64,
) -> Result<Option<crate::store::admin::GiftOutcome>, ApiError> {
    let idem_key = format!("{}|{user_id}|{key}", b.id);
    // Credits first (keyed in the ledger), then the VIP days with the gift's row: a retry
    // after a failure between the two completes the gift without doubling either.
    if credits > 0 {
        let entry = LedgerEntry {
            idem_key: format!("gift:{idem_key}"),
            bot: b.id.clone(),
            user_id,
            delta: credits,
            reason: "gift".into(),
            reference: format!("admin:{admin_id}"),
            created_ms: now,
        };
        if let LedgerOutcome::Insufficient { .. } = s.fleet.store.append(&entry).await? {
            return Err(ApiError::Internal("the ledger refused a credit".into()));
        }
    }
    let g = Gift { idem_key, bot: b.id.clone(), user_id, vip_days, credits, admin_id, now_ms: now };
    let Some(outcome) = s.store.gift_vip(&g).await? else {
        return Ok(None);
    };
    if outcome.first {
        tell_gift(s, b, user_id, vip_days, credits, lane, now).await?;
    }
    Ok(Some(outcome))
}

/// Tells the member about a gift, through the bot's outbox, in their language (once: only the
/// first use of a key gets here). A retry after a failure before this line repeats nothing but
/// the notice.
async fn tell_gift(
    s: &AdminState,
    b: &RegisteredBot,
    user_id: i64,
    vip_days: i64,
    credits: i64,
    lane: Lane,
    now: i64,
) -> Result<(), ApiError> {
    let lang = s.store.language_on(&b.id, user_id).await?.as_deref().and_then(Lang::parse).unwrap_or(Lang::En);
    let mut lines = Vec::new();
    if vip_days > 0 {
        lines.push(TextKey::GiftVip.fmt(lang, &[("days", &vip_days.to_string())]));
    }
    if credits > 0 {
        lines.push(TextKey::GiftCredits.fmt(lang, &[("credits", &credits.to_string())]));
    }
    send_message_on(s, b, user_id, lines.join("\n"), lane, now).await
}

/// A message (Telegram HTML) to a member, as a job on the bot's outbox: sent by that bot's
/// sender with its limits and retries (the admin role holds no token).
pub(super) async fn send_message(s: &AdminState, bot: &RegisteredBot, user_id: i64, text: String, now: i64) -> Result<(), ApiError> {
    send_message_on(s, bot, user_id, text, Lane::Interactive, now).await
}

/// [`send_message`] on a lane: the bulk lane for many members at once (it waits behind chats
/// and never counts toward ingress backpressure).
async fn send_message_on(s: &AdminState, bot: &RegisteredBot, user_id: i64, text: String, lane: Lane, now: i64) -> Result<(), ApiError> {
    let to = Member::new(bot.name.clone(), user_id);
    let mut job = Job::to(&to, lane, "sendMessage", json!({"chat_id": user_id, "text": text, "parse_mode": "HTML"}));
    job.enqueued_ms = now;
    let jobs = [job];
    s.fleet.hot.commit(&bot.pool, Marker::None, &jobs).await?;
    s.fleet.ring(&jobs);
    Ok(())
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RefundRequest {
    /// `<namespace>/<name>` of the bot that took the payment.
    pub bot: String,
    /// `telegram_payment_charge_id` of the payment.
    #[schemars(pattern(r"^[!-~]{1,200}$"))]
    pub charge_id: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RefundAnswer {
    /// `queued`: the bot's runtime refunds it at Telegram, then reverses the grant once (the
    /// payment's `refunded_ms` shows when it is done).
    pub status: String,
    pub user_id: i64,
    pub stars: i64,
}

async fn refund(State(s): State<AdminState>, admin: Admin, Body(req): Body<RefundRequest>) -> Result<Response, ApiError> {
    let charge = req.charge_id.trim();
    if charge.is_empty() || charge.len() > 200 || charge.contains(char::is_whitespace) {
        return Err(ApiError::bad("charge_id: the payment's telegram_payment_charge_id"));
    }
    admin.identity.require_bot(&req.bot)?;
    let b = registered(&s, &req.bot).await?;
    let Some(payment) = s.fleet.store.payment_of_charge(&b.id, charge).await? else {
        return Err(ApiError::NotFound(format!("{} has no payment with the charge id {charge:?}", b.id)));
    };
    if let Some(at) = payment.refunded_ms {
        return Err(ApiError::Conflict(format!("this payment was refunded already (at {at} ms)")));
    }
    let now = crate::bot::now_ms();
    let buyer = Member::new(b.name.clone(), payment.user_id);
    let timer = TimerKind::Refund { charge: charge.to_string(), admin: admin.identity.telegram_id }
        .at(admin_timer_id(&format!("refund:{charge}"), &buyer), now);
    s.fleet.hot.schedule(&b.pool, &b.name, &timer).await?;
    s.fleet.metrics.admin_action("refund", "queued");
    let detail = json!({"charge_id": charge, "stars": payment.stars});
    audit_action(&s, &admin, "refund", Some(&b.id), Some(payment.user_id), detail).await?;
    let body = RefundAnswer { status: "queued".into(), user_id: payment.user_id, stars: payment.stars };
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

// ---- the audit log -----------------------------------------------------------------------

/// Audits an action of a logged-in admin or an API key.
pub(super) async fn audit_action(
    s: &AdminState,
    admin: &Admin,
    action: &str,
    bot: Option<&str>,
    target_user: Option<i64>,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    write_audit(s, admin.identity.telegram_id, admin.api_key.as_deref(), action, bot, target_user, detail, &admin.client).await
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn write_audit(
    s: &AdminState,
    admin_id: i64,
    api_key: Option<&str>,
    action: &str,
    bot: Option<&str>,
    target_user: Option<i64>,
    detail: serde_json::Value,
    client: &str,
) -> Result<(), ApiError> {
    let entry = NewAudit {
        at_ms: crate::bot::now_ms(),
        admin_id,
        action: action.to_string(),
        bot: bot.map(str::to_string),
        target_user,
        detail: detail.to_string(),
        client: Some(client.to_string()),
        api_key: api_key.map(str::to_string),
    };
    s.store.audit(&entry).await?;
    Ok(())
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AuditAnswer {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

fn page(q: &HashMap<String, String>, default: i64, max: i64) -> Result<(Option<i64>, i64), ApiError> {
    let before = q.get("before").map(|v| v.parse::<i64>().map_err(|_| ApiError::bad("before: an audit entry id"))).transpose()?;
    let limit = match q.get("limit") {
        None => default,
        Some(v) => v.parse::<i64>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| ApiError::bad(format!("limit: 1 to {max}")))?,
    };
    Ok((before, limit))
}

async fn audit(
    State(s): State<AdminState>,
    admin: Admin,
    Query(q): Query<HashMap<String, String>>,
) -> Result<axum::Json<AuditAnswer>, ApiError> {
    admin.identity.require_fleet("the audit log")?;
    let (before, limit) = page(&q, 100, 500)?;
    let entries = s.store.audit_log(before, limit).await?;
    let next_before = if entries.len() as i64 == limit { entries.last().map(|e| e.id) } else { None };
    Ok(axum::Json(AuditAnswer { entries, next_before }))
}

/// One CSV field: quoted when needed, and a leading `= + - @` defused (spreadsheets would run it).
fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@']) { format!("'{v}") } else { v.to_string() };
    if v.contains([',', '"', '\n', '\r']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v }
}

async fn audit_csv(State(s): State<AdminState>, admin: Admin, Query(q): Query<HashMap<String, String>>) -> Result<Response, ApiError> {
    admin.identity.require_fleet("the audit log")?;
    let (before, limit) = page(&q, 10_000, 100_000)?;
    let entries = s.store.audit_log(before, limit).await?;
    Ok(csv_answer(
        "botfleet-audit.csv",
        "id,at,admin_id,action,bot,target_user,detail,client,api_key",
        entries.into_iter().map(|e| {
            vec![
                e.id.to_string(),
                iso(e.at_ms),
                e.admin_id.to_string(),
                e.action,
                e.bot.unwrap_or_default(),
                e.target_user.map(|u| u.to_string()).unwrap_or_default(),
                e.detail,
                e.client.unwrap_or_default(),
                e.api_key.unwrap_or_default(),
            ]
        }),
    ))
}

/// A CSV download: the header row, then one row per record, each field through [`csv_field`].
fn csv_answer(file: &str, header: &str, rows: impl Iterator<Item = Vec<String>>) -> Response {
    let mut out = format!("{header}\n");
    for fields in rows {
        out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    let disposition = format!("attachment; filename=\"{file}\"");
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, disposition)], out).into_response()
}

fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default()
}

/// Payments as CSV (`?from=&to=` in ms since the epoch, default the last 31 days; at most
/// 100,000 rows): every bot's for fleet admins, their bots' for bot admins. Audited (it holds
/// user ids).
async fn payments_csv(State(s): State<AdminState>, admin: Admin, Query(q): Query<HashMap<String, String>>) -> Result<Response, ApiError> {
    let now = crate::bot::now_ms();
    let ms = |name: &str, default: i64| {
        q.get(name).map_or(Ok(default), |v| v.parse::<i64>().map_err(|_| ApiError::bad(format!("{name}: milliseconds since the epoch"))))
    };
    let (from, to) = (ms("from", now - 31 * 86_400_000)?, ms("to", now + 1)?);
    if from >= to {
        return Err(ApiError::bad("from must be before to"));
    }
    let payments = s.store.payments_between(from, to, 100_000).await?;
    let rows: Vec<_> = payments.into_iter().filter(|p| admin.identity.may_act_on(&p.bot)).collect();
    audit_action(&s, &admin, "export_payments", None, None, json!({"from": from, "to": to, "rows": rows.len()})).await?;
    let header = "charge_id,at,bot,user_id,plan,stars,vip_days,lock_credits,refunded_at,refund_spent_credits";
    Ok(csv_answer(
        "botfleet-payments.csv",
        header,
        rows.into_iter().map(|p| {
            vec![
                p.charge_id,
                iso(p.created_ms),
                p.bot,
                p.user_id.to_string(),
                p.plan_id,
                p.stars.to_string(),
                p.vip_days.to_string(),
                p.lock_credits.to_string(),
                p.refunded_ms.map(iso).unwrap_or_default(),
                p.refund_spent_credits.map(|c| c.to_string()).unwrap_or_default(),
            ]
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
    }
}
