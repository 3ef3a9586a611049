//! 100 BotInstances from the operator's cold start to all Ready, on the real test control plane
//! (kube-apiserver + etcd + kube-controller-manager, docs/CONTROLPLANE.md), operator only.
//!
//! `cargo bench -p botfleet-operator --bench fleet_apiserver` (BENCH_BOTS, default 100)
//!
//! What runs:
//! - the control plane, with kube-controller-manager's deployment and replicaset controllers
//!   switched off: there is no scheduler or kubelet here, so no pod could ever become ready;
//! - **a simulated kubelet** (this process, clearly not the operator): whenever a Deployment's
//!   status does not say all its replicas are ready, it writes that they are (the `/status`
//!   subresource: replicas, updated, ready and available = `spec.replicas`, observedGeneration).
//!   That stands in for the ReplicaSet, the scheduler, the kubelets and the pods' readiness —
//!   a cluster takes as long as its image pulls and probes take, which is not the operator's;
//! - the fake Telegram Bot API (this process, limits off): getMe, setWebhook, getWebhookInfo;
//! - **the operator, as its own process** (this binary re-executed with `BOTFLEET_BENCH_ROLE=
//!   operator`): `controller::run` for the namespace, as `operator run` starts it (no leader
//!   election, no metrics server), with a client that counts every request it sends.
//!
//! Before the operator starts, the namespace already holds the CRDs' samples (plans, campaign,
//! policy) and N copies of the sample bot `alpha` (webhook mode, autoscaling 2..10: HPA and PDB),
//! each with its own labelled token Secret. The clock starts when the operator process is spawned
//! (cold: no cache, no object of its own yet) and stops when every BotInstance says `Ready=True`
//! for its current generation — the operator's own readiness: token validated, the payload keys,
//! webhook Secret, token copy, ConfigMap, Service, Deployment, HPA and PDB applied, the webhook
//! registered, and the Deployment reporting ready replicas (from the simulated kubelet).
//!
//! Reported: wall time to all Ready (and to all Deployments applied), the operator process's
//! peak RSS (VmHWM from /proc), and the API requests it made by verb and resource.

#[path = "../tests/support/controlplane.rs"]
mod controlplane;

use std::collections::BTreeMap;
use std::io::{BufRead as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use botfleet_crds::bot_instance::BotInstance;
use botfleet_tests::fake_telegram::{FakeTelegram, Limits};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, Config};
use serde_json::{Value, json};

const ROLE_ENV: &str = "BOTFLEET_BENCH_ROLE";
const NAMESPACE: &str = "fleet";

fn main() {
    if std::env::var(ROLE_ENV).as_deref() == Ok("operator") {
        if let Err(e) = operator_process() {
            eprintln!("operator process: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = bench() {
        eprintln!("fleet_apiserver bench failed: {e}");
        std::process::exit(1);
    }
}

fn vm_hwm_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

async fn client_from(kubeconfig: &str) -> Result<Config, String> {
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.map_err(|e| e.to_string())
}

/// "GET deployments", "PATCH botinstances/status", "WATCH secrets", … from a request.
fn request_kind(method: &str, uri: &http::Uri) -> String {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/… or /apis/<group>/<version>/…
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..).unwrap_or_default(),
        Some(&"apis") => segments.get(3..).unwrap_or_default(),
        _ => return format!("{method} {}", uri.path()),
    };
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let resource = match rest {
        [resource] | [resource, _] => resource.to_string(),
        [resource, _, sub, ..] => format!("{resource}/{sub}"),
        [] => "(discovery)".to_string(),
    };
    let watch = uri.query().is_some_and(|q| q.contains("watch=true") || q.contains("watch=1"));
    format!("{} {resource}", if watch { "WATCH" } else { method })
}

/// The operator, alone in its process: runs until its stdin closes, then prints its requests.
fn operator_process() -> Result<(), String> {
    let kubeconfig = std::env::var("BENCH_KUBECONFIG").map_err(|_| "BENCH_KUBECONFIG unset")?;
    let telegram = std::env::var("BENCH_TELEGRAM_URL").map_err(|_| "BENCH_TELEGRAM_URL unset")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let seen = counts.clone();
    runtime.block_on(async move {
        use botfleet_operator::bot::build::{SecretRef, Settings};
        let config = client_from(&kubeconfig).await?;
        let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
            let kind = request_kind(req.method().as_str(), req.uri());
            *seen.lock().unwrap_or_else(|p| p.into_inner()).entry(kind).or_default() += 1;
            req
        });
        let client = kube::client::ClientBuilder::try_from(config).map_err(|e| e.to_string())?.with_layer(&layer).build();
        let settings = Settings {
            runtime_image: "ghcr.io/botfleet/bot-runtime:bench".into(),
            allowed_images: vec![],
            service_monitor_labels: Default::default(),
            network_policy: None,
            database_secret: SecretRef { name: "botfleet-postgres".into(), key: "url".into() },
            redis_secret: SecretRef { name: "botfleet-redis".into(), key: "url".into() },
            telegram_api_url: telegram.clone(),
            runtime: Default::default(),
        };
        let reporter = kube::runtime::events::Reporter { controller: "botfleet-operator".into(), instance: Some("bench".into()) };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        std::thread::spawn(move || {
            // The bench closes our stdin to stop us.
            for _ in std::io::stdin().lock().lines() {}
            let _ = stop.send(true);
        });
        let shutdown = {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        botfleet_operator::controller::run(
            client,
            Some(NAMESPACE.to_string()),
            botfleet_operator::bot::fleet::Fleet::default(),
            botfleet_operator::telegram::TelegramClient::new(&telegram),
            settings,
            Arc::new(botfleet_operator::metrics::Metrics::new()),
            reporter,
            futures::FutureExt::shared(Box::pin(shutdown)),
        )
        .await;
        Ok::<(), String>(())
    })?;
    let counts = counts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    println!("REQUESTS {}", serde_json::to_string(&counts).map_err(|e| e.to_string())?);
    println!("VMHWM {}", vm_hwm_kib("self").unwrap_or(0));
    Ok(())
}

