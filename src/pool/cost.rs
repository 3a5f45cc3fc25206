//! What a pool costs: the lifetimes of its VMs as intervals in one billing state (running or
//! stopped), what those intervals add up to in a window, and the tracker that turns each VM list
//! into interval changes. Pure: the reconciler persists the changes, the HTTP layer prices a
//! window from the stored intervals.

use std::collections::{HashMap, HashSet};

/// How a VM is billed: a stopped VM keeps paying for its disk; anything else (booting
/// included) is billed as running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmState {
    Running,
    Stopped,
}

impl VmState {
    /// The billing state of a cloud `status`.
    pub fn of_status(status: &str) -> VmState {
        if status == "stopped" {
            VmState::Stopped
        } else {
            VmState::Running
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Running => "running",
            VmState::Stopped => "stopped",
        }
    }

    pub fn parse(text: &str) -> Option<VmState> {
        match text {
            "running" => Some(VmState::Running),
            "stopped" => Some(VmState::Stopped),
            _ => None,
        }
    }
}

/// One VM in one billing state from `since` to `until` (`None`: still open).
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    pub uuid: String,
    pub name: String,
    pub state: VmState,
    pub since: f64,
    pub until: Option<f64>,
}

/// Per-hour prices of one VM of the pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    pub running_per_hour: f64,
    pub stopped_per_hour: f64,
}

impl Prices {
    /// A pool's `price`.
    pub fn of(config: &crate::config::PriceConfig) -> Prices {
        Prices {
            running_per_hour: config.running_per_hour,
            stopped_per_hour: config.stopped_per_hour,
        }
    }

    pub fn per_hour(&self, state: VmState) -> f64 {
        match state {
            VmState::Running => self.running_per_hour,
            VmState::Stopped => self.stopped_per_hour,
        }
    }
}

/// What a window cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    pub running_seconds: f64,
    pub stopped_seconds: f64,
    pub cost: f64,
    /// The most VMs that existed at once in the window.
    pub peak_vms: u32,
    /// A fleet of `peak_vms` VMs running for the whole window.
    pub fixed_peak_cost: f64,
    /// `fixed_peak_cost - cost`.
    pub saving: f64,
}

/// Prices the intervals over `[since, until]`: each interval's overlap with the window (an open
/// one ends at `until`), the peak count of VMs at once (a VM that switches state at an instant
/// counts once), and a fixed fleet of that peak, running for the whole window.
pub fn cost(intervals: &[Interval], since: f64, until: f64, prices: Prices) -> Cost {
    let (mut running, mut stopped) = (0.0, 0.0);
    // (time, +1/-1): ends sort before starts at the same time.
    let mut edges: Vec<(f64, i32)> = Vec::new();
    for i in intervals {
        let start = i.since.max(since);
        let end = i.until.unwrap_or(until).min(until);
        if end <= start {
            continue;
        }
        match i.state {
            VmState::Running => running += end - start,
            VmState::Stopped => stopped += end - start,
        }
        edges.push((start, 1));
        edges.push((end, -1));
    }
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now_vms, mut peak) = (0i32, 0i32);
    for (_, delta) in edges {
        now_vms += delta;
        peak = peak.max(now_vms);
    }
    let cost = (running * prices.running_per_hour + stopped * prices.stopped_per_hour) / 3600.0;
    let window = (until - since).max(0.0);
    let fixed = peak as f64 * window * prices.running_per_hour / 3600.0;
    Cost {
        running_seconds: running,
        stopped_seconds: stopped,
        cost,
        peak_vms: peak.max(0) as u32,
        fixed_peak_cost: fixed,
        saving: fixed - cost,
    }
}

/// A change to the record of lifetimes.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Close the VM's open interval at `at`.
    Close { uuid: String, at: f64 },
    /// Open a new interval.
    Open(Interval),
}

/// The open intervals of one pool, by uuid, and how many VM-seconds of each state were
/// already counted (for the metrics' counters).
#[derive(Debug, Clone, Default)]
pub struct Lifetimes {
    open: HashMap<String, Interval>,
    /// Deleted by the service: not reopened by a list taken before the delete ended.
    deleted: HashSet<String>,
    /// Up to when the open intervals were counted by [`Lifetimes::accrue`].
    counted_to: f64,
}

