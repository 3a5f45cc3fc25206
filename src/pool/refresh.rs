//! A rolling refresh: which clones it replaces, how far it has come, and when one starts by
//! itself because a clone reports another version than the seed (drift). The planner's rules for
//! it are in [`super::plan`] (surge first, old clones drained only once a healthy replacement is
//! ready). Pure: `now` is an argument; the reconciler and the control persist the record.

use std::collections::{BTreeSet, HashSet};

use super::backend::{Backend, BackendState, Role};

/// Marks an old clone known only by the name of its clone call (not resolved when the refresh
/// started): `name:{name}`, turned into its uuid once the VM is listed.
pub const NAME_MARK: &str = "name:";

/// A new clone that fails its boot this many times fails the refresh.
pub const BOOT_FAILURES_TO_FAIL: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshState {
    Running,
    Done,
    Failed,
    Cancelled,
}

impl RefreshState {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshState::Running => "running",
            RefreshState::Done => "done",
            RefreshState::Failed => "failed",
            RefreshState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<RefreshState> {
        match s {
            "running" => Some(RefreshState::Running),
            "done" => Some(RefreshState::Done),
            "failed" => Some(RefreshState::Failed),
            "cancelled" => Some(RefreshState::Cancelled),
            _ => None,
        }
    }
}

/// One pool's latest refresh.
#[derive(Debug, Clone, PartialEq)]
pub struct Refresh {
    pub id: String,
    pub state: RefreshState,
    /// Unix seconds.
    pub started: f64,
    pub finished: Option<f64>,
    /// Why it started (`requested`, or the drift seen), and once over, how it ended.
    pub reason: String,
    /// Old clones when it started.
    pub total: u32,
    /// Old clones taken out of service since (drained, deleted or gone).
    pub replaced: u32,
    /// Old clones still serving or booting: uuids, and `name:{name}` for unresolved clone calls.
    pub old: BTreeSet<String>,
    /// Boot failures of new clones while it runs.
    pub boot_failures: u32,
    /// The version the seed reported when it started, if drift detection read one.
    pub version: Option<String>,
}

impl Refresh {
    /// A refresh started `now`: every clone not leaving, and every clone call not yet resolved
    /// (it may have copied the old disk), is old. With none, it is done at once.
    pub fn start(
        id: String,
        reason: String,
        version: Option<String>,
        backends: &[Backend],
        unresolved: &[String],
        now: f64,
    ) -> Refresh {
        let mut old: BTreeSet<String> = backends
            .iter()
            .filter(|b| b.role == Role::Clone && !b.state.is_leaving())
            .map(|b| b.uuid.clone())
            .collect();
        old.extend(unresolved.iter().map(|n| format!("{NAME_MARK}{n}")));
        let total = old.len() as u32;
        let mut refresh = Refresh {
            id,
            state: RefreshState::Running,
            started: now,
            finished: None,
            reason,
            total,
            replaced: 0,
            old,
            boot_failures: 0,
            version,
        };
        if total == 0 {
            refresh.finish(RefreshState::Done, "no clone to replace", now);
        }
        refresh
    }

    pub fn running(&self) -> bool {
        self.state == RefreshState::Running
    }

    /// The uuids of the old clones the planner still has to replace.
    pub fn old_uuids(&self) -> BTreeSet<String> {
        self.old
            .iter()
            .filter(|k| !k.starts_with(NAME_MARK))
            .cloned()
            .collect()
    }

    fn finish(&mut self, state: RefreshState, why: &str, now: f64) {
        self.state = state;
        self.finished = Some(now);
        if !why.is_empty() {
            self.reason = format!("{}; {why}", self.reason);
        }
    }

    /// Cancels a running refresh. Returns false when it is not running.
    pub fn cancel(&mut self, now: f64) -> bool {
        if !self.running() {
            return false;
        }
        self.finish(RefreshState::Cancelled, "cancelled", now);
        true
    }

    /// A new clone failed its boot; the second failure fails the refresh (nothing old was
    /// drained without a ready replacement, so the old clones keep serving).
    pub fn boot_failed(&mut self, name: &str, now: f64) {
        if !self.running() {
            return;
        }
        self.boot_failures += 1;
        if self.boot_failures >= BOOT_FAILURES_TO_FAIL {
            let why = format!(
                "{} new clones failed their boot (the last: {name}); the old clones keep serving",
                self.boot_failures
            );
            self.finish(RefreshState::Failed, &why, now);
        }
    }

