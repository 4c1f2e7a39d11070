//! States stored as words in SQLite columns: read back into their enums (an unknown word is a
//! corrupt row, not a state), written as their words.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use tessera_core::scheduler::{NodeState, TaskState};

use crate::types::{BatchJobState, ChunkState, LineState};

/// A closed set of states with one word each.
pub(super) trait StoredWord: Sized + Copy {
    const WHAT: &'static str;
    fn word(self) -> &'static str;
    fn from_word(word: &str) -> Option<Self>;
}

macro_rules! stored_word {
    ($t:ty, $what:literal) => {
        impl StoredWord for $t {
            const WHAT: &'static str = $what;
            fn word(self) -> &'static str {
                self.as_str()
            }
            fn from_word(word: &str) -> Option<Self> {
                <$t>::parse(word)
            }
        }
    };
}

stored_word!(TaskState, "task state");
stored_word!(NodeState, "node state");
stored_word!(BatchJobState, "batch job state");
stored_word!(ChunkState, "chunk state");
stored_word!(LineState, "batch line state");

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
