//! [`BotStore`]: the SQL store as one namespace's bots see it.
//!
//! Rows name a bot by its fleet-wide id, `<namespace>/<name>`: the fleet shares one database,
//! and two `alpha` bots in two namespaces must never share a user, a session or a report.
//! Inside the runtime a bot is named by its Kubernetes name (that is what [`Member`]s carry
//! in the matching store, the outbox and timers, all of which live under the pool's namespaced
//! key prefix). This view translates at the one boundary where both meet: names are qualified
//! on the way in and the namespace is taken off on the way out, so handlers never see it.

use std::sync::Arc;

use super::admin::{Audience, BotNumbers, BotRegistration, BroadcastAttempt, BroadcastOutcome, NewAudit, Registry};
use super::locks::{ChatLock, LockOutcome, LockRequest, Locks, Settled};
use super::money::{
    Applied, Ledger, LedgerEntry, LedgerOutcome, NewPayment, NewQuote, Payment, Payments, Quote, QuoteRefusal, Quotes, RefundOutcome,
    Subscription, Subscriptions, VipNotice,
};
use super::referrals::{Completed, ReferralFlag, ReferralStats, Referrals};
use super::{EndReason, Funnel, Person, Safety, Session, Sessions, Store, StoreResult, User, UserStats, Users};
use crate::matching::Member;

pub struct BotStore {
    /// `<namespace>/`, the prefix of every bot id of this namespace.
    prefix: String,
    inner: Arc<dyn Store>,
}

impl BotStore {
    pub fn new(namespace: &str, inner: Arc<dyn Store>) -> Self {
        Self { prefix: format!("{namespace}/"), inner }
    }

    /// The fleet-wide id of a bot of this namespace.
    pub fn id(&self, bot: &str) -> String {
        format!("{}{bot}", self.prefix)
    }

    fn member_in(&self, m: &Member) -> Member {
        Member::new(self.id(&m.bot), m.user)
    }

    fn name(&self, id: String) -> String {
        match id.strip_prefix(&self.prefix) {
            Some(name) => name.to_string(),
            // Another namespace's bot can't be in this namespace's pool; keep the id visible.
            None => id,
        }
    }

    fn member_out(&self, m: Member) -> Member {
        Member::new(self.name(m.bot), m.user)
    }

    fn user_out(&self, mut u: User) -> User {
        u.bot = self.name(u.bot);
        u
    }

    fn quote_out(&self, mut q: Quote) -> Quote {
        q.bot = self.name(q.bot);
        q
    }

    fn payment_out(&self, mut p: Payment) -> Payment {
        p.bot = self.name(p.bot);
        p
    }

    fn lock_out(&self, l: ChatLock) -> ChatLock {
        ChatLock { locker: self.member_out(l.locker), ..l }
    }

    fn session_out(&self, s: Session) -> Session {
        Session { a: self.member_out(s.a), b: self.member_out(s.b), ended_by: s.ended_by.map(|m| self.member_out(m)), ..s }
    }
}

