//! The write endpoints: scale webhooks (empty body, Grafana or Alertmanager notifications),
//! `PUT /v1/pools/{pool}/desired`, and the activity history.
//!
//! Webhooks answer at once: they only change the desired size; the reconciler does the work.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::control::{ControlError, Outcome, PoolControl};
use crate::pool::decide::{Decision, Direction};

/// Largest accepted webhook body. Alertmanager and Grafana groups are far smaller.
pub const MAX_BODY: usize = 256 * 1024;

/// What a webhook body says, once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleRequest {
    /// A "resolved" notification.
    pub resolved: bool,
    /// The alerts' common `pool` label, if any.
    pub pool: Option<String>,
    /// `empty`, `grafana`, `alertmanager` or `json`.
    pub source: &'static str,
    /// Alert names, for the activity history.
    pub alerts: Vec<String>,
}

#[derive(Deserialize)]
struct Notification {
    version: Option<String>,
    status: Option<String>,
    #[serde(rename = "commonLabels")]
    common_labels: Option<HashMap<String, String>>,
    alerts: Option<Vec<Alert>>,
}

#[derive(Deserialize)]
struct Alert {
    status: Option<String>,
    labels: Option<HashMap<String, String>>,
}

fn parse_status(s: &str, key: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "firing" => Ok(false),
        "resolved" => Ok(true),
        _ => Err(format!(
            "{key} must be \"firing\" or \"resolved\", not {s:?}"
        )),
    }
}

/// Parses a webhook body. Unknown fields are ignored; a malformed body is an error saying why.
pub fn parse(body: &[u8]) -> Result<ScaleRequest, String> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(ScaleRequest {
            resolved: false,
            pool: None,
            source: "empty",
            alerts: vec![],
        });
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    if !value.is_object() {
        return Err(
            "the body must be a JSON object: a Grafana or Alertmanager notification, or empty"
                .into(),
        );
    }
    let n: Notification =
        serde_json::from_value(value).map_err(|e| format!("not a notification: {e}"))?;
    let alerts = n.alerts.unwrap_or_default();
    let resolved = match &n.status {
        Some(s) => parse_status(s, "status")?,
        None => {
            let mut states = Vec::with_capacity(alerts.len());
            for a in &alerts {
                states.push(match &a.status {
                    Some(s) => parse_status(s, "alerts[].status")?,
                    None => false,
                });
            }
            !states.is_empty() && states.iter().all(|r| *r)
        }
    };
    let pool = match n.common_labels.as_ref().and_then(|l| l.get("pool")) {
        Some(p) => Some(p.clone()),
        None => {
            let pools: Vec<&String> = alerts
                .iter()
                .filter_map(|a| a.labels.as_ref().and_then(|l| l.get("pool")))
                .collect();
            match pools.first() {
                Some(first) if pools.len() == alerts.len() && pools.iter().all(|p| p == first) => Some((*first).clone()),
                Some(_) => return Err("the alerts name different pools; send one pool per notification (group_by: [pool])".into()),
                None => None,
            }
        }
    };
    let source = match n.version.as_deref() {
        Some("1") => "grafana",
        Some("4") => "alertmanager",
        _ => "json",
    };
    let mut names: Vec<String> = alerts
        .iter()
        .filter_map(|a| a.labels.as_ref().and_then(|l| l.get("alertname")).cloned())
        .collect();
    names.sort();
    names.dedup();
    Ok(ScaleRequest {
        resolved,
        pool,
        source,
        alerts: names,
    })
}

#[derive(Deserialize)]
pub struct PoolQuery {
    pool: Option<String>,
}

async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes"),
        )
    })
}

fn authenticate(app: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    app.webhook_auth
        .check(headers, body, crate::clock::now())
        .map_err(|why| ApiError::new(StatusCode::UNAUTHORIZED, format!("unauthorized: {why}")))
}

fn find_pool<'a>(
    app: &'a AppState,
    name: &str,
) -> Result<&'a std::sync::Arc<PoolControl>, ApiError> {
    app.controls
        .iter()
        .find(|c| c.config.name == name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no pool named {name:?}")))
}

fn ensure_synced(app: &AppState, pool: &str) -> Result<(), ApiError> {
    let synced = app.state.load().pool(pool).is_some_and(|p| p.synced);
    if synced {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the pool has not been reconciled yet; try again shortly",
        ))
    }
}

fn control_error(e: ControlError) -> ApiError {
    match e {
        ControlError::NotReady => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        ControlError::OutOfBounds { .. } => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
        ControlError::Store(_) => {
            tracing::error!(error = %e, "decision not persisted");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

fn answer(control: &PoolControl, outcome: Outcome, previous: u32) -> Response {
    let mut body = serde_json::json!({
        "pool": control.config.name,
        "decision": outcome.decision.as_str(),
        "desired": outcome.desired,
        "previous": previous,
        "min": control.config.min,
        "max": control.config.max,
    });
    if let Decision::Cooldown { seconds_left } = outcome.decision {
        body["cooldown_seconds_left"] = seconds_left.into();
    }
    (StatusCode::OK, Json(body)).into_response()
}

async fn scale(
    app: AppState,
    direction: Direction,
    path_pool: Option<String>,
    query_pool: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body).await?;
    authenticate(&app, &headers, &body)?;
    let request = parse(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let name = match path_pool.or(query_pool).or(request.pool.clone()) {
        Some(name) => name,
        None if app.controls.len() == 1 => app.controls[0].config.name.clone(),
        None => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "several pools are configured: name one with ?pool=, the path /v1/pools/{pool}/..., or a common `pool` label",
            ))
        }
    };
    let control = find_pool(&app, &name)?;
    ensure_synced(&app, &name)?;
    let previous = control.desired().unwrap_or(0);
    let cause = if request.alerts.is_empty() {
        format!("webhook ({})", request.source)
    } else {
        format!(
            "webhook ({}: {})",
            request.source,
            request.alerts.join(", ")
        )
    };
    let outcome = control
        .scale(direction, request.resolved, &cause, crate::clock::now())
        .map_err(control_error)?;
    Ok(answer(control, outcome, previous))
}

