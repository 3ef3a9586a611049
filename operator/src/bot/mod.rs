//! The BotInstance controller: `build` (pure: spec → objects), `status` (pure: what a
//! reconcile found → status and conditions) and `reconcile` (thin: the pipeline that reads,
//! applies, registers the webhook, writes status and events).

pub mod build;
pub mod fleet;
pub mod reconcile;
pub mod status;
