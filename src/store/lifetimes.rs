//! The lifecycle record of each pool's VMs (seed included): one row per VM per stretch in one
//! billing state (`running` or `stopped`), `until` NULL while open. Written by the reconciler's
//! writer thread from [`crate::pool::cost::Lifetimes`]' changes; read by the cost endpoint.

use rusqlite::params;

use super::Store;
use crate::pool::cost::{Change, Interval, VmState};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS vm_lifetimes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pool TEXT NOT NULL,
    uuid TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    since REAL NOT NULL,
    until REAL
);
CREATE INDEX IF NOT EXISTS vm_lifetimes_by_pool ON vm_lifetimes (pool, since);
";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, f64, Option<f64>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn intervals(
    rows: impl Iterator<Item = rusqlite::Result<(String, String, String, f64, Option<f64>)>>,
) -> anyhow::Result<Vec<Interval>> {
    let mut out = Vec::new();
    for r in rows {
        let (uuid, name, state, since, until) = r?;
        let state = VmState::parse(&state)
            .ok_or_else(|| anyhow::anyhow!("lifetime of {name}: unknown state {state:?}"))?;
        out.push(Interval {
            uuid,
            name,
            state,
            since,
            until,
        });
    }
    Ok(out)
}

impl Store {
    /// The pool's open intervals (VMs seen in the last list of a previous run).
    pub fn open_lifetimes(&self, pool: &str) -> anyhow::Result<Vec<Interval>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT uuid, name, state, since, until FROM vm_lifetimes
             WHERE pool = ?1 AND until IS NULL ORDER BY id",
        )?;
        let rows = stmt.query_map(params![pool], row)?;
        intervals(rows)
    }

    /// The pool's intervals that overlap `[since, until]`.
    pub fn lifetimes(&self, pool: &str, since: f64, until: f64) -> anyhow::Result<Vec<Interval>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT uuid, name, state, since, until FROM vm_lifetimes
             WHERE pool = ?1 AND since < ?3 AND (until IS NULL OR until > ?2) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![pool, since, until], row)?;
        intervals(rows)
    }

    /// Applies the changes of one list (or one delete) in one transaction.
    pub fn apply_lifetimes(&self, pool: &str, changes: &[Change]) -> anyhow::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for c in changes {
            match c {
                Change::Close { uuid, at } => {
                    tx.execute(
                        "UPDATE vm_lifetimes SET until = max(since, ?3)
                         WHERE pool = ?1 AND uuid = ?2 AND until IS NULL",
                        params![pool, uuid, at],
                    )?;
                }
                Change::Open(i) => {
                    tx.execute(
                        "INSERT INTO vm_lifetimes (pool, uuid, name, state, since, until)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![pool, i.uuid, i.name, i.state.as_str(), i.since, i.until],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::cost::Lifetimes;

    #[test]
    fn intervals_survive_a_reopen_and_open_ones_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let vms = |list: &[(&str, &str)]| -> Vec<(String, String, String)> {
            list.iter()
                .map(|(u, s)| (u.to_string(), format!("n-{u}"), s.to_string()))
                .collect()
        };
        {
            let store = Store::open(&path).unwrap();
            let mut l = Lifetimes::default();
            let ch = l.observe(&vms(&[("seed", "running"), ("c1", "running")]), 100.0);
            store.apply_lifetimes("web", &ch).unwrap();
            let ch = l.observe(&vms(&[("seed", "stopped"), ("c1", "running")]), 200.0);
            store.apply_lifetimes("web", &ch).unwrap();
            store
                .apply_lifetimes("other", &l.observe(&vms(&[("x", "running")]), 0.0))
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let open = store.open_lifetimes("web").unwrap();
        assert_eq!(open.len(), 2);
        // The next run's first list misses c1: closed then; the seed's stretch continues.
        let mut l = Lifetimes::resume(open, 250.0);
        let ch = l.observe(&vms(&[("seed", "stopped")]), 300.0);
        assert_eq!(
            ch,
            vec![Change::Close {
                uuid: "c1".into(),
                at: 300.0
            }]
        );
        store.apply_lifetimes("web", &ch).unwrap();
        let all = store.lifetimes("web", 0.0, 1000.0).unwrap();
        let got: Vec<(&str, &str, f64, Option<f64>)> = all
            .iter()
            .map(|i| (i.uuid.as_str(), i.state.as_str(), i.since, i.until))
            .collect();
        assert_eq!(
            got,
            vec![
                ("seed", "running", 100.0, Some(200.0)),
                ("c1", "running", 100.0, Some(300.0)),
                ("seed", "stopped", 200.0, None),
            ]
        );
        // The window filter: only what overlaps [250, 260].
        assert_eq!(store.lifetimes("web", 250.0, 260.0).unwrap().len(), 2);
        assert_eq!(store.lifetimes("web", 0.0, 100.0).unwrap().len(), 0);
    }
}
