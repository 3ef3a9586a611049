//! Status of the pricing and limit resources: a campaign's state (Scheduled / Active /
//! Expired, requeued at its window edges), a plan's effective price now, how many bots a
//! policy selects. Computing a status is pure; writing it is a merge patch.

use std::sync::Arc;
use std::time::Duration;

use botfleet_crds::common::ConditionStatus;
use botfleet_crds::discount_campaign::{CampaignState, DiscountCampaign, DiscountCampaignStatus};
use botfleet_crds::pricing::best_price;
use botfleet_crds::rate_limit_policy::{RateLimitPolicy, RateLimitPolicyStatus};
use botfleet_crds::resolve::{campaign_state, campaign_window};
use botfleet_crds::vip_plan::{VipPlan, VipPlanStatus};
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::context::Context;
use crate::error::Error;
use crate::status::set_condition;

const RESYNC: Duration = Duration::from_secs(600);

fn until(t: Timestamp, now: Timestamp) -> Duration {
    Duration::from_secs(t.duration_since(now).as_secs().max(1) as u64)
}

/// A campaign's status now, and when it next changes.
pub fn campaign_status(c: &DiscountCampaign, now: Timestamp) -> (DiscountCampaignStatus, Option<Duration>) {
    let generation = c.metadata.generation.unwrap_or(0);
    let mut status = c.status.clone().unwrap_or_default();
    status.observed_generation = Some(generation);
    let next = match (campaign_state(c, now), campaign_window(c)) {
        (Ok(state), Ok((starts, ends))) => {
            set_condition(&mut status.conditions, "Valid", ConditionStatus::True, "Valid", "", generation, now);
            status.state = Some(state);
            match state {
                CampaignState::Scheduled => Some(until(starts, now)),
                CampaignState::Active => Some(until(ends, now)),
                CampaignState::Expired => None,
            }
        }
        (Err(message), _) | (_, Err(message)) => {
            set_condition(&mut status.conditions, "Valid", ConditionStatus::False, "InvalidWindow", message, generation, now);
            status.state = None;
            None
        }
    };
    (status, next)
}

/// A plan's price now: the best single discount among active campaigns that select it.
pub fn plan_status(p: &VipPlan, campaigns: &[DiscountCampaign], now: Timestamp) -> (VipPlanStatus, Option<Duration>) {
    let generation = p.metadata.generation.unwrap_or(0);
    let mut status = p.status.clone().unwrap_or_default();
    status.observed_generation = Some(generation);
    let labels = p.metadata.labels.clone().unwrap_or_default();
    let mine: Vec<(&DiscountCampaign, Timestamp, Timestamp)> = campaigns
        .iter()
        .filter(|c| c.metadata.namespace == p.metadata.namespace && c.spec.plan_selector.matches(&labels))
        .filter_map(|c| campaign_window(c).ok().map(|(s, e)| (c, s, e)))
        .collect();
    let active: Vec<&(&DiscountCampaign, Timestamp, Timestamp)> = mine.iter().filter(|(_, s, e)| *s <= now && now < *e).collect();
    match best_price(p.spec.price_stars, active.iter().map(|(c, _, _)| c.spec.percent_off)) {
        Ok(price) => {
            status.effective_price_stars = Some(price);
            status.active_campaign = active
                .iter()
                .filter(|(c, _, _)| botfleet_crds::pricing::discounted_price(p.spec.price_stars, c.spec.percent_off).ok() == Some(price))
                .filter(|_| price < p.spec.price_stars)
                .map(|(c, _, _)| c.name_any())
                .min();
            set_condition(&mut status.conditions, "Valid", ConditionStatus::True, "Valid", "", generation, now);
        }
        Err(e) => {
            status.effective_price_stars = None;
            status.active_campaign = None;
            set_condition(&mut status.conditions, "Valid", ConditionStatus::False, "InvalidPrice", e.to_string(), generation, now);
        }
    }
    let next = mine.iter().flat_map(|(_, s, e)| [*s, *e]).filter(|t| *t > now).min().map(|t| until(t, now));
    (status, next)
}

async fn patch_status<K>(ctx: &Context, obj: &K, status: serde_json::Value) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let ns = obj.meta().namespace.clone().ok_or(Error::MissingNamespace)?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
    Ok(())
}

/// Writes the status only when it changed (a no-op write would wake every watcher).
async fn write_status<K, S>(ctx: &Context, obj: &K, old: Option<&S>, new: &S) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize + PartialEq,
{
    if old == Some(new) {
        return Ok(());
    }
    patch_status(ctx, obj, serde_json::to_value(new).map_err(|e| Error::Serialize(e.to_string()))?).await
}

fn action(next: Option<Duration>) -> Action {
    Action::requeue(next.map(|d| d.min(RESYNC)).unwrap_or(RESYNC))
}

pub async fn reconcile_campaign(c: Arc<DiscountCampaign>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let (status, next) = campaign_status(&c, ctx.now());
    let result = async {
        let was = c.status.as_ref().and_then(|s| s.state);
        if status.state != was {
            let (type_, reason, note) = match status.state {
                Some(s) => (EventType::Normal, "StateChanged", format!("campaign is now {s:?}")),
                None => (
                    EventType::Warning,
                    "InvalidWindow",
                    status.conditions.iter().find(|x| x.type_ == "Valid").map(|x| x.message.clone()).unwrap_or_default(),
                ),
            };
            let event = KubeEvent { type_, reason: reason.into(), note: Some(note), action: "Evaluate".into(), secondary: None };
            if let Err(e) = ctx.recorder().publish(&event, &c.object_ref(&())).await {
                tracing::warn!(error = %e, "cannot publish event");
            }
        }
        write_status(&ctx, c.as_ref(), c.status.as_ref(), &status).await?;
        Ok(action(next))
    }
    .await;
    ctx.finish("DiscountCampaign", c.namespace().as_deref(), &c.name_any(), started, &result);
    result
}

