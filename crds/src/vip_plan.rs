//! VipPlan: a product sold for Telegram Stars.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{Condition, LabelSelector};

/// A product sold for Telegram Stars on the bots it selects.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "botfleet.io",
    version = "v1alpha1",
    kind = "VipPlan",
    namespaced,
    status = "VipPlanStatus",
    derive = "PartialEq",
    shortname = "plan",
    shortname = "plans",
    category = "botfleet",
    doc = "A VIP plan sold for Telegram Stars",
    printcolumn(name = "Price", type_ = "integer", json_path = ".spec.priceStars", description = "list price in Stars"),
    printcolumn(
        name = "Effective",
        type_ = "integer",
        json_path = ".status.effectivePriceStars",
        description = "price with the best active campaign"
    ),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    cel
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.billing) || self.billing != 'Monthly' || (self.priceStars <= 10000 && self.grants.vipDays == 30)")
        .message("a Monthly plan is a Telegram subscription: 30 VIP days per period and at most 10000 Stars")
)]
pub struct VipPlanSpec {
    /// Shown on the invoice (Telegram allows 1–32 characters).
    #[schemars(length(min = 1, max = 32))]
    pub title: String,
    /// Shown on the invoice (Telegram allows 1–255 characters).
    #[schemars(length(min = 1, max = 255))]
    pub description: String,
    /// List price in Telegram Stars.
    #[schemars(range(min = 1, max = 100000))]
    pub price_stars: u32,
    pub grants: Grants,
    #[serde(default)]
    pub perks: Perks,
    /// Which bots sell this plan (empty: every bot in the namespace).
    #[serde(default)]
    pub bot_selector: LabelSelector,
    /// Position in the shop, lowest first.
    #[serde(default)]
    #[schemars(range(min = -1000, max = 1000))]
    pub sort_order: i32,
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// `OneTime` (default): bought once with an invoice. `Monthly`: a Telegram Stars
    /// subscription renewed every 30 days (Telegram's only period) until the buyer cancels;
    /// discounts never apply to it (docs/MONEY.md, "Subscriptions").
    #[serde(default)]
    pub billing: Billing,
}

/// How a plan is paid.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub enum Billing {
    #[default]
    OneTime,
    Monthly,
}

fn enabled() -> bool {
    true
}

/// What a purchase gives.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.vipDays > 0 || self.lockCredits > 0").message("a plan must grant VIP days or lock credits"))]
pub struct Grants {
    /// Added to an unexpired VIP, or starting now.
    #[serde(default)]
    #[schemars(range(min = 0, max = 3650))]
    pub vip_days: u32,
    #[serde(default)]
    #[schemars(range(min = 0, max = 100000))]
    pub lock_credits: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Perks {
    /// VIPs are matched from the VIP queue first.
    #[serde(default)]
    pub priority_matching: bool,
    /// VIPs may choose their partner's gender.
    #[serde(default)]
    pub partner_gender_filter: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VipPlanStatus {
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The price now, with the best active campaign (the runtime quotes to the second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_price_stars: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_campaign: Option<String>,
}
