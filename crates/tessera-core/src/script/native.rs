//! The native evaluator: a subset of Rhai expressions, translated from the AST Rhai itself parsed
//! (and optimised), evaluated without Rhai. It mirrors Rhai 1.27's built-in operators and
//! standard functions, and answers `None` whenever it cannot be sure to give Rhai's answer; the
//! caller then asks Rhai, so values and error messages are always Rhai's.
//!
//! Shared by the `batch` node's per-row expressions (`row.name`, `line_number`) and by loops
//! run in chunks (`item`, `index`, `input.x`): what a script reads is declared by the caller
//! as named roots, and each root (or root field) read becomes an [`Input`] the caller supplies
//! at evaluation time.

use std::borrow::Cow;
use std::cmp::Ordering;

use rhai::{AST, ASTFlags, Expr, FloatWrapper, FnCallExpr, Stmt, Token};

/// A value during native evaluation: Rhai's scalar types, strings borrowed from the inputs or
/// the program where possible (so `row.name.len()` allocates nothing).
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Unit,
    Bool(bool),
    Int(i64),
    Float(f64),
    Char(char),
    Str(Cow<'a, str>),
}

impl Val<'_> {
    fn borrowed(&self) -> Val<'_> {
        match self {
            Val::Str(s) => Val::Str(Cow::Borrowed(s)),
            Val::Unit => Val::Unit,
            Val::Bool(b) => Val::Bool(*b),
            Val::Int(i) => Val::Int(*i),
            Val::Float(f) => Val::Float(*f),
            Val::Char(c) => Val::Char(*c),
        }
    }

    /// Appends the value as JSON, as a script's `out` set to it becomes JSON (characters as
    /// strings); `false` for what has no JSON form (a non-finite float: Rhai's path reports it).
    pub fn write_json(&self, out: &mut String) -> bool {
        match self {
            Val::Unit => out.push_str("null"),
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Val::Int(i) => {
                use std::fmt::Write;
                let _ = write!(out, "{i}");
            }
            Val::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => out.push_str(&n.to_string()),
                None => return false,
            },
            Val::Char(c) => write_json_string(&c.to_string(), out),
            Val::Str(s) => write_json_string(s, out),
        }
        true
    }
}

