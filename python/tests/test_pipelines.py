"""tessera.run / tessera.resume: pipelines in this process, on a data directory's defaults."""

import _thread
import os
import pathlib
import subprocess
import threading
import time

import pytest

import tessera

REPO = pathlib.Path(__file__).resolve().parents[2]
WORDS = REPO / "examples/pipelines/word-lengths.yaml"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_run_returns_the_result_and_checks_the_input(tmp_path):
    data = tmp_path / "data"
    got = tessera.run(WORDS, {"words": ["a", "été"]}, data_dir=data)
    assert got["total_length"] == 4
    assert tessera.run(WORDS, data_dir=data)["total_length"] == 35  # api.body's example
    with pytest.raises(ValueError, match="field `words`"):
        tessera.run(WORDS, {"words": 3}, data_dir=data)
    bad = write(tmp_path, "bad.yaml", "type: pipeline\nnodes:\n  - {id: in, type: entry, next: [nowhere]}\n")
    with pytest.raises(ValueError, match="nowhere"):
        tessera.run(bad, data_dir=data)
    with pytest.raises(FileNotFoundError):
        tessera.run(tmp_path / "missing.yaml", data_dir=data)


FAILS_ONCE = """
type: pipeline
nodes:
  - {id: in, type: entry, next: [count]}
  - id: count
    type: command
    shell: true
    command: "echo x >> runs.txt; echo 1"
    cwd: .
    next: [gate]
  - id: gate
    type: command
    command: ["test", "-e", "open"]
    cwd: .
    next: [end]
  - {id: end, type: end}
"""


def test_failure_is_the_clis_message_and_resume_reruns_nothing_finished(tmp_path):
    data = tmp_path / "data"
    pipeline = write(tmp_path, "gate.yaml", FAILS_ONCE)
    with pytest.raises(tessera.TaskFailed) as info:
        tessera.run(pipeline, data_dir=data)
    failed = info.value
    assert failed.state == "failed" and "gate" in str(failed) and "attempt 1" in str(failed)
    cli = subprocess.run([os.environ["TESSERA_BIN"], "run", "--data-dir", str(tmp_path / "cli"),
                          str(pipeline)], capture_output=True, text=True)
    assert cli.returncode == 1
    assert cli.stderr.strip().splitlines()[-1] == f"error: {failed}"
    (tmp_path / "open").write_text("")
    tessera.resume(failed.task_id, data_dir=data)
    # `count` ran once for the python run (not again on resume), once for the CLI's.
    assert (tmp_path / "runs.txt").read_text().count("x") == 2


FILES = """
type: pipeline
nodes:
  - {id: in, type: entry, api: {body: [doc]}, next: [upper]}
  - id: upper
    type: command
    shell: true
    command: "tr a-z A-Z < {{doc}} > $TESSERA_SCRATCH/up.txt; printf '{\\"up\\": {\\"$file\\": \\"%s\\"}}' $TESSERA_SCRATCH/up.txt"
    next: [end]
  - {id: end, type: end}
"""


def test_files_in_and_objects_out(tmp_path):
    data = tmp_path / "data"
    pipeline = write(tmp_path, "files.yaml", FILES)
    doc = write(tmp_path, "doc.txt", "hello tessera\n")
    got = tessera.run(pipeline, files={"doc": doc}, data_dir=data)
    assert pathlib.Path(got["up"]).read_text() == "HELLO TESSERA\n"
    got = tessera.run(pipeline, files={"doc": doc}, data_dir=data, objects="bytes")
    assert got["up"] == b"HELLO TESSERA\n"
    got = tessera.run(pipeline, files={"doc": doc}, data_dir=data, objects="reference")
    assert got["up"]["size"] == 14
    with pytest.raises(ValueError, match="doc"):
        tessera.run(pipeline, data_dir=data)


SLOW = """
type: pipeline
nodes:
  - {id: in, type: entry, next: [nap]}
  - {id: nap, type: command, command: ["sleep", "30"], next: [end]}
  - {id: end, type: end}
"""


def test_ctrl_c_cancels_the_task(tmp_path):
    data = tmp_path / "data"
    pipeline = write(tmp_path, "slow.yaml", SLOW)
    timer = threading.Timer(0.5, _thread.interrupt_main)
    started = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        tessera.run(pipeline, data_dir=data)
    assert time.monotonic() - started < 10
    listed = subprocess.run([os.environ["TESSERA_BIN"], "tasks", "list", "--data-dir", str(data),
                             "--json"], capture_output=True, text=True, check=True)
    assert '"cancelled"' in listed.stdout, listed.stdout


def test_default_data_dir_from_another_directory(tmp_path, monkeypatch):
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub, "files.yaml", FILES)
    doc = write(tmp_path, "doc.txt", "abc\n")
    monkeypatch.chdir(tmp_path)
    got = tessera.run("sub/files.yaml", files={"doc": "doc.txt"})
    path = pathlib.Path(got["up"])
    assert path.is_absolute() and path.read_text() == "ABC\n"
    assert (tmp_path / ".tessera").is_dir()
    with pytest.raises(TypeError, match="dict"):
        tessera.run("sub/files.yaml", ["not", "a", "dict"])
