//! The pool's lifecycle record: after each list (and each delete), the reconciler counts the
//! VM-seconds of its open intervals into the metrics and hands the interval changes to the
//! store's writer thread (never written on the loop).

use super::PoolReconciler;
use crate::pool::cost::{Change, Prices, VmState};

impl PoolReconciler {
    /// Counts the seconds up to `now` into `idch_autoscaler_pool_vm_seconds_total` and
    /// `idch_autoscaler_pool_cost_total`.
    fn accrue_cost(&mut self, now: f64) {
        let prices = Prices::of(&self.pool.price);
        for (state, secs) in self.lifetimes.accrue(now) {
            self.metrics
                .pool_vm_seconds
                .get_or_create(&vec![
                    ("pool", self.pool.name.clone()),
                    ("state", state.as_str().to_string()),
                ])
                .inc_by(secs);
            self.metrics
                .pool_cost
                .get_or_create(&vec![
                    ("pool", self.pool.name.clone()),
                    ("currency", self.pool.price.currency.clone()),
                ])
                .inc_by(secs * prices.per_hour(state) / 3600.0);
        }
        // Both states are exported from the first list on, at 0 when none was seen.
        for state in [VmState::Running, VmState::Stopped] {
            self.metrics
                .pool_vm_seconds
                .get_or_create(&vec![
                    ("pool", self.pool.name.clone()),
                    ("state", state.as_str().to_string()),
                ])
                .inc_by(0.0);
        }
        self.metrics
            .pool_cost
            .get_or_create(&vec![
                ("pool", self.pool.name.clone()),
                ("currency", self.pool.price.currency.clone()),
            ])
            .inc_by(0.0);
    }

    fn persist_lifetimes(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        let pool = self.pool.name.clone();
        drop(
            self.writer
                .submit(move |s| s.apply_lifetimes(&pool, &changes)),
        );
    }

    /// After a list: every VM of the pool it shows (seed included), by cloud status.
    pub(super) fn record_lifetimes(&mut self, now: f64) {
        self.accrue_cost(now);
        let vms: Vec<(String, String, String)> = self
            .view
            .backends
            .iter()
            .map(|b| (b.uuid.clone(), b.name.clone(), b.cloud_status.clone()))
            .collect();
        let changes = self.lifetimes.observe(&vms, now);
        self.persist_lifetimes(changes);
    }

    /// A delete succeeded: the VM's interval ends now.
    pub(super) fn record_deleted(&mut self, uuid: &str, now: f64) {
        self.accrue_cost(now);
        if let Some(change) = self.lifetimes.deleted(uuid, now) {
            self.persist_lifetimes(vec![change]);
        }
    }
}
