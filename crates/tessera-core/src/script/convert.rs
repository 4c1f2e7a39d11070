//! Values between tasks and scripts: JSON trees to Rhai and back, exactly (integers above
//! `i64::MAX` as type `u64`); big values lazily: a part kept as text stays a [`JsonPart`] —
//! readable by index, field, `len`, `keys`, `contains` and `for` — until the script reads
//! into it, so that `out.seen = true` on a 9 MB output costs nothing like 9 MB of maps.

use rhai::{Dynamic, INT};
use serde_json::{Map, Value};

use crate::data::Data;

/// An integer above `i64::MAX` (JSON allows it; Rhai's integers are `i64`): carried through a
/// script unchanged, so that a script never turns a field it does not touch into a float.
/// Scripts see it as type `u64`, printable and comparable, not computable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BigUnsigned(pub u64);

/// A big list or object of a task's data, as a script sees it before reading into it.
#[derive(Debug, Clone)]
pub struct JsonPart(pub Data);

/// Objects with more members than this stay [`JsonPart`]s too.
const EAGER_MEMBERS: usize = 1024;

/// Registers the types above and what scripts may do with them.
pub(super) fn register(engine: &mut rhai::Engine) {
    engine
        .register_type_with_name::<BigUnsigned>("u64")
        .register_fn("to_string", |u: &mut BigUnsigned| u.0.to_string())
        .register_fn("to_debug", |u: &mut BigUnsigned| u.0.to_string())
        .register_fn("to_float", |u: &mut BigUnsigned| u.0 as f64)
        .register_fn("==", |a: BigUnsigned, b: BigUnsigned| a == b)
        .register_fn("!=", |a: BigUnsigned, b: BigUnsigned| a != b);
    engine
        .register_type_with_name::<JsonPart>("json")
        .register_fn("len", |j: &mut JsonPart| part_len(j))
        .register_fn("is_empty", |j: &mut JsonPart| part_len(j) == 0)
        // What it stands for: scripts testing `type_of(x) == "array"` see no difference.
        .register_fn("type_of", |j: &mut JsonPart| {
            if j.0.is_array() { "array" } else { "map" }.to_string()
        })
        .register_fn("to_string", |j: &mut JsonPart| j.0.json().into_owned())
        .register_fn("to_debug", |j: &mut JsonPart| j.0.json().into_owned())
        .register_fn("keys", |j: &mut JsonPart| -> rhai::Array {
            j.0.entries()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, _)| Dynamic::from(k))
                .collect()
        })
        .register_fn("contains", |j: &mut JsonPart, key: &str| {
            j.0.get(key).is_some()
        })
        .register_indexer_get(|j: &mut JsonPart, key: &str| -> Dynamic {
            j.0.get(key)
                .map(|d| to_dynamic(&d))
                .unwrap_or(Dynamic::UNIT)
        })
        .register_indexer_get(|j: &mut JsonPart, index: INT| -> Dynamic {
            usize::try_from(index)
                .ok()
                .and_then(|i| j.0.walk(&[i.to_string()]))
                .map(|d| to_dynamic(&d))
                .unwrap_or(Dynamic::UNIT)
        })
        .register_iterator::<JsonPart>();
}

fn part_len(j: &JsonPart) -> INT {
    let n = match j.0.items() {
        Some(items) => items.len(),
        None => j.0.entries().map_or(0, |e| e.len()),
    };
    n as INT
}

impl IntoIterator for JsonPart {
    type Item = Dynamic;
    type IntoIter = std::iter::Map<std::vec::IntoIter<Data>, fn(Data) -> Dynamic>;

    /// Items one at a time: a loop over 10⁶ rows holds one converted row at once.
    fn into_iter(self) -> Self::IntoIter {
        let items = self.0.items().unwrap_or_default();
        items.into_iter().map(|d| to_dynamic(&d))
    }
}

/// A task's value as a script sees it: small parts converted, big lists and objects as
/// [`JsonPart`]s.
pub fn to_dynamic(d: &Data) -> Dynamic {
    match d.as_tree() {
        Some(v) => json_to_dynamic(v),
        None if d.is_array() => Dynamic::from(JsonPart(d.clone())),
        None if d.is_object() => match d.entries() {
            Some(entries) if entries.len() <= EAGER_MEMBERS => Dynamic::from_map(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.into(), to_dynamic(&v)))
                    .collect(),
            ),
            _ => Dynamic::from(JsonPart(d.clone())),
        },
        // A big string or number: read whole.
        None => json_to_dynamic(&d.value()),
    }
}

