//! Authentication of the webhook and `/v1` write endpoints: a bearer token, HTTP basic auth, or
//! Grafana's HMAC-SHA256 signature. Every comparison is constant-time.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{AuthConfig, Secret, Secrets};
use axum::http::{header, HeaderMap};

pub struct HmacAuth {
    pub secret: Secret,
    pub header: String,
    pub timestamp_header: Option<String>,
    pub max_skew: Duration,
}

/// The accepted credentials; a request passes if any configured method accepts it.
#[derive(Default)]
pub struct WebhookAuth {
    pub token: Option<Secret>,
    pub basic: Option<(String, Secret)>,
    pub hmac: Option<HmacAuth>,
}

impl WebhookAuth {
    pub fn new(config: &AuthConfig, secrets: &Secrets) -> WebhookAuth {
        WebhookAuth {
            token: secrets.webhook_token.clone(),
            basic: secrets.basic.clone(),
            hmac: secrets.hmac_secret.clone().map(|secret| HmacAuth {
                secret,
                header: config.hmac_header.clone(),
                timestamp_header: config.hmac_timestamp_header.clone(),
                max_skew: config.hmac_max_skew,
            }),
        }
    }

    /// No method configured: every request passes.
    pub fn is_open(&self) -> bool {
        self.token.is_none() && self.basic.is_none() && self.hmac.is_none()
    }

    /// `Ok` when a configured method accepts the request; otherwise why not.
    pub fn check(&self, headers: &HeaderMap, body: &[u8], now_unix: f64) -> Result<(), String> {
        if self.is_open() {
            return Ok(());
        }
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let mut reasons = Vec::new();
        if let Some(value) = authorization {
            let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
            let credentials = credentials.trim();
            if scheme.eq_ignore_ascii_case("bearer") {
                match &self.token {
                    Some(t) if constant_time_eq(credentials.as_bytes(), t.expose().as_bytes()) => {
                        return Ok(())
                    }
                    Some(_) => reasons.push("wrong bearer token"),
                    None => reasons.push("bearer tokens are not configured"),
                }
            } else if scheme.eq_ignore_ascii_case("basic") {
                match &self.basic {
                    Some((user, password)) => {
                        let decoded = base64::engine::general_purpose::STANDARD
                            .decode(credentials)
                            .ok()
                            .and_then(|b| String::from_utf8(b).ok());
                        let ok = decoded
                            .as_deref()
                            .and_then(|d| d.split_once(':'))
                            .is_some_and(|(u, p)| {
                                // Evaluate both, so timing does not tell which one was wrong.
                                let user_ok = constant_time_eq(u.as_bytes(), user.as_bytes());
                                let pass_ok =
                                    constant_time_eq(p.as_bytes(), password.expose().as_bytes());
                                user_ok & pass_ok
                            });
                        if ok {
                            return Ok(());
                        }
                        reasons.push("wrong basic credentials");
                    }
                    None => reasons.push("basic auth is not configured"),
                }
            } else {
                reasons.push("unsupported Authorization scheme");
            }
        }
        if let Some(h) = &self.hmac {
            match headers.get(h.header.as_str()).and_then(|v| v.to_str().ok()) {
                Some(signature) => match h.verify(signature, headers, body, now_unix) {
                    Ok(()) => return Ok(()),
                    Err(e) => return Err(e),
                },
                None if authorization.is_none() => {
                    reasons.push("no credentials (Authorization or signature header)")
                }
                None => {}
            }
        } else if authorization.is_none() {
            reasons.push("no Authorization header");
        }
        Err(reasons.join("; "))
    }
}

impl HmacAuth {
    fn verify(
        &self,
        signature: &str,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: f64,
    ) -> Result<(), String> {
        let given =
            hex::decode(signature.trim()).map_err(|_| format!("{} is not hex", self.header))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose().as_bytes())
            .map_err(|_| "invalid HMAC key".to_string())?;
        if let Some(ts_header) = &self.timestamp_header {
            let ts = headers
                .get(ts_header.as_str())
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("missing {ts_header} header"))?;
            let seconds: i64 = ts
                .trim()
                .parse()
                .map_err(|_| format!("{ts_header} is not a Unix time in seconds"))?;
            let skew = (now_unix - seconds as f64).abs();
            if skew > self.max_skew.as_secs_f64() {
                return Err(format!(
                    "stale or future timestamp: {skew:.0}s from now, more than the allowed {}s",
                    self.max_skew.as_secs()
                ));
            }
            mac.update(ts.trim().as_bytes());
            mac.update(b":");
        }
        mac.update(body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&given)
            .map_err(|_| "signature does not match".to_string())
    }
}

