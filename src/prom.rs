//! Target tracking's Prometheus client: one instant query through the HTTP API
//! (`GET {prometheus_url}/api/v1/query?query=...`), with the policy's timeout and an optional
//! bearer token, and [`Pacing`], the wait before the next query (the interval, or a backoff
//! after failures).
//!
//! The answer is Prometheus' documented envelope: `{"status": "success", "data": {"resultType":
//! "vector", "result": [{"metric": {...}, "value": [ts, "value"]}]}}` (exactly one series) or
//! `"resultType": "scalar", "result": [ts, "value"]`; an error is `{"status": "error",
//! "errorType": ..., "error": ...}`, usually with HTTP 400 (`bad_data`), 422 (`execution`) or
//! 503 (`timeout`). A value is a string: a decimal, `NaN`, `+Inf` or `-Inf`.
//!
//! The bearer token travels only in the `Authorization` header; it is never logged, put in an
//! error, or printed by `Debug`.

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::backoff::Backoff;
use crate::config::{Secret, TargetConfig};
use crate::pool::target::Observation;

/// One number and the Unix time Prometheus evaluated it at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromSample {
    pub value: f64,
    pub at: f64,
}

/// Why a query gave no number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromError {
    /// Prometheus answered with its error envelope (`status: error`).
    #[error("Prometheus refused the query (HTTP {status}, {error_type}): {error}")]
    Api {
        status: u16,
        error_type: String,
        error: String,
    },
    /// An error status without Prometheus' envelope (a proxy's 401, a 502, ...).
    #[error("HTTP {status} from Prometheus: {message}")]
    Status { status: u16, message: String },
    /// The query matched no series.
    #[error("the query returned no series")]
    Empty,
    /// The query returned more than one series; it must give one number for the pool.
    #[error(
        "the query returned {series} series; it must return one (aggregate it, e.g. avg(...))"
    )]
    Several { series: usize },
    /// A matrix or string result.
    #[error("the query returned a {result_type}; it must return an instant vector of one series or a scalar")]
    Unsupported { result_type: String },
    /// A 2xx answer that is not the documented shape.
    #[error("unexpected answer from Prometheus: {message}")]
    Decode { message: String },
    #[error("no answer from Prometheus within {}", humantime::format_duration(*.timeout))]
    Timeout { timeout: Duration },
    /// Connection refused, reset, DNS, TLS.
    #[error("cannot reach Prometheus: {message}")]
    Transport { message: String },
}

impl PromError {
    /// A short label for metrics and the status API.
    pub fn kind(&self) -> &'static str {
        match self {
            PromError::Api { .. } => "api",
            PromError::Status { .. } => "status",
            PromError::Empty => "empty",
            PromError::Several { .. } => "several",
            PromError::Unsupported { .. } => "unsupported",
            PromError::Decode { .. } => "decode",
            PromError::Timeout { .. } => "timeout",
            PromError::Transport { .. } => "transport",
        }
    }
}

/// What a query's result is to the algorithm: a sample, no data (an empty result), or an error.
pub fn observation(result: &Result<PromSample, PromError>) -> Observation {
    match result {
        Ok(s) => Observation::Sample {
            value: s.value,
            at: s.at,
        },
        Err(PromError::Empty) => Observation::NoData,
        Err(_) => Observation::QueryError,
    }
}

#[derive(Clone)]
pub struct PromClient {
    http: reqwest::Client,
    /// `{prometheus_url}/api/v1/query`
    endpoint: Url,
    token: Option<Secret>,
    timeout: Duration,
}

impl fmt::Debug for PromClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("token", &self.token)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PromClient {
    /// A client for a pool's `[pool.target]`; `token` is its resolved bearer token
    /// (`Secrets::target_tokens[pool]`), if any.
    pub fn new(config: &TargetConfig, token: Option<Secret>) -> anyhow::Result<Self> {
        let mut endpoint = config.prometheus_url.clone();
        let path = format!("{}/api/v1/query", endpoint.path().trim_end_matches('/'));
        endpoint.set_path(&path);
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .user_agent(concat!("idch-autoscaler/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(PromClient {
            http,
            endpoint,
            token,
            timeout: config.timeout,
        })
    }

