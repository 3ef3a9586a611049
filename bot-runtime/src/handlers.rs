//! What the bot does with each event: onboarding, the menu, matching, relay, ending chats,
//! reports, blocks and ratings. Handlers change shared state through the stores and return
//! their messages as outbox jobs in [`Effects`]; the pipeline commits those atomically with
//! the update's done-mark (see pipeline.rs).
//!
//! Bad input from a user always gets a clear answer; only store or Telegram outages are
//! errors (the update is then retried).

use std::time::Duration;

use botfleet_crds::rate_limit_policy::OnExceed;
use serde_json::{Value, json};

use crate::bot::{Audience, Bot, Effects, HandleError, chat_keyboard, inline, menu_keyboard, message_ref, remove_keyboard, texts};
use crate::hot::{Job, Lane, Timer, Upload, saved_ref};
use crate::matching::{Gender, Member, Rules, SearchOutcome, Seeker, Tier, Want};
use crate::store::{EndReason, Funnel, Stage, User, day_of};
use crate::telegram::MAX_DOWNLOAD_BYTES;
use crate::texts::{Lang, escape};
use crate::update::{CallbackQuery, Content, Event, From, Message};

/// How long a cross-bot media blob waits in the hot store for the recipient's bot.
const BLOB_TTL: Duration = Duration::from_secs(3600);

/// Handles one event. Returns Err only for outages (retry); everything else is an answer.
pub async fn handle(fx: &mut Effects<'_>, event: Event) -> Result<(), HandleError> {
    match event {
        Event::Message(m) => on_message(fx, *m).await,
        Event::Edited(m) => on_edited(fx, *m).await,
        Event::Callback(q) => on_callback(fx, q).await,
        Event::MemberStatus { user, status } => on_member_status(fx, user, &status).await,
        Event::Ignored(_) => Ok(()),
    }
}

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

fn min_age(bot: &Bot) -> String {
    bot.cfg().bot.moderation.minimum_age.to_string()
}

// ---- messages ----------------------------------------------------------------------------

async fn on_message(fx: &mut Effects<'_>, m: Message) -> Result<(), HandleError> {
    let Some(from) = m.from.clone() else { return Ok(()) };
    // The profile (Postgres) and the partner (Redis) in parallel: one round trip, not two.
    let sender = fx.bot.member(from.id);
    let (user, partner) = tokio::join!(load_user(fx, &from), fx.matcher().partner(fx.pool(), &sender));
    let (user, partner) = (user?, partner?);
    let me = user.member();
    let lang = lang_of(fx.bot, &user);
    let t = texts();

    if let Some((command, arg)) = m.command() {
        let limits = fx.bot.cfg().limits.per_user.clone();
        let per = limits.commands_per_minute.max(1);
        if !fx.hot().allow(fx.pool(), &format!("cmd:{me}"), per, Duration::from_secs(60), per, fx.now_ms).await? {
            warn_once(fx, &me, lang, "commands_slow_down").await?;
            return Ok(());
        }
        return on_command(fx, user, lang, &command, arg).await;
    }

    // Reply-keyboard buttons arrive as their text.
    if let Some(text) = m.text.as_deref() {
        let pressed = |key: &str| [Lang::En, Lang::Ru].iter().any(|l| t.raw(*l, key) == text);
        for (key, command) in [
            ("menu_find", "search"),
            ("menu_profile", "profile"),
            ("menu_help", "help"),
            ("chat_next", "next"),
            ("chat_stop", "stop"),
            ("chat_report", "report"),
            ("chat_block", "block"),
        ] {
            if pressed(key) {
                return on_command(fx, user, lang, command, "").await;
            }
        }
    }

    match user.stage {
        Stage::Ready => {}
        Stage::Age => return on_age(fx, user, lang, m.text.as_deref()).await,
        _ => return prompt_stage(fx, &user, lang).await,
    }

    match partner {
        Some(partner) => relay(fx, &user, lang, &partner, &m).await,
        None => {
            let text = if fx.matcher().waiting(fx.pool(), &me).await? { "already_searching" } else { "not_in_chat" };
            fx.say(&me, t.raw(lang, text), Some(menu_keyboard(lang)));
            Ok(())
        }
    }
}

