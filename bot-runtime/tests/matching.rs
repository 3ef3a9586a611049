//! One behaviour suite for matching, run against both stores: Redis (the Lua script, real
//! Redis, a key prefix per test) and the embedded in-memory store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bot_runtime::keys::Keys;
use bot_runtime::matching::memory::MemoryPool;
use bot_runtime::matching::redis::RedisPool;
use bot_runtime::matching::{Gender, MatchPool, Member, Rules, SearchOutcome, Seeker, Tier, Want};
use botfleet_tests::fixtures::TestRedis;

const POOL: &str = "eu-chat";
const MIN: i64 = 60_000;

fn seeker(bot: &str, user: i64, gender: Gender, want: Want, vip: bool) -> Seeker {
    Seeker { member: Member::new(bot, user), gender, want, vip }
}

fn anyone(bot: &str, user: i64) -> Seeker {
    seeker(bot, user, Gender::Other, Want::Anyone, false)
}

fn rules() -> Rules {
    Rules { recent_window: Duration::from_secs(20 * 60), scan_limit: 200 }
}

async fn matched<P: MatchPool>(p: &P, s: &Seeker, now: i64) -> Option<Member> {
    match p.search(POOL, s, now, rules()).await.unwrap() {
        SearchOutcome::Matched { partner } => Some(partner),
        SearchOutcome::Queued => None,
        other => panic!("{other:?}"),
    }
}

async fn two_waiting_users_are_paired_across_bots<P: MatchPool>(p: P) {
    assert_eq!(matched(&p, &anyone("alpha", 1), 0).await, None);
    assert_eq!(p.queue_len(POOL, Tier::Free).await.unwrap(), 1);
    assert_eq!(matched(&p, &anyone("beta", 2), 1).await, Some(Member::new("alpha", 1)));
    assert_eq!(p.partner(POOL, &Member::new("alpha", 1)).await.unwrap(), Some(Member::new("beta", 2)));
    assert_eq!(p.partner(POOL, &Member::new("beta", 2)).await.unwrap(), Some(Member::new("alpha", 1)));
    assert_eq!(p.queue_len(POOL, Tier::Free).await.unwrap(), 0);
    // Another pool never sees this one.
    assert_eq!(p.search("us-chat", &anyone("gamma", 3), 2, rules()).await.unwrap(), SearchOutcome::Queued);
}

async fn a_second_search_in_a_chat_reports_the_partner<P: MatchPool>(p: P) {
    matched(&p, &anyone("alpha", 1), 0).await;
    matched(&p, &anyone("alpha", 2), 1).await;
    assert_eq!(
        p.search(POOL, &anyone("alpha", 1), 2, rules()).await.unwrap(),
        SearchOutcome::AlreadyInChat { partner: Member::new("alpha", 2) }
    );
}

async fn the_vip_queue_is_served_before_the_free_one<P: MatchPool>(p: P) {
    // Two waiting users who cannot match each other: a free one (older) and a VIP.
    matched(&p, &seeker("alpha", 1, Gender::Male, Want::Only(Gender::Female), false), 0).await;
    matched(&p, &seeker("beta", 2, Gender::Male, Want::Only(Gender::Female), true), 10).await;
    assert_eq!(p.queue_len(POOL, Tier::Vip).await.unwrap(), 1);
    // A woman searching is offered the VIP first, though the free user waited longer.
    assert_eq!(matched(&p, &seeker("alpha", 3, Gender::Female, Want::Anyone, false), 20).await, Some(Member::new("beta", 2)));
    // The next woman gets the free user.
    assert_eq!(matched(&p, &seeker("alpha", 4, Gender::Female, Want::Anyone, false), 30).await, Some(Member::new("alpha", 1)));
}

async fn within_a_queue_the_longest_waiting_goes_first<P: MatchPool>(p: P) {
    for (i, t) in [(1, 0), (2, 10), (3, 20)] {
        matched(&p, &seeker("alpha", i, Gender::Male, Want::Only(Gender::Female), false), t).await;
    }
    // Searching again keeps one's place.
    matched(&p, &seeker("alpha", 1, Gender::Male, Want::Only(Gender::Female), false), 30).await;
    assert_eq!(matched(&p, &seeker("beta", 9, Gender::Female, Want::Anyone, false), 40).await, Some(Member::new("alpha", 1)));
    assert_eq!(matched(&p, &seeker("beta", 8, Gender::Female, Want::Anyone, false), 50).await, Some(Member::new("alpha", 2)));
}

