//! Says what a planned [`Step`] is and why, in words an operator reads: the plan endpoint
//! (`GET /v1/pools/{pool}/plan`) and a dry run's activities show these. Pure, like the planner.

use super::{
    unresolved_clones, DeleteCause, DrainCause, Intent, Observed, Policy, Step, StopCause,
};

/// One step as an operator reads it: `clone calculate-service-clone-3: below desired size (2 of 3)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Described {
    /// What would be (or was) done: `clone`, `drain`, `replace_unhealthy`, `boot_failed`,
    /// `delete`, `release_ip`, and the warm pool's `start`, `stop` and `promote` (the activity
    /// actions of the same steps).
    pub action: &'static str,
    /// The VM's name (for a clone: the name it will get).
    pub vm: String,
    pub reason: String,
}

/// What a reason mentions beyond the step itself.
#[derive(Debug, Clone, Copy)]
pub struct Situation<'a> {
    pub desired: u32,
    /// The pool's size as the planner counts it against desired: VMs not leaving, plus clone
    /// calls not yet resolved ([`counted_size`]).
    pub size: u32,
    pub policy: &'a Policy,
}

/// VMs not draining, deleting or in the warm pool, plus unresolved clone calls made to serve:
/// what rules 5 and 6 compare with desired.
pub fn counted_size(observed: Observed<'_>, intents: &[Intent]) -> u32 {
    let active = observed
        .backends
        .iter()
        .filter(|b| b.state.is_active())
        .count();
    let serving = unresolved_clones(intents, observed.names_in_cloud)
        .filter(|i| !i.warm)
        .count();
    (active + serving) as u32
}

/// The step's action, VM and reason.
pub fn describe(step: &Step, at: &Situation<'_>) -> Described {
    let (action, vm, reason) = match step {
        Step::Clone {
            name, warm: true, ..
        } => (
            "clone",
            name,
            format!(
                "warm pool below its size {}: a clone, booted once and then stopped",
                at.policy.warm_pool.map_or(0, |w| w.size)
            ),
        ),
        Step::Clone {
            name,
            refresh: false,
            ..
        } => (
            "clone",
            name,
            format!("below desired size ({} of {})", at.size, at.desired),
        ),
        Step::Clone {
            name,
            refresh: true,
            ..
        } => (
            "clone",
            name,
            format!(
                "refresh: a new clone before an old one goes (up to max_surge {} above desired {})",
                at.policy.max_surge, at.desired
            ),
        ),
        Step::Drain { name, cause, .. } => match cause {
            DrainCause::AboveDesired { desired } => (
                "drain",
                name,
                format!("above desired size ({} of {desired})", at.size),
            ),
            DrainCause::Refresh => (
                "drain",
                name,
                "refresh: an old clone, with a ready replacement".to_string(),
            ),
            DrainCause::Unhealthy => (
                "replace_unhealthy",
                name,
                format!(
                    "unhealthy for longer than replace_unhealthy_after ({})",
                    seconds(at.policy.replace_unhealthy_after)
                ),
            ),
        },
        Step::GiveUpBoot { name, .. } => (
            "boot_failed",
            name,
            format!(
                "not healthy within boot_timeout ({}): to be deleted",
                seconds(at.policy.boot_timeout)
            ),
        ),
        Step::Delete { name, cause, .. } => (
            "delete",
            name,
            match cause {
                DeleteCause::DrainFinished => "drain finished".to_string(),
                DeleteCause::Marked => {
                    "marked for deletion (a given-up boot, or a delete to retry)".to_string()
                }
                DeleteCause::WarmSurplus => format!(
                    "a warm clone beyond warm_pool.size {}",
                    at.policy.warm_pool.map_or(0, |w| w.size)
                ),
                DeleteCause::WarmTooOld => format!(
                    "a warm clone older than warm_pool.max_age ({}): replaced",
                    seconds(at.policy.warm_pool.map_or(0.0, |w| w.max_age))
                ),
                DeleteCause::WarmBeforeRefresh => {
                    "a warm clone made before the refresh: replaced".to_string()
                }
            },
        ),
        Step::Start { name, .. } => (
            "start",
            name,
            format!(
                "below desired size ({} of {}): a warm clone starts, then its health gate",
                at.size, at.desired
            ),
        ),
        Step::Stop { name, cause, .. } => (
            "stop",
            name,
            match cause {
                StopCause::Warmed => "passed its health gate: stopped into the warm pool",
                StopCause::ScaleIn => "drained: stopped back into the warm pool, which is short",
            }
            .to_string(),
        ),
        Step::Promote { name, .. } => (
            "promote",
            name,
            format!(
                "below desired size ({} of {}) with no warm clone to start: a warming clone serves instead",
                at.size, at.desired
            ),
        ),
        Step::ReleaseIp { name, .. } => (
            "release_ip",
            name,
            "release_public_ip = true: the running clone's public IPs are released".to_string(),
        ),
    };
    Described {
        action,
        vm: vm.clone(),
        reason,
    }
}

