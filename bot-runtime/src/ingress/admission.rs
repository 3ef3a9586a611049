//! Admission control by egress: a bot takes new work only while its outbox can deliver what it
//! already holds within a few seconds.
//!
//! Why: taking an update is cheap, delivering its answers is not (Telegram's per-bot limit,
//! and the send itself). Without this, a burst of 10× what a bot delivers is accepted whole,
//! and every chat's next message waits behind minutes of queued sends (issue 9's overload
//! bench: 6 minutes). With it, past [`DEFAULT_SECONDS`] of backlog the webhook answers 503
//! (Telegram keeps the update and delivers it again later) and the poller stops fetching
//! (Telegram keeps the updates), so the backlog — and a new chat's wait — stays at a few
//! seconds, and the bot is back to normal as soon as the burst ends.
//!
//! - The backlog is the bot's **interactive** lane only, fleet-wide (every replica's jobs for
//!   the bot, from [`Outbox::outbox_lengths`](crate::hot::Outbox::outbox_lengths)). Broadcasts
//!   and other bulk jobs never refuse a user's update (the bulk lane waits behind chats).
//! - Its capacity is the bot's configured per-bot send rate (`outbound.perBotPerSecond`,
//!   Telegram's 30/s by default; values above the CRD's maximum of 1000 count as 1000). One
//!   chat's backlog is capped far below it (`CHAT_BACKLOG` = 20 jobs ≪ 3 s × 30/s), so one user
//!   flooding their chat never closes the door for everyone.
//! - Never refused: a `pre_checkout_query` (Telegram waits 10 s for the answer; refusing fails a
//!   payment), payment notices, and a user's `/report` or `/block` (commands, their reply-
//!   keyboard buttons, the report's reason buttons): safety always works.
//! - The sample is taken by the outbox's watcher of the bot in this process every 100 ms; one
//!   older than [`STALE`] is ignored (the door stays open rather than closing on old news).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde_json::Value;

use crate::chat::protocol::{Callback, Command};
use crate::ingress::update;

/// Seconds of the bot's delivery rate its interactive outbox may hold before new updates are
/// refused (EGRESS_BACKLOG_SECONDS; 0 turns admission control off).
pub const DEFAULT_SECONDS: u64 = 3;
/// A sample older than this (ms) does not refuse anything.
const STALE: i64 = 2_000;
/// A configured rate above this counts as this (the CRD's maximum of `perBotPerSecond`).
const MAX_RATE: u64 = 1_000;

#[derive(Default)]
struct Sample {
    interactive: AtomicU64,
    at_ms: AtomicI64,
}

/// Per bot of this process: the last sample of its interactive outbox depth.
pub struct Egress {
    seconds: AtomicU64,
    bots: RwLock<HashMap<String, std::sync::Arc<Sample>>>,
}

impl Default for Egress {
    fn default() -> Self {
        Self { seconds: AtomicU64::new(DEFAULT_SECONDS), bots: RwLock::default() }
    }
}

/// What admission says about a new update of a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Refused: the backlog would take about this many seconds to deliver.
    Later {
        backlog_seconds: u64,
    },
}

impl Egress {
    /// Sets the threshold in seconds of delivery (0: off).
    pub fn set_seconds(&self, seconds: u64) {
        self.seconds.store(seconds, Ordering::Relaxed);
    }

    fn sample(&self, bot: &str) -> std::sync::Arc<Sample> {
        if let Some(s) = self.bots.read().unwrap_or_else(|p| p.into_inner()).get(bot) {
            return s.clone();
        }
        self.bots.write().unwrap_or_else(|p| p.into_inner()).entry(bot.to_string()).or_default().clone()
    }

