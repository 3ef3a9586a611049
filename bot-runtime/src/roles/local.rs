//! `bot-runtime local [--manifests config/]`: every bot declared in a folder, in one process, on
//! the embedded default (SQLite + in-process state). The folder holds the same BotInstance /
//! VipPlan / DiscountCampaign / RateLimitPolicy YAML a platform team applies to a cluster,
//! resolved by the operator's own function (`botfleet_crds::resolve`).
//!
//! With tokens (`BOT_TOKEN_<NAME>` or `BOT_TOKEN_FILE_<NAME>`, NAME upper-cased with `-` as `_`)
//! the bots poll real Telegram. Without any, a fake Telegram starts in process on
//! `--fake-listen`, driven through its /sim API (printed at start) or by `--simulate N`.
//! Bots always poll here: a laptop has no public URL for a webhook.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use botfleet_crds::bot_instance::BotInstance;
use botfleet_crds::discount_campaign::DiscountCampaign;
use botfleet_crds::rate_limit_policy::RateLimitPolicy;
use botfleet_crds::resolve::resolve;
use botfleet_crds::resolved::ResolvedBotConfig;
use botfleet_crds::token::BotToken;
use botfleet_crds::vip_plan::VipPlan;
#[cfg(feature = "simulator")]
use botfleet_fake_telegram::FakeTelegram;
use serde::Deserialize as _;

use crate::config::LiveConfig;
use crate::ingress::server::WebhookBot;
use crate::metrics::Metrics;
use crate::roles::app;
#[cfg(feature = "simulator")]
use crate::roles::simulate;
use crate::telegram::{DEFAULT_API_URL, TelegramApi};

// No `Debug`: these hold connection URLs with passwords, and nothing may print them.
#[derive(clap::Args)]
pub struct LocalArgs {
    /// Folder with BotInstance / VipPlan / DiscountCampaign / RateLimitPolicy YAML (searched
    /// recursively; other YAML is skipped).
    #[arg(long, default_value = "config")]
    pub manifests: PathBuf,
    /// The database: default an in-memory SQLite with the fake Telegram (its world starts
    /// empty each time too), a file `botfleet-local.db` with real tokens.
    #[arg(long)]
    pub database: Option<String>,
    /// HTTP address for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// HTTP address of the fleet's admin dashboard and API (docs/ADMIN.md).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub admin_listen: SocketAddr,
    /// Telegram ids of the fleet admins (comma-separated); each bot's `admins` are its admins.
    #[arg(long, env = "ADMIN_FLEET_ADMINS", value_delimiter = ',')]
    pub fleet_admins: Vec<i64>,
    /// Where the in-process fake Telegram listens (no tokens given).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub fake_listen: SocketAddr,
    #[arg(long, env = "TELEGRAM_API_URL", default_value = DEFAULT_API_URL, hide_env_values = true)]
    pub telegram_api_url: String,
    /// Drive N simulated users through onboarding, matching and chatting on the fake
    /// Telegram, print a summary and exit.
    #[arg(long)]
    pub simulate: Option<usize>,
    /// Simulated chat messages each simulated user sends per chat.
    #[arg(long, default_value_t = 5)]
    pub messages: usize,
    /// The mean pause (ms) between a simulated user's messages, as a person types (±50 %).
    #[arg(long, default_value_t = 2000)]
    pub think_ms: u64,
    /// Percent of simulated users who buy a plan with Telegram Stars before searching, and
    /// lock their chat with its credits.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub buyers: u8,
}

