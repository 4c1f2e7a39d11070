//! The fast form of an item program: each node's input and output known as an expression of
//! the item and its index (`Sym`), built straight into the chunk's JSON text. Scripts of one
//! assignment (`out = item.len()`) are evaluated by the shared native evaluator; whenever it
//! is not sure of Rhai's answer for an item, that item takes the general path. Compiled only
//! for chains of `node`s (no branch, one predecessor each), where the result is the same text
//! the general path gives.

use std::borrow::Cow;
use std::fmt::Write;
use std::sync::Arc;

use serde_json::Value;

use super::{ItemProgram, LoopWork};
use crate::data::Data;
use crate::datapath::{DataPath, PathRoot, Section};
use crate::model::{Directive, InputSpec, NodeKind};
use crate::script::native::{self, Inputs, Native, Root, Val, write_json_string};

/// A value as a function of the item.
#[derive(Debug, Clone)]
enum Sym {
    Item,
    Index,
    /// A value known when compiling (a literal, something outside the loop, `null`).
    Const(Data),
    /// An object of these members, in order.
    Obj(Vec<(String, Sym)>),
    /// Walks into a value known only per item.
    Walk(Box<Sym>, Vec<String>),
    /// A script's value: the expression, and what each of its inputs is.
    Script(Arc<Native>, Vec<Sym>),
}

#[derive(Debug)]
pub(super) struct Fast {
    collect: Sym,
}

/// A template value from outside the loop (`null` when unknown): compile-time only.
enum Outer {
    Known(Data),
    /// Depends on the loop's work (an outer node's view): not compiled.
    Unknown,
}

impl Fast {
    pub(super) fn compile(program: &ItemProgram) -> Option<Fast> {
        let t = &program.t;
        let n = t.nodes.len();
        let mut input: Vec<Option<Sym>> = vec![None; n];
        let mut out: Vec<Option<Sym>> = vec![None; n];
        for &k in &program.order {
            let node = &t.nodes[k];
            if !matches!(node.kind, NodeKind::Node) {
                return None;
            }
            let preds = &t.topo.preds[k];
            let mut sym = match (&node.input, k) {
                (Some(spec), _) => spec_sym(spec, t, &input, &out)?,
                (None, 0) => Sym::Obj(vec![
                    ("item".into(), Sym::Item),
                    ("index".into(), Sym::Index),
                ]),
                (None, _) => match preds.as_slice() {
                    // A single predecessor's object output is passed on as it is.
                    [p] => match out[*p].clone()? {
                        s @ Sym::Obj(_) => s,
                        Sym::Const(d) if d.is_object() => Sym::Const(d),
                        _ => return None,
                    },
                    _ => return None,
                },
            };
            if let Some(src) = &node.before {
                sym = script_sym(src, "input", &sym, &Sym::Const(Data::null()))?;
            }
            input[k] = Some(sym.clone());
            let mut o = sym.clone();
            if let Some(src) = &node.after {
                o = script_sym(src, "out", &sym, &o)?;
            }
            out[k] = Some(o);
        }
        let collect = match &program.spec.collect {
            Some(path) => path_sym(path, t, &input, &out)?,
            None => out[n - 1].clone()?,
        };
        Some(Fast { collect })
    }

    /// When every item's value is the item itself: the chunk's text is the list's.
    pub(super) fn whole_range<'w>(
        &self,
        work: &'w LoopWork,
        range: std::ops::Range<usize>,
    ) -> Option<&'w str> {
        matches!(self.collect, Sym::Item).then(|| work.items.range_text(range))
    }

    /// Appends item `i`'s value; `false` (with `out` in any state) when the general path
    /// must give it.
    pub(super) fn write_item(&self, work: &LoopWork, i: usize, out: &mut String) -> bool {
        write_sym(&self.collect, work, i, out)
    }
}

