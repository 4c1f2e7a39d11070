//! States stored as words in database columns: read back into their enums (an unknown word is
//! a corrupt row, not a state), written as their words.

use tessera_core::scheduler::{NodeState, TaskState};

use crate::types::{BatchJobState, ChunkState, LineState};

/// A closed set of states with one word each.
pub(crate) trait StoredWord: Sized + Copy {
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

/// A stored word read back as its state; an unknown word is a corrupt row.
pub(crate) fn parse_word<T: StoredWord>(word: &str) -> Result<T, crate::StoreError> {
    T::from_word(word).ok_or_else(|| crate::StoreError::Corrupt {
        what: T::WHAT.to_string(),
        detail: format!("unknown {} `{word}`", T::WHAT),
    })
}
