//! Cross-bot media: how a file's bytes get from the sender's bot to the recipient's bot.
//!
//! A Telegram `file_id` is valid for one bot only, so a photo Ann sends to `alpha` must be
//! downloaded with alpha's token and uploaded again with beta's for Bob — usually by two
//! different pods. The bytes travel through **the hot store (Redis), in pieces**: alpha's pod
//! streams the download into a blob ([`PIECE`] bytes at a time, appended), beta's outbox streams
//! the blob back out as the body of its multipart upload (read by range). Neither pod holds more
//! than a piece or two of a file, whatever its size (Telegram lets bots download up to 20 MB).
//!
//! What bounds it:
//! - **Redis**: every blob is covered by a reservation against the fleet's media budget
//!   ([`MediaLimits::budget`], well below `maxmemory`), taken before the download and freed when
//!   the blob is deleted; a user may relay at most `user_bytes` per `user_window`.
//! - **Each process**: at most [`MediaLimits::relays_per_process`] downloads and as many uploads
//!   at once.
//! - **Time**: a blob is deleted as soon as its last upload is done (sent, or given up), and
//!   expires after [`BLOB_TTL`] in any case.
//!
//! Over any limit the sender is told at once (and the metric
//! `botfleet_media_relays_refused_total{reason}` counts it); the update is done, nothing retries.
//! A second relay of a file whose blob is still there (the same file sent again, or to a new
//! partner, before the first upload finished) holds that blob instead of downloading it again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::bot::{Bot, HandleError};
use crate::chat::text_key::TextKey;
use crate::hot::{BlobStart, HotError, HotState, Job, MediaBudget, MediaGrant};
use crate::ingress::update::File;
use crate::telegram::{BadRequest, MAX_DOWNLOAD_BYTES, TgError};

/// Bytes per piece: what a process holds of a file at a time, and one Redis call's value.
pub const PIECE: usize = 256 * 1024;

/// The longest a blob stays in the hot store. Its upload is an interactive outbox job, which is
/// given up 10 minutes after it was queued (`outbox::max_age`): a blob that outlived that has
/// no job left that could send it. Two more minutes cover the download before the job is
/// queued. (Release N kept blobs an hour: a whole hour of Redis memory per file.)
pub const BLOB_TTL: Duration = Duration::from_secs(12 * 60);

/// How long a download may hold the writing of a blob: longer than the download's own
/// timeout (120 s), so a live writer is never taken over; a crashed one is after this.
pub const WRITE_LEASE: Duration = Duration::from_secs(3 * 60);

/// How long a reservation outlives its last renewal if nobody frees it (a crash): as long as
/// the blob it covers may live, plus its writing.
const RESERVATION_HOLD: Duration = Duration::from_secs(BLOB_TTL.as_secs() + WRITE_LEASE.as_secs());

/// The media limits of a process (from `serve`'s flags; defaults for `local`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLimits {
    pub budget: MediaBudget,
    /// Downloads (and, separately, uploads) of media this process runs at once.
    pub relays_per_process: usize,
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self {
            budget: MediaBudget {
                fleet_bytes: 256 * 1024 * 1024,
                user_bytes: 100 * 1024 * 1024,
                user_window: Duration::from_secs(10 * 60),
            },
            relays_per_process: 4,
        }
    }
}

/// The process's media slots under its limits.
pub struct MediaRelays {
    pub limits: MediaLimits,
    downloads: Arc<Semaphore>,
    uploads: Arc<Semaphore>,
}

impl MediaRelays {
    pub fn new(limits: MediaLimits) -> Self {
        let n = limits.relays_per_process.max(1);
        Self { limits, downloads: Arc::new(Semaphore::new(n)), uploads: Arc::new(Semaphore::new(n)) }
    }

    /// A download slot now, or None when every one is taken (the sender is told to retry).
    pub fn try_download(&self) -> Option<OwnedSemaphorePermit> {
        self.downloads.clone().try_acquire_owned().ok()
    }

