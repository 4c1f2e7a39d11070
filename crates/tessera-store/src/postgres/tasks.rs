//! PostgreSQL side of a task's state: step commits (through the group commit), rows,
//! revisions, node runs and history, lists, statistics, deletion; and its log lines.

use super::*;

impl Tasks for PgStore {
    fn commit(&self, batch: &CommitBatch<'_>) -> Result<(), StoreError> {
        self.write(crate::group::Op::Step(crate::group::StepWrite::of(batch)))
    }

    fn task_read(&self, id: &str, values: ValueRead) -> Result<Option<TaskRow>, StoreError> {
        let (pool, id) = (self.pool.clone(), id.to_string());
        self.run(async move {
            let mut conn = pool.acquire().await?;
            let Some(r) = sqlx::query(
                "SELECT id, pipeline, definition, input, state, result, error, created_at,
                        updated_at, runner, owner, base_dir, fence, lease_until, scheduled_at
                 FROM tasks WHERE id = $1",
            )
            .bind(&id)
            .fetch_optional(&mut *conn)
            .await?
            else {
                return Ok(None);
            };
            Ok(Some(task_row(&mut conn, &r, values).await?))
        })
    }

    fn revise_task(
        &self,
        task_id: &str,
        definition: &Value,
        input: Option<&Data>,
        at: u64,
    ) -> Result<(), StoreError> {
        self.write(step::revise(task_id, definition, input, at))
    }

    fn task_revisions(&self, task_id: &str) -> Result<Vec<TaskRevision>, StoreError> {
        self.block(async {
            let rows = sqlx::query(
                "SELECT revision, definition, input, replaced_at FROM task_revisions
                 WHERE task_id = $1 ORDER BY revision",
            )
            .bind(task_id)
            .fetch_all(&self.pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(TaskRevision {
                    revision: r.try_get::<i64, _>(0)? as u32,
                    definition: parse_json(Some(r.try_get(1)?), "task revision")?
                        .unwrap_or_default(),
                    input: task_data(
                        &self.pool,
                        task_id,
                        Some(r.try_get(2)?),
                        "task revision input",
                    )
                    .await?
                    .unwrap_or_default(),
                    replaced_at: r.try_get::<i64, _>(3)? as u64,
                });
            }
            Ok(out)
        })
    }

    fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskSummary>, StoreError> {
        let (before_t, before_id) = filter
            .before
            .clone()
            .map(|(t, id)| (int(t), id))
            .unwrap_or((i64::MAX, String::new()));
        let limit = if filter.limit == 0 { 100 } else { filter.limit } as i64;
        let rows = self.block(async {
            Ok(sqlx::query(
                "SELECT id, pipeline, state, created_at, updated_at, owner FROM tasks
                 WHERE ($1::text IS NULL OR pipeline = $1) AND ($2::text IS NULL OR state = $2)
                   AND (created_at < $3 OR (created_at = $3 AND id < $4))
                   AND ($6::text IS NULL OR owner = $6)
                 ORDER BY created_at DESC, id DESC LIMIT $5",
            )
            .bind(&filter.pipeline)
            .bind(filter.state.map(TaskState::as_str))
            .bind(before_t)
            .bind(before_id)
            .bind(limit)
            .bind(&filter.owner)
            .fetch_all(&self.pool)
            .await?)
        })?;
        rows.iter()
            .map(|r| {
                Ok(TaskSummary {
                    id: r.try_get(0)?,
                    pipeline: r.try_get(1)?,
                    state: parse_word(r.try_get(2)?)?,
                    created_at: r.try_get::<i64, _>(3)? as u64,
                    updated_at: r.try_get::<i64, _>(4)? as u64,
                    owner: r.try_get(5)?,
                })
            })
            .collect()
    }

