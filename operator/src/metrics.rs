//! The operator's Prometheus metrics. Names are stable once shipped (dashboards and alerts
//! in charts/botfleet depend on them); labels never carry user ids.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use botfleet_crds::common::{Condition, ConditionStatus};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::error::Error;

pub struct Metrics {
    pub registry: Registry,
    reconciles: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    bots: IntGaugeVec,
    webhook_pending: IntGaugeVec,
    leader: prometheus::IntGauge,
    /// Each bot's conditions, to keep the aggregate gauge exact when bots change or go.
    conditions: Mutex<HashMap<(String, String), Vec<(String, &'static str)>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn status_label(s: ConditionStatus) -> &'static str {
    match s {
        ConditionStatus::True => "True",
        ConditionStatus::False => "False",
        ConditionStatus::Unknown => "Unknown",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles =
            IntCounterVec::new(Opts::new("botfleet_operator_reconciles_total", "Reconciles by kind and outcome"), &["kind", "outcome"])
                .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new("botfleet_operator_reconcile_errors_total", "Failed reconciles by kind and reason"),
            &["kind", "reason"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("botfleet_operator_reconcile_duration_seconds", "Time one reconcile took")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["kind"],
        )
        .expect("valid metric");
        let bots =
            IntGaugeVec::new(Opts::new("botfleet_operator_bots", "BotInstances by condition type and status"), &["condition", "status"])
                .expect("valid metric");
        let webhook_pending = IntGaugeVec::new(
            Opts::new("botfleet_operator_webhook_pending_updates", "Updates Telegram holds for the bot's webhook"),
            &["bot"],
        )
        .expect("valid metric");
        let leader = prometheus::IntGauge::new("botfleet_operator_leader", "1 on the replica that holds the Lease, 0 on standbys")
            .expect("valid metric");
        for c in [
            Box::new(leader.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconciles.clone()),
            Box::new(errors.clone()),
            Box::new(duration.clone()),
            Box::new(bots.clone()),
            Box::new(webhook_pending.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Self { registry, reconciles, errors, duration, bots, webhook_pending, leader, conditions: Mutex::new(HashMap::new()) }
    }

    pub fn observe<T>(&self, kind: &str, elapsed: Duration, result: &Result<T, Error>) {
        self.duration.with_label_values(&[kind]).observe(elapsed.as_secs_f64());
        match result {
            Ok(_) => self.reconciles.with_label_values(&[kind, "success"]).inc(),
            // A retiring bot waiting for its pods to drain is working as intended.
            Err(e) if e.draining().is_some() => self.reconciles.with_label_values(&[kind, "success"]).inc(),
            Err(e) => {
                self.reconciles.with_label_values(&[kind, "error"]).inc();
                self.errors.with_label_values(&[kind, e.reason()]).inc();
            }
        }
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn webhook_pending(&self, ns: &str, bot: &str, pending: u64) {
        self.webhook_pending.with_label_values(&[&format!("{ns}/{bot}")]).set(pending as i64);
    }

    pub fn bot_conditions(&self, ns: &str, bot: &str, conditions: &[Condition]) {
        let mut all = self.conditions.lock().unwrap_or_else(|p| p.into_inner());
        all.insert((ns.to_string(), bot.to_string()), conditions.iter().map(|c| (c.type_.clone(), status_label(c.status))).collect());
        self.recount(&all);
    }

    pub fn forget_bot(&self, ns: &str, bot: &str) {
        let mut all = self.conditions.lock().unwrap_or_else(|p| p.into_inner());
        all.remove(&(ns.to_string(), bot.to_string()));
        self.recount(&all);
        let _ = self.webhook_pending.remove_label_values(&[&format!("{ns}/{bot}")]);
    }

    fn recount(&self, all: &HashMap<(String, String), Vec<(String, &'static str)>>) {
        let mut counts: BTreeMap<(String, &'static str), i64> = BTreeMap::new();
        for conds in all.values() {
            for (t, s) in conds {
                *counts.entry((t.clone(), s)).or_default() += 1;
            }
        }
        self.bots.reset();
        for ((t, s), n) in counts {
            self.bots.with_label_values(&[t.as_str(), s]).set(n);
        }
    }

    /// The registry in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::controller::Action;

    #[test]
    fn metrics_render_with_stable_names_and_counts_bots_by_condition() {
        let m = Metrics::new();
        m.set_leader(true);
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut conds = Vec::new();
        crate::status::set_condition(&mut conds, "Ready", ConditionStatus::True, "Running", "", 1, now);
        m.bot_conditions("demo", "alpha", &conds);
        m.bot_conditions("demo", "beta", &conds);
        m.webhook_pending("demo", "alpha", 7);
        m.observe("BotInstance", Duration::from_millis(5), &Ok(Action::await_change()));
        let text = m.render();
        for line in [
            "botfleet_operator_leader 1",
            "botfleet_operator_bots{condition=\"Ready\",status=\"True\"} 2",
            "botfleet_operator_webhook_pending_updates{bot=\"demo/alpha\"} 7",
            "botfleet_operator_reconciles_total{kind=\"BotInstance\",outcome=\"success\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(text.contains("botfleet_operator_reconcile_duration_seconds_bucket"));
        m.forget_bot("demo", "beta");
        assert!(m.render().contains("botfleet_operator_bots{condition=\"Ready\",status=\"True\"} 1"));
    }
}