/// The signature Grafana sends: lowercase hex of HMAC-SHA256 over `body` (or `timestamp:body`).
pub fn sign(secret: &str, timestamp: Option<&str>, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    if let Some(ts) = timestamp {
        mac.update(ts.as_bytes());
        mac.update(b":");
    }
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether the request carries `Authorization: Bearer <token>`, compared in constant time.
pub fn bearer_matches(headers: &HeaderMap, token: &Secret) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, given)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(given.trim().as_bytes(), token.expose().as_bytes())
}

/// Compares two byte strings in time that depends only on their lengths (`subtle`).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth() -> WebhookAuth {
        WebhookAuth {
            token: Some(Secret::new("tok")),
            basic: Some(("grafana".into(), Secret::new("pw"))),
            hmac: Some(HmacAuth {
                secret: Secret::new("hk"),
                header: "X-Grafana-Alerting-Signature".into(),
                timestamp_header: Some("X-Grafana-Alerting-Timestamp".into()),
                max_skew: Duration::from_secs(300),
            }),
        }
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn every_method_and_every_failure() {
        let a = auth();
        let now = 1_700_000_000.0;
        let body = br#"{"status":"firing"}"#;
        assert!(a
            .check(
                &headers(&[("authorization", "Bearer tok".into())]),
                body,
                now
            )
            .is_ok());
        assert!(a
            .check(
                &headers(&[("authorization", "Bearer nope".into())]),
                body,
                now
            )
            .is_err());
        let basic = base64::engine::general_purpose::STANDARD.encode("grafana:pw");
        assert!(a
            .check(
                &headers(&[("authorization", format!("Basic {basic}"))]),
                body,
                now
            )
            .is_ok());
        let wrong = base64::engine::general_purpose::STANDARD.encode("grafana:px");
        assert!(a
            .check(
                &headers(&[("authorization", format!("Basic {wrong}"))]),
                body,
                now
            )
            .is_err());
        assert!(a.check(&HeaderMap::new(), body, now).is_err());

        let ts = "1700000000";
        let sig = sign("hk", Some(ts), body);
        let ok = headers(&[
            ("x-grafana-alerting-signature", sig.clone()),
            ("x-grafana-alerting-timestamp", ts.into()),
        ]);
        assert!(a.check(&ok, body, now).is_ok());
        assert!(
            a.check(&ok, b"{\"status\":\"resolved\"}", now).is_err(),
            "a changed body fails"
        );
        let err = a.check(&ok, body, now + 301.0).unwrap_err();
        assert!(err.contains("stale"), "{err}");
        let no_ts = headers(&[("x-grafana-alerting-signature", sign("hk", None, body))]);
        assert!(a.check(&no_ts, body, now).unwrap_err().contains("missing"));
        let bad_hex = headers(&[
            ("x-grafana-alerting-signature", "zz".into()),
            ("x-grafana-alerting-timestamp", ts.into()),
        ]);
        assert!(a.check(&bad_hex, body, now).is_err());
    }

    #[test]
    fn hmac_without_timestamp() {
        let a = WebhookAuth {
            hmac: Some(HmacAuth {
                secret: Secret::new("hk"),
                header: "X-Grafana-Alerting-Signature".into(),
                timestamp_header: None,
                max_skew: Duration::from_secs(300),
            }),
            ..WebhookAuth::default()
        };
        let body = b"{}";
        let h = headers(&[("x-grafana-alerting-signature", sign("hk", None, body))]);
        assert!(a.check(&h, body, 0.0).is_ok());
        let h = headers(&[("x-grafana-alerting-signature", sign("other", None, body))]);
        assert!(a.check(&h, body, 0.0).is_err());
    }

    #[test]
    fn open_when_nothing_is_configured() {
        assert!(WebhookAuth::default()
            .check(&HeaderMap::new(), b"", 0.0)
            .is_ok());
    }
}
