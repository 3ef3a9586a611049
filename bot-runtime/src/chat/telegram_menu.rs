//! What Telegram shows around the bot, set at every start of a replica (idempotent): the
//! command menu (`setMyCommands`) and the descriptions (`setMyDescription`,
//! `setMyShortDescription`), one per language we have texts for, plus the bot's default
//! locale for users whose language we don't speak (no `language_code`).
//!
//! Admin commands go to each admin only (`BotCommandScopeChat`), on top of the user commands:
//! Telegram shows the most specific scope, so an admin sees both lists and nobody else sees
//! the admin ones: [`ADMIN_COMMANDS`] (`/refund`, `/ban`, `/unban`, `/broadcast`). The admins
//! are the bot's own (its BotInstance's `admins`) and the fleet admins (the chart's
//! `admin.fleetAdmins`, which the admin role registers). A bot with no admins sets no chat scope.
//!
//! [`keep`] follows changes while the bot runs: the fleet admins are read again as often as the
//! process re-reads them for the commands (`Fleet::fleet_admins`, every minute), so an admin
//! added to the chart's values (or to a BotInstance) gets the admin menu within a minute, and
//! one removed has their chat scope deleted (`deleteMyCommands`) — the admin role holds no
//! tokens, so the bots do this themselves.
//!
//! A failure here never stops the bot: the menu is a convenience (every command also works
//! typed), so it is logged and tried again a minute later.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::watch;

use serde_json::{Value, json};

use super::protocol::Command;
use super::text_key::TextKey;
use crate::bot::Bot;
use crate::telegram::TgError;
use crate::texts::Lang;

/// The user commands of the menu, in menu order, with their description.
pub const USER_COMMANDS: [(Command, TextKey); 16] = [
    (Command::Search, TextKey::CmdSearch),
    (Command::Vip, TextKey::CmdVip),
    (Command::Next, TextKey::CmdNext),
    (Command::Stop, TextKey::CmdStop),
    (Command::Report, TextKey::CmdReport),
    (Command::Block, TextKey::CmdBlock),
    (Command::Lock, TextKey::CmdLock),
    (Command::Invite, TextKey::CmdInvite),
    (Command::Profile, TextKey::CmdProfile),
    (Command::Stats, TextKey::CmdStats),
    (Command::Help, TextKey::CmdHelp),
    (Command::DeleteMe, TextKey::CmdDeleteMe),
    (Command::History, TextKey::CmdHistory),
    (Command::PaySupport { question: None }, TextKey::CmdPaySupport),
    (Command::SaleTerms, TextKey::CmdTerms),
    (Command::News { on: None }, TextKey::CmdNews),
];

/// Commands only admins see (`/stats` is in everyone's menu: an admin's shows the bot's numbers too).
pub const ADMIN_COMMANDS: [(&str, TextKey); 4] =
    [("refund", TextKey::CmdRefund), ("ban", TextKey::CmdBan), ("unban", TextKey::CmdUnban), ("broadcast", TextKey::CmdBroadcast)];

/// The `commands` array of `setMyCommands` in one language.
pub fn command_list(lang: Lang, admin: bool) -> Value {
    let mut list: Vec<Value> = USER_COMMANDS
        .iter()
        .map(|(command, key)| json!({"command": command.render().trim_start_matches('/'), "description": key.text(lang)}))
        .collect();
    if admin {
        list.extend(ADMIN_COMMANDS.iter().map(|(command, key)| json!({"command": command, "description": key.text(lang)})));
    }
    Value::Array(list)
}

