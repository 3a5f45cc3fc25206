//! Table tests of the planner: one case per rule, each stated as the pool it sees and the steps
//! it must (and must not) take.

use super::*;

const PREFIX: &str = "p-clone-";

fn policy() -> Policy {
    Policy {
        clone_prefix: PREFIX.into(),
        max: 5,
        termination: Termination::Newest,
        drain_period: 30.0,
        boot_timeout: 600.0,
        replace_unhealthy_after: 300.0,
        release_public_ip: false,
        traefik_poll_interval: 5.0,
        max_surge: 1,
        max_concurrent_clones: 1,
        warm_pool: None,
    }
}

/// A backend: `seed` or `n` (clone number), its state, when it entered that state, created at.
fn b(id: &str, state: BackendState, since: f64, created: &str) -> Backend {
    let (uuid, name, role) = match id {
        "seed" => ("seed-uuid".to_string(), "my-seed".to_string(), Role::Seed),
        n => (format!("u{n}"), format!("{PREFIX}{n}"), Role::Clone),
    };
    Backend {
        uuid,
        name,
        role,
        ip: Some("10.0.0.1".into()),
        cloud_status: "running".into(),
        created_at: Some(created.into()),
        state,
        since,
    }
}

use BackendState::{Booting, Deleting, Draining, Ready, Unhealthy};

