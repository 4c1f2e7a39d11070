//! The OpenAPI 3 document of the server, built from the routes and the stored pipelines.
//!
//! OpenAPI 3.1, hand-built: the fixed routes of §7 and the shared components are data
//! (`assets/openapi/document.json` and `components.json`, embedded); to them this module adds one
//! `POST /api/v1/services/<route>` operation per stored pipeline, its request body derived from
//! the entry's `api.body`. In the assets, an answer written as a plain string is an error answer
//! with that description (shared `Error` schema); every operation that is not public
//! (`"security": []`) also gets the 401/403/500/507 answers of the token layer and error
//! mapping.

use std::collections::HashSet;
use std::sync::LazyLock;

use serde_json::{Map, Value, json};

/// The fixed part of the document, parsed once.
static BASE: LazyLock<Value> = LazyLock::new(|| {
    let mut doc: Value = serde_json::from_str(include_str!("../assets/openapi/document.json"))
        .expect("assets/openapi/document.json is valid JSON");
    doc["components"] = serde_json::from_str(include_str!("../assets/openapi/components.json"))
        .expect("assets/openapi/components.json is valid JSON");
    doc["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    for item in doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|m| m.values_mut())
    {
        for op in item
            .as_object_mut()
            .into_iter()
            .flat_map(|m| m.values_mut())
        {
            finish_operation(op);
        }
    }
    doc
});

/// What the document needs to know about one stored pipeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineDoc {
    /// The pipeline's name: its route under `/api/v1/services/`.
    pub name: String,
    pub summary: Option<String>,
    pub description: Option<String>,
    /// The entry's `api.body`: an example object, a binary field name, or a list of them.
    pub body: Option<Value>,
}

/// The OpenAPI 3.1 document for the server with these pipelines. `server_url` (the server's
/// public base URL) becomes its only `servers` entry; without it, `/`: the document's origin.
pub fn document(pipelines: &[PipelineDoc], server_url: Option<&str>) -> Value {
    let mut doc = BASE.clone();
    let url = server_url
        .map(|u| u.trim_end_matches('/'))
        .filter(|u| !u.is_empty());
    doc["servers"] = json!([{"url": url.unwrap_or("/")}]);
    let Some(paths) = doc["paths"].as_object_mut() else {
        return doc;
    };
    let mut op_ids: HashSet<String> = HashSet::new();
    for p in pipelines {
        let mut op = service_operation(p, &unique_op_id(&p.name, &mut op_ids));
        finish_operation(&mut op);
        paths.insert(format!("/api/v1/services/{}", p.name), json!({"post": op}));
    }
    doc
}

/// `/metrics`, `/openapi.json` and `/docs` as served when tokens are on: they need a token
/// (an admin's for `/metrics`).
pub fn protect_info_routes(doc: &mut Value) {
    for (path, admin) in [
        ("/metrics", true),
        ("/openapi.json", false),
        ("/docs", false),
    ] {
        let Some(op) = doc["paths"][path]["get"].as_object_mut() else {
            continue;
        };
        op.remove("security");
        if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
            responses.insert(
                "401".into(),
                json!({"$ref": "#/components/responses/Unauthorized"}),
            );
            if admin {
                responses.insert(
                    "403".into(),
                    json!({"$ref": "#/components/responses/Forbidden"}),
                );
            }
        }
    }
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A JSON answer with a `Location` header.
fn located(description: &str, body: Value) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": body}},
        "headers": {"Location": {"$ref": "#/components/headers/Location"}}
    })
}

/// Expands error answers given as strings, adds the answers every protected operation can give,
/// and orders answers by status.
fn finish_operation(op: &mut Value) {
    let public = op.get("security").is_some_and(|s| s == &json!([]));
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    for r in responses.values_mut() {
        if let Value::String(description) = r {
            *r = json!({"description": description,
                "content": {"application/json": {"schema": schema("Error")}}});
        }
    }
    if !public {
        for (status, name) in [
            ("401", "Unauthorized"),
            ("403", "Forbidden"),
            ("500", "Internal"),
            ("507", "StorageFull"),
        ] {
            responses
                .entry(status)
                .or_insert_with(|| json!({"$ref": format!("#/components/responses/{name}")}));
        }
    }
    let mut sorted: Vec<(String, Value)> = std::mem::take(responses).into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    responses.extend(sorted);
}