/// The languages the menu is set in: `None` is for users of any other language (the bot's
/// default locale's texts).
fn languages(bot: &Bot) -> [(Option<&'static str>, Lang); 3] {
    let default = Lang::for_user(None, &bot.cfg().bot.locale.default);
    [(None, default), (Some("en"), Lang::En), (Some("ru"), Lang::Ru)]
}

fn with_lang(mut v: Value, code: Option<&str>) -> Value {
    if let Some(code) = code {
        v["language_code"] = json!(code);
    }
    v
}

/// The calls giving `admin` the admin menu in every language.
fn admin_scope_calls(bot: &Bot, admin: i64) -> Vec<(&'static str, Value)> {
    let scope = json!({"type": "chat", "chat_id": admin});
    languages(bot)
        .into_iter()
        .map(|(code, lang)| ("setMyCommands", with_lang(json!({"commands": command_list(lang, true), "scope": scope}), code)))
        .collect()
}

/// The calls taking the admin menu away from someone no longer an admin.
fn admin_scope_removals(bot: &Bot, former: i64) -> Vec<(&'static str, Value)> {
    let scope = json!({"type": "chat", "chat_id": former});
    languages(bot).into_iter().map(|(code, _)| ("deleteMyCommands", with_lang(json!({"scope": scope}), code))).collect()
}

/// Every call that sets the menu and descriptions for these admins, as (method, parameters).
pub fn calls(bot: &Bot, admins: &BTreeSet<i64>) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    for (code, lang) in languages(bot) {
        out.push(("setMyCommands", with_lang(json!({"commands": command_list(lang, false)}), code)));
        out.push(("setMyDescription", with_lang(json!({"description": TextKey::BotDescription.text(lang)}), code)));
        out.push(("setMyShortDescription", with_lang(json!({"short_description": TextKey::BotShortDescription.text(lang)}), code)));
    }
    for admin in admins {
        out.extend(admin_scope_calls(bot, *admin));
    }
    out
}

/// The bot's admins now: its own and the fleet's.
pub async fn admins_of(bot: &Bot) -> BTreeSet<i64> {
    let mut admins: BTreeSet<i64> = bot.cfg().bot.admins.telegram_ids.iter().copied().collect();
    admins.extend(bot.fleet.fleet_admins().await.iter().copied());
    admins
}

/// The calls that move the admin scopes from `before` to `now`.
pub fn admin_changes(bot: &Bot, before: &BTreeSet<i64>, now: &BTreeSet<i64>) -> Vec<(&'static str, Value)> {
    let mut out: Vec<_> = now.difference(before).flat_map(|a| admin_scope_calls(bot, *a)).collect();
    out.extend(before.difference(now).flat_map(|a| admin_scope_removals(bot, *a)));
    out
}

/// Makes the calls; the first failure is returned (and the rest skipped: a rate limit or an
/// outage would fail them too).
async fn apply(bot: &Bot, calls: Vec<(&'static str, Value)>) -> Result<(), TgError> {
    for (method, params) in calls {
        bot.api.call(method, &params).await?;
    }
    Ok(())
}

/// Sets the whole menu and descriptions once (for these admins).
pub async fn set_up(bot: &Bot, admins: &BTreeSet<i64>) -> Result<(), TgError> {
    apply(bot, calls(bot, admins)).await
}

/// Sets the menu at start, then follows the admins (module docs) until shutdown. What failed is
/// tried again at the next look; only what changed is sent then.
pub async fn keep(bot: Arc<Bot>, mut shutdown: watch::Receiver<bool>) {
    let mut applied: Option<BTreeSet<i64>> = None;
    loop {
        let admins = admins_of(&bot).await;
        let calls = match &applied {
            None => calls(&bot, &admins),
            Some(before) => admin_changes(&bot, before, &admins),
        };
        // A stop never waits for Telegram here.
        let result = tokio::select! {
            r = apply(&bot, calls) => r,
            _ = shutdown.changed() => return,
        };
        match result {
            Ok(()) => applied = Some(admins),
            Err(e) => {
                tracing::warn!(bot = %bot.id, error = %e, "could not set the command menu and descriptions; trying again in a minute")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(bot.fleet.fleet_admins_for()) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_menu_fits_telegrams_limits_in_every_language_and_each_entry_is_a_command_we_handle() {
        let spec = botfleet_tests::api_spec::ApiSpec::load().expect("Bot API spec");
        for lang in [Lang::En, Lang::Ru] {
            let list = command_list(lang, true);
            let entries = list.as_array().expect("array");
            assert!(entries.len() <= 100);
            for entry in entries {
                let name = entry["command"].as_str().expect("name");
                assert!((1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
                let description = entry["description"].as_str().expect("description");
                assert!((1..=256).contains(&description.chars().count()), "{description}");
                assert!(!matches!(Command::parse(name, ""), Command::Unknown(_)), "/{name} is handled");
            }
            assert_eq!(spec.check_request("setMyCommands", &json!({"commands": list, "language_code": lang.code()})), Ok(()));
            let description = TextKey::BotDescription.text(lang);
            let short = TextKey::BotShortDescription.text(lang);
            assert!(description.chars().count() <= 512 && short.chars().count() <= 120);
            assert_eq!(spec.check_request("setMyDescription", &json!({"description": description, "language_code": lang.code()})), Ok(()));
            assert_eq!(spec.check_request("setMyShortDescription", &json!({"short_description": short})), Ok(()));
        }
    }
}
