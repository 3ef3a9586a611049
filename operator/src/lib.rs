//! The BotFleet operator: turns BotInstance, VipPlan, DiscountCampaign and RateLimitPolicy
//! resources into running bots.

pub mod bot;
pub mod telegram;
