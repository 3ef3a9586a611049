//! The BotFleet operator. For now: its Telegram client (getMe, setWebhook, deleteWebhook,
//! getWebhookInfo). Controllers, the resolver wiring and leader election follow.

pub mod telegram;
