//! Wiring: the stores a process uses (production: Postgres + Redis; embedded: SQLite + memory),
//! the background work of each bot (outbox consumer, timers, poller), the HTTP server, and a
//! clean shutdown on SIGTERM / Ctrl-C.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use botfleet_crds::bot_instance::IngressMode;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::bot::{Bot, Fleet, Ticker};
use crate::config::LiveConfig;
use crate::delivery::media::MediaLimits;
use crate::delivery::{outbox, timers};
use crate::hot::memory::MemoryHot;
use crate::hot::redis::RedisHot;
use crate::identity::{BotId, PoolId};
use crate::ingress::polling;
use crate::ingress::server::{AppState, MAX_IN_FLIGHT, OVERLOAD_GRACE, WebhookBot};
use crate::keys::Keys;
use crate::matching::Tier;
use crate::matching::memory::MemoryPool;
use crate::matching::redis::RedisPool;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::scoped::BotStore;
use crate::store::sql::SqlStore;
use crate::telegram::TelegramApi;

/// Outbox shards per bot: enough parallel chats per bot to use Telegram's 30/s budget even
/// with slow round trips (each shard sends one message at a time).
pub const OUTBOX_SHARDS: u32 = 16;

/// A replica id for leases: the pod name in Kubernetes, else host + pid.
pub fn replica_id() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|s| !s.is_empty())
        .map(|h| format!("{h}-{}", std::process::id()))
        .unwrap_or_else(|| format!("replica-{}-{:08x}", std::process::id(), rand::random::<u32>()))
}

/// Postgres + Redis: any number of replicas of any number of bots.
pub async fn production_fleet(database_url: &str, redis_url: &str, redis_prefix: &str, metrics: Metrics) -> anyhow::Result<Arc<Fleet>> {
    production_fleet_sized(
        database_url,
        crate::store::sql::POSTGRES_MAX_CONNECTIONS,
        redis_url,
        redis_prefix,
        metrics,
        MediaLimits::default(),
    )
    .await
}

/// [`production_fleet`] with `pool_size` Postgres connections per process (`DATABASE_POOL_SIZE`)
/// and these media limits (`MEDIA_*`).
pub async fn production_fleet_sized(
    database_url: &str,
    pool_size: u32,
    redis_url: &str,
    redis_prefix: &str,
    metrics: Metrics,
    media: MediaLimits,
) -> anyhow::Result<Arc<Fleet>> {
    Ok(production_fleet_with(database_url, pool_size, redis_url, redis_prefix, metrics, media).await?.0)
}

/// [`production_fleet_sized`], and the SQL store itself (the admin role's queries need it).
pub async fn production_fleet_and_sql(
    database_url: &str,
    pool_size: u32,
    redis_url: &str,
    redis_prefix: &str,
    metrics: Metrics,
) -> anyhow::Result<(Arc<Fleet>, SqlStore)> {
    production_fleet_with(database_url, pool_size, redis_url, redis_prefix, metrics, MediaLimits::default()).await
}

async fn production_fleet_with(
    database_url: &str,
    pool_size: u32,
    redis_url: &str,
    redis_prefix: &str,
    metrics: Metrics,
    media: MediaLimits,
) -> anyhow::Result<(Arc<Fleet>, SqlStore)> {
    let store = SqlStore::connect_sized(database_url, pool_size).await.context("connecting to the database (DATABASE_URL)")?;
    store.migrate().await.context("applying database migrations")?;
    let client = redis::Client::open(redis_url).context("REDIS_URL is not a valid Redis URL")?;
    let conn = connect_redis(&client).await.context("connecting to Redis (REDIS_URL)")?;
    let keys = Keys::new(redis_prefix);
    let hot = RedisHot::new(conn.clone(), keys.clone(), OUTBOX_SHARDS).with_pubsub(client);
    let matcher = RedisPool::new(conn, keys);
    Ok((Fleet::with_media(Arc::new(hot), Arc::new(store.clone()), Arc::new(matcher), metrics, replica_id(), media), store))
}

/// How long a Redis command may take before it fails, and a connection attempt. The client's
/// defaults (0.5 s and 1 s) failed healthy work whenever Redis paused briefly — an AOF fsync
/// on a slow disk blocks it for up to ~2 s, and a loaded node answers late — and each such
/// failure costs a redelivered update or a failed start (found as CI flakes: a bot that could
/// not start under load). 5 s stays well inside an update's 30 s claim and Telegram's webhook
/// patience, and an outage (connection refused or reset) still fails at once.
pub const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The shared, reconnecting Redis connection of a process, with [`REDIS_RESPONSE_TIMEOUT`].
pub async fn connect_redis(client: &redis::Client) -> redis::RedisResult<redis::aio::ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(REDIS_RESPONSE_TIMEOUT));
    redis::aio::ConnectionManager::new_with_config(client.clone(), config).await
}

