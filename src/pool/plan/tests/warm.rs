//! Rule 8, the warm pool: refilled by cloning (after the serving VMs), started by a scale-up
//! before anything is cloned, stopped into on scale-in when short, replaced when too old or made
//! before a refresh, trimmed to its size, and counted against `max` but never against desired.

use super::*;
use BackendState::{Starting, Stopping, Warm, Warming};

/// Created at 2026-01-01 00:00:00 UTC; `now` is an hour later.
const T0: f64 = 1_767_225_600.0;
const NOW: f64 = T0 + 3600.0;

fn warm_policy(size: u32, concurrency: u32) -> Policy {
    Policy {
        max_concurrent_clones: concurrency,
        warm_pool: Some(WarmPolicy {
            size,
            max_age: 7.0 * 86400.0,
        }),
        ..policy()
    }
}

/// A clone in the warm pool's states (stopped when warm or starting).
fn w(id: &str, state: BackendState, created: &str) -> Backend {
    let mut backend = b(id, state, NOW - 10.0, created);
    if matches!(state, Warm | Starting) {
        backend.cloud_status = "stopped".into();
    }
    backend
}

fn seed() -> Backend {
    b("seed", Ready, T0, "2026-01-01 00:00:00")
}

fn case(backends: Vec<Backend>, desired: u32, policy: Policy) -> Case {
    Case {
        backends,
        desired,
        policy,
        now: NOW,
        ..Case::default()
    }
}

fn kinds(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| match s {
            Step::Clone {
                name, warm: true, ..
            } => format!("refill {name}"),
            Step::Clone { name, .. } => format!("clone {name}"),
            Step::Start { name, .. } => format!("start {name}"),
            Step::Stop { name, cause, .. } => format!("stop {name} {cause:?}"),
            Step::Promote { name, .. } => format!("promote {name}"),
            Step::Delete { name, cause, .. } => format!("delete {name} {cause:?}"),
            Step::Drain { name, .. } => format!("drain {name}"),
            Step::GiveUpBoot { name, .. } => format!("give_up {name}"),
            Step::ReleaseIp { name, .. } => format!("release_ip {name}"),
        })
        .collect()
}

const C: &str = "2026-01-01 00:00:00";

/// What the case is, the pool, desired, the policy, the steps.
type Row = (&'static str, Vec<Backend>, u32, Policy, Vec<&'static str>);