fn write_sym(sym: &Sym, work: &LoopWork, i: usize, out: &mut String) -> bool {
    match sym {
        Sym::Item => out.push_str(work.items.item_text(i)),
        Sym::Index => {
            let _ = write!(out, "{i}");
        }
        Sym::Const(d) => out.push_str(&d.json()),
        Sym::Obj(members) => {
            out.push('{');
            for (n, (key, s)) in members.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_json_string(key, out);
                out.push(':');
                if !write_sym(s, work, i, out) {
                    return false;
                }
            }
            out.push('}');
        }
        Sym::Walk(base, segments) => match value_of(base, work, i) {
            Some(d) => out.push_str(&d.walk(segments).unwrap_or_default().json()),
            None => return false,
        },
        Sym::Script(expr, inputs) => {
            let cx = ItemInputs {
                inputs,
                work,
                index: i,
            };
            match expr.eval(&cx) {
                Some(v) => return v.write_json(out),
                None => return false,
            }
        }
    }
    true
}

/// The value of `sym` for item `i` as data (slow: for walks into item-dependent values).
fn value_of(sym: &Sym, work: &LoopWork, i: usize) -> Option<Data> {
    let mut text = String::new();
    write_sym(sym, work, i, &mut text).then(|| Data::from_json(&text).ok())?
}

/// The native inputs of a script for one item.
struct ItemInputs<'s> {
    inputs: &'s [Sym],
    work: &'s LoopWork,
    index: usize,
}

impl<'a> Inputs<'a> for ItemInputs<'a> {
    fn input(&self, n: usize) -> Option<Val<'a>> {
        scalar(self.inputs.get(n)?, self.work, self.index)
    }

    fn max_string(&self) -> usize {
        crate::script::ScriptLimits::default().max_string_size
    }
}

/// A scalar as Rhai receives it from JSON; `None` for lists and objects (Rhai's to handle).
fn scalar<'a>(sym: &'a Sym, work: &'a LoopWork, i: usize) -> Option<Val<'a>> {
    match sym {
        Sym::Item => scalar_text(work.items.item_text(i)),
        Sym::Index => Some(Val::Int(i64::try_from(i).ok()?)),
        Sym::Const(d) => match d.as_tree()? {
            Value::String(s) => Some(Val::Str(Cow::Borrowed(s))),
            v => scalar_value(v),
        },
        Sym::Obj(_) => None,
        Sym::Walk(..) => {
            let d = value_of(sym, work, i)?;
            match d.as_tree()? {
                Value::String(s) => Some(Val::Str(Cow::Owned(s.clone()))),
                v => scalar_value(v),
            }
        }
        Sym::Script(expr, inputs) => {
            let cx = ItemInputs {
                inputs,
                work,
                index: i,
            };
            Some(owned(expr.eval(&cx)?))
        }
    }
}

fn owned(v: Val<'_>) -> Val<'static> {
    match v {
        Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
        Val::Unit => Val::Unit,
        Val::Bool(b) => Val::Bool(b),
        Val::Int(i) => Val::Int(i),
        Val::Float(f) => Val::Float(f),
        Val::Char(c) => Val::Char(c),
    }
}

fn scalar_value(v: &Value) -> Option<Val<'static>> {
    match v {
        Value::Null => Some(Val::Unit),
        Value::Bool(b) => Some(Val::Bool(*b)),
        // As `json_to_dynamic`: INT when it fits, FLOAT for floats; a big u64 is Rhai's.
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(Val::Int(i)),
            None if n.is_f64() => n.as_f64().map(Val::Float),
            None => None,
        },
        _ => None,
    }
}

/// A scalar read from compact JSON text without building a value.
fn scalar_text(text: &str) -> Option<Val<'_>> {
    let first = *text.as_bytes().first()?;
    match first {
        b'"' => {
            let inner = &text[1..text.len() - 1];
            if inner.contains('\\') {
                serde_json::from_str::<String>(text)
                    .ok()
                    .map(|s| Val::Str(Cow::Owned(s)))
            } else {
                Some(Val::Str(Cow::Borrowed(inner)))
            }
        }
        b't' => Some(Val::Bool(true)),
        b'f' => Some(Val::Bool(false)),
        b'n' => Some(Val::Unit),
        b'-' | b'0'..=b'9' => {
            if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                scalar_value(&serde_json::from_str::<Value>(text).ok()?)
            } else {
                text.parse::<i64>().ok().map(Val::Int)
            }
        }
        _ => None,
    }
}

