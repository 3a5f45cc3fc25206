//! Target tracking's recommendation, as Kubernetes' HPA documents it
//! (<https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#algorithm-details>):
//!
//! 1. `ratio = metric / target`. While `|ratio − 1| ≤ tolerance` the recommendation is the
//!    current desired size (no change).
//! 2. Otherwise `ceil(ready × ratio)`, where `ready` counts ready backends only: booting clones
//!    are neither counted nor averaged (the metric comes from Prometheus; the count from us). As
//!    the HPA does when it sets not-yet-ready pods aside, a recommendation never goes against the
//!    metric: above the band it is at least the current desired size (the clones still booting
//!    already answer it), below the band at most that.
//! 3. No sample, a value that is NaN, infinite or negative, a query error, or a sample older than
//!    [`Policy::stale_after`] (2 × `interval`): **no recommendation at all** (never a scale-down),
//!    and the window is left as it was. A pool with no ready backend: no recommendation either.
//! 4. Stabilization: every recommendation is kept with its time in the caller's [`Window`]. A
//!    scale-up goes only to the lowest recommendation of the last `scale_up_stabilization`
//!    (zero: at once), a scale-down only to the highest of the last `scale_down_stabilization`
//!    (the HPA's `stabilizeRecommendationWithBehaviors`).
//! 5. `max_step_up` / `max_step_down` limit the change from the current desired size, then
//!    `[min, max]` clamps (`min` is the effective minimum: raised by open schedule windows).
//!
//! Pure: no I/O, no clock (`now` is an argument, Unix seconds), no serde.

use std::collections::VecDeque;

use super::{BackendState, PoolView};
use crate::config::TargetConfig;

/// A pool's policy, in the plain numbers the algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub target: f64,
    pub tolerance: f64,
    /// Seconds.
    pub scale_up_stabilization: f64,
    /// Seconds.
    pub scale_down_stabilization: f64,
    pub max_step_up: Option<u32>,
    pub max_step_down: Option<u32>,
    /// A sample older than this many seconds is stale.
    pub stale_after: f64,
}

/// Slack on the band's edges against floating-point rounding.
const BAND_EPSILON: f64 = 1e-9;

/// How many intervals old a sample may be before it is stale.
pub const STALE_INTERVALS: f64 = 2.0;

impl Policy {
    pub fn new(config: &TargetConfig) -> Policy {
        Policy {
            target: config.target,
            tolerance: config.tolerance,
            scale_up_stabilization: config.scale_up_stabilization.as_secs_f64(),
            scale_down_stabilization: config.scale_down_stabilization.as_secs_f64(),
            max_step_up: config.max_step_up,
            max_step_down: config.max_step_down,
            stale_after: STALE_INTERVALS * config.interval.as_secs_f64(),
        }
    }
}

/// What the query gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// One number and the Unix time it is for.
    Sample { value: f64, at: f64 },
    /// The query answered with no series.
    NoData,
    /// The query failed (transport, HTTP status, Prometheus' error, an answer of another shape).
    QueryError,
}

/// One interval's inputs besides the policy and the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Input {
    pub observation: Observation,
    /// Ready backends (booting, draining and unhealthy ones excluded).
    pub ready: u32,
    /// The pool's desired size now.
    pub desired: u32,
    /// The effective minimum (`min` raised to the open schedule windows' floor).
    pub min: u32,
    pub max: u32,
}

/// The recommendations of the recent intervals, owned by the caller (one per pool) and updated
/// by [`recommend`]. Holds only what the longer stabilization window still needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    entries: VecDeque<(f64, u32)>,
}

impl Window {
    /// (time, raw recommendation), oldest first.
    pub fn entries(&self) -> impl Iterator<Item = (f64, u32)> + '_ {
        self.entries.iter().copied()
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Forgets every recommendation (e.g. when an operator sets desired by hand).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
    fn push(&mut self, at: f64, recommendation: u32) {
        self.entries.push_back((at, recommendation));
    }
    fn prune(&mut self, now: f64, keep: f64) {
        while self.entries.front().is_some_and(|(t, _)| *t <= now - keep) {
            self.entries.pop_front();
        }
    }
}

