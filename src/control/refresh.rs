//! A pool's rolling refresh, beside its desired size: started and cancelled by the operator
//! (`POST` / `DELETE /v1/pools/{pool}/refresh`, on a blocking thread, durable before the
//! answer) or started by drift detection, and brought up to date by the reconciler (through its
//! writer thread). Every change is made under one lock and bumps a sequence number, so writes
//! that commit out of order never lose the newer record (see `store::refresh`).

use super::PoolControl;
use crate::pool::refresh::Refresh;
use crate::pool::Backend;
use crate::store::Activity;

/// The refresh record and its sequence number.
#[derive(Debug, Default)]
pub(super) struct RefreshSlot {
    pub seq: u64,
    pub refresh: Option<Refresh>,
}

/// Why a refresh request changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("a refresh is already running")]
    Running(Box<Refresh>),
    #[error("no refresh is running")]
    NotRunning(Option<Box<Refresh>>),
    #[error("the seed VM is not in the cloud's list: a refresh would have nothing to clone")]
    NoSeed,
    #[error("cannot persist the refresh: {0:#}")]
    Store(anyhow::Error),
}

/// A change for the reconciler to persist through its writer.
pub struct RefreshWrite {
    pub seq: u64,
    pub refresh: Refresh,
    pub activity: Option<Activity>,
}

impl PoolControl {
    fn refresh_slot(&self) -> std::sync::MutexGuard<'_, RefreshSlot> {
        self.refresh.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pool's latest refresh, if it ever had one.
    pub fn refresh(&self) -> Option<Refresh> {
        self.refresh_slot().refresh.clone()
    }

    /// The old clones (uuids) of the running refresh, for the planner.
    pub fn refresh_replacing(&self) -> Option<std::collections::BTreeSet<String>> {
        let slot = self.refresh_slot();
        slot.refresh
            .as_ref()
            .filter(|r| r.running())
            .map(Refresh::old_uuids)
    }

    pub(super) fn export_refresh(&self, refresh: Option<&Refresh>) {
        let labels = vec![("pool", self.config.name.clone())];
        let (running, total, replaced) = refresh.map_or((0, 0, 0), |r| {
            (r.running() as i64, r.total as i64, r.replaced as i64)
        });
        self.metrics
            .refresh_running
            .get_or_create(&labels)
            .set(running);
        self.metrics.refresh_total.get_or_create(&labels).set(total);
        self.metrics
            .refresh_replaced
            .get_or_create(&labels)
            .set(replaced);
    }

    /// Starts a refresh now and persists it before returning (call on a blocking thread).
    /// `backends` and `unresolved` are what exists: the old clones.
    pub fn start_refresh(
        &self,
        backends: &[Backend],
        unresolved: &[String],
        seed_present: bool,
        cause: &str,
        now: f64,
    ) -> Result<Refresh, RefreshError> {
        let slot = self.refresh_slot();
        if let Some(r) = slot.refresh.as_ref().filter(|r| r.running()) {
            return Err(RefreshError::Running(Box::new(r.clone())));
        }
        if !seed_present {
            return Err(RefreshError::NoSeed);
        }
        let refresh = Refresh::start(
            uuid::Uuid::new_v4().to_string(),
            cause.to_string(),
            None,
            backends,
            unresolved,
            now,
        );
        let activity = started_activity(&refresh);
        self.commit_refresh(slot, refresh, activity)
    }

    /// Persists an operator's change (durable before it applies), then applies it, exports it
    /// and wakes the reconciler.
    fn commit_refresh(
        &self,
        mut slot: std::sync::MutexGuard<'_, RefreshSlot>,
        refresh: Refresh,
        activity: Activity,
    ) -> Result<Refresh, RefreshError> {
        let seq = slot.seq + 1;
        self.store
            .save_refresh(&self.config.name, seq, &refresh, Some(&activity))
            .map_err(RefreshError::Store)?;
        slot.seq = seq;
        slot.refresh = Some(refresh.clone());
        drop(slot);
        self.metrics
            .activity(&self.config.name, "refresh", &activity.outcome);
        tracing::info!(pool = %self.config.name, id = %refresh.id, total = refresh.total, cause = %activity.cause, outcome = %activity.outcome, "refresh changed by the operator");
        self.export_refresh(Some(&refresh));
        self.wake.notify_one();
        Ok(refresh)
    }

    /// Cancels the running refresh and persists it before returning (blocking thread).
    pub fn cancel_refresh(&self, cause: &str, now: f64) -> Result<Refresh, RefreshError> {
        let slot = self.refresh_slot();
        let Some(mut refresh) = slot.refresh.clone().filter(|r| r.running()) else {
            return Err(RefreshError::NotRunning(slot.refresh.clone().map(Box::new)));
        };
        refresh.cancel(now);
        let activity = Activity::new(
            "refresh",
            cause,
            "cancelled",
            format!(
                "{}: {} of {} old clones replaced",
                refresh.id, refresh.replaced, refresh.total
            ),
        );
        self.commit_refresh(slot, refresh, activity)
    }

    /// The reconciler's change to the running refresh, or (with `start`, when none runs) the
    /// start of one by drift detection: applied in memory now, persisted by the caller.
    pub fn update_refresh(
        &self,
        start: Option<Refresh>,
        change: impl FnOnce(&mut Refresh) -> bool,
    ) -> Option<RefreshWrite> {
        let mut slot = self.refresh_slot();
        let (refresh, activity) = match start {
            Some(new) => {
                if slot.refresh.as_ref().is_some_and(Refresh::running) {
                    return None;
                }
                let activity = started_activity(&new);
                (new, Some(activity))
            }
            None => {
                // Called on every pass of the loop: no copy unless one runs.
                let mut refresh = slot.refresh.as_ref().filter(|r| r.running())?.clone();
                if !change(&mut refresh) {
                    return None;
                }
                let activity = (!refresh.running()).then(|| {
                    Activity::new(
                        "refresh",
                        refresh.reason.clone(),
                        refresh.state.as_str(),
                        format!(
                            "{}: {} of {} old clones replaced",
                            refresh.id, refresh.replaced, refresh.total
                        ),
                    )
                });
                (refresh, activity)
            }
        };
        slot.seq += 1;
        slot.refresh = Some(refresh.clone());
        let seq = slot.seq;
        drop(slot);
        if let Some(a) = &activity {
            tracing::info!(pool = %self.config.name, id = %refresh.id, state = refresh.state.as_str(), reason = %refresh.reason, outcome = %a.outcome, "refresh changed");
            self.metrics
                .activity(&self.config.name, "refresh", &a.outcome);
        }
        self.export_refresh(Some(&refresh));
        Some(RefreshWrite {
            seq,
            refresh,
            activity,
        })
    }
}

fn started_activity(r: &Refresh) -> Activity {
    Activity::new(
        "refresh",
        r.reason.clone(),
        if r.running() { "started" } else { "done" },
        format!("{}: {} old clones to replace", r.id, r.total),
    )
}
