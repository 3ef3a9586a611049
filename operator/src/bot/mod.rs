//! The BotInstance controller: `build` (pure: spec → objects) and `reconcile` (thin: apply,
//! register the webhook, write status and events).

pub mod build;
pub mod reconcile;
