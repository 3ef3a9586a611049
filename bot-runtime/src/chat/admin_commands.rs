//! In-bot admin commands (docs/ADMIN.md, "In-bot admin commands"): `/stats` (the bot's
//! numbers under the member's own), `/ban <user id> [hours]`, `/unban <user id>`, and
//! `/broadcast <text>` with a confirmation button. For the bot's admins only — the Telegram ids
//! in its BotInstance's `spec.admins`, and the fleet admins (the chart's `admin.fleetAdmins`,
//! which the admin role writes into the registry at start; each process re-reads them once a
//! minute) — anyone else gets "unknown command", and the menu shows them to admins only
//! (`telegram_menu.rs`).
//!
//! They are the dashboard's actions on this one bot, by the same rules: a ban is the per-bot
//! ban (`admin_bans`, kept across /delete_me) and ends the member's running chat here, at once;
//! a broadcast is the same broadcast (checked Telegram HTML, `/news off` respected, the bot's
//! pace), written as a draft until the admin presses Send, then queued by the admin role's
//! producer. Every action is written to the admin audit log (`detail.via = "bot"`).
//!
//! **Alerts to the admins' chats** ([`alert_admins`]): a person restricted automatically after
//! reports, a search that reached its maximum wait (the pool is thin), reconciliation finding
//! payments that do not match Telegram's ledger. Sent by the bot to each of its admins who is a
//! reachable member (Telegram lets a bot write only to people who opened it), at most once an
//! hour per kind and bot (a restriction: once per person), so an incident is one message, not
//! a flood. Counted in `botfleet_admin_alerts_total{bot, kind}`.

use serde_json::json;

use super::protocol::Callback;
use super::text_key::TextKey;
use super::{admin, buttons, edit_text, format_time};
use crate::bot::{Effects, HandleError};
use crate::matching::{Member, Tier};
use crate::store::User;
use crate::store::admin::{Audience, BAN_FOREVER_MS, NewAudit};
use crate::texts::{Lang, escape};