    /// Runs `query` (already with `{pool}` substituted, see [`TargetConfig::query_for`]) at
    /// Prometheus' current time. Prometheus is also told the timeout, so it stops evaluating
    /// when we stop waiting.
    pub async fn query(&self, query: &str) -> Result<PromSample, PromError> {
        let timeout = format!("{}ms", self.timeout.as_millis().max(1));
        let mut request = self
            .http
            .get(self.endpoint.clone())
            .query(&[("query", query), ("timeout", timeout.as_str())]);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| self.transport(e))?;
        parse_answer(status, &body)
    }

    fn transport(&self, e: reqwest::Error) -> PromError {
        if e.is_timeout() {
            PromError::Timeout {
                timeout: self.timeout,
            }
        } else {
            // Without the URL: it may carry a path an operator considers private; the endpoint
            // is in the configuration anyway.
            PromError::Transport {
                message: error_chain(&e.without_url()),
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Series {
    value: (f64, String),
}

/// Reads an answer of the query API: `status` is the HTTP status, `body` its bytes. Pure.
pub fn parse_answer(status: u16, body: &[u8]) -> Result<PromSample, PromError> {
    let envelope: Option<Envelope> = serde_json::from_slice(body).ok();
    let Some(envelope) = envelope else {
        if !(200..300).contains(&status) {
            return Err(PromError::Status {
                status,
                message: snippet(body),
            });
        }
        return Err(PromError::Decode {
            message: format!("not the query API's JSON: {}", snippet(body)),
        });
    };
    if envelope.status != "success" {
        return Err(PromError::Api {
            status,
            error_type: envelope.error_type.unwrap_or_else(|| "unknown".into()),
            error: envelope.error.unwrap_or_else(|| envelope.status.clone()),
        });
    }
    if !(200..300).contains(&status) {
        return Err(PromError::Status {
            status,
            message: snippet(body),
        });
    }
    let data = envelope.data.ok_or_else(|| PromError::Decode {
        message: "status success without data".into(),
    })?;
    let decode = |e: serde_json::Error| PromError::Decode {
        message: format!("a {} result: {e}", data.result_type),
    };
    let (at, value) = match data.result_type.as_str() {
        "vector" => {
            let series: Vec<Series> =
                serde_json::from_value(data.result.clone()).map_err(decode)?;
            match series.len() {
                0 => return Err(PromError::Empty),
                1 => series.into_iter().next().expect("one").value,
                n => return Err(PromError::Several { series: n }),
            }
        }
        "scalar" => serde_json::from_value::<(f64, String)>(data.result.clone()).map_err(decode)?,
        other => {
            return Err(PromError::Unsupported {
                result_type: other.to_string(),
            })
        }
    };
    Ok(PromSample {
        value: parse_value(&value).ok_or_else(|| PromError::Decode {
            message: format!("{value:?} is not a sample value"),
        })?,
        at,
    })
}

/// A sample value as Prometheus writes it: a decimal, `NaN`, `+Inf`, `-Inf`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// The start of a body, for an error message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// When to query next: every `interval` while queries succeed; after failures, a backoff
/// ([`Backoff`] from a quarter of the interval, doubling, capped at 4 × the interval, jittered)
/// so that a Prometheus that is down or overloaded is not hammered, and one lost answer costs
/// less than an interval.
#[derive(Debug, Clone)]
pub struct Pacing {
    interval: Duration,
    backoff: Backoff,
    failures: u32,
}

impl Pacing {
    pub fn new(interval: Duration) -> Pacing {
        Pacing {
            interval,
            backoff: Backoff::new(interval / 4, interval * 4),
            failures: 0,
        }
    }

    /// The wait after a query that succeeded (`ok`) or failed; counts the failures in a row.
    pub fn after(&mut self, ok: bool) -> Duration {
        self.after_with(ok, rand::random::<f64>())
    }

    /// [`Pacing::after`] with a given jitter in `[0, 1]` (pure, for tests).
    pub fn after_with(&mut self, ok: bool, jitter: f64) -> Duration {
        if ok {
            self.failures = 0;
            return self.interval;
        }
        let wait = self.backoff.delay_with(self.failures, jitter);
        self.failures = self.failures.saturating_add(1);
        wait
    }

    /// Failed queries in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_shapes() {
        let ok = |body: &str| parse_answer(200, body.as_bytes());
        assert_eq!(
            ok(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pool":"web"},"value":[1435781451.781,"61.5"]}]}}"#
            ),
            Ok(PromSample {
                value: 61.5,
                at: 1435781451.781
            })
        );
        assert_eq!(
            ok(
                r#"{"status":"success","data":{"resultType":"scalar","result":[1435781451.781,"7"]}}"#
            ),
            Ok(PromSample {
                value: 7.0,
                at: 1435781451.781
            })
        );
        let v = |s: &str| {
            ok(&format!(
                r#"{{"status":"success","data":{{"resultType":"scalar","result":[1,"{s}"]}}}}"#
            ))
            .unwrap()
            .value
        };
        assert!(v("NaN").is_nan());
        assert_eq!(v("+Inf"), f64::INFINITY);
        assert_eq!(v("-Inf"), f64::NEG_INFINITY);
        assert_eq!(v("1e3"), 1000.0);
        assert_eq!(
            ok(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#),
            Err(PromError::Empty)
        );
        assert_eq!(
            ok(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]},{"metric":{},"value":[1,"2"]}]}}"#
            ),
            Err(PromError::Several { series: 2 })
        );
        assert!(matches!(
            ok(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#),
            Err(PromError::Unsupported { result_type }) if result_type == "matrix"
        ));
        assert!(matches!(
            ok(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"many"]}}"#),
            Err(PromError::Decode { message }) if message.contains("many")
        ));
        assert!(matches!(
            ok(r#"{"status":"success","data":{"resultType":"scalar","result":"x"}}"#),
            Err(PromError::Decode { .. })
        ));
        assert!(matches!(ok("<html>"), Err(PromError::Decode { .. })));
        assert_eq!(
            parse_answer(
                400,
                br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#
            ),
            Err(PromError::Api {
                status: 400,
                error_type: "bad_data".into(),
                error: "parse error".into()
            })
        );
        assert_eq!(
            parse_answer(502, b"Bad Gateway"),
            Err(PromError::Status {
                status: 502,
                message: "Bad Gateway".into()
            })
        );
    }

    #[test]
    fn an_empty_result_is_no_data_and_anything_else_an_error() {
        assert_eq!(observation(&Err(PromError::Empty)), Observation::NoData);
        assert_eq!(
            observation(&Err(PromError::Several { series: 3 })),
            Observation::QueryError
        );
        assert_eq!(
            observation(&Ok(PromSample {
                value: 1.0,
                at: 2.0
            })),
            Observation::Sample {
                value: 1.0,
                at: 2.0
            }
        );
    }

    #[test]
    fn pacing_backs_off_after_failures_and_resets() {
        let mut p = Pacing::new(Duration::from_secs(16));
        let s = Duration::from_secs;
        assert_eq!(p.after_with(true, 1.0), s(16));
        let waits: Vec<Duration> = (0..6).map(|_| p.after_with(false, 1.0)).collect();
        assert_eq!(waits, [s(4), s(8), s(16), s(32), s(64), s(64)]);
        assert_eq!(p.failures(), 6);
        assert_eq!(p.after_with(true, 0.0), s(16));
        assert_eq!(p.failures(), 0);
        assert_eq!(p.after_with(false, 0.0), s(2), "jittered down to half");
        for _ in 0..20 {
            let w = p.after(false);
            assert!(w >= s(2) && w <= s(64), "{w:?}");
        }
    }

    #[test]
    fn the_token_never_prints() {
        let c = crate::config::Config::parse(
            "[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"s\"\n[pool.target]\n\
             prometheus_url = \"http://127.0.0.1:9090/prom/\"\nquery = \"up\"\ntarget = 1\n",
        )
        .unwrap();
        let client = PromClient::new(
            c.pools[0].target.as_ref().unwrap(),
            Some(Secret::new("hunter2")),
        )
        .unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains("http://127.0.0.1:9090/prom/api/v1/query"),
            "{debug}"
        );
    }
}
