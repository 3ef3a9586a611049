//! Thin: reads what a bot needs, applies what `build` returns, registers the webhook, writes
//! status and Events. The order of API calls is fixed (tests script it exactly):
//!
//! 1. finalizer (added on first sight; on deletion: deleteWebhook, then removed)
//! 2. GET the token Secret → getMe when the token changed or was never validated
//! 3. GET (or create) the webhook-secret Secret, in webhook mode; apply the validated-token copy
//! 4. GET the ServiceMonitor CRD (cached for five minutes)
//! 5. apply ConfigMap, Service, Deployment; apply or delete HPA and PDB; apply ServiceMonitor
//! 6. setWebhook when the URL, secret or token changed; getWebhookInfo
//! 7. PATCH status; Events for every change and failure along the way

use std::sync::Arc;
use std::time::Duration;

use botfleet_crds::bot_instance::{BotInstance, BotInstanceStatus, IngressMode, WebhookStatus};
use botfleet_crds::common::ConditionStatus;
use botfleet_crds::resolve::resolve;
use botfleet_crds::token::{BotToken, fingerprint};
use botfleet_crds::webhook::WebhookSecret;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::build::{self, Rollout, WEBHOOK_SECRET_KEY, build, names, webhook_url};
use crate::context::Context;
use crate::error::Error;
use crate::status::{is_true, set_condition};
use crate::telegram::{TelegramError, WebhookRegistration};

pub const FINALIZER: &str = "botfleet.io/webhook";
pub const FIELD_MANAGER: &str = "botfleet-operator";
/// What Telegram should send us: the one list the runtime also polls for.
pub use botfleet_crds::webhook::ALLOWED_UPDATES;

const RESYNC: Duration = Duration::from_secs(300);
const RETRY_SOON: Duration = Duration::from_secs(30);
const ROLLOUT_POLL: Duration = Duration::from_secs(15);

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

/// Why the token cannot be used, as a condition reason and message.
struct TokenProblem {
    reason: &'static str,
    message: String,
}

async fn read_token(ctx: &Context, ns: &str, bot: &BotInstance) -> Result<Result<BotToken, TokenProblem>, Error> {
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
    Ok(BotToken::parse(&raw).map_err(|_| TokenProblem {
        reason: "TokenMalformed",
        message: format!("key {:?} of Secret {:?} does not hold a bot token (<id>:<secret>)", r.key, r.name),
    }))
}

/// The bot's webhook secret, created once and kept (rotating it would need a new setWebhook).
async fn ensure_webhook_secret(ctx: &Context, ns: &str, bot: &BotInstance, pool: &str) -> Result<(WebhookSecret, bool), Error> {
    let n = names(&bot.name_any());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    if let Some(existing) = secrets.get_opt(&n.webhook_secret).await? {
        let value = existing.data.as_ref().and_then(|d| d.get(WEBHOOK_SECRET_KEY)).map(|b| String::from_utf8_lossy(&b.0).into_owned());
        if let Some(secret) = value.and_then(|v| WebhookSecret::parse(&v).ok()) {
            return Ok((secret, false));
        }
    }
    let secret = WebhookSecret::generate();
    let object = build::webhook_secret(bot, pool, secret.expose());
    secrets.patch(&n.webhook_secret, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&object)).await?;
    Ok((secret, true))
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

