//! idch-autoscaler: horizontal autoscaling for IDCloudHost VMs behind Traefik.
//!
//! Layout:
//! - [`config`]: the TOML configuration, parsed into typed settings and validated.
//! - [`cloud`]: the IDCloudHost API client, its wire types, and the built-in simulator.
//! - [`domain`]: pools and backends, their lifecycle states; no I/O.
//! - [`decide`]: the pure scaling decision; [`control`]: desired size per pool, its only writer.
//! - [`store`]: SQLite persistence of intent (desired, cooldowns, drains, history).
//! - [`auth`]: webhook authentication (bearer, basic, Grafana HMAC).
//! - [`state`]: the one snapshot behind one `ArcSwap`, and the only writer of it.
//! - [`reconcile`]: the per-pool loop that observes the cloud and probes health.
//! - [`routes`]: the HTTP endpoints; each owns its JSON wire types.
//! - [`startup`]: binds the listener, wires state, routes and tasks.
//! - [`demo`]: the embedded default (simulator + service in one process).
//! - [`workload`]: the sample `calculate` app that simulated VMs run.

pub mod auth;
pub mod clock;
pub mod cloud;
pub mod config;
pub mod control;
pub mod decide;
pub mod demo;
pub mod domain;
pub mod metrics;
pub mod reconcile;
pub mod routes;
pub mod rules_check;
pub mod shutdown;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod workload;
