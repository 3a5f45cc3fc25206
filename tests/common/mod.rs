//! The one harness of the black-box tests: fresh loopback ranges, a simulator, the service
//! against it (`TestApp`, in the manner of zero-to-production's `spawn_app`), the real peers.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::ops::Deref;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idch_autoscaler::config::{Config, Secret, Secrets};
use idch_autoscaler::idch::CloudClient;
use idch_autoscaler::sim::{Faults, Ipv4Range, SimHandle, SimOptions};
use idch_autoscaler::startup::{Application, RunOptions, Running};

pub const API_KEY: &str = "test-api-key";
pub const POOL: &str = "calculate";

pub fn workload_program() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_idch-autoscaler"))
}

// ---- loopback ranges ---------------------------------------------------------------------------

/// Where a [`Subnet`] is claimed: a listener on `127.0.k.1` at this port (VMs start at `.10`).
pub const CLAIM_PORT: u16 = 31_999;
static NEXT_SUBNET: AtomicU32 = AtomicU32::new(0);

/// `127.0.k.0/24` for one test alone. `k` (1..=254) comes from an atomic counter that starts at an
/// offset derived from the process id, and is claimed by binding `127.0.k.1:31999`: a range held by
/// another test of this process or of another test binary running at the same time is skipped, and
/// so is one whose first VM address is taken by something that does not claim (a test of an older
/// checkout with a fixed octet). `127.0.0.x` is never handed out: the embedded default and the
/// listeners on 127.0.0.1 live there. Released when dropped.
pub struct Subnet {
    octet: u8,
    _claim: TcpListener,
}

impl Subnet {
    pub fn claim() -> Subnet {
        let offset = std::process::id().wrapping_mul(37);
        for _ in 0..2 * 254 {
            let i = NEXT_SUBNET.fetch_add(1, Ordering::Relaxed);
            let octet = 1 + (offset.wrapping_add(i) % 254) as u8;
            let Ok(claim) = TcpListener::bind((Ipv4Addr::new(127, 0, octet, 1), CLAIM_PORT)) else {
                continue;
            };
            // Someone that does not claim on the first VM address?
            let first = Ipv4Addr::new(127, 0, octet, 10);
            if TcpListener::bind((first, 3000)).is_err()
                || TcpListener::bind((first, 9100)).is_err()
            {
                continue;
            }
            return Subnet {
                octet,
                _claim: claim,
            };
        }
        panic!("no free 127.0.k.0/24 left for a test");
    }

    pub fn octet(&self) -> u8 {
        self.octet
    }

    /// `127.0.k.{host}`.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.octet, host)
    }

    /// `127.0.k.{first}-127.0.k.{last}`.
    pub fn range(&self, first: u8, last: u8) -> Ipv4Range {
        Ipv4Range::new(self.ip(first), self.ip(last)).unwrap()
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---- waiting -------------------------------------------------------------------------------------

/// Polls `check` every 50 ms until it returns `Some`, or panics after `limit` saying `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Tests that load the CPU or measure it (closed-loop load, CPU budgets) hold this, so that no two
/// of them share this binary's CPUs at once.
pub async fn cpu_heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

// ---- the simulator -------------------------------------------------------------------------------

/// The simulator's options for `subnet`: seed `calculate-service` and clones on
/// `127.0.k.10-60`, app on :3000, node_exporter on :9100, the key [`API_KEY`], no CPU budget.
pub fn sim_options(subnet: &Subnet, boot_delay: Duration) -> SimOptions {
    SimOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        api_key: API_KEY.into(),
        location: "jkt01".into(),
        billing_account_id: 1_200_211_740,
        seed_name: "calculate-service".into(),
        boot_delay,
        start_delay: None,
        clone_delay: Duration::ZERO,
        addresses: subnet.range(10, 60),
        service_port: 3000,
        exporter_port: 9100,
        cpu_budget: None,
        workload_program: workload_program(),
        faults: Faults::default(),
    }
}

/// A simulator on its own [`Subnet`], which it keeps until it is shut down or dropped.
/// Dereferences to the [`SimHandle`].
pub struct TestSim {
    handle: SimHandle,
    pub subnet: Subnet,
}

impl TestSim {
    pub async fn start(options: impl FnOnce(&Subnet) -> SimOptions) -> TestSim {
        let subnet = Subnet::claim();
        let handle = SimHandle::start(options(&subnet))
            .await
            .expect("simulator starts");
        TestSim { handle, subnet }
    }

    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }
}

