//! The configuration's contract: keys, defaults, and an error naming the key for each rule.

use super::*;

const GOOD: &str = r#"
listen = "0.0.0.0:4000"
state_path = "/var/lib/idch-autoscaler/state.db"
reconcile_interval = "15s"

[auth]
webhook_token_env = "AUTOSCALER_WEBHOOK_TOKEN"
read_token_env = "AUTOSCALER_READ_TOKEN"

[idcloudhost]
api_url = "https://api.idcloudhost.com"
location = "jkt01"
api_key_env = "IDCLOUDHOST_API_KEY"
billing_account_id = 1200211740

[traefik]
poll_interval = "5s"

[[pool]]
name = "calculate"
seed_vm = "a0c79e13-6eda-4e68-a64c-91637589ec55"
clone_prefix = "calculate-service-clone-"
service_port = 3000
exporter_port = 9100
min = 1
max = 5
scale_up_step = 1
scale_up_cooldown = "3m"
scale_down_cooldown = "5m"
drain_period = "30s"
boot_timeout = "10m"
release_public_ip = true
termination = "newest"
health = { path = "/healthz", interval = "2s", timeout = "1s", healthy_threshold = 2, unhealthy_threshold = 3 }
router = { rule = "Path(`/calculate`)", entry_points = ["web"] }
"#;

fn err(text: &str) -> ConfigError {
    Config::parse(text).expect_err("should be rejected")
}

fn with(replace: &str, by: &str) -> String {
    assert!(GOOD.contains(replace), "fixture lacks {replace}");
    GOOD.replacen(replace, by, 1)
}

#[test]
fn the_design_example_parses() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.listen, "0.0.0.0:4000".parse().unwrap());
    assert_eq!(c.reconcile_interval, Duration::from_secs(15));
    assert_eq!(c.cloud.api_url.as_str(), "https://api.idcloudhost.com/");
    assert_eq!(c.cloud.billing_account_id, Some(1200211740));
    let p = &c.pools[0];
    assert_eq!(p.name, "calculate");
    assert_eq!(p.scale_up_cooldown, Duration::from_secs(180));
    assert_eq!(p.health.path.as_deref(), Some("/healthz"));
    assert_eq!(p.router.rule, "Path(`/calculate`)");
    assert_eq!(p.termination, Termination::Newest);
}

#[test]
fn defaults_for_a_minimal_file() {
    let c = Config::parse("[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"u-1\"\n").unwrap();
    assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
    assert_eq!(
        c.cloud.api_key(),
        SecretSource::Env(DEFAULT_API_KEY_ENV.into())
    );
    let p = &c.pools[0];
    assert_eq!(p.clone_prefix, "web-clone-");
    assert_eq!(
        (p.min, p.max, p.service_port, p.exporter_port),
        (1, 5, 3000, 9100)
    );
    assert_eq!(p.health.path, None, "no path means a TCP probe");
    assert_eq!(p.drain_period, Duration::from_secs(30));
}

#[test]
fn api_url_with_v1_suffix_is_normalised() {
    let c = Config::parse(&with(
        "api_url = \"https://api.idcloudhost.com\"",
        "api_url = \"https://api.idcloudhost.com/v1/\"",
    ))
    .unwrap();
    assert_eq!(c.cloud.api_url.as_str(), "https://api.idcloudhost.com/");
}

#[test]
fn unknown_key_is_named() {
    let e = err(&with("max = 5", "max = 5\nmaxx = 6"));
    assert_eq!(e.key, "maxx");
    assert!(e.reason.contains("unknown field"), "{e}");
    let e = err(&with("[traefik]", "[traefik]\npoll = \"1s\""));
    assert_eq!(e.key, "poll");
}

#[test]
fn min_greater_than_max() {
    let e = err(&with("min = 1", "min = 7"));
    assert_eq!(e.key, "pool \"calculate\".min");
    assert!(e.reason.contains("greater than max"), "{e}");
}

#[test]
fn bad_duration() {
    let e = err(&with(
        "scale_up_cooldown = \"3m\"",
        "scale_up_cooldown = \"3 fortnights\"",
    ));
    assert_eq!(e.key, "pool \"calculate\".scale_up_cooldown");
    assert!(e.reason.contains("invalid duration"), "{e}");
    let e = err(&with(
        "reconcile_interval = \"15s\"",
        "reconcile_interval = \"0s\"",
    ));
    assert_eq!(e.key, "reconcile_interval");
}

