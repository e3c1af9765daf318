"""Export a PyTorch model to ONNX with named dynamic dims, verified parity and custom operator mappings.

``export(model, example_inputs, path, ...)`` drives ``torch.onnx.export`` (the dynamo exporter, the TorchScript one, or
``auto``: dynamo first, TorchScript when dynamo cannot convert the model), then checks what ``torch.onnx.export``
does not: that every dim you named dynamic really is symbolic in the file, and that onnxruntime computes what PyTorch
computes on the example inputs and on a second shape that changes every dynamic dim.

File policy: the model is written (atomically, with ``io.save``) only after verification passes. When outputs disagree
:class:`~onnxdeploy.errors.OutputsDisagree` is raised and nothing is written, unless ``keep_on_mismatch=True``: then
the file is written and the error says so.
"""

from __future__ import annotations

import difflib
import inspect as _inspect
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from onnxdeploy.errors import OutputsDisagree, UnsupportedError, UserInputError, require
from onnxdeploy._export_ops import (  # noqa: F401 - re-exported API
    OpMapping,
    collect,
    custom_op,
    domains,
    dynamo_table,
    install_torchscript,
    register_op,
    registered_ops,
    uninstall_torchscript,
)

EXPORTERS = ("auto", "dynamo", "torchscript")
TORCHSCRIPT_DEFAULT_OPSET = 17


@dataclass
class MissingOp:
    """One operator an exporter could not convert, and where it occurs in the PyTorch model."""

    op: str
    module_path: str
    location: str
    count: int = 1

    def to_dict(self) -> dict:
        return {"op": self.op, "module_path": self.module_path, "location": self.location, "count": self.count}

    def describe(self) -> str:
        where = f" in {self.module_path}" if self.module_path else ""
        at = f" ({self.location})" if self.location else ""
        times = f" x{self.count}" if self.count > 1 else ""
        return f"{self.op}{times}{where}{at}"


class UnsupportedOperators(UnsupportedError):
    """The exporter cannot convert some operators; ``ops`` lists every one with its module path."""

    def __init__(self, exporter: str, ops: list[MissingOp], detail: str = "") -> None:
        names = ", ".join(m.describe() for m in ops)
        first = ops[0].op if ops else "namespace::op"
        super().__init__(
            f"the {exporter} exporter cannot convert {len(ops)} operator{'s' if len(ops) != 1 else ''}: {names}",
            hint=(f"map it to ONNX: onnxdeploy._export.register_op('{first}', 'OnnxOp') or @custom_op('{first}'), "
                  "or rewrite that module with supported ops" + (f"; {detail}" if detail else "")),
        )
        self.exporter = exporter
        self.ops = ops


@dataclass
class ExportReport:
    """What ``export`` did: exporter used (and why), names, dynamic dims, parity per shape, seconds per phase."""

    path: str | None
    exporter: str
    exporter_reason: str
    opset: int
    input_names: list[str]
    output_names: list[str]
    dynamic_dims: dict[str, dict[int, str]]
    parity: list = field(default_factory=list)  # numerics.Comparison, one per shape tested
    seconds: dict[str, float] = field(default_factory=dict)
    custom_ops: list[str] = field(default_factory=list)
    output_dims: dict[str, list] = field(default_factory=dict)  # each output's dims as written: 4, "batch", ...
    kept: bool = True
    verified: bool = False
    task: str | None = None  # "text-generation-with-past" for a decoder LM with its KV cache
    cache: dict = field(default_factory=dict)  # the cache's layout (layers, kv heads, head dims, vocab) for an LM

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.parity)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "exporter": self.exporter,
            "exporter_reason": self.exporter_reason,
            "opset": self.opset,
            "input_names": self.input_names,
            "output_names": self.output_names,
            "dynamic_dims": {k: {str(i): n for i, n in v.items()} for k, v in self.dynamic_dims.items()},
            "output_dims": self.output_dims,
            "verified": self.verified,
            "passed": self.passed,
            "kept": self.kept,
            "parity": [c.to_dict() for c in self.parity],
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "custom_ops": self.custom_ops,
            "task": self.task,
            "cache": self.cache,
        }


# --------------------------------------------------------------------------------------------- names and dims
def _closest(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.3)
    return f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""


