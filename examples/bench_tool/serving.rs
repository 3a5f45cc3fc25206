//! `bench_tool serving --service-bin BIN --traefik BIN --dir DIR [--runs 10] [--boot-delay 8s]
//!  [--max-time 6m] [--clone-call 0s] [--start-delay 10s] [--warm 0] [--idle 0s]`
//!
//! Time from a scale-up webhook to the first request the new VM serves through the real
//! Traefik, and how much of it comes after the VM's app started answering.
//!
//! The simulator runs in this process with a boot delay of `boot-delay` (8 s by default: the
//! clone's app starts answering that long after the clone call); the service is the release
//! binary in its own process with the production health settings (probes every 2 s, 2 good ones
//! in a row) and reconcile interval (15 s); Traefik polls `/traefik` every second
//! (`providers.http.pollInterval = 1s`). A request loop sends `GET /` through Traefik every 20 ms
//! and reads `x-served-by` (the VM's name, set by the stub workload).
//!
//! One run: POST the webhook (`t0`); find the new VM in the simulator's state and poll its app
//! (`GET http://{address}:{port}/healthz`) every 20 ms until it answers (`app`); keep polling
//! `/traefik` every 20 ms until it lists the VM (`listed`) and Traefik until a request is served
//! by it (`served`). Between runs the pool is scaled back down to the seed with `PUT desired`.
//! Printed: webhook -> served, app up -> listed in /traefik, app up -> served through Traefik.
//!
//! With `--warm N` the pool has `warm_pool = { size = N }`: each run begins once N clones are
//! warm (stopped) and nothing is warming, and the new VM is the warm clone the scale-up starts
//! (the simulator's start takes `--start-delay`). `--clone-call` makes each clone call take that
//! long before its VM exists (the `clone_late` fault). With `--idle T` (and a warm pool), the
//! pool then idles for T and the cost endpoint's figures for that window are printed: what the
//! warm pool costs against keeping as many more VMs running.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use idch_autoscaler::sim::SimHandle;

use crate::common::{free_port, summary_ms, Args, Service, API_KEY_ENV};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let args = Args::new(args);
    let runs: usize = args.parse("--runs", 10)?;
    anyhow::ensure!((1..=50).contains(&runs), "--runs must be 1..=50");
    let bin = args.path("--service-bin")?;
    let traefik = args.path("--traefik")?;
    let dir = args.path("--dir")?;
    let boot_delay = args.duration("--boot-delay", Duration::from_secs(8))?;
    let limit = args.duration("--max-time", Duration::from_secs(360))?;
    let warm = Warm {
        size: args.parse("--warm", 0)?,
        clone_call: args.duration("--clone-call", Duration::ZERO)?,
        start_delay: args.duration("--start-delay", Duration::from_secs(10))?,
        idle: args.duration("--idle", Duration::ZERO)?,
    };
    anyhow::ensure!(warm.size <= 2, "--warm must be 0, 1 or 2");

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let sim = start_sim_with(boot_delay, warm.start_delay).await?;
        sim.set_faults(idch_autoscaler::sim::Faults {
            clone_late: warm.clone_call,
            ..Default::default()
        });
        let result = measure(&sim, &bin, &traefik, &dir, runs, limit, &warm).await;
        match Arc::try_unwrap(sim) {
            Ok(sim) => sim.shutdown().await,
            Err(sim) => drop(sim),
        }
        result
    })
}

/// The warm pool's side of a run (`--warm`, `--clone-call`, `--start-delay`, `--idle`).
struct Warm {
    size: u32,
    clone_call: Duration,
    start_delay: Duration,
    idle: Duration,
}

async fn start_sim_with(boot: Duration, start: Duration) -> anyhow::Result<Arc<SimHandle>> {
    let mut opts = idch_autoscaler::sim::SimArgs {
        listen: "127.0.0.1:0".parse()?,
        boot_delay: boot,
        start_delay: Some(start),
        addresses: "127.79.0.10-127.79.0.250"
            .parse()
            .map_err(anyhow::Error::msg)?,
        ..idch_autoscaler::sim::SimArgs::default()
    }
    .into_options(crate::common::this_exe()?)?;
    opts.api_key = crate::common::API_KEY.into();
    Ok(Arc::new(SimHandle::start(opts).await?))
}

