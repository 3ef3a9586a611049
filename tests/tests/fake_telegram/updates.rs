use std::time::{Duration, Instant};

use serde_json::json;

use crate::{assert_spec_update, setup};

#[tokio::test]
async fn offset_confirms_updates_and_limit_caps_the_batch() {
    let s = setup().await;
    for i in 0..4 {
        s.sim.send_text("alpha_bot", s.user.id, &format!("m{i}"), None).unwrap();
    }
    let all = s.api.call("getUpdates", json!({})).await.unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 5, "/start and four messages");
    for u in all {
        assert_spec_update(u);
    }
    let first_id = all[0]["update_id"].as_i64().unwrap();
    let ids: Vec<i64> = all.iter().map(|u| u["update_id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "consecutive ids: {ids:?}");
    let two = s.api.call("getUpdates", json!({"offset": first_id + 2, "limit": 2})).await.unwrap();
    assert_eq!(two.as_array().unwrap().len(), 2);
    assert_eq!(two[0]["update_id"], first_id + 2);
    // Confirmed updates never come back.
    let rest = s.api.call("getUpdates", json!({})).await.unwrap();
    assert_eq!(rest[0]["update_id"], first_id + 2);
    let last_one = s.api.call("getUpdates", json!({"offset": -1})).await.unwrap();
    assert_eq!(last_one.as_array().unwrap().len(), 1);
    assert_eq!(last_one[0]["message"]["text"], "m3");
}

#[tokio::test]
async fn long_poll_returns_as_soon_as_an_update_arrives() {
    let s = setup().await;
    s.api.call("getUpdates", json!({"offset": -1})).await.unwrap();
    let confirm = s.api.call("getUpdates", json!({})).await.unwrap()[0]["update_id"].as_i64().unwrap() + 1;
    let api = s.api.clone();
    let started = Instant::now();
    let poll = tokio::spawn(async move { api.call("getUpdates", json!({"offset": confirm, "timeout": 20})).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.sim.send_text("alpha_bot", s.user.id, "wake up", None).unwrap();
    let got = poll.await.unwrap().unwrap();
    assert_eq!(got[0]["message"]["text"], "wake up");
    assert!(started.elapsed() < Duration::from_secs(15), "did not wait for the whole timeout");
}

#[tokio::test]
async fn long_poll_with_nothing_pending_answers_empty_after_its_timeout() {
    let s = setup().await;
    let all = s.api.call("getUpdates", json!({})).await.unwrap();
    let next = all.as_array().unwrap().last().unwrap()["update_id"].as_i64().unwrap() + 1;
    let got = s.api.call("getUpdates", json!({"offset": next, "timeout": 1})).await.unwrap();
    assert_eq!(got, json!([]));
}

#[tokio::test]
async fn a_second_poller_terminates_the_first_with_409() {
    let s = setup().await;
    let all = s.api.call("getUpdates", json!({})).await.unwrap();
    let next = all.as_array().unwrap().last().unwrap()["update_id"].as_i64().unwrap() + 1;
    let api = s.api.clone();
    let first = tokio::spawn(async move { api.call("getUpdates", json!({"offset": next, "timeout": 20})).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let api = s.api.clone();
    let second = tokio::spawn(async move { api.call("getUpdates", json!({"offset": next, "timeout": 2})).await });
    let err = first.await.unwrap().unwrap_err();
    assert_eq!(err.code, 409);
    assert_eq!(err.description, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running");
    assert_eq!(second.await.unwrap().unwrap(), json!([]));
}

#[tokio::test]
async fn get_updates_is_refused_while_a_webhook_is_set() {
    let s = setup().await;
    s.api.call("setWebhook", json!({"url": "http://127.0.0.1:9/hook"})).await.unwrap();
    let err = s.api.call("getUpdates", json!({})).await.unwrap_err();
    assert_eq!(err.code, 409);
    assert!(err.description.contains("webhook is active"), "{}", err.description);
    s.api.call("deleteWebhook", json!({})).await.unwrap();
    assert!(s.api.call("getUpdates", json!({})).await.is_ok());
}

#[tokio::test]
async fn allowed_updates_filters_updates_created_after_it_is_set() {
    let s = setup().await;
    s.api.call("getUpdates", json!({"offset": -1, "allowed_updates": ["callback_query"]})).await.unwrap();
    s.api.call("getUpdates", json!({"offset": i64::MAX})).await.unwrap();
    s.sim.send_text("alpha_bot", s.user.id, "ignored", None).unwrap();
    let kb = json!({"inline_keyboard": [[{"text": "x", "callback_data": "x"}]]});
    let msg = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "press", "reply_markup": kb})).await.unwrap();
    s.sim.press_button("alpha_bot", s.user.id, msg["message_id"].as_i64().unwrap(), "x").unwrap();
    let got = s.api.call("getUpdates", json!({})).await.unwrap();
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0].get("callback_query").is_some());
    // An empty list restores the default (everything but chat_member and reactions).
    s.api.call("getUpdates", json!({"offset": got[0]["update_id"].as_i64().unwrap() + 1, "allowed_updates": []})).await.unwrap();
    s.sim.send_text("alpha_bot", s.user.id, "seen", None).unwrap();
    assert_eq!(s.api.call("getUpdates", json!({})).await.unwrap()[0]["message"]["text"], "seen");
}

#[tokio::test]
async fn set_webhook_terminates_a_running_long_poll() {
    let s = setup().await;
    let all = s.api.call("getUpdates", json!({})).await.unwrap();
    let next = all.as_array().unwrap().last().unwrap()["update_id"].as_i64().unwrap() + 1;
    let api = s.api.clone();
    let poll = tokio::spawn(async move { api.call("getUpdates", json!({"offset": next, "timeout": 20})).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.api.call("setWebhook", json!({"url": "http://127.0.0.1:9/hook"})).await.unwrap();
    let err = poll.await.unwrap().unwrap_err();
    assert_eq!((err.code, err.description.as_str()), (409, "Conflict: terminated by setWebhook request"));
}

#[tokio::test]
async fn stopping_the_server_does_not_wait_for_open_long_polls() {
    let s = setup().await;
    let all = s.api.call("getUpdates", json!({})).await.unwrap();
    let next = all.as_array().unwrap().last().unwrap()["update_id"].as_i64().unwrap() + 1;
    let api = s.api.clone();
    let _poll = tokio::spawn(async move { api.call("getUpdates", json!({"offset": next, "timeout": 60})).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    s.fake.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
}