def _default_input_names(model, n_args: int, kwargs: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    try:
        params = list(_inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for i in range(n_args):
        names.append(positional[i].name if i < len(positional) else f"input_{i}")
    names.extend(kwargs)
    return names


def _normalize_dynamic(dynamic: Mapping | None) -> dict[str, dict[int, str]]:
    result: dict[str, dict[int, str]] = {}
    for key, axes in (dynamic or {}).items():
        if isinstance(axes, (list, tuple)):
            axes = {int(i): f"{key}_dim{int(i)}" for i in axes}
        if not isinstance(axes, Mapping):
            raise UserInputError(f"dynamic[{key!r}] must map dim index -> name, got {type(axes).__name__}",
                                 hint="e.g. dynamic={'input': {0: 'batch'}}")
        dims = {}
        for index, name in axes.items():
            if not isinstance(index, int) and not str(index).lstrip("-").isdigit():
                raise UserInputError(f"dynamic[{key!r}]: dim index {index!r} is not an integer")
            name = str(name)
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise UserInputError(f"dynamic dim name {name!r} must be an identifier", hint="e.g. batch, seq_len")
            dims[int(index)] = name
        result[str(key)] = dims
    return result


def _check_dynamic(dynamic: dict[str, dict[int, str]], input_names, output_names, ranks: dict[str, int]) -> None:
    real = list(input_names) + list(output_names)
    for key, dims in dynamic.items():
        if key not in real:
            raise UserInputError(
                f"dynamic dims name {key!r}, which is neither an input nor an output "
                f"(inputs: {', '.join(input_names)}; outputs: {', '.join(output_names)})",
                hint=f"{_closest(key, real)}key the dict by a real input or output name",
            )
        rank = ranks.get(key)
        for index in list(dims):
            if rank is not None and not -rank <= index < rank:
                raise UserInputError(f"dynamic dim {index} of {key!r} is out of range: {key} has rank {rank}")
            if rank is not None and index < 0:
                dims[index % rank] = dims.pop(index)


# --------------------------------------------------------------------------------------------- torch helpers
def _as_tuple(example_inputs) -> tuple[tuple, dict]:
    torch = require("torch", extra="torch", purpose="exporting a PyTorch model")
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    if isinstance(example_inputs, list):
        example_inputs = tuple(example_inputs)
    if not isinstance(example_inputs, tuple):
        raise UserInputError(f"example_inputs must be a tensor, a tuple of tensors or a dict, got "
                             f"{type(example_inputs).__name__}")
    if example_inputs and isinstance(example_inputs[-1], Mapping):
        return tuple(example_inputs[:-1]), dict(example_inputs[-1])
    return example_inputs, {}


def _flat_tensors(value) -> list:
    import torch
    from torch.utils import _pytree

    if hasattr(value, "to_tuple") and not isinstance(value, torch.Tensor):  # HF ModelOutput
        value = value.to_tuple()
    leaves, _ = _pytree.tree_flatten(value)
    return [t for t in leaves if isinstance(t, torch.Tensor)]


def _run_torch(model, args, kwargs) -> list:
    import torch

    with torch.inference_mode():
        return [t.detach().cpu().numpy() for t in _flat_tensors(model(*args, **kwargs))]


def _trace_example(args, kwargs, names, dynamic):
    """The example inputs with every dynamic dim of size 1 set to 2, or None when no dim has size 1.

    torch.export specializes a size-1 dim (0/1 specialization), and even with ``backed_size_oblivious`` the exported
    graph can keep a 1 somewhere (GPT-2's LayerNorm output came out 1xSxH). Tracing at 2 keeps the dim symbolic; the
    original example is still the first shape verified.
    """
    sizes: dict[str, int] = {}
    for name, axes in dynamic.items():
        if name not in names:
            continue
        i = names.index(name)
        tensor = args[i] if i < len(args) else kwargs[name]
        for index, dim in axes.items():
            if int(tensor.shape[index]) == 1:
                sizes[dim] = 2
    if not sizes:
        return None
    for name, axes in dynamic.items():  # dims that are not 1 keep their example size
        if name not in names:
            continue
        i = names.index(name)
        tensor = args[i] if i < len(args) else kwargs[name]
        for index, dim in axes.items():
            sizes.setdefault(dim, int(tensor.shape[index]))
    return _inputs_at(args, kwargs, names, dynamic, sizes, seed=2)


def _other_value(value: int) -> int:
    """The size a dynamic dim takes at the second verification shape: different from the example's, and smaller.

    < 4: +1; < 256: halved; from 256 on: about a quarter (so the second shape costs little next to the example's),
    kept a multiple of the example's power-of-two factor up to 64 (CNN strides, patch sizes) and
    at least 64: 640 -> 128, 448 -> 64, 512 -> 128, 300 -> 72, 128 -> 64, 5 -> 2, 1 -> 2.
    """
    if value < 4:
        return value + 1
    if value >= 256:
        step = min(value & -value, 64)
        quarter = (value // 4) // step * step
        if quarter >= 64:
            return quarter
    return value // 2


def _inputs_at(args, kwargs, names, dynamic, sizes: dict[str, int], seed: int = 1):
    """Copies of the example inputs with every dynamic dim set to ``sizes[dim name]`` (random data, same ranges)."""
    import torch

    g = torch.Generator().manual_seed(seed)

    def remake(name, t):
        dims = dynamic.get(name)
        if not dims:
            return t
        shape = list(t.shape)
        for index, dim in dims.items():
            shape[index] = sizes[dim]
        if t.dtype.is_floating_point:
            return torch.randn(shape, generator=g, dtype=t.dtype)
        if t.dtype == torch.bool:
            return torch.randint(0, 2, shape, generator=g).bool()
        lo, hi = (int(t.min()), int(t.max())) if t.numel() else (0, 1)
        if lo == hi:
            return torch.full(shape, lo, dtype=t.dtype)
        return torch.randint(lo, hi + 1, shape, generator=g, dtype=t.dtype)

    new_args = tuple(remake(names[i], t) for i, t in enumerate(args))
    new_kwargs = {k: remake(k, v) for k, v in kwargs.items()}
    return new_args, new_kwargs


_DTYPE_WORDS = re.compile(r"indices|Long|Int\b|scalar type|dtype|integer|must be cast|got Float|FloatTensor|"
                          r"expected .*(int|long)", re.IGNORECASE)


def _dims_of(value) -> list:
    return [] if value.shape is None else [d if isinstance(d, int) else (d.value or "?") for d in value.shape]


def _shape_text(t) -> str:
    return "x".join(str(int(d)) for d in t.shape)


def _example_error(err: BaseException, names: Sequence[str], tensors: Sequence, model=None) -> UserInputError:
    """One line for a model that cannot run on its example inputs; float inputs where integers are needed get a hint
    naming the typed shape (``--shape tokens=4x32:int64``)."""
    floats = [(n, t) for n, t in zip(names, tensors) if t.dtype.is_floating_point]
    given = ", ".join(f"{n}={_shape_text(t)}:{str(t.dtype).replace('torch.', '')}" for n, t in zip(names, tensors))
    if floats and _DTYPE_WORDS.search(str(err)):
        floats = _integer_candidates(model, names, tensors, floats) or floats
        which = ", ".join(n for n, _ in floats)
        shapes = " ".join(f"--shape {n}={_shape_text(t)}:int64" for n, t in floats)
        return UserInputError(
            f"PyTorch cannot run the model on float example input{'s' if len(floats) > 1 else ''} {which}; it "
            f"seems to need integers ({_first_line(err)})",
            hint=f"give integer example inputs: {shapes} on the command line, or torch.randint(...) tensors in "
                 "example_inputs",
        )
    return UserInputError(
        f"PyTorch cannot run the model on the example inputs ({given}): {_first_line(err)}",
        hint="give one example input per forward() argument, with the shapes and dtypes the model expects "
             "(--shape NAME=1x3x224x224[:dtype] on the command line)",
    )


def _integer_candidates(model, names, tensors, floats) -> list:
    """The float inputs that, made integer one at a time, make the dtype error go away (error path only)."""
    import torch

    if model is None or len(floats) < 2 or len(floats) > 8:
        return []
    found = []
    for name, tensor in floats:
        trial = [torch.zeros(t.shape, dtype=torch.int64) if n == name else t for n, t in zip(names, tensors)]
        try:
            with torch.inference_mode():
                model(*trial)
        except Exception as err:  # noqa: BLE001 - only whether the dtype complaint is gone matters
            if _DTYPE_WORDS.search(str(err)) and "indices" in str(err):
                continue
        found.append((name, tensor))
    return found if len(found) < len(floats) else []


_TORCH_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16", "float64": "float64",
                 "int64": "int64", "int32": "int32", "int16": "int16", "int8": "int8", "uint8": "uint8",
                 "bool": "bool"}
INT_HIGH = 100  # integer example inputs are drawn from [0, min(INT_HIGH, smallest nn.Embedding size))


def integer_input_bound(module=None) -> int:
    """Exclusive upper bound for random integer example inputs: small, and inside every nn.Embedding's table."""
    torch = require("torch", extra="torch", purpose="making example inputs")
    high = INT_HIGH
    if module is not None:
        for sub in module.modules():
            if isinstance(sub, (torch.nn.Embedding, torch.nn.EmbeddingBag)):
                high = min(high, int(sub.num_embeddings))
    return max(high, 1)


def random_inputs(shapes: Mapping[str, Any], *, module=None, seed: int = 0) -> dict[str, Any]:
    """Random example tensors from ``{name: dims}`` or ``{name: (dims, dtype)}`` (dtype a numpy/torch name, e.g.
    ``"int64"``; None means float32), in the given order.

    Floats are standard normal; integers are small and non-negative (below :func:`integer_input_bound`, which stays
    inside the ``module``'s embedding tables); bools are 0/1. What ``onnxdeploy export --shape NAME=4x32:int64`` uses.
    """
    torch = require("torch", extra="torch", purpose="making example inputs")
    gen = torch.Generator().manual_seed(seed)
    high = None
    result: dict[str, Any] = {}
    for name, spec in shapes.items():
        dims, dtype = spec if isinstance(spec, tuple) and len(spec) == 2 and not isinstance(spec[1], int) else (spec, None)
        if any(not isinstance(d, int) for d in dims):
            raise UserInputError(f"shape of {name!r} must be numbers, got {'x'.join(map(str, dims))}",
                                 hint=f"e.g. {name}=1x3x224x224")
        key = str(dtype or "float32").replace("torch.", "")
        if key not in _TORCH_DTYPES:
            raise UserInputError(f"cannot make example input {name!r} of dtype {dtype}",
                                 hint=f"use one of {', '.join(_TORCH_DTYPES)}")
        tdtype = getattr(torch, _TORCH_DTYPES[key])
        shape = [int(d) for d in dims]
        if tdtype.is_floating_point:
            result[name] = torch.randn(shape, generator=gen).to(tdtype)
        elif tdtype == torch.bool:
            result[name] = torch.randint(0, 2, shape, generator=gen).bool()
        else:
            high = high if high is not None else integer_input_bound(module)
            result[name] = torch.randint(0, high, shape, generator=gen, dtype=tdtype)
    return result


def needs_integer_inputs(module) -> bool:
    """True when the module's first layer with weights is an nn.Embedding (token ids, not floats)."""
    torch = require("torch", extra="torch", purpose="inspecting a PyTorch model")
    for sub in module.modules():
        if any(True for _ in sub.parameters(recurse=False)):
            return isinstance(sub, (torch.nn.Embedding, torch.nn.EmbeddingBag))
    return False


_TOKEN_NAMES = re.compile(r"ids?$|token|idx|index|indices", re.IGNORECASE)


def example_hint(module) -> str:
    """What to pass for a module that came without example inputs: ``--shape NAME=...`` per forward() argument."""
    try:
        params = [p for p in _inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params] or ["input"]
    args = f"one per forward() argument ({', '.join(names)})"
    if needs_integer_inputs(module):
        tokens = next((n for n in names if _TOKEN_NAMES.search(n)), names[0])
        return (f"--shape {tokens}=1x16:int64, {args}: its first layer is an nn.Embedding, whose token ids are "
                "integers")
    return f"--shape {names[0]}=1x3x224x224[:dtype], {args}"


# --------------------------------------------------------------------------------------------- dynamo
def _dynamo_dynamic_shapes(model, args, kwargs, names, dynamic):
    from torch.export import Dim

    dims: dict[str, Any] = {}

    def spec(name):
        axes = dynamic.get(name)
        if not axes:
            return None
        return {i: Dim.DYNAMIC for i, n in axes.items()}

    if not any(dynamic.get(n) for n in names):
        return None
    if kwargs:
        return {**{names[i]: spec(names[i]) for i in range(len(args))}, **{k: spec(k) for k in kwargs}}
    specs = tuple(spec(names[i]) for i in range(len(args)))
    named = _named_positional(model)
    if named is None:
        return specs
    # forward(a, b, *rest): one spec per named parameter, then one tuple for *rest (torch.export's structure)
    return specs[:named] + (specs[named:],)


def _named_positional(model) -> int | None:
    """How many positional parameters forward() names before its ``*args``; None when it has no ``*args``."""
    try:
        params = list(_inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    if not any(p.kind == p.VAR_POSITIONAL for p in params):
        return None
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def _specialization_detail(model, args, kwargs, dynamic_shapes) -> str:
    """Where the model forced a dim to a constant, from torch.export.draft_export's report (best effort)."""
    import logging

    import torch

    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.draft_export(model, args, kwargs, dynamic_shapes=dynamic_shapes, strict=False)
        text = str(getattr(program, "_report", ""))
    except Exception:  # noqa: BLE001 - the detail is optional
        return ""
    finally:
        logger.setLevel(level)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = []
    for block in text.split("This occurred at the following stacktrace:")[1:]:
        frames = block.split("Locals:")[0].splitlines()
        user = [ln.strip() for ln in frames if ln.strip() and "site-packages/torch/" not in ln]
        if user:
            lines.append(" ".join(user[-2:]))
    return "; ".join(dict.fromkeys(lines))


def _dims_in_error(message: str) -> list[str]:
    found = re.findall(r"Constraints violated \(([^)]*)\)", message)
    return [d.strip() for group in found for d in group.split(",") if d.strip()]


def _trace_dynamo(model, args, kwargs, dynamic_shapes, dynamic, names):
    import torch

    try:
        with warnings.catch_warnings(), torch.fx.experimental._config.patch(backed_size_oblivious=True):
            warnings.simplefilter("ignore")
            return torch.export.export(model, args, kwargs, dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as err:  # torch.export raises UserError, ValueError, GuardOnDataDependent...
        message = str(err)
        known = {n for axes in dynamic.values() for n in axes.values()}
        dims = [d for d in _dims_in_error(message) if d in known]
        params = _default_input_names(model, len(args), kwargs)
        found = re.findall(r"inputs\['(\w+)'\](?:\[(?:\d+)\])?\.shape\[(\d+)\]", message)
        found += re.findall(r"L\['(\w+)'\]\.size\(\)\[(\d+)\]", message)
        for param, index in found:
            if param in params and params.index(param) < len(names):
                key = names[params.index(param)]
                dims.extend(n for i, n in dynamic.get(key, {}).items() if i == int(index) and n not in dims)
        if dims or "specialized" in message or "inferred a static shape" in message:
            constant = re.findall(r"(?:specialized it to be a constant \(|static shape of |hint of )(\d+)", message)
            where = _specialization_detail(model, args, kwargs, dynamic_shapes)
            users = [f"{k}:{i}" for k, axes in dynamic.items() for i, n in axes.items() if n in dims]
            raise UserInputError(
                f"dim {', '.join(dims) or '?'} ({', '.join(users) or 'see below'}) cannot be dynamic: the model "
                f"specialized it to {', '.join(constant) or 'a constant'}" + (f" at {where}" if where else ""),
                hint="make that code shape-generic (use x.shape[...] instead of constants) or drop the dim from --dynamic",
            ) from err
        raise _ExportFailed("torch.export", err) from err


class _ExportFailed(Exception):
    def __init__(self, stage: str, err: BaseException, missing: list[MissingOp] | None = None):
        super().__init__(f"{stage} failed: {_first_line(err)}")
        self.stage = stage
        self.err = err
        self.missing = missing or []


def _first_line(err: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
    for marker in ("## Exception summary",):
        if marker in text:
            text = text.split(marker, 1)[1].strip()
    line = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("⬆")), type(err).__name__)
    return f"{type(err).__name__}: {line.strip()}"[:300]


def _module_path(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path, cls = list(stack.values())[-1]
    path = re.sub(r"^L\['self'\]\.?", "", str(path)).replace("._modules['", ".").replace("']", "")
    cls_name = getattr(cls, "__name__", str(cls).rsplit(".", 1)[-1].strip("'>"))
    return f"{path or '<root>'} ({cls_name})"


def _node_location(node) -> str:
    trace = node.meta.get("stack_trace") or ""
    files = re.findall(r'File "([^"]+)", line (\d+)', trace)
    user = [(f, n) for f, n in files if "site-packages/torch" not in f]
    if not user:
        return ""
    f, n = user[-1]
    return f"{os.path.basename(f)}:{n}"


def _dynamo_missing_ops(program, opset: int, table: dict) -> list[MissingOp]:
    """Every call_function node the ONNX registry cannot dispatch, after the exporter's decompositions."""
    from torch.onnx._internal.exporter import _core, _dispatching, _registration

    registry = _registration.ONNXRegistry.from_torchlib(opset_version=max(opset, 18))
    for target, fn in table.items():
        registry.register_op(target, fn)
    try:
        decomposed = _core._prepare_exported_program_for_export(program, registry=registry)
    except Exception:  # noqa: BLE001 - analyse the undecomposed graph instead
        decomposed = program
    found: dict[tuple[str, str], MissingOp] = {}
    for node in decomposed.graph.nodes:
        if node.op != "call_function":
            continue
        try:
            function, _ = _dispatching.dispatch(node, registry)
        except Exception:  # noqa: BLE001
            function = None
        if function is not None:
            continue
        name = node.target.name() if hasattr(node.target, "name") else str(node.target)
        key = (name, _module_path(node))
        if key in found:
            found[key].count += 1
        else:
            found[key] = MissingOp(name, key[1], _node_location(node))
    return list(found.values())


def _export_dynamo(model, args, kwargs, names, output_names, dynamic, opset, mappings, optimize, timings, phase):
    import torch

    shapes = _dynamo_dynamic_shapes(model, args, kwargs, names, dynamic)
    phase("trace (torch.export)")
    t0 = time.perf_counter()
    bumped = _trace_example(args, kwargs, names, dynamic) if shapes is not None else None
    program = None
    if bumped is not None:
        try:
            program = _trace_dynamo(model, bumped[0], bumped[1], shapes, dynamic, names)
            args, kwargs = bumped
        except (UserInputError, _ExportFailed):  # the model cannot run at 2: report the error of the real example
            program = None
    if program is None:
        program = _trace_dynamo(model, args, kwargs, shapes, dynamic, names)
    timings["trace"] = time.perf_counter() - t0
    phase("convert to ONNX (dynamo)")
    t0 = time.perf_counter()
    target_opset = opset or None
    table = dynamo_table(mappings, opset or 18) if mappings else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(
                program, args, kwargs=kwargs or None, input_names=names, output_names=output_names,
                opset_version=target_opset, dynamo=True, custom_translation_table=table, optimize=optimize,
                verbose=False, report=False,
            )
    except Exception as err:
        missing = []
        try:
            with warnings.catch_warnings():  # torch's own deprecation warnings are no news to the user
                warnings.simplefilter("ignore")
                missing = _dynamo_missing_ops(program, opset or 18, table or {})
        except Exception:  # noqa: BLE001 - analysis is best effort
            missing = []
        raise _ExportFailed("torch.onnx.export(dynamo=True)", err, missing) from err
    timings["convert"] = time.perf_counter() - t0
    return onnx_program.model


# --------------------------------------------------------------------------------------------- torchscript
def _torchscript_missing_ops(model, args, kwargs, opset: int, mapped: set[str]) -> list[MissingOp]:
    import torch
    from torch.onnx._internal.torchscript_exporter import registration

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, args, strict=False) if not kwargs else torch.jit.trace(
            model, example_kwarg_inputs=kwargs, strict=False)
    found: dict[tuple[str, str], MissingOp] = {}

    def visit(graph):
        for node in graph.nodes():
            kind = node.kind()
            for block in node.blocks():
                visit(block)
            ns = kind.split("::")[0]
            if ns in ("prim", "onnx") or kind in mapped or registration.registry.is_registered_op(kind, opset):
                continue
            scope = node.scopeName().replace("__module.", "").split("/")[-1]
            src = [ln for ln in node.sourceRange().strip().splitlines() if "site-packages" not in ln]
            key = (kind, scope)
            if key in found:
                found[key].count += 1
            else:
                found[key] = MissingOp(kind, scope, src[0].strip()[:120] if src else "")

    visit(traced.inlined_graph if hasattr(traced, "inlined_graph") else traced.graph)
    return list(found.values())


def _export_torchscript(model, args, kwargs, names, output_names, dynamic, opset, mappings, timings, phase):
    import tempfile

    import onnx
    import onnx_ir as ir
    import torch

    opset = opset or TORCHSCRIPT_DEFAULT_OPSET
    installed = install_torchscript(mappings, opset) if mappings else []
    phase("trace + convert (torchscript)")
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="onnxdeploy-export-") as tmp:
            tmp_path = os.path.join(tmp, "model.onnx")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(
                        model, args + ((kwargs,) if kwargs else ()), tmp_path, input_names=names,
                        output_names=output_names, opset_version=opset, dynamo=False,
                        dynamic_axes={k: dict(v) for k, v in dynamic.items()} or None,
                        custom_opsets=domains(mappings) or None,
                    )
            except Exception as err:
                missing = []
                if "operator" in str(err).lower() or type(err).__name__ == "UnsupportedOperatorError":
                    try:
                        missing = _torchscript_missing_ops(model, args, kwargs, opset,
                                                           {m.torch_op.split(".")[0] for m in mappings})
                    except Exception:  # noqa: BLE001
                        missing = []
                raise _ExportFailed("torch.onnx.export(dynamo=False)", err, missing) from err
            proto = onnx.load(tmp_path, load_external_data=True)
        model_ir = ir.from_proto(proto)
    finally:
        uninstall_torchscript(installed, opset)
    timings["trace"] = 0.0
    timings["convert"] = time.perf_counter() - t0
    return model_ir


# --------------------------------------------------------------------------------------------- checks
def _rename_and_check_dims(model_ir, dynamic, exporter: str) -> None:
    """Give the dims the user's names and fail when a dim named dynamic came out static."""
    import onnx_ir as ir

    values = {v.name: v for v in list(model_ir.graph.inputs) + list(model_ir.graph.outputs)}
    rename: dict[str, str] = {}
    aliases: dict[str, str] = {}  # a dim the exporter wrote as an expression (s15 + s70) that the user named
    static: list[str] = []
    for key, axes in dynamic.items():
        value = values.get(key)
        if value is None or value.shape is None:
            continue
        for index, name in axes.items():
            dim = value.shape[index]
            if isinstance(dim, int):
                static.append(f"{key}:{index}={name} (came out as {dim})")
            elif dim.value and _RAW_SYMBOL.fullmatch(dim.value.strip()):
                rename.setdefault(dim.value.strip(), name)
            elif dim.value:
                aliases.setdefault(dim.value, name)
    if static:
        raise UnsupportedError(
            f"the {exporter} exporter made dim{'s' if len(static) > 1 else ''} {', '.join(static)} static",
            hint=("an op in the model forced a fixed size; try --exporter dynamo, which names the op"
                  if exporter == "torchscript" else "check the model code for constant sizes"),
        )
    clean = _DimNamer(rename)
    for text, name in aliases.items():
        clean.alias(text, name)

    def fix(value):
        if value.shape is None:
            return
        dims = [ir.SymbolicDim(clean(d.value)) if isinstance(d, ir.SymbolicDim) and d.value else d
                for d in value.shape]
        if dims != list(value.shape):
            value.shape = ir.Shape(dims)

    for value in list(model_ir.graph.inputs) + list(model_ir.graph.outputs):
        fix(value)
    for node in ir.traversal.RecursiveGraphIterator(model_ir.graph):
        for value in node.outputs:
            fix(value)


_RAW_SYMBOL = re.compile(r"[a-z]{1,2}\d+")  # torch's symbols: s27 (a size), u0 (data-dependent), ...
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SYMPY_FUNCTIONS = {"floor", "ceiling", "Max", "Min", "Mod", "Abs", "FloorDiv", "CeilDiv", "PythonMod",
                    "CleanDiv", "FloorToInt", "CeilToInt", "TruncToInt", "sqrt"}


class _DimNamer:
    """Map a dim as the exporter wrote it (``s27``, ``s64 + s27``) to a name derived from the user's dim names.

    Raw torch symbols become the names the user gave the matching input dims (``rename``), an expression is rewritten
    over those names in sympy's canonical order (so ``s27 + s64`` and ``s64 + s95`` both read
    ``past_sequence + sequence`` when s27 and s95 are both ``past_sequence``), and a raw symbol the user did not name
    becomes ``dim_0``, ``dim_1``, ... in order of first appearance. Names that are not torch symbols stay as they are.
    """

    def __init__(self, rename: Mapping[str, str]) -> None:
        self.rename = dict(rename)
        self.user = set(self.rename.values())
        self.cache: dict[str, str] = {}
        self.aliases: dict[str, str] = {}
        self.counter = 0

    def __call__(self, text: str) -> str:
        if text not in self.cache:
            cleaned = self._clean(text)
            self.cache[text] = self.aliases.get(cleaned, cleaned)
        return self.cache[text]

    def alias(self, text: str, name: str) -> None:
        """Name every dim whose canonical form equals ``text``'s: an expression the user named (a present cache's
        ``s15 + s70`` and the next one's ``s70 + s95`` are both ``past_sequence + sequence``, named
        ``total_sequence``)."""
        cleaned = self._clean(text)
        if cleaned != name:
            self.aliases.setdefault(cleaned, name)

    def _name_for(self, symbol: str) -> str:
        if symbol not in self.rename:
            while f"dim_{self.counter}" in self.user:
                self.counter += 1
            self.rename[symbol] = f"dim_{self.counter}"
            self.user.add(self.rename[symbol])
            self.counter += 1
        return self.rename[symbol]

    def _clean(self, text: str) -> str:
        if text in self.rename:
            return self.rename[text]
        tokens = [t for t in dict.fromkeys(_IDENTIFIER.findall(text)) if t not in _SYMPY_FUNCTIONS]
        raw = [t for t in tokens if _RAW_SYMBOL.fullmatch(t) and t not in self.user]
        if not raw:
            return text  # a user name, or a name the exporter made up (TorchScript's "Add_dim_0")
        if text.strip() in raw:
            return self._name_for(text.strip())
        for symbol in raw:
            self._name_for(symbol)
        try:
            import sympy
            from sympy.parsing.sympy_parser import parse_expr

            local = {t: sympy.Symbol(self.rename.get(t, t), integer=True, positive=True) for t in tokens}
            local.update({f: getattr(sympy, f) for f in _SYMPY_FUNCTIONS if hasattr(sympy, f)})
            expr = parse_expr(text, local_dict=local, evaluate=True)
            return str(expr)
        except Exception:  # noqa: BLE001 - an expression sympy cannot read keeps its form, with the names replaced
            return _IDENTIFIER.sub(lambda m: self.rename.get(m.group(0), m.group(0)), text)


def _declare_domains(model_ir, mappings) -> None:
    for domain, version in domains(mappings).items():
        model_ir.opset_imports.setdefault(domain, version)
    used = {n.domain for n in model_ir.graph.all_nodes() if n.domain} if hasattr(model_ir.graph, "all_nodes") else set()
    for domain in used:
        model_ir.opset_imports.setdefault(domain, 1)


# --------------------------------------------------------------------------------------------- export
def export(
    model,
    example_inputs=None,
    path: str | os.PathLike | None = None,
    *,
    task: str | None = None,
    with_past: bool = True,
    output: str | os.PathLike | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic: Mapping[str, Mapping[int, str] | Sequence[int]] | None = None,
    opset: int | None = None,
    exporter: str = "auto",
    verify: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    custom_ops: Any = None,
    optimize: bool = True,
    keep_on_mismatch: bool = False,
    on_phase: Callable[[str], None] | None = None,
    seed: int = 0,
) -> ExportReport:
    """Export ``model`` to ONNX at ``path`` and verify it with onnxruntime; return an :class:`ExportReport`.

    ``dynamic`` names dims by input/output name: ``{"input": {0: "batch", 2: "height"}}``. ``exporter`` is "dynamo",
    "torchscript" or "auto" (dynamo, then TorchScript if dynamo cannot convert the model). ``custom_ops`` adds
    op mappings (see :mod:`onnxdeploy._export_ops`) to the ones registered with :func:`register_op`/:func:`custom_op`.
    ``path=None`` exports and verifies without writing. Raises :class:`UnsupportedOperators` naming every operator the
    exporter cannot convert, and :class:`OutputsDisagree` (nothing written unless ``keep_on_mismatch``) on mismatch.

    ``task="text-generation"`` exports a decoder LM: ``export(target, output, task="text-generation",
    with_past=True)``, where ``target`` is an nn.Module with the causal-LM calling convention, a target string
    (``pkg.mod:factory``, ``file.py:factory``, ``hf:llama?hidden_size=64``) or a transformers config, and the second
    argument is the output path (example inputs are made from the model). Inputs ``input_ids``, ``attention_mask``,
    ``position_ids``, ``past_key_values.N.key/value``; outputs ``logits``, ``present.N.key/value``; dims ``batch``,
    ``sequence``, ``past_sequence``, ``total_sequence``; verified against PyTorch at a prefill (past 0) and a decode
    step (past = the prefill's present). A ``hf:`` target without example inputs implies this task.
    """
    if task is None and isinstance(model, str) and model.startswith("hf:") and example_inputs is None:
        task = "text-generation"
    if task is not None:
        if path is None:
            path = output if output is not None else (
                example_inputs if isinstance(example_inputs, (str, os.PathLike)) else None)
        elif example_inputs is not None and not isinstance(example_inputs, (str, os.PathLike)):
            raise UserInputError("export(task=...) makes its own example inputs; pass export(target, output, task=...)")
        return export_text_generation(
            model, path, task=task, with_past=with_past, opset=opset, exporter=exporter, verify=verify, atol=atol,
            rtol=rtol, custom_ops=custom_ops, optimize=optimize, keep_on_mismatch=keep_on_mismatch,
            on_phase=on_phase, seed=seed)
    path = path if path is not None else output
    if example_inputs is None:
        raise UserInputError("export needs example inputs (a tensor, a tuple of tensors or a dict of them)",
                             hint="export(model, example_inputs, path), or task='text-generation' for a decoder LM")
    return _export_checked(model, example_inputs, path, input_names=input_names, output_names=output_names,
                           dynamic=dynamic, opset=opset, exporter=exporter, verify=verify, atol=atol, rtol=rtol,
                           custom_ops=custom_ops, optimize=optimize, keep_on_mismatch=keep_on_mismatch,
                           on_phase=on_phase)


def _export_checked(model, example_inputs, path, *, input_names=None, output_names=None, dynamic=None, opset=None,
                    exporter="auto", verify=True, atol=1e-4, rtol=1e-3, custom_ops=None, optimize=True,
                    keep_on_mismatch=False, on_phase=None, check=None, task=None) -> ExportReport:
    """The export itself; ``check(model bytes or ir.Model, report)`` replaces the default two-shape verification."""
    torch = require("torch", extra="torch", purpose="exporting a PyTorch model")
    if exporter not in EXPORTERS:
        raise UserInputError(f"unknown exporter {exporter!r}", hint=f"choose one of {', '.join(EXPORTERS)}")
    if not isinstance(model, torch.nn.Module):
        raise UserInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    phase = on_phase or (lambda _name: None)
    if path is not None:
        from onnxdeploy._io import check_output_path

        check_output_path(path)  # fail before the (slow) export when the model could not be written there
    import logging

    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    timings: dict[str, float] = {}
    model.eval()
    args, kwargs = _as_tuple(example_inputs)
    names, out_names, reference = _names_and_reference(model, args, kwargs, input_names, output_names, timings, phase)

    dyn = _normalize_dynamic(dynamic)
    ranks = {n: t.dim() for n, t in zip(names, list(args) + list(kwargs.values()))}
    ranks.update({n: r.ndim for n, r in zip(out_names, reference)})
    _check_dynamic(dyn, names, out_names, ranks)
    input_dyn = {k: v for k, v in dyn.items() if k in names}
    mappings = collect(custom_ops)

    model_ir, used, reason = _run_exporters(exporter, model, args, kwargs, names, out_names, dyn, input_dyn, opset,
                                            mappings, optimize, timings, phase)

    t0 = time.perf_counter()
    _declare_domains(model_ir, mappings)
    _rename_and_check_dims(model_ir, dyn, used)
    timings["check_dims"] = time.perf_counter() - t0

    report = ExportReport(
        path=str(path) if path is not None else None, exporter=used, exporter_reason=reason,
        opset=int(model_ir.opset_imports.get("", 0)), input_names=names,
        output_names=[v.name for v in model_ir.graph.outputs], dynamic_dims=dyn, seconds=timings,
        custom_ops=[m.describe() for m in mappings],
        output_dims={v.name: _dims_of(v) for v in model_ir.graph.outputs}, task=task,
    )

    # Serialize once: the same bytes feed onnxruntime and become the file (embedded weights). Models whose weights
    # approach protobuf's 2 GB limit, or that hold external tensors, go through io.save (external data) instead.
    data = None
    if (verify or path is not None) and _embeddable(model_ir):
        import onnx_ir as ir

        t0 = time.perf_counter()
        proto = ir.serde.serialize_model(model_ir)
        data = proto.SerializeToString()
        del proto
        timings["serialize"] = time.perf_counter() - t0

    if verify:
        phase("verify with onnxruntime")
        t0 = time.perf_counter()
        if check is not None:
            reference.clear()
            check(data if data is not None else model_ir, report)
        else:
            _verify(model, data if data is not None else model_ir, args, kwargs, names, reference, input_dyn, report,
                    atol, rtol)
        timings["verify"] = time.perf_counter() - t0
        report.verified = True

    _publish(report, model_ir, data, path, keep_on_mismatch, phase)
    timings["total"] = sum(v for k, v in timings.items() if k != "total" and "." not in k)
    return report


# --------------------------------------------------------------------------------------------- text generation
LLM_EXAMPLE = (2, 3, 4)  # batch, past, sequence of the traced example: >= 2 and all different (no 0/1 specialization)
LLM_CHECK = (2, 5)  # batch and prompt length of the verification: prefill (past 0), then one decode step


def export_text_generation(target, path, *, task: str = "text-generation", with_past: bool = True,
                           opset: int | None = None, exporter: str = "auto", verify: bool = True, atol: float = 1e-4,
                           rtol: float = 1e-3, custom_ops: Any = None, optimize: bool = True,
                           keep_on_mismatch: bool = False, on_phase: Callable[[str], None] | None = None,
                           seed: int = 0) -> ExportReport:
    """Export a decoder LM with its KV cache (see :func:`export`, ``task=``); verified through the verifier with a
    PyTorch reference runner at a prefill and at a decode step fed the prefill's present."""
    from onnxdeploy import _llm

    with_past = _llm.check_task(task) or with_past
    phase = on_phase or (lambda _name: None)
    phase("load model")
    t0 = time.perf_counter()
    model = causal_lm(target)  # random weights: the hf: spec's seed= field (default 0), as generate --reference
    wrapper, info = _llm.cache_module(model, with_past=with_past)
    load_seconds = time.perf_counter() - t0
    names, out_names = _llm.io_names(info, with_past=with_past)
    batch, past, sequence = LLM_EXAMPLE
    example = _llm.torch_feeds(info, batch=batch, past=past, sequence=sequence, seed=seed, with_past=with_past)

    def check(onnx_model, report: ExportReport) -> None:
        report.parity.extend(_check_text_generation(onnx_model, wrapper, info, names, out_names, with_past,
                                                    atol, rtol, seed, report.seconds))

    report = _export_checked(
        wrapper, tuple(example[n] for n in names), path, input_names=names, output_names=out_names,
        dynamic=_llm.dynamic_dims(info, with_past=with_past), opset=opset, exporter=exporter, verify=verify,
        atol=atol, rtol=rtol, custom_ops=custom_ops, optimize=optimize, keep_on_mismatch=keep_on_mismatch,
        on_phase=on_phase, check=check, task="text-generation-with-past" if with_past else "text-generation")
    report.seconds["load"] = load_seconds
    report.cache = info.to_dict()
    return report


def causal_lm(target, *, seed: int = 0):
    """The nn.Module a text-generation target names: a module, a transformers config (random weights from ``seed``)
    or a target string (``hf:...``, ``pkg.mod:factory``, ``file.py:factory``)."""
    torch = require("torch", extra="torch", purpose="exporting a PyTorch model")
    if isinstance(target, torch.nn.Module):
        return target.eval()
    if isinstance(target, (str, os.PathLike)):
        from onnxdeploy._torch_target import load_hf_model, load_torch_target

        text = os.fspath(target)
        return load_hf_model(text, seed=seed) if text.startswith("hf:") else load_torch_target(text).module
    if hasattr(target, "to_dict") and hasattr(target, "model_type"):  # a transformers PretrainedConfig
        import transformers

        torch.manual_seed(seed)
        return transformers.AutoModelForCausalLM.from_config(target).eval()
    raise UserInputError(f"cannot export a {type(target).__name__} as a text-generation model",
                         hint="give an nn.Module, a transformers config, or a target string such as "
                              "hf:llama?hidden_size=64&num_hidden_layers=2")


def _check_text_generation(onnx_model, wrapper, info, names, out_names, with_past, atol, rtol, seed, timings):
    """Comparisons at a prefill (past 0) and one decode step fed PyTorch's present, through the verifier."""
    from onnxdeploy import _llm
    from onnxdeploy._verify import Inputs, Verifier, onnxruntime_runner

    t0 = time.perf_counter()
    candidate = onnxruntime_runner(onnx_model)
    timings["verify.session"] = time.perf_counter() - t0
    reference = _llm.torch_runner(wrapper, names, out_names)
    batch, prompt = LLM_CHECK
    prefill = {k: v.numpy() for k, v in _llm.torch_feeds(info, batch=batch, past=0, sequence=prompt, seed=seed + 1,
                                                         with_past=with_past).items()}
    sets = [(f"prefill (batch={batch}, past_sequence=0, sequence={prompt})" if with_past
             else f"prompt (batch={batch}, sequence={prompt})", prefill)]
    if with_past:
        presents = reference(prefill)
        step = {k: v.numpy() for k, v in _llm.torch_feeds(info, batch=batch, past=prompt, sequence=1, seed=seed + 2,
                                                          with_past=True).items()}
        for i in range(info.layers):
            for kind in ("key", "value"):
                step[_llm.past_name(i, kind)] = presents[_llm.present_name(i, kind)]
        sets.append((f"decode step (batch={batch}, past_sequence={prompt}, sequence=1)", step))
    comparisons = []
    for label, feeds in sets:
        verifier = Verifier(reference, Inputs(arrays=feeds), atol=atol, rtol=rtol, specs_from=onnx_model,
                            interface="ignore", reference_name="PyTorch")
        result = verifier.check(None, runner=candidate, label=label)
        if result.errors:
            raise UnsupportedError(f"onnxruntime cannot run the exported model at the {label}: {result.errors[0]}",
                                   hint="report it with --debug; try --exporter torchscript")
        for comparison in result.comparisons:
            comparison.label = label
        comparisons.extend(result.comparisons)
    return comparisons


def _publish(report: ExportReport, model_ir, data: bytes | None, path, keep_on_mismatch: bool, phase) -> None:
    """Write the model (the serialized ``data`` when there is one) unless it disagrees with PyTorch; a mismatch
    raises :class:`OutputsDisagree` after writing only with ``keep_on_mismatch``."""
    from onnxdeploy import _io as odio

    def write() -> None:
        if data is not None:
            odio.atomic_write_bytes(path, data)
        else:
            odio.save(model_ir, path)

    if not report.passed:
        report.kept = bool(keep_on_mismatch and path is not None)
        if report.kept:
            write()
        worst = next(c for c in report.parity if not c.passed)
        raise _disagree(report, worst, path)
    if path is None:
        report.kept = False
        return
    phase("save")
    t0 = time.perf_counter()
    write()
    report.seconds["save"] = time.perf_counter() - t0


def _names_and_reference(model, args, kwargs, input_names, output_names, timings, phase):
    """Check the example inputs and names, run PyTorch once: (input names, output names, reference outputs)."""
    import torch

    for i, t in enumerate(list(args) + list(kwargs.values())):
        if not isinstance(t, torch.Tensor):
            raise UserInputError(f"example input {i} is a {type(t).__name__}; every example input must be a tensor")
    n_inputs = len(args) + len(kwargs)
    names = list(input_names) if input_names else _default_input_names(model, len(args), kwargs)
    if len(names) != n_inputs:
        raise UserInputError(f"{len(names)} input names for {n_inputs} example inputs",
                             hint="give one name per example input, in order")

    phase("run PyTorch")
    t0 = time.perf_counter()
    try:
        reference = _run_torch(model, args, kwargs)
    except Exception as err:  # the model rejects its own example inputs: say which and how to fix, in one line
        raise _example_error(err, names, list(args) + list(kwargs.values()),
                             model if not kwargs else None) from err
    timings["torch_run"] = time.perf_counter() - t0
    if output_names:
        out_names = list(output_names)
        if len(out_names) != len(reference):
            raise UserInputError(f"{len(out_names)} output names for {len(reference)} outputs",
                                 hint="give one name per output tensor, in order")
    else:
        out_names = ["output"] if len(reference) == 1 else [f"output_{i}" for i in range(len(reference))]
    if len(set(names + out_names)) != len(names) + len(out_names):
        raise UserInputError("input and output names must be unique", hint=f"got {names + out_names}")
    return names, out_names, reference


def _run_exporters(exporter, model, args, kwargs, names, out_names, dyn, input_dyn, opset, mappings, optimize,
                   timings, phase):
    """Export with the exporter asked for ("auto": dynamo, then TorchScript when dynamo cannot convert the model).
    Returns (model_ir, exporter used, why); unconvertible operators raise :class:`UnsupportedOperators`."""
    reason = "requested" if exporter != "auto" else "dynamo is the default"
    used = "dynamo" if exporter in ("auto", "dynamo") else "torchscript"
    try:
        if used == "dynamo":
            try:
                model_ir = _export_dynamo(model, args, kwargs, names, out_names, input_dyn, opset, mappings, optimize,
                                          timings, phase)
            except _ExportFailed as failure:
                if exporter == "dynamo":
                    raise
                reason = f"dynamo failed ({failure}); fell back to torchscript"
                used = "torchscript"
                try:
                    model_ir = _export_torchscript(model, args, kwargs, names, out_names, dyn, opset, mappings,
                                                   timings, phase)
                except _ExportFailed as second:
                    missing = failure.missing or second.missing
                    if missing:
                        raise UnsupportedOperators("dynamo", missing, detail=f"torchscript fallback: {second}") from second.err
                    raise UnsupportedError(f"export failed with both exporters: dynamo: {failure}; torchscript: {second}",
                                           hint="run with --exporter dynamo --debug for the full trace") from failure.err
        else:
            model_ir = _export_torchscript(model, args, kwargs, names, out_names, dyn, opset, mappings, timings, phase)
    except _ExportFailed as failure:
        if failure.missing:
            raise UnsupportedOperators(used, failure.missing) from failure.err
        raise UnsupportedError(f"{failure}", hint="run with --debug for the full trace") from failure.err
    return model_ir, used, reason


def _embeddable(model_ir) -> bool:
    """True when the model can be written as one protobuf with its weights embedded (no external tensors)."""
    import onnx_ir as ir

    from onnxdeploy._io import EXTERNAL_THRESHOLD

    total = 0
    for graph in model_ir.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if tensor is None:
                continue
            if isinstance(tensor, ir.ExternalTensor):
                return False
            total += tensor.nbytes
    return total <= EXTERNAL_THRESHOLD


def _disagree(report: ExportReport, worst, path) -> OutputsDisagree:
    where = (f"the model was kept at {path} (keep_on_mismatch)" if report.kept
             else "no model file was written")
    err = OutputsDisagree(
        f"ONNX outputs disagree with PyTorch ({worst.summary()}); {where}",
        hint="loosen --atol/--rtol if the error is expected, try the other --exporter, or pass --keep-on-mismatch "
             "to keep the file for debugging",
    )
    err.report = report  # type: ignore[attr-defined]
    return err


def _verify(model, model_ir, args, kwargs, names, reference, dynamic, report, atol, rtol) -> None:
    """Run onnxruntime on the example inputs and on a second shape; ``report.seconds`` gets the parts of the cost as
    ``verify.session``, ``verify.onnxruntime``, ``verify.pytorch`` and ``verify.compare`` (not added to the total)."""
    import numpy as np

    from onnxdeploy._run import create_session, run_session
    from onnxdeploy._verify import check_expected

    timings = report.seconds

    def tick(key, t0):
        timings[f"verify.{key}"] = timings.get(f"verify.{key}", 0.0) + time.perf_counter() - t0

    t0 = time.perf_counter()
    session = create_session(model_ir)  # serialized bytes (the file's), or an ir.Model with external data
    tick("session", t0)
    onnx_inputs = [i.name for i in session.get_inputs()]
    onnx_outputs = [o.name for o in session.get_outputs()]

    def feeds(a, kw):
        tensors = list(a) + list(kw.values())
        by_name = {n: t.detach().cpu().numpy() for n, t in zip(names, tensors)}
        return {n: by_name[n] for n in onnx_inputs if n in by_name}

    def compare(ref, a, kw, label):
        t0 = time.perf_counter()
        got = run_session(session, feeds(a, kw), onnx_outputs)
        tick("onnxruntime", t0)
        t0 = time.perf_counter()
        ref_named = {n: np.asarray(r) for n, r in zip(onnx_outputs, ref)}
        report.parity.append(check_expected(got, ref_named, feeds=feeds(a, kw), structure=model_ir, atol=atol,
                                            rtol=rtol, label=label).comparisons[0])
        tick("compare", t0)

    shape_of = lambda a, kw: ", ".join(f"{n}={'x'.join(map(str, t.shape))}" for n, t in zip(names, list(a) + list(kw.values())))  # noqa: E731
    compare(reference, args, kwargs, f"example ({shape_of(args, kwargs)})")
    reference.clear()  # the caller's list: the example's outputs are not needed any more (peak memory)
    if not dynamic:
        return
    sizes: dict[str, int] = {}
    for name, axes in dynamic.items():
        tensor = args[names.index(name)] if names.index(name) < len(args) else kwargs[name]
        for index, dim in axes.items():
            sizes.setdefault(dim, _other_value(int(tensor.shape[index])))
    new_args, new_kwargs = _inputs_at(args, kwargs, names, dynamic, sizes)
    shape = shape_of(new_args, new_kwargs)
    t0 = time.perf_counter()
    try:
        other_ref = _run_torch(model, new_args, new_kwargs)
        tick("pytorch", t0)
    except Exception as err:  # the PyTorch model itself rejects the other shape
        raise UserInputError(
            f"PyTorch cannot run the model at the second shape ({shape}), so dims "
            f"{', '.join(sorted(sizes))} are not really dynamic: {_first_line(err)}",
            hint="drop those dims from --dynamic, or pass verify=False / --no-verify to skip the check",
        ) from err
    from onnxdeploy._run import SessionError

    try:
        compare(other_ref, new_args, new_kwargs, f"other shape ({shape})")
    except SessionError as err:  # PyTorch runs that shape, the ONNX graph does not: a dim was fixed inside it
        raise UnsupportedError(
            f"onnxruntime cannot run the exported model at the second shape ({shape}) although PyTorch can: the "
            f"exporter fixed dim{'s' if len(sizes) > 1 else ''} {', '.join(sorted(sizes))} inside the graph ({err})",
            hint="export with example inputs of size >= 2 in every dynamic dim, try the other --exporter, or drop "
                 "the dim from --dynamic",
        ) from err


__all__ = [
    "ExportReport",
    "MissingOp",
    "OpMapping",
    "UnsupportedOperators",
    "custom_op",
    "example_hint",
    "export",
    "integer_input_bound",
    "needs_integer_inputs",
    "random_inputs",
    "register_op",
    "registered_ops",
]
