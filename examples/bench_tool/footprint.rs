//! `bench_tool footprint --service-bin BIN --dir DIR [--pools 1] [--vms 20] [--hour 1h]
//!  [--speedup 60] [--idle-window 30s] [--settle 5s] [--probe http|tcp] [--max-time 8m]`
//!
//! Memory and CPU of the release service binary, run as its own process, with `pools` pools of
//! `vms` VMs each on one simulator (this process). Each VM runs this binary's tiny `calculate`
//! stub (one single-threaded process answering `200 {"status":"ok"}`), so 1,000 VMs are cheap.
//! Pool 0's seed is the simulator's seed; the other pools' seeds are cloned from it through the
//! API before the service starts.
//!
//! 1. Aging: the service runs with the production defaults (reconcile every 15 s, health probes
//!    every 2 s, timeout 1 s) compressed `speedup` times: relist every 15 s / speedup, probe every
//!    2 s / speedup (timeout = that interval; unhealthy_threshold 100 so a slow probe under load
//!    does not make VMs flap). Every pool is grown to `vms` ready VMs (`PUT desired`), then the
//!    service runs until the simulator has counted `hour / 15 s` list calls (one lister lists the
//!    location for every pool; 240 for an
//!    hour: one hour of relists at the default interval; the probe loop runs alongside at its own
//!    compressed interval). VmRSS is read when all VMs are ready and when the aging is done, with
//!    the CPU time used and the wall time taken.
//! 2. Idle: the aged service is stopped and the service is started again on the same state and
//!    the same VMs with the production default intervals (15 s, 2 s); once every pool has its
//!    `vms` ready VMs and `settle` (5 s) has passed, CPU time (utime + stime from /proc/PID/stat) is taken
//!    over `idle-window` and VmRSS at its end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use idch_autoscaler::config::{Config, Secret};
use idch_autoscaler::idch::CloudClient;
use idch_autoscaler::sim::{SimArgs, SimHandle};

use crate::common::{cpu_time, free_port, rss_kib, this_exe, Args, Service, API_KEY, API_KEY_ENV};

const DEFAULT_RELIST: Duration = Duration::from_secs(15);
const DEFAULT_PROBE: Duration = Duration::from_secs(2);

struct Opts {
    pools: usize,
    vms: u32,
    hour: Duration,
    speedup: f64,
    idle_window: Duration,
    settle: Duration,
    tcp_probe: bool,
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let args = Args::new(args);
    let opts = Opts {
        pools: args.parse("--pools", 1)?,
        vms: args.parse("--vms", 20)?,
        hour: args.duration("--hour", Duration::from_secs(3600))?,
        speedup: args.parse("--speedup", 60.0)?,
        idle_window: args.duration("--idle-window", Duration::from_secs(30))?,
        settle: args.duration("--settle", Duration::from_secs(5))?,
        tcp_probe: match args.get("--probe").unwrap_or("http") {
            "http" => false,
            "tcp" => true,
            other => anyhow::bail!("--probe {other:?}: http or tcp"),
        },
        bin: args.path("--service-bin")?,
        dir: args.path("--dir")?,
    };
    let limit = args.duration("--max-time", Duration::from_secs(480))?;
    anyhow::ensure!((1..=200).contains(&opts.pools), "--pools must be 1..=200");
    anyhow::ensure!((1..=50).contains(&opts.vms), "--vms must be 1..=50");
    anyhow::ensure!(opts.speedup >= 1.0, "--speedup must be at least 1");

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        // Addresses 127.77.0.10 upwards: 4 per VM is plenty (a few may be busy).
        let count = (opts.pools as u32 * (opts.vms + 1)) * 2 + 16;
        let first = std::net::Ipv4Addr::new(127, 77, 0, 10);
        let last = std::net::Ipv4Addr::from(u32::from(first) + count);
        let mut sim_opts = SimArgs {
            listen: "127.0.0.1:0".parse()?,
            seed_name: "pool-0-seed".into(),
            boot_delay: Duration::from_millis(100),
            addresses: (first, last).into(),
            ..SimArgs::default()
        }
        .into_options(this_exe()?)?;
        sim_opts.api_key = API_KEY.into();
        let sim = Arc::new(SimHandle::start(sim_opts).await?);
        let result = tokio::time::timeout(limit, measure(&sim, &opts))
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("out of time (--max-time {limit:?})")));
        match Arc::try_unwrap(sim) {
            Ok(sim) => sim.shutdown().await,
            Err(sim) => drop(sim),
        }
        result
    })
}

