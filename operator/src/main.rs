//! The operator binary: `operator run` (the controllers, behind leader election, with
//! /metrics, /healthz and /readyz) and `operator check-token` (validate a token file).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use botfleet_crds::token::BotToken;
use botfleet_operator::bot::build::{SecretRef, Settings};
use botfleet_operator::metrics::Metrics;
use botfleet_operator::telegram::{DEFAULT_API_URL, TelegramClient};
use clap::{Parser, Subcommand};
use futures::FutureExt as _;
use kube::Client;
use kube::runtime::events::Reporter;
use kube_lease_manager::LeaseManagerBuilder;

#[derive(Debug, Parser)]
#[command(name = "operator", about = "BotFleet Kubernetes operator")]
struct Args {
    /// Telegram Bot API base URL (tests and local runs point it at the fake Telegram).
    #[arg(long, env = "TELEGRAM_API_URL", default_value = DEFAULT_API_URL)]
    telegram_api_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controllers (leader-elected) with /metrics, /healthz and /readyz.
    Run(RunArgs),
    /// Validate a bot token with getMe; prints the bot's username and the token's fingerprint.
    CheckToken {
        /// File holding the token (as mounted from a Secret).
        #[arg(long)]
        token_file: std::path::PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Namespaces to watch, comma-separated; empty: all namespaces.
    #[arg(long, env = "WATCH_NAMESPACES", default_value = "", value_delimiter = ',')]
    watch_namespaces: Vec<String>,
    /// The bot-runtime image the operator puts into bot Deployments.
    #[arg(long, env = "RUNTIME_IMAGE")]
    runtime_image: String,
    /// Other images a BotInstance may name in spec.image, comma-separated: a repository (any
    /// tag or digest of it) or a prefix ending in '/'. Empty: only --runtime-image.
    #[arg(long, env = "RUNTIME_ALLOWED_IMAGES", default_value = "", value_delimiter = ',')]
    allowed_images: Vec<String>,
    /// Extra labels for every bot's ServiceMonitor, comma-separated key=value pairs.
    #[arg(long, env = "RUNTIME_SERVICE_MONITOR_LABELS", default_value = "")]
    service_monitor_labels: String,
    /// A NetworkPolicy per bot, as JSON {"metrics": [peers], "webhook": [peers]}; empty: none.
    #[arg(long, env = "RUNTIME_NETWORK_POLICY", default_value = "")]
    network_policy: String,
    /// Fleet-wide runtime settings (JSON object, the chart's `runtime.settings`): what every
    /// bot's pods get as environment (DATABASE_POOL_SIZE, MEDIA_*, EGRESS_BACKLOG_SECONDS).
    #[arg(long, env = "RUNTIME_SETTINGS", default_value = "")]
    runtime_settings: String,
    #[arg(long, env = "RUNTIME_DATABASE_SECRET")]
    database_secret: String,
    #[arg(long, env = "RUNTIME_DATABASE_SECRET_KEY", default_value = "url")]
    database_secret_key: String,
    #[arg(long, env = "RUNTIME_REDIS_SECRET")]
    redis_secret: String,
    #[arg(long, env = "RUNTIME_REDIS_SECRET_KEY", default_value = "url")]
    redis_secret_key: String,
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    #[arg(long, env = "LEASE_NAME", default_value = "botfleet-operator")]
    lease_name: String,
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pod_namespace: String,
    #[arg(long, env = "POD_NAME", default_value = "botfleet-operator")]
    pod_name: String,
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    match args.command {
        Command::CheckToken { token_file } => {
            let raw = std::fs::read_to_string(&token_file).with_context(|| format!("reading {}", token_file.display()))?;
            let token = BotToken::parse(&raw).with_context(|| format!("{} does not hold a bot token", token_file.display()))?;
            let me = TelegramClient::new(&args.telegram_api_url).get_me(&token).await?;
            println!("@{} (id {}) token {}", me.username, me.id, token.fingerprint());
            Ok(())
        }
        Command::Run(run) => serve(run, args.telegram_api_url).await,
    }
}

async fn serve(args: RunArgs, telegram_api_url: String) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let app = {
        let (m, r) = (metrics.clone(), ready.clone());
        Router::new().route("/metrics", get(move || async move { m.render() })).route("/healthz", get(|| async { "ok" })).route(
            "/readyz",
            get(move || async move {
                if r.load(Ordering::Relaxed) { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "starting") }
            }),
        )
    };
    let listener =
        tokio::net::TcpListener::bind(args.metrics_addr).await.with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });

    let client = Client::try_default().await.context("cannot configure the Kubernetes client")?;
    client.apiserver_version().await.context("cannot reach the Kubernetes API")?;
    ready.store(true, Ordering::Relaxed);
    let service_monitor_labels = parse_labels(&args.service_monitor_labels).context("RUNTIME_SERVICE_MONITOR_LABELS")?;
    let network_policy = match args.network_policy.trim() {
        "" => None,
        json => Some(serde_json::from_str(json).context("RUNTIME_NETWORK_POLICY is not {\"metrics\": [...], \"webhook\": [...]}")?),
    };
    let settings = Settings {
        network_policy,
        runtime_image: args.runtime_image.clone(),
        service_monitor_labels,
        allowed_images: args.allowed_images.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        database_secret: SecretRef { name: args.database_secret.clone(), key: args.database_secret_key.clone() },
        redis_secret: SecretRef { name: args.redis_secret.clone(), key: args.redis_secret_key.clone() },
        telegram_api_url: telegram_api_url.clone(),
        runtime: match args.runtime_settings.trim() {
            "" => Default::default(),
            json => serde_json::from_str(json).context("RUNTIME_SETTINGS is not the chart's runtime.settings as JSON")?,
        },
    };
    let reporter = Reporter { controller: "botfleet-operator".into(), instance: Some(args.pod_name.clone()) };
    let namespaces: Vec<Option<String>> = {
        let listed: Vec<Option<String>> =
            args.watch_namespaces.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).map(|s| Some(s.to_string())).collect();
        if listed.is_empty() { vec![None] } else { listed }
    };

    let (leader_tx, leader_rx) = tokio::sync::watch::channel(!args.leader_election);
    metrics.set_leader(!args.leader_election);
    if args.leader_election {
        let manager = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
            .with_namespace(&args.pod_namespace)
            .with_identity(&args.pod_name)
            .with_duration(15)
            .with_grace(5)
            .build()
            .await
            .context("cannot set up leader election")?;
        let (mut channel, _task) = manager.watch().await;
        let leader_metrics = metrics.clone();
        tokio::spawn(async move {
            while channel.changed().await.is_ok() {
                let leading = *channel.borrow_and_update();
                tracing::info!(leading, "leadership changed");
                leader_metrics.set_leader(leading);
                if leader_tx.send(leading).is_err() {
                    break;
                }
            }
        });
    }

    // Kubernetes stops pods with SIGTERM; Ctrl-C for local runs.
    let mut terminate = Box::pin(terminate_signal());
    loop {
        // Wait to lead (or for the end).
        let mut rx = leader_rx.clone();
        tokio::select! {
            _ = rx.wait_for(|leading| *leading) => {}
            _ = &mut terminate => return Ok(()),
        }
        tracing::info!("leading: starting controllers");
        let lost = {
            let mut rx = leader_rx.clone();
            async move {
                let _ = rx.wait_for(|leading| !*leading).await;
            }
            .boxed()
            .shared()
        };
        // One registry of bots for all namespaces (fresh per leadership term, filled by the runs).
        let fleet = botfleet_operator::bot::fleet::Fleet::default();
        let runs = namespaces.iter().map(|ns| {
            botfleet_operator::controller::run(
                client.clone(),
                ns.clone(),
                fleet.clone(),
                TelegramClient::new(&telegram_api_url),
                settings.clone(),
                metrics.clone(),
                reporter.clone(),
                lost.clone(),
            )
        });
        tokio::select! {
            _ = futures::future::join_all(runs) => tracing::warn!("controllers stopped (leadership lost)"),
            _ = &mut terminate => return Ok(()),
        }
    }
}

/// `k=v,k2=v2` → labels (empty: none).
fn parse_labels(text: &str) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
            _ => anyhow::bail!("{pair:?} is not key=value"),
        })
        .collect()
}

async fn terminate_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the operator");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::parse_labels;

    #[test]
    fn service_monitor_labels_are_key_value_pairs() {
        let labels = parse_labels("release=kube-prometheus-stack, team = bots").unwrap();
        assert_eq!(labels.get("release").map(String::as_str), Some("kube-prometheus-stack"));
        assert_eq!(labels.get("team").map(String::as_str), Some("bots"));
        assert!(parse_labels("").unwrap().is_empty());
        assert!(parse_labels("novalue").is_err());
    }
}
