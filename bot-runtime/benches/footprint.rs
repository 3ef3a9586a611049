//! What a relayed message leaves behind in the hot state once it is delivered (issue 9,
//! defect 14): the update's dedupe mark and the reply map (copy ↔ original, both ways), in
//! the embedded store (bytes still allocated, counted by this binary's allocator) and on Redis
//! (`MEMORY USAGE` of every key the messages left, summed).
//!
//! `cargo bench -p bot-runtime --bench footprint` — Redis (REDIS_URL) for the second half.
//! FOOTPRINT_MESSAGES (default 60,000) relayed messages between FOOTPRINT_CHATS (default 500)
//! pairs of members, each message: the update claimed and committed with one job, the job read
//! and acknowledged, the delivered copy recorded as the outbox records it.

#[path = "common/mod.rs"]
mod common;
use common::env_or;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use bot_runtime::hot::memory::MemoryHot;
use bot_runtime::hot::redis::RedisHot;
use bot_runtime::hot::{Claim, HotState, Job, Lane, Marker, MessageRef};
use bot_runtime::keys::Keys;
use bot_runtime::matching::Member;
use botfleet_tests::fixtures::TestRedis;
use serde_json::json;

/// Bytes allocated and not yet freed, by the whole process.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const POOL: &str = "footprint-pool";
const BOT: &str = "alpha";
const DONE_KEEP: Duration = Duration::from_secs(26 * 3600);
const REF_TTL: Duration = Duration::from_secs(6 * 3600);

fn main() {
    let messages = env_or("FOOTPRINT_MESSAGES", 60_000);
    let chats = env_or("FOOTPRINT_CHATS", 500).max(1);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let memory = MemoryHot::new(16);
        let before = LIVE.load(Ordering::Relaxed);
        relay(&memory, messages, chats).await;
        let after = LIVE.load(Ordering::Relaxed);
        let bytes = (after - before).max(0) as f64;
        println!(
            "embedded store: {messages} messages in {chats} chats leave {:.1} MiB allocated = {:.0} B per message",
            bytes / 1048576.0,
            bytes / messages as f64
        );
        drop(memory);

        match TestRedis::create().await {
            Ok(r) => {
                let hot = RedisHot::new(r.conn.clone(), Keys::new(r.prefix.clone()), 16);
                relay(&hot, messages, chats).await;
                let classes = redis_usage(&r).await;
                let (keys, bytes) = classes.values().fold((0, 0), |(k, b), (ck, cb)| (k + ck, b + cb));
                println!(
                    "Redis: {messages} messages in {chats} chats leave {keys} keys, {:.1} MiB by MEMORY USAGE = {:.0} B per message",
                    bytes as f64 / 1048576.0,
                    bytes as f64 / messages as f64
                );
                for (class, (keys, bytes)) in &classes {
                    println!("  {class:>6}: {keys:>7} keys, {:>8.1} B per message", *bytes as f64 / messages as f64);
                }
                let _ = r.cleanup().await;
            }
            Err(e) => println!("Redis: skipped ({e:#})"),
        }
    });
}

/// What the runtime does for each relayed message, minus the Bot API calls.
async fn relay(hot: &dyn HotState, messages: u64, chats: u64) {
    // Message ids are per chat and count every message in it (both directions).
    let mut next_id = vec![0i64; (chats * 2) as usize];
    for n in 0..messages {
        let chat = n % chats;
        let (from, to) = if (n / chats) % 2 == 0 { (chat * 2, chat * 2 + 1) } else { (chat * 2 + 1, chat * 2) };
        let sender = Member { bot: BOT.into(), user: 1_000_000_000 + from as i64 };
        let recipient = Member { bot: BOT.into(), user: 1_000_000_000 + to as i64 };
        next_id[from as usize] += 1;
        let origin = MessageRef { member: sender.to_string(), message_id: next_id[from as usize] };
        let update_id = 500_000_000 + n as i64;
        let (claim, _) = hot.claim_update_at(POOL, BOT, update_id, Duration::from_secs(30), 0).await.expect("claim");
        assert!(matches!(claim, Claim::Taken));
        let mut job = Job::to(&recipient, Lane::Interactive, "sendMessage", json!({"chat_id": recipient.user, "text": "hello there"}));
        job.origin = Some(origin.clone());
        hot.commit(POOL, Marker::Update { bot: BOT.into(), update_id, keep: DONE_KEEP }, &[job]).await.expect("commit");
        let shard = hot.shard_of(recipient.user);
        for queued in hot.outbox_read(POOL, BOT, shard, Lane::Interactive, 8).await.expect("read") {
            hot.outbox_ack(POOL, BOT, shard, Lane::Interactive, &queued.id).await.expect("ack");
        }
        next_id[to as usize] += 1;
        let delivered = MessageRef { member: recipient.to_string(), message_id: next_id[to as usize] };
        hot.put_reply(POOL, &origin, &delivered, REF_TTL).await.expect("reply map");
    }
}

/// Keys under the test prefix and their `MEMORY USAGE` summed, per kind of key (the name's
/// part after the pool's hash tag: `rmap` reply-map buckets, `updd` done-mark segments, `upd`
/// claim keys — kept 15 minutes for a rollout's previous release).
async fn redis_usage(r: &TestRedis) -> std::collections::BTreeMap<String, (u64, u64)> {
    let mut conn = r.conn.clone();
    let mut cursor: u64 = 0;
    let mut classes = std::collections::BTreeMap::<String, (u64, u64)>::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", r.prefix))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("scan");
        for key in batch {
            let used: Option<u64> =
                redis::cmd("MEMORY").arg("USAGE").arg(&key).arg("SAMPLES").arg(0).query_async(&mut conn).await.expect("memory usage");
            let class = key.rsplit_once("}:").and_then(|(_, rest)| rest.split(':').next()).unwrap_or("other").to_string();
            let entry = classes.entry(class).or_default();
            entry.0 += 1;
            entry.1 += used.unwrap_or(0);
        }
        if next == 0 {
            return classes;
        }
        cursor = next;
    }
}
