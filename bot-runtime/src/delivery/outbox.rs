//! The outbox consumer of one bot: sends what handlers (of any bot of the pool) queued for
//! this bot, in per-chat order, within the limits Telegram sets per bot and per chat, shared
//! by every replica of the bot.
//!
//! - Each bot's outbox has N shards (a chat always maps to the same shard). A replica works a
//!   shard only while it holds the shard's lease, so one consumer per shard → per-chat order.
//!   A replica that dies loses its leases within [`SHARD_LEASE`]; another takes the shards
//!   over and finds every unacknowledged job still there. Leases are fenced ([`Fence`]): a
//!   worker sends only while its last renewal is certainly still valid, so a replica that
//!   stalls stops sending before another can take its shard.
//! - A job is acknowledged only after Telegram accepted it (or refused it for good). A crash
//!   between the send and the ack sends that one message again: Telegram has no idempotency
//!   key, so "at least once" is the best any bot can do here; the window is one HTTP answer.
//! - Before each send, one slot is reserved in the shared limiter (per bot and per chat).
//!   A 429 pushes the bot's next slot past `retry_after` for every replica; 5xx and network
//!   errors are retried with backoff; nothing is dropped for being slow.
//! - The interactive lane (chat relay, answers) is always drained before the bulk lane
//!   (search-message refreshes, later broadcasts).
//! - One chat never stalls the others (no head-of-line blocking): a pass pages through the
//!   shard past the jobs of chats that must wait ([`MAX_SCAN`] jobs at most), and a chat's
//!   interactive backlog is capped at [`CHAT_BACKLOG`] jobs (the excess is dropped, counted,
//!   and the sender of a dropped relayed message is told once a minute).
//! - Cheap when throttled: when the bot-wide limit says wait, the pass stops, and every shard
//!   worker of the bot in this process waits for that time without asking again ([`BotGate`]);
//!   a chat the per-chat limit holds is remembered and not asked about again until its time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bot::{Bot, Effects, Ticker, now_ms};
use crate::chat;
use crate::hot::{Budget, Job, Lane, Marker, MessageRef, QueuedJob};
use crate::matching::Member;
use crate::store::EndReason;
use crate::store::admin::{BroadcastAttempt, BroadcastOutcome};
use crate::telegram::{BadRequest, TgError};

pub const SHARD_LEASE: Duration = Duration::from_secs(10);
/// How long a send in flight at shutdown may still take (the pod's grace period is 30 s, and
/// everything else must stop within it too).
const SHUTDOWN_SEND_GRACE: Duration = Duration::from_secs(5);
/// How often a bot's consumer looks for jobs committed by other replicas (jobs from this
/// process ring a bell and are picked up at once): one call for all its shards
/// ([`watch_idle_shards`]), which wakes the idle shard workers that have jobs.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How often a bot's watcher looks when every shard is empty and commits wake it (a backstop
/// for a lost wake message): the idle cost (issue 9: the 100 ms poll cost ≈ 0.1 % of a core).
const QUIET_BACKSTOP: Duration = Duration::from_secs(1);
/// How long an idle shard worker sleeps when nothing wakes it: a backstop only (issue 9: an
/// idle bot's 16 shards each reading Redis every 100 ms cost ≈ 1 % of a core).
const IDLE_BACKSTOP: Duration = Duration::from_secs(5);
/// Reply map entries and saved message ids live this long. They serve replies and edits inside
/// a chat (an edit is relayed only while its chat lasts, and a chat ends after its idle timeout
/// without messages), so six hours covers any chat that is still going; a reply to an older
/// message is sent without its link. (Release N kept them 48 h: ≈ 400 bytes per relayed
/// message for two days; issue 9, defect 14.)
const REF_TTL: Duration = Duration::from_secs(6 * 3600);
/// The most jobs one chat may have queued on the interactive lane. Telegram delivers about one
/// message per second to a chat, so the 20th waits ≈ 20 s; the per-user budget (1/s, burst 5
/// by default) keeps anyone who is not flooding far below it. Jobs beyond it are dropped when
/// the consumer reads them (see [`drain_once`]): they could only arrive minutes late.
pub const CHAT_BACKLOG: usize = 20;
/// Jobs read per page of a shard's lane.
const PAGE: usize = 64;
/// The most sends of one shard in flight at once (each to another chat).
const MAX_BATCH: usize = 32;
/// The first page of a pass when the bot's limit allows at most one send every 10 ms or more.
const FIRST_PAGE_LIMITED: usize = 8;
/// The most jobs one pass looks at per lane (paging past chats that must wait): with the
/// backlog cap, that is the jobs of at least 51 chats held at once in one shard.
pub const MAX_SCAN: usize = 1024;
/// Telegram lets a private chat burst a few messages before the 1/s pace applies.
const CHAT_BURST: u32 = 3;

/// The fence of a shard's worker: it may send only while the lease it was given is certainly
/// still its own — until the moment the last successful renewal started, plus the lease, minus
/// a margin for clock drift. A replica that stalls (CPU starvation, a long GC-like pause, a
/// network partition from Redis) stops sending by itself before its lease can pass to another
/// replica, so two consumers never send a shard's jobs at once (per-chat order, no doubles).
#[derive(Debug, Default)]
pub struct Fence {
    /// Milliseconds since [`anchor`] until which the lease is certainly held; 0: not held.
    valid_until: std::sync::atomic::AtomicU64,
}

/// A monotonic clock for fences (never jumps with the wall clock).
fn anchor() -> std::time::Instant {
    static ANCHOR: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *ANCHOR.get_or_init(std::time::Instant::now)
}

fn mono_ms(at: std::time::Instant) -> u64 {
    at.saturating_duration_since(anchor()).as_millis() as u64
}

/// What a fence gives up of each lease for clock drift between replicas and Redis.
const FENCE_MARGIN: Duration = Duration::from_secs(2);

