//! One behaviour suite for the SQL store, run against both databases: Postgres (a fresh
//! database per test) and SQLite (a fresh file per test, WAL like production's embedded mode).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bot_runtime::matching::{Gender, Member};
use bot_runtime::store::locks::{LockOutcome, LockRequest};
use bot_runtime::store::money::{
    CAP_HOLD_MS, CampaignCap, LedgerEntry, LedgerOutcome, NewPayment, NewQuote, QUOTE_TTL_MS, QuoteRefusal, RefundOutcome, Subscription,
};
use bot_runtime::store::referrals::{ReferralFlag, ReferralStatus};
use bot_runtime::store::sql::{Backend, SqlStore};
use bot_runtime::store::{
    EndReason, Ledger, Locks, Payments, Quotes, Referrals, Safety, Session, Sessions, Stage, StoreError, Subscriptions, User, UserStats,
    Users,
};
use botfleet_tests::fixtures::TestDb;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Row as _, SqlSafeStr as _};

const SEC: i64 = 1_000;

fn m(bot: &str, user: i64) -> Member {
    Member::new(bot, user)
}

/// A row count through the raw pool (what the traits cannot show: that there is one row).
async fn rows(s: &SqlStore, sql: &'static str) -> i64 {
    sqlx::query(sql).fetch_one(s.pool()).await.unwrap().try_get::<i64, _>(0).unwrap()
}

async fn a_new_user_starts_at_the_terms(s: SqlStore) {
    // Telegram ids exceed 32 bits.
    let id = 7_123_456_789;
    assert_eq!(s.user("alpha", id).await.unwrap(), None);
    let u = s.user_or_create("alpha", id, "ru", 1_000).await.unwrap();
    let expected = User {
        bot: "alpha".into(),
        user_id: id,
        language: "ru".into(),
        stage: Stage::Terms,
        gender: None,
        age: None,
        wants: None,
        vip_until_ms: None,
        restricted_until_ms: None,
        reachable: true,
        created_ms: 1_000,
        updated_ms: 1_000,
        username: None,
        active_day: None,
    };
    assert_eq!(u, expected);
    assert_eq!(s.user("alpha", id).await.unwrap(), Some(expected.clone()));
    // Known now: a later first-contact call changes nothing (language, times).
    assert_eq!(s.user_or_create("alpha", id, "en", 2_000).await.unwrap(), expected);
    // The same person on another bot is another user.
    assert_eq!(s.user("beta", id).await.unwrap(), None);
    assert_eq!(s.count_users("alpha").await.unwrap(), 0, "a profile at the terms is not complete");
}

async fn user_or_create_is_idempotent_under_concurrency(s: SqlStore) {
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.user_or_create("alpha", 1, if i % 2 == 0 { "en" } else { "ru" }, 1_000 + i).await })
        })
        .collect();
    let mut users = Vec::new();
    for t in tasks {
        users.push(t.await.unwrap().unwrap());
    }
    let first = users[0].clone();
    assert!(users.iter().all(|u| *u == first), "every call returns the one row: {users:?}");
    assert_eq!(rows(&s, "SELECT COUNT(*) FROM users").await, 1);
    assert_eq!(s.user("alpha", 1).await.unwrap(), Some(first));
}

async fn profile_round_trips(s: SqlStore) {
    let mut u = s.user_or_create("alpha", 1, "en", 1_000).await.unwrap();
    s.restrict(1, Some(9_000), 1_500).await.unwrap();
    s.set_reachable("alpha", 1, false).await.unwrap();

    u.stage = Stage::Ready;
    u.gender = Some(Gender::Female);
    u.age = Some(255);
    u.wants = Some(Gender::Male);
    u.language = "ru".into();
    u.updated_ms = 2_000;
    // save_profile writes the profile only: VIP, restriction and reachability have their
    // own writers, so stale copies of them in `u` are not written back.
    u.vip_until_ms = Some(123);
    s.save_profile(&u).await.unwrap();
    let back = s.user("alpha", 1).await.unwrap().unwrap();
    assert_eq!(back, User { vip_until_ms: None, restricted_until_ms: Some(9_000), reachable: false, ..u.clone() });
    assert!(back.is_restricted(8_999) && !back.is_restricted(9_000));
    assert_eq!(s.count_users("alpha").await.unwrap(), 1);
    assert_eq!(s.count_users("beta").await.unwrap(), 0);

    s.restrict(1, None, 2_500).await.unwrap();
    s.set_reachable("alpha", 1, true).await.unwrap();
    u.gender = Some(Gender::Other);
    u.age = None;
    u.wants = None;
    u.stage = Stage::Age;
    u.updated_ms = 3_000;
    s.save_profile(&u).await.unwrap();
    let back = s.user("alpha", 1).await.unwrap().unwrap();
    assert_eq!(back, User { vip_until_ms: None, restricted_until_ms: None, reachable: true, ..u.clone() });
    assert_eq!(back.created_ms, 1_000);
    assert_eq!(s.count_users("alpha").await.unwrap(), 0);

    // Saving a profile that is gone does not bring it back.
    s.delete_user("alpha", 1, 4_000).await.unwrap();
    s.save_profile(&u).await.unwrap();
    assert_eq!(s.user("alpha", 1).await.unwrap(), None);
}

async fn delete_erases_the_profile_but_keeps_blocks(s: SqlStore) {
    let (a, b, c) = (m("alpha", 1), m("beta", 2), m("gamma", 3));
    s.user_or_create("alpha", 1, "en", 1_000).await.unwrap();
    s.user_or_create("beta", 2, "en", 1_000).await.unwrap();
    s.record_block(&a, &b, 2_000).await.unwrap();
    s.record_report(&a, &c, None, 2_000).await.unwrap();
    s.record_report(&b, &a, None, 2_000).await.unwrap();
    let session = s.start_session(&a, &b, 3_000).await.unwrap();

    assert!(s.delete_user("alpha", 1, 4_000).await.unwrap());
    assert_eq!(s.user("alpha", 1).await.unwrap(), None);
    assert!(!s.delete_user("alpha", 1, 4_500).await.unwrap(), "nothing left to delete");
    assert!(s.user("beta", 2).await.unwrap().is_some(), "only that profile");

    // Safety outlives the profile: what a blocked and reported, and what was reported about a.
    assert_eq!(s.blocked_by(1).await.unwrap(), vec![2, 3]);
    assert_eq!(s.reporters_since(1, 0).await.unwrap(), 1);
    assert!(s.session(session).await.unwrap().is_some());

    // Writing again starts from scratch.
    let fresh = s.user_or_create("alpha", 1, "ru", 5_000).await.unwrap();
    assert_eq!((fresh.stage, fresh.created_ms, fresh.language.as_str()), (Stage::Terms, 5_000, "ru"));
}

