//! Pure: what a reconcile found and did → the BotInstance's status. No I/O; `reconcile.rs`
//! gathers the facts, these functions decide the conditions (unit-tested below).
//!
//! Conditions: `Ready` always; `TokenValid` once a token was read; `WebhookRegistered` in
//! webhook mode only; `TokenSecretWatched` whether the token Secret carries the label the
//! operator watches (see [`TOKEN_SECRET_LABEL`](super::build::TOKEN_SECRET_LABEL));
//! `PayloadKeysValid` whether the namespace's payload-key Secret can be mounted (see
//! [`PAYLOAD_KEYS_SECRET`](super::build::PAYLOAD_KEYS_SECRET)).

use std::time::Duration;

use botfleet_crds::bot_instance::{BotInstanceStatus, IngressMode, WebhookStatus};
use botfleet_crds::common::ConditionStatus;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};

use super::build::ScaleDown;
use crate::status::{is_true, set_condition};

/// One condition to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub status: ConditionStatus,
    pub reason: &'static str,
    pub message: String,
}

impl Cond {
    pub fn new(type_: &'static str, status: ConditionStatus, reason: &'static str, message: impl Into<String>) -> Self {
        Self { type_, status, reason, message: message.into() }
    }
}

/// Why nothing is applied for this bot now: the conditions that say so. Running pods are left
/// as they are (the last applied objects keep serving).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub conditions: Vec<Cond>,
    /// The Telegram bot id, when known (a duplicate says which bot it duplicates).
    pub bot_id: Option<i64>,
}

impl Blocked {
    /// Ready=False with this reason, nothing else.
    pub fn not_ready(reason: &'static str, message: impl Into<String>) -> Self {
        Self { conditions: vec![Cond::new("Ready", ConditionStatus::False, reason, message)], bot_id: None }
    }

    /// The namespace's payload-key Secret has not the shape the pods need (`why`, from
    /// [`payload_keys_in`](super::build::payload_keys_in)).
    pub fn payload_keys_invalid(why: String) -> Self {
        Self {
            conditions: vec![
                Cond::new("PayloadKeysValid", ConditionStatus::False, "PayloadKeysInvalid", why.clone()),
                Cond::new("Ready", ConditionStatus::False, "PayloadKeysInvalid", why),
            ],
            bot_id: None,
        }
    }

    /// The reason of its Ready condition (for Events and "was it already so?").
    pub fn reason(&self) -> &'static str {
        self.conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.reason).unwrap_or("Blocked")
    }

    pub fn message(&self) -> &str {
        self.conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.message.as_str()).unwrap_or("")
    }
}

/// The status after a blocked reconcile, and whether this block is new (not the same reason
/// and message as last time: only a new one deserves an Event).
pub fn blocked(previous: &BotInstanceStatus, b: &Blocked, generation: i64, now: Timestamp) -> (BotInstanceStatus, bool) {
    let was = previous.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == b.reason() && c.message == b.message());
    let mut status = previous.clone();
    status.observed_generation = Some(generation);
    for c in &b.conditions {
        set_condition(&mut status.conditions, c.type_, c.status, c.reason, c.message.clone(), generation, now);
    }
    if b.bot_id.is_some() {
        status.bot_id = b.bot_id;
    }
    (status, !was)
}

/// What became of the webhook in this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Webhook {
    /// Polling mode; `removed`: no webhook is left at Telegram (none was known, or deleteWebhook succeeded).
    Polling { removed: bool },
    /// Registered before with the same URL, secret and token: nothing to do.
    Kept,
    /// setWebhook succeeded for this URL.
    Registered { url: String },
    /// setWebhook failed: the message says why.
    Failed { message: String },
}

/// What the bot's token turned out to be, when it was (re)validated by this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub username: String,
    pub fingerprint: String,
}

