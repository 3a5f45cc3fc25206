//! Scheduled floors: which `[[pool.schedule]]` windows are open at `now`, the floor they set,
//! and when the next one opens. Pure: `now` (Unix seconds) is an argument.
//!
//! A window opened by the occurrence `t` of its cron expression (read in its time zone) is open
//! in `[t, t + duration)`. When occurrences come closer together than `duration`, the window is
//! open without a break; it is reported as opened at the latest occurrence, closing at the
//! latest close.

use chrono::{DateTime, TimeZone};

use crate::config::ScheduleConfig;

/// An open window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window<'a> {
    pub name: &'a str,
    /// The occurrence that opened it (Unix seconds).
    pub opened: f64,
    /// When it closes (Unix seconds).
    pub closes: f64,
    pub min: u32,
}

/// The next opening of a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Opening<'a> {
    pub name: &'a str,
    pub at: f64,
}

/// The schedules of one pool, evaluated at one instant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Windows<'a> {
    /// The open windows, in configuration order.
    pub open: Vec<Window<'a>>,
    /// The earliest occurrence after `now` of any schedule (one already open included).
    pub next: Option<Opening<'a>>,
}

impl<'a> Windows<'a> {
    /// The largest `min` of the open windows; `None` when none is open.
    pub fn floor(&self) -> Option<u32> {
        self.governing().map(|w| w.min)
    }

    /// The open window that sets the floor: the largest `min`, then the latest close.
    pub fn governing(&self) -> Option<&Window<'a>> {
        self.open
            .iter()
            .max_by(|a, b| a.min.cmp(&b.min).then(a.closes.total_cmp(&b.closes)))
    }

    /// When the floor may change next: the next opening or the earliest close.
    pub fn next_change(&self) -> Option<f64> {
        self.open
            .iter()
            .map(|w| w.closes)
            .chain(self.next.as_ref().map(|n| n.at))
            .reduce(f64::min)
    }
}

/// The pool's least size: its `min`, raised to the scheduled floor, never above `max`.
pub fn effective_min(min: u32, max: u32, floor: Option<u32>) -> u32 {
    min.max(floor.unwrap_or(0)).min(max)
}

fn zoned(unix: i64, tz: chrono_tz::Tz) -> Option<DateTime<chrono_tz::Tz>> {
    tz.timestamp_opt(unix, 0).single()
}

