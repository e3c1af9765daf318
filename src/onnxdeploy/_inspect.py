"""Describe a model without running it: metadata, inputs/outputs, op histogram, parameters, FLOPs, nodes.

``inspect`` never reads weights. For a file, embedded tensor data is skipped at the protobuf wire level (the
bytes are never touched, so a 100 MB model is described in the time it takes to parse its structure) and external
data is only checked for safety and size, never read. Shapes come from ``onnx.shape_inference`` run on that
structure-only proto. Only ``onnx`` and ``numpy`` are imported (no onnx_ir, onnxruntime or torch).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Iterator, Mapping

from onnxdeploy import _io as _io
from onnxdeploy._io import STRIP_BYTES, TENSOR_DATA_FIELDS, load_structure  # noqa: F401 - load_structure re-exported
from onnxdeploy.errors import UserInputError

if TYPE_CHECKING:
    import onnx

STANDARD_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training"}
# embedded tensors whose data is larger than this are parsed without their data (dims and dtype only)


@dataclass
class TensorInfo:
    """A tensor's name, element type and shape (None: rank unknown; a dim is an int, a symbolic name or None)."""

    name: str
    dtype: str | None
    shape: list | None

    def shape_str(self) -> str:
        if self.shape is None:
            return "?"
        return "x".join("?" if d is None else str(d) for d in self.shape) if self.shape else "scalar"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class NodeInfo:
    name: str
    op_type: str
    domain: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    graph: str = ""  # "" for the main graph, else the subgraph's path: "loop/body", "if_1/then_branch/if_2/..."

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "op_type": self.op_type,
            "domain": self.domain,
            "graph": self.graph,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }


@dataclass
class OpCost:
    """Multiply-accumulates of one Conv/ConvTranspose/Gemm/MatMul node (FLOPs = 2 x MACs + bias additions)."""

    node: str
    op_type: str
    macs: int | None
    flops: int | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ModelSummary:
    """What :func:`inspect` found; ``to_dict()`` is what ``onnxdeploy inspect --json`` prints."""

    path: str | None
    ir_version: int
    opset_imports: dict[str, int]
    producer_name: str
    producer_version: str
    graph_name: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    op_histogram: dict[str, int]
    node_count: int
    initializer_count: int
    parameter_count: int
    parameter_bytes: int
    external_bytes: int
    external_files: list[str]
    initializers_as_inputs: list[str]
    custom_domains: list[str]
    functions: list[str]
    macs: int
    flops: int
    costs: list[OpCost]
    shape_inference_error: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    nodes: list[NodeInfo] | None = None
    dims: dict[str, int] = field(default_factory=dict)  # the sizes given to symbolic dims for shapes and FLOPs
    symbolic_dims: list[str] = field(default_factory=list)  # input dims still symbolic after ``dims``

    @property
    def costs_unknown(self) -> list[OpCost]:
        """Conv/Gemm/MatMul nodes whose shapes are not fully known (not counted in ``macs``/``flops``)."""
        return [c for c in self.costs if c.macs is None]

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("inputs", "outputs", "costs", "nodes")}
        d["inputs"] = [t.to_dict() for t in self.inputs]
        d["outputs"] = [t.to_dict() for t in self.outputs]
        d["costs"] = [c.to_dict() for c in self.costs]
        d["nodes"] = None if self.nodes is None else [n.to_dict() for n in self.nodes]
        return d


# ---------------------------------------------------------------- structure-only loading


def _copy_field(dst, fd, value) -> None:
    if hasattr(value, "extend"):  # repeated field
        getattr(dst, fd.name).extend(value)
    elif hasattr(value, "ListFields"):  # message
        getattr(dst, fd.name).CopyFrom(value)
    else:
        setattr(dst, fd.name, value)


