"""Graph surgery on onnx-ir: a chainable :class:`Editor` whose every method fails at once on a bad edit.

    from onnxdeploy._edit import Editor
    report = (Editor("model.onnx")
              .delete_node("add")                             # consumers read the Conv output instead
              .insert_after("op:Conv", "Cast", attrs={"to": "int64"})
              .save("edited.onnx"))                           # checked, verified, written atomically

Selectors: an exact name, ``op:TYPE`` (every node of that type; as a tensor: each such node's first output),
``re:REGEX`` (``re.search`` on names) or a glob (``*``, ``?``, ``[``; or ``glob:PATTERN``). A selector that matches
nothing is an error naming the closest existing names.

Before anything is written, the model passes the ONNX checker and strict shape inference (every intermediate dtype
and shape re-inferred; a graph output whose declared shape contradicts the computed one is corrected and noted).
Runs of edits that must not change numerics (rename, expose/remove outputs, extract, cleanup, toposort, opset
conversion) are verified on onnxruntime with seeded synthesized inputs against the model before them.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from onnxdeploy._build import (STANDARD_DOMAINS, call_onnx, dtype_name, format_shape, format_type, infer_node, infer_shapes,
                              onnx_error_text, run_checker, to_dtype)
from onnxdeploy.errors import InvalidModelError, OnnxDeployError, OutputsDisagree, UserInputError
from onnxdeploy._io import ModelLike

if TYPE_CHECKING:
    import onnx_ir as ir

    from onnxdeploy._numerics import Comparison

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------- results


@dataclass
class EditStep:
    """One applied edit: the recipe step that reproduces it and what it did."""

    op: str
    args: dict
    summary: str
    preserves_numerics: bool = False

    def to_dict(self) -> dict:
        return {"op": self.op, "args": self.args, "summary": self.summary,
                "preserves_numerics": self.preserves_numerics}

    def recipe_step(self) -> dict:
        return {self.op: dict(self.args)}


@dataclass
class Verification:
    """Numeric check of a run of edits that must not change outputs."""

    steps: list[str]
    status: str  # "passed", "failed" or "skipped"
    comparison: "Comparison | None" = None
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.status != "failed"

    def summary(self) -> str:
        what = ", ".join(self.steps)
        if self.comparison is not None:
            return f"{what}: {self.comparison.summary()}"
        return f"{what}: {self.status}{' (' + self.reason + ')' if self.reason else ''}"

    def to_dict(self) -> dict:
        return {"steps": self.steps, "status": self.status, "reason": self.reason,
                "comparison": self.comparison.to_dict() if self.comparison is not None else None}


@dataclass
class EditReport:
    """What an :class:`Editor` did: steps, validation notes, verifications, and where the model was written."""

    steps: list[EditStep]
    notes: list[str] = field(default_factory=list)
    verifications: list[Verification] = field(default_factory=list)
    validated: bool = False
    output: str | None = None

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verifications)

    def recipe(self) -> list[dict]:
        return [s.recipe_step() for s in self.steps]

    def to_dict(self) -> dict:
        return {"output": self.output, "validated": self.validated, "passed": self.passed,
                "steps": [s.to_dict() for s in self.steps], "notes": self.notes,
                "verifications": [v.to_dict() for v in self.verifications]}


@dataclass
class _Segment:
    before: "ir.Model"
    names: dict[str, str] = field(default_factory=dict)  # tensor name now -> name in `before`
    steps: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- selectors


def _not_found(kind: str, selector: str, names: Sequence[str], *, extra_hint: str = "") -> UserInputError:
    core = re.sub(r"^(op|re|glob):", "", selector)
    core_plain = re.sub(r"[*?\[\]^$\\.+()|{}]", "", core)
    close = difflib.get_close_matches(core_plain, list(dict.fromkeys(names)), n=3, cutoff=0.4)
    if not close:
        close = [n for n in names if core_plain and core_plain.lower() in n.lower()][:3]
    if close:
        hint = f"closest {kind} names: {', '.join(close)}"
    else:
        sample = list(dict.fromkeys(names))[:8]
        hint = f"{kind} names include: {', '.join(sample) or '(none)'}"
    if extra_hint:
        hint = f"{extra_hint}; {hint}"
    return UserInputError(f"no {kind} matches {selector!r}", hint=hint)


def _pattern(selector: str) -> Callable[[str], bool] | None:
    if selector.startswith("re:"):
        try:
            rx = re.compile(selector[3:])
        except re.error as err:
            raise UserInputError(f"selector {selector!r}: invalid regular expression ({err})") from err
        return lambda name: bool(name) and rx.search(name) is not None
    if selector.startswith("glob:"):
        pat = selector[5:]
        return lambda name: bool(name) and fnmatch.fnmatchcase(name, pat)
    if any(c in selector for c in "*?["):
        return lambda name: bool(name) and fnmatch.fnmatchcase(name, selector)
    return None


def _split_op(selector: str) -> tuple[str | None, str]:
    body = selector[3:]
    if "::" in body:
        domain, op = body.split("::", 1)
        return domain, op
    return None, body


# ---------------------------------------------------------------- attribute coercion


def _parse_scalar(text: str) -> Any:
    t = text.strip()
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    return t


def _parse_list(value: Any) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    text = str(value).strip().strip("[]()")
    return [_parse_scalar(p) for p in text.split(",") if p.strip()] if text else []


def coerce_attributes(op_type: str, domain: str, opset: int, attrs: Mapping[str, Any] | None,
                      where: str) -> dict[str, Any]:
    """Turn attribute values from the CLI or a recipe ("int64", "1,2", "0.5") into the types the op's schema wants."""
    import numpy as np
    import onnx

    schema = None
    if domain in STANDARD_DOMAINS:
        try:
            schema = onnx.defs.get_schema(op_type, opset, "")
        except onnx.defs.SchemaError:
            known = sorted({s.name for s in onnx.defs.get_all_schemas()})
            close = difflib.get_close_matches(op_type, known, n=3)
            raise UserInputError(f"{where}: no operator {op_type!r} in opset {opset}",
                                 hint=f"did you mean {', '.join(close)}?" if close else None) from None
    out: dict[str, Any] = {}
    if not attrs:
        return out
    kinds = onnx.defs.OpSchema.AttrType
    for key, value in attrs.items():
        if schema is not None and key not in schema.attributes:
            raise UserInputError(f"{where}: {op_type} has no attribute {key!r}",
                                 hint=f"{op_type} takes: {', '.join(sorted(schema.attributes)) or 'no attributes'}")
        kind = schema.attributes[key].type if schema is not None else None
        try:
            if kind == kinds.INT:
                if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
                    value = int(to_dtype(value))
                out[key] = int(value)
            elif kind == kinds.FLOAT:
                out[key] = float(value)
            elif kind == kinds.STRING:
                out[key] = str(value)
            elif kind == kinds.INTS:
                out[key] = [int(v) for v in _parse_list(value)]
            elif kind == kinds.FLOATS:
                out[key] = [float(v) for v in _parse_list(value)]
            elif kind == kinds.STRINGS:
                out[key] = [str(v) for v in _parse_list(value)]
            elif kind == kinds.TENSOR:
                import onnx_ir as ir

                out[key] = ir.tensor(np.asarray(value))
            elif isinstance(value, str):
                out[key] = _parse_list(value) if "," in value else _parse_scalar(value)
            else:
                out[key] = value
        except OnnxDeployError as err:
            raise UserInputError(f"{where}: attribute {key}={value!r}: {err.message}", hint=err.hint) from err
        except (TypeError, ValueError) as err:
            raise UserInputError(f"{where}: attribute {key}={value!r} does not fit its type "
                                 f"({kind.name.lower() if kind is not None else 'unknown'})") from err
    return out


