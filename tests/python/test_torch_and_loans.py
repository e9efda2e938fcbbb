"""torch tensors (bf16 included), the loan API, GIL release and the installable package."""
import multiprocessing as mp
import os
import threading
import time

import numpy as np
import pytest
import torch

import omniconn
from shm_helpers import mapping_of

MiB = 1 << 20
TORCH_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64,
                torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool]


def spec(**extra):
    extra.setdefault("namespace", f"pytest-torch-{os.getpid()}")
    return {"name": "SharedMemoryConnector", "extra": extra}


def sample(dtype, shape=(3, 5)):
    t = torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(shape) - 7
    return (t > 0) if dtype == torch.bool else t.to(dtype)


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
def test_every_torch_dtype_round_trips_as_a_torch_tensor(dtype):
    with omniconn.create_connector(spec()) as c:
        big = sample(dtype, (256, 512))  # above the inline threshold for every dtype but 1-byte
        ok, size, meta = c.put("0", "1", "r", {"t": sample(dtype), "big": big, "n": 3})
        assert ok, meta
        obj, got = c.get("0", "1", "r", meta)
        assert got == size and obj["n"] == 3
        for name, sent in (("t", sample(dtype)), ("big", big)):
            assert isinstance(obj[name], torch.Tensor) and obj[name].dtype == dtype
            assert obj[name].shape == sent.shape and torch.equal(obj[name], sent)


def test_tensors_are_sent_as_their_values():
    with omniconn.create_connector(spec()) as c:
        base = torch.arange(64, dtype=torch.float32).reshape(8, 8)
        cases = {"transposed": base.t(), "sliced": base[::2, 1:5], "scalar": torch.tensor(2.5),
                 "empty": torch.zeros((0, 4)), "neg_view": torch._neg_view(base)
                 if hasattr(torch, "_neg_view") else -base, "grad": base.clone().requires_grad_()}
        ok, _, meta = c.put("0", "1", "r", cases)
        assert ok, meta
        obj, _ = c.get("0", "1", "r", meta)
        for name, sent in cases.items():
            assert torch.equal(obj[name], sent.detach()), name
            assert obj[name].is_contiguous() and not obj[name].requires_grad


def test_unsupported_tensors_are_refused():
    with omniconn.create_connector(spec()) as c:
        for bad, why in ((torch.zeros(2, dtype=torch.complex64), "torch dtype 'torch.complex64'"),
                         (torch.eye(3).to_sparse(), "dense")):
            ok, size, err = c.put("0", "1", "r", {"x": bad})
            assert (ok, size) == (False, 0) and why in err["error"], err
        assert c.health()["in_use_bytes"] == 0


def _torch_producer(q, done):
    c = omniconn.SharedMemoryConnector({"namespace": "xproc-torch"})
    t = torch.arange(8 * MiB, dtype=torch.float32).to(torch.bfloat16)  # 16 MiB of bf16
    q.put(c.put("0", "1", "req-t", {"hidden": t}))
    lo = c.loan("0", "1", "req-l", (4 * MiB,), torch.bfloat16)
    with lo as buf:
        buf.fill_(1.25)
    q.put(lo.result)
    done.wait(60)


def test_16_mib_bf16_tensor_and_a_loan_cross_processes_as_views():
    ctx = mp.get_context("spawn")
    q, done = ctx.Queue(), ctx.Event()
    p = ctx.Process(target=_torch_producer, args=(q, done))
    p.start()
    try:
        put_result, loan_result = q.get(timeout=60), q.get(timeout=60)
        assert put_result[0] and loan_result[0], (put_result, loan_result)
        c = omniconn.SharedMemoryConnector({"namespace": "xproc-torch"})
        obj, _ = c.get("0", "1", "req-t", put_result[2], timeout=10)
        t = obj["hidden"]
        assert t.dtype == torch.bfloat16 and t.numel() * 2 == 16 * MiB
        assert torch.equal(t[:1000], torch.arange(1000, dtype=torch.float32).to(torch.bfloat16))
        assert "memfd:omniconn-segment" in mapping_of(t.data_ptr())
        loaned, size = c.get("0", "1", "req-l", loan_result[2], timeout=10)
        assert isinstance(loaned, torch.Tensor) and loaned.shape == (4 * MiB,)
        assert bool((loaned == 1.25).all()) and size == loan_result[1]
        assert "memfd:omniconn-segment" in mapping_of(loaned.data_ptr())
        del obj, t, loaned
    finally:
        done.set()
        p.join(60)
    assert p.exitcode == 0


