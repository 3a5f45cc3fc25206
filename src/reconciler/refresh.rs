//! The reconciler's side of a rolling refresh: drift detection's rounds of version reads, the
//! start of a refresh they call for, and bringing the running one up to date with the view after
//! each pass (persisted through the writer thread).

use std::collections::HashSet;

use tracing::{error, info};

use super::executor::Event;
use super::PoolReconciler;
use crate::clock;
use crate::control::RefreshWrite;
use crate::pool::plan;
use crate::pool::refresh::{self as rollout, Refresh};
use crate::pool::{BackendState, Role};

impl PoolReconciler {
    /// Drift detection: reads the version of the seed and every ready clone, at most every
    /// `refresh.check_interval`, as a task of its own.
    pub(super) fn start_version_round(&mut self, now: f64) {
        let Some(path) = self.pool.refresh.version_path.clone() else {
            return;
        };
        if self.reading_versions || now < self.versions_due {
            return;
        }
        self.versions_due = now + self.pool.refresh.check_interval.as_secs_f64();
        let targets: Vec<(String, String)> = self
            .view
            .backends
            .iter()
            .filter(|b| b.state == BackendState::Ready)
            .filter_map(|b| b.ip.clone().map(|ip| (b.uuid.clone(), ip)))
            .collect();
        if targets.is_empty() {
            return;
        }
        self.reading_versions = true;
        let (prober, events) = (self.prober.clone(), self.executor_events());
        tokio::spawn(async move {
            let results = futures::future::join_all(targets.into_iter().map(|(uuid, ip)| {
                let (prober, path) = (prober.clone(), path.clone());
                async move { (uuid, prober.version(&ip, &path).await) }
            }))
            .await;
            let _ = events.send(Event::Versions { results });
        });
    }

    pub(super) fn on_versions(&mut self, results: Vec<(String, Option<String>)>) {
        self.reading_versions = false;
        for (uuid, version) in results {
            match version {
                Some(v) => {
                    self.versions.insert(uuid, v);
                }
                None => {
                    self.versions.remove(&uuid);
                }
            }
        }
        let seed = self
            .view
            .backends
            .iter()
            .find(|b| b.role == Role::Seed)
            .and_then(|b| self.versions.get(&b.uuid))
            .cloned();
        let clones = rollout::ready_clone_versions(&self.view.backends, &self.versions);
        let latest = self.control.refresh();
        let Some(reason) = rollout::drift(seed.as_deref(), &clones, latest.as_ref()) else {
            return;
        };
        if !self.view.seed_present {
            return;
        }
        info!(%reason, "a clone runs another version than the seed: starting a refresh");
        let refresh = Refresh::start(
            uuid::Uuid::new_v4().to_string(),
            reason,
            seed,
            &self.view.backends,
            &self.unresolved_names(),
            clock::now(),
        );
        if let Some(write) = self.control.update_refresh(Some(refresh), |_| false) {
            self.persist_refresh(write);
        }
    }

    pub(super) fn unresolved_names(&self) -> Vec<String> {
        plan::unresolved_clones(&self.intents, &self.names_in_cloud)
            .map(|i| i.name.clone())
            .collect()
    }

    /// Brings the running refresh up to date with the view (only once a list was seen).
    pub(super) fn settle_refresh(&mut self) {
        if self.listed_seq == 0 {
            return;
        }
        let unresolved: HashSet<String> = self.unresolved_names().into_iter().collect();
        let backends = &self.view.backends;
        let now = clock::now();
        if let Some(write) = self
            .control
            .update_refresh(None, |r| r.settle(backends, &unresolved, now))
        {
            self.persist_refresh(write);
        }
    }

    pub(super) fn persist_refresh(&self, write: RefreshWrite) {
        let pool = self.pool.name.clone();
        drop(self.writer.submit(move |s| {
            s.save_refresh(&pool, write.seq, &write.refresh, write.activity.as_ref())
                .inspect_err(|e| error!(error = %format!("{e:#}"), "cannot persist the refresh"))
        }));
    }
}
