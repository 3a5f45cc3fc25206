//! `[[notify]]`: where the service reports what it did (a Slack-compatible webhook or a JSON
//! endpoint), which kinds of activity it reports, and where the URL comes from. A Slack webhook's
//! URL is its secret, so it comes from `url_env` / `url_file` like every other secret; the plain
//! `url` is for endpoints whose URL carries none.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::{Deserializer, Error};
use serde::Deserialize;

use super::{de, ConfigError, Secret, SecretSource};

/// One `[[notify]]` target. Exactly one of `url`, `url_env`, `url_file` (checked by
/// [`validate`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The target's name in logs and metrics (default: its index, `"0"`, `"1"`, ...).
    #[serde(default, deserialize_with = "target_name")]
    pub name: Option<String>,
    /// A URL without a secret in it, given in the file.
    #[serde(default, deserialize_with = "plain_url")]
    pub url: Option<reqwest::Url>,
    /// The URL's source when it carries a secret (a Slack webhook does).
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
    #[serde(default)]
    pub format: NotifyFormat,
    /// The kinds of activity sent; absent means every activity that changed something or failed.
    #[serde(default)]
    pub events: Option<Vec<NotifyEvent>>,
    /// Timeout of one delivery attempt (connect + answer).
    #[serde(
        default = "super::defaults::secs::<5>",
        deserialize_with = "de::positive_duration"
    )]
    pub timeout: Duration,
}

/// The body sent: Slack's `{"text": ...}`, or the event as JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    Slack,
    #[default]
    Json,
}

/// The kinds of activity a target can ask for (`events = [...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// A change of the desired size: `scale_up`, `scale_down`, `set_desired`.
    Scale,
    /// A clone call (`clone`: ok, failed, unknown, not_created).
    Clone,
    /// A clone that passed its health gate.
    Ready,
    /// A drain started: `drain` (scale-down) or `replace_unhealthy`.
    Drain,
    /// A delete (`delete`: ok or failed), or a clone that vanished outside the autoscaler.
    Delete,
    /// A clone not healthy within `boot_timeout`.
    BootFailed,
    /// A rolling refresh step.
    Refresh,
    /// A scheduled floor taking effect.
    Schedule,
}

impl NotifyEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Scale => "scale",
            NotifyEvent::Clone => "clone",
            NotifyEvent::Ready => "ready",
            NotifyEvent::Drain => "drain",
            NotifyEvent::Delete => "delete",
            NotifyEvent::BootFailed => "boot_failed",
            NotifyEvent::Refresh => "refresh",
            NotifyEvent::Schedule => "schedule",
        }
    }

    /// The kind of an activity, by its action; `None` for actions no filter names
    /// (`adopted`, `release_ip`, ...), which only a target without `events` receives.
    pub fn of_action(action: &str) -> Option<NotifyEvent> {
        Some(match action {
            "scale_up" | "scale_down" | "set_desired" | "desired" | "target" => NotifyEvent::Scale,
            "clone" => NotifyEvent::Clone,
            "ready" => NotifyEvent::Ready,
            "drain" | "replace_unhealthy" => NotifyEvent::Drain,
            "delete" | "vanished" => NotifyEvent::Delete,
            "boot_failed" => NotifyEvent::BootFailed,
            "refresh" => NotifyEvent::Refresh,
            "schedule" => NotifyEvent::Schedule,
            _ => return None,
        })
    }
}

impl NotifyConfig {
    /// Where the URL comes from when it is a secret.
    fn source(&self, key: &str) -> Result<Option<SecretSource>, ConfigError> {
        SecretSource::from_pair(
            &format!("{key}.url"),
            self.url_env.as_deref(),
            self.url_file.as_ref(),
        )
    }

    /// The target's name in logs and metrics.
    pub fn label(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| index.to_string())
    }

    /// The URL, read from its source; held as a [`Secret`] whatever the source, so that no log
    /// line or debug print shows it. A URL from the environment or a file that is not http(s)
    /// is refused without quoting it.
    pub fn resolve_url(&self, key: &str) -> Result<Secret, ConfigError> {
        if let Some(url) = &self.url {
            return Ok(Secret::new(url.as_str()));
        }
        let source = self
            .source(key)?
            .ok_or_else(|| ConfigError::new(key, "needs one of url, url_env, url_file"))?;
        let which = match source {
            SecretSource::Env(_) => "url_env",
            SecretSource::File(_) => "url_file",
        };
        let secret = source.resolve(&format!("{key}.{which}"))?;
        let parsed = reqwest::Url::parse(secret.expose().trim()).ok();
        if !parsed.is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        {
            return Err(ConfigError::new(
                format!("{key}.{which}"),
                format!(
                    "the {} does not hold an http or https URL with a host (its value is not shown: it may be a secret)",
                    source.describe()
                ),
            ));
        }
        Ok(Secret::new(secret.expose().trim()))
    }
}