#[test]
fn the_table() {
    let fresh = "2026-01-01 00:30:00";
    let ancient = "2025-12-01 00:00:00";
    // (what the case is, pool, desired, policy, steps)
    let table: Vec<Row> = vec![
        (
            "an empty warm pool is refilled by cloning, up to the concurrency",
            vec![seed()],
            1,
            warm_policy(2, 3),
            vec!["refill p-clone-1", "refill p-clone-2"],
        ),
        (
            "one refill call at a time with a concurrency of 1",
            vec![seed()],
            1,
            warm_policy(2, 1),
            vec!["refill p-clone-1"],
        ),
        (
            "warm VMs count against max: no refill beyond it",
            vec![seed(), b("1", Ready, T0, C)],
            2,
            Policy {
                max: 3,
                ..warm_policy(2, 3)
            },
            vec!["refill p-clone-2"],
        ),
        (
            "the serving VMs come first: no refill while below desired",
            vec![seed()],
            3,
            warm_policy(2, 3),
            vec!["clone p-clone-1", "clone p-clone-2"],
        ),
        (
            "a scale-up starts a warm clone (and the warm pool refills at once)",
            vec![seed(), w("1", Warm, C)],
            2,
            warm_policy(1, 3),
            vec!["start p-clone-1", "refill p-clone-2"],
        ),
        (
            "the newest warm clone is started first",
            vec![seed(), w("1", Warm, C), w("2", Warm, fresh)],
            2,
            warm_policy(2, 3),
            vec!["start p-clone-2", "refill p-clone-3"],
        ),
        (
            "a scale-up beyond the warm pool starts them all and clones the rest",
            vec![seed(), w("1", Warm, C)],
            3,
            warm_policy(1, 3),
            vec!["start p-clone-1", "clone p-clone-2"],
        ),
        (
            "starts count towards max_concurrent_clones",
            vec![seed(), w("1", Warm, C), w("2", Warm, C), w("3", Warm, C)],
            4,
            warm_policy(3, 2),
            vec!["start p-clone-3", "start p-clone-2"],
        ),
        (
            "at max, a scale-up still starts warm clones (they count already)",
            vec![seed(), w("1", Warm, C), w("2", Warm, C)],
            3,
            Policy {
                max: 3,
                ..warm_policy(2, 3)
            },
            vec!["start p-clone-2", "start p-clone-1"],
        ),
        (
            "warm clones are not part of desired: nothing to drain",
            vec![seed(), w("1", Warm, C), w("2", Warm, C)],
            1,
            warm_policy(2, 3),
            vec![],
        ),
        (
            "a warm clone older than max_age is replaced, and not started",
            vec![seed(), w("1", Warm, ancient)],
            2,
            warm_policy(1, 3),
            vec!["delete p-clone-1 WarmTooOld", "clone p-clone-2"],
        ),
        (
            "a warming clone serves instead when none is warm",
            vec![seed(), w("1", Warming, C)],
            2,
            Policy {
                max: 2,
                ..warm_policy(1, 3)
            },
            vec!["promote p-clone-1"],
        ),
        (
            "a warming clone that passed its gate is stopped",
            vec![seed(), w("1", Stopping, C)],
            1,
            warm_policy(1, 3),
            vec!["stop p-clone-1 Warmed"],
        ),
        (
            "a start cut short by a restart is taken again (it counts as serving, not warm)",
            vec![seed(), w("1", Starting, C)],
            2,
            warm_policy(1, 3),
            vec!["start p-clone-1", "refill p-clone-2"],
        ),
        (
            "a warm pool above its size is trimmed, oldest first",
            vec![seed(), w("1", Warm, C), w("2", Warm, fresh)],
            1,
            warm_policy(1, 3),
            vec!["delete p-clone-1 WarmSurplus"],
        ),
        (
            "without a warm pool, a warm clone is surplus",
            vec![seed(), w("1", Warm, C)],
            1,
            policy(),
            vec!["delete p-clone-1 WarmSurplus"],
        ),
    ];
    for (what, backends, desired, policy, steps) in table {
        let plan = case(backends, desired, policy).run();
        assert_eq!(kinds(&plan), steps, "{what}");
    }
}

#[test]
fn after_a_failed_start_the_scale_up_clones_until_the_start_backoff_ends() {
    let held = Case {
        start_not_before: NOW + 5.0,
        ..case(vec![seed(), w("1", Warm, C)], 2, warm_policy(1, 3))
    };
    assert_eq!(kinds(&held.run()), ["clone p-clone-2"]);
    let over = Case {
        now: NOW + 5.0,
        ..held
    };
    assert_eq!(kinds(&over.run()), ["start p-clone-1", "refill p-clone-2"]);
}

#[test]
fn the_planner_asks_to_be_asked_again_when_a_warm_clone_gets_too_old() {
    let policy = Policy {
        warm_pool: Some(WarmPolicy {
            size: 1,
            max_age: 7200.0,
        }),
        ..policy()
    };
    let plan = case(vec![seed(), w("1", Warm, C)], 1, policy).run();
    assert!(plan.steps.is_empty());
    assert_eq!(plan.next, Some(T0 + 7200.0), "created at T0, max_age 2 h");
}

#[test]
fn a_warming_clone_past_boot_timeout_is_given_up() {
    let mut warming = w("1", Warming, C);
    warming.since = NOW - 601.0;
    let plan = case(vec![seed(), warming], 1, warm_policy(1, 1)).run();
    // Replaced like any failed boot (the reconciler backs off that clone).
    assert_eq!(kinds(&plan), ["give_up p-clone-1", "refill p-clone-2"]);
}

#[test]
fn refill_calls_in_flight_count_towards_the_warm_pool_not_desired() {
    let mut refill = intent("p-clone-1", None, Phase::Provisioning, NOW, None);
    refill.warm = true;
    let plan = Case {
        intents: vec![refill.clone()],
        ..case(vec![seed()], 1, warm_policy(1, 3))
    }
    .run();
    assert_eq!(kinds(&plan), Vec::<String>::new(), "the pool is full");
    // A scale-up is not held by it: the serving clone goes beside it.
    let plan = Case {
        intents: vec![refill],
        ..case(vec![seed()], 2, warm_policy(1, 3))
    }
    .run();
    assert_eq!(kinds(&plan), ["clone p-clone-2"]);
}

