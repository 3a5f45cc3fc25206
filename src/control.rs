//! The desired size of each pool: the one place where webhooks and operators change it.
//!
//! A [`PoolControl`] holds desired and the cooldown clocks behind a mutex: a decision is
//! read → decide → persist → apply under that lock, so concurrent webhooks are serialised and
//! can never double-scale. The reconciler reads desired and is woken through `wake`.

mod refresh;
mod target;

pub use target::TargetStatus;

use std::sync::{Arc, Mutex};

pub use refresh::{RefreshError, RefreshWrite};

use crate::config::PoolConfig;
use crate::metrics::Metrics;
use crate::pool::decide::{cooldown_left, decide, Clocks, Decision, Direction, Limits};
use crate::pool::schedule::{self, Windows};
use crate::store::{Activity, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Desired {
    /// `None` until the first successful list when nothing was persisted.
    size: Option<u32>,
}

pub struct PoolControl {
    pub config: Arc<PoolConfig>,
    /// Written by `scale`, `set_desired`, `init_from_observed` and `apply_schedule` under this lock; read by
    /// the reconciler and the status endpoints.
    inner: Mutex<(Desired, Clocks)>,
    /// Wakes the pool's reconciler when desired changes.
    pub wake: tokio::sync::Notify,
    /// The latest rolling refresh (`control/refresh.rs`).
    refresh: Mutex<refresh::RefreshSlot>,
    /// Target tracking's latest result and the operator's hold (`control/target.rs`).
    tracking: target::TrackingSlot,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
}

/// What a webhook or operator call did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub decision: Decision,
    pub desired: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the pool has not been reconciled yet; try again shortly")]
    NotReady,
    #[error("size {size} is outside {min}..={max}")]
    OutOfBounds { size: u32, min: u32, max: u32 },
    #[error("size {size} is below the scheduled floor {floor} of window {window:?} (open until {until}); the pool cannot go below it while the window is open")]
    BelowFloor {
        size: u32,
        floor: u32,
        window: String,
        until: String,
    },
    #[error("cannot persist the decision: {0:#}")]
    Store(anyhow::Error),
}

impl PoolControl {
    /// Loads the persisted desired size and clocks of the pool (if any).
    pub fn load(
        config: Arc<PoolConfig>,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<PoolControl> {
        let (size, clocks) = match store.load_pool(&config.name)? {
            Some((d, c)) => (Some(d.clamp(config.min, config.max)), c),
            None => (None, Clocks::default()),
        };
        let (seq, latest) = match store.refresh(&config.name)? {
            Some((seq, r)) => (seq, Some(r)),
            None => (0, None),
        };
        let control = PoolControl {
            config,
            inner: Mutex::new((Desired { size }, clocks)),
            wake: tokio::sync::Notify::new(),
            refresh: Mutex::new(refresh::RefreshSlot {
                seq,
                refresh: latest,
            }),
            tracking: Default::default(),
            store,
            metrics,
        };
        control.export(size);
        control.export_refresh(control.refresh().as_ref());
        control.export_floor(None);
        Ok(control)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Desired, Clocks)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn export(&self, size: Option<u32>) {
        if let Some(size) = size {
            self.metrics
                .desired
                .get_or_create(&vec![("pool", self.config.name.clone())])
                .set(size as i64);
        }
    }

    fn export_floor(&self, floor: Option<u32>) {
        self.metrics
            .scheduled_min
            .get_or_create(&vec![("pool", self.config.name.clone())])
            .set(i64::from(floor.unwrap_or(0)));
    }

    /// The pool's `[[pool.schedule]]` windows at `now`.
    pub fn windows(&self, now: f64) -> Windows<'_> {
        schedule::windows(&self.config.schedule, now)
    }

    /// The bounds at `now`: `min` raised to the floor of the open windows (never above `max`).
    pub fn limits_at(&self, now: f64) -> Limits {
        let floor = self.windows(now).floor();
        Limits {
            min: schedule::effective_min(self.config.min, self.config.max, floor),
            ..self.limits()
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            min: self.config.min,
            max: self.config.max,
            step: self.config.scale_up_step,
            up_cooldown: self.config.scale_up_cooldown,
            down_cooldown: self.config.scale_down_cooldown,
        }
    }

    pub fn desired(&self) -> Option<u32> {
        self.lock().0.size
    }

    pub fn clocks(&self) -> Clocks {
        self.lock().1
    }

    /// Seconds left in the scale-up and scale-down cooldowns.
    pub fn cooldown_left(&self, now: f64) -> (u64, u64) {
        let clocks = self.clocks();
        let limits = self.limits();
        (
            cooldown_left(Direction::Up, &limits, &clocks, now),
            cooldown_left(Direction::Down, &limits, &clocks, now),
        )
    }

