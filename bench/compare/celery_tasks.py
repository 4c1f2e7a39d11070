"""Celery application and task definitions for the comparison benchmarks.

Loaded both by the driver (bench_celery.py) and by the worker
(`celery -A celery_tasks worker --concurrency 2`). Broker and result backend
are the redis-server that run.sh starts on 127.0.0.1; its URL comes from the
environment variable BENCH_REDIS_URL (db 0 = broker, db 1 = results).
The task bodies are the ones in workloads.py.
"""

import os

from celery import Celery

import workloads as wl

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")

app = Celery("tessera_compare", broker=f"{REDIS}/0", backend=f"{REDIS}/1")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_default_queue="bench",
    result_expires=3600,
)


@app.task(name="bench.entry")
def entry():
    return wl.entry()


@app.task(name="bench.fan")
def fan(parent, i):
    return wl.fan(parent, i)


@app.task(name="bench.gather")
def gather(results):
    return wl.gather(results)


@app.task(name="bench.inc")
def inc(x):
    return wl.inc(x)


@app.task(name="bench.run_true")
def run_true(i):
    return wl.run_true(i)


@app.task(name="bench.length")
def length(s):
    return wl.length(s)


@app.task(name="bench.identity")
def identity(x):
    return wl.identity(x)


@app.task(name="bench.ping")
def ping():
    return "pong"
