//! A fleet under test: the fake Telegram, N bots in one pool, R replicas of each, on real
//! Postgres + Redis (production) or on SQLite + in-process state (embedded). Replicas are
//! separate `Fleet`s (own connections, own replica ids) in this process; a replica can be
//! killed (its tasks aborted mid-flight, as a crashed pod). In webhook mode a round-robin
//! proxy plays the Kubernetes Service in front of the replicas.

#![allow(dead_code)]

pub mod admin_server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use bot_runtime::bot::{Bot, Fleet};
use bot_runtime::config::LiveConfig;
use bot_runtime::hot::memory::MemoryHot;
use bot_runtime::ingress::server::WebhookBot;
use bot_runtime::matching::memory::MemoryPool;
use bot_runtime::metrics::Metrics;
use bot_runtime::roles::app;
use bot_runtime::store::sql::SqlStore;
use bot_runtime::telegram::TelegramApi;
use botfleet_crds::bot_instance::BotInstance;
use botfleet_crds::resolved::ResolvedBotConfig;
use botfleet_crds::token::BotToken;
use botfleet_crds::webhook::WebhookSecret;
use botfleet_tests::fake_telegram::{FakeTelegram, Sim};
use botfleet_tests::fixtures::{TestDb, TestRedis};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Postgres + Redis, replicas share nothing but the databases.
    Production,
    /// SQLite + in-process state; "replicas" share the process's stores.
    Embedded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Polling,
    Webhook,
}

pub const POOL: &str = "test-pool";

pub fn bot_config(name: &str, mode: Mode, extra_spec: &str) -> ResolvedBotConfig {
    let mode_name = match mode {
        Mode::Polling => "Polling",
        Mode::Webhook => "Webhook",
    };
    let yaml = format!(
        "apiVersion: botfleet.io/v1alpha1\nkind: BotInstance\nmetadata:\n  name: {name}\nspec:\n  tokenSecretRef:\n    name: {name}-token\n  ingress:\n    mode: {mode_name}\n    publicUrl: https://example.test\n  pool: {POOL}\n  admins:\n    telegramIds: []\n{extra_spec}"
    );
    let bot: BotInstance = serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("test bot YAML: {e}\n{yaml}"));
    let mut config = botfleet_crds::resolve::resolve(&bot, &[], &[], &[], jiff::Timestamp::now()).expect("resolve").config;
    config.bot.secrets.webhook_secret_file = None;
    config
}

pub fn username(bot: &str) -> String {
    format!("{bot}_bot")
}

pub struct Replica {
    pub fleet: Arc<Fleet>,
    pub bots: Vec<Arc<Bot>>,
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    running: Vec<app::RunningBot>,
    pub alive: bool,
}

pub struct Harness {
    pub fake: FakeTelegram,
    pub sim: Sim,
    pub backend: Backend,
    pub mode: Mode,
    pub configs: Vec<ResolvedBotConfig>,
    pub tokens: HashMap<String, String>,
    pub secrets: HashMap<String, String>,
    pub replicas: Vec<Replica>,
    pub db: Option<TestDb>,
    pub redis: Option<TestRedis>,
    embedded: Option<(Arc<MemoryHot>, Arc<SqlStore>, Arc<MemoryPool>)>,
    /// The "Service" in front of the replicas (webhook mode).
    pub proxy: Option<SocketAddr>,
    proxy_targets: Arc<Mutex<Vec<Option<SocketAddr>>>>,
}

