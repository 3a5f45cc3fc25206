//! `[[pool.schedule]]`: scheduled floors. Each entry opens a window at every occurrence of its
//! `cron` expression (read in its `timezone`) for `duration`; while a window is open the pool's
//! size does not go below its `min`. The expression and the zone are parsed here, at load, so a
//! [`ScheduleConfig`] in hand is valid; `pool::schedule` evaluates them.

use std::collections::HashSet;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::{de, ConfigError, PoolConfig};

/// A parsed cron expression (croner: 5 fields, or 6 with seconds first; names such as `MON-FRI`,
/// `@daily`, `L`, `#`) and the text it came from, which is what two expressions compare by.
#[derive(Debug, Clone)]
pub struct CronExpr {
    text: String,
    cron: croner::Cron,
}

impl CronExpr {
    /// Parses an expression; the error says why.
    pub fn parse(text: &str) -> Result<CronExpr, String> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(text)
            .map_err(|e| {
                format!(
                    "{text:?} is not a cron expression (\"minute hour day-of-month month day-of-week\", \
                     optionally with seconds first): {e}"
                )
            })?;
        Ok(CronExpr {
            text: text.to_string(),
            cron,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn cron(&self) -> &croner::Cron {
        &self.cron
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// One `[[pool.schedule]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Names the window in the activity's cause (`schedule NAME`) and in the status.
    #[serde(deserialize_with = "de::non_blank")]
    pub name: String,
    /// When the window opens.
    #[serde(deserialize_with = "cron")]
    pub cron: CronExpr,
    /// The IANA zone `cron` is read in (`Asia/Jakarta`); default `UTC`.
    #[serde(default = "utc", deserialize_with = "timezone")]
    pub timezone: chrono_tz::Tz,
    /// How long the window stays open after each opening.
    #[serde(deserialize_with = "de::positive_duration")]
    pub duration: Duration,
    /// The pool's least size while the window is open (at most the pool's `max`).
    #[serde(deserialize_with = "de::bounded::<_, 1, 10_000>")]
    pub min: u32,
}

fn utc() -> chrono_tz::Tz {
    chrono_tz::Tz::UTC
}

fn cron<'de, D: Deserializer<'de>>(d: D) -> Result<CronExpr, D::Error> {
    let text = String::deserialize(d)?;
    CronExpr::parse(&text).map_err(D::Error::custom)
}

fn timezone<'de, D: Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
    let text = String::deserialize(d)?;
    text.parse::<chrono_tz::Tz>().map_err(|_| {
        D::Error::custom(format!(
            "{text:?} is not an IANA time zone such as \"UTC\" or \"Asia/Jakarta\""
        ))
    })
}

/// The rules that span a pool's schedule entries: unique names, and no `min` above the pool's
/// `max` (an operator mistake: the floor could never be reached).
pub(super) fn validate(pool: &PoolConfig) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for (j, s) in pool.schedule.iter().enumerate() {
        let k = |key: &str| format!("pool {:?}.schedule[{j}].{key}", pool.name);
        if !names.insert(s.name.as_str()) {
            return Err(ConfigError::new(
                k("name"),
                format!("duplicate schedule name {:?} in this pool", s.name),
            ));
        }
        if s.min > pool.max {
            return Err(ConfigError::new(
                k("min"),
                format!(
                    "min ({}) is greater than the pool's max ({})",
                    s.min, pool.max
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const POOL: &str = "[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"u-1\"\nmax = 5\n";

    fn parse(schedules: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{POOL}{schedules}"))
    }

    fn err(schedules: &str) -> ConfigError {
        parse(schedules).expect_err("should be refused")
    }

    const LUNCH: &str = "[[pool.schedule]]\nname = \"lunch\"\ncron = \"0 12 * * MON-FRI\"\ntimezone = \"Asia/Jakarta\"\nduration = \"1h30m\"\nmin = 3\n";

    #[test]
    fn a_schedule_parses_and_the_zone_defaults_to_utc() {
        let c = parse(&format!(
            "{LUNCH}[[pool.schedule]]\nname = \"tick\"\ncron = \"*/10 * * * * *\"\nduration = \"5s\"\nmin = 2\n"
        ))
        .unwrap();
        let s = &c.pools[0].schedule;
        assert_eq!(s.len(), 2);
        assert_eq!(
            (
                s[0].name.as_str(),
                s[0].cron.as_str(),
                s[0].timezone,
                s[0].duration,
                s[0].min
            ),
            (
                "lunch",
                "0 12 * * MON-FRI",
                chrono_tz::Asia::Jakarta,
                Duration::from_secs(5400),
                3
            )
        );
        assert_eq!(s[1].timezone, chrono_tz::Tz::UTC, "default zone");
        assert!(
            parse("").unwrap().pools[0].schedule.is_empty(),
            "no schedule by default"
        );
    }

    #[test]
    fn each_refusal_names_its_key() {
        let first_ok = LUNCH;
        let cases: &[(&str, String, &str)] = &[
            (
                "a bad expression",
                LUNCH.replace("0 12 * * MON-FRI", "61 12 * * *"),
                "pool \"web\".schedule[0].cron",
            ),
            (
                "not cron at all",
                LUNCH.replace("0 12 * * MON-FRI", "at lunch"),
                "pool \"web\".schedule[0].cron",
            ),
            (
                "an unknown zone",
                format!(
                    "{first_ok}{}",
                    LUNCH
                        .replace("Asia/Jakarta", "Asia/Atlantis")
                        .replace("lunch", "b")
                ),
                "pool \"web\".schedule[1].timezone",
            ),
            (
                "a zero duration",
                LUNCH.replace("1h30m", "0s"),
                "pool \"web\".schedule[0].duration",
            ),
            (
                "a min of 0",
                LUNCH.replace("min = 3", "min = 0"),
                "pool \"web\".schedule[0].min",
            ),
            (
                "a min above the pool's max",
                LUNCH.replace("min = 3", "min = 6"),
                "pool \"web\".schedule[0].min",
            ),
            (
                "a duplicate name",
                format!("{first_ok}{}", LUNCH.replace("0 12", "0 18")),
                "pool \"web\".schedule[1].name",
            ),
            (
                "an empty name",
                LUNCH.replace("name = \"lunch\"", "name = \" \""),
                "pool \"web\".schedule[0].name",
            ),
            (
                "a missing cron",
                LUNCH.replace("cron = \"0 12 * * MON-FRI\"\n", ""),
                "pool \"web\".schedule[0].cron",
            ),
            (
                "an unknown key",
                LUNCH.replace("min = 3", "min = 3\nmax = 4"),
                "max",
            ),
        ];
        for (what, schedules, key) in cases {
            let e = err(schedules);
            assert_eq!(e.key, *key, "{what}: {e}");
        }
        let e = err(&LUNCH.replace("Asia/Jakarta", "Asia/Atlantis"));
        assert!(e.reason.contains("IANA time zone"), "{e}");
        let e = err(&LUNCH.replace("min = 3", "min = 6"));
        assert!(e.reason.contains("greater than the pool's max (5)"), "{e}");
        let e = err(&LUNCH.replace("0 12 * * MON-FRI", "61 12 * * *"));
        assert!(e.reason.contains("is not a cron expression"), "{e}");
    }
}
