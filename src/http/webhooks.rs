//! The write endpoints: scale webhooks (empty body, Grafana or Alertmanager notifications),
//! `PUT /v1/pools/{pool}/desired`, and the activity history.
//!
//! Webhooks answer at once: they only change the desired size; the reconciler does the work.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{RawQuery, State as AxumState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::{single_header, Accepted};
use super::{ApiError, AppState, PoolName};
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

/// The query parameters of a request: each of `allowed` at most once, nothing else, so a typo
/// (`?limt=5`) or an ambiguous repetition (`?pool=a&pool=b`) is a 400 instead of being ignored.
pub fn parse_query(
    raw: Option<&str>,
    allowed: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let bad = |why: String| ApiError::new(StatusCode::BAD_REQUEST, why);
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| bad(format!("the query string cannot be decoded: {e}")))?;
    let mut out = HashMap::new();
    for (key, value) in pairs {
        if !allowed.contains(&key.as_str()) {
            let known = if allowed.is_empty() {
                "this endpoint takes none".to_string()
            } else {
                format!("known: {}", allowed.join(", "))
            };
            return Err(bad(format!("unknown query parameter {key:?} ({known})")));
        }
        if out.contains_key(&key) {
            return Err(bad(format!(
                "the query parameter {key:?} is given more than once; give it once"
            )));
        }
        out.insert(key, value);
    }
    Ok(out)
}

pub(super) async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes"),
        )
    })
}

/// A body is empty when it holds only whitespace (the same rule as [`parse`]).
fn is_empty_body(body: &[u8]) -> bool {
    body.iter().all(|b| b.is_ascii_whitespace())
}

/// A non-empty body must be declared as uncompressed JSON: `Content-Type: application/json`
/// (a `charset` other than UTF-8 is refused) and no `Content-Encoding` but `identity`.
/// Grafana and Alertmanager send exactly that; anything else is a 415 saying what is accepted.
pub fn check_content_type(headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    if is_empty_body(body) {
        return Ok(());
    }
    let refused = |status: StatusCode, why: String| ApiError::new(status, why);
    let to_api = |r: super::auth::Refused| ApiError::new(r.status, r.reason);
    const ACCEPTED: &str =
        "send the body as Content-Type: application/json (optionally with charset=utf-8), or send no body";
    if let Some(encoding) =
        single_header(headers, header::CONTENT_ENCODING.as_str()).map_err(to_api)?
    {
        if !encoding.trim().eq_ignore_ascii_case("identity") {
            return Err(refused(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Encoding {encoding:?} is not accepted: send the body uncompressed \
                     (Grafana and Alertmanager do)"
                ),
            ));
        }
    }
    let Some(value) = single_header(headers, header::CONTENT_TYPE.as_str()).map_err(to_api)? else {
        return Err(refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("a body without a Content-Type: {ACCEPTED}"),
        ));
    };
    let parsed: Option<mime::Mime> = value.parse().ok();
    let json = parsed.as_ref().is_some_and(|m| {
        m.type_() == mime::APPLICATION && m.subtype() == mime::JSON && m.suffix().is_none()
    });
    if !json {
        return Err(refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type {value:?} is not accepted: {ACCEPTED}"),
        ));
    }
    let charset = parsed.as_ref().and_then(|m| m.get_param(mime::CHARSET));
    if let Some(charset) = charset {
        if charset != mime::UTF_8 {
            return Err(refused(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "charset {:?} is not accepted: JSON is UTF-8",
                    charset.as_str()
                ),
            ));
        }
    }
    Ok(())
}

/// The common start of a `/v1` write with no query parameters: the body (up to [`MAX_BODY`]),
/// its credentials, no query, and a JSON content type when it has a body.
pub(super) async fn accept_write(
    app: &AppState,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(bytes::Bytes, Accepted), ApiError> {
    let body = read_body(body).await?;
    let accepted = authenticate(app, headers, &body)?;
    parse_query(query, &[])?;
    check_content_type(headers, &body)?;
    Ok((body, accepted))
}

pub(super) fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Accepted, ApiError> {
    app.webhook_auth
        .check(headers, body, crate::clock::now())
        .map_err(|refused| {
            if refused.status == StatusCode::UNAUTHORIZED {
                ApiError::unauthorized(
                    format!("unauthorized: {}", refused.reason),
                    app.webhook_auth.challenges(),
                )
            } else {
                ApiError::new(refused.status, refused.reason)
            }
        })
}

/// Uses up a signed request just before it is acted on: the same signature again is a replay
/// (401), also after a restart. A request refused earlier (400, 404, 503) is not used up, so
/// its sender may retry it.
pub(super) fn claim(app: &AppState, accepted: &Accepted) -> Result<(), ApiError> {
    let Accepted::Signature { signature, expires } = accepted else {
        return Ok(());
    };
    let now = crate::clock::now();
    match app.store.claim_signature(signature, now, *expires) {
        Ok(None) => Ok(()),
        Ok(Some(seen_at)) => Err(ApiError::unauthorized(
            format!(
                "unauthorized: replayed request: this signature was already accepted at {}; \
                 a new notification carries a new timestamp or body",
                crate::clock::rfc3339(seen_at)
            ),
            app.webhook_auth.challenges(),
        )),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot record a signature");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot record the signature against replays: {e:#}"),
            ))
        }
    }
}

