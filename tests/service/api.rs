//! The service's endpoints over HTTP, against the simulator.

use std::time::Duration;

use crate::common::*;
use idch_autoscaler::sim::Faults;

async fn get(http: &reqwest::Client, url: String) -> (u16, String, String) {
    let r = http.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_documents_are_503_until_the_first_reconcile_never_an_empty_200() {
    // The first list call takes a while: everything before it must be a 503.
    let app = TestApp::builder()
        .faults(Faults {
            latency: Duration::from_millis(800),
            ..Faults::default()
        })
        .unsynced()
        .spawn()
        .await;
    let (sim, http, url) = (&app.sim, app.http.clone(), app.url.clone());
    for path in ["/traefik", "/prometheus/targets", "/readyz"] {
        let (status, _, body) = get(&http, format!("{url}{path}")).await;
        assert_eq!(status, 503, "{path} before the first reconcile: {body}");
        assert!(body.contains("not"), "{path} says why: {body}");
    }
    let (status, _, _) = get(&http, format!("{url}/healthz")).await;
    assert_eq!(status, 200, "liveness does not wait");
    sim.set_faults(Faults::default());
    // Every 200 ever served carries the seed.
    let doc = eventually(Duration::from_secs(10), "/traefik 200", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let (status, ct, body) = get(&http, format!("{url}/traefik")).await;
            if status == 200 {
                assert_eq!(ct, "application/json");
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                return Some(v);
            }
            assert_eq!(status, 503);
            None
        }
    })
    .await;
    assert_eq!(
        doc["http"]["services"]["calculate"]["loadBalancer"]["servers"],
        serde_json::json!([{"url": format!("http://{}:3000", sim.seed_ip())}])
    );
    let (status, ct, body) = get(&http, format!("{url}/prometheus/targets")).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let targets: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        targets,
        serde_json::json!([{"targets": [format!("{}:9100", sim.seed_ip())],
            "labels": {"pool": "calculate", "role": "seed", "vm": "calculate-service"}}])
    );
    let (status, _, _) = get(&http, format!("{url}/readyz")).await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_gates_the_clone_on_health_and_a_vanished_clone_is_replaced() {
    let app = TestApp::builder()
        .boot_delay(Duration::from_millis(600))
        .spawn()
        .await;
    let (sim, http, url) = (&app.sim, app.http.clone(), app.url.clone());
    let r = http
        .post(format!("{url}/v1/scale-up"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (answer["decision"].as_str(), answer["desired"].as_u64()),
        (Some("accepted"), Some(2))
    );
    // The clone exists (booting) but is not in /traefik until healthy.
    let status = eventually(Duration::from_secs(5), "clone adopted", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let s = pool_status(&http, &url, None).await;
            (s["size"] == 2).then_some(s)
        }
    })
    .await;
    assert_eq!(status["backends"][1]["name"], "calculate-service-clone-1");
    assert_eq!(status["backends"][1]["state"], "booting");
    let (_, _, doc) = get(&http, format!("{url}/traefik")).await;
    assert_eq!(
        doc.matches("\"url\"").count(),
        1,
        "a booting clone is not routed: {doc}"
    );
    // Ready after its boot delay and two good probes.
    eventually(Duration::from_secs(10), "clone ready", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let (_, _, doc) = get(&http, format!("{url}/traefik")).await;
            (doc.matches("\"url\"").count() == 2).then_some(())
        }
    })
    .await;
    let s = pool_status(&http, &url, None).await;
    assert_eq!(
        ready_names(&s),
        ["calculate-service", "calculate-service-clone-1"],
        "seed first"
    );
    // Its public IP was released.
    let state = serde_json::to_value(sim.state()).unwrap();
    let clone_uuid = s["backends"][1]["uuid"].as_str().unwrap().to_string();
    assert!(
        !state["floating_ips"]
            .as_array()
            .unwrap()
            .iter()
            .any(|ip| ip["assigned_to"] == clone_uuid.as_str()),
        "release_public_ip: {state}"
    );
    // Deleted out of band: dropped, then replaced by a new clone with the smallest free name.
    client_for(sim).delete_vm(&clone_uuid).await.unwrap();
    let s = eventually(Duration::from_secs(15), "replacement ready", || {
        let (http, url, clone_uuid) = (http.clone(), url.clone(), clone_uuid.clone());
        async move {
            let s = pool_status(&http, &url, None).await;
            let ready = ready_names(&s);
            let replaced = s["backends"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["uuid"] != clone_uuid.as_str());
            (replaced && ready.len() == 2).then_some(s)
        }
    })
    .await;
    assert_eq!(
        ready_names(&s),
        ["calculate-service", "calculate-service-clone-1"]
    );
    let acts = activities(&http, &url).await;
    let actions: Vec<&str> = acts.iter().map(|(a, _)| a.as_str()).collect();
    assert!(actions.contains(&"vanished"), "{actions:?}");
    assert_eq!(
        actions.iter().filter(|a| **a == "clone").count(),
        2,
        "{actions:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_outage_keeps_the_last_good_view_and_shows_in_readyz_and_metrics() {
    let app = TestApp::builder().unsynced().spawn().await;
    let (sim, http, url) = (&app.sim, app.http.clone(), app.url.clone());
    let before = eventually(Duration::from_secs(10), "synced", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let (status, _, body) = get(&http, format!("{url}/traefik")).await;
            (status == 200 && body.contains("\"url\"")).then_some(body)
        }
    })
    .await;
    sim.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let problems = eventually(Duration::from_secs(10), "readyz reports the outage", || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let (status, _, body) = get(&http, format!("{url}/readyz")).await;
            (status == 503).then_some(body)
        }
    })
    .await;
    assert!(problems.contains("cloud unreachable"), "{problems}");
    let (_, ct, metrics) = get(&http, format!("{url}/metrics")).await;
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(
        metrics.contains("idch_autoscaler_cloud_up{pool=\"calculate\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("idch_autoscaler_reconcile_errors_total{pool=\"calculate\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("operation=\"list_vms\",status=\"500\""),
        "{metrics}"
    );
    // The documents still serve the last good view.
    let (status, _, during) = get(&http, format!("{url}/traefik")).await;
    assert_eq!((status, during.as_str()), (200, before.as_str()));
    let s = pool_status(&http, &url, None).await;
    assert_eq!(s["cloud_ok"], false);
    assert!(s["last_error"].as_str().unwrap().contains("500"));
    // Recovery.
    sim.set_faults(Faults::default());
    eventually(Duration::from_secs(10), "readyz recovers", || {
        let (http, url) = (http.clone(), url.clone());
        async move { (get(&http, format!("{url}/readyz")).await.0 == 200).then_some(()) }
    })
    .await;
    let (_, _, metrics) = get(&http, format!("{url}/metrics")).await;
    assert!(
        metrics.contains("idch_autoscaler_cloud_up{pool=\"calculate\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("idch_autoscaler_backends{pool=\"calculate\",state=\"ready\"} 1"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn status_endpoints_and_errors() {
    let app = TestApp::builder().unsynced().spawn().await;
    let (http, url) = (app.http.clone(), app.url.clone());
    let (status, ct, body) = get(&http, format!("{url}/v1/pools")).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["pools"][0]["name"], "calculate");
    assert_eq!(v["pools"][0]["min"], 1);
    assert_eq!(v["pools"][0]["max"], 5);
    let (status, _, body) = get(&http, format!("{url}/v1/pools/nope")).await;
    assert_eq!(status, 404);
    assert!(body.contains("nope"), "{body}");
    let (status, _, body) = get(&http, format!("{url}/no/such/thing")).await;
    assert_eq!(status, 404);
    assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"].is_string());
    app.stop().await;
}
