//! Safety: reports (and their reasons), blocks, automatic restriction.

use bot_runtime::chat::text_key::TextKey;
use bot_runtime::ingress::update::{Event, From};

use crate::seam::{Seam, buttons};

#[tokio::test]
async fn a_report_ends_the_chat_and_asks_why_and_the_reason_is_recorded() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let out = s.tap(&ann, TextKey::ChatReport).await;
    out.said(&bob, TextKey::PartnerLeft);
    let reasons = buttons(out.said(&ann, TextKey::Reported));
    assert_eq!(reasons.len(), 4, "{}", out.listing());
    let spam = reasons.iter().find(|d| d.ends_with(":spam")).expect("a spam reason").to_string();
    let out = s.press(&ann, &spam).await;
    assert_eq!(out.answer, Some(TextKey::ReportThanks.text(ann.lang)));
    assert_eq!(s.partner(&ann).await, None);
}

#[tokio::test]
async fn a_block_ends_the_chat_and_the_two_are_never_matched_again() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let out = s.send(&ann, "/block").await;
    out.said(&ann, TextKey::Blocked);
    out.said(&bob, TextKey::PartnerLeft);
    s.send(&ann, "/search").await.said(&ann, TextKey::Searching);
    let out = s.send(&bob, "/search").await;
    out.said(&bob, TextKey::Searching);
    assert!(!out.says(&ann, TextKey::Matched), "{}", out.listing());
    assert!(s.waiting(&ann).await && s.waiting(&bob).await);
}

#[tokio::test]
async fn enough_distinct_reporters_restrict_the_person_on_every_bot() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let mallory = s.onboarded("beta", "Mallory", "m", 40).await;
    for (i, name) in ["Ann", "Cat", "Dee"].into_iter().enumerate() {
        let reporter = s.onboarded("alpha", name, "f", 25).await;
        s.send(&mallory, "/search").await;
        let out = s.send(&reporter, "/search").await;
        out.said(&reporter, TextKey::Matched);
        s.send(&reporter, "/report").await;
        let restricted = s.profile(&mallory).await.and_then(|u| u.restricted_until_ms).is_some_and(|t| t > s.now_ms());
        assert_eq!(restricted, i == 2, "after {} report(s)", i + 1);
    }
    s.send(&mallory, "/search").await.said(&mallory, TextKey::Restricted);
    let on_alpha = mallory.on("alpha");
    s.onboard(&on_alpha, "m", 40).await;
    s.send(&on_alpha, "/search").await.said(&on_alpha, TextKey::Restricted);
}

#[tokio::test]
async fn someone_who_blocks_the_bot_leaves_their_chat_and_the_partner_is_told() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let ann_from = From { id: ann.id, is_bot: false, language_code: None, username: None };
    let out = s.event("alpha", Event::MemberStatus { user: ann_from, status: "kicked".into() }).await;
    out.said(&bob, TextKey::PartnerGone);
    assert!(out.to(&ann).is_empty(), "nothing can reach Ann now: {}", out.listing());
    assert_eq!(s.partner(&bob).await, None);
    assert_eq!(s.profile(&ann).await.map(|u| u.reachable), Some(false));
}

/// A block is the person's and holds in every pool: Bob, already waiting in another pool
/// before Ann reported him, is never matched with Ann there either.
#[tokio::test]
async fn a_report_in_one_pool_holds_in_another_pool_where_the_reported_person_already_waits() {
    use crate::support::{Mode, bot_config};
    let mut configs = vec![bot_config("alpha", Mode::Polling, ""), bot_config("beta", Mode::Polling, "")];
    for name in ["gamma", "delta"] {
        let mut c = bot_config(name, Mode::Polling, "");
        c.bot.pool = "us-chat".into();
        configs.push(c);
    }
    let s = Seam::with(configs).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    // Ann has searched in us-chat before (through delta) and stopped.
    let ann_us = ann.on("delta");
    s.onboard(&ann_us, "f", 25).await;
    s.send(&ann_us, "/search").await.said(&ann_us, TextKey::Searching);
    s.send(&ann_us, "/stop").await.said(&ann_us, TextKey::SearchCancelled);
    // Bob waits in us-chat, through gamma.
    let bob_us = bob.on("gamma");
    s.onboard(&bob_us, "m", 31).await;
    s.send(&bob_us, "/search").await.said(&bob_us, TextKey::Searching);
    // Ann reports him in eu-chat, then searches in us-chat again.
    s.tap(&ann, TextKey::ChatReport).await.said(&ann, TextKey::Reported);
    let out = s.send(&ann_us, "/search").await;
    assert!(!out.says(&ann_us, TextKey::Matched), "matched with the person she reported: {}", out.listing());
    out.said(&ann_us, TextKey::Searching);
}
