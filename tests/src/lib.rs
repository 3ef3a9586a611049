//! BotFleet's test bed: the fake Telegram Bot API, the Bot API specification as data, and
//! fixtures that give each test its own Postgres database and Redis namespace.

pub mod api_spec;
pub mod bot_api;
pub mod fake_telegram;
pub mod fixtures;
