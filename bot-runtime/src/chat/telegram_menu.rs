//! What Telegram shows around the bot, set at every start of a replica (idempotent): the
//! command menu (`setMyCommands`) and the descriptions (`setMyDescription`,
//! `setMyShortDescription`), one per language we have texts for, plus the bot's default
//! locale for users whose language we don't speak (no `language_code`).
//!
//! Admin commands go to each admin only (`BotCommandScopeChat`), on top of the user commands:
//! Telegram shows the most specific scope, so an admin sees both lists and nobody else sees
//! the admin ones: [`ADMIN_COMMANDS`] (`/refund`, `/ban`, `/unban`, `/broadcast`). A bot with
//! no admins sets no chat scope.
//!
//! A failure here never stops the bot: the menu is a convenience (every command also works
//! typed), so it is logged and retried at the next start.

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

/// Every call that sets the menu and descriptions, as (method, parameters).
pub fn calls(bot: &Bot) -> Vec<(&'static str, Value)> {
    let cfg = bot.cfg();
    let default = Lang::for_user(None, &cfg.bot.locale.default);
    let mut out = Vec::new();
    // `None`: the texts for users of any other language.
    for (code, lang) in [(None, default), (Some("en"), Lang::En), (Some("ru"), Lang::Ru)] {
        let with_lang = |mut v: Value| {
            if let Some(code) = code {
                v["language_code"] = json!(code);
            }
            v
        };
        out.push(("setMyCommands", with_lang(json!({"commands": command_list(lang, false)}))));
        out.push(("setMyDescription", with_lang(json!({"description": TextKey::BotDescription.text(lang)}))));
        out.push(("setMyShortDescription", with_lang(json!({"short_description": TextKey::BotShortDescription.text(lang)}))));
        if !ADMIN_COMMANDS.is_empty() {
            for admin in &cfg.bot.admins.telegram_ids {
                let scope = json!({"type": "chat", "chat_id": admin});
                out.push(("setMyCommands", with_lang(json!({"commands": command_list(lang, true), "scope": scope}))));
            }
        }
    }
    out
}

/// Sets the menu and descriptions; the first failure is returned (and the rest skipped: a
/// rate limit or an outage would fail them too).
pub async fn set_up(bot: &Bot) -> Result<(), TgError> {
    for (method, params) in calls(bot) {
        bot.api.call(method, &params).await?;
    }
    Ok(())
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
