//! Hot state: everything that changes per update and must be shared by every replica of every
//! bot of a pool — update dedupe, the outboxes, the shared send limiter, timers, the reply map
//! and small references, leases. Two implementations: Redis (any number of replicas,
//! [`redis::RedisHot`]) and in-process memory (the embedded default, [`memory::MemoryHot`]);
//! one behaviour suite (`tests/hot.rs`) runs against both.
//!
//! The central invariant: an update's (or a timer's) *effects* — the outbox jobs it produces —
//! are written in the same atomic step that marks it done ([`Commit::commit`]). So a crash
//! before the commit leaves nothing behind and the retry redoes the work; a crash after it
//! leaves the work done and the retry finds it done. Every key of one pool carries the pool's
//! hash tag (see `keys.rs`), so that step is one MULTI on one Redis Cluster slot.
//!
//! One trait per concern, one file each (and one file per concern in each implementation):
//!
//! | trait | file | used by |
//! |---|---|---|
//! | [`Dedupe`] | `dedupe.rs` | the pipeline (claim / release an update) |
//! | [`Commit`] | `commit.rs` | the pipeline, timers, the outbox consumer |
//! | [`Outbox`] | `outbox.rs` | the outbox consumer |
//! | [`Leases`] | `leases.rs` | the poller, outbox shards |
//! | [`SendLimiter`], [`RateLimit`] | `limiter.rs` | the outbox consumer; handlers |
//! | [`Timers`] | `timers.rs` | handlers (schedule), the timer loop (claim) |
//! | [`Refs`] | `refs.rs` | the reply map, saved messages, `once` memos |
//! | [`Blobs`] | `blobs.rs` | cross-bot media |
//! | [`Inbound`] | `inbound.rs` | the webhook past its overload grace, the inbound drainer |
//! | [`Maintenance`] | `maintenance.rs` | /readyz, upgrades |
//!
//! [`HotState`] is all of them: the one handle the fleet holds (`Arc<dyn HotState>`).

mod blobs;
mod commit;
mod dedupe;
mod gcra;
mod inbound;
mod leases;
mod limiter;
mod maintenance;
pub mod memory;
mod outbox;
pub mod redis;
pub mod refs;
mod timers;
mod types;

pub use blobs::{BlobInfo, BlobStart, Blobs, MediaBudget, MediaGrant};
pub use commit::Commit;
pub use dedupe::Dedupe;
pub use inbound::{Inbound, InboundUpdate};
pub use leases::Leases;
pub use limiter::{Budget, RateLimit, SendLimiter, SendSlot};
pub use maintenance::Maintenance;
pub use outbox::{Outbox, WakeStream, busy_shards};
pub use refs::{Refs, reply_of, reply_ref, saved_ref};
pub use timers::Timers;
pub use types::{Claim, HotError, HotResult, Job, Lane, Marker, MessageRef, MirrorOf, QueuedJob, Timer, Upload};

/// The hot state of one fleet (all pools): every concern at once. Implementations must be safe
/// under any number of concurrent callers and (for Redis) replicas. Implemented for anything
/// that implements every concern; on `dyn HotState` all their methods are callable as they are.
pub trait HotState:
    Dedupe + Commit + Outbox + Leases + SendLimiter + RateLimit + Timers + Refs + Blobs + Inbound + Maintenance + 'static
{
}

impl<T> HotState for T where
    T: Dedupe + Commit + Outbox + Leases + SendLimiter + RateLimit + Timers + Refs + Blobs + Inbound + Maintenance + ?Sized + 'static
{
}
