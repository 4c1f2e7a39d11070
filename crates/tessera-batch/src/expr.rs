//! Per-row expressions of the `batch` node: computed columns and a filter, written in Rhai,
//! compiled once and evaluated natively when possible, with Rhai as the authority.
//!
//! Evaluating Rhai for each of millions of rows (building the row map, then `eval_ast`) costs
//! microseconds per row. So each expression is compiled by Rhai (the parser, the optimiser and
//! the error positions are Rhai's) and, when its AST falls in a small subset, also translated to
//! a native tree (`native`). At run time that tree answers only when it is sure to give Rhai's
//! answer; anything else (unexpected types, overflow, a failed parse, a missing field, …)
//! evaluates that expression for that row with Rhai, so values and errors are always Rhai's.

use tessera_core::rhai::{self, AST, Dynamic, Engine, ImmutableString, Scope};
use tessera_core::script::native::{self, Inputs, Root, Val};
use tessera_core::script::{ScriptLimits, describe_error, sandboxed_engine};

use crate::row::{Cell, RowRef};

/// The expressions of a `batch` processor.
#[derive(Debug, Clone, Default)]
pub struct ExprSpec {
    /// Output column name and its Rhai source, in order.
    pub columns: Vec<(String, String)>,
    /// Rows for which this returns false are left out.
    pub filter: Option<String>,
}

/// An expression that does not compile or fails on a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ExprError {
    /// `columns.<name>` or `filter`.
    pub field: String,
    pub message: String,
}

struct Compiled {
    field: String,
    ast: AST,
    native: Option<native::Native>,
    /// What each input of `native` reads in a row.
    reads: Vec<Read>,
}

/// A native input in a row: a field (by position for text rows, resolved when compiling
/// against the header; by name for JSON rows and when the header was unknown), or the line.
#[derive(Debug)]
enum Read {
    Field {
        name: Box<str>,
        index: Option<usize>,
    },
    Line,
}

/// Compiled expressions, shared by the worker threads.
pub struct RowProgram {
    engine: Engine,
    filter: Option<Compiled>,
    columns: Vec<Compiled>,
    /// The header text rows were compiled against (field positions are resolved from it).
    names: Option<Vec<String>>,
    max_string: usize,
}

impl std::fmt::Debug for RowProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (native, rhai) = self.native_count();
        f.debug_struct("RowProgram")
            .field("native", &native)
            .field("rhai", &rhai)
            .finish_non_exhaustive()
    }
}