/// Runs store work (SQLite, with its fsyncs) on a blocking thread.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the store call failed: {e}"),
        )
    })?
}

pub(super) fn find_pool<'a>(
    app: &'a AppState,
    name: &str,
) -> Result<&'a std::sync::Arc<PoolControl>, ApiError> {
    app.controls
        .iter()
        .find(|c| c.config.name == name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no pool named {name:?}")))
}

pub(super) fn ensure_synced(app: &AppState, pool: &str) -> Result<(), ApiError> {
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
        ControlError::BelowFloor { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
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
    let accepted = authenticate(&app, &headers, &body)?;
    check_content_type(&headers, &body)?;
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
    // The signature is used up and the decision made durable on a blocking thread: SQLite's
    // fsync never runs on the runtime's workers, and the answer waits for both.
    let control = control.clone();
    let outcome = {
        let (app, control) = (app.clone(), control.clone());
        blocking(move || {
            claim(&app, &accepted)?;
            control
                .scale(direction, request.resolved, &cause, crate::clock::now())
                .map_err(control_error)
        })
        .await?
    };
    Ok(answer(&control, outcome, previous))
}

pub async fn scale_up(
    AxumState(app): AxumState<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let pool = parse_query(query.as_deref(), &["pool"])?.remove("pool");
    scale(app, Direction::Up, None, pool, headers, body).await
}

pub async fn scale_down(
    AxumState(app): AxumState<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let pool = parse_query(query.as_deref(), &["pool"])?.remove("pool");
    scale(app, Direction::Down, None, pool, headers, body).await
}

pub async fn pool_scale_up(
    AxumState(app): AxumState<AppState>,
    PoolName(pool): PoolName,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    parse_query(query.as_deref(), &[])?;
    scale(app, Direction::Up, Some(pool), None, headers, body).await
}

pub async fn pool_scale_down(
    AxumState(app): AxumState<AppState>,
    PoolName(pool): PoolName,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    parse_query(query.as_deref(), &[])?;
    scale(app, Direction::Down, Some(pool), None, headers, body).await
}

/// The only accepted shape of `PUT /v1/pools/{pool}/desired`: `{"size": n}`, `n` a whole number.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DesiredBody {
    size: u32,
}

/// Parses `{"size": n}`: an object with exactly the key `size` (once), whose value is a whole
/// number from 0 to 4294967295. Anything else (an array, a string, `-1`, `1.5`, extra keys) is
/// an error saying why. Bounds (`min..=max`) are the pool's to check.
pub fn parse_desired(body: &[u8]) -> Result<u32, String> {
    const SHAPE: &str = "expected a JSON object {\"size\": n} with n a whole number";
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("{SHAPE}: the body is not JSON: {e}"))?;
    let kind = match &value {
        serde_json::Value::Object(_) => None,
        serde_json::Value::Array(_) => Some("an array"),
        serde_json::Value::String(_) => Some("a string"),
        serde_json::Value::Number(_) => Some("a number"),
        serde_json::Value::Bool(_) => Some("a boolean"),
        serde_json::Value::Null => Some("null"),
    };
    if let Some(kind) = kind {
        return Err(format!("{SHAPE}, not {kind}"));
    }
    if let Some(size) = value.get("size") {
        if size.as_u64().is_some_and(|n| n > u64::from(u32::MAX)) {
            return Err(format!("{SHAPE}: size {size} is too large"));
        }
        if !size.is_u64() {
            let why = match size {
                serde_json::Value::Number(n) if n.is_i64() => "negative",
                serde_json::Value::Number(_) => "not a whole number",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "not a number",
            };
            return Err(format!("{SHAPE}: size {size} is {why}"));
        }
    }
    // From the bytes again, so a repeated key is refused rather than the last one winning.
    let request: DesiredBody = serde_json::from_slice(body).map_err(|e| format!("{SHAPE}: {e}"))?;
    Ok(request.size)
}