/// A task's value fully converted (the fallback when a script does what a [`JsonPart`]
/// cannot, such as sorting it or changing an item inside it).
pub fn to_dynamic_eager(d: &Data) -> Dynamic {
    json_to_dynamic(&d.value())
}

/// JSON → Rhai, directly (no serde round trip): integers as `i64` (or [`BigUnsigned`]), other
/// numbers as `f64`, objects as maps, arrays as arrays.
pub fn json_to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Dynamic::from_int(i),
            (None, Some(u)) => Dynamic::from(BigUnsigned(u)),
            _ => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(rhai::ImmutableString::from(s.as_str())),
        Value::Array(items) => Dynamic::from_array(items.iter().map(json_to_dynamic).collect()),
        Value::Object(m) => Dynamic::from_map(
            m.iter()
                .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
                .collect(),
        ),
    }
}

/// Rhai → a task's value: [`JsonPart`]s go back as the text they are, the rest as JSON.
pub fn to_data(v: &Dynamic) -> Result<Data, String> {
    match dynamic_to_json(v) {
        Ok(value) => Ok(Data::from_value(value)),
        Err(Unconverted::Part) => dynamic_to_data(v),
        Err(Unconverted::Other(e)) => Err(e),
    }
}

/// Why [`dynamic_to_json`] stopped.
pub enum Unconverted {
    /// A [`JsonPart`] is in the value (use [`to_data`]).
    Part,
    Other(String),
}

impl From<Unconverted> for String {
    fn from(u: Unconverted) -> String {
        match u {
            Unconverted::Part => "a part of a big value".into(),
            Unconverted::Other(e) => e,
        }
    }
}

fn dynamic_to_data(v: &Dynamic) -> Result<Data, String> {
    if let Some(part) = v.clone().try_cast::<JsonPart>() {
        return Ok(part.0);
    }
    if v.is_array() {
        let items = v
            .read_lock::<rhai::Array>()
            .ok_or("an array that cannot be read")?;
        return items
            .iter()
            .map(dynamic_to_data)
            .collect::<Result<Vec<_>, _>>()
            .map(Data::array);
    }
    if v.is_map() {
        let map = v
            .read_lock::<rhai::Map>()
            .ok_or("a map that cannot be read")?;
        let mut entries = Vec::with_capacity(map.len());
        for (k, x) in map.iter() {
            entries.push((k.to_string(), dynamic_to_data(x)?));
        }
        return Ok(Data::object(entries));
    }
    dynamic_to_json(v)
        .map(Data::from_value)
        .map_err(String::from)
}

/// Rhai → JSON: the inverse of [`json_to_dynamic`]; characters become strings; anything else
/// (functions, non-finite numbers, timestamps) is an error naming its type.
pub fn dynamic_to_json(v: &Dynamic) -> Result<Value, Unconverted> {
    let other = |m: String| Unconverted::Other(m);
    if v.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = v.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = v.as_int() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = v.as_float() {
        return serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| other(format!("{f} is not a JSON number")));
    }
    if let Some(BigUnsigned(u)) = v.clone().try_cast::<BigUnsigned>() {
        return Ok(Value::from(u));
    }
    if v.is::<JsonPart>() {
        return Err(Unconverted::Part);
    }
    if let Ok(c) = v.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if v.is_string() {
        return Ok(Value::String(v.clone().into_string().unwrap_or_default()));
    }
    if v.is_array() {
        let items = v
            .read_lock::<rhai::Array>()
            .ok_or_else(|| other("an array that cannot be read".into()))?;
        return items
            .iter()
            .map(dynamic_to_json)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if v.is_map() {
        let map = v
            .read_lock::<rhai::Map>()
            .ok_or_else(|| other("a map that cannot be read".into()))?;
        let mut out = Map::with_capacity(map.len());
        for (k, x) in map.iter() {
            out.insert(k.to_string(), dynamic_to_json(x)?);
        }
        return Ok(Value::Object(out));
    }
    Err(other(format!("a value of type `{}`", v.type_name())))
}
