//! SQLite side of objects: their metadata, which tasks they belong to (their own, and those
//! that reuse them through the cache), and cache hits that check and link them.

use rusqlite::{Connection, OptionalExtension, params};
use tessera_core::Data;

use super::parse_data;
use crate::error::StoreError;
use crate::objects::ObjectMeta;

pub(super) fn cache_hit(
    conn: &mut Connection,
    key: &str,
    task_id: &str,
) -> Result<Option<Data>, StoreError> {
    let tx = conn.transaction()?;
    let text: Option<String> = tx
        .query_row("SELECT output FROM cache WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(output) = parse_data(text, "cache entry")? else {
        return Ok(None);
    };
    let mut ids = Vec::new();
    if output.may_contain_key("$object") {
        crate::objects::object_ids(&output.value(), &mut ids);
    }
    {
        let mut exists = tx.prepare_cached("SELECT 1 FROM objects WHERE id = ?1")?;
        for id in &ids {
            if !exists.exists([id])? {
                drop(exists);
                tx.execute("DELETE FROM cache WHERE key = ?1", [key])?;
                tx.commit()?;
                return Ok(None);
            }
        }
        let mut link = tx.prepare_cached(
            "INSERT OR IGNORE INTO object_links (object_id, task_id)
             SELECT id, ?2 FROM objects WHERE id = ?1 AND task_id IS NOT ?2",
        )?;
        for id in &ids {
            link.execute(params![id, task_id])?;
        }
    }
    tx.commit()?;
    Ok(Some(output))
}

pub(super) fn put_object(
    conn: &Connection,
    meta: &ObjectMeta,
    task_id: Option<&str>,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO objects (id, task_id, name, size, content_type, sha256, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            meta.id,
            task_id,
            meta.name,
            meta.size as i64,
            meta.content_type,
            meta.sha256,
            meta.created_at as i64
        ],
    )?;
    Ok(())
}

pub(super) fn object(conn: &Connection, id: &str) -> Result<Option<ObjectMeta>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id, name, size, content_type, sha256, created_at FROM objects WHERE id = ?1",
            [id],
            |r| {
                Ok(ObjectMeta {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    content_type: r.get(3)?,
                    sha256: r.get(4)?,
                    created_at: r.get::<_, i64>(5)? as u64,
                })
            },
        )
        .optional()?)
}

pub(super) fn object_task(conn: &Connection, id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT task_id FROM objects WHERE id = ?1", [id], |r| {
            r.get::<_, Option<String>>(0)
        })
        .optional()?
        .flatten())
}

pub(super) fn object_in_task(
    conn: &Connection,
    id: &str,
    task_id: &str,
) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM objects WHERE id = ?1 AND task_id = ?2)
             OR EXISTS (SELECT 1 FROM object_links WHERE object_id = ?1 AND task_id = ?2)",
        params![id, task_id],
        |r| r.get(0),
    )?)
}

pub(super) fn unattached_objects(
    conn: &Connection,
    before: u64,
) -> Result<Vec<String>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT id FROM objects WHERE task_id IS NULL AND created_at < ?1")?;
    Ok(stmt
        .query_map([before as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

pub(super) fn delete_objects(conn: &mut Connection, ids: &[String]) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached("DELETE FROM objects WHERE id = ?1")?;
        for id in ids {
            stmt.execute([id])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn attach_objects(
    conn: &mut Connection,
    task_id: &str,
    ids: &[String],
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    for id in ids {
        tx.execute(
            "UPDATE objects SET task_id = ?1 WHERE id = ?2 AND task_id IS NULL",
            params![task_id, id],
        )?;
    }
    tx.commit()?;
    Ok(())
}
