//! Slow start: a backend that becomes ready enters Traefik's weighted round robin with a small
//! weight that grows, in steps, to [`FULL_WEIGHT`] over the pool's `slow_start`.
//!
//! The ramp has between [`MIN_STEPS`] and [`MAX_STEPS`] steps, each lasting at least the shortest
//! step the caller allows (Traefik's poll interval, so every weight is fetched at least once). A
//! `slow_start` shorter than [`MIN_STEPS`] such steps is stretched to that. Step `k` of `n`
//! (from 0) has the weight `FULL_WEIGHT * (k + 1) / (n + 1)`: never 0, always below full,
//! rising with each step.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Backend, BackendState};

/// The weight of a server past its ramp (and of every server that is not ramping).
pub const FULL_WEIGHT: u32 = 100;
/// The fewest steps of a ramp.
pub const MIN_STEPS: u32 = 5;
/// The most steps of a ramp: more would only make Traefik rebuild the service more often.
pub const MAX_STEPS: u32 = 10;

/// A pool's ramp: how long it lasts once stretched, and in how many steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ramp {
    /// Seconds from ready to full weight.
    pub length: f64,
    pub steps: u32,
}

impl Ramp {
    /// The ramp of a pool with this `slow_start`, each step at least `min_step` long; `None`
    /// when slow start is off (zero).
    pub fn new(slow_start: Duration, min_step: Duration) -> Option<Ramp> {
        if slow_start.is_zero() {
            return None;
        }
        let min_step = min_step.max(Duration::from_millis(1));
        let length = slow_start.max(min_step * MIN_STEPS);
        let fit = length.as_nanos() / min_step.as_nanos();
        let steps = fit.clamp(u128::from(MIN_STEPS), u128::from(MAX_STEPS)) as u32;
        Some(Ramp {
            length: length.as_secs_f64(),
            steps,
        })
    }

    /// Seconds one step lasts.
    pub fn step_length(&self) -> f64 {
        self.length / f64::from(self.steps)
    }

    /// The weight at `now` of a backend ready since `ready_since`, and when it next changes
    /// (`None` once it is full).
    pub fn weight(&self, ready_since: f64, now: f64) -> (u32, Option<f64>) {
        let step = self.step_length();
        let boundary = |k: u32| ready_since + f64::from(k) * step;
        let elapsed = (now - ready_since).max(0.0);
        let mut k = (elapsed / step).floor().min(f64::from(self.steps)) as u32;
        // Rounding must not hold a step past its end (the caller wakes exactly then).
        while k < self.steps && boundary(k + 1) <= now {
            k += 1;
        }
        if k >= self.steps {
            return (FULL_WEIGHT, None);
        }
        (
            FULL_WEIGHT * (k + 1) / (self.steps + 1),
            Some(boundary(k + 1)),
        )
    }
}

