//! HTTP integration tests. Each test in `suite!` runs twice: on the embedded
//! default (SQLite + in-process coordinator) and on private PostgreSQL +
//! Redis servers started for the test.

mod helpers;

mod auth;
mod booking_rules;
mod contract;
mod dependencies;
mod hot_connections;
mod idempotency;
mod limits;
mod oidc;
mod quota;
mod replay_cache;
mod store;
mod validation;

/// Generates `embedded::name` and `real::name` for each `async fn name(Backend)`.
#[macro_export]
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Embedded).await
                }
            )*
        }
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Real).await
                }
            )*
        }
    };
}