    /// At the first successful list with nothing persisted: desired = what exists, within bounds.
    pub fn init_from_observed(&self, active: u32) -> anyhow::Result<()> {
        let mut guard = self.lock();
        if guard.0.size.is_some() {
            return Ok(());
        }
        let size = active.clamp(self.config.min, self.config.max);
        self.store.save_pool(
            &self.config.name,
            size,
            &guard.1,
            Some(&Activity::new(
                "set_desired",
                "start-up: nothing persisted, desired = VMs found",
                "ok",
                format!("{active} found -> desired {size}"),
            )),
        )?;
        guard.0.size = Some(size);
        drop(guard);
        self.export(Some(size));
        self.wake.notify_one();
        // A start inside an open window: the floor applies from the first desired size on.
        self.apply_schedule(crate::clock::now())?;
        Ok(())
    }

    /// At a window's opening (and at start, and at each close): raises desired to the floor of
    /// the open windows when it is below it, recorded as a `schedule` activity whose cause names
    /// the window. Never lowers desired and leaves the cooldown clocks alone: after the close
    /// the size comes down only through the usual decisions. `None` when nothing changed
    /// (no floor, desired not known yet, or already at or above it).
    pub fn apply_schedule(&self, now: f64) -> Result<Option<Outcome>, ControlError> {
        let windows = self.windows(now);
        self.export_floor(windows.floor());
        let Some(window) = windows.governing() else {
            return Ok(None);
        };
        let floor = schedule::effective_min(self.config.min, self.config.max, Some(window.min));
        let mut guard = self.lock();
        let Some(from) = guard.0.size.filter(|d| *d < floor) else {
            return Ok(None);
        };
        let cause = format!("schedule {}", window.name);
        let activity = Activity::new(
            "schedule",
            cause.as_str(),
            "accepted",
            format!(
                "desired {from} -> {floor} (window until {})",
                crate::clock::rfc3339(window.closes)
            ),
        );
        self.store
            .save_pool(&self.config.name, floor, &guard.1, Some(&activity))
            .map_err(ControlError::Store)?;
        guard.0.size = Some(floor);
        drop(guard);
        tracing::info!(pool = %self.config.name, from, to = floor, %cause, "desired raised to the scheduled floor");
        self.export(Some(floor));
        self.wake.notify_one();
        Ok(Some(Outcome {
            decision: Decision::Accepted { from, to: floor },
            desired: floor,
        }))
    }

    /// A webhook's request: decides, persists an accepted change, wakes the reconciler.
    pub fn scale(
        &self,
        direction: Direction,
        resolved: bool,
        cause: &str,
        now: f64,
    ) -> Result<Outcome, ControlError> {
        let mut guard = self.lock();
        let Some(desired) = guard.0.size else {
            return Err(ControlError::NotReady);
        };
        let ignored = self
            .config
            .target
            .as_ref()
            .is_some_and(|t| !t.allow_webhooks);
        let decision = if ignored {
            // The target policy decides; an alert's webhook must not fight it.
            Decision::IgnoredPolicy
        } else {
            decide(
                direction,
                resolved,
                desired,
                &self.limits_at(now),
                &guard.1,
                now,
            )
        };
        self.metrics
            .webhook_decisions
            .get_or_create(&vec![
                ("pool", self.config.name.clone()),
                ("direction", direction.as_str().to_string()),
                ("decision", decision.as_str().to_string()),
            ])
            .inc();
        let Decision::Accepted { from, to } = decision else {
            return Ok(Outcome { decision, desired });
        };
        let mut clocks = guard.1;
        match direction {
            Direction::Up => clocks.last_up = Some(now),
            Direction::Down => clocks.last_down = Some(now),
        }
        let activity = Activity::new(
            direction.as_str(),
            cause,
            "accepted",
            format!("desired {from} -> {to}"),
        );
        self.store
            .save_pool(&self.config.name, to, &clocks, Some(&activity))
            .map_err(ControlError::Store)?;
        *guard = (Desired { size: Some(to) }, clocks);
        drop(guard);
        tracing::info!(pool = %self.config.name, direction = direction.as_str(), from, to, cause, "desired size changed");
        self.export(Some(to));
        self.wake.notify_one();
        Ok(Outcome {
            decision,
            desired: to,
        })
    }

