//! The custom resources on a real Kubernetes API server: kube-apiserver with an embedded etcd
//! and kube-controller-manager, built from the official Go modules (`tests/controlplane`,
//! docs/CONTROLPLANE.md), started once for this test binary; each test works in its own
//! namespace.
//!
//! What mocks cannot show is checked here: the CRDs are accepted by the API server (structural,
//! CEL rules compile and fit their cost budget), invalid objects are refused by the server
//! itself with their reasons, and authorization is real (RBAC, with a negative control).
//!
//! Without Go (a developer machine that never built the control plane) the tests say so and
//! pass; with `CI` set a missing control plane fails them — CI never skips.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const FIELD_MANAGER: &str = "botfleet-tests";

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/controlplane.rs"]
mod controlplane;
use cluster::{
    Can, allowed, api_for, can, chart_define, client_as, client_as_service_account, control_plane, crd_documents, eventually, namespace,
    samples, start_operator, token_secrets, wait_established,
};

/// The rules the chart grants the operator in each watched namespace (`botfleet.rules`).
fn chart_rules() -> Value {
    chart_define("botfleet.rules")
}

/// Installs the chart's CRDs (server-side apply, as `helm install` creates them) and waits
/// until each is Established.
async fn install_crds(client: &Client) -> Vec<CustomResourceDefinition> {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let mut names = Vec::new();
    for doc in crd_documents() {
        let name = doc["metadata"]["name"].as_str().expect("crd name").to_string();
        crds.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&doc))
            .await
            .unwrap_or_else(|e| panic!("the API server refused the CRD {name}: {e}"));
        names.push(name);
    }
    wait_established(client, &names).await
}

async fn create(client: &Client, ns: &str, mut doc: Value) -> Result<DynamicObject, kube::Error> {
    doc["metadata"]["namespace"] = json!(ns);
    let kind = doc["kind"].as_str().expect("kind").to_string();
    let object: DynamicObject = serde_json::from_value(doc).expect("object");
    api_for(client, ns, &kind).create(&PostParams::default(), &object).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crds_install_on_a_real_api_server_and_the_samples_apply() {
    let Some(plane) = control_plane() else { return };
    let admin = client_as(plane, "admin").await;
    let crds = install_crds(&admin).await;
    assert_eq!(crds.len(), 4);
    for crd in &crds {
        let version = &crd.spec.versions[0];
        assert!(version.schema.is_some(), "{}: structural schema", crd.metadata.name.as_deref().unwrap_or_default());
    }
    let ns = namespace(&admin, "samples").await;
    let docs = samples();
    assert!(docs.len() >= 4);
    for doc in docs {
        let what = format!("{} {}", doc["kind"], doc["metadata"]["name"]);
        create(&admin, &ns, doc).await.unwrap_or_else(|e| panic!("the API server refused sample {what}: {e}"));
    }
    for kind in ["BotInstance", "VipPlan", "DiscountCampaign", "RateLimitPolicy"] {
        let listed = api_for(&admin, &ns, kind).list(&ListParams::default()).await.expect("list");
        assert!(!listed.items.is_empty(), "{kind}");
    }
}

fn sample(kind: &str) -> Value {
    samples().into_iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("a sample {kind}"))
}

fn with(mut v: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    v.pointer_mut(parent).and_then(Value::as_object_mut).unwrap_or_else(|| panic!("{parent}")).insert(key.to_string(), value);
    v
}

/// The schema's bounds and CEL rules are enforced by the API server itself (the same cases
/// the offline schema test checks), each refused with a message naming the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_resources_are_refused_by_the_api_server_with_their_reasons() {
    let Some(plane) = control_plane() else { return };
    let admin = client_as(plane, "admin").await;
    install_crds(&admin).await;
    let ns = namespace(&admin, "invalid").await;
    let cases = [
        ("120% off", with(sample("DiscountCampaign"), "/spec/percentOff", json!(120)), "percentOff"),
        ("window ends before it starts", with(sample("DiscountCampaign"), "/spec/endsAt", json!("2020-11-01T00:00:00Z")), "endsAt"),
        ("negative price", with(sample("VipPlan"), "/spec/priceStars", json!(-5)), "priceStars"),
        ("plan granting nothing", with(sample("VipPlan"), "/spec/grants", json!({"vipDays": 0})), "grant"),
        ("title too long for Telegram", with(sample("VipPlan"), "/spec/title", json!("x".repeat(33))), "title"),
        ("webhook without public URL", with(sample("BotInstance"), "/spec/ingress", json!({"mode": "Webhook"})), "publicUrl"),
        ("replicas and autoscaling", with(sample("BotInstance"), "/spec/replicas", json!(3)), "autoscaling"),
        ("age under 13", with(sample("BotInstance"), "/spec/moderation/minimumAge", json!(10)), "minimumAge"),
        ("pool not a DNS label", with(sample("BotInstance"), "/spec/pool", json!("EU Chat")), "pool"),
        ("burst below rate", with(sample("RateLimitPolicy"), "/spec/perUser/messagesPerSecond", json!(9)), "burst"),
        ("unknown billing", with(sample("VipPlan"), "/spec/billing", json!("Weekly")), "billing"),
        (
            "monthly plan not granting Telegram's 30-day period",
            with(with(sample("VipPlan"), "/spec/billing", json!("Monthly")), "/spec/grants", json!({"vipDays": 7})),
            "Monthly",
        ),
        (
            "monthly plan above Telegram's subscription ceiling",
            with(
                with(with(sample("VipPlan"), "/spec/billing", json!("Monthly")), "/spec/grants", json!({"vipDays": 30})),
                "/spec/priceStars",
                json!(10_001),
            ),
            "10000 Stars",
        ),
    ];
    for (what, object, field) in cases {
        match create(&admin, &ns, object).await {
            Ok(_) => panic!("{what} was accepted by the API server"),
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{what}: {status:?}");
                assert!(status.message.contains(field), "{what}: the message names {field}: {}", status.message);
            }
            Err(other) => panic!("{what}: {other}"),
        }
    }
    // A Monthly plan within Telegram's rules is a subscription the server accepts.
    let monthly =
        with(with(sample("VipPlan"), "/spec/billing", json!("Monthly")), "/spec/grants", json!({"vipDays": 30, "lockCredits": 5}));
    let monthly = with(monthly, "/metadata/name", json!("vip-monthly"));
    create(&admin, &ns, monthly).await.expect("a Monthly plan within Telegram's rules is accepted");
}

