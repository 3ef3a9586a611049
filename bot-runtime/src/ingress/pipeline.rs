//! One update, start to durable end — the part of the hot path shared by webhook and polling:
//!
//! 1. dedupe: claim (bot, update_id) with a short lease; a done update is acknowledged and
//!    nothing happens twice; one held by another replica is refused for now (Telegram retries);
//! 2. handle: decide and produce outbox jobs (chat/);
//! 3. commit: the jobs and the done-mark in one atomic step;
//! 4. only then acknowledge (webhook 200 / polling offset). On an outage the claim is given
//!    back and the update is refused, so Telegram delivers it again.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bot::{Bot, Effects, HandleError, now_ms};
use crate::chat;
use crate::chat::text_key::TextKey;
use crate::hot::{Claim, Marker};
use crate::ingress::update::{self, Event};
use crate::texts::Lang;

/// How long one attempt may hold an update before another replica may take it over.
pub const CLAIM_LEASE: Duration = Duration::from_secs(30);
/// How often a claim is renewed while its update is handled (well inside the lease).
const CLAIM_RENEW_EVERY: Duration = Duration::from_secs(10);
/// How long a done update is remembered: Telegram drops undelivered updates after 24 h.
pub const DONE_KEEP: Duration = Duration::from_secs(26 * 3600);
/// Attempts at an update that fails the same way each time (not an outage) before it is
/// abandoned: recorded (metadata only), its sender told, and skipped — so one poison update
/// never stalls a polling bot or loops through Telegram's redeliveries for 24 h.
pub const MAX_FAILED_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled now; its effects are durable.
    Handled,
    /// Handled before (a redelivery): nothing done.
    Duplicate,
    /// Another replica is handling it right now: retry later.
    Busy,
    /// No update_id: nothing can be done with it, and retrying won't help.
    Malformed,
    /// An outage stopped it; nothing of it was committed: retry later.
    Failed(String),
    /// It failed the same way [`MAX_FAILED_ATTEMPTS`] times: recorded, its sender told, done.
    Abandoned,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Handled => "handled",
            Outcome::Duplicate => "duplicate",
            Outcome::Busy => "busy",
            Outcome::Malformed => "malformed",
            Outcome::Failed(_) => "error",
            Outcome::Abandoned => "abandoned",
        }
    }
    /// Whether Telegram may forget the update (webhook 2xx / polling offset past it).
    pub fn is_final(&self) -> bool {
        matches!(self, Outcome::Handled | Outcome::Duplicate | Outcome::Malformed | Outcome::Abandoned)
    }
}

pub async fn process(bot: &Bot, raw: &Value) -> Outcome {
    let started = Instant::now();
    let outcome = run(bot, raw).await;
    let metrics = bot.metrics();
    metrics.update(&bot.name, outcome.label());
    if outcome == Outcome::Handled {
        metrics.handled_in(&bot.name, started.elapsed().as_secs_f64());
    }
    if let Outcome::Failed(e) = &outcome {
        tracing::warn!(bot = %bot.name, update_id = update::update_id(raw).unwrap_or_default(), error = %e, "update failed; it will be redelivered");
    }
    outcome
}

