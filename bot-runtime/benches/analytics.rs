//! The admin role's analytics on 1M people (docs/ADMIN.md, "Analytics"): how long the rollups'
//! first refresh (everything) takes, how long an incremental one takes after a minute's worth
//! of new records, and how long the analytics answer takes to assemble from the rollups.
//!
//! `cargo bench -p bot-runtime --bench analytics` — needs Postgres (DATABASE_URL). BENCH_PEOPLE
//! (default 1,000,000) members on BENCH_BOTS (default 20) bots, signed up over the last 180
//! days: 80 % complete the profile, 60 % search, 40 % chat, 5 % buy (one payment each, half
//! under a campaign); 30 % are active on day 1, 15 % on day 7, 8 % on day 30, and everyone on a
//! few other days. Then BENCH_NEW (default 2,000) new funnel events and activity days "this
//! minute", and the incremental refresh.
//!
//! Seeding uses `generate_series` in Postgres (minutes); the timings are of the refresh and
//! read only. Postgres runs on the same 2 cores.

#[path = "common/mod.rs"]
mod common;
use common::env_or;

use std::time::Instant;

use bot_runtime::store::sql::SqlStore;
use botfleet_tests::fixtures::TestDb;

fn main() {
    let people = env_or("BENCH_PEOPLE", 1_000_000) as i64;
    let bots = env_or("BENCH_BOTS", 20) as i64;
    let fresh = env_or("BENCH_NEW", 2_000) as i64;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run(people, bots, fresh));
}

async fn exec(sql: &SqlStore, q: String) {
    sqlx::query(sqlx::AssertSqlSafe(q)).execute(sql.pool()).await.expect("seed statement");
}

