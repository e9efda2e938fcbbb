"""Prometheus metrics from Python: a connector's text, and a MetricsServer scraped over HTTP."""
import os
import urllib.error
import urllib.request

import numpy as np
import pytest

import omniconn


def spec():
    return {"name": "SharedMemoryConnector", "extra": {"namespace": f"pytest-m-{os.getpid()}"}}


def samples(text):
    """{(name, frozenset(labels)): value} from Prometheus text (the simple lines omniconn writes)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, _, labels = head.partition("{")
        pairs = frozenset(tuple(p.split("=", 1)) for p in labels.rstrip("}").split(",") if p)
        out[(name, pairs)] = float(value)
    return out


def value(text, name, **labels):
    want = {(k, f'"{v}"') for k, v in labels.items()}
    found = [v for (n, ls), v in samples(text).items() if n == name and want <= ls]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_connector_text_counts_puts_gets_and_latency():
    with omniconn.create_connector(spec()) as c:
        for i in range(3):
            ok, _, meta = c.put("0", "1", f"r{i}", {"x": np.zeros(100_000, np.float32)})
            assert ok
            assert c.get("0", "1", f"r{i}", meta)[0] is not None
        text = c.prometheus({"edge": "0->1"})
        assert value(text, "omniconn_payloads_sent_total", edge="0->1") == 3
        assert value(text, "omniconn_payloads_received_total", edge="0->1") == 3
        assert value(text, "omniconn_put_duration_seconds_count", edge="0->1") == 3
        assert value(text, "omniconn_get_duration_seconds_bucket", edge="0->1", le="+Inf") == 3
        with pytest.raises(ValueError, match="label name"):
            c.prometheus({"bad-label": "x"})


def test_server_serves_live_connectors_and_drops_closed_ones():
    a = omniconn.create_connector(spec())
    b = omniconn.create_connector(spec())
    ok, _, _ = a.put("0", "1", "k", {"x": np.ones(10)})
    assert ok
    with omniconn.MetricsServer("127.0.0.1:0", {"a": a, "b": b}) as server:
        host, port = server.address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        url = f"http://{server.address}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = r.read().decode()
        assert value(text, "omniconn_payloads_sent_total", connector="a",
                     type="SharedMemoryConnector") == 1
        assert value(text, "omniconn_payloads_sent_total", connector="b") == 0
        b.close()
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        assert 'connector="b"' not in text and 'connector="a"' in text
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)
    a.close()


def test_server_address_errors():
    with omniconn.create_connector(spec()) as c:
        with pytest.raises(ValueError, match="HOST:PORT"):
            omniconn.MetricsServer("nonsense", {"c": c})
        with omniconn.MetricsServer("127.0.0.1:0", {"c": c}) as s:
            with pytest.raises(RuntimeError, match="cannot listen"):
                omniconn.MetricsServer(s.address, {"c": c})
