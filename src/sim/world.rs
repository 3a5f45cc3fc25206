//! The simulated account: VMs, floating IPs, faults and counters, and the JSON objects the API returns.
//! Plain data behind the simulator's one mutex; nothing here awaits.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::process::Child;

use super::billing::{self, ChargingRow, Meter};
use super::cgroup::VmCgroup;
use super::exporter::Exporter;
use super::{Config, Faults, Ipv4Range, SimFloatingIpState, SimState, SimVmHistory, SimVmState};

/// The size of every simulated VM, as the API reports it (`vcpu`, `memory` in MiB) and as its
/// node_exporter reports it.
pub(super) const VCPUS: u32 = 2;
pub(super) const MEMORY_MIB: u32 = 2048;
/// The size of its disk in GB, as its `storage` and its Charging rows report it.
pub(super) const DISK_GB: u32 = 60;

/// The owner of every simulated resource, as the API reports it.
const USER_ID: u64 = 8;
const USERNAME: &str = "example";

/// Floating IPs come from 203.0.113.0/24 (TEST-NET-3, RFC 5737): nothing ever connects to them.
const PUBLIC_NET: [u8; 3] = [203, 0, 113];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VmStatus {
    /// A clone that has not booted yet.
    Creating,
    /// A stopped VM that was started and has not booted yet.
    Starting,
    Running,
    Stopped,
}

impl VmStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            VmStatus::Creating => "creating",
            VmStatus::Starting => "starting",
            VmStatus::Running => "running",
            VmStatus::Stopped => "stopped",
        }
    }

    pub(super) fn is_booting(self) -> bool {
        matches!(self, VmStatus::Creating | VmStatus::Starting)
    }
}

pub(super) struct VmRecord {
    pub id: u64,
    pub uuid: String,
    pub name: String,
    pub status: VmStatus,
    /// Owned from creation on, so no other VM gets it.
    pub address: Ipv4Addr,
    /// Whether the API shows `address` as `private_ipv4` (from the first boot on).
    pub address_visible: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    pub mac: String,
    pub disk_uuid: String,
    pub seed: bool,
    /// Made while `clone_never_boots` was set: never reaches `running`.
    pub never_boots: bool,
    /// Bumped by every stop and start, so a boot timer armed before acts only if nothing changed.
    pub boot_generation: u64,
    /// The workload process while it runs (reaped by the monitor when it exits by itself).
    pub process: Option<Child>,
    pub last_exit: Option<String>,
    /// The node_exporter endpoint while the VM runs.
    pub exporter: Option<Exporter>,
    /// The VM's cgroup (with a CPU budget, from its first boot until it is deleted).
    pub cgroup: Option<VmCgroup>,
    /// Whether the running workload is in `cgroup`, under the budget's quota.
    pub quota_enforced: bool,
    /// What its app reports as its version (kept in its version file).
    pub version: String,
    /// Its time billed as running and as stopped (change `status` with [`VmRecord::set_status`]).
    pub meter: Meter,
}

impl VmRecord {
    /// Changes the status and bills the VM accordingly from now on (booting counts as running).
    pub(super) fn set_status(&mut self, status: VmStatus) {
        self.status = status;
        self.meter.set(Utc::now(), status != VmStatus::Stopped);
    }

    pub(super) fn touch(&mut self) {
        self.updated_at = Some(Utc::now());
    }

    /// Takes out what runs while the VM runs (workload and exporter), to be stopped after the lock
    /// is released; the cgroup stays for the next boot.
    pub(super) fn take_running(&mut self) -> Teardown {
        self.quota_enforced = false;
        Teardown {
            name: self.name.clone(),
            process: self.process.take(),
            exporter: self.exporter.take(),
            cgroup: None,
        }
    }

    /// Like [`VmRecord::take_running`], and the cgroup too (the VM goes away).
    pub(super) fn take_all(&mut self) -> Teardown {
        let mut teardown = self.take_running();
        teardown.cgroup = self.cgroup.take();
        teardown
    }
}

/// What must be stopped, outside the world's lock, when a VM stops or goes away.
pub(super) struct Teardown {
    pub name: String,
    pub process: Option<Child>,
    pub exporter: Option<Exporter>,
    /// Only when the VM goes away: a stopped VM keeps its cgroup for its next boot.
    pub cgroup: Option<VmCgroup>,
}