async fn gender_choices_hold_on_both_sides<P: MatchPool>(p: P) {
    // A VIP who wants women is not given a man, and a man waiting for women is not given a man.
    matched(&p, &seeker("alpha", 1, Gender::Male, Want::Anyone, false), 0).await;
    assert_eq!(matched(&p, &seeker("alpha", 2, Gender::Male, Want::Only(Gender::Female), true), 1).await, None);
    matched(&p, &seeker("alpha", 3, Gender::Female, Want::Only(Gender::Female), false), 2)
        .await
        .map(|_| panic!("3 wants women only"))
        .unwrap_or(());
    // A woman who accepts anyone: the VIP (who wants women) is offered first.
    assert_eq!(matched(&p, &seeker("alpha", 4, Gender::Female, Want::Anyone, false), 3).await, Some(Member::new("alpha", 2)));
}

async fn recent_partners_are_not_rematched_within_the_window<P: MatchPool>(p: P) {
    matched(&p, &anyone("alpha", 1), 0).await;
    matched(&p, &anyone("beta", 2), 1).await;
    p.end_chat(POOL, &Member::new("alpha", 1)).await.unwrap();
    matched(&p, &anyone("alpha", 1), 2).await;
    assert_eq!(matched(&p, &anyone("beta", 2), 3).await, None, "19 minutes to go");
    p.cancel(POOL, &Member::new("beta", 2)).await.unwrap();
    assert_eq!(matched(&p, &anyone("beta", 2), 1 + 20 * MIN).await, Some(Member::new("alpha", 1)), "after the window");
}

async fn blocked_users_never_meet_again_either_way<P: MatchPool>(p: P) {
    let a = Member::new("alpha", 1);
    p.block(POOL, 1, 2).await.unwrap();
    matched(&p, &anyone("alpha", 1), 0).await;
    assert_eq!(matched(&p, &anyone("beta", 2), 100 * MIN).await, None, "b is blocked by a");
    assert_eq!(matched(&p, &anyone("gamma", 3), 100 * MIN).await, Some(a.clone()));
}

/// A person (a Telegram user id) is the same on every bot: blocks, recent partners and the
/// "one chat at a time" rule hold per person, through whichever bot they search.
async fn a_person_is_never_matched_with_themselves_through_another_bot<P: MatchPool>(p: P) {
    matched(&p, &anyone("alpha", 1), 0).await;
    assert_eq!(matched(&p, &anyone("beta", 1), 1).await, None, "the same person on beta waits instead");
    assert_eq!(matched(&p, &anyone("gamma", 2), 2).await, Some(Member::new("alpha", 1)));
}

async fn a_person_is_in_at_most_one_chat_per_pool<P: MatchPool>(p: P) {
    // Ann waits through alpha and through beta; Bob takes the alpha one.
    matched(&p, &anyone("alpha", 1), 0).await;
    matched(&p, &anyone("beta", 1), 1).await;
    assert_eq!(matched(&p, &anyone("gamma", 2), 2).await, Some(Member::new("alpha", 1)));
    // Her beta place is gone with it: Carol waits rather than getting a second Ann chat.
    assert_eq!(matched(&p, &anyone("gamma", 3), 3).await, None);
    assert!(!p.waiting(POOL, &Member::new("beta", 1)).await.unwrap());
    // Searching through beta while in the alpha chat says where the chat is.
    assert_eq!(
        p.search(POOL, &anyone("beta", 1), 4, rules()).await.unwrap(),
        SearchOutcome::BusyElsewhere { holder: Member::new("alpha", 1) }
    );
    // Once it ends she is free on every bot.
    p.end_chat(POOL, &Member::new("gamma", 2)).await.unwrap();
    assert_eq!(matched(&p, &anyone("beta", 1), 5).await, Some(Member::new("gamma", 3)));
}

