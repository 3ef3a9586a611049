//! The HTML dashboard: server-rendered pages over the same logic as `/api/v1`, and the bridge
//! that lets plain HTML forms post to the documented API routes (docs/ADMIN.md, "Dashboard").
//!
//! * **No framework, no CDN, no build step.** Pages are rendered here; the stylesheet and one
//!   small script (the overview's live numbers) are files in `assets/`, compiled in and served
//!   from our own origin, so the dashboard works offline and `cargo build` needs no npm.
//! * **Everything interpolated is escaped.** Markup is written only with [`html!`], which
//!   escapes each argument (`&<>"'`); a [`Markup`] is only ever made from a format string and
//!   escaped values, so a username like `<script>` is text, never markup. (Arguments are
//!   positional: an inline `{name}` capture would bypass the escaping, so none is used.)
//! * **Forms post to the API.** Every form's action is a documented `/api/v1` route; it carries
//!   the CSRF token as the hidden field `_csrf` and the page to return to as `_back`.
//!   [`form_posts`] turns such a post into the API's request (the token into `X-CSRF-Token`,
//!   empty fields dropped) and the API's answer into a page: `303 See Other` to `_back` on
//!   success, an HTML error page with the API's message (and status) otherwise.
//! * **A strict Content-Security-Policy** (`mod.rs`): no inline script or style at all; the
//!   charts are inline SVG (attributes, not styles).

use std::collections::HashMap;
use std::fmt::{self, Display, Write as _};

use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::api::{self, UserQuery};
use super::auth::{Admin, CSRF_HEADER};
use super::{AdminState, ApiError};
use super::{broadcast, moderation};
use crate::store::admin::{BAN_FOREVER_MS, MemberView, PersonView};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/", get(overview))
        .route("/login", get(login))
        .route("/users", get(users))
        .route("/users/{user_id}", get(user))
        .route("/audit", get(audit))
        .route("/keys", get(keys))
        .route("/moderation", get(moderation))
        .route("/broadcasts", get(broadcasts))
        .route("/gifts", get(gifts))
        .route("/analytics", get(analytics))
        .route("/pricing", get(pricing))
        .route("/assets/admin.css", get(css))
        .route("/assets/admin.js", get(js))
}

// ---- markup --------------------------------------------------------------------------------

/// HTML built only from static format strings and escaped values (see [`html!`]).
#[derive(Default)]
pub struct Markup(String);

impl Markup {
    pub fn push(&mut self, other: Markup) {
        self.0.push_str(&other.0);
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A value escaped for HTML text and attribute values.
pub struct Esc<T>(pub T);

impl<T: Display> Display for Esc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(&self.0.to_string()))
    }
}

/// Escapes text for HTML: the Telegram escaping (`& < >`) plus both quotes, for attributes.
pub fn escape(s: &str) -> String {
    crate::texts::escape(s).replace('"', "&quot;").replace('\'', "&#39;")
}

/// Appends markup: the format string is trusted markup, every argument is escaped.
macro_rules! html {
    ($out:expr, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        let _ = write!($out.0, $fmt $(, Esc(&$arg))*);
    }};
}

/// A URL query component (for links built from values).
fn url_component(v: &str) -> String {
    v.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn time(ms: i64) -> String {
    if ms >= BAN_FOREVER_MS {
        return "until lifted".into();
    }
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string().chars().take(16).collect::<String>().replace('T', " ") + " UTC")
        .unwrap_or_default()
}

fn opt_time(ms: Option<i64>) -> String {
    ms.map(time).unwrap_or_else(|| "—".into())
}

/// Confirmations after a form (`?done=<action>`): fixed texts, so a link cannot put words on
/// the page.
fn done_text(action: &str) -> Option<&'static str> {
    Some(match action {
        "ban" => "The ban is in force; the member's running chat is being ended.",
        "unban" => "The ban is lifted.",
        "gift" => "The gift was given (a repeated form gives nothing twice).",
        "refund" => "The refund is queued: the bot refunds it at Telegram, then reverses the grant.",
        "code" => "If this id belongs to an admin, a bot of the fleet has sent a code. Enter it below.",
        "logout" => "You are logged out.",
        "revoke" => "The key is revoked: it is refused from now on.",
        "review" => "Reviewed: the member's open reports are closed (a warning is on its way to them).",
        "broadcast" => "The broadcast is started: the bot sends it at its own pace, after its chats.",
        "cancel" => "The broadcast is stopped (messages already queued still go out).",
        "gift_audience" => {
            "The gift was given to every member of the audience, each told once (a repeated form gives nobody anything twice)."
        }
        _ => return None,
    })
}

// ---- the page frame ------------------------------------------------------------------------

fn page(title: &str, admin: Option<&Admin>, status: StatusCode, body: Markup) -> Response {
    let mut m = Markup::default();
    html!(
        m,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · BotFleet admin</title><link rel=\"stylesheet\" href=\"/assets/admin.css\"></head><body>",
        title
    );
    if let Some(a) = admin {
        let id = &a.identity;
        html!(
            m,
            "<header><nav aria-label=\"Main\"><a href=\"/\">Overview</a> <a href=\"/users\">Users</a> <a href=\"/moderation\">Moderation</a> <a href=\"/broadcasts\">Broadcasts</a> <a href=\"/gifts\">Gifts</a> <a href=\"/analytics\">Analytics</a> <a href=\"/pricing\">Pricing</a>"
        );
        if id.fleet_admin {
            html!(m, " <a href=\"/audit\">Audit log</a> <a href=\"/keys\">API keys</a>");
        }
        html!(
            m,
            "</nav><form class=\"logout\" method=\"post\" action=\"/api/v1/logout\"><input type=\"hidden\" name=\"_csrf\" value=\"{}\">\
             <input type=\"hidden\" name=\"_back\" value=\"/login?done=logout\"><span>{} {}</span> <button type=\"submit\">Log out</button></form></header>",
            a.csrf,
            if id.fleet_admin { "Fleet admin" } else { "Bot admin" },
            id.telegram_id
        );
    }
    html!(m, "<main><h1>{}</h1>", title);
    m.push(body);
    html!(m, "</main></body></html>");
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], m.0).into_response()
}

fn notice(m: &mut Markup, q: &HashMap<String, String>) {
    if let Some(text) = q.get("done").and_then(|d| done_text(d)) {
        html!(m, "<p class=\"notice\" role=\"status\">{}</p>", text);
    }
}

/// The admin of a page: without a session (or with an ended one), the browser goes to the
/// login page; any other refusal is an error page.
pub struct PageAdmin(pub Admin);

impl FromRequestParts<AdminState> for PageAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AdminState) -> Result<Self, Self::Rejection> {
        Admin::from_request_parts(parts, state).await.map(PageAdmin).map_err(need_login)
    }
}

