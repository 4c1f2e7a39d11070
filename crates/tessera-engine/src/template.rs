//! String templates in command lines, environments, URLs and headers: `{{path}}` from the node
//! scope (input fields, `input.x`, `params.x`, and `tessera.task_id|node|attempt` for commands)
//! and `${env:NAME}` secret references.

use serde_json::Value;

/// Renders `template`; `object_path` turns an object reference into a local file path.
pub(crate) fn render(
    template: &str,
    input: &Value,
    params: &serde_json::Map<String, Value>,
    object_path: &mut dyn FnMut(&Value) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    loop {
        let next_braces = rest.find("{{");
        let next_env = rest.find("${env:");
        let (at, is_env) = match (next_braces, next_env) {
            (None, None) => break,
            (Some(a), None) => (a, false),
            (None, Some(b)) => (b, true),
            (Some(a), Some(b)) => {
                if a < b {
                    (a, false)
                } else {
                    (b, true)
                }
            }
        };
        out.push_str(&rest[..at]);
        if is_env {
            let after = &rest[at + 6..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed `${{env:` in `{template}`"))?;
            let name = after[..end].trim();
            let value = std::env::var(name).map_err(|_| {
                format!("environment variable `{name}` (referenced as ${{env:{name}}}) is not set")
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            let after = &rest[at + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed `{{{{` in `{template}`"))?;
            let path = after[..end].trim();
            let value = lookup(path, input, params).ok_or_else(|| {
                format!("placeholder `{{{{{path}}}}}` has no value in the node's input")
            })?;
            out.push_str(&scalar_text(value, object_path)?);
            rest = &after[end + 2..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup<'a>(
    path: &str,
    input: &'a Value,
    params: &'a serde_json::Map<String, Value>,
) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let first = parts.next()?;
    let mut cur: &Value = match first {
        "input" => input,
        "params" => {
            let key = parts.next()?;
            params.get(key)?
        }
        // Task context put in `params.tessera` by the command executor.
        "tessera" => params.get("tessera")?,
        key => input.get(key)?,
    };
    for seg in parts {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!cur.is_null()).then_some(cur)
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

    fn no_objects(_: &Value) -> Result<String, String> {
        Ok("/objects/x".into())
    }

    #[test]
    fn renders_paths_params_objects_and_env() {
        let input = json!({"name": "a b", "n": 3, "img": {"$object": "x"}, "list": [1, 2]});
        let mut params = serde_json::Map::new();
        params.insert("mode".into(), json!("fast"));
        params.insert("tessera".into(), json!({"task_id": "t-1"}));
        let r = render(
            "{{name}}|{{ input.n }}|{{params.mode}}|{{img}}|{{list.1}}|{{tessera.task_id}}|${env:PATH}",
            &input,
            &params,
            &mut no_objects,
        )
        .unwrap();
        assert!(r.starts_with("a b|3|fast|/objects/x|2|t-1|"), "{r}");
        assert!(r.len() > "a b|3|fast|/objects/x|2|t-1|".len());
    }

    #[test]
    fn missing_values_are_clear_errors() {
        let input = json!({});
        let params = serde_json::Map::new();
        let e = render("x {{nope}}", &input, &params, &mut no_objects).unwrap_err();
        assert_eq!(e, "placeholder `{{nope}}` has no value in the node's input");
        let e = render(
            "${env:TESSERA_SURELY_UNSET_VAR}",
            &input,
            &params,
            &mut no_objects,
        )
        .unwrap_err();
        assert!(e.contains("TESSERA_SURELY_UNSET_VAR"));
        assert!(render("{{oops", &input, &params, &mut no_objects).is_err());
    }
}
