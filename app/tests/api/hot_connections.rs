//! The protocol's own PostgreSQL connections (`store::pg_conns`): a
//! connection goes back to the pool only when its exchange ran to its end,
//! without the round trip sqlx's pool spends to check it.

use std::str::FromStr;
use std::time::Duration;

use booking::store::pg_conns::HotConnections;
use booking_infra::PostgresServer;
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
