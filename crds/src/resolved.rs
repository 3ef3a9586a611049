//! The resolved configuration of one bot: everything its runtime needs, computed by
//! [`crate::resolve::resolve`] from the resources that select the bot. The operator writes it
//! to the bot's ConfigMap (and its hash to status); `bot-runtime local` builds it from the
//! same YAML. The runtime re-reads it on change, without a restart.
//!
//! Prices are quoted from it at purchase time, to the second: campaign windows are carried
//! here, not applied by the operator, so a campaign starts and ends on time even while the
//! operator is down.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bot_instance::{Admins, Features, Ingress, Locale, LockChat, Matching, Moderation, Referrals};
use crate::discount_campaign::Audience;
use crate::pricing;
use crate::rate_limit_policy::{OnExceed, OutboundLimits, PerUserLimits};
use crate::vip_plan::{Billing, Grants, Perks};

/// Bumped when the format changes incompatibly; a runtime refuses versions it doesn't know.
pub const RESOLVED_CONFIG_VERSION: u32 = 1;

/// Where runtime pods find their secrets (mounted from Secrets; never part of the config).
pub const TOKEN_FILE: &str = "/etc/botfleet/token/token";
pub const WEBHOOK_SECRET_FILE: &str = "/etc/botfleet/webhook/secret";
/// The namespace's invoice-payload keys (see [`crate::payload_keys`]); the operator mounts them
/// into every runtime pod and names this file in `secrets.payloadKeyFile`.
pub const PAYLOAD_KEY_FILE: &str = "/etc/botfleet/payload-keys/keys";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedBotConfig {
    pub version: u32,
    pub bot: ResolvedBot,
    /// Plans the bot sells, in shop order.
    pub plans: Vec<ResolvedPlan>,
    /// Campaigns that apply to the bot and have not ended (scheduled or active).
    pub campaigns: Vec<ResolvedCampaign>,
    pub limits: ResolvedLimits,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedBot {
    /// The BotInstance's name: the bot's identity in the fleet (Redis keys, metrics label).
    pub name: String,
    pub namespace: String,
    pub pool: String,
    pub ingress: Ingress,
    pub features: Features,
    pub required_channels: Vec<String>,
    pub admins: Admins,
    pub moderation: Moderation,
    pub locale: Locale,
    pub matching: Matching,
    pub lock_chat: LockChat,
    pub referrals: Referrals,
    pub secrets: SecretFiles,
    /// The bot is being retired (its BotInstance deleted or scaled to zero): the runtime
    /// takes its users out of the pool's queues, ends their chats telling the partners, and
    /// starts no new ones. The operator sets it before it removes the pods. Absent in
    /// configurations written before it existed: not retiring.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retiring: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretFiles {
    pub token_file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret_file: Option<String>,
    /// The fleet's invoice-payload signing keys (docs/MONEY.md). The operator always sets it
    /// ([`PAYLOAD_KEY_FILE`], from the namespace's key Secret); the resolver leaves it out, as
    /// `bot-runtime local` does. Absent: the runtime reads `$PAYLOAD_KEY_FILE`, else generates
    /// a key per process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_key_file: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedPlan {
    /// The VipPlan's name.
    pub id: String,
    pub title: String,
    pub description: String,
    pub price_stars: u32,
    pub grants: Grants,
    pub perks: Perks,
    pub sort_order: i32,
    /// Absent in configurations written before subscriptions: one-time.
    #[serde(default, skip_serializing_if = "is_one_time")]
    pub billing: Billing,
}

fn is_one_time(b: &Billing) -> bool {
    *b == Billing::OneTime
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedCampaign {
    /// The DiscountCampaign's name.
    pub id: String,
    pub percent_off: u8,
    /// Ids of the bot's plans it discounts.
    pub plan_ids: Vec<String>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub audience: Audience,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_redemptions: Option<u32>,
    /// The DiscountCampaign's uid: its redemption count is kept per namespace, name and uid,
    /// so a campaign deleted and re-created under the same name starts afresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl ResolvedCampaign {
    /// The key of the campaign's redemption count, fleet-wide: `<namespace>/<name>/<uid>`.
    pub fn cap_key(&self, namespace: &str) -> String {
        format!("{namespace}/{}/{}", self.id, self.uid.as_deref().unwrap_or("-"))
    }

    /// Active in [startsAt, endsAt).
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedLimits {
    pub per_user: PerUserLimits,
    pub on_exceed: OnExceed,
    pub admin_api_per_minute: BTreeMap<String, u32>,
    pub outbound: OutboundLimits,
}

/// Who is buying, as far as campaign audiences care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buyer {
    /// When the user first appeared in the fleet.
    pub first_seen: Timestamp,
    pub has_active_vip: bool,
}

/// A price offer for one plan at one instant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Quote {
    pub plan_id: String,
    pub base_stars: u32,
    pub price_stars: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_off: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
}

impl ResolvedBotConfig {
    /// The price of a plan now for this buyer: the best single active campaign whose audience
    /// includes the buyer and whose redemption cap is not reached; never stacked.
    pub fn quote(&self, plan_id: &str, now: Timestamp, buyer: Buyer, cap_reached: impl Fn(&str) -> bool) -> Option<Quote> {
        let plan = self.plans.iter().find(|p| p.id == plan_id)?;
        // A subscription's price is fixed at its first payment and charged at every renewal:
        // a campaign would discount it forever, so campaigns never apply to one.
        let discountable = plan.billing == Billing::OneTime;
        let best = self
            .campaigns
            .iter()
            .filter(|_| discountable)
            .filter(|c| c.is_active(now) && c.plan_ids.iter().any(|id| id == plan_id))
            .filter(|c| match c.audience {
                Audience::All => true,
                Audience::NewUsers => buyer.first_seen >= c.starts_at,
                Audience::NonVip => !buyer.has_active_vip,
            })
            .filter(|c| c.max_redemptions.is_none() || !cap_reached(&c.id))
            .filter_map(|c| pricing::discounted_price(plan.price_stars, c.percent_off).ok().map(|price| (price, c)))
            // Lowest price wins; among equal prices the earlier-ending campaign, then the name,
            // so the choice is the same on every replica.
            .min_by(|(pa, ca), (pb, cb)| pa.cmp(pb).then(ca.ends_at.cmp(&cb.ends_at)).then(ca.id.cmp(&cb.id)));
        Some(match best {
            Some((price, c)) => Quote {
                plan_id: plan.id.clone(),
                base_stars: plan.price_stars,
                price_stars: price,
                percent_off: Some(c.percent_off),
                campaign_id: Some(c.id.clone()),
            },
            None => Quote {
                plan_id: plan.id.clone(),
                base_stars: plan.price_stars,
                price_stars: plan.price_stars,
                percent_off: None,
                campaign_id: None,
            },
        })
    }

    /// A stable hash of the configuration (`sha256:` + 16 hex digits): equal configs, equal hashes.
    pub fn hash(&self) -> String {
        // serde_json writes struct fields in declaration order and BTreeMaps sorted: stable.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// The next instant at which some campaign starts or ends (to requeue / re-render then).
    pub fn next_window_edge(&self, now: Timestamp) -> Option<Timestamp> {
        self.campaigns.iter().flat_map(|c| [c.starts_at, c.ends_at]).filter(|t| *t > now).min()
    }
}
