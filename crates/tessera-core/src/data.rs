//! The values that flow through a task (inputs, outputs, results): small ones as JSON trees,
//! big ones as their compact JSON text, navigated in place and parsed only where a part of
//! them is needed. A tree of small JSON values costs 10–17 times their text (every number is
//! 72 bytes, every object a hash map); a 9 MB body kept as text costs 9 MB, however many nodes
//! pass it on. Cheap to clone (shared).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

mod scan;

/// Values whose JSON text is longer than this are kept as text.
pub const TEXT_ABOVE: usize = 64 << 10;

/// See [`Data::from_compact_text_kept`].
const TEXT_KEPT_ABOVE: usize = 4 << 10;

/// A JSON value of a task. See the module documentation.
#[derive(Clone)]
pub struct Data(Repr);

#[derive(Clone)]
enum Repr {
    Tree(Arc<Value>),
    /// Compact (no insignificant whitespace), valid JSON: checked when read from outside,
    /// made so when built from parts (never checked twice).
    Text(Arc<str>),
}

impl Default for Data {
    fn default() -> Self {
        Data::null()
    }
}

impl From<Value> for Data {
    fn from(v: Value) -> Data {
        Data::from_value(v)
    }
}

impl Data {
    pub fn null() -> Data {
        static NULL: std::sync::OnceLock<Arc<Value>> = std::sync::OnceLock::new();
        Data(Repr::Tree(
            NULL.get_or_init(|| Arc::new(Value::Null)).clone(),
        ))
    }

    /// A value, kept as a tree if small, else as its text.
    pub fn from_value(v: Value) -> Data {
        if fits_tree(&v) {
            Data(Repr::Tree(Arc::new(v)))
        } else {
            let text = serde_json::to_string(&v).expect("JSON values always serialise");
            Data::text_unchecked(text)
        }
    }

    /// A shared tree (kept as it is, whatever its size: it is already in memory).
    pub fn from_tree(v: Arc<Value>) -> Data {
        Data(Repr::Tree(v))
    }

    /// Reads JSON text (any formatting): parsed if small, else kept compact as text.
    pub fn from_json(text: &str) -> Result<Data, serde_json::Error> {
        if text.len() <= TEXT_ABOVE {
            return serde_json::from_str::<Value>(text).map(|v| Data(Repr::Tree(Arc::new(v))));
        }
        // Validates (and checks the nesting limit) without building a tree.
        let raw: &RawValue = serde_json::from_str(text)?;
        Ok(Data::text_unchecked(compact(raw.get()).into_owned()))
    }

    /// JSON text known valid and compact (made by serde_json, or by [`compact`]).
    fn text_unchecked(text: String) -> Data {
        Data(Repr::Text(Arc::from(text)))
    }

