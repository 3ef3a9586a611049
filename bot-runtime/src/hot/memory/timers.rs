//! Timers in memory: the due set, the in-flight set and the payloads per bot, fired by the
//! steps of claim_timers.lua.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use super::MemoryHot;
use crate::hot::{HotResult, Timer, Timers};

/// A sorted set like Redis' ZSET: by score, then by member.
#[derive(Default)]
pub(super) struct ZSet {
    ordered: BTreeSet<(i64, String)>,
    scores: HashMap<String, i64>,
}

impl ZSet {
    pub(super) fn add(&mut self, id: &str, score: i64) {
        if let Some(old) = self.scores.insert(id.to_string(), score) {
            self.ordered.remove(&(old, id.to_string()));
        }
        self.ordered.insert((score, id.to_string()));
    }
    pub(super) fn remove(&mut self, id: &str) {
        if let Some(old) = self.scores.remove(id) {
            self.ordered.remove(&(old, id.to_string()));
        }
    }
    pub(super) fn score(&self, id: &str) -> Option<i64> {
        self.scores.get(id).copied()
    }
    /// Members with a score <= `max`, lowest first.
    pub(super) fn up_to(&self, max: i64) -> impl Iterator<Item = &str> {
        self.ordered.iter().take_while(move |(s, _)| *s <= max).map(|(_, id)| id.as_str())
    }
    pub(super) fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

/// A bot's timers, as in claim_timers.lua: due (id → due ms), in flight (id → lease end ms),
/// payloads.
#[derive(Default)]
pub(super) struct BotTimers {
    pub(super) due: ZSet,
    pub(super) in_flight: ZSet,
    pub(super) payloads: HashMap<String, Timer>,
}

impl BotTimers {
    pub(super) fn is_empty(&self) -> bool {
        self.due.is_empty() && self.in_flight.is_empty() && self.payloads.is_empty()
    }
}

#[async_trait::async_trait]
impl Timers for MemoryHot {
    async fn schedule(&self, pool: &str, bot: &str, timer: &Timer) -> HotResult<()> {
        let timer = timer.clone();
        let (mut s, _) = self.lock();
        let t = s.timers.entry((pool.to_string(), bot.to_string())).or_default();
        t.due.add(&timer.id, timer.due_ms);
        t.payloads.insert(timer.id.clone(), timer);
        Ok(())
    }

    async fn unschedule(&self, pool: &str, bot: &str, id: &str) -> HotResult<()> {
        let (mut s, _) = self.lock();
        let key = (pool.to_string(), bot.to_string());
        if let Some(t) = s.timers.get_mut(&key) {
            t.due.remove(id);
            t.in_flight.remove(id);
            t.payloads.remove(id);
            if t.is_empty() {
                s.timers.remove(&key);
            }
        }
        Ok(())
    }

    async fn claim_timers(&self, pool: &str, bot: &str, now_ms: i64, lease: Duration, max: usize) -> HotResult<Vec<Timer>> {
        let lease_end = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1));
        let (mut s, _) = self.lock();
        let Some(t) = s.timers.get_mut(&(pool.to_string(), bot.to_string())) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        // In flight, lease ran out (its replica died): fire again (see claim_timers.lua).
        let expired: Vec<String> = t.in_flight.up_to(now_ms).take(max).map(str::to_string).collect();
        for id in expired {
            match t.payloads.get(&id) {
                Some(p) => {
                    out.push(p.clone());
                    t.in_flight.add(&id, lease_end);
                    if t.due.score(&id).is_some_and(|d| d <= now_ms) {
                        t.due.remove(&id);
                    }
                }
                None => t.in_flight.remove(&id),
            }
        }
        // Due, oldest first, skipping ids still in flight (they stay due, in place).
        let due: Vec<String> =
            t.due.up_to(now_ms).filter(|id| t.in_flight.score(id).is_none()).take(max - out.len()).map(str::to_string).collect();
        for id in due {
            t.due.remove(&id);
            if let Some(p) = t.payloads.get(&id) {
                out.push(p.clone());
                t.in_flight.add(&id, lease_end);
            }
        }
        Ok(out)
    }
}
