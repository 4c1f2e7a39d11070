//! PostgreSQL side of cluster-wide pools: one row per taken slot, held under a lease; two
//! processes taking the same slot at once wait on its row, and one of them gets it.

use super::{PgStore, int};
use crate::error::StoreError;
use crate::types::PoolTake;

impl crate::PoolSlots for PgStore {
    fn take_pool_slot(&self, take: &PoolTake<'_>) -> Result<Option<u32>, StoreError> {
        let (pool, holder, runner) = (
            take.pool.to_string(),
            take.holder.to_string(),
            take.runner.to_string(),
        );
        let (size, now, until) = (take.size, int(take.now), int(take.until));
        let leases = self.leases.clone();
        self.run(async move {
            // One statement per slot, each its own transaction: a slot taken is held at once.
            for slot in 0..size {
                let n = sqlx::query(
                    "INSERT INTO pool_slots (pool, slot, holder, runner, until)
                     VALUES ($1, $2, $3, $4, $6)
                     ON CONFLICT (pool, slot) DO UPDATE SET holder = excluded.holder,
                        runner = excluded.runner, until = excluded.until
                     WHERE pool_slots.until < $5 OR pool_slots.holder = excluded.holder",
                )
                .bind(&pool)
                .bind(slot as i64)
                .bind(&holder)
                .bind(&runner)
                .bind(now)
                .bind(until)
                .execute(&leases)
                .await?
                .rows_affected();
                if n == 1 {
                    return Ok(Some(slot));
                }
            }
            Ok(None)
        })
    }

    fn release_pool_slot(&self, pool: &str, slot: u32, holder: &str) -> Result<(), StoreError> {
        self.block(async {
            sqlx::query("DELETE FROM pool_slots WHERE pool = $1 AND slot = $2 AND holder = $3")
                .bind(pool)
                .bind(slot as i64)
                .bind(holder)
                .execute(&self.leases)
                .await?;
            Ok(())
        })
    }

    fn renew_pool_slots(&self, runner: &str, until: u64) -> Result<(), StoreError> {
        self.block(async {
            sqlx::query("UPDATE pool_slots SET until = $2 WHERE runner = $1 AND until < $2")
                .bind(runner)
                .bind(int(until))
                .execute(&self.leases)
                .await?;
            Ok(())
        })
    }

    fn pool_usage(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.block(async {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT pool, COUNT(*) FROM pool_slots WHERE until >= $1 GROUP BY pool ORDER BY pool",
            )
            .bind(int(now))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.into_iter().map(|(p, n)| (p, n as u64)).collect())
        })
    }
}
