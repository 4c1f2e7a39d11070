//! SQLite side of shared live events: an append-only table numbered by its rowid (one writer
//! at a time, so numbers become visible in order), and who follows them.

use rusqlite::params;

use super::SqliteStore;
use crate::error::StoreError;
use crate::types::{EventRow, NewEvent};

use crate::int;

impl crate::Events for SqliteStore {
    fn append_events(&self, events: &[NewEvent], trim_before: u64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (task_id, owner, runner, data, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for e in events {
                insert.execute(params![e.task_id, e.owner, e.runner, e.data, int(e.at)])?;
            }
        }
        tx.execute("DELETE FROM events WHERE at < ?1", [int(trim_before)])?;
        tx.commit()?;
        Ok(())
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, task_id, owner, runner, data FROM events WHERE seq > ?1
             ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(
                params![int(after), limit.min(i64::MAX as usize) as i64],
                |r| {
                    Ok(EventRow {
                        seq: r.get::<_, i64>(0)? as u64,
                        task_id: r.get(1)?,
                        owner: r.get(2)?,
                        runner: r.get(3)?,
                        data: r.get(4)?,
                    })
                },
            )?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn last_event_seq(&self) -> Result<u64, StoreError> {
        // The sequence, not MAX(seq): trimmed events keep their numbers from being reused.
        let seq: Option<i64> = self.conn().query_row(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
                        COALESCE((SELECT MAX(seq) FROM events), 0))",
            [],
            |r| r.get(0),
        )?;
        Ok(seq.unwrap_or(0) as u64)
    }

    fn follow_events(&self, runner: &str, until: u64) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO event_followers (runner, until) VALUES (?1, ?2)
             ON CONFLICT (runner) DO UPDATE SET until = excluded.until",
            params![runner, int(until)],
        )?;
        // Followers long gone (their process ended): the table keeps only live ones.
        conn.execute(
            "DELETE FROM event_followers WHERE until < ?1",
            [int(until.saturating_sub(crate::FORGET_FOLLOWERS_MS))],
        )?;
        Ok(())
    }

    fn events_followed(&self, runner: &str, now: u64) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT 1 FROM event_followers WHERE runner != ?1 AND until >= ?2")?
            .exists(params![runner, int(now)])?)
    }
}
