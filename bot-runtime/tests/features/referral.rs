//! Referrals (docs/MONEY.md, "Referrals"): the invite link, a newcomer counted once their
//! profile is complete, the referrer's share of purchases and its reversal on refund, and the
//! abuse cases that are withheld.

use bot_runtime::chat::text_key::TextKey;
use bot_runtime::texts::Lang;

use crate::seam::{Person, Seam, text};
use crate::shop::{buy, shop_config};
use crate::support::{Mode, bot_config, username};

const DAY_MS: i64 = 86_400_000;

/// Ann's invite code, read from the link `/invite` shows her.
async fn invite_code(s: &Seam, ann: &Person) -> String {
    let out = s.send(ann, "/invite").await;
    let body = text(out.said(ann, TextKey::Invite)).to_string();
    let prefix = format!("https://t.me/{}?start=ref_", username(&ann.bot));
    let at = body.find(&prefix).unwrap_or_else(|| panic!("no invite link in {body}"));
    body[at + prefix.len()..].chars().take_while(char::is_ascii_alphanumeric).collect()
}

/// Someone new who opens `code`'s link on `bot` and completes the profile; what the last step
/// (the age) produced.
async fn joins_through(s: &Seam, bot: &str, name: &str, code: &str) -> (Person, crate::seam::Out) {
    let p = s.person(bot, name, Lang::En);
    s.send(&p, &format!("/start ref_{code}")).await.said(&p, TextKey::Terms);
    s.press(&p, "terms:ok").await.said(&p, TextKey::AskGender);
    s.press(&p, "g:m").await.said(&p, TextKey::AskAge);
    let out = s.send(&p, "30").await;
    out.said(&p, TextKey::ProfileDone);
    (p, out)
}

async fn credits(s: &Seam, p: &Person) -> i64 {
    s.bot(&p.bot).store.credits(&p.bot, p.id).await.expect("the balance")
}

#[tokio::test]
async fn a_newcomer_through_the_link_counts_once_the_profile_is_done() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let code = invite_code(&s, &ann).await;
    assert_eq!(code.len(), 10, "a random code, never the Telegram id: {code}");
    assert!(!code.contains(&ann.id.to_string()));
    assert_eq!(invite_code(&s, &ann).await, code, "one code per member");

    let carl = s.person("alpha", "Carl", Lang::En);
    s.send(&carl, &format!("/start ref_{code}")).await.said(&carl, TextKey::Terms);
    assert_eq!(s.profile(&ann).await.unwrap().vip_until_ms, None, "not counted before the profile is complete");
    s.press(&carl, "terms:ok").await;
    s.press(&carl, "g:m").await;
    let out = s.send(&carl, "30").await;
    out.said(&carl, TextKey::ProfileDone);
    out.said(&ann, TextKey::ReferralRewarded);
    let until = s.profile(&ann).await.unwrap().vip_until_ms.expect("VIP granted");
    assert_eq!(until, s.now_ms() + 3 * DAY_MS, "the default 3 days");
    // Editing the profile later completes it again: nothing more.
    s.send(&carl, &format!("/start ref_{code}")).await;
    s.send(&carl, "/profile").await.said(&carl, TextKey::Profile);
    s.press(&carl, "prof:edit").await.said(&carl, TextKey::AskGender);
    s.press(&carl, "g:m").await;
    let out = s.send(&carl, "31").await;
    out.said(&carl, TextKey::ProfileDone);
    assert!(!out.says(&ann, TextKey::ReferralRewarded));
    assert_eq!(s.profile(&ann).await.unwrap().vip_until_ms, Some(until));

    let out = s.send(&ann, "/invite").await;
    let body = text(out.said(&ann, TextKey::Invite));
    assert!(body.contains("Joined: 1 · counted: 1"), "{body}");
}

#[tokio::test]
async fn opening_ones_own_link_never_counts() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let code = invite_code(&s, &ann).await;
    s.send(&ann, &format!("/start ref_{code}")).await;
    assert_eq!(s.profile(&ann).await.unwrap().vip_until_ms, None);
    let out = s.send(&ann, "/invite").await;
    assert!(text(out.said(&ann, TextKey::Invite)).contains("not counted: 1"), "flagged for admins");
}

