//! The commit in memory: every change under one lock, after every check (so it is atomic).

use super::outbox::StreamKey;
use super::{MemoryHot, State};
use crate::hot::{Commit, HotResult, Job, Marker, Outbox};

impl State {
    fn push(&mut self, key: StreamKey, job: Job) {
        self.next_job += 1;
        self.outboxes.entry(key).or_default().insert(self.next_job, job);
    }
}

impl MemoryHot {
    fn stream(&self, pool: &str, job: &Job) -> StreamKey {
        StreamKey { pool: pool.to_string(), bot: job.bot.clone(), shard: self.shard_of(job.chat_id), lane: job.lane }
    }
}

#[async_trait::async_trait]
impl Commit for MemoryHot {
    async fn commit(&self, pool: &str, marker: Marker, jobs: &[Job]) -> HotResult<()> {
        // Built before locking: the lock only covers the (infallible) changes.
        let entries: Vec<(StreamKey, Job)> = jobs.iter().map(|j| (self.stream(pool, j), j.clone())).collect();
        let (mut s, now) = self.lock();
        if let Marker::Update { bot, update_id, .. } = &marker {
            if s.is_done(pool, bot, *update_id, now) {
                // Committed already (by a holder whose lease outlived ours): effects exist once.
                return Ok(());
            }
        }
        for (key, job) in entries {
            s.push(key, job);
        }
        match marker {
            Marker::Update { bot, update_id, keep } => {
                s.mark_done(pool, &bot, update_id, keep, now);
            }
            Marker::Timer { bot, id } => {
                let key = (pool.to_string(), bot);
                if let Some(t) = s.timers.get_mut(&key) {
                    t.in_flight.remove(&id);
                    if t.due.score(&id).is_none() {
                        t.payloads.remove(&id);
                    }
                    if t.is_empty() {
                        s.timers.remove(&key);
                    }
                }
            }
            Marker::None => {}
        }
        Ok(())
    }
}
