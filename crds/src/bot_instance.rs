//! BotInstance: one Telegram bot, as a platform operator declares it.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Condition;

/// One anonymous-chat bot: where its token is, how Telegram reaches it, how it scales, which
/// matching pool it joins and how it behaves.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "botfleet.io",
    version = "v1alpha1",
    kind = "BotInstance",
    namespaced,
    status = "BotInstanceStatus",
    derive = "PartialEq",
    shortname = "bot",
    shortname = "bots",
    category = "botfleet",
    doc = "A Telegram anonymous-chat bot run by BotFleet",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Username", type_ = "string", json_path = ".status.username"),
    printcolumn(name = "Pool", type_ = "string", json_path = ".spec.pool", priority = 1),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.ingress.mode", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    cel
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.autoscaling) || !has(self.replicas)").message("set either replicas or autoscaling, not both"))]
pub struct BotInstanceSpec {
    /// The Secret (in this namespace) holding the bot token from @BotFather.
    pub token_secret_ref: SecretKeyRef,
    #[serde(default)]
    pub ingress: Ingress,
    /// Fixed number of runtime replicas (default 1). Mutually exclusive with autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Matching pool: users of every bot in the same pool are matched with each other.
    #[serde(default = "default_pool")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub pool: String,
    #[serde(default)]
    pub features: Features,
    /// Channels a user must join before chatting (@username or numeric chat id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10), inner(regex(pattern = r"^(@[A-Za-z][A-Za-z0-9_]{3,31}|-100[0-9]{5,15})$")))]
    pub required_channels: Vec<String>,
    pub admins: Admins,
    #[serde(default)]
    pub moderation: Moderation,
    #[serde(default)]
    pub locale: Locale,
    #[serde(default)]
    pub matching: Matching,
    #[serde(default)]
    pub lock_chat: LockChat,
    #[serde(default)]
    pub referrals: Referrals,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Overrides the runtime image the operator was installed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
}