async fn blocks_are_listed_for_matching(s: SqlStore) {
    let (a, b, c, d) = (m("alpha", 1), m("beta", 2), m("gamma", 3), m("delta", 4));
    s.record_block(&a, &b, 1_000).await.unwrap();
    s.record_block(&a, &b, 2_000).await.unwrap(); // a redelivered update
    s.record_block(&a, &c, 3_000).await.unwrap();
    s.record_report(&a, &d, None, 4_000).await.unwrap();
    s.record_report(&a, &b, None, 5_000).await.unwrap(); // blocked and reported: listed once
    s.record_block(&b, &a, 6_000).await.unwrap(); // the other direction is b's list
    // The same user id on another bot is the same person: their blocks are one list.
    s.record_block(&m("omega", 1), &m("omega", 5), 7_000).await.unwrap();

    assert_eq!(s.blocked_by(1).await.unwrap(), vec![2, 3, 4, 5]);
    assert_eq!(s.blocked_by(2).await.unwrap(), vec![1]);
    assert_eq!(s.blocked_by(3).await.unwrap(), Vec::<i64>::new());

    // Concurrent repeats of one block: no error, one row.
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (s, c, d) = (s.clone(), c.clone(), d.clone());
            tokio::spawn(async move { s.record_block(&c, &d, 8_000 + i).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(s.blocked_by(3).await.unwrap(), vec![4]);
    assert_eq!(rows(&s, "SELECT COUNT(*) FROM blocks").await, 5, "a→b, a→c, b→a, omega:1→omega:5, c→d");
}

async fn reporters_are_counted_distinct_within_the_window(s: SqlStore) {
    let target = m("beta", 9);
    let r1 = s.record_report(&m("alpha", 1), &target, Some(7), 1_000).await.unwrap();
    let r2 = s.record_report(&m("alpha", 1), &target, None, 2_000).await.unwrap();
    s.record_report(&m("alpha", 1), &target, None, 3_000).await.unwrap();
    s.record_report(&m("alpha", 2), &target, None, 2_500).await.unwrap();
    // Same user id, another bot: the same person, not another reporter.
    s.record_report(&m("gamma", 1), &target, None, 2_000).await.unwrap();
    s.record_report(&m("gamma", 5), &target, None, 2_000).await.unwrap();
    // Before the window, and about someone else.
    s.record_report(&m("delta", 4), &target, None, 500).await.unwrap();
    s.record_report(&m("alpha", 3), &m("beta", 8), None, 2_000).await.unwrap();
    assert_ne!(r1, r2);

    assert_eq!(s.reporters_since(target.user, 1_000).await.unwrap(), 3);
    assert_eq!(s.reporters_since(target.user, 0).await.unwrap(), 4);
    assert_eq!(s.reporters_since(target.user, 2_600).await.unwrap(), 1);
    assert_eq!(s.reporters_since(target.user, 3_001).await.unwrap(), 0);
    assert_eq!(s.reporters_since(10, 0).await.unwrap(), 0);
    // Reports about the person through any bot count.
    s.record_report(&m("alpha", 6), &m("gamma", 9), None, 3_100).await.unwrap();
    assert_eq!(s.reporters_since(target.user, 3_001).await.unwrap(), 1);

    // The reason, added later, only by the reporter.
    assert!(s.set_report_reason(r1, &m("alpha", 1), "spam").await.unwrap());
    assert!(!s.set_report_reason(r1, &m("alpha", 2), "not mine").await.unwrap());
    assert!(!s.set_report_reason(r1 + 1_000, &m("alpha", 1), "no such report").await.unwrap());
    let reason: Option<String> =
        sqlx::query("SELECT reason FROM reports WHERE id = $1").bind(r1).fetch_one(s.pool()).await.unwrap().try_get(0).unwrap();
    assert_eq!(reason.as_deref(), Some("spam"));
}

async fn a_restriction_belongs_to_the_person_on_every_bot(s: SqlStore) {
    s.user_or_create("ns/alpha", 1, "en", 1_000).await.unwrap();
    s.user_or_create("ns/beta", 1, "en", 1_100).await.unwrap();
    s.user_or_create("ns/beta", 2, "en", 1_100).await.unwrap();
    s.restrict(1, Some(9_000), 2_000).await.unwrap();
    for bot in ["ns/alpha", "ns/beta"] {
        let u = s.user(bot, 1).await.unwrap().unwrap();
        assert_eq!(u.restricted_until_ms, Some(9_000), "{bot}");
    }
    // A member the person creates later is restricted from its first update.
    let later = s.user_or_create("other/gamma", 1, "en", 3_000).await.unwrap();
    assert!(later.is_restricted(3_000));
    assert_eq!(s.user("ns/beta", 2).await.unwrap().unwrap().restricted_until_ms, None, "only that person");
    let person = s.person(1).await.unwrap().unwrap();
    assert_eq!((person.first_seen_ms, person.restricted_until_ms, person.deleted_ms), (1_000, Some(9_000), None));
}

async fn a_ban_survives_delete_me_and_the_person_is_not_new_again(s: SqlStore) {
    let ban = i64::MAX / 2;
    s.user_or_create("ns/alpha", 7, "en", 1_000).await.unwrap();
    s.restrict(7, Some(ban), 2_000).await.unwrap();
    assert!(s.delete_user("ns/alpha", 7, 3_000).await.unwrap());
    assert_eq!(s.user("ns/alpha", 7).await.unwrap(), None, "the profile is gone");
    let tombstone = s.person(7).await.unwrap().unwrap();
    assert_eq!((tombstone.first_seen_ms, tombstone.restricted_until_ms, tombstone.deleted_ms), (1_000, Some(ban), Some(3_000)));
    // /start again: a fresh profile, still banned, first seen unchanged.
    let back = s.user_or_create("ns/alpha", 7, "en", 4_000).await.unwrap();
    assert_eq!((back.stage, back.created_ms), (Stage::Terms, 4_000));
    assert!(back.is_restricted(4_000));
    assert_eq!(s.person(7).await.unwrap().unwrap().first_seen_ms, 1_000);
}

async fn a_restriction_written_by_the_previous_release_still_holds(s: SqlStore) {
    // Release N writes only the member's column (it knows no persons table).
    s.user_or_create("ns/alpha", 3, "en", 1_000).await.unwrap();
    sqlx::query("UPDATE users SET restricted_until_ms = 9000 WHERE user_id = 3").execute(s.pool()).await.unwrap();
    assert_eq!(s.user("ns/alpha", 3).await.unwrap().unwrap().restricted_until_ms, Some(9_000));
    // And /delete_me keeps it in the tombstone.
    s.delete_user("ns/alpha", 3, 2_000).await.unwrap();
    assert!(s.user_or_create("ns/alpha", 3, "en", 3_000).await.unwrap().is_restricted(3_000));
}

async fn same_name_bots_in_two_namespaces_never_share_users(s: SqlStore) {
    use bot_runtime::store::scoped::BotStore;
    let inner: Arc<dyn bot_runtime::store::Store> = Arc::new(s.clone());
    let (team_a, team_b) = (BotStore::new("team-a", inner.clone()), BotStore::new("team-b", inner));
    let mut a = team_a.user_or_create("alpha", 5, "en", 1_000).await.unwrap();
    assert_eq!(a.bot, "alpha", "handlers see the bot's name");
    a.stage = Stage::Ready;
    a.age = Some(30);
    team_a.save_profile(&a).await.unwrap();
    let b = team_b.user_or_create("alpha", 5, "ru", 2_000).await.unwrap();
    assert_eq!((b.stage, b.language.as_str()), (Stage::Terms, "ru"), "another bot, another member");
    let stored: Vec<String> = sqlx::query("SELECT bot FROM users ORDER BY bot")
        .fetch_all(s.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String, _>(0).unwrap())
        .collect();
    assert_eq!(stored, vec!["team-a/alpha", "team-b/alpha"]);
    // Sessions and stats stay apart too.
    let id = team_a.start_session(&m("alpha", 5), &m("beta", 6), 3_000).await.unwrap();
    team_a.end_session(&m("alpha", 5), &m("beta", 6), None, EndReason::Idle, 63_000).await.unwrap();
    assert_eq!(team_a.stats(&m("alpha", 5)).await.unwrap().chats, 1);
    assert_eq!(team_b.stats(&m("alpha", 5)).await.unwrap().chats, 0);
    let session = team_a.session(id).await.unwrap().unwrap();
    assert_eq!((session.a, session.b), (m("alpha", 5), m("beta", 6)));
    assert!(team_b.open_session(&m("alpha", 5), &m("beta", 6)).await.unwrap().is_none());
}

async fn rows_of_the_previous_release_are_adopted_by_the_namespaced_bot(s: SqlStore) {
    // Release N: bare bot names.
    s.user_or_create("alpha", 1, "en", 1_000).await.unwrap();
    s.user_or_create("alpha", 2, "en", 1_000).await.unwrap();
    s.record_block(&m("alpha", 1), &m("beta", 2), 1_500).await.unwrap();
    let session = s.start_session(&m("alpha", 1), &m("beta", 2), 2_000).await.unwrap();
    // A user who reached a new replica during the rollout already has a namespaced row; an old
    // replica banned them on its own row (release N writes only the member's column).
    s.user_or_create("team-a/alpha", 2, "ru", 2_500).await.unwrap();
    sqlx::query("DELETE FROM persons WHERE user_id = 2").execute(s.pool()).await.unwrap();
    sqlx::query("UPDATE users SET restricted_until_ms = 99000 WHERE bot = 'alpha' AND user_id = 2").execute(s.pool()).await.unwrap();

    let moved = s.adopt_legacy_bot("alpha", "team-a/alpha").await.unwrap();
    assert!(moved >= 3, "{moved}");
    assert!(s.user("alpha", 1).await.unwrap().is_none());
    assert_eq!(s.user("team-a/alpha", 1).await.unwrap().unwrap().created_ms, 1_000);
    assert_eq!(s.user("team-a/alpha", 2).await.unwrap().unwrap().language, "ru", "the namespaced row wins");
    assert_eq!(s.person(2).await.unwrap().unwrap().restricted_until_ms, Some(99_000), "the old row's ban is kept");
    assert_eq!(rows(&s, "SELECT COUNT(*) FROM users").await, 2);
    let sess = s.session(session).await.unwrap().unwrap();
    assert_eq!(sess.a, m("team-a/alpha", 1));
    assert_eq!(sess.b, m("beta", 2), "beta adopts its own side when it starts");
    assert_eq!(s.adopt_legacy_bot("alpha", "team-a/alpha").await.unwrap(), 0, "idempotent");
    s.adopt_legacy_bot("beta", "team-a/beta").await.unwrap();
    assert_eq!(s.session(session).await.unwrap().unwrap().b, m("team-a/beta", 2));
    assert_eq!(s.blocked_by(1).await.unwrap(), vec![2]);
}

/// The overview's counts (migration 0020) equal the tables' rows after every kind of write: new
/// members on several bots (concurrently, as many replicas would), a member created twice, a
/// rolled-back insert, `/delete_me`, the adoption of the previous release's rows and a bulk
/// insert; "new today / this week" and active VIPs are the windows' rows.
async fn the_overviews_counts_equal_the_rows_after_every_kind_of_write(s: SqlStore) {
    use bot_runtime::store::admin::AdminStore as _;
    let now = 100 * 86_400_000;
    let exact = |s: SqlStore| async move {
        let people = rows(&s, "SELECT COUNT(*) FROM persons").await;
        let mut members = Vec::new();
        for r in sqlx::query("SELECT bot, COUNT(*) AS n FROM users GROUP BY bot ORDER BY bot").fetch_all(s.pool()).await.unwrap() {
            members.push((r.try_get::<String, _>("bot").unwrap(), r.try_get::<i64, _>("n").unwrap()));
        }
        (people, members)
    };
    let counted = |s: SqlStore| async move {
        let people = s.people(now, now - 3_600_000).await.unwrap();
        let mut members: Vec<(String, i64)> =
            s.bot_numbers(now, now - 3_600_000).await.unwrap().into_iter().filter(|b| b.members > 0).map(|b| (b.bot, b.members)).collect();
        members.sort();
        (people.people, members)
    };
    // Old members (30 days ago), then today's, on two bots, from 8 tasks at once.
    for u in 1..=5 {
        s.user_or_create("ns/alpha", u, "en", now - 30 * 86_400_000).await.unwrap();
    }
    let mut tasks = Vec::new();
    for t in 0..8_i64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for u in 0..10 {
                let bot = if u % 2 == 0 { "ns/alpha" } else { "ns/beta" };
                s.user_or_create(bot, 100 + t * 10 + u, "en", now - 60_000).await.unwrap();
                s.user_or_create(bot, 100 + t * 10 + u, "en", now - 60_000).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(counted(s.clone()).await, exact(s.clone()).await);
    assert_eq!(counted(s.clone()).await.0, 85);
    let numbers = s.bot_numbers(now, now - 3_600_000).await.unwrap();
    let alpha = numbers.iter().find(|b| b.bot == "ns/alpha").unwrap();
    assert_eq!((alpha.members, alpha.new_today, alpha.new_this_week, alpha.active_vips), (45, 40, 40, 0));
    let people = s.people(now, now - 3_600_000).await.unwrap();
    assert_eq!((people.new_today, people.new_this_week), (80, 80));
    // A VIP in force and one expired.
    sqlx::query("UPDATE users SET vip_until_ms = $1 WHERE bot = 'ns/alpha' AND user_id = 1").bind(now + 1).execute(s.pool()).await.unwrap();
    sqlx::query("UPDATE users SET vip_until_ms = $1 WHERE bot = 'ns/alpha' AND user_id = 2").bind(now - 1).execute(s.pool()).await.unwrap();
    let numbers = s.bot_numbers(now, now - 3_600_000).await.unwrap();
    assert_eq!(numbers.iter().find(|b| b.bot == "ns/alpha").unwrap().active_vips, 1);
    // A rolled-back insert counts nothing.
    let mut tx = s.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO users (bot, user_id, language, stage, reachable, created_ms, updated_ms) VALUES ('ns/beta', 999, 'en', 'terms', 1, 1, 1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    // /delete_me, the previous release's rows adopted (a rename and a duplicate dropped), a bulk insert.
    assert!(s.delete_user("ns/beta", 101, now).await.unwrap());
    s.user_or_create("alpha", 3, "en", now).await.unwrap();
    s.user_or_create("alpha", 7000, "en", now).await.unwrap();
    s.adopt_legacy_bot("alpha", "ns/alpha").await.unwrap();
    sqlx::query(
        "INSERT INTO users (bot, user_id, language, stage, reachable, created_ms, updated_ms) \
         SELECT 'ns/gamma', user_id, 'en', 'terms', 1, 1, 1 FROM users WHERE bot = 'ns/alpha'",
    )
    .execute(s.pool())
    .await
    .unwrap();
    let (people, members) = exact(s.clone()).await;
    assert_eq!(counted(s.clone()).await, (people, members.clone()));
    assert_eq!(members.iter().map(|(_, n)| n).sum::<i64>(), 45 + 1 + 39 + 46, "alpha 45 + 7000, beta 40 - 101, gamma a copy of alpha");
}

async fn activity_and_funnel_events_are_recorded_once(s: SqlStore) {
    use bot_runtime::store::Funnel;
    s.user_or_create("ns/alpha", 1, "en", 1_000).await.unwrap();
    s.record_activity("ns/alpha", 1, Some("ann"), 20_000).await.unwrap();
    let u = s.user("ns/alpha", 1).await.unwrap().unwrap();
    assert_eq!((u.username.as_deref(), u.active_day), (Some("ann"), Some(20_000)));
    for _ in 0..3 {
        s.record_event("ns/alpha", 1, Funnel::FirstSearch, "", 2_000).await.unwrap();
    }
    s.record_event("ns/alpha", 1, Funnel::Purchase, "charge-1", 3_000).await.unwrap();
    s.record_event("ns/alpha", 1, Funnel::Purchase, "charge-2", 4_000).await.unwrap();
    s.record_event("ns/alpha", 1, Funnel::Purchase, "charge-2", 4_000).await.unwrap();
    assert_eq!(rows(&s, "SELECT COUNT(*) FROM analytics_events").await, 3);
    // /delete_me erases the username with the profile.
    s.delete_user("ns/alpha", 1, 5_000).await.unwrap();
    assert_eq!(rows(&s, "SELECT COUNT(*) FROM users WHERE username IS NOT NULL").await, 0);
}

async fn mirror_copies_are_indexed_by_session(s: SqlStore) {
    let (a, b) = (m("ns/alpha", 1), m("ns/beta", 2));
    let session = s.start_session(&a, &b, 1_000).await.unwrap();
    s.record_mirror(session, &a, -100, 7, 2_000).await.unwrap();
    s.record_mirror(session, &a, -100, 7, 2_000).await.unwrap(); // a retried send
    s.record_mirror(session, &b, -100, 9, 3_000).await.unwrap();
    assert_eq!(s.mirror_messages(session).await.unwrap(), vec![(a.clone(), -100, 7), (b.clone(), -100, 9)]);
    assert_eq!(s.mirror_messages(session + 1).await.unwrap(), vec![]);
}

async fn a_session_ends_once_from_either_side(s: SqlStore) {
    let (a, b, c) = (m("alpha", 1), m("beta", 2), m("gamma", 3));
    let id = s.start_session(&a, &b, 1_000).await.unwrap();
    let other = s.start_session(&a, &c, 1_500).await.unwrap();
    let open = Session { id, a: a.clone(), b: b.clone(), started_ms: 1_000, ended_ms: None, end_reason: None, ended_by: None };
    assert_eq!(s.open_session(&a, &b).await.unwrap(), Some(open.clone()));
    assert_eq!(s.open_session(&b, &a).await.unwrap(), Some(open.clone()));
    assert_eq!(s.session(id).await.unwrap(), Some(open.clone()));

    // Ended by b, named in the other order.
    let closed = Session { ended_ms: Some(61_000), end_reason: Some("stop".into()), ended_by: Some(b.clone()), ..open };
    assert_eq!(s.end_session(&b, &a, Some(&b), EndReason::Stop, 61_000).await.unwrap(), Some(closed.clone()));
    assert_eq!(s.end_session(&a, &b, Some(&a), EndReason::Next, 62_000).await.unwrap(), None, "already ended");
    assert_eq!(s.open_session(&a, &b).await.unwrap(), None);
    assert_eq!(s.session(id).await.unwrap(), Some(closed));
    assert_eq!(s.session(id + other + 1_000).await.unwrap(), None);
    // a's chat with c is another session.
    assert_eq!(s.open_session(&c, &a).await.unwrap().map(|x| x.id), Some(other));

    // Nobody ended it (idle).
    let idle = s.start_session(&a, &b, 100_000).await.unwrap();
    let ended = s.end_session(&a, &b, None, EndReason::Idle, 700_000).await.unwrap().unwrap();
    assert_eq!((ended.id, ended.ended_by, ended.end_reason.as_deref()), (idle, None, Some("idle")));

    // Both sides end it at once (two replicas): one of them closes it.
    let s = Arc::new(s);
    s.start_session(&a, &b, 800_000).await.unwrap();
    let ends: Vec<_> = [(a.clone(), b.clone()), (b.clone(), a.clone())]
        .into_iter()
        .map(|(x, y)| {
            let s = s.clone();
            tokio::spawn(async move { s.end_session(&x, &y, Some(&x), EndReason::Next, 900_000).await })
        })
        .collect();
    let mut closed = 0;
    for t in ends {
        closed += usize::from(t.await.unwrap().unwrap().is_some());
    }
    assert_eq!(closed, 1);
}

async fn start_session_is_idempotent(s: SqlStore) {
    let (a, b, c) = (m("alpha", 1), m("beta", 2), m("gamma", 3));
    let id = s.start_session(&a, &b, 1_000).await.unwrap();
    assert_eq!(s.start_session(&a, &b, 1_000).await.unwrap(), id, "a redelivered update");
    s.end_session(&a, &b, Some(&a), EndReason::Stop, 2_000).await.unwrap();
    let again = s.start_session(&a, &b, 3_000).await.unwrap();
    assert_ne!(again, id, "a new chat of the same pair");
    assert_eq!(s.start_session(&a, &b, 1_000).await.unwrap(), id, "still the first chat");

    let s = Arc::new(s);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (s, a, c) = (s.clone(), a.clone(), c.clone());
            tokio::spawn(async move { s.start_session(&a, &c, 5_000).await })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap());
    }
    assert!(ids.iter().all(|&i| i == ids[0]), "{ids:?}");
    assert_eq!(rows(&s, "SELECT COUNT(*) FROM chat_sessions").await, 3);
}

async fn a_rating_replaces_the_previous_one_and_outsiders_cannot_rate(s: SqlStore) {
    let (a, b) = (m("alpha", 1), m("beta", 2));
    let id = s.start_session(&a, &b, 1_000).await.unwrap();
    s.end_session(&a, &b, Some(&a), EndReason::Stop, 2_000).await.unwrap();

    assert!(s.rate(id, &a, true, 3_000).await.unwrap());
    assert_eq!(s.stats(&b).await.unwrap().thumbs_up, 1);
    assert!(s.rate(id, &a, false, 4_000).await.unwrap(), "a changes their mind");
    let b_stats = s.stats(&b).await.unwrap();
    assert_eq!((b_stats.thumbs_up, b_stats.thumbs_down), (0, 1));
    assert!(s.rate(id, &b, true, 5_000).await.unwrap());
    let a_stats = s.stats(&a).await.unwrap();
    assert_eq!((a_stats.thumbs_up, a_stats.thumbs_down), (1, 0));

    // Not in that session: someone else, the same user id on another bot, no such session.
    assert!(!s.rate(id, &m("gamma", 3), true, 6_000).await.unwrap());
    assert!(!s.rate(id, &m("gamma", 1), true, 6_000).await.unwrap());
    assert!(!s.rate(id + 1_000, &a, true, 6_000).await.unwrap());
    assert_eq!(rows(&s, "SELECT COUNT(*) FROM ratings").await, 2);
    let b_stats = s.stats(&b).await.unwrap();
    assert_eq!((b_stats.thumbs_up, b_stats.thumbs_down), (0, 1));
}

async fn stats_count_finished_chats_and_ratings(s: SqlStore) {
    let (a, b, c, d) = (m("alpha", 1), m("beta", 2), m("gamma", 3), m("delta", 4));
    assert_eq!(s.stats(&a).await.unwrap(), UserStats::default());
    // a on either side; 60 s + 0.5 s + 0.5 s.
    let ab = s.start_session(&a, &b, 1_000).await.unwrap();
    s.end_session(&a, &b, Some(&b), EndReason::Stop, 61_000).await.unwrap();
    let ca = s.start_session(&c, &a, 100 * SEC).await.unwrap();
    s.end_session(&c, &a, Some(&a), EndReason::Next, 100 * SEC + 500).await.unwrap();
    s.start_session(&c, &a, 200 * SEC).await.unwrap();
    s.end_session(&a, &c, None, EndReason::Idle, 200 * SEC + 500).await.unwrap();
    // Still open: not counted. Others' chats: not counted.
    s.start_session(&a, &d, 300 * SEC).await.unwrap();
    s.start_session(&b, &c, 1_000).await.unwrap();
    s.end_session(&b, &c, None, EndReason::Gone, 900 * SEC).await.unwrap();

    s.rate(ab, &b, true, 0).await.unwrap();
    s.rate(ca, &c, false, 0).await.unwrap();
    s.rate(ab, &a, true, 0).await.unwrap(); // given by a, not received

    assert_eq!(s.stats(&a).await.unwrap(), UserStats { chats: 3, seconds_chatted: 61, thumbs_up: 1, thumbs_down: 1 });
    assert_eq!(s.stats(&b).await.unwrap(), UserStats { chats: 2, seconds_chatted: 60 + 899, thumbs_up: 1, thumbs_down: 0 });
    assert_eq!(s.stats(&d).await.unwrap(), UserStats::default());
}

async fn unexpected_stored_values_are_reported_as_corrupt(s: SqlStore) {
    s.user_or_create("alpha", 1, "en", 1_000).await.unwrap();
    sqlx::query("UPDATE users SET stage = 'limbo'").execute(s.pool()).await.unwrap();
    assert!(matches!(s.user("alpha", 1).await, Err(StoreError::Corrupt(_))));
    assert!(matches!(s.user_or_create("alpha", 1, "en", 2_000).await, Err(StoreError::Corrupt(_))));

    s.user_or_create("alpha", 2, "en", 1_000).await.unwrap();
    sqlx::query("UPDATE users SET gender = 'x' WHERE user_id = 2").execute(s.pool()).await.unwrap();
    assert!(matches!(s.user("alpha", 2).await, Err(StoreError::Corrupt(_))));
    sqlx::query("UPDATE users SET gender = NULL, age = 300 WHERE user_id = 2").execute(s.pool()).await.unwrap();
    assert!(matches!(s.user("alpha", 2).await, Err(StoreError::Corrupt(_))));
}

async fn ping_answers_and_a_closed_store_is_unavailable(s: SqlStore) {
    s.ping().await.unwrap();
    s.close().await;
    assert!(matches!(s.ping().await, Err(StoreError::Unavailable(_))));
}

/// During a rolling update the new release migrates first; a replica of the previous release
/// (which does not know the new migration) must still start.
async fn a_replica_of_the_previous_release_starts_after_a_newer_one_migrated(s: SqlStore) {
    let mut newer: Vec<Migration> = SqlStore::migrator(s.backend()).iter().cloned().collect();
    let next = "CREATE TABLE next_release (id BIGINT PRIMARY KEY)".into_sql_str();
    newer.push(Migration::new(9_999, "next release".into(), MigrationType::Simple, next, false));
    Migrator::with_migrations(newer).run(s.pool()).await.unwrap();
    s.migrate().await.unwrap();
    s.user_or_create("alpha", 1, "en", 0).await.unwrap();
}

/// Three replicas start at once on a fresh database, then one restarts.
async fn migrations_can_run_twice_and_concurrently(url: String) {
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let s = SqlStore::connect(&url).await?;
                s.migrate().await?;
                Ok::<_, StoreError>(s)
            })
        })
        .collect();
    let mut stores = Vec::new();
    for t in tasks {
        stores.push(t.await.unwrap().unwrap());
    }
    stores[0].migrate().await.unwrap();
    assert_eq!(
        rows(&stores[0], "SELECT COUNT(*) FROM _sqlx_migrations").await,
        SqlStore::migrator(stores[0].backend()).iter().count() as i64
    );
    for (i, s) in stores.iter().enumerate() {
        s.user_or_create("alpha", i as i64, "en", 0).await.unwrap();
    }
    assert_eq!(rows(&stores[2], "SELECT COUNT(*) FROM users").await, 3);
}

