//! PostgreSQL connections for the protocol's hot statements (step 5, and
//! the outcome lookup of a request that found its slot busy), kept apart
//! from sqlx's pool.
//!
//! Why not sqlx's pool: it sends a `Sync` and waits for `ReadyForQuery`
//! every time a connection comes back (`PoolConnection::return_to_pool`,
//! hard-coded), in a task spawned for it. That is one more round trip to
//! the database and one more task per booking, for a check this pool makes
//! without talking to the server: a connection goes back clean only when
//! its exchange ran to its end. One whose exchange was cut short (the
//! request's deadline dropped it mid-way) or failed below SQL (I/O,
//! protocol) is discarded the next time it is handed out, and a new one is
//! opened. A database error (a constraint, `BK001`) ends its exchange
//! normally and leaves the connection usable (sqlx reads up to
//! `ReadyForQuery` before it reports it), unless its class says the server
//! is going away (shutdown, connection exception).
//!
//! deadpool does the pooling; what is written here is only that rule.

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;

use crate::deps::Classify;

pub struct HotConnections {
    pool: managed::Pool<Manager>,
}

struct Manager {
    options: PgConnectOptions,
}

/// A pooled connection and whether its last exchange ran to its end.
struct Conn {
    raw: PgConnection,
    clean: bool,
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<Conn, sqlx::Error> {
        Ok(Conn {
            raw: PgConnection::connect_with(&self.options).await?,
            clean: true,
        })
    }

    async fn recycle(&self, conn: &mut Conn, _: &Metrics) -> RecycleResult<sqlx::Error> {
        if conn.clean {
            Ok(())
        } else {
            Err(RecycleError::message(
                "its last exchange did not run to its end",
            ))
        }
    }
}

/// A connection handed out for one exchange. It is marked unclean until
/// [`Checkout::finish`] has seen how the exchange ended, so that dropping
/// it mid-way (a cancelled request) discards it.
pub struct Checkout {
    conn: managed::Object<Manager>,
}

impl HotConnections {
    pub fn new(options: PgConnectOptions, size: usize) -> Result<Self, sqlx::Error> {
        let pool = managed::Pool::builder(Manager { options })
            .max_size(size)
            .build()
            .map_err(|e| sqlx::Error::Configuration(e.to_string().into()))?;
        Ok(Self { pool })
    }

    /// Waits for a connection (the request's deadline bounds the wait).
    pub async fn checkout(&self) -> Result<Checkout, sqlx::Error> {
        let mut conn = self.pool.get().await.map_err(|e| match e {
            managed::PoolError::Backend(e) => e,
            managed::PoolError::Closed => sqlx::Error::PoolClosed,
            managed::PoolError::Timeout(_) => sqlx::Error::PoolTimedOut,
            other => sqlx::Error::Io(std::io::Error::other(other.to_string())),
        })?;
        conn.clean = false;
        Ok(Checkout { conn })
    }
}

impl Checkout {
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.conn.raw
    }

    /// Records how the exchange ended; pass every result through it.
    pub fn finish<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        self.conn.clean = match &result {
            Ok(_) => true,
            Err(e @ sqlx::Error::Database(_)) => !e.is_unavailable(),
            Err(_) => false,
        };
        result
    }
}
