//! The append-only, hash-chained audit log.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Result, Store, StoreError};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: String,
    pub principal: String,
    pub action: String,
    pub target: String,
    pub before: String,
    pub after: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash covers every field and the previous hash; fields are length-prefixed so
/// that moving text from one field to the next changes the hash.
fn chain_hash(prev: &str, id: i64, fields: [&str; 6]) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(id.to_le_bytes());
    for f in fields {
        h.update((f.len() as u64).to_le_bytes());
        h.update(f.as_bytes());
    }
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

impl Store {
    /// Runs `f` and appends its audit record in one transaction: the change and its
    /// record land together or not at all. `f` returns (result, before, after); its
    /// error type is the caller's (e.g. an API status), so a refusal passes through.
    pub fn audited<T, E: From<StoreError>>(
        &mut self,
        principal: &str,
        action: &str,
        target: &str,
        f: impl FnOnce(&mut Store) -> std::result::Result<(T, serde_json::Value, serde_json::Value), E>,
    ) -> std::result::Result<T, E> {
        super::begin_immediate(&self.conn)?;
        let res = f(self).and_then(|(t, before, after)| {
            self.append_audit(principal, action, target, &before, &after)?;
            Ok(t)
        });
        match res {
            Ok(t) => {
                self.conn
                    .execute_batch("COMMIT")
                    .map_err(StoreError::from)?;
                Ok(t)
            }
            Err(e) => {
                // The error that matters is the one that made us roll back.
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Appends one record (inside the caller's transaction, if any).
    pub fn append_audit(
        &self,
        principal: &str,
        action: &str,
        target: &str,
        before: &serde_json::Value,
        after: &serde_json::Value,
    ) -> Result<i64> {
        append_audit_on(&self.conn, principal, action, target, before, after)
    }

    pub fn audit_records(&self, after_id: i64, limit: usize) -> Result<Vec<AuditRecord>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, at, principal, action, target, before, after, prev_hash, hash
             FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = st.query_map(params![after_id, limit as i64], |r| {
            Ok(AuditRecord {
                id: r.get(0)?,
                at: r.get(1)?,
                principal: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                before: r.get(5)?,
                after: r.get(6)?,
                prev_hash: r.get(7)?,
                hash: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Checks the whole chain; returns the id of the first record that does not match
    /// (edited, inserted, or following a deleted one), or None when the log is intact.
    pub fn verify_audit(&self) -> Result<Option<i64>> {
        let mut prev = String::new();
        let mut expect_id = 1;
        let mut after = 0;
        loop {
            let batch = self.audit_records(after, 10_000)?;
            if batch.is_empty() {
                return Ok(None);
            }
            for r in &batch {
                let h = chain_hash(
                    &prev,
                    r.id,
                    [
                        &r.at,
                        &r.principal,
                        &r.action,
                        &r.target,
                        &r.before,
                        &r.after,
                    ],
                );
                if r.id != expect_id || r.prev_hash != prev || r.hash != h {
                    return Ok(Some(r.id));
                }
                prev = h;
                expect_id += 1;
            }
            after = batch.last().map_or(after, |r| r.id);
        }
    }
}

/// Appends one audit record on `conn` (a connection or an open transaction).
pub(crate) fn append_audit_on(
    conn: &rusqlite::Connection,
    principal: &str,
    action: &str,
    target: &str,
    before: &serde_json::Value,
    after: &serde_json::Value,
) -> Result<i64> {
    let (last_id, prev): (i64, String) = conn
        .query_row(
            "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, String::new()));
    let id = last_id + 1;
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (b, a) = (before.to_string(), after.to_string());
    let hash = chain_hash(&prev, id, [&at, principal, action, target, &b, &a]);
    conn.execute(
        "INSERT INTO audit(id, at, principal, action, target, before, after, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![id, at, principal, action, target, b, a, prev, hash],
    )?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_failed_change_leaves_no_record_and_a_tampered_record_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let mut s = Store::open(&path).unwrap();
        for i in 0..3 {
            s.audited("alice", "note", &format!("case {i}"), |_| {
                Ok::<_, StoreError>(((), json!({"n": i}), json!({"n": i + 1})))
            })
            .unwrap();
        }
        let err = s.audited("bob", "note", "case 9", |st| {
            st.conn().execute(
                "INSERT INTO customers(company, code, name) VALUES ('X', 'Y', 'Z')",
                [],
            )?;
            Err::<((), _, _), _>(StoreError::Invalid("no".into()))
        });
        assert!(err.is_err());
        let n: i64 = s
            .conn()
            .query_row("SELECT COUNT(*) FROM customers", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "the change rolled back with its failure");
        assert_eq!(s.audit_records(0, 100).unwrap().len(), 3);
        assert_eq!(s.verify_audit().unwrap(), None);
        assert!(s
            .conn()
            .execute("UPDATE audit SET principal = 'eve' WHERE id = 2", [])
            .is_err());

        // Someone with file access drops the trigger and edits record 2.
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "DROP TRIGGER audit_no_update; UPDATE audit SET after = '{\"n\":99}' WHERE id = 2;",
        )
        .unwrap();
        assert_eq!(s.verify_audit().unwrap(), Some(2));
    }
}
