//! PostgreSQL side of who holds a task: creation with its first claim, claims (one `FOR UPDATE
//! SKIP LOCKED` statement for a round), leases, heartbeats, leaders of chores, cancels.

use super::*;

impl Claims for PgStore {
    fn create_task(&self, task: &NewTask) -> Result<(), StoreError> {
        self.write(crate::group::Op::CreateTask(crate::group::TaskInsert::of(
            task,
        )))
    }

    fn reopen_task(&self, task_id: &str, claim: &Claim<'_>) -> Result<Option<u64>, StoreError> {
        self.block(async {
            let mut tx = self.pool.begin().await?;
            let n = sqlx::query(
                "UPDATE tasks SET state = 'pending', error = NULL, runner = $4,
                    cancel_requested = CASE WHEN state IN ('pending', 'running')
                        THEN cancel_requested ELSE FALSE END,
                    fence = fence + 1, lease_until = $6
                 WHERE id = $1 AND state = $2 AND fence = $3
                   AND (state NOT IN ('pending', 'running') OR lease_until IS NULL
                        OR lease_until < $5 OR runner = $4)",
            )
            .bind(task_id)
            .bind(claim.observed_state.as_str())
            .bind(int(claim.observed_fence))
            .bind(claim.runner)
            .bind(int(claim.now))
            .bind(int(claim.lease_until))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                let exists = sqlx::query("SELECT 1 FROM tasks WHERE id = $1")
                    .bind(task_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if !exists {
                    return Err(StoreError::NotFound {
                        what: "task",
                        id: task_id.to_string(),
                    });
                }
                return Ok(None);
            }
            sqlx::query(
                "UPDATE node_runs SET state = 'failed',
                    error = 'interrupted: the process running it stopped'
                 WHERE task_id = $1 AND state = 'running' AND node_type != 'service'",
            )
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(claim.observed_fence + 1))
        })
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
        let ids: Vec<&str> = held.iter().map(|(t, _)| t.as_str()).collect();
        let fences: Vec<i64> = held.iter().map(|(_, f)| int(*f)).collect();
        // One statement for every claim, however many: the ones renewed come back.
        let renewed: Vec<String> = self.block(async {
            Ok(sqlx::query_scalar(
                // Rows locked in id order, as group commits lock them: two transactions
                // locking the same rows in different orders would deadlock (and PostgreSQL
                // takes a second to notice, longer than a short lease can spare).
                "WITH locked AS (
                    SELECT t.id FROM tasks t
                    JOIN UNNEST($1::text[], $2::bigint[]) AS h(id, fence)
                      ON t.id = h.id AND t.fence = h.fence
                    WHERE t.runner = $4 AND t.state IN ('pending', 'running')
                    ORDER BY t.id FOR UPDATE OF t SKIP LOCKED)
                 UPDATE tasks t SET lease_until = $3 FROM locked WHERE t.id = locked.id
                 RETURNING t.id",
            )
            .bind(&ids)
            .bind(&fences)
            .bind(int(until))
            .bind(runner)
            .fetch_all(&self.leases)
            .await?)
        })?;
        let renewed: std::collections::HashSet<String> = renewed.into_iter().collect();
        let missed: Vec<&str> = held
            .iter()
            .filter(|(t, _)| !renewed.contains(t))
            .map(|(t, _)| t.as_str())
            .collect();
        if missed.is_empty() {
            return Ok(Vec::new());
        }
        let missed_fences: Vec<i64> = held
            .iter()
            .filter(|(t, _)| !renewed.contains(t))
            .map(|(_, f)| int(*f))
            .collect();
        // Not renewed: lost if another runner claimed it since. A row a commit of this
        // process was writing was skipped (that commit extends the lease itself); an ended
        // task is not lost (its holder is done with it).
        self.block(async {
            Ok(sqlx::query_scalar(
                "SELECT t.id FROM tasks t
                 JOIN UNNEST($1::text[], $2::bigint[]) AS h(id, fence) ON t.id = h.id
                 WHERE t.state IN ('pending', 'running')
                   AND (t.fence <> h.fence OR t.runner IS DISTINCT FROM $3)",
            )
            .bind(&missed)
            .bind(&missed_fences)
            .bind(runner)
            .fetch_all(&self.leases)
            .await?)
        })
    }

    fn heartbeat(&self, w: &WorkerRow, forget_before: u64) -> Result<(), StoreError> {
        self.block(async {
            let mut tx = self.leases.begin().await?;
            sqlx::query(
                "INSERT INTO workers (runner, host, pid, started_at, heartbeat_at, lease_ms, pools)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (runner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
                    lease_ms = excluded.lease_ms, pools = excluded.pools",
            )
            .bind(&w.runner)
            .bind(&w.host)
            .bind(w.pid as i64)
            .bind(int(w.started_at))
            .bind(int(w.heartbeat_at))
            .bind(int(w.lease_ms))
            .bind(json_text(&w.pools))
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM workers WHERE heartbeat_at < $1")
                .bind(int(forget_before))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn workers(&self, since: u64, now: u64) -> Result<Vec<WorkerRow>, StoreError> {
        let rows = self.block(async {
            Ok(sqlx::query(
                "SELECT w.runner, w.host, w.pid, w.started_at, w.heartbeat_at, w.lease_ms, w.pools,
                    (SELECT COUNT(*) FROM tasks t WHERE t.runner = w.runner
                        AND t.state IN ('pending', 'running') AND t.lease_until >= $2),
                    (SELECT MAX(t.lease_until) FROM tasks t WHERE t.runner = w.runner
                        AND t.state IN ('pending', 'running') AND t.lease_until >= $2)
                 FROM workers w WHERE w.heartbeat_at >= $1 ORDER BY w.started_at, w.runner",
            )
            .bind(int(since))
            .bind(int(now))
            .fetch_all(&self.pool)
            .await?)
        })?;
        rows.iter()
            .map(|r| {
                Ok(WorkerRow {
                    runner: r.try_get(0)?,
                    host: r.try_get(1)?,
                    pid: r.try_get::<i64, _>(2)? as u32,
                    started_at: r.try_get::<i64, _>(3)? as u64,
                    heartbeat_at: r.try_get::<i64, _>(4)? as u64,
                    lease_ms: r.try_get::<i64, _>(5)? as u64,
                    pools: parse_json(Some(r.try_get(6)?), "worker pools")?.unwrap_or(Value::Null),
                    held: r.try_get::<i64, _>(7)? as u64,
                    leases_until: r.try_get::<Option<i64>, _>(8)?.map(|t| t as u64),
                })
            })
            .collect()
    }

    fn lead(&self, role: &str, runner: &str, now: u64, until: u64) -> Result<bool, StoreError> {
        self.block(async {
            let n = sqlx::query(
                "INSERT INTO leaders (role, runner, until) VALUES ($1, $2, $4)
                 ON CONFLICT (role) DO UPDATE SET runner = excluded.runner, until = excluded.until
                 WHERE leaders.until < $3 OR leaders.runner = excluded.runner",
            )
            .bind(role)
            .bind(runner)
            .bind(int(now))
            .bind(int(until))
            .execute(&self.pool)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
    }

    fn release_leases(&self, runner: &str) -> Result<u64, StoreError> {
        self.block(async {
            let mut tx = self.pool.begin().await?;
            let n = sqlx::query(
                "UPDATE tasks SET lease_until = NULL
                 WHERE runner = $1 AND state IN ('pending', 'running')",
            )
            .bind(runner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                notify(&mut tx, crate::Change::Claimable).await?;
            }
            tx.commit().await?;
            Ok(n)
        })
    }

    fn fail_task(&self, task_id: &str, fence: u64, error: &str) -> Result<bool, StoreError> {
        self.block(async {
            let mut tx = self.pool.begin().await?;
            let n = sqlx::query(
                "UPDATE tasks SET state = 'failed', error = $3, lease_until = NULL, updated_at = $4
                 WHERE id = $1 AND fence = $2 AND state IN ('pending', 'running')",
            )
            .bind(task_id)
            .bind(int(fence))
            .bind(error)
            .bind(int(crate::objects::now_millis()))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                sqlx::query(
                    "UPDATE node_runs SET state = 'failed', error = $2
                     WHERE task_id = $1 AND state = 'running' AND node_type != 'service'",
                )
                .bind(task_id)
                .bind(error)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    fn request_cancel(&self, task_id: &str) -> Result<bool, StoreError> {
        self.block(async {
            let mut tx = self.pool.begin().await?;
            let n = sqlx::query("UPDATE tasks SET cancel_requested = TRUE WHERE id = $1")
                .bind(task_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n > 0 {
                notify(&mut tx, crate::Change::ForHolders).await?;
            }
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    fn cancel_requested(&self, task_id: &str) -> Result<bool, StoreError> {
        self.block(async {
            Ok(
                sqlx::query_scalar::<_, bool>("SELECT cancel_requested FROM tasks WHERE id = $1")
                    .bind(task_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .unwrap_or(false),
            )
        })
    }

    fn cancel_requests(&self, runner: &str) -> Result<Vec<String>, StoreError> {
        let (pool, runner) = (self.leases.clone(), runner.to_string());
        self.run(async move {
            Ok(sqlx::query_scalar(
                "SELECT id FROM tasks WHERE cancel_requested AND runner = $1
                   AND state IN ('pending', 'running')",
            )
            .bind(&runner)
            .fetch_all(&pool)
            .await?)
        })
    }

    fn mark_cancelled(&self, task_id: &str, reason: &str, now: u64) -> Result<bool, StoreError> {
        self.block(async {
            let mut tx = self.pool.begin().await?;
            let n = sqlx::query(
                "UPDATE tasks SET state = 'cancelled', error = $2, lease_until = NULL,
                    updated_at = $3, fence = fence + 1
                 WHERE id = $1 AND state IN ('pending', 'running')
                   AND (lease_until IS NULL OR lease_until < $3)",
            )
            .bind(task_id)
            .bind(reason)
            .bind(int(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                sqlx::query(
                    "UPDATE node_runs SET state = 'cancelled'
                     WHERE task_id = $1 AND state IN ('running', 'ready', 'waiting')",
                )
                .bind(task_id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    fn claimable_tasks(&self, now: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.block(async {
            Ok(sqlx::query_scalar(
                "SELECT id FROM tasks WHERE state IN ('pending', 'running')
                   AND (lease_until IS NULL OR lease_until < $1)
                 ORDER BY created_at LIMIT $2",
            )
            .bind(int(now))
            .bind(limit.min(i64::MAX as usize) as i64)
            .fetch_all(&self.pool)
            .await?)
        })
    }

    fn claim_tasks(&self, many: &ClaimMany<'_>) -> Result<Vec<ClaimedTask>, StoreError> {
        let (pool, runner) = (self.leases.clone(), many.runner.to_string());
        let (now, lease_until, limit) = (many.now, many.lease_until, many.limit);
        let skip = many.skip.to_vec();
        // A restricted claimer (`--pools`, `--node-types`): the categories it restricts and
        // what it serves in them; NULL when it runs everything.
        let (patterns, served) = many.serves.as_filter();
        let patterns = (!many.serves.all()).then_some(patterns);
        self.run(async move {
            let mut tx = pool.begin().await?;
            // Rows another runner is claiming right now are skipped, not waited for: two
            // workers claiming at once get disjoint sets.
            let rows = sqlx::query(
                "WITH picked AS (
                    SELECT id, runner AS was_runner, lease_until AS was_until
                    FROM tasks WHERE state IN ('pending', 'running')
                      AND (lease_until IS NULL OR lease_until < $1)
                      AND runner IS DISTINCT FROM $3 AND NOT (id = ANY($5))
                      AND ($6::text[] IS NULL OR needs IS NULL OR NOT EXISTS (
                        SELECT 1 FROM jsonb_array_elements_text(tasks.needs) AS w(need)
                        WHERE need LIKE ANY($6) AND need <> ALL($7)))
                    ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                 UPDATE tasks t SET state = 'pending', error = NULL, runner = $3,
                    fence = t.fence + 1, lease_until = $4
                 FROM picked WHERE t.id = picked.id
                 RETURNING t.id, t.pipeline, t.definition, t.input, t.state, t.result, t.error,
                    t.created_at, t.updated_at, t.runner, t.owner, t.base_dir, t.fence,
                    t.lease_until, t.scheduled_at, picked.was_runner, picked.was_until",
            )
            .bind(int(now))
            .bind(limit.min(i64::MAX as usize) as i64)
            .bind(&runner)
            .bind(int(lease_until))
            .bind(&skip)
            .bind(&patterns)
            .bind(&served)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            let mut claimed = Vec::with_capacity(rows.len());
            let mut previous = std::collections::HashMap::new();
            let mut held_before = std::collections::HashSet::new();
            for r in &rows {
                let task = task_row(&mut tx, r, ValueRead::Whole).await?;
                let was: Option<String> = r.try_get(15)?;
                let until: Option<i64> = r.try_get(16)?;
                if was.is_some() {
                    held_before.insert(task.id.clone());
                }
                if let (Some(was), Some(until)) = (was, until) {
                    previous.insert(task.id.clone(), (was, until.max(0) as u64));
                }
                claimed.push(task);
            }
            // Only a task some runner held before can have attempts (a submission recorded
            // for workers has none): the common case reads no history at all.
            let ids: Vec<&str> = claimed
                .iter()
                .filter(|t| held_before.contains(t.id.as_str()))
                .map(|t| t.id.as_str())
                .collect();
            let mut past: std::collections::HashMap<String, Vec<PastRun>> = Default::default();
            let rows = if ids.is_empty() {
                Vec::new()
            } else {
                // Joined to the array (index lookups), not `task_id = ANY($1)`, which the
                // planner may turn into a scan of the whole table.
                sqlx::query(
                    "UPDATE node_runs r SET state = 'failed',
                        error = 'interrupted: the process running it stopped'
                     FROM unnest($1::text[]) AS c(id)
                     WHERE r.task_id = c.id AND r.state = 'running' AND r.node_type != 'service'",
                )
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
                // Their history, all in one query, read while the claims hold.
                sqlx::query(
                    "SELECT r.task_id, r.key, r.iteration, r.attempt, r.state, r.output, r.decision
                     FROM unnest($1::text[]) AS c(id) JOIN node_runs r ON r.task_id = c.id",
                )
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?
            };
            for r in rows {
                let task_id: String = r.try_get(0)?;
                let run = past_run(&mut tx, &task_id, &r, 1).await?;
                past.entry(task_id).or_default().push(run);
            }
            tx.commit().await?;
            claimed.sort_by_key(|t| t.created_at);
            Ok(claimed
                .into_iter()
                .map(|task| ClaimedTask {
                    past: past.remove(&task.id).unwrap_or_default(),
                    previous: previous.remove(&task.id),
                    task,
                })
                .collect())
        })
    }

    fn changes(&self, about: crate::Change) -> Option<Arc<tokio::sync::Notify>> {
        let i = crate::Change::ALL.iter().position(|c| *c == about)?;
        Some(self.changes[i].clone())
    }
}