impl Deref for TestSim {
    type Target = SimHandle;
    fn deref(&self) -> &SimHandle {
        &self.handle
    }
}

/// A simulator with [`sim_options`] on a fresh range.
pub async fn start_sim(boot_delay: Duration) -> TestSim {
    TestSim::start(|subnet| sim_options(subnet, boot_delay)).await
}

// ---- the service ---------------------------------------------------------------------------------

/// A configuration for one pool `calculate` against `sim`; `extra_pool` lines are appended to the
/// pool table and `extra_top` to the top level.
pub fn config_for(sim: &SimHandle, extra_top: &str, extra_pool: &str) -> Config {
    config_with_state(sim, &fresh_state_path(), extra_top, extra_pool)
}

/// A state file of its own in the temporary directory.
pub fn fresh_state_path() -> PathBuf {
    std::env::temp_dir().join(format!("idch-test-{}.db", uuid::Uuid::new_v4().simple()))
}

/// Like [`config_for`], with the state file given (to restart a service on the same state).
pub fn config_with_state(
    sim: &SimHandle,
    state: &std::path::Path,
    extra_top: &str,
    extra_pool: &str,
) -> Config {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
state_path = "{state}"
reconcile_interval = "300ms"
{extra_top}

[idcloudhost]
api_url = "{url}"
location = "jkt01"
api_key_env = "UNUSED_IN_TESTS"
timeout = "2s"
max_attempts = 2

[traefik]
poll_interval = "1s"

[[pool]]
name = "calculate"
seed_vm = "{seed}"
clone_prefix = "calculate-service-clone-"
service_port = 3000
exporter_port = 9100
drain_period = "3s"
health = {{ path = "/healthz", interval = "200ms", timeout = "150ms", healthy_threshold = 2, unhealthy_threshold = 2 }}
router = {{ rule = "Path(`/calculate`)", entry_points = ["web"] }}
{extra_pool}
"#,
        url = sim.url(),
        seed = sim.seed_uuid(),
        state = state.display(),
    );
    Config::parse(&text).expect("test configuration is valid")
}

pub fn secrets(read_token: Option<&str>) -> Secrets {
    Secrets {
        api_key: Some(Secret::new(API_KEY)),
        read_token: read_token.map(Secret::new),
        ..Secrets::default()
    }
}

pub async fn start_service(config: Config, secrets: Secrets) -> Running {
    start_service_with(config, secrets, RunOptions::default()).await
}

/// [`start_service`] with `run`'s options (`--dry-run`).
pub async fn start_service_with(config: Config, secrets: Secrets, options: RunOptions) -> Running {
    Application::build_with(config, secrets, options)
        .await
        .expect("service builds")
        .spawn()
}

pub fn client_for(sim: &SimHandle) -> CloudClient {
    let config = config_for(sim, "", "");
    CloudClient::new(&config.cloud, Secret::new(API_KEY)).unwrap()
}

type ConfigTweak = Arc<dyn Fn(&mut Config) + Send + Sync>;
type SimTweak = Box<dyn FnOnce(&mut SimOptions)>;

/// How a [`TestApp`] starts; [`TestApp::builder`].
pub struct TestAppBuilder {
    boot_delay: Duration,
    sim_tweak: Option<SimTweak>,
    faults: Faults,
    extra_top: String,
    extra_pool: String,
    config_tweak: Option<ConfigTweak>,
    secrets: Secrets,
    read_token: Option<String>,
    synced: bool,
    options: RunOptions,
}

impl TestAppBuilder {
    /// Runs the service as `run --dry-run` (also after [`TestApp::start_service`]).
    pub fn dry_run(mut self) -> Self {
        self.options.dry_run = true;
        self
    }

    /// The simulator's boot delay (100 ms unless set).
    pub fn boot_delay(mut self, delay: Duration) -> Self {
        self.boot_delay = delay;
        self
    }

    /// Changes the simulator's options (a CPU budget, ...) after [`sim_options`].
    pub fn sim(mut self, tweak: impl FnOnce(&mut SimOptions) + 'static) -> Self {
        self.sim_tweak = Some(Box::new(tweak));
        self
    }

    /// Faults set on the simulator before the service starts.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Lines appended to the top level of the configuration.
    pub fn top(mut self, lines: &str) -> Self {
        self.extra_top = lines.into();
        self
    }

    /// Lines appended to the pool table.
    pub fn pool(mut self, lines: &str) -> Self {
        self.extra_pool = lines.into();
        self
    }