    /// An upload slot, waiting for one (the job is queued already; its chat waits its turn).
    pub async fn upload_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.uploads.clone().acquire_owned().await.ok()
    }
}

impl Default for MediaRelays {
    fn default() -> Self {
        Self::new(MediaLimits::default())
    }
}

/// Why a file is not relayed; the sender is told [`Refusal::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every download slot of this process is taken.
    Busy,
    /// The fleet's media budget is full.
    Budget,
    /// The sender relayed too many bytes in the current window.
    UserCap,
    /// Over Telegram's 20 MB download limit.
    TooBig,
    /// Telegram refused the download for another reason.
    Failed,
}

impl Refusal {
    /// The metric's `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Busy => "busy",
            Refusal::Budget => "budget",
            Refusal::UserCap => "user_cap",
            Refusal::TooBig => "too_big",
            Refusal::Failed => "failed",
        }
    }

    pub fn text(self) -> TextKey {
        match self {
            Refusal::Busy | Refusal::Budget => TextKey::MediaBusy,
            Refusal::UserCap => TextKey::MediaQuota,
            Refusal::TooBig => TextKey::TooBig,
            Refusal::Failed => TextKey::RelayFailed,
        }
    }
}

/// Where a file ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staged {
    /// In the hot store as this blob, held by the caller's holder.
    Ready(String),
    Refused(Refusal),
}

/// Puts the file `sender` sent into the hot store as blob `id`, held by `holder` (one per
/// relayed message, stable across retries of its update), downloading it only when no complete
/// copy is there. An outage (Redis, Telegram 5xx or network) is an error: the update is
/// retried. Anything else the sender is told about.
pub async fn stage(bot: &Bot, sender: i64, file: &File, id: &str, holder: &str) -> Result<Staged, HandleError> {
    let staged = stage_once(bot, sender, file, id, holder).await?;
    if let Staged::Refused(r) = staged {
        bot.metrics().media_refused(&bot.name, r.reason());
    }
    Ok(staged)
}

async fn stage_once(bot: &Bot, sender: i64, file: &File, id: &str, holder: &str) -> Result<Staged, HandleError> {
    let hot = bot.fleet.hot.as_ref();
    let pool = &bot.pool;
    let budget = bot.fleet.media.limits.budget;
    if let Some(info) = hot.blob_info(pool, id).await?
        && info.complete
    {
        // The reservation must last as long as the blob now will.
        match hot.reserve_media(pool, id, sender, info.size, &budget, RESERVATION_HOLD).await? {
            MediaGrant::Granted => {}
            refused => return Ok(Staged::Refused(refusal(refused))),
        }
        if hot.hold_blob(pool, id, holder, BLOB_TTL).await? {
            return Ok(Staged::Ready(id.to_string()));
        }
    }
    let Some(_slot) = bot.fleet.media.try_download() else { return Ok(Staged::Refused(Refusal::Busy)) };
    let remote = match bot.api.file(&file.file_id, MAX_DOWNLOAD_BYTES).await {
        Ok(remote) => remote,
        Err(e) => return refused_or_outage(bot, e),
    };
    // The reservation is what the download may bring: Telegram's stated size, else its limit.
    let bytes = remote.size.or(file.file_size).unwrap_or(MAX_DOWNLOAD_BYTES).min(MAX_DOWNLOAD_BYTES);
    let mut id = id.to_string();
    // Twice at most: another writer holding this id sends us to a fresh one.
    for _ in 0..2 {
        match hot.reserve_media(pool, &id, sender, bytes, &budget, RESERVATION_HOLD).await? {
            MediaGrant::Granted => {}
            refused => return Ok(Staged::Refused(refusal(refused))),
        }
        match hot.begin_blob(pool, &id, WRITE_LEASE, BLOB_TTL).await? {
            BlobStart::Write => {
                return match write(bot, &remote, &id, bytes).await {
                    Ok(size) => {
                        hot.finish_blob(pool, &id, size, holder, BLOB_TTL).await?;
                        Ok(Staged::Ready(id))
                    }
                    Err(e) => {
                        // Nothing half-written stays behind, and its budget is free again.
                        let _ = hot.drop_blob(pool, &id).await;
                        match e {
                            WriteError::Hot(e) => Err(e.into()),
                            WriteError::Telegram(e) => refused_or_outage(bot, e),
                        }
                    }
                };
            }
            BlobStart::Complete if hot.hold_blob(pool, &id, holder, BLOB_TTL).await? => return Ok(Staged::Ready(id)),
            // Deleted between the two calls (its last upload finished): write it anew.
            BlobStart::Complete => {}
            // The same file is being downloaded by another relay right now (the sender sent it
            // twice at once): this one downloads its own copy rather than wait.
            BlobStart::Busy => id = format!("{id}~{:08x}", rand::random::<u32>()),
        }
    }
    Ok(Staged::Refused(Refusal::Busy))
}

