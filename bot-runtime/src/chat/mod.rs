//! What the bot does with each event, one module per feature: onboarding, the menu, the
//! profile, search, relay, ending chats, safety (reports, blocks). Handlers change shared state
//! through the stores and return their messages as outbox jobs in [`Effects`]; the pipeline
//! commits those atomically with the update's done-mark (see pipeline.rs).
//!
//! This module reads each event once and dispatches it; what users send and press is parsed
//! into [`protocol`] types first, so the feature modules never look at raw strings.
//!
//! Bad input from a user always gets a clear answer; only store or Telegram outages are
//! errors (the update is then retried).

mod admin;
mod admin_commands;
mod ending;
mod lock;
mod menu;
mod onboarding;
mod payments;
mod profile;
pub mod protocol;
pub mod reconcile;
mod referral;
mod relay;
pub mod retire;
mod safety;
mod search;
pub mod sender_cache;
pub mod shop;
pub mod telegram_menu;
pub mod text_key;
pub mod vip;

use std::time::Duration;

use botfleet_crds::rate_limit_policy::OnExceed;
use serde_json::{Value, json};

pub use self::ending::{leave_everything, notify_partner};
use self::protocol::{Callback, Command, TimerKind, search_timer_member};
pub use self::protocol::{idle_timer, search_timer_id};
use self::text_key::TextKey;
use crate::bot::{Audience, Bot, Effects, HandleError};
use crate::hot::{Job, Lane, Timer};
use crate::ingress::update::{CallbackQuery, Event, From, Message};
use crate::matching::Member;
use crate::store::{EndReason, Funnel, Stage, User, day_of};
use crate::texts::Lang;

/// Handles one event. Returns Err only for outages (retry); everything else is an answer.
pub async fn handle(fx: &mut Effects<'_>, event: Event) -> Result<(), HandleError> {
    // Every update a user sends (message, command, button text, edit, inline button) costs
    // from one per-user budget before the bot answers anything, so nobody can make the bot
    // queue more for their chat than Telegram delivers to it (about one message a second).
    // Money is never rate-limited: a pre-checkout must be answered within Telegram's 10 s,
    // and a payment or refund notice must be applied whatever the user did before it. Safety
    // is never rate-limited either: report and block always work (SPEC), however much the
    // user typed before — an abusive partner is exactly when someone types a lot.
    let from = match &event {
        Event::Message(m) if m.successful_payment.is_some() || m.refunded_payment.is_some() => None,
        Event::Message(m) if is_safety_action(m) => None,
        Event::Callback(q) if matches!(q.data.as_deref().and_then(Callback::parse), Some(Callback::ReportReason { .. })) => None,
        Event::Message(m) | Event::Edited(m) => m.from.as_ref(),
        Event::Callback(q) => Some(&q.from),
        Event::PreCheckout(_) | Event::MemberStatus { .. } | Event::Ignored(_) => None,
    };
    // A message that waited at Telegram (its `date` is more than REDELIVERED_AFTER old) is not
    // charged: after an outage or a token rotation Telegram delivers in one burst what users
    // sent at their own pace, and that is no flood (found by the token-rotation scenario: the
    // budget dropped most of a rotation's backlog). Charging it at its send time instead would
    // break GCRA's order (a tap redelivered between two such messages is charged now). A flood
    // sent during the outage still meets the chat's backlog cap (CHAT_BACKLOG).
    let waited = matches!(&event, Event::Message(m) if m.date > 0 && fx.now_ms - m.date.saturating_mul(1000) > REDELIVERED_AFTER_MS);
    // A retry after a failed attempt was charged by its first attempt (issue 9: the budget is
    // charged once per update, however often it is retried).
    let from = if waited || fx.retry { None } else { from };
    if let Some(from) = from
        && !within_budget(fx, from).await?
    {
        let me = fx.bot.member(from.id);
        let lang = Lang::for_user(from.language_code.as_deref(), &fx.bot.cfg().bot.locale.default);
        return match event {
            // A button answer is no message (no send budget): the warning goes on the button.
            Event::Callback(q) => {
                fx.answers.push((q.id, Some(TextKey::SlowDown.text(lang))));
                Ok(())
            }
            _ => warn_once(fx, &me, lang, TextKey::SlowDown).await,
        };
    }
    match event {
        Event::Message(m) => on_message(fx, *m).await,
        Event::Edited(m) => relay::on_edited(fx, *m).await,
        Event::Callback(q) => on_callback(fx, q).await,
        Event::PreCheckout(q) => payments::on_pre_checkout(fx, q).await,
        Event::MemberStatus { user, status } => safety::on_member_status(fx, user, &status).await,
        Event::Ignored(_) => Ok(()),
    }
}

