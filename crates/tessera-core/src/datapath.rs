//! Data paths: `nodeId.out.a.b`, `nodeId.input.x`, `nodeId.params.y`, list indices,
//! and inside a loop branch `loop.item...`, `loop.index`, `loop.<nodeId>.out...`; in a loop
//! inside a loop, `loop.parent.item` (and `loop.parent.parent…`) for the enclosing loops.

use std::fmt;

use serde_json::Value;

/// Which part of a node a path reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    Out,
    Input,
    Params,
}

impl Section {
    fn parse(s: &str) -> Option<Section> {
        match s {
            "out" => Some(Section::Out),
            "input" => Some(Section::Input),
            "params" => Some(Section::Params),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Section::Out => "out",
            Section::Input => "input",
            Section::Params => "params",
        }
    }
}

/// Where a path starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRoot {
    /// `nodeId.section` — a node of the pipeline (or, inside a loop template, of the same branch).
    Node { id: String, section: Section },
    /// `loop.item` — the current loop branch's item; `up` loops out with `loop.parent.item`.
    LoopItem { up: u32 },
    /// `loop.index` — the current loop branch's index (`loop.parent.index`: `up` = 1).
    LoopIndex { up: u32 },
    /// `loop.nodeId.section` — a node of the same loop branch.
    LoopNode { id: String, section: Section },
}

/// A parsed data path; `segments` are keys or list indices walked from the root value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPath {
    pub root: PathRoot,
    pub segments: Vec<String>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad data path `{path}`: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: String,
}

