//! Reconciliation with Telegram's Stars ledger (docs/MONEY.md, "Reconciliation"): a charge
//! Telegram took that the bot never applied, and a refund made at Telegram that was never
//! reversed here, are reported once each; what matches is not.

use bot_runtime::chat::reconcile::{self, MismatchKind, Reconciler, SETTLE_SECS, Tick};
use serde_json::json;

use crate::seam::{Person, Seam};
use crate::shop::{buy, shop_config};

/// Telegram's clock (the fake stamps transactions with the real time) past the settling delay.
fn settled_now() -> i64 {
    bot_runtime::bot::now_ms() + (SETTLE_SECS + 60) * 1000
}

async fn paid(s: &Seam, p: &Person, plan: &str, stars: i64) -> (String, String) {
    let payload = buy(s, p, plan).await;
    s.pre_checkout(p, &payload, stars).await.1.expect("approved");
    let charge = s.charge_in_fake(p, &payload, stars);
    s.paid(p, &payload, stars, &charge).await;
    (payload, charge)
}

#[tokio::test]
async fn an_unapplied_charge_and_a_refund_made_elsewhere_are_reported_once_each() {
    // Ann, the fake's first user, is also alpha's admin: she is alerted in Telegram.
    let mut cfg = shop_config();
    cfg.bot.admins.telegram_ids = vec![100_000_001];
    let s = Seam::with(vec![cfg]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    assert_eq!(ann.id, 100_000_001);
    let bot = s.bot("alpha");
    // A payment applied normally, and refunded normally: nothing to report.
    let (payload, charge) = paid(&s, &ann, "vip-week", 200).await;
    s.refunded(&ann, &payload, 200, &charge).await;
    // A charge Telegram took whose update never reached the bot.
    let lost_payload = buy(&s, &ann, "vip-month").await;
    let lost = s.charge_in_fake(&ann, &lost_payload, 375);
    // A payment applied here, then refunded at Telegram without the update reaching the bot.
    let (_, refunded_elsewhere) = paid(&s, &ann, "vip-week", 200).await;
    let refund = bot.api.call("refundStarPayment", &json!({"user_id": ann.id, "telegram_payment_charge_id": refunded_elsewhere})).await;
    refund.expect("Telegram refunds it");

    let found = reconcile::pass(bot, settled_now()).await.expect("a pass");
    let mut kinds: Vec<_> = found.iter().map(|m| (m.kind, m.charge.clone())).collect();
    kinds.sort_by_key(|(k, _)| k.as_str());
    assert_eq!(kinds, vec![(MismatchKind::RefundNotApplied, refunded_elsewhere), (MismatchKind::UnknownCharge, lost)], "{found:?}");
    let metrics = bot.metrics().render();
    assert!(metrics.contains(r#"botfleet_reconciliation_mismatches_total{bot="alpha",kind="unknown_charge"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"botfleet_admin_alerts_total{bot="alpha",kind="payments"} 1"#), "the admin is alerted once: {metrics}");
    // The next pass reads only what is new: nothing is reported twice.
    assert!(reconcile::pass(bot, settled_now()).await.expect("a pass").is_empty());
    assert!(bot.metrics().render().contains(r#"botfleet_admin_alerts_total{bot="alpha",kind="payments"} 1"#));
}

#[tokio::test]
async fn transactions_younger_than_the_settling_delay_wait_for_the_next_pass() {
    let s = Seam::with(vec![shop_config()]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let bot = s.bot("alpha");
    let payload = buy(&s, &ann, "vip-week").await;
    let lost = s.charge_in_fake(&ann, &payload, 200);
    // Right now the update may still be on its way: not a mismatch yet.
    assert!(reconcile::pass(bot, bot_runtime::bot::now_ms()).await.expect("a pass").is_empty());
    let found = reconcile::pass(bot, settled_now()).await.expect("a pass");
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].kind, found[0].charge.as_str()), (MismatchKind::UnknownCharge, lost.as_str()));
}

/// Two replicas of a bot tick at once: the lease makes one the reconciler, and it reports
/// each mismatch once; the other stays out until the lease is free. Even two passes that
/// overlap (a pass that outlived its lease) report a mismatch once: the first to move the
/// saved offset reports, the other nothing.
#[tokio::test]
async fn two_replicas_reconcile_a_bot_once() {
    let s = Seam::with(vec![shop_config()]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let (a, b) = (s.bot("alpha").clone(), s.replica("alpha", "replica-b").await);
    let payload = buy(&s, &ann, "vip-week").await;
    let lost = s.charge_in_fake(&ann, &payload, 200);

    let (mut on_a, mut on_b) = (Reconciler::new(&a), Reconciler::new(&b));
    let (ta, tb) = tokio::join!(on_a.tick(&a, settled_now()), on_b.tick(&b, settled_now()));
    let mut ticks = [ta, tb];
    ticks.sort_by_key(|t| matches!(t, Tick::NotLeader));
    let [Tick::Passed(found), Tick::NotLeader] = ticks else { panic!("one replica passes, the other is not the leader: {ticks:?}") };
    assert_eq!(found.iter().map(|m| m.charge.as_str()).collect::<Vec<_>>(), [lost.as_str()]);
    let reported = |bot: &bot_runtime::bot::Bot| {
        bot.metrics().render().contains(r#"botfleet_reconciliation_mismatches_total{bot="alpha",kind="unknown_charge"} 1"#)
    };
    assert!(reported(&a) != reported(&b), "counted by the replica that passed, once");
    // The next ticks: the leader keeps its lease and is not due; the other stays out.
    let (ta, tb) = tokio::join!(on_a.tick(&a, settled_now()), on_b.tick(&b, settled_now()));
    let mut ticks = [ta, tb];
    ticks.sort_by_key(|t| matches!(t, Tick::NotLeader));
    assert_eq!(ticks, [Tick::NotDue, Tick::NotLeader]);

    // Two passes at once, lease or not: one reports the new charge, the other nothing.
    let payload = buy(&s, &ann, "vip-month").await;
    let lost = s.charge_in_fake(&ann, &payload, 375);
    let (pa, pb) = tokio::join!(reconcile::pass(&a, settled_now()), reconcile::pass(&b, settled_now()));
    let mut all: Vec<_> = pa.expect("a pass").into_iter().chain(pb.expect("a pass")).map(|m| m.charge).collect();
    all.sort();
    assert_eq!(all, [lost], "each mismatch reported once across replicas");
}
