//! BotFleet's shared vocabulary: the custom resource types (coming with the operator), the
//! resolved bot configuration the runtime reads, pricing math, and bot-token handling used by
//! both the operator and the runtime.

pub mod pricing;
pub mod token;
pub mod webhook;