    /// The value as a tree: borrowed when it is one, parsed when it is text (costly for big
    /// values: prefer the methods that navigate text in place).
    pub fn value(&self) -> Cow<'_, Value> {
        match &self.0 {
            Repr::Tree(v) => Cow::Borrowed(v),
            Repr::Text(t) => {
                Cow::Owned(serde_json::from_str(t).expect("stored text is valid JSON"))
            }
        }
    }

    /// The tree, when the value is kept as one.
    pub fn as_tree(&self) -> Option<&Value> {
        match &self.0 {
            Repr::Tree(v) => Some(v),
            Repr::Text(_) => None,
        }
    }

    /// The text, when the value is kept as text.
    pub fn as_text(&self) -> Option<&str> {
        match &self.0 {
            Repr::Tree(_) => None,
            Repr::Text(t) => Some(&**t),
        }
    }

    /// The compact JSON text.
    pub fn json(&self) -> Cow<'_, str> {
        match &self.0 {
            Repr::Tree(v) => Cow::Owned(v.to_string()),
            Repr::Text(t) => Cow::Borrowed(&**t),
        }
    }

    /// Whether the value is kept as text (it is big).
    pub fn is_text(&self) -> bool {
        matches!(self.0, Repr::Text(_))
    }

    pub fn is_null(&self) -> bool {
        match &self.0 {
            Repr::Tree(v) => v.is_null(),
            Repr::Text(_) => false,
        }
    }

    pub fn is_object(&self) -> bool {
        match &self.0 {
            Repr::Tree(v) => v.is_object(),
            Repr::Text(t) => t.starts_with('{'),
        }
    }

    pub fn is_array(&self) -> bool {
        match &self.0 {
            Repr::Tree(v) => v.is_array(),
            Repr::Text(t) => t.starts_with('['),
        }
    }

    /// `object`, `array`, `string`, … as in error messages.
    pub fn type_name(&self) -> &'static str {
        match &self.0 {
            Repr::Tree(v) => crate::model::json_type(v),
            Repr::Text(t) => match t.as_bytes().first() {
                Some(b'{') => "an object",
                Some(b'[') => "a list",
                Some(b'"') => "a string",
                _ => "a number",
            },
        }
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<Data> {
        match &self.0 {
            Repr::Tree(v) => v.get(key).map(|x| Data::from_value(x.clone())),
            Repr::Text(t) => scan::member(t, key).map(data_of_slice),
        }
    }

    /// Walks `segments` (object keys, or list indices as numbers); `None` when missing.
    pub fn walk(&self, segments: &[String]) -> Option<Data> {
        match &self.0 {
            Repr::Tree(v) => {
                let mut cur: &Value = v;
                for seg in segments {
                    cur = match cur {
                        Value::Object(m) => m.get(seg.as_str())?,
                        Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
                        _ => return None,
                    };
                }
                Some(if std::ptr::eq(cur, v.as_ref()) {
                    self.clone()
                } else {
                    Data::from_value(cur.clone())
                })
            }
            Repr::Text(t) => {
                let mut cur = &**t;
                for seg in segments {
                    cur = match cur.as_bytes().first() {
                        Some(b'{') => scan::member(cur, seg)?,
                        Some(b'[') => scan::item(cur, seg.parse::<usize>().ok()?)?,
                        _ => return None,
                    };
                }
                Some(if segments.is_empty() {
                    self.clone()
                } else {
                    data_of_slice(cur)
                })
            }
        }
    }

    /// The members of an object, in order (each a value of its own).
    pub fn entries(&self) -> Option<Vec<(String, Data)>> {
        match &self.0 {
            Repr::Tree(v) => v.as_object().map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), Data::from_value(v.clone())))
                    .collect()
            }),
            Repr::Text(t) if t.starts_with('{') => Some(
                scan::members(t)
                    .into_iter()
                    .map(|(k, (a, b))| (scan::key(k).into_owned(), data_of_slice(&t[a..b])))
                    .collect(),
            ),
            Repr::Text(_) => None,
        }
    }

    /// The items of a list (each a value of its own).
    pub fn items(&self) -> Option<Vec<Data>> {
        match &self.0 {
            Repr::Tree(v) => v
                .as_array()
                .map(|a| a.iter().map(|x| Data::from_value(x.clone())).collect()),
            Repr::Text(t) if t.starts_with('[') => Some(
                scan::items(t)
                    .into_iter()
                    .map(|(a, b)| data_of_slice(&t[a..b]))
                    .collect(),
            ),
            Repr::Text(_) => None,
        }
    }

    /// How many items a list holds, counted in place (`None` if it is not a list).
    pub fn list_len(&self) -> Option<usize> {
        match &self.0 {
            Repr::Tree(v) => v.as_array().map(Vec::len),
            Repr::Text(t) if t.starts_with('[') => Some(scan::count_items(t)),
            Repr::Text(_) => None,
        }
    }

    /// How many items the list under member `key` holds, counted in place (no copy of it).
    pub fn member_list_len(&self, key: &str) -> Option<usize> {
        match &self.0 {
            Repr::Tree(v) => v.get(key)?.as_array().map(Vec::len),
            Repr::Text(t) => {
                let list = scan::member(t, key)?;
                list.starts_with('[').then(|| scan::count_items(list))
            }
        }
    }

    /// An object of these members, as a tree if it is small, else as text made of its parts'
    /// texts (nothing big is parsed).
    pub fn object(entries: Vec<(String, Data)>) -> Data {
        if entries.iter().all(|(_, d)| !d.is_text()) {
            let m: Map<String, Value> = entries
                .into_iter()
                .map(|(k, d)| (k, d.into_value()))
                .collect();
            return Data::from_value(Value::Object(m));
        }
        let mut out = String::from("{");
        for (i, (k, d)) in entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::String(k.clone()).to_string());
            out.push(':');
            out.push_str(&d.json());
        }
        out.push('}');
        Data::from_compact_text(out)
    }

    /// A list of these items (as [`Data::object`] builds objects).
    pub fn array(items: Vec<Data>) -> Data {
        if items.iter().all(|d| !d.is_text()) {
            return Data::from_value(Value::Array(
                items.into_iter().map(Data::into_value).collect(),
            ));
        }
        let mut out = String::from("[");
        for (i, d) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&d.json());
        }
        out.push(']');
        Data::from_compact_text(out)
    }

    /// Compact JSON text made here (from parts that are valid JSON): kept as text if big.
    pub fn from_compact_text(text: String) -> Data {
        if text.len() > TEXT_ABOVE {
            Data::text_unchecked(text)
        } else {
            Data::from_value(serde_json::from_str(&text).expect("made from valid JSON parts"))
        }
    }

    /// Compact JSON text made here, kept as text unless tiny: for values that are mostly
    /// passed on and stored (a loop's collected items), where a tree would be built only to
    /// be written back as text.
    pub fn from_compact_text_kept(text: String) -> Data {
        if text.len() > TEXT_KEPT_ABOVE {
            Data::text_unchecked(text)
        } else {
            Data::from_compact_text(text)
        }
    }

    /// The value as an owned tree (parsed if text).
    pub fn into_value(self) -> Value {
        match self.0 {
            Repr::Tree(v) => Arc::try_unwrap(v).unwrap_or_else(|v| (*v).clone()),
            Repr::Text(t) => serde_json::from_str(&t).expect("stored text is valid JSON"),
        }
    }

    /// Whether a key (`$object`, `$file`) may appear anywhere in the value. For text this is
    /// a search of the text: it may say yes for a string holding the key, never no wrongly.
    pub fn may_contain_key(&self, key: &str) -> bool {
        fn has(v: &Value, key: &str) -> bool {
            match v {
                Value::Object(m) => m.contains_key(key) || m.values().any(|x| has(x, key)),
                Value::Array(items) => items.iter().any(|x| has(x, key)),
                _ => false,
            }
        }
        match &self.0 {
            Repr::Tree(v) => has(v, key),
            Repr::Text(t) => t.contains(&format!("\"{key}\"")),
        }
    }

    /// The size of the value's JSON text, in bytes (computed for trees).
    pub fn json_len(&self) -> usize {
        match &self.0 {
            Repr::Tree(v) => v.to_string().len(),
            Repr::Text(t) => t.len(),
        }
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        match (&self.0, &other.0) {
            (Repr::Tree(a), Repr::Tree(b)) => a == b,
            (Repr::Text(a), Repr::Text(b)) if a == b => true,
            _ => self.value() == other.value(),
        }
    }
}

