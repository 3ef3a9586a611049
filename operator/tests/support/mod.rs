//! A scripted Kubernetes API server on kube's mocked service (tower_test::mock::pair): each
//! test lists the exact requests the reconcile must make, in order, with the answers to give.
//! Event writes are answered and recorded on the side (the recorder may batch them).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use botfleet_crds::bot_instance::BotInstance;
use botfleet_operator::bot::build::{SecretRef, Settings};
use botfleet_operator::context::{Context, Stores};
use botfleet_operator::metrics::Metrics;
use botfleet_operator::telegram::TelegramClient;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer with the request body as the stored object (what SSA returns), merged with this.
    Echo(Value),
    Json(u16, Value),
    NotFound,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub method: &'static str,
    /// The request path (and query) must contain this.
    pub path: String,
    pub reply: Reply,
}

pub fn step(method: &'static str, path: impl Into<String>, reply: Reply) -> Step {
    Step { method, path: path.into(), reply }
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub body: Value,
}

#[derive(Default)]
pub struct Log {
    pub requests: Vec<Seen>,
    pub events: Vec<Value>,
    pub unexpected: Vec<String>,
    pub remaining: usize,
}

pub fn not_found(what: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound", "message": format!("{what} not found"), "code": 404})
}

fn merge(base: &mut Value, extra: &Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e.clone(),
    }
}

/// Starts the scripted server; returns the client and the log to assert on afterwards.
pub fn api_server(script: Vec<Step>) -> (Client, Arc<Mutex<Log>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log = Arc::new(Mutex::new(Log { remaining: script.len(), ..Default::default() }));
    let shared = log.clone();
    tokio::spawn(async move {
        let mut script = script.into_iter();
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if uri.contains("/events") {
                shared.lock().unwrap().events.push(body.clone());
                let reply = Response::builder().status(201).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap();
                send.send_response(reply);
                continue;
            }
            let (status, out) = match script.next() {
                Some(s) if s.method == method && uri.contains(&s.path) => {
                    let mut l = shared.lock().unwrap();
                    l.remaining -= 1;
                    l.requests.push(Seen { method: method.clone(), uri: uri.clone(), body: body.clone() });
                    match s.reply {
                        Reply::Echo(extra) => {
                            let mut obj = body.clone();
                            merge(&mut obj, &extra);
                            (200, obj)
                        }
                        Reply::Json(code, v) => (code, v),
                        Reply::NotFound => (404, not_found(&uri)),
                    }
                }
                other => {
                    let expected = other.map(|s| format!("{} {}", s.method, s.path)).unwrap_or_else(|| "nothing".into());
                    shared.lock().unwrap().unexpected.push(format!("{method} {uri} (expected {expected})"));
                    (500, json!({"kind": "Status", "status": "Failure", "code": 500, "message": "unexpected request"}))
                }
            };
            let reply = Response::builder().status(status).body(Body::from(serde_json::to_vec(&out).unwrap())).unwrap();
            send.send_response(reply);
        }
    });
    (Client::new(service, "demo"), log)
}

pub fn settings(telegram_url: &str) -> Settings {
    Settings {
        runtime_image: "ghcr.io/botfleet/bot-runtime:test".into(),
        allowed_images: vec!["registry.example.com/botfleet/".into()],
        service_monitor_labels: Default::default(),
        network_policy: None,
        database_secret: SecretRef { name: "botfleet-db".into(), key: "url".into() },
        redis_secret: SecretRef { name: "botfleet-redis".into(), key: "url".into() },
        telegram_api_url: telegram_url.into(),
        runtime: Default::default(),
    }
}

pub fn context(client: Client, telegram_url: &str, stores: Stores) -> Arc<Context> {
    let reporter = Reporter { controller: "botfleet-operator".into(), instance: Some("test".into()) };
    Arc::new(
        Context::new(client, TelegramClient::new(telegram_url), settings(telegram_url), Arc::new(Metrics::new()), stores, reporter)
            .with_clock("2026-11-22T12:00:00Z".parse().unwrap()),
    )
}

/// A BotInstance as the API server would hand it to the controller.
pub fn bot(yaml_spec: &str, finalizer: bool) -> BotInstance {
    let mut b: BotInstance = serde_yaml::from_str(&format!(
        "apiVersion: botfleet.io/v1alpha1\nkind: BotInstance\nmetadata: {{name: alpha}}\nspec:\n{yaml_spec}"
    ))
    .unwrap();
    b.metadata.namespace = Some("demo".into());
    b.metadata.uid = Some("8d3f-uid".into());
    b.metadata.generation = Some(3);
    b.metadata.resource_version = Some("100".into());
    if finalizer {
        b.metadata.finalizers = Some(vec!["botfleet.io/webhook".into()]);
    }
    b
}

pub fn token_secret(name: &str, key: &str, token: &str) -> Value {
    use base64::Engine as _;
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "demo"},
        "data": {key: base64::engine::general_purpose::STANDARD.encode(token)},
    })
}

/// A key file the runtime accepts (two keys: the first signs).
pub const PAYLOAD_KEYS: &str =
    "# rotated 2026-11\n0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\nolder-key-still-verifying-0123456789abcdef\n";

/// The namespace's payload-key Secret as the API server returns it (`data` base64).
pub fn payload_keys_secret(keys: &str) -> Value {
    use base64::Engine as _;
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "botfleet-payload-keys", "namespace": "demo", "labels": {"app.kubernetes.io/managed-by": "botfleet-operator"}},
        "data": {"keys": base64::engine::general_purpose::STANDARD.encode(keys)},
    })
}
