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
    // BENCH_CALLGRIND=N: the runtime runs under valgrind's callgrind, collecting only while N
    // relayed updates are handled and delivered; instructions per update, then nothing else.
    let callgrind = env_or("BENCH_CALLGRIND", 0);
    let profile = dir.join("callgrind.out");
    let wrapper: Vec<String> = if callgrind > 0 {
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=no"]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("--callgrind-out-file={}", profile.display())])
            .collect()
    } else {
        Vec::new()
    };
    let serve = Serve::start_under(&wrapper, &dir, &config, &db.url, &redis_url(), &redis.prefix, &fake.api_url(), port).await;
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

    if callgrind > 0 {
        let url = format!("{base}/telegram/{BOT}");
        // Every sender writes once before counting starts (their first message of the day
        // records their activity in Postgres: once a day, not per message).
        let warm = 2 * chats as usize + 200;
        let updates = make_updates(&sim, "alpha_bot", chats, callgrind as usize + warm);
        instructions(&http, &url, &sim, updates, warm, pid, &profile).await;
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        let _ = db.drop_db().await;
        fake.stop().await;
        return;
    }
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
                    if deliver(&http, &url, body).await {
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

/// Posts one update as Telegram does; true when the runtime took it (200).
async fn deliver(http: &reqwest::Client, url: &str, body: &str) -> bool {
    let r = http
        .post(url)
        .header("x-telegram-bot-api-secret-token", SECRET)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await;
    matches!(r, Ok(r) if r.status().is_success())
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

/// Instructions the runtime executes per relayed update, handled and delivered (callgrind's
/// `Ir`): `warm` updates warm it up uncounted, then collection is switched on for the rest (sent
/// by 8 clients) until the fake has every copy, and off. The 25 costliest functions (inclusive)
/// are printed from `callgrind_annotate`.
async fn instructions(
    http: &reqwest::Client,
    url: &str,
    sim: &botfleet_tests::fake_telegram::Sim,
    updates: Vec<String>,
    warm: usize,
    pid: u32,
    profile: &std::path::Path,
) {
    let control = |args: &[&str]| {
        let out = std::process::Command::new("callgrind_control").args(args).arg(pid.to_string()).output().expect("callgrind_control");
        assert!(out.status.success(), "callgrind_control {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let (warm, counted) = updates.split_at(warm.min(updates.len()));
    let send_all = |bodies: Vec<String>| async move {
        let queue = Arc::new(std::sync::Mutex::new(bodies.into_iter()));
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (http, url, queue) = (http.clone(), url.to_string(), queue.clone());
                tokio::spawn(async move {
                    loop {
                        let Some(body) = queue.lock().expect("queue").next() else { break };
                        loop {
                            if deliver(&http, &url, &body).await {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.await;
        }
    };
    let drained = |target: u64| async move {
        let started = Instant::now();
        while copies(sim) < target && started.elapsed() < Duration::from_secs(1_800) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        copies(sim)
    };
    send_all(warm.to_vec()).await;
    let base = drained(warm.len() as u64).await;
    control(&["--instr=on"]);
    let t = Instant::now();
    send_all(counted.to_vec()).await;
    let delivered = drained(base + counted.len() as u64).await - base;
    control(&["--instr=off"]);
    control(&["--dump"]);
    let elapsed = t.elapsed().as_secs_f64();
    // Every dump (the one asked for, and the final one at exit) is a file of its own.
    let dir = profile.parent().expect("profile dir");
    let mut ir: u64 = 0;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("profiles").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("callgrind.out") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let n = self_cost(&text);
        if n > 0 {
            ir += n;
            files.push(entry.path());
        }
    }
    println!(
        "callgrind: {} relayed updates handled and {delivered} copies delivered in {elapsed:.0} s under valgrind: {:.2} G instructions = {:.0} instructions per relayed update",
        counted.len(),
        ir as f64 / 1e9,
        ir as f64 / counted.len().max(1) as f64
    );
    if let Some(file) = files.first() {
        let keep = std::env::temp_dir().join("botfleet-callgrind.out");
        let _ = std::fs::copy(file, &keep);
        let out = std::process::Command::new("callgrind_annotate").args(["--inclusive=yes", "--threshold=100"]).arg(file).output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout);
            println!("top functions (inclusive; the whole profile is kept at {}):", keep.display());
            for line in text.lines().skip_while(|l| !l.contains("file:function")).skip(1).filter(|l| !l.trim().is_empty()).take(40) {
                println!("  {line}");
            }
        }
    }
}

/// The instructions a callgrind profile counted: the sum of its self-cost lines (a cost line
/// right after `calls=` is the call's inclusive cost, not counted again). Its `summary:` line
/// is not used: callgrind writes it wrapped below zero when instrumentation was switched on
/// mid-run.
fn self_cost(profile: &str) -> u64 {
    let mut total = 0u64;
    let mut after_calls = false;
    for line in profile.lines() {
        if line.starts_with("calls=") {
            after_calls = true;
            continue;
        }
        let first = line.chars().next().unwrap_or(' ');
        if first.is_ascii_digit() || first == '+' || first == '-' || first == '*' {
            if !after_calls {
                total += line.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
            }
        }
        after_calls = false;
    }
    total
}