/// `POST /api/v1/services/<name>` for one pipeline.
fn service_operation(p: &PipelineDoc, op_id: &str) -> Value {
    let summary = p
        .summary
        .clone()
        .unwrap_or_else(|| format!("Start a `{}` task", p.name));
    let mut description = p.description.clone().unwrap_or_default();
    if !description.is_empty() {
        description.push_str("\n\n");
    }
    description.push_str(&format!(
        "Starts a task of pipeline `{}` and answers at once; follow it at the `Location`.",
        p.name
    ));
    json!({
        "operationId": op_id,
        "tags": ["services"],
        "summary": summary,
        "description": description,
        "requestBody": request_body(p.body.as_ref()),
        "responses": {
            "202": located("Task created.", schema("TaskAccepted")),
            "400": "Malformed JSON, or a required multipart field is missing.",
            "404": "No such pipeline (deleted since this document was made).",
            "413": "The body is larger than the configured limit.",
            "415": "Wrong content type for this pipeline's body.",
            "422": {"$ref": "#/components/responses/Invalid"},
            "503": "A service the pipeline calls is unavailable."
        }
    })
}

/// The request body an entry's `api.body` asks for.
fn request_body(body: Option<&Value>) -> Value {
    match body {
        Some(example @ Value::Object(_)) => json!({"required": true, "content": {
            "application/json": {"schema": schema_of_example(example), "example": example}
        }}),
        Some(Value::String(field)) => multipart(&[field.as_str()]),
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => {
            let fields: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            multipart(&fields)
        }
        _ => json!({"required": true, "content": {"application/json": {
            "schema": {"type": "object", "description": "Any JSON object: the task's input."}
        }}}),
    }
}

/// A multipart body with these required binary fields and an optional `data` field.
fn multipart(fields: &[&str]) -> Value {
    let mut properties = Map::new();
    for f in fields {
        properties.insert(
            f.to_string(),
            json!({"$ref": "#/components/schemas/Binary"}),
        );
    }
    properties.insert("data".into(), schema("DataField"));
    json!({"required": true, "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "required": fields,
        "properties": properties
    }}}})
}

/// A JSON schema matching the types of an example value (every object field required).
fn schema_of_example(example: &Value) -> Value {
    match example {
        Value::Null => json!({}),
        Value::Bool(_) => json!({"type": "boolean"}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"type": "integer"}),
        Value::Number(_) => json!({"type": "number"}),
        Value::String(_) => json!({"type": "string"}),
        Value::Array(items) => json!({
            "type": "array",
            "items": items.first().map(schema_of_example).unwrap_or_else(|| json!({}))
        }),
        Value::Object(fields) => {
            let properties: Map<String, Value> = fields
                .iter()
                .map(|(k, v)| (k.clone(), schema_of_example(v)))
                .collect();
            json!({"type": "object", "required": fields.keys().collect::<Vec<_>>(),
                   "properties": properties})
        }
    }
}

