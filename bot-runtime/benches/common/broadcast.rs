//! A broadcast through real processes (docs/ADMIN.md, "Broadcast"): N bots, each its own
//! `bot-runtime serve` child process, and one `bot-runtime admin` child process (its producer
//! queues the broadcasts on the bots' outboxes), on Postgres + Redis, sending to the fake
//! Telegram with its flood limits on. The processes can be stopped gracefully (SIGTERM) or
//! killed (SIGKILL) and started again; the fake's inboxes say who got what, how often.
//!
//! Shared by the CI test (`tests/broadcast.rs`, 2,000 members) and the bench
//! (`benches/broadcast.rs`, 50,000).

#![allow(dead_code)] // each user uses what it needs

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bot_runtime::store::admin::{AdminStore, Audience, Broadcast, NewBroadcastRow};
use bot_runtime::store::sql::SqlStore;
use botfleet_tests::fake_telegram::{FakeTelegram, Limits, Sim, SimUser};
use botfleet_tests::fixtures::{TestDb, TestRedis, redis_url};

use super::{Serve, webhook_config};

const POOL: &str = "bcast-pool";

/// One bot of the run: its name, its members' ids, its serve process.
pub struct RunBot {
    pub name: String,
    pub id: String,
    pub username: String,
    pub members: std::ops::RangeInclusive<i64>,
    dir: PathBuf,
    port: u16,
    config: String,
    pub serve: Option<Child>,
}