/// A message that is neither a payment, a command nor a keyboard button: what a chat relays.
fn is_plain_chat_message(m: &Message) -> bool {
    m.successful_payment.is_none()
        && m.refunded_payment.is_none()
        && Command::of_message(m).is_none()
        && m.text.as_deref().and_then(Command::of_button).is_none()
}

/// `/report`, `/block` or a tap on their chat-keyboard buttons (in either language).
fn is_safety_action(m: &Message) -> bool {
    let command = Command::of_message(m).or_else(|| m.text.as_deref().and_then(Command::of_button));
    matches!(command, Some(Command::Report | Command::Block))
}

/// Fires one timer (claimed by this replica only).
pub async fn on_timer(fx: &mut Effects<'_>, timer: &Timer) -> Result<(), HandleError> {
    match TimerKind::parse(&timer.payload) {
        Ok(TimerKind::Search { t0, n }) => match search_timer_member(&timer.id) {
            Some(member) => search::refresh(fx, &timer.id, &member, t0, n).await,
            None => {
                tracing::warn!(bot = %fx.bot.name, "search timer with a malformed id dropped");
                Ok(())
            }
        },
        Ok(TimerKind::Idle { a, b }) => ending::end_idle_chat(fx, &a, &b).await,
        Ok(TimerKind::Ban { member, until }) => admin::on_ban(fx, &member, until).await,
        Ok(TimerKind::Refund { charge, admin }) => admin::on_refund(fx, &charge, admin).await,
        Err(e) => {
            tracing::warn!(bot = %fx.bot.name, error = %e, "unknown timer dropped");
            Ok(())
        }
    }
}

// ---- messages ----------------------------------------------------------------------------

async fn on_message(fx: &mut Effects<'_>, m: Message) -> Result<(), HandleError> {
    let Some(from) = m.from.clone() else { return Ok(()) };
    let sender = fx.bot.member(from.id);
    // A plain chat message of a member already chatting: the copy of their row this process
    // took earlier in the same chat (sender_cache.rs says why that is the row), checked
    // against the partner read now.
    let plain = is_plain_chat_message(&m);
    let copy = if plain { fx.bot.chatting.get(from.id, day_of(fx.now_ms), from.username.as_deref()) } else { None };
    let (user, partner) = match copy {
        Some((user, partner_then)) => {
            let partner = fx.matcher().partner(fx.pool(), &sender).await?;
            if partner.as_ref() == Some(&partner_then) {
                fx.bot.metrics().chatting_sender(&fx.bot.name, "cached");
                let lang = lang_of(fx.bot, &user);
                return relay::relay(fx, &user, lang, &partner_then, &m).await;
            }
            // Another chat (or none) now: the row is read; the partner just read serves.
            fx.bot.chatting.forget(from.id);
            (load_user(fx, &from).await?, partner)
        }
        None => {
            // The profile (Postgres) and the partner (Redis) in parallel: one round trip, not two.
            let (user, partner) = tokio::join!(load_user(fx, &from), fx.matcher().partner(fx.pool(), &sender));
            (user?, partner?)
        }
    };
    let me = user.member();
    let lang = lang_of(fx.bot, &user);

    // Payments first, at any stage: money must never wait for a profile.
    if let Some(paid) = &m.successful_payment {
        return payments::on_successful_payment(fx, &user, lang, paid).await;
    }
    if let Some(refunded) = &m.refunded_payment {
        return payments::on_refunded_payment(fx, refunded).await;
    }

    if let Some(command) = Command::of_message(&m) {
        // Report and block always work: never behind the commands-per-minute limit.
        if matches!(command, Command::Report | Command::Block) {
            return on_command(fx, user, lang, command).await;
        }
        let limits = fx.bot.cfg().limits.per_user.clone();
        let per = limits.commands_per_minute.max(1);
        if !fx.hot().allow(fx.pool(), &format!("cmd:{me}"), per, Duration::from_secs(60), per, fx.now_ms).await? {
            warn_once(fx, &me, lang, TextKey::CommandsSlowDown).await?;
            return Ok(());
        }
        return on_command(fx, user, lang, command).await;
    }

    // Reply-keyboard buttons arrive as their text (not rate limited as commands: a tap is slow).
    if let Some(command) = m.text.as_deref().and_then(Command::of_button) {
        return on_command(fx, user, lang, command).await;
    }

    match user.stage {
        Stage::Ready => {}
        Stage::Age => return onboarding::on_age(fx, user, lang, m.text.as_deref()).await,
        _ => return onboarding::prompt_stage(fx, &user, lang).await,
    }

    match partner {
        Some(partner) => {
            if plain {
                fx.bot.metrics().chatting_sender(&fx.bot.name, "database");
                fx.bot.chatting.put(&user, &partner);
            }
            relay::relay(fx, &user, lang, &partner, &m).await
        }
        None => {
            let key = if fx.matcher().waiting(fx.pool(), &me).await? { TextKey::AlreadySearching } else { TextKey::NotInChat };
            fx.say(&me, key.text(lang), Some(crate::bot::menu_keyboard(lang)));
            Ok(())
        }
    }
}

