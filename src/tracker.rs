//! Target tracking: one task per pool with `[pool.target]`. Every `interval` it reads the pool's
//! query from Prometheus (`prom`), asks the pure recommendation ([`crate::pool::target`]) what
//! desired should be with the ready backends of the published view, and hands the result to the
//! pool's [`PoolControl::apply_target`] (on a blocking thread), which applies it unless the
//! operator's manual hold or a cooldown holds it, and keeps it for the status API.
//!
//! A failed query backs off (`prom::Pacing`); no data, an error or a stale sample never changes
//! desired. An operator's `PUT .../desired` starts the stabilization windows afresh.
//!
//! Architecture invariant: it never writes desired itself (`PoolControl::apply_target` does),
//! and it reads the view only from the snapshot.

use std::sync::Arc;

use crate::config::Secret;
use crate::control::PoolControl;
use crate::pool::target::{recommend, settled_ready, Input, Policy, Window};
use crate::prom::{self, PromClient, PromError};
use crate::shutdown::Shutdown;
use crate::snapshot::State;

/// What the tracker carries from one interval to the next.
struct Context<'a> {
    policy: &'a Policy,
    window: &'a mut Window,
    /// The operator's last change seen (a new one restarts the windows).
    manual_seq: &'a mut u64,
    /// The ready backends at the first evaluation (they count at once).
    baseline: &'a mut Option<std::collections::HashSet<String>>,
    /// `readiness_delay` in seconds.
    delay: f64,
}

/// One pool's tracker, built at start-up (so a client that cannot be built refuses the start).
pub struct Tracker {
    control: Arc<PoolControl>,
    state: Arc<State>,
    client: PromClient,
}

impl Tracker {
    /// `None` for a pool without `[pool.target]`.
    pub fn new(
        control: Arc<PoolControl>,
        state: Arc<State>,
        token: Option<Secret>,
    ) -> anyhow::Result<Option<Tracker>> {
        let Some(target) = &control.config.target else {
            return Ok(None);
        };
        let client = PromClient::new(target, token)?;
        Ok(Some(Tracker {
            control,
            state,
            client,
        }))
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) {
        let Some(target) = self.control.config.target.clone() else {
            return;
        };
        let pool = self.control.config.name.clone();
        let policy = Policy::new(&target);
        let query = target.query_for(&pool);
        let mut window = Window::default();
        let mut pacing = prom::Pacing::new(target.interval);
        let mut manual_seq = self.control.manual_seq();
        let mut baseline = None;
        let delay = target.readiness_delay.as_secs_f64();
        loop {
            let result = self.client.query(&query).await;
            // No data is an answer, not a failure: the next query comes after one interval.
            let answered = result.is_ok() || matches!(result, Err(PromError::Empty));
            let mut context = Context {
                policy: &policy,
                window: &mut window,
                manual_seq: &mut manual_seq,
                baseline: &mut baseline,
                delay,
            };
            self.evaluate(&result, &mut context).await;
            let sleep = pacing.after(answered);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    async fn evaluate(&self, result: &Result<prom::PromSample, PromError>, cx: &mut Context<'_>) {
        let pool = &self.control.config.name;
        let now = crate::clock::now();
        let snapshot = self.state.load();
        let Some(view) = snapshot.pool(pool).filter(|v| v.synced) else {
            return;
        };
        let Some(desired) = self.control.desired() else {
            return;
        };
        let seq = self.control.manual_seq();
        if seq != *cx.manual_seq {
            // The operator set the size: the windows start again from it.
            *cx.manual_seq = seq;
            cx.window.clear();
        }
        // The backends ready when the tracker first saw the pool count at once.
        let baseline = cx.baseline.get_or_insert_with(|| {
            view.backends
                .iter()
                .filter(|b| b.state == crate::pool::BackendState::Ready)
                .map(|b| b.uuid.clone())
                .collect()
        });
        let limits = self.control.limits_at(now);
        let input = Input {
            ready: settled_ready(view, baseline, cx.delay, now),
            ..Input::from_view(
                prom::observation(result),
                view,
                desired,
                limits.min,
                limits.max,
            )
        };
        let recommendation = recommend(cx.policy, &input, cx.window, now);
        let error = result.as_ref().err().map(|e| e.to_string());
        if let Some(e) = &error {
            tracing::warn!(%pool, error = %e, "target tracking: the query failed; desired is left alone");
        }
        let control = self.control.clone();
        let applied =
            tokio::task::spawn_blocking(move || control.apply_target(recommendation, error, now))
                .await;
        match applied {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(%pool, error = %e, "target tracking: cannot apply"),
            Err(e) => tracing::error!(%pool, error = %e, "target tracking: the apply task failed"),
        }
    }
}
