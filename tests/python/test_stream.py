"""Streaming from Python the way vllm-omni's chunk adapter does it: chunks put under
"{request}_{stage}_{chunk}" with a `finished` flag, read by key in another process in order;
a request cancelled mid-stream (cleanup(request)) frees the chunks not yet read."""
import multiprocessing as mp
import os
import time

import numpy as np

import omniconn

CHUNKS = 6


def space():
    return f"pytest-stream-{os.getpid()}-{time.monotonic_ns()}"


def _reader(ns, requests, q):
    with omniconn.SharedMemoryConnector({"namespace": ns}) as c:
        got = []
        for req in requests:
            chunk = 0
            while True:
                obj = c.get("1", "2", omniconn.chunk_key(req, "1", chunk), timeout=10)
                assert obj is not None, c.last_error()
                data, _ = obj
                assert data["codes"][0, 0] == chunk and data["request"] == req
                got.append((req, chunk))
                if data["finished"]:
                    break
                chunk += 1
        q.put(got)


def test_chunks_read_by_key_in_order_until_finished_in_another_process():
    ns = space()
    requests = ["req-a", "req-b"]
    with omniconn.SharedMemoryConnector({"namespace": ns}) as c:
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        reader = ctx.Process(target=_reader, args=(ns, requests, q))
        reader.start()
        for req in requests:
            for chunk in range(CHUNKS):  # 25 frames x 8 codes, i64: 1.6 KB, inline
                codes = np.full((25, 8), chunk, np.int64)
                ok, _, _ = c.put("1", "2", omniconn.chunk_key(req, "1", chunk),
                                 {"codes": codes, "request": req, "finished": chunk == CHUNKS - 1})
                assert ok
        got = q.get(timeout=30)
        reader.join(30)
        assert reader.exitcode == 0
        assert got == [(r, k) for r in requests for k in range(CHUNKS)]


def test_cleanup_of_a_cancelled_request_frees_its_unread_chunks():
    with omniconn.SharedMemoryConnector({"namespace": space()}) as c:
        for chunk in range(CHUNKS):  # 1 MiB chunks: in the arena, counted in flight
            ok, _, _ = c.put("1", "2", omniconn.chunk_key("req-x", "1", chunk),
                             {"audio": np.zeros(1 << 18, np.float32)})
            assert ok
        ok, _, _ = c.put("1", "2", omniconn.chunk_key("req-x1", "1", 0),
                         {"audio": np.zeros(1 << 18, np.float32)})  # another request's
        first = c.get("1", "2", omniconn.chunk_key("req-x", "1", 0))
        assert first is not None
        before = c.health()
        c.cleanup("req-x")  # cancelled after its first chunk was read
        after = c.health()
        assert before["in_flight"] == CHUNKS + 1
        assert after["in_flight"] == 2  # the chunk being read, and req-x1's
        assert c.get("1", "2", omniconn.chunk_key("req-x", "1", 1), timeout=0.05) is None
        assert c.get("1", "2", omniconn.chunk_key("req-x1", "1", 0)) is not None
        del first
        assert c.health()["in_flight"] == 0
        assert c.health()["in_use_bytes"] == 0
