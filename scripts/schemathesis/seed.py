"""Seeds a fresh `tessera serve` through its API for scripts/schemathesis/run.sh.

Creates three pipelines, so the document has `POST /api/v1/services/...` operations of each body
kind: `word-lengths` (JSON example body, examples/pipelines/word-lengths.yaml posted as YAML),
`size` (one binary multipart field, a command `wc -c {{file}}`), and `echo` (an endpoint of a
service announced through the registry: fake_service.py, which never calls back). Then starts
tasks of each, cancels one, and waits until the short ones end and the service ones are
dispatched. From what the API answers it writes, in $WORK:

* seed.json: the protected routes and the requests that recreate them (read by hooks.py);
* schemathesis.toml: fuzz dictionaries of real task ids, node keys, object ids, callback tokens,
  pipeline names and a cursor, bound to the path and query parameters that take them (mixed with
  generated values), so the fuzzed operations reach stored data instead of only 404.

Environment: TESSERA_BASE (server URL), SERVICE_URL (fake service base URL), WORK (directory).
"""

import json
import os
import pathlib
import time

import requests

BASE = os.environ["TESSERA_BASE"]
SERVICE_URL = os.environ["SERVICE_URL"]
WORK = pathlib.Path(os.environ["WORK"])
ROOT = pathlib.Path(__file__).resolve().parents[2]

SIZE_YAML = """\
# The byte count of an uploaded file.
type: pipeline
nodes:
  - id: in
    type: entry
    api: {route: size, body: file, summary: "Size of the uploaded file, in bytes"}
    next: [count]
  - id: count
    type: command
    command: [wc, -c, "{{file}}"]
    next: [end]
  - id: end
    type: end
"""
ANNOUNCEMENT = {
    "name": "fake",
    "url": SERVICE_URL,
    "endpoints": [
        {"route": "echo", "path": "/work", "summary": "A service that never answers",
         "body": {"text": "hello"}},
    ],
}


def call(method, path, expect, **kwargs):
    r = requests.request(method, BASE + path, timeout=30, **kwargs)
    if r.status_code not in expect:
        raise SystemExit(f"seed: {method} {path} -> {r.status_code} {r.text[:500]}")
    return r


restore = [
    {"method": "POST", "url": BASE + "/api/v1/pipelines", "content_type": "application/yaml",
     "body": (ROOT / "examples/pipelines/word-lengths.yaml").read_text(encoding="utf-8")},
    {"method": "POST", "url": BASE + "/api/v1/pipelines", "content_type": "application/yaml",
     "body": SIZE_YAML},
    {"method": "POST", "url": BASE + "/api/v1/registry/announce",
     "content_type": "application/json", "body": json.dumps(ANNOUNCEMENT)},
]
for r in restore:
    call(r["method"], r["url"][len(BASE):], {200, 201},
         data=r["body"].encode("utf-8"), headers={"Content-Type": r["content_type"]})

tasks = []
for words in (["Éloïse", "Zoë"], ["tessera"]):
    tasks.append(call("POST", "/api/v1/services/word-lengths", {202},
                      json={"words": words}).json()["task_id"])
for content in (b"hello\n", bytes(range(256))):
    tasks.append(call("POST", "/api/v1/services/size", {202},
                      files={"file": ("f.bin", content, "application/octet-stream")}
                      ).json()["task_id"])
waiting = [call("POST", "/api/v1/services/echo", {202}, json={"text": t}).json()["task_id"]
           for t in ("a", "b", "c")]
tasks += waiting

deadline = time.time() + 60
callbacks = WORK / "callbacks.txt"
while True:
    docs = {t: call("GET", f"/api/v1/tasks/{t}", {200}).json() for t in tasks}
    short_done = all(docs[t]["state"] in ("finished", "failed", "cancelled")
                     for t in tasks if t not in waiting)
    dispatched = callbacks.exists() and len(callbacks.read_text().split()) >= len(waiting)
    if short_done and dispatched:
        break
    if time.time() > deadline:
        raise SystemExit(f"seed: tasks did not settle: { {t: d['state'] for t, d in docs.items()} }")
    time.sleep(0.2)
call("POST", f"/api/v1/tasks/{waiting[-1]}/cancel", {202})

node_keys, object_ids = set(), set()


def objects_in(value):
    if isinstance(value, dict):
        if isinstance(value.get("$object"), str):
            object_ids.add(value["$object"])
        for v in value.values():
            objects_in(v)
    elif isinstance(value, list):
        for v in value:
            objects_in(v)


for t in tasks:
    doc = call("GET", f"/api/v1/tasks/{t}", {200}).json()
    node_keys.update(n["key"] for n in doc["nodes"])
    objects_in(doc)
    if doc["state"] == "finished":
        objects_in(call("GET", f"/api/v1/tasks/{t}/result", {200}).json())
tokens = sorted({u.rstrip("/").rsplit("/", 1)[-1] for u in callbacks.read_text().split()})
cursor = call("GET", "/api/v1/tasks?limit=1", {200}).json()["next_cursor"]
if not object_ids:
    raise SystemExit("seed: the size tasks produced no object reference")


def toml_list(values):
    return json.dumps(sorted(values), ensure_ascii=False)


(WORK / "seed.json").write_text(json.dumps({
    "protected": ["word-lengths", "size", "echo"], "restore": restore,
}), encoding="utf-8")
(WORK / "schemathesis.toml").write_text(f"""\
# Written by scripts/schemathesis/seed.py for one run: real identifiers from the seeded server.
[dictionaries.task_ids]
values = {toml_list(tasks)}
[dictionaries.node_keys]
values = {toml_list(node_keys)}
[dictionaries.object_ids]
values = {toml_list(object_ids)}
[dictionaries.tokens]
values = {toml_list(tokens)}
[dictionaries.pipelines]
values = ["word-lengths", "size", "echo"]
[dictionaries.cursors]
values = {toml_list([cursor] if cursor else ["none"])}

[[operations]]
include-path-regex = "^/api/v1/tasks/\\\\{{id\\\\}}(/result|/cancel|/resume)?$"
parameters = {{ "path.id" = {{ dictionary = "task_ids", probability = 0.7 }} }}

[[operations]]
include-path = "/api/v1/tasks/{{id}}/nodes/{{node}}/log"
parameters = {{ "path.id" = {{ dictionary = "task_ids", probability = 0.7 }}, "path.node" = {{ dictionary = "node_keys", probability = 0.7 }} }}

[[operations]]
include-path = "/api/v1/objects/{{id}}"
parameters = {{ "path.id" = {{ dictionary = "object_ids", probability = 0.7 }} }}

[[operations]]
include-path = "/api/v1/callbacks/{{token}}"
parameters = {{ "path.token" = {{ dictionary = "tokens", probability = 0.7 }} }}

[[operations]]
include-path = "/api/v1/pipelines/{{name}}"
parameters = {{ "path.name" = {{ dictionary = "pipelines", probability = 0.5 }} }}

[[operations]]
include-path = "/api/v1/tasks"
parameters = {{ "query.pipeline" = {{ dictionary = "pipelines", probability = 0.5 }}, "query.cursor" = {{ dictionary = "cursors", probability = 0.5 }} }}
""", encoding="utf-8")
print(f"seed: {len(tasks)} tasks, {len(node_keys)} node keys, {len(object_ids)} objects, "
      f"{len(tokens)} callback tokens")
