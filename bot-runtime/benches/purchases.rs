//! Purchases end to end on one replica: the real `bot-runtime serve` binary (a child process)
//! on Postgres + Redis, in webhook mode, with the fake Telegram delivering every update to it
//! (the fake's own webhook delivery, as Telegram does) and simulated buyers paying through the
//! fake's pay flow: `/vip` → Buy → invoice → pre_checkout_query → answer → successful_payment →
//! grant → "paid" message.
//!
//! `cargo bench -p bot-runtime --bench purchases` — needs Postgres (DATABASE_URL) and Redis
//! (REDIS_URL). BENCH_BUYERS (default 100) buyers each make BENCH_PURCHASES (default 5)
//! purchases one after another, all buyers at once. Reported: purchases per second, each
//! purchase's time from `/vip` to the "paid" message (p50/p99), the pre-checkout answer time
//! from the runtime's own histogram (`botfleet_pre_checkout_seconds`, bucket-bounded), the
//! runtime's CPU seconds per purchase and its RSS.
//!
//! The buyers and the fake Telegram run in this process, on the same 2 cores as the runtime:
//! the numbers are a floor.

#[path = "common/mod.rs"]
mod common;
use common::{Serve, cpu_seconds, env_or, pct_ms, rss_kib};

use std::time::{Duration, Instant};

use bot_runtime::roles::simulate::Person;
use bot_runtime::texts::Lang;
use botfleet_tests::fake_telegram::{FakeTelegram, InvoiceRef, Limits, PayOutcome};
use botfleet_tests::fixtures::{TestDb, TestRedis, redis_url};
use futures::StreamExt as _;
use serde_json::json;

/// A quantile of a Prometheus histogram in the text exposition: the upper bound of its bucket.
fn histogram_quantile(metrics: &str, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let count = l.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? }, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    buckets.iter().find(|(_, c)| *c >= (q * total).ceil()).map(|(le, _)| *le)
}

const SECRET: &str = "bench_secret_value";

fn main() {
    let buyers = env_or("BENCH_BUYERS", 100) as usize;
    let purchases = env_or("BENCH_PURCHASES", 5) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run(buyers, purchases));
}

