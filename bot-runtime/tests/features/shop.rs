//! The shop and payments (docs/MONEY.md): the listing with a campaign's discount, Buy → an
//! invoice in Stars for a fresh quote, the pre-checkout's approvals and refusals, and a payment
//! applied exactly once.

use std::time::Duration;

use bot_runtime::chat::text_key::TextKey;
use bot_runtime::store::money::QUOTE_TTL_MS;
use botfleet_crds::discount_campaign::Audience;
use botfleet_crds::resolved::{ResolvedBotConfig, ResolvedCampaign, ResolvedPlan};
use botfleet_crds::vip_plan::{Grants, Perks};
use botfleet_tests::api_spec::ApiSpec;
use jiff::Timestamp;

use crate::seam::{Person, Seam, buttons, text};
use crate::support::{Mode, bot_config};

const DAY_MS: i64 = 86_400_000;

fn plan(id: &str, title: &str, price: u32, vip_days: u32, lock_credits: u32, sort_order: i32) -> ResolvedPlan {
    ResolvedPlan {
        id: id.into(),
        title: title.into(),
        description: format!("{title}, for testing"),
        price_stars: price,
        grants: Grants { vip_days, lock_credits },
        perks: Perks { priority_matching: true, partner_gender_filter: true },
        sort_order,
    }
}

fn campaign(id: &str, percent_off: u8, plan_ids: &[&str], max_redemptions: Option<u32>) -> ResolvedCampaign {
    ResolvedCampaign {
        id: id.into(),
        percent_off,
        plan_ids: plan_ids.iter().map(|p| p.to_string()).collect(),
        // Around the seam's clock (2025-06-02 09:00 UTC).
        starts_at: "2025-06-01T00:00:00Z".parse::<Timestamp>().unwrap(),
        ends_at: "2025-06-30T00:00:00Z".parse::<Timestamp>().unwrap(),
        audience: Audience::All,
        max_redemptions,
    }
}

/// Alpha sells a week of VIP (250, 20% off now) and a month with credits (750; its 50% off
/// has a redemption cap, which this slice does not reserve, so it is not applied).
fn shop_config() -> ResolvedBotConfig {
    let mut cfg = bot_config("alpha", Mode::Polling, "");
    cfg.plans = vec![plan("vip-week", "VIP week", 250, 7, 0, 10), plan("vip-month", "VIP month", 750, 30, 10, 20)];
    cfg.campaigns = vec![campaign("spring", 20, &["vip-week"], None), campaign("capped", 50, &["vip-month"], Some(100))];
    cfg
}

