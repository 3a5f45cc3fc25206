//! The crash test (issue 8, part 7): the real binary, SIGKILLed at random moments of scale-up, boot,
//! drain and delete, restarted on the same state file each time, with the real Traefik in front and a
//! light request loop through it all along.
//!
//! It sees the service only from outside: `GET /traefik` and `GET /v1/pools/calculate` (polled all
//! the time), `PUT .../desired` and the scale webhooks, the binary and its state file, and the
//! simulator's history of every VM ever created. At the end it asserts what a user relies on:
//! - no name cloned twice (no two VMs of one name alive at once), also when a clone appears only
//!   after its call timed out (the simulator's `clone_late` fault, in some rounds);
//! - no clone left that no intent or desired size accounts for (the cloud holds exactly desired VMs,
//!   all of them ready in the pool);
//! - every VM seen draining is deleted, and no `/traefik` answered after its drain began lists it;
//! - after each restart, desired is what the webhook or PUT last answered before the kill;
//! - Traefik routed no request to a deleted VM: every request through it answered 200, from a VM that
//!   existed then (the simulator hands out no address twice here, so a stale route to a deleted VM
//!   meets a closed port and shows as a 502).
//!
//! `IDCH_CRASH_SEED=N` replays a schedule (the seed is printed at the start); `IDCH_CRASH_KILLS=N`
//! changes the number of kills (default 24). The simulator owns 127.0.k.10-127.0.k.250 of a claimed `Subnet`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use idch_autoscaler::sim::{Faults, SimHandle, SimOptions, SimVmHistory};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use common::{free_port, start_traefik, workload_program, Subnet, API_KEY};

const MAX: u32 = 4;
const BOOT: Duration = Duration::from_millis(300);
const DRAIN: Duration = Duration::from_secs(3);
/// Every cloud call takes this long, so kills land in the middle of calls.
const LATENCY: Duration = Duration::from_millis(100);
/// With the `clone_late` fault, a clone appears this long after its call, past the client's 2 s timeout.
const LATE: Duration = Duration::from_millis(2500);
const KILLS: usize = 24;
const KEY_VAR: &str = "IDCH_CRASH_TEST_API_KEY";
const PREFIX: &str = "calculate-service-clone-";

type Time = DateTime<Utc>;

/// What the watchers saw, with the wall-clock times a request was sent and answered (the simulator's
/// history uses the same clock).
#[derive(Default)]
struct Observed {
    /// Every 200 from `GET /traefik`: sent, answered, the servers' addresses.
    traefik: Vec<(Time, Time, BTreeSet<Ipv4Addr>)>,
    /// Per backend uuid: its name and when a status answer first showed it draining or deleting.
    drains: BTreeMap<String, (String, Time)>,
    /// The last 200 from `GET /v1/pools/calculate`.
    status: Option<Value>,
    /// Every request through Traefik.
    requests: Vec<Served>,
}

struct Served {
    sent: Time,
    answered: Time,
    /// (status, X-Served-By) or the transport error.
    outcome: Result<(u16, String), String>,
}

type Shared = Arc<Mutex<Observed>>;

fn observed(shared: &Shared) -> std::sync::MutexGuard<'_, Observed> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The binary under test, started and SIGKILLed on one config and state file.
struct Service {
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    starts: usize,
}

impl Service {
    fn start(&mut self) {
        self.starts += 1;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        writeln!(log, "===== start {} =====", self.starts).unwrap();
        let child = Command::new(workload_program())
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env(KEY_VAR, API_KEY)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the binary starts");
        self.child = Some(child);
    }

    /// SIGKILL (what `Child::kill` sends on Unix) and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- service log (tail) ----\n{}", self.log_tail(300));
        }
    }
}

