//! The reconciler's planning: `converge` asks the pure planner for the steps (a few rounds, each
//! step making its VM busy or leaving) and `take` carries each one out: the intent written (and a
//! drain's awaited before the VM leaves Traefik's list), the call handed to the executor.

use std::collections::HashMap;

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::{PoolReconciler, TRAEFIK_POLLED};
use crate::clock;
use crate::pool::plan::{self, DeleteCause, DrainCause, Intent, Observed, Phase, Progress, Step};
use crate::pool::refresh::Refresh;
use crate::pool::BackendState;
use crate::store::Activity;

impl PoolReconciler {
    // ---- planning ----------------------------------------------------------------------------

    /// Plans and takes the steps, until the plan has none left (at most a few rounds: each step
    /// makes its VM busy or leaving).
    pub(super) async fn converge(&mut self) {
        self.wake_at = None;
        if self.listed_seq == 0 {
            return;
        }
        let Some(desired) = self.control.desired() else {
            return;
        };
        if !self.traefik_polls && self.state.traefik_ever_served() {
            // Remembered across restarts: after one, Traefik may still route on its last
            // configuration while it retries.
            self.traefik_polls = true;
            drop(
                self.writer
                    .submit(|s| s.set_meta(TRAEFIK_POLLED, clock::now())),
            );
        }
        let traefik_saw_drain: HashMap<String, f64> = self
            .drain_generation
            .iter()
            .filter_map(|(uuid, g)| {
                self.state
                    .traefik_served_since(*g)
                    .map(|t| (uuid.clone(), t))
            })
            .collect();
        let replacing = self.control.refresh_replacing();
        for round in 0..4 {
            let now = clock::now();
            let plan = plan::plan(
                Observed {
                    backends: &self.view.backends,
                    names_in_cloud: &self.names_in_cloud,
                    seed_present: self.view.seed_present,
                },
                &self.intents,
                desired,
                replacing.as_ref(),
                &self.policy,
                Progress {
                    busy: self.executor.busy(),
                    released_ips: &self.released_ips,
                    clone_not_before: self.clone_not_before,
                    start_not_before: self.start_not_before,
                    not_before: &self.not_before,
                    traefik_polls: self.traefik_polls,
                    traefik_saw_drain: &traefik_saw_drain,
                },
                now,
            );
            self.wake_at = plan.next;
            self.note_plan(round, &plan, desired, now);
            if self.dry_run {
                // Recorded by note_plan; never taken.
                return;
            }
            if plan.steps.is_empty() {
                return;
            }
            let mut durable = Vec::new();
            for step in plan.steps {
                if let Some(rx) = self.take(step, now) {
                    durable.push(rx);
                }
            }
            // A drain's intent is on disk before the VM leaves Traefik's list (the publish).
            for rx in durable {
                let _ = rx.await;
            }
        }
    }

