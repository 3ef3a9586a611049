//! `bot-runtime serve --config <file>`: one bot, as the operator deploys it. Postgres and Redis
//! from DATABASE_URL and REDIS_URL; the token and the webhook secret from the files the
//! configuration names; the Bot API at TELEGRAM_API_URL (default Telegram's).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use botfleet_crds::bot_instance::IngressMode;
use botfleet_crds::token::{BotToken, mask_tokens};
use botfleet_crds::webhook::WebhookSecret;

use crate::config;
use crate::delivery::media::MediaLimits;
use crate::hot::MediaBudget;
use crate::ingress::server::WebhookBot;
use crate::metrics::Metrics;
use crate::roles::app;
use crate::telegram::{DEFAULT_API_URL, TelegramApi};

// No `Debug`: these hold connection URLs with passwords, and nothing may print them.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The bot's resolved configuration (the operator mounts it from the bot's ConfigMap).
    #[arg(long)]
    pub config: PathBuf,
    /// HTTP address for the webhook, /metrics, /healthz and /readyz.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Postgres connections of this replica (the fleet's budget: bots × replicas × this, see
    /// docs/DEPLOY.md). Behind PgBouncer in transaction mode it may be larger.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = crate::store::sql::POSTGRES_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_pool_size: u32,
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: String,
    /// Prefix of every Redis key (several fleets on one Redis).
    #[arg(long, env = "REDIS_PREFIX", default_value = "")]
    pub redis_prefix: String,
    #[arg(long, env = "TELEGRAM_API_URL", default_value = DEFAULT_API_URL, hide_env_values = true)]
    pub telegram_api_url: String,
    /// Bytes of cross-bot media that may sit in Redis at once, fleet-wide, in MiB: keep it well
    /// below Redis' maxmemory (docs/DEPLOY.md). Every replica of every bot should use the same.
    /// At least 20: one file at Telegram's download limit must fit.
    #[arg(long, env = "MEDIA_BUDGET_MIB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(20..=1_048_576))]
    pub media_budget_mib: u64,
    /// Bytes of media one person may relay across bots per MEDIA_USER_WINDOW_MINUTES, in MiB
    /// (0: no cap; below 20 a file at Telegram's limit is always refused).
    #[arg(long, env = "MEDIA_USER_MIB", default_value_t = 100)]
    pub media_user_mib: u64,
    #[arg(long, env = "MEDIA_USER_WINDOW_MINUTES", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1440))]
    pub media_user_window_minutes: u64,
    /// Cross-bot media downloads (and, separately, uploads) this replica runs at once.
    #[arg(long, env = "MEDIA_RELAYS_PER_PROCESS", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub media_relays_per_process: u64,
    /// Seconds of the bot's delivery rate its outbox may hold before new updates wait at
    /// Telegram (webhook 503, polling paused); payments, /report and /block always go through.
    /// 0 turns this admission control off (ingress/admission.rs).
    #[arg(long, env = "EGRESS_BACKLOG_SECONDS", default_value_t = crate::ingress::admission::DEFAULT_SECONDS, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub egress_backlog_seconds: u64,
    /// Start even when Redis may lose data (no AOF) or evict keys: the outbox, timers and
    /// dedupe marks live there, so such a Redis can lose or repeat messages. For tests only.
    #[arg(long, env = "REDIS_ACCEPT_DATA_LOSS", default_value_t = false)]
    pub redis_accept_data_loss: bool,
}

/// What Redis says about keeping our data, from `CONFIG GET appendonly` and
/// `CONFIG GET maxmemory-policy` (None: the command is disabled, as on managed services).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durability {
    Safe,
    /// Something that loses or evicts the outbox, timers or dedupe marks, and what.
    Unsafe(String),
    /// `CONFIG` is refused: we cannot tell; the operator of the Redis must check.
    Unknown,
}

pub fn durability(appendonly: Option<&str>, policy: Option<&str>) -> Durability {
    let (Some(appendonly), Some(policy)) = (appendonly, policy) else { return Durability::Unknown };
    let mut problems = Vec::new();
    if appendonly != "yes" {
        problems.push(format!("appendonly is {appendonly:?} (a restart loses queued messages and timers; set appendonly yes)"));
    }
    if policy != "noeviction" {
        problems.push(format!("maxmemory-policy is {policy:?} (Redis may evict outbox streams and dedupe marks; set noeviction)"));
    }
    if problems.is_empty() { Durability::Safe } else { Durability::Unsafe(problems.join("; ")) }
}

