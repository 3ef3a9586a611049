//! What a bot costs (issue 9, "Cost and scale"): the CPU of the runtime **and** of its share
//! of Redis and Postgres, measured on a real `bot-runtime serve` child process.
//!
//! ```sh
//! cargo bench -p bot-runtime --bench cost
//! # knobs: BENCH_IDLE_SECS=60 BENCH_LIMIT_SECS=60 BENCH_LIMIT=30 BENCH_SAT_SECS=10 BENCH_WARM=1
//! #        BENCH_CHATS=1000 BENCH_CONCURRENCY=64 BENCH_OVERLOAD_SECS=60 BENCH_OVERLOAD_RATE
//! #        BENCH_FAULT_SECS=30 (DATABASE_URL; Redis is the bench's own)
//! ```
//!
//! Redis is a private `redis-server` the bench starts (AOF on, noeviction, as production), so
//! its `INFO cpu` counts this runtime's commands and nothing else; its own idle cost (its
//! timer, `hz 10`) is measured before the runtime starts and reported apart. Postgres is the
//! shared server; the CPU of the backends serving the bench's database is read from /proc
//! (its background writers are not counted: they serve every database).
//!
//! Phases:
//! 1. **idle**: one webhook bot, no traffic, for BENCH_IDLE_SECS;
//! 2. **at the limit**: chat messages arrive at BENCH_LIMIT/s (Telegram's default 30/s per bot)
//!    on top of a backlog of 2 s of sends, with the bot's outbound limit at BENCH_LIMIT/s and
//!    the fake Telegram enforcing its flood limits: sends/s delivered, 429s, CPU of all three;
//! 3. **relay efficiency**: BENCH_CONCURRENCY clients push chat messages as fast as they can
//!    for BENCH_SAT_SECS (outbound limit lifted): relayed updates per CPU-second counting the
//!    runtime, Redis and Postgres, with the outbox draining what they queued inside the window;
//! 4. **overload**: 10× the rate phase 3 delivered end to end (BENCH_OVERLOAD_RATE overrides),
//!    open loop for BENCH_OVERLOAD_SECS (60): accepted, refused (503: Telegram keeps those),
//!    lost (accepted, never delivered), the runtime's peak RSS, and how long after the load a
//!    probe chat's latency is back to at most twice what it was before;
//! 5. **a Redis restart**: 100 messages/s while Redis is stopped (SIGTERM) for
//!    BENCH_FAULT_SECS (30) and started again on its AOF; refused updates are offered again
//!    after (as Telegram redelivers); lost, and whether the runtime kept running;
//! 6. **Postgres unreachable**: the same traffic while every connection to Postgres is reset
//!    and new ones refused for BENCH_FAULT_SECS (a TCP hop in front of it: what a restart or
//!    failover looks like to the runtime; the shared server itself is not restarted).
//!
//! The load generator and the fake Telegram share the 2 cores: wall-clock rates are floors;
//! CPU-seconds are each process's own.

#[path = "common/mod.rs"]
mod common;
use common::{PrivateRedis, Serve, TcpCut, cpu_seconds, cpu_split, env_or, rss_kib};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use botfleet_tests::fake_telegram::{FakeTelegram, Limits, Sim};
use botfleet_tests::fixtures::TestDb;
use serde_json::{Value, json};

const BOT: &str = "alpha";
const POOL: &str = "bench-pool";
const SECRET: &str = "bench_secret_value";

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run());
}

/// CPU seconds Redis has used (user + system, main thread and its helpers).
async fn redis_cpu(conn: &mut redis::aio::ConnectionManager) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await.unwrap_or_default();
    info.lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split_once(':').and_then(|(_, v)| v.trim().parse::<f64>().ok()))
        .sum()
}

/// CPU seconds so far of each Postgres backend serving the bench's database, by pid.
async fn postgres_cpu(db: &sqlx::PgPool) -> std::collections::HashMap<i32, f64> {
    let pids: Vec<(i32,)> =
        sqlx::query_as("SELECT pid FROM pg_stat_activity WHERE datname = current_database()").fetch_all(db).await.unwrap_or_default();
    pids.into_iter().map(|(pid,)| (pid, cpu_seconds(pid as u32))).collect()
}