async fn on_command(fx: &mut Effects<'_>, user: User, lang: Lang, command: &str, _arg: &str) -> Result<(), HandleError> {
    let t = texts();
    let me = user.member();
    // Commands that work at any stage.
    match command {
        "start" => {
            return if user.stage == Stage::Ready {
                // In a chat, keep the chat keyboard: /start must not strand the user.
                if fx.matcher().partner(fx.pool(), &me).await?.is_some() {
                    fx.say(&me, t.raw(lang, "already_in_chat"), Some(chat_keyboard(lang)));
                } else {
                    fx.say(&me, t.raw(lang, "profile_done"), Some(menu_keyboard(lang)));
                }
                Ok(())
            } else {
                prompt_stage(fx, &user, lang).await
            };
        }
        "help" => {
            let markup = if user.stage == Stage::Ready { Some(menu_keyboard(lang)) } else { None };
            fx.say(&me, t.raw(lang, "help"), markup);
            return Ok(());
        }
        "delete_me" => {
            let buttons =
                inline(vec![vec![(t.raw(lang, "btn_delete_yes"), "del:yes".into()), (t.raw(lang, "btn_delete_no"), "del:no".into())]]);
            fx.say(&me, t.raw(lang, "delete_confirm"), Some(buttons));
            return Ok(());
        }
        // Safety first: report and block work whatever the stage.
        "report" => return end_chat(fx, &user, lang, EndReason::Report).await,
        "block" => return end_chat(fx, &user, lang, EndReason::Block).await,
        "stop" => return end_chat(fx, &user, lang, EndReason::Stop).await,
        _ => {}
    }
    if user.stage != Stage::Ready {
        fx.say(&me, t.raw(lang, "finish_profile"), None);
        return prompt_stage(fx, &user, lang).await;
    }
    match command {
        "search" | "find" => search(fx, &user, lang).await,
        "next" => end_chat(fx, &user, lang, EndReason::Next).await,
        "profile" => {
            show_profile(fx, &user, lang);
            Ok(())
        }
        "stats" => {
            let s = fx.store().stats(&me).await?;
            let text = t.fmt(
                lang,
                "stats",
                &[
                    ("chats", &s.chats.to_string()),
                    ("minutes", &(s.seconds_chatted / 60).to_string()),
                    ("up", &s.thumbs_up.to_string()),
                    ("down", &s.thumbs_down.to_string()),
                ],
            );
            fx.say(&me, text, None);
            Ok(())
        }
        _ => {
            fx.say(&me, t.raw(lang, "unknown_command"), None);
            Ok(())
        }
    }
}

/// Tells the user once per minute (or never, per the policy) that they were rate limited.
async fn warn_once(fx: &mut Effects<'_>, me: &Member, lang: Lang, key: &str) -> Result<(), HandleError> {
    if fx.bot.cfg().limits.on_exceed == OnExceed::DropSilently {
        return Ok(());
    }
    if fx.hot().allow(fx.pool(), &format!("warn:{key}:{me}"), 1, Duration::from_secs(60), 1, fx.now_ms).await? {
        fx.say(me, texts().raw(lang, key), None);
    }
    Ok(())
}

// ---- onboarding --------------------------------------------------------------------------

/// Shows the step the user is at.
async fn prompt_stage(fx: &mut Effects<'_>, user: &User, lang: Lang) -> Result<(), HandleError> {
    let t = texts();
    let me = user.member();
    let cfg = fx.bot.cfg();
    let age = min_age(fx.bot);
    match user.stage {
        Stage::Terms => {
            let mirror = if cfg.bot.moderation.media_mirror_chat_id.is_some() { t.raw(lang, "terms_mirror") } else { String::new() };
            let text = t.fmt(lang, "terms", &[("min_age", &age), ("mirror", &mirror)]);
            let buttons = inline(vec![vec![(t.fmt(lang, "btn_agree", &[("min_age", &age)]), "terms:ok".into())]]);
            fx.say(&me, text, Some(buttons));
        }
        Stage::Channels => {
            let missing = missing_channels(fx, user.user_id).await?;
            channels_prompt(fx, &me, lang, &missing, "channels");
        }
        Stage::Gender => ask_gender(fx, &me, lang),
        Stage::Age => fx.say(&me, t.raw(lang, "ask_age"), Some(remove_keyboard())),
        Stage::Ready => fx.say(&me, t.raw(lang, "profile_done"), Some(menu_keyboard(lang))),
    }
    Ok(())
}

fn ask_gender(fx: &mut Effects<'_>, me: &Member, lang: Lang) {
    let t = texts();
    let buttons = inline(vec![vec![
        (t.raw(lang, "btn_male"), "g:m".into()),
        (t.raw(lang, "btn_female"), "g:f".into()),
        (t.raw(lang, "btn_other"), "g:o".into()),
    ]]);
    fx.say(me, t.raw(lang, "ask_gender"), Some(buttons));
}

fn channels_prompt(fx: &mut Effects<'_>, me: &Member, lang: Lang, missing: &[String], key: &str) {
    let t = texts();
    let names = missing.iter().map(|c| escape(&channel_handle(c))).collect::<Vec<_>>().join(", ");
    let mut rows: Vec<Vec<Value>> = missing
        .iter()
        .map(|c| {
            let handle = channel_handle(c);
            let url = format!("https://t.me/{}", handle.trim_start_matches('@'));
            vec![json!({"text": t.fmt(lang, "btn_join", &[("channel", &handle)]), "url": url})]
        })
        .collect();
    rows.push(vec![json!({"text": t.raw(lang, "btn_joined"), "callback_data": "chan:check"})]);
    fx.say(me, t.fmt(lang, key, &[("channels", &names)]), Some(json!({ "inline_keyboard": rows })));
}

fn channel_handle(c: &str) -> String {
    if c.starts_with('@') { c.to_string() } else { format!("@{c}") }
}