impl PartialEq<Value> for Data {
    fn eq(&self, other: &Value) -> bool {
        self.value().as_ref() == other
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Tree(v) => write!(f, "{v}"),
            Repr::Text(t) => write!(f, "<{} bytes of JSON>", t.len()),
        }
    }
}

impl fmt::Display for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.json())
    }
}

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Tree(v) => v.serialize(s),
            // Valid JSON: passed on as it is.
            Repr::Text(t) => serde_json::from_str::<&RawValue>(t)
                .map_err(serde::ser::Error::custom)?
                .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Data, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Data::from_json(raw.get()).map_err(serde::de::Error::custom)
    }
}

/// A list read as the spans of its items in its compact JSON text: a million items cost their
/// text and 8 bytes each, not a value each. Cheap to clone (shared).
#[derive(Clone)]
pub struct ListText {
    /// The list's text, or a text it is part of (a list found below a value shares its text).
    text: Arc<str>,
    /// (start, end) of each item in `text`.
    spans: Arc<[(u32, u32)]>,
}

impl fmt::Debug for ListText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListText")
            .field("items", &self.spans.len())
            .finish_non_exhaustive()
    }
}

impl ListText {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The compact JSON text of item `i`.
    pub fn item_text(&self, i: usize) -> &str {
        let (a, b) = self.spans[i];
        &self.text[a as usize..b as usize]
    }

