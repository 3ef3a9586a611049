//! Small references in memory: a string with a deadline.

use std::time::Duration;

use super::{Expiring, MemoryHot, live, named};
use crate::hot::{HotResult, Refs};

#[async_trait::async_trait]
impl Refs for MemoryHot {
    async fn put_ref(&self, pool: &str, name: &str, value: &str, ttl: Duration) -> HotResult<()> {
        let (mut s, now) = self.lock();
        s.refs.insert(named(pool, name), Expiring::new(value.to_string(), now, ttl));
        Ok(())
    }

    async fn get_ref(&self, pool: &str, name: &str) -> HotResult<Option<String>> {
        let (mut s, now) = self.lock();
        Ok(live(&mut s.refs, &named(pool, name), now).map(|e| e.value.clone()))
    }

    async fn del_ref(&self, pool: &str, name: &str) -> HotResult<()> {
        let (mut s, _) = self.lock();
        s.refs.remove(&named(pool, name));
        Ok(())
    }
}
