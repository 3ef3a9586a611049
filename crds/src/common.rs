//! Pieces every BotFleet resource shares: status conditions (Kubernetes conventions), label
//! selectors, and the API group.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "botfleet.io";
pub const VERSION: &str = "v1alpha1";

/// A status condition as Kubernetes conventions define it (metav1.Condition), kept in a
/// list-map keyed by `type` so server-side apply merges conditions one by one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// CamelCase kind of condition, e.g. Ready, TokenValid, WebhookRegistered.
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 316))]
    pub type_: String,
    pub status: ConditionStatus,
    /// Machine-readable CamelCase reason for the last transition.
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"))]
    pub reason: String,
    /// Human-readable details; never a token or message content.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: String,
    /// The .metadata.generation this condition was computed for.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub observed_generation: i64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// A Kubernetes label selector: which bots (or plans) a resource applies to. An empty
/// selector selects everything, as in Kubernetes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.operator in ['In', 'NotIn']) ? size(self.values) > 0 : size(self.values) == 0").message("In and NotIn need values; Exists and DoesNotExist take none"))]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let labels_ok = self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v));
        let exprs_ok = self.match_expressions.iter().all(|e| {
            let value = labels.get(&e.key);
            match e.operator {
                SelectorOperator::In => value.is_some_and(|v| e.values.contains(v)),
                SelectorOperator::NotIn => value.is_none_or(|v| !e.values.contains(v)),
                SelectorOperator::Exists => value.is_some(),
                SelectorOperator::DoesNotExist => value.is_none(),
            }
        });
        labels_ok && exprs_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn empty_selector_selects_everything() {
        assert!(LabelSelector::default().matches(&labels(&[])));
    }

    #[test]
    fn match_labels_and_expressions_must_all_hold() {
        let sel = LabelSelector {
            match_labels: labels(&[("pool", "eu")]),
            match_expressions: vec![
                LabelSelectorRequirement { key: "tier".into(), operator: SelectorOperator::In, values: vec!["a".into(), "b".into()] },
                LabelSelectorRequirement { key: "beta".into(), operator: SelectorOperator::DoesNotExist, values: vec![] },
            ],
        };
        assert!(sel.matches(&labels(&[("pool", "eu"), ("tier", "a")])));
        assert!(!sel.matches(&labels(&[("pool", "eu"), ("tier", "c")])));
        assert!(!sel.matches(&labels(&[("pool", "us"), ("tier", "a")])));
        assert!(!sel.matches(&labels(&[("pool", "eu"), ("tier", "a"), ("beta", "1")])));
    }

    #[test]
    fn not_in_matches_missing_labels() {
        let sel = LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: SelectorOperator::NotIn,
                values: vec!["dev".into()],
            }],
        };
        assert!(sel.matches(&labels(&[])));
        assert!(!sel.matches(&labels(&[("env", "dev")])));
    }
}
