//! The sample workload: its hashes against an independent reference (Python's hashlib), and its
//! HTTP behaviour on a real loopback listener.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idch_autoscaler::workload::{
    pbkdf2_hex, scrypt_hex, serve, CalculateResponse, HashPool, WorkloadOptions,
};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const NUMBERS: [u64; 6] = [1, 7, 13, 14, 27, 1_000_003];

/// Runs `python3 tests/hashes.py N...` and returns its answers by number.
fn reference_hashes(numbers: &[u64]) -> HashMap<u64, CalculateResponse> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hashes.py");
    let output = Command::new("python3")
        .arg(&script)
        .args(numbers.iter().map(u64::to_string))
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python3 {} failed ({}): {stderr}",
        script.display(),
        output.status
    );
    let stdout = String::from_utf8(output.stdout).expect("hashes.py prints UTF-8");
    let map: HashMap<u64, CalculateResponse> = stdout
        .lines()
        .map(|line| {
            let r: CalculateResponse = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad line from hashes.py {line:?}: {e}"));
            (r.input, r)
        })
        .collect();
    assert_eq!(map.len(), numbers.len(), "hashes.py answered {stdout:?}");
    map
}

#[test]
fn hashes_match_python_hashlib() {
    let reference = reference_hashes(&NUMBERS);
    for n in NUMBERS {
        let want = &reference[&n];
        assert_eq!(pbkdf2_hex(n), want.pbkdf2_hash, "PBKDF2 of {n}");
        assert_eq!(scrypt_hex(n), want.scrypt_hash, "scrypt of {n}");
    }
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(name: &str, workers: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let opts = WorkloadOptions {
            name: name.to_string(),
            workers,
            version_file: None,
        };
        let task = tokio::spawn(serve(listener, opts, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Triggers the graceful shutdown and waits for `serve` to return.
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task does not panic")
            .expect("serve returns Ok");
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn served_by(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("x-served-by")
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn calculate_returns_both_hashes_and_served_by() {
    let server = Server::start("vm-a", 2).await;
    let reference = reference_hashes(&[1, 27]);
    let http = client();
    for n in [1u64, 27] {
        let response = http
            .post(server.url("/calculate"))
            .json(&serde_json::json!({ "number": n }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(served_by(&response).as_deref(), Some("vm-a"));
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let body: Value = response.json().await.unwrap();
        let fields: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields.len(), 3, "exactly three fields: {body}");
        assert_eq!(body["input"], n);
        assert_eq!(body["pbkdf2Hash"], reference[&n].pbkdf2_hash.as_str());
        assert_eq!(body["scryptHash"], reference[&n].scrypt_hash.as_str());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_a_400_with_a_json_error() {
    let server = Server::start("vm-b", 1).await;
    let http = client();
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("not json", "not valid JSON"),
        (r#"{"number": 5"#, "not valid JSON"),
        ("[5]", "JSON object"),
        ("5", "JSON object"),
        ("{}", "missing"),
        (r#"{"count": 5}"#, "missing"),
        (r#"{"number": "5"}"#, "got a string"),
        (r#"{"number": null}"#, "got null"),
        (r#"{"number": true}"#, "got a boolean"),
        (r#"{"number": 0}"#, "positive"),
        (r#"{"number": -4}"#, "positive"),
        (r#"{"number": -4.0}"#, "positive"),
        (r#"{"number": 2.5}"#, "integer"),
        (r#"{"number": 1e40}"#, "too large"),
    ];
    for (body, expect) in cases {
        let response = http
            .post(server.url("/calculate"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "body {body:?}");
        assert_eq!(served_by(&response).as_deref(), Some("vm-b"));
        let json: Value = response.json().await.unwrap();
        let error = json["error"].as_str().unwrap_or_else(|| panic!("{json}"));
        assert!(
            error.contains(expect),
            "body {body:?}: error {error:?} should mention {expect:?}"
        );
    }
    // A body over the limit is refused with 413, still as JSON.
    let big = format!(r#"{{"number": 5, "pad": "{}"}}"#, "x".repeat(64 * 1024));
    let response = http
        .post(server.url("/calculate"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(served_by(&response).as_deref(), Some("vm-b"));
    let json: Value = response.json().await.unwrap();
    assert!(json["error"].as_str().unwrap().contains("larger than"));
    // The server is still fine afterwards.
    let response = http
        .post(server.url("/calculate"))
        .json(&serde_json::json!({ "number": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn healthz_and_unknown_routes() {
    let server = Server::start("vm-c", 1).await;
    let http = client();
    let response = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(served_by(&response).as_deref(), Some("vm-c"));
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        serde_json::json!({ "status": "ok" })
    );
    let response = http.get(server.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(served_by(&response).as_deref(), Some("vm-c"));
    let response = http.get(server.url("/calculate")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(served_by(&response).as_deref(), Some("vm-c"));
    server.shutdown().await;
}

#[tokio::test]
async fn one_worker_queues_concurrent_requests() {
    let server = Server::start("vm-d", 1).await;
    let http = client();
    let numbers: Vec<u64> = (1..=8).map(|i| i * 13).collect(); // includes the costliest N = 2^14
    let requests = numbers.iter().map(|&n| {
        let http = http.clone();
        let url = server.url("/calculate");
        async move {
            let response = http
                .post(url)
                .json(&serde_json::json!({ "number": n }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "number {n}");
            let body: CalculateResponse = response.json().await.unwrap();
            assert_eq!(body.input, n);
            assert_eq!(body.pbkdf2_hash, pbkdf2_hex(n));
            assert_eq!(body.scrypt_hash, scrypt_hex(n));
        }
    });
    futures::future::join_all(requests).await;
    server.shutdown().await;
}

#[tokio::test]
async fn pool_runs_at_most_workers_jobs_at_once() {
    let pool = HashPool::new(2).unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let jobs = (0..10).map(|i| {
        let pool = pool.clone();
        let running = running.clone();
        let peak = peak.clone();
        async move {
            pool.run(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
                i
            })
            .await
            .unwrap()
        }
    });
    let done = futures::future::join_all(jobs).await;
    assert_eq!(done, (0..10).collect::<Vec<_>>(), "every job ran");
    assert_eq!(peak.load(Ordering::SeqCst), 2, "at most two at once");
    assert!(HashPool::new(0).is_err(), "zero workers is refused");
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    let server = Server::start("vm-e", 1).await;
    let http = client();
    // Open the connection first, so the request below is on an accepted connection.
    let warm = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(warm.status(), 200);
    let url = server.url("/calculate");
    let request = tokio::spawn(async move {
        let response = http
            .post(url)
            .json(&serde_json::json!({ "number": 13 })) // the costliest N = 2^14
            .send()
            .await?;
        let status = response.status();
        let body: CalculateResponse = response.json().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    server.shutdown().await;
    let (status, body) = request
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(status, 200);
    assert_eq!(body.scrypt_hash, scrypt_hex(13));
}
