//! The resolver: one pure function from a bot's resources to its configuration, and the
//! quoting rules the runtime applies with it.

use std::path::PathBuf;

use botfleet_crds::bot_instance::{BotInstance, IngressMode};
use botfleet_crds::discount_campaign::{Audience, CampaignState, DiscountCampaign};
use botfleet_crds::rate_limit_policy::{OnExceed, RateLimitPolicy};
use botfleet_crds::resolve::{ResolveError, campaign_state, resolve};
use botfleet_crds::resolved::{Buyer, ResolvedCampaign, TOKEN_FILE, WEBHOOK_SECRET_FILE};
use botfleet_crds::vip_plan::VipPlan;
use jiff::Timestamp;
use serde_json::{Value, json};

struct Fleet {
    bots: Vec<BotInstance>,
    plans: Vec<VipPlan>,
    campaigns: Vec<DiscountCampaign>,
    policies: Vec<RateLimitPolicy>,
}

/// The samples of config/samples, all placed in namespace "demo" as `kubectl apply -n demo` would.
fn fleet() -> Fleet {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/samples");
    let mut f = Fleet { bots: vec![], plans: vec![], campaigns: vec![], policies: vec![] };
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let mut v: Value = serde::Deserialize::deserialize(doc).unwrap();
            if v.is_null() {
                continue;
            }
            v["metadata"]["namespace"] = json!("demo");
            match v["kind"].as_str().unwrap() {
                "BotInstance" => f.bots.push(serde_json::from_value(v).unwrap()),
                "VipPlan" => f.plans.push(serde_json::from_value(v).unwrap()),
                "DiscountCampaign" => f.campaigns.push(serde_json::from_value(v).unwrap()),
                "RateLimitPolicy" => f.policies.push(serde_json::from_value(v).unwrap()),
                k => panic!("{k}"),
            }
        }
    }
    f.bots.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    f
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const BEFORE: &str = "2026-11-22T12:00:00Z";
const START: &str = "2026-11-27T00:00:00Z";
const END: &str = "2026-11-30T23:59:59Z";

fn anyone() -> Buyer {
    Buyer { first_seen: t("2025-01-01T00:00:00Z"), has_active_vip: false }
}

#[test]
fn a_sample_bot_resolves_with_its_plans_campaign_and_limits() {
    let f = fleet();
    let r = resolve(&f.bots[0], &f.plans, &f.campaigns, &f.policies, t(BEFORE)).unwrap();
    let c = &r.config;
    assert_eq!((c.bot.name.as_str(), c.bot.namespace.as_str(), c.bot.pool.as_str()), ("alpha", "demo", "eu-chat"));
    assert_eq!(c.bot.ingress.mode, IngressMode::Webhook);
    assert_eq!(c.bot.secrets.token_file, TOKEN_FILE);
    assert_eq!(c.bot.secrets.webhook_secret_file.as_deref(), Some(WEBHOOK_SECRET_FILE));
    let ids: Vec<&str> = c.plans.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["vip-week", "vip-month", "lock-credits-10"], "shop order by sortOrder");
    assert_eq!(c.campaigns.len(), 1);
    assert_eq!(c.campaigns[0].plan_ids, ["vip-week", "vip-month"], "credits are not discounted");
    assert_eq!(c.limits.per_user.messages_per_second, 1);
    assert_eq!(c.limits.admin_api_per_minute["/api/v1/broadcasts"], 10);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.requeue_at, Some(t(START)), "requeue at the campaign's start");
    // The second bot of the pool shares plans but keeps its own settings.
    let beta = resolve(&f.bots[1], &f.plans, &f.campaigns, &f.policies, t(BEFORE)).unwrap();
    assert_eq!(beta.config.bot.pool, "eu-chat");
    assert!(!beta.config.bot.features.referrals);
    assert_eq!(beta.config.bot.lock_chat.options.len(), 2);
}

#[test]
fn a_campaign_applies_exactly_inside_its_window() {
    let f = fleet();
    let c = resolve(&f.bots[0], &f.plans, &f.campaigns, &f.policies, t(BEFORE)).unwrap().config;
    let price = |at: &str| c.quote("vip-week", t(at), anyone(), |_| false).unwrap();
    assert_eq!(price("2026-11-26T23:59:59Z").price_stars, 250, "a second before the start");
    let at_start = price(START);
    assert_eq!((at_start.price_stars, at_start.percent_off, at_start.campaign_id.as_deref()), (175, Some(30), Some("black-friday")));
    assert_eq!(price("2026-11-30T23:59:58Z").price_stars, 175, "a second before the end");
    assert_eq!(price(END).price_stars, 250, "the end is exclusive");
    let credits = c.quote("lock-credits-10", t(START), anyone(), |_| false).unwrap();
    assert_eq!(credits.price_stars, 50, "plans outside the campaign's selector keep their price");
    assert!(c.quote("no-such-plan", t(START), anyone(), |_| false).is_none());
}