    /// Changes the parsed configuration (what the TOML cannot say, e.g. a zero drain); applied
    /// again on every [`TestApp::start_service`].
    pub fn config(mut self, tweak: impl Fn(&mut Config) + Send + Sync + 'static) -> Self {
        self.config_tweak = Some(Arc::new(tweak));
        self
    }

    /// Protects the read endpoints with this token; [`TestApp`]'s helpers send it.
    pub fn read_token(mut self, token: &str) -> Self {
        self.read_token = Some(token.into());
        self
    }

    /// Changes the secrets (webhook token, basic, HMAC) after [`secrets`].
    pub fn secrets(mut self, tweak: impl FnOnce(&mut Secrets)) -> Self {
        tweak(&mut self.secrets);
        self
    }

    /// Returns as soon as the service listens, before its first reconcile.
    pub fn unsynced(mut self) -> Self {
        self.synced = false;
        self
    }

    pub async fn spawn(self) -> TestApp {
        let boot_delay = self.boot_delay;
        let sim_tweak = self.sim_tweak;
        let sim = TestSim::start(move |subnet| {
            let mut options = sim_options(subnet, boot_delay);
            if let Some(tweak) = sim_tweak {
                tweak(&mut options);
            }
            options
        })
        .await;
        sim.set_faults(self.faults);
        let mut secrets = self.secrets;
        secrets.read_token = self.read_token.as_deref().map(Secret::new);
        let mut app = TestApp {
            service: None,
            url: String::new(),
            http: reqwest::Client::new(),
            token: self.read_token,
            state: fresh_state_path(),
            extra_top: self.extra_top,
            extra_pool: self.extra_pool,
            config_tweak: self.config_tweak,
            secrets,
            options: self.options,
            sim,
        };
        app.start_service().await;
        if self.synced {
            app.wait_synced().await;
        }
        app
    }
}

/// The simulator and the service against it, on a fresh loopback range and a fresh state file,
/// with a client and the pool's URLs. [`TestApp::spawn`] is the common case: boot delay 100 ms,
/// no auth, synced.
pub struct TestApp {
    service: Option<Running>,
    /// The service's base URL (`http://127.0.0.1:port`), changed by [`TestApp::start_service`].
    pub url: String,
    pub http: reqwest::Client,
    /// The read token, if any: sent by [`TestApp::pool_status`] and the like.
    pub token: Option<String>,
    /// The state file, kept across [`TestApp::stop_service`] and [`TestApp::start_service`].
    pub state: PathBuf,
    extra_top: String,
    extra_pool: String,
    config_tweak: Option<ConfigTweak>,
    secrets: Secrets,
    options: RunOptions,
    pub sim: TestSim,
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            boot_delay: Duration::from_millis(100),
            sim_tweak: None,
            faults: Faults::default(),
            extra_top: String::new(),
            extra_pool: String::new(),
            config_tweak: None,
            secrets: secrets(None),
            read_token: None,
            synced: true,
            options: RunOptions::default(),
        }
    }

    /// Simulator and service, defaults, synced.
    pub async fn spawn() -> TestApp {
        Self::builder().spawn().await
    }

    /// The configuration the service runs with (on [`TestApp::state`]).
    pub fn config(&self) -> Config {
        let mut config =
            config_with_state(&self.sim, &self.state, &self.extra_top, &self.extra_pool);
        if let Some(tweak) = &self.config_tweak {
            tweak(&mut config);
        }
        config
    }

    /// The running service. Panics between [`TestApp::stop_service`] and [`TestApp::start_service`].
    pub fn service(&self) -> &Running {
        self.service.as_ref().expect("the service is running")
    }

    /// Whether the next [`TestApp::start_service`] runs as `run --dry-run`.
    pub fn set_dry_run(&mut self, dry_run: bool) {
        self.options.dry_run = dry_run;
    }

    /// Starts the service (again) on the same state file and configuration.
    pub async fn start_service(&mut self) {
        assert!(self.service.is_none(), "the service is already running");
        let service = start_service_with(self.config(), self.secrets.clone(), self.options).await;
        self.url = service.url();
        self.service = Some(service);
    }

    /// Stops the service cleanly; the simulator stays.
    pub async fn stop_service(&mut self) {
        let service = self.service.take().expect("the service is running");
        service.stop().await.expect("the service stops cleanly");
    }

    /// Stops the service (if running) and the simulator.
    pub async fn stop(mut self) {
        if self.service.is_some() {
            self.stop_service().await;
        }
        self.sim.shutdown().await;
    }

    /// `{url}{path}`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// `{url}/v1/pools/calculate{rest}`.
    pub fn pool_url(&self, rest: &str) -> String {
        format!("{}{rest}", pool_url(&self.url))
    }

    pub async fn wait_synced(&self) {
        wait_synced(&self.http, &self.url, self.token.as_deref()).await;
    }

    pub async fn pool_status(&self) -> serde_json::Value {
        pool_status(&self.http, &self.url, self.token.as_deref()).await
    }

    pub async fn set_desired(&self, size: u32) -> serde_json::Value {
        set_desired(&self.http, &self.url, size, self.token.as_deref()).await
    }

    pub async fn activities(&self) -> Vec<(String, String)> {
        activities(&self.http, &self.url).await
    }

    /// `GET /v1/pools/calculate/plan` (status, body).
    pub async fn plan(&self) -> (u16, serde_json::Value) {
        let mut req = self.http.get(self.pool_url("/plan"));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    /// A cloud client for the simulator.
    pub fn cloud(&self) -> CloudClient {
        client_for(&self.sim)
    }
}

