//! What goes out, and when: cross-bot media (`media.rs`: files streamed through the hot store
//! under the fleet's media budget), the per-bot outbox consumer (`outbox.rs`: shard leases, the
//! limiter shared by all replicas, retries, the reply map) and the timer loop (`timers.rs`:
//! search refreshes and idle timeouts, each fired once across replicas). The shared state they
//! work on (streams, buckets, due sets) is in `hot/`.

pub mod media;
pub mod outbox;
pub mod timers;
