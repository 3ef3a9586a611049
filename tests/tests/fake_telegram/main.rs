//! Behaviour tests of the fake Telegram Bot API: each proves one thing our runtime and
//! operator rely on Telegram doing. Results are checked against the Bot API spec by `RawBot`.

mod envelope;
mod files_and_media;
mod limits_and_faults;
mod messages;
mod payments;
mod sim_http;
mod spec;
mod teloxide_client;
mod updates;
mod webhooks;

use botfleet_tests::api_spec::ApiSpec;
use botfleet_tests::bot_api::RawBot;
use botfleet_tests::fake_telegram::{BotInfo, FakeTelegram, Sim, SimUser};
use serde_json::Value;

pub struct Setup {
    pub fake: FakeTelegram,
    pub sim: Sim,
    pub bot: BotInfo,
    pub api: RawBot,
    pub user: SimUser,
}

/// A fake with one bot and one user who has started it (so the bot may write to them).
pub async fn setup() -> Setup {
    let fake = FakeTelegram::start().await.expect("fake starts");
    let sim = fake.sim();
    let bot = sim.register_bot("alpha_bot").expect("bot");
    let api = RawBot::new(&fake.api_url(), &bot.token);
    let user = sim.user("Ann", Some("en")).expect("user");
    sim.send_text(&bot.username, user.id, "/start", None).expect("start");
    Setup { fake, sim, bot, api, user }
}

/// Pending updates of the bot, each checked against the spec.
pub async fn drain_updates(api: &RawBot) -> Vec<Value> {
    let updates = api.call("getUpdates", serde_json::json!({"timeout": 0})).await.expect("getUpdates");
    let list = updates.as_array().cloned().unwrap_or_default();
    for u in &list {
        assert_spec_update(u);
    }
    if let Some(last) = list.last().and_then(|u| u["update_id"].as_i64()) {
        api.call("getUpdates", serde_json::json!({"offset": last + 1, "timeout": 0})).await.expect("confirm");
    }
    list
}

pub fn assert_spec_update(update: &Value) {
    if let Err(problems) = ApiSpec::get().check_update(update) {
        panic!("update breaks the Bot API spec: {problems:#?}\n{update:#}");
    }
}
