//! Safety: what a report or a block does beyond ending the chat, the report's reason, the
//! automatic restriction after enough reports, and users blocking or unblocking the bot.
//! Report and block work at any stage (see `on_command`).

use super::protocol::{Callback, ReportReason};
use super::text_key::TextKey;
use super::{buttons, edit_markup_off, ending, min_age};
use crate::bot::{Effects, HandleError, menu_keyboard};
use crate::ingress::update::From;
use crate::matching::Member;
use crate::store::EndReason;
use crate::texts::Lang;

/// After a report ended the chat: block the pair, record the report, maybe restrict the
/// partner, and ask the reporter why.
pub(super) async fn after_report(
    fx: &mut Effects<'_>,
    me: &Member,
    lang: Lang,
    partner: &Member,
    session: Option<i64>,
) -> Result<(), HandleError> {
    fx.matcher().block(fx.pool(), me.user, partner.user).await?;
    let report = fx.store().record_report(me, partner, session, fx.now_ms).await?;
    restrict_if_reported_enough(fx, partner).await?;
    fx.say(me, TextKey::YouLeft.text(lang), Some(menu_keyboard(lang)));
    let age = min_age(fx.bot);
    let reasons = ReportReason::ALL
        .iter()
        .map(|&reason| vec![(reason.text_key().fmt(lang, &[("min_age", &age)]), Callback::ReportReason { report, reason })])
        .collect();
    fx.say(me, TextKey::Reported.text(lang), Some(buttons(reasons)));
    Ok(())
}

/// After a block ended the chat: the two are never matched again.
pub(super) async fn after_block(fx: &mut Effects<'_>, me: &Member, lang: Lang, partner: &Member) -> Result<(), HandleError> {
    fx.matcher().block(fx.pool(), me.user, partner.user).await?;
    fx.store().record_block(me, partner, fx.now_ms).await?;
    fx.say(me, TextKey::Blocked.text(lang), Some(menu_keyboard(lang)));
    Ok(())
}

/// `rr:<report>:<reason>`: the answer on the button.
pub(super) async fn report_reason(
    fx: &mut Effects<'_>,
    me: &Member,
    lang: Lang,
    report: i64,
    reason: ReportReason,
    message_id: Option<i64>,
) -> Result<Option<String>, HandleError> {
    if !fx.store().set_report_reason(report, me, reason.as_str()).await? {
        return Ok(Some(TextKey::ButtonStale.text(lang)));
    }
    if let Some(id) = message_id {
        edit_markup_off(fx, me, id);
    }
    Ok(Some(TextKey::ReportThanks.text(lang)))
}

async fn restrict_if_reported_enough(fx: &mut Effects<'_>, member: &Member) -> Result<(), HandleError> {
    let cfg = fx.bot.cfg();
    let m = &cfg.bot.moderation;
    let since = fx.now_ms - i64::from(m.window_hours) * 3_600_000;
    let reporters = fx.store().reporters_since(member.user, since).await?;
    if reporters >= u64::from(m.reports_to_restrict) {
        let until = fx.now_ms + i64::from(m.restrict_hours) * 3_600_000;
        // The person, on every bot: out of every queue of this pool now; other pools refuse
        // them at their next search (the restriction is read with the profile).
        fx.store().restrict(member.user, Some(until), fx.now_ms).await?;
        fx.matcher().cancel_person(fx.pool(), member.user).await?;
        tracing::info!(bot = %member.bot, "a user was restricted automatically after reports");
        // The bot's admins hear of it (once per person an hour), to review it.
        let (user, hours, count) = (member.user.to_string(), m.restrict_hours.to_string(), reporters.to_string());
        let key = format!("restricted:{user}");
        let args = [("user", user.as_str()), ("hours", hours.as_str()), ("reporters", count.as_str())];
        // The admins of the reported member's bot, and of this bot if it is another.
        let mut bots = vec![member.bot.clone()];
        if member.bot != fx.bot.name {
            bots.push(fx.bot.name.clone());
        }
        for bot in bots {
            super::admin_commands::alert_admins(fx, &bot, "restricted", &key, TextKey::AdminAlertRestricted, &args).await?;
        }
    }
    Ok(())
}

/// The user blocked (`kicked`) or unblocked (`member`) the bot.
pub(super) async fn on_member_status(fx: &mut Effects<'_>, user: From, status: &str) -> Result<(), HandleError> {
    match status {
        "kicked" => {
            // The user blocked the bot: nothing can reach them, so their chat ends for the partner.
            fx.store().set_reachable(&fx.bot.name, user.id, false).await?;
            let me = fx.bot.member(user.id);
            ending::leave_everything(fx, &me, EndReason::Gone).await
        }
        "member" => {
            fx.store().set_reachable(&fx.bot.name, user.id, true).await?;
            Ok(())
        }
        _ => Ok(()),
    }
}
