//! Media blobs in memory: the same life as on Redis (`blob.lua`, `media_budget.lua`) — written
//! once in pieces, read by range, deleted with the last holder — and the budget of this process
//! (the embedded default is one process: its "fleet" is itself).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{Expiring, MemoryHot, deadline, live, named};
use crate::hot::{BlobInfo, BlobStart, Blobs, HotResult, MediaBudget, MediaGrant};

/// One blob: its pieces in order, and who still needs it.
#[derive(Default)]
pub(super) struct Blob {
    pieces: Vec<Bytes>,
    size: u64,
    done: bool,
    /// The writer's deadline while it is written.
    lease_until: Option<Instant>,
    holders: HashSet<String>,
}

/// The media budget: reservations by (pool, blob) with their bytes and deadlines, and each
/// user's bytes in the current window.
#[derive(Default)]
pub(super) struct MediaLedger {
    used: u64,
    reservations: HashMap<(String, String), (u64, Instant)>,
    users: HashMap<i64, Expiring<u64>>,
}

impl MediaLedger {
    /// Frees reservations whose deadline passed (their holder died) and forgets old windows.
    pub(super) fn sweep(&mut self, now: Instant) {
        let used = &mut self.used;
        self.reservations.retain(|_, (bytes, until)| {
            let keep = *until > now;
            if !keep {
                *used = used.saturating_sub(*bytes);
            }
            keep
        });
        self.users.retain(|_, e| e.live(now));
    }

    fn release(&mut self, key: &(String, String)) {
        if let Some((bytes, _)) = self.reservations.remove(key) {
            self.used = self.used.saturating_sub(bytes);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.reservations.len() + self.users.len()
    }
}

#[async_trait::async_trait]
impl Blobs for MemoryHot {
    async fn blob_info(&self, pool: &str, id: &str) -> HotResult<Option<BlobInfo>> {
        let (mut s, now) = self.lock();
        Ok(live(&mut s.blobs, &named(pool, id), now).map(|e| BlobInfo { size: e.value.size, complete: e.value.done }))
    }

    async fn reserve_media(
        &self,
        pool: &str,
        id: &str,
        user: i64,
        bytes: u64,
        budget: &MediaBudget,
        hold: Duration,
    ) -> HotResult<MediaGrant> {
        let (mut s, now) = self.lock();
        let ledger = &mut s.media;
        ledger.sweep(now);
        let key = named(pool, id);
        if let Some((_, until)) = ledger.reservations.get_mut(&key) {
            *until = deadline(now, hold);
            return Ok(MediaGrant::Granted);
        }
        if ledger.used.saturating_add(bytes) > budget.fleet_bytes {
            return Ok(MediaGrant::OverBudget);
        }
        if budget.user_bytes > 0 {
            let spent = ledger.users.get(&user).filter(|e| e.live(now)).map_or(0, |e| e.value);
            if spent.saturating_add(bytes) > budget.user_bytes {
                return Ok(MediaGrant::OverUserCap);
            }
            match ledger.users.get_mut(&user).filter(|e| e.live(now)) {
                Some(e) => e.value += bytes,
                None => {
                    ledger.users.insert(user, Expiring::new(bytes, now, budget.user_window));
                }
            }
        }
        ledger.used += bytes;
        ledger.reservations.insert(key, (bytes, deadline(now, hold)));
        Ok(MediaGrant::Granted)
    }

    async fn begin_blob(&self, pool: &str, id: &str, lease: Duration, ttl: Duration) -> HotResult<BlobStart> {
        let (mut s, now) = self.lock();
        let key = named(pool, id);
        if let Some(e) = live(&mut s.blobs, &key, now) {
            if e.value.done {
                return Ok(BlobStart::Complete);
            }
            if e.value.lease_until.is_some_and(|until| until > now) {
                return Ok(BlobStart::Busy);
            }
        }
        let blob = Blob { lease_until: Some(deadline(now, lease)), ..Blob::default() };
        s.blobs.insert(key, Expiring::new(blob, now, ttl));
        Ok(BlobStart::Write)
    }

    async fn append_blob(&self, pool: &str, id: &str, piece: Bytes, ttl: Duration) -> HotResult<()> {
        let (mut s, now) = self.lock();
        // As APPEND on Redis: a piece for a blob that is gone starts it again.
        let e = s.blobs.entry(named(pool, id)).or_insert_with(|| Expiring::new(Blob::default(), now, ttl));
        e.value.size += piece.len() as u64;
        e.value.pieces.push(piece);
        e.until = deadline(now, ttl);
        Ok(())
    }

    async fn finish_blob(&self, pool: &str, id: &str, size: u64, holder: &str, ttl: Duration) -> HotResult<()> {
        let (mut s, now) = self.lock();
        let e = s.blobs.entry(named(pool, id)).or_insert_with(|| Expiring::new(Blob::default(), now, ttl));
        e.value.size = size;
        e.value.done = true;
        e.value.lease_until = None;
        e.value.holders.insert(holder.to_string());
        e.until = deadline(now, ttl);
        Ok(())
    }

    async fn hold_blob(&self, pool: &str, id: &str, holder: &str, ttl: Duration) -> HotResult<bool> {
        let (mut s, now) = self.lock();
        let Some(e) = live(&mut s.blobs, &named(pool, id), now).filter(|e| e.value.done) else { return Ok(false) };
        e.value.holders.insert(holder.to_string());
        e.until = deadline(now, ttl);
        Ok(true)
    }

    async fn read_blob(&self, pool: &str, id: &str, offset: u64, len: u64) -> HotResult<Bytes> {
        let (mut s, now) = self.lock();
        let Some(e) = live(&mut s.blobs, &named(pool, id), now) else { return Ok(Bytes::new()) };
        let end = offset.saturating_add(len);
        let mut out = BytesMut::new();
        let mut at = 0u64;
        for piece in &e.value.pieces {
            let (start, stop) = (at, at + piece.len() as u64);
            at = stop;
            if stop <= offset {
                continue;
            }
            if start >= end {
                break;
            }
            let from = offset.saturating_sub(start) as usize;
            let to = (end.min(stop) - start) as usize;
            out.extend_from_slice(&piece[from..to]);
        }
        Ok(out.freeze())
    }

    async fn release_blob(&self, pool: &str, id: &str, holder: &str) -> HotResult<bool> {
        let (mut s, now) = self.lock();
        let key = named(pool, id);
        if let Some(e) = live(&mut s.blobs, &key, now) {
            e.value.holders.remove(holder);
            if !e.value.holders.is_empty() || !e.value.done {
                return Ok(false);
            }
        }
        s.blobs.remove(&key);
        s.media.release(&key);
        Ok(true)
    }

    async fn drop_blob(&self, pool: &str, id: &str) -> HotResult<()> {
        let (mut s, _) = self.lock();
        let key = named(pool, id);
        s.blobs.remove(&key);
        s.media.release(&key);
        Ok(())
    }

    async fn media_reserved(&self) -> HotResult<u64> {
        let (mut s, now) = self.lock();
        s.media.sweep(now);
        Ok(s.media.used)
    }
}
