"""PyTorch vs ONNX, module by module.

Each ONNX node is attributed to the PyTorch module that produced it through the exporter's metadata: dynamo exports
write ``pkg.torch.onnx.name_scopes`` (and ``namespace``) into the node's metadata_props; TorchScript exports name
nodes ``/encoder/layer.3/attention/MatMul``. A module's ONNX outputs are the values its nodes produce that are used
outside it (or are graph outputs). The module's real outputs are captured with forward hooks, in the order PyTorch
finishes them, so the first diverging module is the innermost one that went wrong first.
"""

from __future__ import annotations

import ast
import re
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from onnxdeploy import _io as io
from onnxdeploy.debug._graph import op_name, outer_refs
from onnxdeploy.debug._probe import probe
from onnxdeploy.debug._result import CompareResult, TensorMatch, Unmatched, model_label
from onnxdeploy.errors import UserInputError, require
from onnxdeploy._numerics import Comparison, diff_tensor

if TYPE_CHECKING:
    import onnx

    from onnxdeploy._run import Inputs

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


_CALL_SUFFIX = re.compile(r"^(.*)_(\d+)$")


def resolve_scope(scope: str | None, modules: set[str] | None) -> str | None:
    """The module path of a scope, with TorchScript's per-call suffixes removed (``layer_1`` is ``layer``'s second
    call) when ``modules`` (the target's module paths) says the suffixed name is no module."""
    if scope is None or modules is None or scope in modules:
        return scope
    parts: list[str] = []
    for part in scope.split("."):
        path = ".".join([*parts, part])
        if path not in modules:
            m = _CALL_SUFFIX.match(part)
            if m and ".".join([*parts, m.group(1)]) in modules:
                part = m.group(1)
        parts.append(part)
    return ".".join(parts)


def _split_calls(ops: list[str], calls: int) -> list[tuple[int, int]] | None:
    """(start, end) of each call in a module's node sequence: the sequence repeated ``calls`` times, else None."""
    if calls <= 1:
        return [(0, len(ops))]
    if len(ops) % calls:
        return None
    period = len(ops) // calls
    if any(ops[k] != ops[k % period] for k in range(len(ops))):
        return None
    return [(k * period, (k + 1) * period) for k in range(calls)]


def module_outputs(model: "onnx.ModelProto", modules: set[str] | None = None,
                   calls: Mapping[str, int] | None = None,
                   ) -> tuple[dict[str, list[list[str]] | None], dict[str, tuple["onnx.NodeProto", str]]]:
    """For each module path, per call (in call order), the ONNX values the call hands to the rest of the graph.

    ``calls`` gives how many times PyTorch called each module (default once). A module called N times owns N
    repetitions of the same node sequence (the exporters emit calls in execution order); when its nodes are not
    such a repetition, its entry is None (its calls cannot be told apart)."""
    nodes = list(model.graph.node)
    scopes = []
    for node in nodes:
        scope, how = node_scope(node)
        scopes.append((resolve_scope(scope, modules), how))
    users: dict[str, list[int]] = defaultdict(list)
    for k, node in enumerate(nodes):
        for name in {*node.input, *outer_refs(node)}:
            users[name].append(k)
    graph_outputs = {v.name for v in model.graph.output}
    owned: dict[str, list[int]] = defaultdict(list)
    producers: dict[str, tuple[onnx.NodeProto, str]] = {}
    for k, (node, (scope, how)) in enumerate(zip(nodes, scopes)):
        if scope is None:
            continue
        for name in node.output:
            if name:
                producers[name] = (node, how)
        for path in _ancestors(scope):
            owned[path].append(k)
    result: dict[str, list[list[str]] | None] = {}
    for path, indices in owned.items():
        spans = _split_calls([op_name(nodes[k]) for k in indices], (calls or {}).get(path, 1))
        if spans is None:
            result[path] = None
            continue
        per_call = []
        for lo, hi in spans:
            inside = set(indices[lo:hi])
            per_call.append([name for k in indices[lo:hi] for name in nodes[k].output if name and (
                name in graph_outputs or any(u not in inside for u in users[name]))])
        result[path] = per_call
    return result, producers


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
    """A copy: a later in-place op on the module's output (``y += x``) cannot change what was captured."""
    import torch

    t = t.detach().to("cpu", copy=True)
    if t.dtype in (torch.bfloat16,) or str(t.dtype).startswith("torch.float8"):
        t = t.float()
    return t.numpy()


