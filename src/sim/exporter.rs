//! The node_exporter of a simulated VM: `GET http://{vm ip}:{exporter_port}/metrics`.
//!
//! It serves the series that alert rules on VMs use, in the Prometheus text format 0.0.4 exactly as
//! the real node_exporter (1.5) writes them: the same HELP and TYPE lines, metric names, label names,
//! families sorted by name, and Go's float formatting (`2.147483648e+09`):
//!
//! - `node_cpu_seconds_total{cpu, mode}`: the CPU time of the VM's processes (utime and stime from
//!   `/proc/<pid>/stat`), spread evenly over the VM's vCPUs, as `user` and `system`; `idle` is the
//!   rest of the wall time since the VM booted × vCPUs. With a CPU budget of `b` cores, CPU time is
//!   counted against the budget (× vCPUs / b), so a VM that uses its whole budget shows ~100 % busy.
//!   A burst above 100 % is carried over to the next samples rather than lost, and every counter
//!   only ever grows. The other modes are present and zero.
//! - `node_load1`, `node_load5`, `node_load15`: exponentially decayed averages (like the kernel's) of
//!   the VM's busy vCPUs, sampled every second.
//! - `node_memory_MemTotal_bytes` (the VM's memory size), `node_memory_MemAvailable_bytes` and
//!   `node_memory_MemFree_bytes` (total − resident memory of its processes), `node_memory_Buffers_bytes`
//!   and `node_memory_Cached_bytes` (0), so both usual memory formulas work.
//!
//! Design choice: the endpoint is served by the simulator process itself (one axum listener and one
//! sampling task per running VM), not by a child process. The simulator already knows everything the
//! endpoint reports (the VM's processes, cgroup, vCPUs, memory and budget) and needs no IPC for it; a
//! listener dies with the simulator, so even a SIGKILLed simulator leaves nothing listening (a child
//! would need the same parent-death care as the workload); and its own CPU is never charged to the
//! VM's budget, so scraping does not disturb what is measured (the real node_exporter's share on a
//! 2-vCPU VM is negligible too). It is started when the VM starts running and stopped (listener closed,
//! open connections shut down gracefully) when the VM is stopped or deleted, or the simulator stops.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::cgroup;

/// The content type the real node_exporter answers with for the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const MODES: [&str; 8] = [
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// What the VM is: its size and budget.
#[derive(Debug, Clone, Copy)]
pub(super) struct VmShape {
    pub vcpus: u32,
    pub memory_mib: u32,
    /// Cores of real CPU that count as all of the VM's vCPUs (None: one core per vCPU).
    pub cpu_budget: Option<f64>,
}

/// Which processes belong to the VM.
#[derive(Debug, Clone)]
pub(super) enum Processes {
    /// Just the workload.
    Pid(Option<u32>),
    /// Everything in the VM's cgroup (the workload when the file cannot be read).
    Cgroup {
        procs_file: PathBuf,
        pid: Option<u32>,
    },
}

impl Processes {
    fn list(&self) -> Vec<u32> {
        match self {
            Processes::Pid(pid) => pid.iter().copied().collect(),
            Processes::Cgroup { procs_file, pid } => {
                cgroup::read_procs(procs_file).unwrap_or_else(|_| pid.iter().copied().collect())
            }
        }
    }
}

