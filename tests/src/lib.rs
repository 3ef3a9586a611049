//! BotFleet's test bed: the fake Telegram Bot API, the Bot API specification as data, and
//! fixtures that give each test its own Postgres database and Redis namespace.

pub mod api_spec;
pub mod bot_api;
/// The fake Telegram Bot API lives in its own crate (`tests/fake-telegram`), so the runtime's
/// `local` role can use it without the rest of the test bed; re-exported here for the tests.
pub use botfleet_fake_telegram as fake_telegram;
pub mod fixtures;
