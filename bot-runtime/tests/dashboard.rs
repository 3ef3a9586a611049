//! The admin dashboard and API from the outside (docs/ADMIN.md, "Tests"):
//!
//! * `a_real_browser_logs_in_with_a_code_and_uses_every_page_each_step_checked_outside_it`: a
//!   headless Chromium (support/webdriver.rs says why WebDriver and which packages) against a
//!   real admin server over two bots on the fake Telegram; every step it takes in the pages is
//!   checked outside the browser (the fake's inboxes, the database, the API).
//! * `schemathesis_finds_no_server_error_and_no_answer_outside_the_schema`: schemathesis
//!   (PyPI, the venv `.ci/run` makes) with an API key, every phase including the stateful one
//!   over the document's links.
//! * `every_route_refuses_what_the_permission_matrix_refuses`: the matrix's negative cells over
//!   every documented operation (new routes are covered by being in `OPERATIONS`).

mod support;
#[path = "support/webdriver.rs"]
mod webdriver;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bot_runtime::admin::SessionSecret;
use bot_runtime::admin::openapi::{Access, OPERATIONS};
use bot_runtime::roles::simulate::{Person, text_of};
use bot_runtime::store::sql::SqlStore;
use bot_runtime::texts::Lang;
use serde_json::{Value, json};
use support::admin_server::{AdminOptions, AdminServer};
use support::*;
use webdriver::{Browser, ENTER};

// ---- the admin server under test -------------------------------------------------------------

const SECRET: &[u8] = b"the dashboard tests' session secret, 32 bytes+";

/// The admin server's session secret (the tests make sessions in the database with it).
fn secret() -> SessionSecret {
    SessionSecret::new(SECRET.to_vec()).unwrap()
}

struct Options {
    fleet_admins: Vec<i64>,
    beta_admins: Vec<i64>,
    /// Requests per minute per API key.
    key_limit: u32,
    /// Jobs a broadcast keeps queued per bot.
    broadcast_queue: u64,
}

/// The admin role of the harness's fleet on 127.0.0.1 (tests/support/admin_server.rs; no
/// trusted proxy: the client is the TCP peer, as for a browser on the admin's machine).
async fn start_admin(h: &Harness, o: Options) -> AdminServer {
    h.start_admin_server(AdminOptions {
        fleet_admins: o.fleet_admins,
        beta_admins: o.beta_admins,
        key_limit: o.key_limit,
        broadcast_queue: o.broadcast_queue,
        broadcast_tick: Duration::from_millis(200),
        // The API's per-caller limit is not what these tests look at (the permission matrix
        // and schemathesis send many requests): high enough never to answer 429.
        api_per_minute: 1_000_000,
        trust_loopback_proxy: false,
        secret: SECRET,
        ..AdminOptions::default()
    })
    .await
}

/// An API client: a session (cookie + CSRF token) or an API key, or nothing.
#[derive(Clone, Default)]
struct Api {
    cookie: Option<String>,
    csrf: Option<String>,
    key: Option<String>,
}