#[derive(Default)]
pub struct Manifests {
    pub bots: Vec<BotInstance>,
    pub plans: Vec<VipPlan>,
    pub campaigns: Vec<DiscountCampaign>,
    pub policies: Vec<RateLimitPolicy>,
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            yaml_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads every BotFleet resource under `dir`. A malformed resource is an error naming the
/// file and the resource; YAML of other kinds (dashboards, alert rules) is skipped.
pub fn read_manifests(dir: &Path) -> anyhow::Result<Manifests> {
    let mut files = Vec::new();
    yaml_files(dir, &mut files).with_context(|| format!("cannot read the manifests folder {}", dir.display()))?;
    files.sort();
    let mut m = Manifests::default();
    for file in files {
        let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let value = match serde_yaml::Value::deserialize(doc) {
                Ok(v) => v,
                // Not ours to judge (e.g. Helm templates): skip the file.
                Err(_) => break,
            };
            let api = value.get("apiVersion").and_then(|v| v.as_str()).unwrap_or("");
            if !api.starts_with("botfleet.io/") {
                continue;
            }
            let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or("").to_string();
            let whence = || format!("{} (document {}, kind {kind})", file.display(), i + 1);
            match kind.as_str() {
                "BotInstance" => m.bots.push(serde_yaml::from_value(value).with_context(whence)?),
                "VipPlan" => m.plans.push(serde_yaml::from_value(value).with_context(whence)?),
                "DiscountCampaign" => m.campaigns.push(serde_yaml::from_value(value).with_context(whence)?),
                "RateLimitPolicy" => m.policies.push(serde_yaml::from_value(value).with_context(whence)?),
                other => bail!("{}: unknown kind {other:?}", whence()),
            }
        }
    }
    Ok(m)
}

/// Resolves every bot (the operator's function); findings are printed as warnings.
pub fn resolve_all(m: &Manifests) -> anyhow::Result<Vec<ResolvedBotConfig>> {
    let now = jiff::Timestamp::now();
    let mut out = Vec::new();
    for bot in &m.bots {
        let r = resolve(bot, &m.plans, &m.campaigns, &m.policies, now).map_err(|e| anyhow::anyhow!("{e}"))?;
        for f in &r.findings {
            tracing::warn!(kind = f.kind, name = %f.name, reason = f.reason, "{}", f.message);
        }
        out.push(r.config);
    }
    Ok(out)
}

fn env_name(bot: &str) -> String {
    bot.to_ascii_uppercase().replace('-', "_")
}

fn token_for(bot: &str) -> anyhow::Result<Option<BotToken>> {
    let name = env_name(bot);
    if let Ok(raw) = std::env::var(format!("BOT_TOKEN_{name}")) {
        return BotToken::parse(raw.trim()).map(Some).map_err(|e| anyhow::anyhow!("BOT_TOKEN_{name}: {e}"));
    }
    if let Ok(path) = std::env::var(format!("BOT_TOKEN_FILE_{name}")) {
        return crate::roles::serve::read_token(&path).map(Some);
    }
    Ok(None)
}

/// The fake Telegram's username for a bot (Telegram usernames end in "bot").
pub fn fake_username(bot: &str) -> String {
    format!("{}_bot", bot.replace('-', "_"))
}

pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    let manifests = read_manifests(&args.manifests)?;
    if manifests.bots.is_empty() {
        bail!("no BotInstance found under {}", args.manifests.display());
    }
    let mut configs = resolve_all(&manifests)?;
    let tokens: Vec<Option<BotToken>> = configs.iter().map(|c| token_for(&c.bot.name)).collect::<anyhow::Result<_>>()?;
    let with_tokens = tokens.iter().filter(|t| t.is_some()).count();
    if with_tokens != 0 && with_tokens != tokens.len() {
        bail!("give a token for every bot (BOT_TOKEN_<NAME>) or for none (fake Telegram); some are missing");
    }
    let fake_mode = with_tokens == 0;
    if args.simulate.is_some() && !fake_mode {
        bail!("--simulate drives the built-in fake Telegram; run it without bot tokens");
    }

    let metrics = Metrics::new();
    let database = args
        .database
        .clone()
        .unwrap_or_else(|| if fake_mode { "sqlite::memory:".into() } else { "sqlite://botfleet-local.db?mode=rwc".into() });
    let (fleet, sql) = app::embedded_fleet_and_sql(&database, metrics.clone()).await?;
    let (_signal, shutdown) = app::shutdown_signal();

    // Without the simulator these are never changed below (fake mode is refused).
    #[cfg_attr(not(feature = "simulator"), allow(unused_mut))]
    let mut fake: Option<FakeTelegram> = None;
    #[cfg_attr(not(feature = "simulator"), allow(unused_mut))]
    let mut api_url = args.telegram_api_url.clone();
    #[cfg_attr(not(feature = "simulator"), allow(unused_mut))]
    let mut tokens: Vec<BotToken> = tokens.into_iter().flatten().collect();
    #[cfg(not(feature = "simulator"))]
    if fake_mode {
        bail!(
            "this bot-runtime was built without the `simulator` feature (the production image), so it has no built-in \
             fake Telegram: give a token for every bot (BOT_TOKEN_<NAME> or BOT_TOKEN_FILE_<NAME>)"
        );
    }
    #[cfg(feature = "simulator")]
    if fake_mode {
        let server = FakeTelegram::bind(args.fake_listen)
            .await
            .with_context(|| format!("cannot start the fake Telegram on {}", args.fake_listen))?;
        let sim = server.sim();
        for cfg in &configs {
            let info = sim.register_bot(&fake_username(&cfg.bot.name)).map_err(|e| anyhow::anyhow!("fake Telegram: {e}"))?;
            tokens.push(BotToken::parse(&info.token).map_err(|e| anyhow::anyhow!("fake Telegram token: {e}"))?);
            for channel in &cfg.bot.required_channels {
                // Several bots may require the same channel.
                let _ = sim.add_channel(channel.trim_start_matches('@'), channel, None);
            }
        }
        api_url = server.api_url();
        fake = Some(server);
    }

    let mut running = Vec::new();
    let mut senders = HashMap::new();
    let mut webhook_bots = HashMap::new();
    for (cfg, token) in configs.drain(..).zip(tokens) {
        let name = cfg.bot.name.clone();
        let (live, tx) = LiveConfig::channel(cfg);
        let api = TelegramApi::new(&api_url, token, &name, metrics.clone());
        let bot = app::start_bot(&fleet, live, api, true, &shutdown).await?;
        webhook_bots.insert(name.clone(), WebhookBot { bot: bot.bot.clone(), secret: None });
        senders.insert(name, tx);
        running.push(bot);
    }
    let started: Vec<_> = running.iter().map(|b| b.bot.clone()).collect();
    let gauges = app::pool_gauges(&fleet, &started, shutdown.clone());
    let watcher = tokio::spawn(watch_manifests(args.manifests.clone(), senders, shutdown.clone()));
    let state = app::app_state(&fleet, webhook_bots);
    let http = tokio::spawn(app::serve_http(args.listen, state, shutdown.clone()));
    // The admin dashboard and API of this fleet (docs/ADMIN.md), on its own address. Its
    // session secret is made for this process: sessions end with it.
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--admin-listen)", args.admin_listen))?;
    let admin_state = crate::admin::AdminState::new(
        fleet.clone(),
        Arc::new(sql),
        crate::admin::AdminSettings {
            fleet_admins: args.fleet_admins.clone(),
            trusted_proxies: Vec::new(),
            secure_cookies: !args.admin_listen.ip().is_loopback(),
            secret: crate::admin::SessionSecret::generate(),
            api_key_per_minute: crate::admin::DEFAULT_API_KEY_PER_MINUTE,
            api_per_minute: crate::admin::DEFAULT_API_PER_MINUTE,
            broadcast_queue: crate::admin::DEFAULT_BROADCAST_QUEUE,
            broadcast_tick: crate::admin::DEFAULT_BROADCAST_TICK,
            analytics_max_age: crate::admin::DEFAULT_ANALYTICS_MAX_AGE,
            thumbs_down_to_review: crate::admin::DEFAULT_THUMBS_DOWN_TO_REVIEW,
            time_zone: crate::admin::FleetZone::utc(),
        },
    );
    let admin_addr = admin_listener.local_addr().unwrap_or(args.admin_listen);
    let admin_http = tokio::spawn(crate::admin::serve(admin_listener, admin_state, shutdown.clone()));
    println!("Admin dashboard: http://{admin_addr}/ (API: /api/v1, OpenAPI: /api/v1/openapi.json; docs/ADMIN.md)");

    if let Some(fake) = &fake {
        let names: Vec<String> = running.iter().map(|b| format!("@{}", fake_username(&b.bot.name))).collect();
        print_fake_guide(&fake.api_url(), &names, args.listen);
    } else {
        println!("{} bot(s) polling Telegram; metrics on http://{}/metrics. Ctrl-C stops.", running.len(), args.listen);
    }

    let result = match (args.simulate, &fake) {
        #[cfg(not(feature = "simulator"))]
        (Some(_), Some(fake)) => match *fake {},
        #[cfg(feature = "simulator")]
        (Some(n), Some(fake)) => {
            let bots: Vec<(String, String)> = running.iter().map(|b| (b.bot.name.clone(), fake_username(&b.bot.name))).collect();
            let cfgs: Vec<_> = running.iter().map(|b| b.bot.cfg()).collect();
            let how = simulate::Behaviour {
                messages: args.messages,
                think: std::time::Duration::from_millis(args.think_ms),
                buyers_percent: args.buyers,
            };
            let summary = simulate::run(&fake.sim(), &bots, &cfgs, n, &how, &metrics).await;
            println!("{summary}");
            let _ = _signal.send(true);
            Ok(())
        }
        _ => {
            let mut rx = shutdown.clone();
            while !*rx.borrow() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
            Ok(())
        }
    };
    for bot in running {
        bot.join().await;
    }
    let _ = gauges.await;
    let _ = watcher.await;
    if let Ok(Err(e)) = admin_http.await {
        tracing::warn!(error = %e, "admin HTTP server");
    }
    if let Ok(Err(e)) = http.await {
        tracing::warn!(error = %e, "HTTP server");
    }
    if let Some(fake) = fake {
        fake.stop().await;
    }
    result
}