def _structure_copy(proto: "onnx.ModelProto") -> tuple["onnx.ModelProto", dict[str, int]]:
    """A copy of an in-memory proto whose large main-graph initializers carry no data (for shape inference)."""
    import onnx

    light = onnx.ModelProto()
    for fd, value in proto.ListFields():
        if fd.name != "graph":
            _copy_field(light, fd, value)
    stripped: dict[str, int] = {}
    for fd, value in proto.graph.ListFields():
        if fd.name != "initializer":
            _copy_field(light.graph, fd, value)
    for tensor in proto.graph.initializer:
        nbytes = tensor.ByteSize()
        if nbytes <= STRIP_BYTES:
            light.graph.initializer.append(tensor)
            continue
        t = light.graph.initializer.add()
        for fd, value in tensor.ListFields():
            if fd.number not in TENSOR_DATA_FIELDS:
                _copy_field(t, fd, value)
        stripped[tensor.name] = nbytes
    return light, stripped


# ---------------------------------------------------------------- helpers


def _dtype_name(elem_type: int) -> str | None:
    import onnx

    if not elem_type:
        return None
    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"type{elem_type}"


def _type_info(name: str, type_proto) -> TensorInfo:
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type" or kind == "sparse_tensor_type":
        tt = getattr(type_proto, kind)
        shape = None
        if tt.HasField("shape"):
            shape = []
            for d in tt.shape.dim:
                if d.HasField("dim_value"):
                    shape.append(int(d.dim_value))
                elif d.HasField("dim_param") and d.dim_param and not d.dim_param.startswith("unk__"):
                    shape.append(d.dim_param)  # (shape inference names the dims it cannot know unk__N)
                else:
                    shape.append(None)
        return TensorInfo(name, _dtype_name(tt.elem_type), shape)
    if kind is None:
        return TensorInfo(name, None, None)
    return TensorInfo(name, kind.replace("_type", ""), None)


_BITS = {"int4": 4, "uint4": 4, "float4e2m1": 4, "int2": 2, "uint2": 2}


def _tensor_nbytes(tensor, count: int, stripped: dict[str, int]) -> int:
    import onnx
    from onnx import helper

    if tensor.data_type == onnx.TensorProto.STRING:
        if tensor.name in stripped:
            return stripped[tensor.name]
        return sum(len(s) for s in tensor.string_data)
    bits = _BITS.get(_dtype_name(tensor.data_type) or "")
    if bits:
        return (count * bits + 7) // 8
    try:
        return count * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, ValueError, TypeError):
        return 0


def _graphs(graph) -> Iterator:
    """The graph and every subgraph (If/Loop/Scan bodies), depth first."""
    return (g for _, _, g in _graphs_with_paths(graph))


def _graphs_with_paths(graph, path: str = "", parent: str | None = None) -> Iterator:
    """(path, parent path, graph) for the graph and every subgraph, depth first; a subgraph's path names its node and
    attribute (``loop/body``); the main graph's path is ""."""
    yield path, parent, graph
    for i, node in enumerate(graph.node):
        owner = f"{path}/{node.name or f'{node.op_type}#{i}'}" if path else (node.name or f"{node.op_type}#{i}")
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs_with_paths(attr.g, f"{owner}/{attr.name}", path)
            for k, g in enumerate(attr.graphs):
                yield from _graphs_with_paths(g, f"{owner}/{attr.name}[{k}]", path)


def _node_infos(inferred_graph, info: dict[str, TensorInfo]) -> list[NodeInfo]:
    """Every node of the main graph and its subgraphs, with its tensors' inferred dtype and shape (a subgraph sees
    its own value_info over its enclosing graphs')."""
    scopes: dict[str, dict[str, TensorInfo]] = {"": info}
    nodes: list[NodeInfo] = []
    for path, parent, graph in _graphs_with_paths(inferred_graph):
        if parent is not None:
            scope = dict(scopes[parent])
            for vi in (*graph.value_info, *graph.input, *graph.output):
                scope[vi.name] = _type_info(vi.name, vi.type)
            scopes[path] = scope
        scope = scopes[path]
        for n in graph.node:
            nodes.append(NodeInfo(n.name, n.op_type, n.domain,
                                  [scope.get(x) or TensorInfo(x, None, None) for x in n.input],
                                  [scope.get(x) or TensorInfo(x, None, None) for x in n.output], path))
    return nodes