pub(super) struct FloatingIpRecord {
    pub id: u64,
    pub address: Ipv4Addr,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    pub assigned_to: Option<String>,
}

/// One VM ever created, kept after it is deleted (for [`SimState::history`]).
struct HistoryRecord {
    uuid: String,
    name: String,
    address: Ipv4Addr,
    seed: bool,
    created_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    /// The VM's meter, ended, once it is deleted (until then the VM's own).
    meter: Option<Meter>,
}

pub(super) struct World {
    /// Oldest first.
    vms: Vec<VmRecord>,
    /// Every VM ever created, oldest first; an entry is added by `create_vm` and closed by `remove_vm`.
    history: Vec<HistoryRecord>,
    floating_ips: Vec<FloatingIpRecord>,
    next_vm_id: u64,
    next_ip_id: u64,
    pub faults: Faults,
    /// Whether a clone may get an address that a deleted VM had (the default). Off, it gets one no
    /// VM ever had while there is one, so a stale route to a deleted VM meets a closed port. Set by
    /// [`super::SimHandle::set_reuse_addresses`], read by `allocate_address`.
    pub reuse_addresses: bool,
    pub calls: BTreeMap<&'static str, u64>,
    pub unauthorized: u64,
    pub injected_errors: u64,
    /// Set by shutdown and drop: boot timers then start nothing.
    pub closed: bool,
}

impl World {
    pub(super) fn new(faults: Faults) -> Self {
        World {
            vms: Vec::new(),
            history: Vec::new(),
            floating_ips: Vec::new(),
            next_vm_id: 11,
            next_ip_id: 1,
            faults,
            reuse_addresses: true,
            calls: BTreeMap::new(),
            unauthorized: 0,
            injected_errors: 0,
            closed: false,
        }
    }

    pub(super) fn vm(&self, uuid: &str) -> Option<&VmRecord> {
        self.vms.iter().find(|vm| vm.uuid == uuid)
    }

    pub(super) fn vm_mut(&mut self, uuid: &str) -> Option<&mut VmRecord> {
        self.vms.iter_mut().find(|vm| vm.uuid == uuid)
    }

    /// The first address of `range` that no VM owns and where every one of `ports` (the service's
    /// and the exporter's) can be bound right now; without `reuse_addresses`, one that no VM ever
    /// had first, if there is one.
    pub(super) fn allocate_address(&self, range: Ipv4Range, ports: &[u16]) -> Option<Ipv4Addr> {
        if !self.reuse_addresses {
            let fresh = range
                .iter()
                .filter(|ip| !self.history.iter().any(|h| h.address == *ip))
                .find(|ip| self.address_is_free(*ip, ports));
            if fresh.is_some() {
                return fresh;
            }
        }
        range.iter().find(|ip| self.address_is_free(*ip, ports))
    }

    fn address_is_free(&self, ip: Ipv4Addr, ports: &[u16]) -> bool {
        // std's bind sets SO_REUSEADDR, so a port in TIME_WAIT counts as free, as it is for the
        // workload that binds it next; the probe listener is closed at once.
        !self.vms.iter().any(|vm| vm.address == ip)
            && ports
                .iter()
                .all(|port| TcpListener::bind((ip, *port)).is_ok())
    }

    /// Adds a VM and returns its uuid.
    pub(super) fn create_vm(
        &mut self,
        name: &str,
        address: Ipv4Addr,
        status: VmStatus,
        seed: bool,
        never_boots: bool,
    ) -> String {
        let id = self.next_vm_id;
        self.next_vm_id += 1;
        let uuid = uuid::Uuid::new_v4().to_string();
        let mac_bytes: [u8; 3] = rand::random();
        let created_at = Utc::now();
        self.history.push(HistoryRecord {
            uuid: uuid.clone(),
            name: name.to_string(),
            address,
            seed,
            created_at,
            deleted_at: None,
            meter: None,
        });
        self.vms.push(VmRecord {
            id,
            uuid: uuid.clone(),
            name: name.to_string(),
            status,
            address,
            address_visible: false,
            created_at,
            updated_at: None,
            mac: format!(
                "52:54:00:{:02x}:{:02x}:{:02x}",
                mac_bytes[0], mac_bytes[1], mac_bytes[2]
            ),
            disk_uuid: uuid::Uuid::new_v4().to_string(),
            seed,
            never_boots,
            boot_generation: 0,
            process: None,
            last_exit: None,
            exporter: None,
            cgroup: None,
            quota_enforced: false,
            version: String::new(),
            meter: Meter::new(created_at, status != VmStatus::Stopped),
        });
        uuid
    }