/// The required channels the user has not joined. A channel the bot can't read (not an
/// admin there, or it doesn't exist) is skipped with a warning instead of locking every
/// user out: a configuration mistake must not take the bot down.
async fn missing_channels(fx: &Effects<'_>, user_id: i64) -> Result<Vec<String>, HandleError> {
    let mut missing = Vec::new();
    for channel in fx.bot.cfg().bot.required_channels.iter() {
        let handle = channel_handle(channel);
        match fx.bot.api.call("getChatMember", &json!({"chat_id": handle, "user_id": user_id})).await {
            Ok(member) => {
                let status = member["status"].as_str().unwrap_or("left");
                let joined = matches!(status, "creator" | "administrator" | "member")
                    || (status == "restricted" && member["is_member"].as_bool().unwrap_or(false));
                if !joined {
                    missing.push(channel.clone());
                }
            }
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => tracing::warn!(bot = %fx.bot.name, channel = %handle, error = %e, "cannot check a required channel; skipping it"),
        }
    }
    Ok(missing)
}

async fn advance(fx: &mut Effects<'_>, mut user: User, lang: Lang, stage: Stage) -> Result<(), HandleError> {
    user.stage = stage;
    user.updated_ms = fx.now_ms;
    fx.store().save_profile(&user).await?;
    if stage == Stage::Ready {
        fx.store().record_event(&fx.bot.name, user.user_id, Funnel::ProfileDone, "", fx.now_ms).await?;
        let t = texts();
        fx.say(&user.member(), t.raw(lang, "profile_done"), Some(menu_keyboard(lang)));
        return Ok(());
    }
    prompt_stage(fx, &user, lang).await
}

async fn on_age(fx: &mut Effects<'_>, user: User, lang: Lang, text: Option<&str>) -> Result<(), HandleError> {
    let t = texts();
    let me = user.member();
    let min = fx.bot.cfg().bot.moderation.minimum_age;
    let age = text
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u8>().ok());
    match age {
        Some(a) if a < min => {
            fx.say(&me, t.fmt(lang, "age_too_young", &[("min_age", &min.to_string())]), None);
            Ok(())
        }
        Some(a) if a <= 99 => {
            let mut user = user;
            user.age = Some(a);
            advance(fx, user, lang, Stage::Ready).await
        }
        _ => {
            fx.say(&me, t.fmt(lang, "age_invalid", &[("min_age", &min.to_string())]), None);
            Ok(())
        }
    }
}

fn show_profile(fx: &mut Effects<'_>, user: &User, lang: Lang) {
    let t = texts();
    let gender = user.gender.map(|g| t.raw(lang, &format!("gender_{}", g.code()))).unwrap_or_else(|| "—".into());
    let age = user.age.map(|a| a.to_string()).unwrap_or_else(|| "—".into());
    let vip = match user.vip_until_ms.filter(|t| *t > fx.now_ms) {
        Some(until) => t.fmt(lang, "vip_until", &[("until", &format_time(until))]),
        None => t.raw(lang, "vip_none"),
    };
    let text = t.fmt(lang, "profile", &[("gender", &gender), ("age", &age), ("language", lang.code()), ("vip", &vip)]);
    let buttons =
        inline(vec![vec![(t.raw(lang, "btn_edit_profile"), "prof:edit".into())], vec![(t.raw(lang, "btn_delete"), "prof:del".into())]]);
    fx.say(&user.member(), text, Some(buttons));
}

fn format_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.strftime("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()
}

// ---- callbacks ---------------------------------------------------------------------------