/// SQLite + in-process state: one process (`bot-runtime local`).
pub async fn embedded_fleet(database_url: &str, metrics: Metrics) -> anyhow::Result<Arc<Fleet>> {
    Ok(embedded_fleet_and_sql(database_url, metrics).await?.0)
}

/// [`embedded_fleet`], and the SQL store itself (the admin role's queries need it).
pub async fn embedded_fleet_and_sql(database_url: &str, metrics: Metrics) -> anyhow::Result<(Arc<Fleet>, SqlStore)> {
    let store = SqlStore::connect(database_url).await.with_context(|| format!("opening {database_url}"))?;
    store.migrate().await.context("applying database migrations")?;
    let fleet =
        Fleet::new(Arc::new(MemoryHot::new(OUTBOX_SHARDS)), Arc::new(store.clone()), Arc::new(MemoryPool::new()), metrics, replica_id());
    Ok((fleet, store))
}

/// A running bot: its handle and its background tasks.
pub struct RunningBot {
    pub bot: Arc<Bot>,
    tasks: Vec<JoinHandle<()>>,
}

/// The namespace of a resolved bot: manifests run locally may have none, which means
/// `default`, as for kubectl.
fn namespace_of(cfg: &botfleet_crds::resolved::ResolvedBot) -> &str {
    if cfg.namespace.is_empty() { "default" } else { &cfg.namespace }
}