/// The weights of a pool's ramping backends, by uuid (a ready backend not in the map has
/// [`FULL_WEIGHT`]), and when the next of them changes. A backend ramps when it is ready and
/// became ready after `ramp_after` (when the pool first synced: the backends ready at start-up
/// were serving before it, so they do not ramp again); with `ramp_after` `None`, none ramps.
pub fn ramping(
    backends: &[Backend],
    ramp: &Ramp,
    ramp_after: Option<f64>,
    now: f64,
) -> (BTreeMap<String, u32>, Option<f64>) {
    let mut weights = BTreeMap::new();
    let mut next: Option<f64> = None;
    let Some(after) = ramp_after else {
        return (weights, None);
    };
    for b in backends {
        if b.state != BackendState::Ready || b.since <= after {
            continue;
        }
        let (weight, change) = ramp.weight(b.since, now);
        if weight < FULL_WEIGHT {
            weights.insert(b.uuid.clone(), weight);
        }
        if let Some(t) = change {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
    }
    (weights, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Role;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn off_when_zero() {
        assert_eq!(Ramp::new(Duration::ZERO, secs(5)), None);
    }

    #[test]
    fn length_and_steps() {
        // (slow_start, min step) -> (length, steps)
        let table = [
            (secs(30), secs(5), 30.0, 6),
            (secs(30), secs(2), 30.0, 10), // 15 would fit: capped
            (secs(12), secs(2), 12.0, 6),
            (secs(10), secs(2), 10.0, 5),
            (secs(11), secs(2), 11.0, 5), // 5.5 fit: whole steps only, each longer
            (secs(5), secs(2), 10.0, 5),  // stretched to 5 polls
            (Duration::from_millis(1), secs(5), 25.0, 5),
            (secs(3600), secs(5), 3600.0, 10),
            (secs(1), Duration::ZERO, 1.0, 10), // a zero step is taken as 1 ms
        ];
        for (slow, min_step, length, steps) in table {
            let r = Ramp::new(slow, min_step).unwrap();
            assert_eq!(
                (r.length, r.steps),
                (length, steps),
                "{slow:?} / {min_step:?}"
            );
            assert!(r.step_length() >= min_step.as_secs_f64(), "{slow:?}");
        }
    }

    #[test]
    fn weights_over_a_ramp() {
        // 12 s in 6 steps of 2 s, ready at t = 100.
        let r = Ramp::new(secs(12), secs(2)).unwrap();
        let table = [
            (90.0, 14, Some(102.0)), // a clock behind `since`: the first step
            (100.0, 14, Some(102.0)),
            (101.9, 14, Some(102.0)),
            (102.0, 28, Some(104.0)),
            (105.0, 42, Some(106.0)),
            (106.0, 57, Some(108.0)),
            (108.0, 71, Some(110.0)),
            (110.0, 85, Some(112.0)),
            (111.99, 85, Some(112.0)),
            (112.0, FULL_WEIGHT, None),
            (1e9, FULL_WEIGHT, None),
        ];
        for (now, weight, next) in table {
            assert_eq!(r.weight(100.0, now), (weight, next), "at {now}");
        }
    }

    #[test]
    fn every_ramp_rises_in_distinct_steps_never_zero() {
        for slow in [1, 5, 9, 10, 25, 30, 61, 600, 3600] {
            for poll in [1, 2, 5, 15, 60] {
                let r = Ramp::new(secs(slow), secs(poll)).unwrap();
                let mut seen = vec![];
                let mut now = 0.0;
                loop {
                    let (w, next) = r.weight(0.0, now);
                    assert!(w > 0, "{slow}/{poll}: weight 0");
                    seen.push(w);
                    let Some(t) = next else { break };
                    assert!(
                        t - now >= poll as f64 - 1e-9,
                        "{slow}/{poll}: a step shorter than a poll"
                    );
                    now = t;
                }
                assert_eq!(seen.last(), Some(&FULL_WEIGHT));
                let ramp = &seen[..seen.len() - 1];
                assert!(ramp.len() >= MIN_STEPS as usize, "{slow}/{poll}: {seen:?}");
                assert!(ramp.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
                assert!(ramp.iter().all(|w| *w < FULL_WEIGHT), "{seen:?}");
                assert!(now >= slow as f64 - 1e-9, "never shorter than asked");
            }
        }
    }

    fn backend(uuid: &str, state: BackendState, since: f64) -> Backend {
        Backend {
            uuid: uuid.into(),
            name: uuid.into(),
            role: Role::Clone,
            ip: Some("10.0.0.1".into()),
            cloud_status: "running".into(),
            created_at: None,
            state,
            since,
        }
    }

    #[test]
    fn only_backends_ready_after_the_sync_ramp() {
        let r = Ramp::new(secs(10), secs(2)).unwrap(); // 5 steps of 2 s
        let backends = [
            backend("at-start", BackendState::Ready, 50.0),
            backend("synced-with", BackendState::Ready, 60.0),
            backend("new", BackendState::Ready, 100.0),
            backend("newer", BackendState::Ready, 103.0),
            backend("booting", BackendState::Booting, 104.0),
            backend("unhealthy", BackendState::Unhealthy, 104.0),
            backend("done", BackendState::Ready, 80.0),
        ];
        let (weights, next) = ramping(&backends, &r, Some(60.0), 104.5);
        let expected: BTreeMap<String, u32> = [("new".to_string(), 50), ("newer".to_string(), 16)]
            .into_iter()
            .collect();
        assert_eq!(weights, expected, "past ramps and the rest are full");
        assert_eq!(next, Some(105.0), "newer's next step comes first");
        // Not synced yet: nothing ramps.
        assert_eq!(ramping(&backends, &r, None, 104.5), (BTreeMap::new(), None));
        // Everything done.
        assert_eq!(
            ramping(&backends, &r, Some(60.0), 1000.0),
            (BTreeMap::new(), None)
        );
    }
}