    /// Item `i` as a value.
    pub fn item(&self, i: usize) -> Data {
        data_of_slice(self.item_text(i))
    }

    /// The text of items `range` with their separating commas (`1,3,5`), one slice.
    pub fn range_text(&self, range: std::ops::Range<usize>) -> &str {
        if range.is_empty() {
            return "";
        }
        let (a, b) = (self.spans[range.start].0, self.spans[range.end - 1].1);
        &self.text[a as usize..b as usize]
    }
}

impl Data {
    /// The list as [`ListText`]; `None` when it is not a list, or its text is 4 GiB or more.
    pub fn list_text(&self) -> Option<ListText> {
        let text: Arc<str> = match &self.0 {
            Repr::Text(t) => t.clone(),
            Repr::Tree(v) => {
                v.as_array()?;
                Arc::from(v.to_string())
            }
        };
        if !text.starts_with('[') || u32::try_from(text.len()).is_err() {
            return None;
        }
        let spans = gather_spans(|spans| {
            scan::each_item(&text, |a, b| spans.push((a as u32, b as u32)));
            true
        })?;
        Some(ListText { text, spans })
    }

    /// The list at `segments` below this value (see [`Data::walk`]) as [`ListText`]: what a
    /// loop's `items` path gives. Below a value kept as text, the list is found and split into
    /// its items in one pass, and shares that text (no copy). `None` when nothing is there, or
    /// not a list.
    pub fn walk_list(&self, segments: &[String]) -> Option<ListText> {
        let (Repr::Text(root), Some((last, path))) = (&self.0, segments.split_last()) else {
            return self.walk(segments)?.list_text();
        };
        if u32::try_from(root.len()).is_err() {
            return None;
        }
        let mut cur: &str = root;
        for seg in path {
            cur = match cur.as_bytes().first() {
                Some(b'{') => scan::member(cur, seg)?,
                Some(b'[') => scan::item(cur, seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        // Spans are offsets in the whole text.
        let base = cur.as_ptr() as usize - root.as_ptr() as usize;
        let spans = gather_spans(|spans| match cur.as_bytes().first() {
            Some(b'{') => scan::member_items(cur, last, base, spans),
            Some(b'[') => {
                let list = last.parse::<usize>().ok().and_then(|n| scan::item(cur, n));
                let Some(list) = list.filter(|l| l.starts_with('[')) else {
                    return false;
                };
                let base = list.as_ptr() as usize - root.as_ptr() as usize;
                scan::each_item(list, |a, b| {
                    spans.push(((base + a) as u32, (base + b) as u32))
                });
                true
            }
            _ => false,
        })?;
        Some(ListText {
            text: root.clone(),
            spans,
        })
    }
}

/// Spans gathered by `fill` (which says whether it found a list) in a buffer kept by the
/// thread: a growing vector of a big list would reallocate, on fresh pages each time, what is
/// copied once here.
fn gather_spans(fill: impl FnOnce(&mut Vec<(u32, u32)>) -> bool) -> Option<Arc<[(u32, u32)]>> {
    thread_local! {
        static SPANS: std::cell::RefCell<Vec<(u32, u32)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    SPANS.with_borrow_mut(|buffer| {
        buffer.clear();
        let spans = fill(buffer).then(|| Arc::from(&buffer[..]));
        // What a list of 65,536 items needs (512 KiB) is kept; beyond, given back.
        if buffer.capacity() > 1 << 16 {
            *buffer = Vec::new();
        }
        spans
    })
}

/// A value made of a slice of a bigger text: its own copy, a tree if small.
fn data_of_slice(slice: &str) -> Data {
    if slice.len() <= TEXT_ABOVE {
        Data(Repr::Tree(Arc::new(
            serde_json::from_str(slice).expect("a slice of valid JSON"),
        )))
    } else {
        Data::text_unchecked(slice.to_string())
    }
}

/// Whether a tree's JSON text is at most [`TEXT_ABOVE`] bytes (estimated from above, and
/// stopping as soon as it is known to be more).
fn fits_tree(v: &Value) -> bool {
    fn size(v: &Value, budget: &mut isize) -> bool {
        *budget -= match v {
            Value::String(s) => s.len() as isize + 2,
            Value::Object(m) => 2 + m.keys().map(|k| k.len() as isize + 4).sum::<isize>(),
            Value::Array(a) => 2 + a.len() as isize,
            _ => 24,
        };
        if *budget < 0 {
            return false;
        }
        match v {
            Value::Object(m) => m.values().all(|x| size(x, budget)),
            Value::Array(a) => a.iter().all(|x| size(x, budget)),
            _ => true,
        }
    }
    let mut budget = TEXT_ABOVE as isize;
    size(v, &mut budget)
}

/// JSON text without insignificant whitespace (borrowed when there is none).
pub fn compact(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut in_string = false;
    let mut escaped = false;
    let mut needs = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            needs = true;
            break;
        }
    }
    if !needs {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
    Cow::Owned(String::from_utf8(out).expect("only ASCII whitespace was removed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn big_records(n: usize) -> Value {
        json!({
            "rows": (0..n).map(|i| json!({"id": i, "name": format!("name-{i}")})).collect::<Vec<_>>(),
            "tag": "x",
        })
    }

    #[test]
    fn a_members_list_is_counted_in_place() {
        let big = Data::from_value(json!({"items": (0..20_000).collect::<Vec<_>>(), "n": 1}));
        assert!(big.is_text());
        assert_eq!(big.member_list_len("items"), Some(20_000));
        assert_eq!(big.member_list_len("n"), None);
        assert_eq!(
            Data::from_value(json!({"items": [1, 2]})).member_list_len("items"),
            Some(2)
        );
        assert_eq!(big.member_list_len("absent"), None);
    }

    #[test]
    fn small_values_are_trees_and_big_ones_text() {
        assert!(!Data::from_value(json!({"a": 1})).is_text());
        let big = Data::from_value(big_records(5000));
        assert!(big.is_text());
        assert_eq!(big.value().as_ref(), &big_records(5000));
        assert!(big.is_object() && !big.is_array());
        assert_eq!(big.type_name(), "an object");
    }

    #[test]
    fn text_is_navigated_in_place() {
        let big = Data::from_value(big_records(5000));
        assert_eq!(
            big.walk(&["rows".into(), "42".into(), "name".into()]),
            Some(Data::from_value(json!("name-42")))
        );
        assert_eq!(big.get("tag").unwrap(), json!("x"));
        assert!(big.walk(&["rows".into(), "5000".into()]).is_none());
        assert!(big.walk(&["nope".into()]).is_none());
        let rows = big.get("rows").unwrap();
        assert!(rows.is_text() && rows.is_array());
        assert_eq!(rows.items().unwrap().len(), 5000);
        let entries = big.entries().unwrap();
        assert_eq!(entries[0].0, "rows");
        assert_eq!(
            entries[1],
            ("tag".to_string(), Data::from_value(json!("x")))
        );
    }

    /// The items of a list read through `walk_list`, as texts.
    fn listed(d: &Data, path: &[&str]) -> Option<Vec<String>> {
        let segments: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let list = d.walk_list(&segments)?;
        Some(
            (0..list.len())
                .map(|i| list.item_text(i).to_string())
                .collect(),
        )
    }

    #[test]
    fn a_list_below_a_text_is_split_in_one_pass_sharing_the_text() {
        let value = json!({
            "a": {"rows": big_records(2000)["rows"].clone(), "z": 1},
            "items": [1, "two", {"three": [3]}, [4]],
            "nested": [[5, 6], {"x": [7]}, []],
            "n": 3,
        });
        let big = Data::from_value(value.clone());
        assert!(big.is_text());
        let tree = Data::from_tree(Arc::new(value));
        for path in [
            &["items"][..],
            &["a", "rows"],
            &["nested", "0"],
            &["nested", "1", "x"],
            &["nested", "2"],
            &["n"],
            &["nested", "9"],
            &["absent"],
            &["a", "z"],
            &["items", "2", "three"],
        ] {
            let segments: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            // What walking then splitting gives, on the text and on the same value as a tree.
            let want = big.walk(&segments).and_then(|d| {
                d.list_text()
                    .map(|l| (0..l.len()).map(|i| l.item_text(i).to_string()).collect())
            });
            assert_eq!(listed(&big, path), want, "{path:?}");
            assert_eq!(listed(&tree, path), want, "{path:?} (tree)");
        }
        assert_eq!(listed(&big, &["items"]).unwrap().len(), 4);
        assert_eq!(listed(&big, &["a", "rows"]).unwrap().len(), 2000);
        // The whole value as a list, and a repeated key read as its last value.
        let list = Data::from_json(&format!("[{}]", "1,".repeat(40_000) + "2")).unwrap();
        assert_eq!(listed(&list, &[]).unwrap().len(), 40_001);
        let repeated = format!(
            "{{\"items\":[1,2],\"pad\":\"{}\",\"items\":[3]}}",
            "x".repeat(70_000)
        );
        let repeated = Data::from_json(&repeated).unwrap();
        assert!(repeated.is_text());
        assert_eq!(listed(&repeated, &["items"]).unwrap(), vec!["3"]);
        let not_list = Data::from_json(&repeated.json().replace("[3]", "3")).unwrap();
        assert_eq!(listed(&not_list, &["items"]), None);
    }

    #[test]
    fn objects_and_lists_are_built_from_parts_without_parsing_them() {
        let rows = Data::from_value(big_records(5000)).get("rows").unwrap();
        let o = Data::object(vec![
            ("rows".into(), rows.clone()),
            ("n".into(), Data::from_value(json!(1))),
        ]);
        assert!(o.is_text());
        assert_eq!(o.get("n").unwrap(), json!(1));
        assert_eq!(o.get("rows").unwrap(), rows);
        let l = Data::array(vec![rows.clone(), Data::null()]);
        assert_eq!(l.items().unwrap()[1], Value::Null);
        let small = Data::object(vec![("a".into(), Data::from_value(json!([1])))]);
        assert!(!small.is_text());
        assert_eq!(small, json!({"a": [1]}));
    }

    #[test]
    fn text_read_in_is_compacted_and_round_trips() {
        let pretty = serde_json::to_string_pretty(&big_records(3000)).unwrap();
        let d = Data::from_json(&pretty).unwrap();
        assert!(d.is_text());
        assert_eq!(d.json(), big_records(3000).to_string());
        assert!(Data::from_json("{\"a\": ").is_err());
        let s = serde_json::to_string(&d).unwrap();
        assert_eq!(s, big_records(3000).to_string());
        assert_eq!(
            compact("{ \"a b\" : [1, \"x \\\" y\" ] }"),
            "{\"a b\":[1,\"x \\\" y\"]}"
        );
    }

    #[test]
    fn keys_are_found_in_trees_and_text() {
        let with = Data::from_value(json!({"x": [{"$object": "id"}]}));
        assert!(with.may_contain_key("$object"));
        assert!(!with.may_contain_key("$file"));
        let mut big = big_records(3000);
        big["img"] = json!({"$object": "id"});
        assert!(Data::from_value(big).may_contain_key("$object"));
    }
}
