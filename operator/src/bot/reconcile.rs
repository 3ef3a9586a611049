//! Thin: a typed pipeline around the pure steps of `build` and `status`. The order of API
//! calls is fixed (tests script it exactly):
//!
//! 0. finalizer (added on first sight; on deletion: retire, deleteWebhook, then removed)
//! 1. validate (pure: `build::validate`, the resolver) — a failure stops here: status only
//! 2. GET the token Secret → getMe when the token changed or was never validated
//! 3. GET the namespace's payload-key Secret, POSTed when absent (shared by the namespace's
//!    bots and owned by none, so it is not part of a bot's `Desired`: it is created once, never
//!    applied); GET the webhook-secret Secret (webhook mode); GET the ServiceMonitor CRD
//!    (cached 5 min)
//! 4. build (pure): one `Desired` value
//! 5. apply every object of it: the new webhook Secret, the validated-token copy, ConfigMap,
//!    Service, Deployment; HPA and PDB applied or deleted; ServiceMonitor
//! 6. setWebhook when the URL, secret or token changed; getWebhookInfo (or deleteWebhook
//!    when a webhook bot switched to polling)
//! 7. PATCH status, computed by `status::applied` / `status::blocked` (pure); Events for every
//!    change and failure along the way

use std::sync::Arc;
use std::time::Duration;

use botfleet_crds::bot_instance::{BotInstance, BotInstanceStatus, IngressMode, WebhookStatus};
use botfleet_crds::common::ConditionStatus;
use botfleet_crds::payload_keys::PayloadKeys;
use botfleet_crds::resolve::{Resolution, resolve};
use botfleet_crds::token::{BotToken, fingerprint};
use botfleet_crds::webhook::WebhookSecret;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::build::{self, BuildInputs, Desired, Existing, PAYLOAD_KEYS_SECRET, Rollout, WEBHOOK_SECRET_KEY, build, names, webhook_url};
use super::fleet;
use super::status::{self, Applied, Blocked, Cond, Identity, RETRY_SOON, Webhook};
use crate::context::{Context, Inputs};
use crate::error::Error;
use crate::status::{is_true, set_condition};
use crate::telegram::{TelegramError, WebhookRegistration};

pub const FINALIZER: &str = "botfleet.io/webhook";
pub use super::build::FIELD_MANAGER;
/// What Telegram should send us: the one list the runtime also polls for.
pub use botfleet_crds::webhook::ALLOWED_UPDATES;

const RESYNC: Duration = Duration::from_secs(300);

