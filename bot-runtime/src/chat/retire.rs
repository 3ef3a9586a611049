//! Retiring a bot (its BotInstance deleted or scaled to zero): the operator sets `retiring` in
//! the resolved configuration before it removes the pods. While it is set, every replica of
//! the bot sweeps the pool every few seconds: the bot's members leave the queues, their chats
//! end (the partner, usually on another bot of the pool, is told through their own bot), and
//! they are told the bot is closing; new searches are refused (search.rs). Chats end here, not
//! by their idle timers, so no chat is left to a timer of a bot that no longer runs.
//!
//! Several replicas may sweep at once: ending a chat is atomic (only the first call gets the
//! partner), so each partner is told once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::ending::leave_everything;
use super::text_key::TextKey;
use crate::bot::{Bot, Effects, HandleError, Ticker, now_ms, remove_keyboard};
use crate::hot::Marker;
use crate::store::EndReason;

/// How often a retiring bot sweeps its pool.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// One sweep: every member of the bot found in the pool leaves it; how many there were.
pub async fn retire_members(bot: &Bot) -> Result<usize, HandleError> {
    let members = bot.fleet.matcher.members_of(&bot.pool, &bot.name).await?;
    for member in &members {
        let mut fx = Effects::new(bot, now_ms(), None);
        leave_everything(&mut fx, member, EndReason::Retired).await?;
        let lang = super::audience(&fx, member).await?.lang;
        fx.say(member, TextKey::BotRetiring.text(lang), Some(remove_keyboard()));
        bot.fleet.hot.commit(&bot.pool, Marker::None, &fx.jobs).await?;
        bot.fleet.ring(&fx.jobs);
    }
    Ok(members.len())
}

/// Sweeps while the configuration says the bot is retiring, until shutdown.
pub async fn run(bot: Arc<Bot>, shutdown: watch::Receiver<bool>) {
    let mut ticker = Ticker::new(SWEEP_EVERY, shutdown);
    while ticker.tick().await {
        if !bot.cfg().bot.retiring {
            continue;
        }
        match retire_members(&bot).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(bot = %bot.id, members = n, "retiring: members taken out of the pool"),
            Err(e) => tracing::warn!(bot = %bot.id, error = %e, "retiring sweep failed; retrying"),
        }
    }
}