pub struct BroadcastRun {
    fake: Option<FakeTelegram>,
    pub sim: Sim,
    db: Option<TestDb>,
    pub redis: TestRedis,
    pub sql: SqlStore,
    pub bots: Vec<RunBot>,
    /// The bots' `perBotPerSecond` (and the fake's per-bot limit).
    pub rate: u64,
    admin_dir: PathBuf,
    admin_port: u16,
    pub admin: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl BroadcastRun {
    pub fn db(&self) -> &TestDb {
        self.db.as_ref().expect("the run's database")
    }

    fn api_url(&self) -> String {
        self.fake.as_ref().expect("the fake Telegram").api_url()
    }

    /// `bots` bots with `per_bot` members each (distinct ids), each sending at most `rate`
    /// messages a second; the fake Telegram allows each bot the same (burst: one second's
    /// worth) and each chat 1/s. Every process is started and ready.
    pub async fn start(bots: usize, per_bot: i64, rate: u64) -> BroadcastRun {
        Self::start_paid(bots, per_bot, rate, None).await
    }

    /// [`BroadcastRun::start`], the bots' paid-broadcast pace `paid_rate` (their
    /// `paidBroadcastPerSecond`, and the fake's paid budget) if given.
    pub async fn start_paid(bots: usize, per_bot: i64, rate: u64, paid_rate: Option<u64>) -> BroadcastRun {
        let fake = FakeTelegram::start().await.expect("fake Telegram");
        let sim = fake.sim();
        let paid_per_bot_per_sec = paid_rate.map_or(Limits::default().paid_per_bot_per_sec, |r| r as f64);
        sim.set_limits(Limits {
            enabled: true,
            per_bot_per_sec: rate as f64,
            per_bot_burst: rate as f64,
            paid_per_bot_per_sec,
            ..Limits::default()
        })
        .expect("flood limits on");
        let db = TestDb::create().await.expect("Postgres");
        let redis = TestRedis::create().await.expect("Redis");
        let root = std::env::temp_dir().join(format!("botfleet-bcast-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        let mut run_bots = Vec::new();
        for k in 0..bots {
            let name = format!("b{k}");
            let username = format!("{name}_bot");
            let info = sim.register_bot(&username).expect("bot");
            let dir = root.join(&name);
            std::fs::create_dir_all(&dir).expect("bot dir");
            std::fs::write(dir.join("token"), &info.token).expect("token file");
            std::fs::write(dir.join("secret"), format!("secret_{name}_{:08x}", rand::random::<u32>())).expect("secret file");
            let mut config = webhook_config(&name, POOL, &dir, rate);
            if let Some(paid) = paid_rate {
                config =
                    config.replace("perChatPerMinute: 100000}", &format!("perChatPerMinute: 100000, paidBroadcastPerSecond: {paid}}}"));
            }
            let first = 1 + k as i64 * per_bot;
            run_bots.push(RunBot {
                id: format!("bench/{name}"),
                name,
                username,
                members: first..=first + per_bot - 1,
                dir,
                port: free_port(),
                config,
                serve: None,
            });
        }
        let admin_dir = root.join("admin");
        std::fs::create_dir_all(&admin_dir).expect("admin dir");
        std::fs::write(admin_dir.join("session-secret"), "a broadcast run's session secret, 32 bytes or more").expect("secret");
        let mut run = BroadcastRun {
            fake: Some(fake),
            sim,
            sql: SqlStore::connect(&db.url).await.expect("SQL store"),
            db: Some(db),
            redis,
            bots: run_bots,
            rate,
            admin_dir,
            admin_port: free_port(),
            admin: None,
        };
        run.start_processes().await;
        run.seed().await;
        run
    }

    /// Members: a complete profile on their bot, and a started chat with it in the fake.
    async fn seed(&self) {
        for b in &self.bots {
            sqlx::query(
                "INSERT INTO users (bot, user_id, language, stage, gender, age, reachable, created_ms, updated_ms) \
                 SELECT $1, g, 'en', 'ready', 'f', 30, 1, 0, 0 FROM generate_series($2::bigint, $3::bigint) g",
            )
            .bind(&b.id)
            .bind(*b.members.start())
            .bind(*b.members.end())
            .execute(&self.db().pool)
            .await
            .expect("seed members");
            for user in b.members.clone() {
                if self
                    .sim
                    .add_user(SimUser {
                        id: user,
                        first_name: format!("U{user}"),
                        last_name: None,
                        username: None,
                        language_code: Some("en".into()),
                        is_premium: false,
                    })
                    .is_err()
                {
                    // Already known (a member of another bot too).
                }
                self.sim.start_chat(&b.username, user).expect("a started chat");
            }
        }
    }

    /// Starts every bot's serve process and the admin process (those not running), and waits
    /// until each is ready.
    pub async fn start_processes(&mut self) {
        let (db_url, api_url) = (self.db().url.clone(), self.api_url());
        for b in &mut self.bots {
            if b.serve.is_none() {
                let s = Serve::start(&b.dir, &b.config, &db_url, &redis_url(), &self.redis.prefix, &api_url, b.port).await;
                b.serve = Some(s.child);
            }
        }
        if self.admin.is_none() {
            let child = Command::new(env!("CARGO_BIN_EXE_bot-runtime"))
                .arg("admin")
                .env("ADMIN_LISTEN", format!("127.0.0.1:{}", self.admin_port))
                .env("DATABASE_URL", &self.db().url)
                .env("REDIS_URL", redis_url())
                .env("REDIS_PREFIX", &self.redis.prefix)
                .env("ADMIN_SESSION_SECRET_FILE", self.admin_dir.join("session-secret"))
                .env("RUST_LOG", "warn")
                .spawn()
                .expect("start bot-runtime admin");
            self.admin = Some(child);
            wait_ready(&format!("http://127.0.0.1:{}", self.admin_port)).await;
        }
        // Every bot registered itself (the producer queues for registered bots only).
        let started = Instant::now();
        while self.sql.bots().await.map(|b| b.len()).unwrap_or(0) < self.bots.len() {
            assert!(started.elapsed() < Duration::from_secs(60), "the bots did not register");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM to every process (a rolling restart's stop), waiting for each to exit.
    pub fn terminate_all(&mut self) -> Duration {
        self.signal_all("TERM")
    }

    /// SIGKILL to every process (a crash, an OOM kill, a node lost).
    pub fn kill_all(&mut self) -> Duration {
        self.signal_all("KILL")
    }

    fn signal_all(&mut self, signal: &str) -> Duration {
        let mut slowest = Duration::ZERO;
        let children = self.bots.iter_mut().filter_map(|b| b.serve.take()).chain(self.admin.take());
        // All at once (every process gets the signal before any is waited for).
        let mut children: Vec<Child> = children.collect();
        let t = Instant::now();
        for c in &children {
            let _ = Command::new("kill").arg(format!("-{signal}")).arg(c.id().to_string()).status();
        }
        for c in &mut children {
            let _ = c.wait();
            slowest = slowest.max(t.elapsed());
        }
        slowest
    }

    /// A broadcast of `text` to all members of each bot, now; their ids.
    pub async fn broadcast_to_all(&self, text: &str) -> Vec<i64> {
        self.broadcast_to_all_as(text, false).await
    }

    /// [`BroadcastRun::broadcast_to_all`], paid (`allow_paid_broadcast`) when `paid`.
    pub async fn broadcast_to_all_as(&self, text: &str, paid: bool) -> Vec<i64> {
        let everyone = Audience::all();
        let mut ids = Vec::new();
        for b in &self.bots {
            let now = bot_runtime::bot::now_ms();
            let total = self.sql.count_recipients(&b.id, &everyone, 0, now).await.expect("audience");
            let row = NewBroadcastRow { bot: &b.id, text, audience: &everyone, by: 1, now_ms: now, start_ms: None, total, paid };
            ids.push(self.sql.create_broadcast(&row).await.expect("broadcast"));
        }
        ids
    }

    pub async fn broadcasts(&self, ids: &[i64]) -> Vec<Broadcast> {
        let mut out = Vec::new();
        for id in ids {
            out.push(self.sql.broadcast(*id).await.expect("read").expect("the broadcast"));
        }
        out
    }

    /// Waits until each broadcast has at least `each` messages delivered (the senders' count);
    /// panics after `limit`.
    pub async fn wait_delivered(&self, ids: &[i64], each: i64, limit: Duration) {
        let started = Instant::now();
        loop {
            let all = self.broadcasts(ids).await;
            if all.iter().all(|b| b.delivered >= each) {
                return;
            }
            assert!(started.elapsed() < limit, "delivered {:?} of {each} each", all.iter().map(|b| b.delivered).collect::<Vec<_>>());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the broadcasts are `done` and each counted an outcome for every member;
    /// panics after `limit`.
    pub async fn wait_settled(&self, ids: &[i64], limit: Duration) -> Vec<Broadcast> {
        let started = Instant::now();
        loop {
            let all = self.broadcasts(ids).await;
            if all.iter().all(|b| b.status == "done" && b.delivered + b.failed + b.blocked >= b.total) {
                return all;
            }
            assert!(started.elapsed() < limit, "the broadcasts did not settle: {all:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Per bot: how many copies of `needle` each member received.
    pub fn received(&self, needle: &str) -> Vec<HashMap<i64, u64>> {
        self.bots.iter().map(|b| self.sim.message_counts(&b.username, needle).expect("counts")).collect()
    }

    /// Per bot: (members who got it exactly once, members who never got it, extra copies).
    pub fn tally(&self, needle: &str) -> Vec<Tally> {
        self.received(needle)
            .iter()
            .zip(&self.bots)
            .map(|(counts, b)| {
                let mut t = Tally::default();
                for user in b.members.clone() {
                    match counts.get(&user).copied().unwrap_or(0) {
                        0 => t.skipped += 1,
                        1 => t.once += 1,
                        n => {
                            t.once += 1;
                            t.duplicates += n - 1;
                        }
                    }
                }
                t.strangers = counts.keys().filter(|u| !b.members.contains(u)).count() as u64;
                t
            })
            .collect()
    }

    /// Stops everything and removes what the run made.
    pub async fn finish(mut self) {
        self.kill_all();
        if let Some(dir) = self.admin_dir.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
        let _ = self.redis.cleanup().await;
        if let Some(db) = self.db.take() {
            let _ = db.drop_db().await;
        }
        if let Some(fake) = self.fake.take() {
            fake.stop().await;
        }
    }
}

impl Drop for BroadcastRun {
    fn drop(&mut self) {
        for c in self.bots.iter_mut().filter_map(|b| b.serve.as_mut()).chain(self.admin.as_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a bot's members received of one broadcast.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Members who got it (once or more).
    pub once: u64,
    /// Members who never got it.
    pub skipped: u64,
    /// Copies beyond the first.
    pub duplicates: u64,
    /// Non-members who got it (must be 0).
    pub strangers: u64,
}

async fn wait_ready(base: &str) {
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{base} did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
