//! `[[notify]]`: activities delivered to a local receiver, filtered by `events`, in Slack's or
//! the JSON format, retried when the receiver fails, and never in the way of scaling when the
//! receiver is down or hangs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

/// What the receiver got: (path, content type, body).
type Got = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;

/// A webhook receiver on 127.0.0.1: answers 503 to its first `fail_first` requests, never
/// answers at all when `hang`, else 200 and records the message.
struct Receiver {
    url: String,
    got: Got,
    requests: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(fail_first: usize, hang: bool) -> Receiver {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode, Uri};

        #[derive(Clone)]
        struct S {
            got: Got,
            requests: Arc<AtomicUsize>,
            fail_first: usize,
            hang: bool,
        }
        async fn hook(
            State(s): State<S>,
            uri: Uri,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> StatusCode {
            let n = s.requests.fetch_add(1, Ordering::SeqCst);
            if s.hang {
                std::future::pending::<()>().await;
            }
            if n < s.fail_first {
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            s.got
                .lock()
                .unwrap()
                .push((uri.path().to_string(), content_type, body));
            StatusCode::OK
        }
        let got = Got::default();
        let requests = Arc::new(AtomicUsize::new(0));
        let state = S {
            got: got.clone(),
            requests: requests.clone(),
            fail_first,
            hang,
        };
        let router = axum::Router::new().fallback(hook).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver { url, got, requests }
    }

    fn bodies(&self) -> Vec<serde_json::Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, b)| b.clone())
            .collect()
    }

    async fn wait_for(&self, n: usize, what: &str) -> Vec<serde_json::Value> {
        eventually(Duration::from_secs(30), what, || {
            let bodies = self.bodies();
            async move { (bodies.len() >= n).then_some(bodies) }
        })
        .await
    }
}

