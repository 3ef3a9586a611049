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
    seen: Vec<(u64, Value)>,
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
                self.seen.push((e.seq, v["message"].clone()));
            }
        }
        Ok(())
    }

    /// Waits for a message (new or edited) not yet consumed that satisfies `pred`; consumes it.
    pub async fn expect(&mut self, what: &str, wait: Duration, pred: impl Fn(&Value) -> bool) -> Result<Value, PersonError> {
        let deadline = Instant::now() + wait;
        loop {
            self.pull()?;
            if let Some((seq, m)) = self.seen.iter().find(|(seq, m)| !self.consumed.contains(seq) && pred(m)).cloned() {
                self.consumed.insert(seq);
                return Ok(m);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let last = self
                    .seen
                    .iter()
                    .rev()
                    .take(3)
                    .map(|(_, m)| text_of(m).chars().take(60).collect::<String>())
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
            if let Some((_, m)) = self.seen.iter().rev().find(|(_, m)| has_button(m, data)) {
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
        Ok(self.seen.iter().map(|(_, m)| m.clone()).collect())
    }

    /// /start → terms → channels (joins them) → gender → age → menu.
    pub async fn onboard(&mut self, gender: &str, age: u8, channels: &[String], wait: Duration) -> Result<(), PersonError> {
        self.send("/start")?;
        self.press("terms:ok", wait).await?;
        if !channels.is_empty() {
            for c in channels {
                self.sim.set_membership(c.trim_start_matches('@'), self.id, "member").map_err(sim_err)?;
            }
            self.press("chan:check", wait).await?;
        }
        self.press(&format!("g:{gender}"), wait).await?;
        self.expect_text("ask_age", wait).await?;
        self.send(&age.to_string())?;
        self.expect_text("profile_done", wait).await?;
        Ok(())
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
        writeln!(
            f,
            "  relay latency (ms): p50 {} · p95 {} · p99 {} · max {}   (user sends → partner receives, through the fake Telegram's limits)",
            percentile(&l, 0.5),
            percentile(&l, 0.95),
            percentile(&l, 0.99),
            l.last().copied().unwrap_or(0)
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
    error: Option<String>,
}

async fn one_user(sim: Sim, bot: String, channels: Vec<String>, i: usize, messages: usize) -> Outcome {
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
    let result: Result<(), PersonError> = async {
        p.tap("menu_find")?;
        match p.expect_text("matched", Duration::from_secs(45)).await {
            Ok(_) => out.matched = true,
            Err(_) => {
                // Nobody left to meet (an odd user out): stop searching, as a person would.
                let _ = p.press("cancel", Duration::from_secs(5)).await;
                return Ok(());
            }
        }
        let started = Instant::now();
        for k in 0..messages {
            p.send(&format!("sim {} {k}", crate::bot::now_ms()))?;
            out.sent += 1;
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        // Read what the partner sent until they leave (or a while passes).
        let left_key = plain_prefix(lang, "partner_left");
        let deadline = started + Duration::from_secs(30);
        loop {
            let m = p.expect("partner's messages", deadline.saturating_duration_since(Instant::now()), |m| {
                text_of(m).starts_with("sim ") || text_of(m).starts_with(&left_key)
            });
            match m.await {
                Ok(m) if text_of(&m).starts_with("sim ") => {
                    let sent_ms: i64 = text_of(&m).split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                    let date_ms = crate::bot::now_ms();
                    out.latencies.push((date_ms - sent_ms).max(0) as u64);
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
    messages: usize,
    metrics: &Metrics,
) -> Summary {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (_, username) = &bots[i % bots.len()];
        let channels = configs[i % configs.len()].bot.required_channels.clone();
        tasks.push(tokio::spawn(one_user(sim.clone(), username.clone(), channels, i, messages)));
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
                if let Some(e) = o.error {
                    s.errors.push(e);
                }
            }
            Err(e) => s.errors.push(format!("a simulated user crashed: {e}")),
        }
    }
    s.relayed_by_runtime = bots.iter().map(|(name, _)| metrics.relayed_count(name)).sum();
    s.elapsed = started.elapsed();
    s
}
