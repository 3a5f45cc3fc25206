//! The built-in IDCloudHost API simulator (`idch-autoscaler sim`, and the embedded demo).
//!
//! It serves the documented endpoints and JSON shapes of PROTOCOLS.md section E on loopback, and makes
//! each VM real: a VM owns a loopback address `127.0.0.N` from a configured range and, once booted, runs
//! the sample workload (`{program} calculate --listen {ip}:{service_port} --name {vm}`) bound to it,
//! and a node_exporter-compatible endpoint on `{ip}:{exporter_port}/metrics` that reports the VM's CPU
//! (its processes' CPU time over its vCPUs) and memory. With a CPU budget, each VM's processes get a
//! real capacity: a cgroup CPU quota of that many cores, and the exporter reports CPU time against
//! the budget. Deleting or stopping a VM kills its process and closes its exporter. Faults can be
//! injected (error rate, latency, a clone that never boots, a clone call that hangs, a clone that
//! appears only after the call timed out). Like a real cloud, every call runs to its end even when the
//! caller hangs up. The state keeps a history of every VM ever created, with its creation and
//! deletion times. Stop and start follow PROTOCOLS.md E.2.1 (a start takes its own, shorter delay;
//! a clone call can take `clone_delay` to answer), and every VM is billed for its time running and
//! stopped, readable in the state and at `GET charging/usage` (E.2.6). Nothing is global: any number of simulators can run in one process, each with its
//! own address range.
//!
//! Layout:
//! - this file: the public API ([`SimArgs`], [`SimOptions`], [`Faults`], [`SimHandle`], [`SimState`],
//!   [`run`]) and [`Shared`], the operations that combine the world with processes and timers;
//! - `world`: the VMs and floating IPs, address allocation and the JSON objects the API returns;
//! - `api`: the HTTP layer (routing, `apikey`, parameters, error bodies, faults, `/_sim/*`);
//! - `process`: starting and killing workload processes;
//! - `exporter`: each running VM's node_exporter endpoint;
//! - `cgroup`: the CPU quota per VM (cgroup v1 or v2);
//! - `billing`: each VM's meter of running and stopped time, and the Charging rows.

mod api;
mod billing;
mod cgroup;
mod exporter;
mod process;
mod world;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::api::ApiError;
use self::world::{Teardown, VmRecord, VmStatus, World};

/// Command-line options of `idch-autoscaler sim`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct SimArgs {
    /// Address the simulated API listens on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:4010")]
    pub listen: SocketAddr,
    /// Environment variable that holds the API key clients must send in the `apikey` header.
    /// When it is unset or empty, a random key is generated and printed.
    #[arg(long, default_value = "IDCLOUDHOST_API_KEY")]
    pub api_key_env: String,
    /// Location slug served under `/v1/{location}/...` (also the default location, `/v1/...`).
    #[arg(long, default_value = "jkt01")]
    pub location: String,
    /// Billing account that owns every simulated resource.
    #[arg(long, default_value_t = 1_200_211_740)]
    pub billing_account_id: u64,
    /// Name of the seed VM, created running at start.
    #[arg(long, default_value = "calculate-service")]
    pub seed_name: String,
    /// Time from a clone call's answer until the clone is running and its workload starts.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub boot_delay: Duration,
    /// Time from a start call until the stopped VM is running again (its disk is there already, so
    /// it boots faster than a clone). Unset: a fifth of --boot-delay.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub start_delay: Option<Duration>,
    /// How long the clone call itself takes before it answers: the VM is listed (not running) from
    /// the start of the call, and its boot (--boot-delay) begins when the call answers (0s: at once).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub clone_delay: Duration,
    /// Loopback addresses handed to VMs, `FIRST-LAST` (the seed gets the first free one).
    #[arg(long, default_value = "127.0.0.10-127.0.0.250")]
    pub addresses: Ipv4Range,
    /// Port the workload listens on, on each VM's address.
    #[arg(long, default_value_t = 3000)]
    pub service_port: u16,
    /// Port of each VM's node_exporter-compatible endpoint (`/metrics`), on the VM's address.
    #[arg(long, default_value_t = 9100)]
    pub exporter_port: u16,
    /// CPU capacity of each VM, in cores (e.g. 0.25): a cgroup CPU quota on its processes where the
    /// machine allows it, and the budget its node_exporter reports CPU time against. Unset: unlimited.
    #[arg(long, value_parser = parse_cpu_budget)]
    pub cpu_budget: Option<f64>,
    /// Fault: probability (0.0..=1.0) that an API call answers 500, with no effect on state.
    #[arg(long, default_value_t = 0.0, value_parser = parse_error_rate)]
    pub error_rate: f64,
    /// Fault: delay added to every API call.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub latency: Duration,
    /// Fault: clones never reach `running` and never start their workload.
    #[arg(long)]
    pub clone_never_boots: bool,
    /// Fault: a clone call creates the VM but holds its answer this long (0s: off).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub clone_hang: Duration,
    /// Fault: a clone call waits this long before the VM exists, then creates it and answers, whether
    /// or not the caller is still there (0s: off). Longer than the client's timeout, the clone
    /// appears only after the call timed out.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub clone_late: Duration,
}

impl Default for SimArgs {
    /// The same values as the command line's defaults.
    fn default() -> Self {
        SimArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 4010)),
            api_key_env: "IDCLOUDHOST_API_KEY".into(),
            location: "jkt01".into(),
            billing_account_id: 1_200_211_740,
            seed_name: "calculate-service".into(),
            boot_delay: Duration::from_secs(3),
            start_delay: None,
            clone_delay: Duration::ZERO,
            addresses: Ipv4Range {
                first: Ipv4Addr::new(127, 0, 0, 10),
                last: Ipv4Addr::new(127, 0, 0, 250),
            },
            service_port: 3000,
            exporter_port: 9100,
            cpu_budget: None,
            error_rate: 0.0,
            latency: Duration::ZERO,
            clone_never_boots: false,
            clone_hang: Duration::ZERO,
            clone_late: Duration::ZERO,
        }
    }
}

