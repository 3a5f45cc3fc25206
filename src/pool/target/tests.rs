//! The algorithm's tables, from the HPA's documented behaviour (see the module's header).

use super::*;

const NOW: f64 = 10_000.0;

/// target 60, tolerance 0.1, scale-up at once, scale-down over 5 minutes, no step limits, a
/// sample stale after 30 s (interval 15 s).
fn policy() -> Policy {
    Policy {
        target: 60.0,
        tolerance: 0.1,
        scale_up_stabilization: 0.0,
        scale_down_stabilization: 300.0,
        max_step_up: None,
        max_step_down: None,
        stale_after: 30.0,
    }
}

fn sample(value: f64) -> Observation {
    Observation::Sample {
        value,
        at: NOW - 5.0,
    }
}

fn input(observation: Observation, ready: u32, desired: u32) -> Input {
    Input {
        observation,
        ready,
        desired,
        min: 1,
        max: 10,
    }
}

fn window(history: &[(f64, u32)]) -> Window {
    let mut w = Window::default();
    for (ago, rec) in history {
        w.push(NOW - ago, *rec);
    }
    w
}

struct Row {
    name: &'static str,
    policy: Policy,
    /// (seconds ago, raw recommendation)
    history: &'static [(f64, u32)],
    input: Input,
    want: Option<u32>,
    reason: Reason,
}

fn row(name: &'static str, input: Input, want: Option<u32>, reason: Reason) -> Row {
    Row {
        name,
        policy: Policy {
            scale_down_stabilization: 0.0,
            ..policy()
        },
        history: &[],
        input,
        want,
        reason,
    }
}

impl Row {
    fn policy(mut self, f: impl FnOnce(&mut Policy)) -> Row {
        f(&mut self.policy);
        self
    }
    fn history(mut self, h: &'static [(f64, u32)]) -> Row {
        self.history = h;
        self
    }
    fn bounds(mut self, min: u32, max: u32) -> Row {
        self.input.min = min;
        self.input.max = max;
        self
    }
}

