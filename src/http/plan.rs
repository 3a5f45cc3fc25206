//! `GET /v1/pools/{pool}/plan`: what the pool's reconciler last planned and why, as it published
//! it. Never plans nor calls the cloud itself.

use axum::extract::State as AxumState;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::{ApiError, AppState, PoolName};
use crate::clock::rfc3339;
use crate::snapshot::plan::PlanView;

#[derive(Serialize)]
struct PlanBody<'a> {
    pool: &'a str,
    dry_run: bool,
    computed_at: Option<String>,
    desired: Option<u32>,
    steps: Vec<StepBody<'a>>,
    in_flight: Vec<InFlightBody<'a>>,
    next_check: Option<String>,
}

#[derive(Serialize)]
struct StepBody<'a> {
    action: &'a str,
    vm: &'a str,
    reason: &'a str,
}

#[derive(Serialize)]
struct InFlightBody<'a> {
    vm: &'a str,
    key: &'a str,
    call: &'a str,
}

fn body(view: &PlanView) -> PlanBody<'_> {
    PlanBody {
        pool: &view.pool,
        dry_run: view.dry_run,
        computed_at: view.computed_at.map(rfc3339),
        desired: view.desired,
        steps: view
            .steps
            .iter()
            .map(|s| StepBody {
                action: s.action,
                vm: &s.vm,
                reason: &s.reason,
            })
            .collect(),
        in_flight: view
            .in_flight
            .iter()
            .map(|c| InFlightBody {
                vm: &c.vm,
                key: &c.key,
                call: c.call,
            })
            .collect(),
        next_check: view.next_check.map(rfc3339),
    }
}

/// 404 for an unknown pool; 503 until the pool has synced (its first list and probe rounds).
pub async fn get_plan(AxumState(app): AxumState<AppState>, PoolName(name): PoolName) -> Response {
    let Some(index) = app.state.pool_configs().iter().position(|c| c.name == name) else {
        return ApiError::new(StatusCode::NOT_FOUND, format!("no pool named {name:?}"))
            .into_response();
    };
    if !app.state.load().pools[index].synced {
        let mut resp = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("pool {name}: not synced yet (no plan before the first list and probe rounds)"),
        )
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    }
    let view = app.state.plan(index);
    Json(body(&view)).into_response()
}
