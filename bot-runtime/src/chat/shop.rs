//! The shop: `/vip` (and the menu's VIP button) shows the member's VIP and credits and the
//! bot's plans at their effective price for this buyer now; Buy makes a quote and sends its
//! invoice. The rules are docs/MONEY.md.

use botfleet_crds::resolved::{Buyer, Quote as Price, ResolvedPlan};
use jiff::Timestamp;
use serde_json::json;

use super::protocol::{Callback, plan_ref};
use super::text_key::TextKey;
use super::{buttons, format_time};
use crate::bot::{Effects, HandleError};
use crate::hot::{Job, Lane};
use crate::store::User;
use crate::store::money::{NewQuote, QUOTE_TTL_MS};
use crate::texts::{Lang, escape};

/// The invoice payload of a quote (Telegram allows 1–128 bytes).
pub fn invoice_payload(quote_id: &str) -> String {
    format!("q:{quote_id}")
}

/// The quote id an invoice payload names, if it is one of ours.
pub fn quote_of_payload(payload: &str) -> Option<&str> {
    payload.strip_prefix("q:").filter(|id| !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Who is buying, as campaign audiences see them: first seen in the fleet (the person, which
/// outlives /delete_me), and whether they have VIP on this bot now.
async fn buyer(fx: &Effects<'_>, user: &User) -> Result<Buyer, HandleError> {
    let first_seen_ms = fx.store().person(user.user_id).await?.map_or(user.created_ms, |p| p.first_seen_ms);
    Ok(Buyer { first_seen: timestamp(first_seen_ms), has_active_vip: user.is_vip(fx.now_ms) })
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The effective price of a plan for this buyer now. Campaigns with a redemption cap are left
/// out until cap reservation exists (docs/MONEY.md): never more discounts than the admin allowed.
fn price(fx: &Effects<'_>, plan: &ResolvedPlan, buyer: Buyer) -> Option<Price> {
    fx.bot.cfg().quote(&plan.id, timestamp(fx.now_ms), buyer, |_| true)
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
    let mut lines = Vec::new();
    let mut rows = Vec::new();
    for plan in &cfg.plans {
        let Some(p) = price(fx, plan, buyer) else { continue };
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
            None => TextKey::ShopPlan.fmt(lang, &[("title", &title), ("price", &stars), ("description", &description)]),
        });
        // Button labels are plain text: the title as written.
        let label = TextKey::BtnBuy.fmt(lang, &[("title", &plan.title), ("price", &stars)]);
        rows.push(vec![(label, Callback::Buy { plan: plan_ref(&plan.id) })]);
    }
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
    let Some((plan, p)) = cfg.plans.iter().find(|p| plan_ref(&p.id) == plan).and_then(|plan| Some((plan, price(fx, plan, buyer)?)))
    else {
        return Ok(Some(TextKey::PlanGone.text(lang)));
    };
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
        })
        .await?;
    let mut grants = Vec::new();
    if plan.grants.vip_days > 0 {
        grants.push(TextKey::InvoiceVip.fmt(lang, &[("days", &plan.grants.vip_days.to_string())]));
    }
    if plan.grants.lock_credits > 0 {
        grants.push(TextKey::InvoiceCredits.fmt(lang, &[("credits", &plan.grants.lock_credits.to_string())]));
    }
    let description: String =
        TextKey::InvoiceDescription.fmt(lang, &[("grants", &grants.join(" + "))]).chars().take(255).collect();
    let params = json!({
        "chat_id": user.user_id,
        // The plan's title as the admin wrote it (the VipPlan allows 1–32 characters, as Telegram).
        "title": plan.title.chars().take(32).collect::<String>(),
        "description": description,
        "payload": invoice_payload(&quote.id),
        "currency": "XTR",
        "prices": [{"label": plan.title, "amount": p.price_stars}],
        // Set, so a forwarded invoice carries a link to the bot instead of a Pay button.
        "start_parameter": "vip",
    });
    fx.push(Job::to(&user.member(), Lane::Interactive, "sendInvoice", params));
    Ok(None)
}