#[test]
fn duplicate_pool_name() {
    let second = "\n[[pool]]\nname = \"calculate\"\nseed_vm = \"other\"\nclone_prefix = \"x-\"\n";
    let e = err(&format!("{GOOD}{second}"));
    assert_eq!(e.key, "pool[1].name");
    assert!(e.reason.contains("duplicate"), "{e}");
}

#[test]
fn overlapping_prefixes_and_shared_seed() {
    let second =
        "\n[[pool]]\nname = \"b\"\nseed_vm = \"other\"\nclone_prefix = \"calculate-service-\"\n";
    let e = err(&format!("{GOOD}{second}"));
    assert!(e.key.ends_with(".clone_prefix"), "{e}");
    let second = "\n[[pool]]\nname = \"b\"\nseed_vm = \"a0c79e13-6eda-4e68-a64c-91637589ec55\"\nclone_prefix = \"b-\"\n";
    let e = err(&format!("{GOOD}{second}"));
    assert!(e.key.ends_with(".seed_vm"), "{e}");
}

#[test]
fn seed_missing() {
    let e = err(&with(
        "seed_vm = \"a0c79e13-6eda-4e68-a64c-91637589ec55\"\n",
        "",
    ));
    assert_eq!(e.key, "pool \"calculate\".seed_vm");
    assert!(e.reason.contains("required"));
}

#[test]
fn port_out_of_range() {
    let e = err(&with("service_port = 3000", "service_port = 70000"));
    assert_eq!(e.key, "pool \"calculate\".service_port");
    assert!(e.reason.contains("out of range"));
    let e = err(&with("exporter_port = 9100", "exporter_port = 0"));
    assert_eq!(e.key, "pool \"calculate\".exporter_port");
}

#[test]
fn other_errors_name_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "listen = \"0.0.0.0:4000\"",
            "listen = \"nowhere\"",
            "listen",
        ),
        (
            "termination = \"newest\"",
            "termination = \"random\"",
            "pool \"calculate\".termination",
        ),
        (
            "drain_period = \"30s\"",
            "drain_period = \"3s\"",
            "pool \"calculate\".drain_period",
        ),
        (
            "path = \"/healthz\"",
            "path = \"healthz\"",
            "pool \"calculate\".health.path",
        ),
        (
            "timeout = \"1s\"",
            "timeout = \"5s\"",
            "pool \"calculate\".health.timeout",
        ),
        (
            "healthy_threshold = 2",
            "healthy_threshold = 0",
            "pool \"calculate\".health.healthy_threshold",
        ),
        (
            "scale_up_step = 1",
            "scale_up_step = 0",
            "pool \"calculate\".scale_up_step",
        ),
        (
            "name = \"calculate\"",
            "name = \"has space\"",
            "pool[0].name",
        ),
        (
            "location = \"jkt01\"",
            "location = \"\"",
            "idcloudhost.location",
        ),
        (
            "api_url = \"https://api.idcloudhost.com\"",
            "api_url = \"ftp://x\"",
            "idcloudhost.api_url",
        ),
        (
            "billing_account_id = 1200211740",
            "billing_account_id = -1",
            "idcloudhost.billing_account_id",
        ),
        ("min = 1", "min = 0", "pool \"calculate\".min"),
        (
            "rule = \"Path(`/calculate`)\"",
            "rule = \"\"",
            "pool \"calculate\".router.rule",
        ),
    ];
    for (from, to, key) in cases {
        let e = err(&with(from, to));
        assert_eq!(&e.key, key, "{from} -> {to}: {e}");
    }
}

#[test]
fn no_pool_and_no_cloud_section() {
    let e = err("[idcloudhost]\n");
    assert_eq!(e.key, "pool");
    let e = err("[[pool]]\nname = \"a\"\nseed_vm = \"x\"\n");
    assert_eq!(e.key, "idcloudhost");
}

