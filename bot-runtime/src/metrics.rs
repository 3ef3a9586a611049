//! The runtime's Prometheus metrics. Names are stable once shipped (dashboards and alerts use
//! them); labels are `bot`, `pool`, `method`, `outcome`, `tier`, `kind` — never a user id.

use prometheus::{Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    updates: IntCounterVec,
    handling: HistogramVec,
    matches: IntCounterVec,
    queue_length: IntGaugeVec,
    active_chats: IntGaugeVec,
    relayed: IntCounterVec,
    chatting_senders: IntCounterVec,
    outbox_depth: IntGaugeVec,
    outbox_oldest: prometheus::GaugeVec,
    egress_backlog: prometheus::GaugeVec,
    inbound_depth: IntGaugeVec,
    polling_handoffs: IntCounterVec,
    api_calls: IntCounterVec,
    too_many: IntCounterVec,
    timers: IntCounterVec,
    delivery: HistogramVec,
    given_up: IntCounterVec,
    media_refused: IntCounterVec,
    media_reserved: IntGaugeVec,
    media_budget: IntGaugeVec,
    reservations: IntCounterVec,
    purchases: IntCounterVec,
    revenue: IntCounterVec,
    pre_checkout: HistogramVec,
    campaign_redemptions: IntGaugeVec,
    locks: IntCounterVec,
    referrals: IntCounterVec,
    vip_notices: IntCounterVec,
    admin_logins: IntCounterVec,
    admin_actions: IntCounterVec,
    broadcast_messages: IntCounterVec,
    admin_alerts: IntCounterVec,
    admin_api_limited: IntCounterVec,
    reconciliation: IntCounterVec,
    search_timeouts: IntCounterVec,
    worker_restarts: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    // Registration fails only for a duplicate name: a programming error caught by the tests.
    r.register(Box::new(c.clone())).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(g.clone())).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(h.clone())).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    h
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let fast = vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
        let slow = vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
        let outbox_oldest = prometheus::GaugeVec::new(
            Opts::new("botfleet_outbox_oldest_age_seconds", "Age of the oldest job waiting in the bot's outbox"),
            &["bot"],
        )
        .unwrap_or_else(|e| panic!("metric: {e}"));
        r.register(Box::new(outbox_oldest.clone())).unwrap_or_else(|e| panic!("metric: {e}"));
        let egress_backlog = prometheus::GaugeVec::new(
            Opts::new(
                "botfleet_egress_backlog_seconds",
                "Seconds the bot's interactive outbox takes to deliver at its per-bot rate; past EGRESS_BACKLOG_SECONDS new updates wait (503 / polling paused)",
            ),
            &["bot"],
        )
        .unwrap_or_else(|e| panic!("metric: {e}"));
        r.register(Box::new(egress_backlog.clone())).unwrap_or_else(|e| panic!("metric: {e}"));
        Self {
            updates: counter(&r, "botfleet_updates_total", "Updates received, by outcome", &["bot", "outcome"]),
            handling: histogram(
                &r,
                "botfleet_update_handling_seconds",
                "Time from receiving an update to its effects being durable",
                &["bot"],
                fast,
            ),
            matches: counter(&r, "botfleet_matches_total", "Chats started by matching", &["pool", "tier"]),
            queue_length: gauge(&r, "botfleet_queue_length", "Members waiting for a partner", &["pool", "tier"]),
            active_chats: gauge(&r, "botfleet_active_chats", "Chats in progress in the pool", &["pool"]),
            relayed: counter(&r, "botfleet_relayed_messages_total", "Chat messages relayed to a partner, by kind", &["bot", "kind"]),
            chatting_senders: counter(
                &r,
                "botfleet_chatting_sender_reads_total",
                "Profiles of senders in a chat, by where they came from (cached: this process's copy from earlier in the same chat; database)",
                &["bot", "from"],
            ),
            outbox_depth: gauge(&r, "botfleet_outbox_depth", "Jobs waiting in the bot's outbox", &["bot"]),
            outbox_oldest,
            egress_backlog,
            inbound_depth: gauge(
                &r,
                "botfleet_inbound_queue_depth",
                "Webhook updates waiting in the bot's durable inbound queue (taken while a replica was overloaded past its grace)",
                &["bot"],
            ),
            polling_handoffs: counter(
                &r,
                "botfleet_polling_handoffs_total",
                "Polled updates of a slow chat handed to the inbound queue so the next poll need not wait for it",
                &["bot"],
            ),
            api_calls: counter(
                &r,
                "botfleet_telegram_requests_total",
                "Bot API calls, by method and outcome (ok, error, rate_limited, blocked)",
                &["bot", "method", "outcome"],
            ),
            too_many: counter(&r, "botfleet_telegram_429_total", "429 Too Many Requests received from Telegram", &["bot"]),
            timers: counter(&r, "botfleet_timers_fired_total", "Timers fired, by kind", &["bot", "kind"]),
            delivery: histogram(&r, "botfleet_outbox_delivery_seconds", "Time from enqueue to a successful send", &["bot"], slow),
            given_up: counter(
                &r,
                "botfleet_outbox_given_up_total",
                "Outbox jobs given up, by reason (expired: kept failing past the lane's maximum age; refused: a 4xx; backlog: their chat already had the maximum backlog queued)",
                &["bot", "reason"],
            ),
            media_refused: counter(
                &r,
                "botfleet_media_relays_refused_total",
                "Cross-bot media not relayed, the sender told why, by reason (busy: this process's download slots were taken; budget: the fleet's media budget in Redis was full; user_cap: the sender's bytes per window; too_big: over Telegram's 20 MB; failed: Telegram refused the download)",
                &["bot", "reason"],
            ),
            media_reserved: gauge(
                &r,
                "botfleet_media_reserved_bytes",
                "Bytes of cross-bot media reserved in the hot store now, fleet-wide (against botfleet_media_budget_bytes)",
                &[],
            ),
            media_budget: gauge(&r, "botfleet_media_budget_bytes", "The fleet's media budget this process applies (MEDIA_BUDGET_MIB)", &[]),
            reservations: counter(
                &r,
                "botfleet_send_reservations_total",
                "Calls to the shared send limiter, by outcome (go, bot_wait, chat_wait): calls per send is all over go",
                &["bot", "outcome"],
            ),
            purchases: counter(
                &r,
                "botfleet_purchases_total",
                "Checkouts and payments by plan and outcome (approved, declined: pre-checkout; paid; refunded)",
                &["bot", "plan", "outcome"],
            ),
            revenue: counter(&r, "botfleet_stars_revenue_total", "Telegram Stars received, by plan (before refunds)", &["bot", "plan"]),
            pre_checkout: histogram(
                &r,
                "botfleet_pre_checkout_seconds",
                "Time from receiving a pre_checkout_query to Telegram accepting its answer (the deadline is 10 s)",
                &["bot"],
                vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0],
            ),
            campaign_redemptions: gauge(
                &r,
                "botfleet_campaign_redemptions",
                "Redemption slots of a capped campaign held (paid, or reserved by a checkout in progress), fleet-wide, as last read by this replica",
                &["namespace", "campaign"],
            ),
            locks: counter(
                &r,
                "botfleet_chat_locks_total",
                "Lock chat by outcome: locked (credits debited), insufficient (not enough credits), kept (a partner's Next or Stop refused), returned (a lock that ended early gave credits back)",
                &["bot", "outcome"],
            ),
            referrals: counter(
                &r,
                "botfleet_referrals_total",
                "Referrals by outcome: joined (through a link), rewarded (counted), commission (a share of a purchase credited), or the flag of one that does not count (self, not_new, loop, farming)",
                &["bot", "outcome"],
            ),
            vip_notices: counter(
                &r,
                "botfleet_vip_notices_total",
                "VIP notices queued, by kind: reminder (a day before the end), ended",
                &["bot", "kind"],
            ),
            admin_logins: counter(
                &r,
                "botfleet_admin_logins_total",
                "Admin login steps by outcome (code_sent, code_not_sent, logged_in, wrong_code, limited)",
                &["outcome"],
            ),
            admin_actions: counter(
                &r,
                "botfleet_admin_actions_total",
                "Admin actions by action (ban, unban, gift, refund, view_user, login, logout) and outcome",
                &["action", "outcome"],
            ),
            broadcast_messages: counter(
                &r,
                "botfleet_broadcast_messages_total",
                "Broadcast messages by what became of them: delivered, failed (refused for good or expired), blocked (the member blocked the bot)",
                &["bot", "outcome"],
            ),
            admin_alerts: counter(
                &r,
                "botfleet_admin_alerts_total",
                "Alerts a bot sent to its admins' chats, by kind: restricted (a person restricted after reports), queue_wait (a search timed out), payments (reconciliation mismatches)",
                &["bot", "kind"],
            ),
            admin_api_limited: counter(
                &r,
                "botfleet_admin_api_limited_total",
                "Admin API requests refused with 429 by the per-minute limit, by scope (a bot's namespace/name, or fleet)",
                &["scope"],
            ),
            reconciliation: counter(
                &r,
                "botfleet_reconciliation_mismatches_total",
                "Telegram Stars transactions that do not match this bot's payments, by kind: unknown_charge, amount, refund_not_applied, unknown_refund (each counted once; the log names the charge)",
                &["bot", "kind"],
            ),
            search_timeouts: counter(
                &r,
                "botfleet_search_timeouts_total",
                "Searches that reached matching.maxSearchMinutes without a match (the searcher is told and leaves the queue)",
                &["pool"],
            ),
            worker_restarts: counter(
                &r,
                "botfleet_worker_restarts_total",
                "Background workers (outbox, timers, poller, sweeps) that panicked or returned before shutdown and were restarted",
                &["bot", "worker"],
            ),
            registry: r,
        }
    }

    pub fn update(&self, bot: &str, outcome: &str) {
        self.updates.with_label_values(&[bot, outcome]).inc();
    }
    pub fn handled_in(&self, bot: &str, seconds: f64) {
        self.handling.with_label_values(&[bot]).observe(seconds);
    }
    pub fn matched(&self, pool: &str, tier: &str) {
        self.matches.with_label_values(&[pool, tier]).inc();
    }
    pub fn set_queue_length(&self, pool: &str, tier: &str, n: u64) {
        self.queue_length.with_label_values(&[pool, tier]).set(n as i64);
    }
    pub fn set_active_chats(&self, pool: &str, n: u64) {
        self.active_chats.with_label_values(&[pool]).set(n as i64);
    }
    pub fn relayed(&self, bot: &str, kind: &str) {
        self.relayed.with_label_values(&[bot, kind]).inc();
    }
    /// A chatting sender's profile, `cached` or read from the `database`.
    pub fn chatting_sender(&self, bot: &str, from: &'static str) {
        self.chatting_senders.with_label_values(&[bot, from]).inc();
    }
    pub fn set_outbox(&self, bot: &str, depth: u64, oldest_ms: i64) {
        self.outbox_depth.with_label_values(&[bot]).set(depth as i64);
        self.outbox_oldest.with_label_values(&[bot]).set(oldest_ms.max(0) as f64 / 1000.0);
    }
    pub fn set_egress_backlog(&self, bot: &str, seconds: f64) {
        self.egress_backlog.with_label_values(&[bot]).set(seconds);
    }
    pub fn set_inbound_depth(&self, bot: &str, depth: u64) {
        self.inbound_depth.with_label_values(&[bot]).set(depth as i64);
    }
    pub fn polling_handoff(&self, bot: &str, updates: usize) {
        self.polling_handoffs.with_label_values(&[bot]).inc_by(updates as u64);
    }
    pub fn api_call(&self, bot: &str, method: &str, outcome: &str) {
        self.api_calls.with_label_values(&[bot, method, outcome]).inc();
    }
    pub fn too_many_requests(&self, bot: &str) {
        self.too_many.with_label_values(&[bot]).inc();
    }
    pub fn gave_up(&self, bot: &str, reason: &str) {
        self.given_up.with_label_values(&[bot, reason]).inc();
    }
    pub fn timer_fired(&self, bot: &str, kind: &str) {
        self.timers.with_label_values(&[bot, kind]).inc();
    }
    pub fn delivered_in(&self, bot: &str, seconds: f64) {
        self.delivery.with_label_values(&[bot]).observe(seconds);
    }
    pub fn send_reservation(&self, bot: &str, outcome: &str) {
        self.reservations.with_label_values(&[bot, outcome]).inc();
    }
    /// A cross-bot file not relayed, by reason (busy, budget, user_cap, too_big, failed).
    pub fn media_refused(&self, bot: &str, reason: &str) {
        self.media_refused.with_label_values(&[bot, reason]).inc();
    }
    pub fn set_media_reserved(&self, reserved: u64, budget: u64) {
        self.media_reserved.with_label_values(&[] as &[&str]).set(i64::try_from(reserved).unwrap_or(i64::MAX));
        self.media_budget.with_label_values(&[] as &[&str]).set(i64::try_from(budget).unwrap_or(i64::MAX));
    }
    pub fn backlog_dropped(&self, bot: &str) {
        self.gave_up(bot, "backlog");
    }

    pub fn purchase(&self, bot: &str, plan: &str, outcome: &str) {
        self.purchases.with_label_values(&[bot, plan, outcome]).inc();
    }
    /// A payment applied (the first time): counted as `paid`, its Stars as revenue.
    pub fn paid(&self, bot: &str, plan: &str, stars: i64) {
        self.purchases.with_label_values(&[bot, plan, "paid"]).inc();
        self.revenue.with_label_values(&[bot, plan]).inc_by(stars.max(0) as u64);
    }
    pub fn pre_checkout_answered_in(&self, bot: &str, seconds: f64) {
        self.pre_checkout.with_label_values(&[bot]).observe(seconds);
    }
    pub fn set_campaign_redemptions(&self, namespace: &str, campaign: &str, held: i64) {
        self.campaign_redemptions.with_label_values(&[namespace, campaign]).set(held);
    }
    pub fn worker_restarted(&self, bot: &str, worker: &str) {
        self.worker_restarts.with_label_values(&[bot, worker]).inc();
    }

    pub fn search_timed_out(&self, pool: &str) {
        self.search_timeouts.with_label_values(&[pool]).inc();
    }

    pub fn reconciliation_mismatch(&self, bot: &str, kind: &str) {
        self.reconciliation.with_label_values(&[bot, kind]).inc();
    }

    pub fn admin_login(&self, outcome: &str) {
        self.admin_logins.with_label_values(&[outcome]).inc();
    }

    pub fn admin_action(&self, action: &str, outcome: &str) {
        self.admin_actions.with_label_values(&[action, outcome]).inc();
    }

    pub fn broadcast_message(&self, bot: &str, outcome: &str) {
        self.broadcast_messages.with_label_values(&[bot, outcome]).inc();
    }

    pub fn admin_alert(&self, bot: &str, kind: &str) {
        self.admin_alerts.with_label_values(&[bot, kind]).inc();
    }

    pub fn admin_api_limited(&self, scope: &str) {
        self.admin_api_limited.with_label_values(&[scope]).inc();
    }

    pub fn vip_notice(&self, bot: &str, kind: &str) {
        self.vip_notices.with_label_values(&[bot, kind]).inc();
    }

    pub fn referral(&self, bot: &str, outcome: &str) {
        self.referrals.with_label_values(&[bot, outcome]).inc();
    }

    pub fn lock(&self, bot: &str, outcome: &str) {
        self.locks.with_label_values(&[bot, outcome]).inc();
    }

    /// A purchase counter's value (tests, the `--simulate` summary).
    pub fn purchases_count(&self, bot: &str, plan: &str, outcome: &str) -> u64 {
        self.purchases.with_label_values(&[bot, plan, outcome]).get()
    }

    /// Relayed messages of a bot, all kinds (for the `--simulate` summary).
    pub fn relayed_count(&self, bot: &str) -> u64 {
        ["text", "photo", "video", "voice", "audio", "document", "sticker", "animation", "video_note"]
            .iter()
            .map(|k| self.relayed.with_label_values(&[bot, k]).get())
            .sum()
    }
    /// The Prometheus text exposition.
    /// A quantile (0–1) of one of this registry's histograms, over every label set, in
    /// seconds: the upper bound of the bucket it falls in (None: no samples). For summaries
    /// (`local --simulate`), not for alerting.
    pub fn histogram_quantile(&self, name: &str, q: f64) -> Option<f64> {
        let families = self.registry.gather();
        let family = families.iter().find(|f| f.name() == name)?;
        let mut buckets: Vec<(f64, u64)> = Vec::new();
        let mut total = 0u64;
        for m in family.get_metric() {
            let h = m.get_histogram();
            total += h.get_sample_count();
            for (i, b) in h.get_bucket().iter().enumerate() {
                match buckets.get_mut(i) {
                    Some(slot) => slot.1 += b.cumulative_count(),
                    None => buckets.push((b.upper_bound(), b.cumulative_count())),
                }
            }
        }
        if total == 0 {
            return None;
        }
        let want = (q.clamp(0.0, 1.0) * total as f64).ceil() as u64;
        Some(buckets.iter().find(|(_, count)| *count >= want.max(1)).map_or(f64::INFINITY, |(bound, _)| *bound))
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