/// What the backends used between two readings (a backend that appeared counts from zero).
fn postgres_used(before: &std::collections::HashMap<i32, f64>, after: &std::collections::HashMap<i32, f64>) -> f64 {
    after.iter().map(|(pid, now)| (now - before.get(pid).copied().unwrap_or(0.0)).max(0.0)).sum()
}

/// CPU of the three over a window.
struct Meter {
    pid: u32,
    at: Instant,
    runtime: f64,
    /// The runtime's CPU in the kernel (syscalls, network) so far.
    runtime_kernel: f64,
    redis: f64,
    pg: std::collections::HashMap<i32, f64>,
}

struct Used {
    secs: f64,
    runtime: f64,
    runtime_kernel: f64,
    redis: f64,
    postgres: f64,
}

impl Used {
    fn total(&self) -> f64 {
        self.runtime + self.redis + self.postgres
    }
    fn pct(&self, cpu: f64) -> f64 {
        100.0 * cpu / self.secs
    }
    fn line(&self, redis_idle_pct: f64) -> String {
        format!(
            "runtime {:.2} % of a core, Redis {:.2} % ({:.2} % of it is Redis's own idle timer), Postgres {:.2} % — {:.2} % in all, over {:.0} s",
            self.pct(self.runtime),
            self.pct(self.redis),
            redis_idle_pct.min(self.pct(self.redis)),
            self.pct(self.postgres),
            self.pct(self.total()),
            self.secs
        )
    }
}

impl Meter {
    async fn start(pid: u32, redis: &mut redis::aio::ConnectionManager, db: &sqlx::PgPool) -> Meter {
        Meter {
            pid,
            at: Instant::now(),
            runtime: cpu_seconds(pid),
            runtime_kernel: cpu_split(pid).1,
            redis: redis_cpu(redis).await,
            pg: postgres_cpu(db).await,
        }
    }
    async fn stop(self, redis: &mut redis::aio::ConnectionManager, db: &sqlx::PgPool) -> Used {
        Used {
            secs: self.at.elapsed().as_secs_f64(),
            runtime: cpu_seconds(self.pid) - self.runtime,
            runtime_kernel: cpu_split(self.pid).1 - self.runtime_kernel,
            redis: redis_cpu(redis).await - self.redis,
            postgres: postgres_used(&self.pg, &postgres_cpu(db).await),
        }
    }
}

/// Chat messages as webhook bodies. Users 1 and 2 are the probe's chat; the load comes from
/// users 3 and up (user u chats with u±1).
struct Feed {
    next: i64,
    chats: i64,
}

impl Feed {
    fn update(&mut self, sim: &Sim, user: i64) -> String {
        let message: Value = sim.send_text("alpha_bot", user, "bench message", None).expect("sim send");
        self.next += 1;
        json!({"update_id": self.next, "message": message}).to_string()
    }
    fn load(&mut self, sim: &Sim, n: usize) -> Vec<String> {
        (0..n).map(|k| self.update(sim, (k as i64 % (2 * self.chats - 2)) + 3)).collect()
    }
}

/// How long one message of the probe's chat takes from its webhook POST to its delivery.
async fn probe(http: &reqwest::Client, url: &str, sim: &Sim, feed: &mut Feed) -> Duration {
    let seen = sim.inbox(2, Some("alpha_bot"), 0).unwrap_or_default().last().map_or(0, |e| e.seq);
    let body = feed.update(sim, 1);
    let t = Instant::now();
    while !post(http, url, body.clone()).await && t.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while sim.inbox(2, Some("alpha_bot"), seen).unwrap_or_default().is_empty() && t.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if t.elapsed() >= Duration::from_secs(120) {
        let to_1: Vec<String> =
            sim.inbox(1, Some("alpha_bot"), 0).unwrap_or_default().iter().rev().take(2).map(|e| format!("{:?}", e.event)).collect();
        println!("(the probe was not delivered in 120 s; user 1 last got: {to_1:?})");
    }
    t.elapsed()
}

