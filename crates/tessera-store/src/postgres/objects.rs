//! PostgreSQL side of objects: their metadata, which tasks they belong to, and cache hits
//! that check and link them.

use sqlx::{PgPool, Row};
use tessera_core::Data;

use super::{int, parse_data};
use crate::error::StoreError;
use crate::objects::ObjectMeta;

pub(super) async fn cache_hit(
    pool: &PgPool,
    key: &str,
    task_id: &str,
) -> Result<Option<Data>, StoreError> {
    let mut tx = pool.begin().await?;
    let text: Option<String> = sqlx::query_scalar("SELECT output FROM cache WHERE key = $1")
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(output) = parse_data(text, "cache entry")? else {
        return Ok(None);
    };
    let mut ids = Vec::new();
    if output.may_contain_key("$object") {
        crate::objects::object_ids(&output.value(), &mut ids);
    }
    if ids.is_empty() {
        tx.commit().await?;
        return Ok(Some(output));
    }
    // An entry whose objects are gone (deleted with their task) is no hit: forget it.
    let missing: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM UNNEST($1::text[]) AS i(id)
                        WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.id = i.id))",
    )
    .bind(&ids)
    .fetch_one(&mut *tx)
    .await?;
    if missing {
        sqlx::query("DELETE FROM cache WHERE key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(None);
    }
    // The objects now belong to this task too (unless they are its own already).
    sqlx::query(
        "INSERT INTO object_links (object_id, task_id)
         SELECT o.id, $2 FROM objects o
         WHERE o.id = ANY($1::text[]) AND o.task_id IS DISTINCT FROM $2
         ON CONFLICT DO NOTHING",
    )
    .bind(&ids)
    .bind(task_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(output))
}

pub(super) async fn put_object(
    pool: &PgPool,
    meta: &ObjectMeta,
    task_id: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO objects (id, task_id, name, size, content_type, sha256, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET task_id = excluded.task_id, name = excluded.name,
            size = excluded.size, content_type = excluded.content_type,
            sha256 = excluded.sha256, created_at = excluded.created_at",
    )
    .bind(&meta.id)
    .bind(task_id)
    .bind(&meta.name)
    .bind(int(meta.size))
    .bind(&meta.content_type)
    .bind(&meta.sha256)
    .bind(int(meta.created_at))
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn object(pool: &PgPool, id: &str) -> Result<Option<ObjectMeta>, StoreError> {
    sqlx::query(
        "SELECT id, name, size, content_type, sha256, created_at FROM objects WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .map(|r| {
        Ok(ObjectMeta {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            size: r.try_get::<i64, _>(2)? as u64,
            content_type: r.try_get(3)?,
            sha256: r.try_get(4)?,
            created_at: r.try_get::<i64, _>(5)? as u64,
        })
    })
    .transpose()
}

pub(super) async fn object_task(pool: &PgPool, id: &str) -> Result<Option<String>, StoreError> {
    let task: Option<Option<String>> =
        sqlx::query_scalar("SELECT task_id FROM objects WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(task.flatten())
}

pub(super) async fn object_in_task(
    pool: &PgPool,
    id: &str,
    task_id: &str,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM objects WHERE id = $1 AND task_id = $2)
             OR EXISTS (SELECT 1 FROM object_links WHERE object_id = $1 AND task_id = $2)",
    )
    .bind(id)
    .bind(task_id)
    .fetch_one(pool)
    .await?)
}

pub(super) async fn unattached_objects(
    pool: &PgPool,
    before: u64,
) -> Result<Vec<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM objects WHERE task_id IS NULL AND created_at < $1")
            .bind(int(before))
            .fetch_all(pool)
            .await?,
    )
}

pub(super) async fn delete_objects(pool: &PgPool, ids: &[String]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    // One statement, however many: atomic like the SQLite transaction of single deletes.
    sqlx::query("DELETE FROM objects WHERE id = ANY($1::text[])")
        .bind(ids)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn attach_objects(
    pool: &PgPool,
    task_id: &str,
    ids: &[String],
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("UPDATE objects SET task_id = $1 WHERE id = ANY($2::text[]) AND task_id IS NULL")
        .bind(task_id)
        .bind(ids)
        .execute(pool)
        .await?;
    Ok(())
}