#[test]
fn the_table() {
    use Reason::*;
    let rows = vec![
        // The band: |ratio - 1| <= tolerance, edges included.
        row(
            "at target",
            input(sample(60.0), 3, 3),
            Some(3),
            WithinTolerance,
        ),
        row(
            "upper edge 66/60",
            input(sample(66.0), 3, 3),
            Some(3),
            WithinTolerance,
        ),
        row(
            "lower edge 54/60",
            input(sample(54.0), 3, 3),
            Some(3),
            WithinTolerance,
        ),
        row(
            "inside the band",
            input(sample(63.0), 2, 2),
            Some(2),
            WithinTolerance,
        ),
        // ceil(ready * ratio).
        row(
            "just above: ceil(3 * 1.1167) = 4",
            input(sample(67.0), 3, 3),
            Some(4),
            ScaleUp,
        ),
        row(
            "ceil(3 * 1.5) = 5",
            input(sample(90.0), 3, 3),
            Some(5),
            ScaleUp,
        ),
        row(
            "ceil(2 * 2) = 4",
            input(sample(120.0), 2, 2),
            Some(4),
            ScaleUp,
        ),
        row(
            "one VM at triple: 3",
            input(sample(180.0), 1, 1),
            Some(3),
            ScaleUp,
        ),
        row(
            "ceil(4 * 0.5) = 2",
            input(sample(30.0), 4, 4),
            Some(2),
            ScaleDown,
        ),
        row(
            "ceil(5 * 0.7) = 4",
            input(sample(42.0), 5, 5),
            Some(4),
            ScaleDown,
        ),
        row(
            "ceil(3 * 0.85) = 3: no change",
            input(sample(51.0), 3, 3),
            Some(3),
            NoChange,
        ),
        row(
            "tolerance 0: ceil(3 * 61/60) = 4",
            input(sample(61.0), 3, 3),
            Some(4),
            ScaleUp,
        )
        .policy(|p| p.tolerance = 0.0),
        row(
            "a fraction target: ceil(2 * 0.75/0.5) = 3",
            input(sample(0.75), 2, 2),
            Some(3),
            ScaleUp,
        )
        .policy(|p| p.target = 0.5),
        // Only ready backends count; a recommendation never goes against the metric.
        row(
            "booting clones cover a hot VM: ceil(1 * 1.5) = 2 < 3",
            input(sample(90.0), 1, 3),
            Some(3),
            NoChange,
        ),
        row(
            "booting clones cover part: ceil(1 * 3) = 3 > 2",
            input(sample(180.0), 1, 2),
            Some(3),
            ScaleUp,
        ),
        row(
            "cold metric never scales up: ceil(5 * 0.8) = 4 > 3",
            input(sample(48.0), 5, 3),
            Some(3),
            NoChange,
        ),
        row(
            "cold ready VMs with clones booting: ceil(1 * 0.5) = 1",
            input(sample(30.0), 1, 3),
            Some(1),
            ScaleDown,
        ),
        row(
            "an unhealthy VM is not averaged: ceil(2 * 1.5) = 3 = desired",
            input(sample(90.0), 2, 3),
            Some(3),
            NoChange,
        ),
        // Scale-down stabilization: the highest recommendation of the window.
        row(
            "a recent higher recommendation holds the size",
            input(sample(30.0), 4, 4),
            Some(4),
            Stabilized,
        )
        .policy(|p| p.scale_down_stabilization = 300.0)
        .history(&[(60.0, 4)]),
        row(
            "partly: the highest of the window is 3",
            input(sample(30.0), 4, 4),
            Some(3),
            Stabilized,
        )
        .policy(|p| p.scale_down_stabilization = 300.0)
        .history(&[(200.0, 3), (100.0, 3), (15.0, 2)]),
        row(
            "a recommendation older than the window does not count",
            input(sample(30.0), 4, 4),
            Some(2),
            ScaleDown,
        )
        .policy(|p| p.scale_down_stabilization = 300.0)
        .history(&[(301.0, 4), (100.0, 2)]),
        row(
            "exactly the window's length ago does not count",
            input(sample(30.0), 4, 4),
            Some(2),
            ScaleDown,
        )
        .policy(|p| p.scale_down_stabilization = 300.0)
        .history(&[(300.0, 4)]),
        row(
            "the down window does not hold a scale-up",
            input(sample(120.0), 2, 2),
            Some(4),
            ScaleUp,
        )
        .policy(|p| p.scale_down_stabilization = 300.0)
        .history(&[(60.0, 2), (30.0, 9)]),
        // Scale-up stabilization: the lowest recommendation of the window.
        row(
            "a recent lower recommendation holds a scale-up",
            input(sample(120.0), 3, 3),
            Some(3),
            Stabilized,
        )
        .policy(|p| p.scale_up_stabilization = 60.0)
        .history(&[(30.0, 3)]),
        row(
            "partly: the lowest of the up window is 5",
            input(sample(120.0), 3, 3),
            Some(5),
            Stabilized,
        )
        .policy(|p| p.scale_up_stabilization = 60.0)
        .history(&[(45.0, 5), (15.0, 6)]),
        row(
            "an up window that has passed",
            input(sample(120.0), 3, 3),
            Some(6),
            ScaleUp,
        )
        .policy(|p| p.scale_up_stabilization = 60.0)
        .history(&[(90.0, 3)]),
        row(
            "zero up window: at once, whatever the history",
            input(sample(120.0), 3, 3),
            Some(6),
            ScaleUp,
        )
        .history(&[(1.0, 3)]),
        // Step limits, from the current desired size.
        row(
            "max_step_up 1",
            input(sample(120.0), 3, 3),
            Some(4),
            StepLimited,
        )
        .policy(|p| p.max_step_up = Some(1)),
        row(
            "max_step_up 2 of 3 wanted",
            input(sample(120.0), 3, 3),
            Some(5),
            StepLimited,
        )
        .policy(|p| p.max_step_up = Some(2)),
        row(
            "max_step_up larger than the change",
            input(sample(120.0), 3, 3),
            Some(6),
            ScaleUp,
        )
        .policy(|p| p.max_step_up = Some(5)),
        row(
            "max_step_down 1",
            input(sample(15.0), 4, 4),
            Some(3),
            StepLimited,
        )
        .policy(|p| p.max_step_down = Some(1)),
        row(
            "max_step_down does not limit a scale-up",
            input(sample(120.0), 3, 3),
            Some(6),
            ScaleUp,
        )
        .policy(|p| p.max_step_down = Some(1)),
        // Bounds.
        row("at max already", input(sample(120.0), 5, 5), Some(5), AtMax).bounds(1, 5),
        row("up to max", input(sample(120.0), 4, 4), Some(5), AtMax).bounds(1, 5),
        row(
            "an absurd metric saturates to max",
            input(sample(1e300), 3, 3),
            Some(10),
            AtMax,
        ),
        row(
            "zero load: down to min",
            input(sample(0.0), 3, 3),
            Some(2),
            AtMin,
        )
        .bounds(2, 10),
        row("zero load at min", input(sample(0.0), 1, 1), Some(1), AtMin),
        row(
            "a schedule's floor raises the recommendation",
            input(sample(60.0), 2, 2),
            Some(3),
            AtMin,
        )
        .bounds(3, 10),
        row(
            "step limit then max",
            input(sample(300.0), 4, 4),
            Some(5),
            AtMax,
        )
        .policy(|p| p.max_step_up = Some(3))
        .bounds(1, 5),
        // No recommendation at all.
        row("no data", input(Observation::NoData, 3, 3), None, NoData),
        row(
            "a query error",
            input(Observation::QueryError, 3, 3),
            None,
            QueryError,
        ),
        row("NaN", input(sample(f64::NAN), 3, 3), None, InvalidValue),
        row(
            "+Inf",
            input(sample(f64::INFINITY), 3, 3),
            None,
            InvalidValue,
        ),
        row(
            "-Inf",
            input(sample(f64::NEG_INFINITY), 3, 3),
            None,
            InvalidValue,
        ),
        row("negative", input(sample(-1.0), 3, 3), None, InvalidValue),
        row(
            "stale: 31 s old, stale after 30",
            input(
                Observation::Sample {
                    value: 10.0,
                    at: NOW - 31.0,
                },
                3,
                3,
            ),
            None,
            Stale,
        ),
        row(
            "30 s old is still fresh",
            input(
                Observation::Sample {
                    value: 60.0,
                    at: NOW - 30.0,
                },
                3,
                3,
            ),
            Some(3),
            WithinTolerance,
        ),
        row(
            "no ready backend",
            input(sample(10.0), 0, 3),
            None,
            NoReadyBackends,
        ),
        row(
            "no ready backend, hot metric",
            input(sample(200.0), 0, 1),
            None,
            NoReadyBackends,
        ),
    ];
    let count = rows.len();
    for r in rows {
        let mut w = window(r.history);
        let before = w.clone();
        let got = recommend(&r.policy, &r.input, &mut w, NOW);
        assert_eq!(
            (got.desired, got.reason),
            (r.want, r.reason),
            "{}: {got:?}",
            r.name
        );
        assert_eq!(got.current, r.input.desired, "{}", r.name);
        assert_eq!(got.ready, r.input.ready, "{}", r.name);
        assert_eq!(got.target, r.policy.target, "{}", r.name);
        if got.desired.is_none() {
            assert_eq!(
                w, before,
                "{}: no recommendation leaves the window alone",
                r.name
            );
            assert_eq!(
                (got.raw, got.stabilized, got.change()),
                (None, None, None),
                "{}",
                r.name
            );
        } else {
            assert_eq!(
                w.entries().last(),
                Some((NOW, got.raw.unwrap())),
                "{}: recorded",
                r.name
            );
            assert_eq!(
                got.change(),
                r.want.filter(|d| *d != r.input.desired),
                "{}",
                r.name
            );
        }
    }
    assert!(count >= 45, "{count}");
}

