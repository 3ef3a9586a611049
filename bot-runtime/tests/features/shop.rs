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
        billing: Default::default(),
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
        uid: Some(format!("uid-{id}")),
    }
}

/// The fleet's payload key file (two keys: a rotation in progress).
fn key_file() -> String {
    static FILE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("botfleet-payload-keys-{}", std::process::id()));
        std::fs::write(
            &path,
            "# new key first\nfeatures-new-key-0123456789abcdef0123456789\nfeatures-old-key-0123456789abcdef0123456789\n",
        )
        .expect("write the key file");
        path.display().to_string()
    })
    .clone()
}

/// Alpha sells a week of VIP (250, 20% off now) and a month with credits (750, 50% off for
/// the first 100 buyers). Its payloads are signed with the key file's first key.
pub(crate) fn shop_config() -> ResolvedBotConfig {
    let mut cfg = bot_config("alpha", Mode::Polling, "");
    cfg.bot.secrets.payload_key_file = Some(key_file());
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
pub(crate) async fn buy(s: &Seam, ann: &Person, plan: &str) -> String {
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
    assert!(body.contains("<b>VIP month</b> — <s>750</s> 375 ⭐ (−50%)"), "a capped campaign with slots left applies: {body}");
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
    assert!(payload.len() <= 128, "Telegram's payload limit: {payload}");
    let bot = s.bot("alpha");
    let id = bot.payload_keys.verify(&bot.id.to_string(), payload).expect("a payload signed by the fleet's key");
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
    // A forged (unsigned) payload, a wrong amount.
    assert_eq!(s.pre_checkout(&ann, "q:0123456789abcdef01234567", 200).await.1, Err(TextKey::PayRefusedTampered.text(ann.lang)));
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
    assert_eq!(s.pre_checkout(&ann, &payload, 375).await.1, Ok(()));
    let out = s.paid(&ann, &payload, 375, "stxch_1").await;
    let paid = out.said(&ann, TextKey::Paid);
    assert!(text(paid).contains("VIP month") && text(paid).contains("Lock-chat credits: 10."), "{}", text(paid));
    let after = s.profile(&ann).await.unwrap();
    let until = after.vip_until_ms.expect("VIP granted");
    assert_eq!(until, s.now_ms() + 30 * DAY_MS);
    let store = &s.bot("alpha").store;
    assert_eq!(store.credits("alpha", ann.id).await.unwrap(), 10);

    // The same payment in a different update (another replica, a redelivery): the same
    // confirmation, nothing more granted.
    let again = s.paid(&ann, &payload, 375, "stxch_1").await;
    assert_eq!(text(again.said(&ann, TextKey::Paid)), text(paid));
    assert_eq!(s.profile(&ann).await.unwrap().vip_until_ms, Some(until));
    assert_eq!(store.credits("alpha", ann.id).await.unwrap(), 10);
    assert_eq!(store.payments_of("alpha", ann.id, 10).await.unwrap().len(), 1);

    // The quote is used: no second checkout. A second purchase stacks.
    assert_eq!(s.pre_checkout(&ann, &payload, 375).await.1, Err(TextKey::PayRefusedUsed.text(ann.lang)));
    let week = buy(&s, &ann, "vip-week").await;
    assert_eq!(s.pre_checkout(&ann, &week, 200).await.1, Ok(()));
    s.paid(&ann, &week, 200, "stxch_2").await.said(&ann, TextKey::Paid);
    assert_eq!(s.profile(&ann).await.unwrap().vip_until_ms, Some(until + 7 * DAY_MS));

    // /history lists both; the shop shows the VIP.
    let history = s.send(&ann, "/history").await;
    let listing = text(history.said(&ann, TextKey::History)).to_string();
    assert!(listing.contains("VIP week — 200 ⭐") && listing.contains("VIP month — 375 ⭐"), "{listing}");
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

#[tokio::test]
async fn a_tampered_or_foreign_payload_is_refused_at_checkout_and_claims_nothing() {
    let (s, ann) = shop().await;
    let payload = buy(&s, &ann, "vip-week").await;
    let (id, tag) = payload.strip_prefix("q:").unwrap().split_once('.').unwrap();
    let refused = Err(TextKey::PayRefusedTampered.text(ann.lang));
    // Another quote id under this tag; this id with another tag; no tag; not ours at all.
    let other_id = format!("q:{}{}.{tag}", &id[..id.len() - 1], if id.ends_with('0') { '1' } else { '0' });
    let other_tag = format!("q:{id}.{}", "0".repeat(64));
    for forged in [other_id, other_tag, format!("q:{id}"), "vip".to_string()] {
        assert_eq!(s.pre_checkout(&ann, &forged, 200).await.1, refused, "{forged}");
    }
    // A payload signed with a key the fleet does not have.
    let foreign = bot_runtime::payload::PayloadKeys::parse("someone-elses-key-0123456789abcdef0123456789").unwrap();
    let bot = s.bot("alpha");
    assert_eq!(s.pre_checkout(&ann, &foreign.sign(&bot.id.to_string(), id), 200).await.1, refused);
    // Nothing was claimed: the genuine payload still checks out.
    assert_eq!(s.pre_checkout(&ann, &payload, 200).await.1, Ok(()));
    // Signed with the second (older) key of the file: accepted during a rotation.
    let old = bot_runtime::payload::PayloadKeys::parse("features-old-key-0123456789abcdef0123456789").unwrap();
    let second = buy(&s, &ann, "vip-week").await;
    let second_id = bot.payload_keys.verify(&bot.id.to_string(), &second).unwrap().to_string();
    assert_eq!(s.pre_checkout(&ann, &old.sign(&bot.id.to_string(), &second_id), 200).await.1, Ok(()));
}

/// Alpha with one campaign capped at `cap` on the month plan.
async fn capped_shop(cap: u32) -> Seam {
    let mut cfg = shop_config();
    cfg.campaigns = vec![campaign("capped", 50, &["vip-month"], Some(cap))];
    Seam::with(vec![cfg]).await
}

#[tokio::test]
async fn a_capped_campaign_reserves_a_slot_at_checkout_and_releases_it_if_nobody_pays() {
    let s = capped_shop(1).await;
    let (ann, bob, cleo) = (
        s.onboarded("alpha", "Ann", "f", 25).await,
        s.onboarded("alpha", "Bob", "m", 30).await,
        s.onboarded("alpha", "Cleo", "f", 28).await,
    );
    // Ann and Bob both get the discount at Buy (no slot is held yet)...
    let ann_invoice = buy(&s, &ann, "vip-month").await;
    let bob_invoice = buy(&s, &bob, "vip-month").await;
    // ...Ann checks out first and holds the only slot; Bob's checkout is refused, clearly.
    assert_eq!(s.pre_checkout(&ann, &ann_invoice, 375).await.1, Ok(()));
    assert_eq!(s.pre_checkout(&bob, &bob_invoice, 375).await.1, Err(TextKey::PayRefusedCapReached.text(bob.lang)));
    // Past the cap, Buy gives the full price and says why.
    s.send(&cleo, "/vip").await;
    let out = s.press(&cleo, "buy:vip-month").await;
    out.said(&cleo, TextKey::ShopCapReached);
    let invoice = out.to(&cleo).into_iter().find(|j| j.method == "sendInvoice").expect("an invoice");
    assert_eq!(invoice.params["prices"][0]["amount"], 750);
    let metrics = s.bot("alpha").metrics().render();
    assert!(metrics.contains("botfleet_campaign_redemptions{campaign=\"capped\",namespace="), "{metrics}");

    // Ann never pays: after the hold the slot is free again, and Cleo gets the discount.
    s.advance(Duration::from_millis(bot_runtime::store::money::CAP_HOLD_MS as u64));
    let cleo_invoice = buy(&s, &cleo, "vip-month").await;
    assert_eq!(s.pre_checkout(&cleo, &cleo_invoice, 375).await.1, Ok(()));
    // Cleo pays, the payment is delivered twice: one slot, held for good.
    s.paid(&cleo, &cleo_invoice, 375, "stxch_c").await.said(&cleo, TextKey::Paid);
    s.paid(&cleo, &cleo_invoice, 375, "stxch_c").await.said(&cleo, TextKey::Paid);
    let store = &s.bot("alpha").store;
    let key = s.bot("alpha").cfg().campaigns[0].cap_key(&s.bot("alpha").id.namespace);
    s.advance(Duration::from_secs(3600));
    assert_eq!(store.campaign_redemptions(&key, s.now_ms()).await.unwrap(), 1);
    let out = s.press(&bob, "buy:vip-month").await;
    out.said(&bob, TextKey::ShopCapReached);
}

/// Alpha with an admin; Ann bought the month (30 days, 10 credits) through the fake Telegram.
async fn bought() -> (Seam, Person, Person, String, String) {
    let s = Seam::with(vec![shop_config()]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let admin = s.onboarded("alpha", "Ada", "f", 40).await;
    let mut cfg = shop_config();
    cfg.bot.admins.telegram_ids = vec![admin.id];
    s.reconfigure(cfg);
    let payload = buy(&s, &ann, "vip-month").await;
    assert_eq!(s.pre_checkout(&ann, &payload, 375).await.1, Ok(()));
    let charge = s.charge_in_fake(&ann, &payload, 375);
    s.paid(&ann, &payload, 375, &charge).await.said(&ann, TextKey::Paid);
    (s, ann, admin, payload, charge)
}

#[tokio::test]
async fn an_admin_refunds_a_payment_once_and_the_grant_is_reversed() {
    let (s, ann, admin, payload, charge) = bought().await;
    let store = &s.bot("alpha").store;
    assert!(s.profile(&ann).await.unwrap().is_vip(s.now_ms()));
    // Ann spends 4 credits (as a lock would).
    let spend = bot_runtime::store::money::LedgerEntry {
        idem_key: "lock:test".into(),
        bot: "alpha".into(),
        user_id: ann.id,
        delta: -4,
        reason: "lock".into(),
        reference: String::new(),
        created_ms: s.now_ms(),
    };
    store.append(&spend).await.unwrap();

    let out = s.send(&admin, &format!("/refund {charge}")).await;
    let done = text(out.said(&admin, TextKey::RefundDone)).to_string();
    assert!(done.contains(&charge) && done.contains("taken back: 6") && done.contains("spent (kept): 4"), "{done}");
    out.said(&ann, TextKey::RefundedBuyer);
    assert!(!s.profile(&ann).await.unwrap().is_vip(s.now_ms()), "the refunded 30 days are gone");
    assert_eq!(store.credits("alpha", ann.id).await.unwrap(), 0);
    assert!(s.star_transactions("alpha").iter().any(|t| t["id"] == charge.as_str() && t.get("receiver").is_some()));
    let history = s.send(&ann, "/history").await;
    assert!(text(history.said(&ann, TextKey::History)).contains(&TextKey::HistoryRefunded.text(ann.lang)));

    // Again, by the command or by Telegram's refunded_payment: nothing more.
    let again = s.send(&admin, &format!("/refund {charge}")).await;
    again.said(&admin, TextKey::RefundAlready);
    assert!(again.to(&ann).is_empty(), "{}", again.listing());
    let echoed = s.refunded(&ann, &payload, 375, &charge).await;
    assert!(echoed.to(&ann).is_empty(), "{}", echoed.listing());
    assert_eq!(store.credits("alpha", ann.id).await.unwrap(), 0);
    let transactions = s.star_transactions("alpha");
    assert_eq!(transactions.iter().filter(|t| t["id"] == charge.as_str() && t.get("receiver").is_some()).count(), 1);
}

#[tokio::test]
async fn refund_is_an_unknown_command_for_everyone_but_the_admins() {
    let (s, ann, _admin, _payload, charge) = bought().await;
    let out = s.send(&ann, &format!("/refund {charge}")).await;
    out.said(&ann, TextKey::UnknownCommand);
    assert!(s.profile(&ann).await.unwrap().is_vip(s.now_ms()));
    assert!(s.star_transactions("alpha").iter().all(|t| t.get("receiver").is_none()));
    // The admins see it in their menu.
    let menu = bot_runtime::chat::telegram_menu::command_list(ann.lang, true);
    assert!(menu.as_array().unwrap().iter().any(|c| c["command"] == "refund"));
}

#[tokio::test]
async fn a_refund_telegram_refuses_changes_nothing_and_the_admin_is_told_why() {
    let (s, ann, admin, _payload, charge) = bought().await;
    let until = s.profile(&ann).await.unwrap().vip_until_ms;
    s.set_star_balance("alpha", 0);
    let out = s.send(&admin, &format!("/refund {charge}")).await;
    let refused = text(out.said(&admin, TextKey::RefundRefused)).to_string();
    assert!(refused.contains("BALANCE_TOO_LOW"), "{refused}");
    assert!(out.to(&ann).is_empty(), "{}", out.listing());
    assert_eq!(s.profile(&ann).await.unwrap().vip_until_ms, until);
    assert_eq!(s.bot("alpha").store.credits("alpha", ann.id).await.unwrap(), 10);
    assert_eq!(s.bot("alpha").store.payment_of_charge("alpha", &charge).await.unwrap().unwrap().refunded_ms, None);
    // An unknown charge, and no charge at all.
    s.send(&admin, "/refund stxch_nope").await.said(&admin, TextKey::RefundUnknown);
    s.send(&admin, "/refund").await.said(&admin, TextKey::RefundUsage);
}

#[tokio::test]
async fn telegrams_own_refund_reverses_the_grant_once() {
    let (s, ann, _admin, payload, charge) = bought().await;
    let out = s.refunded(&ann, &payload, 375, &charge).await;
    out.said(&ann, TextKey::RefundedBuyer);
    assert!(!s.profile(&ann).await.unwrap().is_vip(s.now_ms()));
    assert_eq!(s.bot("alpha").store.credits("alpha", ann.id).await.unwrap(), 0);
    let again = s.refunded(&ann, &payload, 375, &charge).await;
    assert!(again.to(&ann).is_empty(), "{}", again.listing());
}