    /// Removes a VM with its floating IPs; its processes and cgroup (if any) are the caller's to stop.
    pub(super) fn remove_vm(&mut self, uuid: &str) -> Option<VmRecord> {
        let index = self.vms.iter().position(|vm| vm.uuid == uuid)?;
        let now = Utc::now();
        self.vms[index].meter.end(now);
        if let Some(entry) = self.history.iter_mut().rev().find(|h| h.uuid == uuid) {
            entry.deleted_at = Some(now);
            entry.meter = Some(self.vms[index].meter.clone());
        }
        self.floating_ips
            .retain(|ip| ip.assigned_to.as_deref() != Some(uuid));
        Some(self.vms.remove(index))
    }

    /// Gives the VM a new public address (none when 203.0.113.0/24 is used up).
    pub(super) fn assign_new_floating_ip(&mut self, uuid: &str) {
        let free = (1..=254u8)
            .map(|n| Ipv4Addr::new(PUBLIC_NET[0], PUBLIC_NET[1], PUBLIC_NET[2], n))
            .find(|address| !self.floating_ips.iter().any(|ip| ip.address == *address));
        let Some(address) = free else {
            tracing::warn!(uuid, "no simulated public address left; the VM gets none");
            return;
        };
        let id = self.next_ip_id;
        self.next_ip_id += 1;
        self.floating_ips.push(FloatingIpRecord {
            id,
            address,
            created_at: Utc::now(),
            updated_at: None,
            assigned_to: Some(uuid.to_string()),
        });
    }

    pub(super) fn floating_ip_mut(&mut self, address: &str) -> Option<&mut FloatingIpRecord> {
        self.floating_ips
            .iter_mut()
            .find(|ip| ip.address.to_string() == address)
    }

    pub(super) fn remove_floating_ip(&mut self, address: &str) -> bool {
        let before = self.floating_ips.len();
        self.floating_ips
            .retain(|ip| ip.address.to_string() != address);
        self.floating_ips.len() != before
    }

    /// Takes every VM's processes, exporter and cgroup out (for shutdown).
    pub(super) fn take_everything(&mut self) -> Vec<Teardown> {
        self.vms.iter_mut().map(VmRecord::take_all).collect()
    }

