//! Webhooks over HTTP: every decision, concurrency, pool resolution, bad input, and auth.

use std::time::Duration;

use base64::Engine;

use crate::common::*;
use idch_autoscaler::config::Secret;
use idch_autoscaler::http::auth::sign;

const COOLDOWNS: &str = "scale_up_cooldown = \"1h\"\nscale_down_cooldown = \"1h\"\n";

async fn post(http: &reqwest::Client, url: String, body: &'static str) -> (u16, serde_json::Value) {
    let r = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

const GRAFANA_RESOLVED: &str = r#"{"receiver":"scale-up","status":"resolved","orgId":1,"alerts":[{"status":"resolved","labels":{"alertname":"PoolCPUHigh","pool":"calculate"},"annotations":{},"startsAt":"2026-01-01T10:00:00Z","endsAt":"2026-01-01T10:07:00Z","generatorURL":"","fingerprint":"6f1c2a9b0d3e4f55","silenceURL":"","dashboardURL":"","panelURL":"","values":{"A":0.2},"valueString":""}],"groupLabels":{"alertname":"PoolCPUHigh"},"commonLabels":{"alertname":"PoolCPUHigh","pool":"calculate"},"commonAnnotations":{},"externalURL":"http://grafana/","version":"1","groupKey":"{}:{}","truncatedAlerts":0,"title":"[RESOLVED]","state":"ok","message":""}"#;
const AM_RESOLVED: &str = r#"{"version":"4","groupKey":"{}:{alertname=\"PoolCPUHigh\"}","truncatedAlerts":0,"status":"resolved","receiver":"scale-up","groupLabels":{"alertname":"PoolCPUHigh"},"commonLabels":{"alertname":"PoolCPUHigh","pool":"calculate"},"commonAnnotations":{},"externalURL":"http://am","alerts":[{"status":"resolved","labels":{"alertname":"PoolCPUHigh","pool":"calculate"},"annotations":{},"startsAt":"2026-01-01T10:00:00Z","endsAt":"2026-01-01T10:05:00Z","generatorURL":"","fingerprint":"a1b2c3d4e5f60718"}]}"#;
const AM_FIRING: &str = r#"{"version":"4","groupKey":"{}:{}","truncatedAlerts":0,"status":"firing","receiver":"scale-up","groupLabels":{},"commonLabels":{"alertname":"PoolCPUHigh","pool":"calculate"},"commonAnnotations":{},"externalURL":"http://am","alerts":[{"status":"firing","labels":{"alertname":"PoolCPUHigh","pool":"calculate"},"annotations":{},"startsAt":"2026-01-01T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"a1b2c3d4e5f60718"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_and_every_bad_request() {
    let app = TestApp::builder().pool(COOLDOWNS).spawn().await;
    let (http, url) = (app.http.clone(), app.url.clone());

    // resolved notifications of both formats: ignored.
    for body in [GRAFANA_RESOLVED, AM_RESOLVED] {
        let (status, v) = post(&http, format!("{url}/v1/scale-up"), body).await;
        assert_eq!(
            (status, v["decision"].as_str(), v["desired"].as_u64()),
            (200, Some("ignored_resolved"), Some(1))
        );
    }
    // A scale-down at min.
    let (status, v) = post(&http, format!("{url}/v1/scale-down"), "").await;
    assert_eq!((status, v["decision"].as_str()), (200, Some("at_min")));
    // A firing Alertmanager notification: accepted.
    let (status, v) = post(&http, format!("{url}/v1/scale-up"), AM_FIRING).await;
    assert_eq!(
        (
            status,
            v["decision"].as_str(),
            v["desired"].as_u64(),
            v["previous"].as_u64()
        ),
        (200, Some("accepted"), Some(2), Some(1))
    );
    // The same alert repeated: cooldown, with the seconds left.
    let (status, v) = post(&http, format!("{url}/v1/pools/calculate/scale-up"), "").await;
    assert_eq!(
        (status, v["decision"].as_str(), v["desired"].as_u64()),
        (200, Some("cooldown"), Some(2))
    );
    let left = v["cooldown_seconds_left"].as_u64().unwrap();
    assert!((3590..=3600).contains(&left), "{left}");
    // A scale-down right after a scale-up waits too.
    let (_, v) = post(&http, format!("{url}/v1/scale-down?pool=calculate"), "").await;
    assert_eq!(v["decision"], "cooldown");

    // Unknown pools: 404, by path, query or label; nothing changes.
    let (status, v) = post(&http, format!("{url}/v1/pools/nope/scale-up"), "").await;
    assert_eq!(status, 404, "{v}");
    assert!(v["error"].as_str().unwrap().contains("nope"));
    let (status, _) = post(&http, format!("{url}/v1/scale-up?pool=nope"), "").await;
    assert_eq!(status, 404);
    let (status, _) = post(
        &http,
        format!("{url}/v1/scale-up"),
        r#"{"status":"firing","commonLabels":{"pool":"nope"}}"#,
    )
    .await;
    assert_eq!(status, 404);
    // Malformed bodies: 400 saying why; nothing changes.
    for body in [
        "{not json",
        "[1,2,3]",
        r#"{"status":"maybe"}"#,
        r#"{"alerts":"x"}"#,
    ] {
        let (status, v) = post(&http, format!("{url}/v1/scale-up"), body).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(v["error"].is_string());
    }
    // Oversized: 413.
    let big = format!(
        "{{\"status\":\"firing\",\"pad\":\"{}\"}}",
        "x".repeat(300 * 1024)
    );
    let r = http
        .post(format!("{url}/v1/scale-up"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Operator: out of bounds and malformed are 400; in bounds is accepted at once.
    let r = http
        .put(format!("{url}/v1/pools/calculate/desired"))
        .json(&serde_json::json!({"size": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .put(format!("{url}/v1/pools/calculate/desired"))
        .header("content-type", "application/json")
        .body(r#"{"size":"two"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let s = pool_status(&http, &url, None).await;
    assert_eq!(s["desired"], 2, "nothing changed by the bad requests");
    let v = set_desired(&http, &url, 5, None).await;
    assert_eq!(
        (v["decision"].as_str(), v["desired"].as_u64()),
        (Some("accepted"), Some(5))
    );
    let (_, v) = post(&http, format!("{url}/v1/scale-up"), "").await;
    assert_eq!(v["decision"], "at_max");
    let v = set_desired(&http, &url, 1, None).await;
    assert_eq!(v["desired"], 1);

    // The history, newest first, and the metrics.
    let list = activity_log(&http, &url).await;
    let decisions: Vec<(&str, &str)> = list
        .iter()
        .filter(|a| {
            ["scale_up", "scale_down", "set_desired"].contains(&a["action"].as_str().unwrap())
        })
        .map(|a| (a["action"].as_str().unwrap(), a["detail"].as_str().unwrap()))
        .collect();
    assert_eq!(
        &decisions[..3],
        [
            ("set_desired", "desired 5 -> 1"),
            ("set_desired", "desired 2 -> 5"),
            ("scale_up", "desired 1 -> 2")
        ]
    );
    assert!(
        list[2..].iter().any(|a| a["cause"]
            .as_str()
            .unwrap()
            .contains("alertmanager: PoolCPUHigh")),
        "{list:?}"
    );
    let metrics = metrics_text(&http, &url).await;
    assert!(metrics.contains(r#"idch_autoscaler_webhook_decisions_total{pool="calculate",direction="scale_up",decision="ignored_resolved"} 2"#), "{metrics}");
    assert!(
        metrics.contains(r#"idch_autoscaler_desired_size{pool="calculate"} 1"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_scale_ups_make_exactly_one_clone() {
    let app = TestApp::builder().pool(COOLDOWNS).spawn().await;
    let (sim, http, url) = (&app.sim, app.http.clone(), app.url.clone());
    let answers = futures::future::join_all((0..100).map(|_| {
        let (http, url) = (http.clone(), url.clone());
        async move { post(&http, format!("{url}/v1/scale-up"), "").await }
    }))
    .await;
    assert!(answers.iter().all(|(s, _)| *s == 200));
    let accepted = answers
        .iter()
        .filter(|(_, v)| v["decision"] == "accepted")
        .count();
    assert_eq!(accepted, 1, "exactly one webhook changes desired");
    assert!(answers.iter().all(|(_, v)| v["desired"] == 2));
    eventually(Duration::from_secs(10), "two ready", || {
        let (http, url) = (http.clone(), url.clone());
        async move { (ready_names(&pool_status(&http, &url, None).await).len() == 2).then_some(()) }
    })
    .await;
    // Give the reconciler a few more passes to misbehave, then count.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let state = serde_json::to_value(sim.state()).unwrap();
    assert_eq!(
        state["vms"].as_array().unwrap().len(),
        2,
        "seed + one clone: {state}"
    );
    assert_eq!(state["calls"]["vm_clone"], 1, "one clone call: {state}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_bearer_basic_and_grafana_hmac() {
    let top = "[auth]\nhmac_timestamp_header = \"X-Grafana-Alerting-Timestamp\"\nhmac_max_skew = \"60s\"\n";
    let app = TestApp::builder()
        .top(top)
        .pool("scale_up_cooldown = \"0s\"\n")
        .secrets(|secrets| {
            secrets.webhook_token = Some(Secret::new("hook-token"));
            secrets.basic = Some(("grafana".into(), Secret::new("basic-pw")));
            secrets.hmac_secret = Some(Secret::new("hmac-secret"));
        })
        .spawn()
        .await;
    let (http, url) = (app.http.clone(), app.url.clone());
    let up = format!("{url}/v1/scale-up");
    let desired = |http: reqwest::Client, url: String| async move {
        pool_status(&http, &url, None).await["desired"]
            .as_u64()
            .unwrap()
    };

    // Refused: nothing, a wrong token, wrong basic credentials, a bad signature, a stale one.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = AM_FIRING;
    let ts = now.to_string();
    let stale = (now - 120).to_string();
    let wrong_basic = base64::engine::general_purpose::STANDARD.encode("grafana:nope");
    let refused: Vec<reqwest::RequestBuilder> = vec![
        http.post(&up).body(body),
        http.post(&up).bearer_auth("wrong").body(body),
        http.post(&up)
            .header("authorization", format!("Basic {wrong_basic}"))
            .body(body),
        http.post(&up)
            .header(
                "X-Grafana-Alerting-Signature",
                sign("other-secret", Some(&ts), body.as_bytes()),
            )
            .header("X-Grafana-Alerting-Timestamp", &ts)
            .body(body),
        http.post(&up)
            .header(
                "X-Grafana-Alerting-Signature",
                sign("hmac-secret", Some(&stale), body.as_bytes()),
            )
            .header("X-Grafana-Alerting-Timestamp", &stale)
            .body(body),
        http.post(&up)
            .header(
                "X-Grafana-Alerting-Signature",
                sign("hmac-secret", None, body.as_bytes()),
            )
            .body(body),
        http.put(format!("{url}/v1/pools/calculate/desired"))
            .json(&serde_json::json!({"size": 3})),
    ];
    for (i, req) in refused.into_iter().enumerate() {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "case {i}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(
            v["error"].as_str().unwrap().starts_with("unauthorized"),
            "case {i}: {v}"
        );
        if i == 4 {
            assert!(v["error"].as_str().unwrap().contains("stale"), "{v}");
        }
    }
    assert_eq!(
        desired(http.clone(), url.clone()).await,
        1,
        "nothing changed"
    );

    // Accepted: each method once.
    let r = http
        .post(&up)
        .bearer_auth("hook-token")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(&up)
        .basic_auth("grafana", Some("basic-pw"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(&up)
        .header(
            "X-Grafana-Alerting-Signature",
            sign("hmac-secret", Some(&ts), body.as_bytes()),
        )
        .header("X-Grafana-Alerting-Timestamp", &ts)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(desired(http.clone(), url.clone()).await, 4);
    app.stop().await;
}

#[tokio::test]
async fn no_webhook_auth_on_a_public_address_is_refused_unless_allowed() {
    let sim = start_sim(Duration::from_millis(100)).await;
    let mut config = config_for(&sim, "", "");
    config.listen = "0.0.0.0:0".parse().unwrap();
    let err = idch_autoscaler::startup::Application::build(config.clone(), secrets(None))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("allow_unauthenticated"), "{err}");
    config.allow_unauthenticated = true;
    let app = idch_autoscaler::startup::Application::build(config.clone(), secrets(None))
        .await
        .unwrap();
    drop(app);
    let mut s = secrets(None);
    s.webhook_token = Some(Secret::new("t"));
    config.allow_unauthenticated = false;
    assert!(idch_autoscaler::startup::Application::build(config, s)
        .await
        .is_ok());
    sim.shutdown().await;
}
