//! Referrals: `/invite` shows the member's link (`t.me/<bot>?start=ref_<code>`) and figures;
//! `/start ref_<code>` records who invited a newcomer; completing the profile counts it (the
//! referrer gets VIP days) unless it looks like abuse; a counted referee's purchases earn the
//! referrer a share as lock credits, taken back if the purchase is refunded. The rules are
//! docs/MONEY.md, "Referrals"; the transactions are `store/referrals.rs`.

use super::text_key::TextKey;
use super::{audience, format_time};
use crate::bot::{Effects, HandleError};
use crate::store::money::Payment;
use crate::store::referrals::{ReferralFlag, ReferralStatus};
use crate::store::{Stage, User};
use crate::texts::{Lang, escape};

/// The `start` parameter of an invite link: `ref_` and the code.
pub const PREFIX: &str = "ref_";

/// Whether the person is new to the fleet: this member is their first contact with any bot
/// (the person row, which outlives /delete_me, was made with it), they never deleted a
/// profile, and they have not completed this one.
async fn new_to_fleet(fx: &Effects<'_>, user: &User) -> Result<bool, HandleError> {
    if user.stage == Stage::Ready {
        return Ok(false);
    }
    Ok(match fx.store().person(user.user_id).await? {
        Some(p) => p.deleted_ms.is_none() && p.first_seen_ms >= user.created_ms,
        None => true,
    })
}

/// `/start ref_<code>`: remembers who invited this member (once; a code of another bot or of
/// nobody is ignored). Then the usual /start follows.
pub(super) async fn on_start(fx: &mut Effects<'_>, user: &User, code: &str) -> Result<(), HandleError> {
    if !fx.bot.cfg().bot.features.referrals {
        return Ok(());
    }
    let Some(referrer) = fx.store().code_owner(&fx.bot.name, code).await? else { return Ok(()) };
    let flag = if referrer == user.user_id {
        Some(ReferralFlag::SelfReferral)
    } else if !new_to_fleet(fx, user).await? {
        Some(ReferralFlag::NotNew)
    } else {
        None
    };
    if fx.store().record_referral(&fx.bot.name, user.user_id, referrer, flag, fx.now_ms).await? {
        let outcome = flag.map_or("joined", ReferralFlag::as_str);
        fx.bot.metrics().referral(&fx.bot.name, outcome);
        if let Some(flag) = flag {
            tracing::info!(bot = %fx.bot.name, flag = flag.as_str(), "a referral that never counts was recorded");
        }
    }
    Ok(())
}

/// The member completed the profile: count their referral, if they have one pending.
pub(super) async fn on_profile_done(fx: &mut Effects<'_>, user: &User) -> Result<(), HandleError> {
    let cfg = fx.bot.cfg();
    if !cfg.bot.features.referrals {
        return Ok(());
    }
    let days = i64::from(cfg.bot.referrals.reward_vip_days);
    let Some(done) = fx.store().complete_referral(&fx.bot.name, user.user_id, days, fx.now_ms).await? else { return Ok(()) };
    match done.status {
        ReferralStatus::Rewarded => {
            fx.bot.metrics().referral(&fx.bot.name, "rewarded");
            if let Some(until) = done.referrer_vip_until_ms {
                let referrer = fx.bot.member(done.referrer_user);
                let lang = audience(fx, &referrer).await?.lang;
                let text = TextKey::ReferralRewarded.fmt(lang, &[("days", &days.to_string()), ("until", &format_time(until))]);
                fx.say(&referrer, text, None);
            }
        }
        _ => {
            // Withheld: the referrer is not told (a farmer learns nothing); admins see the flag.
            let flag = done.flag.map_or("", ReferralFlag::as_str);
            fx.bot.metrics().referral(&fx.bot.name, flag);
            tracing::warn!(bot = %fx.bot.name, flag, "a referral was withheld");
        }
    }
    Ok(())
}

