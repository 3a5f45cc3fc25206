//! Field deserializers for the configuration: each checks one value and says why it is wrong
//! in the words the configuration reference uses. The key is added by the caller (from the
//! path [`serde_path_to_error`] records), so a message here only gives the reason.

use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{Deserializer, Error};
use serde::Deserialize;

/// A duration as a human string: `"500ms"`, `"15s"`, `"3m"`, `"1h30m"`.
///
/// Not `humantime_serde`: its error drops humantime's reason and the hint on the accepted forms.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim()).map_err(|e| {
        D::Error::custom(format!(
            "invalid duration {text:?} ({e}); use a value like \"15s\", \"3m\" or \"1h30m\""
        ))
    })
}

/// A duration greater than zero.
pub fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let value = duration(d)?;
    if value.is_zero() {
        return Err(D::Error::custom("must be greater than zero"));
    }
    Ok(value)
}

/// A whole number in `MIN..=MAX`.
pub fn bounded<'de, D: Deserializer<'de>, const MIN: u32, const MAX: u32>(
    d: D,
) -> Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    if v < i64::from(MIN) || v > i64::from(MAX) {
        return Err(D::Error::custom(format!("{v} is out of range {MIN}-{MAX}")));
    }
    Ok(v as u32)
}

/// A TCP port, 1-65535.
pub fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = i64::deserialize(d)?;
    u16::try_from(v)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| D::Error::custom(format!("{v} is out of range 1-65535")))
}

/// `listen`: an `address:port`.
pub fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        D::Error::custom(format!(
            "{text:?} is not an address:port such as \"127.0.0.1:4000\""
        ))
    })
}

/// `idcloudhost.api_url`: an http(s) URL with a host. A trailing `/v1` is dropped (the client
/// appends it), so both `https://api.idcloudhost.com` and `.../v1` are accepted.
pub fn api_url<'de, D: Deserializer<'de>>(d: D) -> Result<reqwest::Url, D::Error> {
    let text = String::deserialize(d)?;
    parse_api_url(&text).map_err(D::Error::custom)
}

pub fn parse_api_url(text: &str) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{text:?} must be an http or https URL with a host"));
    }
    let trimmed = url
        .path()
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .to_string();
    url.set_path(&trimmed);
    Ok(url)
}

/// `idcloudhost.location`: a slug such as `jkt01`.
pub fn location<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    if text.is_empty()
        || !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(D::Error::custom(format!(
            "{text:?} is not a location slug such as \"jkt01\""
        )));
    }
    Ok(text)
}

/// `idcloudhost.billing_account_id`: a positive number.
pub fn positive_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = i64::deserialize(d)?;
    if v <= 0 {
        return Err(D::Error::custom(format!("{v} must be a positive number")));
    }
    Ok(Some(v as u64))
}

/// A pool name is used in URLs, Traefik object names and label values.
pub fn pool_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(D::Error::custom(format!(
            "{name:?} must be 1-63 characters of letters, digits, '-' or '_'"
        )));
    }
    Ok(name)
}

/// A string that, when given, must not be empty (`clone_prefix`).
pub fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    if text.is_empty() {
        return Err(D::Error::custom("must not be empty"));
    }
    Ok(text)
}

/// A string that must not be blank (`router.rule`).
pub fn non_blank<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Err(D::Error::custom("must not be empty"));
    }
    Ok(text)
}

/// An optional string where `""` means not set (`auth.hmac_timestamp_header`).
pub fn empty_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(String::deserialize(d)?).filter(|s| !s.is_empty()))
}

/// `health.path`: an HTTP path starting with `/`.
pub fn http_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let path = String::deserialize(d)?;
    if !path.starts_with('/') {
        return Err(D::Error::custom(format!("{path:?} must start with '/'")));
    }
    Ok(Some(path))
}

/// `router.entry_points`: names of Traefik entry points, none empty.
pub fn entry_points<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    if names.iter().any(|e| e.trim().is_empty()) {
        return Err(D::Error::custom("an entry point name is empty"));
    }
    Ok(names)
}

/// The longest `slow_start` accepted: a ramp of hours would keep a new VM nearly idle while the
/// pool is short of capacity.
pub const MAX_SLOW_START: Duration = Duration::from_secs(3600);

/// `pool.slow_start`: a duration from zero (off) up to [`MAX_SLOW_START`].
pub fn slow_start<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let value = duration(d)?;
    if value > MAX_SLOW_START {
        return Err(D::Error::custom(format!(
            "{} is longer than the 1h a ramp may last: a new VM would stay nearly idle while the pool needs it",
            humantime::format_duration(value)
        )));
    }
    Ok(value)
}
