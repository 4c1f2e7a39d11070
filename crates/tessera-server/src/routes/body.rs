//! Checking a JSON request body in one streaming pass, without building it as a tree (a tree
//! of small JSON values costs 10–17 times its text): its fields against the entry's example,
//! and references only the server makes (`$object`, `$file`). The body then becomes the task's
//! input as compact text ([`Data`]) when big.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};
use tessera_core::Data;

use crate::error::ApiError;

/// Problems reported at most, with a count of the rest.
const MAX_PROBLEMS: usize = 1000;

/// What one pass found.
#[derive(Default)]
struct Findings {
    problems: Vec<Value>,
    more_problems: usize,
    /// The first reference only the server makes: field path and key.
    reference: Option<(String, &'static str)>,
}

impl Findings {
    fn problem(&mut self, field: &str, message: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems
                .push(json!({"field": field, "message": message}));
        } else {
            self.more_problems += 1;
        }
    }
}

/// Checks a JSON body for pipeline `route`: an object, no references, fields as in `example`
/// (an object example; anything else checks nothing). Returns the task's input.
pub(crate) fn check_json_body(
    bytes: &[u8],
    example: Option<&Value>,
    route: &str,
) -> Result<Data, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Data::from_value(json!({})));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
    let example = example.filter(|e| e.is_object());
    let mut findings = Findings::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let is_object = Check {
        example,
        path: String::new(),
        findings: &mut findings,
    }
    .deserialize(&mut de)
    .and_then(|is_object| de.end().map(|()| is_object))
    .map_err(|e| ApiError::BadRequest {
        message: format!(
            "malformed JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ),
        details: Value::Null,
    })?;
    if !is_object {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    if let Some((field, key)) = findings.reference {
        return Err(super::reference_error("the body", field, key));
    }
    if !findings.problems.is_empty() {
        let count = findings.problems.len() + findings.more_problems;
        let mut details = findings.problems;
        if findings.more_problems > 0 {
            details.push(
                json!({"field": "", "message": format!("and {} more", findings.more_problems)}),
            );
        }
        return Err(ApiError::Invalid {
            message: format!(
                "the body does not match pipeline `{route}`: {count} problem(s), listed in `details`"
            ),
            details: Value::Array(details),
        });
    }
    Data::from_json(text).map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))
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
            let expected = tessera_core::model::json_type(example);
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

    fn check(body: &str, example: Value) -> Result<Data, ApiError> {
        check_json_body(body.as_bytes(), Some(&example), "r")
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
        let Err(ApiError::Invalid { details, .. }) =
            check(r#"{"n": 1.5, "name": 3, "tags": ["a", 2], "deep": {}}"#, ex)
        else {
            panic!("expected problems")
        };
        let fields: Vec<&str> = details
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["n", "name", "tags.1", "deep.f", "opt"]);
        assert_eq!(details[0]["message"], "expected an integer");
        assert_eq!(details[1]["message"], "expected a string");
    }

    #[test]
    fn references_and_non_objects_are_refused() {
        for (body, field) in [
            (r#"{"a": {"$file": "/etc/passwd"}}"#, "a"),
            (r#"{"a": [0, {"b": {"$object": "x"}}]}"#, "a.1.b"),
        ] {
            let Err(ApiError::BadRequest { details, .. }) = check(body, json!({})) else {
                panic!("{body}")
            };
            assert_eq!(details[0]["field"], field);
        }
        assert!(matches!(
            check("[1]", json!({})),
            Err(ApiError::BadRequest { .. })
        ));
        assert!(matches!(
            check("{\"a\": ", json!({})),
            Err(ApiError::BadRequest { .. })
        ));
        assert!(matches!(
            check("{} x", json!({})),
            Err(ApiError::BadRequest { .. })
        ));
        assert_eq!(check("  ", json!({})).unwrap(), json!({}));
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