async fn run(buyers: usize, purchases: usize) {
    let fake = FakeTelegram::start().await.expect("fake Telegram");
    let sim = fake.sim();
    sim.set_limits(Limits { enabled: false, ..Limits::default() }).expect("limits off");
    let info = sim.register_bot("alpha_bot").expect("bot");
    let db = TestDb::create().await.expect("Postgres");
    let redis = TestRedis::create().await.expect("Redis");
    let dir = std::env::temp_dir().join(format!("botfleet-bench-purchases-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("token"), &info.token).expect("token file");
    std::fs::write(dir.join("secret"), SECRET).expect("secret file");
    std::fs::write(dir.join("keys"), "bench-payload-key-0123456789abcdef0123456789\n").expect("payload key file");
    let config = format!(
        "version: 1\nbot:\n  name: alpha\n  namespace: bench\n  pool: bench-pool\n  ingress: {{mode: Webhook, publicUrl: 'https://bench.invalid', maxConnections: 100}}\n  features: {{}}\n  requiredChannels: []\n  admins: {{telegramIds: []}}\n  moderation: {{}}\n  locale: {{}}\n  matching: {{}}\n  lockChat: {{}}\n  referrals: {{}}\n  secrets: {{tokenFile: '{}', webhookSecretFile: '{}', payloadKeyFile: '{}'}}\nplans:\n  - {{id: vip-week, title: VIP week, description: Seven days of VIP, priceStars: 250, grants: {{vipDays: 7, lockCredits: 5}}, perks: {{priorityMatching: true, partnerGenderFilter: true}}, sortOrder: 0}}\ncampaigns: []\nlimits:\n  perUser: {{messagesPerSecond: 1000, burst: 1000, commandsPerMinute: 10000, searchesPerMinute: 10000}}\n  onExceed: DropSilently\n  adminApiPerMinute: {{}}\n  outbound: {{perBotPerSecond: 100000, perChatPerMinute: 100000}}\n",
        dir.join("token").display(),
        dir.join("secret").display(),
        dir.join("keys").display()
    );
    let port = 20_000 + (std::process::id() % 20_000) as u16 + 1;
    let serve = Serve::start(&dir, &config, &db.url, &redis_url(), &redis.prefix, &fake.api_url(), port).await;
    let mut child = serve.child;
    let pid = child.id();
    let base = serve.base;
    let http = reqwest::Client::new();
    // The fake delivers every update to the runtime's webhook, as Telegram would once the
    // operator registered it.
    let hook = json!({"url": format!("{base}/telegram/alpha"), "secret_token": SECRET, "max_connections": 100});
    let set = http.post(format!("{}/bot{}/setWebhook", fake.api_url(), info.token)).json(&hook).send().await.expect("setWebhook");
    assert!(set.status().is_success(), "setWebhook: {}", set.text().await.unwrap_or_default());

    // Setup (not measured): every buyer completes the profile.
    let t = Instant::now();
    let people: Vec<Person> = futures::stream::iter(0..buyers)
        .map(|i| {
            let sim = sim.clone();
            async move {
                let mut p = Person::new(&sim, "alpha_bot", &format!("Buyer{i}"), Lang::En).expect("a fake user");
                p.onboard("m", 30, &[], Duration::from_secs(60)).await.expect("onboarding");
                p
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    println!("{buyers} buyers onboarded in {:.1} s", t.elapsed().as_secs_f64());
    let (idle_rss, _) = rss_kib(pid);

    let wait = Duration::from_secs(60);
    let cpu_before = cpu_seconds(pid);
    let t0 = Instant::now();
    let results: Vec<(Vec<u64>, usize)> = futures::future::join_all(people.into_iter().map(|mut p| {
        let sim = sim.clone();
        async move {
            let mut times = Vec::new();
            let mut failed = 0;
            for _ in 0..purchases {
                let start = Instant::now();
                let outcome: Result<(), String> = async {
                    p.send("/vip").map_err(|e| e.to_string())?;
                    p.expect_text("shop", wait).await.map_err(|e| e.to_string())?;
                    p.press("buy:vip-week", wait).await.map_err(|e| e.to_string())?;
                    let invoice = p.expect("an invoice", wait, |m| m.get("invoice").is_some()).await.map_err(|e| e.to_string())?;
                    let message_id = invoice["message_id"].as_i64().unwrap_or_default();
                    match sim.pay("alpha_bot", p.id, InvoiceRef::Message { message_id }).await.map_err(|e| e.to_string())? {
                        PayOutcome::Paid { .. } => {}
                        other => return Err(format!("{other:?}")),
                    }
                    p.expect_text("paid", wait).await.map_err(|e| e.to_string())?;
                    Ok(())
                }
                .await;
                match outcome {
                    Ok(()) => times.push(start.elapsed().as_micros() as u64),
                    Err(e) => {
                        failed += 1;
                        eprintln!("a purchase failed: {e}");
                    }
                }
            }
            (times, failed)
        }
    }))
    .await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    let mut times: Vec<u64> = results.iter().flat_map(|(t, _)| t.iter().copied()).collect();
    let failed: usize = results.iter().map(|(_, f)| f).sum();
    times.sort_unstable();
    let done = times.len();
    let metrics = http.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.unwrap_or_default();
    let pc =
        |q| histogram_quantile(&metrics, "botfleet_pre_checkout_seconds", q).map_or("n/a".into(), |s| format!("≤ {:.0} ms", s * 1000.0));
    let (rss, hwm) = rss_kib(pid);
    println!("{done} purchases ({failed} failed) by {buyers} buyers in {wall:.1} s = {:.1} purchases/s end to end", done as f64 / wall);
    println!(
        "  per purchase (/vip → paid message): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pct_ms(&times, 0.5),
        pct_ms(&times, 0.99),
        pct_ms(&times, 1.0)
    );
    println!("  pre-checkout answer (runtime's histogram): p50 {}, p99 {}", pc(0.5), pc(0.99));
    println!(
        "  runtime: {cpu:.1} CPU-s = {:.1} ms CPU per purchase; RSS {} MiB before, {} MiB after (peak {} MiB)",
        cpu * 1000.0 / done.max(1) as f64,
        idle_rss / 1024,
        rss / 1024,
        hwm / 1024
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
