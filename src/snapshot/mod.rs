//! The live state: one immutable [`Snapshot`] behind one `ArcSwap`.
//!
//! Readers (`GET /traefik`, `/prometheus/targets`, `/v1/pools`, `/readyz`) `load()` once per
//! request and never block, so both provider documents always come from the same generation.
//! Writers are the per-pool reconcilers, each publishing only its own pool through
//! [`State::publish`], which serialises them on a mutex: the swap is load → modify → store under
//! that lock, so no update is lost and readers never see half of one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::config::PoolConfig;
use crate::metrics::Metrics;
use crate::pool::{BackendState, PoolView};

pub mod http_sd;
pub mod plan;
pub mod traefik;

/// How many served generations of `/traefik` are remembered.
const TRAEFIK_SERVED_KEPT: usize = 1024;

/// One generation of everything readers see.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with every published change.
    pub generation: u64,
    /// One view per configured pool, in configuration order.
    pub pools: Vec<Arc<PoolView>>,
    /// The rendered `/traefik` body; `None` until every pool has synced once.
    pub traefik: Option<Bytes>,
    /// The rendered `/prometheus/targets` body; `None` until every pool has synced once.
    pub targets: Option<Bytes>,
}

impl Snapshot {
    pub fn pool(&self, name: &str) -> Option<&Arc<PoolView>> {
        self.pools.iter().find(|p| p.name == name)
    }
}

pub struct State {
    /// Read by every request handler; written only in `publish`.
    current: ArcSwap<Snapshot>,
    /// When each newer generation of `/traefik` was first served: written by the `/traefik`
    /// handler through [`State::note_traefik_served`], read by the reconcilers so a drained VM
    /// is deleted only after Traefik has fetched a configuration without it. Oldest first.
    traefik_served: Mutex<VecDeque<(u64, f64)>>,
    /// One more than the newest generation in `traefik_served` (0: never served), so a handler
    /// serving an already noted generation takes no lock.
    traefik_served_next: AtomicU64,
    /// Serialises writers: held across load → modify → store.
    writer: Mutex<()>,
    /// The pools' configuration, in the same order as `Snapshot::pools`. Immutable.
    pools: Vec<Arc<PoolConfig>>,
    metrics: Arc<Metrics>,
    /// What each pool last planned, in configuration order: written only by that pool's
    /// reconciler ([`State::publish_plan`]), read by `GET /v1/pools/{pool}/plan` and the status.
    plans: Vec<ArcSwap<plan::PlanView>>,
}

impl State {
    pub fn new(pools: Vec<Arc<PoolConfig>>, metrics: Arc<Metrics>) -> Self {
        let views = pools
            .iter()
            .map(|p| Arc::new(PoolView::new(&p.name)))
            .collect();
        Self {
            current: ArcSwap::from_pointee(Snapshot {
                generation: 0,
                pools: views,
                traefik: None,
                targets: None,
            }),
            writer: Mutex::new(()),
            traefik_served: Mutex::new(VecDeque::new()),
            traefik_served_next: AtomicU64::new(0),
            plans: pools
                .iter()
                .map(|p| ArcSwap::from_pointee(plan::PlanView::new(&p.name, false)))
                .collect(),
            pools,
            metrics,
        }
    }

    /// The plan pool `index` last published.
    pub fn plan(&self, index: usize) -> Arc<plan::PlanView> {
        self.plans[index].load_full()
    }

