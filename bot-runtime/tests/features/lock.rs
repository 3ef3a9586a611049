//! Lock chat (docs/MONEY.md, "Lock chat"): Lock → a duration → credits debited once → the
//! partner's Next and Stop refused with the time left; Report and Block always work; an early
//! end returns the unused share by the written rules.

use std::time::Duration;

use bot_runtime::chat::protocol::Callback;
use bot_runtime::chat::text_key::TextKey;
use bot_runtime::store::money::LedgerEntry;
use serde_json::json;

use crate::seam::{Person, Seam, buttons, keyboard, text};
use crate::support::{Mode, bot_config};

/// Gives `p` lock credits (as a purchase or an admin's gift would).
async fn give_credits(s: &Seam, p: &Person, credits: i64) {
    let entry = LedgerEntry {
        idem_key: format!("gift:test:{}:{}", p.id, s.now_ms()),
        bot: p.bot.clone(),
        user_id: p.id,
        delta: credits,
        reason: "gift".into(),
        reference: String::new(),
        created_ms: s.now_ms(),
    };
    s.bot(&p.bot).store.append(&entry).await.expect("credits given");
}

async fn credits(s: &Seam, p: &Person) -> i64 {
    s.bot(&p.bot).store.credits(&p.bot, p.id).await.expect("the balance")
}

/// Ann (alpha) and Bob (beta) in a chat; Ann holds `credits` and locks it for `minutes`
/// (the defaults offer 5, 10 and 15 minutes for 1, 2 and 3 credits).
async fn locked(credits_given: i64, minutes: u32) -> (Seam, Person, Person) {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    give_credits(&s, &ann, credits_given).await;
    let out = s.tap(&ann, TextKey::ChatLock).await;
    let menu = out.said(&ann, TextKey::LockMenu);
    assert!(text(menu).contains(&format!(" {credits_given} ")), "{}", out.listing());
    let out = s.press(&ann, &Callback::Lock { minutes }.render()).await;
    out.said(&ann, TextKey::LockedYou);
    out.said(&bob, TextKey::LockedPartner);
    (s, ann, bob)
}

#[tokio::test]
async fn the_chat_keyboard_has_a_lock_button_that_offers_the_configured_durations() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, _bob) = s.chatting("alpha", "beta").await;
    let out = s.send(&ann, "/start").await;
    let kb = keyboard(out.said(&ann, TextKey::AlreadyInChat));
    assert!(kb.contains(&TextKey::ChatLock.text(ann.lang).as_str()), "{kb:?}");
    let out = s.send(&ann, "/lock").await;
    let menu = out.to(&ann)[0];
    assert!(text(menu).starts_with(TextKey::LockMenu.text(ann.lang).split('{').next().unwrap_or_default()), "{}", out.listing());
    assert_eq!(buttons(menu), ["lock:5", "lock:10", "lock:15"], "{}", out.listing());
    assert!(text(menu).ends_with(&TextKey::LockNeedCredits.text(ann.lang)), "no credits: where to get them");
}

#[tokio::test]
async fn a_lock_keeps_the_partner_from_leaving_until_it_runs_out() {
    let (s, ann, bob) = locked(3, 10).await;
    assert_eq!(credits(&s, &ann).await, 1, "10 minutes cost 2 credits");
    for leave in ["/stop", "/next"] {
        let out = s.send(&bob, leave).await;
        let refused = out.said(&bob, TextKey::LockRefusesLeave);
        assert!(text(refused).contains("10"), "the minutes left: {}", out.listing());
        assert!(!out.says(&ann, TextKey::PartnerLeft));
    }
    let out = s.tap(&bob, TextKey::ChatStop).await;
    out.said(&bob, TextKey::LockRefusesLeave);
    assert_eq!(s.partner(&bob).await, Some(ann.member()), "still in the chat");
    // Messages still flow both ways while locked.
    assert_eq!(s.send(&bob, "still here").await.to(&ann).len(), 1);
    s.advance(Duration::from_secs(10 * 60));
    let out = s.send(&bob, "/stop").await;
    out.said(&bob, TextKey::YouLeft);
    out.said(&ann, TextKey::PartnerLeft);
    assert!(!out.says(&ann, TextKey::LockReturned), "a lock that ran out returns nothing");
    assert_eq!(credits(&s, &ann).await, 1);
}

#[tokio::test]
async fn report_ends_a_locked_chat_at_once_and_counts_against_the_locker() {
    let (s, ann, bob) = locked(2, 10).await;
    let out = s.send(&bob, "/report").await;
    out.said(&bob, TextKey::Reported);
    out.said(&ann, TextKey::PartnerLeft);
    assert_eq!(s.partner(&bob).await, None);
    assert!(!out.says(&ann, TextKey::LockReturned), "a report against the locker returns nothing");
    assert_eq!(credits(&s, &ann).await, 0);
    let reporters = s.fleet.store.reporters_since(ann.id, 0).await.expect("reports");
    assert_eq!(reporters, 1, "the report counts like any other");
}