#[tokio::test]
async fn someone_who_used_another_bot_of_the_fleet_is_not_new() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let code = invite_code(&s, &ann).await;
    let dave = s.onboarded("beta", "Dave", "m", 40).await;
    // Dave comes to alpha through Ann's link: known to the fleet already.
    let dave_on_alpha = dave.on("alpha");
    s.send(&dave_on_alpha, &format!("/start ref_{code}")).await.said(&dave_on_alpha, TextKey::Terms);
    s.press(&dave_on_alpha, "terms:ok").await;
    s.press(&dave_on_alpha, "g:m").await;
    let out = s.send(&dave_on_alpha, "40").await;
    out.said(&dave_on_alpha, TextKey::ProfileDone);
    assert!(!out.says(&ann, TextKey::ReferralRewarded));
    assert_eq!(s.profile(&ann).await.unwrap().vip_until_ms, None);
}

#[tokio::test]
async fn a_burst_of_referees_who_never_chat_is_withheld_and_the_referrer_is_not_told() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let code = invite_code(&s, &ann).await;
    for i in 0..5 {
        let (_, out) = joins_through(&s, "alpha", &format!("Farm{i}"), &code).await;
        out.said(&ann, TextKey::ReferralRewarded);
    }
    let until = s.profile(&ann).await.unwrap().vip_until_ms;
    let (_, out) = joins_through(&s, "alpha", "Farm5", &code).await;
    assert!(!out.says(&ann, TextKey::ReferralRewarded), "{}", out.listing());
    assert!(out.to(&ann).is_empty(), "the referrer learns nothing: {}", out.listing());
    assert_eq!(s.profile(&ann).await.unwrap().vip_until_ms, until, "no reward");
    let body = text(s.send(&ann, "/invite").await.said(&ann, TextKey::Invite)).to_string();
    assert!(body.contains("counted: 5") && body.contains("not counted: 1"), "{body}");
}

#[tokio::test]
async fn a_referees_purchase_earns_the_referrer_a_share_taken_back_on_refund() {
    let s = Seam::with(vec![shop_config()]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let code = invite_code(&s, &ann).await;
    let (carl, _) = joins_through(&s, "alpha", "Carl", &code).await;
    // VIP week at 200 Stars (20% off): 10% of it is 20 Stars, 2 credits at 10 Stars a credit.
    let payload = buy(&s, &carl, "vip-week").await;
    let (_, approved) = s.pre_checkout(&carl, &payload, 200).await;
    approved.expect("approved");
    let charge = s.charge_in_fake(&carl, &payload, 200);
    let out = s.paid(&carl, &payload, 200, &charge).await;
    out.said(&carl, TextKey::Paid);
    out.said(&ann, TextKey::ReferralCommission);
    assert_eq!(credits(&s, &ann).await, 2);
    // The same payment delivered again: no second share.
    let again = s.paid(&carl, &payload, 200, &charge).await;
    assert!(!again.says(&ann, TextKey::ReferralCommission));
    assert_eq!(credits(&s, &ann).await, 2);
    // Telegram refunds it: the share goes back, once.
    let out = s.refunded(&carl, &payload, 200, &charge).await;
    out.said(&carl, TextKey::RefundedBuyer);
    out.said(&ann, TextKey::ReferralCommissionReversed);
    assert_eq!(credits(&s, &ann).await, 0);
    let again = s.refunded(&carl, &payload, 200, &charge).await;
    assert!(!again.says(&ann, TextKey::ReferralCommissionReversed));
    assert_eq!(credits(&s, &ann).await, 0);
}

#[tokio::test]
async fn a_bot_without_referrals_ignores_links_and_says_so() {
    let mut cfg = bot_config("alpha", Mode::Polling, "");
    cfg.bot.features.referrals = false;
    let s = Seam::with(vec![cfg]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    s.send(&ann, "/invite").await.said(&ann, TextKey::ReferralsOff);
}
