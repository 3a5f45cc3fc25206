//! The reconciler's next steps, as a pure function: [`plan`] takes what exists, what is
//! intended, the desired size and the pool's policy at an instant, and returns the steps to take
//! now, each with its reason, and when it next needs to be asked. No I/O, no clock, no randomness:
//! the executor does the calls, and tables of cases test the rules below in microseconds.
//!
//! The rules, in the order they are applied:
//! 1. A drain whose `until` has passed, and a VM marked for deletion, are deleted (one call per
//!    VM at a time; a failed delete waits for its backoff). A drain is never cut short. When
//!    Traefik polls us, a drain also waits until Traefik has fetched a `/traefik` without the VM
//!    and `drain_period - poll_interval` (at least its 2 s throttle) has passed since: Traefik
//!    keeps routing on its last configuration while it cannot fetch (after our restart, say).
//!    If no such fetch comes within [`TRAEFIK_WAIT_CAP`] after `until`, the VM goes anyway.
//! 2. A clone not healthy within `boot_timeout` is given up on (deleted; the next clone backs off).
//! 3. A clone unhealthy longer than `replace_unhealthy_after` is drained (and so replaced).
//! 4. A running clone's public IP is released once (`release_public_ip`); a failed release
//!    waits for its backoff.
//! 5. Below desired: clone up to `max_concurrent_clones` VMs at a time (calls in flight count),
//!    each under its own free name, under `max` (which counts every VM of the pool in any state,
//!    and every clone call not yet resolved), after the clone backoff, with the seed present.
//!    A clone call whose outcome is unknown blocks the next ones until a list that began after it.
//! 6. Above desired: drain the surplus; not-ready clones first, then the newest (or oldest)
//!    first. The seed, identified by its uuid alone, is never a victim.
//! 7. A rolling refresh replaces its old clones surge first: while one is left, the pool may
//!    grow `max_surge` above desired (and above `max`) with new clones; an old clone is drained
//!    only while the ready VMs stay at least desired without it (a not-ready old clone, while
//!    the active ones do), so ready capacity never drops below desired and nothing old goes
//!    without a healthy replacement. A scale-down drains old clones first.
//! 8. The warm pool (`warm_pool`): clones made for it boot once (`warming`, out of Traefik's list;
//!    a boot that takes longer than `boot_timeout` is given up, rule 2), are stopped once they
//!    pass the health gate (`stopping`) and are then `warm`. They count against `max`, never
//!    against desired. Below desired, warm clones are started first (the newest fit ones, after
//!    the start backoff; start calls count towards `max_concurrent_clones`), then warming ones
//!    serve instead (`promote`), and only the rest is cloned. The pool is refilled by cloning once
//!    the serving VMs are provided for, within `max`. A drain that a scale-in began ends in a stop
//!    instead of a delete while the warm pool is short. A warm clone older than `max_age` or made
//!    before the running refresh is deleted (and refilled), and a warm pool above its size is
//!    trimmed, oldest first. A stop or start whose VM is in that state and not busy (a restart cut
//!    it short, or it failed and its backoff is over) is taken again.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::backend::{clone_number, Backend, BackendState, Role};
use crate::config::{PoolConfig, Termination};

mod describe;
pub use describe::{counted_size, describe, Described, Situation};

/// Why a VM is tracked: it is being created, drained or deleted, or its name is held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The clone call is in flight, or it ended and no list since has said whether it worked.
    Provisioning,
    /// Out of Traefik's list until `until`, then deleted.
    Draining,
    /// The delete call is due or under way.
    Deleting,
    /// A clone call whose outcome stayed unknown (no VM in a list that began after it): the name
    /// is never reused, and a VM that appears under it later is adopted like any other.
    Reserved,
    /// Warm pool: a clone made for it, on its first boot until it is stopped (keyed by name).
    Warming,
    /// Warm pool: a drained clone going back into it; the stop call is due or under way.
    Stopping,
    /// Warm pool: a scale-up started this warm clone; until it is ready.
    Starting,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Provisioning => "provisioning",
            Phase::Draining => "draining",
            Phase::Deleting => "deleting",
            Phase::Reserved => "reserved",
            Phase::Warming => "warming",
            Phase::Stopping => "stopping",
            Phase::Starting => "starting",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        match s {
            "provisioning" => Some(Phase::Provisioning),
            "draining" => Some(Phase::Draining),
            "deleting" => Some(Phase::Deleting),
            "reserved" => Some(Phase::Reserved),
            "warming" => Some(Phase::Warming),
            "stopping" => Some(Phase::Stopping),
            "starting" => Some(Phase::Starting),
            _ => None,
        }
    }
}

