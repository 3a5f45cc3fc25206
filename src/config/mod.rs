//! Configuration: a TOML file parsed into typed settings, validated at start-up.
//!
//! Every error names the key and the reason. Secrets never come from the TOML itself, only from
//! environment variables (`*_env`) or files (`*_file`), and they are held in [`Secret`], which
//! never prints its value.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod http;
pub use http::HttpConfig;

/// A secret string: its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A configuration error: which key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Where a secret comes from: an environment variable or a file. Resolved at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret. Trailing newlines of a file are trimmed.
    pub fn resolve(&self, key: &str) -> Result<Secret, ConfigError> {
        let value = match self {
            SecretSource::Env(var) => std::env::var(var).map_err(|_| {
                ConfigError::new(key, format!("environment variable {var} is not set"))
            })?,
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        };
        if value.is_empty() {
            return Err(ConfigError::new(key, "the secret is empty"));
        }
        Ok(Secret(value))
    }

    pub fn describe(&self) -> String {
        match self {
            SecretSource::Env(v) => format!("environment variable {v}"),
            SecretSource::File(p) => format!("file {}", p.display()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub state_path: PathBuf,
    pub reconcile_interval: Duration,
    /// Allow webhooks without auth on a non-loopback address.
    pub allow_unauthenticated: bool,
    pub auth: AuthConfig,
    /// `[http]`: timeouts and the connection bound of the server.
    pub http: HttpConfig,
    pub cloud: CloudConfig,
    pub traefik: TraefikConfig,
    pub pools: Vec<PoolConfig>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuthConfig {
    /// Bearer token accepted on the webhook and `/v1` write endpoints.
    pub webhook_token: Option<SecretSource>,
    /// HTTP basic auth accepted on the same endpoints: user name and password source.
    pub basic: Option<(String, SecretSource)>,
    /// Grafana's HMAC-SHA256 signature secret.
    pub hmac_secret: Option<SecretSource>,
    /// The header that carries the signature (Grafana's default).
    pub hmac_header: String,
    /// When set, the signature covers `timestamp:body` and the timestamp must be recent.
    pub hmac_timestamp_header: Option<String>,
    pub hmac_max_skew: Duration,
    /// Bearer token required on the read endpoints (`/traefik`, `/prometheus/targets`, `/v1` reads, `/metrics`).
    pub read_token: Option<SecretSource>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CloudConfig {
    /// Base URL without the `/v1` suffix, e.g. `https://api.idcloudhost.com`.
    pub api_url: reqwest::Url,
    pub location: String,
    pub api_key: SecretSource,
    pub billing_account_id: Option<u64>,
    /// Timeout of one API call (connect + answer).
    pub timeout: Duration,
    /// Attempts of an idempotent call, the first included.
    pub max_attempts: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TraefikConfig {
    /// What Traefik's `providers.http.pollInterval` is set to; a drain waits for it.
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    Newest,
    Oldest,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// HTTP path to probe; `None` means a TCP connect to the service port.
    pub path: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    pub rule: String,
    pub entry_points: Vec<String>,
    pub middlewares: Vec<String>,
    pub priority: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub seed_vm: String,
    pub clone_prefix: String,
    pub service_port: u16,
    pub exporter_port: u16,
    pub min: u32,
    pub max: u32,
    pub scale_up_step: u32,
    pub scale_up_cooldown: Duration,
    pub scale_down_cooldown: Duration,
    pub drain_period: Duration,
    pub boot_timeout: Duration,
    pub replace_unhealthy_after: Duration,
    pub release_public_ip: bool,
    pub termination: Termination,
    pub health: HealthConfig,
    pub router: RouterConfig,
}

// ---- raw TOML shapes -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    state_path: Option<PathBuf>,
    reconcile_interval: Option<String>,
    allow_unauthenticated: Option<bool>,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    http: http::RawHttp,
    idcloudhost: Option<RawCloud>,
    #[serde(default)]
    traefik: RawTraefik,
    #[serde(default)]
    pool: Vec<RawPool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    webhook_token_env: Option<String>,
    webhook_token_file: Option<PathBuf>,
    basic_username: Option<String>,
    basic_password_env: Option<String>,
    basic_password_file: Option<PathBuf>,
    hmac_secret_env: Option<String>,
    hmac_secret_file: Option<PathBuf>,
    hmac_header: Option<String>,
    hmac_timestamp_header: Option<String>,
    hmac_max_skew: Option<String>,
    read_token_env: Option<String>,
    read_token_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCloud {
    api_url: Option<String>,
    location: Option<String>,
    api_key_env: Option<String>,
    api_key_file: Option<PathBuf>,
    billing_account_id: Option<i64>,
    timeout: Option<String>,
    max_attempts: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTraefik {
    poll_interval: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: Option<String>,
    seed_vm: Option<String>,
    clone_prefix: Option<String>,
    service_port: Option<i64>,
    exporter_port: Option<i64>,
    min: Option<i64>,
    max: Option<i64>,
    scale_up_step: Option<i64>,
    scale_up_cooldown: Option<String>,
    scale_down_cooldown: Option<String>,
    drain_period: Option<String>,
    boot_timeout: Option<String>,
    replace_unhealthy_after: Option<String>,
    release_public_ip: Option<bool>,
    termination: Option<String>,
    health: Option<RawHealth>,
    router: Option<RawRouter>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    path: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    healthy_threshold: Option<i64>,
    unhealthy_threshold: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouter {
    rule: Option<String>,
    entry_points: Option<Vec<String>>,
    middlewares: Option<Vec<String>>,
    priority: Option<i64>,
}

// ---- defaults --------------------------------------------------------------------------------

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
pub const DEFAULT_STATE_PATH: &str = "/var/lib/idch-autoscaler/state.db";
pub const DEFAULT_API_URL: &str = "https://api.idcloudhost.com";
pub const DEFAULT_API_KEY_ENV: &str = "IDCLOUDHOST_API_KEY";
pub const DEFAULT_HMAC_HEADER: &str = "X-Grafana-Alerting-Signature";
/// Traefik's `providers.providersThrottleDuration` default: a change waits this long after the last.
pub const TRAEFIK_THROTTLE: Duration = Duration::from_secs(2);

/// Keys that would put a secret in the TOML: refused with a pointer to the right key.
const SECRET_KEYS: &[(&str, &str)] = &[
    ("idcloudhost.api_key", "api_key_env or api_key_file"),
    (
        "auth.webhook_token",
        "webhook_token_env or webhook_token_file",
    ),
    ("auth.read_token", "read_token_env or read_token_file"),
    (
        "auth.basic_password",
        "basic_password_env or basic_password_file",
    ),
    ("auth.hmac_secret", "hmac_secret_env or hmac_secret_file"),
];

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("--config", format!("cannot read {}: {e}", path.display()))
        })?;
        Self::parse(&text)
    }

    /// Parses and validates configuration text. Secrets are not resolved here (see [`SecretSource`]).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let value: toml::Table = text.parse().map_err(|e: toml::de::Error| toml_error(&e))?;
        for (dotted, instead) in SECRET_KEYS {
            let (table, key) = dotted.split_once('.').expect("dotted key");
            if value
                .get(table)
                .and_then(|t| t.as_table())
                .is_some_and(|t| t.contains_key(key))
            {
                return Err(ConfigError::new(
                    *dotted,
                    format!("secrets are not read from the configuration file; use {instead}"),
                ));
            }
        }
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(&e))?;
        raw.validate()
    }
}

/// Turns a TOML error into a `ConfigError`, naming the key when the parser knows it.
fn toml_error(e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    let key = if let Some(rest) = message.strip_prefix("unknown field `") {
        rest.split('`').next().unwrap_or("?").to_string()
    } else if let Some(rest) = message.strip_prefix("missing field `") {
        rest.split('`').next().unwrap_or("?").to_string()
    } else {
        "(file)".to_string()
    };
    let mut reason = message;
    if let Some(span) = e.span() {
        reason = format!("{reason} (at byte {})", span.start);
    }
    ConfigError::new(key, reason)
}

fn duration(key: &str, value: Option<&str>, default: &str) -> Result<Duration, ConfigError> {
    let text = value.unwrap_or(default);
    humantime::parse_duration(text.trim()).map_err(|e| {
        ConfigError::new(
            key,
            format!(
                "invalid duration {text:?} ({e}); use a value like \"15s\", \"3m\" or \"1h30m\""
            ),
        )
    })
}

fn positive_duration(
    key: &str,
    value: Option<&str>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let d = duration(key, value, default)?;
    if d.is_zero() {
        return Err(ConfigError::new(key, "must be greater than zero"));
    }
    Ok(d)
}

fn port(key: &str, value: Option<i64>, default: u16) -> Result<u16, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) if (1..=65535).contains(&v) => Ok(v as u16),
        Some(v) => Err(ConfigError::new(
            key,
            format!("{v} is out of range 1-65535"),
        )),
    }
}