/// Credits the referrer of a counted referee their share of a purchase (once per charge):
/// Stars × percent ÷ 100 ÷ Stars-per-credit, rounded down.
pub(super) async fn on_purchase(fx: &mut Effects<'_>, payment: &Payment) -> Result<(), HandleError> {
    let cfg = fx.bot.cfg();
    if !cfg.bot.features.referrals {
        return Ok(());
    }
    let Some(referrer) = fx.store().rewarded_referrer(&fx.bot.name, payment.user_id).await? else { return Ok(()) };
    let r = &cfg.bot.referrals;
    let credits = share(payment.stars, r.purchase_share_percent, r.stars_per_credit);
    if let Some(balance) = fx.store().credit_commission(&fx.bot.name, referrer, &payment.charge_id, credits, fx.now_ms).await? {
        fx.bot.metrics().referral(&fx.bot.name, "commission");
        let to = fx.bot.member(referrer);
        let lang = audience(fx, &to).await?.lang;
        let text = TextKey::ReferralCommission.fmt(lang, &[("credits", &credits.to_string()), ("balance", &balance.to_string())]);
        fx.say(&to, text, None);
    }
    Ok(())
}

/// The referrer's share of a purchase of `stars`, in credits (rounded down; never negative).
pub fn share(stars: i64, percent: u32, stars_per_credit: u32) -> i64 {
    let per = i64::from(stars_per_credit.max(1)) * 100;
    (stars.max(0).saturating_mul(i64::from(percent))) / per
}

/// A purchase was refunded: take its commission back from the referrer (once, never below zero).
pub(super) async fn on_refund(fx: &mut Effects<'_>, charge_id: &str) -> Result<(), HandleError> {
    let Some((referrer, taken)) = fx.store().reverse_commission(&fx.bot.name, charge_id, fx.now_ms).await? else { return Ok(()) };
    tracing::info!(bot = %fx.bot.name, charge = charge_id, taken, "a referral commission was reversed with its purchase");
    if taken > 0 {
        let to = fx.bot.member(referrer);
        let lang = audience(fx, &to).await?.lang;
        fx.say(&to, TextKey::ReferralCommissionReversed.fmt(lang, &[("credits", &taken.to_string())]), None);
    }
    Ok(())
}

/// `/invite`: the link and the figures.
pub(super) async fn invite(fx: &mut Effects<'_>, user: &User, lang: Lang) -> Result<(), HandleError> {
    let me = user.member();
    let cfg = fx.bot.cfg();
    if !cfg.bot.features.referrals {
        fx.say(&me, TextKey::ReferralsOff.text(lang), None);
        return Ok(());
    }
    let code = fx.store().referral_code(&fx.bot.name, user.user_id, fx.now_ms).await?;
    let username = fx.bot.username().await?;
    let link = format!("https://t.me/{username}?start={PREFIX}{code}");
    let stats = fx.store().referral_stats(&fx.bot.name, user.user_id).await?;
    let r = &cfg.bot.referrals;
    let text = TextKey::Invite.fmt(
        lang,
        &[
            ("link", &escape(&link)),
            ("days", &r.reward_vip_days.to_string()),
            ("percent", &r.purchase_share_percent.to_string()),
            ("joined", &stats.joined.to_string()),
            ("counted", &stats.counted.to_string()),
            ("pending", &stats.pending.to_string()),
            ("not_counted", &stats.not_counted.to_string()),
            ("credits", &stats.credits_earned.to_string()),
        ],
    );
    fx.say(&me, text, None);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn the_share_is_rounded_down_to_whole_credits() {
        assert_eq!(share(250, 10, 10), 2, "25 Stars of share at 10 Stars a credit: 2 (5 Stars lost to rounding)");
        assert_eq!(share(99, 10, 10), 0);
        assert_eq!(share(100, 10, 10), 1);
        assert_eq!(share(1000, 50, 1), 500);
        assert_eq!(share(-5, 10, 10), 0);
        assert_eq!(share(i64::MAX, 50, 0), i64::MAX / 100, "no overflow, no division by zero");
    }
}
