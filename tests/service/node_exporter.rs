//! The node_exporter endpoint of simulated VMs: the same series as the real node_exporter, and CPU
//! figures that behave like a real VM's (a VM at its budget is ~100 % busy; two VMs sharing that load
//! each show about half).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use idch_autoscaler::sim::SimOptions;
use serde_json::Value;

use crate::common::*;

const EXPORTER_PORT: u16 = 9100;
const SERVICE_PORT: u16 = 3000;

fn options(subnet: &Subnet, cpu_budget: Option<f64>) -> SimOptions {
    SimOptions {
        cpu_budget,
        ..sim_options(subnet, Duration::from_millis(200))
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// One sample of the text format: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: TYPE per family and every sample.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    helps: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    fn of(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    fn value(&self, name: &str) -> f64 {
        let samples = self.of(name);
        assert_eq!(samples.len(), 1, "{name}: {samples:?}");
        samples[0].value
    }

    /// Sums of `node_cpu_seconds_total` over all cpus: (busy, idle) seconds.
    fn cpu(&self) -> (f64, f64) {
        let mut busy = 0.0;
        let mut idle = 0.0;
        for sample in self.of("node_cpu_seconds_total") {
            if sample.labels["mode"] == "idle" {
                idle += sample.value;
            } else {
                busy += sample.value;
            }
        }
        (busy, idle)
    }
}