pub async fn put_desired(
    AxumState(app): AxumState<AppState>,
    PoolName(pool): PoolName,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (body, accepted) = accept_write(&app, query.as_deref(), &headers, body).await?;
    let size = parse_desired(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let control = find_pool(&app, &pool)?;
    ensure_synced(&app, &pool)?;
    let previous = control.desired().unwrap_or(0);
    let cause = format!("operator (PUT /v1/pools/{}/desired)", control.config.name);
    let control = control.clone();
    let outcome = {
        let (app, control) = (app.clone(), control.clone());
        blocking(move || {
            claim(&app, &accepted)?;
            control
                .set_desired(size, &cause, crate::clock::now())
                .map_err(control_error)
        })
        .await?
    };
    Ok(answer(&control, outcome, previous))
}

/// Largest `?limit=` of the activity history.
pub const MAX_LIMIT: u32 = 1000;

pub async fn activities(
    AxumState(app): AxumState<AppState>,
    PoolName(pool): PoolName,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_query(query.as_deref(), &["limit"])?;
    let limit = match q.get("limit") {
        None => 100,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("limit must be a whole number from 1 to {MAX_LIMIT}, not {text:?}"),
                ))
            }
        },
    };
    find_pool(&app, &pool)?;
    let (store, name) = (app.store.clone(), pool.clone());
    let list = blocking(move || {
        store.activities(&name, limit).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the history: {e:#}"),
            )
        })
    })
    .await?;
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
    fn only_the_documented_desired_shape_is_accepted() {
        assert_eq!(parse_desired(br#"{"size": 3}"#), Ok(3));
        assert_eq!(parse_desired(br#" {"size":0} "#), Ok(0));
        assert_eq!(parse_desired(br#"{"size":4294967295}"#), Ok(u32::MAX));
        for (body, says) in [
            (&b"[3]"[..], "not an array"),
            (b"3", "not a number"),
            (br#""3""#, "not a string"),
            (b"null", "not null"),
            (br#"{"size":"3"}"#, "is a string"),
            (br#"{"size":-1}"#, "is negative"),
            (br#"{"size":1.5}"#, "not a whole number"),
            (br#"{"size":1.0}"#, "not a whole number"),
            (br#"{"size":null}"#, "is null"),
            (br#"{"size":4294967296}"#, "too large"),
            (br#"{"size":3,"force":true}"#, "unknown field"),
            (br#"{"size":3,"size":4}"#, "duplicate field"),
            (br#"{}"#, "missing field"),
            (b"", "not JSON"),
        ] {
            let e = parse_desired(body).unwrap_err();
            assert!(e.contains(says), "{:?}: {e}", String::from_utf8_lossy(body));
            assert!(e.contains("{\"size\": n}"), "{e}");
        }
    }

    #[test]
    fn a_body_must_be_declared_uncompressed_json() {
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, axum::http::HeaderValue::from_static(v));
            }
            h
        };
        let ok = |h: &HeaderMap, body: &[u8]| check_content_type(h, body).is_ok();
        let json = with(&[("content-type", "application/json")]);
        assert!(ok(&json, b"{}"));
        assert!(ok(
            &with(&[("content-type", "application/json; charset=utf-8")]),
            b"{}"
        ));
        assert!(ok(
            &with(&[("content-type", "Application/JSON; charset=\"UTF-8\"")]),
            b"{}"
        ));
        assert!(ok(&HeaderMap::new(), b""), "an empty body needs no type");
        assert!(ok(&with(&[("content-type", "text/plain")]), b" \n"));
        for (h, says) in [
            (HeaderMap::new(), "without a Content-Type"),
            (with(&[("content-type", "text/plain")]), "application/json"),
            (with(&[("content-type", "image/png")]), "application/json"),
            (
                with(&[("content-type", "application/json-seq")]),
                "application/json",
            ),
            (
                with(&[("content-type", "application/json; charset=latin1")]),
                "UTF-8",
            ),
            (
                with(&[
                    ("content-type", "application/json"),
                    ("content-encoding", "gzip"),
                ]),
                "uncompressed",
            ),
        ] {
            let e = check_content_type(&h, b"{}").unwrap_err();
            assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{h:?}");
            assert!(e.message.contains(says), "{h:?}: {}", e.message);
        }
        let two = with(&[
            ("content-type", "application/json"),
            ("content-type", "text/plain"),
        ]);
        assert_eq!(
            check_content_type(&two, b"{}").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn query_parameters_are_known_and_given_once() {
        assert!(parse_query(None, &["pool"]).unwrap().is_empty());
        assert_eq!(
            parse_query(Some("pool=a%20b"), &["pool"]).unwrap()["pool"],
            "a b"
        );
        let e = parse_query(Some("pool=a&pool=b"), &["pool"]).unwrap_err();
        assert!(e.message.contains("more than once"), "{}", e.message);
        let e = parse_query(Some("limt=5"), &["limit"]).unwrap_err();
        assert!(
            e.message.contains("unknown query parameter \"limt\""),
            "{}",
            e.message
        );
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
