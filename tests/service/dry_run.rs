//! `GET /v1/pools/{pool}/plan` (the planner's steps and their reasons) and `run --dry-run` (the
//! steps recorded as activities with outcome `dry_run`, none taken), against the simulator.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::common::*;
use idch_autoscaler::sim::Faults;

/// The simulator's operations that change something. `vm_list`, `vm_get` and `ip_list` read.
const MUTATING: [&str; 7] = [
    "vm_clone",
    "vm_delete",
    "vm_start",
    "vm_stop",
    "vm_modify",
    "ip_delete",
    "ip_unassign",
];

/// Calls per operation made since `before`.
fn calls_since(before: &BTreeMap<String, u64>, app: &TestApp) -> BTreeMap<String, u64> {
    app.sim
        .state()
        .calls
        .into_iter()
        .map(|(op, n)| {
            let since = n - before.get(&op).copied().unwrap_or(0);
            (op, since)
        })
        .collect()
}

async fn traefik_servers(app: &TestApp) -> Vec<String> {
    let doc: serde_json::Value = app
        .http
        .get(app.endpoint("/traefik"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    doc["http"]["services"][POOL]["loadBalancer"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["url"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until the plan lists exactly `want` as (action, vm, reason); returns the plan.
async fn wait_plan(app: &TestApp, want: &[(&str, &str, &str)]) -> serde_json::Value {
    let want: Vec<serde_json::Value> = want
        .iter()
        .map(|(a, vm, r)| serde_json::json!({"action": a, "vm": vm, "reason": r}))
        .collect();
    let want = &want;
    eventually(
        Duration::from_secs(20),
        &format!("the plan to be {want:?}"),
        || async move {
            let (status, plan) = app.plan().await;
            (status == 200 && plan["steps"].as_array() == Some(want)).then_some(plan)
        },
    )
    .await
}

/// Activities recorded with outcome `dry_run` for `action` on `vm`.
async fn rehearsed(app: &TestApp, action: &str, vm: &str) -> Vec<serde_json::Value> {
    activity_log(&app.http, &app.url)
        .await
        .into_iter()
        .filter(|a| a["action"] == action && a["outcome"] == "dry_run")
        .filter(|a| a["detail"].as_str().is_some_and(|d| d.starts_with(vm)))
        .collect()
}

/// What the dry run is asked to do (a refresh request goes here too); the script pairs each with
/// the whole plan it must lead to.
enum Act {
    Desired(u32),
    /// `POST /v1/pools/{pool}/refresh`.
    Refresh,
}

impl Act {
    async fn run(&self, app: &TestApp) {
        match self {
            Act::Desired(n) => {
                app.set_desired(*n).await;
            }
            Act::Refresh => {
                let r = app
                    .http
                    .post(app.pool_url("/refresh"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_and_records_a_scale_up_a_scale_down_and_a_refresh_and_makes_no_mutating_call(
) {
    // The seed and one clone exist, made by a normal run that is then stopped.
    let mut app = TestApp::spawn().await;
    app.set_desired(2).await;
    wait_ready(&app.http, &app.url, 2, Duration::from_secs(30)).await;
    app.stop_service().await;
    let before = app.sim.state().calls;
    let vms_before = app.sim.state().vms.len();

    app.set_dry_run(true);
    app.start_service().await;
    app.wait_synced().await;
    let status = wait_ready(&app.http, &app.url, 2, Duration::from_secs(15)).await;
    assert_eq!(status["dry_run"], true, "the status says it: {status}");
    let servers = traefik_servers(&app).await;
    assert_eq!(servers.len(), 2, "{servers:?}");

    let clone1 = "calculate-service-clone-1";
    let clone2 = "calculate-service-clone-2";
    // A new process does not know that the clone's public IP was released: it would check.
    let release = (
        "release_ip",
        clone1,
        "release_public_ip = true: the running clone's public IPs are released",
    );
    wait_plan(&app, &[release]).await;
    // Each act and the whole plan it must lead to. Every step in a plan is recorded (outcome
    // `dry_run`, its reason as the cause) once while it stays there, pass after pass; a step
    // that left the plan and came back is recorded again.
    let scale_up = ("clone", clone2, "below desired size (2 of 3)");
    let scale_down = ("drain", clone1, "above desired size (2 of 1)");
    let surge = (
        "clone",
        clone2,
        "refresh: a new clone before an old one goes (up to max_surge 1 above desired 2)",
    );
    let script = [
        (Act::Desired(3), vec![release, scale_up]),
        (Act::Desired(1), vec![release, scale_down]),
        (Act::Desired(3), vec![release, scale_up]),
        (Act::Desired(2), vec![release]),
        (Act::Refresh, vec![release, surge]),
    ];
    // How often each (action, vm) must have been recorded by then: once more each time it enters.
    let mut expected: HashMap<(&str, &str), usize> = HashMap::from([((release.0, release.1), 1)]);
    let mut previous = vec![release];
    for (act, steps) in script {
        act.run(&app).await;
        let app = &app;
        let plan = wait_plan(app, &steps).await;
        assert_eq!(plan["dry_run"], true, "{plan}");
        assert!(plan["computed_at"].is_string(), "{plan}");
        assert_eq!(plan["in_flight"], serde_json::json!([]), "{plan}");
        for &(action, vm, reason) in &steps {
            if !previous.iter().any(|p| (p.0, p.1) == (action, vm)) {
                *expected.entry((action, vm)).or_default() += 1;
            }
            let want = expected[&(action, vm)];
            let recorded = eventually(
                Duration::from_secs(10),
                &format!("{want} {action} {vm} activities with outcome dry_run"),
                || async move {
                    Some(rehearsed(app, action, vm).await).filter(|r| r.len() >= want)
                },
            )
            .await;
            assert_eq!(recorded[0]["cause"], reason, "{recorded:?}");
        }
        // A few more passes (lists every 300 ms, probes every 200 ms): nothing recorded again.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for &(action, vm, _) in &steps {
            let want = expected[&(action, vm)];
            assert_eq!(
                rehearsed(app, action, vm).await.len(),
                want,
                "{action} {vm}"
            );
        }
        previous = steps;
        // Nothing was done: the same VMs, both ready, both in /traefik.
        let status = app.pool_status().await;
        assert_eq!(ready_names(&status).len(), 2, "{status}");
        assert_eq!(status["size"], 2, "{status}");
        assert_eq!(
            status["provisioning"],
            serde_json::json!([]),
            "no clone call: {status}"
        );
        assert_eq!(traefik_servers(app).await, servers);
    }

    // The refresh's surge clone is the same (action, VM) as the scale-up's: a third stay.
    for ((action, vm, _), times) in [(release, 1), (scale_up, 3), (scale_down, 1)] {
        assert_eq!(
            rehearsed(&app, action, vm).await.len(),
            times,
            "{action} {vm}: recorded once per stay in the plan"
        );
    }
    app.stop_service().await;
    let calls = calls_since(&before, &app);
    for op in MUTATING {
        assert_eq!(calls.get(op).copied().unwrap_or(0), 0, "{op}: {calls:?}");
    }
    assert!(calls["vm_list"] > 0, "the dry run lists: {calls:?}");
    assert_eq!(
        app.sim.state().vms.len(),
        vms_before,
        "no VM created or deleted"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_shows_the_steps_just_taken_and_the_call_in_flight() {
    // The clone call takes 1.5 s before the VM exists: long enough to see it in flight.
    let app = TestApp::builder()
        .faults(Faults {
            clone_late: Duration::from_millis(1500),
            ..Faults::default()
        })
        .pool("release_public_ip = false")
        .spawn()
        .await;
    let (_, plan) = app.plan().await;
    assert_eq!(plan["dry_run"], false, "{plan}");
    assert_eq!(plan["steps"], serde_json::json!([]), "converged: {plan}");
    assert_eq!(plan["desired"], 1, "{plan}");
    app.set_desired(2).await;
    let vm = "calculate-service-clone-1";
    let r = &app;
    let plan = eventually(
        Duration::from_secs(10),
        "the clone in flight",
        || async move {
            let (_, plan) = r.plan().await;
            (plan["in_flight"].as_array().is_some_and(|a| !a.is_empty())).then_some(plan)
        },
    )
    .await;
    assert_eq!(
        plan["in_flight"],
        serde_json::json!([{"vm": vm, "key": vm, "call": "clone"}]),
        "{plan}"
    );
    assert_eq!(
        plan["steps"],
        serde_json::json!([{"action": "clone", "vm": vm, "reason": "below desired size (1 of 2)"}]),
        "{plan}"
    );
    assert_eq!(plan["desired"], 2, "{plan}");
    // Once the clone is ready: no call in flight; the steps last taken stay, with their reason.
    wait_ready(&app.http, &app.url, 2, Duration::from_secs(30)).await;
    let plan = eventually(
        Duration::from_secs(10),
        "no call in flight",
        || async move {
            let (_, plan) = r.plan().await;
            (plan["in_flight"] == serde_json::json!([])).then_some(plan)
        },
    )
    .await;
    assert_eq!(
        plan["steps"],
        serde_json::json!([{"action": "clone", "vm": vm, "reason": "below desired size (1 of 2)"}]),
        "{plan}"
    );
    assert!(
        app.activities()
            .await
            .iter()
            .all(|(_, outcome)| outcome != "dry_run"),
        "a normal run records no dry_run activity"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_is_503_until_synced_and_404_for_an_unknown_pool() {
    // The first list takes a while: the plan is not served before it.
    let app = TestApp::builder()
        .faults(Faults {
            latency: Duration::from_millis(1200),
            ..Faults::default()
        })
        .unsynced()
        .spawn()
        .await;
    let (status, body) = app.plan().await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not synced")),
        "{body}"
    );
    app.sim.set_faults(Faults::default());
    app.wait_synced().await;
    let (status, body) = app.plan().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pool"], POOL);
    let resp = app
        .http
        .get(app.endpoint("/v1/pools/nope/plan"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("nope")),
        "{body}"
    );
    app.stop().await;
}

#[test]
fn the_embedded_default_refuses_dry_run_clearly() {
    // Without --config the service would run its own simulator: there is nothing to protect, and
    // a dry run of it would only mislead. clap refuses before anything starts.
    let out = std::process::Command::new(workload_program())
        .args(["run", "--dry-run"])
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--config"), "{stderr}");
}
