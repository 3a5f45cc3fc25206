//! The embedded default, started exactly as the README says (`idch-autoscaler` with no
//! arguments), answers on /traefik with the seed within a few seconds, and stops everything
//! it started on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_embedded_default_serves_the_seed_and_stops_cleanly() {
    let _ports = crate::fixed_ports();
    let mut child = Command::new(env!("CARGO_BIN_EXE_idch-autoscaler"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let started = Instant::now();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let doc = loop {
        if let Ok(r) = http.get("http://127.0.0.1:4000/traefik").send() {
            if r.status() == 200 {
                break r.text().unwrap();
            }
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("no /traefik document within 15 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("/traefik answered after {:?}", started.elapsed());
    assert!(
        doc.contains("http://127.0.0.10:3000"),
        "the seed is served: {doc}"
    );
    let r = http
        .post("http://127.0.0.10:3000/calculate")
        .json(&serde_json::json!({"number": 5}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "the seed VM is a real process");

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(
        out.contains("http://127.0.0.1:4000"),
        "prints the service URL: {out}"
    );
    assert!(
        out.contains("traefik --configFile=traefik/traefik.yml"),
        "prints the Traefik command: {out}"
    );
    // The seed's process is gone too.
    assert!(
        http.post("http://127.0.0.10:3000/calculate")
            .json(&serde_json::json!({"number": 5}))
            .send()
            .is_err(),
        "the simulated VM stopped with the demo"
    );
}

#[test]
fn check_exits_zero_on_a_good_file_and_names_the_key_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"u-1\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_idch-autoscaler"))
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"u-1\"\nmin = 4\nmax = 2\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_idch-autoscaler"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pool \"web\".min") && err.contains("greater than max"),
        "{err}"
    );
}