def _prod(dims) -> int | None:
    total = 1
    for d in dims:
        if not isinstance(d, int) or d < 0:
            return None
        total *= d
    return total


def _node_cost(node, info: dict[str, TensorInfo]) -> OpCost | None:
    op = node.op_type
    if node.domain not in ("", "ai.onnx") or op not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
        return None
    name = node.name or (node.output[0] if node.output else op)

    def shape(i: int, outputs: bool = False):
        names = node.output if outputs else node.input
        if i >= len(names) or not names[i] or names[i] not in info:
            return None
        return info[names[i]].shape

    macs = flops = None
    out = shape(0, outputs=True)
    has_bias = len(node.input) > 2 and bool(node.input[2])
    if op in ("Conv", "ConvTranspose"):
        # W's dim 1 is C_in/group (Conv) or C_out/group (ConvTranspose): groups are accounted for
        w, x = shape(1), shape(0)
        if op == "Conv" and out is not None and w is not None and len(w) >= 2:
            n_out, per_out = _prod(out), _prod(w[1:])
            if n_out is not None and per_out is not None:
                macs = n_out * per_out
                flops = 2 * macs + (n_out if has_bias else 0)
        elif op == "ConvTranspose" and x is not None and w is not None and len(w) >= 2:
            n_in, per_in = _prod(x), _prod(w[1:])
            if n_in is not None and per_in is not None:
                macs = n_in * per_in  # every input element scatters C_out/group * kernel products
                n_out = _prod(out) if out is not None else None
                flops = 2 * macs + (n_out if has_bias and n_out is not None else 0)
    elif op == "Gemm":
        a = shape(0)
        trans_a = next((a_.i for a_ in node.attribute if a_.name == "transA"), 0)
        if out is not None and a is not None and len(a) == 2 and len(out) == 2:
            k = a[0] if trans_a else a[1]
            n_out = _prod(out)
            if n_out is not None and isinstance(k, int):
                macs = n_out * k
                flops = 2 * macs + (n_out if has_bias else 0)
    else:  # MatMul
        a = shape(0)
        if out is not None and a is not None and len(a) >= 1:
            k = a[-1]
            n_out = _prod(out)
            if n_out is not None and isinstance(k, int):
                macs = n_out * k
                flops = 2 * macs
    return OpCost(name, op, macs, flops)


def _infer(light: "onnx.ModelProto") -> tuple["onnx.ModelProto", str | None]:
    from onnx import shape_inference

    error = None
    for data_prop in (True, False):
        try:
            return shape_inference.infer_shapes(light, data_prop=data_prop), None
        except Exception as err:  # InferenceError, or a C++ error surfaced as RuntimeError
            error = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return light, error


# ---------------------------------------------------------------- inspect


def _symbolic_dims(graph) -> list[str]:
    names: list[str] = []
    for vi in graph.input:
        for d in vi.type.tensor_type.shape.dim if vi.type.HasField("tensor_type") else ():
            if d.HasField("dim_param") and d.dim_param not in names:
                names.append(d.dim_param)
    return names


def _fix_input_dims(graph, dims: Mapping[str, int]) -> None:
    """Give the graph inputs' symbolic dims the values in ``dims`` (in place); an unknown name is an error."""
    from onnxdeploy._suggest import did_you_mean

    known = _symbolic_dims(graph)
    for name, value in dims.items():
        if name not in known:
            raise UserInputError(f"--dim {name}: the model's inputs have no symbolic dim named {name!r}",
                                 hint=did_you_mean(name, known, what="symbolic dims"))
        if int(value) < 0:
            raise UserInputError(f"--dim {name}={value}: a dim is >= 0")
    for vi in graph.input:
        for d in vi.type.tensor_type.shape.dim if vi.type.HasField("tensor_type") else ():
            if d.HasField("dim_param") and d.dim_param in dims:
                d.dim_value = int(dims[d.dim_param])


