//! Cross-bot media relays under measurement (issue 9, defect 1): the real `bot-runtime serve`
//! binary twice — the sender's bot `alpha` (its token downloads) and the recipient's bot `beta`
//! (its token uploads), each a child process as in its own pod — on Postgres and a private
//! Redis, with the fake Telegram delivering updates by webhook.
//!
//! BENCH_RELAYS people on alpha (default 3), each in a chat with someone on beta, send a video
//! of BENCH_MEDIA_MIB MiB (default 19: Telegram lets bots download up to 20 MB) at the same
//! moment. Reported: when every video arrived (whole: the fake checks the uploaded size), each
//! serve process's peak RSS (VmHWM: the pod's memory limit is 128 MiB), and Redis'
//! `used_memory_peak` against its `used_memory` before the relays.
//!
//! `cargo bench -p bot-runtime --bench media` — needs Postgres (DATABASE_URL) and
//! `redis-server` on PATH (BENCH_REDIS_SERVER to name another): the bench starts its own Redis
//! (`common::PrivateRedis`), because `used_memory_peak` is never reset (not even by
//! `CONFIG RESETSTAT` on Redis 7.0) and a shared Redis's peak says nothing about this run.

#[path = "common/mod.rs"]
mod common;
use common::{PrivateRedis, Serve, env_or, rss_kib};

use std::time::{Duration, Instant};

use bot_runtime::roles::simulate::Person;
use bot_runtime::texts::Lang;
use botfleet_tests::fake_telegram::{FakeTelegram, Limits, MediaKind, MediaSpec};
use botfleet_tests::fixtures::TestDb;
use serde_json::json;

const SECRET: &str = "bench_secret_value";
const MIB: u64 = 1024 * 1024;

fn main() {
    let relays = env_or("BENCH_RELAYS", 3) as usize;
    let size = env_or("BENCH_MEDIA_MIB", 19) * MIB;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run(relays, size));
}

/// A field of the bench Redis's `INFO memory`, in bytes.
async fn memory(redis: &PrivateRedis, field: &str) -> u64 {
    let mut conn = redis.conn.clone();
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut conn).await.expect("INFO memory");
    info.lines().find_map(|l| l.strip_prefix(&format!("{field}:"))).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Keys holding media blobs now.
async fn blob_keys(redis: &PrivateRedis) -> usize {
    let mut conn = redis.conn.clone();
    bot_runtime::keys::scan_prefix(&mut conn, "").await.expect("SCAN").iter().filter(|k| k.contains(":blob")).count()
}

fn config(bot: &str, dir: &std::path::Path) -> String {
    std::fs::write(dir.join("secret"), SECRET).expect("secret file");
    format!(
        "version: 1\nbot:\n  name: {bot}\n  namespace: bench\n  pool: bench-pool\n  ingress: {{mode: Webhook, publicUrl: 'https://bench.invalid', maxConnections: 100}}\n  features: {{}}\n  requiredChannels: []\n  admins: {{telegramIds: []}}\n  moderation: {{}}\n  locale: {{}}\n  matching: {{}}\n  lockChat: {{}}\n  referrals: {{}}\n  secrets: {{tokenFile: '{}', webhookSecretFile: '{}'}}\nplans: []\ncampaigns: []\nlimits:\n  perUser: {{messagesPerSecond: 1000, burst: 1000, commandsPerMinute: 10000, searchesPerMinute: 10000}}\n  onExceed: DropSilently\n  adminApiPerMinute: {{}}\n  outbound: {{perBotPerSecond: 100000, perChatPerMinute: 100000}}\n",
        dir.join("token").display(),
        dir.join("secret").display(),
    )
}