fn field<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_up_reaches_the_receiver_as_scale_clone_ready_and_the_filter_drops_the_rest() {
    let json = Receiver::start(0, false).await;
    let slack = Receiver::start(0, false).await;
    let app = TestApp::builder()
        .top(&format!(
            "[[notify]]\nname = \"events\"\nurl = \"{}/events\"\nevents = [\"scale\", \"clone\", \"ready\"]\n\
             [[notify]]\nname = \"chat\"\nurl = \"{}/chat\"\nformat = \"slack\"\nevents = [\"ready\"]\n",
            json.url, slack.url
        ))
        .spawn()
        .await;
    app.set_desired(2).await;
    wait_ready(&app.http, &app.url, 2, Duration::from_secs(20)).await;
    slack
        .wait_for(1, "the ready message in Slack's format")
        .await;
    eventually(Duration::from_secs(30), "the JSON ready event", || {
        let bodies = json.bodies();
        async move {
            bodies
                .iter()
                .any(|b| field(b, "action") == "ready")
                .then_some(())
        }
    })
    .await;
    // What the service recorded besides (the public IP's release) was filtered out.
    let history = activity_log(&app.http, &app.url).await;
    assert!(
        history.iter().any(|a| a["action"] == "release_ip"),
        "the pool released a public IP: {history:?}"
    );
    let events = json.bodies();
    let sequence: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| (field(e, "action"), field(e, "outcome"), field(e, "detail")))
        .collect();
    let at = |action: &str, detail: &str| {
        sequence
            .iter()
            .position(|(a, _, d)| *a == action && d.starts_with(detail))
            .unwrap_or_else(|| panic!("no {action} {detail} in {sequence:?}"))
    };
    let (scale, clone, ready) = (
        at("set_desired", "desired 1 -> 2"),
        at("clone", "calculate-service-clone-1"),
        at("ready", "calculate-service-clone-1"),
    );
    assert!(scale < clone && clone < ready, "{sequence:?}");
    assert!(
        sequence
            .iter()
            .all(|(a, _, _)| matches!(*a, "set_desired" | "clone" | "ready")),
        "only the kinds asked for: {sequence:?}"
    );
    let e = &events[clone];
    assert_eq!(
        (field(e, "pool"), field(e, "event"), field(e, "outcome")),
        ("calculate", "clone", "ok")
    );
    assert_eq!(field(e, "vm"), "calculate-service-clone-1");
    assert_eq!(field(e, "cause"), "below desired size");
    assert!(
        chrono::DateTime::parse_from_rfc3339(field(e, "time")).is_ok(),
        "{e}"
    );
    assert_eq!(events[scale]["vm"], serde_json::Value::Null);
    assert_eq!(events[ready]["vm"], "calculate-service-clone-1");
    for (path, content_type, _) in json.got.lock().unwrap().iter() {
        assert_eq!(
            (path.as_str(), content_type.as_str()),
            ("/events", "application/json")
        );
    }

    // Slack's target asked for `ready` only: one line, in `{"text": ...}`.
    let chat = slack.got.lock().unwrap().clone();
    assert_eq!(chat.len(), 1, "{chat:?}");
    let (path, _, body) = &chat[0];
    assert_eq!(path, "/chat");
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    let text = field(body, "text");
    assert!(
        text.starts_with("[calculate] ready ok: calculate-service-clone-1 after "),
        "{text}"
    );
    assert!(text.ends_with("(health gate passed)"), "{text}");

    let metrics = metrics_text(&app.http, &app.url).await;
    assert!(
        metrics.contains(
            "idch_autoscaler_notifications_total{target=\"chat\",result=\"delivered\"} 1"
        ),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_at_first_gets_the_message_once_after_retries() {
    let receiver = Receiver::start(2, false).await;
    let app = TestApp::builder()
        .top(&format!(
            "[[notify]]\nurl = \"{}/hook\"\nevents = [\"ready\"]\n",
            receiver.url
        ))
        .spawn()
        .await;
    app.set_desired(2).await;
    wait_ready(&app.http, &app.url, 2, Duration::from_secs(20)).await;
    let got = receiver.wait_for(1, "the message, after two 503s").await;
    assert_eq!(field(&got[0], "action"), "ready");
    // Delivered once: no duplicate follows the success.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.bodies().len(), 1);
    assert_eq!(
        receiver.requests.load(Ordering::SeqCst),
        3,
        "two failures, one success"
    );
    let metrics = metrics_text(&app.http, &app.url).await;
    assert!(
        metrics
            .contains("idch_autoscaler_notifications_total{target=\"0\",result=\"delivered\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("idch_autoscaler_notifications_total{target=\"0\",result=\"failed\"} 0"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_down_or_hangs_does_not_slow_scaling() {
    let hanging = Receiver::start(0, true).await;
    let nothing = format!("http://127.0.0.1:{}/hook", free_port());
    let app = TestApp::builder()
        .top(&format!(
            "[[notify]]\nname = \"hangs\"\nurl = \"{}/hook\"\ntimeout = \"60s\"\n\
             [[notify]]\nname = \"down\"\nurl = \"{nothing}\"\n",
            hanging.url
        ))
        .pool("scale_up_step = 2\n")
        .spawn()
        .await;
    let started = Instant::now();
    let answer = app
        .http
        .post(app.endpoint("/v1/pools/calculate/scale-up"))
        .send()
        .await
        .unwrap();
    let answered = started.elapsed();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["decision"], "accepted", "{body}");
    // Far below what waiting for a target would take (the hanging one's timeout is 60 s, the
    // down one's retries about a minute), and loose enough for a busy CI machine's fsyncs.
    assert!(
        answered < Duration::from_secs(10),
        "the webhook answered in {answered:?}"
    );
    // Two clones boot and pass the health gate in the usual time, while one target holds
    // its first message and the other refuses every connection.
    wait_ready(&app.http, &app.url, 3, Duration::from_secs(20)).await;
    assert!(
        hanging.requests.load(Ordering::SeqCst) >= 1,
        "the hanging target was tried"
    );
    assert!(hanging.bodies().is_empty());
    // A second decision is as quick while both targets are still stuck.
    let started = Instant::now();
    app.set_desired(1).await;
    let decided = started.elapsed();
    assert!(
        decided < Duration::from_secs(10),
        "the second decision took {decided:?}"
    );
    let metrics = metrics_text(&app.http, &app.url).await;
    assert!(metrics.contains("target=\"hangs\""), "{metrics}");
    assert!(!metrics.contains(&hanging.url), "no URL in the metrics");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_from_the_environment_is_used_and_shown_nowhere() {
    let receiver = Receiver::start(0, false).await;
    let secret = format!("s3cr3t-{}", uuid::Uuid::new_v4().simple());
    let var = format!("IDCH_TEST_NOTIFY_URL_{}", uuid::Uuid::new_v4().simple());
    // A variable no other test reads.
    std::env::set_var(&var, format!("{}/services/T0/B0/{secret}", receiver.url));
    let app = TestApp::builder()
        .top(&format!(
            "[[notify]]\nname = \"slack\"\nurl_env = \"{var}\"\nformat = \"slack\"\nevents = [\"scale\"]\n"
        ))
        .spawn()
        .await;
    app.set_desired(2).await;
    let got = eventually(Duration::from_secs(20), "the scale message", || {
        let got = receiver.got.lock().unwrap().clone();
        async move {
            got.iter()
                .find(|(_, _, b)| field(b, "text").contains("desired 1 -> 2"))
                .cloned()
        }
    })
    .await;
    assert_eq!(
        got.0,
        format!("/services/T0/B0/{secret}"),
        "the URL came from {var}"
    );
    assert!(field(&got.2, "text").starts_with("[calculate] set_desired accepted: desired 1 -> 2"));
    let config = app.config();
    let urls = config.resolve_notify_urls().unwrap();
    let printed = format!("{config:?} {urls:?}");
    assert!(!printed.contains(&secret), "{printed}");
    for path in ["/metrics", "/v1/pools", "/v1/pools/calculate/activities"] {
        let text = get_text(&app.http, &app.endpoint(path)).await;
        assert!(!text.contains(&secret), "{path}: {text}");
    }
    app.stop().await;
}
