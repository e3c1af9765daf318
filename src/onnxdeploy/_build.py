"""Build ONNX graphs in a few readable lines, on onnx-ir.

    from onnxdeploy._build import GraphBuilder
    g = GraphBuilder("resize_conv_add", opset=13)
    x = g.input("input", "float32", [1, 3, 256, 256])
    y = g.op("Resize", x, g.input("roi", "float32", []), g.input("scales", "float32", [4]), name="resize")
    y = g.op("Conv", y, g.input("conv_weight", "float32", [32, 3, 3, 3]), g.input("conv_bias", "float32", [32]))
    g.output(g.op("Add", y, g.input("add_input", "float32", [1]), name="add"), "output")
    model = g.build()          # checked; every intermediate shape and dtype inferred

Inputs declare dtype and shape (a dim may be a name: symbolic). Ops are called by name with attributes as keyword
arguments; numpy arrays and Python numbers given as inputs become initializers. Each ``op`` call infers its
outputs' dtype and shape at once, so a wrong input fails on the line that wrote it, with the node named.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from onnxdeploy.errors import InvalidModelError, UserInputError

if TYPE_CHECKING:
    import onnx
    import onnx_ir as ir

_SMALL_CONST_BYTES = 4096  # constants up to this size travel with per-node inference (Reshape shapes, scales)


def to_dtype(dtype: Any) -> "ir.DataType":
    """An ``ir.DataType`` from a name ("float32", "int64", "fp16", "FLOAT"), a numpy dtype or an ir.DataType."""
    import onnx_ir as ir

    if isinstance(dtype, ir.DataType):
        return dtype
    if isinstance(dtype, str):
        key = dtype.strip().lower()
        aliases = {"fp32": "float32", "float": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16",
                   "double": "float64", "fp64": "float64", "int": "int64", "long": "int64", "bool": "bool"}
        key = aliases.get(key, key)
        try:
            return ir.DataType.from_numpy(np.dtype(key))
        except TypeError:
            pass
        upper = dtype.strip().upper()
        if upper in ir.DataType.__members__:
            return ir.DataType[upper]
        names = sorted({dtype_name(d) for d in ir.DataType if d.name != "UNDEFINED"})
        import difflib

        close = difflib.get_close_matches(key, names, n=3)
        raise UserInputError(
            f"unknown dtype {dtype!r}", hint=f"did you mean {', '.join(close)}?" if close else "e.g. float32, int64"
        )
    if isinstance(dtype, int):
        return ir.DataType(dtype)
    try:
        return ir.DataType.from_numpy(np.dtype(dtype))
    except TypeError as err:
        raise UserInputError(f"unknown dtype {dtype!r}", hint="e.g. float32, int64, float16") from err


def to_shape(shape: Sequence[int | str | None] | None) -> "ir.Shape | None":
    """An ``ir.Shape``: ints are fixed dims, strings symbolic dims, None unknown dims."""
    import onnx_ir as ir

    if shape is None:
        return None
    dims = []
    for d in shape:
        if isinstance(d, (int, np.integer)) and not isinstance(d, bool):
            if d < 0:
                raise UserInputError(f"shape {list(shape)}: dims must be non-negative, got {d}")
            dims.append(int(d))
        elif d is None or isinstance(d, str):
            dims.append(ir.SymbolicDim(d))
        else:
            raise UserInputError(f"shape {list(shape)}: a dim must be an int, a name or None, got {d!r}")
    return ir.Shape(dims)


def format_shape(shape: "ir.Shape | None") -> str:
    if shape is None:
        return "?"
    if len(shape) == 0:
        return "scalar"
    return "x".join(str(d) if isinstance(d, int) else "?" if not d.value or str(d.value).startswith("unk__")
                    else str(d.value) for d in shape)


def dtype_name(dtype: "ir.DataType | None") -> str:
    """``float32``, ``int64``, ``bfloat16``... (numpy's names where numpy has the type)."""
    if dtype is None:
        return "?"
    try:
        return np.dtype(dtype.numpy()).name
    except (TypeError, AttributeError, ValueError):
        return dtype.name.lower()


def format_type(value: "ir.Value") -> str:
    dtype = dtype_name(value.dtype)
    return f"{dtype}[{format_shape(value.shape)}]"


def onnx_error_text(err: Exception) -> str:
    """The first useful line of an onnx checker / shape-inference error."""
    text = str(err).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    text = lines[0] if lines else type(err).__name__
    return re.sub(r"^\[[A-Za-z]+Error\]\s*", "", text)


class GraphBuilder:
    """Collects inputs, nodes, initializers and outputs; :meth:`build` returns a checked ``ir.Model``."""

    def __init__(self, name: str = "graph", *, opset: int, opsets: dict[str, int] | None = None,
                 ir_version: int | None = None, producer: str = "onnxdeploy") -> None:
        import onnx_ir as ir

        if not isinstance(opset, int) or opset < 1:
            raise UserInputError(f"opset must be a positive integer, got {opset!r}")
        self.opset = opset
        self.opsets = {"": opset, **(opsets or {})}
        self.ir_version = ir_version
        self.producer = producer
        self.graph = ir.Graph([], [], nodes=[], name=name, opset_imports=dict(self.opsets))
        self._names: set[str] = set()
        self._counter = 0

    # ------------------------------------------------------------ declarations

    def _claim(self, name: str, what: str) -> str:
        if not name:
            raise UserInputError(f"{what} needs a non-empty name")
        if name in self._names:
            raise UserInputError(f"{what} {name!r}: the name is already used in this graph", hint="choose another")
        self._names.add(name)
        return name

    def _fresh(self, base: str) -> str:
        while True:
            self._counter += 1
            name = f"{base}_{self._counter}"
            if name not in self._names:
                self._names.add(name)
                return name

    def input(self, name: str, dtype: Any, shape: Sequence[int | str | None] | None) -> "ir.Value":
        """A graph input; ``shape`` dims are ints (fixed), strings (symbolic) or None (unknown)."""
        import onnx_ir as ir

        value = ir.Value(name=self._claim(name, "input"), type=ir.TensorType(to_dtype(dtype)), shape=to_shape(shape))
        self.graph.inputs.append(value)
        return value

    def initializer(self, name: str, array: Any) -> "ir.Value":
        """A named initializer (weights) from a numpy array or anything ``np.asarray`` accepts."""
        import onnx_ir as ir

        arr = np.asarray(array)
        if arr.dtype == np.float64 and not isinstance(array, np.ndarray):
            arr = arr.astype(np.float32)  # Python floats mean float32 in a graph, as in torch
        tensor = ir.tensor(arr, name=self._claim(name, "initializer"))
        value = ir.Value(name=name, type=ir.TensorType(tensor.dtype), shape=ir.Shape(arr.shape), const_value=tensor)
        self.graph.register_initializer(value)
        return value

    def const(self, array: Any, name: str | None = None) -> "ir.Value":
        """A constant (stored as an initializer); the name is generated when not given."""
        if name is None:
            name = self._fresh("const")
            self._names.discard(name)
        return self.initializer(name, array)

    # ------------------------------------------------------------ nodes

    def op(self, op_type: str, *inputs: "ir.Value | Any | None", name: str | None = None, domain: str = "",
           outputs: int | Sequence[str] = 1, **attributes: Any) -> "ir.Value | tuple[ir.Value, ...]":
        """Add a node; return its output (or a tuple when ``outputs`` asks for several).

        ``None`` marks an omitted optional input; numpy arrays and numbers become constants. ``outputs`` is a count
        or a list of output names. The node's outputs get their dtype and shape inferred right away.
        """
        import onnx
        import onnx_ir as ir

        node_name = self._claim(name, "node") if name else self._fresh(op_type.lower())
        where = f"node {node_name!r} ({op_type})"
        if domain not in self.opsets:
            raise UserInputError(f"{where}: domain {domain!r} has no opset", hint="pass opsets={domain!r: VERSION}")
        if domain in ("", "ai.onnx"):
            try:
                schema = onnx.defs.get_schema(op_type, self.opsets[domain], domain)
            except onnx.defs.SchemaError as err:
                import difflib

                known = sorted({s.name for s in onnx.defs.get_all_schemas() if s.domain == ""})
                close = difflib.get_close_matches(op_type, known, n=3)
                hint = f"did you mean {', '.join(close)}?" if close else None
                raise UserInputError(f"{where}: no operator {op_type!r} in opset {self.opsets[domain]}",
                                     hint=hint) from err
            unknown = [a for a in attributes if a not in schema.attributes]
            if unknown:
                raise UserInputError(f"{where}: unknown attribute(s) {', '.join(unknown)}",
                                     hint=f"{op_type} takes: {', '.join(sorted(schema.attributes)) or 'none'}")
        values: list[ir.Value | None] = []
        for i, item in enumerate(inputs):
            if item is None or isinstance(item, ir.Value):
                values.append(item)
            else:
                values.append(self.const(item, name=f"{node_name}_input{i}"))
        if isinstance(outputs, int):
            base = [node_name + ("_output" if outputs == 1 else f"_output{i}") for i in range(outputs)]
            out_names = [n if n not in self._names and not self._names.add(n) else self._fresh(n) for n in base]
        else:
            out_names = [self._claim(n, f"{where} output") for n in outputs]
        out_values = [ir.Value(name=n) for n in out_names]
        attrs = {k: _attr_value(k, v, where) for k, v in attributes.items()}
        try:
            node = ir.Node(domain, op_type, values, attributes=ir.convenience.convert_attributes(attrs),
                           outputs=out_values, name=node_name)
        except (TypeError, ValueError) as err:
            raise UserInputError(f"{where}: {err}") from err
        infer_node(node, self.opsets, self.ir_version, where)
        self.graph.append(node)
        return node.outputs[0] if len(node.outputs) == 1 else tuple(node.outputs)

    def output(self, value: "ir.Value", name: str | None = None) -> "ir.Value":
        """Mark ``value`` as a graph output, renaming it to ``name`` when given."""
        if name and name != value.name:
            if name in self._names:
                raise UserInputError(f"output {name!r}: the name is already used in this graph")
            self._names.discard(value.name)
            self._names.add(name)
            value.name = name
        if value in self.graph.outputs:
            raise UserInputError(f"output {value.name!r} is already a graph output")
        self.graph.outputs.append(value)
        return value

    # ------------------------------------------------------------ result

    def build(self, *, check: bool = True) -> "ir.Model":
        """The model; with ``check`` (default) run the ONNX checker and strict shape inference on the whole graph."""
        import onnx_ir as ir

        if not self.graph.outputs:
            raise UserInputError(f"graph {self.graph.name!r} has no outputs", hint="mark one with g.output(value, name)")
        model = ir.Model(self.graph, ir_version=self.ir_version or _ir_version_for(self.opset),
                         producer_name=self.producer)
        if check:
            check_model(model)
        return model

    def to_proto(self, *, check: bool = True) -> "onnx.ModelProto":
        import onnx_ir as ir

        return ir.serde.serialize_model(self.build(check=check))


def _attr_value(key: str, value: Any, where: str) -> Any:
    import onnx_ir as ir

    if isinstance(value, np.ndarray):
        return ir.tensor(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, ir.DataType):
        return int(value)
    return value


def _ir_version_for(opset: int) -> int:
    import onnx

    try:
        from onnx.helper import find_min_ir_version_for

        return max(find_min_ir_version_for([onnx.helper.make_opsetid("", opset)]), 8)
    except Exception:  # an opset newer than this onnx knows
        return onnx.IR_VERSION


def _node_model(node: "ir.Node", opsets: dict[str, int], ir_version: int | None) -> "onnx.ModelProto":
    import onnx
    from onnx import helper

    import onnx_ir as ir

    graph_inputs, inits = [], []
    seen = set()
    for value in node.inputs:
        if value is None or value.name in seen:
            continue
        seen.add(value.name)
        graph_inputs.append(ir.serde.serialize_value(value))
        tensor = value.const_value
        if tensor is not None and tensor.nbytes <= _SMALL_CONST_BYTES:
            inits.append(ir.serde.serialize_tensor(tensor))
            inits[-1].name = value.name
    node_proto = ir.serde.serialize_node(node)
    outputs = [helper.make_value_info(o.name, onnx.TypeProto()) for o in node.outputs]
    graph = helper.make_graph([node_proto], "node", graph_inputs, outputs, inits)
    opset_ids = [helper.make_opsetid(d, v) for d, v in opsets.items()]
    model = helper.make_model(graph, opset_imports=opset_ids)
    model.ir_version = ir_version or _ir_version_for(opsets.get("", 13))
    return model


def infer_node(node: "ir.Node", opsets: dict[str, int], ir_version: int | None, where: str) -> None:
    """Set the node's output dtypes and shapes by strict ONNX inference on a one-node model of its input types."""
    import onnx
    import onnx_ir as ir

    if node.domain not in ("", "ai.onnx"):
        return
    for i, value in enumerate(node.inputs):
        if value is not None and value.dtype is None:
            raise InvalidModelError(f"{where}: input {i} ({value.name!r}) has an unknown dtype")
    proto = _node_model(node, opsets, ir_version)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as err:
        raise InvalidModelError(f"{where}: {onnx_error_text(err)}", hint=_describe_inputs(node)) from err
    types = {vi.name: vi for vi in [*inferred.graph.value_info, *inferred.graph.output]}
    for out in node.outputs:
        vi = types.get(out.name)
        if vi is None or not vi.type.HasField("tensor_type") or not vi.type.tensor_type.elem_type:
            continue
        inferred_value = ir.serde.deserialize_value_info_proto(vi, None)
        out.type = inferred_value.type
        out.shape = inferred_value.shape


def _describe_inputs(node: "ir.Node") -> str:
    parts = [f"{v.name}: {format_type(v)}" if v is not None else "(omitted)" for v in node.inputs]
    return "inputs are " + (", ".join(parts) or "(none)")


def check_model(model: "ir.Model", *, strict: bool = True) -> None:
    """ONNX checker + strict shape inference (big initializers left out of the check); merge inferred types.

    Raises :class:`InvalidModelError` naming the node and the problem.
    """
    run_checker(model)
    infer_shapes(model, strict=strict)


STANDARD_DOMAINS = ("", "ai.onnx")


# ---------------------------------------------------------------- checks shared with the builder


def call_onnx(func: Callable, model: "ir.Model"):
    """Call an onnx C API on the model with big initializers left out (onnx-ir's helper; the model is unchanged)."""
    from onnx_ir.passes.common import _c_api_utils

    return _c_api_utils.call_onnx_api(func, model)


def run_checker(model: "ir.Model") -> None:
    """The ONNX checker; raises :class:`InvalidModelError` with its first line."""
    import onnx

    try:
        from onnxdeploy._io import without_external_data

        # external tensors resolved against the model's folder by io, never against the current directory
        call_onnx(lambda proto: onnx.checker.check_model(without_external_data(proto)), model)
    except onnx.checker.ValidationError as err:
        raise InvalidModelError(f"ONNX checker: {onnx_error_text(err)}") from err


def infer_shapes(model: "ir.Model", *, strict: bool = True) -> list[str]:
    """Re-infer every dtype and shape of the main graph from its inputs; return notes on corrected outputs.

    Stale intermediate shapes and the declared shapes of graph outputs are dropped first, so inference starts from
    the inputs alone; a declared output shape that contradicts the computed one is replaced (and noted). Outputs of
    custom-domain nodes keep their declared types, which ONNX cannot infer.
    """
    import onnx
    import onnx_ir as ir

    graph = model.graph
    keep = {v.name for n in graph for v in n.outputs if n.domain not in STANDARD_DOMAINS}

    def infer(proto):
        vis = [vi for vi in proto.graph.value_info if vi.name in keep]
        del proto.graph.value_info[:]
        proto.graph.value_info.extend(vis)
        for out in proto.graph.output:
            if out.name not in keep and out.type.HasField("tensor_type"):
                out.type.tensor_type.ClearField("shape")
        return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=strict, data_prop=True)

    try:
        inferred = call_onnx(infer, model)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as err:
        raise InvalidModelError(f"shape inference: {onnx_error_text(err)}") from err
    types = {vi.name: vi for vi in [*inferred.graph.value_info, *inferred.graph.output]}
    notes = []
    outputs = set(graph.outputs)
    for node in graph:
        for value in node.outputs:
            vi = types.get(value.name)
            if vi is None or not vi.type.HasField("tensor_type") or not vi.type.tensor_type.elem_type:
                continue
            new = ir.serde.deserialize_value_info_proto(vi, None)
            if value in outputs and value.shape is not None and new.shape is not None and not _compatible(
                    value.shape, new.shape):
                notes.append(f"output {value.name!r} was declared {format_shape(value.shape)} but computes "
                             f"{format_shape(new.shape)}; corrected")
            if value in outputs and value.dtype is not None and new.dtype != value.dtype:
                notes.append(f"output {value.name!r} dtype {dtype_name(value.dtype)} -> {dtype_name(new.dtype)}")
            value.type = new.type
            if new.shape is not None:
                value.shape = _keep_names(value.shape, new.shape)
    return notes


def _compatible(a: "ir.Shape", b: "ir.Shape") -> bool:
    if len(a) != len(b):
        return False
    return all(not isinstance(x, int) or not isinstance(y, int) or x == y for x, y in zip(a, b))


def _keep_names(old: "ir.Shape | None", new: "ir.Shape") -> "ir.Shape":
    """Prefer the declared symbolic names (batch) over ONNX's generated ones (unk__3) where they agree."""
    import onnx_ir as ir

    if old is None or len(old) != len(new):
        return new
    dims = []
    for o, n in zip(old, new):
        if not isinstance(n, int) and (n.value is None or str(n.value).startswith("unk__")) and not isinstance(o, int):
            dims.append(o)
        else:
            dims.append(n)
    return ir.Shape(dims)