/// A sum of the runtime's counters or gauges whose line starts with `prefix` (from /metrics).
async fn metric(http: &reqwest::Client, base: &str, prefix: &str) -> f64 {
    let text = match http.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => return 0.0,
    };
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// Waits until the runtime's outbox and inbound queue are empty (or `limit` passes): how long.
async fn settle(http: &reqwest::Client, base: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    // The depth gauges are refreshed every few seconds: empty twice in a row.
    let mut empty = 0;
    while started.elapsed() < limit && empty < 2 {
        let depth = metric(http, base, "botfleet_outbox_depth{").await + metric(http, base, "botfleet_inbound_queue_depth{").await;
        empty = if depth == 0.0 { empty + 1 } else { 0 };
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    started.elapsed()
}

#[derive(Default)]
struct Offered {
    sent: u64,
    accepted: u64,
    refused: u64,
    failed: u64,
    skipped: u64,
    refused_bodies: Vec<String>,
}

/// Offers the bodies open loop at `rate`/s (at most 1,024 in flight; beyond that, skipped).
async fn offer(http: &reqwest::Client, url: &str, bodies: Vec<String>, rate: u64) -> Offered {
    let slots = Arc::new(tokio::sync::Semaphore::new(1024));
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(bodies.len());
    let mut out = Offered::default();
    for (k, body) in bodies.into_iter().enumerate() {
        tokio::time::sleep_until(t0 + gap * k as u32).await;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            out.skipped += 1;
            continue;
        };
        let (http, url) = (http.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let _slot = slot;
            let r = http
                .post(url)
                .header("x-telegram-bot-api-secret-token", SECRET)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            (r.map(|r| r.status().as_u16()).unwrap_or(0), body)
        }));
    }
    for t in tasks {
        let Ok((status, body)) = t.await else { continue };
        out.sent += 1;
        match status {
            200..=299 => out.accepted += 1,
            503 | 429 => {
                out.refused += 1;
                out.refused_bodies.push(body);
            }
            _ => out.failed += 1,
        }
    }
    out
}

/// Offers each body until it is accepted (Telegram's redelivery); how many were.
async fn offer_until_accepted(http: &reqwest::Client, url: &str, bodies: Vec<String>) -> u64 {
    let mut accepted = 0;
    for body in bodies {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if post(http, url, body.clone()).await {
                accepted += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    accepted
}

/// What a fault phase takes away for a while.
enum Dependency<'a> {
    /// Stopped (SIGTERM: its AOF flushed), then started again on the same files.
    Redis(&'a mut PrivateRedis),
    /// Every connection reset and the port closed, then opened again.
    Postgres(&'a mut TcpCut),
}

impl Dependency<'_> {
    fn take_away(&mut self) {
        match self {
            Dependency::Redis(r) => r.stop(),
            Dependency::Postgres(p) => p.cut(),
        }
    }
    async fn give_back(&mut self) {
        match self {
            Dependency::Redis(r) => r.restart(),
            Dependency::Postgres(p) => p.restore().await,
        }
    }
}

/// The traffic of a fault phase: chat messages at `rate`/s for `fault_secs` + 20 s, the
/// dependency gone from the 10th second for `fault_secs`.
struct Traffic<'a> {
    http: &'a reqwest::Client,
    url: &'a str,
    base: &'a str,
    sim: &'a Sim,
    rate: u64,
    fault_secs: u64,
}

/// What a fault phase saw.
struct Faulted {
    outcome: Offered,
    /// Refused updates accepted when offered again afterwards.
    again: u64,
    expected: u64,
    delivered: u64,
    given_up: u64,
    /// From the dependency's return to the runtime's /readyz answering 200.
    ready_after: Duration,
    alive_while_down: bool,
    alive: bool,
}

impl Faulted {
    fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered + self.given_up)
    }

    /// What the phase saw, for `what` (the dependency that was gone) at `rate` updates/s.
    fn line(&self, rate: u64, what: &str) -> String {
        format!(
            "{} updates offered at {rate}/s, {} accepted, {} refused with 503 while {what} was gone (all {} accepted when offered again; ready {:.1} s after {what} was back), {} failed otherwise; {} of {} delivered, {} given up with their senders told → {} lost; the runtime {} while {what} was gone and {} after",
            self.outcome.sent,
            self.outcome.accepted,
            self.outcome.refused,
            self.again,
            self.ready_after.as_secs_f64(),
            self.outcome.failed,
            self.delivered,
            self.expected,
            self.given_up,
            self.lost(),
            if self.alive_while_down { "kept running" } else { "exited" },
            if self.alive { "is running" } else { "has exited" }
        )
    }
}

