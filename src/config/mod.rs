//! Configuration: a TOML file deserialized into typed settings, validated at start-up.
//!
//! Each section is a struct deserialized directly by serde (`deny_unknown_fields`, defaults in
//! `#[serde(default = ...)]`); a value that is wrong on its own is refused by its field
//! deserializer (`de`), a rule that spans fields by [`Config::validate`] (`validate`). Every
//! error names the key and the reason. Secrets never come from the TOML itself, only from
//! environment variables (`*_env`) or files (`*_file`), and they are held in [`Secret`], which
//! never prints its value.

mod de;
mod http;
mod notify;
mod price;
mod schedule;
mod secret;
mod target;
mod validate;
mod warm;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use http::HttpConfig;
pub use notify::{NotifyConfig, NotifyEvent, NotifyFormat};
pub use price::PriceConfig;
pub use schedule::{CronExpr, ScheduleConfig};
pub use secret::{Secret, SecretSource};
pub use target::{TargetConfig, POOL_PLACEHOLDER};
pub use warm::WarmPoolConfig;

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

// ---- defaults --------------------------------------------------------------------------------

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
pub const DEFAULT_STATE_PATH: &str = "/var/lib/idch-autoscaler/state.db";
pub const DEFAULT_API_URL: &str = "https://api.idcloudhost.com";
pub const DEFAULT_API_KEY_ENV: &str = "IDCLOUDHOST_API_KEY";
pub const DEFAULT_HMAC_HEADER: &str = "X-Grafana-Alerting-Signature";
/// Traefik's `providers.providersThrottleDuration` default: a change waits this long after the last.
pub const TRAEFIK_THROTTLE: Duration = Duration::from_secs(2);

mod defaults {
    use super::*;

    pub fn listen() -> SocketAddr {
        DEFAULT_LISTEN.parse().expect("a valid default")
    }
    pub fn state_path() -> PathBuf {
        PathBuf::from(DEFAULT_STATE_PATH)
    }
    pub fn api_url() -> reqwest::Url {
        de::parse_api_url(DEFAULT_API_URL).expect("a valid default")
    }
    pub fn location() -> String {
        "jkt01".into()
    }
    pub fn hmac_header() -> String {
        DEFAULT_HMAC_HEADER.into()
    }
    pub const fn secs<const N: u64>() -> Duration {
        Duration::from_secs(N)
    }
    pub const fn millis<const N: u64>() -> Duration {
        Duration::from_millis(N)
    }
    pub const fn number<const N: u32>() -> u32 {
        N
    }
    pub const fn port<const N: u16>() -> u16 {
        N
    }
    pub const fn termination() -> Termination {
        Termination::Newest
    }
    pub const fn yes() -> bool {
        true
    }
    pub fn rule() -> String {
        "PathPrefix(`/`)".into()
    }
    pub fn entry_points() -> Vec<String> {
        vec!["web".into()]
    }
}

// ---- the file's shape ------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "defaults::listen", deserialize_with = "de::socket_addr")]
    pub listen: SocketAddr,
    #[serde(default = "defaults::state_path")]
    pub state_path: PathBuf,
    #[serde(
        default = "defaults::secs::<15>",
        deserialize_with = "de::positive_duration"
    )]
    pub reconcile_interval: Duration,
    /// Allow webhooks without auth on a non-loopback address.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    #[serde(default)]
    pub auth: AuthConfig,
    /// `[http]`: timeouts and the connection bound of the server.
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(rename = "idcloudhost")]
    pub cloud: CloudConfig,
    #[serde(default)]
    pub traefik: TraefikConfig,
    #[serde(rename = "pool", default)]
    pub pools: Vec<PoolConfig>,
    /// `[[notify]]`: where activities are reported (none by default).
    #[serde(rename = "notify", default)]
    pub notify: Vec<NotifyConfig>,
}

