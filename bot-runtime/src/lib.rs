//! The BotFleet bot runtime, grouped by what the code is for:
//!
//! - `ingress/`: webhook and polling, the claim → handle → commit pipeline, update parsing;
//! - `chat/`: what the bot does, one module per feature (onboarding, menu, profile, search,
//!   relay, ending, safety, retiring), its typed protocols and texts;
//! - `delivery/`: the outbox consumer and the timer loop;
//! - `roles/`: `serve`, `local`, `migrate` and their wiring;
//! - storage: `store/` (SQL, one trait per concern), `hot/` (Redis or memory, one trait per
//!   concern), `matching/` (atomic pairing), `keys.rs` (every Redis key);
//! - `bot.rs` (a bot and the fleet it shares), `health.rs` (supervised workers, /healthz), `identity.rs`, `config.rs`, `telegram.rs`,
//!   `texts.rs`, `metrics.rs`.
//!
//! docs/ARCHITECTURE.md walks the hot path of a chat message.

pub mod admin;
pub mod bot;
pub mod chat;
pub mod config;
pub mod delivery;
pub mod health;
pub mod hot;
pub mod identity;
pub mod ingress;
pub mod keys;
pub mod matching;
pub mod metrics;
pub mod payload;
pub mod roles;
pub mod store;
pub mod telegram;
pub mod texts;
