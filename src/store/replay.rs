//! Signatures already accepted, so a captured signed request cannot be replayed, across a
//! restart too. Each entry lives until the signed request could no longer be accepted anyway.

use rusqlite::{params, OptionalExtension};

use super::Store;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS seen_signatures (
    signature TEXT PRIMARY KEY,
    seen_at REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_signatures_by_expiry ON seen_signatures (expires);
";

impl Store {
    /// Claims `signature` until `expires` (Unix seconds), forgetting every expired one first.
    /// `Ok(None)` when it is new; `Ok(Some(seen_at))` when it was claimed at `seen_at` and has
    /// not expired: a replay.
    pub fn claim_signature(
        &self,
        signature: &str,
        now: f64,
        expires: f64,
    ) -> anyhow::Result<Option<f64>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute_batch(SCHEMA)?;
        tx.execute(
            "DELETE FROM seen_signatures WHERE expires < ?1",
            params![now],
        )?;
        let seen: Option<f64> = tx
            .query_row(
                "SELECT seen_at FROM seen_signatures WHERE signature = ?1",
                params![signature],
                |r| r.get(0),
            )
            .optional()?;
        if seen.is_none() {
            tx.execute(
                "INSERT INTO seen_signatures (signature, seen_at, expires) VALUES (?1, ?2, ?3)",
                params![signature, now, expires],
            )?;
        }
        tx.commit()?;
        Ok(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_holds_until_it_expires_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.claim_signature("aa", 100.0, 400.0).unwrap(), None);
            assert_eq!(s.claim_signature("aa", 150.0, 450.0).unwrap(), Some(100.0));
            assert_eq!(s.claim_signature("bb", 150.0, 450.0).unwrap(), None);
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.claim_signature("aa", 399.0, 700.0).unwrap(), Some(100.0));
        // Expired: forgotten, so the table stays bounded; claimable again.
        assert_eq!(s.claim_signature("aa", 401.0, 700.0).unwrap(), None);
        let left: i64 = s
            .conn()
            .query_row("SELECT COUNT(*) FROM seen_signatures", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 2, "aa (claimed again) and bb");
        assert_eq!(s.claim_signature("cc", 451.0, 700.0).unwrap(), None);
        let left: i64 = s
            .conn()
            .query_row("SELECT COUNT(*) FROM seen_signatures", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 2, "bb expired at 450");
    }
}