/// One VM the reconciler is acting on. Keyed by its uuid once one is known (a drain or a delete
/// always knows it), by its name before (a clone call that has not answered).
#[derive(Debug, Clone, PartialEq)]
pub struct Intent {
    pub name: String,
    pub uuid: Option<String>,
    pub phase: Phase,
    /// When this phase began.
    pub since: f64,
    /// Draining: when the VM may be deleted. Provisioning: when the clone call ended (`None`
    /// while it is in flight).
    pub until: Option<f64>,
    pub reason: String,
    /// Warm pool: a clone call made to refill it (provisioning), or a drain whose VM goes back
    /// into it when the pool is short (draining).
    pub warm: bool,
}

impl Intent {
    /// The key under which the intent is stored: a clone call's name (it is what the call
    /// reserves), else the VM's uuid, so two VMs that share a name are two intents.
    pub fn key(&self) -> &str {
        match (self.phase, self.uuid.as_deref()) {
            (Phase::Draining | Phase::Deleting | Phase::Stopping | Phase::Starting, Some(uuid)) => {
                uuid
            }
            _ => &self.name,
        }
    }
}

/// The part of a pool's configuration the planner reads. Durations in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub clone_prefix: String,
    pub max: u32,
    pub termination: Termination,
    pub drain_period: f64,
    pub boot_timeout: f64,
    pub replace_unhealthy_after: f64,
    pub release_public_ip: bool,
    /// Traefik's `providers.http.pollInterval` (`[traefik] poll_interval`).
    pub traefik_poll_interval: f64,
    /// How many VMs a refresh may add above desired and `max` (`[pool.refresh] max_surge`).
    pub max_surge: u32,
    /// Clone and start calls at a time (`max_concurrent_clones`).
    pub max_concurrent_clones: u32,
    /// `warm_pool`: how many stopped clones to keep, and their `max_age` in seconds.
    pub warm_pool: Option<WarmPolicy>,
}

/// The warm pool's part of the policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmPolicy {
    pub size: u32,
    pub max_age: f64,
}

/// Traefik's `providersThrottleDuration` default: a new configuration may wait this long.
pub const TRAEFIK_THROTTLE: f64 = 2.0;

/// How long past `until` a drain waits for Traefik to fetch a configuration without the VM.
pub const TRAEFIK_WAIT_CAP: f64 = 120.0;

impl Policy {
    pub fn of(pool: &PoolConfig, traefik_poll_interval: std::time::Duration) -> Policy {
        Policy {
            clone_prefix: pool.clone_prefix.clone(),
            max: pool.max,
            termination: pool.termination,
            drain_period: pool.drain_period.as_secs_f64(),
            boot_timeout: pool.boot_timeout.as_secs_f64(),
            replace_unhealthy_after: pool.replace_unhealthy_after.as_secs_f64(),
            release_public_ip: pool.release_public_ip,
            traefik_poll_interval: traefik_poll_interval.as_secs_f64(),
            max_surge: pool.refresh.max_surge,
            max_concurrent_clones: pool.max_concurrent_clones,
            warm_pool: pool.warm_pool.as_ref().map(|w| WarmPolicy {
                size: w.size,
                max_age: w.max_age.as_secs_f64(),
            }),
        }
    }
}

/// What exists: the pool's backends as the last list and the probes left them.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub backends: &'a [Backend],
    /// Every VM name in the location's last list (any pool), so a new name never collides.
    pub names_in_cloud: &'a HashSet<String>,
    pub seed_present: bool,
}

/// The executor's bookkeeping that the rules depend on.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// Keys (uuid, or name for a clone call) of VMs with a cloud step in flight.
    pub busy: &'a HashSet<String>,
    /// Clones whose public IP was released (or found to have none).
    pub released_ips: &'a HashSet<String>,
    /// No clone is started before this instant (clone and boot failures back off).
    pub clone_not_before: f64,
    /// No warm clone is started before this instant: a start that failed, or a started clone
    /// that did not pass its health gate, backs off starts, and the scale-up clones meanwhile.
    pub start_not_before: f64,
    /// A failed delete or IP release of a VM (by uuid) is not retried before this instant.
    pub not_before: &'a HashMap<String, f64>,
    /// Whether Traefik polls `/traefik` (it has, in this run or one before).
    pub traefik_polls: bool,
    /// Draining VMs (by uuid): when Traefik first fetched a `/traefik` without them.
    pub traefik_saw_drain: &'a HashMap<String, f64>,
}