#[test]
fn secrets_in_the_file_are_refused() {
    let e = err(&with(
        "api_key_env = \"IDCLOUDHOST_API_KEY\"",
        "api_key = \"abc\"",
    ));
    assert_eq!(e.key, "idcloudhost.api_key");
    assert!(e.reason.contains("api_key_env"), "{e}");
    assert!(!e.to_string().contains("abc"));
    let e = err(&with("[auth]", "[auth]\nwebhook_token = \"t\""));
    assert_eq!(e.key, "auth.webhook_token");
}

#[test]
fn wrong_type_and_syntax_errors_are_reported() {
    let e = err(&with("max = 5", "max = \"five\""));
    assert!(e.reason.contains("invalid type"), "{e}");
    let e = err("listen = ");
    assert_eq!(e.key, "(file)");
}

// ---- added with the serde rewrite: one test per rule, and the defaults of every key ----------

#[test]
fn every_default_is_the_documented_one() {
    let c = Config::parse("[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"u-1\"\n").unwrap();
    assert_eq!(c.state_path, PathBuf::from(DEFAULT_STATE_PATH));
    assert_eq!(c.reconcile_interval, Duration::from_secs(15));
    assert!(!c.allow_unauthenticated);
    assert_eq!(c.auth, AuthConfig::default());
    assert_eq!(c.auth.hmac_header, DEFAULT_HMAC_HEADER);
    assert_eq!(c.auth.hmac_max_skew, Duration::from_secs(300));
    assert_eq!(c.auth.webhook_token(), None);
    assert_eq!(c.cloud.api_url.as_str(), "https://api.idcloudhost.com/");
    assert_eq!(c.cloud.location, "jkt01");
    assert_eq!(c.cloud.billing_account_id, None);
    assert_eq!(c.cloud.timeout, Duration::from_secs(10));
    assert_eq!(c.cloud.max_attempts, 4);
    assert_eq!(c.traefik.poll_interval, Duration::from_secs(5));
    let p = &c.pools[0];
    assert_eq!(p.scale_up_step, 1);
    assert_eq!(p.scale_up_cooldown, Duration::from_secs(180));
    assert_eq!(p.scale_down_cooldown, Duration::from_secs(300));
    assert_eq!(p.boot_timeout, Duration::from_secs(600));
    assert_eq!(p.replace_unhealthy_after, Duration::from_secs(300));
    assert!(p.release_public_ip);
    assert_eq!(p.termination, Termination::Newest);
    assert_eq!(p.health, HealthConfig::default());
    assert_eq!(
        (p.health.interval, p.health.timeout),
        (Duration::from_secs(2), Duration::from_secs(1))
    );
    assert_eq!(
        (p.health.healthy_threshold, p.health.unhealthy_threshold),
        (2, 3)
    );
    assert_eq!(p.router.rule, "PathPrefix(`/`)");
    assert_eq!(p.router.entry_points, vec!["web".to_string()]);
    assert!(p.router.middlewares.is_empty() && p.router.priority.is_none());
    // A partial inline table keeps the defaults of the keys it leaves out.
    let c = Config::parse(
        "[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"u-1\"\nhealth = { path = \"/h\" }\nrouter = { priority = 7 }\n",
    )
    .unwrap();
    let p = &c.pools[0];
    assert_eq!(p.health.path.as_deref(), Some("/h"));
    assert_eq!(p.health.interval, Duration::from_secs(2));
    assert_eq!(p.router.priority, Some(7));
    assert_eq!(p.router.rule, "PathPrefix(`/`)");
}

#[test]
fn unknown_keys_are_refused_in_every_section() {
    for (section, key) in [
        ("[auth]", "webhook_tokn_env"),
        ("[idcloudhost]", "region"),
        ("[traefik]", "poll"),
    ] {
        let e = err(&with(section, &format!("{section}\n{key} = \"x\"")));
        assert_eq!(e.key, key, "{e}");
        assert!(e.reason.contains("unknown field"), "{e}");
    }
    let e = err(&with(
        "path = \"/healthz\"",
        "path = \"/healthz\", port = 1",
    ));
    assert_eq!(e.key, "port");
    let e = err(&with("entry_points = [\"web\"]", "entry_point = [\"web\"]"));
    assert_eq!(e.key, "entry_point");
    let e = err(&format!("top = 1\n{GOOD}"));
    assert_eq!(e.key, "top");
}

