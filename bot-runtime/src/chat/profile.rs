//! The profile: showing it, editing it (back to the gender step), deleting it.

use super::protocol::Callback;
use super::text_key::TextKey;
use super::{buttons, edit_markup_off, ending, format_time, onboarding};
use crate::bot::{Effects, HandleError, remove_keyboard};
use crate::matching::Member;
use crate::store::{EndReason, Stage, User};
use crate::texts::Lang;

pub(super) fn show(fx: &mut Effects<'_>, user: &User, lang: Lang) {
    let gender = user.gender.map(|g| TextKey::gender(g).text(lang)).unwrap_or_else(|| "—".into());
    let age = user.age.map(|a| a.to_string()).unwrap_or_else(|| "—".into());
    let vip = match user.vip_until_ms.filter(|t| *t > fx.now_ms) {
        Some(until) => TextKey::VipUntil.fmt(lang, &[("until", &format_time(until))]),
        None => TextKey::VipNone.text(lang),
    };
    let text = TextKey::Profile.fmt(lang, &[("gender", &gender), ("age", &age), ("language", lang.code()), ("vip", &vip)]);
    let actions = buttons(vec![
        vec![(TextKey::BtnEditProfile.text(lang), Callback::EditProfile)],
        vec![(TextKey::BtnDelete.text(lang), Callback::DeleteProfile)],
    ]);
    fx.say(&user.member(), text, Some(actions));
}

/// `prof:edit` (once ready): back to the gender step, unless in a chat.
pub(super) async fn edit(fx: &mut Effects<'_>, user: User, lang: Lang) -> Result<Option<String>, HandleError> {
    let me = user.member();
    if fx.matcher().partner(fx.pool(), &me).await?.is_some() {
        return Ok(Some(TextKey::AlreadyInChat.text(lang)));
    }
    fx.matcher().cancel(fx.pool(), &me).await?;
    onboarding::advance(fx, user, lang, Stage::Gender).await?;
    Ok(None)
}

/// /delete_me and `prof:del`: asks to confirm.
pub(super) fn confirm_delete(fx: &mut Effects<'_>, me: &Member, lang: Lang) {
    let choice = buttons(vec![vec![
        (TextKey::BtnDeleteYes.text(lang), Callback::ConfirmDelete),
        (TextKey::BtnDeleteNo.text(lang), Callback::KeepProfile),
    ]]);
    fx.say(me, TextKey::DeleteConfirm.text(lang), Some(choice));
}

/// `del:yes`: leaves any search or chat and erases the profile.
pub(super) async fn delete(fx: &mut Effects<'_>, me: &Member, lang: Lang, message_id: Option<i64>) -> Result<Option<String>, HandleError> {
    ending::leave_everything(fx, me, EndReason::Gone).await?;
    fx.store().delete_user(&fx.bot.name, me.user, fx.now_ms).await?;
    if let Some(id) = message_id {
        edit_markup_off(fx, me, id);
    }
    fx.say(me, TextKey::Deleted.text(lang), Some(remove_keyboard()));
    Ok(None)
}

/// `del:no`.
pub(super) fn keep(fx: &mut Effects<'_>, me: &Member, lang: Lang, message_id: Option<i64>) -> Option<String> {
    if let Some(id) = message_id {
        edit_markup_off(fx, me, id);
    }
    Some(TextKey::DeleteKept.text(lang))
}
