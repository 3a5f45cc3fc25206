//! The per-pool reconciler: the only writer of its pool's view. It re-lists the cloud's VMs every
//! `reconcile_interval`, probes every backend every `health.interval`, and converges the pool
//! towards the desired size: clone (one call at a time), health-gate, drain, delete.
//!
//! It is level-triggered: each pass looks at what exists now (the cloud's list), what is intended
//! (the store's intents) and what is desired, whatever woke it. Cloud errors back off and are
//! recorded; the loop never dies. A cloud outage keeps the last good list.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tracing::{error, info, warn, Instrument};

use crate::clock;
use crate::config::{PoolConfig, Termination};
use crate::control::PoolControl;
use crate::idch::{CloudClient, CloudError, Vm};
use crate::metrics::Metrics;
use crate::pool::{self, Backend, BackendState, PoolView, ProbeStreak, Role};
use crate::shutdown::Shutdown;
use crate::snapshot::State;
use crate::store::{Activity, Intent, Phase, Store};

/// Longest wait between two clone attempts after failures.
const CLONE_BACKOFF_CAP: f64 = 300.0;
/// Longest wait between two delete attempts of the same VM.
const DELETE_BACKOFF_CAP: f64 = 60.0;

type CloneResult = (String, Result<Vm, CloudError>);

pub struct PoolReconciler {
    index: usize,
    pool: Arc<PoolConfig>,
    control: Arc<PoolControl>,
    cloud: CloudClient,
    state: Arc<State>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    reconcile_interval: Duration,
    probe: Prober,
    /// The working copy of the pool's view; published to `state` after every step.
    view: PoolView,
    /// Consecutive probe results by VM uuid.
    streaks: HashMap<String, ProbeStreak>,
    /// VMs on their way in or out, by name: a write-through copy of the store's intents.
    intents: HashMap<String, Intent>,
    /// Every VM name in the last list (any pool), so a new clone name never collides.
    names_in_cloud: HashSet<String>,
    listed_once: bool,
    probe_rounds: u32,
    /// The name whose clone call is in flight.
    cloning: Option<String>,
    clone_tx: mpsc::Sender<CloneResult>,
    clone_rx: mpsc::Receiver<CloneResult>,
    /// Consecutive clone or boot failures, and when the next clone may be tried.
    clone_failures: u32,
    clone_not_before: f64,
    /// Deletes that failed: attempts so far and when to try again, by uuid.
    delete_backoff: HashMap<String, (u32, f64)>,
    /// Clones whose public IP was released (or found to have none).
    released_ips: HashSet<String>,
    /// When the last successful list call began.
    last_list_started: f64,
}

impl PoolReconciler {
    pub fn new(
        index: usize,
        control: Arc<PoolControl>,
        cloud: CloudClient,
        state: Arc<State>,
        store: Arc<Store>,
        reconcile_interval: Duration,
    ) -> anyhow::Result<Self> {
        let pool = control.config.clone();
        let intents = store
            .intents(&pool.name)?
            .into_iter()
            .map(|i| (i.name.clone(), i))
            .collect();
        let (clone_tx, clone_rx) = mpsc::channel(4);
        let metrics = state.metrics().clone();
        Ok(Self {
            index,
            probe: Prober::new(&pool),
            view: PoolView::new(&pool.name),
            pool,
            control,
            cloud,
            state,
            store,
            metrics,
            reconcile_interval,
            streaks: HashMap::new(),
            intents,
            names_in_cloud: HashSet::new(),
            listed_once: false,
            probe_rounds: 0,
            cloning: None,
            clone_tx,
            clone_rx,
            clone_failures: 0,
            clone_not_before: 0.0,
            delete_backoff: HashMap::new(),
            released_ips: HashSet::new(),
            last_list_started: 0.0,
        })
    }

