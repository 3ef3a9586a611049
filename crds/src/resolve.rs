//! The one function that turns a bot's resources into its resolved configuration.
//!
//! Pure: no API calls, no clock (the caller passes `now`), so the operator, `bot-runtime
//! local` and the tests all get the same answer from the same YAML. Problems with a plan,
//! campaign or policy never fail the bot: the offending resource is left out and reported as a
//! [`Finding`], which the operator turns into a condition and an Event on that resource.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::bot_instance::{BotInstance, IngressMode};
use crate::discount_campaign::{CampaignState, DiscountCampaign};
use crate::pricing::MAX_PERCENT_OFF;
use crate::rate_limit_policy::{OutboundLimits, PerUserLimits, RateLimitPolicy};
use crate::resolved::{
    RESOLVED_CONFIG_VERSION, ResolvedBot, ResolvedBotConfig, ResolvedCampaign, ResolvedLimits, ResolvedPlan, SecretFiles, TOKEN_FILE,
    WEBHOOK_SECRET_FILE,
};
use crate::vip_plan::VipPlan;

/// Why a bot cannot be resolved at all (reported on the BotInstance).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("the BotInstance has no name or namespace")]
    Unnamed,
    #[error("webhook mode needs spec.ingress.publicUrl")]
    WebhookWithoutUrl,
    #[error("set either spec.replicas or spec.autoscaling, not both")]
    ReplicasAndAutoscaling,
    #[error("spec.autoscaling.maxReplicas ({max}) is below minReplicas ({min})")]
    AutoscalingBounds { min: i32, max: i32 },
}

/// Something wrong with one of the other resources; it is left out of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: &'static str,
    pub name: String,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub config: ResolvedBotConfig,
    pub hash: String,
    pub findings: Vec<Finding>,
    /// When the operator should look again (the next campaign start or end).
    pub requeue_at: Option<Timestamp>,
}

fn same_namespace(a: &Option<String>, b: &Option<String>) -> bool {
    a.as_deref().unwrap_or("") == b.as_deref().unwrap_or("")
}

/// Resolves one bot from every resource of its namespace (others are ignored).
pub fn resolve(
    bot: &BotInstance,
    plans: &[VipPlan],
    campaigns: &[DiscountCampaign],
    policies: &[RateLimitPolicy],
    now: Timestamp,
) -> Result<Resolution, ResolveError> {
    let name = bot.metadata.name.clone().filter(|n| !n.is_empty()).ok_or(ResolveError::Unnamed)?;
    let namespace = bot.metadata.namespace.clone().unwrap_or_default();
    let spec = &bot.spec;
    // The schema's CEL rules say the same; checked again for configs that never met an apiserver.
    if spec.ingress.mode == IngressMode::Webhook && spec.ingress.public_url.is_none() {
        return Err(ResolveError::WebhookWithoutUrl);
    }
    if spec.replicas.is_some() && spec.autoscaling.is_some() {
        return Err(ResolveError::ReplicasAndAutoscaling);
    }
    if let Some(a) = &spec.autoscaling
        && a.max_replicas < a.min_replicas
    {
        return Err(ResolveError::AutoscalingBounds { min: a.min_replicas, max: a.max_replicas });
    }
    let labels = bot.metadata.labels.clone().unwrap_or_default();
    let mut findings = Vec::new();

    let mut selected_plans: Vec<&VipPlan> = plans
        .iter()
        .filter(|p| same_namespace(&p.metadata.namespace, &bot.metadata.namespace))
        .filter(|p| p.spec.enabled && p.spec.bot_selector.matches(&labels))
        .filter(|p| match plan_problem(p) {
            None => true,
            Some(message) => {
                findings.push(Finding {
                    kind: "VipPlan",
                    name: p.metadata.name.clone().unwrap_or_default(),
                    reason: "InvalidSpec",
                    message,
                });
                false
            }
        })
        .collect();
    selected_plans.sort_by(|a, b| a.spec.sort_order.cmp(&b.spec.sort_order).then(a.metadata.name.cmp(&b.metadata.name)));
    let resolved_plans: Vec<ResolvedPlan> = selected_plans
        .iter()
        .map(|p| ResolvedPlan {
            id: p.metadata.name.clone().unwrap_or_default(),
            title: p.spec.title.clone(),
            description: p.spec.description.clone(),
            price_stars: p.spec.price_stars,
            grants: p.spec.grants.clone(),
            perks: p.spec.perks.clone(),
            sort_order: p.spec.sort_order,
            billing: p.spec.billing,
        })
        .collect();

    let mut resolved_campaigns = Vec::new();
    for c in campaigns.iter().filter(|c| same_namespace(&c.metadata.namespace, &bot.metadata.namespace)) {
        if !c.spec.bot_selector.matches(&labels) {
            continue;
        }
        let cname = c.metadata.name.clone().unwrap_or_default();
        let (starts_at, ends_at) = match campaign_window(c) {
            Ok(w) => w,
            Err(message) => {
                findings.push(Finding { kind: "DiscountCampaign", name: cname, reason: "InvalidSpec", message });
                continue;
            }
        };
        if !(1..=MAX_PERCENT_OFF).contains(&c.spec.percent_off) {
            let message = format!("percentOff must be 1–{MAX_PERCENT_OFF}, got {}", c.spec.percent_off);
            findings.push(Finding { kind: "DiscountCampaign", name: cname, reason: "InvalidSpec", message });
            continue;
        }
        if ends_at <= now {
            continue;
        }
        let plan_ids: Vec<String> = selected_plans
            .iter()
            .filter(|p| c.spec.plan_selector.matches(&p.metadata.labels.clone().unwrap_or_default()))
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        if plan_ids.is_empty() {
            continue;
        }
        resolved_campaigns.push(ResolvedCampaign {
            id: cname,
            percent_off: c.spec.percent_off,
            plan_ids,
            starts_at,
            ends_at,
            audience: c.spec.audience,
            max_redemptions: c.spec.max_redemptions,
            uid: c.metadata.uid.clone(),
        });
    }
    resolved_campaigns.sort_by(|a, b| a.id.cmp(&b.id));

    let mut selected_policies: Vec<&RateLimitPolicy> = policies
        .iter()
        .filter(|p| same_namespace(&p.metadata.namespace, &bot.metadata.namespace))
        .filter(|p| p.spec.bot_selector.matches(&labels))
        .collect();
    selected_policies.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let limits = merge_policies(&selected_policies);

    let config = ResolvedBotConfig {
        version: RESOLVED_CONFIG_VERSION,
        bot: ResolvedBot {
            name,
            namespace,
            pool: spec.pool.clone(),
            ingress: spec.ingress.clone(),
            features: spec.features.clone(),
            required_channels: spec.required_channels.clone(),
            admins: spec.admins.clone(),
            moderation: spec.moderation.clone(),
            locale: spec.locale.clone(),
            matching: spec.matching.clone(),
            lock_chat: spec.lock_chat.clone(),
            referrals: spec.referrals.clone(),
            secrets: SecretFiles {
                token_file: TOKEN_FILE.into(),
                webhook_secret_file: (spec.ingress.mode == IngressMode::Webhook).then(|| WEBHOOK_SECRET_FILE.into()),
                payload_key_file: None,
            },
            retiring: false,
        },
        plans: resolved_plans,
        campaigns: resolved_campaigns,
        limits,
    };
    let hash = config.hash();
    let requeue_at = config.next_window_edge(now);
    Ok(Resolution { config, hash, findings, requeue_at })
}