/// A JSON string literal, escaped as `serde_json` escapes it.
pub fn write_json_string(s: &str, out: &mut String) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::String(s.to_string()).to_string());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn is_comparison(self) -> bool {
        !matches!(self, Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Rem)
    }

    fn holds(self, ord: Ordering) -> bool {
        match self {
            Op::Eq => ord.is_eq(),
            Op::Ne => ord.is_ne(),
            Op::Lt => ord.is_lt(),
            Op::Le => ord.is_le(),
            Op::Gt => ord.is_gt(),
            _ => ord.is_ge(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Func {
    Len,
    IsEmpty,
    ToUpper,
    ToLower,
    Contains,
    StartsWith,
    EndsWith,
    ParseInt,
    ParseIntRadix,
    ParseFloat,
    ToString,
    ToInt,
    ToFloat,
    Abs,
}

/// A value the script reads: a root variable (`line_number`, `item`) or one field of it
/// (`row.name`, `row["name"]`, `input.item`), numbered in the order first read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub root: Box<str>,
    pub field: Option<Box<str>>,
}

/// How a script may read a root variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// Only its fields (`row.name`); the whole map is Rhai's.
    Fields,
    /// Itself (`item`), or its fields when it is a map.
    Value,
}

#[derive(Debug)]
enum Node {
    Const(Val<'static>),
    Input(u32),
    Neg(Box<Node>),
    Not(Box<Node>),
    Bin(Op, Box<(Node, Node)>),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Call(Func, Box<[Node]>),
}

/// A compiled expression and the inputs it reads.
#[derive(Debug)]
pub struct Native {
    root: Node,
    inputs: Vec<Input>,
}

/// What one evaluation sees: the value of each [`Input`] (by number), `None` to leave the
/// evaluation to Rhai (a missing field, a type not handled).
pub trait Inputs<'a> {
    fn input(&self, index: usize) -> Option<Val<'a>>;
    /// Rhai's `max_string_size` (0 = none): longer results are Rhai's to refuse.
    fn max_string(&self) -> usize;
}

struct Cx<'a, 'i> {
    inputs: &'i dyn Inputs<'a>,
    max_string: usize,
}

impl<'a> Cx<'a, '_> {
    /// Rhai checks the size of every function and operator result.
    fn sized(&self, v: Val<'a>) -> Option<Val<'a>> {
        match &v {
            Val::Str(s) if self.max_string != 0 && s.len() > self.max_string => None,
            _ => Some(v),
        }
    }
}

impl Native {
    /// The value Rhai would compute, or `None` when Rhai must be asked (unhandled types, any
    /// error, limits).
    pub fn eval<'a>(&'a self, inputs: &dyn Inputs<'a>) -> Option<Val<'a>> {
        let cx = Cx {
            inputs,
            max_string: inputs.max_string(),
        };
        self.root.eval(&cx)
    }

    /// The inputs read, numbered as [`Inputs::input`] is asked for them.
    pub fn inputs(&self) -> &[Input] {
        &self.inputs
    }

    /// Nodes in the tree, to stay clear of a (tiny) operations limit.
    pub fn size(&self) -> usize {
        self.root.size()
    }
}

impl Node {
    /// The value Rhai would compute, or `None` when Rhai must be asked (unhandled types, any
    /// error, limits).
    fn eval<'a>(&'a self, cx: &Cx<'a, '_>) -> Option<Val<'a>> {
        match self {
            Node::Const(v) => Some(v.borrowed()),
            Node::Input(i) => cx.inputs.input(*i as usize),
            Node::Neg(a) => match a.eval(cx)? {
                Val::Int(i) => i.checked_neg().map(Val::Int),
                Val::Float(f) => Some(Val::Float(-f)),
                _ => None,
            },
            Node::Not(a) => match a.eval(cx)? {
                Val::Bool(b) => Some(Val::Bool(!b)),
                _ => None,
            },
            Node::Bin(op, ab) => {
                let (x, y) = (ab.0.eval(cx)?, ab.1.eval(cx)?);
                // The common case first, without moving strings around.
                if let (Val::Int(a), Val::Int(b)) = (&x, &y) {
                    return int_op(*op, *a, *b);
                }
                cx.sized(binary(*op, x, y)?)
            }
            // Rhai requires a bool of every operand it evaluates, and stops at the first
            // false (`&&`) or true (`||`).
            Node::And(xs) => {
                for x in xs.iter() {
                    if !as_bool(x.eval(cx)?)? {
                        return Some(Val::Bool(false));
                    }
                }
                Some(Val::Bool(true))
            }
            Node::Or(xs) => {
                for x in xs.iter() {
                    if as_bool(x.eval(cx)?)? {
                        return Some(Val::Bool(true));
                    }
                }
                Some(Val::Bool(false))
            }
            Node::Call(f, args) => cx.sized(call(*f, args, cx)?),
        }
    }

    fn size(&self) -> usize {
        1 + match self {
            Node::Const(_) | Node::Input(_) => 0,
            Node::Neg(a) | Node::Not(a) => a.size(),
            Node::Bin(_, ab) => ab.0.size() + ab.1.size(),
            Node::And(xs) | Node::Or(xs) | Node::Call(_, xs) => xs.iter().map(Node::size).sum(),
        }
    }
}

fn as_bool(v: Val<'_>) -> Option<bool> {
    match v {
        Val::Bool(b) => Some(b),
        _ => None,
    }
}

