//! What every reconcile shares: the client, the Telegram client, the settings, the caches of
//! the pricing and limit resources, the metrics, and the event recorder.

use std::sync::Arc;
use std::time::{Duration, Instant};

use botfleet_crds::bot_instance::BotInstance;
use botfleet_crds::discount_campaign::DiscountCampaign;
use botfleet_crds::rate_limit_policy::RateLimitPolicy;
use botfleet_crds::vip_plan::VipPlan;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::{reflector, watcher};
use tokio::sync::Mutex;

use crate::bot::build::Settings;
use crate::bot::fleet::Fleet;
use crate::metrics::Metrics;
use crate::telegram::TelegramClient;

const SERVICE_MONITOR_CRD: &str = "servicemonitors.monitoring.coreos.com";
const CRD_CHECK_EVERY: Duration = Duration::from_secs(300);

/// Read-only caches of the resources that feed the resolver (filled by reflectors).
#[derive(Clone)]
pub struct Stores {
    pub plans: Store<VipPlan>,
    pub campaigns: Store<DiscountCampaign>,
    pub policies: Store<RateLimitPolicy>,
    pub bots: Store<BotInstance>,
    /// The runtime pods (status only: their spec and managed fields are dropped), for the
    /// termination messages of runtimes that cannot start.
    pub pods: Store<Pod>,
}

impl Stores {
    /// Stores holding exactly these objects (tests, benchmarks).
    pub fn from_objects(plans: Vec<VipPlan>, campaigns: Vec<DiscountCampaign>, policies: Vec<RateLimitPolicy>) -> Self {
        fill_stores(plans, campaigns, policies, vec![])
    }

    pub fn with_bots(
        plans: Vec<VipPlan>,
        campaigns: Vec<DiscountCampaign>,
        policies: Vec<RateLimitPolicy>,
        bots: Vec<BotInstance>,
    ) -> Self {
        fill_stores(plans, campaigns, policies, bots)
    }
}

fn fill_stores(plans: Vec<VipPlan>, campaigns: Vec<DiscountCampaign>, policies: Vec<RateLimitPolicy>, bots: Vec<BotInstance>) -> Stores {
    {
        fn fill<K>(objects: Vec<K>) -> Store<K>
        where
            K: kube::Resource + Clone + 'static,
            K::DynamicType: Default + Eq + std::hash::Hash + Clone,
        {
            let (reader, mut writer) = reflector::store();
            writer.apply_watcher_event(&watcher::Event::Init);
            for o in objects {
                writer.apply_watcher_event(&watcher::Event::InitApply(o));
            }
            writer.apply_watcher_event(&watcher::Event::InitDone);
            reader
        }
        Stores { plans: fill(plans), campaigns: fill(campaigns), policies: fill(policies), bots: fill(bots), pods: fill(vec![]) }
    }
}

/// A snapshot of the resolver's inputs.
pub struct Inputs {
    pub plans: Vec<VipPlan>,
    pub campaigns: Vec<DiscountCampaign>,
    pub policies: Vec<RateLimitPolicy>,
}

pub struct Context {
    pub client: Client,
    pub telegram: TelegramClient,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub stores: Stores,
    /// The bots of every namespace this process watches (duplicate Telegram bots).
    pub fleet: Fleet,
    recorder: Recorder,
    /// A fixed clock for tests; None: the real time.
    clock: Option<Timestamp>,
    monitor_crd: Mutex<Option<(Instant, bool)>>,
    /// Consecutive failures per object, for the error policy's backoff.
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        telegram: TelegramClient,
        settings: Settings,
        metrics: Arc<Metrics>,
        stores: Stores,
        reporter: Reporter,
    ) -> Self {
        let recorder = Recorder::new(client.clone(), reporter);
        let fleet = Fleet::of(stores.bots.clone());
        Self {
            client,
            telegram,
            settings,
            metrics,
            stores,
            fleet,
            recorder,
            clock: None,
            monitor_crd: Mutex::new(None),
            failures: Default::default(),
        }
    }

    /// Shares the bots of the other namespaces this process watches (see [`Fleet`]).
    pub fn with_fleet(mut self, fleet: Fleet) -> Self {
        self.fleet = fleet;
        self
    }

    pub fn with_clock(mut self, now: Timestamp) -> Self {
        self.clock = Some(now);
        self
    }

    pub fn now(&self) -> Timestamp {
        self.clock.unwrap_or_else(Timestamp::now)
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    pub fn inputs(&self) -> Inputs {
        Inputs {
            plans: self.stores.plans.state().iter().map(|o| o.as_ref().clone()).collect(),
            campaigns: self.stores.campaigns.state().iter().map(|o| o.as_ref().clone()).collect(),
            policies: self.stores.policies.state().iter().map(|o| o.as_ref().clone()).collect(),
        }
    }

    /// Records a failed reconcile of `key`; returns how many in a row.
    pub fn failed(&self, key: &str) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry(key.to_string()).or_default();
        *n += 1;
        *n
    }

    /// The common end of every reconcile: metrics, and a success resets the object's backoff.
    pub fn finish<T>(&self, kind: &str, ns: Option<&str>, name: &str, started: Instant, result: &Result<T, crate::error::Error>) {
        self.metrics.observe(kind, started.elapsed(), result);
        if result.is_ok() {
            self.succeeded(&format!("{}/{name}", ns.unwrap_or_default()));
        }
    }

    pub fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    pub fn bots(&self) -> Vec<Arc<BotInstance>> {
        self.stores.bots.state()
    }

    /// Whether the Prometheus operator's ServiceMonitor CRD is installed (checked at most
    /// every five minutes; a failed check counts as "no").
    pub async fn service_monitor_available(&self) -> bool {
        let mut cached = self.monitor_crd.lock().await;
        if let Some((at, available)) = *cached
            && at.elapsed() < CRD_CHECK_EVERY
        {
            return available;
        }
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let available = match api.get_opt(SERVICE_MONITOR_CRD).await {
            Ok(found) => found.is_some(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check for the ServiceMonitor CRD; assuming it is absent");
                false
            }
        };
        *cached = Some((Instant::now(), available));
        available
    }
}
