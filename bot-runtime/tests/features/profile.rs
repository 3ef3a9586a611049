//! The profile: showing it, editing it, deleting it (with a confirmation).

use bot_runtime::chat::text_key::TextKey;
use bot_runtime::store::Stage;

use crate::seam::{Seam, buttons, text};

#[tokio::test]
async fn the_profile_shows_gender_and_age_with_edit_and_delete_buttons() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let out = s.send(&ann, "/profile").await;
    let profile = out.said(&ann, TextKey::Profile);
    assert!(text(profile).contains("Age: 25") && text(profile).contains("woman"), "{}", out.listing());
    assert_eq!(buttons(profile), ["prof:edit", "prof:del"]);
}

#[tokio::test]
async fn edit_goes_back_to_the_gender_step_and_keeps_nothing_half_done() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    s.send(&ann, "/profile").await;
    s.press(&ann, "prof:edit").await.said(&ann, TextKey::AskGender);
    assert_eq!(s.profile(&ann).await.map(|u| u.stage), Some(Stage::Gender));
    s.press(&ann, "g:o").await.said(&ann, TextKey::AskAge);
    s.send(&ann, "40").await.said(&ann, TextKey::ProfileDone);
    let out = s.send(&ann, "/profile").await;
    assert!(text(out.said(&ann, TextKey::Profile)).contains("Age: 40"), "{}", out.listing());
}

#[tokio::test]
async fn delete_me_asks_first_and_yes_erases_the_profile() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let out = s.send(&ann, "/delete_me").await;
    assert_eq!(buttons(out.said(&ann, TextKey::DeleteConfirm)), ["del:yes", "del:no"]);
    let out = s.press(&ann, "del:yes").await;
    out.said(&ann, TextKey::Deleted);
    assert!(out.to(&ann).iter().any(|j| j.method == "editMessageReplyMarkup"), "the question loses its buttons: {}", out.listing());
    assert!(s.profile(&ann).await.is_none());
}

#[tokio::test]
async fn delete_me_then_no_keeps_the_profile() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    s.send(&ann, "/delete_me").await;
    let out = s.press(&ann, "del:no").await;
    assert_eq!(out.answer, Some(TextKey::DeleteKept.text(ann.lang)));
    assert!(out.to(&ann).iter().all(|j| j.method == "editMessageReplyMarkup"), "{}", out.listing());
    assert_eq!(s.profile(&ann).await.map(|u| u.stage), Some(Stage::Ready));
}

#[tokio::test]
async fn deleting_the_profile_in_a_chat_tells_the_partner() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    s.send(&ann, "/delete_me").await;
    let out = s.press(&ann, "del:yes").await;
    out.said(&bob, TextKey::PartnerGone);
    assert_eq!(s.partner(&bob).await, None);
}