fn samples(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(controlplane::repo().join("config/samples").join(file)).unwrap_or_default();
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| serde_json::to_value(<serde_yaml::Value as serde::Deserialize>::deserialize(d).ok()?).ok())
        .filter(Value::is_object)
        .collect()
}

fn crd_api(client: &Client, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), NAMESPACE, &ApiResource::from_gvk(&GroupVersionKind::gvk("botfleet.io", "v1alpha1", kind)))
}

/// Ready=True for the bot's current generation.
fn ready(bot: &DynamicObject) -> bool {
    let generation = bot.metadata.generation;
    bot.data.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| {
        cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True" && c["observedGeneration"].as_i64() == generation)
    })
}

/// Stands in for the deployment controller, the scheduler and the kubelets (see the top).
async fn simulated_kubelet(client: Client, patches: Arc<Mutex<u64>>) {
    let deployments = Api::<Deployment>::namespaced(client, NAMESPACE);
    let mut events = watcher(deployments.clone(), watcher::Config::default()).default_backoff().applied_objects().boxed();
    while let Some(Ok(d)) = events.next().await {
        let want = d.spec.replicas.unwrap_or(1);
        let generation = d.metadata.generation;
        let status = d.status.clone().unwrap_or_default();
        if status.ready_replicas == Some(want) && status.observed_generation == generation {
            continue;
        }
        let patch = json!({"status": {"observedGeneration": generation, "replicas": want, "updatedReplicas": want,
            "readyReplicas": want, "availableReplicas": want}});
        let name = d.metadata.name.clone().unwrap_or_default();
        if deployments.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
            *patches.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        }
    }
}

