//! String templates in command lines, environments, URLs and headers: `{{path}}` from the node
//! scope (input fields, `input.x`, `params.x`, `tessera.task_id|node|attempt` for commands,
//! `pipeline.task_id|name|scheduled_at`, and data paths such as `{{in.out.dir}}` or
//! `{{loop.item}}` resolved by the scheduler) and `${env:NAME}` secret references. In a `shell: true` script, a placeholder never becomes
//! shell code: its value is passed as a positional parameter and the script refers to it.

use serde_json::Value;
use tessera_core::Data;
use tessera_core::template::{Piece, pieces};

/// What a node's templates can read: its input, its `params` (with `tessera.*` added by the
/// command executor) and the data paths the scheduler resolved at dispatch, by placeholder text.
pub(crate) struct Scope<'a> {
    pub input: &'a Data,
    pub params: &'a serde_json::Map<String, Value>,
    pub paths: &'a [(String, Data)],
}

/// A job's scope, owned: what [`Scope`] borrows (see `JobContext::template_values`).
pub(crate) struct TemplateValues {
    pub input: Data,
    pub params: serde_json::Map<String, Value>,
    pub paths: Vec<(String, Data)>,
}

impl TemplateValues {
    pub fn scope(&self) -> Scope<'_> {
        Scope {
            input: &self.input,
            params: &self.params,
            paths: &self.paths,
        }
    }
}

/// An `object_path` for fields where an object has no meaning: refuses with `why`.
pub(crate) fn no_objects(why: &'static str) -> impl FnMut(&Value) -> Result<String, String> {
    move |_| Err(why.to_string())
}

/// The text a placeholder stands for.
fn value_of(
    piece: &Piece<'_>,
    scope: &Scope<'_>,
    object_path: &mut dyn FnMut(&Value) -> Result<String, String>,
) -> Result<String, String> {
    match piece {
        Piece::Text(t) => Ok(t.to_string()),
        Piece::Env(name) => std::env::var(name).map_err(|_| {
            format!("environment variable `{name}` (referenced as ${{env:{name}}}) is not set")
        }),
        Piece::Placeholder(path) => {
            let value = lookup(path, scope).ok_or_else(|| match *path {
                "pipeline.scheduled_at" => format!(
                    "placeholder `{{{{{path}}}}}` has no value: the task was started by hand, not created by a schedule's tick"
                ),
                _ => format!("placeholder `{{{{{path}}}}}` has no value in the node's scope"),
            })?;
            scalar_text(&value, object_path)
        }
    }
}

/// Renders `template`; `object_path` turns an object reference into a local file path.
pub(crate) fn render(
    template: &str,
    scope: &Scope<'_>,
    object_path: &mut dyn FnMut(&Value) -> Result<String, String>,
) -> Result<String, String> {
    render_as(template, scope, object_path, Secrets::Values)
}

/// [`render`] for messages and logs: `${env:NAME}` secrets stay as written.
pub(crate) fn render_shown(
    template: &str,
    scope: &Scope<'_>,
    object_path: &mut dyn FnMut(&Value) -> Result<String, String>,
) -> Result<String, String> {
    render_as(template, scope, object_path, Secrets::AsWritten)
}

/// What `${env:NAME}` becomes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Secrets {
    Values,
    AsWritten,
}

fn render_as(
    template: &str,
    scope: &Scope<'_>,
    object_path: &mut dyn FnMut(&Value) -> Result<String, String>,
    secrets: Secrets,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    for piece in pieces(template)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Env(name) if secrets == Secrets::AsWritten => {
                out.push_str(&format!("${{env:{name}}}"))
            }
            other => out.push_str(&value_of(&other, scope, object_path)?),
        }
    }
    Ok(out)
}

/// A `shell: true` command ready for `/bin/sh -c SCRIPT sh ARGS...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShellCommand {
    pub script: String,
    /// The placeholders' values, `$1`, `$2`, … of the script.
    pub args: Vec<String>,
}

impl ShellCommand {
    /// The argv after the program (`/bin/sh`).
    pub fn argv(self) -> Vec<String> {
        let mut argv = Vec::with_capacity(self.args.len() + 3);
        argv.push("-c".to_string());
        argv.push(self.script);
        argv.push("sh".to_string());
        argv.extend(self.args);
        argv
    }
}

/// Where a placeholder sits in a shell script, which decides how it refers to its parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// Outside quotes (also inside `$( … )`, where quoting starts afresh).
    Bare {
        parens: u32,
    },
    Single,
    Double,
    /// Inside `$(( … ))`: only integers may go there (bash evaluates subscripts in
    /// arithmetic, which would run code).
    Arith {
        parens: u32,
    },
}