/// `run` + the route's words in PascalCase (`face-blur` → `runFaceBlur`), made unique.
fn unique_op_id(name: &str, taken: &mut HashSet<String>) -> String {
    let mut base = String::from("run");
    for word in name.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            base.push(first.to_ascii_uppercase());
            base.extend(chars);
        }
    }
    let mut id = base.clone();
    let mut n = 2;
    while !taken.insert(id.clone()) {
        id = format!("{base}{n}");
        n += 1;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_pipelines() -> Value {
        let pipelines = [
            PipelineDoc {
                name: "geo/enrich".into(),
                summary: Some("Enrich places".into()),
                description: Some("Adds data to places.".into()),
                body: Some(json!({
                    "name": "Paris", "count": 3, "ratio": 0.5, "tags": ["a"], "empty": [],
                    "opts": {"deep": true, "points": [{"x": 1.5, "label": "p"}]}
                })),
            },
            PipelineDoc {
                name: "face-blur".into(),
                summary: None,
                description: None,
                body: Some(json!("image")),
            },
        ];
        document(&pipelines, Some("https://tessera.example/"))
    }

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method != "parameters" {
                    ops.push((method.clone(), path.clone(), op));
                }
            }
        }
        ops
    }

    #[test]
    fn json_example_body_becomes_a_typed_schema() {
        let doc = two_pipelines();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "https://tessera.example");
        let op = &doc["paths"]["/api/v1/services/geo/enrich"]["post"];
        assert_eq!(op["operationId"], "runGeoEnrich");
        assert_eq!(op["tags"], json!(["services"]));
        assert_eq!(op["summary"], "Enrich places");
        assert!(op["description"].as_str().unwrap().starts_with("Adds data"));
        let media = &op["requestBody"]["content"]["application/json"];
        assert_eq!(media["example"]["count"], 3);
        let s = &media["schema"];
        assert_eq!(s["type"], "object");
        assert_eq!(
            s["required"],
            json!(["name", "count", "ratio", "tags", "empty", "opts"])
        );
        let p = &s["properties"];
        assert_eq!(p["name"]["type"], "string");
        assert_eq!(p["count"]["type"], "integer");
        assert_eq!(p["ratio"]["type"], "number");
        assert_eq!(
            p["tags"],
            json!({"type": "array", "items": {"type": "string"}})
        );
        assert_eq!(p["empty"], json!({"type": "array", "items": {}}));
        assert_eq!(p["opts"]["required"], json!(["deep", "points"]));
        assert_eq!(p["opts"]["properties"]["deep"]["type"], "boolean");
        let point = &p["opts"]["properties"]["points"]["items"];
        assert_eq!(point["properties"]["x"]["type"], "number");
        assert_eq!(point["required"], json!(["x", "label"]));
        let r = &op["responses"];
        for status in [
            "202", "400", "401", "403", "404", "413", "415", "422", "500", "503",
        ] {
            assert!(r.get(status).is_some(), "missing {status}");
        }
        assert_eq!(
            r["202"]["headers"]["Location"]["$ref"],
            "#/components/headers/Location"
        );
        let statuses: Vec<&String> = r.as_object().unwrap().keys().collect();
        let mut sorted = statuses.clone();
        sorted.sort();
        assert_eq!(statuses, sorted);
    }

    #[test]
    fn binary_body_becomes_multipart() {
        let doc = two_pipelines();
        let op = &doc["paths"]["/api/v1/services/face-blur"]["post"];
        assert_eq!(op["operationId"], "runFaceBlur");
        assert_eq!(op["summary"], "Start a `face-blur` task");
        let content = op["requestBody"]["content"].as_object().unwrap();
        assert_eq!(content.keys().collect::<Vec<_>>(), ["multipart/form-data"]);
        let s = &content["multipart/form-data"]["schema"];
        assert_eq!(s["required"], json!(["image"]));
        assert_eq!(s["properties"]["image"], schema("Binary"));
        assert_eq!(s["properties"]["data"], schema("DataField"));
        let binary = &doc["components"]["schemas"]["Binary"];
        assert_eq!(
            (&binary["type"], &binary["format"]),
            (&json!("string"), &json!("binary"))
        );
        let several = request_body(Some(&json!(["a", "b"])));
        let s = &several["content"]["multipart/form-data"]["schema"];
        assert_eq!(s["required"], json!(["a", "b"]));
        assert_eq!(s["properties"]["b"], schema("Binary"));
        let any = request_body(None);
        assert_eq!(
            any["content"]["application/json"]["schema"]["type"],
            "object"
        );
    }

    #[test]
    fn fixed_routes_are_all_documented() {
        let doc = two_pipelines();
        let ops = operations(&doc);
        let expected = [
            ("post", "/api/v1/pipelines", "201"),
            ("get", "/api/v1/pipelines", "200"),
            ("get", "/api/v1/pipelines/{name}", "404"),
            ("delete", "/api/v1/pipelines/{name}", "204"),
            ("get", "/api/v1/tasks", "400"),
            ("get", "/api/v1/tasks/{id}", "404"),
            ("delete", "/api/v1/tasks/{id}", "409"),
            ("get", "/api/v1/tasks/{id}/result", "409"),
            ("get", "/api/v1/tasks/{id}/state", "200"),
            ("get", "/api/v1/tasks/{id}/nodes/{node}/log", "200"),
            ("get", "/api/v1/tasks/{id}/nodes/{loop}/items", "200"),
            ("post", "/api/v1/tasks/{id}/cancel", "202"),
            ("post", "/api/v1/tasks/{id}/resume", "409"),
            ("get", "/api/v1/objects/{id}", "200"),
            ("post", "/api/v1/registry/announce", "422"),
            ("get", "/api/v1/registry/services", "200"),
            ("post", "/api/v1/callbacks/{token}", "409"),
            ("get", "/api/v1/stats", "200"),
            ("get", "/api/v1/workers", "200"),
            ("get", "/api/v1/schedules", "200"),
            ("get", "/api/v1/schedules/{name}", "404"),
            ("post", "/api/v1/schedules/{name}/pause", "200"),
            ("post", "/api/v1/schedules/{name}/resume", "200"),
            ("post", "/api/v1/schedules/{name}/backfill", "201"),
            ("get", "/api/v1/events", "200"),
            ("get", "/health", "200"),
            ("get", "/metrics", "200"),
            ("get", "/openapi.json", "200"),
            ("get", "/docs", "200"),
        ];
        for (method, path, status) in expected {
            let op = &doc["paths"][path][method];
            assert!(
                op["responses"].get(status).is_some(),
                "{method} {path} {status}"
            );
        }
        assert_eq!(ops.len(), expected.len() + 2);
        let mut ids = HashSet::new();
        for (method, path, op) in &ops {
            assert!(
                ids.insert(op["operationId"].as_str().unwrap()),
                "{method} {path}"
            );
            assert_eq!(op["tags"].as_array().unwrap().len(), 1);
            let public = op.get("security") == Some(&json!([]));
            assert_eq!(op["responses"].get("401").is_none(), public, "{path}");
        }
        let list = &doc["paths"]["/api/v1/tasks"]["get"]["parameters"];
        assert_eq!(list[2]["schema"]["maximum"], 1000);
        assert_eq!(list[2]["schema"]["default"], 50);
        let states = &doc["components"]["schemas"]["TaskState"]["enum"];
        assert_eq!(states.as_array().unwrap().len(), 5);
        let bearer = &doc["components"]["securitySchemes"]["bearer"];
        assert_eq!(
            (&bearer["type"], &bearer["scheme"]),
            (&json!("http"), &json!("bearer"))
        );
        let create = &doc["paths"]["/api/v1/pipelines"]["post"];
        assert!(
            create["requestBody"]["content"]
                .get("application/yaml")
                .is_some()
        );
        assert!(
            create["responses"]["200"]["headers"]
                .get("Location")
                .is_some()
        );
    }

    #[test]
    fn operation_ids_stay_unique() {
        let doc = document(
            &[
                PipelineDoc {
                    name: "a-b".into(),
                    ..Default::default()
                },
                PipelineDoc {
                    name: "a_b".into(),
                    ..Default::default()
                },
            ],
            None,
        );
        assert_eq!(doc["servers"], json!([{"url": "/"}]));
        assert_eq!(
            doc["paths"]["/api/v1/services/a-b"]["post"]["operationId"],
            "runAB"
        );
        assert_eq!(
            doc["paths"]["/api/v1/services/a_b"]["post"]["operationId"],
            "runAB2"
        );
    }

    /// Every `$ref` points at a defined component, and every error answer uses `Error`.
    #[test]
    fn refs_resolve_and_errors_share_one_schema() {
        fn walk<'a>(v: &'a Value, refs: &mut Vec<&'a str>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        refs.push(r);
                    }
                    m.values().for_each(|x| walk(x, refs));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, refs)),
                _ => {}
            }
        }
        for doc in [two_pipelines(), document(&[], None)] {
            let mut refs = Vec::new();
            walk(&doc, &mut refs);
            assert!(refs.len() > 50);
            for r in refs {
                assert!(r.starts_with("#/components/"), "{r}");
                assert!(doc.pointer(&r[1..]).is_some(), "dangling {r}");
            }
            for (method, path, op) in operations(&doc) {
                for (status, resp) in op["responses"].as_object().unwrap() {
                    let resp = match resp.get("$ref").and_then(Value::as_str) {
                        Some(r) => doc.pointer(&r[1..]).unwrap(),
                        None => resp,
                    };
                    if status.as_str() >= "400" {
                        let s = &resp["content"]["application/json"]["schema"];
                        let direct = s["$ref"] == "#/components/schemas/Error";
                        let all_of = s["allOf"][0]["$ref"] == "#/components/schemas/Error";
                        assert!(direct || all_of, "{method} {path} {status}");
                    }
                }
            }
        }
    }
}
