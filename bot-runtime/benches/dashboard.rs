//! The admin dashboard's pages on 1M people (docs/ADMIN.md; docs/BENCHMARKS.md, "Admin: the
//! dashboard on 1M people"): how long the overview page, its JSON (what the page's script
//! fetches every 10 s), the moderation page and a user's page take, end to end over HTTP with
//! a session, against a real admin server on Postgres and Redis.
//!
//! `cargo bench -p bot-runtime --bench dashboard` — needs Postgres (DATABASE_URL) and Redis
//! (REDIS_URL). BENCH_PEOPLE (default 1,000,000) members on BENCH_BOTS (default 20) bots,
//! signed up over the last 180 days, one person each; 5 % bought once in the last 30 days;
//! BENCH_CHATS (default 200,000) ended chats, each side rating the other (1 in 10 a 👎);
//! 10,000 open reports; 100,000 blocks. BENCH_ROUNDS (default 20) requests per page.
//! BENCH_VACUUM (default 1): VACUUM ANALYZE after seeding, as autovacuum would; 0: ANALYZE only.
//!
//! Seeding uses `generate_series` in Postgres (minutes); the timings are of the requests only.
//! Postgres, Redis, the server and this client share the same 2 cores.

#[path = "common/mod.rs"]
mod common;
use common::env_or;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bot_runtime::admin::{AdminSettings, AdminState, FleetZone, SessionSecret};
use bot_runtime::metrics::Metrics;
use bot_runtime::store::admin::AdminStore;
use bot_runtime::store::sql::SqlStore;
use botfleet_tests::fixtures::{TestDb, TestRedis};

fn main() {
    let people = env_or("BENCH_PEOPLE", 1_000_000) as i64;
    let bots = env_or("BENCH_BOTS", 20) as i64;
    let chats = env_or("BENCH_CHATS", 200_000) as i64;
    let rounds = env_or("BENCH_ROUNDS", 20) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run(people, bots, chats, rounds));
}

async fn exec(sql: &SqlStore, q: String) {
    sqlx::query(sqlx::AssertSqlSafe(q)).execute(sql.pool()).await.expect("seed statement");
}