/// Rhai's built-in binary operators (its "fast operators" path), and the standard `+` of a
/// string with any value (`to_string` of the other operand).
fn binary<'a>(op: Op, x: Val<'a>, y: Val<'a>) -> Option<Val<'a>> {
    use Val::{Bool, Char, Float, Int, Str, Unit};
    match (x, y) {
        (Int(a), Int(b)) => int_op(op, a, b),
        (Int(a), Float(b)) => Some(float_op(op, a as f64, b)),
        (Float(a), Int(b)) => Some(float_op(op, a, b as f64)),
        (Float(a), Float(b)) => Some(float_op(op, a, b)),
        (Bool(a), Bool(b)) => op.is_comparison().then(|| Bool(op.holds(a.cmp(&b)))),
        (Char(a), Char(b)) if op == Op::Add => Some(Str(Cow::Owned(String::from_iter([a, b])))),
        (Char(a), Char(b)) => op.is_comparison().then(|| Bool(op.holds(a.cmp(&b)))),
        (Str(a), Str(b)) if op == Op::Add => Some(Str(concat(a, &b))),
        (Str(a), Str(b)) => op.is_comparison().then(|| Bool(op.holds((*a).cmp(&*b)))),
        (Unit, Unit) => op.is_comparison().then_some(Bool(op == Op::Eq)),
        (Str(a), y) if op == Op::Add => Some(Str(concat(a, &to_text(y)))),
        (x, Str(b)) if op == Op::Add => Some(Str(concat(to_text(x), &b))),
        // Rhai compares a char with a string's first two characters: not worth mirroring.
        (Str(_), Char(_)) | (Char(_), Str(_)) => None,
        // Other mixes (not two numbers): `!=` is true, `==` and orderings false, no arithmetic.
        _ => op.is_comparison().then_some(Bool(op == Op::Ne)),
    }
}

/// Checked, as Rhai's: overflow and division by zero are its errors to raise.
fn int_op(op: Op, a: i64, b: i64) -> Option<Val<'static>> {
    Some(Val::Int(match op {
        Op::Add => a.checked_add(b)?,
        Op::Sub => a.checked_sub(b)?,
        Op::Mul => a.checked_mul(b)?,
        Op::Div => a.checked_div(b)?,
        Op::Rem => a.checked_rem(b)?,
        _ => return Some(Val::Bool(op.holds(a.cmp(&b)))),
    }))
}

fn concat<'a>(a: Cow<'a, str>, b: &str) -> Cow<'a, str> {
    if b.is_empty() {
        return a;
    }
    let mut s = a.into_owned();
    s.push_str(b);
    Cow::Owned(s)
}

/// Rhai's float operators; comparisons are relative to `EPSILON` in checked builds (so
/// `0.1 + 0.2 == 0.3` is true), copied formula for formula.
#[allow(clippy::float_cmp)]
fn float_op(op: Op, x: f64, y: f64) -> Val<'static> {
    let max = if x * y == 0.0 {
        1.0
    } else {
        x.abs().max(y.abs())
    };
    let e = f64::EPSILON;
    Val::Bool(match op {
        Op::Add => return Val::Float(x + y),
        Op::Sub => return Val::Float(x - y),
        Op::Mul => return Val::Float(x * y),
        Op::Div => return Val::Float(x / y),
        Op::Rem => return Val::Float(x % y),
        Op::Eq => max == 0.0 || (x - y).abs() / max <= e,
        Op::Ne => max != 0.0 && (x - y).abs() / max > e,
        Op::Gt => max != 0.0 && (x - y) / max > e,
        Op::Ge => max == 0.0 || (x - y) / max > -e,
        Op::Lt => max != 0.0 && (y - x) / max > e,
        Op::Le => max == 0.0 || (y - x) / max > -e,
    })
}