fn default_pool() -> String {
    "default".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_token_key() -> String {
    "token".into()
}

/// How Telegram delivers updates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'Webhook' || has(self.publicUrl)").message("webhook mode needs publicUrl"))]
pub struct Ingress {
    #[serde(default)]
    pub mode: IngressMode,
    /// The public HTTPS base URL Telegram posts to; the operator registers
    /// `<publicUrl>/telegram/<bot name>` with a generated secret token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https://[^\s/$.?#][^\s]*$"), length(max = 2048))]
    pub public_url: Option<String>,
    /// Telegram's max_connections for the webhook (1–100).
    #[serde(default = "default_max_connections")]
    #[schemars(range(min = 1, max = 100))]
    pub max_connections: u32,
}

impl Default for Ingress {
    fn default() -> Self {
        Self { mode: IngressMode::Polling, public_url: None, max_connections: default_max_connections() }
    }
}

fn default_max_connections() -> u32 {
    40
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum IngressMode {
    /// Telegram posts updates to the runtime's Service through a public URL (production).
    Webhook,
    /// Runtimes long-poll getUpdates, one poller at a time (development, no public URL).
    #[default]
    Polling,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.maxReplicas >= self.minReplicas").message("maxReplicas must be at least minReplicas"))]
pub struct Autoscaling {
    #[schemars(range(min = 1, max = 100))]
    pub min_replicas: i32,
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,
    /// Target average CPU utilization in percent.
    #[serde(default = "default_cpu_target")]
    #[schemars(range(min = 10, max = 100))]
    pub target_cpu_utilization: i32,
}

fn default_cpu_target() -> i32 {
    70
}

/// What the bot offers; everything is on unless switched off.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Features {
    #[serde(default = "yes")]
    pub vip: bool,
    #[serde(default = "yes")]
    pub lock_chat: bool,
    #[serde(default = "yes")]
    pub referrals: bool,
    #[serde(default = "yes")]
    pub payments: bool,
    #[serde(default = "yes")]
    pub media_relay: bool,
}

fn yes() -> bool {
    true
}

impl Default for Features {
    fn default() -> Self {
        Self { vip: true, lock_chat: true, referrals: true, payments: true, media_relay: true }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Admins {
    /// Telegram user ids allowed in the dashboard and to use admin commands.
    #[schemars(length(min = 1, max = 100), inner(range(min = 1)))]
    pub telegram_ids: Vec<i64>,
    /// A chat that receives operational alerts from the bot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_chat_id: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Moderation {
    /// Users younger than this cannot use the bot.
    #[serde(default = "default_minimum_age")]
    #[schemars(range(min = 13, max = 99))]
    pub minimum_age: u8,
    /// A chat where relayed media is mirrored for moderators (users are told in the terms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_mirror_chat_id: Option<i64>,
    /// Reports within `windowHours` that restrict a user automatically.
    #[serde(default = "default_reports_threshold")]
    #[schemars(range(min = 1, max = 1000))]
    pub reports_to_restrict: u32,
    #[serde(default = "default_window_hours")]
    #[schemars(range(min = 1, max = 720))]
    pub window_hours: u32,
    #[serde(default = "default_restrict_hours")]
    #[schemars(range(min = 1, max = 8760))]
    pub restrict_hours: u32,
}

fn default_minimum_age() -> u8 {
    18
}
fn default_reports_threshold() -> u32 {
    3
}
fn default_window_hours() -> u32 {
    24
}
fn default_restrict_hours() -> u32 {
    24
}

impl Default for Moderation {
    fn default() -> Self {
        Self {
            minimum_age: default_minimum_age(),
            media_mirror_chat_id: None,
            reports_to_restrict: default_reports_threshold(),
            window_hours: default_window_hours(),
            restrict_hours: default_restrict_hours(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Locale {
    /// Language for users whose Telegram language has no translation.
    #[serde(default)]
    pub default: Language,
}

impl Default for Locale {
    fn default() -> Self {
        Self { default: Language::En }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    En,
    Ru,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Matching {
    /// Two users are not matched again within this many minutes.
    #[serde(default = "default_recent_minutes")]
    #[schemars(range(min = 0, max = 10080))]
    pub recent_partner_minutes: u32,
    /// A chat with no message for this long ends for both.
    #[serde(default = "default_idle_minutes")]
    #[schemars(range(min = 1, max = 1440))]
    pub idle_timeout_minutes: u32,
    /// A search ends after this many minutes without a match (the searcher is told and can
    /// search again), so someone who walked away is never matched hours later.
    #[serde(default = "default_max_search_minutes")]
    #[schemars(range(min = 1, max = 1440))]
    pub max_search_minutes: u32,
}

fn default_recent_minutes() -> u32 {
    20
}
fn default_idle_minutes() -> u32 {
    15
}
fn default_max_search_minutes() -> u32 {
    30
}

impl Default for Matching {
    fn default() -> Self {
        Self {
            recent_partner_minutes: default_recent_minutes(),
            idle_timeout_minutes: default_idle_minutes(),
            max_search_minutes: default_max_search_minutes(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LockChat {
    /// The lock durations users can choose and what each costs in lock credits.
    #[serde(default = "default_lock_options")]
    #[schemars(length(min = 1, max = 6))]
    pub options: Vec<LockOption>,
}

impl Default for LockChat {
    fn default() -> Self {
        Self { options: default_lock_options() }
    }
}

fn default_lock_options() -> Vec<LockOption> {
    vec![LockOption { minutes: 5, credits: 1 }, LockOption { minutes: 10, credits: 2 }, LockOption { minutes: 15, credits: 3 }]
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LockOption {
    #[schemars(range(min = 1, max = 120))]
    pub minutes: u32,
    #[schemars(range(min = 1, max = 1000))]
    pub credits: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Referrals {
    /// VIP days the referrer gets once a referee completes the profile.
    #[serde(default = "default_referral_days")]
    #[schemars(range(min = 0, max = 365))]
    pub reward_vip_days: u32,
    /// Share of each referee purchase credited to the referrer, in percent.
    #[serde(default = "default_purchase_share")]
    #[schemars(range(min = 0, max = 50))]
    pub purchase_share_percent: u32,
    /// How many Stars of that share make one lock credit (the share is converted at this rate
    /// and rounded down, per purchase).
    #[serde(default = "default_stars_per_credit")]
    #[schemars(range(min = 1, max = 10000))]
    pub stars_per_credit: u32,
}

fn default_referral_days() -> u32 {
    3
}
fn default_purchase_share() -> u32 {
    10
}
fn default_stars_per_credit() -> u32 {
    10
}

impl Default for Referrals {
    fn default() -> Self {
        Self {
            reward_vip_days: default_referral_days(),
            purchase_share_percent: default_purchase_share(),
            stars_per_credit: default_stars_per_credit(),
        }
    }
}

/// Container resources for the runtime pods (Kubernetes quantities).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu_limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(Ki|Mi|Gi|K|M|G)?$"))]
    pub memory_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(Ki|Mi|Gi|K|M|G)?$"))]
    pub memory_limit: Option<String>,
}

/// What the operator observed and did, for `kubectl get/describe`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BotInstanceStatus {
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// The bot's @username, from getMe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The Telegram bot id the token belongs to (getMe's id, the token's prefix). Two
    /// BotInstances with the same id are one Telegram bot: only the first one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_id: Option<i64>,
    /// `sha256:` and 12 hex digits of the token; never the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_fingerprint: Option<String>,
    /// Hash of the resolved configuration the runtimes were given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookStatus>,
    /// When the operator told the deleted bot's pods to retire (RFC 3339); the finalizer
    /// holds them while they take the bot's users out of the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_since: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookStatus {
    pub url: String,
    pub pending_update_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<String>,
}
