//! HTTP routes: one file per route, a thin layer over [`crate::booking`].

pub mod auth;
pub mod bookings;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod resources;

#[cfg(feature = "failpoints")]
pub mod admin;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    // Probes, metrics and documents are never rate limited: a throttled
    // client must not make its replica look dead to the orchestrator.
    let open = Router::new()
        .route("/health", get(health::live))
        .route("/api/health", get(health::live))
        .route("/api/health/ready", get(health::ready))
        .route("/metrics", get(metrics::render))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/auth/config", get(auth::config));
    let limited = Router::new()
        .route("/api/auth/dev-token", post(auth::dev_token))
        .route("/api/bookings", post(bookings::create::create))
        .route("/api/bookings/{user_id}", get(bookings::list::list))
        .route(
            "/api/bookings/{booking_id}/cancel",
            patch(bookings::cancel::cancel),
        )
        .route("/api/resources", get(resources::catalogue))
        .route("/api/resources/available", get(resources::available))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_rate));
    let api = open.merge(limited);
    #[cfg(feature = "failpoints")]
    let api = api.merge(admin::router());
    let body_limit = state.settings.body_limit;
    // With a built front end, unknown paths serve it (index.html for client
    // routes); unknown API paths stay JSON 404s.
    let api = match &state.settings.static_dir {
        Some(dir) => api
            .route("/api", axum::routing::any(not_found))
            .route("/api/", axum::routing::any(not_found))
            .route("/api/{*rest}", axum::routing::any(not_found))
            // Client-side routes get the app itself, with 200.
            .fallback_service(
                tower_http::services::ServeDir::new(dir)
                    .fallback(tower_http::services::ServeFile::new(dir.join("index.html"))),
            ),
        None => api.fallback(not_found),
    };
    // One stack, applied once: every `Router::layer` call wraps each route
    // in another boxed service, and a request cloned the whole nest (one
    // allocation per level, 40 of a `/health` request's 96;
    // measured in `docs/PERFORMANCE-HISTORY.md`). Outermost first.
    let stack = tower::ServiceBuilder::new()
        .layer(middleware::from_fn(screen_request_head))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let request_id = req
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            // Every field by `Display`: the log formatter writes those
            // straight through, while a plain `&str` goes through `Debug`,
            // escaped char by char. This span is about a sixth of a
            // `/health` request's instructions; `Display` saved 2% of
            // them (measured in docs/PERFORMANCE-HISTORY.md).
            tracing::info_span!(
                "request",
                method = %req.method().as_str(),
                uri = %req.uri(),
                request_id = %request_id
            )
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".into()).into_response()
        }))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            answer_in_time,
        ));
    api.layer(stack).with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// The longest request target accepted (`414 URI_TOO_LONG`).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most headers, and header bytes, accepted (`431 HEADERS_TOO_LARGE`).
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The outermost step of every request, before its id is set and its span
/// opened (one function rather than three layers: each `from_fn` layer
/// clones the stack below it and boxes a future on every request).
///
/// - Oversized request heads get problem documents like any other error;
///   hyper reads heads up to a larger bound (`serve.rs`) and would answer
///   those past it with an empty 431 of its own.
/// - A client's `X-Request-Id` is echoed and logged: one longer than 128
///   visible characters is replaced by a fresh id, not repeated.
/// - Browsers must not guess a content type other than the one sent.
async fn screen_request_head(mut req: Request, next: Next) -> Response {
    let mut response = match head_too_large(&req) {
        Some(error) => error.into_response(),
        None => {
            let acceptable = |v: &axum::http::HeaderValue| {
                v.len() <= 128 && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
            };
            if req
                .headers()
                .get(&REQUEST_ID)
                .is_some_and(|v| !acceptable(v))
            {
                req.headers_mut().remove(&REQUEST_ID);
            }
            next.run(req).await
        }
    };
    response.headers_mut().insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    response
}

fn head_too_large(req: &Request) -> Option<ApiError> {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        return Some(ApiError::UriTooLong(MAX_URI_BYTES));
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES).then_some(ApiError::HeadersTooLarge {
        count: MAX_HEADERS,
        bytes: MAX_HEADER_BYTES,
    })
}

/// `429 RATE_LIMITED` for a client over its rate (see `limits.rs`). The
/// token is verified here once; the handler's [`crate::extract::Principal`] reuses the
/// verdict, good or bad. A request with a bad token counts against its
/// address and gets its `401` from the handler.
async fn limit_rate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    let verdict = state.auth.principal(req.headers()).await;
    let principal = verdict.as_ref().ok().and_then(Option::as_ref);
    let client = crate::limits::Client::of(principal, peer);
    if let Err(wait) = state.rate_limiter.check(&client) {
        return ApiError::RateLimited(wait).into_response();
    }
    req.extensions_mut()
        .insert(crate::extract::Verified(verdict));
    next.run(req).await
}

/// The innermost step around every route, after its span is open (one
/// function rather than three layers, as [`screen_request_head`]):
///
/// - `503 TIMEOUT` when a request outlives the request timeout. A booking in
///   flight keeps running in its own task and its outcome is kept for the
///   retry.
/// - Errors the router produces itself (a method a route does not have, an
///   unknown path) carry no body; they get a problem document like every
///   other error, and a 405 keeps its `Allow` header.
/// - Every answer is counted by route, method and status.
async fn answer_in_time(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    // A made-up method must not become a new label value each time.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    let response = match tokio::time::timeout(state.settings.request_timeout, next.run(req)).await {
        Ok(response) => problem_for_bare_errors(response),
        Err(_) => ApiError::Timeout.into_response(),
    };
    state.metrics.record_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        method,
        response.status().as_u16(),
    );
    response
}

fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .extensions()
        .get::<crate::error::ErrorCode>()
        .is_some();
    if is_problem || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let bare = match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::NOT_FOUND => ApiError::NotFound,
        _ => return response,
    };
    let allow = response.headers().get(axum::http::header::ALLOW).cloned();
    let mut problem = bare.into_response();
    if let Some(allow) = allow {
        problem
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow);
    }
    problem
}
