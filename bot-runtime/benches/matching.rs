//! Matching on one Redis: matches per second and time to match when a compatible partner is
//! waiting. Every search is one run of the Lua script (match.lua), as in production.
//!
//! `cargo bench -p bot-runtime --bench matching` — needs Redis at REDIS_URL (default
//! redis://127.0.0.1:6379); knobs BENCH_PAIRS (default 20000), BENCH_CONCURRENCY (default 64),
//! BENCH_WAITING (members already waiting who match nobody, default 0: set it to see the cost
//! of scanning a crowded queue).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bot_runtime::keys::Keys;
use bot_runtime::matching::redis::RedisPool;
use bot_runtime::matching::{Gender, MatchPool, Member, Rules, SearchOutcome, Seeker, Want};
use futures::StreamExt;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let pairs = env_or("BENCH_PAIRS", 20_000) as i64;
    let concurrency = env_or("BENCH_CONCURRENCY", 64) as usize;
    let crowd = env_or("BENCH_WAITING", 0) as i64;
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let client = redis::Client::open(url.as_str()).expect("REDIS_URL");
        let conn = client.get_connection_manager().await.expect("Redis reachable");
        let prefix = format!("bench:{}:", std::process::id());
        let pool = Arc::new(RedisPool::new(conn.clone(), Keys::new(prefix.clone())));
        let rules = Rules::default();
        // A crowd nobody below matches (men who want "other"; only men search below).
        for i in 0..crowd {
            let s = Seeker { member: Member::new("crowd", i), gender: Gender::Male, want: Want::Only(Gender::Other), vip: false };
            pool.search("bench", &s, 0, rules).await.expect("search");
        }
        // Waiting halves, one per pair (women who want men, so they never match each other).
        for i in 0..pairs {
            let s = Seeker { member: Member::new("alpha", i), gender: Gender::Female, want: Want::Only(Gender::Male), vip: false };
            pool.search("bench", &s, 1, rules).await.expect("search");
        }
        // The other halves arrive concurrently; each search should find a partner at once.
        let started = Instant::now();
        let results: Vec<(Duration, bool)> = futures::stream::iter(0..pairs)
            .map(|i| {
                let pool = pool.clone();
                async move {
                    let s = Seeker { member: Member::new("beta", i), gender: Gender::Male, want: Want::Anyone, vip: false };
                    let t = Instant::now();
                    let r = pool.search("bench", &s, 2, rules).await;
                    (t.elapsed(), matches!(r, Ok(SearchOutcome::Matched { .. })))
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let elapsed = started.elapsed();
        let matched = results.iter().filter(|(_, m)| *m).count();
        let mut lat: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
        lat.sort();
        let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p) as usize).copied().unwrap_or_default().as_secs_f64() * 1e3;
        println!("matching on one Redis: {pairs} searches with a partner waiting, {concurrency} concurrent, {crowd} unmatchable waiting");
        println!("  matched:         {matched}/{pairs}");
        println!("  throughput:      {:.0} matches/s", matched as f64 / elapsed.as_secs_f64());
        println!("  time to match:   p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", pct(0.5), pct(0.99), pct(1.0));
        // Clean up the bench's keys.
        let mut c = conn.clone();
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut c).await.unwrap_or_default();
        for chunk in keys.chunks(1000) {
            let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut c).await;
        }
    });
}
