"""omniconn.vllm_omni registers omniconn's connectors in vllm-omni's OmniConnectorFactory.
vllm-omni is not installable here: these tests run against a stand-in package
(tests/python/stand_in/vllm_omni) that follows the factory's documented behaviour."""
import importlib
import os
import subprocess
import sys

import pytest

import omniconn

STAND_IN = os.path.join(os.path.dirname(__file__), "stand_in")


@pytest.fixture
def factory(monkeypatch):
    monkeypatch.syspath_prepend(STAND_IN)
    monkeypatch.delenv("OMNICONN_VLLM_OMNI_REPLACE", raising=False)
    for name in [m for m in sys.modules if m.startswith("vllm_omni")]:
        monkeypatch.delitem(sys.modules, name)
    mod = importlib.import_module("vllm_omni.distributed.omni_connectors.factory")
    yield mod
    for name in [m for m in sys.modules if m.startswith("vllm_omni")]:
        del sys.modules[name]


def spec(f, name, **extra):
    return f.ConnectorSpec(name, dict(extra, namespace=f"pytest-reg-{os.getpid()}"))


def test_without_vllm_omni_nothing_is_registered():
    import omniconn.vllm_omni as v
    if importlib.util.find_spec("vllm_omni") is not None:
        pytest.skip("a vllm_omni package is importable here")
    assert v.factory() is None and v.register() == []


def test_own_names_leave_vllm_omnis_alone(factory):
    import omniconn.vllm_omni as v
    f = factory.OmniConnectorFactory
    assert v.register() == ["OmniconnSharedMemoryConnector", "OmniconnMooncakeConnector"]
    assert v.register() == ["OmniconnSharedMemoryConnector", "OmniconnMooncakeConnector"]
    c = f.create_connector(spec(factory, "OmniconnSharedMemoryConnector", stage_id=1))
    assert isinstance(c, omniconn.SharedMemoryConnector) and c.stage_id == 1
    ok, _, meta = c.put("0", "1", "k", {"v": 1})
    assert ok and c.get("0", "1", "k")[0] == {"v": 1}
    c.close()
    own = f.create_connector(spec(factory, "SharedMemoryConnector"))
    assert isinstance(own, factory.VllmOmniOwnConnector)
    with pytest.raises(ValueError, match="Unknown connector: NoSuch"):
        f.create_connector(spec(factory, "NoSuch"))
    with pytest.raises(ValueError, match="already registered"):
        f.register_connector("OmniconnSharedMemoryConnector", lambda extra: None)
    with pytest.raises(ValueError, match="Failed to create connector OmniconnSharedMemory"):
        f.create_connector(spec(factory, "OmniconnSharedMemoryConnector", arena_bytes="lots"))


def test_replace_takes_vllm_omnis_names(factory):
    import omniconn.vllm_omni as v
    f = factory.OmniConnectorFactory
    names = v.register(replace=True)
    assert {"SharedMemoryConnector", "MooncakeConnector", "MooncakeStoreConnector"} <= set(names)
    c = f.create_connector(spec(factory, "SharedMemoryConnector"))
    assert isinstance(c, omniconn.SharedMemoryConnector)
    c.close()
    assert isinstance(f.create_connector(spec(factory, "YuanrongConnector")),
                      factory.VllmOmniOwnConnector)  # others stay vllm-omni's
    assert v.register(replace=True) == names  # again: nothing changes, nothing raises


def test_the_environment_variable_replaces_too(factory, monkeypatch):
    import omniconn.vllm_omni as v
    monkeypatch.setenv("OMNICONN_VLLM_OMNI_REPLACE", "1")
    assert "SharedMemoryConnector" in v.register()
    c = factory.OmniConnectorFactory.create_connector(spec(factory, "SharedMemoryConnector"))
    assert isinstance(c, omniconn.SharedMemoryConnector)
    c.close()


def test_mooncake_through_the_factory_reads_every_payload_by_key(factory, tmp_path):
    fake = os.environ.get("OMNICONN_FAKE_MOONCAKE_LIB", "")
    if not fake:
        pytest.skip("OMNICONN_FAKE_MOONCAKE_LIB is not set (ctest sets it)")
    import omniconn.vllm_omni as v
    v.register(replace=True)
    c = factory.OmniConnectorFactory.create_connector(factory.ConnectorSpec(
        "MooncakeConnector", {"library": fake, "metadata_server": f"fake:{tmp_path}/s"}))
    assert isinstance(c, omniconn.MooncakeConnector)
    assert c.put("0", "1", "small", {"v": 1})[0]  # small: inline_threshold_bytes is 0 here
    assert c.get("0", "1", "small", timeout=5)[0] == {"v": 1}, c.last_error()
    c.close()


def test_one_line_switch_in_a_fresh_interpreter():
    code = ("import omniconn.vllm_omni as v; v.register(replace=True); "
            "from vllm_omni.distributed.omni_connectors.factory import OmniConnectorFactory as F,"
            " ConnectorSpec as S; import omniconn; "
            "c = F.create_connector(S('SharedMemoryConnector', {})); "
            "print(type(c).__module__, type(c).__name__); c.close()")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([STAND_IN, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["omniconn", "SharedMemoryConnector"]
