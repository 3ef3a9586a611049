//! Search: queueing, matching across bots, refusals.

use std::time::Duration;

use bot_runtime::chat::text_key::TextKey;

use crate::seam::{Seam, buttons, text};

#[tokio::test]
async fn a_search_alone_queues_with_a_cancel_button_and_cancel_leaves_the_queue() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let out = s.send(&ann, "/search").await;
    let searching = out.said(&ann, TextKey::Searching);
    assert_eq!(buttons(searching), ["cancel"]);
    assert!(searching.save_as.is_some(), "the refreshes edit this message: {searching:?}");
    assert!(s.waiting(&ann).await);

    let out = s.press(&ann, "cancel").await;
    out.said(&ann, TextKey::SearchCancelled);
    assert!(!s.waiting(&ann).await);
}

#[tokio::test]
async fn two_people_on_two_bots_are_matched_and_each_told_through_their_own_bot() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let bob = s.onboarded("beta", "Bob", "m", 31).await;
    s.send(&ann, "/search").await;
    let out = s.send(&bob, "/search").await;
    let to_ann = out.said(&ann, TextKey::Matched);
    let to_bob = out.said(&bob, TextKey::Matched);
    assert_eq!((to_ann.bot.as_str(), to_bob.bot.as_str()), ("alpha", "beta"));
    assert!(text(to_ann).contains("man, 31") && text(to_bob).contains("woman, 25"), "{}", out.listing());
    assert_eq!(s.partner(&ann).await, Some(bob.member()));
}

#[tokio::test]
async fn a_restricted_person_is_refused_with_the_time_it_ends() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let until = s.now_ms() + 3_600_000;
    s.bot(&ann.bot).store.restrict(ann.id, Some(until), s.now_ms()).await.expect("restrict");
    let out = s.send(&ann, "/search").await;
    assert!(text(out.said(&ann, TextKey::Restricted)).contains("2025-06-02 10:00"), "{}", out.listing());
    assert!(!s.waiting(&ann).await);
}

#[tokio::test]
async fn a_second_tap_while_searching_says_already_searching() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    s.send(&ann, "/search").await;
    let out = s.tap(&ann, TextKey::MenuFind).await;
    out.said(&ann, TextKey::AlreadySearching);
    assert_eq!(out.jobs.len(), 1, "one searching message is enough: {}", out.listing());
}

#[tokio::test]
async fn a_person_in_a_chat_on_one_bot_searching_through_another_is_told_to_finish_it() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, _bob) = s.chatting("alpha", "alpha").await;
    let ann_on_beta = ann.on("beta");
    s.onboard(&ann_on_beta, "f", 25).await;
    let out = s.send(&ann_on_beta, "/search").await;
    assert!(text(out.said(&ann_on_beta, TextKey::InChatOtherBot)).contains("alpha"), "{}", out.listing());
    assert!(!s.waiting(&ann_on_beta).await);
}

#[tokio::test]
async fn the_searching_message_is_refreshed_by_its_timer() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    s.send(&ann, "/search").await;
    assert!(s.fire_due("alpha").await.jobs.is_empty(), "not due yet");
    s.advance(Duration::from_secs(5));
    let out = s.fire_due("alpha").await;
    let edit = out.said(&ann, TextKey::Searching);
    assert_eq!(edit.method, "editMessageText");
    assert!(text(edit).contains("0:06"), "{}", out.listing());
}

/// Issue #9, defect 11: a search has a maximum wait, so someone who walked away is never
/// matched hours later as a ghost.
#[tokio::test]
async fn a_search_ends_after_its_maximum_wait_and_a_later_seeker_is_not_matched_with_a_ghost() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    s.send(&ann, "/search").await.said(&ann, TextKey::Searching);
    // The search's refreshes, for an hour.
    let mut jobs = Vec::new();
    for _ in 0..120 {
        s.advance(Duration::from_secs(30));
        jobs.extend(s.fire_due("alpha").await.jobs);
    }
    assert!(!s.waiting(&ann).await, "still queued after an hour");
    let told: Vec<_> = jobs.iter().filter(|j| j.chat_id == ann.id && crate::seam::is_text(j, TextKey::SearchTimedOut, ann.lang)).collect();
    assert_eq!(told.len(), 2, "the search message edited, and a message with the menu: {jobs:?}");
    assert!(text(told[0]).contains("30 minutes"), "the default maximum: {}", text(told[0]));
    let bob = s.onboarded("alpha", "Bob", "m", 31).await;
    let out = s.send(&bob, "/search").await;
    out.said(&bob, TextKey::Searching);
    assert_eq!(s.partner(&bob).await, None);
}

/// Issue #9, defect 4: an update retried after its commit failed (the match happened, the
/// outbox commit did not) records one chat session, not one per attempt.
#[tokio::test]
async fn a_match_retried_after_a_failed_commit_records_one_chat() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let bob = s.onboarded("beta", "Bob", "m", 31).await;
    s.send(&ann, "/search").await.said(&ann, TextKey::Searching);
    let search = serde_json::json!({
        "update_id": 600_001,
        "message": {
            "message_id": 42, "date": 0, "text": "/search",
            "entities": [{"type": "bot_command", "offset": 0, "length": 7}],
            "chat": {"id": bob.id, "type": "private"},
            "from": {"id": bob.id, "is_bot": false, "first_name": "Bob", "language_code": "en"},
        }
    });
    for attempt in 0..2 {
        let out = s.try_update("beta", search.clone()).await.expect("handled");
        out.said(&bob, TextKey::Matched);
        assert!(out.says(&ann, TextKey::Matched), "attempt {attempt}: {}", out.listing());
        s.advance(Duration::from_secs(3));
    }
    s.send(&ann, "/stop").await.said(&ann, TextKey::YouLeft);
    let stats = s.bot("alpha").store.stats(&ann.member()).await.expect("stats");
    assert_eq!(stats.chats, 1, "one chat, however many attempts: {stats:?}");
}
