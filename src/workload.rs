//! The sample workload (`idch-autoscaler calculate`): the app from the original setup.
//!
//! `POST /calculate {"number": n}` answers `{"input", "pbkdf2Hash", "scryptHash"}`:
//! PBKDF2-HMAC-SHA512 (password `complex_password`, salt `unique_salt_{n}`, 1000 iterations,
//! 64 bytes) and scrypt (same password and salt, N = 2^((n mod 14) + 1), r = 8, p = 1, 64 bytes),
//! both lowercase hex. Bad input gets a 400 with `{"error": "..."}` saying what is wrong.
//! `GET /healthz` answers `{"status":"ok"}`. `GET /version` answers the app's version as
//! plain text: the contents of `--version-file` (read at each request, so a deploy that rewrites
//! it shows at once; the simulator keeps one per VM, copied by a clone), else the crate's
//! version. Every response carries `X-Served-By: <name>`.
//!
//! The hashing runs on tokio's blocking threads, at most `workers` at once (a semaphore);
//! requests beyond that queue for a permit rather than being refused.

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Largest request body accepted; beyond it the answer is 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

const PASSWORD: &[u8] = b"complex_password";
const PBKDF2_ROUNDS: u32 = 1000;
const HASH_LEN: usize = 64;
const SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

/// Command-line options of `idch-autoscaler calculate`.
#[derive(Debug, Clone, clap::Args)]
pub struct CalculateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: std::net::SocketAddr,
    /// Name reported in the `X-Served-By` header (default: the listen address).
    #[arg(long)]
    pub name: Option<String>,
    /// Hashing threads (a bounded pool of blocking threads).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// A file whose contents `GET /version` answers.
    #[arg(long)]
    pub version_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    /// Sent in the `X-Served-By` header of every response.
    pub name: String,
    /// At most this many hashes run at once (must be at least 1).
    pub workers: usize,
    /// What `GET /version` answers: this file's contents (trimmed), else the crate's version.
    pub version_file: Option<std::path::PathBuf>,
}

/// The success body of `POST /calculate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CalculateResponse {
    pub input: u64,
    #[serde(rename = "pbkdf2Hash")]
    pub pbkdf2_hash: String,
    #[serde(rename = "scryptHash")]
    pub scrypt_hash: String,
}

fn salt(n: u64) -> String {
    format!("unique_salt_{n}")
}

