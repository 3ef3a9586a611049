//! One bot as the runtime sees it (its configuration, its Bot API client) and the fleet-wide
//! stores it shares with every other bot of its pool; plus [`Effects`], what handling one
//! update (or timer) produces before it is committed.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use botfleet_crds::resolved::ResolvedBotConfig;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::config::LiveConfig;
use crate::hot::{HotError, HotState, Job, Lane, MessageRef};
use crate::identity::BotId;
use crate::matching::{MatchError, MatchPool, Member};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, User};
use crate::telegram::{TelegramApi, TgError};
use crate::texts::{Lang, Texts};

/// What every bot of this process shares: the stores and the metrics.
pub struct Fleet {
    pub hot: Arc<dyn HotState>,
    pub store: Arc<dyn Store>,
    pub matcher: Arc<dyn MatchPool>,
    pub metrics: Metrics,
    /// This replica's identity for leases (pod name, or a random id).
    pub replica: String,
    /// Outbox doorbells of the bots served by this process: a commit rings the recipient's
    /// bell so a local consumer starts at once (others find the job by polling).
    bells: RwLock<HashMap<String, Arc<Notify>>>,
    /// Per bot: rung with its bell, for the outbox's watcher (one waiter; a ring while it is
    /// busy is kept for its next wait).
    watch_bells: RwLock<HashMap<String, Arc<Notify>>>,
    /// When this process last moved each chat's idle timer.
    idle_touched: std::sync::Mutex<HashMap<String, i64>>,
    /// Per bot: whether this process queues the bot's webhook updates behind its inbound queue.
    pub inbound: crate::ingress::inbound::Gate,
    /// Per bot: its interactive outbox depth, sampled for admission control by egress.
    pub egress: crate::ingress::admission::Egress,
    /// The supervised background workers' deaths (/healthz).
    pub health: Arc<crate::health::Health>,
    /// Cross-bot media limits and this process's download/upload slots.
    pub media: crate::delivery::media::MediaRelays,
    /// The fleet admins from the registry (written by the admin role), and when they were read.
    fleet_admins: tokio::sync::Mutex<Option<(std::time::Instant, Arc<Vec<i64>>)>>,
    /// How long the fleet admins read are kept (ms): [`FLEET_ADMINS_FOR`] unless a test set it.
    fleet_admins_for_ms: std::sync::atomic::AtomicU64,
}

/// How long a process keeps the fleet admins it read before reading them again (also how often
/// a bot's command menu follows a change of them: `chat::telegram_menu::keep`).
const FLEET_ADMINS_FOR: std::time::Duration = std::time::Duration::from_secs(60);

impl Fleet {
    pub fn new(hot: Arc<dyn HotState>, store: Arc<dyn Store>, matcher: Arc<dyn MatchPool>, metrics: Metrics, replica: String) -> Arc<Self> {
        Self::with_media(hot, store, matcher, metrics, replica, crate::delivery::media::MediaLimits::default())
    }

    /// [`Fleet::new`] with these media limits (`serve`'s flags).
    pub fn with_media(
        hot: Arc<dyn HotState>,
        store: Arc<dyn Store>,
        matcher: Arc<dyn MatchPool>,
        metrics: Metrics,
        replica: String,
        media: crate::delivery::media::MediaLimits,
    ) -> Arc<Self> {
        Arc::new(Self {
            hot,
            store,
            matcher,
            metrics,
            replica,
            bells: RwLock::new(HashMap::new()),
            watch_bells: RwLock::new(HashMap::new()),
            idle_touched: std::sync::Mutex::new(HashMap::new()),
            inbound: crate::ingress::inbound::Gate::default(),
            egress: crate::ingress::admission::Egress::default(),
            health: Arc::default(),
            media: crate::delivery::media::MediaRelays::new(media),
            fleet_admins: tokio::sync::Mutex::new(None),
            fleet_admins_for_ms: std::sync::atomic::AtomicU64::new(FLEET_ADMINS_FOR.as_millis() as u64),
        })
    }

