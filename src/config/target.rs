//! `[pool.target]`: target tracking. The autoscaler reads one number for the pool from
//! Prometheus (`query`, through `/api/v1/query`) every `interval` and keeps it near `target`, as
//! Kubernetes' HPA does: desired = ceil(ready × metric / target), a tolerance band, and
//! stabilization windows. The algorithm is `pool::target`; the client is `prom`.
//!
//! Each value is checked here by its field deserializer; [`validate`] checks what spans fields
//! (`timeout` < `interval`, the bearer token's pair) and parses the query as PromQL with the
//! pool's name substituted for `{pool}`, so a typo is refused at start-up.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::{Deserializer, Error};
use serde::Deserialize;

use super::{de, ConfigError, PoolConfig, SecretSource};

/// What `{pool}` in [`TargetConfig::query`] stands for.
pub const POOL_PLACEHOLDER: &str = "{pool}";

/// One pool's `[pool.target]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Prometheus' base URL (the API is `{prometheus_url}/api/v1/query`).
    #[serde(deserialize_with = "prometheus_url")]
    pub prometheus_url: reqwest::Url,
    /// PromQL that returns one number for the pool; `{pool}` is replaced by the pool's name.
    #[serde(deserialize_with = "de::non_blank")]
    pub query: String,
    /// The value the metric is kept near (e.g. 60 for 60% CPU busy).
    #[serde(deserialize_with = "target")]
    pub target: f64,
    /// How often the query runs.
    #[serde(
        default = "super::defaults::secs::<15>",
        deserialize_with = "de::positive_duration"
    )]
    pub interval: Duration,
    /// Timeout of one query (connect + answer); shorter than `interval`.
    #[serde(
        default = "super::defaults::secs::<5>",
        deserialize_with = "de::positive_duration"
    )]
    pub timeout: Duration,
    /// No change while |metric / target − 1| ≤ tolerance.
    #[serde(default = "tolerance_default", deserialize_with = "tolerance")]
    pub tolerance: f64,
    /// A scale-up goes only to the lowest recommendation of this window (zero: at once).
    #[serde(default, deserialize_with = "de::duration")]
    pub scale_up_stabilization: Duration,
    /// A scale-down goes only to the highest recommendation of this window.
    #[serde(
        default = "super::defaults::secs::<300>",
        deserialize_with = "de::duration"
    )]
    pub scale_down_stabilization: Duration,
    /// A backend that became ready counts in `ready` only once it has been ready this long (its
    /// metric has caught up: at least the query's rate window); those ready when the tracker
    /// starts count at once. The HPA's initial-readiness delay and CPU initialization period.
    #[serde(
        default = "super::defaults::secs::<120>",
        deserialize_with = "de::duration"
    )]
    pub readiness_delay: Duration,
    /// At most this many VMs added per interval; absent: no limit.
    #[serde(default, deserialize_with = "step")]
    pub max_step_up: Option<u32>,
    /// At most this many VMs removed per interval; absent: no limit.
    #[serde(default, deserialize_with = "step")]
    pub max_step_down: Option<u32>,
    /// Bearer token sent to Prometheus: from an environment variable or a file (at most one).
    pub bearer_token_env: Option<String>,
    pub bearer_token_file: Option<PathBuf>,
    /// Alert webhooks on this pool still change desired (until the next recommendation).
    #[serde(default)]
    pub allow_webhooks: bool,
    /// `PUT .../desired` pauses the policy for this long.
    #[serde(
        default = "super::defaults::secs::<600>",
        deserialize_with = "de::duration"
    )]
    pub manual_hold: Duration,
}

fn tolerance_default() -> f64 {
    0.1
}

impl TargetConfig {
    /// The query for a pool: `{pool}` replaced by its name (pool names are letters, digits, `-`
    /// and `_`, so they need no quoting inside a PromQL string).
    pub fn query_for(&self, pool_name: &str) -> String {
        self.query.replace(POOL_PLACEHOLDER, pool_name)
    }

