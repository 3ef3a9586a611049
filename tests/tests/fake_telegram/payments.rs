use std::time::Duration;

use botfleet_tests::fake_telegram::{InvoiceRef, PayOutcome, Settings};
use serde_json::{Value, json};

use crate::{Setup, drain_updates, setup};

fn invoice(chat: i64, amount: i64) -> Value {
    json!({"chat_id": chat, "title": "VIP week", "description": "7 days of VIP", "payload": "quote:42", "currency": "XTR", "prices": [{"label": "VIP", "amount": amount}]})
}

/// Answers the next pre_checkout_query as the bot would, after `delay`.
fn approve_next(s: &Setup, delay: Duration, ok: bool) -> tokio::task::JoinHandle<Value> {
    let api = s.api.clone();
    tokio::spawn(async move {
        loop {
            let updates = api.call("getUpdates", json!({"timeout": 5})).await.expect("poll");
            for u in updates.as_array().into_iter().flatten() {
                let next = u["update_id"].as_i64().unwrap() + 1;
                api.call("getUpdates", json!({"offset": next})).await.expect("confirm");
                if let Some(q) = u.get("pre_checkout_query") {
                    tokio::time::sleep(delay).await;
                    let params = if ok {
                        json!({"pre_checkout_query_id": q["id"], "ok": true})
                    } else {
                        json!({"pre_checkout_query_id": q["id"], "ok": false, "error_message": "Quote expired"})
                    };
                    return api
                        .call("answerPreCheckoutQuery", params)
                        .await
                        .map(|_| q.clone())
                        .unwrap_or_else(|e| json!({"answer_error": e.description}));
                }
            }
        }
    })
}

#[tokio::test]
async fn send_invoice_accepts_only_stars_with_exactly_one_price() {
    let s = setup().await;
    let msg = s.api.call("sendInvoice", invoice(s.user.id, 250)).await.unwrap();
    assert_eq!(msg["invoice"]["currency"], "XTR");
    assert_eq!(msg["invoice"]["total_amount"], 250);
    let mut two_prices = invoice(s.user.id, 250);
    two_prices["prices"] = json!([{"label": "a", "amount": 1}, {"label": "b", "amount": 2}]);
    assert_eq!(s.api.call("sendInvoice", two_prices).await.unwrap_err().code, 400);
    let mut usd = invoice(s.user.id, 250);
    usd["currency"] = json!("USD");
    assert_eq!(s.api.call("sendInvoice", usd).await.unwrap_err().code, 400);
    assert_eq!(s.api.call("sendInvoice", invoice(s.user.id, 0)).await.unwrap_err().code, 400);
    let link = s
        .api
        .call("createInvoiceLink", {
            let mut p = invoice(0, 100);
            p.as_object_mut().unwrap().remove("chat_id");
            p
        })
        .await
        .unwrap();
    assert!(link.as_str().unwrap().starts_with("https://t.me/$"));
}

