//! docs/DEPLOY.md's example outputs are captured, not written by hand: this test walks the
//! guide on the real control plane (`tests/controlplane`, docs/CONTROLPLANE.md) with the real
//! kubectl of the same Kubernetes version (`controlplane kubectl`), in the namespace `bots` the
//! guide uses, with the operator running (in this process, against a fake Telegram whose bots
//! are `@alpha_fleet_bot` and `@beta_fleet_bot`) and no runtime pods (no kubelet here). Each
//! output it captures is compared with the ```text block after the marker
//! `<!-- captured: NAME -->` in DEPLOY.md, so the guide cannot drift from what the system prints.
//!
//! The comparison ignores what changes from run to run: ages (`5s`, `2m10s`, `<invalid>`),
//! timestamps, uids, a bot's configuration hash, a campaign's state (it depends on the day the
//! test runs: the samples' campaign has fixed dates) and the runs of spaces kubectl pads columns
//! with, and how often an Event repeated; `kubectl get events` is compared in any order. Everything else must match, word for word.
//!
//! To regenerate the blocks after a deliberate change:
//!
//! ```sh
//! BOTFLEET_UPDATE_DEPLOY_OUTPUTS=1 cargo test -p botfleet-operator --test deploy_docs
//! ```
//!
//! Without Go (a developer machine that never built the control plane) the test says so and
//! passes; with `CI` set a missing control plane fails it — CI never skips.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::Client;
use serde_json::json;

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/controlplane.rs"]
mod controlplane;
use cluster::{api_for, client_as, eventually, start_operator};
use controlplane::{ControlPlane, repo};

const MARKER: &str = "<!-- captured: ";
const UPDATE_VAR: &str = "BOTFLEET_UPDATE_DEPLOY_OUTPUTS";

/// The guide's tokens (DEPLOY.md 3.1 shows them shortened): the fake Telegram knows the bots by them.
const ALPHA_TOKEN: &str = "123456789:AAEalphaFleetBotTokenForTheDocs0000000";
const BETA_TOKEN: &str = "987654321:AAHbetaFleetBotTokenForTheDocs00000000";

/// Splits a command line as a shell would, for the quoting the guide uses ('…' and "…").
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The guide's commands, run as the cluster admin, and the outputs kept so far by block name.
struct Guide<'a> {
    plane: &'a ControlPlane,
    captured: BTreeMap<String, String>,
}

impl Guide<'_> {
    /// Runs one command of the guide (`kubectl …`, as printed there) and returns what it printed
    /// (stdout, then stderr); `ok` says whether it must succeed.
    fn run(&self, line: &str, stdin: Option<&str>, ok: bool) -> String {
        let argv = words(line);
        assert_eq!(argv.first().map(String::as_str), Some("kubectl"), "{line}");
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        let (success, out, err) = self.plane.kubectl("admin", &args, stdin.map(str::as_bytes)).expect("kubectl");
        assert_eq!(success, ok, "`{line}`: {out}{err}");
        format!("{out}{err}")
    }

    /// Runs the commands and keeps their outputs, joined, as block `name`.
    fn capture(&mut self, name: &str, lines: &[&str]) {
        let text: String = lines.iter().map(|l| self.run(l, None, true)).collect();
        self.keep(name, text);
    }

    fn keep(&mut self, name: &str, text: String) {
        assert!(self.captured.insert(name.to_string(), text).is_none(), "{name} captured twice");
    }

    /// Runs the commands until two runs a second apart print the same (after normalising):
    /// what the operator writes (status, Events) has settled. Keeps the last as block `name`.
    async fn capture_settled(&mut self, name: &str, lines: &[&str], within: Duration) {
        let deadline = Instant::now() + within;
        let mut last: Option<String> = None;
        loop {
            let text: String = lines.iter().map(|l| self.run(l, None, true)).collect();
            if last.as_deref().map(normalize) == Some(normalize(&text)) {
                self.keep(name, text);
                return;
            }
            assert!(Instant::now() < deadline, "{name} never settled:\n{text}");
            last = Some(text);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// `5s`, `2m10s`, `4d`, `3y112d`, and kubectl's `<invalid>` (a time in the future).
fn is_age(word: &str) -> bool {
    if word == "<invalid>" || word == "<unknown>" {
        return true;
    }
    let mut digits = false;
    let mut units = 0;
    for c in word.chars() {
        if c.is_ascii_digit() {
            digits = true;
        } else if "smhdy".contains(c) && digits {
            digits = false;
            units += 1;
        } else {
            return false;
        }
    }
    units > 0 && !digits
}

/// `2026-12-01T11:13:17Z`, also with a fraction of a second (`…:17.986411744Z`).
fn is_timestamp(word: &str) -> bool {
    let b = word.as_bytes();
    let seconds = b.len() >= 20
        && b[..19].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        });
    let rest = &word[19.min(word.len())..];
    let fraction = rest.strip_prefix('.').map_or(rest, |f| f.trim_start_matches(|c: char| c.is_ascii_digit()));
    seconds && fraction == "Z"
}

