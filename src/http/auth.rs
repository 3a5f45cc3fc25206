//! Authentication of the webhook and `/v1` write endpoints: a bearer token, HTTP basic auth, or
//! Grafana's HMAC-SHA256 signature. Every comparison is constant-time.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{AuthConfig, Secret, Secrets};

/// The realm named in `WWW-Authenticate` challenges.
pub const REALM: &str = "idch-autoscaler";

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

/// Which method let a request in.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    /// No method is configured.
    Open,
    Token,
    Basic,
    /// A valid signature: it may be used once, until `expires` (Unix seconds), so the caller
    /// must claim it (see `Store::claim_signature`) before acting on the request.
    Signature {
        signature: String,
        expires: f64,
    },
}

/// Why a request was refused: 400 for an ambiguous request, 401 for missing or bad credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: StatusCode,
    pub reason: String,
}

impl Refused {
    fn unauthorized(reason: impl Into<String>) -> Refused {
        Refused {
            status: StatusCode::UNAUTHORIZED,
            reason: reason.into(),
        }
    }
}

/// The value of `name` when it appears at most once; two values are ambiguous (which one would
/// a proxy in front have checked?), so they are refused instead of picking one.
pub fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Refused> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refused {
            status: StatusCode::BAD_REQUEST,
            reason: format!("more than one {name} header; send exactly one"),
        });
    }
    first.to_str().map(Some).map_err(|_| Refused {
        status: StatusCode::BAD_REQUEST,
        reason: format!("the {name} header is not visible ASCII"),
    })
}

impl WebhookAuth {
    pub fn new(config: &AuthConfig, secrets: &Secrets) -> WebhookAuth {
        let auth = WebhookAuth {
            token: secrets.webhook_token.clone(),
            basic: secrets.basic.clone(),
            hmac: secrets.hmac_secret.clone().map(|secret| HmacAuth {
                secret,
                header: config.hmac_header.clone(),
                timestamp_header: config.hmac_timestamp_header.clone(),
                max_skew: config.hmac_max_skew,
            }),
        };
        if let Some(h) = &auth.hmac {
            if h.timestamp_header.is_none() {
                tracing::warn!(
                    window = %humantime::format_duration(h.max_skew),
                    "HMAC without auth.hmac_timestamp_header: a signature covers only the body, so a \
                     replay is refused only within hmac_max_skew of its first use; set \
                     hmac_timestamp_header (and Grafana's timestampHeader) to refuse every replay"
                );
            }
        }
        auth
    }

    /// No method configured: every request passes.
    pub fn is_open(&self) -> bool {
        self.token.is_none() && self.basic.is_none() && self.hmac.is_none()
    }

    /// The `WWW-Authenticate` challenges of a 401: one per configured method.
    pub fn challenges(&self) -> Vec<HeaderValue> {
        let mut out = Vec::new();
        if self.token.is_some() {
            out.push(format!("Bearer realm=\"{REALM}\""));
        }
        if self.basic.is_some() {
            out.push(format!("Basic realm=\"{REALM}\", charset=\"UTF-8\""));
        }
        if let Some(h) = &self.hmac {
            let mut c = format!("HMAC-SHA256 realm=\"{REALM}\", header=\"{}\"", h.header);
            if let Some(ts) = &h.timestamp_header {
                c.push_str(&format!(", timestamp_header=\"{ts}\""));
            }
            out.push(c);
        }
        out.into_iter()
            .filter_map(|c| HeaderValue::from_str(&c).ok())
            .collect()
    }