// ---- money ----------------------------------------------------------------------------------

const DAY: i64 = 86_400_000;

fn payment(charge: &str, user: i64, vip_days: i64, credits: i64, now_ms: i64) -> NewPayment {
    NewPayment {
        charge_id: charge.into(),
        bot: "alpha".into(),
        user_id: user,
        quote_id: None,
        plan_id: "vip-week".into(),
        stars: 250,
        vip_days,
        lock_credits: credits,
        now_ms,
        subscription_until_ms: None,
    }
}

fn entry(key: &str, user: i64, delta: i64) -> LedgerEntry {
    LedgerEntry {
        idem_key: key.into(),
        bot: "alpha".into(),
        user_id: user,
        delta,
        reason: if delta > 0 { "gift".into() } else { "lock".into() },
        reference: String::new(),
        created_ms: 1_000,
    }
}

fn new_quote(user: i64, now_ms: i64) -> NewQuote {
    NewQuote {
        bot: "alpha".into(),
        user_id: user,
        plan_id: "vip-week".into(),
        price_stars: 200,
        base_stars: 250,
        campaign_id: Some("spring".into()),
        vip_days: 7,
        lock_credits: 3,
        created_ms: now_ms,
        expires_ms: now_ms + QUOTE_TTL_MS,
        campaign_cap: None,
    }
}