def _feeds_and_args(target, onnx_model: "onnx.ModelProto", torch, inputs: "Inputs"):
    from onnxdeploy._run import input_specs, prepare_inputs

    specs = input_specs(onnx_model)
    if inputs.given or (target.example_inputs is None and target.example_kwargs is None):
        feeds = prepare_inputs(onnx_model, inputs=inputs)
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
    inputs: "Inputs | Mapping[str, np.ndarray] | None" = None,
    providers: Sequence[str] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> CompareResult:
    """Compare each PyTorch module's output to the ONNX tensor the exporter attributes to it (fed ``inputs``, else
    the target's example inputs)."""
    from onnxdeploy._run import Inputs

    torch = require("torch", extra="torch", purpose="comparing a PyTorch model")
    from onnxdeploy._torch_target import load_torch_target

    start = time.perf_counter()
    target = load_torch_target(target_spec)
    model = io.as_proto(onnx_model)
    named = dict(target.module.named_modules())
    scoped, _ = module_outputs(model, set(named))
    mapped = [p for p in scoped if p in named]
    if not any(mapped):
        raise UserInputError(
            f"cannot map the tensors of {model_label(onnx_model, 'the ONNX model')} to the modules of {target_spec}: "
            "its nodes carry no module names (dynamo 'pkg.torch.onnx.name_scopes' metadata or TorchScript "
            "'/module/path/Op' node names) that match the module's submodules",
            hint="compare the export of this very module, made by torch.onnx.export without stripping metadata")

    feeds, args, kwargs = _feeds_and_args(target, model, torch, Inputs.coerce(inputs))
    captured: dict[str, list[list[np.ndarray]]] = defaultdict(list)  # per module path, per call: its outputs
    order: list[tuple[str, int]] = []  # (path, call) in the order PyTorch finished them

    def hook_for(path: str):
        def hook(_module, _args, output):
            order.append((path, len(captured[path])))
            captured[path].append([_to_numpy(t) for t in _flat_tensors(output, torch)])
        return hook

    handles = [named[p].register_forward_hook(hook_for(p)) for p in mapped if p]
    try:
        with torch.no_grad():
            returned = [_to_numpy(t) for t in _flat_tensors(target.module(*args, **kwargs), torch)]
    finally:
        for h in handles:
            h.remove()
    order.append(("", 0))
    captured[""] = [returned]

    verdict = _torch_verdict(returned, onnx_model, feeds, providers, atol=atol, rtol=rtol,
                             label=f"{target_spec} vs {model_label(onnx_model, 'ONNX model')}")
    per_call, producers = module_outputs(model, set(named), {p: len(c) for p, c in captured.items()})
    wanted = list(dict.fromkeys(v for p, k in order if per_call.get(p) for v in per_call[p][k]))
    onnx_values = probe(onnx_model, tensors=wanted, inputs=feeds, providers=providers).tensors if wanted else {}
    matches: list[TensorMatch] = []
    unmatched: list[Unmatched] = []
    for path, k in order:
        label = (path or ROOT) + (f"#{k}" if len(captured[path]) > 1 else "")
        groups = per_call.get(path)
        if groups is None:
            unmatched.append(Unmatched(label, f"called {len(captured[path])} times; its ONNX nodes do not split "
                                       "into as many repetitions of one node sequence"))
            continue
        candidates = [v for v in groups[k] if v in onnx_values]
        torch_outs = captured[path][k]
        used: set[str] = set()
        for i, ref in enumerate(torch_outs):
            same = [v for v in candidates if v not in used and np.shape(onnx_values[v]) == ref.shape]
            if not same:
                continue
            value = same[-1] if len(torch_outs) == 1 else same[0]
            used.add(value)
            node, how = producers[value]
            row = label + (f"[{i}]" if len(torch_outs) > 1 else "")
            matches.append(TensorMatch(row, value, node.name, op_name(node), how,
                                       diff_tensor(row, ref, onnx_values[value], atol=atol, rtol=rtol)))
        if not used:
            unmatched.append(Unmatched(label, "no ONNX value of its nodes has the shape of its output"))
    unmatched.extend(Unmatched(p, "no ONNX node is attributed to it") for p in named if p and p not in per_call)
    return CompareResult(target_spec, model_label(onnx_model, "ONNX model"), matches, atol, rtol, "torch",
                         unmatched, time.perf_counter() - start, feeds, verdict)


def _torch_verdict(returned: list[np.ndarray], onnx_model, feeds, providers, *, atol: float, rtol: float,
                   label: str) -> Comparison:
    """The module's returned tensors vs the ONNX model's outputs, the model run unmodified: by position when both
    have as many, else each ONNX output with the next returned tensor of its shape."""
    from onnxdeploy._run import create_session, run_session

    outputs = run_session(create_session(onnx_model, providers=providers), feeds)
    reference: dict[str, np.ndarray] = {}
    if len(outputs) == len(returned):
        reference = dict(zip(outputs, returned))
    else:
        pool = list(returned)
        for name, value in outputs.items():
            twin = next((t for t in pool if t.shape == value.shape), None)
            if twin is not None:
                pool.remove(twin)
                reference[name] = twin
    if not reference:
        raise UserInputError(f"{label}: the module's {len(returned)} returned tensors do not line up with the ONNX "
                             f"model's outputs ({', '.join(outputs)})",
                             hint="compare the export of this very module, with the same example inputs")
    from onnxdeploy._run import Inputs
    from onnxdeploy._verify import verify

    verdict = verify(lambda _feeds: reference, onnx_model, Inputs(arrays=dict(feeds)), atol=atol, rtol=rtol,
                     specs_from=onnx_model, candidate_runner=lambda _feeds: outputs, interface="ignore", label=label)
    return verdict.comparisons[0]
