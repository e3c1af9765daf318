"""PyTorch vs ONNX, module by module.

Each ONNX node is attributed to the PyTorch module that produced it through the exporter's metadata: dynamo exports
write ``pkg.torch.onnx.name_scopes`` (and ``namespace``) into the node's metadata_props; TorchScript exports name
nodes ``/encoder/layer.3/attention/MatMul``. A module's ONNX outputs are the values its nodes produce that are used
outside it (or are graph outputs). The module's real outputs are captured with forward hooks, in the order PyTorch
finishes them, so the first diverging module is the innermost one that went wrong first.
"""

from __future__ import annotations

import ast
import os
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from onnxdeploy import io
from onnxdeploy.debug._compare import CompareResult, TensorMatch
from onnxdeploy.debug._graph import op_name
from onnxdeploy.debug._probe import probe
from onnxdeploy.errors import UserInputError, require
from onnxdeploy.numerics import diff_tensor

if TYPE_CHECKING:
    import onnx

ROOT = "<model>"


def node_scope(node: "onnx.NodeProto") -> tuple[str | None, str]:
    """The module path that produced ``node`` ("" for the root module) and which metadata said so."""
    meta = {entry.key: entry.value for entry in node.metadata_props}
    scopes = meta.get("pkg.torch.onnx.name_scopes")
    if scopes:
        try:
            parts = ast.literal_eval(scopes)
            if isinstance(parts, list) and parts:
                modules = [p for p in parts[1:-1] if isinstance(p, str)]
                return (modules[-1] if modules else ""), "name_scope"
        except (ValueError, SyntaxError):
            pass
    namespace = meta.get("namespace")
    if namespace:
        parts = [p.split(":")[0].strip() for p in namespace.split("/")]
        modules = [p for p in parts[1:-1] if p]
        return (modules[-1] if modules else ""), "name_scope"
    if node.name.startswith("/"):
        return ".".join(node.name.split("/")[1:-1]), "node_name"
    return None, ""


def _ancestors(path: str) -> list[str]:
    if not path:
        return [""]
    parts = path.split(".")
    return [""] + [".".join(parts[: i + 1]) for i in range(len(parts))]


def _under(scope: str | None, path: str) -> bool:
    if scope is None:
        return False
    return path == "" or scope == path or scope.startswith(path + ".")


def module_outputs(model: "onnx.ModelProto") -> tuple[dict[str, list[str]], dict[str, tuple["onnx.NodeProto", str]]]:
    """For each module path, the ONNX values it hands to the rest of the graph (topological order)."""
    from onnxdeploy.debug._reduce import _outer_refs

    nodes = list(model.graph.node)
    scopes = [node_scope(n) for n in nodes]
    users: dict[str, list[str | None]] = defaultdict(list)
    for node, (scope, _) in zip(nodes, scopes):
        for name in {*node.input, *_outer_refs(node)}:
            users[name].append(scope)
    graph_outputs = {v.name for v in model.graph.output}
    result: dict[str, list[str]] = defaultdict(list)
    producers: dict[str, tuple[onnx.NodeProto, str]] = {}
    for node, (scope, how) in zip(nodes, scopes):
        if scope is None:
            continue
        for name in node.output:
            if not name:
                continue
            producers[name] = (node, how)
            for path in _ancestors(scope):
                if name in graph_outputs or any(not _under(s, path) for s in users[name]):
                    result[path].append(name)
    return dict(result), producers


def _flat_tensors(obj: Any, torch) -> list:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _flat_tensors(item, torch)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _flat_tensors(item, torch)]
    if hasattr(obj, "to_tuple"):  # transformers ModelOutput
        return _flat_tensors(obj.to_tuple(), torch)
    return []


def _to_numpy(t) -> np.ndarray:
    import torch

    t = t.detach().cpu()
    if t.dtype in (torch.bfloat16,) or str(t.dtype).startswith("torch.float8"):
        t = t.float()
    return t.numpy()