async fn shop() -> (Seam, Person) {
    let s = Seam::with(vec![shop_config()]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    (s, ann)
}

/// Ann taps Buy on `plan`: the invoice's payload.
async fn buy(s: &Seam, ann: &Person, plan: &str) -> String {
    s.send(ann, "/vip").await.said(ann, TextKey::Shop);
    let out = s.press(ann, &format!("buy:{plan}")).await;
    let invoice = out.to(ann).into_iter().find(|j| j.method == "sendInvoice").unwrap_or_else(|| panic!("no invoice:\n{}", out.listing()));
    invoice.params["payload"].as_str().expect("a payload").to_string()
}

#[tokio::test]
async fn the_shop_lists_plans_in_order_with_the_campaign_discount_struck_through() {
    let (s, ann) = shop().await;
    let out = s.send(&ann, "/vip").await;
    let shop = out.said(&ann, TextKey::Shop);
    let body = text(shop);
    assert!(body.contains("<b>VIP week</b> — <s>250</s> 200 ⭐ (−20%)"), "{body}");
    assert!(body.contains("<b>VIP month</b> — 750 ⭐"), "a capped campaign is not applied yet: {body}");
    assert!(body.find("VIP week") < body.find("VIP month"), "sort order: {body}");
    assert!(body.contains(&TextKey::ShopVipNone.text(ann.lang)), "{body}");
    assert_eq!(buttons(shop), vec!["buy:vip-week", "buy:vip-month"]);
    // The menu's VIP button shows the same.
    s.tap(&ann, TextKey::MenuVip).await.said(&ann, TextKey::Shop);
}

#[tokio::test]
async fn buy_sends_an_invoice_in_stars_with_one_price_for_a_fresh_quote() {
    let (s, ann) = shop().await;
    s.send(&ann, "/vip").await;
    let out = s.press(&ann, "buy:vip-week").await;
    let invoice = out.to(&ann).into_iter().find(|j| j.method == "sendInvoice").expect("an invoice");
    let p = &invoice.params;
    assert_eq!(p["currency"], "XTR");
    assert_eq!(p["prices"].as_array().map(Vec::len), Some(1));
    assert_eq!(p["prices"][0]["amount"], 200);
    assert_eq!(p["title"], "VIP week");
    assert!(p["description"].as_str().unwrap().contains("7 days of VIP"), "{p}");
    assert!(!p["start_parameter"].as_str().unwrap_or_default().is_empty());
    assert_eq!(ApiSpec::load().expect("Bot API spec").check_request("sendInvoice", p), Ok(()));

    let payload = p["payload"].as_str().unwrap();
    let id = payload.strip_prefix("q:").expect("the payload names a quote");
    let quote = s.bot("alpha").store.quote("alpha", id).await.unwrap().expect("the quote is stored");
    assert_eq!((quote.user_id, quote.price_stars, quote.base_stars), (ann.id, 200, 250));
    assert_eq!(quote.campaign_id.as_deref(), Some("spring"));
    assert_eq!(quote.expires_ms - quote.created_ms, QUOTE_TTL_MS);

    // A plan that is no longer sold: the button says so, no invoice.
    let out = s.press_on(&ann, 1, "buy:vip-year").await;
    assert!(out.jobs.is_empty(), "{}", out.listing());
    assert_eq!(out.answer, Some(TextKey::PlanGone.text(ann.lang)));
}

#[tokio::test]
async fn pre_checkout_approves_a_good_quote_once_and_refuses_the_rest_with_a_reason() {
    let (s, ann) = shop().await;
    let bob = s.onboarded("alpha", "Bob", "m", 30).await;
    let payload = buy(&s, &ann, "vip-week").await;

    // A forwarded invoice paid by someone else.
    let (_, answer) = s.pre_checkout(&bob, &payload, 200).await;
    assert_eq!(answer, Err(TextKey::PayRefusedNotYours.text(bob.lang)));
    // A forged payload, a wrong amount.
    assert_eq!(s.pre_checkout(&ann, "q:0123456789abcdef01234567", 200).await.1, Err(TextKey::PayRefusedUnknown.text(ann.lang)));
    assert_eq!(s.pre_checkout(&ann, &payload, 1).await.1, Err(TextKey::PayRefusedAmount.text(ann.lang)));

    let (out, answer) = s.pre_checkout(&ann, &payload, 200).await;
    assert_eq!(answer, Ok(()));
    assert!(out.jobs.is_empty(), "the answer is inline, not an outbox job: {}", out.listing());
    // The same quote in a second checkout: used.
    assert_eq!(s.pre_checkout(&ann, &payload, 200).await.1, Err(TextKey::PayRefusedUsed.text(ann.lang)));

    // Past 15 minutes: expired.
    let late = buy(&s, &ann, "vip-week").await;
    s.advance(Duration::from_millis(QUOTE_TTL_MS as u64));
    assert_eq!(s.pre_checkout(&ann, &late, 200).await.1, Err(TextKey::PayRefusedExpired.text(ann.lang)));

    // A banned buyer.
    let fresh = buy(&s, &ann, "vip-week").await;
    s.fleet.store.restrict(ann.id, Some(i64::MAX / 2), s.now_ms()).await.unwrap();
    assert_eq!(s.pre_checkout(&ann, &fresh, 200).await.1, Err(TextKey::PayRefusedRestricted.text(ann.lang)));
}

#[tokio::test]
async fn a_plan_withdrawn_after_the_invoice_is_refused_at_checkout() {
    let mut cfg = shop_config();
    let s = Seam::with(vec![cfg.clone()]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let payload = buy(&s, &ann, "vip-week").await;
    cfg.plans.retain(|p| p.id != "vip-week");
    s.reconfigure(cfg);
    assert_eq!(s.pre_checkout(&ann, &payload, 200).await.1, Err(TextKey::PayRefusedPlanGone.text(ann.lang)));
}

#[tokio::test]
async fn a_payment_grants_once_even_when_delivered_again_in_another_update() {
    let (s, ann) = shop().await;
    let payload = buy(&s, &ann, "vip-month").await;
    assert_eq!(s.pre_checkout(&ann, &payload, 750).await.1, Ok(()));
    let out = s.paid(&ann, &payload, 750, "stxch_1").await;
    let paid = out.said(&ann, TextKey::Paid);
    assert!(text(paid).contains("VIP month") && text(paid).contains("Lock-chat credits: 10."), "{}", text(paid));
    let after = s.profile(&ann).await.unwrap();
    let until = after.vip_until_ms.expect("VIP granted");
    assert_eq!(until, s.now_ms() + 30 * DAY_MS);
    let store = &s.bot("alpha").store;
    assert_eq!(store.credits("alpha", ann.id).await.unwrap(), 10);

    // The same payment in a different update (another replica, a redelivery): the same
    // confirmation, nothing more granted.
    let again = s.paid(&ann, &payload, 750, "stxch_1").await;
    assert_eq!(text(again.said(&ann, TextKey::Paid)), text(paid));
    assert_eq!(s.profile(&ann).await.unwrap().vip_until_ms, Some(until));
    assert_eq!(store.credits("alpha", ann.id).await.unwrap(), 10);
    assert_eq!(store.payments_of("alpha", ann.id, 10).await.unwrap().len(), 1);

    // The quote is used: no second checkout. A second purchase stacks.
    assert_eq!(s.pre_checkout(&ann, &payload, 750).await.1, Err(TextKey::PayRefusedUsed.text(ann.lang)));
    let week = buy(&s, &ann, "vip-week").await;
    assert_eq!(s.pre_checkout(&ann, &week, 200).await.1, Ok(()));
    s.paid(&ann, &week, 200, "stxch_2").await.said(&ann, TextKey::Paid);
    assert_eq!(s.profile(&ann).await.unwrap().vip_until_ms, Some(until + 7 * DAY_MS));

    // /history lists both; the shop shows the VIP.
    let history = s.send(&ann, "/history").await;
    let listing = text(history.said(&ann, TextKey::History)).to_string();
    assert!(listing.contains("VIP week — 200 ⭐") && listing.contains("VIP month — 750 ⭐"), "{listing}");
    s.send(&ann, "/vip").await.said(&ann, TextKey::Shop);
}

#[tokio::test]
async fn paysupport_terms_and_history_work_at_any_stage() {
    let s = Seam::with(vec![shop_config()]).await;
    let newcomer = s.person("alpha", "Cleo", bot_runtime::texts::Lang::Ru);
    s.send(&newcomer, "/paysupport").await.said(&newcomer, TextKey::PaySupport);
    s.send(&newcomer, "/terms").await.said(&newcomer, TextKey::SaleTerms);
    s.send(&newcomer, "/history").await.said(&newcomer, TextKey::HistoryEmpty);
    // No admins on this bot: a question can't be passed on, and the user is told so.
    s.send(&newcomer, "/paysupport where is my VIP").await.said(&newcomer, TextKey::PaySupportUnavailable);
}
