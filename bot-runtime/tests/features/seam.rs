//! The seam: the chat handlers without HTTP. Bots are built exactly as `app::start_bot` builds
//! them (`app::prepare_bot`) on the embedded stores of `app::embedded_fleet` (in-memory SQLite,
//! `MemoryHot`, `MemoryPool`), but nothing runs in the background — no outbox consumer, no
//! timer loop, no poller. A test plays the users; each step runs `chat::handle` (or
//! `chat::on_timer`) once with a fresh `Effects` and returns the outbox jobs it produced as
//! plain data ([`Out`]).
//!
//! The jobs are returned, not committed: which outbox a job lands in is `job.bot`, and
//! nothing here would read the outbox streams. Steps that must not repeat still go through
//! `Effects::once` under the pipeline's memo names, so a step behaves as in production.
//!
//! The calls handlers make to Telegram themselves (getChatMember for required channels,
//! getFile + download for cross-bot media, answerCallbackQuery) go to an in-process fake
//! Telegram; a button press waits for its answer there, so [`Out::answer`] is what the user
//! saw on the button.
//!
//! Time is the seam's: every step happens one second after the previous one (as a person's
//! taps do, so per-user rate limits never trip by accident); [`Seam::advance`] jumps further.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_runtime::bot::{Bot, Effects, Fleet};
use bot_runtime::chat;
use bot_runtime::chat::protocol::Callback;
use bot_runtime::chat::text_key::TextKey;
use bot_runtime::config::LiveConfig;
use bot_runtime::hot::{Job, Marker, Timer};
use bot_runtime::ingress::update::{self, Event};
use bot_runtime::matching::Member;
use bot_runtime::metrics::Metrics;
use bot_runtime::roles::app;
use bot_runtime::store::User;
use bot_runtime::telegram::TelegramApi;
use bot_runtime::texts::Lang;
use botfleet_crds::resolved::ResolvedBotConfig;
use botfleet_crds::token::BotToken;
use botfleet_tests::fake_telegram::state::PreCheckout;
use botfleet_tests::fake_telegram::{InboxEvent, MediaKind, MediaSpec, Shared, Sim, World};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::support::{Mode, bot_config, username};

/// 2025-06-02 09:00:00 UTC: a fixed start, so times in texts are the same on every run.
const START_MS: i64 = 1_748_854_800_000;
/// How far the clock moves with every step.
const STEP_MS: i64 = 1_000;
/// How long a press waits for the handler's answerCallbackQuery to reach the fake.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// A person as one bot sees them: their Telegram id, the bot they write to, their language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: i64,
    pub bot: String,
    pub lang: Lang,
}

impl Person {
    pub fn member(&self) -> Member {
        Member::new(self.bot.clone(), self.id)
    }

    /// The same person writing to another bot (a person is one Telegram id across bots).
    pub fn on(&self, bot: &str) -> Person {
        Person { bot: bot.to_string(), ..self.clone() }
    }
}

/// Bots of one pool, their stores, a fake Telegram for the calls handlers make directly, and
/// the clock.
pub struct Seam {
    pub fleet: Arc<Fleet>,
    pub sim: Sim,
    bots: HashMap<String, Arc<Bot>>,
    /// Where each bot's configuration changes (as the operator's ConfigMap would).
    configs: HashMap<String, tokio::sync::watch::Sender<Arc<ResolvedBotConfig>>>,
    /// Each bot's token at the fake, and the fake's address (for another replica's client).
    tokens: HashMap<String, String>,
    api_url: String,
    fake: Arc<Shared>,
    server: JoinHandle<()>,
    clock: AtomicI64,
    next_update: AtomicI64,
    next_message: AtomicI64,
    shown: Mutex<HashMap<(String, i64), Vec<Shown>>>,
}

/// A message with inline buttons sent to a chat (bot, user): its id here and its callback data.
type Shown = (i64, Vec<String>);

impl Drop for Seam {
    fn drop(&mut self) {
        self.fake.stop();
        self.server.abort();
    }
}

impl Seam {
    /// Bots with the given names and the default configuration, in one pool.
    pub async fn bots(names: &[&str]) -> Seam {
        Seam::with(names.iter().map(|n| bot_config(n, Mode::Polling, "")).collect()).await
    }

