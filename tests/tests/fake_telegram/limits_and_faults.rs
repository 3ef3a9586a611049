use std::time::{Duration, Instant};

use botfleet_tests::bot_api::RawBot;
use botfleet_tests::fake_telegram::{FaultKind, FaultSpec, Limits};
use serde_json::json;

use crate::setup;

#[tokio::test]
async fn a_chat_gets_429_with_retry_after_beyond_its_burst() {
    let s = setup().await;
    let mut outcomes = Vec::new();
    for i in 0..5 {
        outcomes.push(s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": format!("m{i}")})).await);
    }
    let ok = outcomes.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 3, "a burst of three per chat");
    let err = outcomes.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.code, 429);
    assert_eq!(err.retry_after, Some(1));
    assert_eq!(err.description, "Too Many Requests: retry after 1");
    assert_eq!(s.sim.stats().too_many_requests, 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "later"})).await.is_ok(), "retry_after honoured → accepted");
}

#[tokio::test]
async fn a_bot_is_held_to_about_thirty_messages_per_second() {
    let s = setup().await;
    s.sim.set_limits(Limits { per_chat_burst: 1000.0, per_chat_per_sec: 1000.0, ..Limits::default() }).unwrap();
    let started = Instant::now();
    let mut accepted = 0;
    while started.elapsed() < Duration::from_secs(2) {
        match s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "x"})).await {
            Ok(_) => accepted += 1,
            Err(e) => {
                assert_eq!(e.code, 429);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    // At most the burst of 30 plus 30/s for two seconds (a slow machine may send fewer).
    assert!((40..=92).contains(&accepted), "accepted {accepted}");
}

/// `allow_paid_broadcast` (Bot API: up to 1000 messages/s, 0.1 Star each): a budget of its
/// own, so a bot past its free 30/s still sends paid messages; each is counted.
#[tokio::test]
async fn a_paid_broadcast_has_its_own_higher_budget_and_is_counted() {
    let s = setup().await;
    s.sim.set_limits(Limits { per_chat_burst: 1000.0, per_chat_per_sec: 1000.0, ..Limits::default() }).unwrap();
    s.sim.set_star_balance(&s.bot.username, 25).unwrap();
    let mut free = 0;
    for i in 0..60 {
        if s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": format!("f{i}")})).await.is_ok() {
            free += 1;
        }
    }
    assert!((30..=40).contains(&free), "the free budget: {free}");
    // The free budget is spent; paid sends still go, up to their own burst.
    for i in 0..200 {
        let sent = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": format!("p{i}"), "allow_paid_broadcast": true})).await;
        assert!(sent.is_ok(), "paid send {i}: {sent:?}");
    }
    assert_eq!(s.sim.paid_broadcast_messages(&s.bot.username).unwrap(), 200);
    // 0.1 Star each: 20 of the 25 Stars are gone.
    assert_eq!(s.sim.star_balance_tenths(&s.bot.username).unwrap(), 50);
    assert_eq!(s.api.call("getMyStarBalance", json!({})).await.unwrap()["amount"], 5);
    // The rest pays for 50 more; then the call fails for lack of Stars (Bot API: the Stars "will
    // be withdrawn from the bot's balance"), and nothing is sent or counted.
    for i in 0..50 {
        let sent = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": format!("q{i}"), "allow_paid_broadcast": true})).await;
        assert!(sent.is_ok(), "paid send {i}: {sent:?}");
    }
    let refused = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "broke", "allow_paid_broadcast": true})).await;
    let e = refused.expect_err("no Stars left");
    assert_eq!(e.code, 400, "{e:?}");
    assert!(e.description.contains("BALANCE_TOO_LOW"), "{e:?}");
    assert_eq!(s.sim.paid_broadcast_messages(&s.bot.username).unwrap(), 250);
    // Without it the free budget still applies (refilled only at 30/s meanwhile).
    let mut refused = 0;
    for i in 0..60 {
        let sent = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": format!("f{i}"), "allow_paid_broadcast": false})).await;
        refused += usize::from(sent.is_err_and(|e| e.code == 429));
    }
    assert!(refused > 0, "free sends past the free budget are refused");
}

#[tokio::test]
async fn limits_can_be_switched_off() {
    let s = setup().await;
    s.sim.set_limits(Limits { enabled: false, ..Limits::default() }).unwrap();
    for i in 0..100 {
        s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": format!("{i}")})).await.unwrap();
    }
    assert_eq!(s.sim.stats().too_many_requests, 0);
}

