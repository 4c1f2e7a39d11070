//! Starting a task from the UI: a form generated from the entry's `api.body` (a typed field
//! per field of its example, a file picker per binary field), posted as plain HTML and
//! started through the API's own path — the same checks, the same messages — then the
//! browser lands on the task's page.

use std::fmt::Write as _;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::html::{esc, seg};
use super::session::Viewer;
use super::{UiError, forged};
use crate::error::ApiError;
use crate::state::AppState;

/// What the entry asks for.
enum Body {
    /// Files (uploaded as multipart parts named as the fields) and optional JSON `data`.
    Files(Vec<String>),
    /// A JSON object shaped as this example (typed fields), or anything when `None`.
    Json(Option<Map<String, Value>>),
}

async fn body_of(state: &AppState, name: &str) -> Result<(Body, Option<String>), UiError> {
    let n = name.to_string();
    let row = state
        .blocking(move |s| s.pipeline(&n))
        .await?
        .ok_or_else(|| ApiError::not_found("pipeline", name))?;
    let pipeline = super::tasks::parse_definition(state, &row.definition)?;
    let (summary, _) = crate::routes::pipelines::api_text(&row.definition);
    let files = tessera_core::input::binary_fields(&pipeline);
    let body = if files.is_empty() {
        Body::Json(
            tessera_core::input::example_of(&pipeline)
                .and_then(Value::as_object)
                .cloned(),
        )
    } else {
        Body::Files(files)
    };
    Ok((body, summary))
}

/// Submitted text per field name, to fill the form again after an error.
type Filled = Vec<(String, String)>;

/// The run form of one pipeline, for one viewer.
struct RunPage<'a> {
    state: &'a AppState,
    viewer: &'a Viewer,
    name: &'a str,
    summary: Option<&'a str>,
    body: &'a Body,
}

impl RunPage<'_> {
    /// The form, filled with `filled`, with what was wrong when `error` says.
    fn render(&self, filled: &Filled, error: Option<(&str, &Value)>) -> super::html::Page {
        let RunPage {
            state,
            viewer,
            name,
            summary,
            body,
        } = *self;
        let mut b = String::new();
        let _ = write!(
            b,
            "<h1>Run <a href=\"/ui/pipelines/{}\">{}</a></h1>\n",
            seg(name),
            esc(name)
        );
        if let Some(s) = summary {
            let _ = write!(b, "<p class=\"lead\">{}</p>\n", esc(s));
        }
        if let Some((message, details)) = error {
            let _ = write!(
                b,
                "<div class=\"error\" role=\"alert\"><p>{}</p>",
                esc(message)
            );
            if let Some(list) = details.as_array().filter(|l| !l.is_empty()) {
                b.push_str("<ul>");
                for d in list {
                    let field = d["field"].as_str().or(d["path"].as_str()).unwrap_or("");
                    let msg = d["message"].as_str().unwrap_or("");
                    let _ = write!(b, "<li><code>{}</code>: {}</li>", esc(field), esc(msg));
                }
                b.push_str("</ul>");
            }
            b.push_str("</div>\n");
        }
        let value_of = |key: &str| {
            filled
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let action = format!("/ui/pipelines/{}/run?csrf={}", seg(name), seg(&viewer.csrf));
        match body {
            Body::Files(files) => {
                let _ = write!(
                    b,
                    "<form method=\"post\" action=\"{}\" enctype=\"multipart/form-data\" class=\"run\">",
                    esc(&action)
                );
                for f in files {
                    let _ = write!(
                        b,
                        "<label for=\"f-{0}\">{0} (file)</label><input id=\"f-{0}\" name=\"{0}\" type=\"file\" required>",
                        esc(f)
                    );
                }
                let _ = write!(
                    b,
                    "<label for=\"f-data\">Other input fields (JSON object, optional)</label>\
                 <textarea id=\"f-data\" name=\"data\" rows=\"4\" spellcheck=\"false\">{}</textarea>",
                    esc(value_of("data").unwrap_or(""))
                );
            }
            Body::Json(example) => {
                let _ = write!(
                    b,
                    "<form method=\"post\" action=\"{}\" class=\"run\">",
                    esc(&action)
                );
                match example {
                    Some(fields) => {
                        for (key, ex) in fields {
                            b.push_str(&field(key, ex, value_of(&format!("f.{key}"))));
                        }
                    }
                    None => {
                        let _ = write!(
                            b,
                            "<label for=\"f-input\">Input (JSON object)</label>\
                         <textarea id=\"f-input\" name=\"input\" rows=\"8\" spellcheck=\"false\">{}</textarea>",
                            esc(value_of("input").unwrap_or("{}"))
                        );
                    }
                }
            }
        }
        b.push_str("<button type=\"submit\">Start the task</button></form>\n");
        super::pipelines::shell(state, viewer, &format!("Run {name}"), "pipelines", b)
    }

    /// The form again, filled as it was sent, with what was wrong.
    fn rejected(&self, filled: &Filled, e: ApiError) -> Response {
        let public = e.public();
        let mut page = self.render(filled, Some((&public.message, &public.details)));
        page.status = if public.status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            StatusCode::BAD_REQUEST
        } else {
            public.status
        };
        page.into_response()
    }
}