#[async_trait::async_trait]
impl Users for BotStore {
    async fn user(&self, bot: &str, user_id: i64) -> StoreResult<Option<User>> {
        Ok(self.inner.user(&self.id(bot), user_id).await?.map(|u| self.user_out(u)))
    }
    async fn user_or_create(&self, bot: &str, user_id: i64, language: &str, now_ms: i64) -> StoreResult<User> {
        Ok(self.user_out(self.inner.user_or_create(&self.id(bot), user_id, language, now_ms).await?))
    }
    async fn save_profile(&self, user: &User) -> StoreResult<()> {
        self.inner.save_profile(&User { bot: self.id(&user.bot), ..user.clone() }).await
    }
    async fn delete_user(&self, bot: &str, user_id: i64, now_ms: i64) -> StoreResult<bool> {
        self.inner.delete_user(&self.id(bot), user_id, now_ms).await
    }
    async fn set_reachable(&self, bot: &str, user_id: i64, reachable: bool) -> StoreResult<()> {
        self.inner.set_reachable(&self.id(bot), user_id, reachable).await
    }
    async fn set_broadcasts(&self, bot: &str, user_id: i64, on: bool) -> StoreResult<()> {
        self.inner.set_broadcasts(&self.id(bot), user_id, on).await
    }
    async fn broadcasts_on(&self, bot: &str, user_id: i64) -> StoreResult<bool> {
        self.inner.broadcasts_on(&self.id(bot), user_id).await
    }
    async fn record_activity(&self, bot: &str, user_id: i64, username: Option<&str>, day: i64) -> StoreResult<()> {
        self.inner.record_activity(&self.id(bot), user_id, username, day).await
    }
    async fn restrict(&self, user_id: i64, until_ms: Option<i64>, now_ms: i64) -> StoreResult<()> {
        self.inner.restrict(user_id, until_ms, now_ms).await
    }
    async fn person(&self, user_id: i64) -> StoreResult<Option<Person>> {
        self.inner.person(user_id).await
    }
    async fn record_event(&self, bot: &str, user_id: i64, event: Funnel, reference: &str, at_ms: i64) -> StoreResult<()> {
        self.inner.record_event(&self.id(bot), user_id, event, reference, at_ms).await
    }
    async fn count_users(&self, bot: &str) -> StoreResult<u64> {
        self.inner.count_users(&self.id(bot)).await
    }
    async fn adopt_legacy_bot(&self, name: &str, id: &str) -> StoreResult<u64> {
        self.inner.adopt_legacy_bot(name, id).await
    }
}

#[async_trait::async_trait]
impl Safety for BotStore {
    async fn record_block(&self, by: &Member, other: &Member, now_ms: i64) -> StoreResult<()> {
        self.inner.record_block(&self.member_in(by), &self.member_in(other), now_ms).await
    }
    async fn blocked_by(&self, by: i64) -> StoreResult<Vec<i64>> {
        self.inner.blocked_by(by).await
    }
    async fn blockers_of(&self, other: i64) -> StoreResult<Vec<i64>> {
        self.inner.blockers_of(other).await
    }
    async fn record_report(&self, by: &Member, other: &Member, session_id: Option<i64>, now_ms: i64) -> StoreResult<i64> {
        self.inner.record_report(&self.member_in(by), &self.member_in(other), session_id, now_ms).await
    }
    async fn set_report_reason(&self, report_id: i64, by: &Member, reason: &str) -> StoreResult<bool> {
        self.inner.set_report_reason(report_id, &self.member_in(by), reason).await
    }
    async fn reporters_since(&self, person: i64, since_ms: i64) -> StoreResult<u64> {
        self.inner.reporters_since(person, since_ms).await
    }
}

