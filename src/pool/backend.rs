//! Pools and backends: what the service knows about each VM, and the pure rules that move a
//! backend between lifecycle states. No I/O here.

use std::collections::{BTreeMap, HashMap};

use crate::config::{HealthConfig, PoolConfig};
use crate::idch::Vm;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Seed,
    Clone,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Seed => "seed",
            Role::Clone => "clone",
        }
    }
}

/// Where a backend is in its lifecycle (DESIGN.md, "A backend's lifecycle").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendState {
    /// The VM exists; not yet proven healthy `healthy_threshold` times in a row.
    Booting,
    /// In Traefik's server list.
    Ready,
    /// Was ready; failed `unhealthy_threshold` probes in a row. Out of Traefik's list.
    Unhealthy,
    /// Out of Traefik's list, kept alive for `drain_period` so requests in flight complete.
    Draining,
    /// The delete call is due or under way.
    Deleting,
    /// Warm pool: a clone booting once (its first health gate) before it is stopped. Not served.
    Warming,
    /// Warm pool: the stop call is due or under way (a warmed clone, or a drained one going back).
    Stopping,
    /// Warm pool: stopped, ready to be started by a scale-up. Counted against `max`, not desired.
    Warm,
    /// A warm clone a scale-up is starting: the start call is due or under way. Once it answers
    /// the clone is `Booting`, through the same health gate as a new one.
    Starting,
}

impl BackendState {
    pub const ALL: [BackendState; 9] = [
        BackendState::Booting,
        BackendState::Ready,
        BackendState::Unhealthy,
        BackendState::Draining,
        BackendState::Deleting,
        BackendState::Warming,
        BackendState::Stopping,
        BackendState::Warm,
        BackendState::Starting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::Booting => "booting",
            BackendState::Ready => "ready",
            BackendState::Unhealthy => "unhealthy",
            BackendState::Draining => "draining",
            BackendState::Deleting => "deleting",
            BackendState::Warming => "warming",
            BackendState::Stopping => "stopping",
            BackendState::Warm => "warm",
            BackendState::Starting => "starting",
        }
    }

    /// Whether Traefik may send traffic to it.
    pub fn serves_traffic(self) -> bool {
        self == BackendState::Ready
    }

    /// Draining or deleting: no longer counted towards the desired size.
    pub fn is_leaving(self) -> bool {
        matches!(self, BackendState::Draining | BackendState::Deleting)
    }

    /// Warming, stopping or warm: the warm pool's, counted against `max` but not desired.
    pub fn is_warm_pool(self) -> bool {
        matches!(
            self,
            BackendState::Warming | BackendState::Stopping | BackendState::Warm
        )
    }

    /// Counted towards the desired size: booting, ready, unhealthy or starting.
    pub fn is_active(self) -> bool {
        !self.is_leaving() && !self.is_warm_pool()
    }

    /// Scraped by Prometheus (in `/prometheus/targets`): every VM but the warm pool's and one
    /// still stopped, whose idle figures would only dilute the pool's.
    pub fn is_scraped(self) -> bool {
        !self.is_warm_pool() && self != BackendState::Starting
    }

    /// Probed like a booting VM (every boot probe interval).
    pub fn in_health_gate(self) -> bool {
        matches!(self, BackendState::Booting | BackendState::Warming)
    }
}

/// One VM of a pool, as the service sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub uuid: String,
    pub name: String,
    pub role: Role,
    /// The private address, once the cloud reports one.
    pub ip: Option<String>,
    /// The cloud's `status` (`running`, `stopped`, ...).
    pub cloud_status: String,
    pub created_at: Option<String>,
    pub state: BackendState,
    /// When `state` last changed (Unix seconds, as the caller passes `now`).
    pub since: f64,
}

/// Consecutive probe results of one backend; kept by the reconciler, not published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeStreak {
    pub successes: u32,
    pub failures: u32,
}

/// The published view of one pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolView {
    pub name: String,
    /// Seed first, then clones by their number, then by name.
    pub backends: Vec<Backend>,
    /// The first list succeeded and the first `healthy_threshold` probe rounds ran.
    pub synced: bool,
    /// The last list call succeeded.
    pub cloud_ok: bool,
    pub last_error: Option<String>,
    pub last_success: Option<f64>,
    /// The seed VM was in the last successful list.
    pub seed_present: bool,
    /// Names of clones whose clone call is in flight or whose outcome is not known yet.
    pub provisioning: Vec<String>,
    /// Slow start: the Traefik weights of the ready backends still ramping up, by uuid; a ready
    /// backend not in it has full weight. Empty when the pool has no `slow_start`.
    pub weights: BTreeMap<String, u32>,
}

impl PoolView {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            backends: Vec::new(),
            synced: false,
            cloud_ok: false,
            last_error: None,
            last_success: None,
            seed_present: false,
            provisioning: Vec::new(),
            weights: BTreeMap::new(),
        }
    }

    pub fn count(&self, state: BackendState) -> usize {
        self.backends.iter().filter(|b| b.state == state).count()
    }
}

