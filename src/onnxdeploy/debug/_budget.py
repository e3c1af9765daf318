"""The memory budget of :func:`probe`: estimated tensor sizes (shape inference with the real input shapes) and
greedy batches of bounded size."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from onnxdeploy import _io as io
from onnxdeploy.errors import UserInputError


def parse_size(value: int | str | None) -> int | None:
    """``2GB``, ``512MB``, ``100k`` or a byte count."""
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip().upper().replace("IB", "B")
    units = {"TB": 1 << 40, "GB": 1 << 30, "MB": 1 << 20, "KB": 1 << 10, "T": 1 << 40, "G": 1 << 30, "M": 1 << 20,
             "K": 1 << 10, "B": 1}
    for unit, factor in units.items():
        if text.endswith(unit):
            number = text[: -len(unit)].strip()
            break
    else:
        number, factor = text, 1
    try:
        size = int(float(number) * factor)
    except ValueError:
        raise UserInputError(f"--max-memory: cannot read {value!r} as a size", hint="write e.g. 2GB or 512MB") from None
    if size <= 0:
        raise UserInputError(f"--max-memory must be positive, got {value!r}")
    return size


def estimate_sizes(model: io.ModelLike, feeds: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Bytes of each value whose shape shape inference resolves, with the inputs' real shapes substituted."""
    import onnx
    from onnx import helper

    proto = onnx.ModelProto()
    source = io.as_proto(model)
    proto.graph.input.extend(source.graph.input)  # a copy without the weights' bytes: shapes are all we need
    for field_name in ("ir_version", "producer_name"):
        setattr(proto, field_name, getattr(source, field_name))
    proto.opset_import.extend(source.opset_import)
    proto.functions.extend(source.functions)
    graph = proto.graph
    graph.node.extend(source.graph.node)
    graph.output.extend(source.graph.output)
    declared = {v.name for v in source.graph.input}
    for init in source.graph.initializer:
        if init.name in declared:
            continue
        if math.prod(init.dims) <= 4096 and init.data_location != onnx.TensorProto.EXTERNAL:
            graph.initializer.append(init)  # small ones (shapes, axes) feed data propagation
        else:
            graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    for value in proto.graph.input:
        if value.name in feeds and value.type.HasField("tensor_type"):
            shape = value.type.tensor_type.shape
            shape.ClearField("dim")
            for d in np.shape(feeds[value.name]):
                shape.dim.add().dim_value = int(d)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:  # shape inference is an estimate here; unknown sizes are handled by the caller
        return {}
    sizes: dict[str, int] = {}
    for value in [*inferred.graph.value_info, *inferred.graph.output]:
        t = value.type.tensor_type
        if not value.type.HasField("tensor_type") or not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if any(d is None for d in dims):
            continue
        try:
            itemsize = helper.tensor_dtype_to_np_dtype(t.elem_type).itemsize
        except (KeyError, ValueError, TypeError):
            itemsize = 4
        sizes[value.name] = math.prod(dims) * max(itemsize, 4 if t.elem_type in (16, 17, 18, 19, 20) else 1)
    return sizes


def batches(model: io.ModelLike, feeds, names: list[str], budget: int) -> list[list[str]]:
    """Greedy batches in topological order whose estimated bytes stay within ``budget`` (an unknown size counts as
    the largest known one; a tensor larger than the budget gets a batch of its own)."""
    sizes = estimate_sizes(model, feeds)
    known = [sizes[n] for n in names if n in sizes]
    fallback = max(known) if known else budget
    batches: list[list[str]] = [[]]
    used = 0
    for name in names:
        size = sizes.get(name, fallback)
        if batches[-1] and used + size > budget:
            batches.append([])
            used = 0
        batches[-1].append(name)
        used += size
    return batches
