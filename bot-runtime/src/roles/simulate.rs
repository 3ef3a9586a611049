//! Simulated Telegram users on the fake Telegram: [`Person`] plays one user of one bot (what a
//! person would see and tap), and [`run`] drives many of them through onboarding, matching and
//! chatting for `bot-runtime local --simulate N`. The scenario tests use `Person` too.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use botfleet_crds::resolved::ResolvedBotConfig;
use botfleet_fake_telegram::Sim;
use serde_json::Value;

use crate::metrics::Metrics;
use crate::texts::{Lang, Texts};

/// One simulated user of one bot, reading what the bot sends and pressing its buttons.
pub struct Person {
    pub sim: Sim,
    /// The bot's username on the fake.
    pub bot: String,
    pub id: i64,
    pub lang: Lang,
    /// What arrived: (sequence, message, when it arrived in ms).
    seen: Vec<(u64, Value, i64)>,
    consumed: HashSet<u64>,
    after: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PersonError {
    #[error("fake Telegram: {0}")]
    Sim(String),
    #[error("user {user} waited {waited:?} for {what}; last messages: {last}")]
    Timeout { user: i64, what: String, waited: Duration, last: String },
}

fn sim_err(e: impl fmt::Display) -> PersonError {
    PersonError::Sim(e.to_string())
}

/// The plain text a key starts with, as a user sees it (tags parsed away, up to the first
/// placeholder).
pub fn plain_prefix(lang: Lang, key: &str) -> String {
    let raw = Texts::get().raw(lang, key);
    let upto = raw.split('{').next().unwrap_or("").to_string();
    let mut out = String::new();
    let mut in_tag = false;
    for c in upto.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").trim().to_string()
}

pub fn text_of(m: &Value) -> &str {
    m["text"].as_str().or_else(|| m["caption"].as_str()).unwrap_or("")
}

pub fn has_button(m: &Value, data: &str) -> bool {
    m["reply_markup"]["inline_keyboard"]
        .as_array()
        .is_some_and(|rows| rows.iter().flat_map(|r| r.as_array().cloned().unwrap_or_default()).any(|b| b["callback_data"] == data))
}

impl Person {
    pub fn new(sim: &Sim, bot: &str, first_name: &str, lang: Lang) -> Result<Self, PersonError> {
        let user = sim.user(first_name, Some(lang.code())).map_err(sim_err)?;
        Ok(Self { sim: sim.clone(), bot: bot.to_string(), id: user.id, lang, seen: Vec::new(), consumed: HashSet::new(), after: 0 })
    }

    /// The same person opening another bot (same Telegram user, another chat).
    pub fn on_bot(&self, bot: &str) -> Self {
        Self {
            sim: self.sim.clone(),
            bot: bot.to_string(),
            id: self.id,
            lang: self.lang,
            seen: Vec::new(),
            consumed: HashSet::new(),
            after: 0,
        }
    }

    /// Sends text; returns the message id in the user's chat.
    pub fn send(&self, text: &str) -> Result<i64, PersonError> {
        let m = self.sim.send_text(&self.bot, self.id, text, None).map_err(sim_err)?;
        Ok(m["message_id"].as_i64().unwrap_or_default())
    }

    pub fn reply(&self, text: &str, to: i64) -> Result<i64, PersonError> {
        let m = self.sim.send_text(&self.bot, self.id, text, Some(to)).map_err(sim_err)?;
        Ok(m["message_id"].as_i64().unwrap_or_default())
    }

    pub fn send_media(
        &self,
        kind: botfleet_fake_telegram::MediaKind,
        spec: botfleet_fake_telegram::MediaSpec,
    ) -> Result<Value, PersonError> {
        self.sim.send_media(&self.bot, self.id, kind, spec, None).map_err(sim_err)
    }

    /// Taps a reply-keyboard button (it arrives as its text).
    pub fn tap(&self, key: &str) -> Result<i64, PersonError> {
        self.send(&Texts::get().raw(self.lang, key))
    }

    fn pull(&mut self) -> Result<(), PersonError> {
        for e in self.sim.inbox(self.id, Some(&self.bot), self.after).map_err(sim_err)? {
            self.after = self.after.max(e.seq);
            if let Ok(v) = serde_json::to_value(&e)
                && (v["event"] == "message" || v["event"] == "edited")
            {
                self.seen.push((e.seq, v["message"].clone(), e.at_ms));
            }
        }
        Ok(())
    }

    /// Waits for a message (new or edited) not yet consumed that satisfies `pred`; consumes it.
    pub async fn expect(&mut self, what: &str, wait: Duration, pred: impl Fn(&Value) -> bool) -> Result<Value, PersonError> {
        Ok(self.expect_at(what, wait, pred).await?.0)
    }

