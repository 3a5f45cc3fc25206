//! `scripts/demo.sh`: the whole stack comes up with the shipped files, routes a request through
//! Traefik, and every process it started is gone after SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn answers(url: &str) -> bool {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .get(url)
        .send()
        .is_ok_and(|r| r.status().is_success())
}

#[test]
fn the_demo_stack_starts_routes_and_stops_everything() {
    let _ports = crate::fixed_ports();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new("bash")
        .arg(format!("{root}/scripts/demo.sh"))
        .env("IDCH_BIN", env!("CARGO_BIN_EXE_idch-autoscaler"))
        .env(
            "PATH",
            format!(
                "{root}/.venv-peers/bin:{}",
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let mut out = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) if line == "ready" => break,
            Ok(line) => out.push(line),
            Err(_) if started.elapsed() > Duration::from_secs(120) => {
                let _ = child.kill();
                panic!("the stack did not come up: {out:?}");
            }
            Err(_) => {}
        }
    }
    let text = out.join("\n");
    for url in [
        "http://127.0.0.1:8000/calculate",
        "http://127.0.0.1:9090/alerts",
        "http://127.0.0.1:9093/",
    ] {
        assert!(text.contains(url), "prints {url}: {text}");
    }
    let http = reqwest::blocking::Client::new();
    let r = http
        .post("http://127.0.0.1:8000/calculate")
        .json(&serde_json::json!({"number": 5}))
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "a request through Traefik reaches the seed"
    );
    assert_eq!(r.headers()["x-served-by"], "calculate-service");
    // Prometheus loaded the rules and discovered the seed through our http_sd.
    let rules: serde_json::Value = http
        .get("http://127.0.0.1:9090/api/v1/rules")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(rules.to_string().contains("AutoscalerScaleUp"), "{rules}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t: serde_json::Value = http
            .get("http://127.0.0.1:9090/api/v1/targets")
            .send()
            .unwrap()
            .json()
            .unwrap();
        if t.to_string().contains("127.0.0.10:9100") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the seed is not a Prometheus target: {t}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    eprintln!("demo.sh exited: {status}");
    std::thread::sleep(Duration::from_millis(500));
    for url in [
        "http://127.0.0.1:4000/healthz",
        "http://127.0.0.1:8080/ping",
        "http://127.0.0.1:9090/-/ready",
        "http://127.0.0.1:9093/-/ready",
        "http://127.0.0.10:3000/healthz",
    ] {
        assert!(!answers(url), "{url} still answers after the stack stopped");
    }
}
