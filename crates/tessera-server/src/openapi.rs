//! The OpenAPI 3 document of the server, built from the routes and the stored pipelines.
//!
//! Hand-built JSON (OpenAPI 3.1): the fixed routes of §7, plus one
//! `POST /api/v1/services/<route>` operation per stored pipeline whose request body is derived
//! from the entry's `api.body`. Every error answer uses the shared `Error` schema, and every
//! operation except the public ones (`/health`, `/metrics`, `/openapi.json`, `/docs`) documents
//! the 401/403/500 answers of the bearer-token layer and the error mapping.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

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

/// The OpenAPI 3.1 document for the server with these pipelines; `server_url` (the server's
/// public base URL) becomes its only `servers` entry, otherwise clients use the document's origin.
pub fn document(pipelines: &[PipelineDoc], server_url: Option<&str>) -> Value {
    let mut paths = fixed_paths();
    let mut op_ids: HashSet<String> = HashSet::new();
    for p in pipelines {
        let op_id = unique_op_id(&p.name, &mut op_ids);
        paths.insert(
            format!("/api/v1/services/{}", p.name),
            json!({"post": service_operation(p, &op_id)}),
        );
    }
    for item in paths.values_mut() {
        for op in item
            .as_object_mut()
            .into_iter()
            .flat_map(|m| m.values_mut())
        {
            finish_operation(op);
        }
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tessera engine API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Pipelines, tasks, objects, services and live events of a Tessera engine. \
                Start a task with `POST /api/v1/services/{route}`, then follow it at the returned \
                `Location`. Errors are JSON `{\"error\": {\"code\", \"message\", \"details\"}}`.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "tags": [
            {"name": "pipelines", "description": "Create, read and delete pipeline definitions."},
            {"name": "services", "description": "Start tasks: one operation per stored pipeline."},
            {"name": "tasks", "description": "Follow, control and inspect tasks."},
            {"name": "objects", "description": "Binary values produced or received by tasks."},
            {"name": "registry", "description": "For services: announcements and callbacks."},
            {"name": "engine", "description": "Statistics, live events, health and metrics."},
            {"name": "docs", "description": "This document and its browsable form."}
        ],
        "paths": paths,
        "components": components(),
        "security": [{"bearer": []}, {}]
    });
    if let Some(url) = server_url {
        doc["servers"] = json!([{"url": url.trim_end_matches('/')}]);
    }
    doc
}

/// `#/components/schemas/{name}`.
fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn param(name: &str) -> Value {
    json!({"$ref": format!("#/components/parameters/{name}")})
}

/// A JSON answer with this schema.
fn ok(description: &str, body: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": body}}})
}

/// A JSON answer with a `Location` header.
fn ok_located(description: &str, body: Value) -> Value {
    let mut r = ok(description, body);
    r["headers"] = json!({"Location": {"$ref": "#/components/headers/Location"}});
    r
}

/// An error answer (shared `Error` schema).
fn err(description: &str) -> Value {
    ok(description, schema("Error"))
}

fn empty(description: &str) -> Value {
    json!({"description": description})
}