impl RowProgram {
    /// Compiles every expression. `names`: the column names of text rows (CSV header or
    /// `line`), None for JSON rows; text rows given to `apply` must carry these same names.
    pub fn compile(
        spec: &ExprSpec,
        names: Option<&[String]>,
        limits: &ScriptLimits,
    ) -> Result<RowProgram, ExprError> {
        let engine = sandboxed_engine(limits);
        let compile = |field: String, source: &str| {
            let ast = engine.compile(source).map_err(|e| ExprError {
                field: field.clone(),
                message: format!("syntax error: {e}"),
            })?;
            // A native tree costs about as many Rhai operations as it has nodes: under a tiny
            // operations limit, Rhai must run it to stop it.
            let roots = |name: &str| match name {
                "row" => Some(Root::Fields),
                "line_number" => Some(Root::Value),
                _ => None,
            };
            let native = native::lower(&ast, &roots).filter(|n| {
                limits.max_operations == 0
                    || (n.size() as u64).saturating_mul(4) < limits.max_operations
            });
            let reads = native.as_ref().map_or_else(Vec::new, |n| {
                n.inputs()
                    .iter()
                    .map(|i| match &i.field {
                        Some(name) => Read::Field {
                            index: names.and_then(|n| n.iter().rposition(|c| **c == **name)),
                            name: name.clone(),
                        },
                        None => Read::Line,
                    })
                    .collect()
            });
            Ok(Compiled {
                field,
                ast,
                native,
                reads,
            })
        };
        let filter = match &spec.filter {
            Some(source) => Some(compile("filter".into(), source)?),
            None => None,
        };
        let columns = spec
            .columns
            .iter()
            .map(|(name, source)| compile(format!("columns.{name}"), source))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RowProgram {
            engine,
            filter,
            columns,
            names: names.map(<[String]>::to_vec),
            max_string: limits.max_string_size,
        })
    }

    /// The same program evaluating everything with Rhai: the reference the native path is
    /// tested against, and the baseline of benchmarks.
    pub fn without_native(mut self) -> RowProgram {
        for c in self.filter.iter_mut().chain(&mut self.columns) {
            c.native = None;
        }
        self
    }

    /// How many expressions run natively, and how many through Rhai.
    pub fn native_count(&self) -> (usize, usize) {
        let all = self.filter.iter().chain(&self.columns);
        let native = all.clone().filter(|c| c.native.is_some()).count();
        (native, all.count() - native)
    }

    /// Evaluates the filter (if any), then every column in order into `out` (cleared first).
    /// Ok(false): the row is filtered out (columns not evaluated). `line`: the row's line
    /// number in the file (`line_number` in scripts).
    pub fn apply(
        &self,
        row: &RowRef<'_>,
        line: u64,
        out: &mut Vec<Cell>,
    ) -> Result<bool, ExprError> {
        out.clear();
        let line = i64::try_from(line).unwrap_or(i64::MAX);
        let by_index = match row {
            RowRef::Text { names, .. } => {
                debug_assert!(self.names.as_ref().is_none_or(|n| n == names));
                self.names.as_ref().is_some_and(|n| n.len() == names.len())
            }
            RowRef::Json(_) => false,
        };
        fn cx<'a, 'r>(
            row: &RowRef<'a>,
            line: i64,
            by_index: bool,
            c: &'r Compiled,
            max_string: usize,
        ) -> RowInputs<'a, 'r> {
            RowInputs {
                row: *row,
                line,
                by_index,
                reads: &c.reads,
                max_string,
            }
        }
        let cx = |c| cx(row, line, by_index, c, self.max_string);
        // The row as a Rhai map, built only if some expression needs Rhai on this row.
        let mut map = None;
        if let Some(f) = &self.filter {
            let keep = match f.native.as_ref().and_then(|n| n.eval(&cx(f))) {
                Some(Val::Bool(b)) => b,
                // Anything else (including a non-boolean answer) goes to Rhai, which also
                // gives the value shown in the error.
                _ => {
                    let v = self.rhai(f, row, line, &mut map)?;
                    v.as_bool().map_err(|_| ExprError {
                        field: f.field.clone(),
                        message: format!(
                            "filter must return true or false, got {} `{v}`",
                            v.type_name()
                        ),
                    })?
                }
            };
            if !keep {
                return Ok(false);
            }
        }
        for c in &self.columns {
            let cell = match c.native.as_ref().and_then(|n| n.eval(&cx(c))) {
                Some(v) => into_cell(v),
                None => {
                    let v = self.rhai(c, row, line, &mut map)?;
                    to_cell(v).map_err(|message| ExprError {
                        field: c.field.clone(),
                        message,
                    })?
                }
            };
            out.push(cell);
        }
        Ok(true)
    }

    /// Evaluates one expression with Rhai, in a fresh scope (a script may change `row`; the
    /// next expression must not see it).
    fn rhai(
        &self,
        c: &Compiled,
        row: &RowRef<'_>,
        line: i64,
        map: &mut Option<Dynamic>,
    ) -> Result<Dynamic, ExprError> {
        let err = |message| ExprError {
            field: c.field.clone(),
            message,
        };
        let row_map = match map {
            Some(m) => m.clone(),
            None => map.insert(row_dynamic(row).map_err(err)?).clone(),
        };
        let mut scope = Scope::new();
        scope.push_dynamic("row", row_map);
        scope.push("line_number", line);
        self.engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, &c.ast)
            .map_err(|e| err(describe_error(*e).message))
    }
}

/// A row as the native evaluator reads it.
struct RowInputs<'a, 'r> {
    row: RowRef<'a>,
    line: i64,
    /// Text rows carry the header the program was compiled with: fields are read by position.
    by_index: bool,
    reads: &'r [Read],
    max_string: usize,
}