def parse_shape_text(text: str | Sequence) -> list[int | str | None]:
    """``1x3xHxW`` -> [1, 3, "H", "W"] (names keep their case; ``?`` is an unknown dim)."""
    if not isinstance(text, str):
        return [d if isinstance(d, (int, str)) or d is None else int(d) for d in text]
    if text.strip().lower() in ("", "scalar"):
        return []
    dims: list[int | str | None] = []
    for part in re.split(r"[x,]", text.strip()):
        part = part.strip()
        if not part:
            raise UserInputError(f"empty dim in shape {text!r}", hint="write shapes like 1x3xHxW")
        dims.append(None if part == "?" else int(part) if part.isdigit() else part)
    return dims


# ---------------------------------------------------------------- the editor


class Editor:
    """Chainable graph surgery over an ``onnx_ir.Model``; each method returns the editor.

    ``verify`` (default True) checks numerics-preserving edits on onnxruntime; ``copy`` (default True) leaves a
    given ``ir.Model`` untouched. A path is loaded lazily (external weights memory-mapped, never copied).
    """

    def __init__(self, model: ModelLike, *, copy: bool = True, verify: bool = True, atol: float = 1e-4,
                 rtol: float = 1e-3, seed: int = 0, inputs: Mapping[str, Any] | None = None) -> None:
        import onnx_ir as ir

        from onnxdeploy import _io as io

        self.source: Path | None = Path(model) if isinstance(model, (str, os.PathLike)) else None
        if isinstance(model, ir.Model) and copy:
            model = _snapshot(model)
        self.model: ir.Model = io.as_model(model)
        self.verify_numerics = verify
        self.atol, self.rtol, self.seed = atol, rtol, seed
        self.inputs = dict(inputs or {})  # feeds for verification, by the model's original input names
        self._original: dict[str, str] = {}  # current tensor name -> name in the loaded model
        self._expected_dtypes: dict[str, "ir.DataType"] = {}  # graph input/output -> dtype an edit asked for
        self.steps: list[EditStep] = []
        self.notes: list[str] = []
        self.verifications: list[Verification] = []
        self._segment: _Segment | None = None
        self._inferred = False
        self._counter = 0

    # ------------------------------------------------------------ lookups

    @property
    def graph(self) -> "ir.Graph":
        return self.model.graph

    def _opset(self, domain: str = "") -> int:
        return self.model.opset_imports.get(domain, self.model.opset_imports.get("ai.onnx", 1))

    def values(self) -> dict[str, "ir.Value"]:
        """Every named tensor of the main graph: inputs, initializers, node outputs."""
        result: dict[str, ir.Value] = {}
        for v in self.graph.inputs:
            result[v.name] = v
        for name, v in self.graph.initializers.items():
            result[name] = v
        for node in self.graph:
            for v in node.outputs:
                if v.name:
                    result[v.name] = v
        return result

    def select_nodes(self, selector: str) -> list["ir.Node"]:
        """Nodes matching ``selector`` (exact name, ``op:TYPE``, ``re:REGEX`` or glob); none is an error."""
        nodes = list(self.graph)
        if not isinstance(selector, str) or not selector:
            raise UserInputError(f"a node selector must be a non-empty string, got {selector!r}")
        if selector.startswith("op:"):
            domain, op = _split_op(selector)
            found = [n for n in nodes if n.op_type == op and (domain is None or n.domain == domain)]
            if not found:
                raise _not_found("op type", selector, sorted({n.op_type for n in nodes}))
            return found
        match = _pattern(selector)
        found = [n for n in nodes if (match(n.name or "") if match else n.name == selector)]
        if not found:
            extra = ""
            value = self.values().get(selector)
            if value is not None and value.producer() is not None:
                producer = value.producer()
                extra = f"{selector!r} is a tensor, produced by node {producer.name!r} ({producer.op_type})"
            raise _not_found("node", selector, [n.name for n in nodes if n.name], extra_hint=extra)
        return found

    def select_tensors(self, selector: str) -> list["ir.Value"]:
        """Tensors matching ``selector``; ``op:TYPE`` selects the first output of each node of that type."""
        if not isinstance(selector, str) or not selector:
            raise UserInputError(f"a tensor selector must be a non-empty string, got {selector!r}")
        values = self.values()
        if selector.startswith("op:"):
            return [n.outputs[0] for n in self.select_nodes(selector)]
        match = _pattern(selector)
        found = [v for name, v in values.items() if (match(name) if match else name == selector)]
        if not found:
            extra = ""
            if any(n.name == selector for n in self.graph):
                node = next(n for n in self.graph if n.name == selector)
                extra = f"{selector!r} is a node; its outputs are {', '.join(repr(o.name) for o in node.outputs)}"
            raise _not_found("tensor", selector, list(values), extra_hint=extra)
        return found

    def node(self, selector: str) -> "ir.Node":
        return self._one(self.select_nodes(selector), selector, "node", lambda n: n.name)

    def tensor(self, selector: str) -> "ir.Value":
        return self._one(self.select_tensors(selector), selector, "tensor", lambda v: v.name)

    @staticmethod
    def _one(found: list, selector: str, kind: str, name_of: Callable) -> Any:
        if len(found) != 1:
            names = ", ".join(repr(name_of(x)) for x in found[:5]) + (" ..." if len(found) > 5 else "")
            raise UserInputError(f"{kind} selector {selector!r} matches {len(found)} {kind}s ({names}); "
                                 f"this edit needs exactly one", hint="use an exact name or a narrower pattern")
        return found[0]

    def _graph_input(self, name: str) -> "ir.Value":
        inputs = [v for v in self.graph.inputs if v.name not in self.graph.initializers]
        for v in inputs:
            if v.name == name:
                return v
        raise _not_found("graph input", name, [v.name for v in inputs])

    def _graph_output(self, name: str) -> "ir.Value":
        for v in self.graph.outputs:
            if v.name == name:
                return v
        raise _not_found("graph output", name, [v.name for v in self.graph.outputs])

    def _fresh(self, base: str) -> str:
        used = set(self.values()) | {n.name for n in self.graph if n.name}
        if base not in used:
            return base
        while True:
            self._counter += 1
            name = f"{base}_{self._counter}"
            if name not in used:
                return name

    # ------------------------------------------------------------ bookkeeping

    def ensure_types(self) -> "Editor":
        """Infer dtypes and shapes (non-strict) when an edit needs them and they may be stale."""
        if not self._inferred:
            try:
                self.notes.extend(n for n in infer_shapes(self.model, strict=False) if n not in self.notes)
            except InvalidModelError as err:
                logger.info("shape inference failed before an edit: %s", err)
            self._inferred = True
        return self

    def _record(self, op: str, args: dict, summary: str, *, preserves: bool) -> "Editor":
        clean = {k: v for k, v in args.items() if v is not None and v is not False and v != {} and v != []}
        step = EditStep(op, clean, summary, preserves)
        self.steps.append(step)
        if preserves and self._segment is not None:
            self._segment.steps.append(op)
        self._inferred = False
        return self

    def _start(self, preserves: bool) -> None:
        """Open a verification segment before a numerics-preserving edit; close it before any other edit."""
        if not self.verify_numerics:
            return
        if preserves:
            if self._segment is None:
                self._segment = _Segment(before=_snapshot(self.model))
        else:
            self._close_segment()

    def _close_segment(self) -> None:
        segment, self._segment = self._segment, None
        if segment is None or not segment.steps:
            return
        feeds = {}
        if self.inputs:
            original = {self._original.get(v.name, v.name): v.name for v in segment.before.graph.inputs}
            feeds = {original[k]: v for k, v in self.inputs.items() if k in original}
        self.verifications.append(_verify(segment, self.model, atol=self.atol, rtol=self.rtol, seed=self.seed,
                                          feeds=feeds))

    def _rename_in_segment(self, old: str, new: str) -> None:
        self._original[new] = self._original.pop(old, old)
        if self._segment is not None:
            origin = self._segment.names.pop(old, old)
            self._segment.names[new] = origin

    # ------------------------------------------------------------ delete

    def delete_node(self, node: str, *, keep_input: str | int | None = None, force: bool = False) -> "Editor":
        """Delete the node(s) ``node`` selects; consumers and graph outputs take one of its inputs instead.

        By default the first input with the deleted output's dtype and shape is kept; ``keep_input`` (a name or an
        index) chooses. When none fits, refuse unless ``force``. Inputs left unused are removed.
        """
        self._start(False)
        targets = self.select_nodes(node)
        self.ensure_types()
        summaries = [self._delete_one(n, keep_input, force) for n in targets]
        return self._record("delete_node", {"node": node, "keep_input": keep_input, "force": force},
                            "; ".join(summaries), preserves=False)

    def _delete_one(self, node: "ir.Node", keep_input: str | int | None, force: bool) -> str:
        where = f"node {node.name!r} ({node.op_type})"
        used = [o for o in node.outputs if o.uses() or o.is_graph_output()]
        if len(used) > 1:
            raise UserInputError(f"cannot bypass {where}: {len(used)} of its outputs are used "
                                 f"({', '.join(o.name for o in used)}); a bypass can replace only one")
        out = used[0] if used else node.outputs[0]
        inputs = [v for v in node.inputs if v is not None]
        if not inputs:
            raise UserInputError(f"cannot bypass {where}: it has no inputs", hint="delete its consumers first")
        described = ", ".join(f"{v.name} {format_type(v)}" for v in inputs)
        if keep_input is not None:
            if isinstance(keep_input, int) or (isinstance(keep_input, str) and keep_input.isdigit()):
                index = int(keep_input)
                if not 0 <= index < len(node.inputs) or node.inputs[index] is None:
                    raise UserInputError(f"{where} has no input {index}", hint=f"inputs: {described}")
                kept = node.inputs[index]
            else:
                by_name = [v for v in inputs if v.name == keep_input]
                if not by_name:
                    raise _not_found(f"input of {where}", str(keep_input), [v.name for v in inputs])
                kept = by_name[0]
            if not _same_type(kept, out) and not force:
                raise UserInputError(
                    f"cannot bypass {where} with {kept.name!r} {format_type(kept)}: its output {out.name!r} is "
                    f"{format_type(out)}", hint="add --force (force=True) to bypass anyway")
        else:
            fitting = [v for v in inputs if _same_type(v, out)]
            if fitting:
                kept = fitting[0]
            elif force:
                kept = inputs[0]
            else:
                raise UserInputError(
                    f"cannot bypass {where}: no input has its output's type {format_type(out)} "
                    f"(inputs: {described})",
                    hint="choose one with --keep-input NAME (keep_input=), and --force if the types differ")
        out_name = out.name
        positions = [i for i, v in enumerate(self.graph.outputs) if v is out]
        was_kept_output = kept.is_graph_output()
        out.replace_all_uses_with(kept, replace_graph_outputs=True)
        for o in node.outputs:
            if o is not out and o.uses():
                raise UserInputError(f"cannot delete {where}: output {o.name!r} is still used")
        self.graph.remove(node, safe=True)
        summary = f"deleted {where}; {out_name!r} -> {kept.name!r}"
        if positions:
            if kept.producer() is not None and not was_kept_output and len(positions) == 1:
                old = kept.name
                kept.name = out_name
                self._rename_in_segment(old, out_name)
                summary += f" (renamed to {out_name!r}: the graph output keeps its name)"
            else:  # a graph input, or a value that is already an output: an Identity keeps the names apart
                for i in positions:
                    self._identity_output(kept, out_name, i)
                summary += f" (through an Identity: graph output {out_name!r})"
        removed = self._drop_unused(v for v in inputs if v is not kept)
        if removed:
            summary += f"; removed unused {', '.join(repr(r) for r in removed)}"
        return summary

    def _identity_output(self, value: "ir.Value", name: str, index: int) -> None:
        import onnx_ir as ir

        new = ir.Value(name=self._fresh(name), type=value.type, shape=value.shape)
        node = ir.Node("", "Identity", [value], outputs=[new], name=self._fresh(f"{name}_identity"))
        self.graph.append(node)
        self.graph.outputs[index] = new

    def _drop_unused(self, values) -> list[str]:
        removed = []
        for v in values:
            if v.uses() or v.is_graph_output():
                continue
            if v.is_initializer():
                self.graph.initializers.pop(v.name)
                if v in self.graph.inputs:
                    self.graph.inputs.remove(v)
                removed.append(v.name)
            elif v.is_graph_input():
                self.graph.inputs.remove(v)
                removed.append(v.name)
            elif v.producer() is not None and v.producer().op_type == "Constant" and not any(
                    o.uses() or o.is_graph_output() for o in v.producer().outputs):
                self.graph.remove(v.producer(), safe=True)
                removed.append(v.name)
        return removed

    # ------------------------------------------------------------ insert

    def _make_node(self, op: str, inputs: list, attrs: Mapping[str, Any] | None, domain: str, name: str | None,
                   out_name: str) -> "ir.Node":
        import onnx_ir as ir

        where = f"new node {name or op!r} ({op})"
        if domain not in self.model.opset_imports:
            if domain in STANDARD_DOMAINS:
                raise UserInputError(f"{where}: the model imports no default opset")
            self.model.opset_imports[domain] = 1
        values = coerce_attributes(op, domain, self._opset(domain), attrs, where)
        node_name = name or self._fresh(out_name)
        if name and any(n.name == name for n in self.graph):
            raise UserInputError(f"{where}: a node named {name!r} already exists", hint="choose another name")
        node = ir.Node(domain, op, inputs, attributes=ir.convenience.convert_attributes(values),
                       outputs=[ir.Value(name=self._fresh(out_name))], name=node_name)
        infer_node(node, dict(self.model.opset_imports), self.model.ir_version, f"new node {node_name!r} ({op})")
        return node

    def _made_or_undone(self, op, inputs, attrs, domain, name, out_name, extra) -> "ir.Node":
        """``_make_node``; on failure, drop the constants made for it so a refused edit leaves no trace."""
        try:
            return self._make_node(op, inputs, attrs, domain, name, out_name)
        except OnnxDeployError:
            for value in extra:
                if value.is_initializer() and not value.uses():
                    self.graph.initializers.pop(value.name)
            raise

    def _extra_inputs(self, extra: Sequence[Any] | None) -> list:
        import numpy as np
        import onnx_ir as ir

        result = []
        for item in extra or []:
            if isinstance(item, str) and not item.lstrip("-").replace(".", "", 1).isdigit():
                result.append(self.tensor(item))
            else:
                arr = np.asarray(_parse_scalar(item) if isinstance(item, str) else item)
                if arr.dtype == np.float64:
                    arr = arr.astype(np.float32)
                name = self._fresh("const")
                value = ir.Value(name=name, type=ir.TensorType(ir.DataType.from_numpy(arr.dtype)),
                                 shape=ir.Shape(arr.shape), const_value=ir.tensor(arr, name=name))
                self.graph.register_initializer(value)
                result.append(value)
        return result

    def insert_after(self, tensor: str, op: str, *, attrs: Mapping[str, Any] | None = None,
                     inputs: Sequence[Any] | None = None, name: str | None = None, domain: str = "") -> "Editor":
        """Insert ``op`` reading ``tensor`` (then ``inputs``); every consumer and graph output reads its output.

        A graph output keeps its name: the new node's output takes it (and the old tensor gets ``NAME_before_op``).
        """
        self._start(False)
        targets = self.select_tensors(tensor)
        if name and len(targets) > 1:
            raise UserInputError(f"--name {name!r} given, but {tensor!r} selects {len(targets)} tensors")
        self.ensure_types()
        done = []
        for value in targets:
            extra = self._extra_inputs(inputs)
            node = self._made_or_undone(op, [value, *extra], attrs, domain, name, f"{value.name}_{op.lower()}", extra)
            new = node.outputs[0]
            value.replace_all_uses_with(new, replace_graph_outputs=True)
            node.replace_input_with(0, value)
            self._place(node, [value, *extra])
            if new.is_graph_output() and value.producer() is not None:
                old = value.name
                value.name = self._fresh(f"{old}_before_{op.lower()}")
                new.name = old
            done.append(f"{op} {node.name!r} after {value.name!r} -> {new.name!r} {format_type(new)}")
        return self._record("insert_after", {"tensor": tensor, "op": op, "attrs": dict(attrs or {}),
                                             "inputs": list(inputs or []), "name": name, "domain": domain or None},
                            "inserted " + "; ".join(done), preserves=False)

    def insert_before(self, tensor: str, op: str, *, consumer: str | None = None,
                      attrs: Mapping[str, Any] | None = None, inputs: Sequence[Any] | None = None,
                      name: str | None = None, domain: str = "") -> "Editor":
        """Insert ``op`` between ``tensor`` and its consumer nodes (all, or the one ``consumer`` selects).

        Graph outputs keep reading ``tensor``.
        """
        self._start(False)
        value = self.tensor(tensor)
        consumers = list(dict.fromkeys(value.consumers()))
        if consumer is not None:
            chosen = self.select_nodes(consumer)
            bad = [n.name for n in chosen if n not in consumers]
            if bad:
                raise UserInputError(f"node {bad[0]!r} does not read {value.name!r}",
                                     hint=f"consumers: {', '.join(repr(n.name) for n in consumers) or '(none)'}")
            consumers = chosen
        if not consumers:
            raise UserInputError(f"tensor {value.name!r} has no consumer to insert before",
                                 hint="use insert_after for a graph output")
        self.ensure_types()
        extra = self._extra_inputs(inputs)
        node = self._made_or_undone(op, [value, *extra], attrs, domain, name, f"{value.name}_{op.lower()}", extra)
        new = node.outputs[0]
        for user in consumers:
            for i, v in enumerate(user.inputs):
                if v is value:
                    user.replace_input_with(i, new)
        self._place(node, [value, *extra])
        return self._record("insert_before", {"tensor": tensor, "op": op, "consumer": consumer,
                                              "attrs": dict(attrs or {}), "inputs": list(inputs or []),
                                              "name": name, "domain": domain or None},
                            f"inserted {op} {node.name!r} between {value.name!r} and "
                            f"{', '.join(repr(n.name) for n in consumers)}", preserves=False)

    def _place(self, node: "ir.Node", inputs: Sequence["ir.Value"]) -> None:
        """Put ``node`` right after the last producer of its inputs (or first when they are all graph inputs)."""
        producers = {v.producer() for v in inputs if v is not None and v.producer() is not None}
        last = None
        for n in self.graph:
            if n in producers:
                last = n
        if last is not None:
            self.graph.insert_after(last, node)
        elif len(self.graph) > 0:
            self.graph.insert_before(next(iter(self.graph)), node)
        else:
            self.graph.append(node)

    # ------------------------------------------------------------ replace and rename

    def replace_node(self, node: str, *, op: str | None = None, attrs: Mapping[str, Any] | None = None,
                     remove_attrs: Sequence[str] | None = None, domain: str | None = None) -> "Editor":
        """Change the op type and/or attributes of the node(s) ``node`` selects; outputs are re-inferred."""
        import onnx_ir as ir

        self._start(False)
        targets = self.select_nodes(node)
        if op is None and not attrs and not remove_attrs:
            raise UserInputError(f"replace_node {node!r}: nothing to change", hint="give op=, attrs= or remove_attrs=")
        self.ensure_types()
        done = []
        for target in targets:
            new_op, new_domain = op or target.op_type, target.domain if domain is None else domain
            where = f"node {target.name!r} ({new_op})"
            values = coerce_attributes(new_op, new_domain, self._opset(new_domain), attrs, where)
            missing = [a for a in remove_attrs or [] if a not in target.attributes]
            if missing:
                raise _not_found(f"attribute of {where}", missing[0], list(target.attributes))
            old_op, old_attrs = (target.op_type, target.domain), dict(target.attributes)
            target.op_type, target.domain = new_op, new_domain
            if op is not None and op != old_op[0]:  # attributes of the old op rarely fit the new one
                schema_attrs = _schema_attributes(new_op, new_domain, self._opset(new_domain))
                for key in list(target.attributes):
                    if schema_attrs is not None and key not in schema_attrs:
                        del target.attributes[key]
            for key in remove_attrs or []:
                target.attributes.pop(key, None)
            for attr in ir.convenience.convert_attributes(values):
                target.attributes[attr.name] = attr
            try:
                infer_node(target, dict(self.model.opset_imports), self.model.ir_version, where)
            except OnnxDeployError:
                target.op_type, target.domain = old_op
                target.attributes.clear()
                target.attributes.update(old_attrs)
                raise
            done.append(f"{target.name!r}: {old_op[0]} -> {new_op}" + (
                f" ({', '.join(f'{k}={v}' for k, v in (attrs or {}).items())})" if attrs else ""))
        return self._record("replace_node", {"node": node, "op": op, "attrs": dict(attrs or {}),
                                             "remove_attrs": list(remove_attrs or []), "domain": domain},
                            "replaced " + "; ".join(done), preserves=False)

    def rename_node(self, node: str, new: str) -> "Editor":
        """Rename one node."""
        target = self.node(node)
        if any(n.name == new for n in self.graph if n is not target):
            raise UserInputError(f"cannot rename node {target.name!r} to {new!r}: a node with that name exists")
        self._start(True)
        old, target.name = target.name, new
        return self._record("rename_node", {"node": node, "new": new}, f"node {old!r} -> {new!r}", preserves=True)

    def rename_tensor(self, tensor: str, new: str) -> "Editor":
        """Rename one tensor; every reference (consumers, graph inputs/outputs, initializers) follows."""
        import onnx_ir as ir

        value = self.tensor(tensor)
        if new in self.values() and self.values()[new] is not value:
            raise UserInputError(f"cannot rename tensor {value.name!r} to {new!r}: a tensor with that name exists")
        if not new:
            raise UserInputError("a tensor name cannot be empty")
        self._start(True)
        old = value.name
        ir.convenience.rename_values(value, new)
        self._rename_in_segment(old, new)
        return self._record("rename_tensor", {"tensor": tensor, "new": new}, f"tensor {old!r} -> {new!r}",
                            preserves=True)

    def rename(self, old: str, new: str) -> "Editor":
        """Rename the tensor and/or the node called ``old`` (exact name)."""
        is_tensor = old in self.values()
        is_node = any(n.name == old for n in self.graph)
        if not is_tensor and not is_node:
            names = list(self.values()) + [n.name for n in self.graph if n.name]
            raise _not_found("tensor or node", old, names)
        if is_tensor:
            self.rename_tensor(old, new)
        if is_node:
            self.rename_node(old, new)
        return self

    # ------------------------------------------------------------ shapes and dtypes

    def set_shape(self, input: str, shape: str | Sequence[int | str | None]) -> "Editor":  # noqa: A002
        """Set a graph input's shape (ints fixed, names symbolic, ``?``/None unknown); all shapes re-inferred."""
        from onnxdeploy._build import to_shape

        value = self._graph_input(input)
        dims = parse_shape_text(shape)
        if value.shape is not None and len(value.shape) != len(dims):
            raise UserInputError(f"input {input!r} has rank {len(value.shape)} ({format_shape(value.shape)}); "
                                 f"the new shape {format_shape(to_shape(dims))} has rank {len(dims)}")
        self._start(False)
        old = format_shape(value.shape)
        value.shape = to_shape(dims)
        self._forget_shapes()
        self._reinfer(f"set_shape {input}")
        return self._record("set_shape", {"input": input, "shape": format_shape(value.shape)},
                            f"input {input!r}: {old} -> {format_shape(value.shape)}", preserves=False)

    def set_dims(self, dims: Mapping[str, int | str]) -> "Editor":
        """Give symbolic dims a fixed value (``{"batch": 1}``) or rename them, in every graph input."""
        import onnx_ir as ir

        known = sorted({d.value for v in self.graph.inputs if v.shape is not None for d in v.shape
                        if not isinstance(d, int) and d.value})
        for name in dims:
            if name not in known:
                raise _not_found("symbolic dim", name, known)
        self._start(False)
        for value in self.graph.inputs:
            if value.shape is None:
                continue
            new = [dims.get(d.value, d) if not isinstance(d, int) else d for d in value.shape]
            value.shape = ir.Shape([int(d) if isinstance(d, str) and d.isdigit() else d for d in new])
        self._forget_shapes()
        self._reinfer("set_dims")
        return self._record("set_dims", {"dims": dict(dims)},
                            "dims " + ", ".join(f"{k} -> {v}" for k, v in dims.items()), preserves=False)

    def _forget_shapes(self) -> None:
        """Drop inferred intermediate shapes (graph outputs keep theirs: inference corrects and notes them)."""
        for node in self.graph:
            if node.domain in STANDARD_DOMAINS:
                for v in node.outputs:
                    if not v.is_graph_output():
                        v.shape = None

    def _reinfer(self, what: str) -> None:
        try:
            self.notes.extend(infer_shapes(self.model, strict=True))
        except InvalidModelError as err:
            raise InvalidModelError(f"{what}: {err.message}", hint="the new shape does not fit the graph") from err

    def set_input_dtype(self, input: str, dtype: Any) -> "Editor":  # noqa: A002
        """Make a graph input take ``dtype``; a Cast back to the old dtype feeds its consumers."""
        import onnx_ir as ir

        value = self._graph_input(input)
        new = to_dtype(dtype)
        if value.dtype == new:
            raise UserInputError(f"input {input!r} is already {dtype_name(new)}")
        if value.dtype is None:
            raise UserInputError(f"input {input!r} has no declared dtype")
        self._start(False)
        old = value.dtype
        cast_out = ir.Value(name=self._fresh(f"{input}_cast_{dtype_name(old)}"), type=value.type,
                            shape=value.shape)
        value.replace_all_uses_with(cast_out, replace_graph_outputs=False)
        node = ir.Node("", "Cast", [value], attributes=[ir.AttrInt64("to", int(old))], outputs=[cast_out],
                       name=self._fresh(f"{input}_cast"))
        value.dtype = new
        self._place(node, [value])
        self._expected_dtypes[input] = new
        return self._record("set_input_dtype", {"input": input, "dtype": dtype_name(new)},
                            f"input {input!r}: {dtype_name(old)} -> {dtype_name(new)} (Cast {node.name!r})",
                            preserves=False)

    def set_output_dtype(self, output: str, dtype: Any) -> "Editor":
        """Make a graph output ``dtype`` by a Cast; the output keeps its name."""
        import onnx_ir as ir

        value = self._graph_output(output)
        new = to_dtype(dtype)
        self.ensure_types()
        if value.dtype == new:
            raise UserInputError(f"output {output!r} is already {dtype_name(new)}")
        if value.producer() is None or list(self.graph.outputs).count(value) > 1:
            raise UserInputError(f"output {output!r} is a graph input or listed twice; cannot cast it in place")
        self._start(False)
        cast_out = ir.Value(name=self._fresh(f"{output}_cast"), type=ir.TensorType(new), shape=value.shape)
        node = ir.Node("", "Cast", [value], attributes=[ir.AttrInt64("to", int(new))], outputs=[cast_out],
                       name=self._fresh(f"{output}_cast"))
        outputs = self.graph.outputs
        outputs[list(outputs).index(value)] = cast_out
        self._place(node, [value])
        value.name = self._fresh(f"{output}_before_cast")
        cast_out.name = output
        self._expected_dtypes[output] = new
        return self._record("set_output_dtype", {"output": output, "dtype": dtype_name(new)},
                            f"output {output!r} -> {dtype_name(new)} (Cast {node.name!r})", preserves=False)

    # ------------------------------------------------------------ outputs and extraction

    def expose(self, tensor: str) -> "Editor":
        """Make the tensor(s) ``tensor`` selects graph outputs."""
        targets = self.select_tensors(tensor)
        for value in targets:
            if value.is_graph_output():
                raise UserInputError(f"tensor {value.name!r} is already a graph output")
            if value.producer() is None:
                raise UserInputError(f"tensor {value.name!r} is a graph input or initializer, not a computed tensor")
        self._start(True)
        self.ensure_types()
        for value in targets:
            self.graph.outputs.append(value)
        return self._record("expose", {"tensor": tensor},
                            "exposed " + ", ".join(f"{v.name!r} {format_type(v)}" for v in targets), preserves=True)

    def remove_output(self, output: str) -> "Editor":
        """Remove a graph output (the nodes computing it stay until :meth:`cleanup`)."""
        value = self._graph_output(output)
        if len(self.graph.outputs) == 1:
            raise UserInputError(f"cannot remove {output!r}: it is the model's only output")
        self._start(True)
        self.graph.outputs.remove(value)
        return self._record("remove_output", {"output": output}, f"removed output {output!r}", preserves=True)

    def extract(self, inputs: Sequence[str], outputs: Sequence[str]) -> "Editor":
        """Keep only the subgraph between tensors ``inputs`` and ``outputs`` (a valid model of its own)."""
        import onnx_ir as ir

        if isinstance(inputs, str):
            inputs = [inputs]
        if isinstance(outputs, str):
            outputs = [outputs]
        if not outputs:
            raise UserInputError("extract needs at least one output tensor")
        in_values = [v for sel in inputs for v in self.select_tensors(sel)]
        out_values = [v for sel in outputs for v in self.select_tensors(sel)]
        self.ensure_types()
        untyped = [v.name for v in in_values if v.dtype is None]
        if untyped:
            raise UserInputError(f"extract: the dtype of {', '.join(untyped)} is unknown (shape inference failed)")
        added = _required_graph_inputs(self.graph, in_values, out_values)
        in_values += added
        self._start(True)
        try:
            graph = ir.convenience.extract(self.graph, in_values, out_values)
        except ValueError as err:
            raise UserInputError(f"extract: {err}",
                                 hint="every path to the outputs must start at the given inputs, "
                                      "graph inputs or initializers") from err
        graph.name = self.graph.name
        old = self.model
        self.model = ir.Model(graph, ir_version=old.ir_version, producer_name=old.producer_name,
                              producer_version=old.producer_version, domain=old.domain,
                              model_version=old.model_version, functions=list(old.functions.values()))
        for k, v in old.opset_imports.items():
            self.model.opset_imports[k] = v
        return self._record("extract", {"inputs": list(inputs), "outputs": list(outputs)},
                            f"extracted {len(graph)} nodes: {', '.join(v.name for v in graph.inputs)} -> "
                            f"{', '.join(v.name for v in graph.outputs)}" + (
                                f" (graph inputs it also needs: {', '.join(v.name for v in added)})" if added else ""),
                            preserves=True)

    # ------------------------------------------------------------ cleanup, sort, opset

    def cleanup(self) -> "Editor":
        """Remove dead nodes, unused initializers and inputs, duplicate constants; sort topologically."""
        from onnx_ir.passes import common

        self._start(True)
        before = (len(self.graph), len(self.graph.initializers), len(self.graph.inputs))
        inputs_before = list(self.graph.inputs)
        common.RemoveUnusedNodesPass()(self.model)
        common.DeduplicateInitializersPass()(self.model)
        common.CommonSubexpressionEliminationPass()(self.model)
        common.RemoveUnusedNodesPass()(self.model)
        unused = [v for v in inputs_before if not v.uses() and not v.is_graph_output()]
        for v in unused:
            self.graph.inputs.remove(v)
            if v.name in self.graph.initializers:
                self.graph.initializers.pop(v.name)
        common.RemoveUnusedOpsetsPass()(self.model)
        common.TopologicalSortPass()(self.model)
        after = (len(self.graph), len(self.graph.initializers), len(self.graph.inputs))
        summary = (f"nodes {before[0]} -> {after[0]}, initializers {before[1]} -> {after[1]}, "
                   f"inputs {before[2]} -> {after[2]}")
        if unused:
            summary += f" (removed unused {', '.join(repr(v.name) for v in unused)})"
        return self._record("cleanup", {}, summary, preserves=True)

    def toposort(self) -> "Editor":
        """Sort nodes topologically."""
        from onnx_ir.passes import common

        self._start(True)
        common.TopologicalSortPass()(self.model)
        return self._record("toposort", {}, f"sorted {len(self.graph)} nodes", preserves=True)

    def convert_opset(self, opset: int) -> "Editor":
        """Convert the default-domain opset with onnx's version converter; unconvertible nodes are named."""
        import onnx
        import onnx_ir as ir

        current = self._opset("")
        if not isinstance(opset, int) or opset < 1:
            raise UserInputError(f"opset must be a positive integer, got {opset!r}")
        if opset == current:
            raise UserInputError(f"the model already uses opset {opset}")
        latest = onnx.defs.onnx_opset_version()
        if opset > latest:
            raise UserInputError(f"opset {opset} is newer than this onnx supports ({latest})")
        self._start(True)
        holder: dict = {}

        def convert(proto):
            holder["proto"] = onnx.version_converter.convert_version(proto, opset)

        try:
            call_onnx(convert, self.model)
        except Exception as err:  # the converter raises RuntimeError/IndexError/ValidationError
            raise _conversion_error(self, current, opset, err) from err
        converted = ir.serde.deserialize_model(holder["proto"])
        originals = {name: v for name, v in self.graph.initializers.items()}
        keep_inputs = {v.name for v in self.graph.inputs}
        graph = converted.graph
        for value in list(graph.inputs):
            if value.name in originals and value.name not in keep_inputs:
                graph.inputs.remove(value)
            if value.name in originals:
                value.const_value = originals[value.name].const_value
                graph.register_initializer(value)
        for value in graph.inputs:  # initializers that are also inputs stay both
            if value.name in originals and value.const_value is None:
                value.const_value = originals[value.name].const_value
                graph.register_initializer(value)
        changed = [n for n in graph if n.domain in STANDARD_DOMAINS and _since(n, current) != _since(n, opset)]
        custom = sorted({f"{n.domain}::{n.op_type}" for n in graph if n.domain not in STANDARD_DOMAINS})
        self.model = converted
        summary = f"opset {current} -> {opset}; {len(changed)} node(s) changed version"
        if custom:
            summary += f"; not converted (custom domains): {', '.join(custom)}"
        return self._record("convert_opset", {"opset": opset}, summary, preserves=True)

    # ------------------------------------------------------------ validation, verification, saving

    def validate(self) -> "Editor":
        """Checker + strict shape inference; dtypes of graph outputs must agree with their producers."""
        run_checker(self.model)
        self.notes.extend(n for n in infer_shapes(self.model, strict=True) if n not in self.notes)
        self._inferred = True
        for value in self.graph.outputs:
            if value.dtype is None:
                raise InvalidModelError(f"graph output {value.name!r} has no known dtype after inference")
        boundary = {v.name: v for v in [*self.graph.inputs, *self.graph.outputs]}
        for name, dtype in self._expected_dtypes.items():
            value = boundary.get(name)
            if value is not None and value.dtype != dtype:
                raise InvalidModelError(f"{name!r} should be {dtype_name(dtype)} after the edits but is "
                                        f"{dtype_name(value.dtype)}", hint="a later edit changed it; check the order")
        return self

    def finish(self, *, validate: bool = True) -> EditReport:
        """Validate and close pending verification; raise :class:`OutputsDisagree` if numerics changed."""
        if validate:
            self.validate()
        self._close_segment()
        report = EditReport(list(self.steps), list(self.notes), list(self.verifications), validated=validate)
        failed = [v for v in self.verifications if v.status == "failed"]
        if failed:
            raise OutputsDisagree(f"edits that must preserve outputs changed them: {failed[0].summary()}",
                                  hint="check the edit, or pass --no-verify (verify=False) to write anyway")
        return report

    def save(self, path: str | os.PathLike, *, external_data: bool | None = None) -> EditReport:
        """Validate, verify, then write atomically (external data next to the output). The source stays intact."""
        from onnxdeploy import _io as io

        out = Path(path)
        if self.source is not None and out.exists() and os.path.samefile(out, self.source):
            raise UserInputError(f"{out} is the input model; refusing to overwrite it", hint="choose another -o")
        report = self.finish()
        io.save(self.model, out, external_data=external_data)
        report.output = str(out)
        return report

    def apply(self, steps: Sequence[Mapping[str, Any]]) -> "Editor":
        """Apply recipe steps (``[{"delete_node": {"node": "add"}}, ...]``); see :mod:`onnxdeploy._recipes`."""
        from onnxdeploy._recipes import apply_recipe

        apply_recipe(self, steps)
        return self

    def recipe(self) -> list[dict]:
        return [s.recipe_step() for s in self.steps]


