//! Searching for a partner: the search itself (remembered per update), announcing a match,
//! the "searching…" message and its refreshes, cancelling, and the chat's idle countdown.

use std::time::Duration;

use serde_json::json;

use super::protocol::{Callback, OnceStep, SearchMemo, TimerKind, idle_timer, search_timer_id};
use super::text_key::TextKey;
use super::{audience, buttons, edit_text, format_time, onboarding, plain_job, warn_once};
use crate::bot::{Effects, HandleError, chat_keyboard, menu_keyboard};
use crate::hot::{HotError, Lane, saved_ref};
use crate::matching::{Member, Rules, Seeker, Tier, Want};
use crate::store::{Funnel, Stage, User};
use crate::texts::{Lang, escape};

/// How long until the next refresh of a "searching…" message: often at first, then rarer, so
/// a crowd of waiting users can't eat the bot's send budget (edits count as sends).
fn refresh_after(n: i64) -> i64 {
    match n {
        0..=2 => 5_000,
        3..=5 => 10_000,
        6..=9 => 30_000,
        _ => 60_000,
    }
}

/// After this long the message says honestly that the wait may be long.
const LONG_WAIT_MS: i64 = 120_000;

/// How often one process moves a chat's idle timer while messages flow: the timeout fires at
/// most this much early, and a busy chat costs one timer write per 10 s instead of one per message.
const IDLE_TOUCH_EVERY_MS: i64 = 10_000;

fn elapsed_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    format!("{}:{:02}", s / 60, s % 60)
}

