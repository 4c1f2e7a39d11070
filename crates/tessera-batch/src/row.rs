//! Records as processors see them (`RowRef`) and the values expressions produce (`Cell`).

use serde_json::{Map, Value};

/// The fields of one text record (CSV or a plain line), unescaped, in one buffer: field `i` is
/// `buf[ends[i-1]..ends[i]]`. Reused from record to record, so parsing allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct Fields {
    pub buf: String,
    pub ends: Vec<usize>,
}

impl Fields {
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.buf[start..end])
    }

    pub fn push(&mut self, field: &str) {
        self.buf.push_str(field);
        self.ends.push(self.buf.len());
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i).unwrap_or_default())
    }
}

/// One input record.
#[derive(Debug, Clone, Copy)]
pub enum RowRef<'a> {
    /// A CSV record or a plain line (one field named `line`): string fields by column name.
    Text {
        names: &'a [String],
        fields: &'a Fields,
    },
    /// A JSON Lines record: a JSON object.
    Json(&'a Map<String, Value>),
}

/// A value produced by a column expression, or an input field carried to the output.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Arrays and maps (written as JSON text in CSV).
    Json(Value),
}

impl Cell {
    /// The text of the cell in a CSV file, before quoting: strings as they are, numbers as in
    /// JSON (`1.0`, `2.5e-7`), `true`/`false`, null as an empty field, arrays and maps as JSON.
    pub fn write_text(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Cell::Null => {}
            Cell::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Cell::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Cell::Float(f) => out.push_str(&float_text(*f)),
            Cell::Str(s) => out.push_str(s),
            Cell::Json(v) => out.push_str(&v.to_string()),
        }
    }

    /// The value in a JSON Lines record (non-finite floats become null, as JSON has none).
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Int(i) => Value::from(*i),
            Cell::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Cell::Str(s) => Value::String(s.clone()),
            Cell::Json(v) => v.clone(),
        }
    }
}

/// Floats written the way JSON writes them (shortest round-trip form, `.0` kept on integers).
pub fn float_text(f: f64) -> String {
    match serde_json::Number::from_f64(f) {
        Some(n) => n.to_string(),
        None if f.is_nan() => "NaN".into(),
        None if f > 0.0 => "inf".into(),
        None => "-inf".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_slices_of_one_buffer() {
        let mut f = Fields::default();
        f.push("Dupont");
        f.push("");
        f.push("Lefèvre, fils");
        assert_eq!(f.len(), 3);
        assert_eq!(f.get(0), Some("Dupont"));
        assert_eq!(f.get(1), Some(""));
        assert_eq!(f.get(2), Some("Lefèvre, fils"));
        assert_eq!(f.get(3), None);
        f.clear();
        assert!(f.is_empty());
    }

    #[test]
    fn cells_are_written_like_json_scalars() {
        let text = |c: Cell| {
            let mut s = String::new();
            c.write_text(&mut s);
            s
        };
        assert_eq!(text(Cell::Int(-3)), "-3");
        assert_eq!(text(Cell::Float(1.0)), "1.0");
        assert_eq!(text(Cell::Float(0.1 + 0.2)), "0.30000000000000004");
        assert_eq!(text(Cell::Null), "");
        assert_eq!(text(Cell::Bool(true)), "true");
        assert_eq!(text(Cell::Json(serde_json::json!([1, "a"]))), "[1,\"a\"]");
        assert_eq!(Cell::Float(f64::NAN).to_json(), Value::Null);
    }
}
