"""tessera.Client against a real `tessera serve` on 127.0.0.1 (TESSERA_BIN)."""

import os
import pathlib
import subprocess
import threading
import time

import pytest

from tessera.client import Client, TaskFailed, TesseraError

REPO = pathlib.Path(__file__).resolve().parents[2]

FAILING = """
type: pipeline
nodes:
  - {id: in, type: entry, api: {route: fails, body: {n: 1}}, next: [work]}
  - id: work
    type: command
    command: ["sh", "-c", "echo 'no luck' >&2; exit 3"]
    retry: {attempts: 2, backoff: 10ms}
    next: [end]
  - {id: end, type: end}
"""

UPLOAD = """
type: pipeline
nodes:
  - {id: in, type: entry, api: {route: count-bytes, body: [blob]}, next: [count]}
  - id: count
    type: command
    command: ["wc", "-c", "{{blob}}"]
    stdin: false
    after: |
      let text = out.stdout;
      text.trim();
      out = #{bytes: parse_int(text.split(" ")[0]), label: input.label};
    next: [end]
  - {id: end, type: end}
"""

SLOW = """
type: pipeline
nodes:
  - {id: in, type: entry, api: {route: slow, body: {}}, next: [nap]}
  - {id: nap, type: command, command: ["sleep", "30"], next: [end]}
  - {id: end, type: end}
"""


def tessera_bin():
    path = os.environ.get("TESSERA_BIN")
    if not path:
        pytest.fail("TESSERA_BIN must name the tessera binary (scripts/test-python.sh sets it)")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("serve")
    proc = subprocess.Popen([tessera_bin(), "serve", "--addr", "127.0.0.1:0"], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    said = []
    for line in proc.stderr:
        if line.startswith("tessera serving on "):
            url = line.split()[3]
            break
        said.append(line)
    else:
        raise AssertionError("serve exited:\n" + "".join(said))
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    yield {"url": url, "dir": work}
    proc.kill()
    proc.wait()


def test_pipeline_submit_events_wait_result(server):
    c = Client(server["url"])
    c.create_pipeline(REPO / "examples/pipelines/word-lengths.yaml")
    task = c.submit("word-lengths", {"words": ["a", "ab", "abc"]})
    seen = list(c.events(task))
    assert seen[-1]["event"] == "task" and seen[-1]["state"] == "finished"
    result = c.wait(task)
    assert result["total_length"] == 6
    assert c.result(task) == result
    assert any(t["id"] == task for t in c.tasks(state="finished"))


def test_failure_message_is_the_clis(server, tmp_path):
    c = Client(server["url"])
    c.create_pipeline(FAILING)
    with pytest.raises(TaskFailed) as info:
        c.run("fails", {"n": 1})
    assert info.value.state == "failed"
    pipeline = tmp_path / "fails.yaml"
    pipeline.write_text(FAILING)
    cli = subprocess.run([tessera_bin(), "run", str(pipeline)], cwd=tmp_path,
                         capture_output=True, text=True)
    assert cli.returncode == 1
    last = cli.stderr.strip().splitlines()[-1]
    assert last == f"error: {info.value}", (last, str(info.value))
    assert "work" in str(info.value) and "attempt 2" in str(info.value)


def test_files_are_uploaded_and_bad_input_is_refused_with_fields(server, tmp_path):
    c = Client(server["url"])
    c.create_pipeline(UPLOAD)
    blob = tmp_path / "data.bin"
    blob.write_bytes(b"x" * 1234)
    assert c.run("count-bytes", {"label": "a"}, files={"blob": blob})["bytes"] == 1234
    assert c.run("count-bytes", files={"blob": b"12345"})["bytes"] == 5
    c.create_pipeline(REPO / "examples/pipelines/word-lengths.yaml")
    with pytest.raises(TesseraError) as info:
        c.submit("word-lengths", {"words": "not a list"})
    assert info.value.status in (400, 422)
    assert "words" in str(info.value)
    with pytest.raises(TesseraError) as info:
        c.create_pipeline("type: pipeline\nnodes: [{id: x, type: nonsense}]\n")
    assert info.value.status in (400, 422)


def test_cancel_then_resume(server):
    c = Client(server["url"])
    c.create_pipeline(SLOW)
    task = c.submit("slow", {})
    # Events start when one subscribes: the node may be running already, the document says.
    deadline = time.monotonic() + 10
    while not any(n["key"] == "nap" and n["state"] == "running" for n in c.task(task)["nodes"]):
        assert time.monotonic() < deadline, c.task(task)
        time.sleep(0.01)
    started = time.monotonic()
    c.cancel(task)
    with pytest.raises(TaskFailed) as info:
        c.wait(task, timeout=30)
    assert info.value.state == "cancelled"
    assert time.monotonic() - started < 10  # the 30 s command was stopped
    c.resume(task)
    assert c.task(task)["state"] in ("queued", "running")
    c.cancel(task)


def test_wait_honours_its_timeout_and_objects_download(server):
    c = Client(server["url"])
    c.create_pipeline(SLOW)
    task = c.submit("slow", {})
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        c.wait(task, timeout=1.5)
    assert time.monotonic() - started < 5
    c.cancel(task)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        c.create_pipeline("missing.yaml")
    c.create_pipeline(UPLOAD)
    task = c.submit("count-bytes", files={"blob": b"0123456789"})
    assert c.wait(task)["bytes"] == 10
    doc = c.task(task)
    blob = doc["input"]["blob"]
    assert c.object(blob["$object"]) == b"0123456789"
