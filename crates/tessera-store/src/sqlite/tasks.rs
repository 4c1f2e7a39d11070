//! SQLite side of a task's state: step commits (through the group commit), rows, revisions,
//! node runs and history, lists, statistics, deletion; and its log lines.

use super::*;

impl Tasks for SqliteStore {
    fn revise_task(
        &self,
        task_id: &str,
        definition: &Value,
        input: Option<&Data>,
        at: u64,
    ) -> Result<(), StoreError> {
        let op = crate::group::Op::Revise(crate::group::TaskRevise {
            task_id: task_id.to_string(),
            definition: json_text(definition),
            input: input.map(crate::group::Json::of),
            at: at as i64,
        });
        self.write(op)
    }

    fn task_revisions(&self, task_id: &str) -> Result<Vec<TaskRevision>, StoreError> {
        revisions::task_revisions(&self.conn(), task_id)
    }

    fn commit(&self, batch: &CommitBatch<'_>) -> Result<(), StoreError> {
        self.write(crate::group::Op::Step(crate::group::StepWrite::of(batch)))
    }

    fn task_read(&self, id: &str, values: ValueRead) -> Result<Option<TaskRow>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT id, pipeline, definition, input, state, result, error, created_at, updated_at, runner,
                        owner, base_dir, fence, lease_until, scheduled_at
                 FROM tasks WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, words::Word<TaskState>>(4)?.0,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, i64>(7)?,
                        r.get::<_, i64>(8)?,
                        r.get::<_, Option<String>>(9)?,
                        r.get::<_, Option<String>>(10)?,
                        r.get::<_, Option<String>>(11)?,
                        r.get::<_, i64>(12)?,
                        r.get::<_, Option<i64>>(13)?,
                        r.get::<_, Option<i64>>(14)?,
                    ))
                },
            )
            .optional()?;
        let Some((
            id,
            pipeline,
            definition,
            input,
            state,
            result,
            error,
            created,
            updated,
            runner,
            owner,
            base_dir,
            fence,
            lease_until,
            scheduled_at,
        )) = row
        else {
            return Ok(None);
        };
        let (input, input_bytes) = task_value(&conn, &id, Some(input), "task input", values)?;
        let (result, result_bytes) = task_value(&conn, &id, result, "task result", values)?;
        Ok(Some(TaskRow {
            definition: parse_json(Some(definition), "task definition")?.unwrap_or(Value::Null),
            input: input.unwrap_or_default(),
            input_bytes,
            result,
            result_bytes,
            id,
            pipeline,
            state,
            error,
            created_at: created as u64,
            updated_at: updated as u64,
            runner,
            owner,
            base_dir,
            fence: fence as u64,
            lease_until: lease_until.map(|t| t as u64),
            scheduled_at: scheduled_at.map(|t| t as u64),
        }))
    }

    fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskSummary>, StoreError> {
        let conn = self.conn();
        let (before_t, before_id) = filter
            .before
            .clone()
            .map(|(t, id)| (t as i64, id))
            .unwrap_or((i64::MAX, String::new()));
        let limit = if filter.limit == 0 { 100 } else { filter.limit } as i64;
        let mut stmt = conn.prepare_cached(
            "SELECT id, pipeline, state, created_at, updated_at, owner FROM tasks
             WHERE (?1 IS NULL OR pipeline = ?1) AND (?2 IS NULL OR state = ?2)
               AND (created_at < ?3 OR (created_at = ?3 AND id < ?4))
               AND (?6 IS NULL OR owner = ?6)
             ORDER BY created_at DESC, id DESC LIMIT ?5",
        )?;
        let rows = stmt.query_map(
            params![
                filter.pipeline,
                filter.state.map(words::Word),
                before_t,
                before_id,
                limit,
                filter.owner
            ],
            |r| {
                Ok(TaskSummary {
                    id: r.get(0)?,
                    pipeline: r.get(1)?,
                    state: r.get::<_, words::Word<_>>(2)?.0,
                    created_at: r.get::<_, i64>(3)? as u64,
                    updated_at: r.get::<_, i64>(4)? as u64,
                    owner: r.get(5)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn node_runs_read(
        &self,
        task_id: &str,
        values: ValueRead,
    ) -> Result<Vec<NodeRunRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT key, node_id, node_type, iteration, attempt, state, input, output, error,
                    decision, started_at, finished_at, cached, tally
             FROM node_runs WHERE task_id = ?1 ORDER BY started_at IS NULL, started_at, finished_at, key, iteration, attempt",
        )?;
        let rows = stmt.query_map([task_id], |r| {
            Ok((
                NodeRunRow {
                    key: r.get(0)?,
                    node: r.get(1)?,
                    node_type: r.get(2)?,
                    iteration: r.get(3)?,
                    attempt: r.get(4)?,
                    state: r.get::<_, words::Word<_>>(5)?.0,
                    input: None,
                    output: None,
                    input_bytes: None,
                    output_bytes: None,
                    error: r.get(8)?,
                    decision: r.get(9)?,
                    started_at: r.get::<_, Option<i64>>(10)?.map(|t| t as u64),
                    finished_at: r.get::<_, Option<i64>>(11)?.map(|t| t as u64),
                    cached: r.get(12)?,
                    tally: None,
                },
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<String>>(13)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mut run, input, output, tally) = row?;
            run.tally = parse_tally(tally)?;
            (run.input, run.input_bytes) = task_value(&conn, task_id, input, "node input", values)?;
            let output_values = output_read(&run, values);
            (run.output, run.output_bytes) =
                task_value(&conn, task_id, output, "node output", output_values)?;
            out.push(run);
        }
        Ok(out)
    }

    fn node_output(
        &self,
        task_id: &str,
        key: &str,
        iteration: u32,
        attempt: u32,
    ) -> Result<Option<Data>, StoreError> {
        let conn = self.conn();
        let output: Option<Option<String>> = conn
            .prepare_cached(
                "SELECT output FROM node_runs
                 WHERE task_id = ?1 AND key = ?2 AND iteration = ?3 AND attempt = ?4",
            )?
            .query_row(params![task_id, key, iteration, attempt], |r| r.get(0))
            .optional()?;
        task_data(&conn, task_id, output.flatten(), "node output")
    }

    fn check(&self) -> Result<(), StoreError> {
        if let Some((path, identity)) = &self.file
            && file_identity(path)? != *identity
        {
            return Err(StoreError::Corrupt {
                what: "database file".into(),
                detail: format!(
                    "{} was replaced since it was opened: writes would be lost",
                    path.display()
                ),
            });
        }
        // A read of the header page and of the schema, through the connection writes use.
        let conn = self.conn();
        conn.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0))?;
        conn.query_row(
            "SELECT count(*) FROM (SELECT 1 FROM tasks LIMIT 1)",
            [],
            |r| r.get::<_, i64>(0),
        )?;
        Ok(())
    }

    fn node_keys(&self, task_id: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT DISTINCT key FROM node_runs WHERE task_id = ?1 ORDER BY key")?;
        let keys = stmt.query_map([task_id], |r| r.get(0))?;
        Ok(keys.collect::<Result<_, _>>()?)
    }

    fn past_runs(&self, task_id: &str) -> Result<Vec<PastRun>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT key, iteration, attempt, state, output, decision FROM node_runs WHERE task_id = ?1",
        )?;
        let rows = stmt.query_map([task_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key, iteration, attempt, state, output, decision) = row?;
            let state = NodeState::parse(&state).ok_or_else(|| StoreError::Corrupt {
                what: format!("state of node `{key}`"),
                detail: format!("unknown state `{state}`"),
            })?;
            out.push(PastRun {
                key,
                iteration,
                attempt,
                state,
                output: task_data(&conn, task_id, output, "node output")?,
                decision: decision.as_deref().and_then(Arm::parse),
            });
        }
        Ok(out)
    }

    fn delete_task(&self, task_id: &str) -> Result<Vec<String>, StoreError> {
        registry::delete_task(&mut self.conn(), task_id)
    }

    fn ended_before(&self, before: u64) -> Result<Vec<String>, StoreError> {
        registry::ended_before(&self.conn(), before)
    }

    fn task_stats(&self, owner: Option<&str>) -> Result<Vec<StatRow>, StoreError> {
        registry::task_stats(&self.conn(), owner)
    }
}

