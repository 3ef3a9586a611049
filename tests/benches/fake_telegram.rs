//! How fast the fake Telegram answers sendMessage with its limits switched off, with the server
//! confined to ONE thread (a current-thread runtime) and the load coming from another.
//!
//! `cargo bench -p botfleet-tests --bench fake_telegram` — knobs: BENCH_SECS (default 5),
//! BENCH_CONNS (concurrent keep-alive connections, default 64), BENCH_CHATS (default 100).
//! The fake must never be the bottleneck of our benchmarks: target ≥ 20,000 calls/s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use botfleet_tests::fake_telegram::{FakeTelegram, Limits};
use serde_json::json;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let secs = env_or("BENCH_SECS", 5);
    let conns = env_or("BENCH_CONNS", 64) as usize;
    let chats = env_or("BENCH_CHATS", 100) as usize;

    // The server: one thread, one current-thread runtime.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("server runtime");
        rt.block_on(async move {
            let fake = FakeTelegram::start().await.expect("fake starts");
            let sim = fake.sim();
            sim.set_limits(Limits { enabled: false, ..Limits::default() }).expect("limits");
            let bot = sim.register_bot("bench_bot").expect("bot");
            let mut users = Vec::new();
            for i in 0..chats {
                let u = sim.user(&format!("u{i}"), None).expect("user");
                sim.send_text("bench_bot", u.id, "/start", None).expect("start");
                users.push(u.id);
            }
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            ready_tx.send((fake.api_url(), bot.token.clone(), users, stop_tx)).expect("hand over");
            let _ = stop_rx.await;
            let stats = sim.stats();
            fake.stop().await;
            stats
        })
    });
    let (api_url, token, users, stop) = ready_rx.recv().expect("server ready");

    // The load: a separate runtime on the other core.
    let client_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("client runtime");
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let latencies = client_rt.block_on(async {
        let http = reqwest::Client::builder().pool_max_idle_per_host(conns).build().expect("client");
        let url = format!("{api_url}/bot{token}/sendMessage");
        let users = Arc::new(users);
        // Warm up connections.
        for _ in 0..conns {
            let _ = http.post(&url).json(&json!({"chat_id": users[0], "text": "warm"})).send().await;
        }
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..conns {
            let (http, url, users, done, errors, running) =
                (http.clone(), url.clone(), users.clone(), done.clone(), errors.clone(), running.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(100_000);
                let mut i = c;
                while running.load(Ordering::Relaxed) {
                    let chat = users[i % users.len()];
                    i += conns;
                    let t = Instant::now();
                    let ok = match http.post(&url).json(&json!({"chat_id": chat, "text": "hello from the benchmark"})).send().await {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    lat.push(t.elapsed());
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed)
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed)
                    };
                }
                lat
            }));
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        running.store(false, Ordering::Relaxed);
        let elapsed = started.elapsed();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap_or_default());
        }
        (all, elapsed)
    });
    let _ = stop.send(());
    let stats = server.join().expect("server thread");
    let (mut lat, elapsed) = latencies;
    lat.sort();
    let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p) as usize).copied().unwrap_or_default();
    let n = done.load(Ordering::Relaxed);
    println!("fake_telegram sendMessage: {conns} connections, {chats} chats, {:.1} s", elapsed.as_secs_f64());
    println!("  calls ok:        {n}");
    println!("  errors:          {}", errors.load(Ordering::Relaxed));
    println!("  throughput:      {:.0} calls/s (server on one thread)", n as f64 / elapsed.as_secs_f64());
    println!("  latency p50/p99: {:.2} ms / {:.2} ms", pct(0.50).as_secs_f64() * 1e3, pct(0.99).as_secs_f64() * 1e3);
    println!(
        "  server counted:  {} sendMessage calls, {} 429s",
        stats.calls.get("sendMessage").copied().unwrap_or(0),
        stats.too_many_requests
    );
}
