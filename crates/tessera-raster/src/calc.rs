//! Band-math expressions (`tessera raster calc --expr "(b - a) / (b + a)"`, like
//! `gdal_calc.py`): parsed once, evaluated a whole tile at a time — every operator is one
//! tight loop over the tile's pixels, constants are never expanded.
//!
//! Syntax: numbers, `pi`, inputs by name (`a` is its first band, `a[3]` its third), `+ - * / %`,
//! `^` or `**` (power, right-associative), comparisons `< <= > >= == !=` and `&& || !` (1 or 0),
//! and functions `abs sqrt exp ln log log10 sin cos tan asin acos atan atan2 floor ceil round
//! min max pow where(cond, then, else) isnan`.

use std::fmt;

/// A parse error: what is wrong and the column (1-based) where it was found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("expression `{expression}`, column {column}: {message}")]
pub struct ExprError {
    pub expression: String,
    pub column: usize,
    pub message: String,
}

/// A band of an input, as the expression refers to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Variable {
    /// Index into the input names the expression was parsed with.
    pub input: usize,
    /// 0-based band.
    pub band: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Abs,
    Sqrt,
    Exp,
    Ln,
    Log10,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Atan2,
    Floor,
    Ceil,
    Round,
    Min,
    Max,
    Pow,
    Where,
    IsNan,
}