    /// Takes one step; returns the write to wait for before publishing, if any.
    fn take(&mut self, step: Step, now: f64) -> Option<oneshot::Receiver<anyhow::Result<()>>> {
        match step {
            Step::Clone {
                name,
                refresh,
                warm,
            } => {
                let reason = if warm {
                    format!(
                        "warm pool below its size {}",
                        self.pool.warm_pool.as_ref().map_or(0, |w| w.size)
                    )
                } else if refresh {
                    format!(
                        "refresh: a new clone before an old one goes (max_surge {})",
                        self.pool.refresh.max_surge
                    )
                } else {
                    "below desired size".into()
                };
                info!(vm = %name, %reason, "cloning the seed");
                let rx = self.put_intent(
                    Intent {
                        name: name.clone(),
                        uuid: None,
                        phase: Phase::Provisioning,
                        since: now,
                        until: None,
                        reason,
                        warm,
                    },
                    None,
                );
                self.executor.clone_vm(self.pool.seed_vm.clone(), name, rx);
                None
            }
            Step::Drain {
                uuid,
                name,
                until,
                cause,
            } => {
                // A scale-in's clone may go back into a short warm pool at the drain's end.
                let warm = self.pool.warm_pool.is_some()
                    && matches!(cause, DrainCause::AboveDesired { .. });
                let (action, cause) = match cause {
                    DrainCause::AboveDesired { desired } => {
                        ("drain", format!("above desired size {desired}"))
                    }
                    DrainCause::Refresh => (
                        "drain",
                        "refresh: an old clone, with a ready replacement".to_string(),
                    ),
                    DrainCause::Unhealthy => {
                        warn!(vm = %name, "unhealthy too long: draining and replacing it");
                        (
                            "replace_unhealthy",
                            format!(
                                "unhealthy for longer than {}",
                                humantime::format_duration(self.pool.replace_unhealthy_after)
                            ),
                        )
                    }
                };
                self.transition(&uuid, BackendState::Draining, now);
                let detail = format!(
                    "{name}: out of Traefik now, {} after {}",
                    if warm {
                        "stopped into the warm pool (if short) or deleted"
                    } else {
                        "deleted"
                    },
                    humantime::format_duration(self.pool.drain_period)
                );
                Some(self.put_intent(
                    Intent {
                        name,
                        uuid: Some(uuid),
                        phase: Phase::Draining,
                        since: now,
                        until: Some(until),
                        reason: cause.clone(),
                        warm,
                    },
                    Some(Activity::new(action, cause, "started", detail)),
                ))
            }
            Step::GiveUpBoot { uuid, name } => {
                warn!(vm = %name, "not healthy within boot_timeout: deleting it");
                if self.is_starting(&uuid) {
                    // A warm clone that fails after its start holds back starts, not clones.
                    self.start_failed(now);
                } else {
                    self.clone_failed(now);
                }
                self.drop_warming(&uuid);
                let failed = |r: &mut Refresh| {
                    let new = !r.old.contains(&uuid);
                    if new {
                        r.boot_failed(&name, now);
                    }
                    new
                };
                if let Some(write) = self.control.update_refresh(None, failed) {
                    self.persist_refresh(write);
                }
                Some(self.mark_deleting(
                    uuid,
                    &name,
                    "boot_timeout",
                    now,
                    Some(Activity::new(
                        "boot_failed",
                        format!(
                            "not healthy within boot_timeout ({})",
                            humantime::format_duration(self.pool.boot_timeout)
                        ),
                        "deleting",
                        name.clone(),
                    )),
                ))
            }
            Step::Delete { uuid, name, cause } => {
                let seen = self
                    .drain_generation
                    .get(&uuid)
                    .and_then(|g| self.state.traefik_served_since(*g));
                if cause == DeleteCause::DrainFinished && self.traefik_polls && seen.is_none() {
                    warn!(vm = %name, "Traefik has not fetched /traefik since the drain began: deleting anyway");
                }
                self.transition(&uuid, BackendState::Deleting, now);
                self.drop_warming(&uuid);
                let existing = self.intents.iter().find(|i| i.key() == uuid).cloned();
                let rx = match existing {
                    Some(i) if i.phase == Phase::Deleting => {
                        // Already durable: nothing to wait for.
                        let (tx, rx) = oneshot::channel();
                        let _ = tx.send(Ok(()));
                        rx
                    }
                    other => {
                        let reason = match cause {
                            DeleteCause::DrainFinished => {
                                other.map_or_else(|| "drain finished".into(), |i| i.reason)
                            }
                            DeleteCause::Marked => {
                                other.map_or_else(|| "marked for deletion".into(), |i| i.reason)
                            }
                            DeleteCause::WarmSurplus => "a warm clone beyond warm_pool.size".into(),
                            DeleteCause::WarmTooOld => {
                                "a warm clone older than warm_pool.max_age".into()
                            }
                            DeleteCause::WarmBeforeRefresh => {
                                "a warm clone made before the refresh".into()
                            }
                        };
                        self.put_intent(
                            Intent {
                                name: name.clone(),
                                uuid: Some(uuid.clone()),
                                phase: Phase::Deleting,
                                since: now,
                                until: None,
                                reason,
                                warm: false,
                            },
                            None,
                        )
                    }
                };
                self.executor.delete(uuid, name, rx);
                None
            }
            Step::ReleaseIp { uuid, name } => {
                self.executor.release_ips(uuid, name);
                None
            }
            Step::Start { uuid, name } => {
                self.take_start(uuid, name, now);
                None
            }
            Step::Stop { uuid, name, cause } => {
                self.take_stop(uuid, name, cause, now);
                None
            }
            Step::Promote { uuid, name } => {
                self.take_promote(uuid, name, now);
                None
            }
        }
    }
}
