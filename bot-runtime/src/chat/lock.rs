//! Lock chat: in a chat, Lock (the keyboard button or `/lock`) → a duration and its credit
//! cost from the bot's configuration → the credits are debited once and the chat is locked:
//! the partner's Next and Stop are refused with the time left. Report and Block always work
//! and end the chat at once. When a locked chat ends early the unused share of the credits
//! may go back to the locker (`store::locks::returns_unused`). The rules are docs/MONEY.md,
//! "Lock chat"; the transactions are `store/locks.rs`.

use super::protocol::Callback;
use super::text_key::TextKey;
use super::{audience, buttons, edit_text, format_time};
use crate::bot::{Effects, HandleError, chat_keyboard};
use crate::matching::Member;
use crate::store::locks::{LockOutcome, LockRequest};
use crate::store::{EndReason, Session, User};
use crate::texts::Lang;

/// Minutes left until `until_ms`, rounded up (a lock with 10 s left says 1 min).
fn minutes_left(until_ms: i64, now_ms: i64) -> i64 {
    ((until_ms - now_ms).max(0) + 59_999) / 60_000
}

/// The member's open chat: the partner and the session row.
async fn open_chat(fx: &Effects<'_>, me: &Member) -> Result<Option<(Member, Session)>, HandleError> {
    let Some(partner) = fx.matcher().partner(fx.pool(), me).await? else { return Ok(None) };
    Ok(fx.store().open_session(me, &partner).await?.map(|s| (partner, s)))
}

/// `/lock` or the 🔒 button: the durations with their cost, and the member's credits.
pub(super) async fn show(fx: &mut Effects<'_>, user: &User, lang: Lang) -> Result<(), HandleError> {
    let me = user.member();
    let cfg = fx.bot.cfg();
    if !cfg.bot.features.lock_chat {
        fx.say(&me, TextKey::LockUnavailable.text(lang), None);
        return Ok(());
    }
    if open_chat(fx, &me).await?.is_none() {
        fx.say(&me, TextKey::NotInChat.text(lang), Some(crate::bot::menu_keyboard(lang)));
        return Ok(());
    }
    let credits = fx.store().credits(&fx.bot.name, me.user).await?;
    let mut text = TextKey::LockMenu.fmt(lang, &[("credits", &credits.to_string())]);
    let cheapest = cfg.bot.lock_chat.options.iter().map(|o| i64::from(o.credits)).min().unwrap_or(0);
    if credits < cheapest {
        text.push('\n');
        text.push_str(&TextKey::LockNeedCredits.text(lang));
    }
    let row = cfg
        .bot
        .lock_chat
        .options
        .iter()
        .map(|o| {
            let label = TextKey::LockOption.fmt(lang, &[("minutes", &o.minutes.to_string()), ("credits", &o.credits.to_string())]);
            (label, Callback::Lock { minutes: o.minutes })
        })
        .collect();
    fx.say(&me, text, Some(buttons(vec![row])));
    Ok(())
}

/// `lock:<minutes>`: debit and lock. Returns the answer shown on the button.
pub(super) async fn lock(
    fx: &mut Effects<'_>,
    user: &User,
    lang: Lang,
    minutes: u32,
    query_id: &str,
    message_id: Option<i64>,
) -> Result<Option<String>, HandleError> {
    let me = user.member();
    let cfg = fx.bot.cfg();
    if !cfg.bot.features.lock_chat {
        return Ok(Some(TextKey::LockUnavailable.text(lang)));
    }
    // The price is today's configuration's: a button drawn under an older one still shows
    // its duration, and a duration no longer offered is stale.
    let Some(option) = cfg.bot.lock_chat.options.iter().find(|o| o.minutes == minutes).copied() else {
        return Ok(Some(TextKey::ButtonStale.text(lang)));
    };
    let Some((partner, session)) = open_chat(fx, &me).await? else {
        return Ok(Some(TextKey::NotInChat.text(lang)));
    };
    let request = LockRequest {
        session_id: session.id,
        locker: me.clone(),
        minutes,
        credits: i64::from(option.credits),
        request: query_id.to_string(),
        now_ms: fx.now_ms,
    };
    match fx.store().lock_chat(&request).await? {
        LockOutcome::Locked { until_ms, balance, first } => {
            if first {
                fx.bot.metrics().lock(&fx.bot.name, "locked");
            }
            // A retried update confirms again: the first attempt's messages were never
            // committed (they are committed with the update's done-mark).
            let text = TextKey::LockedYou.fmt(lang, &[("until", &format_time(until_ms)), ("credits", &balance.to_string())]);
            match message_id {
                Some(id) => edit_text(fx, &me, id, text, None),
                None => fx.say(&me, text, None),
            }
            let other = audience(fx, &partner).await?;
            let left = minutes_left(until_ms, fx.now_ms).to_string();
            fx.say(&partner, TextKey::LockedPartner.fmt(other.lang, &[("minutes", &left)]), None);
            Ok(None)
        }
        LockOutcome::Insufficient { balance } => {
            fx.bot.metrics().lock(&fx.bot.name, "insufficient");
            let text = TextKey::LockInsufficient.fmt(lang, &[("cost", &option.credits.to_string()), ("credits", &balance.to_string())]);
            fx.say(&me, text.clone(), None);
            Ok(Some(text))
        }
        LockOutcome::HeldByPartner { until_ms } => Ok(Some(TextKey::LockHeldByPartner.fmt(lang, &[("until", &format_time(until_ms))]))),
        LockOutcome::NotInChat => Ok(Some(TextKey::NotInChat.text(lang))),
    }
}

/// Next or Stop from `me`: true (and the member is told how long) when the partner's lock
/// holds the chat. Report and Block never come here.
pub(super) async fn refuses_leaving(fx: &mut Effects<'_>, me: &Member, lang: Lang) -> Result<bool, HandleError> {
    let Some((_, session)) = open_chat(fx, me).await? else { return Ok(false) };
    let Some(lock) = fx.store().chat_lock(session.id).await? else { return Ok(false) };
    if lock.locker == *me || !lock.holds(fx.now_ms) {
        return Ok(false);
    }
    fx.bot.metrics().lock(&fx.bot.name, "kept");
    let left = minutes_left(lock.until_ms, fx.now_ms).to_string();
    let keyboard = chat_keyboard(lang, fx.bot.cfg().bot.features.lock_chat);
    fx.say(me, TextKey::LockRefusesLeave.fmt(lang, &[("minutes", &left)]), Some(keyboard));
    Ok(true)
}

/// A chat ended: settle its lock, if it had one (once), returning the unused share to the
/// locker when the rules say so, and telling them.
pub(super) async fn settle(fx: &mut Effects<'_>, session_id: i64, by: Option<&Member>, reason: EndReason) -> Result<(), HandleError> {
    // One statement for every ended chat (most have no lock): once, whichever replica gets here.
    let Some(settled) = fx.store().settle_lock(session_id, by, reason, fx.now_ms).await? else { return Ok(()) };
    if settled.returned > 0 {
        fx.bot.metrics().lock(&fx.bot.name, "returned");
        let other = audience(fx, &settled.lock.locker).await?;
        fx.say(&settled.lock.locker, TextKey::LockReturned.fmt(other.lang, &[("credits", &settled.returned.to_string())]), None);
    }
    Ok(())
}
