//! The CRDs as committed match the Rust types, carry what `kubectl` users need, and every
//! sample in config/ passes their schemas (structure, bounds and CEL rules). Invalid specs are
//! refused by the schema.

use std::path::PathBuf;

use botfleet_crds::bot_instance::BotInstance;
use botfleet_crds::crd_files;
use botfleet_crds::discount_campaign::DiscountCampaign;
use botfleet_crds::rate_limit_policy::RateLimitPolicy;
use botfleet_crds::vip_plan::VipPlan;
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The committed CRD for a kind, as JSON.
fn committed_crd(kind: &str) -> Value {
    for (name, yaml) in crd_files().unwrap() {
        let crd: Value = serde_yaml::from_str(&yaml).unwrap();
        if crd["spec"]["names"]["kind"] == kind {
            let on_disk = std::fs::read_to_string(root().join("crds/yaml").join(&name)).unwrap();
            return serde_yaml::from_str(&on_disk).unwrap();
        }
    }
    panic!("no CRD for kind {kind}");
}

/// Every problem the apiserver would find with this object: schema (types, bounds, enums,
/// required) and CEL rules.
fn problems(object: &Value) -> Vec<String> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let crd = committed_crd(kind);
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut out = Vec::new();
    let validator = jsonschema::draft4::new(schema).expect("schema compiles");
    for e in validator.iter_errors(object) {
        out.push(format!("schema: {} at {}", e, e.instance_path()));
    }
    if let Err(errs) = kube::core::cel::Validator::new().validate(schema, object, None) {
        out.push(format!("cel: {errs}"));
    }
    out
}

fn samples() -> Vec<(String, Value)> {
    let dir = root().join("config/samples");
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).unwrap();
            if !v.is_null() {
                docs.push((f.display().to_string(), v));
            }
        }
    }
    docs
}

/// Every field of `original` exists in `typed` (a field the types don't know would be pruned
/// by the apiserver, silently: a sample must not rely on one).
fn unknown_fields(original: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    if let (Value::Object(o), Value::Object(t)) = (original, typed) {
        for (k, v) in o {
            match t.get(k) {
                Some(tv) => unknown_fields(v, tv, &format!("{path}.{k}"), out),
                None => out.push(format!("{path}.{k}")),
            }
        }
    }
    if let (Value::Array(o), Value::Array(t)) = (original, typed) {
        for (i, (a, b)) in o.iter().zip(t).enumerate() {
            unknown_fields(a, b, &format!("{path}[{i}]"), out);
        }
    }
}

#[test]
fn committed_crd_yaml_matches_the_rust_types() {
    for (name, yaml) in crd_files().unwrap() {
        for dir in ["crds/yaml", "charts/botfleet/crds"] {
            let path = root().join(dir).join(&name);
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(on_disk == yaml, "{} is stale: run `cargo run -p botfleet-crds --bin crdgen` and commit", path.display());
        }
    }
}

#[test]
fn every_sample_passes_its_crd_schema_and_rules() {
    let docs = samples();
    let kinds: Vec<&str> = docs.iter().map(|(_, d)| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "BotInstance").count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == "VipPlan").count(), 3);
    assert_eq!(kinds.iter().filter(|k| **k == "DiscountCampaign").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "RateLimitPolicy").count(), 1);
    for (file, doc) in &docs {
        assert_eq!(doc["apiVersion"], "botfleet.io/v1alpha1", "{file}");
        let p = problems(doc);
        assert!(p.is_empty(), "{file} {}: {p:#?}", doc["metadata"]["name"]);
        let typed = match doc["kind"].as_str().unwrap() {
            "BotInstance" => serde_json::to_value(serde_json::from_value::<BotInstance>(doc.clone()).unwrap()).unwrap(),
            "VipPlan" => serde_json::to_value(serde_json::from_value::<VipPlan>(doc.clone()).unwrap()).unwrap(),
            "DiscountCampaign" => serde_json::to_value(serde_json::from_value::<DiscountCampaign>(doc.clone()).unwrap()).unwrap(),
            "RateLimitPolicy" => serde_json::to_value(serde_json::from_value::<RateLimitPolicy>(doc.clone()).unwrap()).unwrap(),
            other => panic!("{file}: unexpected kind {other}"),
        };
        let mut unknown = Vec::new();
        unknown_fields(doc, &typed, "", &mut unknown);
        assert!(unknown.is_empty(), "{file}: fields the CRD does not know: {unknown:?}");
    }
}

fn sample(kind: &str) -> Value {
    samples().into_iter().map(|(_, d)| d).find(|d| d["kind"] == kind).unwrap()
}

/// The object with the field at `pointer` set (created if absent).
fn with(mut v: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent).and_then(Value::as_object_mut).unwrap_or_else(|| panic!("{parent}")).insert(key.to_string(), value);
    v
}

