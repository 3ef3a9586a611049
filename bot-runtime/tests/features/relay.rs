//! Relay: what a message in a chat becomes for the partner.

use std::time::Duration;

use bot_runtime::chat::text_key::TextKey;
use bot_runtime::hot::{BlobInfo, MediaBudget};
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
    let blob = s.fleet.hot.blob_info(&s.bot("alpha").pool, &upload.blob).await.expect("read the blob's state");
    assert_eq!(blob, Some(BlobInfo { size: 5_000, complete: true }), "the bytes wait for beta");
    assert!(upload.holder.is_some(), "the job holds the blob until it is uploaded");
}

/// Issue 9, defect 1: the same file relayed again while its blob is still in the hot store
/// (here: sent twice before Bob's bot uploaded it) is not downloaded again; each message holds
/// the blob, so it lives until both are uploaded.
#[tokio::test]
async fn a_second_relay_of_the_same_file_holds_its_blob_without_downloading_again() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let spec = MediaSpec { size: Some(300_000), ..MediaSpec::default() };
    let message = s.sim.send_media("alpha_bot", ann.id, MediaKind::Video, spec, None).expect("the fake takes the video");
    let first = s.update("alpha", json!({ "message": message.clone() })).await;
    let downloads = |s: &Seam| s.sim.stats().calls.get("download").copied().unwrap_or(0);
    assert_eq!(downloads(&s), 1);
    let mut again = message;
    again["message_id"] = json!(again["message_id"].as_i64().unwrap() + 100);
    let second = s.update("alpha", json!({ "message": again })).await;
    assert_eq!(downloads(&s), 1, "the blob in the hot store is used again");
    let (a, b) = (first.to(&bob)[0].upload.clone().unwrap(), second.to(&bob)[0].upload.clone().unwrap());
    assert_eq!(a.blob, b.blob);
    assert_ne!(a.holder, b.holder, "one hold per relayed message");
    let pool = &s.bot("alpha").pool;
    assert!(!s.fleet.hot.release_blob(pool, &a.blob, a.holder.as_deref().unwrap()).await.unwrap(), "the second upload still needs it");
    assert!(s.fleet.hot.release_blob(pool, &b.blob, b.holder.as_deref().unwrap()).await.unwrap());
    assert_eq!(s.fleet.hot.blob_info(pool, &a.blob).await.unwrap(), None, "deleted with its last upload");
    assert_eq!(s.fleet.hot.media_reserved().await.unwrap(), 0, "its budget is free");
}

/// Issue 9, defect 1: with the fleet's media budget full, a file is not downloaded at all; the
/// sender is told at once, the update completes (nothing retries it) and the refusal is counted.
#[tokio::test]
async fn media_past_the_fleet_budget_is_refused_and_the_sender_told_without_a_retry() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let budget = s.fleet.media.limits.budget;
    // Others' files fill the budget but for 1 MiB.
    let filler = MediaBudget { user_bytes: 0, ..budget };
    let granted =
        s.fleet.hot.reserve_media("another-pool", "gamma:big", 999, budget.fleet_bytes - (1 << 20), &filler, Duration::from_secs(60)).await;
    assert!(matches!(granted, Ok(bot_runtime::hot::MediaGrant::Granted)), "{granted:?}");
    let out = s.send_media(&ann, MediaKind::Document, MediaSpec { size: Some(2 << 20), ..MediaSpec::default() }).await;
    out.said(&ann, TextKey::MediaBusy);
    assert!(out.to(&bob).is_empty(), "{}", out.listing());
    assert_eq!(s.sim.stats().calls.get("download"), None, "nothing downloaded");
    let metrics = s.bot("alpha").metrics().render();
    assert!(metrics.contains(r#"botfleet_media_relays_refused_total{bot="alpha",reason="budget"} 1"#), "{metrics}");
    // A small file still fits.
    let out = s.send_media(&ann, MediaKind::Photo, MediaSpec { size: Some(5_000), ..MediaSpec::default() }).await;
    assert_eq!(out.to(&bob).len(), 1, "{}", out.listing());
}

/// Issue 9, defect 1: one person may relay only so many bytes per window, whichever bot they
/// write to; past it they are told to wait.
#[tokio::test]
async fn a_user_past_the_media_bytes_per_window_is_told_to_wait() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let budget = s.fleet.media.limits.budget;
    // Ann relayed nearly her window's worth already (through another bot of another pool).
    let granted =
        s.fleet.hot.reserve_media("another-pool", "gamma:hers", ann.id, budget.user_bytes - 1_000, &budget, Duration::from_secs(60)).await;
    assert!(matches!(granted, Ok(bot_runtime::hot::MediaGrant::Granted)), "{granted:?}");
    let out = s.send_media(&ann, MediaKind::Video, MediaSpec { size: Some(5_000), ..MediaSpec::default() }).await;
    out.said(&ann, TextKey::MediaQuota);
    assert!(out.to(&bob).is_empty(), "{}", out.listing());
    // Bob's own budget is untouched.
    let out = s.send_media(&bob, MediaKind::Video, MediaSpec { size: Some(5_000), ..MediaSpec::default() }).await;
    assert_eq!(out.to(&ann).len(), 1, "{}", out.listing());
}

/// Issue 9, defect 1: a process runs at most `relays_per_process` downloads at once; past that
/// the sender is told to send it again, and nothing is downloaded.
#[tokio::test]
async fn past_the_per_process_cap_a_relay_is_refused_and_the_sender_told() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    let slots: Vec<_> = std::iter::from_fn(|| s.fleet.media.try_download()).collect();
    assert_eq!(slots.len(), s.fleet.media.limits.relays_per_process, "every download slot is taken");
    let out = s.send_media(&ann, MediaKind::Photo, MediaSpec { size: Some(5_000), ..MediaSpec::default() }).await;
    out.said(&ann, TextKey::MediaBusy);
    assert!(out.to(&bob).is_empty(), "{}", out.listing());
    assert_eq!(s.sim.stats().calls.get("getFile"), None, "nothing asked of Telegram");
    drop(slots);
    let out = s.send_media(&ann, MediaKind::Photo, MediaSpec { size: Some(5_000), ..MediaSpec::default() }).await;
    assert_eq!(out.to(&bob).len(), 1, "a slot is free again: {}", out.listing());
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
