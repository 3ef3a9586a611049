//! Every Redis key the runtime uses is built here, never formatted ad hoc elsewhere.
//!
//! Keys of one matching pool share the hash tag `{pool:<name>}`, so a Lua script that touches
//! several of them stays on one slot of a Redis Cluster. The optional prefix namespaces a
//! whole fleet (and gives each test its own keys).

use crate::hot::Lane;
use crate::matching::Member;

/// Updates per done-mark bitmap segment (4 KiB).
pub const DONE_SEGMENT_BITS: i64 = 32_768;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    /// The part every key of a pool starts with; the matching script derives the per-user
    /// keys from it (same hash tag, same slot).
    pub fn pool(&self, pool: &str) -> String {
        format!("{}bf:{{pool:{pool}}}:", self.prefix)
    }

    /// The queue of waiting members of one tier, gender and wanted gender (see match.lua).
    pub fn queue(&self, pool: &str, tier: Tier, gender: &str, want: &str) -> String {
        format!("{}q:{}:{gender}:{want}", self.pool(pool), tier.as_str())
    }

    /// Every queue of a tier (for lengths and metrics).
    pub fn queues(&self, pool: &str, tier: Tier) -> Vec<String> {
        let mut out = Vec::with_capacity(12);
        for g in ["m", "f", "o"] {
            for w in ["any", "m", "f", "o"] {
                out.push(self.queue(pool, tier, g, w));
            }
        }
        out
    }

    pub fn profile(&self, pool: &str, m: &Member) -> String {
        format!("{}u:{m}", self.pool(pool))
    }

    pub fn pair(&self, pool: &str, m: &Member) -> String {
        format!("{}pair:{m}", self.pool(pool))
    }

    /// A person's recent partners (person ids) with the time each may be matched again.
    pub fn recent(&self, pool: &str, person: i64) -> String {
        format!("{}recent:{person}", self.pool(pool))
    }

    /// The member through which a person holds a chat of the pool (at most one: match.lua).
    pub fn busy(&self, pool: &str, person: i64) -> String {
        format!("{}busy:{person}", self.pool(pool))
    }

    /// The members through which a person waits (one per bot), for cancel_person.lua.
    pub fn person_queued(&self, pool: &str, person: i64) -> String {
        format!("{}pq:{person}", self.pool(pool))
    }

    /// How many chats are in progress in the pool (kept by match.lua and end_chat.lua).
    pub fn active_chats(&self, pool: &str) -> String {
        format!("{}active", self.pool(pool))
    }

    /// The people a person blocked or reported (person ids): never matched, on any bot.
    pub fn blocked(&self, pool: &str, person: i64) -> String {
        format!("{}blocked:{person}", self.pool(pool))
    }

    // ---- hot state (see hot/redis/). Bot names are Kubernetes names (no ':'), so the
    // kind comes first and nothing below can collide with another kind's keys.

    /// An update's claim: `lease:<random>` while being processed. (Release N also wrote `done`
    /// here for 26 h; this release keeps that mark only for a rollout's length and records
    /// done-ness in [`Keys::update_done`].)
    pub fn update(&self, pool: &str, bot: &str, update_id: i64) -> String {
        format!("{}upd:{bot}:{update_id}", self.pool(pool))
    }

    /// The done-marks of a bot's updates, as bits: Telegram numbers a bot's updates in
    /// sequence, so one bitmap of [`DONE_SEGMENT_BITS`] bits (4 KiB) holds the marks of that
    /// many consecutive updates — an eighth of a byte per update instead of a key each. The
    /// segment's key and the update's bit in it.
    pub fn update_done(&self, pool: &str, bot: &str, update_id: i64) -> (String, i64) {
        let segment = update_id.div_euclid(DONE_SEGMENT_BITS);
        (format!("{}updd:{bot}:{segment}", self.pool(pool)), update_id.rem_euclid(DONE_SEGMENT_BITS))
    }

    /// How many times an update failed the same way (poison, not outage), across replicas.
    pub fn update_failures(&self, pool: &str, bot: &str, update_id: i64) -> String {
        format!("{}updf:{bot}:{update_id}", self.pool(pool))
    }

    /// The time (ms) of an update's first attempt, kept once an attempt failed, so its retries
    /// handle it at the same time (see claim_update.lua).
    pub fn update_clock(&self, pool: &str, bot: &str, update_id: i64) -> String {
        format!("{}updt:{bot}:{update_id}", self.pool(pool))
    }

    /// One outbox stream of a bot: one per shard and lane.
    pub fn outbox(&self, pool: &str, bot: &str, shard: u32, lane: Lane) -> String {
        format!("{}out:{bot}:{shard}:{}", self.pool(pool), lane.as_str())
    }

    /// The pub/sub channel on which a commit says "jobs for this bot" (commit.lua), so the
    /// bot's idle consumers wake at once instead of polling.
    pub fn outbox_wake(&self, pool: &str, bot: &str) -> String {
        format!("{}wake:{bot}", self.pool(pool))
    }

    /// Every outbox stream of a bot (for the depth metric).
    pub fn outboxes(&self, pool: &str, bot: &str, shards: u32) -> Vec<String> {
        let mut out = Vec::with_capacity(shards as usize * 2);
        for shard in 0..shards {
            for lane in [Lane::Interactive, Lane::Bulk] {
                out.push(self.outbox(pool, bot, shard, lane));
            }
        }
        out
    }

    /// A named lease (poller, outbox shard consumer): holds the holder's id.
    pub fn lease(&self, pool: &str, name: &str) -> String {
        format!("{}lease:{name}", self.pool(pool))
    }

    /// The send limiter of a bot (hash: `t` theoretical arrival time in µs, `h` hold until ms).
    pub fn send_limit_bot(&self, pool: &str, bot: &str) -> String {
        format!("{}slb:{bot}", self.pool(pool))
    }

    /// The send limiter of a bot's paid broadcasts (`allow_paid_broadcast`; same layout).
    pub fn send_limit_bot_paid(&self, pool: &str, bot: &str) -> String {
        format!("{}slp:{bot}", self.pool(pool))
    }

    /// The send limiter of one chat of a bot (same layout as [`Keys::send_limit_bot`]).
    pub fn send_limit_chat(&self, pool: &str, bot: &str, chat_id: i64) -> String {
        format!("{}slc:{bot}:{chat_id}", self.pool(pool))
    }

    /// A per-user (or any) rate limit: its theoretical arrival time in µs.
    pub fn rate_limit(&self, pool: &str, key: &str) -> String {
        format!("{}rl:{key}", self.pool(pool))
    }

    /// A bot's scheduled timers: id → due (ms).
    pub fn timers_due(&self, pool: &str, bot: &str) -> String {
        format!("{}tmd:{bot}", self.pool(pool))
    }

    /// A bot's fired timers being processed: id → lease end (ms).
    pub fn timers_in_flight(&self, pool: &str, bot: &str) -> String {
        format!("{}tmf:{bot}", self.pool(pool))
    }

    /// A bot's timer payloads: id → Timer JSON.
    pub fn timers_payload(&self, pool: &str, bot: &str) -> String {
        format!("{}tmp:{bot}", self.pool(pool))
    }

    /// A small reference with a TTL (reply map, saved message ids).
    /// A reply-map bucket: a hash of one member's chat's message ids in one
    /// [`REPLY_BUCKET_IDS`](crate::hot::refs::REPLY_BUCKET_IDS) range (field: the id's place in
    /// the range) → the message's copy in the other chat. See `hot/refs.rs`.
    pub fn reply_bucket(&self, pool: &str, member: &str, bucket: i64) -> String {
        format!("{}rmap:{member}:{bucket}", self.pool(pool))
    }

    pub fn reference(&self, pool: &str, name: &str) -> String {
        format!("{}ref:{name}", self.pool(pool))
    }

    /// A media blob's bytes for cross-bot re-upload: one string, appended piece by piece and
    /// read by range (`GETRANGE`), never whole. (Release N wrote whole files here with `SET`.)
    pub fn blob(&self, pool: &str, id: &str) -> String {
        format!("{}blob:{id}", self.pool(pool))
    }

    /// A media blob's state (hash: `size`, `done`, `lease` of its writer), read without its bytes.
    pub fn blob_meta(&self, pool: &str, id: &str) -> String {
        format!("{}blobm:{id}", self.pool(pool))
    }

    /// The jobs that will upload a media blob (a set): deleted with the last one.
    pub fn blob_holders(&self, pool: &str, id: &str) -> String {
        format!("{}blobh:{id}", self.pool(pool))
    }

    /// The fleet's media budget (fleet-wide, not a pool's: every pool's blobs share one Redis
    /// and its `maxmemory`): the bytes reserved now, each reservation's size (hash) and
    /// deadline (sorted set), all under one hash tag so `reserve_media.lua` is one slot.
    pub fn media_budget(&self) -> [String; 3] {
        let tag = format!("{}bf:{{media}}:", self.prefix);
        [format!("{tag}reserved"), format!("{tag}sizes"), format!("{tag}deadlines")]
    }

    /// Bytes of media a person relayed in the current window (same tag as the budget).
    pub fn media_user(&self, person: i64) -> String {
        format!("{}bf:{{media}}:user:{person}", self.prefix)
    }

    /// A bot's durable inbound queue (a stream of webhook updates taken past the overload grace).
    pub fn inbound(&self, pool: &str, bot: &str) -> String {
        format!("{}inb:{bot}", self.pool(pool))
    }
}

