use botfleet_tests::bot_api::RawBot;
use botfleet_tests::fake_telegram::{Limits, MediaKind, MediaSpec};
use serde_json::json;

use crate::setup;

#[tokio::test]
async fn every_media_kind_can_be_uploaded_and_resent_by_file_id() {
    let s = setup().await;
    s.sim.set_limits(Limits { enabled: false, ..Limits::default() }).unwrap();
    for kind in MediaKind::ALL {
        let field = kind.field();
        let params = if kind.has_caption() { json!({"chat_id": s.user.id, "caption": "look"}) } else { json!({"chat_id": s.user.id}) };
        let sent = s
            .api
            .upload(kind.send_method(), params, vec![(field, "file.bin", vec![7u8; 1000])])
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let media = &sent[field];
        let file_id =
            if kind == MediaKind::Photo { media.as_array().unwrap().last().unwrap()["file_id"].clone() } else { media["file_id"].clone() };
        assert!(file_id.is_string(), "{kind:?}: {sent}");
        let again = s
            .api
            .call(kind.send_method(), json!({"chat_id": s.user.id, field: file_id}))
            .await
            .unwrap_or_else(|e| panic!("{kind:?} by id: {e}"));
        assert!(again.get(field).is_some());
    }
}

#[tokio::test]
async fn a_file_id_works_only_for_the_bot_that_owns_it() {
    let s = setup().await;
    let beta = s.sim.register_bot("beta_bot").unwrap();
    let beta_api = RawBot::new(&s.fake.api_url(), &beta.token);
    s.sim.send_text("beta_bot", s.user.id, "/start", None).unwrap();
    let msg =
        s.sim.send_media("alpha_bot", s.user.id, MediaKind::Photo, MediaSpec { size: Some(5_000), ..Default::default() }, None).unwrap();
    let file_id = msg["photo"].as_array().unwrap().last().unwrap()["file_id"].clone();
    // Same bot: fine. Other bot: Telegram's "wrong file identifier".
    s.api.call("sendPhoto", json!({"chat_id": s.user.id, "photo": file_id})).await.unwrap();
    let err = beta_api.call("sendPhoto", json!({"chat_id": s.user.id, "photo": file_id})).await.unwrap_err();
    assert_eq!(err.description, "Bad Request: wrong file identifier/HTTP URL specified");
    let err = beta_api.call("getFile", json!({"file_id": file_id})).await.unwrap_err();
    assert_eq!(err.code, 400);
}

