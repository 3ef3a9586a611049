//! Money in SQL: quotes (offers made at Buy), payments (one per Telegram charge, applied
//! exactly once) and the credit ledger (append-only, never negative). The rules are
//! docs/MONEY.md; the SQL is `money_sql.rs`, the tables `migrations/*/0003_money.sql`.
//!
//! Commerce belongs to the member (person × bot): every row names the bot, and [`super::scoped::BotStore`]
//! qualifies it with the namespace like every other row.

use super::StoreResult;

/// How long a quote is honoured.
pub const QUOTE_TTL_MS: i64 = 15 * 60 * 1000;

/// How long a capped campaign's slot reserved at pre-checkout is held for the payment to
/// follow. Telegram sends `successful_payment` seconds after an approved checkout; a slot
/// still unpaid after this is released (docs/MONEY.md, "Redemption caps").
pub const CAP_HOLD_MS: i64 = 5 * 60 * 1000;

/// A capped campaign a quote was made under: the key of its fleet-wide count,
/// `<namespace>/<name>/<uid>`, and the cap in force when the quote was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignCap {
    pub key: String,
    pub max: i64,
}

/// A quote as asked for; the store gives it its (random) id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQuote {
    pub bot: String,
    pub user_id: i64,
    pub plan_id: String,
    pub price_stars: i64,
    pub base_stars: i64,
    pub campaign_id: Option<String>,
    pub vip_days: i64,
    pub lock_credits: i64,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// Set when the campaign has a redemption cap: the checkout must reserve a slot.
    pub campaign_cap: Option<CampaignCap>,
}

/// A stored quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub id: String,
    pub bot: String,
    pub user_id: i64,
    pub plan_id: String,
    pub price_stars: i64,
    pub base_stars: i64,
    pub campaign_id: Option<String>,
    pub vip_days: i64,
    pub lock_credits: i64,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// The pre_checkout_query that claimed it, if any.
    pub checkout_id: Option<String>,
    pub used_ms: Option<i64>,
    pub campaign_cap: Option<CampaignCap>,
}

/// Why a checkout may not claim a quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteRefusal {
    /// No such quote on this bot (a forged or foreign payload).
    Unknown,
    /// Someone else's quote (a forwarded invoice).
    NotYours,
    Expired,
    /// Claimed by another checkout, or paid already.
    Used,
    /// The quote's capped campaign has no slot left: nothing claimed.
    CapReached,
}

/// A payment to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    pub charge_id: String,
    pub bot: String,
    pub user_id: i64,
    pub quote_id: Option<String>,
    pub plan_id: String,
    pub stars: i64,
    pub vip_days: i64,
    pub lock_credits: i64,
    pub now_ms: i64,
    /// A subscription's payment: the end of the period it pays for. VIP then lasts at least
    /// until then (instead of stacking `vip_days`).
    pub subscription_until_ms: Option<i64>,
}

/// A recorded payment and what it granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub charge_id: String,
    pub bot: String,
    pub user_id: i64,
    pub quote_id: Option<String>,
    pub plan_id: String,
    pub stars: i64,
    pub vip_days: i64,
    pub lock_credits: i64,
    /// The member's VIP deadline right after this payment (None: no VIP days granted).
    pub vip_until_ms: Option<i64>,
    pub created_ms: i64,
    pub refunded_ms: Option<i64>,
    /// Credits of this payment already spent when it was refunded (not clawed back).
    pub refund_spent_credits: Option<i64>,
}

/// What [`Payments::refund_payment`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// No such charge on this bot.
    Unknown,
    /// Refunded before (by this or another replica, or Telegram's own `refunded_payment`):
    /// nothing changed. The payment as it is.
    Already(Payment),
    /// Reversed now.
    Reversed {
        payment: Payment,
        /// The member's VIP deadline after the reversal (None: the payment granted no VIP
        /// days, or the member's VIP had already ended or the profile is gone).
        vip_until_ms: Option<i64>,
        /// Credits taken back (the ledger row `refund:<charge>`).
        credits_removed: i64,
        /// The payment's credits already spent: not taken back.
        credits_spent: i64,
    },
}

/// The result of [`Payments::apply_payment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub payment: Payment,
    /// False: the charge was applied before (by this or another replica); nothing changed.
    pub first: bool,
}

/// One credit change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Unique: an entry with a key already in the ledger is not written again.
    pub idem_key: String,
    pub bot: String,
    pub user_id: i64,
    /// Positive: credits added; negative: spent or removed. Never 0.
    pub delta: i64,
    /// `purchase`, `refund`, `lock`, `gift`, …
    pub reason: String,
    /// What it is about (a charge id, a chat).
    pub reference: String,
    pub created_ms: i64,
}

/// What [`Ledger::append`] did; each carries the balance after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerOutcome {
    Written {
        balance: i64,
    },
    /// The key was in the ledger already: nothing written.
    Duplicate {
        balance: i64,
    },
    /// A debit larger than the balance: nothing written.
    Insufficient {
        balance: i64,
    },
}