/// Without the `simulator` feature no fake Telegram exists: a value of this type cannot be
/// made, so the fake-mode paths above are statically unreachable.
#[cfg(not(feature = "simulator"))]
enum FakeTelegram {}

#[cfg(not(feature = "simulator"))]
impl FakeTelegram {
    fn api_url(&self) -> String {
        match *self {}
    }
    async fn stop(self) {
        match self {}
    }
}

fn print_fake_guide(api: &str, bots: &[String], listen: SocketAddr) {
    let first = bots.first().map(|b| b.trim_start_matches('@').to_string()).unwrap_or_default();
    println!(
        "\nBotFleet local: {} bot(s) {} on a fake Telegram at {api}\n\
         Play a user with its /sim API (see tests/README.md), for example:\n\
         \x20 B={api}\n\
         \x20 curl -s -XPOST $B/sim/users -d '{{\"first_name\":\"Ann\",\"language_code\":\"en\"}}'\n\
         \x20 curl -s -XPOST $B/sim/send  -d '{{\"bot\":\"{first}\",\"user\":100000001,\"text\":\"/start\"}}'\n\
         \x20 curl -s \"$B/sim/inbox?user=100000001\"          # what the bot answered (buttons included)\n\
         \x20 curl -s -XPOST $B/sim/press -d '{{\"bot\":\"{first}\",\"user\":100000001,\"message_id\":<id>,\"data\":\"terms:ok\"}}'\n\
         Metrics: http://{listen}/metrics · Ctrl-C stops.\n",
        bots.len(),
        bots.join(", "),
    );
}

/// Re-resolves the manifests when a file changes (every 2 s), so prices and limits change
/// without a restart, as they do in a cluster.
async fn watch_manifests(
    dir: PathBuf,
    senders: HashMap<String, tokio::sync::watch::Sender<Arc<ResolvedBotConfig>>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut last = snapshot(&dir);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        let now = snapshot(&dir);
        if now == last {
            continue;
        }
        last = now;
        match read_manifests(&dir).and_then(|m| resolve_all(&m)) {
            Ok(configs) => {
                for cfg in configs {
                    if let Some(tx) = senders.get(&cfg.bot.name) {
                        tracing::info!(bot = %cfg.bot.name, hash = %cfg.hash(), "configuration reloaded from the manifests");
                        let _ = tx.send(Arc::new(cfg));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "changed manifests ignored; keeping the previous configuration"),
        }
    }
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let _ = yaml_files(dir, &mut files);
    files.sort();
    files.into_iter().map(|f| (f.clone(), std::fs::read_to_string(&f).unwrap_or_default())).collect()
}