/// Adds the answers every protected operation can give, and orders answers by status.
fn finish_operation(op: &mut Value) {
    let public = op.get("security").is_some_and(|s| s == &json!([]));
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    if !public {
        for (status, name) in [
            ("401", "Unauthorized"),
            ("403", "Forbidden"),
            ("500", "Internal"),
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

fn fixed_paths() -> Map<String, Value> {
    let mut p = Map::new();
    let mut add = |path: &str, item: Value| {
        p.insert(path.to_string(), item);
    };
    add(
        "/api/v1/pipelines",
        json!({
            "get": {
                "operationId": "listPipelines", "tags": ["pipelines"], "summary": "List pipelines",
                "responses": {"200": ok("The stored pipelines.", schema("PipelineList"))}
            },
            "post": {
                "operationId": "putPipeline", "tags": ["pipelines"],
                "summary": "Create or replace a pipeline",
                "description": "The pipeline is stored under its entry's `api.route`. The whole \
                    definition is validated first; every problem is reported at once.",
                "requestBody": {"required": true, "content": {
                    "application/json": {"schema": schema("PipelineDefinition")},
                    "application/yaml": {"schema": {"type": "string"}},
                    "text/yaml": {"schema": {"type": "string"}}
                }},
                "responses": {
                    "201": ok_located("Created.", schema("PipelineSaved")),
                    "200": ok_located("Replaced an existing pipeline.", schema("PipelineSaved")),
                    "400": err("The body is not readable JSON or YAML."),
                    "413": err("The body is larger than the configured limit."),
                    "415": err("The body is neither JSON nor YAML."),
                    "422": {"$ref": "#/components/responses/Invalid"}
                }
            }
        }),
    );
    add(
        "/api/v1/pipelines/{name}",
        json!({
            "parameters": [param("PipelineName")],
            "get": {
                "operationId": "getPipeline", "tags": ["pipelines"],
                "summary": "Read a pipeline, its availability and task counts",
                "responses": {
                    "200": ok("The pipeline.", schema("Pipeline")),
                    "404": err("No such pipeline.")
                }
            },
            "delete": {
                "operationId": "deletePipeline", "tags": ["pipelines"], "summary": "Delete a pipeline",
                "description": "Its tasks are kept.",
                "responses": {"204": empty("Deleted."), "404": err("No such pipeline.")}
            }
        }),
    );
    add(
        "/api/v1/tasks",
        json!({"get": {
            "operationId": "listTasks", "tags": ["tasks"], "summary": "List tasks, newest first",
            "parameters": [
                {"name": "pipeline", "in": "query", "description": "Only this pipeline's tasks.",
                 "schema": {"type": "string"}},
                {"name": "state", "in": "query", "description": "Only tasks in this state.",
                 "schema": schema("TaskState")},
                {"name": "limit", "in": "query", "description": "Page size.",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}},
                {"name": "cursor", "in": "query",
                 "description": "`next_cursor` of the previous page (opaque).",
                 "schema": {"type": "string"}}
            ],
            "responses": {
                "200": ok("A page of tasks.", schema("TaskList")),
                "400": err("A query parameter is invalid (unknown state, limit out of range, bad cursor).")
            }
        }}),
    );
    add(
        "/api/v1/tasks/{id}",
        json!({
            "parameters": [param("TaskId")],
            "get": {
                "operationId": "getTask", "tags": ["tasks"],
                "summary": "A task: state, per-node states, timings, attempts, errors",
                "responses": {"200": ok("The task document.", schema("Task")), "404": err("No such task.")}
            },
            "delete": {
                "operationId": "deleteTask", "tags": ["tasks"],
                "summary": "Delete an ended task and its objects",
                "responses": {
                    "204": empty("Deleted."),
                    "404": err("No such task."),
                    "409": err("The task is still pending or running; cancel it first.")
                }
            }
        }),
    );
    add(
        "/api/v1/tasks/{id}/result",
        json!({
            "parameters": [param("TaskId")],
            "get": {
                "operationId": "getTaskResult", "tags": ["tasks"], "summary": "The task's result",
                "description": "The output of the `end` node. Objects in it are references carrying \
                    a `url` to download their bytes (see `ObjectRef`).",
                "responses": {
                    "200": ok("The result (any JSON value).", json!({})),
                    "404": err("No such task."),
                    "409": err("The task has not finished (yet, or it failed or was cancelled).")
                }
            }
        }),
    );
    add(
        "/api/v1/tasks/{id}/nodes/{node}/log",
        json!({
            "parameters": [param("TaskId"), param("NodeKey")],
            "get": {
                "operationId": "getNodeLog", "tags": ["tasks"],
                "summary": "Captured output of a node (commands, errors)",
                "responses": {
                    "200": ok("The node's log lines, oldest first.", schema("NodeLog")),
                    "404": err("No such task or node.")
                }
            }
        }),
    );
    add(
        "/api/v1/tasks/{id}/cancel",
        json!({
            "parameters": [param("TaskId")],
            "post": {
                "operationId": "cancelTask", "tags": ["tasks"], "summary": "Cancel a task",
                "description": "Running nodes are stopped (processes killed, callbacks ignored).",
                "responses": {
                    "202": ok("Cancellation accepted.", schema("TaskCancelled")),
                    "404": err("No such task."),
                    "409": err("The task has already ended.")
                }
            }
        }),
    );
    add(
        "/api/v1/tasks/{id}/resume",
        json!({
            "parameters": [param("TaskId")],
            "post": {
                "operationId": "resumeTask", "tags": ["tasks"],
                "summary": "Resume a failed or cancelled task",
                "description": "Finished nodes keep their outputs; failed and unfinished ones run again.",
                "responses": {
                    "202": ok("Resumed.", schema("TaskAccepted")),
                    "404": err("No such task."),
                    "409": err("The task has finished or is still running.")
                }
            }
        }),
    );
    add(
        "/api/v1/objects/{id}",
        json!({
            "parameters": [{"name": "id", "in": "path", "required": true,
                            "description": "The object id (`$object` of an object reference).",
                            "schema": {"type": "string", "format": "uuid"}}],
            "get": {
                "operationId": "getObject", "tags": ["objects"], "summary": "An object's bytes",
                "description": "Streamed, with the object's content type.",
                "responses": {
                    "200": {"description": "The bytes.", "content": {
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                        "*/*": {"schema": {"type": "string", "format": "binary"}}
                    }},
                    "404": err("No such object (or not visible to the caller).")
                }
            }
        }),
    );
    add(
        "/api/v1/registry/announce",
        json!({"post": {
            "operationId": "announceService", "tags": ["registry"],
            "summary": "A service announces itself and its endpoints",
            "description": "Sent at start and every 30 s. Each endpoint becomes a pipeline \
                `entry → service → end` under its route; a service silent for 3 periods is removed.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema("Announcement")}}},
            "responses": {
                "200": ok("Registered.", schema("AnnounceAccepted")),
                "400": err("The body is not readable JSON."),
                "413": err("The body is larger than the configured limit."),
                "422": {"$ref": "#/components/responses/Invalid"}
            }
        }}),
    );
    add(
        "/api/v1/callbacks/{token}",
        json!({
            "parameters": [
                {"name": "token", "in": "path", "required": true, "schema": {"type": "string"},
                 "description": "The per-attempt token of the `callback_url` given to the service."},
                {"name": "Tessera-Status", "in": "header", "schema": {"type": "string", "enum": ["failed"]},
                 "description": "`failed` when the body reports an error (`{\"error\": \"...\"}`)."}
            ],
            "post": {
                "operationId": "deliverCallback", "tags": ["registry"],
                "summary": "A service delivers a result or an error",
                "requestBody": {"required": true, "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "multipart/form-data": {"schema": {
                        "type": "object",
                        "description": "Binary parts become objects; typed fields go in `data`.",
                        "properties": {"data": data_field()},
                        "additionalProperties": binary()
                    }}
                }},
                "responses": {
                    "200": ok("Accepted.", schema("CallbackAccepted")),
                    "400": err("The body is not a JSON object or readable multipart."),
                    "404": err("Unknown token."),
                    "409": err("The attempt was superseded or already answered."),
                    "413": err("The body is larger than the configured limit.")
                }
            }
        }),
    );
    add(
        "/api/v1/stats",
        json!({"get": {
            "operationId": "getStats", "tags": ["engine"],
            "summary": "Task totals, per pipeline, and known services",
            "responses": {"200": ok("The statistics.", schema("Stats"))}
        }}),
    );
    add(
        "/api/v1/events",
        json!({"get": {
            "operationId": "streamEvents", "tags": ["engine"], "summary": "Live events",
            "description": "Server-sent events: task and node state changes as they happen. Each \
                event's `data` is a JSON object.",
            "responses": {"200": {"description": "An endless event stream.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}}}}
        }}),
    );
    add(
        "/health",
        json!({"get": {
            "operationId": "health", "tags": ["engine"], "summary": "Liveness", "security": [],
            "responses": {"200": ok("Alive.", json!({"type": "object", "required": ["status"],
                "properties": {"status": {"type": "string", "const": "ok"}}}))}
        }}),
    );
    add(
        "/metrics",
        json!({"get": {
            "operationId": "metrics", "tags": ["engine"], "summary": "Prometheus metrics",
            "security": [],
            "responses": {"200": {"description": "Prometheus text exposition format.",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}
        }}),
    );
    add(
        "/openapi.json",
        json!({"get": {
            "operationId": "openapi", "tags": ["docs"], "summary": "This OpenAPI document",
            "security": [],
            "responses": {"200": ok("OpenAPI 3.1 document.", json!({"type": "object"}))}
        }}),
    );
    add(
        "/docs",
        json!({"get": {
            "operationId": "docs", "tags": ["docs"], "summary": "Browsable API documentation",
            "security": [],
            "responses": {"200": {"description": "An HTML page (Swagger UI).",
                "content": {"text/html": {"schema": {"type": "string"}}}}}
        }}),
    );
    p
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
            "202": ok_located("Task created.", schema("TaskAccepted")),
            "400": err("Malformed JSON, or a required multipart field is missing."),
            "404": err("No such pipeline (deleted since this document was made)."),
            "413": err("The body is larger than the configured limit."),
            "415": err("Wrong content type for this pipeline's body."),
            "422": {"$ref": "#/components/responses/Invalid"},
            "503": err("A service the pipeline calls is unavailable.")
        }
    })
}