impl SimArgs {
    /// Resolves the API key (from the environment, else a random one) and checks every option.
    pub fn into_options(self, workload_program: PathBuf) -> anyhow::Result<SimOptions> {
        let api_key = match api_key_from_env(&self.api_key_env) {
            Some(key) => key,
            None => random_api_key(),
        };
        let opts = SimOptions {
            listen: self.listen,
            api_key,
            location: self.location,
            billing_account_id: self.billing_account_id,
            seed_name: self.seed_name,
            boot_delay: self.boot_delay,
            start_delay: self.start_delay,
            clone_delay: self.clone_delay,
            addresses: self.addresses,
            service_port: self.service_port,
            exporter_port: self.exporter_port,
            cpu_budget: self.cpu_budget,
            workload_program,
            faults: Faults {
                error_rate: self.error_rate,
                latency: self.latency,
                clone_never_boots: self.clone_never_boots,
                clone_hang: self.clone_hang,
                clone_late: self.clone_late,
                fail_next: 0,
                start_fails: false,
                start_never_boots: false,
            },
        };
        opts.validate()?;
        Ok(opts)
    }
}

fn api_key_from_env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|key| !key.trim().is_empty())
}

fn random_api_key() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

fn parse_error_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} is outside 0.0..=1.0"))
    }
}

/// The smallest budget a cgroup quota can express (1 ms per 100 ms period).
const MIN_CPU_BUDGET: f64 = 0.01;

fn parse_cpu_budget(text: &str) -> Result<f64, String> {
    let cores: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of cores"))?;
    check_cpu_budget(cores)?;
    Ok(cores)
}

fn check_cpu_budget(cores: f64) -> Result<(), String> {
    if cores.is_finite() && (MIN_CPU_BUDGET..=1024.0).contains(&cores) {
        Ok(())
    } else {
        Err(format!(
            "a CPU budget of {cores} cores is outside {MIN_CPU_BUDGET}..=1024"
        ))
    }
}

/// An inclusive range of loopback IPv4 addresses, written `FIRST-LAST` (`127.0.0.10-127.0.0.250`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Range {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl Ipv4Range {
    /// A range `first..=last`; both must be in 127.0.0.0/8 and `first <= last`.
    pub fn new(first: Ipv4Addr, last: Ipv4Addr) -> Result<Self, String> {
        if !first.is_loopback() || !last.is_loopback() {
            return Err(format!(
                "{first}-{last}: simulated VMs live on loopback, both ends must be in 127.0.0.0/8"
            ));
        }
        if u32::from(first) > u32::from(last) {
            return Err(format!(
                "{first}-{last}: the first address is above the last"
            ));
        }
        Ok(Ipv4Range { first, last })
    }

    /// Every address of the range, in order.
    pub fn iter(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.first)..=u32::from(self.last)).map(Ipv4Addr::from)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(ip))
    }
}

impl From<(Ipv4Addr, Ipv4Addr)> for Ipv4Range {
    /// Unchecked: [`SimHandle::start`] validates the range.
    fn from((first, last): (Ipv4Addr, Ipv4Addr)) -> Self {
        Ipv4Range { first, last }
    }
}

impl FromStr for Ipv4Range {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (first, last) = text
            .split_once('-')
            .ok_or_else(|| format!("`{text}`: expected FIRST-LAST, e.g. 127.0.0.10-127.0.0.250"))?;
        let parse = |part: &str| {
            part.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("`{}` is not an IPv4 address", part.trim()))
        };
        Ipv4Range::new(parse(first)?, parse(last)?)
    }
}

impl fmt::Display for Ipv4Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl Serialize for Ipv4Range {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Range {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything a simulator needs to start. Build it with [`SimArgs::into_options`] or by hand.
#[derive(Clone)]
pub struct SimOptions {
    pub listen: SocketAddr,
    pub api_key: String,
    pub location: String,
    pub billing_account_id: u64,
    pub seed_name: String,
    /// From a clone call's answer until the clone runs.
    pub boot_delay: Duration,
    /// From a start call until the VM runs again; None: `boot_delay / 5`.
    pub start_delay: Option<Duration>,
    /// How long a clone call takes before it answers (the VM exists from the call's start).
    pub clone_delay: Duration,
    pub addresses: Ipv4Range,
    pub service_port: u16,
    /// Port of each VM's node_exporter endpoint (9100 like the real one); must differ from the service's.
    pub exporter_port: u16,
    /// CPU capacity of each VM in cores, enforced with a cgroup CPU quota where the machine allows it
    /// and used as the VM's vCPUs by its node_exporter. None: unlimited (one core per vCPU).
    pub cpu_budget: Option<f64>,
    /// The binary whose `calculate` subcommand each VM runs (normally this very executable).
    pub workload_program: PathBuf,
    pub faults: Faults,
}

impl fmt::Debug for SimOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimOptions")
            .field("listen", &self.listen)
            .field("api_key", &"<redacted>")
            .field("location", &self.location)
            .field("billing_account_id", &self.billing_account_id)
            .field("seed_name", &self.seed_name)
            .field("boot_delay", &self.boot_delay)
            .field("start_delay", &self.start_delay)
            .field("clone_delay", &self.clone_delay)
            .field("addresses", &self.addresses)
            .field("service_port", &self.service_port)
            .field("exporter_port", &self.exporter_port)
            .field("cpu_budget", &self.cpu_budget)
            .field("workload_program", &self.workload_program)
            .field("faults", &self.faults)
            .finish()
    }
}

