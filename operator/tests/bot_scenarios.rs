//! The BotInstance reconciler against a scripted API server and the fake Telegram: one
//! scenario per behaviour, asserting the exact requests.

mod support;

use std::sync::Arc;

use botfleet_crds::bot_instance::BotInstance;
use botfleet_crds::token::fingerprint;
use botfleet_operator::bot::reconcile::reconcile;
use botfleet_operator::context::Stores;
use botfleet_tests::bot_api::RawBot;
use botfleet_tests::fake_telegram::FakeTelegram;
use serde_json::{Value, json};
use support::{Reply, api_server, bot, context, step, token_secret};

const WEBHOOK_SPEC: &str = "  tokenSecretRef: {name: alpha-token}\n  ingress: {mode: Webhook, publicUrl: \"https://bots.example.com\"}\n  replicas: 2\n  pool: eu-chat\n  admins: {telegramIds: [1]}\n";

fn stores() -> Stores {
    Stores::from_objects(vec![], vec![], vec![])
}

fn deployment_ready(n: i32) -> Reply {
    Reply::Echo(json!({"status": {"readyReplicas": n, "replicas": n}}))
}

/// The requests of one full apply, from the token Secret to the status patch.
fn apply_script(b: &BotInstance, token: &str, webhook_secret: Option<&str>, hpa: bool) -> Vec<support::Step> {
    let mut s =
        vec![step("GET", "/api/v1/namespaces/demo/secrets/alpha-token", Reply::Json(200, token_secret("alpha-token", "token", token)))];
    match webhook_secret {
        Some(existing) => s.push(step(
            "GET",
            "/api/v1/namespaces/demo/secrets/alpha-webhook",
            Reply::Json(200, token_secret("alpha-webhook", "secret", existing)),
        )),
        None => {
            s.push(step("GET", "/api/v1/namespaces/demo/secrets/alpha-webhook", Reply::NotFound));
            s.push(step(
                "PATCH",
                "/api/v1/namespaces/demo/secrets/alpha-webhook?&force=true&fieldManager=botfleet-operator",
                Reply::Echo(json!({})),
            ));
        }
    }
    s.push(step(
        "PATCH",
        "/api/v1/namespaces/demo/secrets/alpha-runtime-token?&force=true&fieldManager=botfleet-operator",
        Reply::Echo(json!({})),
    ));
    s.push(step("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/servicemonitors.monitoring.coreos.com", Reply::NotFound));
    s.push(step(
        "PATCH",
        "/api/v1/namespaces/demo/configmaps/alpha-config?&force=true&fieldManager=botfleet-operator",
        Reply::Echo(json!({})),
    ));
    s.push(step(
        "PATCH",
        "/api/v1/namespaces/demo/services/alpha-runtime?&force=true&fieldManager=botfleet-operator",
        Reply::Echo(json!({})),
    ));
    s.push(step(
        "PATCH",
        "/apis/apps/v1/namespaces/demo/deployments/alpha-runtime?&force=true&fieldManager=botfleet-operator",
        deployment_ready(2),
    ));
    if hpa {
        s.push(step("PATCH", "/apis/autoscaling/v2/namespaces/demo/horizontalpodautoscalers/alpha-runtime", Reply::Echo(json!({}))));
    } else {
        s.push(step("DELETE", "/apis/autoscaling/v2/namespaces/demo/horizontalpodautoscalers/alpha-runtime", Reply::NotFound));
    }
    s.push(step("PATCH", "/apis/policy/v1/namespaces/demo/poddisruptionbudgets/alpha-runtime?&force=true", Reply::Echo(json!({}))));
    s.push(step("PATCH", "/apis/botfleet.io/v1alpha1/namespaces/demo/botinstances/alpha/status", the(b)));
    s
}

/// Answer with the bot itself (what a patch of the BotInstance returns).
fn the(b: &BotInstance) -> Reply {
    Reply::Json(200, serde_json::to_value(b).unwrap())
}

