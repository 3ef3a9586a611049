//! The Helm chart on the real control plane (`tests/controlplane`, docs/CONTROLPLANE.md) with
//! the real Helm engine: Helm v4's library through helm-python-sdk, driven by
//! `charts/tests/helm_release.py` (run with `$BOTFLEET_CHART_PYTHON`, the venv `.ci/run`
//! prepares). What `helm install` and `helm upgrade` really do to a cluster is checked here:
//! the objects they create, in both RBAC modes, and the CRD upgrade procedure docs/DEPLOY.md
//! gives ("CRD upgrades").
//!
//! The CRDs are cluster-scoped: the CRD-upgrade test, which installs an older CRD set, has a
//! control plane of its own; the other tests share one.
//!
//! Without the control plane or the chart tools the tests say so and pass; with `CI` set they
//! fail — CI never skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use serde_json::{Value, json};

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/controlplane.rs"]
mod controlplane;
#[path = "support/helm.rs"]
mod helm;
use cluster::{
    allowed, api_for, can, client_as, control_plane, crd_documents, eventually, namespace, own_control_plane, samples, token_secrets,
    wait_established,
};
use controlplane::{ControlPlane, repo};
use helm::{Helm, chart_python, manifest_objects};

/// The field manager docs/DEPLOY.md names for `kubectl apply --server-side` of the CRDs.
const CRD_FIELD_MANAGER: &str = "botfleet-crds";

fn id(obj: &Value) -> String {
    let ns = obj["metadata"]["namespace"].as_str().map(|n| format!("{n}/")).unwrap_or_default();
    format!("{} {ns}{}", obj["kind"].as_str().unwrap_or("?"), obj["metadata"]["name"].as_str().unwrap_or("?"))
}

/// The live object for a rendered one (None when the API server does not have it).
async fn live(client: &Client, obj: &Value) -> Option<Value> {
    let (group, version) = match obj["apiVersion"].as_str().expect("apiVersion").split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), obj["apiVersion"].as_str().unwrap_or_default().to_string()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, obj["kind"].as_str().expect("kind"));
    let (resource, caps) = pinned_kind(client, &gvk).await.unwrap_or_else(|e| panic!("{}: not served: {e}", id(obj)));
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), obj["metadata"]["namespace"].as_str().expect("namespace"), &resource),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let found = api.get_opt(obj["metadata"]["name"].as_str().expect("name")).await.expect("get");
    found.map(|o| serde_json::to_value(o).expect("json"))
}

/// Whether `live` holds everything `rendered` says (the API server adds defaults and metadata;
/// it drops empty values, so an empty rendered value matches an absent one). Err: the first
/// difference, as a path.
fn holds(live: &Value, rendered: &Value, path: &str) -> Result<(), String> {
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    match (live, rendered) {
        (Value::Object(l), Value::Object(r)) => {
            for (k, rv) in r {
                match l.get(k) {
                    Some(lv) => holds(lv, rv, &format!("{path}.{k}"))?,
                    None if empty(rv) => {}
                    None => return Err(format!("{path}.{k} is missing (rendered {rv})")),
                }
            }
            Ok(())
        }
        (Value::Array(l), Value::Array(r)) if l.len() == r.len() => {
            l.iter().zip(r).enumerate().try_for_each(|(i, (lv, rv))| holds(lv, rv, &format!("{path}[{i}]")))
        }
        (l, r) if l == r => Ok(()),
        (Value::Number(l), Value::Number(r)) if l.as_f64() == r.as_f64() => Ok(()),
        (l, r) => Err(format!("{path} is {l}, rendered {r}")),
    }
}

fn crd_names() -> Vec<String> {
    crd_documents().iter().map(|d| d["metadata"]["name"].as_str().expect("crd name").to_string()).collect()
}

fn established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"))
}

