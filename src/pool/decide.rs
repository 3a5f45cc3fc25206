//! Scaling decisions: a pure function of the request, the pool's bounds, its desired size and
//! its cooldown clocks. No I/O, no clock reads: `now` is passed in.

use std::time::Duration;

/// Which way an alert asks to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "scale_up",
            Direction::Down => "scale_down",
        }
    }
}

/// The bounds and timing of one pool that decisions need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min: u32,
    pub max: u32,
    pub step: u32,
    pub up_cooldown: Duration,
    pub down_cooldown: Duration,
}

/// When desired last went up or down, in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Clocks {
    pub last_up: Option<f64>,
    pub last_down: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Desired changed from `from` to `to`.
    Accepted {
        from: u32,
        to: u32,
    },
    /// Inside a cooldown; `seconds_left` until the next change may happen.
    Cooldown {
        seconds_left: u64,
    },
    AtMax,
    AtMin,
    /// A "resolved" notification: never a reason to scale.
    IgnoredResolved,
    /// An operator asked for the size desired already is: nothing changed.
    Unchanged,
    /// The pool follows a `[pool.target]` policy (without `allow_webhooks`): webhooks do not
    /// change it.
    IgnoredPolicy,
}

impl Decision {
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Accepted { .. } => "accepted",
            Decision::Cooldown { .. } => "cooldown",
            Decision::AtMax => "at_max",
            Decision::AtMin => "at_min",
            Decision::IgnoredResolved => "ignored_resolved",
            Decision::Unchanged => "unchanged",
            Decision::IgnoredPolicy => "ignored_policy",
        }
    }
}

/// Decides a webhook. The checks run in DESIGN.md's order: resolved, bounds, cooldown.
///
/// - A scale-up waits `up_cooldown` after the last scale-up.
/// - A scale-down waits `down_cooldown` after the last change in either direction, so a pool
///   that just grew is not shrunk by the next quiet minute.
pub fn decide(
    direction: Direction,
    resolved: bool,
    desired: u32,
    limits: &Limits,
    clocks: &Clocks,
    now: f64,
) -> Decision {
    if resolved {
        return Decision::IgnoredResolved;
    }
    match direction {
        Direction::Up if desired >= limits.max => return Decision::AtMax,
        Direction::Down if desired <= limits.min => return Decision::AtMin,
        _ => {}
    }
    let left = cooldown_left(direction, limits, clocks, now);
    if left > 0 {
        return Decision::Cooldown { seconds_left: left };
    }
    let to = match direction {
        Direction::Up => desired
            .saturating_add(limits.step)
            .clamp(limits.min, limits.max),
        Direction::Down => desired.saturating_sub(1).clamp(limits.min, limits.max),
    };
    Decision::Accepted { from: desired, to }
}

/// Whole seconds (rounded up) until a change in `direction` is allowed; 0 when it is.
pub fn cooldown_left(direction: Direction, limits: &Limits, clocks: &Clocks, now: f64) -> u64 {
    let (since, cooldown) = match direction {
        Direction::Up => (clocks.last_up, limits.up_cooldown),
        Direction::Down => (
            match (clocks.last_up, clocks.last_down) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            limits.down_cooldown,
        ),
    };
    match since {
        Some(since) => {
            let left = since + cooldown.as_secs_f64() - now;
            if left > 0.0 {
                left.ceil() as u64
            } else {
                0
            }
        }
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::*;

    const L: Limits = Limits {
        min: 1,
        max: 5,
        step: 1,
        up_cooldown: Duration::from_secs(180),
        down_cooldown: Duration::from_secs(300),
    };
    const NOW: f64 = 1_000_000.0;

    fn at(ago: f64) -> Option<f64> {
        Some(NOW - ago)
    }

    #[test]
    fn decision_table() {
        let none = Clocks::default();
        let step3 = Limits { step: 3, ..L };
        let rows: &[(&str, Direction, bool, u32, Limits, Clocks, Decision)] = &[
            (
                "up, no history",
                Up,
                false,
                1,
                L,
                none,
                Decision::Accepted { from: 1, to: 2 },
            ),
            (
                "down, no history",
                Down,
                false,
                3,
                L,
                none,
                Decision::Accepted { from: 3, to: 2 },
            ),
            (
                "resolved up is ignored",
                Up,
                true,
                1,
                L,
                none,
                Decision::IgnoredResolved,
            ),
            (
                "resolved down is ignored",
                Down,
                true,
                3,
                L,
                none,
                Decision::IgnoredResolved,
            ),
            (
                "resolved beats at_max",
                Up,
                true,
                5,
                L,
                none,
                Decision::IgnoredResolved,
            ),
            ("up at max", Up, false, 5, L, none, Decision::AtMax),
            ("down at min", Down, false, 1, L, none, Decision::AtMin),
            (
                "at_max beats cooldown",
                Up,
                false,
                5,
                L,
                Clocks {
                    last_up: at(1.0),
                    last_down: None,
                },
                Decision::AtMax,
            ),
            (
                "step is capped at max",
                Up,
                false,
                4,
                step3,
                none,
                Decision::Accepted { from: 4, to: 5 },
            ),
            (
                "step of 3",
                Up,
                false,
                1,
                step3,
                none,
                Decision::Accepted { from: 1, to: 4 },
            ),
            (
                "up inside up cooldown",
                Up,
                false,
                2,
                L,
                Clocks {
                    last_up: at(60.0),
                    last_down: None,
                },
                Decision::Cooldown { seconds_left: 120 },
            ),
            (
                "up after up cooldown",
                Up,
                false,
                2,
                L,
                Clocks {
                    last_up: at(180.0),
                    last_down: None,
                },
                Decision::Accepted { from: 2, to: 3 },
            ),
            (
                "up soon after a down is fine",
                Up,
                false,
                2,
                L,
                Clocks {
                    last_up: None,
                    last_down: at(1.0),
                },
                Decision::Accepted { from: 2, to: 3 },
            ),
            (
                "down waits after an up",
                Down,
                false,
                3,
                L,
                Clocks {
                    last_up: at(200.0),
                    last_down: None,
                },
                Decision::Cooldown { seconds_left: 100 },
            ),
            (
                "down inside down cooldown",
                Down,
                false,
                3,
                L,
                Clocks {
                    last_up: at(1000.0),
                    last_down: at(299.5),
                },
                Decision::Cooldown { seconds_left: 1 },
            ),
            (
                "down after both cooldowns",
                Down,
                false,
                3,
                L,
                Clocks {
                    last_up: at(301.0),
                    last_down: at(400.0),
                },
                Decision::Accepted { from: 3, to: 2 },
            ),
            (
                "desired above max comes down to max",
                Down,
                false,
                9,
                L,
                none,
                Decision::Accepted { from: 9, to: 5 },
            ),
        ];
        for (name, dir, resolved, desired, limits, clocks, want) in rows {
            assert_eq!(
                decide(*dir, *resolved, *desired, limits, clocks, NOW),
                *want,
                "{name}"
            );
        }
    }
}