impl<'a> Inputs<'a> for RowInputs<'a, '_> {
    fn input(&self, index: usize) -> Option<Val<'a>> {
        let (name, position) = match self.reads.get(index)? {
            Read::Line => return Some(Val::Int(self.line)),
            Read::Field { name, index } => (name, index),
        };
        match self.row {
            RowRef::Text { names, fields } => {
                let i = if self.by_index {
                    (*position)?
                } else {
                    // The map Rhai sees keeps the last of duplicated column names.
                    names.iter().rposition(|n| **n == **name)?
                };
                // A missing column or field is `()` for Rhai: rare, left to it.
                fields
                    .get(i)
                    .map(|s| Val::Str(std::borrow::Cow::Borrowed(s)))
            }
            RowRef::Json(map) => match map.get(&**name)? {
                serde_json::Value::String(s) => Some(Val::Str(std::borrow::Cow::Borrowed(s))),
                serde_json::Value::Bool(b) => Some(Val::Bool(*b)),
                serde_json::Value::Null => Some(Val::Unit),
                // `rhai::serde::to_dynamic` gives INT when it fits, else FLOAT (u64 as f64).
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => Some(Val::Int(i)),
                    None => n.as_f64().map(Val::Float),
                },
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => None,
            },
        }
    }

    fn max_string(&self) -> usize {
        self.max_string
    }
}

fn into_cell(v: Val<'_>) -> Cell {
    match v {
        Val::Unit => Cell::Null,
        Val::Bool(b) => Cell::Bool(b),
        Val::Int(i) => Cell::Int(i),
        Val::Float(f) => Cell::Float(f),
        Val::Char(c) => Cell::Str(c.to_string()),
        Val::Str(s) => Cell::Str(s.into_owned()),
    }
}

/// The record as scripts see it: text fields as strings by column name (the last of duplicated
/// names wins), JSON objects converted by `rhai::serde`.
fn row_dynamic(row: &RowRef<'_>) -> Result<Dynamic, String> {
    match row {
        RowRef::Text { names, fields } => {
            let mut m = rhai::Map::new();
            for (name, value) in names.iter().zip(fields.iter()) {
                m.insert(name.as_str().into(), ImmutableString::from(value).into());
            }
            Ok(Dynamic::from_map(m))
        }
        RowRef::Json(obj) => rhai::serde::to_dynamic(obj)
            .map_err(|e| format!("cannot pass the record to the script: {e}")),
    }
}