impl SimOptions {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.api_key.is_empty(), "the API key is empty");
        anyhow::ensure!(
            !self.location.is_empty()
                && self
                    .location
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "location `{}` is not a slug (letters, digits, `-`, `_`)",
            self.location
        );
        anyhow::ensure!(
            !self.location.eq_ignore_ascii_case("user-resource")
                && !self.location.eq_ignore_ascii_case("network"),
            "location `{}` would be confused with a resource path",
            self.location
        );
        anyhow::ensure!(!self.seed_name.trim().is_empty(), "the seed name is empty");
        anyhow::ensure!(self.service_port != 0, "the service port must not be 0");
        anyhow::ensure!(self.exporter_port != 0, "the exporter port must not be 0");
        anyhow::ensure!(
            self.exporter_port != self.service_port,
            "the exporter port must differ from the service port ({})",
            self.service_port
        );
        if let Some(cores) = self.cpu_budget {
            check_cpu_budget(cores).map_err(anyhow::Error::msg)?;
        }
        Ipv4Range::new(self.addresses.first, self.addresses.last).map_err(anyhow::Error::msg)?;
        self.faults.validate().map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

/// Injected faults. Settable at start, with [`SimHandle::set_faults`] and with `POST /_sim/faults`
/// (a JSON object; missing fields take their default, i.e. off). Durations serialize as humantime
/// strings (`"250ms"`) and also deserialize from a number of milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability (0.0..=1.0) that an API call answers 500 with the error body; state is untouched.
    pub error_rate: f64,
    /// Added to every API call (not to `/_sim/*`).
    #[serde(with = "duration_text")]
    pub latency: Duration,
    /// Clones made while this is set stay in their not-running status and start no process.
    pub clone_never_boots: bool,
    /// A clone call creates the VM, then holds its answer this long (zero: off).
    #[serde(with = "duration_text")]
    pub clone_hang: Duration,
    /// A clone call waits this long, then creates the VM and answers (zero: off). The VM appears
    /// even if the caller gave up meanwhile, as a real cloud finishes a clone whose client hung up.
    #[serde(with = "duration_text")]
    pub clone_late: Duration,
    /// The next this-many authenticated API calls answer 500 (counted down, whatever `error_rate`).
    pub fail_next: u32,
    /// A start call answers 400 (the cloud cannot start the VM now) and leaves it stopped.
    pub start_fails: bool,
    /// A started VM stays `starting` and starts no process (it never passes a health gate).
    pub start_never_boots: bool,
}

impl Faults {
    fn validate(&self) -> Result<(), String> {
        if (0.0..=1.0).contains(&self.error_rate) {
            Ok(())
        } else {
            Err(format!(
                "error_rate {} is outside 0.0..=1.0",
                self.error_rate
            ))
        }
    }
}

/// `Duration` as a humantime string; reads a string or a number of milliseconds.
mod duration_text {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"250ms\" or \"2s\", or a number of milliseconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                humantime::parse_duration(v.trim()).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_millis(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_millis)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                if v.is_finite() && v >= 0.0 {
                    Ok(Duration::from_secs_f64(v / 1000.0))
                } else {
                    Err(E::custom(
                        "a duration must be a finite, non-negative number",
                    ))
                }
            }
        }
        d.deserialize_any(DurationVisitor)
    }
}

/// What the simulator holds, as `GET /_sim/state` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimState {
    /// Base URL of the API (the client appends `/v1/...`).
    pub url: String,
    pub location: String,
    pub billing_account_id: u64,
    pub service_port: u16,
    /// Port of every VM's node_exporter endpoint.
    #[serde(default)]
    pub exporter_port: u16,
    /// CPU capacity of each VM in cores (None: unlimited).
    #[serde(default)]
    pub cpu_budget: Option<f64>,
    /// This simulator's cgroup directory, when the budget is enforced with cgroups.
    #[serde(default)]
    pub cgroup: Option<String>,
    pub addresses: Ipv4Range,
    /// From a clone call's answer until the clone runs.
    #[serde(default, with = "duration_text")]
    pub boot_delay: Duration,
    /// From a start call until the VM runs again.
    #[serde(default, with = "duration_text")]
    pub start_delay: Duration,
    /// How long a clone call takes before it answers.
    #[serde(default, with = "duration_text")]
    pub clone_delay: Duration,
    /// Every VM, oldest first.
    pub vms: Vec<SimVmState>,
    /// Every floating IP, assigned or not.
    pub floating_ips: Vec<SimFloatingIpState>,
    pub faults: Faults,
    /// Authenticated API calls per operation (`vm_list`, `vm_get`, `vm_clone`, `vm_delete`, `vm_stop`,
    /// `vm_start`, `vm_modify`, `ip_list`, `ip_delete`, `ip_unassign`, `charging_usage`), including those a fault failed.
    pub calls: BTreeMap<String, u64>,
    /// Calls refused for a missing or wrong `apikey`.
    pub unauthorized: u64,
    /// Calls answered 500 by the `error_rate` or `fail_next` fault.
    pub injected_errors: u64,
    /// Every VM ever created (the seed too), in creation order, deleted ones included.
    #[serde(default)]
    pub history: Vec<SimVmHistory>,
}

/// One VM in [`SimState::history`]: when it was created and, once it is, when it was deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimVmHistory {
    pub uuid: String,
    /// The name it was created with (a later rename does not change it).
    pub name: String,
    /// The loopback address it owned.
    pub address: Ipv4Addr,
    pub seed: bool,
    /// RFC 3339, UTC, in milliseconds: the moment the VM existed (listed from then on).
    pub created_at: String,
    /// RFC 3339, UTC, in milliseconds: the moment it left the list (its processes are killed just
    /// after). None while it exists.
    pub deleted_at: Option<String>,
    /// Its whole life so far (until its deletion) billed as running, in seconds (see
    /// [`SimVmState::billed_running_seconds`]).
    #[serde(default)]
    pub billed_running_seconds: f64,
    /// Its whole life so far billed as stopped, in seconds.
    #[serde(default)]
    pub billed_stopped_seconds: f64,
}

