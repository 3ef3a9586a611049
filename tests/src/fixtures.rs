//! Test fixtures: each test gets its own Postgres database and its own Redis key prefix, so
//! the whole suite runs in parallel without tests seeing each other's data.
//!
//! Settings come from DATABASE_URL and REDIS_URL, defaulting to the local services
//! (`postgres://postgres@127.0.0.1:5432/postgres`, `redis://127.0.0.1:6379`).

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use redis::aio::ConnectionManager;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
const DB_PREFIX: &str = "botfleet_test_";

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| DEFAULT_REDIS_URL.to_string())
}

/// A short tag of this machine, so a sweep only touches databases created here (several
/// machines may share one Postgres).
fn host_tag() -> String {
    let host = std::fs::read_to_string("/etc/hostname").ok().or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_default();
    // FNV-1a: tiny, stable across runs and Rust versions.
    let hash = host.trim().bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
    format!("{:06x}", hash & 0xff_ffff)
}

/// A name no other test of this or any concurrent run uses: host, process id, a counter, noise.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}_{}_{}_{:08x}", host_tag(), std::process::id(), n, rand::random::<u32>())
}

/// Database names here are ours (a fixed prefix plus digits and hex), never input, so the
/// DDL that has to interpolate them is safe.
fn ddl(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

/// A fresh, empty Postgres database, dropped when the value is dropped.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    /// A URL for this database, for code under test that reads DATABASE_URL.
    pub url: String,
    pub pool: PgPool,
    admin: PgConnectOptions,
    dropped: bool,
}

impl TestDb {
    pub async fn create() -> anyhow::Result<Self> {
        let admin_url = database_url();
        let admin = PgConnectOptions::from_str(&admin_url).with_context(|| "DATABASE_URL is not a valid Postgres URL")?;
        let mut conn = admin.connect().await.with_context(|| "cannot reach Postgres (is it running? see DATABASE_URL)")?;
        sweep_abandoned(&mut conn).await;
        let name = format!("{DB_PREFIX}{}", unique_suffix());
        sqlx::query(ddl(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        conn.close().await.ok();
        let mut url = reqwest::Url::parse(&admin_url).with_context(|| "DATABASE_URL is not a URL")?;
        url.set_path(&format!("/{name}"));
        let pool = PgPoolOptions::new().max_connections(8).connect_with(admin.clone().database(&name)).await?;
        Ok(Self { name, url: url.to_string(), pool, admin, dropped: false })
    }

    /// Drops the database now (Drop does it too, from a helper thread).
    pub async fn drop_db(mut self) -> anyhow::Result<()> {
        self.pool.close().await;
        drop_database(&self.admin, &self.name).await?;
        self.dropped = true;
        Ok(())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which can't block on its own work:
        // a short-lived thread with its own runtime does the cleanup.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = rt.block_on(drop_database(&admin, &name));
            }
        })
        .join();
    }
}

async fn drop_database(admin: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    let mut conn = admin.connect().await?;
    sqlx::query(ddl(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))).execute(&mut conn).await?;
    conn.close().await.ok();
    Ok(())
}

/// Drops test databases left behind by killed runs on this machine (their process is gone).
async fn sweep_abandoned(conn: &mut sqlx::PgConnection) {
    let here = format!("{DB_PREFIX}{}_", host_tag());
    let names: Vec<(String,)> = sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'botfleet\\_test\\_%'")
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default();
    for (name,) in names {
        let Some(rest) = name.strip_prefix(&here) else { continue };
        let pid = rest.split('_').next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = sqlx::query(ddl(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))).execute(&mut *conn).await;
        }
    }
}

/// A Redis connection plus a key prefix of its own; keys under the prefix are deleted on drop.
pub struct TestRedis {
    pub url: String,
    /// Every key a test writes starts with this (`test:<unique>:`).
    pub prefix: String,
    pub conn: ConnectionManager,
}

impl std::fmt::Debug for TestRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRedis").field("url", &self.url).field("prefix", &self.prefix).finish()
    }
}

impl TestRedis {
    pub async fn create() -> anyhow::Result<Self> {
        let url = redis_url();
        let client = redis::Client::open(url.as_str()).with_context(|| "REDIS_URL is not a valid Redis URL")?;
        let conn = client.get_connection_manager().await.with_context(|| "cannot reach Redis (is it running? see REDIS_URL)")?;
        Ok(Self { url, prefix: format!("test:{}:", unique_suffix()), conn })
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Deletes every key under the prefix.
    pub async fn cleanup(&self) -> anyhow::Result<u64> {
        delete_prefix(&self.url, &self.prefix).await
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = rt.block_on(delete_prefix(&url, &prefix));
            }
        })
        .join();
    }
}

async fn delete_prefix(url: &str, prefix: &str) -> anyhow::Result<u64> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    let mut deleted = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(format!("{prefix}*")).arg("COUNT").arg(1000).query_async(&mut conn).await?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}