pub(super) async fn search(fx: &mut Effects<'_>, user: &User, lang: Lang) -> Result<(), HandleError> {
    let me = user.member();
    if user.is_restricted(fx.now_ms) {
        // A ban without an end says so (not "until 9999-12-31"); a timed one gives its end.
        let until_ms = user.restricted_until_ms.unwrap_or_default();
        let text = if until_ms >= crate::store::admin::BAN_FOREVER_MS {
            TextKey::Banned.text(lang)
        } else {
            TextKey::Restricted.fmt(lang, &[("until", &format_time(until_ms))])
        };
        fx.say(&me, text, None);
        return Ok(());
    }
    let cfg = fx.bot.cfg();
    if cfg.bot.retiring {
        fx.say(&me, TextKey::BotRetiring.text(lang), None);
        return Ok(());
    }
    let per = cfg.limits.per_user.searches_per_minute.max(1);
    if !fx.hot().allow(fx.pool(), &format!("search:{me}"), per, Duration::from_secs(60), per, fx.now_ms).await? {
        warn_once(fx, &me, lang, TextKey::SearchSlowDown).await?;
        return Ok(());
    }
    let Some(gender) = user.gender else {
        return onboarding::advance(fx, user.clone(), lang, Stage::Gender).await;
    };
    // A second tap while waiting: one searching message is enough (the place is kept).
    // (Unless this is a retry of the update that queued them: then the memo says so.)
    if fx.matcher().waiting(fx.pool(), &me).await? && !fx.remembered(OnceStep::Search.as_str()).await? {
        fx.say(&me, TextKey::AlreadySearching.text(lang), None);
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
    let memo = fx
        .once(OnceStep::Search.as_str(), || async move {
            Ok(Some(SearchMemo::from(matcher.search(&pool, &seeker, now, rules).await?).render()))
        })
        .await?;
    let outcome = match memo.as_deref() {
        None => SearchMemo::Queued,
        Some(text) => SearchMemo::parse(text).ok_or_else(|| HotError::Corrupt(format!("search memo {text:?}")))?,
    };
    match outcome {
        SearchMemo::Matched(partner) => {
            fx.bot.metrics().matched(&fx.bot.pool_label, if vip { Tier::Vip.as_str() } else { Tier::Free.as_str() });
            announce_match(fx, user, lang, &partner).await
        }
        SearchMemo::InChat(_) => {
            fx.say(&me, TextKey::AlreadyInChat.text(lang), Some(chat_keyboard(lang, fx.bot.cfg().bot.features.lock_chat)));
            Ok(())
        }
        SearchMemo::Elsewhere(holder) => {
            // A person is in at most one chat per pool: finish it on the other bot first.
            fx.say(&me, TextKey::InChatOtherBot.fmt(lang, &[("bot", &escape(&holder.bot))]), Some(menu_keyboard(lang)));
            Ok(())
        }
        SearchMemo::Queued => {
            let text = TextKey::Searching.fmt(lang, &[("elapsed", "0:00")]);
            fx.say(&me, text, Some(buttons(vec![vec![(TextKey::BtnCancel.text(lang), Callback::CancelSearch)]])));
            if let Some(job) = fx.last() {
                job.save_as = Some(saved_ref(&me, "search"));
            }
            let timer = TimerKind::Search { t0: fx.now_ms, n: 1 }.at(search_timer_id(&me), fx.now_ms + 5_000);
            fx.hot().schedule(fx.pool(), &fx.bot.name, &timer).await?;
            Ok(())
        }
    }
}

async fn announce_match(fx: &mut Effects<'_>, user: &User, lang: Lang, partner: &Member) -> Result<(), HandleError> {
    let me = user.member();
    let other = audience(fx, partner).await?;
    // The chat starts when the first attempt matched: a retry of this update (its commit
    // failed) records the same session, which start_session keys by its start.
    let now = fx.now_ms;
    let started = fx.once(OnceStep::MatchedAt.as_str(), || async move { Ok(Some(now.to_string())) }).await?;
    let started_ms = started.and_then(|t| t.parse::<i64>().ok()).unwrap_or(now);
    fx.store().start_session(&me, partner, started_ms).await?;
    fx.store().record_event(&me.bot, me.user, Funnel::FirstChat, "", fx.now_ms).await?;
    fx.store().record_event(&partner.bot, partner.user, Funnel::FirstChat, "", fx.now_ms).await?;
    // Neither side's search message needs refreshing any more.
    fx.hot().unschedule(fx.pool(), &me.bot, &search_timer_id(&me)).await?;
    fx.hot().unschedule(fx.pool(), &partner.bot, &search_timer_id(partner)).await?;
    let describe = |lang: Lang, u: Option<&User>| {
        let gender = u.and_then(|u| u.gender).map(|g| TextKey::gender(g).text(lang)).unwrap_or_else(|| "?".into());
        let age = u.and_then(|u| u.age).map(|a| a.to_string()).unwrap_or_else(|| "?".into());
        TextKey::Matched.fmt(lang, &[("gender", &gender), ("age", &age)])
    };
    fx.say(&me, describe(lang, other.user.as_ref()), Some(chat_keyboard(lang, fx.bot.cfg().bot.features.lock_chat)));
    fx.say(partner, describe(other.lang, Some(user)), Some(chat_keyboard(other.lang, fx.bot.cfg().bot.features.lock_chat)));
    touch_idle(fx, &me, partner, true).await
}

/// The search timer `id` of `member` fired: refresh the "searching…" message if they still
/// wait, and schedule the next refresh.
pub(super) async fn refresh(fx: &mut Effects<'_>, id: &str, member: &Member, t0: i64, n: i64) -> Result<(), HandleError> {
    if !fx.matcher().waiting(fx.pool(), member).await? {
        return Ok(());
    }
    let lang = audience(fx, member).await?.lang;
    let waited = fx.now_ms - t0;
    let max_ms = i64::from(fx.bot.cfg().bot.matching.max_search_minutes.max(1)) * 60_000;
    if waited >= max_ms {
        return time_out(fx, member, lang).await;
    }
    let key = if waited >= LONG_WAIT_MS { TextKey::SearchingLong } else { TextKey::Searching };
    let text = key.fmt(lang, &[("elapsed", &elapsed_text(waited))]);
    let params = json!({"chat_id": member.user, "text": text, "parse_mode": "HTML",
        "reply_markup": buttons(vec![vec![(TextKey::BtnCancel.text(lang), Callback::CancelSearch)]])});
    let mut job = plain_job(member, Lane::Bulk, "editMessageText", params);
    job.target = Some(saved_ref(member, "search"));
    fx.push(job);
    // The last refresh falls on the maximum wait, so the search ends on time.
    let due = (fx.now_ms + refresh_after(n)).min(t0 + max_ms);
    let next = TimerKind::Search { t0, n: n + 1 }.at(id.to_string(), due);
    fx.hot().schedule(fx.pool(), &fx.bot.name, &next).await?;
    Ok(())
}

/// The search reached its maximum wait: out of the queue, told so, with the menu to try again.
async fn time_out(fx: &mut Effects<'_>, member: &Member, lang: Lang) -> Result<(), HandleError> {
    if !fx.matcher().cancel(fx.pool(), member).await? {
        return Ok(());
    }
    let minutes = fx.bot.cfg().bot.matching.max_search_minutes.to_string();
    let text = TextKey::SearchTimedOut.fmt(lang, &[("minutes", &minutes)]);
    let params = json!({"chat_id": member.user, "text": text, "parse_mode": "HTML"});
    let mut job = plain_job(member, Lane::Bulk, "editMessageText", params);
    job.target = Some(saved_ref(member, "search"));
    fx.push(job);
    fx.say(member, text, Some(menu_keyboard(lang)));
    fx.bot.metrics().search_timed_out(&fx.bot.pool_label);
    let (minutes, pool) = (fx.bot.cfg().bot.matching.max_search_minutes.to_string(), fx.bot.pool_label.clone());
    let args = [("minutes", minutes.as_str()), ("pool", pool.as_str())];
    let bot = fx.bot.name.clone();
    super::admin_commands::alert_admins(fx, &bot, "queue_wait", "queue_wait", TextKey::AdminAlertQueueWait, &args).await?;
    Ok(())
}

/// `cancel`: leaves the queue; the answer if there was nothing to cancel.
pub(super) async fn cancel(fx: &mut Effects<'_>, me: &Member, lang: Lang, message_id: Option<i64>) -> Result<Option<String>, HandleError> {
    if !fx.matcher().cancel(fx.pool(), me).await? {
        return Ok(Some(TextKey::NotSearching.text(lang)));
    }
    fx.hot().unschedule(fx.pool(), &fx.bot.name, &search_timer_id(me)).await?;
    if let Some(id) = message_id {
        edit_text(fx, me, id, TextKey::SearchCancelled.text(lang), None);
    }
    fx.say(me, TextKey::SearchCancelled.text(lang), Some(menu_keyboard(lang)));
    Ok(None)
}

/// (Re)starts the chat's idle countdown (`force`: now, e.g. when the chat starts).
pub(super) async fn touch_idle(fx: &Effects<'_>, a: &Member, b: &Member, force: bool) -> Result<(), HandleError> {
    let (owner, id) = idle_timer(a, b);
    if !force && !fx.bot.fleet.idle_touch_due(&id, fx.now_ms, IDLE_TOUCH_EVERY_MS) {
        return Ok(());
    }
    let minutes = i64::from(fx.bot.cfg().bot.matching.idle_timeout_minutes.max(1));
    let timer = TimerKind::Idle { a: a.clone(), b: b.clone() }.at(id, fx.now_ms + minutes * 60_000);
    fx.hot().schedule(fx.pool(), &owner.bot, &timer).await?;
    Ok(())
}
