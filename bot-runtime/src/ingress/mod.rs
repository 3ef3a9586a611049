//! How updates come in and become durable, the same for both modes Telegram offers:
//!
//! - `admission.rs`: admission control by egress (refuse new work while the outbox holds more
//!   than a few seconds of delivery; money and safety are never refused);
//! - `listener.rs`: HTTP/1.1 with a connection cap, a header deadline and a graceful end;
//! - `server.rs`: HTTP — `POST /telegram/{bot}` (webhook), `/metrics`, `/healthz`, `/readyz`;
//! - `secret.rs`: the webhook's constant-time secret-header check (step 1 of the hot path);
//! - `polling.rs`: `getUpdates`, one poller per bot across replicas (a lease), batches per chat;
//! - `inbound.rs`: the durable inbound queue's gate (per bot) and drainer, used past the
//!   webhook's overload grace;
//! - `pipeline.rs`: one update from claim (dedupe) through the handlers to the atomic commit;
//! - `update.rs`: Telegram's Update parsed by teloxide's types into the views the handlers read.

pub mod admission;
pub mod inbound;
pub mod listener;
pub mod pipeline;
pub mod polling;
pub mod secret;
pub mod server;
pub mod update;
