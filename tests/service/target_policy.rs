//! Target tracking wired end to end with the real Prometheus: the tracker reads the pool's query,
//! the recommendation changes desired within bounds (recorded with the metric in its cause and
//! shown in the status and `/metrics`), webhooks answer `ignored_policy` unless `allow_webhooks`,
//! an operator's `PUT` holds the policy for `manual_hold`, and a Prometheus that stops answering
//! changes nothing.
//!
//! The query is a constant (`vector(90)`), so the metric is exactly known: with a target of 60
//! the formula asks for ceil(1.5 × ready) VMs, 1 → 2 → 3 (then `max`).

use std::time::Duration;

use crate::common::*;

async fn webhook(app: &TestApp, direction: &str) -> serde_json::Value {
    let r = app
        .http
        .post(app.endpoint(&format!("/v1/{direction}")))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.unwrap()
}

async fn desired_is(app: &TestApp, n: u64, limit: Duration) -> serde_json::Value {
    eventually(limit, &format!("desired {n}"), || async {
        let s = app.pool_status().await;
        (s["desired"] == n).then_some(s)
    })
    .await
}

fn pool_lines(port: u16, query: &str, extra: &str) -> String {
    format!(
        "max = 3\nscale_up_cooldown = \"0s\"\nscale_down_cooldown = \"0s\"\n\
         [pool.target]\nprometheus_url = \"http://127.0.0.1:{port}\"\nquery = '{query}'\n\
         target = 60\ninterval = \"300ms\"\ntimeout = \"250ms\"\nscale_down_stabilization = \"0s\"\n\
         readiness_delay = \"0s\"\n\
         manual_hold = \"4s\"\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracker_follows_the_formula_holds_for_an_operator_and_ignores_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let (mut prometheus, port) =
        start_prometheus(dir, "global:\n  evaluation_interval: 15s\n", &[]).await;
    let app = TestApp::builder()
        .pool(&pool_lines(port, "vector(90)", ""))
        .spawn()
        .await;
    // 1 -> 2 -> 3, each once the new VM is ready (only ready backends count).
    let s = desired_is(&app, 3, Duration::from_secs(30)).await;
    let last = &s["target"]["last"];
    assert_eq!(last["metric"], 90.0, "{s}");
    assert_eq!(s["target"]["target"], 60.0);
    let acts = activity_log(&app.http, &app.url).await;
    let targets: Vec<&serde_json::Value> =
        acts.iter().filter(|a| a["action"] == "target").collect();
    assert_eq!(targets.len(), 2, "one activity per change: {acts:?}");
    for a in &targets {
        let cause = a["cause"].as_str().unwrap();
        assert!(
            cause.contains("metric 90") && cause.contains("target 60"),
            "{cause}"
        );
    }
    assert_eq!(targets[1]["detail"], "desired 1 -> 2");
    assert_eq!(targets[0]["detail"], "desired 2 -> 3");
    wait_ready(&app.http, &app.url, 3, Duration::from_secs(30)).await;
    let s = eventually(Duration::from_secs(10), "at max", || async {
        let s = app.pool_status().await;
        (s["target"]["last"]["reason"] == "at_max").then_some(s)
    })
    .await;
    assert_eq!(s["target"]["last"]["recommendation"], 3);
    assert_eq!(s["target"]["last"]["ready"], 3);
    let metrics = metrics_text(&app.http, &app.url).await;
    for line in [
        "idch_autoscaler_target_metric{pool=\"calculate\"} 90",
        "idch_autoscaler_target_value{pool=\"calculate\"} 60",
        "idch_autoscaler_target_recommendation{pool=\"calculate\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // Webhooks do not fight the policy: 2xx, nothing changes.
    let v = webhook(&app, "scale-down").await;
    assert_eq!(v["decision"], "ignored_policy", "{v}");
    assert_eq!(app.pool_status().await["desired"], 3);

    // An operator's PUT works and holds the policy for manual_hold (4 s).
    let v = app.set_desired(1).await;
    assert_eq!(v["decision"], "accepted", "{v}");
    let s = app.pool_status().await;
    assert!(s["target"]["manual_hold_until"].is_string(), "{s}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = app.pool_status().await;
    assert_eq!(s["desired"], 1, "held: {s}");
    assert_eq!(s["target"]["last"]["applied"], "manual_hold", "{s}");
    // ... then the policy takes over again.
    desired_is(&app, 3, Duration::from_secs(40)).await;

    // Prometheus stops: no recommendation, nothing changes.
    prometheus.stop();
    let s = eventually(Duration::from_secs(10), "a query error", || async {
        let s = app.pool_status().await;
        (s["target"]["last"]["reason"] == "query_error").then_some(s)
    })
    .await;
    assert!(s["target"]["last"]["error"].is_string(), "{s}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = app.pool_status().await;
    assert_eq!(s["desired"], 3, "{s}");
    assert_eq!(
        s["target"]["last"]["recommendation"],
        serde_json::Value::Null
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_allow_webhooks_a_webhook_holds_until_the_next_recommendation() {
    let dir = tempfile::tempdir().unwrap();
    let (_prometheus, port) =
        start_prometheus(dir, "global:\n  evaluation_interval: 15s\n", &[]).await;
    // The metric is on target (60): the recommendation is whatever desired is.
    let app = TestApp::builder()
        .pool(&pool_lines(port, "vector(60)", "allow_webhooks = true\n"))
        .spawn()
        .await;
    eventually(
        Duration::from_secs(10),
        "a first recommendation",
        || async {
            let s = app.pool_status().await;
            (s["target"]["last"]["reason"] == "within_tolerance").then_some(())
        },
    )
    .await;
    let v = webhook(&app, "scale-up").await;
    assert_eq!(v["decision"], "accepted", "{v}");
    wait_ready(&app.http, &app.url, 2, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = app.pool_status().await;
    assert_eq!(
        s["desired"], 2,
        "within tolerance the webhook's size stays: {s}"
    );
    assert_eq!(s["target"]["last"]["recommendation"], 2);
    app.stop().await;
}
