#!/usr/bin/env bash
# BotFleet end to end on a throwaway kind cluster: builds the operator image, installs the Helm
# chart, runs Postgres and Redis in the cluster, applies the sample fleet (in polling mode) and
# checks that the operator's control loop works: CRDs, leader Lease, /metrics, plan and campaign
# status, CEL validation, token Secrets watched and validated, status conditions and Events.
#
# Usage (from anywhere; the script finds the repository from its own path):
#
#   docs/kind-e2e.sh                                   # placeholder tokens (see below)
#   BOT_TOKEN_ALPHA=123:abc BOT_TOKEN_BETA=456:def docs/kind-e2e.sh   # two real test bots
#   KEEP=1 docs/kind-e2e.sh                            # keep the cluster to look around
#
# Without tokens, the bots get well-formed placeholder tokens. Telegram refuses them, so the
# run stops at "the operator validated the token with getMe and reported TokenValid=False
# (Unauthorized, or TelegramUnreachable when the cluster has no Internet access) without
# creating any runtime object". That already proves the control loop end to end.
#
# With BOT_TOKEN_ALPHA and BOT_TOKEN_BETA (tokens of two test bots you own; never bots that are
# serving users elsewhere), the bots run in polling mode, so the operator only calls getMe:
# it never touches their webhooks. The run then also checks the objects each bot gets
# (<bot>-config ConfigMap, <bot>-runtime Deployment/Service/HPA/PDB), a price change reaching
# the ConfigMap without rolling the pods, and an invalid token leaving the Deployment alone.
# The runtime pods themselves cannot become Ready yet: the bot-runtime image's `serve` role is
# still being built (issue 3), so they sit in ImagePullBackOff (or crash) and the bots report
# Ready=False / RolloutInProgress. Point RUNTIME_IMAGE_REPO/RUNTIME_IMAGE_TAG at a runtime image
# once one exists.
#
# Environment (all optional):
#   KEEP=1                 keep the cluster (and its kubeconfig) when the script ends
#   CLUSTER=botfleet-e2e   kind cluster name; an existing cluster of that name is reused (and
#                          then never deleted by this script)
#   KIND_NODE_IMAGE=...    e.g. kindest/node:v1.33.1 (Kubernetes 1.31 or newer is required)
#   BOTS_NS=botfleet-demo  namespace of the sample fleet, Postgres and Redis
#   CLUSTER_WIDE=1         install the operator with clusterWide=true (one ClusterRole); the
#                          default is the chart's namespaced mode, watchNamespaces={$BOTS_NS}
#   SKIP_BUILD=1           do not build the operator image; use the local one as it is
#   BUILD_RUNTIME=1        also build docker/runtime.Dockerfile as RUNTIME_IMAGE_REPO:TAG and
#                          load it into kind (the runtime pods then start)
#   OPERATOR_IMAGE_REPO / OPERATOR_IMAGE_TAG   default botfleet/operator:kind-e2e
#   RUNTIME_IMAGE_REPO  / RUNTIME_IMAGE_TAG    default ghcr.io/botfleet/bot-runtime:0.1.0
#   RUST_IMAGE=rust:1.95-bookworm              builder image
#   RUNTIME_BASE_IMAGE=gcr.io/distroless/cc-debian12:nonroot
#   TIMEOUT=180            seconds for each wait
#
# Needs: docker (with a running engine), kind, kubectl, helm 3.8+ (or 4), and Internet access
# for the images (Docker Hub, gcr.io) and crates.io. The first image build takes a while.

