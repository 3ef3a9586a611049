#!/usr/bin/env python3
"""Offline checks of the BotFleet Helm chart (charts/botfleet), for CI.

No Kubernetes API server and no helm binary are needed:

* the chart is linted (strict) and rendered with the real Helm engine, through helm-python-sdk
  (Helm v4's Go library behind a C ABI);
* every rendered object is validated with kubernetes-validate against the Kubernetes version
  in KUBE_VERSION, in strict mode (unknown fields are errors). The one exception is the
  monitoring.coreos.com kinds (ServiceMonitor, PrometheusRule): they belong to
  prometheus-operator, kubernetes-validate ships no schema for them, so they are checked here
  field by field instead;
* the CRDs in charts/botfleet/crds/ (written by the crdgen binary) are validated as
  CustomResourceDefinitions when that directory exists;
* the values schema, RBAC, the operator Deployment, the alert rules (PromQL parsed with
  promql-parser) and the Grafana dashboard are checked against the operator's contract;
* charts/botfleet/files/* must equal config/monitoring/*.

Run from the repository root (or anywhere):

    python3 -m venv .venv-chart
    .venv-chart/bin/pip install -r charts/tests/requirements.txt
    .venv-chart/bin/python charts/tests/validate_chart.py

It prints one line per check and ends with "N passed, M failed"; the exit status is 0 only
when nothing failed.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable

try:
    import helm_python as helm
    import jsonschema
    import kubernetes_validate
    import promql_parser
    import yaml
except ImportError as missing:  # pragma: no cover - environment problem, not a chart problem
    print(
        f"missing Python package: {missing.name}. Install the pinned tools first:\n"
        "  python3 -m venv .venv-chart && .venv-chart/bin/pip install -r charts/tests/requirements.txt\n"
        "and run this script with .venv-chart/bin/python.",
        file=sys.stderr,
    )
    print("0 passed, 1 failed")
    sys.exit(2)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "botfleet"
CRD_DIR = CHART / "crds"
MONITORING = REPO / "config" / "monitoring"

# The Kubernetes version rendered objects are validated against: the newest kubernetes-validate
# knows (pinned in requirements.txt). Chart.yaml's kubeVersion says which older ones we support.
KUBE_VERSION = "1.37.0"
RELEASE = "botfleet"
NAMESPACE = "botfleet-system"
# Kinds kubernetes-validate has no schema for (prometheus-operator CRDs): checked by hand below.
NO_UPSTREAM_SCHEMA_GROUP = "monitoring.coreos.com"

CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace",
                  "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
STANDARD_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
}

# ---------------------------------------------------------------------------------------------
# The operator's contract: what the Rust side implements and the chart must grant / configure.
# ---------------------------------------------------------------------------------------------

OWNED_VERBS = ("get", "list", "watch", "create", "patch", "update", "delete")
BOTFLEET_KINDS = ("botinstances", "vipplans", "discountcampaigns", "ratelimitpolicies")
LEASE_NAME = "botfleet-operator"
SERVICEMONITOR_CRD = "servicemonitors.monitoring.coreos.com"


def permission_set(rules: Iterable[tuple[str, str, Iterable[str], str | None]]) -> set[tuple]:
    return {(g, r, v, n) for g, r, verbs, n in rules for v in verbs}


# (apiGroup, resource, verb, resourceName) granted in every watched namespace (or cluster-wide).
EXPECTED_WATCHED_NAMESPACE_PERMISSIONS = permission_set(
    [("botfleet.io", kind, ("get", "list", "watch", "patch", "update"), None) for kind in BOTFLEET_KINDS]
    + [("botfleet.io", f"{kind}/status", ("get", "patch", "update"), None) for kind in BOTFLEET_KINDS]
    + [
        ("botfleet.io", "botinstances/finalizers", ("update",), None),
        ("apps", "deployments", OWNED_VERBS, None),
        ("", "services", OWNED_VERBS, None),
        ("", "configmaps", OWNED_VERBS, None),
        # Secrets: no update, no delete (the operator only server-side-applies its own two per bot).
        ("", "secrets", ("get", "list", "watch", "create", "patch"), None),
        # Runtime pods: read only, for the termination message of a runtime that cannot start.
        ("", "pods", ("get", "list", "watch"), None),
        ("autoscaling", "horizontalpodautoscalers", OWNED_VERBS, None),
        ("policy", "poddisruptionbudgets", OWNED_VERBS, None),
        ("monitoring.coreos.com", "servicemonitors", OWNED_VERBS, None),
        ("", "events", ("create", "patch"), None),
        ("events.k8s.io", "events", ("create", "patch"), None),
    ]
)
EXPECTED_CRD_DISCOVERY_PERMISSIONS = permission_set(
    [("apiextensions.k8s.io", "customresourcedefinitions", ("get", "list", "watch"), SERVICEMONITOR_CRD)]
)
EXPECTED_LEASE_PERMISSIONS = permission_set(
    [
        ("coordination.k8s.io", "leases", ("create",), None),
        ("coordination.k8s.io", "leases", ("get", "update", "patch"), LEASE_NAME),
    ]
)
FORBIDDEN_VERBS = {"*", "escalate", "bind", "impersonate", "deletecollection", "approve", "sign"}

REQUIRED_ENV = (
    "POD_NAME",
    "POD_NAMESPACE",
    "WATCH_NAMESPACES",
    "TELEGRAM_API_URL",
    "RUNTIME_IMAGE",
    "RUNTIME_ALLOWED_IMAGES",
    "RUNTIME_SERVICE_MONITOR_LABELS",
    "RUNTIME_NETWORK_POLICY",
    "RUNTIME_SETTINGS",
    "RUNTIME_DATABASE_SECRET",
    "RUNTIME_DATABASE_SECRET_KEY",
    "RUNTIME_REDIS_SECRET",
    "RUNTIME_REDIS_SECRET_KEY",
    "LEADER_ELECTION",
    "LEASE_NAME",
    "METRICS_ADDR",
    "RUST_LOG",
)

# Metric names (and their labels) that dashboards and alerts may use. Histograms also expose
# _bucket (with le), _sum and _count.
METRICS: dict[str, set[str]] = {
    "botfleet_operator_reconciles_total": {"kind", "outcome"},
    "botfleet_operator_reconcile_errors_total": {"kind", "reason"},
    "botfleet_operator_reconcile_duration_seconds": {"kind"},
    "botfleet_operator_bots": {"condition", "status"},
    "botfleet_operator_webhook_pending_updates": {"bot"},
    # Requested from the operator: 1 on the replica holding the Lease, 0 on standbys.
    "botfleet_operator_leader": set(),
    "botfleet_updates_total": {"bot", "outcome"},
    "botfleet_update_handling_seconds": {"bot"},
    "botfleet_inbound_queue_depth": {"bot"},
    "botfleet_matches_total": {"pool", "tier"},
    "botfleet_queue_length": {"pool", "tier"},
    "botfleet_active_chats": {"pool"},
    "botfleet_relayed_messages_total": {"bot", "kind"},
    "botfleet_outbox_depth": {"bot"},
    "botfleet_outbox_oldest_age_seconds": {"bot"},
    "botfleet_egress_backlog_seconds": {"bot"},
    "botfleet_telegram_requests_total": {"bot", "method", "outcome"},
    "botfleet_telegram_429_total": {"bot"},
    "botfleet_purchases_total": {"bot", "plan", "outcome"},
    "botfleet_stars_revenue_total": {"bot", "plan"},
    "botfleet_pre_checkout_seconds": {"bot"},
    "botfleet_campaign_redemptions": {"namespace", "campaign"},
    "botfleet_reconciliation_mismatches_total": {"bot", "kind"},
    "botfleet_chat_locks_total": {"bot", "outcome"},
    "botfleet_referrals_total": {"bot", "outcome"},
    "botfleet_admin_logins_total": {"outcome"},
    "botfleet_admin_actions_total": {"action", "outcome"},
    "botfleet_broadcast_messages_total": {"bot", "outcome"},
    "botfleet_admin_api_limited_total": {"scope"},
    "up": set(),
}
HISTOGRAMS = {"botfleet_operator_reconcile_duration_seconds", "botfleet_update_handling_seconds", "botfleet_pre_checkout_seconds"}
# Labels Prometheus / prometheus-operator add to every scraped series.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}
SCRAPE_JOBS = {"botfleet-operator", "botfleet-runtime", "botfleet-admin"}

# Alerts the product needs (by what they watch); each must exist in alerts.yaml.
REQUIRED_ALERTS = {
    "BotFleetOperatorDown": "operator down",
    "BotFleetOperatorNoLeader": "no leader",
    "BotFleetReconcileErrors": "reconcile error rate",
    "BotFleetBotNotReady": "bot not Ready",
    "BotFleetWebhookBacklogGrowing": "webhook pending updates growing",
    "BotFleetOutboxLagging": "outbox oldest age high",
    "BotFleetEgressBacklogged": "new updates refused for the outbox backlog",
    "BotFleetTelegramRateLimited": "429s",
    "BotFleetRuntimeDown": "runtime down",
    "BotFleetUpdateHandlingSlow": "handling latency p99 high",
    "BotFleetPreCheckoutSlow": "pre-checkout answer p99 near Telegram's 10 s",
    "BotFleetPaymentsDeclined": "most checkouts declined",
    "BotFleetReconciliationMismatch": "Telegram's Stars ledger disagrees",
    "BotFleetAdminDown": "admin dashboard down",
    "BotFleetAdminLoginsLimited": "admin login tries refused by the limit",
    "BotFleetBroadcastFailing": "broadcast messages refused",
}
PACKAGED_MONITORING_FILES = ("alerts.yaml", "grafana-dashboard.json")

# ---------------------------------------------------------------------------------------------
# A tiny check runner: every check is a function that raises on failure.
# ---------------------------------------------------------------------------------------------


class CheckFailed(Exception):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


class Runner:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, name: str, fn: Callable[[], None]) -> bool:
        try:
            fn()
        except CheckFailed as failure:
            self._fail(name, str(failure))
            return False
        except helm.HelmError as failure:
            self._fail(name, f"{type(failure).__name__}: {failure}")
            return False
        except Exception as failure:  # a bug in the check or an unexpected library error
            detail = "".join(traceback.format_exception_only(type(failure), failure)).strip()
            self._fail(name, f"unexpected {detail}")
            return False
        self.passed += 1
        print(f"ok    {name}")
        return True

    def _fail(self, name: str, message: str) -> None:
        self.failed.append(name)
        indented = message.replace("\n", "\n        ")
        print(f"FAIL  {name}\n        {indented}")

    def note(self, message: str) -> None:
        print(f"note  {message}")


# ---------------------------------------------------------------------------------------------
# Rendering helpers
# ---------------------------------------------------------------------------------------------


def load_yaml_docs(text: str, source: str) -> list[dict]:
    docs = []
    for doc in yaml.safe_load_all(text):
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise CheckFailed(f"{source}: a rendered document is not a Kubernetes object: {doc!r:.200}")
        doc["__source__"] = source
        docs.append(doc)
    return docs


class Rendered:
    """One rendering of the chart: its objects, indexed, and its NOTES.txt."""

    def __init__(self, manifests: dict[str, str]) -> None:
        self.notes = ""
        self.objects: list[dict] = []
        for path, text in sorted(manifests.items()):
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            self.objects.extend(load_yaml_docs(text, path))

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None, component: str = "operator") -> dict:
        """The object of this kind with this name, or (no name) of this component: the operator's
        by default, "admin" for the admin role's objects."""
        found = [o for o in self.of_kind(kind)
                 if (o["metadata"]["name"] == name if name else component_of(o) == component)]
        expect(len(found) == 1, f"expected one {kind}{' ' + (name or component)}, found {len(found)}")
        return found[0]


