use botfleet_tests::api_spec::ApiSpec;
use botfleet_tests::fake_telegram::methods::METHODS;
use serde_json::json;

use crate::setup;

#[test]
fn every_served_method_exists_in_the_bot_api_spec() {
    let spec = ApiSpec::get();
    assert_eq!(spec.version(), "Bot API 10.1");
    for m in METHODS {
        assert_eq!(spec.method_name(m), Some(*m), "{m} is not a Bot API method");
    }
}

/// Each served method, called without parameters, either works (nothing required) or
/// answers a clean 400 — never a 5xx and never a crash.
#[tokio::test]
async fn calls_missing_required_parameters_are_clean_400s() {
    let s = setup().await;
    let spec = ApiSpec::get();
    for m in METHODS {
        let mut required = spec.required_params(m);
        if *m == "setWebhook" {
            // Telegram treats a missing url as "" (remove the webhook) and answers true.
            required.clear();
        }
        let result = s.api.call(m, json!({})).await;
        if required.is_empty() {
            // Optional-only methods may still need one of a pair (chat_id+message_id or
            // inline_message_id): a 400 is fine, anything else is not.
            assert!(result.as_ref().map_or_else(|e| e.code == 400, |_| true), "{m}: {result:?}");
        } else {
            let err = result.expect_err(m);
            assert_eq!(err.code, 400, "{m}: {err}");
        }
    }
}

#[test]
fn the_spec_check_catches_an_invented_field() {
    let spec = ApiSpec::get();
    let good = json!({"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "text": "x"});
    assert!(spec.check_result("sendMessage", &good).is_ok());
    let bad = json!({"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "text": "x", "mood": "happy"});
    assert!(spec.check_result("sendMessage", &bad).is_err());
}
