//! `bot-runtime admin`: the dashboard and API of one fleet (docs/ADMIN.md). Postgres and Redis
//! from DATABASE_URL and REDIS_URL (the fleet's); no bot token and no Kubernetes access: the
//! bots register themselves in the database, and sends go through their outboxes.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::admin::{self, AdminSettings, AdminState, SessionSecret};
use crate::metrics::Metrics;
use crate::roles::app;

// No `Debug`: these hold connection URLs with passwords, and nothing may print them.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// HTTP address of the dashboard, the API, /metrics, /healthz and /readyz.
    #[arg(long, env = "ADMIN_LISTEN", default_value = "0.0.0.0:8090")]
    pub listen: SocketAddr,
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_pool_size: u32,
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: String,
    #[arg(long, env = "REDIS_PREFIX", default_value = "")]
    pub redis_prefix: String,
    /// Telegram ids of the fleet admins (comma-separated): every bot, every route.
    #[arg(long, env = "ADMIN_FLEET_ADMINS", value_delimiter = ',')]
    pub fleet_admins: Vec<i64>,
    /// Addresses of the proxies (an Ingress controller) whose X-Forwarded-For is believed.
    #[arg(long, env = "ADMIN_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpAddr>,
    /// Requests per minute one API key may make.
    #[arg(long, env = "ADMIN_API_KEY_PER_MINUTE", default_value_t = admin::DEFAULT_API_KEY_PER_MINUTE, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub api_key_per_minute: u32,
    /// Requests per minute per caller to a fleet route (and to a bot's route its
    /// RateLimitPolicies set no adminApiPerMinute for).
    #[arg(long, env = "ADMIN_API_PER_MINUTE", default_value_t = admin::DEFAULT_API_PER_MINUTE, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub api_per_minute: u32,
    /// 👎 a member without open reports receives on a bot within 30 days (since their last
    /// review) that put them in the moderation queue (0: never).
    #[arg(long, env = "ADMIN_THUMBS_DOWN_TO_REVIEW", default_value_t = admin::DEFAULT_THUMBS_DOWN_TO_REVIEW, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub thumbs_down_to_review: u32,
    /// The fleet's time zone (an IANA name): the overview's days are its days. UTC by default;
    /// an unknown name refuses to start.
    #[arg(long, env = "ADMIN_TIME_ZONE", default_value = "UTC")]
    pub time_zone: String,
    /// A file holding the session secret (at least 32 bytes; a Kubernetes Secret).
    #[arg(long, env = "ADMIN_SESSION_SECRET_FILE")]
    pub session_secret_file: PathBuf,
}

pub fn read_secret(path: &std::path::Path) -> anyhow::Result<SessionSecret> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read the session secret file {}", path.display()))?;
    let trimmed = raw.trim_ascii().to_vec();
    SessionSecret::new(trimmed).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let secret = read_secret(&args.session_secret_file)?;
    let time_zone = admin::FleetZone::parse(&args.time_zone).map_err(|e| anyhow::anyhow!("ADMIN_TIME_ZONE (--time-zone): {e}"))?;
    let metrics = Metrics::new();
    let (fleet, sql) =
        app::production_fleet_and_sql(&args.database_url, args.database_pool_size, &args.redis_url, &args.redis_prefix, metrics).await?;
    let settings = AdminSettings {
        fleet_admins: args.fleet_admins,
        trusted_proxies: args.trusted_proxies,
        secure_cookies: !args.listen.ip().is_loopback(),
        secret,
        api_key_per_minute: args.api_key_per_minute,
        api_per_minute: args.api_per_minute,
        broadcast_queue: admin::DEFAULT_BROADCAST_QUEUE,
        broadcast_tick: admin::DEFAULT_BROADCAST_TICK,
        analytics_max_age: admin::DEFAULT_ANALYTICS_MAX_AGE,
        thumbs_down_to_review: args.thumbs_down_to_review,
        time_zone,
    };
    let state = AdminState::new(fleet, Arc::new(sql), settings);
    let (_signal, shutdown) = app::shutdown_signal();
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(addr = %args.listen, "admin dashboard and API listening (/api/v1, /metrics, /healthz, /readyz)");
    admin::serve(listener, state, shutdown).await.context("admin HTTP server failed")
}
