//! `[pool.price]` (or `price = { ... }` on a `[[pool]]`): what one VM of the pool costs per hour,
//! running and stopped, for the cost endpoint and metrics.
//!
//! The defaults are the example invoice figures of IDCloudHost's API documentation for a
//! 2 CPU / 2 GB / 20 GB VM (0.02882 per hour running, 0.0028 stopped: a stopped VM keeps paying
//! for its disk). The documentation names no currency; `IDR` is the default label.

use serde::de::{Deserializer, Error};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    #[serde(default = "running_default", deserialize_with = "price")]
    pub running_per_hour: f64,
    #[serde(default = "stopped_default", deserialize_with = "price")]
    pub stopped_per_hour: f64,
    #[serde(default = "currency_default", deserialize_with = "currency")]
    pub currency: String,
}

fn running_default() -> f64 {
    0.02882
}

fn stopped_default() -> f64 {
    0.0028
}

fn currency_default() -> String {
    "IDR".into()
}

impl Default for PriceConfig {
    fn default() -> Self {
        PriceConfig {
            running_per_hour: running_default(),
            stopped_per_hour: stopped_default(),
            currency: currency_default(),
        }
    }
}

/// A finite price, zero or more (an integer is read as a number too).
fn price<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !v.is_finite() {
        return Err(D::Error::custom(format!(
            "{v} is not a price; give a finite number per hour"
        )));
    }
    if v < 0.0 {
        return Err(D::Error::custom(format!(
            "{v} is negative; a price per hour is zero or more"
        )));
    }
    Ok(v)
}

/// A currency label: letters only (`IDR`, `USD`), 1 to 8 of them (it is a metric label).
fn currency<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = String::deserialize(d)?;
    let v = v.trim().to_string();
    if v.is_empty() || v.len() > 8 || !v.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(D::Error::custom(format!(
            "{v:?} is not a currency code; use letters like \"IDR\""
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn parse(price: &str) -> Result<Config, String> {
        Config::parse(&format!(
            "[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"seed\"\n{price}\n"
        ))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_bad_prices_name_the_key() {
        let c = parse("").unwrap();
        let p = &c.pools[0].price;
        assert_eq!(
            (p.running_per_hour, p.stopped_per_hour, p.currency.as_str()),
            (0.02882, 0.0028, "IDR")
        );
        let c = parse("price = { running_per_hour = 400, currency = \"IDR\" }").unwrap();
        assert_eq!(c.pools[0].price.running_per_hour, 400.0);
        assert_eq!(c.pools[0].price.stopped_per_hour, 0.0028);
        for (text, key, why) in [
            (
                "price = { running_per_hour = -1.0 }",
                "price.running_per_hour",
                "negative",
            ),
            (
                "price = { stopped_per_hour = nan }",
                "price.stopped_per_hour",
                "finite",
            ),
            (
                "price = { running_per_hour = inf }",
                "price.running_per_hour",
                "finite",
            ),
            (
                "price = { currency = \"\" }",
                "price.currency",
                "currency code",
            ),
            ("price = { hourly = 1 }", "hourly", "unknown"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key) && e.contains(why), "{text}: {e}");
        }
    }
}