/// Why a VM is drained.
#[derive(Debug, Clone, PartialEq)]
pub enum DrainCause {
    /// More active VMs than desired.
    AboveDesired { desired: u32 },
    /// Unhealthy longer than `replace_unhealthy_after`.
    Unhealthy,
    /// An old clone of a rolling refresh, with a ready replacement.
    Refresh,
}

/// Why a VM is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteCause {
    DrainFinished,
    /// Marked for deletion earlier (a given-up boot, or a delete that failed).
    Marked,
    /// A warm clone beyond `warm_pool.size`.
    WarmSurplus,
    /// A warm clone older than `warm_pool.max_age`.
    WarmTooOld,
    /// A warm clone made before the running refresh began (it has the old disk).
    WarmBeforeRefresh,
}

/// Why a VM is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// A clone made for the warm pool passed its health gate.
    Warmed,
    /// A drained clone goes back into a warm pool that is short.
    ScaleIn,
}

/// One thing to do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Clone the seed as `name` (its intent is written before the call); `refresh`: a surge
    /// clone of a rolling refresh (above desired); `warm`: a clone for the warm pool.
    Clone {
        name: String,
        refresh: bool,
        warm: bool,
    },
    /// Start a warm clone for a scale-up (its intent is written before the call).
    Start { uuid: String, name: String },
    /// Stop a clone into the warm pool.
    Stop {
        uuid: String,
        name: String,
        cause: StopCause,
    },
    /// Serve a clone warming for the warm pool instead of stopping it (a scale-up that finds
    /// no warm clone to start).
    Promote { uuid: String, name: String },
    /// Take the VM out of Traefik's list now, and delete it at `until`.
    Drain {
        uuid: String,
        name: String,
        until: f64,
        cause: DrainCause,
    },
    /// Not healthy within `boot_timeout`: mark it for deletion, back off the next clone.
    GiveUpBoot { uuid: String, name: String },
    /// Call delete.
    Delete {
        uuid: String,
        name: String,
        cause: DeleteCause,
    },
    /// Release the clone's public IP.
    ReleaseIp { uuid: String, name: String },
}

impl Step {
    /// The VM the step acts on, by uuid (`None` for a clone, which has none yet).
    pub fn uuid(&self) -> Option<&str> {
        match self {
            Step::Clone { .. } => None,
            Step::Start { uuid, .. }
            | Step::Stop { uuid, .. }
            | Step::Promote { uuid, .. }
            | Step::Drain { uuid, .. }
            | Step::GiveUpBoot { uuid, .. }
            | Step::Delete { uuid, .. }
            | Step::ReleaseIp { uuid, .. } => Some(uuid),
        }
    }
}

/// The steps to take now and when the planner next needs to be asked (`None`: only when
/// something changes).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub next: Option<f64>,
}

impl Plan {
    fn wake_at(&mut self, at: f64) {
        self.next = Some(self.next.map_or(at, |n| n.min(at)));
    }
}

/// Clone calls not yet resolved: in flight, or failed with an unknown outcome and no list since
/// that began after them. They count towards the desired size and `max`, and block the next
/// clone. A call that answered with its VM is resolved: the VM is a backend from then on.
pub fn unresolved_clones<'a>(
    intents: &'a [Intent],
    names_in_cloud: &'a HashSet<String>,
) -> impl Iterator<Item = &'a Intent> + 'a {
    intents.iter().filter(move |i| {
        i.phase == Phase::Provisioning && i.uuid.is_none() && !names_in_cloud.contains(&i.name)
    })
}

