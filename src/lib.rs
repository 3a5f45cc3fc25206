//! idch-autoscaler: horizontal autoscaling for IDCloudHost VMs behind Traefik.
//!
//! Layout (ARCHITECTURE.md has the map and what each folder may not do):
//! - [`config`]: the TOML configuration, parsed into typed settings and validated.
//! - [`pool`]: backends, lifecycle, [`pool::decide`] and the planner; pure, no I/O.
//! - [`control`]: desired size per pool, its only writer.
//! - [`reconciler`]: the per-pool loop, the executor of cloud steps, the lister, probes.
//! - [`scheduler`]: per pool, applies the floor of `[[pool.schedule]]` windows as they open.
//! - [`snapshot`]: the one `ArcSwap`, its single writer, and rendering of the provider documents.
//! - [`http`]: routes, auth, `ApiError`; serves the snapshot's bytes.
//! - [`idch`]: the IDCloudHost API client and its wire types.
//! - [`notify`]: `[[notify]]` targets: durable activities delivered off the reconcilers' path.
//! - [`prom`]: target tracking's Prometheus query client and its pacing.
//! - [`store`]: SQLite persistence of intent (desired, cooldowns, drains, history).
//! - [`check`]: `check --config` and `check --rules`.
//! - [`startup`]: binds the listener, wires state, routes and tasks.
//! - [`demo`]: the embedded default (simulator + service in one process).
//! - [`sim`] and [`workload`]: the built-in IDCloudHost simulator and the sample `calculate`
//!   app that simulated VMs run; apart from the service (they import nothing from it).

pub mod backoff;
pub mod billing;
pub mod check;
pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
pub mod http;
pub mod idch;
pub mod metrics;
pub mod notify;
pub mod pool;
pub mod prom;
pub mod reconciler;
pub mod scheduler;
pub mod shutdown;
pub mod sim;
pub mod snapshot;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tracker;
pub mod workload;