/// What the schema would have refused, for specs that bypassed it.
fn plan_problem(p: &VipPlan) -> Option<String> {
    if p.spec.price_stars == 0 {
        return Some("priceStars must be at least 1".into());
    }
    if p.spec.grants.vip_days == 0 && p.spec.grants.lock_credits == 0 {
        return Some("a plan must grant VIP days or lock credits".into());
    }
    None
}

/// A campaign's window, or why it is invalid.
pub fn campaign_window(c: &DiscountCampaign) -> Result<(Timestamp, Timestamp), String> {
    let starts: Timestamp =
        c.spec.starts_at.parse().map_err(|e| format!("startsAt {:?} is not an RFC 3339 time: {e}", c.spec.starts_at))?;
    let ends: Timestamp = c.spec.ends_at.parse().map_err(|e| format!("endsAt {:?} is not an RFC 3339 time: {e}", c.spec.ends_at))?;
    if ends <= starts {
        return Err(format!("endsAt ({ends}) must be after startsAt ({starts})"));
    }
    Ok((starts, ends))
}

/// Scheduled before its start, Active in [start, end), Expired from its end on.
pub fn campaign_state(c: &DiscountCampaign, now: Timestamp) -> Result<CampaignState, String> {
    let (starts, ends) = campaign_window(c)?;
    Ok(if now < starts {
        CampaignState::Scheduled
    } else if now < ends {
        CampaignState::Active
    } else {
        CampaignState::Expired
    })
}

/// Each limit is the strictest among the policies; onExceed comes from the first policy by
/// name (it is a choice of behaviour, not a bound). No policy: the defaults.
fn merge_policies(policies: &[&RateLimitPolicy]) -> ResolvedLimits {
    let Some(first) = policies.first() else {
        return ResolvedLimits {
            per_user: PerUserLimits::default(),
            on_exceed: Default::default(),
            admin_api_per_minute: BTreeMap::new(),
            outbound: OutboundLimits::default(),
        };
    };
    let mut per_user = first.spec.per_user.clone();
    let mut outbound = first.spec.outbound.clone();
    let mut admin = BTreeMap::new();
    for p in policies {
        let u = &p.spec.per_user;
        per_user.messages_per_second = per_user.messages_per_second.min(u.messages_per_second);
        per_user.burst = per_user.burst.min(u.burst);
        per_user.commands_per_minute = per_user.commands_per_minute.min(u.commands_per_minute);
        per_user.searches_per_minute = per_user.searches_per_minute.min(u.searches_per_minute);
        outbound.per_bot_per_second = outbound.per_bot_per_second.min(p.spec.outbound.per_bot_per_second);
        outbound.per_chat_per_minute = outbound.per_chat_per_minute.min(p.spec.outbound.per_chat_per_minute);
        outbound.paid_broadcast_per_second = outbound.paid_broadcast_per_second.min(p.spec.outbound.paid_broadcast_per_second);
        for (endpoint, limit) in &p.spec.admin_api_per_minute {
            admin.entry(endpoint.clone()).and_modify(|l: &mut u32| *l = (*l).min(*limit)).or_insert(*limit);
        }
    }
    ResolvedLimits { per_user, on_exceed: first.spec.on_exceed, admin_api_per_minute: admin, outbound }
}