    /// Replaces the plan of pool `index` (only its reconciler calls this).
    pub fn publish_plan(&self, index: usize, view: plan::PlanView) {
        self.plans[index].store(Arc::new(view));
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Notes that `/traefik` of `generation` was just served.
    pub fn note_traefik_served(&self, generation: u64) {
        if generation < self.traefik_served_next.load(Ordering::Acquire) {
            return;
        }
        let mut log = self
            .traefik_served
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if log.back().is_some_and(|(g, _)| *g >= generation) {
            return;
        }
        log.push_back((generation, crate::clock::now()));
        if log.len() > TRAEFIK_SERVED_KEPT {
            log.pop_front();
        }
        self.traefik_served_next
            .store(generation + 1, Ordering::Release);
    }

    /// When a `/traefik` of `generation` or newer was first served, if it was (conservatively
    /// later when the log has forgotten that far back).
    pub fn traefik_served_since(&self, generation: u64) -> Option<f64> {
        let log = self
            .traefik_served
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        log.iter().find(|(g, _)| *g >= generation).map(|(_, t)| *t)
    }

    /// Whether `/traefik` was ever served by this process.
    pub fn traefik_ever_served(&self) -> bool {
        self.traefik_served_next.load(Ordering::Acquire) > 0
    }

    pub fn pool_configs(&self) -> &[Arc<PoolConfig>] {
        &self.pools
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Replaces the view of pool `index`. Does nothing when the view is unchanged; otherwise
    /// publishes a new generation, re-rendering the provider documents only if their bytes change.
    /// Returns the generation that now holds the view.
    pub fn publish(&self, index: usize, view: PoolView) -> u64 {
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.current.load_full();
        if *old.pools[index] == view {
            return old.generation;
        }
        for state in BackendState::ALL {
            self.metrics
                .backends
                .get_or_create(&vec![
                    ("pool", view.name.clone()),
                    ("state", state.as_str().to_string()),
                ])
                .set(view.count(state) as i64);
        }
        let mut pools = old.pools.clone();
        pools[index] = Arc::new(view);
        let (traefik, targets) = if pools.iter().all(|p| p.synced) {
            let pairs: Vec<(&PoolConfig, &PoolView)> = self
                .pools
                .iter()
                .map(|c| c.as_ref())
                .zip(pools.iter().map(|v| v.as_ref()))
                .collect();
            (
                Some(reuse_if_same(old.traefik.as_ref(), traefik::render(&pairs))),
                Some(reuse_if_same(old.targets.as_ref(), http_sd::render(&pairs))),
            )
        } else {
            (None, None)
        };
        self.current.store(Arc::new(Snapshot {
            generation: old.generation + 1,
            pools,
            traefik,
            targets,
        }));
        old.generation + 1
    }
}

fn reuse_if_same(old: Option<&Bytes>, new: Vec<u8>) -> Bytes {
    match old {
        Some(o) if o.as_ref() == new.as_slice() => o.clone(),
        _ => Bytes::from(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{Backend, Role};

    fn config(pools: &str) -> Vec<Arc<PoolConfig>> {
        crate::config::Config::parse(&format!("[idcloudhost]\n{pools}"))
            .unwrap()
            .pools
            .into_iter()
            .map(Arc::new)
            .collect()
    }

    fn backend(name: &str, role: Role, ip: &str, state: BackendState) -> Backend {
        Backend {
            uuid: format!("uuid-{name}"),
            name: name.into(),
            role,
            ip: Some(ip.into()),
            cloud_status: "running".into(),
            created_at: None,
            state,
            since: 0.0,
        }
    }

    fn view(name: &str, backends: Vec<Backend>) -> PoolView {
        PoolView {
            backends,
            synced: true,
            cloud_ok: true,
            ..PoolView::new(name)
        }
    }

    fn json(b: &Option<Bytes>) -> serde_json::Value {
        serde_json::from_slice(b.as_ref().expect("rendered")).unwrap()
    }

    const ONE: &str = "[[pool]]\nname = \"web\"\nseed_vm = \"seed\"\nclone_prefix = \"web-\"\n\
        router = { rule = \"Path(`/calculate`)\", entry_points = [\"web\"] }\n";

    #[test]
    fn nothing_rendered_until_every_pool_synced() {
        let pools = config(&format!(
            "{ONE}[[pool]]\nname = \"api\"\nseed_vm = \"s2\"\nclone_prefix = \"api-\"\n"
        ));
        let state = State::new(pools, Arc::new(Metrics::new()));
        assert!(state.load().traefik.is_none());
        state.publish(
            0,
            view(
                "web",
                vec![backend("s", Role::Seed, "10.0.0.1", BackendState::Ready)],
            ),
        );
        let snap = state.load();
        assert!(
            snap.traefik.is_none() && snap.targets.is_none(),
            "one pool of two is not enough"
        );
        state.publish(1, view("api", vec![]));
        let snap = state.load();
        assert_eq!(snap.generation, 2);
        let doc = json(&snap.traefik);
        assert_eq!(doc["http"]["routers"]["api"]["service"], "api");
        assert_eq!(
            doc["http"]["services"]["api"]["loadBalancer"]["servers"],
            serde_json::json!([])
        );
        assert_eq!(json(&snap.targets).as_array().unwrap().len(), 1);
    }

    #[test]
    fn traefik_document_for_zero_one_and_many_backends() {
        let state = State::new(config(ONE), Arc::new(Metrics::new()));
        // Zero ready backends: the router stays, with no servers (Traefik answers 503, not 404).
        state.publish(
            0,
            view(
                "web",
                vec![backend("s", Role::Seed, "10.0.0.1", BackendState::Booting)],
            ),
        );
        let doc = json(&state.load().traefik);
        assert_eq!(
            doc,
            serde_json::json!({"http": {
                "routers": {"web": {"entryPoints": ["web"], "rule": "Path(`/calculate`)", "service": "web"}},
                "services": {"web": {"loadBalancer": {"servers": [], "passHostHeader": true}}}
            }})
        );
        // One.
        state.publish(
            0,
            view(
                "web",
                vec![backend("s", Role::Seed, "10.0.0.1", BackendState::Ready)],
            ),
        );
        let doc = json(&state.load().traefik);
        assert_eq!(
            doc["http"]["services"]["web"]["loadBalancer"]["servers"],
            serde_json::json!([{"url": "http://10.0.0.1:3000"}])
        );
        // Many, published in a scrambled order: seed first, clones by number; not-ready ones left out.
        let mut backends = vec![
            backend("web-10", Role::Clone, "10.0.0.10", BackendState::Ready),
            backend("web-2", Role::Clone, "10.0.0.2", BackendState::Ready),
            backend("s", Role::Seed, "10.0.0.1", BackendState::Ready),
            backend("web-3", Role::Clone, "10.0.0.3", BackendState::Unhealthy),
            backend("web-4", Role::Clone, "10.0.0.4", BackendState::Booting),
        ];
        crate::pool::sort_backends(&mut backends, "web-");
        state.publish(0, view("web", backends.clone()));
        let first = state.load().traefik.clone().unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&first).unwrap();
        let urls: Vec<&str> = doc["http"]["services"]["web"]["loadBalancer"]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["url"].as_str().unwrap())
            .collect();
        assert_eq!(
            urls,
            [
                "http://10.0.0.1:3000",
                "http://10.0.0.2:3000",
                "http://10.0.0.10:3000"
            ]
        );
        // Same servers, a change elsewhere (a booting clone became unhealthy): same bytes, same buffer.
        let web4 = backends.iter_mut().find(|b| b.name == "web-4").unwrap();
        web4.state = BackendState::Unhealthy;
        state.publish(0, view("web", backends));
        let second = state.load().traefik.clone().unwrap();
        assert_eq!(
            first.as_ptr(),
            second.as_ptr(),
            "unchanged document is served from the same cache"
        );
    }

    #[test]
    fn targets_for_zero_one_and_many() {
        let state = State::new(config(ONE), Arc::new(Metrics::new()));
        state.publish(0, view("web", vec![]));
        assert_eq!(state.load().targets.as_deref(), Some(&b"[]"[..]));
        let mut no_ip = backend("web-9", Role::Clone, "x", BackendState::Booting);
        no_ip.ip = None;
        state.publish(
            0,
            view(
                "web",
                vec![
                    backend("s", Role::Seed, "10.0.0.1", BackendState::Ready),
                    backend("web-1", Role::Clone, "10.0.0.2", BackendState::Booting),
                    no_ip,
                ],
            ),
        );
        assert_eq!(
            json(&state.load().targets),
            serde_json::json!([
                {"targets": ["10.0.0.1:9100"], "labels": {"pool": "web", "role": "seed", "vm": "s"}},
                {"targets": ["10.0.0.2:9100"], "labels": {"pool": "web", "role": "clone", "vm": "web-1"}}
            ])
        );
    }

    #[test]
    fn served_generations_are_remembered_from_their_first_fetch() {
        let state = State::new(config(ONE), Arc::new(Metrics::new()));
        assert!(!state.traefik_ever_served());
        assert_eq!(state.traefik_served_since(0), None);
        state.note_traefik_served(3);
        let first = state.traefik_served_since(3).unwrap();
        state.note_traefik_served(3);
        state.note_traefik_served(2);
        assert_eq!(
            state.traefik_served_since(1),
            Some(first),
            "older ones are covered"
        );
        assert_eq!(state.traefik_served_since(4), None, "not fetched yet");
        state.note_traefik_served(9);
        assert!(state.traefik_served_since(4).unwrap() >= first);
        assert!(state.traefik_ever_served());
    }

    #[test]
    fn unchanged_view_publishes_nothing() {
        let state = State::new(config(ONE), Arc::new(Metrics::new()));
        state.publish(0, view("web", vec![]));
        state.publish(0, view("web", vec![]));
        assert_eq!(state.load().generation, 1);
    }
}
