//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! Each [`crate::startup::Application`] owns its own registry (no global
//! recorder), so tests that run several apps in one process do not mix counts.
//!
//! Label values are `&'static str` wherever the set is fixed in the code:
//! a lookup then builds its key without allocating (every request records
//! four to six of them).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplayLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabels {
    dependency: &'static str,
    operation: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    booking_outcomes: Family<OutcomeLabels, Counter>,
    replays: Family<ReplayLabels, Counter>,
    lock_contention: Counter,
    dependency_latency: HistogramFamily<DependencyLabels>,
    commit_group_size: Histogram,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~4 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("booking");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by matched route, method and status",
            requests.clone(),
        );
        let booking_outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "booking_outcomes",
            "Outcomes of POST /api/bookings by result code (CREATED or an error code)",
            booking_outcomes.clone(),
        );
        let replays = Family::<ReplayLabels, Counter>::default();
        registry.register(
            "idempotent_replays",
            "Responses replayed for a completed idempotency key, by where the record was found",
            replays.clone(),
        );
        let lock_contention = Counter::default();
        registry.register(
            "lock_contention",
            "Slot lock acquisitions refused because another request held the lock",
            lock_contention.clone(),
        );
        let dependency_latency: HistogramFamily<DependencyLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "dependency_call_seconds",
            "Latency of calls to the coordinator and the store",
            dependency_latency.clone(),
        );
        // 1, 2, 4 … 64: a group holds at most 64 bookings.
        let commit_group_size = Histogram::new(exponential_buckets(1.0, 2.0, 7));
        registry.register(
            "store_commit_group_size",
            "Bookings made durable by one commit of SQLite's group commit",
            commit_group_size.clone(),
        );
        Self {
            registry,
            requests,
            booking_outcomes,
            replays,
            lock_contention,
            dependency_latency,
            commit_group_size,
        }
    }

    pub fn record_request(&self, route: &str, method: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method,
                status,
            })
            .inc();
    }

    pub fn record_booking_outcome(&self, outcome: &'static str) {
        self.booking_outcomes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn record_replay(&self, source: &'static str) {
        self.replays.get_or_create(&ReplayLabels { source }).inc();
    }

    pub fn record_lock_contention(&self) {
        self.lock_contention.inc();
    }

    pub fn observe_dependency(
        &self,
        dependency: &'static str,
        operation: &'static str,
        elapsed: Duration,
    ) {
        self.dependency_latency
            .get_or_create(&DependencyLabels {
                dependency,
                operation,
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_commit_group(&self, bookings: usize) {
        self.commit_group_size.observe(bookings as f64);
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_text_contains_recorded_series() {
        let m = Metrics::new();
        m.record_request("/api/bookings", "POST", 201);
        m.record_booking_outcome("CREATED");
        m.record_replay("redis");
        m.record_lock_contention();
        m.observe_dependency("redis", "claim", Duration::from_millis(3));
        m.observe_commit_group(3);
        let text = m.render();
        assert!(
            text.contains(
                r#"booking_http_requests_total{route="/api/bookings",method="POST",status="201"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"booking_booking_outcomes_total{outcome="CREATED"} 1"#));
        assert!(text.contains(r#"booking_idempotent_replays_total{source="redis"} 1"#));
        assert!(text.contains("booking_lock_contention_total 1"));
        assert!(text.contains(
            r#"booking_dependency_call_seconds_count{dependency="redis",operation="claim"} 1"#
        ));
        assert!(
            text.contains("booking_store_commit_group_size_sum 3.0"),
            "{text}"
        );
    }
}
