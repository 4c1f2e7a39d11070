//! SQLite side of cluster-wide pools: one row per taken slot, held under a lease.

use rusqlite::params;

use super::SqliteStore;
use crate::error::StoreError;
use crate::types::PoolTake;

use crate::int;

impl crate::PoolSlots for SqliteStore {
    fn take_pool_slot(&self, take: &PoolTake<'_>) -> Result<Option<u32>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // One read of the pool's rows: the holder's own slot, else the first free one.
        let rows: Vec<(u32, String, i64)> = tx
            .prepare_cached("SELECT slot, holder, until FROM pool_slots WHERE pool = ?1")?
            .query_map([take.pool], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let Some(slot) = crate::group::slot_to_take(take, &rows) else {
            return Ok(None);
        };
        tx.prepare_cached(
            "INSERT INTO pool_slots (pool, slot, holder, runner, until) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (pool, slot) DO UPDATE SET holder = excluded.holder,
                runner = excluded.runner, until = excluded.until",
        )?
        .execute(params![
            take.pool,
            slot,
            take.holder,
            take.runner,
            int(take.until)
        ])?;
        tx.commit()?;
        Ok(Some(slot))
    }

    fn release_pool_slot(&self, pool: &str, slot: u32, holder: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM pool_slots WHERE pool = ?1 AND slot = ?2 AND holder = ?3",
            params![pool, slot, holder],
        )?;
        Ok(())
    }

    fn renew_pool_slots(&self, runner: &str, until: u64) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE pool_slots SET until = ?2 WHERE runner = ?1 AND until < ?2",
            params![runner, int(until)],
        )?;
        Ok(())
    }

    fn pool_usage(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT pool, COUNT(*) FROM pool_slots WHERE until >= ?1 GROUP BY pool ORDER BY pool",
        )?;
        let rows = stmt
            .query_map([int(now)], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}