    fn node_runs_read(
        &self,
        task_id: &str,
        values: ValueRead,
    ) -> Result<Vec<NodeRunRow>, StoreError> {
        self.block(async {
            let rows = sqlx::query(
                "SELECT key, node_id, node_type, iteration, attempt, state, input, output, error,
                        decision, started_at, finished_at, cached, tally
                 FROM node_runs WHERE task_id = $1
                 ORDER BY started_at IS NULL, started_at, finished_at, key, iteration, attempt",
            )
            .bind(task_id)
            .fetch_all(&self.pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let mut run = NodeRunRow {
                    key: r.try_get(0)?,
                    node: r.try_get(1)?,
                    node_type: r.try_get(2)?,
                    iteration: r.try_get::<i64, _>(3)? as u32,
                    attempt: r.try_get::<i64, _>(4)? as u32,
                    state: parse_word::<NodeState>(r.try_get(5)?)?,
                    input: None,
                    output: None,
                    input_bytes: None,
                    output_bytes: None,
                    error: r.try_get(8)?,
                    decision: r.try_get(9)?,
                    started_at: r.try_get::<Option<i64>, _>(10)?.map(|t| t as u64),
                    finished_at: r.try_get::<Option<i64>, _>(11)?.map(|t| t as u64),
                    cached: r.try_get(12)?,
                    tally: parse_tally(r.try_get(13)?)?,
                };
                (run.input, run.input_bytes) =
                    task_value(&self.pool, task_id, r.try_get(6)?, "node input", values).await?;
                let output_values = output_read(&run, values);
                (run.output, run.output_bytes) = task_value(
                    &self.pool,
                    task_id,
                    r.try_get(7)?,
                    "node output",
                    output_values,
                )
                .await?;
                out.push(run);
            }
            Ok(out)
        })
    }

    fn node_output(
        &self,
        task_id: &str,
        key: &str,
        iteration: u32,
        attempt: u32,
    ) -> Result<Option<Data>, StoreError> {
        self.block(async {
            let output: Option<Option<String>> = sqlx::query_scalar(
                "SELECT output FROM node_runs
                 WHERE task_id = $1 AND key = $2 AND iteration = $3 AND attempt = $4",
            )
            .bind(task_id)
            .bind(key)
            .bind(iteration as i64)
            .bind(attempt as i64)
            .fetch_optional(&self.pool)
            .await?;
            task_data(&self.pool, task_id, output.flatten(), "node output").await
        })
    }

