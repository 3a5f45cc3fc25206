//! The per-pool reconciler: the only writer of its pool's view. It takes its location's VM list
//! from the [`lister`], probes every backend every `health.interval` (booting clones every
//! [`BOOT_PROBE_INTERVAL`]), asks the pure planner ([`crate::pool::plan`]) for the next steps and
//! hands them to the [`executor`], whose results come back as events.
//!
//! It is level-triggered: each pass plans from what exists now (the last list and the probes),
//! what is intended (the intents) and what is desired, whatever woke it. The loop never awaits a
//! cloud call; it awaits only the local, durable write of a drain's intent before the VM leaves
//! Traefik's list. Cloud errors back off and are recorded; the loop never dies.

mod cost;
pub mod executor;
pub mod lister;
mod listing;
mod planned;
pub mod probe;
mod refresh;
mod steps;
mod warm;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tracing::{error, info, warn, Instrument};

use crate::backoff::Backoff;
use crate::clock;
use crate::config::{PoolConfig, TRAEFIK_THROTTLE};
use crate::control::PoolControl;
use crate::idch::{CloudError, Vm};
use crate::metrics::Metrics;
use crate::pool::plan::{self, Intent, Phase, Policy};
use crate::pool::slow_start::{self, Ramp};
use crate::pool::{self, Backend, BackendState, PoolView, ProbeStreak, Role};
use crate::shutdown::Shutdown;
use crate::snapshot::State;
use crate::store::{Activity, Store, Writer};

use executor::{Event, Executor};
use lister::ListerHandle;
use probe::Prober;

/// How often a booting clone is probed, so that it is ready within about `healthy_threshold` ×
/// this of its app answering...
pub const BOOT_PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// ... while at most this many VMs of the pool are in a health gate; with more (a restart that
/// finds a whole pool booting), every other boot round is skipped, so they are probed every 500 ms.
pub const FAST_BOOT_PROBES_UP_TO: usize = 8;
/// A booting clone with no address yet is fetched on its own at most this often...
const BOOT_FETCH_EVERY: f64 = 1.0;
/// ... and at most this many per pool at a time, so a pool of clones that never get an address
/// cannot flood the API (the periodic list still covers them all).
const BOOT_FETCHES_AT_ONCE: usize = 4;
/// The store's `meta` key that says Traefik has polled this service.
const TRAEFIK_POLLED: &str = "traefik_polled";
/// Clone and boot failures back off from 2 s up to 5 minutes.
const CLONE_BACKOFF: Backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(300));
/// Failed deletes and IP releases of one VM back off from 2 s up to a minute.
const STEP_BACKOFF: Backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(60));

/// The shared parts a reconciler is built from.
pub struct Deps {
    pub cloud: crate::idch::CloudClient,
    /// `[traefik] poll_interval`.
    pub traefik_poll_interval: Duration,
    pub state: Arc<State>,
    pub store: Arc<Store>,
    pub writer: Writer,
    pub lister: ListerHandle,
    /// `run --dry-run`: plan and record, never take a step ([`planned`]).
    pub dry_run: bool,
}

