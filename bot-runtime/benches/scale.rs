//! Scale (SPEC §6; issue 9, "Scale"): 20 bots × 50,000 users — 1M people — on one Postgres and
//! one Redis. What each store holds per person, how a search and the hot path's user lookup
//! behave at that size, and what 20 running bots cost.
//!
//! ```sh
//! cargo bench -p bot-runtime --bench scale
//! # knobs: BENCH_BOTS=20 BENCH_USERS_PER_BOT=50000 BENCH_CHATTING_PCT=5 BENCH_WAITING_PCT=2
//! #        BENCH_SEARCHES=10000 BENCH_CONCURRENCY=64 BENCH_LOOKUPS=20000 BENCH_IDLE_SECS=10
//! #        (DATABASE_URL; Redis is the bench's own, AOF on, noeviction)
//! ```
//!
//! 1. **Postgres**: 1M member rows (and their `persons` rows, 5 chats and 0.1 blocks each on
//!    average, 3 funnel events each), written with set-based SQL; bytes per person (tables and
//!    indexes), and the hot path's point lookup of a member (`Store::user`, as every update
//!    does) from 16 tasks: p50 / p99.
//! 2. **Redis**: of the 1M, BENCH_CHATTING_PCT % are in chats and BENCH_WAITING_PCT % wait in
//!    the queue (everyone else costs Redis nothing: a member is in Redis only while searching
//!    or chatting); all 20 bots share one pool, as the product does. Bytes per chatting and per
//!    waiting person (`used_memory`), then time to match: BENCH_SEARCHES searches, 64 at a
//!    time, each finding one of the waiting at once, p50 / p99.
//! 3. **20 runtimes**: one `bot-runtime serve` per bot (webhook, idle) on that Postgres and
//!    Redis: RSS each, CPU each over BENCH_IDLE_SECS, Postgres connections and Redis clients
//!    in use.

#[path = "common/mod.rs"]
mod common;
use common::{PrivateRedis, Serve, cpu_seconds, env_or, pct_ms, rss_kib};

use std::sync::Arc;
use std::time::{Duration, Instant};

use bot_runtime::keys::Keys;
use bot_runtime::matching::redis::RedisPool;
use bot_runtime::matching::{Gender, MatchPool, Member, Rules, SearchOutcome, Seeker, Want};
use bot_runtime::store::Users as _;
use botfleet_tests::fake_telegram::FakeTelegram;
use botfleet_tests::fixtures::TestDb;
use futures::StreamExt as _;

const POOL: &str = "bench/scale-pool";

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run());
}

async fn used_memory(redis: &mut redis::aio::ConnectionManager) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query_async(redis).await.expect("INFO");
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