const FUNCS: &[(&str, Func, usize)] = &[
    ("abs", Func::Abs, 1),
    ("sqrt", Func::Sqrt, 1),
    ("exp", Func::Exp, 1),
    ("ln", Func::Ln, 1),
    ("log", Func::Ln, 1),
    ("log10", Func::Log10, 1),
    ("sin", Func::Sin, 1),
    ("cos", Func::Cos, 1),
    ("tan", Func::Tan, 1),
    ("asin", Func::Asin, 1),
    ("acos", Func::Acos, 1),
    ("atan", Func::Atan, 1),
    ("atan2", Func::Atan2, 2),
    ("floor", Func::Floor, 1),
    ("ceil", Func::Ceil, 1),
    ("round", Func::Round, 1),
    ("min", Func::Min, 2),
    ("max", Func::Max, 2),
    ("pow", Func::Pow, 2),
    ("where", Func::Where, 3),
    ("isnan", Func::IsNan, 1),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Const(f64),
    Var(Variable),
    Neg(Box<Node>),
    Not(Box<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    text: String,
    root: Node,
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A tile-sized value: a constant, or one value per pixel.
enum Val {
    Scalar(f64),
    Vector(Vec<f64>),
}

impl Expr {
    /// Parses `text`; `inputs` are the names variables may use.
    pub fn parse(text: &str, inputs: &[&str]) -> Result<Expr, ExprError> {
        let mut parser = Parser {
            text,
            chars: text.char_indices().collect(),
            at: 0,
            inputs,
        };
        let root = parser.or()?;
        parser.skip_space();
        if let Some(c) = parser.peek() {
            return Err(parser.error(format!("unexpected `{c}`")));
        }
        Ok(Expr {
            text: text.to_string(),
            root: fold(root),
        })
    }

    /// The input bands the expression reads, sorted, without repeats.
    pub fn variables(&self) -> Vec<Variable> {
        fn walk(node: &Node, out: &mut Vec<Variable>) {
            match node {
                Node::Const(_) => {}
                Node::Var(v) => out.push(*v),
                Node::Neg(a) | Node::Not(a) => walk(a, out),
                Node::Binary(_, a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Node::Call(_, args) => args.iter().for_each(|a| walk(a, out)),
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out.sort();
        out.dedup();
        out
    }

    /// Evaluates over `len` pixels; `values` gives each variable's `len` values.
    pub fn eval<'a>(&self, len: usize, values: &dyn Fn(Variable) -> &'a [f64]) -> Vec<f64> {
        match eval(&self.root, values) {
            Val::Scalar(v) => vec![v; len],
            Val::Vector(v) => v,
        }
    }
}

fn unary(v: Val, f: impl Fn(f64) -> f64) -> Val {
    match v {
        Val::Scalar(x) => Val::Scalar(f(x)),
        Val::Vector(mut xs) => {
            xs.iter_mut().for_each(|x| *x = f(*x));
            Val::Vector(xs)
        }
    }
}

fn binary(a: Val, b: Val, f: impl Fn(f64, f64) -> f64) -> Val {
    match (a, b) {
        (Val::Scalar(x), Val::Scalar(y)) => Val::Scalar(f(x, y)),
        (Val::Vector(mut xs), Val::Scalar(y)) => {
            xs.iter_mut().for_each(|x| *x = f(*x, y));
            Val::Vector(xs)
        }
        (Val::Scalar(x), Val::Vector(mut ys)) => {
            ys.iter_mut().for_each(|y| *y = f(x, *y));
            Val::Vector(ys)
        }
        (Val::Vector(mut xs), Val::Vector(ys)) => {
            xs.iter_mut().zip(&ys).for_each(|(x, y)| *x = f(*x, *y));
            Val::Vector(xs)
        }
    }
}

fn truth(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

fn apply_binary(op: BinOp, a: Val, b: Val) -> Val {
    match op {
        BinOp::Add => binary(a, b, |x, y| x + y),
        BinOp::Sub => binary(a, b, |x, y| x - y),
        BinOp::Mul => binary(a, b, |x, y| x * y),
        BinOp::Div => binary(a, b, |x, y| x / y),
        BinOp::Rem => binary(a, b, |x, y| x % y),
        BinOp::Pow => binary(a, b, f64::powf),
        BinOp::Lt => binary(a, b, |x, y| truth(x < y)),
        BinOp::Le => binary(a, b, |x, y| truth(x <= y)),
        BinOp::Gt => binary(a, b, |x, y| truth(x > y)),
        BinOp::Ge => binary(a, b, |x, y| truth(x >= y)),
        BinOp::Eq => binary(a, b, |x, y| truth(x == y)),
        BinOp::Ne => binary(a, b, |x, y| truth(x != y)),
        BinOp::And => binary(a, b, |x, y| truth(x != 0.0 && y != 0.0)),
        BinOp::Or => binary(a, b, |x, y| truth(x != 0.0 || y != 0.0)),
    }
}

fn eval<'a>(node: &Node, values: &dyn Fn(Variable) -> &'a [f64]) -> Val {
    match node {
        Node::Const(v) => Val::Scalar(*v),
        Node::Var(v) => Val::Vector(values(*v).to_vec()),
        Node::Neg(a) => unary(eval(a, values), |x| -x),
        Node::Not(a) => unary(eval(a, values), |x| truth(x == 0.0)),
        Node::Binary(op, a, b) => apply_binary(*op, eval(a, values), eval(b, values)),
        Node::Call(func, args) => {
            let mut args = args.iter().map(|a| eval(a, values));
            let mut next = || args.next().expect("arity checked at parse time");
            match func {
                Func::Abs => unary(next(), f64::abs),
                Func::Sqrt => unary(next(), f64::sqrt),
                Func::Exp => unary(next(), f64::exp),
                Func::Ln => unary(next(), f64::ln),
                Func::Log10 => unary(next(), f64::log10),
                Func::Sin => unary(next(), f64::sin),
                Func::Cos => unary(next(), f64::cos),
                Func::Tan => unary(next(), f64::tan),
                Func::Asin => unary(next(), f64::asin),
                Func::Acos => unary(next(), f64::acos),
                Func::Atan => unary(next(), f64::atan),
                Func::Floor => unary(next(), f64::floor),
                Func::Ceil => unary(next(), f64::ceil),
                Func::Round => unary(next(), f64::round),
                Func::IsNan => unary(next(), |x| truth(x.is_nan())),
                Func::Atan2 => binary(next(), next(), f64::atan2),
                Func::Min => binary(next(), next(), f64::min),
                Func::Max => binary(next(), next(), f64::max),
                Func::Pow => binary(next(), next(), f64::powf),
                Func::Where => {
                    let (cond, then, other) = (next(), next(), next());
                    select(cond, then, other)
                }
            }
        }
    }
}

/// `where(cond, then, else)`, pixel by pixel (not `c·t + (1-c)·e`: a NaN branch would leak).
fn select(cond: Val, then: Val, other: Val) -> Val {
    let at = |v: &Val, i: usize| match v {
        Val::Scalar(x) => *x,
        Val::Vector(xs) => xs[i],
    };
    let len = [&cond, &then, &other].iter().find_map(|v| match v {
        Val::Vector(xs) => Some(xs.len()),
        Val::Scalar(_) => None,
    });
    match len {
        None => Val::Scalar(if at(&cond, 0) != 0.0 {
            at(&then, 0)
        } else {
            at(&other, 0)
        }),
        Some(len) => Val::Vector(
            (0..len)
                .map(|i| {
                    if at(&cond, i) != 0.0 {
                        at(&then, i)
                    } else {
                        at(&other, i)
                    }
                })
                .collect(),
        ),
    }
}

/// Folds constant sub-expressions (`2 * pi` becomes one number).
fn fold(node: Node) -> Node {
    match node {
        Node::Neg(a) => match fold(*a) {
            Node::Const(v) => Node::Const(-v),
            a => Node::Neg(Box::new(a)),
        },
        Node::Not(a) => match fold(*a) {
            Node::Const(v) => Node::Const(truth(v == 0.0)),
            a => Node::Not(Box::new(a)),
        },
        Node::Binary(op, a, b) => match (fold(*a), fold(*b)) {
            (Node::Const(x), Node::Const(y)) => {
                match apply_binary(op, Val::Scalar(x), Val::Scalar(y)) {
                    Val::Scalar(v) => Node::Const(v),
                    Val::Vector(_) => unreachable!("scalars give a scalar"),
                }
            }
            (a, b) => Node::Binary(op, Box::new(a), Box::new(b)),
        },
        Node::Call(f, args) => Node::Call(f, args.into_iter().map(fold).collect()),
        other => other,
    }
}

struct Parser<'t> {
    text: &'t str,
    chars: Vec<(usize, char)>,
    at: usize,
    inputs: &'t [&'t str],
}

impl Parser<'_> {
    fn error(&self, message: impl Into<String>) -> ExprError {
        ExprError {
            expression: self.text.to_string(),
            column: self.at + 1,
            message: message.into(),
        }
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).map(|c| c.1)
    }

    /// Consumes `token` (after spaces) if it comes next.
    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        let n = token.chars().count();
        let matches = self.chars.len() >= self.at + n
            && self.chars[self.at..self.at + n]
                .iter()
                .map(|c| c.1)
                .eq(token.chars());
        if matches {
            self.at += n;
        }
        matches
    }

    fn expect(&mut self, token: &str) -> Result<(), ExprError> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(format!("expected `{token}`")))
        }
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Node::Binary(BinOp::Or, Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        let mut left = self.comparison()?;
        while self.eat("&&") {
            left = Node::Binary(BinOp::And, Box::new(left), Box::new(self.comparison()?));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Node, ExprError> {
        let left = self.sum()?;
        // Two-character operators first.
        for (token, op) in [
            ("<=", BinOp::Le),
            (">=", BinOp::Ge),
            ("==", BinOp::Eq),
            ("!=", BinOp::Ne),
            ("<", BinOp::Lt),
            (">", BinOp::Gt),
        ] {
            if self.eat(token) {
                return Ok(Node::Binary(op, Box::new(left), Box::new(self.sum()?)));
            }
        }
        Ok(left)
    }

    fn sum(&mut self) -> Result<Node, ExprError> {
        let mut left = self.product()?;
        loop {
            let op = if self.eat("+") {
                BinOp::Add
            } else if self.eat("-") {
                BinOp::Sub
            } else {
                return Ok(left);
            };
            left = Node::Binary(op, Box::new(left), Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Result<Node, ExprError> {
        let mut left = self.unary()?;
        loop {
            // `**` is a power, not two products.
            self.skip_space();
            if self.chars.get(self.at + 1).map(|c| c.1) == Some('*') && self.peek() == Some('*') {
                return Ok(left);
            }
            let op = if self.eat("*") {
                BinOp::Mul
            } else if self.eat("/") {
                BinOp::Div
            } else if self.eat("%") {
                BinOp::Rem
            } else {
                return Ok(left);
            };
            left = Node::Binary(op, Box::new(left), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        if self.eat("-") {
            return Ok(Node::Neg(Box::new(self.unary()?)));
        }
        if self.eat("+") {
            return self.unary();
        }
        if self.eat("!") {
            return Ok(Node::Not(Box::new(self.unary()?)));
        }
        self.power()
    }

    fn power(&mut self) -> Result<Node, ExprError> {
        let base = self.atom()?;
        if self.eat("^") || self.eat("**") {
            // Right-associative, and binds tighter than a unary minus on its left: -2^2 = -4.
            return Ok(Node::Binary(
                BinOp::Pow,
                Box::new(base),
                Box::new(self.unary()?),
            ));
        }
        Ok(base)
    }

    fn atom(&mut self) -> Result<Node, ExprError> {
        self.skip_space();
        let start = self.at;
        match self.peek() {
            None => Err(self.error("expected a value, found the end")),
            Some('(') => {
                self.at += 1;
                let inner = self.or()?;
                self.expect(")")?;
                Ok(inner)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E')
                    || (matches!(self.peek(), Some('+' | '-'))
                        && matches!(self.chars[self.at - 1].1, 'e' | 'E'))
                {
                    self.at += 1;
                }
                let text = self.slice(start).to_string();
                text.parse::<f64>().map(Node::Const).map_err(|_| {
                    self.at = start;
                    self.error(format!("`{text}` is not a number"))
                })
            }
            Some(c) if c.is_alphabetic() || c == '_' => {
                while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    self.at += 1;
                }
                let name = self.slice(start).to_string();
                self.name(&name, start)
            }
            Some(c) => Err(self.error(format!("unexpected `{c}`"))),
        }
    }

    fn slice(&self, start: usize) -> &str {
        let from = self.chars[start].0;
        let to = self.chars.get(self.at).map_or(self.text.len(), |c| c.0);
        &self.text[from..to]
    }

    /// A name: a function call, `pi`, or an input (with an optional `[band]`).
    fn name(&mut self, name: &str, start: usize) -> Result<Node, ExprError> {
        if self.eat("(") {
            let Some(&(_, func, arity)) = FUNCS.iter().find(|f| f.0 == name) else {
                self.at = start;
                let known: Vec<&str> = FUNCS.iter().map(|f| f.0).collect();
                return Err(self.error(format!(
                    "unknown function `{name}` (known: {})",
                    known.join(", ")
                )));
            };
            let mut args = Vec::new();
            if !self.eat(")") {
                loop {
                    args.push(self.or()?);
                    if self.eat(")") {
                        break;
                    }
                    self.expect(",")?;
                }
            }
            if args.len() != arity {
                return Err(self.error(format!(
                    "`{name}` takes {arity} argument(s), got {}",
                    args.len()
                )));
            }
            return Ok(Node::Call(func, args));
        }
        if name == "pi" && !self.inputs.contains(&"pi") {
            return Ok(Node::Const(std::f64::consts::PI));
        }
        let Some(input) = self.inputs.iter().position(|i| *i == name) else {
            self.at = start;
            return Err(self.error(format!(
                "unknown input `{name}` (inputs: {})",
                self.inputs.join(", ")
            )));
        };
        let mut band = 0;
        if self.eat("[") {
            self.skip_space();
            let at = self.at;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.at += 1;
            }
            band = match self.slice(at).parse::<usize>() {
                Ok(b) if b >= 1 => b - 1,
                _ => {
                    self.at = at;
                    return Err(self.error("expected a band number (1, 2, …)"));
                }
            };
            self.expect("]")?;
        }
        Ok(Node::Var(Variable { input, band }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval_at(text: &str, a: &[f64], b: &[f64]) -> Vec<f64> {
        let expr = Expr::parse(text, &["a", "b"]).expect("parses");
        expr.eval(a.len(), &|v| if v.input == 0 { a } else { b })
    }

    #[test]
    fn arithmetic_follows_precedence() {
        let a = [1.0, 2.0, 3.0];
        let b = [4.0, 5.0, 6.0];
        assert_eq!(
            eval_at("(b - a) / (b + a)", &a, &b),
            vec![0.6, 3.0 / 7.0, 1.0 / 3.0]
        );
        assert_eq!(eval_at("a + b * 2", &a, &b), vec![9.0, 12.0, 15.0]);
        assert_eq!(eval_at("-a^2", &a, &b), vec![-1.0, -4.0, -9.0]);
        assert_eq!(eval_at("2 ** 3 ** 2", &a, &b), vec![512.0; 3]);
        assert_eq!(eval_at("a * 2 ** 2", &a, &b), vec![4.0, 8.0, 12.0]);
        assert_eq!(eval_at("b % 4", &a, &b), vec![0.0, 1.0, 2.0]);
        assert_eq!(eval_at("1e1 + 2.5E-1", &a, &b), vec![10.25; 3]);
    }

    #[test]
    fn comparisons_logic_and_functions() {
        let a = [1.0, 2.0, 3.0];
        let b = [3.0, 2.0, 1.0];
        assert_eq!(eval_at("a < b", &a, &b), vec![1.0, 0.0, 0.0]);
        assert_eq!(eval_at("a >= b && !(a == 3)", &a, &b), vec![0.0, 1.0, 0.0]);
        assert_eq!(eval_at("a == 1 || b == 1", &a, &b), vec![1.0, 0.0, 1.0]);
        assert_eq!(
            eval_at("where(a > b, a, b * 10)", &a, &b),
            vec![30.0, 20.0, 3.0]
        );
        assert_eq!(
            eval_at("max(a, b) - min(a, b)", &a, &b),
            vec![2.0, 0.0, 2.0]
        );
        assert_eq!(
            eval_at("sqrt(a * a) + abs(-b)", &a, &b),
            vec![4.0, 4.0, 4.0]
        );
        let nan = eval_at("where(a > 1, 0 / 0, a)", &a, &b);
        assert_eq!(nan[0], 1.0);
        assert!(nan[1].is_nan() && nan[2].is_nan());
        assert_eq!(eval_at("isnan(ln(a - 2))", &a, &b), vec![1.0, 0.0, 0.0]);
        assert!((eval_at("cos(pi)", &a, &b)[0] + 1.0).abs() < 1e-12);
    }

    #[test]
    fn variables_and_bands() {
        let expr = Expr::parse("b[2] - a + a[1] * b", &["a", "b"]).expect("parses");
        assert_eq!(
            expr.variables(),
            vec![
                Variable { input: 0, band: 0 },
                Variable { input: 1, band: 0 },
                Variable { input: 1, band: 1 },
            ]
        );
    }

    #[test]
    fn constants_are_folded() {
        let expr = Expr::parse("2 * pi + -(1)", &["a"]).expect("parses");
        assert_eq!(expr.root, Node::Const(2.0 * std::f64::consts::PI - 1.0));
        assert_eq!(
            expr.eval(2, &|_| &[]),
            vec![2.0 * std::f64::consts::PI - 1.0; 2]
        );
    }

    #[test]
    fn errors_name_the_column() {
        let err = |text: &str| Expr::parse(text, &["a", "b"]).unwrap_err();
        let e = err("(b - c) / 2");
        assert_eq!(
            (e.column, e.message.as_str()),
            (6, "unknown input `c` (inputs: a, b)")
        );
        assert_eq!(
            e.to_string(),
            "expression `(b - c) / 2`, column 6: unknown input `c` (inputs: a, b)"
        );
        assert_eq!(err("(a + b").message, "expected `)`");
        assert_eq!(err("a +").message, "expected a value, found the end");
        assert_eq!(err("a b").column, 3);
        assert!(err("foo(a)").message.starts_with("unknown function `foo`"));
        assert_eq!(err("min(a)").message, "`min` takes 2 argument(s), got 1");
        assert_eq!(err("a[0]").message, "expected a band number (1, 2, …)");
        assert_eq!(err("a $ b").message, "unexpected `$`");
        assert_eq!(err("1.2.3").message, "`1.2.3` is not a number");
    }
}