/// `[auth]`. Each secret is a `{key}_env` / `{key}_file` pair; [`Config::validate`] makes sure at
/// most one of each pair is given, so the accessors (`webhook_token()`, ...) are unambiguous.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer token accepted on the webhook and `/v1` write endpoints.
    pub webhook_token_env: Option<String>,
    pub webhook_token_file: Option<PathBuf>,
    /// HTTP basic auth accepted on the same endpoints: user name and password source.
    pub basic_username: Option<String>,
    pub basic_password_env: Option<String>,
    pub basic_password_file: Option<PathBuf>,
    /// Grafana's HMAC-SHA256 signature secret.
    pub hmac_secret_env: Option<String>,
    pub hmac_secret_file: Option<PathBuf>,
    /// The header that carries the signature (Grafana's default).
    #[serde(default = "defaults::hmac_header")]
    pub hmac_header: String,
    /// When set, the signature covers `timestamp:body` and the timestamp must be recent.
    #[serde(default, deserialize_with = "de::empty_is_none")]
    pub hmac_timestamp_header: Option<String>,
    #[serde(
        default = "defaults::secs::<300>",
        deserialize_with = "de::positive_duration"
    )]
    pub hmac_max_skew: Duration,
    /// Bearer token required on the read endpoints (`/traefik`, `/prometheus/targets`, `/v1` reads, `/metrics`).
    pub read_token_env: Option<String>,
    pub read_token_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            webhook_token_env: None,
            webhook_token_file: None,
            basic_username: None,
            basic_password_env: None,
            basic_password_file: None,
            hmac_secret_env: None,
            hmac_secret_file: None,
            hmac_header: defaults::hmac_header(),
            hmac_timestamp_header: None,
            hmac_max_skew: defaults::secs::<300>(),
            read_token_env: None,
            read_token_file: None,
        }
    }
}

fn pair(key: &str, env: &Option<String>, file: &Option<PathBuf>) -> Option<SecretSource> {
    SecretSource::from_pair(key, env.as_deref(), file.as_ref())
        .ok()
        .flatten()
}

impl AuthConfig {
    /// Where the webhook bearer token comes from, if configured.
    pub fn webhook_token(&self) -> Option<SecretSource> {
        pair(
            "auth.webhook_token",
            &self.webhook_token_env,
            &self.webhook_token_file,
        )
    }
    /// The basic-auth user name and where its password comes from, if configured.
    pub fn basic(&self) -> Option<(String, SecretSource)> {
        let password = pair(
            "auth.basic_password",
            &self.basic_password_env,
            &self.basic_password_file,
        )?;
        Some((self.basic_username.clone()?, password))
    }
    /// Where Grafana's HMAC secret comes from, if configured.
    pub fn hmac_secret(&self) -> Option<SecretSource> {
        pair(
            "auth.hmac_secret",
            &self.hmac_secret_env,
            &self.hmac_secret_file,
        )
    }
    /// Where the read token comes from, if configured.
    pub fn read_token(&self) -> Option<SecretSource> {
        pair(
            "auth.read_token",
            &self.read_token_env,
            &self.read_token_file,
        )
    }
}

/// `[idcloudhost]` (required, even when empty).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudConfig {
    /// Base URL without the `/v1` suffix, e.g. `https://api.idcloudhost.com`.
    #[serde(default = "defaults::api_url", deserialize_with = "de::api_url")]
    pub api_url: reqwest::Url,
    #[serde(default = "defaults::location", deserialize_with = "de::location")]
    pub location: String,
    /// The API key's source; neither given means `api_key_env = "IDCLOUDHOST_API_KEY"`.
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "de::positive_id")]
    pub billing_account_id: Option<u64>,
    /// Timeout of one API call (connect + answer).
    #[serde(
        default = "defaults::secs::<10>",
        deserialize_with = "de::positive_duration"
    )]
    pub timeout: Duration,
    /// Attempts of an idempotent call, the first included.
    #[serde(
        default = "defaults::number::<4>",
        deserialize_with = "de::bounded::<_, 1, 20>"
    )]
    pub max_attempts: u32,
}

impl CloudConfig {
    /// Where the API key comes from.
    pub fn api_key(&self) -> SecretSource {
        pair("idcloudhost.api_key", &self.api_key_env, &self.api_key_file)
            .unwrap_or_else(|| SecretSource::Env(DEFAULT_API_KEY_ENV.into()))
    }
}