/// Refuses to start on a Redis that would lose or evict the hot state, unless told to accept
/// the risk; warns when Redis will not say (CONFIG disabled).
async fn check_redis(url: &str, accept_risk: bool) -> anyhow::Result<()> {
    let client = redis::Client::open(url).context("REDIS_URL is not a valid Redis URL")?;
    let conn = crate::roles::app::connect_redis(&client).await.context("connecting to Redis (REDIS_URL)")?;
    let get = |name: &'static str| {
        let mut conn = conn.clone();
        async move {
            let pair: Option<(String, String)> = redis::cmd("CONFIG").arg("GET").arg(name).query_async(&mut conn).await.ok().flatten();
            pair.map(|(_, v)| v)
        }
    };
    let (appendonly, policy) = (get("appendonly").await, get("maxmemory-policy").await);
    match durability(appendonly.as_deref(), policy.as_deref()) {
        Durability::Safe => Ok(()),
        Durability::Unknown => {
            tracing::warn!(
                "Redis refuses CONFIG GET, so its persistence cannot be checked: make sure it runs with appendonly yes and maxmemory-policy noeviction (docs/DEPLOY.md)"
            );
            Ok(())
        }
        Durability::Unsafe(why) if accept_risk => {
            tracing::warn!(%why, "Redis may lose or evict the hot state; starting anyway (REDIS_ACCEPT_DATA_LOSS)");
            Ok(())
        }
        Durability::Unsafe(why) => {
            bail!("Redis would lose messages: {why}. Fix its configuration, or set REDIS_ACCEPT_DATA_LOSS=true for a test setup")
        }
    }
}

impl ServeArgs {
    pub fn media_limits(&self) -> MediaLimits {
        const MIB: u64 = 1024 * 1024;
        MediaLimits {
            budget: MediaBudget {
                fleet_bytes: self.media_budget_mib.saturating_mul(MIB),
                user_bytes: self.media_user_mib.saturating_mul(MIB),
                user_window: Duration::from_secs(self.media_user_window_minutes.saturating_mul(60)),
            },
            relays_per_process: self.media_relays_per_process as usize,
        }
    }
}

pub fn read_token(path: &str) -> anyhow::Result<BotToken> {
    let raw = std::fs::read_to_string(path).with_context(|| format!("cannot read the bot token file {path}"))?;
    // The parse error never quotes the token.
    BotToken::parse(raw.trim()).map_err(|e| anyhow::anyhow!("the token in {path} is not valid: {}", mask_tokens(&e.to_string())))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (config, _watcher) = config::watch(args.config.clone(), Duration::from_secs(2)).await?;
    let cfg = config.current();
    let token = read_token(&cfg.bot.secrets.token_file)?;
    let secret = match (&cfg.bot.ingress.mode, &cfg.bot.secrets.webhook_secret_file) {
        (IngressMode::Webhook, Some(path)) => {
            let raw = std::fs::read_to_string(path).with_context(|| format!("cannot read the webhook secret file {path}"))?;
            Some(WebhookSecret::parse(raw.trim()).map_err(|e| anyhow::anyhow!("the webhook secret in {path} is not valid: {e}"))?)
        }
        (IngressMode::Webhook, None) => bail!("webhook mode needs secrets.webhookSecretFile in the configuration"),
        (IngressMode::Polling, _) => None,
    };
    check_redis(&args.redis_url, args.redis_accept_data_loss).await?;
    let metrics = Metrics::new();
    let fleet = app::production_fleet_sized(
        &args.database_url,
        args.database_pool_size,
        &args.redis_url,
        &args.redis_prefix,
        metrics.clone(),
        args.media_limits(),
    )
    .await?;
    fleet.egress.set_seconds(args.egress_backlog_seconds);
    let api = TelegramApi::new(&args.telegram_api_url, token, &cfg.bot.name, metrics);
    let (_signal, shutdown) = app::shutdown_signal();
    let poll = app::polls(&config);
    tracing::info!(bot = %cfg.bot.name, pool = %cfg.bot.pool, replica = %fleet.replica, polling = poll, config_hash = %cfg.hash(), "bot runtime starting");
    let running = app::start_bot(&fleet, config, api, poll, &shutdown).await?;
    let gauges = app::pool_gauges(&fleet, std::slice::from_ref(&running.bot), shutdown.clone());
    let bots = HashMap::from([(cfg.bot.name.clone(), WebhookBot { bot: running.bot.clone(), secret })]);
    let state = app::app_state(&fleet, bots);
    let served = app::serve_http(args.listen, state, shutdown.clone()).await;
    running.join().await;
    let _ = gauges.await;
    served
}