/// `{service}/v1/pools/calculate`.
pub fn pool_url(service: &str) -> String {
    format!("{service}/v1/pools/{POOL}")
}

// ---- the pool over HTTP ----------------------------------------------------------------------

/// The pool's status as served by `GET /v1/pools/calculate`.
pub async fn pool_status(
    http: &reqwest::Client,
    service: &str,
    token: Option<&str>,
) -> serde_json::Value {
    let mut req = http.get(pool_url(service));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().json().await.unwrap()
}

pub fn ready_names(status: &serde_json::Value) -> Vec<String> {
    status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["state"] == "ready")
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

// ---- the real peers ---------------------------------------------------------------------------

/// The repository (where the shipped files are).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A real peer binary: from the project's `.venv-peers/bin`, else from PATH.
pub fn peer_bin(name: &str) -> PathBuf {
    let venv = root().join(".venv-peers/bin").join(name);
    if venv.exists() {
        return venv;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("{name} is not installed: run scripts/install-peers.sh (the test command does)");
}

/// A child process that is killed and reaped when dropped.
pub struct Peer {
    pub name: &'static str,
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Peer {
    pub fn spawn(
        name: &'static str,
        bin: PathBuf,
        args: &[String],
        dir: tempfile::TempDir,
    ) -> Peer {
        let log = std::fs::File::create(dir.path().join("peer.log")).unwrap();
        let child = Command::new(&bin)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Peer { name, child, dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("peer.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.log());
        }
    }
}

/// The real k6 running the shipped `k6/load.js` against `http://{web}/calculate` with `env`
/// (`NAME=value` pairs, see the script's header), writing its JSON summary to `summary` and
/// working in `dir`. Quiet, no usage report, its REST API on a free loopback port; killed if
/// dropped. The profile's durations bound it: it stops by itself.
pub fn k6_load(
    web: SocketAddr,
    env: &[&str],
    summary: &std::path::Path,
    dir: &std::path::Path,
) -> tokio::process::Command {
    let mut k6 = tokio::process::Command::new(peer_bin("k6"));
    k6.args([
        "run",
        "--no-usage-report",
        "--quiet",
        "--address",
        "127.0.0.1:0",
    ])
    .args(["-e", &format!("TARGET_URL=http://{web}/calculate")]);
    for e in env {
        k6.args(["-e", e]);
    }
    k6.args(["-e", &format!("SUMMARY_FILE={}", summary.display())])
        .arg(root().join("k6/load.js"))
        .current_dir(dir)
        .kill_on_drop(true);
    k6
}

/// Starts the real Traefik with the HTTP provider pointed at `provider_url`.
/// Returns the peer, the `web` entry point address and the `traefik` entry point address.
pub async fn start_traefik(
    provider_url: &str,
    read_token: Option<&str>,
) -> (Peer, SocketAddr, SocketAddr) {
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let headers = match read_token {
        Some(t) => format!("    headers:\n      Authorization: \"Bearer {t}\"\n"),
        None => String::new(),
    };
    let yaml = format!(
        "global:\n  checkNewVersion: false\n  sendAnonymousUsage: false\n\
         log:\n  level: INFO\n  noColor: true\n\
         entryPoints:\n  web:\n    address: \"{web}\"\n  traefik:\n    address: \"{api}\"\n\
         providers:\n  providersThrottleDuration: 200ms\n  http:\n    endpoint: \"{provider_url}\"\n    pollInterval: 1s\n    pollTimeout: 2s\n{headers}\
         api:\n  insecure: true\nping: {{}}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("traefik.yml");
    std::fs::write(&file, yaml).unwrap();
    let peer = Peer::spawn(
        "traefik",
        peer_bin("traefik"),
        &[format!("--configFile={}", file.display())],
        dir,
    );
    wait_http_ok(
        format!("http://{api}/ping"),
        Duration::from_secs(20),
        "traefik /ping",
    )
    .await;
    (peer, web, api)
}

/// Starts the real Prometheus on a free port of 127.0.0.1 with `config` as `prometheus.yml` in
/// `dir` (where its relative paths, e.g. rule files, point) and `extra_args`; returns the peer and
/// its port once `/-/ready` answers.
pub async fn start_prometheus(
    dir: tempfile::TempDir,
    config: &str,
    extra_args: &[&str],
) -> (Peer, u16) {
    let port = free_port();
    let file = dir.path().join("prometheus.yml");
    std::fs::write(&file, config).unwrap();
    let mut args = vec![
        format!("--config.file={}", file.display()),
        format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        format!("--web.external-url=http://127.0.0.1:{port}/"),
    ];
    args.extend(extra_args.iter().map(|a| a.to_string()));
    let peer = Peer::spawn("prometheus", peer_bin("prometheus"), &args, dir);
    wait_http_ok(
        format!("http://127.0.0.1:{port}/-/ready"),
        Duration::from_secs(30),
        "prometheus ready",
    )
    .await;
    (peer, port)
}

/// Waits until `GET url` answers 2xx, or panics after `limit` saying `what`.
pub async fn wait_http_ok(url: String, limit: Duration, what: &str) {
    let http = reqwest::Client::new();
    eventually(limit, what, || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http.get(url).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
}

/// `GET {service}/metrics` as text.
pub async fn metrics_text(http: &reqwest::Client, service: &str) -> String {
    get_text(http, &format!("{service}/metrics")).await
}

/// `GET url`'s body as text (whatever the status).
pub async fn get_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// Sends one `POST /calculate` through `web`; returns (status, X-Served-By).
pub async fn calculate(http: &reqwest::Client, web: SocketAddr) -> Result<(u16, String), String> {
    let resp = http
        .post(format!("http://{web}/calculate"))
        .json(&serde_json::json!({"number": 1}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let served = resp
        .headers()
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Ok((resp.status().as_u16(), served))
}

/// `PUT /v1/pools/calculate/desired` (no auth configured in tests unless `token`).
pub async fn set_desired(
    http: &reqwest::Client,
    service: &str,
    size: u32,
    token: Option<&str>,
) -> serde_json::Value {
    let mut req = http
        .put(format!("{}/desired", pool_url(service)))
        .json(&serde_json::json!({ "size": size }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "PUT desired {size}");
    resp.json().await.unwrap()
}

/// Waits until `/v1/pools/calculate` is synced (webhooks and PUT answer 503 before).
pub async fn wait_synced(http: &reqwest::Client, service: &str, token: Option<&str>) {
    eventually(Duration::from_secs(15), "pool synced", || async move {
        (pool_status(http, service, token).await["synced"] == true).then_some(())
    })
    .await;
}

/// Waits until exactly `n` backends are ready, the pool's size is `n` and nothing is being
/// provisioned; returns that status.
pub async fn wait_ready(
    http: &reqwest::Client,
    url: &str,
    n: usize,
    limit: Duration,
) -> serde_json::Value {
    eventually(
        limit,
        &format!("{n} ready and nothing else"),
        || async move {
            let s = pool_status(http, url, None).await;
            (ready_names(&s).len() == n
                && s["size"] == n as u64
                && s["provisioning"].as_array().is_some_and(|p| p.is_empty()))
            .then_some(s)
        },
    )
    .await
}

/// The pool's activity history as served, newest first.
pub async fn activity_log(http: &reqwest::Client, service: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = http
        .get(format!("{}/activities?limit=1000", pool_url(service)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["activities"].as_array().unwrap().clone()
}

/// (action, outcome) of every activity, newest first.
pub async fn activities(http: &reqwest::Client, service: &str) -> Vec<(String, String)> {
    activity_log(http, service)
        .await
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_string(),
                a["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