pub async fn reconcile(bot: Arc<BotInstance>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = bot.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<BotInstance> = Api::namespaced(ctx.client.clone(), &ns);
    let name = bot.name_any();
    let started = std::time::Instant::now();
    let result = finalizer(&api, FINALIZER, bot, |event| async {
        match event {
            Event::Apply(bot) => apply(bot, &ctx).await,
            Event::Cleanup(bot) => cleanup(bot, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.finish("BotInstance", Some(&ns), &name, started, &result);
    result
}

/// A token read from its Secret, and whether that Secret carries [`build::TOKEN_SECRET_LABEL`].
struct ReadToken {
    token: BotToken,
    watched: bool,
}

/// Why the token cannot be used, as a condition reason and message.
struct TokenProblem {
    reason: &'static str,
    message: String,
}

async fn read_token(ctx: &Context, ns: &str, bot: &BotInstance) -> Result<Result<ReadToken, TokenProblem>, Error> {
    let r = &bot.spec.token_secret_ref;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let Some(secret) = secrets.get_opt(&r.name).await? else {
        return Ok(Err(TokenProblem {
            reason: "SecretNotFound",
            message: format!("Secret {:?} does not exist in namespace {ns:?}", r.name),
        }));
    };
    let raw = secret.data.as_ref().and_then(|d| d.get(&r.key)).map(|b| String::from_utf8_lossy(&b.0).into_owned());
    let Some(raw) = raw else {
        return Ok(Err(TokenProblem { reason: "SecretKeyMissing", message: format!("Secret {:?} has no key {:?}", r.name, r.key) }));
    };
    let watched = secret.metadata.labels.as_ref().and_then(|l| l.get(build::TOKEN_SECRET_LABEL)).is_some_and(|v| v == "true");
    Ok(BotToken::parse(&raw).map(|token| ReadToken { token, watched }).map_err(|_| TokenProblem {
        reason: "TokenMalformed",
        message: format!("key {:?} of Secret {:?} does not hold a bot token (<id>:<secret>)", r.key, r.name),
    }))
}

async fn publish(ctx: &Context, bot: &BotInstance, type_: EventType, reason: &str, action: &str, note: String) {
    let event = KubeEvent { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
    if let Err(e) = ctx.recorder().publish(&event, &bot.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot publish event");
    }
}

async fn patch_status(ctx: &Context, ns: &str, bot: &BotInstance, status: &BotInstanceStatus) -> Result<(), Error> {
    // The fleet-wide gauge follows every status we write, early exits included.
    ctx.metrics.bot_conditions(ns, &bot.name_any(), &status.conditions);
    let api: Api<BotInstance> = Api::namespaced(ctx.client.clone(), ns);
    api.patch_status(&bot.name_any(), &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
    Ok(())
}

async fn apply_object<K>(api: &Api<K>, name: &str, object: &K) -> Result<K, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    Ok(api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await?)
}

/// Deletes an object the bot no longer needs (an HPA after autoscaling was switched off).
async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The pipeline: validate (pure) → the token (read, getMe) → the reads `build` needs → build
/// (pure) → apply every object of the one `Desired` → the webhook → status (pure).
async fn apply(bot: Arc<BotInstance>, ctx: &Context) -> Result<Action, Error> {
    let ns = bot.namespace().ok_or(Error::MissingNamespace)?;
    let now = ctx.now();
    let generation = bot.metadata.generation.unwrap_or(0);
    let previous = bot.status.clone().unwrap_or_default();

    // 1. Validate (pure): what the API server would refuse, or the resolver cannot resolve.
    let inputs = ctx.inputs();
    let resolution = match validate(&bot, &ctx.settings, &inputs, now) {
        Ok(r) => r,
        Err(b) => return stop(ctx, &ns, &bot, &previous, b, Action::await_change()).await,
    };

    // 2. The token: read, and validated with Telegram whenever it is new.
    let token = match check_token(ctx, &ns, &bot, &previous).await? {
        Ok(t) => t,
        Err((b, wait)) => return stop(ctx, &ns, &bot, &previous, b, Action::requeue(wait)).await,
    };

    // One Telegram bot, one BotInstance (in any watched namespace): a second one is not deployed.
    if let Some(id) = token.bot_id
        && let Some(first) = fleet::duplicate_of(&bot, id, &ctx.fleet.bots())
    {
        let why = format!(
            "the token belongs to Telegram bot {id}, which BotInstance {first} already runs: nothing is deployed for this one (two deployments of one bot would fight over its webhook and updates)"
        );
        let blocked = Blocked { bot_id: Some(id), ..Blocked::not_ready("DuplicateBot", why) };
        return stop(ctx, &ns, &bot, &previous, blocked, Action::requeue(Duration::from_secs(60))).await;
    }

    // 3. What the build needs from the cluster: the namespace's payload keys first.
    let payload_keys = match payload_keys(ctx, &ns, &bot).await? {
        Ok(keys) => keys,
        Err(b) => return stop(ctx, &ns, &bot, &previous, b, Action::requeue(Duration::from_secs(60))).await,
    };
    let name = bot.name_any();
    let pool = resolution.config.bot.pool.clone();
    let mut existing = Existing::default();
    let webhook_secret = match bot.spec.ingress.mode {
        IngressMode::Webhook => {
            let (found, meta) = read_webhook_secret(ctx, &ns, &bot).await?;
            existing.webhook_secret = meta;
            Some(found)
        }
        IngressMode::Polling => None,
    };
    let with_monitor = ctx.service_monitor_available().await;
    read_existing(ctx, &ns, &name, with_monitor, &mut existing).await?;

    // 4. Build (pure).
    let retiring_since = previous.retiring_since.as_deref().and_then(|s| s.parse::<jiff::Timestamp>().ok());
    let scale_down = build::scale_down(&bot, previous.ready_replicas.unwrap_or(0), retiring_since, RETIRE_DRAIN, now);
    let (config, hash) = build::runtime_config(resolution.config, scale_down, retiring_since);
    let config_yaml = serde_yaml::to_string(&config).map_err(|e| Error::Serialize(e.to_string()))?;
    let rollout = Rollout {
        token_fingerprint: token.fingerprint.clone(),
        webhook_secret_fingerprint: webhook_secret.as_ref().map(|s| fingerprint(s.value.expose())),
        payload_keys_fingerprint: payload_keys.fingerprint(),
    };
    let input = BuildInputs {
        config: &config,
        config_yaml: &config_yaml,
        hash: &hash,
        token: token.token.expose(),
        rollout: &rollout,
        new_webhook_secret: webhook_secret.as_ref().filter(|s| s.generated).map(|s| s.value.expose()),
        scale_down,
        with_monitor,
        existing_deployment: existing.deployment.as_ref(),
    };
    let desired = build(&bot, &input, &ctx.settings);

    // 5. Apply — only objects that are absent or this bot's own: a BotInstance never takes
    // over an object someone else created under the same name.
    let foreign = build::foreign_objects(&bot, &desired, &existing);
    if !foreign.is_empty() {
        let why = format!(
            "{} already exist(s) and not owned by this BotInstance: nothing is applied (BotFleet never takes over objects it did not create); delete or rename them, or rename the bot",
            foreign.join(", ")
        );
        return stop(ctx, &ns, &bot, &previous, Blocked::not_ready("ObjectNotOwned", why), Action::requeue(Duration::from_secs(60))).await;
    }
    let deployment = apply_desired(ctx, &ns, &name, desired, &existing).await?;
    if let build::ScaleDown::Retire { start: true, .. } = scale_down {
        let note = format!("scaled to zero: the pods take the bot's users out of pool {pool:?} for {}s, then stop", RETIRE_DRAIN.as_secs());
        publish(ctx, &bot, EventType::Normal, "Retiring", "ScaleToZero", note).await;
    }
    let was_unwatched = previous.conditions.iter().any(|c| c.type_ == "TokenSecretWatched" && c.reason == "TokenSecretNotLabelled");
    if !token.watched && !was_unwatched {
        publish(ctx, &bot, EventType::Warning, "TokenSecretNotLabelled", "ReadToken", status::token_secret_not_watched().message).await;
    }
    if previous.config_hash.as_deref() != Some(hash.as_str()) {
        let note = format!("configuration {hash} written to ConfigMap {}; runtimes reload it", names(&name).config);
        publish(ctx, &bot, EventType::Normal, "ConfigUpdated", "Resolve", note).await;
    }

    // 6. The webhook.
    let (webhook, webhook_info) = match (webhook_url(&bot), &webhook_secret) {
        (Some(url), Some(secret)) => {
            let unchanged = previous.webhook.as_ref().is_some_and(|w| w.url == url)
                && !secret.generated
                && !token.changed
                && is_true(&previous.conditions, "WebhookRegistered");
            let webhook = if unchanged { Webhook::Kept } else { register_webhook(ctx, &bot, &token.token, &url, &secret.value).await };
            let info = match webhook {
                Webhook::Kept | Webhook::Registered { .. } => webhook_info(ctx, &ns, &name, &token.token).await,
                _ => None,
            };
            (webhook, info)
        }
        _ => {
            // Polling: a webhook left from webhook mode would make every getUpdates fail.
            let removed = previous.webhook.is_none() || {
                match ctx.telegram.delete_webhook(&token.token, false).await {
                    Ok(()) => true,
                    Err(e) => {
                        publish(ctx, &bot, EventType::Warning, "DeleteWebhookFailed", "DeleteWebhook", e.to_string()).await;
                        false
                    }
                }
            };
            (Webhook::Polling { removed }, None)
        }
    };

    // 7. Status (pure).
    let applied = Applied {
        mode: bot.spec.ingress.mode,
        identity: token.identity,
        bot_id: token.bot_id,
        token_secret_watched: token.watched,
        payload_keys: payload_keys.count(),
        config_hash: hash,
        webhook,
        webhook_info,
        scale_down,
        retiring_since: match scale_down {
            build::ScaleDown::Retire { start: true, .. } => Some(now),
            _ => retiring_since,
        },
        ready_replicas: deployment.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
        wanted_replicas: deployment.spec.replicas.unwrap_or(1),
        runtime_failure: runtime_failure(ctx, &ns, &name),
    };
    let (status, soon) = status::applied(&previous, &applied, generation, now);
    patch_status(ctx, &ns, &bot, &status).await?;
    // A runtime that cannot run: one Event per new failure (not per reconcile or restart).
    if let Some(why) = status::new_runtime_failure(&previous, &status) {
        publish(ctx, &bot, EventType::Warning, "RuntimeFailed", "WatchPods", why.to_string()).await;
    }
    let resync = resolution.requeue_at.map(|t| Duration::from_secs(t.duration_since(now).as_secs().max(1) as u64)).unwrap_or(RESYNC);
    Ok(Action::requeue([Some(resync), Some(RESYNC), soon].into_iter().flatten().min().unwrap_or(RESYNC)))
}

/// Why this bot's runtime pods cannot run, from the operator's pod cache (`status::runtime_failure`
/// reads their container statuses).
fn runtime_failure(ctx: &Context, ns: &str, bot: &str) -> Option<String> {
    let selector = build::selector_labels(bot);
    let pods = ctx.stores.pods.state();
    let ours: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            p.metadata.namespace.as_deref() == Some(ns) && selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .map(|p| p.as_ref())
        .collect();
    status::runtime_failure(&ours)
}

/// Step 1 (pure): the objects the API server would refuse (a name too long for the Service,
/// requests above limits) and specs the resolver cannot resolve are reported, nothing applied,
/// until the spec changes.
fn validate(bot: &BotInstance, settings: &build::Settings, inputs: &Inputs, now: jiff::Timestamp) -> Result<Resolution, Blocked> {
    build::validate(bot).map_err(|why| Blocked::not_ready("InvalidSpec", why))?;
    // Not a confused deputy: a BotInstance runs only images the operator was installed to allow.
    build::allowed_image(bot, settings).map_err(|why| Blocked::not_ready("ImageNotAllowed", why))?;
    resolve(bot, &inputs.plans, &inputs.campaigns, &inputs.policies, now).map_err(|e| Blocked::not_ready("InvalidSpec", e.to_string()))
}

/// A token Telegram accepted (now, or before with the same fingerprint).
struct ValidToken {
    token: BotToken,
    fingerprint: String,
    /// Not the fingerprint the status names: the pods roll, the webhook is re-registered.
    changed: bool,
    /// Some when getMe ran now.
    identity: Option<Identity>,
    /// Its Secret carries the label the operator watches.
    watched: bool,
    /// The Telegram bot it belongs to (getMe's id, else the token's prefix).
    bot_id: Option<i64>,
}

/// Step 2: reads the token Secret and asks Telegram about a token it has not accepted yet.
/// Err: why the bot is blocked, and when to look again.
async fn check_token(
    ctx: &Context,
    ns: &str,
    bot: &BotInstance,
    previous: &BotInstanceStatus,
) -> Result<Result<ValidToken, (Blocked, Duration)>, Error> {
    let ReadToken { token, watched } = match read_token(ctx, ns, bot).await? {
        Ok(t) => t,
        Err(p) => {
            let blocked = Blocked {
                conditions: vec![
                    Cond::new("TokenValid", ConditionStatus::False, p.reason, p.message.clone()),
                    Cond::new("Ready", ConditionStatus::False, "TokenUnavailable", p.message),
                ],
                bot_id: None,
            };
            return Ok(Err((blocked, Duration::from_secs(60))));
        }
    };
    let fp = token.fingerprint();
    let changed = previous.token_fingerprint.as_deref() != Some(fp.as_str());
    if !changed && is_true(&previous.conditions, "TokenValid") && previous.username.is_some() {
        let bot_id = token.bot_id();
        return Ok(Ok(ValidToken { token, fingerprint: fp, changed, identity: None, watched, bot_id }));
    }
    match ctx.telegram.get_me(&token).await {
        Ok(me) => {
            if changed && previous.token_fingerprint.is_some() {
                let note = format!("token changed to {fp} (@{}); pods roll to it", me.username);
                publish(ctx, bot, EventType::Normal, "TokenRotated", "ValidateToken", note).await;
            }
            let identity = Identity { username: me.username, fingerprint: fp.clone() };
            Ok(Ok(ValidToken { token, fingerprint: fp, changed, identity: Some(identity), watched, bot_id: Some(me.id) }))
        }
        Err(e) => {
            let (s, reason, wait) = match e {
                TelegramError::Unauthorized => (ConditionStatus::False, "Unauthorized", Duration::from_secs(300)),
                ref e if e.is_transient() => (ConditionStatus::Unknown, "TelegramUnreachable", RETRY_SOON),
                _ => (ConditionStatus::False, "TelegramRefused", Duration::from_secs(300)),
            };
            let message =
                format!("token {fp} from Secret {:?}: {e}; running pods keep their current token", bot.spec.token_secret_ref.name);
            // The Event is published on every failed validation (the reason is the TokenValid one).
            publish(ctx, bot, EventType::Warning, reason, "ValidateToken", message.clone()).await;
            let blocked = Blocked {
                conditions: vec![
                    Cond::new("TokenValid", s, reason, message.clone()),
                    Cond::new("Ready", ConditionStatus::False, "TokenInvalid", message),
                ],
                bot_id: None,
            };
            // Nothing is applied: the Deployment keeps the last valid token.
            Ok(Err((blocked, wait)))
        }
    }
}

/// Writes the status of a blocked bot, with a Warning Event when the block is new.
async fn stop(ctx: &Context, ns: &str, bot: &BotInstance, previous: &BotInstanceStatus, b: Blocked, then: Action) -> Result<Action, Error> {
    let (status, new) = status::blocked(previous, &b, bot.metadata.generation.unwrap_or(0), ctx.now());
    // A failed getMe published its own Event (every time); token Secret problems and specs once.
    let token_problem = b.conditions.iter().find(|c| c.type_ == "TokenValid");
    let already_published = b.reason() == "TokenInvalid";
    if !already_published {
        let (reason, note) = match token_problem {
            Some(c) => (c.reason, c.message.clone()),
            None => (b.reason(), b.message().to_string()),
        };
        let was = match token_problem {
            Some(c) => previous.conditions.iter().any(|p| p.type_ == "TokenValid" && p.reason == c.reason),
            None => !new,
        };
        if !was {
            publish(ctx, bot, EventType::Warning, reason, "Reconcile", note).await;
        }
    }
    patch_status(ctx, ns, bot, &status).await?;
    Ok(then)
}

/// Step 3: the namespace's payload keys (see [`PAYLOAD_KEYS_SECRET`]). When the Secret is
/// absent it is created with one fresh key — a POST, so an existing one (an admin's, or another
/// bot's reconcile that got there first: 409) is never overwritten, only read. Err: the Secret
/// exists without the shape the pods need; nothing is applied until it is fixed.
async fn payload_keys(ctx: &Context, ns: &str, bot: &BotInstance) -> Result<Result<PayloadKeys, Blocked>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let found = match secrets.get_opt(PAYLOAD_KEYS_SECRET).await? {
        Some(found) => found,
        None => {
            let keys = PayloadKeys::generate().map_err(|e| Error::RandomSource(e.to_string()))?;
            let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
            match secrets.create(&params, &build::payload_keys_secret(ns, &keys)).await {
                Ok(_) => {
                    let note = format!(
                        "created Secret {PAYLOAD_KEYS_SECRET:?} with a new invoice-payload key for the bots of namespace {ns:?}; rotate by editing it (docs/MONEY.md)"
                    );
                    publish(ctx, bot, EventType::Normal, "PayloadKeysCreated", "CreatePayloadKeys", note).await;
                    return Ok(Ok(keys));
                }
                Err(kube::Error::Api(s)) if s.code == 409 => secrets.get(PAYLOAD_KEYS_SECRET).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    Ok(build::payload_keys_in(&found).map_err(Blocked::payload_keys_invalid))
}

/// The bot's webhook secret as found (or generated, when there is none yet).
struct FoundWebhookSecret {
    value: WebhookSecret,
    /// Generated by this reconcile: to be written, and the webhook registered with it.
    generated: bool,
}

/// Step 3: the webhook secret is created once and kept (rotating it needs a new setWebhook).
/// A Secret of that name the bot does not own is never read (a new value is generated, and the
/// ownership check then stops the bot). Returns the found Secret's metadata too.
async fn read_webhook_secret(ctx: &Context, ns: &str, bot: &BotInstance) -> Result<(FoundWebhookSecret, Option<ObjectMeta>), Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let Some(existing) = secrets.get_opt(&names(&bot.name_any()).webhook_secret).await? else {
        return Ok((FoundWebhookSecret { value: WebhookSecret::generate(), generated: true }, None));
    };
    let value = existing.data.as_ref().and_then(|d| d.get(WEBHOOK_SECRET_KEY)).map(|b| String::from_utf8_lossy(&b.0).into_owned());
    let found = match value.and_then(|v| WebhookSecret::parse(&v).ok()) {
        Some(value) if build::owned_by(&existing.metadata, bot) => FoundWebhookSecret { value, generated: false },
        _ => FoundWebhookSecret { value: WebhookSecret::generate(), generated: true },
    };
    Ok((found, Some(existing.metadata)))
}

/// Step 3: the objects `build` will name, as they are now (for the ownership check, and the
/// Deployment's replica count). Metadata only, but for the Deployment.
async fn read_existing(ctx: &Context, ns: &str, name: &str, with_monitor: bool, existing: &mut Existing) -> Result<(), Error> {
    let n = names(name);
    let client = ctx.client.clone();
    existing.runtime_token = metadata(&Api::<Secret>::namespaced(client.clone(), ns), &n.token).await?;
    existing.config_map = metadata(&Api::<ConfigMap>::namespaced(client.clone(), ns), &n.config).await?;
    existing.service = metadata(&Api::<Service>::namespaced(client.clone(), ns), &n.runtime).await?;
    existing.deployment = Api::<Deployment>::namespaced(client.clone(), ns).get_opt(&n.runtime).await?;
    existing.autoscaler = metadata(&Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns), &n.runtime).await?;
    existing.disruption_budget = metadata(&Api::<PodDisruptionBudget>::namespaced(client.clone(), ns), &n.runtime).await?;
    if with_monitor {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &build::service_monitor_resource());
        existing.service_monitor = metadata(&api, &n.runtime).await?;
    }
    if ctx.settings.network_policy.is_some() {
        existing.network_policy = metadata(&Api::<NetworkPolicy>::namespaced(client, ns), &n.runtime).await?;
    }
    Ok(())
}

async fn metadata<K>(api: &Api<K>, name: &str) -> Result<Option<ObjectMeta>, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.get_metadata_opt(name).await?.map(|m: PartialObjectMeta<K>| m.metadata))
}

/// Step 5: every object of one `Desired`, in a fixed order (the scenario tests script it).
/// Destructured without `..`: a new kind of object does not compile until it is applied here.
/// Returns the Deployment as the API server stored it (its status says how many pods are ready).
async fn apply_desired(ctx: &Context, ns: &str, name: &str, desired: Desired, existing: &Existing) -> Result<Deployment, Error> {
    let Desired {
        webhook_secret,
        runtime_token,
        config_map,
        deployment,
        service,
        autoscaler,
        disruption_budget,
        service_monitor,
        network_policy,
    } = desired;
    let n = names(name);
    let client = ctx.client.clone();
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    if let Some(secret) = webhook_secret {
        apply_object(&secrets, &n.webhook_secret, &secret).await?;
    }
    // Pods read the token from our copy, written only once Telegram accepted it.
    apply_object(&secrets, &n.token, &runtime_token).await?;
    apply_object(&Api::<ConfigMap>::namespaced(client.clone(), ns), &n.config, &config_map).await?;
    apply_object(&Api::<Service>::namespaced(client.clone(), ns), &n.runtime, &service).await?;
    let deployment = apply_object(&Api::<Deployment>::namespaced(client.clone(), ns), &n.runtime, &deployment).await?;
    let hpa_api = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns);
    // No longer wanted (autoscaling switched off, one replica): deleted when it is ours.
    let ours = |m: &Option<ObjectMeta>| m.as_ref().is_some_and(|m| owned_by_name(m, name));
    match autoscaler {
        Some(hpa) => drop(apply_object(&hpa_api, &n.runtime, &hpa).await?),
        None if ours(&existing.autoscaler) => delete_if_present(&hpa_api, &n.runtime).await?,
        None => {}
    }
    let pdb_api = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns);
    match disruption_budget {
        Some(pdb) => drop(apply_object(&pdb_api, &n.runtime, &pdb).await?),
        None if ours(&existing.disruption_budget) => delete_if_present(&pdb_api, &n.runtime).await?,
        None => {}
    }
    if let Some(sm) = service_monitor {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &build::service_monitor_resource());
        apply_object(&api, &n.runtime, &sm).await?;
    }
    if let Some(np) = network_policy {
        apply_object(&Api::<NetworkPolicy>::namespaced(client, ns), &n.runtime, &np).await?;
    }
    Ok(deployment)
}