impl Traffic<'_> {
    async fn through(&self, mut dependency: Dependency<'_>, feed: &mut Feed, child: &mut std::process::Child) -> Faulted {
        let (http, base, sim) = (self.http, self.base, self.sim);
        let bodies = feed.load(sim, (self.rate * (self.fault_secs + 20)) as usize);
        let senders: Vec<i64> =
            bodies.iter().filter_map(|b| serde_json::from_str::<Value>(b).ok()?.pointer("/message/from/id")?.as_i64()).collect();
        let phase_start_ms = sim_now_ms();
        let sent_before = copies(sim);
        let given_up_before = metric(http, base, "botfleet_outbox_given_up_total{").await as u64;
        let (down_http, down_url, rate) = (http.clone(), self.url.to_string(), self.rate);
        let traffic = tokio::spawn(async move { offer(&down_http, &down_url, bodies, rate).await });
        tokio::time::sleep(Duration::from_secs(10)).await;
        dependency.take_away();
        tokio::time::sleep(Duration::from_secs(self.fault_secs)).await;
        let alive_while_down = child.try_wait().ok().flatten().is_none();
        dependency.give_back().await;
        let ready_after = ready_again(http, base).await;
        let outcome = traffic.await.expect("the traffic task");
        let again = offer_until_accepted(http, self.url, outcome.refused_bodies.clone()).await;
        let expected = outcome.accepted + again;
        settle(http, base, Duration::from_secs(600)).await;
        // The depth gauges lag a few seconds: late is not lost (a minute more at most).
        let delivered = wait_delivered(sim, sent_before + expected, Duration::from_secs(60)).await - sent_before;
        let given_up = metric(http, base, "botfleet_outbox_given_up_total{").await as u64 - given_up_before;
        let alive = child.try_wait().ok().flatten().is_none();
        let faulted = Faulted { outcome, again, expected, delivered, given_up, ready_after, alive_while_down, alive };
        if faulted.lost() > 0 {
            explain_missing(sim, &senders, phase_start_ms);
        }
        faulted
    }
}

fn sim_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Which partners got fewer copies than their partner sent since `since_ms`, and what else
/// the bot sent them or the sender then (seeded pairs: 1–2, 3–4, …).
fn explain_missing(sim: &Sim, senders: &[i64], since_ms: i64) {
    let mut sent: std::collections::BTreeMap<i64, usize> = Default::default();
    for s in senders {
        *sent.entry(*s).or_default() += 1;
    }
    let partner = |u: i64| if u % 2 == 1 { u + 1 } else { u - 1 };
    let texts = |user: i64| -> Vec<String> {
        sim.inbox(user, Some("alpha_bot"), 0)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.at_ms >= since_ms)
            .map(|e| match serde_json::to_value(&e.event) {
                Ok(v) => v.pointer("/message/text").and_then(Value::as_str).unwrap_or("(no text)").chars().take(60).collect(),
                Err(_) => "?".into(),
            })
            .collect()
    };
    for (u, n) in sent {
        let got = texts(partner(u));
        let copies = got.iter().filter(|t| t.as_str() == "bench message").count();
        if copies < n {
            let other: Vec<&String> = got.iter().filter(|t| t.as_str() != "bench message").collect();
            println!(
                "  missing: {u} sent {n}, partner {} got {copies} copies; other messages to the partner {other:?}; to the sender {:?}",
                partner(u),
                texts(u)
            );
        }
    }
}

