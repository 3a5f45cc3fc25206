//! Benchmark helpers driven by `bench/run.sh` (see BENCHMARKS.md). One binary, six modes:
//!
//! - `serve`: serves `GET /traefik` and `GET /prometheus/targets` from the service's own router and
//!   state, with one pool of N synthetic ready backends, and writes the same bytes to files so nginx
//!   can serve them as the reference.
//! - `webhook`: times a scale-up webhook's arrival to the clone call reaching the simulator, against
//!   the release service binary run as its own process.
//! - `serving`: times a scale-up webhook to the first request the new VM serves through the real
//!   Traefik, and how long after its app came up.
//! - `footprint`: resident memory and CPU of the release service binary with P pools of V VMs each
//!   on the simulator, after an hour-equivalent of reconcile cycles, and idle at default intervals.
//! - `scaleout`: time from `PUT desired 5` to 5 ready VMs with slow clone calls, for each
//!   `max_concurrent_clones` given.
//! - `calculate`: a tiny stand-in for the sample workload, for simulated VMs in the footprint run: it
//!   accepts `calculate --listen IP:PORT --name NAME` like the real one and answers every request with
//!   `200 {"status":"ok"}`, so 1,000 VMs cost ~1,000 small single-threaded processes.
//!
//! Every mode binds loopback only and stops by itself (bounded counts and deadlines).

mod common;
mod footprint;
mod scaleout;
mod serve;
mod serving;
mod stub;
mod webhook;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    let rest = &args[1..];
    let result = match mode {
        // The simulator starts `{program} calculate --listen IP:PORT --name NAME`: keep this mode
        // free of any runtime or logging set-up.
        "calculate" => stub::run(rest),
        "serve" => serve::run(rest),
        "webhook" => webhook::run(rest),
        "serving" => serving::run(rest),
        "footprint" => footprint::run(rest),
        "scaleout" => scaleout::run(rest),
        _ => {
            eprintln!("usage: bench_tool serve|webhook|serving|footprint|scaleout|calculate [options] (see --help of each)");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_tool {mode}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