/// Everything a reconcile that applied the bot's objects learned, as plain data.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub mode: IngressMode,
    /// Some when getMe ran in this reconcile and accepted the token.
    pub identity: Option<Identity>,
    /// The Telegram bot id of the token (its prefix; getMe's id when it ran).
    pub bot_id: Option<i64>,
    /// The token Secret carries the label the operator watches (else rotation waits for a resync).
    pub token_secret_watched: bool,
    /// How many keys the namespace's payload-key Secret holds (mounted into the pods).
    pub payload_keys: usize,
    pub config_hash: String,
    pub webhook: Webhook,
    /// getWebhookInfo's answer, when it was asked.
    pub webhook_info: Option<WebhookStatus>,
    pub scale_down: ScaleDown,
    /// When the drain of a bot scaled to zero began (`Some` while retiring or stopped after it).
    pub retiring_since: Option<Timestamp>,
    pub ready_replicas: i32,
    /// The replicas the Deployment asks for (at least 1 for the message).
    pub wanted_replicas: i32,
    /// Why the runtime's pods cannot run, from their container statuses ([`runtime_failure`]).
    pub runtime_failure: Option<String>,
}

/// How soon to look again, besides the resync: while a rollout is in progress, while a bot
/// drains, after a failed setWebhook.
pub const ROLLOUT_POLL: Duration = Duration::from_secs(15);
pub const RETRY_SOON: Duration = Duration::from_secs(30);

/// The Ready condition of a bot whose objects were applied, and how soon to check again.
pub fn ready(a: &Applied, webhook_registered: bool) -> (Cond, Option<Duration>) {
    let webhook_ok = a.mode == IngressMode::Polling || webhook_registered;
    match a.scale_down {
        ScaleDown::Retire { left, .. } => (
            Cond::new(
                "Ready",
                ConditionStatus::False,
                "Retiring",
                format!("scaled to zero: the bot's users leave the pool; its pods stop in {}s", left.as_secs()),
            ),
            Some(left),
        ),
        ScaleDown::Stop => (Cond::new("Ready", ConditionStatus::False, "ScaledToZero", "spec.replicas is 0: no pods run"), None),
        ScaleDown::No if a.ready_replicas == 0 && a.runtime_failure.is_some() => {
            (Cond::new("Ready", ConditionStatus::False, "RuntimeFailed", a.runtime_failure.clone().unwrap_or_default()), Some(ROLLOUT_POLL))
        }
        ScaleDown::No if a.ready_replicas > 0 && webhook_ok => {
            (Cond::new("Ready", ConditionStatus::True, "Running", format!("{} replica(s) ready", a.ready_replicas)), None)
        }
        ScaleDown::No if !webhook_ok => {
            (Cond::new("Ready", ConditionStatus::False, "WebhookNotRegistered", "Telegram has no webhook for this bot yet"), None)
        }
        ScaleDown::No => (
            Cond::new(
                "Ready",
                ConditionStatus::False,
                "RolloutInProgress",
                format!("{} of {} replicas ready", a.ready_replicas, a.wanted_replicas.max(1)),
            ),
            Some(ROLLOUT_POLL),
        ),
    }
}

/// The status after a reconcile that applied the bot's objects, and how soon to look again
/// (None: the resync is soon enough).
pub fn applied(previous: &BotInstanceStatus, a: &Applied, generation: i64, now: Timestamp) -> (BotInstanceStatus, Option<Duration>) {
    let mut s = previous.clone();
    s.observed_generation = Some(generation);
    let set =
        |s: &mut BotInstanceStatus, c: Cond| set_condition(&mut s.conditions, c.type_, c.status, c.reason, c.message, generation, now);
    if let Some(id) = &a.identity {
        set(&mut s, Cond::new("TokenValid", ConditionStatus::True, "Valid", format!("getMe answered @{}", id.username)));
        s.username = Some(id.username.clone());
        s.token_fingerprint = Some(id.fingerprint.clone());
    }
    if a.bot_id.is_some() {
        s.bot_id = a.bot_id;
    }
    set(&mut s, if a.token_secret_watched { token_secret_watched() } else { token_secret_not_watched() });
    let keys = format!(
        "{} key(s) in Secret {:?}, mounted into the pods (the first signs invoices)",
        a.payload_keys,
        super::build::PAYLOAD_KEYS_SECRET
    );
    set(&mut s, Cond::new("PayloadKeysValid", ConditionStatus::True, "Mounted", keys));
    s.config_hash = Some(a.config_hash.clone());
    let mut requeue = None;
    match &a.webhook {
        Webhook::Polling { removed } => {
            if *removed {
                s.webhook = None;
            }
            s.conditions.retain(|c| c.type_ != "WebhookRegistered");
        }
        Webhook::Kept => {}
        Webhook::Registered { url } => {
            set(&mut s, Cond::new("WebhookRegistered", ConditionStatus::True, "Registered", format!("Telegram delivers to {url}")))
        }
        Webhook::Failed { message } => {
            set(&mut s, Cond::new("WebhookRegistered", ConditionStatus::False, "SetWebhookFailed", message.clone()));
            requeue = Some(RETRY_SOON);
        }
    }
    if let Some(info) = &a.webhook_info {
        s.webhook = Some(info.clone());
    }
    s.retiring_since = match a.scale_down {
        ScaleDown::No => None,
        _ => a.retiring_since.map(|t| t.to_string()),
    };
    s.ready_replicas = Some(a.ready_replicas);
    let (ready, soon) = ready(a, is_true(&s.conditions, "WebhookRegistered"));
    set(&mut s, ready);
    let requeue = [requeue, soon].into_iter().flatten().min();
    (s, requeue)
}

