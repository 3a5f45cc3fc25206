//! Wall-clock time as Unix seconds, derived from tokio's clock so that tests can pause and
//! advance it (`tokio::time::pause`). Cooldown clocks and drain deadlines use it and are
//! persisted as Unix seconds, so they survive a restart.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static BASE: OnceLock<(tokio::time::Instant, f64)> = OnceLock::new();

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    let (instant, unix) = BASE.get_or_init(|| {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        (tokio::time::Instant::now(), unix)
    });
    unix + tokio::time::Instant::now()
        .saturating_duration_since(*instant)
        .as_secs_f64()
}

/// RFC 3339 (UTC, seconds) for a Unix time.
pub fn rfc3339(unix: f64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis((unix * 1000.0) as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}