/// Every key under `prefix` (which must hold no glob characters: our prefixes are built from
/// DNS labels), by `SCAN` — never `KEYS`, which blocks Redis. Not a snapshot: a key written
/// meanwhile may or may not be in it. For maintenance (upgrades, retiring a bot), not the hot path.
pub async fn scan_prefix(conn: &mut redis::aio::ConnectionManager, prefix: &str) -> redis::RedisResult<Vec<String>> {
    let pattern = format!("{prefix}*");
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query_async(conn).await?;
        out.extend(batch);
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

/// The two waiting queues of a pool: VIPs are offered first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Vip,
    Free,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Vip => "vip",
            Tier::Free => "free",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_pool_share_one_hash_tag() {
        let k = Keys::new("t1:");
        let m = Member::new("alpha", 42);
        let tag = "{pool:eu-chat}";
        for key in [
            k.queue("eu-chat", Tier::Vip, "f", "any"),
            k.profile("eu-chat", &m),
            k.pair("eu-chat", &m),
            k.recent("eu-chat", m.user),
            k.blocked("eu-chat", m.user),
            k.busy("eu-chat", m.user),
            k.person_queued("eu-chat", m.user),
        ] {
            assert!(key.starts_with("t1:bf:"), "{key}");
            assert_eq!(key.matches('{').count(), 1, "{key}");
            assert!(key.contains(tag), "{key}");
        }
        assert_eq!(k.pair("eu-chat", &m), "t1:bf:{pool:eu-chat}:pair:alpha:42");
        assert_eq!(k.queue("eu-chat", Tier::Free, "m", "f"), "t1:bf:{pool:eu-chat}:q:free:m:f");
        assert_eq!(k.queues("eu-chat", Tier::Vip).len(), 12);
    }

    #[test]
    fn hot_state_keys_of_a_pool_share_one_hash_tag() {
        let k = Keys::new("t1:");
        let tag = "{pool:eu-chat}";
        let mut keys = vec![
            k.update("eu-chat", "alpha", 7),
            k.update_failures("eu-chat", "alpha", 7),
            k.lease("eu-chat", "poll:alpha"),
            k.send_limit_bot("eu-chat", "alpha"),
            k.send_limit_bot_paid("eu-chat", "alpha"),
            k.send_limit_chat("eu-chat", "alpha", 42),
            k.rate_limit("eu-chat", "msg:alpha:42"),
            k.timers_due("eu-chat", "alpha"),
            k.timers_in_flight("eu-chat", "alpha"),
            k.timers_payload("eu-chat", "alpha"),
            k.reference("eu-chat", "rm:alpha:42:9"),
            k.blob("eu-chat", "b1"),
            k.blob_meta("eu-chat", "b1"),
            k.blob_holders("eu-chat", "b1"),
            k.inbound("eu-chat", "alpha"),
        ];
        keys.extend(k.outboxes("eu-chat", "alpha", 4));
        for key in &keys {
            assert!(key.starts_with("t1:bf:"), "{key}");
            assert_eq!(key.matches('{').count(), 1, "{key}");
            assert!(key.contains(tag), "{key}");
        }
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "no two kinds share a key");
        assert_eq!(k.outbox("eu-chat", "alpha", 3, Lane::Bulk), "t1:bf:{pool:eu-chat}:out:alpha:3:b");
        assert_eq!(k.update("eu-chat", "alpha", 7), "t1:bf:{pool:eu-chat}:upd:alpha:7");
        assert_eq!(k.outboxes("eu-chat", "alpha", 4).len(), 8);
        assert_eq!(k.inbound("eu-chat", "alpha"), "t1:bf:{pool:eu-chat}:inb:alpha");
    }

    #[test]
    fn the_media_budget_keys_share_one_fleet_hash_tag() {
        let k = Keys::new("t1:");
        let mut keys = k.media_budget().to_vec();
        keys.push(k.media_user(42));
        for key in &keys {
            assert!(key.starts_with("t1:bf:{media}:"), "{key}");
            assert_eq!(key.matches('{').count(), 1, "{key}");
        }
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
    }
}
