//! The reconciler's side of the warm pool: starting a warm clone for a scale-up, stopping a
//! warmed or drained clone into the pool, serving a warming one instead, the answers of those
//! calls, and the intents the cloud's list has overtaken.
//!
//! Every start and every stop of a drained clone has its intent on disk before the call, so a
//! restart in the middle re-takes the call (both are idempotent) and never counts the VM twice:
//! a starting VM counts towards desired, a stopping one towards the warm pool.

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::PoolReconciler;
use crate::idch::{CloudError, Vm};
use crate::pool::plan::{Intent, Phase, StopCause};
use crate::pool::BackendState;
use crate::store::Activity;

impl PoolReconciler {
    /// A warming or stopping clone that the cloud lists as stopped is warm: its intent is done.
    pub(super) fn settle_warm_intents(&mut self) {
        let done: Vec<String> = self
            .intents
            .iter()
            .filter(|i| matches!(i.phase, Phase::Warming | Phase::Stopping))
            .filter(|i| {
                self.view.backends.iter().any(|b| {
                    Some(b.uuid.as_str()) == i.uuid.as_deref()
                        && b.state == BackendState::Warm
                        && b.cloud_status == "stopped"
                })
            })
            .map(|i| i.key().to_string())
            .collect();
        for key in done {
            self.drop_intent(&key, None);
        }
    }

    /// Forgets the warming intent of a VM that leaves otherwise (a delete wins).
    pub(super) fn drop_warming(&mut self, uuid: &str) {
        let key = self
            .intents
            .iter()
            .find(|i| i.phase == Phase::Warming && i.uuid.as_deref() == Some(uuid))
            .map(|i| i.key().to_string());
        if let Some(key) = key {
            self.drop_intent(&key, None);
        }
    }

    /// Whether the VM is a warm clone being started (its boot failing is not a clone failure).
    pub(super) fn is_starting(&self, uuid: &str) -> bool {
        self.intents
            .iter()
            .any(|i| i.phase == Phase::Starting && i.key() == uuid)
    }

    /// Backs off the next start (the scale-up clones meanwhile).
    pub(super) fn start_failed(&mut self, now: f64) {
        let wait = super::CLONE_BACKOFF.delay(self.start_failures);
        self.start_failures = self.start_failures.saturating_add(1);
        self.start_not_before = now + wait.as_secs_f64();
    }

    pub(super) fn take_start(&mut self, uuid: String, name: String, now: f64) {
        info!(vm = %name, "starting a warm clone");
        self.transition(&uuid, BackendState::Starting, now);
        let rx = self.put_intent(
            Intent {
                name: name.clone(),
                uuid: Some(uuid.clone()),
                phase: Phase::Starting,
                since: now,
                until: None,
                reason: "below desired size: a warm clone".into(),
                warm: false,
            },
            None,
        );
        self.executor.start(uuid, name, rx);
    }

    pub(super) fn take_stop(&mut self, uuid: String, name: String, cause: StopCause, now: f64) {
        info!(vm = %name, ?cause, "stopping a clone into the warm pool");
        self.transition(&uuid, BackendState::Stopping, now);
        let stopping = self
            .intents
            .iter()
            .any(|i| i.phase == Phase::Stopping && i.key() == uuid);
        let rx = if cause == StopCause::ScaleIn && !stopping {
            // Replaces the drain's intent (the same key), so a restart stops it again.
            self.put_intent(
                Intent {
                    name: name.clone(),
                    uuid: Some(uuid.clone()),
                    phase: Phase::Stopping,
                    since: now,
                    until: None,
                    reason: "drained: back into the warm pool".into(),
                    warm: true,
                },
                None,
            )
        } else {
            // A warming clone's intent (or a stop's, after a restart) is on disk already.
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Ok(()));
            rx
        };
        self.executor.stop(uuid, name, rx);
    }

    pub(super) fn take_promote(&mut self, uuid: String, name: String, now: f64) {
        info!(vm = %name, "a warming clone serves instead of being stopped");
        self.drop_warming(&uuid);
        self.record(Activity::new(
            "promote",
            "below desired size, no warm clone to start",
            "ok",
            format!("{name}: serves once its health gate passes, instead of being stopped"),
        ));
        self.transition(&uuid, BackendState::Booting, now);
    }

    pub(super) fn on_started(
        &mut self,
        uuid: String,
        name: String,
        result: Result<Option<Vm>, CloudError>,
        now: f64,
    ) {
        self.lister.poke();
        match result {
            Ok(vm) => {
                info!(vm = %name, "warm clone started");
                self.transition(&uuid, BackendState::Booting, now);
                if let Some(b) = self.view.backends.iter_mut().find(|b| b.uuid == uuid) {
                    b.cloud_status = vm.map_or_else(|| "starting".into(), |vm| vm.status);
                }
                self.record(Activity::new(
                    "start",
                    "below desired size: a warm clone",
                    "ok",
                    format!("{name}: starting; its health gate follows"),
                ));
            }
            Err(e) => {
                warn!(vm = %name, error = %e, "a warm clone did not start: deleting it; the scale-up clones instead");
                self.start_failed(now);
                drop(self.mark_deleting(
                    uuid,
                    &name,
                    "warm clone did not start",
                    now,
                    Some(Activity::new(
                        "start",
                        "below desired size: a warm clone",
                        "failed",
                        format!("{name}: {e}; deleted, and the scale-up clones instead"),
                    )),
                ));
            }
        }
    }

    pub(super) fn on_stopped(
        &mut self,
        uuid: String,
        name: String,
        result: Result<Vm, CloudError>,
        now: f64,
    ) {
        self.lister.poke();
        let cause = if self
            .intents
            .iter()
            .any(|i| i.phase == Phase::Stopping && i.key() == uuid)
        {
            "drained: back into the warm pool"
        } else {
            "passed its health gate: into the warm pool"
        };
        match result {
            Ok(vm) => {
                info!(vm = %name, "stopped into the warm pool");
                self.transition(&uuid, BackendState::Warm, now);
                if let Some(b) = self.view.backends.iter_mut().find(|b| b.uuid == uuid) {
                    b.cloud_status = vm.status;
                }
                // Started again later, it is announced ready again.
                self.forget_announcement(&uuid);
                self.record(Activity::new(
                    "stop",
                    cause,
                    "ok",
                    format!("{name}: warm (stopped)"),
                ));
            }
            Err(e) => {
                let attempts = self.step_failed(&uuid, now);
                warn!(vm = %name, error = %e, attempts, "stop failed; will retry");
                self.record(Activity::new(
                    "stop",
                    cause,
                    "failed",
                    format!("{name}: {e}"),
                ));
            }
        }
    }
}
