//! Pure: from a BotInstance and its resolved configuration to the objects that run it.
//!
//! Nothing here talks to the API server; `reconcile.rs` applies what these functions return
//! with server-side apply. Every function is a plain value transformation, unit-tested below.

use std::collections::BTreeMap;

use botfleet_crds::bot_instance::{BotInstance, IngressMode};
use botfleet_crds::payload_keys::PayloadKeys;
use botfleet_crds::resolved::{PAYLOAD_KEY_FILE, ResolvedBotConfig, TOKEN_FILE, WEBHOOK_SECRET_FILE};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource as _;
use kube::api::DynamicObject;
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

/// The server-side-apply field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "botfleet-operator";

/// The runtime listens here for Telegram's webhook, /metrics, /healthz and /readyz.
pub const RUNTIME_PORT: i32 = 8080;
pub const CONFIG_KEY: &str = "config.yaml";
pub const CONFIG_DIR: &str = "/etc/botfleet/config";
pub const WEBHOOK_SECRET_KEY: &str = "secret";
/// Pod-template annotations that roll the pods when they change (the token and webhook
/// secret are read at start); the configuration itself is hot-reloaded, so its hash is not here.
pub const TOKEN_ANNOTATION: &str = "botfleet.io/token-fingerprint";
pub const WEBHOOK_SECRET_ANNOTATION: &str = "botfleet.io/webhook-secret-fingerprint";
pub const CONFIG_HASH_ANNOTATION: &str = "botfleet.io/config-hash";
/// Rolls the pods when the namespace's payload keys change (the runtime reads them at start).
pub const PAYLOAD_KEYS_ANNOTATION: &str = "botfleet.io/payload-keys-fingerprint";

/// The namespace's invoice-payload key Secret (docs/MONEY.md, "Signed payloads"), shared by
/// every bot of the namespace. The operator creates it (POST, never apply) when it is absent,
/// with one random key, and never writes it again: admins rotate keys by editing it. It has no
/// owner, so deleting a bot — or every bot — leaves it (invoices in flight keep verifying, and a
/// recreated bot signs with the same keys). A Secret of this name the operator did not create is
/// used as it is when it has the expected shape ([`payload_keys_in`]).
pub const PAYLOAD_KEYS_SECRET: &str = "botfleet-payload-keys";
/// The Secret's one key: the key file, mounted at [`PAYLOAD_KEY_FILE`].
pub const PAYLOAD_KEYS_KEY: &str = "keys";

/// What the operator was installed with (Helm values → environment).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub runtime_image: String,
    /// Other images a BotInstance may ask for in `spec.image`: an entry is a repository (any
    /// tag or digest of it) or a prefix ending in `/` (every image under it). Empty: only
    /// `runtime_image`. Whoever may create BotInstances must not make the operator run an
    /// arbitrary image.
    pub allowed_images: Vec<String>,
    /// Extra labels on every bot's ServiceMonitor (what the cluster's Prometheus selects
    /// ServiceMonitors by, e.g. `release: kube-prometheus-stack`).
    pub service_monitor_labels: BTreeMap<String, String>,
    /// A NetworkPolicy per bot (off: None, and the operator manages none).
    pub network_policy: Option<NetworkPolicySettings>,
    pub database_secret: SecretRef,
    pub redis_secret: SecretRef,
    pub telegram_api_url: String,
    /// Fleet-wide runtime settings every bot's pods get as environment (chart:
    /// `runtime.settings`, as JSON in `RUNTIME_SETTINGS`).
    pub runtime: RuntimeSettings,
}

/// The runtime's tunables that must be the same for every replica of every bot of a fleet (a
/// media budget is fleet-wide; a connection budget is planned per fleet), so they come from the
/// chart, not from each BotInstance. Unset: the runtime's default. Ranges are the runtime's own
/// (`bot-runtime serve --help`); the chart's schema checks them before the operator sees them,
/// and a pod that still gets a bad value says so in its termination message.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeSettings {
    pub database_pool_size: Option<u32>,
    pub media_budget_mib: Option<u64>,
    pub media_user_mib: Option<u64>,
    pub media_user_window_minutes: Option<u64>,
    pub media_relays_per_process: Option<u64>,
    pub egress_backlog_seconds: Option<u64>,
}

impl RuntimeSettings {
    /// The environment variables these settings become, in a fixed order (a stable pod template).
    pub fn env(&self) -> Vec<EnvVar> {
        [
            ("DATABASE_POOL_SIZE", self.database_pool_size.map(u64::from)),
            ("MEDIA_BUDGET_MIB", self.media_budget_mib),
            ("MEDIA_USER_MIB", self.media_user_mib),
            ("MEDIA_USER_WINDOW_MINUTES", self.media_user_window_minutes),
            ("MEDIA_RELAYS_PER_PROCESS", self.media_relays_per_process),
            ("EGRESS_BACKLOG_SECONDS", self.egress_backlog_seconds),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some(EnvVar { name: name.into(), value: Some(value?.to_string()), ..Default::default() }))
        .collect()
    }
}

/// Who may reach a bot's pods when the operator gives each bot a NetworkPolicy (chart:
/// `runtime.networkPolicy`, as JSON in `RUNTIME_NETWORK_POLICY`). Everything else is denied.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySettings {
    /// Who scrapes /metrics (e.g. the monitoring namespace's Prometheus pods).
    #[serde(default)]
    pub metrics: Vec<NetworkPolicyPeer>,
    /// Who delivers Telegram's webhook (the ingress controller's pods); webhook-mode bots only.
    #[serde(default)]
    pub webhook: Vec<NetworkPolicyPeer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub name: String,
    pub key: String,
}

/// Everything one bot runs with, in the order `reconcile` applies it. The ServiceMonitor is
/// built only when its CRD exists. `reconcile::apply_desired` destructures this without `..`,
/// so a new kind of object does not compile until it is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The webhook secret, only when it is new (generated for this reconcile): an existing
    /// one is kept as it is, since changing it needs a new setWebhook.
    pub webhook_secret: Option<Secret>,
    /// The operator's copy of the token Telegram just accepted (pods mount it).
    pub runtime_token: Secret,
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    pub service: Service,
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    pub disruption_budget: Option<PodDisruptionBudget>,
    pub service_monitor: Option<DynamicObject>,
    /// Only when the operator was installed with `runtime.networkPolicy.enabled`.
    pub network_policy: Option<NetworkPolicy>,
}

/// Inputs that change the pods but are not in the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    pub token_fingerprint: String,
    pub webhook_secret_fingerprint: Option<String>,
    /// The namespace's payload keys ([`PayloadKeys::fingerprint`]).
    pub payload_keys_fingerprint: String,
}

pub fn names(bot: &str) -> Names {
    Names {
        runtime: format!("{bot}-runtime"),
        config: format!("{bot}-config"),
        webhook_secret: format!("{bot}-webhook"),
        token: format!("{bot}-runtime-token"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Deployment, Service, HPA, PDB and ServiceMonitor share it.
    pub runtime: String,
    pub config: String,
    pub webhook_secret: String,
    /// The operator's copy of the last token Telegram accepted; pods mount this, so a pod
    /// started after a bad token was written still gets the good one.
    pub token: String,
}

/// Labels that select a bot's pods; stable for the bot's life (a Deployment selector is immutable).
pub fn selector_labels(bot: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "bot-runtime".to_string()),
        ("app.kubernetes.io/instance".to_string(), bot.to_string()),
    ])
}

