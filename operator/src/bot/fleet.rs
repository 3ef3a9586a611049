//! One Telegram bot, one BotInstance: two BotInstances whose tokens belong to the same
//! Telegram bot (same bot id, in any watched namespace) would fight over its webhook and its
//! updates. The first one keeps running; the other is reported (`Ready=False DuplicateBot`) and
//! not deployed.
//!
//! `duplicate_of` is pure; `Fleet` shares the BotInstance caches of every watched namespace
//! (one controller runs per namespace in namespaced mode), so the check sees them all.

use std::sync::{Arc, Mutex};

use botfleet_crds::bot_instance::BotInstance;
use kube::runtime::reflector::Store;

/// The BotInstance caches of every controller this process runs.
#[derive(Clone, Default)]
pub struct Fleet {
    stores: Arc<Mutex<Vec<Store<BotInstance>>>>,
}

impl Fleet {
    pub fn of(store: Store<BotInstance>) -> Self {
        let fleet = Self::default();
        fleet.add(store);
        fleet
    }

    pub fn add(&self, store: Store<BotInstance>) {
        self.stores.lock().unwrap_or_else(|p| p.into_inner()).push(store);
    }

    /// Every BotInstance in every watched namespace.
    pub fn bots(&self) -> Vec<Arc<BotInstance>> {
        self.stores.lock().unwrap_or_else(|p| p.into_inner()).iter().flat_map(|s| s.state()).collect()
    }
}

/// A bot that runs (or last ran) as Telegram bot `id`: its status says so and it was not
/// itself found to be a duplicate.
fn incumbent(bot: &BotInstance, id: i64) -> bool {
    let status = bot.status.as_ref();
    status.and_then(|s| s.bot_id) == Some(id)
        && !status.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "DuplicateBot"))
}

/// Older first; the namespace and name break a tie.
fn seniority(bot: &BotInstance) -> (Option<jiff::Timestamp>, String, String) {
    (
        bot.metadata.creation_timestamp.as_ref().map(|t| t.0),
        bot.metadata.namespace.clone().unwrap_or_default(),
        bot.metadata.name.clone().unwrap_or_default(),
    )
}

/// The BotInstance (`namespace/name`) that already is Telegram bot `id`, when `bot` must give
/// way to it: another live bot that runs as `id`, unless `bot` runs as `id` too and is older.
/// Bots being deleted do not count.
pub fn duplicate_of(bot: &BotInstance, id: i64, fleet: &[Arc<BotInstance>]) -> Option<String> {
    let me_incumbent = incumbent(bot, id);
    fleet
        .iter()
        .filter(|o| o.metadata.uid != bot.metadata.uid && o.metadata.deletion_timestamp.is_none())
        .filter(|o| incumbent(o, id))
        .filter(|o| !me_incumbent || seniority(o) < seniority(bot))
        .min_by_key(|o| seniority(o))
        .map(|o| format!("{}/{}", o.metadata.namespace.as_deref().unwrap_or_default(), o.metadata.name.as_deref().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use botfleet_crds::bot_instance::BotInstanceStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn bot(ns: &str, name: &str, created: &str, bot_id: Option<i64>, ready_reason: &str) -> Arc<BotInstance> {
        let mut b: BotInstance = serde_yaml::from_str(&format!(
            "apiVersion: botfleet.io/v1alpha1\nkind: BotInstance\nmetadata: {{name: {name}, namespace: {ns}, uid: {ns}-{name}}}\nspec: {{tokenSecretRef: {{name: t}}, admins: {{telegramIds: [1]}}}}"
        ))
        .unwrap();
        b.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        let conditions = serde_json::from_value(serde_json::json!([{
            "type": "Ready", "status": "False", "reason": ready_reason, "message": "", "lastTransitionTime": created, "observedGeneration": 1
        }]))
        .unwrap();
        b.status = Some(BotInstanceStatus { bot_id, conditions, ..Default::default() });
        Arc::new(b)
    }

    #[test]
    fn a_second_bot_instance_for_the_same_telegram_bot_gives_way_in_any_namespace() {
        let running = bot("team-a", "alpha", "2026-01-01T00:00:00Z", Some(42), "Running");
        let newcomer = bot("team-b", "copy", "2026-02-01T00:00:00Z", None, "RolloutInProgress");
        let fleet = vec![running.clone(), newcomer.clone()];
        assert_eq!(duplicate_of(&newcomer, 42, &fleet).as_deref(), Some("team-a/alpha"));
        assert_eq!(duplicate_of(&running, 42, &fleet), None, "the running one is not disturbed");
        assert_eq!(duplicate_of(&newcomer, 43, &fleet), None, "another Telegram bot");
    }

    #[test]
    fn a_running_bot_keeps_running_even_when_an_older_instance_switches_to_its_token() {
        // The older BotInstance was another bot and now points at alpha's token.
        let older = bot("team-b", "old", "2025-01-01T00:00:00Z", Some(7), "Running");
        let running = bot("team-a", "alpha", "2026-01-01T00:00:00Z", Some(42), "Running");
        let fleet = vec![older.clone(), running.clone()];
        assert_eq!(duplicate_of(&older, 42, &fleet).as_deref(), Some("team-a/alpha"));
        assert_eq!(duplicate_of(&running, 42, &fleet), None);
    }

    #[test]
    fn when_both_run_as_the_same_bot_the_older_one_wins() {
        let a = bot("ns", "a", "2026-01-01T00:00:00Z", Some(42), "Running");
        let b = bot("ns", "b", "2026-01-02T00:00:00Z", Some(42), "Running");
        let fleet = vec![a.clone(), b.clone()];
        assert_eq!(duplicate_of(&a, 42, &fleet), None);
        assert_eq!(duplicate_of(&b, 42, &fleet).as_deref(), Some("ns/a"));
    }

    #[test]
    fn same_name_bots_in_two_namespaces_with_their_own_tokens_both_run() {
        let a = bot("team-a", "alpha", "2026-01-01T00:00:00Z", Some(1), "Running");
        let b = bot("team-b", "alpha", "2026-01-02T00:00:00Z", Some(2), "Running");
        let fleet = vec![a.clone(), b.clone()];
        assert_eq!((duplicate_of(&a, 1, &fleet), duplicate_of(&b, 2, &fleet)), (None, None));
    }

    #[test]
    fn duplicates_and_deleted_bots_do_not_hold_the_bot() {
        let dup = bot("ns", "dup", "2025-01-01T00:00:00Z", Some(42), "DuplicateBot");
        let me = bot("ns", "me", "2026-01-01T00:00:00Z", None, "RolloutInProgress");
        assert_eq!(duplicate_of(&me, 42, &[dup, me.clone()]), None, "a reported duplicate holds nothing");
        let mut gone = (*bot("ns", "gone", "2025-01-01T00:00:00Z", Some(42), "Running")).clone();
        gone.metadata.deletion_timestamp = Some(Time("2026-03-01T00:00:00Z".parse().unwrap()));
        assert_eq!(duplicate_of(&me, 42, &[Arc::new(gone), me.clone()]), None, "a deleted bot releases it");
    }
}