    /// How long the fleet admins read are kept, and how often the menus follow them.
    pub fn fleet_admins_for(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.fleet_admins_for_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Shortens (tests) how long the fleet admins read are kept.
    pub fn set_fleet_admins_for(&self, every: std::time::Duration) {
        self.fleet_admins_for_ms.store(every.as_millis().max(1) as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// The fleet admins (the chart's `admin.fleetAdmins`, registered by the admin role), read
    /// at most once a minute; an empty list while the registry cannot be read (their in-bot
    /// commands wait for it; a bot's own admins do not).
    pub async fn fleet_admins(&self) -> Arc<Vec<i64>> {
        let mut cached = self.fleet_admins.lock().await;
        if let Some((at, ids)) = cached.as_ref()
            && at.elapsed() < self.fleet_admins_for()
        {
            return ids.clone();
        }
        match self.store.fleet_admins().await {
            Ok(ids) => {
                let ids = Arc::new(ids);
                *cached = Some((std::time::Instant::now(), ids.clone()));
                ids
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the fleet admins");
                cached.as_ref().map(|(_, ids)| ids.clone()).unwrap_or_default()
            }
        }
    }

    pub fn bell(&self, bot: &str) -> Arc<Notify> {
        if let Some(b) = self.bells.read().unwrap_or_else(|p| p.into_inner()).get(bot) {
            return b.clone();
        }
        self.bells.write().unwrap_or_else(|p| p.into_inner()).entry(bot.to_string()).or_default().clone()
    }

    /// Copies the person's blocks and reports, both ways, from SQL into this pool's block
    /// lists at each search: a block is the person's and holds in every pool, but the
    /// matching store keeps lists per pool (one hash tag per pool), and the embedded store
    /// starts empty after a restart. Both directions, because the other person may have been
    /// waiting in this pool since before the block was made elsewhere. One indexed SQL read
    /// per search (never per message).
    pub async fn restore_blocks(&self, pool: &str, member: &Member) -> Result<(), HandleError> {
        let (mine, theirs) = tokio::join!(self.store.blocked_by(member.user), self.store.blockers_of(member.user));
        for other in mine? {
            self.matcher.block(pool, member.user, other).await?;
        }
        for blocker in theirs? {
            self.matcher.block(pool, blocker, member.user).await?;
        }
        Ok(())
    }

    /// True (and noted) if the idle timer `id` was not moved by this process within `every_ms`.
    pub fn idle_touch_due(&self, id: &str, now_ms: i64, every_ms: i64) -> bool {
        let mut touched = self.idle_touched.lock().unwrap_or_else(|p| p.into_inner());
        if touched.get(id).is_some_and(|t| now_ms - t < every_ms) {
            return false;
        }
        if touched.len() > 200_000 {
            touched.retain(|_, t| now_ms - *t < every_ms);
        }
        touched.insert(id.to_string(), now_ms);
        true
    }

    /// The outbox watcher's bell of a bot (see `delivery::outbox::watch_idle_shards`).
    pub fn watch_bell(&self, bot: &str) -> Arc<Notify> {
        if let Some(b) = self.watch_bells.read().unwrap_or_else(|p| p.into_inner()).get(bot) {
            return b.clone();
        }
        self.watch_bells.write().unwrap_or_else(|p| p.into_inner()).entry(bot.to_string()).or_default().clone()
    }

    pub fn ring(&self, jobs: &[Job]) {
        let bells = self.bells.read().unwrap_or_else(|p| p.into_inner());
        let watchers = self.watch_bells.read().unwrap_or_else(|p| p.into_inner());
        for job in jobs {
            if let Some(b) = bells.get(&job.bot) {
                b.notify_waiters();
                b.notify_one();
            }
            if let Some(w) = watchers.get(&job.bot) {
                w.notify_one();
            }
        }
    }
}

pub struct Bot {
    /// The BotInstance's name: how members, outboxes and timers name the bot inside its pool.
    pub name: String,
    /// `<namespace>/<name>`: the bot fleet-wide (SQL rows, logs). See identity.rs.
    pub id: BotId,
    /// The matching pool as keyed, `<namespace>/<pool>`, fixed at start (moving a running bot
    /// to another pool would orphan its chats; a new pool takes effect on restart).
    pub pool: String,
    /// The pool's own name: the `pool` label of metrics (the namespace is the scrape target's).
    pub pool_label: String,
    /// The SQL store as this bot's namespace sees it (bot names in, bot ids stored).
    pub store: Arc<dyn Store>,
    pub config: LiveConfig,
    pub api: TelegramApi,
    pub fleet: Arc<Fleet>,
    /// Signs and verifies invoice payloads (payload.rs), read at start.
    pub payload_keys: Arc<crate::payload::PayloadKeys>,
    /// The bot's @username (for invite links), asked of Telegram (`getMe`) when first needed.
    pub username: tokio::sync::OnceCell<String>,
    /// Poked after a payment or a refund: the bot reads its Stars balance again soon
    /// (roles/app.rs, `keep_star_balance`).
    pub star_balance_due: tokio::sync::Notify,
    /// The profiles of this bot's members who are chatting, as read at their last message
    /// (chat/sender_cache.rs): a relayed message reads no profile from the database.
    pub chatting: crate::chat::sender_cache::ChattingSenders,
    /// Paid broadcasts of this bot that Telegram refused for lack of Stars (delivery/outbox.rs):
    /// their remaining queued messages are counted as failed without a call.
    pub out_of_stars: std::sync::Mutex<std::collections::HashSet<i64>>,
}

impl Bot {
    pub fn cfg(&self) -> Arc<ResolvedBotConfig> {
        self.config.current()
    }
    pub fn member(&self, user: i64) -> Member {
        Member::new(self.name.clone(), user)
    }
    pub fn metrics(&self) -> &Metrics {
        &self.fleet.metrics
    }

    /// The bot's @username, from `getMe` once per process (a failure is retried at the next need).
    pub async fn username(&self) -> Result<String, crate::telegram::TgError> {
        let name = self
            .username
            .get_or_try_init(|| async {
                let me = self.api.call("getMe", &serde_json::json!({})).await?;
                me["username"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| crate::telegram::TgError::Transport("getMe answered without a username".into()))
            })
            .await?;
        Ok(name.clone())
    }
}

/// Why handling failed in a way worth retrying (the update is given back, Telegram redelivers).
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error(transparent)]
    Hot(#[from] HotError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Matching(#[from] MatchError),
    #[error("Telegram: {0}")]
    Telegram(#[from] TgError),
}

impl HandleError {
    /// A dependency that is down or slow (Redis, the database, Telegram's 5xx / network):
    /// retrying later succeeds, so the update is retried for as long as Telegram keeps it.
    /// Anything else repeats the same way on every attempt (unexpected stored data, a
    /// refusal from Telegram): the update is retried a few times, then abandoned (the job
    /// lifecycle policy in ARCHITECTURE.md).
    pub fn is_outage(&self) -> bool {
        match self {
            HandleError::Hot(HotError::Unavailable(_)) => true,
            HandleError::Store(StoreError::Unavailable(_)) => true,
            HandleError::Matching(MatchError::Unavailable(_)) => true,
            HandleError::Telegram(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// A steady tick for a background loop that ends on shutdown.
pub struct Ticker {
    interval: tokio::time::Interval,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Ticker {
    pub fn new(every: Duration, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { interval, shutdown }
    }

    /// Waits for the next tick; false once the process is shutting down.
    pub async fn tick(&mut self) -> bool {
        tokio::select! {
            _ = self.interval.tick() => {}
            _ = self.shutdown.changed() => {}
        }
        !*self.shutdown.borrow()
    }
}

pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// What handling produced: outbox jobs, committed atomically with the update's done-mark.
pub struct Effects<'a> {
    pub bot: &'a Bot,
    pub now_ms: i64,
    pub jobs: Vec<Job>,
    /// Identifies the update or timer being handled, for [`Effects::once`].
    pub memo: Option<String>,
    /// Answers to inline-button presses (callback query id, text on the button), sent once the
    /// update's effects are committed: a press whose commit failed is answered by its retry.
    pub answers: Vec<(String, Option<String>)>,
    /// A retry of an update whose earlier attempt failed (its clock was kept): what the first
    /// attempt counted against the sender (their per-user budget) is not counted again.
    pub retry: bool,
}

const MEMO_TTL: Duration = Duration::from_secs(3600);

impl<'a> Effects<'a> {
    pub fn new(bot: &'a Bot, now_ms: i64, memo: Option<String>) -> Self {
        Self { bot, now_ms, jobs: Vec::new(), memo, answers: Vec::new(), retry: false }
    }

    pub fn hot(&self) -> &dyn HotState {
        self.bot.fleet.hot.as_ref()
    }
    pub fn store(&self) -> &dyn Store {
        self.bot.store.as_ref()
    }
    pub fn matcher(&self) -> &dyn MatchPool {
        self.bot.fleet.matcher.as_ref()
    }
    pub fn pool(&self) -> &str {
        &self.bot.pool
    }

    /// Runs a step that changes shared state and can't simply be repeated (a match, ending a
    /// chat) at most once per update: its result is remembered under the update's id, so a
    /// retried update (the first attempt died before its commit) sees the same result and
    /// produces the same messages. The remaining window — a crash between the step and the
    /// memo write, two Redis calls apart — is documented in ARCHITECTURE.md.
    pub async fn once<F, Fut>(&self, step: &str, f: F) -> Result<Option<String>, HandleError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>, HandleError>>,
    {
        let Some(memo) = &self.memo else {
            return f().await;
        };
        let name = format!("memo:{memo}:{step}");
        if let Some(v) = self.hot().get_ref(self.pool(), &name).await? {
            return Ok(if v.is_empty() { None } else { Some(v) });
        }
        let result = f().await?;
        self.hot().put_ref(self.pool(), &name, result.as_deref().unwrap_or(""), MEMO_TTL).await?;
        Ok(result)
    }

    /// Whether a `once` step already ran for this update (so this is a retry).
    pub async fn remembered(&self, step: &str) -> Result<bool, HandleError> {
        let Some(memo) = &self.memo else { return Ok(false) };
        Ok(self.hot().get_ref(self.pool(), &format!("memo:{memo}:{step}")).await?.is_some())
    }

    /// A message from `member`'s bot to them (HTML), on the interactive lane.
    pub fn say(&mut self, to: &Member, text: String, markup: Option<Value>) {
        let mut params = json!({ "chat_id": to.user, "text": text, "parse_mode": "HTML", "link_preview_options": {"is_disabled": true} });
        if let Some(m) = markup {
            params["reply_markup"] = m;
        }
        self.push(Job::to(to, Lane::Interactive, "sendMessage", params));
    }

    pub fn push(&mut self, mut job: Job) {
        job.enqueued_ms = self.now_ms;
        self.jobs.push(job);
    }

    /// The last job pushed (to adjust it: save its message id, …).
    pub fn last(&mut self) -> Option<&mut Job> {
        self.jobs.last_mut()
    }
}

/// A member's language and profile, as far as messages to them need it.
pub struct Audience {
    pub lang: Lang,
    pub user: Option<User>,
}

pub fn texts() -> &'static Texts {
    Texts::get()
}

/// The persistent main-menu keyboard.
pub fn menu_keyboard(lang: Lang) -> Value {
    let t = texts();
    json!({
        "keyboard": [
            [{"text": t.raw(lang, "menu_find")}],
            [{"text": t.raw(lang, "menu_vip")}, {"text": t.raw(lang, "menu_profile")}, {"text": t.raw(lang, "menu_help")}],
        ],
        "resize_keyboard": true,
        "is_persistent": true,
    })
}

/// The keyboard during a chat; with the Lock button where the bot sells lock chat.
pub fn chat_keyboard(lang: Lang, lock: bool) -> Value {
    let t = texts();
    let mut rows = vec![
        json!([{"text": t.raw(lang, "chat_next")}, {"text": t.raw(lang, "chat_stop")}]),
        json!([{"text": t.raw(lang, "chat_report")}, {"text": t.raw(lang, "chat_block")}]),
    ];
    if lock {
        rows.push(json!([{"text": t.raw(lang, "chat_lock")}]));
    }
    json!({
        "keyboard": rows,
        "resize_keyboard": true,
        "is_persistent": true,
    })
}

pub fn inline(rows: Vec<Vec<(String, String)>>) -> Value {
    let rows: Vec<Vec<Value>> =
        rows.into_iter().map(|row| row.into_iter().map(|(text, data)| json!({"text": text, "callback_data": data})).collect()).collect();
    json!({ "inline_keyboard": rows })
}

pub fn remove_keyboard() -> Value {
    json!({ "remove_keyboard": true })
}

/// The reply-map reference of a message in a member's chat.
pub fn message_ref(member: &Member, message_id: i64) -> MessageRef {
    MessageRef { member: member.to_string(), message_id }
}