pub struct PoolReconciler {
    index: usize,
    pool: Arc<PoolConfig>,
    policy: Policy,
    control: Arc<PoolControl>,
    state: Arc<State>,
    writer: Writer,
    metrics: Arc<Metrics>,
    lister: ListerHandle,
    executor: Executor,
    events: mpsc::UnboundedReceiver<Event>,
    prober: Prober,
    /// The working copy of the pool's view; published to `state` after a pass that changed it.
    view: PoolView,
    /// What was last published.
    published: Option<PoolView>,
    /// Consecutive probe results by VM uuid.
    streaks: HashMap<String, ProbeStreak>,
    /// VMs on their way in or out: a write-through copy of the store's intents.
    intents: Vec<Intent>,
    /// Every VM name in the last list (any pool).
    names_in_cloud: HashSet<String>,
    /// The seq of the last listing handled; 0 before the first.
    listed_seq: u64,
    full_rounds: u32,
    /// A full probe round is in flight.
    probing: bool,
    /// A boot probe round is in flight.
    boot_probing: bool,
    /// Consecutive clone or boot failures, and when the next clone may be tried.
    clone_failures: u32,
    clone_not_before: f64,
    /// Consecutive failed starts of warm clones, and when the next start may be tried.
    start_failures: u32,
    start_not_before: f64,
    /// Failed deletes and IP releases: attempts so far, and when to try again, by uuid.
    step_failures: HashMap<String, u32>,
    not_before: HashMap<String, f64>,
    /// Clones whose public IP was released (or found to have none).
    released_ips: HashSet<String>,
    /// Clones whose readiness was announced (survives restarts, so it is not announced twice).
    announced: HashSet<String>,
    /// When the planner asked to be asked again.
    wake_at: Option<f64>,
    /// Booting clones fetched on their own (by uuid): when last.
    fetched_at: HashMap<String, f64>,
    /// Draining VMs (by uuid): the first generation published without them in `/traefik`.
    drain_generation: HashMap<String, u64>,
    /// Traefik has polled `/traefik`, in this run or one before (the store's `traefik_polled`).
    traefik_polls: bool,
    /// Drift detection: the version each backend (by uuid) last reported, when the next
    /// round of reads is due, and whether one is in flight.
    versions: HashMap<String, String>,
    versions_due: f64,
    reading_versions: bool,
    /// Slow start's ramp (`None`: off) and when the pool first synced: only backends ready
    /// after that ramp up. Weights are computed at publish.
    slow_start: Option<Ramp>,
    synced_at: Option<f64>,
    /// `run --dry-run`: `converge` plans and records, and never calls `take`.
    dry_run: bool,
    /// The plan view, published to `state` by `publish_plan` when it changed.
    planned: crate::snapshot::plan::PlanView,
    /// A dry run: the steps (action, VM) of the last pass, each recorded once.
    rehearsed: HashSet<(&'static str, String)>,
    /// The open intervals of the pool's lifecycle record (`cost.rs`).
    lifetimes: crate::pool::cost::Lifetimes,
}

impl PoolReconciler {
    pub fn new(index: usize, control: Arc<PoolControl>, deps: &Deps) -> anyhow::Result<Self> {
        let pool = control.config.clone();
        let started = clock::now();
        let mut intents = deps.store.intents(&pool.name)?;
        for i in intents.iter_mut() {
            // A clone call in flight when the service stopped: its end is unknown, so a list
            // that begins after this start decides.
            if i.phase == Phase::Provisioning && i.until.is_none() {
                i.until = Some(started);
            }
        }
        let announced = deps.store.announced(&pool.name)?;
        let lifetimes =
            crate::pool::cost::Lifetimes::resume(deps.store.open_lifetimes(&pool.name)?, started);
        let traefik_polls = deps.store.meta(TRAEFIK_POLLED)?.is_some();
        let (tx, events) = mpsc::unbounded_channel();
        let cloud = deps.cloud.clone();
        // Each step lasts at least one poll (and Traefik's throttle), so Traefik sees it.
        let slow_start = Ramp::new(
            pool.slow_start,
            deps.traefik_poll_interval.max(TRAEFIK_THROTTLE),
        );
        let pool_name = pool.name.clone();
        deps.state
            .publish_plan(index, Self::initial_plan(&pool_name, deps.dry_run));
        Ok(Self {
            index,
            policy: Policy::of(&pool, deps.traefik_poll_interval),
            prober: Prober::new(&pool),
            view: PoolView::new(&pool.name),
            published: None,
            pool,
            control,
            state: deps.state.clone(),
            writer: deps.writer.clone(),
            metrics: deps.state.metrics().clone(),
            lister: deps.lister.clone(),
            executor: Executor::new(cloud, tx),
            events,
            streaks: HashMap::new(),
            intents,
            names_in_cloud: HashSet::new(),
            listed_seq: 0,
            full_rounds: 0,
            probing: false,
            boot_probing: false,
            clone_failures: 0,
            clone_not_before: 0.0,
            start_failures: 0,
            start_not_before: 0.0,
            step_failures: HashMap::new(),
            not_before: HashMap::new(),
            released_ips: HashSet::new(),
            announced,
            wake_at: None,
            drain_generation: HashMap::new(),
            fetched_at: HashMap::new(),
            traefik_polls,
            versions: HashMap::new(),
            versions_due: 0.0,
            reading_versions: false,
            slow_start,
            synced_at: None,
            dry_run: deps.dry_run,
            planned: Self::initial_plan(&pool_name, deps.dry_run),
            rehearsed: HashSet::new(),
            lifetimes,
        })
    }