def component_of(obj: dict) -> str | None:
    return ((obj.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component")


def render(chart: helm.Chart, values: dict) -> Rendered:
    return Rendered(chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True))


def strip_source(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k != "__source__"}


def obj_id(obj: dict) -> str:
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{obj['kind']} {ns + '/' if ns else ''}{meta.get('name')}"


# ---------------------------------------------------------------------------------------------
# Checks on any rendering
# ---------------------------------------------------------------------------------------------


def check_lint(chart_dir: Path, values: dict) -> None:
    report = helm.lint(str(chart_dir), values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    errors = report.get("errors") or []
    expect(
        not problems and not errors,
        "helm lint --strict reported:\n"
        + "\n".join(f"[{m.get('severity')}] {m.get('path')}: {m.get('error')}" for m in problems)
        + ("\n" + "\n".join(errors) if errors else ""),
    )


def check_k8s_schema(obj: dict) -> None:
    try:
        kubernetes_validate.validate(strip_source(obj), KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path)
        hint = ""
        if isinstance(error.instance, bool):
            hint = ("\n(Kubernetes, kubectl and Helm read YAML 1.1, where unquoted y/n/yes/no/on/off/"
                    "true/false are booleans: the value must be quoted or renamed)")
        raise CheckFailed(f"{obj_id(obj)} ({obj['__source__']}): {path}: {error.message}{hint}") from None
    except kubernetes_validate.SchemaNotFoundError as error:
        raise CheckFailed(error.message) from None


def check_metadata(rendered: Rendered) -> None:
    seen: set[tuple] = set()
    for obj in rendered.objects:
        meta = obj.get("metadata") or {}
        name = meta.get("name") or ""
        expect(re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) is not None and len(name) <= 253,
               f"{obj_id(obj)}: bad name {name!r}")
        key = (obj["apiVersion"].split("/")[0], obj["kind"], meta.get("namespace"), name)
        expect(key not in seen, f"{obj_id(obj)} is rendered twice")
        seen.add(key)
        if obj["kind"] in CLUSTER_SCOPED:
            expect("namespace" not in meta, f"{obj_id(obj)} is cluster-scoped but has a namespace")
        else:
            expect(bool(meta.get("namespace")), f"{obj_id(obj)} has no explicit metadata.namespace")
        missing = STANDARD_LABELS - set((meta.get("labels") or {}).keys())
        expect(not missing, f"{obj_id(obj)} lacks labels {sorted(missing)}")


def rules_of(role: dict) -> set[tuple]:
    granted = set()
    for rule in role.get("rules") or []:
        expect("nonResourceURLs" not in rule, f"{obj_id(role)} grants nonResourceURLs")
        names = rule.get("resourceNames") or [None]
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    for name in names:
                        granted.add((group, resource, verb, name))
    return granted


def check_rbac_least_privilege(rendered: Rendered) -> None:
    for role in rendered.of_kind("Role") + rendered.of_kind("ClusterRole"):
        for group, resource, verb, _ in rules_of(role):
            expect("*" not in group and "*" not in resource,
                   f"{obj_id(role)} uses a wildcard: apiGroup {group!r} resource {resource!r}")
            expect(verb not in FORBIDDEN_VERBS, f"{obj_id(role)} grants {verb!r} on {resource}")
            expect(group != "rbac.authorization.k8s.io", f"{obj_id(role)} grants access to RBAC objects")
            expect(resource not in {"pods/exec", "pods/attach", "pods/portforward", "nodes", "namespaces"},
                   f"{obj_id(role)} grants {verb} on {resource}")
        for rule in role.get("rules") or []:
            expect(sorted(rule.get("verbs") or []) == sorted(set(rule.get("verbs") or [])),
                   f"{obj_id(role)}: duplicate verbs in {rule}")


def check_bindings(rendered: Rendered, service_account: str) -> None:
    roles = {("Role", r["metadata"]["namespace"], r["metadata"]["name"]) for r in rendered.of_kind("Role")}
    roles |= {("ClusterRole", None, r["metadata"]["name"]) for r in rendered.of_kind("ClusterRole")}
    bound = set()
    for binding in rendered.of_kind("RoleBinding") + rendered.of_kind("ClusterRoleBinding"):
        ref = binding["roleRef"]
        ns = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        target = (ref["kind"], ns, ref["name"])
        expect(target in roles, f"{obj_id(binding)} refers to {ref['kind']} {ref['name']}, which is not rendered")
        bound.add(target)
        expect(
            binding.get("subjects") == [{"kind": "ServiceAccount", "name": service_account, "namespace": NAMESPACE}],
            f"{obj_id(binding)} must bind exactly the operator's ServiceAccount {NAMESPACE}/{service_account}, "
            f"not {binding.get('subjects')}",
        )
    unbound = roles - bound
    expect(not unbound, f"roles nobody is bound to: {sorted(map(str, unbound))}")


def env_of(container: dict) -> dict[str, Any]:
    env = {}
    for item in container.get("env") or []:
        expect(item["name"] not in env, f"env {item['name']} is set twice")
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


def operator_container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    expect(len(containers) == 1, f"expected one container, found {len(containers)}")
    return containers[0]


def check_deployment_hardening(rendered: Rendered, chart_meta: dict, values: dict) -> None:
    deployment = rendered.one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    pod_sc = pod.get("securityContext") or {}
    expect(pod_sc.get("runAsNonRoot") is True, "pod securityContext.runAsNonRoot must be true")
    expect(pod_sc.get("runAsUser") == 65532, f"pod runs as UID {pod_sc.get('runAsUser')}, expected 65532")
    expect((pod_sc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", "pod seccompProfile must be RuntimeDefault")
    expect(pod.get("automountServiceAccountToken") is True, "the operator pod needs its ServiceAccount token")
    expect(pod.get("hostNetwork") is not True and pod.get("hostPID") is not True, "no host namespaces")

    container = operator_container(deployment)
    sc = container.get("securityContext") or {}
    expect(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem must be true")
    expect(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation must be false")
    expect((sc.get("capabilities") or {}).get("drop") == ["ALL"], "capabilities must drop ALL")
    expect(not (sc.get("capabilities") or {}).get("add"), "no capabilities may be added")
    expect(sc.get("privileged") in (None, False), "must not be privileged")

    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            expect(resource in (resources.get(kind) or {}), f"resources.{kind}.{resource} must be set")

    expect(container.get("command") == ["/operator"] and container.get("args") == ["run"],
           f"expected /operator run, got {container.get('command')} {container.get('args')}")
    image_tag = (values.get("image") or {}).get("tag") or chart_meta["appVersion"]
    if not (values.get("image") or {}).get("digest"):
        expect(container["image"] == f"ghcr.io/botfleet/operator:{image_tag}",
               f"image {container['image']} is not ghcr.io/botfleet/operator:{image_tag}")

    ports = container.get("ports") or []
    expect([(p["name"], p["containerPort"]) for p in ports] == [("http", 8080)],
           f"expected exactly one port http/8080, got {ports}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (container.get(probe) or {}).get("httpGet") or {}
        expect(get.get("path") == path and get.get("port") == "http",
               f"{probe} must GET {path} on port http, got {get}")

    mounts = {m["mountPath"] for m in container.get("volumeMounts") or []}
    expect("/tmp" in mounts, "a writable /tmp must be mounted (the root filesystem is read-only)")


def check_env(rendered: Rendered, expected: dict[str, str]) -> None:
    env = env_of(operator_container(rendered.one("Deployment")))
    missing = [name for name in REQUIRED_ENV if name not in env]
    expect(not missing, f"env vars missing: {missing}")
    expect(env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}, f"POD_NAME: {env['POD_NAME']}")
    expect(env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}},
           f"POD_NAMESPACE: {env['POD_NAMESPACE']}")
    for name, value in expected.items():
        expect(env.get(name) == value, f"env {name}={env.get(name)!r}, expected {value!r}")


def check_selectors(rendered: Rendered) -> None:
    deployment = rendered.one("Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    expect(selector.items() <= pod_labels.items(), "Deployment selector does not match its pod labels")
    service = rendered.one("Service")
    expect(service["spec"]["selector"] == selector, "Service selector differs from the Deployment selector")
    expect(service["spec"].get("type", "ClusterIP") == "ClusterIP", "metrics Service must be ClusterIP")
    expect([(p["name"], p["port"], p.get("targetPort")) for p in service["spec"]["ports"]] == [("http", 8080, "http")],
           f"metrics Service ports: {service['spec']['ports']}")
    for pdb in rendered.of_kind("PodDisruptionBudget"):
        if component_of(pdb) == "admin":
            continue
        expect(pdb["spec"]["selector"]["matchLabels"] == selector, "PDB selector differs from the Deployment selector")
    pod = deployment["spec"]["template"]["spec"]
    for constraint in pod.get("topologySpreadConstraints") or []:
        expect(constraint["labelSelector"]["matchLabels"] == selector, "topology spread selects other pods")
    anti = ((pod.get("affinity") or {}).get("podAntiAffinity") or {})
    for term in anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []:
        expect(term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector, "anti-affinity selects other pods")
    for term in anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []:
        expect(term["labelSelector"]["matchLabels"] == selector, "anti-affinity selects other pods")


def service_account_name(rendered: Rendered, values: dict) -> str:
    sa_values = values.get("serviceAccount") or {}
    if sa_values.get("create", True):
        return rendered.one("ServiceAccount")["metadata"]["name"]
    return sa_values["name"]


def check_admin(rendered: Rendered, values: dict, secret_name: str, secret_key: str) -> None:
    """The admin role (`bot-runtime admin`): hardened, no Kubernetes access, wired to the
    database, Redis and its session secret, and selected by nothing of the operator's."""
    admin = values["admin"]
    deployment = rendered.one("Deployment", component="admin")
    pod = deployment["spec"]["template"]["spec"]
    pod_sc = pod.get("securityContext") or {}
    expect(pod_sc.get("runAsNonRoot") is True and (pod_sc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
           "admin pod: runAsNonRoot and RuntimeDefault seccomp")
    expect(pod.get("automountServiceAccountToken") is False, "the admin role has no Kubernetes access: no token mounted")
    container = operator_container(deployment)
    sc = container.get("securityContext") or {}
    expect(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
           and (sc.get("capabilities") or {}).get("drop") == ["ALL"], f"admin container security context: {sc}")
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            expect(resource in (resources.get(kind) or {}), f"admin resources.{kind}.{resource} must be set")
    expect(container.get("command") == ["/bot-runtime"] and container.get("args") == ["admin"],
           f"expected /bot-runtime admin, got {container.get('command')} {container.get('args')}")
    expect([(p["name"], p["containerPort"]) for p in container.get("ports") or []] == [("http", 8090)], "admin port http/8090")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (container.get(probe) or {}).get("httpGet") or {}
        expect(get.get("path") == path and get.get("port") == "http", f"admin {probe} must GET {path} on port http")
    env = env_of(container)
    postgres, redis = values.get("postgres") or {}, values.get("redis") or {}
    expect(env.get("DATABASE_URL") == {"secretKeyRef": {"name": postgres.get("existingSecret", "botfleet-postgres"),
                                                         "key": postgres.get("key", "url")}}, f"DATABASE_URL: {env.get('DATABASE_URL')}")
    expect(env.get("REDIS_URL") == {"secretKeyRef": {"name": redis.get("existingSecret", "botfleet-redis"),
                                                      "key": redis.get("key", "url")}}, f"REDIS_URL: {env.get('REDIS_URL')}")
    expect(env.get("ADMIN_LISTEN") == "0.0.0.0:8090", "ADMIN_LISTEN")
    expect(env.get("ADMIN_FLEET_ADMINS") == ",".join(str(i) for i in admin["fleetAdmins"]), f"ADMIN_FLEET_ADMINS: {env.get('ADMIN_FLEET_ADMINS')}")
    expect(env.get("ADMIN_TRUSTED_PROXIES") == ",".join(admin["trustedProxies"]), "ADMIN_TRUSTED_PROXIES")
    expect(env.get("ADMIN_THUMBS_DOWN_TO_REVIEW") == str(admin["thumbsDownToReview"]), f"ADMIN_THUMBS_DOWN_TO_REVIEW: {env.get('ADMIN_THUMBS_DOWN_TO_REVIEW')}")
    expect(env.get("ADMIN_TIME_ZONE") == admin["timeZone"], f"ADMIN_TIME_ZONE: {env.get('ADMIN_TIME_ZONE')}")
    check_admin_pdb_and_network_policy(rendered, admin, deployment)
    secret_file = env.get("ADMIN_SESSION_SECRET_FILE") or ""
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts") or []}
    expect("/tmp" in mounts, "admin: a writable /tmp")
    mount = mounts.get(secret_file.rsplit("/", 1)[0]) or {}
    expect(mount.get("readOnly") is True, f"the session secret is mounted read-only where ADMIN_SESSION_SECRET_FILE points: {secret_file}")
    volume = [v for v in pod.get("volumes") or [] if v["name"] == mount.get("name")]
    expect(len(volume) == 1 and volume[0]["secret"]["secretName"] == secret_name
           and volume[0]["secret"]["items"] == [{"key": secret_key, "path": secret_file.rsplit("/", 1)[1]}],
           f"the session secret volume: {volume}")
    # Its Service selects the admin pods only, and the operator's selects none of them.
    service = rendered.one("Service", component="admin")
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    expect(service["spec"]["selector"] == selector and selector.items() <= pod_labels.items(), "admin Service selector")
    expect([(p["name"], p["port"], p.get("targetPort")) for p in service["spec"]["ports"]] == [("http", 8090, "http")], "admin Service ports")
    operator_selector = rendered.one("Service")["spec"]["selector"]
    expect(not operator_selector.items() <= pod_labels.items(), "the operator's Service selects the admin pods")
    if not admin.get("sessionSecret", {}).get("existingSecret"):
        secret = rendered.one("Secret", secret_name)
        import base64
        expect(len(base64.b64decode(secret["data"][secret_key])) >= 32, "the session secret has at least 32 bytes")
    else:
        expect(not [o for o in rendered.of_kind("Secret") if component_of(o) == "admin"], "an existing session Secret is not created")


def check_admin_pdb_and_network_policy(rendered: Rendered, admin: dict, deployment: dict) -> None:
    """The admin pods' PodDisruptionBudget (only with several replicas, never blocking every
    drain) and NetworkPolicy (ingress to port http from the listed peers only; egress to DNS,
    Postgres and Redis only), each selecting exactly the admin pods."""
    selector = deployment["spec"]["selector"]["matchLabels"]
    pdbs = [p for p in rendered.of_kind("PodDisruptionBudget") if component_of(p) == "admin"]
    pdb_values = admin["podDisruptionBudget"]
    if pdb_values["enabled"] and admin["replicaCount"] > 1:
        expect(len(pdbs) == 1, f"one admin PodDisruptionBudget, got {len(pdbs)}")
        spec = pdbs[0]["spec"]
        expect(spec["selector"]["matchLabels"] == selector, "the admin PDB selects the admin pods")
        expect(spec.get("minAvailable") == pdb_values["minAvailable"] < admin["replicaCount"],
               f"admin PDB minAvailable {spec.get('minAvailable')} of {admin['replicaCount']}")
        expect(spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow", "a crash-looping admin pod never blocks a drain")
        operator_pdbs = [p for p in rendered.of_kind("PodDisruptionBudget") if component_of(p) != "admin"]
        expect(all(p["metadata"]["name"] != pdbs[0]["metadata"]["name"] for p in operator_pdbs), "distinct PDB names")
    else:
        expect(not pdbs, "a single admin replica gets no PodDisruptionBudget (it would block drains)")
    policies = [p for p in rendered.of_kind("NetworkPolicy") if component_of(p) == "admin"]
    np = admin["networkPolicy"]
    if not np["enabled"]:
        expect(not policies, "no admin NetworkPolicy unless enabled")
        return
    expect(len(policies) == 1, f"one admin NetworkPolicy, got {len(policies)}")
    spec = policies[0]["spec"]
    expect(spec["podSelector"] == {"matchLabels": selector}, "the admin NetworkPolicy selects the admin pods only")
    expect(sorted(spec["policyTypes"]) == ["Egress", "Ingress"], f"both directions are restricted: {spec['policyTypes']}")
    ports = {p["name"]: p["containerPort"] for p in operator_container(deployment).get("ports") or []}
    expect(spec["ingress"] == ([{"from": np["from"], "ports": [{"port": "http", "protocol": "TCP"}]}] if np["from"] else []),
           f"ingress: port http ({ports.get('http')}) from the listed peers only: {spec['ingress']}")
    dns = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    def to(target: dict) -> dict:
        rule = {"ports": [{"port": target["port"], "protocol": "TCP"}]}
        if target["to"]:
            rule["to"] = target["to"]
        return rule
    expect(spec["egress"] == [dns, to(np["postgres"]), to(np["redis"])],
           f"egress: DNS, Postgres and Redis only: {spec['egress']}")


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------

MONITORING_VALUES = {
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "BotFleet"}},
}
SCENARIOS: dict[str, dict] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["a", "b"]},
    "cluster-wide": {"clusterWide": True, "watchNamespaces": []},
    "network-policy": {"runtime": {"image": {"repository": "ghcr.io/botfleet/bot-runtime"},
                                   "networkPolicy": {"enabled": True,
                                                     "metricsFrom": [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}],
                                                     "webhookFrom": [{"podSelector": {"matchLabels": {"app": "ingress"}}}]}}},
    "monitoring": MONITORING_VALUES,
    "admin": {**MONITORING_VALUES, "admin": {
        "enabled": True, "fleetAdmins": [111, 222], "trustedProxies": ["10.0.0.7", "fd00::7"], "apiKeyPerMinute": 60, "apiPerMinute": 300,
        "replicaCount": 3, "thumbsDownToReview": 3, "timeZone": "Europe/Berlin",
        "podDisruptionBudget": {"enabled": True, "minAvailable": 2},
        "networkPolicy": {"enabled": True, "from": [{"namespaceSelector": {"matchLabels": {"team": "edge"}}}],
                          "postgres": {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "port": 5433},
                          "redis": {"to": [], "port": 6380}},
        "ingress": {"enabled": True, "className": "nginx", "host": "admin.bots.example.com", "tlsSecret": "admin-tls",
                    "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"}}}},
    "admin-existing-secret": {"admin": {"enabled": True, "sessionSecret": {"existingSecret": "my-admin-session", "key": "s"}},
                              "postgres": {"existingSecret": "pg-url", "key": "DATABASE_URL"}},
    "no-admission-policy": {"admissionPolicy": {"enabled": False}},
    "single-replica": {"replicaCount": 1, "leaderElection": {"enabled": False, "leaseName": LEASE_NAME}},
    # Every other template branch: digest-pinned image, existing ServiceAccount, hard
    # anti-affinity, no zone spread, pull secrets, priority class, scheduling knobs, extra env.
    "customised": {
        "image": {"digest": "sha256:" + "ab" * 32},
        "serviceAccount": {"create": False, "name": "botfleet-operator-sa"},
        "podAntiAffinity": "hard",
        "topologySpread": {"enabled": False},
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "extraEnv": [
            {"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
        "podAnnotations": {"example.com/team": "bots"},
        "podLabels": {"team": "bots"},
        "logLevel": "info,kube=warn",
        "telegram": {"apiUrl": "http://telegram-bot-api.infra:8081"},
        "runtime": {"image": {"repository": "registry.example.com/botfleet/bot-runtime", "tag": "1.2.3"},
                    "allowedImages": ["registry.example.com/botfleet/", "ghcr.io/botfleet/bot-runtime"],
                    "serviceMonitor": {"labels": {"release": "kube-prometheus-stack", "team": "bots"}}},
        "postgres": {"existingSecret": "pg-url", "key": "DATABASE_URL"},
        "redis": {"existingSecret": "redis-url", "key": "REDIS_URL"},
        "podDisruptionBudget": {"enabled": True, "minAvailable": 2},
        "replicaCount": 3,
    },
}

# Values the schema must refuse, each with why.
BAD_VALUES: dict[str, dict] = {
    "replicaCount 0": {"replicaCount": 0},
    "replicaCount as a string": {"replicaCount": "2"},
    "namespace that is no DNS label": {"watchNamespaces": ["Bots_A"]},
    "duplicate watched namespace": {"watchNamespaces": ["a", "a"]},
    "watchNamespaces as a string": {"watchNamespaces": "a,b"},
    "unknown log level": {"logLevel": "loud"},
    "empty allowed image (would allow everything)": {"runtime": {"image": {"repository": "a/b"}, "allowedImages": [""]}},
    "telegram.apiUrl not http(s)": {"telegram": {"apiUrl": "ftp://api.telegram.org"}},
    "image.pullPolicy outside the enum": {"image": {"pullPolicy": "Sometimes"}},
    "image digest malformed": {"image": {"digest": "sha256:xyz"}},
    "empty Postgres Secret name": {"postgres": {"existingSecret": ""}},
    "Redis Secret key with a slash": {"redis": {"key": "a/b"}},
    "podAntiAffinity outside the enum": {"podAntiAffinity": "maybe"},
    "scrape interval not a duration": {"serviceMonitor": {"interval": "often"}},
    "memory request not a quantity": {"resources": {"requests": {"memory": "lots"}}},
    "probe period 0": {"probes": {"liveness": {"periodSeconds": 0}}},
    "seccomp type outside the enum": {"podSecurityContext": {"seccompProfile": {"type": "Whatever"}}},
    "unknown top-level key (typo)": {"replicas": 2},
    "unknown nested key (typo)": {"leaderElection": {"enable": True}},
    "admin fleet admin that is no Telegram id": {"admin": {"fleetAdmins": ["alice"]}},
    "admin trusted proxy that is no IP address": {"admin": {"trustedProxies": ["proxy.local"]}},
    "admin API key limit 0": {"admin": {"apiKeyPerMinute": 0}},
    "admin API limit 0": {"admin": {"apiPerMinute": 0}},
    "admin time zone with a space": {"admin": {"timeZone": "Europe/Ber lin"}},
    "admin thumbs-down threshold below 0": {"admin": {"thumbsDownToReview": -1}},
    "admin PDB minAvailable 0": {"admin": {"podDisruptionBudget": {"minAvailable": 0}}},
    "admin NetworkPolicy Postgres port 0": {"admin": {"networkPolicy": {"postgres": {"port": 0}}}},
}

# Values the templates must refuse (cross-field rules), with a word the message must contain.
BAD_COMBINATIONS: dict[str, tuple[dict, str]] = {
    "several replicas without leader election": (
        {"replicaCount": 2, "leaderElection": {"enabled": False}}, "leaderElection"),
    "existing ServiceAccount without a name": ({"serviceAccount": {"create": False}}, "serviceAccount.name"),
    "clusterWide with a namespace list": ({"clusterWide": True, "watchNamespaces": ["a"]}, "clusterWide"),
    "no namespace and not clusterWide": ({"watchNamespaces": []}, "watchNamespaces"),
    "PDB that blocks every drain": ({"replicaCount": 2, "podDisruptionBudget": {"minAvailable": 2}}, "minAvailable"),
    "admin PDB that blocks every drain": (
        {"admin": {"enabled": True, "replicaCount": 2, "podDisruptionBudget": {"enabled": True, "minAvailable": 2}}}, "minAvailable"),
}


def check_scenario(run: Runner, chart: helm.Chart, chart_meta: dict, scenario: str, values: dict) -> Rendered | None:
    prefix = f"[{scenario}]"
    run.check(f"{prefix} helm lint --strict", lambda: check_lint(CHART, values))
    holder: dict[str, Rendered] = {}

    def do_render() -> None:
        holder["r"] = render(chart, values)
        expect(holder["r"].objects, "nothing rendered")

    if not run.check(f"{prefix} helm template renders", do_render):
        return None
    rendered = holder["r"]
    for obj in rendered.objects:
        if obj["apiVersion"].split("/")[0] == NO_UPSTREAM_SCHEMA_GROUP:
            run.note(f"{prefix} {obj_id(obj)}: no Kubernetes schema for {obj['apiVersion']} "
                     "(prometheus-operator CRD); checked field by field instead")
            continue
        run.check(f"{prefix} kubernetes-validate {KUBE_VERSION} strict: {obj_id(obj)}",
                  lambda obj=obj: check_k8s_schema(obj))
    run.check(f"{prefix} names, namespaces and labels", lambda: check_metadata(rendered))
    run.check(f"{prefix} RBAC: no wildcards, no escalation verbs", lambda: check_rbac_least_privilege(rendered))
    run.check(f"{prefix} RBAC: bindings name the operator's ServiceAccount",
              lambda: check_bindings(rendered, service_account_name(rendered, values)))
    run.check(f"{prefix} Deployment: security context, probes, port, resources",
              lambda: check_deployment_hardening(rendered, chart_meta, values))
    run.check(f"{prefix} selectors of Service, PDB and spreading match the pods", lambda: check_selectors(rendered))
    run.check(f"{prefix} NOTES.txt says to apply config/samples/",
              lambda: expect("apply -f config/samples/" in rendered.notes, "NOTES.txt lacks the next step"))
    return rendered


def granted_by(rendered: Rendered, kind: str, namespace: str | None, name: str) -> set[tuple]:
    for role in rendered.of_kind(kind):
        if role["metadata"]["name"] == name and role["metadata"].get("namespace") == namespace:
            return rules_of(role)
    raise CheckFailed(f"no {kind} {namespace + '/' if namespace else ''}{name}")


def diff_permissions(actual: set[tuple], expected: set[tuple]) -> str:
    fmt = lambda ps: "\n".join(f"  {g or 'core'}/{r} {v}{' name=' + n if n else ''}" for g, r, v, n in sorted(ps, key=str))
    extra, missing = actual - expected, expected - actual
    return (f"granted but not needed:\n{fmt(extra)}\n" if extra else "") + (f"needed but not granted:\n{fmt(missing)}" if missing else "")


def check_cluster_mode(rendered: Rendered) -> None:
    fullname = rendered.one("Deployment")["metadata"]["name"]
    actual = granted_by(rendered, "ClusterRole", None, fullname)
    expect(actual == EXPECTED_WATCHED_NAMESPACE_PERMISSIONS, diff_permissions(actual, EXPECTED_WATCHED_NAMESPACE_PERMISSIONS))
    rendered.one("ClusterRoleBinding", fullname)
    namespaced_roles = [r for r in rendered.of_kind("Role") if r["metadata"]["name"] != f"{fullname}-leader-election"]
    expect(not namespaced_roles, f"cluster mode must not render per-namespace Roles: {[obj_id(r) for r in namespaced_roles]}")


def check_namespaced_mode(rendered: Rendered, namespaces: list[str]) -> None:
    fullname = rendered.one("Deployment")["metadata"]["name"]
    for ns in namespaces:
        actual = granted_by(rendered, "Role", ns, fullname)
        expect(actual == EXPECTED_WATCHED_NAMESPACE_PERMISSIONS,
               f"Role in {ns}:\n" + diff_permissions(actual, EXPECTED_WATCHED_NAMESPACE_PERMISSIONS))
        binding = [b for b in rendered.of_kind("RoleBinding") if b["metadata"]["namespace"] == ns]
        expect(len(binding) == 1 and binding[0]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": fullname},
               f"namespace {ns} needs one RoleBinding to Role {fullname}")
    cluster_roles = {r["metadata"]["name"] for r in rendered.of_kind("ClusterRole")}
    expect(cluster_roles == {f"{fullname}-crd-discovery"},
           f"namespaced mode may only have the CRD-discovery ClusterRole, found {sorted(cluster_roles)}")
    cluster_bindings = {b["metadata"]["name"] for b in rendered.of_kind("ClusterRoleBinding")}
    expect(cluster_bindings == {f"{fullname}-crd-discovery"},
           f"namespaced mode may only have the CRD-discovery ClusterRoleBinding, found {sorted(cluster_bindings)}")
    watched_roles = {r["metadata"]["namespace"] for r in rendered.of_kind("Role") if r["metadata"]["name"] == fullname}
    expect(watched_roles == set(namespaces), f"Roles rendered in {sorted(watched_roles)}, expected {namespaces}")


def check_always_present_rbac(rendered: Rendered, leader_election: bool) -> None:
    fullname = rendered.one("Deployment")["metadata"]["name"]
    actual = granted_by(rendered, "ClusterRole", None, f"{fullname}-crd-discovery")
    expect(actual == EXPECTED_CRD_DISCOVERY_PERMISSIONS, diff_permissions(actual, EXPECTED_CRD_DISCOVERY_PERMISSIONS))
    lease_roles = [r for r in rendered.of_kind("Role") if r["metadata"]["name"] == f"{fullname}-leader-election"]
    if leader_election:
        expect(len(lease_roles) == 1 and lease_roles[0]["metadata"]["namespace"] == NAMESPACE,
               "the leader-election Role must exist, in the release namespace only")
        actual = rules_of(lease_roles[0])
        expect(actual == EXPECTED_LEASE_PERMISSIONS, diff_permissions(actual, EXPECTED_LEASE_PERMISSIONS))
    else:
        expect(not lease_roles, "no leader-election Role without leader election")


def check_admission_policy(rendered: Rendered, service_account: str) -> None:
    """The policy keeps the operator's ServiceAccount (and only it) to its own Secrets, enforced."""
    policies = rendered.of_kind("ValidatingAdmissionPolicy")
    expect(len(policies) == 1, f"expected one ValidatingAdmissionPolicy, got {[obj_id(p) for p in policies]}")
    policy = policies[0]
    spec = policy["spec"]
    expect(policy["apiVersion"] == "admissionregistration.k8s.io/v1", "the policy must use the GA API")
    expect(spec.get("failurePolicy") == "Fail", "failurePolicy must be Fail")
    user = f"system:serviceaccount:{NAMESPACE}:{service_account}"
    conditions = [c["expression"] for c in spec.get("matchConditions") or []]
    expect(conditions == [f"request.userInfo.username == '{user}'"], f"match condition {conditions} is not the operator's {user}")
    rules = spec["matchConstraints"]["resourceRules"]
    expect(rules == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE", "DELETE"], "resources": ["secrets"]}],
           f"the policy must match updates and deletes of Secrets only: {rules}")
    expression = spec["validations"][0]["expression"]
    for needed in ("oldObject.metadata.labels['app.kubernetes.io/managed-by'] == 'botfleet-operator'", "o.kind == 'BotInstance'",
                   "o.controller == true"):
        expect(needed in expression, f"the validation lacks {needed!r}: {expression}")
    bindings = rendered.of_kind("ValidatingAdmissionPolicyBinding")
    expect(len(bindings) == 1 and bindings[0]["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]},
           f"one binding, enforcing (Deny) everywhere: {[b['spec'] for b in bindings]}")


def check_pdb(rendered: Rendered, min_available: int | None) -> None:
    pdbs = [p for p in rendered.of_kind("PodDisruptionBudget") if component_of(p) != "admin"]
    if min_available is None:
        expect(not pdbs, "a single replica must not get a PodDisruptionBudget (it would block drains)")
    else:
        expect(len(pdbs) == 1 and pdbs[0]["spec"].get("minAvailable") == min_available,
               f"expected one PDB with minAvailable {min_available}, got {[p['spec'] for p in pdbs]}")


def check_no_monitoring_objects(rendered: Rendered) -> None:
    found = [obj_id(o) for o in rendered.objects
             if o["apiVersion"].startswith(NO_UPSTREAM_SCHEMA_GROUP) or o["kind"] == "ConfigMap"]
    expect(not found, f"monitoring extras are off by default, found {found}")


def check_service_monitor(rendered: Rendered) -> None:
    sm = rendered.one("ServiceMonitor")
    expect(sm["apiVersion"] == "monitoring.coreos.com/v1", f"ServiceMonitor apiVersion {sm['apiVersion']}")
    spec = sm["spec"]
    allowed = {"jobLabel", "namespaceSelector", "selector", "endpoints"}
    expect(set(spec) <= allowed, f"unexpected ServiceMonitor fields {set(spec) - allowed}")
    service = rendered.one("Service")
    labels = service["metadata"]["labels"]
    expect(spec["selector"]["matchLabels"].items() <= labels.items(), "ServiceMonitor selector does not select the Service")
    expect(spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}, f"namespaceSelector {spec['namespaceSelector']}")
    expect(labels.get(spec["jobLabel"]) == "botfleet-operator",
           f"the Service's {spec['jobLabel']} label must be botfleet-operator (alerts use job=\"botfleet-operator\")")
    endpoints = spec["endpoints"]
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    expect(len(endpoints) == 1, "one scrape endpoint expected")
    endpoint = endpoints[0]
    expect(endpoint["port"] in service_ports and endpoint["path"] == "/metrics",
           f"endpoint {endpoint} must scrape /metrics on a Service port")
    duration = re.compile(r"^(\d+(ms|s|m|h))+$")
    expect(duration.match(endpoint["interval"]) and duration.match(endpoint["scrapeTimeout"]), f"bad durations in {endpoint}")
    expect(sm["metadata"]["labels"].get("release") == "kube-prometheus-stack", "serviceMonitor.labels not applied")


def check_prometheus_rule(rendered: Rendered) -> None:
    rule = rendered.one("PrometheusRule")
    expect(rule["apiVersion"] == "monitoring.coreos.com/v1", f"PrometheusRule apiVersion {rule['apiVersion']}")
    expect(set(rule["spec"]) == {"groups"}, f"unexpected PrometheusRule fields {set(rule['spec'])}")
    source = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    expect(rule["spec"]["groups"] == source["groups"], "PrometheusRule groups differ from config/monitoring/alerts.yaml")
    expect(rule["metadata"]["labels"].get("release") == "kube-prometheus-stack", "prometheusRule.labels not applied")


def check_dashboard_configmap(rendered: Rendered) -> None:
    cm = [c for c in rendered.of_kind("ConfigMap") if c["metadata"]["labels"].get("grafana_dashboard") == "1"]
    expect(len(cm) == 1, 'expected one ConfigMap labelled grafana_dashboard: "1"')
    data = cm[0]["data"]
    expect(list(data) == ["botfleet.json"], f"ConfigMap keys {list(data)}")
    expect(json.loads(data["botfleet.json"]) == json.loads((MONITORING / "grafana-dashboard.json").read_text()),
           "the dashboard in the ConfigMap differs from config/monitoring/grafana-dashboard.json")
    expect(cm[0]["metadata"].get("annotations", {}).get("grafana_folder") == "BotFleet", "annotations not applied")
    expect(len(json.dumps(data)) < 1_000_000, "the dashboard ConfigMap is over 1 MB")


# ---------------------------------------------------------------------------------------------
# values.schema.json
# ---------------------------------------------------------------------------------------------


def resolve(schema: dict, root: dict) -> dict:
    while True:
        if "$ref" in schema:
            ref = schema["$ref"]
            expect(ref.startswith("#/definitions/"), f"unsupported $ref {ref}")
            schema = root["definitions"][ref.split("/")[-1]]
        elif "allOf" in schema and len(schema["allOf"]) == 1:
            schema = schema["allOf"][0]
        else:
            return schema


def walk_values(value: Any, schema: dict, root: dict, path: str, problems: list[str]) -> None:
    schema = resolve(schema, root)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in value.items():
            where = f"{path}.{key}" if path else key
            if key in props:
                if "description" not in props[key]:
                    problems.append(f"{where}: no description in the schema")
                walk_values(sub, props[key], root, where, problems)
            elif isinstance(schema.get("additionalProperties"), dict):
                walk_values(sub, schema["additionalProperties"], root, where, problems)
            elif schema.get("type") == "object" and "additionalProperties" not in schema and not props:
                pass  # a free-form Kubernetes object
            else:
                problems.append(f"{where}: not described by values.schema.json")
        if schema.get("type") == "object" and schema.get("properties") and schema.get("additionalProperties") is not False:
            problems.append(f"{path or '<root>'}: object schema with named properties must set additionalProperties: false")
    elif isinstance(value, list):
        if schema.get("type") != "array":
            problems.append(f"{path}: a list, but the schema says {schema.get('type')}")
        for index, item in enumerate(value):
            walk_values(item, schema.get("items") or {}, root, f"{path}[{index}]", problems)


def check_schema_generated() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_values_schema", Path(__file__).with_name("gen_values_schema.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expect((CHART / "values.schema.json").read_text() == module.render(),
           "values.schema.json differs from charts/tests/gen_values_schema.py: edit the generator and run\n"
           "  python3 charts/tests/gen_values_schema.py")


def check_schema_document(schema: dict) -> None:
    expect(schema.get("$schema") == "http://json-schema.org/draft-07/schema#", "values.schema.json must be JSON Schema draft-07")
    jsonschema.Draft7Validator.check_schema(schema)


def check_schema_covers_values(schema: dict, values: dict) -> None:
    problems: list[str] = []
    walk_values(values, schema, schema, "", problems)
    missing_defaults = [k for k in schema["properties"] if k != "global" and k not in values]
    if missing_defaults:
        problems.append(f"schema properties without a default in values.yaml: {missing_defaults}")
    expect(not problems, "\n".join(problems))


def check_defaults_valid(schema: dict, values: dict) -> None:
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(values), key=lambda e: list(e.path))
    expect(not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors))