/// Authorization is RBAC, not AlwaysAllow: a user with no bindings is refused (the negative
/// control every RBAC test here relies on), and the admin is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_bindings_is_refused_by_rbac() {
    let Some(plane) = control_plane() else { return };
    let admin = client_as(plane, "admin").await;
    let ns = namespace(&admin, "rbac").await;
    Api::<Secret>::namespaced(admin.clone(), &ns).list(&ListParams::default()).await.expect("admin lists secrets");
    let nobody = client_as(plane, "nobody").await;
    match Api::<Secret>::namespaced(nobody, &ns).list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("nobody listed secrets: {other:?}"),
    }
}

/// The operator (in this process, as the leader) against the real API server and controller
/// manager: the sample fleet becomes ConfigMaps (the resolved configuration carries the
/// namespace), Services and Deployments owned by their BotInstance through server-side apply;
/// deleting a bot takes its webhook down and the controller manager's garbage collector
/// removes what it owned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_reconciles_the_sample_fleet_and_garbage_collection_follows_a_deletion() {
    use botfleet_tests::fake_telegram::FakeTelegram;
    let Some(plane) = control_plane() else { return };
    let admin = client_as(plane, "admin").await;
    install_crds(&admin).await;
    let ns = namespace(&admin, "fleet").await;
    let fake = FakeTelegram::start().await.expect("fake Telegram");
    let secrets = Api::<Secret>::namespaced(admin.clone(), &ns);
    token_secrets(&admin, &ns, &fake.sim(), &[("alpha", "alpha_demo_bot"), ("beta", "beta_demo_bot")], false).await;
    for doc in samples() {
        create(&admin, &ns, doc).await.expect("sample");
    }
    let (stop, operator) = start_operator(admin.clone(), &ns, &fake.api_url());

    let configs = Api::<ConfigMap>::namespaced(admin.clone(), &ns);
    let config = eventually("alpha's ConfigMap", Duration::from_secs(60), || {
        let configs = configs.clone();
        async move { configs.get_opt("alpha-config").await.ok().flatten() }
    })
    .await;
    let yaml = config.data.as_ref().and_then(|d| d.get("config.yaml")).cloned().unwrap_or_default();
    assert!(yaml.contains(&format!("namespace: {ns}")), "{yaml}");
    let deployments = Api::<Deployment>::namespaced(admin.clone(), &ns);
    let deployment = eventually("alpha's Deployment", Duration::from_secs(60), || {
        let deployments = deployments.clone();
        async move { deployments.get_opt("alpha-runtime").await.ok().flatten() }
    })
    .await;
    let owner = &deployment.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("BotInstance", "alpha", Some(true)));
    let bots = api_for(&admin, &ns, "BotInstance");
    eventually("alpha's TokenValid=True", Duration::from_secs(60), || {
        let bots = bots.clone();
        async move {
            let bot = bots.get("alpha").await.ok()?;
            let conditions = bot.data.pointer("/status/conditions")?.as_array()?.clone();
            conditions.iter().any(|c| c["type"] == "TokenValid" && c["status"] == "True").then_some(())
        }
    })
    .await;
    assert!(fake.sim().stats().calls.get("setWebhook").copied().unwrap_or(0) >= 2, "both webhooks registered");

    // Deleting alpha: its webhook goes, then the garbage collector takes what it owned.
    bots.delete("alpha", &kube::api::DeleteParams::default()).await.expect("delete");
    eventually("alpha's Deployment collected", Duration::from_secs(60), || {
        let deployments = deployments.clone();
        async move { deployments.get_opt("alpha-runtime").await.ok().and_then(|d| d.is_none().then_some(())) }
    })
    .await;
    assert!(fake.sim().stats().calls.get("deleteWebhook").copied().unwrap_or(0) >= 1);
    assert!(deployments.get_opt("beta-runtime").await.expect("get").is_some(), "beta is untouched");
    // The namespace's payload keys belong to no bot: alpha's deletion leaves them to beta.
    let keys = secrets.get("botfleet-payload-keys").await.expect("the payload keys outlive a deleted bot");
    assert!(keys.metadata.owner_references.is_none(), "{:?}", keys.metadata.owner_references);
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), operator).await;
}

