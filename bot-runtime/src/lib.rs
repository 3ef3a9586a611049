//! The BotFleet bot runtime: ingress (webhook / polling), update dedupe, handlers (onboarding,
//! matching, relay), the per-bot outbox with a limiter shared by all replicas, timers, and the
//! `serve` / `local` roles. See docs/ARCHITECTURE.md for the hot path of a chat message.

pub mod config;
pub mod hot;
pub mod ingress;
pub mod keys;
pub mod matching;
pub mod store;
