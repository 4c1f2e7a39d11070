//! The native evaluator: a subset of Rhai expressions, translated from the AST Rhai itself parsed
//! (and optimised), evaluated without Rhai. It mirrors Rhai 1.27's built-in operators and
//! standard functions, and answers `None` whenever it cannot be sure to give Rhai's answer; the
//! caller then asks Rhai, so values and error messages are always Rhai's.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;
use tessera_core::rhai::{AST, ASTFlags, Expr, FloatWrapper, FnCallExpr, Stmt, Token};

use crate::row::{Cell, RowRef};

/// A value during native evaluation: Rhai's scalar types, strings borrowed from the row or the
/// program where possible (so `row.name.len()` allocates nothing).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val<'a> {
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

    pub(super) fn into_cell(self) -> Cell {
        match self {
            Val::Unit => Cell::Null,
            Val::Bool(b) => Cell::Bool(b),
            Val::Int(i) => Cell::Int(i),
            Val::Float(f) => Cell::Float(f),
            Val::Char(c) => Cell::Str(c.to_string()),
            Val::Str(s) => Cell::Str(s.into_owned()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
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
pub(super) enum Func {
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

/// A field of the row: by position for text rows (resolved when compiling against the header),
/// by name for JSON rows and when the header was unknown.
#[derive(Debug)]
pub(super) struct Field {
    name: Box<str>,
    index: Option<usize>,
}

#[derive(Debug)]
pub(super) enum Node {
    Const(Val<'static>),
    Field(Box<Field>),
    Line,
    Neg(Box<Node>),
    Not(Box<Node>),
    Bin(Op, Box<(Node, Node)>),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Call(Func, Box<[Node]>),
}

/// What one evaluation sees.
pub(super) struct Cx<'a> {
    pub row: RowRef<'a>,
    pub line: i64,
    /// Text rows carry the header the program was compiled with: fields are read by position.
    pub by_index: bool,
    /// Rhai's `max_string_size` (0 = none): longer results are Rhai's to refuse.
    pub max_string: usize,
}

impl<'a> Cx<'a> {
    fn field(&self, f: &'a Field) -> Option<Val<'a>> {
        match self.row {
            RowRef::Text { names, fields } => {
                let i = if self.by_index {
                    f.index?
                } else {
                    // The map Rhai sees keeps the last of duplicated column names.
                    names.iter().rposition(|n| **n == *f.name)?
                };
                // A missing column or field is `()` for Rhai: rare, left to it.
                fields.get(i).map(|s| Val::Str(Cow::Borrowed(s)))
            }
            RowRef::Json(map) => match map.get(&*f.name)? {
                Value::String(s) => Some(Val::Str(Cow::Borrowed(s))),
                Value::Bool(b) => Some(Val::Bool(*b)),
                Value::Null => Some(Val::Unit),
                // `rhai::serde::to_dynamic` gives INT when it fits, else FLOAT (u64 as f64).
                Value::Number(n) => match n.as_i64() {
                    Some(i) => Some(Val::Int(i)),
                    None => n.as_f64().map(Val::Float),
                },
                Value::Array(_) | Value::Object(_) => None,
            },
        }
    }

    /// Rhai checks the size of every function and operator result.
    fn sized(&self, v: Val<'a>) -> Option<Val<'a>> {
        match &v {
            Val::Str(s) if self.max_string != 0 && s.len() > self.max_string => None,
            _ => Some(v),
        }
    }
}

impl Node {
    /// The value Rhai would compute, or `None` when Rhai must be asked (unhandled types, any
    /// error, limits).
    pub(super) fn eval<'a>(&'a self, cx: &Cx<'a>) -> Option<Val<'a>> {
        match self {
            Node::Const(v) => Some(v.borrowed()),
            Node::Field(f) => cx.field(f),
            Node::Line => Some(Val::Int(cx.line)),
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

    /// Nodes in the tree, to stay clear of a (tiny) operations limit.
    pub(super) fn size(&self) -> usize {
        1 + match self {
            Node::Const(_) | Node::Field(_) | Node::Line => 0,
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
fn call<'a>(f: Func, args: &'a [Node], cx: &Cx<'a>) -> Option<Val<'a>> {
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
/// expression, no script functions.
pub(super) fn lower(ast: &AST, names: Option<&[String]>) -> Option<Node> {
    if ast.has_functions() {
        return None;
    }
    let lw = Lower { names };
    match ast.statements() {
        [Stmt::Expr(e)] => lw.value(e),
        [Stmt::FnCall(f, _)] => lw.fn_call(f),
        _ => None,
    }
}

struct Lower<'n> {
    names: Option<&'n [String]>,
}

/// `row` itself is only a place to read fields from: alone (the whole map), it is Rhai's.
enum Lowered {
    Row,
    Value(Node),
}

#[derive(Clone, Copy)]
enum Access {
    Dot,
    Index,
}

impl Lower<'_> {
    fn value(&self, e: &Expr) -> Option<Node> {
        match self.any(e)? {
            Lowered::Value(n) => Some(n),
            Lowered::Row => None,
        }
    }

    fn any(&self, e: &Expr) -> Option<Lowered> {
        let node = match e {
            Expr::Variable(v, ..) if v.2.is_empty() => match v.1.as_str() {
                "row" => return Some(Lowered::Row),
                "line_number" => Node::Line,
                _ => return None,
            },
            Expr::Dot(b, flags, _) => {
                return self.chain(self.any(&b.lhs)?, Access::Dot, &b.rhs, *flags);
            }
            Expr::Index(b, flags, _) => {
                return self.chain(self.any(&b.lhs)?, Access::Index, &b.rhs, *flags);
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

    fn values(&self, xs: &[Expr]) -> Option<Box<[Node]>> {
        xs.iter().map(|x| self.value(x)).collect()
    }

    /// A `.`/`[]` chain as Rhai nests it: `a.b.c()` is `Dot(a, Dot(b, c()))`; a node's own
    /// flags say how its right side is reached (`BREAK`: it is the last link, e.g. an index
    /// expression; `NEGATED`: `?.`/`?[`, left to Rhai).
    fn chain(
        &self,
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

    fn link(&self, target: Lowered, access: Access, e: &Expr) -> Option<Lowered> {
        let node = match (target, access, e) {
            (Lowered::Row, Access::Dot, Expr::Property(p, _)) => self.field(&p.2),
            (Lowered::Row, Access::Index, Expr::StringConstant(s, _)) => self.field(s),
            (Lowered::Value(n), Access::Dot, Expr::MethodCall(f, _)) if f.namespace.is_empty() => {
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

    fn field(&self, name: &str) -> Node {
        let index = self.names.and_then(|n| n.iter().rposition(|c| c == name));
        Node::Field(Box::new(Field {
            name: name.into(),
            index,
        }))
    }

    fn fn_call(&self, f: &FnCallExpr) -> Option<Node> {
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