    /// [`Person::expect`], with when the message arrived (ms since the Unix epoch).
    pub async fn expect_at(&mut self, what: &str, wait: Duration, pred: impl Fn(&Value) -> bool) -> Result<(Value, i64), PersonError> {
        let deadline = Instant::now() + wait;
        loop {
            self.pull()?;
            if let Some((seq, m, at)) = self.seen.iter().find(|(seq, m, _)| !self.consumed.contains(seq) && pred(m)).cloned() {
                self.consumed.insert(seq);
                return Ok((m, at));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let last = self
                    .seen
                    .iter()
                    .rev()
                    .take(3)
                    .map(|(_, m, _)| text_of(m).chars().take(60).collect::<String>())
                    .collect::<Vec<_>>()
                    .join(" | ");
                return Err(PersonError::Timeout { user: self.id, what: what.to_string(), waited: wait, last });
            }
            self.sim.wait_inbox(self.id, Some(&self.bot), self.after, left.min(Duration::from_millis(500))).await.map_err(sim_err)?;
        }
    }

    /// Waits for a message starting with the text of `key`.
    pub async fn expect_text(&mut self, key: &str, wait: Duration) -> Result<Value, PersonError> {
        let prefix = plain_prefix(self.lang, key);
        self.expect(key, wait, |m| text_of(m).starts_with(&prefix)).await
    }

    /// Presses the newest button with this callback data.
    pub async fn press(&mut self, data: &str, wait: Duration) -> Result<(), PersonError> {
        let deadline = Instant::now() + wait;
        loop {
            self.pull()?;
            if let Some((_, m, _)) = self.seen.iter().rev().find(|(_, m, _)| has_button(m, data)) {
                let id = m["message_id"].as_i64().unwrap_or_default();
                self.sim.press_button(&self.bot, self.id, id, data).map_err(sim_err)?;
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PersonError::Timeout { user: self.id, what: format!("a button {data:?}"), waited: wait, last: String::new() });
            }
            self.sim.wait_inbox(self.id, Some(&self.bot), self.after, left.min(Duration::from_millis(500))).await.map_err(sim_err)?;
        }
    }

    /// Every message received so far (consumed or not).
    pub fn received(&mut self) -> Result<Vec<Value>, PersonError> {
        self.pull()?;
        Ok(self.seen.iter().map(|(_, m, _)| m.clone()).collect())
    }

    /// /start → terms → channels (joins them) → gender → age → menu.
    pub async fn onboard(&mut self, gender: &str, age: u8, channels: &[String], wait: Duration) -> Result<(), PersonError> {
        self.send("/start")?;
        // Joins the required channels first, as a person who read the terms would: the bot
        // then goes straight to the gender question (it only asks to join what is missing).
        for c in channels {
            self.sim.set_membership(c.trim_start_matches('@'), self.id, "member").map_err(sim_err)?;
        }
        self.press("terms:ok", wait).await?;
        let gender_button = format!("g:{gender}");
        let next = self
            .expect("the gender question or the channels prompt", wait, |m| has_button(m, &gender_button) || has_button(m, "chan:check"))
            .await?;
        if has_button(&next, "chan:check") {
            self.press("chan:check", wait).await?;
        }
        self.press(&gender_button, wait).await?;
        self.expect_text("ask_age", wait).await?;
        self.send(&age.to_string())?;
        self.expect_text("profile_done", wait).await?;
        Ok(())
    }
}

/// How simulated users behave (`local --simulate`).
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Chat messages each user sends per chat.
    pub messages: usize,
    /// The mean pause between a user's messages (each pause is drawn from ±50 % of it): people
    /// type, and a per-chat pace faster than Telegram's one message a second only measures
    /// queueing.
    pub think: Duration,
    /// Percent of users who buy a plan before searching (and lock their chat with the credits).
    pub buyers_percent: u8,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self { messages: 5, think: Duration::from_millis(2000), buyers_percent: 20 }
    }
}