struct Traefik(std::process::Child);

impl Drop for Traefik {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_traefik(bin: &Path, dir: &Path, service: &str) -> anyhow::Result<(Traefik, u16)> {
    let web = free_port()?;
    let api = free_port()?;
    let config = format!(
        "entryPoints:\n  web:\n    address: \"127.0.0.1:{web}\"\n  traefik:\n    address: \"127.0.0.1:{api}\"\n\
         providers:\n  http:\n    endpoint: \"{service}/traefik\"\n    pollInterval: \"1s\"\n\
         log:\n  level: ERROR\n"
    );
    let path = dir.join("serving-traefik.yml");
    std::fs::write(&path, config)?;
    let log = std::fs::File::create(dir.join("serving-traefik.log"))?;
    let child = std::process::Command::new(bin)
        .arg(format!("--configFile={}", path.display()))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    Ok((Traefik(child), web))
}

async fn measure(
    sim: &Arc<SimHandle>,
    bin: &Path,
    traefik: &Path,
    dir: &Path,
    runs: usize,
    limit: Duration,
    warm: &Warm,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let port = free_port()?;
    let warm_pool = if warm.size > 0 {
        format!("warm_pool = {{ size = {} }}", warm.size)
    } else {
        String::new()
    };
    let config = format!(
        r#"
listen = "127.0.0.1:{port}"
state_path = "{state}"
reconcile_interval = "15s"

[idcloudhost]
api_url = "{url}"
location = "jkt01"
api_key_env = "{API_KEY_ENV}"
timeout = "{timeout}s"

[traefik]
poll_interval = "1s"

[[pool]]
name = "calculate"
seed_vm = "{seed}"
clone_prefix = "calculate-service-clone-"
min = 1
max = 3
scale_up_cooldown = "0s"
scale_down_cooldown = "0s"
drain_period = "3s"
health = {{ path = "/healthz", interval = "2s", timeout = "1s", healthy_threshold = 2, unhealthy_threshold = 3 }}
router = {{ rule = "PathPrefix(`/`)", entry_points = ["web"] }}
{warm_pool}
"#,
        timeout = warm.clone_call.as_secs() + 5,
        state = dir.join("serving-state.db").display(),
        url = sim.url(),
        seed = sim.seed_uuid(),
    );
    let _ = std::fs::remove_file(dir.join("serving-state.db"));
    let config_path = dir.join("serving.toml");
    std::fs::write(&config_path, config)?;
    let mut service = Service::start(bin, &config_path, &dir.join("serving-service.log"), port)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .build()?;
    service
        .wait_pools(&http, 1, None, Duration::from_secs(30))
        .await
        .context("waiting for the pool to sync")?;
    let (_traefik, web) = start_traefik(traefik, dir, &service.base)?;
    let web = format!("http://127.0.0.1:{web}/");
    // Traefik routes to the seed before the first run.
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "Traefik never routed to the seed"
        );
        if served_by(&http, &web).await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (mut total, mut listed_ms, mut served_ms) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        wait_settled(&http, &service, sim, warm.size, deadline).await?;
        // The VMs running now: the new one is any other that runs (a clone, or a warm one
        // started).
        let known: Vec<String> = sim
            .state()
            .vms
            .iter()
            .filter(|v| v.status != "stopped")
            .map(|v| v.uuid.clone())
            .collect();
        let t0 = Instant::now();
        let r = http
            .post(format!("{}/v1/scale-up", service.base))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "webhook: {}", r.status());
        let (mut vm, mut app, mut listed, mut served): (Option<(String, String)>, _, _, _) =
            (None, None, None, None);
        while served.is_none() || listed.is_none() || app.is_none() {
            service.check_alive()?;
            anyhow::ensure!(Instant::now() < deadline, "out of time in run {i}");
            if vm.is_none() {
                vm = sim
                    .state()
                    .vms
                    .iter()
                    .find(|v| !known.contains(&v.uuid) && v.status != "stopped")
                    .map(|v| {
                        (
                            v.name.clone(),
                            format!("{}:{}", v.address, sim.service_port()),
                        )
                    });
            }
            if let Some((name, addr)) = &vm {
                if app.is_none()
                    && http
                        .get(format!("http://{addr}/healthz"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                {
                    app = Some(t0.elapsed());
                }
                if listed.is_none() {
                    let doc = http
                        .get(format!("{}/traefik", service.base))
                        .send()
                        .await?
                        .text()
                        .await?;
                    if doc.contains(&format!("//{addr}\"")) {
                        listed = Some(t0.elapsed());
                    }
                }
                if served.is_none() && served_by(&http, &web).await.as_deref() == Some(name) {
                    served = Some(t0.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (app, listed, served) = (app.unwrap(), listed.unwrap(), served.unwrap());
        total.push(served.as_secs_f64() * 1e3);
        listed_ms.push(listed.saturating_sub(app).as_secs_f64() * 1e3);
        served_ms.push(served.saturating_sub(app).as_secs_f64() * 1e3);
        println!(
            "run {i}: app up {:.0} ms, listed {:.0} ms, served {:.0} ms after the webhook",
            app.as_secs_f64() * 1e3,
            listed.as_secs_f64() * 1e3,
            served.as_secs_f64() * 1e3
        );
        // Back to the seed alone before the next run.
        let r = http
            .put(format!("{}/v1/pools/calculate/desired", service.base))
            .json(&serde_json::json!({"size": 1}))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "PUT desired: {}", r.status());
    }
    println!(
        "webhook -> first request served by the new VM: {}",
        summary_ms(&mut total)
    );
    println!(
        "app up -> listed in /traefik: {}",
        summary_ms(&mut listed_ms)
    );
    println!(
        "app up -> first request served through Traefik: {}",
        summary_ms(&mut served_ms)
    );
    if warm.size > 0 && !warm.idle.is_zero() {
        wait_settled(&http, &service, sim, warm.size, deadline).await?;
        idle_cost(&http, &service, warm).await?;
    }
    service.stop();
    Ok(())
}

/// Waits until the seed alone serves, `warm` clones are warm and stopped, and nothing else exists.
async fn wait_settled(
    http: &reqwest::Client,
    service: &Service,
    sim: &SimHandle,
    warm: u32,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        anyhow::ensure!(Instant::now() < deadline, "out of time settling the pool");
        let state = sim.state();
        let stopped = state.vms.iter().filter(|v| v.status == "stopped").count();
        if state.vms.len() == 1 + warm as usize && stopped == warm as usize {
            if let Some(pools) = service.pools(http).await {
                let p = &pools[0];
                if p["ready"] == 1 && (warm == 0 || p["warm_pool"]["warm"] == warm) {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Idles for `warm.idle` and prints what the cost endpoint says the window cost.
async fn idle_cost(http: &reqwest::Client, service: &Service, warm: &Warm) -> anyhow::Result<()> {
    let since = chrono::Utc::now();
    tokio::time::sleep(warm.idle).await;
    let until = chrono::Utc::now();
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let cost: serde_json::Value = http
        .get(format!("{}/v1/pools/calculate/cost", service.base))
        .query(&[("since", at(since)), ("until", at(until))])
        .send()
        .await?
        .json()
        .await?;
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let hours = (until - since).num_milliseconds() as f64 / 3.6e6;
    let (running, stopped) = (
        f(&cost["vm_hours"]["running"]),
        f(&cost["vm_hours"]["stopped"]),
    );
    let (rp, sp) = (
        f(&cost["prices"]["running_per_hour"]),
        f(&cost["prices"]["stopped_per_hour"]),
    );
    let warm_per_hour = stopped / hours * sp;
    let running_per_hour = warm.size as f64 * rp;
    println!(
        "idle {:.0}s, seed + {} warm: vm_hours running {running:.5} stopped {stopped:.5}, cost {:.6} {}",
        warm.idle.as_secs_f64(),
        warm.size,
        f(&cost["cost"]),
        cost["currency"].as_str().unwrap_or("")
    );
    println!(
        "warm pool of {}: {warm_per_hour:.5} per hour ({:.2} per 730-hour month); {} more running: {running_per_hour:.5} per hour ({:.2} per month); the warm pool costs {:.1}% of it",
        warm.size,
        warm_per_hour * 730.0,
        warm.size,
        running_per_hour * 730.0,
        100.0 * warm_per_hour / running_per_hour
    );
    Ok(())
}

async fn served_by(http: &reqwest::Client, web: &str) -> Option<String> {
    let r = http.get(web).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.headers()
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}
