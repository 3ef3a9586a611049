//! A broadcast to 50,000 members (issue #11; docs/ADMIN.md, "Broadcast"): real processes — one
//! `bot-runtime serve` per bot and one `bot-runtime admin` (the producer) — on Postgres + Redis,
//! sending to the fake Telegram with its flood limits on (each bot allowed BENCH_RATE messages
//! a second, its `perBotPerSecond` the same; each chat 1/s).
//!
//! `cargo bench -p bot-runtime --bench broadcast` — needs Postgres (DATABASE_URL) and Redis
//! (REDIS_URL). BENCH_MEMBERS members (default 50,000) split over BENCH_BOTS bots (default 10),
//! each sending at most BENCH_RATE messages/s (default 30, Telegram's free rate). Each runtime
//! gets a pool of BENCH_DB_POOL Postgres connections (default 4: eleven processes share one
//! Postgres). Three broadcasts to everyone:
//!
//! 1. undisturbed: sends per second against the bots' budgets (BENCH_BOTS × BENCH_RATE), over
//!    the steady middle (10 % → 90 % delivered) and from the create to the last message;
//! 2. every process stopped gracefully (SIGTERM) at half-way and started again: duplicates,
//!    members skipped, what the runtime reports as possibly repeated;
//! 3. every process killed (SIGKILL) at half-way and started again: the same.
//!
//! BENCH_PAID_RATE (default 0: free) makes the broadcasts paid (docs/ADMIN.md, "Paid
//! broadcasts"): each bot's `paidBroadcastPerSecond` and the fake's paid budget, and the budget
//! the sends are measured against (the bots get Stars enough). BENCH_RESTARTS=0 runs the
//! undisturbed broadcast only.
//!
//! The fake Telegram and this driver run on the same 2 cores as the runtime processes,
//! Postgres and Redis.

#[path = "common/mod.rs"]
mod common;
use common::broadcast::BroadcastRun;
use common::env_or;

use std::time::{Duration, Instant};

fn main() {
    let members = env_or("BENCH_MEMBERS", 50_000) as i64;
    let bots = env_or("BENCH_BOTS", 10).max(1) as usize;
    let rate = env_or("BENCH_RATE", 30).max(1);
    let pool = env_or("BENCH_DB_POOL", 4);
    let paid_rate = env_or("BENCH_PAID_RATE", 0);
    let restarts = env_or("BENCH_RESTARTS", 1) != 0;
    // SAFETY: set before any other thread exists (the runtime is built below); the child
    // processes inherit it.
    unsafe { std::env::set_var("DATABASE_POOL_SIZE", pool.to_string()) };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run(members, bots, rate, (paid_rate > 0).then_some(paid_rate), restarts));
}

/// Generous: a phase that takes longer than this has failed, not been slow.
fn limit(members: i64, budget: u64) -> Duration {
    Duration::from_secs(120 + 4 * members as u64 / budget)
}

async fn run(members: i64, bots: usize, rate: u64, paid_rate: Option<u64>, restarts: bool) {
    let per_bot = members / bots as i64;
    let members = per_bot * bots as i64;
    let budget = bots as u64 * paid_rate.unwrap_or(rate);
    let paid = paid_rate.is_some();
    let t = Instant::now();
    let mut run = BroadcastRun::start_paid(bots, per_bot, rate, paid_rate).await;
    for b in &run.bots {
        run.sim.set_star_balance(&b.username, members).expect("Stars");
    }
    println!(
        "{members} members on {bots} bots ({per_bot} each), each bot {} messages/s{} (budget {budget}/s); processes up and members seeded in {:.1} s",
        paid_rate.unwrap_or(rate),
        if paid { " paid" } else { "" },
        t.elapsed().as_secs_f64()
    );
    let limit = limit(members, budget);

    // 1. Undisturbed.
    let ids = run.broadcast_to_all_as("Bench news one", paid).await;
    let created = Instant::now();
    let mut samples: Vec<(f64, i64)> = Vec::new();
    let settled = loop {
        let all = run.broadcasts(&ids).await;
        let delivered: i64 = all.iter().map(|b| b.delivered).sum();
        samples.push((created.elapsed().as_secs_f64(), delivered));
        if all.iter().all(|b| b.status == "done" && b.delivered + b.failed + b.blocked >= b.total) {
            break all;
        }
        assert!(created.elapsed() < limit, "the first broadcast did not settle: {all:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let whole = created.elapsed().as_secs_f64();
    let at = |share: f64| samples.iter().find(|(_, d)| *d as f64 >= share * members as f64).map_or(whole, |(t, _)| *t);
    let (t10, t90) = (at(0.1), at(0.9));
    let steady = 0.8 * members as f64 / (t90 - t10).max(0.001);
    let overall = members as f64 / whole;
    let tally = sum(&run.tally("Bench news one"));
    println!(
        "1. undisturbed: {members} delivered in {whole:.1} s; steady (10 % → 90 %) {steady:.0} sends/s = {:.1} % of the budget; create → last {overall:.0}/s = {:.1} %; {} skipped, {} duplicates, repeated_max {}, 429s from the fake {}",
        100.0 * steady / budget as f64,
        100.0 * overall / budget as f64,
        tally.skipped,
        tally.duplicates,
        settled.iter().map(|b| b.repeated_max).sum::<i64>(),
        run.sim.stats().too_many_requests
    );

    // 2. and 3. Stopped at half-way, gracefully and by a kill.
    let phases = if restarts { &[("SIGTERM", "Bench news two"), ("SIGKILL", "Bench news three")][..] } else { &[] };
    for (k, &(signal, text)) in phases.iter().enumerate() {
        let ids = run.broadcast_to_all_as(text, paid).await;
        let created = Instant::now();
        run.wait_delivered(&ids, per_bot / 2, limit).await;
        let at_stop = created.elapsed().as_secs_f64();
        let stopped_in = if signal == "SIGTERM" { run.terminate_all() } else { run.kill_all() };
        let t = Instant::now();
        run.start_processes().await;
        let restarted_in = t.elapsed();
        let settled = run.wait_settled(&ids, limit).await;
        let whole = created.elapsed().as_secs_f64();
        // Anything sent twice arrives right after its first copy: a moment for stragglers.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let tally = sum(&run.tally(text));
        let delivered: i64 = settled.iter().map(|b| b.delivered).sum();
        println!(
            "{}. {signal} at half-way ({at_stop:.1} s in; the processes exited in {:.2} s, were ready again in {:.1} s): {delivered} delivered in {whole:.1} s ({:.0}/s overall = {:.1} % of the budget); {} members got it, {} skipped, {} duplicates; the runtime reports {} as possibly repeated",
            k + 2,
            stopped_in.as_secs_f64(),
            restarted_in.as_secs_f64(),
            members as f64 / whole,
            100.0 * members as f64 / whole / budget as f64,
            tally.once,
            tally.skipped,
            tally.duplicates,
            settled.iter().map(|b| b.repeated_max).sum::<i64>()
        );
    }
    run.finish().await;
}

fn sum(t: &[common::broadcast::Tally]) -> common::broadcast::Tally {
    t.iter().fold(common::broadcast::Tally::default(), |a, b| common::broadcast::Tally {
        once: a.once + b.once,
        skipped: a.skipped + b.skipped,
        duplicates: a.duplicates + b.duplicates,
        strangers: a.strangers + b.strangers,
    })
}
