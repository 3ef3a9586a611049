//! The commit on Redis: commit.lua, one script over the marker's keys and every job's stream.

use super::{RedisHot, px, to_json, unavailable};
use crate::hot::{Commit, HotResult, Job, Marker, Outbox};

/// How long an update's claim key still says "done" after its commit: replicas of the previous
/// release read only that key, so it is kept for a rolling upgrade's length; this release reads
/// the done-mark bitmap (a bit per update for the full keep) — the footprint of a handled update
/// in Redis is an eighth of a byte, not a key (issue 9, defect 14).
pub const ROLLOUT_DONE_KEEP: std::time::Duration = std::time::Duration::from_secs(15 * 60);

#[async_trait::async_trait]
impl Commit for RedisHot {
    async fn commit(&self, pool: &str, marker: Marker, jobs: &[Job]) -> HotResult<()> {
        let mut inv = self.commit.prepare_invoke();
        match &marker {
            Marker::Update { bot, update_id, keep } => {
                let (segment, bit) = self.keys.update_done(pool, bot, *update_id);
                inv.key(self.keys.update(pool, bot, *update_id))
                    .key(segment)
                    .arg("update")
                    .arg(px(*keep))
                    .arg(2)
                    .arg(bit)
                    .arg(px(ROLLOUT_DONE_KEEP.min(*keep)));
            }
            Marker::Timer { bot, id } => {
                inv.key(self.keys.timers_in_flight(pool, bot))
                    .key(self.keys.timers_due(pool, bot))
                    .key(self.keys.timers_payload(pool, bot))
                    .arg("timer")
                    .arg(id.as_str())
                    .arg(3)
                    .arg("")
                    .arg("");
            }
            Marker::None => {
                if jobs.is_empty() {
                    return Ok(());
                }
                inv.arg("none").arg("").arg(0).arg("").arg("");
            }
        }
        for job in jobs {
            inv.key(self.outbox_key(pool, &job.bot, self.shard_of(job.chat_id), job.lane)).arg(to_json(job)?);
        }
        // Each recipient bot's wake channel, once (a commit has jobs for one or two bots).
        let mut woken: Vec<&str> = Vec::with_capacity(2);
        for job in jobs {
            if !woken.contains(&job.bot.as_str()) {
                woken.push(&job.bot);
                inv.arg(self.keys.outbox_wake(pool, &job.bot));
            }
        }
        let mut conn = self.conn.clone();
        let _: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }
}
