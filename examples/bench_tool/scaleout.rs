//! `bench_tool scaleout --service-bin BIN --dir DIR [--runs 5] [--concurrency 1,3]
//!  [--clone-call 2s] [--boot 3s]`
//!
//! Time for a pool to go from 1 to 5 ready VMs after one `PUT desired 5`, for each
//! `max_concurrent_clones` given. The simulator runs in this process with each clone call taking
//! `--clone-call` before the VM exists and answers (its `clone_late` fault) and each clone
//! booting `--boot` after that; the service is the release binary in its own process, with a
//! fresh state file per run. The defaults are IDCloudHost's ratios (a clone call of about 20 s
//! and a boot of about 30 s) divided by 10.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use idch_autoscaler::sim::Faults;

use crate::common::{free_port, percentile, start_sim, Args, Service, API_KEY_ENV};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let args = Args::new(args);
    let runs: usize = args.parse("--runs", 5)?;
    anyhow::ensure!((1..=50).contains(&runs), "--runs must be 1..=50");
    let bin = args.path("--service-bin")?;
    let dir = args.path("--dir")?;
    let clone_call = args.duration("--clone-call", Duration::from_secs(2))?;
    let boot = args.duration("--boot", Duration::from_secs(3))?;
    let concurrency: Vec<u32> = args
        .get("--concurrency")
        .unwrap_or("1,3")
        .split(',')
        .map(|c| c.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .context("--concurrency: a comma-separated list of whole numbers")?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        for c in concurrency {
            let mut seconds = Vec::with_capacity(runs);
            for i in 0..runs {
                let s = one_run(&bin, &dir, c, clone_call, boot)
                    .await
                    .with_context(|| format!("max_concurrent_clones = {c}, run {i}"))?;
                seconds.push(s);
            }
            seconds.sort_by(|a, b| a.total_cmp(b));
            println!(
                "1 -> 5 ready, max_concurrent_clones = {c} (clone call {clone_call:?}, boot {boot:?}): n={runs} p50={:.2}s p95={:.2}s max={:.2}s",
                percentile(&seconds, 50.0),
                percentile(&seconds, 95.0),
                seconds.last().copied().unwrap_or(f64::NAN),
            );
        }
        Ok(())
    })
}

async fn one_run(
    bin: &std::path::Path,
    dir: &std::path::Path,
    concurrency: u32,
    clone_call: Duration,
    boot: Duration,
) -> anyhow::Result<f64> {
    let sim = start_sim(boot, "127.79.0.10-127.79.0.250").await?;
    sim.set_faults(Faults {
        clone_late: clone_call,
        ..Faults::default()
    });
    let port = free_port()?;
    let state = dir.join(format!("scaleout-{concurrency}.db"));
    let _ = std::fs::remove_file(&state);
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

[[pool]]
name = "calculate"
seed_vm = "{seed}"
clone_prefix = "calculate-service-clone-"
min = 1
max = 5
max_concurrent_clones = {concurrency}
health = {{ path = "/healthz", interval = "2s", timeout = "1s" }}
"#,
        state = state.display(),
        url = sim.url(),
        seed = sim.seed_uuid(),
        timeout = clone_call.as_secs() + 10,
    );
    let config_path = dir.join("scaleout.toml");
    std::fs::write(&config_path, config)?;
    let mut service = Service::start(bin, &config_path, &dir.join("scaleout-service.log"), port)?;
    let http = reqwest::Client::new();
    service
        .wait_pools(&http, 1, Some(1), Duration::from_secs(30))
        .await
        .context("waiting for the pool to sync")?;
    let t0 = Instant::now();
    let answer = http
        .put(format!("{}/v1/pools/calculate/desired", service.base))
        .json(&serde_json::json!({ "size": 5 }))
        .send()
        .await?;
    anyhow::ensure!(
        answer.status().is_success(),
        "PUT desired: {}",
        answer.status()
    );
    let limit = 4 * (clone_call + boot) + Duration::from_secs(60);
    loop {
        service.check_alive()?;
        if let Some(pools) = service.pools(&http).await {
            if pools[0]["ready"].as_u64() == Some(5) {
                break;
            }
        }
        anyhow::ensure!(t0.elapsed() < limit, "not 5 ready within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t0.elapsed().as_secs_f64();
    service.stop();
    match Arc::try_unwrap(sim) {
        Ok(sim) => sim.shutdown().await,
        Err(sim) => drop(sim),
    }
    Ok(took)
}
