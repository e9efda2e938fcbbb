"""The omniconn Python module with vllm-omni's call shapes, across real processes."""
import multiprocessing as mp
import os

import numpy as np
import pytest

import omniconn
from shm_helpers import mapping_of

MiB = 1 << 20


def spec(**extra):
    extra.setdefault("namespace", f"pytest-{os.getpid()}")
    return {"name": "SharedMemoryConnector", "extra": extra}


def test_round_trip_of_nested_data_and_every_numpy_dtype():
    data = {
        "hidden": np.arange(4 * 3584, dtype=np.float32).reshape(4, 3584),
        "ids": np.arange(4, dtype=np.int64),
        "extras": [np.ones((2, 3), dtype=dt) for dt in
                   (np.float16, np.float64, np.int32, np.int16, np.int8, np.uint8, np.bool_)],
        "meta": {"prompt": "hello", "n": 3, "p": 0.5, "raw": b"\x00\x01", "none": None},
    }
    with omniconn.create_connector(spec()) as c:
        ok, size, meta = c.put("0", "1", "req-1", data)
        assert ok and size > 4 * 3584 * 4 and meta["size"] == size
        obj, got_size = c.get("0", "1", "req-1", meta)
        assert got_size == size
        np.testing.assert_array_equal(obj["hidden"], data["hidden"])
        np.testing.assert_array_equal(obj["ids"], data["ids"])
        for a, b in zip(obj["extras"], data["extras"]):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        assert obj["meta"] == data["meta"]
        assert obj["hidden"].flags.writeable  # copy-on-write: see test_writable.py
        assert not obj["hidden"].flags.owndata


def _producer(q, done, n_bytes):
    c = omniconn.create_connector(spec(namespace="xproc"))
    arr = np.arange(n_bytes // 4, dtype=np.float32)
    q.put(c.put("0", "1", "req-x", {"hidden_states": arr}))
    done.wait(60)  # the writer keeps the arena alive until the reader is done


def test_16_mib_array_crosses_processes_as_a_view_on_shared_memory():
    ctx = mp.get_context("spawn")
    q, done = ctx.Queue(), ctx.Event()
    p = ctx.Process(target=_producer, args=(q, done, 16 * MiB))
    p.start()
    try:
        ok, size, meta = q.get(timeout=60)
        assert ok, meta
        c = omniconn.create_connector(spec(namespace="xproc"))
        obj, _ = c.get("0", "1", "req-x", meta, timeout=10)
        arr = obj["hidden_states"]
        assert arr.nbytes == 16 * MiB
        assert arr[-1] == 16 * MiB // 4 - 1
        line = mapping_of(arr.__array_interface__["data"][0])
        assert "memfd:omniconn-segment" in line, line
        del obj, arr
    finally:
        done.set()
        p.join(60)
    assert p.exitcode == 0


def test_unsupported_objects_are_refused_without_pickle():
    # A data-path failure: a return value that says why, not an exception (docs/python.md).
    with omniconn.create_connector(spec()) as c:
        ok, size, err = c.put("0", "1", "r", {"x": {1, 2}})
        assert (ok, size, err["code"]) == (False, 0, "invalid argument")
        assert "nothing is pickled" in err["error"]
        ok, size, err = c.put("0", "1", "r", {1: "int key"})
        assert (ok, size) == (False, 0) and "dict keys must be str" in err["error"]
        assert c.health()["puts"] == 0


def test_failed_put_says_why():
    with omniconn.create_connector(spec(max_payload_bytes=1 * MiB)) as c:
        ok, size, meta = c.put("0", "1", "r", {"x": np.zeros(2 * MiB, dtype=np.uint8)})
        assert (ok, size) == (False, 0)
        assert "max_payload_bytes" in meta["error"] and meta["code"] == "invalid argument"


def test_get_returns_none_with_a_reason():
    with omniconn.create_connector(spec()) as c:
        assert c.get("0", "1", "r", None) is None
        ok, _, meta = c.put("0", "1", "r", {"x": np.zeros(MiB, dtype=np.uint8)})
        assert c.get("0", "1", "r", {"descriptor": b"garbage"}) is None
        assert "descriptor" in c.last_error()
        assert c.get("0", "1", "r", meta) is not None
        assert c.get("0", "1", "r", meta) is None  # consumed once
        assert "already taken" in c.last_error()


def test_health_close_and_bad_spec():
    c = omniconn.create_connector(spec())
    h = c.health()
    assert h["status"] == "healthy" and h["type"] == "SharedMemoryConnector"
    assert "puts" in h and "in_flight" in h
    c.close()
    c.close()  # idempotent
    assert c.health()["status"] == "closed"
    with pytest.raises(RuntimeError, match="closed"):
        c.put("0", "1", "r", {})
    with pytest.raises(ValueError, match="shm_threshold_bytes"):
        omniconn.create_connector({"name": "SharedMemoryConnector",
                                   "extra": {"shm_threshold_bytes": -1}})
    with pytest.raises(ValueError, match="unknown connector type"):
        omniconn.create_connector({"name": "NoSuchConnector"})


def test_get_with_deadline_uses_time_monotonic():
    import time
    with omniconn.create_connector(spec()) as c:
        ok, _, meta = c.put("0", "1", "r", {"x": np.arange(10)})
        obj, _ = c.get_with_deadline("0", "1", "r", meta, deadline=time.monotonic() + 5)
        np.testing.assert_array_equal(obj["x"], np.arange(10))
        assert c.get_with_deadline("0", "1", "r", None, deadline=time.monotonic()) is None


def test_two_stage_example_runs():
    import pathlib
    import subprocess
    import sys
    example = pathlib.Path(__file__).resolve().parents[2] / "examples" / "python" / "two_stage.py"
    out = subprocess.run([sys.executable, str(example), "--requests", "20"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("20 requests")


@pytest.mark.skipif(not os.environ.get("OMNICONN_FILE_CONNECTOR_LIB"),
                    reason="OMNICONN_FILE_CONNECTOR_LIB (the test plugin library) is not set")
def test_a_connector_from_a_plugin_library(tmp_path):
    spec = {"name": "FileConnector", "plugin": os.environ["OMNICONN_FILE_CONNECTOR_LIB"],
            "extra": {"directory": str(tmp_path), "inline_threshold_bytes": 0}}
    with omniconn.create_connector(spec) as c:
        data = {"hidden": np.arange(100000, dtype=np.float32)}
        ok, size, meta = c.put("0", "1", "r", data)
        assert ok and size > 400000
        obj, _ = c.get("0", "1", "r", meta)
        assert np.array_equal(obj["hidden"], data["hidden"])
        assert c.health()["type"] == "FileConnector"
    with pytest.raises(ValueError, match="unknown connector type 'NoSuchType'"):
        omniconn.create_connector({"name": "NoSuchType"})