/// The longest termination message kept (its end: the runtime's last words), in characters.
pub const TERMINATION_MESSAGE_MAX: usize = 1024;

/// Why a bot's runtime cannot run, from its pods' container statuses, or None. A container that
/// exited with a non-zero code (now, or before the restart it is waiting for: CrashLoopBackOff)
/// is reported with its exit code, reason and termination message: what the runtime wrote, or
/// its last log lines (the Deployment's `terminationMessagePolicy: FallbackToLogsOnError`). A
/// container that cannot be created (a missing Secret, an image that cannot be pulled) is
/// reported with the kubelet's reason. Pods are looked at by name, so the answer is stable;
/// tokens are masked and whitespace collapsed, the message cut to its last
/// [`TERMINATION_MESSAGE_MAX`] characters.
pub fn runtime_failure(pods: &[&Pod]) -> Option<String> {
    const STARTING: [&str; 2] = ["ContainerCreating", "PodInitializing"];
    let mut pods = pods.to_vec();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    pods.iter().find_map(|pod| {
        let name = pod.metadata.name.as_deref().unwrap_or("?");
        let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
        statuses.iter().find_map(|c| {
            let state = c.state.as_ref();
            let failed = |t: &ContainerStateTerminated| (t.exit_code != 0).then(|| t.clone());
            let terminated = state.and_then(|s| s.terminated.as_ref()).and_then(failed).or_else(|| {
                state.and_then(|s| s.waiting.as_ref())?;
                c.last_state.as_ref()?.terminated.as_ref().and_then(failed)
            });
            if let Some(t) = terminated {
                let why = t.message.as_deref().map(clean).filter(|m| !m.is_empty()).unwrap_or_else(|| "no termination message".into());
                let reason = t.reason.as_deref().unwrap_or("Error");
                return Some(format!("pod {name}: container {} exited with code {} ({reason}): {why}", c.name, t.exit_code));
            }
            let waiting = state.and_then(|s| s.waiting.as_ref())?;
            let reason = waiting.reason.as_deref().filter(|r| !STARTING.contains(r) && *r != "CrashLoopBackOff")?;
            let what = format!("pod {name}: container {} cannot start ({reason})", c.name);
            Some(match waiting.message.as_deref().map(clean).filter(|m| !m.is_empty()) {
                Some(why) => format!("{what}: {why}"),
                None => what,
            })
        })
    })
}

/// The Ready message when `now` reports a runtime failure that `previous` did not (another
/// reason, or another message): worth one Event. The same failure at every restart is not.
pub fn new_runtime_failure<'a>(previous: &BotInstanceStatus, now: &'a BotInstanceStatus) -> Option<&'a str> {
    fn ready(s: &BotInstanceStatus) -> Option<(&str, &str)> {
        s.conditions.iter().find(|c| c.type_ == "Ready").map(|c| (c.reason.as_str(), c.message.as_str()))
    }
    match (ready(previous), ready(now)) {
        (before, Some(("RuntimeFailed", message))) if before != Some(("RuntimeFailed", message)) => Some(message),
        _ => None,
    }
}

/// A termination message fit for a condition and an Event: tokens masked, one line, its end.
fn clean(message: &str) -> String {
    let masked = botfleet_crds::token::mask_tokens(message);
    let line = masked.split_whitespace().collect::<Vec<_>>().join(" ");
    let count = line.chars().count();
    if count <= TERMINATION_MESSAGE_MAX {
        return line;
    }
    let tail: String = line.chars().skip(count - (TERMINATION_MESSAGE_MAX - 1)).collect();
    format!("…{tail}")
}

