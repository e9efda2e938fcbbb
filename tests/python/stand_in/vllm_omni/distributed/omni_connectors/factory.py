"""A stand-in for vllm-omni's OmniConnectorFactory (vllm_omni/distributed/omni_connectors/
factory.py, main of 2026-07), written from its documented behaviour for omniconn's tests:
a class-level `_registry`, `register_connector` refusing a name twice, `create_connector(spec)`
calling the constructor with `spec.extra`, unknown names and failing constructors as
ValueError. It registers vllm-omni's own names with constructors that are not omniconn's."""
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ConnectorSpec:
    name: str
    extra: dict = field(default_factory=dict)


class VllmOmniOwnConnector:
    """Stands for vllm-omni's own connectors: records what it was made with."""

    def __init__(self, name, config):
        self.name, self.config = name, config


class OmniConnectorFactory:
    _registry: dict[str, Any] = {}

    @classmethod
    def register_connector(cls, name, constructor):
        if name in cls._registry:
            raise ValueError(f"Connector '{name}' is already registered.")
        cls._registry[name] = constructor

    @classmethod
    def create_connector(cls, spec):
        if spec.name not in cls._registry:
            raise ValueError(f"Unknown connector: {spec.name}. Available: {list(cls._registry)}")
        try:
            return cls._registry[spec.name](spec.extra)
        except Exception as e:
            raise ValueError(f"Failed to create connector {spec.name}: {e}")

    @classmethod
    def list_registered_connectors(cls):
        return list(cls._registry)


for _name in ("MooncakeStoreConnector", "MooncakeTransferEngineConnector",
              "SharedMemoryConnector", "YuanrongConnector", "MooncakeConnector"):
    OmniConnectorFactory.register_connector(
        _name, lambda config, _n=_name: VllmOmniOwnConnector(_n, config))