impl Harness {
    /// Bots named in `configs`, `replicas` replicas each.
    pub async fn start(backend: Backend, mode: Mode, configs: Vec<ResolvedBotConfig>, replicas: usize) -> Harness {
        let fake = FakeTelegram::start().await.expect("fake Telegram");
        let sim = fake.sim();
        let mut tokens = HashMap::new();
        let mut secrets = HashMap::new();
        for c in &configs {
            let info = sim.register_bot(&username(&c.bot.name)).expect("register bot");
            tokens.insert(c.bot.name.clone(), info.token);
            secrets.insert(c.bot.name.clone(), format!("secret_{}_{}", c.bot.name.replace('-', "_"), rand::random::<u32>()));
            for ch in &c.bot.required_channels {
                let _ = sim.add_channel(ch.trim_start_matches('@'), ch, None);
            }
        }
        let (db, redis, embedded) = match backend {
            Backend::Production => (Some(TestDb::create().await.expect("Postgres")), Some(TestRedis::create().await.expect("Redis")), None),
            Backend::Embedded => {
                let path = std::env::temp_dir().join(format!("botfleet-test-{}-{:08x}.db", std::process::id(), rand::random::<u32>()));
                let store = SqlStore::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.expect("SQLite");
                store.migrate().await.expect("migrate");
                (None, None, Some((Arc::new(MemoryHot::new(app::OUTBOX_SHARDS)), Arc::new(store), Arc::new(MemoryPool::new()))))
            }
        };
        let mut h = Harness {
            fake,
            sim,
            backend,
            mode,
            configs,
            tokens,
            secrets,
            replicas: Vec::new(),
            db,
            redis,
            embedded,
            proxy: None,
            proxy_targets: Arc::new(Mutex::new(Vec::new())),
        };
        for _ in 0..replicas {
            h.add_replica().await;
        }
        if mode == Mode::Webhook {
            h.start_proxy().await;
            for c in h.configs.clone() {
                let url = format!("http://{}/telegram/{}", h.proxy.expect("proxy"), c.bot.name);
                let api = botfleet_tests::bot_api::RawBot::new(&h.fake.api_url(), &h.tokens[&c.bot.name]);
                api.call("setWebhook", json!({"url": url, "secret_token": h.secrets[&c.bot.name], "max_connections": 40}))
                    .await
                    .expect("setWebhook");
            }
        }
        h
    }

    async fn fleet(&self) -> Arc<Fleet> {
        let fleet = self.fleet_as_built().await;
        // The fleet admins the admin role registers reach commands and menus within a second
        // here (a minute in production), so tests need not wait a minute for them.
        fleet.set_fleet_admins_for(Duration::from_secs(1));
        fleet
    }

    async fn fleet_as_built(&self) -> Arc<Fleet> {
        let metrics = Metrics::new();
        match (&self.db, &self.redis, &self.embedded) {
            (Some(db), Some(redis), _) => {
                app::production_fleet(&db.url, &redis.url, &redis.prefix, metrics).await.expect("production fleet")
            }
            (_, _, Some((hot, store, matcher))) => {
                Fleet::new(hot.clone(), store.clone(), matcher.clone(), metrics, format!("replica-{}", self.replicas.len()))
            }
            _ => unreachable!("a harness has one backend"),
        }
    }

    /// What the admin role of this fleet runs on: its own fleet handle (no bots) over the same
    /// databases, and the SQL store.
    pub async fn admin_fleet(&self) -> (Arc<Fleet>, SqlStore) {
        match (&self.db, &self.redis, &self.embedded) {
            (Some(db), Some(redis), _) => {
                app::production_fleet_and_sql(&db.url, 4, &redis.url, &redis.prefix, Metrics::new()).await.expect("admin fleet")
            }
            (_, _, Some((hot, store, matcher))) => {
                let fleet = Fleet::new(hot.clone(), store.clone(), matcher.clone(), Metrics::new(), "admin".into());
                (fleet, (**store).clone())
            }
            _ => unreachable!("a harness has one backend"),
        }
    }

