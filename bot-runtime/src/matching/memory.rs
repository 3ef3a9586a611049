//! The embedded matching store: the same rules as the Lua script, under one mutex.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use super::{Gender, MatchError, MatchPool, Member, Rules, SearchOutcome, Seeker, Tier, Want};

#[derive(Default)]
struct Pool {
    /// Waiting members per tier, oldest first: (enqueued at, sequence) → member.
    queues: HashMap<Tier, BTreeMap<(i64, u64), Member>>,
    waiting: HashMap<Member, (Tier, (i64, u64), Gender, Want)>,
    pairs: HashMap<Member, Member>,
    /// (member, partner) → until (ms).
    recent: HashMap<(Member, Member), i64>,
    blocked: HashSet<(Member, Member)>,
    seq: u64,
}

#[derive(Default)]
pub struct MemoryPool {
    pools: Mutex<HashMap<String, Pool>>,
}

impl MemoryPool {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, pool: &str, f: impl FnOnce(&mut Pool) -> T) -> T {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        f(pools.entry(pool.to_string()).or_default())
    }
}

impl Pool {
    fn unqueue(&mut self, m: &Member) -> bool {
        match self.waiting.remove(m) {
            Some((tier, at, _, _)) => {
                if let Some(q) = self.queues.get_mut(&tier) {
                    q.remove(&at);
                }
                true
            }
            None => false,
        }
    }

    fn compatible(&self, seeker: &Seeker, other: &Member, og: Gender, ow: Want, now: i64) -> bool {
        seeker.want.accepts(og)
            && ow.accepts(seeker.gender)
            && self.recent.get(&(seeker.member.clone(), other.clone())).is_none_or(|until| *until <= now)
            && !self.blocked.contains(&(seeker.member.clone(), other.clone()))
            && !self.blocked.contains(&(other.clone(), seeker.member.clone()))
    }

    fn search(&mut self, s: &Seeker, now: i64, rules: Rules) -> SearchOutcome {
        if let Some(p) = self.pairs.get(&s.member) {
            return SearchOutcome::AlreadyInChat { partner: p.clone() };
        }
        let mut found = None;
        'tiers: for tier in [Tier::Vip, Tier::Free] {
            let Some(q) = self.queues.get(&tier) else { continue };
            for other in q.values().take(rules.scan_limit) {
                if *other == s.member {
                    continue;
                }
                if let Some((_, _, og, ow)) = self.waiting.get(other)
                    && self.compatible(s, other, *og, *ow, now)
                {
                    found = Some(other.clone());
                    break 'tiers;
                }
            }
        }
        match found {
            Some(other) => {
                self.unqueue(&other);
                self.unqueue(&s.member);
                self.pairs.insert(s.member.clone(), other.clone());
                self.pairs.insert(other.clone(), s.member.clone());
                let window = rules.recent_window.as_millis() as i64;
                if window > 0 {
                    self.recent.retain(|_, until| *until > now);
                    self.recent.insert((s.member.clone(), other.clone()), now + window);
                    self.recent.insert((other.clone(), s.member.clone()), now + window);
                }
                SearchOutcome::Matched { partner: other }
            }
            None => {
                let tier = if s.vip { Tier::Vip } else { Tier::Free };
                // Keep the original place when already waiting in the same tier.
                let at = match self.waiting.get(&s.member) {
                    Some((t, at, _, _)) if *t == tier => *at,
                    _ => {
                        self.unqueue(&s.member);
                        self.seq += 1;
                        (now, self.seq)
                    }
                };
                self.queues.entry(tier).or_default().insert(at, s.member.clone());
                self.waiting.insert(s.member.clone(), (tier, at, s.gender, s.want));
                SearchOutcome::Queued
            }
        }
    }
}

impl MatchPool for MemoryPool {
    async fn search(&self, pool: &str, seeker: &Seeker, now_ms: i64, rules: Rules) -> Result<SearchOutcome, MatchError> {
        Ok(self.with(pool, |p| p.search(seeker, now_ms, rules)))
    }

    async fn cancel(&self, pool: &str, member: &Member) -> Result<bool, MatchError> {
        Ok(self.with(pool, |p| p.unqueue(member)))
    }

    async fn end_chat(&self, pool: &str, member: &Member) -> Result<Option<Member>, MatchError> {
        Ok(self.with(pool, |p| {
            let partner = p.pairs.remove(member)?;
            if p.pairs.get(&partner) == Some(member) {
                p.pairs.remove(&partner);
            }
            Some(partner)
        }))
    }

    async fn partner(&self, pool: &str, member: &Member) -> Result<Option<Member>, MatchError> {
        Ok(self.with(pool, |p| p.pairs.get(member).cloned()))
    }

    async fn block(&self, pool: &str, member: &Member, other: &Member) -> Result<(), MatchError> {
        self.with(pool, |p| p.blocked.insert((member.clone(), other.clone())));
        Ok(())
    }

    async fn queue_len(&self, pool: &str, tier: Tier) -> Result<u64, MatchError> {
        Ok(self.with(pool, |p| p.queues.get(&tier).map(|q| q.len() as u64).unwrap_or(0)))
    }
}
