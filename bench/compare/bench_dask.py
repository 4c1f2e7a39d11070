"""Comparison benchmark: Dask on workloads W1-W7, two schedulers.

  dask-threads      dask.delayed graphs computed by dask's default threaded
                    scheduler (thread pool of cpu_count() = 2 threads here).
  dask-distributed  distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                    processes=True) on 127.0.0.1, dashboard off; the cluster
                    and Client are started before timing and reused.

Idioms: W1-W3 are dask.delayed graphs (one delayed call per task, graph
construction inside the timed span); W4/W5 use one delayed call per item
with dask.compute(*items) on dask-threads, and the futures API
client.map(f, items) + client.gather on dask-distributed.
With --bag (W4-W7; tools dask-threads-bag / dask-distributed-bag) the
loop is a chunked dask.bag instead: from_sequence(items, npartitions=8).map(f),
i.e. 8 tasks like multiprocessing's chunksize n // 8. W6/W7 (1M / 10M items)
are run with --bag only: the per-item idioms already run past the
120 s timeout at W5.
Usage: python bench_dask.py --scheduler threads|distributed [--bag] --workload W1
"""

import dask
from dask import delayed

import common
import workloads as wl


def build(workload):
    """Return a list of delayed objects whose computed values form the result."""
    if workload == "W1":
        e = delayed(wl.entry)()
        mids = [delayed(wl.fan)(e, i) for i in range(wl.FANOUT)]
        return [delayed(wl.gather)(mids)]
    if workload == "W2":
        x = delayed(wl.inc)(0)
        for _ in range(wl.CHAIN - 1):
            x = delayed(wl.inc)(x)
        return [x]
    if workload == "W3":
        return [delayed(wl.run_true)(i) for i in range(wl.SPAWN)]
    raise ValueError(workload)


def unwrap(workload, values):
    return values[0] if workload in ("W1", "W2") else list(values)


BAG_PARTITIONS = 8


def make_run_bag(workload, scheduler):
    import dask.bag as db
    if workload not in ("W4", "W5", "W6", "W7"):
        raise SystemExit("--bag only applies to W4-W7")
    items = wl.strings() if workload == "W4" else wl.loop_items(workload)
    fn = wl.length if workload == "W4" else wl.identity

    def run():
        bag = db.from_sequence(items, npartitions=BAG_PARTITIONS).map(fn)
        return bag.compute(scheduler=scheduler)
    return run


def make_run_threads(workload):
    if workload in ("W1", "W2", "W3"):
        def run():
            return unwrap(workload, dask.compute(*build(workload), scheduler="threads"))
        return run
    items = wl.strings() if workload == "W4" else wl.loop_items(workload)
    fn = wl.length if workload == "W4" else wl.identity

    def run():
        return list(dask.compute(*[delayed(fn)(x) for x in items], scheduler="threads"))
    return run


def make_run_distributed(client, workload):
    if workload in ("W1", "W2", "W3"):
        def run():
            futs = client.compute(build(workload))
            return unwrap(workload, client.gather(futs))
        return run
    items = wl.strings() if workload == "W4" else wl.loop_items(workload)
    fn = wl.length if workload == "W4" else wl.identity

    def run():
        futs = client.map(fn, items, pure=False)
        res = client.gather(futs)
        del futs
        return res
    return run


def main():
    def extra(p):
        p.add_argument("--scheduler", choices=("threads", "distributed"), required=True)
        p.add_argument("--bag", action="store_true")
    args = common.parse_args(extra)
    tool = f"dask-{args.scheduler}" + ("-bag" if args.bag else "")
    if args.workload in ("W6", "W7") and not args.bag:
        # One delayed call / future per item already runs past the timeout at W5.
        raise SystemExit("W6/W7 are run with --bag only")
    if args.scheduler == "threads":
        run = make_run_bag(args.workload, "threads") if args.bag else make_run_threads(args.workload)
        common.measure(tool, args.workload, run, args)
        return
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None)
    client = Client(cluster)
    try:
        client.wait_for_workers(2, timeout=60)
        run = (make_run_bag(args.workload, client.get) if args.bag
               else make_run_distributed(client, args.workload))
        common.measure(tool, args.workload, run, args)
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
