//! Sandboxed scripts (SPEC §4) on Rhai: no I/O, bounded operations, call depth, sizes and
//! wall time, compiled once per source text and evaluated against a node's scope.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::{AST, Dynamic, Engine, EvalAltResult, Scope};
use serde_json::{Map, Value};

/// Limits applied to every script evaluation.
#[derive(Debug, Clone, Copy)]
pub struct ScriptLimits {
    pub max_operations: u64,
    pub max_call_depth: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub max_wall_time: Duration,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        ScriptLimits {
            max_operations: 20_000_000,
            max_call_depth: 48,
            max_string_size: 16 << 20,
            max_array_size: 1 << 20,
            max_map_size: 1 << 17,
            max_wall_time: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScriptError {
    pub message: String,
}

thread_local! {
    /// When the script running on this thread started (scripts run to completion on one thread).
    static SCRIPT_STARTED: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// What a script sees: `input`, `out`, `node`, `pipeline`, `item`/`index` inside a loop branch,
/// and the nodes it names, each as `{out, input, params, state}` (also under `nodes`).
#[derive(Debug, Clone, Default)]
pub struct ScriptContext {
    pub input: Value,
    pub out: Value,
    pub node_id: String,
    pub node_params: Map<String, Value>,
    pub node_state: String,
    pub task_id: String,
    pub pipeline_name: String,
    pub nodes: Vec<(String, Value)>,
    pub loop_item: Option<(Value, usize)>,
}

/// The script host: one Rhai engine with limits and a cache of compiled scripts.
pub struct Scripts {
    engine: Engine,
    compiled: Mutex<HashMap<String, Arc<AST>>>,
}

impl std::fmt::Debug for Scripts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripts").finish_non_exhaustive()
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts::new(ScriptLimits::default())
    }
}

/// A Rhai engine with Tessera's sandbox: no modules, no `eval`, no output, bounded
/// operations, call depth, sizes and wall time. Every script host builds its engine here.
pub fn sandboxed_engine(limits: &ScriptLimits) -> Engine {
    let mut engine = Engine::new();
    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_depth);
    engine.set_max_expr_depths(64, 32);
    engine.set_max_string_size(limits.max_string_size);
    engine.set_max_array_size(limits.max_array_size);
    engine.set_max_map_size(limits.max_map_size);
    engine.set_max_modules(0);
    // `eval` would let a script compile code outside the cache and its checks.
    engine.disable_symbol("eval");
    engine.on_print(|_| {});
    engine
        .register_type_with_name::<BigUnsigned>("u64")
        .register_fn("to_string", |u: &mut BigUnsigned| u.0.to_string())
        .register_fn("to_debug", |u: &mut BigUnsigned| u.0.to_string())
        .register_fn("to_float", |u: &mut BigUnsigned| u.0 as f64)
        .register_fn("==", |a: BigUnsigned, b: BigUnsigned| a == b)
        .register_fn("!=", |a: BigUnsigned, b: BigUnsigned| a != b);
    engine.on_debug(|_, _, _| {});
    let wall = limits.max_wall_time;
    engine.on_progress(move |ops| {
        // Checked every 4096 operations: cheap, and bounds a slow-but-legal script too.
        if ops == 1 {
            SCRIPT_STARTED.set(Some(Instant::now()));
        } else if ops % 4096 == 0
            && let Some(t) = SCRIPT_STARTED.get()
            && t.elapsed() > wall
        {
            return Some(Dynamic::from("wall time limit reached"));
        }
        None
    });
    engine
}

/// Turns a Rhai evaluation error into a message (limits named in words).
pub fn describe_error(e: EvalAltResult) -> ScriptError {
    describe(e)
}

impl Scripts {
    pub fn new(limits: ScriptLimits) -> Scripts {
        Scripts {
            engine: sandboxed_engine(&limits),
            compiled: Mutex::new(HashMap::new()),
        }
    }

    /// Compiles (once) and returns the script; the error carries line and column.
    pub fn compile(&self, source: &str) -> Result<Arc<AST>, ScriptError> {
        if let Some(ast) = self.compiled.lock().expect("script cache").get(source) {
            return Ok(ast.clone());
        }
        let ast = self.engine.compile(source).map_err(|e| ScriptError {
            message: format!("syntax error: {e}"),
        })?;
        let ast = Arc::new(ast);
        self.compiled
            .lock()
            .expect("script cache")
            .insert(source.to_string(), ast.clone());
        Ok(ast)
    }