async fn one_charge_applied_by_ten_tasks_at_once_grants_once(s: SqlStore) {
    let s = Arc::new(s);
    s.user_or_create("alpha", 1, "en", 0).await.unwrap();
    let quote = s.create_quote(&new_quote(1, 1_000)).await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let s = s.clone();
            let mut p = payment("ch_1", 1, 7, 3, 2_000);
            p.quote_id = Some(quote.id.clone());
            tokio::spawn(async move { s.apply_payment(&p).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    assert_eq!(results.iter().filter(|r| r.first).count(), 1, "one application: {results:?}");
    let first = results.iter().find(|r| r.first).unwrap().payment.clone();
    assert!(results.iter().all(|r| r.payment == first), "every call returns what the first granted: {results:?}");
    assert_eq!(first.vip_until_ms, Some(2_000 + 7 * DAY));
    assert_eq!(s.user("alpha", 1).await.unwrap().unwrap().vip_until_ms, Some(2_000 + 7 * DAY));
    assert_eq!(s.credits("alpha", 1).await.unwrap(), 3);
    assert_eq!(rows(&s, "SELECT COUNT(*) FROM payments").await, 1);
    assert_eq!(rows(&s, "SELECT COUNT(*) FROM ledger").await, 1);
    assert_eq!(s.quote("alpha", &quote.id).await.unwrap().unwrap().used_ms, Some(2_000), "the quote is used");
    // Later, again: still nothing more.
    let again = s.apply_payment(&payment("ch_1", 1, 7, 3, 9_000)).await.unwrap();
    assert!(!again.first);
    assert_eq!(again.payment, first);
    assert_eq!(s.payments_of("alpha", 1, 10).await.unwrap(), vec![first]);
    assert_eq!(s.payments_of("beta", 1, 10).await.unwrap(), vec![], "commerce is the member's");
}

async fn vip_days_stack_onto_an_unexpired_vip_and_start_afresh_after_expiry(s: SqlStore) {
    s.user_or_create("alpha", 1, "en", 0).await.unwrap();
    let a = s.apply_payment(&payment("ch_a", 1, 7, 0, 1_000)).await.unwrap();
    assert_eq!(a.payment.vip_until_ms, Some(1_000 + 7 * DAY));
    // Bought again three days later: the seven days go on top of the four left.
    let b = s.apply_payment(&payment("ch_b", 1, 7, 0, 1_000 + 3 * DAY)).await.unwrap();
    assert_eq!(b.payment.vip_until_ms, Some(1_000 + 14 * DAY));
    // Bought after it expired: from now.
    let late = 1_000 + 30 * DAY;
    let c = s.apply_payment(&payment("ch_c", 1, 30, 0, late)).await.unwrap();
    assert_eq!(c.payment.vip_until_ms, Some(late + 30 * DAY));
    assert_eq!(s.user("alpha", 1).await.unwrap().unwrap().vip_until_ms, Some(late + 30 * DAY));
    assert_eq!(s.credits("alpha", 1).await.unwrap(), 0, "no credits granted, no ledger rows");
    assert_eq!(rows(&s, "SELECT COUNT(*) FROM ledger").await, 0);
    // A payment for a member who does not exist is an error, and records nothing.
    assert!(s.apply_payment(&payment("ch_x", 99, 7, 0, late)).await.is_err());
    assert_eq!(rows(&s, "SELECT COUNT(*) FROM payments").await, 3);
}

async fn the_ledger_never_goes_negative_under_concurrent_debits(s: SqlStore) {
    let s = Arc::new(s);
    assert_eq!(s.append(&entry("gift:1", 1, 5)).await.unwrap(), LedgerOutcome::Written { balance: 5 });
    assert_eq!(s.append(&entry("gift:1", 1, 5)).await.unwrap(), LedgerOutcome::Duplicate { balance: 5 }, "keyed once");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.append(&entry(&format!("lock:{i}"), 1, -1)).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap().unwrap());
    }
    let written = outcomes.iter().filter(|o| matches!(o, LedgerOutcome::Written { .. })).count();
    let refused = outcomes.iter().filter(|o| matches!(o, LedgerOutcome::Insufficient { balance: 0 })).count();
    assert_eq!((written, refused), (5, 15), "{outcomes:?}");
    assert_eq!(s.credits("alpha", 1).await.unwrap(), 0);
    assert_eq!(rows(&s, "SELECT MIN(balance) FROM wallets").await, 0);
    assert_eq!(rows(&s, "SELECT COUNT(*) FROM ledger").await, 6);
    // A debit larger than the balance writes nothing; another member's balance is theirs.
    assert_eq!(s.append(&entry("lock:big", 1, -1)).await.unwrap(), LedgerOutcome::Insufficient { balance: 0 });
    assert_eq!(s.credits("alpha", 2).await.unwrap(), 0);
    // The balance is the sum of the rows, and the wallet agrees.
    assert_eq!(
        rows(&s, "SELECT CAST(SUM(delta) AS BIGINT) FROM ledger").await,
        rows(&s, "SELECT CAST(SUM(balance) AS BIGINT) FROM wallets").await
    );
}