/// `helm install` in one RBAC mode, into its own namespace: the CRDs are installed and
/// Established, every object of the rendered manifest exists on the API server as rendered,
/// `helm status` says deployed, the bindings grant the operator's ServiceAccount what the mode
/// promises (and not more), and `helm uninstall` removes the release but keeps the CRDs.
async fn install_in_mode(test: &str, release: &str, cluster_wide: bool) {
    let Some(plane) = control_plane() else { return };
    let Some(python) = chart_python() else { return };
    let admin = client_as(plane, "admin").await;
    let ns = namespace(&admin, test).await;
    let watched = namespace(&admin, &format!("{test}-bots")).await;
    let other = namespace(&admin, &format!("{test}-other")).await;
    let values = if cluster_wide { json!({"clusterWide": true, "watchNamespaces": []}) } else { json!({"watchNamespaces": [watched]}) };
    let helm = Helm::new(python, plane, &ns);
    let installed = helm.install(release, &repo().join("charts/botfleet"), &values);
    assert_eq!((installed["status"].as_str(), installed["revision"].as_i64()), (Some("deployed"), Some(1)), "{installed}");

    // The CRDs of crds/: installed, Established, with the chart's schemas.
    let crds = wait_established(&admin, &crd_names()).await;
    for (crd, doc) in crds.iter().zip(crd_documents()) {
        assert!(established(crd));
        let stored = serde_json::to_value(&crd.spec).expect("spec");
        holds(&stored, &doc["spec"], "spec").unwrap_or_else(|e| panic!("{}: {e}", doc["metadata"]["name"]));
    }

    // Every rendered object, as rendered.
    let objects = manifest_objects(&installed);
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    let expected =
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "ValidatingAdmissionPolicy"];
    for kind in expected {
        assert!(kinds.contains(&kind), "{kind} rendered: {kinds:?}");
    }
    for obj in &objects {
        let found = live(&admin, obj).await.unwrap_or_else(|| panic!("{} was rendered but is not on the API server", id(obj)));
        holds(&found, obj, "").unwrap_or_else(|e| panic!("{}: {e}", id(obj)));
    }
    let roles: Vec<String> = objects.iter().filter(|o| o["kind"] == "Role").map(id).collect();
    let fullname = format!("{release}-botfleet");
    if cluster_wide {
        assert!(
            objects.iter().any(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == fullname.as_str()),
            "the operator's ClusterRole"
        );
        assert_eq!(roles, vec![format!("Role {ns}/{fullname}-leader-election")], "only the Lease Role is namespaced");
    } else {
        assert!(!objects.iter().any(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == fullname.as_str()), "no cluster-wide grant");
        assert!(roles.contains(&format!("Role {watched}/{fullname}")), "{roles:?}");
    }
    let status = helm.status(release);
    assert_eq!((status["status"].as_str(), status["revision"].as_i64()), (Some("deployed"), Some(1)), "{status}");

    // What the bindings give the operator's ServiceAccount (the real authorizer).
    let operator = cluster::client_as_service_account(plane, &ns, &fullname).await;
    assert!(allowed(&operator, can("list", "botfleet.io", "botinstances"), &watched).await);
    assert!(allowed(&operator, can("patch", "coordination.k8s.io", "leases").named("botfleet-operator"), &ns).await);
    assert_eq!(allowed(&operator, can("list", "botfleet.io", "botinstances"), &other).await, cluster_wide, "another namespace");
    assert_eq!(allowed(&operator, can("get", "", "secrets"), &other).await, cluster_wide, "Secrets of another namespace");
    assert!(!allowed(&operator, can("delete", "", "secrets"), &watched).await, "never delete a Secret");

    // Uninstall: the release's objects go, the CRDs (and so every bot) stay.
    helm.uninstall(release);
    let admin_ref = &admin;
    for obj in &objects {
        eventually(&format!("{} removed by helm uninstall", id(obj)), Duration::from_secs(60), move || async move {
            live(admin_ref, obj).await.is_none().then_some(())
        })
        .await;
    }
    let crds = Api::<CustomResourceDefinition>::all(admin.clone());
    for name in crd_names() {
        assert!(crds.get_opt(&name).await.expect("get").is_some(), "helm uninstall keeps the CRD {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_in_the_default_namespaced_mode_creates_the_rendered_objects() {
    install_in_mode("helm-ns", "nsmode", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_in_cluster_wide_mode_creates_the_rendered_objects() {
    install_in_mode("helm-cw", "cwmode", true).await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn read_yaml(path: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("read")).expect("yaml")
}

fn write_yaml(path: &Path, value: &Value) {
    std::fs::write(path, serde_yaml::to_string(value).expect("yaml")).expect("write");
}

/// The chart as an earlier version shipped it, built from the current one by taking out two
/// things this release added (git log -p: 47511ab and e8d1434): VipPlan `spec.billing` (a field
/// with a default and a CEL rule using it) and the `admissionPolicy` value (with its template).
fn older_chart(dir: &Path) -> PathBuf {
    let chart = dir.join("botfleet-0.0.9");
    let _ = std::fs::remove_dir_all(&chart);
    copy_dir(&repo().join("charts/botfleet"), &chart);
    let mut meta = read_yaml(&chart.join("Chart.yaml"));
    meta["version"] = json!("0.0.9");
    write_yaml(&chart.join("Chart.yaml"), &meta);

    let crd_file = chart.join("crds/vipplans.botfleet.io.yaml");
    let mut crd = read_yaml(&crd_file);
    let spec = crd.pointer_mut("/spec/versions/0/schema/openAPIV3Schema/properties/spec").expect("VipPlan spec schema");
    spec["properties"].as_object_mut().expect("properties").remove("billing").expect("this release's VipPlan has billing");
    let rules = spec["x-kubernetes-validations"].as_array_mut().expect("VipPlan spec rules");
    rules.retain(|r| !r["rule"].as_str().unwrap_or_default().contains("billing"));
    if rules.is_empty() {
        spec.as_object_mut().expect("spec").remove("x-kubernetes-validations");
    }
    write_yaml(&crd_file, &crd);

    std::fs::remove_file(chart.join("templates/admissionpolicy.yaml")).expect("the admission policy template");
    let mut values = read_yaml(&chart.join("values.yaml"));
    values.as_object_mut().expect("values").remove("admissionPolicy").expect("admissionPolicy value");
    write_yaml(&chart.join("values.yaml"), &values);
    let schema_file = chart.join("values.schema.json");
    let mut schema: Value = serde_json::from_str(&std::fs::read_to_string(&schema_file).expect("schema")).expect("json");
    schema["properties"].as_object_mut().expect("properties").remove("admissionPolicy");
    schema["required"].as_array_mut().expect("required").retain(|r| r != "admissionPolicy");
    std::fs::write(&schema_file, schema.to_string()).expect("write schema");
    chart
}

fn vip_plan(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "botfleet.io/v1alpha1", "kind": "VipPlan", "metadata": {"name": name}, "spec": spec}))
        .expect("VipPlan")
}

