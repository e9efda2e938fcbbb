"""Baseline: a pure-Python connector that follows vllm-omni's SharedMemoryConnector method
(vllm_omni/distributed/omni_connectors/connectors/shm_connector.py, as read in
../shared/research/vllm-omni.md section 2.2):

- put: serialize the whole object to msgpack (arrays as {"__ndarray__", dtype, shape, data}
  maps, data = the array's bytes); above the threshold (strictly greater) create a new
  multiprocessing.shared_memory segment of that size, copy the bytes in, close it (no unlink);
  metadata {"shm": {"name", "size"}, "size"}; otherwise {"inline_bytes", "size"}.
- get: open the segment by name, copy `size` bytes out, close, unlink, deserialize.

vllm-omni serializes with msgspec; Debian has no msgspec, so msgpack (the same wire format)
stands in. Arrays are rebuilt with np.frombuffer on the copied-out bytes, without vllm-omni's
extra copy, which favours the baseline. The producer unregisters each segment from CPython's
resource_tracker (vllm-omni does not) only so that the benchmark exits without warnings.
"""
from multiprocessing import resource_tracker, shared_memory

import msgpack
import numpy as np


def _default(obj):
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": True, "dtype": obj.dtype.str, "shape": list(obj.shape),
                "data": obj.tobytes()}
    raise TypeError(f"cannot serialize {type(obj)}")


def _hook(m):
    if m.get("__ndarray__"):
        return np.frombuffer(m["data"], dtype=np.dtype(m["dtype"])).reshape(m["shape"])
    return m


class VllmOmniStyleShmConnector:
    def __init__(self, config=None):
        self.threshold = int((config or {}).get("shm_threshold_bytes", 65536))

    def put(self, from_stage, to_stage, request_id, data):
        try:
            payload = msgpack.packb(data, default=_default, use_bin_type=True)
            size = len(payload)
            if size <= self.threshold:
                return True, size, {"inline_bytes": payload, "size": size}
            shm = shared_memory.SharedMemory(create=True, size=size)
            shm.buf[:size] = payload
            name = shm.name
            shm.close()
            resource_tracker.unregister(shm._name, "shared_memory")
            return True, size, {"shm": {"name": name, "size": size}, "size": size}
        except Exception:  # vllm-omni: log and return a bare failure
            return False, 0, None

    def get(self, from_stage, to_stage, request_id, metadata=None):
        if not metadata:
            return None
        if "shm" in metadata:
            shm = shared_memory.SharedMemory(name=metadata["shm"]["name"])
            size = metadata["shm"]["size"]
            payload = bytes(shm.buf[:size])
            shm.close()
            shm.unlink()
        elif "inline_bytes" in metadata:
            payload, size = metadata["inline_bytes"], metadata["size"]
        else:
            return None
        return msgpack.unpackb(payload, object_hook=_hook, raw=False), metadata.get("size", size)

    def cleanup(self, request_id):
        pass