/// Rhai's `to_string` (floats through its own `FloatWrapper` display: `1.0`, `1e-7`, `0.0`
/// for `-0.0`).
fn to_text(v: Val<'_>) -> Cow<'_, str> {
    match v {
        Val::Str(s) => s,
        Val::Unit => Cow::Borrowed(""),
        Val::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        Val::Int(i) => Cow::Owned(i.to_string()),
        Val::Float(f) => Cow::Owned(FloatWrapper::new(f).to_string()),
        Val::Char(c) => Cow::Owned(c.to_string()),
    }
}

/// Rhai maps a char to itself when its case mapping is several characters.
fn one_char(mut mapped: impl Iterator<Item = char>, c: char) -> char {
    match (mapped.next(), mapped.next()) {
        (Some(m), None) => m,
        _ => c,
    }
}

/// Rhai's standard functions of these names, for the argument types handled.
fn call<'a>(f: Func, args: &'a [Node], cx: &Cx<'a, '_>) -> Option<Val<'a>> {
    use Val::{Bool, Char, Float, Int, Str};
    let x = args.first()?.eval(cx)?;
    let y = match args.get(1) {
        Some(a) => Some(a.eval(cx)?),
        None => None,
    };
    Some(match (f, x, y) {
        (Func::Len, Str(s), None) => Int(i64::try_from(s.chars().count()).unwrap_or(i64::MAX)),
        (Func::IsEmpty, Str(s), None) => Bool(s.is_empty()),
        // Rhai returns the string itself when it is already all upper (lower) case.
        (Func::ToUpper, Str(s), None) if s.chars().all(char::is_uppercase) => Str(s),
        (Func::ToUpper, Str(s), None) => Str(Cow::Owned(s.to_uppercase())),
        (Func::ToUpper, Char(c), None) => Char(one_char(c.to_uppercase(), c)),
        (Func::ToLower, Str(s), None) if s.chars().all(char::is_lowercase) => Str(s),
        (Func::ToLower, Str(s), None) => Str(Cow::Owned(s.to_lowercase())),
        (Func::ToLower, Char(c), None) => Char(one_char(c.to_lowercase(), c)),
        (Func::Contains, Str(s), Some(Str(t))) => Bool(s.contains(&*t)),
        (Func::Contains, Str(s), Some(Char(c))) => Bool(s.contains(c)),
        (Func::StartsWith, Str(s), Some(Str(t))) => Bool(s.starts_with(&*t)),
        (Func::StartsWith, Str(s), Some(Char(c))) => Bool(s.starts_with(c)),
        (Func::EndsWith, Str(s), Some(Str(t))) => Bool(s.ends_with(&*t)),
        (Func::EndsWith, Str(s), Some(Char(c))) => Bool(s.ends_with(c)),
        // Rhai trims (Unicode whitespace) and accepts a sign; failures are Rhai's to report.
        (Func::ParseInt, Str(s), None) => Int(s.trim().parse::<i64>().ok()?),
        (Func::ParseIntRadix, Str(s), Some(Int(r))) if (2..=36).contains(&r) => {
            Int(i64::from_str_radix(s.trim(), u32::try_from(r).ok()?).ok()?)
        }
        (Func::ParseFloat, Str(s), None) => Float(s.trim().parse::<f64>().ok()?),
        (Func::ToString, v, None) => Str(to_text(v)),
        (Func::ToInt, Int(i), None) => Int(i),
        (Func::ToInt, Char(c), None) => Int(i64::from(u32::from(c))),
        // Rhai's range check, then a truncating (saturating, NaN → 0) cast.
        (Func::ToInt, Float(x), None) => {
            if x > i64::MAX as f64 || x < i64::MIN as f64 {
                return None;
            }
            Int(x.trunc() as i64)
        }
        (Func::ToFloat, Int(i), None) => Float(i as f64),
        (Func::ToFloat, Float(x), None) => Float(x),
        (Func::Abs, Int(i), None) => Int(i.checked_abs()?),
        (Func::Abs, Float(x), None) => Float(x.abs()),
        _ => return None,
    })
}

/// Translates a compiled script to a native tree when all of it is in the subset: one
/// expression, no script functions. `roots` says which variables it may read and how.
pub fn lower(ast: &AST, roots: &dyn Fn(&str) -> Option<Root>) -> Option<Native> {
    if ast.has_functions() {
        return None;
    }
    let mut lw = Lower {
        roots,
        inputs: Vec::new(),
    };
    let root = match ast.statements() {
        [Stmt::Expr(e)] => lw.value(e),
        [Stmt::FnCall(f, _)] => lw.fn_call(f),
        _ => None,
    }?;
    Some(Native {
        root,
        inputs: lw.inputs,
    })
}