/// The chart's namespaced Role is enough to run the fleet (the operator runs as a
/// ServiceAccount bound to exactly those rules), and it cannot update or delete a Secret —
/// not even one it can read: RBAC is the real API server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_namespaced_role_runs_the_fleet_and_cannot_update_or_delete_secrets() {
    use botfleet_tests::fake_telegram::FakeTelegram;
    let Some(plane) = control_plane() else { return };
    let admin = client_as(plane, "admin").await;
    install_crds(&admin).await;
    let ns = namespace(&admin, "rbac-role").await;
    let sa: k8s_openapi::api::core::v1::ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "botfleet"}})).unwrap();
    Api::namespaced(admin.clone(), &ns).create(&PostParams::default(), &sa).await.expect("service account");
    let role: k8s_openapi::api::rbac::v1::Role =
        serde_json::from_value(json!({"metadata": {"name": "botfleet"}, "rules": chart_rules()})).expect("role");
    Api::namespaced(admin.clone(), &ns).create(&PostParams::default(), &role).await.expect("the API server accepts the chart's rules");
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "botfleet"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "botfleet"},
        "subjects": [{"kind": "ServiceAccount", "name": "botfleet", "namespace": ns}],
    }))
    .unwrap();
    Api::namespaced(admin.clone(), &ns).create(&PostParams::default(), &binding).await.expect("binding");

    let fake = FakeTelegram::start().await.expect("fake Telegram");
    let secrets = Api::<Secret>::namespaced(admin.clone(), &ns);
    token_secrets(&admin, &ns, &fake.sim(), &[("alpha", "alpha_role_bot"), ("beta", "beta_role_bot")], true).await;
    for doc in samples() {
        create(&admin, &ns, doc).await.expect("sample");
    }
    let operator = client_as_service_account(plane, &ns, "botfleet").await;
    let (stop, task) = start_operator(operator.clone(), &ns, &fake.api_url());

    let bots = api_for(&admin, &ns, "BotInstance");
    for bot in ["alpha", "beta"] {
        eventually(&format!("{bot} reconciled by the ServiceAccount"), Duration::from_secs(60), || {
            let bots = bots.clone();
            async move {
                let b = bots.get(bot).await.ok()?;
                let conditions = b.data.pointer("/status/conditions")?.as_array()?.clone();
                let ok = |t: &str| conditions.iter().any(|c| c["type"] == t && c["status"] == "True");
                (ok("TokenValid") && ok("TokenSecretWatched")).then_some(())
            }
        })
        .await;
    }
    let deployments = Api::<Deployment>::namespaced(admin.clone(), &ns);
    assert!(deployments.get_opt("alpha-runtime").await.expect("get").is_some(), "applied under the chart's Role");
    assert!(secrets.get_opt("alpha-runtime-token").await.expect("get").is_some(), "its own Secrets are created");
    let keys = secrets.get("botfleet-payload-keys").await.expect("the payload keys are created under the chart's Role");
    assert!(keys.metadata.owner_references.is_none());

    // The user's token Secret: readable, but neither updatable nor deletable by the operator.
    let as_operator = Api::<Secret>::namespaced(operator, &ns);
    let mut token = as_operator.get("alpha-bot-token").await.expect("the operator reads token Secrets");
    token.metadata.managed_fields = None;
    match as_operator.replace("alpha-bot-token", &PostParams::default(), &token).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("the operator updated a user's Secret: {other:?}"),
    }
    match as_operator.delete("alpha-bot-token", &kube::api::DeleteParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("the operator deleted a user's Secret: {other:?}"),
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

/// On the real API server: a ConfigMap someone else created under a bot's object name is not
/// taken over (the bot says `ObjectNotOwned`, the ConfigMap keeps its data and has no owner),
/// while the other bot of the namespace is deployed; and `tokenSecretRef` can only name a
/// Secret of the bot's own namespace (a `namespace` field is pruned by the schema).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_object_is_not_adopted_and_token_secrets_stay_in_the_bots_namespace() {
    use botfleet_tests::fake_telegram::FakeTelegram;
    let Some(plane) = control_plane() else { return };
    let admin = client_as(plane, "admin").await;
    install_crds(&admin).await;
    let ns = namespace(&admin, "foreign").await;
    let fake = FakeTelegram::start().await.expect("fake Telegram");
    token_secrets(&admin, &ns, &fake.sim(), &[("alpha", "alpha_foreign_bot"), ("beta", "beta_foreign_bot")], false).await;
    let configs = Api::<ConfigMap>::namespaced(admin.clone(), &ns);
    let theirs: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "alpha-config"}, "data": {"owner": "another team"}})).unwrap();
    configs.create(&PostParams::default(), &theirs).await.expect("foreign configmap");
    for doc in samples() {
        let doc = if doc["kind"] == "BotInstance" && doc["metadata"]["name"] == "beta" {
            with(doc, "/spec/tokenSecretRef/namespace", json!("kube-system"))
        } else {
            doc
        };
        create(&admin, &ns, doc).await.expect("sample");
    }
    let bots = api_for(&admin, &ns, "BotInstance");
    let beta = bots.get("beta").await.expect("beta");
    assert_eq!(beta.data.pointer("/spec/tokenSecretRef/namespace"), None, "no cross-namespace reference can be stored");

    let (stop, task) = start_operator(admin.clone(), &ns, &fake.api_url());
    let reason = eventually("alpha reports ObjectNotOwned", Duration::from_secs(60), || {
        let bots = bots.clone();
        async move {
            let b = bots.get("alpha").await.ok()?;
            let conditions = b.data.pointer("/status/conditions")?.as_array()?.clone();
            conditions.iter().find(|c| c["type"] == "Ready" && c["reason"] == "ObjectNotOwned").cloned()
        }
    })
    .await;
    assert!(reason["message"].as_str().unwrap_or_default().contains("ConfigMap \"alpha-config\""), "{reason}");
    let deployments = Api::<Deployment>::namespaced(admin.clone(), &ns);
    eventually("beta's Deployment", Duration::from_secs(60), || {
        let deployments = deployments.clone();
        async move { deployments.get_opt("beta-runtime").await.ok().flatten() }
    })
    .await;
    let cm = configs.get("alpha-config").await.expect("still there");
    assert_eq!(cm.data.unwrap_or_default().get("owner").map(String::as_str), Some("another team"), "not overwritten");
    assert!(cm.metadata.owner_references.is_none(), "not adopted");
    assert!(deployments.get_opt("alpha-runtime").await.expect("get").is_none(), "nothing of alpha applied");
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