fn count(
    key: &str,
    value: Option<i64>,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) if v >= min as i64 && v <= max as i64 => Ok(v as u32),
        Some(v) => Err(ConfigError::new(
            key,
            format!("{v} is out of range {min}-{max}"),
        )),
    }
}

fn secret(
    key: &str,
    env: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<SecretSource>, ConfigError> {
    match (env, file) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            key,
            format!("give either {key}_env or {key}_file, not both"),
        )),
        (Some(v), None) if v.trim().is_empty() => Err(ConfigError::new(
            format!("{key}_env"),
            "must name an environment variable",
        )),
        (Some(v), None) => Ok(Some(SecretSource::Env(v))),
        (None, Some(p)) => Ok(Some(SecretSource::File(p))),
        (None, None) => Ok(None),
    }
}

/// A pool name is used in URLs, Traefik object names and label values.
fn valid_pool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let listen_text = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            ConfigError::new(
                "listen",
                format!("{listen_text:?} is not an address:port such as \"127.0.0.1:4000\""),
            )
        })?;
        let reconcile_interval = positive_duration(
            "reconcile_interval",
            self.reconcile_interval.as_deref(),
            "15s",
        )?;

        let a = self.auth;
        let basic_password = secret(
            "auth.basic_password",
            a.basic_password_env,
            a.basic_password_file,
        )?;
        let basic = match (a.basic_username, basic_password) {
            (Some(u), Some(p)) if !u.is_empty() && !u.contains(':') => Some((u, p)),
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "auth.basic_username",
                    "must be non-empty and contain no ':'",
                ))
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "auth.basic_username",
                    "needs basic_password_env or basic_password_file",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "auth.basic_password_env",
                    "needs auth.basic_username",
                ))
            }
            (None, None) => None,
        };
        let auth = AuthConfig {
            webhook_token: secret(
                "auth.webhook_token",
                a.webhook_token_env,
                a.webhook_token_file,
            )?,
            basic,
            hmac_secret: secret("auth.hmac_secret", a.hmac_secret_env, a.hmac_secret_file)?,
            hmac_header: a
                .hmac_header
                .unwrap_or_else(|| DEFAULT_HMAC_HEADER.to_string()),
            hmac_timestamp_header: a.hmac_timestamp_header.filter(|h| !h.is_empty()),
            hmac_max_skew: positive_duration(
                "auth.hmac_max_skew",
                a.hmac_max_skew.as_deref(),
                "5m",
            )?,
            read_token: secret("auth.read_token", a.read_token_env, a.read_token_file)?,
        };

        let c = self.idcloudhost.ok_or_else(|| {
            ConfigError::new("idcloudhost", "the [idcloudhost] section is required")
        })?;
        let api_text = c.api_url.as_deref().unwrap_or(DEFAULT_API_URL);
        let mut api_url = reqwest::Url::parse(api_text).map_err(|e| {
            ConfigError::new(
                "idcloudhost.api_url",
                format!("{api_text:?} is not a URL: {e}"),
            )
        })?;
        if !matches!(api_url.scheme(), "http" | "https") || api_url.host_str().is_none() {
            return Err(ConfigError::new(
                "idcloudhost.api_url",
                format!("{api_text:?} must be an http or https URL with a host"),
            ));
        }
        // Accept both "https://api.idcloudhost.com" and ".../v1": the client appends /v1 itself.
        let trimmed = api_url
            .path()
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .to_string();
        api_url.set_path(&trimmed);
        let location = c.location.unwrap_or_else(|| "jkt01".into());
        if location.is_empty()
            || !location
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            return Err(ConfigError::new(
                "idcloudhost.location",
                format!("{location:?} is not a location slug such as \"jkt01\""),
            ));
        }
        let api_key = secret("idcloudhost.api_key", c.api_key_env, c.api_key_file)?
            .unwrap_or_else(|| SecretSource::Env(DEFAULT_API_KEY_ENV.into()));
        let billing_account_id = match c.billing_account_id {
            None => None,
            Some(v) if v > 0 => Some(v as u64),
            Some(v) => {
                return Err(ConfigError::new(
                    "idcloudhost.billing_account_id",
                    format!("{v} must be a positive number"),
                ))
            }
        };
        let cloud = CloudConfig {
            api_url,
            location,
            api_key,
            billing_account_id,
            timeout: positive_duration("idcloudhost.timeout", c.timeout.as_deref(), "10s")?,
            max_attempts: count("idcloudhost.max_attempts", c.max_attempts, 4, 1, 20)?,
        };

        let traefik = TraefikConfig {
            poll_interval: positive_duration(
                "traefik.poll_interval",
                self.traefik.poll_interval.as_deref(),
                "5s",
            )?,
        };

        if self.pool.is_empty() {
            return Err(ConfigError::new(
                "pool",
                "at least one [[pool]] is required",
            ));
        }
        let mut pools = Vec::with_capacity(self.pool.len());
        let mut names = HashSet::new();
        for (i, raw) in self.pool.into_iter().enumerate() {
            let pool = raw.validate(i, &traefik)?;
            if !names.insert(pool.name.clone()) {
                return Err(ConfigError::new(
                    format!("pool[{i}].name"),
                    format!("duplicate pool name {:?}", pool.name),
                ));
            }
            pools.push(pool);
        }
        // Two pools whose clone prefixes overlap would adopt each other's clones.
        for (i, a) in pools.iter().enumerate() {
            for b in pools.iter().skip(i + 1) {
                if a.clone_prefix.starts_with(&b.clone_prefix)
                    || b.clone_prefix.starts_with(&a.clone_prefix)
                {
                    return Err(ConfigError::new(
                        format!("pool {:?}.clone_prefix", b.name),
                        format!(
                            "{:?} overlaps pool {:?}'s prefix {:?}: each pool would claim the other's clones",
                            b.clone_prefix, a.name, a.clone_prefix
                        ),
                    ));
                }
                if a.seed_vm == b.seed_vm {
                    return Err(ConfigError::new(
                        format!("pool {:?}.seed_vm", b.name),
                        format!("the same seed VM as pool {:?}", a.name),
                    ));
                }
            }
        }

        Ok(Config {
            listen,
            state_path: self
                .state_path
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_PATH)),
            reconcile_interval,
            allow_unauthenticated: self.allow_unauthenticated.unwrap_or(false),
            auth,
            http: self.http.validate()?,
            cloud,
            traefik,
            pools,
        })
    }
}