#[test]
fn the_inputs_are_reported() {
    let mut w = window(&[(60.0, 4)]);
    let r = recommend(&policy(), &input(sample(30.0), 4, 4), &mut w, NOW);
    assert_eq!(r.metric, Some(30.0));
    assert_eq!(r.ratio, Some(0.5));
    assert_eq!(r.sample_age, Some(5.0));
    assert_eq!(
        (r.raw, r.stabilized, r.desired),
        (Some(2), Some(4), Some(4))
    );
    assert_eq!(r.reason.as_str(), "stabilized");
    let r = recommend(&policy(), &input(sample(f64::NAN), 4, 4), &mut w, NOW);
    assert!(r.metric.unwrap().is_nan() && r.ratio.is_none());
    assert_eq!(r.reason.to_string(), "invalid_value");
}

/// Every 15 s at a metric of half the target after one interval at target: desired stays at 4
/// for the whole scale-down window, then goes to 2 at once.
#[test]
fn a_scale_down_waits_for_the_whole_window() {
    let p = policy();
    let mut w = Window::default();
    let r = recommend(&p, &input(sample_at(60.0, 0.0), 4, 4), &mut w, 0.0);
    assert_eq!(r.reason, Reason::WithinTolerance);
    let mut changed = vec![];
    let mut t = 15.0;
    while t <= 450.0 {
        let r = recommend(&p, &input(sample_at(30.0, t), 4, 4), &mut w, t);
        if let Some(d) = r.change() {
            changed.push((t, d));
        }
        assert!(
            w.len() <= 21,
            "the window keeps only what it needs: {}",
            w.len()
        );
        t += 15.0;
    }
    assert_eq!(changed[0], (300.0, 2));
}

