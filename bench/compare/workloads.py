"""Workload definitions and task bodies shared by the comparison benchmarks.

The task functions live in an importable module (not ``__main__``) so that
multiprocessing and dask-distributed worker processes can unpickle them by
reference. Sizes match Tessera's own benchmarks:

* W1 fan-out: 1 entry task -> 1,000 no-op tasks -> 1 end task gathering them.
* W2 chain:   200 no-op tasks, each depending on the previous one.
* W3 spawn:   100 independent tasks each running the external process `true`.
* W4 strings: 10,000 tasks, each the length of "item-<i>", collected in order.
* W5 no-op:   100,000 tasks, each returning its item, collected in order.
* W6 no-op:   W5 with 1,000,000 items.
* W7 no-op:   W5 with 10,000,000 items.

The items of W5-W7 are Tessera's: the odd numbers 1, 3, 5, ... as a list,
made before timing (outside the timed span, inside the peak-RSS window, as
Tessera's own run holds its input too).
"""

import operator
import shutil
import subprocess

FANOUT = 1_000
CHAIN = 200
SPAWN = 100
STRINGS = 10_000
NOOPS = 100_000
# Items per run of the no-op loops; W6/W7 are only run with the chunked idioms
# (multiprocessing's map, dask.bag): one task per item would take hours.
LOOP_SIZES = {"W5": NOOPS, "W6": 1_000_000, "W7": 10_000_000}

WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7")

TRUE_BIN = shutil.which("true") or "/bin/true"


def entry():
    """W1 entry task: no-op producing the value the fan-out depends on."""
    return 0


def fan(parent, i):
    """W1 middle task: no-op that depends on the entry task's result."""
    return i


def gather(results):
    """W1/W3 end task: receives every upstream result, returns how many."""
    return len(results)


def inc(x):
    """W2 chain link: no-op that passes on its predecessor's value + 1."""
    return x + 1


def run_true(_i=None):
    """W3 task: run the external process `true` and return its exit code."""
    return subprocess.run([TRUE_BIN], check=False).returncode


def length(s):
    """W4 task: length of one string."""
    return len(s)


def identity(x):
    """W5 task: no-op returning its item."""
    return x


def strings():
    """W4 input: 10,000 strings "item-<i>"."""
    return [f"item-{i}" for i in range(STRINGS)]


def loop_items(workload):
    """W5-W7 input: the odd numbers 1, 3, 5, ... (as Tessera's bench), as a list."""
    return list(range(1, 2 * LOOP_SIZES[workload], 2))


def check(workload, result):
    """Raise if a workload's final result is wrong (proves the work was done)."""
    if workload == "W1":
        ok = result == FANOUT
    elif workload == "W2":
        ok = result == CHAIN
    elif workload == "W3":
        ok = list(result) == [0] * SPAWN if not isinstance(result, int) else result == SPAWN
    elif workload == "W4":
        ok = list(result) == [len(f"item-{i}") for i in range(STRINGS)]
    elif workload in LOOP_SIZES:
        # Compared item by item against a range, not a second list: at W7 a list
        # of 10M ints would add ~400 MB to the peak RSS being measured.
        n = LOOP_SIZES[workload]
        result = list(result) if not isinstance(result, list) else result
        ok = (len(result) == n and result[0] == 1 and result[-1] == 2 * n - 1
              and all(map(operator.eq, result, range(1, 2 * n, 2))))
    else:
        raise ValueError(workload)
    if not ok:
        raise AssertionError(f"{workload}: wrong result ({str(result)[:200]})")
