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

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub coordinator: Arc<dyn Coordinator>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<crate::auth::Authenticator>,
    pub rate_limiter: Arc<crate::limits::ClientRateLimiter>,
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