pub fn token_secret_watched() -> Cond {
    Cond::new("TokenSecretWatched", ConditionStatus::True, "Labelled", "a rotated token is noticed within seconds")
}

/// The condition for a token Secret without the label the operator watches: the bot works,
/// but a rotated token is only noticed at the next resync.
pub fn token_secret_not_watched() -> Cond {
    Cond::new(
        "TokenSecretWatched",
        ConditionStatus::False,
        "TokenSecretNotLabelled",
        format!(
            "the token Secret lacks the label {}=true: a rotated token is noticed at the next resync (up to 5 minutes), not within seconds",
            super::build::TOKEN_SECRET_LABEL
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::condition;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn running() -> Applied {
        Applied {
            mode: IngressMode::Webhook,
            identity: Some(Identity { username: "alpha_bot".into(), fingerprint: "sha256:aaaaaaaaaaaa".into() }),
            bot_id: Some(42),
            token_secret_watched: true,
            payload_keys: 1,
            config_hash: "sha256:cccc".into(),
            webhook: Webhook::Registered { url: "https://x/telegram/alpha".into() },
            webhook_info: Some(WebhookStatus { url: "https://x/telegram/alpha".into(), pending_update_count: 3, ..Default::default() }),
            scale_down: ScaleDown::No,
            retiring_since: None,
            ready_replicas: 2,
            wanted_replicas: 2,
            runtime_failure: None,
        }
    }

    /// A runtime pod as the kubelet reports it: `statuses` are its container statuses (JSON).
    fn pod(name: &str, statuses: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "status": {"containerStatuses": statuses}})).unwrap()
    }

    const REDIS: &str = "2026-12-01T05:00:00Z ERROR bot_runtime: starting\nError: Redis would lose messages: appendonly is \"no\" (a restart loses queued messages and timers; set appendonly yes). Fix its configuration, or set REDIS_ACCEPT_DATA_LOSS=true for a test setup\n";

    fn crash_looping(name: &str, message: &str) -> Pod {
        pod(
            name,
            serde_json::json!([{
                "name": "bot-runtime", "image": "r", "imageID": "", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": message}},
            }]),
        )
    }

    #[test]
    fn a_crash_looping_runtime_is_reported_with_its_exit_code_and_termination_message() {
        let (a, b) = (crash_looping("alpha-runtime-b", "other"), crash_looping("alpha-runtime-a", REDIS));
        let why = runtime_failure(&[&a, &b]).unwrap();
        assert!(why.starts_with("pod alpha-runtime-a: container bot-runtime exited with code 1 (Error): "), "by pod name: {why}");
        assert!(why.contains("Redis would lose messages: appendonly is \"no\""), "{why}");
        assert!(!why.contains('\n') && !why.contains("back-off") && !why.contains("4"), "one line, the same at every restart: {why}");
        let a = Applied { ready_replicas: 0, runtime_failure: Some(why.clone()), ..running() };
        let (s, requeue) = applied(&BotInstanceStatus::default(), &a, 1, t("2026-01-01T00:00:00Z"));
        let ready = condition(&s.conditions, "Ready").unwrap();
        assert_eq!((ready.status, ready.reason.as_str(), ready.message.as_str()), (ConditionStatus::False, "RuntimeFailed", why.as_str()));
        assert_eq!(requeue, Some(ROLLOUT_POLL));
        // A replica still serving: the bot is Ready.
        let a = Applied { ready_replicas: 1, ..a };
        assert_eq!(
            condition(&applied(&BotInstanceStatus::default(), &a, 1, t("2026-01-01T00:00:00Z")).0.conditions, "Ready").unwrap().reason,
            "Running"
        );
    }

    #[test]
    fn a_runtime_failure_is_new_once_until_its_message_changes() {
        let at = t("2026-01-01T00:00:00Z");
        let failing = |why: &str| Applied { ready_replicas: 0, runtime_failure: Some(why.into()), ..running() };
        let (first, _) = applied(&BotInstanceStatus::default(), &failing("pod a: exited"), 1, at);
        assert_eq!(new_runtime_failure(&BotInstanceStatus::default(), &first), Some("pod a: exited"));
        let (again, _) = applied(&first, &failing("pod a: exited"), 1, at);
        assert_eq!(new_runtime_failure(&first, &again), None, "the same failure after a restart: no second Event");
        let (other, _) = applied(&again, &failing("pod b: exited"), 1, at);
        assert_eq!(new_runtime_failure(&again, &other), Some("pod b: exited"));
        let (fixed, _) = applied(&other, &running(), 1, at);
        assert_eq!(new_runtime_failure(&other, &fixed), None);
    }

    #[test]
    fn healthy_starting_and_cleanly_exited_containers_are_no_failure() {
        let starting = pod(
            "a",
            serde_json::json!([{"name": "bot-runtime", "image": "r", "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]),
        );
        let running = pod(
            "b",
            serde_json::json!([{"name": "bot-runtime", "image": "r", "imageID": "", "ready": true, "restartCount": 1, "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1}}}]),
        );
        let stopped = pod(
            "c",
            serde_json::json!([{"name": "bot-runtime", "image": "r", "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0}}}]),
        );
        let pending = pod("d", serde_json::Value::Null);
        assert_eq!(runtime_failure(&[&starting, &running, &stopped, &pending]), None);
    }

    #[test]
    fn a_container_that_cannot_be_created_is_reported_with_the_kubelets_reason() {
        let p = pod(
            "alpha-runtime-x",
            serde_json::json!([{"name": "bot-runtime", "image": "r", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"botfleet-postgres\" not found"}}}]),
        );
        assert_eq!(
            runtime_failure(&[&p]).as_deref(),
            Some(
                "pod alpha-runtime-x: container bot-runtime cannot start (CreateContainerConfigError): secret \"botfleet-postgres\" not found"
            )
        );
    }

    #[test]
    fn a_termination_message_is_masked_and_cut_to_its_end() {
        let token = "123456789:AAHfiqksKZ8WmR2zSjiQ7_v4TMAKdiHm9T0";
        let long = format!("{} {token} the end", "x".repeat(3000));
        let why = runtime_failure(&[&crash_looping("p", &long)]).unwrap();
        assert!(!why.contains(token), "{why}");
        assert!(why.ends_with("the end") && why.contains('…'), "the runtime's last words are kept");
        assert!(why.chars().count() < TERMINATION_MESSAGE_MAX + 100);
    }

    #[test]
    fn a_bot_with_ready_pods_and_a_registered_webhook_is_ready_and_reports_what_it_learned() {
        let (s, requeue) = applied(&BotInstanceStatus::default(), &running(), 7, t("2026-01-01T00:00:00Z"));
        assert_eq!(requeue, None);
        assert_eq!(s.observed_generation, Some(7));
        for (type_, reason) in [
            ("Ready", "Running"),
            ("TokenValid", "Valid"),
            ("WebhookRegistered", "Registered"),
            ("TokenSecretWatched", "Labelled"),
            ("PayloadKeysValid", "Mounted"),
        ] {
            let c = condition(&s.conditions, type_).unwrap();
            assert_eq!((c.status, c.reason.as_str(), c.observed_generation), (ConditionStatus::True, reason, 7), "{type_}");
        }
        assert_eq!((s.username.as_deref(), s.bot_id, s.ready_replicas), (Some("alpha_bot"), Some(42), Some(2)));
        assert_eq!(s.webhook.unwrap().pending_update_count, 3);
        assert_eq!(s.config_hash.as_deref(), Some("sha256:cccc"));
    }

    #[test]
    fn no_ready_pod_is_a_rollout_in_progress_checked_again_soon() {
        let a = Applied { ready_replicas: 0, ..running() };
        let (s, requeue) = applied(&BotInstanceStatus::default(), &a, 1, t("2026-01-01T00:00:00Z"));
        let ready = condition(&s.conditions, "Ready").unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_str(), ready.message.as_str()),
            (ConditionStatus::False, "RolloutInProgress", "0 of 2 replicas ready")
        );
        assert_eq!(requeue, Some(ROLLOUT_POLL));
    }

    #[test]
    fn a_failed_set_webhook_makes_the_bot_not_ready_and_retries_soon() {
        let a = Applied { webhook: Webhook::Failed { message: "bad webhook".into() }, webhook_info: None, ..running() };
        let (s, requeue) = applied(&BotInstanceStatus::default(), &a, 1, t("2026-01-01T00:00:00Z"));
        assert_eq!(condition(&s.conditions, "WebhookRegistered").unwrap().reason, "SetWebhookFailed");
        assert_eq!(condition(&s.conditions, "Ready").unwrap().reason, "WebhookNotRegistered");
        assert_eq!(requeue, Some(RETRY_SOON));
    }

    #[test]
    fn polling_drops_the_webhook_condition_and_needs_no_webhook_to_be_ready() {
        let (before, _) = applied(&BotInstanceStatus::default(), &running(), 1, t("2026-01-01T00:00:00Z"));
        let a = Applied { mode: IngressMode::Polling, webhook: Webhook::Polling { removed: true }, webhook_info: None, ..running() };
        let (s, _) = applied(&before, &a, 2, t("2026-01-01T00:01:00Z"));
        assert!(condition(&s.conditions, "WebhookRegistered").is_none());
        assert!(s.webhook.is_none());
        assert_eq!(condition(&s.conditions, "Ready").unwrap().reason, "Running");
    }

    #[test]
    fn a_retiring_bot_says_so_until_its_drain_ends_then_is_scaled_to_zero() {
        let since = t("2026-01-01T00:00:00Z");
        let left = Duration::from_secs(60);
        let a = Applied { scale_down: ScaleDown::Retire { keep: 2, left, start: false }, retiring_since: Some(since), ..running() };
        let (s, requeue) = applied(&BotInstanceStatus::default(), &a, 1, since);
        assert_eq!(condition(&s.conditions, "Ready").unwrap().reason, "Retiring");
        assert_eq!((s.retiring_since.as_deref(), requeue), (Some("2026-01-01T00:00:00Z"), Some(left)));
        let a = Applied { scale_down: ScaleDown::Stop, ..a };
        assert_eq!(condition(&applied(&s, &a, 1, since).0.conditions, "Ready").unwrap().reason, "ScaledToZero");
        let a = Applied { scale_down: ScaleDown::No, ..a };
        assert_eq!(applied(&s, &a, 1, since).0.retiring_since, None, "scaled up again: no longer retiring");
    }

    #[test]
    fn an_unlabelled_token_secret_is_reported_but_does_not_block_the_bot() {
        let a = Applied { token_secret_watched: false, ..running() };
        let (s, _) = applied(&BotInstanceStatus::default(), &a, 1, t("2026-01-01T00:00:00Z"));
        let c = condition(&s.conditions, "TokenSecretWatched").unwrap();
        assert_eq!((c.status, c.reason.as_str()), (ConditionStatus::False, "TokenSecretNotLabelled"));
        assert!(c.message.contains(super::super::build::TOKEN_SECRET_LABEL));
        assert_eq!(condition(&s.conditions, "Ready").unwrap().status, ConditionStatus::True);
    }

    #[test]
    fn an_unusable_payload_key_secret_blocks_the_bot_until_it_is_fixed() {
        let b = Blocked::payload_keys_invalid("Secret \"botfleet-payload-keys\" has no key \"keys\"".into());
        let (s, new) = blocked(&BotInstanceStatus::default(), &b, 1, t("2026-01-01T00:00:00Z"));
        assert!(new);
        for type_ in ["Ready", "PayloadKeysValid"] {
            let c = condition(&s.conditions, type_).unwrap();
            assert_eq!((c.status, c.reason.as_str()), (ConditionStatus::False, "PayloadKeysInvalid"), "{type_}");
            assert!(c.message.contains("has no key"));
        }
        let (fixed, _) = applied(&s, &running(), 2, t("2026-01-01T00:01:00Z"));
        let c = condition(&fixed.conditions, "PayloadKeysValid").unwrap();
        assert_eq!((c.status, c.reason.as_str()), (ConditionStatus::True, "Mounted"));
        assert!(c.message.starts_with("1 key(s)"));
    }

    #[test]
    fn a_block_is_new_only_when_its_reason_or_message_changes() {
        let b = Blocked::not_ready("InvalidSpec", "name too long");
        let (s, new) = blocked(&BotInstanceStatus::default(), &b, 1, t("2026-01-01T00:00:00Z"));
        assert!(new);
        assert_eq!(condition(&s.conditions, "Ready").unwrap().reason, "InvalidSpec");
        let (_, again) = blocked(&s, &b, 1, t("2026-01-01T00:01:00Z"));
        assert!(!again, "the same block twice: one Event");
        let (_, other) = blocked(&s, &Blocked::not_ready("InvalidSpec", "other"), 1, t("2026-01-01T00:01:00Z"));
        assert!(other);
    }
}