/// Whether a BotInstance of this name controls the object (the uid was checked before the build).
fn owned_by_name(meta: &ObjectMeta, bot: &str) -> bool {
    meta.owner_references.iter().flatten().any(|o| o.controller == Some(true) && o.kind == "BotInstance" && o.name == bot)
}

/// Step 6: setWebhook with the bot's URL, secret and the allowed updates.
async fn register_webhook(ctx: &Context, bot: &BotInstance, token: &BotToken, url: &str, secret: &WebhookSecret) -> Webhook {
    let reg = WebhookRegistration {
        url: url.to_string(),
        secret_token: secret.expose().to_string(),
        allowed_updates: ALLOWED_UPDATES.iter().map(|s| s.to_string()).collect(),
        max_connections: bot.spec.ingress.max_connections,
    };
    match ctx.telegram.set_webhook(token, &reg).await {
        Ok(()) => {
            publish(ctx, bot, EventType::Normal, "WebhookRegistered", "SetWebhook", format!("setWebhook {url}")).await;
            Webhook::Registered { url: url.to_string() }
        }
        Err(e) => {
            let message = format!("setWebhook {url}: {e}");
            publish(ctx, bot, EventType::Warning, "SetWebhookFailed", "SetWebhook", message.clone()).await;
            Webhook::Failed { message }
        }
    }
}