#[tokio::test]
async fn get_file_then_download_returns_the_bytes_for_the_owner_only() {
    let s = setup().await;
    use base64::Engine as _;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let spec = MediaSpec {
        content_base64: Some(base64::engine::general_purpose::STANDARD.encode(&bytes)),
        mime_type: Some("audio/ogg".into()),
        ..Default::default()
    };
    let msg = s.sim.send_media("alpha_bot", s.user.id, MediaKind::Voice, spec, None).unwrap();
    let file = s.api.call("getFile", json!({"file_id": msg["voice"]["file_id"]})).await.unwrap();
    assert_eq!(file["file_size"], 3000);
    let path = file["file_path"].as_str().unwrap();
    let url = format!("{}/file/bot{}/{}", s.fake.api_url(), s.bot.token, path);
    let got = reqwest::get(&url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().to_vec(), bytes);
    let beta = s.sim.register_bot("beta_bot").unwrap();
    let other = reqwest::get(format!("{}/file/bot{}/{}", s.fake.api_url(), beta.token, path)).await.unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn files_over_twenty_megabytes_cannot_be_downloaded_by_bots() {
    let s = setup().await;
    let msg = s
        .sim
        .send_media("alpha_bot", s.user.id, MediaKind::Video, MediaSpec { size: Some(25 * 1024 * 1024), ..Default::default() }, None)
        .unwrap();
    assert_eq!(msg["video"]["file_size"], 25 * 1024 * 1024);
    let err = s.api.call("getFile", json!({"file_id": msg["video"]["file_id"]})).await.unwrap_err();
    assert_eq!(err.description, "Bad Request: file is too big");
}

#[tokio::test]
async fn a_file_of_one_kind_cannot_be_sent_as_another_but_anything_as_a_document() {
    let s = setup().await;
    let msg = s.sim.send_media("alpha_bot", s.user.id, MediaKind::Voice, MediaSpec::default(), None).unwrap();
    let id = msg["voice"]["file_id"].clone();
    let err = s.api.call("sendPhoto", json!({"chat_id": s.user.id, "photo": id})).await.unwrap_err();
    assert_eq!(err.code, 400);
    s.api.call("sendDocument", json!({"chat_id": s.user.id, "document": id})).await.unwrap();
}

#[tokio::test]
async fn uploads_by_attach_reference_work_like_direct_fields() {
    let s = setup().await;
    let sent = s
        .api
        .upload(
            "sendDocument",
            json!({"chat_id": s.user.id, "document": "attach://blob"}),
            vec![("blob", "report.pdf", b"%PDF-1.4".to_vec())],
        )
        .await
        .unwrap();
    assert_eq!(sent["document"]["file_name"], "report.pdf");
    assert_eq!(sent["document"]["file_size"], 8);
    let err = s.api.call("sendDocument", json!({"chat_id": s.user.id, "document": "attach://missing"})).await.unwrap_err();
    assert_eq!(err.code, 400);
    let err = s.api.call("sendPhoto", json!({"chat_id": s.user.id, "photo": "https://example.org/cat.jpg"})).await.unwrap_err();
    assert_eq!(err.description, "Bad Request: failed to get HTTP URL content");
}

#[tokio::test]
async fn copies_keep_media_and_replace_captions_on_request() {
    let s = setup().await;
    let bob = s.sim.user("Bob", None).unwrap();
    s.sim.send_text("alpha_bot", bob.id, "/start", None).unwrap();
    let photo = s
        .sim
        .send_media("alpha_bot", s.user.id, MediaKind::Photo, MediaSpec { caption: Some("sunset".into()), ..Default::default() }, None)
        .unwrap();
    s.api.call("copyMessage", json!({"chat_id": bob.id, "from_chat_id": s.user.id, "message_id": photo["message_id"], "caption": "<b>new</b>", "parse_mode": "HTML"})).await.unwrap();
    let inbox = s.sim.inbox(bob.id, None, 0).unwrap();
    let botfleet_tests::fake_telegram::InboxEvent::Message { message } = &inbox.last().unwrap().event else { panic!() };
    assert_eq!(message["caption"], "new");
    assert_eq!(message["caption_entities"][0]["type"], "bold");
    assert_eq!(message["photo"], photo["photo"], "same bot: the same file ids");
}

#[tokio::test]
async fn uploads_over_fifty_megabytes_are_refused() {
    let s = setup().await;
    let big = vec![0u8; 50 * 1024 * 1024 + 512 * 1024];
    let err = s.api.upload("sendDocument", json!({"chat_id": s.user.id}), vec![("document", "big.bin", big)]).await.unwrap_err();
    assert_eq!((err.code, err.description.as_str()), (413, "Request Entity Too Large"));
}

#[tokio::test]
async fn file_paths_of_files_over_twenty_megabytes_do_not_download() {
    let s = setup().await;
    let msg = s
        .sim
        .send_media("alpha_bot", s.user.id, MediaKind::Video, MediaSpec { size: Some(21 * 1024 * 1024), ..Default::default() }, None)
        .unwrap();
    let id = msg["video"]["file_id"].as_str().unwrap().to_string();
    // The path is not handed out by getFile, but even a guessed one must not work.
    let path = {
        let small = s.sim.send_media("alpha_bot", s.user.id, MediaKind::Video, MediaSpec::default(), None).unwrap();
        let f = s.api.call("getFile", json!({"file_id": small["video"]["file_id"]})).await.unwrap();
        let p = f["file_path"].as_str().unwrap().to_string();
        let n: u64 = p.trim_start_matches("videos/file_").trim_end_matches(".mp4").parse().unwrap();
        let _ = id;
        // The big file was created just before the small one.
        (1..n).rev().map(|k| format!("videos/file_{k}.mp4")).collect::<Vec<_>>()
    };
    for p in path {
        let r = reqwest::get(format!("{}/file/bot{}/{p}", s.fake.api_url(), s.bot.token)).await.unwrap();
        assert_eq!(r.status(), 404, "{p}");
    }
}

#[tokio::test]
async fn oversized_json_bodies_get_telegrams_413_too() {
    let s = setup().await;
    let text = "x".repeat(52 * 1024 * 1024);
    let err = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": text})).await.unwrap_err();
    assert_eq!((err.code, err.description.as_str()), (413, "Request Entity Too Large"));
}

#[tokio::test]
async fn a_photo_resent_by_file_id_keeps_its_sizes() {
    let s = setup().await;
    let first = s.api.upload("sendPhoto", json!({"chat_id": s.user.id}), vec![("photo", "p.jpg", vec![1u8; 5000])]).await.unwrap();
    let big = first["photo"].as_array().unwrap().last().unwrap()["file_id"].clone();
    let again = s.api.call("sendPhoto", json!({"chat_id": s.user.id, "photo": big})).await.unwrap();
    assert_eq!(again["photo"], first["photo"]);
}
