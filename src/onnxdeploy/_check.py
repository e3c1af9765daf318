"""``check(model, target)``: every operator, dtype and opset problem a target has with a model, with the nodes.

Operators are looked up in the target's table (:meth:`Target.supported_ops`); onnxruntime also checks each node's
input dtypes against its CPU kernels; OpenVINO is asked directly (frontend + ``query_model``). int64 is reported
only where a target lacks it and the value could be int32 (graph inputs/outputs, and inputs whose ONNX type
constraint allows int32); int64 that ONNX itself requires (shape inputs of Reshape, Expand, ...) is left alone.
Each problem names the ``legalize`` step that can fix it, when one exists.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from onnxdeploy.targets.base import get_target
from onnxdeploy.targets.base import CheckReport, Problem, Target, first_names, has_function_body

if TYPE_CHECKING:
    import onnx_ir as ir

    from onnxdeploy._io import ModelLike


def dtype_name(dtype) -> str:
    """``onnx_ir.DataType`` -> numpy-style name (float32, int64, ...)."""
    return {"FLOAT": "float32", "DOUBLE": "float64"}.get(dtype.name, dtype.name.lower())


def node_label(node: "ir.Node", index: int | None = None) -> str:
    return node.name or f"{node.op_type}#{index if index is not None else '?'}"


def typed_model(model: "ModelLike") -> "ir.Model":
    """An ``ir.Model`` copy with inferred value types (shape inference, non-strict)."""
    import onnx
    import onnx_ir as ir

    from onnxdeploy import _io as io

    proto = io.as_proto(model)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    except Exception:  # noqa: BLE001 - custom ops or broken shapes: check what we can
        proto = onnx.ModelProto.FromString(proto.SerializeToString())
    out = ir.serde.deserialize_model(proto)
    if isinstance(model, (str, os.PathLike)):
        from onnx_ir import external_data

        external_data.set_base_dir(out.graph, str(Path(model).parent))
    return out


def default_opset(model: "ir.Model") -> int:
    return model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))


def slot_allows_int32(node: "ir.Node", index: int, opset: int) -> bool | None:
    """Whether input ``index`` of ``node`` may be int32 by its ONNX schema (None: unknown op)."""
    from onnx import defs

    if node.domain not in ("", "ai.onnx"):
        return None
    try:
        schema = defs.get_schema(node.op_type, opset, "")
    except Exception:  # noqa: BLE001
        return None
    formals = list(schema.inputs)
    if not formals:
        return None
    formal = formals[min(index, len(formals) - 1)]
    if formal.type_str.startswith("tensor("):
        return formal.type_str == "tensor(int32)"
    for tc in schema.type_constraints:
        if tc.type_param_str == formal.type_str:
            return "tensor(int32)" in tc.allowed_type_strs
    return None


def own_type_var(node: "ir.Node", index: int, opset: int) -> bool:
    """True when input ``index`` has a type variable no other input or output of the node shares."""
    from onnx import defs

    schema = defs.get_schema(node.op_type, opset, "")
    formals = list(schema.inputs)
    mine = formals[min(index, len(formals) - 1)].type_str
    others = [f.type_str for k, f in enumerate(formals) if k != min(index, len(formals) - 1)]
    others += [f.type_str for f in schema.outputs]
    return mine not in others


def _narrowable_slot(node: "ir.Node", index: int, opset: int) -> bool:
    """Whether ``legalize`` can narrow a constant at this input on its own (the slot has its own type variable)."""
    try:
        return own_type_var(node, index, opset)
    except Exception:  # noqa: BLE001 - no schema
        return False


def int64_uses(model: "ir.Model") -> dict[str, list[str]]:
    """int64 values that could be int32, by place: graph inputs, outputs, constants and computed values."""
    import onnx_ir as ir

    opset = default_opset(model)
    found: dict[str, list[str]] = defaultdict(list)
    for v in model.graph.inputs:
        if v.dtype == ir.DataType.INT64 and not v.is_initializer():  # IR < 4 lists initializers as inputs
            found["graph input"].append(v.name)
    for v in model.graph.outputs:
        if v.dtype == ir.DataType.INT64:
            found["graph output"].append(v.name)
    for i, node in enumerate(model.graph):
        for j, v in enumerate(node.inputs):
            if v is None or v.dtype != ir.DataType.INT64 or v.is_graph_input() or node.op_type == "Cast":
                continue  # a Cast is how an engine narrows int64 it must produce (ArgMax, Shape, ...)
            if slot_allows_int32(node, j, opset):
                const = v.const_value is not None or (v.producer() is not None and v.producer().op_type == "Constant")
                if const and not _narrowable_slot(node, j, opset):
                    const = False  # shares its type with other int64 values: legalize cannot narrow it alone
                found["constant" if const else "computed"].append(f"{node_label(node, i)}[{j}]={v.name}")
    return dict(found)


def check(model: "ModelLike", target: str | Target = "onnxruntime", *, use_engine: bool = True) -> CheckReport:
    """Every op, dtype and opset problem of ``model`` on ``target``; never modifies the model."""
    from onnxdeploy._rules import applicable_rule

    t = get_target(target)
    m = typed_model(model)
    label = str(model) if isinstance(model, (str, os.PathLike)) else (m.graph.name or "model")
    opset = default_opset(m)
    problems: list[Problem] = []
    notes: list[str] = []
    lo, hi = t.opsets
    if not lo <= opset <= hi:
        to = hi if opset > hi else lo
        problems.append(Problem("opset", str(opset), [], f"{t.name} reads opsets {lo}-{hi}; the model uses {opset}",
                                fix=f"legalize: convert to opset {to}"))

    supported = t.supported_ops()
    by_op: dict[tuple[str, str], list[str]] = defaultdict(list)
    dtype_issues: dict[tuple[str, str], list[str]] = defaultdict(list)
    upcast: dict[str, list[str]] = defaultdict(list)
    count = 0
    for graph in m.graphs():
        for i, node in enumerate(graph):
            count += 1
            domain = "" if node.domain == "ai.onnx" else node.domain
            if (supported is not None and (domain, node.op_type) not in supported
                    and not (getattr(t, "expands_functions", False) and has_function_body(node.op_type, opset, domain))):
                by_op[(domain, node.op_type)].append(node_label(node, i))
                continue
            node_opset = opset if domain == "" else m.opset_imports.get(domain, 1)
            reason = t.op_dtype_problem(node, node_opset)
            if reason:
                dtype_issues[(node.op_type, reason)].append(node_label(node, i))
            elif getattr(t, "runs_upcast", None) and t.runs_upcast(node, node_opset):
                upcast[node.op_type].append(node_label(node, i))
    for (domain, op), nodes in sorted(by_op.items()):
        what = f"{domain}::{op}" if domain else op
        rule = applicable_rule(op, t, domain)
        problems.append(Problem("op", what, first_names(nodes), f"{t.name} has no {what} operator ({len(nodes)} node"
                                f"{'s' if len(nodes) != 1 else ''})", fix=f"legalize: {rule.describe}" if rule else None))
    for (op, reason), nodes in sorted(dtype_issues.items()):
        problems.append(Problem("dtype", op, first_names(nodes), reason))
    for op, nodes in sorted(upcast.items()):
        problems.append(Problem("dtype", op, first_names(nodes),
                                f"no float16 kernel: {t.name} inserts Casts and computes these {len(nodes)} node(s) "
                                "in float32 (runs, but slower)", severity="warning"))

    if use_engine and hasattr(t, "query") and t.available()[0]:
        problems.extend(_engine_problems(t, model, m))

    problems.extend(_dtype_problems(t, m))
    if getattr(t, "needs_float_mask", False):
        from onnxdeploy._rules import MASK_RULE_DESCRIBE, bool_mask_wheres

        wheres = [node_label(n) for g in m.graphs() for n in bool_mask_wheres(g)]
        if wheres:
            problems.append(Problem("dtype", "bool attention mask", first_names(wheres),
                                    f"{t.name} has no bool tensors: {len(wheres)} Where node(s) select with a "
                                    "boolean mask", fix=f"legalize: {MASK_RULE_DESCRIBE}"))
            for p in problems:  # the bool values are (usually all) the mask's: the same rule removes them
                if p.kind == "dtype" and p.what == "bool" and p.fix is None:
                    p.fix = "legalize: the attention-mask rule (bool mask logic -> float 0/1 arithmetic)"
    if getattr(t, "needs_embed_gather", False):
        from onnxdeploy._rules import EMBED_RULE_DESCRIBE, embedding_gathers

        gathers = [node_label(n) for n in embedding_gathers(m.graph)]
        if gathers:
            problems.append(Problem("op", "Gather", first_names(gathers),
                                    f"{t.name} has no Gather layer: {len(gathers)} embedding lookup(s) stay Gather "
                                    "unless written without the axis attribute", fix=f"legalize: {EMBED_RULE_DESCRIBE}"))
    if not t.has_int64:
        uses = int64_uses(m)
        for place, names in uses.items():
            fixable = place != "computed"
            if fixable:
                problems.append(Problem("dtype", "int64", first_names(names),
                                        f"{t.name} has no int64: {len(names)} int64 {place} value(s)",
                                        fix="legalize: int64 -> int32"))
            else:  # shape arithmetic and the like: the engine's converter narrows these itself
                problems.append(Problem("dtype", "int64", first_names(names),
                                        f"{len(names)} int64 computed value(s) (shape arithmetic, indices): {t.name}"
                                        " narrows them to int32 itself, which is exact below 2**31",
                                        severity="warning"))
    ok, why = t.available()
    if not ok:
        notes.append(why)
    return CheckReport(t.name, label, opset, problems, notes, count, ok, why)


def _dtype_problems(t: Target, m: "ir.Model") -> list[Problem]:
    seen: dict[str, list[str]] = defaultdict(list)
    for graph in m.graphs():
        for v in list(graph.inputs) + list(graph.initializers.values()):
            if v.dtype is not None:
                seen[dtype_name(v.dtype)].append(v.name)
        for i, node in enumerate(graph):
            for v in node.outputs:
                if v.dtype is not None:
                    seen[dtype_name(v.dtype)].append(node_label(node, i))
    out = []
    for dtype, names in sorted(seen.items()):
        if dtype in t.dtypes or dtype == "int64":  # int64 is judged by int64_uses
            continue
        out.append(Problem("dtype", dtype, first_names(sorted(set(names))),
                           f"{t.name} does not compute in {dtype} ({len(set(names))} values)"))
    return out


def _engine_problems(t: Target, model: "ModelLike", m: "ir.Model") -> list[Problem]:
    from onnxdeploy import _io as io

    with tempfile.TemporaryDirectory(prefix="onnxdeploy-check-") as tmp:
        path = Path(model) if isinstance(model, (str, os.PathLike)) else io.save(m, Path(tmp) / "model.onnx")
        try:
            missing, refused = t.query(path)
        except Exception as err:  # noqa: BLE001 - the engine's own failure is itself a finding
            text = (str(err).strip().splitlines() or [type(err).__name__])[0]
            nodes = [text.split(" on node ")[1].split()[0]] if " on node " in text else []
            return [Problem("engine", t.name, nodes, text if text.lower().startswith(t.name.lower())
                            else f"{t.name} could not read the model: {text}")]
    out = []
    from onnxdeploy._rules import applicable_rule

    by_output = {v.name: node_label(n, i) for i, n in enumerate(m.graph) for v in n.outputs}
    for op, nodes in sorted(missing.items()):
        rule = applicable_rule(op, t)
        nodes = [by_output.get(n, n) for n in nodes]  # OpenVINO names a node after its first output
        out.append(Problem("op", op, first_names(nodes), f"{t.name}'s ONNX frontend cannot convert {op}",
                           fix=f"legalize: {rule.describe}" if rule else None))
    if refused:
        out.append(Problem("op", "CPU plugin", first_names(refused), f"the {t.name} CPU plugin refuses these ops"))
    warning = getattr(t, "query_warning", None)
    if warning:
        nodes = [warning.split(" on node ")[1].split()[0]] if " on node " in warning else []
        out.append(Problem("engine", t.name, nodes, warning, severity="warning"))
    return out
