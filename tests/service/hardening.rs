//! What a hostile test of the service found (issue 12), each point over HTTP against the
//! simulator: strict request shapes, JSON on every error, replay protection, slow clients,
//! content types, auth challenges, and honest `unchanged` decisions.

use std::time::{Duration, Instant};

use crate::common::*;
use idch_autoscaler::config::Secret;
use idch_autoscaler::http::auth::sign;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const JSON: &str = "application/json";
const GRAFANA_FIRING: &str = r#"{"receiver":"scale-up","status":"firing","orgId":1,"alerts":[{"status":"firing","labels":{"alertname":"PoolCPUHigh","pool":"calculate"},"annotations":{},"startsAt":"2026-01-01T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"6f1c2a9b0d3e4f55","values":{"A":0.9}}],"groupLabels":{"alertname":"PoolCPUHigh"},"commonLabels":{"alertname":"PoolCPUHigh","pool":"calculate"},"commonAnnotations":{},"externalURL":"http://grafana/","version":"1","groupKey":"{}:{}","truncatedAlerts":0,"title":"[FIRING:1]","state":"alerting","message":""}"#;
const AM_FIRING: &str = r#"{"version":"4","groupKey":"{}:{}","truncatedAlerts":0,"status":"firing","receiver":"scale-up","groupLabels":{},"commonLabels":{"alertname":"PoolCPUHigh","pool":"calculate"},"commonAnnotations":{},"externalURL":"http://am","alerts":[{"status":"firing","labels":{"alertname":"PoolCPUHigh","pool":"calculate"},"annotations":{},"startsAt":"2026-01-01T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"a1b2c3d4e5f60718"}]}"#;
const NO_COOLDOWN: &str = "scale_up_cooldown = \"0s\"\nscale_down_cooldown = \"0s\"\n";

/// Status, content type, `{"error"}` text (empty when absent) and the response itself.
async fn send(req: reqwest::RequestBuilder) -> (u16, String, String, reqwest::header::HeaderMap) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let ct = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = r.text().await.unwrap();
    let error = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default();
    (status, ct, error, headers)
}