/// As [`lower`], for a script that is one assignment `target = expression` (`out = item.len()`):
/// the expression.
pub fn lower_assignment(
    ast: &AST,
    target: &str,
    roots: &dyn Fn(&str) -> Option<Root>,
) -> Option<Native> {
    if ast.has_functions() {
        return None;
    }
    let [Stmt::Assignment(a)] = ast.statements() else {
        return None;
    };
    let (op, bin) = &**a;
    if op.is_op_assignment() {
        return None;
    }
    match &bin.lhs {
        Expr::Variable(v, ..) if v.2.is_empty() && v.1.as_str() == target => {}
        _ => return None,
    }
    let mut lw = Lower {
        roots,
        inputs: Vec::new(),
    };
    let root = lw.value(&bin.rhs)?;
    Some(Native {
        root,
        inputs: lw.inputs,
    })
}

struct Lower<'r> {
    roots: &'r dyn Fn(&str) -> Option<Root>,
    inputs: Vec<Input>,
}

/// A root read only for its fields (`row`): alone (the whole map), it is Rhai's.
enum Lowered {
    Fields(Box<str>),
    /// A root that is a value itself, and whose fields may be read too.
    Root(Box<str>, Node),
    Value(Node),
}

#[derive(Clone, Copy)]
enum Access {
    Dot,
    Index,
}