/// The label (value `true`) users put on their token Secrets: the operator watches Secrets by it
/// (metadata only), so a rotated token is noticed within seconds. Without it the bot still
/// works; the rotation is noticed at the next resync and `TokenSecretWatched=False` says so.
pub const TOKEN_SECRET_LABEL: &str = "botfleet.io/bot-token";
/// The label every object the operator creates carries (its watches select by it).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "botfleet-operator");

/// The Prometheus job every runtime is scraped under (alerts say `up{job="botfleet-runtime"}`).
pub const SCRAPE_JOB_LABEL: &str = "botfleet.io/scrape-job";
pub const RUNTIME_JOB: &str = "botfleet-runtime";

fn labels(bot: &str, pool: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(bot);
    l.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    l.insert("app.kubernetes.io/part-of".into(), "botfleet".into());
    l.insert("botfleet.io/pool".into(), pool.into());
    l.insert(SCRAPE_JOB_LABEL.into(), RUNTIME_JOB.into());
    l
}

fn owner(bot: &BotInstance) -> Option<OwnerReference> {
    bot.controller_owner_ref(&())
}

fn meta(bot: &BotInstance, name: &str, pool: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: bot.metadata.namespace.clone(),
        labels: Some(labels(&bot_name(bot), pool)),
        owner_references: owner(bot).map(|o| vec![o]),
        ..Default::default()
    }
}

pub fn bot_name(bot: &BotInstance) -> String {
    bot.metadata.name.clone().unwrap_or_default()
}

/// The webhook URL the operator registers with Telegram for this bot.
pub fn webhook_url(bot: &BotInstance) -> Option<String> {
    match bot.spec.ingress.mode {
        IngressMode::Webhook => {
            bot.spec.ingress.public_url.as_ref().map(|u| format!("{}/telegram/{}", u.trim_end_matches('/'), bot_name(bot)))
        }
        IngressMode::Polling => None,
    }
}

/// What `build` needs besides the bot and the operator's settings: the outcome of the
/// reconcile's reads, as plain values.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildInputs<'a> {
    pub config: &'a ResolvedBotConfig,
    pub config_yaml: &'a str,
    pub hash: &'a str,
    /// The token Telegram accepted (written to the operator's copy, never logged).
    pub token: &'a str,
    pub rollout: &'a Rollout,
    /// A webhook secret generated by this reconcile, to be written; None: keep the existing one.
    pub new_webhook_secret: Option<&'a str>,
    pub scale_down: ScaleDown,
    pub with_monitor: bool,
    /// The bot's Deployment as it is now (None: not created yet): under autoscaling, the
    /// replica count is handed to the HPA without ever dropping to the default of 1.
    pub existing_deployment: Option<&'a Deployment>,
}

pub fn build(bot: &BotInstance, input: &BuildInputs<'_>, settings: &Settings) -> Desired {
    let name = bot_name(bot);
    let n = names(&name);
    let pool = &input.config.bot.pool;
    let mut deployment = deployment(bot, &n, pool, input.rollout, settings);
    if let Some(a) = &bot.spec.autoscaling {
        deployment.spec.replicas = autoscaled_replicas(a, input.existing_deployment);
    }
    if let ScaleDown::Retire { keep, .. } = input.scale_down {
        // The running pods stay, with the configuration saying `retiring`, for the drain.
        deployment.spec.replicas = Some(keep);
    }
    let with_monitor = input.with_monitor;
    Desired {
        webhook_secret: input.new_webhook_secret.map(|s| webhook_secret(bot, pool, s)),
        runtime_token: validated_token(bot, pool, input.token),
        config_map: config_map(bot, input.config, input.config_yaml, input.hash),
        deployment,
        service: service(bot, &n, pool),
        autoscaler: autoscaler(bot, &n, pool),
        disruption_budget: disruption_budget(bot, &n, pool),
        service_monitor: with_monitor.then(|| service_monitor(bot, &n, pool, &settings.service_monitor_labels)),
        network_policy: settings.network_policy.as_ref().map(|np| network_policy(bot, &n, pool, np)),
    }
}

pub const TOKEN_KEY: &str = "token";

/// The ConfigMap with the bot's resolved configuration (the runtimes re-read it).
pub fn config_map(bot: &BotInstance, config: &ResolvedBotConfig, config_yaml: &str, hash: &str) -> ConfigMap {
    let mut cm_meta = meta(bot, &names(&bot_name(bot)).config, &config.bot.pool);
    cm_meta.annotations = Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_string(), hash.to_string())]));
    ConfigMap { metadata: cm_meta, data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), config_yaml.to_string())])), ..Default::default() }
}

/// The operator-owned copy of the last validated token.
pub fn validated_token(bot: &BotInstance, pool: &str, token: &str) -> Secret {
    Secret {
        metadata: meta(bot, &names(&bot_name(bot)).token, pool),
        string_data: Some(BTreeMap::from([(TOKEN_KEY.to_string(), token.to_string())])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// The namespace's payload-key Secret as the operator creates it: labelled as the operator's
/// (its watch sees edits, so a rotation rolls the pods within seconds), owned by nobody.
pub fn payload_keys_secret(namespace: &str, keys: &PayloadKeys) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(PAYLOAD_KEYS_SECRET.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                ("app.kubernetes.io/part-of".to_string(), "botfleet".to_string()),
            ])),
            annotations: Some(BTreeMap::from([(
                "botfleet.io/rotation".to_string(),
                "edit this Secret to rotate: see docs/MONEY.md, Signed payloads (the operator never overwrites it)".to_string(),
            )])),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(PAYLOAD_KEYS_KEY.to_string(), keys.expose().to_string())])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// The keys of an existing payload-key Secret, if it has the shape the pods need (an Opaque
/// Secret whose key [`PAYLOAD_KEYS_KEY`] holds a key file the runtime accepts); else why not.
/// Whoever created it, it is never modified: a wrong one is reported and the bot waits.
pub fn payload_keys_in(secret: &Secret) -> Result<PayloadKeys, String> {
    let why = match (secret.type_.as_deref(), secret.data.as_ref().and_then(|d| d.get(PAYLOAD_KEYS_KEY))) {
        (Some(t), _) if t != "Opaque" => format!("is of type {t:?}, not Opaque"),
        (_, None) => format!("has no key {PAYLOAD_KEYS_KEY:?}"),
        (_, Some(bytes)) => match PayloadKeys::from_bytes(&bytes.0) {
            Ok(keys) => return Ok(keys),
            Err(e) => format!("key {PAYLOAD_KEYS_KEY:?}: {e}"),
        },
    };
    Err(format!(
        "Secret {PAYLOAD_KEYS_SECRET:?} {why}; the runtime could not start with it, so nothing is applied (running pods keep their keys). Fix it (docs/MONEY.md, Signed payloads), or delete it and the operator creates a new one"
    ))
}