/// The number `n` of a clone named `{prefix}{n}`, if it has one.
pub fn clone_number(name: &str, prefix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.parse().ok()
}

/// The stable order: seed first, then clones by number (unnumbered ones last), then by name.
pub fn sort_backends(backends: &mut [Backend], prefix: &str) {
    backends.sort_by(|a, b| {
        let key = |x: &Backend| {
            (
                x.role != Role::Seed,
                clone_number(&x.name, prefix).unwrap_or(u64::MAX),
                x.name.clone(),
                x.uuid.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
}

/// Merges a fresh VM list into the known backends: keeps the state of VMs it knows, adopts new
/// ones as booting, drops the ones that vanished. Only the seed and VMs whose name starts with
/// the pool's `clone_prefix` belong to the pool. `leaving` maps the uuids of VMs with an intent
/// to the state it stands for (draining, deleting, or the warm pool's warming, stopping and
/// starting), so a restart never puts one back into rotation; see [`observed_state`].
pub fn observe(
    previous: &[Backend],
    vms: &[Vm],
    pool: &PoolConfig,
    leaving: &HashMap<String, BackendState>,
    now: f64,
) -> Vec<Backend> {
    let known: HashMap<&str, &Backend> = previous.iter().map(|b| (b.uuid.as_str(), b)).collect();
    let mut out: Vec<Backend> = vms
        .iter()
        .filter_map(|vm| {
            let role = if vm.uuid == pool.seed_vm {
                Role::Seed
            } else if vm.name.starts_with(&pool.clone_prefix) {
                Role::Clone
            } else {
                return None;
            };
            let (mut state, mut since) = match known.get(vm.uuid.as_str()) {
                Some(b) => (b.state, b.since),
                None => (BackendState::Booting, now),
            };
            if role == Role::Clone {
                let next = observed_state(
                    known.get(vm.uuid.as_str()).map(|b| b.state),
                    leaving.get(&vm.uuid).copied(),
                    vm.status == "stopped",
                    pool.warm_pool.is_some(),
                );
                if next != state {
                    state = next;
                    since = now;
                }
            }
            Some(Backend {
                uuid: vm.uuid.clone(),
                name: vm.name.clone(),
                role,
                ip: vm.private_ipv4.clone(),
                cloud_status: vm.status.clone(),
                created_at: vm.created_at.clone(),
                state,
                since,
            })
        })
        .collect();
    sort_backends(&mut out, &pool.clone_prefix);
    out
}

/// A clone's state after a list: `known` is what the service knew of it (`None`: adopted now),
/// `intent` the state its intent stands for, `stopped` whether the cloud reports it stopped.
/// A drain or delete always wins. With a warm pool a stopped clone is warm, unless its start
/// has been asked; a warm clone found running again boots (through the health gate). A VM
/// adopted after a restart takes its intent's state (a started one is booting).
pub fn observed_state(
    known: Option<BackendState>,
    intent: Option<BackendState>,
    stopped: bool,
    warm_pool: bool,
) -> BackendState {
    use BackendState::*;
    match (known, intent) {
        (_, Some(s @ (Draining | Deleting))) => s,
        // The stop answered; a list that began before it may still say running.
        (Some(Warm), Some(Warming | Stopping)) => Warm,
        // The start was asked (or answered): the reconciler moves it on.
        (Some(k @ (Starting | Booting)), Some(Starting)) => k,
        (None, Some(Starting)) => {
            if stopped {
                Starting
            } else {
                Booting
            }
        }
        _ if stopped && warm_pool => Warm,
        (Some(Warm), _) => Booting,
        (Some(k), _) => k,
        (None, Some(s @ (Warming | Stopping))) => s,
        (None, _) => Booting,
    }
}

/// Applies one probe result: `healthy_threshold` successes in a row make a backend ready,
/// `unhealthy_threshold` failures in a row make a ready one unhealthy, and a warming one that
/// passes goes on to be stopped. Draining, deleting and the warm pool's other states keep theirs. Returns the previous state and its start when the state changed.
pub fn apply_probe(
    backend: &mut Backend,
    streak: &mut ProbeStreak,
    ok: bool,
    health: &HealthConfig,
    now: f64,
) -> Option<(BackendState, f64)> {
    if ok {
        streak.successes = streak.successes.saturating_add(1);
        streak.failures = 0;
    } else {
        streak.failures = streak.failures.saturating_add(1);
        streak.successes = 0;
    }
    let next = match backend.state {
        BackendState::Booting | BackendState::Unhealthy
            if streak.successes >= health.healthy_threshold =>
        {
            BackendState::Ready
        }
        // A warm-pool clone passed its health gate: it is stopped next.
        BackendState::Warming if streak.successes >= health.healthy_threshold => {
            BackendState::Stopping
        }
        BackendState::Ready if streak.failures >= health.unhealthy_threshold => {
            BackendState::Unhealthy
        }
        s => s,
    };
    if next != backend.state {
        let previous = (backend.state, backend.since);
        backend.state = next;
        backend.since = now;
        Some(previous)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> PoolConfig {
        crate::config::Config::parse(
            "[idcloudhost]\n[[pool]]\nname = \"p\"\nseed_vm = \"seed\"\nclone_prefix = \"p-clone-\"\n",
        )
        .unwrap()
        .pools
        .remove(0)
    }

    fn vm(uuid: &str, name: &str) -> Vm {
        Vm {
            uuid: uuid.into(),
            name: name.into(),
            status: "running".into(),
            private_ipv4: Some(format!("10.0.0.{}", uuid.len())),
            created_at: None,
        }
    }

    #[test]
    fn observe_keeps_pool_members_in_stable_order() {
        let t0 = 0.0;
        let vms = vec![
            vm("c10", "p-clone-10"),
            vm("other", "unrelated"),
            vm("c2", "p-clone-2"),
            vm("seed", "whatever-the-seed-is-called"),
            vm("cx", "p-clone-x"),
        ];
        let out = observe(&[], &vms, &pool(), &HashMap::new(), t0);
        let names: Vec<_> = out.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "whatever-the-seed-is-called",
                "p-clone-2",
                "p-clone-10",
                "p-clone-x"
            ]
        );
        assert_eq!(out[0].role, Role::Seed);
        assert!(out.iter().all(|b| b.state == BackendState::Booting));
    }

    #[test]
    fn observe_keeps_known_state_and_drops_vanished() {
        let t0 = 0.0;
        let t1 = 10.0;
        let none = HashMap::new();
        let mut first = observe(
            &[],
            &[vm("seed", "s"), vm("c1", "p-clone-1")],
            &pool(),
            &none,
            t0,
        );
        first[1].state = BackendState::Ready;
        let second = observe(
            &first,
            &[vm("seed", "s"), vm("c3", "p-clone-3")],
            &pool(),
            &none,
            t1,
        );
        assert_eq!(second.len(), 2);
        assert_eq!(second[1].uuid, "c3");
        assert_eq!(second[1].since, t1);
        assert_eq!(second[0].since, t0);
    }

    #[test]
    fn draining_vms_never_come_back_as_ready() {
        // Keyed by uuid: of two VMs named p-clone-1, only the drained one leaves.
        let mut leaving = HashMap::new();
        leaving.insert("c1".to_string(), BackendState::Draining);
        let both = [vm("c1", "p-clone-1"), vm("c1-twin", "p-clone-1")];
        let mut first = observe(&[], &both, &pool(), &HashMap::new(), 0.0);
        first[0].state = BackendState::Ready;
        first[1].state = BackendState::Ready;
        let out = observe(&first, &both, &pool(), &leaving, 5.0);
        let c1 = out.iter().find(|b| b.uuid == "c1").unwrap();
        let twin = out.iter().find(|b| b.uuid == "c1-twin").unwrap();
        assert_eq!((c1.state, c1.since), (BackendState::Draining, 5.0));
        assert_eq!(twin.state, BackendState::Ready);
        let p = pool();
        let mut b = c1.clone();
        let mut s = ProbeStreak::default();
        for _ in 0..5 {
            assert_eq!(apply_probe(&mut b, &mut s, true, &p.health, 6.0), None);
        }
        assert_eq!(b.state, BackendState::Draining);
    }

    #[test]
    fn probe_thresholds() {
        let p = pool();
        let t = 0.0;
        let mut b = observe(&[], &[vm("seed", "s")], &p, &HashMap::new(), t).remove(0);
        let mut s = ProbeStreak::default();
        assert!(apply_probe(&mut b, &mut s, true, &p.health, t).is_none());
        assert_eq!(b.state, BackendState::Booting);
        assert!(apply_probe(&mut b, &mut s, true, &p.health, t).is_some());
        assert_eq!(b.state, BackendState::Ready);
        // Two failures are tolerated, the third (unhealthy_threshold = 3) is not.
        assert!(apply_probe(&mut b, &mut s, false, &p.health, t).is_none());
        assert!(apply_probe(&mut b, &mut s, false, &p.health, t).is_none());
        assert!(apply_probe(&mut b, &mut s, false, &p.health, t).is_some());
        assert_eq!(b.state, BackendState::Unhealthy);
        // A single success is not enough to come back; a flap resets the streak.
        apply_probe(&mut b, &mut s, true, &p.health, t);
        apply_probe(&mut b, &mut s, false, &p.health, t);
        apply_probe(&mut b, &mut s, true, &p.health, t);
        assert_eq!(b.state, BackendState::Unhealthy);
        apply_probe(&mut b, &mut s, true, &p.health, t);
        assert_eq!(b.state, BackendState::Ready);
    }
}