#[tokio::test]
async fn approved_payment_produces_successful_payment_with_a_unique_charge_id() {
    let s = setup().await;
    drain_updates(&s.api).await;
    let msg = s.api.call("sendInvoice", invoice(s.user.id, 250)).await.unwrap();
    let bot = approve_next(&s, Duration::ZERO, true);
    let outcome = s.sim.pay("alpha_bot", s.user.id, InvoiceRef::Message { message_id: msg["message_id"].as_i64().unwrap() }).await.unwrap();
    let query = bot.await.unwrap();
    assert_eq!(query["invoice_payload"], "quote:42");
    assert_eq!(query["total_amount"], 250);
    let PayOutcome::Paid { telegram_payment_charge_id: charge, amount, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(amount, 250);
    let updates = drain_updates(&s.api).await;
    let paid = &updates.last().unwrap()["message"]["successful_payment"];
    assert_eq!(paid["telegram_payment_charge_id"], charge);
    assert_eq!(paid["invoice_payload"], "quote:42");
    assert_eq!(s.api.call("getMyStarBalance", json!({})).await.unwrap()["amount"], 250);
    // A second payment of the same invoice gets a different charge id.
    let bot = approve_next(&s, Duration::ZERO, true);
    let again = s.sim.pay("alpha_bot", s.user.id, InvoiceRef::Message { message_id: msg["message_id"].as_i64().unwrap() }).await.unwrap();
    bot.await.unwrap();
    let PayOutcome::Paid { telegram_payment_charge_id: charge2, .. } = again else { panic!() };
    assert_ne!(charge, charge2);
}

#[tokio::test]
async fn declined_pre_checkout_creates_no_payment() {
    let s = setup().await;
    drain_updates(&s.api).await;
    let link = s.api.call("createInvoiceLink", json!({"title": "Credits", "description": "10 lock credits", "payload": "q:1", "currency": "XTR", "prices": [{"label": "c", "amount": 50}]})).await.unwrap();
    let bot = approve_next(&s, Duration::ZERO, false);
    let outcome = s.sim.pay("alpha_bot", s.user.id, InvoiceRef::Link { invoice_link: link.as_str().unwrap().into() }).await.unwrap();
    bot.await.unwrap();
    assert_eq!(outcome, PayOutcome::Declined { error_message: "Quote expired".into() });
    assert_eq!(s.api.call("getMyStarBalance", json!({})).await.unwrap()["amount"], 0);
    let err = s.api.call("answerPreCheckoutQuery", json!({"pre_checkout_query_id": "1", "ok": false})).await.unwrap_err();
    assert_eq!(err.description, "Bad Request: ERROR_MESSAGE_EMPTY");
}

#[tokio::test]
async fn a_late_pre_checkout_answer_is_refused_and_the_payment_times_out() {
    let s = setup().await;
    s.sim.set_settings(Settings { pre_checkout_deadline_ms: 300, ..Settings::default() });
    drain_updates(&s.api).await;
    let msg = s.api.call("sendInvoice", invoice(s.user.id, 10)).await.unwrap();
    let bot = approve_next(&s, Duration::from_millis(600), true);
    let outcome = s.sim.pay("alpha_bot", s.user.id, InvoiceRef::Message { message_id: msg["message_id"].as_i64().unwrap() }).await.unwrap();
    assert_eq!(outcome, PayOutcome::TimedOut);
    let late = bot.await.unwrap();
    assert!(late["answer_error"].as_str().unwrap().contains("query is too old"), "{late}");
    assert_eq!(s.api.call("getMyStarBalance", json!({})).await.unwrap()["amount"], 0);
}

#[tokio::test]
async fn refund_reverses_a_charge_once_and_shows_in_transactions() {
    let s = setup().await;
    drain_updates(&s.api).await;
    let msg = s.api.call("sendInvoice", invoice(s.user.id, 100)).await.unwrap();
    let bot = approve_next(&s, Duration::ZERO, true);
    let PayOutcome::Paid { telegram_payment_charge_id: charge, .. } =
        s.sim.pay("alpha_bot", s.user.id, InvoiceRef::Message { message_id: msg["message_id"].as_i64().unwrap() }).await.unwrap()
    else {
        panic!()
    };
    bot.await.unwrap();
    drain_updates(&s.api).await;
    let wrong_user =
        s.api.call("refundStarPayment", json!({"user_id": s.user.id + 1, "telegram_payment_charge_id": charge})).await.unwrap_err();
    assert_eq!(wrong_user.description, "Bad Request: CHARGE_NOT_FOUND");
    assert_eq!(s.api.call("refundStarPayment", json!({"user_id": s.user.id, "telegram_payment_charge_id": charge})).await.unwrap(), true);
    let twice = s.api.call("refundStarPayment", json!({"user_id": s.user.id, "telegram_payment_charge_id": charge})).await.unwrap_err();
    assert_eq!(twice.description, "Bad Request: CHARGE_ALREADY_REFUNDED");
    assert_eq!(s.api.call("getMyStarBalance", json!({})).await.unwrap()["amount"], 0);
    let tx = s.api.call("getStarTransactions", json!({})).await.unwrap();
    let list = tx["transactions"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["source"]["user"]["id"], s.user.id);
    assert_eq!(list[1]["receiver"]["user"]["id"], s.user.id);
    assert_eq!(list[1]["id"], list[0]["id"], "Bot API: a refund's id coincides with the original transaction's");
    let updates = drain_updates(&s.api).await;
    assert_eq!(updates[0]["message"]["refunded_payment"]["telegram_payment_charge_id"], charge);
}

/// A subscription invoice link (the period Telegram allows, within its price ceiling) pays
/// with `is_recurring` and `is_first_recurring`; renewals come without a pre-checkout, each a
/// new charge a period later; a cancelled subscription is not renewed.
#[tokio::test]
async fn a_subscription_renews_each_period_until_it_is_cancelled() {
    let s = setup().await;
    drain_updates(&s.api).await;
    let link_params = |period: i64, amount: i64| {
        let mut p = invoice(0, amount);
        p.as_object_mut().unwrap().remove("chat_id");
        p["subscription_period"] = json!(period);
        p
    };
    let wrong_period = s.api.call("createInvoiceLink", link_params(604_800, 100)).await.unwrap_err();
    assert_eq!(wrong_period.description, "Bad Request: SUBSCRIPTION_PERIOD_INVALID");
    let too_dear = s.api.call("createInvoiceLink", link_params(2_592_000, 10_001)).await.unwrap_err();
    assert_eq!(too_dear.description, "Bad Request: SUBSCRIPTION_PRICE_INVALID");
    let link = s.api.call("createInvoiceLink", link_params(2_592_000, 100)).await.unwrap();
    let bot = approve_next(&s, Duration::ZERO, true);
    let outcome = s.sim.pay("alpha_bot", s.user.id, InvoiceRef::Link { invoice_link: link.as_str().unwrap().to_string() }).await.unwrap();
    bot.await.unwrap();
    let PayOutcome::Paid { telegram_payment_charge_id: first, .. } = outcome else { panic!("{outcome:?}") };
    let updates = drain_updates(&s.api).await;
    let paid = &updates.last().unwrap()["message"]["successful_payment"];
    assert_eq!((paid["is_recurring"].as_bool(), paid["is_first_recurring"].as_bool()), (Some(true), Some(true)));
    let first_end = paid["subscription_expiration_date"].as_i64().unwrap();

    let PayOutcome::Paid { telegram_payment_charge_id: renewal, .. } = s.sim.renew_subscription(&first).unwrap() else { panic!() };
    assert_ne!(renewal, first);
    let updates = drain_updates(&s.api).await;
    assert!(updates.iter().all(|u| u.get("pre_checkout_query").is_none()), "renewals ask no pre-checkout");
    let renewed = &updates.last().unwrap()["message"]["successful_payment"];
    assert_eq!((renewed["is_recurring"].as_bool(), renewed["is_first_recurring"].as_bool()), (Some(true), None));
    assert_eq!(renewed["subscription_expiration_date"].as_i64().unwrap(), first_end + 2_592_000);
    assert_eq!(renewed["invoice_payload"], "quote:42", "the subscription's payload, every period");
    let tx = s.api.call("getStarTransactions", json!({})).await.unwrap();
    assert!(tx["transactions"].as_array().unwrap().iter().all(|t| t["source"]["subscription_period"] == 2_592_000));

    // The bot cancels it (editUserStarSubscription); Telegram renews it no more.
    let cancel = json!({"user_id": s.user.id, "telegram_payment_charge_id": first, "is_canceled": true});
    assert_eq!(s.api.call("editUserStarSubscription", cancel).await.unwrap(), true);
    assert!(s.sim.renew_subscription(&first).is_err());
    let other_user = json!({"user_id": s.user.id + 1, "telegram_payment_charge_id": first, "is_canceled": false});
    assert_eq!(s.api.call("editUserStarSubscription", other_user).await.unwrap_err().code, 400);
}

#[test]
fn telegrams_pre_checkout_deadline_is_ten_seconds_by_default() {
    assert_eq!(Settings::default().pre_checkout_deadline_ms, 10_000);
}
