//! VIP expiry notices: a day before a member's VIP ends they are reminded, and when it has
//! ended they are told. VIP itself ends on time without this (every check compares the
//! deadline with the clock); the notices are courtesy, claimed in the database so each
//! deadline is told once whichever replica sweeps (docs/MONEY.md, "VIP expiry").

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::format_time;
use super::text_key::TextKey;
use crate::bot::{Bot, Effects, HandleError, Ticker, now_ms};
use crate::hot::{Job, Lane, Marker};
use crate::texts::Lang;

/// How often each replica sweeps (every replica may; the claim makes it once).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

pub async fn run(bot: Arc<Bot>, shutdown: watch::Receiver<bool>) {
    let mut ticker = Ticker::new(SWEEP_EVERY, shutdown);
    while ticker.tick().await {
        if let Err(e) = sweep(&bot, now_ms()).await {
            tracing::warn!(bot = %bot.name, error = %e, "the VIP notice sweep failed; retrying at the next tick");
        }
    }
}

/// Claims the notices due at `now_ms` and queues them (bulk lane: chats go first). Returns how
/// many were queued. A crash between the claim and the queue loses those notices: a notice is
/// told at most once, never twice.
pub async fn sweep(bot: &Bot, now_ms: i64) -> Result<usize, HandleError> {
    let jobs = claim(bot, now_ms).await?;
    if jobs.is_empty() {
        return Ok(0);
    }
    bot.fleet.hot.commit(&bot.pool, Marker::None, &jobs).await?;
    bot.fleet.ring(&jobs);
    Ok(jobs.len())
}

/// Claims the notices due at `now_ms` and returns their messages (not yet queued).
pub async fn claim(bot: &Bot, now_ms: i64) -> Result<Vec<Job>, HandleError> {
    let notices = bot.store.claim_vip_notices(&bot.name, now_ms).await?;
    let mut fx = Effects::new(bot, now_ms, None);
    let default = bot.cfg().bot.locale.default.clone();
    for n in &notices {
        let lang = Lang::parse(&n.language).unwrap_or_else(|| Lang::for_user(None, &default));
        let text =
            if n.ended { TextKey::VipEnded.text(lang) } else { TextKey::VipEndsSoon.fmt(lang, &[("until", &format_time(n.vip_until_ms))]) };
        fx.say(&bot.member(n.user_id), text, None);
        if let Some(job) = fx.last() {
            job.lane = Lane::Bulk;
        }
        bot.metrics().vip_notice(&bot.name, if n.ended { "ended" } else { "reminder" });
    }
    Ok(fx.jobs)
}
