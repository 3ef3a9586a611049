//! Leases in memory: the holder with a deadline.

use std::time::Duration;

use super::{Expiring, MemoryHot, deadline, live, named};
use crate::hot::{HotResult, Leases};

#[async_trait::async_trait]
impl Leases for MemoryHot {
    async fn lease(&self, pool: &str, name: &str, holder: &str, ttl: Duration) -> HotResult<bool> {
        let (mut s, now) = self.lock();
        let key = named(pool, name);
        match live(&mut s.leases, &key, now) {
            Some(e) if e.value == holder => {
                e.until = deadline(now, ttl);
                Ok(true)
            }
            Some(_) => Ok(false),
            None => {
                s.leases.insert(key, Expiring::new(holder.to_string(), now, ttl));
                Ok(true)
            }
        }
    }

    async fn unlease(&self, pool: &str, name: &str, holder: &str) -> HotResult<()> {
        let (mut s, now) = self.lock();
        let key = named(pool, name);
        if live(&mut s.leases, &key, now).is_some_and(|e| e.value == holder) {
            s.leases.remove(&key);
        }
        Ok(())
    }
}
