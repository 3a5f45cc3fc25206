//! Shared helpers: percentiles, /proc readings, free ports, synthetic pools.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use idch_autoscaler::config::PoolConfig;
use idch_autoscaler::pool::{Backend, BackendState, PoolView, Role};

/// The `p`-th percentile (0..=100) of sorted samples, nearest-rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// "p50 x p90 y p95 v p99 z max w" in milliseconds.
pub fn summary_ms(samples: &mut [f64]) -> String {
    samples.sort_by(|a, b| a.total_cmp(b));
    format!(
        "n={} p50={:.3}ms p90={:.3}ms p95={:.3}ms p99={:.3}ms max={:.3}ms",
        samples.len(),
        percentile(samples, 50.0),
        percentile(samples, 90.0),
        percentile(samples, 95.0),
        percentile(samples, 99.0),
        samples.last().copied().unwrap_or(f64::NAN)
    )
}

/// `/proc/{pid}`.
fn process(pid: u32) -> anyhow::Result<procfs::process::Process> {
    procfs::process::Process::new(i32::try_from(pid)?)
        .with_context(|| format!("process {pid} is gone"))
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = process(pid)?
        .status()
        .with_context(|| format!("process {pid} is gone"))?;
    status.vmrss.context("no VmRSS line")
}

/// utime + stime of a process.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = process(pid)?
        .stat()
        .with_context(|| format!("process {pid} is gone"))?;
    let ticks = procfs::ticks_per_second().max(1) as f64;
    Ok(Duration::from_secs_f64(
        (stat.utime + stat.stime) as f64 / ticks,
    ))
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// This executable (the stub workload of simulated VMs is its `calculate` mode).
pub fn this_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find this executable")
}

/// A pool view with `n` ready backends (a seed and `n - 1` clones) at addresses 10.x.y.z.
pub fn synthetic_view(pool: &PoolConfig, n: usize) -> PoolView {
    let backends = (0..n)
        .map(|i| {
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 10)) + i as u32);
            let (name, role) = if i == 0 {
                ("calculate-service".to_string(), Role::Seed)
            } else {
                (format!("{}{i}", pool.clone_prefix), Role::Clone)
            };
            Backend {
                uuid: format!("00000000-0000-4000-8000-{i:012}"),
                name,
                role,
                ip: Some(ip.to_string()),
                cloud_status: "running".into(),
                created_at: Some("2025-01-01 00:00:00".into()),
                state: BackendState::Ready,
                since: 1_700_000_000.0,
            }
        })
        .collect();
    PoolView {
        backends,
        synced: true,
        cloud_ok: true,
        seed_present: true,
        last_success: Some(1_700_000_000.0),
        ..PoolView::new(&pool.name)
    }
}

/// Parses `--key value` pairs into a lookup (flags without a value are not used here).
pub struct Args(Vec<String>);

impl Args {
    pub fn new(args: &[String]) -> Self {
        Args(args.iter().skip(1).cloned().collect())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == key)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }

    pub fn parse<T: std::str::FromStr>(&self, key: &str, default: T) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| anyhow::anyhow!("{key} {v:?}: {e}")),
        }
    }

    pub fn duration(&self, key: &str, default: Duration) -> anyhow::Result<Duration> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => humantime::parse_duration(v).with_context(|| format!("{key} {v:?}")),
        }
    }

    pub fn path(&self, key: &str) -> anyhow::Result<PathBuf> {
        self.get(key)
            .map(PathBuf::from)
            .with_context(|| format!("{key} is required"))
    }
}

/// The API key the simulators accept and the service is given (`IDCH_BENCH_API_KEY`).
pub const API_KEY: &str = "bench-api-key";
pub const API_KEY_ENV: &str = "IDCH_BENCH_API_KEY";

/// A simulator in this process on `addresses` (e.g. `127.78.0.10-127.78.0.250`), booting clones
/// after `boot_delay`, accepting [`API_KEY`].
pub async fn start_sim(
    boot_delay: Duration,
    addresses: &str,
) -> anyhow::Result<std::sync::Arc<idch_autoscaler::sim::SimHandle>> {
    let mut opts = idch_autoscaler::sim::SimArgs {
        listen: "127.0.0.1:0".parse()?,
        boot_delay,
        addresses: addresses.parse().map_err(anyhow::Error::msg)?,
        ..idch_autoscaler::sim::SimArgs::default()
    }
    .into_options(this_exe()?)?;
    opts.api_key = API_KEY.into();
    Ok(std::sync::Arc::new(
        idch_autoscaler::sim::SimHandle::start(opts).await?,
    ))
}

/// The release service binary, run as its own process (`run --config FILE`), logging to a file.
/// Killed when dropped.
pub struct Service {
    child: Option<std::process::Child>,
    pub base: String,
}

impl Service {
    pub fn start(
        bin: &std::path::Path,
        config: &std::path::Path,
        log: &std::path::Path,
        port: u16,
    ) -> anyhow::Result<Service> {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(log)?;
        let mut command = std::process::Command::new(bin);
        // SAFETY: only prctl(2) runs between fork and exec. If this helper dies without running
        // its destructors (SIGKILL, SIGINT), the kernel stops the service too.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .args(["run", "--config"])
            .arg(config)
            .env(API_KEY_ENV, API_KEY)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Service {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("the service exited: {status}");
            }
        }
        Ok(())
    }

    /// `GET /v1/pools`, the `pools` array; `None` while the service does not answer.
    pub async fn pools(&self, http: &reqwest::Client) -> Option<Vec<serde_json::Value>> {
        let resp = http
            .get(format!("{}/v1/pools", self.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = resp.json().await.ok()?;
        body["pools"].as_array().cloned()
    }

    /// Waits until every one of `pools` pools is synced and, with `ready`, has that many ready
    /// backends and nothing in flight.
    pub async fn wait_pools(
        &mut self,
        http: &reqwest::Client,
        pools: usize,
        ready: Option<u64>,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let start = std::time::Instant::now();
        loop {
            self.check_alive()?;
            if let Some(list) = self.pools(http).await {
                let done = list.len() == pools
                    && list.iter().all(|p| {
                        p["synced"] == true
                            && ready.is_none_or(|r| {
                                p["ready"].as_u64() == Some(r)
                                    && p["size"].as_u64() == Some(r)
                                    && p["provisioning"].as_array().is_some_and(|a| a.is_empty())
                            })
                    });
                if done {
                    return Ok(());
                }
                if start.elapsed() > limit {
                    let ready: Vec<_> = list.iter().map(|p| p["ready"].clone()).collect();
                    anyhow::bail!("pools not ready within {limit:?}: ready per pool {ready:?}");
                }
            } else if start.elapsed() > limit {
                anyhow::bail!("the service did not answer within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}
