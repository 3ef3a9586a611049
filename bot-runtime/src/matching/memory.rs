//! The embedded matching store: the same rules and the same queue layout as match.lua, under
//! one mutex.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use super::{Gender, MatchError, MatchPool, Member, Rules, SearchOutcome, Seeker, Tier, Want};

/// One queue per (tier, gender, wanted gender), as in match.lua.
type QueueKey = (Tier, Gender, Want);

#[derive(Default)]
struct Pool {
    /// Waiting members per queue, oldest first: (waiting since, sequence) → member.
    queues: HashMap<QueueKey, BTreeMap<(i64, u64), Member>>,
    waiting: HashMap<Member, (QueueKey, (i64, u64))>,
    pairs: HashMap<Member, Member>,
    /// The member through which a person holds a chat (at most one per person).
    busy: HashMap<i64, Member>,
    /// (person, partner person) → until (ms).
    recent: HashMap<(i64, i64), i64>,
    /// (by person, other person).
    blocked: HashSet<(i64, i64)>,
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

const GENDERS: [Gender; 3] = [Gender::Male, Gender::Female, Gender::Other];

impl Pool {
    fn unqueue(&mut self, m: &Member) -> bool {
        match self.waiting.remove(m) {
            Some((key, at)) => {
                if let Some(q) = self.queues.get_mut(&key) {
                    q.remove(&at);
                }
                true
            }
            None => false,
        }
    }

    fn unqueue_person(&mut self, person: i64) -> u64 {
        let members: Vec<Member> = self.waiting.keys().filter(|m| m.user == person).cloned().collect();
        members.iter().filter(|m| self.unqueue(m)).count() as u64
    }

    /// Per person, as in match.lua: never oneself through another bot, not a recent partner,
    /// not blocked either way, not in a chat through another bot.
    fn suitable(&self, me: &Member, other: &Member, now: i64) -> bool {
        let (a, b) = (me.user, other.user);
        a != b
            && !self.busy.contains_key(&b)
            && self.recent.get(&(a, b)).is_none_or(|until| *until <= now)
            && !self.blocked.contains(&(a, b))
            && !self.blocked.contains(&(b, a))
    }

    /// The oldest suitable member of a tier across the queues that fit the seeker.
    fn best_in(&self, tier: Tier, s: &Seeker, now: i64, scan: usize) -> Option<Member> {
        let genders: Vec<Gender> = match s.want {
            Want::Anyone => GENDERS.to_vec(),
            Want::Only(g) => vec![g],
        };
        let mut best: Option<((i64, u64), &Member)> = None;
        for og in genders {
            for ow in [Want::Anyone, Want::Only(s.gender)] {
                let Some(q) = self.queues.get(&(tier, og, ow)) else { continue };
                let found = q.iter().take(scan).find(|(_, m)| self.suitable(&s.member, m, now));
                if let Some((at, m)) = found
                    && best.is_none_or(|(b, _)| *at < b)
                {
                    best = Some((*at, m));
                }
            }
        }
        best.map(|(_, m)| m.clone())
    }

    fn search(&mut self, s: &Seeker, now: i64, rules: Rules) -> SearchOutcome {
        if let Some(p) = self.pairs.get(&s.member) {
            return SearchOutcome::AlreadyInChat { partner: p.clone() };
        }
        if let Some(holder) = self.busy.get(&s.member.user) {
            return SearchOutcome::BusyElsewhere { holder: holder.clone() };
        }
        let scan = rules.scan_limit.max(1);
        let found = self.best_in(Tier::Vip, s, now, scan).or_else(|| self.best_in(Tier::Free, s, now, scan));
        match found {
            Some(other) => {
                // Both people leave every queue of the pool, through whichever bot they waited.
                self.unqueue_person(other.user);
                self.unqueue_person(s.member.user);
                self.pairs.insert(s.member.clone(), other.clone());
                self.pairs.insert(other.clone(), s.member.clone());
                self.busy.insert(s.member.user, s.member.clone());
                self.busy.insert(other.user, other.clone());
                let window = rules.recent_window.as_millis() as i64;
                if window > 0 {
                    self.recent.retain(|_, until| *until > now);
                    self.recent.insert((s.member.user, other.user), now + window);
                    self.recent.insert((other.user, s.member.user), now + window);
                }
                SearchOutcome::Matched { partner: other }
            }
            None => {
                let key = (if s.vip { Tier::Vip } else { Tier::Free }, s.gender, s.want);
                // Keep the original place when searching again the same way.
                let at = match self.waiting.get(&s.member) {
                    Some((k, at)) if *k == key => *at,
                    _ => {
                        self.unqueue(&s.member);
                        self.seq += 1;
                        (now, self.seq)
                    }
                };
                self.queues.entry(key).or_default().insert(at, s.member.clone());
                self.waiting.insert(s.member.clone(), (key, at));
                SearchOutcome::Queued
            }
        }
    }
}

#[async_trait::async_trait]
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
            if p.busy.get(&member.user) == Some(member) {
                p.busy.remove(&member.user);
            }
            if p.pairs.get(&partner) == Some(member) {
                p.pairs.remove(&partner);
                if p.busy.get(&partner.user) == Some(&partner) {
                    p.busy.remove(&partner.user);
                }
            }
            Some(partner)
        }))
    }

    async fn partner(&self, pool: &str, member: &Member) -> Result<Option<Member>, MatchError> {
        Ok(self.with(pool, |p| p.pairs.get(member).cloned()))
    }

    async fn waiting(&self, pool: &str, member: &Member) -> Result<bool, MatchError> {
        Ok(self.with(pool, |p| p.waiting.contains_key(member)))
    }

    async fn active_chats(&self, pool: &str) -> Result<u64, MatchError> {
        Ok(self.with(pool, |p| p.pairs.len() as u64 / 2))
    }

    async fn block(&self, pool: &str, by: i64, other: i64) -> Result<(), MatchError> {
        self.with(pool, |p| p.blocked.insert((by, other)));
        Ok(())
    }

    async fn members_of(&self, pool: &str, bot: &str) -> Result<Vec<Member>, MatchError> {
        Ok(self.with(pool, |p| {
            let mut out: Vec<Member> = p.pairs.keys().chain(p.waiting.keys()).filter(|m| m.bot == bot).cloned().collect();
            out.sort();
            out.dedup();
            out
        }))
    }

    async fn cancel_person(&self, pool: &str, person: i64) -> Result<u64, MatchError> {
        Ok(self.with(pool, |p| p.unqueue_person(person)))
    }

    async fn queue_len(&self, pool: &str, tier: Tier) -> Result<u64, MatchError> {
        Ok(self.with(pool, |p| p.queues.iter().filter(|((t, _, _), _)| *t == tier).map(|(_, q)| q.len() as u64).sum()))
    }
}
