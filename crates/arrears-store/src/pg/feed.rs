//! The change log on PostgreSQL: what tells a replica a run has work, and the
//! wake-up when another replica (or process) commits a change.
//!
//! Every write appends its changes to `changes` in its own transaction, numbered
//! from the `change_head` row (see the schema: numbers become visible in order),
//! and the commit notifies `arrears_changes`. A replica listens on a connection of
//! its own and, woken, reads on from the number it has seen; a wake-up it missed
//! (its connection was down) costs nothing but a poll, since the log, not the
//! notification, is the truth.

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use super::connect;
use crate::Result;

/// A connection that hears of every commit that appended to the change log.
pub struct ChangeListener {
    client: super::Session,
}

impl ChangeListener {
    pub fn open(url: &str) -> Result<ChangeListener> {
        let (mut client, _) = connect(url, "arrears-listener")?;
        client.batch_execute("LISTEN arrears_changes")?;
        Ok(ChangeListener { client })
    }

    /// Waits up to `timeout` for such a commit; `true` if one came (the wake-ups
    /// waiting behind it are taken too: one look at the log covers them).
    pub fn wait(&mut self, timeout: Duration) -> Result<bool> {
        let woken = {
            let mut n = self.client.notifications();
            let woken = n.timeout_iter(timeout).next()?.is_some();
            if woken {
                while n.iter().next()?.is_some() {}
            }
            woken
        };
        // A finished connection answers "nothing" at once, for ever: a caller
        // waiting in a loop would spin and never hear a change again.
        if !woken && self.client.is_closed() {
            return Err(crate::StoreError::Unreachable {
                url: "(the change listener's connection)".into(),
                reason: "closed".into(),
            });
        }
        Ok(woken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::args;
    use crate::pg::testing::PgCluster;

    #[test]
    fn a_commit_that_changes_wakes_a_listener_and_shows_as_pending() {
        let pg = PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
        let url = pg.database("books").unwrap();
        let s = crate::Store::open_postgres(&url).unwrap();
        let mut l = ChangeListener::open(&url).unwrap();
        assert_eq!(
            s.changes_pending().unwrap(),
            Some(1),
            "no run has looked yet"
        );
        assert!(!l.wait(Duration::from_millis(50)).unwrap(), "nothing yet");
        // A new customer marked changed: its entry, its mark, the wake-up.
        s.db()
            .execute(
                "INSERT INTO customers(company, code, name, dirty) VALUES ('A', 'C1', 'One', 1)",
                args![],
            )
            .unwrap();
        assert!(l.wait(Duration::from_secs(10)).unwrap());
        assert!(!l.wait(Duration::from_millis(50)).unwrap(), "one wake-up");
        assert_eq!(s.changes_pending().unwrap(), Some(2));
        assert_eq!(s.dirty_count().unwrap(), 1);
        // A write that is rolled back wakes nobody and leaves no number behind.
        s.db()
            .write(|db| {
                db.execute("INSERT INTO changes(customer_id) VALUES (1)", args![])?;
                Err::<(), _>(crate::StoreError::Invalid("undo".into()))
            })
            .unwrap_err();
        assert!(!l.wait(Duration::from_millis(100)).unwrap());
        assert_eq!(s.changes_pending().unwrap(), Some(2));
    }

    /// Two writers: the second's entry waits for the first's commit, so a reader
    /// that has seen number N has seen every entry up to N.
    #[test]
    fn entries_become_visible_in_their_order() {
        let pg = PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
        let url = pg.database("books").unwrap();
        let first = crate::Store::open_postgres(&url).unwrap();
        let db = first.db();
        let (tx, rx) = std::sync::mpsc::channel();
        let out = db.write(|db| {
            db.execute("INSERT INTO changes(customer_id) VALUES (1)", args![])?;
            let url = url.clone();
            let tx = tx.clone();
            let second = std::thread::spawn(move || {
                let s = crate::Store::open_postgres(&url).unwrap();
                s.db()
                    .execute("INSERT INTO changes(customer_id) VALUES (2)", args![])
                    .unwrap();
                tx.send(()).unwrap();
            });
            // The second writer waits for this transaction.
            assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
            Ok(second)
        });
        let second = out.unwrap();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the second writer goes on after the first commits");
        second.join().unwrap();
        let order: Vec<(i64, i64)> = first
            .db()
            .rows("SELECT seq, customer_id FROM changes ORDER BY seq", args![])
            .unwrap()
            .iter()
            .map(|r| (r.get(0, "seq").unwrap(), r.get(1, "customer_id").unwrap()))
            .collect();
        assert_eq!(order, [(2, 1), (3, 2)]);
    }
}