struct Case {
    backends: Vec<Backend>,
    intents: Vec<Intent>,
    desired: u32,
    policy: Policy,
    busy: Vec<&'static str>,
    released: Vec<&'static str>,
    clone_not_before: f64,
    start_not_before: f64,
    not_before: Vec<(&'static str, f64)>,
    extra_names: Vec<&'static str>,
    seed_present: bool,
    traefik_polls: bool,
    traefik_saw_drain: Vec<(&'static str, f64)>,
    /// The old clones (uuids) of a running refresh.
    replacing: Option<Vec<&'static str>>,
    now: f64,
}

impl Default for Case {
    fn default() -> Self {
        Case {
            backends: vec![b("seed", Ready, 0.0, "2026-01-01 00:00:00")],
            intents: vec![],
            desired: 1,
            policy: policy(),
            busy: vec![],
            released: vec![],
            clone_not_before: 0.0,
            start_not_before: 0.0,
            not_before: vec![],
            extra_names: vec![],
            seed_present: true,
            traefik_polls: false,
            traefik_saw_drain: vec![],
            replacing: None,
            now: 1000.0,
        }
    }
}

impl Case {
    fn run(&self) -> Plan {
        let mut names: HashSet<String> = self.backends.iter().map(|b| b.name.clone()).collect();
        names.extend(self.extra_names.iter().map(|s| s.to_string()));
        let busy: HashSet<String> = self.busy.iter().map(|s| s.to_string()).collect();
        let released: HashSet<String> = self.released.iter().map(|s| s.to_string()).collect();
        let dnb: HashMap<String, f64> = self
            .not_before
            .iter()
            .map(|(u, t)| (u.to_string(), *t))
            .collect();
        let saw: HashMap<String, f64> = self
            .traefik_saw_drain
            .iter()
            .map(|(u, t)| (u.to_string(), *t))
            .collect();
        let replacing: Option<BTreeSet<String>> = self
            .replacing
            .as_ref()
            .map(|r| r.iter().map(|s| s.to_string()).collect());
        plan(
            Observed {
                backends: &self.backends,
                names_in_cloud: &names,
                seed_present: self.seed_present,
            },
            &self.intents,
            self.desired,
            replacing.as_ref(),
            &self.policy,
            Progress {
                busy: &busy,
                released_ips: &released,
                clone_not_before: self.clone_not_before,
                start_not_before: self.start_not_before,
                not_before: &dnb,
                traefik_polls: self.traefik_polls,
                traefik_saw_drain: &saw,
            },
            self.now,
        )
    }
}

fn drained(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::Drain { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn cloned(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::Clone { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn deleted(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::Delete { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn intent(name: &str, uuid: Option<&str>, phase: Phase, since: f64, until: Option<f64>) -> Intent {
    Intent {
        name: name.into(),
        uuid: uuid.map(String::from),
        phase,
        since,
        until,
        reason: String::new(),
        warm: false,
    }
}

#[test]
fn steady_pool_does_nothing_and_needs_no_wake_up() {
    let plan = Case::default().run();
    assert_eq!(plan, Plan::default());
}

#[test]
fn victims_not_ready_first_then_newest_or_oldest() {
    let pool = vec![
        b("seed", Ready, 0.0, "2026-01-01 00:00:00"),
        b("1", Ready, 0.0, "2026-01-01 01:00:00"),
        b("2", Ready, 0.0, "2026-01-01 03:00:00"),
        b("3", Unhealthy, 999.0, "2026-01-01 00:30:00"),
        b("4", Booting, 999.0, "2026-01-01 00:10:00"),
    ];
    // (termination, desired, expected victims in order)
    let table: &[(Termination, u32, &[&str])] = &[
        (Termination::Newest, 4, &["p-clone-3"]),
        (Termination::Newest, 3, &["p-clone-3", "p-clone-4"]),
        (Termination::Oldest, 3, &["p-clone-4", "p-clone-3"]),
        (
            Termination::Newest,
            2,
            &["p-clone-3", "p-clone-4", "p-clone-2"],
        ),
        (
            Termination::Oldest,
            2,
            &["p-clone-4", "p-clone-3", "p-clone-1"],
        ),
        (
            Termination::Newest,
            1,
            &["p-clone-3", "p-clone-4", "p-clone-2", "p-clone-1"],
        ),
    ];
    for (termination, desired, expected) in table {
        let plan = Case {
            backends: pool.clone(),
            desired: *desired,
            policy: Policy {
                termination: *termination,
                ..policy()
            },
            ..Case::default()
        }
        .run();
        assert_eq!(
            drained(&plan),
            *expected,
            "{termination:?} desired {desired}"
        );
        for s in &plan.steps {
            if let Step::Drain { until, cause, .. } = s {
                assert_eq!(*until, 1030.0, "drained for drain_period");
                assert_eq!(*cause, DrainCause::AboveDesired { desired: *desired });
            }
        }
    }
}

#[test]
fn same_creation_time_falls_back_to_the_clone_number() {
    let same = "2026-01-01 01:00:00";
    let plan = Case {
        backends: vec![
            b("seed", Ready, 0.0, same),
            b("2", Ready, 0.0, same),
            b("10", Ready, 0.0, same),
        ],
        desired: 2,
        ..Case::default()
    }
    .run();
    assert_eq!(drained(&plan), ["p-clone-10"]);
}

#[test]
fn the_seed_is_never_a_victim_and_is_known_by_its_uuid_alone() {
    // The seed carries the clone prefix in its name and is the newest VM: still never drained.
    let mut seed = b("seed", Booting, 999.0, "2030-01-01 00:00:00");
    seed.name = format!("{PREFIX}7");
    let plan = Case {
        backends: vec![seed, b("1", Ready, 0.0, "2026-01-01 00:00:00")],
        desired: 1,
        ..Case::default()
    }
    .run();
    assert_eq!(drained(&plan), ["p-clone-1"]);
    // At min = 1 with only the seed, nothing is drained whatever its state.
    for state in [Ready, Unhealthy, Booting] {
        let plan = Case {
            backends: vec![b("seed", state, 0.0, "x")],
            desired: 0,
            ..Case::default()
        }
        .run();
        assert!(plan.steps.is_empty(), "{state:?}: {plan:?}");
    }
    // An unhealthy or booting seed is never given up on or replaced either.
    let plan = Case {
        backends: vec![b("seed", Booting, 0.0, "x")],
        now: 1e9,
        ..Case::default()
    }
    .run();
    assert!(plan.steps.is_empty());
}

#[test]
fn below_desired_clones_one_at_a_time_with_the_smallest_free_name() {
    let plan = Case {
        desired: 3,
        ..Case::default()
    }
    .run();
    assert_eq!(cloned(&plan), ["p-clone-1"]);
    // A clone call in flight (its intent has no VM yet) blocks the next one.
    let plan = Case {
        desired: 3,
        intents: vec![intent("p-clone-1", None, Phase::Provisioning, 990.0, None)],
        ..Case::default()
    }
    .run();
    assert!(cloned(&plan).is_empty());
    // Names taken anywhere in the location, by a backend or by an intent are skipped.
    let plan = Case {
        backends: vec![
            b("seed", Ready, 0.0, "x"),
            b("1", Ready, 0.0, "x"),
            b("3", Draining, 990.0, "x"),
        ],
        intents: vec![
            intent(
                "p-clone-3",
                Some("u3"),
                Phase::Draining,
                990.0,
                Some(1020.0),
            ),
            intent("p-clone-2", None, Phase::Reserved, 900.0, Some(950.0)),
        ],
        extra_names: vec!["p-clone-4"],
        desired: 3,
        ..Case::default()
    }
    .run();
    assert_eq!(cloned(&plan), ["p-clone-5"]);
}

#[test]
fn max_counts_every_vm_of_the_pool_in_any_state_and_unresolved_calls() {
    let pool = vec![
        b("seed", Ready, 0.0, "x"),
        b("1", Ready, 0.0, "x"),
        b("2", Draining, 990.0, "x"),
        b("3", Deleting, 990.0, "x"),
    ];
    // Four VMs, max 4: no clone although only two are active and desired is 3.
    let case = Case {
        backends: pool.clone(),
        desired: 3,
        policy: Policy { max: 4, ..policy() },
        busy: vec!["u3"],
        intents: vec![intent(
            "p-clone-2",
            Some("u2"),
            Phase::Draining,
            990.0,
            Some(1020.0),
        )],
        ..Case::default()
    };
    assert!(cloned(&case.run()).is_empty());
    // With max 5 it clones.
    let case = Case {
        policy: policy(),
        ..case
    };
    assert_eq!(cloned(&case.run()), ["p-clone-4"]);
}

#[test]
fn clone_backoff_and_a_missing_seed_hold_the_clone() {
    let plan = Case {
        desired: 2,
        clone_not_before: 1010.0,
        ..Case::default()
    }
    .run();
    assert!(cloned(&plan).is_empty());
    assert_eq!(plan.next, Some(1010.0), "asks again when the backoff ends");
    let plan = Case {
        desired: 2,
        clone_not_before: 1000.0,
        ..Case::default()
    }
    .run();
    assert_eq!(
        cloned(&plan),
        ["p-clone-1"],
        "the backoff's end is inclusive"
    );
    let plan = Case {
        desired: 2,
        seed_present: false,
        ..Case::default()
    }
    .run();
    assert!(plan.steps.is_empty());
}

#[test]
fn boot_timeout_gives_up_and_replaces_within_max() {
    let case = |now: f64| Case {
        backends: vec![b("seed", Ready, 0.0, "x"), b("1", Booting, 100.0, "x")],
        desired: 2,
        now,
        ..Case::default()
    };
    let plan = case(700.0).run();
    assert!(plan.steps.is_empty());
    assert_eq!(plan.next, Some(700.0), "asked again at the deadline");
    let plan = case(700.5).run();
    assert_eq!(
        plan.steps,
        [
            Step::GiveUpBoot {
                uuid: "u1".into(),
                name: "p-clone-1".into()
            },
            Step::Clone {
                name: "p-clone-2".into(),
                refresh: false,
                warm: false,
            }
        ]
    );
}

#[test]
fn unhealthy_too_long_is_drained_and_replaced() {
    let case = |now: f64| Case {
        backends: vec![b("seed", Ready, 0.0, "x"), b("1", Unhealthy, 100.0, "x")],
        desired: 2,
        now,
        ..Case::default()
    };
    let plan = case(350.0).run();
    assert!(plan.steps.is_empty(), "unhealthy for a while: wait");
    assert_eq!(plan.next, Some(400.0));
    let plan = case(401.0).run();
    assert_eq!(
        plan.steps,
        [
            Step::Drain {
                uuid: "u1".into(),
                name: "p-clone-1".into(),
                until: 431.0,
                cause: DrainCause::Unhealthy
            },
            Step::Clone {
                name: "p-clone-2".into(),
                refresh: false,
                warm: false,
            }
        ]
    );
}

#[test]
fn a_drain_is_never_cut_short_nor_undone() {
    let case = |now: f64, desired: u32| Case {
        backends: vec![b("seed", Ready, 0.0, "x"), b("1", Draining, 100.0, "x")],
        intents: vec![intent(
            "p-clone-1",
            Some("u1"),
            Phase::Draining,
            100.0,
            Some(130.0),
        )],
        desired,
        now,
        ..Case::default()
    };
    let plan = case(129.9, 1).run();
    assert!(plan.steps.is_empty());
    assert_eq!(plan.next, Some(130.0));
    // Desired rose again during the drain: a new clone, the draining one still goes.
    let plan = case(110.0, 2).run();
    assert_eq!(cloned(&plan), ["p-clone-2"]);
    assert!(deleted(&plan).is_empty());
    let plan = case(130.0, 2).run();
    assert_eq!(deleted(&plan), ["p-clone-1"]);
    assert!(matches!(
        plan.steps[0],
        Step::Delete {
            cause: DeleteCause::DrainFinished,
            ..
        }
    ));
}

#[test]
fn deletes_wait_for_their_backoff_and_one_call_per_vm() {
    let case = Case {
        backends: vec![b("seed", Ready, 0.0, "x"), b("1", Deleting, 100.0, "x")],
        not_before: vec![("u1", 1005.0)],
        ..Case::default()
    };
    let plan = case.run();
    assert!(deleted(&plan).is_empty());
    assert_eq!(plan.next, Some(1005.0));
    let plan = Case {
        now: 1005.0,
        ..case
    }
    .run();
    assert_eq!(deleted(&plan), ["p-clone-1"]);
    let plan = Case {
        backends: vec![b("seed", Ready, 0.0, "x"), b("1", Deleting, 100.0, "x")],
        busy: vec!["u1"],
        ..Case::default()
    }
    .run();
    assert!(
        plan.steps.is_empty(),
        "a delete in flight is not issued twice"
    );
}

#[test]
fn a_vanished_clone_is_replaced() {
    // The list no longer has p-clone-1 (deleted out of band): desired 2, one VM.
    let plan = Case {
        desired: 2,
        ..Case::default()
    }
    .run();
    assert_eq!(cloned(&plan), ["p-clone-1"]);
}

#[test]
fn two_vms_with_one_name_are_one_surplus_vm() {
    let mut late = b("1", Booting, 999.0, "2026-01-01 02:00:00");
    late.uuid = "u1-late".into();
    let plan = Case {
        backends: vec![
            b("seed", Ready, 0.0, "x"),
            b("1", Ready, 0.0, "2026-01-01 01:00:00"),
            late,
        ],
        desired: 2,
        ..Case::default()
    }
    .run();
    assert_eq!(
        plan.steps,
        [Step::Drain {
            uuid: "u1-late".into(),
            name: "p-clone-1".into(),
            until: 1030.0,
            cause: DrainCause::AboveDesired { desired: 2 }
        }]
    );
}

#[test]
fn public_ips_released_once_per_running_clone() {
    let mut booting = b("2", Booting, 999.0, "x");
    booting.cloud_status = "starting".into();
    let plan = Case {
        backends: vec![
            b("seed", Ready, 0.0, "x"),
            b("1", Ready, 0.0, "x"),
            booting,
            b("3", Ready, 0.0, "x"),
            b("4", Draining, 999.0, "x"),
        ],
        desired: 4,
        released: vec!["u3"],
        policy: Policy {
            release_public_ip: true,
            ..policy()
        },
        ..Case::default()
    }
    .run();
    assert_eq!(
        plan.steps,
        [Step::ReleaseIp {
            uuid: "u1".into(),
            name: "p-clone-1".into()
        }]
    );
}

#[test]
fn unknown_clone_outcome_blocks_until_a_list_that_began_after_it() {
    let ended = intent("p-clone-1", None, Phase::Provisioning, 900.0, Some(950.0));
    let names = HashSet::new();
    assert_eq!(
        resolve_clones(std::slice::from_ref(&ended), &names, 949.0),
        []
    );
    assert_eq!(
        resolve_clones(std::slice::from_ref(&ended), &names, 950.0),
        []
    );
    assert_eq!(
        resolve_clones(std::slice::from_ref(&ended), &names, 951.0),
        [CloneResolution::NotFound {
            name: "p-clone-1".into()
        }]
    );
    // Still in flight: no list decides it.
    let in_flight = intent("p-clone-1", None, Phase::Provisioning, 900.0, None);
    assert_eq!(resolve_clones(&[in_flight], &names, 1e9), []);
    // Found by name: done, whether it was provisioning or reserved.
    let names: HashSet<String> = ["p-clone-1".to_string()].into();
    let reserved = intent("p-clone-1", None, Phase::Reserved, 900.0, Some(950.0));
    for i in [ended.clone(), reserved.clone()] {
        assert_eq!(
            resolve_clones(&[i], &names, 951.0),
            [CloneResolution::Found {
                name: "p-clone-1".into()
            }]
        );
    }
    // A reserved name expires after an hour.
    let none = HashSet::new();
    assert_eq!(
        resolve_clones(std::slice::from_ref(&reserved), &none, 4500.0),
        []
    );
    assert_eq!(
        resolve_clones(&[reserved], &none, 4501.0),
        [CloneResolution::Expired {
            name: "p-clone-1".into()
        }]
    );
    // While blocked, the planner does not clone, and the unresolved call counts as active.
    let plan = Case {
        desired: 2,
        intents: vec![ended.clone()],
        ..Case::default()
    }
    .run();
    assert!(plan.steps.is_empty());
    // Once reserved, the next clone takes the next number.
    let plan = Case {
        desired: 2,
        intents: vec![Intent {
            phase: Phase::Reserved,
            ..ended
        }],
        ..Case::default()
    }
    .run();
    assert_eq!(cloned(&plan), ["p-clone-2"]);
}

#[test]
fn busy_vms_are_not_drained_twice_nor_given_more_steps() {
    let plan = Case {
        backends: vec![b("seed", Ready, 0.0, "x"), b("1", Ready, 0.0, "x")],
        busy: vec!["u1"],
        desired: 1,
        policy: Policy {
            release_public_ip: true,
            ..policy()
        },
        ..Case::default()
    }
    .run();
    assert!(plan.steps.is_empty(), "{plan:?}");
}

#[test]
fn next_wake_up_is_the_earliest_deadline() {
    let plan = Case {
        backends: vec![
            b("seed", Ready, 0.0, "x"),
            b("1", Booting, 900.0, "x"),   // boot deadline 1500
            b("2", Unhealthy, 800.0, "x"), // replace at 1100
            b("3", Draining, 990.0, "x"),  // delete at 1020
        ],
        intents: vec![intent(
            "p-clone-3",
            Some("u3"),
            Phase::Draining,
            990.0,
            Some(1020.0),
        )],
        desired: 3,
        ..Case::default()
    }
    .run();
    assert_eq!(plan.next, Some(1020.0));
}

#[test]
fn a_clone_that_answered_counts_once_as_its_backend() {
    // The call answered (uuid known) but no list has shown the VM yet: the backend counts, the
    // intent does not count again, and the next clone may go.
    let plan = Case {
        backends: vec![b("seed", Ready, 0.0, "x"), b("1", Booting, 999.0, "x")],
        intents: vec![intent(
            "p-clone-1",
            Some("u1"),
            Phase::Provisioning,
            990.0,
            Some(999.0),
        )],
        extra_names: vec![],
        desired: 3,
        policy: Policy { max: 3, ..policy() },
        ..Case::default()
    };
    let mut names: HashSet<String> = HashSet::new();
    names.insert("my-seed".into());
    assert_eq!(unresolved_clones(&plan.intents, &names).count(), 0);
    assert_eq!(cloned(&plan.run()), ["p-clone-2"]);
}

#[test]
fn a_drain_waits_until_traefik_has_fetched_a_configuration_without_the_vm() {
    // drain_period 30 s, poll interval 5 s: 25 s after Traefik's fetch, and never before until.
    let case = |now: f64, polls: bool, saw: Option<f64>| Case {
        backends: vec![b("seed", Ready, 0.0, "x"), b("1", Draining, 100.0, "x")],
        intents: vec![intent(
            "p-clone-1",
            Some("u1"),
            Phase::Draining,
            100.0,
            Some(130.0),
        )],
        traefik_polls: polls,
        traefik_saw_drain: saw.map(|t| vec![("u1", t)]).unwrap_or_default(),
        now,
        ..Case::default()
    };
    // (now, Traefik polls, fetched without it at, deleted?, next wake-up)
    type Row = (f64, bool, Option<f64>, bool, Option<f64>);
    let table: &[Row] = &[
        (130.0, false, None, true, None), // no Traefik in front: the drain period alone
        (130.0, true, Some(101.0), true, None), // fetched at once: 101 + 25 < 130
        (130.0, true, Some(110.0), false, Some(135.0)), // fetched late: 110 + 25
        (135.0, true, Some(110.0), true, None),
        (130.0, true, None, false, Some(250.0)), // not fetched yet: wait, up to the cap
        (249.9, true, None, false, Some(250.0)),
        (250.0, true, None, true, None),
    ];
    for (now, polls, saw, deletes, next) in table {
        let plan = case(*now, *polls, *saw).run();
        assert_eq!(
            !deleted(&plan).is_empty(),
            *deletes,
            "now {now} polls {polls} saw {saw:?}: {plan:?}"
        );
        assert_eq!(plan.next, *next, "now {now} polls {polls} saw {saw:?}");
    }
    // The throttle is the least wait after the fetch, whatever the drain period.
    let p = Policy {
        drain_period: 3.0,
        traefik_poll_interval: 2.0,
        ..policy()
    };
    let saw: HashMap<String, f64> = [("u1".to_string(), 10.0)].into();
    let (busy, rel, nb) = (HashSet::new(), HashSet::new(), HashMap::new());
    let progress = Progress {
        busy: &busy,
        released_ips: &rel,
        clone_not_before: 0.0,
        start_not_before: 0.0,
        not_before: &nb,
        traefik_polls: true,
        traefik_saw_drain: &saw,
    };
    assert_eq!(drain_due(11.0, "u1", &p, progress), 12.0);
}

// ---- 7. rolling refresh ---------------------------------------------------------------------

fn surged(plan: &Plan) -> Vec<(String, bool)> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::Clone { name, refresh, .. } => Some((name.clone(), *refresh)),
            _ => None,
        })
        .collect()
}

/// The seed and three old clones, all ready, desired 4, a refresh replacing u1..u3.
fn refreshing() -> Case {
    Case {
        backends: vec![
            b("seed", Ready, 0.0, "a"),
            b("1", Ready, 0.0, "a"),
            b("2", Ready, 0.0, "b"),
            b("3", Ready, 0.0, "c"),
        ],
        desired: 4,
        replacing: Some(vec!["u1", "u2", "u3"]),
        ..Case::default()
    }
}

#[test]
fn a_refresh_clones_a_surge_vm_first_even_at_max_and_drains_nothing_yet() {
    let mut case = refreshing();
    case.policy.max = 4;
    let plan = case.run();
    assert_eq!(surged(&plan), [("p-clone-4".to_string(), true)]);
    assert!(
        drained(&plan).is_empty(),
        "nothing old goes before its replacement is ready"
    );
    // No refresh: at desired, nothing to do.
    case.replacing = None;
    assert!(case.run().steps.is_empty());
    // A second surge VM waits for max + max_surge.
    case.replacing = Some(vec!["u1", "u2", "u3"]);
    case.backends.push(b("4", Booting, 900.0, "d"));
    assert!(case.run().steps.is_empty(), "{:?}", case.run());
    case.policy.max_surge = 2;
    assert_eq!(surged(&case.run()), [("p-clone-5".to_string(), true)]);
}

#[test]
fn an_old_clone_is_drained_only_once_its_replacement_is_ready() {
    let mut case = refreshing();
    case.backends.push(b("4", Booting, 900.0, "d"));
    let plan = case.run();
    assert!(plan.steps.is_empty(), "the surge VM boots: wait, {plan:?}");
    case.backends[4].state = Ready;
    let plan = case.run();
    // The newest old clone goes (termination = newest), with the refresh as its cause.
    assert_eq!(drained(&plan), ["p-clone-3"]);
    assert!(matches!(
        plan.steps[0],
        Step::Drain {
            cause: DrainCause::Refresh,
            ..
        }
    ));
    assert!(
        surged(&plan).is_empty(),
        "the next surge VM comes in the next pass"
    );
    // Once it is draining, the next surge VM is cloned.
    case.backends[3].state = Draining;
    case.replacing = Some(vec!["u1", "u2"]);
    assert_eq!(surged(&case.run()), [("p-clone-5".to_string(), true)]);
}

#[test]
fn the_seed_is_never_replaced_and_ready_capacity_never_drops_below_desired() {
    // Two surge VMs ready at once: two old clones may go, never the seed, never a third.
    let mut case = refreshing();
    case.policy.max_surge = 2;
    case.backends.push(b("4", Ready, 0.0, "d"));
    case.backends.push(b("5", Ready, 0.0, "e"));
    let plan = case.run();
    assert_eq!(drained(&plan), ["p-clone-3", "p-clone-2"]);
    // An old clone that is not ready may go while the active VMs stay at desired; a ready one
    // may not when it would leave fewer ready than desired.
    let mut case = refreshing();
    case.backends[1].state = Unhealthy;
    case.backends[1].since = 900.0;
    case.backends.push(b("4", Booting, 900.0, "d"));
    let plan = case.run();
    assert_eq!(
        drained(&plan),
        ["p-clone-1"],
        "not ready, and 4 stay active"
    );
    // With desired 6 the unhealthy old clone is one of the 6 active VMs: it stays (rule 3
    // replaces it in time), and so do the ready ones (3 ready, fewer than desired).
    case.desired = 6;
    case.backends.push(b("5", Booting, 900.0, "d"));
    let plan = case.run();
    assert!(drained(&plan).is_empty(), "{plan:?}");
}

#[test]
fn a_scale_down_during_a_refresh_removes_old_clones_first() {
    let mut case = refreshing();
    case.backends.push(b("4", Ready, 0.0, "z"));
    case.desired = 2;
    // Active 5 above desired 2 + surge 1: two go, and both are old (the newest old first).
    let plan = case.run();
    let d = drained(&plan);
    assert_eq!(d[..2], ["p-clone-3", "p-clone-2"]);
    assert!(
        !d.contains(&"p-clone-4".to_string()),
        "the new clone stays: {d:?}"
    );
    // Rule 7 then also replaces the last old one: 2 ready are left (seed, p-clone-4).
    assert_eq!(d, ["p-clone-3", "p-clone-2", "p-clone-1"]);
}

#[test]
fn a_scale_up_during_a_refresh_clones_a_plain_vm() {
    let mut case = refreshing();
    case.desired = 5;
    assert_eq!(surged(&case.run()), [("p-clone-4".to_string(), false)]);
}

// ---- 5. parallel scale-out ------------------------------------------------------------------

#[test]
fn a_scale_up_makes_up_to_max_concurrent_clones_calls_at_once_under_distinct_names() {
    let parallel = Policy {
        max_concurrent_clones: 3,
        ..policy()
    };
    let case = |desired: u32, intents: Vec<Intent>, max: u32| Case {
        desired,
        intents,
        policy: Policy {
            max,
            ..parallel.clone()
        },
        ..Case::default()
    };
    // Seed alone, desired 5: three calls now (the concurrency), not four.
    assert_eq!(
        cloned(&case(5, vec![], 5).run()),
        ["p-clone-1", "p-clone-2", "p-clone-3"]
    );
    // Desired 3: two are missing, two calls.
    assert_eq!(
        cloned(&case(3, vec![], 5).run()),
        ["p-clone-1", "p-clone-2"]
    );
    // One call in flight: two more, under the next free names.
    let flying = vec![intent("p-clone-1", None, Phase::Provisioning, 990.0, None)];
    assert_eq!(
        cloned(&case(5, flying.clone(), 5).run()),
        ["p-clone-2", "p-clone-3"]
    );
    // `max` bounds them: seed + one in flight + one more = max 3.
    assert_eq!(cloned(&case(5, flying, 3).run()), ["p-clone-2"]);
    // A call that ended with an unknown outcome blocks every new one until a list decides it.
    let unknown = vec![intent(
        "p-clone-1",
        None,
        Phase::Provisioning,
        900.0,
        Some(950.0),
    )];
    assert!(cloned(&case(5, unknown, 5).run()).is_empty());
    // With a concurrency of 1 (the table's default), one at a time as before.
    let one = Case {
        desired: 5,
        ..Case::default()
    };
    assert_eq!(cloned(&one.run()), ["p-clone-1"]);
}

mod warm;