    fn check(&self) -> Result<(), StoreError> {
        self.block(async {
            sqlx::query("SELECT count(*) FROM (SELECT 1 FROM tasks LIMIT 1) t")
                .fetch_one(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn node_keys(&self, task_id: &str) -> Result<Vec<String>, StoreError> {
        self.block(async {
            Ok(sqlx::query_scalar(
                "SELECT DISTINCT key FROM node_runs WHERE task_id = $1 ORDER BY key",
            )
            .bind(task_id)
            .fetch_all(&self.pool)
            .await?)
        })
    }

    fn past_runs(&self, task_id: &str) -> Result<Vec<PastRun>, StoreError> {
        let (pool, task_id) = (self.pool.clone(), task_id.to_string());
        self.run(async move {
            let rows = sqlx::query(
                "SELECT key, iteration, attempt, state, output, decision
                 FROM node_runs WHERE task_id = $1",
            )
            .bind(&task_id)
            .fetch_all(&pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            let mut conn = pool.acquire().await?;
            for r in rows {
                out.push(past_run(&mut conn, &task_id, &r, 0).await?);
            }
            Ok(out)
        })
    }

    fn delete_task(&self, task_id: &str) -> Result<Vec<String>, StoreError> {
        self.block(registry::delete_task(&self.pool, task_id))
    }

    fn ended_before(&self, before: u64) -> Result<Vec<String>, StoreError> {
        self.block(async {
            Ok(sqlx::query_scalar(
                "SELECT id FROM tasks WHERE state IN ('finished', 'failed', 'cancelled')
                   AND updated_at < $1",
            )
            .bind(int(before))
            .fetch_all(&self.pool)
            .await?)
        })
    }

    fn task_stats(&self, owner: Option<&str>) -> Result<Vec<StatRow>, StoreError> {
        let rows: Vec<PgRow> = self.block(async {
            Ok(sqlx::query(
                "SELECT pipeline, state, COUNT(*) FROM tasks WHERE ($1::text IS NULL OR owner = $1)
                 GROUP BY pipeline, state ORDER BY pipeline, state",
            )
            .bind(owner)
            .fetch_all(&self.pool)
            .await?)
        })?;
        rows.iter()
            .map(|r| {
                Ok(StatRow {
                    pipeline: r.try_get(0)?,
                    state: parse_word(r.try_get(1)?)?,
                    count: r.try_get::<i64, _>(2)? as u64,
                })
            })
            .collect()
    }
}

impl Logs for PgStore {
    fn append_logs(&self, lines: &[LogLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let task: Vec<String> = lines.iter().map(|l| l.task_id.clone()).collect();
        let key: Vec<String> = lines.iter().map(|l| l.key.clone()).collect();
        let attempt: Vec<i64> = lines.iter().map(|l| l.attempt as i64).collect();
        let stream: Vec<String> = lines.iter().map(|l| l.stream.clone()).collect();
        let line: Vec<String> = lines.iter().map(|l| text(&l.line).into_owned()).collect();
        let at: Vec<i64> = lines.iter().map(|l| int(l.at)).collect();
        let pool = self.pool.clone();
        // One statement for the whole batch, in order (ids follow UNNEST's order).
        self.run(async move {
            sqlx::query(
                "INSERT INTO logs (task_id, key, attempt, stream, line, at)
                 SELECT t, k, a, s, x, w FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[],
                                      $5::text[], $6::bigint[]) WITH ORDINALITY AS l(t, k, a, s, x, w, n)
                 ORDER BY n",
            )
            .bind(&task)
            .bind(&key)
            .bind(&attempt)
            .bind(&stream)
            .bind(&line)
            .bind(&at)
            .execute(&pool)
            .await?;
            Ok(())
        })
    }

    fn logs(&self, task_id: &str, key: Option<&str>) -> Result<Vec<LogLine>, StoreError> {
        let rows: Vec<PgRow> = self.block(async {
            Ok(sqlx::query(
                "SELECT task_id, key, attempt, stream, line, at FROM logs
                 WHERE task_id = $1 AND ($2::text IS NULL OR key = $2) ORDER BY id",
            )
            .bind(task_id)
            .bind(key)
            .fetch_all(&self.pool)
            .await?)
        })?;
        rows.iter()
            .map(|r| {
                Ok(LogLine {
                    task_id: r.try_get(0)?,
                    key: r.try_get(1)?,
                    attempt: r.try_get::<i64, _>(2)? as u32,
                    stream: r.try_get(3)?,
                    line: r.try_get(4)?,
                    at: r.try_get::<i64, _>(5)? as u64,
                })
            })
            .collect()
    }

    fn logs_after(
        &self,
        task_id: &str,
        key: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, LogLine)>, StoreError> {
        let rows: Vec<PgRow> = self.block(async {
            Ok(sqlx::query(
                "SELECT id, task_id, key, attempt, stream, line, at FROM logs
                 WHERE task_id = $1 AND key = $2 AND id > $3 ORDER BY id LIMIT $4",
            )
            .bind(task_id)
            .bind(key)
            .bind(crate::int(after))
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?)
        })?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>(0)? as u64,
                    LogLine {
                        task_id: r.try_get(1)?,
                        key: r.try_get(2)?,
                        attempt: r.try_get::<i64, _>(3)? as u32,
                        stream: r.try_get(4)?,
                        line: r.try_get(5)?,
                        at: r.try_get::<i64, _>(6)? as u64,
                    },
                ))
            })
            .collect()
    }
}
