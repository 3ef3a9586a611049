//! Pricing (docs/ADMIN.md, "Pricing"): each bot's effective plans and campaigns, read from the
//! resolved configuration the bot registered (what its shop sells right now), each with the
//! `kubectl` command that changes it. Prices change through the resources only — the
//! VipPlan and DiscountCampaign objects the operator resolves into every bot's configuration —
//! so this view has no form that edits a price: a price set here would disagree with the
//! cluster and be overwritten at the next resolve.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use botfleet_crds::resolved::{Buyer, ResolvedBotConfig};
use botfleet_crds::vip_plan::Billing;
use serde::Serialize;

use super::auth::{Admin, Identity};
use super::{AdminState, ApiError};

pub fn routes() -> Router<AdminState> {
    Router::new().route("/api/v1/pricing", get(pricing))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct PlanPrice {
    /// The VipPlan's name.
    pub id: String,
    pub title: String,
    /// `one_time` or `monthly` (a Telegram subscription; campaigns never discount one).
    pub billing: String,
    pub vip_days: u32,
    pub lock_credits: u32,
    /// The list price (`spec.priceStars`).
    pub price_stars: u32,
    /// What a new member without VIP pays now: the best active campaign for them, never stacked.
    pub price_now_stars: u32,
    /// The campaign behind `price_now_stars`, if any.
    pub campaign: Option<String>,
    /// Changes the list price (edit the number).
    pub kubectl: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct CampaignPrice {
    /// The DiscountCampaign's name.
    pub id: String,
    pub percent_off: u8,
    /// `scheduled` or `active` (ended campaigns are not in a bot's configuration).
    pub state: String,
    pub starts_at: String,
    pub ends_at: String,
    /// `All`, `NewUsers` or `NonVip`.
    pub audience: String,
    pub max_redemptions: Option<u32>,
    /// The plans it discounts, with the price it gives.
    pub plans: Vec<CampaignPlan>,
    /// Changes the discount (edit the number); the end time is `spec.endsAt` the same way.
    pub kubectl: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct CampaignPlan {
    pub plan: String,
    pub price_stars: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct BotPricing {
    pub bot: String,
    pub namespace: String,
    /// The configuration's hash (`status.configHash` of the BotInstance).
    pub config_hash: String,
    pub plans: Vec<PlanPrice>,
    pub campaigns: Vec<CampaignPrice>,
    /// Lists the bot's plans and campaigns in the cluster.
    pub kubectl_get: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct PricingAnswer {
    pub bots: Vec<BotPricing>,
}

/// One bot's prices at `now` from its resolved configuration.
pub fn bot_pricing(bot: &str, config_hash: &str, cfg: &ResolvedBotConfig, now: jiff::Timestamp) -> BotPricing {
    // The registry's id is `<namespace>/<name>` (a local run's configuration has no namespace).
    let ns = &bot.split_once('/').map_or_else(|| cfg.bot.namespace.clone(), |(ns, _)| ns.to_string());
    // A new member without VIP: every audience includes them (the lowest offer anyone gets).
    let newcomer = Buyer { first_seen: now, has_active_vip: false };
    let plans = cfg
        .plans
        .iter()
        .map(|p| {
            let q = cfg.quote(&p.id, now, newcomer, |_| false);
            PlanPrice {
                id: p.id.clone(),
                title: p.title.clone(),
                billing: if p.billing == Billing::OneTime { "one_time" } else { "monthly" }.into(),
                vip_days: p.grants.vip_days,
                lock_credits: p.grants.lock_credits,
                price_stars: p.price_stars,
                price_now_stars: q.as_ref().map_or(p.price_stars, |q| q.price_stars),
                campaign: q.and_then(|q| q.campaign_id),
                kubectl: format!(
                    "kubectl -n {ns} patch vipplan {} --type merge -p '{{\"spec\":{{\"priceStars\":{}}}}}'",
                    p.id, p.price_stars
                ),
            }
        })
        .collect();
    let campaigns = cfg
        .campaigns
        .iter()
        .map(|c| CampaignPrice {
            id: c.id.clone(),
            percent_off: c.percent_off,
            state: if c.is_active(now) { "active" } else { "scheduled" }.into(),
            starts_at: c.starts_at.to_string(),
            ends_at: c.ends_at.to_string(),
            audience: format!("{:?}", c.audience),
            max_redemptions: c.max_redemptions,
            plans: cfg
                .plans
                .iter()
                .filter(|p| c.plan_ids.contains(&p.id) && p.billing == Billing::OneTime)
                .filter_map(|p| {
                    botfleet_crds::pricing::discounted_price(p.price_stars, c.percent_off)
                        .ok()
                        .map(|price| CampaignPlan { plan: p.id.clone(), price_stars: price })
                })
                .collect(),
            kubectl: format!(
                "kubectl -n {ns} patch discountcampaign {} --type merge -p '{{\"spec\":{{\"percentOff\":{}}}}}'",
                c.id, c.percent_off
            ),
        })
        .collect();
    BotPricing {
        bot: bot.to_string(),
        namespace: ns.clone(),
        config_hash: config_hash.to_string(),
        plans,
        campaigns,
        kubectl_get: format!("kubectl -n {ns} get vipplans,discountcampaigns"),
    }
}

/// The prices of the bots `id` may see.
pub(super) async fn pricing_of(s: &AdminState, id: &Identity) -> Result<PricingAnswer, ApiError> {
    let now = jiff::Timestamp::now();
    let mut bots = Vec::new();
    for (bot, hash, config) in s.store.bot_configs().await? {
        if !id.may_act_on(&bot) {
            continue;
        }
        match serde_json::from_str::<ResolvedBotConfig>(&config) {
            Ok(cfg) => bots.push(bot_pricing(&bot, &hash, &cfg, now)),
            // A configuration this release cannot read (a newer bot's): said, not hidden.
            Err(e) => return Err(ApiError::Internal(format!("the registered configuration of {bot} could not be read: {e}"))),
        }
    }
    Ok(PricingAnswer { bots })
}

async fn pricing(State(s): State<AdminState>, admin: Admin) -> Result<axum::Json<PricingAnswer>, ApiError> {
    Ok(axum::Json(pricing_of(&s, &admin.identity).await?))
}
