//! The shop: `/vip` (and the menu's VIP button) shows the member's VIP and credits and the
//! bot's plans at their effective price for this buyer now; Buy makes a quote and sends its
//! invoice. The rules are docs/MONEY.md.

use botfleet_crds::resolved::{Buyer, Quote as Price, ResolvedPlan};
use botfleet_crds::vip_plan::Billing;
use jiff::Timestamp;
use serde_json::json;

use super::protocol::{Callback, plan_ref};
use super::text_key::TextKey;
use super::{buttons, format_time};
use crate::bot::{Effects, HandleError};
use crate::hot::{Job, Lane};
use crate::store::User;
use crate::store::money::{CampaignCap, NewQuote, QUOTE_TTL_MS};
use crate::texts::{Lang, escape};

/// Who is buying, as campaign audiences see them: first seen in the fleet (the person, which
/// outlives /delete_me), and whether they have VIP on this bot now.
async fn buyer(fx: &Effects<'_>, user: &User) -> Result<Buyer, HandleError> {
    let first_seen_ms = fx.store().person(user.user_id).await?.map_or(user.created_ms, |p| p.first_seen_ms);
    Ok(Buyer { first_seen: timestamp(first_seen_ms), has_active_vip: user.is_vip(fx.now_ms) })
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The active capped campaigns whose slots are all held now (paid, or reserved by a checkout
/// in progress): they price nothing until a slot is released.
async fn sold_out(fx: &Effects<'_>) -> Result<Vec<String>, HandleError> {
    let cfg = fx.bot.cfg();
    let now = timestamp(fx.now_ms);
    let mut out = Vec::new();
    for c in cfg.campaigns.iter().filter(|c| c.is_active(now)) {
        let Some(max) = c.max_redemptions else { continue };
        let held = fx.store().campaign_redemptions(&c.cap_key(&fx.bot.id.namespace), fx.now_ms).await?;
        fx.bot.metrics().set_campaign_redemptions(&fx.bot.id.namespace, &c.id, held);
        if held >= i64::from(max) {
            out.push(c.id.clone());
        }
    }
    Ok(out)
}

/// The effective price of a plan for this buyer now: the best campaign that still has a slot.
fn price(fx: &Effects<'_>, plan: &ResolvedPlan, buyer: Buyer, sold_out: &[String]) -> Option<Price> {
    fx.bot.cfg().quote(&plan.id, timestamp(fx.now_ms), buyer, |id| sold_out.iter().any(|s| s == id))
}

/// The cap of the campaign a price was made under, if it has one.
fn cap_of(fx: &Effects<'_>, p: &Price) -> Option<CampaignCap> {
    let cfg = fx.bot.cfg();
    let c = cfg.campaigns.iter().find(|c| Some(&c.id) == p.campaign_id.as_ref())?;
    Some(CampaignCap { key: c.cap_key(&fx.bot.id.namespace), max: i64::from(c.max_redemptions?) })
}

/// `/vip`: the member's VIP and credits, and the plans with a Buy button each.
pub(super) async fn show(fx: &mut Effects<'_>, user: &User, lang: Lang) -> Result<(), HandleError> {
    let me = user.member();
    let cfg = fx.bot.cfg();
    if !cfg.bot.features.payments {
        fx.say(&me, TextKey::ShopClosed.text(lang), None);
        return Ok(());
    }
    let status = match user.vip_until_ms.filter(|t| *t > fx.now_ms) {
        Some(until) => TextKey::ShopVipActive.fmt(lang, &[("until", &format_time(until))]),
        None => TextKey::ShopVipNone.text(lang),
    };
    let credits = fx.store().credits(&fx.bot.name, user.user_id).await?;
    let buyer = buyer(fx, user).await?;
    let sold_out = sold_out(fx).await?;
    let mut lines = Vec::new();
    let mut rows = Vec::new();
    for plan in &cfg.plans {
        let Some(p) = price(fx, plan, buyer, &sold_out) else { continue };
        let (title, description) = (escape(&plan.title), escape(&plan.description));
        let stars = p.price_stars.to_string();
        lines.push(match p.percent_off {
            Some(percent) => TextKey::ShopPlanDiscount.fmt(
                lang,
                &[
                    ("title", &title),
                    ("base", &p.base_stars.to_string()),
                    ("price", &stars),
                    ("percent", &percent.to_string()),
                    ("description", &description),
                ],
            ),
            None if plan.billing == Billing::Monthly => {
                TextKey::ShopPlanMonthly.fmt(lang, &[("title", &title), ("price", &stars), ("description", &description)])
            }
            None => TextKey::ShopPlan.fmt(lang, &[("title", &title), ("price", &stars), ("description", &description)]),
        });
        // Button labels are plain text: the title as written.
        let key = if plan.billing == Billing::Monthly { TextKey::BtnSubscribe } else { TextKey::BtnBuy };
        let label = key.fmt(lang, &[("title", &plan.title), ("price", &stars)]);
        rows.push(vec![(label, Callback::Buy { plan: plan_ref(&plan.id) })]);
    }
    // The member's running subscriptions, each with a way to cancel it.
    let mut subscriptions = Vec::new();
    for sub in fx.store().subscriptions_of(&fx.bot.name, user.user_id).await?.into_iter().filter(|s| s.until_ms > fx.now_ms) {
        let title = cfg.plans.iter().find(|p| p.id == sub.plan_id).map_or_else(|| sub.plan_id.clone(), |p| p.title.clone());
        let date = format_time(sub.until_ms);
        if sub.canceled_ms.is_some() {
            subscriptions.push(TextKey::ShopSubscriptionCancelled.fmt(lang, &[("title", &escape(&title)), ("date", &date)]));
        } else {
            subscriptions.push(TextKey::ShopSubscription.fmt(lang, &[("title", &escape(&title)), ("date", &date)]));
            let label = TextKey::BtnCancelSubscription.fmt(lang, &[("title", &title)]);
            rows.push(vec![(label, Callback::CancelSubscription { plan: plan_ref(&sub.plan_id) })]);
        }
    }
    let status = if subscriptions.is_empty() { status } else { format!("{status}\n{}", subscriptions.join("\n")) };
    let plans = if lines.is_empty() { TextKey::ShopEmpty.text(lang) } else { lines.join("\n\n") };
    let text = TextKey::Shop.fmt(lang, &[("status", &status), ("credits", &credits.to_string()), ("plans", &plans)]);
    fx.say(&me, text, if rows.is_empty() { None } else { Some(buttons(rows)) });
    Ok(())
}

/// `buy:<plan>`: a quote at the effective price now, and its invoice (through the outbox: it
/// is a message like any other). Returns the answer shown on the button.
pub(super) async fn buy(fx: &mut Effects<'_>, user: &User, lang: Lang, plan: &str) -> Result<Option<String>, HandleError> {
    let cfg = fx.bot.cfg();
    if !cfg.bot.features.payments {
        return Ok(Some(TextKey::ShopClosed.text(lang)));
    }
    let buyer = buyer(fx, user).await?;
    let sold_out = sold_out(fx).await?;
    let Some((plan, p)) =
        cfg.plans.iter().find(|p| plan_ref(&p.id) == plan).and_then(|plan| Some((plan, price(fx, plan, buyer, &sold_out)?)))
    else {
        return Ok(Some(TextKey::PlanGone.text(lang)));
    };
    // A discount this buyer would have had, but its cap is reached: say why the price is full.
    let missed = price(fx, plan, buyer, &[]).filter(|best| best.price_stars < p.price_stars);
    let quote = fx
        .store()
        .create_quote(&NewQuote {
            bot: fx.bot.name.clone(),
            user_id: user.user_id,
            plan_id: plan.id.clone(),
            price_stars: i64::from(p.price_stars),
            base_stars: i64::from(p.base_stars),
            campaign_id: p.campaign_id.clone(),
            vip_days: i64::from(plan.grants.vip_days),
            lock_credits: i64::from(plan.grants.lock_credits),
            created_ms: fx.now_ms,
            expires_ms: fx.now_ms + QUOTE_TTL_MS,
            campaign_cap: cap_of(fx, &p),
        })
        .await?;
    if let Some(best) = missed {
        let percent = best.percent_off.unwrap_or_default().to_string();
        fx.say(&user.member(), TextKey::ShopCapReached.fmt(lang, &[("percent", &percent), ("title", &escape(&plan.title))]), None);
    }
    let mut grants = Vec::new();
    if plan.grants.vip_days > 0 {
        grants.push(TextKey::InvoiceVip.fmt(lang, &[("days", &plan.grants.vip_days.to_string())]));
    }
    if plan.grants.lock_credits > 0 {
        grants.push(TextKey::InvoiceCredits.fmt(lang, &[("credits", &plan.grants.lock_credits.to_string())]));
    }
    let description: String = TextKey::InvoiceDescription.fmt(lang, &[("grants", &grants.join(" + "))]).chars().take(255).collect();
    if plan.billing == Billing::Monthly {
        // A subscription: Telegram sells it through an invoice link with its period, and
        // charges the same price every period until it is cancelled.
        let params = json!({
            "title": plan.title.chars().take(32).collect::<String>(),
            "description": description,
            "payload": fx.bot.payload_keys.sign(&fx.bot.id.to_string(), &quote.id),
            "currency": "XTR",
            "prices": [{"label": plan.title, "amount": p.price_stars}],
            "subscription_period": SUBSCRIPTION_PERIOD_SECS,
        });
        let link = fx.bot.api.call("createInvoiceLink", &params).await?;
        let Some(link) = link.as_str() else {
            return Err(HandleError::from(crate::telegram::TgError::Transport("createInvoiceLink answered without a link".into())));
        };
        let stars = p.price_stars.to_string();
        let text = TextKey::SubscribeLink.fmt(lang, &[("title", &escape(&plan.title)), ("price", &stars)]);
        let button = json!({"inline_keyboard": [[{"text": TextKey::BtnPaySubscription.fmt(lang, &[("price", &stars)]), "url": link}]]});
        fx.say(&user.member(), text, Some(button));
        return Ok(None);
    }
    let params = json!({
        "chat_id": user.user_id,
        // The plan's title as the admin wrote it (the VipPlan allows 1–32 characters, as Telegram).
        "title": plan.title.chars().take(32).collect::<String>(),
        "description": description,
        // Signed: pre-checkout refuses a payload this fleet did not make (payload.rs).
        "payload": fx.bot.payload_keys.sign(&fx.bot.id.to_string(), &quote.id),
        "currency": "XTR",
        "prices": [{"label": plan.title, "amount": p.price_stars}],
        // Set, so a forwarded invoice carries a link to the bot instead of a Pay button.
        "start_parameter": "vip",
    });
    fx.push(Job::to(&user.member(), Lane::Interactive, "sendInvoice", params));
    Ok(None)
}

/// Telegram's only subscription period (Bot API: `subscription_period` "must always be 2592000").
pub const SUBSCRIPTION_PERIOD_SECS: i64 = 2_592_000;

/// `sc:<plan>`: cancels the member's subscription to the plan at Telegram
/// (`editUserStarSubscription`), then here; it runs to the end of the period paid for.
pub(super) async fn cancel_subscription(
    fx: &mut Effects<'_>,
    user: &User,
    lang: Lang,
    plan: &str,
    message_id: Option<i64>,
) -> Result<Option<String>, HandleError> {
    let subs = fx.store().subscriptions_of(&fx.bot.name, user.user_id).await?;
    let Some(sub) = subs.into_iter().find(|s| plan_ref(&s.plan_id) == plan && s.until_ms > fx.now_ms) else {
        return Ok(Some(TextKey::ButtonStale.text(lang)));
    };
    let title = fx.bot.cfg().plans.iter().find(|p| p.id == sub.plan_id).map_or_else(|| sub.plan_id.clone(), |p| p.title.clone());
    let date = format_time(sub.until_ms);
    let done = TextKey::SubscriptionCancelled.fmt(lang, &[("title", &escape(&title)), ("date", &date)]);
    if sub.canceled_ms.is_none() {
        let params = json!({"user_id": user.user_id, "telegram_payment_charge_id": sub.first_charge_id, "is_canceled": true});
        match fx.bot.api.call("editUserStarSubscription", &params).await {
            Ok(_) => {}
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                tracing::warn!(bot = %fx.bot.name, error = %e, "Telegram refused to cancel a subscription");
                return Ok(Some(TextKey::SubscriptionCancelFailed.text(lang)));
            }
        }
        fx.store().cancel_subscription(&fx.bot.name, user.user_id, &sub.plan_id, fx.now_ms).await?;
    }
    if let Some(id) = message_id {
        super::edit_markup_off(fx, &user.member(), id);
    }
    fx.say(&user.member(), done, None);
    Ok(None)
}

/// How often each replica sweeps for capped-campaign holds that expired unpaid.
const HOLD_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Releases capped-campaign slots whose hold (`CAP_HOLD_MS` after an approved checkout) ran
/// out without a payment, and republishes the counts of the campaigns it released. Every
/// replica sweeps; each hold is released exactly once whoever sweeps (one atomic UPDATE in the
/// store). Correctness does not wait for the sweep: a reservation first releases its own
/// campaign's expired holds, and counts ignore expired holds; the sweep keeps the counters and
/// the `botfleet_campaign_redemptions` gauge current when nobody is buying.
pub async fn sweep_expired_holds(bot: std::sync::Arc<crate::bot::Bot>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut ticker = crate::bot::Ticker::new(HOLD_SWEEP_EVERY, shutdown);
    while ticker.tick().await {
        let now_ms = crate::bot::now_ms();
        match bot.store.release_expired_holds(now_ms).await {
            Ok(released) if released.is_empty() => {}
            Ok(mut released) => {
                tracing::info!(bot = %bot.id, slots = released.len(), "capped-campaign holds released unpaid");
                released.sort();
                released.dedup();
                for key in released {
                    if let Ok(held) = bot.store.campaign_redemptions(&key, now_ms).await {
                        let mut parts = key.splitn(3, '/');
                        if let (Some(ns), Some(name)) = (parts.next(), parts.next()) {
                            bot.metrics().set_campaign_redemptions(ns, name, held);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(bot = %bot.id, error = %e, "releasing expired campaign holds failed; retrying"),
        }
    }
}