    /// Evaluates an expression that must return a boolean (`ready`, `if`).
    pub fn eval_bool(&self, source: &str, ctx: &ScriptContext) -> Result<bool, ScriptError> {
        let ast = self.compile(source)?;
        let mut scope = build_scope(ctx)?;
        let result: Dynamic = self
            .engine
            .eval_ast_with_scope(&mut scope, &ast)
            .map_err(|e| describe(*e))?;
        if let Some(b) = result.clone().try_cast::<bool>() {
            return Ok(b);
        }
        Err(ScriptError {
            message: format!(
                "expected a boolean result, got {} `{}`",
                result.type_name(),
                result
            ),
        })
    }

    /// Runs a statement script (`before`, `after`, `exec`); it may assign `input` and `out`,
    /// which are written back into `ctx`.
    pub fn run(&self, source: &str, ctx: &mut ScriptContext) -> Result<(), ScriptError> {
        let ast = self.compile(source)?;
        let mut scope = build_scope(ctx)?;
        self.engine
            .run_ast_with_scope(&mut scope, &ast)
            .map_err(|e| describe(*e))?;
        if let Some(v) = scope.get_value::<Dynamic>("input") {
            ctx.input = from_dynamic(&v, "input")?;
        }
        if let Some(v) = scope.get_value::<Dynamic>("out") {
            ctx.out = from_dynamic(&v, "out")?;
        }
        Ok(())
    }
}

fn describe(e: EvalAltResult) -> ScriptError {
    let message = match e {
        EvalAltResult::ErrorTooManyOperations(pos) => {
            format!("script stopped: too many operations (runaway loop?) at {pos}")
        }
        EvalAltResult::ErrorTerminated(_, pos) => {
            format!("script stopped: wall time limit reached at {pos}")
        }
        EvalAltResult::ErrorStackOverflow(pos) => {
            format!("script stopped: call depth limit reached at {pos}")
        }
        other => other.to_string(),
    };
    ScriptError { message }
}

/// An integer above `i64::MAX` (JSON allows it; Rhai's integers are `i64`): carried through a
/// script unchanged, so that a script never turns a field it does not touch into a float.
/// Scripts see it as type `u64`, printable and comparable, not computable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BigUnsigned(pub u64);

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

fn from_dynamic(v: &Dynamic, what: &str) -> Result<Value, ScriptError> {
    dynamic_to_json(v).map_err(|e| ScriptError {
        message: format!("`{what}` set by the script is not JSON data: {e}"),
    })
}

/// Rhai → JSON: the inverse of [`json_to_dynamic`]; characters become strings; anything else
/// (functions, non-finite numbers, timestamps) is an error naming its type.
pub fn dynamic_to_json(v: &Dynamic) -> Result<Value, String> {
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
            .ok_or_else(|| format!("{f} is not a JSON number"));
    }
    if let Some(BigUnsigned(u)) = v.clone().try_cast::<BigUnsigned>() {
        return Ok(Value::from(u));
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
            .ok_or("an array that cannot be read")?;
        return items
            .iter()
            .map(dynamic_to_json)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if v.is_map() {
        let map = v
            .read_lock::<rhai::Map>()
            .ok_or("a map that cannot be read")?;
        let mut out = Map::with_capacity(map.len());
        for (k, x) in map.iter() {
            out.insert(k.to_string(), dynamic_to_json(x)?);
        }
        return Ok(Value::Object(out));
    }
    Err(format!("a value of type `{}`", v.type_name()))
}

fn build_scope(ctx: &ScriptContext) -> Result<Scope<'static>, ScriptError> {
    let mut scope = Scope::new();
    let mut nodes = rhai::Map::new();
    for (id, view) in &ctx.nodes {
        let d = json_to_dynamic(view);
        if is_plain_identifier(id) {
            scope.push_dynamic(id.clone(), d.clone());
        }
        nodes.insert(id.as_str().into(), d);
    }
    scope.push("nodes", nodes);
    let mut node = rhai::Map::new();
    node.insert("id".into(), ctx.node_id.clone().into());
    node.insert(
        "params".into(),
        Dynamic::from_map(
            ctx.node_params
                .iter()
                .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
                .collect(),
        ),
    );
    node.insert("state".into(), ctx.node_state.clone().into());
    scope.push("node", node);
    let mut pipeline = rhai::Map::new();
    pipeline.insert("task_id".into(), ctx.task_id.clone().into());
    pipeline.insert("name".into(), ctx.pipeline_name.clone().into());
    scope.push("pipeline", pipeline);
    if let Some((item, index)) = &ctx.loop_item {
        scope.push_dynamic("item", json_to_dynamic(item));
        scope.push("index", *index as i64);
    }
    scope.push_dynamic("input", json_to_dynamic(&ctx.input));
    scope.push_dynamic("out", json_to_dynamic(&ctx.out));
    Ok(scope)
}

