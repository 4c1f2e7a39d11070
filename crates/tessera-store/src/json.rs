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
