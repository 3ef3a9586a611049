//! The inbound queues in memory: per (pool, bot) a map from a sequence number (the entry id,
//! increasing) to the update's JSON; empty queues are removed.

use super::MemoryHot;
use crate::hot::{HotResult, Inbound, InboundUpdate};

#[async_trait::async_trait]
impl Inbound for MemoryHot {
    async fn inbound_push(&self, pool: &str, bot: &str, raw: &str, max: u64) -> HotResult<bool> {
        let (mut s, _) = self.lock();
        let key = (pool.to_string(), bot.to_string());
        if s.inbound.get(&key).map_or(0, |q| q.len() as u64) >= max {
            return Ok(false);
        }
        s.next_inbound += 1;
        let seq = s.next_inbound;
        s.inbound.entry(key).or_default().insert(seq, raw.to_string());
        Ok(true)
    }

    async fn inbound_read(&self, pool: &str, bot: &str, max: usize) -> HotResult<Vec<InboundUpdate>> {
        let (s, _) = self.lock();
        Ok(s.inbound
            .get(&(pool.to_string(), bot.to_string()))
            .map(|q| q.iter().take(max).map(|(id, raw)| InboundUpdate { id: id.to_string(), raw: raw.clone() }).collect())
            .unwrap_or_default())
    }

    async fn inbound_ack(&self, pool: &str, bot: &str, id: &str) -> HotResult<()> {
        // An id this store never made names no entry: nothing to remove.
        let Ok(seq) = id.parse::<u64>() else { return Ok(()) };
        let (mut s, _) = self.lock();
        let key = (pool.to_string(), bot.to_string());
        if let Some(q) = s.inbound.get_mut(&key) {
            q.remove(&seq);
            if q.is_empty() {
                s.inbound.remove(&key);
            }
        }
        Ok(())
    }

    async fn inbound_depth(&self, pool: &str, bot: &str) -> HotResult<u64> {
        let (s, _) = self.lock();
        Ok(s.inbound.get(&(pool.to_string(), bot.to_string())).map_or(0, |q| q.len() as u64))
    }
}