    /// Where the bearer token comes from, if configured ([`validate`] refused both at once).
    pub fn bearer_token(&self) -> Option<SecretSource> {
        SecretSource::from_pair(
            "target.bearer_token",
            self.bearer_token_env.as_deref(),
            self.bearer_token_file.as_ref(),
        )
        .ok()
        .flatten()
    }
}

/// `prometheus_url`: an http(s) URL with a host, without a query or fragment; a trailing `/` is
/// dropped so that `{url}/api/v1/query` is well formed (a path prefix is kept).
fn prometheus_url<'de, D: Deserializer<'de>>(d: D) -> Result<reqwest::Url, D::Error> {
    let text = String::deserialize(d)?;
    let mut url = reqwest::Url::parse(text.trim())
        .map_err(|e| D::Error::custom(format!("{text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(D::Error::custom(format!(
            "{text:?} must be an http or https URL with a host, such as \"http://127.0.0.1:9090\""
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(D::Error::custom(format!(
            "{text:?} must not have a query or fragment: the autoscaler appends /api/v1/query?query=..."
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(D::Error::custom(
            "must not carry credentials; use bearer_token_env or bearer_token_file",
        ));
    }
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(&trimmed);
    Ok(url)
}

/// `target`: a finite number greater than zero.
fn target<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !v.is_finite() || v <= 0.0 {
        return Err(D::Error::custom(format!(
            "{v} is not a target; give a finite number greater than zero (e.g. 60 for 60% CPU)"
        )));
    }
    Ok(v)
}

/// `tolerance`: a fraction in `[0, 1)`.
fn tolerance<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(0.0..1.0).contains(&v) {
        return Err(D::Error::custom(format!(
            "{v} is out of range: a tolerance is a fraction from 0 up to (not including) 1, e.g. 0.1 for ±10%"
        )));
    }
    Ok(v)
}

/// `max_step_up` / `max_step_down`: a whole number of VMs, at least 1.
fn step<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    de::bounded::<D, 1, 10_000>(d).map(Some)
}

/// The rules of `[pool.target]` that span fields; `pool` is the pool it belongs to.
pub(super) fn validate(pool: &PoolConfig) -> Result<(), ConfigError> {
    let Some(t) = &pool.target else {
        return Ok(());
    };
    let k = |key: &str| format!("pool {:?}.target.{key}", pool.name);
    if t.timeout >= t.interval {
        return Err(ConfigError::new(
            k("timeout"),
            format!(
                "{} must be shorter than target.interval ({}): a query must end before the next one starts",
                humantime::format_duration(t.timeout),
                humantime::format_duration(t.interval)
            ),
        ));
    }
    SecretSource::from_pair(
        &k("bearer_token"),
        t.bearer_token_env.as_deref(),
        t.bearer_token_file.as_ref(),
    )?;
    let query = t.query_for(&pool.name);
    if let Err(e) = promql_parser::parser::parse(&query) {
        return Err(ConfigError::new(
            k("query"),
            format!("{query:?} is not PromQL: {e}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{Config, SecretSource};

    const MINIMAL: &str = "prometheus_url = \"http://127.0.0.1:9090/\"\nquery = 'idch:pool_cpu_busy:avg2m{pool=\"{pool}\"}'\ntarget = 60\n";

    fn parse(target: &str) -> Result<Config, String> {
        Config::parse(&format!(
            "[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"seed\"\n[pool.target]\n{target}\n"
        ))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_pool_without_the_block_has_no_target() {
        let c =
            Config::parse("[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"s\"\n").unwrap();
        assert_eq!(c.pools[0].target, None);
    }

    #[test]
    fn defaults_of_a_minimal_block() {
        let c = parse(MINIMAL).unwrap();
        let t = c.pools[0].target.as_ref().unwrap();
        assert_eq!(t.prometheus_url.as_str(), "http://127.0.0.1:9090/");
        assert_eq!(t.target, 60.0);
        assert_eq!(t.interval, Duration::from_secs(15));
        assert_eq!(t.timeout, Duration::from_secs(5));
        assert_eq!(t.tolerance, 0.1);
        assert_eq!(t.scale_up_stabilization, Duration::ZERO);
        assert_eq!(t.scale_down_stabilization, Duration::from_secs(300));
        assert_eq!((t.max_step_up, t.max_step_down), (None, None));
        assert_eq!(t.bearer_token(), None);
        assert!(!t.allow_webhooks);
        assert_eq!(t.manual_hold, Duration::from_secs(600));
        assert_eq!(
            t.readiness_delay,
            Duration::from_secs(120),
            "the shipped rule's [2m]"
        );
        assert_eq!(
            t.query_for("web"),
            "idch:pool_cpu_busy:avg2m{pool=\"web\"}",
            "{{pool}} is the pool's name"
        );
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            "prometheus_url = \"https://prom.example:9090/prefix/\"\nquery = \"avg(up)\"\ntarget = 0.5\n\
             interval = \"30s\"\ntimeout = \"2s\"\ntolerance = 0\nscale_up_stabilization = \"1m\"\n\
             scale_down_stabilization = \"10m\"\nmax_step_up = 4\nmax_step_down = 1\n\
             bearer_token_file = \"/run/prom-token\"\nallow_webhooks = true\nmanual_hold = \"0s\"\n\
             readiness_delay = \"45s\"\n",
        )
        .unwrap();
        let t = c.pools[0].target.as_ref().unwrap();
        assert_eq!(
            t.prometheus_url.as_str(),
            "https://prom.example:9090/prefix"
        );
        assert_eq!((t.target, t.tolerance), (0.5, 0.0));
        assert_eq!(
            (t.interval, t.timeout),
            (Duration::from_secs(30), Duration::from_secs(2))
        );
        assert_eq!(t.scale_up_stabilization, Duration::from_secs(60));
        assert_eq!(t.scale_down_stabilization, Duration::from_secs(600));
        assert_eq!((t.max_step_up, t.max_step_down), (Some(4), Some(1)));
        assert_eq!(
            t.bearer_token(),
            Some(SecretSource::File("/run/prom-token".into()))
        );
        assert!(t.allow_webhooks);
        assert_eq!(t.manual_hold, Duration::ZERO);
        assert_eq!(t.readiness_delay, Duration::from_secs(45));
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        let base = |line: &str| format!("{MINIMAL}{line}\n");
        for (text, key, why) in [
            (
                "query = \"up\"\ntarget = 1".to_string(),
                "target.prometheus_url",
                "required",
            ),
            (
                "prometheus_url = \"http://p:9090\"\ntarget = 1".to_string(),
                "target.query",
                "required",
            ),
            (
                "prometheus_url = \"http://p:9090\"\nquery = \"up\"".to_string(),
                "target.target",
                "required",
            ),
            (
                MINIMAL.replace("http://127.0.0.1:9090/", "ftp://x"),
                "target.prometheus_url",
                "http or https",
            ),
            (
                MINIMAL.replace("http://127.0.0.1:9090/", "not a url"),
                "target.prometheus_url",
                "not a URL",
            ),
            (
                MINIMAL.replace("http://127.0.0.1:9090/", "http://p:9090/?x=1"),
                "target.prometheus_url",
                "query",
            ),
            (
                MINIMAL.replace("http://127.0.0.1:9090/", "http://u:pw@p:9090/"),
                "target.prometheus_url",
                "credentials",
            ),
            (
                MINIMAL.replace("target = 60", "target = 0"),
                "target.target",
                "greater than zero",
            ),
            (
                MINIMAL.replace("target = 60", "target = -5"),
                "target.target",
                "greater than zero",
            ),
            (
                MINIMAL.replace("target = 60", "target = nan"),
                "target.target",
                "finite",
            ),
            (
                MINIMAL.replace("target = 60", "target = inf"),
                "target.target",
                "finite",
            ),
            (base("tolerance = 1"), "target.tolerance", "out of range"),
            (base("tolerance = -0.1"), "target.tolerance", "out of range"),
            (
                base("interval = \"0s\""),
                "target.interval",
                "greater than zero",
            ),
            (
                base("timeout = \"0s\""),
                "target.timeout",
                "greater than zero",
            ),
            (base("timeout = \"15s\""), "target.timeout", "shorter than"),
            (
                base("interval = \"5s\"\ntimeout = \"6s\""),
                "target.timeout",
                "shorter than",
            ),
            (
                base("max_step_up = 0"),
                "target.max_step_up",
                "out of range",
            ),
            (
                base("max_step_down = 0"),
                "target.max_step_down",
                "out of range",
            ),
            (
                base("scale_down_stabilization = \"soon\""),
                "target.scale_down_stabilization",
                "invalid duration",
            ),
            (
                base("bearer_token_env = \"T\"\nbearer_token_file = \"/t\""),
                "target.bearer_token",
                "not both",
            ),
            (
                base("bearer_token_env = \" \""),
                "target.bearer_token_env",
                "environment variable",
            ),
            (base("bearer_token = \"x\""), "bearer_token", "unknown"),
            (
                MINIMAL.replace("idch:pool_cpu_busy:avg2m", "sum(rate(x[5m])"),
                "target.query",
                "not PromQL",
            ),
            (
                "prometheus_url = \"http://p:9090\"\nquery = \" \"\ntarget = 1".to_string(),
                "target.query",
                "must not be empty",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(key) && e.contains(why), "{text}: {e}");
            if why != "unknown" {
                assert!(
                    e.starts_with("pool \"web\".target."),
                    "the key names the pool: {e}"
                );
            }
        }
    }

    #[test]
    fn the_query_is_parsed_with_the_pool_name_in_place() {
        // Valid only once `{pool}` is substituted: `{pool}_requests` alone is not PromQL.
        let c = parse(&MINIMAL.replace(
            "idch:pool_cpu_busy:avg2m{pool=\"{pool}\"}",
            "{pool}_requests",
        ))
        .unwrap();
        assert_eq!(
            c.pools[0].target.as_ref().unwrap().query_for("web"),
            "web_requests"
        );
        assert!(promql_parser::parser::parse("{pool}_requests").is_err());
        let c = parse(&MINIMAL.replace(
            "idch:pool_cpu_busy:avg2m{pool=\"{pool}\"}",
            "100 * (1 - avg(rate(node_cpu_seconds_total{mode=\"idle\", pool=\"{pool}\"}[2m])))",
        ))
        .unwrap();
        assert!(c.pools[0]
            .target
            .as_ref()
            .unwrap()
            .query_for("web")
            .contains("pool=\"web\""));
    }

    #[test]
    fn the_bearer_token_is_resolved_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "t0ken\n").unwrap();
        let c = parse(&format!(
            "{MINIMAL}bearer_token_file = {:?}\n",
            path.display()
        ))
        .unwrap();
        let tokens = c.resolve_target_tokens().unwrap();
        assert_eq!(tokens["web"].expose(), "t0ken");
        let c = parse(&format!(
            "{MINIMAL}bearer_token_env = \"IDCH_TEST_SURELY_UNSET_PROM\"\n"
        ))
        .unwrap();
        let e = c.resolve_target_tokens().unwrap_err();
        assert_eq!(e.key, "pool \"web\".target.bearer_token");
        assert!(e.reason.contains("IDCH_TEST_SURELY_UNSET_PROM"), "{e}");
        assert!(parse(MINIMAL)
            .unwrap()
            .resolve_target_tokens()
            .unwrap()
            .is_empty());
    }
}
