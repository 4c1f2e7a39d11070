//! SQLite side of who holds a task: creation with its first claim, claims, leases,
//! heartbeats, leaders of chores, cancels.

use super::*;

impl Claims for SqliteStore {
    fn create_task(&self, task: &NewTask) -> Result<(), StoreError> {
        let op = crate::group::Op::CreateTask(crate::group::TaskInsert::of(task));
        self.write(op)
    }

    fn fail_task(&self, task_id: &str, fence: u64, error: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE tasks SET state = 'failed', error = ?3, lease_until = NULL, updated_at = ?4
             WHERE id = ?1 AND fence = ?2 AND state IN ('pending', 'running')",
            params![
                task_id,
                fence as i64,
                error,
                crate::objects::now_millis() as i64
            ],
        )?;
        if n > 0 {
            tx.execute(
                "UPDATE node_runs SET state = 'failed', error = ?2
                 WHERE task_id = ?1 AND state = 'running' AND node_type != 'service'",
                params![task_id, error],
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    fn reopen_task(&self, task_id: &str, claim: &Claim<'_>) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE tasks SET state = 'pending', error = NULL, runner = ?4,
                -- A takeover keeps a cancel asked of the previous holder; a resume of an
                -- ended task starts without one.
                cancel_requested = CASE WHEN state IN ('pending', 'running')
                    THEN cancel_requested ELSE 0 END,
                fence = fence + 1, lease_until = ?6
             WHERE id = ?1 AND state = ?2 AND fence = ?3
               AND (state NOT IN ('pending', 'running') OR lease_until IS NULL OR lease_until < ?5
                    OR runner = ?4)",
            params![
                task_id,
                words::Word(claim.observed_state),
                claim.observed_fence as i64,
                claim.runner,
                claim.now as i64,
                claim.lease_until as i64
            ],
        )?;
        if n == 0 {
            let exists = tx
                .query_row("SELECT 1 FROM tasks WHERE id = ?1", [task_id], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Err(StoreError::NotFound {
                    what: "task",
                    id: task_id.to_string(),
                });
            }
            return Ok(None);
        }
        // Attempts caught running by a crash will never report: say so in the history.
        tx.execute(
            "UPDATE node_runs SET state = 'failed', error = 'interrupted: the process running it stopped'
             WHERE task_id = ?1 AND state = 'running' AND node_type != 'service'",
            [task_id],
        )?;
        tx.commit()?;
        Ok(Some(claim.observed_fence + 1))
    }

    fn lead(&self, role: &str, runner: &str, now: u64, until: u64) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "INSERT INTO leaders (role, runner, until) VALUES (?1, ?2, ?4)
             ON CONFLICT (role) DO UPDATE SET runner = excluded.runner, until = excluded.until
             WHERE leaders.until < ?3 OR leaders.runner = excluded.runner",
            params![role, runner, now as i64, until as i64],
        )?;
        Ok(n == 1)
    }

    fn heartbeat(&self, w: &WorkerRow, forget_before: u64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.prepare_cached(
            "INSERT INTO workers (runner, host, pid, started_at, heartbeat_at, lease_ms, pools)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (runner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
                lease_ms = excluded.lease_ms, pools = excluded.pools",
        )?
        .execute(params![
            w.runner,
            w.host,
            w.pid,
            w.started_at as i64,
            w.heartbeat_at as i64,
            w.lease_ms as i64,
            json_text(&w.pools)
        ])?;
        tx.prepare_cached("DELETE FROM workers WHERE heartbeat_at < ?1")?
            .execute([forget_before as i64])?;
        tx.commit()?;
        Ok(())
    }

    fn workers(&self, since: u64, now: u64) -> Result<Vec<WorkerRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT w.runner, w.host, w.pid, w.started_at, w.heartbeat_at, w.lease_ms, w.pools,
                (SELECT COUNT(*) FROM tasks t WHERE t.runner = w.runner
                    AND t.state IN ('pending', 'running') AND t.lease_until >= ?2),
                (SELECT MAX(t.lease_until) FROM tasks t WHERE t.runner = w.runner
                    AND t.state IN ('pending', 'running') AND t.lease_until >= ?2)
             FROM workers w WHERE w.heartbeat_at >= ?1 ORDER BY w.started_at, w.runner",
        )?;
        let rows = stmt
            .query_map(params![since as i64, now as i64], |r| {
                Ok((
                    WorkerRow {
                        runner: r.get(0)?,
                        host: r.get(1)?,
                        pid: r.get(2)?,
                        started_at: r.get::<_, i64>(3)? as u64,
                        heartbeat_at: r.get::<_, i64>(4)? as u64,
                        lease_ms: r.get::<_, i64>(5)? as u64,
                        pools: Value::Null,
                        held: r.get::<_, i64>(7)? as u64,
                        leases_until: r.get::<_, Option<i64>>(8)?.map(|t| t as u64),
                    },
                    r.get::<_, String>(6)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(mut w, pools)| {
                w.pools = parse_json(Some(pools), "worker pools")?.unwrap_or(Value::Null);
                Ok(w)
            })
            .collect()
    }

    fn release_leases(&self, runner: &str) -> Result<u64, StoreError> {
        let n = self.conn().execute(
            "UPDATE tasks SET lease_until = NULL
             WHERE runner = ?1 AND state IN ('pending', 'running')",
            [runner],
        )?;
        Ok(n as u64)
    }

    fn renew_leases(
        &self,
        runner: &str,
        held: &[(String, u64)],
        until: u64,
    ) -> Result<Vec<String>, StoreError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut lost = Vec::new();
        {
            let mut renew = tx.prepare_cached(
                "UPDATE tasks SET lease_until = ?4
                 WHERE id = ?1 AND fence = ?2 AND runner = ?3 AND state IN ('pending', 'running')",
            )?;
            let mut unended = tx.prepare_cached(
                "SELECT 1 FROM tasks WHERE id = ?1 AND state IN ('pending', 'running')",
            )?;
            for (task_id, fence) in held {
                if renew.execute(params![task_id, *fence as i64, runner, until as i64])? == 0
                    && unended.exists([task_id])?
                {
                    lost.push(task_id.clone());
                }
            }
        }
        tx.commit()?;
        Ok(lost)
    }

    fn request_cancel(&self, task_id: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE tasks SET cancel_requested = 1 WHERE id = ?1",
            [task_id],
        )?;
        Ok(n > 0)
    }

    fn cancel_requested(&self, task_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT cancel_requested FROM tasks WHERE id = ?1",
                [task_id],
                |r| r.get::<_, bool>(0),
            )
            .optional()?
            .unwrap_or(false))
    }

    fn cancel_requests(&self, runner: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM tasks WHERE cancel_requested = 1 AND runner = ?1
               AND state IN ('pending', 'running')",
        )?;
        Ok(stmt
            .query_map([runner], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    fn mark_cancelled(&self, task_id: &str, reason: &str, now: u64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE tasks SET state = 'cancelled', error = ?2, lease_until = NULL, updated_at = ?3,
                -- A holder whose lease ran out but who is still alive must not write over it.
                fence = fence + 1
             WHERE id = ?1 AND state IN ('pending', 'running')
               AND (lease_until IS NULL OR lease_until < ?3)",
            params![task_id, reason, now as i64],
        )?;
        if n > 0 {
            tx.execute(
                "UPDATE node_runs SET state = 'cancelled' WHERE task_id = ?1 AND state IN ('running', 'ready', 'waiting')",
                [task_id],
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    fn claimable_tasks(&self, now: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        registry::claimable_tasks(&self.conn(), now, limit, &Serves::default())
    }

    fn claim_tasks(&self, many: &ClaimMany<'_>) -> Result<Vec<ClaimedTask>, StoreError> {
        let ClaimMany {
            runner,
            now,
            lease_until,
            limit,
            skip,
            serves,
        } = *many;
        // One writer: claims one by one, each conditional on what was just read.
        let mut claimed = Vec::new();
        let ids = registry::claimable_tasks(&self.conn(), now, limit + skip.len(), serves)?;
        for id in ids {
            if claimed.len() == limit || skip.contains(&id) {
                continue;
            }
            let Some(mut task) = self.task(&id)? else {
                continue;
            };
            if task.state.is_terminal() || task.runner.as_deref() == Some(runner) {
                continue;
            }
            let claim = Claim {
                observed_state: task.state,
                observed_fence: task.fence,
                runner,
                now,
                lease_until,
            };
            let previous = task.runner.clone().zip(task.lease_until);
            if let Some(fence) = self.reopen_task(&id, &claim)? {
                task.fence = fence;
                task.state = TaskState::Pending;
                task.error = None;
                task.runner = Some(runner.to_string());
                task.lease_until = Some(lease_until);
                let past = self.past_runs(&id)?;
                claimed.push(ClaimedTask {
                    task,
                    past,
                    previous,
                });
            }
        }
        Ok(claimed)
    }
}
