//! The durable inbound queue's two ends in this process: the per-bot [`Gate`] the webhook
//! consults (while a bot's queue may hold updates, its new updates join the queue instead of
//! overtaking it), and the per-bot drainer ([`run`]) that works the queue in order.
//!
//! Order: within this process a chat's updates keep their order — once one update of a bot is
//! queued, every later one of that bot is queued behind it until the drainer finds the queue
//! empty. Across replicas it is best effort during overload: another replica that is not
//! overloaded (its gate is open) handles a newer update at once while an older one waits in
//! the queue. Acceptable: it happens only past the 30 s grace of an overload, Telegram itself
//! gives no order across its concurrent webhook deliveries, and nothing is lost or done twice
//! (the queue is drained through the same claim → handle → commit pipeline).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::bot::{Bot, Ticker};
use crate::ingress::admission;
use crate::ingress::pipeline::{self, Outcome};

/// How often the drainer looks at its bot's queue.
pub const DRAIN_EVERY: Duration = Duration::from_millis(200);
/// How often an idle drainer reads the queue when this process pushed nothing to it.
const QUIET_EVERY: Duration = Duration::from_secs(2);
/// Updates read from the queue at once.
pub const DRAIN_BATCH: usize = 64;
/// The most updates a bot's queue holds; a push beyond it is refused (→ 503, Telegram keeps
/// the update). Updates are a few KiB: at most ~100–200 MiB of Redis per bot in the worst case.
pub const INBOUND_MAX: u64 = 50_000;

#[derive(Debug, Default, Clone, Copy)]
struct BotGate {
    /// The queue may hold updates of the bot: new ones go behind them.
    pending: bool,
    /// Pushes started and not yet finished.
    pushing: u32,
    /// Bumped by every finished push: the drainer clears `pending` only if none happened since
    /// it looked.
    epoch: u64,
}

/// Per bot: whether this process must queue the bot's updates (set on push, cleared by the
/// drainer when it finds the queue empty with no push in between).
#[derive(Debug, Default)]
pub struct Gate {
    bots: Mutex<HashMap<String, BotGate>>,
}

impl Gate {
    fn with<T>(&self, bot: &str, f: impl FnOnce(&mut BotGate) -> T) -> T {
        let mut bots = self.bots.lock().unwrap_or_else(|p| p.into_inner());
        f(bots.entry(bot.to_string()).or_default())
    }

    /// Whether the bot's new updates must join its queue.
    pub fn pending(&self, bot: &str) -> bool {
        self.with(bot, |g| g.pending)
    }

    /// Before a push: from now on the bot's updates are queued.
    pub fn push_started(&self, bot: &str) {
        self.with(bot, |g| {
            g.pending = true;
            g.pushing += 1;
        });
    }

    /// After a push (whether it succeeded or not).
    pub fn push_finished(&self, bot: &str) {
        self.with(bot, |g| {
            g.pushing = g.pushing.saturating_sub(1);
            g.epoch += 1;
        });
    }

    /// Taken before the drainer reads the queue's depth.
    fn snapshot(&self, bot: &str) -> u64 {
        self.with(bot, |g| g.epoch)
    }

    /// The queue was seen empty after `snapshot`: the gate opens unless a push ran meanwhile.
    fn found_empty(&self, bot: &str, snapshot: u64) {
        self.with(bot, |g| {
            if g.pushing == 0 && g.epoch == snapshot {
                g.pending = false;
            }
        });
    }
}

/// The bot's drainer: every [`DRAIN_EVERY`], while its queue holds updates, works them oldest
/// first through [`pipeline::process`], acknowledging the final ones; the first that is not
/// final (busy elsewhere, an outage) stops the pass, so it is retried next time with the order
/// kept. Runs on every replica of the bot: two drainers on one update meet at its claim (one
/// gets `Busy` and waits), and acknowledging twice is harmless.
///
/// Idle cost: the queue is read every tick only while this process has pushed to it (its gate
/// is pending) or the last read found updates; otherwise every [`QUIET_EVERY`] (updates another
/// replica queued are then found within that time; that replica drains them too).
pub async fn run(bot: Arc<Bot>, shutdown: watch::Receiver<bool>) {
    let mut ticker = Ticker::new(DRAIN_EVERY, shutdown);
    let mut found = true;
    let mut last_read = tokio::time::Instant::now();
    while ticker.tick().await {
        if !found && !bot.fleet.inbound.pending(&bot.name) && last_read.elapsed() < QUIET_EVERY {
            continue;
        }
        last_read = tokio::time::Instant::now();
        found = drain(&bot).await;
    }
}

/// One pass over the bot's queue (see [`run`]); whether it found updates in it (or could not
/// tell).
pub async fn drain(bot: &Bot) -> bool {
    let hot = bot.fleet.hot.as_ref();
    let gate = &bot.fleet.inbound;
    loop {
        let snapshot = gate.snapshot(&bot.name);
        let batch = match hot.inbound_read(&bot.pool, &bot.name, DRAIN_BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::debug!(bot = %bot.name, error = %e, "cannot read the inbound queue; retrying");
                return true;
            }
        };
        if batch.is_empty() {
            gate.found_empty(&bot.name, snapshot);
            bot.metrics().set_inbound_depth(&bot.name, 0);
            return false;
        }
        for entry in batch {
            let outcome = match serde_json::from_str::<serde_json::Value>(&entry.raw) {
                // Admission control by egress holds the queue too (ingress/admission.rs): what
                // waits here waits while the outbox is backlogged, in order.
                Ok(raw)
                    if !admission::exempt(&raw)
                        && matches!(
                            bot.fleet.egress.admit(&bot.name, bot.cfg().limits.outbound.per_bot_per_second, crate::bot::now_ms()),
                            admission::Admit::Later { .. }
                        ) =>
                {
                    set_depth(bot).await;
                    return true;
                }
                Ok(raw) => pipeline::process(bot, &raw).await,
                // The webhook queued only JSON; anything else can never be handled.
                Err(_) => Outcome::Malformed,
            };
            if !outcome.is_final() {
                set_depth(bot).await;
                return true;
            }
            if let Err(e) = hot.inbound_ack(&bot.pool, &bot.name, &entry.id).await {
                // Not acknowledged: handled again next pass, which finds it done (Duplicate).
                tracing::debug!(bot = %bot.name, error = %e, "cannot acknowledge an inbound update; retrying");
                return true;
            }
        }
        set_depth(bot).await;
    }
}

async fn set_depth(bot: &Bot) {
    if let Ok(n) = bot.fleet.hot.inbound_depth(&bot.pool, &bot.name).await {
        bot.metrics().set_inbound_depth(&bot.name, n);
    }
}