#[test]
fn type_errors_name_the_pool_and_the_key() {
    let e = err(&with("max = 5", "max = \"five\""));
    assert_eq!(e.key, "pool \"calculate\".max");
    let e = err(&with("timeout = \"1s\"", "timeout = 1"));
    assert_eq!(e.key, "pool \"calculate\".health.timeout");
    let e = err(&with(
        "release_public_ip = true",
        "release_public_ip = \"yes\"",
    ));
    assert_eq!(e.key, "pool \"calculate\".release_public_ip");
    let e = err(&with("location = \"jkt01\"", "location = 1"));
    assert_eq!(e.key, "idcloudhost.location");
    // A pool whose own name is bad is named by its index.
    let e = err(&with("name = \"calculate\"", "name = 5"));
    assert_eq!(e.key, "pool[0].name");
    assert!(e.reason.contains("invalid type"), "{e}");
}

#[test]
fn pool_name_is_required() {
    let e = err("[idcloudhost]\n[[pool]]\nseed_vm = \"x\"\n");
    assert_eq!(e.key, "pool[0].name");
    assert!(e.reason.contains("required"), "{e}");
    let e = err(&with("name = \"calculate\"", "name = \"\""));
    assert_eq!(e.key, "pool[0].name");
}

#[test]
fn clone_prefix_defaults_from_the_name_but_must_not_be_empty() {
    let e = err(&with(
        "clone_prefix = \"calculate-service-clone-\"",
        "clone_prefix = \"\"",
    ));
    assert_eq!(e.key, "pool \"calculate\".clone_prefix");
    assert!(e.reason.contains("must not be empty"), "{e}");
    let c = Config::parse(&with("clone_prefix = \"calculate-service-clone-\"\n", "")).unwrap();
    assert_eq!(c.pools[0].clone_prefix, "calculate-clone-");
}

#[test]
fn drain_must_cover_the_traefik_poll_interval_plus_throttle() {
    // 30s drain against a 28s poll: 30 = 28 + 2 is just enough; 29s poll is not.
    let ok = with("poll_interval = \"5s\"", "poll_interval = \"28s\"");
    assert!(Config::parse(&ok).is_ok());
    let e = err(&with("poll_interval = \"5s\"", "poll_interval = \"29s\""));
    assert_eq!(e.key, "pool \"calculate\".drain_period");
    assert!(e.reason.contains("31s"), "{e}");
    assert!(e.reason.contains("poll interval"), "{e}");
}

#[test]
fn health_timeout_is_not_longer_than_the_interval() {
    let e = err(&with("timeout = \"1s\"", "timeout = \"3s\""));
    assert_eq!(e.key, "pool \"calculate\".health.timeout");
    assert!(e.reason.contains("health.interval"), "{e}");
    assert!(Config::parse(&with("timeout = \"1s\"", "timeout = \"2s\"")).is_ok());
}

#[test]
fn ranges_of_counts() {
    let cases: &[(&str, &str, &str)] = &[
        ("max = 5", "max = 10001", "pool \"calculate\".max"),
        ("max = 5", "max = -1", "pool \"calculate\".max"),
        (
            "unhealthy_threshold = 3",
            "unhealthy_threshold = 101",
            "pool \"calculate\".health.unhealthy_threshold",
        ),
        (
            "billing_account_id = 1200211740",
            "billing_account_id = 1\nmax_attempts = 21",
            "idcloudhost.max_attempts",
        ),
        (
            "billing_account_id = 1200211740",
            "billing_account_id = 1\nmax_attempts = 0",
            "idcloudhost.max_attempts",
        ),
    ];
    for (from, to, key) in cases {
        let e = err(&with(from, to));
        assert_eq!(&e.key, key, "{from} -> {to}: {e}");
        assert!(e.reason.contains("out of range"), "{e}");
    }
}