impl Lifetimes {
    /// Continues the open intervals of a previous run; seconds before `now` are not counted
    /// again.
    pub fn resume(open: Vec<Interval>, now: f64) -> Lifetimes {
        Lifetimes {
            open: open.into_iter().map(|i| (i.uuid.clone(), i)).collect(),
            deleted: HashSet::new(),
            counted_to: now,
        }
    }

    pub fn open(&self) -> impl Iterator<Item = &Interval> {
        self.open.values()
    }

    /// The seconds by state since the last call, up to `now` (`now` earlier than the last
    /// call counts nothing).
    pub fn accrue(&mut self, now: f64) -> Vec<(VmState, f64)> {
        let mut out: Vec<(VmState, f64)> = Vec::new();
        for i in self.open.values() {
            let secs = now - i.since.max(self.counted_to);
            if secs > 0.0 {
                match out.iter_mut().find(|(s, _)| *s == i.state) {
                    Some((_, total)) => *total += secs,
                    None => out.push((i.state, secs)),
                }
            }
        }
        self.counted_to = self.counted_to.max(now);
        out
    }

    /// One VM list of the pool's VMs `(uuid, name, cloud status)` at `now`: opens an interval
    /// for a VM first seen, switches one whose billing state changed, closes those missing.
    pub fn observe(&mut self, vms: &[(String, String, String)], now: f64) -> Vec<Change> {
        let mut changes = Vec::new();
        let listed: HashSet<&str> = vms.iter().map(|(u, _, _)| u.as_str()).collect();
        self.deleted.retain(|u| listed.contains(u.as_str()));
        let mut gone: Vec<String> = self
            .open
            .keys()
            .filter(|u| !listed.contains(u.as_str()))
            .cloned()
            .collect();
        gone.sort();
        for uuid in gone {
            self.open.remove(&uuid);
            changes.push(Change::Close { uuid, at: now });
        }
        for (uuid, name, status) in vms {
            if self.deleted.contains(uuid) {
                continue;
            }
            let state = VmState::of_status(status);
            match self.open.get(uuid) {
                Some(i) if i.state == state => continue,
                Some(_) => changes.push(Change::Close {
                    uuid: uuid.clone(),
                    at: now,
                }),
                None => {}
            }
            let i = Interval {
                uuid: uuid.clone(),
                name: name.clone(),
                state,
                since: now,
                until: None,
            };
            self.open.insert(uuid.clone(), i.clone());
            changes.push(Change::Open(i));
        }
        changes
    }

