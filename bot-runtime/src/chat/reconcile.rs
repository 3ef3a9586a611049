//! Reconciliation with Telegram's Stars ledger: pages through the bot's `getStarTransactions`
//! (chronological) from where the last pass stopped and checks each payment and refund
//! against the payments applied here. A mismatch is counted (`botfleet_reconciliation_mismatches_total`)
//! and logged with its charge id, once. One replica of a bot runs it at a time (a lease in the
//! hot store). The rules are docs/MONEY.md, "Reconciliation".

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::bot::{Bot, HandleError, Ticker, now_ms};

/// How often a pass runs.
pub const EVERY: Duration = Duration::from_secs(15 * 60);
/// The lease that makes one replica the reconciler; renewed every tick, so it moves only when
/// its holder is gone.
const LEASE_TTL: Duration = Duration::from_secs(5 * 60);
const TICK: Duration = Duration::from_secs(60);
/// Transactions younger than this are left for the next pass: the payment's update reaches
/// the bot seconds after Telegram records the transaction, and a retried update minutes after.
pub const SETTLE_SECS: i64 = 10 * 60;
const PAGE: i64 = 100;

/// What does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchKind {
    /// Telegram took Stars for a charge this bot never applied (nothing was granted).
    UnknownCharge,
    /// The charge's amount differs from the payment recorded here.
    AmountDiffers,
    /// Telegram refunded a charge whose grant was not reversed here.
    RefundNotApplied,
    /// Telegram refunded a charge this bot never applied.
    UnknownRefund,
}

impl MismatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MismatchKind::UnknownCharge => "unknown_charge",
            MismatchKind::AmountDiffers => "amount",
            MismatchKind::RefundNotApplied => "refund_not_applied",
            MismatchKind::UnknownRefund => "unknown_refund",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub kind: MismatchKind,
    pub charge: String,
    pub stars: i64,
}

/// A transaction as reconciliation reads it: a user's invoice payment in, or its refund out.
/// Anything else (withdrawals, ads, gifts, subscriptions of other kinds) is not ours to check.
fn classify(tx: &Value) -> Option<(bool, String, i64)> {
    let id = tx["id"].as_str()?.to_string();
    let amount = tx["amount"].as_i64()?;
    let is_invoice = |p: &Value| p["type"] == "user" && p["transaction_type"] == "invoice_payment";
    if is_invoice(&tx["source"]) {
        return Some((false, id, amount));
    }
    if is_invoice(&tx["receiver"]) {
        return Some((true, id, amount));
    }
    None
}

/// One pass: reads the transactions after the saved offset (up to those younger than
/// [`SETTLE_SECS`] at `now_ms`), reports what does not match, and saves the new offset.
/// Reports nothing when another pass (another replica whose lease outlived this one's, or
/// this one's before a restart) moved the offset first: that pass reported them.
pub async fn pass(bot: &Bot, now_ms: i64) -> Result<Vec<Mismatch>, HandleError> {
    let start = bot.store.reconcile_offset(&bot.name).await?;
    let mut offset = start;
    let mut found = Vec::new();
    let cutoff_secs = now_ms / 1000 - SETTLE_SECS;
    'pages: loop {
        let page = bot.api.call("getStarTransactions", &json!({"offset": offset, "limit": PAGE})).await?;
        let list = page["transactions"].as_array().cloned().unwrap_or_default();
        let n = list.len();
        for tx in &list {
            if tx["date"].as_i64().unwrap_or(i64::MAX) > cutoff_secs {
                break 'pages;
            }
            if let Some((refund, charge, stars)) = classify(tx) {
                let payment = bot.store.payment_of_charge(&bot.name, &charge).await?;
                let kind = match (refund, payment) {
                    (false, None) => Some(MismatchKind::UnknownCharge),
                    (false, Some(p)) if p.stars != stars => Some(MismatchKind::AmountDiffers),
                    (true, None) => Some(MismatchKind::UnknownRefund),
                    (true, Some(p)) if p.refunded_ms.is_none() => Some(MismatchKind::RefundNotApplied),
                    _ => None,
                };
                if let Some(kind) = kind {
                    found.push(Mismatch { kind, charge, stars });
                }
            }
            offset += 1;
        }
        if n < PAGE as usize {
            break;
        }
    }
    if !bot.store.save_reconcile_offset(&bot.name, start, offset, now_ms).await? {
        tracing::info!(bot = %bot.name, "another replica reconciled these transactions first");
        return Ok(Vec::new());
    }
    for m in &found {
        bot.metrics().reconciliation_mismatch(&bot.name, m.kind.as_str());
        // Kept for the admins' analytics page; a failure to keep it loses only that row.
        if let Err(e) = bot.store.record_mismatch(&bot.name, &m.charge, m.kind.as_str(), m.stars, now_ms).await {
            tracing::warn!(bot = %bot.name, error = %e, "could not keep a reconciliation mismatch for the admins");
        }
        // The charge id names the payment for the admin (no user id, no payload).
        tracing::error!(
            bot = %bot.name, charge = %m.charge, stars = m.stars, kind = m.kind.as_str(),
            "Telegram's Stars ledger does not match this bot's payments (a refund not applied here: `/refund <charge>` applies it)"
        );
    }
    if !found.is_empty() {
        alert_admins(bot, &found, now_ms).await;
    }
    Ok(found)
}