def _conversion_error(editor: Editor, current: int, target: int, err: Exception):
    """A clear report of why onnx's version converter failed, naming the nodes it could not convert."""
    from onnxdeploy.errors import UnsupportedError

    text = re.sub(r"^.*?Assertion `false` failed:\s*", "", onnx_error_text(err))
    ops = {n.op_type for n in editor.graph}
    named = [op for op in ops if re.search(rf"\b{re.escape(op)}\b", str(err))]
    nodes = [n.name or n.op_type for n in editor.graph if n.op_type in named]
    detail = f"; nodes: {', '.join(repr(n) for n in nodes[:8])}" if nodes else ""
    return UnsupportedError(f"opset {current} -> {target}: the version converter failed ({text}){detail}",
                            hint="convert in smaller steps, or replace those nodes first (replace_node)")


def _snapshot(model: "ir.Model") -> "ir.Model":
    """A copy sharing tensors; graphs whose nodes are out of order (clone refuses them) go through a proto."""
    import onnx_ir as ir

    try:
        return model.clone()
    except Exception:  # onnx_ir raises RuntimeError/ValueError for a use before its definition
        return ir.serde.deserialize_model(ir.serde.serialize_model(model))


def _required_graph_inputs(graph: "ir.Graph", inputs: Sequence["ir.Value"],
                           outputs: Sequence["ir.Value"]) -> list["ir.Value"]:
    """Graph inputs (not initializers) reached walking back from ``outputs`` without crossing ``inputs``."""
    stop, seen, needed = set(inputs), set(), []
    graph_inputs = set(graph.inputs)
    stack = list(outputs)
    while stack:
        value = stack.pop()
        if value in seen or value in stop:
            continue
        seen.add(value)
        if value in graph_inputs and not value.is_initializer():
            needed.append(value)
        producer = value.producer()
        if producer is not None:
            stack.extend(v for v in producer.inputs if v is not None)
    order = {v: i for i, v in enumerate(graph.inputs)}
    return sorted(needed, key=order.get)