impl SimVmHistory {
    /// [`SimVmHistory::created_at`] as a time.
    pub fn created(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        parse_history_time(&self.created_at)
    }

    /// [`SimVmHistory::deleted_at`] as a time.
    pub fn deleted(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.deleted_at.as_deref().and_then(parse_history_time)
    }

    /// Whether it existed at `t` (created at or before, not deleted before).
    pub fn existed_at(&self, t: chrono::DateTime<chrono::Utc>) -> bool {
        self.created().is_some_and(|c| c <= t) && self.deleted().is_none_or(|d| d >= t)
    }
}

fn parse_history_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// One VM in [`SimState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimVmState {
    pub uuid: String,
    pub name: String,
    pub status: String,
    /// What the API shows: empty until the VM first booted.
    pub private_ipv4: String,
    /// The loopback address the VM owns from its creation on.
    pub address: Ipv4Addr,
    pub seed: bool,
    /// The workload's process id while it runs.
    pub pid: Option<u32>,
    /// How the last workload process of this VM ended, when it ended by itself.
    pub last_exit: Option<String>,
    /// `ip:port` of its node_exporter endpoint while the VM runs.
    #[serde(default)]
    pub exporter: Option<String>,
    /// The VM's cgroup directory (with a CPU budget that cgroups can enforce).
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Whether the running workload is held to the CPU budget by a cgroup quota (false without a
    /// budget, while not running, or where no cgroup could be written: then only the reported CPU
    /// is scaled to the budget).
    #[serde(default)]
    pub cpu_quota_enforced: bool,
    /// The floating IP assigned to it, if any.
    pub public_ip: Option<String>,
    pub created_at: String,
    /// What its app reports at `GET /version` (`POST /_sim/vms/{uuid}/version` deploys one).
    #[serde(default)]
    pub version: String,
    /// Seconds since its creation billed as running: every status but `stopped` (a VM being
    /// created or started is billed as running, as IDCloudHost bills it; PROTOCOLS.md E.2.6).
    #[serde(default)]
    pub billed_running_seconds: f64,
    /// Seconds since its creation billed as stopped (status `stopped`: the disk alone).
    #[serde(default)]
    pub billed_stopped_seconds: f64,
}

/// One floating IP in [`SimState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimFloatingIpState {
    pub address: String,
    pub assigned_to: Option<String>,
}

/// What the seed's app reports before any deploy.
pub const INITIAL_VERSION: &str = "1";

/// The immutable settings of one simulator.
struct Config {
    api_key: String,
    location: String,
    billing_account_id: u64,
    seed_name: String,
    boot_delay: Duration,
    start_delay: Duration,
    clone_delay: Duration,
    addresses: Ipv4Range,
    service_port: u16,
    exporter_port: u16,
    cpu_budget: Option<f64>,
    /// The directory of `Shared::cgroup`, for the state.
    cgroup_dir: Option<String>,
    workload_program: PathBuf,
    url: String,
    /// Each VM's "disk" as far as its app's version goes: `{uuid}.version`, which the workload
    /// answers at `GET /version`. A clone copies its source's; a deploy rewrites it.
    versions_dir: PathBuf,
}

/// One simulator's state, shared by the HTTP handlers, the boot timers and the process monitor.
///
/// All mutable state is in `world`, behind one `std::sync::Mutex`: every operation is a short critical
/// section that is never held across an `.await` (processes to kill are taken out under the lock and
/// killed after it is released). Spawning a workload happens under the lock, so a VM deleted meanwhile
/// can never be left with a process.
struct Shared {
    config: Config,
    world: Mutex<World>,
    /// This simulator's cgroup, when it has a CPU budget and the machine lets it write cgroups.
    cgroup: Option<cgroup::SimCgroup>,
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn faults(&self) -> Faults {
        self.world().faults.clone()
    }

    /// Creates the seed VM, running, and starts its workload at once.
    fn create_seed(&self) -> anyhow::Result<(String, Ipv4Addr)> {
        let cfg = &self.config;
        let mut world = self.world();
        let ip = world
            .allocate_address(cfg.addresses, &[cfg.service_port, cfg.exporter_port])
            .with_context(|| {
                format!(
                    "no address of {} has ports {} and {} free for the seed VM",
                    cfg.addresses, cfg.service_port, cfg.exporter_port
                )
            })?;
        let uuid = world.create_vm(&cfg.seed_name, ip, VmStatus::Running, true, false);
        world.assign_new_floating_ip(&uuid);
        let vm = world.vm_mut(&uuid).context("the seed VM vanished")?;
        self.write_version(vm, INITIAL_VERSION)
            .context("cannot write the seed VM's version file")?;
        vm.address_visible = true;
        self.start_vm_processes(vm);
        tracing::info!(vm = %vm.name, %uuid, %ip, "simulated seed VM is running");
        Ok((uuid, ip))
    }

