//! What each simulated VM has been billed: its time running and its time stopped, from its state
//! changes, and `GET charging/usage` built from them (PROTOCOLS.md E.2.6).
//!
//! As IDCloudHost bills it (E.2.6), a VM that is being created or started counts as running; only
//! `stopped` is billed at the stopped rate (the disk alone). Plain data and arithmetic, no clock:
//! every function takes the time it computes for.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::Serialize;

/// Per hour of a running 2-CPU, 2 GB VM. The example invoice of PROTOCOLS.md E.2.6 ("<vm>, 2 CPUs,
/// 2 GB RAM, 20 GB disk" at 0.02882 per hour); the doc names no currency and the real figure is
/// UNVERIFIED.
pub(super) const PRICE_RUNNING_PER_HOUR: f64 = 0.02882;
/// Per hour of the same VM stopped: the same invoice's "<vm>, stopped" line (0.0028 per hour).
pub(super) const PRICE_STOPPED_PER_HOUR: f64 = 0.0028;

/// One VM's meter: when its billed state changed, oldest first, and when it went away.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Meter {
    /// `(since, running)`: from `since` on the VM was billed as running (true) or stopped.
    changes: Vec<(DateTime<Utc>, bool)>,
    ended: Option<DateTime<Utc>>,
}

impl Meter {
    pub(super) fn new(created: DateTime<Utc>, running: bool) -> Self {
        Meter {
            changes: vec![(created, running)],
            ended: None,
        }
    }

    /// From `at` on the VM is billed as `running` (no change if it already was).
    pub(super) fn set(&mut self, at: DateTime<Utc>, running: bool) {
        if self.ended.is_none() && self.changes.last().map(|c| c.1) != Some(running) {
            self.changes.push((at, running));
        }
    }

    /// The VM went away at `at`: nothing is billed after it.
    pub(super) fn end(&mut self, at: DateTime<Utc>) {
        self.ended.get_or_insert(at);
    }

