//! Media blobs for cross-bot re-upload: the sending bot downloads the file, the receiving
//! bot's outbox uploads it (see [`Job::upload`](super::Job::upload)).

use std::time::Duration;

use bytes::Bytes;

use super::HotResult;

#[async_trait::async_trait]
pub trait Blobs: Send + Sync {
    async fn put_blob(&self, pool: &str, id: &str, bytes: Bytes, ttl: Duration) -> HotResult<()>;
    async fn get_blob(&self, pool: &str, id: &str) -> HotResult<Option<Bytes>>;
}