#[async_trait::async_trait]
impl Sessions for BotStore {
    async fn start_session(&self, a: &Member, b: &Member, started_ms: i64) -> StoreResult<i64> {
        self.inner.start_session(&self.member_in(a), &self.member_in(b), started_ms).await
    }
    async fn end_session(
        &self,
        a: &Member,
        b: &Member,
        by: Option<&Member>,
        reason: EndReason,
        ended_ms: i64,
    ) -> StoreResult<Option<Session>> {
        let by = by.map(|m| self.member_in(m));
        let ended = self.inner.end_session(&self.member_in(a), &self.member_in(b), by.as_ref(), reason, ended_ms).await?;
        Ok(ended.map(|s| self.session_out(s)))
    }
    async fn open_session(&self, a: &Member, b: &Member) -> StoreResult<Option<Session>> {
        Ok(self.inner.open_session(&self.member_in(a), &self.member_in(b)).await?.map(|s| self.session_out(s)))
    }
    async fn session(&self, id: i64) -> StoreResult<Option<Session>> {
        Ok(self.inner.session(id).await?.map(|s| self.session_out(s)))
    }
    async fn rate(&self, session_id: i64, rater: &Member, up: bool, now_ms: i64) -> StoreResult<bool> {
        self.inner.rate(session_id, &self.member_in(rater), up, now_ms).await
    }
    async fn stats(&self, member: &Member) -> StoreResult<UserStats> {
        self.inner.stats(&self.member_in(member)).await
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    async fn record_mirror(&self, session_id: i64, sender: &Member, mirror_chat_id: i64, message_id: i64, at_ms: i64) -> StoreResult<()> {
        self.inner.record_mirror(session_id, &self.member_in(sender), mirror_chat_id, message_id, at_ms).await
    }
    async fn mirror_messages(&self, session_id: i64) -> StoreResult<Vec<(Member, i64, i64)>> {
        let found = self.inner.mirror_messages(session_id).await?;
        Ok(found.into_iter().map(|(m, chat, id)| (self.member_out(m), chat, id)).collect())
    }
}

#[async_trait::async_trait]
impl Quotes for BotStore {
    async fn create_quote(&self, quote: &NewQuote) -> StoreResult<Quote> {
        let quote = NewQuote { bot: self.id(&quote.bot), ..quote.clone() };
        Ok(self.quote_out(self.inner.create_quote(&quote).await?))
    }
    async fn quote(&self, bot: &str, id: &str) -> StoreResult<Option<Quote>> {
        Ok(self.inner.quote(&self.id(bot), id).await?.map(|q| self.quote_out(q)))
    }
    async fn claim_quote(&self, bot: &str, id: &str, payer: i64, query_id: &str, now_ms: i64) -> StoreResult<Result<Quote, QuoteRefusal>> {
        Ok(self.inner.claim_quote(&self.id(bot), id, payer, query_id, now_ms).await?.map(|q| self.quote_out(q)))
    }
    // Campaign keys are fleet-wide already (`<namespace>/<name>/<uid>`): passed as they are.
    async fn campaign_redemptions(&self, campaign_key: &str, now_ms: i64) -> StoreResult<i64> {
        self.inner.campaign_redemptions(campaign_key, now_ms).await
    }
    async fn release_expired_holds(&self, now_ms: i64) -> StoreResult<Vec<String>> {
        self.inner.release_expired_holds(now_ms).await
    }
}

#[async_trait::async_trait]
impl Payments for BotStore {
    async fn claim_vip_notices(&self, bot: &str, now_ms: i64) -> StoreResult<Vec<VipNotice>> {
        self.inner.claim_vip_notices(&self.id(bot), now_ms).await
    }
    async fn reconcile_offset(&self, bot: &str) -> StoreResult<i64> {
        self.inner.reconcile_offset(&self.id(bot)).await
    }
    async fn save_reconcile_offset(&self, bot: &str, from: i64, to: i64, now_ms: i64) -> StoreResult<bool> {
        self.inner.save_reconcile_offset(&self.id(bot), from, to, now_ms).await
    }