/// Renders a `shell: true` script. Each placeholder becomes a reference to a positional
/// parameter holding its value, written for the quoting it sits in (`"${1}"` bare, `${1}` in
/// double quotes or arithmetic, `'"${1}"'` in single quotes). The shell expands parameters
/// after parsing, so no value — `x; rm -rf ~`, `$(id)`, quotes — is ever read as code; if the
/// quoting is misjudged (an unusual construct), the result is wrong text, never an injection.
pub(crate) fn render_shell(
    template: &str,
    scope: &Scope<'_>,
    object_path: &mut dyn FnMut(&Value) -> Result<String, String>,
) -> Result<ShellCommand, String> {
    let mut script = String::with_capacity(template.len());
    let mut args: Vec<String> = Vec::new();
    let mut stack = vec![Context::Bare { parens: 0 }];
    for piece in pieces(template)? {
        match piece {
            Piece::Text(t) => {
                scan_quoting(t, &mut stack);
                script.push_str(t);
            }
            other => {
                let value = value_of(&other, scope, object_path)?;
                let n = args.len() + 1;
                match stack.last().copied().unwrap_or(Context::Bare { parens: 0 }) {
                    Context::Bare { .. } => script.push_str(&format!("\"${{{n}}}\"")),
                    Context::Double => script.push_str(&format!("${{{n}}}")),
                    Context::Single => script.push_str(&format!("'\"${{{n}}}\"'")),
                    Context::Arith { .. } => {
                        let digits = value.strip_prefix('-').unwrap_or(&value);
                        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                            return Err(format!(
                                "placeholder `{}` is inside `$(( ))` and must be an integer, got `{value}`",
                                placeholder_text(&other)
                            ));
                        }
                        script.push_str(&format!("${{{n}}}"));
                    }
                }
                args.push(value);
            }
        }
    }
    Ok(ShellCommand { script, args })
}

fn placeholder_text(piece: &Piece<'_>) -> String {
    match piece {
        Piece::Placeholder(p) => format!("{{{{{p}}}}}"),
        Piece::Env(n) => format!("${{env:{n}}}"),
        Piece::Text(t) => t.to_string(),
    }
}

/// Follows POSIX sh quoting through `text`: backslash escapes outside single quotes, nothing
/// special inside single quotes, `$( … )` and `$(( … ))` nested anywhere but single quotes.
fn scan_quoting(text: &str, stack: &mut Vec<Context>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let depth = stack.len();
        let top = stack.last_mut().expect("the bare context is never popped");
        match (*top, c) {
            (Context::Single, b'\'') => {
                stack.pop();
            }
            (Context::Single, _) => {}
            (Context::Bare { .. } | Context::Double | Context::Arith { .. }, b'\\') => i += 1,
            (Context::Bare { .. } | Context::Double | Context::Arith { .. }, b'$')
                if bytes.get(i + 1) == Some(&b'(') =>
            {
                if bytes.get(i + 2) == Some(&b'(') {
                    stack.push(Context::Arith { parens: 0 });
                    i += 2;
                } else {
                    stack.push(Context::Bare { parens: 0 });
                    i += 1;
                }
            }
            (Context::Bare { .. }, b'\'') => stack.push(Context::Single),
            (Context::Bare { .. }, b'"') => stack.push(Context::Double),
            (Context::Double, b'"') => {
                stack.pop();
            }
            (Context::Bare { parens } | Context::Arith { parens }, b'(') => {
                set_parens(top, parens + 1);
            }
            (Context::Bare { parens: 0 }, b')') if depth > 1 => {
                stack.pop();
            }
            (Context::Arith { parens: 0 }, b')') if bytes.get(i + 1) == Some(&b')') => {
                stack.pop();
                i += 1;
            }
            (Context::Bare { parens } | Context::Arith { parens }, b')') if parens > 0 => {
                set_parens(top, parens - 1);
            }
            _ => {}
        }
        i += 1;
    }
}

fn set_parens(context: &mut Context, n: u32) {
    if let Context::Bare { parens } | Context::Arith { parens } = context {
        *parens = n;
    }
}