/// The next steps for one pool. See the module documentation for the rules. `replacing`: the
/// uuids of the old clones a running refresh still has to replace.
pub fn plan(
    observed: Observed<'_>,
    intents: &[Intent],
    desired: u32,
    replacing: Option<&BTreeSet<String>>,
    policy: &Policy,
    progress: Progress<'_>,
    now: f64,
) -> Plan {
    let mut plan = Plan::default();
    let backends = observed.backends;
    let n = backends.len();
    // States as they will be once this plan's steps are taken.
    let mut state: Vec<BackendState> = backends.iter().map(|b| b.state).collect();
    let drains: HashMap<&str, &Intent> = intents
        .iter()
        .filter(|i| i.phase == Phase::Draining)
        .filter_map(|i| i.uuid.as_deref().map(|u| (u, i)))
        .collect();
    let stopping: HashSet<&str> = intents
        .iter()
        .filter(|i| i.phase == Phase::Stopping)
        .filter_map(|i| i.uuid.as_deref())
        .collect();
    let busy = |i: usize| progress.busy.contains(&backends[i].uuid);
    let old = |i: usize| replacing.is_some_and(|o| o.contains(&backends[i].uuid));
    // A clone that may not (stay) in the warm pool: made before the refresh, or too old.
    let unfit = |i: usize| -> Option<DeleteCause> {
        if old(i) {
            return Some(DeleteCause::WarmBeforeRefresh);
        }
        let max_age = policy.warm_pool.map_or(f64::INFINITY, |w| w.max_age);
        let created = backends[i].created_at.as_deref().and_then(created_unix)?;
        (now - created > max_age).then_some(DeleteCause::WarmTooOld)
    };
    let warm_size = policy.warm_pool.map_or(0, |w| w.size);
    // The warm pool as it stands: warm clones fit to stay, those on their way in, and the
    // clone calls made to refill it.
    let mut warm_count = (0..n)
        .filter(|&i| match state[i] {
            BackendState::Warm => unfit(i).is_none(),
            s => s.is_warm_pool(),
        })
        .count() as u32
        + unresolved_clones(intents, observed.names_in_cloud)
            .filter(|i| i.warm)
            .count() as u32;

    for (i, b) in backends.iter().enumerate() {
        match b.state {
            // 1. Drains that are over (back into a short warm pool, or deleted), and deletes
            //    to (re)try.
            BackendState::Draining | BackendState::Deleting => {
                let drain = drains.get(b.uuid.as_str());
                let due = match b.state {
                    BackendState::Draining => {
                        let until = drain
                            .and_then(|i| i.until)
                            .unwrap_or(b.since + policy.drain_period);
                        drain_due(until, &b.uuid, policy, progress)
                    }
                    _ => b.since,
                };
                let due = progress
                    .not_before
                    .get(&b.uuid)
                    .map_or(due, |t| due.max(*t));
                if busy(i) {
                    continue;
                }
                if now < due {
                    plan.wake_at(due);
                } else if b.state == BackendState::Draining
                    && drain.is_some_and(|d| d.warm)
                    && warm_count < warm_size
                    && unfit(i).is_none()
                {
                    state[i] = BackendState::Stopping;
                    warm_count += 1;
                    plan.steps.push(Step::Stop {
                        uuid: b.uuid.clone(),
                        name: b.name.clone(),
                        cause: StopCause::ScaleIn,
                    });
                } else {
                    let cause = if b.state == BackendState::Draining {
                        DeleteCause::DrainFinished
                    } else {
                        DeleteCause::Marked
                    };
                    plan.steps.push(Step::Delete {
                        uuid: b.uuid.clone(),
                        name: b.name.clone(),
                        cause,
                    });
                }
            }
            // 2. A boot (or a warm-pool clone's first boot) that takes too long.
            BackendState::Booting | BackendState::Warming if b.role == Role::Clone => {
                let deadline = b.since + policy.boot_timeout;
                if now > deadline {
                    state[i] = BackendState::Deleting;
                    if b.state == BackendState::Warming {
                        warm_count -= 1;
                    }
                    plan.steps.push(Step::GiveUpBoot {
                        uuid: b.uuid.clone(),
                        name: b.name.clone(),
                    });
                } else {
                    plan.wake_at(deadline);
                }
            }
            // 3. Unhealthy for too long.
            BackendState::Unhealthy if b.role == Role::Clone => {
                let deadline = b.since + policy.replace_unhealthy_after;
                if now > deadline && !busy(i) {
                    state[i] = BackendState::Draining;
                    plan.steps.push(Step::Drain {
                        uuid: b.uuid.clone(),
                        name: b.name.clone(),
                        until: now + policy.drain_period,
                        cause: DrainCause::Unhealthy,
                    });
                } else if now <= deadline {
                    plan.wake_at(deadline);
                }
            }
            // 8. Stops and starts to (re)take: a warmed clone, or one whose call was cut short
            //    by a restart (its intent says so).
            BackendState::Stopping | BackendState::Starting if !busy(i) => {
                match progress.not_before.get(&b.uuid) {
                    Some(t) if now < *t => plan.wake_at(*t),
                    _ if b.state == BackendState::Starting => plan.steps.push(Step::Start {
                        uuid: b.uuid.clone(),
                        name: b.name.clone(),
                    }),
                    _ => plan.steps.push(Step::Stop {
                        uuid: b.uuid.clone(),
                        name: b.name.clone(),
                        cause: if stopping.contains(b.uuid.as_str()) {
                            StopCause::ScaleIn
                        } else {
                            StopCause::Warmed
                        },
                    }),
                }
            }
            // 8. A warm clone made before a refresh, or older than max_age, is replaced.
            BackendState::Warm if !busy(i) => {
                if let Some(cause) = unfit(i) {
                    state[i] = BackendState::Deleting;
                    plan.steps.push(Step::Delete {
                        uuid: b.uuid.clone(),
                        name: b.name.clone(),
                        cause,
                    });
                } else if let (Some(w), Some(created)) = (
                    policy.warm_pool,
                    b.created_at.as_deref().and_then(created_unix),
                ) {
                    // Asked again when it gets too old.
                    plan.wake_at(created + w.max_age);
                }
            }
            _ => {}
        }
    }

    // 4. Public IPs of running clones.
    if policy.release_public_ip {
        for (i, b) in backends.iter().enumerate() {
            if b.role == Role::Clone
                && !state[i].is_leaving()
                && b.cloud_status == "running"
                && !progress.released_ips.contains(&b.uuid)
                && !busy(i)
                && !plan.steps.iter().any(|s| s.uuid() == Some(&b.uuid))
            {
                match progress.not_before.get(&b.uuid) {
                    Some(t) if now < *t => plan.wake_at(*t),
                    _ => plan.steps.push(Step::ReleaseIp {
                        uuid: b.uuid.clone(),
                        name: b.name.clone(),
                    }),
                }
            }
        }
    }

    // 5, 6 and 7. Converge on desired (plus the surge of a refresh).
    let old_active = |state: &[BackendState]| {
        (0..n)
            .filter(|&i| backends[i].role == Role::Clone && state[i].is_active() && old(i))
            .count()
    };
    let surge = if old_active(&state) > 0 {
        policy.max_surge
    } else {
        0
    };
    let mut active = state.iter().filter(|s| s.is_active()).count() as u32;
    let unresolved = unresolved_clones(intents, observed.names_in_cloud).count() as u32;
    let refilling = unresolved_clones(intents, observed.names_in_cloud)
        .filter(|i| i.warm)
        .count() as u32;
    // Clone calls made to serve, not to refill the warm pool.
    let serving = unresolved - refilling;
    let starts = state
        .iter()
        .filter(|s| **s == BackendState::Starting)
        .count() as u32;
    // Every VM of the pool counts against max, the warm pool's included.
    let mut total = n as u32 + unresolved;
    // Clone and start calls that may begin now.
    let mut calls = policy
        .max_concurrent_clones
        .saturating_sub(unresolved + starts);
    let cap = desired + surge;
    let drain = |plan: &mut Plan, state: &mut Vec<BackendState>, i: usize, cause: DrainCause| {
        let b = &backends[i];
        state[i] = BackendState::Draining;
        plan.steps.push(Step::Drain {
            uuid: b.uuid.clone(),
            name: b.name.clone(),
            until: now + policy.drain_period,
            cause,
        });
    };
    let mut candidates: Vec<usize> = (0..n)
        .filter(|&i| backends[i].role == Role::Clone && state[i].is_active())
        .collect();
    candidates.sort_by(|&a, &b| {
        old(b)
            .cmp(&old(a))
            .then(victim_order(backends, a, b, policy))
    });
    // Calls that ended with an unknown outcome (awaiting a list) block new ones.
    let unknown = unresolved_clones(intents, observed.names_in_cloud).any(|i| i.until.is_some());
    let clone = |plan: &mut Plan, room: u32, warm: bool, base: u32, calls: &mut u32| {
        // Names differ from those of the clones this plan already makes.
        let taken: Vec<String> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Clone { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect();
        let names = next_clone_names(
            observed,
            intents,
            &policy.clone_prefix,
            room + taken.len() as u32,
        );
        for (k, name) in names
            .into_iter()
            .filter(|n| !taken.contains(n))
            .take(room as usize)
            .enumerate()
        {
            plan.steps.push(Step::Clone {
                name,
                refresh: !warm && base + k as u32 >= desired,
                warm,
            });
            *calls -= 1;
        }
    };
    if active + serving < cap {
        let mut need = cap - active - serving;
        // A warm clone starts in seconds: the newest fit ones first.
        let mut warm: Vec<usize> = (0..n)
            .filter(|&i| state[i] == BackendState::Warm && !busy(i) && unfit(i).is_none())
            .collect();
        if now < progress.start_not_before {
            warm.clear();
        }
        warm.sort_by(|&a, &b| newest_first(backends, a, b, policy));
        for &i in warm.iter().take(need.min(calls) as usize) {
            let b = &backends[i];
            state[i] = BackendState::Starting;
            plan.steps.push(Step::Start {
                uuid: b.uuid.clone(),
                name: b.name.clone(),
            });
            (need, calls, active, warm_count) = (need - 1, calls - 1, active + 1, warm_count - 1);
        }
        // A clone warming for the warm pool serves instead (it is booting already).
        let warming: Vec<usize> = (0..n)
            .filter(|&i| state[i] == BackendState::Warming && !busy(i))
            .collect();
        for &i in warming.iter().take(need as usize) {
            let b = &backends[i];
            state[i] = BackendState::Booting;
            plan.steps.push(Step::Promote {
                uuid: b.uuid.clone(),
                name: b.name.clone(),
            });
            (need, active, warm_count) = (need - 1, active + 1, warm_count - 1);
        }
        let room = need
            .min(calls)
            .min((policy.max + surge).saturating_sub(total));
        if room > 0 && !unknown && observed.seed_present {
            if now >= progress.clone_not_before {
                clone(&mut plan, room, false, active + serving, &mut calls);
                total += room;
            } else {
                plan.wake_at(progress.clone_not_before);
            }
        }
    } else if active > cap {
        let excess = (active - cap) as usize;
        for &i in candidates.iter().take(excess) {
            if busy(i) {
                continue;
            }
            drain(
                &mut plan,
                &mut state,
                i,
                DrainCause::AboveDesired { desired },
            );
            active -= 1;
        }
    }
    // 7. Old clones whose replacement is ready.
    if surge > 0 {
        let mut ready = (0..n).filter(|&i| state[i] == BackendState::Ready).count() as u32;
        for &i in candidates.iter().filter(|&&i| old(i)) {
            if state[i].is_leaving() || busy(i) {
                continue;
            }
            if state[i] == BackendState::Ready {
                if ready <= desired {
                    continue;
                }
                ready -= 1;
            } else if active <= desired {
                continue;
            }
            active -= 1;
            drain(&mut plan, &mut state, i, DrainCause::Refresh);
        }
    }
    // 8. The warm pool: refilled by cloning once the serving VMs are provided for (within
    //    max), and trimmed to its size.
    if warm_count < warm_size && active + serving >= cap {
        let room = (warm_size - warm_count)
            .min(calls)
            .min(policy.max.saturating_sub(total));
        if room > 0 && !unknown && observed.seed_present {
            if now >= progress.clone_not_before {
                clone(&mut plan, room, true, 0, &mut calls);
            } else {
                plan.wake_at(progress.clone_not_before);
            }
        }
    } else if warm_count > warm_size {
        let mut surplus: Vec<usize> = (0..n)
            .filter(|&i| state[i] == BackendState::Warm && !busy(i))
            .collect();
        surplus.sort_by(|&a, &b| newest_first(backends, b, a, policy));
        for &i in surplus.iter().take((warm_count - warm_size) as usize) {
            state[i] = BackendState::Deleting;
            plan.steps.push(Step::Delete {
                uuid: backends[i].uuid.clone(),
                name: backends[i].name.clone(),
                cause: DeleteCause::WarmSurplus,
            });
        }
    }
    plan
}

/// The newest first, by creation time, then number.
fn newest_first(backends: &[Backend], a: usize, b: usize, policy: &Policy) -> std::cmp::Ordering {
    let age = |b: &Backend| {
        (
            b.created_at.clone().unwrap_or_default(),
            clone_number(&b.name, &policy.clone_prefix).unwrap_or(0),
            b.uuid.clone(),
        )
    };
    age(&backends[b]).cmp(&age(&backends[a]))
}

/// The cloud's `created_at` (`2018-02-22 14:24:30`, E.1; taken as UTC) in Unix seconds.
pub fn created_unix(text: &str) -> Option<f64> {
    chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S")
        .map(|t| t.and_utc())
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(text.trim()).map(|t| t.to_utc()))
        .ok()
        .map(|t| t.timestamp() as f64)
}