impl AdminServer {
    async fn call(&self, who: &Api, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("http://{}{path}", self.addr));
        if let Some(c) = &who.cookie {
            req = req.header("cookie", c);
        }
        if let Some(t) = &who.csrf {
            req = req.header("x-csrf-token", t);
        }
        if let Some(k) = &who.key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("the admin API answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Logs `person` in through the API with the code their bot sends.
    async fn log_in(&self, person: &mut Person) -> Api {
        let (status, body) = self.call(&Api::default(), "post", "/api/v1/login/code", Some(json!({"telegram_id": person.id}))).await;
        assert_eq!(status, 202, "{body}");
        let code = read_code(person).await;
        let resp = self
            .http
            .post(format!("http://{}/api/v1/login", self.addr))
            .json(&json!({"telegram_id": person.id, "code": code}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let cookie = resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
        let body: Value = resp.json().await.unwrap();
        Api { cookie: Some(cookie), csrf: body["csrf_token"].as_str().map(str::to_string), key: None }
    }

    /// A new API key made by a fleet admin's session.
    async fn make_key(&self, owner: &Api, request: Value) -> (String, String) {
        let (status, body) = self.call(owner, "post", "/api/v1/keys", Some(request)).await;
        assert_eq!(status, 201, "{body}");
        (body["secret"].as_str().unwrap().to_string(), body["key"]["id"].as_str().unwrap().to_string())
    }
}

/// The latest login code in `person`'s chat with their bot.
async fn read_code(person: &mut Person) -> String {
    let m = person.expect("a login code", WAIT, |m| text_of(m).contains("admin login code")).await.expect("a login code in Telegram");
    let text = text_of(&m);
    let digits: String = text.split("code:").nth(1).unwrap_or("").chars().filter(char::is_ascii_digit).take(6).collect();
    assert_eq!(digits.len(), 6, "{text}");
    digits
}

async fn onboarded(h: &Harness, bot: &str, name: &str, gender: &str, age: u8) -> Person {
    let mut p = Person::new(&h.sim, &username(bot), name, Lang::En).expect("user");
    p.onboard(gender, age, &[], WAIT).await.expect("onboarding");
    p
}

async fn two_bots(backend: Backend) -> Harness {
    Harness::start(backend, Mode::Polling, vec![bot_config("alpha", Mode::Polling, ""), bot_config("beta", Mode::Polling, "")], 1).await
}

/// `a` searches, then `b`: they are matched with each other.
async fn chat(a: &mut Person, b: &mut Person) {
    a.tap("menu_find").unwrap();
    a.expect_text("searching", WAIT).await.expect("searching");
    b.tap("menu_find").unwrap();
    a.expect_text("matched", WAIT).await.expect("matched");
    b.expect_text("matched", WAIT).await.expect("matched");
}

// ---- the browser ------------------------------------------------------------------------------

/// Where the screenshots go: `target/admin-screenshots/` (next to the build, kept after the run).
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test binary>
    exe.ancestors().nth(3).map(|t| t.join("admin-screenshots")).unwrap_or_else(|| std::env::temp_dir().join("admin-screenshots"))
}

/// What every page must do, checked on each page the test opens (a new page gets these checks
/// by being opened, and by being in the header's navigation — see the end of the test):
/// every form control has a label (found as a screen reader finds it), every button a name, ids
/// are unique, the page has a language, a `main` and one `h1`, nothing is taken out of the
/// keyboard's tab order; no console error (a CSP violation or a script error is one); the
/// stylesheet applies under the CSP; on a phone (390 px) nothing is wider than the screen. A
/// screenshot of the desktop and the phone view is kept.
async fn inspect(b: &Browser, step: &mut u32, name: &str) {
    let problems = b
        .exec(
            "const bad = [];\
             for (const el of document.querySelectorAll('input, select, textarea')) {\
               if (el.type === 'hidden') continue;\
               const named = (el.labels && el.labels.length > 0 && el.labels[0].textContent.trim() !== '') || el.getAttribute('aria-label');\
               if (!named) bad.push('no label: ' + el.outerHTML);\
             }\
             for (const btn of document.querySelectorAll('button')) if (!btn.textContent.trim() && !btn.getAttribute('aria-label')) bad.push('no name: ' + btn.outerHTML);\
             const ids = new Set();\
             for (const e of document.querySelectorAll('[id]')) { if (ids.has(e.id)) bad.push('duplicate id ' + e.id); ids.add(e.id); }\
             for (const e of document.querySelectorAll('a[href], button, input, select, textarea')) if (e.type !== 'hidden' && e.tabIndex < 0) bad.push('not reachable by keyboard: ' + e.outerHTML);\
             if (!document.documentElement.lang) bad.push('no lang on <html>');\
             if (document.querySelectorAll('main').length !== 1) bad.push('not one <main>');\
             if (document.querySelectorAll('h1').length !== 1) bad.push('not one <h1>');\
             if (getComputedStyle(document.body).marginTop !== '0px') bad.push('the stylesheet did not apply');\
             return bad;",
            json!([]),
        )
        .await;
    assert_eq!(problems, json!([]), "page {name} ({})", b.path().await);
    let errors: Vec<Value> = b
        .console()
        .await
        .into_iter()
        .filter(|l| l["level"] == "SEVERE" && !l["message"].as_str().unwrap_or_default().contains("favicon.ico"))
        .collect();
    assert!(errors.is_empty(), "console errors on page {name}: {errors:?}");
    *step += 1;
    let dir = screenshot_dir();
    b.full_screenshot(&dir.join(format!("{step:02}-{name}.png"))).await;
    b.resize(390, 844).await;
    let (page, screen) = {
        let v = b.exec("return [document.documentElement.scrollWidth, window.innerWidth];", json!([])).await;
        (v[0].as_i64().unwrap_or(0), v[1].as_i64().unwrap_or(0))
    };
    b.full_screenshot(&dir.join(format!("{step:02}-{name}-phone.png"))).await;
    b.resize(1280, 900).await;
    assert!(page <= screen, "page {name} is wider ({page} px) than a phone's screen ({screen} px)");
}

/// Follows a link of the header's navigation, by its text, as a keyboard user would (focus, Enter).
async fn nav(b: &Browser, text: &str, path: &str) {
    let link = b
        .exec(
            "for (const a of document.querySelectorAll('header nav a')) if (a.textContent.trim() === arguments[0]) return a; return null;",
            json!([text]),
        )
        .await;
    let id = link["element-6066-11e4-a52e-4f735466cecf"].as_str().unwrap_or_else(|| panic!("no navigation link {text:?}")).to_string();
    b.keys(&webdriver::El(id), ENTER).await;
    b.wait_path(&format!("the {text} page"), WAIT, |p| p == path).await;
}

/// The height and the title of the overview chart's last bar (today).
async fn todays_bar(b: &Browser) -> (String, String) {
    let v = b
        .exec(
            "const r = document.querySelector(\"rect[data-bar='29']\"); return [r.getAttribute('height'), r.querySelector('title').textContent];",
            json!([]),
        )
        .await;
    (v[0].as_str().unwrap_or_default().to_string(), v[1].as_str().unwrap_or_default().to_string())
}

/// The fleet's people tile of the overview.
async fn people(b: &Browser) -> i64 {
    let t = b.text("[data-live='people.people']").await;
    t.parse::<i64>().unwrap_or_else(|_| panic!("the people tile: {t:?}"))
}

/// The number of messages with `needle` that reached `people` (the fake's deliveries).
fn delivered(people: &mut [&mut Person], needle: &str) -> Vec<usize> {
    people.iter_mut().map(|p| p.received().unwrap().iter().filter(|m| text_of(m).contains(needle)).count()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_browser_logs_in_with_a_code_and_uses_every_page_each_step_checked_outside_it() {
    let h = two_bots(Backend::Production).await;
    let mut fay = onboarded(&h, "alpha", "Fay", "f", 40).await;
    // Ann (alpha) and Bob (beta) are chatting; Cat (alpha) reported Dan (beta).
    let mut ann = onboarded(&h, "alpha", "Ann", "f", 25).await;
    let mut bob = onboarded(&h, "beta", "Bob", "m", 31).await;
    let mut cat = onboarded(&h, "alpha", "Cat", "f", 27).await;
    let mut dan = onboarded(&h, "beta", "Dan", "m", 35).await;
    chat(&mut cat, &mut dan).await;
    cat.tap("chat_report").unwrap();
    dan.expect_text("partner_left", WAIT).await.unwrap();
    chat(&mut ann, &mut bob).await;
    let mut eve = onboarded(&h, "beta", "Eve", "f", 22).await;
    let mut gus = onboarded(&h, "beta", "Gus", "m", 29).await;
    // Eve blocked Gus (the moderation page's blocked list).
    chat(&mut eve, &mut gus).await;
    eve.tap("chat_block").unwrap();
    gus.expect_text("partner_left", WAIT).await.unwrap();
    let admin = start_admin(&h, Options { fleet_admins: vec![fay.id], beta_admins: vec![], key_limit: 120, broadcast_queue: 2 }).await;
    let origin = format!("http://{}", admin.addr);
    let Some(b) = Browser::start(&origin).await else { return };
    let _ = std::fs::remove_dir_all(screenshot_dir());
    let mut step = 0;
    let _ = b.console().await;

    // Log in through the code flow, by keyboard: no session sends the browser to /login.
    b.goto("/").await;
    b.wait_path("the login page", WAIT, |p| p == "/login").await;
    inspect(&b, &mut step, "login").await;
    // The Content-Security-Policy holds in a real browser: an injected inline script does not
    // run, and the violation reaches the console (so `inspect` would see one on a page).
    let ran = b
        .exec(
            "const s = document.createElement('script'); s.textContent = 'window.__inline = true;'; document.body.appendChild(s); return window.__inline === true;",
            json!([]),
        )
        .await;
    assert_eq!(ran, json!(false), "inline script is refused");
    let logged = b.console().await;
    assert!(
        logged.iter().any(|l| l["level"] == "SEVERE" && l["message"].as_str().unwrap_or_default().contains("Content Security Policy")),
        "the violation is in the console: {logged:?}"
    );
    let id_field = b.field("form[action='/api/v1/login/code']", "Telegram id").await;
    b.type_into(&id_field, &format!("{}{ENTER}", fay.id)).await;
    b.wait_path("the code step", WAIT, |p| p.starts_with("/login?done=code")).await;
    assert!(b.text("[role=status]").await.contains("sent a code"));
    inspect(&b, &mut step, "login-code-sent").await;
    let code = read_code(&mut fay).await;
    let second = b.field("form[action='/api/v1/login']", "Telegram id").await;
    assert_eq!(b.prop(&second, "value").await, json!(fay.id.to_string()), "the id is kept for the second step");
    let code_field = b.field("form[action='/api/v1/login']", "Code").await;
    b.type_into(&code_field, &format!("{code}{ENTER}")).await;
    b.wait_path("the overview after logging in", WAIT, |p| p == "/").await;
    let logins: i64 = sqlx::query_scalar("SELECT count(*) FROM admin_audit WHERE action = 'login' AND admin_id = $1")
        .bind(fay.id)
        .fetch_one(admin.sql.pool())
        .await
        .unwrap();
    assert_eq!(logins, 1, "the login is in the audit log");

    // The overview changes without a reload when someone new onboards: its script refreshes the
    // numbers (every 10 s) from the API. A marker set in the page survives: no reload.
    inspect(&b, &mut step, "overview").await;
    let before = people(&b).await;
    assert_eq!(before, 7, "Fay, Ann, Cat (alpha), Bob, Dan, Eve, Gus (beta)");
    b.exec("window.__sameDocument = true;", json!([])).await;
    let mut newcomer = onboarded(&h, "beta", "Newcomer", "f", 21).await;
    let deadline = Instant::now() + Duration::from_secs(25);
    while people(&b).await != before + 1 {
        assert!(Instant::now() < deadline, "the overview did not show the newcomer without a reload");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(b.exec("return window.__sameDocument === true;", json!([])).await, json!(true), "no reload");
    assert_eq!(b.text("[data-live='bots.default/beta.members']").await, "5", "beta's row moved too");
    // The chart redraws too: a payment on beta shows in the 30 days' total, today's bar and the
    // plan's row without a reload; beta's Stars balance and its age are in its row.
    assert_eq!(b.text("[data-chart='total']").await, "0");
    assert_eq!(todays_bar(&b).await.0, "0", "no revenue yet");
    {
        use bot_runtime::store::money::{NewPayment, Payments as _};
        let payment = NewPayment {
            charge_id: "charge-browser".into(),
            bot: "default/beta".into(),
            user_id: bob.id,
            quote_id: None,
            plan_id: "vip_week".into(),
            stars: 120,
            vip_days: 7,
            lock_credits: 0,
            now_ms: bot_runtime::bot::now_ms(),
            subscription_until_ms: None,
        };
        admin.sql.apply_payment(&payment).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(25);
    while b.text("[data-chart='total']").await != "120" {
        assert!(Instant::now() < deadline, "the chart did not show the payment without a reload");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (height, title) = todays_bar(&b).await;
    assert_eq!(height, "96", "today's bar is the tallest: {title}");
    assert!(title.ends_with(": 120 Stars"), "{title}");
    assert_eq!(b.exec("return window.__sameDocument === true;", json!([])).await, json!(true), "no reload");
    assert_eq!(b.text("[data-live='bots.default/beta.star_balance']").await, "0", "read from the fake at start");
    let read = b.text("[data-live='bots.default/beta.star_balance_ms']").await;
    assert!(read == "just now" || read.ends_with("min ago"), "{read}");
    inspect(&b, &mut step, "overview-live").await;

    // Users: find Ann, ban her fleet-wide from her page; the chat she is in ends — Bob's notice
    // arrives in the fake's inbox — and she is told.
    nav(&b, "Users", "/users").await;
    inspect(&b, &mut step, "users").await;
    let q = b.field("form[role=search]", "Telegram id or @username").await;
    b.type_into(&q, &format!("{}{ENTER}", ann.id)).await;
    b.wait_path("the search", WAIT, |p| p.starts_with("/users?q=")).await;
    inspect(&b, &mut step, "users-found").await;
    b.click(&b.find(&format!("a[href='/users/{}']", ann.id)).await).await;
    b.wait_path("Ann's page", WAIT, |p| p == format!("/users/{}", ann.id)).await;
    inspect(&b, &mut step, "user").await;
    let fleet_ban = format!("form[action='/api/v1/users/{}/ban']:has(#fr)", ann.id);
    b.type_into(&b.field(&fleet_ban, "Reason").await, "spam in the browser test").await;
    b.click(&b.button(&fleet_ban, "Ban on every bot").await).await;
    b.wait_path("the ban's confirmation", WAIT, |p| p.ends_with("?done=ban")).await;
    assert!(b.text("[role=status]").await.contains("The ban is in force"));
    bob.expect("the partner's notice", WAIT, |m| text_of(m).contains("no longer reachable")).await.expect("Bob is told the chat ended");
    ann.expect("the ban notice", WAIT, |m| text_of(m).contains("banned you")).await.expect("Ann is told");
    let beta = h.any_bot("beta");
    assert_eq!(beta.fleet.matcher.partner(&beta.pool, &bot_runtime::matching::Member::new("beta", bob.id)).await.unwrap(), None);
    inspect(&b, &mut step, "user-banned").await;

    // A gift to Bob from his page: he is told, and his /vip shows it.
    b.goto(&format!("/users/{}", bob.id)).await;
    let gift = "form[action$='/gift']:has(input[name=bot][value='default/beta'])";
    b.type_into(&b.field(gift, "VIP days").await, "30").await;
    b.type_into(&b.field(gift, "Credits").await, "5").await;
    b.click(&b.button(gift, "Gift").await).await;
    b.wait_path("the gift's confirmation", WAIT, |p| p.ends_with("?done=gift")).await;
    let facts = b.text("section:has(input[name=bot][value='default/beta']) dl").await;
    assert!(facts.contains("Credits\n5") || facts.contains("Credits 5"), "{facts}");
    bob.expect("the gift notice", WAIT, |m| text_of(m).contains("30 days of VIP")).await.expect("Bob is told about the gift");
    bob.send("/vip").unwrap();
    let shop = bob.expect("the shop", WAIT, |m| text_of(m).contains("Lock-chat credits")).await.unwrap();
    assert!(text_of(&shop).contains("credits: 5") && text_of(&shop).contains("until"), "{}", text_of(&shop));
    inspect(&b, &mut step, "user-gifted").await;

    // Moderation: Dan's report, dismissed from the queue; the report is closed in the database.
    nav(&b, "Moderation", "/moderation").await;
    inspect(&b, &mut step, "moderation").await;
    let item = format!("article.item:has(a[href='/users/{}'])", dan.id);
    assert!(b.text(&item).await.contains("1 from 1 people"), "{}", b.text(&item).await);
    b.click(&b.button(&format!("{item} form:has(input[name=action][value=dismiss])"), "Dismiss").await).await;
    b.wait_path("the review's confirmation", WAIT, |p| p.ends_with("?done=review")).await;
    assert_eq!(b.count("article.item").await, 0, "the queue is empty");
    let review: Option<String> =
        sqlx::query_scalar("SELECT review FROM reports WHERE other_user = $1").bind(dan.id).fetch_one(admin.sql.pool()).await.unwrap();
    assert_eq!(review.as_deref(), Some("dismiss"));
    assert!(b.text("table").await.contains(&ann.id.to_string()), "Ann's ban is in the banned list");
    let blocked = b.text("table.blocked tbody").await;
    assert!(blocked.contains(&gus.id.to_string()) && blocked.contains("1 people"), "Gus, blocked by Eve: {blocked}");
    assert!(!blocked.contains(&eve.id.to_string()), "never who blocked: {blocked}");
    inspect(&b, &mut step, "moderation-reviewed").await;

    // A broadcast to beta's members: the bar reaches 100 %, and the fake delivered it to exactly
    // the audience (beta's five members with a profile; nobody of alpha), once each.
    nav(&b, "Broadcasts", "/broadcasts").await;
    inspect(&b, &mut step, "broadcasts").await;
    // The compose form previews (a GET): the message as members will see it and the audience's
    // size, with nothing sent or stored; the preview's own form sends exactly that.
    let form = "form[action='/broadcasts']";
    b.select(&b.field(form, "Bot").await, "default/beta").await;
    b.select(&b.field(form, "Audience").await, "all").await;
    b.type_into(&b.field(form, "Message").await, "<b>Browser news</b> for everyone").await;
    b.click(&b.button(form, "Preview").await).await;
    b.wait_path("the broadcast's preview", WAIT, |p| p.starts_with("/broadcasts?preview=1")).await;
    assert_eq!(b.text(".preview b").await, "Browser news", "the preview renders the message's HTML");
    assert!(b.text(".preview").await.contains("Browser news for everyone"), "{}", b.text(".preview").await);
    let reach = b.text("section[aria-labelledby=pv] p").await;
    assert!(reach.starts_with("5 members of default/beta would get it now"), "{reach}");
    let broadcasts = |sql: SqlStore| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM admin_broadcasts").fetch_one(sql.pool()).await.unwrap()
    };
    assert_eq!(broadcasts(admin.sql.clone()).await, 0, "a preview sends nothing");
    inspect(&b, &mut step, "broadcast-preview").await;
    let send = "form[action='/api/v1/broadcasts']";
    b.click(&b.button(send, "Send to these 5 members").await).await;
    b.wait_path("the broadcast's confirmation", WAIT, |p| p.ends_with("?done=broadcast")).await;
    assert_eq!(broadcasts(admin.sql.clone()).await, 1, "one broadcast sent");
    // The bar moves by itself (the page's script reads /api/v1/broadcasts every 2 s): the page
    // is never reloaded — a marker set in it survives — until the bar is full and it is done.
    b.exec("window.__sameDocument = true;", json!([])).await;
    let (mut seen, deadline) = (Vec::new(), Instant::now() + Duration::from_secs(60));
    loop {
        let bar = b.find("progress").await;
        let (value, max) = (b.prop(&bar, "value").await, b.prop(&bar, "max").await);
        let state = b.text("tbody tr td:last-child").await;
        if seen.last() != Some(&value) {
            seen.push(value.clone());
        }
        if value == max && state.starts_with("done") {
            assert_eq!(value.as_f64(), Some(5.0), "the audience: Bob, Dan, Eve, Gus and the newcomer");
            break;
        }
        assert!(Instant::now() < deadline, "the bar did not reach 100 %: {value} of {max}, {state} (seen {seen:?})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(b.exec("return window.__sameDocument === true;", json!([])).await, json!(true), "no reload");
    let row = b.text("tbody tr").await;
    assert!(row.contains("5 of 5 queued") && row.contains("5 delivered, 0 failed, 0 blocked"), "{row}");
    assert_eq!(b.count("tbody tr form").await, 0, "a done broadcast has no Stop button: {row}");
    let settled: i64 =
        sqlx::query_scalar("SELECT delivered + failed + blocked FROM admin_broadcasts").fetch_one(admin.sql.pool()).await.unwrap();
    assert_eq!(settled, 5, "the bar agrees with the database");
    inspect(&b, &mut step, "broadcast-done").await;
    let audience: [&mut Person; 5] = [&mut bob, &mut dan, &mut eve, &mut gus, &mut newcomer];
    let mut audience = audience;
    let deadline = Instant::now() + WAIT;
    while delivered(&mut audience, "Browser news") != vec![1; 5] {
        assert!(Instant::now() < deadline, "delivered: {:?}", delivered(&mut audience, "Browser news"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(delivered(&mut audience, "Browser news"), vec![1; 5], "once each");
    assert_eq!(delivered(&mut [&mut fay, &mut ann, &mut cat], "Browser news"), vec![0; 3], "alpha's members are not in it");

    // A gift to an audience: the form checks the audience first (a GET: nothing given), then
    // its confirmation gives exactly that; each of beta's five members is told once, nobody of
    // alpha gets anything, and the ledger and the gifts' records say the same.
    nav(&b, "Gifts", "/gifts").await;
    inspect(&b, &mut step, "gifts").await;
    let form = "form[action='/gifts']";
    b.select(&b.field(form, "Bot").await, "default/beta").await;
    b.select(&b.field(form, "Audience").await, "all").await;
    b.type_into(&b.field(form, "VIP days").await, "4").await;
    b.type_into(&b.field(form, "Credits").await, "2").await;
    b.click(&b.button(form, "Check the audience").await).await;
    b.wait_path("the gift's confirmation step", WAIT, |p| p.starts_with("/gifts?confirm=1")).await;
    assert_eq!(b.text("[data-gift=members]").await, "5", "Bob, Dan, Eve, Gus and the newcomer");
    let gifts = |sql: SqlStore| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM admin_gifts WHERE idem_key LIKE '%|audience:page-%'")
            .fetch_one(sql.pool())
            .await
            .unwrap()
    };
    assert_eq!(gifts(admin.sql.clone()).await, 0, "checking the audience gives nothing");
    inspect(&b, &mut step, "gift-confirm").await;
    b.click(&b.button("form[action='/api/v1/gifts']", "Give to these 5 members").await).await;
    b.wait_path("the gift's confirmation", WAIT, |p| p.ends_with("?done=gift_audience")).await;
    assert!(b.text("[role=status]").await.contains("every member of the audience"));
    assert_eq!(gifts(admin.sql.clone()).await, 5, "one gift per member");
    let ledger: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(delta), 0) AS BIGINT) FROM ledger WHERE bot = 'default/beta' AND idem_key LIKE 'gift:%|audience:page-%'",
    )
    .fetch_one(admin.sql.pool())
    .await
    .unwrap();
    assert_eq!(ledger, 10, "2 credits to each of the five");
    let deadline = Instant::now() + WAIT;
    while delivered(&mut audience, " 4 days of VIP") != vec![1; 5] {
        assert!(Instant::now() < deadline, "told: {:?}", delivered(&mut audience, " 4 days of VIP"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(delivered(&mut [&mut fay, &mut ann, &mut cat], "days of VIP"), vec![0; 3], "alpha's members get nothing");
    inspect(&b, &mut step, "gift-given").await;

    // Analytics: the funnel equals the events the simulated people made — eight started and
    // finished their profile; Ann, Bob, Cat, Dan, Eve and Gus searched and chatted; nobody paid — and the
    // records in the database say the same.
    nav(&b, "Analytics", "/analytics").await;
    inspect(&b, &mut step, "analytics").await;
    for (step, kind, expected) in [
        ("start", "start", 8),
        ("profile_done", "profile_done", 8),
        ("first_search", "first_search", 6),
        ("first_chat", "first_chat", 6),
        ("first_purchase", "purchase", 0),
    ] {
        let shown = b.text(&format!("td[data-funnel={step}]")).await;
        let recorded: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT (e.bot, e.user_id)) FROM analytics_events e JOIN analytics_events s \
             ON s.bot = e.bot AND s.user_id = e.user_id AND s.kind = 'start' AND s.ref = '' WHERE e.kind = $1",
        )
        .bind(kind)
        .fetch_one(admin.sql.pool())
        .await
        .unwrap();
        assert_eq!((shown.as_str(), recorded), (expected.to_string().as_str(), expected), "the funnel's {step}");
    }

    // The audit log shows every action above; its CSV export downloads with the session.
    nav(&b, "Audit log", "/audit").await;
    inspect(&b, &mut step, "audit").await;
    let log = b.text("table").await;
    for action in ["login", "view_user", "ban", "gift", "review", "broadcast", "gift_audience"] {
        assert!(log.contains(action), "{action} in the audit page: {log}");
    }
    let csv = b
        .exec_async(
            "const done = arguments[arguments.length - 1];\
             fetch(document.querySelector('a[href=\"/api/v1/audit.csv\"]').href).then(r => r.text()).then(done, e => done(String(e)));",
            json!([]),
        )
        .await;
    let csv = csv.as_str().unwrap_or_default();
    assert!(csv.starts_with("id,at,admin_id,action,") && csv.contains(",ban,") && csv.contains("spam in the browser test"), "{csv}");

    // API keys: made through the form, shown once; it works outside the browser until revoked
    // from the page.
    nav(&b, "API keys", "/keys").await;
    inspect(&b, &mut step, "keys").await;
    let form = "form[action='/api/v1/keys']";
    b.type_into(&b.field(form, "What it is for").await, "browser test").await;
    b.select(&b.field(form, "Role").await, "bot_admin").await;
    b.type_into(&b.field(form, "Bots").await, "default/beta").await;
    b.select(&b.field(form, "Access").await, "true").await;
    b.click(&b.button(form, "Make the key").await).await;
    let shown = {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(el) = b.try_find("input#key").await {
                break b.prop(&el, "value").await.as_str().unwrap_or_default().to_string();
            }
            assert!(Instant::now() < deadline, "the new key's page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(shown.starts_with("bfk_"), "{shown}");
    inspect(&b, &mut step, "key-made").await;
    let robot = Api { key: Some(shown.clone()), ..Api::default() };
    let (status, body) = admin.call(&robot, "get", "/api/v1/bots", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["bots"].as_array().map(Vec::len), Some(1), "beta only: {body}");
    let (status, _) = admin.call(&robot, "post", &format!("/api/v1/users/{}/unban", ann.id), Some(json!({"bot": "default/beta"}))).await;
    assert_eq!(status, 403, "read-only");
    let key_id = shown.split('_').nth(1).unwrap().to_string();
    b.goto("/keys").await;
    b.click(&b.button(&format!("form[action='/api/v1/keys/{key_id}/revoke']"), "Revoke").await).await;
    b.wait_path("the revocation's confirmation", WAIT, |p| p.ends_with("?done=revoke")).await;
    let (status, _) = admin.call(&robot, "get", "/api/v1/bots", None).await;
    assert_eq!(status, 401, "revoked from the page");
    inspect(&b, &mut step, "key-revoked").await;

    // Every page of the header's navigation passes the page checks (a page added to the
    // navigation is checked here without changing this test).
    let links = b.exec("return Array.from(document.querySelectorAll('header nav a')).map(a => a.getAttribute('href'));", json!([])).await;
    let links: Vec<String> = links.as_array().unwrap().iter().filter_map(|l| l.as_str().map(str::to_string)).collect();
    assert!(links.len() >= 6, "{links:?}");
    for link in &links {
        b.goto(link).await;
        b.wait_path(link, WAIT, |p| p == link).await;
        let name = match link.trim_matches('/') {
            "" => "overview".to_string(),
            other => other.replace('/', "-"),
        };
        inspect(&b, &mut step, &format!("nav-{name}")).await;
    }

    // Logging out from the header ends the session: the dashboard asks for a login again.
    b.click(&b.button("form.logout", "Log out").await).await;
    b.wait_path("the logout", WAIT, |p| p == "/login?done=logout").await;
    b.goto("/users").await;
    b.wait_path("the login page again", WAIT, |p| p == "/login").await;
    println!("screenshots of every page: {}", screenshot_dir().display());
    b.close().await;
    h.stop().await;
}

// ---- schemathesis -----------------------------------------------------------------------------

/// The schemathesis CLI: `BOTFLEET_SCHEMATHESIS`, else the venv `.ci/run` makes
/// (`.venv-schemathesis`, pinned in `bot-runtime/tests/schemathesis-requirements.txt`). None
/// (skipped) when missing outside CI; under `CI` that panics.
fn schemathesis() -> Option<PathBuf> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cli =
        std::env::var_os("BOTFLEET_SCHEMATHESIS").map(PathBuf::from).unwrap_or_else(|| repo.join(".venv-schemathesis/bin/schemathesis"));
    if cli.is_file() {
        return Some(cli);
    }
    let why = format!(
        "{} is missing (python3 -m venv .venv-schemathesis && .venv-schemathesis/bin/pip install -r bot-runtime/tests/schemathesis-requirements.txt)",
        cli.display()
    );
    assert!(std::env::var_os("CI").is_none(), "schemathesis is required in CI: {why}");
    eprintln!("SKIPPED: {why}");
    None
}

/// schemathesis against a running admin role with a fleet admin's API key: every phase
/// (explicit examples, schema coverage, fuzzing, and stateful sequences over the document's
/// links), every check — no 5xx, every answer's status, content type and body as documented,
/// bad input refused, no route that works without the key. A fixed seed keeps CI
/// reproducible (`BOTFLEET_SCHEMATHESIS_SEED` explores others). The members, the report, the
/// payment, the broadcast and the ban below give the stateful phase something to chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_schema() {
    let Some(cli) = schemathesis() else { return };
    let h = two_bots(Backend::Production).await;
    let mut fay = onboarded(&h, "alpha", "Fay", "f", 40).await;
    let mut cat = onboarded(&h, "alpha", "Cat", "f", 27).await;
    let mut dan = onboarded(&h, "beta", "Dan", "m", 35).await;
    let bob = onboarded(&h, "beta", "Bob", "m", 31).await;
    chat(&mut cat, &mut dan).await;
    cat.tap("chat_report").unwrap();
    dan.expect_text("partner_left", WAIT).await.unwrap();
    let admin =
        start_admin(&h, Options { fleet_admins: vec![fay.id], beta_admins: vec![], key_limit: 1_000_000, broadcast_queue: 90 }).await;
    let owner = admin.log_in(&mut fay).await;
    use bot_runtime::store::money::{NewPayment, Payments};
    let payment = NewPayment {
        charge_id: "charge-schemathesis".into(),
        bot: "default/beta".into(),
        user_id: bob.id,
        quote_id: None,
        plan_id: "vip_week".into(),
        stars: 50,
        vip_days: 7,
        lock_credits: 0,
        now_ms: bot_runtime::bot::now_ms(),
        subscription_until_ms: None,
    };
    admin.sql.apply_payment(&payment).await.unwrap();
    let (status, body) = admin
        .call(&owner, "post", "/api/v1/broadcasts", Some(json!({"bot": "default/beta", "text": "<b>hello</b>", "audience": "vip"})))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) =
        admin.call(&owner, "post", &format!("/api/v1/users/{}/ban", cat.id), Some(json!({"bot": "default/alpha", "hours": 1}))).await;
    assert_eq!(status, 200, "{body}");
    let (key, _) = admin.make_key(&owner, json!({"name": "schemathesis", "role": "fleet_admin"})).await;

    let reports = screenshot_dir().with_file_name("schemathesis");
    std::fs::create_dir_all(&reports).unwrap();
    let seed = std::env::var("BOTFLEET_SCHEMATHESIS_SEED").unwrap_or_else(|_| "11".into());
    let url = format!("http://{}/api/v1/openapi.json", admin.addr);
    let session = owner.cookie.as_deref().and_then(|c| c.split_once('=')).map(|(_, v)| v.to_string()).unwrap();
    let csrf = owner.csrf.clone().unwrap();
    let env = [("BOTFLEET_ADMIN_KEY", key.clone()), ("BOTFLEET_ADMIN_SESSION", session), ("BOTFLEET_ADMIN_CSRF", csrf)];
    // The API with the key, then the key routes with the session.
    let members: Vec<String> = [fay.id, cat.id, dan.id, bob.id].iter().map(i64::to_string).collect();
    for config in ["schemathesis.toml", "schemathesis-keys.toml"] {
        // The committed settings, with the members' ids (known now) as a dictionary.
        let committed = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(config)).unwrap();
        let config = reports.join(config);
        std::fs::write(&config, format!("{committed}\n[dictionaries.members]\nvalues = [{}]\n", members.join(", "))).unwrap();
        let args: Vec<String> = vec![
            "--config-file".into(),
            config.display().to_string(),
            "run".into(),
            url.clone(),
            "--seed".into(),
            seed.clone(),
            "--no-color".into(),
            "--report".into(),
            "junit".into(),
            "--report-dir".into(),
            reports.display().to_string(),
        ];
        let (cli, reports, env) = (cli.clone(), reports.clone(), env.clone());
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(&cli)
                .args(&args)
                .current_dir(&reports)
                .env("NO_COLOR", "1")
                .envs(env)
                .output()
                .expect("run schemathesis")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("schemathesis with {} ({:.0?}):\n{stdout}\n{stderr}", config.display(), started.elapsed());
        assert!(out.status.success(), "schemathesis ({}) found problems:\n{stdout}\n{stderr}", config.display());
        assert!(stdout.contains("Tested:"), "schemathesis ran: {stdout}");
        assert!(!stdout.contains(&key), "the key is not echoed");
    }
    h.stop().await;
}

// ---- the permission matrix's negative cells ----------------------------------------------------

/// A valid request to `op` acting on bot alpha (Ann, alpha's member; her payment; alpha's
/// broadcast; a key): only who asks decides the answer. A new state-changing route needs a
/// line here (the test says so).
fn alpha_request(op: &bot_runtime::admin::openapi::Operation, ann: i64, broadcast: i64, key: &str) -> (String, Option<Value>) {
    let path = op.path.replace("{user_id}", &ann.to_string()).replace("{broadcast_id}", &broadcast.to_string()).replace("{key_id}", key);
    let path = if op.path == "/api/v1/users" { format!("{path}?id={ann}") } else { path };
    let body = match (op.method, op.path) {
        ("get", _) => None,
        ("post", "/api/v1/logout" | "/api/v1/broadcasts/{broadcast_id}/cancel" | "/api/v1/keys/{key_id}/revoke") => Some(json!({})),
        ("post", "/api/v1/users/{user_id}/ban") => Some(json!({"bot": "default/alpha", "reason": "matrix"})),
        ("post", "/api/v1/users/{user_id}/unban") => Some(json!({"bot": "default/alpha"})),
        ("post", "/api/v1/users/{user_id}/gift") => Some(json!({"bot": "default/alpha", "credits": 1, "idempotency_key": "matrix"})),
        ("post", "/api/v1/gifts") => Some(json!({"bot": "default/alpha", "credits": 1, "idempotency_key": "matrix"})),
        ("post", "/api/v1/refunds") => Some(json!({"bot": "default/alpha", "charge_id": "charge-alpha"})),
        ("post", "/api/v1/moderation/reports/{user_id}/review") => Some(json!({"bot": "default/alpha", "action": "dismiss"})),
        ("post", "/api/v1/broadcasts" | "/api/v1/broadcasts/preview") => Some(json!({"bot": "default/alpha", "text": "matrix"})),
        ("post", "/api/v1/keys") => Some(json!({"name": "matrix", "role": "fleet_admin"})),
        (m, p) => panic!("{m} {p}: add a valid request acting on alpha to alpha_request (and its cell to bot_admin_on_alpha)"),
    };
    (path, body)
}

/// What beta's bot admin gets for `op` on alpha's things: refused (403), not found (404: a
/// person or broadcast of another bot is not shown), or an answer that shows nothing of alpha.
/// None: not a cell of another bot (her own session, her logout).
fn bot_admin_on_alpha(method: &str, path: &str) -> Option<u16> {
    Some(match (method, path) {
        ("get", "/api/v1/session") | ("post", "/api/v1/logout") => return None,
        ("get", "/api/v1/users/{user_id}") | ("post", "/api/v1/broadcasts/{broadcast_id}/cancel") => 404,
        ("get", "/api/v1/audit" | "/api/v1/audit.csv" | "/api/v1/keys") => 403,
        ("get", _) => 200,
        ("post", _) => 403,
        (m, p) => panic!("{m} {p}: say what beta's bot admin gets on alpha in bot_admin_on_alpha"),
    })
}

/// The negative cells of docs/ADMIN.md's permission matrix, over every documented operation
/// that is not public (a new route is covered by being in `OPERATIONS`): no credential, an
/// ended or expired session, an unknown or revoked key → 401; a state change without the CSRF
/// token, with a wrong one or with another session's → 403; a read-only key writing → 403; a
/// bot admin on another bot's things → 403 / 404 / nothing of it shown; and none of these
/// changed anything. Then the same requests from the fleet admin with the token succeed (so the
/// refusals were the credential's, not the request's).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_refuses_what_the_permission_matrix_refuses() {
    let h = two_bots(Backend::Embedded).await;
    let mut fay = onboarded(&h, "alpha", "Fay", "f", 40).await;
    let mut bea = onboarded(&h, "beta", "Bea", "f", 30).await;
    let ann = onboarded(&h, "alpha", "Ann", "f", 25).await;
    // A broadcast that stays running (no room in any outbox), and a payment on alpha.
    let admin =
        start_admin(&h, Options { fleet_admins: vec![fay.id], beta_admins: vec![bea.id], key_limit: 10_000, broadcast_queue: 0 }).await;
    use bot_runtime::store::admin::AdminStore;
    use bot_runtime::store::money::{NewPayment, Payments};
    let now = bot_runtime::bot::now_ms();
    let audience = bot_runtime::store::admin::Audience::all();
    let row = bot_runtime::store::admin::NewBroadcastRow {
        bot: "default/alpha",
        text: "alpha news",
        audience: &audience,
        by: fay.id,
        now_ms: now,
        start_ms: None,
        total: 1,
        paid: false,
    };
    let broadcast = admin.sql.create_broadcast(&row).await.unwrap();
    // Fay blocked Ann on alpha: the blocked list shows beta's admin nothing of it.
    let on_alpha = |user: i64| bot_runtime::matching::Member::new("default/alpha", user);
    <SqlStore as bot_runtime::store::Safety>::record_block(&admin.sql, &on_alpha(fay.id), &on_alpha(ann.id), now).await.unwrap();
    let payment = NewPayment {
        charge_id: "charge-alpha".into(),
        bot: "default/alpha".into(),
        user_id: ann.id,
        quote_id: None,
        plan_id: "vip_week".into(),
        stars: 50,
        vip_days: 7,
        lock_credits: 0,
        now_ms: now,
        subscription_until_ms: None,
    };
    admin.sql.apply_payment(&payment).await.unwrap();
    let owner = admin.log_in(&mut fay).await;
    let bot_admin = admin.log_in(&mut bea).await;
    let (_, key_id) = admin.make_key(&owner, json!({"name": "to revoke", "role": "fleet_admin"})).await;
    let (revoked, revoked_id) = admin.make_key(&owner, json!({"name": "revoked", "role": "fleet_admin"})).await;
    let (status, _) = admin.call(&owner, "post", &format!("/api/v1/keys/{revoked_id}/revoke"), Some(json!({}))).await;
    assert_eq!(status, 200);
    let (read_only, _) = admin.make_key(&owner, json!({"name": "reader", "role": "fleet_admin", "read_only": true})).await;
    // Sessions that ended: one logged out, one past its 12 hours.
    let secret = secret();
    let (ended, expired) = ("e".repeat(64), "f".repeat(64));
    admin.sql.create_session(&secret.tag("session", &ended), fay.id, now, now + 3_600_000).await.unwrap();
    admin.sql.revoke_session(&secret.tag("session", &ended), now).await.unwrap();
    admin.sql.create_session(&secret.tag("session", &expired), fay.id, now - 13 * 3_600_000, now - 3_600_000).await.unwrap();
    let cookie = |token: &str| Some(format!("botfleet_admin={token}"));
    let audited = |sql: SqlStore| async move { sql.audit_log(None, 10_000).await.unwrap().len() };
    let before = audited(admin.sql.clone()).await;

    let unauthenticated: Vec<(&str, Api)> = vec![
        ("no credential", Api::default()),
        ("a logged-out session", Api { cookie: cookie(&ended), csrf: owner.csrf.clone(), key: None }),
        ("an expired session", Api { cookie: cookie(&expired), csrf: owner.csrf.clone(), key: None }),
        ("a malformed session cookie", Api { cookie: Some("botfleet_admin=<script>".into()), csrf: None, key: None }),
        ("a revoked key", Api { key: Some(revoked), ..Api::default() }),
        ("a key with a forged secret", Api { key: Some(format!("bfk_{key_id}_{}", "0".repeat(64))), ..Api::default() }),
    ];
    let forbidden_writes: Vec<(&str, Api)> = vec![
        ("no CSRF token", Api { csrf: None, ..owner.clone() }),
        ("a wrong CSRF token", Api { csrf: Some("0".repeat(64)), ..owner.clone() }),
        ("another session's CSRF token", Api { csrf: bot_admin.csrf.clone(), ..owner.clone() }),
        ("a read-only key", Api { key: Some(read_only), ..Api::default() }),
    ];
    let mut cells = 0;
    for op in OPERATIONS.iter().filter(|op| op.access != Access::Public) {
        let (path, body) = alpha_request(op, ann.id, broadcast, &key_id);
        let what = format!("{} {}", op.method.to_uppercase(), op.path);
        for (who, api) in &unauthenticated {
            let (status, answer) = admin.call(api, op.method, &path, body.clone()).await;
            assert_eq!(status, 401, "{what} with {who}: {answer}");
            assert_eq!(answer["error"]["code"], "unauthorized", "{what} with {who}: a JSON error");
            cells += 1;
        }
        if op.method != "get" {
            for (who, api) in &forbidden_writes {
                let (status, answer) = admin.call(api, op.method, &path, body.clone()).await;
                assert_eq!(status, 403, "{what} with {who}: {answer}");
                cells += 1;
            }
        }
        if let Some(expected) = bot_admin_on_alpha(op.method, op.path) {
            let (status, answer) = admin.call(&bot_admin, op.method, &path, body.clone()).await;
            assert_eq!(status, expected, "{what} by beta's bot admin on alpha: {answer}");
            if status == 200 {
                let text = answer.to_string();
                assert!(
                    !text.contains("default/alpha") && !text.contains("charge-alpha"),
                    "{what} shows beta's admin nothing of alpha: {text}"
                );
            }
            cells += 1;
        }
    }
    assert!(cells > 150, "{cells} cells");
    println!("{cells} cells of the permission matrix refused");
    // Nothing of the above changed anything: no new audit row but the reads', Ann not banned,
    // the broadcast running, the keys as they were, the payment not refunded.
    let rows = admin.sql.audit_log(None, 10_000).await.unwrap();
    let new: Vec<_> = rows
        .iter()
        .take(rows.len() - before)
        .filter(|r| !["view_user", "api_key_use", "api_key_refused", "export_payments"].contains(&r.action.as_str()))
        .collect();
    assert!(new.is_empty(), "refused requests changed nothing: {new:?}");
    let person = admin.sql.person_view(ann.id).await.unwrap().unwrap();
    assert_eq!((person.restricted_until_ms, person.members[0].bot_ban_until_ms, person.members[0].credits), (None, None, 0));
    assert_eq!(admin.sql.broadcast(broadcast).await.unwrap().unwrap().status, "running");
    assert_eq!(admin.sql.api_keys().await.unwrap().iter().filter(|k| k.revoked_ms.is_none()).count(), 2);

    // The same requests from the fleet admin, with the token: they work.
    let mut writes: Vec<_> = OPERATIONS.iter().filter(|op| op.access != Access::Public && op.method != "get").collect();
    writes.sort_by_key(|op| op.path == "/api/v1/logout");
    for op in writes {
        let (path, body) = alpha_request(op, ann.id, broadcast, &key_id);
        let (status, answer) = admin.call(&owner, op.method, &path, body).await;
        assert!((200..300).contains(&status), "{} {} by the fleet admin: {status} {answer}", op.method, op.path);
    }
    h.stop().await;
}
