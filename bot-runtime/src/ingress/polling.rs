//! Polling ingress: one active poller per bot across all replicas, enforced by a lease in the
//! hot store — a second replica waits instead of calling getUpdates, so Telegram never sees
//! two pollers (which it answers with 409 Conflict storms).
//!
//! A batch is handled per chat in order (chats in parallel), and the offset moves past an
//! update only once it is final (handled, or a duplicate) or handed off; an update that failed
//! is retried before the batch is confirmed, so nothing is skipped. A poller that takes over
//! after another replica died starts without an offset: Telegram resends what was not
//! confirmed, and dedupe makes that harmless.
//!
//! One slow chat never holds the others (issue 9, defect 15). Telegram's offset is one cursor
//! per bot, so the next poll cannot start until every update of this batch is accounted for;
//! a chat still busy after [`HOLD`] (a channel check hanging at Telegram, a media download, a
//! claim held elsewhere) is handed off: its updates from the one in hand onwards go, in order,
//! to the bot's durable inbound queue (the one the webhook uses under overload; the bot's
//! drainer works it through the same claim → handle → commit pipeline), the chat's later
//! updates follow them there until the queue is empty, and the poll goes on. The update in
//! hand finishes in the background (its claim keeps the drainer from doing it twice). Memory
//! stays bounded: a batch is at most 100 updates, handed-off ones live in the queue (capped at
//! [`inbound::INBOUND_MAX`]), and a handed-off chat keeps at most its one update in hand here.
//! If the queue cannot take them (Redis down, queue full) the poll waits, as before.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::bot::Bot;
use crate::ingress::admission::Admit;
use crate::ingress::{inbound, pipeline};

/// How long a batch waits for a chat before handing the chat's updates to the inbound queue.
/// Normal updates take milliseconds; this is well above them and far below Telegram's 10 s for
/// a pre-checkout answer that may be polled next.
pub const HOLD: Duration = Duration::from_secs(2);

const LEASE: Duration = Duration::from_secs(20);
/// Long-poll timeout; well inside the lease, which is renewed before every poll.
const POLL_TIMEOUT_S: u64 = 10;
pub use botfleet_crds::webhook::ALLOWED_UPDATES;
/// How long the poller waits before asking again while the outbox is backlogged.
const EGRESS_PAUSE: Duration = Duration::from_millis(200);