impl RawPool {
    fn validate(self, i: usize, traefik: &TraefikConfig) -> Result<PoolConfig, ConfigError> {
        let name = self
            .name
            .ok_or_else(|| ConfigError::new(format!("pool[{i}].name"), "is required"))?;
        if !valid_pool_name(&name) {
            return Err(ConfigError::new(
                format!("pool[{i}].name"),
                format!("{name:?} must be 1-63 characters of letters, digits, '-' or '_'"),
            ));
        }
        let k = |key: &str| format!("pool {name:?}.{key}");
        let seed_vm = self
            .seed_vm
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                ConfigError::new(k("seed_vm"), "is required: the uuid of the seed VM")
            })?;
        let clone_prefix = self
            .clone_prefix
            .unwrap_or_else(|| format!("{name}-clone-"));
        if clone_prefix.is_empty() {
            return Err(ConfigError::new(k("clone_prefix"), "must not be empty"));
        }
        let service_port = port(&k("service_port"), self.service_port, 3000)?;
        let exporter_port = port(&k("exporter_port"), self.exporter_port, 9100)?;
        let min = count(&k("min"), self.min, 1, 1, 10_000)?;
        let max = count(&k("max"), self.max, 5, 1, 10_000)?;
        if min > max {
            return Err(ConfigError::new(
                k("min"),
                format!("min ({min}) is greater than max ({max})"),
            ));
        }
        let scale_up_step = count(&k("scale_up_step"), self.scale_up_step, 1, 1, 10_000)?;
        let drain_period = duration(&k("drain_period"), self.drain_period.as_deref(), "30s")?;
        let least_drain = traefik.poll_interval + TRAEFIK_THROTTLE;
        if drain_period < least_drain {
            return Err(ConfigError::new(
                k("drain_period"),
                format!(
                    "{} is shorter than Traefik's poll interval + its 2s throttle ({}): requests could still reach a deleted VM",
                    humantime::format_duration(drain_period),
                    humantime::format_duration(least_drain)
                ),
            ));
        }
        let termination = match self.termination.as_deref().unwrap_or("newest") {
            "newest" => Termination::Newest,
            "oldest" => Termination::Oldest,
            other => {
                return Err(ConfigError::new(
                    k("termination"),
                    format!("{other:?} is not one of \"newest\", \"oldest\""),
                ))
            }
        };
        let health = match self.health {
            None => HealthConfig {
                path: None,
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                healthy_threshold: 2,
                unhealthy_threshold: 3,
            },
            Some(h) => {
                if let Some(p) = &h.path {
                    if !p.starts_with('/') {
                        return Err(ConfigError::new(
                            k("health.path"),
                            format!("{p:?} must start with '/'"),
                        ));
                    }
                }
                let interval =
                    positive_duration(&k("health.interval"), h.interval.as_deref(), "2s")?;
                let timeout = positive_duration(&k("health.timeout"), h.timeout.as_deref(), "1s")?;
                if timeout > interval {
                    return Err(ConfigError::new(
                        k("health.timeout"),
                        "must not be longer than health.interval",
                    ));
                }
                HealthConfig {
                    path: h.path,
                    interval,
                    timeout,
                    healthy_threshold: count(
                        &k("health.healthy_threshold"),
                        h.healthy_threshold,
                        2,
                        1,
                        100,
                    )?,
                    unhealthy_threshold: count(
                        &k("health.unhealthy_threshold"),
                        h.unhealthy_threshold,
                        3,
                        1,
                        100,
                    )?,
                }
            }
        };
        let router = match self.router {
            None => RouterConfig {
                rule: "PathPrefix(`/`)".into(),
                entry_points: vec!["web".into()],
                middlewares: vec![],
                priority: None,
            },
            Some(r) => {
                let rule = r.rule.unwrap_or_else(|| "PathPrefix(`/`)".into());
                if rule.trim().is_empty() {
                    return Err(ConfigError::new(k("router.rule"), "must not be empty"));
                }
                let entry_points = r.entry_points.unwrap_or_else(|| vec!["web".into()]);
                if entry_points.iter().any(|e| e.trim().is_empty()) {
                    return Err(ConfigError::new(
                        k("router.entry_points"),
                        "an entry point name is empty",
                    ));
                }
                RouterConfig {
                    rule,
                    entry_points,
                    middlewares: r.middlewares.unwrap_or_default(),
                    priority: r.priority,
                }
            }
        };
        Ok(PoolConfig {
            seed_vm,
            clone_prefix,
            service_port,
            exporter_port,
            min,
            max,
            scale_up_step,
            scale_up_cooldown: duration(
                &k("scale_up_cooldown"),
                self.scale_up_cooldown.as_deref(),
                "3m",
            )?,
            scale_down_cooldown: duration(
                &k("scale_down_cooldown"),
                self.scale_down_cooldown.as_deref(),
                "5m",
            )?,
            drain_period,
            boot_timeout: positive_duration(
                &k("boot_timeout"),
                self.boot_timeout.as_deref(),
                "10m",
            )?,
            replace_unhealthy_after: positive_duration(
                &k("replace_unhealthy_after"),
                self.replace_unhealthy_after.as_deref(),
                "5m",
            )?,
            release_public_ip: self.release_public_ip.unwrap_or(true),
            termination,
            health,
            router,
            name,
        })
    }
}

