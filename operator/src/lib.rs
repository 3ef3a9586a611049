//! The BotFleet operator: turns BotInstance, VipPlan, DiscountCampaign and RateLimitPolicy
//! resources into running bots.

pub mod bot;
pub mod context;
pub mod controller;
pub mod error;
pub mod metrics;
pub mod pricing;
pub mod status;
pub mod telegram;