    /// An operator's `PUT /v1/pools/{pool}/desired`: any size within bounds, no cooldown; the
    /// clocks start again so alerts do not immediately undo it. The size desired already is
    /// changes nothing (clocks included) and is recorded as `unchanged`.
    pub fn set_desired(&self, size: u32, cause: &str, now: f64) -> Result<Outcome, ControlError> {
        let (min, max) = (self.config.min, self.config.max);
        if size < min || size > max {
            return Err(ControlError::OutOfBounds { size, min, max });
        }
        if let Some(window) = self.windows(now).governing().filter(|w| size < w.min) {
            return Err(ControlError::BelowFloor {
                size,
                floor: window.min,
                window: window.name.to_string(),
                until: crate::clock::rfc3339(window.closes),
            });
        }
        let mut guard = self.lock();
        let current = guard.0.size;
        if current == Some(size) {
            let activity = Activity::new(
                "set_desired",
                cause,
                "unchanged",
                format!("desired {size} (unchanged)"),
            );
            self.store
                .record(&self.config.name, &activity)
                .map_err(ControlError::Store)?;
            drop(guard);
            self.note_manual(now);
            return Ok(Outcome {
                decision: Decision::Unchanged,
                desired: size,
            });
        }
        let from = current.unwrap_or(size);
        let mut clocks = guard.1;
        if size > from {
            clocks.last_up = Some(now);
        } else if size < from {
            clocks.last_down = Some(now);
        }
        let detail = match current {
            Some(from) => format!("desired {from} -> {size}"),
            None => format!("desired (unset) -> {size}"),
        };
        let activity = Activity::new("set_desired", cause, "accepted", detail);
        self.store
            .save_pool(&self.config.name, size, &clocks, Some(&activity))
            .map_err(ControlError::Store)?;
        *guard = (Desired { size: Some(size) }, clocks);
        drop(guard);
        tracing::info!(pool = %self.config.name, from, to = size, cause, "desired size set");
        self.note_manual(now);
        self.export(Some(size));
        self.wake.notify_one();
        Ok(Outcome {
            decision: Decision::Accepted { from, to: size },
            desired: size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn control() -> PoolControl {
        let pool = crate::config::Config::parse(
            "[idcloudhost]\n[[pool]]\nname = \"p\"\nseed_vm = \"s\"\nscale_up_cooldown = \"3m\"\nscale_down_cooldown = \"5m\"\n",
        )
        .unwrap()
        .pools
        .remove(0);
        PoolControl::load(
            Arc::new(pool),
            Arc::new(Store::open_in_memory().unwrap()),
            Arc::new(Metrics::new()),
        )
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn cooldowns_follow_the_clock() {
        let c = control();
        assert!(matches!(
            c.scale(Direction::Up, false, "t", crate::clock::now()),
            Err(ControlError::NotReady)
        ));
        c.init_from_observed(1).unwrap();
        let up = |c: &PoolControl| {
            c.scale(Direction::Up, false, "t", crate::clock::now())
                .unwrap()
                .decision
        };
        let down = |c: &PoolControl| {
            c.scale(Direction::Down, false, "t", crate::clock::now())
                .unwrap()
                .decision
        };
        assert_eq!(up(&c), Decision::Accepted { from: 1, to: 2 });
        assert_eq!(up(&c), Decision::Cooldown { seconds_left: 180 });
        tokio::time::advance(Duration::from_secs(179)).await;
        assert_eq!(up(&c), Decision::Cooldown { seconds_left: 1 });
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(up(&c), Decision::Accepted { from: 2, to: 3 });
        // A scale-down waits scale_down_cooldown after that scale-up.
        assert_eq!(down(&c), Decision::Cooldown { seconds_left: 300 });
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(down(&c), Decision::Accepted { from: 3, to: 2 });
        assert_eq!(c.cooldown_left(crate::clock::now()), (0, 300));
        assert_eq!(c.desired(), Some(2));
    }

    #[test]
    fn decisions_survive_a_reload_and_bad_sizes_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.db")).unwrap());
        let pool = Arc::new(
            crate::config::Config::parse(
                "[idcloudhost]\n[[pool]]\nname = \"p\"\nseed_vm = \"s\"\n",
            )
            .unwrap()
            .pools
            .remove(0),
        );
        let c = PoolControl::load(pool.clone(), store.clone(), Arc::new(Metrics::new())).unwrap();
        c.init_from_observed(1).unwrap();
        c.scale(Direction::Up, false, "t", 1000.0).unwrap();
        assert!(matches!(
            c.set_desired(9, "op", 1001.0),
            Err(ControlError::OutOfBounds { .. })
        ));
        let again = PoolControl::load(pool, store, Arc::new(Metrics::new())).unwrap();
        assert_eq!(again.desired(), Some(2));
        assert_eq!(again.clocks().last_up, Some(1000.0));
    }

    #[test]
    fn setting_the_current_size_is_unchanged_and_keeps_the_clocks() {
        let c = control();
        c.init_from_observed(1).unwrap();
        let before = c.clocks();
        let outcome = c.set_desired(1, "op", 2000.0).unwrap();
        assert_eq!(outcome.decision, Decision::Unchanged);
        assert_eq!(outcome.decision.as_str(), "unchanged");
        assert_eq!((c.desired(), c.clocks()), (Some(1), before));
        let last = &c.store.activities("p", 1).unwrap()[0];
        assert_eq!(
            (last.outcome.as_str(), last.detail.as_str()),
            ("unchanged", "desired 1 (unchanged)")
        );
        let outcome = c.set_desired(2, "op", 2001.0).unwrap();
        assert_eq!(outcome.decision, Decision::Accepted { from: 1, to: 2 });
        assert_eq!(c.clocks().last_up, Some(2001.0));
    }
}