/// Why the recommendation is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// |ratio − 1| ≤ tolerance: no change.
    WithinTolerance,
    /// Outside the band, but the formula gives the current desired size.
    NoChange,
    ScaleUp,
    ScaleDown,
    /// A stabilization window held the change back (wholly or in part).
    Stabilized,
    /// `max_step_up` / `max_step_down` cut the change.
    StepLimited,
    /// `max` bounds the recommendation.
    AtMax,
    /// The (effective) minimum bounds the recommendation.
    AtMin,
    /// No sample: no recommendation.
    NoData,
    /// NaN, infinite or negative: no recommendation.
    InvalidValue,
    /// The sample is older than [`Policy::stale_after`]: no recommendation.
    Stale,
    /// The query failed: no recommendation.
    QueryError,
    /// No ready backend to average over: no recommendation.
    NoReadyBackends,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::WithinTolerance => "within_tolerance",
            Reason::NoChange => "no_change",
            Reason::ScaleUp => "scale_up",
            Reason::ScaleDown => "scale_down",
            Reason::Stabilized => "stabilized",
            Reason::StepLimited => "step_limited",
            Reason::AtMax => "at_max",
            Reason::AtMin => "at_min",
            Reason::NoData => "no_data",
            Reason::InvalidValue => "invalid_value",
            Reason::Stale => "stale",
            Reason::QueryError => "query_error",
            Reason::NoReadyBackends => "no_ready_backends",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One interval's result with every input it used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    /// The size desired should have; `None`: no recommendation (leave desired alone).
    pub desired: Option<u32>,
    pub reason: Reason,
    /// The sample's value, when there was one (also when it was refused).
    pub metric: Option<f64>,
    pub target: f64,
    /// `metric / target`, when the metric was usable.
    pub ratio: Option<f64>,
    /// Seconds between the sample's time and `now`.
    pub sample_age: Option<f64>,
    pub ready: u32,
    /// Desired before this recommendation.
    pub current: u32,
    /// The formula's result (current desired within the band), before stabilization.
    pub raw: Option<u32>,
    /// After the stabilization windows, before the step limits and bounds.
    pub stabilized: Option<u32>,
}

impl Recommendation {
    /// The new desired size, when it differs from the current one.
    pub fn change(&self) -> Option<u32> {
        self.desired.filter(|d| *d != self.current)
    }

    /// One line with the figures, for an activity's cause and logs:
    /// `target tracking: metric 92.5, target 60 (ratio 1.542), 2 ready: 4 (scale_up)`.
    pub fn describe(&self) -> String {
        let metric = match self.metric {
            Some(m) => format!("metric {}", figure(m)),
            None => "no metric".to_string(),
        };
        let ratio = self
            .ratio
            .map(|r| format!(" (ratio {r:.3})"))
            .unwrap_or_default();
        let outcome = match self.desired {
            Some(d) if d != self.current => format!("{} -> {d}", self.current),
            Some(d) => format!("{d}, unchanged"),
            None => format!("{}, no recommendation", self.current),
        };
        format!(
            "target tracking: {metric}, target {}{ratio}, {} ready: {outcome} ({})",
            figure(self.target),
            self.ready,
            self.reason
        )
    }
}

