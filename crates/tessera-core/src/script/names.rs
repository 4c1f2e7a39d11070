//! What a script may name: node ids that are not Rhai identifiers (`in`, `make-tiles`) and
//! `loop.item` are rewritten to forms Rhai parses (`nodes["in"]`, `__loop.item`), and
//! validation reports variables and functions that exist nowhere.

use std::borrow::Cow;
use std::collections::HashSet;

use rhai::{AST, Engine, Scope};

use super::ScriptError;

/// Words Rhai reserves: a node with one of these ids cannot be named bare in a script.
const RHAI_KEYWORDS: &[&str] = &[
    "true",
    "false",
    "let",
    "const",
    "if",
    "else",
    "switch",
    "do",
    "while",
    "loop",
    "until",
    "for",
    "in",
    "continue",
    "break",
    "return",
    "throw",
    "try",
    "catch",
    "import",
    "export",
    "as",
    "global",
    "private",
    "fn",
    "Fn",
    "call",
    "curry",
    "this",
    "type_of",
    "print",
    "debug",
    "eval",
    "is_def_var",
    "is_def_fn",
    "is_shared",
    "var",
    "static",
    "shared",
    "goto",
    "exit",
    "match",
    "case",
    "public",
    "protected",
    "new",
    "use",
    "with",
    "is",
    "module",
    "package",
    "super",
    "spawn",
    "thread",
    "go",
    "sync",
    "async",
    "await",
    "yield",
    "default",
    "void",
    "null",
    "nil",
];

/// Variables every script has.
pub(super) const BUILT_IN_VARIABLES: &[&str] = &["input", "out", "node", "nodes", "pipeline"];

/// Variables of a script in a loop branch (`item`, `index` are aliases of `loop.item`, …).
pub(super) const LOOP_VARIABLES: &[&str] = &["__loop", "item", "index"];

/// Whether a node id can be written bare in a script (`detect.out`), else it is reached
/// through `nodes["id"]` (which the rewrite below does for `id.` in the source).
pub fn is_plain_identifier(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !RHAI_KEYWORDS.contains(&id)
        && !id.starts_with("__")
}

