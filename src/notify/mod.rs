//! Notifications: every activity the store makes durable goes, if a `[[notify]]` target wants
//! it, into that target's bounded queue; one task per target delivers its queue in order, with
//! a per-request timeout and retries with backoff. The store's writer and the reconcilers only
//! push into a queue (never await a delivery), so a target that is down or slow never slows
//! scaling. When a queue is full the oldest message is dropped, counted and logged.

mod wire;

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backoff::Backoff;
use crate::config::{NotifyConfig, NotifyEvent, NotifyFormat, Secret};
use crate::metrics::Metrics;
use crate::store::{Activity, Observer};

/// Messages a target's queue holds before the oldest is dropped.
pub const QUEUE_CAPACITY: usize = 1000;
/// Attempts of one message, the first included.
pub const MAX_ATTEMPTS: u32 = 6;
/// Waits between attempts: 0.5-1 s, 1-2 s, ... capped at 30 s (about a minute in all).
pub const RETRY_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

/// What a target receives: one durable activity of one pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub pool: String,
    /// The filter name the activity falls under, if any.
    pub kind: Option<NotifyEvent>,
    pub action: String,
    pub cause: String,
    pub outcome: String,
    /// The VM the activity is about (the leading name of its detail), if it is about one.
    pub vm: Option<String>,
    pub detail: String,
    /// Unix seconds.
    pub at: f64,
}

impl Event {
    /// The event for an activity, or `None` for one that changed nothing (`unchanged`).
    pub fn from_activity(pool: &str, a: &Activity) -> Option<Event> {
        if a.outcome == "unchanged" {
            return None;
        }
        let kind = NotifyEvent::of_action(&a.action);
        // Decisions about the pool's size, and a rolling refresh (its detail starts with its id),
        // name no VM; every activity about one VM starts its detail with the VM's name
        // (`web-clone-3 (uuid)`, `web-clone-3: error`).
        let about_pool = matches!(
            kind,
            Some(NotifyEvent::Scale) | Some(NotifyEvent::Schedule) | Some(NotifyEvent::Refresh)
        );
        let vm = if about_pool {
            None
        } else {
            a.detail
                .split(|c: char| c == ':' || c.is_whitespace())
                .next()
                .filter(|name| !name.is_empty())
                .map(str::to_string)
        };
        Some(Event {
            pool: pool.to_string(),
            kind,
            action: a.action.clone(),
            cause: a.cause.clone(),
            outcome: a.outcome.clone(),
            vm,
            detail: a.detail.clone(),
            at: a.at,
        })
    }
}

/// A target's queue: pushed by whichever thread wrote the activity, popped by the target's task.
struct Queue {
    /// Held only to push or pop one message, never across an await or a delivery.
    items: Mutex<VecDeque<Event>>,
    /// Wakes the task after a push (a permit is kept if it is not waiting yet).
    wake: tokio::sync::Notify,
    /// Set when the notifier is dropped: the task delivers what is left and ends.
    closed: AtomicBool,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            items: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `event`; returns the oldest message if it had to be dropped to make room.
    fn push(&self, event: Event, capacity: usize) -> Option<Event> {
        let dropped = {
            let mut items = self.lock();
            let dropped = if items.len() >= capacity {
                items.pop_front()
            } else {
                None
            };
            items.push_back(event);
            dropped
        };
        self.wake.notify_one();
        dropped
    }

