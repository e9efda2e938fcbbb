"""omniconn: data connectors for multi-stage model pipelines, with vllm-omni's call shapes.

    conn = omniconn.SharedMemoryConnector({"shm_threshold_bytes": 65536})
    ok, size, metadata = conn.put("0", "1", key, {"hidden": tensor})
    obj, size = other_process_conn.get("0", "1", key, metadata)   # or without metadata: by key

numpy arrays and CPU torch tensors (every dtype of the payload format, bf16 included) are
written once into the transport and come back as zero-copy, copy-on-write views on its memory,
valid while referenced. `metadata` is a small picklable dict to pass through any queue; a
reader without it finds the payload by (from_stage, to_stage, key). See docs/python.md.
"""
from ._omniconn import (Connector, Loan, MetricsServer, chunk_key, create_connector,
                         encode_payload)

__all__ = [
    "Connector",
    "Loan",
    "MetricsServer",
    "MooncakeConnector",
    "SharedMemoryConnector",
    "chunk_key",
    "create_connector",
    "encode_payload",
]

# Keys vllm-omni adds to every connector's `extra` at run time; they are the stage's, not the
# connector's, and are kept as attributes.
_RUNTIME_KEYS = ("stage_id", "role")


def _split(config):
    extra = dict(config or {})
    runtime = {k: extra.pop(k) for k in _RUNTIME_KEYS if k in extra}
    return extra, runtime


class SharedMemoryConnector(Connector):
    """vllm-omni's constructor shape: `SharedMemoryConnector(config)`, where `config` is the
    connector's `extra` map (shm_threshold_bytes, arena_bytes, ...; docs/config.md)."""

    def __init__(self, config=None):
        extra, runtime = _split(config)
        super().__init__({"name": "SharedMemoryConnector", "extra": extra})
        self.config = dict(config or {})
        self.stage_id = runtime.get("stage_id", -1)


class MooncakeConnector(Connector):
    """vllm-omni's constructor shape: `MooncakeConnector(config)`, where `config` is the
    connector's `extra` map (host, metadata_server, master, segment, localbuf, proto, ...)."""

    def __init__(self, config=None):
        extra, runtime = _split(config)
        super().__init__({"name": "MooncakeConnector", "extra": extra})
        self.config = dict(config or {})
        self.stage_id = runtime.get("stage_id", -1)