/// Server-side apply semantics are the API server's: switching a bot from fixed replicas to
/// autoscaling keeps the running count (releasing `spec.replicas` would reset it to 1), and
/// once the autoscaler has written the scale subresource the operator lets go of the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_autoscaling_never_drops_to_one_replica_and_hands_replicas_to_the_autoscaler() {
    use botfleet_tests::fake_telegram::FakeTelegram;
    let Some(plane) = control_plane() else { return };
    let admin = client_as(plane, "admin").await;
    install_crds(&admin).await;
    let ns = namespace(&admin, "hpa").await;
    let fake = FakeTelegram::start().await.expect("fake Telegram");
    token_secrets(&admin, &ns, &fake.sim(), &[("alpha", "alpha_hpa_bot"), ("beta", "beta_hpa_bot")], false).await;
    for doc in samples() {
        let doc =
            if doc["kind"] == "BotInstance" && doc["metadata"]["name"] == "beta" { with(doc, "/spec/replicas", json!(4)) } else { doc };
        create(&admin, &ns, doc).await.expect("sample");
    }
    let (stop, task) = start_operator(admin.clone(), &ns, &fake.api_url());
    let deployments = Api::<Deployment>::namespaced(admin.clone(), &ns);
    let replicas = |deployments: Api<Deployment>| async move {
        deployments.get_opt("beta-runtime").await.ok().flatten().and_then(|d| d.spec.replicas)
    };
    eventually("beta at 4 replicas", Duration::from_secs(60), || {
        let d = deployments.clone();
        async move { (replicas(d).await == Some(4)).then_some(()) }
    })
    .await;

    let bots = api_for(&admin, &ns, "BotInstance");
    let switch = json!({"spec": {"replicas": null, "autoscaling": {"minReplicas": 2, "maxReplicas": 8}}});
    bots.patch("beta", &PatchParams::default(), &Patch::Merge(&switch)).await.expect("switch to autoscaling");
    let hpas = Api::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>::namespaced(admin.clone(), &ns);
    eventually("beta's HPA", Duration::from_secs(60), || {
        let hpas = hpas.clone();
        async move { hpas.get_opt("beta-runtime").await.ok().flatten() }
    })
    .await;
    for _ in 0..10 {
        assert_eq!(replicas(deployments.clone()).await, Some(4), "the running count is kept, never reset to 1");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The autoscaler scales (as the HPA controller does, through the scale subresource).
    let scale = json!({"spec": {"replicas": 6}});
    let as_hpa = PatchParams { field_manager: Some("horizontal-pod-autoscaler".into()), ..Default::default() };
    deployments.patch_scale("beta-runtime", &as_hpa, &Patch::Merge(&scale)).await.expect("scale");
    // A change of the bot makes the operator apply again; it must leave replicas to the HPA.
    let touch = json!({"metadata": {"annotations": {"test/touch": "1"}}});
    bots.patch("beta", &PatchParams::default(), &Patch::Merge(&touch)).await.expect("touch");
    eventually("the operator to let go of spec.replicas", Duration::from_secs(60), || {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get("beta-runtime").await.ok()?;
            let ours = d.metadata.managed_fields.iter().flatten().find(|m| m.manager.as_deref() == Some("botfleet-operator"))?;
            let fields = ours.fields_v1.as_ref()?.0.clone();
            (fields.pointer("/f:spec/f:template").is_some() && fields.pointer("/f:spec/f:replicas").is_none()).then_some(())
        }
    })
    .await;
    assert_eq!(replicas(deployments.clone()).await, Some(6), "the autoscaler's count stands");
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

