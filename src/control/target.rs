//! A pool's target tracking, on the control's side: the tracker's recommendation is applied here
//! under the same lock as every other change of desired (bounds came with the recommendation;
//! the operator's manual hold and the cooldowns are checked by [`gate`]), recorded as a `target`
//! activity whose cause carries the metric, and kept for the status API and `/metrics`.

use std::sync::Mutex;

use super::{ControlError, Desired, PoolControl};
use crate::pool::target::{gate, Gate, Recommendation};
use crate::store::Activity;

/// The latest interval's result, for `GET /v1/pools/{pool}`.
#[derive(Debug, Clone)]
pub struct TargetStatus {
    /// When it was computed (Unix seconds).
    pub at: f64,
    pub recommendation: Recommendation,
    pub gate: Gate,
    /// The query's error, when it failed (never a URL or a token).
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct Tracking {
    last: Option<TargetStatus>,
    /// An operator's `PUT .../desired` holds the policy until then.
    manual_until: Option<f64>,
    /// Bumped by every operator change, so the tracker starts its windows afresh.
    manual_seq: u64,
}

pub(super) type TrackingSlot = Mutex<Tracking>;

impl PoolControl {
    fn tracking(&self) -> std::sync::MutexGuard<'_, Tracking> {
        self.tracking.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one interval's recommendation: desired changes when the gate lets it (persisted
    /// with its activity before anything else sees it), and the result is kept for the status.
    pub fn apply_target(
        &self,
        recommendation: Recommendation,
        error: Option<String>,
        now: f64,
    ) -> Result<Gate, ControlError> {
        let mut guard = self.lock();
        let Some(desired) = guard.0.size else {
            return Err(ControlError::NotReady);
        };
        let manual_until = self.tracking().manual_until;
        let decision = gate(
            &recommendation,
            desired,
            &self.limits_at(now),
            &guard.1,
            manual_until,
            now,
        );
        if let Gate::Apply { from, to } = decision {
            let mut clocks = guard.1;
            if to > from {
                clocks.last_up = Some(now);
            } else {
                clocks.last_down = Some(now);
            }
            let activity = Activity::new(
                "target",
                recommendation.describe(),
                "accepted",
                format!("desired {from} -> {to}"),
            );
            self.store
                .save_pool(&self.config.name, to, &clocks, Some(&activity))
                .map_err(ControlError::Store)?;
            *guard = (Desired { size: Some(to) }, clocks);
            drop(guard);
            tracing::info!(pool = %self.config.name, from, to, cause = %recommendation.describe(), "desired size changed by target tracking");
            self.export(Some(to));
            self.wake.notify_one();
        } else {
            drop(guard);
        }
        self.export_target(&recommendation);
        self.tracking().last = Some(TargetStatus {
            at: now,
            recommendation,
            gate: decision,
            error,
        });
        Ok(decision)
    }

    /// The latest interval's result, if the pool has a target policy and one ran.
    pub fn target_status(&self) -> Option<TargetStatus> {
        self.tracking().last.clone()
    }

    /// Until when an operator's change holds the policy (`None`: no hold now or ever).
    pub fn manual_hold_until(&self) -> Option<f64> {
        self.tracking().manual_until
    }

    /// Changes with every operator `PUT`.
    pub fn manual_seq(&self) -> u64 {
        self.tracking().manual_seq
    }

    /// An operator set desired: with a target policy, it holds for `manual_hold`.
    pub(super) fn note_manual(&self, now: f64) {
        if let Some(target) = &self.config.target {
            let mut t = self.tracking();
            t.manual_until = Some(now + target.manual_hold.as_secs_f64());
            t.manual_seq += 1;
        }
    }

    fn export_target(&self, r: &Recommendation) {
        let labels = vec![("pool", self.config.name.clone())];
        let m = &self.metrics;
        m.target_metric
            .get_or_create(&labels)
            .set(r.metric.unwrap_or(f64::NAN));
        m.target_value.get_or_create(&labels).set(r.target);
        m.target_recommendation
            .get_or_create(&labels)
            .set(r.desired.map_or(f64::NAN, f64::from));
        m.target_evaluations
            .get_or_create(&vec![
                ("pool", self.config.name.clone()),
                ("reason", r.reason.as_str().to_string()),
            ])
            .inc();
    }
}
