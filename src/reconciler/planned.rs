//! What the reconciler planned, published for `GET /v1/pools/{pool}/plan`, and the dry run
//! (`run --dry-run`): the steps are described, logged and recorded as activities with outcome
//! `dry_run`, and never taken: no cloud call but reads (the list, a booting clone's fetch), no
//! intent written, no backend's state changed.

use std::collections::HashSet;

use tracing::info;

use super::PoolReconciler;
use crate::pool::plan::{self, Described, Observed, Plan, Situation};
use crate::snapshot::plan::{InFlight, PlanView};
use crate::store::Activity;

impl PoolReconciler {
    /// Notes the plan of one round of `converge` (`round` 0 is the pass's first), for the plan
    /// view; in a dry run, records the steps that just entered the plan. A normal run keeps the
    /// steps of the most recent pass that took any; a dry run shows the latest pass's.
    pub(super) fn note_plan(&mut self, round: usize, plan: &Plan, desired: u32, now: f64) {
        let observed = Observed {
            backends: &self.view.backends,
            names_in_cloud: &self.names_in_cloud,
            seed_present: self.view.seed_present,
        };
        let situation = Situation {
            desired,
            size: plan::counted_size(observed, &self.intents),
            policy: &self.policy,
        };
        let steps: Vec<Described> = plan
            .steps
            .iter()
            .map(|s| plan::describe(s, &situation))
            .collect();
        let view = &mut self.planned;
        view.desired = Some(desired);
        view.next_check = plan.next;
        if self.dry_run {
            if view.steps != steps {
                view.computed_at = Some(now);
                view.steps = steps.clone();
            }
            self.rehearse(&steps);
        } else if !steps.is_empty() {
            if round == 0 {
                view.computed_at = Some(now);
                view.steps.clear();
            }
            view.steps.extend(steps);
        }
    }

    /// A dry run's record: each step once while it stays in the plan, pass after pass; again
    /// only after it left the plan and came back.
    fn rehearse(&mut self, steps: &[Described]) {
        let now_planned: HashSet<(&'static str, String)> =
            steps.iter().map(|d| (d.action, d.vm.clone())).collect();
        for d in steps {
            if self.rehearsed.contains(&(d.action, d.vm.clone())) {
                continue;
            }
            info!(action = d.action, vm = %d.vm, reason = %d.reason, "dry run: would take this step");
            self.record(Activity::new(
                d.action,
                d.reason.clone(),
                "dry_run",
                format!("{}: not taken (dry run)", d.vm),
            ));
        }
        self.rehearsed = now_planned;
    }

    /// Publishes the plan view, with the calls now in flight, when it changed.
    pub(super) fn publish_plan(&mut self) {
        self.planned.in_flight = self
            .executor
            .in_flight()
            .into_iter()
            .map(|(key, call, vm)| InFlight {
                vm: vm.to_string(),
                key: key.to_string(),
                call,
            })
            .collect();
        if *self.state.plan(self.index) != self.planned {
            self.state.publish_plan(self.index, self.planned.clone());
        }
    }

    /// The empty plan view this reconciler starts with.
    pub(super) fn initial_plan(pool: &str, dry_run: bool) -> PlanView {
        PlanView::new(pool, dry_run)
    }
}