/// What `--simulate` reports.
#[derive(Debug, Default)]
pub struct Summary {
    pub users: usize,
    pub onboarded: usize,
    pub matched_users: usize,
    pub sent: usize,
    pub received: usize,
    pub relayed_by_runtime: u64,
    pub latencies_ms: Vec<u64>,
    /// Purchases paid and checkouts declined (or timed out).
    pub purchases: usize,
    pub purchases_failed: usize,
    pub locks: usize,
    /// The runtime's own time per update (received → effects durable), p50 and p99, in ms.
    pub handling_ms: Option<(f64, f64)>,
    /// Outbox time (enqueued → Telegram accepted the send), p50 and p99, in ms: it includes
    /// waiting for Telegram's per-chat and per-bot limits.
    pub outbox_ms: Option<(f64, f64)>,
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = self.latencies_ms.clone();
        l.sort_unstable();
        writeln!(f, "\nsimulation summary ({:.1} s)", self.elapsed.as_secs_f64())?;
        writeln!(f, "  users:              {} ({} onboarded)", self.users, self.onboarded)?;
        writeln!(f, "  matches:            {} ({} users found a partner)", self.matched_users / 2, self.matched_users)?;
        writeln!(
            f,
            "  messages:           {} sent, {} received by partners, {} relayed by the runtime",
            self.sent, self.received, self.relayed_by_runtime
        )?;
        writeln!(f, "  purchases:          {} paid, {} declined; {} chats locked", self.purchases, self.purchases_failed, self.locks)?;
        writeln!(
            f,
            "  relay latency (ms): p50 {} · p95 {} · p99 {} · max {}   (user sends → partner receives, end to end)",
            percentile(&l, 0.5),
            percentile(&l, 0.95),
            percentile(&l, 0.99),
            l.last().copied().unwrap_or(0)
        )?;
        let pair = |v: Option<(f64, f64)>| v.map_or_else(|| "n/a".to_string(), |(p50, p99)| format!("p50 ≤ {p50} · p99 ≤ {p99}"));
        writeln!(f, "    of which the runtime's handling (ms): {}   (update received → durable)", pair(self.handling_ms))?;
        writeln!(
            f,
            "    and the outbox (ms):                  {}   (queued → sent; includes waiting for Telegram's 1 msg/s per chat and per-bot limits)",
            pair(self.outbox_ms)
        )?;
        if self.errors.is_empty() {
            write!(f, "  errors:             none")
        } else {
            writeln!(f, "  errors:             {}", self.errors.len())?;
            for e in self.errors.iter().take(5) {
                writeln!(f, "    {e}")?;
            }
            Ok(())
        }
    }
}

#[derive(Default)]
struct Outcome {
    onboarded: bool,
    matched: bool,
    sent: usize,
    latencies: Vec<u64>,
    paid: bool,
    pay_failed: bool,
    locked: bool,
    error: Option<String>,
}

/// A pause of about `think` (±50 %).
fn think(mean: Duration) -> Duration {
    let ms = mean.as_millis() as f64;
    Duration::from_millis((ms * (0.5 + rand::random::<f64>())) as u64)
}

/// The pause before a tap on the bot's menus: people read, then tap, about a second apart
/// (faster would only meet the per-user budget of the RateLimitPolicy, as it should).
async fn before_tap(how: &Behaviour) {
    tokio::time::sleep(think(how.think).max(Duration::from_secs(1))).await;
}

/// The shop → Buy → pay through Telegram → "paid". The plan bought: the first that grants lock
/// credits (so the buyer can lock a chat), else the first sold.
async fn buy(p: &mut Person, cfg: &ResolvedBotConfig, how: &Behaviour, wait: Duration) -> Result<bool, PersonError> {
    let Some(plan) = cfg.plans.iter().find(|pl| pl.grants.lock_credits > 0).or_else(|| cfg.plans.first()) else { return Ok(false) };
    if !cfg.bot.features.payments {
        return Ok(false);
    }
    before_tap(how).await;
    p.send("/vip")?;
    p.expect_text("shop", wait).await?;
    before_tap(how).await;
    p.press(&format!("buy:{}", crate::chat::protocol::plan_ref(&plan.id)), wait).await?;
    let invoice = p.expect("an invoice", wait, |m| m.get("invoice").is_some()).await?;
    let message_id = invoice["message_id"].as_i64().unwrap_or_default();
    let outcome = p.sim.pay(&p.bot, p.id, botfleet_fake_telegram::InvoiceRef::Message { message_id }).await.map_err(sim_err)?;
    if !matches!(outcome, botfleet_fake_telegram::PayOutcome::Paid { .. }) {
        return Ok(false);
    }
    p.expect_text("paid", wait).await?;
    Ok(true)
}