/// How long after now the runtime's /readyz answers 200 again (a minute at most).
async fn ready_again(http: &reqwest::Client, base: &str) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// Waits until the fake has seen `target` copies (or `limit` passes); the copies seen.
async fn wait_delivered(sim: &Sim, target: u64, limit: Duration) -> u64 {
    let started = Instant::now();
    while copies(sim) < target && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    copies(sim)
}

fn copies(sim: &Sim) -> u64 {
    sim.stats().calls.get("copyMessage").copied().unwrap_or(0)
}

async fn post(http: &reqwest::Client, url: &str, body: String) -> bool {
    let r =
        http.post(url).header("x-telegram-bot-api-secret-token", SECRET).header("content-type", "application/json").body(body).send().await;
    matches!(r, Ok(r) if r.status().is_success())
}

/// Seconds of sends queued before phase 2 measures (below EGRESS_BACKLOG_SECONDS' default 3).
const BACKLOG_SECS: u64 = 2;

/// Posts like Telegram delivers a webhook: a refused update (503) is offered again a second
/// later (the runtime's Retry-After), until it is taken.
async fn post_until_taken(http: &reqwest::Client, url: &str, body: String) {
    for _ in 0..120 {
        if post(http, url, body.clone()).await {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn run() {
    let idle_secs = env_or("BENCH_IDLE_SECS", 60);
    let limit_secs = env_or("BENCH_LIMIT_SECS", 60);
    let limit = env_or("BENCH_LIMIT", 30);
    let sat_secs = env_or("BENCH_SAT_SECS", 10);
    let chats = env_or("BENCH_CHATS", 1_000) as i64;
    let concurrency = env_or("BENCH_CONCURRENCY", 64) as usize;

    let dir = std::env::temp_dir().join(format!("botfleet-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    // A private redis-server (so its CPU is ours alone).
    let mut private = PrivateRedis::start(&dir, port + 1).await;
    let mut redis = private.conn.clone();
    // Redis's own cost with nobody connected but us (its timer runs `hz` times a second).
    let before = redis_cpu(&mut redis).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let redis_idle_pct = 100.0 * (redis_cpu(&mut redis).await - before) / 10.0;
    println!("Redis alone, idle: {redis_idle_pct:.2} % of a core");

    let fake = FakeTelegram::start().await.expect("fake Telegram");
    let sim = fake.sim();
    let info = sim.register_bot("alpha_bot").expect("bot");
    let db = TestDb::create().await.expect("Postgres");
    std::fs::write(dir.join("token"), &info.token).expect("token file");
    std::fs::write(dir.join("secret"), SECRET).expect("secret file");
    let config = |per_bot: u64| common::webhook_config(BOT, POOL, &dir, per_bot);

    // The runtime migrates the database, then the seed goes in.
    let serve = Serve::start(&dir, &config(limit), &db.url, &private.url, "", &fake.api_url(), port).await;
    let mut child = serve.child;
    let pid = child.id();
    let url = format!("{}/telegram/{BOT}", serve.base);
    // Users and live chats (user u with u±1), so every message is a relay.
    common::seed_chats(&db.pool, redis.clone(), "", &sim, POOL, 2 * chats, chats).await;
    // The fake delivers only to people who have opened the bot: the probe's receiver says
    // hello once (to the fake only; the runtime never sees it).
    sim.send_text("alpha_bot", 2, "hello", None).expect("sim send");
    let mut feed = Feed { next: 1_000_000, chats };
    let mut updates = |n: usize| feed.load(&sim, n);
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().expect("client");

    // 1. Idle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let m = Meter::start(pid, &mut redis, &db.pool).await;
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let idle = m.stop(&mut redis, &db.pool).await;
    println!("idle bot: {}", idle.line(redis_idle_pct));

    // 2. At the limit: a backlog of 2 s of sends (admission control by egress refuses new
    // updates past 3 s of them), then messages at the limit's pace.
    let backlog = updates((BACKLOG_SECS * limit) as usize);
    let steady = updates((limit * limit_secs) as usize);
    for body in backlog {
        assert!(post(&http, &url, body).await, "the backlog is accepted");
    }
    let (sent0, refused0) = (copies(&sim), sim.stats().too_many_requests);
    let m = Meter::start(pid, &mut redis, &db.pool).await;
    let t0 = tokio::time::Instant::now();
    let gap = Duration::from_secs_f64(1.0 / limit as f64);
    for (k, body) in steady.into_iter().enumerate() {
        tokio::time::sleep_until(t0 + gap * k as u32).await;
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move { post_until_taken(&http, &url, body).await });
    }
    let at_limit = m.stop(&mut redis, &db.pool).await;
    let sent = copies(&sim) - sent0;
    println!(
        "at the limit ({limit}/s): {sent} sends in {:.1} s = {:.1}/s, {} answered 429; {}",
        at_limit.secs,
        sent as f64 / at_limit.secs,
        sim.stats().too_many_requests - refused0,
        at_limit.line(redis_idle_pct)
    );
    let _ = child.kill();
    let _ = child.wait();

    // 3. Relay efficiency: the outbound limit lifted, the fake's flood limits off.
    sim.set_limits(Limits { enabled: false, ..Limits::default() }).expect("limits off");
    // From here on the runtime reaches Postgres through a TCP hop phase 6 can cut.
    let pg_target: std::net::SocketAddr = {
        let host_port = db.url.split_once('@').map_or(db.url.as_str(), |(_, t)| t).split('/').next().unwrap_or("127.0.0.1:5432");
        tokio::net::lookup_host(host_port).await.ok().and_then(|mut a| a.next()).expect("Postgres's address")
    };
    let mut pg_cut = TcpCut::start(pg_target).await;
    let serve = Serve::start(&dir, &config(100_000), &pg_cut.url_through(&db.url), &private.url, "", &fake.api_url(), port).await;
    let mut child = serve.child;
    let pid = child.id();
    let url = format!("{}/telegram/{BOT}", serve.base);
    let base = serve.base.clone();
    // Whatever the previous phase left queued drains first.
    let started = Instant::now();
    while copies(&sim) < sent0 + (limit * (BACKLOG_SECS + limit_secs)) && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Steady state: a sender's first message of the day also writes their activity record
    // (a few statements, once a day per member), and real senders write many messages a day,
    // so each sender writes once before the phase is metered (the callgrind mode does the
    // same). BENCH_WARM=0 meters cold senders: 2,000 of them, one first message each in the
    // phase's ~8,000 updates.
    if env_or("BENCH_WARM", 1) == 1 {
        let before = copies(&sim);
        let warm = updates((2 * chats - 2) as usize);
        let n = warm.len() as u64;
        for body in warm {
            post_until_taken(&http, &url, body).await;
        }
        wait_delivered(&sim, before + n, Duration::from_secs(120)).await;
    }
    let bodies = Arc::new(updates((sat_secs * 20_000) as usize));
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let sent_before = copies(&sim);
    let m = Meter::start(pid, &mut redis, &db.pool).await;
    let deadline = Instant::now() + Duration::from_secs(sat_secs);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, url, next, done, bodies) = (http.clone(), url.clone(), next.clone(), done.clone(), bodies.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let Some(body) = bodies.get(next.fetch_add(1, Ordering::Relaxed) as usize) else { break };
                    if post(&http, &url, body.clone()).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let handled = done.load(Ordering::Relaxed);
    // The sends of what was accepted are part of each update's cost: wait for them.
    wait_delivered(&sim, sent_before + handled, Duration::from_secs(120)).await;
    let sat = m.stop(&mut redis, &db.pool).await;
    let delivered = copies(&sim) - sent_before;
    println!(
        "relay efficiency: {handled} relayed updates accepted, {delivered} delivered, in {:.1} s; CPU-s: runtime {:.2} ({:.2} of it in the kernel), Redis {:.2}, Postgres {:.2} → {:.0} relayed updates per CPU-second in all ({:.0} per runtime CPU-second)",
        sat.secs,
        sat.runtime,
        sat.runtime_kernel,
        sat.redis,
        sat.postgres,
        handled as f64 / sat.total().max(0.001),
        handled as f64 / sat.runtime.max(0.001)
    );

    // 4. Overload: 10× what this replica delivered end to end in phase 3, open loop.
    drop(updates);
    let sustained = delivered as f64 / sat.secs;
    let overload_rate = env_or("BENCH_OVERLOAD_RATE", (10.0 * sustained) as u64).max(1);
    let overload_secs = env_or("BENCH_OVERLOAD_SECS", 60);
    let baseline = probe(&http, &url, &sim, &mut feed).await;
    let bodies = feed.load(&sim, (overload_rate * overload_secs) as usize);
    let (sent_before, hwm_before) = (copies(&sim), rss_kib(pid).1);
    let given_up_before = metric(&http, &base, "botfleet_outbox_given_up_total{").await as u64;
    let outcome = offer(&http, &url, bodies, overload_rate).await;
    let load_ended = Instant::now();
    let mut recovered = None;
    while load_ended.elapsed() < Duration::from_secs(120) {
        let took = probe(&http, &url, &sim, &mut feed).await;
        if took <= baseline * 2 + Duration::from_millis(50) {
            recovered = Some((load_ended.elapsed(), took));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drained = settle(&http, &base, Duration::from_secs(1200)).await;
    let delivered = copies(&sim) - sent_before;
    let given_up = metric(&http, &base, "botfleet_outbox_given_up_total{").await as u64 - given_up_before;
    let (_, hwm) = rss_kib(pid);
    println!(
        "overload: {overload_rate}/s offered for {overload_secs} s (10× the {sustained:.0}/s delivered end to end above): {} sent, {} accepted, {} refused with 503 (Telegram keeps those), {} failed otherwise, {} not sent (the load generator's 1,024 in flight were busy); the queues drained {:.0} s after the load; {delivered} delivered, {given_up} given up with their senders told (over a chat's backlog, or too old) → {} lost; probe latency {:.0} ms before, back to ≤ 2× {} after the load stopped; runtime peak RSS {:.1} MiB (before {:.1})",
        outcome.sent,
        outcome.accepted,
        outcome.refused,
        outcome.failed,
        outcome.skipped,
        drained.as_secs_f64(),
        outcome.accepted.saturating_sub(delivered + given_up),
        baseline.as_secs_f64() * 1000.0,
        recovered.map_or("not within 120 s".to_string(), |(t, l)| format!("{:.1} s ({:.0} ms)", t.as_secs_f64(), l.as_secs_f64() * 1000.0)),
        hwm as f64 / 1024.0,
        hwm_before as f64 / 1024.0
    );

    // 5. A Redis restart mid-traffic: stopped (SIGTERM: AOF flushed) for BENCH_FAULT_SECS, then
    //    started again on the same AOF. Refused updates are offered again, as Telegram does.
    let fault_secs = env_or("BENCH_FAULT_SECS", 30);
    let run = Traffic { http: &http, url: &url, base: &base, sim: &sim, rate: 100, fault_secs };
    let f = run.through(Dependency::Redis(&mut private), &mut feed, &mut child).await;
    println!("Redis restart: down {fault_secs} s; {}", f.line(run.rate, "Redis"));

    // 6. Postgres unreachable mid-traffic for BENCH_FAULT_SECS: every connection reset and new
    //    ones refused (the TCP hop, as a restart or failover looks to the runtime; the shared
    //    Postgres itself keeps running), then reachable again. Refused updates offered again.
    let f = run.through(Dependency::Postgres(&mut pg_cut), &mut feed, &mut child).await;
    println!("Postgres unreachable: cut {fault_secs} s; {}", f.line(run.rate, "Postgres"));

    let _ = child.kill();
    let _ = child.wait();
    drop(pg_cut);
    drop(private);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = db.drop_db().await;
    fake.stop().await;
}
