//! The /sim control API over HTTP, as a test in another language would drive it.

use std::time::Duration;

use botfleet_tests::bot_api::RawBot;
use botfleet_tests::fake_telegram::FakeTelegram;
use serde_json::{Value, json};

struct Ctl {
    http: reqwest::Client,
    base: String,
}

impl Ctl {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(format!("{}{path}", self.base)).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

#[tokio::test]
async fn a_whole_conversation_can_be_played_over_http() {
    let fake = FakeTelegram::start().await.unwrap();
    let ctl = Ctl { http: reqwest::Client::new(), base: fake.api_url() };
    let (status, bot) = ctl.post("/sim/bots", json!({"username": "http_bot"})).await;
    assert_eq!(status, 200, "{bot}");
    let api = RawBot::new(&fake.api_url(), bot["token"].as_str().unwrap());
    let (_, user) = ctl.post("/sim/users", json!({"first_name": "Ivan", "language_code": "ru", "username": "ivan"})).await;
    let uid = user["id"].as_i64().unwrap();
    let (status, sent) = ctl.post("/sim/send", json!({"bot": "http_bot", "user": uid, "text": "/start"})).await;
    assert_eq!(status, 200);
    assert_eq!(sent["message"]["from"]["language_code"], "ru");
    let updates = api.call("getUpdates", json!({})).await.unwrap();
    assert_eq!(updates[0]["message"]["text"], "/start");

    // The inbox long-polls until the bot answers.
    let waiter = {
        let http = ctl.http.clone();
        let url = format!("{}/sim/inbox?user={uid}&bot=http_bot&wait_ms=5000", ctl.base);
        tokio::spawn(async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let kb = json!({"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]});
    let msg = api.call("sendMessage", json!({"chat_id": uid, "text": "Привет", "reply_markup": kb})).await.unwrap();
    let inbox = waiter.await.unwrap();
    assert_eq!(inbox["entries"][0]["event"], "message");
    assert_eq!(inbox["entries"][0]["message"]["text"], "Привет");
    let last_seq = inbox["last_seq"].as_u64().unwrap();

    let (status, pressed) =
        ctl.post("/sim/press", json!({"bot": "http_bot", "user": uid, "message_id": msg["message_id"], "data": "go"})).await;
    assert_eq!(status, 200);
    api.call("answerCallbackQuery", json!({"callback_query_id": pressed["callback_query_id"], "text": "done"})).await.unwrap();
    let (_, after) = ctl.get(&format!("/sim/inbox?user={uid}&after={last_seq}")).await;
    assert_eq!(after["entries"][0]["event"], "callback_answer");
    assert_eq!(after["entries"][0]["text"], "done");

    let (status, media) =
        ctl.post("/sim/send", json!({"bot": "http_bot", "user": uid, "media": "photo", "size": 5000, "caption": "me"})).await;
    assert_eq!(status, 200, "{media}");
    assert_eq!(media["message"]["caption"], "me");

    let (status, _) = ctl.post("/sim/block", json!({"bot": "http_bot", "user": uid})).await;
    assert_eq!(status, 200);
    assert_eq!(api.call("sendMessage", json!({"chat_id": uid, "text": "x"})).await.unwrap_err().code, 403);
    ctl.post("/sim/unblock", json!({"bot": "http_bot", "user": uid})).await;

    let (status, _) = ctl.post("/sim/channels", json!({"username": "@club"})).await;
    assert_eq!(status, 200);
    ctl.post("/sim/channels/members", json!({"channel": "@club", "user": uid, "status": "member"})).await;
    assert_eq!(api.call("getChatMember", json!({"chat_id": "@club", "user_id": uid})).await.unwrap()["status"], "member");

    let (_, stats) = ctl.get("/sim/stats").await;
    assert!(stats["calls"]["sendMessage"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn payments_limits_faults_and_settings_over_http() {
    let fake = FakeTelegram::start().await.unwrap();
    let ctl = Ctl { http: reqwest::Client::new(), base: fake.api_url() };
    let (_, bot) = ctl.post("/sim/bots", json!({"username": "shop_bot", "token": "123456:ABCdef"})).await;
    assert_eq!(bot["id"], 123456);
    let api = RawBot::new(&fake.api_url(), "123456:ABCdef");
    let (_, user) = ctl.post("/sim/users", json!({"id": 555, "first_name": "Payer"})).await;
    assert_eq!(user["id"], 555);
    ctl.post("/sim/send", json!({"bot": "shop_bot", "user": 555, "text": "/start"})).await;
    let inv = api.call("sendInvoice", json!({"chat_id": 555, "title": "VIP", "description": "d", "payload": "p1", "currency": "XTR", "prices": [{"label": "VIP", "amount": 5}]})).await.unwrap();
    let pay = {
        let http = ctl.http.clone();
        let url = format!("{}/sim/pay", ctl.base);
        let body = json!({"bot": "shop_bot", "user": 555, "message_id": inv["message_id"]});
        tokio::spawn(async move { http.post(url).json(&body).send().await.unwrap().json::<Value>().await.unwrap() })
    };
    let query = loop {
        let ups = api.call("getUpdates", json!({"timeout": 5})).await.unwrap();
        if let Some(q) = ups.as_array().unwrap().iter().find_map(|u| u.get("pre_checkout_query").cloned()) {
            break q;
        }
    };
    api.call("answerPreCheckoutQuery", json!({"pre_checkout_query_id": query["id"], "ok": true})).await.unwrap();
    let paid = pay.await.unwrap();
    assert_eq!(paid["status"], "paid");
    assert!(paid["telegram_payment_charge_id"].is_string());

    let (status, limits) = ctl.post("/sim/limits", json!({"enabled": false})).await;
    assert_eq!((status, limits["enabled"].clone()), (200, json!(false)));
    let (status, f) = ctl.post("/sim/faults", json!({"kind": "server_error", "code": 503, "method": "getMe", "count": 1})).await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(api.call("getMe", json!({})).await.unwrap_err().code, 503);
    assert!(api.call("getMe", json!({})).await.is_ok());
    let (status, _) = ctl.post("/sim/faults", json!({"kind": "server_error", "code": 404})).await;
    assert_eq!(status, 400, "only 5xx are server errors");
    let (_, settings) = ctl.post("/sim/settings", json!({"pre_checkout_deadline_ms": 1234})).await;
    assert_eq!(settings["pre_checkout_deadline_ms"], 1234);
}

#[tokio::test]
async fn bad_sim_requests_get_clear_errors() {
    let fake = FakeTelegram::start().await.unwrap();
    let ctl = Ctl { http: reqwest::Client::new(), base: fake.api_url() };
    let r = ctl.http.post(format!("{}/sim/bots", ctl.base)).header("content-type", "application/json").body("{").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("invalid JSON"), "{body}");
    let (status, body) = ctl.post("/sim/send", json!({"bot": "nobody_bot", "user": 1, "text": "hi"})).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = ctl.post("/sim/bots", json!({"username": "bad name!"})).await;
    assert_eq!(status, 400);
    ctl.post("/sim/bots", json!({"username": "dup_bot"})).await;
    let (status, _) = ctl.post("/sim/bots", json!({"username": "DUP_bot"})).await;
    assert_eq!(status, 400, "usernames are unique regardless of case");
    let (status, _) = ctl.post("/sim/users", json!({"first_name": ""})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn limits_and_settings_updates_keep_fields_left_out() {
    let fake = FakeTelegram::start().await.unwrap();
    let ctl = Ctl { http: reqwest::Client::new(), base: fake.api_url() };
    ctl.post("/sim/limits", json!({"per_bot_per_sec": 10.0})).await;
    let (_, limits) = ctl.post("/sim/limits", json!({"enabled": false})).await;
    assert_eq!(limits["per_bot_per_sec"], 10.0);
    assert_eq!(limits["enabled"], false);
    let (status, _) = ctl.post("/sim/limits", json!({"per_chat_burst": 0.5})).await;
    assert_eq!(status, 400, "a burst below one would refuse everything");
    ctl.post("/sim/settings", json!({"webhook_retry_ms": 5})).await;
    let (_, settings) = ctl.post("/sim/settings", json!({"pre_checkout_deadline_ms": 100})).await;
    assert_eq!((settings["webhook_retry_ms"].clone(), settings["pre_checkout_deadline_ms"].clone()), (json!(5), json!(100)));
}

#[tokio::test]
async fn faults_are_listed_and_unknown_methods_refused() {
    let fake = FakeTelegram::start().await.unwrap();
    let ctl = Ctl { http: reqwest::Client::new(), base: fake.api_url() };
    let (status, _) = ctl.post("/sim/faults", json!({"kind": "outage", "method": "sendTelepathy"})).await;
    assert_eq!(status, 400);
    ctl.post("/sim/faults", json!({"kind": "timeout", "delay_ms": 10, "method": "getMe", "count": 2})).await;
    let (_, list) = ctl.get("/sim/faults").await;
    assert_eq!(list[0]["remaining"], 2);
    let r = ctl.http.delete(format!("{}/sim/faults", ctl.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(ctl.get("/sim/faults").await.1, json!([]));
}

#[tokio::test]
async fn bad_query_strings_get_json_errors_and_bot_ids_never_collide() {
    let fake = FakeTelegram::start().await.unwrap();
    let ctl = Ctl { http: reqwest::Client::new(), base: fake.api_url() };
    let (status, body) = ctl.get("/sim/inbox?user=abc").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().starts_with("invalid query"), "{body}");
    // A bot registered with a chosen token takes an id the automatic ones must skip.
    let sim = fake.sim();
    sim.register_bot_with("first_bot", None, Some("7000000001:chosen")).unwrap();
    let auto = sim.register_bot("second_bot").unwrap();
    assert_ne!(auto.id, 7000000001);
    assert_eq!(sim.bots().len(), 2);
}