    /// Runs until `shutdown` fires.
    pub async fn run(mut self, shutdown: Shutdown) {
        let span = tracing::info_span!("pool", pool = %self.pool.name);
        async move {
            let mut relist = tokio::time::interval(self.reconcile_interval);
            relist.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut probe = tokio::time::interval(self.pool.health.interval);
            probe.set_missed_tick_behavior(MissedTickBehavior::Delay);
            // The first list comes before the first probe round.
            relist.tick().await;
            self.relist().await;
            loop {
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = relist.tick() => self.relist().await,
                    _ = probe.tick() => self.probe_all().await,
                    _ = self.control.wake.notified() => {},
                    Some((name, result)) = self.clone_rx.recv() => self.on_clone_result(name, result),
                }
                self.act().await;
                self.publish();
            }
        }
        .instrument(span)
        .await
    }

    fn publish(&mut self) {
        let mut provisioning: Vec<String> = self
            .intents
            .values()
            .filter(|i| i.phase == Phase::Provisioning)
            .map(|i| i.name.clone())
            .filter(|n| !self.view.backends.iter().any(|b| &b.name == n))
            .collect();
        provisioning.sort();
        self.view.provisioning = provisioning;
        self.state.publish(self.index, self.view.clone());
    }

    fn record(&self, action: &str, cause: &str, outcome: &str, detail: String) {
        self.metrics.activity(&self.pool.name, action, outcome);
        if let Err(e) = self.store.record(
            &self.pool.name,
            &Activity::new(action, cause, outcome, detail),
        ) {
            error!(error = %format!("{e:#}"), "cannot record an activity");
        }
    }

    fn put_intent(&mut self, intent: Intent, activity: Option<Activity>) {
        if let Some(a) = &activity {
            self.metrics
                .activity(&self.pool.name, &a.action, &a.outcome);
        }
        if let Err(e) = self
            .store
            .put_intent(&self.pool.name, &intent, activity.as_ref())
        {
            error!(error = %format!("{e:#}"), vm = %intent.name, "cannot persist an intent");
        }
        self.intents.insert(intent.name.clone(), intent);
    }

    fn drop_intent(&mut self, name: &str, activity: Option<Activity>) {
        if let Some(a) = &activity {
            self.metrics
                .activity(&self.pool.name, &a.action, &a.outcome);
        }
        if let Err(e) = self
            .store
            .remove_intent(&self.pool.name, name, activity.as_ref())
        {
            error!(error = %format!("{e:#}"), vm = %name, "cannot persist an intent");
        }
        self.intents.remove(name);
    }

    /// Moves a backend to a new state, logging the transition and timing the old state.
    fn transition(&mut self, i: usize, to: BackendState, now: f64) {
        let b = &mut self.view.backends[i];
        if b.state == to {
            return;
        }
        let (from, since) = (b.state, b.since);
        b.state = to;
        b.since = now;
        info!(vm = %b.name, from = from.as_str(), to = to.as_str(), "backend state changed");
        self.time_in_state(from, now - since);
    }

    fn time_in_state(&self, state: BackendState, seconds: f64) {
        self.metrics
            .state_duration
            .get_or_create(&vec![
                ("pool", self.pool.name.clone()),
                ("state", state.as_str().to_string()),
            ])
            .observe(seconds.max(0.0));
    }

    async fn relist(&mut self) {
        let started = clock::now();
        let labels = vec![("pool", self.pool.name.clone())];
        let vms = match self.cloud.list_vms().await {
            Ok(vms) => vms,
            Err(e) => {
                if self.view.cloud_ok || !self.listed_once {
                    warn!(error = %e, "cannot list VMs; keeping the last good view");
                }
                if e.is_config_error() {
                    error!(error = %e, "IDCloudHost refuses our API key: fix the configuration");
                }
                self.view.cloud_ok = false;
                self.view.last_error = Some(e.to_string());
                self.metrics.cloud_up.get_or_create(&labels).set(0);
                self.metrics.reconcile_errors.get_or_create(&labels).inc();
                return;
            }
        };
        let now = clock::now();
        self.names_in_cloud = vms.iter().map(|v| v.name.clone()).collect();
        let leaving: HashMap<String, BackendState> = self
            .intents
            .values()
            .filter_map(|i| match i.phase {
                Phase::Draining => Some((i.name.clone(), BackendState::Draining)),
                Phase::Deleting => Some((i.name.clone(), BackendState::Deleting)),
                Phase::Provisioning => None,
            })
            .collect();
        let next = pool::observe(&self.view.backends, &vms, &self.pool, &leaving, now);
        for b in &next {
            if !self.view.backends.iter().any(|old| old.uuid == b.uuid) {
                info!(vm = %b.name, uuid = %b.uuid, role = b.role.as_str(), state = b.state.as_str(), "adopted");
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
            self.streaks.remove(&old.uuid);
            self.time_in_state(old.state, now - old.since);
            if old.state.is_leaving() {
                // Deleted (by us, or by someone else while we drained it): done either way.
                if self.intents.contains_key(&old.name) {
                    self.drop_intent(
                        &old.name,
                        Some(Activity::new(
                            "delete",
                            "no longer in the cloud's list",
                            "ok",
                            old.name.clone(),
                        )),
                    );
                }
            } else {
                warn!(vm = %old.name, uuid = %old.uuid, "vanished from the cloud");
                if old.role == Role::Clone {
                    self.record(
                        "vanished",
                        "deleted outside the autoscaler",
                        "observed",
                        format!("{} ({})", old.name, old.uuid),
                    );
                }
            }
        }
        // Leaving intents whose VM is not in the list any more are done.
        let finished: Vec<String> = self
            .intents
            .values()
            .filter(|i| i.phase != Phase::Provisioning && !self.names_in_cloud.contains(&i.name))
            .map(|i| i.name.clone())
            .collect();
        for name in finished {
            self.drop_intent(&name, None);
        }
        // Provisioning intents: found by name → adopted; not found in a list that began after
        // the clone call ended → the clone did not happen, and may be tried again.
        let provisioning: Vec<Intent> = self
            .intents
            .values()
            .filter(|i| i.phase == Phase::Provisioning)
            .cloned()
            .collect();
        for intent in provisioning {
            if self.names_in_cloud.contains(&intent.name) {
                self.drop_intent(&intent.name, None);
            } else if self.cloning.as_deref() != Some(intent.name.as_str())
                && intent.until.is_some_and(|t| started > t)
            {
                self.drop_intent(
                    &intent.name,
                    Some(Activity::new(
                        "clone",
                        "re-listed after a clone call with no answer",
                        "not_created",
                        intent.name.clone(),
                    )),
                );
            } else if self.cloning.as_deref() != Some(intent.name.as_str())
                && intent.until.is_none()
            {
                // From before a restart: the call's end is unknown; this list decides next time.
                let mut i = intent.clone();
                i.until = Some(started);
                self.put_intent(i, None);
            }
        }
        let seed_present = next.iter().any(|b| b.role == Role::Seed);
        if !seed_present && (self.view.seed_present || !self.listed_once) {
            warn!(seed = %self.pool.seed_vm, "the seed VM is not in the cloud's VM list");
        }
        if !self.view.cloud_ok && self.listed_once {
            info!("cloud reachable again");
        }
        self.view.backends = next;
        self.view.seed_present = seed_present;
        self.view.cloud_ok = true;
        self.view.last_error = None;
        self.view.last_success = Some(now);
        self.listed_once = true;
        self.last_list_started = started;
        self.metrics.cloud_up.get_or_create(&labels).set(1);
        self.metrics.last_reconcile.get_or_create(&labels).set(now);
    }

    async fn probe_all(&mut self) {
        if !self.listed_once {
            return;
        }
        let targets: Vec<(usize, Option<String>)> = self
            .view
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    i,
                    b.ip.clone().filter(|_| {
                        b.cloud_status == "running" && b.state != BackendState::Deleting
                    }),
                )
            })
            .collect();
        let results = futures::future::join_all(targets.into_iter().map(|(i, ip)| {
            let probe = &self.probe;
            async move {
                let ok = match ip {
                    Some(ip) => probe.check(&ip).await,
                    None => false,
                };
                (i, ok)
            }
        }))
        .await;
        let now = clock::now();
        for (i, ok) in results {
            let b: &mut Backend = &mut self.view.backends[i];
            let streak = self.streaks.entry(b.uuid.clone()).or_default();
            if let Some((from, since)) = pool::apply_probe(b, streak, ok, &self.pool.health, now) {
                let (name, to) = (b.name.clone(), b.state);
                info!(vm = %name, from = from.as_str(), to = to.as_str(), "backend state changed");
                self.time_in_state(from, now - since);
                if from == BackendState::Booting
                    && to == BackendState::Ready
                    && self.view.backends[i].role == Role::Clone
                {
                    self.clone_failures = 0;
                    self.record(
                        "ready",
                        "health gate passed",
                        "ok",
                        format!("{name} after {:.1}s", now - since),
                    );
                }
            }
        }
        self.probe_rounds = self.probe_rounds.saturating_add(1);
        if !self.view.synced && self.probe_rounds >= self.pool.health.healthy_threshold {
            self.view.synced = true;
            info!(
                ready = self.view.count(BackendState::Ready),
                total = self.view.backends.len(),
                "pool synced"
            );
        }
    }

    fn on_clone_result(&mut self, name: String, result: Result<Vm, CloudError>) {
        self.cloning = None;
        let now = clock::now();
        match result {
            Ok(vm) => {
                info!(vm = %vm.name, uuid = %vm.uuid, "cloned");
                let detail = format!("{} ({})", vm.name, vm.uuid);
                match self.intents.get(&name).cloned() {
                    Some(mut intent) => {
                        intent.uuid = Some(vm.uuid.clone());
                        intent.until = Some(now);
                        let activity = Activity::new("clone", "below desired size", "ok", detail);
                        self.put_intent(intent, Some(activity));
                    }
                    // A list taken while the call was in flight already adopted it.
                    None => self.record("clone", "below desired size", "ok", detail),
                }
                if !self.view.backends.iter().any(|b| b.uuid == vm.uuid) {
                    self.names_in_cloud.insert(vm.name.clone());
                    self.view.backends.push(Backend {
                        uuid: vm.uuid.clone(),
                        name: vm.name.clone(),
                        role: Role::Clone,
                        ip: vm.private_ipv4.clone(),
                        cloud_status: vm.status.clone(),
                        created_at: vm.created_at.clone(),
                        state: BackendState::Booting,
                        since: now,
                    });
                    pool::sort_backends(&mut self.view.backends, &self.pool.clone_prefix);
                }
            }
            Err(e) => {
                self.clone_failed(now);
                if e.outcome_unknown() {
                    warn!(vm = %name, error = %e, "clone call failed; the VM may exist: re-listing before trying again");
                    let detail = format!("{name}: {e}");
                    match self.intents.get(&name).cloned() {
                        Some(mut intent) => {
                            intent.until = Some(now);
                            let activity =
                                Activity::new("clone", "below desired size", "unknown", detail);
                            self.put_intent(intent, Some(activity));
                        }
                        None => self.record(
                            "clone",
                            "below desired size",
                            "unknown",
                            format!("{detail}; already found in the cloud's list"),
                        ),
                    }
                } else {
                    if e.is_config_error() {
                        error!(vm = %name, error = %e, "clone refused: fix the configuration");
                    } else {
                        warn!(vm = %name, error = %e, "clone failed");
                    }
                    self.drop_intent(
                        &name,
                        Some(Activity::new(
                            "clone",
                            "below desired size",
                            "failed",
                            format!("{name}: {e}"),
                        )),
                    );
                }
            }
        }
    }

    fn clone_failed(&mut self, now: f64) {
        self.clone_failures = self.clone_failures.saturating_add(1);
        let exp = (2f64.powi(self.clone_failures.min(16) as i32)).min(CLONE_BACKOFF_CAP);
        let jitter = rand::thread_rng().gen_range(0.5..=1.0);
        self.clone_not_before = now + exp * jitter;
    }

    /// The smallest `n` such that `{clone_prefix}{n}` names no VM and no intent.
    fn next_clone_name(&self) -> String {
        (1u64..)
            .map(|n| format!("{}{n}", self.pool.clone_prefix))
            .find(|name| !self.names_in_cloud.contains(name) && !self.intents.contains_key(name))
            .expect("some number is free")
    }

    /// One convergence step.
    async fn act(&mut self) {
        if !self.listed_once {
            return;
        }
        let now = clock::now();
        let active = self
            .view
            .backends
            .iter()
            .filter(|b| !b.state.is_leaving())
            .count() as u32;
        let provisioning = self
            .intents
            .values()
            .filter(|i| i.phase == Phase::Provisioning && !self.names_in_cloud.contains(&i.name))
            .count() as u32;
        if self.control.desired().is_none() {
            if let Err(e) = self.control.init_from_observed(active + provisioning) {
                error!(error = %format!("{e:#}"), "cannot persist the initial desired size");
                return;
            }
        }
        let Some(desired) = self.control.desired() else {
            return;
        };

        // Drains that are over, and deletes to (re)try.
        let due: Vec<usize> = (0..self.view.backends.len())
            .filter(|&i| {
                let b = &self.view.backends[i];
                match b.state {
                    BackendState::Draining => self
                        .intents
                        .get(&b.name)
                        .and_then(|i| i.until)
                        .is_none_or(|t| now >= t),
                    BackendState::Deleting => true,
                    _ => false,
                }
            })
            .filter(|&i| {
                self.delete_backoff
                    .get(&self.view.backends[i].uuid)
                    .is_none_or(|(_, t)| now >= *t)
            })
            .collect();
        let mut deleted = Vec::new();
        for i in due {
            if self.delete(i, now).await {
                deleted.push(i);
            }
        }
        for i in deleted.into_iter().rev() {
            let b = self.view.backends.remove(i);
            self.names_in_cloud.remove(&b.name);
        }

        // Clones that never became healthy, and clones unhealthy for too long.
        for i in 0..self.view.backends.len() {
            let b = &self.view.backends[i];
            if b.role != Role::Clone {
                continue;
            }
            let age = now - b.since;
            if b.state == BackendState::Booting && age > self.pool.boot_timeout.as_secs_f64() {
                let (name, uuid) = (b.name.clone(), b.uuid.clone());
                warn!(vm = %name, "not healthy within boot_timeout: deleting it");
                self.clone_failed(now);
                self.transition(i, BackendState::Deleting, now);
                self.put_intent(
                    Intent {
                        name: name.clone(),
                        uuid: Some(uuid),
                        phase: Phase::Deleting,
                        since: now,
                        until: None,
                        reason: "boot_timeout".into(),
                    },
                    Some(Activity::new(
                        "boot_failed",
                        format!(
                            "not healthy within boot_timeout ({})",
                            humantime::format_duration(self.pool.boot_timeout)
                        ),
                        "deleting",
                        name,
                    )),
                );
            } else if b.state == BackendState::Unhealthy
                && age > self.pool.replace_unhealthy_after.as_secs_f64()
            {
                let name = b.name.clone();
                self.start_drain(
                    i,
                    now,
                    "replace_unhealthy",
                    &format!(
                        "unhealthy for longer than {}",
                        humantime::format_duration(self.pool.replace_unhealthy_after)
                    ),
                );
                warn!(vm = %name, "unhealthy too long: draining and replacing it");
            }
        }

        // Release the public IP of new clones, once they run (the address may be assigned late).
        if self.pool.release_public_ip {
            let pending: Vec<(String, String)> = self
                .view
                .backends
                .iter()
                .filter(|b| {
                    b.role == Role::Clone
                        && !b.state.is_leaving()
                        && b.cloud_status == "running"
                        && !self.released_ips.contains(&b.uuid)
                })
                .map(|b| (b.uuid.clone(), b.name.clone()))
                .collect();
            for (uuid, name) in pending {
                self.release_public_ips(&uuid, &name).await;
            }
        }

        // Converge on desired.
        let active = self
            .view
            .backends
            .iter()
            .filter(|b| !b.state.is_leaving())
            .count() as u32;
        let total = self.view.backends.len() as u32 + provisioning;
        if active + provisioning < desired {
            let in_flight = self.cloning.is_some() || provisioning > 0;
            if !in_flight
                && total < self.pool.max
                && now >= self.clone_not_before
                && self.view.seed_present
            {
                self.start_clone(now);
            }
        } else if active > desired {
            let mut candidates: Vec<usize> = (0..self.view.backends.len())
                .filter(|&i| {
                    let b = &self.view.backends[i];
                    b.role == Role::Clone && !b.state.is_leaving()
                })
                .collect();
            let termination = self.pool.termination;
            let prefix = &self.pool.clone_prefix;
            let backends = &self.view.backends;
            let age = |b: &Backend| {
                (
                    b.created_at.clone().unwrap_or_default(),
                    pool::clone_number(&b.name, prefix).unwrap_or(0),
                )
            };
            // Not-ready clones go first; then the newest (or oldest) first.
            candidates.sort_by(|&a, &b| {
                let (x, y) = (&backends[a], &backends[b]);
                let ready = (x.state == BackendState::Ready).cmp(&(y.state == BackendState::Ready));
                let by_age = match termination {
                    Termination::Newest => age(y).cmp(&age(x)),
                    Termination::Oldest => age(x).cmp(&age(y)),
                };
                ready.then(by_age)
            });
            let excess = (active - desired) as usize;
            for i in candidates.into_iter().take(excess) {
                self.start_drain(i, now, "drain", &format!("above desired size {desired}"));
            }
        }
    }

    fn start_drain(&mut self, i: usize, now: f64, action: &str, cause: &str) {
        let (name, uuid) = (
            self.view.backends[i].name.clone(),
            self.view.backends[i].uuid.clone(),
        );
        let until = now + self.pool.drain_period.as_secs_f64();
        self.transition(i, BackendState::Draining, now);
        self.put_intent(
            Intent {
                name: name.clone(),
                uuid: Some(uuid),
                phase: Phase::Draining,
                since: now,
                until: Some(until),
                reason: cause.to_string(),
            },
            Some(Activity::new(
                action,
                cause,
                "started",
                format!(
                    "{name}: out of Traefik now, deleted after {}",
                    humantime::format_duration(self.pool.drain_period)
                ),
            )),
        );
    }

    fn start_clone(&mut self, now: f64) {
        let name = self.next_clone_name();
        info!(vm = %name, "cloning the seed");
        // The intent is durable before the call: after a crash the name is looked for.
        self.put_intent(
            Intent {
                name: name.clone(),
                uuid: None,
                phase: Phase::Provisioning,
                since: now,
                until: None,
                reason: "below desired size".into(),
            },
            None,
        );
        self.cloning = Some(name.clone());
        let (cloud, seed, tx) = (
            self.cloud.clone(),
            self.pool.seed_vm.clone(),
            self.clone_tx.clone(),
        );
        tokio::spawn(async move {
            let result = cloud.clone_vm(&seed, &name).await;
            let _ = tx.send((name, result)).await;
        });
    }

    /// Deletes backend `i`; true when it is gone (404 included).
    async fn delete(&mut self, i: usize, now: f64) -> bool {
        let (name, uuid) = (
            self.view.backends[i].name.clone(),
            self.view.backends[i].uuid.clone(),
        );
        self.transition(i, BackendState::Deleting, now);
        if self.intents.get(&name).map(|i| i.phase) != Some(Phase::Deleting) {
            let reason = self
                .intents
                .get(&name)
                .map(|i| i.reason.clone())
                .unwrap_or_default();
            self.put_intent(
                Intent {
                    name: name.clone(),
                    uuid: Some(uuid.clone()),
                    phase: Phase::Deleting,
                    since: now,
                    until: None,
                    reason,
                },
                None,
            );
        }
        match self.cloud.delete_vm(&uuid).await {
            Ok(how) => {
                info!(vm = %name, ?how, "deleted");
                self.delete_backoff.remove(&uuid);
                self.released_ips.remove(&uuid);
                self.streaks.remove(&uuid);
                let since = self.view.backends[i].since;
                self.time_in_state(BackendState::Deleting, clock::now() - since);
                self.drop_intent(
                    &name,
                    Some(Activity::new(
                        "delete",
                        "drain finished",
                        "ok",
                        format!("{name} ({uuid})"),
                    )),
                );
                true
            }
            Err(e) => {
                let attempts = self.delete_backoff.get(&uuid).map_or(0, |(n, _)| *n) + 1;
                let wait = 2f64.powi(attempts.min(16) as i32).min(DELETE_BACKOFF_CAP);
                self.delete_backoff
                    .insert(uuid.clone(), (attempts, now + wait));
                warn!(vm = %name, error = %e, attempts, "delete failed; will retry");
                self.record("delete", "drain finished", "failed", format!("{name}: {e}"));
                false
            }
        }
    }

    async fn release_public_ips(&mut self, uuid: &str, name: &str) {
        match self.cloud.list_floating_ips(Some(uuid)).await {
            Ok(ips) => {
                let mut all_ok = true;
                for ip in ips
                    .iter()
                    .filter(|ip| ip.assigned_to.as_deref() == Some(uuid))
                {
                    match self.cloud.delete_floating_ip(&ip.address).await {
                        Ok(_) => {
                            info!(vm = %name, address = %ip.address, "released the public IP");
                            self.record(
                                "release_ip",
                                "release_public_ip = true",
                                "ok",
                                format!("{name}: {}", ip.address),
                            );
                        }
                        Err(e) => {
                            all_ok = false;
                            warn!(vm = %name, error = %e, "cannot release the public IP; will retry");
                        }
                    }
                }
                if all_ok {
                    self.released_ips.insert(uuid.to_string());
                }
            }
            Err(e) => warn!(vm = %name, error = %e, "cannot list the public IPs; will retry"),
        }
    }
}

/// The health probe of one pool: an HTTP GET of `health.path` (2xx = healthy), or a TCP
/// connect to the service port when no path is configured.
pub struct Prober {
    http: reqwest::Client,
    path: Option<String>,
    port: u16,
    timeout: Duration,
}

impl Prober {
    pub fn new(pool: &PoolConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(pool.health.timeout)
            // A fresh connection per probe: an idle keep-alive must not hide a dead listener.
            .pool_max_idle_per_host(0)
            .build()
            .expect("a plain HTTP client always builds");
        Self {
            http,
            path: pool.health.path.clone(),
            port: pool.service_port,
            timeout: pool.health.timeout,
        }
    }

    pub async fn check(&self, ip: &str) -> bool {
        match &self.path {
            Some(path) => {
                let url = format!("http://{ip}:{}{path}", self.port);
                matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success())
            }
            None => {
                let addr = format!("{ip}:{}", self.port);
                matches!(
                    tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr)).await,
                    Ok(Ok(_))
                )
            }
        }
    }
}
