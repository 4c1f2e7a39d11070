//! SQLite side of task revisions: the definitions (and inputs) a task ran with before a resume
//! with a fix replaced them.

use rusqlite::Connection;

use super::{parse_json, task_data};
use crate::error::StoreError;
use crate::types::TaskRevision;

pub(super) fn task_revisions(
    conn: &Connection,
    task_id: &str,
) -> Result<Vec<TaskRevision>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT revision, definition, input, replaced_at FROM task_revisions
         WHERE task_id = ?1 ORDER BY revision",
    )?;
    let rows = stmt
        .query_map([task_id], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(revision, definition, input, at)| {
            Ok(TaskRevision {
                revision,
                definition: parse_json(Some(definition), "task revision")?.unwrap_or_default(),
                input: task_data(conn, task_id, Some(input), "task revision input")?
                    .unwrap_or_default(),
                replaced_at: at as u64,
            })
        })
        .collect()
}