async fn a_quote_is_single_use_owned_by_the_buyer_and_expires(s: SqlStore) {
    let q = s.create_quote(&new_quote(1, 1_000)).await.unwrap();
    assert_eq!(q.id.len(), 24);
    assert_eq!(s.quote("alpha", &q.id).await.unwrap(), Some(q.clone()));
    assert_eq!(s.quote("beta", &q.id).await.unwrap(), None, "another bot's quote is unknown here");
    assert_eq!(s.claim_quote("alpha", "nope", 1, "pcq1", 2_000).await.unwrap(), Err(QuoteRefusal::Unknown));
    assert_eq!(s.claim_quote("alpha", &q.id, 2, "pcq1", 2_000).await.unwrap(), Err(QuoteRefusal::NotYours), "a forwarded invoice");
    let claimed = s.claim_quote("alpha", &q.id, 1, "pcq1", 2_000).await.unwrap().unwrap();
    assert_eq!(claimed.checkout_id.as_deref(), Some("pcq1"));
    assert!(s.claim_quote("alpha", &q.id, 1, "pcq1", 3_000).await.unwrap().is_ok(), "the same checkout again (a retried update)");
    assert_eq!(s.claim_quote("alpha", &q.id, 1, "pcq2", 3_000).await.unwrap(), Err(QuoteRefusal::Used), "a second checkout");

    let late = s.create_quote(&new_quote(1, 1_000)).await.unwrap();
    assert_ne!(late.id, q.id);
    assert_eq!(s.claim_quote("alpha", &late.id, 1, "pcq3", 1_000 + QUOTE_TTL_MS).await.unwrap(), Err(QuoteRefusal::Expired));
    assert!(s.claim_quote("alpha", &late.id, 1, "pcq3", 1_000 + QUOTE_TTL_MS - 1).await.unwrap().is_ok(), "the last millisecond");

    // Concurrent checkouts of one quote: one wins.
    let s = Arc::new(s);
    let fresh = s.create_quote(&new_quote(1, 1_000)).await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (s, id) = (s.clone(), fresh.id.clone());
            tokio::spawn(async move { s.claim_quote("alpha", &id, 1, &format!("q{i}"), 2_000).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap().unwrap().is_ok() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

async fn a_campaign_cap_reserves_exactly_its_slots_under_1000_concurrent_checkouts(s: SqlStore) {
    let s = Arc::new(s);
    let cap = CampaignCap { key: "shop/spring/uid-1".into(), max: 100 };
    let mut quotes = Vec::new();
    for user in 1..=1_000 {
        let q = s.create_quote(&NewQuote { campaign_cap: Some(cap.clone()), ..new_quote(user, 1_000) }).await.unwrap();
        assert_eq!(q.campaign_cap.as_ref(), Some(&cap));
        quotes.push(q);
    }
    let tasks: Vec<_> = quotes
        .iter()
        .map(|q| {
            let (s, id, user) = (s.clone(), q.id.clone(), q.user_id);
            tokio::spawn(async move { s.claim_quote("alpha", &id, user, &format!("pcq-{id}"), 2_000).await })
        })
        .collect();
    let (mut won, mut capped) = (Vec::new(), 0);
    for (t, q) in tasks.into_iter().zip(&quotes) {
        match t.await.unwrap().unwrap() {
            Ok(_) => won.push(q.clone()),
            Err(QuoteRefusal::CapReached) => capped += 1,
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert_eq!((won.len(), capped), (100, 900));
    assert_eq!(s.campaign_redemptions(&cap.key, 2_000).await.unwrap(), 100);
    assert_eq!(rows(&s, "SELECT used FROM campaign_counters").await, 100);
    let refused = quotes.iter().find(|q| !won.iter().any(|w| w.id == q.id)).unwrap();
    assert_eq!(s.quote("alpha", &refused.id).await.unwrap().unwrap().checkout_id, None, "a capped-out checkout claims nothing");
    // A retried checkout of a quote holding a slot keeps it and takes no second one.
    let first = &won[0];
    assert!(s.claim_quote("alpha", &first.id, first.user_id, &format!("pcq-{}", first.id), 3_000).await.unwrap().is_ok());
    assert_eq!(s.campaign_redemptions(&cap.key, 3_000).await.unwrap(), 100);
    // Another campaign (or the same name re-created: another uid) counts on its own.
    assert_eq!(s.campaign_redemptions("shop/spring/uid-2", 3_000).await.unwrap(), 0);

    // One buyer pays (twice delivered): the slot is paid, counted once.
    s.user_or_create("alpha", first.user_id, "en", 0).await.unwrap();
    let mut p = payment("ch_cap", first.user_id, 7, 0, 4_000);
    p.quote_id = Some(first.id.clone());
    assert!(s.apply_payment(&p).await.unwrap().first);
    assert!(!s.apply_payment(&p).await.unwrap().first);
    assert_eq!(s.campaign_redemptions(&cap.key, 4_000).await.unwrap(), 100);

    // The other 99 holds expire unpaid: a sweep (two replicas at once) releases each once.
    let later = 2_000 + CAP_HOLD_MS;
    assert_eq!(s.campaign_redemptions(&cap.key, later).await.unwrap(), 1, "expired holds are not counted");
    let (a, b) = tokio::join!(s.release_expired_holds(later), s.release_expired_holds(later));
    assert_eq!(a.unwrap().len() + b.unwrap().len(), 99);
    assert_eq!(rows(&s, "SELECT used FROM campaign_counters").await, 1);
    assert!(s.release_expired_holds(later).await.unwrap().is_empty());
    // A freed slot is taken by a new checkout.
    let again = quotes.iter().find(|q| !won.iter().any(|w| w.id == q.id)).unwrap();
    assert!(s.claim_quote("alpha", &again.id, again.user_id, "pcq-late", later).await.unwrap().is_ok());
    assert_eq!(s.campaign_redemptions(&cap.key, later).await.unwrap(), 2);
    // A payment arriving after its hold was released still counts (the buyer paid the discount).
    let released = &won[1];
    s.user_or_create("alpha", released.user_id, "en", 0).await.unwrap();
    let mut late = payment("ch_late", released.user_id, 7, 0, later);
    late.quote_id = Some(released.id.clone());
    assert!(s.apply_payment(&late).await.unwrap().first);
    assert_eq!(s.campaign_redemptions(&cap.key, later).await.unwrap(), 3);
    assert_eq!(rows(&s, "SELECT used FROM campaign_counters").await, 3);
}

async fn a_refund_reverses_the_grant_once_and_never_below_zero(s: SqlStore) {
    s.user_or_create("alpha", 1, "en", 0).await.unwrap();
    // Two purchases: 7 days and 10 credits, then 30 days.
    s.apply_payment(&payment("ch_a", 1, 7, 10, 1_000)).await.unwrap();
    s.apply_payment(&payment("ch_b", 1, 30, 0, 2_000)).await.unwrap();
    assert_eq!(s.user("alpha", 1).await.unwrap().unwrap().vip_until_ms, Some(1_000 + 37 * DAY));
    // 4 of the credits are spent.
    assert!(matches!(s.append(&entry("lock:x", 1, -4)).await.unwrap(), LedgerOutcome::Written { balance: 6 }));

    let now = 3_000;
    let RefundOutcome::Reversed { payment: p, vip_until_ms, credits_removed, credits_spent } =
        s.refund_payment("alpha", "ch_a", now).await.unwrap()
    else {
        panic!("reversed")
    };
    assert_eq!((credits_removed, credits_spent), (6, 4));
    assert_eq!(vip_until_ms, Some(1_000 + 30 * DAY), "shortened by the refunded 7 days; the other payment's days stay");
    assert_eq!(p.refunded_ms, Some(now));
    assert_eq!(p.refund_spent_credits, Some(4));
    assert_eq!(s.credits("alpha", 1).await.unwrap(), 0);
    assert_eq!(rows(&s, "SELECT MIN(balance) FROM wallets").await, 0);
    // Again (the admin twice, or Telegram's refunded_payment after the command): nothing.
    assert!(matches!(s.refund_payment("alpha", "ch_a", now + 1).await.unwrap(), RefundOutcome::Already(p) if p.refunded_ms == Some(now)));
    assert_eq!(s.credits("alpha", 1).await.unwrap(), 0);
    assert_eq!(rows(&s, "SELECT COUNT(*) FROM ledger WHERE reason = 'refund'").await, 1);
    assert_eq!(s.refund_payment("alpha", "nope", now).await.unwrap(), RefundOutcome::Unknown);
    assert_eq!(s.refund_payment("beta", "ch_b", now).await.unwrap(), RefundOutcome::Unknown, "another bot's charge");

    // VIP never ends before the refund's moment: refunding the 30 days a day later ends it now.
    let t = 1_000 + DAY;
    let RefundOutcome::Reversed { vip_until_ms, credits_removed, .. } = s.refund_payment("alpha", "ch_b", t).await.unwrap() else {
        panic!("reversed")
    };
    assert_eq!((vip_until_ms, credits_removed), (Some(t), 0));
    assert!(!s.user("alpha", 1).await.unwrap().unwrap().is_vip(t));
    let history = s.payments_of("alpha", 1, 10).await.unwrap();
    assert!(history.iter().all(|p| p.refunded_ms.is_some()), "{history:?}");
    assert_eq!(s.payment_of_charge("alpha", "ch_b").await.unwrap().map(|p| p.refunded_ms), Some(Some(t)));
}

// ---- lock chat -------------------------------------------------------------------------------

fn lock_request(session_id: i64, locker: Member, minutes: u32, credits: i64, request: &str, now_ms: i64) -> LockRequest {
    LockRequest { session_id, locker, minutes, credits, request: request.into(), now_ms }
}

async fn two_replicas_locking_at_once_never_overdraw_and_a_retry_debits_once(s: SqlStore) {
    let s = Arc::new(s);
    let (ann, bob) = (m("alpha", 1), m("beta", 2));
    let session = s.start_session(&ann, &bob, 1_000).await.unwrap();
    assert_eq!(s.append(&entry("gift:1", 1, 3)).await.unwrap(), LedgerOutcome::Written { balance: 3 });
    // Ten presses of a 2-credit lock at once (two replicas, impatient fingers): one is paid for.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let s = s.clone();
            let r = lock_request(session, ann.clone(), 5, 2, &format!("q{i}"), 2_000);
            tokio::spawn(async move { s.lock_chat(&r).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap().unwrap());
    }
    let locked = outcomes.iter().filter(|o| matches!(o, LockOutcome::Locked { first: true, .. })).count();
    let short = outcomes.iter().filter(|o| matches!(o, LockOutcome::Insufficient { balance: 1 })).count();
    assert_eq!((locked, short), (1, 9), "{outcomes:?}");
    assert_eq!(s.credits("alpha", 1).await.unwrap(), 1);
    assert_eq!(rows(&s, "SELECT MIN(balance) FROM wallets").await, 1);
    let winner = (0..10).find(|i| matches!(outcomes[*i], LockOutcome::Locked { .. })).unwrap();
    // The same press again (a retried update): confirmed, not debited.
    let again = s.lock_chat(&lock_request(session, ann.clone(), 5, 2, &format!("q{winner}"), 3_000)).await.unwrap();
    assert_eq!(again, LockOutcome::Locked { until_ms: 2_000 + 300_000, balance: 1, first: false });
    assert_eq!(s.credits("alpha", 1).await.unwrap(), 1);
    let lock = s.chat_lock(session).await.unwrap().unwrap();
    assert_eq!((&lock.locker, lock.until_ms, lock.credits), (&ann, 302_000, 2));
    assert!(lock.holds(302_000 - 1) && !lock.holds(302_000));
}

async fn a_lock_extends_for_its_locker_and_is_refused_to_the_partner(s: SqlStore) {
    let (ann, bob) = (m("alpha", 1), m("beta", 2));
    let session = s.start_session(&ann, &bob, 1_000).await.unwrap();
    s.append(&entry("gift:1", 1, 5)).await.unwrap();
    s.append(&LedgerEntry { bot: "beta".into(), ..entry("gift:2", 2, 5) }).await.unwrap();
    let first = s.lock_chat(&lock_request(session, ann.clone(), 5, 1, "a1", 10_000)).await.unwrap();
    assert_eq!(first, LockOutcome::Locked { until_ms: 310_000, balance: 4, first: true });
    let second = s.lock_chat(&lock_request(session, ann.clone(), 10, 2, "a2", 20_000)).await.unwrap();
    assert_eq!(second, LockOutcome::Locked { until_ms: 910_000, balance: 2, first: true }, "stacked onto the running lock");
    let lock = s.chat_lock(session).await.unwrap().unwrap();
    assert_eq!((lock.started_ms, lock.credits), (10_000, 3));
    // The partner cannot lock over it, and pays nothing for trying.
    let theirs = s.lock_chat(&lock_request(session, bob.clone(), 5, 1, "b1", 30_000)).await.unwrap();
    assert_eq!(theirs, LockOutcome::HeldByPartner { until_ms: 910_000 });
    assert_eq!(s.credits("beta", 2).await.unwrap(), 5);
    // Someone outside the chat cannot lock it; nor can anyone once it ended.
    let outsider = s.lock_chat(&lock_request(session, m("alpha", 3), 5, 1, "c1", 30_000)).await.unwrap();
    assert_eq!(outsider, LockOutcome::NotInChat);
    s.end_session(&ann, &bob, Some(&bob), EndReason::Report, 40_000).await.unwrap();
    let late = s.lock_chat(&lock_request(session, ann.clone(), 5, 1, "a3", 50_000)).await.unwrap();
    assert_eq!(late, LockOutcome::NotInChat);
    assert_eq!(s.credits("alpha", 1).await.unwrap(), 2, "nothing debited for a chat that ended");
}

async fn an_early_end_returns_the_unused_share_once(s: SqlStore) {
    let (ann, bob) = (m("alpha", 1), m("beta", 2));
    let session = s.start_session(&ann, &bob, 0).await.unwrap();
    s.append(&entry("gift:1", 1, 3)).await.unwrap();
    s.lock_chat(&lock_request(session, ann.clone(), 10, 3, "a1", 0)).await.unwrap();
    assert_eq!(s.credits("alpha", 1).await.unwrap(), 0);
    s.end_session(&ann, &bob, Some(&bob), EndReason::Block, 200_000).await.unwrap();
    // A third of the span used: two of three credits back, once however often it is settled.
    let settled = s.settle_lock(session, Some(&bob), EndReason::Block, 200_000).await.unwrap().unwrap();
    assert_eq!((settled.returned, settled.lock.locker.clone()), (2, ann.clone()));
    assert_eq!(s.settle_lock(session, Some(&bob), EndReason::Block, 200_000).await.unwrap(), None, "settled once");
    assert_eq!(s.credits("alpha", 1).await.unwrap(), 2);
    let lock = s.chat_lock(session).await.unwrap().unwrap();
    assert_eq!((lock.settled_ms, lock.returned), (Some(200_000), 2));
    assert!(!lock.holds(200_001), "a settled lock holds nothing");
    // Without a return due (the locker left, a report against them), nothing is credited.
    let other = s.start_session(&ann, &bob, 300_000).await.unwrap();
    s.lock_chat(&lock_request(other, ann.clone(), 5, 1, "a2", 300_000)).await.unwrap();
    let kept = s.settle_lock(other, Some(&ann), EndReason::Stop, 300_001).await.unwrap().unwrap();
    assert_eq!(kept.returned, 0);
    assert_eq!(s.credits("alpha", 1).await.unwrap(), 1);
    assert_eq!(s.settle_lock(12_345, Some(&bob), EndReason::Block, 0).await.unwrap(), None, "a chat without a lock");
}

// ---- referrals -------------------------------------------------------------------------------

async fn a_referral_counts_once_under_concurrency_and_a_loop_is_withheld(s: SqlStore) {
    let s = Arc::new(s);
    for user in [1, 2] {
        s.user_or_create("alpha", user, "en", 0).await.unwrap();
    }
    assert!(s.record_referral("alpha", 2, 1, None, 1_000).await.unwrap());
    assert!(!s.record_referral("alpha", 2, 9, None, 1_000).await.unwrap(), "one referrer per referee and bot");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.complete_referral("alpha", 2, 3, 10_000).await })
        })
        .collect();
    let mut counted = Vec::new();
    for t in tasks {
        if let Some(done) = t.await.unwrap().unwrap() {
            counted.push(done);
        }
    }
    assert_eq!(counted.len(), 1, "{counted:?}");
    assert_eq!(counted[0].status, ReferralStatus::Rewarded);
    assert_eq!(counted[0].referrer_vip_until_ms, Some(10_000 + 3 * 86_400_000));
    assert_eq!(s.user("alpha", 1).await.unwrap().unwrap().vip_until_ms, Some(10_000 + 3 * 86_400_000), "granted once");
    assert_eq!(s.rewarded_referrer("alpha", 2).await.unwrap(), Some(1));
    // B invited A on another bot, and A invites B here: a loop, withheld.
    s.user_or_create("alpha", 3, "en", 0).await.unwrap();
    s.record_referral("beta", 1, 3, None, 1_000).await.unwrap();
    s.record_referral("alpha", 3, 1, None, 1_000).await.unwrap();
    let looped = s.complete_referral("alpha", 3, 3, 20_000).await.unwrap().unwrap();
    assert_eq!((looped.status, looped.flag, looped.referrer_vip_until_ms), (ReferralStatus::Withheld, Some(ReferralFlag::Loop), None));
    assert_eq!(s.rewarded_referrer("alpha", 3).await.unwrap(), None, "no share of a withheld referee's purchases");
    let stats = s.referral_stats("alpha", 1).await.unwrap();
    assert_eq!((stats.joined, stats.counted, stats.not_counted, stats.pending), (2, 1, 1, 0));
}

async fn a_commission_is_credited_once_and_reversed_once_never_below_zero(s: SqlStore) {
    assert_eq!(s.credit_commission("alpha", 1, "ch1", 5, 1_000).await.unwrap(), Some(5));
    assert_eq!(s.credit_commission("alpha", 1, "ch1", 5, 2_000).await.unwrap(), None, "once per charge");
    assert_eq!(s.credit_commission("alpha", 1, "ch0", 0, 2_000).await.unwrap(), None, "a zero share writes nothing");
    // Four of the five are spent on locks before the purchase is refunded.
    assert_eq!(s.append(&entry("lock:x", 1, -4)).await.unwrap(), LedgerOutcome::Written { balance: 1 });
    assert_eq!(s.reverse_commission("alpha", "ch1", 3_000).await.unwrap(), Some((1, 1)), "only what is left");
    assert_eq!(s.reverse_commission("alpha", "ch1", 4_000).await.unwrap(), None, "once");
    assert_eq!(s.reverse_commission("alpha", "nope", 4_000).await.unwrap(), None);
    assert_eq!(s.credits("alpha", 1).await.unwrap(), 0);
    assert_eq!(s.referral_stats("alpha", 1).await.unwrap().credits_earned, 4);
}

async fn each_vip_deadline_is_claimed_for_notice_once_across_replicas(s: SqlStore) {
    let s = Arc::new(s);
    for user in 1..=3 {
        s.user_or_create("alpha", user, "en", 0).await.unwrap();
    }
    // Ann's VIP ends in 12 hours, Bob's in 3 days; Cleo has none.
    s.apply_payment(&payment("c1", 1, 1, 0, 0)).await.unwrap();
    s.apply_payment(&payment("c2", 2, 3, 0, 0)).await.unwrap();
    let now = 12 * 3_600_000;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim_vip_notices("alpha", now).await })
        })
        .collect();
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap().unwrap());
    }
    assert_eq!(claimed.len(), 1, "one reminder, whichever replica claimed it: {claimed:?}");
    assert_eq!((claimed[0].user_id, claimed[0].ended), (1, false));
    let ended = s.claim_vip_notices("alpha", 86_400_000 + 1).await.unwrap();
    assert_eq!(ended.iter().map(|n| (n.user_id, n.ended)).collect::<Vec<_>>(), vec![(1, true)]);
    assert!(s.claim_vip_notices("alpha", 86_400_000 + 2).await.unwrap().is_empty());
}

