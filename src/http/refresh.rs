//! `POST` / `DELETE /v1/pools/{pool}/refresh`: start and cancel a rolling refresh, and the
//! refresh's wire shape (also part of `GET /v1/pools/{pool}`). A start is durable before its
//! 202; the reconciler does the work.

use axum::body::Body;
use axum::extract::{RawQuery, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::webhooks::{accept_write, blocking, claim, ensure_synced, find_pool};
use super::{ApiError, AppState, PoolName};
use crate::clock::rfc3339;
use crate::control::RefreshError;
use crate::pool::refresh::Refresh;

/// A refresh as the API shows it.
#[derive(Debug, Serialize)]
pub struct RefreshStatus {
    pub id: String,
    pub state: &'static str,
    pub started: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    pub replaced: u32,
    pub total: u32,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl From<&Refresh> for RefreshStatus {
    fn from(r: &Refresh) -> Self {
        RefreshStatus {
            id: r.id.clone(),
            state: r.state.as_str(),
            started: rfc3339(r.started),
            finished: r.finished.map(rfc3339),
            replaced: r.replaced,
            total: r.total,
            reason: r.reason.clone(),
            version: r.version.clone(),
        }
    }
}

/// The optional body of a start: why (shown in the refresh and the history).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    #[serde(default)]
    reason: Option<String>,
}

/// Longest accepted `reason`.
const MAX_REASON: usize = 200;

fn parse_start(body: &[u8]) -> Result<Option<String>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let request: StartRequest = serde_json::from_slice(body).map_err(|e| {
        format!("the body must be empty or a JSON object {{\"reason\": \"...\"}}: {e}")
    })?;
    match request.reason {
        Some(r) if r.trim().is_empty() => Err("reason must not be blank".into()),
        Some(r) if r.chars().count() > MAX_REASON => {
            Err(format!("reason must be at most {MAX_REASON} characters"))
        }
        Some(r) if r.chars().any(char::is_control) => {
            Err("reason must not contain control characters".into())
        }
        other => Ok(other),
    }
}

fn refresh_error(e: RefreshError) -> Response {
    match e {
        RefreshError::Running(r) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({
                "error": "a refresh is already running; cancel it with DELETE first",
                "refresh": RefreshStatus::from(r.as_ref()),
            })),
        )
            .into_response(),
        RefreshError::NotRunning(last) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({
                "error": "no refresh is running",
                "refresh": last.as_deref().map(RefreshStatus::from),
            })),
        )
            .into_response(),
        RefreshError::NoSeed => ApiError::new(StatusCode::CONFLICT, e.to_string()).into_response(),
        RefreshError::Store(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}

pub async fn start(
    AxumState(app): AxumState<AppState>,
    PoolName(pool): PoolName,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (body, accepted) = accept_write(&app, query.as_deref(), &headers, body).await?;
    let reason = parse_start(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let control = find_pool(&app, &pool)?.clone();
    ensure_synced(&app, &pool)?;
    // What exists, as last published: the old clones (`provisioning` is exactly the clone
    // calls not resolved yet).
    let snap = app.state.load();
    let view = snap
        .pool(&pool)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no pool named {pool:?}")))?;
    let (backends, unresolved, seed_present) = (
        view.backends.clone(),
        view.provisioning.clone(),
        view.seed_present,
    );
    let cause = match reason {
        Some(r) => format!("operator (POST /v1/pools/{pool}/refresh): {r}"),
        None => format!("operator (POST /v1/pools/{pool}/refresh)"),
    };
    let result = blocking(move || {
        claim(&app, &accepted)?;
        Ok(control.start_refresh(
            &backends,
            &unresolved,
            seed_present,
            &cause,
            crate::clock::now(),
        ))
    })
    .await?;
    Ok(match result {
        Ok(r) => (StatusCode::ACCEPTED, Json(RefreshStatus::from(&r))).into_response(),
        Err(e) => refresh_error(e),
    })
}

pub async fn cancel(
    AxumState(app): AxumState<AppState>,
    PoolName(pool): PoolName,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (body, accepted) = accept_write(&app, query.as_deref(), &headers, body).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "DELETE /v1/pools/{pool}/refresh takes no body",
        ));
    }
    let control = find_pool(&app, &pool)?.clone();
    let cause = format!("operator (DELETE /v1/pools/{pool}/refresh)");
    let result = blocking(move || {
        claim(&app, &accepted)?;
        Ok(control.cancel_refresh(&cause, crate::clock::now()))
    })
    .await?;
    Ok(match result {
        Ok(r) => (StatusCode::OK, Json(RefreshStatus::from(&r))).into_response(),
        Err(e) => refresh_error(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_takes_no_body_or_a_reason_and_refuses_the_rest() {
        assert_eq!(parse_start(b""), Ok(None));
        assert_eq!(parse_start(b" \n"), Ok(None));
        assert_eq!(parse_start(b"{}"), Ok(None));
        assert_eq!(
            parse_start(br#"{"reason": "deploy v2"}"#),
            Ok(Some("deploy v2".into()))
        );
        for bad in [
            &br#"{"reason": ""}"#[..],
            br#"{"reason": 3}"#,
            br#"{"size": 3}"#,
            b"[1]",
            b"deploy",
            br#"{"reason": "a\u0007b"}"#,
        ] {
            assert!(
                parse_start(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!(r#"{{"reason": "{}"}}"#, "x".repeat(201));
        assert!(parse_start(long.as_bytes()).unwrap_err().contains("200"));
    }
}