/// Tells the bot's admins in Telegram (at most once an hour): money may be at stake.
async fn alert_admins(bot: &Bot, found: &[Mismatch], now_ms: i64) {
    let mut kinds: Vec<&str> = found.iter().map(|m| m.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let (count, kinds) = (found.len().to_string(), kinds.join(", "));
    let mut fx = crate::bot::Effects::new(bot, now_ms, None);
    let args = [("count", count.as_str()), ("kinds", kinds.as_str())];
    let text = super::text_key::TextKey::AdminAlertPayments;
    match super::admin_commands::alert_admins(&mut fx, &bot.name, "payments", "payments", text, &args).await {
        Ok(()) => {
            if !fx.jobs.is_empty() && bot.fleet.hot.commit(&bot.pool, crate::hot::Marker::None, &fx.jobs).await.is_ok() {
                bot.fleet.ring(&fx.jobs);
            }
        }
        Err(e) => tracing::warn!(bot = %bot.name, error = %e, "could not alert the admins about reconciliation mismatches"),
    }
}

/// What one tick of a replica's reconciler did.
#[derive(Debug, PartialEq, Eq)]
pub enum Tick {
    /// Payments are off for the bot.
    Off,
    /// Another replica holds the bot's reconcile lease (or the lease could not be read).
    NotLeader,
    /// This replica holds the lease and passed less than [`EVERY`] ago.
    NotDue,
    /// A pass ran and reported these.
    Passed(Vec<Mismatch>),
    /// A pass failed; the next tick tries again.
    Failed,
}

/// One replica's reconciler for one bot: every tick it takes (or keeps) the bot's lease and,
/// when it holds it and a pass is due, runs one. The lease decides which replica passes; the
/// offset's compare-and-set ([`pass`]) makes a pass that outlived its lease report nothing.
pub struct Reconciler {
    lease: String,
    last: Option<Instant>,
}

impl Reconciler {
    pub fn new(bot: &Bot) -> Self {
        Self { lease: format!("reconcile:{}", bot.name), last: None }
    }

    pub async fn tick(&mut self, bot: &Bot, now_ms: i64) -> Tick {
        if !bot.cfg().bot.features.payments {
            return Tick::Off;
        }
        match bot.fleet.hot.lease(&bot.pool, &self.lease, &bot.fleet.replica, LEASE_TTL).await {
            Ok(true) => {}
            Ok(false) => {
                // When the lease comes back, pass at once: the holder's last pass is unknown.
                self.last = None;
                return Tick::NotLeader;
            }
            Err(e) => {
                tracing::warn!(bot = %bot.name, error = %e, "cannot take the reconcile lease");
                return Tick::NotLeader;
            }
        }
        if self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return Tick::NotDue;
        }
        match pass(bot, now_ms).await {
            Ok(found) => {
                self.last = Some(Instant::now());
                tracing::info!(bot = %bot.name, mismatches = found.len(), "Stars reconciliation pass done");
                Tick::Passed(found)
            }
            Err(e) => {
                tracing::warn!(bot = %bot.name, error = %e, "Stars reconciliation failed; retrying at the next tick");
                Tick::Failed
            }
        }
    }
}

/// Ticks the bot's [`Reconciler`] every minute until shutdown.
pub async fn run(bot: Arc<Bot>, shutdown: watch::Receiver<bool>) {
    let mut ticker = Ticker::new(TICK, shutdown);
    let mut reconciler = Reconciler::new(&bot);
    while ticker.tick().await {
        reconciler.tick(&bot, now_ms()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_invoice_payments_and_their_refunds_are_checked() {
        let pay = json!({"id": "c1", "amount": 5, "date": 1, "source": {"type": "user", "transaction_type": "invoice_payment"}});
        let refund = json!({"id": "c1", "amount": 5, "date": 2, "receiver": {"type": "user", "transaction_type": "invoice_payment"}});
        let withdrawal = json!({"id": "w", "amount": 500, "date": 3, "receiver": {"type": "fragment"}});
        let paid_media = json!({"id": "m", "amount": 5, "date": 3, "source": {"type": "user", "transaction_type": "paid_media_payment"}});
        assert_eq!(classify(&pay), Some((false, "c1".into(), 5)));
        assert_eq!(classify(&refund), Some((true, "c1".into(), 5)));
        assert_eq!(classify(&withdrawal), None);
        assert_eq!(classify(&paid_media), None);
        assert_eq!(classify(&json!({"amount": 5})), None, "malformed: skipped, never a panic");
    }
}
