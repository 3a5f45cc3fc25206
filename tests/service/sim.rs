//! Black-box tests of the built-in IDCloudHost API simulator, over HTTP with reqwest.
//!
//! Each test owns the address range 127.0.{k}.10-127.0.{k}.60 of its own `Subnet`, so the tests
//! run in parallel, each with its own simulator and workload processes.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idch_autoscaler::idch::wire;
use idch_autoscaler::sim::{Faults, Ipv4Range, SimArgs, SimHandle, SimOptions, SimState};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{cpu_heavy, eventually, sim_options, workload_program as program, Subnet};

const KEY: &str = "sim-test-key-7f3a9c";
const BOOT: Duration = Duration::from_millis(300);
const PORT: u16 = 3000;
const EXPORTER_PORT: u16 = 9100;

fn options(net: &Subnet) -> SimOptions {
    SimOptions {
        api_key: KEY.into(),
        ..sim_options(net, BOOT)
    }
}

/// A thin caller of the simulated API.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(sim: &SimHandle) -> Api {
        Api {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            base: format!("{}/v1/jkt01", sim.url()),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    async fn list(&self) -> Vec<Value> {
        let resp = self
            .http
            .get(self.url("user-resource/vm/list"))
            .header("apikey", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    async fn get(&self, uuid: &str) -> reqwest::Response {
        self.http
            .get(self.url("user-resource/vm"))
            .query(&[("uuid", uuid)])
            .header("apikey", KEY)
            .send()
            .await
            .unwrap()
    }

    async fn get_vm(&self, uuid: &str) -> Value {
        let resp = self.get(uuid).await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    /// Clone with form-encoded parameters.
    async fn clone_vm(&self, source: &str, name: &str) -> reqwest::Response {
        self.http
            .post(self.url("user-resource/vm/clone"))
            .header("apikey", KEY)
            .form(&[("uuid", source), ("name", name)])
            .send()
            .await
            .unwrap()
    }

    async fn clone_ok(&self, source: &str, name: &str) -> Value {
        let resp = self.clone_vm(source, name).await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    /// Delete with a form-encoded `uuid`.
    async fn delete(&self, uuid: &str) -> reqwest::Response {
        self.http
            .delete(self.url("user-resource/vm"))
            .header("apikey", KEY)
            .form(&[("uuid", uuid)])
            .send()
            .await
            .unwrap()
    }

    async fn post_uuid(&self, action: &str, uuid: &str) -> reqwest::Response {
        self.http
            .post(self.url(&format!("user-resource/vm/{action}")))
            .header("apikey", KEY)
            .form(&[("uuid", uuid)])
            .send()
            .await
            .unwrap()
    }

    async fn ips(&self, query: &[(&str, &str)]) -> Vec<Value> {
        let resp = self
            .http
            .get(self.url("network/ip_addresses"))
            .query(query)
            .header("apikey", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    async fn wait_running(&self, uuid: &str) -> Value {
        eventually(
            Duration::from_secs(10),
            "the VM reports running",
            || async {
                let vm = self.get_vm(uuid).await;
                (vm["status"] == "running").then_some(vm)
            },
        )
        .await
    }
}

/// Asserts the API's error answer: the status and `{"errors": {"Error": ...}}`; returns the message.
async fn assert_error(resp: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(resp.status(), status);
    let body: Value = resp.json().await.unwrap();
    let message = body["errors"]["Error"]
        .as_str()
        .unwrap_or_else(|| panic!("not the API's error body: {body}"))
        .to_string();
    assert_eq!(wire::error_message(&body.to_string()), message);
    message
}

/// Whether `POST /calculate {"number": 3}` on ip:PORT answers 200.
async fn calculate_answers(ip: Ipv4Addr) -> bool {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    match http
        .post(format!("http://{ip}:{PORT}/calculate"))
        .json(&json!({"number": 3}))
        .send()
        .await
    {
        Ok(resp) => resp.status() == StatusCode::OK,
        Err(_) => false,
    }
}

async fn wait_calculate(ip: Ipv4Addr) {
    eventually(
        Duration::from_secs(20),
        &format!("{ip}:{PORT} answers POST /calculate (needs `idch-autoscaler calculate`)"),
        || async { calculate_answers(ip).await.then_some(()) },
    )
    .await
}

async fn refused(ip: Ipv4Addr) -> bool {
    matches!(
        tokio::net::TcpStream::connect(SocketAddr::from((ip, PORT))).await,
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

async fn wait_refused(ip: Ipv4Addr) {
    eventually(
        Duration::from_secs(5),
        &format!("{ip}:{PORT} refuses connections"),
        || async { refused(ip).await.then_some(()) },
    )
    .await
}

/// Whether the VM's node_exporter answers `GET /metrics` with the text format.
async fn exporter_answers(ip: Ipv4Addr) -> bool {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    match http
        .get(format!("http://{ip}:{EXPORTER_PORT}/metrics"))
        .send()
        .await
    {
        Ok(resp) => {
            resp.status() == StatusCode::OK
                && resp
                    .text()
                    .await
                    .is_ok_and(|text| text.contains("node_cpu_seconds_total{cpu=\"0\""))
        }
        Err(_) => false,
    }
}

async fn wait_exporter(ip: Ipv4Addr) {
    eventually(
        Duration::from_secs(10),
        &format!("{ip}:{EXPORTER_PORT} serves /metrics"),
        || async { exporter_answers(ip).await.then_some(()) },
    )
    .await
}

async fn wait_exporter_refused(ip: Ipv4Addr) {
    eventually(
        Duration::from_secs(5),
        &format!("{ip}:{EXPORTER_PORT} refuses connections"),
        || async {
            matches!(
                tokio::net::TcpStream::connect(SocketAddr::from((ip, EXPORTER_PORT))).await,
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused
            )
            .then_some(())
        },
    )
    .await
}

fn ip_of(vm: &Value) -> Ipv4Addr {
    vm["private_ipv4"].as_str().unwrap().parse().unwrap()
}

const VM_FIELDS: &[&str] = &[
    "uuid",
    "name",
    "status",
    "private_ipv4",
    "created_at",
    "id",
    "hostname",
    "vcpu",
    "memory",
    "billing_account",
    "mac",
    "os_name",
    "os_version",
    "public_ipv6",
    "storage",
    "tags",
    "updated_at",
    "user_id",
    "username",
];

fn assert_vm_shape(vm: &Value) {
    for field in VM_FIELDS {
        assert!(vm.get(field).is_some(), "VM object lacks `{field}`: {vm}");
    }
    let created = vm["created_at"].as_str().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(created, "%Y-%m-%d %H:%M:%S").is_ok(),
        "created_at `{created}` is not YYYY-MM-DD HH:MM:SS"
    );
    assert!(vm["storage"].as_array().is_some_and(|s| !s.is_empty()));
    // The client's wire type reads it.
    serde_json::from_value::<wire::Vm>(vm.clone()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_runs_and_a_clone_boots_serves_and_is_deleted() {
    let net = Subnet::claim();
    let sim = SimHandle::start(options(&net)).await.unwrap();
    let api = Api::new(&sim);

    let vms = api.list().await;
    assert_eq!(vms.len(), 1);
    let seed = &vms[0];
    assert_vm_shape(seed);
    let parsed: wire::Vm = serde_json::from_value(seed.clone()).unwrap();
    assert!(parsed.is_running());
    assert_eq!(parsed.uuid, sim.seed_uuid());
    assert_eq!(parsed.name, "calculate-service");
    assert_eq!(
        parsed.private_ipv4.as_deref(),
        Some(net.ip(10).to_string().as_str())
    );
    assert_eq!(sim.seed_ip(), net.ip(10));
    wait_calculate(sim.seed_ip()).await;

    let cloned_at = Instant::now();
    let clone = api
        .clone_ok(&sim.seed_uuid(), "calculate-service-clone-1")
        .await;
    assert_vm_shape(&clone);
    let parsed: wire::Vm = serde_json::from_value(clone.clone()).unwrap();
    assert!(
        !parsed.is_running(),
        "a fresh clone must not be running: {clone}"
    );
    assert_eq!(parsed.private_ipv4, None);
    assert_eq!(parsed.name, "calculate-service-clone-1");
    let uuid = parsed.uuid;
    assert_ne!(uuid, sim.seed_uuid());
    assert_ne!(api.get_vm(&uuid).await["status"], "running");

    let booted = api.wait_running(&uuid).await;
    assert!(cloned_at.elapsed() >= BOOT - Duration::from_millis(50));
    let ip = ip_of(&booted);
    assert_eq!(ip, net.ip(11));
    wait_calculate(ip).await;
    let state = sim.state();
    let vm_state = state.vms.iter().find(|v| v.uuid == uuid).unwrap();
    assert!(vm_state.pid.is_some(), "{vm_state:?}");
    assert_eq!(vm_state.address, ip);
    assert_eq!(
        vm_state.exporter.as_deref(),
        Some(format!("{ip}:{EXPORTER_PORT}").as_str())
    );
    assert!(!vm_state.cpu_quota_enforced, "no budget, no quota");
    assert_eq!(state.exporter_port, EXPORTER_PORT);
    assert_eq!(state.cpu_budget, None);
    assert_eq!(state.cgroup, None);
    wait_exporter(ip).await;

    let resp = api.delete(&uuid).await;
    assert_eq!(resp.status(), StatusCode::OK);
    wait_refused(ip).await;
    wait_exporter_refused(ip).await;
    let vms = api.list().await;
    assert!(vms.iter().all(|vm| vm["uuid"] != uuid.as_str()));
    let message = assert_error(api.get(&uuid).await, StatusCode::NOT_FOUND).await;
    assert_eq!(message, format!("No such virtual machine exists. {uuid}"));
    let message = assert_error(api.delete(&uuid).await, StatusCode::NOT_FOUND).await;
    assert_eq!(message, format!("No such virtual machine exists. {uuid}"));

    // The seed still serves.
    assert!(calculate_answers(sim.seed_ip()).await);
    sim.shutdown().await;
}

#[tokio::test]
async fn parameters_work_as_form_body_and_as_query_string() {
    let net = Subnet::claim();
    let sim = SimHandle::start(options(&net)).await.unwrap();
    let api = Api::new(&sim);
    let seed = sim.seed_uuid();

    // Clone: query string, form body, and the location-less path.
    let resp = api
        .http
        .post(api.url("user-resource/vm/clone"))
        .query(&[("uuid", seed.as_str()), ("name", "by-query")])
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let by_query: Value = resp.json().await.unwrap();
    assert_eq!(by_query["name"], "by-query");
    let by_form = api.clone_ok(&seed, "by-form").await;
    assert_eq!(by_form["name"], "by-form");
    let resp = api
        .http
        .post(format!("{}/v1/user-resource/vm/clone", sim.url()))
        .form(&[("uuid", seed.as_str()), ("name", "no-slug")])
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let no_slug: Value = resp.json().await.unwrap();
    let resp = api
        .http
        .get(format!("{}/v1/user-resource/vm/list", sim.url()))
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Vec<Value>>().await.unwrap().len(), 4);

    // Delete: query string, form body, location-less path.
    let resp = api
        .http
        .delete(api.url("user-resource/vm"))
        .query(&[("uuid", by_query["uuid"].as_str().unwrap())])
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = api.delete(by_form["uuid"].as_str().unwrap()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = api
        .http
        .delete(format!("{}/v1/user-resource/vm", sim.url()))
        .form(&[("uuid", no_slug["uuid"].as_str().unwrap())])
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let vms = api.list().await;
    assert_eq!(vms.len(), 1);
    assert_eq!(vms[0]["uuid"], seed.as_str());

    // Missing parameters.
    let resp = api
        .http
        .post(api.url("user-resource/vm/clone"))
        .form(&[("uuid", seed.as_str())])
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    let message = assert_error(resp, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("name"), "{message}");
    let resp = api
        .http
        .delete(api.url("user-resource/vm"))
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    let message = assert_error(resp, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("uuid"), "{message}");
    assert_eq!(api.list().await.len(), 1);

    // An unknown location.
    let resp = api
        .http
        .get(format!("{}/v1/sgp01/user-resource/vm/list", sim.url()))
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn apikey_and_unknown_uuids_get_the_api_errors() {
    let net = Subnet::claim();
    let sim = SimHandle::start(options(&net)).await.unwrap();
    let api = Api::new(&sim);

    let resp = api
        .http
        .get(api.url("user-resource/vm/list"))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::UNAUTHORIZED).await;
    let resp = api
        .http
        .post(api.url("user-resource/vm/clone"))
        .header("apikey", "not-the-key")
        .form(&[("uuid", sim.seed_uuid().as_str()), ("name", "x")])
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::UNAUTHORIZED).await;
    let state = sim.state();
    assert_eq!(state.unauthorized, 2);
    assert_eq!(state.vms.len(), 1, "a refused clone must create nothing");
    assert!(state.calls.is_empty(), "{:?}", state.calls);

    let unknown = "aaaaaaaa-0000-bbbb-1111-cccccccccccc";
    let expected = format!("No such virtual machine exists. {unknown}");
    assert_eq!(
        assert_error(api.get(unknown).await, StatusCode::NOT_FOUND).await,
        expected
    );
    assert_eq!(
        assert_error(
            api.clone_vm(unknown, "clone-of-nothing").await,
            StatusCode::NOT_FOUND
        )
        .await,
        expected
    );
    assert_eq!(
        assert_error(api.delete(unknown).await, StatusCode::NOT_FOUND).await,
        expected
    );
    assert_eq!(
        assert_error(api.post_uuid("stop", unknown).await, StatusCode::NOT_FOUND).await,
        expected
    );
    assert_eq!(api.list().await.len(), 1);
    let calls = sim.state().calls;
    assert_eq!(calls.get("vm_get"), Some(&1));
    assert_eq!(calls.get("vm_clone"), Some(&1));
    assert_eq!(calls.get("vm_delete"), Some(&1));
    assert_eq!(calls.get("vm_list"), Some(&1));
    sim.shutdown().await;
}

#[tokio::test]
async fn floating_ips_are_listed_by_vm_and_deletable() {
    let net = Subnet::claim();
    let sim = SimHandle::start(options(&net)).await.unwrap();
    let api = Api::new(&sim);
    let seed = sim.seed_uuid();
    let a = api.clone_ok(&seed, "a").await["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let b = api.clone_ok(&seed, "b").await["uuid"]
        .as_str()
        .unwrap()
        .to_string();

    let of_a = api.ips(&[("vm_uuid", &a)]).await;
    assert_eq!(of_a.len(), 1);
    let ip = &of_a[0];
    for field in [
        "id",
        "address",
        "user_id",
        "billing_account_id",
        "type",
        "network_id",
        "name",
        "enabled",
        "created_at",
        "updated_at",
        "is_deleted",
        "is_virtual",
        "assigned_to",
        "assigned_to_resource_type",
        "assigned_to_private_ip",
    ] {
        assert!(ip.get(field).is_some(), "floating IP lacks `{field}`: {ip}");
    }
    let parsed: wire::FloatingIp = serde_json::from_value(ip.clone()).unwrap();
    assert_eq!(parsed.assigned_to.as_deref(), Some(a.as_str()));
    assert_eq!(parsed.kind.as_deref(), Some("public"));
    let address: Ipv4Addr = parsed.address.parse().unwrap();
    assert_eq!(address.octets()[..3], [203, 0, 113]);
    assert_eq!(ip["billing_account_id"], 1_200_211_740u64);

    // Filters: the seed has its own; all three belong to the billing account; another account has none.
    assert_eq!(api.ips(&[("vm_uuid", &seed)]).await.len(), 1);
    assert_eq!(api.ips(&[]).await.len(), 3);
    assert_eq!(
        api.ips(&[("billing_account_id", "1200211740")]).await.len(),
        3
    );
    assert_eq!(api.ips(&[("billing_account_id", "42")]).await.len(), 0);
    assert_eq!(
        api.ips(&[("billing_account_id", "1200211740"), ("vm_uuid", &b)])
            .await
            .len(),
        1
    );

    // Release A's address: 200 with an empty body; then it is gone.
    let resp = api
        .http
        .delete(api.url(&format!("network/ip_addresses/{}", parsed.address)))
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.unwrap().is_empty());
    assert!(api.ips(&[("vm_uuid", &a)]).await.is_empty());
    let resp = api
        .http
        .delete(api.url(&format!("network/ip_addresses/{}", parsed.address)))
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND).await;

    // Unassign B's address: it stays listed, assigned to nothing.
    let b_address = api.ips(&[("vm_uuid", &b)]).await[0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = api
        .http
        .post(api.url(&format!("network/ip_addresses/{b_address}/unassign")))
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let unassigned: Value = resp.json().await.unwrap();
    assert_eq!(unassigned["address"], b_address.as_str());
    assert!(unassigned["assigned_to"].is_null());
    assert!(api.ips(&[("vm_uuid", &b)]).await.is_empty());
    assert_eq!(api.ips(&[]).await.len(), 2);

    // Deleting a VM removes its floating IPs.
    let c = api.clone_ok(&seed, "c").await["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(api.ips(&[("vm_uuid", &c)]).await.len(), 1);
    assert_eq!(api.delete(&c).await.status(), StatusCode::OK);
    assert!(api.ips(&[("vm_uuid", &c)]).await.is_empty());
    assert_eq!(api.ips(&[]).await.len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_error_rate_latency_never_boots_and_state() {
    let net = Subnet::claim();
    let sim = SimHandle::start(options(&net)).await.unwrap();
    let api = Api::new(&sim);
    let state_url = format!("{}/_sim/state", sim.url());
    let faults_url = format!("{}/_sim/faults", sim.url());

    // error_rate 1.0 through the HTTP endpoint: every call answers 500, nothing changes.
    let resp = api
        .http
        .post(&faults_url)
        .json(&json!({"error_rate": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = api
        .http
        .get(api.url("user-resource/vm/list"))
        .header("apikey", KEY)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::INTERNAL_SERVER_ERROR).await;
    assert_error(
        api.clone_vm(&sim.seed_uuid(), "never").await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    let state = sim.state();
    assert_eq!(state.injected_errors, 2);
    assert_eq!(state.vms.len(), 1);
    assert_eq!(state.faults.error_rate, 1.0);

    // A bad faults body is refused and changes nothing.
    let resp = api
        .http
        .post(&faults_url)
        .json(&json!({"error_rate": 2.0}))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(sim.faults().error_rate, 1.0);

    // fail_next: exactly the next N calls fail, then the API answers again.
    sim.set_faults(Faults {
        fail_next: 2,
        ..Faults::default()
    });
    for _ in 0..2 {
        let resp = api
            .http
            .get(api.url("user-resource/vm/list"))
            .header("apikey", KEY)
            .send()
            .await
            .unwrap();
        assert_error(resp, StatusCode::INTERNAL_SERVER_ERROR).await;
    }
    assert_eq!(api.list().await.len(), 1);
    assert_eq!(sim.state().injected_errors, 4);
    assert_eq!(sim.faults().fail_next, 0);

    // Latency through the handle.
    sim.set_faults(Faults {
        latency: Duration::from_millis(400),
        ..Faults::default()
    });
    let started = Instant::now();
    api.list().await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );

    // A clone that never boots.
    sim.set_faults(Faults {
        clone_never_boots: true,
        ..Faults::default()
    });
    let stuck = api.clone_ok(&sim.seed_uuid(), "stuck").await;
    let uuid = stuck["uuid"].as_str().unwrap();
    tokio::time::sleep(BOOT * 4).await;
    let vm = api.get_vm(uuid).await;
    assert_ne!(vm["status"], "running");
    assert_eq!(vm["private_ipv4"], "");

    // The state over HTTP (no apikey) shows both VMs.
    let resp = api.http.get(&state_url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let state: Value = resp.json().await.unwrap();
    let vms = state["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 2);
    let stuck_state = vms.iter().find(|v| v["uuid"] == uuid).unwrap();
    assert_eq!(stuck_state["name"], "stuck");
    assert!(stuck_state["pid"].is_null());
    assert_eq!(stuck_state["address"], net.ip(11).to_string().as_str());
    let seed_state = vms.iter().find(|v| v["seed"] == true).unwrap();
    assert_eq!(seed_state["status"], "running");
    assert_eq!(seed_state["private_ipv4"], net.ip(10).to_string().as_str());
    assert_eq!(state["faults"]["clone_never_boots"], true);
    assert!(state["calls"]["vm_clone"].as_u64().unwrap() >= 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_hanging_clone_times_out_the_client_but_creates_the_vm() {
    let net = Subnet::claim();
    let sim = SimHandle::start(options(&net)).await.unwrap();
    let api = Api::new(&sim);
    sim.set_faults(Faults {
        clone_hang: Duration::from_secs(5),
        ..Faults::default()
    });
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let err = impatient
        .post(api.url("user-resource/vm/clone"))
        .header("apikey", KEY)
        .form(&[("uuid", sim.seed_uuid().as_str()), ("name", "slow-clone")])
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let vms = api.list().await;
    assert!(vms.iter().any(|vm| vm["name"] == "slow-clone"), "{vms:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn taken_addresses_are_skipped_and_an_exhausted_range_fails_the_clone() {
    let net = Subnet::claim();
    // .10 is busy on the service port: the seed gets .11, a clone .12, and then none is left.
    let busy = std::net::TcpListener::bind((net.ip(10), PORT)).unwrap();
    let mut opts = options(&net);
    opts.addresses = net.range(10, 12);
    let sim = SimHandle::start(opts).await.unwrap();
    let api = Api::new(&sim);
    assert_eq!(sim.seed_ip(), net.ip(11));

    let clone = api.clone_ok(&sim.seed_uuid(), "one").await;
    let uuid = clone["uuid"].as_str().unwrap().to_string();
    let booted = api.wait_running(&uuid).await;
    assert_eq!(ip_of(&booted), net.ip(12));

    let resp = api.clone_vm(&sim.seed_uuid(), "two").await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
    let body: Value = resp.json().await.unwrap();
    assert!(body["errors"]["Error"].is_string(), "{body}");
    assert_eq!(api.list().await.len(), 2);

    // Deleting frees the address for the next clone.
    assert_eq!(api.delete(&uuid).await.status(), StatusCode::OK);
    let again = api.clone_ok(&sim.seed_uuid(), "three").await;
    let booted = api.wait_running(again["uuid"].as_str().unwrap()).await;
    assert_eq!(ip_of(&booted), net.ip(12));
    drop(busy);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_start_kill_and_restart_the_workload() {
    let net = Subnet::claim();
    let sim = SimHandle::start(options(&net)).await.unwrap();
    let api = Api::new(&sim);
    let seed = sim.seed_uuid();
    wait_calculate(sim.seed_ip()).await;

    let resp = api.post_uuid("stop", &seed).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let stopped: Value = resp.json().await.unwrap();
    assert_eq!(stopped["status"], "stopped");
    wait_refused(sim.seed_ip()).await;
    assert!(sim.state().vms[0].pid.is_none());

    let resp = api.post_uuid("start", &seed).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let starting: Value = resp.json().await.unwrap();
    assert_ne!(starting["status"], "running");
    api.wait_running(&seed).await;
    wait_calculate(sim.seed_ip()).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_every_workload() {
    let net = Subnet::claim();
    let sim = SimHandle::start(options(&net)).await.unwrap();
    let api = Api::new(&sim);
    let mut ips = vec![sim.seed_ip()];
    for name in ["c1", "c2"] {
        let clone = api.clone_ok(&sim.seed_uuid(), name).await;
        let booted = api.wait_running(clone["uuid"].as_str().unwrap()).await;
        ips.push(ip_of(&booted));
    }
    for ip in &ips {
        wait_calculate(*ip).await;
    }
    let pids: Vec<u32> = sim.state().vms.iter().filter_map(|vm| vm.pid).collect();
    assert_eq!(pids.len(), 3);

    for ip in &ips {
        wait_exporter(*ip).await;
    }
    sim.shutdown().await;
    for ip in &ips {
        assert!(refused(*ip).await, "{ip}:{PORT} still accepts connections");
        wait_exporter_refused(*ip).await;
    }
    for pid in pids {
        // Killed and reaped: no such process (or the pid already belongs to another program).
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains("calculate"),
            "workload {pid} survived"
        );
    }
}

#[tokio::test]
async fn sim_subcommand_serves_until_sigterm_and_stops_its_vms() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let net = Subnet::claim();

    let mut child = tokio::process::Command::new(program())
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--addresses",
            format!("{}-{}", net.ip(10), net.ip(60)).as_str(),
            "--boot-delay",
            "200ms",
            "--api-key-env",
            "IDCH_SIM_TEST_UNSET_KEY_VARIABLE",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut key) = (None, None);
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening on ").nth(1) {
                url = Some(rest.trim().to_string());
            }
            if let Some(rest) = line.split("generated key: ").nth(1) {
                key = Some(rest.trim().to_string());
            }
            if line.contains("seed VM") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "`idch-autoscaler sim` printed no seed line");
    let url = url.expect("no URL printed");
    let key = key.expect("no generated key printed");

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = http
        .get(format!("{url}/v1/jkt01/user-resource/vm/list"))
        .header("apikey", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let vms: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(vms.len(), 1);
    let seed_ip = ip_of(&vms[0]);
    assert_eq!(seed_ip, net.ip(10));
    wait_calculate(seed_ip).await;
    wait_exporter(seed_ip).await;

    let pid = child.id().unwrap() as libc::pid_t;
    // SAFETY: signalling our own child by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the simulator did not exit on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    wait_refused(seed_ip).await;
    wait_exporter_refused(seed_ip).await;
}

#[test]
fn sim_args_become_options() {
    let args = SimArgs {
        api_key_env: "IDCH_SIM_TEST_SURELY_UNSET_VARIABLE".into(),
        ..SimArgs::default()
    };
    let opts = args.into_options(program()).unwrap();
    assert_eq!(opts.api_key.len(), 32, "a generated key");
    assert_eq!(opts.location, "jkt01");
    assert_eq!(opts.billing_account_id, 1_200_211_740);
    assert_eq!(opts.boot_delay, Duration::from_secs(3));
    assert_eq!(opts.addresses.to_string(), "127.0.0.10-127.0.0.250");
    assert_eq!(opts.service_port, 3000);
    assert_eq!(opts.faults, Faults::default());
    assert!(
        !format!("{opts:?}").contains(&opts.api_key),
        "Debug must not show the key"
    );

    // PATH is always set: the key is read from the variable.
    let args = SimArgs {
        api_key_env: "PATH".into(),
        ..SimArgs::default()
    };
    let opts = args.into_options(program()).unwrap();
    assert_eq!(opts.api_key, std::env::var("PATH").unwrap());

    let late = SimArgs {
        api_key_env: "IDCH_SIM_TEST_SURELY_UNSET_VARIABLE".into(),
        clone_late: Duration::from_secs(4),
        latency: Duration::from_millis(20),
        ..SimArgs::default()
    };
    let faults = late.into_options(program()).unwrap().faults;
    assert_eq!(faults.clone_late, Duration::from_secs(4));
    assert_eq!(faults.latency, Duration::from_millis(20));

    let bad = SimArgs {
        location: "bad/slug".into(),
        ..SimArgs::default()
    };
    assert!(bad.into_options(program()).is_err());
    assert!("10.0.0.1-10.0.0.9".parse::<Ipv4Range>().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_kills_the_workloads_too() {
    let net = Subnet::claim();
    let sim = SimHandle::start(options(&net)).await.unwrap();
    let ip = sim.seed_ip();
    wait_calculate(ip).await;
    wait_exporter(ip).await;
    drop(sim);
    wait_refused(ip).await;
    wait_exporter_refused(ip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_simulator_leaves_no_orphan_workload() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let net = Subnet::claim();

    let mut child = tokio::process::Command::new(program())
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--addresses",
            format!("{}-{}", net.ip(10), net.ip(60)).as_str(),
            "--boot-delay",
            "100ms",
            "--api-key-env",
            "IDCH_SIM_TEST_UNSET_KEY_VARIABLE",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut key) = (None, None);
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening on ").nth(1) {
                url = Some(rest.trim().to_string());
            }
            if let Some(rest) = line.split("generated key: ").nth(1) {
                key = Some(rest.trim().to_string());
            }
            if line.contains("seed VM") {
                break;
            }
        }
    })
    .await
    .expect("`idch-autoscaler sim` printed no seed line");
    let (url, key) = (url.unwrap(), key.unwrap());
    let seed_ip = net.ip(10);

    // A clone too: its workload is spawned from a runtime worker thread, the seed's from the main one.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let list = format!("{url}/v1/jkt01/user-resource/vm/list");
    let vms: Vec<Value> = http
        .get(&list)
        .header("apikey", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = http
        .post(format!("{url}/v1/jkt01/user-resource/vm/clone"))
        .header("apikey", &key)
        .form(&[
            ("uuid", vms[0]["uuid"].as_str().unwrap()),
            ("name", "orphan-candidate"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let clone_ip = net.ip(11);
    wait_calculate(seed_ip).await;
    wait_calculate(clone_ip).await;
    wait_exporter(clone_ip).await;

    child.start_kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().await.unwrap();
    wait_refused(seed_ip).await;
    wait_refused(clone_ip).await;
    wait_exporter_refused(seed_ip).await;
    wait_exporter_refused(clone_ip).await;
}

#[tokio::test]
async fn a_workload_that_exits_or_cannot_start_is_noticed() {
    let net = Subnet::claim();
    // `false` ignores its arguments and exits 1 at once.
    let mut opts = options(&net);
    opts.workload_program = PathBuf::from("false");
    let sim = SimHandle::start(opts).await.unwrap();
    let vm = eventually(Duration::from_secs(5), "the exit is noticed", || async {
        let vm = sim.state().vms.remove(0);
        vm.last_exit.is_some().then_some(vm)
    })
    .await;
    assert_eq!(
        vm.status, "running",
        "the VM itself keeps running, like a real one"
    );
    assert!(vm.pid.is_none());
    sim.shutdown().await;

    let mut opts = options(&net);
    opts.workload_program = PathBuf::from("/nonexistent/idch-autoscaler");
    let sim = SimHandle::start(opts).await.unwrap();
    let state = sim.state();
    assert_eq!(state.vms[0].status, "running");
    assert!(state.vms[0].pid.is_none());
    sim.shutdown().await;
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / per_second
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_budget_is_a_cgroup_quota_on_the_workload() {
    let _cpu = cpu_heavy().await;
    let net = Subnet::claim();
    let mut opts = options(&net);
    opts.cpu_budget = Some(0.1);
    let sim = SimHandle::start(opts).await.unwrap();
    let ip = sim.seed_ip();
    wait_calculate(ip).await;
    let state = sim.state();
    assert_eq!(state.cpu_budget, Some(0.1));
    let vm = state.vms[0].clone();
    let pid = vm.pid.unwrap();
    let Some(sim_dir) = state.cgroup.clone() else {
        // No writable cgroup on this machine: the budget only scales the reported CPU.
        assert!(!vm.cpu_quota_enforced);
        eprintln!("no writable cgroup here; the quota cannot be checked");
        sim.shutdown().await;
        return;
    };
    let sim_dir = PathBuf::from(sim_dir);
    let sim_name = sim_dir.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        sim_name.starts_with(&format!("idch-sim-{}-", std::process::id())),
        "{sim_name}"
    );
    assert!(vm.cpu_quota_enforced, "{vm:?}");
    let dir = PathBuf::from(vm.cgroup.clone().unwrap());
    assert_eq!(dir.parent(), Some(sim_dir.as_path()));

    // The workload is in the VM's cgroup, whose quota is 0.1 of a core.
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(
        procs.split_whitespace().any(|p| p == pid.to_string()),
        "workload {pid} is not in {}: {procs}",
        dir.display()
    );
    if dir.join("cpu.cfs_quota_us").exists() {
        let read = |file: &str| -> u64 {
            std::fs::read_to_string(dir.join(file))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let period = read("cpu.cfs_period_us");
        assert_eq!(read("cpu.cfs_quota_us"), period / 10);
    } else {
        let max = std::fs::read_to_string(dir.join("cpu.max")).unwrap();
        assert_eq!(max.trim(), "10000 100000");
    }

    // A closed-loop burst cannot get more than its budget (loose bounds: ~4.7 ms of CPU per request).
    let deadline = Instant::now() + Duration::from_secs(2);
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let mut served = 0u32;
                while Instant::now() < deadline {
                    if calculate_answers(ip).await {
                        served += 1;
                    }
                }
                served
            })
        })
        .collect();
    let mut served = 0;
    for task in tasks {
        served += task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cores = (cpu_seconds(pid) - cpu_before) / elapsed;
    let rate = f64::from(served) / elapsed;
    eprintln!("budget 0.1: {served} requests in {elapsed:.2}s ({rate:.1}/s), {cores:.3} cores");
    assert!(served > 0);
    assert!(cores < 0.2, "the workload used {cores:.3} cores");
    assert!(rate < 0.1 / 0.0047 * 2.0, "{rate:.1} requests/s");
    sim.shutdown().await;
    assert!(!sim_dir.exists(), "{} left behind", sim_dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_and_deleting_a_vm_stop_its_exporter_and_remove_its_cgroup() {
    let net = Subnet::claim();
    let mut opts = options(&net);
    opts.cpu_budget = Some(0.2);
    let sim = SimHandle::start(opts).await.unwrap();
    let api = Api::new(&sim);
    let seed_ip = sim.seed_ip();
    let clone = api.clone_ok(&sim.seed_uuid(), "doomed").await;
    let uuid = clone["uuid"].as_str().unwrap().to_string();
    let ip = ip_of(&api.wait_running(&uuid).await);
    wait_exporter(ip).await;
    wait_exporter(seed_ip).await;
    let state = sim.state();
    let enforced = state.cgroup.is_some();
    let sim_dir = state.cgroup.clone().map(PathBuf::from);
    let vm = state.vms.iter().find(|vm| vm.uuid == uuid).unwrap().clone();
    assert_eq!(vm.cpu_quota_enforced, enforced);
    assert_eq!(vm.exporter, Some(format!("{ip}:{EXPORTER_PORT}")));
    let clone_dir = vm.cgroup.clone().map(PathBuf::from);
    if enforced {
        assert!(clone_dir.as_ref().unwrap().is_dir());
    }

    // Stop: the exporter goes with the workload; the cgroup stays for the next boot.
    let seed = sim.seed_uuid();
    assert_eq!(api.post_uuid("stop", &seed).await.status(), StatusCode::OK);
    wait_exporter_refused(seed_ip).await;
    let seed_state = sim.state().vms[0].clone();
    assert_eq!(seed_state.exporter, None);
    assert!(!seed_state.cpu_quota_enforced);
    if enforced {
        assert!(PathBuf::from(seed_state.cgroup.clone().unwrap()).is_dir());
    }
    assert_eq!(api.post_uuid("start", &seed).await.status(), StatusCode::OK);
    api.wait_running(&seed).await;
    wait_exporter(seed_ip).await;
    let seed_state = sim.state().vms[0].clone();
    assert_eq!(seed_state.cpu_quota_enforced, enforced);
    if enforced {
        let procs =
            std::fs::read_to_string(PathBuf::from(seed_state.cgroup.unwrap()).join("cgroup.procs"))
                .unwrap();
        assert!(procs.contains(&seed_state.pid.unwrap().to_string()));
    }

    // Delete: exporter closed, cgroup removed.
    assert_eq!(api.delete(&uuid).await.status(), StatusCode::OK);
    wait_exporter_refused(ip).await;
    if let Some(dir) = &clone_dir {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    assert!(
        exporter_answers(seed_ip).await,
        "the seed's exporter must stay"
    );

    // Shutdown: the simulator's cgroup goes too.
    sim.shutdown().await;
    wait_exporter_refused(seed_ip).await;
    if let Some(dir) = sim_dir {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[tokio::test]
async fn an_address_whose_exporter_port_is_taken_is_skipped() {
    let net = Subnet::claim();
    let busy = std::net::TcpListener::bind((net.ip(10), EXPORTER_PORT)).unwrap();
    let sim = SimHandle::start(options(&net)).await.unwrap();
    assert_eq!(sim.seed_ip(), net.ip(11));
    drop(busy);
    sim.shutdown().await;

    let mut opts = options(&net);
    opts.exporter_port = PORT;
    assert!(
        SimHandle::start(opts).await.is_err(),
        "the exporter port must differ from the service port"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_removes_the_cgroups() {
    let net = Subnet::claim();
    let mut opts = options(&net);
    opts.cpu_budget = Some(0.2);
    let sim = SimHandle::start(opts).await.unwrap();
    let ip = sim.seed_ip();
    wait_calculate(ip).await;
    let state = sim.state();
    let dirs: Vec<PathBuf> = state
        .cgroup
        .iter()
        .chain(state.vms[0].cgroup.iter())
        .map(PathBuf::from)
        .collect();
    drop(sim);
    wait_refused(ip).await;
    wait_exporter_refused(ip).await;
    for dir in dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

/// A client that gives up after `timeout`, as the autoscaler's does.
fn impatient(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

/// `GET /_sim/state` over HTTP, read into the public type.
async fn state_over_http(sim: &SimHandle) -> SimState {
    let resp = reqwest::get(format!("{}/_sim/state", sim.url()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

async fn names(api: &Api) -> Vec<String> {
    api.list()
        .await
        .iter()
        .map(|vm| vm["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_or_delete_whose_caller_hangs_up_still_happens() {
    let net = Subnet::claim();
    let sim = SimHandle::start(options(&net)).await.unwrap();
    let api = Api::new(&sim);
    let quick = impatient(Duration::from_millis(200));

    // The caller gives up during the latency, before the clone is even made: a real cloud goes on.
    sim.set_faults(Faults {
        latency: Duration::from_millis(800),
        ..Faults::default()
    });
    let err = quick
        .post(api.url("user-resource/vm/clone"))
        .header("apikey", KEY)
        .form(&[("uuid", sim.seed_uuid().as_str()), ("name", "abandoned")])
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    sim.set_faults(Faults::default());
    let vm = eventually(
        Duration::from_secs(5),
        "the abandoned clone is listed",
        || async {
            api.list()
                .await
                .into_iter()
                .find(|vm| vm["name"] == "abandoned")
        },
    )
    .await;
    let uuid = vm["uuid"].as_str().unwrap().to_string();
    let booted = api.wait_running(&uuid).await;
    wait_calculate(ip_of(&booted)).await;

    // The same for a delete: the VM goes away and its workload stops.
    sim.set_faults(Faults {
        latency: Duration::from_millis(800),
        ..Faults::default()
    });
    let err = quick
        .delete(api.url("user-resource/vm"))
        .header("apikey", KEY)
        .form(&[("uuid", uuid.as_str())])
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        sim.state().vms.iter().any(|vm| vm.uuid == uuid),
        "deleted before the latency"
    );
    sim.set_faults(Faults::default());
    eventually(
        Duration::from_secs(5),
        "the abandoned delete is done",
        || async { (!names(&api).await.contains(&"abandoned".to_string())).then_some(()) },
    )
    .await;
    wait_refused(ip_of(&booted)).await;
    let state = sim.state();
    assert_eq!(state.calls["vm_clone"], 1, "one clone call, made once");
    assert_eq!(state.calls["vm_delete"], 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_clone_appears_only_after_the_call_timed_out() {
    let net = Subnet::claim();
    let sim = SimHandle::start(options(&net)).await.unwrap();
    let api = Api::new(&sim);
    let late = Duration::from_millis(1500);
    let resp = api
        .http
        .post(format!("{}/_sim/faults", sim.url()))
        .json(&json!({"clone_late": "1500ms"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(sim.faults().clone_late, late);

    let called = chrono::Utc::now();
    let started = Instant::now();
    let err = impatient(Duration::from_millis(300))
        .post(api.url("user-resource/vm/clone"))
        .header("apikey", KEY)
        .form(&[("uuid", sim.seed_uuid().as_str()), ("name", "late")])
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // After the timeout, a re-list does not show it yet: the caller cannot know it is coming.
    assert!(!names(&api).await.contains(&"late".to_string()));
    assert!(
        started.elapsed() < late,
        "the check came too late to mean anything"
    );
    let vm = eventually(
        Duration::from_secs(5),
        "the late clone is listed",
        || async { api.list().await.into_iter().find(|vm| vm["name"] == "late") },
    )
    .await;
    assert!(started.elapsed() >= late, "{:?}", started.elapsed());
    api.wait_running(vm["uuid"].as_str().unwrap()).await;
    let entry = sim
        .state()
        .history
        .into_iter()
        .find(|h| h.name == "late")
        .unwrap();
    let created = entry.created().unwrap();
    assert!(
        created - called >= chrono::Duration::milliseconds(1400),
        "created {created}, called {called}"
    );

    // A caller that waits gets the VM object, after the delay.
    let started = Instant::now();
    let answered = api.clone_ok(&sim.seed_uuid(), "late-2").await;
    assert!(started.elapsed() >= late, "{:?}", started.elapsed());
    assert_eq!(answered["name"], "late-2");
    assert_eq!(sim.state().vms.len(), 3);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_delays_every_api_call_but_not_the_sim_endpoints() {
    let net = Subnet::claim();
    let sim = SimHandle::start(options(&net)).await.unwrap();
    let api = Api::new(&sim);
    let seed = sim.seed_uuid();
    let clone = api.clone_ok(&seed, "slow").await;
    let uuid = clone["uuid"].as_str().unwrap().to_string();
    api.wait_running(&uuid).await;
    let address = api.ips(&[("vm_uuid", &uuid)]).await[0]["address"]
        .as_str()
        .unwrap()
        .to_string();

    let latency = Duration::from_millis(300);
    sim.set_faults(Faults {
        latency,
        ..Faults::default()
    });
    let timed = |what: &'static str, started: Instant, status: StatusCode| {
        assert_eq!(status, StatusCode::OK, "{what}");
        assert!(
            started.elapsed() >= latency,
            "{what} took {:?}, less than the latency",
            started.elapsed()
        );
    };
    let t = Instant::now();
    api.list().await;
    timed("list", t, StatusCode::OK);
    let t = Instant::now();
    let status = api.get(&uuid).await.status();
    timed("get", t, status);
    let t = Instant::now();
    let other = api.clone_ok(&seed, "slow-2").await;
    timed("clone", t, StatusCode::OK);
    let t = Instant::now();
    api.ips(&[]).await;
    timed("floating IP list", t, StatusCode::OK);
    let t = Instant::now();
    let status = api
        .http
        .post(api.url(&format!("network/ip_addresses/{address}/unassign")))
        .header("apikey", KEY)
        .send()
        .await
        .unwrap()
        .status();
    timed("floating IP unassign", t, status);
    let t = Instant::now();
    let status = api
        .http
        .delete(api.url(&format!("network/ip_addresses/{address}")))
        .header("apikey", KEY)
        .send()
        .await
        .unwrap()
        .status();
    timed("floating IP release", t, status);
    let t = Instant::now();
    let status = api.post_uuid("stop", &uuid).await.status();
    timed("stop", t, status);
    let t = Instant::now();
    let status = api.post_uuid("start", &uuid).await.status();
    timed("start", t, status);
    let t = Instant::now();
    let status = api.delete(&uuid).await.status();
    timed("delete", t, status);
    let t = Instant::now();
    let status = api.delete(other["uuid"].as_str().unwrap()).await.status();
    timed("delete", t, status);

    // The simulator's own endpoints answer at once.
    let t = Instant::now();
    state_over_http(&sim).await;
    assert!(t.elapsed() < latency, "/_sim/state took {:?}", t.elapsed());
    assert_eq!(names(&api).await, vec!["calculate-service".to_string()]);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_state_keeps_every_vm_ever_created_with_its_lifetime() {
    let net = Subnet::claim();
    let sim = SimHandle::start(options(&net)).await.unwrap();
    let api = Api::new(&sim);
    let seed = sim.seed_uuid();
    let a1 = api.clone_ok(&seed, "a").await["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let b = api.clone_ok(&seed, "b").await["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(api.delete(&a1).await.status(), StatusCode::OK);
    // The name is free again: a new VM may take it.
    let a2 = api.clone_ok(&seed, "a").await["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    // A rename does not rewrite history.
    let resp = api
        .http
        .patch(api.url("user-resource/vm"))
        .header("apikey", KEY)
        .form(&[("uuid", b.as_str()), ("name", "b-renamed")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let state = state_over_http(&sim).await;
    assert_eq!(state.vms.len(), 3, "seed, b and the second a exist");
    let history = &state.history;
    let summary: Vec<(&str, &str, bool)> = history
        .iter()
        .map(|h| (h.name.as_str(), h.uuid.as_str(), h.deleted_at.is_some()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("calculate-service", seed.as_str(), false),
            ("a", a1.as_str(), true),
            ("b", b.as_str(), false),
            ("a", a2.as_str(), false),
        ]
    );
    assert!(history[0].seed && !history[1].seed);
    assert_eq!(history[0].address, sim.seed_ip());
    let first_a = &history[1];
    let (created, deleted) = (first_a.created().unwrap(), first_a.deleted().unwrap());
    assert!(created <= deleted);
    assert!(deleted <= history[3].created().unwrap());
    assert!(first_a.existed_at(created));
    assert!(!first_a.existed_at(deleted + chrono::Duration::milliseconds(1)));
    assert!(history[3].existed_at(chrono::Utc::now()));
    // Times are RFC 3339 in milliseconds, UTC.
    assert!(
        first_a.created_at.ends_with('Z') && first_a.created_at.contains('.'),
        "{}",
        first_a.created_at
    );

    // By default a clone takes the first free address, a deleted VM's too; without reuse it gets
    // one that no VM ever had.
    assert_eq!(history[3].address, history[1].address);
    sim.set_reuse_addresses(false);
    assert_eq!(api.delete(&a2).await.status(), StatusCode::OK);
    let fresh = api.clone_ok(&seed, "c").await["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let state = sim.state();
    let fresh = state.history.iter().find(|h| h.uuid == fresh).unwrap();
    let taken: Vec<Ipv4Addr> = state.history[..4].iter().map(|h| h.address).collect();
    assert!(
        !taken.contains(&fresh.address),
        "{} was had before",
        fresh.address
    );
    assert_eq!(fresh.address, net.ip(13));
    sim.shutdown().await;
}

// ---- power and billing (issue 10: PROTOCOLS.md E.2.1, E.2.6) ------------------------------------

impl Api {
    /// `GET charging/usage` (not location-specific: no slug).
    async fn charging(&self, query: &[(&str, &str)]) -> reqwest::Response {
        let base = self.base.trim_end_matches("/jkt01");
        self.http
            .get(format!("{base}/charging/usage"))
            .query(query)
            .header("apikey", KEY)
            .send()
            .await
            .unwrap()
    }
}

fn billed(sim: &SimHandle, uuid: &str) -> (f64, f64) {
    let state = sim.state();
    let vm = state.vms.iter().find(|vm| vm.uuid == uuid).unwrap();
    (vm.billed_running_seconds, vm.billed_stopped_seconds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_the_workload_and_start_brings_it_back_after_the_start_delay() {
    let net = Subnet::claim();
    let start_delay = Duration::from_millis(1500);
    let sim = SimHandle::start(SimOptions {
        start_delay: Some(start_delay),
        ..options(&net)
    })
    .await
    .unwrap();
    let api = Api::new(&sim);
    let seed = sim.seed_uuid();
    wait_calculate(sim.seed_ip()).await;
    wait_exporter(sim.seed_ip()).await;

    // `force` is accepted and checked (the doc spells it `force=True`).
    let resp = api
        .http
        .post(api.url("user-resource/vm/stop"))
        .header("apikey", KEY)
        .form(&[("uuid", seed.as_str()), ("force", "maybe")])
        .send()
        .await
        .unwrap();
    assert!(assert_error(resp, StatusCode::BAD_REQUEST)
        .await
        .contains("force"));
    assert!(
        calculate_answers(sim.seed_ip()).await,
        "a bad stop changes nothing"
    );

    let resp = api
        .http
        .post(api.url("user-resource/vm/stop"))
        .header("apikey", KEY)
        .form(&[("uuid", seed.as_str()), ("force", "True")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let stopped: Value = resp.json().await.unwrap();
    assert_eq!(stopped["status"], "stopped");
    assert_eq!(stopped["uuid"], seed.as_str());
    // The answer comes once the VM is down: its port refuses at once, its exporter too.
    assert!(
        refused(sim.seed_ip()).await,
        "the workload is killed by the stop"
    );
    wait_exporter_refused(sim.seed_ip()).await;
    assert_eq!(api.get_vm(&seed).await["status"], "stopped");
    assert!(sim.state().vms[0].pid.is_none());
    // Stopping again is harmless: still stopped.
    let again: Value = api.post_uuid("stop", &seed).await.json().await.unwrap();
    assert_eq!(again["status"], "stopped");

    let asked = Instant::now();
    let resp = api.post_uuid("start", &seed).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let starting: Value = resp.json().await.unwrap();
    assert_eq!(starting["uuid"], seed.as_str());
    assert_eq!(starting["status"], "starting");
    assert!(
        refused(sim.seed_ip()).await,
        "not back before the start delay"
    );
    api.wait_running(&seed).await;
    assert!(
        asked.elapsed() >= start_delay,
        "running after {:?}, before the start delay",
        asked.elapsed()
    );
    // Running means its health probes pass: the app and the exporter answer.
    wait_calculate(sim.seed_ip()).await;
    wait_exporter(sim.seed_ip()).await;
    assert_eq!(sim.state().start_delay, start_delay);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_delay_defaults_to_a_fifth_of_the_boot_delay() {
    let net = Subnet::claim();
    let sim = SimHandle::start(SimOptions {
        boot_delay: Duration::from_secs(5),
        ..options(&net)
    })
    .await
    .unwrap();
    let state = sim.state();
    assert_eq!(state.boot_delay, Duration::from_secs(5));
    assert_eq!(state.start_delay, Duration::from_secs(1));
    assert_eq!(state.clone_delay, Duration::ZERO);
    sim.shutdown().await;
    let args = SimArgs::default();
    assert_eq!(args.start_delay, None);
    assert_eq!(args.clone_delay, Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clone_call_takes_the_clone_delay_with_the_vm_listed_meanwhile() {
    let net = Subnet::claim();
    let clone_delay = Duration::from_millis(1500);
    let sim = SimHandle::start(SimOptions {
        clone_delay,
        ..options(&net)
    })
    .await
    .unwrap();
    let api = Arc::new(Api::new(&sim));
    let seed = sim.seed_uuid();
    let asked = Instant::now();
    let call = {
        let api = Arc::clone(&api);
        tokio::spawn(async move { api.clone_ok(&seed, "clone-slow").await })
    };
    // While the call runs the clone is listed, not running.
    let listed = eventually(Duration::from_secs(10), "the clone is listed", || async {
        api.list()
            .await
            .into_iter()
            .find(|vm| vm["name"] == "clone-slow")
    })
    .await;
    assert!(!call.is_finished(), "the clone call answered at once");
    assert_ne!(listed["status"], "running");
    let answered = call.await.unwrap();
    assert!(
        asked.elapsed() >= clone_delay,
        "the clone call took only {:?}",
        asked.elapsed()
    );
    assert_eq!(answered["uuid"], listed["uuid"]);
    assert_ne!(
        answered["status"], "running",
        "the boot begins at the answer"
    );
    let uuid = answered["uuid"].as_str().unwrap().to_string();
    let running = api.wait_running(&uuid).await;
    wait_calculate(ip_of(&running)).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_splits_running_and_stopped_seconds_and_charging_rows_follow() {
    let net = Subnet::claim();
    let sim = SimHandle::start(options(&net)).await.unwrap();
    let api = Api::new(&sim);
    let seed = sim.seed_uuid();
    let born = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;

    assert_eq!(api.post_uuid("stop", &seed).await.status(), StatusCode::OK);
    let ran = born.elapsed().as_secs_f64();
    let (running, stopped) = billed(&sim, &seed);
    assert!(
        running >= 0.9 && running <= ran + 0.5,
        "running {running}s of {ran}s"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (running_later, stopped_later) = billed(&sim, &seed);
    assert_eq!(running_later, running, "no running time while stopped");
    assert!(
        stopped_later - stopped >= 1.4 && stopped_later - stopped <= 4.0,
        "stopped {stopped}s -> {stopped_later}s"
    );

    // A starting VM is billed as running again, from the start call on.
    assert_eq!(api.post_uuid("start", &seed).await.status(), StatusCode::OK);
    let (r1, s1) = billed(&sim, &seed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (r2, s2) = billed(&sim, &seed);
    assert_eq!(s2, s1, "no stopped time while starting");
    assert!(r2 - r1 >= 0.4, "running {r1}s -> {r2}s");

    // charging/usage: a running row and a stopped row for the seed, hours and cost from them.
    let resp = api
        .charging(&[("billing_account_id", &sim.billing_account_id().to_string())])
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let rows: Vec<Value> = resp.json().await.unwrap();
    let (run_s, stop_s) = billed(&sim, &seed);
    let row = |stopped: bool| {
        rows.iter()
            .find(|r| {
                r["owner_uuid"] == seed.as_str()
                    && r["description"].as_str().unwrap().ends_with(", stopped") == stopped
            })
            .unwrap_or_else(|| panic!("no {stopped} row in {rows:?}"))
            .clone()
    };
    let (run_row, stop_row) = (row(false), row(true));
    assert_eq!(run_row["price"], 0.02882);
    assert_eq!(stop_row["price"], 0.0028);
    assert_eq!(run_row["price_unit"], "h");
    for (r, secs) in [(&run_row, run_s), (&stop_row, stop_s)] {
        let hours = r["hours"].as_f64().unwrap();
        assert!((hours * 3600.0 - secs).abs() < 1.0, "{r} vs {secs}s");
        let cost = r["cost"].as_f64().unwrap();
        assert!(
            (cost - hours * r["price"].as_f64().unwrap()).abs() < 1e-5,
            "{r}"
        );
        assert_eq!(r["configurations"][0]["vm_name"], "calculate-service");
        assert_eq!(r["configurations"][0]["cpus"], 2);
        assert_eq!(r["configurations"][0]["ram_MB"], 2048);
        assert_eq!(r["billing_account_id"], sim.billing_account_id());
    }

    // A deleted VM keeps its rows this month, and its billed time stops growing.
    let clone = api.clone_ok(&sim.seed_uuid(), "clone-billed").await;
    let uuid = clone["uuid"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.delete(&uuid).await.status(), StatusCode::OK);
    let gone = |state: &SimState| {
        state
            .history
            .iter()
            .find(|h| h.uuid == uuid)
            .unwrap()
            .billed_running_seconds
    };
    let at_delete = gone(&sim.state());
    assert!(at_delete >= 0.25, "{at_delete}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gone(&sim.state()), at_delete);
    let rows: Vec<Value> = api
        .charging(&[("billing_account_id", &sim.billing_account_id().to_string())])
        .await
        .json()
        .await
        .unwrap();
    assert!(rows.iter().any(|r| r["owner_uuid"] == uuid.as_str()));

    // Another account sees nothing; a missing or bad account is a 400.
    let other: Vec<Value> = api
        .charging(&[("billing_account_id", "1")])
        .await
        .json()
        .await
        .unwrap();
    assert!(other.is_empty());
    assert_error(api.charging(&[]).await, StatusCode::BAD_REQUEST).await;
    assert_error(
        api.charging(&[("billing_account_id", "x")]).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(sim.state().calls["charging_usage"] >= 4);
    sim.shutdown().await;
}
