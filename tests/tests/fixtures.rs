//! The fixtures give every test its own database and Redis namespace, and clean up after it.

use botfleet_tests::fixtures::{TestDb, TestRedis};
use redis::AsyncCommands as _;
use sqlx::{Connection as _, Row as _};

#[tokio::test]
async fn each_test_database_is_fresh_and_private() {
    let a = TestDb::create().await.unwrap();
    let b = TestDb::create().await.unwrap();
    assert_ne!(a.name, b.name);
    sqlx::query("CREATE TABLE users (id BIGINT PRIMARY KEY)").execute(&a.pool).await.unwrap();
    sqlx::query("INSERT INTO users VALUES (1)").execute(&a.pool).await.unwrap();
    let in_b: i64 =
        sqlx::query("SELECT count(*) FROM information_schema.tables WHERE table_name = 'users'").fetch_one(&b.pool).await.unwrap().get(0);
    assert_eq!(in_b, 0, "b does not see a's table");
    // The URL works for code under test that connects on its own.
    let mut conn = sqlx::PgConnection::connect(&a.url).await.unwrap();
    let n: i64 = sqlx::query("SELECT count(*) FROM users").fetch_one(&mut conn).await.unwrap().get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_dropped_test_database_is_gone() {
    let db = TestDb::create().await.unwrap();
    let name = db.name.clone();
    drop(db);
    let admin = TestDb::create().await.unwrap();
    let exists: bool = sqlx::query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&admin.pool)
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "{name} was dropped");
    admin.drop_db().await.unwrap();
}

#[tokio::test]
async fn redis_namespaces_are_private_and_cleaned_on_drop() {
    let a = TestRedis::create().await.unwrap();
    let b = TestRedis::create().await.unwrap();
    assert_ne!(a.prefix, b.prefix);
    let mut conn = a.conn.clone();
    let _: () = conn.set(a.key("queue"), "x").await.unwrap();
    let mut other = b.conn.clone();
    let seen: Option<String> = other.get(b.key("queue")).await.unwrap();
    assert_eq!(seen, None);
    let key = a.key("queue");
    drop(a);
    let left: Option<String> = other.get(&key).await.unwrap();
    assert_eq!(left, None, "keys under the prefix are deleted on drop");
}
