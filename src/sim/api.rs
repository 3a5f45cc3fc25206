//! The HTTP side of the simulator: `/v1/[{location}/]...` as the IDCloudHost API answers it, and the
//! simulator's own `/_sim/state` and `/_sim/faults` (no `apikey` needed).
//!
//! Every API call goes through the same steps, in this order: the `latency` fault, the `apikey`
//! header, routing (unknown location or path: 404), counting, the `fail_next` and `error_rate`
//! faults, parameters (query string and form or JSON body, merged; the body wins), the operation.
//! Each call runs in a task of its own, so a caller that disconnects or times out cancels nothing:
//! like a real cloud, the simulator finishes a clone or a delete whose client hung up.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::Rng;
use serde_json::json;

use super::{Faults, Shared};

pub(super) fn router(sim: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/state", get(sim_state))
        .route("/_sim/faults", get(get_faults).post(post_faults))
        .route(
            "/_sim/vms/{uuid}/version",
            axum::routing::post(post_version),
        )
        .fallback(api_call)
        .with_state(sim)
}

/// An error answer: `{"errors": {"Error": "<message>"}}` with a 4xx/5xx status, as the API sends.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// The documented answer for an unknown VM uuid (get, clone source, delete, stop, start).
    pub(super) fn no_such_vm(uuid: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("No such virtual machine exists. {uuid}"),
        )
    }

    pub(super) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// ASSUMPTION: the IDCloudHost documentation does not show what a missing or wrong `apikey` gets
    /// (its Authentication section only says every request must carry the header), and no public
    /// client or issue we found records it. Client libraries map both 401 and 403 to "authentication
    /// failed". We answer 401 with the API's usual error body; the client must treat 401 and 403 alike.
    fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"errors": {"Error": self.message}})),
        )
            .into_response()
    }
}

/// The operations of the API that the simulator implements.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    VmList,
    VmGet,
    VmModify,
    VmDelete,
    VmClone,
    VmStop,
    VmStart,
    IpList,
    IpDelete(String),
    IpUnassign(String),
    ChargingUsage,
}

impl Op {
    /// The key under which [`super::SimState::calls`] counts it.
    fn name(&self) -> &'static str {
        match self {
            Op::VmList => "vm_list",
            Op::VmGet => "vm_get",
            Op::VmModify => "vm_modify",
            Op::VmDelete => "vm_delete",
            Op::VmClone => "vm_clone",
            Op::VmStop => "vm_stop",
            Op::VmStart => "vm_start",
            Op::IpList => "ip_list",
            Op::IpDelete(_) => "ip_delete",
            Op::IpUnassign(_) => "ip_unassign",
            Op::ChargingUsage => "charging_usage",
        }
    }
}

/// Maps a method and path to an operation. `/v1/{location}/...` must name the simulator's location;
/// `/v1/...` without a slug means that (default) location.
fn route(method: &Method, path: &str, location: &str) -> Result<Op, ApiError> {
    let not_found = || ApiError::not_found(format!("Not found: {path}"));
    let rest = path.strip_prefix("/v1/").ok_or_else(not_found)?;
    let mut segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match segments.first() {
        Some(&"user-resource") | Some(&"network") | Some(&"charging") => {}
        Some(slug) if *slug == location => {
            segments.remove(0);
        }
        Some(slug) => {
            return Err(ApiError::not_found(format!(
                "Location '{slug}' does not exist."
            )))
        }
        None => return Err(not_found()),
    }
    let op = match (method, segments.as_slice()) {
        (&Method::GET, ["user-resource", "vm", "list"]) => Op::VmList,
        (&Method::GET, ["user-resource", "vm"]) => Op::VmGet,
        (&Method::PATCH, ["user-resource", "vm"]) => Op::VmModify,
        (&Method::DELETE, ["user-resource", "vm"]) => Op::VmDelete,
        (&Method::POST, ["user-resource", "vm", "clone"]) => Op::VmClone,
        (&Method::POST, ["user-resource", "vm", "stop"]) => Op::VmStop,
        (&Method::POST, ["user-resource", "vm", "start"]) => Op::VmStart,
        (&Method::GET, ["network", "ip_addresses"]) => Op::IpList,
        (&Method::GET, ["charging", "usage"]) => Op::ChargingUsage,
        (&Method::DELETE, ["network", "ip_addresses", address]) => {
            Op::IpDelete(address.to_string())
        }
        (&Method::POST, ["network", "ip_addresses", address, "unassign"]) => {
            Op::IpUnassign(address.to_string())
        }
        (
            _,
            ["user-resource", "vm"]
            | ["user-resource", "vm", "list" | "clone" | "stop" | "start"]
            | ["network", "ip_addresses"]
            | ["network", "ip_addresses", _]
            | ["network", "ip_addresses", _, "unassign"]
            | ["charging", "usage"],
        ) => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("Method {method} is not allowed on {path}"),
            ))
        }
        _ => return Err(not_found()),
    };
    Ok(op)
}

