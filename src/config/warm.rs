//! `warm_pool = { size, max_age }` on a `[[pool]]`: clones kept cloned, booted once and stopped,
//! so a scale-up starts one (seconds) instead of cloning (minutes). A stopped VM is billed for its
//! disk alone (PROTOCOLS.md E.2.6), about a tenth of a running one.

use std::time::Duration;

use serde::Deserialize;

use super::{de, ConfigError, PoolConfig};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmPoolConfig {
    /// How many stopped clones the pool keeps ready to start.
    #[serde(deserialize_with = "de::bounded::<_, 1, 100>")]
    pub size: u32,
    /// A warm clone older than this (by the cloud's `created_at`) is replaced by a fresh one.
    #[serde(
        default = "max_age_default",
        deserialize_with = "de::positive_duration"
    )]
    pub max_age: Duration,
}

fn max_age_default() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

/// Warm clones count against `max`: with `min` serving VMs there must be room for them.
pub(super) fn validate(pool: &PoolConfig) -> Result<(), ConfigError> {
    let Some(warm) = &pool.warm_pool else {
        return Ok(());
    };
    if pool.min + warm.size > pool.max {
        return Err(ConfigError::new(
            format!("pool {:?}.warm_pool.size", pool.name),
            format!(
                "{} warm clones and min {} make {}, more than max {}: warm clones count against max",
                warm.size,
                pool.min,
                pool.min + warm.size,
                pool.max
            ),
        ));
    }
    Ok(())
}