/// The value of `script` assigning `target`, when it lowers natively. `input` and `out` are
/// what the script sees under those names.
fn script_sym(src: &str, target: &str, input: &Sym, out: &Sym) -> Option<Sym> {
    // Scripts naming a node, `nodes`, `node`, `pipeline` or `loop` need the general path.
    let ast = crate::script::compile_for_analysis(src)?;
    let roots = |name: &str| match name {
        "item" | "index" | "input" | "out" => Some(Root::Value),
        _ => None,
    };
    let expr = native::lower_assignment(&ast, target, &roots)?;
    let bound = |name: &str| -> Sym {
        match name {
            "item" => Sym::Item,
            "index" => Sym::Index,
            "input" => input.clone(),
            _ => out.clone(),
        }
    };
    let inputs = expr
        .inputs()
        .iter()
        .map(|i| {
            let base = bound(&i.root);
            match &i.field {
                Some(f) => walk(base, std::slice::from_ref(&f.to_string())),
                None => base,
            }
        })
        .collect();
    Some(Sym::Script(Arc::new(expr), inputs))
}

/// A walk into a symbol, done now where it can be.
fn walk(sym: Sym, segments: &[String]) -> Sym {
    let Some((first, rest)) = segments.split_first() else {
        return sym;
    };
    match sym {
        Sym::Obj(members) => match members.into_iter().find(|(k, _)| k == first) {
            Some((_, s)) => walk(s, rest),
            None => Sym::Const(Data::null()),
        },
        Sym::Const(d) => Sym::Const(d.walk(segments).unwrap_or_default()),
        // Scalars have no members.
        Sym::Index | Sym::Script(..) => Sym::Const(Data::null()),
        Sym::Walk(base, mut segs) => {
            segs.extend_from_slice(segments);
            Sym::Walk(base, segs)
        }
        Sym::Item => Sym::Walk(Box::new(Sym::Item), segments.to_vec()),
    }
}

fn spec_sym(
    spec: &InputSpec,
    t: &crate::plan::TemplatePlan,
    input: &[Option<Sym>],
    out: &[Option<Sym>],
) -> Option<Sym> {
    match spec {
        InputSpec::Path(p) => path_sym(p, t, input, out),
        InputSpec::Map(entries) => Some(Sym::Obj(
            entries
                .iter()
                .map(|(name, d)| {
                    let s = match d {
                        Directive::Path(p) => path_sym(p, t, input, out)?,
                        Directive::Literal(v) => Sym::Const(Data::from_value(v.clone())),
                    };
                    Some((name.clone(), s))
                })
                .collect::<Option<_>>()?,
        )),
    }
}

/// A data path as a symbol; `None` for paths outside the template (their values belong to
/// the loop's work, not to the program).
fn path_sym(
    path: &DataPath,
    t: &crate::plan::TemplatePlan,
    input: &[Option<Sym>],
    out: &[Option<Sym>],
) -> Option<Sym> {
    let section = |k: usize, s: Section| -> Outer {
        match s {
            Section::Params => {
                Outer::Known(Data::from_value(Value::Object(t.nodes[k].params.clone())))
            }
            _ => Outer::Unknown,
        }
    };
    let base = match &path.root {
        PathRoot::Node { id, section: s } | PathRoot::LoopNode { id, section: s } => {
            let &k = t.index.get(id.as_str())?;
            match s {
                Section::Out => out[k].clone().unwrap_or(Sym::Const(Data::null())),
                Section::Input => input[k].clone().unwrap_or(Sym::Const(Data::null())),
                Section::Params => match section(k, *s) {
                    Outer::Known(d) => Sym::Const(d),
                    Outer::Unknown => return None,
                },
            }
        }
        PathRoot::LoopItem { up: 0 } => Sym::Item,
        PathRoot::LoopIndex { up: 0 } => Sym::Index,
        _ => return None,
    };
    Some(walk(base, &path.segments))
}