/// Resolved secrets, read once at start-up.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub api_key: Option<Secret>,
    pub webhook_token: Option<Secret>,
    pub basic: Option<(String, Secret)>,
    pub hmac_secret: Option<Secret>,
    pub read_token: Option<Secret>,
}

impl Config {
    /// Reads every configured secret; an unset variable or unreadable file is an error.
    pub fn resolve_secrets(&self) -> Result<Secrets, ConfigError> {
        let a = &self.auth;
        let opt =
            |s: &Option<SecretSource>, key: &str| s.as_ref().map(|s| s.resolve(key)).transpose();
        Ok(Secrets {
            api_key: Some(self.cloud.api_key.resolve("idcloudhost.api_key")?),
            webhook_token: opt(&a.webhook_token, "auth.webhook_token")?,
            basic: match &a.basic {
                Some((u, p)) => Some((u.clone(), p.resolve("auth.basic_password")?)),
                None => None,
            },
            hmac_secret: opt(&a.hmac_secret, "auth.hmac_secret")?,
            read_token: opt(&a.read_token, "auth.read_token")?,
        })
    }

    /// Warnings that do not make the file invalid (printed by `check`).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut sources: BTreeMap<&str, &SecretSource> = BTreeMap::new();
        sources.insert("idcloudhost.api_key", &self.cloud.api_key);
        if let Some(s) = &self.auth.webhook_token {
            sources.insert("auth.webhook_token", s);
        }
        if let Some((_, s)) = &self.auth.basic {
            sources.insert("auth.basic_password", s);
        }
        if let Some(s) = &self.auth.hmac_secret {
            sources.insert("auth.hmac_secret", s);
        }
        if let Some(s) = &self.auth.read_token {
            sources.insert("auth.read_token", s);
        }
        for (key, source) in sources {
            if let Err(e) = source.resolve(key) {
                out.push(format!("{}: {} (needed at run time)", e.key, e.reason));
            }
        }
        out
    }
}