async fn desired(http: &reqwest::Client, url: &str) -> u64 {
    pool_status(http, url, None).await["desired"]
        .as_u64()
        .unwrap()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---- 3. PUT desired: only {"size": n} ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_desired_takes_only_the_documented_object() {
    let sim = start_sim(Duration::from_millis(100)).await;
    let service = start_service(config_for(&sim, "", ""), secrets(None)).await;
    let http = reqwest::Client::new();
    let url = service.url();
    wait_synced(&http, &url, None).await;
    let put = format!("{url}/v1/pools/calculate/desired");
    for (body, says) in [
        ("[3]", "not an array"),
        ("3", "not a number"),
        (r#""3""#, "not a string"),
        (r#"{"size":"3"}"#, "is a string"),
        (r#"{"size":-1}"#, "is negative"),
        (r#"{"size":2.5}"#, "not a whole number"),
        (r#"{"size":4294967296}"#, "too large"),
        (r#"{"size":3,"force":true}"#, "unknown field"),
        (r#"{"size":3,"size":2}"#, "duplicate field"),
        (r#"{"sizes":3}"#, "unknown field"),
    ] {
        let (status, ct, error, _) =
            send(http.put(&put).header("content-type", JSON).body(body)).await;
        assert_eq!((status, ct.as_str()), (400, JSON), "{body}: {error}");
        assert!(
            error.contains(r#"{"size": n}"#) && error.contains(says),
            "{body}: {error}"
        );
    }
    assert_eq!(desired(&http, &url).await, 1, "no bad body moved desired");
    let (status, _, error, _) = send(
        http.put(&put)
            .header("content-type", JSON)
            .body(r#"{"size": 3}"#),
    )
    .await;
    assert_eq!(status, 200, "{error}");
    assert_eq!(desired(&http, &url).await, 3);
    service.stop().await.unwrap();
    sim.shutdown().await;
}

// ---- 10. An operator's no-op is "unchanged", and its cause names the pool ---------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn putting_the_current_size_is_unchanged_and_the_cause_names_the_pool() {
    let sim = start_sim(Duration::from_millis(100)).await;
    let service = start_service(config_for(&sim, "", ""), secrets(None)).await;
    let http = reqwest::Client::new();
    let url = service.url();
    wait_synced(&http, &url, None).await;
    let v = set_desired(&http, &url, 1, None).await;
    assert_eq!(
        (
            v["decision"].as_str(),
            v["desired"].as_u64(),
            v["previous"].as_u64()
        ),
        (Some("unchanged"), Some(1), Some(1)),
        "{v}"
    );
    // An unchanged PUT starts no cooldown.
    let status = pool_status(&http, &url, None).await;
    assert_eq!(
        status["cooldown_seconds_left"],
        serde_json::json!({"scale_up": 0, "scale_down": 0}),
        "{status}"
    );
    let v = set_desired(&http, &url, 2, None).await;
    assert_eq!(v["decision"], "accepted", "{v}");
    let log = activity_log(&http, &url).await;
    let ops: Vec<(&str, &str, &str)> = log
        .iter()
        .filter(|a| {
            a["action"] == "set_desired"
                && a["cause"] != "start-up: nothing persisted, desired = VMs found"
        })
        .map(|a| {
            (
                a["cause"].as_str().unwrap(),
                a["outcome"].as_str().unwrap(),
                a["detail"].as_str().unwrap(),
            )
        })
        .collect();
    let cause = "operator (PUT /v1/pools/calculate/desired)";
    assert_eq!(
        ops,
        [
            (cause, "accepted", "desired 1 -> 2"),
            (cause, "unchanged", "desired 1 (unchanged)"),
        ]
    );
    service.stop().await.unwrap();
    sim.shutdown().await;
}

// ---- 4. Every error answer is JSON ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answer_is_json_saying_what_is_wrong() {
    let sim = start_sim(Duration::from_millis(100)).await;
    let service = start_service(config_for(&sim, "", ""), secrets(None)).await;
    let http = reqwest::Client::new();
    let url = service.url();
    wait_synced(&http, &url, None).await;
    let activities = format!("{url}/v1/pools/calculate/activities");
    for limit in ["-1", "abc", "1.5", "4294967296", "", "0", "1001"] {
        let (status, ct, error, _) = send(http.get(format!("{activities}?limit={limit}"))).await;
        assert_eq!((status, ct.as_str()), (400, JSON), "limit={limit}: {error}");
        assert!(
            error.contains("limit must be a whole number from 1 to 1000"),
            "{error}"
        );
    }
    let v: serde_json::Value = http
        .get(format!("{activities}?limit=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["activities"].as_array().unwrap().len(), 1);

    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (http.get(format!("{url}/v1/pools/%FF")), 400, "UTF-8"),
        (
            http.get(format!("{url}/v1/pools/%FF/activities")),
            400,
            "UTF-8",
        ),
        (
            http.post(format!("{url}/v1/pools/%FF/scale-up")),
            400,
            "UTF-8",
        ),
        (
            http.post(format!("{url}/v1/scale-up?pool=calculate&pool=calculate")),
            400,
            "more than once",
        ),
        (
            http.post(format!("{url}/v1/scale-up?pol=calculate")),
            400,
            "unknown query parameter",
        ),
        (
            http.get(format!("{activities}?limit=5&limit=6")),
            400,
            "more than once",
        ),
        (http.get(format!("{url}/nope")), 404, "/nope"),
        (http.get(format!("{url}/v1/pools/nope")), 404, "nope"),
    ];
    for (i, (req, want, says)) in cases.into_iter().enumerate() {
        let (status, ct, error, _) = send(req).await;
        assert_eq!((status, ct.as_str()), (want, JSON), "case {i}: {error}");
        assert!(error.contains(says), "case {i}: {error}");
    }
    // A wrong method: 405, JSON, and the Allow header.
    for (req, allow) in [
        (
            http.delete(format!("{url}/v1/pools/calculate/desired")),
            "PUT",
        ),
        (http.get(format!("{url}/v1/scale-up")), "POST"),
        (http.post(format!("{url}/traefik")), "GET"),
        (http.put(format!("{url}/healthz")), "GET"),
    ] {
        let (status, ct, error, headers) = send(req).await;
        assert_eq!((status, ct.as_str()), (405, JSON), "{error}");
        let allowed = headers["allow"].to_str().unwrap();
        assert!(allowed.contains(allow), "{allowed}");
        assert!(
            error.contains("not allowed") && error.contains(allow),
            "{error}"
        );
    }
    assert_eq!(desired(&http, &url).await, 1, "nothing changed");
    service.stop().await.unwrap();
    sim.shutdown().await;
}

// ---- 6. A signed request is accepted once ------------------------------------------------------

fn signed(
    http: &reqwest::Client,
    url: &str,
    ts: Option<&str>,
    body: &'static str,
) -> reqwest::RequestBuilder {
    let mut req = http
        .post(format!("{url}/v1/scale-up"))
        .header("content-type", JSON)
        .header(
            "X-Grafana-Alerting-Signature",
            sign("hmac-secret", ts, body.as_bytes()),
        )
        .body(body);
    if let Some(ts) = ts {
        req = req.header("X-Grafana-Alerting-Timestamp", ts);
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_request_is_accepted_once_even_across_a_restart() {
    let sim = start_sim(Duration::from_millis(100)).await;
    let state = std::env::temp_dir().join(format!(
        "idch-hardening-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let top = "[auth]\nhmac_timestamp_header = \"X-Grafana-Alerting-Timestamp\"\nhmac_max_skew = \"60s\"\n";
    let mut s = secrets(None);
    s.hmac_secret = Some(Secret::new("hmac-secret"));
    let config = config_with_state(&sim, &state, top, NO_COOLDOWN);
    let service = start_service(config.clone(), s.clone()).await;
    let http = reqwest::Client::new();
    let url = service.url();
    wait_synced(&http, &url, None).await;
    let ts = unix_now().to_string();

    let (status, _, error, _) = send(signed(&http, &url, Some(&ts), GRAFANA_FIRING)).await;
    assert_eq!(status, 200, "{error}");
    assert_eq!(desired(&http, &url).await, 2);
    for _ in 0..2 {
        let (status, ct, error, headers) =
            send(signed(&http, &url, Some(&ts), GRAFANA_FIRING)).await;
        assert_eq!((status, ct.as_str()), (401, JSON), "{error}");
        assert!(error.contains("replayed"), "{error}");
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("HMAC-SHA256") && challenge.contains("X-Grafana-Alerting-Timestamp"),
            "{challenge}"
        );
    }
    assert_eq!(desired(&http, &url).await, 2, "the replays moved nothing");

    // After a restart on the same state file the signature is still used up.
    service.stop().await.unwrap();
    let service = start_service(config, s.clone()).await;
    let url = service.url();
    wait_synced(&http, &url, None).await;
    let (status, _, error, _) = send(signed(&http, &url, Some(&ts), GRAFANA_FIRING)).await;
    assert_eq!(status, 401, "replayed after a restart: {error}");
    assert!(error.contains("replayed"), "{error}");
    assert_eq!(desired(&http, &url).await, 2);
    // What Grafana sends again legitimately carries a new timestamp, or a new body.
    let next = (unix_now() + 1).to_string();
    let (status, _, error, _) = send(signed(&http, &url, Some(&next), GRAFANA_FIRING)).await;
    assert_eq!(status, 200, "a new timestamp: {error}");
    let (status, _, error, _) = send(signed(&http, &url, Some(&ts), AM_FIRING)).await;
    assert_eq!(status, 200, "a new body: {error}");
    assert_eq!(desired(&http, &url).await, 4);
    service.stop().await.unwrap();

    // Without a timestamp header the same body is refused again within hmac_max_skew.
    let top = "[auth]\nhmac_max_skew = \"60s\"\n";
    let service = start_service(config_for(&sim, top, NO_COOLDOWN), s).await;
    let url = service.url();
    wait_synced(&http, &url, None).await;
    let before = desired(&http, &url).await;
    let (status, _, error, _) = send(signed(&http, &url, None, GRAFANA_FIRING)).await;
    assert_eq!(status, 200, "{error}");
    let (status, _, error, _) = send(signed(&http, &url, None, GRAFANA_FIRING)).await;
    assert_eq!(status, 401, "{error}");
    assert!(error.contains("replayed"), "{error}");
    assert_eq!(desired(&http, &url).await, before + 1);
    service.stop().await.unwrap();
    sim.shutdown().await;
    let _ = std::fs::remove_file(&state);
}

// ---- 7. Slow clients are cut off --------------------------------------------------------------

/// Reads until the server closes the connection; returns what it sent, or `None` if it was still
/// open after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_cut_off_while_others_are_served() {
    let sim = start_sim(Duration::from_millis(100)).await;
    let top = "[http]\nheader_timeout = \"1s\"\nrequest_timeout = \"2s\"\nmax_connections = 3\n";
    let service = start_service(config_for(&sim, top, ""), secrets(None)).await;
    let http = reqwest::Client::new();
    let url = service.url();
    wait_synced(&http, &url, None).await;

    // Half a header, then nothing (slowloris): closed within the header timeout, while other
    // requests are served meanwhile.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(service.addr).await.unwrap();
    stalled
        .write_all(b"POST /v1/scale-up HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    for _ in 0..3 {
        let r = http.get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "served at once"
    );
    let closed = read_until_closed(&mut stalled, Duration::from_secs(4)).await;
    let after = started.elapsed();
    assert!(closed.is_some(), "a stalled header is still open after 4 s");
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "closed after {after:?}, header_timeout is 1 s"
    );

    // A whole header but a body that never comes: 408 in JSON after the request timeout.
    let started = Instant::now();
    let mut slow_body = TcpStream::connect(service.addr).await.unwrap();
    slow_body
        .write_all(
            b"POST /v1/scale-up HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"status\":",
        )
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow_body, Duration::from_secs(5))
        .await
        .expect("a stalled body is cut off");
    let after = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("application/json") && answer.contains("request_timeout"),
        "{answer}"
    );
    assert!(after >= Duration::from_millis(1900), "{after:?}");

    // max_connections = 3: three silent connections take every slot, so a fourth client waits
    // until the header timeout frees one, and is then served.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(service.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let fresh = reqwest::Client::new();
    let r = fresh.get(format!("{url}/healthz")).send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(r.status(), 200);
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(4),
        "the fourth connection waited {waited:?}; the limit is 3 and header_timeout 1 s"
    );
    for mut s in silent {
        assert!(
            read_until_closed(&mut s, Duration::from_secs(3))
                .await
                .is_some(),
            "a silent connection is closed"
        );
    }
    assert_eq!(desired(&http, &url).await, 1, "nothing was scaled");
    service.stop().await.unwrap();
    sim.shutdown().await;
}

// ---- 8. Content-Type and Content-Encoding -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_must_be_declared_as_uncompressed_json() {
    let sim = start_sim(Duration::from_millis(100)).await;
    let service = start_service(config_for(&sim, "", NO_COOLDOWN), secrets(None)).await;
    let http = reqwest::Client::new();
    let url = service.url();
    wait_synced(&http, &url, None).await;
    let up = format!("{url}/v1/scale-up");
    let cases: Vec<(reqwest::RequestBuilder, &str)> = vec![
        (
            http.post(&up)
                .header("content-type", "text/plain")
                .body(AM_FIRING),
            "application/json",
        ),
        (
            http.post(&up)
                .header("content-type", "image/png")
                .body(AM_FIRING),
            "application/json",
        ),
        (http.post(&up).body(AM_FIRING), "without a Content-Type"),
        (
            http.post(&up)
                .header("content-type", JSON)
                .header("content-encoding", "gzip")
                .body(&b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"[..]),
            "uncompressed",
        ),
        (
            http.put(format!("{url}/v1/pools/calculate/desired"))
                .header("content-type", "text/plain")
                .body(r#"{"size":3}"#),
            "application/json",
        ),
    ];
    for (i, (req, says)) in cases.into_iter().enumerate() {
        let (status, ct, error, _) = send(req).await;
        assert_eq!((status, ct.as_str()), (415, JSON), "case {i}: {error}");
        assert!(error.contains(says), "case {i}: {error}");
    }
    assert_eq!(desired(&http, &url).await, 1, "nothing changed");
    // What Grafana and Alertmanager send, with or without a charset; and an empty body.
    for ct in [JSON, "application/json; charset=utf-8"] {
        let (status, _, error, _) =
            send(http.post(&up).header("content-type", ct).body(AM_FIRING)).await;
        assert_eq!(status, 200, "{ct}: {error}");
    }
    let (status, _, error, _) = send(http.post(&up)).await;
    assert_eq!(status, 200, "an empty body needs no type: {error}");
    assert_eq!(desired(&http, &url).await, 4);
    service.stop().await.unwrap();
    sim.shutdown().await;
}

// ---- 9. Auth answers: challenges and a single Authorization header -----------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenges_name_the_configured_schemes_and_two_authorizations_are_refused() {
    let sim = start_sim(Duration::from_millis(100)).await;
    let mut s = secrets(Some("read-token"));
    s.basic = Some(("grafana".into(), Secret::new("basic-pw")));
    let service = start_service(config_for(&sim, "", NO_COOLDOWN), s).await;
    let http = reqwest::Client::new();
    let url = service.url();
    wait_synced(&http, &url, Some("read-token")).await;
    let up = format!("{url}/v1/scale-up");

    // Only basic auth is configured: the challenge says Basic, not Bearer.
    let (status, ct, error, headers) = send(http.post(&up)).await;
    assert_eq!((status, ct.as_str()), (401, JSON), "{error}");
    let challenges: Vec<&str> = headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        challenges,
        ["Basic realm=\"idch-autoscaler\", charset=\"UTF-8\""]
    );
    // The read endpoints take a bearer token, and say so.
    let (status, _, _, headers) = send(http.get(format!("{url}/v1/pools"))).await;
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));

    // Two Authorization headers, the right one first or second: 400, nothing changes.
    let good = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "grafana:basic-pw"
        )
    );
    for pair in [
        [good.as_str(), "Basic bm9wZTpub3Bl"],
        ["Basic bm9wZTpub3Bl", good.as_str()],
    ] {
        let (status, ct, error, _) = send(
            http.post(&up)
                .header("authorization", pair[0])
                .header("authorization", pair[1]),
        )
        .await;
        assert_eq!((status, ct.as_str()), (400, JSON), "{error}");
        assert!(
            error.contains("more than one authorization header"),
            "{error}"
        );
    }
    let (status, _, error, _) = send(
        http.get(format!("{url}/v1/pools"))
            .header("authorization", "Bearer read-token")
            .header("authorization", "Bearer other"),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    let desired = pool_status(&http, &url, Some("read-token")).await["desired"].clone();
    assert_eq!(desired, 1, "nothing changed");
    let (status, _, error, _) = send(http.post(&up).header("authorization", good.as_str())).await;
    assert_eq!(status, 200, "one header is fine: {error}");
    service.stop().await.unwrap();

    // Bearer and HMAC configured: both challenges.
    let mut s = secrets(None);
    s.webhook_token = Some(Secret::new("hook"));
    s.hmac_secret = Some(Secret::new("hmac-secret"));
    let service = start_service(config_for(&sim, "", ""), s).await;
    let (status, _, _, headers) = send(http.post(format!("{}/v1/scale-up", service.url()))).await;
    assert_eq!(status, 401);
    let challenges: Vec<&str> = headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        challenges,
        [
            "Bearer realm=\"idch-autoscaler\"",
            "HMAC-SHA256 realm=\"idch-autoscaler\", header=\"X-Grafana-Alerting-Signature\""
        ]
    );
    service.stop().await.unwrap();
    sim.shutdown().await;
}

// ---- 8. What the real Alertmanager sends still passes every check ---------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_alertmanager_still_scales_through_the_strict_checks() {
    let sim = start_sim(Duration::from_millis(100)).await;
    let mut s = secrets(None);
    s.webhook_token = Some(Secret::new("am-token"));
    let service = start_service(config_for(&sim, "", NO_COOLDOWN), s).await;
    let http = reqwest::Client::new();
    let url = service.url();
    wait_synced(&http, &url, None).await;

    // The shipped routing, pointed at this service, with a short group_wait.
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut yml = std::fs::read_to_string(root.join("prometheus/alertmanager.yml")).unwrap();
    for (from, to) in [
        (
            "http://127.0.0.1:4000/v1/scale-up",
            format!("{url}/v1/scale-up"),
        ),
        (
            "http://127.0.0.1:4000/v1/scale-down",
            format!("{url}/v1/scale-down"),
        ),
        ("group_wait: 10s", "group_wait: 1s".to_string()),
    ] {
        assert!(yml.contains(from), "alertmanager.yml lost {from:?}");
        yml = yml.replace(from, &to);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alertmanager.yml"), yml).unwrap();
    std::fs::write(dir.path().join("idch-webhook-token"), "am-token").unwrap();
    let port = free_port();
    let args = vec![
        format!(
            "--config.file={}",
            dir.path().join("alertmanager.yml").display()
        ),
        format!("--storage.path={}", dir.path().join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--cluster.listen-address=".to_string(),
    ];
    let _am = Peer::spawn(
        "alertmanager",
        peer_bin("prometheus-alertmanager"),
        &args,
        dir,
    );
    let am = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(30), "alertmanager ready", || {
        let (http, am) = (http.clone(), am.clone());
        async move {
            let r = http.get(format!("{am}/-/ready")).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    let alert = serde_json::json!([{
        "labels": {"alertname": "AutoscalerScaleUp", "autoscale": "up", "pool": "calculate"},
        "annotations": {"summary": "hardening test"},
    }]);
    let r = http
        .post(format!("{am}/api/v2/alerts"))
        .json(&alert)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    eventually(
        Duration::from_secs(20),
        "Alertmanager's notification accepted",
        || {
            let (http, url) = (http.clone(), url.clone());
            async move { (desired(&http, &url).await == 2).then_some(()) }
        },
    )
    .await;
    let log = activity_log(&http, &url).await;
    assert!(
        log.iter().any(|a| a["action"] == "scale_up"
            && a["outcome"] == "accepted"
            && a["cause"]
                .as_str()
                .unwrap()
                .contains("alertmanager: AutoscalerScaleUp")),
        "{log:?}"
    );
    service.stop().await.unwrap();
    sim.shutdown().await;
}