async fn apply(bot: Arc<BotInstance>, ctx: &Context) -> Result<Action, Error> {
    let ns = bot.namespace().ok_or(Error::MissingNamespace)?;
    let name = bot.name_any();
    let now = ctx.now();
    let generation = bot.metadata.generation.unwrap_or(0);
    let mut status = bot.status.clone().unwrap_or_default();
    status.observed_generation = Some(generation);
    let cond = |status: &mut BotInstanceStatus, t: &str, s: ConditionStatus, reason: &str, msg: String| {
        set_condition(&mut status.conditions, t, s, reason, msg, generation, now);
    };

    // Objects the API server would refuse (a name too long for the Service, requests above
    // limits): said once, nothing applied, until the spec changes.
    if let Err(why) = build::validate(&bot) {
        let was = status.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "InvalidSpec" && c.message == why);
        cond(&mut status, "Ready", ConditionStatus::False, "InvalidSpec", why.clone());
        if !was {
            publish(ctx, &bot, EventType::Warning, "InvalidSpec", "Validate", why).await;
        }
        patch_status(ctx, &ns, &bot, &status).await?;
        return Ok(Action::await_change());
    }

    // The configuration (pure).
    let inputs = ctx.inputs();
    let resolution = match resolve(&bot, &inputs.plans, &inputs.campaigns, &inputs.policies, now) {
        Ok(r) => r,
        Err(e) => {
            cond(&mut status, "Ready", ConditionStatus::False, "InvalidSpec", e.to_string());
            publish(ctx, &bot, EventType::Warning, "InvalidSpec", "Resolve", e.to_string()).await;
            patch_status(ctx, &ns, &bot, &status).await?;
            return Ok(Action::await_change());
        }
    };

    // The token: read, and validated with Telegram whenever it is new.
    let token = match read_token(ctx, &ns, &bot).await? {
        Ok(t) => t,
        Err(p) => {
            let was = status.conditions.iter().find(|c| c.type_ == "TokenValid").map(|c| c.reason.clone());
            cond(&mut status, "TokenValid", ConditionStatus::False, p.reason, p.message.clone());
            cond(&mut status, "Ready", ConditionStatus::False, "TokenUnavailable", p.message.clone());
            if was.as_deref() != Some(p.reason) {
                publish(ctx, &bot, EventType::Warning, p.reason, "ReadToken", p.message).await;
            }
            patch_status(ctx, &ns, &bot, &status).await?;
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
    };
    let token_fp = token.fingerprint();
    let token_changed = status.token_fingerprint.as_deref() != Some(token_fp.as_str());
    if token_changed || !is_true(&status.conditions, "TokenValid") || status.username.is_none() {
        match ctx.telegram.get_me(&token).await {
            Ok(me) => {
                if token_changed && status.token_fingerprint.is_some() {
                    let note = format!("token changed to {token_fp} (@{}); pods roll to it", me.username);
                    publish(ctx, &bot, EventType::Normal, "TokenRotated", "ValidateToken", note).await;
                }
                cond(&mut status, "TokenValid", ConditionStatus::True, "Valid", format!("getMe answered @{}", me.username));
                status.username = Some(me.username);
                status.token_fingerprint = Some(token_fp.clone());
            }
            Err(e) => {
                let (s, reason, wait) = match e {
                    TelegramError::Unauthorized => (ConditionStatus::False, "Unauthorized", Duration::from_secs(300)),
                    ref e if e.is_transient() => (ConditionStatus::Unknown, "TelegramUnreachable", RETRY_SOON),
                    _ => (ConditionStatus::False, "TelegramRefused", Duration::from_secs(300)),
                };
                let message = format!(
                    "token {token_fp} from Secret {:?}: {e}; running pods keep their current token",
                    bot.spec.token_secret_ref.name
                );
                cond(&mut status, "TokenValid", s, reason, message.clone());
                cond(&mut status, "Ready", ConditionStatus::False, "TokenInvalid", message.clone());
                publish(ctx, &bot, EventType::Warning, reason, "ValidateToken", message).await;
                patch_status(ctx, &ns, &bot, &status).await?;
                // Nothing is applied: the Deployment keeps the last valid token.
                return Ok(Action::requeue(wait));
            }
        }
    }

    let pool = resolution.config.bot.pool.clone();
    let webhook_secret = match bot.spec.ingress.mode {
        IngressMode::Webhook => Some(ensure_webhook_secret(ctx, &ns, &bot, &pool).await?),
        IngressMode::Polling => None,
    };
    // Pods read the token from our copy, written only once Telegram accepted it.
    let n = names(&name);
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &ns);
    apply_object(&secrets, &n.token, &build::validated_token(&bot, &pool, token.expose())).await?;
    let with_monitor = ctx.service_monitor_available().await;

    // Scaled to zero: retire first (the pods take the bot's users out of the pool), then stop.
    let retiring_since = status.retiring_since.as_deref().and_then(|s| s.parse::<jiff::Timestamp>().ok());
    let scale_down = build::scale_down(&bot, status.ready_replicas.unwrap_or(0), retiring_since, RETIRE_DRAIN, now);
    let mut resolution = resolution;
    match scale_down {
        build::ScaleDown::No => status.retiring_since = None,
        build::ScaleDown::Retire { start, .. } => {
            resolution.config.bot.retiring = true;
            if start {
                status.retiring_since = Some(now.to_string());
                let note = format!(
                    "scaled to zero: the pods take the bot's users out of pool {:?} for {}s, then stop",
                    bot.spec.pool,
                    RETIRE_DRAIN.as_secs()
                );
                publish(ctx, &bot, EventType::Normal, "Retiring", "ScaleToZero", note).await;
            }
        }
        build::ScaleDown::Stop => resolution.config.bot.retiring = retiring_since.is_some(),
    }
    resolution.hash = resolution.config.hash();

    // The objects.
    let config_yaml = serde_yaml::to_string(&resolution.config).map_err(|e| Error::Serialize(e.to_string()))?;
    let rollout = Rollout {
        token_fingerprint: token_fp.clone(),
        webhook_secret_fingerprint: webhook_secret.as_ref().map(|(s, _)| fingerprint(s.expose())),
    };
    let mut desired = build(&bot, &resolution.config, &config_yaml, &resolution.hash, &rollout, &ctx.settings, with_monitor);
    if let build::ScaleDown::Retire { keep, .. } = scale_down {
        desired.deployment.spec.replicas = Some(keep);
    }
    let client = ctx.client.clone();
    apply_object(&Api::<ConfigMap>::namespaced(client.clone(), &ns), &n.config, &desired.config_map).await?;
    apply_object(&Api::<Service>::namespaced(client.clone(), &ns), &n.runtime, &desired.service).await?;
    let deployment = apply_object(&Api::<Deployment>::namespaced(client.clone(), &ns), &n.runtime, &desired.deployment).await?;
    let hpa_api = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &ns);
    match &desired.autoscaler {
        Some(hpa) => drop(apply_object(&hpa_api, &n.runtime, hpa).await?),
        None => delete_if_present(&hpa_api, &n.runtime).await?,
    }
    let pdb_api = Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns);
    match &desired.disruption_budget {
        Some(pdb) => drop(apply_object(&pdb_api, &n.runtime, pdb).await?),
        None => delete_if_present(&pdb_api, &n.runtime).await?,
    }
    if let Some(sm) = &desired.service_monitor {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &build::service_monitor_resource());
        apply_object(&api, &n.runtime, sm).await?;
    }
    if status.config_hash.as_deref() != Some(resolution.hash.as_str()) {
        let note = format!("configuration {} written to ConfigMap {}; runtimes reload it", resolution.hash, n.config);
        publish(ctx, &bot, EventType::Normal, "ConfigUpdated", "Resolve", note).await;
        status.config_hash = Some(resolution.hash.clone());
    }

    // The webhook.
    let mut requeue =
        resolution.requeue_at.map(|t| Duration::from_secs(t.duration_since(now).as_secs().max(1) as u64)).unwrap_or(RESYNC).min(RESYNC);
    match (webhook_url(&bot), webhook_secret) {
        (Some(url), Some((secret, created))) => {
            let unchanged = status.webhook.as_ref().is_some_and(|w| w.url == url)
                && !created
                && !token_changed
                && is_true(&status.conditions, "WebhookRegistered");
            let mut registered = unchanged;
            if !unchanged {
                let reg = WebhookRegistration {
                    url: url.clone(),
                    secret_token: secret.expose().to_string(),
                    allowed_updates: ALLOWED_UPDATES.iter().map(|s| s.to_string()).collect(),
                    max_connections: bot.spec.ingress.max_connections,
                };
                match ctx.telegram.set_webhook(&token, &reg).await {
                    Ok(()) => {
                        cond(&mut status, "WebhookRegistered", ConditionStatus::True, "Registered", format!("Telegram delivers to {url}"));
                        publish(ctx, &bot, EventType::Normal, "WebhookRegistered", "SetWebhook", format!("setWebhook {url}")).await;
                        registered = true;
                    }
                    Err(e) => {
                        let message = format!("setWebhook {url}: {e}");
                        cond(&mut status, "WebhookRegistered", ConditionStatus::False, "SetWebhookFailed", message.clone());
                        publish(ctx, &bot, EventType::Warning, "SetWebhookFailed", "SetWebhook", message).await;
                        requeue = RETRY_SOON;
                    }
                }
            }
            if registered {
                match ctx.telegram.get_webhook_info(&token).await {
                    Ok(info) => {
                        ctx.metrics.webhook_pending(&ns, &name, info.pending_update_count);
                        status.webhook = Some(WebhookStatus {
                            url: info.url,
                            pending_update_count: info.pending_update_count,
                            last_error_message: info.last_error_message,
                            last_error_time: info.last_error_date.and_then(|d| jiff::Timestamp::from_second(d).ok()).map(|t| t.to_string()),
                        });
                    }
                    Err(e) => tracing::warn!(bot = %name, error = %e, "getWebhookInfo failed"),
                }
            }
        }
        _ => {
            // Polling: a webhook left from webhook mode would make every getUpdates fail.
            if status.webhook.is_some() {
                match ctx.telegram.delete_webhook(&token, false).await {
                    Ok(()) => status.webhook = None,
                    Err(e) => publish(ctx, &bot, EventType::Warning, "DeleteWebhookFailed", "DeleteWebhook", e.to_string()).await,
                }
            }
            status.conditions.retain(|c| c.type_ != "WebhookRegistered");
        }
    }

    // Readiness.
    let ready = deployment.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    let wanted = deployment.spec.replicas.unwrap_or(1).max(1);
    status.ready_replicas = Some(ready);
    let webhook_ok = bot.spec.ingress.mode == IngressMode::Polling || is_true(&status.conditions, "WebhookRegistered");
    if let build::ScaleDown::Retire { left, .. } = scale_down {
        let message = format!("scaled to zero: the bot's users leave the pool; its pods stop in {}s", left.as_secs());
        cond(&mut status, "Ready", ConditionStatus::False, "Retiring", message);
        requeue = requeue.min(left);
    } else if scale_down == build::ScaleDown::Stop {
        cond(&mut status, "Ready", ConditionStatus::False, "ScaledToZero", "spec.replicas is 0: no pods run".into());
    } else if ready > 0 && webhook_ok {
        cond(&mut status, "Ready", ConditionStatus::True, "Running", format!("{ready} replica(s) ready"));
    } else if !webhook_ok {
        cond(&mut status, "Ready", ConditionStatus::False, "WebhookNotRegistered", "Telegram has no webhook for this bot yet".into());
    } else {
        cond(&mut status, "Ready", ConditionStatus::False, "RolloutInProgress", format!("{ready} of {wanted} replicas ready"));
        requeue = requeue.min(ROLLOUT_POLL);
    }
    patch_status(ctx, &ns, &bot, &status).await?;
    Ok(Action::requeue(requeue))
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
    let token = match read_token(ctx, &ns, &bot).await? {
        Ok(t) => t,
        // No token, no webhook we could remove: nothing blocks the deletion.
        Err(_) => return Ok(Action::await_change()),
    };
    match ctx.telegram.delete_webhook(&token, false).await {
        Ok(()) | Err(TelegramError::Unauthorized) => Ok(Action::await_change()),
        // Telegram unreachable: keep the finalizer and retry rather than leave a webhook
        // pointing at a bot that no longer exists.
        Err(e) if e.is_transient() => Err(Error::Telegram(e)),
        Err(_) => Ok(Action::await_change()),
    }
}
