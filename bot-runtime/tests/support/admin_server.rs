//! The admin role of a [`Harness`]'s fleet, served on 127.0.0.1 for `tests/admin.rs` and
//! `tests/dashboard.rs` (one start-up: both test files call this, with their own options).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bot_runtime::admin::{AdminSettings, AdminState, SessionSecret};
use bot_runtime::store::admin::AdminStore;
use bot_runtime::store::sql::SqlStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Harness, WAIT};

/// What differs between the tests' admin servers.
pub struct AdminOptions {
    /// Fleet admins (every bot).
    pub fleet_admins: Vec<i64>,
    /// The admins of bot `beta` (its registry row is set as the operator would from the BotInstance).
    pub beta_admins: Vec<i64>,
    /// Requests per minute per API key.
    pub key_limit: u32,
    /// Requests per minute per caller on fleet routes.
    pub api_per_minute: u32,
    /// Jobs a broadcast keeps queued per bot, and how often the producer looks.
    pub broadcast_queue: u64,
    pub broadcast_tick: Duration,
    /// Believe `X-Forwarded-For` from 127.0.0.1 (the tests that play several client addresses);
    /// false: the client is the TCP peer, as for a browser on the admin's machine.
    pub trust_loopback_proxy: bool,
    pub secret: &'static [u8],
    /// 👎 in 30 days that bring a member without reports to the moderation queue.
    pub thumbs_down_to_review: u32,
    /// The fleet's time zone (an IANA name).
    pub time_zone: &'static str,
}

impl Default for AdminOptions {
    fn default() -> Self {
        Self {
            fleet_admins: vec![],
            beta_admins: vec![],
            key_limit: 120,
            api_per_minute: 1_000_000,
            broadcast_queue: 90,
            broadcast_tick: Duration::from_millis(300),
            trust_loopback_proxy: false,
            secret: b"a test session secret of 32 bytes or more",
            thumbs_down_to_review: 2,
            time_zone: "UTC",
        }
    }
}

/// A running admin server.
pub struct AdminServer {
    pub addr: SocketAddr,
    pub sql: SqlStore,
    pub stop: watch::Sender<bool>,
    pub served: JoinHandle<std::io::Result<()>>,
    /// A client that follows no redirects (the tests look at them).
    pub http: reqwest::Client,
}

impl Harness {
    /// Starts the admin role of this fleet once its two bots registered themselves.
    pub async fn start_admin_server(&self, o: AdminOptions) -> AdminServer {
        let (fleet, sql) = self.admin_fleet().await;
        let deadline = Instant::now() + WAIT;
        while AdminStore::bots(&sql).await.expect("the registry").len() < 2 {
            assert!(Instant::now() < deadline, "both bots registered themselves");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sqlx::query("UPDATE admin_bots SET admins = $1 WHERE name = 'beta'")
            .bind(serde_json::to_string(&o.beta_admins).expect("ids"))
            .execute(sql.pool())
            .await
            .expect("beta's admins");
        let settings = AdminSettings {
            fleet_admins: o.fleet_admins,
            trusted_proxies: if o.trust_loopback_proxy { vec!["127.0.0.1".parse().expect("an address")] } else { vec![] },
            secure_cookies: false,
            secret: SessionSecret::new(o.secret.to_vec()).expect("a long enough secret"),
            api_key_per_minute: o.key_limit,
            api_per_minute: o.api_per_minute,
            broadcast_queue: o.broadcast_queue,
            broadcast_tick: o.broadcast_tick,
            // Analytics reads refresh the rollups first: the tests read what they just wrote.
            analytics_max_age: Duration::ZERO,
            thumbs_down_to_review: o.thumbs_down_to_review,
            time_zone: bot_runtime::admin::FleetZone::parse(o.time_zone).expect("a known time zone"),
        };
        let state = AdminState::new(fleet, Arc::new(sql.clone()), settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, shutdown) = watch::channel(false);
        let served = tokio::spawn(bot_runtime::admin::serve(listener, state, shutdown));
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client");
        AdminServer { addr, sql, stop, served, http }
    }
}