pub async fn reconcile_plan(p: Arc<VipPlan>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let campaigns = ctx.inputs().campaigns;
    let (status, next) = plan_status(&p, &campaigns, ctx.now());
    let result = write_status(&ctx, p.as_ref(), p.status.as_ref(), &status).await.map(|_| action(next));
    ctx.finish("VipPlan", p.namespace().as_deref(), &p.name_any(), started, &result);
    result
}

pub async fn reconcile_policy(p: Arc<RateLimitPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let now = ctx.now();
    let generation = p.metadata.generation.unwrap_or(0);
    let selected = ctx
        .bots()
        .iter()
        .filter(|b| {
            b.metadata.namespace == p.metadata.namespace && p.spec.bot_selector.matches(&b.metadata.labels.clone().unwrap_or_default())
        })
        .count() as u32;
    let mut status: RateLimitPolicyStatus = p.status.clone().unwrap_or_default();
    status.observed_generation = Some(generation);
    status.selected_bots = Some(selected);
    let message = format!("applies to {selected} bot(s)");
    set_condition(&mut status.conditions, "Valid", ConditionStatus::True, "Valid", message, generation, now);
    let result = write_status(&ctx, p.as_ref(), p.status.as_ref(), &status).await.map(|_| Action::requeue(RESYNC));
    ctx.finish("RateLimitPolicy", p.namespace().as_deref(), &p.name_any(), started, &result);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn campaign(name: &str, percent: u8, starts: &str, ends: &str) -> DiscountCampaign {
        let mut c: DiscountCampaign = serde_yaml::from_str(&format!(
            "apiVersion: botfleet.io/v1alpha1\nkind: DiscountCampaign\nmetadata: {{name: {name}, namespace: demo, generation: 2}}\nspec: {{percentOff: {percent}, startsAt: \"{starts}\", endsAt: \"{ends}\", planSelector: {{matchLabels: {{kind: vip}}}}}}"
        ))
        .unwrap();
        c.metadata.namespace = Some("demo".into());
        c
    }

    fn plan(price: u32) -> VipPlan {
        serde_yaml::from_str(&format!(
            "apiVersion: botfleet.io/v1alpha1\nkind: VipPlan\nmetadata: {{name: week, namespace: demo, labels: {{kind: vip}}}}\nspec: {{title: Week, description: d, priceStars: {price}, grants: {{vipDays: 7}}}}"
        ))
        .unwrap()
    }

    #[test]
    fn a_campaign_is_scheduled_then_active_then_expired_and_requeued_at_each_edge() {
        let c = campaign("bf", 30, "2026-11-27T00:00:00Z", "2026-11-30T00:00:00Z");
        let (s, next) = campaign_status(&c, t("2026-11-26T23:00:00Z"));
        assert_eq!((s.state, next), (Some(CampaignState::Scheduled), Some(Duration::from_secs(3600))));
        assert_eq!(s.observed_generation, Some(2));
        let (s, next) = campaign_status(&c, t("2026-11-29T23:59:00Z"));
        assert_eq!((s.state, next), (Some(CampaignState::Active), Some(Duration::from_secs(60))));
        let (s, next) = campaign_status(&c, t("2026-11-30T00:00:00Z"));
        assert_eq!((s.state, next), (Some(CampaignState::Expired), None));
    }

    #[test]
    fn an_inverted_window_is_reported_in_a_condition() {
        let c = campaign("bad", 30, "2026-11-30T00:00:00Z", "2026-11-27T00:00:00Z");
        let (s, next) = campaign_status(&c, t("2026-11-28T00:00:00Z"));
        assert_eq!((s.state, next), (None, None));
        let valid = &s.conditions[0];
        assert_eq!((valid.type_.as_str(), valid.reason.as_str()), ("Valid", "InvalidWindow"));
        assert!(valid.message.contains("must be after"));
    }

    #[test]
    fn a_plan_shows_its_best_active_price_and_when_it_changes() {
        let campaigns = vec![
            campaign("ten", 10, "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
            campaign("bf", 30, "2026-11-27T00:00:00Z", "2026-11-30T00:00:00Z"),
        ];
        let (s, next) = plan_status(&plan(250), &campaigns, t("2026-11-22T00:00:00Z"));
        assert_eq!((s.effective_price_stars, s.active_campaign.as_deref()), (Some(225), Some("ten")));
        assert_eq!(next, Some(Duration::from_secs(5 * 86400)), "re-evaluated when black friday starts");
        let (s, _) = plan_status(&plan(250), &campaigns, t("2026-11-28T00:00:00Z"));
        assert_eq!((s.effective_price_stars, s.active_campaign.as_deref()), (Some(175), Some("bf")));
        let (s, next) = plan_status(&plan(250), &campaigns, t("2026-12-02T00:00:00Z"));
        assert_eq!((s.effective_price_stars, s.active_campaign, next), (Some(250), None, None));
    }
}