fn sample_at(value: f64, at: f64) -> Observation {
    Observation::Sample { value, at }
}

/// A load worth 180% of one VM, spread over the ready VMs: from 1 VM straight to 3 (the HPA's
/// one-step jump), then steady, with no oscillation, while clones boot and after.
#[test]
fn a_load_settles_at_the_formula_and_stays() {
    let p = policy();
    let mut w = Window::default();
    let (mut desired, mut ready) = (1u32, 1u32);
    let mut sizes = vec![];
    for i in 0..60 {
        let t = f64::from(i) * 15.0;
        let metric = 180.0 / f64::from(ready);
        let r = recommend(&p, &input(sample_at(metric, t), ready, desired), &mut w, t);
        if let Some(d) = r.change() {
            desired = d;
        }
        sizes.push(desired);
        // Clones take two intervals to boot.
        if i % 2 == 1 {
            ready = desired;
        }
    }
    assert_eq!(sizes[0], 3, "one step from 1 to 3");
    assert!(sizes.iter().all(|s| *s == 3), "{sizes:?}");
}

/// Prometheus down for ten minutes in the middle of a low load: desired never moves, and after
/// the outage the old window has expired, so the first fresh sample decides.
#[test]
fn an_outage_changes_nothing() {
    let p = policy();
    let mut w = Window::default();
    recommend(&p, &input(sample_at(60.0, 0.0), 4, 4), &mut w, 0.0);
    for i in 1..40 {
        let t = f64::from(i) * 15.0;
        for o in [
            Observation::QueryError,
            Observation::NoData,
            sample_at(10.0, t - 31.0),
        ] {
            let r = recommend(&p, &input(o, 4, 4), &mut w, t);
            assert_eq!(r.desired, None, "{t}: {o:?}");
        }
    }
    assert_eq!(w.len(), 1);
    let r = recommend(&p, &input(sample_at(30.0, 600.0), 4, 4), &mut w, 600.0);
    assert_eq!((r.change(), r.reason), (Some(2), Reason::ScaleDown));
}

