//! Ending chats: Stop, Next, the idle timeout, and the rating that follows.

use std::time::Duration;

use bot_runtime::chat::text_key::TextKey;

use crate::seam::{Seam, buttons};

#[tokio::test]
async fn stop_tells_both_sides_and_offers_each_a_rating() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let out = s.send(&ann, "/stop").await;
    out.said(&ann, TextKey::YouLeft);
    out.said(&bob, TextKey::PartnerLeft);
    let ann_rates = buttons(out.said(&ann, TextKey::RatePrompt));
    let bob_rates = buttons(out.said(&bob, TextKey::RatePrompt));
    assert_eq!(ann_rates.len(), 2, "{}", out.listing());
    assert_eq!(ann_rates, bob_rates, "one session, rated from both sides");
    assert_eq!((s.partner(&ann).await, s.partner(&bob).await), (None, None));
    assert!(!s.waiting(&ann).await);
}

#[tokio::test]
async fn next_ends_the_chat_for_both_and_searches_again() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let out = s.tap(&ann, TextKey::ChatNext).await;
    out.said(&ann, TextKey::YouLeft);
    out.said(&bob, TextKey::PartnerLeft);
    out.said(&ann, TextKey::Searching);
    assert!(s.waiting(&ann).await && !s.waiting(&bob).await);
}

#[tokio::test]
async fn a_rating_counts_once_per_side_and_a_second_press_replaces_it() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let out = s.send(&ann, "/stop").await;
    let [up, down] = buttons(out.said(&bob, TextKey::RatePrompt))[..] else { panic!("two rating buttons: {}", out.listing()) };
    let (up, down) = (up.to_string(), down.to_string());
    let first = s.press(&bob, &up).await;
    assert_eq!(first.answer, Some(TextKey::Rated.text(bob.lang)));
    assert!(first.to(&bob).iter().any(|j| j.method == "editMessageReplyMarkup"), "the buttons go: {}", first.listing());
    // A double tap (the buttons were still there) counts once.
    s.press(&bob, &up).await;
    let stats = s.bot(&ann.bot).store.stats(&ann.member()).await.expect("stats");
    assert_eq!((stats.thumbs_up, stats.thumbs_down), (1, 0));
    s.press(&bob, &down).await;
    let stats = s.bot(&ann.bot).store.stats(&ann.member()).await.expect("stats");
    assert_eq!((stats.thumbs_up, stats.thumbs_down), (0, 1));
}

#[tokio::test]
async fn a_rating_button_of_someone_elses_chat_is_stale() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let out = s.send(&ann, "/stop").await;
    let up = buttons(out.said(&bob, TextKey::RatePrompt))[0].to_string();
    let eve = s.onboarded("alpha", "Eve", "f", 30).await;
    let out = s.press_on(&eve, 1, &up).await;
    assert_eq!(out.answer, Some(TextKey::ButtonStale.text(eve.lang)));
    assert!(out.jobs.is_empty(), "{}", out.listing());
    let stats = s.bot(&ann.bot).store.stats(&ann.member()).await.expect("stats");
    assert_eq!(stats.thumbs_up, 0);
}

#[tokio::test]
async fn stop_outside_a_chat_says_so() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    s.send(&ann, "/stop").await.said(&ann, TextKey::NotInChat);
}

#[tokio::test]
async fn an_idle_chat_ends_for_both_when_its_timer_fires() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    s.advance(Duration::from_secs(15 * 60));
    // The idle timer is kept by the bot of the first member in sort order: alpha here.
    let out = s.fire_due("alpha").await;
    out.said(&ann, TextKey::ChatIdle);
    out.said(&bob, TextKey::ChatIdle);
    assert_eq!(s.partner(&ann).await, None);
}