/// Request parameters: the query string, then the body (form-encoded, or a JSON object), merged.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Result<Params, ApiError> {
        let mut pairs: Vec<(String, String)> = match uri.query() {
            Some(query) => serde_urlencoded::from_str(query)
                .map_err(|err| ApiError::bad_request(format!("Invalid query string: {err}")))?,
            None => Vec::new(),
        };
        if !body.iter().all(u8::is_ascii_whitespace) {
            let is_json = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().starts_with("application/json"));
            if is_json {
                let object: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(body).map_err(|err| {
                        ApiError::bad_request(format!("Invalid JSON body: {err}"))
                    })?;
                for (key, value) in object {
                    let text = match value {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => continue,
                        other => other.to_string(),
                    };
                    pairs.push((key, text));
                }
            } else {
                let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                    .map_err(|err| ApiError::bad_request(format!("Invalid form body: {err}")))?;
                pairs.extend(form);
            }
        }
        Ok(Params(pairs))
    }

    /// The last value given for `key` (the body's, when both carry it), if not blank.
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, key: &str) -> Result<&str, ApiError> {
        self.get(key)
            .ok_or_else(|| ApiError::bad_request(format!("Missing required parameter: {key}")))
    }
}

/// Compares without an early exit, so the time taken says nothing about the key.
fn same_key(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn api_call(
    State(sim): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Dropping this handler's future (the client went away) only drops the JoinHandle: the call
    // itself runs on to its end.
    let call = tokio::spawn(async move {
        match handle(&sim, &method, &uri, &headers, &body).await {
            Ok(response) => response,
            Err(err) => {
                tracing::debug!(%method, %uri, status = %err.status, message = %err.message, "simulated API error");
                err.into_response()
            }
        }
    });
    match call.await {
        Ok(response) => response,
        Err(err) => {
            tracing::error!(%err, "a simulated API call panicked");
            ApiError::internal("Internal Server Error (the simulator failed)").into_response()
        }
    }
}

async fn handle(
    sim: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let faults = sim.faults();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }

    let key_ok = headers
        .get("apikey")
        .is_some_and(|v| same_key(v.as_bytes(), sim.config.api_key.as_bytes()));
    if !key_ok {
        sim.world().unauthorized += 1;
        return Err(ApiError::unauthorized());
    }

    let op = route(method, uri.path(), &sim.config.location)?;
    {
        let mut world = sim.world();
        *world.calls.entry(op.name()).or_insert(0) += 1;
        let fail = if world.faults.fail_next > 0 {
            world.faults.fail_next -= 1;
            true
        } else {
            faults.error_rate > 0.0 && rand::thread_rng().gen::<f64>() < faults.error_rate
        };
        if fail {
            world.injected_errors += 1;
            return Err(ApiError::internal(
                "Internal Server Error (fault injected by the simulator)",
            ));
        }
    }

    let params = Params::parse(uri, headers, body)?;
    let cfg = &sim.config;
    match op {
        Op::VmList => Ok(Json(sim.world().vm_jsons(cfg)).into_response()),
        Op::VmGet => {
            let uuid = params.required("uuid")?;
            let vm = sim.world().vm_json(uuid, cfg);
            vm.map(|vm| Json(vm).into_response())
                .ok_or_else(|| ApiError::no_such_vm(uuid))
        }
        Op::VmModify => {
            let uuid = params.required("uuid")?;
            match params.get("name") {
                Some(name) => Ok(Json(sim.rename_vm(uuid, name)?).into_response()),
                None => {
                    let vm = sim.world().vm_json(uuid, cfg);
                    vm.map(|vm| Json(vm).into_response())
                        .ok_or_else(|| ApiError::no_such_vm(uuid))
                }
            }
        }
        Op::VmClone => {
            let source = params.required("uuid")?;
            let name = params.required("name")?;
            if !faults.clone_late.is_zero() {
                tracing::info!(late = ?faults.clone_late, name, "clone delayed before the VM exists (fault)");
                tokio::time::sleep(faults.clone_late).await;
            }
            let vm = sim.clone_vm(source, name).await?;
            if !faults.clone_hang.is_zero() {
                tracing::info!(hang = ?faults.clone_hang, "clone created; holding the answer (fault)");
                tokio::time::sleep(faults.clone_hang).await;
            }
            Ok(Json(vm).into_response())
        }
        Op::VmDelete => {
            let uuid = params.required("uuid")?;
            sim.delete_vm(uuid).await?;
            // The documentation shows no success body for delete; this is the API's usual one.
            Ok(Json(json!({"success": true})).into_response())
        }
        Op::VmStop => {
            let uuid = params.required("uuid")?;
            // `force` (default false) is a hard power-off on the real cloud (E.2.1). The sample
            // workload keeps nothing on disk, so both kinds of stop kill it; the value is checked.
            let force = match params.get("force") {
                None => false,
                Some(text) => parse_bool(text).ok_or_else(|| {
                    ApiError::bad_request(format!("force: `{text}` is not a boolean"))
                })?,
            };
            tracing::debug!(uuid, force, "stop");
            // Answers once the VM is down, with status `stopped` (the doc's example).
            Ok(Json(sim.stop_vm(uuid).await?).into_response())
        }
        Op::VmStart => {
            let uuid = params.required("uuid")?;
            // UNVERIFIED (PROTOCOLS.md E.2.1): the doc shows only the error body of a start; the
            // simulator answers the VM object (status `starting`), as the Go client library decodes one.
            if faults.start_fails {
                return Err(ApiError::bad_request(format!(
                    "Cannot start the virtual machine {uuid} now (fault injected by the simulator)"
                )));
            }
            Ok(Json(sim.start_vm(uuid)?).into_response())
        }
        Op::ChargingUsage => {
            let text = params.required("billing_account_id")?;
            let billing = text.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "billing_account_id: `{text}` is not a whole number"
                ))
            })?;
            let rows = sim.world().charging_rows(cfg, billing, chrono::Utc::now());
            Ok(Json(rows).into_response())
        }
        Op::IpList => {
            let billing = match params.get("billing_account_id") {
                Some(text) => Some(text.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "billing_account_id: `{text}` is not a whole number"
                    ))
                })?),
                None => None,
            };
            let ips = sim
                .world()
                .floating_ip_jsons(cfg, billing, params.get("vm_uuid"));
            Ok(Json(ips).into_response())
        }
        Op::IpDelete(address) => {
            if sim.world().remove_floating_ip(&address) {
                tracing::info!(%address, "simulated floating IP released");
                Ok(StatusCode::OK.into_response())
            } else {
                Err(no_such_ip(&address))
            }
        }
        Op::IpUnassign(address) => {
            let mut world = sim.world();
            let ip = world
                .floating_ip_mut(&address)
                .ok_or_else(|| no_such_ip(&address))?;
            ip.assigned_to = None;
            ip.updated_at = Some(chrono::Utc::now());
            let json = world.floating_ip_json_by_address(&address, cfg);
            Ok(Json(json).into_response())
        }
    }
}

