//! Walking compact, valid JSON text without parsing it: where a value ends, a list's items,
//! an object's members. Only for text known valid and compact (a `Data` kept as text): a
//! 9 MB list is split into its items at memory speed, with no value built.

/// The index just past the value starting at `i`.
pub(super) fn value_end(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(b'"') => string_end(b, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            b.len()
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b']' | b'}') {
                j += 1;
            }
            j
        }
    }
}

/// The index just past the string starting (with its quote) at `i`.
fn string_end(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

/// The spans of a list's items (`text` starts with `[`).
pub(super) fn items(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    each_item(text, |a, b| out.push((a, b)));
    out
}

/// Calls `f` with the span of each item of a list (`text` starts with `[`), in order.
pub(super) fn each_item(text: &str, f: impl FnMut(usize, usize)) {
    list_items(text.as_bytes(), 0, f);
}

/// Calls `f` with the span of each item of the list starting at `start`, in order; the
/// index just past the list.
fn list_items(b: &[u8], start: usize, mut f: impl FnMut(usize, usize)) -> usize {
    let mut i = start + 1;
    if i >= b.len() || b[i] == b']' {
        return i + 1;
    }
    loop {
        let end = value_end(b, i);
        f(i, end);
        if b.get(end) != Some(&b',') {
            return end + 1;
        }
        i = end + 1;
    }
}

/// [`member`] for a member whose value is a list, its items found in the same pass: `spans`
/// gets the span of each (offsets in `text` plus `base`), for the last occurrence of the key
/// (as trees keep). Whether the member is there and is a list.
pub(super) fn member_items(
    text: &str,
    wanted: &str,
    base: usize,
    spans: &mut Vec<(u32, u32)>,
) -> bool {
    let b = text.as_bytes();
    let mut found = false;
    let mut i = 1;
    while i < b.len() && b[i] == b'"' {
        let key_end = string_end(b, i);
        let start = key_end + 1; // past the colon
        let end = if key(&text[i..key_end]) == wanted {
            spans.clear();
            found = b.get(start) == Some(&b'[');
            if found {
                list_items(b, start, |x, y| {
                    spans.push(((base + x) as u32, (base + y) as u32))
                })
            } else {
                value_end(b, start)
            }
        } else {
            value_end(b, start)
        };
        i = end + 1;
    }
    found
}

/// How many items a list text holds.
pub(super) fn count_items(text: &str) -> usize {
    let b = text.as_bytes();
    let mut i = 1;
    let mut n = 0;
    while i < b.len() && b[i] != b']' {
        i = value_end(b, i) + 1;
        n += 1;
    }
    n
}

/// The `n`-th item of a list text.
pub(super) fn item(text: &str, n: usize) -> Option<&str> {
    let b = text.as_bytes();
    let mut i = 1;
    let mut k = 0;
    while i < b.len() && b[i] != b']' {
        let end = value_end(b, i);
        if k == n {
            return Some(&text[i..end]);
        }
        k += 1;
        i = end + 1;
    }
    None
}

/// An object text's members: each key's JSON text (with its quotes) and its value's span.
pub(super) fn members(text: &str) -> Vec<(&str, (usize, usize))> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 1;
    while i < b.len() && b[i] == b'"' {
        let key_end = string_end(b, i);
        let start = key_end + 1; // past the colon
        let end = value_end(b, start);
        out.push((&text[i..key_end], (start, end)));
        i = end + 1;
    }
    out
}

/// A key's text (with quotes) as the string it is.
pub(super) fn key(raw: &str) -> std::borrow::Cow<'_, str> {
    let inner = &raw[1..raw.len() - 1];
    if inner.contains('\\') {
        std::borrow::Cow::Owned(serde_json::from_str(raw).unwrap_or_default())
    } else {
        std::borrow::Cow::Borrowed(inner)
    }
}

/// The text of member `key` (the last one, if repeated, as trees keep).
pub(super) fn member<'a>(text: &'a str, wanted: &str) -> Option<&'a str> {
    members(text)
        .into_iter()
        .rev()
        .find(|(k, _)| key(k) == wanted)
        .map(|(_, (a, b))| &text[a..b])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            // Quotes, backslashes, brackets and commas inside strings must not cut values.
            "[a-z\"\\\\\\[\\]{},:é\\n]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-z\"\\\\]{0,4}", inner), 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn items_and_members_are_those_serde_reads(items in prop::collection::vec(json_value(), 0..8)) {
            let text = Value::Array(items.clone()).to_string();
            let spans = super::items(&text);
            // Texts are compared (a float may not read back to the same bits).
            let got: Vec<&str> = spans.iter().map(|&(a, b)| &text[a..b]).collect();
            let want: Vec<String> = items.iter().map(Value::to_string).collect();
            prop_assert_eq!(&got, &want);
            // The same list as a member, found with its items in one pass.
            for wrapped in [
                json!({"a": 1, "items": items.clone(), "z": [2]}),
                json!({"items": items.clone()}),
            ] {
                let t = wrapped.to_string();
                let mut spans = Vec::new();
                prop_assert!(super::member_items(&t, "items", 0, &mut spans));
                let got: Vec<&str> = spans.iter().map(|&(a, b)| &t[a as usize..b as usize]).collect();
                prop_assert_eq!(&got, &want);
            }
            for (n, want) in items.iter().enumerate() {
                prop_assert_eq!(super::item(&text, n).unwrap(), want.to_string());
                if let Value::Object(m) = want {
                    let t = want.to_string();
                    for (k, v) in m {
                        prop_assert_eq!(super::member(&t, k).unwrap(), v.to_string());
                    }
                    let absent = super::member(&t, "\u{1}absent");
                    prop_assert!(absent.is_none());
                }
            }
            prop_assert!(super::item(&text, items.len()).is_none());
            prop_assert_eq!(super::count_items(&text), items.len());
        }
    }

    #[test]
    fn a_repeated_key_reads_as_its_last_value() {
        let text = r#"{"a":1,"b":[1,{"a":2}],"a":"x\"y"}"#;
        assert_eq!(super::member(text, "a"), Some(r#""x\"y""#));
        assert_eq!(super::member(text, "b"), Some(r#"[1,{"a":2}]"#));
        assert_eq!(super::items("[]"), vec![]);
        assert_eq!(super::members("{}"), vec![]);
        assert_eq!(super::items(&json!([[], {}, ""]).to_string()).len(), 3);
    }
}
