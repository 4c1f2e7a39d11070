//! Parsing a `raster` node's fields (operation, inputs, output, tiling), every error named with
//! its field (`inputs.dem.object`, `expr[1]`, …); band-math expressions are parsed here so a
//! syntax error or an unknown input is reported when the pipeline is created.

use serde_json::Value;

use super::Fields;
use crate::datapath::DataPath;
use crate::model::*;

pub(super) const FIELDS: &[&str] = &[
    "operation",
    "inputs",
    "expr",
    "band",
    "scale",
    "unit",
    "output",
    "dtype",
    "nodata",
    "cache_dir",
    "overwrite",
    "tile",
    "compute_tile",
    "threads",
];

const DTYPES: &[&str] = &["u8", "u16", "i16", "u32", "i32", "f32", "f64"];

impl Fields<'_> {
    fn number(&mut self, field: &str) -> Option<f64> {
        let v = self.obj.get(field)?;
        match v.as_f64() {
            Some(n) => Some(n),
            None => {
                self.err(field, format!("expected a number, got {}", json_type(v)));
                None
            }
        }
    }

    fn tile_size(&mut self, field: &str, default: usize) -> usize {
        match self.uint(field) {
            None => default,
            Some(0) => {
                self.err(field, "must be at least 1 pixel");
                default
            }
            Some(n) => n as usize,
        }
    }
}

pub(super) fn parse_raster(f: &mut Fields) -> Option<RasterSpec> {
    let inputs = parse_inputs(f);
    let operation = parse_operation(f, inputs.as_deref());
    let output = parse_output(f);
    let dtype = match f.string("dtype") {
        Some(d) if !DTYPES.contains(&d.as_str()) => {
            f.err(
                "dtype",
                format!("unknown type `{d}` (expected one of {})", DTYPES.join(", ")),
            );
            None
        }
        other => other,
    };
    let nodata = f.number("nodata");
    let cache_dir = f.string("cache_dir");
    let overwrite = f.bool("overwrite").unwrap_or(false);
    let tile = f.tile_size("tile", 512);
    let compute_tile = f.tile_size("compute_tile", 256);
    let threads = f.uint("threads").unwrap_or(0) as usize;
    Some(RasterSpec {
        operation: operation?,
        inputs: inputs?,
        output: output?,
        dtype,
        nodata,
        cache_dir,
        overwrite,
        tile,
        compute_tile,
        threads,
    })
}