    /// Records the bot's interactive depth (jobs queued fleet-wide), sampled at `now_ms`.
    pub fn record(&self, bot: &str, interactive: u64, now_ms: i64) {
        let s = self.sample(bot);
        s.interactive.store(interactive, Ordering::Relaxed);
        s.at_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The backlog in seconds of delivery at `per_bot_per_second` (0: unlimited → the maximum).
    pub fn backlog_seconds(&self, bot: &str, per_bot_per_second: u32, now_ms: i64) -> f64 {
        let s = self.sample(bot);
        if now_ms - s.at_ms.load(Ordering::Relaxed) > STALE {
            return 0.0;
        }
        s.interactive.load(Ordering::Relaxed) as f64 / rate(per_bot_per_second) as f64
    }

    /// Whether a new update of the bot may be taken now.
    pub fn admit(&self, bot: &str, per_bot_per_second: u32, now_ms: i64) -> Admit {
        let seconds = self.seconds.load(Ordering::Relaxed);
        if seconds == 0 {
            return Admit::Yes;
        }
        let backlog = self.backlog_seconds(bot, per_bot_per_second, now_ms);
        if backlog > seconds as f64 { Admit::Later { backlog_seconds: backlog.ceil() as u64 } } else { Admit::Yes }
    }
}

fn rate(per_bot_per_second: u32) -> u64 {
    match u64::from(per_bot_per_second) {
        0 => MAX_RATE,
        n => n.min(MAX_RATE),
    }
}

/// Updates admission never refuses: money (a pre-checkout must be answered within 10 s; payment
/// notices move Stars) and safety (a report or a block, however it is asked for).
pub fn exempt(raw: &Value) -> bool {
    if crate::ingress::pipeline::is_money(raw) {
        return true;
    }
    if let Some(data) = raw.pointer("/callback_query/data").and_then(Value::as_str) {
        return matches!(Callback::parse(data), Some(Callback::ReportReason { .. }));
    }
    let Some(message) = raw.get("message") else { return false };
    let Ok(m) = serde_json::from_value::<update::Message>(message.clone()) else { return false };
    let command = Command::of_message(&m).or_else(|| m.text.as_deref().and_then(Command::of_button));
    matches!(command, Some(Command::Report | Command::Block))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(text: &str) -> Value {
        json!({"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"},
            "from": {"id": 5, "is_bot": false, "first_name": "A"}, "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": text.split(' ').next().map_or(0, str::len)}]}})
    }

    #[test]
    fn money_and_safety_are_never_refused_and_chat_is() {
        assert!(exempt(&json!({"update_id": 1, "pre_checkout_query": {"id": "q"}})));
        assert!(exempt(&message("/report")));
        assert!(exempt(&message("/block")));
        assert!(exempt(&json!({"update_id": 1, "callback_query": {"id": "c", "data": "rr:12:spam"}})));
        assert!(exempt(&json!({"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"},
            "successful_payment": {"currency": "XTR", "total_amount": 1, "invoice_payload": "p", "telegram_payment_charge_id": "c", "provider_payment_charge_id": ""}}})));
        for (key, _) in crate::chat::protocol::BUTTONS.iter().filter(|(_, c)| matches!(c, Command::Report | Command::Block)) {
            for lang in [crate::texts::Lang::En, crate::texts::Lang::Ru] {
                let plain = json!({"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}, "text": key.text(lang)}});
                assert!(exempt(&plain), "the {lang:?} button {:?}", key.text(lang));
            }
        }
        assert!(!exempt(&message("/next")));
        assert!(!exempt(&message("hello")));
        assert!(!exempt(&json!({"update_id": 1, "callback_query": {"id": "c", "data": "rate:1:u"}})));
        assert!(!exempt(
            &json!({"update_id": 1, "edited_message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}, "text": "/report"}})
        ));
    }

    #[test]
    fn past_the_threshold_in_seconds_of_the_bots_rate_updates_wait() {
        let e = Egress::default();
        assert_eq!(e.admit("a", 30, 1_000), Admit::Yes, "nothing sampled yet");
        e.record("a", 90, 1_000);
        assert_eq!(e.admit("a", 30, 1_000), Admit::Yes, "3 s of backlog at 30/s is still fine");
        e.record("a", 91, 1_000);
        assert_eq!(e.admit("a", 30, 1_000), Admit::Later { backlog_seconds: 4 });
        assert_eq!(e.admit("a", 0, 1_000), Admit::Yes, "unlimited counts as 1000/s");
        assert_eq!(e.admit("a", 30, 1_000 + STALE + 1), Admit::Yes, "a stale sample refuses nothing");
        assert_eq!(e.admit("b", 30, 1_000), Admit::Yes, "per bot");
        e.set_seconds(0);
        assert_eq!(e.admit("a", 30, 1_000), Admit::Yes, "off");
    }
}
