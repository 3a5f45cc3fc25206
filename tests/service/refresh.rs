//! Rolling refresh: `POST` / `DELETE /v1/pools/{pool}/refresh`, surge first under a real k6 load
//! through the real Traefik, drift detection, a restart in the middle, and a refresh that fails
//! because its new clones never boot.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;

fn refresh_url(app: &TestApp) -> String {
    app.pool_url("/refresh")
}

async fn post_refresh(app: &TestApp, body: &str) -> (u16, serde_json::Value) {
    let mut request = app.http.post(refresh_url(app));
    if !body.is_empty() {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// A deploy: what the VM's app reports at `GET /version` becomes `version`.
async fn deploy(app: &TestApp, uuid: &str, version: &str) {
    let r = app
        .http
        .post(format!("{}/_sim/vms/{uuid}/version", app.sim.url()))
        .json(&serde_json::json!({ "version": version }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// The clones in the simulator: uuid and the version their app reports.
fn clones(app: &TestApp) -> Vec<(String, String)> {
    app.sim
        .state()
        .vms
        .iter()
        .filter(|v| !v.seed)
        .map(|v| (v.uuid.clone(), v.version.clone()))
        .collect()
}

async fn wait_refresh(app: &TestApp, limit: Duration, state: &str) -> serde_json::Value {
    eventually(limit, &format!("the refresh is {state}"), || async {
        let s = app.pool_status().await;
        (s["refresh"]["state"] == state).then(|| s["refresh"].clone())
    })
    .await
}

async fn wait_ready_count(app: &TestApp, n: usize) {
    eventually(Duration::from_secs(30), &format!("{n} ready"), || async {
        (ready_names(&app.pool_status().await).len() == n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_is_rolled_out_under_load_surge_first_and_drift_rolls_out_the_next_by_itself() {
    let _cpu = cpu_heavy().await;
    let drift = Arc::new(AtomicBool::new(false));
    let app_drift = drift.clone();
    // One port across the restart below: Traefik keeps polling the same URL.
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut app = TestApp::builder()
        .boot_delay(Duration::from_millis(300))
        .config(move |c| {
            c.listen = listen;
            c.traefik.poll_interval = Duration::from_secs(1);
            c.pools[0].drain_period = Duration::from_secs(2);
            c.pools[0].health.path = Some("/healthz".into());
            if app_drift.load(Ordering::SeqCst) {
                c.pools[0].refresh.version_path = Some("/version".into());
                c.pools[0].refresh.check_interval = Duration::from_secs(1);
            }
        })
        .spawn()
        .await;
    let seed = app.sim.seed_uuid();
    app.set_desired(4).await;
    wait_ready_count(&app, 4).await;
    let (traefik, web, _) = start_traefik(&format!("{}/traefik", app.url), None).await;
    eventually(
        Duration::from_secs(20),
        "traefik routes to all 4",
        || async {
            let mut seen = BTreeSet::new();
            for _ in 0..20 {
                seen.insert(calculate(&app.http, web).await.ok()?.1);
            }
            (seen.len() == 4).then_some(())
        },
    )
    .await;
    let old: BTreeSet<String> = clones(&app).into_iter().map(|(u, _)| u).collect();
    assert_eq!(old.len(), 3);

    // A constant load for 90 s, bounded by k6 itself.
    let k6_dir = tempfile::tempdir().unwrap();
    let summary = k6_dir.path().join("summary.json");
    let k6 = k6_load(
        web,
        &[
            "NUMBER=1",
            "BASE_RATE=20",
            "PEAK_RATE=20",
            "WARMUP=86s",
            "RAMP_UP=1s",
            "HOLD=1s",
            "RAMP_DOWN=1s",
            "COOLDOWN=1s",
            "PRE_VUS=10",
            "MAX_VUS=50",
            "GRACEFUL_STOP=5s",
            "P95_MS=5000",
        ],
        &summary,
        k6_dir.path(),
    )
    .output();
    let k6 = tokio::spawn(k6);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // ---- a deploy to the seed, then a refresh by hand --------------------------------------------
    deploy(&app, &seed, "2").await;
    let (status, body) = post_refresh(&app, r#"{"reason": "deploy v2"}"#).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["state"], "running");
    assert_eq!(body["total"], 3);
    assert!(
        body["reason"].as_str().unwrap().contains("deploy v2"),
        "{body}"
    );
    let (status, again) = post_refresh(&app, "").await;
    assert_eq!(status, 409, "one refresh at a time: {again}");
    assert_eq!(again["refresh"]["id"], body["id"]);

    let done = wait_refresh(&app, Duration::from_secs(60), "done").await;
    assert_eq!(
        (done["replaced"].clone(), done["total"].clone()),
        (3.into(), 3.into())
    );
    // Every old clone is gone once its drain is over; the seed stays, desired stays.
    eventually(
        Duration::from_secs(20),
        "the old clones are deleted",
        || async {
            let now: BTreeSet<String> = clones(&app).into_iter().map(|(u, _)| u).collect();
            (now.len() == 3 && now.is_disjoint(&old)).then_some(())
        },
    )
    .await;
    assert!(
        clones(&app).iter().all(|(_, v)| v == "2"),
        "{:?}",
        clones(&app)
    );
    let status = app.pool_status().await;
    assert_eq!(status["desired"], 4);
    assert_eq!(
        status["backends"][0]["uuid"],
        seed.as_str(),
        "the seed is untouched"
    );
    assert!(app.sim.state().vms.iter().any(|v| v.seed && v.uuid == seed));
    let acts = app.activities().await;
    assert!(
        acts.iter().any(|(a, o)| a == "refresh" && o == "done"),
        "{acts:?}"
    );

    // ---- drift detection on (a restart): a second deploy is rolled out by itself ---------------
    drift.store(true, Ordering::SeqCst);
    app.stop_service().await;
    app.start_service().await;
    app.wait_synced().await;
    let second_old: BTreeSet<String> = clones(&app).into_iter().map(|(u, _)| u).collect();
    deploy(&app, &seed, "3").await;
    let auto = eventually(
        Duration::from_secs(30),
        "drift starts a refresh",
        || async {
            let s = app.pool_status().await;
            (s["refresh"]["version"] == "3").then(|| s["refresh"].clone())
        },
    )
    .await;
    assert!(auto["reason"].as_str().unwrap().contains("drift"), "{auto}");
    let done = wait_refresh(&app, Duration::from_secs(60), "done").await;
    assert_eq!(done["id"], auto["id"]);
    eventually(
        Duration::from_secs(20),
        "the second old clones are deleted",
        || async {
            let now = clones(&app);
            let uuids: BTreeSet<String> = now.iter().map(|(u, _)| u.clone()).collect();
            (uuids.len() == 3
                && uuids.is_disjoint(&second_old)
                && now.iter().all(|(_, v)| v == "3"))
            .then_some(())
        },
    )
    .await;
    // Rolled out once: no second refresh for version 3.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.pool_status().await["refresh"]["id"], auto["id"]);
    assert_eq!(app.pool_status().await["desired"], 4);

    assert!(
        !k6.is_finished(),
        "k6 must still be running: the whole rollout was under load"
    );
    let out = tokio::time::timeout(Duration::from_secs(120), k6)
        .await
        .expect("k6 stops by itself")
        .unwrap()
        .expect("k6 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let metric = |m: &str, f: &str| summary["metrics"][m]["values"][f].as_f64().unwrap_or(-1.0);
    eprintln!("k6:\n{stdout}");
    assert!(
        metric("http_reqs", "count") > 1000.0,
        "a real load\n{stdout}"
    );
    assert_eq!(
        metric("http_req_failed", "rate"),
        0.0,
        "no failed request\n{stdout}"
    );
    drop(traefik);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_survives_a_restart_in_the_middle_and_a_cancel_stops_it() {
    let mut app = TestApp::builder()
        .boot_delay(Duration::from_millis(1500))
        .config(|c| c.pools[0].drain_period = Duration::from_secs(1))
        .spawn()
        .await;
    app.set_desired(3).await;
    wait_ready_count(&app, 3).await;
    let old: BTreeSet<String> = clones(&app).into_iter().map(|(u, _)| u).collect();
    let (status, started) = post_refresh(&app, "").await;
    assert_eq!(status, 202, "{started}");
    // The surge clone is booting: stop the service in the middle.
    eventually(Duration::from_secs(10), "a surge clone exists", || async {
        (clones(&app).len() == 3).then_some(())
    })
    .await;
    app.stop_service().await;
    app.start_service().await;
    app.wait_synced().await;
    let status = app.pool_status().await;
    assert_eq!(status["refresh"]["id"], started["id"], "{status}");
    // Still running (or, on a slow machine, already finished by the restarted service).
    assert!(
        ["running", "done"].contains(&status["refresh"]["state"].as_str().unwrap_or("")),
        "{status}"
    );
    let done = wait_refresh(&app, Duration::from_secs(60), "done").await;
    assert_eq!(done["replaced"], 2);
    eventually(Duration::from_secs(20), "old clones deleted", || async {
        let now: BTreeSet<String> = clones(&app).into_iter().map(|(u, _)| u).collect();
        (now.len() == 2 && now.is_disjoint(&old)).then_some(())
    })
    .await;

    // Cancel: nothing running is 409; a running one is cancelled and nothing more is replaced.
    let r = app.http.delete(refresh_url(&app)).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let (status, second) = post_refresh(&app, "").await;
    assert_eq!(status, 202, "{second}");
    let r = app.http.delete(refresh_url(&app)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cancelled: serde_json::Value = r.json().await.unwrap();
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(app.pool_status().await["refresh"]["state"], "cancelled");
    // The pool settles back at desired (a surge clone, if any, is drained as surplus).
    eventually(Duration::from_secs(30), "back at 3 VMs", || async {
        (app.sim.state().vms.len() == 3 && ready_names(&app.pool_status().await).len() == 3)
            .then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_clones_that_never_boot_fail_the_refresh_and_no_old_clone_goes() {
    let app = TestApp::builder()
        .config(|c| {
            c.pools[0].boot_timeout = Duration::from_secs(1);
            c.pools[0].drain_period = Duration::from_secs(1);
        })
        .spawn()
        .await;
    app.set_desired(3).await;
    wait_ready_count(&app, 3).await;
    let old: BTreeSet<String> = clones(&app).into_iter().map(|(u, _)| u).collect();
    app.sim.set_faults(sim_faults_never_boot());
    let (status, body) = post_refresh(&app, "").await;
    assert_eq!(status, 202, "{body}");
    let failed = wait_refresh(&app, Duration::from_secs(60), "failed").await;
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("failed their boot"),
        "{failed}"
    );
    assert_eq!(failed["replaced"], 0);
    // The old clones still serve; the failed new ones are deleted.
    eventually(
        Duration::from_secs(20),
        "only the old clones are left",
        || async {
            let now: BTreeSet<String> = clones(&app).into_iter().map(|(u, _)| u).collect();
            (now == old).then_some(())
        },
    )
    .await;
    assert_eq!(ready_names(&app.pool_status().await).len(), 3);
    app.stop().await;
}

fn sim_faults_never_boot() -> idch_autoscaler::sim::Faults {
    idch_autoscaler::sim::Faults {
        clone_never_boots: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn bad_refresh_requests_change_nothing() {
    let app = TestApp::spawn().await;
    for (body, want) in [
        (r#"{"size": 2}"#, 400),
        (r#"{"reason": ""}"#, 400),
        ("not json", 400),
    ] {
        let (status, answer) = post_refresh(&app, body).await;
        assert_eq!(status, want, "{body}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let r = app
        .http
        .post(format!("{}/v1/pools/nope/refresh", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .http
        .delete(refresh_url(&app))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a cancel takes no body");
    let r = app
        .http
        .delete(refresh_url(&app))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415, "a body must be declared JSON");
    assert!(app.pool_status().await["refresh"].is_null());
    // A pool of the seed alone: nothing to replace, done at once.
    let (status, body) = post_refresh(&app, "").await;
    assert_eq!(
        (status, body["state"].as_str()),
        (202, Some("done")),
        "{body}"
    );
    assert_eq!(body["total"], 0);
    app.stop().await;
}