fn config_text(
    opts: &Opts,
    port: u16,
    url: &str,
    seeds: &[String],
    relist: Duration,
    probe: Duration,
    aging: bool,
) -> String {
    let fmt = |d: Duration| format!("{}ms", d.as_millis().max(1));
    let mut text = format!(
        r#"
listen = "127.0.0.1:{port}"
state_path = "{state}"
reconcile_interval = "{relist}"

[idcloudhost]
api_url = "{url}"
location = "jkt01"
api_key_env = "{API_KEY_ENV}"
timeout = "10s"
"#,
        state = opts.dir.join("footprint-state.db").display(),
        relist = fmt(relist),
    );
    let path = if opts.tcp_probe {
        String::new()
    } else {
        "path = \"/healthz\", ".into()
    };
    let timeout = if aging { probe } else { Duration::from_secs(1) };
    let unhealthy = if aging { 100 } else { 3 };
    for (p, seed) in seeds.iter().enumerate() {
        text.push_str(&format!(
            r#"
[[pool]]
name = "pool-{p}"
seed_vm = "{seed}"
clone_prefix = "pool-{p}-clone-"
min = 1
max = {max}
scale_up_cooldown = "0s"
health = {{ {path}interval = "{interval}", timeout = "{timeout}", unhealthy_threshold = {unhealthy} }}
router = {{ rule = "Host(`pool-{p}.example`)", entry_points = ["web"] }}
"#,
            max = opts.vms,
            interval = fmt(probe),
            timeout = fmt(timeout),
        ));
    }
    text
}

