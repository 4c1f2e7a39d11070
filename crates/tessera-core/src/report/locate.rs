//! Where a problem is in the pipeline's text: the line of the node it names, and of the field
//! within that node. Documents are parsed into values, which keep no positions; this reads the
//! text itself, once, for the `id:` of every node, then looks for a field's key within its
//! node's lines. A guide for the reader, never used to decide anything: when a key cannot be
//! found (a flow mapping over several lines, an unusual layout) the node's line is given, and
//! no line at all when the node cannot be found either.

use std::collections::HashMap;

/// The lines of a document, with where each node's `id` is.
pub(crate) struct Lines<'t> {
    lines: Vec<&'t str>,
    /// The first line (0-based) that gives each node id.
    ids: HashMap<&'t str, usize>,
}

impl<'t> Lines<'t> {
    pub fn new(text: &'t str) -> Lines<'t> {
        let lines: Vec<&str> = text.lines().collect();
        let mut ids = HashMap::new();
        for (n, line) in lines.iter().enumerate() {
            let mut from = 0;
            while let Some(at) = find_key(&line[from..], "id") {
                let value_at = from + at;
                if let Some(id) = scalar_after_key(&line[value_at..]) {
                    ids.entry(id).or_insert(n);
                }
                from = value_at + 1;
            }
        }
        Lines { lines, ids }
    }

    /// The 1-based line of `field` (`retry.attempts`, `next[1]`, `input.y`) in node `node`, or
    /// of a top-level field when `node` is `None`.
    pub fn locate(&self, node: Option<&str>, field: &str) -> Option<usize> {
        let keys: Vec<&str> = field
            .split('.')
            .map(|k| k.split('[').next().unwrap_or(k))
            .filter(|k| !k.is_empty())
            .collect();
        match node {
            Some(id) => {
                let at = *self.ids.get(id)?;
                let (start, end) = self.item_span(at);
                // The node's line when none of the field's keys is found in its lines.
                Some(self.follow(&keys, start, end).unwrap_or(at) + 1)
            }
            None => {
                // A top-level key starts at the first column.
                let first = keys.first()?;
                let top = self.lines.iter().position(|line| {
                    !line.starts_with([' ', '\t', '-', '#']) && find_key(line, first) == Some(0)
                })?;
                Some(
                    self.follow(&keys[1..], top, self.lines.len())
                        .unwrap_or(top)
                        + 1,
                )
            }
        }
    }

    /// The line of the last of `keys` found in lines `start..end`, each looked for from the
    /// line of the one before; `None` when the first is not there.
    fn follow(&self, keys: &[&str], start: usize, end: usize) -> Option<usize> {
        let mut found = None;
        for key in keys {
            let from = found.unwrap_or(start);
            match (from..end).find(|&n| find_key(self.lines[n], key).is_some()) {
                Some(n) => found = Some(n),
                None => break,
            }
        }
        found
    }

    /// The lines of the list item (a node) that holds line `at`: from its `- ` line to the
    /// next line indented as much or less (a flow mapping `{…}` is its own line).
    fn item_span(&self, at: usize) -> (usize, usize) {
        let line = self.lines[at];
        let trimmed = line.trim_start();
        if trimmed.starts_with("- {") || trimmed.starts_with('{') {
            return (at, at + 1);
        }
        // The item's dash: on this line, or on the nearest line above indented less.
        let id_indent = indent(line);
        let mut start = at;
        if !trimmed.starts_with("- ") {
            while start > 0 {
                start -= 1;
                let l = self.lines[start];
                if l.trim().is_empty() || l.trim_start().starts_with('#') {
                    continue;
                }
                if indent(l) < id_indent {
                    break;
                }
            }
        }
        let item_indent = indent(self.lines[start]);
        let end = (start + 1..self.lines.len())
            .find(|&n| {
                let l = self.lines[n];
                !l.trim().is_empty() && !l.trim_start().starts_with('#') && indent(l) <= item_indent
            })
            .unwrap_or(self.lines.len());
        (start, end)
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '\t']).len()
}

/// Where `key` starts as a mapping key in `line` (YAML `key:` or JSON `"key":`), the key
/// standing alone (after the start, a space, `{`, `,`, `-` or a quote).
fn find_key(line: &str, key: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(i) = line[from..].find(key) {
        let at = from + i;
        let before = at.checked_sub(1).map(|b| bytes[b]);
        let (quoted, after) = match before {
            Some(b'"' | b'\'') => (true, at + key.len() + 1),
            _ => (false, at + key.len()),
        };
        let boundary = match before {
            None => true,
            Some(b'"' | b'\'') => at < 2 || matches!(bytes[at - 2], b' ' | b'{' | b',' | b'\t'),
            Some(b) => matches!(b, b' ' | b'{' | b',' | b'-' | b'\t'),
        };
        let closed = !quoted || bytes.get(at + key.len()) == bytes.get(at - 1);
        let colon = line[after.min(line.len())..].trim_start().starts_with(':');
        if boundary && closed && colon {
            return Some(if quoted { at - 1 } else { at });
        }
        from = at + key.len();
    }
    None
}