    /// Runs until `shutdown` fires.
    pub async fn run(mut self, shutdown: Shutdown) {
        let span = tracing::info_span!("pool", pool = %self.pool.name);
        async move {
            // Timers start at a random phase, so many pools do not probe in step.
            let interval = self.pool.health.interval;
            let phase = interval.mul_f64(rand::thread_rng().gen_range(0.0..1.0));
            let mut probe = tokio::time::interval_at(tokio::time::Instant::now() + phase, interval);
            probe.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut boot = tokio::time::interval(BOOT_PROBE_INTERVAL.min(interval));
            let mut boot_ticks: u64 = 0;
            boot.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut listings = self.lister.listings.clone();
            listings.mark_changed();
            loop {
                let wake = self.wake_at.map(|t| {
                    tokio::time::Instant::now()
                        + Duration::from_secs_f64((t - clock::now()).max(0.0))
                });
                tokio::select! {
                    _ = shutdown.wait() => break,
                    changed = listings.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let listing = listings.borrow_and_update().clone();
                        if let Some(listing) = listing {
                            self.on_listing(&listing).await;
                        }
                    }
                    _ = probe.tick() => self.start_probe_round(true),
                    _ = boot.tick(), if self.has_booting() => {
                        boot_ticks += 1;
                        let gated = self
                            .view
                            .backends
                            .iter()
                            .filter(|b| b.state.in_health_gate())
                            .count();
                        if gated <= FAST_BOOT_PROBES_UP_TO || boot_ticks.is_multiple_of(2) {
                            self.start_probe_round(false);
                        }
                    }
                    _ = self.control.wake.notified() => {},
                    Some(event) = self.events.recv() => self.on_event(event),
                    _ = sleep_until(wake) => {},
                }
                self.converge().await;
                self.settle_refresh();
                self.publish();
                self.publish_plan();
            }
        }
        .instrument(span)
        .await
    }

    fn has_booting(&self) -> bool {
        self.view.backends.iter().any(|b| b.state.in_health_gate())
    }

    /// Publishes the view when it changed since the last publish.
    fn publish(&mut self) {
        let mut provisioning: Vec<String> =
            plan::unresolved_clones(&self.intents, &self.names_in_cloud)
                .map(|i| i.name.clone())
                .filter(|n| !self.view.backends.iter().any(|b| &b.name == n))
                .collect();
        provisioning.sort();
        self.view.provisioning = provisioning;
        if let Some(ramp) = &self.slow_start {
            // The weights are part of the view, so a step is a change that gets published;
            // the loop wakes for the next step.
            let now = clock::now();
            if self.view.synced && self.synced_at.is_none() {
                self.synced_at = Some(now);
            }
            let (weights, next) =
                slow_start::ramping(&self.view.backends, ramp, self.synced_at, now);
            self.view.weights = weights;
            if let Some(t) = next {
                self.wake_at = Some(self.wake_at.map_or(t, |w| w.min(t)));
            }
        }
        if self.published.as_ref() != Some(&self.view) {
            self.published = Some(self.view.clone());
            let generation = self.state.publish(self.index, self.view.clone());
            for b in &self.view.backends {
                if b.state.is_leaving() {
                    self.drain_generation
                        .entry(b.uuid.clone())
                        .or_insert(generation);
                }
            }
        }
    }

    // ---- persistence: every write goes through the store's writer thread, in order ----------

    fn record(&self, activity: Activity) {
        self.metrics
            .activity(&self.pool.name, &activity.action, &activity.outcome);
        let pool = self.pool.name.clone();
        drop(self.writer.submit(move |s| {
            s.record(&pool, &activity)
                .inspect_err(|e| error!(error = %format!("{e:#}"), "cannot record an activity"))
        }));
    }

    /// Writes an intent (replacing the one with the same key) and returns when it is durable.
    fn put_intent(
        &mut self,
        intent: Intent,
        activity: Option<Activity>,
    ) -> oneshot::Receiver<anyhow::Result<()>> {
        if let Some(a) = &activity {
            self.metrics
                .activity(&self.pool.name, &a.action, &a.outcome);
        }
        self.intents.retain(|i| i.key() != intent.key());
        self.intents.push(intent.clone());
        let pool = self.pool.name.clone();
        self.writer.submit(move |s| {
            s.put_intent(&pool, &intent, activity.as_ref())
                .inspect_err(|e| error!(error = %format!("{e:#}"), vm = %intent.name, "cannot persist an intent"))
        })
    }