fn is_uid(word: &str) -> bool {
    let parts: Vec<&str> = word.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12]) && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Blocks whose lines come in no fixed order (kubectl lists Events by name): compared as sets of lines.
const UNORDERED: &[&str] = &["config-updated"];

/// Event reasons a block may show or not, by block: the namespace's `botfleet-payload-keys` is
/// created by whichever bot's reconcile runs first, so `describe bot alpha` shows that Event on
/// some runs only (beta's describe shows it on the others).
const OPTIONAL_EVENTS: &[(&str, &str)] = &[("describe-alpha", "PayloadKeysCreated")];

fn comparable(name: &str, text: &str) -> String {
    let mut normal = normalize(text);
    for (_, reason) in OPTIONAL_EVENTS.iter().filter(|(block, _)| *block == name) {
        let needle = format!("Normal {reason} ");
        normal = normal.lines().filter(|l| !l.starts_with(&needle)).collect::<Vec<_>>().join("\n");
    }
    if !UNORDERED.contains(&name) {
        return normal;
    }
    let mut lines: Vec<&str> = normal.lines().collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// What is compared: each line's words, with run-dependent ones replaced. A configuration hash
/// (`sha256:` + 16 hex digits) changes with anything in the resolved configuration, including
/// the fake Telegram's address, so it is replaced too; token fingerprints (12 hex digits) are
/// fixed by the guide's tokens and compared.
fn normalize(text: &str) -> String {
    text.lines()
        .map(|line| {
            line.split_whitespace()
                .map(|w| {
                    let bare = w.trim_end_matches([',', ';', ')']);
                    let suffix = &w[bare.len()..];
                    let word = if bare.strip_prefix("(x").is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())) {
                        // An Event's count (`1s (x3 over 1s)`): how often a reconcile repeated it.
                        "(x<n>"
                    } else if is_age(bare) {
                        "<age>"
                    } else if is_timestamp(bare) {
                        "<time>"
                    } else if is_uid(bare) {
                        "<uid>"
                    } else if ["Scheduled", "Active", "Expired"].contains(&bare) {
                        // A campaign's state depends on the day the test runs (the samples' dates).
                        "<state>"
                    } else if bare.strip_prefix("sha256:").is_some_and(|h| h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit())) {
                        "sha256:<config hash>"
                    } else {
                        bare
                    };
                    format!("{word}{suffix}")
                })
                .collect::<Vec<_>>()
                .join(" ")
                // How often an Event repeated depends on how many reconciles raced at the start.
                .replace(" (x<n> over <age>)", "")
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A block of DEPLOY.md after a marker.
struct Block {
    name: String,
    /// Line indexes of the opening and closing fences.
    open: usize,
    close: usize,
    indent: String,
}

fn blocks(doc: &str) -> Vec<Block> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix(MARKER) else { continue };
        let name = rest.trim_end().strip_suffix("-->").unwrap_or_else(|| panic!("DEPLOY.md:{}: marker without -->", i + 1)).trim();
        let open = i + 1;
        let fence = lines.get(open).copied().unwrap_or_default();
        assert_eq!(fence.trim(), "```text", "DEPLOY.md:{}: a captured block starts with ```text right after its marker", open + 1);
        let indent = fence[..fence.len() - fence.trim_start().len()].to_string();
        let close = (open + 1..lines.len())
            .find(|&j| lines[j].trim() == "```")
            .unwrap_or_else(|| panic!("DEPLOY.md:{}: block {name} is not closed", open + 1));
        out.push(Block { name: name.to_string(), open, close, indent });
    }
    out
}