/// A running endpoint. Dropping it closes the listener at once (best effort).
pub(super) struct Exporter {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Exporter {
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight scrapes finish (up to a second), closes idle connections.
    pub(super) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        // The signal also makes axum shut its open connections down, even though the task is aborted.
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds `addr` and serves the VM's metrics until stopped. Must run inside a tokio runtime; binds
/// synchronously, so the caller knows at once whether the port was free.
pub(super) fn start(
    addr: SocketAddr,
    shape: VmShape,
    processes: Processes,
    vm: &str,
) -> std::io::Result<Exporter> {
    // std sets SO_REUSEADDR, so a port in TIME_WAIT from the VM's previous boot can be bound again.
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    let meter = Arc::new(Mutex::new(Meter::new(shape, processes)));
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(landing))
        .fallback(not_found)
        .with_state(Arc::clone(&meter));
    let (stop, stopped) = oneshot::channel::<()>();
    let vm_name = vm.to_string();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            stopped.await.ok();
        });
        let sample = async {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                lock(&meter).sample(Instant::now());
            }
        };
        tokio::select! {
            result = serve => {
                if let Err(err) = result {
                    tracing::warn!(vm = %vm_name, %err, "simulated node_exporter stopped serving");
                }
            }
            () = sample => {}
        }
    });
    tracing::debug!(vm, %addr, "simulated node_exporter listening");
    Ok(Exporter {
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}

fn lock(meter: &Mutex<Meter>) -> MutexGuard<'_, Meter> {
    meter
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn metrics(State(meter): State<Arc<Mutex<Meter>>>) -> Response {
    let text = {
        let mut meter = lock(&meter);
        meter.sample(Instant::now());
        meter.render()
    };
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

async fn landing() -> Html<&'static str> {
    Html(
        "<html><head><title>Node Exporter</title></head><body><h1>Node Exporter</h1>\
         <p>Simulated VM (idch-autoscaler sim).</p><p><a href=\"/metrics\">Metrics</a></p></body></html>\n",
    )
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
        .into_response()
}

/// CPU ticks of one process, keyed by (pid, start time) so a reused pid is a new process.
type ProcessKey = (u32, u64);

/// The VM's counters, updated by [`Meter::sample`].
struct Meter {
    shape: VmShape,
    processes: Processes,
    ticks_per_second: f64,
    last_sample: Instant,
    /// Whether the processes were read at least once (memory is known).
    sampled: bool,
    /// Start time of the workload (for [`Processes::Pid`]), so a reused pid is not counted.
    workload_start: Option<u64>,
    /// (utime, stime) in ticks at the last sample, per process.
    seen: HashMap<ProcessKey, (u64, u64)>,
    /// Reported seconds, summed over all vCPUs.
    user: f64,
    system: f64,
    idle: f64,
    /// Busy time above 100 % not reported yet (burst above the budget), in reported seconds.
    carry_user: f64,
    carry_system: f64,
    load: [f64; 3],
    rss_bytes: u64,
}

const LOAD_WINDOWS: [f64; 3] = [60.0, 300.0, 900.0];

impl Meter {
    fn new(shape: VmShape, processes: Processes) -> Meter {
        Meter {
            shape,
            processes,
            ticks_per_second: match procfs::ticks_per_second() {
                0 => 100.0,
                ticks => ticks as f64,
            },
            last_sample: Instant::now(),
            sampled: false,
            workload_start: None,
            seen: HashMap::new(),
            user: 0.0,
            system: 0.0,
            idle: 0.0,
            carry_user: 0.0,
            carry_system: 0.0,
            load: [0.0; 3],
            rss_bytes: 0,
        }
    }

    fn vcpus(&self) -> f64 {
        f64::from(self.shape.vcpus.max(1))
    }

    /// Reads the VM's processes and advances the counters to `now`.
    fn sample(&mut self, now: Instant) {
        let dt = now
            .saturating_duration_since(self.last_sample)
            .as_secs_f64();
        if dt < 0.005 && self.sampled {
            return;
        }
        self.sampled = true;
        self.last_sample = now;
        let mut current = HashMap::new();
        let (mut du, mut ds, mut rss) = (0u64, 0u64, 0u64);
        for pid in self.processes.list() {
            let Some(process) = open_process(pid) else {
                continue;
            };
            let Some(stat) = read_stat(&process) else {
                continue;
            };
            if let Processes::Pid(_) = self.processes {
                // Only the workload we were given: once it is gone, its pid may be reused.
                if *self.workload_start.get_or_insert(stat.start_time) != stat.start_time {
                    continue;
                }
            }
            let key = (pid, stat.start_time);
            let (pu, ps) = self.seen.get(&key).copied().unwrap_or((0, 0));
            du += stat.utime.saturating_sub(pu);
            ds += stat.stime.saturating_sub(ps);
            current.insert(key, (stat.utime, stat.stime));
            rss += read_rss_bytes(&process).unwrap_or(0);
        }
        self.seen = current;
        self.rss_bytes = rss;

        let vcpus = self.vcpus();
        // Reported seconds per real CPU second: the budget counts as all of the VM's vCPUs.
        let scale = match self.shape.cpu_budget {
            Some(budget) if budget > 0.0 => vcpus / budget,
            _ => 1.0,
        };
        let want_user = du as f64 / self.ticks_per_second * scale + self.carry_user;
        let want_system = ds as f64 / self.ticks_per_second * scale + self.carry_system;
        let capacity = dt * vcpus;
        let want = want_user + want_system;
        let k = if want > capacity {
            capacity / want
        } else {
            1.0
        };
        let (user, system) = (want_user * k, want_system * k);
        // A burst above the budget (the quota is enforced per 100 ms period, samples are not
        // aligned with it) is reported later, but only a little of it: without an enforced quota, a
        // VM far above its budget must not look busy long after its load stopped.
        let carry_limit = 0.25 * vcpus;
        self.carry_user = (want_user - user).min(carry_limit);
        self.carry_system = (want_system - system).min(carry_limit);
        self.user += user;
        self.system += system;
        self.idle += (capacity - user - system).max(0.0);

        let busy_vcpus = (user + system) / dt;
        for (load, window) in self.load.iter_mut().zip(LOAD_WINDOWS) {
            let decay = (-dt / window).exp();
            *load = *load * decay + busy_vcpus * (1.0 - decay);
        }
    }

    /// The exposition, families sorted by name as node_exporter writes them.
    fn render(&self) -> String {
        let vcpus = self.shape.vcpus.max(1);
        let per_cpu = |total: f64| round2(total / f64::from(vcpus));
        let total_bytes = u64::from(self.shape.memory_mib) * 1024 * 1024;
        let available = total_bytes.saturating_sub(self.rss_bytes);
        let mut out = String::with_capacity(2048);
        out.push_str("# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n");
        out.push_str("# TYPE node_cpu_seconds_total counter\n");
        for cpu in 0..vcpus {
            for mode in MODES {
                let value = match mode {
                    "idle" => per_cpu(self.idle),
                    "system" => per_cpu(self.system),
                    "user" => per_cpu(self.user),
                    _ => 0.0,
                };
                let _ = writeln!(
                    out,
                    "node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{mode}\"}} {}",
                    go_float(value)
                );
            }
        }
        let gauge = |out: &mut String, name: &str, help: &str, value: f64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}\n",
                go_float(value)
            );
        };
        gauge(
            &mut out,
            "node_load1",
            "1m load average.",
            round2(self.load[0]),
        );
        gauge(
            &mut out,
            "node_load15",
            "15m load average.",
            round2(self.load[2]),
        );
        gauge(
            &mut out,
            "node_load5",
            "5m load average.",
            round2(self.load[1]),
        );
        let memory = |out: &mut String, field: &str, value: u64| {
            gauge(
                out,
                &format!("node_memory_{field}_bytes"),
                &format!("Memory information field {field}_bytes."),
                value as f64,
            )
        };
        memory(&mut out, "Buffers", 0);
        memory(&mut out, "Cached", 0);
        memory(&mut out, "MemAvailable", available);
        memory(&mut out, "MemFree", available);
        memory(&mut out, "MemTotal", total_bytes);
        out
    }
}

