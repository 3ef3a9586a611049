//! The BotFleet bot runtime: ingress (webhook / polling), update dedupe, handlers (onboarding,
//! matching, relay), the per-bot outbox with a limiter shared by all replicas, timers, and the
//! `serve` / `local` roles. docs/ARCHITECTURE.md walks the hot path of a chat message.

pub mod app;
pub mod bot;
pub mod chat;
pub mod config;
pub mod hot;
pub mod identity;
pub mod ingress;
pub mod keys;
pub mod local;
pub mod matching;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod polling;
pub mod serve;
pub mod server;
#[cfg(feature = "simulator")]
pub mod simulate;
pub mod store;
pub mod telegram;
pub mod texts;
pub mod timers;
pub mod update;