    /// Which configured method accepts the request; otherwise why not.
    pub fn check(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: f64,
    ) -> Result<Accepted, Refused> {
        if self.is_open() {
            return Ok(Accepted::Open);
        }
        let authorization = single_header(headers, header::AUTHORIZATION.as_str())?;
        let signature = match &self.hmac {
            Some(h) => single_header(headers, &h.header)?,
            None => None,
        };
        let mut reasons = Vec::new();
        if let Some(value) = authorization {
            let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
            let credentials = credentials.trim();
            if scheme.eq_ignore_ascii_case("bearer") {
                match &self.token {
                    Some(t) if constant_time_eq(credentials.as_bytes(), t.expose().as_bytes()) => {
                        return Ok(Accepted::Token)
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
                            return Ok(Accepted::Basic);
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
            match signature {
                Some(signature) => return h.verify(signature, headers, body, now_unix),
                None if authorization.is_none() => {
                    reasons.push("no credentials (Authorization or signature header)")
                }
                None => {}
            }
        } else if authorization.is_none() {
            reasons.push("no Authorization header");
        }
        Err(Refused::unauthorized(reasons.join("; ")))
    }
}

impl HmacAuth {
    fn verify(
        &self,
        signature: &str,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: f64,
    ) -> Result<Accepted, Refused> {
        let given = hex::decode(signature.trim())
            .map_err(|_| Refused::unauthorized(format!("{} is not hex", self.header)))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose().as_bytes())
            .map_err(|_| Refused::unauthorized("invalid HMAC key"))?;
        let expires = match &self.timestamp_header {
            Some(ts_header) => {
                let name = HeaderName::try_from(ts_header.as_str())
                    .map_err(|_| Refused::unauthorized("invalid timestamp header name"))?;
                let ts = single_header(headers, name.as_str())?
                    .ok_or_else(|| Refused::unauthorized(format!("missing {ts_header} header")))?;
                let seconds: i64 = ts.trim().parse().map_err(|_| {
                    Refused::unauthorized(format!("{ts_header} is not a Unix time in seconds"))
                })?;
                let skew = (now_unix - seconds as f64).abs();
                if skew > self.max_skew.as_secs_f64() {
                    return Err(Refused::unauthorized(format!(
                        "stale or future timestamp: {skew:.0}s from now, more than the allowed {}s",
                        self.max_skew.as_secs()
                    )));
                }
                mac.update(ts.trim().as_bytes());
                mac.update(b":");
                // After this, the timestamp itself is refused as stale.
                seconds as f64 + self.max_skew.as_secs_f64()
            }
            // No timestamp: the signature never goes stale; refuse it again for max_skew.
            None => now_unix + self.max_skew.as_secs_f64(),
        };
        mac.update(body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&given)
            .map_err(|_| Refused::unauthorized("signature does not match"))?;
        Ok(Accepted::Signature {
            signature: hex::encode(given),
            expires,
        })
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
/// Two `Authorization` headers are refused (400), not resolved by picking one.
pub fn bearer_matches(headers: &HeaderMap, token: &Secret) -> Result<bool, Refused> {
    let Some(value) = single_header(headers, header::AUTHORIZATION.as_str())? else {
        return Ok(false);
    };
    let Some((scheme, given)) = value.split_once(' ') else {
        return Ok(false);
    };
    Ok(scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(given.trim().as_bytes(), token.expose().as_bytes()))
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
        let err = a.check(&ok, body, now + 301.0).unwrap_err().reason;
        assert!(err.contains("stale"), "{err}");
        let no_ts = headers(&[("x-grafana-alerting-signature", sign("hk", None, body))]);
        assert!(a
            .check(&no_ts, body, now)
            .unwrap_err()
            .reason
            .contains("missing"));
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
    fn a_signature_is_normalised_and_expires_with_its_timestamp() {
        let a = auth();
        let body = b"{}";
        let ts = "1700000000";
        let sig = sign("hk", Some(ts), body);
        let h = headers(&[
            ("x-grafana-alerting-signature", sig.to_uppercase()),
            ("x-grafana-alerting-timestamp", ts.into()),
        ]);
        assert_eq!(
            a.check(&h, body, 1_700_000_100.0).unwrap(),
            Accepted::Signature {
                signature: sig,
                expires: 1_700_000_300.0
            }
        );
    }

    #[test]
    fn two_authorization_headers_are_refused_not_resolved() {
        let a = auth();
        let mut h = HeaderMap::new();
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tok"),
        );
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        let refused = a.check(&h, b"", 0.0).unwrap_err();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(refused.reason.contains("more than one"), "{refused:?}");
        assert!(bearer_matches(&h, &Secret::new("tok")).is_err());
    }

    #[test]
    fn challenges_name_the_configured_methods() {
        let text = |a: &WebhookAuth| {
            a.challenges()
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            text(&auth()),
            [
                "Bearer realm=\"idch-autoscaler\"",
                "Basic realm=\"idch-autoscaler\", charset=\"UTF-8\"",
                "HMAC-SHA256 realm=\"idch-autoscaler\", header=\"X-Grafana-Alerting-Signature\", timestamp_header=\"X-Grafana-Alerting-Timestamp\""
            ]
        );
        let basic_only = WebhookAuth {
            basic: Some(("u".into(), Secret::new("p"))),
            ..WebhookAuth::default()
        };
        assert_eq!(
            text(&basic_only),
            ["Basic realm=\"idch-autoscaler\", charset=\"UTF-8\""]
        );
    }

    #[test]
    fn open_when_nothing_is_configured() {
        assert!(WebhookAuth::default()
            .check(&HeaderMap::new(), b"", 0.0)
            .is_ok());
    }
}
