//! The warm pool against the simulator: clones made, booted once and stopped; started by a
//! scale-up (through the health gate) instead of cloning; stopped back into it on scale-in when
//! it is short; replaced when too old or made before a refresh; a failed start falls back to a
//! clone; and a restart in the middle of a start or of a stop loses and double-counts nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::*;
use idch_autoscaler::sim::Faults;

fn calls(app: &TestApp, op: &str) -> u64 {
    app.sim.state().calls.get(op).copied().unwrap_or(0)
}

/// The uuids of the backends in `state`, from the status API.
fn in_state(status: &serde_json::Value, state: &str) -> BTreeSet<String> {
    status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["state"] == state)
        .map(|b| b["uuid"].as_str().unwrap().to_string())
        .collect()
}

/// The uuids the simulator reports `stopped`.
fn stopped_in_sim(app: &TestApp) -> BTreeSet<String> {
    app.sim
        .state()
        .vms
        .iter()
        .filter(|v| v.status == "stopped")
        .map(|v| v.uuid.clone())
        .collect()
}

/// Waits until the status shows `n` warm clones that the simulator has stopped; returns them.
async fn wait_warm(app: &TestApp, n: usize, limit: Duration) -> BTreeSet<String> {
    eventually(limit, &format!("{n} warm clones"), || async {
        let s = app.pool_status().await;
        let warm = in_state(&s, "warm");
        (warm.len() == n && s["warm_pool"]["warm"] == n && warm == stopped_in_sim(app))
            .then_some(warm)
    })
    .await
}

