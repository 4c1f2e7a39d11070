//! JSON as both backends store it: text written once, read back as a value or as a task's
//! data, a malformed one reported as a corrupt row naming what it was.

use serde_json::Value;
use tessera_core::Data;

use crate::error::StoreError;

pub(crate) fn json_text(v: &Value) -> String {
    serde_json::to_string(v).expect("JSON values always serialise")
}

/// Stored JSON as a task's value (kept as text when big: never a 10× tree).
pub(crate) fn parse_data(text: Option<String>, what: &str) -> Result<Option<Data>, StoreError> {
    text.map(|t| {
        Data::from_json(&t).map_err(|e| StoreError::Corrupt {
            what: what.to_string(),
            detail: e.to_string(),
        })
    })
    .transpose()
}

pub(crate) fn parse_json(text: Option<String>, what: &str) -> Result<Option<Value>, StoreError> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
            what: what.to_string(),
            detail: e.to_string(),
        })
    })
    .transpose()
}

/// A node run's stored tally.
pub(crate) fn parse_tally(
    text: Option<String>,
) -> Result<Option<tessera_core::loops::LoopTally>, StoreError> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
            what: "loop tally".to_string(),
            detail: e.to_string(),
        })
    })
    .transpose()
}

/// How a node run's output is read: whole for a finished loop without a tally (recorded
/// before tallies were), whose output is how its items are counted.
pub(crate) fn output_read(run: &crate::NodeRunRow, values: crate::ValueRead) -> crate::ValueRead {
    let untallied_loop = run.node_type == "loop"
        && run.state == tessera_core::scheduler::NodeState::Finished
        && run.tally.is_none();
    if untallied_loop {
        crate::ValueRead::Whole
    } else {
        values
    }
}
