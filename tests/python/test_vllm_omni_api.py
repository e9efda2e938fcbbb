"""The calls and fields vllm-omni's code uses (docs/python.md, "vllm-omni's API")."""
import gc
import os

import numpy as np
import pytest

import omniconn


def conn(**extra):
    return omniconn.SharedMemoryConnector(dict(extra, namespace=f"pytest-api-{os.getpid()}"))


def test_health_has_vllm_omnis_fields_and_omniconns_counters():
    with conn() as c:
        ok, size, meta = c.put("0", "1", "r", {"a": np.zeros(1 << 20, np.uint8)})
        c.get("0", "1", "r", metadata=meta)
        h = c.health()
        assert h["status"] == "healthy" and h["puts"] == 1 and h["gets"] == 1
        assert h["bytes_transferred"] == size == h["bytes_out"]
        assert {"in_flight", "in_use_bytes", "timeouts", "errors", "type"} <= set(h)
    assert c.health() == {"status": "closed"}


def test_supports_raw_data_is_a_false_class_attribute():
    assert omniconn.SharedMemoryConnector.supports_raw_data is False
    assert omniconn.MooncakeConnector.supports_raw_data is False
    assert omniconn.Connector.supports_raw_data is False


def test_keywords_vllm_omni_passes():
    with conn() as c:
        ok, _, meta = c.put(from_stage="0", to_stage="1", put_key="k", data={"v": 1})
        assert c.get(from_stage="0", to_stage="1", get_key="k", metadata=meta)[0] == {"v": 1}


def test_close_is_idempotent_a_context_manager_and_runs_on_garbage_collection():
    c = conn()
    with c as same:
        assert same is c
    c.close()
    with pytest.raises(RuntimeError, match="closed"):  # a programming error raises
        c.put("0", "1", "r", {})
    reader = conn()
    writer = conn()
    assert writer.put("0", "1", "gc-key", {"v": 1})[0]
    del writer
    gc.collect()
    assert reader.get("0", "1", "gc-key") is None  # its unread entry went with it
    reader.close()


def test_runtime_keys_vllm_omni_injects_are_attributes_not_settings():
    c = omniconn.SharedMemoryConnector({"stage_id": 2, "role": "dual",
                                        "namespace": f"pytest-api-{os.getpid()}"})
    assert c.stage_id == 2 and c.config["role"] == "dual"
    assert omniconn.SharedMemoryConnector({}).stage_id == -1
    c.close()


def test_one_error_convention():
    with conn(max_payload_bytes=1 << 20) as c:
        ok, size, err = c.put("0", "1", "r", {"x": object()})  # cannot be encoded
        assert (ok, size, err["code"]) == (False, 0, "invalid argument")
        ok, size, err = c.put("0", "1", "r", {"x": np.zeros(2 << 20, np.uint8)})  # too large
        assert (ok, size) == (False, 0) and set(err) == {"error", "code"}
        assert c.get("0", "1", "r", metadata={"descriptor": b"garbage"}) is None
        assert c.last_error()  # a reason for every None
        with pytest.raises(ValueError):
            c.get("0", "1", "r", timeout=-1)
        with pytest.raises(TypeError):
            c.put(0, "1", "r", {})