/// Compares the captured outputs with DEPLOY.md's blocks, or rewrites the blocks when
/// `BOTFLEET_UPDATE_DEPLOY_OUTPUTS=1`.
fn check_or_update(captured: &BTreeMap<String, String>) {
    let path = repo().join("docs/DEPLOY.md");
    let doc = std::fs::read_to_string(&path).expect("DEPLOY.md");
    let found = blocks(&doc);
    let names: Vec<&str> = found.iter().map(|b| b.name.as_str()).collect();
    for name in captured.keys() {
        assert!(names.contains(&name.as_str()), "DEPLOY.md has no block marked `{MARKER}{name} -->`");
    }
    for name in &names {
        assert!(captured.contains_key(*name), "DEPLOY.md marks a block `{name}` that this test does not capture");
    }
    if std::env::var(UPDATE_VAR).is_ok_and(|v| v == "1") {
        let lines: Vec<&str> = doc.lines().collect();
        let mut out: Vec<String> = Vec::new();
        let mut next = 0;
        for block in &found {
            out.extend(lines[next..=block.open].iter().map(|l| l.to_string()));
            for line in captured[&block.name].trim_end().lines() {
                out.push(if line.is_empty() { String::new() } else { format!("{}{}", block.indent, line.trim_end()) });
            }
            next = block.close;
        }
        out.extend(lines[next..].iter().map(|l| l.to_string()));
        std::fs::write(&path, out.join("\n") + "\n").expect("write DEPLOY.md");
        eprintln!("{UPDATE_VAR}=1: rewrote {} blocks of {}", found.len(), path.display());
        return;
    }
    let lines: Vec<&str> = doc.lines().collect();
    let mut drift = Vec::new();
    for block in &found {
        let written = lines[block.open + 1..block.close]
            .iter()
            .map(|l| l.strip_prefix(block.indent.as_str()).unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let real = &captured[&block.name];
        if comparable(&block.name, &written) != comparable(&block.name, real) {
            drift.push(format!("block `{}` (DEPLOY.md:{}):\n--- DEPLOY.md\n{written}\n--- captured\n{real}", block.name, block.open + 1));
        }
    }
    assert!(drift.is_empty(), "docs/DEPLOY.md's example outputs drifted (regenerate with {UPDATE_VAR}=1):\n{}", drift.join("\n\n"));
}

/// A field of one of the guide's objects in `bots` (JSON pointer), once it is there.
async fn field(client: &Client, kind: &str, name: &str, pointer: &str) -> Option<serde_json::Value> {
    let object = api_for(client, "bots", kind).get(name).await.ok()?;
    object.data.pointer(pointer).cloned()
}

fn ready_reason(bot: &serde_json::Value) -> Option<String> {
    bot.as_array()?.iter().find(|c| c["type"] == "Ready").and_then(|c| c["reason"].as_str()).map(str::to_string)
}

#[test]
fn normalizing_keeps_words_and_drops_what_changes_between_runs() {
    assert_eq!(normalize("NAME   AGE\nalpha  2m10s  <invalid>\n"), "NAME AGE\nalpha <age> <age>");
    assert_eq!(normalize("1s (x3 over 2m)  2026-12-01T11:13:17.986411744Z"), "<age> <time>");
    assert_eq!(normalize("  Time:  2026-11-22T10:02:11Z  uid 0b1c2d3e-0000-4000-8000-00000000abcd"), "Time: <time> uid <uid>");
    assert_ne!(normalize("READY False"), normalize("READY True"));
    assert_eq!(words(r#"kubectl -p '{"a":1}' --x="b c" d"#), ["kubectl", "-p", r#"{"a":1}"#, "--x=b c", "d"]);
    assert!(!is_age("2mx") && !is_age("30") && is_age("3y112d"));
    // The payload-key Event of the describe block is optional; any other Event is compared.
    let with =
        "Events:\n  Normal  PayloadKeysCreated  1s  botfleet-operator  created\n  Normal  WebhookRegistered  1s  botfleet-operator  set";
    let without = "Events:\n  Normal  WebhookRegistered  1s  botfleet-operator  set";
    assert_eq!(comparable("describe-alpha", with), comparable("describe-alpha", without));
    assert_ne!(comparable("get-fleet", with), comparable("get-fleet", without));
    assert_ne!(comparable("describe-alpha", without), comparable("describe-alpha", "Events:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_md_shows_what_kubectl_prints_on_a_real_control_plane() {
    let Some(plane) = cluster::own_control_plane("deploy-docs") else { return };
    let admin = client_as(&plane, "admin").await;
    let mut guide = Guide { plane: &plane, captured: BTreeMap::new() };

    // 2.2 The namespace and the connection Secrets.
    guide.capture("connection-secrets", &[
        "kubectl create namespace bots",
        "kubectl -n bots create secret generic botfleet-postgres --from-literal=url='postgres://botfleet:PASSWORD@postgres.db.svc:5432/botfleet'",
        "kubectl -n bots create secret generic botfleet-redis --from-literal=url='redis://:PASSWORD@redis.db.svc:6379/0'",
    ]);
    eventually("the namespace's default ServiceAccount", Duration::from_secs(60), || {
        let sa = kube::Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin.clone(), "bots");
        async move { sa.get_opt("default").await.ok().flatten() }
    })
    .await;

    // 2.3 The CRDs, as the CRD upgrade applies them (the first apply creates them), then 2.4.
    guide.capture("crd-apply", &["kubectl apply --server-side --force-conflicts --field-manager=botfleet-crds -f charts/botfleet/crds/"]);
    guide.run("kubectl wait --for=condition=Established crd --all --timeout=60s", None, true);
    guide.capture("api-resources", &["kubectl api-resources --api-group=botfleet.io"]);

    // 3.1 Token Secrets (the guide shows no output for them), the operator (in this process).
    let fake = botfleet_tests::fake_telegram::FakeTelegram::start().await.expect("fake Telegram");
    fake.sim().register_bot_with("alpha_fleet_bot", None, Some(ALPHA_TOKEN)).expect("alpha");
    fake.sim().register_bot_with("beta_fleet_bot", None, Some(BETA_TOKEN)).expect("beta");
    guide.run(&format!("kubectl -n bots create secret generic alpha-bot-token --from-literal=token='{ALPHA_TOKEN}'"), None, true);
    guide.run(&format!("kubectl -n bots create secret generic beta-bot-token --from-literal=token='{BETA_TOKEN}'"), None, true);
    guide.run("kubectl -n bots label secret alpha-bot-token beta-bot-token botfleet.io/bot-token=true", None, true);
    let (stop, operator) = start_operator(admin.clone(), "bots", &fake.api_url());

    // 3.2 Apply; 3.3 what kubectl get shows once the operator has done its part (no runtime
    // pods: the bots stay RolloutInProgress).
    guide.capture("apply-samples", &["kubectl -n bots apply -f config/samples/"]);
    for bot in ["alpha", "beta"] {
        eventually(&format!("{bot}: Ready=False RolloutInProgress"), Duration::from_secs(90), || {
            let admin = admin.clone();
            async move {
                let conditions = field(&admin, "BotInstance", bot, "/status/conditions").await?;
                (ready_reason(&conditions).as_deref() == Some("RolloutInProgress")).then_some(())
            }
        })
        .await;
    }
    for plan in ["vip-week", "vip-month", "lock-credits-10"] {
        eventually(&format!("{plan}'s effective price"), Duration::from_secs(60), || {
            let admin = admin.clone();
            async move { field(&admin, "VipPlan", plan, "/status/effectivePriceStars").await.filter(|v| !v.is_null()) }
        })
        .await;
    }
    eventually("the policy's selected bots", Duration::from_secs(60), || {
        let admin = admin.clone();
        async move { field(&admin, "RateLimitPolicy", "demo-limits", "/status/selectedBots").await.filter(|v| v == 2) }
    })
    .await;
    guide.capture_settled("get-fleet", &["kubectl -n bots get bots,plans,campaigns,rlp"], Duration::from_secs(60)).await;
    // 3.3's text says it prints 2.
    assert_eq!(guide.run("kubectl -n bots get rlp demo-limits -o jsonpath='{.status.selectedBots}'", None, true), "2");

    // 3.4 describe, from `Status:` on (the guide shows that part).
    let deadline = Instant::now() + Duration::from_secs(60);
    let describe = loop {
        let full = guide.run("kubectl -n bots describe bot alpha", None, true);
        let again = guide.run("kubectl -n bots describe bot alpha", None, true);
        if normalize(&full) == normalize(&again) {
            break again;
        }
        assert!(Instant::now() < deadline, "describe never settled");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let status = describe.find("\nStatus:\n").map(|i| &describe[i + 1..]).unwrap_or_else(|| panic!("no Status in:\n{describe}"));
    guide.keep("describe-alpha", status.to_string());

    // 5. Change a price.
    guide.run(r#"kubectl -n bots patch plan vip-week --type merge -p '{"spec":{"priceStars":300}}'"#, None, true);
    eventually("vip-week's new effective price", Duration::from_secs(60), || {
        let admin = admin.clone();
        async move { field(&admin, "VipPlan", "vip-week", "/status/effectivePriceStars").await.filter(|v| v == 300) }
    })
    .await;
    guide.capture("plan-patched", &["kubectl -n bots get plan vip-week"]);
    eventually("alpha's ConfigMap with the new price", Duration::from_secs(60), || {
        let admin = admin.clone();
        async move {
            let config = kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(admin, "bots").get("alpha-config").await.ok()?;
            config.data?.get("config.yaml")?.contains("priceStars: 300").then_some(())
        }
    })
    .await;
    guide
        .capture_settled(
            "config-updated",
            &["kubectl -n bots get events --field-selector involvedObject.kind=BotInstance,reason=ConfigUpdated"],
            Duration::from_secs(60),
        )
        .await;
    let config = guide.run(r"kubectl -n bots get configmap alpha-config -o jsonpath='{.data.config\.yaml}'", None, true);
    // `| grep -A3 'id: vip-week'`
    let lines: Vec<&str> = config.lines().collect();
    let at = lines.iter().position(|l| l.contains("id: vip-week")).expect("vip-week in alpha's configuration");
    let grep: String = lines[at..(at + 4).min(lines.len())].iter().map(|l| format!("{l}\n")).collect();
    let events = guide.captured.remove("config-updated").expect("events");
    guide.keep("config-updated", events + &grep);

    // 6. A campaign: the guide's own new-year.yaml, then a window the CEL rule refuses.
    let doc = std::fs::read_to_string(repo().join("docs/DEPLOY.md")).expect("DEPLOY.md");
    let yaml_start = doc
        .find("```yaml\napiVersion: botfleet.io/v1alpha1\nkind: DiscountCampaign\nmetadata:\n  name: new-year")
        .expect("new-year.yaml in DEPLOY.md")
        + "```yaml\n".len();
    let yaml = &doc[yaml_start..yaml_start + doc[yaml_start..].find("```").expect("end of new-year.yaml")];
    let applied = guide.run("kubectl -n bots apply -f -", Some(yaml), true);
    assert!(applied.contains("discountcampaign.botfleet.io/new-year created"), "{applied}");
    eventually("new-year's state", Duration::from_secs(60), || {
        let admin = admin.clone();
        async move { field(&admin, "DiscountCampaign", "new-year", "/status/state").await.filter(|v| !v.is_null()) }
    })
    .await;
    guide.capture("campaigns", &["kubectl -n bots get campaigns"]);
    let broken = "apiVersion: botfleet.io/v1alpha1\nkind: DiscountCampaign\nmetadata: {name: broken}\nspec: {percentOff: 10, startsAt: \"2026-12-31T00:00:00Z\", endsAt: \"2026-12-01T00:00:00Z\"}\n";
    let refused = guide.run("kubectl -n bots apply -f -", Some(broken), false);
    guide.keep("campaign-invalid", refused);

    // What the operator may do to Secrets: the chart's Role in `bots` for the release's
    // ServiceAccount (release `botfleet` in `botfleet-system`), asked as `kubectl auth can-i`.
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "botfleet"}, "rules": cluster::chart_define("botfleet.rules")});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "botfleet"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "botfleet"},
        "subjects": [{"kind": "ServiceAccount", "name": "botfleet", "namespace": "botfleet-system"}]});
    guide.run("kubectl -n bots apply -f -", Some(&format!("{role}\n---\n{binding}\n")), true);
    let sa = "--as=system:serviceaccount:botfleet-system:botfleet";
    let mut answers = String::new();
    for (question, allowed) in [
        ("get secrets -n bots", true),
        ("patch secrets -n bots", true),
        ("update secrets -n bots", false),
        ("delete secrets -n bots", false),
        ("get secrets -n default", false),
    ] {
        answers += &guide.run(&format!("kubectl auth can-i {question} {sa}"), None, allowed);
    }
    guide.keep("can-i-secrets", answers);

    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), operator).await;
    check_or_update(&guide.captured);
}
