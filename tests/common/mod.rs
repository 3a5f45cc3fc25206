//! Helpers shared by the black-box tests: a simulator, the service against it, the real peers.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use idch_autoscaler::config::{Config, Secret, Secrets};
use idch_autoscaler::idch::CloudClient;
use idch_autoscaler::sim::{Faults, Ipv4Range, SimHandle, SimOptions};
use idch_autoscaler::startup::{Application, Running};

pub const API_KEY: &str = "test-api-key";

pub fn workload_program() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_idch-autoscaler"))
}

/// A simulator with its own address range `127.0.{octet}.10-60`; each test passes its own octet.
pub async fn start_sim(octet: u8, boot_delay: Duration) -> SimHandle {
    SimHandle::start(SimOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        api_key: API_KEY.into(),
        location: "jkt01".into(),
        billing_account_id: 1200211740,
        seed_name: "calculate-service".into(),
        boot_delay,
        addresses: Ipv4Range::new(
            Ipv4Addr::new(127, 0, octet, 10),
            Ipv4Addr::new(127, 0, octet, 60),
        )
        .unwrap(),
        service_port: 3000,
        exporter_port: 9100,
        cpu_budget: None,
        workload_program: workload_program(),
        faults: Faults::default(),
    })
    .await
    .expect("simulator starts")
}

/// A configuration for one pool `calculate` against `sim`; `extra_pool` lines are appended to the
/// pool table and `extra_top` to the top level.
pub fn config_for(sim: &SimHandle, extra_top: &str, extra_pool: &str) -> Config {
    let state =
        std::env::temp_dir().join(format!("idch-test-{}.db", uuid::Uuid::new_v4().simple()));
    config_with_state(sim, &state, extra_top, extra_pool)
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
    Application::build(config, secrets)
        .await
        .expect("service builds")
        .spawn()
}

pub fn client_for(sim: &SimHandle) -> CloudClient {
    let config = config_for(sim, "", "");
    CloudClient::new(&config.cloud, Secret::new(API_KEY)).unwrap()
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `limit` saying `what`.
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pool's status as served by `GET /v1/pools/calculate`.
pub async fn pool_status(
    http: &reqwest::Client,
    service: &str,
    token: Option<&str>,
) -> serde_json::Value {
    let mut req = http.get(format!("{service}/v1/pools/calculate"));
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real peer binary: from the project's `.venv-peers/bin`, else from PATH.
pub fn peer_bin(name: &str) -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".venv-peers/bin")
        .join(name);
    if venv.exists() {
        return venv;
    }
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.exists() {
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
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(20), "traefik /ping", || {
        let http = http.clone();
        async move {
            let r = http.get(format!("http://{api}/ping")).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    (peer, web, api)
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
        .put(format!("{service}/v1/pools/calculate/desired"))
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

/// The pool's activity history as served, newest first.
pub async fn activity_log(http: &reqwest::Client, service: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = http
        .get(format!(
            "{service}/v1/pools/calculate/activities?limit=1000"
        ))
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
