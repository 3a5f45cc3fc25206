//! The black-box tests that can share one binary: the simulator, the cloud client, the service's
//! endpoints, webhooks, scaling and restarts, the sample workload, the parsers under proptest, the
//! shipped files, the real Traefik, Prometheus and node_exporter against us. Each test starts what
//! it needs through `common` (`TestApp`, `TestSim`, `Subnet`) on its own loopback range, so they
//! run in parallel; the ones that load or measure the CPU take `common::cpu_heavy()` so that no two
//! of them overlap.
//!
//! `cargo test --test service` (all), `cargo test --test service webhooks::` (one module).
//! The four-minute whole-loop test is its own binary (`--test e2e`), and so are the tests of the
//! embedded default and `scripts/demo.sh`, which use the fixed ports of the README (`--test demo`).

#[path = "../common/mod.rs"]
mod common;

mod api;
mod client;
mod cost;
mod dry_run;
mod fuzz;
mod hardening;
mod harness;
mod node_exporter;
mod notify;
mod peers;
mod reconciler;
mod refresh;
mod scaling;
mod schedule;
mod shipped_files;
mod sim;
mod slow_start;
mod target_policy;
mod target_tracking;
mod warm;
mod webhooks;
mod workload;
