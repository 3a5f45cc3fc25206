//! The embedded default: `idch-autoscaler` with no configuration starts the built-in IDCloudHost
//! simulator on loopback and the service against it, through the same client code that talks to
//! the real API, with one pool `calculate`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::config::{Config, Secret, Secrets};
use crate::sim::{Faults, Ipv4Range, SimHandle, SimOptions};
use crate::startup::Application;

/// Where the demo listens; the files under traefik/ and prometheus/ point here.
pub const DEMO_LISTEN: &str = "127.0.0.1:4000";
pub const DEMO_SIM_LISTEN: &str = "127.0.0.1:4010";

/// The demo's configuration, as a file would say it. `{api_url}` and `{seed}` are filled in.
const DEMO_CONFIG: &str = r#"
listen = "{listen}"
state_path = "{state_path}"
reconcile_interval = "5s"

[idcloudhost]
api_url = "{api_url}"
location = "jkt01"
api_key_env = "IDCH_DEMO_API_KEY"
timeout = "5s"

[traefik]
poll_interval = "1s"

[[pool]]
name = "calculate"
seed_vm = "{seed}"
clone_prefix = "calculate-service-clone-"
service_port = 3000
exporter_port = 9100
min = 1
max = 5
drain_period = "5s"
boot_timeout = "2m"
health = { path = "/healthz", interval = "1s", timeout = "800ms", healthy_threshold = 2, unhealthy_threshold = 3 }
router = { rule = "Path(`/calculate`) || Path(`/healthz`)", entry_points = ["web"] }
"#;

/// Options of the embedded default (all have defaults; see `idch-autoscaler run --help`).
pub struct DemoOptions {
    pub listen: SocketAddr,
    pub sim_listen: SocketAddr,
    pub addresses: Ipv4Range,
    pub workload_program: PathBuf,
    pub state_path: PathBuf,
}

impl DemoOptions {
    pub fn defaults() -> anyhow::Result<Self> {
        Ok(Self {
            listen: DEMO_LISTEN.parse()?,
            sim_listen: DEMO_SIM_LISTEN.parse()?,
            addresses: Ipv4Range::new(Ipv4Addr::new(127, 0, 0, 10), Ipv4Addr::new(127, 0, 0, 250))
                .map_err(anyhow::Error::msg)?,
            workload_program: std::env::current_exe().context("cannot find this program's path")?,
            state_path: std::env::temp_dir().join("idch-autoscaler-demo.db"),
        })
    }
}

/// The embedded default with its defaults, until Ctrl-C or SIGTERM.
pub async fn run() -> anyhow::Result<()> {
    run_with(DemoOptions::defaults()?).await
}

pub async fn run_with(opts: DemoOptions) -> anyhow::Result<()> {
    // Each demo run has a fresh simulated cloud, so it starts from a fresh state file too.
    for suffix in ["", "-wal", "-shm"] {
        let mut path = opts.state_path.clone().into_os_string();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }
    let api_key = format!("demo-{}", uuid::Uuid::new_v4().simple());
    let sim = SimHandle::start(SimOptions {
        listen: opts.sim_listen,
        api_key: api_key.clone(),
        location: "jkt01".into(),
        billing_account_id: 1200211740,
        seed_name: "calculate-service".into(),
        boot_delay: Duration::from_secs(3),
        start_delay: None,
        clone_delay: Duration::ZERO,
        addresses: opts.addresses,
        service_port: 3000,
        exporter_port: 9100,
        // The workload costs ~5 ms of CPU per request: at 0.2 cores one VM saturates at a few
        // dozen requests per second, and its node_exporter then shows ~100 % CPU.
        cpu_budget: Some(0.2),
        workload_program: opts.workload_program,
        faults: Faults::default(),
    })
    .await
    .context("cannot start the built-in IDCloudHost simulator")?;

    let text = DEMO_CONFIG
        .replace("{listen}", &opts.listen.to_string())
        .replace("{state_path}", &opts.state_path.display().to_string())
        .replace("{api_url}", &sim.url())
        .replace("{seed}", &sim.seed_uuid());
    let config = Config::parse(&text).context("the built-in demo configuration is invalid")?;
    let secrets = Secrets {
        api_key: Some(Secret::new(api_key)),
        ..Secrets::default()
    };
    let app = match Application::build(config, secrets).await {
        Ok(app) => app,
        Err(e) => {
            sim.shutdown().await;
            return Err(e);
        }
    };
    let url = format!("http://{}", app.addr());
    println!(
        "idch-autoscaler: embedded default (simulated IDCloudHost; no account needed)\n\
         \n  service:      {url}   (GET /traefik, /prometheus/targets, /v1/pools, /metrics)\n\
         \x20 simulator:    {sim_url}   (GET /_sim/state)\n\
         \x20 seed VM:      {seed_ip}:3000   (POST /calculate {{\"number\": 5}})\n\
         \n  Put Traefik in front:    traefik --configFile=traefik/traefik.yml   then  curl -X POST -d '{{\"number\": 5}}' http://127.0.0.1:8000/calculate\n\
         \x20 Put Prometheus in front: prometheus --config.file=prometheus/prometheus.yml --storage.tsdb.path=/tmp/idch-prom --web.listen-address=127.0.0.1:9090\n\
         \n  Ctrl-C stops everything.",
        sim_url = sim.url(),
        seed_ip = sim.seed_ip(),
    );
    let result = app.run_until(crate::shutdown::signal()).await;
    sim.shutdown().await;
    result
}
