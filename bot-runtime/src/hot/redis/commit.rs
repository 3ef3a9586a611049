//! The commit on Redis: commit.lua, one script over the marker's keys and every job's stream.

use super::{RedisHot, px, to_json, unavailable};
use crate::hot::{Commit, HotResult, Job, Marker, Outbox};

#[async_trait::async_trait]
impl Commit for RedisHot {
    async fn commit(&self, pool: &str, marker: Marker, jobs: &[Job]) -> HotResult<()> {
        let mut inv = self.commit.prepare_invoke();
        match &marker {
            Marker::Update { bot, update_id, keep } => {
                inv.key(self.keys.update(pool, bot, *update_id)).arg("update").arg(px(*keep)).arg(1);
            }
            Marker::Timer { bot, id } => {
                inv.key(self.keys.timers_in_flight(pool, bot))
                    .key(self.keys.timers_due(pool, bot))
                    .key(self.keys.timers_payload(pool, bot))
                    .arg("timer")
                    .arg(id.as_str())
                    .arg(3);
            }
            Marker::None => {
                if jobs.is_empty() {
                    return Ok(());
                }
                inv.arg("none").arg("").arg(0);
            }
        }
        for job in jobs {
            inv.key(self.keys.outbox(pool, &job.bot, self.shard_of(job.chat_id), job.lane)).arg(to_json(job)?);
        }
        let mut conn = self.conn.clone();
        let _: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }
}