/// Waits until exactly `n` backends are ready, whatever the warm pool is doing.
async fn wait_serving(app: &TestApp, n: usize, limit: Duration) -> serde_json::Value {
    eventually(limit, &format!("{n} ready"), || async {
        let s = app.pool_status().await;
        (in_state(&s, "ready").len() == n).then_some(s)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_pool_is_cloned_booted_once_and_stopped_and_kept_out_of_traefik_and_prometheus() {
    let app = TestApp::builder()
        .pool("warm_pool = { size = 2 }\n")
        .spawn()
        .await;
    let warm = wait_warm(&app, 2, Duration::from_secs(30)).await;
    let s = app.pool_status().await;
    assert_eq!(s["desired"], 1, "warm clones are not part of desired: {s}");
    assert_eq!(s["warm_pool"]["size"], 2);
    assert_eq!(ready_names(&s), ["calculate-service"]);
    assert_eq!(calls(&app, "vm_clone"), 2);
    assert_eq!(calls(&app, "vm_stop"), 2);
    // Each passed its health gate before it was stopped (it booted once).
    let acts = app.activities().await;
    assert_eq!(
        acts.iter()
            .filter(|(a, o)| a == "stop" && o == "ok")
            .count(),
        2,
        "{acts:?}"
    );
    // Never in Traefik's list, never scraped.
    let traefik = get_text(&app.http, &app.endpoint("/traefik")).await;
    let targets = get_text(&app.http, &app.endpoint("/prometheus/targets")).await;
    for vm in app
        .sim
        .state()
        .vms
        .iter()
        .filter(|v| warm.contains(&v.uuid))
    {
        assert!(!traefik.contains(&vm.name), "{traefik}");
        assert!(!traefik.contains(&vm.address.to_string()), "{traefik}");
        assert!(!targets.contains(&vm.name), "{targets}");
    }
    assert!(targets.contains("calculate-service"), "{targets}");
    // Steady: nothing more is cloned or stopped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(calls(&app, "vm_clone"), 2);
    assert_eq!(wait_warm(&app, 2, Duration::from_secs(5)).await, warm);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_up_starts_a_warm_clone_through_the_health_gate_and_the_pool_refills() {
    let app = TestApp::builder()
        // A clone boots in 8 s, a start takes 0.5 s.
        .boot_delay(Duration::from_secs(8))
        .sim(|o| o.start_delay = Some(Duration::from_millis(500)))
        .pool("warm_pool = { size = 1 }\n")
        .spawn()
        .await;
    let warm = wait_warm(&app, 1, Duration::from_secs(40)).await;
    let clones = calls(&app, "vm_clone");
    app.set_desired(2).await;
    // Served well before a clone could boot: it is the warm clone.
    let s = wait_serving(&app, 2, Duration::from_secs(6)).await;
    assert!(
        in_state(&s, "ready").is_superset(&warm),
        "the warm clone serves: {s}"
    );
    assert_eq!(calls(&app, "vm_start"), 1);
    let acts = app.activities().await;
    assert!(
        acts.iter().any(|(a, o)| a == "start" && o == "ok"),
        "{acts:?}"
    );
    assert!(
        acts.iter().any(|(a, o)| a == "ready" && o == "ok"),
        "the started clone passed the health gate: {acts:?}"
    );
    // The warm pool refills in the background, by cloning.
    let refilled = wait_warm(&app, 1, Duration::from_secs(40)).await;
    assert!(refilled.is_disjoint(&warm));
    assert_eq!(calls(&app, "vm_clone"), clones + 1);
    let s = app.pool_status().await;
    assert_eq!(s["desired"], 2);
    assert_eq!(in_state(&s, "ready").len(), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_in_stops_drained_clones_back_into_a_short_warm_pool() {
    // At max, a scale-up starts both warm clones and nothing refills them.
    let app = TestApp::builder()
        .pool("max = 3\nwarm_pool = { size = 2 }\n")
        .spawn()
        .await;
    let warm = wait_warm(&app, 2, Duration::from_secs(30)).await;
    app.set_desired(3).await;
    let s = wait_ready(&app.http, &app.url, 3, Duration::from_secs(20)).await;
    assert!(in_state(&s, "ready").is_superset(&warm));
    assert!(in_state(&s, "warm").is_empty());
    let clones = calls(&app, "vm_clone");
    app.set_desired(1).await;
    // Drained first (out of Traefik), then stopped, not deleted.
    let back = wait_warm(&app, 2, Duration::from_secs(30)).await;
    assert_eq!(back, warm);
    assert_eq!(calls(&app, "vm_delete"), 0);
    assert_eq!(calls(&app, "vm_clone"), clones);
    let acts = app.activities().await;
    assert!(
        acts.iter().filter(|(a, _)| a == "drain").count() >= 2,
        "{acts:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_clone_older_than_max_age_is_replaced() {
    let app = TestApp::builder()
        .pool("warm_pool = { size = 1, max_age = \"3s\" }\n")
        .spawn()
        .await;
    let first = wait_warm(&app, 1, Duration::from_secs(30)).await;
    let second = eventually(Duration::from_secs(30), "a fresh warm clone", || async {
        let s = app.pool_status().await;
        let warm = in_state(&s, "warm");
        (warm.len() == 1 && warm.is_disjoint(&first)).then_some(warm)
    })
    .await;
    assert!(second.is_disjoint(&first));
    let gone = app
        .sim
        .state()
        .history
        .iter()
        .filter(|h| first.contains(&h.uuid))
        .all(|h| h.deleted().is_some());
    assert!(gone, "the old one is deleted");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_replaces_warm_clones_made_before_it() {
    let app = TestApp::builder()
        .pool("warm_pool = { size = 1 }\n")
        .spawn()
        .await;
    let old = wait_warm(&app, 1, Duration::from_secs(30)).await;
    let resp = app
        .http
        .post(app.pool_url("/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let new = eventually(Duration::from_secs(40), "the refresh done", || async {
        let s = app.pool_status().await;
        let warm = in_state(&s, "warm");
        (s["refresh"]["state"] == "done" && warm.len() == 1 && warm.is_disjoint(&old))
            .then_some(warm)
    })
    .await;
    assert!(new.is_disjoint(&old));
    let s = app.pool_status().await;
    assert_eq!(s["desired"], 1, "{s}");
    assert_eq!(ready_names(&s), ["calculate-service"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_fails_or_never_passes_the_gate_is_deleted_and_the_scale_up_clones() {
    for faults in [
        Faults {
            start_fails: true,
            ..Faults::default()
        },
        Faults {
            start_never_boots: true,
            ..Faults::default()
        },
    ] {
        let app = TestApp::builder()
            .pool("boot_timeout = \"3s\"\nwarm_pool = { size = 1 }\n")
            .spawn()
            .await;
        let warm = wait_warm(&app, 1, Duration::from_secs(30)).await;
        app.sim.set_faults(faults.clone());
        app.set_desired(2).await;
        let s = wait_serving(&app, 2, Duration::from_secs(30)).await;
        let ready = in_state(&s, "ready");
        assert!(ready.is_disjoint(&warm), "{faults:?}: {s}");
        let gone = app
            .sim
            .state()
            .history
            .iter()
            .filter(|h| warm.contains(&h.uuid))
            .all(|h| h.deleted().is_some());
        assert!(gone, "{faults:?}: the warm clone that failed is deleted");
        assert_eq!(s["desired"], 2);
        app.stop().await;
    }
}

/// Every API call takes 2 s from now on (until [`restart_during`]).
fn slow_calls(app: &TestApp) {
    app.sim.set_faults(Faults {
        latency: Duration::from_secs(2),
        ..Faults::default()
    });
}

/// Restarts the service once a backend is in `state` (its call held by [`slow_calls`]), and
/// returns once the service runs again, with the calls fast again.
async fn restart_during(app: &mut TestApp, what: &str, state: &str) {
    eventually(Duration::from_secs(20), what, || async {
        let s = app.pool_status().await;
        (!in_state(&s, state).is_empty()).then_some(())
    })
    .await;
    app.stop_service().await;
    app.sim.set_faults(Faults::default());
    app.start_service().await;
    app.wait_synced().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_start_counts_the_clone_once() {
    let mut app = TestApp::builder()
        .boot_delay(Duration::from_secs(4))
        .sim(|o| o.start_delay = Some(Duration::from_millis(500)))
        .pool("max = 2\nwarm_pool = { size = 1 }\n")
        .spawn()
        .await;
    let warm = wait_warm(&app, 1, Duration::from_secs(40)).await;
    slow_calls(&app);
    app.set_desired(2).await;
    restart_during(&mut app, "a start under way", "starting").await;
    let s = wait_ready(&app.http, &app.url, 2, Duration::from_secs(30)).await;
    assert!(in_state(&s, "ready").is_superset(&warm), "{s}");
    // At max (2): no clone was made for it, and nothing is left over.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sim = app.sim.state();
    assert_eq!(sim.vms.len(), 2, "{:?}", sim.vms);
    assert_eq!(app.pool_status().await["desired"], 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_stop_leaves_the_clone_warm_and_counted_once() {
    let mut app = TestApp::builder()
        .pool("max = 2\nwarm_pool = { size = 1 }\n")
        .spawn()
        .await;
    let warm = wait_warm(&app, 1, Duration::from_secs(30)).await;
    app.set_desired(2).await;
    wait_ready(&app.http, &app.url, 2, Duration::from_secs(20)).await;
    slow_calls(&app);
    app.set_desired(1).await;
    // The drained clone is being stopped back into the warm pool when the service stops.
    restart_during(&mut app, "a stop under way", "stopping").await;
    let back = wait_warm(&app, 1, Duration::from_secs(30)).await;
    assert_eq!(back, warm);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = app.pool_status().await;
    assert_eq!(s["desired"], 1);
    assert_eq!(ready_names(&s), ["calculate-service"]);
    assert_eq!(app.sim.state().vms.len(), 2, "nothing cloned or lost");
    assert_eq!(calls(&app, "vm_delete"), 0);
    app.stop().await;
}