impl Fence {
    /// A renewal that started at `asked` succeeded.
    pub fn renewed(&self, asked: std::time::Instant, lease: Duration) {
        let until = mono_ms(asked + lease.saturating_sub(FENCE_MARGIN));
        self.valid_until.fetch_max(until, std::sync::atomic::Ordering::SeqCst);
    }
    /// The lease is lost (or its renewal failed): no more sends until renewed.
    pub fn revoke(&self) {
        self.valid_until.store(0, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn holds(&self) -> bool {
        mono_ms(std::time::Instant::now()) < self.valid_until.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Runs the consumer of `bot` until `shutdown` turns true: keeps shard leases and one
/// worker per held shard.
pub async fn run(bot: Arc<Bot>, shutdown: watch::Receiver<bool>) {
    let shards = bot.fleet.hot.outbox_shards();
    let gate = Arc::new(BotGate::default());
    // The paid broadcasts' budget has a gate of its own: it never holds the chats back.
    let paid_gate = Arc::new(BotGate::default());
    let mut workers: HashMap<u32, (JoinHandle<()>, watch::Sender<bool>, Arc<Fence>)> = HashMap::new();
    let holder = format!("{}:{}", bot.fleet.replica, bot.name);
    let idle: Arc<IdleShards> = Arc::new(IdleShards::new(shards));
    let watcher = tokio::spawn(watch_idle_shards(bot.clone(), idle.clone(), shutdown.clone()));
    let mut ticker = Ticker::new(SHARD_LEASE / 3, shutdown);
    let names: Vec<String> = (0..shards).map(|shard| format!("outbox:{}:{shard}", bot.name)).collect();
    while ticker.tick().await {
        // Every shard's lease in one step (one round trip, whatever the shard count).
        let asked = std::time::Instant::now();
        let held_now = match bot.fleet.hot.lease_many(&bot.pool, &names, &holder, SHARD_LEASE).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(bot = %bot.name, error = %e, "cannot renew outbox leases");
                vec![false; names.len()]
            }
        };
        for shard in 0..shards {
            let held = held_now.get(shard as usize).copied().unwrap_or(false);
            match (held, workers.get(&shard)) {
                (true, Some((_, _, fence))) => fence.renewed(asked, SHARD_LEASE),
                (true, None) => {
                    let (tx, rx) = watch::channel(false);
                    let fence = Arc::new(Fence::default());
                    fence.renewed(asked, SHARD_LEASE);
                    let worker =
                        tokio::spawn(work_shard(bot.clone(), shard, [gate.clone(), paid_gate.clone()], fence.clone(), idle.clone(), rx));
                    workers.insert(shard, (worker, tx, fence));
                }
                (false, Some(_)) => {
                    if let Some((handle, stop, fence)) = workers.remove(&shard) {
                        fence.revoke();
                        let _ = stop.send(true);
                        let _ = handle.await;
                    }
                }
                (false, None) => {}
            }
        }
        update_depth_metric(&bot).await;
    }
    watcher.abort();
    for (shard, (handle, stop, _)) in workers {
        let _ = stop.send(true);
        let _ = handle.await;
        let _ = bot.fleet.hot.unlease(&bot.pool, &format!("outbox:{}:{shard}", bot.name), &holder).await;
    }
}

async fn update_depth_metric(bot: &Bot) {
    if let Ok((depth, oldest)) = bot.fleet.hot.outbox_depth(&bot.pool, &bot.name, now_ms()).await {
        bot.metrics().set_outbox(&bot.name, depth, oldest);
    }
}

/// What the bot-wide limit last said, shared by the shard workers of one bot in this process:
/// no worker asks the limiter before this time (ms). Held while a worker asks, so after one
/// "wait" the others learn it without asking.
/// The second field mirrors the limiter's schedule (its TAT, µs: the bot's next slot) as this
/// process took slots or the limiter named it, so the next ask books that slot by its time
/// ([`booked_at`]) rather than at the whole-ms moment the worker got round to asking.
#[derive(Default)]
pub struct BotGate(tokio::sync::Mutex<i64>, std::sync::atomic::AtomicI64);

/// How long before the bot's next slot a worker wakes: it reads its page then and waits the
/// rest, so the limiter is asked at the slot's time, not a page read after it. The per-bot
/// limit has no burst, so every millisecond a send is asked late is lost for good.
const EARLY_MS: i64 = 2;

/// The clock a slot is asked for at (µs since the epoch): the slot the gate mirrors (`slot_us`,
/// the bot's next slot) when the worker is late for it by less than one interval — the wake's
/// lateness (a timer's ms tick, a busy scheduler) then costs no budget, since the limiter books
/// the slot at its own time and the schedule stays one interval per send — else the worker's
/// clock (a stale mirror, another replica took it, or a stall: never more than one interval's
/// worth of past slots is claimed).
fn booked_at(slot_us: i64, now_us: i64, interval_us: i64) -> i64 {
    if slot_us > 0 && slot_us <= now_us && now_us - slot_us < interval_us { slot_us } else { now_us }
}

/// The wall clock in µs since the epoch.
fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// A job of a paid broadcast (`allow_paid_broadcast`): sent under the bot's paid budget.
fn budget_of(job: &Job) -> Budget {
    if job.lane == Lane::Bulk && job.params.get("allow_paid_broadcast").and_then(Value::as_bool) == Some(true) {
        Budget::Paid
    } else {
        Budget::Free
    }
}

/// How often a busy worker (its free passes may stop before the bulk lane) looks for paid-broadcast jobs when it has seen none lately.
const PAID_PROBE: Duration = Duration::from_secs(1);

/// A wait for the bot-wide slot at `at` (ms), from `now`: the worker wakes [`EARLY_MS`] before.
fn until_slot(at: i64, now: i64) -> Pass {
    Pass::Throttled(ms((at - now - EARLY_MS).max(1)))
}

/// Per shard of one bot in this process: whether its worker is idle, and the doorbell that
/// wakes it when [`watch_idle_shards`] sees jobs in it.
pub struct IdleShards {
    shards: Vec<(std::sync::atomic::AtomicBool, tokio::sync::Notify)>,
}

impl IdleShards {
    fn new(shards: u32) -> Self {
        Self { shards: (0..shards).map(|_| (std::sync::atomic::AtomicBool::new(false), tokio::sync::Notify::new())).collect() }
    }
    fn set_idle(&self, shard: u32, idle: bool) {
        if let Some((flag, _)) = self.shards.get(shard as usize) {
            flag.store(idle, std::sync::atomic::Ordering::Relaxed);
        }
    }
    fn any_idle(&self) -> bool {
        self.shards.iter().any(|(flag, _)| flag.load(std::sync::atomic::Ordering::Relaxed))
    }
    /// Wakes the shard's worker if it is idle (a throttled or busy worker keeps its own pace).
    fn wake(&self, shard: u32) {
        if let Some((flag, bell)) = self.shards.get(shard as usize)
            && flag.load(std::sync::atomic::Ordering::Relaxed)
        {
            bell.notify_one();
        }
    }
    async fn woken(&self, shard: u32) {
        match self.shards.get(shard as usize) {
            Some((_, bell)) => bell.notified().await,
            None => std::future::pending().await,
        }
    }
}

/// Asks once how many jobs each of the bot's shards holds (one pipelined round of O(1) XLENs
/// for all shards): wakes this process's idle workers of shards with jobs (jobs other replicas
/// committed), and records the interactive depth for admission control by egress
/// (ingress/admission.rs). How often:
/// - every [`IDLE_POLL`] while any job is queued (admission needs fresh numbers, and jobs
///   drain without anyone committing);
/// - when everything is empty, only when woken — by a commit of this process (the bot's
///   watch bell) or of any other (the store's wake signal, Redis pub/sub) — or every
///   [`QUIET_BACKSTOP`] in case a wake was lost. Without a wake signal (none offered, or its
///   connection lost) it polls every [`IDLE_POLL`] as before, and subscribes again.
async fn watch_idle_shards(bot: Arc<Bot>, idle: Arc<IdleShards>, mut shutdown: watch::Receiver<bool>) {
    use futures::StreamExt as _;
    let bell = bot.fleet.watch_bell(&bot.name);
    let hot = bot.fleet.hot.clone();
    // Ok(None): the store offers no signal (every commit is this process's and rings the bell).
    let mut wakes: Result<Option<crate::hot::WakeStream>, ()> = Err(());
    let mut resubscribe_at = tokio::time::Instant::now();
    let mut quiet = false;
    loop {
        if wakes.is_err() && tokio::time::Instant::now() >= resubscribe_at {
            wakes = hot.outbox_wakes(&bot.pool, &bot.name).await.map_err(|e| {
                tracing::debug!(bot = %bot.name, error = %e, "cannot subscribe to outbox wakes; polling");
            });
            resubscribe_at = tokio::time::Instant::now() + QUIET_BACKSTOP;
        }
        let wait = if quiet && wakes.is_ok() { QUIET_BACKSTOP } else { IDLE_POLL };
        let woken_lost = tokio::select! {
            _ = shutdown.changed() => return,
            _ = bell.notified() => false,
            woken = async {
                match &mut wakes {
                    Ok(Some(stream)) => stream.next().await.is_none(),
                    _ => std::future::pending().await,
                }
            } => woken,
            _ = tokio::time::sleep(wait) => false,
        };
        if *shutdown.borrow() {
            return;
        }
        // Every wake that arrived meanwhile is answered by this one look (a busy bot gets one
        // per commit: they must not pile up).
        let mut lost = woken_lost;
        if let Ok(Some(stream)) = &mut wakes {
            use futures::FutureExt as _;
            while let Some(next) = stream.next().now_or_never() {
                if next.is_none() {
                    lost = true;
                    break;
                }
            }
        }
        if lost {
            tracing::debug!(bot = %bot.name, "the outbox wake connection closed; polling until it is back");
            wakes = Err(());
        }
        match hot.outbox_lengths(&bot.pool, &bot.name).await {
            Ok(lengths) => {
                let now = now_ms();
                let interactive: u64 = lengths.iter().map(|[i, _]| i).sum();
                bot.fleet.egress.record(&bot.name, interactive, now);
                let per_bot = bot.cfg().limits.outbound.per_bot_per_second;
                bot.metrics().set_egress_backlog(&bot.name, bot.fleet.egress.backlog_seconds(&bot.name, per_bot, now));
                let busy = crate::hot::busy_shards(&lengths);
                quiet = busy.is_empty();
                if idle.any_idle() {
                    busy.into_iter().for_each(|shard| idle.wake(shard));
                }
            }
            Err(e) => {
                quiet = false;
                tracing::debug!(bot = %bot.name, error = %e, "cannot look for outbox jobs; the workers' backstop still runs");
            }
        }
        // At most one look per IDLE_POLL however often commits wake it (a busy bot is woken by
        // nearly every commit).
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
}

async fn work_shard(
    bot: Arc<Bot>,
    shard: u32,
    gates: [Arc<BotGate>; 2],
    fence: Arc<Fence>,
    idle: Arc<IdleShards>,
    mut stop: watch::Receiver<bool>,
) {
    let bell = bot.fleet.bell(&bot.name);
    let mut failures = 0u32;
    // Chats the per-chat limit (or a retry) holds, and until when (ms): not asked about before.
    let mut held: HashMap<i64, i64> = HashMap::new();
    // Paid-broadcast jobs (their own budget and pass): seen lately, and when to look next if not.
    let mut paid_active = false;
    let mut paid_probe = std::time::Instant::now();
    loop {
        if *stop.borrow() {
            return;
        }
        let mut saw_paid = false;
        let free = drain_once(&bot, shard, &stop, &gates[0], &fence, &mut held, Budget::Free, &mut saw_paid).await;
        paid_active |= saw_paid;
        // The paid pass (bulk lane, paid jobs only) after the free one, whatever the free
        // budget says: chats go first, and a paid broadcast is not held by the free budget.
        // An idle free pass read every lane, so it would have seen a paid job: no probe then
        // (an idle bot costs nothing more); a busy one may have stopped before the bulk lane.
        let free_idle = matches!(free, Ok(Pass::Idle));
        let pass = if paid_active || (!free_idle && std::time::Instant::now() >= paid_probe) {
            let paid = drain_once(&bot, shard, &stop, &gates[1], &fence, &mut held, Budget::Paid, &mut saw_paid).await;
            paid_active = !matches!(paid, Ok(Pass::Idle));
            if !paid_active {
                paid_probe = std::time::Instant::now() + PAID_PROBE;
            }
            combine(free, paid)
        } else {
            free
        };
        let is_idle = matches!(pass, Ok(Pass::Idle));
        let wait = match pass {
            Ok(Pass::Sent) => {
                failures = 0;
                continue;
            }
            Ok(Pass::Idle) => IDLE_BACKSTOP,
            Ok(Pass::Throttled(d)) => d,
            Err(e) => {
                failures += 1;
                let backoff = Duration::from_millis(200u64.saturating_mul(1 << failures.min(7))).min(Duration::from_secs(30));
                tracing::warn!(bot = %bot.name, shard, error = %e, "outbox pass failed; retrying");
                backoff
            }
        };
        idle.set_idle(shard, is_idle);
        tokio::select! {
            _ = bell.notified() => {}
            _ = idle.woken(shard) => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
        idle.set_idle(shard, false);
    }
}

enum Pass {
    /// Something was sent (or settled): look again at once.
    Sent,
    Idle,
    /// Everything ready is held back by the limiter (or a 429, or backoff) for this long.
    Throttled(Duration),
}

/// The outcome of the free and the paid pass of one round.
fn combine(a: Result<Pass, crate::hot::HotError>, b: Result<Pass, crate::hot::HotError>) -> Result<Pass, crate::hot::HotError> {
    Ok(match (a?, b?) {
        (Pass::Sent, _) | (_, Pass::Sent) => Pass::Sent,
        (Pass::Idle, Pass::Idle) => Pass::Idle,
        (Pass::Throttled(x), Pass::Throttled(y)) => Pass::Throttled(x.min(y)),
        (Pass::Throttled(x), Pass::Idle) | (Pass::Idle, Pass::Throttled(x)) => Pass::Throttled(x),
    })
}

/// One pass over a shard: interactive lane first, then bulk, paging past the jobs of chats
/// that must wait (per-chat order: once a job of a chat waits, later jobs of that chat wait
/// too, in both lanes), while other chats go ahead. Stops as soon as the bot-wide limit says
/// wait. Interactive jobs of a chat beyond [`CHAT_BACKLOG`] are dropped.
///
/// `budget` is the pass's: the free pass sends every job but paid broadcasts' (and says in
/// `saw_paid` that it met one), the paid pass only those, from the bulk lane, under the bot's
/// paid limiter and its own `gate`. A chat's paid-broadcast message is ordered only among the
/// bulk jobs of the paid pass.
#[allow(clippy::too_many_arguments)]
async fn drain_once(
    bot: &Bot,
    shard: u32,
    stop: &watch::Receiver<bool>,
    gate: &BotGate,
    fence: &Fence,
    held: &mut HashMap<i64, i64>,
    budget: Budget,
    saw_paid: &mut bool,
) -> Result<Pass, crate::hot::HotError> {
    let hot = bot.fleet.hot.as_ref();
    let cfg = bot.cfg();
    let limits = &cfg.limits.outbound;
    let rate = match budget {
        Budget::Free => limits.per_bot_per_second,
        Budget::Paid => limits.paid_broadcast_per_second,
    };
    let lanes: &[Lane] = match budget {
        Budget::Free => &[Lane::Interactive, Lane::Bulk],
        Budget::Paid => &[Lane::Bulk],
    };
    // The bot's emission interval, rounded up to the ms: the earliest its next slot can be.
    let bot_interval_ms = match rate {
        0 => 0,
        n => (1000 + i64::from(n) - 1) / i64::from(n),
    };
    // The same interval in µs, rounded up as the limiter rounds it.
    let bot_interval_us = match rate {
        0 => 0,
        n => (1_000_000 + i64::from(n) - 1) / i64::from(n),
    };
    let start = now_ms();
    held.retain(|_, until| *until > start);
    let mut soonest: Option<i64> = held.values().min().copied();
    // Chats with a job not sent in this pass: their later jobs wait too.
    let mut waiting: HashSet<i64> = HashSet::new();
    let mut progressed = false;
    let mut any = false;
    // A bot at its limit sends about one job per pass before the limit says wait: reading a
    // page of 64 jobs (and parsing them) for each send was most of its cost (issue 9, "a bot at
    // its Telegram limit"). So a limited bot reads a small first page, and larger ones only to
    // page past chats that must wait.
    let first_page = if bot_interval_ms >= 10 { FIRST_PAGE_LIMITED } else { PAGE };
    for &lane in lanes {
        let mut after: Option<String> = None;
        let mut scanned = 0usize;
        let mut queued: HashMap<i64, usize> = HashMap::new();
        let mut page_size = first_page;
        // Jobs with their slot reserved, one per chat, sent together (`send_batch`).
        let mut batch: Vec<(String, Job)> = Vec::new();
        loop {
            // Another worker of the bot learnt that the bot must wait: read nothing until then —
            // unless the slot is due within EARLY_MS: then the page is read now and the rest of
            // the wait is spent here.
            let next = *gate.0.lock().await;
            let now = now_ms();
            if next > now + EARLY_MS {
                return Ok(until_slot(next, now));
            }
            let page = hot.outbox_read_after(&bot.pool, &bot.name, shard, lane, after.as_deref(), page_size).await?;
            let now = now_ms();
            if next > now {
                tokio::time::sleep(ms(next - now)).await;
            }
            let full = page.len() == page_size;
            page_size = PAGE;
            for QueuedJob { id, job } in page {
                if *stop.borrow() {
                    return Ok(Pass::Sent);
                }
                if !fence.holds() {
                    // The lease may have passed to another replica: send nothing until renewed.
                    return Ok(Pass::Throttled(Duration::from_millis(200)));
                }
                scanned += 1;
                after = Some(id.clone());
                let job_budget = budget_of(&job);
                if job_budget != budget {
                    // The other pass's job.
                    *saw_paid |= job_budget == Budget::Paid;
                    continue;
                }
                any = true;
                let chat = job.chat_id;
                let ahead = queued.entry(chat).or_default();
                if lane == Lane::Interactive && *ahead >= CHAT_BACKLOG {
                    drop_over_backlog(bot, shard, lane, &id, &job).await?;
                    continue;
                }
                *ahead += 1;
                if waiting.contains(&chat) {
                    continue;
                }
                if held.contains_key(&chat) {
                    waiting.insert(chat);
                    continue;
                }
                // A limited bot's workers ask the limiter one at a time (the gate is held across
                // the call), so after one "wait" the others learn it without asking (defect 13).
                // A fast bot (over 100 sends/s allowed) must not serialize its 16 shards on one
                // round trip each: the gate is only read before and written after the call.
                let serialize = bot_interval_ms >= 10;
                let mut next = Some(gate.0.lock().await);
                let now = now_ms();
                if let Some(at) = next.as_deref().copied().filter(|at| *at > now) {
                    drop(next);
                    return Ok(send_batch(bot, shard, lane, stop, &mut batch, held, &mut soonest, &mut queued, &mut progressed)
                        .await?
                        .unwrap_or(until_slot(at, now)));
                }
                if !serialize {
                    next = None;
                }
                // The slot is booked by its time (µs), not the moment of asking ([`booked_at`]).
                let at_us = booked_at(gate.1.load(std::sync::atomic::Ordering::Relaxed), now_us(), bot_interval_us);
                let slot =
                    hot.reserve_slot_at(&bot.pool, &bot.name, budget, chat, rate, limits.per_chat_per_minute, CHAT_BURST, at_us).await?;
                // The bot's next slot as the limiter set it (TAT, µs): one interval after the
                // slot just taken, or the one it named.
                let next_slot_us = if slot.wait.is_zero() {
                    Some(at_us + bot_interval_us)
                } else if slot.bot_at_us > 0 {
                    Some(slot.bot_at_us)
                } else {
                    None
                };
                if let Some(tat) = next_slot_us.filter(|_| bot_interval_us > 0) {
                    gate.1.store(tat, std::sync::atomic::Ordering::Relaxed);
                }
                let ceil_ms = |us: i64| us.div_euclid(1000) + i64::from(us.rem_euclid(1000) != 0);
                // When the bot may send next (ms): the slot the limiter named — its wait counts
                // from the booked time, which may be a little in the past — else the wait.
                let bot_free_ms = next_slot_us.map_or(now + slot.bot_wait.as_millis() as i64, ceil_ms);
                match next.as_deref_mut() {
                    Some(next) if !slot.bot_wait.is_zero() => *next = bot_free_ms,
                    Some(next) if slot.wait.is_zero() && bot_interval_us > 0 => *next = ceil_ms(at_us + bot_interval_us),
                    Some(_) => {}
                    None if !slot.bot_wait.is_zero() => {
                        let mut next = gate.0.lock().await;
                        *next = (*next).max(bot_free_ms);
                    }
                    None => {}
                }
                drop(next);
                let outcome = match (slot.wait.is_zero(), slot.bot_wait.is_zero()) {
                    (true, _) => "go",
                    (false, false) => "bot_wait",
                    (false, true) => "chat_wait",
                };
                bot.metrics().send_reservation(&bot.name, outcome);
                if !slot.bot_wait.is_zero() {
                    // Nothing of this bot may go before then: stop here (once what already has
                    // its slot is sent).
                    return Ok(send_batch(bot, shard, lane, stop, &mut batch, held, &mut soonest, &mut queued, &mut progressed)
                        .await?
                        .unwrap_or(until_slot(bot_free_ms, now)));
                }
                if slot.wait.is_zero() {
                    // Sent with the other chats' ready jobs of this page, at once (below): one
                    // job per chat per batch, so a chat's own order holds.
                    waiting.insert(chat);
                    batch.push((id, job));
                    if batch.len() >= MAX_BATCH
                        && let Some(pass) =
                            send_batch(bot, shard, lane, stop, &mut batch, held, &mut soonest, &mut queued, &mut progressed).await?
                    {
                        return Ok(pass);
                    }
                } else {
                    let until = now_ms() + slot.wait.as_millis() as i64;
                    held.insert(chat, until);
                    waiting.insert(chat);
                    soonest = Some(soonest.map_or(until, |s| s.min(until)));
                }
            }
            if let Some(pass) = send_batch(bot, shard, lane, stop, &mut batch, held, &mut soonest, &mut queued, &mut progressed).await? {
                return Ok(pass);
            }
            if !full || scanned >= MAX_SCAN {
                break;
            }
        }
    }
    Ok(if progressed {
        Pass::Sent
    } else if !any {
        Pass::Idle
    } else {
        Pass::Throttled(soonest.map_or(IDLE_POLL, |s| ms((s - now_ms()).max(1))))
    })
}

fn ms(v: i64) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

/// A chat already has [`CHAT_BACKLOG`] jobs queued: this one is dropped (and counted); the
/// sender of a relayed message is told once a minute that it could not be delivered.
async fn drop_over_backlog(bot: &Bot, shard: u32, lane: Lane, id: &str, job: &Job) -> Result<(), crate::hot::HotError> {
    let hot = bot.fleet.hot.as_ref();
    hot.outbox_ack(&bot.pool, &bot.name, shard, lane, id).await?;
    super::media::release(bot, job).await;
    bot.metrics().backlog_dropped(&bot.name);
    tracing::debug!(bot = %bot.name, method = %job.method, "chat backlog full; job dropped");
    if let Some(origin) = &job.origin {
        let once = format!("backlog:{}", origin.member);
        if hot.allow(&bot.pool, &once, 1, Duration::from_secs(60), 1, now_ms()).await? {
            tell_sender_it_failed(bot, job).await;
        }
    }
    Ok(())
}

/// Sends the batch's jobs (each of another chat, each with its slot reserved) at once and
/// settles each: acknowledged when done (or refused for good), held for its retry time
/// otherwise. Sends of different chats are independent, so a shard's throughput is no longer
/// one Bot API round trip at a time (issue 9: a replica's egress was latency-bound at ≈ 300/s).
/// At shutdown the sends in flight get [`SHUTDOWN_SEND_GRACE`]; those that finish are settled,
/// the rest are left unacknowledged for the next consumer (`Some(Pass::Sent)`).
#[allow(clippy::too_many_arguments)]
async fn send_batch(
    bot: &Bot,
    shard: u32,
    lane: Lane,
    stop: &watch::Receiver<bool>,
    batch: &mut Vec<(String, Job)>,
    held: &mut HashMap<i64, i64>,
    soonest: &mut Option<i64>,
    queued: &mut HashMap<i64, usize>,
    progressed: &mut bool,
) -> Result<Option<Pass>, crate::hot::HotError> {
    use futures::StreamExt as _;
    if batch.is_empty() {
        return Ok(None);
    }
    let jobs = std::mem::take(batch);
    let mut outcomes: Vec<Option<Delivery>> = jobs.iter().map(|_| None).collect();
    {
        let mut pending: futures::stream::FuturesUnordered<_> =
            jobs.iter().enumerate().map(|(k, (_, job))| async move { (k, deliver(bot, job).await) }).collect();
        let mut stopping = stop.clone();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let next = match deadline {
                None => tokio::select! {
                    next = pending.next() => next,
                    _ = stopping.wait_for(|s| *s) => {
                        deadline = Some(tokio::time::Instant::now() + SHUTDOWN_SEND_GRACE);
                        continue;
                    }
                },
                Some(at) => match tokio::time::timeout_at(at, pending.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            match next {
                Some((k, delivery)) => outcomes[k] = Some(delivery),
                None => break,
            }
        }
    }
    let hot = bot.fleet.hot.as_ref();
    let mut unfinished = 0;
    // The batch's sent jobs are acknowledged together (one round trip), before anything else
    // is settled: a failure here leaves them all queued, to be sent again as after a crash.
    // The reply-map entries of the copies just sent are written in the same round trip.
    let done: Vec<&str> = jobs
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| matches!(o, Some(Delivery::Done | Delivery::Sent(_))))
        .map(|((id, _), _)| id.as_str())
        .collect();
    let replies: Vec<(MessageRef, MessageRef)> =
        outcomes.iter().filter_map(|o| if let Some(Delivery::Sent(Some(pair))) = o { Some(pair.clone()) } else { None }).collect();
    hot.outbox_settle(&bot.pool, &bot.name, shard, lane, &done, &replies, REF_TTL).await?;
    for ((_, job), outcome) in jobs.iter().zip(outcomes) {
        match outcome {
            Some(Delivery::Done | Delivery::Sent(_)) => {
                super::media::release(bot, job).await;
                if let Some(n) = queued.get_mut(&job.chat_id) {
                    *n = n.saturating_sub(1);
                }
                *progressed = true;
            }
            Some(Delivery::Retry(after)) => {
                let until = now_ms() + after.as_millis() as i64;
                held.insert(job.chat_id, until);
                *soonest = Some(soonest.map_or(until, |s| s.min(until)));
            }
            None => unfinished += 1,
        }
    }
    if unfinished > 0 {
        tracing::warn!(bot = %bot.name, sends = unfinished, "sends still in flight at shutdown were left for the next consumer");
        return Ok(Some(Pass::Sent));
    }
    Ok(None)
}

enum Delivery {
    /// Refused for good (logged), or nothing to send: acknowledge it.
    Done,
    /// Sent: acknowledge it, and record the copy in the reply map (original, copy) if it is one.
    Sent(Option<(MessageRef, MessageRef)>),
    /// Not now (429, 5xx, network): the same job again after this long.
    Retry(Duration),
}

/// How long the bot holds its sends after Telegram refused its token (401/404).
const TOKEN_HOLD: Duration = Duration::from_secs(5);

/// The oldest a job may get while it keeps failing (5xx, network), per the lifecycle policy:
/// a relayed message minutes late is worse than none (the chat has moved on); a bulk job
/// (search refresh, broadcast) may wait longer.
pub fn max_age(lane: Lane) -> Duration {
    match lane {
        Lane::Interactive => Duration::from_secs(10 * 60),
        Lane::Bulk => Duration::from_secs(60 * 60),
    }
}

/// The message id a late-bound target names in `recipient`'s chat: a saved id (`"123"`), or a
/// reply-map entry (`"<member>:123"`) whose member is the recipient. None: not in this chat.
fn resolve_target(value: &str, recipient: &Member) -> Option<i64> {
    match value.rsplit_once(':') {
        None => value.parse().ok(),
        Some((member, id)) => (member == recipient.to_string()).then(|| id.parse().ok()).flatten(),
    }
}

async fn deliver(bot: &Bot, job: &Job) -> Delivery {
    let hot = bot.fleet.hot.as_ref();
    let mut params = job.params.clone();
    // Late-bound references: resolved now, when every earlier job of the chat has been sent.
    let recipient = Member::new(job.bot.clone(), job.chat_id);
    if let Some(name) = &job.target {
        match hot.get_ref(&bot.pool, name).await {
            // A saved id ("123") or a reply-map entry ("<member>:123"). A reply-map entry names
            // the chat its message is in: message ids are per chat, so a target in another
            // chat (an edit of a message sent to an earlier partner) must never be applied
            // here, where the same id is some other message.
            Ok(Some(value)) => match resolve_target(&value, &recipient) {
                Some(id) => params["message_id"] = json!(id),
                None => return Delivery::Done,
            },
            Ok(None) => return Delivery::Done,
            Err(_) => return Delivery::Retry(Duration::from_secs(1)),
        }
    }
    if let Some(r) = &job.reply_to {
        match hot.get_reply(&bot.pool, r).await {
            // Only a counterpart in this recipient's chat (the same rule as a target).
            Ok(Some(counterpart)) => {
                if let Some(id) = resolve_target(&counterpart, &recipient).filter(|_| counterpart.contains(':')) {
                    params["reply_parameters"] = json!({"message_id": id, "allow_sending_without_reply": true});
                }
            }
            Ok(None) => {}
            Err(_) => return Delivery::Retry(Duration::from_secs(1)),
        }
    }
    // A paid broadcast that ran out of Stars: the rest of its queued messages are not sent
    // (Telegram would refuse each), they are counted as failed.
    if let Some(id) = job.broadcast
        && budget_of(job) == Budget::Paid
        && bot.out_of_stars.lock().is_ok_and(|set| set.contains(&id))
    {
        record_broadcast(bot, job, BroadcastOutcome::Failed).await;
        return Delivery::Done;
    }
    // A broadcast's message goes once per member: one already settled is not sent again (a
    // batch queued twice), and one whose earlier send's outcome is unknown (a kill in flight)
    // goes again, counted as possibly repeated (docs/ADMIN.md, "Restarts").
    if let Some(id) = job.broadcast {
        match bot.store.broadcast_attempt(id, job.chat_id, now_ms()).await {
            Ok(BroadcastAttempt::First) => {}
            Ok(BroadcastAttempt::Settled) => return Delivery::Done,
            Ok(BroadcastAttempt::Unknown) => {
                tracing::info!(bot = %bot.name, broadcast = id, "a broadcast message in flight at a stop is sent again");
            }
            Err(e) => {
                tracing::warn!(bot = %bot.name, broadcast = id, error = %e, "cannot record a broadcast send; retrying");
                return Delivery::Retry(Duration::from_secs(1));
            }
        }
    }
    let result = match &job.upload {
        None => bot.api.call(&job.method, &params).await,
        // The bytes stream from the hot store into the request, a piece at a time.
        Some(upload) => match hot.blob_info(&bot.pool, &upload.blob).await {
            Ok(Some(blob)) if blob.complete => {
                let _slot = bot.fleet.media.upload_slot().await;
                let body = super::media::upload_body(bot.fleet.hot.clone(), bot.pool.clone(), upload.blob.clone(), blob.size);
                bot.api.upload(&job.method, &params, &upload.field, &upload.file_name, upload.mime_type.as_deref(), body, blob.size).await
            }
            // Written again under its id (it had expired): ready in a moment.
            Ok(Some(_)) => return Delivery::Retry(Duration::from_secs(1)),
            Ok(None) => {
                tracing::warn!(bot = %bot.name, method = %job.method, "relayed media expired before it could be sent");
                tell_sender_it_failed(bot, job).await;
                return Delivery::Done;
            }
            Err(_) => return Delivery::Retry(Duration::from_secs(1)),
        },
    };
    match result {
        Ok(sent) => {
            let reply = record_sent(bot, job, &recipient, &sent).await;
            record_broadcast(bot, job, BroadcastOutcome::Delivered).await;
            if job.enqueued_ms > 0 {
                bot.metrics().delivered_in(&bot.name, (now_ms() - job.enqueued_ms).max(0) as f64 / 1000.0);
            }
            Delivery::Sent(reply)
        }
        Err(e) => settle_error(bot, job, &recipient, e).await,
    }
}

/// After a send: remember the message id under its name; a relayed copy's reply-map entry
/// (original, copy) is returned, to be written with the job's acknowledgement.
async fn record_sent(bot: &Bot, job: &Job, recipient: &Member, sent: &Value) -> Option<(MessageRef, MessageRef)> {
    let message_id = sent["message_id"].as_i64()?;
    let hot = bot.fleet.hot.as_ref();
    if let Some(mirror) = &job.mirror_of
        && let Ok(sender) = mirror.sender.parse::<Member>()
        && let Err(e) = bot.store.record_mirror(mirror.session_id, &sender, job.chat_id, message_id, now_ms()).await
    {
        // The copy is in the mirror chat either way; only the index entry is missing.
        tracing::warn!(bot = %bot.name, session = mirror.session_id, error = %e, "could not record a mirror copy");
    }
    if let Some(name) = &job.save_as {
        let _ = hot.put_ref(&bot.pool, name, &message_id.to_string(), REF_TTL).await;
    }
    job.origin.as_ref().map(|origin| (origin.clone(), MessageRef { member: recipient.to_string(), message_id }))
}

async fn settle_error(bot: &Bot, job: &Job, recipient: &Member, e: TgError) -> Delivery {
    if let Some(after) = e.retry_after() {
        // Every replica of the bot waits, not just this one.
        let until = now_ms() + after.as_millis() as i64;
        // A paid broadcast's 429 holds its own budget, never the chats'.
        let _ = bot.fleet.hot.hold_sends_in(&bot.pool, &bot.name, budget_of(job), Some(job.chat_id), until).await;
        broadcast_unsent(bot, job).await;
        return Delivery::Retry(after);
    }
    // A 401/404 on a send means the token is being rotated (revoked before the new pods
    // are up): every replica holds the bot's sends and retries; nothing queued is dropped,
    // and the hold does not count toward the job's age limit.
    if e.is_token_refused() {
        tracing::warn!(bot = %bot.name, method = %job.method, code = ?e.code(), "Telegram refused the token; holding the bot's sends");
        let _ = bot.fleet.hot.hold_sends_in(&bot.pool, &bot.name, budget_of(job), None, now_ms() + TOKEN_HOLD.as_millis() as i64).await;
        broadcast_unsent(bot, job).await;
        return Delivery::Retry(TOKEN_HOLD);
    }
    if e.is_transient() {
        let max_age = max_age(job.lane);
        let age_ms = now_ms() - job.enqueued_ms;
        // Release-N jobs carry no enqueue time (0): their age is unknown, so they keep the
        // old behaviour; every job this release writes has one.
        if job.enqueued_ms > 0 && age_ms > max_age.as_millis() as i64 {
            tracing::warn!(
                bot = %bot.name,
                method = %job.method,
                code = ?e.code(),
                age_s = age_ms / 1000,
                "an outbox job kept failing past its lane's maximum age; given up"
            );
            bot.metrics().gave_up(&bot.name, "expired");
            record_broadcast(bot, job, BroadcastOutcome::Failed).await;
            tell_sender_it_failed(bot, job).await;
            return Delivery::Done;
        }
        return Delivery::Retry(Duration::from_secs(1));
    }
    if e.is_unreachable_user() {
        tracing::info!(bot = %bot.name, method = %job.method, "recipient blocked the bot; ending their chat");
        if let Some(member) = job.chat_member.as_deref().and_then(|m| m.parse::<Member>().ok()) {
            let _ = bot.store.set_reachable(&member.bot, member.user, false).await;
            let mut fx = Effects::new(bot, now_ms(), None);
            match chat::leave_everything(&mut fx, &member, EndReason::Gone).await {
                Ok(()) => {
                    if bot.fleet.hot.commit(&bot.pool, Marker::None, &fx.jobs).await.is_ok() {
                        bot.fleet.ring(&fx.jobs);
                    }
                }
                Err(err) => tracing::warn!(bot = %bot.name, error = %err, "could not end the chat of an unreachable user"),
            }
        } else {
            let _ = bot.store.set_reachable(&recipient.bot, recipient.user, false).await;
        }
        record_broadcast(bot, job, BroadcastOutcome::Blocked).await;
        return Delivery::Done;
    }
    if matches!(e.bad_request(), Some(BadRequest::MessageNotModified | BadRequest::MessageGone)) {
        return Delivery::Done;
    }
    // A paid broadcast's send refused for lack of Stars: the broadcast stops here, with the
    // reason shown (the rest of its queued messages meet the same answer, once each); never
    // retried, and the bot's chats are not touched.
    if let (Some(id), Some(BadRequest::BalanceTooLow)) = (job.broadcast, e.bad_request())
        && budget_of(job) == Budget::Paid
    {
        let reason = "the bot's Stars balance is too low for a paid broadcast (Telegram: BALANCE_TOO_LOW); top it up and send again";
        match bot.store.stop_broadcast(id, "failed", reason, now_ms()).await {
            Ok(true) => {
                tracing::warn!(bot = %bot.name, broadcast = id, "a paid broadcast stopped: the bot's Stars balance is too low");
            }
            Ok(false) => {}
            Err(err) => tracing::warn!(bot = %bot.name, broadcast = id, error = %err, "could not stop a paid broadcast out of Stars"),
        }
        if let Ok(mut set) = bot.out_of_stars.lock() {
            if set.len() >= 1024 {
                set.clear();
            }
            set.insert(id);
        }
        bot.star_balance_due.notify_one();
        bot.metrics().gave_up(&bot.name, "refused");
        record_broadcast(bot, job, BroadcastOutcome::Failed).await;
        return Delivery::Done;
    }
    let text = e.to_string();
    tracing::warn!(bot = %bot.name, method = %job.method, code = ?e.code(), error = %quoted_parts_removed(&text), "Telegram refused an outbox job; dropped");
    bot.metrics().gave_up(&bot.name, "refused");
    record_broadcast(bot, job, BroadcastOutcome::Failed).await;
    tell_sender_it_failed(bot, job).await;
    Delivery::Done
}

/// A broadcast's message: what became of it, for the broadcast's counts (docs/ADMIN.md,
/// "Broadcast"). The write is tried a few times (a busy database's pool timeout must not leave
/// the broadcast short of its count forever); a failure after that is logged, and the message
/// is not sent again for it.
async fn record_broadcast(bot: &Bot, job: &Job, outcome: BroadcastOutcome) {
    let Some(id) = job.broadcast else { return };
    bot.metrics().broadcast_message(&bot.name, outcome.as_str());
    let mut pause = Duration::from_millis(200);
    for attempt in 1..=4 {
        match bot.store.broadcast_outcome(id, job.chat_id, outcome, now_ms()).await {
            Ok(_) => return,
            Err(e) if attempt == 4 => {
                tracing::warn!(bot = %bot.name, broadcast = id, error = %e, "could not count a broadcast message");
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
}

/// A broadcast's message Telegram certainly did not take (429, token refused): its next try is
/// not a possible repeat.
async fn broadcast_unsent(bot: &Bot, job: &Job) {
    let Some(id) = job.broadcast else { return };
    if let Err(e) = bot.store.broadcast_unsent(id, job.chat_id).await {
        tracing::warn!(bot = %bot.name, broadcast = id, error = %e, "could not clear a broadcast send that did not happen");
    }
}

/// A relayed message that can't be delivered is not silently lost: its sender is told.
async fn tell_sender_it_failed(bot: &Bot, job: &Job) {
    let Some(origin) = &job.origin else { return };
    let Ok(sender) = origin.member.parse::<Member>() else { return };
    let lang = match bot.store.user(&sender.bot, sender.user).await {
        Ok(Some(u)) => crate::texts::Lang::parse(&u.language).unwrap_or(crate::texts::Lang::En),
        _ => crate::texts::Lang::En,
    };
    let mut fx = Effects::new(bot, now_ms(), None);
    fx.say(&sender, crate::texts::Texts::get().raw(lang, "relay_failed"), None);
    if bot.fleet.hot.commit(&bot.pool, Marker::None, &fx.jobs).await.is_ok() {
        bot.fleet.ring(&fx.jobs);
    }
}

/// Telegram's error text without anything it quotes: a parse error can quote a piece of the
/// message ("Unsupported start tag \"x\""), and message content never reaches a log.
pub(crate) fn quoted_parts_removed(text: &str) -> String {
    // Tokens are masked where errors are made (telegram.rs); masked again here, since this is
    // what every log line of a refused job prints.
    botfleet_crds::token::mask_tokens(&text.split('"').step_by(2).collect::<Vec<_>>().join("\"…\"")).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn logged_errors_never_carry_quoted_message_content() {
        let e = super::quoted_parts_removed("Bad Request: can't parse entities: Unsupported start tag \"secret words\" at byte offset 3");
        assert!(!e.contains("secret"), "{e}");
        assert!(e.starts_with("Bad Request: can't parse entities"), "{e}");
        let t = super::quoted_parts_removed("Not Found: bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw unknown");
        assert!(!t.contains("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"), "{t}");
    }

    #[test]
    fn a_fence_holds_only_while_the_last_renewal_is_certainly_valid() {
        use std::time::{Duration, Instant};
        let fence = super::Fence::default();
        assert!(!fence.holds(), "never renewed: not held");
        fence.renewed(Instant::now(), Duration::from_secs(15));
        assert!(fence.holds());
        // A renewal asked long ago (the process stalled since): its lease may be gone already.
        let stale = super::Fence::default();
        stale.renewed(Instant::now() - Duration::from_secs(14), Duration::from_secs(15));
        assert!(!stale.holds(), "within the drift margin of expiry: no more sends");
        fence.revoke();
        assert!(!fence.holds(), "a lost lease stops sends at once");
    }

    #[test]
    fn a_target_resolves_only_in_the_chat_it_names() {
        let bob = crate::matching::Member::new("beta", 2);
        assert_eq!(super::resolve_target("42", &bob), Some(42), "a saved id of this chat");
        assert_eq!(super::resolve_target("beta:2:42", &bob), Some(42));
        assert_eq!(super::resolve_target("beta:3:42", &bob), None, "another chat's message");
        assert_eq!(super::resolve_target("alpha:2:42", &bob), None, "another bot's chat");
        assert_eq!(super::resolve_target("beta:2:x", &bob), None);
    }
}
