//! [`SqlStore`]: [`Users`], [`Safety`] and [`Sessions`] over sqlx's `Any` driver — one pool,
//! the same SQL text on PostgreSQL and SQLite.
//!
//! The rules that keep one query text valid on both databases (checked against sqlx 0.9's
//! sources):
//!
//! * Placeholders are `$1, $2, …`, numbered in order of first appearance. They are Postgres'
//!   native form; SQLite reads `$1` as a named parameter and sqlx's SQLite driver binds a
//!   parameter named `$N` to the N-th argument (so a number may even appear twice).
//! * Only types the Any driver maps on both sides: integers (BIGINT / SMALLINT on Postgres,
//!   INTEGER on SQLite) and TEXT. Flags are stored as 0/1 integers: the Any driver maps a
//!   SQLite value by its storage class (a boolean comes back as an integer, which `bool`
//!   cannot decode from) and refuses a column *declared* BOOLEAN on SQLite outright. Sums are
//!   `CAST(… AS BIGINT)`: Postgres' `SUM(bigint)` is NUMERIC, which Any cannot decode.
//! * `INSERT … ON CONFLICT … DO NOTHING / DO UPDATE` and `RETURNING` exist on both
//!   (SQLite ≥ 3.35; sqlx bundles a much newer one).
//! * Every query is a `&'static str` (no `AssertSqlSafe`): values only ever travel as binds.
//!
//! Idempotency (Telegram redelivers updates; several replicas may handle the same member):
//! `user_or_create`, `start_session` and `record_block` are an `INSERT … ON CONFLICT DO
//! NOTHING` on a unique key, followed by a read when the insert found the row already there.
//! On Postgres a conflicting insert waits for the concurrent inserter's transaction, so the
//! read that follows always sees the winner's row; on SQLite writes are serialized.

use std::borrow::Cow;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::{Any, AnyConnection, AnyPool, Executor as _, Row as _, SqlSafeStr as _};

use super::{EndReason, Funnel, Person, Safety, Session, Sessions, Stage, StoreError, StoreResult, User, UserStats, Users};
use crate::matching::{Gender, Member};

/// Connections per replica to Postgres unless `DATABASE_POOL_SIZE` says otherwise (most
/// queries are one short statement). DEPLOY.md gives the fleet's connection budget.
pub const POSTGRES_MAX_CONNECTIONS: u32 = 10;
/// Connections to an SQLite file: readers run in parallel under WAL, writers take turns.
const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// How long a query waits for a pooled connection before the store reports itself unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// A pooled Postgres connection idle at least this long is pinged before it is used again.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// The migrations compiled into the binary: (version, description, SQL), one list per dialect.
/// The files under `migrations/` are the source; a test checks that these lists match them
/// (version, description and checksum as sqlx would resolve the directory).
///
/// Why not `sqlx::migrate!`: in sqlx 0.9 that macro is only compiled with sqlx's `macros`
/// feature, which the workspace does not enable (turning it on changes the shared sqlx
/// features, rebuilding sqlx and everything above it, for one macro). `Migrator::with_migrations`
/// (public API) plus `include_str!` embeds the same files with the same checksums, so a
/// database migrated by either (or by `sqlx migrate run`) validates against the other.
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "chat core", include_str!("../../../migrations/postgres/0001_chat_core.sql")),
    (2, "people", include_str!("../../../migrations/postgres/0002_people.sql")),
    (3, "money", include_str!("../../../migrations/postgres/0003_money.sql")),
    (4, "caps refunds", include_str!("../../../migrations/postgres/0004_caps_refunds.sql")),
    (5, "mirror", include_str!("../../../migrations/postgres/0005_mirror.sql")),
    (6, "locks", include_str!("../../../migrations/postgres/0006_locks.sql")),
    (7, "referrals", include_str!("../../../migrations/postgres/0007_referrals.sql")),
    (8, "vip notices", include_str!("../../../migrations/postgres/0008_vip_notices.sql")),
    (9, "reconcile", include_str!("../../../migrations/postgres/0009_reconcile.sql")),
    (10, "subscriptions", include_str!("../../../migrations/postgres/0010_subscriptions.sql")),
    (11, "admin", include_str!("../../../migrations/postgres/0011_admin.sql")),
    (12, "admin keys", include_str!("../../../migrations/postgres/0012_admin_keys.sql")),
    (13, "admin moderation", include_str!("../../../migrations/postgres/0013_admin_moderation.sql")),
    (14, "admin broadcasts", include_str!("../../../migrations/postgres/0014_admin_broadcasts.sql")),
    (15, "broadcast outcomes", include_str!("../../../migrations/postgres/0015_broadcast_outcomes.sql")),
    (16, "analytics", include_str!("../../../migrations/postgres/0016_analytics.sql")),
    (17, "admin review balance", include_str!("../../../migrations/postgres/0017_admin_review_balance.sql")),
    (18, "fleet admins", include_str!("../../../migrations/postgres/0018_fleet_admins.sql")),
    (19, "paid broadcasts", include_str!("../../../migrations/postgres/0019_paid_broadcasts.sql")),
    (20, "admin counts", include_str!("../../../migrations/postgres/0020_admin_counts.sql")),
];
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "chat core", include_str!("../../../migrations/sqlite/0001_chat_core.sql")),
    (2, "people", include_str!("../../../migrations/sqlite/0002_people.sql")),
    (3, "money", include_str!("../../../migrations/sqlite/0003_money.sql")),
    (4, "caps refunds", include_str!("../../../migrations/sqlite/0004_caps_refunds.sql")),
    (5, "mirror", include_str!("../../../migrations/sqlite/0005_mirror.sql")),
    (6, "locks", include_str!("../../../migrations/sqlite/0006_locks.sql")),
    (7, "referrals", include_str!("../../../migrations/sqlite/0007_referrals.sql")),
    (8, "vip notices", include_str!("../../../migrations/sqlite/0008_vip_notices.sql")),
    (9, "reconcile", include_str!("../../../migrations/sqlite/0009_reconcile.sql")),
    (10, "subscriptions", include_str!("../../../migrations/sqlite/0010_subscriptions.sql")),
    (11, "admin", include_str!("../../../migrations/sqlite/0011_admin.sql")),
    (12, "admin keys", include_str!("../../../migrations/sqlite/0012_admin_keys.sql")),
    (13, "admin moderation", include_str!("../../../migrations/sqlite/0013_admin_moderation.sql")),
    (14, "admin broadcasts", include_str!("../../../migrations/sqlite/0014_admin_broadcasts.sql")),
    (15, "broadcast outcomes", include_str!("../../../migrations/sqlite/0015_broadcast_outcomes.sql")),
    (16, "analytics", include_str!("../../../migrations/sqlite/0016_analytics.sql")),
    (17, "admin review balance", include_str!("../../../migrations/sqlite/0017_admin_review_balance.sql")),
    (18, "fleet admins", include_str!("../../../migrations/sqlite/0018_fleet_admins.sql")),
    (19, "paid broadcasts", include_str!("../../../migrations/sqlite/0019_paid_broadcasts.sql")),
    (20, "admin counts", include_str!("../../../migrations/sqlite/0020_admin_counts.sql")),
];

