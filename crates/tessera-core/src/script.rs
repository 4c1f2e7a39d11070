//! Sandboxed scripts on Rhai: no I/O, bounded operations, call depth, sizes and
//! wall time, compiled once per source text and evaluated against a node's scope.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::{AST, Dynamic, Engine, EvalAltResult, Scope};
use serde_json::{Map, Value};

use crate::data::Data;

mod convert;
mod names;
pub mod native;

pub use convert::{BigUnsigned, JsonPart, dynamic_to_json, json_to_dynamic, to_data, to_dynamic};
pub use names::{NameScope, is_plain_identifier, rewrite};

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

/// What a script sees: `input`, `out`, `node`, `pipeline` (`task_id`, `name`, `scheduled_at`:
/// [`crate::template::pipeline_values`]), inside a loop branch `loop.item`,
/// `loop.index` (`item`/`index` for short) and `loop.parent.…` for the loops around it, and the
/// nodes it names, each as `{out, input, params, state}` (also under `nodes`).
#[derive(Debug, Clone, Default)]
pub struct ScriptContext {
    pub input: Data,
    pub out: Data,
    pub node_id: String,
    pub node_params: Map<String, Value>,
    pub node_state: String,
    pub task_id: String,
    pub pipeline_name: String,
    /// The tick a schedule created the task for (ms since the epoch): `pipeline.scheduled_at`
    /// (RFC 3339, `()` when the task was not created by a schedule).
    pub scheduled_at: Option<u64>,
    pub nodes: Vec<(String, Data)>,
    /// Item and index of the loop branch it runs in, then of the branches around it.
    pub loops: Vec<(Data, usize)>,
}

impl ScriptContext {
    fn names_node(&self, word: &str) -> bool {
        self.nodes.iter().any(|(id, _)| id == word)
    }
}

/// How a script gets the task's big values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conversion {
    /// Big lists and objects as [`JsonPart`]s (the first try).
    Lazy,
    /// Everything converted (when the script needed more than a part offers).
    Eager,
}

/// The script host: one Rhai engine with limits and a cache of compiled scripts.
pub struct Scripts {
    engine: Engine,
    /// The same sandbox with strict variables, for validation only.
    strict: Engine,
    /// Every function name `engine` offers, collected on first use.
    functions: std::sync::OnceLock<std::collections::HashSet<String>>,
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
    convert::register(&mut engine);
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

/// Compiles a script for analysis only (lowering to native code): one sandboxed engine per
/// process, nothing cached. Building an engine costs about 0.2 ms, which a 10,000-item loop
/// should not pay per task.
pub fn compile_for_analysis(source: &str) -> Option<AST> {
    static ENGINE: std::sync::LazyLock<Engine> =
        std::sync::LazyLock::new(|| sandboxed_engine(&ScriptLimits::default()));
    ENGINE.compile(source).ok()
}

/// Turns a Rhai evaluation error into a message (limits named in words).
pub fn describe_error(e: EvalAltResult) -> ScriptError {
    describe(e)
}

impl Scripts {
    pub fn new(limits: ScriptLimits) -> Scripts {
        let mut strict = sandboxed_engine(&limits);
        strict.set_strict_variables(true);
        Scripts {
            engine: sandboxed_engine(&limits),
            strict,
            functions: std::sync::OnceLock::new(),
            compiled: Mutex::new(HashMap::new()),
        }
    }

    /// Validation: syntax, then variables and functions that exist nowhere (a script sees
    /// `input`, `out`, `node`, `nodes`, `pipeline`, the nodes `scope` knows and its own `let`s).
    pub fn check(&self, source: &str, scope: &NameScope<'_>) -> Result<(), ScriptError> {
        let text = rewrite(source, scope.is_node);
        self.compile(&text)?;
        let functions = self
            .functions
            .get_or_init(|| names::engine_functions(&self.engine));
        names::check(&self.strict, functions, source, scope)
    }

    /// Compiles (once) and returns the script; the error carries line and column.
    pub fn compile(&self, source: &str) -> Result<Arc<AST>, ScriptError> {
        if let Some(ast) = self.compiled.lock().expect("script cache").get(source) {
            return Ok(ast.clone());
        }
        let ast = self.engine.compile(source).map_err(|e| ScriptError {
            message: format!("syntax error: {e}{}", names::reserved_hint(&e)),
        })?;
        let ast = Arc::new(ast);
        self.compiled
            .lock()
            .expect("script cache")
            .insert(source.to_string(), ast.clone());
        Ok(ast)
    }