async fn on_command(fx: &mut Effects<'_>, user: User, lang: Lang, command: Command) -> Result<(), HandleError> {
    let me = user.member();
    // Commands that work at any stage. Safety first: report and block work whatever the stage.
    match command {
        // A forwarded invoice links here (`start_parameter`): the shop, once the profile is done.
        Command::Start { payload: Some(p) } if p == "vip" && user.stage == Stage::Ready => return shop::show(fx, &user, lang).await,
        Command::Start { payload: Some(p) } if p.starts_with(referral::PREFIX) => {
            referral::on_start(fx, &user, &p[referral::PREFIX.len()..]).await?;
            return menu::start(fx, &user, lang).await;
        }
        Command::Start { .. } => return menu::start(fx, &user, lang).await,
        Command::Help => {
            menu::help(fx, &user, lang);
            return Ok(());
        }
        Command::DeleteMe => {
            profile::confirm_delete(fx, &me, lang);
            return Ok(());
        }
        Command::Report => return ending::end_chat(fx, &user, lang, EndReason::Report).await,
        Command::Block => return ending::end_chat(fx, &user, lang, EndReason::Block).await,
        Command::Stop => return ending::end_chat(fx, &user, lang, EndReason::Stop).await,
        // What Telegram requires of a bot that sells works whatever the stage.
        Command::PaySupport { question } => {
            payments::pay_support(fx, &user, lang, question.as_deref());
            return Ok(());
        }
        Command::SaleTerms => {
            payments::sale_terms(fx, &user, lang);
            return Ok(());
        }
        Command::History => return payments::history(fx, &user, lang).await,
        // Works at any stage: anyone may stop announcements.
        Command::News { on } => return menu::news(fx, &me, lang, on).await,
        // Admins only (anyone else is told it is an unknown command).
        Command::Refund { charge } => return payments::admin_refund(fx, &user, lang, charge.as_deref()).await,
        Command::Ban { args } => return admin_commands::ban(fx, &user, lang, &args).await,
        Command::Unban { args } => return admin_commands::unban(fx, &user, lang, &args).await,
        Command::Broadcast { text } => return admin_commands::broadcast(fx, &user, lang, &text).await,
        _ => {}
    }
    if user.stage != Stage::Ready {
        fx.say(&me, TextKey::FinishProfile.text(lang), None);
        return onboarding::prompt_stage(fx, &user, lang).await;
    }
    match command {
        Command::Search => search::search(fx, &user, lang).await,
        Command::Next => ending::end_chat(fx, &user, lang, EndReason::Next).await,
        Command::Profile => {
            profile::show(fx, &user, lang);
            Ok(())
        }
        Command::Stats => {
            menu::stats(fx, &me, lang).await?;
            admin_commands::stats(fx, &user, lang).await
        }
        Command::Vip => shop::show(fx, &user, lang).await,
        Command::Lock => lock::show(fx, &user, lang).await,
        Command::Invite => referral::invite(fx, &user, lang).await,
        _ => {
            menu::unknown(fx, &me, lang);
            Ok(())
        }
    }
}