/// PBKDF2-HMAC-SHA512 of `complex_password` with salt `unique_salt_{n}`, 1000 rounds, 64 bytes, hex.
pub fn pbkdf2_hex(n: u64) -> String {
    let mut out = [0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(PASSWORD, salt(n).as_bytes(), PBKDF2_ROUNDS, &mut out);
    hex::encode(out)
}

/// The scrypt cost exponent for `n`: N = 2^((n mod 14) + 1), so 1..=14.
pub fn scrypt_log_n(n: u64) -> u8 {
    // n % 14 < 14, so the cast is lossless.
    (n % 14) as u8 + 1
}

/// scrypt of `complex_password` with salt `unique_salt_{n}`, N = 2^((n mod 14) + 1), r = 8, p = 1,
/// 64 bytes, hex.
pub fn scrypt_hex(n: u64) -> String {
    // log_n in 1..=14, r = 8, p = 1, len = 64 are always valid parameters.
    let params = scrypt::Params::new(scrypt_log_n(n), 8, 1, HASH_LEN)
        .expect("scrypt parameters are constant and valid");
    let mut out = [0u8; HASH_LEN];
    scrypt::scrypt(PASSWORD, salt(n).as_bytes(), &params, &mut out)
        .expect("a 64-byte output is a valid scrypt length");
    hex::encode(out)
}

/// Both hashes for `n` (CPU-bound: call it on a blocking thread).
pub fn calculate(n: u64) -> CalculateResponse {
    CalculateResponse {
        input: n,
        pbkdf2_hash: pbkdf2_hex(n),
        scrypt_hash: scrypt_hex(n),
    }
}

/// Parses a `POST /calculate` body: a JSON object whose `number` is a positive integer.
/// The error says what is wrong, for the 400 body.
pub fn parse_request(body: &[u8]) -> Result<u64, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(r#"request body is empty; expected JSON like {"number": 5}"#.to_string());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        format!(r#"request body is not valid JSON ({e}); expected JSON like {{"number": 5}}"#)
    })?;
    let Value::Object(map) = value else {
        return Err(format!(
            r#"request body must be a JSON object like {{"number": 5}}, got {}"#,
            kind(&value)
        ));
    };
    let Some(number) = map.get("number") else {
        return Err(r#"missing field "number"; expected JSON like {"number": 5}"#.to_string());
    };
    let Value::Number(number) = number else {
        return Err(format!(
            r#""number" must be a positive integer, got {}"#,
            kind(number)
        ));
    };
    if let Some(n) = number.as_u64() {
        return if n == 0 {
            Err(r#""number" must be positive, got 0"#.to_string())
        } else {
            Ok(n)
        };
    }
    if number.is_i64() {
        return Err(format!(r#""number" must be positive, got {number}"#));
    }
    // A float: accept it only when it is a whole, positive value that fits in u64.
    let f = number.as_f64().unwrap_or(f64::NAN);
    if f.fract() != 0.0 {
        return Err(format!(r#""number" must be an integer, got {number}"#));
    }
    if f <= 0.0 {
        return Err(format!(r#""number" must be positive, got {number}"#));
    }
    // 2^64 is exactly representable; anything at or above it does not fit.
    if f >= 18_446_744_073_709_551_616.0 {
        return Err(format!(
            r#""number" is too large, got {number} (at most {})"#,
            u64::MAX
        ));
    }
    // Whole, positive and below 2^64: the conversion is exact.
    Ok(f as u64)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// A bounded pool of blocking threads: at most `workers` jobs run at once on tokio's blocking
/// threads; callers beyond that wait their turn (they queue, they are not refused).
#[derive(Debug, Clone)]
pub struct HashPool {
    permits: Arc<Semaphore>,
    workers: usize,
}

impl HashPool {
    /// A pool running at most `workers` jobs at once; `workers` must be at least 1.
    pub fn new(workers: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(workers >= 1, "workers must be at least 1, got {workers}");
        Ok(Self {
            permits: Arc::new(Semaphore::new(workers)),
            workers,
        })
    }

    /// How many jobs may run at once.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Runs `job` on a blocking thread once a slot is free. The slot is held for as long as the
    /// job runs, even when the caller stops waiting for it (a dropped request).
    pub async fn run<T, F>(&self, job: F) -> anyhow::Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| anyhow::anyhow!("the hashing pool is closed"))?;
        tokio::task::spawn_blocking(move || {
            let out = job();
            drop(permit);
            out
        })
        .await
        .map_err(|e| anyhow::anyhow!("hashing task failed: {e}"))
    }
}

#[derive(Clone)]
struct AppState {
    pool: HashPool,
}

async fn calculate_handler(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("request body is larger than {MAX_BODY_BYTES} bytes")
            } else {
                format!("cannot read the request body: {}", rejection.body_text())
            };
            return error(status, message);
        }
    };
    let n = match parse_request(&body) {
        Ok(n) => n,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match state.pool.run(move || calculate(n)).await {
        Ok(response) => (StatusCode::OK, Json(response)).into_response(),
        Err(e) => {
            tracing::error!(number = n, error = %e, "hashing failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "hashing failed")
        }
    }
}

async fn healthz() -> Json<Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn version(file: Option<std::path::PathBuf>) -> Response {
    let Some(file) = file else {
        return format!("{}\n", env!("CARGO_PKG_VERSION")).into_response();
    };
    match tokio::fs::read_to_string(&file).await {
        Ok(text) => format!("{}\n", text.trim()).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the version file {}: {e}", file.display()),
        ),
    }
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not found; try POST /calculate or GET /healthz",
    )
}

async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

/// The workload's routes, with the body limit and the `X-Served-By` header on every response.
pub fn router(opts: &WorkloadOptions) -> anyhow::Result<Router> {
    let pool = HashPool::new(opts.workers)?;
    let served_by = HeaderValue::from_str(&opts.name).map_err(|_| {
        anyhow::anyhow!(
            "name {:?} cannot be sent in an X-Served-By header",
            opts.name
        )
    })?;
    let state = AppState { pool };
    let version_file = opts.version_file.clone();
    Ok(Router::new()
        .route("/calculate", post(calculate_handler))
        .route("/healthz", get(healthz))
        .route("/version", get(move || version(version_file.clone())))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(
            move |mut response: Response| {
                let served_by = served_by.clone();
                async move {
                    response.headers_mut().insert(SERVED_BY, served_by);
                    response
                }
            },
        ))
        .with_state(state))
}

/// Serves the workload on `listener` until `shutdown` completes, then shuts down gracefully
/// (in-flight requests finish).
pub async fn serve(
    listener: TcpListener,
    opts: WorkloadOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(&opts)?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, name = %opts.name, workers = opts.workers, "sample workload listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("sample workload on {addr}: {e}"))?;
    tracing::info!(%addr, "sample workload stopped");
    Ok(())
}

/// `idch-autoscaler calculate`: binds `--listen` and serves until Ctrl-C or SIGTERM.
pub async fn run(args: CalculateArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let name = args.name.unwrap_or_else(|| args.listen.to_string());
    let opts = WorkloadOptions {
        name,
        workers: args.workers,
        version_file: args.version_file,
    };
    serve(listener, opts, termination_signal()).await
}

async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the workload");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_positive_integers() {
        assert_eq!(parse_request(br#"{"number": 5}"#), Ok(5));
        assert_eq!(parse_request(br#"{"number": 1, "extra": true}"#), Ok(1));
        assert_eq!(parse_request(br#"{"number": 3.0}"#), Ok(3));
        assert_eq!(parse_request(br#"{"number": 1e3}"#), Ok(1000));
        assert_eq!(
            parse_request(br#"{"number": 18446744073709551615}"#),
            Ok(u64::MAX)
        );
    }

    fn err(body: &str) -> String {
        parse_request(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn rejects_bad_input_saying_why() {
        assert!(err("").contains("empty"));
        assert!(err("  \n").contains("empty"));
        assert!(err("not json").contains("not valid JSON"));
        assert!(err(r#"{"number": 5"#).contains("not valid JSON"));
        assert!(err("[1]").contains("must be a JSON object"));
        assert!(err("5").contains("must be a JSON object"));
        assert!(err("{}").contains("missing field"));
        assert!(err(r#"{"numbr": 5}"#).contains("missing field"));
        assert!(err(r#"{"number": "5"}"#).contains("got a string"));
        assert!(err(r#"{"number": null}"#).contains("got null"));
        assert!(err(r#"{"number": true}"#).contains("got a boolean"));
        assert!(err(r#"{"number": [5]}"#).contains("got an array"));
        assert!(err(r#"{"number": 0}"#).contains("must be positive"));
        assert!(err(r#"{"number": -3}"#).contains("must be positive"));
        assert!(err(r#"{"number": -3.0}"#).contains("must be positive"));
        assert!(err(r#"{"number": -0.0}"#).contains("must be positive"));
        assert!(err(r#"{"number": 2.5}"#).contains("must be an integer, got 2.5"));
        assert!(err(r#"{"number": -2.5}"#).contains("must be an integer"));
        assert!(err(r#"{"number": 1e30}"#).contains("too large"));
        assert!(err(r#"{"number": 18446744073709551616}"#).contains("too large"));
    }

    #[test]
    fn scrypt_cost_follows_n_mod_14() {
        assert_eq!(scrypt_log_n(1), 2);
        assert_eq!(scrypt_log_n(13), 14);
        assert_eq!(scrypt_log_n(14), 1);
        assert_eq!(scrypt_log_n(u64::MAX), (u64::MAX % 14) as u8 + 1);
    }

    #[test]
    fn hashes_are_64_bytes_of_lowercase_hex() {
        for h in [pbkdf2_hex(1), scrypt_hex(1)] {
            assert_eq!(h.len(), 128);
            assert!(h
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
    }

    #[test]
    fn router_rejects_zero_workers_and_bad_names() {
        let zero = WorkloadOptions {
            name: "vm".into(),
            workers: 0,
            version_file: None,
        };
        assert!(router(&zero).is_err());
        let bad = WorkloadOptions {
            name: "a\nb".into(),
            workers: 1,
            version_file: None,
        };
        assert!(router(&bad).is_err());
    }
}