/// docs/DEPLOY.md, "CRD upgrades", on the real API server with the real Helm: a release
/// installed from an older chart (its VipPlan CRD without `billing`) holds a VipPlan; `helm
/// upgrade` alone leaves the CRD exactly as it was (Helm never upgrades crds/, as the doc
/// says); `--reuse-values` cannot upgrade to a chart that added a required value, so the doc
/// says `--reset-then-reuse-values`; the doc's server-side apply of the new CRDs conflicts with
/// the manager Helm created them with unless it forces, as the doc's `--force-conflicts` does;
/// after the documented sequence the old VipPlan is still served and valid with the new
/// field's default, and new VipPlans use the new field under its CEL rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_crd_goes_through_helm_upgrade_as_documented() {
    let Some(python) = chart_python() else { return };
    let Some(plane) = own_control_plane("crd-upgrade") else { return };
    let plane = &plane;
    let admin = client_as(plane, "admin").await;
    let crds = Api::<CustomResourceDefinition>::all(admin.clone());
    for name in crd_names() {
        assert!(crds.get_opt(&name).await.expect("get").is_none(), "a fresh cluster");
    }

    let ns = namespace(&admin, "helm-upgrade").await;
    let watched = namespace(&admin, "helm-upgrade-bots").await;
    let helm = Helm::new(python, plane, &ns);
    let old_chart = older_chart(&plane.dir);
    let new_chart = repo().join("charts/botfleet");
    let installed = helm.install("botfleet", &old_chart, &json!({"watchNamespaces": [watched]}));
    assert_eq!(installed["chart_version"], "0.0.9");
    wait_established(&admin, &crd_names()).await;
    let billing = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/billing";
    let old_crd = crds.get("vipplans.botfleet.io").await.expect("VipPlan CRD");
    let old_crd_json = serde_json::to_value(&old_crd).expect("json");
    assert!(old_crd_json.pointer(billing).is_none(), "the older CRD has no billing");

    let plans = api_for(&admin, &watched, "VipPlan");
    let week = json!({"title": "VIP week", "description": "7 days of VIP", "priceStars": 100, "grants": {"vipDays": 7}});
    let stored = plans.create(&PostParams::default(), &vip_plan("vip-week", week.clone())).await.expect("an old VipPlan");
    assert!(stored.data.pointer("/spec/billing").is_none(), "stored under the old schema");

    // `helm upgrade` alone never touches crds/; and --reuse-values cannot take a value the new
    // chart requires (the older release's values replace the new chart's defaults).
    let set_tag = json!({"image": {"tag": "0.1.1"}});
    let refused = helm.upgrade("botfleet", &new_chart, "--reuse-values", &set_tag).expect_err("--reuse-values misses admissionPolicy");
    assert!(refused.contains("admissionPolicy"), "{refused}");
    let upgraded = helm.upgrade("botfleet", &new_chart, "--reset-then-reuse-values", &set_tag).expect("helm upgrade");
    assert_eq!((upgraded["status"].as_str(), upgraded["chart_version"].as_str()), (Some("deployed"), Some("0.1.0")), "{upgraded}");
    let after_helm = crds.get("vipplans.botfleet.io").await.expect("VipPlan CRD");
    assert_eq!(after_helm.metadata.resource_version, old_crd.metadata.resource_version, "helm upgrade changed the CRD");
    assert!(serde_json::to_value(&after_helm).expect("json").pointer(billing).is_none());
    let objects = manifest_objects(&upgraded);
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").expect("Deployment");
    let live_deployment = live(&admin, deployment).await.expect("the operator's Deployment");
    let image = live_deployment.pointer("/spec/template/spec/containers/0/image").and_then(Value::as_str).unwrap_or_default();
    assert!(image.ends_with(":0.1.1"), "--set image.tag applied: {image}");
    assert!(objects.iter().any(|o| o["kind"] == "Role" && o["metadata"]["namespace"] == watched.as_str()), "watchNamespaces reused");
    let policy = objects.iter().find(|o| o["kind"] == "ValidatingAdmissionPolicy").expect("the new chart's default applies");
    assert!(live(&admin, policy).await.is_some());

    // The documented step: `kubectl apply --server-side --force-conflicts
    // --field-manager=botfleet-crds -f charts/botfleet/crds/`, which is this server-side apply
    // of each file. Without forcing, the changed CRD conflicts with the manager Helm created it
    // with ("helm" for the CLI; this library reports its process name).
    let docs = crd_documents();
    let vip_doc = docs.iter().find(|d| d["metadata"]["name"] == "vipplans.botfleet.io").expect("VipPlan CRD file");
    match crds.patch("vipplans.botfleet.io", &PatchParams::apply(CRD_FIELD_MANAGER), &Patch::Apply(vip_doc)).await {
        Err(kube::Error::Api(s)) => assert!(s.code == 409 && s.message.contains(".spec.versions"), "{s:?}"),
        other => panic!("an unforced apply of the changed CRD was not a conflict: {other:?}"),
    }
    for doc in &docs {
        let name = doc["metadata"]["name"].as_str().expect("name");
        crds.patch(name, &PatchParams::apply(CRD_FIELD_MANAGER).force(), &Patch::Apply(doc))
            .await
            .unwrap_or_else(|e| panic!("the documented apply of {name}: {e}"));
    }
    let upgraded_crds = wait_established(&admin, &crd_names()).await;
    let new_crd = upgraded_crds.iter().find(|c| c.metadata.name.as_deref() == Some("vipplans.botfleet.io")).expect("VipPlan CRD");
    assert!(serde_json::to_value(new_crd).expect("json").pointer(billing).is_some(), "the applied CRD has billing");
    let upgraded = helm.upgrade("botfleet", &new_chart, "--reset-then-reuse-values", &set_tag).expect("helm upgrade after the CRDs");
    assert_eq!(upgraded["revision"], 3);
    let kept = crds.get("vipplans.botfleet.io").await.expect("VipPlan CRD");
    assert_eq!(kept.metadata.resource_version, new_crd.metadata.resource_version, "helm upgrade left the applied CRD alone");
    let status = helm.status("botfleet");
    assert_eq!((status["status"].as_str(), status["revision"].as_i64()), (Some("deployed"), Some(3)), "{status}");

    // The new field is served: its default appears on the old VipPlan, which stays valid
    // (an update goes through the new schema and its CEL rules) …
    let plans_ref = &plans;
    eventually("the old VipPlan served with billing: OneTime", Duration::from_secs(30), move || async move {
        let plan = plans_ref.get("vip-week").await.ok()?;
        (plan.data.pointer("/spec/billing") == Some(&json!("OneTime"))).then_some(())
    })
    .await;
    let touched = plans
        .patch("vip-week", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"touched": "after-upgrade"}}})))
        .await
        .expect("the old VipPlan is valid under the new schema");
    assert_eq!(touched.data.pointer("/spec/billing"), Some(&json!("OneTime")));
    assert_eq!(touched.data.pointer("/spec/grants/vipDays"), Some(&json!(7)), "and means what it meant");
    // … and a new VipPlan may use it, within the rule that came with it.
    let monthly = json!({"title": "VIP monthly", "description": "VIP, renewed monthly", "priceStars": 250, "billing": "Monthly", "grants": {"vipDays": 30}});
    let created = plans.create(&PostParams::default(), &vip_plan("vip-monthly", monthly.clone())).await.expect("a Monthly plan");
    assert_eq!(created.data.pointer("/spec/billing"), Some(&json!("Monthly")));
    let mut bad = monthly;
    bad["grants"]["vipDays"] = json!(7);
    match plans.create(&PostParams::default(), &vip_plan("vip-monthly-7", bad)).await {
        Err(kube::Error::Api(s)) => assert!(s.code == 422 && s.message.contains("Monthly"), "{s:?}"),
        other => panic!("the new CEL rule is not enforced: {other:?}"),
    }
}

