//! Target tracking's parts that talk to the outside: the Prometheus client against the real
//! Prometheus (Debian's), and `check --config`'s warning on `[pool.target]`.

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use idch_autoscaler::config::{Config, Secret, TargetConfig};
use idch_autoscaler::prom::{PromClient, PromError};

use crate::common::*;

fn target(url: &str, timeout: &str) -> TargetConfig {
    let c = Config::parse(&format!(
        "[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"s\"\n[pool.target]\n\
         prometheus_url = \"{url}\"\nquery = 'x{{pool=\"{{pool}}\"}}'\ntarget = 60\n\
         interval = \"15s\"\ntimeout = \"{timeout}\"\n"
    ))
    .unwrap();
    c.pools[0].target.clone().unwrap()
}

/// One real Prometheus (no scrape jobs) answers each documented shape, and the client reads it.
#[tokio::test]
async fn the_client_reads_the_real_prometheus_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (_prom, port) = start_prometheus(dir, "global:\n  evaluation_interval: 15s\n", &[]).await;
    let client = PromClient::new(
        &target(&format!("http://127.0.0.1:{port}/"), "5s"),
        Some(Secret::new("ignored-by-prometheus")),
    )
    .unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();

    let s = client.query("vector(42)").await.unwrap();
    assert_eq!(s.value, 42.0);
    assert!(
        (s.at - before).abs() < 60.0,
        "the sample's time is Prometheus' evaluation time: {} vs {before}",
        s.at
    );
    let s = client.query("scalar(vector(7.5))").await.unwrap();
    assert_eq!(s.value, 7.5, "a scalar result");
    let s = client.query("vector(61.5) * 1").await.unwrap();
    assert_eq!(s.value, 61.5);
    assert!(client.query("vector(NaN)").await.unwrap().value.is_nan());
    assert_eq!(
        client.query("vector(+Inf)").await.unwrap().value,
        f64::INFINITY
    );
    assert_eq!(
        client.query("up{job=\"no-such-job\"}").await,
        Err(PromError::Empty)
    );
    assert_eq!(
        client
            .query(
                "label_replace(vector(1), \"a\", \"x\", \"\", \"\") or label_replace(vector(2), \"a\", \"y\", \"\", \"\")"
            )
            .await,
        Err(PromError::Several { series: 2 })
    );
    match client.query("sum(rate(x[5m])").await {
        Err(PromError::Api {
            status,
            error_type,
            error,
        }) => {
            assert_eq!((status, error_type.as_str()), (400, "bad_data"));
            assert!(error.contains("parse error"), "{error}");
        }
        other => panic!("a syntax error: {other:?}"),
    }
    match client.query("x[5m]").await {
        Err(PromError::Unsupported { result_type }) => assert_eq!(result_type, "matrix"),
        other => panic!("a range vector: {other:?}"),
    }
    // A path prefix is kept: Prometheus answers 404 under another path.
    let wrong = PromClient::new(
        &target(&format!("http://127.0.0.1:{port}/prefix"), "5s"),
        None,
    )
    .unwrap();
    assert!(
        matches!(
            wrong.query("vector(1)").await,
            Err(PromError::Status { status: 404, .. })
        ),
        "the request went to /prefix/api/v1/query"
    );
}

/// The bearer token is sent, the query is URL-encoded, and a Prometheus that does not answer
/// is a timeout after the configured timeout; a closed port is a transport error.
#[tokio::test]
async fn the_client_sends_the_token_and_gives_up_at_its_timeout() {
    // A one-shot HTTP server on a loopback port that records the request head.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0);
            head.extend_from_slice(&buf[..n]);
        }
        let body =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.5,"3"]}}"#;
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // The next connection is accepted and never answered.
        let (silent, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(2));
        drop(silent);
        String::from_utf8(head).unwrap()
    });
    let client = PromClient::new(
        &target(&format!("http://{addr}"), "300ms"),
        Some(Secret::new("s3cret-token")),
    )
    .unwrap();
    let s = client.query("avg(x{pool=\"web\"})").await.unwrap();
    assert_eq!((s.value, s.at), (3.0, 1700000000.5));

    let started = Instant::now();
    let e = client.query("vector(1)").await.unwrap_err();
    assert!(matches!(e, PromError::Timeout { .. }), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(e.to_string().contains("300ms"), "{e}");

    let head = server.join().unwrap();
    assert!(
        head.starts_with(
            "GET /api/v1/query?query=avg%28x%7Bpool%3D%22web%22%7D%29&timeout=300ms HTTP/1.1"
        ),
        "{head}"
    );
    assert!(
        head.to_lowercase()
            .contains("authorization: bearer s3cret-token\r\n"),
        "{head}"
    );

    let closed = PromClient::new(
        &target(&format!("http://127.0.0.1:{}", free_port()), "1s"),
        None,
    )
    .unwrap();
    let e = closed.query("vector(1)").await.unwrap_err();
    assert!(matches!(e, PromError::Transport { .. }), "{e:?}");
    assert!(
        !e.to_string().contains("vector"),
        "no URL in the error: {e}"
    );
}

fn check(dir: &std::path::Path, text: &str) -> std::process::Output {
    let config = dir.join("config.toml");
    std::fs::write(&config, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_idch-autoscaler"))
        .env("IDCLOUDHOST_API_KEY", "for-the-check")
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap()
}

/// `check --config` accepts a `[pool.target]` whose band swallows one VM at `max`, and warns
/// with the figures; a narrower band is quiet; a query that is not PromQL is refused.
#[test]
fn check_warns_about_a_band_of_one_vm_and_refuses_a_bad_query() {
    let dir = tempfile::tempdir().unwrap();
    let pool = |max: u32, extra: &str| {
        format!(
            "[idcloudhost]\n[[pool]]\nname = \"web\"\nseed_vm = \"u-1\"\nmax = {max}\n[pool.target]\n\
             prometheus_url = \"http://127.0.0.1:9090\"\nquery = 'idch:pool_cpu_busy:avg2m{{pool=\"{{pool}}\"}}'\n\
             target = 60\n{extra}"
        )
    };
    let out = check(dir.path(), &pool(10, ""));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "warning: pool \"web\".target.tolerance: 0.1 is at least one VM's share at max = 10"
        ),
        "{stderr}"
    );
    let out = check(dir.path(), &pool(5, ""));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "quiet at max 5");
    let out = check(
        dir.path(),
        &pool(5, "").replace("idch:pool_cpu_busy:avg2m", "sum(rate(x[5m])"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pool \"web\".target.query") && stderr.contains("not PromQL"),
        "{stderr}"
    );
}
