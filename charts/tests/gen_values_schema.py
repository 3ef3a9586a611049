#!/usr/bin/env python3
"""Writes charts/botfleet/values.schema.json, the JSON Schema (draft-07) of the chart's values.

The schema is authored here, where shared pieces (DNS names, quantities, probes) are written
once; validate_chart.py fails when the committed JSON differs from what this prints. After
changing a value: edit values.yaml and this file, then run

    python3 charts/tests/gen_values_schema.py

Standard library only.
"""
import json
import sys
from collections import OrderedDict as O
from pathlib import Path

OUTPUT = Path(__file__).resolve().parents[1] / "botfleet" / "values.schema.json"

def s(desc, **kw):
    d = {"type": "string", "description": desc}; d.update(kw); return d
def i(desc, **kw):
    d = {"type": "integer", "description": desc}; d.update(kw); return d
def b(desc, **kw):
    d = {"type": "boolean", "description": desc}; d.update(kw); return d
def obj(desc, props, required=None, additional=False, **kw):
    d = {"type": "object", "description": desc, "properties": props, "additionalProperties": additional}
    if required: d["required"] = required
    d.update(kw); return d
def ref(name, desc=None):
    d = {"$ref": "#/definitions/" + name}
    if desc:  # draft-07 ignores siblings of $ref, so wrap it
        return {"description": desc, "allOf": [d]}
    return d

