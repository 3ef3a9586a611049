//! One runtime replica under load: the real `bot-runtime serve` binary (a child process) on
//! Postgres + Redis, fed by webhook like Telegram feeds it, sending to the fake Telegram.
//!
//! `cargo bench -p bot-runtime --bench relay` — needs Postgres (DATABASE_URL) and Redis
//! (REDIS_URL). It seeds BENCH_USERS registered users (default 50,000) and BENCH_CHATS live
//! chats (default 10,000), then measures:
//!
//! 1. processing latency at a fixed offered load (BENCH_RATE updates/s, default 2,000, for
//!    BENCH_SECONDS, default 10): open loop, each update timed from its scheduled send to the
//!    runtime's 200 (= its effects are durable), so queueing counts;
//! 2. relay throughput: as many chat messages as BENCH_CONCURRENCY (default 128) clients can
//!    push for BENCH_SECONDS — updates/s made durable (relay jobs in the outbox);
//! 3. egress: the outbox draining to the fake Telegram (flood limits off, the bot's outbound
//!    limit raised), sends/s;
//! 4. the replica's RSS (VmRSS now, VmHWM peak) after seeding, after each phase.
//!
//! The load generator and the fake Telegram run in this process, on the same 2 cores as the
//! runtime: the numbers are a floor, not a ceiling.

#[path = "common/mod.rs"]
mod common;
use common::{Serve, cpu_seconds, env_or, pct_ms, rss_kib};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use botfleet_tests::fake_telegram::{FakeTelegram, Limits};
use botfleet_tests::fixtures::{TestDb, TestRedis, redis_url};
use serde_json::{Value, json};

const BOT: &str = "alpha";
const POOL: &str = "bench-pool";
const SECRET: &str = "bench_secret_value";

fn main() {
    let users = env_or("BENCH_USERS", 50_000) as i64;
    let chats = env_or("BENCH_CHATS", 10_000) as i64;
    let rate = env_or("BENCH_RATE", 2_000);
    let seconds = env_or("BENCH_SECONDS", 10);
    let concurrency = env_or("BENCH_CONCURRENCY", 128) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run(users, chats.min(users / 2), rate, seconds, concurrency));
}

