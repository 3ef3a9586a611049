//! RateLimitPolicy: per-user limits, what happens on excess, admin-API limits and outbound
//! send limits, for the bots it selects.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, LabelSelector};

/// Limits for the bots it selects. When several policies select one bot, each limit is the
/// strictest of them (a policy can only tighten, never loosen, another).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "botfleet.io",
    version = "v1alpha1",
    kind = "RateLimitPolicy",
    namespaced,
    status = "RateLimitPolicyStatus",
    derive = "PartialEq",
    shortname = "rlp",
    category = "botfleet",
    doc = "Rate limits for users, the admin API and outbound sends",
    printcolumn(name = "Msg/s", type_ = "integer", json_path = ".spec.perUser.messagesPerSecond"),
    printcolumn(name = "On excess", type_ = "string", json_path = ".spec.onExceed"),
    printcolumn(name = "Bot send/s", type_ = "integer", json_path = ".spec.outbound.perBotPerSecond"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    cel
)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitPolicySpec {
    #[serde(default)]
    pub bot_selector: LabelSelector,
    #[serde(default)]
    pub per_user: PerUserLimits,
    #[serde(default)]
    pub on_exceed: OnExceed,
    /// Requests per minute per admin API endpoint (path template → limit).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(inner(range(min = 1, max = 100000)))]
    pub admin_api_per_minute: BTreeMap<String, u32>,
    #[serde(default)]
    pub outbound: OutboundLimits,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.burst >= self.messagesPerSecond").message("burst must be at least messagesPerSecond"))]
pub struct PerUserLimits {
    #[serde(default = "default_messages_per_second")]
    #[schemars(range(min = 1, max = 100))]
    pub messages_per_second: u32,
    #[serde(default = "default_burst")]
    #[schemars(range(min = 1, max = 1000))]
    pub burst: u32,
    #[serde(default = "default_commands_per_minute")]
    #[schemars(range(min = 1, max = 1000))]
    pub commands_per_minute: u32,
    #[serde(default = "default_searches_per_minute")]
    #[schemars(range(min = 1, max = 1000))]
    pub searches_per_minute: u32,
}

/// One update a second, as Telegram delivers one message a second to a chat: a user who keeps
/// this pace never builds a backlog in their own or their partner's chat.
fn default_messages_per_second() -> u32 {
    1
}
/// A few quick taps or lines at once (Telegram lets a chat burst about 3); the outbox caps a
/// chat's backlog at 20 jobs, far above what this lets through.
fn default_burst() -> u32 {
    5
}
fn default_commands_per_minute() -> u32 {
    30
}
fn default_searches_per_minute() -> u32 {
    10
}

impl Default for PerUserLimits {
    fn default() -> Self {
        Self {
            messages_per_second: default_messages_per_second(),
            burst: default_burst(),
            commands_per_minute: default_commands_per_minute(),
            searches_per_minute: default_searches_per_minute(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum OnExceed {
    /// Excess messages are dropped without a word.
    DropSilently,
    /// Excess messages are dropped; the user is told once per window.
    #[default]
    WarnOnce,
}

/// Telegram's limits for one bot token: about 30 messages per second overall and one per
/// second per chat. Raising them only makes sense for bots Telegram granted more.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboundLimits {
    #[serde(default = "default_per_bot")]
    #[schemars(range(min = 1, max = 1000))]
    pub per_bot_per_second: u32,
    #[serde(default = "default_per_chat_per_minute")]
    #[schemars(range(min = 1, max = 600))]
    pub per_chat_per_minute: u32,
    /// The pace of a paid broadcast (`allow_paid_broadcast`: Telegram allows up to 1000
    /// messages a second for 0.1 Star each), on a budget of its own besides
    /// `perBotPerSecond`, so the bot's chats keep theirs. Each message costs 0.1 Star from the
    /// bot's balance.
    #[serde(default = "default_paid_broadcast_per_second")]
    #[schemars(range(min = 1, max = 1000))]
    pub paid_broadcast_per_second: u32,
}

fn default_per_bot() -> u32 {
    30
}
fn default_per_chat_per_minute() -> u32 {
    60
}
fn default_paid_broadcast_per_second() -> u32 {
    300
}

impl Default for OutboundLimits {
    fn default() -> Self {
        Self {
            per_bot_per_second: default_per_bot(),
            per_chat_per_minute: default_per_chat_per_minute(),
            paid_broadcast_per_second: default_paid_broadcast_per_second(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitPolicyStatus {
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many bots this policy currently selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_bots: Option<u32>,
}
