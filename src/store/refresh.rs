//! The latest rolling refresh of each pool. Each change bumps a sequence number under the
//! control's lock, and a write only lands when its number is newer than the stored one: the
//! HTTP layer (start, cancel) and the reconciler's writer thread (progress) may then commit in
//! any order without an older record overwriting a newer one.

use rusqlite::{params, OptionalExtension};

use super::{insert_activity, Activity, Store};
use crate::pool::refresh::{Refresh, RefreshState};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS refreshes (
    pool TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    reason TEXT NOT NULL,
    total INTEGER NOT NULL,
    replaced INTEGER NOT NULL,
    old TEXT NOT NULL,
    boot_failures INTEGER NOT NULL,
    version TEXT
);
";

impl Store {
    /// The pool's latest refresh and its sequence number, if it ever had one.
    pub fn refresh(&self, pool: &str) -> anyhow::Result<Option<(u64, Refresh)>> {
        let row = self
            .conn()
            .query_row(
                "SELECT seq, id, state, started, finished, reason, total, replaced, old, boot_failures, version
                 FROM refreshes WHERE pool = ?1",
                params![pool],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, f64>(3)?,
                        r.get::<_, Option<f64>>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, i64>(7)?,
                        r.get::<_, String>(8)?,
                        r.get::<_, i64>(9)?,
                        r.get::<_, Option<String>>(10)?,
                    ))
                },
            )
            .optional()?;
        let Some((
            seq,
            id,
            state,
            started,
            finished,
            reason,
            total,
            replaced,
            old,
            failures,
            version,
        )) = row
        else {
            return Ok(None);
        };
        let state = RefreshState::parse(&state)
            .ok_or_else(|| anyhow::anyhow!("refresh of pool {pool}: unknown state {state:?}"))?;
        let old: Vec<String> = serde_json::from_str(&old)
            .map_err(|e| anyhow::anyhow!("refresh of pool {pool}: bad list of old clones: {e}"))?;
        Ok(Some((
            seq.max(0) as u64,
            Refresh {
                id,
                state,
                started,
                finished,
                reason,
                total: total.max(0) as u32,
                replaced: replaced.max(0) as u32,
                old: old.into_iter().collect(),
                boot_failures: failures.max(0) as u32,
                version,
            },
        )))
    }

    /// Writes the refresh if `seq` is newer than the stored one, with an activity, in one
    /// transaction (the activity is written only with the record).
    pub fn save_refresh(
        &self,
        pool: &str,
        seq: u64,
        r: &Refresh,
        activity: Option<&Activity>,
    ) -> anyhow::Result<()> {
        let old: Vec<&String> = r.old.iter().collect();
        let old = serde_json::to_string(&old)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let changed = tx.execute(
            "INSERT INTO refreshes (pool, seq, id, state, started, finished, reason, total, replaced, old, boot_failures, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT(pool) DO UPDATE SET seq = ?2, id = ?3, state = ?4, started = ?5, finished = ?6,
                reason = ?7, total = ?8, replaced = ?9, old = ?10, boot_failures = ?11, version = ?12
             WHERE excluded.seq > refreshes.seq",
            params![
                pool,
                seq as i64,
                r.id,
                r.state.as_str(),
                r.started,
                r.finished,
                r.reason,
                r.total as i64,
                r.replaced as i64,
                old,
                r.boot_failures as i64,
                r.version
            ],
        )?;
        let noted = (changed > 0).then_some(activity).flatten();
        if let Some(a) = noted {
            insert_activity(&tx, pool, a)?;
        }
        tx.commit()?;
        drop(conn);
        self.recorded(pool, noted);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_round_trips_and_an_older_write_never_overwrites_a_newer_one() {
        let store = Store::open_in_memory().unwrap();
        assert_eq!(store.refresh("web").unwrap(), None);
        let mut r = Refresh {
            id: "r1".into(),
            state: RefreshState::Running,
            started: 10.0,
            finished: None,
            reason: "requested".into(),
            total: 2,
            replaced: 0,
            old: ["u1".to_string(), "name:web-clone-4".to_string()].into(),
            boot_failures: 0,
            version: Some("2".into()),
        };
        store.save_refresh("web", 1, &r, None).unwrap();
        assert_eq!(store.refresh("web").unwrap(), Some((1, r.clone())));
        let older = r.clone();
        r.cancel(20.0);
        let cancelled = Activity::new("refresh", "operator", "cancelled", "r1");
        store.save_refresh("web", 3, &r, Some(&cancelled)).unwrap();
        // The reconciler's progress of seq 2 commits late: ignored, and so is its activity.
        let late = Activity::new("refresh", "progress", "running", "r1");
        store.save_refresh("web", 2, &older, Some(&late)).unwrap();
        assert_eq!(store.refresh("web").unwrap(), Some((3, r)));
        let actions: Vec<String> = store
            .activities("web", 10)
            .unwrap()
            .into_iter()
            .map(|a| a.outcome)
            .collect();
        assert_eq!(actions, ["cancelled"]);
    }
}