impl Logs for SqliteStore {
    fn append_logs(&self, lines: &[LogLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO logs (task_id, key, attempt, stream, line, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for l in lines {
                stmt.execute(params![
                    l.task_id,
                    l.key,
                    l.attempt,
                    l.stream,
                    l.line,
                    l.at as i64
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn logs(&self, task_id: &str, key: Option<&str>) -> Result<Vec<LogLine>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT task_id, key, attempt, stream, line, at FROM logs
             WHERE task_id = ?1 AND (?2 IS NULL OR key = ?2) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![task_id, key], |r| {
            Ok(LogLine {
                task_id: r.get(0)?,
                key: r.get(1)?,
                attempt: r.get(2)?,
                stream: r.get(3)?,
                line: r.get(4)?,
                at: r.get::<_, i64>(5)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn logs_after(
        &self,
        task_id: &str,
        key: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, LogLine)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, task_id, key, attempt, stream, line, at FROM logs
             WHERE task_id = ?1 AND key = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![task_id, key, crate::int(after), limit as i64],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    LogLine {
                        task_id: r.get(1)?,
                        key: r.get(2)?,
                        attempt: r.get(3)?,
                        stream: r.get(4)?,
                        line: r.get(5)?,
                        at: r.get::<_, i64>(6)? as u64,
                    },
                ))
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
