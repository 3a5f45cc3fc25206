//! The whole system on one machine: k6 drives the original article's ramping-arrival-rate
//! profile (compressed in time) through the real Traefik to simulated VMs with a real CPU budget;
//! the real Prometheus scrapes them (discovered through our http_sd) and evaluates the shipped
//! fast CPU rules; the real Alertmanager routes the alerts to our webhooks with the shipped
//! routing; the pool grows and shrinks with no failed request.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use idch_autoscaler::config::Secret;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The shipped file with the addresses and timings of this run substituted.
fn shipped(path: &str, replacements: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(root().join(path)).unwrap();
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "{path} no longer contains {from:?}: update this test"
        );
        text = text.replace(from, to);
    }
    text
}

fn alive(pid: u32) -> bool {
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_alerts_scale_a_real_pool_under_a_real_load_with_no_failed_request() {
    let run_started = Instant::now();
    // ---- the simulated cloud: VMs with a fifth of a core each -------------------------------
    // ---- and the service ------------------------------------------------------------------
    // Cooldowns sized to the compressed profile: a second scale-up within 10 minutes is a
    // `cooldown` (the rule keeps firing while the new VM's samples fill the averaging window),
    // and no scale-down comes within 45 s of the scale-up, i.e. before the peak is over.
    let token = "e2e-webhook-token";
    let app = TestApp::builder()
        .boot_delay(Duration::from_secs(2))
        .sim(|o| o.cpu_budget = Some(0.2))
        .pool("max = 3\nscale_up_cooldown = \"10m\"\nscale_down_cooldown = \"45s\"\nboot_timeout = \"1m\"\n")
        .config(|config| {
            config.reconcile_interval = Duration::from_secs(1);
            config.pools[0].health.interval = Duration::from_millis(500);
            config.pools[0].health.timeout = Duration::from_millis(400);
            config.pools[0].drain_period = Duration::from_secs(4);
        })
        .secrets(|secrets| secrets.webhook_token = Some(Secret::new(token)))
        .spawn()
        .await;
    let (sim, service, http, url) = (&app.sim, app.service(), app.http.clone(), app.url.clone());

    // ---- Traefik ---------------------------------------------------------------------------
    let (traefik, web, _api) = start_traefik(&format!("{url}/traefik"), None).await;
    // Traefik answers 404 until its first poll of /traefik has loaded the route: the run (and its
    // count of failed requests) begins once it routes to the seed.
    eventually(
        Duration::from_secs(30),
        "Traefik routing to the seed",
        || {
            let http = http.clone();
            async move { matches!(calculate(&http, web).await, Ok((200, _))).then_some(()) }
        },
    )
    .await;

    // ---- Alertmanager with the shipped routing, timings compressed ---------------------------
    let am_port = free_port();
    let am_dir = tempfile::tempdir().unwrap();
    std::fs::write(am_dir.path().join("idch-webhook-token"), token).unwrap();
    let am_yml = shipped(
        "prometheus/alertmanager.yml",
        &[
            (
                "http://127.0.0.1:4000/v1/scale-up",
                format!("{url}/v1/scale-up"),
            ),
            (
                "http://127.0.0.1:4000/v1/scale-down",
                format!("{url}/v1/scale-down"),
            ),
            ("group_wait: 10s", "group_wait: 1s".into()),
            ("group_interval: 1m", "group_interval: 5s".into()),
            ("repeat_interval: 5m", "repeat_interval: 20s".into()),
            ("repeat_interval: 6m", "repeat_interval: 20s".into()),
        ],
    );
    std::fs::write(am_dir.path().join("alertmanager.yml"), am_yml).unwrap();
    let am_args = vec![
        format!(
            "--config.file={}",
            am_dir.path().join("alertmanager.yml").display()
        ),
        format!("--storage.path={}", am_dir.path().join("data").display()),
        format!("--web.listen-address=127.0.0.1:{am_port}"),
        "--cluster.listen-address=".to_string(),
        format!("--web.external-url=http://127.0.0.1:{am_port}/"),
    ];
    let alertmanager = Peer::spawn(
        "alertmanager",
        peer_bin("prometheus-alertmanager"),
        &am_args,
        am_dir,
    );
    wait_http_ok(
        format!("http://127.0.0.1:{am_port}/-/ready"),
        Duration::from_secs(30),
        "alertmanager ready",
    )
    .await;

    // ---- Prometheus with the shipped scrape config and the shipped fast CPU rules ----------------
    let prom_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(prom_dir.path().join("rules")).unwrap();
    std::fs::copy(
        root().join("prometheus/rules/autoscaling-fast.yml"),
        prom_dir.path().join("rules/autoscaling-fast.yml"),
    )
    .unwrap();
    let prom_yml = shipped(
        "prometheus/prometheus.yml",
        &[
            (
                "http://127.0.0.1:4000/prometheus/targets",
                format!("{url}/prometheus/targets"),
            ),
            ("rules/autoscaling.yml", "rules/autoscaling-fast.yml".into()),
            ("127.0.0.1:9093", format!("127.0.0.1:{am_port}")),
        ],
    )
    .replace("127.0.0.1:4000", &service.addr.to_string())
    .replace("scrape_interval: 5s", "scrape_interval: 2s")
    .replace("evaluation_interval: 5s", "evaluation_interval: 2s")
    .replace("refresh_interval: 5s", "refresh_interval: 2s");
    let (prometheus, _) =
        start_prometheus(prom_dir, &prom_yml, &["--rules.alert.resend-delay=2s"]).await;

    // ---- a light observer through Traefik: who served each request, and when ------------------
    let seen: Arc<Mutex<Vec<(f64, u16, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let observer = {
        let (seen, stop, http) = (seen.clone(), stop.clone(), http.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 5000 {
                n += 1;
                let at = unix_now();
                let entry = match calculate(&http, web).await {
                    Ok((status, who)) => (at, status, who),
                    Err(e) => (at, 0, e),
                };
                seen.lock().unwrap().push(entry);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // ---- k6: the article's profile, compressed --------------------------------------------------
    let k6_dir = tempfile::tempdir().unwrap();
    let summary = k6_dir.path().join("summary.json");
    let k6_started = unix_now();
    let k6 = k6_load(
        web,
        &[
            "NUMBER=1",
            "BASE_RATE=1",
            "PEAK_RATE=30",
            "WARMUP=10s",
            "RAMP_UP=10s",
            "HOLD=70s",
            "RAMP_DOWN=5s",
            "COOLDOWN=110s",
            "PRE_VUS=20",
            "MAX_VUS=100",
            "GRACEFUL_STOP=10s",
            "P95_MS=5000",
        ],
        &summary,
        k6_dir.path(),
    )
    .output();
    let k6 = tokio::time::timeout(Duration::from_secs(300), k6)
        .await
        .expect("k6 stops by itself")
        .unwrap();
    let k6_stdout = String::from_utf8_lossy(&k6.stdout).to_string();
    // Let the drain and delete of the scale-down finish if it fired near the end.
    let converged = eventually(Duration::from_secs(40), "the pool back to one VM", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let s = pool_status(&http, &url, None).await;
            (s["size"] == 1 && s["desired"] == 1).then_some(s)
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    observer.await.unwrap();

    // ---- what happened -------------------------------------------------------------------
    let mut acts = activity_log(&http, &url).await;
    acts.reverse(); // oldest first
    let at = |a: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(a["at"].as_str().unwrap())
            .unwrap()
            .timestamp() as f64
    };
    let find = |action: &str| -> Vec<&serde_json::Value> {
        acts.iter().filter(|a| a["action"] == action).collect()
    };
    let ups = find("scale_up");
    let downs = find("scale_down");
    let metrics = metrics_text(&http, &url).await;
    let decisions: BTreeMap<String, String> = metrics
        .lines()
        .filter(|l| l.starts_with("idch_autoscaler_webhook_decisions_total{"))
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();

    let k6_summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let value = |m: &str, f: &str| {
        k6_summary["metrics"][m]["values"][f]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    let requests = value("http_reqs", "count");
    let failed = value("http_req_failed", "passes");
    let check_fails = value("checks", "fails");
    let observed = seen.lock().unwrap().clone();
    let observer_failures: Vec<_> = observed.iter().filter(|(_, s, _)| *s != 200).collect();

    // The report.
    eprintln!("\n==== end-to-end report ====");
    eprintln!("k6:\n{k6_stdout}");
    eprintln!(
        "requests: {requests} by k6 + {} by the observer; failed: {failed} (k6), {} (observer)",
        observed.len(),
        observer_failures.len()
    );
    eprintln!(
        "latency: p50 {:.1} ms, p95 {:.1} ms",
        value("http_req_duration", "med"),
        value("http_req_duration", "p(95)")
    );
    for a in &acts {
        eprintln!(
            "  +{:>6.1}s  {:<12} {:<10} {}  [{}]",
            at(a) - k6_started,
            a["action"].as_str().unwrap(),
            a["outcome"].as_str().unwrap(),
            a["detail"].as_str().unwrap(),
            a["cause"].as_str().unwrap()
        );
    }
    for (k, v) in &decisions {
        eprintln!("  {k} {v}");
    }

    // Zero failed requests over the whole run.
    assert!(
        requests > 1000.0,
        "a real load ran: {requests} requests\n{k6_stdout}"
    );
    assert_eq!(failed, 0.0, "k6 saw failed requests\n{k6_stdout}");
    assert_eq!(
        check_fails, 0.0,
        "k6 checks on status 200 failed\n{k6_stdout}"
    );
    assert!(observer_failures.is_empty(), "{observer_failures:?}");

    // Exactly one scale-up and one scale-down, both from real alerts through Alertmanager.
    assert_eq!(ups.len(), 1, "exactly one scale-up: {ups:?}");
    assert_eq!(downs.len(), 1, "exactly one scale-down: {downs:?}");
    assert!(
        ups[0]["cause"]
            .as_str()
            .unwrap()
            .contains("alertmanager: AutoscalerScaleUp"),
        "{:?}",
        ups[0]
    );
    assert!(
        downs[0]["cause"]
            .as_str()
            .unwrap()
            .contains("alertmanager: AutoscalerScaleDown"),
        "{:?}",
        downs[0]
    );
    assert!(at(ups[0]) < at(downs[0]));

    // The new VM served traffic; the time from the alert to its first response.
    let clone_name = "calculate-service-clone-1";
    let first_served = observed
        .iter()
        .find(|(_, s, who)| *s == 200 && who == clone_name)
        .map(|(t, _, _)| *t);
    let first_served = first_served.expect("the new VM answered through Traefik");
    eprintln!(
        "scale-up webhook at +{:.1}s; the new VM's first response {:.1}s later",
        at(ups[0]) - k6_started,
        first_served - at(ups[0])
    );

    // The VM was drained before it was deleted.
    let drain = acts
        .iter()
        .find(|a| a["action"] == "drain")
        .expect("a drain");
    let delete = acts
        .iter()
        .find(|a| a["action"] == "delete" && a["outcome"] == "ok")
        .expect("a delete");
    assert!(drain["detail"].as_str().unwrap().starts_with(clone_name));
    assert!(
        at(delete) >= at(drain) + 3.0,
        "deleted only after the drain period: {drain} {delete}"
    );
    assert_eq!(converged["backends"][0]["role"], "seed");

    // Every process started is stopped at the end.
    let pids: Vec<(&str, u32)> = vec![
        ("traefik", traefik.pid()),
        ("alertmanager", alertmanager.pid()),
        ("prometheus", prometheus.pid()),
    ];
    drop(traefik);
    drop(alertmanager);
    drop(prometheus);
    let vm_addrs: Vec<SocketAddr> = vec![
        format!("{}:3000", sim.seed_ip()).parse().unwrap(),
        format!("{}:9100", sim.seed_ip()).parse().unwrap(),
    ];
    app.stop().await;
    for (name, pid) in pids {
        assert!(!alive(pid), "{name} ({pid}) still runs");
    }
    for addr in vm_addrs {
        assert!(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
            "{addr} still answers"
        );
    }
    eprintln!("whole run: {:?}", run_started.elapsed());
}