    /// `POST user-resource/vm/clone`: the new VM, not running yet. It is listed (status `creating`)
    /// from the start of the call, as a cloud records a VM before it copies its disk; the call answers
    /// after `clone_delay`, and the boot (`boot_delay`) begins then.
    async fn clone_vm(
        self: &Arc<Self>,
        source: &str,
        name: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let cfg = &self.config;
        let (json, uuid, generation, never_boots) = {
            let mut world = self.world();
            if world.closed {
                return Err(ApiError::internal("The simulator is shutting down"));
            }
            if world.vm(source).is_none() {
                return Err(ApiError::no_such_vm(source));
            }
            let ip = world
                .allocate_address(cfg.addresses, &[cfg.service_port, cfg.exporter_port])
                .ok_or_else(|| {
                    ApiError::internal(format!(
                        "Could not create the virtual machine: no free private address left in {}",
                        cfg.addresses
                    ))
                })?;
            let never_boots = world.faults.clone_never_boots;
            let version = world
                .vm(source)
                .map(|vm| vm.version.clone())
                .unwrap_or_default();
            let uuid = world.create_vm(name, ip, VmStatus::Creating, false, never_boots);
            if let Some(vm) = world.vm_mut(&uuid) {
                // The clone copies the source's disk, the app's version with it.
                if let Err(e) = self.write_version(vm, &version) {
                    tracing::warn!(vm = name, error = %e, "cannot write the clone's version file");
                }
            }
            world.assign_new_floating_ip(&uuid);
            let generation = world.vm(&uuid).map(|vm| vm.boot_generation).unwrap_or(0);
            let json = world.vm_json(&uuid, cfg).unwrap_or_default();
            tracing::info!(vm = name, %uuid, %ip, never_boots, "simulated clone created");
            (json, uuid, generation, never_boots)
        };
        if !self.config.clone_delay.is_zero() {
            tokio::time::sleep(self.config.clone_delay).await;
        }
        // Deleted meanwhile: the answer is still the VM as the call made it.
        let json = self.world().vm_json(&uuid, cfg).unwrap_or(json);
        if !never_boots {
            self.schedule_boot(uuid, generation, self.config.boot_delay);
        }
        Ok(json)
    }

    fn version_file(&self, uuid: &str) -> PathBuf {
        self.config.versions_dir.join(format!("{uuid}.version"))
    }

    /// Sets what the VM's app reports at `GET /version` (a running app sees it at once).
    fn write_version(&self, vm: &mut VmRecord, version: &str) -> std::io::Result<()> {
        std::fs::write(self.version_file(&vm.uuid), version)?;
        vm.version = version.to_string();
        Ok(())
    }

    /// `POST /_sim/vms/{uuid}/version`: a deploy of `version` to the VM.
    fn deploy(&self, uuid: &str, version: &str) -> Result<(), ApiError> {
        let mut world = self.world();
        let vm = world
            .vm_mut(uuid)
            .ok_or_else(|| ApiError::no_such_vm(uuid))?;
        self.write_version(vm, version)
            .map_err(|e| ApiError::internal(format!("cannot write the version file: {e}")))?;
        tracing::info!(vm = %vm.name, uuid, version, "simulated deploy");
        Ok(())
    }