    async fn record_mismatch(&self, bot: &str, charge_id: &str, kind: &str, stars: i64, now_ms: i64) -> StoreResult<()> {
        self.inner.record_mismatch(&self.id(bot), charge_id, kind, stars, now_ms).await
    }
    async fn apply_payment(&self, payment: &NewPayment) -> StoreResult<Applied> {
        let payment = NewPayment { bot: self.id(&payment.bot), ..payment.clone() };
        let applied = self.inner.apply_payment(&payment).await?;
        Ok(Applied { payment: self.payment_out(applied.payment), first: applied.first })
    }
    async fn payments_of(&self, bot: &str, user_id: i64, limit: u32) -> StoreResult<Vec<Payment>> {
        Ok(self.inner.payments_of(&self.id(bot), user_id, limit).await?.into_iter().map(|p| self.payment_out(p)).collect())
    }
    async fn payment_of_charge(&self, bot: &str, charge_id: &str) -> StoreResult<Option<Payment>> {
        Ok(self.inner.payment_of_charge(&self.id(bot), charge_id).await?.map(|p| self.payment_out(p)))
    }
    async fn refund_payment(&self, bot: &str, charge_id: &str, now_ms: i64) -> StoreResult<RefundOutcome> {
        Ok(match self.inner.refund_payment(&self.id(bot), charge_id, now_ms).await? {
            RefundOutcome::Unknown => RefundOutcome::Unknown,
            RefundOutcome::Already(p) => RefundOutcome::Already(self.payment_out(p)),
            RefundOutcome::Reversed { payment, vip_until_ms, credits_removed, credits_spent } => {
                RefundOutcome::Reversed { payment: self.payment_out(payment), vip_until_ms, credits_removed, credits_spent }
            }
        })
    }
}

#[async_trait::async_trait]
impl Ledger for BotStore {
    async fn append(&self, entry: &LedgerEntry) -> StoreResult<LedgerOutcome> {
        self.inner.append(&LedgerEntry { bot: self.id(&entry.bot), ..entry.clone() }).await
    }
    async fn credits(&self, bot: &str, user_id: i64) -> StoreResult<i64> {
        self.inner.credits(&self.id(bot), user_id).await
    }
}

#[async_trait::async_trait]
impl Locks for BotStore {
    async fn lock_chat(&self, request: &LockRequest) -> StoreResult<LockOutcome> {
        self.inner.lock_chat(&LockRequest { locker: self.member_in(&request.locker), ..request.clone() }).await
    }
    async fn chat_lock(&self, session_id: i64) -> StoreResult<Option<ChatLock>> {
        Ok(self.inner.chat_lock(session_id).await?.map(|l| self.lock_out(l)))
    }
    async fn settle_lock(&self, session_id: i64, by: Option<&Member>, reason: EndReason, now_ms: i64) -> StoreResult<Option<Settled>> {
        let by = by.map(|m| self.member_in(m));
        Ok(self.inner.settle_lock(session_id, by.as_ref(), reason, now_ms).await?.map(|s| Settled { lock: self.lock_out(s.lock), ..s }))
    }
}

#[async_trait::async_trait]
impl Referrals for BotStore {
    async fn referral_code(&self, bot: &str, user_id: i64, now_ms: i64) -> StoreResult<String> {
        self.inner.referral_code(&self.id(bot), user_id, now_ms).await
    }
    async fn code_owner(&self, bot: &str, code: &str) -> StoreResult<Option<i64>> {
        self.inner.code_owner(&self.id(bot), code).await
    }
    async fn record_referral(&self, bot: &str, referee: i64, referrer: i64, void: Option<ReferralFlag>, now_ms: i64) -> StoreResult<bool> {
        self.inner.record_referral(&self.id(bot), referee, referrer, void, now_ms).await
    }
    async fn complete_referral(&self, bot: &str, referee: i64, vip_days: i64, now_ms: i64) -> StoreResult<Option<Completed>> {
        self.inner.complete_referral(&self.id(bot), referee, vip_days, now_ms).await
    }
    async fn rewarded_referrer(&self, bot: &str, referee: i64) -> StoreResult<Option<i64>> {
        self.inner.rewarded_referrer(&self.id(bot), referee).await
    }
    async fn credit_commission(&self, bot: &str, referrer: i64, charge_id: &str, credits: i64, now_ms: i64) -> StoreResult<Option<i64>> {
        self.inner.credit_commission(&self.id(bot), referrer, charge_id, credits, now_ms).await
    }
    async fn reverse_commission(&self, bot: &str, charge_id: &str, now_ms: i64) -> StoreResult<Option<(i64, i64)>> {
        self.inner.reverse_commission(&self.id(bot), charge_id, now_ms).await
    }
    async fn referral_stats(&self, bot: &str, referrer: i64) -> StoreResult<ReferralStats> {
        self.inner.referral_stats(&self.id(bot), referrer).await
    }
}

#[async_trait::async_trait]
impl Subscriptions for BotStore {
    async fn record_subscription(&self, sub: &Subscription, first: bool, now_ms: i64) -> StoreResult<()> {
        self.inner.record_subscription(&Subscription { bot: self.id(&sub.bot), ..sub.clone() }, first, now_ms).await
    }
    async fn subscriptions_of(&self, bot: &str, user_id: i64) -> StoreResult<Vec<Subscription>> {
        let subs = self.inner.subscriptions_of(&self.id(bot), user_id).await?;
        Ok(subs.into_iter().map(|s| Subscription { bot: self.name(s.bot.clone()), ..s }).collect())
    }
    async fn cancel_subscription(&self, bot: &str, user_id: i64, plan_id: &str, now_ms: i64) -> StoreResult<Option<Subscription>> {
        let sub = self.inner.cancel_subscription(&self.id(bot), user_id, plan_id, now_ms).await?;
        Ok(sub.map(|s| Subscription { bot: self.name(s.bot.clone()), ..s }))
    }
}

// A registration names the bot by its fleet-wide id already: passed as it is.
#[async_trait::async_trait]
impl Registry for BotStore {
    async fn register_bot(&self, bot: &BotRegistration) -> StoreResult<()> {
        self.inner.register_bot(bot).await
    }

