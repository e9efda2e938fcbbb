"""A received array or tensor is safe to write (docs/python.md, "Writable views"): payload
memory is mapped copy-on-write, so a write copies the touched pages into the reader alone."""
import multiprocessing as mp
import os

import numpy as np
import pytest
import torch

import omniconn
from shm_helpers import mapping_of

MiB = 1 << 20


def conn(**extra):
    return omniconn.SharedMemoryConnector(dict(extra, namespace=f"pytest-cow-{os.getpid()}"))


@pytest.mark.parametrize("n", [16, 4 * MiB, 80 * MiB], ids=["inline", "arena", "dedicated"])
def test_received_tensors_and_arrays_can_be_written(n):
    with conn(arena_bytes=64 * MiB) as c:
        ok, _, meta = c.put("0", "1", "t", {"t": torch.ones(n // 4), "a": np.ones(n, np.uint8)})
        assert ok, meta
        obj, _ = c.get("0", "1", "t", meta)
        obj["t"][:] = 7          # no SIGSEGV
        obj["t"].mul_(2)
        obj["a"][-1] = 9
        assert float(obj["t"].min()) == float(obj["t"].max()) == 14.0 and obj["a"][-1] == 9
        if n > 64 * 1024:
            assert " r--p " not in mapping_of(obj["t"].data_ptr())


def test_writes_stay_in_the_reader_and_do_not_reach_shared_memory():
    with conn() as c:
        lo = c.loan("0", "1", "l", (MiB,), np.float32)
        with lo as buf:
            buf[:] = 1.0
        shared = lo.buffer  # the writer's view of the same shared pages
        obj, _ = c.get("0", "1", "l", lo.result[2])
        obj[:] = 5.0
        assert float(shared.min()) == float(shared.max()) == 1.0
        assert float(obj.min()) == 5.0


def test_a_written_payload_leaves_no_stale_page_for_the_next_one():
    with conn() as c:
        for round_ in range(4):  # the same arena range, reused
            ok, _, meta = c.put("0", "1", f"r{round_}", {"a": np.full(MiB, round_, np.int32)})
            obj, _ = c.get("0", "1", f"r{round_}", meta)
            assert int(obj["a"].min()) == int(obj["a"].max()) == round_
            obj["a"][:] = -1
            del obj
            c.health()  # sweeps: the range goes back to the arena


def test_writable_false_keeps_the_read_only_shared_mapping():
    with conn() as c:
        ok, _, meta = c.put("0", "1", "ro", {"a": np.zeros(4 * MiB, np.uint8)})
        obj, _ = c.get("0", "1", "ro", meta, writable=False)
        assert not obj["a"].flags.writeable
        assert " r--s " in mapping_of(obj["a"].ctypes.data)
        ok, _, meta = c.put("0", "1", "rw", {"a": np.zeros(4 * MiB, np.uint8)})
        obj, _ = c.get("0", "1", "rw", meta)
        assert obj["a"].flags.writeable and " rw-p " in mapping_of(obj["a"].ctypes.data)


def _writer(ns, q, done):
    with omniconn.SharedMemoryConnector({"namespace": ns}) as c:
        q.put(c.put("0", "1", "x", {"t": torch.arange(4 * MiB, dtype=torch.float32)}))
        done.wait(60)


def _reader(ns, meta, q):
    with omniconn.SharedMemoryConnector({"namespace": ns}) as c:
        obj, _ = c.get("0", "1", "x", meta)
        obj["t"] += 1  # would have been SIGSEGV on a read-only mapping
        q.put(float(obj["t"][10]))


def test_a_reader_process_writes_into_a_received_tensor():
    ctx = mp.get_context("spawn")
    ns, q, done = f"pytest-cow-x-{os.getpid()}", ctx.Queue(), ctx.Event()
    w = ctx.Process(target=_writer, args=(ns, q, done))
    w.start()
    try:
        ok, _, meta = q.get(timeout=60)
        assert ok
        r = ctx.Process(target=_reader, args=(ns, meta, q))
        r.start()
        r.join(60)
        assert r.exitcode == 0
        assert q.get(timeout=5) == 11.0
    finally:
        done.set()
        w.join(60)
