//! Media blobs for cross-bot re-upload: the sending bot streams the file from Telegram into the
//! hot store piece by piece, the receiving bot's outbox streams it back out as its upload (see
//! [`Job::upload`](super::Job::upload) and `delivery/media.rs`). No process holds a whole file.
//!
//! A blob is written once (a writer claims it with [`Blobs::begin_blob`], appends pieces,
//! then [`Blobs::finish_blob`]), read by byte ranges, and held by the jobs that will upload it
//! (one holder per relayed message, so a retried update does not count twice). It is deleted
//! when its last holder is done ([`Blobs::release_blob`]), and in any case expires with its TTL.
//!
//! Every byte in the store is covered by a reservation against the fleet's media budget
//! ([`Blobs::reserve_media`]), taken before the download starts and freed when the blob is
//! deleted — or, if a process dies between the two, when the reservation's own deadline
//! passes: a crash never leaks budget for longer than one blob's lifetime.

use std::time::Duration;

use bytes::Bytes;

use super::HotResult;

/// What the store knows of a blob, read without its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobInfo {
    /// Bytes written so far (all of them once complete).
    pub size: u64,
    /// Every byte is there ([`Blobs::finish_blob`] ran): it may be uploaded.
    pub complete: bool,
}

/// What [`Blobs::begin_blob`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobStart {
    /// The caller is the blob's writer now (anything left of an abandoned write is gone).
    Write,
    /// The blob is already complete: hold it instead of downloading again.
    Complete,
    /// Another writer's lease is live (the same file relayed twice at once).
    Busy,
}

/// What [`Blobs::reserve_media`] answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaGrant {
    /// Reserved (or already held under this id: a retry, or a reuse, costs nothing again).
    Granted,
    /// The fleet's media budget has no room for these bytes now.
    OverBudget,
    /// The user sent this many bytes of media already in the current window.
    OverUserCap,
}

/// The limits a reservation is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaBudget {
    /// Bytes of media that may sit in the hot store at once, fleet-wide.
    pub fleet_bytes: u64,
    /// Bytes one user (a person, across bots) may relay per `user_window`; 0: no cap.
    pub user_bytes: u64,
    pub user_window: Duration,
}

#[async_trait::async_trait]
pub trait Blobs: Send + Sync {
    /// The blob's size and whether it is complete, without reading its bytes. None: no blob.
    async fn blob_info(&self, pool: &str, id: &str) -> HotResult<Option<BlobInfo>>;

    /// Reserves `bytes` of the fleet's media budget for blob `id` of `pool`, charged to `user`'s
    /// window, until the blob is deleted or at most `hold`. Atomic across replicas. A
    /// reservation already held for the id is kept (its deadline moved to `hold` from now) and
    /// charged nothing again.
    async fn reserve_media(
        &self,
        pool: &str,
        id: &str,
        user: i64,
        bytes: u64,
        budget: &MediaBudget,
        hold: Duration,
    ) -> HotResult<MediaGrant>;

    /// Claims the writing of blob `id` for `lease` (an abandoned write may be taken over after
    /// it); the blob lives at most `ttl`.
    async fn begin_blob(&self, pool: &str, id: &str, lease: Duration, ttl: Duration) -> HotResult<BlobStart>;

    /// Appends one piece to a blob being written.
    async fn append_blob(&self, pool: &str, id: &str, piece: Bytes, ttl: Duration) -> HotResult<()>;

    /// Marks the blob complete (`size` bytes), held by `holder`, for `ttl` from now.
    async fn finish_blob(&self, pool: &str, id: &str, size: u64, holder: &str, ttl: Duration) -> HotResult<()>;

    /// Adds `holder` to a complete blob and keeps it `ttl` from now. False: no complete blob.
    async fn hold_blob(&self, pool: &str, id: &str, holder: &str, ttl: Duration) -> HotResult<bool>;

    /// Up to `len` bytes from `offset` (fewer at the end, none if the blob is gone).
    async fn read_blob(&self, pool: &str, id: &str, offset: u64, len: u64) -> HotResult<Bytes>;

    /// `holder` is done with the blob (uploaded, or given up). When no holder is left the blob
    /// is deleted and its reservation freed; true if that happened.
    async fn release_blob(&self, pool: &str, id: &str, holder: &str) -> HotResult<bool>;

    /// Deletes a blob whose writing failed, and frees its reservation.
    async fn drop_blob(&self, pool: &str, id: &str) -> HotResult<()>;

    /// Bytes reserved fleet-wide now (expired reservations not counted).
    async fn media_reserved(&self) -> HotResult<u64>;
}