    /// After `delay`, [`Shared::finish_boot`] the VM unless it changed meanwhile.
    fn schedule_boot(self: &Arc<Self>, uuid: String, generation: u64, delay: Duration) {
        let sim = Arc::clone(self);
        // The workload is spawned from this async task (a runtime worker thread), never from a
        // blocking-pool thread: PR_SET_PDEATHSIG fires when the *thread* that forked exits.
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            sim.finish_boot(&uuid, generation);
        });
    }

    fn finish_boot(&self, uuid: &str, generation: u64) {
        let mut world = self.world();
        if world.closed {
            return;
        }
        let Some(vm) = world.vm_mut(uuid) else {
            return; // deleted meanwhile
        };
        if vm.boot_generation != generation || !vm.status.is_booting() {
            return; // stopped (and maybe started again) meanwhile
        }
        vm.set_status(VmStatus::Running);
        vm.address_visible = true;
        vm.touch();
        self.start_vm_processes(vm);
        tracing::info!(vm = %vm.name, uuid, ip = %vm.address, "simulated VM is running");
    }

    /// What a booting VM starts (called under the world's lock, from inside the runtime): the
    /// workload, moved into the VM's cgroup right after the spawn when there is a budget, and the
    /// node_exporter endpoint. Failures are logged; the VM then runs without that part, like a VM
    /// whose service failed to start.
    fn start_vm_processes(&self, vm: &mut VmRecord) {
        let cfg = &self.config;
        let old = vm.take_running();
        if let Some(old) = old.process {
            process::kill_now(old);
        }
        drop(old.exporter);
        vm.process = process::spawn_workload(
            &cfg.workload_program,
            vm.address,
            cfg.service_port,
            &vm.name,
            &self.version_file(&vm.uuid),
        );
        let pid = vm.process.as_ref().and_then(tokio::process::Child::id);

        if let (Some(cores), Some(sim_cgroup)) = (cfg.cpu_budget, &self.cgroup) {
            if vm.cgroup.is_none() {
                match sim_cgroup.create_vm(vm.id, cores) {
                    Ok(cgroup) => vm.cgroup = Some(cgroup),
                    Err(err) => tracing::warn!(
                        vm = %vm.name, %err,
                        "cannot create the VM's cgroup; its CPU budget is only applied to the reported CPU"
                    ),
                }
            }
            if let (Some(cgroup), Some(pid)) = (&vm.cgroup, pid) {
                match cgroup.add(pid) {
                    Ok(()) => vm.quota_enforced = true,
                    Err(err) => tracing::warn!(
                        vm = %vm.name, pid, %err,
                        "cannot move the workload into the VM's cgroup; its CPU budget is only applied to the reported CPU"
                    ),
                }
            }
        }

        let processes = match (&vm.cgroup, vm.quota_enforced) {
            (Some(cgroup), true) => exporter::Processes::Cgroup {
                procs_file: cgroup.procs_file(),
                pid,
            },
            _ => exporter::Processes::Pid(pid),
        };
        let shape = exporter::VmShape {
            vcpus: world::VCPUS,
            memory_mib: world::MEMORY_MIB,
            cpu_budget: cfg.cpu_budget,
        };
        let addr = SocketAddr::from((vm.address, cfg.exporter_port));
        match exporter::start(addr, shape, processes, &vm.name) {
            Ok(exporter) => vm.exporter = Some(exporter),
            Err(err) => tracing::warn!(
                vm = %vm.name, %addr, %err,
                "cannot start the simulated VM's node_exporter"
            ),
        }
    }

    /// `DELETE user-resource/vm`: removes the VM and its floating IPs, then stops its exporter, kills
    /// its workload and removes its cgroup.
    async fn delete_vm(&self, uuid: &str) -> Result<(), ApiError> {
        let mut vm = {
            let mut world = self.world();
            world
                .remove_vm(uuid)
                .ok_or_else(|| ApiError::no_such_vm(uuid))?
        };
        tracing::info!(vm = %vm.name, uuid, ip = %vm.address, "simulated VM deleted");
        let _ = std::fs::remove_file(self.version_file(uuid));
        teardown(vm.take_all()).await;
        Ok(())
    }

    /// `POST user-resource/vm/stop`: status `stopped`, workload killed.
    async fn stop_vm(&self, uuid: &str) -> Result<serde_json::Value, ApiError> {
        let (json, running) = {
            let mut world = self.world();
            let vm = world
                .vm_mut(uuid)
                .ok_or_else(|| ApiError::no_such_vm(uuid))?;
            if vm.status != VmStatus::Stopped {
                vm.set_status(VmStatus::Stopped);
                vm.boot_generation += 1;
                vm.touch();
                tracing::info!(vm = %vm.name, uuid, "simulated VM stopped");
            }
            let running = vm.take_running();
            (
                world.vm_json(uuid, &self.config).unwrap_or_default(),
                running,
            )
        };
        teardown(running).await;
        Ok(json)
    }

    /// `POST user-resource/vm/start`: a stopped VM boots again (`starting`, then `running`).
    fn start_vm(self: &Arc<Self>, uuid: &str) -> Result<serde_json::Value, ApiError> {
        let (json, boot) = {
            let mut world = self.world();
            let never_boots = world.faults.start_never_boots;
            let vm = world
                .vm_mut(uuid)
                .ok_or_else(|| ApiError::no_such_vm(uuid))?;
            let mut boot = None;
            if vm.status == VmStatus::Stopped {
                vm.set_status(VmStatus::Starting);
                vm.boot_generation += 1;
                vm.touch();
                if !vm.never_boots && !never_boots {
                    boot = Some(vm.boot_generation);
                }
                tracing::info!(vm = %vm.name, uuid, "simulated VM starting");
            }
            (world.vm_json(uuid, &self.config).unwrap_or_default(), boot)
        };
        if let Some(generation) = boot {
            self.schedule_boot(uuid.to_string(), generation, self.config.start_delay);
        }
        Ok(json)
    }

    /// `PATCH user-resource/vm`: renames the VM (the running workload keeps its old name until restarted).
    fn rename_vm(&self, uuid: &str, name: &str) -> Result<serde_json::Value, ApiError> {
        let mut world = self.world();
        let vm = world
            .vm_mut(uuid)
            .ok_or_else(|| ApiError::no_such_vm(uuid))?;
        vm.name = name.to_string();
        vm.touch();
        Ok(world.vm_json(uuid, &self.config).unwrap_or_default())
    }

    fn state(&self) -> SimState {
        let cfg = &self.config;
        let mut world = self.world();
        world.reap_exited();
        world.state(cfg)
    }

    /// Stops every timer from acting and takes every VM's processes, exporter and cgroup out.
    fn close(&self) -> Vec<Teardown> {
        let mut world = self.world();
        world.closed = true;
        world.take_everything()
    }
}