async fn a_reconcile_offset_moves_once_from_where_it_was_read(s: SqlStore) {
    let s = Arc::new(s);
    assert_eq!(s.reconcile_offset("alpha").await.unwrap(), 0);
    assert!(s.save_reconcile_offset("alpha", 0, 5, 1).await.unwrap());
    assert!(!s.save_reconcile_offset("alpha", 0, 7, 2).await.unwrap(), "a pass that read 0 was overtaken");
    assert_eq!(s.reconcile_offset("alpha").await.unwrap(), 5);
    // Replicas' passes that all read 5 save at once: one moves it.
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.save_reconcile_offset("alpha", 5, 6 + i, 3).await })
        })
        .collect();
    let mut moved = 0;
    for t in tasks {
        moved += usize::from(t.await.unwrap().unwrap());
    }
    assert_eq!(moved, 1);
    assert!((6..10).contains(&s.reconcile_offset("alpha").await.unwrap()));
    assert_eq!(s.reconcile_offset("beta").await.unwrap(), 0, "per bot");
}

async fn a_subscription_is_started_renewed_and_cancelled(s: SqlStore) {
    s.user_or_create("alpha", 1, "en", 0).await.unwrap();
    let sub = Subscription {
        bot: "alpha".into(),
        user_id: 1,
        plan_id: "vip-monthly".into(),
        first_charge_id: "ch1".into(),
        until_ms: 30 * DAY,
        canceled_ms: None,
    };
    s.record_subscription(&sub, true, 0).await.unwrap();
    s.record_subscription(&sub, true, 1).await.unwrap();
    s.record_subscription(&Subscription { until_ms: 60 * DAY, first_charge_id: "ignored".into(), ..sub.clone() }, false, 2).await.unwrap();
    s.record_subscription(&Subscription { until_ms: 45 * DAY, ..sub.clone() }, false, 3).await.unwrap();
    let subs = s.subscriptions_of("alpha", 1).await.unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!((subs[0].first_charge_id.as_str(), subs[0].until_ms), ("ch1", 60 * DAY), "renewals move the end, never back");
    let cancelled = s.cancel_subscription("alpha", 1, "vip-monthly", 5).await.unwrap().unwrap();
    assert_eq!(cancelled.canceled_ms, Some(5));
    assert_eq!(s.cancel_subscription("alpha", 1, "vip-monthly", 9).await.unwrap().unwrap().canceled_ms, Some(5), "once");
    assert_eq!(s.cancel_subscription("alpha", 1, "other", 9).await.unwrap(), None);
    // A payment of the period keeps VIP at least to its end.
    let mut p = payment("ch1", 1, 30, 0, 0);
    p.subscription_until_ms = Some(30 * DAY);
    assert_eq!(s.apply_payment(&p).await.unwrap().payment.vip_until_ms, Some(30 * DAY));
    let mut renewal = payment("ch2", 1, 30, 0, 29 * DAY);
    renewal.subscription_until_ms = Some(60 * DAY);
    assert_eq!(s.apply_payment(&renewal).await.unwrap().payment.vip_until_ms, Some(60 * DAY), "not stacked: the period's end");
}