/// One operator replica as its pod would run: the real `operator` binary with the container's
/// args and environment exactly as the chart renders them (the downward API filled in), a
/// kubeconfig holding a token of the release's ServiceAccount (TokenRequest, as a projected
/// volume would get) and nothing else of this process's environment.
struct Replica {
    name: String,
    child: std::process::Child,
    metrics: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A kubeconfig for `token`, against the control plane, trusting its CA.
fn service_account_kubeconfig(plane: &ControlPlane, token: &str, path: &Path) {
    let admin = read_yaml(&plane.dir.join("admin.kubeconfig"));
    let server = admin.pointer("/clusters/0/cluster/server").and_then(Value::as_str).expect("server");
    let config = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority": plane.dir.join("ca.crt")}}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": "operator"}}],
    });
    write_yaml(path, &config);
}

fn start_replica(container: &Value, pod: &str, namespace: &str, kubeconfig: &Path, log_dir: &Path) -> Replica {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_operator"));
    assert_eq!(container["command"], json!(["/operator"]), "the image's entrypoint is the operator binary");
    for arg in container["args"].as_array().expect("args") {
        command.arg(arg.as_str().expect("arg"));
    }
    command.env_clear();
    for var in container["env"].as_array().expect("env") {
        let name = var["name"].as_str().expect("env name");
        let value = match var.pointer("/valueFrom/fieldRef/fieldPath").and_then(Value::as_str) {
            Some("metadata.name") => pod.to_string(),
            Some("metadata.namespace") => namespace.to_string(),
            Some(other) => panic!("{name}: a fieldRef this test does not fill: {other}"),
            None => var["value"].as_str().unwrap_or_default().to_string(),
        };
        command.env(name, value);
    }
    // Each replica has its own address here (pods would each have theirs).
    command.env("METRICS_ADDR", format!("127.0.0.1:{port}")).env("KUBECONFIG", kubeconfig).env("HOME", log_dir);
    let log = std::fs::File::create(log_dir.join(format!("{pod}.log"))).expect("log file");
    let child = command
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("the operator binary starts");
    Replica { name: pod.to_string(), child, metrics: format!("http://127.0.0.1:{port}/metrics") }
}