/// Evaluates `schedules` at `now`. An expression with no occurrence in reach (say, 30 February)
/// is never open and never next.
pub fn windows(schedules: &[ScheduleConfig], now: f64) -> Windows<'_> {
    // Occurrences fall on whole seconds: the one at `floor(now)` has opened by `now`.
    let second = now.floor() as i64;
    let mut result = Windows::default();
    for s in schedules {
        let Some(at) = zoned(second, s.timezone) else {
            continue;
        };
        let cron = s.cron.cron();
        if let Ok(t) = cron.find_previous_occurrence(&at, true) {
            let opened = t.timestamp() as f64;
            let closes = opened + s.duration.as_secs_f64();
            if now < closes {
                result.open.push(Window {
                    name: &s.name,
                    opened,
                    closes,
                    min: s.min,
                });
            }
        }
        if let Ok(t) = cron.find_next_occurrence(&at, false) {
            let at = t.timestamp() as f64;
            if result.next.as_ref().is_none_or(|n| at < n.at) {
                result.next = Some(Opening { name: &s.name, at });
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CronExpr;
    use std::time::Duration;

    fn s(name: &str, cron: &str, tz: &str, duration: u64, min: u32) -> ScheduleConfig {
        ScheduleConfig {
            name: name.into(),
            cron: CronExpr::parse(cron).unwrap(),
            timezone: tz.parse().unwrap(),
            duration: Duration::from_secs(duration),
            min,
        }
    }

    /// Unix seconds of a UTC date-time written `2026-03-10T23:00:00`.
    fn utc(text: &str) -> f64 {
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp() as f64
    }

    const H: u64 = 3600;

    #[test]
    fn windows_table() {
        let late = [s("late", "0 23 * * *", "UTC", 2 * H, 3)];
        let jakarta = [s("morning", "0 8 * * *", "Asia/Jakarta", H, 4)];
        let overlapping = [
            s("small", "0 9 * * *", "UTC", 4 * H, 2),
            s("big", "0 10 * * *", "UTC", H, 5),
        ];
        let seconds = [s("tick", "*/10 * * * * *", "UTC", 5, 2)];
        type Row<'a> = (
            &'a str,
            &'a [ScheduleConfig],
            &'a str,
            Option<u32>,
            Vec<(&'a str, &'a str, &'a str)>,
            Option<(&'a str, &'a str)>,
        );
        let rows: Vec<Row> =
            vec![
            (
                "closed before the opening",
                &late,
                "2026-03-10T22:59:59",
                None,
                vec![],
                Some(("late", "2026-03-10T23:00:00")),
            ),
            (
                "open at the opening second",
                &late,
                "2026-03-10T23:00:00",
                Some(3),
                vec![("late", "2026-03-10T23:00:00", "2026-03-11T01:00:00")],
                Some(("late", "2026-03-11T23:00:00")),
            ),
            (
                "still open across the day boundary",
                &late,
                "2026-03-11T00:30:00",
                Some(3),
                vec![("late", "2026-03-10T23:00:00", "2026-03-11T01:00:00")],
                Some(("late", "2026-03-11T23:00:00")),
            ),
            (
                "closed at the close",
                &late,
                "2026-03-11T01:00:00",
                None,
                vec![],
                Some(("late", "2026-03-11T23:00:00")),
            ),
            (
                "08:00 in Jakarta (UTC+7) is 01:00 UTC",
                &jakarta,
                "2026-03-11T01:30:00",
                Some(4),
                vec![("morning", "2026-03-11T01:00:00", "2026-03-11T02:00:00")],
                Some(("morning", "2026-03-12T01:00:00")),
            ),
            (
                "08:00 UTC is 15:00 in Jakarta: closed",
                &jakarta,
                "2026-03-11T08:30:00",
                None,
                vec![],
                Some(("morning", "2026-03-12T01:00:00")),
            ),
            (
                "the zone's date, not UTC's: 23:30 UTC on the 10th is 06:30 on the 11th in Jakarta",
                &jakarta,
                "2026-03-10T23:30:00",
                None,
                vec![],
                Some(("morning", "2026-03-11T01:00:00")),
            ),
            (
                "overlapping windows: the largest min wins",
                &overlapping,
                "2026-03-11T10:30:00",
                Some(5),
                vec![
                    ("small", "2026-03-11T09:00:00", "2026-03-11T13:00:00"),
                    ("big", "2026-03-11T10:00:00", "2026-03-11T11:00:00"),
                ],
                Some(("small", "2026-03-12T09:00:00")),
            ),
            (
                "after the larger closes, the smaller still holds",
                &overlapping,
                "2026-03-11T11:00:00",
                Some(2),
                vec![("small", "2026-03-11T09:00:00", "2026-03-11T13:00:00")],
                Some(("small", "2026-03-12T09:00:00")),
            ),
            (
                "an expression with seconds: closed at the close, next in 5 s",
                &seconds,
                "2026-03-11T10:00:15",
                None,
                vec![],
                Some(("tick", "2026-03-11T10:00:20")),
            ),
            ("no schedule", &[], "2026-03-11T10:00:00", None, vec![], None),
        ];
        for (name, schedules, now, floor, open, next) in rows {
            let w = windows(schedules, utc(now));
            assert_eq!(w.floor(), floor, "{name}: floor");
            let got: Vec<_> = w
                .open
                .iter()
                .map(|w| (w.name, w.opened, w.closes))
                .collect();
            let want: Vec<_> = open.iter().map(|(n, o, c)| (*n, utc(o), utc(c))).collect();
            assert_eq!(got, want, "{name}: open");
            assert_eq!(
                w.next.map(|n| (n.name, n.at)),
                next.map(|(n, at)| (n, utc(at))),
                "{name}: next"
            );
        }
    }

    #[test]
    fn a_fraction_of_a_second_after_the_opening_is_open() {
        let late = [s("late", "0 23 * * *", "UTC", 2 * H, 3)];
        let w = windows(&late, utc("2026-03-10T23:00:00") + 0.25);
        assert_eq!(w.floor(), Some(3));
        let w = windows(&late, utc("2026-03-10T22:59:59") + 0.75);
        assert_eq!(w.floor(), None);
    }

    #[test]
    fn occurrences_closer_than_the_duration_keep_the_window_open() {
        let hourly = [s("busy", "0 * * * *", "UTC", 2 * H, 2)];
        let w = windows(&hourly, utc("2026-03-11T10:15:00"));
        assert_eq!(
            w.open,
            vec![Window {
                name: "busy",
                opened: utc("2026-03-11T10:00:00"),
                closes: utc("2026-03-11T12:00:00"),
                min: 2
            }]
        );
    }

    #[test]
    fn next_change_is_the_earliest_close_or_opening() {
        let overlapping = [
            s("small", "0 9 * * *", "UTC", 4 * H, 2),
            s("big", "0 10 * * *", "UTC", H, 5),
        ];
        let at = |t| windows(&overlapping, utc(t)).next_change();
        assert_eq!(at("2026-03-11T08:00:00"), Some(utc("2026-03-11T09:00:00")));
        assert_eq!(at("2026-03-11T09:30:00"), Some(utc("2026-03-11T10:00:00")));
        assert_eq!(at("2026-03-11T10:30:00"), Some(utc("2026-03-11T11:00:00")));
        assert_eq!(at("2026-03-11T11:30:00"), Some(utc("2026-03-11T13:00:00")));
        assert_eq!(windows(&[], 0.0).next_change(), None);
    }

    #[test]
    fn the_floor_stays_within_min_and_max() {
        assert_eq!(effective_min(1, 5, None), 1);
        assert_eq!(effective_min(1, 5, Some(3)), 3);
        assert_eq!(
            effective_min(4, 5, Some(3)),
            4,
            "a floor below min is no floor"
        );
        assert_eq!(effective_min(1, 5, Some(9)), 5, "never above max");
    }
}