def test_numpy_loan_commits_on_exit_and_is_frozen():
    with omniconn.SharedMemoryConnector({"namespace": f"loan-{os.getpid()}"}) as c:
        lo = c.loan("0", "1", "r", (256, 3584), np.float32)
        assert lo.result is None
        with lo as buf:
            assert buf.flags.writeable and buf.shape == (256, 3584)
            buf[:] = np.arange(3584, dtype=np.float32)
        ok, size, meta = lo.result
        assert ok and size >= 256 * 3584 * 4
        assert not buf.flags.writeable  # handed over: no more writes through this array
        obj, _ = c.get("0", "1", "r", meta)
        np.testing.assert_array_equal(obj[7], np.arange(3584, dtype=np.float32))
        with pytest.raises(RuntimeError, match="already committed"):
            lo.commit()


def test_an_exception_in_the_block_aborts_the_loan():
    with omniconn.SharedMemoryConnector({"namespace": f"loan-{os.getpid()}"}) as c:
        with pytest.raises(KeyError):
            with c.loan("0", "1", "r", (MiB,), "uint8") as buf:
                buf[:10] = 1
                assert c.health()["in_use_bytes"] >= MiB
                raise KeyError("producer failed")
        assert c.health()["in_use_bytes"] == 0


def test_a_loan_that_cannot_fit_fails_at_its_timeout():
    extra = {"namespace": f"loan-{os.getpid()}", "arena_bytes": 4 * MiB,
             "max_payload_bytes": 4 * MiB}
    with omniconn.SharedMemoryConnector(extra) as c:
        first = c.loan("0", "1", "a", (3 * MiB,), "uint8")
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="resource exhausted"):
            c.loan("0", "1", "b", (3 * MiB,), "uint8", timeout=0.2)
        assert time.monotonic() - start >= 0.2
        first.abort()
        c.loan("0", "1", "b", (3 * MiB,), "uint8", timeout=0.2).abort()
        with pytest.raises(TypeError, match="complex"):
            c.loan("0", "1", "c", (4,), np.complex64)


def test_blocking_calls_release_the_gil():
    extra = {"namespace": f"gil-{os.getpid()}", "arena_bytes": 4 * MiB,
             "max_payload_bytes": 4 * MiB}
    with omniconn.SharedMemoryConnector(extra) as c:
        hold = c.loan("0", "1", "hold", (3 * MiB,), "uint8")
        ticks, stop = [0], threading.Event()

        def spin():
            while not stop.is_set():
                ticks[0] += 1

        t = threading.Thread(target=spin)
        t.start()
        try:
            ok, _, err = c.put("0", "1", "r", {"x": np.zeros(3 * MiB, np.uint8)}, timeout=0.5)
        finally:
            stop.set()
            t.join()
        assert not ok and err["code"] == "resource exhausted"
        assert ticks[0] > 1000  # the other thread ran while put waited
        hold.abort()


def test_classes_take_vllm_omni_constructor_configs():
    c = omniconn.SharedMemoryConnector({"shm_threshold_bytes": 1024,
                                        "namespace": f"cls-{os.getpid()}"})
    assert isinstance(c, omniconn.Connector)
    ok, size, meta = c.put("0", "1", "r", {"x": np.zeros(100, np.uint8)})
    assert ok and c.health()["inline_payloads"] == 1
    c.close()
    # Keys the connector does not read are ignored, as vllm-omni's connectors do (its deploy
    # files put codec settings there); a bad value of a known key raises.
    omniconn.SharedMemoryConnector({"codec_streaming": True,
                                    "namespace": f"cls-{os.getpid()}"}).close()
    with pytest.raises(ValueError, match="shm_threshold_bytes"):
        omniconn.SharedMemoryConnector({"shm_threshold_bytes": "64KB"})
    assert os.path.basename(os.path.dirname(omniconn.__file__)) == "omniconn"
