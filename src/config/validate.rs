//! What is checked beyond one value's type: inline secrets (before anything else), the rules
//! that span fields ([`Config::validate`]), and turning a serde error into a [`ConfigError`]
//! that names the key.

use std::collections::HashSet;

use serde_path_to_error::Segment;

use super::{Config, ConfigError, SecretSource, TRAEFIK_THROTTLE};

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

/// Refuses `api_key = "..."` and the like before anything else, so that no other error (whose
/// message might quote a value) is ever reported about a file holding a secret.
pub(super) fn refuse_inline_secrets(text: &str) -> Result<(), ConfigError> {
    // A file that is not TOML is reported by the deserializer, with its position.
    let Ok(table) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    for (dotted, instead) in SECRET_KEYS {
        let (section, key) = dotted.split_once('.').expect("dotted key");
        if table
            .get(section)
            .and_then(|t| t.as_table())
            .is_some_and(|t| t.contains_key(key))
        {
            return Err(ConfigError::new(
                *dotted,
                format!("secrets are not read from the configuration file; use {instead}"),
            ));
        }
    }
    Ok(())
}

/// Turns a deserialization error into a `ConfigError` naming the key: the path serde was at
/// (`idcloudhost.timeout`, `pool "web".max`), the unknown key itself, or `(file)` for a
/// syntax error. The position in the file is appended when the parser knows it.
pub(super) fn toml_error(
    text: &str,
    e: serde_path_to_error::Error<toml::de::Error>,
) -> ConfigError {
    let path = key_of(text, e.path());
    let inner = e.into_inner();
    let message = inner.message().trim().to_string();
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string)
    };
    let (key, mut reason) = if let Some(field) = quoted("unknown field `") {
        (field, message.clone())
    } else if let Some(field) = quoted("missing field `") {
        let key = match path.as_deref() {
            None => field.clone(),
            Some(p) => format!("{p}.{field}"),
        };
        let reason = if field == "idcloudhost" {
            "the [idcloudhost] section is required".to_string()
        } else {
            "is required".to_string()
        };
        // Where a missing key would be is no position worth giving.
        return ConfigError::new(key, reason);
    } else {
        (path.unwrap_or_else(|| "(file)".into()), message.clone())
    };
    if let Some(span) = inner.span() {
        reason = format!("{reason} (at byte {})", span.start);
    }
    ConfigError::new(key, reason)
}

/// The dotted key of a serde path, with `pool[i]` written `pool "name"` when pool i has a
/// valid name (and the error is not about the name itself), as [`Config::validate`] writes it.
fn key_of(text: &str, path: &serde_path_to_error::Path) -> Option<String> {
    let segments: Vec<&Segment> = path.iter().collect();
    if segments.is_empty() {
        return None;
    }
    let names = pool_names(text);
    let mut key = String::new();
    for (n, segment) in segments.iter().enumerate() {
        match segment {
            Segment::Seq { index } => {
                let about_name = matches!(
                    segments.get(n + 1..),
                    Some([Segment::Map { key }]) if key == "name"
                );
                let named = key == "pool" && !about_name;
                match names.get(*index).and_then(|n| n.as_deref()) {
                    Some(name) if named => {
                        key.push_str(&format!(" {name:?}"));
                    }
                    _ => key.push_str(&format!("[{index}]")),
                }
            }
            Segment::Map { key: k } | Segment::Enum { variant: k } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
            }
            Segment::Unknown => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push('?');
            }
        }
    }
    Some(key)
}

/// The pool names of a file, as far as it parses: `None` where a name is absent or invalid.
fn pool_names(text: &str) -> Vec<Option<String>> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return vec![];
    };
    let Some(pools) = table.get("pool").and_then(|p| p.as_array()) else {
        return vec![];
    };
    pools
        .iter()
        .map(|p| {
            let name = p.get("name")?.as_str()?;
            let valid = !name.is_empty()
                && name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            valid.then(|| name.to_string())
        })
        .collect()
}

impl Config {
    /// The rules that span fields, in the order a reader meets them, and the defaults that
    /// depend on another field (`clone_prefix`). Every value on its own is already checked.
    pub(super) fn validate(mut self) -> Result<Config, ConfigError> {
        let a = &self.auth;
        SecretSource::from_pair(
            "auth.basic_password",
            a.basic_password_env.as_deref(),
            a.basic_password_file.as_ref(),
        )
        .and_then(|password| match (&a.basic_username, password) {
            (Some(u), Some(_)) if u.is_empty() || u.contains(':') => Err(ConfigError::new(
                "auth.basic_username",
                "must be non-empty and contain no ':'",
            )),
            (Some(_), None) => Err(ConfigError::new(
                "auth.basic_username",
                "needs basic_password_env or basic_password_file",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "auth.basic_password_env",
                "needs auth.basic_username",
            )),
            _ => Ok(()),
        })?;
        for (key, env, file) in [
            (
                "auth.webhook_token",
                &a.webhook_token_env,
                &a.webhook_token_file,
            ),
            ("auth.hmac_secret", &a.hmac_secret_env, &a.hmac_secret_file),
            ("auth.read_token", &a.read_token_env, &a.read_token_file),
            (
                "idcloudhost.api_key",
                &self.cloud.api_key_env,
                &self.cloud.api_key_file,
            ),
        ] {
            SecretSource::from_pair(key, env.as_deref(), file.as_ref())?;
        }

        if self.pools.is_empty() {
            return Err(ConfigError::new(
                "pool",
                "at least one [[pool]] is required",
            ));
        }
        let least_drain = self.traefik.poll_interval + TRAEFIK_THROTTLE;
        let mut names = HashSet::new();
        for (i, pool) in self.pools.iter_mut().enumerate() {
            if pool.name.is_empty() {
                return Err(ConfigError::new(format!("pool[{i}].name"), "is required"));
            }
            let k = |key: &str| format!("pool {:?}.{key}", pool.name);
            if pool.seed_vm.trim().is_empty() {
                return Err(ConfigError::new(
                    k("seed_vm"),
                    "is required: the uuid of the seed VM",
                ));
            }
            if pool.clone_prefix.is_empty() {
                pool.clone_prefix = format!("{}-clone-", pool.name);
            }
            if pool.min > pool.max {
                return Err(ConfigError::new(
                    k("min"),
                    format!("min ({}) is greater than max ({})", pool.min, pool.max),
                ));
            }
            super::schedule::validate(pool)?;
            super::warm::validate(pool)?;
            super::target::validate(pool)?;
            if pool.drain_period < least_drain {
                return Err(ConfigError::new(
                    k("drain_period"),
                    format!(
                        "{} is shorter than Traefik's poll interval + its 2s throttle ({}): requests could still reach a deleted VM",
                        humantime::format_duration(pool.drain_period),
                        humantime::format_duration(least_drain)
                    ),
                ));
            }
            if pool.health.timeout > pool.health.interval {
                return Err(ConfigError::new(
                    k("health.timeout"),
                    "must not be longer than health.interval",
                ));
            }
            if !names.insert(pool.name.clone()) {
                return Err(ConfigError::new(
                    format!("pool[{i}].name"),
                    format!("duplicate pool name {:?}", pool.name),
                ));
            }
        }
        // Two pools whose clone prefixes overlap would adopt each other's clones.
        for (i, a) in self.pools.iter().enumerate() {
            for b in self.pools.iter().skip(i + 1) {
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
        super::notify::validate(&self.notify)?;
        Ok(self)
    }
}
