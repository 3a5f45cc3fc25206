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
        .env("IDCLOUDHOST_API_KEY", "for-the-check")
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
        .env("IDCLOUDHOST_API_KEY", "for-the-check")
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

/// Runs `idch-autoscaler ARGS` with `env` (and nothing else of this process's environment but
/// PATH), bounded to 20 s; returns whether it succeeded and its stderr.
fn bounded_run(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_idch-autoscaler"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the binary starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} did not exit within 20 s: it did not refuse");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.success(), stderr)
}

/// The reason after "error: " on the line that has it.
fn reason(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.split_once("error: ").map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| panic!("no error line in {stderr:?}"))
}

#[test]
fn check_refuses_what_run_refuses_with_the_same_reason() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let key_file = dir.path().join("api-key");
    // Nothing here is ever served: each file is refused before the state file is opened and the
    // port is bound. 192.0.2.1 (TEST-NET-1) is not local, so even a bind could not listen.
    let base = |top: &str, cloud: &str| {
        format!(
            "state_path = {state:?}\n{top}\n[idcloudhost]\napi_url = \"http://127.0.0.1:9\"\n{cloud}\n[[pool]]\nname = \"web\"\nseed_vm = \"u-1\"\n"
        )
    };
    type Env = &'static [(&'static str, &'static str)];
    let cases: &[(&str, String, Env, &str)] = &[
        (
            "non-loopback listen without webhook auth",
            base("listen = \"192.0.2.1:4000\"", ""),
            &[("IDCLOUDHOST_API_KEY", "k")],
            "refusing to accept unauthenticated webhooks",
        ),
        (
            "API key variable not set",
            base("", ""),
            &[],
            "idcloudhost.api_key: environment variable IDCLOUDHOST_API_KEY is not set",
        ),
        (
            "API key file missing",
            base("", &format!("api_key_file = {key_file:?}")),
            &[],
            "idcloudhost.api_key: cannot read",
        ),
        (
            "webhook token variable empty",
            base(
                "listen = \"127.0.0.1:0\"\n[auth]\nwebhook_token_env = \"IDCH_TEST_TOKEN\"",
                "",
            ),
            &[("IDCLOUDHOST_API_KEY", "k"), ("IDCH_TEST_TOKEN", "")],
            "auth.webhook_token: the secret is empty",
        ),
    ];
    for (what, text, env, expected) in cases {
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        let (run_ok, run_err) = bounded_run(
            &["run".as_ref(), "--config".as_ref(), path.as_os_str()],
            env,
        );
        let (check_ok, check_err) = bounded_run(
            &["check".as_ref(), "--config".as_ref(), path.as_os_str()],
            env,
        );
        assert!(!run_ok, "{what}: run started: {run_err}");
        assert!(
            !check_ok,
            "{what}: check passed what run refuses: {run_err}"
        );
        assert!(reason(&run_err).contains(expected), "{what}: {run_err}");
        assert_eq!(reason(&check_err), reason(&run_err), "{what}");
        assert!(
            check_err.starts_with(&format!("{}: error: ", path.display())),
            "{check_err}"
        );
        assert!(!state.exists(), "{what}: refused before the state file");
    }
    // And the same file passes both once the refusal is answered (check only: run would serve).
    let path = dir.path().join("config.toml");
    std::fs::write(&key_file, "k\n").unwrap();
    std::fs::write(
        &path,
        base(
            "listen = \"192.0.2.1:4000\"\n[auth]\nwebhook_token_env = \"IDCH_TEST_TOKEN\"",
            &format!("api_key_file = {key_file:?}"),
        ),
    )
    .unwrap();
    let (ok, err) = bounded_run(
        &["check".as_ref(), "--config".as_ref(), path.as_os_str()],
        &[("IDCH_TEST_TOKEN", "t")],
    );
    assert!(ok, "{err}");
    let (ok, err) = bounded_run(
        &["check".as_ref(), "--config".as_ref(), path.as_os_str()],
        &[],
    );
    assert!(!ok && err.contains("IDCH_TEST_TOKEN is not set"), "{err}");
}