/// Serializes `migrate` on SQLite within the process. sqlx's SQLite migrator does not lock
/// (its `lock` is a no-op), and two connections applying the same migration at once would
/// both try to create the tables. The embedded database belongs to one process, so an
/// in-process lock is enough.
static SQLITE_MIGRATE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Which database a [`SqlStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The backend of a database URL (`postgres://…`, `postgresql://…`, `sqlite:…`).
    pub fn of_url(url: &str) -> StoreResult<Backend> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            // Never echo the URL: it may carry a password.
            let scheme = url.split_once(':').map_or("", |(s, _)| s);
            Err(StoreError::Unavailable(format!("unsupported database URL scheme {scheme:?} (expected postgres:// or sqlite:)")))
        }
    }
}

/// The SQL store: a pool of `Any` connections to Postgres or SQLite.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

impl SqlStore {
    /// Connects to `postgres://…` or `sqlite://path?mode=rwc` / `sqlite::memory:`. Checks the
    /// database is reachable (one connection is opened now); does not migrate.
    ///
    /// SQLite files get WAL (readers do not block the writer) and a busy timeout (a writer
    /// waits for another instead of failing). `sqlite::memory:` gets exactly one connection,
    /// kept for the life of the pool: with the Any driver every new connection to
    /// `sqlite::memory:` opens a *different* empty database (sqlx names each one afresh), and
    /// an in-memory database vanishes with its last connection.
    pub async fn connect(url: &str) -> StoreResult<SqlStore> {
        Self::connect_sized(url, POSTGRES_MAX_CONNECTIONS).await
    }

