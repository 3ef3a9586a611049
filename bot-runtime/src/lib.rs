//! The BotFleet bot runtime. For now: the first step of webhook ingress (authenticating that
//! an update comes from Telegram). Handlers, matching, relay and the outbox follow (issue 3).

pub mod ingress;