/// How often one kind of alert reaches a bot's admins at most.
const ALERT_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Tells the admins of `bot` (this bot, or another of its pool: a reported member's) who are
/// reachable members of it about `kind`, through that bot, at most once per [`ALERT_EVERY`]
/// for the same `key` (the kind, or the kind and a person).
pub(crate) async fn alert_admins(
    fx: &mut Effects<'_>,
    bot: &str,
    kind: &str,
    key: &str,
    text: TextKey,
    args: &[(&str, &str)],
) -> Result<(), HandleError> {
    // This bot's admins from its configuration; another bot's as it registered them; and the
    // fleet's admins, once each.
    let mut admins = if bot == fx.bot.name { fx.bot.cfg().bot.admins.telegram_ids.clone() } else { fx.store().bot_admins(bot).await? };
    for id in fx.bot.fleet.fleet_admins().await.iter() {
        if !admins.contains(id) {
            admins.push(*id);
        }
    }
    if admins.is_empty() {
        return Ok(());
    }
    let once = format!("adminalert:{bot}:{key}");
    if !fx.hot().allow(fx.pool(), &once, 1, ALERT_EVERY, 1, fx.now_ms).await? {
        return Ok(());
    }
    let mut told = 0;
    for admin in admins {
        let Some(u) = fx.store().user(bot, admin).await? else { continue };
        if !u.reachable {
            continue;
        }
        let lang = super::lang_of(fx.bot, &u);
        fx.say(&u.member(), text.fmt(lang, args), None);
        told += 1;
    }
    if told > 0 {
        fx.bot.metrics().admin_alert(bot, kind);
    }
    Ok(())
}

/// The bot's own admins (its BotInstance's `spec.admins`) and the fleet's (the chart's
/// `admin.fleetAdmins`, from the registry the admin role writes).
pub(super) async fn is_admin(fx: &Effects<'_>, user_id: i64) -> bool {
    fx.bot.cfg().bot.admins.telegram_ids.contains(&user_id) || fx.bot.fleet.fleet_admins().await.contains(&user_id)
}

/// An audit row of an in-bot action (the admin role's log).
async fn audit(fx: &Effects<'_>, admin: i64, action: &str, target: Option<i64>, detail: serde_json::Value) -> Result<(), HandleError> {
    let mut detail = detail;
    detail["via"] = json!("bot");
    let entry = NewAudit {
        at_ms: fx.now_ms,
        admin_id: admin,
        action: action.into(),
        bot: Some(fx.bot.name.clone()),
        target_user: target,
        detail: detail.to_string(),
        client: Some("telegram".into()),
        api_key: None,
    };
    fx.store().audit_in_bot(&entry).await?;
    Ok(())
}

/// An admin's `/stats`: the bot's numbers now (the member's own stats were sent just before).
pub(super) async fn stats(fx: &mut Effects<'_>, user: &User, lang: Lang) -> Result<(), HandleError> {
    if !is_admin(fx, user.user_id).await {
        return Ok(());
    }
    let (n, stars) = fx.store().bot_stats(&fx.bot.name, fx.now_ms).await?;
    let pool = fx.bot.pool.clone();
    let vip_waiting = fx.matcher().queue_len(&pool, Tier::Vip).await?;
    let free_waiting = fx.matcher().queue_len(&pool, Tier::Free).await?;
    let text = TextKey::AdminStats.fmt(
        lang,
        &[
            ("bot", &escape(&fx.bot.name)),
            ("members", &n.members.to_string()),
            ("new_today", &n.new_today.to_string()),
            ("new_week", &n.new_this_week.to_string()),
            ("vips", &n.active_vips.to_string()),
            ("chats", &n.chats_now.to_string()),
            ("vip_waiting", &vip_waiting.to_string()),
            ("free_waiting", &free_waiting.to_string()),
            ("stars", &stars.to_string()),
        ],
    );
    fx.say(&user.member(), text.trim_start().to_string(), None);
    Ok(())
}

/// `/ban <user id> [hours]`: the per-bot ban, the member's chat ended now.
pub(super) async fn ban(fx: &mut Effects<'_>, user: &User, lang: Lang, args: &str) -> Result<(), HandleError> {
    let me = user.member();
    if !is_admin(fx, user.user_id).await {
        super::menu::unknown(fx, &me, lang);
        return Ok(());
    }
    let mut words = args.split_whitespace();
    let target = words.next().and_then(|w| w.parse::<i64>().ok()).filter(|id| *id > 0);
    let hours = match words.next() {
        None => Some(None),
        Some(h) => h.parse::<i64>().ok().filter(|h| (1..=87_600).contains(h)).map(Some),
    };
    let (Some(target), Some(hours), None) = (target, hours, words.next()) else {
        fx.say(&me, TextKey::AdminBanUsage.text(lang), None);
        return Ok(());
    };
    if target == user.user_id {
        fx.say(&me, TextKey::AdminNotYourself.text(lang), None);
        return Ok(());
    }
    let who = target.to_string();
    if fx.store().user(&fx.bot.name, target).await?.is_none() {
        fx.say(&me, TextKey::AdminNotMember.fmt(lang, &[("user", &who)]), None);
        return Ok(());
    }
    let until = hours.map_or(BAN_FOREVER_MS, |h| fx.now_ms + h * 3_600_000);
    fx.store().ban_member(&fx.bot.name, target, until, user.user_id, fx.now_ms).await?;
    // The chat core's own steps, here and now (the dashboard schedules a timer for them).
    admin::on_ban(fx, &Member::new(fx.bot.name.clone(), target), until).await?;
    audit(fx, user.user_id, "ban", Some(target), json!({"until_ms": until, "hours": hours})).await?;
    fx.bot.metrics().admin_action("ban", "in_bot");
    let text = if until >= BAN_FOREVER_MS {
        TextKey::AdminBannedForever.fmt(lang, &[("user", &who)])
    } else {
        TextKey::AdminBanned.fmt(lang, &[("user", &who), ("until", &format_time(until))])
    };
    fx.say(&me, text, None);
    Ok(())
}

/// `/unban <user id>`: lifts the ban on this bot.
pub(super) async fn unban(fx: &mut Effects<'_>, user: &User, lang: Lang, args: &str) -> Result<(), HandleError> {
    let me = user.member();
    if !is_admin(fx, user.user_id).await {
        super::menu::unknown(fx, &me, lang);
        return Ok(());
    }
    let Some(target) = args.trim().parse::<i64>().ok().filter(|id| *id > 0) else {
        fx.say(&me, TextKey::AdminUnbanUsage.text(lang), None);
        return Ok(());
    };
    let who = target.to_string();
    let lifted = fx.store().unban_member(&fx.bot.name, target).await?;
    audit(fx, user.user_id, "unban", Some(target), json!({"lifted": lifted})).await?;
    fx.bot.metrics().admin_action("unban", "in_bot");
    let key = if lifted { TextKey::AdminUnbanned } else { TextKey::AdminNotBanned };
    fx.say(&me, key.fmt(lang, &[("user", &who)]), None);
    Ok(())
}

/// `/broadcast <text>`: checked, counted, shown to the admin as members will see it, with
/// Send and Cancel; nothing is queued until Send.
pub(super) async fn broadcast(fx: &mut Effects<'_>, user: &User, lang: Lang, text: &str) -> Result<(), HandleError> {
    let me = user.member();
    if !is_admin(fx, user.user_id).await {
        super::menu::unknown(fx, &me, lang);
        return Ok(());
    }
    if text.trim().is_empty() {
        fx.say(&me, TextKey::AdminBroadcastUsage.text(lang), None);
        return Ok(());
    }
    if let Err(reason) = crate::admin::telegram_html::check(text) {
        fx.say(&me, TextKey::AdminBroadcastRefused.fmt(lang, &[("reason", &escape(&reason))]), None);
        return Ok(());
    }
    let count = fx.store().broadcast_audience(&fx.bot.name, &Audience::all(), fx.now_ms).await?;
    let id = fx.store().draft_broadcast(&fx.bot.name, text, user.user_id, count, fx.now_ms).await?;
    let n = count.to_string();
    // The admin's own text goes in as it is: it was checked as Telegram HTML above.
    let confirm = TextKey::AdminBroadcastConfirm.fmt(lang, &[("count", &n)]).replace("{text}", text);
    let markup = buttons(vec![vec![
        (TextKey::BtnBroadcastSend.fmt(lang, &[("count", &n)]), Callback::Broadcast { id, go: true }),
        (TextKey::BtnBroadcastCancel.text(lang), Callback::Broadcast { id, go: false }),
    ]]);
    fx.say(&me, confirm, Some(markup));
    Ok(())
}

/// Send or Cancel on a draft: once, by the admin who wrote it.
pub(super) async fn confirm_broadcast(
    fx: &mut Effects<'_>,
    user: &User,
    lang: Lang,
    id: i64,
    go: bool,
    message_id: Option<i64>,
) -> Result<Option<String>, HandleError> {
    let me = user.member();
    if !is_admin(fx, user.user_id).await {
        return Ok(Some(TextKey::ButtonStale.text(lang)));
    }
    if !fx.store().settle_draft(id, &fx.bot.name, user.user_id, go, fx.now_ms).await? {
        return Ok(Some(TextKey::AdminBroadcastGone.text(lang)));
    }
    let action = if go { "broadcast" } else { "broadcast_cancel" };
    audit(fx, user.user_id, action, None, json!({"id": id})).await?;
    fx.bot.metrics().admin_action("broadcast", if go { "started" } else { "cancelled" });
    let key = if go { TextKey::AdminBroadcastStarted } else { TextKey::AdminBroadcastCancelled };
    let text = key.fmt(lang, &[("id", &id.to_string())]);
    match message_id {
        Some(m) => edit_text(fx, &me, m, text, None),
        None => fx.say(&me, text, None),
    }
    Ok(None)
}
