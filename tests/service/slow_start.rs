//! Slow start (`slow_start` on a pool): a newly ready clone enters `/traefik` with a small weight
//! that rises to full, and the real Traefik sends it a share of the requests that grows with it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

/// The pool's servers in `/traefik`: (url, weight), seed first.
async fn servers(app: &TestApp) -> Option<Vec<(String, Option<u64>)>> {
    let resp = app.http.get(app.endpoint("/traefik")).send().await.ok()?;
    if resp.status() != 200 {
        return None;
    }
    let doc: serde_json::Value = resp.json().await.ok()?;
    let servers = doc["http"]["services"][POOL]["loadBalancer"]["servers"].as_array()?;
    Some(
        servers
            .iter()
            .map(|s| {
                (
                    s["url"].as_str().unwrap_or_default().to_string(),
                    s["weight"].as_u64(),
                )
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_clone_enters_traefik_with_rising_weights() {
    // 10 s against a 1 s poll: steps of 2 s (Traefik's throttle), 5 of them.
    let app = TestApp::builder()
        .pool("slow_start = \"10s\"")
        .spawn()
        .await;
    let app_ref = &app;
    eventually(
        Duration::from_secs(30),
        "the seed alone, at full weight",
        || async move {
            let s = servers(app_ref).await?;
            (s.len() == 1 && s[0].1 == Some(100)).then_some(())
        },
    )
    .await;
    app.set_desired(2).await;

    // Sample /traefik until the clone has full weight.
    let mut seen: Vec<u64> = Vec::new();
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the clone never reached full weight; weights seen: {seen:?}"
        );
        if let Some(s) = servers(&app).await {
            assert_eq!(s[0].1, Some(100), "the seed keeps its full weight: {s:?}");
            if let Some((_, w)) = s.get(1) {
                let w = w.expect("every server has a weight under slow start");
                if seen.last() != Some(&w) {
                    seen.push(w);
                }
                if w == 100 {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("clone weights over {:?}: {seen:?}", started.elapsed());
    assert!(seen.iter().all(|w| *w > 0), "never a weight of 0: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "weights only rise: {seen:?}"
    );
    assert!(
        seen.len() >= 6,
        "at least 5 ramp steps below full, then full: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&100));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_slow_start_traefik_gets_no_weights() {
    let app = TestApp::spawn().await;
    app.set_desired(2).await;
    wait_ready(&app.http, &app.url, 2, Duration::from_secs(20)).await;
    let body = app
        .http
        .get(app.endpoint("/traefik"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("http://"), "{body}");
    assert!(!body.contains("weight"), "unchanged document: {body}");
    app.stop().await;
}

/// One request through Traefik: when it was sent, who answered (empty on failure), its status.
type Sample = (Instant, String, u16);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_sends_a_ramping_clone_a_growing_share_and_no_request_fails() {
    let _heavy = cpu_heavy().await;
    // 12 s in 6 steps of 2 s: weights 14, 28, 42, 57, 71, 85 against the seed's 100.
    let app = TestApp::builder()
        .pool("slow_start = \"12s\"")
        .spawn()
        .await;
    let (mut traefik, web, _api) = start_traefik(&app.endpoint("/traefik"), None).await;
    let http = reqwest::Client::new();
    let seed = eventually(
        Duration::from_secs(20),
        "Traefik routes to the seed",
        || {
            let http = http.clone();
            async move {
                match calculate(&http, web).await {
                    Ok((200, who)) if !who.is_empty() => Some(who),
                    _ => None,
                }
            }
        },
    )
    .await;

    // A steady, bounded stream: two workers, one request each every ~25 ms, at most 50 s.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(50);
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (http, samples, stop) = (http.clone(), samples.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let at = Instant::now();
                let (who, status) = match calculate(&http, web).await {
                    Ok((status, who)) => (who, status),
                    Err(e) => (format!("error: {e}"), 0),
                };
                samples.lock().unwrap().push((at, who, status));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    app.set_desired(2).await;

    // When /traefik gives the clone full weight; Traefik has it within a poll and its throttle.
    let app_ref = &app;
    let full_at = eventually(
        Duration::from_secs(40),
        "the clone at full weight",
        || async move {
            let s = servers(app_ref).await?;
            (s.len() == 2 && s[1].1 == Some(100)).then(Instant::now)
        },
    )
    .await;
    let after_from = full_at + Duration::from_secs(2);
    let after_until = after_from + Duration::from_secs(6);
    while Instant::now() < after_until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    traefik.stop();

    let samples = samples.lock().unwrap().clone();
    let failed: Vec<&Sample> = samples.iter().filter(|s| s.2 != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failed.len(),
        samples.len(),
        failed.first()
    );
    let is_clone = |s: &Sample| s.1 != seed;
    let ramp_from = samples
        .iter()
        .filter(|s| is_clone(s))
        .map(|s| s.0)
        .min()
        .expect("the clone served requests");
    let share = |from: Instant, until: Instant| {
        let window: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.0 >= from && s.0 < until)
            .collect();
        let clone = window.iter().filter(|s| is_clone(s)).count();
        (clone as f64 / window.len().max(1) as f64, window.len())
    };
    let (ramp, ramp_n) = share(ramp_from, full_at);
    let (early, early_n) = share(ramp_from, ramp_from + Duration::from_secs(4));
    let (after, after_n) = share(after_from, after_until);
    eprintln!(
        "clone share: first 4 s of the ramp {early:.2} ({early_n} requests), whole ramp {ramp:.2} ({ramp_n}), after it {after:.2} ({after_n})"
    );
    assert!(
        ramp_n >= 100 && after_n >= 100,
        "enough requests: {ramp_n}, {after_n}"
    );
    assert!(
        (0.35..=0.65).contains(&after),
        "after the ramp the two share evenly: {after:.2}"
    );
    assert!(
        early < 0.3,
        "the clone's first steps get little: {early:.2}"
    );
    assert!(
        ramp < 0.8 * after,
        "during the ramp the clone's share ({ramp:.2}) is well below its share after ({after:.2})"
    );
    app.stop().await;
}