#[tokio::test]
async fn block_ends_a_locked_chat_at_once_and_returns_the_unused_share() {
    let (s, ann, bob) = locked(3, 15).await;
    assert_eq!(credits(&s, &ann).await, 0);
    let out = s.tap(&bob, TextKey::ChatBlock).await;
    out.said(&bob, TextKey::Blocked);
    let back = out.said(&ann, TextKey::LockReturned);
    // One step (a second) of 15 minutes used: 2 of 3 credits back (rounded down).
    assert!(text(back).contains('2'), "{}", out.listing());
    assert_eq!(credits(&s, &ann).await, 2);
}

#[tokio::test]
async fn the_locker_may_leave_and_gets_nothing_back() {
    let (s, ann, bob) = locked(1, 5).await;
    let out = s.send(&ann, "/stop").await;
    out.said(&ann, TextKey::YouLeft);
    out.said(&bob, TextKey::PartnerLeft);
    assert!(!out.says(&ann, TextKey::LockReturned));
    assert_eq!(credits(&s, &ann).await, 0);
}

#[tokio::test]
async fn the_partner_cannot_lock_over_a_running_lock_and_pays_nothing() {
    let (s, _ann, bob) = locked(1, 5).await;
    give_credits(&s, &bob, 3).await;
    s.send(&bob, "/lock").await.said(&bob, TextKey::LockMenu);
    let out = s.press(&bob, &Callback::Lock { minutes: 5 }.render()).await;
    let held = TextKey::LockHeldByPartner.text(bob.lang);
    let prefix = held.split('{').next().unwrap_or_default();
    assert!(out.answer.as_deref().is_some_and(|a| a.starts_with(prefix)), "{:?}", out.answer);
    assert_eq!(credits(&s, &bob).await, 3);
}

#[tokio::test]
async fn without_enough_credits_nothing_is_locked() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    give_credits(&s, &ann, 1).await;
    s.send(&ann, "/lock").await.said(&ann, TextKey::LockMenu);
    let out = s.press(&ann, &Callback::Lock { minutes: 15 }.render()).await;
    out.said(&ann, TextKey::LockInsufficient);
    assert!(!out.says(&bob, TextKey::LockedPartner));
    assert_eq!(credits(&s, &ann).await, 1);
    s.send(&bob, "/stop").await.said(&bob, TextKey::YouLeft);
}

#[tokio::test]
async fn a_retried_lock_update_debits_once_and_confirms_again() {
    let s = Seam::bots(&["alpha", "beta"]).await;
    let (ann, bob) = s.chatting("alpha", "beta").await;
    give_credits(&s, &ann, 5).await;
    s.send(&ann, "/lock").await.said(&ann, TextKey::LockMenu);
    // The same update twice: the first attempt's commit to Redis failed after Postgres
    // committed the debit, so Telegram (or the inbound queue) delivers it again.
    let update = json!({
        "update_id": 900_001,
        "callback_query": {
            "id": "lock-retry-1",
            "from": {"id": ann.id, "is_bot": false, "first_name": "Ann", "language_code": "en"},
            "chat_instance": "1",
            "data": Callback::Lock { minutes: 10 }.render(),
        }
    });
    for attempt in 0..2 {
        let out = s.update("alpha", update.clone()).await;
        out.said(&ann, TextKey::LockedYou);
        out.said(&bob, TextKey::LockedPartner);
        assert_eq!(credits(&s, &ann).await, 3, "attempt {attempt}: debited once");
    }
}

#[tokio::test]
async fn the_idle_timeout_ends_a_locked_chat_and_returns_nothing() {
    let (s, ann, bob) = locked(6, 15).await;
    // Extended to 30 minutes: longer than the idle timeout (15 minutes by default).
    s.send(&ann, "/lock").await.said(&ann, TextKey::LockMenu);
    s.press(&ann, &Callback::Lock { minutes: 15 }.render()).await.said(&ann, TextKey::LockedYou);
    assert_eq!(credits(&s, &ann).await, 0);
    // The idle timeout still ends a chat nobody talks in (its timer is alpha's: Ann sorts first).
    s.advance(Duration::from_secs(16 * 60));
    let out = s.fire_due("alpha").await;
    out.said(&ann, TextKey::ChatIdle);
    out.said(&bob, TextKey::ChatIdle);
    assert!(!out.says(&ann, TextKey::LockReturned));
    assert_eq!(credits(&s, &ann).await, 0);
}

#[tokio::test]
async fn a_bot_without_lock_chat_has_no_lock_button_and_says_so() {
    let mut cfg = bot_config("alpha", Mode::Polling, "");
    cfg.bot.features.lock_chat = false;
    let s = Seam::with(vec![cfg, bot_config("beta", Mode::Polling, "")]).await;
    let (ann, _bob) = s.chatting("alpha", "beta").await;
    let out = s.send(&ann, "/start").await;
    let kb = keyboard(out.said(&ann, TextKey::AlreadyInChat));
    assert!(!kb.contains(&TextKey::ChatLock.text(ann.lang).as_str()), "{kb:?}");
    s.send(&ann, "/lock").await.said(&ann, TextKey::LockUnavailable);
}