/// The replica's `botfleet_operator_leader` gauge (None while it does not answer).
async fn leader_gauge(replica: &Replica) -> Option<i64> {
    let text = reqwest::get(&replica.metrics).await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix("botfleet_operator_leader ")).and_then(|v| v.trim().parse().ok())
}

/// Whether `bot`'s webhook was registered by the replica `pod` (its Events name the reporting
/// instance; the operator's Reporter is its pod name).
async fn registered_by(events: &Api<k8s_openapi::api::events::v1::Event>, bot: &str, pod: &str) -> bool {
    let list = events.list(&Default::default()).await.expect("events");
    list.items.iter().any(|e| {
        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(bot)
            && e.reason.as_deref() == Some("WebhookRegistered")
            && e.reporting_instance.as_deref() == Some(pod)
    })
}

/// Two replicas of the operator from a `helm install` (no kubelet here: the two processes are
/// started as the chart's Deployment would start them, under the release's ServiceAccount and
/// its RBAC): one holds the Lease and reconciles, the other stands by; when the leader is killed
/// (SIGKILL: no chance to hand over) the standby takes the Lease once it expires — within the
/// Lease's duration — and reconciles a bot created after the handover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operator_replicas_elect_one_leader_and_the_standby_takes_over_when_it_is_killed() {
    use botfleet_tests::fake_telegram::FakeTelegram;
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let Some(plane) = control_plane() else { return };
    let Some(python) = chart_python() else { return };
    let admin = client_as(plane, "admin").await;
    let ns = namespace(&admin, "leader").await;
    let watched = namespace(&admin, "leader-bots").await;
    let fake = FakeTelegram::start().await.expect("fake Telegram");
    let helm = Helm::new(python, plane, &ns);
    let values = json!({"watchNamespaces": [watched], "telegram": {"apiUrl": fake.api_url()}});
    let installed = helm.install("leader", &repo().join("charts/botfleet"), &values);
    wait_established(&admin, &crd_names()).await;
    let objects = manifest_objects(&installed);
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").expect("the operator's Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2, "the chart's default: two replicas");
    let pod_spec = &deployment["spec"]["template"]["spec"];
    let container = &pod_spec["containers"][0];
    let sa = pod_spec["serviceAccountName"].as_str().expect("serviceAccountName");

    // The ServiceAccount's token, as the pod's projected volume would hold it.
    let request: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).expect("request");
    let token: TokenRequest = Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .create_subresource("token", sa, &PostParams::default(), &request)
        .await
        .expect("TokenRequest");
    let kubeconfig = plane.dir.join(format!("{ns}-operator.kubeconfig"));
    let token = token.status.and_then(|s| s.token).expect("a token");
    service_account_kubeconfig(plane, &token, &kubeconfig);
    // Whoever uses that kubeconfig is the release's ServiceAccount (SelfSubjectReview).
    let as_replica = cluster::client_from(&kubeconfig).await;
    let review: k8s_openapi::api::authentication::v1::SelfSubjectReview = serde_json::from_value(json!({"metadata": {}})).expect("review");
    let me = Api::all(as_replica).create(&PostParams::default(), &review).await.expect("SelfSubjectReview");
    let user = me.status.and_then(|s| s.user_info).and_then(|u| u.username);
    assert_eq!(user, Some(format!("system:serviceaccount:{ns}:{sa}")), "the replicas run as the release's ServiceAccount");

    let logs = plane.dir.join(&ns);
    std::fs::create_dir_all(&logs).expect("log dir");
    let mut replicas: Vec<Replica> =
        ["leader-botfleet-0", "leader-botfleet-1"].iter().map(|pod| start_replica(container, pod, &ns, &kubeconfig, &logs)).collect();
    let lease_name = container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|v| v["name"] == "LEASE_NAME"))
        .and_then(|v| v["value"].as_str())
        .expect("LEASE_NAME")
        .to_string();
    let leases = Api::<Lease>::namespaced(admin.clone(), &ns);
    let holder = |leases: Api<Lease>, lease: String| async move {
        let l = leases.get_opt(&lease).await.ok()??;
        let spec = l.spec?;
        Some((spec.holder_identity?, spec.lease_duration_seconds?))
    };
    let (first, duration) = eventually("a leader", Duration::from_secs(60), || holder(leases.clone(), lease_name.clone())).await;
    let leader = replicas.iter().position(|r| r.name == first).unwrap_or_else(|| panic!("the Lease holder {first} is a replica"));
    let standby = 1 - leader;
    for (i, replica) in replicas.iter().enumerate() {
        let want = i64::from(i == leader);
        eventually(&format!("{} reports leader={want}", replica.name), Duration::from_secs(30), || async move {
            (leader_gauge(replica).await == Some(want)).then_some(())
        })
        .await;
    }

    // The leader reconciles; the standby does not.
    token_secrets(&admin, &watched, &fake.sim(), &[("alpha", "alpha_leader_bot"), ("beta", "beta_leader_bot")], true).await;
    let sample_bot = |name: &str| {
        let mut doc = samples().into_iter().find(|d| d["kind"] == "BotInstance" && d["metadata"]["name"] == name).expect("sample bot");
        doc["metadata"]["namespace"] = json!(watched);
        serde_json::from_value::<DynamicObject>(doc).expect("bot")
    };
    let bots = api_for(&admin, &watched, "BotInstance");
    bots.create(&PostParams::default(), &sample_bot("alpha")).await.expect("alpha");
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(admin.clone(), &watched);
    let (leader_name, standby_name) = (replicas[leader].name.clone(), replicas[standby].name.clone());
    eventually("alpha reconciled by the leader", Duration::from_secs(60), || async {
        registered_by(&events, "alpha", &leader_name).await.then_some(())
    })
    .await;
    assert!(!registered_by(&events, "alpha", &standby_name).await, "the standby stays idle");

    // Kill the leader: the standby takes over once the Lease expires.
    let killed_at = std::time::Instant::now();
    drop(replicas.remove(leader));
    let standby = &replicas[0];
    eventually("the standby to hold the Lease", Duration::from_secs(60), || {
        let (leases, lease, want) = (leases.clone(), lease_name.clone(), standby_name.clone());
        async move { holder(leases, lease).await.filter(|(h, _)| *h == want).map(|_| ()) }
    })
    .await;
    let handover = killed_at.elapsed();
    eprintln!("handover after {:.1} s (Lease duration {duration} s)", handover.as_secs_f64());
    // The Lease expires at most `duration` after the last renewal, and the standby re-checks
    // right at expiry (plus up to 1 s of jitter before it takes the Lease); 3 s for the rest.
    let bound = Duration::from_secs(u64::try_from(duration).expect("duration") + 3);
    assert!(handover <= bound, "the standby took {handover:?} to take over (Lease duration {duration} s)");
    eventually("the new leader's gauge", Duration::from_secs(30), || async { (leader_gauge(standby).await == Some(1)).then_some(()) })
        .await;
    bots.create(&PostParams::default(), &sample_bot("beta")).await.expect("beta");
    eventually("beta reconciled by the new leader", Duration::from_secs(60), || async {
        registered_by(&events, "beta", &standby_name).await.then_some(())
    })
    .await;
}