/// `inputs: {a: dem.tif, b: {object: in.out.ortho}}` (a string is a path).
fn parse_inputs(f: &mut Fields) -> Option<Vec<(String, RasterInput)>> {
    let Some(value) = f.obj.get("inputs") else {
        f.err(
            "inputs",
            "missing field `inputs` (e.g. {dem: data/dem.tif, b: {object: in.out.image}})",
        );
        return None;
    };
    let Value::Object(map) = value else {
        let t = json_type(value);
        f.err(
            "inputs",
            format!("expected an object of named inputs, got {t}"),
        );
        return None;
    };
    if map.is_empty() {
        f.err("inputs", "at least one input is needed");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (name, v) in map.clone() {
        let field = format!("inputs.{name}");
        if !valid_name(&name) {
            f.err(
                &field,
                format!("`{name}` is not a usable input name (letters, digits, `_`; not starting with a digit)"),
            );
            ok = false;
            continue;
        }
        let input = match &v {
            Value::String(p) if !p.trim().is_empty() => Some(RasterInput::Path(p.clone())),
            Value::Object(o) => match (o.get("path"), o.get("object"), o.len()) {
                (Some(Value::String(p)), None, 1) => Some(RasterInput::Path(p.clone())),
                (None, Some(Value::String(o)), 1) => match DataPath::parse(o) {
                    Ok(p) => Some(RasterInput::Object(p)),
                    Err(e) => {
                        f.err(&format!("{field}.object"), e.to_string());
                        None
                    }
                },
                _ => {
                    f.err(
                        &field,
                        "expected {path: FILE} or {object: DATA_PATH}, with nothing else",
                    );
                    None
                }
            },
            other => {
                let t = json_type(other);
                f.err(
                    &field,
                    format!("expected a path or {{object: DATA_PATH}}, got {t}"),
                );
                None
            }
        };
        match input {
            Some(i) => out.push((name, i)),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// An expression variable: an identifier that is not a number.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

fn parse_operation(
    f: &mut Fields,
    inputs: Option<&[(String, RasterInput)]>,
) -> Option<RasterOperation> {
    let operation = f.string("operation").unwrap_or_else(|| {
        if f.obj.contains_key("expr") {
            "calc"
        } else {
            ""
        }
        .to_string()
    });
    match operation.as_str() {
        "calc" => {
            for field in ["band", "scale", "unit"] {
                if f.obj.contains_key(field) {
                    f.err(field, "only for `operation: slope`");
                }
            }
            let expressions = f.string_list("expr", f.obj.get("expr"));
            if expressions.is_empty() {
                f.err("expr", "missing field `expr` (e.g. \"(b - a) / (b + a)\")");
                return None;
            }
            if let Some(inputs) = inputs {
                let names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
                for (i, text) in expressions.iter().enumerate() {
                    if let Err(e) = tessera_raster::calc::Expr::parse(text, &names) {
                        let field = if expressions.len() == 1 {
                            "expr".to_string()
                        } else {
                            format!("expr[{i}]")
                        };
                        f.err(&field, format!("column {}: {}", e.column, e.message));
                    }
                }
            }
            Some(RasterOperation::Calc { expressions })
        }
        "slope" => {
            if f.obj.contains_key("expr") {
                f.err("expr", "only for `operation: calc`");
            }
            if let Some(inputs) = inputs
                && inputs.len() != 1
            {
                f.err(
                    "inputs",
                    format!("slope takes one input, got {}", inputs.len()),
                );
            }
            let band = match f.uint("band") {
                Some(0) => {
                    f.err("band", "bands are numbered from 1");
                    None
                }
                Some(b) => Some(b as usize - 1),
                None => Some(0),
            };
            let scale = match f.number("scale") {
                Some(s) if s <= 0.0 || !s.is_finite() => {
                    f.err("scale", "must be a positive number");
                    None
                }
                Some(s) => Some(s),
                None => Some(1.0),
            };
            let percent = match f.string("unit").as_deref() {
                None | Some("degrees") => Some(false),
                Some("percent") => Some(true),
                Some(other) => {
                    f.err(
                        "unit",
                        format!("unknown unit `{other}` (degrees or percent)"),
                    );
                    None
                }
            };
            Some(RasterOperation::Slope {
                band: band?,
                scale: scale?,
                percent: percent?,
            })
        }
        "" => {
            f.err("operation", "missing field `operation` (calc or slope)");
            None
        }
        other => {
            f.err(
                "operation",
                format!("unknown operation `{other}` (calc or slope)"),
            );
            None
        }
    }
}

/// `output: out.tif`, `{path: out.tif}`, `{object: true}` or `{object: name.tif}`; default: a
/// new object.
fn parse_output(f: &mut Fields) -> Option<RasterTarget> {
    let Some(value) = f.obj.get("output").cloned() else {
        return Some(RasterTarget::Object { name: None });
    };
    match value {
        Value::String(p) if !p.trim().is_empty() => Some(RasterTarget::Path(p)),
        Value::Object(o) => match (o.get("path"), o.get("object"), o.len()) {
            (Some(Value::String(p)), None, 1) => Some(RasterTarget::Path(p.clone())),
            (None, Some(Value::Bool(true)), 1) => Some(RasterTarget::Object { name: None }),
            (None, Some(Value::String(name)), 1) => Some(RasterTarget::Object {
                name: Some(name.clone()),
            }),
            _ => {
                f.err(
                    "output",
                    "expected a path, {path: FILE}, {object: true} or {object: NAME}",
                );
                None
            }
        },
        other => {
            let t = json_type(&other);
            f.err("output", format!("expected a path or an object, got {t}"));
            None
        }
    }
}