/// A Rhai result as a cell: scalars as they are, chars as strings, arrays and maps as JSON.
fn to_cell(v: Dynamic) -> Result<Cell, String> {
    let v = v.flatten();
    if v.is_unit() {
        return Ok(Cell::Null);
    }
    if let Ok(b) = v.as_bool() {
        return Ok(Cell::Bool(b));
    }
    if let Ok(i) = v.as_int() {
        return Ok(Cell::Int(i));
    }
    if let Ok(f) = v.as_float() {
        return Ok(Cell::Float(f));
    }
    if let Ok(c) = v.as_char() {
        return Ok(Cell::Str(c.to_string()));
    }
    if v.is_string() {
        return v
            .into_string()
            .map(Cell::Str)
            .map_err(|t| format!("unexpected {t}"));
    }
    rhai::serde::from_dynamic::<serde_json::Value>(&v)
        .map(Cell::Json)
        .map_err(|e| format!("a {} cannot be a column value: {e}", v.type_name()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::Fields;
    use serde_json::json;

    const NAMES: [&str; 3] = ["nom", "n", "x"];

    fn names() -> Vec<String> {
        NAMES.iter().map(|s| s.to_string()).collect()
    }

    fn fields(values: &[&str]) -> Fields {
        let mut f = Fields::default();
        values.iter().for_each(|v| f.push(v));
        f
    }

    /// The native answer (which must exist) and Rhai's, for one expression on one row.
    fn both(source: &str, row: &RowRef<'_>, names: Option<&[String]>) -> (Cell, Cell) {
        let spec = ExprSpec {
            columns: vec![("c".into(), source.into())],
            filter: None,
        };
        let p = RowProgram::compile(&spec, names, &ScriptLimits::default()).unwrap();
        assert_eq!(p.native_count(), (1, 0), "{source} is not native");
        let c = &p.columns[0];
        let cx = RowInputs {
            row: *row,
            line: 7,
            by_index: names.is_some(),
            reads: &c.reads,
            max_string: 1 << 20,
        };
        let native = c.native.as_ref().unwrap().eval(&cx);
        let native = into_cell(native.unwrap_or_else(|| panic!("{source}: no native answer")));
        let mut out = vec![];
        p.without_native().apply(row, 7, &mut out).unwrap();
        (native, out.remove(0))
    }

    #[test]
    fn every_construct_answers_natively_like_rhai() {
        let n = names();
        let f = fields(&["Lefèvre", " -42 ", "2.5"]);
        let text = RowRef::Text {
            names: &n,
            fields: &f,
        };
        let cases = [
            ("row.nom", Cell::Str("Lefèvre".into())),
            ("row[\"nom\"]", Cell::Str("Lefèvre".into())),
            ("row.nom.len()", Cell::Int(7)),
            ("len(row.nom)", Cell::Int(7)),
            ("row[\"nom\"].len()", Cell::Int(7)),
            ("row.nom.is_empty()", Cell::Bool(false)),
            ("row.nom.to_upper()", Cell::Str("LEFÈVRE".into())),
            ("row.nom.to_lower()", Cell::Str("lefèvre".into())),
            ("row.nom.to_upper().len()", Cell::Int(7)),
            ("row.nom.contains(\"fè\")", Cell::Bool(true)),
            ("row.nom.contains('z')", Cell::Bool(false)),
            ("row.nom.starts_with(\"Le\")", Cell::Bool(true)),
            ("row.nom.ends_with('e')", Cell::Bool(true)),
            ("row.n.parse_int()", Cell::Int(-42)),
            ("parse_int(\"ff\", 16)", Cell::Int(255)),
            ("row.x.parse_float()", Cell::Float(2.5)),
            ("row.n.parse_int().abs()", Cell::Int(42)),
            ("row.x.parse_float().to_int()", Cell::Int(2)),
            ("row.n.parse_int().to_float()", Cell::Float(-42.0)),
            ("row.x.parse_float().to_string()", Cell::Str("2.5".into())),
            ("row.n.parse_int().to_string()", Cell::Str("-42".into())),
            ("line_number", Cell::Int(7)),
            (
                "line_number.to_string() + \":\" + row.nom",
                Cell::Str("7:Lefèvre".into()),
            ),
            ("row.nom + 1", Cell::Str("Lefèvre1".into())),
            ("1.5 + row.nom", Cell::Str("1.5Lefèvre".into())),
            ("row.nom + '!'", Cell::Str("Lefèvre!".into())),
            ("row.nom + ()", Cell::Str("Lefèvre".into())),
            ("row.n.parse_int() * 2 - 1", Cell::Int(-85)),
            ("row.n.parse_int() / 5", Cell::Int(-8)),
            ("row.n.parse_int() % 5", Cell::Int(-2)),
            (
                "row.n.parse_int() + row.x.parse_float()",
                Cell::Float(-39.5),
            ),
            ("-row.n.parse_int()", Cell::Int(42)),
            ("!row.nom.is_empty()", Cell::Bool(true)),
            ("row.nom.len() >= 7 && row.nom != \"x\"", Cell::Bool(true)),
            ("row.nom.len() < 3 || row.nom > \"A\"", Cell::Bool(true)),
            ("row.nom == 7", Cell::Bool(false)),
            ("row.nom.len() == 7.0", Cell::Bool(true)),
            ("row.x.parse_float() + 0.1 == 2.6", Cell::Bool(true)),
            ("'a' < 'b'", Cell::Bool(true)),
            ("()", Cell::Null),
            ("true", Cell::Bool(true)),
            ("row.nom;", Cell::Str("Lefèvre".into())),
        ];
        for (source, expected) in cases {
            let (native, rhai) = both(source, &text, Some(&n));
            assert_eq!(native, rhai, "{source}");
            assert_eq!(native, expected, "{source}");
        }
        let obj = json!({"nom": "Zoé", "n": 12, "f": 0.5, "b": true, "z": null});
        let obj = obj.as_object().unwrap();
        let cases = [
            ("row.nom.len()", Cell::Int(3)),
            ("row.n * 2", Cell::Int(24)),
            ("row.f + row.n", Cell::Float(12.5)),
            ("row.b && row.n > 10", Cell::Bool(true)),
            ("row.z == ()", Cell::Bool(true)),
            ("row.z", Cell::Null),
        ];
        for (source, expected) in cases {
            let (native, rhai) = both(source, &RowRef::Json(obj), None);
            assert_eq!(native, rhai, "{source}");
            assert_eq!(native, expected, "{source}");
        }
    }
}