/// Words a script uses that could be variable names: the scheduler passes only the nodes a
/// script names, so a big pipeline does not convert every output for every script.
pub fn identifiers(source: &str) -> impl Iterator<Item = &str> {
    source
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| !w.is_empty())
        .flat_map(|w| std::iter::once(w).chain(w.split('-')))
}

fn is_plain_identifier(id: &str) -> bool {
    const RESERVED: &[&str] = &[
        "in", "if", "else", "loop", "for", "while", "do", "let", "const", "fn", "return", "true",
        "false", "switch", "break", "continue", "throw", "try", "catch", "import", "export", "as",
        "private", "this", "global", "is", "nodes", "node", "pipeline", "input", "out", "item",
        "index", "until", "Fn", "call", "curry", "type_of", "print", "debug", "eval",
    ];
    !id.contains('-') && !RESERVED.contains(&id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(input: Value) -> ScriptContext {
        ScriptContext {
            input,
            node_id: "n".into(),
            ..Default::default()
        }
    }

    #[test]
    fn evaluates_booleans_and_rewrites_values() {
        let s = Scripts::default();
        assert!(s.eval_bool("input.n > 2", &ctx(json!({"n": 3}))).unwrap());
        let mut c = ctx(json!({"name": "Zoé"}));
        s.run("out = #{len: input.name.len()}; input.seen = true;", &mut c)
            .unwrap();
        assert_eq!(c.out, json!({"len": 3}));
        assert_eq!(c.input, json!({"name": "Zoé", "seen": true}));
    }

    #[test]
    fn node_views_are_visible_by_id_and_in_nodes() {
        let s = Scripts::default();
        let mut c = ctx(json!({}));
        c.nodes = vec![
            ("detect".into(), json!({"out": {"count": 2}})),
            ("in".into(), json!({"out": {"x": 1}})),
        ];
        assert!(
            s.eval_bool("detect.out.count == 2 && nodes[\"in\"].out.x == 1", &c)
                .unwrap()
        );
    }

    #[test]
    fn non_boolean_condition_is_an_error() {
        let s = Scripts::default();
        let e = s.eval_bool("42", &ctx(json!({}))).unwrap_err();
        assert!(e.message.contains("expected a boolean"), "{e}");
    }

    #[test]
    fn runaway_script_is_stopped() {
        let s = Scripts::default();
        let started = Instant::now();
        let e = s
            .run("let x = 0; loop { x += 1; }", &mut ctx(json!({})))
            .unwrap_err();
        assert!(e.message.contains("script stopped"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn deep_recursion_is_stopped() {
        let s = Scripts::default();
        let e = s
            .run("fn f(x) { f(x + 1) } f(0);", &mut ctx(json!({})))
            .unwrap_err();
        assert!(
            e.message.contains("call depth") || e.message.contains("Stack"),
            "{e}"
        );
    }

    #[test]
    fn huge_strings_are_refused() {
        let s = Scripts::default();
        let e = s
            .run("let s = \"x\"; loop { s += s; }", &mut ctx(json!({})))
            .unwrap_err();
        assert!(
            e.message.to_lowercase().contains("length")
                || e.message.contains("size")
                || e.message.contains("script stopped"),
            "{e}"
        );
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let s = Scripts::default();
        let e = s.compile("let = ;").unwrap_err();
        assert!(e.message.contains("line 1"), "{e}");
    }

    #[test]
    fn identifiers_split_words() {
        let ids: Vec<&str> = identifiers("detect.out.n > 2 && nodes[\"a-b\"]").collect();
        assert!(ids.contains(&"detect"));
        assert!(ids.contains(&"a-b"));
    }

    #[test]
    fn integers_beyond_i64_stay_exact_through_a_script() {
        let s = Scripts::default();
        let big = json!({"id": 18446744073709551615u64, "n": 1, "f": 0.5, "deep": [{"x": 9223372036854775808u64}]});
        let mut c = ctx(big.clone());
        s.run("out = input; out.n += 1; out.text = `${input.id}`;", &mut c)
            .unwrap();
        assert_eq!(c.out["id"], big["id"]);
        assert_eq!(c.out["deep"], big["deep"]);
        assert_eq!(c.out["n"], 2);
        assert_eq!(c.out["text"], "18446744073709551615");
        assert!(
            s.eval_bool("input.id == input.id", &ctx(big.clone()))
                .unwrap()
        );
        let e = s.run("out = input.id + 1;", &mut ctx(big)).unwrap_err();
        assert!(e.message.contains("u64"), "{e}");
    }
}