    /// The service deleted the VM at `now`: its interval closes, and a list that still shows
    /// it (taken before the delete ended) does not reopen it.
    pub fn deleted(&mut self, uuid: &str, now: f64) -> Option<Change> {
        self.deleted.insert(uuid.to_string());
        self.open.remove(uuid).map(|_| Change::Close {
            uuid: uuid.to_string(),
            at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICES: Prices = Prices {
        running_per_hour: 0.02882,
        stopped_per_hour: 0.0028,
    };

    fn iv(uuid: &str, state: VmState, since: f64, until: Option<f64>) -> Interval {
        Interval {
            uuid: uuid.into(),
            name: uuid.into(),
            state,
            since,
            until,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_window_prices_the_overlap_peak_and_fixed_fleet() {
        use VmState::*;
        const H: f64 = 3600.0;
        // (intervals, since, until, running h, stopped h, peak)
        let table: Vec<(Vec<Interval>, f64, f64, f64, f64, u32)> = vec![
            // Nothing at all.
            (vec![], 0.0, 10.0 * H, 0.0, 0.0, 0),
            // The seed runs all window; one clone 2 h; another 1 h, overlapping the first.
            (
                vec![
                    iv("seed", Running, -5.0 * H, None),
                    iv("c1", Running, 1.0 * H, Some(3.0 * H)),
                    iv("c2", Running, 2.0 * H, Some(3.0 * H)),
                ],
                0.0,
                10.0 * H,
                13.0,
                0.0,
                3,
            ),
            // Clipped at both ends of the window; a stopped stretch of the same VM.
            (
                vec![
                    iv("a", Running, 0.0, Some(5.0 * H)),
                    iv("a", Stopped, 5.0 * H, Some(8.0 * H)),
                    iv("a", Running, 8.0 * H, None),
                ],
                4.0 * H,
                9.0 * H,
                2.0,
                3.0,
                1,
            ),
            // Back to back (one ends when the next starts): never two at once.
            (
                vec![
                    iv("a", Running, 0.0, Some(1.0 * H)),
                    iv("b", Running, 1.0 * H, Some(2.0 * H)),
                ],
                0.0,
                2.0 * H,
                2.0,
                0.0,
                1,
            ),
            // Entirely outside the window, or empty.
            (
                vec![
                    iv("a", Running, 0.0, Some(1.0 * H)),
                    iv("b", Running, 5.0 * H, Some(5.0 * H)),
                    iv("c", Running, 9.0 * H, None),
                ],
                2.0 * H,
                9.0 * H,
                0.0,
                0.0,
                0,
            ),
        ];
        for (n, (ivs, since, until, run_h, stop_h, peak)) in table.into_iter().enumerate() {
            let c = cost(&ivs, since, until, PRICES);
            assert!(close(c.running_seconds, run_h * H), "row {n}: {c:?}");
            assert!(close(c.stopped_seconds, stop_h * H), "row {n}: {c:?}");
            assert_eq!(c.peak_vms, peak, "row {n}");
            let expected = run_h * 0.02882 + stop_h * 0.0028;
            assert!(close(c.cost, expected), "row {n}: {c:?} vs {expected}");
            let fixed = peak as f64 * (until - since) / H * 0.02882;
            assert!(close(c.fixed_peak_cost, fixed), "row {n}: {c:?}");
            assert!(close(c.saving, fixed - expected), "row {n}: {c:?}");
        }
        // Row 2 in numbers: 13 running hours = 0.37466; fixed 3 × 10 h = 0.8646.
        let c = cost(
            &[
                iv("seed", Running, 0.0, None),
                iv("c1", Running, H, Some(3.0 * H)),
                iv("c2", Running, 2.0 * H, Some(3.0 * H)),
            ],
            0.0,
            10.0 * H,
            PRICES,
        );
        assert!(close(c.cost, 0.37466) && close(c.fixed_peak_cost, 0.8646));
        assert!(close(c.saving, 0.48994));
    }

    fn vm(uuid: &str, status: &str) -> (String, String, String) {
        (uuid.into(), format!("n-{uuid}"), status.into())
    }

    #[test]
    fn lists_open_switch_and_close_intervals() {
        let mut l = Lifetimes::default();
        let ch = l.observe(&[vm("a", "running"), vm("b", "starting")], 10.0);
        assert_eq!(ch.len(), 2);
        assert!(ch.iter().all(
            |c| matches!(c, Change::Open(i) if i.state == VmState::Running && i.since == 10.0)
        ));
        // Same list again: nothing.
        assert!(l
            .observe(&[vm("a", "running"), vm("b", "running")], 20.0)
            .is_empty());
        // a stops, b vanishes.
        let ch = l.observe(&[vm("a", "stopped")], 30.0);
        assert_eq!(
            ch,
            vec![
                Change::Close {
                    uuid: "b".into(),
                    at: 30.0
                },
                Change::Close {
                    uuid: "a".into(),
                    at: 30.0
                },
                Change::Open(Interval {
                    uuid: "a".into(),
                    name: "n-a".into(),
                    state: VmState::Stopped,
                    since: 30.0,
                    until: None
                }),
            ]
        );
        // Deleted by the service: closed now, not reopened by a stale list, forgotten once
        // the list no longer shows it.
        assert_eq!(
            l.deleted("a", 35.0),
            Some(Change::Close {
                uuid: "a".into(),
                at: 35.0
            })
        );
        assert!(l.observe(&[vm("a", "stopped")], 36.0).is_empty());
        assert!(l.observe(&[], 40.0).is_empty());
        assert_eq!(l.open().count(), 0);
    }

    #[test]
    fn accrue_counts_each_second_once_and_resume_skips_the_past() {
        let mut l = Lifetimes::resume(vec![iv("seed", VmState::Running, 0.0, None)], 100.0);
        assert_eq!(l.accrue(160.0), vec![(VmState::Running, 60.0)]);
        l.observe(&[vm("seed", "running"), vm("c", "stopped")], 170.0);
        let mut got = l.accrue(200.0);
        got.sort_by_key(|(s, _)| s.as_str());
        assert_eq!(
            got,
            vec![(VmState::Running, 40.0), (VmState::Stopped, 30.0)]
        );
        assert!(l.accrue(150.0).is_empty());
    }
}
