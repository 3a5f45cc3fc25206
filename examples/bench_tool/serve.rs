//! `bench_tool serve --backends N --dir DIR [--listen 127.0.0.1:0] [--max-time 10m]`
//!
//! Builds the service's `State` for one pool, publishes a synthetic view with N ready backends
//! (`State::publish` renders both documents, as the reconciler's publish does), and serves them
//! with the service's own router (`routes::router`) on a multi-threaded runtime with one worker per
//! core, as `idch-autoscaler run` does. Writes `DIR/traefik.json` and `DIR/targets.json` (the same
//! bytes, for nginx) and then `DIR/addr` (the bound address). Exits after `--max-time`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use idch_autoscaler::config::{Config, Secrets};
use idch_autoscaler::control::PoolControl;
use idch_autoscaler::http::auth::WebhookAuth;
use idch_autoscaler::http::{self, AppState};
use idch_autoscaler::metrics::Metrics;
use idch_autoscaler::snapshot::State;
use idch_autoscaler::store::Store;

use crate::common::{synthetic_view, Args};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let args = Args::new(args);
    let n: usize = args.parse("--backends", 1000)?;
    anyhow::ensure!(n >= 1, "--backends must be at least 1");
    let dir = args.path("--dir")?;
    let listen: SocketAddr = args.parse("--listen", "127.0.0.1:0".parse()?)?;
    anyhow::ensure!(
        listen.ip().is_loopback(),
        "--listen must be a loopback address"
    );
    let max_time = args.duration("--max-time", Duration::from_secs(600))?;

    let text = format!(
        r#"
listen = "{listen}"
state_path = "{state}"

[idcloudhost]
api_url = "http://127.0.0.1:9"
api_key_env = "IDCH_BENCH_UNUSED"

[[pool]]
name = "calculate"
seed_vm = "00000000-0000-4000-8000-000000000000"
clone_prefix = "calculate-service-clone-"
max = 10000
router = {{ rule = "Path(`/calculate`)", entry_points = ["web"] }}
"#,
        state = dir.join("serve-state.db").display(),
    );
    let config = Config::parse(&text).context("bench configuration")?;

    // The same runtime as `idch-autoscaler run`: multi-threaded, one worker per core.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let pools: Vec<_> = config.pools.iter().cloned().map(Arc::new).collect();
        let state = Arc::new(State::new(pools.clone(), metrics.clone()));
        state.publish(0, synthetic_view(&pools[0], n));
        let snapshot = state.load();
        let traefik = snapshot
            .traefik
            .as_ref()
            .context("traefik document rendered")?;
        let targets = snapshot
            .targets
            .as_ref()
            .context("targets document rendered")?;
        std::fs::write(dir.join("traefik.json"), traefik)?;
        std::fs::write(dir.join("targets.json"), targets)?;

        let store = Arc::new(Store::open(&config.state_path)?);
        let controls = pools
            .iter()
            .map(|p| PoolControl::load(p.clone(), store.clone(), metrics.clone()).map(Arc::new))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let app = AppState {
            state,
            read_token: None,
            webhook_auth: Arc::new(WebhookAuth::new(&config.auth, &Secrets::default())),
            controls: Arc::new(controls),
            store,
            charging: idch_autoscaler::billing::Charging::new(None),
        };
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        // Written last, and atomically: its presence means "serving".
        let tmp = dir.join("addr.tmp");
        std::fs::write(&tmp, addr.to_string())?;
        std::fs::rename(&tmp, dir.join("addr"))?;
        eprintln!(
            "serving {n} backends on http://{addr} (traefik {} bytes, targets {} bytes)",
            traefik.len(),
            targets.len()
        );
        let serve = axum::serve(listener, http::router(app));
        match tokio::time::timeout(max_time, serve).await {
            Ok(result) => result.context("server failed"),
            Err(_) => Ok(()),
        }
    })
}