#[test]
fn the_policy_comes_from_the_configuration() {
    let c = crate::config::Config::parse(
        "[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"s\"\n[pool.target]\n\
         prometheus_url = \"http://127.0.0.1:9090\"\nquery = \"up\"\ntarget = 60\n\
         interval = \"20s\"\nscale_up_stabilization = \"1m\"\nmax_step_down = 2\n",
    )
    .unwrap();
    let p = Policy::new(c.pools[0].target.as_ref().unwrap());
    assert_eq!(
        p,
        Policy {
            target: 60.0,
            tolerance: 0.1,
            scale_up_stabilization: 60.0,
            scale_down_stabilization: 300.0,
            max_step_up: None,
            max_step_down: Some(2),
            stale_after: 40.0,
        }
    );
}

#[test]
fn the_description_has_the_figures() {
    let mut w = Window::default();
    let r = recommend(&policy(), &input(sample(92.5), 2, 2), &mut w, NOW);
    assert_eq!(
        r.describe(),
        "target tracking: metric 92.5, target 60 (ratio 1.542), 2 ready: 2 -> 4 (scale_up)"
    );
    let r = recommend(&policy(), &input(sample(60.0), 3, 3), &mut w, NOW);
    assert_eq!(
        r.describe(),
        "target tracking: metric 60, target 60 (ratio 1.000), 3 ready: 3, unchanged (within_tolerance)"
    );
    let r = recommend(
        &policy(),
        &input(Observation::QueryError, 3, 3),
        &mut w,
        NOW,
    );
    assert_eq!(
        r.describe(),
        "target tracking: no metric, target 60, 3 ready: 3, no recommendation (query_error)"
    );
}

#[test]
fn only_ready_backends_count_from_a_view() {
    use crate::pool::{Backend, BackendState, PoolView, Role};
    let mut view = PoolView::new("web");
    for (i, state) in BackendState::ALL
        .iter()
        .chain(&[BackendState::Ready])
        .enumerate()
    {
        view.backends.push(Backend {
            uuid: format!("u-{i}"),
            name: format!("web-clone-{i}"),
            role: Role::Clone,
            ip: Some("10.0.0.1".into()),
            cloud_status: "running".into(),
            created_at: None,
            state: *state,
            since: 0.0,
        });
    }
    let i = Input::from_view(sample(120.0), &view, 4, 1, 10);
    assert_eq!(
        (i.ready, i.desired, i.min, i.max),
        (2, 4, 1, 10),
        "booting, unhealthy, draining and deleting VMs are not counted"
    );
    let r = recommend(&policy(), &i, &mut Window::default(), NOW);
    assert_eq!(r.desired, Some(4), "ceil(2 × 2) = 4");
}