#[test]
fn durations_name_the_key_and_the_accepted_forms() {
    let e = err(&with("poll_interval = \"5s\"", "poll_interval = \"5\""));
    assert_eq!(e.key, "traefik.poll_interval");
    assert!(e.reason.contains("\"15s\", \"3m\" or \"1h30m\""), "{e}");
    let e = err(&with("[auth]", "[auth]\nhmac_max_skew = \"0s\""));
    assert_eq!(e.key, "auth.hmac_max_skew");
    assert!(e.reason.contains("greater than zero"), "{e}");
    let e = err(&with("billing_account_id = 1200211740", "timeout = \"0s\""));
    assert_eq!(e.key, "idcloudhost.timeout");
    let e = err(&with("boot_timeout = \"10m\"", "boot_timeout = \"0s\""));
    assert_eq!(e.key, "pool \"calculate\".boot_timeout");
    // Zero is a valid cooldown.
    let c = Config::parse(&with(
        "scale_up_cooldown = \"3m\"",
        "scale_up_cooldown = \"0s\"",
    ))
    .unwrap();
    assert_eq!(c.pools[0].scale_up_cooldown, Duration::ZERO);
    let c = Config::parse(&with("drain_period = \"30s\"", "drain_period = \"1m 5s\"")).unwrap();
    assert_eq!(c.pools[0].drain_period, Duration::from_secs(65));
}

#[test]
fn secret_pairs_are_checked() {
    let e = err(&with(
        "webhook_token_env = \"AUTOSCALER_WEBHOOK_TOKEN\"",
        "webhook_token_env = \"AUTOSCALER_WEBHOOK_TOKEN\"\nwebhook_token_file = \"/run/t\"",
    ));
    assert_eq!(e.key, "auth.webhook_token");
    assert!(e.reason.contains("not both"), "{e}");
    let e = err(&with(
        "api_key_env = \"IDCLOUDHOST_API_KEY\"",
        "api_key_env = \"\"",
    ));
    assert_eq!(e.key, "idcloudhost.api_key_env");
    let e = err(&with("[auth]", "[auth]\nbasic_username = \"grafana\""));
    assert_eq!(e.key, "auth.basic_username");
    assert!(e.reason.contains("basic_password_env"), "{e}");
    let e = err(&with("[auth]", "[auth]\nbasic_password_env = \"P\""));
    assert_eq!(e.key, "auth.basic_password_env");
    let e = err(&with(
        "[auth]",
        "[auth]\nbasic_username = \"a:b\"\nbasic_password_env = \"P\"",
    ));
    assert_eq!(e.key, "auth.basic_username");
    let c = Config::parse(&with(
        "[auth]",
        "[auth]\nbasic_username = \"grafana\"\nbasic_password_file = \"/run/p\"",
    ))
    .unwrap();
    assert_eq!(
        c.auth.basic(),
        Some((
            "grafana".to_string(),
            SecretSource::File(PathBuf::from("/run/p"))
        ))
    );
    assert_eq!(
        c.auth.read_token(),
        Some(SecretSource::Env("AUTOSCALER_READ_TOKEN".into()))
    );
}