/// Stops what a VM ran, in order: the exporter (no more scrapes), the workload (killed and reaped),
/// then its cgroup, if it goes too (rmdir, retried while the kernel still counts the process).
async fn teardown(vm: Teardown) {
    if let Some(exporter) = vm.exporter {
        exporter.stop().await;
    }
    if let Some(child) = vm.process {
        process::kill(child, &vm.name).await;
    }
    if let Some(cgroup) = vm.cgroup {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            match cgroup.try_remove() {
                Ok(()) => break,
                Err(err) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(vm = %vm.name, dir = %cgroup.dir().display(), %err, "cannot remove the VM's cgroup");
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }
}

/// The same without waiting for anything but the cgroups (for drop): signals now, then removes the
/// cgroups as soon as the kernel lets it (a SIGKILLed process is gone within milliseconds).
fn teardown_now(vms: Vec<Teardown>) {
    let mut cgroups = Vec::new();
    for vm in vms {
        drop(vm.exporter);
        if let Some(child) = vm.process {
            process::kill_now(child);
        }
        cgroups.extend(vm.cgroup);
    }
    for cgroup in cgroups {
        cgroup.remove(Duration::from_secs(1));
    }
}

/// A running simulator. Dropping it stops serving and kills every workload it started (best effort,
/// without waiting); [`SimHandle::shutdown`] does the same and waits for the processes to exit.
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    seed_uuid: String,
    seed_ip: Ipv4Addr,
    stop_serving: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    monitor: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// Binds `opts.listen` (port 0 allowed), creates the seed VM (running, its workload started at once)
    /// and serves the API until [`SimHandle::shutdown`] or drop.
    pub async fn start(opts: SimOptions) -> anyhow::Result<SimHandle> {
        opts.validate()?;
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("binding the simulator's API on {}", opts.listen))?;
        let addr = listener.local_addr()?;
        let url_host = if addr.ip().is_unspecified() {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        let sim_cgroup = match opts.cpu_budget {
            None => None,
            Some(cores) => match cgroup::SimCgroup::create() {
                Ok(cgroup) => {
                    tracing::info!(
                        cores,
                        dir = %cgroup.dir().display(),
                        version = ?cgroup.version(),
                        "CPU budget per simulated VM enforced with a cgroup CPU quota"
                    );
                    Some(cgroup)
                }
                Err(why) => {
                    tracing::warn!(
                        cores,
                        "cannot use cgroups ({why}): the CPU budget per simulated VM is only applied \
                         to the reported CPU, not enforced"
                    );
                    None
                }
            },
        };
        let versions_dir = std::env::temp_dir().join(format!(
            "idch-sim-{}-{}-{}",
            std::process::id(),
            addr.port(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&versions_dir)
            .with_context(|| format!("creating {}", versions_dir.display()))?;
        let shared = Arc::new(Shared {
            config: Config {
                api_key: opts.api_key,
                location: opts.location,
                billing_account_id: opts.billing_account_id,
                seed_name: opts.seed_name,
                boot_delay: opts.boot_delay,
                start_delay: opts.start_delay.unwrap_or(opts.boot_delay / 5),
                clone_delay: opts.clone_delay,
                addresses: opts.addresses,
                service_port: opts.service_port,
                exporter_port: opts.exporter_port,
                cpu_budget: opts.cpu_budget,
                cgroup_dir: sim_cgroup.as_ref().map(|c| c.dir().display().to_string()),
                workload_program: opts.workload_program,
                url: format!("http://{url_host}"),
                versions_dir: versions_dir.clone(),
            },
            world: Mutex::new(World::new(opts.faults)),
            cgroup: sim_cgroup,
        });
        let (seed_uuid, seed_ip) = match shared.create_seed() {
            Ok(seed) => seed,
            Err(err) => {
                if let Some(cgroup) = &shared.cgroup {
                    cgroup.remove(Duration::from_secs(1));
                }
                return Err(err);
            }
        };
        let monitor = tokio::spawn(process::monitor(Arc::clone(&shared)));
        let (stop_serving, stopped) = oneshot::channel::<()>();
        let app = api::router(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                // An error only means the handle is gone, which is a stop request too.
                stopped.await.ok();
            });
            if let Err(err) = serve.await {
                tracing::error!(%err, "the simulated IDCloudHost API stopped serving");
            }
        });
        tracing::info!(url = %shared.config.url, "simulated IDCloudHost API listening");
        Ok(SimHandle {
            shared,
            addr,
            seed_uuid,
            seed_ip,
            stop_serving: Some(stop_serving),
            server: Some(server),
            monitor: Some(monitor),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (the client appends `/v1/...`).
    pub fn url(&self) -> String {
        self.shared.config.url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn api_key(&self) -> &str {
        &self.shared.config.api_key
    }

    pub fn location(&self) -> &str {
        &self.shared.config.location
    }

    pub fn billing_account_id(&self) -> u64 {
        self.shared.config.billing_account_id
    }

    pub fn service_port(&self) -> u16 {
        self.shared.config.service_port
    }

    /// Port of every VM's node_exporter endpoint.
    pub fn exporter_port(&self) -> u16 {
        self.shared.config.exporter_port
    }

    /// CPU capacity of each VM in cores (None: unlimited).
    pub fn cpu_budget(&self) -> Option<f64> {
        self.shared.config.cpu_budget
    }

    pub fn seed_name(&self) -> &str {
        &self.shared.config.seed_name
    }

    pub fn seed_uuid(&self) -> String {
        self.seed_uuid.clone()
    }

    pub fn seed_ip(&self) -> Ipv4Addr {
        self.seed_ip
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replaces the faults. An `error_rate` outside 0.0..=1.0 is clamped (NaN counts as 0).
    pub fn set_faults(&self, mut faults: Faults) {
        if faults.validate().is_err() {
            tracing::warn!(
                error_rate = faults.error_rate,
                "error_rate clamped to 0.0..=1.0"
            );
            faults.error_rate = if faults.error_rate.is_nan() {
                0.0
            } else {
                faults.error_rate.clamp(0.0, 1.0)
            };
        }
        self.shared.world().faults = faults;
    }

    /// Whether a clone may get the address of a deleted VM (default: yes, the first free address,
    /// which is what a clone after a delete gets). With `false`, clones get addresses no VM of this
    /// simulator ever had, as long as the range has one; so a request that a stale route sends to a
    /// deleted VM is refused instead of reaching the VM that took its address.
    pub fn set_reuse_addresses(&self, reuse: bool) {
        self.shared.world().reuse_addresses = reuse;
    }

    /// The same as `GET /_sim/state`.
    pub fn state(&self) -> SimState {
        self.shared.state()
    }

    /// Stops serving, stops every VM's exporter, kills every VM process and waits for them to exit,
    /// then removes the cgroups.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop_serving.take() {
            stop.send(()).ok();
        }
        if let Some(mut server) = self.server.take() {
            // In-flight calls (a hanging clone) get a moment, then the server is aborted.
            if tokio::time::timeout(Duration::from_secs(2), &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
        if let Some(monitor) = self.monitor.take() {
            monitor.abort();
        }
        futures::future::join_all(self.shared.close().into_iter().map(teardown)).await;
        if let Some(cgroup) = &self.shared.cgroup {
            cgroup.remove(Duration::from_secs(1));
        }
        let _ = std::fs::remove_dir_all(&self.shared.config.versions_dir);
        tracing::info!(url = %self.shared.config.url, "simulated IDCloudHost API stopped");
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_serving.take() {
            stop.send(()).ok();
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
        if let Some(monitor) = self.monitor.take() {
            monitor.abort();
        }
        teardown_now(self.shared.close());
        if let Some(cgroup) = &self.shared.cgroup {
            cgroup.remove(Duration::from_secs(1));
        }
        let _ = std::fs::remove_dir_all(&self.shared.config.versions_dir);
    }
}

/// `idch-autoscaler sim`: starts a simulator with this executable as the workload program, prints how
/// to reach it, and runs until Ctrl-C or SIGTERM; then stops every process it started.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let key_var = args.api_key_env.clone();
    let key_from_env = api_key_from_env(&key_var).is_some();
    let program = std::env::current_exe().context("locating this executable")?;
    let opts = args.into_options(program)?;
    let sim = SimHandle::start(opts).await?;

    println!("IDCloudHost API simulator listening on {}", sim.url());
    println!(
        "  API base: {url}/v1/{loc}/  (also {url}/v1/ for the default location {loc}); state: {url}/_sim/state",
        url = sim.url(),
        loc = sim.location(),
    );
    if key_from_env {
        println!("  API key: from ${key_var}");
    } else {
        println!(
            "  API key: ${key_var} is unset; generated key: {}",
            sim.api_key()
        );
    }
    println!(
        "  seed VM: {} uuid {} at {}:{}",
        sim.seed_name(),
        sim.seed_uuid(),
        sim.seed_ip(),
        sim.service_port()
    );
    println!(
        "  node_exporter of each VM: http://{{vm ip}}:{}/metrics (seed: http://{}:{}/metrics)",
        sim.exporter_port(),
        sim.seed_ip(),
        sim.exporter_port()
    );
    match (sim.cpu_budget(), sim.state().cgroup) {
        (None, _) => println!("  CPU budget per VM: unlimited"),
        (Some(cores), Some(dir)) => {
            println!("  CPU budget per VM: {cores} cores (cgroup quota under {dir})")
        }
        (Some(cores), None) => println!(
            "  CPU budget per VM: {cores} cores, only applied to the reported CPU (no writable cgroup)"
        ),
    }
    println!("  billing account: {}", sim.billing_account_id());

    let signal = wait_for_stop_signal().await;
    println!("{signal}: stopping the simulator and its VMs");
    sim.shutdown().await;
    Ok(())
}

async fn wait_for_stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => Some(term),
        Err(err) => {
            tracing::warn!(%err, "cannot listen for SIGTERM; only Ctrl-C stops the simulator");
            None
        }
    };
    let sigterm = async {
        match term.as_mut() {
            Some(term) => {
                term.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            if let Err(err) = result {
                tracing::warn!(%err, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
            "SIGINT"
        }
        _ = sigterm => "SIGTERM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn the_handle_can_be_shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<SimHandle>();
        assert_send_sync::<SimState>();
    }

    #[test]
    fn cli_defaults_match_default_impl() {
        let cli = Cli::try_parse_from(["sim"]).unwrap();
        assert_eq!(cli.sim, SimArgs::default());
    }

    #[test]
    fn cli_flags_parse() {
        let cli = Cli::try_parse_from([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--boot-delay",
            "250ms",
            "--addresses",
            "127.0.5.10-127.0.5.20",
            "--error-rate",
            "0.5",
            "--latency",
            "1s",
            "--clone-never-boots",
            "--clone-hang",
            "30s",
            "--clone-late",
            "4s",
            "--exporter-port",
            "9200",
            "--cpu-budget",
            "0.25",
        ])
        .unwrap();
        assert_eq!(cli.sim.exporter_port, 9200);
        assert_eq!(cli.sim.cpu_budget, Some(0.25));
        assert!(Cli::try_parse_from(["sim", "--cpu-budget", "0"]).is_err());
        assert!(Cli::try_parse_from(["sim", "--cpu-budget", "NaN"]).is_err());
        assert_eq!(Cli::try_parse_from(["sim"]).unwrap().sim.cpu_budget, None);
        assert_eq!(cli.sim.boot_delay, Duration::from_millis(250));
        assert_eq!(
            cli.sim.start_delay, None,
            "unset: a fifth of the boot delay"
        );
        let power = Cli::try_parse_from(["sim", "--start-delay", "700ms", "--clone-delay", "2s"])
            .unwrap()
            .sim;
        assert_eq!(power.start_delay, Some(Duration::from_millis(700)));
        assert_eq!(power.clone_delay, Duration::from_secs(2));
        assert!(Cli::try_parse_from(["sim", "--start-delay", "soon"]).is_err());
        assert_eq!(cli.sim.addresses.first, Ipv4Addr::new(127, 0, 5, 10));
        assert_eq!(cli.sim.addresses.iter().count(), 11);
        assert_eq!(cli.sim.error_rate, 0.5);
        assert!(cli.sim.clone_never_boots);
        assert_eq!(cli.sim.clone_hang, Duration::from_secs(30));
        assert_eq!(cli.sim.clone_late, Duration::from_secs(4));
        assert!(Cli::try_parse_from(["sim", "--error-rate", "1.5"]).is_err());
        assert!(Cli::try_parse_from(["sim", "--addresses", "10.0.0.1-10.0.0.5"]).is_err());
        assert!(Cli::try_parse_from(["sim", "--addresses", "127.0.0.9-127.0.0.5"]).is_err());
    }

    #[test]
    fn faults_json_accepts_text_and_milliseconds() {
        let f: Faults =
            serde_json::from_str(r#"{"latency": "250ms", "clone_hang": 1500, "clone_late": "2s"}"#)
                .unwrap();
        assert_eq!(f.latency, Duration::from_millis(250));
        assert_eq!(f.clone_late, Duration::from_secs(2));
        assert_eq!(f.clone_hang, Duration::from_millis(1500));
        assert_eq!(f.error_rate, 0.0);
        let text = serde_json::to_string(&f).unwrap();
        assert!(text.contains(r#""latency":"250ms""#), "{text}");
        assert!(serde_json::from_str::<Faults>(r#"{"latency_ms": 5}"#).is_err());
    }
}