#[test]
fn the_gate_holds_for_an_operator_then_for_the_cooldowns() {
    use crate::pool::decide::{Clocks, Limits};
    use std::time::Duration;
    let limits = Limits {
        min: 1,
        max: 10,
        step: 1,
        up_cooldown: Duration::from_secs(60),
        down_cooldown: Duration::from_secs(120),
    };
    let now = 10_000.0;
    let rec = |to: Option<u32>| Recommendation {
        desired: to,
        reason: Reason::ScaleUp,
        metric: Some(90.0),
        target: 60.0,
        ratio: Some(1.5),
        sample_age: Some(1.0),
        ready: 2,
        current: 2,
        raw: to,
        stabilized: to,
    };
    let clocks = |up: Option<f64>, down: Option<f64>| Clocks {
        last_up: up.map(|a| now - a),
        last_down: down.map(|a| now - a),
    };
    // (recommended, desired, clocks: seconds since the last up/down, manual hold until, gate)
    let rows = [
        (
            Some(3),
            2,
            clocks(None, None),
            None,
            Gate::Apply { from: 2, to: 3 },
        ),
        (Some(2), 2, clocks(None, None), None, Gate::Unchanged),
        (None, 2, clocks(None, None), None, Gate::Unchanged),
        (
            Some(3),
            2,
            clocks(None, None),
            Some(now + 5.0),
            Gate::ManualHold { until: now + 5.0 },
        ),
        (
            Some(3),
            2,
            clocks(None, None),
            Some(now - 1.0),
            Gate::Apply { from: 2, to: 3 },
        ),
        (
            Some(3),
            2,
            clocks(Some(30.0), None),
            None,
            Gate::Cooldown { seconds_left: 30 },
        ),
        (
            Some(3),
            2,
            clocks(Some(61.0), None),
            None,
            Gate::Apply { from: 2, to: 3 },
        ),
        // A scale-down waits for the last change either way.
        (
            Some(1),
            2,
            clocks(Some(100.0), None),
            None,
            Gate::Cooldown { seconds_left: 20 },
        ),
        (
            Some(1),
            2,
            clocks(None, Some(130.0)),
            None,
            Gate::Apply { from: 2, to: 1 },
        ),
        // An unchanged recommendation is not held by anything.
        (
            Some(2),
            2,
            clocks(Some(1.0), None),
            Some(now + 5.0),
            Gate::Unchanged,
        ),
    ];
    for (to, desired, c, manual, want) in rows {
        assert_eq!(
            gate(&rec(to), desired, &limits, &c, manual, now),
            want,
            "{to:?} from {desired}, {c:?}, manual {manual:?}"
        );
    }
}

#[test]
fn a_backend_counts_once_it_has_been_ready_for_the_delay_or_was_ready_at_the_start() {
    use crate::pool::{Backend, BackendState, PoolView, Role};
    use std::collections::HashSet;
    let now = 1000.0;
    let mut view = PoolView::new("web");
    // (uuid, state, ready since)
    for (uuid, state, since) in [
        ("seed", BackendState::Ready, 900.0),
        ("old", BackendState::Ready, 870.0),
        ("new", BackendState::Ready, 990.0),
        ("late", BackendState::Ready, 995.0),
        ("boot", BackendState::Booting, 500.0),
    ] {
        view.backends.push(Backend {
            uuid: uuid.into(),
            name: uuid.into(),
            role: Role::Clone,
            ip: None,
            cloud_status: "running".into(),
            created_at: None,
            state,
            since,
        });
    }
    let none = HashSet::new();
    let baseline: HashSet<String> = ["seed".to_string()].into();
    // (baseline, delay, counted)
    let rows = [
        (&none, 0.0, 4),
        (&none, 120.0, 1),     // only "old" (130 s ready)
        (&baseline, 120.0, 2), // and the seed, ready when the tracker started
        (&none, 10.0, 3),      // "new" exactly 10 s ready counts
        (&baseline, 1e9, 1),
    ];
    for (base, delay, want) in rows {
        assert_eq!(
            settled_ready(&view, base, delay, now),
            want,
            "delay {delay}"
        );
    }
    // Left out of `ready`, a clone that just passed its gate cannot make the formula ask for
    // more on the stale metric: 1 settled VM at 90 % of 60 asks for 2, the size already desired.
    let i = Input {
        ready: settled_ready(&view, &none, 120.0, now),
        ..Input::from_view(sample(90.0), &view, 2, 1, 10)
    };
    assert_eq!(
        recommend(&policy(), &i, &mut Window::default(), NOW).desired,
        Some(2)
    );
    let i = Input::from_view(sample(90.0), &view, 2, 1, 10);
    assert_eq!(
        recommend(&policy(), &i, &mut Window::default(), NOW).desired,
        Some(6),
        "counted at once, the 4 ready VMs at the stale 90 % would ask for 6"
    );
}
