#!/usr/bin/python3
"""pickle_queue: a numpy uint8 array of N bytes through a multiprocessing.Queue (spawn context).

The producer process put()s the array (the Queue's feeder thread pickles it and writes it to a
pipe); the consumer, this process, get()s it back as a new array. Both modes for every size:

  stream    the producer puts `count` arrays back to back; GB/s (1 GB = 1e9 B) at the consumer,
            from the command that releases the producer to the last array received, with the CPU
            time of both processes (each measures its own process_time_ns over the same interval,
            feeder threads included) per MiB moved.
  pingpong  one array in flight: time.monotonic_ns() in its first 8 bytes right before put();
            latency = get() returned - stamp; the consumer acks over the second Queue.

Same command line and JSON as the C++ baselines; run with /usr/bin/python3 (needs numpy).
"""
import argparse
import ctypes
import json
import math
import multiprocessing as mp
import os
import pickle
import queue
import signal
import sys
import time

import numpy as np

NAME = "pickle_queue"
DESCRIPTION = ("one payload = a numpy uint8 array put() on a multiprocessing.Queue (spawn "
               "context; pickled by the feeder thread, through a pipe) and get() by the consumer "
               "process as a new array")
DEFAULT_SIZES = "64,4K,64K,1M,16M,64M,256M"
MIN_SIZE = 8  # room for the ping-pong stamp
TIMEOUT_S = 30  # no get() waits longer
FILL = 0x5A
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


class Error(Exception):
    pass


# ---- Command line ----------------------------------------------------------------------------

def parse_size(text):
    units = {"": 1, "b": 1, "k": KIB, "kb": KIB, "kib": KIB, "m": MIB, "mb": MIB, "mib": MIB,
             "g": GIB, "gb": GIB, "gib": GIB}
    digits = len(text) - len(text.lstrip("0123456789"))
    unit = text[digits:].lower()
    if digits == 0 or unit not in units:
        raise ValueError(f"bad size '{text}'")
    size = int(text[:digits]) * units[unit]
    if size < MIN_SIZE:
        raise ValueError(f"sizes must be at least {MIN_SIZE} bytes")
    return size


class Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write(f"{NAME}: error: {message} (try --help)\n")
        sys.exit(2)


def parse_args(argv):
    parser = Parser(
        prog=NAME, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A numpy array through a multiprocessing.Queue between two processes: stream "
                    "GB/s (1 GB = 1e9 B) with CPU us per MiB of both processes, and ping-pong "
                    "one-way latency p50/p99/p99.9.",
        epilog="Exit status: 0 when the run completed, 1 on an error, 2 on bad usage.")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, metavar="LIST",
                        help=f"payload sizes, comma-separated, units B/K/M/G (binary) "
                             f"(default {DEFAULT_SIZES})")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--max-seconds", type=float, default=40.0, metavar="S",
                        help="rough total time budget; counts per size follow from it "
                             "(default 40)")
    args = parser.parse_args(argv)
    try:
        args.sizes = [parse_size(item) for item in args.sizes.split(",")]
    except ValueError as e:
        parser.error(str(e))
    if not 0 < args.max_seconds <= 1e6:
        parser.error("--max-seconds wants a positive number of seconds")
    if args.json == "":
        parser.error("--json wants a file name")
    return args


# ---- Counts (the same rules as baseline_common.h) ----------------------------------------------

def clamp(value, low, high):
    return max(low, min(high, value))