/// The operator-owned Secret with the webhook secret token (generated once, kept).
pub fn webhook_secret(bot: &BotInstance, pool: &str, secret: &str) -> Secret {
    Secret {
        metadata: meta(bot, &names(&bot_name(bot)).webhook_secret, pool),
        string_data: Some(BTreeMap::from([(WEBHOOK_SECRET_KEY.to_string(), secret.to_string())])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

fn quantity(v: &str) -> Quantity {
    Quantity(v.to_string())
}

/// What to do with the pods of a bot whose `spec.replicas` is 0 (scaled to zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleDown {
    /// Not scaled to zero: replicas as the spec says.
    No,
    /// Pods still run: keep `keep` replicas with the configuration saying `retiring` until
    /// the drain is over, `left` from now (`start`: the drain begins with this reconcile).
    Retire { keep: i32, left: std::time::Duration, start: bool },
    /// Nothing (more) to drain: zero replicas.
    Stop,
}

/// Scaling a bot to zero retires it first, as deleting does: its running pods take its users
/// out of the pool before they go. Pure: from the spec, the pods ready now, when the drain
/// began (if it did), the drain's length and the time.
pub fn scale_down(
    bot: &BotInstance,
    ready: i32,
    retiring_since: Option<jiff::Timestamp>,
    drain: std::time::Duration,
    now: jiff::Timestamp,
) -> ScaleDown {
    if bot.spec.autoscaling.is_some() || bot.spec.replicas != Some(0) {
        return ScaleDown::No;
    }
    match retiring_since {
        Some(since) => {
            let elapsed = std::time::Duration::try_from(now.duration_since(since)).unwrap_or_default();
            match drain.checked_sub(elapsed).filter(|left| !left.is_zero()) {
                Some(left) => ScaleDown::Retire { keep: ready.max(1), left, start: false },
                None => ScaleDown::Stop,
            }
        }
        None if ready > 0 => ScaleDown::Retire { keep: ready, left: drain, start: true },
        None => ScaleDown::Stop,
    }
}

/// The Deployment's `replicas` under autoscaling. Server-side apply resets a field to its
/// default (1 for replicas) when its only manager stops applying it, so the operator must not
/// simply drop it when a bot switches from fixed replicas to autoscaling (Kubernetes docs,
/// "Server-Side Apply → Transferring ownership"). It keeps applying the current count, within
/// the HPA's bounds (`minReplicas` for a new Deployment), until another manager — the HPA
/// controller writing the scale subresource — also owns `spec.replicas`; from then on it
/// leaves the field out and the HPA alone owns it.
pub fn autoscaled_replicas(a: &botfleet_crds::bot_instance::Autoscaling, existing: Option<&Deployment>) -> Option<i32> {
    let Some(d) = existing else { return Some(a.min_replicas) };
    let someone_else_owns_it = d.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() != Some(FIELD_MANAGER) && m.fields_v1.as_ref().is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
    });
    if someone_else_owns_it {
        return None;
    }
    Some(d.spec.replicas.unwrap_or(a.min_replicas).clamp(a.min_replicas, a.max_replicas.max(a.min_replicas)))
}

/// Names the mounted payload-key file in the configuration (every pod the operator runs
/// mounts the namespace's keys; the resolver leaves the field out, as `bot-runtime local` does).
pub fn name_payload_key_file(config: &mut ResolvedBotConfig) {
    config.bot.secrets.payload_key_file = Some(PAYLOAD_KEY_FILE.into());
}

/// The configuration as the pods get it: the payload-key file named, and a bot scaled to zero
/// says `retiring` while it drains (and after, until it is scaled up again). Returns it with
/// its hash.
pub fn runtime_config(
    mut config: ResolvedBotConfig,
    scale_down: ScaleDown,
    retiring_since: Option<jiff::Timestamp>,
) -> (ResolvedBotConfig, String) {
    name_payload_key_file(&mut config);
    config.bot.retiring = match scale_down {
        ScaleDown::No => config.bot.retiring,
        ScaleDown::Retire { .. } => true,
        ScaleDown::Stop => retiring_since.is_some(),
    };
    let hash = config.hash();
    (config, hash)
}

/// An image reference without its tag or digest (`registry:5000/a/b:1.2@sha256:…` → `registry:5000/a/b`).
fn repository(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(repo, _)| repo);
    match image.rfind(':') {
        // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
        Some(colon) if colon > image.rfind('/').unwrap_or(0) => &image[..colon],
        _ => image,
    }
}

/// The runtime image this bot asks for, if the operator may run it (else why not).
pub fn allowed_image(bot: &BotInstance, settings: &Settings) -> Result<String, String> {
    let Some(image) = bot.spec.image.as_deref() else { return Ok(settings.runtime_image.clone()) };
    let allowed = image == settings.runtime_image
        || settings.allowed_images.iter().any(|entry| match entry.strip_suffix('/') {
            Some(_) => image.starts_with(entry.as_str()),
            None => repository(image) == entry,
        });
    if allowed {
        Ok(image.to_string())
    } else {
        Err(format!(
            "spec.image {image:?} is not allowed by this operator (the installed runtime image, or runtime.allowedImages in the chart's values)"
        ))
    }
}

/// The objects a bot's `Desired` names, as the API server has them now (None: absent). Read
/// before the build; the Deployment whole (its replica count matters), the rest metadata only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Existing {
    pub webhook_secret: Option<ObjectMeta>,
    pub runtime_token: Option<ObjectMeta>,
    pub config_map: Option<ObjectMeta>,
    pub service: Option<ObjectMeta>,
    pub deployment: Option<Deployment>,
    pub autoscaler: Option<ObjectMeta>,
    pub disruption_budget: Option<ObjectMeta>,
    pub service_monitor: Option<ObjectMeta>,
    pub network_policy: Option<ObjectMeta>,
}

/// Whether this BotInstance (by uid) is the controller owner of an object.
pub fn owned_by(meta: &ObjectMeta, bot: &BotInstance) -> bool {
    let uid = bot.metadata.uid.as_deref().unwrap_or_default();
    meta.owner_references.iter().flatten().any(|o| o.controller == Some(true) && o.kind == "BotInstance" && o.uid == uid)
}

/// Objects the bot would write that exist and are not its own ("Kind name"): the operator
/// never takes over what it did not create (a forced apply would overwrite it), so one of
/// them blocks the whole bot. Objects the bot no longer wants are not listed: they are only
/// deleted when they are its own.
pub fn foreign_objects(bot: &BotInstance, desired: &Desired, existing: &Existing) -> Vec<String> {
    let n = names(&bot_name(bot));
    let deployment_meta = existing.deployment.as_ref().map(|d| &d.metadata);
    let candidates = [
        ("Secret", &n.webhook_secret, desired.webhook_secret.is_some(), existing.webhook_secret.as_ref()),
        ("Secret", &n.token, true, existing.runtime_token.as_ref()),
        ("ConfigMap", &n.config, true, existing.config_map.as_ref()),
        ("Service", &n.runtime, true, existing.service.as_ref()),
        ("Deployment", &n.runtime, true, deployment_meta),
        ("HorizontalPodAutoscaler", &n.runtime, desired.autoscaler.is_some(), existing.autoscaler.as_ref()),
        ("PodDisruptionBudget", &n.runtime, desired.disruption_budget.is_some(), existing.disruption_budget.as_ref()),
        ("ServiceMonitor", &n.runtime, desired.service_monitor.is_some(), existing.service_monitor.as_ref()),
        ("NetworkPolicy", &n.runtime, desired.network_policy.is_some(), existing.network_policy.as_ref()),
    ];
    candidates
        .into_iter()
        .filter(|(_, _, wanted, found)| *wanted && found.is_some_and(|m| !owned_by(m, bot)))
        .map(|(kind, name, _, _)| format!("{kind} {name:?}"))
        .collect()
}