    /// Brings the record up to date with what exists: an old clone called by name becomes its
    /// uuid once listed (or is dropped when its call created nothing), an old clone that leaves
    /// or vanishes is replaced, and with none left the refresh is done. Call it only with a
    /// view built from a list. Returns whether anything changed.
    pub fn settle(&mut self, backends: &[Backend], unresolved: &HashSet<String>, now: f64) -> bool {
        if !self.running() {
            return false;
        }
        let before = self.clone();
        let mut next = BTreeSet::new();
        for key in std::mem::take(&mut self.old) {
            if let Some(name) = key.strip_prefix(NAME_MARK) {
                if unresolved.contains(name) {
                    next.insert(key);
                    continue;
                }
                match backends
                    .iter()
                    .find(|b| b.name == name && b.role == Role::Clone)
                {
                    Some(b) if !b.state.is_leaving() => {
                        next.insert(b.uuid.clone());
                    }
                    Some(_) => self.replaced += 1,
                    // The call created nothing: nothing to replace.
                    None => self.total = self.total.saturating_sub(1),
                }
                continue;
            }
            match backends.iter().find(|b| b.uuid == key) {
                Some(b) if !b.state.is_leaving() => {
                    next.insert(key);
                }
                _ => self.replaced += 1,
            }
        }
        self.old = next;
        if self.old.is_empty() {
            self.finish(RefreshState::Done, "", now);
        }
        *self != before
    }
}

/// Why a refresh should start by itself, if it should: the seed reports a version, a ready
/// clone reports another, and no refresh was made for the seed's version yet (done, failed or
/// cancelled: a version is rolled out by itself once).
pub fn drift(
    seed_version: Option<&str>,
    clones: &[(String, String)],
    last: Option<&Refresh>,
) -> Option<String> {
    let seed = seed_version?;
    if last.is_some_and(|r| r.running() || r.version.as_deref() == Some(seed)) {
        return None;
    }
    let (name, version) = clones.iter().find(|(_, v)| v != seed)?;
    Some(format!(
        "drift: the seed reports version {seed:?}, {name} reports {version:?}"
    ))
}

