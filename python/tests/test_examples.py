"""python/examples: buzzard's documentation examples of cached recipes, run as scripts.

Each example runs in a fresh scratch directory (it writes its caches, and cached_downloads.py
its synthetic images, into the working directory), checks its own results with asserts, and
prints `OK` last. It then runs a second time in the same directory, where it reuses what the
first run left (cached_downloads.py reopens its caches with `ow=False`).
"""

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def run_example(name, cwd):
    try:
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / name)],
            cwd=cwd, capture_output=True, text=True, timeout=120,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{name} took more than 120 s\n--- stdout\n{e.stdout}\n--- stderr\n{e.stderr}")
    output = f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, f"{name} exited with {done.returncode}\n{output}"
    lines = done.stdout.splitlines()
    assert lines and lines[-1] == "OK", f"{name} did not print OK last\n{output}"
    return done.stdout


@pytest.mark.parametrize("name", ["cached_mandelbrot.py", "cached_downloads.py"])
def test_example_runs_and_runs_again_on_its_caches(name, tmp_path):
    first = run_example(name, tmp_path)
    second = run_example(name, tmp_path)
    if name == "cached_downloads.py":
        # All the tiles of both images, then (with the caches left) andromeda again (ow=True)
        # and nothing of monocerotis
        assert "\n311 tiles downloaded\n" in first, first
        assert "\n263 tiles downloaded\n" in second, second
    else:
        # Test 2 appends bytes to a cache file: its pixels are intact, so Tessera reuses it
        # (buzzard hashes the file's bytes and recomputes; see python/examples/README.md)
        assert "computation tiles recomputed: 0" in first and "computation tiles recomputed: 0" in second