pub async fn run(bot: Arc<Bot>, mut shutdown: watch::Receiver<bool>) {
    let holder = format!("{}:{}", bot.fleet.replica, bot.name);
    let lease = format!("poller:{}", bot.name);
    let mut offset: Option<i64> = None;
    // Chats whose updates go to the inbound queue behind those handed off (see the module doc).
    let mut queued = HashSet::new();
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let pause =
            match bot.fleet.hot.lease(&bot.pool, &lease, &holder, LEASE).await {
                // Admission control by egress (ingress/admission.rs): while the bot's outbox
                // holds more than a few seconds of delivery, updates wait at Telegram. (Polling
                // cannot pick a report out of what waits: it comes within those seconds.)
                Ok(true)
                    if matches!(
                        bot.fleet.egress.admit(&bot.name, bot.cfg().limits.outbound.per_bot_per_second, crate::bot::now_ms()),
                        Admit::Later { .. }
                    ) =>
                {
                    Some(EGRESS_PAUSE)
                }
                Ok(true) => match poll_once(&bot, &mut offset, &mut queued, &shutdown).await {
                    Ok(polled) => {
                        failures = 0;
                        polled.pause()
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(bot = %bot.name, error = %e, "getUpdates failed");
                        // Flood control says exactly how long; otherwise back off.
                        Some(e.retry_after().unwrap_or_else(|| {
                            Duration::from_millis(500u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(30))
                        }))
                    }
                },
                Ok(false) => {
                    // Another replica polls; forget our offset (theirs moves on). Its poller does
                    // not know which chats were handed off here: during a handover a newer
                    // update of such a chat may overtake its queued ones (rare; nothing is lost).
                    offset = None;
                    queued.clear();
                    Some(Duration::from_secs(5))
                }
                Err(e) => {
                    tracing::warn!(bot = %bot.name, error = %e, "cannot take the poller lease");
                    Some(Duration::from_secs(2))
                }
            };
        if let Some(pause) = pause {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    let _ = bot.fleet.hot.unlease(&bot.pool, &lease, &holder).await;
}

/// What one getUpdates call returned: whether it carried updates, and how long it took.
#[derive(Debug, Clone, Copy)]
pub struct Polled {
    pub updates: usize,
    pub took: Duration,
}

/// The shortest an empty poll may take: a long poll normally waits [`POLL_TIMEOUT_S`], but a
/// proxy that answers at once (or Telegram, in some states) would otherwise make an empty
/// poll loop spin, calling getUpdates hundreds of times a second for nothing.
pub const MIN_EMPTY_POLL: Duration = Duration::from_secs(1);

impl Polled {
    /// The pause before the next poll: none after updates or a proper long poll; after an
    /// empty answer that came back early, the rest of [`MIN_EMPTY_POLL`].
    pub fn pause(self) -> Option<Duration> {
        (self.updates == 0 && self.took < MIN_EMPTY_POLL).then(|| MIN_EMPTY_POLL - self.took)
    }
}

async fn poll_once(
    bot: &Arc<Bot>,
    offset: &mut Option<i64>,
    queued: &mut HashSet<i64>,
    shutdown: &watch::Receiver<bool>,
) -> Result<Polled, crate::telegram::TgError> {
    let mut params = json!({"timeout": POLL_TIMEOUT_S, "limit": 100, "allowed_updates": ALLOWED_UPDATES});
    if let Some(o) = offset {
        params["offset"] = json!(*o);
    }
    let started = std::time::Instant::now();
    let updates = bot.api.call_with_timeout("getUpdates", &params, Duration::from_secs(POLL_TIMEOUT_S + 15)).await?;
    let took = started.elapsed();
    let Some(updates) = updates.as_array() else { return Ok(Polled { updates: 0, took }) };
    let polled = Polled { updates: updates.len(), took };
    if updates.is_empty() {
        return Ok(polled);
    }
    if !handle_batch(bot, updates, queued, shutdown).await {
        return Ok(polled);
    }
    if let Some(last) = updates.iter().filter_map(|u| u["update_id"].as_i64()).max() {
        *offset = Some(last + 1);
    }
    Ok(polled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_poll_that_comes_back_at_once_is_paced_and_a_long_poll_is_not() {
        let quick = Polled { updates: 0, took: Duration::from_millis(3) };
        assert_eq!(quick.pause(), Some(MIN_EMPTY_POLL - Duration::from_millis(3)));
        assert_eq!(Polled { updates: 0, took: Duration::from_secs(10) }.pause(), None, "a real long poll");
        assert_eq!(Polled { updates: 5, took: Duration::from_millis(3) }.pause(), None, "updates: poll again at once");
    }
}

/// The chat an update belongs to (its order matters only within that chat).
fn chat_of(update: &Value) -> i64 {
    crate::ingress::update::sender_of(update).map_or(0, |(id, _)| id)
}

/// A chat's share of a batch, worked in order by one task.
struct Lane {
    chat: i64,
    updates: Vec<Value>,
    state: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    /// The update in hand (or the next to start); `updates.len()` once all are final.
    next: usize,
    /// The batch handed the rest of the lane to the inbound queue: start nothing more.
    handed_off: bool,
}

impl Lane {
    fn state(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Works the lane's updates in order until each is final. False if it stopped first:
    /// handed off (the queue has the rest) or shutdown.
    async fn work(&self, bot: &Bot, mut stop: watch::Receiver<bool>) -> bool {
        for (i, update) in self.updates.iter().enumerate() {
            {
                let mut state = self.state();
                if state.handed_off {
                    return false;
                }
                state.next = i;
            }
            let mut attempt = 0u32;
            loop {
                let outcome = pipeline::process(bot, update).await;
                if outcome.is_final() {
                    break;
                }
                if self.state().handed_off {
                    // The queue has this update too; its drainer retries it.
                    return false;
                }
                // An outage is retried for as long as it lasts — but never past shutdown
                // (SIGTERM must end the process within its grace period).
                attempt += 1;
                let pause = Duration::from_millis(100u64.saturating_mul(1 << attempt.min(8))).min(Duration::from_secs(10));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.wait_for(|s| *s) => return false,
                }
            }
        }
        self.state().next = self.updates.len();
        true
    }

    /// Stops the lane after its update in hand and gives back what is not final yet.
    fn hand_off(&self) -> &[Value] {
        let mut state = self.state();
        state.handed_off = true;
        &self.updates[state.next.min(self.updates.len())..]
    }
}

/// Handles every update of the batch until each is final or handed off to the bot's inbound
/// queue (see the module doc); chats in parallel, each in order. Returns false if shutdown
/// came first or a hand-off failed: then the offset must not move past the batch (the next
/// poller, here or on another replica, gets the rest again; dedupe skips what is done).
pub async fn handle_batch(bot: &Arc<Bot>, updates: &[Value], queued: &mut HashSet<i64>, shutdown: &watch::Receiver<bool>) -> bool {
    if !queued.is_empty() && matches!(bot.fleet.hot.inbound_depth(&bot.pool, &bot.name).await, Ok(0)) {
        // The drainer has worked off every handed-off update: those chats are direct again.
        queued.clear();
    }
    let mut by_chat: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for u in updates {
        let chat = chat_of(u);
        if queued.contains(&chat) {
            // Behind the chat's queued updates, never past them.
            if !enqueue(bot, std::slice::from_ref(u)).await {
                return false;
            }
        } else {
            by_chat.entry(chat).or_default().push(u.clone());
        }
    }
    let mut lanes = Vec::with_capacity(by_chat.len());
    for (chat, updates) in by_chat {
        let lane = Arc::new(Lane { chat, updates, state: Mutex::default() });
        let (b, l, stop) = (bot.clone(), lane.clone(), shutdown.clone());
        lanes.push((lane, tokio::spawn(async move { l.work(&b, stop).await })));
    }
    let deadline = tokio::time::Instant::now() + HOLD;
    let mut stop = shutdown.clone();
    let mut all_done = true;
    for (lane, task) in &mut lanes {
        tokio::select! {
            done = &mut *task => {
                all_done &= done.unwrap_or(false);
                continue;
            }
            _ = tokio::time::sleep_until(deadline) => {}
            _ = stop.wait_for(|s| *s) => {
                for (lane, _) in &lanes {
                    lane.hand_off();
                }
                return false;
            }
        }
        // Past the hold: this chat goes on from the inbound queue.
        let rest = lane.hand_off();
        if rest.is_empty() {
            continue;
        }
        tracing::debug!(bot = %bot.name, updates = rest.len(), "a slow chat's updates go to the inbound queue");
        if !enqueue(bot, rest).await {
            // Cannot hand off: this batch is not confirmed; the next poll brings it again.
            all_done = false;
            continue;
        }
        bot.metrics().polling_handoff(&bot.name, rest.len());
        queued.insert(lane.chat);
    }
    all_done
}

/// Pushes updates, in order, to the bot's inbound queue; false if one could not be.
async fn enqueue(bot: &Bot, updates: &[Value]) -> bool {
    for u in updates {
        match bot.fleet.hot.inbound_push(&bot.pool, &bot.name, &u.to_string(), inbound::INBOUND_MAX).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(bot = %bot.name, "the inbound queue is full; the polled batch waits");
                return false;
            }
            Err(e) => {
                tracing::warn!(bot = %bot.name, error = %e, "cannot hand updates to the inbound queue; the polled batch waits");
                return false;
            }
        }
    }
    true
}
