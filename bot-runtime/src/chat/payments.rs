//! Taking a payment: `pre_checkout_query` (approve or decline, inline, within Telegram's 10 s),
//! `successful_payment` (apply exactly once and tell the buyer), and what Telegram requires of
//! bots that sell: `/paysupport`, `/terms`, and `/history`. The rules are docs/MONEY.md.

use std::time::Duration;

use serde_json::json;

use super::shop::quote_of_payload;
use super::text_key::TextKey;
use super::{format_time, lang_of, load_user};
use crate::bot::{Effects, HandleError};
use crate::ingress::update::{PreCheckoutQuery, SuccessfulPayment};
use crate::store::money::{NewPayment, QuoteRefusal};
use crate::store::{Funnel, User};
use crate::texts::{Lang, escape};

/// How long the answer to a pre-checkout query may take: Telegram gives 10 s from the
/// payer's tap, part of which is spent before the update reaches us.
const PRE_CHECKOUT_ANSWER_TIMEOUT: Duration = Duration::from_secs(8);

/// How many purchases /history lists.
const HISTORY_LIMIT: u32 = 20;

/// Approves the payment only if its quote is good for this payer now; declines with the
/// reason in the payer's language otherwise. Answered here, not through the outbox: the
/// outbox may be busy or rate-limited, and a late answer loses the sale.
pub(super) async fn on_pre_checkout(fx: &mut Effects<'_>, q: PreCheckoutQuery) -> Result<(), HandleError> {
    let user = load_user(fx, &q.from).await?;
    let lang = lang_of(fx.bot, &user);
    let verdict = check(fx, &user, &q).await?;
    let params = match verdict {
        Ok(()) => json!({"pre_checkout_query_id": q.id, "ok": true}),
        Err(reason) => json!({"pre_checkout_query_id": q.id, "ok": false, "error_message": reason.text(lang)}),
    };
    match fx.bot.api.call_with_timeout("answerPreCheckoutQuery", &params, PRE_CHECKOUT_ANSWER_TIMEOUT).await {
        Ok(_) => tracing::info!(bot = %fx.bot.name, approved = verdict.is_ok(), "pre-checkout answered"),
        // Too late or refused by Telegram: the payer's app says the payment failed and no
        // Stars move. Retrying the update would not revive the query.
        Err(e) => tracing::warn!(bot = %fx.bot.name, error = %e, "answerPreCheckoutQuery failed"),
    }
    Ok(())
}

/// Why a checkout is declined (the text is the `error_message`), or Ok to approve. Approval
/// claims the quote for this checkout (atomically: one checkout per quote).
async fn check(fx: &Effects<'_>, user: &User, q: &PreCheckoutQuery) -> Result<Result<(), TextKey>, HandleError> {
    let Some(id) = quote_of_payload(&q.invoice_payload).filter(|_| q.currency == "XTR") else {
        return Ok(Err(TextKey::PayRefusedUnknown));
    };
    let Some(quote) = fx.store().quote(&fx.bot.name, id).await? else {
        return Ok(Err(TextKey::PayRefusedUnknown));
    };
    if quote.user_id != q.from.id {
        return Ok(Err(TextKey::PayRefusedNotYours));
    }
    let cfg = fx.bot.cfg();
    if !cfg.bot.features.payments || !cfg.plans.iter().any(|p| p.id == quote.plan_id) {
        return Ok(Err(TextKey::PayRefusedPlanGone));
    }
    if q.total_amount != quote.price_stars {
        return Ok(Err(TextKey::PayRefusedAmount));
    }
    if user.is_restricted(fx.now_ms) {
        return Ok(Err(TextKey::PayRefusedRestricted));
    }
    Ok(match fx.store().claim_quote(&fx.bot.name, id, q.from.id, &q.id, fx.now_ms).await? {
        Ok(_) => Ok(()),
        Err(QuoteRefusal::Unknown) => Err(TextKey::PayRefusedUnknown),
        Err(QuoteRefusal::NotYours) => Err(TextKey::PayRefusedNotYours),
        Err(QuoteRefusal::Expired) => Err(TextKey::PayRefusedExpired),
        Err(QuoteRefusal::Used) => Err(TextKey::PayRefusedUsed),
    })
}

