use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use botfleet_tests::fake_telegram::Settings;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{assert_spec_update, setup};

/// A bot's webhook endpoint for tests: records what arrives and answers as told.
struct Sink {
    url: String,
    received: mpsc::UnboundedReceiver<(Option<String>, Value)>,
}

#[derive(Clone)]
struct SinkState {
    tx: mpsc::UnboundedSender<(Option<String>, Value)>,
    /// Answer 500 to this many calls first.
    fail_first: Arc<AtomicUsize>,
    /// Hold each call this long before answering.
    hold: Duration,
    reply: Option<Value>,
}

async fn sink(fail_first: usize, hold: Duration, reply: Option<Value>) -> Sink {
    let (tx, received) = mpsc::unbounded_channel();
    let state = SinkState { tx, fail_first: Arc::new(AtomicUsize::new(fail_first)), hold, reply };
    let app = Router::new()
        .route(
            "/hook",
            post(|State(st): State<SinkState>, headers: HeaderMap, body: axum::Json<Value>| async move {
                let secret = headers.get("x-telegram-bot-api-secret-token").and_then(|v| v.to_str().ok()).map(String::from);
                let _ = st.tx.send((secret, body.0));
                tokio::time::sleep(st.hold).await;
                let failing = st.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                if failing {
                    return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({}))).into_response_parts();
                }
                (StatusCode::OK, axum::Json(st.reply.clone().unwrap_or(json!({})))).into_response_parts()
            }),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Sink { url, received }
}