/// `idch-autoscaler check --config FILE`.
pub fn check_command(path: &Path) -> std::process::ExitCode {
    match Config::load(path) {
        Ok(config) => {
            for w in config.warnings() {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: ok ({} pool{}: {})",
                path.display(),
                config.pools.len(),
                if config.pools.len() == 1 { "" } else { "s" },
                config
                    .pools
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: error: {e}", path.display());
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "0.0.0.0:4000"
state_path = "/var/lib/idch-autoscaler/state.db"
reconcile_interval = "15s"

[auth]
webhook_token_env = "AUTOSCALER_WEBHOOK_TOKEN"
read_token_env = "AUTOSCALER_READ_TOKEN"

[idcloudhost]
api_url = "https://api.idcloudhost.com"
location = "jkt01"
api_key_env = "IDCLOUDHOST_API_KEY"
billing_account_id = 1200211740

[traefik]
poll_interval = "5s"

[[pool]]
name = "calculate"
seed_vm = "a0c79e13-6eda-4e68-a64c-91637589ec55"
clone_prefix = "calculate-service-clone-"
service_port = 3000
exporter_port = 9100
min = 1
max = 5
scale_up_step = 1
scale_up_cooldown = "3m"
scale_down_cooldown = "5m"
drain_period = "30s"
boot_timeout = "10m"
release_public_ip = true
termination = "newest"
health = { path = "/healthz", interval = "2s", timeout = "1s", healthy_threshold = 2, unhealthy_threshold = 3 }
router = { rule = "Path(`/calculate`)", entry_points = ["web"] }
"#;

    fn err(text: &str) -> ConfigError {
        Config::parse(text).expect_err("should be rejected")
    }

    fn with(replace: &str, by: &str) -> String {
        assert!(GOOD.contains(replace), "fixture lacks {replace}");
        GOOD.replacen(replace, by, 1)
    }

    #[test]
    fn the_design_example_parses() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.listen, "0.0.0.0:4000".parse().unwrap());
        assert_eq!(c.reconcile_interval, Duration::from_secs(15));
        assert_eq!(c.cloud.api_url.as_str(), "https://api.idcloudhost.com/");
        assert_eq!(c.cloud.billing_account_id, Some(1200211740));
        let p = &c.pools[0];
        assert_eq!(p.name, "calculate");
        assert_eq!(p.scale_up_cooldown, Duration::from_secs(180));
        assert_eq!(p.health.path.as_deref(), Some("/healthz"));
        assert_eq!(p.router.rule, "Path(`/calculate`)");
        assert_eq!(p.termination, Termination::Newest);
    }

    #[test]
    fn defaults_for_a_minimal_file() {
        let c =
            Config::parse("[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"u-1\"\n").unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(
            c.cloud.api_key,
            SecretSource::Env(DEFAULT_API_KEY_ENV.into())
        );
        let p = &c.pools[0];
        assert_eq!(p.clone_prefix, "web-clone-");
        assert_eq!(
            (p.min, p.max, p.service_port, p.exporter_port),
            (1, 5, 3000, 9100)
        );
        assert_eq!(p.health.path, None, "no path means a TCP probe");
        assert_eq!(p.drain_period, Duration::from_secs(30));
    }

    #[test]
    fn api_url_with_v1_suffix_is_normalised() {
        let c = Config::parse(&with(
            "api_url = \"https://api.idcloudhost.com\"",
            "api_url = \"https://api.idcloudhost.com/v1/\"",
        ))
        .unwrap();
        assert_eq!(c.cloud.api_url.as_str(), "https://api.idcloudhost.com/");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err(&with("max = 5", "max = 5\nmaxx = 6"));
        assert_eq!(e.key, "maxx");
        assert!(e.reason.contains("unknown field"), "{e}");
        let e = err(&with("[traefik]", "[traefik]\npoll = \"1s\""));
        assert_eq!(e.key, "poll");
    }

    #[test]
    fn min_greater_than_max() {
        let e = err(&with("min = 1", "min = 7"));
        assert_eq!(e.key, "pool \"calculate\".min");
        assert!(e.reason.contains("greater than max"), "{e}");
    }

    #[test]
    fn bad_duration() {
        let e = err(&with(
            "scale_up_cooldown = \"3m\"",
            "scale_up_cooldown = \"3 fortnights\"",
        ));
        assert_eq!(e.key, "pool \"calculate\".scale_up_cooldown");
        assert!(e.reason.contains("invalid duration"), "{e}");
        let e = err(&with(
            "reconcile_interval = \"15s\"",
            "reconcile_interval = \"0s\"",
        ));
        assert_eq!(e.key, "reconcile_interval");
    }

    #[test]
    fn duplicate_pool_name() {
        let second =
            "\n[[pool]]\nname = \"calculate\"\nseed_vm = \"other\"\nclone_prefix = \"x-\"\n";
        let e = err(&format!("{GOOD}{second}"));
        assert_eq!(e.key, "pool[1].name");
        assert!(e.reason.contains("duplicate"), "{e}");
    }

    #[test]
    fn overlapping_prefixes_and_shared_seed() {
        let second = "\n[[pool]]\nname = \"b\"\nseed_vm = \"other\"\nclone_prefix = \"calculate-service-\"\n";
        let e = err(&format!("{GOOD}{second}"));
        assert!(e.key.ends_with(".clone_prefix"), "{e}");
        let second = "\n[[pool]]\nname = \"b\"\nseed_vm = \"a0c79e13-6eda-4e68-a64c-91637589ec55\"\nclone_prefix = \"b-\"\n";
        let e = err(&format!("{GOOD}{second}"));
        assert!(e.key.ends_with(".seed_vm"), "{e}");
    }

    #[test]
    fn seed_missing() {
        let e = err(&with(
            "seed_vm = \"a0c79e13-6eda-4e68-a64c-91637589ec55\"\n",
            "",
        ));
        assert_eq!(e.key, "pool \"calculate\".seed_vm");
        assert!(e.reason.contains("required"));
    }

    #[test]
    fn port_out_of_range() {
        let e = err(&with("service_port = 3000", "service_port = 70000"));
        assert_eq!(e.key, "pool \"calculate\".service_port");
        assert!(e.reason.contains("out of range"));
        let e = err(&with("exporter_port = 9100", "exporter_port = 0"));
        assert_eq!(e.key, "pool \"calculate\".exporter_port");
    }

    #[test]
    fn other_errors_name_their_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "listen = \"0.0.0.0:4000\"",
                "listen = \"nowhere\"",
                "listen",
            ),
            (
                "termination = \"newest\"",
                "termination = \"random\"",
                "pool \"calculate\".termination",
            ),
            (
                "drain_period = \"30s\"",
                "drain_period = \"3s\"",
                "pool \"calculate\".drain_period",
            ),
            (
                "path = \"/healthz\"",
                "path = \"healthz\"",
                "pool \"calculate\".health.path",
            ),
            (
                "timeout = \"1s\"",
                "timeout = \"5s\"",
                "pool \"calculate\".health.timeout",
            ),
            (
                "healthy_threshold = 2",
                "healthy_threshold = 0",
                "pool \"calculate\".health.healthy_threshold",
            ),
            (
                "scale_up_step = 1",
                "scale_up_step = 0",
                "pool \"calculate\".scale_up_step",
            ),
            (
                "name = \"calculate\"",
                "name = \"has space\"",
                "pool[0].name",
            ),
            (
                "location = \"jkt01\"",
                "location = \"\"",
                "idcloudhost.location",
            ),
            (
                "api_url = \"https://api.idcloudhost.com\"",
                "api_url = \"ftp://x\"",
                "idcloudhost.api_url",
            ),
            (
                "billing_account_id = 1200211740",
                "billing_account_id = -1",
                "idcloudhost.billing_account_id",
            ),
            ("min = 1", "min = 0", "pool \"calculate\".min"),
            (
                "rule = \"Path(`/calculate`)\"",
                "rule = \"\"",
                "pool \"calculate\".router.rule",
            ),
        ];
        for (from, to, key) in cases {
            let e = err(&with(from, to));
            assert_eq!(&e.key, key, "{from} -> {to}: {e}");
        }
    }

    #[test]
    fn no_pool_and_no_cloud_section() {
        let e = err("[idcloudhost]\n");
        assert_eq!(e.key, "pool");
        let e = err("[[pool]]\nname = \"a\"\nseed_vm = \"x\"\n");
        assert_eq!(e.key, "idcloudhost");
    }

    #[test]
    fn secrets_in_the_file_are_refused() {
        let e = err(&with(
            "api_key_env = \"IDCLOUDHOST_API_KEY\"",
            "api_key = \"abc\"",
        ));
        assert_eq!(e.key, "idcloudhost.api_key");
        assert!(e.reason.contains("api_key_env"), "{e}");
        assert!(!e.to_string().contains("abc"));
        let e = err(&with("[auth]", "[auth]\nwebhook_token = \"t\""));
        assert_eq!(e.key, "auth.webhook_token");
    }

    #[test]
    fn wrong_type_and_syntax_errors_are_reported() {
        let e = err(&with("max = 5", "max = \"five\""));
        assert!(e.reason.contains("invalid type"), "{e}");
        let e = err("listen = ");
        assert_eq!(e.key, "(file)");
    }

    #[test]
    fn secret_sources_resolve_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "s3cr3t\n").unwrap();
        let s = SecretSource::File(path).resolve("k").unwrap();
        assert_eq!(s.expose(), "s3cr3t");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        let e = SecretSource::Env("IDCH_TEST_SURELY_UNSET".into())
            .resolve("idcloudhost.api_key")
            .unwrap_err();
        assert!(e.reason.contains("IDCH_TEST_SURELY_UNSET"));
        let e = SecretSource::File(dir.path().join("missing"))
            .resolve("k")
            .unwrap_err();
        assert!(e.reason.contains("cannot read"));
    }
}
