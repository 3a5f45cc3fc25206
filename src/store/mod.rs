//! Durable state in SQLite (`state_path`): desired sizes, cooldown clocks, VMs on their way in
//! (provisioning) or out (draining, deleting), and the activity history. The cloud is the truth
//! about what exists; this file is the truth about intent.
//!
//! SQLite in WAL mode with `synchronous = FULL` gives crash-safe commits without a hand-rolled
//! file format. One connection behind a mutex: writes are rare (decisions and lifecycle steps)
//! and each is one short transaction.

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};

use crate::pool::decide::Clocks;
pub use crate::pool::plan::{Intent, Phase};

mod lifetimes;
mod refresh;
mod replay;
mod writer;
pub use writer::Writer;

/// One entry of the activity history.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub id: i64,
    pub at: f64,
    /// What was decided or done: `scale_up`, `scale_down`, `set_desired`, `clone`, `ready`,
    /// `adopted`, `release_ip`, `drain`, `delete`, `boot_failed`, `replace_unhealthy`,
    /// `vanished`, `refresh`.
    pub action: String,
    /// Why: the webhook, the operator, the reconciler's reason.
    pub cause: String,
    /// `ok`, `failed`, `started` ...
    pub outcome: String,
    pub detail: String,
}

/// Called with each activity once it is durable (see [`Store::observe`]).
pub type Observer = Box<dyn Fn(&str, &Activity) + Send + Sync>;

pub struct Store {
    conn: Mutex<Connection>,
    /// Set once at start-up (the notifier's hook); called by whichever thread wrote the
    /// activity, after its commit. It must not block: it only queues.
    observer: std::sync::OnceLock<Observer>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pools (
    name TEXT PRIMARY KEY,
    desired INTEGER NOT NULL,
    last_up REAL,
    last_down REAL
);
-- Keyed by the VM's uuid once known (drains, deletes), by its name before (clone calls).
CREATE TABLE IF NOT EXISTS vm_intents (
    pool TEXT NOT NULL,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    uuid TEXT,
    phase TEXT NOT NULL,
    since REAL NOT NULL,
    until REAL,
    reason TEXT NOT NULL DEFAULT '',
    -- Warm pool: a clone call that refills it, or a drain whose VM may go back into it.
    warm INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (pool, key)
);
-- Facts that outlive a run: `traefik_polled` (when Traefik first fetched /traefik).
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value REAL NOT NULL
);
-- Clones whose readiness was announced (a `ready` activity), so a restart does not announce
-- them again.
CREATE TABLE IF NOT EXISTS announced (
    pool TEXT NOT NULL,
    uuid TEXT NOT NULL,
    PRIMARY KEY (pool, uuid)
);
CREATE TABLE IF NOT EXISTS activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pool TEXT NOT NULL,
    at REAL NOT NULL,
    action TEXT NOT NULL,
    cause TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS activities_by_pool ON activities (pool, id);
";

/// How many activities are kept per pool.
const KEEP_ACTIVITIES: i64 = 10_000;