    /// Notes and drops the processes that exited by themselves.
    pub(super) fn reap_exited(&mut self) {
        for vm in &mut self.vms {
            let Some(child) = vm.process.as_mut() else {
                continue;
            };
            match child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    tracing::warn!(vm = %vm.name, %status, "simulated VM's workload exited by itself");
                    vm.last_exit = Some(status.to_string());
                    vm.process = None;
                }
                Err(err) => {
                    tracing::warn!(vm = %vm.name, %err, "cannot check the simulated VM's workload");
                }
            }
        }
    }

    pub(super) fn vm_jsons(&self, config: &Config) -> Vec<serde_json::Value> {
        self.vms.iter().map(|vm| vm_json(vm, config)).collect()
    }

    pub(super) fn vm_json(&self, uuid: &str, config: &Config) -> Option<serde_json::Value> {
        self.vm(uuid).map(|vm| vm_json(vm, config))
    }

    /// `network/ip_addresses`, filtered by billing account and assigned VM.
    pub(super) fn floating_ip_jsons(
        &self,
        config: &Config,
        billing_account_id: Option<u64>,
        vm_uuid: Option<&str>,
    ) -> Vec<serde_json::Value> {
        if billing_account_id.is_some_and(|id| id != config.billing_account_id) {
            return Vec::new();
        }
        self.floating_ips
            .iter()
            .filter(|ip| vm_uuid.is_none_or(|uuid| ip.assigned_to.as_deref() == Some(uuid)))
            .map(|ip| self.floating_ip_json(ip, config))
            .collect()
    }

    pub(super) fn floating_ip_json_by_address(
        &self,
        address: &str,
        config: &Config,
    ) -> Option<serde_json::Value> {
        self.floating_ips
            .iter()
            .find(|ip| ip.address.to_string() == address)
            .map(|ip| self.floating_ip_json(ip, config))
    }

    fn floating_ip_json(&self, ip: &FloatingIpRecord, config: &Config) -> serde_json::Value {
        let vm = ip.assigned_to.as_deref().and_then(|uuid| self.vm(uuid));
        let object = FloatingIpObject {
            id: ip.id,
            address: ip.address.to_string(),
            user_id: USER_ID,
            billing_account_id: config.billing_account_id,
            kind: "public",
            network_id: None,
            name: format!("ip-{}", ip.address.to_string().replace('.', "-")),
            enabled: true,
            created_at: api_time(ip.created_at),
            updated_at: ip.updated_at.map(api_time),
            is_deleted: false,
            is_virtual: false,
            assigned_to: ip.assigned_to.clone(),
            assigned_to_resource_type: ip.assigned_to.as_ref().map(|_| "virtual_machine"),
            assigned_to_private_ip: vm
                .filter(|vm| vm.address_visible)
                .map(|vm| vm.address.to_string()),
        };
        serde_json::to_value(object).unwrap_or_default()
    }

    /// The meter of a VM in the history: its own while it exists, else the one kept at its deletion.
    fn history_meter<'a>(&'a self, h: &'a HistoryRecord) -> Option<&'a Meter> {
        h.meter
            .as_ref()
            .or_else(|| self.vm(&h.uuid).map(|vm| &vm.meter))
    }

    /// `GET charging/usage?billing_account_id=B`: rows for `now`'s month of every VM that existed in
    /// it, deleted ones included; none for another billing account.
    pub(super) fn charging_rows(
        &self,
        config: &Config,
        billing_account_id: u64,
        now: DateTime<Utc>,
    ) -> Vec<ChargingRow> {
        if billing_account_id != config.billing_account_id {
            return Vec::new();
        }
        self.history
            .iter()
            .filter_map(|h| {
                let meter = self.history_meter(h)?;
                let name = self.vm(&h.uuid).map_or(h.name.as_str(), |vm| &vm.name);
                let shape = billing::VmShape {
                    uuid: &h.uuid,
                    name,
                    vcpus: VCPUS,
                    memory_mib: MEMORY_MIB,
                    disk_gb: DISK_GB,
                    billing_account_id: config.billing_account_id,
                    user_id: USER_ID,
                };
                Some(billing::rows(meter, &shape, now))
            })
            .flatten()
            .collect()
    }

    pub(super) fn state(&self, config: &Config) -> SimState {
        let now = Utc::now();
        SimState {
            url: config.url.clone(),
            location: config.location.clone(),
            billing_account_id: config.billing_account_id,
            service_port: config.service_port,
            exporter_port: config.exporter_port,
            cpu_budget: config.cpu_budget,
            cgroup: config.cgroup_dir.clone(),
            addresses: config.addresses,
            boot_delay: config.boot_delay,
            start_delay: config.start_delay,
            clone_delay: config.clone_delay,
            vms: self
                .vms
                .iter()
                .map(|vm| SimVmState {
                    uuid: vm.uuid.clone(),
                    name: vm.name.clone(),
                    status: vm.status.as_str().to_string(),
                    private_ipv4: visible_ip(vm),
                    address: vm.address,
                    seed: vm.seed,
                    pid: vm.process.as_ref().and_then(Child::id),
                    last_exit: vm.last_exit.clone(),
                    exporter: vm.exporter.as_ref().map(|e| e.addr().to_string()),
                    cgroup: vm.cgroup.as_ref().map(|c| c.dir().display().to_string()),
                    cpu_quota_enforced: vm.quota_enforced,
                    public_ip: self
                        .floating_ips
                        .iter()
                        .find(|ip| ip.assigned_to.as_deref() == Some(vm.uuid.as_str()))
                        .map(|ip| ip.address.to_string()),
                    created_at: api_time(vm.created_at),
                    version: vm.version.clone(),
                    billed_running_seconds: vm.meter.lifetime_seconds(now).0,
                    billed_stopped_seconds: vm.meter.lifetime_seconds(now).1,
                })
                .collect(),
            floating_ips: self
                .floating_ips
                .iter()
                .map(|ip| SimFloatingIpState {
                    address: ip.address.to_string(),
                    assigned_to: ip.assigned_to.clone(),
                })
                .collect(),
            faults: self.faults.clone(),
            calls: self
                .calls
                .iter()
                .map(|(op, n)| (op.to_string(), *n))
                .collect(),
            unauthorized: self.unauthorized,
            injected_errors: self.injected_errors,
            history: self
                .history
                .iter()
                .map(|h| SimVmHistory {
                    uuid: h.uuid.clone(),
                    name: h.name.clone(),
                    address: h.address,
                    seed: h.seed,
                    created_at: history_time(h.created_at),
                    deleted_at: h.deleted_at.map(history_time),
                    billed_running_seconds: self
                        .history_meter(h)
                        .map_or(0.0, |m| m.lifetime_seconds(now).0),
                    billed_stopped_seconds: self
                        .history_meter(h)
                        .map_or(0.0, |m| m.lifetime_seconds(now).1),
                })
                .collect(),
        }
    }
}