async fn run(people: i64, bots: i64, chats: i64, rounds: usize) {
    let db = TestDb::create().await.expect("Postgres (DATABASE_URL)");
    let redis = TestRedis::create().await.expect("Redis (REDIS_URL)");
    let (fleet, sql) =
        bot_runtime::roles::app::production_fleet_and_sql(&db.url, 5, &redis.url, &redis.prefix, Metrics::new()).await.expect("fleet");
    const DAY: i64 = 86_400_000;
    let now = bot_runtime::bot::now_ms();
    let seeding = Instant::now();
    // Member i: bot i % bots, user 1e9 + i, signed up (i % 180) days ago.
    let member = format!(
        "SELECT 'ns/bot' || (i % {bots}) AS bot, 1000000000 + i AS u, {now} - (i % 180) * {DAY} - (i % 23) * 3600000 AS at \
         FROM generate_series(0::bigint, {people} - 1) i"
    );
    exec(
        &sql,
        format!(
            "INSERT INTO users (bot, user_id, language, stage, gender, age, vip_until_ms, reachable, created_ms, updated_ms, username, active_day) \
             SELECT bot, u, 'en', 'ready', CASE WHEN u % 2 = 0 THEN 'f' ELSE 'm' END, 18 + u % 40, \
             CASE WHEN u % 20 = 0 THEN {now} + 7 * {DAY} END, 1, at, at, 'user' || u, at / {DAY} FROM ({member}) m"
        ),
    )
    .await;
    exec(&sql, format!("INSERT INTO persons (user_id, first_seen_ms, updated_ms) SELECT u, at, at FROM ({member}) m")).await;
    exec(
        &sql,
        format!(
            "INSERT INTO payments (telegram_payment_charge_id, bot, user_id, plan_id, stars, vip_days, lock_credits, created_ms) \
             SELECT 'c' || u, bot, u, CASE WHEN u % 2 = 0 THEN 'week' ELSE 'month' END, 100, 7, 0, {now} - (u % 30) * {DAY} - (u % 1000) * 60000 \
             FROM ({member}) m WHERE u % 20 = 0"
        ),
    )
    .await;
    for b in 0..bots {
        exec(
            &sql,
            format!(
                "INSERT INTO admin_bots (id, namespace, name, pool, admins, config, config_hash, registered_ms, updated_ms, star_balance, star_balance_ms) \
                 VALUES ('ns/bot{b}', 'ns', 'bot{b}', 'ns/pool', '[]', '{{}}', 'h', {now}, {now}, 1000, {now})"
            ),
        )
        .await;
    }
    // Chats between member i and i + 1, ended; both sides rate (every 10th a 👎).
    exec(
        &sql,
        format!(
            "INSERT INTO chat_sessions (a_bot, a_user, b_bot, b_user, started_ms, ended_ms, end_reason) \
             SELECT 'ns/bot' || (i % {bots}), 1000000000 + i, 'ns/bot' || ((i + 1) % {bots}), 1000000000 + i + 1, \
             {now} - (i % 29) * {DAY}, {now} - (i % 29) * {DAY} + 60000, 'stop' FROM generate_series(0::bigint, {chats} - 1) i"
        ),
    )
    .await;
    exec(
        &sql,
        "INSERT INTO ratings (session_id, rater_bot, rater_user, rated_bot, rated_user, up, created_ms) \
         SELECT id, a_bot, a_user, b_bot, b_user, CASE WHEN id % 10 = 0 THEN 0 ELSE 1 END, ended_ms FROM chat_sessions \
         UNION ALL SELECT id, b_bot, b_user, a_bot, a_user, CASE WHEN id % 10 = 5 THEN 0 ELSE 1 END, ended_ms FROM chat_sessions"
            .into(),
    )
    .await;
    exec(
        &sql,
        format!(
            "INSERT INTO reports (by_bot, by_user, other_bot, other_user, session_id, reason, created_ms) \
             SELECT b_bot, b_user, a_bot, a_user, id, 'spam', ended_ms FROM chat_sessions WHERE id % {} = 0",
            (chats / 10_000).max(1)
        ),
    )
    .await;
    exec(
        &sql,
        format!(
            "INSERT INTO blocks (by_bot, by_user, other_bot, other_user, created_ms) \
             SELECT 'ns/bot' || (i % {bots}), 1000000000 + i, 'ns/bot' || ((i * 7) % {bots}), 1000000000 + (i * 7) % 1000, {now} \
             FROM generate_series(0::bigint, 99999) i ON CONFLICT DO NOTHING"
        ),
    )
    .await;
    // The steady state: autovacuum (PostgreSQL 13+ vacuums insert-only tables too) has set the
    // visibility map, so the overview's index ranges are index-only scans. BENCH_VACUUM=0:
    // ANALYZE only (right after a bulk load, before autovacuum came by).
    if env_or("BENCH_VACUUM", 1) == 1 {
        exec(&sql, "VACUUM ANALYZE".into()).await;
    } else {
        exec(&sql, "ANALYZE".into()).await;
    }
    println!("seeded {people} members on {bots} bots, {chats} chats with ratings ({:.0} s)", seeding.elapsed().as_secs_f64());

    let secret = SessionSecret::new(b"the dashboard bench's session secret, 32+ bytes".to_vec()).expect("secret");
    let admin_id = 42;
    let token = "b".repeat(64);
    sql.create_session(&secret.tag("session", &token), admin_id, now, now + DAY).await.expect("session");
    let settings = AdminSettings {
        fleet_admins: vec![admin_id],
        trusted_proxies: vec![],
        secure_cookies: false,
        secret,
        api_key_per_minute: 100_000,
        api_per_minute: 100_000,
        broadcast_queue: bot_runtime::admin::DEFAULT_BROADCAST_QUEUE,
        broadcast_tick: bot_runtime::admin::DEFAULT_BROADCAST_TICK,
        analytics_max_age: Duration::from_secs(3600),
        thumbs_down_to_review: bot_runtime::admin::DEFAULT_THUMBS_DOWN_TO_REVIEW,
        time_zone: FleetZone::parse("Europe/Berlin").expect("zone"),
    };
    let state = AdminState::new(fleet, Arc::new(sql.clone()), settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let served = tokio::spawn(bot_runtime::admin::serve(listener, state, shutdown));
    let http = reqwest::Client::new();
    let cookie = format!("botfleet_admin={token}");
    println!("| page | p50 | p95 | max |");
    println!("|---|---|---|---|");
    for (name, path) in [
        ("overview page `/`", "/".to_string()),
        ("overview JSON `/api/v1/overview` (the page's 10 s refresh)", "/api/v1/overview".to_string()),
        ("moderation page `/moderation`", "/moderation".to_string()),
        ("a user's page `/users/{id}`", "/users/1000000020".to_string()),
    ] {
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = Instant::now();
            let resp = http.get(format!("http://{addr}{path}")).header("cookie", &cookie).send().await.expect("request");
            let status = resp.status();
            let body = resp.text().await.expect("body");
            assert!(status.is_success(), "{path}: {status} {}", &body[..body.len().min(300)]);
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).saturating_sub(1).min(times.len() - 1)];
        println!("| {name} | {:.0} ms | {:.0} ms | {:.0} ms |", at(0.5), at(0.95), times[times.len() - 1]);
    }
    let _ = stop.send(true);
    let _ = served.await;
    drop(sql);
    db.drop_db().await.ok();
    redis.cleanup().await.ok();
}
