//! Which replica leads: the one whose session holds an advisory lock.
//!
//! Several daemons share one database; exactly one runs the scheduled runs, the
//! connectors and the outbox. Rather than a consensus of our own, the leader is
//! the replica holding PostgreSQL's session-level advisory lock on its own
//! connection: the server grants it to one session at a time, and frees it when
//! that session ends — the leader's process dies, its host is cut off (once the
//! server notices the dead socket), or an operator terminates its backend. The
//! others try again on their schedule; whoever tries first after that leads.
//!
//! Losing the session while alive is possible (a network cut): a leader asks
//! [`Leadership::still_held`] before each piece of leader-only work and stops
//! when it is no longer. What it was doing at that moment must be safe to find
//! half-done by the next leader, which is why the outbox claims each message in
//! the database before sending it.

use std::time::Duration;

use super::connect;
use crate::Result;

/// The lock's key: "ARREARS" and a version, so nothing else collides with it.
const LEADER_LOCK: i64 = 0x4152_5245_4152_5302;

/// The application name of the leader's session: `pg_stat_activity` shows who
/// leads (with the replica's name after it).
const APPLICATION: &str = "arrears-leader";

/// The lock an outbox pass holds (one pass at a time, whichever replica).
pub const OUTBOX_LOCK: i64 = 0x4152_5245_4152_5303;

pub struct Leadership {
    client: super::Session,
    key: i64,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership").finish_non_exhaustive()
    }
}

impl Leadership {
    /// Tries once to lead, as `replica` (a name for operators); `None` while
    /// another session leads.
    pub fn try_acquire(url: &str, replica: &str) -> Result<Option<Leadership>> {
        let mut l = Leadership::session(url, replica)?;
        Ok(l.try_lead()?.then_some(l))
    }

    /// A session that may try to lead, as `replica`, as often as it likes
    /// ([`Leadership::try_lead`]) without a connection per try.
    pub fn session(url: &str, replica: &str) -> Result<Leadership> {
        let (client, _) = connect(url, &format!("{APPLICATION} {replica}"))?;
        Ok(Leadership {
            client,
            key: LEADER_LOCK,
        })
    }

    /// Takes the lock if it is free; whether this session holds it now. Asked of
    /// the server's lock table, not taken on the function's word: a proxy pooling
    /// transactions, or a database that only pretends to have advisory locks, would
    /// make every replica a leader.
    pub fn try_lead(&mut self) -> Result<bool> {
        if self.holds()? {
            return Ok(true);
        }
        let got: bool = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&self.key])?
            .get(0);
        Ok(got && self.holds()?)
    }

    /// Waits for the lock `key` on a session of its own named `application`, up
    /// to the session's lock timeout (then `Busy`): a lock only one process holds
    /// at a time, freed when it is dropped or its process dies.
    pub fn wait_for(url: &str, key: i64, application: &str) -> Result<Leadership> {
        let (mut client, _) = connect(url, application)?;
        client.execute("SELECT pg_advisory_lock($1)", &[&key])?;
        let mut l = Leadership { client, key };
        if !l.holds()? {
            return Err(crate::StoreError::Postgres(format!(
                "advisory lock {key:#x} granted but not held: a pooler between us and \
                 the database? connect to PostgreSQL directly"
            )));
        }
        Ok(l)
    }

    fn holds(&mut self) -> Result<bool> {
        Ok(self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                    AND pid = pg_backend_pid() AND classid = $1 AND objid = $2 AND objsubid = 1)",
                &[
                    // oid columns: u32 on this side.
                    &((self.key >> 32) as u32),
                    &((self.key & 0xffff_ffff) as u32),
                ],
            )?
            .get(0))
    }

    /// Whether this replica still leads: its session is alive and holds the lock.
    /// A slow answer counts as no: better no leader for a moment than two.
    pub fn still_held(&mut self) -> bool {
        self.client.is_valid(Duration::from_secs(5)).is_ok() && self.holds().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::testing::PgCluster;

    /// Tries as `name` until it leads, up to 10 s: a session that ended is gone
    /// from the server a moment later.
    fn lead_within(url: &str, name: &str) -> Leadership {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = Leadership::try_acquire(url, name).unwrap() {
                return l;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} never led after the leader's session ended"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn one_replica_leads_and_another_takes_over_when_its_session_ends() {
        let pg = PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
        let url = pg.database("books").unwrap();
        let mut a = Leadership::try_acquire(&url, "a")
            .unwrap()
            .expect("the first replica leads");
        assert!(Leadership::try_acquire(&url, "b").unwrap().is_none());
        assert!(a.still_held());

        // Its backend is terminated (a cut-off host, an operator): it no longer
        // leads, and knows it; the next try of another replica leads.
        let (mut admin, _) = connect(&url, "admin").unwrap();
        let n: i64 = admin
            .query_one(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = 'arrears-leader a'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "operators see who leads");
        assert!(!a.still_held());
        // The backend exits shortly after the signal: a replica's next tries.
        let b = lead_within(&url, "b");

        // A leader that stops (its process exits) frees it at once.
        drop(b);
        lead_within(&url, "c");
    }
}