/// One typed field for `key`, whose example value is `ex`.
fn field(key: &str, ex: &Value, filled: Option<&str>) -> String {
    let id = format!("f-{}", seg(key));
    let name = format!("f.{key}");
    let (id, name, label) = (esc(&id), esc(&name), esc(key));
    match ex {
        Value::String(s) => format!(
            "<label for=\"{id}\">{label} (text)</label><input id=\"{id}\" name=\"{name}\" type=\"text\" value=\"{}\">",
            esc(filled.unwrap_or(s))
        ),
        Value::Number(n) => {
            let (kind, step) = if n.is_f64() {
                ("number", "any")
            } else {
                ("whole number", "1")
            };
            format!(
                "<label for=\"{id}\">{label} ({kind})</label><input id=\"{id}\" name=\"{name}\" type=\"number\" step=\"{step}\" value=\"{}\">",
                esc(filled.unwrap_or(&n.to_string()))
            )
        }
        Value::Bool(v) => {
            let checked = filled.map_or(*v, |f| f == "true" || f == "on");
            format!(
                "<div class=\"check\"><input type=\"hidden\" name=\"{name}\" value=\"false\"><input id=\"{id}\" name=\"{name}\" type=\"checkbox\" value=\"true\"{}><label for=\"{id}\">{label}</label></div>",
                if checked { " checked" } else { "" }
            )
        }
        other => {
            let kind = if other.is_array() {
                "list, JSON"
            } else {
                "JSON"
            };
            let text = filled
                .map(str::to_string)
                .unwrap_or_else(|| serde_json::to_string_pretty(other).unwrap_or_default());
            format!(
                "<label for=\"{id}\">{label} ({kind})</label><textarea id=\"{id}\" name=\"{name}\" rows=\"4\" spellcheck=\"false\">{}</textarea>",
                esc(&text)
            )
        }
    }
}

pub async fn form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    viewer
        .caller
        .require(&[crate::auth::Role::User, crate::auth::Role::Admin])?;
    let (body, summary) = body_of(&state, &name).await?;
    let page = RunPage {
        state: &state,
        viewer: &viewer,
        name: &name,
        summary: summary.as_deref(),
        body: &body,
    };
    Ok(page.render(&Vec::new(), None).into_response())
}

#[derive(Debug, Deserialize)]
pub struct RunQuery {
    csrf: Option<String>,
}

