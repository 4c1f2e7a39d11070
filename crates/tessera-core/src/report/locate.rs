//! Where a problem is in the pipeline's text: the line of the node it names, and of the field
//! within that node. Documents are parsed into values, which keep no positions; this reads the
//! text itself, once, for every mapping key on every line (and so the `id:` of every node),
//! then finds a field's keys among its node's lines by binary search. A guide for the reader,
//! never used to decide anything: when a key cannot be found (a flow mapping over several
//! lines, an unusual layout) the node's line is given, and no line at all when the node cannot
//! be found either. Linear in the text, and logarithmic per problem: a hostile document of
//! 10⁵ lines and 10⁵ problems costs no more than reading it.

use std::collections::HashMap;

/// The lines of a document, with where each key and each node's `id` is.
pub(crate) struct Lines<'t> {
    lines: Vec<&'t str>,
    /// Every line (0-based, ascending) that holds each key.
    keys: HashMap<&'t str, Vec<usize>>,
    /// The lines of keys at the first column (the document's own fields), ascending.
    top: HashMap<&'t str, usize>,
    /// The first line that gives each node id.
    ids: HashMap<&'t str, usize>,
    /// The lines of the node on each id line, once worked out.
    spans: HashMap<usize, (usize, usize)>,
}

impl<'t> Lines<'t> {
    pub fn new(text: &'t str) -> Lines<'t> {
        let lines: Vec<&str> = text.lines().collect();
        let (mut keys, mut top, mut ids) = (HashMap::new(), HashMap::new(), HashMap::new());
        for (n, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            for (at, key) in keys_of(line) {
                let held: &mut Vec<usize> = keys.entry(key).or_default();
                if held.last() != Some(&n) {
                    held.push(n);
                }
                if at == 0 {
                    top.entry(key).or_insert(n);
                }
                if key == "id"
                    && let Some(id) = scalar_after_key(&line[at..])
                {
                    ids.entry(id).or_insert(n);
                }
            }
        }
        Lines {
            lines,
            keys,
            top,
            ids,
            spans: HashMap::new(),
        }
    }

    /// The 1-based line of `field` (`retry.attempts`, `next[1]`, `input.y`) in node `node`, or
    /// of a top-level field when `node` is `None`.
    pub fn locate(&mut self, node: Option<&str>, field: &str) -> Option<usize> {
        let keys: Vec<&str> = field
            .split('.')
            .map(|k| k.split('[').next().unwrap_or(k))
            .filter(|k| !k.is_empty())
            .collect();
        match node {
            Some(id) => {
                let at = *self.ids.get(id)?;
                let (start, end) = self.span(at);
                // The node's line when none of the field's keys is found in its lines.
                Some(self.follow(&keys, start, end).unwrap_or(at) + 1)
            }
            None => {
                let top = *self.top.get(keys.first()?)?;
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
            let Some(held) = self.keys.get(key) else {
                break;
            };
            match held.get(held.partition_point(|&n| n < from)) {
                Some(&n) if n < end => found = Some(n),
                _ => break,
            }
        }
        found
    }

    /// The lines of the node whose id is on line `at` (worked out once per node).
    fn span(&mut self, at: usize) -> (usize, usize) {
        if let Some(&span) = self.spans.get(&at) {
            return span;
        }
        let span = self.item_span(at);
        self.spans.insert(at, span);
        span
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

/// The mapping keys of a line (YAML `key:` or JSON `"key":`), each with where it starts: a key
/// stands alone (after the line's start, a space, `{`, `,` or `-`), a bare key's colon is
/// followed by a space or the line's end (so `http://x` holds none), and nothing inside a
/// quoted string counts (`after: 'out = #{a: 1};'` holds `after` only).
fn keys_of(line: &str) -> Vec<(usize, &str)> {
    let b = line.as_bytes();
    let boundary = |i: usize| i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'{' | b',' | b'-');
    let mut out = Vec::new();
    // The quote character and where the string opened.
    let mut quoted: Option<(u8, usize)> = None;
    let mut i = 0;
    while i < b.len() {
        match (quoted, b[i]) {
            (Some((b'"', _)), b'\\') => i += 1,
            (Some((q, open)), c) if c == q => {
                quoted = None;
                let colon_next = line[i + 1..]
                    .trim_start_matches([' ', '\t'])
                    .starts_with(':');
                if colon_next && boundary(open) {
                    out.push((open, &line[open + 1..i]));
                }
            }
            (Some(_), _) => {}
            (None, q @ (b'"' | b'\''))
                if i == 0
                    || matches!(b[i - 1], b' ' | b'\t' | b'{' | b'[' | b',' | b':' | b'-') =>
            {
                quoted = Some((q, i));
            }
            (None, b':') if matches!(b.get(i + 1), None | Some(b' ' | b'\t')) => {
                let from = line[..i]
                    .rfind([' ', '\t', '{', ',', '-', '"', '\''])
                    .map_or(0, |k| k + 1);
                if from < i && boundary(from) {
                    out.push((from, &line[from..i]));
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
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
        let mut lines = Lines::new(BLOCK);
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
        let mut lines = Lines::new(text);
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
        let mut lines = Lines::new(&text);
        for i in 0..60_000 {
            let id = format!("n{i}");
            for field in ["next[0]", "bogus", "id"] {
                assert_eq!(lines.locate(Some(&id), field), Some(i + 2));
            }
        }
    }

    #[test]
    fn one_node_with_many_problems_costs_no_more_than_reading_it() {
        // A hostile document: one node of 100,000 unknown fields, each a problem of its own.
        let mut text = String::from("nodes:\n  - id: a\n    type: node\n");
        for i in 0..100_000 {
            text.push_str(&format!("    f{i}: 1\n"));
        }
        let mut lines = Lines::new(&text);
        for i in (0..100_000).rev() {
            assert_eq!(lines.locate(Some("a"), &format!("f{i}")), Some(i + 4));
        }
    }

    #[test]
    fn keys_stand_alone() {
        fn keys(line: &str) -> Vec<&str> {
            keys_of(line).into_iter().map(|(_, k)| k).collect()
        }
        assert_eq!(keys("  ids: 1"), ["ids"]);
        assert_eq!(keys("  - id: a"), ["id"]);
        assert_eq!(keys_of("  - id: a"), [(4, "id")]);
        assert_eq!(
            keys("{id: a, next: [b], url: \"http://x\"}"),
            ["id", "next", "url"]
        );
        assert_eq!(keys("  command: \"next: x\""), ["command"]);
        assert_eq!(keys("  url: http://x, tz: Europe/Paris"), ["url", "tz"]);
        assert_eq!(
            keys("    {\"id\": \"a\", \"retry\": {\"attempts\": 0}}"),
            ["id", "retry", "attempts"]
        );
        assert_eq!(keys("  after: 'out = #{a: 1};'"), ["after"]);
        assert_eq!(scalar_after_key("id: \"a b\", x: 1"), Some("a b"));
        assert_eq!(scalar_after_key("id: a}"), Some("a"));
        assert_eq!(scalar_after_key("id:"), None);
    }
}