trait IntoParts {
    fn into_response_parts(self) -> axum::response::Response;
}
impl IntoParts for (StatusCode, axum::Json<Value>) {
    fn into_response_parts(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}

async fn next(sink: &mut Sink) -> (Option<String>, Value) {
    tokio::time::timeout(Duration::from_secs(10), sink.received.recv()).await.expect("a delivery within 10 s").expect("sink open")
}

fn fast_retries(s: &crate::Setup) {
    s.sim.set_settings(Settings { webhook_retry_ms: 20, webhook_retry_max_ms: 100, ..Settings::default() });
}

#[tokio::test]
async fn webhook_delivers_updates_with_the_secret_token_header() {
    let s = setup().await;
    let mut hook = sink(0, Duration::ZERO, None).await;
    s.api.call("setWebhook", json!({"url": hook.url, "secret_token": "s3cr3t_TOKEN-1"})).await.unwrap();
    let (secret, update) = next(&mut hook).await;
    assert_eq!(secret.as_deref(), Some("s3cr3t_TOKEN-1"));
    assert_eq!(update["message"]["text"], "/start");
    assert_spec_update(&update);
    let info = s.api.call("getWebhookInfo", json!({})).await.unwrap();
    assert_eq!(info["url"], hook.url);
    assert_eq!(info["max_connections"], 40);
}

#[tokio::test]
async fn set_webhook_rejects_bad_secret_tokens_and_urls() {
    let s = setup().await;
    let err = s.api.call("setWebhook", json!({"url": "http://127.0.0.1:1/h", "secret_token": "has space"})).await.unwrap_err();
    assert_eq!(err.description, "Bad Request: secret token contains unallowed characters");
    let err = s.api.call("setWebhook", json!({"url": "ftp://example.org"})).await.unwrap_err();
    assert_eq!(err.code, 400);
    let err = s.api.call("setWebhook", json!({"url": "http://127.0.0.1:1/h", "max_connections": 101})).await.unwrap_err();
    assert_eq!(err.code, 400);
    s.sim.set_settings(Settings { require_https_webhook: true, ..Settings::default() });
    let err = s.api.call("setWebhook", json!({"url": "http://127.0.0.1:1/h"})).await.unwrap_err();
    assert_eq!(err.description, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook");
}

#[tokio::test]
async fn failed_deliveries_are_retried_and_reported_in_webhook_info() {
    let s = setup().await;
    fast_retries(&s);
    let mut hook = sink(2, Duration::ZERO, None).await;
    s.api.call("setWebhook", json!({"url": hook.url})).await.unwrap();
    let (_, a) = next(&mut hook).await;
    let (_, b) = next(&mut hook).await;
    let (_, c) = next(&mut hook).await;
    assert_eq!(a["update_id"], b["update_id"], "the same update again");
    assert_eq!(b["update_id"], c["update_id"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let info = s.api.call("getWebhookInfo", json!({})).await.unwrap();
    assert_eq!(info["pending_update_count"], 0);
    assert_eq!(info["last_error_message"], "Wrong response from the webhook: 500 Internal Server Error");
    assert!(info["last_error_date"].is_i64());
    let stats = s.sim.stats();
    assert_eq!((stats.webhook_failures, stats.webhook_deliveries), (2, 1));
}

#[tokio::test]
async fn unreachable_webhook_keeps_updates_pending() {
    let s = setup().await;
    fast_retries(&s);
    // Nothing listens on port 9 (discard) here.
    s.api.call("setWebhook", json!({"url": "http://127.0.0.1:9/hook"})).await.unwrap();
    s.sim.send_text("alpha_bot", s.user.id, "hello?", None).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = s.api.call("getWebhookInfo", json!({})).await.unwrap();
    assert_eq!(info["pending_update_count"], 2);
    assert_eq!(info["last_error_message"], "Connection refused");
    s.api.call("deleteWebhook", json!({"drop_pending_updates": true})).await.unwrap();
    let info = s.api.call("getWebhookInfo", json!({})).await.unwrap();
    assert_eq!(info, json!({"url": "", "has_custom_certificate": false, "pending_update_count": 0}));
}

#[tokio::test]
async fn a_chats_next_update_waits_until_the_previous_one_was_accepted() {
    let s = setup().await;
    fast_retries(&s);
    let bob = s.sim.user("Bob", None).unwrap();
    // First call of each chat fails once; order within a chat must hold anyway.
    let mut hook = sink(1, Duration::from_millis(50), None).await;
    for i in 0..3 {
        s.sim.send_text("alpha_bot", s.user.id, &format!("ann {i}"), None).unwrap();
        s.sim.send_text("alpha_bot", bob.id, &format!("bob {i}"), None).unwrap();
    }
    s.api.call("setWebhook", json!({"url": hook.url, "max_connections": 10})).await.unwrap();
    let mut accepted_per_chat: std::collections::HashMap<i64, Vec<String>> = Default::default();
    let mut seen = 0;
    while seen < 8 {
        let (_, u) = next(&mut hook).await;
        seen += 1;
        let chat = u["message"]["chat"]["id"].as_i64().unwrap();
        let text = u["message"]["text"].as_str().unwrap().to_string();
        let list = accepted_per_chat.entry(chat).or_default();
        if list.last() != Some(&text) {
            list.push(text);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok((_, u)) = hook.received.try_recv() {
        let chat = u["message"]["chat"]["id"].as_i64().unwrap();
        let text = u["message"]["text"].as_str().unwrap().to_string();
        let list = accepted_per_chat.entry(chat).or_default();
        if list.last() != Some(&text) {
            list.push(text);
        }
    }
    assert_eq!(accepted_per_chat[&s.user.id], vec!["/start", "ann 0", "ann 1", "ann 2"]);
    assert_eq!(accepted_per_chat[&bob.id], vec!["bob 0", "bob 1", "bob 2"]);
}

#[tokio::test]
async fn updates_of_different_chats_are_delivered_in_parallel_up_to_max_connections() {
    let s = setup().await;
    let mut hook = sink(0, Duration::from_millis(1500), None).await;
    let mut users = vec![s.user.id];
    for i in 0..5 {
        let u = s.sim.user(&format!("u{i}"), None).unwrap();
        s.sim.send_text("alpha_bot", u.id, "/start", None).unwrap();
        users.push(u.id);
    }
    s.api.call("setWebhook", json!({"url": hook.url, "max_connections": 3})).await.unwrap();
    // With 3 connections and 1.5 s per call, 3 arrive at once, then the next 3.
    let started = std::time::Instant::now();
    for _ in 0..3 {
        next(&mut hook).await;
    }
    assert!(started.elapsed() < Duration::from_millis(1400), "first three in parallel");
    next(&mut hook).await;
    assert!(started.elapsed() >= Duration::from_millis(1400), "the fourth waits for a free connection");
}

#[tokio::test]
async fn a_method_in_the_webhook_answer_is_executed() {
    let s = setup().await;
    let reply = json!({"method": "sendMessage", "chat_id": s.user.id, "text": "answered inline"});
    let mut hook = sink(0, Duration::ZERO, Some(reply)).await;
    s.api.call("setWebhook", json!({"url": hook.url})).await.unwrap();
    next(&mut hook).await;
    let entries = s.sim.wait_inbox(s.user.id, None, 0, Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!(&entries[0].event, botfleet_tests::fake_telegram::InboxEvent::Message { message } if message["text"] == "answered inline")
    );
}

/// A sink that records, per chat, whether two deliveries ever overlapped.
async fn overlap_sink(hold: Duration) -> (String, Arc<std::sync::Mutex<(std::collections::HashSet<i64>, bool, Vec<String>)>>) {
    let state: Arc<std::sync::Mutex<(std::collections::HashSet<i64>, bool, Vec<String>)>> = Default::default();
    let st = state.clone();
    let app = Router::new().route(
        "/hook",
        post(move |body: axum::Json<Value>| {
            let st = st.clone();
            async move {
                let chat = body["message"]["chat"]["id"].as_i64().unwrap_or_default();
                {
                    let mut g = st.lock().unwrap();
                    if !g.0.insert(chat) {
                        g.1 = true;
                    }
                    g.2.push(body["message"]["text"].as_str().unwrap_or_default().to_string());
                }
                tokio::time::sleep(hold).await;
                st.lock().unwrap().0.remove(&chat);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, state)
}

#[tokio::test]
async fn deliveries_of_one_chat_never_overlap_even_with_many_connections() {
    let s = setup().await;
    for i in 0..6 {
        s.sim.send_text("alpha_bot", s.user.id, &format!("m{i}"), None).unwrap();
    }
    let (url, state) = overlap_sink(Duration::from_millis(60)).await;
    s.api.call("setWebhook", json!({"url": url, "max_connections": 100})).await.unwrap();
    for _ in 0..100 {
        if s.api.call("getWebhookInfo", json!({})).await.unwrap()["pending_update_count"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let g = state.lock().unwrap();
    assert!(!g.1, "two deliveries of one chat overlapped");
    assert_eq!(g.2, ["/start", "m0", "m1", "m2", "m3", "m4", "m5"]);
}

#[tokio::test]
async fn allowed_updates_given_to_set_webhook_filter_and_show_in_info() {
    let s = setup().await;
    let mut hook = sink(0, Duration::ZERO, None).await;
    s.api.call("setWebhook", json!({"url": hook.url, "allowed_updates": ["callback_query"], "drop_pending_updates": true})).await.unwrap();
    assert_eq!(s.api.call("getWebhookInfo", json!({})).await.unwrap()["allowed_updates"], json!(["callback_query"]));
    s.sim.send_text("alpha_bot", s.user.id, "not wanted", None).unwrap();
    let kb = json!({"inline_keyboard": [[{"text": "x", "callback_data": "x"}]]});
    let msg = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "t", "reply_markup": kb})).await.unwrap();
    s.sim.press_button("alpha_bot", s.user.id, msg["message_id"].as_i64().unwrap(), "x").unwrap();
    let (_, u) = next(&mut hook).await;
    assert!(u.get("callback_query").is_some(), "{u}");
}

#[tokio::test]
async fn a_slow_webhook_times_out_and_is_retried() {
    let s = setup().await;
    s.sim.set_settings(Settings { webhook_timeout_ms: 100, webhook_retry_ms: 20, webhook_retry_max_ms: 50, ..Settings::default() });
    let mut hook = sink(0, Duration::from_millis(300), None).await;
    s.api.call("setWebhook", json!({"url": hook.url})).await.unwrap();
    let (_, a) = next(&mut hook).await;
    let (_, b) = next(&mut hook).await;
    assert_eq!(a["update_id"], b["update_id"], "redelivered after the timeout");
    let info = s.api.call("getWebhookInfo", json!({})).await.unwrap();
    assert_eq!(info["last_error_message"], "Read timeout expired");
}

#[tokio::test]
async fn a_redirecting_webhook_is_a_failed_delivery() {
    let s = setup().await;
    fast_retries(&s);
    let app = Router::new().route("/hook", post(|| async { (StatusCode::FOUND, [("location", "https://example.org/hook")]) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    s.api.call("setWebhook", json!({"url": url})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = s.api.call("getWebhookInfo", json!({})).await.unwrap();
    assert_eq!(info["last_error_message"], "Wrong response from the webhook: 302 Found");
    assert_eq!(info["pending_update_count"], 1);
}

#[tokio::test]
async fn undelivered_updates_expire_like_telegrams_after_their_ttl() {
    let s = setup().await;
    assert_eq!(Settings::default().update_ttl_ms, 24 * 60 * 60 * 1000, "Telegram keeps updates 24 hours");
    s.sim.set_settings(Settings { update_ttl_ms: 200, webhook_retry_ms: 20, webhook_retry_max_ms: 50, ..Settings::default() });
    s.api.call("setWebhook", json!({"url": "http://127.0.0.1:9/hook"})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.api.call("getWebhookInfo", json!({})).await.unwrap()["pending_update_count"], 0, "dropped after the TTL");
}

#[tokio::test]
async fn set_webhook_in_a_webhook_answer_moves_delivery_to_the_new_url() {
    let s = setup().await;
    let mut second = sink(0, Duration::ZERO, None).await;
    let mut first = sink(0, Duration::ZERO, Some(json!({"method": "setWebhook", "url": second.url}))).await;
    s.api.call("setWebhook", json!({"url": first.url})).await.unwrap();
    next(&mut first).await;
    s.sim.send_text("alpha_bot", s.user.id, "to the new url", None).unwrap();
    let (_, u) = next(&mut second).await;
    assert_eq!(u["message"]["text"], "to the new url");
}
