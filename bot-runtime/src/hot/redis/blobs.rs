//! Media blobs on Redis: per blob a state hash, a byte string appended piece by piece and read
//! by `GETRANGE`, and a holder set, all under the pool's hash tag (`blob.lua`); the fleet's
//! media budget under its own tag (`media_budget.lua`).

use std::time::Duration;

use bytes::Bytes;

use super::{RedisHot, px, system_now_ms, unavailable};
use crate::hot::{BlobInfo, BlobStart, Blobs, HotError, HotResult, MediaBudget, MediaGrant};

impl RedisHot {
    fn blob_keys(&self, pool: &str, id: &str) -> [String; 3] {
        [self.keys.blob_meta(pool, id), self.keys.blob(pool, id), self.keys.blob_holders(pool, id)]
    }

    async fn blob_op(&self, pool: &str, id: &str, args: &[String]) -> HotResult<i64> {
        let mut conn = self.conn.clone();
        let mut call = self.blob.prepare_invoke();
        for k in self.blob_keys(pool, id) {
            call.key(k);
        }
        for a in args {
            call.arg(a);
        }
        call.invoke_async(&mut conn).await.map_err(unavailable)
    }

    async fn budget_op(&self, args: &[String], user: Option<i64>) -> HotResult<i64> {
        let mut conn = self.conn.clone();
        let mut call = self.media_budget.prepare_invoke();
        for k in self.keys.media_budget() {
            call.key(k);
        }
        if let Some(user) = user {
            call.key(self.keys.media_user(user));
        }
        for a in args {
            call.arg(a);
        }
        call.invoke_async(&mut conn).await.map_err(unavailable)
    }

    /// A blob's reservation is named by pool and blob: blob ids are unique within a pool only.
    fn reservation(pool: &str, id: &str) -> String {
        format!("{pool}|{id}")
    }

    async fn free_reservation(&self, pool: &str, id: &str) -> HotResult<()> {
        self.budget_op(&["release".into(), system_now_ms().to_string(), Self::reservation(pool, id)], None).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Blobs for RedisHot {
    async fn blob_info(&self, pool: &str, id: &str) -> HotResult<Option<BlobInfo>> {
        let mut conn = self.conn.clone();
        let [meta, data, _] = self.blob_keys(pool, id);
        let ((done, size), legacy): ((Option<String>, Option<u64>), u64) = redis::pipe()
            .cmd("HMGET")
            .arg(&meta)
            .arg("done")
            .arg("size")
            .cmd("STRLEN")
            .arg(&data)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(match (done.as_deref(), size) {
            (Some(done), Some(size)) => Some(BlobInfo { size, complete: done == "1" }),
            (Some(_), None) | (None, Some(_)) => return Err(HotError::Corrupt(format!("blob {id} has a partial state"))),
            // Release N wrote whole blobs with no state: complete as they are.
            (None, None) if legacy > 0 => Some(BlobInfo { size: legacy, complete: true }),
            (None, None) => None,
        })
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
        let now = system_now_ms();
        let args = [
            "reserve".to_string(),
            now.to_string(),
            Self::reservation(pool, id),
            bytes.to_string(),
            now.saturating_add(px(hold)).to_string(),
            budget.fleet_bytes.to_string(),
            budget.user_bytes.to_string(),
            px(budget.user_window).to_string(),
        ];
        Ok(match self.budget_op(&args, Some(user)).await? {
            1 => MediaGrant::Granted,
            0 => MediaGrant::OverBudget,
            _ => MediaGrant::OverUserCap,
        })
    }

    async fn begin_blob(&self, pool: &str, id: &str, lease: Duration, ttl: Duration) -> HotResult<BlobStart> {
        let args = ["begin".to_string(), system_now_ms().to_string(), px(lease).to_string(), px(ttl).to_string()];
        Ok(match self.blob_op(pool, id, &args).await? {
            0 => BlobStart::Write,
            1 => BlobStart::Complete,
            _ => BlobStart::Busy,
        })
    }

    async fn append_blob(&self, pool: &str, id: &str, piece: Bytes, ttl: Duration) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let [_, data, _] = self.blob_keys(pool, id);
        let _: () = redis::pipe()
            .cmd("APPEND")
            .arg(&data)
            .arg(piece.as_ref())
            .ignore()
            .cmd("PEXPIRE")
            .arg(&data)
            .arg(px(ttl))
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn finish_blob(&self, pool: &str, id: &str, size: u64, holder: &str, ttl: Duration) -> HotResult<()> {
        self.blob_op(pool, id, &["finish".into(), size.to_string(), holder.into(), px(ttl).to_string()]).await?;
        Ok(())
    }

    async fn hold_blob(&self, pool: &str, id: &str, holder: &str, ttl: Duration) -> HotResult<bool> {
        Ok(self.blob_op(pool, id, &["hold".into(), holder.into(), px(ttl).to_string()]).await? == 1)
    }

    async fn read_blob(&self, pool: &str, id: &str, offset: u64, len: u64) -> HotResult<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let mut conn = self.conn.clone();
        let end = offset.saturating_add(len - 1);
        let v: Vec<u8> =
            redis::cmd("GETRANGE").arg(self.keys.blob(pool, id)).arg(offset).arg(end).query_async(&mut conn).await.map_err(unavailable)?;
        Ok(Bytes::from(v))
    }

    async fn release_blob(&self, pool: &str, id: &str, holder: &str) -> HotResult<bool> {
        let deleted = self.blob_op(pool, id, &["release".into(), holder.into()]).await? == 1;
        // Another slot (the budget is the fleet's): a crash between the two leaves the
        // reservation to its deadline.
        if deleted {
            self.free_reservation(pool, id).await?;
        }
        Ok(deleted)
    }

    async fn drop_blob(&self, pool: &str, id: &str) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("UNLINK").arg(&self.blob_keys(pool, id)[..]).query_async(&mut conn).await.map_err(unavailable)?;
        self.free_reservation(pool, id).await
    }

    async fn media_reserved(&self) -> HotResult<u64> {
        Ok(self.budget_op(&["used".into(), system_now_ms().to_string()], None).await?.max(0) as u64)
    }
}