async fn db_bytes(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(db).await.expect("database size")
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

async fn run() {
    let bots = env_or("BENCH_BOTS", 20) as i64;
    let per_bot = env_or("BENCH_USERS_PER_BOT", 50_000) as i64;
    let chatting_pct = env_or("BENCH_CHATTING_PCT", 5) as i64;
    let waiting_pct = env_or("BENCH_WAITING_PCT", 2) as i64;
    let searches = env_or("BENCH_SEARCHES", 10_000) as i64;
    let concurrency = env_or("BENCH_CONCURRENCY", 64) as usize;
    let lookups = env_or("BENCH_LOOKUPS", 20_000) as i64;
    let idle_secs = env_or("BENCH_IDLE_SECS", 10);
    let people = bots * per_bot;

    let dir = std::env::temp_dir().join(format!("botfleet-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let private = PrivateRedis::start(&dir, port).await;
    let mut redis = private.conn.clone();
    let db = TestDb::create().await.expect("Postgres");
    let store = bot_runtime::store::sql::SqlStore::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrations");

    // 1. Postgres: members of every bot (user ids shared across bots a little, as people use
    //    several bots), their persons, chat history, blocks and funnel events.
    let empty = db_bytes(&db.pool).await;
    let t = Instant::now();
    let seed = [
        "INSERT INTO users (bot, user_id, language, stage, gender, age, wants, reachable, created_ms, updated_ms, username, active_day) \
         SELECT 'bench/bot' || b, b * $1 + g, CASE WHEN g % 3 = 0 THEN 'ru' ELSE 'en' END, 'ready', \
                CASE g % 3 WHEN 0 THEN 'f' WHEN 1 THEN 'm' ELSE 'o' END, 18 + g % 50, NULL, 1, \
                1700000000000 + g * 1000, 1700000000000 + g * 1000, 'user' || g, 20000 + g % 60 \
         FROM generate_series(0, $2 - 1) b, generate_series(1, $1) g",
        "INSERT INTO persons (user_id, first_seen_ms, updated_ms) SELECT user_id, MIN(created_ms), MAX(updated_ms) FROM users GROUP BY user_id",
        // Five finished chats per member on average (each row is one chat between two).
        "INSERT INTO chat_sessions (a_bot, a_user, b_bot, b_user, started_ms, ended_ms, end_reason, ended_by_bot, ended_by_user) \
         SELECT 'bench/bot' || (k % $2), (k % $2) * $1 + 1 + (k * 7919) % $1, 'bench/bot' || ((k + 1) % $2), ((k + 1) % $2) * $1 + 1 + (k * 104729) % $1, \
                1700000000000 + k, 1700000060000 + k, 'next', 'bench/bot' || (k % $2), (k % $2) * $1 + 1 + (k * 7919) % $1 \
         FROM generate_series(1, $1 * $2 * 5 / 2) k",
        "INSERT INTO blocks (by_bot, by_user, other_bot, other_user, created_ms) \
         SELECT 'bench/bot' || (k % $2), (k % $2) * $1 + 1 + k % $1, 'bench/bot' || ((k + 3) % $2), ((k + 3) % $2) * $1 + 1 + (k * 31) % $1, 1700000000000 \
         FROM generate_series(1, $1 * $2 / 10) k ON CONFLICT DO NOTHING",
        "INSERT INTO analytics_events (bot, user_id, kind, at_ms) \
         SELECT bot, user_id, kind, created_ms FROM users, unnest(ARRAY['start', 'profile_done', 'first_search']) kind",
        "VACUUM ANALYZE",
    ];
    for sql in seed {
        let q = sqlx::query(sql);
        let q = if sql.contains("$2") {
            q.bind(per_bot).bind(bots)
        } else if sql.contains("$1") {
            q.bind(per_bot)
        } else {
            q
        };
        q.execute(&db.pool).await.unwrap_or_else(|e| panic!("seeding: {e}\n{sql}"));
    }
    let seeded_in = t.elapsed();
    let full = db_bytes(&db.pool).await;
    let tables: Vec<(String, i64)> = sqlx::query_as(
        "SELECT relname::text, pg_total_relation_size(relid) FROM pg_stat_user_tables \
         WHERE relname IN ('users', 'persons', 'chat_sessions', 'blocks', 'analytics_events') ORDER BY 2 DESC",
    )
    .fetch_all(&db.pool)
    .await
    .expect("table sizes");
    println!(
        "Postgres: {people} members of {bots} bots seeded in {:.0} s; database {:.0} MiB → {:.0} bytes per person in all; {}",
        seeded_in.as_secs_f64(),
        mib((full - empty) as f64),
        (full - empty) as f64 / people as f64,
        tables.iter().map(|(t, b)| format!("{t} {:.0} B", *b as f64 / people as f64)).collect::<Vec<_>>().join(", ")
    );
    // The hot path's lookup (every update reads its member), 16 at a time, random members.
    let store = Arc::new(store);
    let t = Instant::now();
    let mut lat: Vec<u64> = futures::stream::iter(0..lookups)
        .map(|k| {
            let store = store.clone();
            async move {
                let b = (k * 7) % bots;
                let user = b * per_bot + 1 + (k * 104_729) % per_bot;
                let started = Instant::now();
                let found = store.user(&format!("bench/bot{b}"), user).await.expect("lookup");
                assert!(found.is_some(), "member {user} of bot {b}");
                started.elapsed().as_micros() as u64
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    lat.sort_unstable();
    println!(
        "member lookup at {people} members: {lookups} in {:.1} s ({:.0}/s, 16 at a time), p50 {:.2} ms, p99 {:.2} ms",
        t.elapsed().as_secs_f64(),
        lookups as f64 / t.elapsed().as_secs_f64(),
        pct_ms(&lat, 0.5),
        pct_ms(&lat, 0.99)
    );

    // 2. Redis: the chatting and the waiting of all bots, in one pool.
    let matcher = Arc::new(RedisPool::new(redis.clone(), Keys::new(String::new())));
    let rules = Rules { recent_window: Duration::ZERO, ..Rules::default() };
    let base = used_memory(&mut redis).await;
    let chatting = people * chatting_pct / 100 / 2 * 2;
    // Pairs: the odd one waits, the even one finds it (one at a time: the pairs are known).
    let member = |k: i64| Member::new(format!("bot{}", k % bots), (k % bots) * per_bot + 1 + k / bots);
    futures::stream::iter(0..chatting / 2)
        .map(|p| {
            let matcher = matcher.clone();
            async move {
                let (a, b) = (2 * p, 2 * p + 1);
                let seek = |k: i64, g: Gender| Seeker {
                    member: member(k),
                    gender: g,
                    want: Want::Only(if g == Gender::Male { Gender::Female } else { Gender::Male }),
                    vip: false,
                };
                // A private pool per pair while matching, so pairs never cross; then moved in.
                let pool = format!("{POOL}-seed-{}", p % 64);
                matcher.search(&pool, &seek(a, Gender::Female), 1, rules).await.expect("search");
                matcher.search(&pool, &seek(b, Gender::Male), 2, rules).await.expect("search");
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    let with_chats = used_memory(&mut redis).await;
    // The waiting: women who want women (nobody below wants them), then men who want women
    // (found at once by the timed searches below: they wait as women who want men).
    let waiting = people * waiting_pct / 100;
    let searchers = searches.min(waiting);
    futures::stream::iter(0..waiting)
        .map(|k| {
            let matcher = matcher.clone();
            async move {
                let m = member(chatting + k);
                let want = if k < searchers { Want::Only(Gender::Male) } else { Want::Only(Gender::Female) };
                let s = Seeker { member: m, gender: Gender::Female, want, vip: false };
                matcher.search(POOL, &s, 3, rules).await.expect("search");
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    let with_waiting = used_memory(&mut redis).await;
    println!(
        "Redis: {chatting} people chatting ({chatting_pct} %) take {:.1} MiB = {:.0} bytes each; {waiting} waiting ({waiting_pct} %) take {:.1} MiB = {:.0} bytes each; the other {} take nothing; used_memory {:.1} MiB in all",
        mib((with_chats - base) as f64),
        (with_chats - base) as f64 / chatting.max(1) as f64,
        mib((with_waiting - with_chats) as f64),
        (with_waiting - with_chats) as f64 / waiting.max(1) as f64,
        people - chatting - waiting,
        mib(with_waiting as f64)
    );
    let t = Instant::now();
    let results: Vec<(u64, bool)> = futures::stream::iter(0..searchers)
        .map(|k| {
            let matcher = matcher.clone();
            async move {
                let s =
                    Seeker { member: member(chatting + waiting + k), gender: Gender::Male, want: Want::Only(Gender::Female), vip: false };
                let started = Instant::now();
                let r = matcher.search(POOL, &s, 4, rules).await;
                (started.elapsed().as_micros() as u64, matches!(r, Ok(SearchOutcome::Matched { .. })))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let took = t.elapsed();
    let matched = results.iter().filter(|(_, m)| *m).count();
    let mut lat: Vec<u64> = results.iter().map(|(l, _)| *l).collect();
    lat.sort_unstable();
    println!(
        "time to match at {people} people ({waiting} waiting, {chatting} chatting): {searchers} searches, {concurrency} at a time, {matched} matched at once, {:.0}/s; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        searchers as f64 / took.as_secs_f64(),
        pct_ms(&lat, 0.5),
        pct_ms(&lat, 0.99),
        pct_ms(&lat, 1.0)
    );

    // 3. One runtime per bot, idle, on these stores.
    let fake = FakeTelegram::start().await.expect("fake Telegram");
    let sim = fake.sim();
    let mut serves = Vec::new();
    for b in 0..bots {
        let bot_dir = dir.join(format!("bot{b}"));
        std::fs::create_dir_all(&bot_dir).expect("bot dir");
        let info = sim.register_bot(&format!("scale{b}_bot")).expect("bot");
        std::fs::write(bot_dir.join("token"), &info.token).expect("token file");
        std::fs::write(bot_dir.join("secret"), "scale-bench-secret-0123456789").expect("secret file");
        let config = common::webhook_config(&format!("bot{b}"), "scale-pool", &bot_dir, 30);
        let port = port + 1 + b as u16;
        serves.push(Serve::start(&bot_dir, &config, &db.url, &private.url, "", &fake.api_url(), port).await);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pids: Vec<u32> = serves.iter().map(|s| s.child.id()).collect();
    let cpu0: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let cpu: Vec<f64> = pids.iter().zip(&cpu0).map(|(p, c)| 100.0 * (cpu_seconds(*p) - c) / idle_secs as f64).collect();
    let rss: Vec<f64> = pids.iter().map(|p| rss_kib(*p).0 as f64 / 1024.0).collect();
    let connections: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        .fetch_one(&db.pool)
        .await
        .expect("pg_stat_activity");
    let info: String = redis::cmd("INFO").arg("clients").query_async(&mut redis).await.expect("INFO clients");
    let clients = info.lines().find_map(|l| l.strip_prefix("connected_clients:")).unwrap_or("?").trim().to_string();
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let max = |v: &[f64]| v.iter().cloned().fold(0.0_f64, f64::max);
    println!(
        "{bots} runtimes, idle, on these stores: RSS {:.1} MiB each on average (max {:.1}), {:.0} MiB in all; CPU {:.2} % of a core each on average (max {:.2}); Postgres connections to the database {connections} (the bench's own included), Redis clients {clients}",
        avg(&rss),
        max(&rss),
        rss.iter().sum::<f64>(),
        avg(&cpu),
        max(&cpu)
    );

    for mut s in serves {
        let _ = s.child.kill();
        let _ = s.child.wait();
    }
    drop(private);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = db.drop_db().await;
    fake.stop().await;
}