def check_refused(chart: helm.Chart, values: dict) -> None:
    try:
        chart.validate_schema(values)
    except helm.HelmValuesError:
        return
    raise CheckFailed(f"values.schema.json accepted {values}")


def check_render_refused(chart: helm.Chart, values: dict, word: str) -> None:
    try:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    except (helm.HelmRenderError, helm.HelmValuesError) as error:
        expect(word in str(error), f"refused, but the message does not mention {word!r}: {error}")
        return
    raise CheckFailed(f"the chart rendered {values}")


def check_lint_refuses(values: dict) -> None:
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
    expect(bool(report.get("errors")), f"helm lint accepted {values}")


# ---------------------------------------------------------------------------------------------
# Monitoring files: alerts and dashboard
# ---------------------------------------------------------------------------------------------


def metric_base(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS:
            return name[: -len(suffix)]
    return name


def check_promql(expr: str, where: str) -> None:
    try:
        ast = promql_parser.parse(expr)
    except Exception as error:
        raise CheckFailed(f"{where}: PromQL does not parse: {error}\n  {expr}") from None
    problems: list[str] = []

    def selectors_under(node: Any) -> list[Any]:
        found: list[Any] = []

        def visit(n: Any) -> bool:
            if isinstance(n, promql_parser.VectorSelector):
                found.append(n)
            return True

        promql_parser.walk(node, visit)
        return found

    def labels_of(selector: Any) -> set[str]:
        name = selector.name or ""
        labels = set(METRICS.get(metric_base(name), set())) | TARGET_LABELS
        if name.endswith("_bucket"):
            labels.add("le")
        return labels

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name or ""
            base = metric_base(name)
            if base not in METRICS:
                problems.append(f"unknown metric {name}")
                return True
            for matcher in node.matchers.matchers:
                if matcher.name not in labels_of(node):
                    problems.append(f"{name} has no label {matcher.name}")
                if base == "up" and matcher.name == "job" and matcher.value not in SCRAPE_JOBS:
                    problems.append(f"up{{job={matcher.value!r}}}: jobs are {sorted(SCRAPE_JOBS)}")
            if base == "up" and "job" not in {m.name for m in node.matchers.matchers}:
                problems.append("up without a job matcher matches every target in Prometheus")
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            allowed = set().union(*(labels_of(s) for s in selectors_under(node.expr))) if selectors_under(node.expr) else set()
            unknown = set(node.modifier.labels) - allowed
            if unknown:
                problems.append(f"aggregation by {sorted(unknown)}: no such label on the series aggregated")
        return True

    promql_parser.walk(ast, visit)
    expect(not problems, f"{where}: " + "; ".join(problems) + f"\n  {expr}")


def load_alerts() -> dict:
    return yaml.safe_load((MONITORING / "alerts.yaml").read_text())


def all_alert_rules(doc: dict) -> list[dict]:
    return [rule for group in doc["groups"] for rule in group["rules"]]


def check_alert_structure(doc: dict) -> None:
    expect(set(doc) == {"groups"}, f"alerts.yaml must hold only groups, found {set(doc)}")
    group_names = [g["name"] for g in doc["groups"]]
    expect(len(group_names) == len(set(group_names)), f"duplicate group names {group_names}")
    names: list[str] = []
    for group in doc["groups"]:
        expect(set(group) <= {"name", "rules", "interval"}, f"group {group['name']}: fields {set(group)}")
        for rule in group["rules"]:
            expect("alert" in rule and "record" not in rule, f"only alerting rules expected: {rule}")
            names.append(rule["alert"])
            where = rule["alert"]
            expect(re.fullmatch(r"BotFleet[A-Z][A-Za-z0-9]+", where) is not None, f"{where}: names start with BotFleet")
            expect(set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"},
                   f"{where}: unexpected fields {set(rule)}")
            expect(re.fullmatch(r"(\d+(ms|s|m|h|d))+", str(rule.get("for", ""))) is not None, f"{where}: needs a `for` duration")
            expect(rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}, f"{where}: severity critical|warning|info")
            annotations = rule.get("annotations") or {}
            expect(annotations.get("summary") and annotations.get("description"), f"{where}: needs summary and description")
            for text in annotations.values():
                expect(text.count("{{") == text.count("}}"), f"{where}: unbalanced template braces in {text!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    expect(not duplicates, f"duplicate alert names {duplicates}")
    missing = {name: why for name, why in REQUIRED_ALERTS.items() if name not in names}
    expect(not missing, f"alerts missing: {missing}")


def load_dashboard() -> dict:
    return json.loads((MONITORING / "grafana-dashboard.json").read_text())


def dashboard_panels(dashboard: dict) -> list[dict]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels") or [])
    return panels


def grafana_to_promql(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def check_dashboard_structure(dashboard: dict) -> None:
    expect(dashboard.get("uid") == "botfleet-overview" and dashboard.get("title"), "dashboard uid/title")
    expect(isinstance(dashboard.get("schemaVersion"), int), "dashboard schemaVersion")
    expect("id" not in dashboard or dashboard["id"] is None, "an exported dashboard must not carry a database id")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    expect(variables.get("datasource", {}).get("type") == "datasource" and variables["datasource"].get("query") == "prometheus",
           "a Prometheus datasource variable named datasource is required")
    panels = dashboard_panels(dashboard)
    ids = [p["id"] for p in panels]
    expect(len(ids) == len(set(ids)), "panel ids must be unique")
    boxes = []
    for panel in panels:
        g = panel["gridPos"]
        expect(0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, f"panel {panel['title']!r} leaves the 24-column grid")
        for other_title, o in boxes:
            overlap = g["x"] < o["x"] + o["w"] and o["x"] < g["x"] + g["w"] and g["y"] < o["y"] + o["h"] and o["y"] < g["y"] + g["h"]
            expect(not overlap, f"panels {panel['title']!r} and {other_title!r} overlap")
        boxes.append((panel["title"], g))
        if panel["type"] != "row":
            expect(panel.get("datasource", {}).get("uid") == "${datasource}", f"panel {panel['title']!r} must use ${{datasource}}")
            expect(panel.get("targets"), f"panel {panel['title']!r} has no queries")
    for name, variable in variables.items():
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            m = re.fullmatch(r"label_values\((\w+), *(\w+)\)", query)
            expect(m is not None, f"variable {name}: unexpected query {query}")
            expect(m.group(2) in METRICS.get(m.group(1), set()), f"variable {name}: {m.group(1)} has no label {m.group(2)}")


def check_dashboard_queries(dashboard: dict) -> None:
    problems = []
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets") or []:
            try:
                check_promql(grafana_to_promql(target["expr"]), f"panel {panel['title']!r} {target['refId']}")
            except CheckFailed as failure:
                problems.append(str(failure))
    expect(not problems, "\n".join(problems))


def check_packaged_copies() -> None:
    packaged = sorted(p.name for p in (CHART / "files").iterdir() if p.is_file())
    expect(packaged == sorted(PACKAGED_MONITORING_FILES),
           f"charts/botfleet/files holds {packaged}, expected {sorted(PACKAGED_MONITORING_FILES)}")
    stale = [name for name in PACKAGED_MONITORING_FILES
             if (CHART / "files" / name).read_bytes() != (MONITORING / name).read_bytes()]
    expect(not stale, f"charts/botfleet/files/{{{', '.join(stale)}}} differ from config/monitoring/: "
                      f"copy them with  cp config/monitoring/{{alerts.yaml,grafana-dashboard.json}} charts/botfleet/files/")


# ---------------------------------------------------------------------------------------------
# CRDs written by crdgen
# ---------------------------------------------------------------------------------------------


# Plain scalars that YAML 1.1 (sigs.k8s.io/yaml: kubectl, Helm, the API server's YAML decoding)
# reads as booleans, but a YAML 1.2 writer such as serde_yaml leaves unquoted.
YAML11_ONLY_BOOLEANS = {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
                        "on", "On", "ON", "off", "Off", "OFF"}


def check_yaml11_booleans(files: list[Path]) -> None:
    problems = []
    for path in files:
        for token in yaml.scan(path.read_text()):
            if isinstance(token, yaml.ScalarToken) and token.plain and token.value in YAML11_ONLY_BOOLEANS:
                problems.append(f"{path.relative_to(REPO)}:{token.start_mark.line + 1}: {token.value} "
                                f"is read as a boolean; the generator must quote it")
    expect(not problems, "\n".join(problems))


def check_crds(run: Runner, chart: helm.Chart) -> None:
    files = sorted(CRD_DIR.glob("*.yaml")) + sorted(CRD_DIR.glob("*.yml")) if CRD_DIR.is_dir() else []
    if not files:
        run.note(f"{CRD_DIR.relative_to(REPO)}/ has no CRD YAML yet (crdgen writes it); CRD checks skipped")
        return
    crds: list[dict] = []

    def parse() -> None:
        for path in files:
            crds.extend(load_yaml_docs(path.read_text(), str(path.relative_to(REPO))))
        expect(crds, "no documents")

    if not run.check("CRDs: YAML parses", parse):
        return
    run.check("CRDs: no unquoted yes/no/on/off (YAML 1.1 booleans for Kubernetes and Helm)",
              lambda: check_yaml11_booleans(files))
    for crd in crds:
        def validate(crd: dict = crd) -> None:
            expect(crd["kind"] == "CustomResourceDefinition" and crd["apiVersion"] == "apiextensions.k8s.io/v1",
                   f"{crd['__source__']}: not an apiextensions.k8s.io/v1 CustomResourceDefinition")
            check_k8s_schema(crd)
            spec = crd["spec"]
            expect(spec["group"] == "botfleet.io" and spec["scope"] == "Namespaced", f"{obj_id(crd)}: group/scope")
            expect(crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}", f"{obj_id(crd)}: name must be plural.group")
            expect(any(v.get("name") == "v1alpha1" and v.get("served") and v.get("storage") for v in spec["versions"]),
                   f"{obj_id(crd)}: v1alpha1 must be served and stored")
            for version in spec["versions"]:
                expect("status" in (version.get("subresources") or {}), f"{obj_id(crd)} {version['name']}: needs the status subresource")
        run.check(f"CRDs: kubernetes-validate {KUBE_VERSION} strict: {crd.get('metadata', {}).get('name')}", validate)

    def kinds_and_rbac() -> None:
        plurals = {crd["spec"]["names"]["plural"] for crd in crds}
        expect(plurals == set(BOTFLEET_KINDS), f"CRD plurals {sorted(plurals)} differ from the RBAC rules' {sorted(BOTFLEET_KINDS)}")
        loaded = {c["name"] for c in chart.crds}
        expect(len(loaded) == len(files), f"Helm loads {sorted(loaded)} from crds/, expected {len(files)} files")

    run.check("CRDs: the four kinds, matching the RBAC resources, loaded by Helm", kinds_and_rbac)


# ---------------------------------------------------------------------------------------------


def main() -> int:
    run = Runner()
    print(f"helm-python-sdk {helm.__version__} (Helm SDK {helm.helm_sdk_version()}), "
          f"kubernetes-validate {kubernetes_validate.__version__}, validating against Kubernetes {KUBE_VERSION}")
    if not CHART.is_dir():
        print(f"no chart at {CHART}")
        print("0 passed, 1 failed")
        return 1

    chart_meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    default_values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())

    # Files packaged into the chart and the human-facing copies.
    run.check("charts/botfleet/files/* equal config/monitoring/*", check_packaged_copies)

    # Values schema.
    run.check("values.schema.json is what gen_values_schema.py writes", check_schema_generated)
    run.check("values.schema.json is a valid draft-07 schema", lambda: check_schema_document(schema))
    run.check("values.schema.json describes every value in values.yaml", lambda: check_schema_covers_values(schema, default_values))
    run.check("values.yaml defaults satisfy values.schema.json", lambda: check_defaults_valid(schema, default_values))

    with helm.Chart.load(str(CHART)) as chart:
        run.check("Chart.yaml: apiVersion v2, appVersion, kubeVersion",
                  lambda: expect(chart.metadata.get("apiVersion") == "v2" and chart.metadata.get("appVersion")
                                 and chart.metadata.get("kubeVersion"), f"{chart.metadata}"))
        for why, bad in BAD_VALUES.items():
            run.check(f"schema refuses {why}", lambda bad=bad: check_refused(chart, bad))
        run.check("helm lint --strict refuses values the schema refuses", lambda: check_lint_refuses({"replicaCount": 0}))
        for why, (bad, word) in BAD_COMBINATIONS.items():
            run.check(f"templates refuse {why}", lambda bad=bad, word=word: check_render_refused(chart, bad, word))

        rendered = {name: check_scenario(run, chart, chart_meta, name, values) for name, values in SCENARIOS.items()}

        runtime_tag = chart_meta["appVersion"]
        if rendered["defaults"]:
            r = rendered["defaults"]
            run.check("[defaults] 2 replicas", lambda: expect(r.one("Deployment")["spec"]["replicas"] == 2, "replicas != 2"))
            run.check("[defaults] namespaced RBAC: a Role + RoleBinding in bots only, exactly the needed rules",
                      lambda: check_namespaced_mode(r, ["bots"]))
            run.check("[defaults] CRD discovery limited to the ServiceMonitor CRD; Lease Role in the release namespace",
                      lambda: check_always_present_rbac(r, leader_election=True))
            run.check("[defaults] env: WATCH_NAMESPACES=bots, contract values", lambda: check_env(r, {
                "WATCH_NAMESPACES": "bots",
                "TELEGRAM_API_URL": "https://api.telegram.org",
                "RUNTIME_IMAGE": f"ghcr.io/botfleet/bot-runtime:{runtime_tag}",
                "RUNTIME_ALLOWED_IMAGES": "",
                "RUNTIME_SERVICE_MONITOR_LABELS": "",
                "RUNTIME_NETWORK_POLICY": "",
                "RUNTIME_DATABASE_SECRET": "botfleet-postgres",
                "RUNTIME_DATABASE_SECRET_KEY": "url",
                "RUNTIME_REDIS_SECRET": "botfleet-redis",
                "RUNTIME_REDIS_SECRET_KEY": "url",
                "LEADER_ELECTION": "true",
                "LEASE_NAME": LEASE_NAME,
                "METRICS_ADDR": "0.0.0.0:8080",
                "RUST_LOG": "info",
            }))
            run.check("[defaults] PodDisruptionBudget minAvailable 1", lambda: check_pdb(r, 1))
            run.check("[defaults] replicas spread over nodes (preferred anti-affinity) and zones", lambda: expect(
                r.one("Deployment")["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
                .get("preferredDuringSchedulingIgnoredDuringExecution")
                and r.one("Deployment")["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "ScheduleAnyway",
                "expected preferred anti-affinity and a ScheduleAnyway spread"))
            run.check("[defaults] no ServiceMonitor, PrometheusRule or dashboard", lambda: check_no_monitoring_objects(r))
            run.check("[defaults] ValidatingAdmissionPolicy: the operator's ServiceAccount changes only its own Secrets",
                      lambda: check_admission_policy(r, service_account_name(r, {})))
        if rendered["namespaced"]:
            r = rendered["namespaced"]
            run.check("[namespaced] Role + RoleBinding in a and b, no cluster-wide grant but CRD discovery",
                      lambda: check_namespaced_mode(r, ["a", "b"]))
            run.check("[namespaced] CRD discovery and Lease Role as in cluster mode",
                      lambda: check_always_present_rbac(r, leader_election=True))
            run.check("[namespaced] env WATCH_NAMESPACES=a,b", lambda: check_env(r, {"WATCH_NAMESPACES": "a,b"}))
            run.check("[namespaced] NOTES.txt names the watched namespaces",
                      lambda: expect("only in: a, b" in r.notes, "NOTES.txt does not say which namespaces are watched"))
        if rendered["cluster-wide"]:
            r = rendered["cluster-wide"]
            run.check("[cluster-wide] ClusterRole + ClusterRoleBinding with exactly the needed rules",
                      lambda: check_cluster_mode(r))
            run.check("[cluster-wide] env WATCH_NAMESPACES empty (all)", lambda: check_env(r, {"WATCH_NAMESPACES": ""}))
            run.check("[cluster-wide] NOTES.txt says ALL namespaces",
                      lambda: expect("in ALL namespaces" in r.notes, "NOTES.txt does not say all namespaces are watched"))
        if rendered["network-policy"]:
            r = rendered["network-policy"]
            run.check("[network-policy] the peers reach the operator as JSON", lambda: check_env(r, {
                "RUNTIME_NETWORK_POLICY": json.dumps({"metrics": [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}],
                                                      "webhook": [{"podSelector": {"matchLabels": {"app": "ingress"}}}]},
                                                     separators=(",", ":"))}))
            extra = permission_set([("networking.k8s.io", "networkpolicies", ("get", "create", "patch"), None)])
            run.check("[network-policy] the Role also grants NetworkPolicies (and nothing else more)", lambda: (
                expect(granted_by(r, "Role", "bots", r.one("Deployment")["metadata"]["name"])
                       == EXPECTED_WATCHED_NAMESPACE_PERMISSIONS | extra,
                       diff_permissions(granted_by(r, "Role", "bots", r.one("Deployment")["metadata"]["name"]),
                                        EXPECTED_WATCHED_NAMESPACE_PERMISSIONS | extra))))
        if rendered["monitoring"]:
            r = rendered["monitoring"]
            run.check("[monitoring] ServiceMonitor scrapes the metrics Service as job botfleet-operator", lambda: check_service_monitor(r))
            run.check("[monitoring] PrometheusRule carries config/monitoring/alerts.yaml", lambda: check_prometheus_rule(r))
            run.check('[monitoring] dashboard ConfigMap labelled grafana_dashboard: "1"', lambda: check_dashboard_configmap(r))
        if rendered["admin"]:
            r = rendered["admin"]
            admin_values = {**default_values["admin"], **SCENARIOS["admin"]["admin"]}
            run.check("[admin] bot-runtime admin: hardened, no Kubernetes access, database, Redis and session secret wired", lambda: check_admin(
                r, {"admin": admin_values}, f"{RELEASE}-admin-session", "secret"))
            run.check("[admin] the Ingress routes the host to the admin Service", lambda: (
                expect(r.one("Ingress", component="admin")["spec"]["rules"][0]["host"] == "admin.bots.example.com", "host"),
                expect(r.one("Ingress", component="admin")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
                       == {"name": r.one("Service", component="admin")["metadata"]["name"], "port": {"name": "http"}}, "backend"),
                expect(r.one("Ingress", component="admin")["spec"]["tls"] == [{"hosts": ["admin.bots.example.com"], "secretName": "admin-tls"}], "tls")))
            run.check("[admin] its ServiceMonitor scrapes the admin Service as job botfleet-admin", lambda: (
                expect(r.one("ServiceMonitor", component="admin")["spec"]["selector"]["matchLabels"].items()
                       <= r.one("Service", component="admin")["metadata"]["labels"].items(), "selector"),
                expect(r.one("Service", component="admin")["metadata"]["labels"].get("botfleet.io/scrape-job") == "botfleet-admin", "job label"),
                expect(r.one("ServiceMonitor", component="admin")["metadata"]["labels"].get("release") == "kube-prometheus-stack", "labels")))
        if rendered["admin-existing-secret"]:
            r = rendered["admin-existing-secret"]
            admin_values = {**default_values["admin"], **SCENARIOS["admin-existing-secret"]["admin"]}
            run.check("[admin-existing-secret] the user's session Secret and Postgres Secret are used, nothing created",
                      lambda: check_admin(r, {"admin": admin_values, "postgres": SCENARIOS["admin-existing-secret"]["postgres"]},
                                          "my-admin-session", "s"))
        if rendered["no-admission-policy"]:
            r = rendered["no-admission-policy"]
            run.check("[no-admission-policy] neither policy nor binding", lambda: expect(
                not r.of_kind("ValidatingAdmissionPolicy") and not r.of_kind("ValidatingAdmissionPolicyBinding"),
                "admissionPolicy.enabled=false still renders the policy"))
        if rendered["single-replica"]:
            r = rendered["single-replica"]
            run.check("[single-replica] no PodDisruptionBudget", lambda: check_pdb(r, None))
            run.check("[single-replica] no Lease Role, LEADER_ELECTION=false", lambda: (
                check_always_present_rbac(r, leader_election=False), check_env(r, {"LEADER_ELECTION": "false"})))
        if rendered["customised"]:
            r = rendered["customised"]
            run.check("[customised] digest-pinned image, values reach the env", lambda: (
                expect(operator_container(r.one("Deployment"))["image"] == "ghcr.io/botfleet/operator@sha256:" + "ab" * 32,
                       "image digest not used"),
                check_env(r, {
                    "RUNTIME_IMAGE": "registry.example.com/botfleet/bot-runtime:1.2.3",
                    "RUNTIME_ALLOWED_IMAGES": "registry.example.com/botfleet/,ghcr.io/botfleet/bot-runtime",
                    "RUNTIME_SERVICE_MONITOR_LABELS": "release=kube-prometheus-stack,team=bots",
                    "TELEGRAM_API_URL": "http://telegram-bot-api.infra:8081",
                    "RUNTIME_DATABASE_SECRET": "pg-url", "RUNTIME_DATABASE_SECRET_KEY": "DATABASE_URL",
                    "RUNTIME_REDIS_SECRET": "redis-url", "RUNTIME_REDIS_SECRET_KEY": "REDIS_URL",
                    "RUST_LOG": "info,kube=warn", "HTTPS_PROXY": "http://proxy:3128"})))
            run.check("[customised] existing ServiceAccount is used, not created", lambda: (
                expect(not r.of_kind("ServiceAccount"), "a ServiceAccount was created"),
                expect(r.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "botfleet-operator-sa",
                       "serviceAccountName not used")))
            run.check("[customised] the admission policy names the existing ServiceAccount",
                      lambda: check_admission_policy(r, "botfleet-operator-sa"))
            run.check("[customised] 3 replicas, PDB minAvailable 2", lambda: (
                expect(r.one("Deployment")["spec"]["replicas"] == 3, "replicas != 3"), check_pdb(r, 2)))

        check_crds(run, chart)

    # Alert rules and dashboard.
    alerts = load_alerts()
    run.check("alerts.yaml: structure, names, severities, annotations, the alerts the product needs",
              lambda: check_alert_structure(alerts))
    for rule in all_alert_rules(alerts):
        run.check(f"alert {rule['alert']}: PromQL parses, known metrics and labels",
                  lambda rule=rule: check_promql(rule["expr"], rule["alert"]))
    dashboard = load_dashboard()
    run.check("grafana-dashboard.json: uid, datasource variable, panel grid, variables", lambda: check_dashboard_structure(dashboard))
    run.check("grafana-dashboard.json: every query parses and uses known metrics and labels", lambda: check_dashboard_queries(dashboard))

    if run.failed:
        print("\nfailed checks:\n  " + "\n  ".join(run.failed))
    print(f"{run.passed} passed, {len(run.failed)} failed")
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
