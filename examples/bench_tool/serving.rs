//! `bench_tool serving --service-bin BIN --traefik BIN --dir DIR [--runs 10] [--boot-delay 8s]
//!  [--max-time 6m]`
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

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use idch_autoscaler::sim::SimHandle;

use crate::common::{free_port, start_sim, summary_ms, Args, Service, API_KEY_ENV};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let args = Args::new(args);
    let runs: usize = args.parse("--runs", 10)?;
    anyhow::ensure!((1..=50).contains(&runs), "--runs must be 1..=50");
    let bin = args.path("--service-bin")?;
    let traefik = args.path("--traefik")?;
    let dir = args.path("--dir")?;
    let boot_delay = args.duration("--boot-delay", Duration::from_secs(8))?;
    let limit = args.duration("--max-time", Duration::from_secs(360))?;

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let sim = start_sim(boot_delay, "127.79.0.10-127.79.0.250").await?;
        let result = measure(&sim, &bin, &traefik, &dir, runs, limit).await;
        match Arc::try_unwrap(sim) {
            Ok(sim) => sim.shutdown().await,
            Err(sim) => drop(sim),
        }
        result
    })
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
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let port = free_port()?;
    let config = format!(
        r#"
listen = "127.0.0.1:{port}"
state_path = "{state}"
reconcile_interval = "15s"

[idcloudhost]
api_url = "{url}"
location = "jkt01"
api_key_env = "{API_KEY_ENV}"
timeout = "5s"

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
"#,
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
        .wait_pools(&http, 1, Some(1), Duration::from_secs(30))
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
        let known: Vec<String> = sim.state().vms.iter().map(|v| v.uuid.clone()).collect();
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
                    .find(|v| !known.contains(&v.uuid))
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
        loop {
            anyhow::ensure!(Instant::now() < deadline, "out of time scaling down");
            if sim.state().vms.len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
    service.stop();
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