fn write_config(dir: &Path, sim: &SimHandle, port: u16) -> PathBuf {
    let text = format!(
        r#"
listen = "127.0.0.1:{port}"
state_path = "{state}"
reconcile_interval = "300ms"

[idcloudhost]
api_url = "{url}"
location = "jkt01"
api_key_env = "{KEY_VAR}"
timeout = "2s"
max_attempts = 2

[traefik]
poll_interval = "1s"

[[pool]]
name = "calculate"
seed_vm = "{seed}"
clone_prefix = "{PREFIX}"
service_port = 3000
exporter_port = 9100
min = 1
max = {MAX}
scale_up_cooldown = "0s"
scale_down_cooldown = "0s"
drain_period = "{drain}"
boot_timeout = "20s"
health = {{ path = "/healthz", interval = "200ms", timeout = "200ms", healthy_threshold = 2, unhealthy_threshold = 3 }}
router = {{ rule = "Path(`/calculate`)", entry_points = ["web"] }}
"#,
        state = dir.join("state.db").display(),
        url = sim.url(),
        seed = sim.seed_uuid(),
        drain = humantime::format_duration(DRAIN),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

/// The server addresses of every service in a `/traefik` document.
fn traefik_addresses(doc: &Value) -> BTreeSet<Ipv4Addr> {
    let mut out = BTreeSet::new();
    if let Some(services) = doc["http"]["services"].as_object() {
        for service in services.values() {
            for server in service["loadBalancer"]["servers"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let url = server["url"].as_str().unwrap_or_default();
                let host = url
                    .trim_start_matches("http://")
                    .split(':')
                    .next()
                    .unwrap_or_default();
                match host.parse() {
                    Ok(ip) => {
                        out.insert(ip);
                    }
                    Err(_) => panic!("a server URL without an IPv4 host: {url}"),
                }
            }
        }
    }
    out
}

/// Polls `GET /traefik` every 25 ms until `stop`.
async fn watch_traefik(url: String, shared: Shared, stop: Arc<AtomicBool>) {
    let http = http_client(Duration::from_secs(1));
    while !stop.load(Ordering::Relaxed) {
        let sent = Utc::now();
        if let Ok(resp) = http.get(format!("{url}/traefik")).send().await {
            if resp.status() == 200 {
                if let Ok(doc) = resp.json::<Value>().await {
                    let answered = Utc::now();
                    observed(&shared)
                        .traefik
                        .push((sent, answered, traefik_addresses(&doc)));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `GET /v1/pools/calculate` every 50 ms until `stop`: the latest status, and drains.
async fn watch_status(url: String, shared: Shared, stop: Arc<AtomicBool>) {
    let http = http_client(Duration::from_secs(1));
    while !stop.load(Ordering::Relaxed) {
        if let Ok(resp) = http.get(format!("{url}/v1/pools/calculate")).send().await {
            if resp.status() == 200 {
                if let Ok(status) = resp.json::<Value>().await {
                    let answered = Utc::now();
                    let mut seen = observed(&shared);
                    for b in status["backends"].as_array().into_iter().flatten() {
                        if matches!(b["state"].as_str(), Some("draining" | "deleting")) {
                            let uuid = b["uuid"].as_str().unwrap_or_default().to_string();
                            let name = b["name"].as_str().unwrap_or_default().to_string();
                            seen.drains.entry(uuid).or_insert((name, answered));
                        }
                    }
                    seen.status = Some(status);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One `POST /calculate` at a time through Traefik, 25 ms apart, until `stop` (about 20 per second).
async fn drive_load(web: SocketAddr, shared: Shared, stop: Arc<AtomicBool>) {
    let http = http_client(Duration::from_secs(10));
    while !stop.load(Ordering::Relaxed) {
        let sent = Utc::now();
        let outcome = match http
            .post(format!("http://{web}/calculate"))
            .json(&json!({"number": 1}))
            .send()
            .await
        {
            Ok(resp) => {
                let served = resp
                    .headers()
                    .get("x-served-by")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let status = resp.status().as_u16();
                // Read the body, so the request is over when it is recorded.
                resp.bytes().await.ok();
                Ok((status, served))
            }
            Err(err) => Err(err.to_string()),
        };
        let answered = Utc::now();
        observed(&shared).requests.push(Served {
            sent,
            answered,
            outcome,
        });
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The latest status's backends as (name, uuid, state).
fn backends(shared: &Shared) -> Vec<(String, String, String)> {
    let seen = observed(shared);
    let Some(status) = &seen.status else {
        return Vec::new();
    };
    status["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let text = |k: &str| b[k].as_str().unwrap_or_default().to_string();
            (text("name"), text("uuid"), text("state"))
        })
        .collect()
}

/// Waits until `ok` holds for the latest status (true), or `limit` passes (false).
async fn wait_for(shared: &Shared, limit: Duration, ok: impl Fn(&Shared) -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if ok(shared) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn any_in_state(shared: &Shared, states: &[&str]) -> bool {
    backends(shared)
        .iter()
        .any(|(_, _, s)| states.contains(&s.as_str()))
}

/// Waits (at most 20 s) until the service answers its pool synced; returns that status.
async fn wait_synced(http: &reqwest::Client, url: &str, service: &mut Service) -> Value {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(child) = service.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the service exited by itself: {status}");
            }
        }
        if let Ok(resp) = http.get(format!("{url}/v1/pools/calculate")).send().await {
            if resp.status() == 200 {
                if let Ok(status) = resp.json::<Value>().await {
                    if status["synced"] == true {
                        return status;
                    }
                }
            }
        }
        assert!(
            Instant::now() < until,
            "the restarted service did not sync in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Changes desired by `PUT` or by one webhook; returns the desired size the answer reports.
async fn change_desired(
    http: &reqwest::Client,
    url: &str,
    current: u32,
    target: u32,
    webhook: bool,
) -> (u32, String) {
    if webhook && target.abs_diff(current) == 1 {
        let direction = if target > current { "up" } else { "down" };
        let resp = http
            .post(format!("{url}/v1/pools/calculate/scale-{direction}"))
            .send()
            .await
            .expect("the webhook is answered");
        assert_eq!(resp.status(), 200, "scale-{direction}");
        let body: Value = resp.json().await.unwrap();
        let desired = body["desired"].as_u64().expect("desired in the answer") as u32;
        (desired, format!("scale-{direction} ({})", body["decision"]))
    } else {
        let resp = http
            .put(format!("{url}/v1/pools/calculate/desired"))
            .json(&json!({ "size": target }))
            .send()
            .await
            .expect("PUT desired is answered");
        assert_eq!(resp.status(), 200, "PUT desired {target}");
        let body: Value = resp.json().await.unwrap();
        let desired = body["desired"].as_u64().map_or(target, |d| d as u32);
        (desired, format!("PUT {target}"))
    }
}

/// The history entry of the VM named `name` that existed at some moment of `[from, to]`.
fn alive_named<'a>(
    history: &'a [SimVmHistory],
    name: &str,
    from: Time,
    to: Time,
) -> Option<&'a SimVmHistory> {
    history.iter().find(|h| {
        h.name == name
            && h.created().is_some_and(|c| c <= to)
            && h.deleted().is_none_or(|d| d >= from)
    })
}

fn ms(t: Time) -> String {
    t.format("%H:%M:%S%.3f").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_at_random_moments_it_never_clones_twice_nor_routes_to_a_deleted_vm() {
    let seed: u64 = std::env::var("IDCH_CRASH_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(rand::random);
    let kills: usize = std::env::var("IDCH_CRASH_KILLS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(KILLS);
    eprintln!("crash test: seed {seed} (IDCH_CRASH_SEED={seed} replays it), {kills} kills");
    let mut rng = StdRng::seed_from_u64(seed);

    let net = Subnet::claim();
    let sim = SimHandle::start(SimOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        api_key: API_KEY.into(),
        location: "jkt01".into(),
        billing_account_id: 1_200_211_740,
        seed_name: "calculate-service".into(),
        boot_delay: BOOT,
        start_delay: None,
        clone_delay: Duration::ZERO,
        addresses: net.range(10, 250),
        service_port: 3000,
        exporter_port: 9100,
        cpu_budget: None,
        workload_program: workload_program(),
        faults: Faults {
            latency: LATENCY,
            ..Faults::default()
        },
    })
    .await
    .expect("simulator starts");
    sim.set_reuse_addresses(false);

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut service = Service {
        config: write_config(dir.path(), &sim, port),
        log: dir.path().join("service.log"),
        child: None,
        starts: 0,
    };
    let http = http_client(Duration::from_secs(5));
    service.start();
    wait_synced(&http, &url, &mut service).await;

    let (mut traefik, web, _api) = start_traefik(&format!("{url}/traefik"), None).await;
    let first = Instant::now();
    loop {
        let ok = http
            .post(format!("http://{web}/calculate"))
            .json(&json!({"number": 1}))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok {
            break;
        }
        assert!(
            first.elapsed() < Duration::from_secs(20),
            "Traefik never routed to the seed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let shared: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let watchers = vec![
        tokio::spawn(watch_traefik(
            url.clone(),
            Arc::clone(&shared),
            Arc::clone(&stop),
        )),
        tokio::spawn(watch_status(
            url.clone(),
            Arc::clone(&shared),
            Arc::clone(&stop),
        )),
        tokio::spawn(drive_load(web, Arc::clone(&shared), Arc::clone(&stop))),
    ];

    let mut violations: Vec<String> = Vec::new();
    let mut desired: u32 = 1;
    let mut phases: BTreeMap<&'static str, (u32, u32)> = BTreeMap::new();
    for round in 0..kills {
        let target = loop {
            let t = rng.gen_range(1..=MAX);
            if t != desired {
                break t;
            }
        };
        let webhook = rng.gen_bool(0.3);
        // Now and then the clone call outlives the client's timeout and the VM appears later.
        let late = target > desired && rng.gen_bool(0.25);
        if late {
            sim.set_faults(Faults {
                latency: LATENCY,
                clone_late: LATE,
                ..Faults::default()
            });
        }
        let previous = desired;
        let (answered, how) = change_desired(&http, &url, previous, target, webhook).await;
        desired = answered;
        let changed = Instant::now();

        // Aim the kill at one moment of the change it set off.
        let phase: &'static str = if late {
            "late clone"
        } else if rng.gen_bool(0.15) {
            "any moment"
        } else if desired > previous {
            ["clone call", "clone call", "boot", "joined"][rng.gen_range(0..4)]
        } else if desired < previous {
            ["drain", "delete", "delete", "drained"][rng.gen_range(0..4)]
        } else {
            "drained"
        };
        let jitter =
            |rng: &mut StdRng, max_ms: u64| Duration::from_millis(rng.gen_range(0..=max_ms));
        let hit = match phase {
            // The clone call is in flight from a few ms after the answer, for LATENCY or more.
            "clone call" => {
                tokio::time::sleep(jitter(&mut rng, 400)).await;
                true
            }
            // While the clone call hangs, or just after the late VM appeared.
            "late clone" => {
                tokio::time::sleep(jitter(&mut rng, LATE.as_millis() as u64 + 1000)).await;
                true
            }
            "any moment" => {
                tokio::time::sleep(jitter(&mut rng, 3000)).await;
                true
            }
            "boot" => {
                let pause = jitter(&mut rng, 500);
                let hit = wait_for(&shared, Duration::from_secs(6), |s| {
                    any_in_state(s, &["booting"])
                })
                .await;
                tokio::time::sleep(pause).await;
                hit
            }
            "joined" => {
                let want = desired as usize;
                let pause = jitter(&mut rng, 300);
                let hit = wait_for(&shared, Duration::from_secs(8), |s| {
                    backends(s).iter().filter(|b| b.2 == "ready").count() == want
                })
                .await;
                tokio::time::sleep(pause).await;
                hit
            }
            "drain" => {
                let pause = jitter(&mut rng, DRAIN.as_millis() as u64);
                let hit = wait_for(&shared, Duration::from_secs(6), |s| {
                    any_in_state(s, &["draining"])
                })
                .await;
                tokio::time::sleep(pause).await;
                hit
            }
            // Around the end of the drain: the delete call is made then.
            "delete" => {
                let offset = jitter(&mut rng, 700);
                let hit = wait_for(&shared, Duration::from_secs(6), |s| {
                    any_in_state(s, &["draining", "deleting"])
                })
                .await;
                tokio::time::sleep(DRAIN.saturating_sub(Duration::from_millis(400)) + offset).await;
                hit
            }
            _ => {
                let want = desired as usize;
                let pause = jitter(&mut rng, 300);
                let hit = wait_for(&shared, Duration::from_secs(DRAIN.as_secs() + 6), |s| {
                    let b = backends(s);
                    b.len() == want && b.iter().all(|b| b.2 == "ready")
                })
                .await;
                tokio::time::sleep(pause).await;
                hit
            }
        };
        let tally = phases.entry(phase).or_default();
        tally.0 += 1;
        tally.1 += u32::from(hit);

        service.kill();
        eprintln!(
            "round {round}: {how} -> desired {desired}; killed at {phase}{} {:?} after the change",
            if hit { "" } else { " (not seen)" },
            changed.elapsed()
        );
        tokio::time::sleep(jitter(&mut rng, 800)).await;
        service.start();
        let status = wait_synced(&http, &url, &mut service).await;
        if late {
            sim.set_faults(Faults {
                latency: LATENCY,
                ..Faults::default()
            });
        }
        if status["desired"].as_u64() != Some(u64::from(desired)) {
            violations.push(format!(
                "round {round}: after the restart desired is {}, the last answer said {desired}",
                status["desired"]
            ));
            desired = status["desired"].as_u64().unwrap_or(1) as u32;
        }
    }

    // Let the pool converge on the last desired size, once any late clone has had time to appear.
    tokio::time::sleep(LATE + Duration::from_secs(1)).await;
    let want = desired as usize;
    let settled = wait_for(&shared, Duration::from_secs(40), |s| {
        let b = backends(s);
        let cloud = sim.state().vms;
        let uuids: BTreeSet<&str> = b.iter().map(|b| b.1.as_str()).collect();
        b.len() == want
            && b.iter().all(|b| b.2 == "ready")
            && cloud.len() == want
            && cloud.iter().all(|vm| uuids.contains(vm.uuid.as_str()))
            && observed(s)
                .traefik
                .last()
                .is_some_and(|(_, _, a)| a.len() == want)
    })
    .await;
    // A little more traffic, while Traefik catches up with the last changes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in watchers {
        w.await.unwrap();
    }
    traefik.stop();

    let state = sim.state();
    let history = &state.history;
    let last_backends = backends(&shared);
    let seen = std::mem::take(&mut *observed(&shared));
    if !settled {
        violations.push(format!(
            "the pool did not settle on desired {desired} in 40 s: the cloud has {:?}, the service shows {:?}",
            state
                .vms
                .iter()
                .map(|vm| (&vm.name, &vm.status))
                .collect::<Vec<_>>(),
            last_backends,
        ));
    }

    // No name cloned twice: two VMs of one name never existed at once.
    let mut by_name: BTreeMap<&str, Vec<&SimVmHistory>> = BTreeMap::new();
    for h in history {
        by_name.entry(h.name.as_str()).or_default().push(h);
    }
    for (name, lives) in &by_name {
        for pair in lives.windows(2) {
            let overlap = match pair[0].deleted() {
                None => true,
                Some(gone) => pair[1].created().is_some_and(|c| c < gone),
            };
            if overlap {
                violations.push(format!(
                    "{name} cloned twice: {} ({} - {:?}) and {} (from {})",
                    pair[0].uuid,
                    pair[0].created_at,
                    pair[0].deleted_at,
                    pair[1].uuid,
                    pair[1].created_at
                ));
            }
        }
    }

    // No clone that nothing accounts for: what the cloud holds is the pool, desired in size.
    for vm in &state.vms {
        if !vm.seed && !vm.name.starts_with(PREFIX) {
            violations.push(format!("a VM the pool did not name: {}", vm.name));
        }
    }
    if state.vms.len() != want {
        violations.push(format!(
            "the cloud holds {} VMs, desired is {want}",
            state.vms.len()
        ));
    }

    // Every drained VM deleted, and never back in /traefik once its drain began.
    for (uuid, (name, began)) in &seen.drains {
        let Some(life) = history.iter().find(|h| &h.uuid == uuid) else {
            violations.push(format!(
                "{name} ({uuid}) drained but the cloud never had it"
            ));
            continue;
        };
        if life.deleted().is_none() {
            violations.push(format!(
                "{name} ({uuid}) drained at {} but never deleted",
                ms(*began)
            ));
        }
        for (sent, answered, servers) in &seen.traefik {
            if sent > began && servers.contains(&life.address) {
                let owner = history.iter().find(|h| {
                    h.address == life.address && h.uuid != life.uuid && h.existed_at(*answered)
                });
                if owner.is_none() {
                    violations.push(format!(
                        "{name} ({}) back in /traefik at {} after its drain began at {}",
                        life.address,
                        ms(*answered),
                        ms(*began)
                    ));
                    break;
                }
            }
        }
    }
    // Never a route to an address no VM has.
    for (sent, answered, servers) in &seen.traefik {
        for ip in servers {
            let owned = history.iter().any(|h| {
                h.address == *ip
                    && h.created().is_some_and(|c| c <= *answered)
                    && h.deleted().is_none_or(|d| d >= *sent)
            });
            if !owned {
                violations.push(format!(
                    "/traefik at {} routes to {ip}, which no VM had then",
                    ms(*answered)
                ));
            }
        }
    }

    // Traefik sent no request to a deleted VM: all answered 200, each by a VM that existed then.
    let mut failed = 0;
    for r in &seen.requests {
        let problem = match &r.outcome {
            Ok((200, who)) => match alive_named(history, who, r.sent, r.answered) {
                Some(_) => None,
                None => Some(format!("served by `{who}`, which did not exist then")),
            },
            Ok((status, who)) => Some(format!("answered {status} (served by `{who}`)")),
            Err(err) => Some(format!("failed: {err}")),
        };
        if let Some(problem) = problem {
            failed += 1;
            if failed <= 20 {
                let recently_deleted: Vec<String> = history
                    .iter()
                    .filter_map(|h| {
                        let d = h.deleted()?;
                        (d <= r.answered && r.sent - d < chrono::Duration::seconds(15))
                            .then(|| format!("{} {} at {}", h.name, h.address, ms(d)))
                    })
                    .collect();
                violations.push(format!(
                    "request sent {} {problem}; deleted shortly before: {recently_deleted:?}",
                    ms(r.sent)
                ));
            }
        }
    }
    if failed > 20 {
        violations.push(format!("... {failed} failed requests in all"));
    }

    if !violations.is_empty() {
        eprintln!("---- timeline: /traefik changes ----");
        let mut last: Option<&BTreeSet<Ipv4Addr>> = None;
        for (_, answered, servers) in &seen.traefik {
            if last != Some(servers) {
                eprintln!("{} {servers:?}", ms(*answered));
                last = Some(servers);
            }
        }
        eprintln!("---- timeline: drains first seen ----");
        for (uuid, (name, began)) in &seen.drains {
            eprintln!("{} {name} {uuid}", ms(*began));
        }
        eprintln!("---- timeline: every VM ----");
        for h in history {
            eprintln!(
                "{} {} {} - {:?}",
                h.name, h.address, h.created_at, h.deleted_at
            );
        }
        eprintln!("---- timeline: which VM served, per second ----");
        let mut per_second: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for r in &seen.requests {
            let who = match &r.outcome {
                Ok((200, who)) => who.clone(),
                Ok((status, _)) => format!("HTTP {status}"),
                Err(_) => "error".to_string(),
            };
            *per_second
                .entry(r.sent.format("%H:%M:%S").to_string())
                .or_default()
                .entry(who)
                .or_default() += 1;
        }
        for (second, counts) in &per_second {
            eprintln!("{second} {counts:?}");
        }
    }
    let clones = history.iter().filter(|h| !h.seed).count();
    eprintln!(
        "crash test (seed {seed}): {} starts, {} requests through Traefik ({failed} bad), {clones} clones made, \
         {} drains seen, {} /traefik answers; kills aimed at (tries, moment seen): {phases:?}",
        service.starts,
        seen.requests.len(),
        seen.drains.len(),
        seen.traefik.len()
    );
    assert!(
        violations.is_empty(),
        "seed {seed} (IDCH_CRASH_SEED={seed} replays it): {} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    // The run exercised what it claims to.
    assert!(service.starts > kills, "{} starts", service.starts);
    assert!(clones >= 3, "only {clones} clones were made (seed {seed})");
    assert!(
        seen.drains.len() >= 3,
        "only {} drains seen (seed {seed})",
        seen.drains.len()
    );
    assert!(
        seen.requests.len() >= 500,
        "only {} requests",
        seen.requests.len()
    );
    service.kill();
    sim.shutdown().await;
}
