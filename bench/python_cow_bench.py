#!/usr/bin/env python3
"""What writable (copy-on-write) views cost from Python: get latency, the first full read and
the first write of a received float32 array at 1, 16 and 256 MiB, with `writable=False` (the
read-only shared mapping, the behaviour before copy-on-write) against the default (a
copy-on-write mapping of the payload's pages). The read-only row's "first write" is what a
reader had to do there instead: `copy()` the array. One process puts and gets (the reader
still maps the writer's memfd through its socket); medians of n rounds.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_cow_bench.py [--json out.json]
"""
import argparse
import json
import os
import statistics
import time

import numpy as np

import omniconn

MiB = 1 << 20
ROUNDS = {1: 40, 16: 15, 256: 5}


def one(c, src, writable, key):
    ok, _, meta = c.put("0", "1", key, {"a": src})
    assert ok, meta
    t0 = time.perf_counter()
    obj, _ = c.get("0", "1", key, meta, writable=writable)
    t1 = time.perf_counter()
    a = obj["a"]
    a.sum()  # touches every page once
    t2 = time.perf_counter()
    if writable:
        a += 1.0  # the first write: every page copied
    else:
        a = a.copy()
        a += 1.0
    t3 = time.perf_counter()
    del obj, a
    return t1 - t0, t2 - t1, t3 - t2


def measure(mib):
    src = np.arange(mib * MiB // 4, dtype=np.float32)
    out = {}
    with omniconn.SharedMemoryConnector({"namespace": f"cow-bench-{os.getpid()}"}) as c:
        one(c, src, True, "warm")
        one(c, src, False, "warm2")
        for writable in (False, True):
            runs = [one(c, src, writable, f"k{i}") for i in range(ROUNDS[mib])]
            out["cow" if writable else "ro"] = [statistics.median(r[i] for r in runs)
                                                for i in range(3)]
            c.health()  # sweep between kinds
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = {}
    print("| size | get read-only us | get copy-on-write us | ratio | first read RO ms | "
          "first read CoW ms | ratio | first write: RO copy() ms | CoW write ms | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mib in (1, 16, 256):
        r = measure(mib)
        rows[mib] = r
        ro, cow = r["ro"], r["cow"]
        print(f"| {mib} MiB | {ro[0]*1e6:.1f} | {cow[0]*1e6:.1f} | {cow[0]/ro[0]:.2f}x | "
              f"{ro[1]*1e3:.2f} | {cow[1]*1e3:.2f} | {cow[1]/ro[1]:.2f}x | "
              f"{ro[2]*1e3:.2f} | {cow[2]*1e3:.2f} | {cow[2]/ro[2]:.2f}x |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