fn need_login(e: ApiError) -> Response {
    match e {
        ApiError::Unauthorized(_) => (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response(),
        other => error_page(&other),
    }
}

fn error_page(e: &ApiError) -> Response {
    let (status, _, message) = e.parts();
    let mut m = Markup::default();
    html!(m, "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"/\">Back to the dashboard</a></p>", message);
    page("Something went wrong", None, status, m)
}

/// The hidden fields every form carries: the CSRF token and the page to come back to.
fn hidden(m: &mut Markup, admin: &Admin, back: &str) {
    html!(m, "<input type=\"hidden\" name=\"_csrf\" value=\"{}\"><input type=\"hidden\" name=\"_back\" value=\"{}\">", admin.csrf, back);
}

// ---- pages ---------------------------------------------------------------------------------

async fn login(Query(q): Query<HashMap<String, String>>) -> Response {
    let mut m = Markup::default();
    notice(&mut m, &q);
    let id = q.get("telegram_id").filter(|v| v.bytes().all(|b| b.is_ascii_digit())).cloned().unwrap_or_default();
    html!(
        m,
        "<section><h2>1. Get a code</h2><p>Enter your Telegram id. A bot of the fleet that you have opened sends you a one-time code (valid 5 minutes).</p>\
         <form method=\"post\" action=\"/api/v1/login/code\"><input type=\"hidden\" name=\"_back\" value=\"/login?done=code&amp;telegram_id={{telegram_id}}\">\
         <label for=\"id1\">Telegram id</label><input id=\"id1\" name=\"telegram_id\" inputmode=\"numeric\" pattern=\"[0-9]+\" required value=\"{}\">\
         <button type=\"submit\">Send me a code</button></form></section>\
         <section><h2>2. Log in</h2><form method=\"post\" action=\"/api/v1/login\"><input type=\"hidden\" name=\"_back\" value=\"/\">\
         <label for=\"id2\">Telegram id</label><input id=\"id2\" name=\"telegram_id\" inputmode=\"numeric\" pattern=\"[0-9]+\" required value=\"{}\">\
         <label for=\"code\">Code</label><input id=\"code\" name=\"code\" inputmode=\"numeric\" pattern=\"[0-9]{{6}}\" autocomplete=\"one-time-code\" required>\
         <button type=\"submit\">Log in</button></form></section>",
        id,
        id
    );
    page("Log in", None, StatusCode::OK, m)
}

async fn overview(State(s): State<AdminState>, PageAdmin(admin): PageAdmin) -> Response {
    let o = match api::overview_of(&s, &admin.identity).await {
        Ok(o) => o,
        Err(e) => return error_page(&e),
    };
    let mut m = Markup::default();
    if let Some(p) = &o.people {
        html!(
            m,
            "<section aria-label=\"Fleet\" class=\"tiles\"><div><b data-live=\"people.people\">{}</b> people</div>\
             <div><b data-live=\"people.new_today\">{}</b> new today</div><div><b data-live=\"people.new_this_week\">{}</b> new this week</div>\
             <div><b data-live=\"people.chats_now\">{}</b> chats now</div></section>",
            p.people,
            p.new_today,
            p.new_this_week,
            p.chats_now
        );
    }
    let bots: Vec<(&str, Vec<(&str, String)>)> = o
        .bots
        .iter()
        .map(|b| {
            let cells = vec![
                ("members", b.members.to_string()),
                ("new_today", b.new_today.to_string()),
                ("new_this_week", b.new_this_week.to_string()),
                ("active_vips", b.active_vips.to_string()),
                ("chats_now", b.chats_now.to_string()),
                ("star_balance", b.star_balance.map(|s| s.to_string()).unwrap_or_else(|| "—".into())),
                ("star_balance_ms", age(o.now_ms, b.star_balance_ms)),
            ];
            (b.bot.as_str(), cells)
        })
        .collect();
    let headings = ["Bot", "Members", "New today", "New this week", "Active VIPs", "Chats now", "Stars balance", "Balance read"];
    live_table(&mut m, "Bots", "bots", &headings, &bots);
    let pools: Vec<(&str, Vec<(&str, String)>)> = o
        .pools
        .iter()
        .map(|p| {
            (
                p.pool.as_str(),
                vec![
                    ("vip_waiting", p.vip_waiting.to_string()),
                    ("free_waiting", p.free_waiting.to_string()),
                    ("chats", p.chats.to_string()),
                ],
            )
        })
        .collect();
    live_table(&mut m, "Queues now", "pools", &["Pool", "VIP waiting", "Free waiting", "Chats"], &pools);
    m.push(revenue_chart(&o.revenue, &o.daily));
    html!(
        m,
        "<p class=\"muted\">Numbers and the chart refresh every 10 seconds; days in {}.</p><script src=\"/assets/admin.js\"></script>",
        o.time_zone
    );
    page("Overview", Some(&admin), StatusCode::OK, m)
}

/// How long ago `at_ms` was, for the overview ("never" if it was not); `admin.js` writes the
/// same words when it refreshes.
fn age(now_ms: i64, at_ms: Option<i64>) -> String {
    let Some(at) = at_ms else { return "never".into() };
    let minutes = (now_ms - at).max(0) / 60_000;
    match minutes {
        0 => "just now".into(),
        1..=59 => format!("{minutes} min ago"),
        _ => format!("{} h ago", minutes / 60),
    }
}

/// A table of numbers the overview's script refreshes: each cell is `data-live="<section>.<row>.<field>"`.
fn live_table(m: &mut Markup, title: &str, section: &str, headings: &[&str], rows: &[(&str, Vec<(&str, String)>)]) {
    html!(m, "<section><h2>{}</h2><table><thead><tr>", title);
    for h in headings {
        html!(m, "<th scope=\"col\">{}</th>", h);
    }
    html!(m, "</tr></thead><tbody>");
    for (row, cells) in rows {
        html!(m, "<tr><th scope=\"row\">{}</th>", row);
        for (field, v) in cells {
            html!(m, "<td data-live=\"{}.{}.{}\">{}</td>", section, row, field, v);
        }
        html!(m, "</tr>");
    }
    html!(m, "</tbody></table></section>");
}

/// Stars per day (the fleet's zone) over the last 30 days as an SVG bar chart, and the totals
/// per bot and plan. `admin.js` redraws the bars from `daily` (attributes only: the CSP allows
/// no inline style) and the totals from `revenue`.
fn revenue_chart(revenue: &[crate::store::admin::Revenue], daily: &[api::DayStars]) -> Markup {
    let max = daily.iter().map(|d| d.stars).max().unwrap_or(0).max(1);
    let total: i64 = daily.iter().map(|d| d.stars).sum();
    let mut m = Markup::default();
    html!(
        m,
        "<section><h2>Stars revenue, last 30 days</h2><p>Total: <b data-chart=\"total\">{}</b> Stars</p>\
         <svg class=\"chart\" viewBox=\"0 0 300 100\" role=\"img\" aria-label=\"Stars per day, {} in total\">",
        total,
        total
    );
    for (i, d) in daily.iter().enumerate() {
        let h = d.stars * 96 / max;
        html!(
            m,
            "<rect data-bar=\"{}\" x=\"{}\" y=\"{}\" width=\"8\" height=\"{}\"><title>{}: {} Stars</title></rect>",
            i,
            i * 10 + 1,
            100 - h,
            h,
            d.date,
            d.stars
        );
    }
    html!(
        m,
        "</svg><p><a href=\"/api/v1/payments.csv\" download>Export the payments of the last 31 days (CSV)</a></p>\
         <table><thead><tr><th scope=\"col\">Bot</th><th scope=\"col\">Plan</th><th scope=\"col\">Payments</th><th scope=\"col\">Stars</th></tr></thead><tbody>"
    );
    let mut sums: Vec<(&str, &str, i64, i64)> = Vec::new();
    for r in revenue {
        match sums.iter_mut().find(|(b, p, _, _)| *b == r.bot && *p == r.plan) {
            Some(x) => {
                x.2 += r.payments;
                x.3 += r.stars;
            }
            None => sums.push((&r.bot, &r.plan, r.payments, r.stars)),
        }
    }
    for (bot, plan, payments, stars) in sums {
        html!(
            m,
            "<tr><td>{}</td><td>{}</td><td data-live=\"plans.{}|{}.payments\">{}</td><td data-live=\"plans.{}|{}.stars\">{}</td></tr>",
            bot,
            plan,
            bot,
            plan,
            payments,
            bot,
            plan,
            stars
        );
    }
    html!(m, "</tbody></table></section>");
    m
}

async fn users(State(s): State<AdminState>, PageAdmin(admin): PageAdmin, Query(q): Query<HashMap<String, String>>) -> Response {
    let raw = q.get("q").map(|v| v.trim().to_string()).unwrap_or_default();
    let mut m = Markup::default();
    html!(
        m,
        "<form method=\"get\" action=\"/users\" role=\"search\"><label for=\"q\">Telegram id or @username</label>\
         <input id=\"q\" name=\"q\" value=\"{}\" required><button type=\"submit\">Find</button></form>",
        raw
    );
    if !raw.is_empty() {
        let query =
            if raw.bytes().all(|b| b.is_ascii_digit()) { api::parse_user_id(&raw).map(UserQuery::Id) } else { UserQuery::username(&raw) };
        let found = match query {
            Ok(query) => api::search_users(&s, &admin, &query).await,
            Err(e) => Err(e),
        };
        match found {
            Err(ApiError::BadRequest(msg)) => html!(m, "<p class=\"error\" role=\"alert\">{}</p>", msg),
            Err(e) => return error_page(&e),
            Ok(people) if people.is_empty() => html!(m, "<p>Nobody found among the members of your bots.</p>"),
            Ok(people) => {
                html!(m, "<ul class=\"people\">");
                for p in &people {
                    let names: Vec<String> =
                        p.members.iter().map(|x| format!("{} @{}", x.bot, x.username.as_deref().unwrap_or("—"))).collect();
                    html!(m, "<li><a href=\"/users/{}\">{}</a> — {}</li>", p.user_id, p.user_id, names.join(", "));
                }
                html!(m, "</ul>");
            }
        }
    }
    page("Users", Some(&admin), StatusCode::OK, m)
}

async fn user(
    State(s): State<AdminState>,
    PageAdmin(admin): PageAdmin,
    Path(raw): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let person = match api::parse_user_id(&raw) {
        Ok(id) => api::view_user(&s, &admin, id).await,
        Err(e) => Err(e),
    };
    let p = match person {
        Ok(p) => p,
        Err(e) => return error_page(&e),
    };
    let mut m = Markup::default();
    notice(&mut m, &q);
    person_summary(&mut m, &p);
    if admin.identity.fleet_admin {
        fleet_ban_forms(&mut m, &admin, &p);
    }
    for member in &p.members {
        let payments = match s.fleet.store.payments_of(&member.bot, p.user_id, 20).await {
            Ok(v) => v,
            Err(e) => return error_page(&e.into()),
        };
        member_section(&mut m, &admin, member, &payments);
    }
    page(&format!("User {}", p.user_id), Some(&admin), StatusCode::OK, m)
}

fn person_summary(m: &mut Markup, p: &PersonView) {
    html!(
        m,
        "<dl class=\"facts\"><dt>First seen</dt><dd>{}</dd><dt>Fleet-wide restriction</dt><dd>{}</dd><dt>Reports received</dt><dd>{}</dd><dt>Deleted their profile</dt><dd>{}</dd></dl>",
        opt_time(p.first_seen_ms),
        opt_time(p.restricted_until_ms),
        p.reports,
        opt_time(p.deleted_ms)
    );
}

fn fleet_ban_forms(m: &mut Markup, admin: &Admin, p: &PersonView) {
    let back = format!("/users/{}", p.user_id);
    html!(m, "<section><h2>Fleet-wide</h2><form method=\"post\" action=\"/api/v1/users/{}/ban\">", p.user_id);
    hidden(m, admin, &format!("{back}?done=ban"));
    html!(
        m,
        "<label for=\"fh\">Hours (empty: until lifted)</label><input id=\"fh\" name=\"hours\" inputmode=\"numeric\" pattern=\"[0-9]*\">\
         <label for=\"fr\">Reason</label><input id=\"fr\" name=\"reason\" maxlength=\"500\"><button type=\"submit\" class=\"danger\">Ban on every bot</button></form>\
         <form method=\"post\" action=\"/api/v1/users/{}/unban\">",
        p.user_id
    );
    hidden(m, admin, &format!("{back}?done=unban"));
    html!(m, "<button type=\"submit\">Lift the fleet-wide ban</button></form></section>");
}

fn member_section(m: &mut Markup, admin: &Admin, u: &MemberView, payments: &[crate::store::money::Payment]) {
    let back = format!("/users/{}", u.user_id);
    // Field ids must be unique on the page: one section per bot.
    let fid = url_component(&u.bot);
    html!(
        m,
        "<section><h2>On {}</h2><dl class=\"facts\"><dt>Username</dt><dd>{}</dd><dt>Language</dt><dd>{}</dd><dt>Profile</dt><dd>{} · {} · {}</dd>\
         <dt>VIP until</dt><dd>{}</dd><dt>Credits</dt><dd>{}</dd><dt>Restricted until</dt><dd>{}</dd><dt>Banned on this bot until</dt><dd>{}</dd>\
         <dt>Reachable</dt><dd>{}</dd><dt>Member since</dt><dd>{}</dd><dt>Chats</dt><dd>{}</dd><dt>Payments</dt><dd>{}</dd></dl>",
        u.bot,
        u.username.as_deref().map(|n| format!("@{n}")).unwrap_or_else(|| "—".into()),
        u.language,
        u.stage,
        u.gender.as_deref().unwrap_or("—"),
        u.age.map(|a| a.to_string()).unwrap_or_else(|| "—".into()),
        opt_time(u.vip_until_ms),
        u.credits,
        opt_time(u.restricted_until_ms),
        opt_time(u.bot_ban_until_ms),
        if u.reachable { "yes" } else { "no (blocked the bot)" },
        time(u.created_ms),
        u.chats,
        u.payments
    );
    if !admin.identity.may_act_on(&u.bot) {
        html!(m, "</section>");
        return;
    }
    // Ban / unban on this bot.
    html!(m, "<div class=\"forms\"><form method=\"post\" action=\"/api/v1/users/{}/ban\">", u.user_id);
    hidden(m, admin, &format!("{back}?done=ban"));
    html!(
        m,
        "<input type=\"hidden\" name=\"bot\" value=\"{}\"><label for=\"h-{}\">Hours (empty: until lifted)</label>\
         <input id=\"h-{}\" name=\"hours\" inputmode=\"numeric\" pattern=\"[0-9]*\"><label for=\"r-{}\">Reason</label>\
         <input id=\"r-{}\" name=\"reason\" maxlength=\"500\"><button type=\"submit\" class=\"danger\">Ban on this bot</button></form>",
        u.bot,
        fid,
        fid,
        fid,
        fid
    );
    html!(m, "<form method=\"post\" action=\"/api/v1/users/{}/unban\">", u.user_id);
    hidden(m, admin, &format!("{back}?done=unban"));
    html!(m, "<input type=\"hidden\" name=\"bot\" value=\"{}\"><button type=\"submit\">Lift the ban on this bot</button></form>", u.bot);
    // Gift: the key is made when the page is rendered, so submitting this form twice gives once.
    html!(m, "<form method=\"post\" action=\"/api/v1/users/{}/gift\">", u.user_id);
    hidden(m, admin, &format!("{back}?done=gift"));
    html!(
        m,
        "<input type=\"hidden\" name=\"bot\" value=\"{}\"><input type=\"hidden\" name=\"idempotency_key\" value=\"page-{}\">\
         <label for=\"v-{}\">VIP days</label><input id=\"v-{}\" name=\"vip_days\" inputmode=\"numeric\" pattern=\"[0-9]*\">\
         <label for=\"c-{}\">Credits</label><input id=\"c-{}\" name=\"credits\" inputmode=\"numeric\" pattern=\"[0-9]*\">\
         <button type=\"submit\">Gift</button></form></div>",
        u.bot,
        crate::payload::hex(&rand::random::<[u8; 12]>()),
        fid,
        fid,
        fid,
        fid
    );
    if payments.is_empty() {
        html!(m, "</section>");
        return;
    }
    html!(
        m,
        "<table><caption>Payments</caption><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Plan</th><th scope=\"col\">Stars</th>\
         <th scope=\"col\">Charge</th><th scope=\"col\">Refund</th></tr></thead><tbody>"
    );
    for pay in payments {
        html!(
            m,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>",
            time(pay.created_ms),
            pay.plan_id,
            pay.stars,
            pay.charge_id
        );
        match pay.refunded_ms {
            Some(at) => html!(m, "refunded {}", time(at)),
            None => {
                html!(m, "<form method=\"post\" action=\"/api/v1/refunds\">");
                hidden(m, admin, &format!("{back}?done=refund"));
                html!(
                    m,
                    "<input type=\"hidden\" name=\"bot\" value=\"{}\"><input type=\"hidden\" name=\"charge_id\" value=\"{}\"><button type=\"submit\" class=\"danger\">Refund</button></form>",
                    u.bot,
                    pay.charge_id
                );
            }
        }
        html!(m, "</td></tr>");
    }
    html!(m, "</tbody></table></section>");
}

async fn audit(State(s): State<AdminState>, PageAdmin(admin): PageAdmin, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Err(e) = admin.identity.require_fleet("the audit log") {
        return error_page(&e);
    }
    let before = q.get("before").and_then(|v| v.parse::<i64>().ok());
    let entries = match s.store.audit_log(before, 100).await {
        Ok(v) => v,
        Err(e) => return error_page(&e.into()),
    };
    let mut m = Markup::default();
    html!(
        m,
        "<p><a href=\"/api/v1/audit.csv\" download>Export as CSV</a></p><table><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Admin</th>\
         <th scope=\"col\">Action</th><th scope=\"col\">Bot</th><th scope=\"col\">User</th><th scope=\"col\">Detail</th><th scope=\"col\">From</th></tr></thead><tbody>"
    );
    for e in &entries {
        html!(
            m,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>",
            time(e.at_ms),
            e.admin_id,
            e.action,
            e.bot.as_deref().unwrap_or("—")
        );
        match e.target_user {
            Some(u) => html!(m, "<a href=\"/users/{}\">{}</a>", u, u),
            None => html!(m, "—"),
        }
        html!(m, "</td><td><code>{}</code></td><td>{}</td></tr>", e.detail, e.client.as_deref().unwrap_or("—"));
    }
    html!(m, "</tbody></table>");
    if entries.len() == 100
        && let Some(last) = entries.last()
    {
        html!(m, "<p><a href=\"/audit?before={}\">Older entries</a></p>", last.id);
    }
    page("Audit log", Some(&admin), StatusCode::OK, m)
}

async fn keys(State(s): State<AdminState>, PageAdmin(admin): PageAdmin, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Err(e) = admin.identity.require_fleet("managing API keys") {
        return error_page(&e);
    }
    let (keys, bots) = match (s.store.api_keys().await, s.store.bots().await) {
        (Ok(k), Ok(b)) => (k, b),
        (Err(e), _) | (_, Err(e)) => return error_page(&e.into()),
    };
    let mut m = Markup::default();
    notice(&mut m, &q);
    html!(
        m,
        "<p>Keys let automation use the API with a role of the permission matrix (docs/ADMIN.md). A key is shown once, when it is made; \
         every use is in the audit log.</p><section><h2>New key</h2><form method=\"post\" action=\"/api/v1/keys\">"
    );
    hidden(&mut m, &admin, "/keys");
    html!(
        m,
        "<label for=\"kn\">What it is for</label><input id=\"kn\" name=\"name\" maxlength=\"100\" required>\
         <label for=\"kr\">Role</label><select id=\"kr\" name=\"role\"><option value=\"bot_admin\">Bot admin (the bots below)</option>\
         <option value=\"fleet_admin\">Fleet admin (every bot)</option></select>\
         <label for=\"kb\">Bots, comma-separated (bot admin keys)</label><input id=\"kb\" name=\"bots\" list=\"bots\">\
         <datalist id=\"bots\">"
    );
    for b in &bots {
        html!(m, "<option value=\"{}\">", b.id);
    }
    html!(
        m,
        "</datalist><label for=\"ko\">Access</label><select id=\"ko\" name=\"read_only\"><option value=\"false\">Read and act</option>\
         <option value=\"true\">Read only</option></select><button type=\"submit\">Make the key</button></form></section>\
         <section><h2>Keys</h2><table><thead><tr><th scope=\"col\">Id</th><th scope=\"col\">For</th><th scope=\"col\">Role</th>\
         <th scope=\"col\">Made</th><th scope=\"col\">Last used</th><th scope=\"col\">State</th></tr></thead><tbody>"
    );
    for k in &keys {
        let role = if k.role == "fleet_admin" { "fleet admin".to_string() } else { format!("bot admin of {}", k.bots.join(", ")) };
        html!(
            m,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}{}</td><td>{} by {}</td><td>{}</td><td>",
            k.id,
            k.name,
            role,
            if k.read_only { ", read only" } else { "" },
            time(k.created_ms),
            k.created_by,
            opt_time(k.last_used_ms)
        );
        match k.revoked_ms {
            Some(at) => html!(m, "revoked {}", time(at)),
            None => {
                html!(m, "<form method=\"post\" action=\"/api/v1/keys/{}/revoke\">", k.id);
                hidden(&mut m, &admin, "/keys?done=revoke");
                html!(m, "<button type=\"submit\" class=\"danger\">Revoke</button></form>");
            }
        }
        html!(m, "</td></tr>");
    }
    html!(m, "</tbody></table></section>");
    page("API keys", Some(&admin), StatusCode::OK, m)
}