/// Why a BotInstance cannot be turned into objects the API server accepts — checked before
/// anything is applied, so the user gets `Ready=False` with the reason and an Event instead
/// of a reconcile that fails forever on a 422.
pub fn validate(bot: &BotInstance) -> Result<(), String> {
    let name = bot_name(bot);
    // The Service `<bot>-runtime` must be a DNS-1035 label (at most 63 characters, a letter
    // first), and the runtime names the bot by a DNS label in its ids and keys.
    let longest = names(&name).runtime;
    let label_ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-');
    if !label_ok {
        return Err(format!(
            "the name {name:?} cannot name the bot's Service: use lower-case letters, digits and '-', starting with a letter (no dots)"
        ));
    }
    if longest.len() > 63 {
        return Err(format!(
            "the name {name:?} is too long: its Service {longest:?} must be at most 63 characters (a bot name of at most 55)"
        ));
    }
    let r = bot.spec.resources.clone().unwrap_or_default();
    let memory = |v: Option<&str>, default: &str| parse_memory(v.unwrap_or(default));
    match (memory(r.memory_request.as_deref(), "64Mi"), memory(r.memory_limit.as_deref(), "128Mi")) {
        (Some(request), Some(limit)) if request > limit => {
            return Err(format!(
                "resources: memoryRequest {} is above memoryLimit {} (the default limit is 128Mi; raise memoryLimit too)",
                r.memory_request.as_deref().unwrap_or("64Mi"),
                r.memory_limit.as_deref().unwrap_or("128Mi")
            ));
        }
        _ => {}
    }
    if let (Some(request), Some(limit)) = (r.cpu_request.as_deref(), r.cpu_limit.as_deref())
        && let (Some(rq), Some(lm)) = (parse_cpu(request), parse_cpu(limit))
        && rq > lm
    {
        return Err(format!("resources: cpuRequest {request} is above cpuLimit {limit}"));
    }
    Ok(())
}