def _since(node: "ir.Node", opset: int) -> int | None:
    import onnx

    try:
        return onnx.defs.get_schema(node.op_type, opset, "").since_version
    except onnx.defs.SchemaError:
        return None


def _schema_attributes(op: str, domain: str, opset: int) -> set[str] | None:
    import onnx

    if domain not in STANDARD_DOMAINS:
        return None
    try:
        return set(onnx.defs.get_schema(op, opset, "").attributes)
    except onnx.defs.SchemaError:
        return None


def _same_type(a: "ir.Value", b: "ir.Value") -> bool:
    if a.dtype is None or b.dtype is None or a.dtype != b.dtype:
        return False
    if a.shape is None or b.shape is None:
        return a.shape is None and b.shape is None
    return len(a.shape) == len(b.shape) and all(
        (x == y) if isinstance(x, int) and isinstance(y, int) else (
            not isinstance(x, int) and not isinstance(y, int) and x.value == y.value)
        for x, y in zip(a.shape, b.shape))


# ---------------------------------------------------------------- numerics verification


def _verify(segment: _Segment, after: "ir.Model", *, atol: float, rtol: float, seed: int,
            feeds: Mapping[str, Any] | None = None) -> Verification:
    """Run the model before the segment and after it on the same inputs (:func:`onnxdeploy._verify.verify`, at two
    shapes when dims are symbolic) and compare the outputs. Edits change the interface on purpose, so only numbers
    are judged; an input of ``after`` that is a tensor of ``before`` is fed with that tensor's value."""
    from onnxdeploy._run import input_specs
    from onnxdeploy._verify import Inputs, onnxruntime_runner, verify

    before = segment.before
    to_before = lambda name: segment.names.get(name, name)  # noqa: E731
    try:
        after_inputs = [s.name for s in input_specs(after)]
        after_outputs = [v.name for v in after.graph.outputs]
        before_inputs = {v.name for v in before.graph.inputs}
        wanted = [to_before(n) for n in after_outputs]
        feeds_from_before = [n for n in after_inputs if to_before(n) not in before_inputs]
        probe = before.clone() if feeds_from_before or any(
            w not in {v.name for v in before.graph.outputs} for w in wanted) else before
        if probe is not before:
            values = Editor(probe, copy=False, verify=False).ensure_types().values()
            for name in [*wanted, *(to_before(n) for n in feeds_from_before)]:
                if name not in values:
                    return Verification(segment.steps, "skipped", reason=f"tensor {name!r} not in the original")
                if not values[name].is_graph_output():
                    probe.graph.outputs.append(values[name])
        run_before = _Memo(onnxruntime_runner(probe))
        run_after = onnxruntime_runner(after)

        def reference(given):
            out = run_before(given)
            return {n: out[to_before(n)] for n in after_outputs}

        def candidate(given):
            out = run_before(given)
            return run_after({n: (out[to_before(n)] if n in feeds_from_before else given[to_before(n)])
                              for n in after_inputs})

        result = verify(probe, after, Inputs(arrays=dict(feeds or {}), seed=seed), atol=atol, rtol=rtol,
                        reference_runner=reference, candidate_runner=candidate, interface="ignore",
                        label="before vs after")
    except OnnxDeployError as err:
        return Verification(segment.steps, "skipped", reason=err.message)
    return Verification(segment.steps, "passed" if result.passed else "failed", result)


class _Memo:
    """A runner that remembers its outputs per input set (reference and candidate both need them; the verifier runs
    the reference on every set before the candidate on any, so remembering only the last set would run it twice)."""

    def __init__(self, runner) -> None:
        self.runner = runner
        self.seen: dict[int, tuple[Any, Any]] = {}  # id(feeds) -> (feeds, outputs); feeds kept so ids stay unique

    def __call__(self, feeds):
        hit = self.seen.get(id(feeds))
        if hit is None or hit[0] is not feeds:
            hit = self.seen[id(feeds)] = (feeds, self.runner(feeds))
        return hit[1]


def edit(model: ModelLike, steps: Sequence[Mapping[str, Any]], *, output: str | os.PathLike | None = None,
         verify: bool = True, atol: float = 1e-4, rtol: float = 1e-3) -> tuple["ir.Model", EditReport]:
    """Apply recipe ``steps`` to ``model``; write it to ``output`` when given. Returns the model and report."""
    editor = Editor(model, verify=verify, atol=atol, rtol=rtol).apply(steps)
    report = editor.save(output) if output is not None else editor.finish()
    return editor.model, report