// ---- inline buttons ----------------------------------------------------------------------

async fn on_callback(fx: &mut Effects<'_>, q: CallbackQuery) -> Result<(), HandleError> {
    let user = load_user(fx, &q.from).await?;
    let lang = lang_of(fx.bot, &user);
    let message_id = q.message.as_ref().map(|m| m.message_id);
    let stage = user.stage;

    // Each step returns the answer shown on the pressed button (if any).
    let answer = match q.data.as_deref().and_then(Callback::parse) {
        Some(Callback::AcceptTerms) if matches!(stage, Stage::Terms | Stage::Channels) => onboarding::accept_terms(fx, user, lang).await?,
        Some(Callback::CheckChannels) if stage == Stage::Channels => onboarding::check_channels(fx, user, lang).await?,
        Some(Callback::Gender(g)) if stage == Stage::Gender => onboarding::set_gender(fx, user, lang, g).await?,
        Some(Callback::CancelSearch) => search::cancel(fx, &user.member(), lang, message_id).await?,
        Some(Callback::Rate { session, up }) => ending::rate(fx, &user.member(), lang, session, up, message_id).await?,
        Some(Callback::ReportReason { report, reason }) => {
            safety::report_reason(fx, &user.member(), lang, report, reason, message_id).await?
        }
        Some(Callback::EditProfile) if stage == Stage::Ready => profile::edit(fx, user, lang).await?,
        Some(Callback::DeleteProfile) => {
            profile::confirm_delete(fx, &user.member(), lang);
            None
        }
        Some(Callback::ConfirmDelete) => profile::delete(fx, &user.member(), lang, message_id).await?,
        Some(Callback::KeepProfile) => profile::keep(fx, &user.member(), lang, message_id),
        Some(Callback::Buy { plan }) if stage == Stage::Ready => shop::buy(fx, &user, lang, &plan).await?,
        Some(Callback::CancelSubscription { plan }) => shop::cancel_subscription(fx, &user, lang, &plan, message_id).await?,
        Some(Callback::Lock { minutes }) if stage == Stage::Ready => lock::lock(fx, &user, lang, minutes, &q.id, message_id).await?,
        Some(Callback::Broadcast { id, go }) => admin_commands::confirm_broadcast(fx, &user, lang, id, go, message_id).await?,
        _ => Some(TextKey::ButtonStale.text(lang)),
    };
    fx.answers.push((q.id, answer));
    Ok(())
}

/// Stops the clients' button spinners, once the update's effects are committed (the pipeline
/// calls it after the commit). Called directly, not through the outbox: an answer is not a
/// message (no send budget) and Telegram wants it within seconds; a lost answer only leaves
/// the spinner running, so a failure is logged and forgotten.
pub fn send_answers(bot: &Bot, answers: Vec<(String, Option<String>)>) {
    for (id, text) in answers {
        let api = bot.api.clone();
        let name = bot.name.clone();
        tokio::spawn(async move {
            let mut params = json!({ "callback_query_id": id });
            if let Some(text) = text {
                params["text"] = Value::String(text);
            }
            if let Err(e) = api.call_with_timeout("answerCallbackQuery", &params, Duration::from_secs(10)).await {
                tracing::debug!(bot = %name, error = %e, "answerCallbackQuery failed");
            }
        });
    }
}

// ---- shared helpers ----------------------------------------------------------------------

fn lang_of(bot: &Bot, user: &User) -> Lang {
    Lang::parse(&user.language).unwrap_or_else(|| Lang::for_user(None, &bot.cfg().bot.locale.default))
}