/// The value a placeholder names: a resolved data path, `input…`, `params.…`, `tessera.…`, or
/// an input field.
fn lookup(path: &str, scope: &Scope<'_>) -> Option<Value> {
    if let Some((_, value)) = scope.paths.iter().find(|(raw, _)| raw == path) {
        return (!value.is_null()).then(|| value.value().into_owned());
    }
    let (input, params) = (scope.input, scope.params);
    let mut parts = path.split('.');
    let first = parts.next()?;
    let rest: Vec<String> = parts.map(str::to_string).collect();
    let found = match first {
        "input" => input.walk(&rest)?.into_value(),
        "params" | "tessera" | "pipeline" => {
            // Task context is put in `params.tessera` and `params.pipeline` by the executors
            // (a node named `pipeline` was resolved above, as a data path).
            let (key, rest) = match first {
                "params" => (rest.first()?.as_str(), &rest[1..]),
                other => (other, &rest[..]),
            };
            let mut cur = params.get(key)?;
            for seg in rest {
                cur = match cur {
                    Value::Object(m) => m.get(seg)?,
                    Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                    _ => return None,
                };
            }
            cur.clone()
        }
        key => {
            let mut segments = vec![key.to_string()];
            segments.extend(rest);
            input.walk(&segments)?.into_value()
        }
    };
    (!found.is_null()).then_some(found)
}

fn scalar_text(
    v: &Value,
    object_path: &mut dyn FnMut(&Value) -> Result<String, String>,
) -> Result<String, String> {
    Ok(match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Object(m) if m.contains_key("$object") => object_path(v)?,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope<'a>(input: &'a Data, params: &'a serde_json::Map<String, Value>) -> Scope<'a> {
        Scope {
            input,
            params,
            paths: &[],
        }
    }

    fn no_objects(_: &Value) -> Result<String, String> {
        Ok("/objects/x".into())
    }

    #[test]
    fn renders_paths_params_objects_and_env() {
        let input: Data =
            json!({"name": "a b", "n": 3, "img": {"$object": "x"}, "list": [1, 2]}).into();
        let mut params = serde_json::Map::new();
        params.insert("mode".into(), json!("fast"));
        params.insert("tessera".into(), json!({"task_id": "t-1"}));
        let r = render(
            "{{name}}|{{ input.n }}|{{params.mode}}|{{img}}|{{list.1}}|{{tessera.task_id}}|${env:PATH}",
            &scope(&input, &params),
            &mut no_objects,
        )
        .unwrap();
        assert!(r.starts_with("a b|3|fast|/objects/x|2|t-1|"), "{r}");
        assert!(r.len() > "a b|3|fast|/objects/x|2|t-1|".len());
    }

    #[test]
    fn missing_values_are_clear_errors() {
        let input: Data = json!({}).into();
        let params = serde_json::Map::new();
        let e = render("x {{nope}}", &scope(&input, &params), &mut no_objects).unwrap_err();
        assert_eq!(e, "placeholder `{{nope}}` has no value in the node's scope");
        let e = render(
            "${env:TESSERA_SURELY_UNSET_VAR}",
            &scope(&input, &params),
            &mut no_objects,
        )
        .unwrap_err();
        assert!(e.contains("TESSERA_SURELY_UNSET_VAR"));
        assert!(render("{{oops", &scope(&input, &params), &mut no_objects).is_err());
    }

    #[test]
    fn shell_placeholders_become_parameters_in_every_quoting() {
        let input: Data = json!({"name": "x; id", "q": "it's \"$(id)\""}).into();
        let params = serde_json::Map::new();
        let r = render_shell(
            "echo {{name}} \"in {{q}}\" 'and {{name}}' \\'{{q}}",
            &scope(&input, &params),
            &mut no_objects,
        )
        .unwrap();
        assert_eq!(
            r.script,
            "echo \"${1}\" \"in ${2}\" 'and '\"${3}\"'' \\'\"${4}\""
        );
        assert_eq!(
            r.args,
            ["x; id", "it's \"$(id)\"", "x; id", "it's \"$(id)\""]
        );
        assert_eq!(r.clone().argv()[..3], ["-c", r.script.as_str(), "sh"]);
    }

    #[test]
    fn shell_quoting_follows_substitutions_and_arithmetic() {
        let input: Data = json!({"n": 7, "s": "a b", "evil": "a[$(id)]"}).into();
        let params = serde_json::Map::new();
        let r = render_shell(
            "echo $(({{n}} * ({{n}} + 1))) \"$(echo \"{{s}}\" {{s}})\" {{s}}",
            &scope(&input, &params),
            &mut no_objects,
        )
        .unwrap();
        assert_eq!(
            r.script,
            "echo $((${1} * (${2} + 1))) \"$(echo \"${3}\" \"${4}\")\" \"${5}\""
        );
        let e = render_shell(
            "echo $(({{evil}} + 1))",
            &scope(&input, &params),
            &mut no_objects,
        )
        .unwrap_err();
        assert!(e.contains("must be an integer"), "{e}");
    }
}