    /// [`SqlStore::connect`] with at most `postgres_connections` connections to Postgres
    /// (`DATABASE_POOL_SIZE`; the fleet's budget is in DEPLOY.md). SQLite ignores it.
    pub async fn connect_sized(url: &str, postgres_connections: u32) -> StoreResult<SqlStore> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let options = AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        let options = match backend {
            // sqlx pings every connection before handing it out by default: a round trip to
            // Postgres before each query (callgrind: ≈ 14,000 instructions of the runtime per
            // relayed message, and Postgres' own work). Only a connection idle long enough to
            // have been cut (a restart, a proxy's idle timeout) is pinged now; a hot one that
            // broke fails its query, the update is retried, and sqlx drops the connection.
            Backend::Postgres => {
                options.max_connections(postgres_connections.max(1)).test_before_acquire(false).before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for < PING_IF_IDLE_FOR {
                            return Ok(true);
                        }
                        use sqlx::Connection as _;
                        conn.ping().await.map(|()| true)
                    })
                })
            }
            Backend::Sqlite if sqlite_in_memory(url) => options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(|conn, _| sqlite_setup(conn, false)),
            Backend::Sqlite => options.max_connections(SQLITE_MAX_CONNECTIONS).after_connect(|conn, _| sqlite_setup(conn, true)),
        };
        // `connect` opens the first connection before returning, so on SQLite the switch to
        // WAL happens on a lone connection (it needs an exclusive lock that the busy timeout
        // does not wait for); on later connections the pragma finds WAL already set.
        let pool = options.connect(url).await.map_err(db_err)?;
        Ok(SqlStore { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for queries outside the store traits (administration, tests).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The embedded migrations of a backend: the files of `migrations/postgres` or
    /// `migrations/sqlite`, compiled in.
    ///
    /// Migrations a database has but this binary does not know are tolerated
    /// (`ignore_missing`): during a rolling update the new release migrates first, and a
    /// replica of the previous release that restarts meanwhile must still start. So every
    /// migration must keep the previous release working (add tables and nullable columns;
    /// drop things one release later). A changed migration file is still refused (checksum).
    pub fn migrator(backend: Backend) -> Migrator {
        let files = match backend {
            Backend::Postgres => POSTGRES_MIGRATIONS,
            Backend::Sqlite => SQLITE_MIGRATIONS,
        };
        let mut migrator = Migrator::with_migrations(
            files
                .iter()
                .map(|&(version, description, sql)| {
                    // As sqlx resolves a directory: a leading `-- no-transaction` opts out of the transaction.
                    let no_tx = sql.starts_with("-- no-transaction");
                    Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, sql.into_sql_str(), no_tx)
                })
                .collect(),
        );
        migrator.set_ignore_missing(true);
        migrator
    }

    /// Applies the pending migrations of this backend; a no-op when there are none. Safe to
    /// call from every replica at start-up, at the same time.
    ///
    /// This goes through the `Any` connection itself: sqlx 0.9 implements `Migrate` for
    /// `AnyConnection` by delegating every step (lock, bookkeeping table, apply) to the
    /// underlying Postgres or SQLite connection, so no second, typed pool is needed.
    ///
    /// * Postgres: sqlx's migrator holds `pg_advisory_lock` (keyed by the database name) from
    ///   before it reads `_sqlx_migrations` until after the last migration; other replicas wait
    ///   on the lock, then find nothing left to apply. Each migration runs in a transaction
    ///   with its bookkeeping row. The lock is session-level and sqlx does not release it when
    ///   a migration fails, so migrating uses a one-connection pool of its own, closed
    ///   afterwards (closing the connection releases the lock), never a connection that goes
    ///   back to the store's pool. (A pool rather than a bare `&mut AnyConnection`: with the
    ///   latter, `Migrator::run`'s `Acquire` bound makes the future fail the `Send` check of
    ///   `tokio::spawn` — "implementation of `Acquire` is not general enough".)
    /// * SQLite: sqlx's migrator does not lock; an in-process mutex serializes `migrate`.
    pub async fn migrate(&self) -> StoreResult<()> {
        let migrator = Self::migrator(self.backend);
        match self.backend {
            Backend::Postgres => {
                let options = (*self.pool.connect_options()).clone();
                let pool = AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(db_err)?;
                let result = migrator.run(&pool).await;
                pool.close().await;
                result.map_err(migrate_err)
            }
            Backend::Sqlite => {
                let _serial = SQLITE_MIGRATE_LOCK.lock().await;
                migrator.run(&self.pool).await.map_err(migrate_err)
            }
        }
    }
}

/// Whether an SQLite URL names an in-memory database (as sqlx parses it).
fn sqlite_in_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|p| p == "mode=memory")
}

/// Per-connection SQLite settings. The Any driver builds SQLite connections from the URL
/// alone, so these cannot be set on `SqliteConnectOptions`; a pragma on each new connection
/// does it. (Foreign keys are on by default in sqlx.)
fn sqlite_setup(conn: &mut AnyConnection, file: bool) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        // A writer waits up to 5 s for another writer instead of failing with SQLITE_BUSY.
        conn.execute("PRAGMA busy_timeout = 5000").await?;
        if file {
            // WAL is a property of the file (persistent); NORMAL is durable enough under WAL
            // (a power cut may lose the last commits, never corrupt the database).
            conn.execute("PRAGMA journal_mode = WAL").await?;
            conn.execute("PRAGMA synchronous = NORMAL").await?;
        }
        Ok(())
    })
}