async fn a_block_holds_through_every_bot_of_both_people<P: MatchPool>(p: P) {
    p.block(POOL, 1, 2).await.unwrap();
    matched(&p, &anyone("alpha", 1), 0).await;
    assert_eq!(matched(&p, &anyone("gamma", 2), 1).await, None, "blocked on alpha, not met on gamma");
    p.cancel(POOL, &Member::new("alpha", 1)).await.unwrap();
    matched(&p, &anyone("beta", 1), 2).await;
    assert_eq!(matched(&p, &anyone("delta", 2), 100 * MIN).await, None, "nor through any other pair of bots");
}

async fn recent_partners_are_people_not_bots<P: MatchPool>(p: P) {
    matched(&p, &anyone("alpha", 1), 0).await;
    matched(&p, &anyone("beta", 2), 1).await;
    p.end_chat(POOL, &Member::new("alpha", 1)).await.unwrap();
    matched(&p, &anyone("gamma", 1), 2).await;
    assert_eq!(matched(&p, &anyone("delta", 2), 3).await, None, "the same two people, other bots");
}

async fn a_restricted_person_leaves_every_queue_of_the_pool<P: MatchPool>(p: P) {
    matched(&p, &anyone("alpha", 1), 0).await;
    matched(&p, &anyone("beta", 1), 1).await;
    assert_eq!(p.cancel_person(POOL, 1).await.unwrap(), 2);
    assert_eq!(p.queue_len(POOL, Tier::Free).await.unwrap(), 0);
    assert_eq!(matched(&p, &anyone("gamma", 2), 2).await, None);
}

async fn the_members_of_a_bot_are_found_for_retiring_it<P: MatchPool>(p: P) {
    matched(&p, &anyone("alpha", 1), 0).await;
    matched(&p, &anyone("beta", 2), 1).await;
    matched(&p, &anyone("alpha", 3), 2).await;
    matched(&p, &seeker("beta", 4, Gender::Male, Want::Only(Gender::Male), true), 3).await;
    assert_eq!(p.members_of(POOL, "alpha").await.unwrap(), vec![Member::new("alpha", 1), Member::new("alpha", 3)]);
    assert_eq!(p.members_of(POOL, "beta").await.unwrap(), vec![Member::new("beta", 2), Member::new("beta", 4)]);
    assert_eq!(p.members_of(POOL, "gamma").await.unwrap(), vec![]);
    assert_eq!(p.members_of("other-pool", "alpha").await.unwrap(), vec![]);
}

async fn ending_a_chat_ends_it_for_both_once<P: MatchPool>(p: P) {
    matched(&p, &anyone("alpha", 1), 0).await;
    matched(&p, &anyone("beta", 2), 1).await;
    assert_eq!(p.end_chat(POOL, &Member::new("beta", 2)).await.unwrap(), Some(Member::new("alpha", 1)));
    assert_eq!(p.end_chat(POOL, &Member::new("alpha", 1)).await.unwrap(), None, "already ended by the partner");
    assert_eq!(p.partner(POOL, &Member::new("alpha", 1)).await.unwrap(), None);
}

async fn cancel_leaves_the_queue<P: MatchPool>(p: P) {
    matched(&p, &anyone("alpha", 1), 0).await;
    assert!(p.cancel(POOL, &Member::new("alpha", 1)).await.unwrap());
    assert!(!p.cancel(POOL, &Member::new("alpha", 1)).await.unwrap());
    assert_eq!(matched(&p, &anyone("beta", 2), 1).await, None, "nobody waits any more");
}