/// Binds the chart's per-namespace rules (`botfleet.rules`) in `ns` to the ServiceAccount
/// `sa_ns/sa`, as the chart's Role and RoleBinding do for each watched namespace.
async fn grant_chart_role(admin: &Client, ns: &str, sa_ns: &str, sa: &str) {
    let role: k8s_openapi::api::rbac::v1::Role =
        serde_json::from_value(json!({"metadata": {"name": "botfleet"}, "rules": chart_rules()})).expect("role");
    Api::namespaced(admin.clone(), ns).create(&PostParams::default(), &role).await.expect("the API server accepts the chart's rules");
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "botfleet"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "botfleet"},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_ns}],
    }))
    .expect("binding");
    Api::namespaced(admin.clone(), ns).create(&PostParams::default(), &binding).await.expect("binding");
}

async fn service_account(admin: &Client, ns: &str, name: &str) {
    let sa: k8s_openapi::api::core::v1::ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).expect("sa");
    Api::namespaced(admin.clone(), ns).create(&PostParams::default(), &sa).await.expect("service account");
}

/// Least privilege, asked of the real authorizer the way `kubectl auth can-i` asks it: the
/// operator's ServiceAccount (in its release namespace) with exactly the chart's rules — the
/// per-namespace Role in the one watched namespace, the CRD-discovery ClusterRole, the Lease Role
/// — may do every verb the operator uses, and nothing of what it must never do: Secrets outside
/// the watched namespace, update/delete of any Secret, writes to pods, exec and logs, RBAC, and
/// cluster-scoped writes (it has none; its only cluster-scoped read is the ServiceMonitor CRD, by
/// name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_service_account_can_do_what_it_needs_and_nothing_more() {
    let Some(plane) = control_plane() else { return };
    let admin = client_as(plane, "admin").await;
    let release = namespace(&admin, "can-i-release").await;
    let watched = namespace(&admin, "can-i-watched").await;
    let other = namespace(&admin, "can-i-other").await;
    service_account(&admin, &release, "botfleet").await;
    grant_chart_role(&admin, &watched, &release, "botfleet").await;
    // The chart's two other grants, as rbac.yaml renders them (validate_chart.py pins their
    // rules): CRD discovery (the `botfleet.crdDiscoveryRules` define) and the Lease Role.
    let discovery = format!("{release}-crd-discovery");
    let cluster_role: k8s_openapi::api::rbac::v1::ClusterRole =
        serde_json::from_value(json!({"metadata": {"name": discovery}, "rules": chart_define("botfleet.crdDiscoveryRules")})).expect("cr");
    Api::all(admin.clone()).create(&PostParams::default(), &cluster_role).await.expect("cluster role");
    let cluster_binding: k8s_openapi::api::rbac::v1::ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": discovery},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": discovery},
        "subjects": [{"kind": "ServiceAccount", "name": "botfleet", "namespace": release}],
    }))
    .expect("crb");
    Api::all(admin.clone()).create(&PostParams::default(), &cluster_binding).await.expect("cluster role binding");
    let lease_role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(json!({
        "metadata": {"name": "botfleet-leader-election"},
        "rules": [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["botfleet-operator"], "verbs": ["get", "update", "patch"]},
        ],
    }))
    .expect("lease role");
    Api::namespaced(admin.clone(), &release).create(&PostParams::default(), &lease_role).await.expect("lease role");
    let lease_binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "botfleet-leader-election"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "botfleet-leader-election"},
        "subjects": [{"kind": "ServiceAccount", "name": "botfleet", "namespace": release}],
    }))
    .expect("lease binding");
    Api::namespaced(admin.clone(), &release).create(&PostParams::default(), &lease_binding).await.expect("lease binding");
    let operator = client_as_service_account(plane, &release, "botfleet").await;

    let secrets = can("get", "", "secrets");
    let needed: Vec<(Can, &str)> = vec![
        (can("list", "botfleet.io", "botinstances"), &watched),
        (can("watch", "botfleet.io", "vipplans"), &watched),
        (can("patch", "botfleet.io", "botinstances"), &watched),
        (can("patch", "botfleet.io", "botinstances").sub("status"), &watched),
        (can("update", "botfleet.io", "botinstances").sub("finalizers"), &watched),
        (secrets, &watched),
        (can("list", "", "secrets"), &watched),
        (can("watch", "", "secrets"), &watched),
        (can("create", "", "secrets"), &watched),
        (can("patch", "", "secrets"), &watched),
        (can("patch", "apps", "deployments"), &watched),
        (can("delete", "autoscaling", "horizontalpodautoscalers"), &watched),
        (can("patch", "", "configmaps"), &watched),
        (can("list", "", "pods"), &watched),
        (can("watch", "", "pods"), &watched),
        (can("create", "events.k8s.io", "events"), &watched),
        (can("get", "apiextensions.k8s.io", "customresourcedefinitions").named("servicemonitors.monitoring.coreos.com"), ""),
        (can("create", "coordination.k8s.io", "leases"), &release),
        (can("patch", "coordination.k8s.io", "leases").named("botfleet-operator"), &release),
    ];
    let forbidden: Vec<(Can, &str)> = vec![
        // Secrets: never update or delete, and nothing outside the watched namespace.
        (can("update", "", "secrets"), &watched),
        (can("delete", "", "secrets"), &watched),
        (can("deletecollection", "", "secrets"), &watched),
        (secrets, &other),
        (can("list", "", "secrets"), &other),
        (can("create", "", "secrets"), &other),
        (can("patch", "", "secrets"), &other),
        (secrets, &release),
        (can("list", "", "secrets"), ""),
        // Pods read only (no writes, no exec, no logs), no tokens, no RBAC, no objects outside
        // the watched namespace.
        (can("delete", "", "pods"), &watched),
        (can("patch", "", "pods"), &watched),
        (can("patch", "", "pods").sub("status"), &watched),
        (can("get", "", "pods").sub("log"), &watched),
        (can("list", "", "pods"), &other),
        (can("create", "", "pods").sub("exec"), &watched),
        (can("create", "", "serviceaccounts").sub("token"), &watched),
        (can("create", "rbac.authorization.k8s.io", "roles"), &watched),
        (can("bind", "rbac.authorization.k8s.io", "clusterroles"), ""),
        (can("impersonate", "", "users"), ""),
        (can("patch", "apps", "deployments"), &other),
        (can("list", "botfleet.io", "botinstances"), &other),
        (can("patch", "coordination.k8s.io", "leases").named("another-lease"), &release),
        // Cluster-scoped: no writes at all, and no other CRD readable.
        (can("create", "", "namespaces"), ""),
        (can("delete", "", "namespaces"), ""),
        (can("get", "", "nodes"), ""),
        (can("create", "rbac.authorization.k8s.io", "clusterroles"), ""),
        (can("create", "rbac.authorization.k8s.io", "clusterrolebindings"), ""),
        (can("create", "apiextensions.k8s.io", "customresourcedefinitions"), ""),
        (can("patch", "apiextensions.k8s.io", "customresourcedefinitions").named("servicemonitors.monitoring.coreos.com"), ""),
        (can("get", "apiextensions.k8s.io", "customresourcedefinitions").named("botinstances.botfleet.io"), ""),
        (can("list", "apiextensions.k8s.io", "customresourcedefinitions"), ""),
        (can("delete", "admissionregistration.k8s.io", "validatingadmissionpolicies"), ""),
        (can("delete", "admissionregistration.k8s.io", "validatingadmissionpolicybindings"), ""),
    ];
    let mut wrong = Vec::new();
    for (q, ns) in &needed {
        if !allowed(&operator, *q, ns).await {
            wrong.push(format!("needed but denied: {q:?} in {ns:?}"));
        }
    }
    for (q, ns) in &forbidden {
        if allowed(&operator, *q, ns).await {
            wrong.push(format!("must be denied but allowed: {q:?} in {ns:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Negative control: the question is the ServiceAccount's, not the admin's.
    assert!(allowed(&admin, can("delete", "", "secrets"), &watched).await);
}

/// The chart's ValidatingAdmissionPolicy (its rule is `botfleet.secretAdmission`; the match
/// condition on the operator's ServiceAccount is built as admissionpolicy.yaml builds it) on the
/// real API server: RBAC lets the operator patch any Secret of a watched namespace, the policy
/// does not — patching a user's token Secret or the namespace's payload keys is refused, while
/// the operator's own Secrets still reconcile (a token rotation re-applies its token copy, an
/// UPDATE the policy evaluates and allows). The admin is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admission_policy_refuses_the_operator_a_users_secret_while_its_own_secrets_reconcile() {
    use botfleet_tests::fake_telegram::FakeTelegram;
    use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
    let Some(plane) = control_plane() else { return };
    let admin = client_as(plane, "admin").await;
    install_crds(&admin).await;
    let ns = namespace(&admin, "vap").await;
    service_account(&admin, &ns, "botfleet").await;
    grant_chart_role(&admin, &ns, &ns, "botfleet").await;
    let mut spec = chart_define("botfleet.secretAdmission");
    spec["failurePolicy"] = json!("Fail");
    spec["matchConditions"] = json!([{
        "name": "the-operators-service-account",
        "expression": format!("request.userInfo.username == 'system:serviceaccount:{ns}:botfleet'"),
    }]);
    let name = format!("{ns}-own-secrets-only");
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("policy");
    Api::all(admin.clone()).create(&PostParams::default(), &policy).await.expect("the API server accepts the chart's policy");
    let binding: ValidatingAdmissionPolicyBinding =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"policyName": name, "validationActions": ["Deny"]}}))
            .expect("binding");
    Api::all(admin.clone()).create(&PostParams::default(), &binding).await.expect("binding");

    let fake = FakeTelegram::start().await.expect("fake Telegram");
    let secrets = Api::<Secret>::namespaced(admin.clone(), &ns);
    token_secrets(&admin, &ns, &fake.sim(), &[("alpha", "alpha_vap_bot"), ("beta", "beta_vap_bot")], true).await;
    let operator = client_as_service_account(plane, &ns, "botfleet").await;
    let as_operator = Api::<Secret>::namespaced(operator.clone(), &ns);
    let touch = json!({"metadata": {"labels": {"botfleet.io/touched-by": "operator"}}});
    // The policy is enforced once the API server has loaded it: poll with dry-run patches.
    let refusal = eventually("the policy to be enforced", Duration::from_secs(30), || {
        let as_operator = as_operator.clone();
        let touch = touch.clone();
        async move {
            match as_operator.patch("alpha-bot-token", &PatchParams { dry_run: true, ..Default::default() }, &Patch::Merge(&touch)).await {
                Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("ValidatingAdmissionPolicy") => Some(s.message),
                _ => None,
            }
        }
    })
    .await;
    assert!(refusal.contains("may change only its own Secrets") && refusal.contains("alpha-bot-token"), "{refusal}");
    assert!(allowed(&operator, can("patch", "", "secrets"), &ns).await, "RBAC allows the patch: the refusal is the policy's");

    for doc in samples() {
        create(&admin, &ns, doc).await.expect("sample");
    }
    let (stop, task) = start_operator(operator.clone(), &ns, &fake.api_url());
    let bots = api_for(&admin, &ns, "BotInstance");
    let fingerprint_of = |bots: Api<DynamicObject>, bot: &'static str| async move {
        let b = bots.get(bot).await.ok()?;
        let conditions = b.data.pointer("/status/conditions")?.as_array()?.clone();
        let valid = conditions.iter().any(|c| c["type"] == "TokenValid" && c["status"] == "True");
        valid.then(|| b.data.pointer("/status/tokenFingerprint").and_then(Value::as_str).map(str::to_string)).flatten()
    };
    for bot in ["alpha", "beta"] {
        eventually(&format!("{bot} reconciled under the policy"), Duration::from_secs(60), || fingerprint_of(bots.clone(), bot)).await;
    }

    // Rotation: the operator re-applies its own token copy — an UPDATE the policy allows.
    let rotated = fake.sim().rotate_token("alpha_vap_bot").expect("rotate").token;
    let new_token = json!({"stringData": {"token": rotated}});
    secrets.patch("alpha-bot-token", &PatchParams::default(), &Patch::Merge(&new_token)).await.expect("the admin rotates the token");
    let wanted = botfleet_crds::token::fingerprint(&rotated);
    eventually("alpha on the rotated token", Duration::from_secs(60), || {
        let bots = bots.clone();
        let wanted = wanted.clone();
        async move { (fingerprint_of(bots, "alpha").await? == wanted).then_some(()) }
    })
    .await;
    let copy = secrets.get("alpha-runtime-token").await.expect("the operator's copy");
    let stored = copy.data.and_then(|d| d.get("token").map(|b| String::from_utf8_lossy(&b.0).into_owned()));
    assert_eq!(stored.as_deref(), Some(rotated.as_str()), "the operator updated its own Secret under the policy");

    // Never the user's Secret, nor the payload keys (the operator's, but owned by no bot).
    for secret in ["alpha-bot-token", "botfleet-payload-keys"] {
        match as_operator.patch(secret, &PatchParams::default(), &Patch::Merge(&touch)).await {
            Err(kube::Error::Api(s)) => assert!(s.code == 403 && s.message.contains("may change only its own Secrets"), "{secret}: {s:?}"),
            other => panic!("the operator patched {secret}: {other:?}"),
        }
    }
    let user_secret = secrets.get("alpha-bot-token").await.expect("user secret");
    assert!(user_secret.metadata.labels.unwrap_or_default().get("botfleet.io/touched-by").is_none(), "unchanged");
    secrets.patch("alpha-bot-token", &PatchParams::default(), &Patch::Merge(&touch)).await.expect("the policy binds the operator only");
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