#[test]
fn every_inline_secret_is_refused_before_any_other_error() {
    for (section, key) in [
        ("[auth]", "read_token"),
        ("[auth]", "basic_password"),
        ("[auth]", "hmac_secret"),
    ] {
        // `max = "five"` would be an error too: the secret is reported first.
        let text = with(section, &format!("{section}\n{key} = \"hunter2\"")).replacen(
            "max = 5",
            "max = \"five\"",
            1,
        );
        let e = err(&text);
        assert_eq!(e.key, format!("auth.{key}"));
        assert!(e.reason.contains(&format!("{key}_env")), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}

#[test]
fn hmac_timestamp_header_empty_means_unset() {
    let c = Config::parse(&with("[auth]", "[auth]\nhmac_timestamp_header = \"\"")).unwrap();
    assert_eq!(c.auth.hmac_timestamp_header, None);
    let c = Config::parse(&with("[auth]", "[auth]\nhmac_timestamp_header = \"X-Ts\"")).unwrap();
    assert_eq!(c.auth.hmac_timestamp_header.as_deref(), Some("X-Ts"));
}

#[test]
fn router_entry_points_must_be_named() {
    let e = err(&with("entry_points = [\"web\"]", "entry_points = [\"\"]"));
    assert_eq!(e.key, "pool \"calculate\".router.entry_points");
    assert!(e.reason.contains("empty"), "{e}");
}

#[test]
fn api_url_without_host_or_a_url_at_all() {
    let e = err(&with(
        "api_url = \"https://api.idcloudhost.com\"",
        "api_url = \"not a url\"",
    ));
    assert_eq!(e.key, "idcloudhost.api_url");
    assert!(e.reason.contains("is not a URL"), "{e}");
}

#[test]
fn resolve_secrets_names_the_key_that_is_missing() {
    let c = Config::parse(&with(
        "api_key_env = \"IDCLOUDHOST_API_KEY\"",
        "api_key_env = \"IDCH_TEST_CONFIG_SURELY_UNSET\"",
    ))
    .unwrap();
    let e = c.resolve_secrets().unwrap_err();
    assert_eq!(e.key, "idcloudhost.api_key");
    assert!(e.reason.contains("IDCH_TEST_CONFIG_SURELY_UNSET"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "k\n").unwrap();
    let text = format!(
        "[auth]\nread_token_file = {:?}\n[idcloudhost]\napi_key_file = {:?}\n[[pool]]\nname = \"a\"\nseed_vm = \"s\"\n",
        dir.path().join("absent"),
        key
    );
    let e = Config::parse(&text).unwrap().resolve_secrets().unwrap_err();
    assert_eq!(e.key, "auth.read_token");
    let text = text
        .replace("read_token_file", "webhook_token_file")
        .replace(
            &format!("{:?}", dir.path().join("absent")),
            &format!("{key:?}"),
        );
    let s = Config::parse(&text).unwrap().resolve_secrets().unwrap();
    assert_eq!(s.api_key.unwrap().expose(), "k");
    assert_eq!(s.webhook_token.unwrap().expose(), "k");
    assert!(s.read_token.is_none());
}

#[test]
fn slow_start_is_off_by_default_and_bounded() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(
        c.pools[0].slow_start,
        Duration::ZERO,
        "off unless asked for"
    );
    let c = Config::parse(&with("drain_period", "slow_start = \"30s\"\ndrain_period")).unwrap();
    assert_eq!(c.pools[0].slow_start, Duration::from_secs(30));
    let c = Config::parse(&with("drain_period", "slow_start = \"1h\"\ndrain_period")).unwrap();
    assert_eq!(c.pools[0].slow_start, Duration::from_secs(3600));
    let e = err(&with("drain_period", "slow_start = \"2h\"\ndrain_period"));
    assert_eq!(e.key, "pool \"calculate\".slow_start");
    assert!(e.reason.contains("2h") && e.reason.contains("1h"), "{e}");
    let e = err(&with("drain_period", "slow_start = \"soon\"\ndrain_period"));
    assert_eq!(e.key, "pool \"calculate\".slow_start");
    assert!(e.reason.contains("invalid duration"), "{e}");
}

#[test]
fn warm_pool_is_off_by_default_counts_against_max_and_names_its_keys() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.pools[0].warm_pool, None, "no warm pool unless asked for");
    let c = Config::parse(&with(
        "drain_period",
        "warm_pool = { size = 2 }\ndrain_period",
    ))
    .unwrap();
    assert_eq!(
        c.pools[0].warm_pool,
        Some(WarmPoolConfig {
            size: 2,
            max_age: Duration::from_secs(7 * 86400)
        }),
        "max_age defaults to 7 days"
    );
    let c = Config::parse(&with(
        "drain_period",
        "warm_pool = { size = 4, max_age = \"1d\" }\ndrain_period",
    ))
    .unwrap();
    assert_eq!(
        c.pools[0].warm_pool.as_ref().unwrap().size,
        4,
        "1 + 4 = max 5"
    );
    // min 1 + 5 warm clones > max 5: warm clones count against max.
    let e = err(&with(
        "drain_period",
        "warm_pool = { size = 5 }\ndrain_period",
    ));
    assert_eq!(e.key, "pool \"calculate\".warm_pool.size");
    assert!(e.reason.contains("max 5"), "{e}");
    for (bad, key) in [
        ("{ size = 0 }", "warm_pool.size"),
        ("{ size = 1, max_age = \"0s\" }", "warm_pool.max_age"),
        ("{ max_age = \"1d\" }", "warm_pool.size"),
        ("{ size = 1, max = 2 }", "max"),
    ] {
        let e = err(&with(
            "drain_period",
            &format!("warm_pool = {bad}\ndrain_period"),
        ));
        assert!(e.key.ends_with(key), "{bad}: {e}");
    }
}