/// A form boolean: `true`/`false` in any case (the doc writes `force=True`), or `1`/`0`.
fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn no_such_ip(address: &str) -> ApiError {
    ApiError::not_found(format!("No such floating IP exists. {address}"))
}

async fn sim_state(State(sim): State<Arc<Shared>>) -> Response {
    Json(sim.state()).into_response()
}

async fn get_faults(State(sim): State<Arc<Shared>>) -> Response {
    Json(sim.faults()).into_response()
}

/// Replaces the faults with the JSON body (missing fields: off); answers the faults now in force.
async fn post_faults(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(faults) => faults,
        Err(err) => {
            return ApiError::bad_request(format!("Invalid faults: {err}")).into_response();
        }
    };
    if let Err(message) = faults.validate() {
        return ApiError::bad_request(message).into_response();
    }
    tracing::info!(?faults, "simulator faults changed");
    sim.world().faults = faults.clone();
    Json(faults).into_response()
}

/// A deploy: `{"version": "..."}` becomes what the VM's app reports at `GET /version`.
async fn post_version(
    State(sim): State<Arc<Shared>>,
    axum::extract::Path(uuid): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Deploy {
        version: String,
    }
    let deploy: Deploy = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(err) => {
            return ApiError::bad_request(format!(
                "Invalid deploy, want {{\"version\": \"...\"}}: {err}"
            ))
            .into_response()
        }
    };
    let version = deploy.version.trim();
    if version.is_empty() || version.len() > 64 || version.chars().any(char::is_control) {
        return ApiError::bad_request("version must be 1 to 64 printable characters")
            .into_response();
    }
    match sim.deploy(&uuid, version) {
        Ok(()) => Json(json!({"uuid": uuid, "version": version})).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_with_and_without_location() {
        let get = Method::GET;
        assert_eq!(
            route(&get, "/v1/jkt01/user-resource/vm/list", "jkt01").unwrap(),
            Op::VmList
        );
        assert_eq!(
            route(&get, "/v1/user-resource/vm/list", "jkt01").unwrap(),
            Op::VmList
        );
        assert_eq!(
            route(&get, "/v1/user-resource/vm/list/", "jkt01").unwrap(),
            Op::VmList
        );
        assert_eq!(
            route(
                &Method::DELETE,
                "/v1/jkt01/network/ip_addresses/203.0.113.1",
                "jkt01"
            )
            .unwrap(),
            Op::IpDelete("203.0.113.1".into())
        );
        let err = route(&get, "/v1/sgp01/user-resource/vm/list", "jkt01").unwrap_err();
        assert_eq!(err.status, StatusCode::NOT_FOUND);
        let err = route(&Method::PUT, "/v1/user-resource/vm", "jkt01").unwrap_err();
        assert_eq!(err.status, StatusCode::METHOD_NOT_ALLOWED);
        let err = route(&get, "/v2/user-resource/vm", "jkt01").unwrap_err();
        assert_eq!(err.status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn params_merge_query_and_body() {
        let uri: Uri = "/v1/user-resource/vm/clone?uuid=a&name=q".parse().unwrap();
        let mut headers = HeaderMap::new();
        let body = Bytes::from_static(b"name=from+body");
        let params = Params::parse(&uri, &headers, &body).unwrap();
        assert_eq!(params.get("uuid"), Some("a"));
        assert_eq!(params.get("name"), Some("from body"));
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let body = Bytes::from_static(br#"{"name": "j", "vcpu": 2}"#);
        let params = Params::parse(&uri, &headers, &body).unwrap();
        assert_eq!(params.get("name"), Some("j"));
        assert_eq!(params.get("vcpu"), Some("2"));
        assert!(params.required("missing").is_err());
    }

    #[test]
    fn key_comparison() {
        assert!(same_key(b"abc", b"abc"));
        assert!(!same_key(b"abd", b"abc"));
        assert!(!same_key(b"ab", b"abc"));
    }
}