/// The scalar after a `key:` that starts `text` (quotes removed), up to `,`, `}` or the end.
fn scalar_after_key(text: &str) -> Option<&str> {
    let colon = text.find(':')?;
    let rest = text[colon + 1..].trim_start();
    let value = match rest.as_bytes().first()? {
        q @ (b'"' | b'\'') => {
            let close = rest[1..].find(*q as char)?;
            &rest[1..1 + close]
        }
        _ => rest
            .split([',', '}', '#'])
            .next()
            .unwrap_or(rest)
            .trim_end(),
    };
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "name: demo
schedule:
  cron: \"* * *\"
nodes:
  - {id: in, type: entry, next: [a, ghost]}
  - id: a
    type: command
    # a comment
    retry:
      attempts: 0
    command: [ls]
  - type: loop
    id: each
    items: in.out.items
    nodes:
      - {id: t1, type: node, next: [t2]}
      - id: t2
        type: end
  - {id: end, type: end}
";

    #[test]
    fn nodes_and_fields_are_found_in_block_and_flow_style() {
        let lines = Lines::new(BLOCK);
        assert_eq!(lines.locate(Some("in"), "next[1]"), Some(5));
        assert_eq!(lines.locate(Some("a"), "id"), Some(6));
        assert_eq!(lines.locate(Some("a"), "retry.attempts"), Some(10));
        assert_eq!(lines.locate(Some("a"), "command"), Some(11));
        // A key the node does not have: the node's line.
        assert_eq!(lines.locate(Some("a"), "timeout"), Some(6));
        assert_eq!(lines.locate(Some("each"), "items"), Some(14));
        assert_eq!(lines.locate(Some("each"), "type"), Some(12));
        assert_eq!(lines.locate(Some("t1"), "next"), Some(16));
        assert_eq!(lines.locate(Some("t2"), "type"), Some(18));
        assert_eq!(lines.locate(Some("end"), "type"), Some(19));
        assert_eq!(lines.locate(None, "schedule.cron"), Some(3));
        assert_eq!(lines.locate(None, "name"), Some(1));
        assert_eq!(lines.locate(Some("ghost"), "id"), None);
        assert_eq!(lines.locate(None, "colour"), None);
    }

    #[test]
    fn json_documents_are_read_too() {
        let text = "{\n  \"nodes\": [\n    {\"id\": \"in\", \"type\": \"entry\"},\n    {\n      \"id\": \"a\",\n      \"retry\": {\"attempts\": 0}\n    }\n  ]\n}\n";
        let lines = Lines::new(text);
        assert_eq!(lines.locate(Some("in"), "type"), Some(3));
        assert_eq!(lines.locate(Some("a"), "id"), Some(5));
        assert_eq!(lines.locate(None, "nodes"), None, "not at the first column");
    }

    #[test]
    fn a_big_pipeline_is_located_in_one_pass() {
        // 60,000 nodes of one line each, three problems each: linear (quadratic would take
        // hours here).
        let mut text = String::from("nodes:\n");
        for i in 0..60_000 {
            text.push_str(&format!(
                "  - {{id: n{i}, type: node, next: [missing], bogus: 1}}\n"
            ));
        }
        let lines = Lines::new(&text);
        for i in 0..60_000 {
            let id = format!("n{i}");
            for field in ["next[0]", "bogus", "id"] {
                assert_eq!(lines.locate(Some(&id), field), Some(i + 2));
            }
        }
    }

    #[test]
    fn keys_stand_alone() {
        assert_eq!(find_key("  ids: 1", "id"), None);
        assert_eq!(find_key("  xid: 1", "id"), None);
        assert_eq!(find_key("  - id: a", "id"), Some(4));
        assert_eq!(find_key("{id: a, next: [b]}", "next"), Some(8));
        assert_eq!(find_key("  command: \"next: x\"", "next"), None);
        assert_eq!(scalar_after_key("id: \"a b\", x: 1"), Some("a b"));
        assert_eq!(scalar_after_key("id: a}"), Some("a"));
        assert_eq!(scalar_after_key("id:"), None);
    }
}
