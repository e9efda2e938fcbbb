"""Registers omniconn's connectors in vllm-omni's OmniConnectorFactory.

    import omniconn.vllm_omni
    omniconn.vllm_omni.register()              # as OmniconnSharedMemoryConnector, ...
    omniconn.vllm_omni.register(replace=True)  # also in place of vllm-omni's own

`register()` adds `OmniconnSharedMemoryConnector` and `OmniconnMooncakeConnector`, so a
deployment picks omniconn by the connector name in its YAML. `replace=True` (or the
environment variable OMNICONN_VLLM_OMNI_REPLACE=1) also puts them under vllm-omni's names,
`SharedMemoryConnector` and `MooncakeConnector` (and `MooncakeStoreConnector`), so nothing in
the YAML changes. Importing this module registers nothing by itself; `register()` is safe to
call again (names already pointing at omniconn are left alone).

A MooncakeConnector made through the factory reads by key, as vllm-omni's does, so unless
`extra` sets `inline_threshold_bytes` it is 0 here: every payload goes through the store and a
reader without metadata finds it.
"""
import os

from . import MooncakeConnector, SharedMemoryConnector

OWN_NAMES = {
    "OmniconnSharedMemoryConnector": "shm",
    "OmniconnMooncakeConnector": "mooncake",
}
REPLACED_NAMES = {
    "SharedMemoryConnector": "shm",
    "MooncakeConnector": "mooncake",
    "MooncakeStoreConnector": "mooncake",
}


def _shm(extra):
    return SharedMemoryConnector(extra)


def _mooncake(extra):
    extra = dict(extra or {})
    extra.setdefault("inline_threshold_bytes", 0)
    return MooncakeConnector(extra)


_CTORS = {"shm": _shm, "mooncake": _mooncake}


def factory():
    """vllm-omni's OmniConnectorFactory, or None when vllm-omni is not importable."""
    try:
        from vllm_omni.distributed.omni_connectors.factory import OmniConnectorFactory
    except ImportError:
        return None
    return OmniConnectorFactory


def _env_replace():
    return os.environ.get("OMNICONN_VLLM_OMNI_REPLACE", "").lower() in ("1", "true", "yes")


def register(replace=None):
    """Registers omniconn's connectors; returns the names now served by omniconn, or [] when
    vllm-omni is not importable. `replace` (default: OMNICONN_VLLM_OMNI_REPLACE) also takes
    over vllm-omni's SharedMemoryConnector and MooncakeConnector names."""
    f = factory()
    if f is None:
        return []
    if replace is None:
        replace = _env_replace()
    names = dict(OWN_NAMES)
    if replace:
        names.update(REPLACED_NAMES)
    done = []
    for name, kind in names.items():
        ctor = _CTORS[kind]
        current = f._registry.get(name)
        if current is ctor:
            done.append(name)
            continue
        if current is not None:
            if not replace:
                raise ValueError(f"Connector '{name}' is already registered.")
            # register_connector refuses a name twice: take vllm-omni's entry out first.
            del f._registry[name]
        f.register_connector(name, ctor)
        done.append(name)
    return done
