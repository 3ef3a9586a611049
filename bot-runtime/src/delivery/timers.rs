//! The timer loop of one bot: search-message refreshes and idle timeouts. Timers live in the
//! hot store, so they survive a replica restart; a claim with a lease gives each due timer to
//! exactly one replica, and its effects are committed together with its removal — a replica
//! that dies mid-fire leaves the timer to be claimed again once the lease runs out.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::bot::{Bot, Effects, Ticker, now_ms};
use crate::chat;
use crate::hot::Marker;

const TICK: Duration = Duration::from_millis(250);
/// How often timers are claimed after a claim found none.
const QUIET_TICK: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_secs(30);
const BATCH: usize = 64;

/// Claims due timers every [`TICK`] while they keep coming, every [`QUIET_TICK`] once a claim
/// found none (the idle cost: issue 9) — so a timer of an idle bot fires up to a second late
/// (search refreshes and idle timeouts are seconds to minutes apart; nothing needs better).
pub async fn run(bot: Arc<Bot>, shutdown: watch::Receiver<bool>) {
    let mut ticker = Ticker::new(TICK, shutdown);
    let mut quiet_since: Option<tokio::time::Instant> = None;
    while ticker.tick().await {
        if quiet_since.is_some_and(|t| t.elapsed() < QUIET_TICK) {
            continue;
        }
        let mut any = false;
        loop {
            let fired = fire_due(&bot).await;
            any |= fired > 0;
            if fired < BATCH {
                break;
            }
        }
        quiet_since = if any { None } else { Some(tokio::time::Instant::now()) };
    }
}

/// Fires the timers due now; returns how many were claimed.
pub async fn fire_due(bot: &Bot) -> usize {
    let hot = bot.fleet.hot.as_ref();
    let timers = match hot.claim_timers(&bot.pool, &bot.name, now_ms(), LEASE, BATCH).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(bot = %bot.name, error = %e, "cannot read timers");
            return 0;
        }
    };
    let claimed = timers.len();
    for timer in timers {
        let mut fx = Effects::new(bot, now_ms(), Some(format!("t:{}:{}:{}", bot.name, timer.id, timer.due_ms)));
        let kind = timer.payload["k"].as_str().unwrap_or("unknown").to_string();
        let result = match chat::on_timer(&mut fx, &timer).await {
            Ok(()) => hot
                .commit(&bot.pool, Marker::Timer { bot: bot.name.clone(), id: timer.id.clone() }, &fx.jobs)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => {
                bot.fleet.ring(&fx.jobs);
                bot.metrics().timer_fired(&bot.name, &kind);
            }
            // Left in flight: claimed again when its lease runs out.
            Err(e) => tracing::warn!(bot = %bot.name, timer = %kind, error = %e, "timer failed; it will be retried"),
        }
    }
    claimed
}