/// A number with at most 3 decimals and no trailing zeros.
fn figure(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl Input {
    /// The input for a pool's view: `ready` counts its backends in [`BackendState::Ready`]
    /// (booting, unhealthy, draining and deleting ones excluded).
    pub fn from_view(
        observation: Observation,
        view: &PoolView,
        desired: u32,
        min: u32,
        max: u32,
    ) -> Input {
        let ready = view
            .backends
            .iter()
            .filter(|b| b.state == BackendState::Ready)
            .count();
        Input {
            observation,
            ready: u32::try_from(ready).unwrap_or(u32::MAX),
            desired,
            min,
            max,
        }
    }
}

/// The ready backends that count: those in `baseline` (ready when the tracker started), and
/// the others once they have been ready for `delay` seconds. A clone that just passed its gate
/// is not counted yet: the pool's metric does not reflect it until the query's rate window has
/// seen it, and counting it early asks for one VM too many (each new clone repeating it).
pub fn settled_ready(
    view: &PoolView,
    baseline: &std::collections::HashSet<String>,
    delay: f64,
    now: f64,
) -> u32 {
    let n = view
        .backends
        .iter()
        .filter(|b| b.state == BackendState::Ready)
        .filter(|b| baseline.contains(&b.uuid) || now - b.since >= delay)
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The recommendation for one interval; records it in `window` (unless there was none).
pub fn recommend(policy: &Policy, input: &Input, window: &mut Window, now: f64) -> Recommendation {
    let mut r = Recommendation {
        desired: None,
        reason: Reason::NoData,
        metric: None,
        target: policy.target,
        ratio: None,
        sample_age: None,
        ready: input.ready,
        current: input.desired,
        raw: None,
        stabilized: None,
    };
    let value = match input.observation {
        Observation::NoData => return r,
        Observation::QueryError => {
            r.reason = Reason::QueryError;
            return r;
        }
        Observation::Sample { value, at } => {
            r.metric = Some(value);
            r.sample_age = Some(now - at);
            if !value.is_finite() || value < 0.0 {
                r.reason = Reason::InvalidValue;
                return r;
            }
            if now - at > policy.stale_after {
                r.reason = Reason::Stale;
                return r;
            }
            value
        }
    };
    if input.ready == 0 {
        r.reason = Reason::NoReadyBackends;
        return r;
    }
    let ratio = value / policy.target;
    r.ratio = Some(ratio);
    let current = input.desired;
    // The band is inclusive; the epsilon keeps 66 / 60 (1.1000000000000001) inside a 0.1 band.
    let within = (ratio - 1.0).abs() <= policy.tolerance + BAND_EPSILON;
    let raw = if within {
        current
    } else {
        // `as` saturates: an absurd ratio gives u32::MAX, which `max` clamps below.
        let formula = (f64::from(input.ready) * ratio).ceil() as u32;
        if ratio > 1.0 {
            formula.max(current)
        } else {
            formula.min(current)
        }
    };
    r.raw = Some(raw);

    // Stabilization over the window and this recommendation.
    let (mut up, mut down) = (raw, raw);
    for (t, rec) in window.entries() {
        if t > now - policy.scale_up_stabilization {
            up = up.min(rec);
        }
        if t > now - policy.scale_down_stabilization {
            down = down.max(rec);
        }
    }
    window.prune(
        now,
        policy
            .scale_up_stabilization
            .max(policy.scale_down_stabilization),
    );
    window.push(now, raw);
    let stabilized = if current < up {
        up
    } else if current > down {
        down
    } else {
        current
    };
    r.stabilized = Some(stabilized);

    let mut limited = stabilized;
    if let Some(step) = policy.max_step_up {
        limited = limited.min(current.saturating_add(step));
    }
    if let Some(step) = policy.max_step_down {
        limited = limited.max(current.saturating_sub(step));
    }
    let bounded = limited.clamp(input.min.min(input.max), input.max);
    r.desired = Some(bounded);
    r.reason = if bounded != limited {
        if bounded < limited {
            Reason::AtMax
        } else {
            Reason::AtMin
        }
    } else if limited != stabilized {
        Reason::StepLimited
    } else if stabilized != raw {
        Reason::Stabilized
    } else if within {
        Reason::WithinTolerance
    } else if bounded > current {
        Reason::ScaleUp
    } else if bounded < current {
        Reason::ScaleDown
    } else {
        Reason::NoChange
    };
    r
}

#[cfg(test)]
mod tests;

/// What becomes of a recommendation: applied, or held and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gate {
    /// Desired goes from `from` to `to`.
    Apply { from: u32, to: u32 },
    /// Nothing to change (no recommendation, or the current size).
    Unchanged,
    /// An operator's `PUT .../desired` holds the policy until then (`manual_hold`).
    ManualHold { until: f64 },
    /// Inside the scale-up or scale-down cooldown, as a webhook would be.
    Cooldown { seconds_left: u64 },
}

impl Gate {
    pub fn as_str(&self) -> &'static str {
        match self {
            Gate::Apply { .. } => "accepted",
            Gate::Unchanged => "unchanged",
            Gate::ManualHold { .. } => "manual_hold",
            Gate::Cooldown { .. } => "cooldown",
        }
    }
}

/// Whether a recommendation may change desired now: an operator's manual hold first, then the
/// cooldowns a webhook's change would wait for (a scale-up `up_cooldown` after the last
/// scale-up, a scale-down `down_cooldown` after the last change either way).
pub fn gate(
    recommendation: &Recommendation,
    desired: u32,
    limits: &super::decide::Limits,
    clocks: &super::decide::Clocks,
    manual_until: Option<f64>,
    now: f64,
) -> Gate {
    let Some(to) = recommendation.desired.filter(|d| *d != desired) else {
        return Gate::Unchanged;
    };
    if let Some(until) = manual_until.filter(|u| now < *u) {
        return Gate::ManualHold { until };
    }
    let direction = if to > desired {
        super::decide::Direction::Up
    } else {
        super::decide::Direction::Down
    };
    match super::decide::cooldown_left(direction, limits, clocks, now) {
        0 => Gate::Apply { from: desired, to },
        left => Gate::Cooldown { seconds_left: left },
    }
}
