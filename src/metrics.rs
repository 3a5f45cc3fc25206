//! The service's own metrics, in the Prometheus text format (`prometheus-client`).
//!
//! One [`Metrics`] per service, shared by `Arc`; every field is updated lock-free by whoever
//! observes the event (the cloud client, the reconcilers, the webhook handlers) and read by `GET /metrics`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub type Labels = Vec<(&'static str, String)>;

fn cloud_histogram() -> Histogram {
    // 5 ms .. ~20 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

pub struct Metrics {
    registry: Registry,
    /// Cloud API calls by `operation` and `status` (HTTP code, `timeout` or `transport`).
    pub cloud_requests: Family<Labels, Counter>,
    /// Cloud API call latency by `operation`.
    pub cloud_latency: Family<Labels, Histogram, fn() -> Histogram>,
    /// Backends by `pool` and `state`.
    pub backends: Family<Labels, Gauge>,
    /// Failed reconcile passes by `pool`.
    pub reconcile_errors: Family<Labels, Counter>,
    /// Unix time of the last successful reconcile, by `pool`.
    pub last_reconcile: Family<Labels, Gauge<f64, AtomicU64>>,
    /// 1 while the last list call of a pool succeeded, 0 during a cloud outage.
    pub cloud_up: Family<Labels, Gauge>,
    /// Desired size by `pool`.
    pub desired: Family<Labels, Gauge>,
    /// The floor of the open `[[pool.schedule]]` windows by `pool`; 0 while none is open.
    pub scheduled_min: Family<Labels, Gauge>,
    /// Webhook decisions by `pool`, `direction` and `decision`.
    pub webhook_decisions: Family<Labels, Counter>,
    /// Reconciler actions by `pool`, `action` (clone, delete, drain, ...) and `result`.
    pub scale_activities: Family<Labels, Counter>,
    /// Time a backend spent in a lifecycle state, by `pool` and `state`, observed when it leaves it.
    pub state_duration: Family<Labels, Histogram, fn() -> Histogram>,
    /// Rolling refresh by `pool`: 1 while one runs; its old clones, and how many were replaced.
    pub refresh_running: Family<Labels, Gauge>,
    pub refresh_total: Family<Labels, Gauge>,
    pub refresh_replaced: Family<Labels, Gauge>,
    /// Notifications by `target` (its name or index, never the URL) and `result` (`delivered`,
    /// `failed` after the last retry, `dropped` from a full queue).
    pub notifications: Family<Labels, Counter>,
    /// VM-seconds of each pool's VMs (seed included) by `state` (`running`, `stopped`), from
    /// the lifecycle record; and their cost by `pool` and `currency` at the pool's `price`.
    pub pool_vm_seconds: Family<Labels, Counter<f64, AtomicU64>>,
    pub pool_cost: Family<Labels, Counter<f64, AtomicU64>>,
    /// Target tracking by `pool`: the last metric read (NaN without one), the target, and the
    /// recommended size (NaN without a recommendation); evaluations by `pool` and `reason`.
    pub target_metric: Family<Labels, Gauge<f64, AtomicU64>>,
    pub target_value: Family<Labels, Gauge<f64, AtomicU64>>,
    pub target_recommendation: Family<Labels, Gauge<f64, AtomicU64>>,
    pub target_evaluations: Family<Labels, Counter>,
}

fn state_histogram() -> Histogram {
    // 0.25 s .. ~17 h.
    Histogram::new(exponential_buckets(0.25, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("idch_autoscaler");
        let cloud_requests = Family::<Labels, Counter>::default();
        registry.register(
            "cloud_requests",
            "IDCloudHost API calls by operation and status",
            cloud_requests.clone(),
        );
        let cloud_latency =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(cloud_histogram);
        registry.register(
            "cloud_request_duration_seconds",
            "IDCloudHost API call latency by operation",
            cloud_latency.clone(),
        );
        let backends = Family::<Labels, Gauge>::default();
        registry.register(
            "backends",
            "Backends by pool and lifecycle state",
            backends.clone(),
        );
        let reconcile_errors = Family::<Labels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconcile passes that failed, by pool",
            reconcile_errors.clone(),
        );
        let last_reconcile = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "last_successful_reconcile_timestamp_seconds",
            "Unix time of the last successful reconcile, by pool",
            last_reconcile.clone(),
        );
        let cloud_up = Family::<Labels, Gauge>::default();
        registry.register(
            "cloud_up",
            "1 when the last cloud list call of the pool succeeded, 0 during an outage",
            cloud_up.clone(),
        );
        let desired = Family::<Labels, Gauge>::default();
        registry.register(
            "desired_size",
            "Desired pool size (seed included), by pool",
            desired.clone(),
        );
        let scheduled_min = Family::<Labels, Gauge>::default();
        registry.register(
            "scheduled_min",
            "Least pool size set by the open schedule windows, by pool (0 when none is open)",
            scheduled_min.clone(),
        );
        let webhook_decisions = Family::<Labels, Counter>::default();
        registry.register(
            "webhook_decisions",
            "Scale webhooks by pool, direction and decision",
            webhook_decisions.clone(),
        );
        let scale_activities = Family::<Labels, Counter>::default();
        registry.register(
            "scale_activities",
            "Reconciler actions by pool, action and result",
            scale_activities.clone(),
        );
        let state_duration =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(state_histogram);
        registry.register(
            "backend_state_duration_seconds",
            "Time backends spent in each lifecycle state, by pool and state",
            state_duration.clone(),
        );
        let refresh_running = Family::<Labels, Gauge>::default();
        registry.register(
            "refresh_running",
            "1 while a rolling refresh of the pool runs",
            refresh_running.clone(),
        );
        let refresh_total = Family::<Labels, Gauge>::default();
        registry.register(
            "refresh_old_clones",
            "Old clones the pool's latest rolling refresh replaces",
            refresh_total.clone(),
        );
        let refresh_replaced = Family::<Labels, Gauge>::default();
        registry.register(
            "refresh_replaced_clones",
            "Old clones the pool's latest rolling refresh has replaced so far",
            refresh_replaced.clone(),
        );
        let notifications = Family::<Labels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications by target and result (delivered, failed, dropped)",
            notifications.clone(),
        );
        let pool_vm_seconds = Family::<Labels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "pool_vm_seconds",
            "VM-seconds of the pool's VMs (seed included) by pool and billing state (running, stopped)",
            pool_vm_seconds.clone(),
        );
        let pool_cost = Family::<Labels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "pool_cost",
            "What the pool's VM-seconds cost at its configured price, by pool and currency",
            pool_cost.clone(),
        );
        let target_metric = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "target_metric",
            "Target tracking: the last value of the pool's query (NaN without one), by pool",
            target_metric.clone(),
        );
        let target_value = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "target_value",
            "Target tracking: the target the pool's metric is kept near, by pool",
            target_value.clone(),
        );
        let target_recommendation = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "target_recommendation",
            "Target tracking: the recommended pool size (NaN without a recommendation), by pool",
            target_recommendation.clone(),
        );
        let target_evaluations = Family::<Labels, Counter>::default();
        registry.register(
            "target_evaluations",
            "Target tracking: evaluations by pool and reason (scale_up, within_tolerance, no_data, ...)",
            target_evaluations.clone(),
        );
        Self {
            registry,
            target_metric,
            target_value,
            target_recommendation,
            target_evaluations,
            pool_vm_seconds,
            pool_cost,
            refresh_running,
            refresh_total,
            refresh_replaced,
            notifications,
            desired,
            scheduled_min,
            webhook_decisions,
            scale_activities,
            state_duration,
            cloud_requests,
            cloud_latency,
            backends,
            reconcile_errors,
            last_reconcile,
            cloud_up,
        }
    }

    pub fn observe_cloud_call(&self, operation: &'static str, status: String, elapsed: Duration) {
        self.cloud_requests
            .get_or_create(&vec![
                ("operation", operation.to_string()),
                ("status", status),
            ])
            .inc();
        self.cloud_latency
            .get_or_create(&vec![("operation", operation.to_string())])
            .observe(elapsed.as_secs_f64());
    }

    pub fn activity(&self, pool: &str, action: &str, result: &str) {
        self.scale_activities
            .get_or_create(&vec![
                ("pool", pool.to_string()),
                ("action", action.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
    }

    /// The text exposition (OpenMetrics text, which Prometheus reads).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