impl DataPath {
    pub fn parse(text: &str) -> Result<DataPath, PathError> {
        let err = |reason: &str| PathError {
            path: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(err("empty path"));
        }
        let parts: Vec<&str> = text.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(err(
                "empty segment (two dots in a row, or a leading/trailing dot)",
            ));
        }
        let (root, rest) = if parts[0] == "loop" {
            // `loop.parent.parent.item`: the item of the loop two levels out (`parent.out`
            // stays the output of a node named `parent`).
            let mut up = 0u32;
            while parts.get(1 + up as usize) == Some(&"parent")
                && matches!(
                    parts.get(2 + up as usize).copied(),
                    Some("item" | "index" | "parent")
                )
            {
                up += 1;
            }
            let at = 1 + up as usize;
            match parts.get(at).copied() {
                Some("item") => (PathRoot::LoopItem { up }, &parts[at + 1..]),
                Some("index") => {
                    if parts.len() > at + 1 {
                        return Err(err("`loop.index` is a number and has no fields"));
                    }
                    (PathRoot::LoopIndex { up }, &parts[at + 1..])
                }
                Some(_) if up > 0 => {
                    return Err(err("expected `loop.parent.item` or `loop.parent.index`"));
                }
                Some(id) => {
                    let section = parts.get(2).and_then(|s| Section::parse(s)).ok_or_else(|| {
                        err("expected `loop.item`, `loop.index` or `loop.<node>.out|input|params`")
                    })?;
                    (
                        PathRoot::LoopNode {
                            id: id.to_string(),
                            section,
                        },
                        &parts[3..],
                    )
                }
                None => {
                    return Err(err(
                        "`loop` alone is not a path; use `loop.item` or `loop.index`",
                    ));
                }
            }
        } else {
            let section = parts
                .get(1)
                .and_then(|s| Section::parse(s))
                .ok_or_else(|| {
                    err("expected `<node>.out`, `<node>.input` or `<node>.params` first")
                })?;
            (
                PathRoot::Node {
                    id: parts[0].to_string(),
                    section,
                },
                &parts[2..],
            )
        };
        Ok(DataPath {
            root,
            segments: rest.iter().map(|s| s.to_string()).collect(),
            text: text.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The node id this path reads, if it reads a node (loop or not).
    pub fn node_id(&self) -> Option<&str> {
        match &self.root {
            PathRoot::Node { id, .. } | PathRoot::LoopNode { id, .. } => Some(id),
            PathRoot::LoopItem { .. } | PathRoot::LoopIndex { .. } => None,
        }
    }

    pub fn is_loop_relative(&self) -> bool {
        !matches!(self.root, PathRoot::Node { .. })
    }

    /// Walks `segments` from a task's value (navigating big ones in place).
    pub fn walk_data(&self, root: &crate::data::Data) -> Option<crate::data::Data> {
        root.walk(&self.segments)
    }

    /// Walks `segments` from `root`; a missing key or index gives `None`.
    pub fn walk<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        let mut cur = root;
        for seg in &self.segments {
            cur = match cur {
                Value::Object(map) => map.get(seg.as_str())?,
                Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }
}

impl fmt::Display for DataPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn parses_node_paths() {
        let p = DataPath::parse("detect.out.areas.0").unwrap();
        assert_eq!(
            p.root,
            PathRoot::Node {
                id: "detect".into(),
                section: Section::Out
            }
        );
        assert_eq!(p.segments, vec!["areas", "0"]);
        assert_eq!(p.node_id(), Some("detect"));
    }

    #[test]
    fn parses_loop_paths() {
        assert_eq!(
            DataPath::parse("loop.item").unwrap().root,
            PathRoot::LoopItem { up: 0 }
        );
        assert_eq!(
            DataPath::parse("loop.index").unwrap().root,
            PathRoot::LoopIndex { up: 0 }
        );
        let outer = DataPath::parse("loop.parent.item.name").unwrap();
        assert_eq!(outer.root, PathRoot::LoopItem { up: 1 });
        assert_eq!(outer.segments, ["name"]);
        assert_eq!(
            DataPath::parse("loop.parent.parent.index").unwrap().root,
            PathRoot::LoopIndex { up: 2 }
        );
        // A node named `parent` in the loop.
        assert!(matches!(
            DataPath::parse("loop.parent.out").unwrap().root,
            PathRoot::LoopNode { .. }
        ));
        let p = DataPath::parse("loop.double.out.value").unwrap();
        assert_eq!(
            p.root,
            PathRoot::LoopNode {
                id: "double".into(),
                section: Section::Out
            }
        );
        assert!(p.is_loop_relative());
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in [
            "",
            "a",
            "a.b",
            "a..out",
            "a.out.",
            ".a.out",
            "loop",
            "loop.index.x",
            "loop.x.y",
            "loop.parent.parent.x",
            "loop.parent.index.x",
        ] {
            assert!(DataPath::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn walks_objects_and_lists() {
        let v = json!({"items": [{"name": "a"}, {"name": "b"}]});
        let p = DataPath::parse("n.out.items.1.name").unwrap();
        assert_eq!(p.walk(&v), Some(&json!("b")));
        let missing = DataPath::parse("n.out.items.7.name").unwrap();
        assert_eq!(missing.walk(&v), None);
        let through_scalar = DataPath::parse("n.out.items.0.name.x").unwrap();
        assert_eq!(through_scalar.walk(&v), None);
    }

    proptest! {
        #[test]
        fn any_well_formed_path_round_trips(id in "[a-z_][a-z0-9_]{0,8}", segs in proptest::collection::vec("[a-z0-9]{1,5}", 0..4)) {
            prop_assume!(id != "loop");
            let text = std::iter::once(id.clone()).chain(std::iter::once("out".to_string())).chain(segs.clone()).collect::<Vec<_>>().join(".");
            let p = DataPath::parse(&text).unwrap();
            prop_assert_eq!(p.as_str(), text.as_str());
            prop_assert_eq!(p.node_id(), Some(id.as_str()));
            prop_assert_eq!(p.segments, segs);
        }

        #[test]
        fn parse_never_panics(text in ".{0,40}") {
            let _ = DataPath::parse(&text);
        }
    }
}
