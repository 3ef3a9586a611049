//! Commands that show something: /start, /help, /stats and the answer to an unknown command.
//! (Which text or tap means which command is in `protocol.rs`.)

use super::onboarding;
use super::text_key::TextKey;
use crate::bot::{Effects, HandleError, chat_keyboard, menu_keyboard};
use crate::matching::Member;
use crate::store::{Stage, User};
use crate::texts::Lang;

/// /start: the step the user is at, or (once ready) where they are.
pub(super) async fn start(fx: &mut Effects<'_>, user: &User, lang: Lang) -> Result<(), HandleError> {
    if user.stage != Stage::Ready {
        return onboarding::prompt_stage(fx, user, lang).await;
    }
    let me = user.member();
    // In a chat, keep the chat keyboard: /start must not strand the user.
    if fx.matcher().partner(fx.pool(), &me).await?.is_some() {
        fx.say(&me, TextKey::AlreadyInChat.text(lang), Some(chat_keyboard(lang, fx.bot.cfg().bot.features.lock_chat)));
    } else {
        fx.say(&me, TextKey::ProfileDone.text(lang), Some(menu_keyboard(lang)));
    }
    Ok(())
}

pub(super) fn help(fx: &mut Effects<'_>, user: &User, lang: Lang) {
    let markup = if user.stage == Stage::Ready { Some(menu_keyboard(lang)) } else { None };
    fx.say(&user.member(), TextKey::Help.text(lang), markup);
}

pub(super) async fn stats(fx: &mut Effects<'_>, me: &Member, lang: Lang) -> Result<(), HandleError> {
    let s = fx.store().stats(me).await?;
    let text = TextKey::Stats.fmt(
        lang,
        &[
            ("chats", &s.chats.to_string()),
            ("minutes", &(s.seconds_chatted / 60).to_string()),
            ("up", &s.thumbs_up.to_string()),
            ("down", &s.thumbs_down.to_string()),
        ],
    );
    fx.say(me, text, None);
    Ok(())
}

/// `/news on|off`: the member's choice about admin broadcasts (docs/ADMIN.md, "Broadcast");
/// `/news` alone says what it is.
pub(super) async fn news(fx: &mut Effects<'_>, me: &Member, lang: Lang, on: Option<bool>) -> Result<(), HandleError> {
    let text = match on {
        Some(on) => {
            fx.store().set_broadcasts(&me.bot, me.user, on).await?;
            if on { TextKey::NewsOn.text(lang) } else { TextKey::NewsOff.text(lang) }
        }
        None => {
            let on = fx.store().broadcasts_on(&me.bot, me.user).await?;
            TextKey::NewsStatus.fmt(lang, &[("state", if on { "on" } else { "off" })])
        }
    };
    fx.say(me, text, None);
    Ok(())
}

pub(super) fn unknown(fx: &mut Effects<'_>, me: &Member, lang: Lang) {
    fx.say(me, TextKey::UnknownCommand.text(lang), None);
}