/// RFC 3339 in milliseconds, UTC (`2025-01-02T03:04:05.678Z`): the history's times.
fn history_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `YYYY-MM-DD HH:MM:SS`, UTC, no zone: how the API writes times.
fn api_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn visible_ip(vm: &VmRecord) -> String {
    if vm.address_visible {
        vm.address.to_string()
    } else {
        String::new()
    }
}

/// The documented VM object (fields in the documentation's order, which is alphabetical).
#[derive(Serialize)]
struct VmObject<'a> {
    backup: bool,
    billing_account: u64,
    created_at: String,
    description: &'a str,
    designated_pool_name: &'a str,
    designated_pool_uuid: &'a str,
    hostname: String,
    id: u64,
    mac: &'a str,
    memory: u32,
    name: &'a str,
    os_name: &'a str,
    os_version: &'a str,
    private_ipv4: String,
    public_ipv6: String,
    status: &'static str,
    storage: [StorageObject<'a>; 1],
    tags: Option<Vec<String>>,
    updated_at: Option<String>,
    user_id: u64,
    username: &'a str,
    uuid: &'a str,
    vcpu: u32,
}

#[derive(Serialize)]
struct StorageObject<'a> {
    created_at: String,
    id: u64,
    name: &'a str,
    pool: &'a str,
    primary: bool,
    replica: [(); 0],
    shared: bool,
    size: u32,
    #[serde(rename = "type")]
    kind: &'a str,
    updated_at: Option<String>,
    user_id: u64,
    uuid: &'a str,
}

fn vm_json(vm: &VmRecord, config: &Config) -> serde_json::Value {
    let object = VmObject {
        backup: false,
        billing_account: config.billing_account_id,
        created_at: api_time(vm.created_at),
        description: "",
        designated_pool_name: "General purpose",
        designated_pool_uuid: "d2fc6881-9316-46d7-b515-b6cddaeee927",
        hostname: hostname(&vm.name),
        id: vm.id,
        mac: &vm.mac,
        memory: MEMORY_MIB,
        name: &vm.name,
        os_name: "ubuntu",
        os_version: "22.04",
        private_ipv4: visible_ip(vm),
        // 2001:db8::/32 is the IPv6 documentation prefix.
        public_ipv6: format!("2001:db8:10:30::{:x}", vm.id),
        status: vm.status.as_str(),
        storage: [StorageObject {
            created_at: vm.created_at.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            id: vm.id,
            name: "sda",
            pool: "default2",
            primary: true,
            replica: [],
            shared: false,
            size: DISK_GB,
            kind: "block",
            updated_at: None,
            user_id: USER_ID,
            uuid: &vm.disk_uuid,
        }],
        tags: None,
        updated_at: vm.updated_at.map(api_time),
        user_id: USER_ID,
        username: USERNAME,
        uuid: &vm.uuid,
        vcpu: VCPUS,
    };
    serde_json::to_value(object).unwrap_or_default()
}

/// A host name derived from the VM's name: lower-case letters, digits and `-`.
fn hostname(name: &str) -> String {
    let host: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let host = host.trim_matches('-');
    if host.is_empty() {
        "vm".to_string()
    } else {
        host.to_string()
    }
}

/// The documented floating IP object.
#[derive(Serialize)]
struct FloatingIpObject {
    id: u64,
    address: String,
    user_id: u64,
    billing_account_id: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    network_id: Option<String>,
    name: String,
    enabled: bool,
    created_at: String,
    updated_at: Option<String>,
    is_deleted: bool,
    is_virtual: bool,
    assigned_to: Option<String>,
    assigned_to_resource_type: Option<&'static str>,
    assigned_to_private_ip: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_tame() {
        assert_eq!(hostname("Calculate Service #2"), "calculate-service--2");
        assert_eq!(hostname("--"), "vm");
    }
}