/// getWebhookInfo, for `status.webhook` and the pending-updates gauge (a failure only logs).
async fn webhook_info(ctx: &Context, ns: &str, name: &str, token: &BotToken) -> Option<WebhookStatus> {
    match ctx.telegram.get_webhook_info(token).await {
        Ok(info) => {
            ctx.metrics.webhook_pending(ns, name, info.pending_update_count);
            Some(WebhookStatus {
                url: info.url,
                pending_update_count: info.pending_update_count,
                last_error_message: info.last_error_message,
                last_error_time: info.last_error_date.and_then(|d| jiff::Timestamp::from_second(d).ok()).map(|t| t.to_string()),
            })
        }
        Err(e) => {
            tracing::warn!(bot = %name, error = %e, "getWebhookInfo failed");
            None
        }
    }
}

/// How long a deleted bot's pods get to take its users out of the pool before they go: the
/// kubelet's ConfigMap refresh (up to about a minute), the runtime's 2 s configuration poll
/// and its 5 s retiring sweep.
pub const RETIRE_DRAIN: Duration = Duration::from_secs(90);

/// A deleted bot retires first: its configuration says `retiring`, so its running pods take
/// its users out of the pool's queues and end their chats (the partners, on other bots, are
/// told), and the finalizer holds the pods (owned objects wait for their owner) for
/// [`RETIRE_DRAIN`]. Returns how long it still drains; None when there is nothing to drain (no
/// pod ever ran, or the spec cannot be resolved, so no runtime could have served it).
async fn retire(bot: &BotInstance, ctx: &Context, ns: &str) -> Result<Option<Duration>, Error> {
    let status = bot.status.clone().unwrap_or_default();
    if status.ready_replicas.unwrap_or(0) == 0 {
        return Ok(None);
    }
    let now = ctx.now();
    if let Some(since) = status.retiring_since.as_deref().and_then(|s| s.parse::<jiff::Timestamp>().ok()) {
        let elapsed = Duration::try_from(now.duration_since(since)).unwrap_or_default();
        return Ok(RETIRE_DRAIN.checked_sub(elapsed).filter(|left| !left.is_zero()));
    }
    let inputs = ctx.inputs();
    let Ok(mut resolution) = resolve(bot, &inputs.plans, &inputs.campaigns, &inputs.policies, now) else { return Ok(None) };
    resolution.config.bot.retiring = true;
    build::name_payload_key_file(&mut resolution.config);
    let yaml = serde_yaml::to_string(&resolution.config).map_err(|e| Error::Serialize(e.to_string()))?;
    let config_map = build::config_map(bot, &resolution.config, &yaml, &resolution.config.hash());
    let name = bot.name_any();
    apply_object(&Api::<ConfigMap>::namespaced(ctx.client.clone(), ns), &names(&name).config, &config_map).await?;
    let mut status = status;
    status.retiring_since = Some(now.to_string());
    let message = format!("the bot's users leave the pool; its pods stop in {}s", RETIRE_DRAIN.as_secs());
    let generation = bot.metadata.generation.unwrap_or(0);
    set_condition(&mut status.conditions, "Ready", ConditionStatus::False, "Retiring", message, generation, now);
    patch_status(ctx, ns, bot, &status).await?;
    let note = format!(
        "configuration set to retiring: the pods take the bot's users out of pool {:?} for {}s, then go",
        bot.spec.pool,
        RETIRE_DRAIN.as_secs()
    );
    publish(ctx, bot, EventType::Normal, "Retiring", "Retire", note).await;
    Ok(Some(RETIRE_DRAIN))
}

