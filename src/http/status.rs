//! `GET /v1/pools`, `GET /v1/pools/{pool}` and `GET /readyz`: what the service sees.

use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::config::PoolConfig;
use crate::pool::{BackendState, PoolView};
use crate::store::Activity;

#[derive(Serialize)]
struct PoolStatus<'a> {
    name: &'a str,
    /// `run --dry-run`: steps are planned and recorded (`GET .../plan`), none is taken.
    dry_run: bool,
    synced: bool,
    cloud_ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_successful_reconcile: Option<String>,
    seed_vm: &'a str,
    seed_present: bool,
    clone_prefix: &'a str,
    min: u32,
    max: u32,
    /// `null` until the first successful list when nothing was persisted.
    desired: Option<u32>,
    size: usize,
    ready: usize,
    cooldown_seconds_left: Cooldowns,
    /// Clones whose clone call is in flight, or whose outcome is not known yet.
    provisioning: &'a [String],
    backends: Vec<BackendStatus<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_activity: Option<serde_json::Value>,
    /// The latest rolling refresh (`null` when there never was one).
    refresh: Option<super::refresh::RefreshStatus>,
    /// `[[pool.schedule]]`: the floor, the open windows and the next opening.
    schedule: serde_json::Value,
    /// `warm_pool`: `{"size", "max_age", "warm", "warming"}`, or `null` without one.
    warm_pool: Option<serde_json::Value>,
    /// `[pool.target]`: the policy, the last recommendation and why, the manual hold; `null`
    /// without one.
    target: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Cooldowns {
    scale_up: u64,
    scale_down: u64,
}

#[derive(Serialize)]
struct BackendStatus<'a> {
    name: &'a str,
    uuid: &'a str,
    role: &'static str,
    state: &'static str,
    since: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a str>,
    cloud_status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<&'a str>,
}

use crate::clock::rfc3339;

/// The newest activity of each pool, read on a blocking thread (SQLite never runs on the
/// runtime's workers).
async fn last_activities(app: &AppState, pools: Vec<String>) -> Vec<Option<Activity>> {
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || {
        pools
            .iter()
            .map(|p| store.activities(p, 1).ok().and_then(|mut v| v.pop()))
            .collect()
    })
    .await
    .unwrap_or_default()
}

fn status<'a>(
    app: &AppState,
    config: &'a PoolConfig,
    view: &'a PoolView,
    last: Option<Activity>,
) -> PoolStatus<'a> {
    let control = app.controls.iter().find(|c| c.config.name == config.name);
    let now = crate::clock::now();
    let (up, down) = control.map_or((0, 0), |c| c.cooldown_left(now));
    let last_activity = last.map(|a| {
        serde_json::json!({
            "at": rfc3339(a.at), "action": a.action, "cause": a.cause, "outcome": a.outcome, "detail": a.detail,
        })
    });
    let dry_run = app
        .state
        .pool_configs()
        .iter()
        .position(|c| c.name == config.name)
        .is_some_and(|i| app.state.plan(i).dry_run);
    PoolStatus {
        schedule: schedule_status(config, now),
        target: control.and_then(|c| target_status(config, c, now)),
        warm_pool: config.warm_pool.as_ref().map(|w| {
            serde_json::json!({
                "size": w.size,
                "max_age": humantime::format_duration(w.max_age).to_string(),
                "warm": view.count(BackendState::Warm),
                "warming": view.count(BackendState::Warming) + view.count(BackendState::Stopping),
            })
        }),
        dry_run,
        desired: control.and_then(|c| c.desired()),
        cooldown_seconds_left: Cooldowns {
            scale_up: up,
            scale_down: down,
        },
        provisioning: &view.provisioning,
        last_activity,
        refresh: control
            .and_then(|c| c.refresh())
            .as_ref()
            .map(super::refresh::RefreshStatus::from),
        name: &config.name,
        synced: view.synced,
        cloud_ok: view.cloud_ok,
        last_error: view.last_error.as_deref(),
        last_successful_reconcile: view.last_success.map(rfc3339),
        seed_vm: &config.seed_vm,
        seed_present: view.seed_present,
        clone_prefix: &config.clone_prefix,
        min: config.min,
        max: config.max,
        size: view.backends.len(),
        ready: view.count(BackendState::Ready),
        backends: view
            .backends
            .iter()
            .map(|b| BackendStatus {
                name: &b.name,
                uuid: &b.uuid,
                role: b.role.as_str(),
                state: b.state.as_str(),
                since: rfc3339(b.since),
                ip: b.ip.as_deref(),
                cloud_status: &b.cloud_status,
                created_at: b.created_at.as_deref(),
            })
            .collect(),
    }
}