/// Starts a bot's outbox consumer, timers and (in polling mode) its poller, after adopting
/// what the previous release stored under the bot's bare name (see [`adopt_release_n`]).
pub async fn start_bot(
    fleet: &Arc<Fleet>,
    config: LiveConfig,
    api: TelegramApi,
    poll: bool,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<RunningBot> {
    let bot = prepare_bot(fleet, config, api).await?;
    let _ = fleet.bell(&bot.name);
    // Every worker is supervised: restarted if it panics or stops before shutdown, its deaths
    // counted and reported by /healthz when it keeps dying (health.rs).
    macro_rules! worker {
        ($name:literal, $run:path) => {{
            let (b, s) = (bot.clone(), shutdown.clone());
            crate::health::supervise(fleet.health.clone(), fleet.metrics.clone(), bot.name.clone(), $name, shutdown.clone(), move || {
                $run(b.clone(), s.clone())
            })
        }};
    }
    let mut tasks = vec![
        worker!("outbox", outbox::run),
        worker!("timers", timers::run),
        worker!("retire", crate::chat::retire::run),
        worker!("cap_holds", crate::chat::shop::sweep_expired_holds),
        worker!("vip_notices", crate::chat::vip::run),
        worker!("reconcile", crate::chat::reconcile::run),
        // Drains the bot's durable inbound queue (filled by any replica's webhook past its
        // overload grace); polling bots never fill it, so for them it only reads an empty queue.
        worker!("inbound", crate::ingress::inbound::run),
    ];
    if poll {
        tasks.push(worker!("poller", polling::run));
    }
    // The admin role knows the fleet from this registry (it holds no tokens, no cluster access).
    tasks.push(tokio::spawn(keep_registered(bot.clone(), shutdown.clone())));
    // Its Stars balance too, for the overview (the admin role cannot ask Telegram).
    tasks.push(tokio::spawn(keep_star_balance(bot.clone(), shutdown.clone())));
    // The command menu and descriptions per locale, and the admins' menus as admins come and
    // go: a convenience, so in the background and never fatal (every command also works typed).
    tasks.push(tokio::spawn(crate::chat::telegram_menu::keep(bot.clone(), shutdown.clone())));
    Ok(RunningBot { bot, tasks })
}

/// A bot on `fleet` as [`start_bot`] runs it (identity, pool, store scoped to its namespace,
/// release N's state adopted), with nothing started: the handler tests drive it directly.
pub async fn prepare_bot(fleet: &Arc<Fleet>, config: LiveConfig, api: TelegramApi) -> anyhow::Result<Arc<Bot>> {
    let cfg = config.current();
    let namespace = namespace_of(&cfg.bot);
    let id = BotId::new(namespace, &cfg.bot.name).context("the bot's identity")?;
    let pool = PoolId::new(namespace, &cfg.bot.pool).context("the bot's matching pool")?;
    let store: Arc<dyn Store> = Arc::new(BotStore::new(namespace, fleet.store.clone()));
    adopt_release_n(fleet, &id, &pool).await?;
    let bot = Arc::new(Bot {
        name: cfg.bot.name.clone(),
        id,
        pool: pool.to_string(),
        pool_label: pool.name.clone(),
        store,
        config,
        api,
        fleet: fleet.clone(),
        payload_keys: Arc::new(
            crate::payload::PayloadKeys::load(cfg.bot.secrets.payload_key_file.as_deref()).context("the invoice payload keys")?,
        ),
        username: tokio::sync::OnceCell::new(),
        star_balance_due: tokio::sync::Notify::new(),
        chatting: Default::default(),
        out_of_stars: Default::default(),
    });
    Ok(bot)
}

/// Registers the bot's resolved configuration for the admin role (docs/ADMIN.md) now and on
/// every change. A failure is logged and retried at the next change or after a minute: the
/// bot serves its users either way.
async fn keep_registered(bot: Arc<Bot>, mut shutdown: watch::Receiver<bool>) {
    let mut config = bot.config.clone();
    let mut done = false;
    // A failed registration (the database busy or down) is tried again after 1 s, 2, 4, … up
    // to a minute, not a minute later: the admin role does not know the bot until then.
    let mut retry = Duration::from_secs(1);
    loop {
        if !done {
            done = register(&bot).await;
        }
        let wait = if done {
            retry = Duration::from_secs(1);
            Duration::from_secs(60)
        } else {
            let wait = retry;
            retry = (retry * 2).min(Duration::from_secs(60));
            wait
        };
        tokio::select! {
            changed = config.changed() => if changed.is_some() { done = false },
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// How often each replica of a bot reads its Stars balance (`getMyStarBalance`), besides a
/// few seconds after each payment and refund it handles.
pub const STAR_BALANCE_EVERY: Duration = Duration::from_secs(5 * 60);
/// After a payment or a refund: a burst of them costs one read.
const STAR_BALANCE_AFTER_PAYMENT: Duration = Duration::from_secs(2);

/// Reads the bot's Stars balance from Telegram and keeps it in the registry for the admin
/// role's overview, with when it was read: every [`STAR_BALANCE_EVERY`], and soon after a
/// payment or refund (`Bot::star_balance_due`). Every replica reads (an idempotent write; a
/// few calls an hour). A failure is logged; the overview shows the last balance with its age.
async fn keep_star_balance(bot: Arc<Bot>, mut shutdown: watch::Receiver<bool>) {
    // After a failure (Telegram or the database busy or down) the next read comes after 1 s,
    // then 2, 4, … up to the regular interval: an overview is not left with no balance for
    // five minutes because one read at start met a busy moment.
    const FIRST_RETRY: Duration = Duration::from_secs(1);
    let mut retry = FIRST_RETRY;
    loop {
        // Bounded: a read stuck on a busy database or a silent network must not stop the loop.
        let read = match tokio::time::timeout(Duration::from_secs(15), read_star_balance(&bot)).await {
            Ok(read) => read,
            Err(_) => Err(anyhow::anyhow!("the read took more than 15 s")),
        };
        let wait = match read {
            // Not registered yet (the first start): soon again.
            Ok(false) => Duration::from_secs(2),
            Ok(true) => {
                retry = FIRST_RETRY;
                STAR_BALANCE_EVERY
            }
            Err(e) => {
                tracing::warn!(bot = %bot.id, error = %e, retry_in_s = retry.as_secs(), "could not read the bot's Stars balance; retrying");
                let wait = retry;
                retry = (retry * 2).min(STAR_BALANCE_EVERY);
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = bot.star_balance_due.notified() => tokio::time::sleep(STAR_BALANCE_AFTER_PAYMENT).await,
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// One read of the balance into the registry; false if the bot's row is not there yet.
pub async fn read_star_balance(bot: &Bot) -> anyhow::Result<bool> {
    let answer = bot.api.call("getMyStarBalance", &serde_json::json!({})).await?;
    // StarAmount: whole Stars (`amount`, rounded toward 0, may be negative); the nanostar part
    // is left out of the overview.
    let stars = answer["amount"].as_i64().context("getMyStarBalance answered without an amount")?;
    Ok(bot.store.set_star_balance(&bot.name, stars, crate::bot::now_ms()).await?)
}

/// Writes the bot's row of the registry; true on success.
pub async fn register(bot: &Bot) -> bool {
    let cfg = bot.cfg();
    let config = match serde_json::to_string(&*cfg) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(bot = %bot.id, error = %e, "the configuration could not be registered for the admin role");
            return false;
        }
    };
    let registration = crate::store::admin::BotRegistration {
        id: bot.id.to_string(),
        namespace: bot.id.namespace.clone(),
        name: bot.name.clone(),
        pool: bot.pool.clone(),
        admins: cfg.bot.admins.telegram_ids.clone(),
        config,
        config_hash: cfg.hash(),
        now_ms: crate::bot::now_ms(),
    };
    match bot.fleet.store.register_bot(&registration).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(bot = %bot.id, error = %e, "registering the bot for the admin role failed; retrying");
            false
        }
    }
}

/// Release N keyed a bot's SQL rows by its bare name and its pool's Redis keys by the bare
/// pool name; this release namespaces both. At every start (idempotent, safe from every
/// replica at once) the bot adopts its rows and its pool's keys, so chats, queues, outbox
/// jobs, timers and dedupe marks written by release N carry on. Key *values* need no
/// rewriting: inside a pool, bots are still named by their bare names.
pub async fn adopt_release_n(fleet: &Fleet, id: &BotId, pool: &PoolId) -> anyhow::Result<()> {
    let rows = fleet.store.adopt_legacy_bot(&id.name, &id.to_string()).await.context("adopting the previous release's rows")?;
    let keys = fleet.hot.adopt_legacy_pool(&pool.name, &pool.to_string()).await.context("adopting the previous release's Redis keys")?;
    if rows > 0 || keys > 0 {
        tracing::info!(bot = %id, pool = %pool, rows, keys, "adopted state of the previous release");
    }
    Ok(())
}

impl RunningBot {
    /// Stops every task of the bot where it is (a crash, for tests of takeover).
    pub fn abort(self) {
        for t in self.tasks {
            t.abort();
        }
    }

    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Keeps the pool gauges (queue lengths, chats in progress) current: for each running bot's
/// pool (keyed id, metrics label), once.
pub fn pool_gauges(fleet: &Arc<Fleet>, bots: &[Arc<Bot>], shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    let fleet = fleet.clone();
    let mut pools: Vec<(String, String)> = Vec::new();
    for bot in bots {
        if !pools.iter().any(|(p, _)| *p == bot.pool) {
            pools.push((bot.pool.clone(), bot.pool_label.clone()));
        }
    }
    tokio::spawn(async move {
        let mut ticker = Ticker::new(Duration::from_secs(5), shutdown);
        while ticker.tick().await {
            for (pool, label) in &pools {
                for tier in [Tier::Vip, Tier::Free] {
                    if let Ok(n) = fleet.matcher.queue_len(pool, tier).await {
                        fleet.metrics.set_queue_length(label, tier.as_str(), n);
                    }
                }
                if let Ok(n) = fleet.matcher.active_chats(pool).await {
                    fleet.metrics.set_active_chats(label, n);
                }
            }
            if let Ok(n) = fleet.hot.media_reserved().await {
                fleet.metrics.set_media_reserved(n, fleet.media.limits.budget.fleet_bytes);
            }
        }
    })
}

/// Serves HTTP until `shutdown` turns true; in-flight requests finish first.
pub async fn serve_http(addr: SocketAddr, state: AppState, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, "HTTP listening (webhook /telegram/<bot>, /metrics, /healthz, /readyz)");
    serve_listener(listener, state, shutdown).await
}

pub async fn serve_listener(listener: tokio::net::TcpListener, state: AppState, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    crate::ingress::listener::serve(listener, crate::ingress::server::router(state), shutdown).await.context("HTTP server failed")
}

pub fn app_state(fleet: &Arc<Fleet>, bots: HashMap<String, WebhookBot>) -> AppState {
    AppState::new(fleet.clone(), bots, Arc::new(Semaphore::new(MAX_IN_FLIGHT)), OVERLOAD_GRACE)
}

/// Turns true on SIGTERM or Ctrl-C.
pub fn shutdown_signal() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let tx2 = tx.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    let _ = tx2.send(true);
                    return;
                }
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        let _ = tx2.send(true);
    });
    (tx, rx)
}

pub fn polls(config: &LiveConfig) -> bool {
    config.current().bot.ingress.mode == IngressMode::Polling
}