    async fn broadcast_outcome(&self, broadcast_id: i64, user_id: i64, outcome: BroadcastOutcome, now_ms: i64) -> StoreResult<bool> {
        self.inner.broadcast_outcome(broadcast_id, user_id, outcome, now_ms).await
    }

    async fn broadcast_attempt(&self, broadcast_id: i64, user_id: i64, now_ms: i64) -> StoreResult<BroadcastAttempt> {
        self.inner.broadcast_attempt(broadcast_id, user_id, now_ms).await
    }

    async fn stop_broadcast(&self, id: i64, status: &str, reason: &str, now_ms: i64) -> StoreResult<bool> {
        self.inner.stop_broadcast(id, status, reason, now_ms).await
    }

    async fn broadcast_unsent(&self, broadcast_id: i64, user_id: i64) -> StoreResult<()> {
        self.inner.broadcast_unsent(broadcast_id, user_id).await
    }

    async fn bot_stats(&self, bot: &str, now_ms: i64) -> StoreResult<(BotNumbers, i64)> {
        self.inner.bot_stats(&self.id(bot), now_ms).await
    }

    async fn set_star_balance(&self, bot: &str, stars: i64, now_ms: i64) -> StoreResult<bool> {
        self.inner.set_star_balance(&self.id(bot), stars, now_ms).await
    }

    async fn bot_admins(&self, bot: &str) -> StoreResult<Vec<i64>> {
        self.inner.bot_admins(&self.id(bot)).await
    }

    async fn fleet_admins(&self) -> StoreResult<Vec<i64>> {
        self.inner.fleet_admins().await
    }

    async fn set_fleet_admins(&self, ids: &[i64]) -> StoreResult<()> {
        self.inner.set_fleet_admins(ids).await
    }

    async fn ban_member(&self, bot: &str, user_id: i64, until_ms: i64, admin_id: i64, now_ms: i64) -> StoreResult<()> {
        self.inner.ban_member(&self.id(bot), user_id, until_ms, admin_id, now_ms).await
    }

    async fn unban_member(&self, bot: &str, user_id: i64) -> StoreResult<bool> {
        self.inner.unban_member(&self.id(bot), user_id).await
    }

    async fn audit_in_bot(&self, entry: &NewAudit) -> StoreResult<()> {
        let mut e = entry.clone();
        e.bot = e.bot.map(|b| self.id(&b));
        self.inner.audit_in_bot(&e).await
    }

    async fn broadcast_audience(&self, bot: &str, audience: &Audience, now_ms: i64) -> StoreResult<i64> {
        self.inner.broadcast_audience(&self.id(bot), audience, now_ms).await
    }

    async fn draft_broadcast(&self, bot: &str, text: &str, by: i64, total: i64, now_ms: i64) -> StoreResult<i64> {
        self.inner.draft_broadcast(&self.id(bot), text, by, total, now_ms).await
    }

    async fn settle_draft(&self, id: i64, bot: &str, by: i64, go: bool, now_ms: i64) -> StoreResult<bool> {
        self.inner.settle_draft(id, &self.id(bot), by, go, now_ms).await
    }
}