/// Many members searching at once from many tasks: nobody ends up in two chats, every pair
/// is mutual, and everyone is either paired or waiting.
async fn simultaneous_searches_never_double_match<P: MatchPool + 'static>(p: P, users: i64) {
    let p = Arc::new(p);
    let mut tasks = Vec::new();
    for u in 0..users {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let bot = if u % 2 == 0 { "alpha" } else { "beta" };
            let g = if u % 3 == 0 { Gender::Female } else { Gender::Male };
            let s = Seeker { member: Member::new(bot, u), gender: g, want: Want::Anyone, vip: u % 5 == 0 };
            // Each user taps "Find partner" twice, as impatient users do.
            let first = p.search(POOL, &s, u, rules()).await.unwrap();
            let second = p.search(POOL, &s, u + 1, rules()).await.unwrap();
            (s.member, first, second)
        }));
    }
    let mut claimed: HashMap<Member, Member> = HashMap::new();
    for t in tasks {
        let (me, first, second) = t.await.unwrap();
        for outcome in [first, second] {
            if let SearchOutcome::Matched { partner } = outcome {
                assert!(claimed.insert(me.clone(), partner.clone()).is_none_or(|prev| prev == partner), "{me} matched twice");
            }
        }
    }
    let mut paired = HashSet::new();
    for u in 0..users {
        let me = Member::new(if u % 2 == 0 { "alpha" } else { "beta" }, u);
        if let Some(partner) = p.partner(POOL, &me).await.unwrap() {
            assert_eq!(p.partner(POOL, &partner).await.unwrap(), Some(me.clone()), "pairs are mutual");
            paired.insert(me);
        }
    }
    let waiting = p.queue_len(POOL, Tier::Free).await.unwrap() + p.queue_len(POOL, Tier::Vip).await.unwrap();
    assert_eq!(paired.len() as u64 + waiting, users as u64, "everyone is paired or waiting, once");
    assert!(waiting <= 1, "with everyone accepting anyone, at most one is left waiting: {waiting}");
}

async fn redis_pool() -> (RedisPool, TestRedis) {
    let r = TestRedis::create().await.expect("redis");
    (RedisPool::new(r.conn.clone(), Keys::new(r.prefix.clone())), r)
}

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(MemoryPool::new()).await; } )*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn simultaneous_searches_never_double_match() { super::simultaneous_searches_never_double_match(MemoryPool::new(), 2000).await; }
        }
        mod redis {
            use super::*;
            $( #[tokio::test] async fn $name() { let (p, _r) = redis_pool().await; super::$name(p).await; } )*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn simultaneous_searches_never_double_match() { let (p, _r) = redis_pool().await; super::simultaneous_searches_never_double_match(p, 2000).await; }
        }
    };
}

both_stores!(
    two_waiting_users_are_paired_across_bots,
    a_second_search_in_a_chat_reports_the_partner,
    the_vip_queue_is_served_before_the_free_one,
    within_a_queue_the_longest_waiting_goes_first,
    gender_choices_hold_on_both_sides,
    recent_partners_are_not_rematched_within_the_window,
    blocked_users_never_meet_again_either_way,
    ending_a_chat_ends_it_for_both_once,
    cancel_leaves_the_queue,
    a_person_is_never_matched_with_themselves_through_another_bot,
    a_person_is_in_at_most_one_chat_per_pool,
    a_block_holds_through_every_bot_of_both_people,
    recent_partners_are_people_not_bots,
    a_restricted_person_leaves_every_queue_of_the_pool,
    the_members_of_a_bot_are_found_for_retiring_it,
);

/// More than a scan's worth of members who suit nobody searching now must not hide a
/// suitable one waiting behind them.
async fn a_crowd_of_unsuitable_waiters_does_not_hide_a_partner<P: MatchPool>(p: P) {
    let small = Rules { scan_limit: 10, ..rules() };
    for i in 0..50 {
        let s = seeker("crowd", i, Gender::Male, Want::Only(Gender::Other), false);
        p.search(POOL, &s, i, small).await.unwrap();
    }
    p.search(POOL, &seeker("alpha", 1, Gender::Female, Want::Only(Gender::Male), false), 100, small).await.unwrap();
    let found = p.search(POOL, &seeker("beta", 2, Gender::Male, Want::Anyone, false), 200, small).await.unwrap();
    assert_eq!(found, SearchOutcome::Matched { partner: Member::new("alpha", 1) });
}

mod crowd {
    use super::*;
    #[tokio::test]
    async fn memory() {
        a_crowd_of_unsuitable_waiters_does_not_hide_a_partner(MemoryPool::new()).await;
    }
    #[tokio::test]
    async fn redis() {
        let (p, _r) = redis_pool().await;
        a_crowd_of_unsuitable_waiters_does_not_hide_a_partner(p).await;
    }
}

