//! PostgreSQL side of schedules: ticks created once (a unique key on pipeline and tick, the
//! schedule's last tick moved forward only, under its row lock), pause flags and the state
//! shown per schedule.

use std::collections::HashMap;

use sqlx::{PgConnection, Row};
use tessera_core::scheduler::TaskState;

use super::{PgStore, int};
use crate::error::StoreError;
use crate::types::{NewTask, ScheduleRow};
use crate::words::parse_word;

impl crate::Schedules for PgStore {
    fn create_tick(&self, task: &NewTask, advance: bool) -> Result<bool, StoreError> {
        let insert = crate::group::TaskInsert::of(task);
        let tick = insert
            .scheduled_at
            .ok_or_else(|| crate::group::no_tick(task))?;
        let (pipeline, now) = (task.pipeline.clone(), int(task.created_at));
        let pool = self.pool.clone();
        self.run(async move {
            let mut tx = pool.begin().await?;
            if advance {
                // Two schedulers at once: the second waits on the row, then finds it moved.
                let moved = sqlx::query(
                    "INSERT INTO schedules (pipeline, last_tick, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (pipeline) DO UPDATE SET last_tick = excluded.last_tick,
                        updated_at = excluded.updated_at
                     WHERE schedules.last_tick IS NULL
                        OR schedules.last_tick < excluded.last_tick",
                )
                .bind(&pipeline)
                .bind(tick)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if moved == 0 {
                    return Ok(false);
                }
            }
            let taken: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM tasks WHERE pipeline = $1 AND scheduled_at = $2")
                    .bind(&pipeline)
                    .bind(tick)
                    .fetch_optional(&mut *tx)
                    .await?;
            // A backfill made the tick's task already: the schedule still moves past it.
            let created = taken.is_none() && {
                let mut creates = super::step::Creates::default();
                creates.push(&mut tx, &insert, &mut HashMap::new()).await?;
                // 0 when a backfill of the same tick committed meanwhile.
                creates.insert(&mut tx).await? == 1
            };
            if created {
                super::notify(&mut tx, crate::Change::Claimable).await?;
            }
            tx.commit().await?;
            Ok(created)
        })
    }

    fn schedule(&self, pipeline: &str) -> Result<ScheduleRow, StoreError> {
        self.block(async {
            let mut conn = self.pool.acquire().await?;
            let row = sqlx::query("SELECT paused, last_tick FROM schedules WHERE pipeline = $1")
                .bind(pipeline)
                .fetch_optional(&mut *conn)
                .await?;
            let (paused, last_tick) = match row {
                Some(r) => (r.try_get(0)?, r.try_get(1)?),
                None => (false, None),
            };
            state_of(&mut conn, pipeline, paused, last_tick).await
        })
    }

    fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        self.block(async {
            let mut conn = self.pool.acquire().await?;
            let rows =
                sqlx::query("SELECT pipeline, paused, last_tick FROM schedules ORDER BY pipeline")
                    .fetch_all(&mut *conn)
                    .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let pipeline: String = r.try_get(0)?;
                out.push(state_of(&mut conn, &pipeline, r.try_get(1)?, r.try_get(2)?).await?);
            }
            Ok(out)
        })
    }

    fn set_schedule_paused(
        &self,
        pipeline: &str,
        paused: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        self.block(async {
            sqlx::query(
                "INSERT INTO schedules (pipeline, paused, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (pipeline) DO UPDATE SET paused = excluded.paused,
                    updated_at = excluded.updated_at",
            )
            .bind(pipeline)
            .bind(paused)
            .bind(int(now))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn ticks_taken(
        &self,
        pipeline: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        self.block(async {
            let ticks: Vec<(i64, String)> = sqlx::query_as(
                "SELECT scheduled_at, id FROM tasks
                 WHERE pipeline = $1 AND scheduled_at IS NOT NULL
                    AND scheduled_at BETWEEN $2 AND $3
                 ORDER BY scheduled_at",
            )
            .bind(pipeline)
            .bind(int(from))
            .bind(int(to))
            .fetch_all(&self.pool)
            .await?;
            Ok(ticks.into_iter().map(|(t, id)| (t as u64, id)).collect())
        })
    }
}

/// A schedule's row completed with its last tick's task and its unfinished tasks.
async fn state_of(
    conn: &mut PgConnection,
    pipeline: &str,
    paused: bool,
    last_tick: Option<i64>,
) -> Result<ScheduleRow, StoreError> {
    let last_task = match last_tick {
        Some(tick) => {
            match sqlx::query(
                "SELECT id, state FROM tasks WHERE pipeline = $1 AND scheduled_at = $2",
            )
            .bind(pipeline)
            .bind(tick)
            .fetch_optional(&mut *conn)
            .await?
            {
                Some(r) => Some((r.try_get(0)?, parse_word::<TaskState>(r.try_get(1)?)?)),
                None => None,
            }
        }
        None => None,
    };
    let active: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM tasks WHERE pipeline = $1 AND state IN ('pending', 'running')
            AND scheduled_at IS NOT NULL",
    )
    .bind(pipeline)
    .fetch_one(&mut *conn)
    .await?;
    Ok(ScheduleRow {
        pipeline: pipeline.to_string(),
        paused,
        last_tick: last_tick.map(|t| t as u64),
        last_task,
        active: active as u64,
    })
}