pub async fn scale_up(
    AxumState(app): AxumState<AppState>,
    Query(q): Query<PoolQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    scale(app, Direction::Up, None, q.pool, headers, body).await
}

pub async fn scale_down(
    AxumState(app): AxumState<AppState>,
    Query(q): Query<PoolQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    scale(app, Direction::Down, None, q.pool, headers, body).await
}

pub async fn pool_scale_up(
    AxumState(app): AxumState<AppState>,
    Path(pool): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    scale(app, Direction::Up, Some(pool), None, headers, body).await
}

pub async fn pool_scale_down(
    AxumState(app): AxumState<AppState>,
    Path(pool): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    scale(app, Direction::Down, Some(pool), None, headers, body).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DesiredBody {
    size: u32,
}

pub async fn put_desired(
    AxumState(app): AxumState<AppState>,
    Path(pool): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body).await?;
    authenticate(&app, &headers, &body)?;
    let request: DesiredBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"size\": n}}: {e}"),
        )
    })?;
    let control = find_pool(&app, &pool)?;
    ensure_synced(&app, &pool)?;
    let previous = control.desired().unwrap_or(0);
    let outcome = control
        .set_desired(
            request.size,
            "operator (PUT /v1/pools/{pool}/desired)",
            crate::clock::now(),
        )
        .map_err(control_error)?;
    Ok(answer(control, outcome, previous))
}

#[derive(Deserialize)]
pub struct ActivityQuery {
    limit: Option<u32>,
}

pub async fn activities(
    AxumState(app): AxumState<AppState>,
    Path(pool): Path<String>,
    Query(q): Query<ActivityQuery>,
) -> Result<Response, ApiError> {
    find_pool(&app, &pool)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let list = app.store.activities(&pool, limit).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the history: {e:#}"),
        )
    })?;
    let items: Vec<serde_json::Value> = list
        .into_iter()
        .map(|a| {
            serde_json::json!({
                "id": a.id,
                "at": crate::clock::rfc3339(a.at),
                "action": a.action,
                "cause": a.cause,
                "outcome": a.outcome,
                "detail": a.detail,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "pool": pool, "activities": items })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let r = parse(b"").unwrap();
        assert_eq!(
            (r.resolved, r.pool.as_deref(), r.source),
            (false, None, "empty")
        );
        let r = parse(b"  \n").unwrap();
        assert_eq!(r.source, "empty");

        let grafana_resolved = br#"{"receiver":"x","status":"resolved","orgId":1,"alerts":[{"status":"resolved","labels":{"alertname":"HighCPU","pool":"calculate"},"values":{"A":1.2}}],"commonLabels":{"alertname":"HighCPU","pool":"calculate"},"version":"1","state":"ok","title":"t","message":"m","truncatedAlerts":0}"#;
        let r = parse(grafana_resolved).unwrap();
        assert_eq!(
            (r.resolved, r.pool.as_deref(), r.source),
            (true, Some("calculate"), "grafana")
        );
        assert_eq!(r.alerts, ["HighCPU"]);

        let am_firing = br#"{"version":"4","groupKey":"{}:{}","truncatedAlerts":0,"status":"firing","receiver":"r","groupLabels":{},"commonLabels":{"alertname":"A","pool":"web"},"commonAnnotations":{},"externalURL":"http://x","routeLabels":{},"alerts":[{"status":"firing","labels":{"alertname":"A","pool":"web"},"annotations":{},"startsAt":"2026-01-01T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"a1"}]}"#;
        let r = parse(am_firing).unwrap();
        assert_eq!(
            (r.resolved, r.pool.as_deref(), r.source),
            (false, Some("web"), "alertmanager")
        );

        let am_resolved = br#"{"version":"4","status":"resolved","alerts":[]}"#;
        assert!(parse(am_resolved).unwrap().resolved);

        // No top-level status: resolved only when every alert is.
        assert!(
            parse(br#"{"alerts":[{"status":"resolved"},{"status":"resolved"}]}"#)
                .unwrap()
                .resolved
        );
        assert!(
            !parse(br#"{"alerts":[{"status":"resolved"},{"status":"firing"}]}"#)
                .unwrap()
                .resolved
        );
        // Pool from the alerts when there are no common labels.
        let r = parse(br#"{"alerts":[{"labels":{"pool":"p"}},{"labels":{"pool":"p"}}]}"#).unwrap();
        assert_eq!(r.pool.as_deref(), Some("p"));
    }

    #[test]
    fn malformed_bodies_say_why() {
        for (body, says) in [
            (&b"not json"[..], "not JSON"),
            (b"[1,2]", "JSON object"),
            (b"42", "JSON object"),
            (br#"{"status":"maybe"}"#, "firing"),
            (br#"{"status":5}"#, "invalid type"),
            (br#"{"alerts":"x"}"#, "invalid type"),
            (br#"{"commonLabels":{"pool":3}}"#, "invalid type"),
            (
                br#"{"alerts":[{"labels":{"pool":"a"}},{"labels":{"pool":"b"}}]}"#,
                "different pools",
            ),
        ] {
            let e = parse(body).unwrap_err();
            assert!(e.contains(says), "{:?}: {e}", String::from_utf8_lossy(body));
        }
    }
}
