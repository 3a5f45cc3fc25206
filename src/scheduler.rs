//! One task per pool with `[[pool.schedule]]` entries: it sleeps (on tokio's clock, so a paused
//! test clock drives it) until the next opening or close of a window, then asks the pool's
//! [`PoolControl`] to apply the floor. At start it applies the floor at once, so a restart
//! inside an open window keeps it.
//!
//! Architecture invariant: it never writes desired itself; `PoolControl::apply_schedule` (on a
//! blocking thread) does, and only ever raises it.

use std::sync::Arc;
use std::time::Duration;

use crate::control::PoolControl;
use crate::shutdown::Shutdown;

/// The longest sleep between two looks at the schedule, so that a far-off opening (a yearly
/// expression) never needs one huge timer.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// How long to wait before trying again when the floor could not be persisted.
const RETRY: Duration = Duration::from_secs(5);

/// Runs until `shutdown`; returns at once for a pool without schedules.
pub async fn run(control: Arc<PoolControl>, shutdown: Shutdown) {
    if control.config.schedule.is_empty() {
        return;
    }
    let pool = control.config.name.clone();
    loop {
        let now = crate::clock::now();
        let applied = {
            let control = control.clone();
            tokio::task::spawn_blocking(move || control.apply_schedule(now)).await
        };
        let failed = match applied {
            Ok(Ok(_)) => false,
            Ok(Err(e)) => {
                tracing::error!(%pool, error = %e, "cannot apply the scheduled floor");
                true
            }
            Err(e) => {
                tracing::error!(%pool, error = %e, "the scheduled floor could not be applied");
                true
            }
        };
        let sleep = if failed {
            RETRY
        } else {
            match control.windows(now).next_change() {
                Some(at) => Duration::from_secs_f64((at - crate::clock::now()).max(0.0)),
                None => MAX_SLEEP,
            }
            .min(MAX_SLEEP)
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::store::Store;

    fn control(store: Arc<Store>, schedule: &str) -> Arc<PoolControl> {
        let text = format!(
            "[idcloudhost]\n[[pool]]\nname = \"p\"\nseed_vm = \"s\"\nmin = 1\nmax = 6\n{schedule}"
        );
        let pool = Config::parse(&text).unwrap().pools.remove(0);
        Arc::new(PoolControl::load(Arc::new(pool), store, Arc::new(Metrics::new())).unwrap())
    }

    /// The next instant (Unix seconds) at `hh:mm` in `tz`, at least an hour from now.
    fn next_at(tz: chrono_tz::Tz, hh: u32, mm: u32) -> f64 {
        use chrono::TimeZone;
        let now = crate::clock::now() as i64 + 3600;
        let local = tz.timestamp_opt(now, 0).unwrap();
        let mut day = local.date_naive();
        loop {
            let t = tz
                .from_local_datetime(&day.and_hms_opt(hh, mm, 0).unwrap())
                .single()
                .unwrap()
                .timestamp();
            if t >= now {
                return t as f64;
            }
            day = day.succ_opt().unwrap();
        }
    }

    async fn sleep_until(unix: f64) {
        let left = unix - crate::clock::now();
        if left > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(left)).await;
        }
        // Let the scheduler's blocking call finish.
        for _ in 0..50 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn schedule_activities(store: &Store) -> Vec<(String, String)> {
        store
            .activities("p", 100)
            .unwrap()
            .into_iter()
            .filter(|a| a.action == "schedule")
            .map(|a| (a.cause, a.detail))
            .collect()
    }

    /// 23:30 in Jakarta (UTC+7) for 90 minutes: the window opens on one day and closes on the
    /// next (in Jakarta; 16:30-18:00 UTC). At the opening desired goes up to the floor; across
    /// midnight it stays; at the close nothing comes down by itself.
    #[tokio::test(start_paused = true)]
    async fn the_floor_is_raised_at_the_opening_and_left_at_the_close() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.db")).unwrap());
        let c = control(
            store.clone(),
            "[[pool.schedule]]\nname = \"late\"\ncron = \"30 23 * * *\"\ntimezone = \"Asia/Jakarta\"\nduration = \"90m\"\nmin = 3\n",
        );
        let tz = chrono_tz::Asia::Jakarta;
        // Start at noon in Jakarta, whatever the real time: no window is open then, and the
        // next opening is tonight's (a real time between 22:30 and 01:00 there would have one
        // open or due within the hour). Nothing reads the schedule before this.
        let noon = next_at(tz, 12, 0);
        tokio::time::advance(Duration::from_secs_f64(noon - crate::clock::now())).await;
        c.init_from_observed(1).unwrap();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(run(c.clone(), shutdown.clone()));
        let opens = next_at(tz, 23, 30);
        let midnight = opens + 45.0 * 60.0;
        let closes = opens + 90.0 * 60.0;
        {
            use chrono::{TimeZone, Timelike};
            let at = tz.timestamp_opt(opens as i64, 0).unwrap();
            assert_eq!((at.hour(), at.minute()), (23, 30));
            let utc = chrono::Utc.timestamp_opt(opens as i64, 0).unwrap();
            assert_eq!((utc.hour(), utc.minute()), (16, 30), "Jakarta is UTC+7");
        }

        sleep_until(opens - 1.0).await;
        assert_eq!(c.desired(), Some(1), "not before the opening");
        assert!(schedule_activities(&store).is_empty());

        sleep_until(opens).await;
        assert_eq!(c.desired(), Some(3), "raised at the opening");
        assert_eq!(
            schedule_activities(&store),
            vec![(
                "schedule late".to_string(),
                format!(
                    "desired 1 -> 3 (window until {})",
                    crate::clock::rfc3339(closes)
                )
            )]
        );
        let now = crate::clock::now();
        assert_eq!(c.limits_at(now).min, 3);
        // A scale-down at the floor is at_min; an operator cannot go below it either.
        assert_eq!(
            c.scale(Direction::Down, false, "t", now).unwrap().decision,
            Decision::AtMin
        );
        let refused = c.set_desired(2, "op", now).unwrap_err();
        assert!(
            matches!(&refused, ControlError::BelowFloor { floor: 3, window, .. } if window == "late"),
            "{refused}"
        );
        assert_eq!(c.desired(), Some(3), "a refused PUT changes nothing");

        // Past midnight in Jakarta: still open, still 3.
        sleep_until(midnight).await;
        {
            use chrono::{TimeZone, Timelike};
            assert_eq!(tz.timestamp_opt(midnight as i64, 0).unwrap().hour(), 0);
        }
        assert_eq!(c.windows(crate::clock::now()).floor(), Some(3));
        assert_eq!(c.desired(), Some(3));

        // At the close the floor lifts but desired stays; a scale-down is decided as usual.
        sleep_until(closes).await;
        let now = crate::clock::now();
        assert_eq!(c.windows(now).floor(), None);
        assert_eq!(c.limits_at(now).min, 1);
        assert_eq!(c.desired(), Some(3), "nothing comes down by itself");
        assert_eq!(
            c.scale(Direction::Down, false, "t", now).unwrap().decision,
            Decision::Accepted { from: 3, to: 2 }
        );
        assert_eq!(schedule_activities(&store).len(), 1);

        shutdown.trigger();
        task.await.unwrap();
    }

    /// Desired already at or above the floor is left alone; a restart inside an open window
    /// applies the floor at start.
    #[tokio::test(start_paused = true)]
    async fn a_restart_inside_a_window_applies_the_floor_and_above_it_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.db")).unwrap());
        let schedule = "[[pool.schedule]]\nname = \"morning\"\ncron = \"0 8 * * *\"\ntimezone = \"Asia/Jakarta\"\nduration = \"2h\"\nmin = 2\n\
                        [[pool.schedule]]\nname = \"peak\"\ncron = \"0 9 * * *\"\ntimezone = \"Asia/Jakarta\"\nduration = \"30m\"\nmin = 4\n";
        let c = control(store.clone(), schedule);
        c.init_from_observed(5).unwrap();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(run(c.clone(), shutdown.clone()));
        let opens = next_at(chrono_tz::Asia::Jakarta, 8, 0);
        sleep_until(opens).await;
        assert_eq!(c.desired(), Some(5), "above the floor: unchanged");
        assert!(schedule_activities(&store).is_empty());
        let now = crate::clock::now();
        c.set_desired(2, "op", now).unwrap();
        shutdown.trigger();
        task.await.unwrap();

        // 09:10 in Jakarta: both windows open, the larger min wins. The service restarts.
        sleep_until(opens + 70.0 * 60.0).await;
        let again = control(store.clone(), schedule);
        assert_eq!(again.desired(), Some(2), "persisted");
        let shutdown = Shutdown::new();
        let task = tokio::spawn(run(again.clone(), shutdown.clone()));
        sleep_until(crate::clock::now()).await;
        assert_eq!(again.desired(), Some(4), "applied at start");
        assert_eq!(
            schedule_activities(&store)[0].0,
            "schedule peak",
            "the window that sets the floor is the cause"
        );
        shutdown.trigger();
        task.await.unwrap();
    }

    use crate::control::ControlError;
    use crate::pool::decide::{Decision, Direction};
}
