//! `spawn_app`: the service on port 0 against real backends, and typed
//! helpers to talk to it and to read the store directly.

use std::time::Duration;

use booking::config::Settings;
use booking::startup::Application;
use booking::state::AppState;
use booking_infra::{PostgresServer, RedisServer};
use serde_json::{json, Value};
use sqlx::{PgPool, Row, SqlitePool};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// Which dependencies the app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file + in-process coordinator (the embedded default).
    Embedded,
    /// Private PostgreSQL + private Redis.
    Real,
}

/// Direct access to the store, to check what was written.
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub db: Db,
    pub redis: Option<RedisServer>,
    pub postgres: Option<PostgresServer>,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: TempDir,
}

/// A response read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub json: Value,
    pub replayed: bool,
    pub retry_after: Option<String>,
    pub content_type: String,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("")
    }

    pub fn booking_id(&self) -> String {
        self.json["booking"]["id"].as_str().unwrap_or("").to_owned()
    }

    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let replayed = header("idempotent-replayed").as_deref() == Some("true");
        let retry_after = header("retry-after");
        let content_type = header("content-type").unwrap_or_default();
        let body = response.text().await.expect("response body");
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        Reply {
            status,
            body,
            json,
            replayed,
            retry_after,
            content_type,
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        // Every test client shares 127.0.0.1; limits.rs tests turn it on.
        rate_limit: booking::limits::RateLimit::OFF,
        ..Settings::default()
    };
    let (redis, postgres) = match backend {
        Backend::Embedded => {
            settings.database_url = format!("sqlite://{}", dir.path().join("booking.db").display());
            (None, None)
        }
        Backend::Real => {
            let (redis, postgres) = tokio::join!(RedisServer::start(), PostgresServer::start());
            let redis = redis.expect("start redis");
            let postgres = postgres.expect("start postgres");
            settings.database_url = postgres
                .create_database("booking")
                .await
                .expect("create db");
            settings.redis_url = Some(redis.url());
            (Some(redis), Some(postgres))
        }
    };
    configure(&mut settings);
    let db = match backend {
        Backend::Embedded => Db::Sqlite(
            SqlitePool::connect(&format!("{}?mode=rwc", settings.database_url))
                .await
                .expect("sqlite"),
        ),
        Backend::Real => Db::Postgres(PgPool::connect(&settings.database_url).await.expect("pg")),
    };
    serve(settings, db, redis, postgres, dir).await
}

/// Builds and runs the service on `settings`, as one [`TestApp`].
async fn serve(
    settings: Settings,
    db: Db,
    redis: Option<RedisServer>,
    postgres: Option<PostgresServer>,
    dir: TempDir,
) -> TestApp {
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            // Says which server went away, for a failure that is hard to rerun.
            let context = match redis {
                Some(mut redis) => format!(
                    "redis on port {} running: {}\n--- redis log ---\n{}",
                    redis.port(),
                    redis.is_running().await,
                    redis.log_tail(20).await
                ),
                None => String::new(),
            };
            panic!("build app: {e:?}\n{context}");
        }
    };
    let address = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client"),
        state,
        db,
        redis,
        postgres,
        shutdown: Some(tx),
        _dir: dir,
    }
}

impl TestApp {
    /// Another replica of the service on the same store and Redis, with the
    /// same settings (its own port, its own memory: replay cache, limits).
    pub async fn another_replica(&self) -> TestApp {
        let mut settings = (*self.state.settings).clone();
        settings.listen = "127.0.0.1:0".parse().expect("addr");
        let db = match &self.db {
            Db::Postgres(p) => Db::Postgres(p.clone()),
            Db::Sqlite(p) => Db::Sqlite(p.clone()),
        };
        serve(
            settings,
            db,
            None,
            None,
            tempfile::tempdir().expect("temp dir"),
        )
        .await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn booking_body(user: &str, resource: &str, date: &str) -> Value {
    json!({"userId": user, "resourceId": resource, "date": date})
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_booking(&self, body: &Value, key: Option<&str>) -> Reply {
        let mut req = self.client.post(self.url("/api/bookings")).json(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        Reply::read(req.send().await.expect("POST /api/bookings")).await
    }

    pub async fn book(&self, user: &str, resource: &str, date: &str, key: Option<&str>) -> Reply {
        self.post_booking(&booking_body(user, resource, date), key)
            .await
    }

    pub async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self.client.post(self.url("/api/bookings")).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Reply::read(req.send().await.expect("POST /api/bookings")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::read(self.client.get(self.url(path)).send().await.expect("GET")).await
    }

    pub async fn cancel(&self, booking_id: &str, user: &str) -> Reply {
        let response = self
            .client
            .patch(self.url(&format!("/api/bookings/{booking_id}/cancel")))
            .json(&json!({ "userId": user }))
            .send()
            .await
            .expect("PATCH cancel");
        Reply::read(response).await
    }

    /// Every booking row, whatever its status.
    pub async fn count_rows(&self) -> i64 {
        self.scalar("SELECT COUNT(*) FROM bookings").await
    }

    pub async fn count_idempotency_records(&self) -> i64 {
        self.scalar("SELECT COUNT(*) FROM idempotency_records")
            .await
    }

    /// Confirmed bookings of one slot.
    pub async fn confirmed(&self, resource: &str, date: &str) -> i64 {
        let sql = "SELECT COUNT(*) FROM bookings \
                   WHERE resource_id = $1 AND CAST(date AS TEXT) = $2 AND status = 'confirmed'";
        match &self.db {
            Db::Postgres(p) => sqlx::query(sql)
                .bind(resource)
                .bind(date)
                .fetch_one(p)
                .await
                .expect("query")
                .get(0),
            Db::Sqlite(p) => sqlx::query(sql)
                .bind(resource)
                .bind(date)
                .fetch_one(p)
                .await
                .expect("query")
                .get(0),
        }
    }

    async fn scalar(&self, sql: &str) -> i64 {
        match &self.db {
            Db::Postgres(p) => sqlx::query(sql).fetch_one(p).await.expect("query").get(0),
            Db::Sqlite(p) => sqlx::query(sql).fetch_one(p).await.expect("query").get(0),
        }
    }
}
