//! The reconciler's side of a VM list: clone calls resolved against it, intents whose VM is
//! gone dropped, the view merged (`pool::observe`), adoptions and vanished VMs recorded, and the
//! initial desired size when nothing was persisted.

use std::collections::{HashMap, HashSet};

use tracing::{error, info, warn};

use super::lister::{ListOutcome, Listing};
use super::PoolReconciler;
use crate::clock;
use crate::pool::plan::{self, CloneResolution, Intent, Observed, Phase};
use crate::pool::{self, Backend, BackendState, Role};
use crate::store::Activity;

impl PoolReconciler {
    // ---- the list ----------------------------------------------------------------------------

    pub(super) async fn on_listing(&mut self, listing: &Listing) {
        if listing.seq <= self.listed_seq {
            return;
        }
        let labels = vec![("pool", self.pool.name.clone())];
        let vms = match &listing.outcome {
            ListOutcome::Ok(vms) => vms.clone(),
            ListOutcome::Failed { message, .. } => {
                self.view.cloud_ok = false;
                self.view.last_error = Some(message.clone());
                self.metrics.cloud_up.get_or_create(&labels).set(0);
                self.metrics.reconcile_errors.get_or_create(&labels).inc();
                return;
            }
        };
        let first = self.listed_seq == 0;
        self.listed_seq = listing.seq;
        let now = clock::now();
        self.names_in_cloud = vms.iter().map(|v| v.name.clone()).collect();
        let uuids: HashSet<&str> = vms.iter().map(|v| v.uuid.as_str()).collect();

        // Clone calls: found, or (ended before this list began and absent) outcome unknown.
        for r in plan::resolve_clones(&self.intents, &self.names_in_cloud, listing.started) {
            match r {
                CloneResolution::Found { name } => {
                    let late = self
                        .intents
                        .iter()
                        .any(|i| i.key() == name && i.phase == Phase::Reserved);
                    let refill = self
                        .intents
                        .iter()
                        .find(|i| i.key() == name && i.phase == Phase::Provisioning && i.warm)
                        .cloned();
                    if let Some(mut i) = refill {
                        // A clone for the warm pool: it boots once, then it is stopped.
                        i.phase = Phase::Warming;
                        i.uuid = vms.iter().find(|v| v.name == name).map(|v| v.uuid.clone());
                        i.since = now;
                        drop(self.put_intent(i, None));
                        continue;
                    }
                    self.drop_intent(&name, None);
                    if late {
                        info!(vm = %name, "a clone whose call had no answer appeared: adopting it");
                    }
                }
                CloneResolution::NotFound { name } => {
                    warn!(vm = %name, "a clone call with no answer did not create its VM (yet): its name stays reserved");
                    if let Some(mut i) = self.intents.iter().find(|i| i.key() == name).cloned() {
                        i.phase = Phase::Reserved;
                        i.since = now;
                        drop(self.put_intent(
                            i,
                            Some(Activity::new(
                                "clone",
                                "re-listed after a clone call with no answer",
                                "not_created",
                                format!("{name}: not in the list; the name is not reused, and a VM that appears under it is adopted"),
                            )),
                        ));
                    }
                }
                CloneResolution::Expired { name } => self.drop_intent(&name, None),
            }
        }
        // The warm pool's intents whose VM is gone are over (a delete of one is recorded by
        // the delete itself).
        let warm_gone: Vec<String> = self
            .intents
            .iter()
            .filter(|i| matches!(i.phase, Phase::Warming | Phase::Stopping | Phase::Starting))
            .filter(|i| i.uuid.as_deref().is_none_or(|u| !uuids.contains(u)))
            .map(|i| i.key().to_string())
            .collect();
        for key in warm_gone {
            self.drop_intent(&key, None);
        }
        // Drains and deletes whose VM is gone are done.
        let gone: Vec<Intent> = self
            .intents
            .iter()
            .filter(|i| matches!(i.phase, Phase::Draining | Phase::Deleting))
            .filter(|i| i.uuid.as_deref().is_none_or(|u| !uuids.contains(u)))
            .cloned()
            .collect();
        for i in gone {
            let uuid = i.uuid.clone().unwrap_or_default();
            if !self.executor.busy().contains(&uuid) {
                self.drop_intent(
                    i.key(),
                    Some(Activity::new(
                        "delete",
                        "no longer in the cloud's list",
                        "ok",
                        format!("{} ({uuid})", i.name),
                    )),
                );
            }
        }

        // A VM's state by its intent; a drain or delete wins over a warming intent left beside
        // it by a crash between the two writes.
        let mut leaving: HashMap<String, BackendState> = HashMap::new();
        for i in &self.intents {
            let state = match i.phase {
                Phase::Draining => BackendState::Draining,
                Phase::Deleting => BackendState::Deleting,
                Phase::Warming => BackendState::Warming,
                Phase::Stopping => BackendState::Stopping,
                Phase::Starting => BackendState::Starting,
                _ => continue,
            };
            if let Some(uuid) = &i.uuid {
                let entry = leaving.entry(uuid.clone()).or_insert(state);
                if state.is_leaving() {
                    *entry = state;
                }
            }
        }
        let mut next = pool::observe(&self.view.backends, &vms, &self.pool, &leaving, now);
        // A clone answered after this list began: keep it until a later list shows it.
        for b in &self.view.backends {
            let pending = self.intents.iter().any(|i| {
                i.phase == Phase::Provisioning
                    && i.uuid.as_deref() == Some(b.uuid.as_str())
                    && i.until.is_none_or(|t| t >= listing.started)
            });
            if pending && !next.iter().any(|n| n.uuid == b.uuid) {
                next.push(b.clone());
            }
        }
        pool::sort_backends(&mut next, &self.pool.clone_prefix);

        for b in &next {
            if !self.view.backends.iter().any(|old| old.uuid == b.uuid) {
                info!(vm = %b.name, uuid = %b.uuid, role = b.role.as_str(), state = b.state.as_str(), "adopted");
                let ours = self.intents.iter().any(|i| {
                    i.phase == Phase::Provisioning
                        && (i.name == b.name || i.uuid.as_deref() == Some(b.uuid.as_str()))
                });
                if first || !ours {
                    let cause = if first {
                        "found at start-up"
                    } else {
                        "appeared in the cloud's list"
                    };
                    self.record(Activity::new(
                        "adopted",
                        cause,
                        "ok",
                        format!(
                            "{} ({}) {}, {}",
                            b.name,
                            b.uuid,
                            b.role.as_str(),
                            b.state.as_str()
                        ),
                    ));
                }
            }
        }
        let vanished: Vec<Backend> = self
            .view
            .backends
            .iter()
            .filter(|old| !next.iter().any(|b| b.uuid == old.uuid))
            .cloned()
            .collect();
        for old in vanished {
            self.time_in_state(old.state, now - old.since);
            if !old.state.is_leaving() {
                warn!(vm = %old.name, uuid = %old.uuid, "vanished from the cloud");
                if old.role == Role::Clone {
                    self.record(Activity::new(
                        "vanished",
                        "deleted outside the autoscaler",
                        "observed",
                        format!("{} ({})", old.name, old.uuid),
                    ));
                }
            }
            self.forget_vm(&old.uuid);
        }
        let seed_present = next.iter().any(|b| b.role == Role::Seed);
        if !seed_present && (self.view.seed_present || first) {
            warn!(seed = %self.pool.seed_vm, "the seed VM is not in the cloud's VM list");
        }
        self.view.backends = next;
        self.settle_warm_intents();
        self.record_lifetimes(now);
        self.view.seed_present = seed_present;
        self.view.cloud_ok = true;
        self.view.last_error = None;
        self.view.last_success = Some(listing.finished);
        self.metrics.cloud_up.get_or_create(&labels).set(1);
        self.metrics
            .last_reconcile
            .get_or_create(&labels)
            .set(listing.finished);
        if first {
            // The first probe round right after the first list, whatever the timer's phase.
            self.start_probe_round(true);
        }
        if self.control.desired().is_none() {
            // The warm pool's VMs are not part of the size.
            let size = plan::counted_size(
                Observed {
                    backends: &self.view.backends,
                    names_in_cloud: &self.names_in_cloud,
                    seed_present,
                },
                &self.intents,
            );
            let control = self.control.clone();
            let init = tokio::task::spawn_blocking(move || control.init_from_observed(size)).await;
            match init {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    error!(error = %format!("{e:#}"), "cannot persist the initial desired size")
                }
                Err(e) => error!(error = %e, "the initial desired size could not be written"),
            }
        }
    }
}