fn refusal(grant: MediaGrant) -> Refusal {
    match grant {
        MediaGrant::OverUserCap => Refusal::UserCap,
        _ => Refusal::Budget,
    }
}

fn refused_or_outage(bot: &Bot, e: TgError) -> Result<Staged, HandleError> {
    if e.is_transient() {
        return Err(e.into());
    }
    tracing::info!(bot = %bot.name, error = %e, "media could not be downloaded for relay");
    Ok(Staged::Refused(if e.bad_request() == Some(BadRequest::FileTooBig) { Refusal::TooBig } else { Refusal::Failed }))
}

enum WriteError {
    Telegram(TgError),
    Hot(HotError),
}

/// Streams the download into the blob, piece by piece; at most `max` bytes.
async fn write(bot: &Bot, remote: &crate::telegram::RemoteFile, id: &str, max: u64) -> Result<u64, WriteError> {
    let mut download = bot.api.download(remote, max, PIECE).await.map_err(WriteError::Telegram)?;
    while let Some(piece) = download.next_piece().await.map_err(WriteError::Telegram)? {
        bot.fleet.hot.append_blob(&bot.pool, id, piece, BLOB_TTL).await.map_err(WriteError::Hot)?;
    }
    Ok(download.received())
}

/// The body of the upload of blob `id` (`size` bytes): read from the hot store a piece at a
/// time as the request is sent. A blob that vanishes mid-way fails the request (retried; by
/// then the job finds the blob gone and tells the sender).
pub fn upload_body(hot: Arc<dyn HotState>, pool: String, id: String, size: u64) -> reqwest::Body {
    let pieces = futures::stream::try_unfold(0u64, move |offset| {
        let (hot, pool, id) = (hot.clone(), pool.clone(), id.clone());
        async move {
            if offset >= size {
                return Ok(None);
            }
            let want = (PIECE as u64).min(size - offset);
            let piece = hot.read_blob(&pool, &id, offset, want).await.map_err(std::io::Error::other)?;
            if piece.len() as u64 != want {
                return Err(std::io::Error::other("the media blob is gone"));
            }
            Ok(Some((piece, offset + want)))
        }
    });
    reqwest::Body::wrap_stream(pieces)
}

/// A job that uploaded a blob is done with it (sent, or given up): the blob is deleted once no
/// other job holds it. Called after the job's acknowledgement, so a crash between the two
/// leaves the blob to its TTL rather than a re-sent job without its bytes.
pub async fn release(bot: &Bot, job: &Job) {
    let Some(upload) = &job.upload else { return };
    // Release-N jobs name no holder: their whole-file blobs expire on their own.
    let Some(holder) = &upload.holder else { return };
    if let Err(e) = bot.fleet.hot.release_blob(&bot.pool, &upload.blob, holder).await {
        tracing::warn!(bot = %bot.name, error = %e, "could not release a media blob; it expires with its TTL");
    }
}
