//! The state every handler shares. Its own module so that routes and the
//! booking flow depend on it, and only `startup` (which builds it and the
//! router) depends on the routes: no import cycle.

use std::sync::Arc;

use crate::config::Settings;
use crate::coordinator::Coordinator;
use crate::domain::ResourceId;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::Store;

/// Shared by every handler: one `Arc`, so that the clones axum makes per
/// request and per middleware cost one atomic count each (six counts, one
/// per part, showed up at 10% of a create's CPU in the profile: the two
/// cores contend for each count's cache line). Fields read through `Deref`.
#[derive(Clone)]
pub struct AppState(Arc<Parts>);

impl AppState {
    pub fn new(parts: Parts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Parts {
    pub settings: Arc<Settings>,
    pub coordinator: Arc<dyn Coordinator>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<crate::auth::Authenticator>,
    pub rate_limiter: Arc<crate::limits::ClientRateLimiter>,
    /// Completed client-key outcomes, to answer replays without Redis.
    pub replay_cache: Arc<crate::booking::replay_cache::ReplayCache>,
}

impl AppState {
    /// Booking an id outside the catalogue is `404 UNKNOWN_RESOURCE`.
    pub fn check_resource(&self, resource: &ResourceId) -> Result<(), ApiError> {
        if self.settings.resources.iter().any(|r| &r.id == resource) {
            Ok(())
        } else {
            Err(ApiError::UnknownResource(resource.clone()))
        }
    }
}