#[test]
fn a_drained_clone_goes_back_into_a_short_warm_pool_else_is_deleted() {
    let draining = || {
        let mut d = w("1", Draining, C);
        d.since = NOW - 40.0;
        d
    };
    let drain = |warm: bool| {
        let mut i = intent(
            "p-clone-1",
            Some("u1"),
            Phase::Draining,
            NOW - 40.0,
            Some(NOW - 10.0),
        );
        i.warm = warm;
        i
    };
    let run = |backends: Vec<Backend>, warm: bool| {
        Case {
            intents: vec![drain(warm)],
            ..case(backends, 1, warm_policy(1, 3))
        }
        .run()
    };
    assert_eq!(
        kinds(&run(vec![seed(), draining()], true)),
        ["stop p-clone-1 ScaleIn"]
    );
    assert_eq!(
        kinds(&run(vec![seed(), draining(), w("2", Warm, C)], true)),
        ["delete p-clone-1 DrainFinished"],
        "the warm pool is full"
    );
    assert_eq!(
        kinds(&run(vec![seed(), draining()], false)),
        ["delete p-clone-1 DrainFinished", "refill p-clone-2"],
        "an unhealthy clone's drain (not warm) is deleted; the refill clones"
    );
    // A drain not over yet waits, whatever the warm pool.
    let plan = Case {
        intents: vec![drain(true)],
        now: NOW - 20.0,
        ..case(vec![seed(), draining()], 1, warm_policy(1, 3))
    }
    .run();
    assert!(!kinds(&plan).iter().any(|k| k.contains("p-clone-1")));
    // A stop cut short by a restart is taken again, as a scale-in's.
    let plan = Case {
        intents: vec![intent("p-clone-1", Some("u1"), Phase::Stopping, NOW, None)],
        ..case(vec![seed(), w("1", Stopping, C)], 1, warm_policy(1, 3))
    }
    .run();
    assert_eq!(kinds(&plan), ["stop p-clone-1 ScaleIn"]);
    // And a stop in flight is not taken twice.
    let plan = Case {
        busy: vec!["u1"],
        ..case(vec![seed(), w("1", Stopping, C)], 1, warm_policy(1, 3))
    }
    .run();
    assert_eq!(kinds(&plan), Vec::<String>::new());
}

#[test]
fn a_refresh_replaces_warm_clones_without_a_surge() {
    let plan = Case {
        replacing: Some(vec!["u1"]),
        ..case(vec![seed(), w("1", Warm, C)], 1, warm_policy(1, 3))
    }
    .run();
    // The refill clones from the seed as it is now, and no surge clone is made.
    assert_eq!(
        kinds(&plan),
        ["delete p-clone-1 WarmBeforeRefresh", "refill p-clone-2"]
    );
}

#[test]
fn observed_states() {
    use crate::pool::backend::observed_state;
    // (known, intent, stopped, warm pool, state)
    let table = [
        (Some(Ready), None, false, true, Ready),
        (Some(Ready), None, true, true, Warm),
        (Some(Ready), None, true, false, Ready),
        (Some(Draining), Some(Draining), true, true, Draining),
        (Some(Warm), Some(Stopping), false, true, Warm),
        (Some(Warm), None, false, true, Booting),
        (Some(Starting), Some(Starting), true, true, Starting),
        (Some(Booting), Some(Starting), true, true, Booting),
        (None, Some(Starting), true, true, Starting),
        (None, Some(Starting), false, true, Booting),
        (None, Some(Warming), false, true, Warming),
        (None, Some(Warming), true, true, Warm),
        (None, Some(Stopping), false, true, Stopping),
        (None, None, true, true, Warm),
        (None, None, false, true, Booting),
    ];
    for (known, intent, stopped, warm, want) in table {
        assert_eq!(
            observed_state(known, intent, stopped, warm),
            want,
            "{known:?} {intent:?} stopped={stopped} warm_pool={warm}"
        );
    }
}
