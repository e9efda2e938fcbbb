#!/usr/bin/env python3
"""omniconn from Python against a pure-Python connector that follows vllm-omni's
SharedMemoryConnector method (bench/baselines/vllm_omni_shm.py), in the same run.

Two processes (spawn): this one puts, a consumer gets and checks the array's first and last
element, then acks over a Pipe; the metadata goes over the same Pipe. The figure is the round
trip put -> metadata -> get -> ack, so the Pipe's cost is in every kind alike. Kinds alternate
iteration by iteration so that they see the same machine noise. CPU time per call (the calling
thread's, mean) is reported for put (producer) and get (consumer).

    PYTHONPATH=build/python /usr/bin/python3 bench/python_bench.py [--json out.json]
"""
import argparse
import json
import multiprocessing as mp
import os
import pathlib
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "baselines"))

MiB = 1 << 20
KINDS = ("omniconn put", "omniconn loan", "vllm-omni method", "pipe alone")
# "pipe alone" moves no payload: the metadata Pipe's round trip by itself, the floor of every
# kind, so vllm-omni's round trip over it is the most any connector can show in this harness.


def make(kind):
    if kind == "pipe alone":
        return None
    if kind.startswith("omniconn"):
        import omniconn
        return omniconn.SharedMemoryConnector({"namespace": f"pybench-{os.getppid()}"})
    from vllm_omni_shm import VllmOmniStyleShmConnector
    return VllmOmniStyleShmConnector()


def consumer(kind, pipe):
    conn = make(kind)
    while (msg := pipe.recv()) is not None:
        rid, meta, n = msg
        if conn is None:  # pipe alone
            pipe.send((0.0, 0.0, True))
            continue
        c0, t0 = time.thread_time(), time.perf_counter()
        got = conn.get("0", "1", rid, meta)
        t1, c1 = time.perf_counter(), time.thread_time()
        arr = got[0] if kind == "omniconn loan" else got[0]["hidden"]
        ok = len(arr) == n and arr[0] == 0 and arr[-1] == np.float32(n - 1)
        del got, arr
        pipe.send((t1 - t0, c1 - c0, ok))


def produce(kind, conn, src, rid):
    if conn is None:
        return True, 0, {"size": 0}
    if kind == "omniconn loan":
        lo = conn.loan("0", "1", rid, src.shape, src.dtype)
        with lo as buf:
            buf[:] = src
        return lo.result
    return conn.put("0", "1", rid, {"hidden": src})


def measure(size, iters, pipes, conns):
    n = size // 4
    src = np.arange(n, dtype=np.float32)
    rt = {k: [] for k in KINDS}
    get = {k: [] for k in KINDS}
    cpu_put = {k: [] for k in KINDS}
    cpu_get = {k: [] for k in KINDS}
    for i in range(iters + 2):  # two warm-up rounds
        for kind in KINDS:
            t0, c0 = time.perf_counter(), time.thread_time()
            ok, _, meta = produce(kind, conns[kind], src, f"r{size}-{i}")
            c1 = time.thread_time()
            assert ok, meta
            pipes[kind].send((f"r{size}-{i}", meta, n))
            t_get, c_get, good = pipes[kind].recv()
            t1 = time.perf_counter()
            assert good, f"{kind}: wrong data at {size} bytes"
            if i >= 2:
                rt[kind].append(t1 - t0)
                get[kind].append(t_get)
                cpu_put[kind].append(c1 - c0)
                cpu_get[kind].append(c_get)
    return rt, get, cpu_put, cpu_get


def parse_size(text):
    units = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper()
    num = t.rstrip("BKMG") or "x"
    unit = t[len(num):]
    if not num.isdigit() or unit not in units or int(num) * units[unit] < 8:
        raise ValueError(f"bad size '{text}' (want e.g. 64, 64K, 16M; at least 8 bytes)")
    return int(num) * units[unit]


def fmt_size(n):
    for unit, div in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1 << 10)):
        if n >= div and n % div == 0:
            return f"{n // div} {unit}"
    return f"{n} B"


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="64,64K,1M,4M,16M,64M,256M",
                    help="payload sizes, comma-separated, units B/K/M/G (binary); "
                         "default 64,64K,1M,4M,16M,64M,256M")
    ap.add_argument("--json", help="write the results here as JSON")
    args = ap.parse_args()
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",")]
    except ValueError as e:
        ap.error(str(e))

    ctx = mp.get_context("spawn")
    pipes, procs = {}, []
    for kind in KINDS:
        mine, theirs = ctx.Pipe()
        p = ctx.Process(target=consumer, args=(kind, theirs), daemon=True)
        p.start()
        pipes[kind], procs = mine, procs + [p]
    conns = {k: make(k) for k in KINDS}

    rows = []
    print(f"{'size':>8} {'kind':<17} {'round trip p50':>15} {'p99':>10} {'get p50':>10} "
          f"{'put CPU':>9} {'get CPU':>9} {'GB/s':>7} {'vs vllm-omni':>13}")
    for size in sizes:
        iters = max(5, min(500, (2048 * MiB) // size))
        rt, get, cpu_put, cpu_get = measure(size, iters, pipes, conns)
        base = statistics.median(rt["vllm-omni method"])
        for kind in KINDS:
            p50 = statistics.median(rt[kind])
            row = {"bytes": size, "kind": kind, "iters": iters, "rt_p50_s": p50,
                   "rt_p99_s": pct(rt[kind], 0.99), "rt_p999_s": pct(rt[kind], 0.999),
                   "get_p50_s": statistics.median(get[kind]),
                   "put_cpu_s": statistics.mean(cpu_put[kind]),
                   "get_cpu_s": statistics.mean(cpu_get[kind]),
                   "gbps": size / p50 / 1e9, "speedup_vs_vllm_omni": base / p50}
            rows.append(row)
            print(f"{fmt_size(size):>8} {kind:<17} {p50 * 1e3:>12.3f} ms "
                  f"{row['rt_p99_s'] * 1e3:>7.3f} ms {row['get_p50_s'] * 1e6:>7.1f} us "
                  f"{row['put_cpu_s'] * 1e6:>6.1f} us {row['get_cpu_s'] * 1e6:>6.1f} us "
                  f"{row['gbps']:>7.2f} {row['speedup_vs_vllm_omni']:>12.1f}x")
    for kind in KINDS:
        pipes[kind].send(None)
    for p in procs:
        p.join(30)

    gets = [r["get_p50_s"] for r in rows if r["kind"] == "omniconn put"]
    print(f"\nomniconn get p50 from {fmt_size(sizes[0])} to {fmt_size(sizes[-1])}: "
          f"{min(gets) * 1e6:.1f} .. {max(gets) * 1e6:.1f} us "
          f"(max/min {max(gets) / min(gets):.2f})")
    at16 = [r for r in rows if r["bytes"] == 16 * MiB and r["kind"] == "omniconn put"]
    if at16:
        s = at16[0]["speedup_vs_vllm_omni"]
        print(f"16 MiB: omniconn put+get {s:.1f}x the vllm-omni method (target >= 10x): "
              f"{'PASS' if s >= 10 else 'MISS'}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"rows": rows}, indent=1))


if __name__ == "__main__":
    main()
