use super::*;

fn activity(action: &str, outcome: &str, detail: &str) -> Activity {
    Activity {
        id: 0,
        at: 1_700_000_000.0,
        action: action.into(),
        cause: "below desired size".into(),
        outcome: outcome.into(),
        detail: detail.into(),
    }
}

#[test]
fn an_activity_becomes_an_event_with_its_kind_and_vm() {
    let cases = [
        (
            "scale_up",
            "accepted",
            "desired 1 -> 2",
            Some("scale"),
            None,
        ),
        (
            "set_desired",
            "accepted",
            "desired 2 -> 1",
            Some("scale"),
            None,
        ),
        (
            "clone",
            "ok",
            "web-clone-3 (u-3)",
            Some("clone"),
            Some("web-clone-3"),
        ),
        (
            "clone",
            "failed",
            "web-clone-3: 500",
            Some("clone"),
            Some("web-clone-3"),
        ),
        (
            "ready",
            "ok",
            "web-clone-3 after 1.2s",
            Some("ready"),
            Some("web-clone-3"),
        ),
        (
            "drain",
            "started",
            "web-clone-3: out of Traefik now",
            Some("drain"),
            Some("web-clone-3"),
        ),
        (
            "replace_unhealthy",
            "started",
            "web-clone-3: x",
            Some("drain"),
            Some("web-clone-3"),
        ),
        (
            "delete",
            "ok",
            "web-clone-3 (u-3)",
            Some("delete"),
            Some("web-clone-3"),
        ),
        (
            "vanished",
            "observed",
            "web-clone-3 (u-3)",
            Some("delete"),
            Some("web-clone-3"),
        ),
        (
            "boot_failed",
            "deleting",
            "web-clone-3",
            Some("boot_failed"),
            Some("web-clone-3"),
        ),
        (
            "schedule",
            "accepted",
            "desired 1 -> 3",
            Some("schedule"),
            None,
        ),
        (
            "refresh",
            "started",
            "5f0c9a: 3 old clones to replace",
            Some("refresh"),
            None,
        ),
        (
            "release_ip",
            "ok",
            "web-clone-3: 1.2.3.4",
            None,
            Some("web-clone-3"),
        ),
    ];
    for (action, outcome, detail, kind, vm) in cases {
        let e = Event::from_activity("web", &activity(action, outcome, detail)).unwrap();
        assert_eq!(e.kind.map(|k| k.as_str()), kind, "{action}");
        assert_eq!(e.vm.as_deref(), vm, "{action}");
        assert_eq!((e.pool.as_str(), e.outcome.as_str()), ("web", outcome));
    }
    // A decision that changed nothing is no news.
    assert_eq!(
        Event::from_activity("web", &activity("set_desired", "unchanged", "desired 2")),
        None
    );
}

#[test]
fn the_json_body_carries_the_event_and_slack_one_line() {
    let e = Event::from_activity("web", &activity("clone", "ok", "web-clone-3 (u-3)")).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&wire::json(&e)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "pool": "web", "event": "clone", "action": "clone", "cause": "below desired size",
            "outcome": "ok", "vm": "web-clone-3", "detail": "web-clone-3 (u-3)",
            "time": "2023-11-14T22:13:20Z",
        })
    );
    let slack: serde_json::Value = serde_json::from_slice(&wire::slack(&e)).unwrap();
    assert_eq!(
        slack,
        serde_json::json!({"text": "[web] clone ok: web-clone-3 (u-3) (below desired size)"})
    );
    let scale =
        Event::from_activity("web", &activity("scale_up", "accepted", "desired 1 -> 2")).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&wire::json(&scale)).unwrap();
    assert_eq!(json["vm"], serde_json::Value::Null);
}

#[test]
fn a_full_queue_drops_its_oldest_message() {
    let q = Queue::new();
    let event = |n: u32| {
        Event::from_activity("p", &activity("clone", "ok", &format!("p-clone-{n}"))).unwrap()
    };
    for n in 0..3 {
        assert_eq!(q.push(event(n), 3), None);
    }
    let dropped = q.push(event(3), 3).expect("full");
    assert_eq!(dropped.vm.as_deref(), Some("p-clone-0"));
    let left: Vec<_> = std::iter::from_fn(|| q.pop())
        .filter_map(|e| e.vm)
        .collect();
    assert_eq!(left, ["p-clone-1", "p-clone-2", "p-clone-3"]);
}

#[tokio::test]
async fn a_transport_error_is_described_without_its_url() {
    // Nothing listens on port 9 of 127.0.0.1 (discard): the connection is refused.
    let err = reqwest::Client::new()
        .post("http://127.0.0.1:9/services/T000/B000/s3cr3t-path")
        .send()
        .await
        .unwrap_err();
    let text = describe(err);
    assert!(text.starts_with("cannot connect"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");
}

#[tokio::test]
async fn without_targets_there_is_no_notifier() {
    let metrics = Arc::new(Metrics::new());
    assert!(Notifier::start(&[], vec![], metrics).unwrap().is_none());
}

/// Log lines written into a buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_delivery_is_retried_counted_and_logged_without_the_url() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let metrics = Arc::new(Metrics::new());
    let config = NotifyConfig {
        name: Some("chat".into()),
        url: None,
        url_env: Some("UNUSED".into()),
        url_file: None,
        format: NotifyFormat::Slack,
        events: None,
        timeout: Duration::from_secs(1),
    };
    // Nothing listens on port 9 (discard): every attempt is refused.
    let url = Secret::new("http://127.0.0.1:9/services/T0/B0/s3cr3t");
    let notifier = Notifier::start(&[config], vec![url], metrics.clone())
        .unwrap()
        .unwrap();
    notifier.notify("web", &activity("clone", "ok", "web-clone-1 (u-1)"));
    let failed = || {
        metrics
            .notifications
            .get_or_create(&labels("chat", "failed"))
            .get()
    };
    let started = tokio::time::Instant::now();
    while failed() == 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "never gave up"
        );
    }
    // Every retry waited its backoff: about a minute in all, never less than half of it.
    let least: Duration = (0..MAX_ATTEMPTS - 1)
        .map(|a| RETRY_BACKOFF.ceiling(a) / 2)
        .sum();
    assert!(started.elapsed() >= least, "{:?}", started.elapsed());
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("notification not delivered"), "{text}");
    assert!(text.contains("after 6 attempts"), "{text}");
    assert!(text.contains("chat"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");
    let delivered = metrics
        .notifications
        .get_or_create(&labels("chat", "delivered"))
        .get();
    assert_eq!(delivered, 0);
    assert!(!metrics.render().contains("s3cr3t"));
}