    /// Bots with these configurations (see `support::bot_config` for the YAML they start from).
    pub async fn with(configs: Vec<ResolvedBotConfig>) -> Seam {
        let fake = Shared::new(World::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port for the fake Telegram");
        let api_url = format!("http://{}", listener.local_addr().expect("the fake's address"));
        let router = botfleet_tests::fake_telegram::router(fake.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let sim = Sim::new(fake.clone());
        let metrics = Metrics::new();
        let fleet = app::embedded_fleet("sqlite::memory:", metrics.clone()).await.expect("embedded fleet");
        let mut bots = HashMap::new();
        let mut senders = HashMap::new();
        let mut tokens = HashMap::new();
        for cfg in configs {
            let name = cfg.bot.name.clone();
            let info = sim.register_bot(&username(&name)).expect("register the bot");
            for channel in &cfg.bot.required_channels {
                // Several bots may require the same channel.
                let _ = sim.add_channel(channel.trim_start_matches('@'), channel, None);
            }
            let token = BotToken::parse(&info.token).expect("the fake's token");
            let api = TelegramApi::new(&api_url, token, &name, metrics.clone());
            let (live, sender) = LiveConfig::channel(cfg);
            let bot = app::prepare_bot(&fleet, live, api).await.expect("prepare the bot");
            senders.insert(name.clone(), sender);
            tokens.insert(name.clone(), info.token);
            bots.insert(name, bot);
        }
        Seam {
            fleet,
            sim,
            bots,
            configs: senders,
            tokens,
            api_url,
            fake,
            server,
            clock: AtomicI64::new(START_MS),
            next_update: AtomicI64::new(1),
            next_message: AtomicI64::new(1_000_000),
            shown: Mutex::new(HashMap::new()),
        }
    }

    pub fn bot(&self, name: &str) -> &Arc<Bot> {
        self.bots.get(name).unwrap_or_else(|| panic!("no bot {name:?} in this seam"))
    }

    /// The bot as another replica (`replica`, a pod of the same Deployment) serves it: its own
    /// process state and metrics, the same hot store, database and Telegram bot.
    pub async fn replica(&self, name: &str, replica: &str) -> Arc<Bot> {
        let sender = self.configs.get(name).unwrap_or_else(|| panic!("no bot {name:?} in this seam"));
        let metrics = Metrics::new();
        let fleet =
            Fleet::new(self.fleet.hot.clone(), self.fleet.store.clone(), self.fleet.matcher.clone(), metrics.clone(), replica.into());
        let token = BotToken::parse(&self.tokens[name]).expect("the fake's token");
        let api = TelegramApi::new(&self.api_url, token, name, metrics);
        let (live, _keep) = LiveConfig::channel((**sender.borrow()).clone());
        app::prepare_bot(&fleet, live, api).await.expect("prepare the other replica's bot")
    }

    /// Changes a bot's configuration, as a new ConfigMap would (no restart).
    pub fn reconfigure(&self, cfg: ResolvedBotConfig) {
        let sender = self.configs.get(&cfg.bot.name).unwrap_or_else(|| panic!("no bot {:?} in this seam", cfg.bot.name));
        sender.send_replace(Arc::new(cfg));
    }

    // ---- the clock ---------------------------------------------------------------------

    pub fn now_ms(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    pub fn advance(&self, by: Duration) {
        self.clock.fetch_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX), Ordering::SeqCst);
    }

    fn tick(&self) -> i64 {
        self.clock.fetch_add(STEP_MS, Ordering::SeqCst) + STEP_MS
    }

    // ---- people ------------------------------------------------------------------------

    /// Someone new who writes to `bot`, with their app in `lang`.
    pub fn person(&self, bot: &str, first_name: &str, lang: Lang) -> Person {
        let user = self.sim.user(first_name, Some(lang.code())).expect("a fake user");
        Person { id: user.id, bot: bot.to_string(), lang }
    }

    /// Someone through onboarding on `bot`: terms, gender (`"m"`, `"f"`, `"o"`), age.
    pub async fn onboarded(&self, bot: &str, first_name: &str, gender: &str, age: u8) -> Person {
        let p = self.person(bot, first_name, Lang::En);
        self.onboard(&p, gender, age).await;
        p
    }

    /// Takes `p` through onboarding (no required channels).
    pub async fn onboard(&self, p: &Person, gender: &str, age: u8) {
        self.send(p, "/start").await.said(p, TextKey::Terms);
        self.press(p, &Callback::AcceptTerms.render()).await.said(p, TextKey::AskGender);
        self.press(p, &format!("g:{gender}")).await.said(p, TextKey::AskAge);
        self.send(p, &age.to_string()).await.said(p, TextKey::ProfileDone);
    }

    /// Two onboarded people, on the given bots, in a chat with each other (Ann waited first).
    pub async fn chatting(&self, ann_bot: &str, bob_bot: &str) -> (Person, Person) {
        let ann = self.onboarded(ann_bot, "Ann", "f", 25).await;
        let bob = self.onboarded(bob_bot, "Bob", "m", 31).await;
        self.send(&ann, "/search").await.said(&ann, TextKey::Searching);
        let out = self.send(&bob, "/search").await;
        out.said(&ann, TextKey::Matched);
        out.said(&bob, TextKey::Matched);
        (ann, bob)
    }

    // ---- what people do ----------------------------------------------------------------

    /// `p` writes `text` (a leading /command carries its entity, as Telegram sends it).
    pub async fn send(&self, p: &Person, text: &str) -> Out {
        let message = self.sim.send_text(&username(&p.bot), p.id, text, None).expect("the fake takes the message");
        self.update(&p.bot, json!({ "message": message })).await
    }

    /// `p` taps a reply-keyboard button: its text in `p`'s language arrives as a message.
    pub async fn tap(&self, p: &Person, button: TextKey) -> Out {
        self.send(p, &button.text(p.lang)).await
    }

    /// `p` sends media; the file is `p`'s bot's, as on Telegram (other bots must re-upload it).
    pub async fn send_media(&self, p: &Person, kind: MediaKind, spec: MediaSpec) -> Out {
        let message = self.sim.send_media(&username(&p.bot), p.id, kind, spec, None).expect("the fake takes the media");
        self.update(&p.bot, json!({ "message": message })).await
    }

    /// `p` presses an inline button they were shown (the latest message carrying `data`).
    /// Pressing a button nobody showed them is a mistake in the test: it panics.
    pub async fn press(&self, p: &Person, data: &str) -> Out {
        let message_id = self.shown_with(p, data).unwrap_or_else(|| panic!("{p:?} was never shown a button {data:?}"));
        self.press_on(p, message_id, data).await
    }

    /// `p` presses a button with `data` on message `message_id`, shown or not (old buttons in
    /// a chat history, forged data).
    pub async fn press_on(&self, p: &Person, message_id: i64, data: &str) -> Out {
        let query_id = format!("q{}", self.next_update.load(Ordering::SeqCst));
        {
            let mut world = self.fake.world();
            let bot_id = world.find_bot(&username(&p.bot)).expect("the bot is registered");
            world.bot_mut(bot_id).expect("the bot is registered").callback_queries.insert(query_id.clone(), (p.id, false));
        }
        let seen_before = self.inbox_len(p);
        let query = json!({
            "id": query_id,
            "from": {"id": p.id, "is_bot": false, "first_name": "-", "language_code": p.lang.code()},
            "message": {"message_id": message_id, "date": 0, "chat": {"id": p.id, "type": "private"}},
            "chat_instance": "1",
            "data": data,
        });
        let mut out = self.update(&p.bot, json!({ "callback_query": query })).await;
        out.answer = self.answer_of(p, &query_id, seen_before).await;
        out
    }

    /// Runs one raw Telegram update through the handlers; `update_id` is filled in if absent.
    pub async fn update(&self, bot: &str, mut raw: Value) -> Out {
        if raw.get("update_id").is_none() {
            raw["update_id"] = json!(self.next_update.fetch_add(1, Ordering::SeqCst));
        }
        let update_id = update::update_id(&raw).unwrap_or_default();
        let memo = format!("u:{bot}:{update_id}");
        self.run(bot, update::parse(&raw), memo).await
    }

    /// Runs one raw update (with its `update_id`) like [`Seam::update`], but gives the
    /// handler's error back instead of failing the test: an attempt that hit an outage. The
    /// same update run again is its retry (the same once-memos).
    pub async fn try_update(&self, bot: &str, raw: Value) -> Result<Out, String> {
        let update_id = update::update_id(&raw).expect("an update_id");
        let b = self.bot(bot);
        let mut fx = Effects::new(b, self.tick(), Some(format!("u:{bot}:{update_id}")));
        chat::handle(&mut fx, update::parse(&raw)).await.map_err(|e| e.to_string())?;
        chat::send_answers(b, std::mem::take(&mut fx.answers));
        Ok(self.out(fx.jobs))
    }

    /// The bot cannot read a channel's members (it is not an admin there): getChatMember
    /// answers 400 "member list is inaccessible".
    pub fn make_channel_unreadable(&self, channel: &str) {
        let mut world = self.fake.world();
        let name = channel.trim_start_matches('@');
        for c in world.channels.values_mut().filter(|c| c.username.as_deref() == Some(name)) {
            c.admin_bots = Some(Default::default());
        }
    }

    /// Runs one parsed event through the handlers, as the pipeline does (minus dedupe and commit).
    pub async fn event(&self, bot: &str, event: Event) -> Out {
        let update_id = self.next_update.fetch_add(1, Ordering::SeqCst);
        self.run(bot, event, format!("u:{bot}:{update_id}")).await
    }

    async fn run(&self, bot: &str, event: Event, memo: String) -> Out {
        let bot = self.bot(bot);
        let mut fx = Effects::new(bot, self.tick(), Some(memo));
        chat::handle(&mut fx, event).await.expect("handling failed (an outage of an embedded store?)");
        // As the pipeline does once the update is committed.
        chat::send_answers(bot, std::mem::take(&mut fx.answers));
        self.out(fx.jobs)
    }

    // ---- payments ----------------------------------------------------------------------

    /// Telegram asks `payer`'s bot to approve a checkout of the invoice `payload` for `amount`
    /// Stars (`payer` may not be whom the invoice was for: a forwarded invoice). Returns the
    /// step's jobs and the bot's answer: Ok, or the `error_message` shown to the payer. The
    /// answer must be given while the update is handled (inline, not through the outbox).
    pub async fn pre_checkout(&self, payer: &Person, payload: &str, amount: i64) -> (Out, Result<(), String>) {
        let query_id = format!("pcq{}", self.next_update.load(Ordering::SeqCst));
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        {
            let mut world = self.fake.world();
            let bot_id = world.find_bot(&username(&payer.bot)).expect("the bot is registered");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let pending = PreCheckout { user_id: payer.id, deadline, answer: Some(tx) };
            world.bot_mut(bot_id).expect("the bot is registered").pre_checkouts.insert(query_id.clone(), pending);
        }
        let query = json!({
            "id": query_id,
            "from": {"id": payer.id, "is_bot": false, "first_name": "-", "language_code": payer.lang.code()},
            "currency": "XTR",
            "total_amount": amount,
            "invoice_payload": payload,
        });
        let out = self.update(&payer.bot, json!({ "pre_checkout_query": query })).await;
        let answer = rx.try_recv().expect("the pre-checkout query was answered before its update was done");
        (out, answer)
    }

    /// The `successful_payment` service message Telegram sends after `p` paid `amount` Stars
    /// for the invoice `payload`, as charge `charge` (each call is a new update).
    pub async fn paid(&self, p: &Person, payload: &str, amount: i64, charge: &str) -> Out {
        let message = json!({
            "message_id": self.next_message.fetch_add(1, Ordering::SeqCst),
            "date": 0,
            "chat": {"id": p.id, "type": "private"},
            "from": {"id": p.id, "is_bot": false, "first_name": "-", "language_code": p.lang.code()},
            "successful_payment": {
                "currency": "XTR", "total_amount": amount, "invoice_payload": payload,
                "telegram_payment_charge_id": charge, "provider_payment_charge_id": "",
            },
        });
        self.update(&p.bot, json!({ "message": message })).await
    }

    /// The payment of a subscription, as Telegram sends it: `expires` (Unix seconds) ends the
    /// period paid for; `first` for the first payment, not for a renewal.
    pub async fn paid_subscription(&self, p: &Person, payload: &str, amount: i64, charge: &str, expires: i64, first: bool) -> Out {
        let mut payment = json!({
            "currency": "XTR", "total_amount": amount, "invoice_payload": payload,
            "telegram_payment_charge_id": charge, "provider_payment_charge_id": "",
            "is_recurring": true, "subscription_expiration_date": expires,
        });
        if first {
            payment["is_first_recurring"] = json!(true);
        }
        let message = json!({
            "message_id": self.next_message.fetch_add(1, Ordering::SeqCst),
            "date": 0,
            "chat": {"id": p.id, "type": "private"},
            "from": {"id": p.id, "is_bot": false, "first_name": "-", "language_code": p.lang.code()},
            "successful_payment": payment,
        });
        self.update(&p.bot, json!({ "message": message })).await
    }

    /// `p` pays the subscription invoice `link` at the fake Telegram (which starts the
    /// subscription there); the invoice's spec and the first charge id.
    pub fn subscribe_in_fake(&self, p: &Person, link: &str) -> (botfleet_tests::fake_telegram::state::InvoiceSpec, String) {
        let mut world = self.fake.world();
        let bot_id = world.find_bot(&username(&p.bot)).expect("the bot is registered");
        let slug = link.rsplit('$').next().unwrap_or(link);
        let spec = world.bot(bot_id).expect("the bot").invoice_links.get(slug).cloned().expect("the bot made this link");
        let charge = botfleet_tests::fake_telegram::methods::complete_payment(&mut world, bot_id, p.id, &spec).expect("a charge").0;
        (spec, charge)
    }

    /// The fake Telegram's record of a subscription (named by its first charge).
    pub fn subscription_in_fake(&self, first_charge: &str) -> botfleet_tests::fake_telegram::state::Subscription {
        self.fake.world().subscriptions.get(first_charge).cloned().expect("a subscription")
    }

    /// Makes the fake Telegram hold the charge of a payment `p` made of `amount` Stars for the
    /// invoice `payload` (so refundStarPayment finds it); returns its charge id. The bot's
    /// update for it is `paid` with this charge id.
    pub fn charge_in_fake(&self, p: &Person, payload: &str, amount: i64) -> String {
        let mut world = self.fake.world();
        let bot_id = world.find_bot(&username(&p.bot)).expect("the bot is registered");
        let spec = botfleet_tests::fake_telegram::state::InvoiceSpec {
            title: "-".into(),
            description: "-".into(),
            payload: payload.into(),
            currency: "XTR".into(),
            amount,
            subscription_period: None,
        };
        botfleet_tests::fake_telegram::methods::complete_payment(&mut world, bot_id, p.id, &spec).expect("a charge").0
    }

    /// Sets the Stars the fake Telegram holds for `bot` (a refund needs at least its amount).
    pub fn set_star_balance(&self, bot: &str, stars: i64) {
        let mut world = self.fake.world();
        let bot_id = world.find_bot(&username(bot)).expect("the bot is registered");
        world.bot_mut(bot_id).expect("the bot").star_balance = stars;
    }

    /// The bot's Stars transactions at the fake Telegram.
    pub fn star_transactions(&self, bot: &str) -> Vec<serde_json::Value> {
        let world = self.fake.world();
        let bot_id = world.find_bot(&username(bot)).expect("the bot is registered");
        world.bot(bot_id).expect("the bot").star_transactions.clone()
    }

    /// The `refunded_payment` service message Telegram sends when it refunded `charge`.
    pub async fn refunded(&self, p: &Person, payload: &str, amount: i64, charge: &str) -> Out {
        let message = json!({
            "message_id": self.next_message.fetch_add(1, Ordering::SeqCst),
            "date": 0,
            "chat": {"id": p.id, "type": "private"},
            "from": {"id": p.id, "is_bot": false, "first_name": "-", "language_code": p.lang.code()},
            "refunded_payment": {
                "currency": "XTR", "total_amount": amount, "invoice_payload": payload, "telegram_payment_charge_id": charge,
            },
        });
        self.update(&p.bot, json!({ "message": message })).await
    }

    // ---- timers ------------------------------------------------------------------------

    /// Fires one timer on `bot` (as if claimed), whatever its due time.
    pub async fn fire(&self, bot: &str, timer: &Timer) -> Out {
        let b = self.bot(bot);
        let mut fx = Effects::new(b, self.tick(), Some(format!("t:{bot}:{}:{}", timer.id, timer.due_ms)));
        chat::on_timer(&mut fx, timer).await.expect("firing failed");
        self.out(fx.jobs)
    }

    /// Fires the timers of `bot` due at the seam's clock, as the timer loop does (claim, fire,
    /// mark each done); all their jobs in one [`Out`].
    pub async fn fire_due(&self, bot: &str) -> Out {
        let b = self.bot(bot);
        let hot = &self.fleet.hot;
        let due = hot.claim_timers(&b.pool, bot, self.now_ms(), Duration::from_secs(30), 64).await.expect("claim timers");
        let mut jobs = Vec::new();
        for timer in due {
            let out = self.fire(bot, &timer).await;
            hot.commit(&b.pool, Marker::Timer { bot: bot.to_string(), id: timer.id.clone() }, &[]).await.expect("mark the timer done");
            jobs.extend(out.jobs);
        }
        Out { jobs, answer: None }
    }

    // ---- the stores, read back ---------------------------------------------------------

    /// `p`'s profile as `p`'s bot stores it.
    pub async fn profile(&self, p: &Person) -> Option<User> {
        self.bot(&p.bot).store.user(&p.bot, p.id).await.expect("read the profile")
    }

    pub async fn partner(&self, p: &Person) -> Option<Member> {
        let bot = self.bot(&p.bot);
        self.fleet.matcher.partner(&bot.pool, &p.member()).await.expect("read the partner")
    }

    pub async fn waiting(&self, p: &Person) -> bool {
        let bot = self.bot(&p.bot);
        self.fleet.matcher.waiting(&bot.pool, &p.member()).await.expect("read the queue")
    }

    // ---- internals ---------------------------------------------------------------------

    /// Remembers the inline buttons of every message sent, under a message id of its own.
    fn out(&self, jobs: Vec<Job>) -> Out {
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        for job in &jobs {
            let data: Vec<String> = buttons(job).into_iter().map(str::to_string).collect();
            if job.method == "sendMessage" && !data.is_empty() {
                let id = self.next_message.fetch_add(1, Ordering::SeqCst);
                shown.entry((job.bot.clone(), job.chat_id)).or_default().push((id, data));
            }
        }
        Out { jobs, answer: None }
    }

    fn shown_with(&self, p: &Person, data: &str) -> Option<i64> {
        let shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        shown.get(&(p.bot.clone(), p.id))?.iter().rev().find(|(_, d)| d.iter().any(|d| d == data)).map(|(id, _)| *id)
    }

    fn inbox_len(&self, p: &Person) -> u64 {
        self.sim.inbox(p.id, None, 0).map(|e| e.last().map(|e| e.seq).unwrap_or(0)).unwrap_or(0)
    }

    /// The text answerCallbackQuery showed on the button (`None`: answered without text).
    /// The handler answers from a task of its own, so this waits for it to reach the fake.
    async fn answer_of(&self, p: &Person, query_id: &str, after: u64) -> Option<String> {
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        let mut after = after;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let entries = self.sim.wait_inbox(p.id, Some(&username(&p.bot)), after, left).await.expect("read the inbox");
            for e in &entries {
                after = after.max(e.seq);
                if let InboxEvent::CallbackAnswer { callback_query_id, text, .. } = &e.event
                    && callback_query_id == query_id
                {
                    return text.clone();
                }
            }
            assert!(!left.is_zero(), "the press {query_id} of {p:?} was never answered");
        }
    }
}

