"""omniconn: data connectors for multi-stage model pipelines, with vllm-omni's call shapes.

    conn = omniconn.SharedMemoryConnector({"shm_threshold_bytes": 65536})
    ok, size, metadata = conn.put("0", "1", request_id, {"hidden": tensor})
    obj, size = other_process_conn.get("0", "1", request_id, metadata)

numpy arrays and CPU torch tensors (every dtype of the payload format, bf16 included) are
written once into the transport and come back as views on its memory, valid while
referenced. `metadata` is a small picklable dict to pass through any queue. See
docs/python.md.
"""
from ._omniconn import Connector, Loan, create_connector, encode_payload

__all__ = [
    "Connector",
    "Loan",
    "MooncakeConnector",
    "SharedMemoryConnector",
    "create_connector",
    "encode_payload",
]


class SharedMemoryConnector(Connector):
    """vllm-omni's constructor shape: `SharedMemoryConnector(config)`, where `config` is the
    connector's `extra` map (shm_threshold_bytes, arena_bytes, ...; docs/config.md)."""

    def __init__(self, config=None):
        super().__init__({"name": "SharedMemoryConnector", "extra": dict(config or {})})


class MooncakeConnector(Connector):
    """vllm-omni's constructor shape: `MooncakeConnector(config)`, where `config` is the
    connector's `extra` map (host, metadata_server, master, segment, localbuf, proto, ...)."""

    def __init__(self, config=None):
        super().__init__({"name": "MooncakeConnector", "extra": dict(config or {})})
