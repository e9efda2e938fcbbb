"""MooncakeConnector from Python: on the C API test double always, on a live Mooncake store
(a mooncake_master started here on loopback) when one is installed."""
import multiprocessing as mp
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import numpy as np
import pytest
import torch

import omniconn

MiB = 1 << 20
FAKE = os.environ.get("OMNICONN_FAKE_MOONCAKE_LIB", "")
LIB = os.environ.get("MOONCAKE_STORE_LIBRARY", "/opt/mooncake/lib/libmooncake_store.so")
MASTER = os.environ.get("OMNICONN_MOONCAKE_MASTER", "/opt/mooncake/bin/mooncake_master")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def live_master():
    if not os.path.isfile(LIB) or not os.access(MASTER, os.X_OK):
        pytest.skip(f"live Mooncake: no {LIB} or {MASTER} (docs/mooncake.md)")
    rpc, http = free_port(), free_port()
    workdir = tempfile.mkdtemp(prefix="omniconn-pytest-master.")
    with open(os.path.join(workdir, "master.log"), "w") as log:
        proc = subprocess.Popen(
            [MASTER, "--rpc_address=127.0.0.1", f"--rpc_port={rpc}",
             "--enable_http_metadata_server=true", "--http_metadata_server_host=127.0.0.1",
             f"--http_metadata_server_port={http}", "--metrics_host=127.0.0.1",
             f"--metrics_port={free_port()}"], cwd=workdir, stdout=log, stderr=log)
    try:
        for _ in range(300):
            if listening(rpc) and listening(http):
                break
            time.sleep(0.05)
        else:
            pytest.fail("mooncake_master did not start; see " + workdir)
        yield {"library": LIB, "master": f"127.0.0.1:{rpc}", "host": "127.0.0.1",
               "metadata_server": f"http://127.0.0.1:{http}/metadata"}
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def fake_config(tmp_path):
    if not FAKE:
        pytest.skip("OMNICONN_FAKE_MOONCAKE_LIB is not set (ctest sets it)")
    return {"library": FAKE, "metadata_server": f"fake:{tmp_path}/store",
            "namespace": "pytest"}


def _producer(config, q, done):
    with omniconn.MooncakeConnector(config) as c:
        hidden = torch.arange(8 * MiB, dtype=torch.float32).to(torch.bfloat16)  # 16 MiB
        q.put(c.put("0", "1", "req-1", {"hidden": hidden, "ids": np.arange(7), "text": "hi"}))
        lo = c.loan("0", "1", "req-2", (MiB,), np.float32)
        with lo as buf:
            buf[:] = 2.5
        q.put(lo.result)
        done.wait(120)  # the payloads live in this process's segment until they are read


def _round_trip_across_processes(config):
    ctx = mp.get_context("spawn")
    q, done = ctx.Queue(), ctx.Event()
    p = ctx.Process(target=_producer, args=(config, q, done))
    p.start()
    try:
        first, second = q.get(timeout=120), q.get(timeout=120)
        assert first[0] and second[0], (first, second)
        with omniconn.MooncakeConnector(config) as c:
            obj, size = c.get("0", "1", "req-1", first[2], timeout=30)
            assert size == first[1] and obj["text"] == "hi"
            assert obj["hidden"].dtype == torch.bfloat16 and obj["hidden"].numel() == 8 * MiB
            assert torch.equal(obj["hidden"][:100],
                               torch.arange(100, dtype=torch.float32).to(torch.bfloat16))
            np.testing.assert_array_equal(obj["ids"], np.arange(7))
            loaned, _ = c.get("0", "1", "req-2", second[2], timeout=30)
            assert loaned.shape == (MiB,) and float(loaned.min()) == float(loaned.max()) == 2.5
            assert c.get("0", "1", "req-1", first[2], timeout=1) is None  # taken once
            assert "already taken" in c.last_error()
            assert c.health()["status"] == "healthy"
    finally:
        done.set()
        p.join(120)
    assert p.exitcode == 0


def test_round_trip_on_the_c_api_test_double(tmp_path):
    _round_trip_across_processes(fake_config(tmp_path))


def test_round_trip_on_a_live_store(live_master):
    _round_trip_across_processes(dict(live_master, namespace=f"pytest-{os.getpid()}"))


def test_missing_library_says_how_to_provide_it():
    with pytest.raises(ValueError, match="MOONCAKE_STORE_LIBRARY"):
        omniconn.MooncakeConnector({"library": "/nonexistent/libmooncake_store.so"})
