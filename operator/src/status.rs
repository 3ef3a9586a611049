//! Conditions as Kubernetes conventions want them: one per type, `lastTransitionTime` moves
//! only when the status changes, every condition carries the generation it was computed for.

use botfleet_crds::common::{Condition, ConditionStatus};
use jiff::Timestamp;

/// Sets (or replaces) the condition of `type_`, keeping its transition time when the status
/// did not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    generation: i64,
    now: Timestamp,
) {
    let message = message.into();
    let previous = conditions.iter().find(|c| c.type_ == type_);
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => now.to_string(),
    };
    let condition = Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        last_transition_time,
        observed_generation: generation,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => *c = condition,
        None => conditions.push(condition),
    }
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    condition(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let mut c = Vec::new();
        set_condition(&mut c, "Ready", ConditionStatus::False, "Starting", "", 1, t("2026-01-01T00:00:00Z"));
        set_condition(&mut c, "Ready", ConditionStatus::False, "RolloutInProgress", "1/2 ready", 2, t("2026-01-01T00:05:00Z"));
        assert_eq!(c[0].last_transition_time, "2026-01-01T00:00:00Z");
        assert_eq!((c[0].reason.as_str(), c[0].observed_generation), ("RolloutInProgress", 2));
        set_condition(&mut c, "Ready", ConditionStatus::True, "Running", "", 2, t("2026-01-01T00:06:00Z"));
        assert_eq!(c[0].last_transition_time, "2026-01-01T00:06:00Z");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn conditions_stay_sorted_by_type() {
        let mut c = Vec::new();
        let now = t("2026-01-01T00:00:00Z");
        set_condition(&mut c, "TokenValid", ConditionStatus::True, "Valid", "", 1, now);
        set_condition(&mut c, "Ready", ConditionStatus::True, "Running", "", 1, now);
        assert_eq!(c.iter().map(|x| x.type_.as_str()).collect::<Vec<_>>(), ["Ready", "TokenValid"]);
        assert!(is_true(&c, "Ready"));
        assert!(!is_true(&c, "WebhookRegistered"));
    }
}