/// The request body an entry's `api.body` asks for.
fn request_body(body: Option<&Value>) -> Value {
    match body {
        Some(Value::Object(_)) => json!({"required": true, "content": {"application/json": {
            "schema": schema_of_example(body.unwrap_or(&Value::Null)),
            "example": body
        }}}),
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
        properties.insert(f.to_string(), binary());
    }
    properties.insert("data".into(), data_field());
    json!({"required": true, "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "required": fields,
        "properties": properties
    }}}})
}

fn binary() -> Value {
    json!({"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"})
}

fn data_field() -> Value {
    json!({"type": "string", "contentMediaType": "application/json",
           "description": "Optional JSON object of extra typed fields."})
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

fn components() -> Value {
    let ts = || schema("Timestamp");
    let counts = schema("TaskCounts");
    json!({
        "securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "A token configured on the server (roles: admin, user, service). \
                Not needed when the server runs without tokens."
        }},
        "headers": {"Location": {"description": "URL of the created or affected resource.",
            "schema": {"type": "string"}}},
        "parameters": {
            "PipelineName": {"name": "name", "in": "path", "required": true,
                "description": "The pipeline's name (its route).", "schema": {"type": "string"}},
            "TaskId": {"name": "id", "in": "path", "required": true, "description": "The task id.",
                "schema": {"type": "string", "format": "uuid"}},
            "NodeKey": {"name": "node", "in": "path", "required": true,
                "description": "A node id, or `id#index` for a node of a loop branch.",
                "schema": {"type": "string"}}
        },
        "responses": {
            "Unauthorized": {
                "description": "Tokens are configured and the request has no valid bearer token.",
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                "content": {"application/json": {"schema": schema("Error")}}
            },
            "Forbidden": err("The token's role does not allow this."),
            "Internal": err("Unexpected server error."),
            "Invalid": ok("Invalid: `error.details` lists every problem found.",
                json!({"allOf": [schema("Error"), {"properties": {"error": {"properties": {
                    "details": {"type": "array", "items": schema("ValidationIssue")}}}}}]}))
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "Machine-readable: `bad_request`, \
                        `unauthorized`, `forbidden`, `not_found`, `conflict`, `too_large`, \
                        `unsupported_media_type`, `invalid`, `unavailable`, `internal`."},
                    "message": {"type": "string"},
                    "details": {"description": "More about the error, or null."}
                }
            }}},
            "ValidationIssue": {"type": "object", "required": ["field", "message"], "properties": {
                "node": {"type": "string", "description": "The node concerned, if any."},
                "field": {"type": "string", "description": "Path of the offending field."},
                "message": {"type": "string"}
            }},
            "Timestamp": {"type": "integer", "format": "int64",
                "description": "Milliseconds since the Unix epoch."},
            "TaskState": {"type": "string",
                "enum": ["pending", "running", "finished", "failed", "cancelled"]},
            "TaskCounts": {"type": "object",
                "required": ["total", "running", "finished", "failed", "cancelled"],
                "properties": {"total": {"type": "integer"}, "pending": {"type": "integer"},
                    "running": {"type": "integer"}, "finished": {"type": "integer"},
                    "failed": {"type": "integer"}, "cancelled": {"type": "integer"}}},
            "PipelineDefinition": {"type": "object", "required": ["nodes"],
                "description": "A pipeline definition (see the product specification §2).",
                "properties": {"type": {"type": "string", "const": "pipeline"},
                    "nodes": {"type": "array", "items": {"type": "object", "required": ["id", "type"]}}}},
            "PipelineSaved": {"type": "object", "required": ["name", "created"], "properties": {
                "name": {"type": "string"},
                "created": {"type": "boolean", "description": "false when it replaced a pipeline."}}},
            "PipelineSummary": {"type": "object",
                "required": ["name", "source", "available", "created_at", "updated_at"],
                "properties": {
                    "name": {"type": "string"},
                    "source": {"type": "string", "description": "`user`, or `service:<name>` \
                        for a pipeline made from a service's announcement."},
                    "summary": {"type": ["string", "null"]},
                    "available": {"type": "boolean",
                        "description": "false when a service it calls is not announced."},
                    "created_at": ts(), "updated_at": ts()}},
            "PipelineList": {"type": "object", "required": ["items"], "properties": {
                "items": {"type": "array", "items": schema("PipelineSummary")}}},
            "Pipeline": {"type": "object",
                "required": ["name", "source", "definition", "available", "unavailable_services", "stats"],
                "properties": {
                    "name": {"type": "string"}, "source": {"type": "string"},
                    "definition": schema("PipelineDefinition"), "available": {"type": "boolean"},
                    "unavailable_services": {"type": "array", "items": {"type": "string"}},
                    "stats": counts}},
            "TaskAccepted": {"type": "object", "required": ["task_id"], "properties": {
                "task_id": {"type": "string", "format": "uuid"}}},
            "TaskCancelled": {"type": "object", "required": ["task_id", "state"], "properties": {
                "task_id": {"type": "string", "format": "uuid"}, "state": schema("TaskState")}},
            "TaskSummary": {"type": "object",
                "required": ["id", "pipeline", "state", "created_at", "updated_at"],
                "properties": {"id": {"type": "string", "format": "uuid"},
                    "pipeline": {"type": "string"}, "state": schema("TaskState"),
                    "created_at": ts(), "updated_at": ts()}},
            "TaskList": {"type": "object", "required": ["items", "next_cursor"], "properties": {
                "items": {"type": "array", "items": schema("TaskSummary")},
                "next_cursor": {"type": ["string", "null"],
                    "description": "Pass as `cursor` for the next page; null on the last."}}},
            "Task": {"type": "object",
                "required": ["id", "pipeline", "state", "created_at", "updated_at", "input",
                    "result", "error", "counts", "nodes", "runs"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"}, "pipeline": {"type": "string"},
                    "state": schema("TaskState"), "created_at": ts(), "updated_at": ts(),
                    "input": {"description": "The request data."},
                    "result": {"description": "The end output, null until finished."},
                    "error": {"type": ["string", "null"]},
                    "counts": {"type": "object", "additionalProperties": {"type": "integer"},
                        "description": "Number of nodes per node state."},
                    "nodes": {"type": "array", "items": schema("TaskNode")},
                    "runs": {"type": "array", "items": schema("NodeRun")}}},
            "NodeState": {"type": "string", "enum": ["waiting", "ready", "running", "finished",
                "failed", "skipped", "cancelled"]},
            "TaskNode": {"type": "object", "description": "A node instance's latest attempt.",
                "required": ["key", "node", "type", "state", "iteration", "attempt", "attempts",
                    "iterations", "started_at", "finished_at", "duration_ms", "cached"],
                "properties": {
                    "key": {"type": "string"}, "node": {"type": "string"}, "type": {"type": "string"},
                    "state": schema("NodeState"), "iteration": {"type": "integer"},
                    "attempt": {"type": "integer"}, "attempts": {"type": "integer"},
                    "iterations": {"type": "integer"},
                    "started_at": {"type": ["integer", "null"]},
                    "finished_at": {"type": ["integer", "null"]},
                    "duration_ms": {"type": ["integer", "null"]}, "cached": {"type": "boolean"},
                    "error": {"type": "string"},
                    "decision": {"type": "string", "description": "A branch's chosen arm."}}},
            "NodeRun": {"type": "object", "description": "One attempt of one node iteration.",
                "required": ["key", "node", "type", "iteration", "attempt", "state",
                    "started_at", "finished_at", "cached"],
                "properties": {
                    "key": {"type": "string"}, "node": {"type": "string"}, "type": {"type": "string"},
                    "iteration": {"type": "integer"}, "attempt": {"type": "integer"},
                    "state": schema("NodeState"), "input": {}, "output": {},
                    "error": {"type": "string"}, "decision": {"type": "string"},
                    "started_at": {"type": ["integer", "null"]},
                    "finished_at": {"type": ["integer", "null"]}, "cached": {"type": "boolean"}}},
            "NodeLog": {"type": "object", "required": ["lines"], "properties": {"lines": {
                "type": "array", "items": {"type": "object",
                    "required": ["attempt", "stream", "line", "at"],
                    "properties": {"attempt": {"type": "integer"},
                        "stream": {"type": "string", "enum": ["stdout", "stderr", "engine"]},
                        "line": {"type": "string"}, "at": ts()}}}}},
            "ObjectRef": {"type": "object", "required": ["$object"],
                "description": "A binary value in JSON; in results it also carries `url`.",
                "properties": {"$object": {"type": "string", "format": "uuid"},
                    "name": {"type": "string"}, "size": {"type": "integer"},
                    "content_type": {"type": "string"}, "sha256": {"type": "string"},
                    "url": {"type": "string", "description": "Where to GET the bytes."}}},
            "Endpoint": {"type": "object", "required": ["route", "path"], "properties": {
                "route": {"type": "string"},
                "path": {"type": "string", "description": "Path on the service's base URL."},
                "summary": {"type": "string"}, "description": {"type": "string"},
                "body": {"description": "Like an entry's `api.body`."}}},
            "Announcement": {"type": "object", "required": ["name", "url", "endpoints"], "properties": {
                "name": {"type": "string"}, "url": {"type": "string", "description": "Base URL."},
                "endpoints": {"type": "array", "items": schema("Endpoint")}}},
            "AnnounceAccepted": {"type": "object", "required": ["name", "pipelines", "ttl_seconds"],
                "properties": {"name": {"type": "string"},
                    "pipelines": {"type": "array", "items": {"type": "string"}},
                    "ttl_seconds": {"type": "integer",
                        "description": "Announce again before this expires."}}},
            "CallbackAccepted": {"type": "object", "required": ["accepted"], "properties": {
                "accepted": {"type": "boolean", "const": true}}},
            "Service": {"type": "object", "required": ["name", "url", "last_seen", "endpoints"],
                "properties": {"name": {"type": "string"}, "url": {"type": "string"},
                    "last_seen": ts(), "endpoints": {"type": "array", "items": schema("Endpoint")}}},
            "Stats": {"allOf": [schema("TaskCounts"), {"type": "object",
                "required": ["pipelines", "services"], "properties": {
                    "pipelines": {"type": "object", "additionalProperties": schema("TaskCounts")},
                    "services": {"type": "array", "items": schema("Service")}}}]}
        }
    })
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
        assert_eq!(s["properties"]["image"]["format"], "binary");
        assert_eq!(s["properties"]["data"]["type"], "string");
        let several = request_body(Some(&json!(["a", "b"])));
        let s = &several["content"]["multipart/form-data"]["schema"];
        assert_eq!(s["required"], json!(["a", "b"]));
        assert_eq!(s["properties"]["b"]["format"], "binary");
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
            ("get", "/api/v1/tasks/{id}/nodes/{node}/log", "200"),
            ("post", "/api/v1/tasks/{id}/cancel", "202"),
            ("post", "/api/v1/tasks/{id}/resume", "409"),
            ("get", "/api/v1/objects/{id}", "200"),
            ("post", "/api/v1/registry/announce", "422"),
            ("post", "/api/v1/callbacks/{token}", "409"),
            ("get", "/api/v1/stats", "200"),
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
        assert!(doc.get("servers").is_none());
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