fn find<'a>(log: &'a support::Log, needle: &str) -> &'a Value {
    &log.requests.iter().find(|r| r.uri.contains(needle)).unwrap_or_else(|| panic!("no request to {needle}")).body
}

fn condition<'a>(status_patch: &'a Value, t: &str) -> &'a Value {
    status_patch["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == t)
        .unwrap_or_else(|| panic!("no {t} condition in {status_patch}"))
}

fn assert_done(log: &std::sync::Mutex<support::Log>) {
    let l = log.lock().unwrap();
    assert!(l.unexpected.is_empty(), "unexpected requests: {:#?}", l.unexpected);
    assert_eq!(
        l.remaining,
        0,
        "requests the reconcile never made (made: {:#?})",
        l.requests.iter().map(|r| format!("{} {}", r.method, r.uri)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_new_bot_gets_its_finalizer_first() {
    let fake = FakeTelegram::start().await.unwrap();
    let b = bot(WEBHOOK_SPEC, false);
    let (client, log) = api_server(vec![step("PATCH", "/apis/botfleet.io/v1alpha1/namespaces/demo/botinstances/alpha", the(&b))]);
    let ctx = context(client, &fake.api_url(), stores());
    reconcile(Arc::new(b), ctx).await.unwrap();
    assert_done(&log);
    let patch = &log.lock().unwrap().requests[0].body;
    assert_eq!(patch[1], json!({"op": "add", "path": "/metadata/finalizers", "value": ["botfleet.io/webhook"]}));
}

#[tokio::test]
async fn first_reconcile_creates_everything_validates_the_token_and_registers_the_webhook() {
    let fake = FakeTelegram::start().await.unwrap();
    let tg = fake.sim().register_bot("alpha_chat_bot").unwrap();
    let b = bot(WEBHOOK_SPEC, true);
    let (client, log) = api_server(apply_script(&b, &tg.token, None, false));
    let ctx = context(client, &fake.api_url(), stores());
    reconcile(Arc::new(b), ctx).await.unwrap();
    assert_done(&log);
    let l = log.lock().unwrap();

    // Every apply is server-side with our field manager, forced (drift is reverted).
    for r in l.requests.iter().filter(|r| r.method == "PATCH" && !r.uri.contains("/status")) {
        assert!(r.uri.contains("fieldManager=botfleet-operator") && r.uri.contains("force=true"), "{}", r.uri);
    }
    let deployment = find(&l, "/deployments/alpha-runtime");
    assert_eq!(deployment["spec"]["template"]["metadata"]["annotations"]["botfleet.io/token-fingerprint"], fingerprint(&tg.token));
    assert_eq!(deployment["spec"]["replicas"], 2);
    let config = find(&l, "/configmaps/alpha-config");
    assert!(config["data"]["config.yaml"].as_str().unwrap().contains("pool: eu-chat"));
    let secret = find(&l, "/secrets/alpha-webhook?");
    let generated = secret["stringData"]["secret"].as_str().unwrap().to_string();
    assert_eq!(generated.len(), 64);

    // Telegram now delivers to the bot's URL with the generated secret.
    let api = RawBot::new(&fake.api_url(), &tg.token);
    let info = api.call("getWebhookInfo", json!({})).await.unwrap();
    assert_eq!(info["url"], "https://bots.example.com/telegram/alpha");
    assert_eq!(info["allowed_updates"], json!(["message", "edited_message", "callback_query", "pre_checkout_query", "my_chat_member"]));

    // Status: conditions with the generation, username, fingerprint — never the token.
    let status = find(&l, "/botinstances/alpha/status");
    assert_eq!(status["status"]["observedGeneration"], 3);
    assert_eq!(status["status"]["username"], "alpha_chat_bot");
    assert_eq!(status["status"]["tokenFingerprint"], fingerprint(&tg.token));
    for t in ["Ready", "TokenValid", "WebhookRegistered"] {
        assert_eq!(condition(status, t)["status"], "True", "{t}: {status}");
        assert_eq!(condition(status, t)["observedGeneration"], 3);
    }
    assert_eq!(status["status"]["readyReplicas"], 2);
    assert!(!status.to_string().contains(tg.token.split(':').nth(1).unwrap()), "the token leaked into status");
    let reasons: Vec<&str> = l.events.iter().map(|e| e["reason"].as_str().unwrap_or("")).collect();
    assert!(reasons.contains(&"WebhookRegistered") && reasons.contains(&"ConfigUpdated"), "{reasons:?}");
}

/// A bot as the previous reconcile left it.
fn reconciled_bot(token: &str) -> BotInstance {
    let mut b = bot(WEBHOOK_SPEC, true);
    b.status = serde_json::from_value(json!({
        "observedGeneration": 3, "username": "alpha_chat_bot", "tokenFingerprint": fingerprint(token), "readyReplicas": 2,
        "webhook": {"url": "https://bots.example.com/telegram/alpha", "pendingUpdateCount": 0},
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Running", "message": "", "lastTransitionTime": "2026-11-01T00:00:00Z", "observedGeneration": 3},
            {"type": "TokenValid", "status": "True", "reason": "Valid", "message": "", "lastTransitionTime": "2026-11-01T00:00:00Z", "observedGeneration": 3},
            {"type": "WebhookRegistered", "status": "True", "reason": "Registered", "message": "", "lastTransitionTime": "2026-11-01T00:00:00Z", "observedGeneration": 3},
        ],
    }))
    .unwrap();
    b
}

#[tokio::test]
async fn drift_is_reverted_by_forced_reapply_without_calling_telegram_again() {
    let fake = FakeTelegram::start().await.unwrap();
    let tg = fake.sim().register_bot("alpha_chat_bot").unwrap();
    let secret = "existing_secret_value";
    let b = reconciled_bot(&tg.token);
    let (client, log) = api_server(apply_script(&b, &tg.token, Some(secret), false));
    let ctx = context(client, &fake.api_url(), stores());
    reconcile(Arc::new(b), ctx).await.unwrap();
    assert_done(&log);
    let stats = fake.sim().stats();
    assert_eq!(stats.calls.get("getMe"), None, "the token was validated before");
    assert_eq!(stats.calls.get("setWebhook"), None, "the webhook is already registered");
    assert_eq!(stats.calls.get("getWebhookInfo"), Some(&1), "status still reports pending updates");
    let l = log.lock().unwrap();
    let status = find(&l, "/status");
    assert_eq!(condition(status, "Ready")["lastTransitionTime"], "2026-11-01T00:00:00Z", "no transition, no new time");
    // Every object is applied whole and forced, so a hand edit (drift) is overwritten; the pods
    // carry the same fingerprint as before, so nothing rolls.
    let deployment = find(&l, "/deployments/alpha-runtime");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert!(l.requests.iter().filter(|r| r.method == "PATCH" && !r.uri.contains("/status")).all(|r| r.uri.contains("force=true")));
    assert_eq!(deployment["spec"]["template"]["metadata"]["annotations"]["botfleet.io/token-fingerprint"], fingerprint(&tg.token));
    assert_eq!(deployment["spec"]["template"]["metadata"]["annotations"]["botfleet.io/webhook-secret-fingerprint"], fingerprint(secret));
}

#[tokio::test]
async fn a_rotated_token_is_validated_rolls_the_pods_and_re_registers_the_webhook() {
    let fake = FakeTelegram::start().await.unwrap();
    let old = fake.sim().register_bot("alpha_chat_bot").unwrap();
    let new = fake.sim().rotate_token("alpha_chat_bot").unwrap();
    let b = reconciled_bot(&old.token);
    let (client, log) = api_server(apply_script(&b, &new.token, Some("existing_secret_value"), false));
    let ctx = context(client, &fake.api_url(), stores());
    reconcile(Arc::new(b), ctx).await.unwrap();
    assert_done(&log);
    let l = log.lock().unwrap();
    let deployment = find(&l, "/deployments/alpha-runtime");
    assert_eq!(deployment["spec"]["template"]["metadata"]["annotations"]["botfleet.io/token-fingerprint"], fingerprint(&new.token));
    assert_eq!(find(&l, "/secrets/alpha-runtime-token?")["stringData"]["token"], new.token, "new pods get the new token");
    let status = find(&l, "/status");
    assert_eq!(status["status"]["tokenFingerprint"], fingerprint(&new.token));
    assert!(l.events.iter().any(|e| e["reason"] == "TokenRotated"), "{:?}", l.events);
    let stats = fake.sim().stats();
    assert_eq!(stats.calls.get("setWebhook"), Some(&1), "the webhook follows the new token");
    let info = RawBot::new(&fake.api_url(), &new.token).call("getWebhookInfo", json!({})).await.unwrap();
    assert_eq!(info["url"], "https://bots.example.com/telegram/alpha");
}

#[tokio::test]
async fn an_invalid_token_is_reported_and_the_running_pods_are_left_alone() {
    let fake = FakeTelegram::start().await.unwrap();
    let old = fake.sim().register_bot("alpha_chat_bot").unwrap();
    let bogus = "7000000001:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let b = reconciled_bot(&old.token);
    let (client, log) = api_server(vec![
        step("GET", "/api/v1/namespaces/demo/secrets/alpha-token", Reply::Json(200, token_secret("alpha-token", "token", bogus))),
        step("PATCH", "/botinstances/alpha/status", the(&b)),
    ]);
    let ctx = context(client, &fake.api_url(), stores());
    reconcile(Arc::new(b), ctx).await.unwrap();
    assert_done(&log);
    let l = log.lock().unwrap();
    assert!(!l.requests.iter().any(|r| r.uri.contains("/deployments")), "no Deployment change: pods keep the old token");
    assert!(!l.requests.iter().any(|r| r.uri.contains("alpha-runtime-token")), "the validated copy keeps the old token for new pods too");
    let status = find(&l, "/status");
    assert_eq!(condition(status, "Ready")["reason"], "TokenInvalid");
    let token_valid = condition(status, "TokenValid");
    assert_eq!((token_valid["status"].as_str(), token_valid["reason"].as_str()), (Some("False"), Some("Unauthorized")));
    assert!(token_valid["message"].as_str().unwrap().contains(&fingerprint(bogus)));
    assert!(!status.to_string().contains("AAAAAAAAAAAAAAAAAAAA"), "no token in status");
    assert_eq!(status["status"]["tokenFingerprint"], fingerprint(&old.token), "status still names the running token");
    assert!(l.events.iter().any(|e| e["reason"] == "Unauthorized" && e["type"] == "Warning"));
}

#[tokio::test]
async fn a_missing_secret_or_key_gives_a_clear_condition_and_a_retry() {
    let fake = FakeTelegram::start().await.unwrap();
    for (reply, reason) in [
        (Reply::NotFound, "SecretNotFound"),
        (Reply::Json(200, token_secret("alpha-token", "wrong-key", "x")), "SecretKeyMissing"),
        (Reply::Json(200, token_secret("alpha-token", "token", "not a token")), "TokenMalformed"),
    ] {
        let b = bot(WEBHOOK_SPEC, true);
        let (client, log) =
            api_server(vec![step("GET", "/secrets/alpha-token", reply), step("PATCH", "/botinstances/alpha/status", the(&b))]);
        let ctx = context(client, &fake.api_url(), stores());
        let action = reconcile(Arc::new(b), ctx).await.unwrap();
        assert_done(&log);
        assert_eq!(format!("{action:?}"), format!("{:?}", kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(60))));
        let l = log.lock().unwrap();
        let status = find(&l, "/status");
        assert_eq!(condition(status, "TokenValid")["reason"], reason);
        assert_eq!(condition(status, "Ready")["status"], "False");
        assert!(l.events.iter().any(|e| e["reason"] == reason), "{reason}: {:?}", l.events);
    }
}

/// A deleted bot that has pods retires first: its configuration says `retiring`, its status
/// says since when, an Event explains it, and the finalizer (hence the pods, which wait for
/// their owner) stays for the drain — Telegram is not called yet.
#[tokio::test]
async fn a_deleted_bot_retires_first_and_its_finalizer_waits_for_the_drain() {
    let fake = FakeTelegram::start().await.unwrap();
    let tg = fake.sim().register_bot("alpha_chat_bot").unwrap();
    let mut b = reconciled_bot(&tg.token);
    b.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-11-22T12:00:00Z".parse().unwrap()));
    let (client, log) = api_server(vec![
        step("PATCH", "/configmaps/alpha-config", Reply::Echo(json!({}))),
        step("PATCH", "/botinstances/alpha/status", the(&b)),
    ]);
    let ctx = context(client, &fake.api_url(), stores());
    let err = reconcile(Arc::new(b), ctx).await.expect_err("the finalizer stays while the pods drain");
    assert_eq!(err.draining(), Some(botfleet_operator::bot::reconcile::RETIRE_DRAIN));
    assert_done(&log);
    let l = log.lock().unwrap();
    let config = l.requests[0].body["data"]["config.yaml"].as_str().unwrap_or_default().to_string();
    assert!(config.contains("retiring: true"), "{config}");
    let patch = &l.requests[1].body;
    assert_eq!(patch["status"]["retiringSince"], "2026-11-22T12:00:00Z");
    assert_eq!(condition(patch, "Ready")["reason"], "Retiring");
    assert!(l.events.iter().any(|e| e["reason"] == "Retiring"), "{:?}", l.events);
    assert_eq!(fake.sim().stats().calls.get("deleteWebhook").copied().unwrap_or(0), 0);
}

/// Scaling a running bot to zero retires it first, as deleting does: the configuration says
/// `retiring`, the Deployment keeps its running replicas for the drain, and the status and an
/// Event say so; after the drain the Deployment goes to zero.
#[tokio::test]
async fn scaling_a_bot_to_zero_retires_it_before_its_pods_go() {
    let fake = FakeTelegram::start().await.unwrap();
    let tg = fake.sim().register_bot("alpha_chat_bot").unwrap();
    let secret = "existing_secret_value";
    let api = RawBot::new(&fake.api_url(), &tg.token);
    api.call("setWebhook", json!({"url": "https://bots.example.com/telegram/alpha", "secret_token": secret})).await.unwrap();
    let mut b = reconciled_bot(&tg.token);
    b.spec.replicas = Some(0);
    let zero_script = |b: &BotInstance| {
        let mut script = apply_script(b, &tg.token, Some(secret), false);
        let pdb = script.iter().position(|s| s.path.contains("poddisruptionbudgets")).unwrap();
        script[pdb] = step("DELETE", "/apis/policy/v1/namespaces/demo/poddisruptionbudgets/alpha-runtime", Reply::NotFound);
        script
    };
    let (client, log) = api_server(zero_script(&b));
    reconcile(Arc::new(b.clone()), context(client, &fake.api_url(), stores())).await.unwrap();
    {
        let l = log.lock().unwrap();
        let config = find(&l, "/configmaps/alpha-config")["data"]["config.yaml"].as_str().unwrap_or_default().to_string();
        assert!(config.contains("retiring: true"), "{config}");
        assert_eq!(find(&l, "/deployments/alpha-runtime")["spec"]["replicas"], 2, "the running pods stay for the drain");
        let status = find(&l, "/status");
        assert_eq!(status["status"]["retiringSince"], "2026-11-22T12:00:00Z");
        assert_eq!(condition(status, "Ready")["reason"], "Retiring");
        assert!(l.events.iter().any(|e| e["reason"] == "Retiring"), "{:?}", l.events);
    }
    // After the drain: zero replicas.
    b.status.as_mut().unwrap().retiring_since = Some("2026-11-22T11:50:00Z".into());
    let (client, log) = api_server(zero_script(&b));
    reconcile(Arc::new(b), context(client, &fake.api_url(), stores())).await.unwrap();
    let l = log.lock().unwrap();
    assert_eq!(find(&l, "/deployments/alpha-runtime")["spec"]["replicas"], 0);
    assert_eq!(condition(find(&l, "/status"), "Ready")["reason"], "ScaledToZero");
}

/// Halfway through the drain the finalizer still waits, for the rest of it only.
#[tokio::test]
async fn a_retiring_bot_waits_only_the_rest_of_its_drain() {
    let fake = FakeTelegram::start().await.unwrap();
    let tg = fake.sim().register_bot("alpha_chat_bot").unwrap();
    let mut b = reconciled_bot(&tg.token);
    b.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-11-22T12:00:00Z".parse().unwrap()));
    b.status.as_mut().unwrap().retiring_since = Some("2026-11-22T11:59:30Z".into());
    let (client, log) = api_server(vec![]);
    let ctx = context(client, &fake.api_url(), stores());
    let err = reconcile(Arc::new(b), ctx).await.expect_err("still draining");
    assert_eq!(err.draining(), Some(std::time::Duration::from_secs(60)));
    assert_done(&log);
}

#[tokio::test]
async fn deleting_a_bot_removes_its_webhook_then_its_finalizer() {
    let fake = FakeTelegram::start().await.unwrap();
    let tg = fake.sim().register_bot("alpha_chat_bot").unwrap();
    let api = RawBot::new(&fake.api_url(), &tg.token);
    api.call("setWebhook", json!({"url": "https://bots.example.com/telegram/alpha"})).await.unwrap();
    let mut b = reconciled_bot(&tg.token);
    // Retired (drained) long enough ago.
    b.status.as_mut().unwrap().retiring_since = Some("2026-11-22T11:50:00Z".into());
    b.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-11-22T12:00:00Z".parse().unwrap()));
    let (client, log) = api_server(vec![
        step("GET", "/secrets/alpha-token", Reply::Json(200, token_secret("alpha-token", "token", &tg.token))),
        step("PATCH", "/apis/botfleet.io/v1alpha1/namespaces/demo/botinstances/alpha", the(&b)),
    ]);
    let ctx = context(client, &fake.api_url(), stores());
    reconcile(Arc::new(b), ctx).await.unwrap();
    assert_done(&log);
    assert_eq!(api.call("getWebhookInfo", json!({})).await.unwrap()["url"], "");
    let patch = &log.lock().unwrap().requests[1].body;
    assert_eq!(patch[0], json!({"op": "test", "path": "/metadata/finalizers/0", "value": "botfleet.io/webhook"}));
    assert_eq!(patch[1], json!({"op": "remove", "path": "/metadata/finalizers/0"}));
}

#[tokio::test]
async fn deletion_waits_while_telegram_is_unreachable() {
    let fake = FakeTelegram::start().await.unwrap();
    let tg = fake.sim().register_bot("alpha_chat_bot").unwrap();
    fake.sim()
        .add_fault(botfleet_tests::fake_telegram::FaultSpec {
            method: Some("deleteWebhook".into()),
            bot: None,
            kind: botfleet_tests::fake_telegram::FaultKind::Outage,
            count: None,
        })
        .unwrap();
    let mut b = reconciled_bot(&tg.token);
    b.status.as_mut().unwrap().retiring_since = Some("2026-11-22T11:50:00Z".into());
    b.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-11-22T12:00:00Z".parse().unwrap()));
    let (client, log) =
        api_server(vec![step("GET", "/secrets/alpha-token", Reply::Json(200, token_secret("alpha-token", "token", &tg.token)))]);
    let ctx = context(client, &fake.api_url(), stores());
    assert!(reconcile(Arc::new(b), ctx).await.is_err(), "the finalizer stays until the webhook is gone");
    assert_done(&log);
}

#[tokio::test]
async fn autoscaling_applies_an_hpa_and_leaves_replicas_to_it() {
    let fake = FakeTelegram::start().await.unwrap();
    let tg = fake.sim().register_bot("alpha_chat_bot").unwrap();
    let spec = WEBHOOK_SPEC.replace("  replicas: 2\n", "  autoscaling: {minReplicas: 2, maxReplicas: 5}\n");
    let mut b = reconciled_bot(&tg.token);
    b.spec = bot(&spec, true).spec;
    let (client, log) = api_server(apply_script(&b, &tg.token, Some("existing_secret_value"), true));
    let ctx = context(client, &fake.api_url(), stores());
    reconcile(Arc::new(b), ctx).await.unwrap();
    assert_done(&log);
    let l = log.lock().unwrap();
    assert!(find(&l, "/deployments/alpha-runtime")["spec"].get("replicas").is_none());
    assert_eq!(find(&l, "/horizontalpodautoscalers/alpha-runtime")["spec"]["maxReplicas"], 5);
}

#[tokio::test]
async fn a_spec_that_bypassed_the_schema_is_reported_not_applied() {
    let fake = FakeTelegram::start().await.unwrap();
    let spec = "  tokenSecretRef: {name: alpha-token}\n  ingress: {mode: Webhook}\n  admins: {telegramIds: [1]}\n";
    let b = bot(spec, true);
    let (client, log) = api_server(vec![step("PATCH", "/botinstances/alpha/status", the(&b))]);
    let ctx = context(client, &fake.api_url(), stores());
    reconcile(Arc::new(b), ctx).await.unwrap();
    assert_done(&log);
    let l = log.lock().unwrap();
    let ready = condition(find(&l, "/status"), "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("InvalidSpec")));
    assert!(ready["message"].as_str().unwrap().contains("publicUrl"));
}

/// A name too long for the bot's Service: Ready=False with the reason and an Event, and
/// nothing applied (instead of a reconcile failing forever on the API server's 422).
#[tokio::test]
async fn a_bot_whose_objects_the_api_server_would_refuse_is_reported_not_applied() {
    let fake = FakeTelegram::start().await.unwrap();
    let mut b = bot(WEBHOOK_SPEC, true);
    let long = "a".repeat(60);
    b.metadata.name = Some(long.clone());
    let (client, log) = api_server(vec![step("PATCH", format!("/botinstances/{long}/status"), the(&b))]);
    let ctx = context(client, &fake.api_url(), stores());
    reconcile(Arc::new(b), ctx).await.unwrap();
    assert_done(&log);
    let l = log.lock().unwrap();
    let ready = condition(find(&l, "/status"), "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("InvalidSpec")));
    assert!(ready["message"].as_str().unwrap().contains("too long"), "{ready}");
    assert!(l.events.iter().any(|e| e["reason"] == "InvalidSpec"), "{:?}", l.events);
}

#[tokio::test]
async fn a_campaign_reports_its_state_with_an_event_and_is_requeued_at_its_next_edge() {
    use botfleet_crds::discount_campaign::DiscountCampaign;
    let fake = FakeTelegram::start().await.unwrap();
    let c: DiscountCampaign = serde_yaml::from_str(
        "apiVersion: botfleet.io/v1alpha1\nkind: DiscountCampaign\nmetadata: {name: bf, namespace: demo, generation: 4}\nspec: {percentOff: 30, startsAt: \"2026-11-27T00:00:00Z\", endsAt: \"2026-11-30T00:00:00Z\"}",
    )
    .unwrap();
    let (client, log) = api_server(vec![step(
        "PATCH",
        "/apis/botfleet.io/v1alpha1/namespaces/demo/discountcampaigns/bf/status",
        Reply::Json(200, serde_json::to_value(&c).unwrap()),
    )]);
    let ctx = context(client, &fake.api_url(), stores());
    let action = botfleet_operator::pricing::reconcile_campaign(Arc::new(c), ctx).await.unwrap();
    assert_done(&log);
    // The test clock says 2026-11-22T12:00Z: the campaign starts in 4.5 days, resync is sooner.
    assert_eq!(format!("{action:?}"), format!("{:?}", kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(600))));
    let l = log.lock().unwrap();
    let status = &l.requests[0].body["status"];
    assert_eq!(status["state"], "Scheduled");
    assert_eq!(status["observedGeneration"], 4);
    assert_eq!(status["conditions"][0]["observedGeneration"], 4);
    assert!(l.events.iter().any(|e| e["reason"] == "StateChanged"), "{:?}", l.events);
}