/// A memory quantity as the schema allows it (`^[0-9]+(Ki|Mi|Gi|K|M|G)?$`), in bytes.
fn parse_memory(v: &str) -> Option<u128> {
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u128 = digits.parse().ok()?;
    let unit: u128 = match &v[digits.len()..] {
        "" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// A CPU quantity as the schema allows it (`^[0-9]+(\.[0-9]+)?m?$`), in millicores.
fn parse_cpu(v: &str) -> Option<f64> {
    match v.strip_suffix('m') {
        Some(milli) => milli.parse().ok(),
        None => v.parse::<f64>().ok().map(|cores| cores * 1000.0),
    }
}

fn resources(bot: &BotInstance) -> ResourceRequirements {
    let r = bot.spec.resources.clone().unwrap_or_default();
    // Defaults sized for SPEC's budget: a replica stays under 64 MiB with 10k live chats.
    let requests = BTreeMap::from([
        ("cpu".to_string(), quantity(r.cpu_request.as_deref().unwrap_or("100m"))),
        ("memory".to_string(), quantity(r.memory_request.as_deref().unwrap_or("64Mi"))),
    ]);
    let mut limits = BTreeMap::from([("memory".to_string(), quantity(r.memory_limit.as_deref().unwrap_or("128Mi")))]);
    if let Some(cpu) = &r.cpu_limit {
        limits.insert("cpu".into(), quantity(cpu));
    }
    ResourceRequirements { requests: Some(requests), limits: Some(limits), ..Default::default() }
}

fn secret_env(name: &str, secret: &SecretRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret.name.clone(), key: secret.key.clone(), optional: Some(false) }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction { path: Some(path.into()), port: IntOrString::String("http".into()), ..Default::default() }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

fn deployment(bot: &BotInstance, n: &Names, pool: &str, rollout: &Rollout, settings: &Settings) -> Deployment {
    let name = bot_name(bot);
    let mut pod_annotations = BTreeMap::from([
        (TOKEN_ANNOTATION.to_string(), rollout.token_fingerprint.clone()),
        (PAYLOAD_KEYS_ANNOTATION.to_string(), rollout.payload_keys_fingerprint.clone()),
    ]);
    if let Some(fp) = &rollout.webhook_secret_fingerprint {
        pod_annotations.insert(WEBHOOK_SECRET_ANNOTATION.into(), fp.clone());
    }
    let token_dir = TOKEN_FILE.rsplit_once('/').map(|(d, _)| d).unwrap_or("/etc/botfleet/token");
    let token_file = TOKEN_FILE.rsplit_once('/').map(|(_, f)| f).unwrap_or("token");
    let webhook_dir = WEBHOOK_SECRET_FILE.rsplit_once('/').map(|(d, _)| d).unwrap_or("/etc/botfleet/webhook");
    let webhook_file = WEBHOOK_SECRET_FILE.rsplit_once('/').map(|(_, f)| f).unwrap_or("secret");
    let payload_keys_dir = PAYLOAD_KEY_FILE.rsplit_once('/').map(|(d, _)| d).unwrap_or("/etc/botfleet/payload-keys");
    let payload_keys_file = PAYLOAD_KEY_FILE.rsplit_once('/').map(|(_, f)| f).unwrap_or(PAYLOAD_KEYS_KEY);
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            // Mounted as a directory (not subPath) so the kubelet refreshes it: hot reload.
            config_map: Some(ConfigMapVolumeSource { name: n.config.clone(), ..Default::default() }),
            ..Default::default()
        },
        Volume {
            name: "token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(n.token.clone()),
                items: Some(vec![KeyToPath { key: TOKEN_KEY.into(), path: token_file.into(), mode: Some(0o400), user: None }]),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            // Shared by every bot of the namespace; the kubelet refreshes the file on an edit,
            // and the annotation above rolls the pods, since the runtime reads it at start.
            name: "payload-keys".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(PAYLOAD_KEYS_SECRET.into()),
                items: Some(vec![KeyToPath {
                    key: PAYLOAD_KEYS_KEY.into(),
                    path: payload_keys_file.into(),
                    mode: Some(0o400),
                    user: None,
                }]),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource { size_limit: Some(quantity("64Mi")), ..Default::default() }),
            ..Default::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount { name: "config".into(), mount_path: CONFIG_DIR.into(), read_only: Some(true), ..Default::default() },
        VolumeMount { name: "token".into(), mount_path: token_dir.into(), read_only: Some(true), ..Default::default() },
        VolumeMount { name: "payload-keys".into(), mount_path: payload_keys_dir.into(), read_only: Some(true), ..Default::default() },
        VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..Default::default() },
    ];
    if bot.spec.ingress.mode == IngressMode::Webhook {
        volumes.push(Volume {
            name: "webhook-secret".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(n.webhook_secret.clone()),
                items: Some(vec![KeyToPath { key: WEBHOOK_SECRET_KEY.into(), path: webhook_file.into(), mode: Some(0o400), user: None }]),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "webhook-secret".into(),
            mount_path: webhook_dir.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let container = Container {
        name: "bot-runtime".into(),
        image: Some(bot.spec.image.clone().unwrap_or_else(|| settings.runtime_image.clone())),
        args: Some(vec!["serve".into(), "--config".into(), format!("{CONFIG_DIR}/{CONFIG_KEY}")]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: RUNTIME_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        env: Some(
            vec![
                secret_env("DATABASE_URL", &settings.database_secret),
                secret_env("REDIS_URL", &settings.redis_secret),
                EnvVar { name: "TELEGRAM_API_URL".into(), value: Some(settings.telegram_api_url.clone()), ..Default::default() },
                EnvVar { name: "BOT_NAME".into(), value: Some(name.clone()), ..Default::default() },
            ]
            .into_iter()
            .chain(settings.runtime.env())
            .collect(),
        ),
        volume_mounts: Some(mounts),
        resources: Some(resources(bot)),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        // A runtime that cannot start says why in its last log lines (its fatal error); the
        // kubelet keeps them as the termination message, which the operator reports.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = PodSpec {
        // Runtimes never talk to the Kubernetes API.
        automount_service_account_token: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            fs_group: Some(65532),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
            ..Default::default()
        }),
        containers: vec![container],
        volumes: Some(volumes),
        termination_grace_period_seconds: Some(30),
        ..Default::default()
    };
    // With autoscaling the HPA owns the replica count: `build` hands it over (see
    // `autoscaled_replicas`), so server-side apply neither fights it nor resets it to 1.
    let replicas = if bot.spec.autoscaling.is_some() { None } else { Some(bot.spec.replicas.unwrap_or(1)) };
    Deployment {
        metadata: meta(bot, &n.runtime, pool),
        spec: DeploymentSpec {
            replicas,
            selector: LabelSelector { match_labels: Some(selector_labels(&name)), ..Default::default() },
            // Zero downtime: a new pod must be ready before an old one goes.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels(&name, pool)), annotations: Some(pod_annotations), ..Default::default() }),
                spec: Some(pod),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

fn service(bot: &BotInstance, n: &Names, pool: &str) -> Service {
    Service {
        metadata: meta(bot, &n.runtime, pool),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(&bot_name(bot))),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: RUNTIME_PORT,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn autoscaler(bot: &BotInstance, n: &Names, pool: &str) -> Option<HorizontalPodAutoscaler> {
    let a = bot.spec.autoscaling.as_ref()?;
    Some(HorizontalPodAutoscaler {
        metadata: meta(bot, &n.runtime, pool),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: n.runtime.clone(),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(a.target_cpu_utilization),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Only when more than one replica can run: one pod may be evicted at a time. (With a
/// single replica a budget would either block node drains or protect nothing.)
fn disruption_budget(bot: &BotInstance, n: &Names, pool: &str) -> Option<PodDisruptionBudget> {
    let max = match &bot.spec.autoscaling {
        Some(a) => a.max_replicas,
        None => bot.spec.replicas.unwrap_or(1),
    };
    (max > 1).then(|| PodDisruptionBudget {
        metadata: meta(bot, &n.runtime, pool),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(selector_labels(&bot_name(bot))), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Ingress to the runtime pods only from who needs it: the metrics scrapers, and in webhook
/// mode the ingress controller (both on the one `http` port). With neither, all ingress is
/// denied. Egress is not restricted (Telegram, Postgres and Redis addresses vary too much).
fn network_policy(bot: &BotInstance, n: &Names, pool: &str, np: &NetworkPolicySettings) -> NetworkPolicy {
    let http =
        || vec![NetworkPolicyPort { port: Some(IntOrString::String("http".into())), protocol: Some("TCP".into()), ..Default::default() }];
    let mut rules = Vec::new();
    if !np.metrics.is_empty() {
        rules.push(NetworkPolicyIngressRule { from: Some(np.metrics.clone()), ports: Some(http()) });
    }
    if bot.spec.ingress.mode == IngressMode::Webhook && !np.webhook.is_empty() {
        rules.push(NetworkPolicyIngressRule { from: Some(np.webhook.clone()), ports: Some(http()) });
    }
    NetworkPolicy {
        metadata: meta(bot, &n.runtime, pool),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector { match_labels: Some(selector_labels(&bot_name(bot))), ..Default::default() }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(rules),
            ..Default::default()
        }),
    }
}

pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"), "servicemonitors")
}

fn service_monitor(bot: &BotInstance, n: &Names, pool: &str, extra_labels: &BTreeMap<String, String>) -> DynamicObject {
    let mut obj = DynamicObject::new(&n.runtime, &service_monitor_resource());
    obj.metadata = meta(bot, &n.runtime, pool);
    // The operator's own labels win: its watches and selectors depend on them.
    let labels = obj.metadata.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in extra_labels {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    obj.data = json!({
        "spec": {
            "selector": {"matchLabels": selector_labels(&bot_name(bot))},
            "jobLabel": SCRAPE_JOB_LABEL,
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}],
        }
    });
    obj
}

#[cfg(test)]
mod tests {
    use super::*;
    use botfleet_crds::bot_instance::Autoscaling;
    use botfleet_crds::resolve::resolve;

    fn bot(yaml: &str) -> BotInstance {
        let mut b: BotInstance = serde_yaml::from_str(yaml).unwrap();
        b.metadata.namespace = Some("demo".into());
        b.metadata.uid = Some("uid-1".into());
        b
    }

    #[test]
    fn scaling_to_zero_retires_running_pods_for_the_drain_then_stops() {
        use std::time::Duration;
        let drain = Duration::from_secs(90);
        let now: jiff::Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
        let mut b = alpha();
        b.spec.autoscaling = None;
        b.spec.replicas = Some(2);
        assert_eq!(scale_down(&b, 2, None, drain, now), ScaleDown::No);
        b.spec.replicas = Some(0);
        assert_eq!(scale_down(&b, 2, None, drain, now), ScaleDown::Retire { keep: 2, left: drain, start: true });
        let since: jiff::Timestamp = "2026-11-22T11:59:30Z".parse().unwrap();
        assert_eq!(scale_down(&b, 2, Some(since), drain, now), ScaleDown::Retire { keep: 2, left: Duration::from_secs(60), start: false });
        let long_ago: jiff::Timestamp = "2026-11-22T11:50:00Z".parse().unwrap();
        assert_eq!(scale_down(&b, 2, Some(long_ago), drain, now), ScaleDown::Stop);
        assert_eq!(scale_down(&b, 0, None, drain, now), ScaleDown::Stop, "no pods: nothing to drain");
    }

    #[test]
    fn names_and_resources_the_api_server_would_refuse_are_caught_before_anything_is_applied() {
        let mut b = alpha();
        assert_eq!(validate(&b), Ok(()));
        for bad in ["a.b", "9lives", &"x".repeat(56)] {
            b.metadata.name = Some(bad.to_string());
            assert!(validate(&b).is_err(), "{bad}");
        }
        b.metadata.name = Some("x".repeat(55));
        assert_eq!(validate(&b), Ok(()), "55 characters fit: <name>-runtime is 63");
        b.metadata.name = Some("alpha".into());
        b.spec.resources = serde_json::from_value(serde_json::json!({"memoryRequest": "256Mi"})).unwrap();
        assert!(validate(&b).unwrap_err().contains("memoryLimit"));
        b.spec.resources = serde_json::from_value(serde_json::json!({"memoryRequest": "256Mi", "memoryLimit": "1Gi"})).unwrap();
        assert_eq!(validate(&b), Ok(()));
        b.spec.resources = serde_json::from_value(serde_json::json!({"cpuRequest": "1.5", "cpuLimit": "500m"})).unwrap();
        assert!(validate(&b).unwrap_err().contains("cpuLimit"));
        b.spec.resources = serde_json::from_value(serde_json::json!({"cpuRequest": "250m", "cpuLimit": "0.5"})).unwrap();
        assert_eq!(validate(&b), Ok(()));
    }

    fn alpha() -> BotInstance {
        bot(r#"
apiVersion: botfleet.io/v1alpha1
kind: BotInstance
metadata: {name: alpha}
spec:
  tokenSecretRef: {name: alpha-token}
  ingress: {mode: Webhook, publicUrl: "https://bots.example.com/"}
  replicas: 3
  pool: eu-chat
  admins: {telegramIds: [1]}
"#)
    }

    fn settings() -> Settings {
        Settings {
            runtime_image: "ghcr.io/botfleet/bot-runtime:1.0".into(),
            allowed_images: vec!["ghcr.io/botfleet/bot-runtime".into(), "registry.local/".into()],
            service_monitor_labels: BTreeMap::from([
                ("release".into(), "kube-prometheus-stack".into()),
                ("app.kubernetes.io/managed-by".into(), "someone-else".into()),
            ]),
            network_policy: None,
            database_secret: SecretRef { name: "botfleet-db".into(), key: "url".into() },
            redis_secret: SecretRef { name: "botfleet-redis".into(), key: "url".into() },
            telegram_api_url: "https://api.telegram.org".into(),
            runtime: Default::default(),
        }
    }

    fn desired(b: &BotInstance, monitor: bool) -> Desired {
        desired_with(b, monitor, &settings())
    }

    fn desired_with(b: &BotInstance, monitor: bool, settings: &Settings) -> Desired {
        let r = resolve(b, &[], &[], &[], "2026-01-01T00:00:00Z".parse().unwrap()).unwrap();
        let yaml = serde_yaml::to_string(&r.config).unwrap();
        let rollout = Rollout {
            token_fingerprint: "sha256:aaaaaaaaaaaa".into(),
            webhook_secret_fingerprint: Some("sha256:bbbbbbbbbbbb".into()),
            payload_keys_fingerprint: "sha256:dddddddddddd".into(),
        };
        let input = BuildInputs {
            config: &r.config,
            config_yaml: &yaml,
            hash: &r.hash,
            token: "123:abc",
            rollout: &rollout,
            new_webhook_secret: None,
            scale_down: ScaleDown::No,
            with_monitor: monitor,
            existing_deployment: None,
        };
        build(b, &input, settings)
    }

    #[test]
    fn every_object_is_owned_by_the_bot_and_labelled_with_its_pool() {
        let d = desired(&alpha(), true);
        let metas = [
            &d.config_map.metadata,
            &d.deployment.metadata,
            &d.service.metadata,
            &d.disruption_budget.as_ref().unwrap().metadata,
            &d.service_monitor.as_ref().unwrap().metadata,
        ];
        for m in metas {
            let o = &m.owner_references.as_ref().unwrap()[0];
            assert_eq!((o.kind.as_str(), o.name.as_str(), o.uid.as_str(), o.controller), ("BotInstance", "alpha", "uid-1", Some(true)));
            assert_eq!(m.namespace.as_deref(), Some("demo"));
            assert_eq!(m.labels.as_ref().unwrap()["botfleet.io/pool"], "eu-chat");
        }
    }

    #[test]
    fn runtime_pods_are_locked_down() {
        let d = desired(&alpha(), false);
        let pod = d.deployment.spec.template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let psc = pod.security_context.unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let c = &pod.containers[0];
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
        assert_eq!(c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/healthz"));
        assert_eq!(c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/readyz"));
        assert_eq!(c.termination_message_policy.as_deref(), Some("FallbackToLogsOnError"), "a failed start says why");
        let res = c.resources.clone().unwrap();
        assert_eq!(res.requests.unwrap()["memory"].0, "64Mi");
    }

    #[test]
    fn secrets_reach_the_pod_as_files_and_env_references_never_values() {
        let d = desired(&alpha(), false);
        let pod = d.deployment.spec.template.spec.unwrap();
        let env = pod.containers[0].env.clone().unwrap();
        let db = env.iter().find(|e| e.name == "DATABASE_URL").unwrap();
        assert!(db.value.is_none());
        assert_eq!(db.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().name, "botfleet-db");
        let vols = pod.volumes.unwrap();
        let token = vols.iter().find(|v| v.name == "token").unwrap().secret.clone().unwrap();
        assert_eq!(token.secret_name.as_deref(), Some("alpha-runtime-token"), "the validated copy, not the user's Secret");
        assert_eq!(token.items.unwrap()[0].key, "token");
        assert!(vols.iter().any(|v| v.name == "webhook-secret"));
        assert!(vols.iter().find(|v| v.name == "config").unwrap().config_map.is_some());
    }

    #[test]
    fn every_pod_mounts_the_namespaces_payload_keys_and_the_configuration_names_the_file() {
        let d = desired(&alpha(), false);
        let pod = d.deployment.spec.template.spec.clone().unwrap();
        let vol = pod.volumes.unwrap().into_iter().find(|v| v.name == "payload-keys").unwrap().secret.unwrap();
        assert_eq!(vol.secret_name.as_deref(), Some(PAYLOAD_KEYS_SECRET), "one Secret for the namespace, not per bot");
        assert_eq!(vol.items.unwrap()[0].key, PAYLOAD_KEYS_KEY);
        let mount = pod.containers[0].volume_mounts.clone().unwrap().into_iter().find(|m| m.name == "payload-keys").unwrap();
        let (dir, file) = PAYLOAD_KEY_FILE.rsplit_once('/').unwrap();
        assert_eq!((mount.mount_path.as_str(), mount.read_only), (dir, Some(true)));
        assert_eq!(file, PAYLOAD_KEYS_KEY);
        let annotations = d.deployment.spec.template.metadata.unwrap().annotations.unwrap();
        assert_eq!(annotations[PAYLOAD_KEYS_ANNOTATION], "sha256:dddddddddddd", "an edited key file rolls the pods");

        let r = resolve(&alpha(), &[], &[], &[], "2026-01-01T00:00:00Z".parse().unwrap()).unwrap();
        assert_eq!(r.config.bot.secrets.payload_key_file, None, "the resolver (and local mode) names no file");
        let (config, hash) = runtime_config(r.config.clone(), ScaleDown::No, None);
        assert_eq!(config.bot.secrets.payload_key_file.as_deref(), Some(PAYLOAD_KEY_FILE));
        assert_eq!(hash, config.hash());
        assert_ne!(hash, r.hash);
    }

    #[test]
    fn the_payload_key_secret_is_the_operators_but_owned_by_no_bot() {
        let keys = PayloadKeys::generate().unwrap();
        let s = payload_keys_secret("demo", &keys);
        assert_eq!((s.metadata.name.as_deref(), s.metadata.namespace.as_deref()), (Some(PAYLOAD_KEYS_SECRET), Some("demo")));
        assert!(s.metadata.owner_references.is_none(), "it outlives every bot");
        assert_eq!(s.metadata.labels.as_ref().unwrap()[MANAGED_BY.0], MANAGED_BY.1, "watched, and the admission policy knows it");
        assert_eq!(s.string_data.as_ref().unwrap()[PAYLOAD_KEYS_KEY], keys.expose());
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
    }

    #[test]
    fn a_payload_key_secret_is_used_only_with_the_shape_the_runtime_needs() {
        use k8s_openapi::ByteString;
        let secret = |type_: &str, key: &str, value: &[u8]| Secret {
            type_: Some(type_.into()),
            data: Some(BTreeMap::from([(key.to_string(), ByteString(value.to_vec()))])),
            ..Default::default()
        };
        let good = format!("# rotated 2026-11\n{}\n{}\n", "a".repeat(64), "b".repeat(32));
        let keys = payload_keys_in(&secret("Opaque", PAYLOAD_KEYS_KEY, good.as_bytes())).unwrap();
        assert_eq!((keys.count(), keys.expose()), (2, good.as_str()), "a Secret an admin made is used as it is");
        for (what, s, says) in [
            ("another type", secret("kubernetes.io/tls", PAYLOAD_KEYS_KEY, good.as_bytes()), "not Opaque"),
            ("another key", secret("Opaque", "tls.key", good.as_bytes()), "has no key \"keys\""),
            ("a short key", secret("Opaque", PAYLOAD_KEYS_KEY, b"hunter2\n"), "shorter than 32 bytes"),
            ("no key at all", secret("Opaque", PAYLOAD_KEYS_KEY, b"# todo\n"), "holds no key"),
        ] {
            let why = payload_keys_in(&s).unwrap_err();
            assert!(why.contains(says) && why.contains(PAYLOAD_KEYS_SECRET), "{what}: {why}");
        }
    }

    #[test]
    fn token_changes_roll_pods_but_config_changes_do_not() {
        let d = desired(&alpha(), false);
        let ann = d.deployment.spec.template.metadata.unwrap().annotations.unwrap();
        assert_eq!(ann[TOKEN_ANNOTATION], "sha256:aaaaaaaaaaaa");
        assert!(!ann.contains_key(CONFIG_HASH_ANNOTATION), "config is hot-reloaded, not rolled");
        assert!(d.config_map.metadata.annotations.unwrap()[CONFIG_HASH_ANNOTATION].starts_with("sha256:"));
    }

    #[test]
    fn rolling_updates_never_drop_below_the_desired_count() {
        let d = desired(&alpha(), false);
        let ru = d.deployment.spec.strategy.unwrap().rolling_update.unwrap();
        assert_eq!(ru.max_unavailable, Some(IntOrString::Int(0)));
    }

    #[test]
    fn fixed_replicas_get_a_budget_and_no_autoscaler() {
        let d = desired(&alpha(), false);
        assert_eq!(d.deployment.spec.replicas, Some(3));
        assert!(d.autoscaler.is_none());
        assert_eq!(d.disruption_budget.unwrap().spec.unwrap().max_unavailable, Some(IntOrString::Int(1)));
    }

    #[test]
    fn one_replica_gets_no_disruption_budget() {
        let mut b = alpha();
        b.spec.replicas = Some(1);
        assert!(desired(&b, false).disruption_budget.is_none());
        b.spec.replicas = None;
        assert!(desired(&b, false).disruption_budget.is_none(), "default is one replica");
    }

    #[test]
    fn autoscaling_hands_the_replica_count_to_the_autoscaler() {
        let mut b = alpha();
        b.spec.replicas = None;
        b.spec.autoscaling = Some(Autoscaling { min_replicas: 2, max_replicas: 8, target_cpu_utilization: 60 });
        let d = desired(&b, false);
        assert_eq!(d.deployment.spec.replicas, Some(2), "a new Deployment starts at minReplicas");
        let hpa = d.autoscaler.unwrap().spec;
        assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(2), 8));
        assert_eq!(hpa.scale_target_ref.name, "alpha-runtime");
        assert_eq!(hpa.metrics.unwrap()[0].resource.as_ref().unwrap().target.average_utilization, Some(60));
        assert!(d.disruption_budget.is_some());
    }

    #[test]
    fn switching_to_autoscaling_keeps_the_current_count_until_the_autoscaler_owns_it() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
        let a = Autoscaling { min_replicas: 2, max_replicas: 8, target_cpu_utilization: 60 };
        let entry = |manager: &str, fields: serde_json::Value| ManagedFieldsEntry {
            manager: Some(manager.into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        };
        let deployment = |replicas: i32, managers: Vec<ManagedFieldsEntry>| Deployment {
            metadata: ObjectMeta { managed_fields: Some(managers), ..Default::default() },
            spec: DeploymentSpec { replicas: Some(replicas), ..Default::default() },
            ..Default::default()
        };
        let ours = entry(FIELD_MANAGER, json!({"f:spec": {"f:replicas": {}, "f:template": {}}}));
        // Fixed at 4, now autoscaled: 4 stays (never the default 1), and we keep owning it.
        assert_eq!(autoscaled_replicas(&a, Some(&deployment(4, vec![ours.clone()]))), Some(4));
        // Outside the new bounds: clamped, as the HPA would.
        assert_eq!(autoscaled_replicas(&a, Some(&deployment(12, vec![ours.clone()]))), Some(8));
        assert_eq!(autoscaled_replicas(&a, Some(&deployment(1, vec![ours.clone()]))), Some(2));
        // The HPA controller has written the scale subresource: it owns the field; we let go.
        let hpa = entry("kube-controller-manager", json!({"f:spec": {"f:replicas": {}}}));
        assert_eq!(autoscaled_replicas(&a, Some(&deployment(5, vec![ours.clone(), hpa]))), None);
        // Someone else owning other fields does not count.
        let other = entry("kubectl-annotate", json!({"f:metadata": {"f:annotations": {}}}));
        assert_eq!(autoscaled_replicas(&a, Some(&deployment(3, vec![ours, other]))), Some(3));
        assert_eq!(autoscaled_replicas(&a, None), Some(2), "a new Deployment starts at minReplicas");
    }

    #[test]
    fn the_network_policy_is_off_by_default_and_admits_only_scrapers_and_the_ingress_controller() {
        assert!(desired(&alpha(), false).network_policy.is_none(), "off unless the operator was installed with it");
        let peer = |ns: &str| -> NetworkPolicyPeer {
            serde_json::from_value(json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}})).unwrap()
        };
        let np = NetworkPolicySettings { metrics: vec![peer("monitoring")], webhook: vec![peer("ingress-nginx")] };
        let s = Settings { network_policy: Some(np.clone()), ..settings() };
        let policy = |b: &BotInstance| {
            let r = resolve(b, &[], &[], &[], "2026-01-01T00:00:00Z".parse().unwrap()).unwrap();
            let rollout = Rollout {
                token_fingerprint: "sha256:a".into(),
                webhook_secret_fingerprint: None,
                payload_keys_fingerprint: "sha256:d".into(),
            };
            let input = BuildInputs {
                config: &r.config,
                config_yaml: "",
                hash: &r.hash,
                token: "1:a",
                rollout: &rollout,
                new_webhook_secret: None,
                scale_down: ScaleDown::No,
                with_monitor: false,
                existing_deployment: None,
            };
            build(b, &input, &s).network_policy.unwrap().spec.unwrap()
        };
        let spec = policy(&alpha());
        assert_eq!(spec.pod_selector.unwrap().match_labels.unwrap(), selector_labels("alpha"), "this bot's pods only");
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
        let rules = spec.ingress.unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].from.as_ref().unwrap()[0], peer("monitoring"));
        assert_eq!(rules[1].from.as_ref().unwrap()[0], peer("ingress-nginx"));
        for r in &rules {
            assert_eq!(r.ports.as_ref().unwrap()[0].port, Some(IntOrString::String("http".into())));
        }
        let mut polling = alpha();
        polling.spec.ingress.mode = IngressMode::Polling;
        assert_eq!(policy(&polling).ingress.unwrap().len(), 1, "a polling bot receives no webhook traffic");
    }

    #[test]
    fn polling_bots_have_no_webhook_secret_or_url() {
        let mut b = alpha();
        b.spec.ingress.mode = IngressMode::Polling;
        b.spec.ingress.public_url = None;
        assert_eq!(webhook_url(&b), None);
        let pod = desired(&b, false).deployment.spec.template.spec.unwrap();
        assert!(!pod.volumes.unwrap().iter().any(|v| v.name == "webhook-secret"));
    }

    #[test]
    fn webhook_url_is_the_public_url_plus_the_bots_path() {
        assert_eq!(webhook_url(&alpha()).as_deref(), Some("https://bots.example.com/telegram/alpha"));
    }

    #[test]
    fn service_monitor_only_when_asked_and_it_scrapes_metrics() {
        assert!(desired(&alpha(), false).service_monitor.is_none());
        let sm = desired(&alpha(), true).service_monitor.unwrap();
        assert_eq!(sm.types.as_ref().unwrap().kind, "ServiceMonitor");
        assert_eq!(sm.data["spec"]["endpoints"][0]["path"], "/metrics");
        assert_eq!(sm.data["spec"]["jobLabel"], SCRAPE_JOB_LABEL);
        let labels = sm.metadata.labels.unwrap();
        assert_eq!(labels["release"], "kube-prometheus-stack", "the labels Prometheus selects by, from the values");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "botfleet-operator", "ours are not overridden");
        assert_eq!(desired(&alpha(), false).service.metadata.labels.unwrap()[SCRAPE_JOB_LABEL], RUNTIME_JOB);
    }

    #[test]
    fn only_the_installed_image_and_the_allow_list_may_run() {
        let mut b = alpha();
        let s = settings();
        assert_eq!(allowed_image(&b, &s).as_deref(), Ok("ghcr.io/botfleet/bot-runtime:1.0"), "no spec.image: the installed one");
        for ok in [
            "ghcr.io/botfleet/bot-runtime:1.0",
            "ghcr.io/botfleet/bot-runtime:dev",
            "ghcr.io/botfleet/bot-runtime@sha256:abcd",
            "registry.local/anything/here:1",
            "registry.local/x",
        ] {
            b.spec.image = Some(ok.into());
            assert_eq!(allowed_image(&b, &s).as_deref(), Ok(ok), "{ok}");
        }
        for bad in [
            "ghcr.io/botfleet/bot-runtime-evil:1",
            "ghcr.io/botfleet/bot-runtime/sub:1",
            "docker.io/library/busybox:latest",
            "registry.local:5000/x:1",
            "registry.localhost/x:1",
        ] {
            b.spec.image = Some(bad.into());
            assert!(allowed_image(&b, &s).unwrap_err().contains("not allowed"), "{bad}");
        }
        let only_installed = Settings { allowed_images: vec![], ..settings() };
        b.spec.image = Some("ghcr.io/botfleet/bot-runtime:dev".into());
        assert!(allowed_image(&b, &only_installed).is_err(), "an empty list allows only the installed image");
        assert_eq!(repository("registry:5000/a/b:1.2@sha256:ff"), "registry:5000/a/b");
        assert_eq!(repository("registry:5000/a/b"), "registry:5000/a/b");
    }

    #[test]
    fn objects_the_bot_did_not_create_are_never_taken_over() {
        let b = alpha();
        let d = desired(&b, true);
        let ours = d.config_map.metadata.clone();
        let foreign = ObjectMeta { name: Some("alpha-config".into()), ..Default::default() };
        let other_bot = ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                uid: "uid-of-an-older-alpha".into(),
                ..ours.owner_references.clone().unwrap()[0].clone()
            }]),
            ..ours.clone()
        };
        assert!(owned_by(&ours, &b));
        assert!(!owned_by(&foreign, &b) && !owned_by(&other_bot, &b));
        let none = Existing::default();
        assert!(foreign_objects(&b, &d, &none).is_empty(), "nothing exists: everything is created");
        let existing = Existing { config_map: Some(ours.clone()), service: Some(ours.clone()), ..Default::default() };
        assert!(foreign_objects(&b, &d, &existing).is_empty(), "our own objects are applied");
        let existing = Existing { config_map: Some(foreign.clone()), service_monitor: Some(other_bot), ..Default::default() };
        assert_eq!(foreign_objects(&b, &d, &existing), ["ConfigMap \"alpha-config\"", "ServiceMonitor \"alpha-runtime\""]);
        // An object the bot no longer wants (no HPA with fixed replicas) is not its business.
        let existing = Existing { autoscaler: Some(foreign), ..Default::default() };
        assert!(foreign_objects(&b, &d, &existing).is_empty());
    }

    /// Same-name bots in two namespaces are two bots to the runtime: the resolved
    /// configuration carries the namespace (the runtime's ids are `<namespace>/<name>`).
    #[test]
    fn same_name_bots_in_two_namespaces_get_distinct_identities() {
        let mut a = alpha();
        a.metadata.namespace = Some("team-a".into());
        let mut b = alpha();
        b.metadata.namespace = Some("team-b".into());
        let (da, db) = (desired(&a, false), desired(&b, false));
        let config = |d: &Desired| {
            let yaml = &d.config_map.data.as_ref().unwrap()[CONFIG_KEY];
            serde_yaml::from_str::<ResolvedBotConfig>(yaml).unwrap()
        };
        let (ca, cb) = (config(&da), config(&db));
        assert_eq!((ca.bot.namespace.as_str(), ca.bot.name.as_str()), ("team-a", "alpha"));
        assert_eq!((cb.bot.namespace.as_str(), cb.bot.name.as_str()), ("team-b", "alpha"));
        assert_ne!(ca.hash(), cb.hash());
        assert_eq!(da.config_map.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(db.deployment.metadata.namespace.as_deref(), Some("team-b"));
    }

    #[test]
    fn the_image_can_be_overridden_per_bot() {
        let mut b = alpha();
        assert_eq!(
            desired(&b, false).deployment.spec.template.spec.unwrap().containers[0].image.as_deref(),
            Some("ghcr.io/botfleet/bot-runtime:1.0")
        );
        b.spec.image = Some("registry.local/runtime:dev".into());
        assert_eq!(
            desired(&b, false).deployment.spec.template.spec.unwrap().containers[0].image.as_deref(),
            Some("registry.local/runtime:dev")
        );
    }

    /// The chart's fleet-wide runtime settings reach every bot's pods as environment, and
    /// nothing is set that the chart left unset (the runtime's defaults hold).
    #[test]
    fn fleet_runtime_settings_become_the_pods_environment() {
        let env_of = |settings: &Settings| -> Vec<(String, Option<String>)> {
            let d = desired_with(&alpha(), false, settings);
            let env = d.deployment.spec.template.spec.unwrap().containers[0].env.clone().unwrap();
            env.into_iter().map(|e| (e.name, e.value)).collect()
        };
        let plain = env_of(&settings());
        assert!(!plain.iter().any(|(n, _)| n.starts_with("MEDIA_") || n == "DATABASE_POOL_SIZE" || n == "EGRESS_BACKLOG_SECONDS"));
        let runtime: RuntimeSettings =
            serde_json::from_str(r#"{"databasePoolSize": 4, "mediaBudgetMib": 512, "mediaUserMib": 50, "mediaUserWindowMinutes": 30, "mediaRelaysPerProcess": 2, "egressBacklogSeconds": 5}"#)
                .unwrap();
        let env = env_of(&Settings { runtime, ..settings() });
        for (name, value) in [
            ("DATABASE_POOL_SIZE", "4"),
            ("MEDIA_BUDGET_MIB", "512"),
            ("MEDIA_USER_MIB", "50"),
            ("MEDIA_USER_WINDOW_MINUTES", "30"),
            ("MEDIA_RELAYS_PER_PROCESS", "2"),
            ("EGRESS_BACKLOG_SECONDS", "5"),
        ] {
            assert!(env.contains(&(name.to_string(), Some(value.to_string()))), "{name}={value} in {env:?}");
        }
        assert!(serde_json::from_str::<RuntimeSettings>(r#"{"mediaBudget": 5}"#).is_err(), "an unknown setting is refused");
    }
}
