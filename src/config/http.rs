//! `[http]`: how long the server waits for a client and how many clients it serves at once.

use std::time::Duration;

use serde::Deserialize;

use super::{positive_duration, ConfigError};

/// Limits of the HTTP server, so a slow or stalled client cannot hold the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// A connection must send a request's whole header within this time (from its first byte,
    /// or from the end of the previous response on a kept-alive connection), else it is closed.
    pub header_timeout: Duration,
    /// A request (body and handler) must finish within this time, else it is answered 408.
    pub request_timeout: Duration,
    /// Connections served at once; beyond it new connections wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// `[http]` as written in the file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    header_timeout: Option<String>,
    request_timeout: Option<String>,
    max_connections: Option<i64>,
}

impl RawHttp {
    /// Every error names its key; zero would mean "close at once" or "serve nothing".
    pub(super) fn validate(self) -> Result<HttpConfig, ConfigError> {
        let max_connections = match self.max_connections {
            None => HttpConfig::default().max_connections,
            Some(n) if (1..=1_000_000).contains(&n) => n as usize,
            Some(n) => {
                return Err(ConfigError::new(
                    "http.max_connections",
                    format!("must be from 1 to 1000000, not {n}"),
                ))
            }
        };
        Ok(HttpConfig {
            header_timeout: positive_duration(
                "http.header_timeout",
                self.header_timeout.as_deref(),
                "10s",
            )?,
            request_timeout: positive_duration(
                "http.request_timeout",
                self.request_timeout.as_deref(),
                "30s",
            )?,
            max_connections,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[idcloudhost]\n[[pool]]\nname = \"p\"\nseed_vm = \"s\"\n";

    #[test]
    fn defaults_values_and_errors() {
        let c = super::super::Config::parse(BASE).unwrap();
        assert_eq!(c.http, HttpConfig::default());
        let c = super::super::Config::parse(&format!(
            "[http]\nheader_timeout = \"2s\"\nrequest_timeout = \"1m\"\nmax_connections = 8\n{BASE}"
        ))
        .unwrap();
        assert_eq!(
            c.http,
            HttpConfig {
                header_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_secs(60),
                max_connections: 8,
            }
        );
        for (text, key) in [
            ("header_timeout = \"0s\"", "http.header_timeout"),
            ("request_timeout = \"0s\"", "http.request_timeout"),
            ("max_connections = 0", "http.max_connections"),
            ("max_connections = -5", "http.max_connections"),
            ("header_timeout = \"soon\"", "http.header_timeout"),
            ("header_timout = \"1s\"", "header_timout"),
        ] {
            let e = super::super::Config::parse(&format!("[http]\n{text}\n{BASE}")).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }
}