async fn run(people: i64, bots: i64, fresh: i64) {
    let db = TestDb::create().await.expect("Postgres (DATABASE_URL)");
    let sql = SqlStore::connect_sized(&db.url, 4).await.expect("connect");
    sql.migrate().await.expect("migrate");
    const DAY: i64 = 86_400_000;
    let now = bot_runtime::bot::now_ms();
    let today = now / DAY;
    let seeding = Instant::now();
    // Member i: bot i % bots, user 1e9 + i, signed up on day today - 1 - (i % 179) (179 is prime
    // to the bot count: every bot has members every day), hour i % 23.
    let start = format!(
        "SELECT 'ns/bot' || (i % {bots}), 1000000000 + i, ((({today} - 1 - (i % 179)) * {DAY}) + (i % 23) * 3600000) AS at FROM generate_series(0::bigint, {people} - 1) i"
    );
    exec(
        &sql,
        format!(
            "INSERT INTO analytics_events (bot, user_id, kind, ref, at_ms) SELECT bot, u, 'start', '', at FROM ({start}) s(bot, u, at)"
        ),
    )
    .await;
    for (kind, percent) in [("profile_done", 80), ("first_search", 60), ("first_chat", 40)] {
        exec(
            &sql,
            format!(
                "INSERT INTO analytics_events (bot, user_id, kind, ref, at_ms) SELECT bot, u, '{kind}', '', at + 60000 \
                 FROM ({start}) s(bot, u, at) WHERE (u % 100) < {percent}"
            ),
        )
        .await;
    }
    exec(
        &sql,
        format!(
            "INSERT INTO quotes (id, bot, user_id, plan_id, price_stars, base_stars, campaign_id, vip_days, lock_credits, created_ms, expires_ms, used_ms) \
             SELECT 'q' || u, bot, u, CASE WHEN u % 2 = 0 THEN 'week' ELSE 'month' END, 100, 100, CASE WHEN u % 4 < 2 THEN 'spring' END, 7, 0, at, at, at \
             FROM ({start}) s(bot, u, at) WHERE (u % 100) >= 95"
        ),
    )
    .await;
    exec(
        &sql,
        format!(
            "INSERT INTO payments (telegram_payment_charge_id, bot, user_id, quote_id, plan_id, stars, vip_days, lock_credits, created_ms) \
             SELECT 'c' || u, bot, u, 'q' || u, CASE WHEN u % 2 = 0 THEN 'week' ELSE 'month' END, 100, 7, 0, at + 120000 \
             FROM ({start}) s(bot, u, at) WHERE (u % 100) >= 95"
        ),
    )
    .await;
    exec(
        &sql,
        format!(
            "INSERT INTO analytics_events (bot, user_id, kind, ref, at_ms) SELECT bot, u, 'purchase', 'c' || u, at + 120000 \
             FROM ({start}) s(bot, u, at) WHERE (u % 100) >= 95"
        ),
    )
    .await;
    // Activity: day 1 (30 %), 7 (15 %), 30 (8 %), and two other days for everyone.
    for (offset, percent) in [(1, 30), (7, 15), (30, 8), (2, 100), (3, 100)] {
        exec(
            &sql,
            format!(
                "INSERT INTO activity_days (bot, user_id, day, at_ms) SELECT bot, u, at / {DAY} + {offset}, (at / {DAY} + {offset}) * {DAY} \
                 FROM ({start}) s(bot, u, at) WHERE ((u * 7) % 100) < {percent} AND at / {DAY} + {offset} <= {today} ON CONFLICT DO NOTHING"
            ),
        )
        .await;
    }
    exec(&sql, "ANALYZE".into()).await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM analytics_events").fetch_one(sql.pool()).await.unwrap();
    let days: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM activity_days").fetch_one(sql.pool()).await.unwrap();
    println!(
        "seeded {people} members on {bots} bots: {rows} funnel events, {days} activity days ({:.0} s)",
        seeding.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let first = sql.refresh_rollups(bot_runtime::bot::now_ms()).await.expect("first refresh");
    println!(
        "first refresh (everything): {:.1} s, {} cohorts, {} revenue days",
        t.elapsed().as_secs_f64(),
        first.cohorts,
        first.revenue_days
    );

    // A minute of new records: new members starting, old members' steps, activity today.
    let now = bot_runtime::bot::now_ms();
    exec(
        &sql,
        format!(
            "INSERT INTO analytics_events (bot, user_id, kind, ref, at_ms) SELECT 'ns/bot' || (i % {bots}), 2000000000 + i, 'start', '', {now} \
             FROM generate_series(0::bigint, {fresh} / 2 - 1) i"
        ),
    )
    .await;
    exec(
        &sql,
        format!(
            "INSERT INTO analytics_events (bot, user_id, kind, ref, at_ms) SELECT 'ns/bot' || (i % {bots}), 1000000000 + i, 'first_chat', '', {now} \
             FROM generate_series(0::bigint, {fresh} / 2 - 1) i WHERE ((1000000000 + i) % 100) >= 40 ON CONFLICT DO NOTHING"
        ),
    )
    .await;
    exec(
        &sql,
        format!(
            "INSERT INTO activity_days (bot, user_id, day, at_ms) SELECT 'ns/bot' || (i % {bots}), 1000000000 + i, {today}, {now} \
             FROM generate_series(0::bigint, {fresh} - 1) i ON CONFLICT DO NOTHING"
        ),
    )
    .await;
    let mut incremental = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let stats = sql.refresh_rollups(bot_runtime::bot::now_ms() + 61_000).await.expect("incremental refresh");
        incremental.push((t.elapsed().as_secs_f64() * 1000.0, stats.cohorts, stats.revenue_days));
    }
    println!(
        "incremental refresh after {fresh} new records: {:.0} ms ({} cohorts, {} revenue days); with nothing new: {:.0} ms, {:.0} ms",
        incremental[0].0, incremental[0].1, incremental[0].2, incremental[1].0, incremental[2].0
    );
    let mut reads = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let from = today - 12 * 7;
        let cohorts = sql.cohorts_since(from).await.expect("cohorts");
        let revenue = sql.revenue_rows_since(from).await.expect("revenue");
        let _ = sql.mismatches_since(from * DAY, 100).await.expect("mismatches");
        assert!(!cohorts.is_empty() && !revenue.is_empty());
        reads.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    reads.sort_by(f64::total_cmp);
    println!("reading 12 weeks of rollups (cohorts, revenue, mismatches): p50 {:.1} ms, p95 {:.1} ms", reads[10], reads[18]);
    drop(sql);
    db.drop_db().await.ok();
}