fn bench() -> Result<(), String> {
    let n: usize = std::env::var("BENCH_BOTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    // No pods can run here: the deployment and replicaset controllers are off (see the top).
    let plane = controlplane::start(&["--controllers=*,-deployment-controller,-replicaset-controller"])?;
    let kubeconfig = plane.dir.join("admin.kubeconfig");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let admin = Client::try_from(client_from(&kubeconfig.to_string_lossy()).await?).map_err(|e| e.to_string())?;
        let crds = Api::<CustomResourceDefinition>::all(admin.clone());
        for (_, yaml) in botfleet_crds::crd_files().map_err(|e| e.to_string())? {
            let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).map_err(|e| e.to_string())?;
            let name = crd.metadata.name.clone().unwrap_or_default();
            crds.patch(&name, &PatchParams::apply("bench").force(), &Patch::Apply(&crd)).await.map_err(|e| format!("CRD {name}: {e}"))?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for kind in ["BotInstance", "VipPlan", "DiscountCampaign", "RateLimitPolicy"] {
            // Established: a list answers.
            while crd_api(&admin, kind).list(&Default::default()).await.is_err() {
                if Instant::now() > deadline {
                    return Err(format!("the {kind} CRD never became usable"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).map_err(|e| e.to_string())?;
        Api::<Namespace>::all(admin.clone()).create(&PostParams::default(), &ns).await.map_err(|e| e.to_string())?;

        let fake = FakeTelegram::start().await.map_err(|e| e.to_string())?;
        fake.sim().set_limits(Limits { enabled: false, ..Limits::default() }).map_err(|e| e.to_string())?;
        for file in ["plans.yaml", "campaign.yaml", "policy.yaml"] {
            for doc in samples(file) {
                let kind = doc["kind"].as_str().unwrap_or_default().to_string();
                let obj: DynamicObject = serde_json::from_value(doc).map_err(|e| e.to_string())?;
                crd_api(&admin, &kind).create(&PostParams::default(), &obj).await.map_err(|e| format!("{kind}: {e}"))?;
            }
        }
        let template = samples("bots.yaml").into_iter().next().ok_or("no sample bot")?;
        let secrets = Api::<Secret>::namespaced(admin.clone(), NAMESPACE);
        let bots = crd_api(&admin, "BotInstance");
        for i in 0..n {
            let token = fake.sim().register_bot(&format!("fleet_bot_{i}")).map_err(|e| e.to_string())?.token;
            let secret: Secret = serde_json::from_value(json!({
                "metadata": {"name": format!("bot-{i}-token"), "labels": {"botfleet.io/bot-token": "true"}},
                "stringData": {"token": token},
            }))
            .map_err(|e| e.to_string())?;
            secrets.create(&PostParams::default(), &secret).await.map_err(|e| e.to_string())?;
            let mut bot = template.clone();
            bot["metadata"] = json!({"name": format!("bot-{i}"), "namespace": NAMESPACE});
            bot["spec"]["tokenSecretRef"]["name"] = json!(format!("bot-{i}-token"));
            let _: BotInstance = serde_json::from_value(bot.clone()).map_err(|e| format!("sample bot: {e}"))?;
            let obj: DynamicObject = serde_json::from_value(bot).map_err(|e| e.to_string())?;
            bots.create(&PostParams::default(), &obj).await.map_err(|e| e.to_string())?;
        }
        let patches = Arc::new(Mutex::new(0u64));
        let kubelet = tokio::spawn(simulated_kubelet(admin.clone(), patches.clone()));

        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut operator = Command::new(exe)
            .env(ROLE_ENV, "operator")
            .env("BENCH_KUBECONFIG", &kubeconfig)
            .env("BENCH_TELEGRAM_URL", fake.api_url())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the operator process: {e}"))?;
        let pid = operator.id().to_string();
        let deployments = Api::<Deployment>::namespaced(admin.clone(), NAMESPACE);
        let (mut all_applied, mut all_ready) = (None, None);
        let mut peak_kib = 0;
        while all_ready.is_none() && started.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            peak_kib = peak_kib.max(vm_hwm_kib(&pid).unwrap_or(0));
            if all_applied.is_none() && deployments.list_metadata(&Default::default()).await.map(|l| l.items.len()).unwrap_or(0) >= n {
                all_applied = Some(started.elapsed());
            }
            let list = bots.list(&Default::default()).await.map_err(|e| e.to_string())?;
            if list.items.iter().filter(|b| ready(b)).count() >= n {
                all_ready = Some(started.elapsed());
            }
        }
        let not_ready: Vec<String> = bots
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .iter()
            .filter(|b| !ready(b))
            .take(3)
            .map(|b| {
                format!(
                    "{}: {}",
                    b.metadata.name.clone().unwrap_or_default(),
                    b.data.pointer("/status/conditions").cloned().unwrap_or_default()
                )
            })
            .collect();
        // Stop the operator: close its stdin, read what it counted.
        peak_kib = peak_kib.max(vm_hwm_kib(&pid).unwrap_or(0));
        drop(operator.stdin.take());
        let out = tokio::task::spawn_blocking(move || operator.wait_with_output())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        kubelet.abort();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let requests: BTreeMap<String, u64> =
            stdout.lines().find_map(|l| l.strip_prefix("REQUESTS ")).and_then(|j| serde_json::from_str(j).ok()).unwrap_or_default();
        let own_peak: u64 = stdout.lines().find_map(|l| l.strip_prefix("VMHWM ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        let peak_kib = peak_kib.max(own_peak);
        let total: u64 = requests.values().sum();
        let stats = fake.sim().stats();
        let calls = |m: &str| stats.calls.get(m).copied().unwrap_or(0);
        println!("{n} BotInstances on the real API server, operator process from cold start:");
        match (all_applied, all_ready) {
            (Some(a), Some(r)) => println!("  all Deployments applied: {:.2} s; all Ready: {:.2} s", a.as_secs_f64(), r.as_secs_f64()),
            (a, None) => {
                println!("  NOT all Ready within 120 s (Deployments applied: {a:?}); e.g. {not_ready:#?}");
            }
            (None, Some(r)) => println!("  all Ready: {:.2} s", r.as_secs_f64()),
        }
        println!("  operator peak RSS (VmHWM): {:.1} MiB", peak_kib as f64 / 1024.0);
        println!(
            "  operator API requests: {total} ({:.1} per bot), of which watches {}",
            total as f64 / n as f64,
            requests.iter().filter(|(k, _)| k.starts_with("WATCH")).map(|(_, v)| v).sum::<u64>()
        );
        for (kind, count) in &requests {
            println!("    {count:6}  {kind}");
        }
        println!(
            "  Telegram calls: getMe {}, setWebhook {}, getWebhookInfo {}",
            calls("getMe"),
            calls("setWebhook"),
            calls("getWebhookInfo")
        );
        println!("  simulated-kubelet status writes (not the operator's): {}", patches.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = std::io::stdout().flush();
        if all_ready.is_none() {
            return Err("not every BotInstance became Ready".into());
        }
        Ok::<(), String>(())
    })?;
    drop(plane);
    Ok(())
}