    /// The variables a script reads (after the rewrite of node ids and `loop.`), for checks
    /// such as "a `ready` expression reads no `input`"; empty when it does not compile.
    pub fn variables(&self, source: &str, is_node: &dyn Fn(&str) -> bool) -> Vec<String> {
        match self.compile(&rewrite(source, is_node)) {
            Ok(ast) => names::variables(&ast).into_iter().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Evaluates an expression that must return a boolean (`ready`, `if`).
    pub fn eval_bool(&self, source: &str, ctx: &ScriptContext) -> Result<bool, ScriptError> {
        let ast = self.compile(&rewrite(source, &|w| ctx.names_node(w)))?;
        let (mut scope, lazy) = build_scope(ctx, source, Conversion::Lazy);
        let mut result = self.engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast);
        if result.is_err() && lazy {
            // Scripts are pure: running one again with everything converted is safe.
            let (mut scope, _) = build_scope(ctx, source, Conversion::Eager);
            result = self.engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast);
        }
        let result = result.map_err(|e| describe(*e))?;
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
        let ast = self.compile(&rewrite(source, &|w| ctx.names_node(w)))?;
        let (mut scope, lazy) = build_scope(ctx, source, Conversion::Lazy);
        let mut ran = self.engine.run_ast_with_scope(&mut scope, &ast);
        if ran.is_err() && lazy {
            // Scripts are pure: running one again with everything converted is safe.
            let (again, _) = build_scope(ctx, source, Conversion::Eager);
            scope = again;
            ran = self.engine.run_ast_with_scope(&mut scope, &ast);
        }
        ran.map_err(|e| describe(*e))?;
        // Only what the script can name can have changed.
        let words: std::collections::HashSet<&str> = identifiers(source).collect();
        if words.contains("input")
            && let Some(v) = scope.get_value::<Dynamic>("input")
        {
            ctx.input = from_dynamic(&v, "input")?;
        }
        if words.contains("out")
            && let Some(v) = scope.get_value::<Dynamic>("out")
        {
            ctx.out = from_dynamic(&v, "out")?;
        }
        Ok(())
    }
}

fn from_dynamic(v: &Dynamic, what: &str) -> Result<Data, ScriptError> {
    to_data(v).map_err(|e| ScriptError {
        message: format!("`{what}` set by the script is not JSON data: {e}"),
    })
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

/// The scope of a script: only the values it names are converted (a 9 MB `input` costs
/// nothing to a script that only sets `out.seen`). Also says whether a big value was passed
/// lazily, as a [`JsonPart`].
fn build_scope(ctx: &ScriptContext, source: &str, how: Conversion) -> (Scope<'static>, bool) {
    let mut lazy = false;
    let mut convert = |d: &Data| match how {
        Conversion::Eager => convert::to_dynamic_eager(d),
        Conversion::Lazy => {
            lazy |= d.is_text();
            to_dynamic(d)
        }
    };
    let words: std::collections::HashSet<&str> = identifiers(source).collect();
    let mut scope = Scope::new();
    let mut nodes = rhai::Map::new();
    for (id, view) in &ctx.nodes {
        let d = convert(view);
        let variable = names::BUILT_IN_VARIABLES.contains(&id.as_str())
            || names::LOOP_VARIABLES.contains(&id.as_str());
        if is_plain_identifier(id) && !variable {
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
    let pipeline =
        crate::template::pipeline_values(&ctx.task_id, &ctx.pipeline_name, ctx.scheduled_at);
    scope.push_dynamic("pipeline", json_to_dynamic(&pipeline));
    if let Some((item, index)) = ctx.loops.first() {
        // `loop` is a keyword: scripts write `loop.item`, rewritten to `__loop.item`.
        let mut looped: Option<rhai::Map> = None;
        for (item, index) in ctx.loops.iter().rev() {
            let mut level = rhai::Map::new();
            level.insert("item".into(), convert(item));
            level.insert("index".into(), (*index as i64).into());
            if let Some(parent) = looped.take() {
                level.insert("parent".into(), parent.into());
            }
            looped = Some(level);
        }
        scope.push("__loop", looped.unwrap_or_default());
        scope.push_dynamic("item", convert(item));
        scope.push("index", *index as i64);
    }
    // A script that does not name them still has them (as nothing), and may set them.
    let input = if words.contains("input") {
        convert(&ctx.input)
    } else {
        Dynamic::UNIT
    };
    let out = if words.contains("out") {
        convert(&ctx.out)
    } else {
        Dynamic::UNIT
    };
    scope.push_dynamic("input", input);
    scope.push_dynamic("out", out);
    (scope, lazy)
}

/// Words a script uses that could be variable names: the scheduler passes only the nodes a
/// script names, so a big pipeline does not convert every output for every script.
pub fn identifiers(source: &str) -> impl Iterator<Item = &str> {
    source
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| !w.is_empty())
        .flat_map(|w| std::iter::once(w).chain(w.split('-')))
}

/// The words of a script that may name a node: identifiers that can be written bare, and
/// others (a keyword such as `in`, an id with `-`) only where followed by `.` (`in.out`, which
/// the rewrite turns into `nodes["in"].out`). So `for x in list` does not name node `in`: a
/// script in a loop over a big input would otherwise pull the entry's output into every
/// item's scope.
pub fn node_words(source: &str) -> impl Iterator<Item = &str> {
    let bytes = source.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !word(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && word(bytes[i]) {
            i += 1;
        }
        let run: &str = &source[start..i];
        let dotted = bytes.get(i) == Some(&b'.');
        if dotted || is_plain_identifier(run) {
            out.push(run);
        }
        if run.contains('-') {
            // `a-b` may also be `a - b`: its parts may be node ids too.
            run.split('-').for_each(|part| {
                if !part.is_empty() && is_plain_identifier(part) {
                    out.push(part);
                }
            });
        }
    }
    out.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keywords_name_nodes_only_before_a_dot() {
        let words: Vec<&str> =
            node_words("for k in 0..3 { s += in.out.x + make-tiles.out + a-b; }").collect();
        assert!(words.contains(&"in"), "{words:?}");
        assert_eq!(words.iter().filter(|w| **w == "in").count(), 1, "{words:?}");
        assert!(words.contains(&"make-tiles") && words.contains(&"a") && words.contains(&"b"));
        assert!(!node_words("for x in xs { }").any(|w| w == "in"));
    }

    fn ctx(input: Value) -> ScriptContext {
        ScriptContext {
            input: input.into(),
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
            ("detect".into(), json!({"out": {"count": 2}}).into()),
            ("in".into(), json!({"out": {"x": 1}}).into()),
        ];
        assert!(
            s.eval_bool("detect.out.count == 2 && nodes[\"in\"].out.x == 1", &c)
                .unwrap()
        );
    }

    #[test]
    fn pipeline_holds_the_task_the_name_and_the_tick() {
        let s = Scripts::default();
        let mut c = ctx(json!({}));
        c.task_id = "t-1".into();
        c.pipeline_name = "nightly".into();
        s.run(
            "out = #{id: pipeline.task_id, name: pipeline.name, at: pipeline.scheduled_at, manual: pipeline.scheduled_at == ()};",
            &mut c,
        )
        .unwrap();
        assert_eq!(
            c.out,
            json!({"id": "t-1", "name": "nightly", "at": null, "manual": true})
        );
        c.scheduled_at = Some(1_774_746_000_000);
        assert!(
            s.eval_bool(
                "pipeline.scheduled_at == \"2026-03-29T01:00:00.000Z\" && pipeline.scheduled_at.sub_string(0, 10) == \"2026-03-29\"",
                &c
            )
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
        let out = c.out.value();
        assert_eq!(out["id"], big["id"]);
        assert_eq!(out["deep"], big["deep"]);
        assert_eq!(out["n"], 2);
        assert_eq!(out["text"], "18446744073709551615");
        assert!(
            s.eval_bool("input.id == input.id", &ctx(big.clone()))
                .unwrap()
        );
        let e = s.run("out = input.id + 1;", &mut ctx(big)).unwrap_err();
        assert!(e.message.contains("u64"), "{e}");
    }

    #[test]
    fn big_values_reach_scripts_lazily_and_fall_back_to_full_conversion() {
        let s = Scripts::default();
        let rows: Vec<Value> = (0..20_000).map(|i| json!({"id": i, "v": i % 7})).collect();
        let big = json!({"rows": rows, "tag": "t"});
        let mut c = ctx(Value::Null);
        c.out = Data::from_value(big.clone());
        assert!(c.out.is_text());
        // Touching nothing big: the rows stay text, and come back unchanged.
        s.run(
            "out.seen = true; out.n = out.rows.len(); out.first = out.rows[0].id;",
            &mut c,
        )
        .unwrap();
        let v = c.out.value();
        assert_eq!(v["rows"], big["rows"]);
        assert_eq!(
            (v["seen"].clone(), v["n"].clone(), v["first"].clone()),
            (json!(true), json!(20_000), json!(0))
        );
        // Iterating reads one row at a time.
        let mut c2 = ctx(Value::Null);
        c2.out = Data::from_value(big.clone());
        s.run(
            "let t = 0; for r in out.rows { t += r.v; } out = #{total: t};",
            &mut c2,
        )
        .unwrap();
        let total: i64 = (0..20_000).map(|i| i % 7).sum();
        assert_eq!(c2.out, json!({"total": total}));
        // What a part cannot do (sorting it, changing an item) runs on a full conversion.
        let mut c3 = ctx(Value::Null);
        c3.out = Data::from_value(big.clone());
        s.run(
            "out.rows[0].v = 100; out.rows.sort(|a, b| b.v - a.v);",
            &mut c3,
        )
        .unwrap();
        assert_eq!(c3.out.value()["rows"][0]["v"], 100);
        assert!(
            s.eval_bool("out.rows.len() == 20000 && \"tag\" in out", &c)
                .unwrap()
        );
    }
}
