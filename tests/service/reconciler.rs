//! The reconciler against a slow or unlucky cloud: probes and drains never wait for a cloud
//! call, two VMs that share a name are one surplus VM, and a restart adopts what it finds
//! without announcing ready clones again.

use std::time::{Duration, Instant};

use crate::common::{self, *};
use idch_autoscaler::sim::{Faults, SimHandle};

async fn wait_ready(http: &reqwest::Client, url: &str, n: usize) -> serde_json::Value {
    common::wait_ready(http, url, n, Duration::from_secs(30)).await
}

/// Waits for a draining backend; its (uuid, ip).
async fn wait_draining(http: &reqwest::Client, url: &str) -> (String, String) {
    eventually(Duration::from_secs(5), "a drain", || async move {
        let s = pool_status(http, url, None).await;
        s["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["state"] == "draining")
            .map(|b| {
                (
                    b["uuid"].as_str().unwrap().to_string(),
                    b["ip"].as_str().unwrap().to_string(),
                )
            })
    })
    .await
}

/// The server URLs of `/traefik`, fetched as any client (not as Traefik).
async fn traefik_servers(http: &reqwest::Client, url: &str) -> Vec<String> {
    fetch_traefik(http, url, "test").await
}

/// `/traefik` fetched with a User-Agent (Traefik's provider sends `Go-http-client/1.1`).
async fn fetch_traefik(http: &reqwest::Client, url: &str, user_agent: &str) -> Vec<String> {
    let doc: serde_json::Value = http
        .get(format!("{url}/traefik"))
        .header("user-agent", user_agent)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    doc["http"]["services"]["calculate"]["loadBalancer"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["url"].as_str().unwrap().to_string())
        .collect()
}

/// What Traefik's HTTP provider sends as its User-Agent.
const TRAEFIK: &str = "Go-http-client/1.1";

fn backend<'a>(s: &'a serde_json::Value, uuid: &str) -> Option<&'a serde_json::Value> {
    s["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["uuid"] == uuid)
}