/// Parses the Prometheus text format 0.0.4 (enough of it for node_exporter's output, label values
/// with escapes included).
fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            out.types.insert(name.into(), kind.into());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.helps.insert(name.into(), help.into());
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).expect("sample line");
        let name = line[..name_end].to_string();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices().peekable();
            let mut end = None;
            loop {
                // label name up to '=' (or the closing brace)
                let mut label = String::new();
                for (i, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    if c == '}' {
                        end = Some(i);
                        break;
                    }
                    if c != ',' {
                        label.push(c);
                    }
                }
                if end.is_some() {
                    break;
                }
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                let mut value = String::new();
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('n') => value.push('\n'),
                            Some(other) => value.push(other),
                            None => break,
                        },
                        '"' => break,
                        other => value.push(other),
                    }
                }
                labels.insert(label, value);
                match chars.peek().map(|(_, c)| *c) {
                    Some(',') => {
                        chars.next();
                        if chars.peek().map(|(_, c)| *c) == Some('}') {
                            end = chars.next().map(|(i, _)| i);
                            break;
                        }
                    }
                    Some('}') => {
                        end = chars.next().map(|(i, _)| i);
                        break;
                    }
                    other => panic!("unexpected {other:?} in {line}"),
                }
            }
            rest = &after[end.expect("closing brace") + 1..];
        }
        let value_text = rest.split_whitespace().next().expect("a value");
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            text => text
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        out.samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// `GET /metrics`: the content type and the parsed body.
async fn scrape(http: &reqwest::Client, addr: SocketAddr) -> (String, Exposition) {
    let resp = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("scraping {addr}: {e}"));
    assert_eq!(resp.status(), 200, "{addr}/metrics");
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (content_type, parse(&resp.text().await.unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_match_the_real_node_exporter() {
    let http = http();
    let real_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut real = Peer::spawn(
        "node_exporter",
        peer_bin("prometheus-node-exporter"),
        &[
            format!("--web.listen-address={real_addr}"),
            "--collector.disable-defaults".into(),
            "--collector.cpu".into(),
            "--collector.meminfo".into(),
            "--collector.loadavg".into(),
        ],
        tempfile::tempdir().unwrap(),
    );
    let real_body = eventually(
        Duration::from_secs(15),
        "the real node_exporter serves /metrics",
        || {
            let http = http.clone();
            async move {
                let resp = http
                    .get(format!("http://{real_addr}/metrics"))
                    .send()
                    .await
                    .ok()?;
                resp.status().is_success().then_some(())?;
                let content_type = resp
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)?
                    .to_str()
                    .ok()?
                    .to_string();
                Some((content_type, resp.text().await.ok()?))
            }
        },
    )
    .await;
    real.stop();
    let (real_type, real) = (real_body.0, parse(&real_body.1));

    let sim = TestSim::start(|subnet| options(subnet, None)).await;
    let seed = sim.seed_ip();
    let seed_exporter = SocketAddr::from((seed, EXPORTER_PORT));
    eventually(Duration::from_secs(20), "the seed serves", || {
        let http = http.clone();
        async move { calculate(&http, seed).await.then_some(()) }
    })
    .await;
    let (sim_type, ours) = scrape(&http, seed_exporter).await;
    assert_eq!(
        sim_type, real_type,
        "the content type must be node_exporter's"
    );
    assert_eq!(sim_type, "text/plain; version=0.0.4; charset=utf-8");

    let required = [
        "node_cpu_seconds_total",
        "node_memory_MemTotal_bytes",
        "node_memory_MemAvailable_bytes",
        "node_load1",
    ];
    for family in required {
        assert!(ours.types.contains_key(family), "we lack {family}");
    }
    // Every family we serve, the four above included, is the real one's: TYPE, names, label names.
    for (family, kind) in &ours.types {
        assert_eq!(
            real.types.get(family),
            Some(kind),
            "TYPE of {family} differs from the real node_exporter's"
        );
        assert!(ours.helps.contains_key(family), "{family} has no HELP line");
        let real_samples = real.of(family);
        let our_samples = ours.of(family);
        assert!(
            !real_samples.is_empty(),
            "the real exporter has no {family}"
        );
        assert!(!our_samples.is_empty(), "we have no {family} sample");
        let real_label_names: BTreeSet<Vec<&String>> = real_samples
            .iter()
            .map(|s| s.labels.keys().collect())
            .collect();
        for sample in &our_samples {
            let names: Vec<&String> = sample.labels.keys().collect();
            assert!(
                real_label_names.contains(&names),
                "{family}: label names {names:?}, the real ones are {real_label_names:?}"
            );
        }
    }
    for sample in &ours.samples {
        assert!(
            ours.types.contains_key(&sample.name),
            "{} has no TYPE line",
            sample.name
        );
    }
    let cpu_names: BTreeSet<Vec<String>> = ours
        .of("node_cpu_seconds_total")
        .iter()
        .map(|s| s.labels.keys().cloned().collect())
        .collect();
    assert_eq!(
        cpu_names,
        BTreeSet::from([vec!["cpu".to_string(), "mode".to_string()]])
    );
    for family in [
        "node_memory_MemTotal_bytes",
        "node_memory_MemAvailable_bytes",
        "node_load1",
    ] {
        assert!(ours.of(family)[0].labels.is_empty(), "{family} has labels");
    }
    let modes = |e: &Exposition| -> BTreeSet<String> {
        e.of("node_cpu_seconds_total")
            .iter()
            .map(|s| s.labels["mode"].clone())
            .collect()
    };
    let (our_modes, real_modes) = (modes(&ours), modes(&real));
    assert!(
        our_modes.is_subset(&real_modes),
        "modes {our_modes:?} are not a subset of the real {real_modes:?}"
    );
    for needed in ["idle", "user", "system"] {
        assert!(our_modes.contains(needed), "no mode {needed}");
    }

    // The VM's own figures: 2 vCPUs, 2 GiB, its workload's memory in use.
    let cpus: BTreeSet<String> = ours
        .of("node_cpu_seconds_total")
        .iter()
        .map(|s| s.labels["cpu"].clone())
        .collect();
    assert_eq!(cpus, BTreeSet::from(["0".to_string(), "1".to_string()]));
    let total = ours.value("node_memory_MemTotal_bytes");
    assert_eq!(total, 2048.0 * 1024.0 * 1024.0);
    let available = ours.value("node_memory_MemAvailable_bytes");
    assert!(
        available > 0.0 && available < total,
        "available {available} of {total}"
    );
    sim.shutdown().await;
}

/// Sends `POST /calculate` to `ip`; true on a 200.
async fn calculate(http: &reqwest::Client, ip: Ipv4Addr) -> bool {
    http.post(format!("http://{ip}:{SERVICE_PORT}/calculate"))
        .json(&serde_json::json!({"number": 1}))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Busy fraction of the VM behind `exporter` between two scrapes.
fn busy_fraction(before: (f64, f64), after: (f64, f64)) -> f64 {
    let busy = after.0 - before.0;
    let idle = after.1 - before.1;
    assert!(busy >= 0.0 && idle >= 0.0, "counters went down");
    busy / (busy + idle)
}

/// Keeps `concurrency` requests in flight against `ip` for `duration`; returns how many answered.
async fn closed_loop(ip: Ipv4Addr, concurrency: usize, duration: Duration) -> usize {
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            tokio::spawn(async move {
                let http = http();
                let mut done = 0;
                while Instant::now() < deadline {
                    if calculate(&http, ip).await {
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total
}

/// Sends `rate` requests per second for `duration`, round robin over `ips`; waits for the answers.
async fn open_loop(ips: &[Ipv4Addr], rate: f64, duration: Duration) -> usize {
    let http = http();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let count = (rate * duration.as_secs_f64()).round() as usize;
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        tick.tick().await;
        let (http, ip) = (http.clone(), ips[i % ips.len()]);
        tasks.push(tokio::spawn(async move { calculate(&http, ip).await }));
    }
    let mut ok = 0;
    for task in tasks {
        ok += usize::from(task.await.unwrap());
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_vms_sharing_a_load_each_report_about_half() {
    let _cpu = cpu_heavy().await;
    let http = http();
    let sim = TestSim::start(|subnet| options(subnet, Some(0.2))).await;
    let seed = sim.seed_ip();
    let seed_exporter = SocketAddr::from((seed, EXPORTER_PORT));
    eventually(Duration::from_secs(20), "the seed serves", || {
        let http = http.clone();
        async move { calculate(&http, seed).await.then_some(()) }
    })
    .await;

    // One VM, saturated by a closed loop: its budget is all used.
    let window = Duration::from_secs(3);
    let before = scrape(&http, seed_exporter).await.1.cpu();
    let started = Instant::now();
    let served = closed_loop(seed, 3, window).await;
    let elapsed = started.elapsed().as_secs_f64();
    let after = scrape(&http, seed_exporter).await.1.cpu();
    let alone = busy_fraction(before, after);
    let rate = served as f64 / elapsed;
    eprintln!("one VM: {served} requests in {elapsed:.2}s ({rate:.1}/s), busy {alone:.2}");
    assert!(alone > 0.6, "one saturated VM reports only {alone:.2} busy");
    assert!(served > 10, "only {served} requests served");

    // A second VM; the same rate, split over both.
    let resp = http
        .post(format!("{}/v1/jkt01/user-resource/vm/clone", sim.url()))
        .header("apikey", API_KEY)
        .form(&[("uuid", sim.seed_uuid().as_str()), ("name", "clone-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let uuid = resp.json::<Value>().await.unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let clone = eventually(Duration::from_secs(10), "the clone runs", || {
        let state = sim.state();
        let found = state
            .vms
            .into_iter()
            .find(|vm| vm.uuid == uuid && vm.pid.is_some())
            .map(|vm| vm.address);
        async move { found }
    })
    .await;
    eventually(Duration::from_secs(20), "the clone serves", || {
        let http = http.clone();
        async move { calculate(&http, clone).await.then_some(()) }
    })
    .await;
    let clone_exporter = SocketAddr::from((clone, EXPORTER_PORT));

    let seed_before = scrape(&http, seed_exporter).await.1.cpu();
    let clone_before = scrape(&http, clone_exporter).await.1.cpu();
    let served = open_loop(&[seed, clone], rate, window).await;
    let seed_after = scrape(&http, seed_exporter).await.1.cpu();
    let clone_after = scrape(&http, clone_exporter).await.1.cpu();
    let (seed_busy, clone_busy) = (
        busy_fraction(seed_before, seed_after),
        busy_fraction(clone_before, clone_after),
    );
    eprintln!("two VMs: {served} requests, busy {seed_busy:.2} and {clone_busy:.2}");
    for busy in [seed_busy, clone_busy] {
        assert!(
            busy < 0.8 && busy < alone - 0.15,
            "each of two VMs sharing the load should report about half of {alone:.2}: {seed_busy:.2}, {clone_busy:.2}"
        );
        assert!(
            busy > 0.15,
            "each of two VMs sharing the load should still be busy: {seed_busy:.2}, {clone_busy:.2}"
        );
    }
    let sum = seed_busy + clone_busy;
    assert!(
        sum > alone * 0.5 && sum < alone * 1.5,
        "together {sum:.2}, alone {alone:.2}"
    );
    sim.shutdown().await;
}
