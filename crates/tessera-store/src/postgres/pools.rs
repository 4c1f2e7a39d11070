//! PostgreSQL side of cluster-wide pools: one row per taken slot, held under a lease; two
//! processes taking the same slot at once wait on its row, and one of them gets it.

use super::{PgStore, int};
use crate::error::StoreError;
use crate::types::PoolTake;

impl crate::PoolSlots for PgStore {
    fn take_pool_slot(&self, take: &PoolTake<'_>) -> Result<Option<u32>, StoreError> {
        self.block(async {
            // One read of the pool's rows: the holder's own slot, else the first free one,
            // taken only if it is still free (another process may have taken it meanwhile:
            // then the next free one is tried, and the next poll reads again).
            let rows: Vec<(i64, String, i64)> =
                sqlx::query_as("SELECT slot, holder, until FROM pool_slots WHERE pool = $1")
                    .bind(take.pool)
                    .fetch_all(&self.leases)
                    .await?;
            let mut rows: Vec<(u32, String, i64)> = rows
                .into_iter()
                .map(|(slot, holder, until)| (slot.clamp(0, u32::MAX as i64) as u32, holder, until))
                .collect();
            while let Some(slot) = crate::group::slot_to_take(take, &rows) {
                let n = sqlx::query(
                    "INSERT INTO pool_slots (pool, slot, holder, runner, until)
                     VALUES ($1, $2, $3, $4, $6)
                     ON CONFLICT (pool, slot) DO UPDATE SET holder = excluded.holder,
                        runner = excluded.runner, until = excluded.until
                     WHERE pool_slots.until < $5 OR pool_slots.holder = excluded.holder",
                )
                .bind(take.pool)
                .bind(i64::from(slot))
                .bind(take.holder)
                .bind(take.runner)
                .bind(int(take.now))
                .bind(int(take.until))
                .execute(&self.leases)
                .await?
                .rows_affected();
                if n == 1 {
                    return Ok(Some(slot));
                }
                // Taken meanwhile: counted as busy from now on (each round marks one more
                // slot busy, so this ends within `size` rounds).
                rows.retain(|(s, _, _)| *s != slot);
                rows.push((slot, String::new(), i64::MAX));
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
