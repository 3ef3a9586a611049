//! Small references on Redis: a string key each (with PX) for saved ids; the reply map in
//! bucket hashes (see `hot/refs.rs`).

use std::time::Duration;

use super::{RedisHot, px, unavailable};
use crate::hot::refs::{reply_bucket, reply_of, reply_value};
use crate::hot::{HotError, HotResult, MessageRef, Refs, reply_ref};

#[async_trait::async_trait]
impl Refs for RedisHot {
    async fn put_ref(&self, pool: &str, name: &str, value: &str, ttl: Duration) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(self.keys.reference(pool, name))
            .arg(value)
            .arg("PX")
            .arg(px(ttl))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_ref(&self, pool: &str, name: &str) -> HotResult<Option<String>> {
        if let Some(of) = reply_of(name) {
            return self.get_reply(pool, &of).await;
        }
        let mut conn = self.conn.clone();
        let v: Option<Vec<u8>> =
            redis::cmd("GET").arg(self.keys.reference(pool, name)).query_async(&mut conn).await.map_err(unavailable)?;
        utf8(name, v)
    }

    async fn del_ref(&self, pool: &str, name: &str) -> HotResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("DEL").arg(self.keys.reference(pool, name)).query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn put_reply(&self, pool: &str, a: &MessageRef, b: &MessageRef, ttl: Duration) -> HotResult<()> {
        // Both directions in one round trip; each bucket lives `ttl` after its last write.
        let mut pipe = redis::pipe();
        self.pipe_reply(&mut pipe, pool, a, b, ttl);
        let mut conn = self.conn.clone();
        let _: () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn get_reply(&self, pool: &str, of: &MessageRef) -> HotResult<Option<String>> {
        let (bucket, field) = reply_bucket(of.message_id);
        let name = reply_ref(of);
        // Release N kept each entry in a key of its own (6 h): read it too, in the same round
        // trip, until those have expired (drop this once no release-N replica runs).
        let mut conn = self.conn.clone();
        let (hashed, keyed): (Option<Vec<u8>>, Option<Vec<u8>>) = redis::pipe()
            .cmd("HGET")
            .arg(self.keys.reply_bucket(pool, &of.member, bucket))
            .arg(field)
            .cmd("GET")
            .arg(self.keys.reference(pool, &name))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        utf8(&name, hashed.or(keyed))
    }
}

fn utf8(name: &str, v: Option<Vec<u8>>) -> HotResult<Option<String>> {
    v.map(|b| String::from_utf8(b).map_err(|_| HotError::Corrupt(format!("ref {name} is not UTF-8")))).transpose()
}

impl RedisHot {
    /// Adds the writes of one reply-map pair (both directions) to `pipe`.
    pub(super) fn pipe_reply(&self, pipe: &mut redis::Pipeline, pool: &str, a: &MessageRef, b: &MessageRef, ttl: Duration) {
        for (of, other) in [(a, b), (b, a)] {
            let (bucket, field) = reply_bucket(of.message_id);
            let key = self.keys.reply_bucket(pool, &of.member, bucket);
            pipe.cmd("HSET").arg(&key).arg(field).arg(reply_value(other)).ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(px(ttl)).ignore();
        }
    }
}