/// `{"query", "target", "interval", "tolerance", "allow_webhooks", "manual_hold_until", "last"}`,
/// `last` being the latest interval's `{"at", "metric", "ratio", "ready", "current",
/// "recommendation", "reason", "applied", "error", "detail"}` (or `null` before the first).
fn target_status(
    config: &PoolConfig,
    control: &crate::control::PoolControl,
    now: f64,
) -> Option<serde_json::Value> {
    let t = config.target.as_ref()?;
    let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
    let last = control.target_status().map(|s| {
        let r = &s.recommendation;
        let cooldown = match s.gate {
            crate::pool::target::Gate::Cooldown { seconds_left } => Some(seconds_left),
            _ => None,
        };
        serde_json::json!({
            "at": rfc3339(s.at),
            "metric": finite(r.metric),
            "ratio": finite(r.ratio),
            "ready": r.ready,
            "current": r.current,
            "recommendation": r.desired,
            "reason": r.reason.as_str(),
            "applied": s.gate.as_str(),
            "cooldown_seconds_left": cooldown,
            "error": s.error,
            "detail": r.describe(),
        })
    });
    Some(serde_json::json!({
        "query": t.query_for(&config.name),
        "target": t.target,
        "interval": humantime::format_duration(t.interval).to_string(),
        "tolerance": t.tolerance,
        "allow_webhooks": t.allow_webhooks,
        "manual_hold_until": control.manual_hold_until().filter(|u| *u > now).map(rfc3339),
        "last": last,
    }))
}

/// `{"floor": n | null, "open": [{"name", "opened", "closes", "min"}], "next": {"name", "at"} | null}`.
fn schedule_status(config: &PoolConfig, now: f64) -> serde_json::Value {
    let windows = crate::pool::schedule::windows(&config.schedule, now);
    let open: Vec<_> = windows
        .open
        .iter()
        .map(|w| {
            serde_json::json!({
                "name": w.name, "opened": rfc3339(w.opened), "closes": rfc3339(w.closes), "min": w.min,
            })
        })
        .collect();
    serde_json::json!({
        "floor": windows.floor(),
        "open": open,
        "next": windows.next.map(|n| serde_json::json!({"name": n.name, "at": rfc3339(n.at)})),
    })
}

pub async fn list_pools(AxumState(app): AxumState<AppState>) -> Response {
    let snap = app.state.load();
    let names = app
        .state
        .pool_configs()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let mut last = last_activities(&app, names).await.into_iter();
    let pools: Vec<PoolStatus> = app
        .state
        .pool_configs()
        .iter()
        .zip(snap.pools.iter())
        .map(|(c, v)| status(&app, c, v, last.next().flatten()))
        .collect();
    Json(serde_json::json!({ "pools": pools })).into_response()
}

pub async fn get_pool(AxumState(app): AxumState<AppState>, Path(name): Path<String>) -> Response {
    let snap = app.state.load();
    let found = app
        .state
        .pool_configs()
        .iter()
        .zip(snap.pools.iter())
        .find(|(c, _)| c.name == name);
    match found {
        Some((c, v)) => {
            let last = last_activities(&app, vec![c.name.clone()])
                .await
                .pop()
                .flatten();
            Json(status(&app, c, v, last)).into_response()
        }
        None => {
            ApiError::new(StatusCode::NOT_FOUND, format!("no pool named {name:?}")).into_response()
        }
    }
}

/// Ready once every pool has synced and while the cloud answers; otherwise 503 with the reasons.
pub async fn readyz(AxumState(app): AxumState<AppState>) -> Response {
    let snap = app.state.load();
    let mut problems = Vec::new();
    for p in &snap.pools {
        if !p.synced {
            problems.push(format!("pool {}: not synced yet", p.name));
        } else if !p.cloud_ok {
            problems.push(format!(
                "pool {}: cloud unreachable, serving the last good view ({})",
                p.name,
                p.last_error.as_deref().unwrap_or("unknown error")
            ));
        }
    }
    if problems.is_empty() {
        Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "not ready", "problems": problems})),
        )
            .into_response()
    }
}