    fn pop(&self) -> Option<Event> {
        self.lock().pop_front()
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// One configured target.
struct Target {
    /// `name`, or the index in `[[notify]]`: in logs and metrics (never the URL).
    label: String,
    /// Held as a secret whatever its source, so it is never printed.
    url: Secret,
    format: NotifyFormat,
    /// `None`: every event.
    events: Option<HashSet<NotifyEvent>>,
    timeout: Duration,
    queue: Queue,
}

impl Target {
    fn wants(&self, event: &Event) -> bool {
        match &self.events {
            None => true,
            Some(wanted) => event.kind.is_some_and(|k| wanted.contains(&k)),
        }
    }

    fn body(&self, event: &Event) -> Vec<u8> {
        match self.format {
            NotifyFormat::Json => wire::json(event),
            NotifyFormat::Slack => wire::slack(event),
        }
    }
}

/// The targets and their tasks. Dropping it closes the queues; each task then delivers what
/// is left and ends.
pub struct Notifier {
    targets: Vec<Arc<Target>>,
    metrics: Arc<Metrics>,
}

impl Drop for Notifier {
    fn drop(&mut self) {
        for t in &self.targets {
            t.queue.close();
        }
    }
}

impl Notifier {
    /// Starts one delivery task per target (on the current tokio runtime); `urls` are the
    /// targets' resolved URLs, in order. `None` when there is no target.
    pub fn start(
        configs: &[NotifyConfig],
        urls: Vec<Secret>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Option<Notifier>> {
        if configs.is_empty() {
            return Ok(None);
        }
        anyhow::ensure!(
            urls.len() == configs.len(),
            "notify: {} targets but {} resolved URLs",
            configs.len(),
            urls.len()
        );
        let client = reqwest::Client::builder()
            .user_agent(concat!("idch-autoscaler/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let targets: Vec<Arc<Target>> = configs
            .iter()
            .zip(urls)
            .enumerate()
            .map(|(i, (c, url))| {
                Arc::new(Target {
                    label: c.label(i),
                    url,
                    format: c.format,
                    events: c.events.as_ref().map(|e| e.iter().copied().collect()),
                    timeout: c.timeout,
                    queue: Queue::new(),
                })
            })
            .collect();
        for t in &targets {
            // Each counter shows up at 0 from the start, so a rate() has a baseline.
            for result in ["delivered", "failed", "dropped"] {
                metrics
                    .notifications
                    .get_or_create(&labels(&t.label, result))
                    .inc_by(0);
            }
            tokio::spawn(deliver_queue(t.clone(), client.clone(), metrics.clone()));
        }
        Ok(Some(Notifier { targets, metrics }))
    }

    /// Queues an activity for every target that wants it. Never blocks: called on the store's
    /// writer thread and on the controls' blocking threads.
    pub fn notify(&self, pool: &str, activity: &Activity) {
        let Some(event) = Event::from_activity(pool, activity) else {
            return;
        };
        for t in &self.targets {
            if !t.wants(&event) {
                continue;
            }
            if let Some(old) = t.queue.push(event.clone(), QUEUE_CAPACITY) {
                self.metrics
                    .notifications
                    .get_or_create(&labels(&t.label, "dropped"))
                    .inc();
                tracing::warn!(
                    target_name = %t.label,
                    pool = %old.pool,
                    action = %old.action,
                    "notification queue full: dropped the oldest message"
                );
            }
        }
    }

    /// The store's hook: [`Notifier::notify`] for every durable activity.
    pub fn observer(self) -> Observer {
        Box::new(move |pool, activity| self.notify(pool, activity))
    }
}

fn labels(target: &str, result: &str) -> crate::metrics::Labels {
    vec![
        ("target", target.to_string()),
        ("result", result.to_string()),
    ]
}

/// A target's task: delivers its queue in order, one message at a time, until the notifier is
/// dropped and the queue is empty.
async fn deliver_queue(target: Arc<Target>, client: reqwest::Client, metrics: Arc<Metrics>) {
    loop {
        let Some(event) = target.queue.pop() else {
            if target.queue.closed.load(Ordering::SeqCst) {
                return;
            }
            target.queue.wake.notified().await;
            continue;
        };
        let result = match deliver(&target, &client, &event).await {
            Ok(()) => "delivered",
            Err(e) => {
                tracing::warn!(target_name = %target.label, pool = %event.pool, action = %event.action, error = %e, "notification not delivered");
                "failed"
            }
        };
        metrics
            .notifications
            .get_or_create(&labels(&target.label, result))
            .inc();
    }
}

/// Why one attempt failed, and whether another may succeed.
struct Failure {
    reason: String,
    transient: bool,
}

/// Sends one message, retrying transport errors, timeouts, 429 and 5xx with backoff.
async fn deliver(target: &Target, client: &reqwest::Client, event: &Event) -> Result<(), String> {
    let body = target.body(event);
    let mut attempt = 0;
    loop {
        let failure = match attempt_once(target, client, body.clone()).await {
            Ok(()) => return Ok(()),
            Err(f) => f,
        };
        attempt += 1;
        if !failure.transient || attempt >= MAX_ATTEMPTS {
            return Err(format!("{} (after {attempt} attempts)", failure.reason));
        }
        tracing::debug!(target_name = %target.label, attempt, reason = %failure.reason, "notification failed; retrying");
        tokio::time::sleep(RETRY_BACKOFF.delay(attempt - 1)).await;
    }
}

async fn attempt_once(
    target: &Target,
    client: &reqwest::Client,
    body: Vec<u8>,
) -> Result<(), Failure> {
    let response = client
        .post(target.url.expose())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .timeout(target.timeout)
        .body(body)
        .send()
        .await
        .map_err(|e| Failure {
            reason: describe(e),
            transient: true,
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    Err(Failure {
        reason: format!("answered {status}"),
        transient: status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
    })
}

/// A transport error without its URL (which may carry the target's secret), with its causes.
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut out = kind.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests;
