//! Secrets: where they come from ([`SecretSource`]) and how they are held ([`Secret`]).

use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::ConfigError;

/// A secret string, held in [`secrecy::SecretString`] (zeroed on drop); its `Debug` and
/// `Display` never show the value.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
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

/// Where a secret comes from: an environment variable or a file. Resolved at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

impl SecretSource {
    /// The source given by a `{key}_env` / `{key}_file` pair, if any; both at once, or an empty
    /// variable name, is an error naming the key.
    pub(super) fn from_pair(
        key: &str,
        env: Option<&str>,
        file: Option<&PathBuf>,
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
            (Some(v), None) => Ok(Some(SecretSource::Env(v.to_string()))),
            (None, Some(p)) => Ok(Some(SecretSource::File(p.clone()))),
            (None, None) => Ok(None),
        }
    }

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
        Ok(Secret::new(value))
    }

    pub fn describe(&self) -> String {
        match self {
            SecretSource::Env(v) => format!("environment variable {v}"),
            SecretSource::File(p) => format!("file {}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_empty_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "\n").unwrap();
        let e = SecretSource::File(path)
            .resolve("auth.read_token")
            .unwrap_err();
        assert_eq!(e.key, "auth.read_token");
        assert!(e.reason.contains("empty"), "{e}");
    }

    #[test]
    fn a_pair_gives_one_source_or_names_the_key() {
        let file = PathBuf::from("/run/x");
        let e = SecretSource::from_pair("auth.read_token", Some("V"), Some(&file)).unwrap_err();
        assert_eq!(e.key, "auth.read_token");
        assert!(e.reason.contains("not both"), "{e}");
        let e = SecretSource::from_pair("auth.read_token", Some(" "), None).unwrap_err();
        assert_eq!(e.key, "auth.read_token_env");
        assert_eq!(
            SecretSource::from_pair("k", None, Some(&file)).unwrap(),
            Some(SecretSource::File(file))
        );
        assert_eq!(SecretSource::from_pair("k", None, None).unwrap(), None);
    }
}
