"""docs/format.md is complete: its reference reader (section 12), run as written in the doc,
reads what the C++ writer produces."""
import os
import pathlib

import msgpack
import numpy as np
import pytest
import xxhash

import omniconn

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "format.md"


def load_reader():
    text = DOC.read_text()
    start = text.index("```python\n", text.index("## 12. Reference reader")) + len("```python\n")
    code = text[start:text.index("```", start)]
    namespace = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace["read_payload"]


read_payload = load_reader()
NUMPY = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i64": np.int64,
         "i32": np.int32, "i16": np.int16, "i8": np.int8, "u8": np.uint8, "bool": np.bool_}


def test_reference_reader_reads_the_cpp_writer():
    arrays = [(np.arange(24) % 2 if dt is np.bool_ else np.arange(24)).astype(dt).reshape(2, 3, 4)
              for dt in NUMPY.values()]
    data = {"arrays": arrays, "scalar": np.array(1.5, dtype=np.float32), "note": "hi", "n": -7}
    blob = omniconn.encode_payload(data)
    tensors, fields = read_payload(blob, xxhash.xxh3_64_intdigest, verify_data=True)
    assert len(tensors) == len(arrays) + 1
    for (name, dtype, dims, mem), want in zip(tensors, arrays + [data["scalar"]]):
        got = np.frombuffer(mem, dtype=NUMPY[dtype]).reshape(dims)
        np.testing.assert_array_equal(got, want)
    obj = msgpack.unpackb(fields, raw=False, strict_map_key=True)["obj"]
    assert obj["note"] == "hi" and obj["n"] == -7
    assert obj["arrays"][0] == {"__omniconn_tensor__": 0}


def test_reference_reader_rejects_every_truncation_and_a_flipped_header_byte():
    blob = omniconn.encode_payload({"x": np.arange(10, dtype=np.int64)})
    for n in range(len(blob)):
        with pytest.raises(ValueError):
            read_payload(blob[:n], xxhash.xxh3_64_intdigest)
    flipped = bytearray(blob)
    flipped[70] ^= 1
    with pytest.raises(ValueError):
        read_payload(bytes(flipped), xxhash.xxh3_64_intdigest)
