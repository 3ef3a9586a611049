//! Wires the reconcilers to the cluster: one Controller per kind, the watches that trigger
//! them, and the caches the resolver reads. Runs while this replica holds the Lease.

use std::sync::Arc;
use std::time::Duration;

use botfleet_crds::bot_instance::BotInstance;
use botfleet_crds::discount_campaign::DiscountCampaign;
use botfleet_crds::rate_limit_policy::RateLimitPolicy;
use botfleet_crds::vip_plan::VipPlan;
use futures::{Future, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use crate::bot::build::Settings;
use crate::bot::fleet::Fleet;
use crate::bot::reconcile::reconcile;
use crate::context::{Context, Stores};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::pricing::{reconcile_campaign, reconcile_plan, reconcile_policy};
use crate::telegram::TelegramClient;

/// Only our own children are watched (label selector), so memory follows the fleet, not the cluster.
const OWNED: &str = "app.kubernetes.io/managed-by=botfleet-operator";

fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Exponential backoff per object: 5 s, 10 s, 20 s … up to 5 minutes; a success resets it.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << failures.saturating_sub(1).min(6))).min(Duration::from_secs(300))
}

pub fn error_policy<K: Resource>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Some(wait) = error.draining() {
        return Action::requeue(wait);
    }
    let key = format!("{}/{}", obj.meta().namespace.as_deref().unwrap_or(""), obj.meta().name.as_deref().unwrap_or(""));
    let failures = ctx.failed(&key);
    let wait = backoff(failures);
    tracing::warn!(object = %key, error = %error, reason = error.reason(), failures, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// Every bot of a namespace (pricing and limit changes re-resolve them all).
fn bots_in(store: &Store<BotInstance>, ns: Option<String>) -> Vec<ObjectRef<BotInstance>> {
    store.state().iter().filter(|b| b.metadata.namespace == ns).map(|b| ObjectRef::from_obj(b.as_ref())).collect()
}

/// Runs all controllers for one namespace (or the whole cluster) until `shutdown` resolves.
/// `fleet` collects the BotInstance caches of every namespace this process runs, so a
/// duplicate Telegram bot is found across them.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    namespace: Option<String>,
    fleet: Fleet,
    telegram: TelegramClient,
    settings: Settings,
    metrics: Arc<Metrics>,
    reporter: Reporter,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let ns = namespace.as_deref();
    let (plans, plans_writer) = reflector::store();
    let (campaigns, campaigns_writer) = reflector::store();
    let (policies, policies_writer) = reflector::store();
    let plan_events = reflector::reflector(plans_writer, watcher(api::<VipPlan>(&client, ns), watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    let campaign_events = reflector::reflector(campaigns_writer, watcher(api::<DiscountCampaign>(&client, ns), watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    let policy_events = reflector::reflector(policies_writer, watcher(api::<RateLimitPolicy>(&client, ns), watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    // Secrets, metadata only (a Secret's data never sits in our memory unless we read it), and
    // only two kinds: token Secrets users label for us, and our own (the payload keys included). Other Secrets of the
    // namespace are never listed into memory.
    let token_label = format!("{}=true", crate::bot::build::TOKEN_SECRET_LABEL);
    let secret_events = futures::stream::select(
        watcher(api::<PartialObjectMeta<Secret>>(&client, ns), watcher::Config::default().labels(&token_label))
            .default_backoff()
            .touched_objects(),
        watcher(api::<PartialObjectMeta<Secret>>(&client, ns), watcher::Config::default().labels(OWNED))
            .default_backoff()
            .touched_objects(),
    );

    // The runtime pods, for the termination messages of runtimes that cannot start: status
    // only in memory (spec and managed fields dropped).
    let (pods, pods_writer) = reflector::store();
    let pod_stream =
        watcher(api::<Pod>(&client, ns), watcher::Config::default().labels(OWNED)).default_backoff().modify(|pod: &mut Pod| {
            pod.spec = None;
            pod.managed_fields_mut().clear();
        });
    let pod_events = reflector::reflector(pods_writer, pod_stream).touched_objects();

    let owned = || watcher::Config::default().labels(OWNED);
    let bots = Controller::new(api::<BotInstance>(&client, ns), watcher::Config::default().any_semantic());
    let bot_store = bots.store();
    let stores = Stores { plans, campaigns, policies, bots: bot_store.clone(), pods };
    fleet.add(bot_store.clone());
    let ctx = Arc::new(Context::new(client.clone(), telegram, settings, metrics, stores, reporter).with_fleet(fleet));

    let (s1, s2, s3, s4) = (bot_store.clone(), bot_store.clone(), bot_store.clone(), bot_store.clone());
    let bot_controller = bots
        .owns(api::<Deployment>(&client, ns), owned())
        .owns(api::<Service>(&client, ns), owned())
        .owns(api::<ConfigMap>(&client, ns), owned())
        .owns(api::<HorizontalPodAutoscaler>(&client, ns), owned())
        .owns(api::<PodDisruptionBudget>(&client, ns), owned())
        .watches_stream(secret_events, move |secret| {
            // A token Secret changed (rotation), one of the bot's own Secrets went away, or the
            // namespace's payload keys were edited (every bot of the namespace rolls to them).
            let name = secret.name_any();
            let payload_keys = name == crate::bot::build::PAYLOAD_KEYS_SECRET;
            s1.state()
                .iter()
                .filter(|b| {
                    let own = crate::bot::build::names(&b.name_any());
                    b.metadata.namespace == secret.metadata.namespace
                        && (payload_keys || b.spec.token_secret_ref.name == name || own.webhook_secret == name || own.token == name)
                })
                .map(|b| ObjectRef::from_obj(b.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches_stream(pod_events, |pod: Pod| {
            // A runtime pod's status changed: its bot's Ready condition may change.
            let bot = pod.labels().get("app.kubernetes.io/instance").cloned();
            bot.map(|b| ObjectRef::<BotInstance>::new(&b).within(pod.metadata.namespace.as_deref().unwrap_or_default()))
        })
        .watches_stream(plan_events, move |p: VipPlan| bots_in(&s2, p.metadata.namespace))
        .watches_stream(campaign_events, move |c: DiscountCampaign| bots_in(&s3, c.metadata.namespace))
        .watches_stream(policy_events, move |p: RateLimitPolicy| bots_in(&s4, p.metadata.namespace))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "bot reconcile");
            }
        });

    let campaign_controller = Controller::new(api::<DiscountCampaign>(&client, ns), watcher::Config::default())
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_campaign, error_policy, ctx.clone())
        .for_each(|_| async {});
    let plan_store = Controller::new(api::<VipPlan>(&client, ns), watcher::Config::default());
    let plans_of_ns = plan_store.store();
    let plan_controller = plan_store
        .watches(api::<DiscountCampaign>(&client, ns), watcher::Config::default(), move |c| {
            plans_of_ns
                .state()
                .iter()
                .filter(|p| p.metadata.namespace == c.metadata.namespace)
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_plan, error_policy, ctx.clone())
        .for_each(|_| async {});
    let policy_controller = Controller::new(api::<RateLimitPolicy>(&client, ns), watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile_policy, error_policy, ctx)
        .for_each(|_| async {});
    futures::join!(bot_controller, campaign_controller, plan_controller, policy_controller);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