#[async_trait::async_trait]
pub trait Quotes: Send + Sync + 'static {
    /// Stores a new quote under a random id.
    async fn create_quote(&self, quote: &NewQuote) -> StoreResult<Quote>;
    /// The quote `id` of `bot` (None if it is not this bot's).
    async fn quote(&self, bot: &str, id: &str) -> StoreResult<Option<Quote>>;
    /// A checkout (`query_id`) by `payer` claims the quote: atomically, so one quote is
    /// approved for one checkout only (the same query may claim it again: a retried update).
    /// With a capped campaign, the same transaction reserves a slot of the campaign's count
    /// until `now_ms + CAP_HOLD_MS` (first releasing that campaign's expired holds); no slot
    /// left refuses with [`QuoteRefusal::CapReached`] and claims nothing.
    async fn claim_quote(&self, bot: &str, id: &str, payer: i64, query_id: &str, now_ms: i64) -> StoreResult<Result<Quote, QuoteRefusal>>;
    /// Slots of a capped campaign held at `now_ms`: paid, or reserved and not yet expired.
    async fn campaign_redemptions(&self, campaign_key: &str, now_ms: i64) -> StoreResult<i64>;
    /// Releases every reservation that expired unpaid (each exactly once, whichever replicas
    /// sweep at the same time); returns the campaign keys released, one per slot.
    async fn release_expired_holds(&self, now_ms: i64) -> StoreResult<Vec<String>>;
}

/// A VIP notice due to a member (see [`Payments::claim_vip_notices`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipNotice {
    pub user_id: i64,
    pub language: String,
    pub vip_until_ms: i64,
    /// True: the VIP has ended; false: it ends within [`VIP_REMINDER_MS`].
    pub ended: bool,
}

/// How long before a VIP ends its member is reminded.
pub const VIP_REMINDER_MS: i64 = 24 * 3_600_000;
/// An ended VIP older than this gets no "ended" notice (a sweep that was down for a week does
/// not wake everyone up about the past).
pub const VIP_ENDED_NOTICE_WINDOW_MS: i64 = 7 * 24 * 3_600_000;

/// A member's subscription to a Monthly plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub bot: String,
    pub user_id: i64,
    pub plan_id: String,
    /// The first payment's charge id: how Telegram names the subscription.
    pub first_charge_id: String,
    pub until_ms: i64,
    pub canceled_ms: Option<i64>,
}

#[async_trait::async_trait]
pub trait Subscriptions: Send + Sync + 'static {
    /// Records a subscription's payment: the first (`first`) starts (or replaces) the member's
    /// subscription to the plan; a renewal moves its end to `until_ms` (never back).
    async fn record_subscription(&self, sub: &Subscription, first: bool, now_ms: i64) -> StoreResult<()>;
    /// The member's subscriptions, newest end first.
    async fn subscriptions_of(&self, bot: &str, user_id: i64) -> StoreResult<Vec<Subscription>>;
    /// Marks the member's subscription to `plan_id` cancelled; the subscription as it was
    /// (None: none).
    async fn cancel_subscription(&self, bot: &str, user_id: i64, plan_id: &str, now_ms: i64) -> StoreResult<Option<Subscription>>;
}

#[async_trait::async_trait]
pub trait Payments: Send + Sync + 'static {
    /// Claims the VIP notices due at `now_ms` on `bot`: reminders of deadlines within
    /// [`VIP_REMINDER_MS`] and notices of deadlines passed (within
    /// [`VIP_ENDED_NOTICE_WINDOW_MS`]), each deadline once per member however many replicas
    /// claim at once. Members the bot cannot reach are skipped.
    async fn claim_vip_notices(&self, bot: &str, now_ms: i64) -> StoreResult<Vec<VipNotice>>;
    /// How many of the bot's Telegram Stars transactions reconciliation has checked (0: none).
    async fn reconcile_offset(&self, bot: &str) -> StoreResult<i64>;
    /// Moves the offset from `from` (what the pass read) to `to`. False, and nothing saved,
    /// when another pass moved it first: that pass reported these transactions, so this one
    /// reports nothing — a pass that outlived its lease never reports a mismatch twice.
    async fn save_reconcile_offset(&self, bot: &str, from: i64, to: i64, now_ms: i64) -> StoreResult<bool>;
    /// Keeps a reconciliation mismatch for the admins' analytics, once per charge and kind.
    async fn record_mismatch(&self, bot: &str, charge_id: &str, kind: &str, stars: i64, now_ms: i64) -> StoreResult<()>;
    /// Applies a payment exactly once, in one transaction: records it (keyed by the charge
    /// id), stacks the VIP days onto the member's unexpired VIP, credits the ledger, marks
    /// the quote used. A charge applied before changes nothing and returns the first result.
    /// The member must exist.
    async fn apply_payment(&self, payment: &NewPayment) -> StoreResult<Applied>;
    /// The member's payments, newest first.
    async fn payments_of(&self, bot: &str, user_id: i64, limit: u32) -> StoreResult<Vec<Payment>>;
    /// The payment of a charge on `bot`.
    async fn payment_of_charge(&self, bot: &str, charge_id: &str) -> StoreResult<Option<Payment>>;
    /// Reverses a refunded charge once, in one transaction: marks it refunded, shortens the
    /// member's VIP by its days (never to before `now_ms`), takes its credits back as far as
    /// they are unspent (never below zero). A second call changes nothing.
    async fn refund_payment(&self, bot: &str, charge_id: &str, now_ms: i64) -> StoreResult<RefundOutcome>;
}

#[async_trait::async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Appends one entry unless its key is in the ledger, and never below a zero balance
    /// (decided in the entry's own transaction, whatever else debits at the same time).
    async fn append(&self, entry: &LedgerEntry) -> StoreResult<LedgerOutcome>;
    /// The member's balance: the sum of their ledger.
    async fn credits(&self, bot: &str, user_id: i64) -> StoreResult<i64>;
}