/// Rules that span a target's fields: exactly one URL source, unique names, no duplicate
/// events.
pub(super) fn validate(targets: &[NotifyConfig]) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    for (i, t) in targets.iter().enumerate() {
        let key = format!("notify[{i}]");
        let secret = t.source(&key)?;
        match (&t.url, secret) {
            (None, None) => {
                return Err(ConfigError::new(
                    format!("{key}.url"),
                    "is required: give url, url_env or url_file",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    format!("{key}.url"),
                    "give one of url, url_env or url_file, not several",
                ))
            }
            _ => {}
        }
        if let Some(events) = &t.events {
            if events.is_empty() {
                return Err(ConfigError::new(
                    format!("{key}.events"),
                    "is empty: leave it out to send every event",
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for (j, e) in events.iter().enumerate() {
                if !seen.insert(*e) {
                    return Err(ConfigError::new(
                        format!("{key}.events[{j}]"),
                        format!("{:?} is listed twice", e.as_str()),
                    ));
                }
            }
        }
        if !names.insert(t.label(i)) {
            return Err(ConfigError::new(
                format!("{key}.name"),
                format!("duplicate notify target name {:?}", t.label(i)),
            ));
        }
    }
    Ok(())
}

/// `notify[].name`: a label value, so letters, digits, `-`, `_`, `.`.
fn target_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let name = String::deserialize(d)?;
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(D::Error::custom(format!(
            "{name:?} must be 1-63 characters of letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(Some(name))
}

/// `notify[].url`: an http(s) URL that carries no secret. User info and Slack's webhook host
/// are refused (pointing at `url_env` / `url_file`), and the value is never quoted in an error,
/// since it may be a secret pasted in the wrong key.
fn plain_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<reqwest::Url>, D::Error> {
    let text = String::deserialize(d)?;
    let url = reqwest::Url::parse(text.trim())
        .map_err(|e| D::Error::custom(format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(D::Error::custom("must be an http or https URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(D::Error::custom(
            "carries credentials; secrets are not read from the configuration file, use url_env or url_file",
        ));
    }
    if url
        .host_str()
        .is_some_and(|h| h.eq_ignore_ascii_case("hooks.slack.com"))
    {
        return Err(D::Error::custom(
            "a Slack webhook URL is a secret and is not read from the configuration file; use url_env or url_file",
        ));
    }
    Ok(Some(url))
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const BASE: &str = "[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"u-1\"\n";

    fn parse(notify: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}\n{notify}"))
    }

    fn err(notify: &str) -> ConfigError {
        parse(notify).expect_err("should be refused")
    }

    #[test]
    fn targets_parse_with_their_defaults() {
        let c = parse(
            "[[notify]]\nurl = \"http://127.0.0.1:9/hook\"\n\
             [[notify]]\nname = \"ops\"\nurl_env = \"SLACK_URL\"\nformat = \"slack\"\nevents = [\"scale\", \"boot_failed\"]\ntimeout = \"2s\"\n",
        )
        .unwrap();
        let [a, b] = &c.notify[..] else {
            panic!("two targets")
        };
        assert_eq!(
            a.url.as_ref().map(|u| u.as_str()),
            Some("http://127.0.0.1:9/hook")
        );
        assert_eq!(
            (a.format, a.events.clone(), a.timeout),
            (NotifyFormat::Json, None, Duration::from_secs(5))
        );
        assert_eq!(
            (a.label(0), b.label(1)),
            ("0".to_string(), "ops".to_string())
        );
        assert_eq!(b.format, NotifyFormat::Slack);
        assert_eq!(
            b.events,
            Some(vec![NotifyEvent::Scale, NotifyEvent::BootFailed])
        );
        assert_eq!(b.timeout, Duration::from_secs(2));
        assert!(parse("").unwrap().notify.is_empty(), "no target by default");
    }

    #[test]
    fn refusals_name_the_key() {
        let cases = [
            ("[[notify]]\nformat = \"json\"\n", "notify[0].url", "is required"),
            (
                "[[notify]]\nurl = \"http://127.0.0.1:9/\"\nurl_env = \"X\"\n",
                "notify[0].url",
                "not several",
            ),
            (
                "[[notify]]\nurl_env = \"X\"\nurl_file = \"/run/x\"\n",
                "notify[0].url",
                "not both",
            ),
            (
                "[[notify]]\nurl = \"http://127.0.0.1:9/\"\nevents = [\"scale\", \"clone\", \"reboot\"]\n",
                "notify[0].events[2]",
                "unknown variant `reboot`",
            ),
            (
                "[[notify]]\nurl = \"http://127.0.0.1:9/\"\nevents = []\n",
                "notify[0].events",
                "is empty",
            ),
            (
                "[[notify]]\nurl = \"http://127.0.0.1:9/\"\nevents = [\"ready\", \"ready\"]\n",
                "notify[0].events[1]",
                "twice",
            ),
            ("[[notify]]\nurl = \"ftp://127.0.0.1/\"\n", "notify[0].url", "http or https"),
            ("[[notify]]\nurl = \"not a url\"\n", "notify[0].url", "is not a URL"),
            (
                "[[notify]]\nurl = \"http://127.0.0.1:9/\"\nformat = \"xml\"\n",
                "notify[0].format",
                "unknown variant",
            ),
            (
                "[[notify]]\nurl = \"http://127.0.0.1:9/\"\ntimeout = \"0s\"\n",
                "notify[0].timeout",
                "greater than zero",
            ),
            (
                "[[notify]]\nurl = \"http://127.0.0.1:9/\"\nsecret = 1\n",
                "secret",
                "unknown field",
            ),
            (
                "[[notify]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/\"\n[[notify]]\nname = \"a\"\nurl = \"http://127.0.0.1:8/\"\n",
                "notify[1].name",
                "duplicate",
            ),
            (
                "[[notify]]\nname = \"a b\"\nurl = \"http://127.0.0.1:9/\"\n",
                "notify[0].name",
                "letters, digits",
            ),
        ];
        for (text, key, reason) in cases {
            let e = err(text);
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(e.reason.contains(reason), "{text}: {e}");
        }
    }

    #[test]
    fn a_secret_in_the_plain_url_is_refused_without_being_quoted() {
        for url in [
            "https://hooks.slack.com/services/T000/B000/s3cr3t",
            "https://user:s3cr3t@example.com/hook",
        ] {
            let e = err(&format!("[[notify]]\nurl = \"{url}\"\n"));
            assert_eq!(e.key, "notify[0].url", "{e}");
            assert!(e.reason.contains("url_env or url_file"), "{e}");
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn a_url_from_the_environment_or_a_file_is_resolved_checked_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, "https://hooks.slack.com/services/T/B/s3cr3t\n").unwrap();
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "s3cr3t-but-no-url\n").unwrap();
        let c = parse(&format!(
            "[[notify]]\nurl_file = \"{}\"\n[[notify]]\nurl = \"http://127.0.0.1:9/plain\"\n",
            good.display()
        ))
        .unwrap();
        let urls = c.resolve_notify_urls().unwrap();
        assert_eq!(
            urls[0].expose(),
            "https://hooks.slack.com/services/T/B/s3cr3t"
        );
        assert_eq!(urls[1].expose(), "http://127.0.0.1:9/plain");
        assert!(!format!("{urls:?} {c:?}").contains("s3cr3t"));

        let c = parse(&format!("[[notify]]\nurl_file = \"{}\"\n", bad.display())).unwrap();
        let e = c.resolve_notify_urls().unwrap_err();
        assert_eq!(e.key, "notify[0].url_file");
        assert!(e.reason.contains("http or https"), "{e}");
        assert!(!e.to_string().contains("s3cr3t"), "{e}");

        let c = parse("[[notify]]\nurl_env = \"IDCH_TEST_NOTIFY_SURELY_UNSET\"\n").unwrap();
        let e = c.resolve_notify_urls().unwrap_err();
        assert_eq!(e.key, "notify[0].url_env");
        assert!(e.reason.contains("IDCH_TEST_NOTIFY_SURELY_UNSET"), "{e}");
    }

    #[test]
    fn every_event_name_maps_back_from_an_action() {
        for (action, event) in [
            ("scale_up", "scale"),
            ("scale_down", "scale"),
            ("set_desired", "scale"),
            ("target", "scale"),
            ("clone", "clone"),
            ("ready", "ready"),
            ("drain", "drain"),
            ("replace_unhealthy", "drain"),
            ("delete", "delete"),
            ("boot_failed", "boot_failed"),
            ("refresh", "refresh"),
            ("schedule", "schedule"),
        ] {
            assert_eq!(
                NotifyEvent::of_action(action).map(|e| e.as_str()),
                Some(event)
            );
        }
        assert_eq!(NotifyEvent::of_action("release_ip"), None);
        assert_eq!(
            NotifyEvent::of_action("adopted"),
            None,
            "the seed is adopted too"
        );
    }
}