    fn drop_intent(&mut self, key: &str, activity: Option<Activity>) {
        if let Some(a) = &activity {
            self.metrics
                .activity(&self.pool.name, &a.action, &a.outcome);
        }
        self.intents.retain(|i| i.key() != key);
        let (pool, key) = (self.pool.name.clone(), key.to_string());
        drop(self.writer.submit(move |s| {
            s.remove_intent(&pool, &key, activity.as_ref())
                .inspect_err(|e| error!(error = %format!("{e:#}"), key, "cannot persist an intent"))
        }));
    }

    /// Moves the VM to deleting and writes its deleting intent (replacing its other one).
    fn mark_deleting(
        &mut self,
        uuid: String,
        name: &str,
        reason: &str,
        now: f64,
        activity: Option<Activity>,
    ) -> oneshot::Receiver<anyhow::Result<()>> {
        self.transition(&uuid, BackendState::Deleting, now);
        self.put_intent(
            Intent {
                name: name.to_string(),
                uuid: Some(uuid),
                phase: Phase::Deleting,
                since: now,
                until: None,
                reason: reason.into(),
                warm: false,
            },
            activity,
        )
    }

    fn intent_mut(&mut self, key: &str) -> Option<&mut Intent> {
        self.intents.iter_mut().find(|i| i.key() == key)
    }

    // ---- state changes ---------------------------------------------------------------------