    pub async fn add_replica(&mut self) -> usize {
        let fleet = self.fleet().await;
        let (stop, shutdown) = watch::channel(false);
        let mut running = Vec::new();
        let mut webhook_bots = HashMap::new();
        for c in &self.configs {
            let (live, _tx) = LiveConfig::channel(c.clone());
            // Keep the sender alive with the replica (a dropped sender just freezes the config).
            std::mem::forget(_tx);
            let token = BotToken::parse(&self.tokens[&c.bot.name]).expect("token");
            let api = TelegramApi::new(&self.fake.api_url(), token, &c.bot.name, fleet.metrics.clone());
            let bot = app::start_bot(&fleet, live, api, self.mode == Mode::Polling, &shutdown).await.expect("start bot");
            let secret = WebhookSecret::parse(&self.secrets[&c.bot.name]).ok();
            webhook_bots.insert(c.bot.name.clone(), WebhookBot { bot: bot.bot.clone(), secret });
            running.push(bot);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = app::app_state(&fleet, webhook_bots);
        let http = tokio::spawn(async move {
            let _ = app::serve_listener(listener, state, shutdown).await;
        });
        let bots = running.iter().map(|r| r.bot.clone()).collect();
        self.replicas.push(Replica { fleet, bots, addr, stop, tasks: vec![http], running, alive: true });
        self.proxy_targets.lock().unwrap().push(Some(addr));
        self.replicas.len() - 1
    }

    /// Kills a replica as a crash would: every task stops where it is, nothing is cleaned up
    /// (its leases run out on their own).
    pub fn kill(&mut self, i: usize) {
        let r = &mut self.replicas[i];
        for t in &r.tasks {
            t.abort();
        }
        for b in r.running.drain(..) {
            b.abort();
        }
        r.alive = false;
        self.proxy_targets.lock().unwrap()[i] = None;
    }

    /// A graceful stop of replica `i`, as SIGTERM does: its loops finish what they are doing
    /// (the send in flight is acknowledged), its leases are given back, and it takes no more
    /// traffic.
    pub async fn terminate(&mut self, i: usize) {
        self.proxy_targets.lock().unwrap()[i] = None;
        let r = &mut self.replicas[i];
        let _ = r.stop.send(true);
        for b in r.running.drain(..) {
            b.join().await;
        }
        for t in &r.tasks {
            t.abort();
        }
        r.alive = false;
    }

    pub async fn stop(mut self) {
        for r in &mut self.replicas {
            let _ = r.stop.send(true);
        }
        for r in &mut self.replicas {
            for b in r.running.drain(..) {
                b.join().await;
            }
        }
        if let Some(db) = self.db.take() {
            let _ = db.drop_db().await;
        }
        self.fake.stop().await;
    }

    pub fn bot(&self, replica: usize, name: &str) -> Arc<Bot> {
        self.replicas[replica].bots.iter().find(|b| b.name == name).expect("bot").clone()
    }

    /// Any live replica's view of a bot.
    pub fn any_bot(&self, name: &str) -> Arc<Bot> {
        let r = self.replicas.iter().position(|r| r.alive).expect("a live replica");
        self.bot(r, name)
    }

    async fn start_proxy(&mut self) {
        let targets = self.proxy_targets.clone();
        let next = Arc::new(AtomicUsize::new(0));
        let client = reqwest::Client::new();
        let app = axum::Router::new().route(
            "/telegram/{bot}",
            axum::routing::post(move |Path(bot): Path<String>, State(()): State<()>, headers: HeaderMap, body: Bytes| {
                let targets = targets.clone();
                let next = next.clone();
                let client = client.clone();
                async move {
                    let live: Vec<SocketAddr> = targets.lock().unwrap().iter().flatten().copied().collect();
                    if live.is_empty() {
                        return StatusCode::BAD_GATEWAY;
                    }
                    let start = next.fetch_add(1, Ordering::Relaxed);
                    for k in 0..live.len() {
                        let target = live[(start + k) % live.len()];
                        let mut req = client.post(format!("http://{target}/telegram/{bot}")).body(body.clone());
                        for (name, value) in headers.iter() {
                            if name != "host" && name != "content-length" {
                                req = req.header(name, value);
                            }
                        }
                        if let Ok(resp) = req.send().await {
                            return StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                        }
                    }
                    StatusCode::BAD_GATEWAY
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        self.proxy = Some(listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app.with_state(())).await;
        });
    }

    /// POSTs a raw update to one replica's webhook, with the right secret; the HTTP status.
    pub async fn post_update(&self, replica: usize, bot: &str, body: &str) -> u16 {
        let url = format!("http://{}/telegram/{bot}", self.replicas[replica].addr);
        reqwest::Client::new()
            .post(url)
            .header("x-telegram-bot-api-secret-token", &self.secrets[bot])
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(599)
    }

    /// Sum of a counter over the replicas' metrics (text exposition).
    pub fn metric(&self, name_and_labels: &str) -> f64 {
        self.replicas
            .iter()
            .map(|r| {
                r.fleet
                    .metrics
                    .render()
                    .lines()
                    .filter(|l| l.starts_with(name_and_labels))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>()
            })
            .sum()
    }
}

/// A user update as Telegram would deliver it.
pub fn message_update(update_id: i64, user: i64, message_id: i64, extra: Value) -> String {
    let mut m = json!({
        "message_id": message_id, "date": 1_800_000_000,
        "chat": {"id": user, "type": "private", "first_name": "U"},
        "from": {"id": user, "is_bot": false, "first_name": "U", "language_code": "en"},
    });
    if let (Some(m), Some(e)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    json!({"update_id": update_id, "message": m}).to_string()
}

pub const WAIT: Duration = Duration::from_secs(30);
