//! Polling ingress: one active poller per bot across all replicas, enforced by a lease in the
//! hot store — a second replica waits instead of calling getUpdates, so Telegram never sees
//! two pollers (which it answers with 409 Conflict storms).
//!
//! A batch is handled per chat in order (chats in parallel), and the offset moves past an
//! update only once it is final (handled, or a duplicate); an update that failed is retried
//! before the batch is confirmed, so nothing is skipped. A poller that takes over after
//! another replica died starts without an offset: Telegram resends what was not confirmed,
//! and dedupe makes that harmless.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::bot::Bot;
use crate::ingress::pipeline;

const LEASE: Duration = Duration::from_secs(20);
/// Long-poll timeout; well inside the lease, which is renewed before every poll.
const POLL_TIMEOUT_S: u64 = 10;
pub use botfleet_crds::webhook::ALLOWED_UPDATES;

pub async fn run(bot: Arc<Bot>, mut shutdown: watch::Receiver<bool>) {
    let holder = format!("{}:{}", bot.fleet.replica, bot.name);
    let lease = format!("poller:{}", bot.name);
    let mut offset: Option<i64> = None;
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let pause =
            match bot.fleet.hot.lease(&bot.pool, &lease, &holder, LEASE).await {
                Ok(true) => match poll_once(&bot, &mut offset, &shutdown).await {
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
                    // Another replica polls; forget our offset (theirs moves on).
                    offset = None;
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

async fn poll_once(bot: &Bot, offset: &mut Option<i64>, shutdown: &watch::Receiver<bool>) -> Result<Polled, crate::telegram::TgError> {
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
    if !handle_batch(bot, updates, shutdown).await {
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

/// Handles every update of the batch until each is final; chats in parallel, each in order.
/// Returns false if shutdown came first: then the offset must not move past the batch (the
/// next poller, here or on another replica, gets the rest again; dedupe skips what is done).
pub async fn handle_batch(bot: &Bot, updates: &[Value], shutdown: &watch::Receiver<bool>) -> bool {
    let mut by_chat: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for u in updates {
        by_chat.entry(chat_of(u)).or_default().push(u);
    }
    let chats = by_chat.into_values().map(|list| {
        let mut stop = shutdown.clone();
        async move {
            for update in list {
                let mut attempt = 0u32;
                loop {
                    let outcome = pipeline::process(bot, update).await;
                    if outcome.is_final() {
                        break;
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
            true
        }
    });
    futures::future::join_all(chats).await.into_iter().all(|done| done)
}