/// How often the broadcasts page's script refreshes the bars (`admin.js` has the same number).
const BROADCASTS_REFRESH_S: u32 = 2;

async fn broadcasts(State(s): State<AdminState>, PageAdmin(admin): PageAdmin, Query(q): Query<HashMap<String, String>>) -> Response {
    let list = match broadcast::broadcasts_of(&s, &admin.identity).await {
        Ok(l) => l,
        Err(e) => return error_page(&e),
    };
    let mut m = Markup::default();
    notice(&mut m, &q);
    let field = |name: &str| q.get(name).cloned().unwrap_or_default();
    // A preview (`?preview=1&bot=…&text=…`, the compose form's GET): the message as members
    // will see it, the audience's size now, and a form that sends exactly that.
    if q.contains_key("preview") {
        let req = broadcast::NewBroadcast {
            to: broadcast::AudienceFilter::from_query(&q),
            text: field("text"),
            start_at: q.get("start_at").cloned(),
            paid: field("paid") == "true",
        };
        match broadcast::preview_of(&s, &admin, &req).await {
            Ok(p) => {
                html!(m, "<section aria-labelledby=\"pv\"><h2 id=\"pv\">Preview</h2><div class=\"preview\">");
                // Rebuilt by the checker from escaped text and its own tags (telegram_html.rs).
                m.0.push_str(&p.preview_html);
                html!(
                    m,
                    "</div><p><b>{}</b> members of {} would get it {}.</p><form method=\"post\" action=\"/api/v1/broadcasts\">",
                    p.audience_size,
                    if req.to.bot == "*" { "all your bots" } else { &req.to.bot },
                    p.start_ms.map(|t| format!("at {}", time(t))).unwrap_or_else(|| "now".into())
                );
                if req.paid {
                    paid_estimate(&mut m, &p);
                    html!(m, "<input type=\"hidden\" name=\"paid\" value=\"true\">");
                }
                hidden(&mut m, &admin, "/broadcasts?done=broadcast");
                for (name, value) in [
                    ("bot", &req.to.bot),
                    ("text", &req.text),
                    ("audience", &field("audience")),
                    ("language", &field("language")),
                    ("active_since", &field("active_since")),
                    ("start_at", &field("start_at")),
                ] {
                    html!(m, "<input type=\"hidden\" name=\"{}\" value=\"{}\">", name, value);
                }
                html!(m, "<button type=\"submit\" class=\"danger\">Send to these {} members</button></form></section>", p.audience_size);
            }
            Err(e) => {
                let (_, _, message) = e.parts();
                html!(m, "<p class=\"error\" role=\"alert\">{}</p>", message);
            }
        }
    }
    html!(
        m,
        "<section><h2>New broadcast</h2><p>Sent by the bot to its members with a complete profile who can be reached, are not banned and have not \
         turned announcements off (<code>/news off</code>, which every message mentions). The bot sends it at its own pace, after its chats. \
         Preview it first: the preview shows the message and how many members it reaches, with the button that sends it.</p>\
         <form method=\"get\" action=\"/broadcasts\"><input type=\"hidden\" name=\"preview\" value=\"1\">"
    );
    html!(m, "<label for=\"bb\">Bot</label><select id=\"bb\" name=\"bot\">");
    for bot in &admin.identity.bots {
        if field("bot") == *bot {
            html!(m, "<option value=\"{}\" selected>{}</option>", bot, bot);
        } else {
            html!(m, "<option value=\"{}\">{}</option>", bot, bot);
        }
    }
    // Last, so the default stays one bot.
    if admin.identity.bots.len() > 1 {
        let selected = if field("bot") == "*" { " selected" } else { "" };
        html!(m, "<option value=\"*\"{}>All my bots (one broadcast each)</option>", selected);
    }
    html!(m, "</select><label for=\"ba\">Audience</label><select id=\"ba\" name=\"audience\">");
    for (value, label) in [("all", "Everyone"), ("vip", "VIP members"), ("free", "Members without VIP")] {
        if field("audience") == value {
            html!(m, "<option value=\"{}\" selected>{}</option>", value, label);
        } else {
            html!(m, "<option value=\"{}\">{}</option>", value, label);
        }
    }
    html!(
        m,
        "</select><label for=\"bl\">Language (empty: any)</label><input id=\"bl\" name=\"language\" placeholder=\"en\" pattern=\"[a-z]{{2,8}}\" value=\"{}\">\
         <label for=\"bs\">Active since (UTC day; empty: anyone)</label><input id=\"bs\" name=\"active_since\" type=\"date\" value=\"{}\">\
         <label for=\"bw\">Start at (UTC; empty: now)</label><input id=\"bw\" name=\"start_at\" type=\"datetime-local\" value=\"{}\">\
         <label for=\"bt\">Message (Telegram HTML: &lt;b&gt;, &lt;i&gt;, &lt;a href=\"https://…\"&gt;…)</label>\
         <textarea id=\"bt\" name=\"text\" rows=\"5\" maxlength=\"3500\" required>{}</textarea>\
         <label><input type=\"checkbox\" name=\"paid\" value=\"true\"{}> Paid broadcast: faster than Telegram's free 30 messages a second, \
         0.1 Star a message above them from the bot's Stars balance (the preview shows the cost)</label>\
         <button type=\"submit\">Preview</button></form></section>\
         <section><h2>Broadcasts</h2><table><thead><tr><th scope=\"col\">Made</th><th scope=\"col\">Bot</th><th scope=\"col\">Audience</th>\
         <th scope=\"col\">Message</th><th scope=\"col\">Progress</th><th scope=\"col\">State</th></tr></thead><tbody>",
        field("language"),
        field("active_since"),
        field("start_at"),
        field("text"),
        if field("paid") == "true" { " checked" } else { "" }
    );
    for b in &list {
        let mut audience = b.audience.clone();
        if let Some(l) = &b.language {
            audience.push_str(&format!(", language {l}"));
        }
        if let Some(d) = b.active_since_day {
            audience.push_str(&format!(", active since {}", time(d * 86_400_000).chars().take(10).collect::<String>()));
        }
        // The bar: messages settled (delivered, failed, blocked) of the audience.
        let settled = b.delivered + b.failed + b.blocked;
        let total = b.total.max(b.queued);
        // `data-broadcast` and `data-b`: what `admin.js` refreshes from `/api/v1/broadcasts`.
        html!(
            m,
            "<tr data-broadcast=\"{}\"><td>{} by {}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td>\
             <td><progress value=\"{}\" max=\"{}\" aria-label=\"broadcast {} progress\">{} of {}</progress> <span data-b=\"queued\">{} of {} queued</span>; <span data-outcome=\"delivered\">{}</span> delivered, \
             <span data-outcome=\"failed\">{}</span> failed, <span data-outcome=\"blocked\">{}</span> blocked",
            b.id,
            time(b.created_ms),
            b.created_by,
            b.bot,
            audience,
            b.text,
            settled,
            total.max(1),
            b.id,
            settled,
            total,
            b.queued,
            total,
            b.delivered,
            b.failed,
            b.blocked
        );
        if b.repeated_max > 0 {
            html!(m, " (up to {} may have it twice: sends in flight at a kill)", b.repeated_max);
        }
        let state = match (b.start_ms, b.status.as_str()) {
            (Some(at), "scheduled") => format!("scheduled for {}", time(at)),
            _ => b.status.clone(),
        };
        // The state is refreshed in place by admin.js while the broadcast runs; what it was
        // sent as and why it stopped by itself stay beside it.
        html!(m, "</td><td><span data-b=\"status\">{}</span>", state);
        if b.paid {
            html!(m, " (paid)");
        }
        if let Some(reason) = &b.stop_reason {
            html!(m, ": {}", reason);
        }
        if b.status == "running" || b.status == "scheduled" {
            html!(m, "<form method=\"post\" action=\"/api/v1/broadcasts/{}/cancel\" data-b=\"cancel\">", b.id);
            hidden(&mut m, &admin, "/broadcasts?done=cancel");
            html!(m, "<button type=\"submit\">{}</button></form>", if b.status == "running" { "Stop" } else { "Cancel" });
        }
        html!(m, "</td></tr>");
    }
    html!(
        m,
        "</tbody></table><p class=\"muted\">Progress refreshes every {} seconds; a broadcast made elsewhere shows at the next reload.</p></section>\
         <script src=\"/assets/admin.js\"></script>",
        BROADCASTS_REFRESH_S
    );
    page("Broadcasts", Some(&admin), StatusCode::OK, m)
}