#[test]
fn invalid_specs_are_refused_by_the_schema() {
    let cases = [
        ("120% off", with(sample("DiscountCampaign"), "/spec/percentOff", json!(120))),
        ("0% off", with(sample("DiscountCampaign"), "/spec/percentOff", json!(0))),
        ("window ends before it starts", with(sample("DiscountCampaign"), "/spec/endsAt", json!("2026-11-01T00:00:00Z"))),
        ("negative price", with(sample("VipPlan"), "/spec/priceStars", json!(-5))),
        ("zero price", with(sample("VipPlan"), "/spec/priceStars", json!(0))),
        ("plan granting nothing", with(sample("VipPlan"), "/spec/grants", json!({"vipDays": 0}))),
        ("unknown billing", with(sample("VipPlan"), "/spec/billing", json!("Weekly"))),
        (
            "monthly plan not granting 30 days",
            with(with(sample("VipPlan"), "/spec/billing", json!("Monthly")), "/spec/grants", json!({"vipDays": 7})),
        ),
        (
            "monthly plan above Telegram's subscription ceiling",
            with(
                with(with(sample("VipPlan"), "/spec/billing", json!("Monthly")), "/spec/grants", json!({"vipDays": 30})),
                "/spec/priceStars",
                json!(10_001),
            ),
        ),
        ("title too long for Telegram", with(sample("VipPlan"), "/spec/title", json!("x".repeat(33)))),
        ("webhook without public URL", with(sample("BotInstance"), "/spec/ingress", json!({"mode": "Webhook"}))),
        ("plain-http public URL", with(sample("BotInstance"), "/spec/ingress/publicUrl", json!("http://bots.example.com"))),
        ("replicas and autoscaling", with(sample("BotInstance"), "/spec/replicas", json!(3))),
        ("autoscaling max below min", with(sample("BotInstance"), "/spec/autoscaling", json!({"minReplicas": 5, "maxReplicas": 2}))),
        ("age under 13", with(sample("BotInstance"), "/spec/moderation/minimumAge", json!(10))),
        ("no admins", with(sample("BotInstance"), "/spec/admins/telegramIds", json!([]))),
        ("pool not a DNS label", with(sample("BotInstance"), "/spec/pool", json!("EU Chat"))),
        ("unknown ingress mode", with(sample("BotInstance"), "/spec/ingress/mode", json!("Carrier-Pigeon"))),
        ("burst below rate", with(sample("RateLimitPolicy"), "/spec/perUser/messagesPerSecond", json!(9))),
        (
            "selector In without values",
            with(sample("VipPlan"), "/spec/botSelector", json!({"matchExpressions": [{"key": "a", "operator": "In"}]})),
        ),
    ];
    for (what, object) in cases {
        assert!(!problems(&object).is_empty(), "{what} was accepted");
    }
}

#[test]
fn a_monthly_plan_within_telegrams_rules_is_accepted() {
    let plan = with(with(sample("VipPlan"), "/spec/billing", json!("Monthly")), "/spec/grants", json!({"vipDays": 30, "lockCredits": 5}));
    let plan = with(plan, "/spec/priceStars", json!(10_000));
    assert_eq!(problems(&plan), Vec::<String>::new());
}

#[test]
fn kubectl_users_get_short_names_columns_and_a_status_subresource() {
    for (kind, short, columns) in [
        ("BotInstance", "bot", vec!["Ready", "Replicas", "Username", "Age"]),
        ("VipPlan", "plan", vec!["Price", "Effective", "Enabled"]),
        ("DiscountCampaign", "campaign", vec!["Percent", "State", "Starts", "Ends"]),
        ("RateLimitPolicy", "rlp", vec!["Msg/s", "On excess"]),
    ] {
        let crd = committed_crd(kind);
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["group"], "botfleet.io");
        assert!(crd["spec"]["names"]["shortNames"].as_array().unwrap().contains(&json!(short)), "{kind}");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert_eq!(version["subresources"]["status"], json!({}), "{kind}");
        let names: Vec<&str> =
            version["additionalPrinterColumns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        for c in columns {
            assert!(names.contains(&c), "{kind} lacks column {c}");
        }
        let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
        assert_eq!(status["conditions"]["x-kubernetes-list-type"], "map", "{kind}");
        assert_eq!(status["conditions"]["x-kubernetes-list-map-keys"], json!(["type"]), "{kind}");
        assert!(status["observedGeneration"].is_object(), "{kind}");
        assert!(status["conditions"]["items"]["properties"]["observedGeneration"].is_object(), "{kind}");
    }
}

/// kubectl, Helm and the API server read YAML 1.1, where an unquoted yes/no/on/off is a
/// boolean: a printer column named Off would break the CRD.
#[test]
fn generated_yaml_has_no_yaml_1_1_booleans_in_disguise() {
    const RISKY: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false"];
    for (name, yaml) in crd_files().unwrap() {
        for (i, line) in yaml.lines().enumerate() {
            let value = line.split_once(": ").map(|(_, v)| v).or_else(|| line.trim_start().strip_prefix("- ")).unwrap_or("").trim();
            let is_bool_field = line.trim_start().starts_with("served:")
                || line.trim_start().starts_with("storage:")
                || line.contains("default: ")
                || line.contains("nullable:");
            if RISKY.contains(&value.to_ascii_lowercase().as_str()) && !is_bool_field && value != "true" && value != "false" {
                panic!("{name}:{}: {line:?} reads as a boolean in YAML 1.1", i + 1);
            }
        }
    }
}

/// The API server warns about integer formats other than int32/int64 (found on the real API
/// server: `unrecognized format "uint32"` for every CRD); the generator maps them.
#[test]
fn the_crds_use_only_integer_formats_the_api_server_knows() {
    for (name, yaml) in crd_files().unwrap() {
        for line in yaml.lines().filter(|l| l.trim_start().starts_with("format: ")) {
            let format = line.trim_start().trim_start_matches("format: ");
            assert!(!format.starts_with("uint"), "{name}: {line}");
        }
    }
}