/// `[traefik]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraefikConfig {
    /// What Traefik's `providers.http.pollInterval` is set to; a drain waits for it.
    #[serde(
        default = "defaults::secs::<5>",
        deserialize_with = "de::positive_duration"
    )]
    pub poll_interval: Duration,
}

impl Default for TraefikConfig {
    fn default() -> Self {
        TraefikConfig {
            poll_interval: defaults::secs::<5>(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Termination {
    Newest,
    Oldest,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// HTTP path to probe; `None` means a TCP connect to the service port.
    #[serde(default, deserialize_with = "de::http_path")]
    pub path: Option<String>,
    #[serde(
        default = "defaults::secs::<2>",
        deserialize_with = "de::positive_duration"
    )]
    pub interval: Duration,
    #[serde(
        default = "defaults::millis::<1000>",
        deserialize_with = "de::positive_duration"
    )]
    pub timeout: Duration,
    #[serde(
        default = "defaults::number::<2>",
        deserialize_with = "de::bounded::<_, 1, 100>"
    )]
    pub healthy_threshold: u32,
    #[serde(
        default = "defaults::number::<3>",
        deserialize_with = "de::bounded::<_, 1, 100>"
    )]
    pub unhealthy_threshold: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            path: None,
            interval: defaults::secs::<2>(),
            timeout: defaults::millis::<1000>(),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    #[serde(default = "defaults::rule", deserialize_with = "de::non_blank")]
    pub rule: String,
    #[serde(
        default = "defaults::entry_points",
        deserialize_with = "de::entry_points"
    )]
    pub entry_points: Vec<String>,
    #[serde(default)]
    pub middlewares: Vec<String>,
    #[serde(default)]
    pub priority: Option<i64>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            rule: defaults::rule(),
            entry_points: defaults::entry_points(),
            middlewares: vec![],
            priority: None,
        }
    }
}

/// One `[[pool]]`. `name` and `seed_vm` are required ([`Config::validate`] says so, naming the
/// pool); an absent `clone_prefix` becomes `{name}-clone-`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    #[serde(default, deserialize_with = "de::pool_name")]
    pub name: String,
    #[serde(default)]
    pub seed_vm: String,
    #[serde(default, deserialize_with = "de::non_empty")]
    pub clone_prefix: String,
    #[serde(default = "defaults::port::<3000>", deserialize_with = "de::port")]
    pub service_port: u16,
    #[serde(default = "defaults::port::<9100>", deserialize_with = "de::port")]
    pub exporter_port: u16,
    #[serde(
        default = "defaults::number::<1>",
        deserialize_with = "de::bounded::<_, 1, 10_000>"
    )]
    pub min: u32,
    #[serde(
        default = "defaults::number::<5>",
        deserialize_with = "de::bounded::<_, 1, 10_000>"
    )]
    pub max: u32,
    #[serde(
        default = "defaults::number::<1>",
        deserialize_with = "de::bounded::<_, 1, 10_000>"
    )]
    pub scale_up_step: u32,
    #[serde(default = "defaults::secs::<180>", deserialize_with = "de::duration")]
    pub scale_up_cooldown: Duration,
    #[serde(default = "defaults::secs::<300>", deserialize_with = "de::duration")]
    pub scale_down_cooldown: Duration,
    #[serde(default = "defaults::secs::<30>", deserialize_with = "de::duration")]
    pub drain_period: Duration,
    #[serde(
        default = "defaults::secs::<600>",
        deserialize_with = "de::positive_duration"
    )]
    pub boot_timeout: Duration,
    #[serde(
        default = "defaults::secs::<300>",
        deserialize_with = "de::positive_duration"
    )]
    pub replace_unhealthy_after: Duration,
    #[serde(default = "defaults::yes")]
    pub release_public_ip: bool,
    #[serde(default = "defaults::termination")]
    pub termination: Termination,
    /// Clone calls a scale-up makes at a time.
    #[serde(
        default = "defaults::number::<3>",
        deserialize_with = "de::bounded::<_, 1, 100>"
    )]
    pub max_concurrent_clones: u32,
    /// Slow start: a newly ready backend's Traefik weight ramps up over this; zero is off.
    #[serde(default, deserialize_with = "de::slow_start")]
    pub slow_start: Duration,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub router: RouterConfig,
    /// `[[pool.schedule]]`: windows during which the pool keeps a larger minimum.
    #[serde(default)]
    pub schedule: Vec<ScheduleConfig>,
    /// `[pool.refresh]`: rolling refresh onto the seed's current disk.
    #[serde(default)]
    pub refresh: RefreshConfig,
    /// `price = { running_per_hour, stopped_per_hour, currency }`: what one VM costs.
    #[serde(default)]
    pub price: PriceConfig,
    /// `warm_pool = { size, max_age }`: stopped clones kept ready to start (none by default).
    #[serde(default)]
    pub warm_pool: Option<WarmPoolConfig>,
    /// `[pool.target]`: target tracking on a Prometheus query (none: alert webhooks only).
    #[serde(default)]
    pub target: Option<TargetConfig>,
}