/// What one step produced: the outbox jobs (plain data), and for a button press, the text
/// shown on the button.
#[derive(Debug)]
pub struct Out {
    pub jobs: Vec<Job>,
    pub answer: Option<String>,
}

impl Out {
    /// The jobs for `p`'s chat with `p`'s bot, in order.
    pub fn to(&self, p: &Person) -> Vec<&Job> {
        self.jobs.iter().filter(|j| j.bot == p.bot && j.chat_id == p.id).collect()
    }

    /// Whether `p` is told `key` (in `p`'s language, any placeholder values).
    pub fn says(&self, p: &Person, key: TextKey) -> bool {
        self.to(p).into_iter().any(|j| is_text(j, key, p.lang))
    }

    /// The job that tells `p` `key`; panics with everything `p` was told if there is none.
    pub fn said(&self, p: &Person, key: TextKey) -> &Job {
        self.jobs
            .iter()
            .find(|j| j.bot == p.bot && j.chat_id == p.id && is_text(j, key, p.lang))
            .unwrap_or_else(|| panic!("{} was not told {:?}; they were told:\n{}", p.id, key.as_str(), self.listing()))
    }

    /// Every job, one line each (for failure messages).
    pub fn listing(&self) -> String {
        let mut s = String::new();
        for j in &self.jobs {
            let _ = writeln!(s, "  {} → {} {}: {:?} {:?}", j.bot, j.chat_id, j.method, text(j), buttons(j));
        }
        if s.is_empty() { "  (nothing)".into() } else { s }
    }
}