async fn on_callback(fx: &mut Effects<'_>, q: CallbackQuery) -> Result<(), HandleError> {
    let user = load_user(fx, &q.from).await?;
    let lang = lang_of(fx.bot, &user);
    let me = user.member();
    let t = texts();
    let data = q.data.clone().unwrap_or_default();
    let mut answer: Option<String> = None;
    let message_id = q.message.as_ref().map(|m| m.message_id);

    match data.split(':').collect::<Vec<_>>().as_slice() {
        ["terms", "ok"] if user.stage == Stage::Terms => {
            let next = if fx.bot.cfg().bot.required_channels.is_empty() { Stage::Gender } else { Stage::Channels };
            advance(fx, user, lang, next).await?;
        }
        ["chan", "check"] if user.stage == Stage::Channels => {
            let missing = missing_channels(fx, user.user_id).await?;
            if missing.is_empty() {
                advance(fx, user, lang, Stage::Gender).await?;
            } else {
                channels_prompt(fx, &me, lang, &missing, "channels_missing");
            }
        }
        ["g", code] if user.stage == Stage::Gender => match Gender::parse(code) {
            Some(g) => {
                let mut user = user;
                user.gender = Some(g);
                advance(fx, user, lang, Stage::Age).await?;
            }
            None => answer = Some(t.raw(lang, "button_stale")),
        },
        ["cancel"] => {
            if fx.matcher().cancel(fx.pool(), &me).await? {
                fx.hot().unschedule(fx.pool(), &fx.bot.name, &search_timer_id(&me)).await?;
                if let Some(id) = message_id {
                    edit_text(fx, &me, id, t.raw(lang, "search_cancelled"), None);
                }
                fx.say(&me, t.raw(lang, "search_cancelled"), Some(menu_keyboard(lang)));
            } else {
                answer = Some(t.raw(lang, "not_searching"));
            }
        }
        ["rate", session, vote] => {
            let session: i64 = session.parse().unwrap_or(-1);
            if fx.store().rate(session, &me, *vote == "u", fx.now_ms).await? {
                answer = Some(t.raw(lang, "rated"));
                if let Some(id) = message_id {
                    edit_markup_off(fx, &me, id);
                }
            } else {
                answer = Some(t.raw(lang, "button_stale"));
            }
        }
        ["rr", report, reason] if ["spam", "abuse", "minor", "other"].contains(reason) => {
            let report: i64 = report.parse().unwrap_or(-1);
            if fx.store().set_report_reason(report, &me, reason).await? {
                answer = Some(t.raw(lang, "report_thanks"));
                if let Some(id) = message_id {
                    edit_markup_off(fx, &me, id);
                }
            } else {
                answer = Some(t.raw(lang, "button_stale"));
            }
        }
        ["prof", "edit"] if user.stage == Stage::Ready => {
            if fx.matcher().partner(fx.pool(), &me).await?.is_some() {
                answer = Some(t.raw(lang, "already_in_chat"));
            } else {
                fx.matcher().cancel(fx.pool(), &me).await?;
                advance(fx, user, lang, Stage::Gender).await?;
            }
        }
        ["prof", "del"] => {
            let buttons =
                inline(vec![vec![(t.raw(lang, "btn_delete_yes"), "del:yes".into()), (t.raw(lang, "btn_delete_no"), "del:no".into())]]);
            fx.say(&me, t.raw(lang, "delete_confirm"), Some(buttons));
        }
        ["del", "yes"] => {
            leave_everything(fx, &me, EndReason::Gone).await?;
            fx.store().delete_user(&fx.bot.name, me.user, fx.now_ms).await?;
            if let Some(id) = message_id {
                edit_markup_off(fx, &me, id);
            }
            fx.say(&me, t.raw(lang, "deleted"), Some(remove_keyboard()));
        }
        ["del", "no"] => {
            if let Some(id) = message_id {
                edit_markup_off(fx, &me, id);
            }
            answer = Some(t.raw(lang, "delete_kept"));
        }
        _ => answer = Some(t.raw(lang, "button_stale")),
    }
    answer_callback(fx.bot, q.id, answer);
    Ok(())
}

