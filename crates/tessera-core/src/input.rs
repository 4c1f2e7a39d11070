//! Checking a task's input (a JSON object) against its pipeline's entry, in one streaming pass
//! without building it as a tree (a tree of small JSON values costs 10–17 times its text): its
//! fields against the entry's `api.body` example, and no references only the engine makes
//! (`$object`, `$file`). The one check of both the server (HTTP submissions) and `tessera run
//! --input`; the input then becomes compact text ([`Data`]) when big.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::Data;

/// Problems reported at most, with a count of the rest.
pub const MAX_PROBLEMS: usize = 1000;

/// One field of an input that does not match the example.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldProblem {
    /// Dotted path (`deep.f`, `tags.1`).
    pub field: String,
    pub message: String,
}

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("the input is not UTF-8 text")]
    NotUtf8,
    #[error("malformed JSON at line {line} column {column}: {message}")]
    Malformed {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("the input must be a JSON object")]
    NotAnObject,
    /// A reference only the engine makes (`$object`, `$file`) sent as data.
    #[error(
        "field `{}`: {key} references cannot be sent as data",
        field_name(field)
    )]
    Reference { field: String, key: &'static str },
    /// Fields that do not match the example (at most [`MAX_PROBLEMS`], and how many more).
    #[error("{} problem(s): {}", problems.len() + more, summary(problems))]
    Mismatch {
        problems: Vec<FieldProblem>,
        more: usize,
    },
}

/// One line per problem (`  field `x`: …`), then `  and N more` when some were left out:
/// how the CLI and the Python package list a refused input.
pub fn problem_lines(problems: &[FieldProblem], more: usize) -> Vec<String> {
    let mut lines: Vec<String> = problems
        .iter()
        .map(|p| format!("  field `{}`: {}", p.field, p.message))
        .collect();
    if more > 0 {
        lines.push(format!("  and {more} more"));
    }
    lines
}

fn field_name(field: &str) -> &str {
    if field.is_empty() {
        "(top level)"
    } else {
        field
    }
}

