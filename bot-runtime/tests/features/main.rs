//! The chat handlers, feature by feature, without HTTP: each test plays users through the seam
//! (`seam.rs`), which runs `chat::handle` on embedded stores and returns the outbox jobs as
//! data. Milliseconds per test; no Postgres, no Redis, no polling. The end-to-end suite
//! (`tests/chat.rs`) still proves the whole path (HTTP, outbox, both backends).

#[path = "../support/mod.rs"]
mod support;

mod seam;

mod ending;
mod lock;
mod menu;
mod onboarding;
mod profile;
mod reconcile;
mod referral;
mod relay;
mod safety;
mod search;
mod shop;
mod subscription;
mod vip;