impl Lower<'_> {
    fn value(&mut self, e: &Expr) -> Option<Node> {
        match self.any(e)? {
            Lowered::Value(n) | Lowered::Root(_, n) => Some(n),
            Lowered::Fields(_) => None,
        }
    }

    /// The number of an input, given once per distinct input.
    fn input(&mut self, root: &str, field: Option<&str>) -> Node {
        let wanted = Input {
            root: root.into(),
            field: field.map(Into::into),
        };
        let i = match self.inputs.iter().position(|x| *x == wanted) {
            Some(i) => i,
            None => {
                self.inputs.push(wanted);
                self.inputs.len() - 1
            }
        };
        Node::Input(i as u32)
    }

    fn any(&mut self, e: &Expr) -> Option<Lowered> {
        let node = match e {
            Expr::Variable(v, ..) if v.2.is_empty() => {
                let name = v.1.as_str();
                return match (self.roots)(name)? {
                    Root::Fields => Some(Lowered::Fields(name.into())),
                    Root::Value => Some(Lowered::Root(name.into(), self.input(name, None))),
                };
            }
            Expr::Dot(b, flags, _) => {
                let target = self.any(&b.lhs)?;
                return self.chain(target, Access::Dot, &b.rhs, *flags);
            }
            Expr::Index(b, flags, _) => {
                let target = self.any(&b.lhs)?;
                return self.chain(target, Access::Index, &b.rhs, *flags);
            }
            Expr::IntegerConstant(i, _) => Node::Const(Val::Int(*i)),
            Expr::FloatConstant(f, _) => Node::Const(Val::Float(**f)),
            Expr::StringConstant(s, _) => Node::Const(Val::Str(Cow::Owned(s.to_string()))),
            Expr::BoolConstant(b, _) => Node::Const(Val::Bool(*b)),
            Expr::CharConstant(c, _) => Node::Const(Val::Char(*c)),
            Expr::Unit(_) => Node::Const(Val::Unit),
            Expr::And(xs, _) => Node::And(self.values(xs)?),
            Expr::Or(xs, _) => Node::Or(self.values(xs)?),
            Expr::FnCall(f, _) => self.fn_call(f)?,
            _ => return None,
        };
        Some(Lowered::Value(node))
    }

    fn values(&mut self, xs: &[Expr]) -> Option<Box<[Node]>> {
        xs.iter().map(|x| self.value(x)).collect()
    }

    /// A `.`/`[]` chain as Rhai nests it: `a.b.c()` is `Dot(a, Dot(b, c()))`; a node's own
    /// flags say how its right side is reached (`BREAK`: it is the last link, e.g. an index
    /// expression; `NEGATED`: `?.`/`?[`, left to Rhai).
    fn chain(
        &mut self,
        target: Lowered,
        access: Access,
        rhs: &Expr,
        flags: ASTFlags,
    ) -> Option<Lowered> {
        if flags.contains(ASTFlags::NEGATED) {
            return None;
        }
        if !flags.contains(ASTFlags::BREAK) {
            match rhs {
                Expr::Dot(b, f, _) => {
                    let v = self.link(target, access, &b.lhs)?;
                    return self.chain(v, Access::Dot, &b.rhs, *f);
                }
                Expr::Index(b, f, _) => {
                    let v = self.link(target, access, &b.lhs)?;
                    return self.chain(v, Access::Index, &b.rhs, *f);
                }
                _ => {}
            }
        }
        self.link(target, access, rhs)
    }

    fn link(&mut self, target: Lowered, access: Access, e: &Expr) -> Option<Lowered> {
        let node = match (target, access, e) {
            (Lowered::Fields(root) | Lowered::Root(root, _), Access::Dot, Expr::Property(p, _)) => {
                self.input(&root, Some(&p.2))
            }
            (
                Lowered::Fields(root) | Lowered::Root(root, _),
                Access::Index,
                Expr::StringConstant(s, _),
            ) => self.input(&root, Some(s)),
            (Lowered::Value(n) | Lowered::Root(_, n), Access::Dot, Expr::MethodCall(f, _))
                if f.namespace.is_empty() =>
            {
                let mut args = vec![n];
                for a in f.args.iter() {
                    args.push(self.value(a)?);
                }
                function(&f.name, args)?
            }
            _ => return None,
        };
        Some(Lowered::Value(node))
    }

    fn fn_call(&mut self, f: &FnCallExpr) -> Option<Node> {
        if !f.namespace.is_empty() || f.capture_parent_scope {
            return None;
        }
        let mut args: Vec<Node> = f
            .args
            .iter()
            .map(|a| self.value(a))
            .collect::<Option<_>>()?;
        let Some(token) = &f.op_token else {
            return function(&f.name, args);
        };
        if args.len() == 1 {
            let a = Box::new(args.pop()?);
            return match token {
                Token::Minus | Token::UnaryMinus => Some(Node::Neg(a)),
                Token::Bang => Some(Node::Not(a)),
                _ => None,
            };
        }
        let op = match token {
            Token::Plus => Op::Add,
            Token::Minus => Op::Sub,
            Token::Multiply => Op::Mul,
            Token::Divide => Op::Div,
            Token::Modulo => Op::Rem,
            Token::EqualsTo => Op::Eq,
            Token::NotEqualsTo => Op::Ne,
            Token::LessThan => Op::Lt,
            Token::LessThanEqualsTo => Op::Le,
            Token::GreaterThan => Op::Gt,
            Token::GreaterThanEqualsTo => Op::Ge,
            _ => return None,
        };
        let (b, a) = (args.pop()?, args.pop()?);
        args.is_empty().then(|| Node::Bin(op, Box::new((a, b))))
    }
}

/// A function call (or method call, its receiver first) by name and arity.
fn function(name: &str, args: Vec<Node>) -> Option<Node> {
    let f = match (name, args.len()) {
        ("len", 1) => Func::Len,
        ("is_empty", 1) => Func::IsEmpty,
        ("to_upper", 1) => Func::ToUpper,
        ("to_lower", 1) => Func::ToLower,
        ("contains", 2) => Func::Contains,
        ("starts_with", 2) => Func::StartsWith,
        ("ends_with", 2) => Func::EndsWith,
        ("parse_int", 1) => Func::ParseInt,
        ("parse_int", 2) => Func::ParseIntRadix,
        ("parse_float", 1) => Func::ParseFloat,
        ("to_string", 1) => Func::ToString,
        ("to_int", 1) => Func::ToInt,
        ("to_float", 1) => Func::ToFloat,
        ("abs", 1) => Func::Abs,
        _ => return None,
    };
    Some(Node::Call(f, args.into_boxed_slice()))
}
