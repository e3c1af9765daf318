"""Small helpers shared by the passes."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir


@dataclasses.dataclass
class CountedResult(ir.passes.PassResult):
    """An ``onnx_ir`` :class:`~onnx_ir.passes.PassResult` that also says what the pass did (onnx-ir's PassManager
    takes it like any other): ``details`` holds the counts, e.g. ``{"rewrites": 3}``. Counts travel in the result,
    never in attributes of the pass, so one pass object can run on many models."""

    details: dict = dataclasses.field(default_factory=dict)

    @property
    def rewrites(self) -> int:
        """How many times the pass's rules fired (0 when it did nothing)."""
        return int(self.details.get("rewrites", 0))


def counted(model: ir.Model, rewrites: int, **details) -> CountedResult:
    """The result of a pass whose rules fired ``rewrites`` times (``modified`` when they fired at all)."""
    return CountedResult(model, modified=rewrites > 0, details={"rewrites": rewrites, **details})


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's constant content (initializer, Constant node or folded value), or None."""
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    if tensor is None:
        return None
    try:
        return tensor.numpy()
    except Exception:  # noqa: BLE001 - a lazy tensor that cannot be read stays unknown
        return None


def single_consumer(value: ir.Value) -> ir.Node | None:
    """The only node that reads ``value`` (once), or None when it has several uses or is a graph output."""
    if value.is_graph_output():
        return None
    uses = list(value.uses())
    if len(uses) != 1:
        return None
    return uses[0].node


def unique_name(graph: ir.Graph, base: str) -> str:
    """A value name not used by any initializer or node output of ``graph``."""
    taken = set(graph.initializers)
    name, i = base, 0
    while name in taken or any(v.name == name for v in graph.inputs):
        i += 1
        name = f"{base}_{i}"
    return name


def add_initializer(graph: ir.Graph, base: str, array: np.ndarray) -> ir.Value:
    name = unique_name(graph, base)
    value = ir.Value(name=name, const_value=ir.tensor(array, name=name))
    value.shape = ir.Shape(array.shape)
    value.type = ir.TensorType(ir.DataType.from_numpy(array.dtype))
    graph.register_initializer(value)
    return value


def int_attr(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return default if attr is None else attr.as_int()


def float_attr(node: ir.Node, name: str, default: float) -> float:
    attr = node.attributes.get(name)
    return default if attr is None else attr.as_float()


def static_shape(value: ir.Value) -> tuple[int, ...] | None:
    shape = value.shape
    if shape is None or not shape.is_static():
        return None
    return tuple(int(d) for d in shape)
