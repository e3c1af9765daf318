"""`io.load_mapped` and `io.save`: weights memory-mapped on load and written from their buffers on save."""

from __future__ import annotations

import mmap
import os
import stat

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxdeploy import _io as io
from onnxdeploy.errors import ModelFileError, UserInputError


def _weights_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 64)).astype(np.float32)  # 16 KB: mapped
    inits = {
        "w": w,
        "b": rng.standard_normal(64).astype(np.float32),  # 256 B: stays inline
        "h": rng.standard_normal((64, 32)).astype(np.float16),  # 4 KB fp16: mapped
        "idx": np.arange(300, dtype=np.int64) % 64,  # 2.4 KB int64: mapped
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Cast", ["a"], ["a16"], to=TensorProto.FLOAT16),
        helper.make_node("MatMul", ["a16", "h"], ["y"]),
        helper.make_node("Gather", ["a", "idx"], ["g"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["n", 32]),
         helper.make_tensor_value_info("g", TensorProto.FLOAT, ["n", 300])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _mapping_of(array: np.ndarray):
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return base


@pytest.fixture
def weights_path(tmp_path):
    path = tmp_path / "weights.onnx"
    onnx.save(_weights_model(), path)
    return path


def test_load_mapped_equals_load_and_maps_large_weights(weights_path):
    mapped, plain = io.load_mapped(weights_path), io.load(weights_path)
    for name, value in plain.graph.initializers.items():
        got = mapped.graph.initializers[name].const_value
        assert got.dtype == value.const_value.dtype
        np.testing.assert_array_equal(got.numpy(), value.const_value.numpy())
    for name in ("w", "h", "idx"):
        array = mapped.graph.initializers[name].const_value.numpy()
        assert isinstance(_mapping_of(array), mmap.mmap) and not array.flags.writeable
    assert _mapping_of(mapped.graph.initializers["b"].const_value.numpy()) is None  # small: parsed as usual
    assert (ir.serde.serialize_model(mapped).SerializeToString()
            == ir.serde.serialize_model(plain).SerializeToString())


def test_load_mapped_external_data_model_is_checked_and_lazy(tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save(_weights_model(), path, save_as_external_data=True, location="ext.data", size_threshold=1024)
    model = io.load_mapped(path)
    assert isinstance(model.graph.initializers["w"].const_value, ir.ExternalTensor)
    np.testing.assert_array_equal(model.graph.initializers["w"].const_value.numpy(),
                                  io.load(path).graph.initializers["w"].const_value.numpy())
    (tmp_path / "ext.data").write_bytes(b"short")
    with pytest.raises(ModelFileError, match="file is too short"):
        io.load_mapped(path)


def test_load_mapped_rejects_what_load_rejects(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="the file is empty"):
        io.load_mapped(empty)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\xff\xff\xff not a protobuf")
    with pytest.raises(ModelFileError, match="not a valid ONNX model"):
        io.load_mapped(garbage)


def test_save_round_trips_with_ordinary_permissions(weights_path, tmp_path):
    out = tmp_path / "out.onnx"
    io.save(io.load_mapped(weights_path), out)
    saved, original = onnx.load(out), onnx.load(weights_path)
    onnx.checker.check_model(saved, full_check=True)
    assert [n.op_type for n in saved.graph.node] == [n.op_type for n in original.graph.node]
    want = {t.name: numpy_helper.to_array(t) for t in original.graph.initializer}
    got = {t.name: numpy_helper.to_array(t) for t in saved.graph.initializer}
    assert want.keys() == got.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype
        np.testing.assert_array_equal(got[name], want[name])
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert not any(p.name.endswith(".data") for p in tmp_path.iterdir())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind


def test_save_in_memory_and_external_models(tmp_path):
    model = ir.serde.deserialize_model(_weights_model())  # TensorProto-backed tensors
    new = np.ones((64, 64), np.float32)
    model.graph.initializers["w"].const_value = ir.Tensor(new, name="w")  # an in-memory tensor
    out = tmp_path / "mem.onnx"
    io.save(model, out)
    np.testing.assert_array_equal(
        numpy_helper.to_array(next(t for t in onnx.load(out).graph.initializer if t.name == "w")), new)

    ext = tmp_path / "ext.onnx"
    onnx.save(_weights_model(), ext, save_as_external_data=True, location="ext.data", size_threshold=1024)
    out2 = tmp_path / "ext-out.onnx"
    io.save(io.load_mapped(ext), out2)  # external data in, external data out (as io.save chooses)
    assert [p.exists() for p in io.data_files(tmp_path / "ext-out.onnx")] == [True]
    with pytest.raises(UserInputError, match="output folder does not exist"):
        io.save(model, tmp_path / "missing" / "x.onnx")
