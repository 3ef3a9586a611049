//! Media blobs in memory: bytes with a deadline.

use std::time::Duration;

use bytes::Bytes;

use super::{Expiring, MemoryHot, live, named};
use crate::hot::{Blobs, HotResult};

#[async_trait::async_trait]
impl Blobs for MemoryHot {
    async fn put_blob(&self, pool: &str, id: &str, bytes: Bytes, ttl: Duration) -> HotResult<()> {
        let (mut s, now) = self.lock();
        s.blobs.insert(named(pool, id), Expiring::new(bytes, now, ttl));
        Ok(())
    }

    async fn get_blob(&self, pool: &str, id: &str) -> HotResult<Option<Bytes>> {
        let (mut s, now) = self.lock();
        Ok(live(&mut s.blobs, &named(pool, id), now).map(|e| e.value.clone()))
    }
}
