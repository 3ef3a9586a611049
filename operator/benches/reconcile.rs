//! Reconciling 100 BotInstances through kube's mocked client and the fake Telegram: wall time
//! and peak memory. The API server answers every request at once, so this measures the
//! operator's own work (resolve, build, serialize, Telegram calls), not a cluster.
//!
//! `cargo bench -p botfleet-operator --bench reconcile` (BENCH_BOTS, default 100)

use std::sync::Arc;
use std::time::Instant;

use botfleet_crds::bot_instance::BotInstance;
use botfleet_crds::discount_campaign::DiscountCampaign;
use botfleet_crds::rate_limit_policy::RateLimitPolicy;
use botfleet_crds::vip_plan::VipPlan;
use botfleet_operator::bot::build::{SecretRef, Settings};
use botfleet_operator::bot::reconcile::reconcile;
use botfleet_operator::context::{Context, Stores};
use botfleet_operator::metrics::Metrics;
use botfleet_operator::telegram::TelegramClient;
use botfleet_tests::fake_telegram::{FakeTelegram, Limits};
use futures::StreamExt;
use http::{Request, Response};
use kube::client::{Body, Client};
use kube::runtime::events::Reporter;
use serde_json::{Value, json};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn samples<T: serde::de::DeserializeOwned>(file: &str) -> Vec<T> {
    let text = std::fs::read_to_string(format!("{}/../config/samples/{file}", env!("CARGO_MANIFEST_DIR"))).expect("samples");
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| {
            let mut v: Value = serde::Deserialize::deserialize(d).ok()?;
            v["metadata"]["namespace"] = json!("fleet");
            serde_json::from_value(v).ok()
        })
        .collect()
}

/// An API server that accepts everything: applies echo, Secrets exist, the CRD does not.
fn api_server(tokens: Arc<std::collections::HashMap<String, String>>, bot: Value) -> Client {
    use base64::Engine as _;
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let body = req.into_body().collect_bytes().await.unwrap_or_default();
            let (status, out) = if method == "GET" && path.contains("/secrets/") {
                let name = path.rsplit('/').next().unwrap_or_default();
                match tokens.get(name) {
                    Some(t) => (
                        200,
                        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": {"token": base64::engine::general_purpose::STANDARD.encode(t)}}),
                    ),
                    None => (404, json!({"kind": "Status", "code": 404, "reason": "NotFound", "status": "Failure"})),
                }
            } else if method == "GET" || method == "DELETE" {
                (404, json!({"kind": "Status", "code": 404, "reason": "NotFound", "status": "Failure"}))
            } else if path.contains("/botinstances/") {
                // Status and finalizer patches answer with the object.
                (200, bot.clone())
            } else {
                let mut v: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
                if path.contains("/deployments/") {
                    v["status"] = json!({"readyReplicas": 1});
                }
                (if path.ends_with("/events") { 201 } else { 200 }, v)
            };
            send.send_response(
                Response::builder().status(status).body(Body::from(serde_json::to_vec(&out).unwrap_or_default())).expect("response"),
            );
        }
    });
    Client::new(service, "fleet")
}

fn main() {
    let n: usize = std::env::var("BENCH_BOTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let fake = FakeTelegram::start().await.expect("fake");
        fake.sim().set_limits(Limits { enabled: false, ..Limits::default() }).expect("limits");
        let template: BotInstance = samples::<BotInstance>("bots.yaml").remove(0);
        let mut bots = Vec::new();
        let mut tokens = std::collections::HashMap::new();
        for i in 0..n {
            let tg = fake.sim().register_bot(&format!("fleet_bot_{i}")).expect("bot");
            let mut b = template.clone();
            b.metadata.name = Some(format!("bot-{i}"));
            b.metadata.uid = Some(format!("uid-{i}"));
            b.metadata.finalizers = Some(vec!["botfleet.io/webhook".into()]);
            b.spec.token_secret_ref.name = format!("bot-{i}-token");
            tokens.insert(format!("bot-{i}-token"), tg.token);
            bots.push(b);
        }
        let client = api_server(Arc::new(tokens), serde_json::to_value(&bots[0]).expect("bot json"));
        let stores = Stores::from_objects(samples::<VipPlan>("plans.yaml"), samples::<DiscountCampaign>("campaign.yaml"), samples::<RateLimitPolicy>("policy.yaml"));
        let settings = Settings {
            runtime_image: "bot-runtime:bench".into(),
            allowed_images: vec![],
            service_monitor_labels: Default::default(),
        network_policy: None,
            database_secret: SecretRef { name: "db".into(), key: "url".into() },
            redis_secret: SecretRef { name: "redis".into(), key: "url".into() },
            telegram_api_url: fake.api_url(),
            runtime: Default::default(),
        };
        let reporter = Reporter { controller: "botfleet-operator".into(), instance: None };
        let ctx = Arc::new(Context::new(client, TelegramClient::new(&fake.api_url()), settings, Arc::new(Metrics::new()), stores, reporter));
        let rss_before = peak_rss_kib();
        for round in ["cold start (token check, webhook secret, setWebhook)", "steady state (re-apply)"] {
            let started = Instant::now();
            let results: Vec<_> = futures::stream::iter(bots.iter().cloned())
                .map(|b| reconcile(Arc::new(b), ctx.clone()))
                .buffer_unordered(16)
                .collect()
                .await;
            let failed = results.iter().filter(|r| r.is_err()).count();
            if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                println!("  first failure: {e}");
            }
            println!("{n} BotInstances, {round}: {:.0} ms, {failed} failed", started.elapsed().as_secs_f64() * 1e3);
            // Reconciled bots carry their status into the next round, as in a cluster.
            for b in bots.iter_mut() {
                let fp = tokens_fingerprint(&fake, b);
                b.status = Some(serde_json::from_value(json!({"tokenFingerprint": fp, "username": "x", "conditions": [
                    {"type": "TokenValid", "status": "True", "reason": "Valid", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 0},
                    {"type": "WebhookRegistered", "status": "True", "reason": "Registered", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 0}],
                    "webhook": {"url": format!("https://bots.example.com/telegram/{}", b.metadata.name.clone().unwrap_or_default()), "pendingUpdateCount": 0}})).expect("status"));
            }
        }
        let stats = fake.sim().stats();
        println!("telegram calls: getMe {}, setWebhook {}, getWebhookInfo {}", stats.calls.get("getMe").unwrap_or(&0), stats.calls.get("setWebhook").unwrap_or(&0), stats.calls.get("getWebhookInfo").unwrap_or(&0));
        println!("peak RSS: {:.1} MiB (before reconciling: {:.1} MiB; includes the in-process fake Telegram)", peak_rss_kib() as f64 / 1024.0, rss_before as f64 / 1024.0);
    });
}

fn tokens_fingerprint(fake: &FakeTelegram, b: &BotInstance) -> String {
    let i: usize = b.metadata.name.as_deref().and_then(|n| n.strip_prefix("bot-")).and_then(|n| n.parse().ok()).unwrap_or(0);
    let bots = fake.sim().bots();
    bots.iter().find(|x| x.username == format!("fleet_bot_{i}")).map(|x| botfleet_crds::token::fingerprint(&x.token)).unwrap_or_default()
}