#[tokio::test]
async fn scheduled_server_errors_hit_the_chosen_method_count_times() {
    let s = setup().await;
    s.sim
        .add_fault(FaultSpec { method: Some("sendMessage".into()), bot: None, kind: FaultKind::ServerError { code: 502 }, count: Some(2) })
        .unwrap();
    assert!(s.api.call("getMe", json!({})).await.is_ok(), "other methods unaffected");
    for _ in 0..2 {
        let err = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "x"})).await.unwrap_err();
        assert_eq!((err.code, err.description.as_str()), (502, "Bad Gateway"));
    }
    assert!(s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "x"})).await.is_ok());
    assert_eq!(s.sim.stats().faults_injected, 2);
    assert_eq!(s.sim.inbox(s.user.id, None, 0).unwrap().len(), 1, "failed calls delivered nothing");
}

#[tokio::test]
async fn injected_429_storm_carries_retry_after_and_is_counted() {
    let s = setup().await;
    s.sim
        .add_fault(FaultSpec {
            method: None,
            bot: Some("alpha_bot".into()),
            kind: FaultKind::TooManyRequests { retry_after: 7 },
            count: Some(3),
        })
        .unwrap();
    for _ in 0..3 {
        let err = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "x"})).await.unwrap_err();
        assert_eq!(err.retry_after, Some(7));
    }
    let stats = s.sim.stats();
    assert_eq!(stats.too_many_requests, 3);
    assert_eq!(stats.too_many_requests_by_bot.get("alpha_bot"), Some(&3));
}

#[tokio::test]
async fn faults_target_one_bot_only_when_asked() {
    let s = setup().await;
    let beta = s.sim.register_bot("beta_bot").unwrap();
    let beta_api = RawBot::new(&s.fake.api_url(), &beta.token);
    s.sim.add_fault(FaultSpec { method: None, bot: Some("beta_bot".into()), kind: FaultKind::Outage, count: None }).unwrap();
    assert_eq!(beta_api.call("getMe", json!({})).await.unwrap_err().code, 502);
    assert_eq!(beta_api.call("getMe", json!({})).await.unwrap_err().code, 502, "until cleared");
    assert!(s.api.call("getMe", json!({})).await.is_ok());
    s.sim.clear_faults();
    assert!(beta_api.call("getMe", json!({})).await.is_ok());
}

#[tokio::test]
async fn a_timeout_fault_holds_the_call_and_may_apply_it() {
    let s = setup().await;
    s.sim
        .add_fault(FaultSpec {
            method: Some("sendMessage".into()),
            bot: None,
            kind: FaultKind::Timeout { delay_ms: 300, apply: false },
            count: Some(1),
        })
        .unwrap();
    let started = Instant::now();
    let err = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "lost"})).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(err.code, 504);
    assert!(s.sim.inbox(s.user.id, None, 0).unwrap().is_empty());
    s.sim
        .add_fault(FaultSpec {
            method: Some("sendMessage".into()),
            bot: None,
            kind: FaultKind::Timeout { delay_ms: 300, apply: true },
            count: Some(1),
        })
        .unwrap();
    // A client that gives up before the answer: the message was sent all the same.
    let client = reqwest::Client::builder().timeout(Duration::from_millis(100)).build().unwrap();
    let r = client.post(s.fake.method_url(&s.bot.token, "sendMessage")).json(&json!({"chat_id": s.user.id, "text": "late"})).send().await;
    assert!(r.is_err(), "the client timed out");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(s.sim.inbox(s.user.id, None, 0).unwrap().len(), 1);
}

#[tokio::test]
async fn calls_are_counted_per_method_and_per_bot() {
    let s = setup().await;
    s.api.call("getMe", json!({})).await.unwrap();
    s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "x"})).await.unwrap();
    let _ = s.api.call("sendMessage", json!({"chat_id": 1, "text": "x"})).await;
    let stats = s.sim.stats();
    assert_eq!(stats.calls.get("sendMessage"), Some(&2));
    assert_eq!(stats.calls_by_bot["alpha_bot"].get("getMe"), Some(&1));
    assert_eq!(stats.errors_by_code.get(&400), Some(&1));
    s.sim.reset_stats();
    assert!(s.sim.stats().calls.is_empty());
}