/// `90s`, `1.5s`: a policy duration as the reason shows it.
fn seconds(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::config::Termination;
    use crate::pool::plan::Phase;
    use crate::pool::{Backend, BackendState, Role};

    fn policy() -> Policy {
        Policy {
            clone_prefix: "web-clone-".into(),
            max: 5,
            termination: Termination::Newest,
            drain_period: 30.0,
            boot_timeout: 600.0,
            replace_unhealthy_after: 90.5,
            release_public_ip: true,
            traefik_poll_interval: 5.0,
            max_surge: 1,
            max_concurrent_clones: 1,
            warm_pool: None,
        }
    }

    fn line(step: Step, size: u32, desired: u32) -> String {
        let policy = policy();
        let d = describe(
            &step,
            &Situation {
                desired,
                size,
                policy: &policy,
            },
        );
        format!("{} {}: {}", d.action, d.vm, d.reason)
    }

    #[test]
    fn every_step_reads_as_what_and_why() {
        let (uuid, name) = ("u3".to_string(), "web-clone-3".to_string());
        let cases = [
            (
                Step::Clone {
                    name: name.clone(),
                    refresh: false,
                    warm: false,
                },
                "clone web-clone-3: below desired size (2 of 3)",
            ),
            (
                Step::Clone {
                    name: name.clone(),
                    refresh: true,
                    warm: false,
                },
                "clone web-clone-3: refresh: a new clone before an old one goes (up to max_surge 1 above desired 3)",
            ),
            (
                Step::Drain {
                    uuid: uuid.clone(),
                    name: name.clone(),
                    until: 0.0,
                    cause: DrainCause::Refresh,
                },
                "drain web-clone-3: refresh: an old clone, with a ready replacement",
            ),
            (
                Step::Drain {
                    uuid: uuid.clone(),
                    name: name.clone(),
                    until: 0.0,
                    cause: DrainCause::AboveDesired { desired: 3 },
                },
                "drain web-clone-3: above desired size (2 of 3)",
            ),
            (
                Step::Drain {
                    uuid: uuid.clone(),
                    name: name.clone(),
                    until: 0.0,
                    cause: DrainCause::Unhealthy,
                },
                "replace_unhealthy web-clone-3: unhealthy for longer than replace_unhealthy_after (90.5s)",
            ),
            (
                Step::GiveUpBoot {
                    uuid: uuid.clone(),
                    name: name.clone(),
                },
                "boot_failed web-clone-3: not healthy within boot_timeout (600s): to be deleted",
            ),
            (
                Step::Delete {
                    uuid: uuid.clone(),
                    name: name.clone(),
                    cause: DeleteCause::DrainFinished,
                },
                "delete web-clone-3: drain finished",
            ),
            (
                Step::ReleaseIp {
                    uuid: uuid.clone(),
                    name: name.clone(),
                },
                "release_ip web-clone-3: release_public_ip = true: the running clone's public IPs are released",
            ),
        ];
        for (step, want) in cases {
            assert_eq!(line(step, 2, 3), want);
        }
    }

    #[test]
    fn the_size_counts_what_the_planner_counts() {
        let vm = |n: &str, state| Backend {
            uuid: format!("u{n}"),
            name: format!("web-clone-{n}"),
            role: Role::Clone,
            ip: None,
            cloud_status: "running".into(),
            created_at: None,
            state,
            since: 0.0,
        };
        let backends = [
            vm("1", BackendState::Ready),
            vm("2", BackendState::Booting),
            vm("3", BackendState::Draining),
            vm("4", BackendState::Deleting),
        ];
        let names: HashSet<String> = backends.iter().map(|b| b.name.clone()).collect();
        let intents = [Intent {
            name: "web-clone-5".into(),
            uuid: None,
            phase: Phase::Provisioning,
            since: 0.0,
            until: None,
            reason: String::new(),
            warm: false,
        }];
        let observed = Observed {
            backends: &backends,
            names_in_cloud: &names,
            seed_present: true,
        };
        // Ready and booting count, leaving ones do not, the clone call in flight does.
        assert_eq!(counted_size(observed, &intents), 3);
    }
}