/// When a drain that ends at `until` may be deleted (rule 1).
pub fn drain_due(until: f64, uuid: &str, policy: &Policy, progress: Progress<'_>) -> f64 {
    if !progress.traefik_polls {
        return until;
    }
    match progress.traefik_saw_drain.get(uuid) {
        Some(seen) => {
            let after = (policy.drain_period - policy.traefik_poll_interval).max(TRAEFIK_THROTTLE);
            until.max(seen + after)
        }
        None => until + TRAEFIK_WAIT_CAP,
    }
}

/// Not-ready clones first; then the newest (or oldest) first, by creation time, then number.
fn victim_order(backends: &[Backend], a: usize, b: usize, policy: &Policy) -> std::cmp::Ordering {
    let (x, y) = (&backends[a], &backends[b]);
    let age = |b: &Backend| {
        (
            b.created_at.clone().unwrap_or_default(),
            clone_number(&b.name, &policy.clone_prefix).unwrap_or(0),
            b.uuid.clone(),
        )
    };
    let ready = (x.state == BackendState::Ready).cmp(&(y.state == BackendState::Ready));
    let by_age = match policy.termination {
        Termination::Newest => age(y).cmp(&age(x)),
        Termination::Oldest => age(x).cmp(&age(y)),
    };
    ready.then(by_age)
}

