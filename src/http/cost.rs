//! `GET /v1/pools/{pool}/cost?since=RFC3339&until=RFC3339`: what the pool's VMs cost in a
//! window, from the lifecycle record (read on a blocking thread) priced at the pool's `price`.

use axum::extract::{RawQuery, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Datelike, TimeZone, Utc};

use super::webhooks::{blocking, find_pool, parse_query};
use super::{ApiError, AppState, PoolName};
use crate::pool::cost::{cost, Prices};

fn bad(why: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, why)
}

/// An RFC 3339 time as Unix seconds.
fn parse_time(key: &str, text: &str) -> Result<f64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis() as f64 / 1000.0)
        .map_err(|e| {
            bad(format!(
                "{key} must be an RFC 3339 time like 2026-01-31T00:00:00Z, not {text:?} ({e})"
            ))
        })
}

/// RFC 3339, UTC, in milliseconds: the window as priced (`until` is now when it was later).
fn at(unix: f64) -> String {
    Utc.timestamp_millis_opt((unix * 1000.0).round() as i64)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The first instant of `now`'s month, UTC.
fn month_start(now: f64) -> f64 {
    let t = Utc
        .timestamp_millis_opt((now * 1000.0) as i64)
        .single()
        .unwrap_or_default();
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .map(|m| m.timestamp() as f64)
        .unwrap_or(0.0)
}

/// IDCloudHost's own month-to-date figures for the VMs of these intervals, when
/// `billing_account_id` is set: `null` without one, `{"error"}` until a fetch succeeded.
fn billed_json(app: &AppState, intervals: &[crate::pool::cost::Interval]) -> serde_json::Value {
    if app.charging.billing_account_id.is_none() {
        return serde_json::Value::Null;
    }
    let Some(last) = app.charging.last() else {
        return serde_json::json!({
            "source": "charging/usage", "error": "not fetched yet: the first fetch runs at start",
        });
    };
    match &last.rows {
        Err(e) => serde_json::json!({
            "source": "charging/usage", "fetched_at": at(last.at), "error": e,
        }),
        Ok(rows) => {
            let uuids = intervals.iter().map(|i| i.uuid.as_str()).collect();
            let (running, stopped, cost, vms) = crate::billing::billed(rows, &uuids);
            serde_json::json!({
                "source": "charging/usage",
                "fetched_at": at(last.at),
                "month_to_date": true,
                "vm_hours": { "running": running, "stopped": stopped },
                "cost": cost,
                "vms": vms,
            })
        }
    }
}

/// 404 for an unknown pool; 400 for a time that does not parse, `since` not before `until`,
/// or `since` in the future. An `until` after now is now.
pub async fn get_cost(
    AxumState(app): AxumState<AppState>,
    PoolName(pool): PoolName,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_query(query.as_deref(), &["since", "until"])?;
    let now = crate::clock::now();
    let since = match q.get("since") {
        Some(t) => parse_time("since", t)?,
        None => month_start(now),
    };
    let until = match q.get("until") {
        Some(t) => parse_time("until", t)?,
        None => now,
    };
    if since >= now {
        return Err(bad(format!(
            "since ({}) is in the future; the record ends now",
            at(since)
        )));
    }
    if since >= until {
        return Err(bad(format!(
            "since ({}) must be before until ({})",
            at(since),
            at(until)
        )));
    }
    // Nothing is known after now: a window reaching into the future ends now.
    let until = until.min(now);
    let price = find_pool(&app, &pool)?.config.price.clone();
    let (store, name) = (app.store.clone(), pool.clone());
    let intervals = blocking(move || {
        store.lifetimes(&name, since, until).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the lifecycle record: {e:#}"),
            )
        })
    })
    .await?;
    let c = cost(&intervals, since, until, Prices::of(&price));
    let billed = billed_json(&app, &intervals);
    Ok(Json(serde_json::json!({
        "pool": pool,
        "since": at(since),
        "until": at(until),
        "currency": price.currency,
        "vm_hours": {
            "running": c.running_seconds / 3600.0,
            "stopped": c.stopped_seconds / 3600.0,
        },
        "cost": c.cost,
        "peak_vms": c.peak_vms,
        "fixed_peak_cost": c.fixed_peak_cost,
        "saving": c.saving,
        "prices": {
            "running_per_hour": price.running_per_hour,
            "stopped_per_hour": price.stopped_per_hour,
        },
        "billed": billed,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_window_starts_at_the_month() {
        // 2026-12-01T15:38:06Z → 2026-12-01T00:00:00Z; 2026-03-31T23:59:59Z → 2026-03-01.
        assert_eq!(month_start(1_796_139_486.0), 1_796_083_200.0);
        assert_eq!(month_start(1_775_001_599.0), 1_772_323_200.0);
        assert!(parse_time("since", "yesterday").is_err());
        assert_eq!(
            parse_time("since", "2026-12-01T07:00:00+07:00").unwrap(),
            1_796_083_200.0
        );
    }
}
