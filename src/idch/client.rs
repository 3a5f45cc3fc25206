//! The IDCloudHost API client: the calls of PROTOCOLS.md section E, typed errors that know whether
//! they are transient, and retries with exponential backoff and jitter for idempotent calls only.
//!
//! The API key travels only in the `apikey` header; it is never logged, put in an error, or printed
//! by `Debug`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use super::wire::{error_message, ChargingRow, FloatingIp, Vm};
use crate::config::{CloudConfig, Secret};
use crate::metrics::Metrics;

/// What went wrong with a cloud call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// 401/403: the API key is wrong or lacks rights. A configuration error, never retried.
    #[error("{op}: IDCloudHost refused the API key (HTTP {status}): {message}; check idcloudhost.api_key_env / api_key_file")]
    Unauthorized {
        op: &'static str,
        status: u16,
        message: String,
    },
    /// 404: no such VM or address.
    #[error("{op}: not found (HTTP 404): {message}")]
    NotFound { op: &'static str, message: String },
    /// Any other error status.
    #[error("{op}: HTTP {status}: {message}")]
    Status {
        op: &'static str,
        status: u16,
        message: String,
    },
    /// No answer within the per-call timeout.
    #[error("{op}: no answer within {}", humantime::format_duration(*.timeout))]
    Timeout { op: &'static str, timeout: Duration },
    /// Connection refused, reset, DNS, TLS.
    #[error("{op}: transport error: {message}")]
    Transport { op: &'static str, message: String },
    /// A 2xx answer whose body is not the documented shape.
    #[error("{op}: unexpected answer: {message}")]
    Decode { op: &'static str, message: String },
}

impl CloudError {
    /// Worth trying again later: 5xx, 429, timeouts and transport errors.
    pub fn is_transient(&self) -> bool {
        match self {
            CloudError::Status { status, .. } => *status >= 500 || *status == 429,
            CloudError::Timeout { .. } | CloudError::Transport { .. } => true,
            _ => false,
        }
    }

    /// A configuration problem an operator must fix (wrong or under-privileged API key).
    pub fn is_config_error(&self) -> bool {
        matches!(self, CloudError::Unauthorized { .. })
    }

    /// A clone call that may have created the VM even though it reported failure.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            CloudError::Timeout { .. } | CloudError::Transport { .. }
        ) || matches!(self, CloudError::Status { status, .. } if *status >= 500)
    }
}

/// The result of a delete: it happened, or the thing was already gone (404).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Now,
    AlreadyGone,
}

/// How retries of idempotent calls are spaced: `base * 2^attempt`, capped, with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    pub fn delay(&self, attempt: u32) -> Duration {
        crate::backoff::Backoff::new(self.base, self.cap).delay(attempt)
    }
}

#[derive(Clone)]
pub struct CloudClient {
    http: reqwest::Client,
    /// `{api_url}/v1/{location}/`
    base: Url,
    api_key: Secret,
    billing_account_id: Option<u64>,
    timeout: Duration,
    retry: RetryPolicy,
    metrics: Option<Arc<Metrics>>,
}

