//! The commit: the one atomic step that writes an update's (or a timer's) effects.
//!
//! Its own trait rather than a method of [`Dedupe`](super::Dedupe): one step spans three
//! concerns — it marks an update done (dedupe), appends to the outboxes (outbox) and takes a
//! fired timer out of flight (timers) — and the outbox consumer and the timer loop commit
//! without ever claiming an update. Putting it with any one concern would hide that it is the
//! central invariant of the hot state (see `hot/mod.rs`).

use super::{HotResult, Job, Marker};

#[async_trait::async_trait]
pub trait Commit: Send + Sync {
    /// Atomically: appends `jobs` to their bots' outboxes (each to the shard of its chat and
    /// its lane, as [`Outbox::shard_of`](super::Outbox::shard_of) places it) and marks
    /// `marker` done. All jobs' bots are in `pool`.
    ///
    /// An update already marked done (a replica whose lease ran out while it worked, committing
    /// after the one that took it over) gets nothing appended: its effects exist once. A timer
    /// marker takes the timer out of the in-flight set; if it was scheduled again meanwhile it
    /// stays scheduled (new time, new payload).
    async fn commit(&self, pool: &str, marker: Marker, jobs: &[Job]) -> HotResult<()>;
}
