//! Ending chats: Stop, Next, Report and Block from the user, the idle timeout, a member who is
//! gone (blocked the bot, deleted the profile); closing the session, telling the partner, and
//! the rating that follows.

use super::protocol::{Callback, OnceStep, idle_timer, search_timer_id};
use super::text_key::TextKey;
use super::{audience, buttons, edit_markup_off, lock, safety, search};
use crate::bot::{Effects, HandleError, menu_keyboard};
use crate::matching::Member;
use crate::store::{EndReason, Stage, User};
use crate::texts::Lang;

/// Ends `member`'s chat in the matching store once per update (`step` names it for the memo):
/// the partner it had, or `None` if there was no chat (or a retry finds it ended by this update).
async fn end_pair_once(fx: &Effects<'_>, step: OnceStep, member: &Member) -> Result<Option<Member>, HandleError> {
    let pool = fx.pool().to_string();
    let matcher = fx.bot.fleet.matcher.clone();
    let m = member.clone();
    // The memo is the partner's text form (`bot:user`), as release N wrote it.
    let partner = fx.once(step.as_str(), || async move { Ok(matcher.end_chat(&pool, &m).await?.map(|p| p.to_string())) }).await?;
    Ok(partner.map(|p| p.parse()).transpose()?)
}

/// Stop, Next, Report, Block from the user.
pub(super) async fn end_chat(fx: &mut Effects<'_>, user: &User, lang: Lang, reason: EndReason) -> Result<(), HandleError> {
    let me = user.member();
    // A partner's lock keeps the chat against Next and Stop (never against Report or Block).
    if matches!(reason, EndReason::Next | EndReason::Stop) && lock::refuses_leaving(fx, &me, lang).await? {
        return Ok(());
    }
    let Some(partner) = end_pair_once(fx, OnceStep::End, &me).await? else {
        // Not in a chat: Stop also ends a search; Next starts one.
        match reason {
            EndReason::Next if user.stage == Stage::Ready => return search::search(fx, user, lang).await,
            EndReason::Stop | EndReason::Next if fx.matcher().cancel(fx.pool(), &me).await? => {
                fx.hot().unschedule(fx.pool(), &fx.bot.name, &search_timer_id(&me)).await?;
                fx.say(&me, TextKey::SearchCancelled.text(lang), Some(menu_keyboard(lang)));
                return Ok(());
            }
            _ => {}
        }
        let markup = if user.stage == Stage::Ready { Some(menu_keyboard(lang)) } else { None };
        fx.say(&me, TextKey::NotInChat.text(lang), markup);
        return Ok(());
    };
    let session = finish_session(fx, &me, &partner, Some(&me), reason).await?;
    match reason {
        EndReason::Report => safety::after_report(fx, &me, lang, &partner, session).await?,
        EndReason::Block => safety::after_block(fx, &me, lang, &partner).await?,
        _ => {
            fx.say(&me, TextKey::YouLeft.text(lang), Some(menu_keyboard(lang)));
            if let Some(id) = session {
                rate_prompt(fx, &me, lang, id);
            }
        }
    }
    notify_partner(fx, &partner, session, TextKey::PartnerLeft).await?;
    if reason == EndReason::Next {
        return search::search(fx, user, lang).await;
    }
    Ok(())
}

/// Closes the session row and the idle timer; returns the session id.
async fn finish_session(
    fx: &mut Effects<'_>,
    a: &Member,
    b: &Member,
    by: Option<&Member>,
    reason: EndReason,
) -> Result<Option<i64>, HandleError> {
    let (owner, id) = idle_timer(a, b);
    fx.hot().unschedule(fx.pool(), &owner.bot, &id).await?;
    let closed = fx.store().end_session(a, b, by, reason, fx.now_ms).await?;
    if let Some(s) = &closed {
        lock::settle(fx, s.id, by, reason).await?;
    }
    Ok(closed.map(|s| s.id))
}

fn rate_prompt(fx: &mut Effects<'_>, to: &Member, lang: Lang, session: i64) {
    let votes = buttons(vec![vec![
        (TextKey::BtnUp.text(lang), Callback::Rate { session, up: true }),
        (TextKey::BtnDown.text(lang), Callback::Rate { session, up: false }),
    ]]);
    fx.say(to, TextKey::RatePrompt.text(lang), Some(votes));
}

/// `rate:<session>:u|d`: the answer on the button.
pub(super) async fn rate(
    fx: &mut Effects<'_>,
    me: &Member,
    lang: Lang,
    session: i64,
    up: bool,
    message_id: Option<i64>,
) -> Result<Option<String>, HandleError> {
    if !fx.store().rate(session, me, up, fx.now_ms).await? {
        return Ok(Some(TextKey::ButtonStale.text(lang)));
    }
    if let Some(id) = message_id {
        edit_markup_off(fx, me, id);
    }
    Ok(Some(TextKey::Rated.text(lang)))
}

/// Tells the other side its chat ended (in its own bot and language), with a rating prompt.
pub async fn notify_partner(fx: &mut Effects<'_>, partner: &Member, session: Option<i64>, key: TextKey) -> Result<(), HandleError> {
    let other = audience(fx, partner).await?;
    let text = match key {
        TextKey::ChatIdle => key.fmt(other.lang, &[("minutes", &fx.bot.cfg().bot.matching.idle_timeout_minutes.to_string())]),
        _ => key.text(other.lang),
    };
    fx.say(partner, text, Some(menu_keyboard(other.lang)));
    if let Some(id) = session {
        rate_prompt(fx, partner, other.lang, id);
    }
    Ok(())
}

/// The member is gone (blocked the bot, deleted the profile): leave the queue and end their
/// chat, telling the partner.
pub async fn leave_everything(fx: &mut Effects<'_>, me: &Member, reason: EndReason) -> Result<(), HandleError> {
    if fx.matcher().cancel(fx.pool(), me).await? {
        fx.hot().unschedule(fx.pool(), &me.bot, &search_timer_id(me)).await?;
    }
    if let Some(partner) = end_pair_once(fx, OnceStep::Gone, me).await? {
        let session = finish_session(fx, me, &partner, Some(me), reason).await?;
        notify_partner(fx, &partner, session, TextKey::PartnerGone).await?;
    }
    Ok(())
}

/// The idle timer of the chat of `a` and `b` fired: end it if it is still that chat.
pub(super) async fn end_idle_chat(fx: &mut Effects<'_>, a: &Member, b: &Member) -> Result<(), HandleError> {
    if fx.matcher().partner(fx.pool(), a).await?.as_ref() != Some(b) {
        return Ok(());
    }
    if end_pair_once(fx, OnceStep::Idle, a).await?.is_none() {
        return Ok(());
    }
    let session = finish_session(fx, a, b, None, EndReason::Idle).await?;
    notify_partner(fx, a, session, TextKey::ChatIdle).await?;
    notify_partner(fx, b, session, TextKey::ChatIdle).await?;
    Ok(())
}