INT32 = 2147483647
definitions = {
    "dnsLabel": {"type": "string", "description": "A DNS-1123 label (namespace, Lease and Service names).",
                 "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "minLength": 1, "maxLength": 63},
    "dnsSubdomain": {"type": "string", "description": "A DNS-1123 subdomain (Secret and ServiceAccount names).",
                     "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                     "minLength": 1, "maxLength": 253},
    "secretKey": {"type": "string", "description": "A key in a Secret's data.",
                  "pattern": "^[-._a-zA-Z0-9]+$", "minLength": 1, "maxLength": 253},
    "imageRepository": {"type": "string", "description": "An image reference without tag or digest.",
                        "pattern": "^[a-z0-9]+([._/:-][a-z0-9]+)*$", "minLength": 1, "maxLength": 255},
    "imageTag": {"type": "string", "description": "An image tag; empty means the chart's appVersion.",
                 "pattern": "^([\\w][\\w.-]{0,127})?$"},
    "promDuration": {"type": "string", "description": "A Prometheus duration such as 30s or 1m30s.",
                     "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
                     "minLength": 1},
    "stringMap": {"type": "object", "description": "A map of strings (labels, annotations, selectors).",
                  "additionalProperties": {"type": "string"}},
    "labelMap": {"type": "object", "description": "Kubernetes labels: qualified names to strings of at most 63 characters.",
                 "propertyNames": {"pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"},
                 "additionalProperties": {"type": "string", "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", "maxLength": 63}},
    "quantity": {"description": "A Kubernetes resource quantity (100m, 64Mi, 1).",
                 "oneOf": [{"type": "string", "pattern": "^[+]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$"},
                           {"type": "number", "minimum": 0}]},
    "resourceList": {"type": "object", "description": "Resource names (cpu, memory, ephemeral-storage, ...) to quantities.",
                     "additionalProperties": {"$ref": "#/definitions/quantity"}},
    "probe": {"type": "object", "description": "Timing of an HTTP probe (the path and port are fixed by the chart).",
              "additionalProperties": False,
              "required": ["periodSeconds", "timeoutSeconds", "failureThreshold"],
              "properties": {
                  "initialDelaySeconds": i("Seconds after start before the first probe.", minimum=0, maximum=3600),
                  "periodSeconds": i("Seconds between probes.", minimum=1, maximum=3600),
                  "timeoutSeconds": i("Seconds before a probe times out.", minimum=1, maximum=600),
                  "failureThreshold": i("Failures in a row before the probe is failed.", minimum=1, maximum=100)}},
    "seccompProfile": {"type": "object", "description": "A seccomp profile.", "additionalProperties": False,
                       "required": ["type"],
                       "properties": {"type": s("Profile type.", enum=["RuntimeDefault", "Localhost", "Unconfined"]),
                                      "localhostProfile": s("Profile file on the node, for type Localhost.")}},
    "k8sObject": {"type": "object", "description": "A Kubernetes API object passed through as is (checked by the API server)."},
}

pod_sc_props = O()
pod_sc_props["runAsNonRoot"] = b("Refuse to start containers that run as root.")
pod_sc_props["runAsUser"] = i("UID the containers run as.", minimum=0, maximum=INT32)
pod_sc_props["runAsGroup"] = i("GID the containers run as.", minimum=0, maximum=INT32)
pod_sc_props["fsGroup"] = i("GID owning mounted volumes.", minimum=0, maximum=INT32)
pod_sc_props["fsGroupChangePolicy"] = s("When volume ownership is changed.", enum=["OnRootMismatch", "Always"])
pod_sc_props["supplementalGroups"] = {"type": "array", "description": "Extra GIDs.", "items": {"type": "integer", "minimum": 0, "maximum": INT32}}
pod_sc_props["supplementalGroupsPolicy"] = s("How supplemental groups are computed.", enum=["Merge", "Strict"])
pod_sc_props["seccompProfile"] = ref("seccompProfile", "Seccomp profile of the pod (RuntimeDefault).")
for k in ["appArmorProfile", "seLinuxOptions", "windowsOptions"]:
    pod_sc_props[k] = ref("k8sObject", "Kubernetes PodSecurityContext.%s." % k)
pod_sc_props["seLinuxChangePolicy"] = s("How SELinux labels are applied to volumes.", enum=["MountOption", "Recursive"])
pod_sc_props["sysctls"] = {"type": "array", "description": "Namespaced sysctls.", "items": {"type": "object"}}

ctr_sc_props = O()
ctr_sc_props["allowPrivilegeEscalation"] = b("Allow gaining more privileges than the parent process.")
ctr_sc_props["readOnlyRootFilesystem"] = b("Mount the root filesystem read-only.")
ctr_sc_props["runAsNonRoot"] = b("Refuse to start as root.")
ctr_sc_props["runAsUser"] = i("UID.", minimum=0, maximum=INT32)
ctr_sc_props["runAsGroup"] = i("GID.", minimum=0, maximum=INT32)
ctr_sc_props["privileged"] = b("Run privileged (never needed by the operator).")
ctr_sc_props["procMount"] = s("proc mount type.", enum=["Default", "Unmasked"])
ctr_sc_props["capabilities"] = obj("Linux capabilities.", {
    "drop": {"type": "array", "description": "Capabilities to drop.", "items": {"type": "string", "minLength": 1}, "uniqueItems": True},
    "add": {"type": "array", "description": "Capabilities to add (none needed).", "items": {"type": "string", "minLength": 1}, "uniqueItems": True}})
ctr_sc_props["seccompProfile"] = ref("seccompProfile", "Seccomp profile of the container (inherits the pod's when unset).")
for k in ["appArmorProfile", "seLinuxOptions", "windowsOptions"]:
    ctr_sc_props[k] = ref("k8sObject", "Kubernetes SecurityContext.%s." % k)

toleration = obj("A toleration.", {
    "key": s("Taint key (empty with operator Exists: every taint)."),
    "operator": s("How key and value are compared.", enum=["Exists", "Equal", "Lt", "Gt"]),
    "value": s("Taint value."),
    "effect": s("Taint effect (empty: all).", enum=["", "NoSchedule", "PreferNoSchedule", "NoExecute"]),
    "tolerationSeconds": i("For NoExecute: seconds the pod stays bound after the taint appears.", minimum=0)})

env_var = obj("An environment variable.", {
    "name": s("Variable name.", pattern="^[-._a-zA-Z][-._a-zA-Z0-9]*$", minLength=1),
    "value": s("Literal value."),
    "valueFrom": ref("k8sObject", "Source of the value (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef).")},
    required=["name"])

props = O()
props["global"] = {"type": "object", "description": "Helm's global values (unused by this chart, allowed for umbrella charts)."}
props["nameOverride"] = s("Replaces the chart name in object names and labels.", pattern="^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$", maxLength=63)
props["fullnameOverride"] = s("Replaces the full name of the release's objects.", pattern="^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$", maxLength=63)
props["image"] = obj("The operator image.", O([
    ("repository", ref("imageRepository", "Operator image repository.")),
    ("tag", ref("imageTag", "Operator image tag; empty means the chart's appVersion.")),
    ("digest", s("Image digest; when set it pins the image.", pattern="^(sha256:[a-f0-9]{64})?$")),
    ("pullPolicy", s("Image pull policy.", enum=["Always", "IfNotPresent", "Never"]))]),
    required=["repository", "pullPolicy"])
props["imagePullSecrets"] = {"type": "array", "description": "Secrets for pulling the operator image.",
                             "items": obj("A pull Secret reference.", {"name": ref("dnsSubdomain", "Secret name.")}, required=["name"])}
props["replicaCount"] = i("Operator replicas; more than one requires leaderElection.enabled.", minimum=1, maximum=5)
LEVEL = "(error|warn|info|debug|trace|off)"
DIRECTIVE = "(([A-Za-z0-9_]+::)*[A-Za-z0-9_]+=)?" + LEVEL
props["logLevel"] = s("RUST_LOG: a level, or comma-separated tracing directives such as info,kube=warn.",
                      pattern="^%s(,%s)*$" % (DIRECTIVE, DIRECTIVE), maxLength=1024,
                      examples=["info", "debug", "info,kube=warn"])
props["watchNamespaces"] = {"type": "array", "description": "Namespaces to watch, a Role in each; empty only with clusterWide.",
                            "items": ref("dnsLabel", "A namespace name."), "uniqueItems": True, "maxItems": 100}
props["clusterWide"] = b("Watch every namespace with one ClusterRole (watchNamespaces must then be empty).")
props["leaderElection"] = obj("Leader election on a coordination.k8s.io Lease.", O([
    ("enabled", b("Elect one active replica.")),
    ("leaseName", ref("dnsSubdomain", "Lease name in the release namespace."))]),
    required=["enabled", "leaseName"])
props["telegram"] = obj("The Telegram Bot API the operator calls.", {
    "apiUrl": s("Base URL of the Bot API (no trailing slash).", format="uri", pattern="^https?://[^\\s/]+(/[^\\s]*[^\\s/])?$", maxLength=2048)},
    required=["apiUrl"])
props["runtime"] = obj("The bot runtime the operator deploys.", {
    "image": obj("bot-runtime image.", O([
        ("repository", ref("imageRepository", "bot-runtime image repository.")),
        ("tag", ref("imageTag", "bot-runtime image tag; empty means the chart's appVersion."))]),
        required=["repository"]),
    "allowedImages": {"type": "array", "description": "Other images BotInstances may name: repositories, or prefixes ending in '/'.",
                      "items": {"type": "string", "pattern": "^[a-z0-9]+([._/:-][a-z0-9]+)*/?$", "minLength": 1, "maxLength": 255,
                                "description": "An image repository, or a prefix ending in '/'."},
                      "uniqueItems": True, "maxItems": 100},
    "serviceMonitor": obj("The ServiceMonitor the operator gives every bot.", {
        "labels": ref("labelMap", "Labels your Prometheus selects ServiceMonitors by.")}, required=["labels"]),
    "networkPolicy": obj("A NetworkPolicy per bot (ingress only from scrapers and the ingress controller).", O([
        ("enabled", b("Give every bot a NetworkPolicy.")),
        ("metricsFrom", {"type": "array", "description": "NetworkPolicy peers that scrape /metrics.",
                         "items": {"type": "object", "description": "A NetworkPolicyPeer."}}),
        ("webhookFrom", {"type": "array", "description": "NetworkPolicy peers that deliver webhooks (the ingress controller).",
                         "items": {"type": "object", "description": "A NetworkPolicyPeer."}})]),
        required=["enabled", "metricsFrom", "webhookFrom"]),
    # The runtime's own ranges (bot-runtime serve --help); unset keys keep its defaults.
    "settings": obj("Fleet-wide runtime settings every bot's pods get as environment; unset: the runtime's default.", O([
        ("databasePoolSize", i("DATABASE_POOL_SIZE: Postgres connections per replica.", minimum=1, maximum=1000)),
        ("mediaBudgetMib", i("MEDIA_BUDGET_MIB: cross-bot media bytes in Redis at once, fleet-wide (keep well below maxmemory).", minimum=20, maximum=1048576)),
        ("mediaUserMib", i("MEDIA_USER_MIB: media one person may relay across bots per window (0: no cap).", minimum=0, maximum=1048576)),
        ("mediaUserWindowMinutes", i("MEDIA_USER_WINDOW_MINUTES: the per-person media window.", minimum=1, maximum=1440)),
        ("mediaRelaysPerProcess", i("MEDIA_RELAYS_PER_PROCESS: cross-bot downloads (and uploads) one replica runs at once.", minimum=1, maximum=256)),
        ("egressBacklogSeconds", i("EGRESS_BACKLOG_SECONDS: seconds of sends the outbox may hold before new updates wait at Telegram (0: off).", minimum=0, maximum=600))]))},
    required=["image", "allowedImages", "serviceMonitor", "networkPolicy"])
for name, what in [("postgres", "DATABASE_URL"), ("redis", "REDIS_URL")]:
    props[name] = obj("Secret, in each bot's namespace, holding the runtime's %s (not created by the chart)." % what, O([
        ("existingSecret", ref("dnsSubdomain", "Secret name.")),
        ("key", ref("secretKey", "Key holding the URL."))]), required=["existingSecret", "key"])
props["admin"] = obj("The admin role, `bot-runtime admin`: the fleet's dashboard and API (docs/ADMIN.md).", O([
    ("enabled", b("Deploy it (with its Service, session Secret and, optionally, Ingress and ServiceMonitor).")),
    ("replicaCount", i("Replicas of the admin role.", minimum=1, maximum=10)),
    ("fleetAdmins", {"type": "array", "description": "Telegram ids of the fleet admins.",
                     "items": {"type": "integer", "minimum": 1, "description": "A Telegram user id."}, "uniqueItems": True, "maxItems": 1000}),
    ("trustedProxies", {"type": "array", "description": "IP addresses of the proxies whose X-Forwarded-For is believed.",
                        "items": {"type": "string", "description": "An IPv4 or IPv6 address.",
                                  "anyOf": [{"format": "ipv4", "pattern": "^[0-9.]+$"}, {"format": "ipv6", "pattern": "^[0-9a-fA-F:.]+$"}]},
                        "uniqueItems": True, "maxItems": 100}),
    ("apiKeyPerMinute", i("Requests per minute one API key may make.", minimum=1, maximum=100000)),
    ("apiPerMinute", i("Requests per minute per caller and route of the admin API: fleet routes, and bot routes whose RateLimitPolicies set no adminApiPerMinute.", minimum=1, maximum=100000)),
    ("thumbsDownToReview", i("👎 within 30 days that bring a member without open reports to the moderation queue (0: never).", minimum=0, maximum=100000)),
    ("timeZone", s("The fleet's time zone: an IANA name (Europe/Berlin) or UTC.", pattern="^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$", maxLength=64)),
    ("podDisruptionBudget", obj("A PodDisruptionBudget for the admin pods (replicaCount > 1 only).", O([
        ("enabled", b("Create it.")),
        ("minAvailable", i("Admin pods that stay up during voluntary disruptions.", minimum=1, maximum=10))]),
        required=["enabled", "minAvailable"])),
    ("networkPolicy", obj("A NetworkPolicy for the admin pods.", O([
        ("enabled", b("Create it.")),
        ("from", {"type": "array", "description": "NetworkPolicy peers that reach port http (ingress controller, Prometheus).",
                  "items": {"type": "object", "description": "A NetworkPolicyPeer."}}),
        ("postgres", obj("Egress to Postgres.", O([
            ("to", {"type": "array", "description": "NetworkPolicy peers (empty: any address).", "items": {"type": "object", "description": "A NetworkPolicyPeer."}}),
            ("port", i("Its TCP port.", minimum=1, maximum=65535))]), required=["to", "port"])),
        ("redis", obj("Egress to Redis.", O([
            ("to", {"type": "array", "description": "NetworkPolicy peers (empty: any address).", "items": {"type": "object", "description": "A NetworkPolicyPeer."}}),
            ("port", i("Its TCP port.", minimum=1, maximum=65535))]), required=["to", "port"]))]),
        required=["enabled", "from", "postgres", "redis"])),
    ("logLevel", s("RUST_LOG of the admin role: a level, or comma-separated tracing directives.",
                   pattern="^%s(,%s)*$" % (DIRECTIVE, DIRECTIVE), maxLength=1024)),
    ("sessionSecret", obj("The session secret (codes, sessions, CSRF tokens and API keys are keyed by it).", O([
        ("existingSecret", {"description": "A Secret in the release namespace (empty: the chart makes one).",
                            "anyOf": [{"type": "string", "maxLength": 0}, ref("dnsSubdomain")]}),
        ("key", ref("secretKey", "Key holding the secret (at least 32 bytes)."))]), required=["existingSecret", "key"])),
    ("ingress", obj("An Ingress for the dashboard.", O([
        ("enabled", b("Create it.")),
        ("className", s("IngressClass (empty: the default).", pattern="^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$", maxLength=253)),
        ("host", ref("dnsSubdomain", "Host name of the dashboard.")),
        ("tlsSecret", {"description": "TLS Secret for the host (empty: none).", "anyOf": [{"type": "string", "maxLength": 0}, ref("dnsSubdomain")]}),
        ("annotations", ref("stringMap", "Ingress annotations."))]), required=["enabled", "host"])),
    ("resources", obj("Admin container resources.", {
        "requests": ref("resourceList", "Requested resources."),
        "limits": ref("resourceList", "Resource limits.")}))]),
    required=["enabled", "replicaCount", "fleetAdmins", "trustedProxies", "apiKeyPerMinute", "apiPerMinute", "thumbsDownToReview", "timeZone",
              "podDisruptionBudget", "networkPolicy", "sessionSecret", "ingress", "resources"])
props["serviceAccount"] = obj("The operator's ServiceAccount.", O([
    ("create", b("Create it.")),
    ("name", {"description": "Its name; empty: the release's full name (required when create is false).",
              "anyOf": [{"type": "string", "maxLength": 0}, ref("dnsSubdomain")]}),
    ("annotations", ref("stringMap", "Annotations (e.g. workload identity)."))]), required=["create"])
props["rbac"] = obj("RBAC objects.", {"create": b("Create the roles and bindings.")}, required=["create"])
props["admissionPolicy"] = obj("The ValidatingAdmissionPolicy that keeps the operator to its own Secrets.",
                               {"enabled": b("Install the policy and its binding (needs the ValidatingAdmissionPolicy admission plugin, on by default since 1.30).")},
                               required=["enabled"])
props["podAnnotations"] = ref("stringMap", "Extra pod annotations.")
props["podLabels"] = ref("labelMap", "Extra pod labels.")
props["priorityClassName"] = s("PriorityClass of the operator pods (empty: none).", pattern="^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$", maxLength=253)
props["podSecurityContext"] = obj("Pod security context.", pod_sc_props)
props["securityContext"] = obj("Container security context.", ctr_sc_props)
props["resources"] = obj("Operator container resources.", {
    "requests": ref("resourceList", "Requested resources."),
    "limits": ref("resourceList", "Resource limits.")})
props["probes"] = obj("Probe timings.", {
    "liveness": ref("probe", "GET /healthz."),
    "readiness": ref("probe", "GET /readyz.")}, required=["liveness", "readiness"])
props["podDisruptionBudget"] = obj("PodDisruptionBudget (only with replicaCount > 1).", O([
    ("enabled", b("Create it.")),
    ("minAvailable", i("Replicas kept during voluntary disruptions; below replicaCount.", minimum=1, maximum=4))]),
    required=["enabled", "minAvailable"])
props["podAntiAffinity"] = s("Spread replicas over nodes (ignored when affinity is set).", enum=["soft", "hard", "none"])
props["topologySpread"] = obj("Topology spread constraint for the replicas.", O([
    ("enabled", b("Add it.")),
    ("topologyKey", s("Node label to spread over.", minLength=1, maxLength=317)),
    ("maxSkew", i("Largest allowed difference of replicas between domains.", minimum=1, maximum=10)),
    ("whenUnsatisfiable", s("ScheduleAnyway (preferred) or DoNotSchedule (required).", enum=["ScheduleAnyway", "DoNotSchedule"]))]),
    required=["enabled"])
props["affinity"] = obj("Pod affinity; replaces the podAntiAffinity preset when set.", {
    "nodeAffinity": ref("k8sObject", "Kubernetes NodeAffinity."),
    "podAffinity": ref("k8sObject", "Kubernetes PodAffinity."),
    "podAntiAffinity": ref("k8sObject", "Kubernetes PodAntiAffinity.")})
props["nodeSelector"] = ref("stringMap", "Node labels the pods require.")
props["tolerations"] = {"type": "array", "description": "Tolerations of the pods.", "items": toleration}
props["terminationGracePeriodSeconds"] = i("Seconds a stopping pod gets to release the Lease and finish.", minimum=0, maximum=3600)
props["extraEnv"] = {"type": "array", "description": "Extra environment variables for the operator.", "items": env_var}
props["service"] = obj("The metrics Service (ClusterIP, port 8080 named http).", {
    "annotations": ref("stringMap", "Service annotations.")})
props["serviceMonitor"] = obj("prometheus-operator ServiceMonitor for the operator.", O([
    ("enabled", b("Create it.")),
    ("namespace", {"description": "Its namespace (empty: the release namespace).", "anyOf": [{"type": "string", "maxLength": 0}, ref("dnsLabel")]}),
    ("interval", ref("promDuration", "Scrape interval.")),
    ("scrapeTimeout", ref("promDuration", "Scrape timeout (not above the interval).")),
    ("labels", ref("labelMap", "Extra labels (what your Prometheus selects ServiceMonitors by)."))]),
    required=["enabled"])
props["prometheusRule"] = obj("prometheus-operator PrometheusRule with BotFleet's alerts.", O([
    ("enabled", b("Create it.")),
    ("namespace", {"description": "Its namespace (empty: the release namespace).", "anyOf": [{"type": "string", "maxLength": 0}, ref("dnsLabel")]}),
    ("labels", ref("labelMap", "Extra labels (what your Prometheus selects rules by)."))]),
    required=["enabled"])
props["grafanaDashboard"] = obj("ConfigMap with BotFleet's Grafana dashboard for the Grafana sidecar.", O([
    ("enabled", b("Create it.")),
    ("namespace", {"description": "Its namespace (empty: the release namespace).", "anyOf": [{"type": "string", "maxLength": 0}, ref("dnsLabel")]}),
    ("labels", ref("labelMap", "Extra labels (grafana_dashboard: \"1\" is always set).")),
    ("annotations", ref("stringMap", "Annotations, e.g. grafana_folder."))]),
    required=["enabled"])

schema = O()
schema["$schema"] = "http://json-schema.org/draft-07/schema#"
schema["title"] = "Values of the botfleet Helm chart"
schema["type"] = "object"
schema["additionalProperties"] = False
schema["required"] = ["image", "replicaCount", "watchNamespaces", "clusterWide", "leaderElection", "telegram", "runtime",
                      "postgres", "redis", "serviceAccount", "rbac", "admissionPolicy", "resources", "probes"]
schema["properties"] = props
schema["definitions"] = definitions


def render() -> str:
    return json.dumps(schema, indent=2) + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}", file=sys.stderr)