/// `[pool.refresh]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshConfig {
    /// How many new clones a refresh may add above desired (and above `max`) at a time.
    #[serde(
        default = "defaults::number::<1>",
        deserialize_with = "de::bounded::<_, 1, 100>"
    )]
    pub max_surge: u32,
    /// Drift detection: the path where the app answers its version; unset means off.
    #[serde(default, deserialize_with = "de::http_path")]
    pub version_path: Option<String>,
    /// How often the versions are read (drift detection only).
    #[serde(
        default = "defaults::secs::<30>",
        deserialize_with = "de::positive_duration"
    )]
    pub check_interval: Duration,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        RefreshConfig {
            max_surge: 1,
            version_path: None,
            check_interval: defaults::secs::<30>(),
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("--config", format!("cannot read {}: {e}", path.display()))
        })?;
        Self::parse(&text)
    }

    /// Parses and validates configuration text. Secrets are not resolved here (see
    /// [`Config::resolve_secrets`]).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        validate::refuse_inline_secrets(text)?;
        let deserializer = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(deserializer)
            .map_err(|e| validate::toml_error(text, e))?;
        config.validate()
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
    /// The URL of each `[[notify]]` target, in order (see [`Config::resolve_notify_urls`]).
    pub notify_urls: Vec<Secret>,
    /// Each `[pool.target]`'s Prometheus bearer token, by pool name (pools without one absent).
    pub target_tokens: std::collections::BTreeMap<String, Secret>,
}

impl Config {
    /// Reads every configured secret; an unset variable, an unreadable file or an empty value
    /// is an error naming the key.
    pub fn resolve_secrets(&self) -> Result<Secrets, ConfigError> {
        let a = &self.auth;
        let opt = |s: Option<SecretSource>, key: &str| s.map(|s| s.resolve(key)).transpose();
        Ok(Secrets {
            api_key: Some(self.cloud.api_key().resolve("idcloudhost.api_key")?),
            webhook_token: opt(a.webhook_token(), "auth.webhook_token")?,
            basic: match a.basic() {
                Some((u, p)) => Some((u, p.resolve("auth.basic_password")?)),
                None => None,
            },
            hmac_secret: opt(a.hmac_secret(), "auth.hmac_secret")?,
            read_token: opt(a.read_token(), "auth.read_token")?,
            notify_urls: self.resolve_notify_urls()?,
            target_tokens: self.resolve_target_tokens()?,
        })
    }

    /// The URL of each `[[notify]]` target, read from `url_env` / `url_file` where given.
    pub fn resolve_notify_urls(&self) -> Result<Vec<Secret>, ConfigError> {
        self.notify
            .iter()
            .enumerate()
            .map(|(i, t)| t.resolve_url(&format!("notify[{i}]")))
            .collect()
    }

    /// The bearer token of each `[pool.target]` that has one, by pool name.
    pub fn resolve_target_tokens(
        &self,
    ) -> Result<std::collections::BTreeMap<String, Secret>, ConfigError> {
        let mut tokens = std::collections::BTreeMap::new();
        for pool in &self.pools {
            if let Some(source) = pool.target.as_ref().and_then(|t| t.bearer_token()) {
                let key = format!("pool {:?}.target.bearer_token", pool.name);
                tokens.insert(pool.name.clone(), source.resolve(&key)?);
            }
        }
        Ok(tokens)
    }
}

#[cfg(test)]
mod tests;
