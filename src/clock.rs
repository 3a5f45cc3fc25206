//! Wall-clock time as Unix seconds, derived from tokio's clock so that tests can pause and
//! advance it (`tokio::time::pause`). Cooldown clocks and drain deadlines use it and are
//! persisted as Unix seconds, so they survive a restart.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static BASE: OnceLock<(std::time::Instant, f64)> = OnceLock::new();

/// Seconds since the Unix epoch.
///
/// The base is a real instant, and the offset from it is signed: each tokio runtime (a paused
/// test runtime included) reads its own clock against the same base, so one test's runtime that
/// advanced its paused clock by hours never freezes or shifts the clock of another.
pub fn now() -> f64 {
    let (base, unix) = BASE.get_or_init(|| {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        (std::time::Instant::now(), unix)
    });
    let at = tokio::time::Instant::now().into_std();
    match at.checked_duration_since(*base) {
        Some(after) => unix + after.as_secs_f64(),
        None => unix - base.duration_since(at).as_secs_f64(),
    }
}

/// RFC 3339 (UTC, seconds) for a Unix time.
pub fn rfc3339(unix: f64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis((unix * 1000.0) as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}