// ---- backends -------------------------------------------------------------------------------

async fn postgres_store() -> (SqlStore, TestDb) {
    let db = TestDb::create().await.expect("postgres");
    let s = SqlStore::connect(&db.url).await.expect("connect");
    assert_eq!(s.backend(), Backend::Postgres);
    s.migrate().await.expect("migrate");
    (s, db)
}

/// An SQLite file of its own, removed (with its WAL files) on drop.
struct SqliteFile {
    path: PathBuf,
}

impl SqliteFile {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!("botfleet-store-{}-{}-{:08x}.db", std::process::id(), N.fetch_add(1, Ordering::Relaxed), rand::random::<u32>());
        Self { path: std::env::temp_dir().join(name) }
    }

    fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.path.display())
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn sqlite_store() -> (SqlStore, SqliteFile) {
    let file = SqliteFile::new();
    let s = SqlStore::connect(&file.url()).await.expect("connect");
    assert_eq!(s.backend(), Backend::Sqlite);
    s.migrate().await.expect("migrate");
    (s, file)
}

macro_rules! both_databases {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { let (s, _db) = postgres_store().await; super::$name(s).await; } )*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn migrations_can_run_twice_and_concurrently() {
                let db = TestDb::create().await.expect("postgres");
                super::migrations_can_run_twice_and_concurrently(db.url.clone()).await;
            }
        }
        mod sqlite {
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { let (s, _f) = sqlite_store().await; super::$name(s).await; } )*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn migrations_can_run_twice_and_concurrently() {
                let file = SqliteFile::new();
                super::migrations_can_run_twice_and_concurrently(file.url()).await;
            }
            /// WAL (readers do not block the writer) and a busy timeout (a writer waits for another).
            #[tokio::test]
            async fn a_file_database_uses_wal_and_waits_for_writers() {
                let (s, _f) = sqlite_store().await;
                let mode: String = sqlx::query("PRAGMA journal_mode").fetch_one(s.pool()).await.unwrap().try_get(0).unwrap();
                assert_eq!(mode, "wal");
                assert_eq!(rows(&s, "PRAGMA busy_timeout").await, 5_000);
            }
        }
    };
}

