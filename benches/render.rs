//! Rendering the provider documents and deciding a webhook (BENCHMARKS.md, section 2).
//!
//! `cargo bench --bench render` (criterion). Targets: rendering 1,000 backends < 1 ms; one
//! decision < 10 µs.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use idch_autoscaler::config::{Config, PoolConfig};
use idch_autoscaler::metrics::Metrics;
use idch_autoscaler::pool::decide::{decide, Clocks, Direction, Limits};
use idch_autoscaler::pool::BackendState;
use idch_autoscaler::snapshot::State;
use idch_autoscaler::snapshot::{http_sd, traefik};

/// The bench tool's helpers: [`common::synthetic_view`] is the one synthetic pool of both.
#[allow(dead_code)]
#[path = "../examples/bench_tool/common.rs"]
mod common;

use common::synthetic_view as view;

fn pool_config() -> PoolConfig {
    Config::parse(
        r#"
[idcloudhost]
[[pool]]
name = "calculate"
seed_vm = "00000000-0000-4000-8000-000000000000"
clone_prefix = "calculate-service-clone-"
max = 10000
router = { rule = "Path(`/calculate`)", entry_points = ["web"] }
"#,
    )
    .expect("bench configuration is valid")
    .pools
    .remove(0)
}

fn rendering(c: &mut Criterion) {
    let pool = pool_config();
    let mut group = c.benchmark_group("render");
    for n in [10usize, 100, 1_000, 10_000] {
        let v = view(&pool, n);
        let pairs = [(&pool, &v)];
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("traefik", n), &pairs, |b, p| {
            b.iter(|| traefik::render(black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("prometheus_targets", n), &pairs, |b, p| {
            b.iter(|| http_sd::render(black_box(p)))
        });
    }
    group.finish();
}

/// What a reconciler's change costs readers' writer: `State::publish` of a changed view
/// (compare, both documents rendered, gauges set, one swap), at 1,000 backends.
fn publishing(c: &mut Criterion) {
    let pool = Arc::new(pool_config());
    let state = State::new(vec![pool.clone()], Arc::new(Metrics::new()));
    let a = view(&pool, 1_000);
    let mut b = a.clone();
    b.backends[500].state = BackendState::Unhealthy;
    let mut flip = false;
    c.bench_function("publish/1000", |bench| {
        bench.iter(|| {
            flip = !flip;
            state.publish(0, if flip { a.clone() } else { b.clone() });
        })
    });
}

fn deciding(c: &mut Criterion) {
    let limits = Limits {
        min: 1,
        max: 10,
        step: 1,
        up_cooldown: Duration::from_secs(180),
        down_cooldown: Duration::from_secs(300),
    };
    let now = 1_700_000_000.0;
    let clocks = Clocks {
        last_up: Some(now - 600.0),
        last_down: Some(now - 900.0),
    };
    let in_cooldown = Clocks {
        last_up: Some(now - 60.0),
        last_down: None,
    };
    let mut group = c.benchmark_group("decide");
    group.bench_function("scale_up_accepted", |b| {
        b.iter(|| {
            decide(
                black_box(Direction::Up),
                black_box(false),
                black_box(3),
                black_box(&limits),
                black_box(&clocks),
                black_box(now),
            )
        })
    });
    group.bench_function("scale_up_cooldown", |b| {
        b.iter(|| {
            decide(
                black_box(Direction::Up),
                black_box(false),
                black_box(3),
                black_box(&limits),
                black_box(&in_cooldown),
                black_box(now),
            )
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = rendering, publishing, deciding
}
criterion_main!(benches);
