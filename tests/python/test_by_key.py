"""Read by key (docs/python.md): get without this connector's metadata finds the payload by
(from_stage, to_stage, key), in any process of the user, while its writer lives."""
import gc
import multiprocessing as mp
import os
import re
import signal
import time

import numpy as np
import pytest

import omniconn

MiB = 1 << 20
INDEX = f"/dev/shm/omniconn-{os.geteuid()}"
FAKE = os.environ.get("OMNICONN_FAKE_MOONCAKE_LIB", "")


def shm(ns, **extra):
    return omniconn.SharedMemoryConnector(dict(extra, namespace=ns))


def ns():
    return f"pytest-key-{os.getpid()}-{time.monotonic_ns()}"


@pytest.mark.parametrize("size", [16, 4 * MiB], ids=["inline", "arena"])
def test_every_kind_of_missing_or_foreign_metadata_reads_by_key(size):
    foreign = [None, {}, "not a dict", 7, {"source_host": "10.0.0.1", "source_port": 50051},
               {"descriptor": "not bytes"}]
    with shm(ns()) as c:
        for i, meta in enumerate(foreign):
            key = f"req-{i}_0_{i}"
            ok, size_put, _ = c.put("0", "1", key, {"a": np.full(size // 4, i, np.float32)})
            assert ok
            obj, got = c.get("0", "1", key, metadata=meta)
            assert got == size_put and obj["a"][0] == i, meta
            assert c.get("0", "1", key) is None  # taken once
            assert "no payload put under key" in c.last_error()


def test_metadata_wrapped_under_the_key_is_unwrapped():
    with shm(ns()) as c:
        ok, _, meta = c.put("0", "1", "req-w", {"x": 1})
        obj, _ = c.get("0", "1", "req-w", metadata={"req-w": meta})
        assert obj == {"x": 1}
        assert c.get("0", "1", "req-w") is None  # its key index entry went with it
        ok, _, meta = c.put("0", "1", "req-w", {"a": np.zeros(MiB, np.uint8)})  # in the arena
        assert c.get("0", "1", "req-w", metadata={"req-w": meta}) is not None
        assert c.get("0", "1", "req-w", metadata={"req-w": meta}) is None  # taken once
        assert "already taken" in c.last_error()


def test_a_payload_taken_by_metadata_is_gone_by_key_too():
    with shm(ns()) as c:
        ok, _, meta = c.put("0", "1", "k", {"a": np.zeros(MiB, np.uint8)})
        assert c.get("0", "1", "k", meta) is not None
        assert c.get("0", "1", "k", timeout=0.05) is None


def test_a_missing_key_gives_none_after_the_timeout_and_says_why():
    with shm(ns()) as c:
        t0 = time.monotonic()
        assert c.get("0", "1", "nobody-wrote-this") is None  # default: one look
        assert time.monotonic() - t0 < 0.5
        t0 = time.monotonic()
        assert c.get("0", "1", "nobody-wrote-this", timeout=0.3) is None
        assert 0.3 <= time.monotonic() - t0 < 2.0
        assert "nobody-wrote-this" in c.last_error() and "before the deadline" in c.last_error()
        assert c.get_with_deadline("0", "1", "nobody", deadline=time.monotonic() + 0.1) is None
        assert "no payload put under key" in c.last_error()


def test_stages_and_namespace_are_part_of_the_key():
    space = ns()
    with shm(space) as c, shm(space + "-other") as other:
        assert c.put("0", "1", "k", {"v": 1})[0]
        assert c.get("0", "2", "k") is None and c.get("1", "1", "k") is None
        assert other.get("0", "1", "k") is None
        assert c.get("0", "1", "k")[0] == {"v": 1}


def test_any_key_is_safe_and_no_file_lands_outside_the_index():
    odd = ["../../../etc/passwd", "a/b/c", "..", ".", "ключ-🔑", "x" * 1000, "sp ace\n\t", "*?[]"]
    before = set(os.listdir("/dev/shm"))
    with shm(ns()) as c:
        for k in odd:
            assert c.put("0", "1", k, {"k": k})[0], k
        for k in odd:
            got = c.get("0", "1", k)
            assert got is not None and got[0] == {"k": k}, (k, c.last_error())
    assert set(os.listdir("/dev/shm")) - before <= {os.path.basename(INDEX)}
    st = os.stat(INDEX)
    assert st.st_uid == os.geteuid() and st.st_mode & 0o077 == 0
    assert all(re.fullmatch(r"k[0-9a-f]{32}|\.[tc][0-9a-f]{48}|keys-v2", n)
               for n in os.listdir(INDEX))
    table = os.stat(os.path.join(INDEX, "keys-v2"))  # the shared table: this user's only
    assert table.st_uid == os.geteuid() and table.st_mode & 0o077 == 0


def test_cleanup_close_and_garbage_collection_remove_unread_entries():
    space = ns()
    reader = shm(space)
    c = shm(space)
    for k in ("req-1_a", "req-1_b", "req-2"):
        assert c.put("0", "1", k, {"k": k})[0]
    c.cleanup("req-1_a")
    assert reader.get("0", "1", "req-1_a") is None
    assert reader.get("0", "1", "req-1_b")[0] == {"k": "req-1_b"}
    c.close()
    c.close()  # idempotent
    assert reader.get("0", "1", "req-2") is None
    c = shm(space)
    assert c.put("0", "1", "gc", {"v": 1})[0]
    del c
    gc.collect()
    assert reader.get("0", "1", "gc") is None
    reader.close()


# ---- across processes -----------------------------------------------------------------------


def _sender(space, rank, receivers, chunks, go, done):
    with omniconn.SharedMemoryConnector({"namespace": space}) as c:
        go.wait(30)
        for chunk in range(chunks):
            for to_rank, to in enumerate(receivers):
                key = f"req_0_{chunk}_{rank}_{to_rank}"  # vllm-omni's rank-aware key
                n = MiB if chunk % 2 else 8  # arena and inline payloads
                ok, _, err = c.put("0", to, key, {"a": np.full(n, rank * 100 + chunk, np.int32)})
                assert ok, err
        done.wait(60)  # the writer lives until its payloads are read


def _receiver(space, to, to_rank, senders, chunks, q):
    with omniconn.SharedMemoryConnector({"namespace": space}) as c:
        got = []
        for chunk in range(chunks):
            for rank in range(senders):
                r = c.get("0", to, f"req_0_{chunk}_{rank}_{to_rank}", timeout=30)
                got.append(None if r is None else int(r[0]["a"][0]))
                if r is None:
                    got.append(c.last_error())
        q.put(got)


def test_several_senders_and_several_receivers_across_processes():
    ctx = mp.get_context("spawn")
    space, chunks, receivers = ns(), 4, ["1", "2"]
    go, done, q = ctx.Event(), ctx.Event(), ctx.Queue()
    senders = [ctx.Process(target=_sender, args=(space, r, receivers, chunks, go, done))
               for r in range(2)]
    readers = [ctx.Process(target=_receiver, args=(space, to, i, 2, chunks, q))
               for i, to in enumerate(receivers)]
    for p in senders + readers:
        p.start()
    try:
        go.set()  # readers are already polling
        results = sorted(q.get(timeout=90) for _ in readers)
        want = [rank * 100 + chunk for chunk in range(chunks) for rank in range(2)]
        assert results == [want, want]
    finally:
        done.set()
        for p in senders + readers:
            p.join(60)
    assert [p.exitcode for p in senders + readers] == [0, 0, 0, 0]


def _doomed_writer(space, q):
    c = omniconn.SharedMemoryConnector({"namespace": space})
    q.put([c.put("0", "1", k, {"a": np.zeros(n, np.uint8)})[0]
           for k, n in (("small", 8), ("big", 2 * MiB))])
    time.sleep(60)


def test_entries_of_a_dead_writer_are_refused_and_removed():
    ctx = mp.get_context("spawn")
    space, q = ns(), ctx.Queue()
    p = ctx.Process(target=_doomed_writer, args=(space, q))
    p.start()
    assert q.get(timeout=60) == [True, True]
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    with shm(space) as c:
        for k in ("small", "big"):
            assert c.get("0", "1", k, timeout=0.2) is None
            err = c.last_error()
            # Refused as the writer's; or, on a slow machine where the entries were older than
            # the sweep's minimum age when this connector opened the index, already swept.
            assert ("refused one" in err and "gone" in err) or "no payload put under key" in err, err
            assert c.get("0", "1", k) is None
            assert "refused" not in c.last_error()  # the dead entry was removed


def _late_writer(space, delay):
    with omniconn.SharedMemoryConnector({"namespace": space}) as c:
        time.sleep(delay)
        c.put("0", "1", "late", {"a": np.arange(4 * MiB, dtype=np.uint8)})
        time.sleep(30)


def test_a_reader_waits_for_a_key_another_process_writes_later():
    ctx = mp.get_context("spawn")
    space = ns()
    p = ctx.Process(target=_late_writer, args=(space, 0.5), daemon=True)
    p.start()
    try:
        with shm(space) as c:
            r = c.get("0", "1", "late", timeout=30)
            assert r is not None, c.last_error()
            np.testing.assert_array_equal(r[0]["a"], np.arange(4 * MiB, dtype=np.uint8))
    finally:
        p.kill()
        p.join(10)


# ---- MooncakeConnector, on the C API test double --------------------------------------------


def mooncake_config(tmp_path, **extra):
    if not FAKE:
        pytest.skip("OMNICONN_FAKE_MOONCAKE_LIB is not set (ctest sets it)")
    return dict({"library": FAKE, "metadata_server": f"fake:{tmp_path}/store",
                 "namespace": "pytest-key"}, **extra)


def _mooncake_writer(config, q, done):
    with omniconn.MooncakeConnector(config) as c:
        q.put([c.put("0", "1", f"req_{i}", {"a": np.full(n, i, np.int32)})[0]
               for i, n in enumerate((4, 2 * MiB))])
        done.wait(60)


def test_mooncake_reads_by_store_key_across_processes(tmp_path):
    config = mooncake_config(tmp_path, inline_threshold_bytes=0)
    ctx = mp.get_context("spawn")
    q, done = ctx.Queue(), ctx.Event()
    p = ctx.Process(target=_mooncake_writer, args=(config, q, done))
    p.start()
    try:
        assert q.get(timeout=60) == [True, True]
        with omniconn.MooncakeConnector(config) as c:
            for i in range(2):
                r = c.get("0", "1", f"req_{i}", timeout=10)
                assert r is not None and int(r[0]["a"][0]) == i, c.last_error()
                assert c.get("0", "1", f"req_{i}") is None  # the reader removed the key
            assert c.health()["gets"] == 2
    finally:
        done.set()
        p.join(60)
    assert p.exitcode == 0


def test_mooncake_says_why_a_small_payload_is_not_found_by_key(tmp_path):
    with omniconn.MooncakeConnector(mooncake_config(tmp_path, inline_threshold_bytes=4096)) as c:
        assert c.put("0", "1", "small", {"v": 1})[0]
        assert c.get("0", "1", "small", timeout=0.1) is None
        assert "inline_threshold_bytes" in c.last_error() and "set it to 0" in c.last_error()
