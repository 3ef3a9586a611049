//! The BotFleet bot runtime. Built so far: webhook ingress authentication and matching (the
//! atomic pairing of users across the bots of a pool, on Redis or in process). Handlers,
//! relay, the outbox and the roles serve/local follow (issue 3).

pub mod config;
pub mod ingress;
pub mod keys;
pub mod matching;