fn summary(problems: &[FieldProblem]) -> String {
    let shown: Vec<String> = problems
        .iter()
        .take(5)
        .map(|p| format!("field `{}`: {}", field_name(&p.field), p.message))
        .collect();
    let rest = problems.len().saturating_sub(5);
    if rest > 0 {
        format!("{}; and {rest} more", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

/// What one pass found.
#[derive(Default)]
struct Findings {
    problems: Vec<FieldProblem>,
    more_problems: usize,
    /// The first reference only the engine makes: field path and key.
    reference: Option<(String, &'static str)>,
}

impl Findings {
    fn problem(&mut self, field: &str, message: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(FieldProblem {
                field: field.to_string(),
                message,
            });
        } else {
            self.more_problems += 1;
        }
    }
}

/// The input of a run given none: the entry's example body (`api.body` when it is an object),
/// else `{}`.
pub fn default_input(pipeline: &crate::Pipeline) -> Value {
    match pipeline.entry().map(|e| &e.kind) {
        Some(crate::NodeKind::Entry(api)) => match &api.body {
            Some(body @ Value::Object(_)) => body.clone(),
            _ => Value::Object(Default::default()),
        },
        _ => Value::Object(Default::default()),
    }
}

/// The example an entry's `api.body` gives for a JSON input: an object example, `None`
/// otherwise (no example, or field names of a multipart upload: only the absence of
/// references is checked then).
pub fn example_of(pipeline: &crate::Pipeline) -> Option<&Value> {
    match pipeline.entry().map(|e| &e.kind) {
        Some(crate::NodeKind::Entry(api)) => api.body.as_ref().filter(|b| b.is_object()),
        _ => None,
    }
}

/// The binary fields an entry's `api.body` names (`body: image`, `body: [a, b]`), uploaded as
/// files; empty for a JSON input.
pub fn binary_fields(pipeline: &crate::Pipeline) -> Vec<String> {
    match pipeline.entry().map(|e| &e.kind) {
        Some(crate::NodeKind::Entry(api)) => match &api.body {
            Some(Value::String(field)) => vec![field.clone()],
            Some(Value::Array(fields)) => fields
                .iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Checks a JSON input: an object (blank text is the empty object), no references, fields as
/// in `example` (an object example; anything else checks nothing). Returns the task's input.
pub fn check_input(bytes: &[u8], example: Option<&Value>) -> Result<Data, InputError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Data::from_value(Value::Object(Default::default())));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| InputError::NotUtf8)?;
    let example = example.filter(|e| e.is_object());
    let mut findings = Findings::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let malformed = |e: serde_json::Error| InputError::Malformed {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    };
    let is_object = Check {
        example,
        path: String::new(),
        findings: &mut findings,
    }
    .deserialize(&mut de)
    .and_then(|is_object| de.end().map(|()| is_object))
    .map_err(malformed)?;
    if !is_object {
        return Err(InputError::NotAnObject);
    }
    if let Some((field, key)) = findings.reference {
        return Err(InputError::Reference { field, key });
    }
    if !findings.problems.is_empty() {
        return Err(InputError::Mismatch {
            problems: findings.problems,
            more: findings.more_problems,
        });
    }
    Data::from_json(text).map_err(malformed)
}

/// One value of the body, with the part of the example it must match. Yields whether the
/// value was an object.
struct Check<'a, 'f> {
    example: Option<&'a Value>,
    path: String,
    findings: &'f mut Findings,
}

impl Check<'_, '_> {
    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The example wants something else than `found` (JSON type words as the tree check used).
    fn mismatch(&mut self, found: Found) {
        let Some(example) = self.example else {
            return;
        };
        let ok = match (example, found) {
            (Value::Null, _) => true,
            (Value::Object(_), Found::Object)
            | (Value::Array(_), Found::Array)
            | (Value::String(_), Found::String)
            | (Value::Bool(_), Found::Bool) => true,
            (Value::Number(_), Found::Integer) => true,
            (Value::Number(e), Found::Float) => {
                if e.is_i64() || e.is_u64() {
                    let path = self.path.clone();
                    self.findings.problem(&path, "expected an integer".into());
                }
                true
            }
            _ => false,
        };
        if !ok {
            let path = self.path.clone();
            let expected = crate::model::json_type(example);
            self.findings.problem(&path, format!("expected {expected}"));
        }
    }
}

#[derive(Clone, Copy)]
enum Found {
    Object,
    Array,
    String,
    Bool,
    Integer,
    Float,
    Null,
}

impl<'de> DeserializeSeed<'de> for Check<'_, '_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<bool, A::Error> {
        self.mismatch(Found::Object);
        let fields = match self.example {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        };
        let mut seen = vec![false; fields.map_or(0, |m| m.len())];
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let path = self.child(&key);
            if (key == "$object" || key == "$file") && self.findings.reference.is_none() {
                let key = if key == "$object" { "$object" } else { "$file" };
                self.findings.reference = Some((self.path.clone(), key));
            }
            let example = fields.and_then(|m| {
                let i = m.keys().position(|k| k == key.as_ref())?;
                seen[i] = true;
                m.get(key.as_ref())
            });
            map.next_value_seed(Check {
                example,
                path,
                findings: self.findings,
            })?;
        }
        if let Some(m) = fields {
            for ((k, _), seen) in m.iter().zip(seen) {
                if !seen {
                    let path = self.child(k);
                    self.findings.problem(&path, "missing field".into());
                }
            }
        }
        Ok(true)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<bool, A::Error> {
        self.mismatch(Found::Array);
        let item_example = match self.example {
            Some(Value::Array(items)) => items.first(),
            _ => None,
        };
        let mut i = 0usize;
        loop {
            let path = self.child(&i.to_string());
            let next = seq.next_element_seed(Check {
                example: item_example,
                path,
                findings: self.findings,
            })?;
            if next.is_none() {
                break;
            }
            i += 1;
        }
        Ok(false)
    }

    fn visit_str<E>(mut self, _: &str) -> Result<bool, E> {
        self.mismatch(Found::String);
        Ok(false)
    }

    fn visit_bool<E>(mut self, _: bool) -> Result<bool, E> {
        self.mismatch(Found::Bool);
        Ok(false)
    }

    fn visit_i64<E>(mut self, _: i64) -> Result<bool, E> {
        self.mismatch(Found::Integer);
        Ok(false)
    }

    fn visit_u64<E>(mut self, _: u64) -> Result<bool, E> {
        self.mismatch(Found::Integer);
        Ok(false)
    }

    fn visit_f64<E>(mut self, _: f64) -> Result<bool, E> {
        self.mismatch(Found::Float);
        Ok(false)
    }

    fn visit_unit<E>(mut self) -> Result<bool, E> {
        self.mismatch(Found::Null);
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(body: &str, example: Value) -> Result<Data, InputError> {
        check_input(body.as_bytes(), Some(&example))
    }

    #[test]
    fn fields_are_checked_against_the_example() {
        let ex = json!({"n": 1, "name": "x", "tags": ["a"], "opt": null, "deep": {"f": 0.5}});
        let ok = check(
            r#"{"n": 2, "name": "y", "tags": ["b", "c"], "opt": [1], "deep": {"f": 1}, "extra": 1}"#,
            ex.clone(),
        )
        .unwrap();
        assert_eq!(ok.value()["extra"], 1);
        let Err(InputError::Mismatch { problems, more }) =
            check(r#"{"n": 1.5, "name": 3, "tags": ["a", 2], "deep": {}}"#, ex)
        else {
            panic!("expected problems")
        };
        assert_eq!(more, 0);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["n", "name", "tags.1", "deep.f", "opt"]);
        assert_eq!(problems[0].message, "expected an integer");
        assert_eq!(problems[1].message, "expected a string");
    }

    #[test]
    fn references_and_non_objects_are_refused() {
        for (body, field) in [
            (r#"{"a": {"$file": "/etc/passwd"}}"#, "a"),
            (r#"{"a": [0, {"b": {"$object": "x"}}]}"#, "a.1.b"),
        ] {
            let Err(InputError::Reference { field: f, .. }) = check(body, json!({})) else {
                panic!("{body}")
            };
            assert_eq!(f, field);
        }
        assert_eq!(check("[1]", json!({})), Err(InputError::NotAnObject));
        assert!(matches!(
            check("{\"a\": ", json!({})),
            Err(InputError::Malformed { .. })
        ));
        assert!(matches!(
            check("{} x", json!({})),
            Err(InputError::Malformed { .. })
        ));
        assert_eq!(check("  ", json!({})).unwrap(), json!({}));
    }

    #[test]
    fn problems_beyond_the_cap_are_counted() {
        let ex = json!({"n": 1});
        let items: Vec<String> = (0..1500).map(|i| format!("{{\"n\": \"{i}\"}}")).collect();
        let body = format!("{{\"n\": [{}]}}", items.join(","));
        let Err(InputError::Mismatch { problems, more }) = check(&body, json!({"n": [ex]})) else {
            panic!("expected problems")
        };
        assert_eq!((problems.len(), more), (MAX_PROBLEMS, 500));
    }

    #[test]
    fn a_big_body_becomes_compact_text() {
        let rows: Vec<Value> = (0..20_000).map(|i| json!({"id": i})).collect();
        let body = serde_json::to_string_pretty(&json!({"rows": rows})).unwrap();
        let d = check(&body, json!({"rows": [{"id": 1}]})).unwrap();
        assert!(d.is_text());
        assert!(!d.json().contains(' '));
    }
}