async fn one_user(sim: Sim, bot: String, cfg: Arc<ResolvedBotConfig>, i: usize, how: Behaviour) -> Outcome {
    let channels = cfg.bot.required_channels.clone();
    let messages = how.messages;
    let mut out = Outcome::default();
    let lang = if i % 3 == 2 { Lang::Ru } else { Lang::En };
    let wait = Duration::from_secs(60);
    let mut p = match Person::new(&sim, &bot, &format!("Sim{i}"), lang) {
        Ok(p) => p,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    let gender = ["m", "f", "o"][i % 3];
    if let Err(e) = p.onboard(gender, 18 + (i % 40) as u8, &channels, wait).await {
        out.error = Some(e.to_string());
        return out;
    }
    out.onboarded = true;
    // Buyers are spread evenly: user i buys when its share of the percent ticks over.
    let buyer = (i * usize::from(how.buyers_percent.min(100))) % 100 + usize::from(how.buyers_percent.min(100)) >= 100;
    if buyer {
        match buy(&mut p, &cfg, &how, wait).await {
            Ok(true) => out.paid = true,
            Ok(false) => out.pay_failed = true,
            Err(e) => {
                out.pay_failed = true;
                out.error = Some(format!("buying: {e}"));
            }
        }
    }
    let result: Result<(), PersonError> = async {
        before_tap(&how).await;
        p.tap("menu_find")?;
        match p.expect_text("matched", Duration::from_secs(45)).await {
            Ok(_) => out.matched = true,
            Err(_) => {
                // Nobody left to meet (an odd user out): stop searching, as a person would.
                let _ = p.press("cancel", Duration::from_secs(5)).await;
                return Ok(());
            }
        }
        if out.paid && cfg.bot.features.lock_chat {
            // Lock the chat for the shortest time offered (the credits came with the plan).
            if let Some(option) = cfg.bot.lock_chat.options.iter().min_by_key(|o| o.minutes) {
                before_tap(&how).await;
                p.tap("chat_lock")?;
                before_tap(&how).await;
                p.press(&format!("lock:{}", option.minutes), wait).await?;
                // Two buyers may meet: the one who locked second is told the partner holds
                // the lock already (on the button), having seen the partner's lock message.
                let (you, partner) = (plain_prefix(p.lang, "locked_you"), plain_prefix(p.lang, "locked_partner"));
                let m = p.expect("the lock", wait, |m| text_of(m).starts_with(&you) || text_of(m).starts_with(&partner)).await?;
                out.locked = text_of(&m).starts_with(&you);
            }
        }
        let started = Instant::now();
        for k in 0..messages {
            tokio::time::sleep(think(how.think)).await;
            p.send(&format!("sim {} {k}", crate::bot::now_ms()))?;
            out.sent += 1;
        }
        // Read what the partner sent until they leave (or a while passes).
        let left_key = plain_prefix(lang, "partner_left");
        let deadline = started + Duration::from_secs(30) + how.think * u32::try_from(messages).unwrap_or(u32::MAX) * 2;
        loop {
            let m = p.expect_at("partner's messages", deadline.saturating_duration_since(Instant::now()), |m| {
                text_of(m).starts_with("sim ") || text_of(m).starts_with(&left_key)
            });
            match m.await {
                Ok((m, arrived_ms)) if text_of(&m).starts_with("sim ") => {
                    // From the sender's send to the moment it reached this user (not when this
                    // simulated user got round to reading it).
                    let sent_ms: i64 = text_of(&m).split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                    out.latencies.push((arrived_ms - sent_ms).max(0) as u64);
                    if out.latencies.len() >= messages {
                        break;
                    }
                }
                _ => break,
            }
        }
        p.tap("chat_stop")?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        out.error = Some(e.to_string());
    }
    out
}

/// Drives `n` simulated users spread over `bots` ((name, fake username)).
pub async fn run(
    sim: &Sim,
    bots: &[(String, String)],
    configs: &[Arc<ResolvedBotConfig>],
    n: usize,
    how: &Behaviour,
    metrics: &Metrics,
) -> Summary {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (_, username) = &bots[i % bots.len()];
        let cfg = configs[i % configs.len()].clone();
        tasks.push(tokio::spawn(one_user(sim.clone(), username.clone(), cfg, i, how.clone())));
    }
    let mut s = Summary { users: n, ..Summary::default() };
    for t in tasks {
        match t.await {
            Ok(o) => {
                s.onboarded += usize::from(o.onboarded);
                s.matched_users += usize::from(o.matched);
                s.sent += o.sent;
                s.received += o.latencies.len();
                s.latencies_ms.extend(o.latencies);
                s.purchases += usize::from(o.paid);
                s.purchases_failed += usize::from(o.pay_failed);
                s.locks += usize::from(o.locked);
                if let Some(e) = o.error {
                    s.errors.push(e);
                }
            }
            Err(e) => s.errors.push(format!("a simulated user crashed: {e}")),
        }
    }
    s.relayed_by_runtime = bots.iter().map(|(name, _)| metrics.relayed_count(name)).sum();
    let ms = |name: &str| {
        let q = |p| metrics.histogram_quantile(name, p).map(|s| (s * 1000.0 * 10.0).round() / 10.0);
        q(0.5).zip(q(0.99))
    };
    s.handling_ms = ms("botfleet_update_handling_seconds");
    s.outbox_ms = ms("botfleet_outbox_delivery_seconds");
    s.elapsed = started.elapsed();
    s
}