impl Store {
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("state_path: cannot create {}", dir.display()))?;
            }
        }
        let conn = Connection::open(path)
            .with_context(|| format!("state_path: cannot open {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Self::init(conn).with_context(|| format!("state_path: {}", path.display()))
    }

    pub fn open_in_memory() -> anyhow::Result<Store> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> anyhow::Result<Store> {
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(refresh::SCHEMA)?;
        conn.execute_batch(lifetimes::SCHEMA)?;
        migrate_intents(&conn)?;
        add_warm_column(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            observer: std::sync::OnceLock::new(),
        })
    }

    /// Hands every activity written from now on, once committed, to `observer` (the notifier).
    /// Only the first call takes effect.
    pub fn observe(&self, observer: Observer) {
        if self.observer.set(observer).is_err() {
            tracing::warn!("the store already has an observer; ignoring another");
        }
    }

    /// Tells the observer about an activity that is now durable.
    pub(super) fn recorded(&self, pool: &str, activity: Option<&Activity>) {
        if let (Some(observer), Some(a)) = (self.observer.get(), activity) {
            observer(pool, a);
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The persisted desired size and cooldown clocks of a pool, if any.
    pub fn load_pool(&self, pool: &str) -> anyhow::Result<Option<(u32, Clocks)>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT desired, last_up, last_down FROM pools WHERE name = ?1",
                params![pool],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?.max(0) as u32,
                        Clocks {
                            last_up: r.get(1)?,
                            last_down: r.get(2)?,
                        },
                    ))
                },
            )
            .optional()?)
    }

    /// Saves desired and clocks, with an activity, in one transaction.
    pub fn save_pool(
        &self,
        pool: &str,
        desired: u32,
        clocks: &Clocks,
        activity: Option<&Activity>,
    ) -> anyhow::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO pools (name, desired, last_up, last_down) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET desired = ?2, last_up = ?3, last_down = ?4",
            params![pool, desired as i64, clocks.last_up, clocks.last_down],
        )?;
        if let Some(a) = activity {
            insert_activity(&tx, pool, a)?;
        }
        tx.commit()?;
        drop(conn);
        self.recorded(pool, activity);
        Ok(())
    }

    pub fn intents(&self, pool: &str) -> anyhow::Result<Vec<Intent>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT name, uuid, phase, since, until, reason, warm FROM vm_intents WHERE pool = ?1 ORDER BY name, key",
        )?;
        let rows = stmt.query_map(params![pool], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, Option<f64>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, bool>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, uuid, phase, since, until, reason, warm) = row?;
            let Some(phase) = Phase::parse(&phase) else {
                tracing::warn!(
                    pool,
                    name,
                    phase,
                    "ignoring an intent with an unknown phase"
                );
                continue;
            };
            out.push(Intent {
                name,
                uuid,
                phase,
                since,
                until,
                reason,
                warm,
            });
        }
        Ok(out)
    }

    /// Writes (or replaces) an intent, with an activity, in one transaction.
    pub fn put_intent(
        &self,
        pool: &str,
        intent: &Intent,
        activity: Option<&Activity>,
    ) -> anyhow::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO vm_intents (pool, key, name, uuid, phase, since, until, reason, warm) VALUES (?1, ?8, ?2, ?3, ?4, ?5, ?6, ?7, ?9)
             ON CONFLICT(pool, key) DO UPDATE SET name = ?2, uuid = ?3, phase = ?4, since = ?5, until = ?6, reason = ?7, warm = ?9",
            params![
                pool,
                intent.name,
                intent.uuid,
                intent.phase.as_str(),
                intent.since,
                intent.until,
                intent.reason,
                intent.key(),
                intent.warm
            ],
        )?;
        if let Some(a) = activity {
            insert_activity(&tx, pool, a)?;
        }
        tx.commit()?;
        drop(conn);
        self.recorded(pool, activity);
        Ok(())
    }

    /// Forgets an intent (by [`Intent::key`]), with an activity, in one transaction.
    pub fn remove_intent(
        &self,
        pool: &str,
        key: &str,
        activity: Option<&Activity>,
    ) -> anyhow::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM vm_intents WHERE pool = ?1 AND key = ?2",
            params![pool, key],
        )?;
        // A deleted VM's announcement is of no use any more.
        tx.execute(
            "DELETE FROM announced WHERE pool = ?1 AND uuid = ?2",
            params![pool, key],
        )?;
        if let Some(a) = activity {
            insert_activity(&tx, pool, a)?;
        }
        tx.commit()?;
        drop(conn);
        self.recorded(pool, activity);
        Ok(())
    }

    /// A fact that outlives a run (see the `meta` table).
    pub fn meta(&self, key: &str) -> anyhow::Result<Option<f64>> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: f64) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
            params![key, value],
        )?;
        Ok(())
    }

    /// The clones of a pool whose readiness was announced.
    pub fn announced(&self, pool: &str) -> anyhow::Result<std::collections::HashSet<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT uuid FROM announced WHERE pool = ?1")?;
        let rows = stmt.query_map(params![pool], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that a clone's readiness was announced, with the `ready` activity.
    pub fn announce(&self, pool: &str, uuid: &str, activity: &Activity) -> anyhow::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO announced (pool, uuid) VALUES (?1, ?2)",
            params![pool, uuid],
        )?;
        insert_activity(&tx, pool, activity)?;
        tx.commit()?;
        drop(conn);
        self.recorded(pool, Some(activity));
        Ok(())
    }

    /// Forgets announcements of VMs that no longer exist.
    pub fn forget_announced(&self, pool: &str, uuid: &str) -> anyhow::Result<()> {
        self.conn().execute(
            "DELETE FROM announced WHERE pool = ?1 AND uuid = ?2",
            params![pool, uuid],
        )?;
        Ok(())
    }

    pub fn record(&self, pool: &str, activity: &Activity) -> anyhow::Result<()> {
        let conn = self.conn();
        insert_activity(&conn, pool, activity)?;
        drop(conn);
        self.recorded(pool, Some(activity));
        Ok(())
    }

    /// The newest `limit` activities of a pool, newest first.
    pub fn activities(&self, pool: &str, limit: u32) -> anyhow::Result<Vec<Activity>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, at, action, cause, outcome, detail FROM activities WHERE pool = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![pool, limit as i64], |r| {
            Ok(Activity {
                id: r.get(0)?,
                at: r.get(1)?,
                action: r.get(2)?,
                cause: r.get(3)?,
                outcome: r.get(4)?,
                detail: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// State files written before intents were keyed by uuid had `intents (pool, name)`: copied
/// over once, keyed as [`Intent::key`] does, then dropped.
fn migrate_intents(conn: &Connection) -> anyhow::Result<()> {
    let old: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'intents'",
        [],
        |r| r.get(0),
    )?;
    if old {
        conn.execute_batch(
            "BEGIN;
             INSERT OR IGNORE INTO vm_intents (pool, key, name, uuid, phase, since, until, reason)
               SELECT pool,
                      CASE WHEN phase IN ('draining', 'deleting') AND uuid IS NOT NULL THEN uuid ELSE name END,
                      name, uuid, phase, since, until, reason FROM intents;
             DROP TABLE intents;
             COMMIT;",
        )?;
    }
    Ok(())
}

/// State files written before the warm pool have no `vm_intents.warm`: added, as false.
fn add_warm_column(conn: &Connection) -> anyhow::Result<()> {
    let has: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('vm_intents') WHERE name = 'warm'",
        [],
        |r| r.get(0),
    )?;
    if !has {
        conn.execute_batch("ALTER TABLE vm_intents ADD COLUMN warm INTEGER NOT NULL DEFAULT 0;")?;
    }
    Ok(())
}

fn insert_activity(conn: &Connection, pool: &str, a: &Activity) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO activities (pool, at, action, cause, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![pool, a.at, a.action, a.cause, a.outcome, a.detail],
    )?;
    let id = conn.last_insert_rowid();
    if id % 1000 == 0 {
        conn.execute(
            "DELETE FROM activities WHERE pool = ?1 AND id <= (SELECT id FROM activities WHERE pool = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            params![pool, KEEP_ACTIVITIES],
        )?;
    }
    Ok(())
}