/// Rounded to 1/100 (what /proc/stat and /proc/loadavg resolve); monotonic, so counters stay counters.
fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

struct Stat {
    utime: u64,
    stime: u64,
    start_time: u64,
}

/// `/proc/<pid>`, held open so that its stat and status are of the same process even if the pid
/// is reused meanwhile (reads fail once the process is gone).
fn open_process(pid: u32) -> Option<procfs::process::Process> {
    procfs::process::Process::new(i32::try_from(pid).ok()?).ok()
}

/// utime, stime and starttime (fields 14, 15 and 22) of `/proc/<pid>/stat`, in clock ticks;
/// includes every thread.
fn read_stat(process: &procfs::process::Process) -> Option<Stat> {
    let stat = process.stat().ok()?;
    Some(Stat {
        utime: stat.utime,
        stime: stat.stime,
        start_time: stat.starttime,
    })
}

/// `VmRSS` of `/proc/<pid>/status` (in kB there), in bytes; None for a zombie.
fn read_rss_bytes(process: &procfs::process::Process) -> Option<u64> {
    Some(process.status().ok()?.vmrss? * 1024)
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it (what the Prometheus Go client
/// uses): the shortest representation that reads back exactly, in exponent form when the decimal
/// exponent is below -4 or at least 6: `2.147483648e+09`, `1e-05`, `708.07`, `0`.
pub(super) fn go_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let scientific = format!("{value:e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return format!("{value}");
    };
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..6).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_look_like_go() {
        assert_eq!(go_float(0.0), "0");
        assert_eq!(go_float(708.07), "708.07");
        assert_eq!(go_float(0.37), "0.37");
        assert_eq!(go_float(2_147_483_648.0), "2.147483648e+09");
        assert_eq!(go_float(25_276_502_016.0), "2.5276502016e+10");
        assert_eq!(go_float(1_000_000.0), "1e+06");
        assert_eq!(go_float(999_999.0), "999999");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(-1.5), "-1.5");
        assert_eq!(go_float(f64::NAN), "NaN");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
    }

    /// CPU time this thread has used (CLOCK_THREAD_CPUTIME_ID).
    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec, which lives on this stack frame.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0);
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    #[test]
    fn stat_counts_this_process_cpu_in_ticks() {
        let ticks = procfs::ticks_per_second() as f64;
        let me = open_process(std::process::id()).unwrap();
        let before = read_stat(&me).unwrap();
        // Burn 300 ms of this thread's CPU (at most 20 s of wall time on a busy machine).
        let (cpu0, deadline) = (thread_cpu(), Instant::now() + Duration::from_secs(20));
        let mut x = 0u64;
        while thread_cpu() - cpu0 < Duration::from_millis(300) && Instant::now() < deadline {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let burned = (thread_cpu() - cpu0).as_secs_f64();
        assert!(burned >= 0.3, "only {burned} s of CPU in 20 s");
        let after = read_stat(&me).unwrap();
        assert_eq!(after.start_time, before.start_time);
        let counted = ((after.utime + after.stime) - (before.utime + before.stime)) as f64 / ticks;
        // The whole process is counted (other tests run in parallel), at the ticks' resolution.
        assert!(counted >= burned - 3.0 / ticks, "{counted} s < {burned} s");
    }

    #[test]
    fn stat_and_rss_of_a_process_whose_name_has_parentheses() {
        // The command name (field 2 of stat) is the executable's file name: "x) (y z".
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("x) (y z");
        std::os::unix::fs::symlink("/bin/sleep", &exe).unwrap();
        let mut child = std::process::Command::new(&exe).arg("30").spawn().unwrap();
        let me = read_stat(&open_process(std::process::id()).unwrap()).unwrap();
        // Wait (up to 5 s) until the child has exec'd sleep: its name is then the link's, and
        // (a moment later, once the loader has mapped it) its resident memory is sleep's.
        let deadline = Instant::now() + Duration::from_secs(5);
        let process = open_process(child.id()).unwrap();
        while (process.stat().unwrap().comm != "x) (y z"
            || read_rss_bytes(&process).unwrap_or(0) < 64 << 10)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let comm = process.stat().unwrap().comm;
        let stat = read_stat(&process);
        let rss = read_rss_bytes(&process);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(comm, "x) (y z");
        let stat = stat.unwrap();
        assert!(stat.start_time >= me.start_time);
        assert!(stat.utime + stat.stime < 100 * procfs::ticks_per_second());
        // sleep's resident memory, in bytes: more than 64 KiB, less than 64 MiB, whole kB.
        let rss = rss.unwrap();
        assert!((64 << 10..64 << 20).contains(&rss), "{rss}");
        assert_eq!(rss % 1024, 0);
        // Once it is reaped, it has neither.
        assert!(read_stat(&process).is_none());
        assert!(read_rss_bytes(&process).is_none());
        assert!(open_process(child.id()).is_none());
        assert!(open_process(u32::MAX).is_none());
    }

    #[test]
    fn counters_are_monotonic_and_sum_to_wall_time() {
        let shape = VmShape {
            vcpus: 2,
            memory_mib: 2048,
            cpu_budget: Some(0.2),
        };
        let mut meter = Meter::new(shape, Processes::Pid(Some(std::process::id())));
        let start = meter.last_sample;
        // Burn some CPU in this process, which has no budget: reported busy saturates at 100 %.
        let until = Instant::now() + Duration::from_millis(300);
        let mut x = 0u64;
        while Instant::now() < until {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let mut last = (0.0, 0.0, 0.0);
        for i in 1..=5 {
            meter.sample(start + Duration::from_millis(100 * i));
            let now = (meter.user, meter.system, meter.idle);
            assert!(now.0 >= last.0 && now.1 >= last.1 && now.2 >= last.2);
            last = now;
        }
        let total = meter.user + meter.system + meter.idle;
        assert!((total - 0.5 * 2.0).abs() < 1e-6, "{total}");
        let text = meter.render();
        assert!(text.contains("node_cpu_seconds_total{cpu=\"1\",mode=\"user\"} "));
        assert!(text.contains("node_memory_MemTotal_bytes 2.147483648e+09\n"));
    }
}