fn campaign(id: &str, percent: u8, audience: Audience, cap: Option<u32>) -> ResolvedCampaign {
    ResolvedCampaign {
        id: id.into(),
        percent_off: percent,
        plan_ids: vec!["vip-week".into()],
        starts_at: t(START),
        ends_at: t(END),
        audience,
        max_redemptions: cap,
        uid: None,
    }
}

#[test]
fn the_best_single_discount_wins_and_nothing_stacks() {
    let f = fleet();
    let mut c = resolve(&f.bots[0], &f.plans, &f.campaigns, &f.policies, t(BEFORE)).unwrap().config;
    c.campaigns = vec![
        campaign("ten", 10, Audience::All, None),
        campaign("forty", 40, Audience::All, None),
        campaign("twenty", 20, Audience::All, None),
    ];
    let q = c.quote("vip-week", t(START), anyone(), |_| false).unwrap();
    assert_eq!((q.price_stars, q.campaign_id.as_deref()), (150, Some("forty")), "250 × 0.6, not 250 × 0.9 × 0.6 × 0.8");
}

#[test]
fn prices_round_down_and_never_fall_below_one_star() {
    let mut f = fleet();
    f.plans[0].spec.price_stars = 99;
    let mut c = resolve(&f.bots[0], &f.plans, &f.campaigns, &f.policies, t(BEFORE)).unwrap().config;
    let id = f.plans[0].metadata.name.clone().unwrap();
    c.campaigns = vec![ResolvedCampaign { plan_ids: vec![id.clone()], ..campaign("x", 15, Audience::All, None) }];
    assert_eq!(c.quote(&id, t(START), anyone(), |_| false).unwrap().price_stars, 84, "99 × 0.85 = 84.15");
    c.plans.iter_mut().find(|p| p.id == id).unwrap().price_stars = 1;
    c.campaigns[0].percent_off = 90;
    assert_eq!(c.quote(&id, t(START), anyone(), |_| false).unwrap().price_stars, 1);
}

#[test]
fn audiences_and_redemption_caps_limit_who_gets_the_discount() {
    let f = fleet();
    let mut c = resolve(&f.bots[0], &f.plans, &f.campaigns, &f.policies, t(BEFORE)).unwrap().config;
    c.campaigns = vec![campaign("newcomers", 50, Audience::NewUsers, None)];
    let newcomer = Buyer { first_seen: t("2026-11-28T10:00:00Z"), has_active_vip: false };
    assert_eq!(c.quote("vip-week", t("2026-11-29T00:00:00Z"), newcomer, |_| false).unwrap().price_stars, 125);
    assert_eq!(c.quote("vip-week", t("2026-11-29T00:00:00Z"), anyone(), |_| false).unwrap().price_stars, 250);
    c.campaigns = vec![campaign("winback", 50, Audience::NonVip, Some(100))];
    let vip = Buyer { has_active_vip: true, ..anyone() };
    assert_eq!(c.quote("vip-week", t(START), vip, |_| false).unwrap().price_stars, 250);
    assert_eq!(c.quote("vip-week", t(START), anyone(), |_| false).unwrap().price_stars, 125);
    assert_eq!(c.quote("vip-week", t(START), anyone(), |id| id == "winback").unwrap().price_stars, 250, "cap reached");
}

#[test]
fn ended_campaigns_drop_out_and_the_requeue_follows_the_next_edge() {
    let f = fleet();
    let during = resolve(&f.bots[0], &f.plans, &f.campaigns, &f.policies, t("2026-11-28T00:00:00Z")).unwrap();
    assert_eq!(during.config.campaigns.len(), 1);
    assert_eq!(during.requeue_at, Some(t(END)));
    let after = resolve(&f.bots[0], &f.plans, &f.campaigns, &f.policies, t(END)).unwrap();
    assert!(after.config.campaigns.is_empty());
    assert_eq!(after.requeue_at, None);
    assert_ne!(during.hash, after.hash);
    assert_eq!(campaign_state(&f.campaigns[0], t(BEFORE)), Ok(CampaignState::Scheduled));
    assert_eq!(campaign_state(&f.campaigns[0], t(START)), Ok(CampaignState::Active));
    assert_eq!(campaign_state(&f.campaigns[0], t(END)), Ok(CampaignState::Expired));
}