    /// Moves a backend (by uuid) to a new state, logging the transition and timing the old state.
    fn transition(&mut self, uuid: &str, to: BackendState, now: f64) {
        let Some(b) = self.view.backends.iter_mut().find(|b| b.uuid == uuid) else {
            return;
        };
        if b.state == to {
            return;
        }
        let (from, since) = (b.state, b.since);
        b.state = to;
        b.since = now;
        info!(vm = %b.name, uuid, from = from.as_str(), to = to.as_str(), "backend state changed");
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

    fn clone_failed(&mut self, now: f64) {
        let wait = CLONE_BACKOFF.delay(self.clone_failures);
        self.clone_failures = self.clone_failures.saturating_add(1);
        self.clone_not_before = now + wait.as_secs_f64();
    }

    fn step_failed(&mut self, uuid: &str, now: f64) -> u32 {
        let attempts = self.step_failures.entry(uuid.to_string()).or_insert(0);
        let wait = STEP_BACKOFF.delay(*attempts);
        *attempts += 1;
        let attempts = *attempts;
        self.not_before
            .insert(uuid.to_string(), now + wait.as_secs_f64());
        attempts
    }

    fn forget_vm(&mut self, uuid: &str) {
        self.streaks.remove(uuid);
        self.fetched_at.remove(uuid);
        self.drain_generation.remove(uuid);
        self.step_failures.remove(uuid);
        self.not_before.remove(uuid);
        self.released_ips.remove(uuid);
        self.versions.remove(uuid);
        self.forget_announcement(uuid);
    }

    fn forget_announcement(&mut self, uuid: &str) {
        if self.announced.remove(uuid) {
            let (pool, uuid) = (self.pool.name.clone(), uuid.to_string());
            drop(
                self.writer
                    .submit(move |s| s.forget_announced(&pool, &uuid)),
            );
        }
    }

    // ---- probes ------------------------------------------------------------------------------

    /// Starts a probe round as a task: `full` rounds probe every backend with an address, boot
    /// rounds only booting clones (fetching those without an address yet).
    fn start_probe_round(&mut self, full: bool) {
        if self.listed_seq == 0 || (full && self.probing) || (!full && self.boot_probing) {
            return;
        }
        let mut targets = Vec::new();
        let now = clock::now();
        let mut fetches = self.executor.fetching();
        for b in &self.view.backends {
            // Stopped, or about to be: nothing to probe.
            if matches!(
                b.state,
                BackendState::Deleting
                    | BackendState::Stopping
                    | BackendState::Warm
                    | BackendState::Starting
            ) {
                continue;
            }
            let booting = b.state.in_health_gate();
            if !full && !booting {
                continue;
            }
            match &b.ip {
                // A booting VM is probed as soon as it has an address, whatever its status.
                Some(ip) if booting || b.cloud_status == "running" => {
                    targets.push((b.uuid.clone(), Some(ip.clone())))
                }
                _ => {
                    let due = self
                        .fetched_at
                        .get(&b.uuid)
                        .is_none_or(|t| now - t >= BOOT_FETCH_EVERY);
                    if booting && b.role == Role::Clone && due && fetches < BOOT_FETCHES_AT_ONCE {
                        if self.executor.fetch(&b.uuid) {
                            fetches += 1;
                        }
                        self.fetched_at.insert(b.uuid.clone(), now);
                    }
                    if full {
                        targets.push((b.uuid.clone(), None));
                    }
                }
            }
        }
        if full {
            self.start_version_round(now);
        }
        if !full && targets.is_empty() {
            return;
        }
        if full {
            self.probing = true;
        } else {
            self.boot_probing = true;
        }
        let (prober, events) = (self.prober.clone(), self.executor_events());
        tokio::spawn(async move {
            let results = futures::future::join_all(targets.into_iter().map(|(uuid, ip)| {
                let prober = prober.clone();
                async move {
                    let ok = match ip {
                        Some(ip) => prober.check(&ip).await,
                        None => false,
                    };
                    (uuid, ok)
                }
            }))
            .await;
            let _ = events.send(Event::Probed { results, full });
        });
    }

    fn executor_events(&self) -> mpsc::UnboundedSender<Event> {
        self.executor.events()
    }

    fn on_probed(&mut self, results: Vec<(String, bool)>, full: bool) {
        let now = clock::now();
        for (uuid, ok) in results {
            let Some(b) = self.view.backends.iter_mut().find(|b| b.uuid == uuid) else {
                continue;
            };
            let streak = self.streaks.entry(uuid.clone()).or_default();
            let Some((from, since)) = pool::apply_probe(b, streak, ok, &self.pool.health, now)
            else {
                continue;
            };
            let (name, to, role) = (b.name.clone(), b.state, b.role);
            info!(vm = %name, from = from.as_str(), to = to.as_str(), "backend state changed");
            self.time_in_state(from, now - since);
            if from == BackendState::Booting && to == BackendState::Ready && role == Role::Clone {
                if self
                    .intents
                    .iter()
                    .any(|i| i.phase == Phase::Starting && i.key() == uuid)
                {
                    // A started warm clone passed its health gate: the start is done.
                    self.drop_intent(&uuid, None);
                    self.start_failures = 0;
                } else {
                    self.clone_failures = 0;
                }
                if self.announced.insert(uuid.clone()) {
                    let activity = Activity::new(
                        "ready",
                        "health gate passed",
                        "ok",
                        format!("{name} after {:.1}s", now - since),
                    );
                    self.metrics.activity(&self.pool.name, "ready", "ok");
                    let pool = self.pool.name.clone();
                    drop(
                        self.writer
                            .submit(move |s| s.announce(&pool, &uuid, &activity)),
                    );
                } else {
                    info!(vm = %name, "ready again after a restart (already announced)");
                }
            }
        }
        if full {
            self.full_rounds = self.full_rounds.saturating_add(1);
            if !self.view.synced && self.full_rounds >= self.pool.health.healthy_threshold {
                self.view.synced = true;
                info!(
                    ready = self.view.count(BackendState::Ready),
                    total = self.view.backends.len(),
                    "pool synced"
                );
            }
        }
    }

    // ---- events from the executor ------------------------------------------------------------

    fn on_event(&mut self, event: Event) {
        self.executor.finished(&event);
        let now = clock::now();
        match event {
            Event::Probed { results, full } => {
                if full {
                    self.probing = false;
                } else {
                    self.boot_probing = false;
                }
                self.on_probed(results, full);
            }
            Event::Versions { results } => self.on_versions(results),
            Event::Cloned { name, result } => self.on_cloned(name, result, now),
            Event::Deleted { uuid, name, result } => match result {
                Ok(how) => {
                    info!(vm = %name, uuid = %uuid, ?how, "deleted");
                    self.record_deleted(&uuid, now);
                    if let Some(i) = self.view.backends.iter().position(|b| b.uuid == uuid) {
                        let b = self.view.backends.remove(i);
                        self.time_in_state(b.state, now - b.since);
                    }
                    if !self.view.backends.iter().any(|b| b.name == name) {
                        self.names_in_cloud.remove(&name);
                    }
                    self.forget_vm(&uuid);
                    self.drop_intent(
                        &uuid,
                        Some(Activity::new(
                            "delete",
                            "drain finished",
                            "ok",
                            format!("{name} ({uuid})"),
                        )),
                    );
                    self.lister.poke();
                }
                Err(e) => {
                    let attempts = self.step_failed(&uuid, now);
                    warn!(vm = %name, error = %e, attempts, "delete failed; will retry");
                    self.record(Activity::new(
                        "delete",
                        "drain finished",
                        "failed",
                        format!("{name}: {e}"),
                    ));
                }
            },
            Event::Started { uuid, name, result } => self.on_started(uuid, name, result, now),
            Event::Stopped { uuid, name, result } => self.on_stopped(uuid, name, result, now),
            Event::IpsReleased { uuid, name, result } => match result {
                Ok(addresses) => {
                    self.released_ips.insert(uuid);
                    for address in addresses {
                        info!(vm = %name, %address, "released the public IP");
                        self.record(Activity::new(
                            "release_ip",
                            "release_public_ip = true",
                            "ok",
                            format!("{name}: {address}"),
                        ));
                    }
                }
                Err(e) => {
                    let attempts = self.step_failed(&uuid, now);
                    warn!(vm = %name, error = %e, attempts, "cannot release the public IP; will retry");
                }
            },
            Event::Fetched { uuid, result } => {
                if let Ok(vm) = result {
                    if let Some(b) = self
                        .view
                        .backends
                        .iter_mut()
                        .find(|b| b.uuid == uuid && b.state == BackendState::Booting)
                    {
                        b.ip = vm.private_ipv4.or(b.ip.take());
                        b.cloud_status = vm.status;
                    }
                }
            }
            Event::NotDurable { key, error } => {
                error!(
                    key,
                    error, "an intent could not be written: the step was not taken"
                );
                if let Some(i) = self.intents.iter().position(|i| i.key() == key) {
                    if self.intents[i].phase == Phase::Provisioning {
                        self.intents.remove(i);
                        self.clone_failed(now);
                    } else {
                        self.step_failed(&key, now);
                    }
                }
            }
        }
    }

    fn on_cloned(&mut self, name: String, result: Result<Vm, CloudError>, now: f64) {
        self.lister.poke();
        match result {
            Ok(vm) => {
                info!(vm = %vm.name, uuid = %vm.uuid, "cloned");
                let detail = format!("{} ({})", vm.name, vm.uuid);
                let cause = self
                    .intent_mut(&name)
                    .map_or("below desired size".to_string(), |i| i.reason.clone());
                let warm = self.intent_mut(&name).is_some_and(|i| i.warm);
                let activity = Activity::new("clone", cause, "ok", detail);
                match self.intent_mut(&name).cloned() {
                    Some(mut intent) => {
                        intent.uuid = Some(vm.uuid.clone());
                        intent.until = Some(now);
                        drop(self.put_intent(intent, Some(activity)));
                    }
                    // A list taken while the call was in flight already adopted it.
                    None => self.record(activity),
                }
                if !self.view.backends.iter().any(|b| b.uuid == vm.uuid) {
                    self.view.backends.push(Backend {
                        uuid: vm.uuid.clone(),
                        name: vm.name.clone(),
                        role: Role::Clone,
                        ip: vm.private_ipv4.clone(),
                        cloud_status: vm.status.clone(),
                        created_at: vm.created_at.clone(),
                        state: if warm {
                            BackendState::Warming
                        } else {
                            BackendState::Booting
                        },
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
                    match self.intent_mut(&name).cloned() {
                        Some(mut intent) => {
                            intent.until = Some(now);
                            let activity =
                                Activity::new("clone", "below desired size", "unknown", detail);
                            drop(self.put_intent(intent, Some(activity)));
                        }
                        None => self.record(Activity::new(
                            "clone",
                            "below desired size",
                            "unknown",
                            format!("{detail}; already found in the cloud's list"),
                        )),
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
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
