//! States in SQLite columns: `Word<T>` reads and writes a [`StoredWord`] as its word.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::words::StoredWord;

/// A state in a column: `r.get::<_, Word<TaskState>>(i)?.0`, `params![Word(state)]`.
pub(super) struct Word<T>(pub T);

impl<T: StoredWord> FromSql for Word<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let word = value.as_str()?;
        T::from_word(word)
            .map(Word)
            .ok_or_else(|| FromSqlError::Other(format!("unknown {} `{word}`", T::WHAT).into()))
    }
}

impl<T: StoredWord> ToSql for Word<T> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.word()))
    }
}