/// A job's text (message text or caption), "" if none.
pub fn text(job: &Job) -> &str {
    job.params["text"].as_str().or_else(|| job.params["caption"].as_str()).unwrap_or("")
}

/// The callback data of a job's inline buttons, row by row.
pub fn buttons(job: &Job) -> Vec<&str> {
    inline_buttons(job).filter_map(|b| b["callback_data"].as_str()).collect()
}

/// The links of a job's inline buttons (e.g. channels to join).
pub fn links(job: &Job) -> Vec<&str> {
    inline_buttons(job).filter_map(|b| b["url"].as_str()).collect()
}

/// The labels of a job's reply keyboard (the menu or the chat keyboard).
pub fn keyboard(job: &Job) -> Vec<&str> {
    let rows = job.params["reply_markup"]["keyboard"].as_array().map(Vec::as_slice).unwrap_or_default();
    rows.iter().filter_map(Value::as_array).flatten().filter_map(|b| b["text"].as_str()).collect()
}

fn inline_buttons(job: &Job) -> impl Iterator<Item = &Value> {
    let rows = job.params["reply_markup"]["inline_keyboard"].as_array().map(Vec::as_slice).unwrap_or_default();
    rows.iter().filter_map(Value::as_array).flatten()
}

/// Whether a job's text is `key`'s in `lang`, with any values in its `{placeholders}`.
pub fn is_text(job: &Job, key: TextKey, lang: Lang) -> bool {
    fits_template(text(job), &key.text(lang))
}

/// `text` is `template` with each `{placeholder}` replaced by something.
fn fits_template(text: &str, template: &str) -> bool {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        pieces.push(&rest[..open]);
        rest = &rest[open + close + 1..];
    }
    pieces.push(rest);
    let (first, tail) = pieces.split_first().expect("one piece at least");
    let Some(mut left) = text.strip_prefix(first) else { return false };
    let Some((last, middle)) = tail.split_last() else { return left.is_empty() };
    for piece in middle {
        match left.find(piece) {
            Some(at) => left = &left[at + piece.len()..],
            None => return false,
        }
    }
    left.ends_with(last)
}

#[test]
fn templates_fit_their_filled_texts_only() {
    assert!(fits_template("Age 25, ok", "Age {n}, ok"));
    assert!(fits_template("plain", "plain"));
    assert!(!fits_template("plain!", "plain"));
    assert!(fits_template("🔎 Looking… 0:05", "🔎 Looking… {elapsed}"));
    assert!(!fits_template("🔎 Still looking (0:05).", "🔎 Looking… {elapsed}"));
    assert!(fits_template("a1b2c", "a{x}b{y}c"));
    assert!(!fits_template("a1c2b", "a{x}b{y}c"));
}
