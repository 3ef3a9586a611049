//! The binary's roles and their wiring: `serve` (one bot, as the operator deploys it),
//! `local` (every bot of a folder in one process on the embedded stores, with the built-in
//! fake Telegram and `--simulate` when built with the `simulator` feature), `migrate` (in
//! main.rs: the migrations alone); `app.rs` wires stores, bots, tasks and the HTTP server for
//! all of them. The admin role joins here.

pub mod admin;
pub mod app;
pub mod local;
pub mod serve;
#[cfg(feature = "simulator")]
pub mod simulate;