set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER=${CLUSTER:-botfleet-e2e}
KEEP=${KEEP:-0}
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-}
BOTS_NS=${BOTS_NS:-botfleet-demo}
SYSTEM_NS=botfleet-system
RELEASE=botfleet
CLUSTER_WIDE=${CLUSTER_WIDE:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
BUILD_RUNTIME=${BUILD_RUNTIME:-0}
OPERATOR_IMAGE_REPO=${OPERATOR_IMAGE_REPO:-botfleet/operator}
OPERATOR_IMAGE_TAG=${OPERATOR_IMAGE_TAG:-kind-e2e}
OPERATOR_IMAGE="${OPERATOR_IMAGE_REPO}:${OPERATOR_IMAGE_TAG}"
RUNTIME_IMAGE_REPO=${RUNTIME_IMAGE_REPO:-ghcr.io/botfleet/bot-runtime}
RUNTIME_IMAGE_TAG=${RUNTIME_IMAGE_TAG:-0.1.0}
RUST_IMAGE=${RUST_IMAGE:-rust:1.95-bookworm}
RUNTIME_BASE_IMAGE=${RUNTIME_BASE_IMAGE:-gcr.io/distroless/cc-debian12:nonroot}
TIMEOUT=${TIMEOUT:-180}
BOT_TOKEN_ALPHA=${BOT_TOKEN_ALPHA:-}
BOT_TOKEN_BETA=${BOT_TOKEN_BETA:-}

# Well-formed (<bot id>:<35 characters>) but not real: Telegram answers 401 Unauthorized.
PLACEHOLDER_ALPHA='1000000001:AAplaceholder-alpha-not-a-real-token'
PLACEHOLDER_BETA='1000000002:AAplaceholder-beta-not-a-real-tokenX'

CREATED=0
WORKDIR=""
STEP=0

# --- output -----------------------------------------------------------------------------------

step() {
  STEP=$((STEP + 1))
  printf '\n\033[1m==> [%d] %s\033[0m\n' "$STEP" "$*"
}
info() { printf '    %s\n' "$*"; }
ok() { printf '    \033[32mok\033[0m  %s\n' "$*"; }
warn() { printf '    \033[33mnote\033[0m %s\n' "$*" >&2; }
die() {
  printf '\n\033[31merror:\033[0m %s\n' "$*" >&2
  exit 1
}

# --- cleanup ----------------------------------------------------------------------------------

diagnostics() {
  # Only ever our own cluster: never a KUBECONFIG inherited from the caller's environment.
  [ -n "$WORKDIR" ] && [ "${KUBECONFIG:-}" = "$WORKDIR/kubeconfig" ] && [ -f "$KUBECONFIG" ] || return 0
  printf '\n--- diagnostics ---\n' >&2
  kubectl get nodes -o wide >&2 || true
  kubectl -n "$SYSTEM_NS" get deploy,pods,lease -o wide >&2 || true
  kubectl -n "$SYSTEM_NS" logs -l app.kubernetes.io/component=operator --prefix --tail=40 >&2 || true
  kubectl -n "$BOTS_NS" get bots,plans,campaigns,rlp -o wide >&2 || true
  kubectl -n "$BOTS_NS" get deploy,pods,svc,configmaps,secrets >&2 || true
  kubectl -n "$BOTS_NS" describe bots >&2 || true
  printf -- '--- end of diagnostics ---\n' >&2
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ "$rc" -ne 0 ]; then
    diagnostics
  fi
  if [ "$CREATED" = 1 ] && [ "$KEEP" != 1 ]; then
    printf '\n==> deleting kind cluster %s (KEEP=1 keeps it)\n' "$CLUSTER"
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1
  elif [ "$CREATED" = 1 ] || [ "$STEP" -gt 1 ]; then
    if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
      printf '\n==> kind cluster %s is still running. To use it:\n' "$CLUSTER"
      if [ "$KEEP" = 1 ] && [ -n "$WORKDIR" ]; then
        printf '      export KUBECONFIG=%s/kubeconfig   # or: kind export kubeconfig --name %s\n' "$WORKDIR" "$CLUSTER"
      else
        printf '      kind export kubeconfig --name %s   # switches your current kubectl context\n' "$CLUSTER"
      fi
      printf '      kubectl -n %s get bots,plans,campaigns,rlp -o wide\n' "$BOTS_NS"
      printf '    Delete it with: kind delete cluster --name %s\n' "$CLUSTER"
    fi
  fi
  if [ -n "$WORKDIR" ] && [ -d "$WORKDIR" ]; then
    if [ "$KEEP" = 1 ]; then
      # Only the kubeconfig is worth keeping; token files never are.
      find "$WORKDIR" -mindepth 1 -maxdepth 1 ! -name kubeconfig -exec rm -rf {} + 2>/dev/null
    else
      rm -rf "$WORKDIR"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
# set -e stops at the first failing command; say which one (die explains its own failures).
trap 'printf "\n\033[31merror:\033[0m line %s failed: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ----------------------------------------------------------------------------------

# wait_until <what> <command...>: retries the command every 2 s for TIMEOUT seconds.
wait_until() {
  local what=$1
  shift
  local deadline=$(($(date +%s) + TIMEOUT))
  until "$@"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      die "timed out after ${TIMEOUT}s waiting for: $what"
    fi
    sleep 2
  done
}

# jp <resource> <jsonpath>: a field of an object in the bots namespace (empty if absent).
jp() {
  kubectl -n "$BOTS_NS" get "$1" -o "jsonpath=$2" 2>/dev/null || true
}

condition() { # <bot> <type> <field: status|reason|message>
  jp "botinstance/$1" "{.status.conditions[?(@.type==\"$2\")].$3}"
}

# token_reason_in <bot> <reason...>: the bot's TokenValid reason is one of the given ones.
token_reason_in() {
  local bot=$1 reason
  shift
  reason=$(condition "$bot" TokenValid reason)
  [ -n "$reason" ] || return 1
  local r
  for r in "$@"; do
    [ "$reason" = "$r" ] && return 0
  done
  return 1
}

field_is() { # <resource> <jsonpath> <expected>
  [ "$(jp "$1" "$2")" = "$3" ]
}

field_not_empty() { # <resource> <jsonpath>
  [ -n "$(jp "$1" "$2")" ]
}

exists() { # <resource>
  kubectl -n "$BOTS_NS" get "$1" >/dev/null 2>&1
}

absent() { # <resource>
  ! exists "$1"
}

# utc_in_minutes <n>: RFC 3339 time n minutes from now (GNU date or BSD/macOS date).
utc_in_minutes() {
  local t=$(($(date +%s) + $1 * 60))
  date -u -d "@$t" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -r "$t" +%Y-%m-%dT%H:%M:%SZ
}

# put_token <secret> <token>: creates or updates a token Secret without the token ever being
# a command-line argument (it goes through a 0600 file that is removed right away).
put_token() {
  local secret=$1 token=$2 file
  file="$WORKDIR/token.$secret"
  (umask 077 && printf '%s' "$token" >"$file")
  kubectl -n "$BOTS_NS" create secret generic "$secret" --from-file=token="$file" \
    --dry-run=client -o yaml | kubectl label --local -f - botfleet.io/bot-token=true -o yaml \
    | kubectl apply -f - >/dev/null
  rm -f "$file"
}

pod_template() { # <deployment>
  jp "deployment/$1" '{.spec.template}'
}

pod_token_annotation() { # <deployment>
  jp "deployment/$1" '{.spec.template.metadata.annotations.botfleet\.io/token-fingerprint}'
}

# --- 1. prerequisites -------------------------------------------------------------------------

step "checking prerequisites"
missing=0
need() {
  if command -v "$1" >/dev/null 2>&1; then
    ok "$1: $(command -v "$1")"
  else
    printf '    \033[31mmissing\033[0m %s: %s\n' "$1" "$2" >&2
    missing=1
  fi
}
need docker "builds the operator image and runs the kind node (https://docs.docker.com/get-docker/)"
need kind "runs Kubernetes in Docker (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
need kubectl "talks to the cluster (https://kubernetes.io/docs/tasks/tools/)"
need helm "installs the chart, 3.8 or newer (https://helm.sh/docs/intro/install/)"
[ "$missing" = 0 ] || die "install the missing tools above and run again"

docker info >/dev/null 2>&1 || die "docker is installed but its engine is not reachable (is Docker running? can this user use it?)"
ok "docker engine reachable"

helm_version=$(helm version --short 2>/dev/null || helm version --template '{{.Version}}' 2>/dev/null || true)
helm_major=$(printf '%s' "$helm_version" | sed -n 's/^v\([0-9]*\)\.\([0-9]*\).*/\1/p')
helm_minor=$(printf '%s' "$helm_version" | sed -n 's/^v\([0-9]*\)\.\([0-9]*\).*/\2/p')
if [ -z "$helm_major" ] || [ "$helm_major" -lt 3 ] || { [ "$helm_major" -eq 3 ] && [ "$helm_minor" -lt 8 ]; }; then
  die "helm ${helm_version:-(unknown version)} is too old: BotFleet's chart needs Helm 3.8 or newer"
fi
ok "helm $helm_version"

if [ -n "$BOT_TOKEN_ALPHA" ] && [ -n "$BOT_TOKEN_BETA" ]; then
  REAL_TOKENS=1
  ok "BOT_TOKEN_ALPHA and BOT_TOKEN_BETA set: the bots use real tokens (polling mode, getMe only)"
elif [ -n "$BOT_TOKEN_ALPHA" ] || [ -n "$BOT_TOKEN_BETA" ]; then
  die "set both BOT_TOKEN_ALPHA and BOT_TOKEN_BETA, or neither"
else
  REAL_TOKENS=0
  info "no BOT_TOKEN_ALPHA/BOT_TOKEN_BETA: placeholder tokens, the run checks that Telegram's refusal is reported"
fi

WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/botfleet-kind.XXXXXX")
# A kubeconfig of our own: nothing this script does can reach any other cluster. Helm's
# variables that would point it elsewhere are dropped for the same reason.
export KUBECONFIG="$WORKDIR/kubeconfig"
unset HELM_KUBECONTEXT HELM_KUBEAPISERVER HELM_KUBETOKEN HELM_KUBEASUSER HELM_KUBEASGROUPS HELM_KUBECAFILE

# --- 2. cluster -------------------------------------------------------------------------------

step "kind cluster $CLUSTER"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  warn "cluster $CLUSTER already exists: reusing it (this script will not delete it)"
  kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG" >/dev/null
else
  CREATED=1
  create_args=(create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 180s)
  if [ -n "$KIND_NODE_IMAGE" ]; then
    create_args+=(--image "$KIND_NODE_IMAGE")
  fi
  kind "${create_args[@]}"
fi
server_minor=$(kubectl get --raw /version | sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | head -n 1)
server_major=$(kubectl get --raw /version | sed -n 's/.*"major": *"\([0-9]*\).*/\1/p' | head -n 1)
if [ -z "$server_minor" ] || [ "${server_major:-0}" -lt 1 ] || { [ "$server_major" -eq 1 ] && [ "$server_minor" -lt 31 ]; }; then
  die "the cluster runs Kubernetes ${server_major:-?}.${server_minor:-?}; BotFleet needs 1.31 or newer (use a newer kind, or KIND_NODE_IMAGE=kindest/node:v1.33.1)"
fi
ok "Kubernetes $server_major.$server_minor"

# --- 3. operator image ------------------------------------------------------------------------

step "operator image $OPERATOR_IMAGE"
if [ "$SKIP_BUILD" = 1 ]; then
  docker image inspect "$OPERATOR_IMAGE" >/dev/null 2>&1 || die "SKIP_BUILD=1 but there is no local image $OPERATOR_IMAGE"
  info "SKIP_BUILD=1: using the local image as it is"
else
  # docker/operator.Dockerfile builds the binary with scripts/build-release.sh, as CI does; the
  # repository's .dockerignore keeps target/ (gigabytes) and .git out of the context.
  info "building docker/operator.Dockerfile (scripts/build-release.sh operator inside $RUST_IMAGE; the first build takes several minutes)"
  DOCKER_BUILDKIT=1 docker build \
    --build-arg "RUST_IMAGE=$RUST_IMAGE" \
    --build-arg "RUNTIME_BASE_IMAGE=$RUNTIME_BASE_IMAGE" \
    -t "$OPERATOR_IMAGE" -f "$REPO_ROOT/docker/operator.Dockerfile" "$REPO_ROOT"
  if [ "$BUILD_RUNTIME" = 1 ]; then
    info "building docker/runtime.Dockerfile as $RUNTIME_IMAGE_REPO:$RUNTIME_IMAGE_TAG"
    DOCKER_BUILDKIT=1 docker build \
      --build-arg "RUST_IMAGE=$RUST_IMAGE" \
      --build-arg "RUNTIME_BASE_IMAGE=$RUNTIME_BASE_IMAGE" \
      -t "$RUNTIME_IMAGE_REPO:$RUNTIME_IMAGE_TAG" -f "$REPO_ROOT/docker/runtime.Dockerfile" "$REPO_ROOT"
    kind load docker-image "$RUNTIME_IMAGE_REPO:$RUNTIME_IMAGE_TAG" --name "$CLUSTER"
  fi
fi
if ! kind load docker-image "$OPERATOR_IMAGE" --name "$CLUSTER"; then
  # Docker's containerd image store sometimes trips `kind load docker-image`; an archive works.
  warn "kind load docker-image failed; retrying through an image archive"
  docker save "$OPERATOR_IMAGE" -o "$WORKDIR/operator.tar"
  kind load image-archive "$WORKDIR/operator.tar" --name "$CLUSTER"
  rm -f "$WORKDIR/operator.tar"
fi
ok "loaded into the kind node"

# --- 4. Postgres, Redis and their Secrets -----------------------------------------------------

step "namespace $BOTS_NS with Postgres and Redis (demo only: no persistence, fixed password)"
kubectl create namespace "$BOTS_NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$BOTS_NS" apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: postgres
  labels: {app: postgres}
spec:
  replicas: 1
  selector:
    matchLabels: {app: postgres}
  template:
    metadata:
      labels: {app: postgres}
    spec:
      containers:
        - name: postgres
          image: postgres:17-alpine
          env:
            - {name: POSTGRES_USER, value: botfleet}
            - {name: POSTGRES_PASSWORD, value: botfleet-demo}
            - {name: POSTGRES_DB, value: botfleet}
          ports:
            - {name: postgres, containerPort: 5432}
          readinessProbe:
            exec:
              command: [pg_isready, -U, botfleet, -d, botfleet]
            periodSeconds: 5
          volumeMounts:
            - {name: data, mountPath: /var/lib/postgresql/data}
      volumes:
        - name: data
          emptyDir: {}
---
apiVersion: v1
kind: Service
metadata:
  name: postgres
spec:
  selector: {app: postgres}
  ports:
    - {name: postgres, port: 5432, targetPort: postgres}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: redis
  labels: {app: redis}
spec:
  replicas: 1
  selector:
    matchLabels: {app: redis}
  template:
    metadata:
      labels: {app: redis}
    spec:
      containers:
        - name: redis
          image: redis:7.4-alpine
          args: ["--save", "", "--appendonly", "no"]
          ports:
            - {name: redis, containerPort: 6379}
          readinessProbe:
            exec:
              command: [redis-cli, ping]
            periodSeconds: 5
---
apiVersion: v1
kind: Service
metadata:
  name: redis
spec:
  selector: {app: redis}
  ports:
    - {name: redis, port: 6379, targetPort: redis}
YAML
kubectl -n "$BOTS_NS" rollout status deployment/postgres --timeout="${TIMEOUT}s"
kubectl -n "$BOTS_NS" rollout status deployment/redis --timeout="${TIMEOUT}s"
# The names and key the chart's defaults expect (postgres.existingSecret/key, redis.existingSecret/key).
kubectl -n "$BOTS_NS" create secret generic botfleet-postgres \
  --from-literal=url="postgres://botfleet:botfleet-demo@postgres.$BOTS_NS.svc:5432/botfleet" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$BOTS_NS" create secret generic botfleet-redis \
  --from-literal=url="redis://redis.$BOTS_NS.svc:6379" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
ok "Secrets botfleet-postgres and botfleet-redis (key url) in $BOTS_NS"

# --- 5. the chart -----------------------------------------------------------------------------

step "helm install $RELEASE charts/botfleet -n $SYSTEM_NS"
helm_args=(upgrade --install "$RELEASE" "$REPO_ROOT/charts/botfleet"
  --namespace "$SYSTEM_NS" --create-namespace
  --set "image.repository=$OPERATOR_IMAGE_REPO"
  --set "image.tag=$OPERATOR_IMAGE_TAG"
  --set image.pullPolicy=Never
  --set "runtime.image.repository=$RUNTIME_IMAGE_REPO"
  --set "runtime.image.tag=$RUNTIME_IMAGE_TAG"
  --set postgres.existingSecret=botfleet-postgres
  --set postgres.key=url
  --set redis.existingSecret=botfleet-redis
  --set redis.key=url
  --set logLevel=info)
if [ "$CLUSTER_WIDE" = 1 ]; then
  helm_args+=(--set clusterWide=true --set 'watchNamespaces={}')
  info "cluster-wide mode: one ClusterRole"
else
  helm_args+=(--set "watchNamespaces={$BOTS_NS}")
  info "namespaced mode: watchNamespaces={$BOTS_NS}"
fi
if [ "$CREATED" = 0 ]; then
  # Helm installs crds/ only on the first install and never upgrades them.
  kubectl apply --server-side --force-conflicts -f "$REPO_ROOT/charts/botfleet/crds/" >/dev/null
  info "reused cluster: CRDs brought up to date with kubectl apply --server-side"
fi
helm "${helm_args[@]}"

for crd in botinstances vipplans discountcampaigns ratelimitpolicies; do
  kubectl wait --for=condition=Established "crd/$crd.botfleet.io" --timeout="${TIMEOUT}s" >/dev/null
done
ok "4 CRDs established"
kubectl -n "$SYSTEM_NS" rollout status deployment/"$RELEASE" --timeout="${TIMEOUT}s"
ready=$(kubectl -n "$SYSTEM_NS" get deployment "$RELEASE" -o jsonpath='{.status.readyReplicas}')
[ "$ready" = 2 ] || die "expected 2 ready operator replicas, found ${ready:-0}"
ok "2 operator replicas ready"

leader=""
has_leader() { # sets $leader: the pod holding the Lease (its identity is the pod name)
  leader=$(kubectl -n "$SYSTEM_NS" get lease botfleet-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)
  # On a reused cluster the Lease may still name a pod of the previous release for a few seconds.
  [ -n "$leader" ] && kubectl -n "$SYSTEM_NS" get pod "$leader" >/dev/null 2>&1
}
wait_until "an operator replica to hold the Lease $SYSTEM_NS/botfleet-operator" has_leader
ok "leader: $leader (Lease $SYSTEM_NS/botfleet-operator); the other replica stands by"

pod_metrics() { # <pod>: its /metrics through the API server's pod proxy (no port-forward, no curl)
  kubectl get --raw "/api/v1/namespaces/$SYSTEM_NS/pods/$1:8080/proxy/metrics"
}
metrics() {
  # The leader's: the Service would pick either replica, and only the leader's counters move.
  pod_metrics "$leader"
}
# The output is captured before grep reads it: with pipefail, grep -q closing a pipe early
# could fail the writer with SIGPIPE.
reports_leader() { # <pod> <0|1>: the pod's botfleet_operator_leader gauge
  local m
  m=$(pod_metrics "$1" 2>/dev/null) || return 1
  grep -qx "botfleet_operator_leader $2" <<<"$m"
}
wait_until "the leader's /metrics to say botfleet_operator_leader 1" reports_leader "$leader" 1
standby=$(kubectl -n "$SYSTEM_NS" get pods -l app.kubernetes.io/component=operator \
  -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' | grep -vx "$leader" | head -n 1 || true)
if [ -n "$standby" ]; then
  wait_until "the standby's /metrics to say botfleet_operator_leader 0" reports_leader "$standby" 0
  ok "/metrics: botfleet_operator_leader 1 on $leader, 0 on $standby"
fi
kubectl get --raw "/api/v1/namespaces/$SYSTEM_NS/pods/$leader:8080/proxy/readyz" >/dev/null || die "/readyz of the leader is not 200"
ok "/readyz answers"

# --- 6. the sample fleet ----------------------------------------------------------------------

step "sample fleet in $BOTS_NS (config/samples, switched to polling mode, plus a campaign running now)"
if [ "$REAL_TOKENS" = 1 ]; then
  put_token alpha-bot-token "$BOT_TOKEN_ALPHA"
  put_token beta-bot-token "$BOT_TOKEN_BETA"
else
  put_token alpha-bot-token "$PLACEHOLDER_ALPHA"
  put_token beta-bot-token "$PLACEHOLDER_BETA"
fi
ok "token Secrets alpha-bot-token and beta-bot-token (key token)"

fleet="$WORKDIR/fleet"
mkdir -p "$fleet/samples"
cp "$REPO_ROOT"/config/samples/*.yaml "$fleet/samples/"
now_starts=$(utc_in_minutes -1)
now_ends=$(utc_in_minutes 120)
cat >"$fleet/campaign-now.yaml" <<YAML
# Not in config/samples: a 20% campaign on the VIP plans that is running right now, so the
# Effective column and the Active state can be seen whatever the date.
apiVersion: botfleet.io/v1alpha1
kind: DiscountCampaign
metadata:
  name: kind-demo-now
spec:
  percentOff: 20
  planSelector:
    matchLabels: {kind: vip}
  botSelector:
    matchLabels: {fleet: demo}
  startsAt: "$now_starts"
  endsAt: "$now_ends"
YAML
{
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n'
  printf 'namespace: %s\n' "$BOTS_NS"
  printf 'resources:\n'
  for f in "$fleet"/samples/*.yaml; do
    printf '  - samples/%s\n' "$(basename "$f")"
  done
  printf '  - campaign-now.yaml\n'
  # The samples use webhook mode with https://bots.example.com; kind has no public URL, and a
  # real token must never get a webhook pointing there. Polling mode: the operator only calls getMe.
  cat <<'YAML'
patches:
  - target:
      group: botfleet.io
      version: v1alpha1
      kind: BotInstance
    patch: |-
      - op: replace
        path: /spec/ingress
        value:
          mode: Polling
YAML
} >"$fleet/kustomization.yaml"
# Server-side apply: a re-run on a kept cluster also takes back fields changed by hand (prices).
kubectl apply --server-side --force-conflicts -k "$fleet"

# --- 7. pricing resources: status written by the operator -------------------------------------

step "plans, campaigns and the rate-limit policy get their status"
wait_until "campaign kind-demo-now to be Active" field_is discountcampaign/kind-demo-now '{.status.state}' Active
ok "campaign kind-demo-now: Active"
wait_until "campaign black-friday to get a state" field_not_empty discountcampaign/black-friday '{.status.state}'
bf_state=$(jp discountcampaign/black-friday '{.status.state}')
ok "campaign black-friday (2026-11-27 .. 2026-11-30): $bf_state"
# Best single discount, rounded down: 30% while black-friday is active, else the 20% one.
if [ "$bf_state" = Active ]; then pct=30; else pct=20; fi
expected=$((250 * (100 - pct) / 100))
wait_until "vip-week effective price $expected" field_is vipplan/vip-week '{.status.effectivePriceStars}' "$expected"
ok "vip-week: 250 Stars, effective $expected ($pct% off)"
wait_until "lock-credits-10 effective price 50 (not discounted: kind=credits)" field_is vipplan/lock-credits-10 '{.status.effectivePriceStars}' 50
ok "lock-credits-10: 50 Stars, no discount (the campaigns select kind=vip)"
wait_until "rate-limit policy demo-limits to select 2 bots" field_is ratelimitpolicy/demo-limits '{.status.selectedBots}' 2
ok "demo-limits selects 2 bots"

step "the CRDs refuse invalid specs (OpenAPI bounds and CEL rules)"
bad_out=$(kubectl -n "$BOTS_NS" apply --dry-run=server -f - 2>&1 <<'YAML' || true
apiVersion: botfleet.io/v1alpha1
kind: DiscountCampaign
metadata:
  name: inverted-window
spec:
  percentOff: 10
  startsAt: "2026-12-31T00:00:00Z"
  endsAt: "2026-12-01T00:00:00Z"
YAML
)
grep -q 'endsAt must be after startsAt' <<<"$bad_out" || die "an inverted campaign window was not refused: $bad_out"
ok "inverted window refused: endsAt must be after startsAt"
bad_out=$(kubectl -n "$BOTS_NS" apply --dry-run=server -f - 2>&1 <<'YAML' || true
apiVersion: botfleet.io/v1alpha1
kind: DiscountCampaign
metadata:
  name: too-generous
spec:
  percentOff: 120
  startsAt: "2026-12-01T00:00:00Z"
  endsAt: "2026-12-31T00:00:00Z"
YAML
)
grep -q 'percentOff' <<<"$bad_out" || die "120% off was not refused: $bad_out"
ok "120% off refused (percentOff is 1..90)"

# --- 8. the bots ------------------------------------------------------------------------------

if [ "$REAL_TOKENS" = 0 ]; then
  step "bots with placeholder tokens: validated with getMe, refused, reported"
  for bot in alpha beta; do
    wait_until "bot $bot: TokenValid with a reason" token_reason_in "$bot" Unauthorized TelegramRefused TelegramUnreachable
    ok "bot $bot: TokenValid=$(condition "$bot" TokenValid status) reason=$(condition "$bot" TokenValid reason)"
    info "message: $(condition "$bot" TokenValid message)"
  done
  if token_reason_in alpha TelegramUnreachable; then
    warn "the cluster cannot reach api.telegram.org (TelegramUnreachable, status Unknown; retried every 30s)"
  fi
  for obj in deployment/alpha-runtime configmap/alpha-config deployment/beta-runtime; do
    absent "$obj" || die "$obj exists although the token was never valid"
  done
  ok "no runtime objects were created for unvalidated tokens"
  [ "$(jp botinstance/alpha '{.metadata.finalizers[0]}')" = botfleet.io/webhook ] || die "bot alpha has no botfleet.io/webhook finalizer"
  ok "finalizer botfleet.io/webhook in place"

  step "token Secrets are watched: a malformed token, then a missing Secret"
  put_token alpha-bot-token 'not-a-bot-token'
  wait_until "bot alpha: TokenMalformed" token_reason_in alpha TokenMalformed
  wait_until "bot alpha: Ready=False TokenUnavailable" field_is botinstance/alpha '{.status.conditions[?(@.type=="Ready")].reason}' TokenUnavailable
  ok "alpha: TokenValid=False TokenMalformed, Ready=False TokenUnavailable"
  kubectl -n "$BOTS_NS" delete secret beta-bot-token >/dev/null
  wait_until "bot beta: SecretNotFound" token_reason_in beta SecretNotFound
  ok "beta: TokenValid=False SecretNotFound"
  put_token alpha-bot-token "$PLACEHOLDER_ALPHA"
  put_token beta-bot-token "$PLACEHOLDER_BETA"
  wait_until "bot alpha: back to a Telegram verdict" token_reason_in alpha Unauthorized TelegramRefused TelegramUnreachable
  wait_until "bot beta: back to a Telegram verdict" token_reason_in beta Unauthorized TelegramRefused TelegramUnreachable
  ok "both Secrets restored; getMe asked again"
  events=$(kubectl -n "$BOTS_NS" get events --field-selector involvedObject.kind=BotInstance,involvedObject.name=alpha \
    -o jsonpath='{range .items[*]}{.reason}{"\n"}{end}' 2>/dev/null | sort -u | tr '\n' ' ')
  info "Events on bot alpha: ${events:-none}"
  grep -q TokenMalformed <<<"$events" || die "no TokenMalformed Event on bot alpha"
  ok "Warning Events recorded"
else
  step "bots with real tokens: getMe, owned objects, status"
  kubectl -n "$BOTS_NS" wait --for=condition=TokenValid=True botinstance/alpha botinstance/beta --timeout="${TIMEOUT}s"
  for bot in alpha beta; do
    ok "bot $bot: @$(jp "botinstance/$bot" '{.status.username}'), token $(jp "botinstance/$bot" '{.status.tokenFingerprint}')"
  done
  for obj in configmap/alpha-config deployment/alpha-runtime service/alpha-runtime \
    horizontalpodautoscaler/alpha-runtime poddisruptionbudget/alpha-runtime \
    configmap/beta-config deployment/beta-runtime service/beta-runtime poddisruptionbudget/beta-runtime; do
    wait_until "$obj" exists "$obj"
  done
  absent horizontalpodautoscaler/beta-runtime || die "beta has fixed replicas but got an HPA"
  absent secret/alpha-webhook || die "alpha is in polling mode but got a webhook Secret"
  ok "alpha: ConfigMap, Deployment, Service, HPA (2..6), PDB; beta: ConfigMap, Deployment (2), Service, PDB, no HPA"
  fp=$(jp botinstance/alpha '{.status.tokenFingerprint}')
  [ "$(pod_token_annotation alpha-runtime)" = "$fp" ] || die "alpha-runtime's pod template does not carry botfleet.io/token-fingerprint=$fp"
  ok "pod template annotation botfleet.io/token-fingerprint=$fp"
  wait_until "bot alpha: a Ready condition" field_not_empty botinstance/alpha '{.status.conditions[?(@.type=="Ready")].reason}'
  info "bot alpha: Ready=$(condition alpha Ready status) $(condition alpha Ready reason): $(condition alpha Ready message)"
  if [ "$(condition alpha Ready status)" != True ]; then
    warn "expected today: the runtime image ($RUNTIME_IMAGE_REPO:$RUNTIME_IMAGE_TAG) cannot serve yet (issue 3)"
  fi

  step "changing a price reaches the ConfigMap without rolling the pods"
  # The pod templates, not the generations: alpha's HPA changes spec.replicas (and with it the
  # generation) on its own.
  alpha_template=$(pod_template alpha-runtime)
  beta_template=$(pod_template beta-runtime)
  hash_before=$(jp botinstance/alpha '{.status.configHash}')
  kubectl -n "$BOTS_NS" patch vipplan vip-week --type merge -p '{"spec":{"priceStars":300}}' >/dev/null
  config_has_price() { # <bot>
    local cfg
    cfg=$(jp "configmap/$1-config" '{.data.config\.yaml}')
    grep -A6 'id: vip-week' <<<"$cfg" | grep -q 'priceStars: 300'
  }
  wait_until "alpha-config to sell vip-week at 300" config_has_price alpha
  wait_until "beta-config to sell vip-week at 300" config_has_price beta
  hash_after=""
  config_hash_changed() {
    hash_after=$(jp botinstance/alpha '{.status.configHash}')
    [ -n "$hash_after" ] && [ "$hash_after" != "$hash_before" ]
  }
  wait_until "bot alpha: a new status.configHash" config_hash_changed
  [ "$(pod_template alpha-runtime)" = "$alpha_template" ] || die "the price change rolled alpha-runtime (pod template changed)"
  [ "$(pod_template beta-runtime)" = "$beta_template" ] || die "the price change rolled beta-runtime (pod template changed)"
  ok "configHash $hash_before -> $hash_after; pod templates unchanged: no restart, the runtimes reload the file"
  expected=$((300 * (100 - pct) / 100))
  wait_until "vip-week effective price $expected" field_is vipplan/vip-week '{.status.effectivePriceStars}' "$expected"
  ok "vip-week: 300 Stars, effective $expected"

  step "an invalid token is reported and the Deployment is left alone"
  alpha_template=$(pod_template alpha-runtime)
  put_token alpha-bot-token "$PLACEHOLDER_ALPHA"
  wait_until "bot alpha: TokenValid=False" token_reason_in alpha Unauthorized TelegramRefused
  [ "$(pod_token_annotation alpha-runtime)" = "$fp" ] || die "the Deployment moved to the invalid token"
  [ "$(pod_template alpha-runtime)" = "$alpha_template" ] || die "alpha-runtime's pod template changed after an invalid token"
  ok "TokenValid=False $(condition alpha TokenValid reason); pod template still on $fp"
  put_token alpha-bot-token "$BOT_TOKEN_ALPHA"
  kubectl -n "$BOTS_NS" wait --for=condition=TokenValid=True botinstance/alpha --timeout="${TIMEOUT}s" >/dev/null
  ok "real token restored: TokenValid=True"
fi

# --- 9. metrics and the picture ---------------------------------------------------------------

step "operator metrics (leader $leader)"
out=$(metrics)
grep -E '^botfleet_operator_(leader|reconciles_total\{|bots\{|webhook_pending_updates\{)' <<<"$out" | sed 's/^/    /' || true
# Captured first: with pipefail, grep -q closing a pipe early could fail the writer (SIGPIPE).
out=$(metrics)
grep -q 'botfleet_operator_reconciles_total{kind="BotInstance"' <<<"$out" || die "the leader counted no BotInstance reconcile"
ok "BotInstance reconciles counted"

step "kubectl get bots,plans,campaigns,rlp -o wide -n $BOTS_NS"
kubectl -n "$BOTS_NS" get bots,plans,campaigns,rlp -o wide
printf '\n'
kubectl -n "$BOTS_NS" describe botinstance alpha | sed -n '/^Status:/,$p'

# --- 10. deletion goes through the finalizer --------------------------------------------------

if [ "$KEEP" = 1 ]; then
  step "KEEP=1: leaving the fleet in place"
else
  step "deleting the fleet (the finalizer runs, owned objects are garbage-collected)"
  kubectl delete -k "$fleet" --wait=false >/dev/null
  no_bots_left() {
    local left
    left=$(kubectl -n "$BOTS_NS" get botinstances -o name 2>/dev/null) || return 1
    [ -z "$left" ]
  }
  wait_until "BotInstances to be gone (stuck ones keep the finalizer botfleet.io/webhook)" no_bots_left
  no_runtime_left() {
    local left
    left=$(kubectl -n "$BOTS_NS" get deployments,configmaps -l app.kubernetes.io/managed-by=botfleet-operator -o name 2>/dev/null) || return 1
    [ -z "$left" ]
  }
  wait_until "owned Deployments and ConfigMaps to be garbage-collected" no_runtime_left
  ok "all BotInstances deleted, their objects garbage-collected"
fi

step "done"
if [ "$REAL_TOKENS" = 1 ]; then
  info "The operator side works end to end with real tokens. Runtime pods become Ready once a bot-runtime"
  info "image with the serve role exists (issue 3): RUNTIME_IMAGE_REPO=... RUNTIME_IMAGE_TAG=... $0"
else
  info "The control loop works end to end: CRDs, leader election, /metrics, pricing status, CEL validation,"
  info "token Secrets watched and validated with getMe, conditions and Events. Set BOT_TOKEN_ALPHA and"
  info "BOT_TOKEN_BETA (two test bots) to go as far as the runtime Deployments."
fi
