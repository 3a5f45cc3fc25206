//! Scheduled floors (`[[pool.schedule]]`) against the real service and the simulator: a window
//! that opens a few seconds after start raises desired, the status shows the open window and the
//! next opening, `/metrics` the floor, and a PUT below the floor is refused and changes nothing.

use std::time::Duration;

use chrono::{TimeZone, Timelike};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_raises_desired_at_its_opening_and_a_put_below_the_floor_is_refused() {
    // A cron expression with seconds for `now + 8 s`, written in Jakarta's time (UTC+7).
    let tz = chrono_tz::Asia::Jakarta;
    let opens = chrono::Utc::now().timestamp() + 8;
    let local = tz.timestamp_opt(opens, 0).unwrap();
    let cron = format!(
        "{} {} {} * * *",
        local.second(),
        local.minute(),
        local.hour()
    );
    let schedule = format!(
        "[[pool.schedule]]\nname = \"lunch\"\ncron = \"{cron}\"\ntimezone = \"Asia/Jakarta\"\nduration = \"1h\"\nmin = 2\n"
    );
    let app = TestApp::builder().pool(&schedule).spawn().await;
    let rfc = |t: i64| {
        chrono::Utc
            .timestamp_opt(t, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };

    let before = app.pool_status().await;
    if chrono::Utc::now().timestamp() < opens - 1 {
        assert_eq!(before["desired"], 1, "{before}");
        assert_eq!(
            before["schedule"],
            serde_json::json!({"floor": null, "open": [], "next": {"name": "lunch", "at": rfc(opens)}}),
            "{before}"
        );
    }

    let status = eventually(Duration::from_secs(30), "desired raised to 2", || async {
        let s = app.pool_status().await;
        (s["desired"] == 2).then_some(s)
    })
    .await;
    assert_eq!(
        status["schedule"],
        serde_json::json!({
            "floor": 2,
            "open": [{"name": "lunch", "opened": rfc(opens), "closes": rfc(opens + 3600), "min": 2}],
            "next": {"name": "lunch", "at": rfc(opens + 24 * 3600)},
        }),
        "{status}"
    );
    let log = activity_log(&app.http, &app.url).await;
    let raised = log
        .iter()
        .find(|a| a["action"] == "schedule")
        .expect("a schedule activity");
    assert_eq!(raised["cause"], "schedule lunch");
    assert_eq!(
        raised["detail"],
        format!("desired 1 -> 2 (window until {})", rfc(opens + 3600))
    );
    let metrics = metrics_text(&app.http, &app.url).await;
    assert!(
        metrics.contains("idch_autoscaler_scheduled_min{pool=\"calculate\"} 2"),
        "{metrics}"
    );

    // The reconciler acts on the raised desired: a clone joins.
    wait_ready(&app.http, &app.url, 2, Duration::from_secs(30)).await;

    // Below the floor: refused, naming the floor and the window; nothing changes.
    let resp = app
        .http
        .put(app.pool_url("/desired"))
        .json(&serde_json::json!({"size": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    let body: serde_json::Value = resp.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("scheduled floor 2") && error.contains("\"lunch\""),
        "{error}"
    );
    assert!(error.contains(&rfc(opens + 3600)), "{error}");
    assert_eq!(app.pool_status().await["desired"], 2);
    // At or above it is fine.
    assert_eq!(app.set_desired(3).await["desired"], 3);
    app.stop().await;
}

/// `check --config` goes through the same start-up checks as `run`: a bad expression or zone is
/// refused with exit 2, naming the key.
#[test]
fn check_names_the_bad_cron_expression_or_zone() {
    let dir = tempfile::tempdir().unwrap();
    let good = "[[pool.schedule]]\nname = \"lunch\"\ncron = \"30 11 * * MON-FRI\"\ntimezone = \"Asia/Jakarta\"\nduration = \"2h\"\nmin = 3\n";
    let check = |schedule: &str| {
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            format!("[idcloudhost]\n[[pool]]\nname = \"calculate\"\nseed_vm = \"u-1\"\n{schedule}"),
        )
        .unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_idch-autoscaler"))
            .env("IDCLOUDHOST_API_KEY", "for-the-check")
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = check(good);
    assert!(out.status.success(), "{out:?}");
    for (bad, key) in [
        (
            good.replace("30 11 * * MON-FRI", "30 25 * * *"),
            "pool \"calculate\".schedule[0].cron: ",
        ),
        (
            good.replace("Asia/Jakarta", "Asia/Djakarta"),
            "pool \"calculate\".schedule[0].timezone: ",
        ),
        (
            good.replace("min = 3", "min = 9"),
            "pool \"calculate\".schedule[0].min: ",
        ),
    ] {
        let out = check(&bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(key), "{key} in {stderr}");
    }
}
