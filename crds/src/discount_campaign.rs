//! DiscountCampaign: a time-windowed percent off selected plans on selected bots.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, LabelSelector};

/// Percent off for the plans and bots it selects, between startsAt and endsAt. The runtime
/// applies the window to the second, even when the operator is down.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "botfleet.io",
    version = "v1alpha1",
    kind = "DiscountCampaign",
    namespaced,
    status = "DiscountCampaignStatus",
    derive = "PartialEq",
    shortname = "campaign",
    shortname = "campaigns",
    category = "botfleet",
    doc = "A time-windowed discount on VIP plans",
    printcolumn(name = "Percent", type_ = "integer", json_path = ".spec.percentOff", description = "percent off"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    // Strings, not dates: kubectl prints "<invalid>" for a date in the future.
    printcolumn(name = "Starts", type_ = "string", json_path = ".spec.startsAt"),
    printcolumn(name = "Ends", type_ = "string", json_path = ".spec.endsAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp", priority = 1),
    cel
)]
#[serde(rename_all = "camelCase")]
// startsAt/endsAt have format date-time, so CEL sees them as timestamps and compares them as such.
#[x_kube(validation = Rule::new("self.endsAt > self.startsAt").message("endsAt must be after startsAt"))]
pub struct DiscountCampaignSpec {
    #[schemars(range(min = 1, max = 90))]
    pub percent_off: u8,
    /// Which plans are discounted (empty: every plan).
    #[serde(default)]
    pub plan_selector: LabelSelector,
    /// On which bots (empty: every bot).
    #[serde(default)]
    pub bot_selector: LabelSelector,
    /// RFC 3339 start of the window, inclusive.
    #[schemars(extend("format" = "date-time"))]
    pub starts_at: String,
    /// RFC 3339 end of the window, exclusive.
    #[schemars(extend("format" = "date-time"))]
    pub ends_at: String,
    #[serde(default)]
    pub audience: Audience,
    /// Fleet-wide cap on redemptions (absent: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_redemptions: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Audience {
    #[default]
    All,
    /// Users who joined the fleet during the campaign.
    NewUsers,
    /// Users without an active VIP.
    NonVip,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CampaignState {
    Scheduled,
    Active,
    Expired,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscountCampaignStatus {
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CampaignState>,
}
