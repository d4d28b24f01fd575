//! The protocol's own connections to PostgreSQL (`store::pg_conns`) and
//! Redis (`coordinator::redis_conns`): a connection goes back to the pool
//! only when its exchange ran to its end, without the round trip sqlx's
//! pool spends to check it.

use std::str::FromStr;
use std::time::Duration;

use booking::coordinator::redis_conns::RedisConnections;
use booking::store::pg_conns::HotConnections;
use booking_infra::{PostgresServer, RedisServer};
use redis::{ErrorKind, IntoConnectionInfo};
use sqlx::postgres::PgConnectOptions;

/// The server process behind the connection the pool hands out next.
async fn backend_pid(conns: &HotConnections) -> i32 {
    let mut conn = conns.checkout().await.expect("checkout");
    let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn.connection())
        .await;
    conn.finish(pid).expect("pg_backend_pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_goes_back_only_after_its_exchange_ran_to_its_end() {
    let postgres = PostgresServer::start().await.expect("start postgres");
    let url = postgres.create_database("hot").await.expect("create db");
    let options = PgConnectOptions::from_str(&url).expect("url");
    let conns = HotConnections::new(options, 1).expect("pool");

    let first = backend_pid(&conns).await;
    assert_eq!(
        backend_pid(&conns).await,
        first,
        "a clean exchange keeps it"
    );

    // A database error ends its exchange normally.
    let mut conn = conns.checkout().await.expect("checkout");
    let failed = sqlx::query("SELECT 1 / 0").execute(conn.connection()).await;
    assert!(matches!(conn.finish(failed), Err(sqlx::Error::Database(_))));
    assert_eq!(backend_pid(&conns).await, first, "kept after an SQL error");

    // An exchange cut short, as a request's deadline cuts it: the server is
    // still sleeping and will answer into that connection later.
    let mut conn = conns.checkout().await.expect("checkout");
    let cut = tokio::time::timeout(
        Duration::from_millis(100),
        sqlx::query("SELECT pg_sleep(5)").execute(conn.connection()),
    )
    .await;
    assert!(cut.is_err(), "the statement outlived its deadline");
    drop(conn);
    let second = backend_pid(&conns).await;
    assert_ne!(second, first, "a cut connection is never handed out again");
    assert_eq!(backend_pid(&conns).await, second);
}

fn redis_pool(url: &str, size: usize) -> RedisConnections {
    let info = url.into_connection_info().expect("url");
    RedisConnections::new(&info, size).expect("pool")
}

/// Redis's id of the connection the pool hands out next.
async fn client_id(conns: &RedisConnections) -> i64 {
    conns
        .query(&redis::cmd("CLIENT").arg("ID").clone())
        .await
        .expect("CLIENT ID")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_connection_goes_back_only_after_its_exchange_ran_to_its_end() {
    let redis = RedisServer::start().await.expect("start redis");
    let conns = redis_pool(&redis.url(), 1);

    let first = client_id(&conns).await;
    assert_eq!(client_id(&conns).await, first, "a clean exchange keeps it");

    // An error reply ends its exchange normally.
    let failed = conns
        .query::<String>(&redis::cmd("EVALSHA").arg("0".repeat(40)).arg(0).clone())
        .await;
    assert_eq!(
        failed.expect_err("no such script").kind(),
        ErrorKind::NoScriptError
    );
    assert_eq!(client_id(&conns).await, first, "kept after an error reply");

    // An exchange cut short, as a request's deadline cuts it: Redis answers
    // the blocked pop into that connection later.
    let blocked = redis::cmd("BLPOP").arg("nothing").arg(2).clone();
    let cut = tokio::time::timeout(
        Duration::from_millis(100),
        conns.query::<Option<Vec<String>>>(&blocked),
    )
    .await;
    assert!(cut.is_err(), "the pop outlived its deadline");
    let second = client_id(&conns).await;
    assert_ne!(second, first, "a cut connection is never handed out again");
    assert_eq!(client_id(&conns).await, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_connection_closed_while_pooled_is_replaced_not_used() {
    let redis = RedisServer::start().await.expect("start redis");
    let conns = redis_pool(&redis.url(), 1);
    let first = client_id(&conns).await;

    // Redis closes it (as a restart, a timeout or an operator would) while
    // it waits in the pool.
    let killed: i64 = redis_pool(&redis.url(), 1)
        .query(
            &redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(first)
                .clone(),
        )
        .await
        .expect("CLIENT KILL");
    assert_eq!(killed, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let second = client_id(&conns).await;
    assert_ne!(second, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_connection_sends_the_urls_password_and_database() {
    let redis = RedisServer::start().await.expect("start redis");
    let admin = redis_pool(&redis.url(), 1);
    let _: () = admin
        .query(
            &redis::cmd("CONFIG")
                .arg("SET")
                .arg("requirepass")
                .arg("s3cret")
                .clone(),
        )
        .await
        .expect("CONFIG SET");
    let base = format!("redis://:s3cret@127.0.0.1:{}", redis.port());

    let in_db3 = redis_pool(&format!("{base}/3"), 1);
    let _: () = in_db3
        .query(&redis::cmd("SET").arg("k").arg("v").clone())
        .await
        .expect("SET");
    let db: i64 = redis_pool(&format!("{base}/3"), 1)
        .query(&redis::cmd("EXISTS").arg("k").clone())
        .await
        .expect("EXISTS");
    assert_eq!(db, 1, "the same database");
    let db0: i64 = redis_pool(&base, 1)
        .query(&redis::cmd("EXISTS").arg("k").clone())
        .await
        .expect("EXISTS");
    assert_eq!(db0, 0, "database 0 is another one");

    let wrong = redis_pool(&format!("redis://:wrong@127.0.0.1:{}", redis.port()), 1)
        .query::<String>(&redis::cmd("PING"))
        .await;
    assert!(wrong.is_err(), "a wrong password is refused: {wrong:?}");
}
