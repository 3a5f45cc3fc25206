//! The HTTP endpoints: routes, auth, `ApiError`. Serves the snapshot's bytes; the API's wire
//! types live beside the route that speaks them.

pub mod auth;
pub mod cost;
pub mod plan;
pub mod refresh;
pub mod status;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State as AxumState};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
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
    /// IDCloudHost's month-to-date figures, when `billing_account_id` is set (`billing.rs`).
    pub charging: Arc<crate::billing::Charging>,
}

/// A JSON error answer: `{"error": "..."}` with a status code, and for a 401 the
/// `WWW-Authenticate` challenges of the methods that would be accepted.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub challenges: Vec<HeaderValue>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            challenges: Vec::new(),
        }
    }

    pub fn unauthorized(message: impl Into<String>, challenges: Vec<HeaderValue>) -> Self {
        Self {
            challenges,
            ..Self::new(StatusCode::UNAUTHORIZED, message)
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
        for c in self.challenges {
            resp.headers_mut().append(header::WWW_AUTHENTICATE, c);
        }
        resp
    }
}

/// A pool name from the path, percent-decoded; anything that is not UTF-8 is a JSON 400.
pub struct PoolName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PoolName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(name)) => Ok(PoolName(name)),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "the pool in the path is not a valid name (percent-decoded UTF-8): {}",
                    e.body_text()
                ),
            )),
        }
    }
}

pub fn router(app: AppState) -> Router {
    let reads = Router::new()
        .route("/traefik", get(traefik_handler))
        .route("/prometheus/targets", get(targets_handler))
        .route("/v1/pools", get(status::list_pools))
        .route("/v1/pools/{pool}", get(status::get_pool))
        .route("/v1/pools/{pool}/activities", get(webhooks::activities))
        .route("/v1/pools/{pool}/plan", get(plan::get_plan))
        .route("/v1/pools/{pool}/cost", get(cost::get_cost))
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
        .route(
            "/v1/pools/{pool}/refresh",
            post(refresh::start).delete(refresh::cancel),
        )
        // The handlers read the body themselves, up to webhooks::MAX_BODY (413 beyond).
        .layer(axum::extract::DefaultBodyLimit::disable());
    let routes = Router::new()
        .merge(reads)
        .merge(writes)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(status::readyz))
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no such endpoint: {}", uri.path()),
            )
        })
        .with_state(app);
    // Around the whole router, not each route: a 405's `Allow` header is added by the route
    // after its layers ran, and `errors_are_json` must see it.
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn(errors_are_json))
}

/// Bounds the time of one request, body and handler included: 408 beyond `limit`. Outermost, so
/// it also bounds the read-token check and the error rewriting.
pub fn with_request_timeout(router: Router, limit: Duration) -> Router {
    router.layer(middleware::from_fn(
        move |req: Request, next: Next| async move {
            match tokio::time::timeout(limit, next.run(req)).await {
                Ok(resp) => resp,
                Err(_) => ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request took longer than {} (http.request_timeout)",
                        humantime::format_duration(limit)
                    ),
                )
                .into_response(),
            }
        },
    ))
}

/// Every error answer is `application/json` `{"error": ...}`: a 405 from the router (empty
/// body) says which methods are allowed (its `Allow` header stays), and any other error that is
/// not JSON yet (an extractor's text rejection) is wrapped.
async fn errors_are_json(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        format!("method {method} is not allowed on {path}; allowed: {allow}")
    } else {
        let text = axum::body::to_bytes(body, 64 * 1024)
            .await
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .unwrap_or_default();
        if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            text
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut resp = ApiError::new(status, message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            resp.headers_mut().append(name, value.clone());
        }
    }
    resp
}

async fn require_read_token(
    AxumState(app): AxumState<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(token) = &app.read_token {
        match bearer_matches(req.headers(), token) {
            Ok(true) => {}
            Ok(false) => {
                return ApiError::unauthorized(
                    "a valid read token is required (Authorization: Bearer ...)",
                    vec![HeaderValue::from_static("Bearer realm=\"idch-autoscaler\"")],
                )
                .into_response()
            }
            Err(refused) => return ApiError::new(refused.status, refused.reason).into_response(),
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

/// The User-Agent of Traefik's HTTP provider (Go's default client). Only its fetches end a
/// drain's wait: an operator's `curl` of `/traefik` says nothing about what Traefik routes on.
/// Were Traefik to send another one, drains would wait their cap: slower deletes, never a
/// request sent to a deleted VM.
const TRAEFIK_USER_AGENT: &str = "Go-http-client/";

async fn traefik_handler(AxumState(app): AxumState<AppState>, headers: HeaderMap) -> Response {
    let snap = app.state.load();
    match &snap.traefik {
        Some(body) => {
            let from_traefik = headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ua| ua.starts_with(TRAEFIK_USER_AGENT));
            if from_traefik {
                // Drains wait for this: Traefik has now been given this generation.
                app.state.note_traefik_served(snap.generation);
            }
            json_bytes(body.clone())
        }
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
        assert!(!bearer_matches(&h, &token).unwrap());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert!(bearer_matches(&h, &token).unwrap());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert!(bearer_matches(&h, &token).unwrap());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abd"),
        );
        assert!(!bearer_matches(&h, &token).unwrap());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(!bearer_matches(&h, &token).unwrap());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer ab"));
        assert!(!bearer_matches(&h, &token).unwrap());
    }
}