impl Activity {
    pub fn new(
        action: &str,
        cause: impl Into<String>,
        outcome: &str,
        detail: impl Into<String>,
    ) -> Activity {
        Activity {
            id: 0,
            at: crate::clock::now(),
            action: action.into(),
            cause: cause.into(),
            outcome: outcome.into(),
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.db");
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.load_pool("p").unwrap(), None);
            let clocks = Clocks {
                last_up: Some(10.0),
                last_down: None,
            };
            s.save_pool(
                "p",
                3,
                &clocks,
                Some(&Activity::new("scale_up", "webhook", "accepted", "1 -> 3")),
            )
            .unwrap();
            s.put_intent(
                "p",
                &Intent {
                    name: "p-clone-2".into(),
                    uuid: Some("u2".into()),
                    phase: Phase::Draining,
                    since: 5.0,
                    until: Some(35.0),
                    reason: "scale down".into(),
                    warm: false,
                },
                None,
            )
            .unwrap();
            s.put_intent(
                "p",
                &Intent {
                    name: "p-clone-3".into(),
                    uuid: None,
                    phase: Phase::Provisioning,
                    since: 6.0,
                    until: None,
                    reason: String::new(),
                    warm: false,
                },
                None,
            )
            .unwrap();
            s.remove_intent(
                "p",
                "p-clone-3",
                Some(&Activity::new("clone", "x", "ok", "")),
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let (desired, clocks) = s.load_pool("p").unwrap().unwrap();
        assert_eq!(desired, 3);
        assert_eq!(clocks.last_up, Some(10.0));
        let intents = s.intents("p").unwrap();
        assert_eq!(intents.len(), 1);
        assert_eq!(intents[0].phase, Phase::Draining);
        assert_eq!(intents[0].until, Some(35.0));
        let acts = s.activities("p", 10).unwrap();
        assert_eq!(
            acts.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(),
            ["clone", "scale_up"]
        );
        assert!(s.activities("other", 10).unwrap().is_empty());
    }

    #[test]
    fn warm_pool_intents_survive_and_an_older_state_file_gains_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            // A state file from before the warm pool: vm_intents without `warm`.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE vm_intents (pool TEXT NOT NULL, key TEXT NOT NULL, name TEXT NOT NULL,
                 uuid TEXT, phase TEXT NOT NULL, since REAL NOT NULL, until REAL,
                 reason TEXT NOT NULL DEFAULT '', PRIMARY KEY (pool, key));
                 INSERT INTO vm_intents VALUES ('p', 'u1', 'p-clone-1', 'u1', 'draining', 1, 31, 'x');",
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let old = s.intents("p").unwrap();
        assert_eq!(old.len(), 1);
        assert!(!old[0].warm, "an old drain deletes, as it would have");
        for (name, uuid, phase, warm) in [
            ("p-clone-2", None, Phase::Provisioning, true),
            ("p-clone-3", Some("u3"), Phase::Warming, true),
            ("p-clone-4", Some("u4"), Phase::Stopping, true),
            ("p-clone-5", Some("u5"), Phase::Starting, false),
        ] {
            let intent = Intent {
                name: name.into(),
                uuid: uuid.map(String::from),
                phase,
                since: 2.0,
                until: None,
                reason: String::new(),
                warm,
            };
            s.put_intent("p", &intent, None).unwrap();
        }
        drop(s);
        let s = Store::open(&path).unwrap();
        let got: Vec<(String, Phase, bool)> = s
            .intents("p")
            .unwrap()
            .into_iter()
            .map(|i| (i.name, i.phase, i.warm))
            .collect();
        assert_eq!(
            got,
            [
                ("p-clone-1".to_string(), Phase::Draining, false),
                ("p-clone-2".to_string(), Phase::Provisioning, true),
                ("p-clone-3".to_string(), Phase::Warming, true),
                ("p-clone-4".to_string(), Phase::Stopping, true),
                ("p-clone-5".to_string(), Phase::Starting, false),
            ]
        );
    }

    #[test]
    fn the_observer_hears_every_activity_once_it_is_committed() {
        use std::sync::{Arc, Mutex};
        let s = Store::open_in_memory().unwrap();
        let heard: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let h = heard.clone();
        s.observe(Box::new(move |pool, a| {
            h.lock().unwrap().push((pool.to_string(), a.action.clone()));
        }));
        let clocks = Clocks::default();
        s.save_pool(
            "p",
            2,
            &clocks,
            Some(&Activity::new("scale_up", "w", "accepted", "")),
        )
        .unwrap();
        s.save_pool("p", 2, &clocks, None).unwrap();
        let intent = Intent {
            name: "p-clone-1".into(),
            uuid: None,
            phase: Phase::Provisioning,
            since: 1.0,
            until: None,
            reason: String::new(),
            warm: false,
        };
        s.put_intent("p", &intent, Some(&Activity::new("clone", "c", "ok", "")))
            .unwrap();
        s.announce("p", "u1", &Activity::new("ready", "h", "ok", ""))
            .unwrap();
        s.remove_intent(
            "p",
            "p-clone-1",
            Some(&Activity::new("delete", "d", "ok", "")),
        )
        .unwrap();
        s.record("q", &Activity::new("boot_failed", "b", "deleting", ""))
            .unwrap();
        let heard = heard.lock().unwrap().clone();
        let expected: Vec<(String, String)> = [
            ("p", "scale_up"),
            ("p", "clone"),
            ("p", "ready"),
            ("p", "delete"),
            ("q", "boot_failed"),
        ]
        .iter()
        .map(|(p, a)| (p.to_string(), a.to_string()))
        .collect();
        assert_eq!(heard, expected);
    }
}
