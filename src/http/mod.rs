//! The HTTP endpoints: routes, auth, `ApiError`. Serves the snapshot's bytes; the API's wire
//! types live beside the route that speaks them.

pub mod auth;
pub mod status;
pub mod webhooks;

use std::sync::Arc;

use axum::extract::{Request, State as AxumState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;

use crate::config::Secret;
use crate::snapshot::State;
use auth::bearer_matches;

/// Everything a handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub state: Arc<State>,
    /// Bearer token required on the read endpoints, when configured.
    pub read_token: Option<Arc<Secret>>,
    /// Credentials accepted on the webhook and `/v1` write endpoints.
    pub webhook_auth: Arc<crate::http::auth::WebhookAuth>,
    /// Desired size per pool, in configuration order.
    pub controls: Arc<Vec<Arc<crate::control::PoolControl>>>,
    pub store: Arc<crate::store::Store>,
}

/// A JSON error answer: `{"error": "..."}` with a status code.
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

pub fn router(app: AppState) -> Router {
    let reads = Router::new()
        .route("/traefik", get(traefik_handler))
        .route("/prometheus/targets", get(targets_handler))
        .route("/v1/pools", get(status::list_pools))
        .route("/v1/pools/{pool}", get(status::get_pool))
        .route("/v1/pools/{pool}/activities", get(webhooks::activities))
        .route("/metrics", get(metrics_handler))
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            require_read_token,
        ));
    let writes = Router::new()
        .route("/v1/scale-up", post(webhooks::scale_up))
        .route("/v1/scale-down", post(webhooks::scale_down))
        .route("/v1/pools/{pool}/scale-up", post(webhooks::pool_scale_up))
        .route(
            "/v1/pools/{pool}/scale-down",
            post(webhooks::pool_scale_down),
        )
        .route("/v1/pools/{pool}/desired", put(webhooks::put_desired))
        // The handlers read the body themselves, up to webhooks::MAX_BODY (413 beyond).
        .layer(axum::extract::DefaultBodyLimit::disable());
    Router::new()
        .merge(reads)
        .merge(writes)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(status::readyz))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(app)
}

async fn require_read_token(
    AxumState(app): AxumState<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(token) = &app.read_token {
        if !bearer_matches(req.headers(), token) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "a valid read token is required (Authorization: Bearer ...)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

fn not_ready() -> Response {
    let mut resp = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready: waiting for the first successful reconcile of every pool",
    )
    .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

fn json_bytes(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn traefik_handler(AxumState(app): AxumState<AppState>) -> Response {
    match &app.state.load().traefik {
        Some(body) => json_bytes(body.clone()),
        None => not_ready(),
    }
}

async fn targets_handler(AxumState(app): AxumState<AppState>) -> Response {
    match &app.state.load().targets {
        Some(body) => json_bytes(body.clone()),
        None => not_ready(),
    }
}

async fn metrics_handler(AxumState(app): AxumState<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        app.state.metrics().render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    #[test]
    fn bearer_comparison() {
        let token = Secret::new("abc");
        let mut h = HeaderMap::new();
        assert!(!bearer_matches(&h, &token));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert!(bearer_matches(&h, &token));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert!(bearer_matches(&h, &token));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abd"),
        );
        assert!(!bearer_matches(&h, &token));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(!bearer_matches(&h, &token));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer ab"));
        assert!(!bearer_matches(&h, &token));
    }
}
