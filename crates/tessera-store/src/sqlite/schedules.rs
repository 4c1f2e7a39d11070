//! SQLite side of schedules: ticks created once (a unique key on pipeline and tick, the
//! schedule's last tick moved forward only), pause flags and the state shown per schedule.

use rusqlite::{Connection, OptionalExtension, params};
use tessera_core::scheduler::TaskState;

use super::SqliteStore;
use super::words::Word;
use crate::error::StoreError;
use crate::types::{NewTask, ScheduleRow};

impl crate::Schedules for SqliteStore {
    fn create_tick(&self, task: &NewTask, advance: bool) -> Result<bool, StoreError> {
        let insert = crate::group::TaskInsert::of(task);
        let tick = insert
            .scheduled_at
            .ok_or_else(|| crate::group::no_tick(task))?;
        let mut conn = self.conn();
        // Write-locked from the start: another process creating ticks on the same file waits
        // (busy timeout) instead of failing at the upgrade from read to write.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if advance {
            let moved = tx.execute(
                "INSERT INTO schedules (pipeline, last_tick, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (pipeline) DO UPDATE SET last_tick = excluded.last_tick,
                    updated_at = excluded.updated_at
                 WHERE schedules.last_tick IS NULL OR schedules.last_tick < excluded.last_tick",
                params![task.pipeline, tick, crate::int(task.created_at)],
            )?;
            if moved == 0 {
                return Ok(false);
            }
        }
        let taken = tx
            .prepare_cached("SELECT 1 FROM tasks WHERE pipeline = ?1 AND scheduled_at = ?2")?
            .exists(params![task.pipeline, tick])?;
        // A backfill made the tick's task already: the schedule still moves past it.
        if !taken {
            super::group::insert_task(&tx, insert)?;
        }
        tx.commit()?;
        Ok(!taken)
    }

    fn schedule(&self, pipeline: &str) -> Result<ScheduleRow, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT paused, last_tick FROM schedules WHERE pipeline = ?1",
                [pipeline],
                |r| Ok((r.get::<_, bool>(0)?, r.get::<_, Option<i64>>(1)?)),
            )
            .optional()?;
        let (paused, last_tick) = row.unwrap_or_default();
        state_of(&conn, pipeline, paused, last_tick)
    }

    fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        let conn = self.conn();
        let rows: Vec<(String, bool, Option<i64>)> = conn
            .prepare("SELECT pipeline, paused, last_tick FROM schedules ORDER BY pipeline")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(pipeline, paused, last)| state_of(&conn, &pipeline, paused, last))
            .collect()
    }

    fn set_schedule_paused(
        &self,
        pipeline: &str,
        paused: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO schedules (pipeline, paused, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (pipeline) DO UPDATE SET paused = excluded.paused,
                updated_at = excluded.updated_at",
            params![pipeline, paused, crate::int(now)],
        )?;
        Ok(())
    }

    fn ticks_taken(
        &self,
        pipeline: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT scheduled_at, id FROM tasks
             WHERE pipeline = ?1 AND scheduled_at IS NOT NULL AND scheduled_at BETWEEN ?2 AND ?3
             ORDER BY scheduled_at",
        )?;
        let ticks = stmt
            .query_map(params![pipeline, crate::int(from), crate::int(to)], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
            })?
            .collect::<Result<_, _>>()?;
        Ok(ticks)
    }
}

/// A schedule's row completed with its last tick's task and its unfinished tasks.
fn state_of(
    conn: &Connection,
    pipeline: &str,
    paused: bool,
    last_tick: Option<i64>,
) -> Result<ScheduleRow, StoreError> {
    let last_task = match last_tick {
        Some(tick) => conn
            .prepare_cached(
                "SELECT id, state FROM tasks WHERE pipeline = ?1 AND scheduled_at = ?2",
            )?
            .query_row(params![pipeline, tick], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Word<TaskState>>(1)?.0))
            })
            .optional()?,
        None => None,
    };
    // The pipeline's unended tasks (an index on pipeline and state), those of ticks counted.
    let active: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM tasks WHERE pipeline = ?1 AND state IN ('pending', 'running')
                AND scheduled_at IS NOT NULL",
        )?
        .query_row([pipeline], |r| r.get(0))?;
    Ok(ScheduleRow {
        pipeline: pipeline.to_string(),
        paused,
        last_tick: last_tick.map(|t| t as u64),
        last_task,
        active: active as u64,
    })
}
