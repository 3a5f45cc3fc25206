//! `bench_tool webhook --service-bin BIN --dir DIR [--runs 200]`
//!
//! Time from a scale-up webhook's arrival to the clone call reaching the simulator.
//!
//! The simulator runs in this process; the service is the release binary in its own process
//! (`run --config`), with production intervals (reconcile 15 s, health probes every 2 s) and a
//! state file on disk. Clones never boot (a simulator fault), so no workload process is started
//! and the pool simply grows by one VM per run; `max` is `runs + 2`, the scale-up cooldown 0 s.
//!
//! One run, on a dedicated OS thread: connect to the service; take `t0`; write
//! `POST /v1/scale-up` (empty body: the documented "empty" webhook); then, until both happened,
//! poll the simulator's in-process call counter (`SimHandle::state().calls["vm_clone"]`, which
//! the simulator increments as soon as it has routed an authenticated clone call) every ~20 µs
//! and read the answer without blocking. `clone` is counter-increment − t0; `answer` is the time
//! to the end of the webhook's HTTP answer. Between runs: wait until the service lists the new VM
//! with nothing in flight, then pause 5-50 ms (random) so arrivals fall anywhere in the
//! reconciler's probe and relist cycles.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use idch_autoscaler::sim::{Faults, SimHandle};
use rand::Rng;

use crate::common::{free_port, start_sim, summary_ms, Args, Service, API_KEY_ENV};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let args = Args::new(args);
    let runs: usize = args.parse("--runs", 200)?;
    anyhow::ensure!((1..=230).contains(&runs), "--runs must be 1..=230");
    let bin = args.path("--service-bin")?;
    let dir = args.path("--dir")?;
    let limit = args.duration("--max-time", Duration::from_secs(180))?;

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let sim = start_sim(Duration::from_millis(200), "127.78.0.10-127.78.0.250").await?;
        sim.set_faults(Faults {
            clone_never_boots: true,
            ..Faults::default()
        });
        let result = measure(&sim, &bin, &dir, runs, limit).await;
        match Arc::try_unwrap(sim) {
            Ok(sim) => sim.shutdown().await,
            Err(sim) => drop(sim),
        }
        result
    })
}

fn vm_clone_calls(sim: &SimHandle) -> u64 {
    sim.state().calls.get("vm_clone").copied().unwrap_or(0)
}

async fn measure(
    sim: &Arc<SimHandle>,
    bin: &std::path::Path,
    dir: &std::path::Path,
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

[[pool]]
name = "calculate"
seed_vm = "{seed}"
clone_prefix = "calculate-service-clone-"
min = 1
max = {max}
scale_up_cooldown = "0s"
boot_timeout = "1h"
health = {{ path = "/healthz", interval = "2s", timeout = "1s" }}
router = {{ rule = "Path(`/calculate`)", entry_points = ["web"] }}
"#,
        state = dir.join("webhook-state.db").display(),
        url = sim.url(),
        seed = sim.seed_uuid(),
        max = runs + 2,
    );
    let config_path = dir.join("webhook.toml");
    std::fs::write(&config_path, config)?;
    let mut service = Service::start(bin, &config_path, &dir.join("webhook-service.log"), port)?;
    let http = reqwest::Client::new();
    service
        .wait_pools(&http, 1, Some(1), Duration::from_secs(30))
        .await
        .context("waiting for the pool to sync")?;

    let mut clone_ms = Vec::with_capacity(runs);
    let mut answer_ms = Vec::with_capacity(runs);
    for i in 0..runs {
        anyhow::ensure!(
            Instant::now() < deadline,
            "out of time after {i} runs (--max-time)"
        );
        let before = vm_clone_calls(sim);
        let sim2 = sim.clone();
        let (to_clone, to_answer) =
            tokio::task::spawn_blocking(move || one_run(&sim2, port, before))
                .await?
                .with_context(|| format!("run {i}"))?;
        clone_ms.push(to_clone.as_secs_f64() * 1e3);
        answer_ms.push(to_answer.as_secs_f64() * 1e3);
        // The clone call has returned and the reconciler has taken the new VM in.
        let want = (i + 2) as u64;
        loop {
            service.check_alive()?;
            anyhow::ensure!(Instant::now() < deadline, "out of time in run {i}");
            if let Some(pools) = service.pools(&http).await {
                let p = &pools[0];
                if p["size"].as_u64() == Some(want)
                    && p["provisioning"].as_array().is_some_and(|a| a.is_empty())
                {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let pause = rand::thread_rng().gen_range(5..=50);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    let calls = vm_clone_calls(sim);
    anyhow::ensure!(
        calls == runs as u64,
        "expected exactly {runs} clone calls, the simulator saw {calls}"
    );
    println!("webhook->clone call: {}", summary_ms(&mut clone_ms));
    println!("webhook HTTP answer: {}", summary_ms(&mut answer_ms));
    service.stop();
    Ok(())
}

/// One webhook; returns (arrival → clone call counted by the simulator, arrival → end of answer).
fn one_run(sim: &SimHandle, port: u16, before: u64) -> anyhow::Result<(Duration, Duration)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    let request = b"POST /v1/scale-up HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let t0 = Instant::now();
    stream.write_all(request)?;
    stream.set_nonblocking(true)?;
    let (mut clone_at, mut answer_at) = (None, None);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while clone_at.is_none() || answer_at.is_none() {
        if clone_at.is_none() && vm_clone_calls(sim) > before {
            clone_at = Some(t0.elapsed());
        }
        if answer_at.is_none() {
            match stream.read(&mut buf) {
                Ok(0) => answer_at = Some(t0.elapsed()),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(5),
            "no clone call within 5 s (answer: {})",
            String::from_utf8_lossy(&answer)
        );
        std::thread::sleep(Duration::from_micros(20));
    }
    let text = String::from_utf8_lossy(&answer);
    anyhow::ensure!(
        text.starts_with("HTTP/1.1 200") && text.contains("\"accepted\""),
        "the webhook was not accepted: {text}"
    );
    Ok((clone_at.unwrap_or_default(), answer_at.unwrap_or_default()))
}