async fn run(relays: usize, size: u64) {
    let fake = FakeTelegram::start().await.expect("fake Telegram");
    let sim = fake.sim();
    sim.set_limits(Limits { enabled: false, ..Limits::default() }).expect("limits off");
    let db = TestDb::create().await.expect("Postgres");
    let root = std::env::temp_dir().join(format!("botfleet-bench-media-{}", std::process::id()));
    let port = 20_000 + (std::process::id() % 20_000) as u16 + 2;
    std::fs::create_dir_all(root.join("redis")).expect("temp dir");
    let redis = PrivateRedis::start(&root.join("redis"), port + 2).await;
    let http = reqwest::Client::new();
    let mut serves = Vec::new();
    for (i, bot) in ["alpha", "beta"].into_iter().enumerate() {
        let info = sim.register_bot(&format!("{bot}_bot")).expect("bot");
        let dir = root.join(bot);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("token"), &info.token).expect("token file");
        let serve = Serve::start(&dir, &config(bot, &dir), &db.url, &redis.url, "", &fake.api_url(), port + i as u16).await;
        // The fake delivers every update to the runtime's webhook, as Telegram would once the
        // operator registered it.
        let hook = json!({"url": format!("{}/telegram/{bot}", serve.base), "secret_token": SECRET, "max_connections": 100});
        let set = http.post(format!("{}/bot{}/setWebhook", fake.api_url(), info.token)).json(&hook).send().await.expect("setWebhook");
        assert!(set.status().is_success(), "setWebhook: {}", set.text().await.unwrap_or_default());
        serves.push(serve);
    }
    let (alpha_pid, beta_pid) = (serves[0].child.id(), serves[1].child.id());

    // Setup (not measured): pairs in chats, each sender on alpha, each recipient on beta.
    let wait = Duration::from_secs(60);
    let mut pairs = Vec::new();
    for i in 0..relays {
        let mut ann = Person::new(&sim, "alpha_bot", &format!("Ann{i}"), Lang::En).expect("a fake user");
        ann.onboard("f", 25, &[], wait).await.expect("onboarding");
        let mut bob = Person::new(&sim, "beta_bot", &format!("Bob{i}"), Lang::En).expect("a fake user");
        bob.onboard("m", 30, &[], wait).await.expect("onboarding");
        ann.tap("menu_find").expect("search");
        ann.expect_text("searching", wait).await.expect("searching");
        bob.tap("menu_find").expect("search");
        bob.expect_text("matched", wait).await.expect("matched");
        ann.expect_text("matched", wait).await.expect("matched");
        pairs.push((ann, bob));
    }
    let (alpha_before, _) = rss_kib(alpha_pid);
    let (beta_before, _) = rss_kib(beta_pid);
    let redis_before = memory(&redis, "used_memory").await;
    let peak_before = memory(&redis, "used_memory_peak").await;
    println!(
        "{relays} chats alpha → beta ready; RSS before: alpha {:.1} MiB, beta {:.1} MiB; Redis used_memory {:.1} MiB (peak so far {:.1} MiB)",
        alpha_before as f64 / 1024.0,
        beta_before as f64 / 1024.0,
        redis_before as f64 / MIB as f64,
        peak_before as f64 / MIB as f64
    );

    // The relays, all at once.
    let t0 = Instant::now();
    for (ann, _) in &pairs {
        ann.send_media(MediaKind::Video, MediaSpec { size: Some(size), ..MediaSpec::default() }).expect("send the video");
    }
    // Each relay ends with the video at its recipient, or its sender told to send it again
    // (past the per-process cap or the budget: `media_busy`).
    let outcomes = futures::future::join_all(pairs.iter_mut().map(|(ann, bob)| async move {
        let wait = Duration::from_secs(300);
        let outcome = tokio::select! {
            got = bob.expect("the video", wait, |m| m.get("video").is_some()) => match got {
                Ok(m) if m["video"]["file_size"].as_u64() == Some(size) => "whole",
                _ => "lost",
            },
            told = ann.expect_text("media_busy", wait) => if told.is_ok() { "refused" } else { "lost" },
        };
        (outcome, Instant::now())
    }))
    .await;
    let count = |what: &str| outcomes.iter().filter(|(o, _)| *o == what).count();
    let (whole, refused) = (count("whole"), count("refused"));
    let last = outcomes.iter().map(|(_, at)| *at).max().unwrap_or(t0).duration_since(t0);
    // The blobs are deleted once uploaded (not an hour later).
    let cleaned = Instant::now();
    let mut left = blob_keys(&redis).await;
    while left > 0 && cleaned.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = blob_keys(&redis).await;
    }
    let (_, alpha_peak) = rss_kib(alpha_pid);
    let (_, beta_peak) = rss_kib(beta_pid);
    let redis_peak = memory(&redis, "used_memory_peak").await;
    let redis_after = memory(&redis, "used_memory").await;
    let stats = sim.stats();
    let calls = |m: &str| stats.calls.get(m).copied().unwrap_or(0);
    println!(
        "{whole} of {relays} videos of {} MiB arrived whole, {refused} senders told to send again, in {:.1} s (downloads {}, sendVideo {}); blob keys left {:.1} s later: {left}",
        size / MIB,
        last.as_secs_f64(),
        calls("download"),
        calls("sendVideo"),
        cleaned.elapsed().as_secs_f64()
    );
    println!(
        "peak RSS (VmHWM): sender alpha {:.1} MiB, recipient beta {:.1} MiB (pod limit 128 MiB)",
        alpha_peak as f64 / 1024.0,
        beta_peak as f64 / 1024.0
    );
    println!(
        "Redis: used_memory_peak {:.1} MiB = {:.1} MiB above used_memory before ({:.2} × the {relays} files); used_memory after {:.1} MiB",
        redis_peak as f64 / MIB as f64,
        redis_peak.saturating_sub(redis_before) as f64 / MIB as f64,
        redis_peak.saturating_sub(redis_before) as f64 / (size * relays as u64) as f64,
        redis_after as f64 / MIB as f64
    );
    for mut serve in serves {
        let _ = serve.child.kill();
        let _ = serve.child.wait();
    }
    drop(redis);
    let _ = std::fs::remove_dir_all(&root);
    let _ = db.drop_db().await;
    fake.stop().await;
}