async fn load_user(fx: &Effects<'_>, from: &From) -> Result<User, HandleError> {
    let cfg = fx.bot.cfg();
    let lang = Lang::for_user(from.language_code.as_deref(), &cfg.bot.locale.default);
    let mut user = fx.store().user_or_create(&fx.bot.name, from.id, lang.code(), fx.now_ms).await?;
    if !user.reachable {
        fx.store().set_reachable(&fx.bot.name, from.id, true).await?;
        user.reachable = true;
    }
    // The activity record: one write per member per day (or when the username changes),
    // never one per message.
    let today = day_of(fx.now_ms);
    if user.active_day != Some(today) || user.username != from.username {
        if user.active_day.is_none() {
            fx.store().record_event(&fx.bot.name, from.id, Funnel::Start, "", fx.now_ms).await?;
        }
        fx.store().record_activity(&fx.bot.name, from.id, from.username.as_deref(), today).await?;
        user.active_day = Some(today);
        user.username = from.username.clone();
    }
    Ok(user)
}

/// A member's language and profile (of any bot of the pool).
async fn audience(fx: &Effects<'_>, member: &Member) -> Result<Audience, HandleError> {
    let user = fx.store().user(&member.bot, member.user).await?;
    let lang = user.as_ref().and_then(|u| Lang::parse(&u.language)).unwrap_or(Lang::En);
    Ok(Audience { lang, user })
}

fn min_age(bot: &Bot) -> String {
    bot.cfg().bot.moderation.minimum_age.to_string()
}

fn format_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()
}

/// Takes one update from the sender's budget (`perUser.messagesPerSecond`, burst
/// `perUser.burst`); false when it is spent.
async fn within_budget(fx: &Effects<'_>, from: &From) -> Result<bool, HandleError> {
    let me = fx.bot.member(from.id);
    let limits = &fx.bot.cfg().limits.per_user;
    let rate = limits.messages_per_second.max(1);
    Ok(fx.hot().allow(fx.pool(), &format!("upd:{me}"), rate, Duration::from_secs(1), limits.burst.max(rate), fx.now_ms).await?)
}

/// How long a message must have waited at Telegram (now − its `date`) to count as redelivered
/// (not charged to its sender's budget). Telegram's `date` has whole seconds and live updates
/// arrive within a second or two, so 10 s never exempts a live flood.
const REDELIVERED_AFTER_MS: i64 = 10_000;

/// Tells the user once per minute (or never, per the policy) that they were rate limited.
async fn warn_once(fx: &mut Effects<'_>, me: &Member, lang: Lang, key: TextKey) -> Result<(), HandleError> {
    if fx.bot.cfg().limits.on_exceed == OnExceed::DropSilently {
        return Ok(());
    }
    if fx.hot().allow(fx.pool(), &format!("warn:{}:{me}", key.as_str()), 1, Duration::from_secs(60), 1, fx.now_ms).await? {
        fx.say(me, key.text(lang), None);
    }
    Ok(())
}

/// Inline buttons, one row of (label, callback) pairs per inner vector.
fn buttons(rows: Vec<Vec<(String, Callback)>>) -> Value {
    crate::bot::inline(rows.into_iter().map(|row| row.into_iter().map(|(text, data)| (text, data.render())).collect()).collect())
}

fn edit_text(fx: &mut Effects<'_>, me: &Member, message_id: i64, text: String, markup: Option<Value>) {
    let mut params = json!({"chat_id": me.user, "message_id": message_id, "text": text, "parse_mode": "HTML"});
    if let Some(m) = markup {
        params["reply_markup"] = m;
    }
    fx.push(plain_job(me, Lane::Interactive, "editMessageText", params));
}

fn edit_markup_off(fx: &mut Effects<'_>, me: &Member, message_id: i64) {
    let params = json!({"chat_id": me.user, "message_id": message_id, "reply_markup": {"inline_keyboard": []}});
    fx.push(plain_job(me, Lane::Interactive, "editMessageReplyMarkup", params));
}

pub fn plain_job(to: &Member, lane: Lane, method: &str, params: Value) -> Job {
    Job::to(to, lane, method, params)
}