def stream_max_count(size):
    return clamp(GIB // size, 8, 20000)


def stream_warmup(size):
    return clamp((64 * MIB) // size, 1, 200)


def pingpong_max_count(size):
    return clamp((512 * MIB) // size, 20, 2000)


def pingpong_warmup(size):
    return clamp((128 * MIB) // size, 1, 50)


class Budget:
    """Spreads the time left over the measured phases left by weight (1 up to 64 KiB, +1 per
    doubling above; two phases per size), so what a capped phase leaves goes to later, larger
    ones. A phase gets its usual minimum of payloads if that costs at most 1.25x its share; else
    what its share pays for, but never fewer than the hard minimum."""

    def __init__(self, seconds, sizes):
        self.end_ns = time.monotonic_ns() + int(seconds * 1e9)
        self.weights = [w for s in sizes for w in [max(1.0, math.log2(s / (64 * KIB)) + 1)] * 2]
        self.next = 0

    def next_count(self, ns_per_payload, soft_min, hard_min, high):
        left = max(0, self.end_ns - time.monotonic_ns())
        weight_left = sum(self.weights[self.next:])
        weight = self.weights[self.next] if self.next < len(self.weights) else 1.0
        self.next += 1
        n = left * weight / max(weight_left, weight) / max(ns_per_payload, 1.0)
        if soft_min <= 1.25 * n:
            n = max(n, soft_min)
        return min(max(int(n), hard_min), high)


def percentile(sorted_samples, p):
    """Nearest-rank percentile, p in (0, 100]."""
    if not sorted_samples:
        return 0
    rank = -(-p * len(sorted_samples) // 100)  # ceil
    return sorted_samples[min(max(int(rank), 1), len(sorted_samples)) - 1]


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


# ---- Producer process --------------------------------------------------------------------------

def producer_main(data_q, back_q):
    """Serves the consumer's commands from back_q: ("stream", size, count), ("ping", size,
    count), ("quit",)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # daemon process and get() timeouts still end it
    source = None
    try:
        data_q.put(("ready",))
        while True:
            cmd = back_q.get(timeout=3 * TIMEOUT_S)
            if cmd[0] == "quit":
                return
            op, size, count = cmd
            if source is None or source.nbytes != size:
                source = None
                source = np.full(size, FILL, dtype=np.uint8)  # written: pre-faulted
            if op == "stream":
                cpu0 = time.process_time_ns()
                for _ in range(count):
                    data_q.put(source)
                end = back_q.get(timeout=3 * TIMEOUT_S)
                cpu = time.process_time_ns() - cpu0
                if end != ("end",):
                    raise Error(f"unexpected command {end!r}")
                data_q.put(("cpu", cpu))
            elif op == "ping":
                for i in range(count):
                    if i > 0 and back_q.get(timeout=3 * TIMEOUT_S) != "ack":
                        raise Error("unexpected message instead of an ack")
                    stamp = time.monotonic_ns()
                    source[:8] = np.frombuffer(stamp.to_bytes(8, "little"), dtype=np.uint8)
                    data_q.put(source)
            else:
                raise Error(f"unknown command {op!r}")
    except Exception as e:  # noqa: BLE001: reported, then exit status 1
        sys.stderr.write(f"{NAME}: error: producer: {e!r}\n")
        sys.stderr.flush()
        os._exit(1)
    finally:
        data_q.close()
        data_q.join_thread()


# ---- Consumer (this process) -------------------------------------------------------------------

class Consumer:
    def __init__(self, ctx, max_seconds, sizes):
        self.data_q = ctx.Queue()
        self.back_q = ctx.Queue()
        self.proc = ctx.Process(target=producer_main, args=(self.data_q, self.back_q),
                                name=f"{NAME}-producer", daemon=True)
        self.proc.start()
        try:
            if self.get("the producer to start") != ("ready",):
                raise Error("unexpected first message from the producer")
        except BaseException:
            self.kill()
            raise
        self.budget = Budget(max_seconds * 0.8, sizes)

    def get(self, what):
        """data_q.get(), giving up after TIMEOUT_S or as soon as the producer has exited."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            try:
                return self.data_q.get(timeout=0.25)
            except queue.Empty:
                if self.proc.exitcode is not None:
                    raise Error(f"producer exited with code {self.proc.exitcode} "
                                f"while we waited for {what}") from None
                if time.monotonic() >= deadline:
                    raise Error(f"timed out after {TIMEOUT_S} s waiting for {what}") from None

    def get_array(self, size, what):
        arr = self.get(what)
        if not isinstance(arr, np.ndarray) or arr.nbytes != size or arr[-1] != FILL:
            raise Error(f"received {type(arr).__name__} that is not the {size}-byte array")
        return arr

    def receive_stream(self, size, count):
        """Returns (elapsed ns, CPU ns of both processes) from the command on."""
        cpu0 = time.process_time_ns()
        start = time.monotonic_ns()
        self.back_q.put(("stream", size, count))
        for _ in range(count):
            self.get_array(size, "a stream payload")
        elapsed = time.monotonic_ns() - start
        cpu = time.process_time_ns() - cpu0
        self.back_q.put(("end",))
        reply = self.get("the producer's CPU time")
        if not (isinstance(reply, tuple) and reply[0] == "cpu"):
            raise Error("unexpected reply instead of the producer's CPU time")
        return elapsed, cpu + reply[1]

    def stream(self, size):
        warmup = stream_warmup(size)
        elapsed, _ = self.receive_stream(size, warmup)
        count = self.budget.next_count(elapsed / warmup, 8, 4, stream_max_count(size))
        elapsed, cpu = self.receive_stream(size, count)
        mib = size * count / MIB
        return {"size": size, "mode": "stream", "count": count,
                "gbps": size * count / max(elapsed, 1), "cpu_us_per_mib": cpu / 1e3 / mib}

    def round_trips(self, size, count):
        self.back_q.put(("ping", size, count))
        samples = []
        for i in range(count):
            arr = self.get_array(size, "a ping-pong payload")
            t1 = time.monotonic_ns()
            t0 = int.from_bytes(arr[:8].tobytes(), "little")
            if not 0 < t0 <= t1:
                raise Error(f"bad stamp in ping-pong payload {i}")
            samples.append(t1 - t0)
            if i + 1 < count:
                self.back_q.put("ack")
        return samples

    def ping_pong(self, size):
        warmup = pingpong_warmup(size)
        start = time.monotonic_ns()
        self.round_trips(size, warmup)
        per_trip = (time.monotonic_ns() - start) / warmup
        samples = sorted(self.round_trips(
            size, self.budget.next_count(per_trip, 20, 8, pingpong_max_count(size))))
        us = [percentile(samples, p) / 1e3 for p in (50, 99, 99.9)]
        return {"size": size, "mode": "pingpong", "count": len(samples),
                "p50_us": us[0], "p99_us": us[1], "p999_us": us[2]}

    def quit(self):
        self.back_q.put(("quit",))
        self.proc.join(TIMEOUT_S)
        if self.proc.exitcode is None:
            self.proc.kill()
            self.proc.join()
            raise Error("producer did not exit in time; killed it")
        if self.proc.exitcode != 0:
            raise Error(f"producer exited with code {self.proc.exitcode}")

    def kill(self):
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()


def format_size(n):
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def run(args):
    ctx = mp.get_context("spawn")
    consumer = Consumer(ctx, args.max_seconds, args.sizes)
    try:
        print(f"{NAME}: producer pid {consumer.proc.pid} -> consumer pid {os.getpid()}, "
              f"{os.cpu_count()} CPUs, load average {load_average()}", flush=True)
        results = []
        print(f"{'size':<8} {'GB/s':>10} {'stream n':>8} {'CPU us/MiB':>12} {'p50 us':>11} "
              f"{'p99 us':>11} {'p99.9 us':>11} {'pp n':>7}", flush=True)
        for size in args.sizes:
            s = consumer.stream(size)
            p = consumer.ping_pong(size)
            results += [s, p]
            print(f"{format_size(size):<8} {s['gbps']:>10.3f} {s['count']:>8} "
                  f"{s['cpu_us_per_mib']:>12.1f} {p['p50_us']:>11.2f} {p['p99_us']:>11.2f} "
                  f"{p['p999_us']:>11.2f} {p['count']:>7}", flush=True)
        consumer.quit()
    finally:
        consumer.kill()
    print(f"load average at the end: {load_average()}")
    if args.json:
        doc = {"benchmark": NAME, "description": DESCRIPTION, "cpus": os.cpu_count(),
               "load_average_end": load_average(), "results": results,
               "python": sys.version.split()[0], "numpy": np.__version__,
               "pickle_protocol": pickle.DEFAULT_PROTOCOL}
        try:
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=2)
                f.write("\n")
        except OSError as e:
            raise Error(f"cannot write {args.json}: {e.strerror}") from None


def main():
    args = parse_args(sys.argv[1:])
    try:
        run(args)
    except (Error, OSError, MemoryError) as e:
        sys.stderr.write(f"{NAME}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{NAME}: error: interrupted\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
