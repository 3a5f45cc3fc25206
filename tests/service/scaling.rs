//! The reconciler acting against the simulator: boot failures, names, cloud faults, restarts.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::*;
use idch_autoscaler::sim::{Faults, SimHandle};

fn sim_vm_names(sim: &SimHandle) -> Vec<String> {
    let state = serde_json::to_value(sim.state()).unwrap();
    let mut names: Vec<String> = state["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn clone_calls(sim: &SimHandle) -> u64 {
    serde_json::to_value(sim.state()).unwrap()["calls"]["vm_clone"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_that_never_boots_is_deleted_after_boot_timeout_and_retried() {
    let app = TestApp::builder()
        .faults(Faults {
            clone_never_boots: true,
            ..Faults::default()
        })
        .pool("boot_timeout = \"1s\"\nmax = 2\n")
        .spawn()
        .await;
    let (sim, http, url) = (&app.sim, app.http.clone(), app.url.clone());
    set_desired(&http, &url, 2, None).await;
    // The first attempt fails its boot; a second attempt is made; never more than max VMs.
    let mut max_seen = 0;
    eventually(Duration::from_secs(15), "a second clone attempt", || {
        let names = sim_vm_names(sim);
        max_seen = max_seen.max(names.len());
        let calls = clone_calls(sim);
        async move { (calls >= 2).then_some(()) }
    })
    .await;
    assert!(max_seen <= 2, "max = 2 counts booting clones too");
    let acts = activities(&http, &url).await;
    assert!(
        acts.iter()
            .any(|(a, o)| a == "boot_failed" && o == "deleting"),
        "{acts:?}"
    );
    assert!(
        acts.iter().any(|(a, o)| a == "delete" && o == "ok"),
        "{acts:?}"
    );
    // Once clones boot again, the pool converges with exactly one clone.
    sim.set_faults(Faults::default());
    wait_ready(&http, &url, 2, Duration::from_secs(20)).await;
    assert_eq!(
        sim_vm_names(sim),
        ["calculate-service", "calculate-service-clone-1"]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_never_collide_and_the_newest_clone_goes_first() {
    let app = TestApp::spawn().await;
    let (sim, http, url) = (&app.sim, app.http.clone(), app.url.clone());
    set_desired(&http, &url, 4, None).await;
    let s = wait_ready(&http, &url, 4, Duration::from_secs(20)).await;
    assert_eq!(
        ready_names(&s),
        [
            "calculate-service",
            "calculate-service-clone-1",
            "calculate-service-clone-2",
            "calculate-service-clone-3"
        ]
    );
    // Delete clone 1 (the middle of the range) out of band and shrink by one: clone 3 (newest) is
    // drained, and the replacement of clone 1 takes the smallest free name again.
    let uuid1 = s["backends"][1]["uuid"].as_str().unwrap().to_string();
    set_desired(&http, &url, 3, None).await;
    client_for(sim).delete_vm(&uuid1).await.unwrap();
    let s = eventually(
        Duration::from_secs(25),
        "converged on 3 with fresh names",
        || {
            let (http, url, uuid1) = (http.clone(), url.clone(), uuid1.clone());
            async move {
                let s = pool_status(&http, &url, None).await;
                let ok = ready_names(&s).len() == 3
                    && s["size"] == 3
                    && s["backends"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|b| b["uuid"] != uuid1.as_str());
                ok.then_some(s)
            }
        },
    )
    .await;
    assert_eq!(
        ready_names(&s),
        [
            "calculate-service",
            "calculate-service-clone-1",
            "calculate-service-clone-2"
        ]
    );
    let names = sim_vm_names(sim);
    let unique: BTreeSet<_> = names.iter().collect();
    assert_eq!(
        unique.len(),
        names.len(),
        "no duplicate names in the cloud: {names:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_faults_converge_without_double_clones_or_orphans() {
    let app = TestApp::spawn().await;
    let (sim, http, url) = (&app.sim, app.http.clone(), app.url.clone());
    // A flaky, slow cloud.
    sim.set_faults(Faults {
        error_rate: 0.3,
        latency: Duration::from_millis(30),
        ..Faults::default()
    });
    set_desired(&http, &url, 3, None).await;
    wait_ready(&http, &url, 3, Duration::from_secs(40)).await;
    // A clone call that hangs past the client's timeout (2 s) but creates the VM: the
    // reconciler finds it by name instead of cloning again.
    sim.set_faults(Faults {
        clone_hang: Duration::from_secs(3),
        ..Faults::default()
    });
    set_desired(&http, &url, 4, None).await;
    wait_ready(&http, &url, 4, Duration::from_secs(40)).await;
    // The VM may be adopted from a list before the call times out; either way the timeout is
    // recorded and no second clone follows it.
    eventually(
        Duration::from_secs(10),
        "the hanging clone call noticed",
        || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let acts = activities(&http, &url).await;
                acts.iter()
                    .any(|(a, o)| a == "clone" && o == "unknown")
                    .then_some(())
            }
        },
    )
    .await;
    sim.set_faults(Faults::default());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = wait_ready(&http, &url, 4, Duration::from_secs(10)).await;
    let in_pool: BTreeSet<String> = s["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    let in_cloud: BTreeSet<String> = sim_vm_names(sim).into_iter().collect();
    assert_eq!(in_pool, in_cloud, "nothing orphaned, nothing cloned twice");
    // (Calls can number more than 3: a clone answered with an injected 500 is retried after a
    // re-list shows it did not happen. What counts is what exists.)
    assert_eq!(in_cloud.len(), 4);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_a_drain_finishes_it_and_never_routes_the_vm_again() {
    let mut app = TestApp::builder()
        .config(|c| c.pools[0].drain_period = Duration::from_secs(5))
        .spawn()
        .await;
    let (http, url) = (app.http.clone(), app.url.clone());
    set_desired(&http, &url, 2, None).await;
    let s = wait_ready(&http, &url, 2, Duration::from_secs(20)).await;
    let clone_ip = s["backends"][1]["ip"].as_str().unwrap().to_string();
    set_desired(&http, &url, 1, None).await;
    eventually(Duration::from_secs(5), "draining", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            (pool_status(&http, &url, None).await["backends"][1]["state"] == "draining")
                .then_some(())
        }
    })
    .await;
    app.stop_service().await;
    assert_eq!(
        sim_vm_names(&app.sim).len(),
        2,
        "the VM is still there, half drained"
    );

    app.start_service().await;
    let (sim, url) = (&app.sim, app.url.clone());
    // Watch /traefik until the VM is gone: it must never be routed again.
    let started = std::time::Instant::now();
    loop {
        let r = http.get(format!("{url}/traefik")).send().await.unwrap();
        if r.status() == 200 {
            let doc = r.text().await.unwrap();
            assert!(
                !doc.contains(&clone_ip),
                "a draining VM came back into rotation: {doc}"
            );
        }
        if sim_vm_names(sim).len() == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the drain did not finish after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = wait_ready(&http, &url, 1, Duration::from_secs(10)).await;
    assert_eq!(s["desired"], 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_a_boot_or_a_clone_call_finds_the_vm_by_name() {
    let mut app = TestApp::builder()
        .boot_delay(Duration::from_secs(2))
        .spawn()
        .await;
    let (http, url) = (app.http.clone(), app.url.clone());
    // Stop while the clone boots.
    set_desired(&http, &url, 2, None).await;
    eventually(Duration::from_secs(5), "clone booting", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            (pool_status(&http, &url, None).await["backends"][1]["state"] == "booting")
                .then_some(())
        }
    })
    .await;
    app.stop_service().await;
    app.start_service().await;
    let url = app.url.clone();
    wait_ready(&http, &url, 2, Duration::from_secs(15)).await;
    assert_eq!(
        clone_calls(&app.sim),
        1,
        "the booting clone was found again, not cloned twice"
    );

    // Stop while a clone call hangs (the VM gets created after we are gone).
    app.sim.set_faults(Faults {
        clone_hang: Duration::from_millis(1500),
        ..Faults::default()
    });
    set_desired(&http, &url, 3, None).await;
    eventually(Duration::from_secs(5), "clone call in flight", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let s = pool_status(&http, &url, None).await;
            (!s["provisioning"].as_array().unwrap().is_empty()).then_some(())
        }
    })
    .await;
    app.stop_service().await;
    app.sim.set_faults(Faults::default());
    app.start_service().await;
    let (sim, url) = (&app.sim, app.url.clone());
    wait_ready(&http, &url, 3, Duration::from_secs(20)).await;
    assert_eq!(
        clone_calls(sim),
        2,
        "the clone made during the restart was adopted by name"
    );
    assert_eq!(sim_vm_names(sim).len(), 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_unhealthy_for_too_long_is_drained_and_replaced() {
    let app = TestApp::builder()
        .pool("replace_unhealthy_after = \"1s\"\n")
        .spawn()
        .await;
    let (sim, http, url) = (&app.sim, app.http.clone(), app.url.clone());
    set_desired(&http, &url, 2, None).await;
    let s = wait_ready(&http, &url, 2, Duration::from_secs(20)).await;
    let sick = s["backends"][1]["uuid"].as_str().unwrap().to_string();
    // The app on the clone dies (the VM is stopped): probes fail from now on.
    let r = http
        .post(format!("{}/v1/jkt01/user-resource/vm/stop", sim.url()))
        .header("apikey", API_KEY)
        .form(&[("uuid", sick.as_str())])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let s = eventually(Duration::from_secs(20), "replaced", || {
        let (http, url, sick) = (http.clone(), url.clone(), sick.clone());
        async move {
            let s = pool_status(&http, &url, None).await;
            let gone = s["backends"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["uuid"] != sick.as_str());
            (gone && ready_names(&s).len() == 2).then_some(s)
        }
    })
    .await;
    assert_eq!(s["size"], 2);
    let acts = activities(&http, &url).await;
    assert!(
        acts.iter().any(|(a, _)| a == "replace_unhealthy"),
        "{acts:?}"
    );
    assert_eq!(sim_vm_names(sim).len(), 2, "the sick clone was deleted");
    app.stop().await;
}

/// The most clone calls the status showed in flight at once while the pool grows to `to`.
async fn peak_in_flight(app: &TestApp, to: usize, limit: Duration) -> usize {
    let mut peak = 0;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let status = app.pool_status().await;
        peak = peak.max(status["provisioning"].as_array().map_or(0, Vec::len));
        if ready_names(&status).len() == to {
            return peak;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not {to} ready within {limit:?}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_up_makes_its_clone_calls_in_parallel_up_to_max_concurrent_clones() {
    // Each clone call takes 2 s before the VM exists (a real clone call takes far longer).
    let late = Faults {
        clone_late: Duration::from_secs(2),
        ..Faults::default()
    };
    let app = TestApp::builder().faults(late.clone()).spawn().await;
    let started = std::time::Instant::now();
    app.set_desired(4).await;
    let peak = peak_in_flight(&app, 4, Duration::from_secs(30)).await;
    let parallel = started.elapsed();
    assert_eq!(
        peak, 3,
        "three calls at once (the default max_concurrent_clones)"
    );
    let names = sim_vm_names(&app.sim);
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(clone_calls(&app.sim), 3, "one call per VM");
    app.stop().await;

    let app = TestApp::builder()
        .faults(late)
        .pool("max_concurrent_clones = 1")
        .spawn()
        .await;
    let started = std::time::Instant::now();
    app.set_desired(4).await;
    let peak = peak_in_flight(&app, 4, Duration::from_secs(40)).await;
    let serial = started.elapsed();
    assert_eq!(peak, 1, "one call at a time");
    eprintln!("1 -> 4 ready: {parallel:?} with 3 calls at once, {serial:?} with 1");
    assert!(
        serial > parallel + Duration::from_secs(2),
        "three 2 s calls in a row take at least 4 s longer than at once: {serial:?} vs {parallel:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_parallel_clone_calls_are_in_flight_finds_every_vm_by_name() {
    let mut app = TestApp::builder()
        .faults(Faults {
            clone_late: Duration::from_secs(3),
            ..Faults::default()
        })
        .spawn()
        .await;
    app.set_desired(4).await;
    let flying = eventually(Duration::from_secs(10), "three calls in flight", || async {
        let status = app.pool_status().await;
        let names: Vec<String> = status["provisioning"]
            .as_array()
            .map(|a| a.iter().map(|n| n.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        (names.len() == 3).then_some(names)
    })
    .await;
    // The service dies with three calls in flight; the cloud finishes them anyway.
    app.stop_service().await;
    app.start_service().await;
    app.wait_synced().await;
    // Each late VM is found by the name its intent reserved and adopted (a list taken before
    // it appeared may have let a replacement go: the surplus is drained). The pool settles at
    // 4 with unique names and no orphan.
    eventually(
        Duration::from_secs(60),
        "4 VMs, all ready, none orphaned",
        || async {
            let names = sim_vm_names(&app.sim);
            let status = app.pool_status().await;
            let ready = ready_names(&status);
            (names.len() == 4
                && ready.len() == 4
                && status["backends"].as_array().unwrap().len() == 4)
                .then_some(())
        },
    )
    .await;
    let names = sim_vm_names(&app.sim);
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), 4, "{names:?}");
    let history = serde_json::to_value(app.sim.state()).unwrap()["history"].clone();
    for name in &flying {
        assert!(
            history
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["name"] == name.as_str()),
            "the call for {name} created its VM: {history}"
        );
    }
    app.stop().await;
}
