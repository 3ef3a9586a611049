//! Every Redis key the runtime uses is built here, never formatted ad hoc elsewhere.
//!
//! Keys of one matching pool share the hash tag `{pool:<name>}`, so a Lua script that touches
//! several of them stays on one slot of a Redis Cluster. The optional prefix namespaces a
//! whole fleet (and gives each test its own keys).

use crate::matching::Member;

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

    pub fn recent(&self, pool: &str, m: &Member) -> String {
        format!("{}recent:{m}", self.pool(pool))
    }

    /// How many chats are in progress in the pool (kept by match.lua and end_chat.lua).
    pub fn active_chats(&self, pool: &str) -> String {
        format!("{}active", self.pool(pool))
    }

    pub fn blocked(&self, pool: &str, m: &Member) -> String {
        format!("{}blocked:{m}", self.pool(pool))
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
            k.recent("eu-chat", &m),
            k.blocked("eu-chat", &m),
        ] {
            assert!(key.starts_with("t1:bf:"), "{key}");
            assert_eq!(key.matches('{').count(), 1, "{key}");
            assert!(key.contains(tag), "{key}");
        }
        assert_eq!(k.pair("eu-chat", &m), "t1:bf:{pool:eu-chat}:pair:alpha:42");
        assert_eq!(k.queue("eu-chat", Tier::Free, "m", "f"), "t1:bf:{pool:eu-chat}:q:free:m:f");
        assert_eq!(k.queues("eu-chat", Tier::Vip).len(), 12);
    }
}
