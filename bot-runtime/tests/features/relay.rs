//! Relay: what a message in a chat becomes for the partner.

use bot_runtime::chat::text_key::TextKey;
use botfleet_tests::fake_telegram::{MediaKind, MediaSpec};
use serde_json::json;

use crate::seam::Seam;
use crate::support::{Mode, bot_config};

#[tokio::test]
async fn text_to_a_partner_on_another_bot_goes_to_that_bots_outbox_with_its_entities() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let entities = json!([{"type": "bold", "offset": 0, "length": 5}]);
    let out = s
        .update(
            "alpha",
            json!({"message": {"message_id": 77, "date": 0, "chat": {"id": ann.id, "type": "private"},
                "from": {"id": ann.id, "is_bot": false, "first_name": "Ann"}, "text": "hello bob", "entities": entities}}),
        )
        .await;
    let [job] = out.to(&bob)[..] else { panic!("one job for Bob: {}", out.listing()) };
    assert_eq!((job.bot.as_str(), job.method.as_str()), ("beta", "sendMessage"));
    assert_eq!(job.params["text"], "hello bob");
    assert_eq!(job.params["entities"], entities);
    assert_eq!(job.origin.as_ref().map(|o| o.message_id), Some(77), "replies map back to Ann's message");
    assert!(out.to(&ann).is_empty(), "{}", out.listing());
}

#[tokio::test]
async fn text_to_a_partner_on_the_same_bot_is_a_copy() {
    let s = Seam::bots(&["alpha"]).await;
    let (ann, bob) = s.chatting("alpha", "alpha").await;
    let out = s.send(&ann, "same bot hello").await;
    let [job] = out.to(&bob)[..] else { panic!("one job for Bob: {}", out.listing()) };
    assert_eq!(job.method, "copyMessage");
    assert_eq!(job.params["from_chat_id"], ann.id);
}

#[tokio::test]
async fn a_photo_to_another_bot_is_downloaded_here_and_uploaded_there() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let spec = MediaSpec { size: Some(5_000), caption: Some("me".into()), ..MediaSpec::default() };
    let out = s.send_media(&ann, MediaKind::Photo, spec).await;
    let [job] = out.to(&bob)[..] else { panic!("one job for Bob: {}", out.listing()) };
    assert_eq!((job.bot.as_str(), job.method.as_str()), ("beta", "sendPhoto"));
    assert_eq!(job.params["caption"], "me");
    let upload = job.upload.as_ref().expect("an upload");
    let blob = s.fleet.hot.get_blob(&s.bot("alpha").pool, &upload.blob).await.expect("read the blob");
    assert_eq!(blob.map(|b| b.len()), Some(5_000), "the bytes wait for beta");
}

#[tokio::test]
async fn a_contact_is_never_relayed_and_the_sender_is_told_why() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let out = s
        .update(
            "alpha",
            json!({"message": {"message_id": 78, "date": 0, "chat": {"id": ann.id, "type": "private"},
                "from": {"id": ann.id, "is_bot": false, "first_name": "Ann"},
                "contact": {"phone_number": "+100", "first_name": "Ann"}}}),
        )
        .await;
    out.said(&ann, TextKey::Unsupported);
    assert!(out.to(&bob).is_empty(), "{}", out.listing());
}

#[tokio::test]
async fn media_is_refused_where_the_bot_disables_it() {
    let no_media = "  features:\n    mediaRelay: false\n";
    let s = Seam::with(vec![bot_config("alpha", Mode::Polling, no_media), bot_config("beta", Mode::Polling, "")]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let out = s.send_media(&ann, MediaKind::Voice, MediaSpec::default()).await;
    out.said(&ann, TextKey::MediaDisabled);
    assert!(out.to(&bob).is_empty(), "{}", out.listing());
}

#[tokio::test]
async fn an_edited_text_becomes_an_edit_of_the_partners_copy() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let out = s
        .update(
            "alpha",
            json!({"edited_message": {"message_id": 79, "date": 0, "edit_date": 1, "chat": {"id": ann.id, "type": "private"},
                "from": {"id": ann.id, "is_bot": false, "first_name": "Ann"}, "text": "fixed typo"}}),
        )
        .await;
    let [job] = out.to(&bob)[..] else { panic!("one job for Bob: {}", out.listing()) };
    assert_eq!((job.method.as_str(), job.params["text"].as_str()), ("editMessageText", Some("fixed typo")));
    assert!(job.target.is_some(), "resolved through the reply map when sent: {job:?}");
}

/// With a moderation mirror, each media message is also copied to the mirror chat, and the
/// copy carries its chat session and sender, so the outbox indexes it by session once sent.
#[tokio::test]
async fn media_is_mirrored_for_moderation_and_indexed_by_its_chat_session() {
    let mut alpha = bot_config("alpha", Mode::Polling, "");
    alpha.bot.moderation.media_mirror_chat_id = Some(-1_001_234_567_890);
    let s = Seam::with(vec![alpha, bot_config("beta", Mode::Polling, "")]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let out = s.send_media(&ann, MediaKind::Photo, MediaSpec { size: Some(1_000), ..MediaSpec::default() }).await;
    let mirror = out.jobs.iter().find(|j| j.chat_id == -1_001_234_567_890).unwrap_or_else(|| panic!("a mirror copy: {}", out.listing()));
    assert_eq!((mirror.bot.as_str(), mirror.method.as_str()), ("alpha", "copyMessage"));
    let session = s
        .bot("alpha")
        .store
        .open_session(&bot_runtime::matching::Member::new("alpha", ann.id), &bot_runtime::matching::Member::new("beta", bob.id))
        .await
        .unwrap()
        .expect("the chat's session");
    let of = mirror.mirror_of.as_ref().expect("indexed by session");
    assert_eq!((of.session_id, of.sender.as_str()), (session.id, format!("alpha:{}", ann.id).as_str()));
}