def _feeds_and_args(target, onnx_model, torch, *, inputs, input_files, npz, dims, shapes, seed):
    from onnxdeploy.run import input_specs, prepare_inputs

    specs = input_specs(onnx_model)
    given = inputs or input_files or npz
    if given or (target.example_inputs is None and target.example_kwargs is None):
        feeds = prepare_inputs(onnx_model, inputs=inputs, input_files=input_files, npz=npz, dims=dims,
                               shapes=shapes, seed=seed)
        return feeds, tuple(torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in specs), {}
    args, kwargs = target.example_inputs or (), target.example_kwargs or {}
    tensors = _flat_tensors(list(args), torch)
    by_name = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    names = [s.name for s in specs]
    if set(by_name) <= set(names):
        positional = [n for n in names if n not in by_name]
        mapped = dict(zip(positional, tensors))
        mapped.update(by_name)
    else:
        mapped = dict(zip(names, tensors + list(by_name.values())))
    if len(mapped) != len(names) or len(tensors) + len(by_name) != len(names):
        raise UserInputError(
            f"{target.spec}: its example inputs ({len(tensors) + len(by_name)} tensors) do not line up with the "
            f"ONNX model's {len(names)} inputs ({', '.join(names)})",
            hint="pass the inputs explicitly with --input/--inputs")
    feeds = prepare_inputs(onnx_model, inputs={k: _to_numpy(v) for k, v in mapped.items()})
    return feeds, tuple(args), dict(kwargs)


def compare_torch(
    target_spec: str,
    onnx_model: io.ModelLike,
    *,
    inputs: Mapping[str, np.ndarray] | None = None,
    input_files: Mapping[str, str | os.PathLike] | None = None,
    npz: str | os.PathLike | None = None,
    dims: Mapping[str, int] | None = None,
    shapes: Mapping[str, Sequence] | None = None,
    seed: int = 0,
    providers: Sequence[str] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> CompareResult:
    """Compare each PyTorch module's output to the ONNX tensor the exporter attributes to it."""
    torch = require("torch", extra="torch", purpose="comparing a PyTorch model")
    from onnxdeploy.torch_target import load_torch_target

    start = time.perf_counter()
    target = load_torch_target(target_spec)
    model = io.as_proto(onnx_model)
    outputs, producers = module_outputs(model)
    named = dict(target.module.named_modules())
    mapped = {p: v for p, v in outputs.items() if p in named}
    if not any(p for p in mapped):
        raise UserInputError(
            f"cannot map the tensors of {_label(onnx_model)} to the modules of {target_spec}: its nodes carry no "
            "module names (dynamo 'pkg.torch.onnx.name_scopes' metadata or TorchScript '/module/path/Op' node names) "
            "that match the module's submodules",
            hint="compare the export of this very module, made by torch.onnx.export without stripping metadata")

    feeds, args, kwargs = _feeds_and_args(target, onnx_model, torch, inputs=inputs, input_files=input_files,
                                          npz=npz, dims=dims, shapes=shapes, seed=seed)
    captured: dict[str, list[np.ndarray]] = {}
    order: list[str] = []

    def hook_for(path: str):
        def hook(_module, _args, output):
            if path not in captured:
                captured[path] = [_to_numpy(t) for t in _flat_tensors(output, torch)]
                order.append(path)
        return hook

    handles = [named[p].register_forward_hook(hook_for(p)) for p in mapped]
    try:
        with torch.no_grad():
            target.module(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()

    wanted = list(dict.fromkeys(v for p in order for v in mapped[p]))
    onnx_values = probe(onnx_model, tensors=wanted, inputs=feeds, providers=providers).tensors
    matches: list[TensorMatch] = []
    unmatched: list[str] = []
    for path in order:
        candidates = [v for v in mapped[path] if v in onnx_values]
        torch_outs = captured[path]
        used: set[str] = set()
        for i, ref in enumerate(torch_outs):
            same = [v for v in candidates if v not in used and np.shape(onnx_values[v]) == ref.shape]
            if not same:
                continue
            value = same[-1] if len(torch_outs) == 1 else same[0]
            used.add(value)
            node, how = producers[value]
            label = (path or ROOT) + (f"[{i}]" if len(torch_outs) > 1 else "")
            matches.append(TensorMatch(label, value, node.name, op_name(node), how,
                                       diff_tensor(label, ref, onnx_values[value], atol=atol, rtol=rtol)))
        if not used:
            unmatched.append(path or ROOT)
    unmatched.extend(p for p in named if p and p not in mapped)
    return CompareResult(target_spec, _label(onnx_model), matches, atol, rtol, "torch", unmatched,
                         time.perf_counter() - start, feeds)


def _label(model) -> str:
    return str(model) if isinstance(model, (str, os.PathLike)) else "ONNX model"