/// The smallest `n` such that `{prefix}{n}` names no VM in the location, no backend and no
/// intent (a reserved name included).
pub fn next_clone_name(observed: Observed<'_>, intents: &[Intent], prefix: &str) -> String {
    next_clone_names(observed, intents, prefix, 1)
        .pop()
        .expect("some number is free")
}

/// The `n` smallest such names, all different (for clone calls made at once).
pub fn next_clone_names(
    observed: Observed<'_>,
    intents: &[Intent],
    prefix: &str,
    n: u32,
) -> Vec<String> {
    (1u64..)
        .map(|k| format!("{prefix}{k}"))
        .filter(|name| {
            !observed.names_in_cloud.contains(name)
                && !observed.backends.iter().any(|b| &b.name == name)
                && !intents.iter().any(|i| &i.name == name)
        })
        .take(n as usize)
        .collect()
}

/// What a fresh list means for the clone calls not yet resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum CloneResolution {
    /// A VM with the name is in the list: the intent is done.
    Found { name: String },
    /// The call ended before the list began and the list has no such VM: the outcome stays
    /// unknown, so the name is reserved (never reused) and the next clone may go.
    NotFound { name: String },
    /// A reserved name whose VM never appeared within [`RESERVE_NAMES_FOR`]: forgotten.
    Expired { name: String },
}

/// How long a name whose clone call had an unknown outcome stays reserved, in seconds. A real
/// cloud finishes a clone whose client hung up within minutes; an hour is ample.
pub const RESERVE_NAMES_FOR: f64 = 3600.0;

/// Resolves provisioning intents against a list that began at `list_started`; reserved names
/// whose VM finally appeared are released (the VM is adopted), and old ones expire.
pub fn resolve_clones(
    intents: &[Intent],
    names_in_cloud: &HashSet<String>,
    list_started: f64,
) -> Vec<CloneResolution> {
    intents
        .iter()
        .filter_map(|i| match i.phase {
            Phase::Provisioning | Phase::Reserved if names_in_cloud.contains(&i.name) => {
                Some(CloneResolution::Found {
                    name: i.name.clone(),
                })
            }
            Phase::Provisioning if i.until.is_some_and(|t| list_started > t) => {
                Some(CloneResolution::NotFound {
                    name: i.name.clone(),
                })
            }
            Phase::Reserved if list_started > i.since + RESERVE_NAMES_FOR => {
                Some(CloneResolution::Expired {
                    name: i.name.clone(),
                })
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