    /// Seconds billed as (running, stopped) within `[from, to]`.
    pub(super) fn seconds(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> (f64, f64) {
        let to = self.ended.map_or(to, |end| end.min(to));
        let (mut running, mut stopped) = (0.0, 0.0);
        for (i, (since, is_running)) in self.changes.iter().enumerate() {
            let until = self.changes.get(i + 1).map_or(to, |next| next.0.min(to));
            let start = (*since).max(from);
            if until > start {
                let secs = (until - start).num_milliseconds() as f64 / 1000.0;
                if *is_running {
                    running += secs;
                } else {
                    stopped += secs;
                }
            }
        }
        (running, stopped)
    }

    /// Seconds billed as (running, stopped) over the VM's whole life until `now`.
    pub(super) fn lifetime_seconds(&self, now: DateTime<Utc>) -> (f64, f64) {
        let created = self.changes.first().map_or(now, |c| c.0);
        self.seconds(created, now)
    }

    /// Whether any of its life falls in `[from, to]`.
    pub(super) fn alive_within(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        let created = self.changes.first().map_or(to, |c| c.0);
        created <= to && self.ended.is_none_or(|end| end >= from)
    }
}

/// The first instant of `now`'s month, UTC. ASSUMPTION: the doc says "the current month" without a
/// zone; the simulator counts months in UTC.
pub(super) fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

/// One row of `GET charging/usage` (E.2.6). The simulator gives each VM one row for its running
/// hours and, once it has been stopped this month, one for its stopped hours, as the invoices split
/// them; whether the real Charging rows split them is UNVERIFIED.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ChargingRow {
    pub owner_uuid: String,
    pub description: String,
    pub price: f64,
    pub price_unit: &'static str,
    pub hours: f64,
    pub cost: f64,
    pub uptime_types: Vec<&'static str>,
    pub configurations: Vec<ChargingConfiguration>,
    pub billing_account_id: u64,
    pub user_id: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct ChargingConfiguration {
    pub vm_name: String,
    pub cpus: u32,
    #[serde(rename = "ram_MB")]
    pub ram_mb: u32,
    #[serde(rename = "disk_size_GB")]
    pub disk_size_gb: u32,
    pub os_name: &'static str,
}

/// What a row needs to know about its VM.
pub(super) struct VmShape<'a> {
    pub uuid: &'a str,
    pub name: &'a str,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub disk_gb: u32,
    pub billing_account_id: u64,
    pub user_id: u64,
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The rows of one VM for `now`'s month (none if it did not exist this month).
pub(super) fn rows(meter: &Meter, vm: &VmShape<'_>, now: DateTime<Utc>) -> Vec<ChargingRow> {
    let from = month_start(now);
    if !meter.alive_within(from, now) {
        return Vec::new();
    }
    let (running, stopped) = meter.seconds(from, now);
    let base = format!(
        "{}, {} CPUs, {} GB RAM, {} GB disk",
        vm.name,
        vm.vcpus,
        vm.memory_mib / 1024,
        vm.disk_gb
    );
    let row = |description: String, price: f64, secs: f64, uptime_types| {
        let hours = round6(secs / 3600.0);
        ChargingRow {
            owner_uuid: vm.uuid.to_string(),
            description,
            price,
            price_unit: "h",
            hours,
            cost: round6(hours * price),
            uptime_types,
            configurations: vec![ChargingConfiguration {
                vm_name: vm.name.to_string(),
                cpus: vm.vcpus,
                ram_mb: vm.memory_mib,
                disk_size_gb: vm.disk_gb,
                os_name: "ubuntu",
            }],
            billing_account_id: vm.billing_account_id,
            user_id: vm.user_id,
        }
    };
    let mut out = vec![row(
        base.clone(),
        PRICE_RUNNING_PER_HOUR,
        running,
        vec!["VM_COMPUTE", "VM_RUNNING", "MAIN_STORAGE"],
    )];
    if stopped > 0.0 {
        out.push(row(
            format!("{base}, stopped"),
            PRICE_STOPPED_PER_HOUR,
            stopped,
            vec!["MAIN_STORAGE"],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap() + chrono::Duration::seconds(s)
    }

    #[test]
    fn running_and_stopped_time_split_at_each_change() {
        let mut m = Meter::new(t(0), true);
        m.set(t(10), true); // booted: still running
        m.set(t(30), false);
        m.set(t(100), true);
        assert_eq!(m.lifetime_seconds(t(130)), (60.0, 70.0));
        assert_eq!(m.seconds(t(20), t(50)), (10.0, 20.0));
        m.end(t(110));
        assert_eq!(m.lifetime_seconds(t(500)), (40.0, 70.0));
        m.set(t(120), false);
        assert_eq!(
            m.lifetime_seconds(t(500)),
            (40.0, 70.0),
            "nothing after the end"
        );
    }

    #[test]
    fn rows_cover_this_month_only() {
        let vm = VmShape {
            uuid: "u",
            name: "clone-1",
            vcpus: 2,
            memory_mib: 2048,
            disk_gb: 60,
            billing_account_id: 7,
            user_id: 8,
        };
        // Created last month, stopped for the last 3 hours of it, running since this month began.
        let start = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let mut m = Meter::new(start - chrono::Duration::hours(10), true);
        m.set(start - chrono::Duration::hours(3), false);
        m.set(start + chrono::Duration::hours(1), true);
        let rows = rows(&m, &vm, start + chrono::Duration::hours(4));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].hours, 3.0);
        assert_eq!(rows[0].cost, round6(3.0 * PRICE_RUNNING_PER_HOUR));
        assert_eq!(rows[0].description, "clone-1, 2 CPUs, 2 GB RAM, 60 GB disk");
        assert_eq!(rows[1].hours, 1.0);
        assert_eq!(rows[1].price, PRICE_STOPPED_PER_HOUR);
        assert!(rows[1].description.ends_with(", stopped"));
        // Deleted last month: no row.
        m.end(start - chrono::Duration::hours(1));
        assert!(super::rows(&m, &vm, start + chrono::Duration::hours(4)).is_empty());
    }
}
