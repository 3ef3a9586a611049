//! What the tests on the real control plane share: the control plane of the test binary, clients
//! as its users, a namespace per test, the chart's CRDs, polling, and `kubectl auth can-i`.
//! Used by `tests/apiserver.rs` and `tests/helm.rs` (each binary starts its own control plane).

#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};
use serde_json::{Value, json};

use crate::controlplane::{ControlPlane, repo, start, start_named};

/// The shared control plane, or None (with the reason printed) where it cannot run and CI is
/// not set.
pub fn control_plane() -> Option<&'static ControlPlane> {
    static PLANE: OnceLock<Option<ControlPlane>> = OnceLock::new();
    PLANE.get_or_init(|| required(start(&[]))).as_ref()
}

/// A control plane of its own for one test (stopped when dropped), or None as above.
pub fn own_control_plane(name: &str) -> Option<ControlPlane> {
    required(start_named(name, &[]))
}

fn required(started: Result<ControlPlane, String>) -> Option<ControlPlane> {
    match started {
        Ok(plane) => Some(plane),
        Err(why) if std::env::var_os("CI").is_some() => panic!("the test control plane is required in CI: {why}"),
        Err(why) => {
            eprintln!("SKIPPED: no test control plane ({why}); CI runs these");
            None
        }
    }
}

/// The admin's credentials, impersonating a ServiceAccount: what the operator's pod would be.
pub async fn client_as_service_account(plane: &ControlPlane, ns: &str, sa: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(plane.dir.join("admin.kubeconfig")).expect("kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("client config");
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{ns}:{sa}"));
    config.auth_info.impersonate_groups = Some(vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}")]);
    Client::try_from(config).expect("client")
}

pub async fn client_as(plane: &ControlPlane, user: &str) -> Client {
    client_from(&plane.dir.join(format!("{user}.kubeconfig"))).await
}

/// A client with the credentials of a kubeconfig file.
pub async fn client_from(kubeconfig: &std::path::Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("client config");
    Client::try_from(config).expect("client")
}

/// A fresh namespace for one test.
pub async fn namespace(client: &Client, test: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!("{test}-{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("create namespace");
    name
}

pub fn crd_documents() -> Vec<Value> {
    let dir = repo().join("charts/botfleet/crds");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("chart crds").filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| serde_yaml::from_str::<Value>(&std::fs::read_to_string(p).expect("crd file")).expect("crd yaml"))
        .collect()
}

/// Polls `check` until it returns Some, or fails the test after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One question to the authorizer, as `kubectl auth can-i` asks it (SelfSubjectAccessReview):
/// `verb group/resource[/subresource][ name] in namespace` ("" = cluster-scoped or all).
#[derive(Debug, Clone, Copy)]
pub struct Can {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub name: &'static str,
}

pub const fn can(verb: &'static str, group: &'static str, resource: &'static str) -> Can {
    Can { verb, group, resource, subresource: "", name: "" }
}

impl Can {
    pub const fn sub(self, subresource: &'static str) -> Self {
        Self { subresource, ..self }
    }
    pub const fn named(self, name: &'static str) -> Self {
        Self { name, ..self }
    }
}

pub async fn allowed(client: &Client, q: Can, ns: &str) -> bool {
    use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({"spec": {"resourceAttributes": {
        "verb": q.verb, "group": q.group, "resource": q.resource, "subresource": q.subresource, "name": q.name, "namespace": ns,
    }}}))
    .expect("review");
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone()).create(&PostParams::default(), &review).await.expect("access review");
    answer.status.is_some_and(|s| s.allowed)
}

/// Waits until each CRD is Established (the API server serves its kind) and returns them.
pub async fn wait_established(client: &Client, names: &[String]) -> Vec<CustomResourceDefinition> {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut established = Vec::new();
    for name in names {
        loop {
            let crd = crds.get(name).await.expect("crd");
            let ok = crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
            if ok {
                established.push(crd);
                break;
            }
            assert!(Instant::now() < deadline, "{name} never became Established: {:?}", crd.status);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    established
}

/// Every object of config/samples/, in file order.
pub fn samples() -> Vec<Value> {
    let dir = repo().join("config/samples");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("samples").filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("sample");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_json::to_value(<serde_yaml::Value as serde::Deserialize>::deserialize(doc).expect("yaml")).expect("json");
            if value.is_object() {
                docs.push(value);
            }
        }
    }
    docs
}

pub fn api_for(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("botfleet.io", "v1alpha1", kind));
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// Registers the bots `(name, username)` with the fake Telegram and creates each one's token
/// Secret `<name>-bot-token` (key `token`) in `ns`, labelled `botfleet.io/bot-token=true` (what
/// lets the namespaced operator watch it) when `labelled`.
pub async fn token_secrets(
    client: &Client,
    ns: &str,
    telegram: &botfleet_tests::fake_telegram::Sim,
    bots: &[(&str, &str)],
    labelled: bool,
) {
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns);
    for (bot, username) in bots {
        let token = telegram.register_bot(username).expect("bot").token;
        let labels = if labelled { json!({"botfleet.io/bot-token": "true"}) } else { json!({}) };
        let secret = serde_json::from_value(json!({
            "metadata": {"name": format!("{bot}-bot-token"), "labels": labels},
            "stringData": {"token": token},
        }))
        .expect("secret");
        secrets.create(&PostParams::default(), &secret).await.expect("token secret");
    }
}

/// Starts the operator (in this process) for one namespace with this client; returns the stop
/// switch and its task.
pub fn start_operator(client: Client, ns: &str, telegram_url: &str) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    use botfleet_operator::bot::build::{SecretRef, Settings};
    use botfleet_operator::metrics::Metrics;
    use botfleet_operator::telegram::TelegramClient;
    let settings = Settings {
        runtime_image: "ghcr.io/botfleet/bot-runtime:test".into(),
        allowed_images: vec![],
        service_monitor_labels: Default::default(),
        network_policy: None,
        database_secret: SecretRef { name: "botfleet-db".into(), key: "url".into() },
        redis_secret: SecretRef { name: "botfleet-redis".into(), key: "url".into() },
        telegram_api_url: telegram_url.into(),
        runtime: Default::default(),
    };
    let reporter = kube::runtime::events::Reporter { controller: "botfleet-operator".into(), instance: Some("test".into()) };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let task = tokio::spawn(botfleet_operator::controller::run(
        client,
        Some(ns.to_string()),
        botfleet_operator::bot::fleet::Fleet::default(),
        TelegramClient::new(telegram_url),
        settings,
        std::sync::Arc::new(Metrics::new()),
        reporter,
        futures::FutureExt::shared(Box::pin(shutdown)),
    ));
    (stop, task)
}

/// A `define` of the chart's `_helpers.tpl` that is plain YAML (no template expressions
/// inside), as the chart renders it: the RBAC rules, the admission policy's rule.
pub fn chart_define(name: &str) -> Value {
    let helpers = std::fs::read_to_string(repo().join("charts/botfleet/templates/_helpers.tpl")).expect("_helpers.tpl");
    let start = helpers.find(&format!(r#"{{{{- define "{name}" -}}}}"#)).unwrap_or_else(|| panic!("{name}"));
    let body = &helpers[start..];
    let body = &body[body.find('\n').expect("newline") + 1..];
    let body = &body[..body.find("{{- end }}").unwrap_or_else(|| panic!("end of {name}"))];
    assert!(!body.contains("{{"), "{name} must stay plain YAML for this test");
    serde_json::to_value(serde_yaml::from_str::<serde_yaml::Value>(body).expect("define yaml")).expect("define json")
}