/// A runtime that cannot start, on the real API server. The operator runs as its ServiceAccount
/// under the chart's Role, which lets it read pods and nothing more. The test plays the kubelet
/// (there is none here): it writes a runtime pod's status as the kubelet does after the runtime
/// refused a Redis without persistence and is crash-looping, with its last log lines as the
/// termination message. The bot turns `Ready=False RuntimeFailed` with that message, a Warning
/// Event `RuntimeFailed` names it, and once the pod runs and is ready the bot is Ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_that_cannot_start_makes_its_bot_not_ready_with_the_termination_message_and_an_event() {
    use botfleet_tests::fake_telegram::FakeTelegram;
    use k8s_openapi::api::core::v1::Pod;
    let Some(plane) = control_plane() else { return };
    let admin = client_as(plane, "admin").await;
    install_crds(&admin).await;
    let ns = namespace(&admin, "crash").await;
    service_account(&admin, &ns, "botfleet").await;
    grant_chart_role(&admin, &ns, &ns, "botfleet").await;
    let fake = FakeTelegram::start().await.expect("fake Telegram");
    token_secrets(&admin, &ns, &fake.sim(), &[("alpha", "alpha_crash_bot"), ("beta", "beta_crash_bot")], true).await;
    for doc in samples() {
        create(&admin, &ns, doc).await.expect("sample");
    }
    let operator = client_as_service_account(plane, &ns, "botfleet").await;
    let (stop, task) = start_operator(operator, &ns, &fake.api_url());

    // The controller manager creates alpha's pods (Pending: no kubelet binds them).
    let pods = Api::<Pod>::namespaced(admin.clone(), &ns);
    let alpha_pods = ListParams::default().labels("app.kubernetes.io/instance=alpha");
    let pod = eventually("alpha's runtime pods", Duration::from_secs(60), || {
        let (pods, alpha_pods) = (pods.clone(), alpha_pods.clone());
        async move { pods.list(&alpha_pods).await.ok()?.items.into_iter().filter_map(|p| p.metadata.name).min() }
    })
    .await;
    let logs = "2026-12-01T06:00:00.000Z  INFO bot_runtime: starting bot alpha\nError: Redis would lose messages: appendonly is \"no\" (a restart loses queued messages and timers; set appendonly yes). Fix its configuration, or set REDIS_ACCEPT_DATA_LOSS=true for a test setup\n";
    let crashed = json!({"status": {"phase": "Running", "containerStatuses": [{
        "name": "bot-runtime", "image": "ghcr.io/botfleet/bot-runtime:test", "imageID": "", "ready": false, "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container=bot-runtime"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": logs,
            "startedAt": "2026-12-01T06:00:00Z", "finishedAt": "2026-12-01T06:00:01Z"}},
    }]}});
    pods.patch_status(&pod, &PatchParams::default(), &Patch::Merge(&crashed)).await.expect("the kubelet's status");

    let bots = api_for(&admin, &ns, "BotInstance");
    let ready = |bots: Api<DynamicObject>| async move {
        let b = bots.get("alpha").await.ok()?;
        b.data.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == "Ready").cloned()
    };
    let condition = eventually("alpha Ready=False RuntimeFailed", Duration::from_secs(60), || {
        let bots = bots.clone();
        async move { ready(bots).await.filter(|c| c["reason"] == "RuntimeFailed") }
    })
    .await;
    let message = condition["message"].as_str().unwrap_or_default().to_string();
    assert_eq!(condition["status"], "False");
    assert!(
        message.starts_with(&format!("pod {pod}: container bot-runtime exited with code 1 (Error): "))
            && message.contains("Redis would lose messages: appendonly is \"no\""),
        "{message}"
    );
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(admin.clone(), &ns);
    let event = eventually("a RuntimeFailed Event on alpha", Duration::from_secs(30), || {
        let events = events.clone();
        async move {
            events.list(&ListParams::default()).await.ok()?.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("RuntimeFailed") && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("alpha")
            })
        }
    })
    .await;
    assert_eq!((event.type_.as_deref(), event.note.as_deref()), (Some("Warning"), Some(message.as_str())));

    // The runtime starts after all: the pod runs and is ready, the Deployment counts it, the bot
    // is Ready again.
    let running = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
        "containerStatuses": [{
            "name": "bot-runtime", "image": "ghcr.io/botfleet/bot-runtime:test", "imageID": "", "ready": true, "started": true,
            "restartCount": 4, "state": {"running": {"startedAt": "2026-12-01T06:01:00Z"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": logs}},
        }],
    }});
    pods.patch_status(&pod, &PatchParams::default(), &Patch::Merge(&running)).await.expect("the kubelet's status");
    eventually("alpha Ready=True again", Duration::from_secs(60), || {
        let bots = bots.clone();
        async move { ready(bots).await.filter(|c| c["status"] == "True") }
    })
    .await;
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
