//! `GET /v1/pools/{pool}/cost` and the `pool_vm_seconds` / `pool_cost` metrics: the service's
//! own lifecycle record of its VMs, checked against the simulator's history of what existed when.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::common::*;

const RUNNING: f64 = 0.02882;

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn secs(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_milliseconds() as f64 / 1000.0
}

async fn cost(app: &TestApp, query: &str) -> (u16, serde_json::Value) {
    let resp = app
        .http
        .get(app.pool_url(&format!("/cost{query}")))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// VM-seconds the simulator's history gives in `[since, until]`: each VM from its creation to
/// its deletion (or `until`).
fn sim_seconds(app: &TestApp, since: DateTime<Utc>, until: DateTime<Utc>) -> f64 {
    app.sim
        .state()
        .history
        .iter()
        .map(|h| {
            let start = h.created().unwrap().max(since);
            let end = h.deleted().unwrap_or(until).min(until);
            secs(start, end).max(0.0)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_out_and_in_costs_the_lifetimes_the_simulator_saw() {
    let app = TestApp::spawn().await;
    let since = Utc::now();
    app.set_desired(3).await;
    wait_ready(&app.http, &app.url, 3, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.set_desired(1).await;
    eventually(Duration::from_secs(30), "the clones deleted", || async {
        let h = app.sim.state().history;
        (h.iter().filter(|h| !h.seed).count() == 2
            && h.iter().all(|h| h.seed || h.deleted().is_some()))
        .then_some(())
    })
    .await;
    // One more list, so that nothing the service knows is older than the deletes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let until = Utc::now();

    let (status, body) = cost(&app, &format!("?since={}&until={}", at(since), at(until))).await;
    assert_eq!(status, 200, "{body}");
    let expected = sim_seconds(&app, since, until);
    let running_h = body["vm_hours"]["running"].as_f64().unwrap();
    let stopped_h = body["vm_hours"]["stopped"].as_f64().unwrap();
    // The service sees a clone at its first list after the clone exists (lists every 300 ms)
    // and closes it when its delete answers: a little less than the simulator's, never more.
    let seen = running_h * 3600.0;
    assert!(
        seen <= expected + 0.5 && seen >= expected - 4.0,
        "service {seen} s, simulator {expected} s: {body}"
    );
    assert_eq!(stopped_h, 0.0, "{body}");
    let cost_v = body["cost"].as_f64().unwrap();
    assert!((cost_v - running_h * RUNNING).abs() < 1e-12, "{body}");
    assert_eq!(body["peak_vms"], 3, "{body}");
    // The window as priced: the service's `until` is its own now when the test's was later.
    let window = |key: &str| {
        DateTime::parse_from_rfc3339(body[key].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    assert!(secs(since, window("since")).abs() < 0.002, "{body}");
    assert!(secs(window("until"), until) < 0.5, "{body}");
    let window_h = secs(window("since"), window("until")) / 3600.0;
    let fixed = body["fixed_peak_cost"].as_f64().unwrap();
    assert!((fixed - 3.0 * window_h * RUNNING).abs() < 1e-9, "{body}");
    assert!((body["saving"].as_f64().unwrap() - (fixed - cost_v)).abs() < 1e-12);
    assert!(body["saving"].as_f64().unwrap() > 0.0, "{body}");
    assert_eq!(body["currency"], "IDR");
    assert_eq!(body["prices"]["running_per_hour"], RUNNING);
    assert_eq!(body["prices"]["stopped_per_hour"], 0.0028);

    // The metrics count the same seconds (since the service started: the seed's few more).
    let text = metrics_text(&app.http, &app.url).await;
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let running_metric =
        value("idch_autoscaler_pool_vm_seconds_total{pool=\"calculate\",state=\"running\"}");
    assert!(running_metric >= seen - 1.0, "{running_metric} vs {seen}");
    assert_eq!(
        value("idch_autoscaler_pool_vm_seconds_total{pool=\"calculate\",state=\"stopped\"}"),
        0.0
    );
    let cost_metric = value("idch_autoscaler_pool_cost_total{pool=\"calculate\",currency=\"IDR\"}");
    assert!((cost_metric - running_metric * RUNNING / 3600.0).abs() < 1e-9);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intervals_survive_a_restart_and_a_vm_gone_meanwhile_is_closed_at_the_first_list() {
    let mut app = TestApp::builder()
        .pool("price = { running_per_hour = 3600, stopped_per_hour = 0, currency = \"USD\" }")
        .spawn()
        .await;
    let since = Utc::now();
    app.set_desired(3).await;
    wait_ready(&app.http, &app.url, 3, Duration::from_secs(30)).await;
    app.stop_service().await;
    // While the service is down, one clone is deleted behind its back.
    let client = client_for(&app.sim);
    let gone = app
        .sim
        .state()
        .history
        .iter()
        .find(|h| !h.seed)
        .unwrap()
        .uuid
        .clone();
    client.delete_vm(&gone).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.start_service().await;
    app.wait_synced().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let until = Utc::now();
    let (status, body) = cost(&app, &format!("?since={}&until={}", at(since), at(until))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["currency"], "USD");
    let expected = sim_seconds(&app, since, until);
    let seen = body["vm_hours"]["running"].as_f64().unwrap() * 3600.0;
    // Open intervals ran on through the downtime; the deleted clone counts until the new
    // run's first list (a few seconds more than the simulator's), and the clone the service
    // adds back counts from its first list.
    assert!(
        seen >= expected - 4.0 && seen <= expected + 8.0,
        "service {seen} s, simulator {expected} s: {body}"
    );
    // 3600 per hour: the cost is the seconds.
    assert!(
        (body["cost"].as_f64().unwrap() - seen).abs() < 1e-6,
        "{body}"
    );
    assert!(body["peak_vms"].as_u64().unwrap() >= 3, "{body}");

    // Once the pool is back to 3, exactly 3 VMs are open: the one deleted meanwhile was closed.
    wait_ready(&app.http, &app.url, 3, Duration::from_secs(30)).await;
    let since = Utc::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let until = Utc::now();
    let (_, body) = cost(&app, &format!("?since={}&until={}", at(since), at(until))).await;
    assert_eq!(body["peak_vms"], 3, "{body}");
    let seen = body["vm_hours"]["running"].as_f64().unwrap() * 3600.0;
    assert!((seen - 3.0 * secs(since, until)).abs() < 0.1, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_windows_are_refused_saying_why() {
    let app = TestApp::spawn().await;
    for (query, says) in [
        ("?since=yesterday", "since must be an RFC 3339 time"),
        (
            "?until=2026-13-01T00:00:00Z",
            "until must be an RFC 3339 time",
        ),
        (
            "?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            "must be before until",
        ),
        ("?since=2999-01-01T00:00:00Z", "in the future"),
        ("?from=2026-01-01T00:00:00Z", "unknown query parameter"),
    ] {
        let (status, body) = cost(&app, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(says), "{query}: {error}");
    }
    let resp = app
        .http
        .get(app.endpoint("/v1/pools/nope/cost"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // The default window: this month up to now, the seed running since the first list.
    let (status, body) = cost(&app, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["peak_vms"], 1, "{body}");
    assert!(
        body["vm_hours"]["running"].as_f64().unwrap() > 0.0,
        "{body}"
    );
    assert!(
        body["since"]
            .as_str()
            .unwrap()
            .ends_with("-01T00:00:00.000Z"),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_clone_is_billed_at_the_stopped_price() {
    let app = TestApp::spawn().await;
    app.set_desired(2).await;
    let s = wait_ready(&app.http, &app.url, 2, Duration::from_secs(30)).await;
    let clone = s["backends"][1]["uuid"].as_str().unwrap().to_string();
    let r = app
        .http
        .post(format!("{}/v1/jkt01/user-resource/vm/stop", app.sim.url()))
        .header("apikey", API_KEY)
        .form(&[("uuid", clone.as_str())])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    // A few lists later the service has switched the clone's interval to stopped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let since = Utc::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let until = Utc::now();
    let (status, body) = cost(&app, &format!("?since={}&until={}", at(since), at(until))).await;
    assert_eq!(status, 200, "{body}");
    let window = secs(since, until);
    let running = body["vm_hours"]["running"].as_f64().unwrap() * 3600.0;
    let stopped = body["vm_hours"]["stopped"].as_f64().unwrap() * 3600.0;
    // The seed runs, the clone is stopped, over the whole window.
    assert!((running - window).abs() < 0.05, "{window} s: {body}");
    assert!((stopped - window).abs() < 0.05, "{window} s: {body}");
    let expected = (running * RUNNING + stopped * 0.0028) / 3600.0;
    assert!(
        (body["cost"].as_f64().unwrap() - expected).abs() < 1e-12,
        "{body}"
    );
    assert_eq!(body["peak_vms"], 2, "{body}");
    let text = metrics_text(&app.http, &app.url).await;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with(
                "idch_autoscaler_pool_vm_seconds_total{pool=\"calculate\",state=\"stopped\"}",
            )
        })
        .unwrap();
    let counted: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(counted >= 2.0, "{line}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clouds_own_month_to_date_figures_are_shown_beside_ours() {
    // Without a billing account: no cloud figures.
    let app = TestApp::builder().spawn().await;
    let (status, body) = cost(&app, "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["billed"].is_null(), "{body}");
    app.stop().await;

    let mut app = TestApp::builder()
        .config(|c| c.cloud.billing_account_id = Some(1_200_211_740))
        .spawn()
        .await;
    app.set_desired(2).await;
    wait_ready(&app.http, &app.url, 2, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The fetch runs at start (then every 10 minutes): a restart reads both VMs.
    app.stop_service().await;
    app.start_service().await;
    app.wait_synced().await;
    let billed = eventually(
        Duration::from_secs(10),
        "charging/usage fetched",
        || async {
            let (_, body) = cost(&app, "").await;
            body["billed"]["vms"].as_u64().map(|_| body)
        },
    )
    .await;
    let b = &billed["billed"];
    assert_eq!(b["source"], "charging/usage");
    assert_eq!(b["vms"], 2, "the seed and the clone: {billed}");
    assert_eq!(b["month_to_date"], true);
    let cloud_hours = b["vm_hours"]["running"].as_f64().unwrap();
    let our_hours = billed["vm_hours"]["running"].as_f64().unwrap();
    assert!(cloud_hours > 0.0, "{billed}");
    // The simulator bills from creation (before our first list saw the VM) to its fetch.
    assert!(
        (cloud_hours - our_hours).abs() < 10.0 / 3600.0,
        "the cloud's {cloud_hours} h and ours {our_hours} h agree within seconds: {billed}"
    );
    let cloud_cost = b["cost"].as_f64().unwrap();
    assert!(
        (cloud_cost - cloud_hours * RUNNING).abs() < 1e-5,
        "{billed}"
    );
    app.stop().await;
}