def inspect(model: _io.ModelLike, *, nodes: bool = False, dims: Mapping[str, int] | None = None) -> ModelSummary:
    """Describe ``model`` (a path, ModelProto or ``ir.Model``) without reading or running its weights.

    With ``nodes=True`` the summary lists every node (subgraphs' too, with their path in ``NodeInfo.graph``) with
    its inputs' and outputs' inferred dtype and shape. ``dims`` gives symbolic input dims values for shape inference, so FLOPs of a dynamic model are counted
    at those sizes (the inputs are still listed as declared). Shape inference failures are reported in
    ``shape_inference_error``, not raised.
    """
    import onnx

    path = None
    if isinstance(model, (str, os.PathLike)):
        path = str(model)
        proto, stripped = load_structure(model)
    else:
        proto = model if isinstance(model, onnx.ModelProto) else _io.as_proto(model)
        proto, stripped = _structure_copy(proto)

    graph = proto.graph
    init_names = {t.name for t in graph.initializer}
    declared = [_type_info(vi.name, vi.type) for vi in graph.input if vi.name not in init_names]
    dims = dict(dims or {})
    if dims:
        _fix_input_dims(graph, dims)
    inferred, shape_error = _infer(proto)
    info: dict[str, TensorInfo] = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        info[vi.name] = _type_info(vi.name, vi.type)
    for t in inferred.graph.initializer:
        info.setdefault(t.name, TensorInfo(t.name, _dtype_name(t.data_type), [int(d) for d in t.dims]))

    # parameters: initializers of the main graph and of subgraphs, counted from dims (data never read)
    param_count = param_bytes = external_bytes = init_count = 0
    external_files: list[str] = []
    for g in _graphs(graph):
        for t in g.initializer:
            init_count += 1
            count = 1
            for d in t.dims:
                count *= d
            nbytes = _tensor_nbytes(t, count, stripped)
            param_count += count
            param_bytes += nbytes
            if t.data_location == onnx.TensorProto.EXTERNAL:
                external_bytes += nbytes
                loc = next((e.value for e in t.external_data if e.key == "location"), "")
                if loc and loc not in external_files:
                    external_files.append(loc)
        for st in g.sparse_initializer:
            init_count += 1
            nnz = 1
            for d in st.values.dims:
                nnz *= d
            param_count += nnz
            param_bytes += _tensor_nbytes(st.values, nnz, {})

    histogram: dict[str, int] = {}
    used_domains: set[str] = set()
    node_count = 0
    for g in _graphs(graph):
        for node in g.node:
            node_count += 1
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
            histogram[key] = histogram.get(key, 0) + 1
            used_domains.add(node.domain)
    opsets = {o.domain: int(o.version) for o in proto.opset_import}
    custom = sorted((set(opsets) | used_domains) - STANDARD_DOMAINS)

    costs = [c for c in (_node_cost(n, info) for n in graph.node) if c is not None]
    node_list = _node_infos(inferred.graph, info) if nodes else None

    return ModelSummary(
        path=path,
        ir_version=int(proto.ir_version),
        opset_imports=opsets,
        producer_name=proto.producer_name,
        producer_version=proto.producer_version,
        graph_name=graph.name,
        inputs=declared,
        outputs=[info.get(vi.name) or _type_info(vi.name, vi.type) for vi in graph.output],
        op_histogram=dict(sorted(histogram.items(), key=lambda kv: (-kv[1], kv[0]))),
        node_count=node_count,
        initializer_count=init_count,
        parameter_count=param_count,
        parameter_bytes=param_bytes,
        external_bytes=external_bytes,
        external_files=external_files,
        initializers_as_inputs=[vi.name for vi in graph.input if vi.name in init_names],
        custom_domains=custom,
        functions=[f"{f.domain}::{f.name}" if f.domain else f.name for f in proto.functions],
        macs=sum(c.macs for c in costs if c.macs is not None),
        flops=sum(c.flops for c in costs if c.flops is not None),
        costs=costs,
        shape_inference_error=shape_error,
        metadata={p.key: p.value for p in proto.metadata_props},
        nodes=node_list,
        dims=dims,
        symbolic_dims=_symbolic_dims(graph),
    )


__all__ = ["ModelSummary", "NodeInfo", "OpCost", "TensorInfo", "inspect", "load_structure"]