/// The audience fields of a dashboard form (the gift's; the broadcast's compose form has the
/// same names): one bot or all of the admin's, who, language, active since. Ids are `<p>-…`.
fn audience_fields(m: &mut Markup, admin: &Admin, q: &HashMap<String, String>, p: &str) {
    let field = |name: &str| q.get(name).cloned().unwrap_or_default();
    html!(m, "<label for=\"{}-bot\">Bot</label><select id=\"{}-bot\" name=\"bot\">", p, p);
    for bot in &admin.identity.bots {
        let selected = if field("bot") == *bot { " selected" } else { "" };
        html!(m, "<option value=\"{}\"{}>{}</option>", bot, selected, bot);
    }
    if admin.identity.bots.len() > 1 {
        let selected = if field("bot") == "*" { " selected" } else { "" };
        html!(m, "<option value=\"*\"{}>All my bots</option>", selected);
    }
    html!(m, "</select><label for=\"{}-aud\">Audience</label><select id=\"{}-aud\" name=\"audience\">", p, p);
    for (value, label) in [("all", "Everyone"), ("vip", "VIP members"), ("free", "Members without VIP")] {
        let selected = if field("audience") == value { " selected" } else { "" };
        html!(m, "<option value=\"{}\"{}>{}</option>", value, selected, label);
    }
    html!(
        m,
        "</select><label for=\"{}-lang\">Language (empty: any)</label><input id=\"{}-lang\" name=\"language\" placeholder=\"en\" pattern=\"[a-z]{{2,8}}\" value=\"{}\">\
         <label for=\"{}-since\">Active since (UTC day; empty: anyone)</label><input id=\"{}-since\" name=\"active_since\" type=\"date\" value=\"{}\">",
        p,
        p,
        field("language"),
        p,
        p,
        field("active_since")
    );
}