fn vm_pid(sim: &SimHandle, uuid: &str) -> u32 {
    sim.state()
        .vms
        .iter()
        .find(|v| v.uuid == uuid)
        .and_then(|v| v.pid)
        .expect("the VM's workload runs")
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_drains_keep_their_pace_while_every_cloud_call_takes_5s() {
    let app = TestApp::builder()
        .config(|c| c.cloud.timeout = Duration::from_secs(10))
        .spawn()
        .await;
    let (http, url, sim) = (app.http.clone(), app.url.clone(), &app.sim);
    app.set_desired(3).await;
    let s = wait_ready(&http, &url, 3).await;
    let clones: Vec<(String, String)> = s["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["role"] == "clone")
        .map(|b| {
            (
                b["uuid"].as_str().unwrap().to_string(),
                b["ip"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(clones.len(), 2);

    // From now on every API call (list, get, delete, IP release) takes 5 s.
    sim.set_faults(Faults {
        latency: Duration::from_secs(5),
        ..Faults::default()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A scale-down: the victim (the newest clone) is out of /traefik within one publish.
    let t = Instant::now();
    set_desired(&http, &url, 2, None).await;
    let (victim, victim_ip) = wait_draining(&http, &url).await;
    let servers = traefik_servers(&http, &url).await;
    let drained_after = t.elapsed();
    assert!(
        !servers
            .iter()
            .any(|s| s.contains(&format!("//{victim_ip}:"))),
        "{servers:?}"
    );
    assert!(
        drained_after < Duration::from_secs(1),
        "out of Traefik {drained_after:?} after the PUT"
    );

    // While the drain's delete (and every list) is stuck in the slow cloud, the other clone
    // stops answering: it leaves /traefik within unhealthy_threshold (2) x interval (200 ms) plus
    // one interval, with the probe timeout (150 ms) and a margin for a busy machine.
    let (sick, sick_ip) = clones.iter().find(|(u, _)| *u != victim).unwrap().clone();
    tokio::time::sleep(Duration::from_secs(3)).await; // the drain is over: its delete is in flight
    let pid = vm_pid(sim, &sick);
    signal(pid, "-STOP");
    let t = Instant::now();
    eventually(
        Duration::from_secs(10),
        "the frozen clone unhealthy",
        || {
            let (http, url, sick) = (http.clone(), url.clone(), sick.clone());
            async move {
                let s = pool_status(&http, &url, None).await;
                backend(&s, &sick)
                    .is_some_and(|b| b["state"] == "unhealthy")
                    .then_some(())
            }
        },
    )
    .await;
    let unhealthy_after = t.elapsed();
    let servers = traefik_servers(&http, &url).await;
    signal(pid, "-CONT");
    assert!(
        !servers.iter().any(|s| s.contains(&format!("//{sick_ip}:"))),
        "{servers:?}"
    );
    assert!(
        unhealthy_after < Duration::from_millis(1500),
        "unhealthy only {unhealthy_after:?} after it stopped answering"
    );
    let deleting = pool_status(&http, &url, None).await;
    assert!(
        backend(&deleting, &victim).is_some_and(|b| b["state"] == "deleting"),
        "the victim's delete was still in flight: {deleting}"
    );
    sim.set_faults(Faults::default());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_vms_with_one_name_are_one_surplus_vm() {
    let app = TestApp::spawn().await;
    let (http, url, sim) = (app.http.clone(), app.url.clone(), &app.sim);
    app.set_desired(2).await;
    let s = wait_ready(&http, &url, 2).await;
    let name = s["backends"][1]["name"].as_str().unwrap().to_string();
    // A second VM under the same name, as a clone call that finished after we gave up on it.
    let late = app.cloud().clone_vm(&sim.seed_uuid(), &name).await.unwrap();
    // Until the duplicate is gone, Traefik always has the seed and one clone named `name`.
    let started = Instant::now();
    let mut min_servers = usize::MAX;
    loop {
        min_servers = min_servers.min(traefik_servers(&http, &url).await.len());
        let vms = sim.state().vms;
        if vms.len() == 2 && started.elapsed() > Duration::from_secs(1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the duplicate is still there: {:?}",
            vms.iter().map(|v| (&v.name, &v.uuid)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(min_servers, 2, "one surplus VM drained, never both");
    let vms = sim.state().vms;
    assert!(
        vms.iter().any(|v| v.name == name),
        "one VM named {name} is left"
    );
    let s = wait_ready(&http, &url, 2).await;
    assert_eq!(s["size"], 2);
    let acts = activity_log(&http, &url).await;
    let drains = acts.iter().filter(|a| a["action"] == "drain").count();
    assert_eq!(drains, 1, "{acts:#?}");
    assert!(
        acts.iter()
            .any(|a| a["action"] == "adopted" && a["detail"].as_str().unwrap().contains(&late.uuid)),
        "the duplicate was adopted first: {acts:#?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_adopts_what_it_finds_and_does_not_announce_ready_clones_again() {
    let mut app = TestApp::spawn().await;
    let http = app.http.clone();
    app.set_desired(2).await;
    wait_ready(&http, &app.url, 2).await;
    let count = |acts: &[serde_json::Value], action: &str| {
        acts.iter().filter(|a| a["action"] == action).count()
    };
    let before = activity_log(&http, &app.url).await;
    assert_eq!(count(&before, "ready"), 1);
    assert_eq!(count(&before, "adopted"), 1, "the seed, at the first start");
    app.stop_service().await;

    app.start_service().await;
    app.wait_synced().await;
    let url = app.url.clone();
    wait_ready(&http, &url, 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = activity_log(&http, &url).await;
    let new = &after[..after.len() - before.len()];
    assert_eq!(count(new, "adopted"), 2, "one per VM found: {new:#?}");
    assert_eq!(count(new, "ready"), 0, "no clone re-announced: {new:#?}");
    // A clone made after the restart is announced as usual.
    app.set_desired(3).await;
    wait_ready(&http, &url, 3).await;
    let last = activity_log(&http, &url).await;
    assert_eq!(count(&last, "ready"), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_survives_a_restart_even_when_desired_rises_again() {
    let mut app = TestApp::builder()
        .config(|c| c.pools[0].drain_period = Duration::from_secs(4))
        .spawn()
        .await;
    let http = app.http.clone();
    app.set_desired(3).await;
    wait_ready(&http, &app.url, 3).await;
    app.set_desired(2).await;
    let (victim, ip) = wait_draining(&http, &app.url).await;
    // Desired back up during the drain, with a clone call that answers only long after the
    // restart: after it, three VMs exist for a desired size of three, so the planner has no
    // surplus to drain and only the persisted drain keeps the VM out of Traefik.
    app.sim.set_faults(Faults {
        clone_late: Duration::from_secs(8),
        ..Faults::default()
    });
    app.set_desired(3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.stop_service().await;
    app.sim.set_faults(Faults::default());
    app.start_service().await;
    app.wait_synced().await;
    let url = app.url.clone();
    let started = Instant::now();
    loop {
        let servers = traefik_servers(&http, &url).await;
        assert!(
            !servers.iter().any(|s| s.contains(&format!("//{ip}:"))),
            "the drained VM is back in /traefik: {servers:?}"
        );
        let s = pool_status(&http, &url, None).await;
        if backend(&s, &victim).is_none() && !app.sim.state().vms.iter().any(|v| v.uuid == victim) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_whose_clone_call_had_no_answer_is_never_reused_and_its_late_vm_is_adopted() {
    // The client gives up after 2 s; the cloud creates the VM 6 s after the call.
    let app = TestApp::builder()
        .faults(Faults {
            clone_late: Duration::from_secs(6),
            ..Faults::default()
        })
        .spawn()
        .await;
    let http = app.http.clone();
    app.set_desired(2).await;
    eventually(Duration::from_secs(10), "the clone call timed out", || {
        let (http, url) = (http.clone(), app.url.clone());
        async move {
            activities(&http, &url)
                .await
                .iter()
                .any(|(a, o)| a == "clone" && o == "unknown")
                .then_some(())
        }
    })
    .await;
    app.sim.set_faults(Faults::default());
    // The next clone takes the next number; the late VM appears under the first and is adopted,
    // and the surplus is drained: two VMs in the end, and no name was ever given to two VMs.
    let s = eventually(Duration::from_secs(40), "converged", || {
        let (http, url) = (http.clone(), app.url.clone());
        let sim = &app.sim;
        async move {
            let s = pool_status(&http, &url, None).await;
            let history = sim.state().history;
            (history.len() == 3
                && sim.state().vms.len() == 2
                && ready_names(&s).len() == 2
                && s["size"] == 2)
                .then_some(s)
        }
    })
    .await;
    let history = app.sim.state().history;
    let mut names: Vec<&str> = history.iter().map(|h| h.name.as_str()).collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "a name was cloned twice: {history:?}");
    assert_eq!(s["size"], 2);
    let acts = activity_log(&http, &app.url).await;
    let adopted: Vec<_> = acts.iter().filter(|a| a["action"] == "adopted").collect();
    assert!(
        adopted
            .iter()
            .any(|a| a["detail"].as_str().unwrap().contains("clone-1 ")),
        "the late clone-1 was adopted: {acts:#?}"
    );
    assert!(
        acts.iter().any(|a| a["action"] == "clone"
            && a["outcome"] == "not_created"
            && a["detail"].as_str().unwrap().contains("not reused")),
        "{acts:#?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_call_in_flight_at_a_restart_never_has_its_name_reused() {
    let mut app = TestApp::builder()
        .faults(Faults {
            clone_late: Duration::from_secs(3),
            ..Faults::default()
        })
        .spawn()
        .await;
    let http = app.http.clone();
    app.set_desired(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Stopped while the clone call is in flight: the call's outcome is never seen by this run.
    app.stop_service().await;
    app.sim.set_faults(Faults::default());
    app.start_service().await;
    app.wait_synced().await;
    let url = app.url.clone();
    eventually(Duration::from_secs(30), "converged", || {
        let (http, url) = (http.clone(), url.clone());
        let sim = &app.sim;
        async move {
            let s = pool_status(&http, &url, None).await;
            (sim.state().history.len() == 3
                && sim.state().vms.len() == 2
                && ready_names(&s).len() == 2)
                .then_some(())
        }
    })
    .await;
    let history = app.sim.state().history;
    let mut names: Vec<&str> = history.iter().map(|h| h.name.as_str()).collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "a name was cloned twice: {history:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_waits_for_traefik_to_fetch_a_configuration_without_the_vm() {
    // drain_period 3 s, Traefik's poll interval 1 s (the harness's configuration).
    let mut app = TestApp::spawn().await;
    let http = app.http.clone();
    // Traefik has polled us once: from now on (and after a restart) drains wait for its fetch.
    fetch_traefik(&http, &app.url, TRAEFIK).await;
    app.set_desired(2).await;
    wait_ready(&http, &app.url, 2).await;
    app.stop_service().await;
    app.start_service().await;
    app.wait_synced().await;
    let url = app.url.clone();
    app.set_desired(1).await;
    let t0 = Instant::now();
    // Traefik does not fetch /traefik (another client does): well past the drain period, the VM
    // is still there.
    for _ in 0..10 {
        traefik_servers(&http, &url).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        app.sim.state().vms.len(),
        2,
        "deleted before Traefik saw the drain"
    );
    let s = pool_status(&http, &url, None).await;
    assert!(
        s["backends"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["state"] == "draining"),
        "{s}"
    );
    // Traefik fetches: the VM goes max(drain_period - poll_interval, 2 s) later.
    let fetched = Instant::now();
    fetch_traefik(&http, &url, TRAEFIK).await;
    eventually(Duration::from_secs(10), "deleted after the fetch", || {
        let sim = &app.sim;
        async move { (sim.state().vms.len() == 1).then_some(()) }
    })
    .await;
    let after = fetched.elapsed();
    assert!(
        after >= Duration::from_millis(1900) && after < Duration::from_secs(5),
        "deleted {after:?} after the fetch ({:?} after the PUT)",
        t0.elapsed()
    );
    app.stop().await;
}