/// Release N keyed a pool by its bare name; this release by `<namespace>/<pool>`. Adoption at
/// start moves every key, so a chat, a waiting member, an outbox job, a timer and a done
/// update written by release N carry on, and a same-name pool of another namespace stays apart.
#[tokio::test]
async fn release_n_pairs_queues_jobs_and_timers_carry_on_after_the_namespaced_upgrade() {
    use bot_runtime::hot::redis::RedisHot;
    use bot_runtime::hot::{Commit, Job, Lane, Maintenance, Marker, Outbox, Timer, Timers};
    let (p, r) = redis_pool().await;
    let hot = RedisHot::new(r.conn.clone(), Keys::new(r.prefix.clone()), 4);
    // Release N's state under the bare pool name.
    matched(&p, &anyone("alpha", 1), 0).await;
    assert_eq!(matched(&p, &anyone("beta", 2), 1).await, Some(Member::new("alpha", 1)));
    matched(&p, &anyone("alpha", 3), 2).await;
    let job = Job::to(&Member::new("beta", 2), Lane::Interactive, "sendMessage", serde_json::json!({"chat_id": 2, "text": "hi"}));
    hot.commit(POOL, Marker::Update { bot: "alpha".into(), update_id: 77, keep: Duration::from_secs(3600) }, &[job]).await.unwrap();
    let timer =
        Timer { id: "idle:alpha:1|beta:2".into(), due_ms: 5, payload: serde_json::json!({"k": "idle", "a": "alpha:1", "b": "beta:2"}) };
    hot.schedule(POOL, "alpha", &timer).await.unwrap();

    let (team_a, team_b) = ("team-a/eu-chat", "team-b/eu-chat");
    // A replica of this release already served the pool during the rollout: its job for Bob
    // and release N's are merged, not one of them dropped.
    let newer = Job::to(&Member::new("beta", 2), Lane::Interactive, "sendMessage", serde_json::json!({"chat_id": 2, "text": "new"}));
    hot.commit(team_a, Marker::None, &[newer]).await.unwrap();
    let moved = hot.adopt_legacy_pool(POOL, team_a).await.unwrap();
    assert!(moved >= 6, "{moved}");
    assert_eq!(hot.adopt_legacy_pool(POOL, team_a).await.unwrap(), 0, "idempotent");

    assert_eq!(p.partner(team_a, &Member::new("alpha", 1)).await.unwrap(), Some(Member::new("beta", 2)));
    assert!(p.waiting(team_a, &Member::new("alpha", 3)).await.unwrap());
    let shard = hot.shard_of(2);
    assert_eq!(hot.outbox_read(team_a, "beta", shard, Lane::Interactive, 10).await.unwrap().len(), 2, "both releases' jobs");
    let fired = hot.claim_timers(team_a, "alpha", 10, Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].payload, timer.payload);
    // A member who waited under release N can leave the queue (its queue name moved too).
    assert!(p.cancel(team_a, &Member::new("alpha", 3)).await.unwrap());
    assert!(!p.waiting(team_a, &Member::new("alpha", 3)).await.unwrap());
    assert_eq!(p.queue_len(team_a, Tier::Free).await.unwrap(), 0);
    // The chat ends normally in the new layout.
    assert_eq!(p.end_chat(team_a, &Member::new("beta", 2)).await.unwrap(), Some(Member::new("alpha", 1)));
    // The same pool name in another namespace sees none of it.
    assert_eq!(p.partner(team_b, &Member::new("alpha", 1)).await.unwrap(), None);
    assert!(!p.waiting(team_b, &Member::new("alpha", 3)).await.unwrap());
    assert_eq!(matched(&p, &Seeker { member: Member::new("alpha", 9), ..anyone("alpha", 9) }, 3).await, None);
    assert_eq!(p.search(team_b, &anyone("gamma", 4), 4, rules()).await.unwrap(), SearchOutcome::Queued, "alpha:3 is not in team-b's pool");
}