/// The versions of ready clones, from what was read of each backend (by uuid).
pub fn ready_clone_versions(
    backends: &[Backend],
    read: &std::collections::HashMap<String, String>,
) -> Vec<(String, String)> {
    backends
        .iter()
        .filter(|b| b.role == Role::Clone && b.state == BackendState::Ready)
        .filter_map(|b| read.get(&b.uuid).map(|v| (b.name.clone(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: &str, state: BackendState) -> Backend {
        let (uuid, name, role) = match n {
            "seed" => ("seed-uuid".into(), "seed".into(), Role::Seed),
            n => (format!("u{n}"), format!("p-clone-{n}"), Role::Clone),
        };
        Backend {
            uuid,
            name,
            role,
            ip: None,
            cloud_status: "running".into(),
            created_at: None,
            state,
            since: 0.0,
        }
    }

    fn start(backends: &[Backend], unresolved: &[&str]) -> Refresh {
        let unresolved: Vec<String> = unresolved.iter().map(|s| s.to_string()).collect();
        Refresh::start(
            "r1".into(),
            "requested".into(),
            None,
            backends,
            &unresolved,
            10.0,
        )
    }

    #[test]
    fn old_clones_are_the_clones_not_leaving_and_the_unresolved_calls_never_the_seed() {
        use BackendState::*;
        let r = start(
            &[
                b("seed", Ready),
                b("1", Ready),
                b("2", Booting),
                b("3", Draining),
            ],
            &["p-clone-4"],
        );
        let old: Vec<&str> = r.old.iter().map(String::as_str).collect();
        assert_eq!(old, ["name:p-clone-4", "u1", "u2"]);
        assert_eq!(
            (r.total, r.replaced, r.state),
            (3, 0, RefreshState::Running)
        );
        assert_eq!(r.old_uuids().len(), 2);
    }

    #[test]
    fn a_pool_with_no_clone_is_refreshed_at_once() {
        let r = start(&[b("seed", BackendState::Ready)], &[]);
        assert_eq!(r.state, RefreshState::Done);
        assert_eq!(r.finished, Some(10.0));
    }

    #[test]
    fn settling_counts_leaving_and_vanished_clones_and_finishes_when_none_is_left() {
        use BackendState::*;
        let mut r = start(&[b("seed", Ready), b("1", Ready), b("2", Ready)], &[]);
        assert!(!r.settle(
            &[b("seed", Ready), b("1", Ready), b("2", Ready)],
            &HashSet::new(),
            11.0
        ));
        assert!(r.settle(
            &[b("seed", Ready), b("1", Draining), b("2", Ready)],
            &HashSet::new(),
            12.0
        ));
        assert_eq!((r.replaced, r.state), (1, RefreshState::Running));
        // u2 vanished (deleted outside), u1 is gone after its drain.
        assert!(r.settle(&[b("seed", Ready), b("5", Ready)], &HashSet::new(), 13.0));
        assert_eq!((r.replaced, r.total, r.state), (2, 2, RefreshState::Done));
        assert_eq!(r.finished, Some(13.0));
    }

    #[test]
    fn an_unresolved_clone_call_becomes_its_uuid_or_leaves_the_count() {
        use BackendState::*;
        let mut r = start(&[b("seed", Ready)], &["p-clone-4", "p-clone-5"]);
        assert_eq!(r.total, 2);
        let unresolved: HashSet<String> = ["p-clone-5".to_string()].into();
        assert!(r.settle(&[b("seed", Ready), b("4", Booting)], &unresolved, 11.0));
        let old: Vec<&str> = r.old.iter().map(String::as_str).collect();
        assert_eq!(old, ["name:p-clone-5", "u4"]);
        // p-clone-5's call created nothing: one clone fewer to replace.
        r.settle(&[b("seed", Ready), b("4", Ready)], &HashSet::new(), 12.0);
        assert_eq!((r.total, r.replaced), (1, 0));
        assert_eq!(r.old_uuids().into_iter().collect::<Vec<_>>(), ["u4"]);
    }

    #[test]
    fn two_boot_failures_fail_it_and_a_cancel_ends_only_a_running_one() {
        let mut r = start(
            &[b("seed", BackendState::Ready), b("1", BackendState::Ready)],
            &[],
        );
        r.boot_failed("p-clone-2", 20.0);
        assert!(r.running());
        r.boot_failed("p-clone-3", 30.0);
        assert_eq!(r.state, RefreshState::Failed);
        assert!(r.reason.contains("p-clone-3"), "{}", r.reason);
        assert!(!r.cancel(31.0));
        let mut r = start(
            &[b("seed", BackendState::Ready), b("1", BackendState::Ready)],
            &[],
        );
        assert!(r.cancel(40.0));
        assert_eq!((r.state, r.finished), (RefreshState::Cancelled, Some(40.0)));
        assert!(
            !r.settle(&[], &HashSet::new(), 41.0),
            "a cancelled refresh stays as it is"
        );
    }

    #[test]
    fn drift_starts_once_per_seed_version() {
        let clones = vec![
            ("c1".to_string(), "1".to_string()),
            ("c2".to_string(), "2".to_string()),
        ];
        // No version read from the seed: nothing to compare with.
        assert_eq!(drift(None, &clones, None), None);
        // Every clone agrees with the seed.
        assert_eq!(drift(Some("2"), &clones[1..], None), None);
        let why = drift(Some("2"), &clones, None).expect("c1 differs");
        assert!(why.contains("\"2\"") && why.contains("c1"), "{why}");
        let mut last = start(&[b("1", BackendState::Ready)], &[]);
        last.version = Some("2".into());
        last.state = RefreshState::Failed;
        assert_eq!(
            drift(Some("2"), &clones, Some(&last)),
            None,
            "not repeated for version 2"
        );
        assert!(
            drift(Some("3"), &clones, Some(&last)).is_some(),
            "a new version is"
        );
        last.state = RefreshState::Running;
        last.version = Some("1".into());
        assert_eq!(
            drift(Some("3"), &clones, Some(&last)),
            None,
            "not while one runs"
        );
    }
}