/// A database error: decoding problems mean unexpected data, everything else (I/O, pool,
/// server errors) an unavailable database.
pub(super) fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(e.to_string()),
        // The server answered and refused the statement: retrying later helps only when the
        // refusal is about the moment (a lost connection, a serialization failure or deadlock,
        // too many connections, a shutdown, a busy SQLite file). Anything else (a constraint
        // or CHECK violation, bad input) fails the same way every time, so it must count
        // toward giving up (the lifecycle policy) rather than be retried as an outage.
        sqlx::Error::Database(db) if !transient_database_error(db.code().as_deref()) => {
            StoreError::Corrupt(format!("the database refused the statement: {db}"))
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// Whether a database error code names a passing condition: Postgres SQLSTATE classes 08
/// (connection), 40 (transaction rollback: serialization, deadlock), 53 (insufficient
/// resources), 57 (operator intervention), 58 (system error); SQLite's BUSY (5) and LOCKED (6)
/// with their extended codes. No code: assume it passes.
fn transient_database_error(code: Option<&str>) -> bool {
    let Some(code) = code else { return true };
    // Postgres: a SQLSTATE is always five characters; its class is the first two.
    if code.len() == 5 {
        return matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58"));
    }
    // SQLite: an extended result code, whose primary code is the low byte.
    code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
}

fn migrate_err(e: MigrateError) -> StoreError {
    StoreError::Migration(e.to_string())
}

pub(super) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// One column of a row, decoding errors reported as [`StoreError::Corrupt`].
pub(super) fn col<'r, T>(row: &'r sqlx::any::AnyRow, name: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get::<T, _>(name).map_err(|e| corrupt(format_args!("column {name}: {e}")))
}

fn count(row: &sqlx::any::AnyRow, name: &str) -> StoreResult<u64> {
    let n: i64 = col(row, name)?;
    u64::try_from(n).map_err(|_| corrupt(format_args!("negative {name} {n}")))
}

/// A stored 0/1 flag.
fn flag(value: i64, name: &str) -> StoreResult<bool> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(corrupt(format_args!("{name} = {other}, expected 0 or 1"))),
    }
}

fn flag_value(b: bool) -> i16 {
    i16::from(b)
}

fn gender(code: Option<String>, name: &str) -> StoreResult<Option<Gender>> {
    code.map(|c| Gender::parse(&c).ok_or_else(|| corrupt(format_args!("{name} {c:?}")))).transpose()
}

fn member(row: &sqlx::any::AnyRow, bot: &str, user: &str) -> StoreResult<Member> {
    Ok(Member::new(col::<String>(row, bot)?, col::<i64>(row, user)?))
}

/// A member's columns, read through `users u LEFT JOIN persons p`: the restriction is the
/// person's (the later of `persons` and the member's own column, which the previous release
/// still writes during a rolling update).
macro_rules! user_columns {
    () => {
        "u.bot, u.user_id, u.language, u.stage, u.gender, u.age, u.wants, u.vip_until_ms, \
         CASE WHEN p.restricted_until_ms IS NULL OR u.restricted_until_ms > p.restricted_until_ms \
              THEN u.restricted_until_ms ELSE p.restricted_until_ms END AS restricted_until_ms, \
         u.reachable, u.created_ms, u.updated_ms, u.username, u.active_day"
    };
}

macro_rules! session_columns {
    () => {
        "id, a_bot, a_user, b_bot, b_user, started_ms, ended_ms, end_reason, ended_by_bot, ended_by_user"
    };
}

fn user_from_row(row: &sqlx::any::AnyRow) -> StoreResult<User> {
    let stage: String = col(row, "stage")?;
    let stage = Stage::parse(&stage).ok_or_else(|| corrupt(format_args!("stage {stage:?}")))?;
    let age = col::<Option<i64>>(row, "age")?.map(|a| u8::try_from(a).map_err(|_| corrupt(format_args!("age {a}")))).transpose()?;
    Ok(User {
        bot: col(row, "bot")?,
        user_id: col(row, "user_id")?,
        language: col(row, "language")?,
        stage,
        gender: gender(col(row, "gender")?, "gender")?,
        age,
        wants: gender(col(row, "wants")?, "wants")?,
        vip_until_ms: col(row, "vip_until_ms")?,
        restricted_until_ms: col(row, "restricted_until_ms")?,
        reachable: flag(col(row, "reachable")?, "reachable")?,
        created_ms: col(row, "created_ms")?,
        updated_ms: col(row, "updated_ms")?,
        username: col(row, "username")?,
        active_day: col::<Option<i64>>(row, "active_day")?,
    })
}

fn session_from_row(row: &sqlx::any::AnyRow) -> StoreResult<Session> {
    let ended_by = match (col::<Option<String>>(row, "ended_by_bot")?, col::<Option<i64>>(row, "ended_by_user")?) {
        (Some(bot), Some(user)) => Some(Member::new(bot, user)),
        (None, None) => None,
        _ => return Err(corrupt("ended_by_bot and ended_by_user: only one is set")),
    };
    Ok(Session {
        id: col(row, "id")?,
        a: member(row, "a_bot", "a_user")?,
        b: member(row, "b_bot", "b_user")?,
        started_ms: col(row, "started_ms")?,
        ended_ms: col(row, "ended_ms")?,
        end_reason: col(row, "end_reason")?,
        ended_by,
    })
}