/// The typed JSON input of a form's fields (`f.KEY`), by the example's types.
fn typed_input(example: &Map<String, Value>, filled: &Filled) -> Result<Value, ApiError> {
    let mut out = Map::new();
    let mut problems = Vec::new();
    for (key, ex) in example {
        // A checkbox sends its hidden `false`, then `true` when checked: the last one wins.
        let Some(text) = filled
            .iter()
            .rev()
            .find(|(k, _)| k.strip_prefix("f.") == Some(key))
            .map(|(_, v)| v.as_str())
        else {
            continue;
        };
        let value = match ex {
            Value::String(_) => Ok(Value::String(text.to_string())),
            Value::Number(n) if !n.is_f64() => text
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("`{text}` is not a whole number")),
            Value::Number(_) => text
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("`{text}` is not a number")),
            Value::Bool(_) => match text {
                "true" | "on" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                other => Err(format!("`{other}` is not true or false")),
            },
            _ => serde_json::from_str(text).map_err(|e| format!("not JSON: {e}")),
        };
        match value {
            Ok(v) => {
                out.insert(key.clone(), v);
            }
            Err(message) => problems.push(serde_json::json!({"field": key, "message": message})),
        }
    }
    if problems.is_empty() {
        Ok(Value::Object(out))
    } else {
        Err(ApiError::BadRequest {
            message: "some fields are not what the pipeline expects".into(),
            details: Value::Array(problems),
        })
    }
}

pub async fn submit(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(q): Query<RunQuery>,
    request: Request,
) -> Result<Response, UiError> {
    if !super::session::csrf_ok(request.headers(), q.csrf.as_deref()) {
        return Err(forged());
    }
    let (body, summary) = body_of(&state, &name).await?;
    let page = RunPage {
        state: &state,
        viewer: &viewer,
        name: &name,
        summary: summary.as_deref(),
        body: &body,
    };
    let (request, filled) = match &body {
        // Multipart goes to the API's path as it is (its parts are streamed to the store).
        Body::Files(_) => (request, Vec::new()),
        Body::Json(example) => {
            let limit = state.limits.max_body;
            let bytes = axum::body::to_bytes(request.into_body(), limit)
                .await
                .map_err(|_| ApiError::TooLarge { limit })?;
            let filled: Filled = serde_urlencoded::from_bytes(&bytes)
                .map_err(|e| ApiError::bad_request(format!("the form is malformed: {e}")))?;
            let json = match example {
                Some(ex) => typed_input(ex, &filled),
                None => {
                    let text = filled
                        .iter()
                        .find(|(k, _)| k == "input")
                        .map_or("", |(_, v)| v.as_str());
                    serde_json::from_str::<Value>(if text.trim().is_empty() { "{}" } else { text })
                        .map_err(|e| ApiError::bad_request(format!("the input is not JSON: {e}")))
                }
            };
            let json = match json {
                Ok(j) => j,
                Err(e) => return Ok(page.rejected(&filled, e)),
            };
            let request = Request::builder()
                .method("POST")
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(json.to_string()))
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            (request, filled)
        }
    };
    match crate::routes::submit::start(&state, &viewer.caller, &name, request).await {
        Ok(id) => Ok(Redirect::to(&format!("/ui/tasks/{}", seg(&id))).into_response()),
        Err(
            e @ (ApiError::BadRequest { .. }
            | ApiError::Invalid { .. }
            | ApiError::UnsupportedMediaType(_)),
        ) => Ok(page.rejected(&filled, e)),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_take_the_example_types() {
        let ex = json!({"name": "a", "n": 1.5, "k": 1, "ok": false, "xs": [1]});
        let ex = ex.as_object().unwrap();
        let filled: Filled = vec![
            ("f.name".into(), "bob".into()),
            ("f.n".into(), "2.5".into()),
            ("f.k".into(), "7".into()),
            ("f.ok".into(), "false".into()),
            ("f.ok".into(), "true".into()),
            ("f.xs".into(), "[1, 2]".into()),
        ];
        assert_eq!(
            typed_input(ex, &filled).unwrap(),
            json!({"name": "bob", "n": 2.5, "k": 7, "ok": true, "xs": [1, 2]})
        );
        let bad: Filled = vec![
            ("f.n".into(), "two".into()),
            ("f.k".into(), "2.5".into()),
            ("f.ok".into(), "maybe".into()),
            ("f.xs".into(), "[1,".into()),
        ];
        let ApiError::BadRequest { details, .. } = typed_input(ex, &bad).unwrap_err() else {
            panic!("a bad request");
        };
        let fields: Vec<&str> = details
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["n", "k", "ok", "xs"]);
    }

    #[test]
    fn fields_escape_hostile_keys_and_values() {
        let html = field("\"><script>x</script>", &json!("<b>"), None);
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
    }
}
