//! PostgreSQL side of shared live events: an append-only table whose numbers are handed out
//! under a transaction-level advisory lock (so they become visible in order: a reader that saw
//! number N never sees a smaller one commit later), and who follows them.

use sqlx::Row;

use super::{PgStore, int};
use crate::error::StoreError;
use crate::types::{EventRow, NewEvent};

/// The advisory lock of event numbering ("tessera events" in spirit; unused by other locks).
const EVENT_SEQ_LOCK: i64 = 0x7465_7373_6576_6e74;

impl crate::Events for PgStore {
    fn append_events(&self, events: &[NewEvent], trim_before: u64) -> Result<(), StoreError> {
        // As columns, for one `UNNEST` insert.
        let task_ids: Vec<String> = events.iter().map(|e| e.task_id.clone()).collect();
        let owners: Vec<Option<String>> = events.iter().map(|e| e.owner.clone()).collect();
        let runners: Vec<String> = events.iter().map(|e| e.runner.clone()).collect();
        let data: Vec<String> = events
            .iter()
            .map(|e| super::text(&e.data).into_owned())
            .collect();
        let at: Vec<i64> = events.iter().map(|e| int(e.at)).collect();
        let pool = self.pool.clone();
        self.run(async move {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(EVENT_SEQ_LOCK)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO events (seq, task_id, owner, runner, data, at)
                 SELECT nextval('events_seq'), task_id, owner, runner, data, at
                 FROM UNNEST($1::text[], $2::text[], $3::text[],
                    $4::text[], $5::bigint[]) WITH ORDINALITY AS c(task_id, owner, runner, data, at, n)
                 ORDER BY n",
            )
            .bind(&task_ids)
            .bind(&owners)
            .bind(&runners)
            .bind(&data)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM events WHERE at < $1")
                .bind(int(trim_before))
                .execute(&mut *tx)
                .await?;
            super::notify(&mut tx, crate::Change::Events).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        self.block(async {
            let rows = sqlx::query(
                "SELECT seq, task_id, owner, runner, data FROM events WHERE seq > $1
                 ORDER BY seq LIMIT $2",
            )
            .bind(int(after))
            .bind(limit.min(i64::MAX as usize) as i64)
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(EventRow {
                        seq: r.try_get::<i64, _>(0)? as u64,
                        task_id: r.try_get(1)?,
                        owner: r.try_get(2)?,
                        runner: r.try_get(3)?,
                        data: r.try_get(4)?,
                    })
                })
                .collect()
        })
    }

    fn last_event_seq(&self) -> Result<u64, StoreError> {
        self.block(async {
            // Under the lock: no number below it is still to commit. The sequence, not
            // MAX(seq): trimmed events keep their numbers, as on SQLite.
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(EVENT_SEQ_LOCK)
                .execute(&mut *tx)
                .await?;
            let seq: i64 = sqlx::query_scalar(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_seq",
            )
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(seq as u64)
        })
    }

    fn follow_events(&self, runner: &str, until: u64) -> Result<(), StoreError> {
        self.block(async {
            sqlx::query(
                "INSERT INTO event_followers (runner, until) VALUES ($1, $2)
                 ON CONFLICT (runner) DO UPDATE SET until = excluded.until",
            )
            .bind(runner)
            .bind(int(until))
            .execute(&self.leases)
            .await?;
            // Followers long gone (their process ended): the table keeps only live ones.
            sqlx::query("DELETE FROM event_followers WHERE until < $1")
                .bind(int(until.saturating_sub(crate::FORGET_FOLLOWERS_MS)))
                .execute(&self.leases)
                .await?;
            Ok(())
        })
    }

    fn events_followed(&self, runner: &str, now: u64) -> Result<bool, StoreError> {
        self.block(async {
            let found: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM event_followers WHERE runner != $1 AND until >= $2 LIMIT 1",
            )
            .bind(runner)
            .bind(int(now))
            .fetch_optional(&self.leases)
            .await?;
            Ok(found.is_some())
        })
    }
}
