//! VIP expiry notices (docs/MONEY.md, "VIP expiry"): a reminder a day before, a notice when it
//! ended, each deadline once whichever replica sweeps; VIP itself ends on time.

use std::time::Duration;

use bot_runtime::chat::text_key::TextKey;
use bot_runtime::chat::vip;
use bot_runtime::store::money::NewPayment;

use crate::seam::Person;

use crate::seam::{Seam, text};

/// Grants `p` VIP days as a payment would.
async fn give_vip(s: &Seam, p: &Person, days: i64, charge: &str) {
    let payment = NewPayment {
        charge_id: charge.into(),
        bot: p.bot.clone(),
        user_id: p.id,
        quote_id: None,
        plan_id: "test".into(),
        stars: 1,
        vip_days: days,
        lock_credits: 0,
        now_ms: s.now_ms(),
        subscription_until_ms: None,
    };
    s.bot(&p.bot).store.apply_payment(&payment).await.expect("VIP granted");
}

const DAY_MS: i64 = 86_400_000;

#[tokio::test]
async fn a_member_is_reminded_a_day_before_and_told_when_it_ended_once_each() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let bot = s.bot("alpha");
    give_vip(&s, &ann, 3, "c1").await;
    assert!(vip::claim(bot, s.now_ms()).await.unwrap().is_empty(), "three days left: nothing yet");

    s.advance(Duration::from_millis((2 * DAY_MS + 3_600_000) as u64));
    let jobs = vip::claim(bot, s.now_ms()).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert!(text(&jobs[0]).starts_with(TextKey::VipEndsSoon.text(ann.lang).split('{').next().unwrap()), "{jobs:?}");
    assert_eq!(jobs[0].chat_id, ann.id);
    // Another replica sweeping at the same moment, or the next tick: nothing again.
    assert!(vip::claim(bot, s.now_ms()).await.unwrap().is_empty());

    s.advance(Duration::from_secs(24 * 3_600));
    assert!(!s.profile(&ann).await.unwrap().is_vip(s.now_ms()), "VIP ends on time");
    let jobs = vip::claim(bot, s.now_ms()).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(text(&jobs[0]), TextKey::VipEnded.text(ann.lang));
    assert!(vip::claim(bot, s.now_ms()).await.unwrap().is_empty());

    // Renewed: the new deadline gets its own reminder.
    give_vip(&s, &ann, 1, "c2").await;
    assert_eq!(vip::claim(bot, s.now_ms()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_member_the_bot_cannot_reach_is_not_reminded() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let bot = s.bot("alpha");
    give_vip(&s, &ann, 1, "c1").await;
    bot.store.set_reachable("alpha", ann.id, false).await.unwrap();
    assert!(vip::claim(bot, s.now_ms()).await.unwrap().is_empty());
}