impl SqlStore {
    /// Inserts the member unless present; true if this call created it. The person row comes
    /// first (first seen is the first contact with any bot, kept forever).
    async fn insert_user_if_absent(&self, bot: &str, user_id: i64, language: &str, now_ms: i64) -> StoreResult<bool> {
        sqlx::query("INSERT INTO persons (user_id, first_seen_ms, updated_ms) VALUES ($1, $2, $2) ON CONFLICT (user_id) DO NOTHING")
            .bind(user_id)
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        let done = sqlx::query(
            // A ban on this bot (admin_bans) outlives /delete_me: a member created again carries it.
            "INSERT INTO users (bot, user_id, language, stage, reachable, created_ms, updated_ms, restricted_until_ms) \
             VALUES ($1, $2, $3, $4, 1, $5, $5, (SELECT b.until_ms FROM admin_bans b WHERE b.bot = $1 AND b.user_id = $2)) \
             ON CONFLICT (bot, user_id) DO NOTHING",
        )
        .bind(bot)
        .bind(user_id)
        .bind(language)
        .bind(Stage::Terms.as_str())
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    /// See [`Users::adopt_legacy_bot`]. Adopts the rows the previous release wrote under the bot's bare name (`alpha`) for the
    /// bot's namespaced id (`team-a/alpha`). Idempotent and safe from every replica at once
    /// (each statement re-checks its WHERE under the row lock; a second run finds nothing), so
    /// it runs at every start: rows an old replica wrote during the rollout are adopted by the
    /// next start. Where both forms of a row exist (a user who wrote to an old and a new
    /// replica during the rollout), the namespaced row wins and the bare one is dropped.
    /// Returns how many rows were adopted.
    async fn adopt_legacy_bot_rows(&self, name: &str, id: &str) -> StoreResult<u64> {
        if name == id || name.contains('/') {
            return Ok(0);
        }
        const STEPS: &[&str] = &[
            // A restriction release N wrote on a member row (it knows no persons table) goes to
            // the person first: the row may be dropped below when both forms exist.
            "INSERT INTO persons (user_id, first_seen_ms, restricted_until_ms, updated_ms) \
             SELECT user_id, MIN(created_ms), MAX(restricted_until_ms), MAX(updated_ms) FROM users \
             WHERE (bot = $1 OR bot = $2) AND restricted_until_ms IS NOT NULL GROUP BY user_id \
             ON CONFLICT (user_id) DO UPDATE SET restricted_until_ms = CASE \
               WHEN persons.restricted_until_ms IS NULL OR excluded.restricted_until_ms > persons.restricted_until_ms \
               THEN excluded.restricted_until_ms ELSE persons.restricted_until_ms END",
            "UPDATE users SET bot = $2 WHERE bot = $1 \
             AND NOT EXISTS (SELECT 1 FROM users n WHERE n.bot = $2 AND n.user_id = users.user_id)",
            "DELETE FROM users WHERE bot = $1",
            "UPDATE blocks SET by_bot = $2 WHERE by_bot = $1 AND NOT EXISTS (SELECT 1 FROM blocks n \
             WHERE n.by_bot = $2 AND n.by_user = blocks.by_user AND n.other_bot = blocks.other_bot AND n.other_user = blocks.other_user)",
            "DELETE FROM blocks WHERE by_bot = $1",
            "UPDATE blocks SET other_bot = $2 WHERE other_bot = $1 AND NOT EXISTS (SELECT 1 FROM blocks n \
             WHERE n.by_bot = blocks.by_bot AND n.by_user = blocks.by_user AND n.other_bot = $2 AND n.other_user = blocks.other_user)",
            "DELETE FROM blocks WHERE other_bot = $1",
            "UPDATE reports SET by_bot = $2 WHERE by_bot = $1",
            "UPDATE reports SET other_bot = $2 WHERE other_bot = $1",
            "UPDATE chat_sessions SET a_bot = $2 WHERE a_bot = $1",
            "UPDATE chat_sessions SET b_bot = $2 WHERE b_bot = $1",
            "UPDATE chat_sessions SET ended_by_bot = $2 WHERE ended_by_bot = $1",
            "UPDATE ratings SET rater_bot = $2 WHERE rater_bot = $1",
            "UPDATE ratings SET rated_bot = $2 WHERE rated_bot = $1",
        ];
        let mut adopted = 0;
        for step in STEPS {
            let done = sqlx::query(*step).bind(name).bind(id).execute(&self.pool).await.map_err(db_err)?;
            if step.starts_with("UPDATE") {
                adopted += done.rows_affected();
            }
        }
        Ok(adopted)
    }
}

#[async_trait::async_trait]
impl Users for SqlStore {
    async fn user(&self, bot: &str, user_id: i64) -> StoreResult<Option<User>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users u LEFT JOIN persons p ON p.user_id = u.user_id WHERE u.bot = $1 AND u.user_id = $2"
        ))
        .bind(bot)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_or_create(&self, bot: &str, user_id: i64, language: &str, now_ms: i64) -> StoreResult<User> {
        // The common case (a known user) is one read. A new user: insert unless someone
        // (a retry, a concurrent update, another replica) just did, then read the winner's row.
        // A concurrent delete_user can remove the row between the two steps: try again.
        for attempt in 0..4 {
            if let Some(user) = self.user(bot, user_id).await? {
                return Ok(user);
            }
            if attempt < 3 {
                self.insert_user_if_absent(bot, user_id, language, now_ms).await?;
            }
        }
        Err(StoreError::Unavailable(format!("user {bot}:{user_id} keeps disappearing while being created")))
    }

    async fn save_profile(&self, user: &User) -> StoreResult<()> {
        sqlx::query(
            "UPDATE users SET language = $1, stage = $2, gender = $3, age = $4, wants = $5, updated_ms = $6 \
             WHERE bot = $7 AND user_id = $8",
        )
        .bind(user.language.as_str())
        .bind(user.stage.as_str())
        .bind(user.gender.map(Gender::code))
        .bind(user.age.map(i16::from))
        .bind(user.wants.map(Gender::code))
        .bind(user.updated_ms)
        .bind(user.bot.as_str())
        .bind(user.user_id)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn delete_user(&self, bot: &str, user_id: i64, now_ms: i64) -> StoreResult<bool> {
        // The tombstone first: a member row of the previous release may carry a restriction
        // the person row does not have yet; keep the later one.
        sqlx::query(
            "INSERT INTO persons (user_id, first_seen_ms, restricted_until_ms, deleted_ms, updated_ms) \
             SELECT user_id, created_ms, restricted_until_ms, $3, $3 FROM users WHERE bot = $1 AND user_id = $2 \
             ON CONFLICT (user_id) DO UPDATE SET deleted_ms = excluded.deleted_ms, updated_ms = excluded.updated_ms, \
               restricted_until_ms = CASE WHEN persons.restricted_until_ms IS NULL \
                 OR excluded.restricted_until_ms > persons.restricted_until_ms \
                 THEN excluded.restricted_until_ms ELSE persons.restricted_until_ms END",
        )
        .bind(bot)
        .bind(user_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        let done = sqlx::query("DELETE FROM users WHERE bot = $1 AND user_id = $2")
            .bind(bot)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_activity(&self, bot: &str, user_id: i64, username: Option<&str>, day: i64) -> StoreResult<()> {
        sqlx::query("UPDATE users SET active_day = $1, username = $2 WHERE bot = $3 AND user_id = $4")
            .bind(day)
            .bind(username)
            .bind(bot)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        // The day in the activity record (retention); the first write of the day wins.
        sqlx::query(
            "INSERT INTO activity_days (bot, user_id, day, at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (bot, user_id, day) DO NOTHING",
        )
        .bind(bot)
        .bind(user_id)
        .bind(day)
        .bind(crate::bot::now_ms())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn person(&self, user_id: i64) -> StoreResult<Option<Person>> {
        let row = sqlx::query("SELECT user_id, first_seen_ms, restricted_until_ms, deleted_ms FROM persons WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(|row| {
            Ok(Person {
                user_id: col(&row, "user_id")?,
                first_seen_ms: col(&row, "first_seen_ms")?,
                restricted_until_ms: col(&row, "restricted_until_ms")?,
                deleted_ms: col(&row, "deleted_ms")?,
            })
        })
        .transpose()
    }

    async fn record_event(&self, bot: &str, user_id: i64, event: Funnel, reference: &str, at_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO analytics_events (bot, user_id, kind, ref, at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (bot, user_id, kind, ref) DO NOTHING",
        )
        .bind(bot)
        .bind(user_id)
        .bind(event.as_str())
        .bind(reference)
        .bind(at_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn set_reachable(&self, bot: &str, user_id: i64, reachable: bool) -> StoreResult<()> {
        sqlx::query("UPDATE users SET reachable = $1 WHERE bot = $2 AND user_id = $3")
            .bind(flag_value(reachable))
            .bind(bot)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn set_broadcasts(&self, bot: &str, user_id: i64, on: bool) -> StoreResult<()> {
        sqlx::query("UPDATE users SET broadcasts_off = $1 WHERE bot = $2 AND user_id = $3")
            .bind(flag_value(!on))
            .bind(bot)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn broadcasts_on(&self, bot: &str, user_id: i64) -> StoreResult<bool> {
        let row = sqlx::query("SELECT COALESCE(broadcasts_off, 0) AS off FROM users WHERE bot = $1 AND user_id = $2")
            .bind(bot)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(match row {
            Some(r) => !flag(col(&r, "off")?, "broadcasts_off")?,
            None => true,
        })
    }

    async fn restrict(&self, user_id: i64, until_ms: Option<i64>, now_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO persons (user_id, first_seen_ms, restricted_until_ms, updated_ms) VALUES ($1, $3, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET restricted_until_ms = excluded.restricted_until_ms, updated_ms = excluded.updated_ms",
        )
        .bind(user_id)
        .bind(until_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        // Every member row too: replicas of the previous release read only their own column
        // during a rolling update, and this release reads the later of the two.
        sqlx::query("UPDATE users SET restricted_until_ms = $1 WHERE user_id = $2")
            .bind(until_ms)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn adopt_legacy_bot(&self, name: &str, id: &str) -> StoreResult<u64> {
        self.adopt_legacy_bot_rows(name, id).await
    }

    async fn count_users(&self, bot: &str) -> StoreResult<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE bot = $1 AND stage = $2")
            .bind(bot)
            .bind(Stage::Ready.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        count(&row, "n")
    }
}

#[async_trait::async_trait]
impl Safety for SqlStore {
    async fn record_block(&self, by: &Member, other: &Member, now_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO blocks (by_bot, by_user, other_bot, other_user, created_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (by_bot, by_user, other_bot, other_user) DO NOTHING",
        )
        .bind(by.bot.as_str())
        .bind(by.user)
        .bind(other.bot.as_str())
        .bind(other.user)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn blocked_by(&self, by: i64) -> StoreResult<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT other_user FROM blocks WHERE by_user = $1 \
             UNION \
             SELECT other_user FROM reports WHERE by_user = $1 \
             ORDER BY other_user",
        )
        .bind(by)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(|row| col(row, "other_user")).collect()
    }

    async fn blockers_of(&self, other: i64) -> StoreResult<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT by_user FROM blocks WHERE other_user = $1 \
             UNION \
             SELECT by_user FROM reports WHERE other_user = $1 \
             ORDER BY by_user",
        )
        .bind(other)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(|row| col(row, "by_user")).collect()
    }

    async fn record_report(&self, by: &Member, other: &Member, session_id: Option<i64>, now_ms: i64) -> StoreResult<i64> {
        let row = sqlx::query(
            "INSERT INTO reports (by_bot, by_user, other_bot, other_user, session_id, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(by.bot.as_str())
        .bind(by.user)
        .bind(other.bot.as_str())
        .bind(other.user)
        .bind(session_id)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        col(&row, "id")
    }

    async fn set_report_reason(&self, report_id: i64, by: &Member, reason: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE reports SET reason = $1 WHERE id = $2 AND by_bot = $3 AND by_user = $4")
            .bind(reason)
            .bind(report_id)
            .bind(by.bot.as_str())
            .bind(by.user)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn reporters_since(&self, person: i64, since_ms: i64) -> StoreResult<u64> {
        // People, not members: one person reporting through two bots counts once.
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM ( \
                 SELECT DISTINCT by_user FROM reports WHERE other_user = $1 AND created_ms >= $2 \
             ) AS reporters",
        )
        .bind(person)
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        count(&row, "n")
    }
}

#[async_trait::async_trait]
impl Sessions for SqlStore {
    async fn start_session(&self, a: &Member, b: &Member, started_ms: i64) -> StoreResult<i64> {
        let inserted = sqlx::query(
            "INSERT INTO chat_sessions (a_bot, a_user, b_bot, b_user, started_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (a_bot, a_user, b_bot, b_user, started_ms) DO NOTHING RETURNING id",
        )
        .bind(a.bot.as_str())
        .bind(a.user)
        .bind(b.bot.as_str())
        .bind(b.user)
        .bind(started_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        if let Some(row) = inserted {
            return col(&row, "id");
        }
        // Recorded already (a redelivered update, or a concurrent call that won).
        let row =
            sqlx::query("SELECT id FROM chat_sessions WHERE a_bot = $1 AND a_user = $2 AND b_bot = $3 AND b_user = $4 AND started_ms = $5")
                .bind(a.bot.as_str())
                .bind(a.user)
                .bind(b.bot.as_str())
                .bind(b.user)
                .bind(started_ms)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        match row {
            Some(row) => col(&row, "id"),
            // Sessions are never deleted: a conflict without a row is not ours to explain.
            None => Err(corrupt(format_args!("session {a} / {b} at {started_ms}: conflict on insert, but no row"))),
        }
    }

    async fn end_session(
        &self,
        a: &Member,
        b: &Member,
        by: Option<&Member>,
        reason: EndReason,
        ended_ms: i64,
    ) -> StoreResult<Option<Session>> {
        // One statement, so two replicas ending the same chat at once close it once: on
        // Postgres the second UPDATE waits for the first's row lock, then re-checks
        // `ended_ms IS NULL` and skips the row; SQLite serializes writers.
        // Should a pair ever have more than one open session (a lost end), all are closed and
        // the most recent is returned.
        let rows = sqlx::query(concat!(
            "UPDATE chat_sessions SET ended_ms = $1, end_reason = $2, ended_by_bot = $3, ended_by_user = $4 ",
            "WHERE ended_ms IS NULL AND (",
            "(a_bot = $5 AND a_user = $6 AND b_bot = $7 AND b_user = $8) OR ",
            "(a_bot = $7 AND a_user = $8 AND b_bot = $5 AND b_user = $6)",
            ") RETURNING ",
            session_columns!()
        ))
        .bind(ended_ms)
        .bind(reason.as_str())
        .bind(by.map(|m| m.bot.as_str()))
        .bind(by.map(|m| m.user))
        .bind(a.bot.as_str())
        .bind(a.user)
        .bind(b.bot.as_str())
        .bind(b.user)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let sessions = rows.iter().map(session_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(sessions.into_iter().max_by_key(|s| (s.started_ms, s.id)))
    }

    async fn open_session(&self, a: &Member, b: &Member) -> StoreResult<Option<Session>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM chat_sessions WHERE ended_ms IS NULL AND (",
            "(a_bot = $1 AND a_user = $2 AND b_bot = $3 AND b_user = $4) OR ",
            "(a_bot = $3 AND a_user = $4 AND b_bot = $1 AND b_user = $2)",
            ") ORDER BY started_ms DESC, id DESC LIMIT 1"
        ))
        .bind(a.bot.as_str())
        .bind(a.user)
        .bind(b.bot.as_str())
        .bind(b.user)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn session(&self, id: i64) -> StoreResult<Option<Session>> {
        let row = sqlx::query(concat!("SELECT ", session_columns!(), " FROM chat_sessions WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn rate(&self, session_id: i64, rater: &Member, up: bool, now_ms: i64) -> StoreResult<bool> {
        // The session row supplies the rated side; an outsider's rating selects no row and
        // inserts nothing. (SQLite needs the WHERE before ON CONFLICT to parse the upsert.)
        let done = sqlx::query(
            "INSERT INTO ratings (session_id, rater_bot, rater_user, rated_bot, rated_user, up, created_ms) \
             SELECT id, $1, $2, \
                    CASE WHEN a_bot = $1 AND a_user = $2 THEN b_bot ELSE a_bot END, \
                    CASE WHEN a_bot = $1 AND a_user = $2 THEN b_user ELSE a_user END, \
                    $3, $4 \
             FROM chat_sessions \
             WHERE id = $5 AND ((a_bot = $1 AND a_user = $2) OR (b_bot = $1 AND b_user = $2)) \
             ON CONFLICT (session_id, rater_bot, rater_user) DO UPDATE SET up = excluded.up, created_ms = excluded.created_ms",
        )
        .bind(rater.bot.as_str())
        .bind(rater.user)
        .bind(flag_value(up))
        .bind(now_ms)
        .bind(session_id)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn stats(&self, member: &Member) -> StoreResult<UserStats> {
        let chats = sqlx::query(
            "SELECT COUNT(*) AS chats, \
                    CAST(COALESCE(SUM(CASE WHEN ended_ms > started_ms THEN ended_ms - started_ms ELSE 0 END), 0) AS BIGINT) AS ms \
             FROM chat_sessions \
             WHERE ended_ms IS NOT NULL AND ((a_bot = $1 AND a_user = $2) OR (b_bot = $1 AND b_user = $2))",
        )
        .bind(member.bot.as_str())
        .bind(member.user)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        let ratings = sqlx::query(
            "SELECT CAST(COALESCE(SUM(up), 0) AS BIGINT) AS ups, CAST(COALESCE(SUM(1 - up), 0) AS BIGINT) AS downs \
             FROM ratings WHERE rated_bot = $1 AND rated_user = $2",
        )
        .bind(member.bot.as_str())
        .bind(member.user)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(UserStats {
            chats: count(&chats, "chats")?,
            // Summed in ms, divided once: short chats still add up.
            seconds_chatted: count(&chats, "ms")? / 1000,
            thumbs_up: count(&ratings, "ups")?,
            thumbs_down: count(&ratings, "downs")?,
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }

    async fn record_mirror(&self, session_id: i64, sender: &Member, mirror_chat_id: i64, message_id: i64, at_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO mirror_messages (session_id, bot, sender_user, mirror_chat_id, message_id, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session_id, mirror_chat_id, message_id) DO NOTHING",
        )
        .bind(session_id)
        .bind(sender.bot.as_str())
        .bind(sender.user)
        .bind(mirror_chat_id)
        .bind(message_id)
        .bind(at_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn mirror_messages(&self, session_id: i64) -> StoreResult<Vec<(Member, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT bot, sender_user, mirror_chat_id, message_id FROM mirror_messages WHERE session_id = $1 ORDER BY at_ms, message_id",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(|r| Ok((member(r, "bot", "sender_user")?, col(r, "mirror_chat_id")?, col(r, "message_id")?))).collect()
    }
}

#[cfg(test)]
mod classification_tests {
    use super::transient_database_error as transient;

    #[test]
    fn only_passing_database_refusals_count_as_outages() {
        for code in ["08006", "40001", "40P01", "53300", "57P01", "5", "6", "517", "262"] {
            assert!(transient(Some(code)), "{code}");
        }
        for code in ["23505", "23514", "22P02", "42P01", "2067", "1555", "787", "275"] {
            assert!(!transient(Some(code)), "{code}");
        }
        assert!(transient(None));
    }
}