/// A whole number of a form's field: empty is 0; anything else but digits is refused.
fn form_number(q: &HashMap<String, String>, name: &str) -> Result<i64, ApiError> {
    match q.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(0),
        Some(v) => v.parse::<i64>().map_err(|_| ApiError::bad(format!("{name}: a whole number"))),
    }
}

/// Gifts to an audience (`POST /api/v1/gifts`): the form is a GET to `/gifts?confirm=1&…`,
/// which shows how many members it reaches now, with the form that gives exactly that (its
/// idempotency key made here, so submitting it twice gives nobody anything twice).
async fn gifts(State(s): State<AdminState>, PageAdmin(admin): PageAdmin, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut m = Markup::default();
    notice(&mut m, &q);
    let field = |name: &str| q.get(name).cloned().unwrap_or_default();
    if q.contains_key("confirm") {
        let to = broadcast::AudienceFilter::from_query(&q);
        let checked = match (form_number(&q, "vip_days"), form_number(&q, "credits")) {
            (Ok(v), Ok(c)) if (0..=3650).contains(&v) && (0..=100_000).contains(&c) && v + c > 0 => {
                broadcast::gift_confirmation(&s, &admin.identity, &to).await.map(|n| (n, v, c))
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
            _ => Err(ApiError::bad("give VIP days (0 to 3650) and/or credits (0 to 100000), at least one above 0")),
        };
        match checked {
            Ok((members, vip_days, credits)) => {
                html!(
                    m,
                    "<section aria-labelledby=\"gc\"><h2 id=\"gc\">Confirm</h2><p><b data-gift=\"members\">{}</b> members of {} would each get {} VIP days and {} credits, \
                     and be told in their language.</p><form method=\"post\" action=\"/api/v1/gifts\">",
                    members,
                    if to.bot == "*" { "all your bots" } else { &to.bot },
                    vip_days,
                    credits
                );
                hidden(&mut m, &admin, "/gifts?done=gift_audience");
                let key = format!("page-{}", crate::payload::hex(&rand::random::<[u8; 12]>()));
                for (name, value) in [
                    ("bot", to.bot.clone()),
                    ("audience", field("audience")),
                    ("language", field("language")),
                    ("active_since", field("active_since")),
                    ("vip_days", vip_days.to_string()),
                    ("credits", credits.to_string()),
                    ("idempotency_key", key),
                ] {
                    html!(m, "<input type=\"hidden\" name=\"{}\" value=\"{}\">", name, value);
                }
                html!(m, "<button type=\"submit\" class=\"danger\">Give to these {} members</button></form></section>", members);
            }
            Err(e) => {
                let (_, _, message) = e.parts();
                html!(m, "<p class=\"error\" role=\"alert\">{}</p>", message);
            }
        }
    }
    html!(
        m,
        "<section><h2>New gift</h2><p>VIP days and/or credits for every member a broadcast with the same filters would reach (complete profile, \
         reachable, not banned, announcements on), each told once in their language. At most {} members at once. \
         Check the audience first: the next step shows how many members it reaches, with the button that gives.</p>\
         <form method=\"get\" action=\"/gifts\"><input type=\"hidden\" name=\"confirm\" value=\"1\">",
        broadcast::MAX_GIFT_AUDIENCE
    );
    audience_fields(&mut m, &admin, &q, "g");
    html!(
        m,
        "<label for=\"g-vip\">VIP days (0 to 3650)</label><input id=\"g-vip\" name=\"vip_days\" inputmode=\"numeric\" pattern=\"[0-9]*\" value=\"{}\">\
         <label for=\"g-credits\">Credits (0 to 100000)</label><input id=\"g-credits\" name=\"credits\" inputmode=\"numeric\" pattern=\"[0-9]*\" value=\"{}\">\
         <button type=\"submit\">Check the audience</button></form></section>",
        field("vip_days"),
        field("credits")
    );
    page("Gifts to an audience", Some(&admin), StatusCode::OK, m)
}

/// A paid broadcast's cost before it is sent (docs/ADMIN.md, "Paid broadcasts"), per bot
/// against its Stars balance.
fn paid_estimate(m: &mut Markup, p: &broadcast::PreviewAnswer) {
    html!(
        m,
        "<p>Paid broadcast: about <b data-stars=\"estimate\">{}</b> Stars (at most {}: 0.1 Star for each message above Telegram's free 30 a second).</p>\
         <table><thead><tr><th scope=\"col\">Bot</th><th scope=\"col\">Members</th><th scope=\"col\">Pace</th><th scope=\"col\">Stars</th>\
         <th scope=\"col\">Balance</th></tr></thead><tbody>",
        p.stars_estimate,
        p.stars_at_most
    );
    for b in &p.bots {
        let balance = match (b.star_balance, b.enough_stars) {
            (Some(stars), Some(true)) => format!("{stars}: enough"),
            (Some(stars), _) => format!("{stars}: not enough — the broadcast stops when they run out"),
            (None, _) => "not read yet".to_string(),
        };
        html!(
            m,
            "<tr><td>{}</td><td>{}</td><td>{}/s, about {} s</td><td>{} (at most {})</td><td>{}</td></tr>",
            b.bot,
            b.audience_size,
            b.per_second,
            b.seconds,
            b.stars_estimate,
            b.stars_at_most,
            balance
        );
    }
    html!(m, "</tbody></table>");
}

async fn analytics(State(s): State<AdminState>, PageAdmin(admin): PageAdmin, Query(q): Query<HashMap<String, String>>) -> Response {
    let a = match super::analytics::params(&q) {
        Ok((weeks, bot)) => match super::analytics::analytics_of(&s, &admin.identity, weeks, bot.as_deref()).await {
            Ok(a) => a,
            Err(e) => return error_page(&e),
        },
        Err(e) => return error_page(&e),
    };
    let mut m = Markup::default();
    html!(
        m,
        "<form method=\"get\" action=\"/analytics\"><label for=\"aw\">Weeks</label><input id=\"aw\" name=\"weeks\" inputmode=\"numeric\" value=\"{}\">",
        a.weeks
    );
    html!(m, "<label for=\"ab\">Bot</label><select id=\"ab\" name=\"bot\"><option value=\"\">All my bots</option>");
    let chosen = q.get("bot").cloned().unwrap_or_default();
    for bot in &admin.identity.bots {
        if *bot == chosen {
            html!(m, "<option value=\"{}\" selected>{}</option>", bot, bot);
        } else {
            html!(m, "<option value=\"{}\">{}</option>", bot, bot);
        }
    }
    html!(m, "</select><button type=\"submit\">Show</button></form>");
    html!(
        m,
        "<p class=\"muted\">Members who started on or after {} (UTC), on {}. Rollups refreshed {}.</p>",
        super::analytics::date(a.from_day),
        a.bots.join(", "),
        opt_time(a.refreshed_ms)
    );
    // The funnel: a bar per step, as wide as its share of those who started.
    html!(m, "<section><h2>Funnel</h2><svg class=\"chart funnel\" viewBox=\"0 0 300 100\" role=\"img\" aria-label=\"Funnel\">");
    for (i, step) in a.funnel.iter().enumerate() {
        html!(
            m,
            "<rect x=\"0\" y=\"{}\" width=\"{}\" height=\"16\"><title>{}: {}</title></rect>",
            i * 20,
            (step.percent_of_start * 3.0).round(),
            step.step,
            step.members
        );
    }
    html!(
        m,
        "</svg><table><thead><tr><th scope=\"col\">Step</th><th scope=\"col\">Members</th><th scope=\"col\">Of those who started</th></tr></thead><tbody>"
    );
    for step in &a.funnel {
        html!(
            m,
            "<tr><th scope=\"row\">{}</th><td data-funnel=\"{}\">{}</td><td>{} %</td></tr>",
            step.step,
            step.step,
            step.members,
            step.percent_of_start
        );
    }
    html!(
        m,
        "</tbody></table></section><section><h2>Retention by signup week</h2><p class=\"muted\">Dn: active on exactly day n after signing up; \
         — until day n has ended for the week's members.</p><table><thead><tr><th scope=\"col\">Week of</th><th scope=\"col\">Members</th>\
         <th scope=\"col\">D1</th><th scope=\"col\">D7</th><th scope=\"col\">D30</th></tr></thead><tbody>"
    );
    for w in &a.retention {
        html!(m, "<tr><th scope=\"row\">{}</th><td>{}</td>", w.week, w.members);
        for cell in [&w.d1, &w.d7, &w.d30] {
            match cell {
                Some(c) => html!(m, "<td>{} % ({} of {})</td>", c.percent, c.retained, c.eligible),
                None => html!(m, "<td>—</td>"),
            }
        }
        html!(m, "</tr>");
    }
    html!(m, "</tbody></table></section>");
    for (title, lines, by_plan) in [("Revenue by plan", &a.revenue_by_plan, true), ("Revenue by campaign", &a.revenue_by_campaign, false)] {
        html!(
            m,
            "<section><h2>{}</h2><table><thead><tr><th scope=\"col\">Bot</th><th scope=\"col\">{}</th><th scope=\"col\">Payments</th>\
             <th scope=\"col\">Stars</th><th scope=\"col\">Refunded</th><th scope=\"col\">Net Stars</th></tr></thead><tbody>",
            title,
            if by_plan { "Plan" } else { "Campaign" }
        );
        for l in lines.iter() {
            let name = if by_plan { l.plan.clone() } else { l.campaign.clone() }.unwrap_or_else(|| "(none)".into());
            html!(
                m,
                "<tr><td>{}</td><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{} ({} Stars)</td><td>{}</td></tr>",
                l.bot,
                name,
                l.payments,
                l.stars,
                l.refunds,
                l.refunded_stars,
                l.net_stars
            );
        }
        html!(m, "</tbody></table></section>");
    }
    html!(
        m,
        "<section><h2>Reconciliation mismatches</h2><p class=\"muted\">Telegram's Stars ledger against this fleet's payments (docs/MONEY.md: \
         what each kind means and what to do).</p><table><thead><tr><th scope=\"col\">Found</th><th scope=\"col\">Bot</th>\
         <th scope=\"col\">Kind</th><th scope=\"col\">Charge</th><th scope=\"col\">Stars</th></tr></thead><tbody>"
    );
    for x in &a.mismatches {
        html!(
            m,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            time(x.at_ms),
            x.bot,
            x.kind,
            x.charge_id,
            x.stars
        );
    }
    html!(m, "</tbody></table></section>");
    page("Analytics", Some(&admin), StatusCode::OK, m)
}

async fn pricing(State(s): State<AdminState>, PageAdmin(admin): PageAdmin) -> Response {
    let p = match super::pricing::pricing_of(&s, &admin.identity).await {
        Ok(p) => p,
        Err(e) => return error_page(&e),
    };
    let mut m = Markup::default();
    html!(
        m,
        "<p>What each bot's shop sells now, from the configuration the bot registered. Prices change through the resources only \
         (VipPlan, DiscountCampaign): run the command shown, with the number changed; the operator gives every bot the new price \
         within seconds, and this page shows it.</p>"
    );
    for b in &p.bots {
        html!(
            m,
            "<section class=\"item\"><h2>{}</h2><p class=\"muted\">Configuration {}. <code>{}</code></p>\
             <table><caption>Plans</caption><thead><tr><th scope=\"col\">Plan</th><th scope=\"col\">Grants</th><th scope=\"col\">List price</th>\
             <th scope=\"col\">Price now</th><th scope=\"col\">Change it</th></tr></thead><tbody>",
            b.bot,
            b.config_hash,
            b.kubectl_get
        );
        for plan in &b.plans {
            html!(
                m,
                "<tr><th scope=\"row\">{}<br><span class=\"muted\">{}, {}</span></th><td>{} VIP days, {} credits</td><td>{} ⭐</td>",
                plan.id,
                plan.title,
                plan.billing,
                plan.vip_days,
                plan.lock_credits,
                plan.price_stars
            );
            match &plan.campaign {
                Some(c) => html!(m, "<td data-plan=\"{}\">{} ⭐ ({})</td>", plan.id, plan.price_now_stars, c),
                None => html!(m, "<td data-plan=\"{}\">{} ⭐</td>", plan.id, plan.price_now_stars),
            }
            html!(m, "<td><code>{}</code></td></tr>", plan.kubectl);
        }
        html!(
            m,
            "</tbody></table><table><caption>Campaigns</caption><thead><tr><th scope=\"col\">Campaign</th><th scope=\"col\">Off</th>\
             <th scope=\"col\">When</th><th scope=\"col\">Who</th><th scope=\"col\">Prices</th><th scope=\"col\">Change it</th></tr></thead><tbody>"
        );
        for c in &b.campaigns {
            let prices: Vec<String> = c.plans.iter().map(|p| format!("{}: {} ⭐", p.plan, p.price_stars)).collect();
            html!(
                m,
                "<tr><th scope=\"row\">{}</th><td>{} %</td><td>{}: {} → {}</td><td>{}{}</td><td>{}</td><td><code>{}</code></td></tr>",
                c.id,
                c.percent_off,
                c.state,
                c.starts_at,
                c.ends_at,
                c.audience,
                c.max_redemptions.map(|n| format!(", at most {n}")).unwrap_or_default(),
                prices.join(", "),
                c.kubectl
            );
        }
        html!(m, "</tbody></table></section>");
    }
    page("Pricing", Some(&admin), StatusCode::OK, m)
}

/// A link to a message of a mirror chat (a supergroup or channel: `-100…` ids), if it has one.
fn mirror_link(chat_id: i64, message_id: i64) -> Option<String> {
    let internal = chat_id.to_string().strip_prefix("-100")?.to_string();
    Some(format!("https://t.me/c/{internal}/{message_id}"))
}

async fn moderation(State(s): State<AdminState>, PageAdmin(admin): PageAdmin, Query(q): Query<HashMap<String, String>>) -> Response {
    let (items, banned) = match (moderation::queue_of(&s, &admin.identity).await, moderation::banned_of(&s, &admin.identity).await) {
        (Ok(i), Ok(b)) => (i, b),
        (Err(e), _) | (_, Err(e)) => return error_page(&e),
    };
    let blocked = match moderation::blocked_of(&s, &admin.identity).await {
        Ok(b) => b,
        Err(e) => return error_page(&e),
    };
    let mut m = Markup::default();
    notice(&mut m, &q);
    html!(
        m,
        "<p>Reported members of your bots, most reporters first, then members without a report who received many 👎. \
         What was said is never stored: you see counts, reasons, ratings and the moderation mirror's copies of the media \
         (when the bot's mirror is on).</p><section><h2>To review</h2>"
    );
    if items.is_empty() {
        html!(m, "<p>Nothing to review.</p>");
    }
    for i in &items {
        let reasons: Vec<String> = i.reasons.iter().map(|r| format!("{} ×{}", r.reason, r.reports)).collect();
        html!(
            m,
            "<article class=\"item\" data-why=\"{}\"><h3><a href=\"/users/{}\">{}</a> {} on {}</h3><dl class=\"facts\"><dt>Why</dt><dd>{}</dd><dt>Reports</dt><dd>{} from {} people</dd>\
             <dt>Reasons</dt><dd>{}</dd><dt>Between</dt><dd>{} and {}</dd><dt>Ratings (30 days)</dt><dd>👎 {} · 👍 {}</dd>\
             <dt>Warned before</dt><dd>{}</dd><dt>Restricted until</dt><dd>{}</dd><dt>Chats</dt><dd>{}</dd><dt>Mirror</dt><dd>",
            i.why,
            i.user_id,
            i.user_id,
            i.username.as_deref().map(|n| format!("@{n}")).unwrap_or_default(),
            i.bot,
            if i.why == "thumbs_down" { "many 👎, no open report" } else { "open reports" },
            i.reports,
            i.reporters,
            reasons.join(", "),
            time(i.first_ms),
            time(i.last_ms),
            i.thumbs_down,
            i.thumbs_up,
            i.warnings,
            opt_time(i.restricted_until_ms),
            i.sessions.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
        );
        if i.mirror.is_empty() {
            html!(m, "—");
        }
        for item in &i.mirror {
            match mirror_link(item.chat_id, item.message_id) {
                Some(link) => html!(m, "<a href=\"{}\" rel=\"noreferrer\">{}</a> ", link, item.message_id),
                None => html!(m, "{}/{} ", item.chat_id, item.message_id),
            }
        }
        html!(m, "</dd></dl><div class=\"forms\">");
        let action = format!("/api/v1/moderation/reports/{}/review", i.user_id);
        let fid = format!("{}-{}", url_component(&i.bot), i.user_id);
        for (what, label) in [("dismiss", "Dismiss"), ("warn", "Warn"), ("restrict", "Restrict"), ("ban", "Ban")] {
            html!(m, "<form method=\"post\" action=\"{}\">", action);
            hidden(&mut m, &admin, "/moderation?done=review");
            html!(m, "<input type=\"hidden\" name=\"bot\" value=\"{}\"><input type=\"hidden\" name=\"action\" value=\"{}\">", i.bot, what);
            if what == "restrict" {
                html!(
                    m,
                    "<label for=\"rh-{}\">Hours</label><input id=\"rh-{}\" name=\"hours\" inputmode=\"numeric\" pattern=\"[0-9]+\" value=\"24\" required>",
                    fid,
                    fid
                );
            }
            if (what == "restrict" || what == "ban") && admin.identity.fleet_admin {
                html!(
                    m,
                    "<label for=\"fw-{}-{}\">Where</label><select id=\"fw-{}-{}\" name=\"fleet_wide\"><option value=\"false\">This bot</option>\
                     <option value=\"true\">Every bot</option></select>",
                    what,
                    fid,
                    what,
                    fid
                );
            }
            let class = if what == "dismiss" || what == "warn" { "" } else { "danger" };
            html!(m, "<button type=\"submit\" class=\"{}\">{}</button></form>", class, label);
        }
        html!(m, "</div></article>");
    }
    html!(
        m,
        "</section><section><h2>Banned and restricted</h2><table><thead><tr><th scope=\"col\">User</th><th scope=\"col\">Where</th>\
         <th scope=\"col\">Until</th><th scope=\"col\">By</th><th scope=\"col\">Lift</th></tr></thead><tbody>"
    );
    for e in &banned {
        html!(
            m,
            "<tr><td><a href=\"/users/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/api/v1/users/{}/unban\">",
            e.user_id,
            e.user_id,
            e.bot.as_deref().unwrap_or("every bot"),
            time(e.until_ms),
            e.admin_id.map(|a| a.to_string()).unwrap_or_else(|| "—".into()),
            e.user_id
        );
        hidden(&mut m, &admin, "/moderation?done=unban");
        if let Some(bot) = &e.bot {
            html!(m, "<input type=\"hidden\" name=\"bot\" value=\"{}\">", bot);
        }
        html!(m, "<button type=\"submit\">Lift</button></form></td></tr>");
    }
    html!(
        m,
        "</tbody></table></section><section><h2>Blocked by other members</h2><table class=\"blocked\"><thead><tr><th scope=\"col\">User</th>\
         <th scope=\"col\">Bot</th><th scope=\"col\">Blocked by</th><th scope=\"col\">Last block</th></tr></thead><tbody>"
    );
    for e in &blocked {
        html!(
            m,
            "<tr><td><a href=\"/users/{}\">{}</a> {}</td><td>{}</td><td>{} people</td><td>{}</td></tr>",
            e.user_id,
            e.user_id,
            e.username.as_deref().map(|n| format!("@{n}")).unwrap_or_default(),
            e.bot,
            e.blocked_by,
            time(e.last_ms)
        );
    }
    html!(m, "</tbody></table></section>");
    page("Moderation", Some(&admin), StatusCode::OK, m)
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("assets/admin.css")).into_response()
}

