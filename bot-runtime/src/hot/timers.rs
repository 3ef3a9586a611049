//! Timers: per bot, fired once across replicas (claimed with a lease, finished by a commit
//! with [`Marker::Timer`](super::Marker::Timer)).

use std::time::Duration;

use super::{HotResult, Timer};

#[async_trait::async_trait]
pub trait Timers: Send + Sync {
    /// Schedules (or moves) timer `timer.id` of `bot`.
    async fn schedule(&self, pool: &str, bot: &str, timer: &Timer) -> HotResult<()>;
    async fn unschedule(&self, pool: &str, bot: &str, id: &str) -> HotResult<()>;
    /// Takes up to `max` timers of `bot` due at `now_ms` (and in-flight ones whose lease ran
    /// out: a replica died) for `lease`. Each is fired by one caller; finished with
    /// `commit(Marker::Timer)`. A timer rescheduled while in flight keeps its new due time.
    ///
    /// One firing at a time per id: a timer rescheduled while in flight does not fire again
    /// before that firing is committed (or its lease runs out). A timer whose lease ran out
    /// fires again with its current payload (at least once, not exactly once, if a replica is
    /// slower than its lease).
    async fn claim_timers(&self, pool: &str, bot: &str, now_ms: i64, lease: Duration, max: usize) -> HotResult<Vec<Timer>>;
}