async fn run(bot: &Bot, raw: &Value) -> Outcome {
    let Some(update_id) = update::update_id(raw) else {
        tracing::warn!(bot = %bot.name, "update without update_id ignored");
        return Outcome::Malformed;
    };
    let hot = bot.fleet.hot.as_ref();
    // The update's clock: its first attempt's time on every attempt (defect 4), so what is
    // derived from "now" (a chat's start, a rate-limit window, a timer's due time) is the same
    // on a retry.
    let attempt_at = now_ms();
    let at = match hot.claim_update_at(&bot.pool, &bot.name, update_id, CLAIM_LEASE, attempt_at).await {
        Ok((Claim::Taken, at)) => at,
        Ok((Claim::Done, _)) => return Outcome::Duplicate,
        Ok((Claim::Busy, _)) => return Outcome::Busy,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let event = update::parse(raw);
    if let Event::Ignored(why) = &event {
        tracing::debug!(bot = %bot.name, update_id, why, "update ignored");
    }
    let mut fx = Effects::new(bot, at, Some(format!("u:{}:{update_id}", bot.name)));
    fx.retry = at != attempt_at;
    // The claim is renewed while the update is handled, so a slow step (a media download, a
    // database that answers slowly) never lets another replica take it over mid-way.
    let handled = {
        let renew = async {
            loop {
                tokio::time::sleep(CLAIM_RENEW_EVERY).await;
                if let Err(e) = hot.renew_update(&bot.pool, &bot.name, update_id, CLAIM_LEASE).await {
                    tracing::debug!(bot = %bot.name, update_id, error = %e, "could not renew the claim");
                }
            }
        };
        tokio::select! {
            result = chat::handle(&mut fx, event) => result,
            () = renew => unreachable!("the renewal loop never ends"),
        }
    };
    let result: Result<(), HandleError> = match handled {
        Ok(()) => hot
            .commit(&bot.pool, Marker::Update { bot: bot.name.clone(), update_id, keep: DONE_KEEP }, &fx.jobs)
            .await
            .map_err(HandleError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            bot.fleet.ring(&fx.jobs);
            chat::send_answers(bot, std::mem::take(&mut fx.answers));
            tracing::debug!(bot = %bot.name, update_id, jobs = fx.jobs.len(), "update handled");
            Outcome::Handled
        }
        Err(e) => {
            // Money is never abandoned: a payment or refund notice, or a pre-checkout, is
            // retried as long as Telegram keeps it (and logged at every failure), because the
            // user's Stars moved or are about to.
            if !e.is_outage() && !is_money(raw) {
                match hot.note_failure(&bot.pool, &bot.name, update_id, DONE_KEEP).await {
                    Ok(n) if n >= MAX_FAILED_ATTEMPTS => return abandon(bot, raw, update_id, &e).await,
                    Ok(_) => {}
                    Err(count) => tracing::debug!(bot = %bot.name, update_id, error = %count, "could not count the failure"),
                }
            }
            if let Err(release) = hot.release_update_at(&bot.pool, &bot.name, update_id, Some((at, DONE_KEEP))).await {
                tracing::debug!(bot = %bot.name, update_id, error = %release, "could not release the claim; it expires by itself");
            }
            Outcome::Failed(e.to_string())
        }
    }
}

/// Whether an update carries money: a pre-checkout, or a payment or refund notice.
/// Money updates: a pre-checkout or a payment / refund notice (never abandoned, never refused).
pub(crate) fn is_money(raw: &Value) -> bool {
    raw.get("pre_checkout_query").is_some()
        || ["message", "edited_message"]
            .iter()
            .any(|k| raw[k].get("successful_payment").is_some() || raw[k].get("refunded_payment").is_some())
}

/// Gives up on an update that keeps failing the same way: its done-mark is committed with one
/// message to its sender ("something went wrong, try again"), and what is known of it —
/// bot, update id, kind, the error, never its content — goes to the log (the
/// `outcome="abandoned"` count of `botfleet_updates_total` alerts on it). The claim is still
/// ours, so nobody else is working on it.
async fn abandon(bot: &Bot, raw: &Value, update_id: i64, error: &HandleError) -> Outcome {
    let kind = update::kind_of(raw);
    tracing::error!(
        bot = %bot.id,
        update_id,
        kind,
        error = %crate::delivery::outbox::quoted_parts_removed(&error.to_string()),
        "update abandoned after {MAX_FAILED_ATTEMPTS} failed attempts; its sender is told"
    );
    let mut fx = Effects::new(bot, now_ms(), None);
    if let Some((user, language)) = update::sender_of(raw) {
        let lang = Lang::for_user(language, &bot.cfg().bot.locale.default);
        fx.say(&bot.member(user), TextKey::Unavailable.text(lang), None);
    }
    let marker = Marker::Update { bot: bot.name.clone(), update_id, keep: DONE_KEEP };
    match bot.fleet.hot.commit(&bot.pool, marker, &fx.jobs).await {
        Ok(()) => {
            bot.fleet.ring(&fx.jobs);
            Outcome::Abandoned
        }
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