fn list_calls(sim: &SimHandle) -> u64 {
    sim.state().calls.get("vm_list").copied().unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn measure(sim: &Arc<SimHandle>, opts: &Opts) -> anyhow::Result<()> {
    let label = format!("{} pool(s) x {} VMs", opts.pools, opts.vms);
    // The other pools' seeds, cloned from the simulator's seed through its API.
    let mut seeds = vec![sim.seed_uuid()];
    if opts.pools > 1 {
        let probe_config = Config::parse(&config_text(
            opts,
            1,
            &sim.url(),
            &seeds,
            DEFAULT_RELIST,
            DEFAULT_PROBE,
            false,
        ))?;
        let cloud = CloudClient::new(&probe_config.cloud, Secret::new(API_KEY))?;
        for p in 1..opts.pools {
            let vm = cloud
                .clone_vm(&sim.seed_uuid(), &format!("pool-{p}-seed"))
                .await
                .with_context(|| format!("cloning the seed of pool {p}"))?;
            seeds.push(vm.uuid);
        }
    }
    let http = reqwest::Client::new();

    // 1. Aging, at the default intervals compressed `speedup` times.
    let relist = DEFAULT_RELIST.div_f64(opts.speedup);
    let probe = DEFAULT_PROBE.div_f64(opts.speedup);
    let port = free_port()?;
    let aged_config = opts.dir.join("footprint-aging.toml");
    std::fs::write(
        &aged_config,
        config_text(opts, port, &sim.url(), &seeds, relist, probe, true),
    )?;
    let mut service = Service::start(
        &opts.bin,
        &aged_config,
        &opts.dir.join("footprint-aging.log"),
        port,
    )?;
    let pid = service.pid();
    let setup = Instant::now();
    service
        .wait_pools(&http, opts.pools, None, Duration::from_secs(60))
        .await
        .context("waiting for every pool to sync")?;
    for p in 0..opts.pools {
        let resp = http
            .put(format!("{}/v1/pools/pool-{p}/desired", service.base))
            .json(&serde_json::json!({ "size": opts.vms }))
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "PUT desired of pool-{p}: {}",
            resp.status()
        );
    }
    service
        .wait_pools(
            &http,
            opts.pools,
            Some(opts.vms as u64),
            Duration::from_secs(180),
        )
        .await
        .context("waiting for every VM to be ready")?;
    let rss_ready = rss_kib(pid)?;
    println!(
        "footprint {label}: all {} VMs ready after {:.1}s; VmRSS {:.1} MiB",
        opts.pools as u32 * opts.vms,
        setup.elapsed().as_secs_f64(),
        mib(rss_ready)
    );
    // What every pool's relist downloads and parses: the location's whole VM list.
    let list = http
        .get(format!("{}/v1/jkt01/user-resource/vm/list", sim.url()))
        .header("apikey", API_KEY)
        .send()
        .await?
        .bytes()
        .await?;
    println!(
        "footprint {label}: one list call answers {} VMs in {:.0} KiB; one lister makes one per \
         reconcile interval for all {} pools",
        sim.state().vms.len(),
        list.len() as f64 / 1024.0,
        opts.pools
    );

    // One list call per interval for the whole location, whatever the number of pools (pokes
    // after clone and delete calls add a few).
    let cycles = (opts.hour.as_secs_f64() / DEFAULT_RELIST.as_secs_f64()).ceil() as u64;
    let want = cycles;
    let (lists0, cpu0, t0) = (list_calls(sim), cpu_time(pid)?, Instant::now());
    let mut peak = rss_ready;
    loop {
        service.check_alive()?;
        peak = peak.max(rss_kib(pid)?);
        if list_calls(sim) - lists0 >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (lists, cpu, wall) = (
        list_calls(sim) - lists0,
        cpu_time(pid)? - cpu0,
        t0.elapsed(),
    );
    let rss_aged = rss_kib(pid)?;
    let ready = service
        .pools(&http)
        .await
        .context("pool status after aging")?
        .iter()
        .map(|p| p["ready"].as_u64().unwrap_or(0))
        .sum::<u64>();
    println!(
        "footprint {label}: aged {} relists of the location (= {} at the 15s default) and at most {} \
         probe rounds, in {:.1}s wall (relist every {:.1}ms, probe every {:.1}ms); service CPU \
         {:.2}s ({:.0}% of a core); VmRSS {:.1} MiB (peak {:.1} MiB); ready VMs after aging {ready}",
        lists,
        humantime::format_duration(Duration::from_secs(lists * DEFAULT_RELIST.as_secs())),
        (wall.as_secs_f64() / probe.as_secs_f64()) as u64,
        wall.as_secs_f64(),
        relist.as_secs_f64() * 1e3,
        probe.as_secs_f64() * 1e3,
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        mib(rss_aged),
        mib(peak),
    );
    println!(
        "RESULT footprint_aged_rss_mib pools={} {:.1}",
        opts.pools,
        mib(rss_aged)
    );
    service.stop();

    // 2. Idle at the production default intervals, on the same state and VMs.
    let port = free_port()?;
    let idle_config = opts.dir.join("footprint-idle.toml");
    std::fs::write(
        &idle_config,
        config_text(
            opts,
            port,
            &sim.url(),
            &seeds,
            DEFAULT_RELIST,
            DEFAULT_PROBE,
            false,
        ),
    )?;
    let mut service = Service::start(
        &opts.bin,
        &idle_config,
        &opts.dir.join("footprint-idle.log"),
        port,
    )?;
    let pid = service.pid();
    service
        .wait_pools(
            &http,
            opts.pools,
            Some(opts.vms as u64),
            Duration::from_secs(60),
        )
        .await
        .context("waiting for the restarted service")?;
    tokio::time::sleep(opts.settle).await;
    let (cpu0, t0) = (cpu_time(pid)?, Instant::now());
    tokio::time::sleep(opts.idle_window).await;
    service.check_alive()?;
    let (cpu, wall) = (cpu_time(pid)? - cpu0, t0.elapsed());
    let rss_idle = rss_kib(pid)?;
    let pct = 100.0 * cpu.as_secs_f64() / wall.as_secs_f64();
    println!(
        "footprint {label}: idle at default intervals (relist 15s, probe 2s): CPU {:.2}s over \
         {:.1}s = {pct:.2}% of a core; VmRSS {:.1} MiB",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        mib(rss_idle)
    );
    println!(
        "RESULT footprint_idle_cpu_pct pools={} {pct:.2}",
        opts.pools
    );
    println!(
        "RESULT footprint_idle_rss_mib pools={} {:.1}",
        opts.pools,
        mib(rss_idle)
    );
    service.stop();
    Ok(())
}