both_databases!(
    a_campaign_cap_reserves_exactly_its_slots_under_1000_concurrent_checkouts,
    a_refund_reverses_the_grant_once_and_never_below_zero,
    a_new_user_starts_at_the_terms,
    user_or_create_is_idempotent_under_concurrency,
    profile_round_trips,
    delete_erases_the_profile_but_keeps_blocks,
    blocks_are_listed_for_matching,
    reporters_are_counted_distinct_within_the_window,
    a_session_ends_once_from_either_side,
    start_session_is_idempotent,
    a_rating_replaces_the_previous_one_and_outsiders_cannot_rate,
    stats_count_finished_chats_and_ratings,
    unexpected_stored_values_are_reported_as_corrupt,
    ping_answers_and_a_closed_store_is_unavailable,
    a_replica_of_the_previous_release_starts_after_a_newer_one_migrated,
    a_restriction_belongs_to_the_person_on_every_bot,
    a_ban_survives_delete_me_and_the_person_is_not_new_again,
    a_restriction_written_by_the_previous_release_still_holds,
    same_name_bots_in_two_namespaces_never_share_users,
    rows_of_the_previous_release_are_adopted_by_the_namespaced_bot,
    the_overviews_counts_equal_the_rows_after_every_kind_of_write,
    activity_and_funnel_events_are_recorded_once,
    one_charge_applied_by_ten_tasks_at_once_grants_once,
    vip_days_stack_onto_an_unexpired_vip_and_start_afresh_after_expiry,
    the_ledger_never_goes_negative_under_concurrent_debits,
    a_quote_is_single_use_owned_by_the_buyer_and_expires,
    mirror_copies_are_indexed_by_session,
    two_replicas_locking_at_once_never_overdraw_and_a_retry_debits_once,
    a_lock_extends_for_its_locker_and_is_refused_to_the_partner,
    an_early_end_returns_the_unused_share_once,
    a_referral_counts_once_under_concurrency_and_a_loop_is_withheld,
    a_commission_is_credited_once_and_reversed_once_never_below_zero,
    each_vip_deadline_is_claimed_for_notice_once_across_replicas,
    a_reconcile_offset_moves_once_from_where_it_was_read,
    a_subscription_is_started_renewed_and_cancelled,
);

/// `sqlite::memory:` is one database, however many calls run at once (the Any driver would
/// otherwise give each pooled connection its own empty database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_sqlite_database_is_one_database() {
    let s = Arc::new(SqlStore::connect("sqlite::memory:").await.unwrap());
    s.migrate().await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.user_or_create("alpha", i, "en", i).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(rows(&s, "SELECT COUNT(*) FROM users").await, 10);
    s.migrate().await.unwrap();
}

/// The migrations compiled into the binary are the files under migrations/, byte for byte
/// (same versions, descriptions and checksums as sqlx resolves the directories).
#[tokio::test]
async fn the_embedded_migrations_are_the_files_in_migrations() {
    for (backend, dir) in [(Backend::Postgres, "postgres"), (Backend::Sqlite, "sqlite")] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../migrations").join(dir);
        let on_disk = Migrator::new(path).await.unwrap();
        let embedded = SqlStore::migrator(backend);
        let key = |m: &Migration| (m.version, m.description.to_string(), m.checksum.to_vec(), m.no_tx);
        assert_eq!(embedded.iter().map(key).collect::<Vec<_>>(), on_disk.iter().map(key).collect::<Vec<_>>(), "{dir}");
        assert!(embedded.iter().count() > 0);
    }
}

#[tokio::test]
async fn an_unknown_database_url_is_refused_without_echoing_it() {
    let err = SqlStore::connect("mysql://root:hunter2@db/app").await.unwrap_err();
    assert!(matches!(&err, StoreError::Unavailable(msg) if !msg.contains("hunter2")), "{err}");
}

/// Issue 9, defect 10: a database URL that asks for TLS (`sslmode=require`) gets an encrypted
/// connection (rustls); the test Postgres has TLS on with a self-signed certificate, which
/// `require` accepts without verifying, as libpq does.
#[tokio::test]
async fn a_postgres_url_asking_for_tls_gets_an_encrypted_connection() {
    let db = TestDb::create().await.expect("Postgres");
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}sslmode=require", db.url);
    let store = SqlStore::connect(&url).await.expect("a TLS connection");
    let row = sqlx::query("SELECT CAST(CASE WHEN ssl THEN 1 ELSE 0 END AS BIGINT) AS on_tls FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .expect("pg_stat_ssl");
    let on_tls: i64 = row.try_get("on_tls").expect("a number");
    assert_eq!(on_tls, 1, "the connection is not encrypted");
    store.pool().close().await;
    let _ = db.drop_db().await;
}
