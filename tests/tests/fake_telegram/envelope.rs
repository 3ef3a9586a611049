use botfleet_tests::bot_api::{Encoding, RawBot};
use botfleet_tests::fake_telegram::Limits;
use serde_json::{Value, json};

use crate::setup;

#[tokio::test]
async fn unknown_token_gets_401_in_telegrams_envelope() {
    let s = setup().await;
    let stranger = RawBot::new(&s.fake.api_url(), "123456:not-a-registered-token");
    let err = stranger.call("getMe", json!({})).await.unwrap_err();
    assert_eq!(err.code, 401);
    assert_eq!(err.description, "Unauthorized");
}

#[tokio::test]
async fn get_me_returns_the_bots_identity() {
    let s = setup().await;
    let me = s.api.call("getMe", json!({})).await.unwrap();
    assert_eq!(me["id"], s.bot.id);
    assert_eq!(me["is_bot"], true);
    assert_eq!(me["username"], "alpha_bot");
}

#[tokio::test]
async fn method_names_match_case_insensitively() {
    let s = setup().await;
    for name in ["getMe", "GetMe", "GETME", "getme"] {
        let me = s.api.call(name, json!({})).await.unwrap();
        assert_eq!(me["id"], s.bot.id, "{name}");
    }
    let stats = s.sim.stats();
    assert_eq!(stats.calls.get("getMe"), Some(&4), "counted under the canonical name");
}

#[tokio::test]
async fn unknown_method_is_404_not_found() {
    let s = setup().await;
    let err = s.api.call("sendTelepathy", json!({})).await.unwrap_err();
    assert_eq!((err.code, err.description.as_str()), (404, "Not Found"));
}

#[tokio::test]
async fn every_encoding_carries_the_same_parameters() {
    let s = setup().await;
    s.sim.set_limits(Limits { enabled: false, ..Limits::default() }).unwrap();
    let markup = json!({"inline_keyboard": [[{"text": "Next", "callback_data": "next"}]]});
    for encoding in [Encoding::Json, Encoding::Form, Encoding::Multipart, Encoding::Query] {
        let msg = s
            .api
            .call_as("sendMessage", json!({"chat_id": s.user.id, "text": format!("via {encoding:?}"), "reply_markup": markup}), encoding)
            .await
            .unwrap_or_else(|e| panic!("{encoding:?}: {e}"));
        assert_eq!(msg["text"], format!("via {encoding:?}"));
        assert_eq!(msg["reply_markup"], markup, "{encoding:?} keeps the JSON-serialized reply_markup");
    }
}

#[tokio::test]
async fn form_encoded_entities_and_reply_parameters_are_parsed_from_json_strings() {
    let s = setup().await;
    let first = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "first"})).await.unwrap();
    let msg = s
        .api
        .call_as(
            "sendMessage",
            json!({
                "chat_id": s.user.id.to_string(), "text": "bold reply",
                "entities": [{"type": "bold", "offset": 0, "length": 4}],
                "reply_parameters": {"message_id": first["message_id"]},
            }),
            Encoding::Form,
        )
        .await
        .unwrap();
    assert_eq!(msg["entities"][0]["type"], "bold");
    assert_eq!(msg["reply_to_message"]["message_id"], first["message_id"]);
}

#[tokio::test]
async fn malformed_requests_get_400_with_a_description() {
    let s = setup().await;
    let http = reqwest::Client::new();
    let url = s.fake.method_url(&s.bot.token, "sendMessage");
    let resp = http.post(&url).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["ok"], false);
    assert!(body["description"].as_str().unwrap().starts_with("Bad Request: "), "{body}");

    let cases = [
        (json!({"text": "no chat"}), "Bad Request: chat_id is empty"),
        (json!({"chat_id": s.user.id}), "Bad Request: message text is empty"),
        (json!({"chat_id": s.user.id, "text": "x", "reply_markup": "{oops"}), "Bad Request: can't parse reply keyboard markup JSON object"),
        (json!({"chat_id": 987654321, "text": "x"}), "Bad Request: chat not found"),
        (json!({"chat_id": s.user.id, "text": "x".repeat(4097)}), "Bad Request: message is too long"),
        (json!({"chat_id": s.user.id, "text": "<b>x", "parse_mode": "HTML"}), ""),
        (
            json!({"chat_id": s.user.id, "text": "x", "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "x".repeat(65)}]]}}),
            "Bad Request: BUTTON_DATA_INVALID",
        ),
        (
            json!({"chat_id": s.user.id, "text": "x", "reply_markup": {"inline_keyboard": [[{"text": "plain"}]]}}),
            "Bad Request: text buttons are unallowed in the inline keyboard",
        ),
        (json!({"chat_id": "not-a-number", "text": "x"}), "Bad Request: chat not found"),
    ];
    for (params, expected) in cases {
        let err = s.api.call_as("sendMessage", params.clone(), Encoding::Form).await.unwrap_err();
        assert_eq!(err.code, 400, "{params}");
        if expected.is_empty() {
            assert!(err.description.starts_with("Bad Request: can't parse entities: "), "{}", err.description);
        } else {
            assert_eq!(err.description, expected, "{params}");
        }
    }
}

/// Random bodies to random methods: every answer is Telegram's envelope, never a crash.
#[tokio::test]
async fn garbage_never_crashes_the_fake() {
    let s = setup().await;
    let http = reqwest::Client::new();
    let methods = [
        "sendMessage",
        "copyMessage",
        "sendPhoto",
        "editMessageText",
        "getUpdates",
        "setWebhook",
        "sendInvoice",
        "answerCallbackQuery",
        "getChatMember",
        "refundStarPayment",
    ];
    let values = [
        json!(null),
        json!(""),
        json!("x"),
        json!(-1),
        json!(1.5),
        json!(i64::MAX),
        json!([]),
        json!({}),
        json!([[{}]]),
        json!("{\"a\":"),
        json!(true),
    ];
    let keys = [
        "chat_id",
        "text",
        "message_id",
        "from_chat_id",
        "photo",
        "reply_markup",
        "url",
        "prices",
        "user_id",
        "offset",
        "entities",
        "parse_mode",
    ];
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut next = |n: usize| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % n
    };
    for _ in 0..300 {
        let method = methods[next(methods.len())];
        let mut params = serde_json::Map::new();
        for _ in 0..next(5) {
            params.insert(keys[next(keys.len())].to_string(), values[next(values.len())].clone());
        }
        let resp = http.post(s.fake.method_url(&s.bot.token, method)).json(&params).send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("always a JSON envelope");
        assert!(body["ok"].is_boolean(), "{method} {params:?} → {body}");
        assert!(status < 500, "{method} {params:?} → {status} {body}");
    }
    let resp = http
        .post(s.fake.method_url(&s.bot.token, "sendMessage"))
        .header("content-type", "multipart/form-data; boundary=zzz")
        .body("--zzz\r\nbroken")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn a_revoked_token_stops_working_and_the_new_one_takes_over() {
    let s = setup().await;
    let rotated = s.sim.rotate_token("alpha_bot").unwrap();
    assert_eq!(rotated.id, s.bot.id);
    assert_ne!(rotated.token, s.bot.token);
    assert_eq!(s.api.call("getMe", json!({})).await.unwrap_err().code, 401);
    let fresh = RawBot::new(&s.fake.api_url(), &rotated.token);
    assert_eq!(fresh.call("getMe", json!({})).await.unwrap()["id"], s.bot.id);
}