async fn run(users: i64, chats: i64, rate: u64, seconds: u64, concurrency: usize) {
    let fake = FakeTelegram::start().await.expect("fake Telegram");
    let sim = fake.sim();
    sim.set_limits(Limits { enabled: false, ..Limits::default() }).expect("limits off");
    let info = sim.register_bot("alpha_bot").expect("bot");
    let db = TestDb::create().await.expect("Postgres");
    let redis = TestRedis::create().await.expect("Redis");
    let dir = std::env::temp_dir().join(format!("botfleet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("token"), &info.token).expect("token file");
    std::fs::write(dir.join("secret"), SECRET).expect("secret file");
    let config = format!(
        "version: 1\nbot:\n  name: {BOT}\n  namespace: bench\n  pool: {POOL}\n  ingress: {{mode: Webhook, publicUrl: 'https://bench.invalid', maxConnections: 100}}\n  features: {{}}\n  requiredChannels: []\n  admins: {{telegramIds: []}}\n  moderation: {{}}\n  locale: {{}}\n  matching: {{}}\n  lockChat: {{}}\n  referrals: {{}}\n  secrets: {{tokenFile: '{}', webhookSecretFile: '{}'}}\nplans: []\ncampaigns: []\nlimits:\n  perUser: {{messagesPerSecond: 1000, burst: 1000}}\n  onExceed: DropSilently\n  adminApiPerMinute: {{}}\n  outbound: {{perBotPerSecond: 100000, perChatPerMinute: 100000}}\n",
        dir.join("token").display(),
        dir.join("secret").display()
    );
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let serve = Serve::start(&dir, &config, &db.url, &redis_url(), &redis.prefix, &fake.api_url(), port).await;
    let mut child = serve.child;
    let pid = child.id();
    let base = serve.base;
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().expect("client");
    let (idle, _) = rss_kib(pid);

    // Seed: registered users, and live chats between the first 2*chats of them.
    let t = Instant::now();
    let live = common::seed_chats(&db.pool, redis.conn.clone(), &redis.prefix, &sim, POOL, users, chats).await;
    println!("seeded {users} users and {live} live chats in {:.1} s", t.elapsed().as_secs_f64());
    let (seeded, _) = rss_kib(pid);

    let total = (rate * seconds) as usize;
    let updates = make_updates(&sim, "alpha_bot", chats, total + 100_000);
    println!("prepared {} updates", updates.len());

    // 1. Fixed offered load, open loop.
    let url = format!("{base}/telegram/{BOT}");
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let t0 = tokio::time::Instant::now();
    let mut handles = Vec::with_capacity(total);
    for (k, body) in updates.iter().take(total).enumerate() {
        let due = t0 + gap * k as u32;
        tokio::time::sleep_until(due).await;
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        handles.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .header("x-telegram-bot-api-secret-token", SECRET)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let ok = matches!(&r, Ok(r) if r.status().is_success());
            (due.elapsed().as_micros() as u64, ok)
        }));
    }
    let mut lat = Vec::with_capacity(total);
    let mut failed = 0;
    for h in handles {
        if let Ok((us, ok)) = h.await {
            lat.push(us);
            failed += usize::from(!ok);
        }
    }
    let offered_for = t0.elapsed();
    lat.sort_unstable();
    let (after_fixed, _) = rss_kib(pid);
    println!(
        "fixed load {rate}/s for {seconds} s: {} updates in {:.1} s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {failed} not 200",
        lat.len(),
        offered_for.as_secs_f64(),
        pct_ms(&lat, 0.5),
        pct_ms(&lat, 0.99),
        pct_ms(&lat, 1.0)
    );

    // 2. Saturation, closed loop.
    let next = Arc::new(AtomicU64::new(total as u64));
    let done = Arc::new(AtomicU64::new(0));
    let updates = Arc::new(updates);
    let sat_start = Instant::now();
    let cpu_before = cpu_seconds(pid);
    let deadline = sat_start + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, url, next, done, updates) = (http.clone(), url.clone(), next.clone(), done.clone(), updates.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(body) = updates.get(k) else { break };
                    let r = http
                        .post(&url)
                        .header("x-telegram-bot-api-secret-token", SECRET)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    if matches!(r, Ok(r) if r.status().is_success()) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let sat = sat_start.elapsed().as_secs_f64();
    let handled = done.load(Ordering::Relaxed);
    let cpu = cpu_seconds(pid) - cpu_before;
    let (after_sat, _) = rss_kib(pid);
    println!(
        "saturation ({concurrency} clients): {handled} relayed updates made durable in {sat:.1} s = {:.0}/s; the runtime used {cpu:.1} CPU-s ({:.2} cores) = {:.0} updates per CPU-second (its egress included)",
        handled as f64 / sat,
        cpu / sat,
        handled as f64 / cpu.max(0.001)
    );

    // 3. Egress: wait for the outbox to drain.
    let sent_before = copies(&sim);
    let drain_start = Instant::now();
    let target = lat.len() as u64 + handled;
    let mut last = sent_before;
    while copies(&sim) < target && drain_start.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = copies(&sim);
        if now == last && drain_start.elapsed() > Duration::from_secs(10) {
            break;
        }
        last = now;
    }
    let sent = copies(&sim);
    println!(
        "egress: {sent} of {target} relayed messages delivered; drained {} in {:.1} s after the load ({:.0}/s overall since start of load)",
        sent - sent_before,
        drain_start.elapsed().as_secs_f64(),
        sent as f64 / (offered_for.as_secs_f64() + sat + drain_start.elapsed().as_secs_f64())
    );
    let (end, peak) = rss_kib(pid);
    println!(
        "RSS of the replica: idle {:.1} MiB, seeded {:.1} MiB, after fixed load {:.1} MiB, after saturation {:.1} MiB, end {:.1} MiB, peak {:.1} MiB",
        idle as f64 / 1024.0,
        seeded as f64 / 1024.0,
        after_fixed as f64 / 1024.0,
        after_sat as f64 / 1024.0,
        end as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = db.drop_db().await;
    fake.stop().await;
}

fn copies(sim: &botfleet_tests::fake_telegram::Sim) -> u64 {
    sim.stats().calls.get("copyMessage").copied().unwrap_or(0)
}

/// Chat messages from the chatting users (user u is paired with u±1), as webhook bodies.
fn make_updates(sim: &botfleet_tests::fake_telegram::Sim, bot: &str, chats: i64, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let user = (k as i64 % (2 * chats)) + 1;
        let message: Value = sim.send_text(bot, user, &format!("bench message {k}"), None).expect("sim send");
        out.push(json!({"update_id": 1_000_000 + k as i64, "message": message}).to_string());
    }
    out
}
