//! What the admin role asks a bot to do (docs/ADMIN.md). The admin role holds no bot token, so
//! anything that must speak to Telegram as the bot, or end a chat with the chat core's own
//! steps, is scheduled as a timer on the member's bot ([`TimerKind::Ban`],
//! [`TimerKind::Refund`]) and runs here, fired once across replicas with its effects committed
//! with the timer's removal.

use super::payments;
use super::text_key::TextKey;
use super::{ending, format_time, lang_of};
use crate::bot::{Effects, HandleError, menu_keyboard};
use crate::matching::Member;
use crate::store::EndReason;
use crate::store::admin::BAN_FOREVER_MS;

/// An admin banned `member` (fleet-wide or on this bot): end their search or chat, telling
/// the partner, then tell them. An unban before the timer fired leaves everything as it is.
pub(super) async fn on_ban(fx: &mut Effects<'_>, member: &Member, until: i64) -> Result<(), HandleError> {
    let user = fx.store().user(&member.bot, member.user).await?;
    if user.as_ref().is_some_and(|u| !u.is_restricted(fx.now_ms)) {
        return Ok(());
    }
    ending::leave_everything(fx, member, EndReason::Banned).await?;
    if let Some(u) = user {
        let lang = lang_of(fx.bot, &u);
        let text = if until >= BAN_FOREVER_MS {
            TextKey::Banned.text(lang)
        } else {
            TextKey::BannedUntil.fmt(lang, &[("until", &format_time(until))])
        };
        fx.say(member, text, Some(menu_keyboard(lang)));
    }
    tracing::info!(bot = %fx.bot.name, "a member banned by an admin left the pool");
    Ok(())
}

/// An admin asked for a refund of `charge` in the admin role.
pub(super) async fn on_refund(fx: &mut Effects<'_>, charge: &str, admin: i64) -> Result<(), HandleError> {
    payments::refund_for_admin(fx, charge, admin).await
}