async fn js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("assets/admin.js")).into_response()
}

// ---- forms → API -----------------------------------------------------------------------------

/// The largest form accepted (the dashboard's are a few hundred bytes).
const MAX_FORM: usize = 64 * 1024;

/// A page to return to: a path on this site only (never `//host` or a scheme: no open redirect).
fn local_path(back: &str) -> Option<&str> {
    let ok = back.starts_with('/') && !back.starts_with("//") && !back.contains(['\\', '\r', '\n']);
    ok.then_some(back)
}

/// Lets the dashboard's plain HTML forms use the API (see the module's comment). Requests that
/// are not form posts pass untouched, so API clients see the API.
pub async fn form_posts(req: Request, next: Next) -> Response {
    let is_form = req.method() == Method::POST
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
        return error_page(&ApiError::bad("the form is too large"));
    };
    let Ok(fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes) else {
        return error_page(&ApiError::bad("the form could not be read"));
    };
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let back = field("_back").as_deref().and_then(local_path).unwrap_or("/").to_string();
    if let Some(token) = field("_csrf")
        && !parts.headers.contains_key(CSRF_HEADER)
        && let Ok(v) = HeaderValue::from_str(&token)
    {
        parts.headers.insert(CSRF_HEADER, v);
    }
    // An empty field is an absent one (an empty "hours" is "no end", not a parse error).
    let kept: Vec<&(String, String)> = fields.iter().filter(|(k, v)| !k.starts_with('_') && !v.is_empty()).collect();
    let body = serde_urlencoded::to_string(&kept).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    let answer = next.run(Request::from_parts(parts, axum::body::Body::from(body))).await;
    if answer.status().is_success() {
        let cookies: Vec<HeaderValue> = answer.headers().get_all(header::SET_COOKIE).iter().cloned().collect();
        let bytes = axum::body::to_bytes(answer.into_body(), MAX_FORM).await.unwrap_or_default();
        // A new API key is shown once, on a page of its own (never in a URL).
        if let Some(secret) =
            serde_json::from_slice::<serde_json::Value>(&bytes).ok().and_then(|v| v["secret"].as_str().map(str::to_string))
        {
            let mut m = Markup::default();
            html!(
                m,
                "<p class=\"notice\" role=\"status\">Copy the key now: it is shown this once and cannot be shown again (only its hash is kept).</p>\
                 <p><label for=\"key\">API key</label><input id=\"key\" readonly value=\"{}\" size=\"90\"></p>\
                 <p>Send it as <code>Authorization: Bearer &lt;key&gt;</code>.</p><p><a href=\"{}\">Back</a></p>",
                secret,
                back
            );
            return page("New API key", None, StatusCode::CREATED, m);
        }
        // `{field}` in the page to return to takes the form's value (the login page keeps the id).
        let mut to = back;
        for (k, v) in &fields {
            to = to.replace(&format!("{{{k}}}"), &url_component(v));
        }
        let mut redirect = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
        for cookie in cookies {
            redirect.headers_mut().append(header::SET_COOKIE, cookie);
        }
        return redirect;
    }
    // The API's error, as a page: its status and its message.
    let status = answer.status();
    let bytes = axum::body::to_bytes(answer.into_body(), MAX_FORM).await.unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| "the request failed".into());
    let mut m = Markup::default();
    html!(m, "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"{}\">Back</a></p>", message, back);
    if status == StatusCode::UNAUTHORIZED {
        html!(m, "<p><a href=\"/login\">Log in</a></p>");
    }
    page("Not done", None, status, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interpolated_value_is_escaped() {
        let mut m = Markup::default();
        html!(m, "<p title=\"{}\">{}</p>", "\"><script>", "<script>alert('x')</script>&");
        assert_eq!(m.as_str(), "<p title=\"&quot;&gt;&lt;script&gt;\">&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;</p>");
    }

    /// An inline capture (`{name}`) in an `html!` format string would skip the escaping: none
    /// may exist in this file.
    #[test]
    fn no_html_format_string_captures_a_variable_unescaped() {
        let whole = include_str!("pages.rs");
        // The pages, not these tests (which name the macro in strings).
        let source = whole.split("#[cfg(test)]").next().unwrap_or(whole);
        let mut checked = 0;
        for (at, _) in source.match_indices("html!(") {
            let rest = &source[at..];
            let Some(open) = rest.find('"') else { continue };
            let body = &rest[open + 1..];
            let mut literal = String::new();
            let mut chars = body.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    c => literal.push(c),
                }
            }
            let unescaped = literal.replace("{{", "").replace("}}", "");
            for (i, _) in unescaped.match_indices('{') {
                let next = unescaped[i + 1..].chars().next();
                assert_eq!(next, Some('}'), "an inline capture in html!: {literal:?}");
            }
            checked += 1;
        }
        assert!(checked > 30, "the scan found the html! calls ({checked})");
    }

    #[test]
    fn forms_return_to_local_pages_only() {
        assert_eq!(local_path("/users/5?done=ban"), Some("/users/5?done=ban"));
        for bad in ["//evil.example", "https://evil.example", "evil", "/\\evil.example", "/a\r\nLocation: x"] {
            assert_eq!(local_path(bad), None, "{bad}");
        }
    }
}