/// Stops the client's button spinner. Called directly, not through the outbox: it is not a
/// message (no send budget) and Telegram wants it within seconds; a lost answer only leaves
/// the spinner running, so a failure is logged and forgotten.
fn answer_callback(bot: &Bot, id: String, text: Option<String>) {
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

async fn on_member_status(fx: &mut Effects<'_>, user: From, status: &str) -> Result<(), HandleError> {
    match status {
        "kicked" => {
            // The user blocked the bot: nothing can reach them, so their chat ends for the partner.
            fx.store().set_reachable(&fx.bot.name, user.id, false).await?;
            let me = fx.bot.member(user.id);
            leave_everything(fx, &me, EndReason::Gone).await
        }
        "member" => {
            fx.store().set_reachable(&fx.bot.name, user.id, true).await?;
            Ok(())
        }
        _ => Ok(()),
    }
}

// ---- matching ----------------------------------------------------------------------------

pub fn search_timer_id(m: &Member) -> String {
    format!("search:{m}")
}

/// The idle timer of a chat is kept by the bot of the first member (in sort order), so both
/// sides move the same timer.
pub fn idle_timer(a: &Member, b: &Member) -> (Member, String) {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    (first.clone(), format!("idle:{first}|{second}"))
}

async fn audience(fx: &Effects<'_>, member: &Member) -> Result<Audience, HandleError> {
    let user = fx.store().user(&member.bot, member.user).await?;
    let lang = user.as_ref().and_then(|u| Lang::parse(&u.language)).unwrap_or(Lang::En);
    Ok(Audience { lang, user })
}

async fn search(fx: &mut Effects<'_>, user: &User, lang: Lang) -> Result<(), HandleError> {
    let t = texts();
    let me = user.member();
    if user.is_restricted(fx.now_ms) {
        let until = format_time(user.restricted_until_ms.unwrap_or_default());
        fx.say(&me, t.fmt(lang, "restricted", &[("until", &until)]), None);
        return Ok(());
    }
    let cfg = fx.bot.cfg();
    let per = cfg.limits.per_user.searches_per_minute.max(1);
    if !fx.hot().allow(fx.pool(), &format!("search:{me}"), per, Duration::from_secs(60), per, fx.now_ms).await? {
        warn_once(fx, &me, lang, "search_slow_down").await?;
        return Ok(());
    }
    let Some(gender) = user.gender else {
        return advance(fx, user.clone(), lang, Stage::Gender).await;
    };
    // A second tap while waiting: one searching message is enough (the place is kept).
    // (Unless this is a retry of the update that queued them: then the memo says so.)
    if fx.matcher().waiting(fx.pool(), &me).await? && !fx.remembered("search").await? {
        fx.say(&me, t.raw(lang, "already_searching"), None);
        return Ok(());
    }
    fx.bot.fleet.restore_blocks(fx.pool(), &me).await?;
    fx.store().record_event(&fx.bot.name, me.user, Funnel::FirstSearch, "", fx.now_ms).await?;
    let vip = user.is_vip(fx.now_ms);
    let want = match (vip, user.wants) {
        (true, Some(g)) => Want::Only(g),
        _ => Want::Anyone,
    };
    let seeker = Seeker { member: me.clone(), gender, want, vip };
    let rules = Rules { recent_window: Duration::from_secs(u64::from(cfg.bot.matching.recent_partner_minutes) * 60), ..Rules::default() };
    let pool = fx.pool().to_string();
    let now = fx.now_ms;
    let matcher = fx.bot.fleet.matcher.clone();
    // The match is remembered per update: a retry re-announces it instead of "already in chat".
    let outcome = fx
        .once("search", || async move {
            Ok(Some(match matcher.search(&pool, &seeker, now, rules).await? {
                SearchOutcome::Matched { partner } => format!("matched {partner}"),
                SearchOutcome::AlreadyInChat { partner } => format!("in_chat {partner}"),
                SearchOutcome::BusyElsewhere { holder } => format!("elsewhere {holder}"),
                SearchOutcome::Queued => "queued".to_string(),
            }))
        })
        .await?
        .unwrap_or_default();
    let (kind, partner) = outcome.split_once(' ').unwrap_or((outcome.as_str(), ""));
    match kind {
        "matched" => {
            let partner: Member = partner.parse()?;
            fx.bot.metrics().matched(&fx.bot.pool_label, if vip { Tier::Vip.as_str() } else { Tier::Free.as_str() });
            announce_match(fx, user, lang, &partner).await
        }
        "in_chat" => {
            fx.say(&me, t.raw(lang, "already_in_chat"), Some(chat_keyboard(lang)));
            Ok(())
        }
        "elsewhere" => {
            // A person is in at most one chat per pool: finish it on the other bot first.
            let holder: Member = partner.parse()?;
            fx.say(&me, t.fmt(lang, "in_chat_other_bot", &[("bot", &escape(&holder.bot))]), Some(menu_keyboard(lang)));
            Ok(())
        }
        _ => {
            let text = t.fmt(lang, "searching", &[("elapsed", "0:00")]);
            fx.say(&me, text, Some(inline(vec![vec![(t.raw(lang, "btn_cancel"), "cancel".into())]])));
            if let Some(job) = fx.last() {
                job.save_as = Some(saved_ref(&me, "search"));
            }
            let timer =
                Timer { id: search_timer_id(&me), due_ms: fx.now_ms + 5_000, payload: json!({"k": "search", "t0": fx.now_ms, "n": 1}) };
            fx.hot().schedule(fx.pool(), &fx.bot.name, &timer).await?;
            Ok(())
        }
    }
}

async fn announce_match(fx: &mut Effects<'_>, user: &User, lang: Lang, partner: &Member) -> Result<(), HandleError> {
    let t = texts();
    let me = user.member();
    let other = audience(fx, partner).await?;
    fx.store().start_session(&me, partner, fx.now_ms).await?;
    fx.store().record_event(&me.bot, me.user, Funnel::FirstChat, "", fx.now_ms).await?;
    fx.store().record_event(&partner.bot, partner.user, Funnel::FirstChat, "", fx.now_ms).await?;
    // Neither side's search message needs refreshing any more.
    fx.hot().unschedule(fx.pool(), &me.bot, &search_timer_id(&me)).await?;
    fx.hot().unschedule(fx.pool(), &partner.bot, &search_timer_id(partner)).await?;
    let describe = |lang: Lang, u: Option<&User>| {
        let gender = u.and_then(|u| u.gender).map(|g| t.raw(lang, &format!("gender_{}", g.code()))).unwrap_or_else(|| "?".into());
        let age = u.and_then(|u| u.age).map(|a| a.to_string()).unwrap_or_else(|| "?".into());
        t.fmt(lang, "matched", &[("gender", &gender), ("age", &age)])
    };
    fx.say(&me, describe(lang, other.user.as_ref()), Some(chat_keyboard(lang)));
    fx.say(partner, describe(other.lang, Some(user)), Some(chat_keyboard(other.lang)));
    touch_idle(fx, &me, partner, true).await
}

/// How often one process moves a chat's idle timer while messages flow: the timeout fires at
/// most this much early, and a busy chat costs one timer write per 10 s instead of one per message.
const IDLE_TOUCH_EVERY_MS: i64 = 10_000;

/// (Re)starts the chat's idle countdown (`force`: now, e.g. when the chat starts).
async fn touch_idle(fx: &Effects<'_>, a: &Member, b: &Member, force: bool) -> Result<(), HandleError> {
    let (owner, id) = idle_timer(a, b);
    if !force && !fx.bot.fleet.idle_touch_due(&id, fx.now_ms, IDLE_TOUCH_EVERY_MS) {
        return Ok(());
    }
    let minutes = i64::from(fx.bot.cfg().bot.matching.idle_timeout_minutes.max(1));
    let timer = Timer { id, due_ms: fx.now_ms + minutes * 60_000, payload: json!({"k": "idle", "a": a.to_string(), "b": b.to_string()}) };
    fx.hot().schedule(fx.pool(), &owner.bot, &timer).await?;
    Ok(())
}

// ---- ending chats ------------------------------------------------------------------------

/// Stop, Next, Report, Block from the user.
async fn end_chat(fx: &mut Effects<'_>, user: &User, lang: Lang, reason: EndReason) -> Result<(), HandleError> {
    let t = texts();
    let me = user.member();
    let pool = fx.pool().to_string();
    let matcher = fx.bot.fleet.matcher.clone();
    let m2 = me.clone();
    let partner = fx.once("end", || async move { Ok(matcher.end_chat(&pool, &m2).await?.map(|p| p.to_string())) }).await?;
    let Some(partner) = partner else {
        // Not in a chat: Stop also ends a search; Next starts one.
        match reason {
            EndReason::Next if user.stage == Stage::Ready => return search(fx, user, lang).await,
            EndReason::Stop | EndReason::Next if fx.matcher().cancel(fx.pool(), &me).await? => {
                fx.hot().unschedule(fx.pool(), &fx.bot.name, &search_timer_id(&me)).await?;
                fx.say(&me, t.raw(lang, "search_cancelled"), Some(menu_keyboard(lang)));
                return Ok(());
            }
            _ => {}
        }
        let markup = if user.stage == Stage::Ready { Some(menu_keyboard(lang)) } else { None };
        fx.say(&me, t.raw(lang, "not_in_chat"), markup);
        return Ok(());
    };
    let partner: Member = partner.parse()?;
    let session = finish_session(fx, &me, &partner, Some(&me), reason).await?;
    match reason {
        EndReason::Report => {
            fx.matcher().block(fx.pool(), me.user, partner.user).await?;
            let report = fx.store().record_report(&me, &partner, session, fx.now_ms).await?;
            restrict_if_reported_enough(fx, &partner).await?;
            fx.say(&me, t.raw(lang, "you_left"), Some(menu_keyboard(lang)));
            let age = min_age(fx.bot);
            let reasons = ["spam", "abuse", "minor", "other"]
                .iter()
                .map(|r| vec![(t.fmt(lang, &format!("reason_{r}"), &[("min_age", &age)]), format!("rr:{report}:{r}"))])
                .collect();
            fx.say(&me, t.raw(lang, "reported"), Some(inline(reasons)));
        }
        EndReason::Block => {
            fx.matcher().block(fx.pool(), me.user, partner.user).await?;
            fx.store().record_block(&me, &partner, fx.now_ms).await?;
            fx.say(&me, t.raw(lang, "blocked"), Some(menu_keyboard(lang)));
        }
        _ => {
            fx.say(&me, t.raw(lang, "you_left"), Some(menu_keyboard(lang)));
            if let Some(id) = session {
                rate_prompt(fx, &me, lang, id);
            }
        }
    }
    notify_partner(fx, &partner, session, "partner_left").await?;
    if reason == EndReason::Next {
        return search(fx, user, lang).await;
    }
    Ok(())
}

/// Closes the session row and the idle timer; returns the session id.
async fn finish_session(
    fx: &Effects<'_>,
    a: &Member,
    b: &Member,
    by: Option<&Member>,
    reason: EndReason,
) -> Result<Option<i64>, HandleError> {
    let (owner, id) = idle_timer(a, b);
    fx.hot().unschedule(fx.pool(), &owner.bot, &id).await?;
    let closed = fx.store().end_session(a, b, by, reason, fx.now_ms).await?;
    Ok(closed.map(|s| s.id))
}

fn rate_prompt(fx: &mut Effects<'_>, to: &Member, lang: Lang, session: i64) {
    let t = texts();
    let buttons =
        inline(vec![vec![(t.raw(lang, "btn_up"), format!("rate:{session}:u")), (t.raw(lang, "btn_down"), format!("rate:{session}:d"))]]);
    fx.say(to, t.raw(lang, "rate_prompt"), Some(buttons));
}

/// Tells the other side its chat ended (in its own bot and language), with a rating prompt.
pub async fn notify_partner(fx: &mut Effects<'_>, partner: &Member, session: Option<i64>, key: &str) -> Result<(), HandleError> {
    let other = audience(fx, partner).await?;
    let text = match key {
        "chat_idle" => texts().fmt(other.lang, key, &[("minutes", &fx.bot.cfg().bot.matching.idle_timeout_minutes.to_string())]),
        _ => texts().raw(other.lang, key),
    };
    fx.say(partner, text, Some(menu_keyboard(other.lang)));
    if let Some(id) = session {
        rate_prompt(fx, partner, other.lang, id);
    }
    Ok(())
}

async fn restrict_if_reported_enough(fx: &Effects<'_>, member: &Member) -> Result<(), HandleError> {
    let cfg = fx.bot.cfg();
    let m = &cfg.bot.moderation;
    let since = fx.now_ms - i64::from(m.window_hours) * 3_600_000;
    if fx.store().reporters_since(member.user, since).await? >= u64::from(m.reports_to_restrict) {
        let until = fx.now_ms + i64::from(m.restrict_hours) * 3_600_000;
        // The person, on every bot: out of every queue of this pool now; other pools refuse
        // them at their next search (the restriction is read with the profile).
        fx.store().restrict(member.user, Some(until), fx.now_ms).await?;
        fx.matcher().cancel_person(fx.pool(), member.user).await?;
        tracing::info!(bot = %member.bot, "a user was restricted automatically after reports");
    }
    Ok(())
}

/// The member is gone (blocked the bot, deleted the profile): leave the queue and end their
/// chat, telling the partner.
pub async fn leave_everything(fx: &mut Effects<'_>, me: &Member, reason: EndReason) -> Result<(), HandleError> {
    if fx.matcher().cancel(fx.pool(), me).await? {
        fx.hot().unschedule(fx.pool(), &me.bot, &search_timer_id(me)).await?;
    }
    let pool = fx.pool().to_string();
    let matcher = fx.bot.fleet.matcher.clone();
    let m2 = me.clone();
    let partner = fx.once("gone", || async move { Ok(matcher.end_chat(&pool, &m2).await?.map(|p| p.to_string())) }).await?;
    if let Some(partner) = partner {
        let partner: Member = partner.parse()?;
        let session = finish_session(fx, me, &partner, Some(me), reason).await?;
        notify_partner(fx, &partner, session, "partner_gone").await?;
    }
    Ok(())
}

// ---- relay -------------------------------------------------------------------------------

async fn relay(fx: &mut Effects<'_>, user: &User, lang: Lang, partner: &Member, m: &Message) -> Result<(), HandleError> {
    let t = texts();
    let me = user.member();
    let cfg = fx.bot.cfg();
    let limits = &cfg.limits.per_user;
    let rate = limits.messages_per_second.max(1);
    // The rate bucket and the idle countdown in parallel (a dropped message is activity too).
    let bucket = format!("msg:{me}");
    let (allowed, touched) = tokio::join!(
        fx.hot().allow(fx.pool(), &bucket, rate, Duration::from_secs(1), limits.burst.max(rate), fx.now_ms),
        touch_idle(fx, &me, partner, false)
    );
    touched?;
    if !allowed? {
        return warn_once(fx, &me, lang, "slow_down").await;
    }
    let origin = message_ref(&me, m.message_id);
    let reply_to = m.reply_to_message.as_ref().map(|r| message_ref(&me, r.message_id));
    let same_bot = partner.bot == me.bot;
    let kind = match m.content() {
        Content::Unsupported => {
            fx.say(&me, t.raw(lang, "unsupported"), None);
            return Ok(());
        }
        Content::Media { .. } if !cfg.bot.features.media_relay => {
            fx.say(&me, t.raw(lang, "media_disabled"), None);
            return Ok(());
        }
        Content::Text if same_bot => {
            copy_job(fx, &me, partner, m.message_id, origin, reply_to);
            "text"
        }
        Content::Text => {
            let mut params = json!({"chat_id": partner.user, "text": m.text.clone().unwrap_or_default()});
            if let Some(e) = &m.entities {
                params["entities"] = e.clone();
            }
            let mut job = plain_job(partner, Lane::Interactive, "sendMessage", params);
            job.origin = Some(origin);
            job.reply_to = reply_to;
            job.chat_member = Some(partner.to_string());
            fx.push(job);
            "text"
        }
        Content::Media { kind, .. } if same_bot => {
            copy_job(fx, &me, partner, m.message_id, origin, reply_to);
            kind.field()
        }
        Content::Media { kind, file } => {
            if file.file_size.is_some_and(|s| s > MAX_DOWNLOAD_BYTES) {
                fx.say(&me, t.raw(lang, "too_big"), None);
                return Ok(());
            }
            // File ids are per bot: our bot downloads, the partner's bot uploads.
            let blob = format!("{}:{}", me.bot, if file.file_unique_id.is_empty() { &file.file_id } else { &file.file_unique_id });
            if fx.hot().get_blob(fx.pool(), &blob).await?.is_none() {
                match fx.bot.api.download(&file.file_id, MAX_DOWNLOAD_BYTES).await {
                    Ok(bytes) => fx.hot().put_blob(fx.pool(), &blob, bytes, BLOB_TTL).await?,
                    Err(e) if e.is_transient() => return Err(e.into()),
                    Err(e) => {
                        tracing::info!(bot = %me.bot, error = %e, "media could not be downloaded for relay");
                        let key = if e.to_string().contains("too big") { "too_big" } else { "relay_failed" };
                        fx.say(&me, t.raw(lang, key), None);
                        return Ok(());
                    }
                }
            }
            let mut params = json!({"chat_id": partner.user});
            if kind.has_caption() {
                if let Some(c) = &m.caption {
                    params["caption"] = Value::String(c.clone());
                }
                if let Some(e) = &m.caption_entities {
                    params["caption_entities"] = e.clone();
                }
            }
            let mut job = plain_job(partner, Lane::Interactive, kind.method(), params);
            job.upload = Some(Upload {
                blob,
                field: kind.field().to_string(),
                file_name: kind.default_file_name(file),
                mime_type: file.mime_type.clone(),
            });
            job.origin = Some(origin);
            job.reply_to = reply_to;
            job.chat_member = Some(partner.to_string());
            fx.push(job);
            kind.field()
        }
    };
    if kind != "text"
        && let Some(mirror) = cfg.bot.moderation.media_mirror_chat_id
    {
        let params = json!({"chat_id": mirror, "from_chat_id": me.user, "message_id": m.message_id});
        let mut job = plain_job(&me, Lane::Bulk, "copyMessage", params);
        job.chat_id = mirror;
        fx.push(job);
    }
    fx.bot.metrics().relayed(&me.bot, kind);
    Ok(())
}

/// An edited text reaches the partner as an edit of the message they got (resolved through
/// the reply map at send time, so an edit of a message still in the outbox waits for it).
/// Caption and media edits are not relayed: the partner keeps the original.
async fn on_edited(fx: &mut Effects<'_>, m: Message) -> Result<(), HandleError> {
    let (Some(from), Some(text)) = (m.from.as_ref(), m.text.clone()) else { return Ok(()) };
    let me = fx.bot.member(from.id);
    let Some(partner) = fx.matcher().partner(fx.pool(), &me).await? else { return Ok(()) };
    let mut params = json!({"chat_id": partner.user, "text": text});
    if let Some(e) = &m.entities {
        params["entities"] = e.clone();
    }
    let mut job = plain_job(&partner, Lane::Interactive, "editMessageText", params);
    job.target = Some(crate::hot::reply_ref(&message_ref(&me, m.message_id)));
    fx.push(job);
    Ok(())
}

fn copy_job(
    fx: &mut Effects<'_>,
    me: &Member,
    partner: &Member,
    message_id: i64,
    origin: crate::hot::MessageRef,
    reply_to: Option<crate::hot::MessageRef>,
) {
    let params = json!({"chat_id": partner.user, "from_chat_id": me.user, "message_id": message_id});
    let mut job = plain_job(partner, Lane::Interactive, "copyMessage", params);
    job.origin = Some(origin);
    job.reply_to = reply_to;
    job.chat_member = Some(partner.to_string());
    fx.push(job);
}

// ---- timers ------------------------------------------------------------------------------

/// How long until the next refresh of a "searching…" message: often at first, then rarer, so
/// a crowd of waiting users can't eat the bot's send budget (edits count as sends).
fn search_refresh_after(n: i64) -> i64 {
    match n {
        0..=2 => 5_000,
        3..=5 => 10_000,
        6..=9 => 30_000,
        _ => 60_000,
    }
}

/// After this long the message says honestly that the wait may be long.
const LONG_WAIT_MS: i64 = 120_000;

fn elapsed_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    format!("{}:{:02}", s / 60, s % 60)
}

