//! `[http]`: how long the server waits for a client and how many clients it serves at once.

use std::time::Duration;

use serde::de::{Deserializer, Error};
use serde::Deserialize;

use super::de;

/// Limits of the HTTP server, so a slow or stalled client cannot hold the service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A connection must send a request's whole header within this time (from its first byte,
    /// or from the end of the previous response on a kept-alive connection), else it is closed.
    #[serde(deserialize_with = "de::positive_duration")]
    pub header_timeout: Duration,
    /// A request (body and handler) must finish within this time, else it is answered 408.
    #[serde(deserialize_with = "de::positive_duration")]
    pub request_timeout: Duration,
    /// Connections served at once; beyond it new connections wait in the listen backlog.
    #[serde(deserialize_with = "max_connections")]
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

/// Zero would mean "serve nothing".
fn max_connections<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = i64::deserialize(d)?;
    if !(1..=1_000_000).contains(&n) {
        return Err(D::Error::custom(format!(
            "must be from 1 to 1000000, not {n}"
        )));
    }
    Ok(n as usize)
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