/// Applies the payment once (one store transaction keyed by the charge id) and tells the
/// buyer what they got. A redelivery — the same update, or the same charge in another update —
/// grants nothing and repeats the first confirmation, so a confirmation lost in a crash
/// between the database commit and the outbox commit is still sent.
pub(super) async fn on_successful_payment(fx: &mut Effects<'_>, user: &User, lang: Lang, sp: &SuccessfulPayment) -> Result<(), HandleError> {
    let me = user.member();
    let quote = match quote_of_payload(&sp.invoice_payload) {
        Some(id) => fx.store().quote(&fx.bot.name, id).await?.filter(|q| q.user_id == user.user_id),
        None => None,
    };
    let payment = NewPayment {
        charge_id: sp.telegram_payment_charge_id.clone(),
        bot: fx.bot.name.clone(),
        user_id: user.user_id,
        quote_id: quote.as_ref().map(|q| q.id.clone()),
        // A payment we can't match is still recorded (no grant) for admins to resolve.
        plan_id: quote.as_ref().map_or_else(|| "unknown".to_string(), |q| q.plan_id.clone()),
        stars: sp.total_amount,
        vip_days: quote.as_ref().map_or(0, |q| q.vip_days),
        lock_credits: quote.as_ref().map_or(0, |q| q.lock_credits),
        now_ms: fx.now_ms,
    };
    let applied = fx.store().apply_payment(&payment).await?;
    if applied.first {
        tracing::info!(bot = %fx.bot.name, plan = %applied.payment.plan_id, stars = applied.payment.stars, "payment applied");
        fx.store().record_event(&fx.bot.name, user.user_id, Funnel::Purchase, &sp.telegram_payment_charge_id, fx.now_ms).await?;
    } else {
        tracing::info!(bot = %fx.bot.name, "payment delivered again; nothing more granted");
    }
    if quote.is_none() {
        tracing::error!(bot = %fx.bot.name, "a payment without a matching quote was recorded without a grant");
        fx.say(&me, TextKey::PaidUnknown.fmt(lang, &[("stars", &sp.total_amount.to_string())]), None);
        return Ok(());
    }
    let p = &applied.payment;
    let vip = p.vip_until_ms.map(|until| TextKey::PaidVip.fmt(lang, &[("until", &format_time(until))])).unwrap_or_default();
    let credits = if p.lock_credits > 0 {
        let balance = fx.store().credits(&fx.bot.name, user.user_id).await?;
        TextKey::PaidCredits.fmt(lang, &[("credits", &balance.to_string())])
    } else {
        String::new()
    };
    let plan = plan_title(fx, &p.plan_id);
    fx.say(&me, TextKey::Paid.fmt(lang, &[("plan", &plan), ("vip", &vip), ("credits", &credits)]), None);
    Ok(())
}

/// A plan's title as the shop shows it (escaped), or its id once it is no longer sold.
fn plan_title(fx: &Effects<'_>, plan_id: &str) -> String {
    escape(fx.bot.cfg().plans.iter().find(|p| p.id == plan_id).map_or(plan_id, |p| p.title.as_str()))
}

/// `/history`: the member's purchases, newest first.
pub(super) async fn history(fx: &mut Effects<'_>, user: &User, lang: Lang) -> Result<(), HandleError> {
    let payments = fx.store().payments_of(&fx.bot.name, user.user_id, HISTORY_LIMIT).await?;
    let text = if payments.is_empty() {
        TextKey::HistoryEmpty.text(lang)
    } else {
        let lines: Vec<String> = payments
            .iter()
            .map(|p| {
                let refunded = if p.refunded_ms.is_some() { TextKey::HistoryRefunded.text(lang) } else { String::new() };
                TextKey::HistoryLine.fmt(
                    lang,
                    &[
                        ("date", &format_time(p.created_ms)),
                        ("plan", &plan_title(fx, &p.plan_id)),
                        ("stars", &p.stars.to_string()),
                        ("refunded", &refunded),
                    ],
                )
            })
            .collect();
        TextKey::History.fmt(lang, &[("lines", &lines.join("\n"))])
    };
    fx.say(&user.member(), text, None);
    Ok(())
}

/// `/paysupport`: how to get help; with a question, the question goes to the bot's admins.
pub(super) fn pay_support(fx: &mut Effects<'_>, user: &User, lang: Lang, question: Option<&str>) {
    let me = user.member();
    let Some(question) = question else {
        fx.say(&me, TextKey::PaySupport.text(lang), None);
        return;
    };
    let cfg = fx.bot.cfg();
    let admins = &cfg.bot.admins.telegram_ids;
    if admins.is_empty() {
        fx.say(&me, TextKey::PaySupportUnavailable.text(lang), None);
        return;
    }
    let admin_lang = Lang::for_user(None, &cfg.bot.locale.default);
    let text = TextKey::PaySupportAdmin.fmt(admin_lang, &[("user", &user.user_id.to_string()), ("question", &escape(question))]);
    for admin in admins {
        fx.say(&fx.bot.member(*admin), text.clone(), None);
    }
    fx.say(&me, TextKey::PaySupportSent.text(lang), None);
}

/// `/terms`: the terms of sale.
pub(super) fn sale_terms(fx: &mut Effects<'_>, user: &User, lang: Lang) {
    fx.say(&user.member(), TextKey::SaleTerms.text(lang), None);
}