/// The bot is being deleted: retire it (see [`retire`]), then take its webhook down (owned
/// objects go by garbage collection once the finalizer is gone).
async fn cleanup(bot: Arc<BotInstance>, ctx: &Context) -> Result<Action, Error> {
    let ns = bot.namespace().ok_or(Error::MissingNamespace)?;
    if let Some(wait) = retire(&bot, ctx, &ns).await? {
        return Err(Error::Draining(wait));
    }
    ctx.metrics.forget_bot(&ns, &bot.name_any());
    if bot.spec.ingress.mode != IngressMode::Webhook {
        return Ok(Action::await_change());
    }
    if skip_webhook_cleanup(&bot) {
        let note = format!("{SKIP_WEBHOOK_CLEANUP}=true: the webhook is left at Telegram; remove it yourself with the bot's token");
        publish(ctx, &bot, EventType::Warning, "WebhookCleanupSkipped", "DeleteWebhook", note).await;
        return Ok(Action::await_change());
    }
    // The user's token Secret may be gone already (deleted with the bot's namespace or first
    // by mistake): the operator's own copy of the last token Telegram accepted still works.
    let token = match read_token(ctx, &ns, &bot).await? {
        Ok(t) => Some(t.token),
        Err(_) => read_validated_copy(ctx, &ns, &bot).await?,
    };
    let Some(token) = token else {
        // No token at all: no webhook we could remove, nothing blocks the deletion.
        let note = "neither the token Secret nor the operator's copy of the token is left: the webhook could not be removed".to_string();
        publish(ctx, &bot, EventType::Warning, "DeleteWebhookFailed", "DeleteWebhook", note).await;
        return Ok(Action::await_change());
    };
    match ctx.telegram.delete_webhook(&token, false).await {
        Ok(()) | Err(TelegramError::Unauthorized) => Ok(Action::await_change()),
        // Telegram unreachable: keep the finalizer and retry rather than leave a webhook
        // pointing at a bot that no longer exists (the annotation releases it).
        Err(e) if e.is_transient() => {
            let note = format!("{e}; retrying. To release the bot without removing its webhook: annotate it {SKIP_WEBHOOK_CLEANUP}=true");
            publish(ctx, &bot, EventType::Warning, "DeleteWebhookFailed", "DeleteWebhook", note).await;
            Err(Error::Telegram(e))
        }
        Err(_) => Ok(Action::await_change()),
    }
}

/// Set to "true" on a BotInstance being deleted whose webhook cannot be removed (Telegram
/// unreachable for good, the bot deleted at @BotFather): the finalizer lets it go without
/// calling deleteWebhook.
pub const SKIP_WEBHOOK_CLEANUP: &str = "botfleet.io/skip-webhook-cleanup";

fn skip_webhook_cleanup(bot: &BotInstance) -> bool {
    bot.metadata.annotations.as_ref().and_then(|a| a.get(SKIP_WEBHOOK_CLEANUP)).is_some_and(|v| v == "true")
}

/// The operator's copy of the last validated token (`<bot>-runtime-token`), when it is this
/// bot's own and holds a token.
async fn read_validated_copy(ctx: &Context, ns: &str, bot: &BotInstance) -> Result<Option<BotToken>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let Some(copy) = secrets.get_opt(&names(&bot.name_any()).token).await? else { return Ok(None) };
    if !build::owned_by(&copy.metadata, bot) {
        return Ok(None);
    }
    let raw = copy.data.as_ref().and_then(|d| d.get(build::TOKEN_KEY)).map(|b| String::from_utf8_lossy(&b.0).into_owned());
    Ok(raw.and_then(|r| BotToken::parse(&r).ok()))
}