/// Rewrites `id.` for a node id Rhai cannot parse bare (a keyword such as `in`, or an id with
/// `-`) into `nodes["id"].`, and `loop.` into `__loop.`; strings and comments are left alone
/// (code inside `${…}` of a back-tick string is rewritten too).
pub fn rewrite<'s>(source: &'s str, is_node: &dyn Fn(&str) -> bool) -> Cow<'s, str> {
    let bytes = source.as_bytes();
    if !bytes.contains(&b'.') {
        return Cow::Borrowed(source);
    }
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    // Open back-tick strings, each with how many `{` are open in its current `${…}`.
    let mut interpolations: Vec<Option<u32>> = Vec::new();
    let in_string = |stack: &Vec<Option<u32>>| matches!(stack.last(), Some(None));
    while i < bytes.len() {
        let c = bytes[i];
        if in_string(&interpolations) {
            match c {
                b'\\' => i += 1,
                b'`' => {
                    interpolations.pop();
                }
                b'$' if bytes.get(i + 1) == Some(&b'{') => {
                    *interpolations.last_mut().expect("inside a string") = Some(0);
                    i += 1;
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        match c {
            b'"' | b'\'' => {
                i += 1;
                while i < bytes.len() && bytes[i] != c {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'`' => {
                interpolations.push(None);
                i += 1;
            }
            b'{' => {
                if let Some(Some(depth)) = interpolations.last_mut() {
                    *depth += 1;
                }
                i += 1;
            }
            b'}' => {
                match interpolations.last_mut() {
                    Some(Some(0)) => *interpolations.last_mut().expect("open") = None,
                    Some(Some(depth)) => *depth -= 1,
                    _ => {}
                }
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                let mut end = i;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_')
                {
                    end += 1;
                }
                // A hyphenated id (`make-tiles`) is one word only when it names a node.
                let mut long = end;
                while long < bytes.len()
                    && (bytes[long].is_ascii_alphanumeric() || matches!(bytes[long], b'_' | b'-'))
                {
                    long += 1;
                }
                if long > end && is_node(&source[start..long]) {
                    end = long;
                }
                let word = &source[start..end];
                let after_dot = source[..start].trim_end().ends_with('.');
                let before_dot = source[end..].starts_with('.')
                    && source[end + 1..]
                        .bytes()
                        .next()
                        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !after_dot && before_dot {
                    let replacement = if word == "loop" {
                        Some("__loop".to_string())
                    } else if !is_plain_identifier(word) && is_node(word) {
                        Some(format!("nodes[\"{word}\"]"))
                    } else {
                        None
                    };
                    if let Some(r) = replacement {
                        out.push_str(&source[copied..start]);
                        out.push_str(&r);
                        copied = end;
                    }
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    if copied == 0 {
        return Cow::Borrowed(source);
    }
    out.push_str(&source[copied..]);
    Cow::Owned(out)
}

/// What validation knows about a script's surroundings.
#[derive(Clone, Copy)]
pub struct NameScope<'a> {
    pub is_node: &'a dyn Fn(&str) -> bool,
    pub in_loop: bool,
    /// A batch row expression: it sees `row` and `line_number` only.
    pub row_expression: bool,
}

/// Compiles `source` with strict variables against the names it may use, then walks it for
/// calls to functions that exist neither in the engine nor in the script.
pub(super) fn check(
    strict: &Engine,
    functions: &HashSet<String>,
    source: &str,
    scope: &NameScope<'_>,
) -> Result<(), ScriptError> {
    let mut vars = Scope::new();
    if scope.row_expression {
        vars.push_dynamic("row", rhai::Dynamic::UNIT);
        vars.push_dynamic("line_number", rhai::Dynamic::UNIT);
    } else {
        for v in BUILT_IN_VARIABLES {
            vars.push_dynamic(*v, rhai::Dynamic::UNIT);
        }
        if scope.in_loop {
            for v in LOOP_VARIABLES {
                vars.push_dynamic(*v, rhai::Dynamic::UNIT);
            }
        }
        for word in super::identifiers(source) {
            if is_plain_identifier(word) && (scope.is_node)(word) && !vars.contains(word) {
                vars.push_dynamic(word.to_string(), rhai::Dynamic::UNIT);
            }
        }
    }
    let text = if scope.row_expression {
        Cow::Borrowed(source)
    } else {
        rewrite(source, scope.is_node)
    };
    // Every unknown variable, not only the first: each one found is declared and the script
    // compiled again (a bounded number of times), then every unknown function is listed.
    let mut problems: Vec<String> = Vec::new();
    let mut ast = None;
    for _ in 0..MAX_PROBLEMS {
        match strict.compile_with_scope(&vars, text.as_ref()) {
            Ok(a) => {
                ast = Some(a);
                break;
            }
            Err(e) => {
                problems.push(if problems.is_empty() {
                    describe_parse_error(&e, scope)
                } else {
                    short_parse_error(&e)
                });
                match &*e.0 {
                    rhai::ParseErrorType::VariableUndefined(name) if !vars.contains(name) => {
                        vars.push_dynamic(name.to_string(), rhai::Dynamic::UNIT);
                    }
                    _ => break,
                }
            }
        }
    }
    if let Some(ast) = &ast {
        for (name, pos) in unknown_functions(ast, functions) {
            if problems.len() >= MAX_PROBLEMS {
                break;
            }
            problems.push(format!("unknown function `{name}` ({pos})"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    // The first problem with its explanation, then the others: "…; also …; …".
    let mut message = problems.remove(0);
    if !problems.is_empty() {
        message.push_str("; also ");
        message.push_str(&problems.join("; "));
    }
    Err(ScriptError { message })
}

/// Problems listed per script, at most.
const MAX_PROBLEMS: usize = 10;

/// A later problem of the same script, without the explanations the first one gave.
fn short_parse_error(e: &rhai::ParseError) -> String {
    match &*e.0 {
        rhai::ParseErrorType::VariableUndefined(name) => {
            let name = name.strip_prefix("__").unwrap_or(name);
            format!("unknown variable `{name}` ({})", e.1)
        }
        _ => format!("syntax error: {e}{}", reserved_hint(e)),
    }
}

fn describe_parse_error(e: &rhai::ParseError, scope: &NameScope<'_>) -> String {
    if let rhai::ParseErrorType::VariableUndefined(name) = &*e.0 {
        let name = name.strip_prefix("__").unwrap_or(name);
        if scope.row_expression {
            return format!(
                "unknown variable `{name}` ({}): a row expression sees `row` and `line_number`",
                e.1
            );
        }
        let outside_loop = if !scope.in_loop && matches!(name, "loop" | "item" | "index") {
            "; `loop.item` and `loop.index` exist only inside a loop's `nodes`"
        } else {
            ""
        };
        return format!(
            "unknown variable `{name}` ({}): a script sees `input`, `out`, `node`, `nodes`, `pipeline`, node ids and its own `let` variables{outside_loop}",
            e.1
        );
    }
    format!("syntax error: {e}{}", reserved_hint(e))
}

/// For a reserved word used as a field name (`input.go`): how to read such a field.
pub(super) fn reserved_hint(e: &rhai::ParseError) -> String {
    match &*e.0 {
        rhai::ParseErrorType::Reserved(word) if rhai::is_valid_identifier(word) => {
            format!("; to read a field named `{word}`, write it in brackets: `input[\"{word}\"]`")
        }
        _ => String::new(),
    }
}

/// The variables a compiled script reads (not property names: `a.out` reads `a`).
pub(super) fn variables(ast: &AST) -> HashSet<String> {
    let mut out = HashSet::new();
    ast.walk(&mut |path: &[rhai::ASTNode]| {
        if let Some(rhai::ASTNode::Expr(rhai::Expr::Variable(x, ..))) = path.last() {
            out.insert(x.1.to_string());
        }
        true
    });
    out
}

/// The first call to a function that is neither registered nor defined in the script.
fn unknown_functions(ast: &AST, functions: &HashSet<String>) -> Vec<(String, rhai::Position)> {
    let defined: HashSet<String> = ast.iter_functions().map(|f| f.name.to_string()).collect();
    let mut found: Vec<(String, rhai::Position)> = Vec::new();
    ast.walk(&mut |path: &[rhai::ASTNode]| {
        let call = match path.last() {
            Some(rhai::ASTNode::Expr(rhai::Expr::FnCall(f, pos)))
            | Some(rhai::ASTNode::Expr(rhai::Expr::MethodCall(f, pos))) => Some((f, *pos)),
            _ => None,
        };
        if let Some((f, pos)) = call {
            let name = f.name.as_str();
            let operator =
                f.op_token.is_some() || !name.starts_with(|c: char| c.is_alphabetic() || c == '_');
            if !operator
                && !functions.contains(name)
                && !defined.contains(name)
                && !RHAI_KEYWORDS.contains(&name)
            {
                found.push((name.to_string(), pos));
                return found.len() < MAX_PROBLEMS;
            }
        }
        true
    });
    found
}

/// The names of every function the engine offers (native, packages, Tessera's own).
pub(super) fn engine_functions(engine: &Engine) -> HashSet<String> {
    engine
        .collect_fn_metadata(None, |info| Some(info.metadata.name.to_string()), true)
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_and_hyphenated_ids_become_node_lookups() {
        let nodes = |w: &str| matches!(w, "in" | "make-tiles" | "detect");
        assert_eq!(
            rewrite("in.out.n > 2 && make-tiles.out.ok && detect.out.x", &nodes),
            "nodes[\"in\"].out.n > 2 && nodes[\"make-tiles\"].out.ok && detect.out.x"
        );
        // `in` as an operator, in strings and comments, and after a dot stays as written.
        let same = "\"in.out\" in out && x.in.y // in.out\n'i' == `in.${in.out.k}`";
        assert_eq!(
            rewrite(same, &nodes),
            "\"in.out\" in out && x.in.y // in.out\n'i' == `in.${nodes[\"in\"].out.k}`"
        );
        assert_eq!(
            rewrite("loop.item.x + loop.index", &nodes),
            "__loop.item.x + __loop.index"
        );
        // A subtraction of variables stays one when no node has that id.
        assert_eq!(rewrite("a-b.c", &nodes), "a-b.c");
        assert!(matches!(rewrite("input.n > 1", &nodes), Cow::Borrowed(_)));
    }
}
