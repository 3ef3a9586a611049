//! Subscriptions (docs/MONEY.md, "Subscriptions"): a Monthly plan is sold through a Telegram
//! subscription invoice link at its full price; its payments keep VIP to the end of the period
//! paid for; renewals extend it; a cancelled subscription runs to its end.

use bot_runtime::chat::text_key::TextKey;
use botfleet_crds::vip_plan::Billing;

use crate::seam::{Person, Seam, buttons, text};
use crate::shop::shop_config;

/// Alpha's shop plus a Monthly plan (30 days and 5 credits for 300 Stars), which the shop's
/// campaigns also name.
async fn monthly_shop() -> (Seam, Person) {
    let mut cfg = shop_config();
    let mut monthly = cfg.plans[0].clone();
    monthly.id = "vip-monthly".into();
    monthly.title = "VIP monthly".into();
    monthly.price_stars = 300;
    monthly.grants.vip_days = 30;
    monthly.grants.lock_credits = 5;
    monthly.sort_order = 5;
    monthly.billing = Billing::Monthly;
    cfg.plans.insert(0, monthly);
    for c in &mut cfg.campaigns {
        c.plan_ids.push("vip-monthly".into());
    }
    let s = Seam::with(vec![cfg]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    (s, ann)
}

/// Ann taps Subscribe: the link the bot sent her.
async fn subscribe_link(s: &Seam, ann: &Person) -> String {
    let out = s.send(ann, "/vip").await;
    let shop = out.said(ann, TextKey::Shop);
    assert!(text(shop).contains("<b>VIP monthly</b> — 300 ⭐ every 30 days"), "no discount on a subscription: {}", text(shop));
    let out = s.press(ann, "buy:vip-monthly").await;
    let offer = out.said(ann, TextKey::SubscribeLink);
    offer.params["reply_markup"]["inline_keyboard"][0][0]["url"].as_str().expect("a link button").to_string()
}

#[tokio::test]
async fn a_monthly_plan_is_a_full_price_subscription_that_renews_and_runs_out_when_cancelled() {
    let (s, ann) = monthly_shop().await;
    let link = subscribe_link(&s, &ann).await;
    let (spec, first) = s.subscribe_in_fake(&ann, &link);
    assert_eq!((spec.amount, spec.subscription_period), (300, Some(2_592_000)), "Telegram's only period, at the list price");
    s.pre_checkout(&ann, &spec.payload, 300).await.1.expect("approved");
    let period_end = s.subscription_in_fake(&first).expires;
    let out = s.paid_subscription(&ann, &spec.payload, 300, &first, period_end, true).await;
    out.said(&ann, TextKey::Paid);
    assert_eq!(s.profile(&ann).await.unwrap().vip_until_ms, Some(period_end * 1000), "VIP to the end of the period paid");
    assert_eq!(s.bot("alpha").store.credits("alpha", ann.id).await.unwrap(), 5);

    // Telegram renews it a month later: a new charge, the same payload, no pre-checkout.
    let renewal = match s.sim.renew_subscription(&first).expect("renewed") {
        botfleet_tests::fake_telegram::PayOutcome::Paid { telegram_payment_charge_id, .. } => telegram_payment_charge_id,
        other => panic!("{other:?}"),
    };
    let next_end = s.subscription_in_fake(&first).expires;
    assert_eq!(next_end, period_end + 2_592_000);
    let out = s.paid_subscription(&ann, &spec.payload, 300, &renewal, next_end, false).await;
    out.said(&ann, TextKey::Paid);
    assert_eq!(s.profile(&ann).await.unwrap().vip_until_ms, Some(next_end * 1000));
    assert_eq!(s.bot("alpha").store.credits("alpha", ann.id).await.unwrap(), 10, "each period's credits");
    // The same renewal delivered again grants nothing more.
    s.paid_subscription(&ann, &spec.payload, 300, &renewal, next_end, false).await;
    assert_eq!(s.bot("alpha").store.credits("alpha", ann.id).await.unwrap(), 10);

    // /vip shows it with a Cancel button; cancelling asks Telegram, and it renews no more.
    let out = s.send(&ann, "/vip").await;
    let shop = out.said(&ann, TextKey::Shop);
    assert!(text(shop).contains("Subscription VIP monthly: renews on"), "{}", text(shop));
    assert!(buttons(shop).contains(&"sc:vip-monthly"), "{:?}", buttons(shop));
    let out = s.press(&ann, "sc:vip-monthly").await;
    out.said(&ann, TextKey::SubscriptionCancelled);
    assert!(s.subscription_in_fake(&first).canceled, "cancelled at Telegram");
    assert!(s.sim.renew_subscription(&first).is_err());
    assert_eq!(s.profile(&ann).await.unwrap().vip_until_ms, Some(next_end * 1000), "it runs to the end of the period paid");
    let out = s.send(&ann, "/vip").await;
    let shop = out.said(&ann, TextKey::Shop);
    assert!(text(shop).contains("cancelled; your VIP lasts until"), "{}", text(shop));
    assert!(!buttons(shop).contains(&"sc:vip-monthly"));
}