#[test]
fn invalid_campaigns_are_reported_not_silently_ignored() {
    let mut f = fleet();
    f.campaigns[0].spec.ends_at = "2026-11-01T00:00:00Z".into();
    let mut bad_percent = f.campaigns[0].clone();
    bad_percent.metadata.name = Some("greedy".into());
    bad_percent.spec.ends_at = END.into();
    bad_percent.spec.percent_off = 120;
    f.campaigns.push(bad_percent);
    let mut garbled = f.campaigns[1].clone();
    garbled.metadata.name = Some("garbled".into());
    garbled.spec.starts_at = "next friday".into();
    f.campaigns.push(garbled);
    let r = resolve(&f.bots[0], &f.plans, &f.campaigns, &f.policies, t(BEFORE)).unwrap();
    assert!(r.config.campaigns.is_empty());
    let named: Vec<(&str, &str)> = r.findings.iter().map(|x| (x.kind, x.name.as_str())).collect();
    assert_eq!(named, [("DiscountCampaign", "black-friday"), ("DiscountCampaign", "greedy"), ("DiscountCampaign", "garbled")]);
    assert!(r.findings[0].message.contains("must be after"), "{}", r.findings[0].message);
}

#[test]
fn only_selected_enabled_same_namespace_resources_count() {
    let mut f = fleet();
    f.plans[1].spec.enabled = false;
    f.plans[2].metadata.namespace = Some("other".into());
    let mut foreign = f.plans[0].clone();
    foreign.metadata.name = Some("for-others".into());
    foreign.spec.bot_selector.match_labels.insert("brand".into(), "gamma".into());
    f.plans.push(foreign);
    let r = resolve(&f.bots[0], &f.plans, &f.campaigns, &f.policies, t(BEFORE)).unwrap();
    let ids: Vec<&str> = r.config.plans.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["vip-week"]);
}

#[test]
fn several_policies_merge_to_the_strictest_limits() {
    let mut f = fleet();
    let mut strict = f.policies[0].clone();
    strict.metadata.name = Some("zz-strict".into());
    strict.spec.per_user.messages_per_second = 1;
    strict.spec.outbound.per_bot_per_second = 20;
    strict.spec.on_exceed = OnExceed::DropSilently;
    strict.spec.admin_api_per_minute.insert("/api/v1/broadcasts".into(), 2);
    f.policies.push(strict);
    let l = resolve(&f.bots[0], &f.plans, &f.campaigns, &f.policies, t(BEFORE)).unwrap().config.limits;
    assert_eq!(l.per_user.messages_per_second, 1);
    assert_eq!(l.per_user.burst, 5);
    assert_eq!(l.outbound.per_bot_per_second, 20);
    assert_eq!(l.admin_api_per_minute["/api/v1/broadcasts"], 2);
    assert_eq!(l.admin_api_per_minute["/api/v1/users"], 120);
    assert_eq!(l.on_exceed, OnExceed::WarnOnce, "behaviour from the first policy by name");
    let none = resolve(&f.bots[0], &f.plans, &f.campaigns, &[], t(BEFORE)).unwrap().config.limits;
    assert_eq!((none.outbound.per_bot_per_second, none.outbound.per_chat_per_minute), (30, 60), "Telegram's defaults");
}

#[test]
fn the_hash_is_stable_and_moves_with_any_change() {
    let mut f = fleet();
    let a = resolve(&f.bots[0], &f.plans, &f.campaigns, &f.policies, t(BEFORE)).unwrap();
    let b = resolve(&f.bots[0], &f.plans, &f.campaigns, &f.policies, t(BEFORE)).unwrap();
    assert_eq!(a.hash, b.hash);
    assert!(a.hash.starts_with("sha256:"));
    f.plans[0].spec.price_stars += 1;
    let c = resolve(&f.bots[0], &f.plans, &f.campaigns, &f.policies, t(BEFORE)).unwrap();
    assert_ne!(a.hash, c.hash);
}

#[test]
fn bots_that_bypassed_the_schema_get_clear_errors() {
    let f = fleet();
    let mut bot = f.bots[0].clone();
    bot.spec.ingress.public_url = None;
    assert_eq!(resolve(&bot, &[], &[], &[], t(BEFORE)).unwrap_err(), ResolveError::WebhookWithoutUrl);
    let mut bot = f.bots[0].clone();
    bot.spec.replicas = Some(2);
    assert_eq!(resolve(&bot, &[], &[], &[], t(BEFORE)).unwrap_err(), ResolveError::ReplicasAndAutoscaling);
    let mut bot = f.bots[1].clone();
    bot.metadata.name = None;
    assert_eq!(resolve(&bot, &[], &[], &[], t(BEFORE)).unwrap_err(), ResolveError::Unnamed);
}

#[test]
fn the_resolved_config_round_trips_as_the_runtime_reads_it() {
    let f = fleet();
    let r = resolve(&f.bots[0], &f.plans, &f.campaigns, &f.policies, t(BEFORE)).unwrap();
    let yaml = serde_yaml::to_string(&r.config).unwrap();
    let back: botfleet_crds::resolved::ResolvedBotConfig = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(back, r.config);
    assert_eq!(back.hash(), r.hash);
    assert!(yaml.contains("startsAt: 2026-11-27T00:00:00Z"), "{yaml}");
}