/// Fires one timer (claimed by this replica only).
pub async fn on_timer(fx: &mut Effects<'_>, timer: &Timer) -> Result<(), HandleError> {
    match timer.payload["k"].as_str() {
        Some("search") => refresh_search(fx, timer).await,
        Some("idle") => end_idle_chat(fx, timer).await,
        other => {
            tracing::warn!(bot = %fx.bot.name, kind = ?other, "unknown timer dropped");
            Ok(())
        }
    }
}

async fn refresh_search(fx: &mut Effects<'_>, timer: &Timer) -> Result<(), HandleError> {
    let Some(member) = timer.id.strip_prefix("search:").and_then(|m| m.parse::<Member>().ok()) else { return Ok(()) };
    if !fx.matcher().waiting(fx.pool(), &member).await? {
        return Ok(());
    }
    let t0 = timer.payload["t0"].as_i64().unwrap_or(fx.now_ms);
    let n = timer.payload["n"].as_i64().unwrap_or(1);
    let lang = audience(fx, &member).await?.lang;
    let t = texts();
    let waited = fx.now_ms - t0;
    let key = if waited >= LONG_WAIT_MS { "searching_long" } else { "searching" };
    let text = t.fmt(lang, key, &[("elapsed", &elapsed_text(waited))]);
    let params = json!({"chat_id": member.user, "text": text, "parse_mode": "HTML",
        "reply_markup": inline(vec![vec![(t.raw(lang, "btn_cancel"), "cancel".into())]])});
    let mut job = plain_job(&member, Lane::Bulk, "editMessageText", params);
    job.target = Some(saved_ref(&member, "search"));
    fx.push(job);
    let next =
        Timer { id: timer.id.clone(), due_ms: fx.now_ms + search_refresh_after(n), payload: json!({"k": "search", "t0": t0, "n": n + 1}) };
    fx.hot().schedule(fx.pool(), &fx.bot.name, &next).await?;
    Ok(())
}

async fn end_idle_chat(fx: &mut Effects<'_>, timer: &Timer) -> Result<(), HandleError> {
    let (Some(a), Some(b)) = (
        timer.payload["a"].as_str().and_then(|m| m.parse::<Member>().ok()),
        timer.payload["b"].as_str().and_then(|m| m.parse::<Member>().ok()),
    ) else {
        return Ok(());
    };
    if fx.matcher().partner(fx.pool(), &a).await?.as_ref() != Some(&b) {
        return Ok(());
    }
    let pool = fx.pool().to_string();
    let matcher = fx.bot.fleet.matcher.clone();
    let a2 = a.clone();
    let ended = fx.once("idle", || async move { Ok(matcher.end_chat(&pool, &a2).await?.map(|p| p.to_string())) }).await?;
    if ended.is_none() {
        return Ok(());
    }
    let session = finish_session(fx, &a, &b, None, EndReason::Idle).await?;
    notify_partner(fx, &a, session, "chat_idle").await?;
    notify_partner(fx, &b, session, "chat_idle").await?;
    Ok(())
}