impl fmt::Debug for CloudClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudClient")
            .field("base", &self.base.as_str())
            .field("api_key", &self.api_key)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl CloudClient {
    pub fn new(config: &CloudConfig, api_key: Secret) -> anyhow::Result<Self> {
        let mut base = config.api_url.clone();
        let path = format!(
            "{}/v1/{}/",
            base.path().trim_end_matches('/'),
            config.location
        );
        base.set_path(&path);
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .user_agent(concat!("idch-autoscaler/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base,
            api_key,
            billing_account_id: config.billing_account_id,
            timeout: config.timeout,
            retry: RetryPolicy {
                max_attempts: config.max_attempts.max(1),
                base: Duration::from_millis(200),
                cap: Duration::from_secs(5),
            },
            metrics: None,
        })
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// `GET user-resource/vm/list`
    pub async fn list_vms(&self) -> Result<Vec<Vm>, CloudError> {
        self.idempotent("list_vms", || {
            self.json(Method::GET, "user-resource/vm/list", &[], None)
        })
        .await
    }

    /// `GET user-resource/vm?uuid=U`
    pub async fn get_vm(&self, uuid: &str) -> Result<Vm, CloudError> {
        let query = [("uuid", uuid)];
        self.idempotent("get_vm", || {
            self.json(Method::GET, "user-resource/vm", &query, None)
        })
        .await
    }

    /// `POST user-resource/vm/clone` (form `uuid`, `name`). Not idempotent: one attempt only.
    /// After a timeout the caller must re-list and look for `name` before calling again.
    pub async fn clone_vm(&self, source_uuid: &str, name: &str) -> Result<Vm, CloudError> {
        let form = [("uuid", source_uuid), ("name", name)];
        self.instrumented(
            "clone_vm",
            self.json(Method::POST, "user-resource/vm/clone", &[], Some(&form)),
        )
        .await
    }

    /// `POST user-resource/vm/stop` (form `uuid`; never `force`, a hard power-off that can corrupt
    /// the disk, E.2.1): a graceful shutdown; the answer is the VM object (`stopped` in the doc's
    /// example; poll [`CloudClient::get_vm`] until it is). Retried like a read: stopping a VM that
    /// is stopped or stopping leaves it stopped, so a repeat after a lost answer does no harm.
    pub async fn stop_vm(&self, uuid: &str) -> Result<Vm, CloudError> {
        let form = [("uuid", uuid)];
        self.idempotent("stop_vm", || {
            self.json(Method::POST, "user-resource/vm/stop", &[], Some(&form))
        })
        .await
    }

    /// `POST user-resource/vm/start` (form `uuid`). Retried like a read: starting a VM that is
    /// starting or running leaves it so. The success body is UNVERIFIED (E.2.1: the doc shows only
    /// an error; the Go client decodes a VM object): `Some` when it is a VM object, `None` when the
    /// call succeeded with another body; either way poll [`CloudClient::get_vm`] for `running`.
    pub async fn start_vm(&self, uuid: &str) -> Result<Option<Vm>, CloudError> {
        let form = [("uuid", uuid)];
        self.idempotent("start_vm", || async {
            let body = self
                .send(Method::POST, "user-resource/vm/start", &[], Some(&form))
                .await?;
            Ok(serde_json::from_slice::<Vm>(&body).ok())
        })
        .await
    }

    /// `GET charging/usage?billing_account_id=B` (E.2.6): this month's cost rows of the account.
    /// Not location-specific, so it goes to `{api_url}/v1/charging/usage`.
    pub async fn charging_usage(
        &self,
        billing_account_id: u64,
    ) -> Result<Vec<ChargingRow>, CloudError> {
        let billing = billing_account_id.to_string();
        let query = [("billing_account_id", billing.as_str())];
        self.idempotent("charging_usage", || {
            self.json(Method::GET, "../charging/usage", &query, None)
        })
        .await
    }

    /// `DELETE user-resource/vm` (form `uuid`). A 404 means it is already gone.
    pub async fn delete_vm(&self, uuid: &str) -> Result<Deleted, CloudError> {
        let form = [("uuid", uuid)];
        self.idempotent("delete_vm", || async {
            match self
                .send(Method::DELETE, "user-resource/vm", &[], Some(&form))
                .await
            {
                Ok(_) => Ok(Deleted::Now),
                Err(CallError::Status(StatusCode::NOT_FOUND, _)) => Ok(Deleted::AlreadyGone),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// `GET network/ip_addresses?billing_account_id=B&vm_uuid=U`
    pub async fn list_floating_ips(
        &self,
        vm_uuid: Option<&str>,
    ) -> Result<Vec<FloatingIp>, CloudError> {
        let billing = self.billing_account_id.map(|b| b.to_string());
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(b) = &billing {
            query.push(("billing_account_id", b));
        }
        if let Some(u) = vm_uuid {
            query.push(("vm_uuid", u));
        }
        self.idempotent("list_floating_ips", || {
            self.json(Method::GET, "network/ip_addresses", &query, None)
        })
        .await
    }

    /// `DELETE network/ip_addresses/{address}`. A 404 means it is already gone.
    pub async fn delete_floating_ip(&self, address: &str) -> Result<Deleted, CloudError> {
        let path = format!("network/ip_addresses/{address}");
        self.idempotent("delete_floating_ip", || async {
            match self.send(Method::DELETE, &path, &[], None).await {
                Ok(_) => Ok(Deleted::Now),
                Err(CallError::Status(StatusCode::NOT_FOUND, _)) => Ok(Deleted::AlreadyGone),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Runs an idempotent call, retrying transient errors with backoff; each attempt is measured.
    async fn idempotent<T, F, Fut>(&self, op: &'static str, mut call: F) -> Result<T, CloudError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, CallError>>,
    {
        let mut attempt = 0;
        loop {
            match self.instrumented(op, call()).await {
                Err(e) if e.is_transient() && attempt + 1 < self.retry.max_attempts => {
                    let delay = self.retry.delay(attempt);
                    tracing::debug!(op, attempt, error = %e, ?delay, "cloud call failed, retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn instrumented<T>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = Result<T, CallError>>,
    ) -> Result<T, CloudError> {
        let started = Instant::now();
        let result = fut.await;
        let (status, result) = match result {
            Ok(v) => ("ok".to_string(), Ok(v)),
            Err(e) => (e.status_label(), Err(e.into_cloud(op, self.timeout))),
        };
        if let Some(m) = &self.metrics {
            m.observe_cloud_call(op, status, started.elapsed());
        }
        result
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        form: Option<&[(&str, &str)]>,
    ) -> Result<T, CallError> {
        let body = self.send(method, path, query, form).await?;
        serde_json::from_slice(&body).map_err(|e| CallError::Decode(e.to_string()))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        form: Option<&[(&str, &str)]>,
    ) -> Result<bytes::Bytes, CallError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| CallError::Transport(format!("bad URL for {path}: {e}")))?;
        let mut req = self
            .http
            .request(method, url)
            .header("apikey", self.api_key.expose())
            .header("accept", "application/json");
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(form) = form {
            req = req.form(form);
        }
        let resp = req.send().await.map_err(CallError::from_reqwest)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(CallError::from_reqwest)?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(CallError::Status(
                status,
                error_message(&String::from_utf8_lossy(&body)),
            ))
        }
    }
}

/// An error inside one attempt, before it is tagged with its operation.
#[derive(Debug)]
enum CallError {
    Status(StatusCode, String),
    Timeout,
    Transport(String),
    Decode(String),
}

impl CallError {
    fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            return CallError::Timeout;
        }
        // The URL carries no secret, but strip it anyway to keep messages short.
        let e = e.without_url();
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg = format!("{msg}: {s}");
            source = s.source();
        }
        CallError::Transport(msg)
    }

    fn status_label(&self) -> String {
        match self {
            CallError::Status(s, _) => s.as_u16().to_string(),
            CallError::Timeout => "timeout".into(),
            CallError::Transport(_) => "transport".into(),
            CallError::Decode(_) => "decode".into(),
        }
    }

    fn into_cloud(self, op: &'static str, timeout: Duration) -> CloudError {
        match self {
            CallError::Status(s, message)
                if s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN =>
            {
                CloudError::Unauthorized {
                    op,
                    status: s.as_u16(),
                    message,
                }
            }
            CallError::Status(s, message) if s == StatusCode::NOT_FOUND => {
                CloudError::NotFound { op, message }
            }
            CallError::Status(s, message) => CloudError::Status {
                op,
                status: s.as_u16(),
                message,
            },
            CallError::Timeout => CloudError::Timeout { op, timeout },
            CallError::Transport(message) => CloudError::Transport { op, message },
            CallError::Decode(message) => CloudError::Decode { op, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_classification() {
        let s = |status| CloudError::Status {
            op: "x",
            status,
            message: String::new(),
        };
        assert!(s(500).is_transient());
        assert!(s(503).is_transient());
        assert!(s(429).is_transient());
        assert!(!s(400).is_transient());
        assert!(CloudError::Timeout {
            op: "x",
            timeout: Duration::from_secs(1)
        }
        .is_transient());
        assert!(CloudError::Transport {
            op: "x",
            message: String::new()
        }
        .is_transient());
        let auth = CloudError::Unauthorized {
            op: "x",
            status: 401,
            message: String::new(),
        };
        assert!(!auth.is_transient());
        assert!(auth.is_config_error());
        assert!(!CloudError::NotFound {
            op: "x",
            message: String::new()
        }
        .is_transient());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for attempt in 0..10 {
            let d = p.delay(attempt);
            let ceiling =
                (Duration::from_millis(100) * 2u32.pow(attempt)).min(Duration::from_secs(1));
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
        }
    }
}
