"""``legalize(model, target)``: rewrite a model into what a target accepts, verified on onnxruntime.

Three steps, each only where the target needs it:

1. **Rules**: an operator the target lacks is replaced by an equivalent composition of basic operators
   (:data:`onnxdeploy._rules.RULES`, e.g. ``Asinh(x) -> Log(x + Sqrt(x*x + 1))``, ``Gelu -> 0.5*x*(1 + Erf(x/sqrt(2)))``), when the
   target has every operator the composition uses.
2. **Opset conversion** (``onnx.version_converter``) into the target's opset range.
3. **int64 -> int32** where the target lacks int64: int64 graph inputs become int32 (a Cast inside restores
   int64), int64 graph outputs get a Cast to int32, and int64 constants feeding inputs whose ONNX type constraint
   allows int32 (Gather indices, Slice starts/ends, ...) are narrowed when their values fit.

The result is verified against the original on onnxruntime (:func:`onnxdeploy._verify.verify`); whatever
cannot be fixed is listed with its nodes (``LegalizeReport.remaining``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

import numpy as np

from onnxdeploy.errors import InvalidModelError, OutputsDisagree, UserInputError
from onnxdeploy._rules import CONTRIB_DOMAIN, RULES, applicable_rule, apply_rule, rule_fits  # noqa: F401

if TYPE_CHECKING:
    import onnx
    import onnx_ir as ir

    from onnxdeploy._io import ModelLike
    from onnxdeploy._verify import Inputs
    from onnxdeploy.targets.base import Target


# ------------------------------------------------------------------------------------------------ report
@dataclass
class LegalizeReport:
    target: str
    output: str | None
    rules_applied: dict[str, int]
    opset_before: int
    opset_after: int
    int64_changes: list[str]
    remaining: list  # check Problems left after legalization
    verification: object | None  # numerics.Comparison
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.rules_applied or self.int64_changes or self.opset_before != self.opset_after)

    @property
    def legal(self) -> bool:
        return not [p for p in self.remaining if p.severity == "error"]

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "output": self.output,
            "changed": self.changed,
            "legal": self.legal,
            "rules_applied": self.rules_applied,
            "opset_before": self.opset_before,
            "opset_after": self.opset_after,
            "int64_changes": self.int64_changes,
            "remaining": [p.to_dict() for p in self.remaining],
            "verification": self.verification.to_dict() if self.verification is not None else None,
            "seconds": round(self.seconds, 4),
            "notes": self.notes,
        }


@dataclass
class LegalizeResult:
    model: "ir.Model"
    report: LegalizeReport

    def to_dict(self) -> dict:
        return self.report.to_dict()


# ------------------------------------------------------------------------------------------------ steps
def _apply_rules(model: "ir.Model", target: "Target") -> Counter:
    supported = target.supported_ops()
    applied: Counter = Counter()
    missing = None
    if supported is None and hasattr(target, "query") and target.available()[0]:
        from onnxdeploy._check import check

        missing = {p.what for p in check(model, target).problems if p.kind == "op"}
    opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))
    for graph in model.graphs():
        for node in list(graph):
            domain = "" if node.domain == "ai.onnx" else node.domain
            if domain not in ("", CONTRIB_DOMAIN):
                continue
            lacks = ((domain, node.op_type) not in supported) if supported is not None else (
                missing is not None and node.op_type in missing)
            rule = applicable_rule(node.op_type, target, domain) if lacks else None
            if rule is not None and rule_fits(node, rule, opset):
                apply_rule(graph, node, rule)
                applied[rule.key] += 1
    return applied


def _convert_opset(model: "ir.Model", to: int) -> "ir.Model":
    import onnx
    import onnx_ir as ir
    from onnx import version_converter

    proto = ir.serde.serialize_model(model)
    try:
        converted = version_converter.convert_version(proto, to)
    except Exception as err:  # noqa: BLE001 - the converter raises RuntimeError/ValueError/onnx errors
        raise InvalidModelError(f"cannot convert the model to opset {to}: {str(err).splitlines()[0]}",
                                hint="some operators have no adapter between these opsets") from err
    converted = onnx.shape_inference.infer_shapes(converted, strict_mode=False)
    return ir.serde.deserialize_model(converted)


def _narrow_int64(model: "ir.Model") -> list[str]:
    import onnx_ir as ir

    from onnxdeploy._check import default_opset, node_label, own_type_var, slot_allows_int32

    changes: list[str] = []
    graph = model.graph
    i64, i32 = ir.DataType.INT64, ir.DataType.INT32
    for idx, old in enumerate(list(graph.inputs)):
        if old.dtype != i64 or old.is_initializer():  # IR < 4: an initializer listed as an input keeps its value
            continue
        name = old.name
        if old.consumers() and all(c.op_type == "Cast" for c in old.consumers()):
            old.dtype = i32  # only Casts read it: they read int32 just as well
            changes.append(f"input {name}: int64 -> int32")
            continue
        old.name = f"{name}__int64"
        new = ir.Value(name=name, type=ir.TensorType(i32), shape=old.shape)
        cast = ir.node("Cast", [new], attributes={"to": i64}, name=f"{name}/legalized/Cast_to_int64")
        cast.outputs[0].name, cast.outputs[0].dtype, cast.outputs[0].shape = f"{name}_int64", i64, old.shape
        old.replace_all_uses_with(cast.outputs[0])
        graph.inputs[idx] = new
        graph.insert_before(graph.node(0), cast) if len(graph) else graph.append(cast)
        changes.append(f"input {name}: int64 -> int32 (Cast to int64 inside)")
    for idx, old in enumerate(list(graph.outputs)):
        if old.dtype != i64:
            continue
        name = old.name
        old.name = f"{name}__int64"
        cast = ir.node("Cast", [old], attributes={"to": i32}, name=f"{name}/legalized/Cast_to_int32")
        out = cast.outputs[0]
        out.name, out.dtype, out.shape = name, i32, old.shape
        graph.append(cast)
        graph.outputs[idx] = out
        changes.append(f"output {name}: int64 -> int32 (Cast)")
    opset = default_opset(model)
    narrowed: dict[str, ir.Value] = {}
    for i, node in enumerate(list(graph)):
        for j, v in enumerate(node.inputs):
            if v is None or v.dtype != i64 or v.is_graph_input() or not slot_allows_int32(node, j, opset):
                continue
            if not own_type_var(node, j, opset):
                continue
            tensor = ir.convenience.get_const_tensor(v)
            if tensor is None:
                continue
            arr = tensor.numpy()
            if arr.size and (arr.max() > np.iinfo(np.int32).max or arr.min() < np.iinfo(np.int32).min):
                continue
            if v.name not in narrowed:
                nv = ir.Value(name=f"{v.name}_int32", type=ir.TensorType(i32), shape=ir.Shape(arr.shape),
                              const_value=ir.tensor(arr.astype(np.int32), name=f"{v.name}_int32"))
                graph.register_initializer(nv)
                narrowed[v.name] = nv
            node.replace_input_with(j, narrowed[v.name])
            changes.append(f"{node_label(node, i)} input {j} ({v.name}): int64 constant -> int32")
    if narrowed:
        from onnx_ir.passes.common import RemoveUnusedNodesPass

        RemoveUnusedNodesPass()(model)
    graph.sort()
    return changes


# ------------------------------------------------------------------------------------------------ API
def legalize(
    model: "ModelLike",
    target: "str | Target",
    *,
    output: str | os.PathLike | None = None,
    verify: bool = True,
    opset: int | None = None,
    inputs: "Inputs | Mapping[str, np.ndarray] | None" = None,
    dims: Mapping[str, int] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    seed: int = 0,
    keep_partial: bool = False,
) -> LegalizeResult:
    """Rewrite a copy of ``model`` for ``target`` (rules, opset, int64) and verify it against the original.

    ``opset`` forces a target opset (default: the nearest one in the target's range when outside it). Raises
    :class:`OutputsDisagree` (nothing written) when the result differs from the original beyond tolerance.
    ``output`` is written only when the target can take the result (``report.legal``), or with ``keep_partial``
    (the verified, partly legalized model, to work on by hand).
    """
    from onnxdeploy import _io as io
    from onnxdeploy._check import check, default_opset, typed_model
    from onnxdeploy.targets.base import get_target

    start = time.perf_counter()
    t = get_target(target)
    original = io.as_proto(model, load_weights=True)
    from onnxdeploy._bounds import check_subgraph_depth

    check_subgraph_depth(original, what=str(model) if isinstance(model, (str, os.PathLike)) else "the model")
    m = typed_model(original)
    before = default_opset(m)
    applied = _apply_rules(m, t)
    if getattr(t, "needs_float_mask", False):
        from onnxdeploy._rules import MASK_RULE, rewrite_bool_masks

        masks = rewrite_bool_masks(m)
        if masks:
            applied[MASK_RULE] += masks
    if getattr(t, "needs_embed_gather", False):
        from onnxdeploy._rules import EMBED_RULE, rewrite_embedding_gathers

        if embeds := rewrite_embedding_gathers(m):
            applied[EMBED_RULE] += embeds
    notes: list[str] = []
    lo, hi = t.opsets
    to = opset if opset is not None else (hi if before > hi else lo if before < lo else before)
    if opset is not None and not lo <= opset <= hi:
        raise UserInputError(f"opset {opset} is outside {t.name}'s range {lo}-{hi}")
    if to != before:
        m = _convert_opset(m, to)
        notes.append(f"opset {before} -> {to} (onnx.version_converter)")
    int64_changes = _narrow_int64(m) if not t.has_int64 else []
    m = typed_model(m)
    remaining = check(m, t).problems
    verification = None
    if verify:
        verification = _verify(original, m, inputs=inputs, dims=dims, atol=atol, rtol=rtol, seed=seed)
        if not verification.passed:
            raise OutputsDisagree(f"legalized model differs from the original: {verification.summary()}",
                                  hint="report the rule that broke it; --no-verify writes it anyway")
    report = LegalizeReport(t.name, None, dict(applied), before, default_opset(m), int64_changes, remaining,
                            verification, 0.0, notes)
    if output is not None and (report.legal or keep_partial):
        io.save(m, output)
        report.output = str(output)
    report.seconds = time.perf_counter() - start
    return LegalizeResult(m, report)


def _verify(original, legal, *, inputs, dims, atol, rtol, seed):
    """The legalized model against the original on onnxruntime (:func:`onnxdeploy._verify.verify`), at two shapes
    when dims are symbolic; int64 inputs and outputs narrowed to int32 for the target are the one interface change
    allowed (fed and read back through a cast), any other dtype change fails."""
    from onnxdeploy._run import SessionError
    from onnxdeploy._verify import Inputs, onnxruntime_runner, verify

    try:  # the one session of the original: fails early, with the reason, if onnxruntime cannot load it
        run_original = onnxruntime_runner(original)
    except SessionError as err:
        raise UserInputError(f"cannot verify: onnxruntime cannot load the original model ({err.message})",
                             hint="pass --no-verify to legalize without the check") from err
    narrowed = _narrowed(original, legal)
    run_legal = onnxruntime_runner(legal)

    def run_narrowed(feeds):
        cast = {k: (v.astype(np.int32) if k in narrowed and v.dtype == np.int64 else v) for k, v in feeds.items()}
        return {k: (v.astype(np.int64) if k in narrowed else v) for k, v in run_legal(cast).items()}

    given = Inputs.merge(inputs, dims=dims, seed=seed)
    result = verify(original, legal, given, atol=atol, rtol=rtol, reference_runner=run_original,
                    candidate_runner=run_narrowed, interface={"dtypes"} if narrowed else "same",
                    label="legalized vs original")
    # only the narrowing itself is allowed: another dtype change of a narrowed model still fails
    asked = {f"dtypes: {kind} {name!r} is int32, was int64" for kind in ("input", "output") for name in narrowed}
    result.interface_changes += [c for c in result.allowed_changes if c not in asked]
    result.allowed_changes = [c for c in result.allowed_changes if c in asked]
    return result


def _narrowed(original: "onnx.ModelProto", legal: "ir.Model") -> set[str]:
    """The graph inputs and outputs that are int64 in ``original`` and int32 in ``legal`` (:func:`_narrow_int64`)."""
    import onnx
    import onnx_ir as ir

    int64 = {v.name for v in [*original.graph.input, *original.graph.output]
             if v.type.tensor_type.elem_type == onnx.TensorProto.INT64}
    return {v.name for v in [*legal.graph.inputs, *legal.graph.outputs]
            if v.name in int64 and v.dtype == ir.DataType.INT32}


def verify_rule(op: str, *, shape=(2, 3, 4), opset: int | None = None, atol: float = 1e-5, rtol: float = 1e-4,
                seed: int = 0, **attributes):
    """Build a one-node ``op`` model, apply its rule, and compare both on onnxruntime (for tests and docs)."""
    import onnx
    from onnx import TensorProto, defs, helper

    rule = RULES.get(op)
    if rule is None:
        raise UserInputError(f"no legalization rule for {op!r}", hint=f"rules: {', '.join(sorted(RULES))}")
    opset = opset or max(17, defs.get_schema(op).since_version)
    n_in = 2 if op in ("GreaterOrEqual", "LessOrEqual") else 1
    names = ["x", "y"][:n_in]
    out_type = TensorProto.BOOL if op in ("GreaterOrEqual", "LessOrEqual") else TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node(op, names, ["out"], name=op.lower(), **attributes)], f"{op}_rule",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(shape)) for n in names],
        [helper.make_tensor_value_info("out", out_type, list(shape))])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(proto)
    rng = np.random.default_rng(seed)
    feeds = {n: (rng.standard_normal(shape) * 3).astype(np.float32) for n in names}
    if op == "Acosh":
        feeds["x"] = np.abs(feeds["x"]) + 1.0
    if op == "Atanh":
        feeds["x"] = np.tanh(feeds["x"]).astype(np.float32) * 0.99
    import onnx_ir as ir

    m = ir.serde.deserialize_model(proto)
    apply_rule(m.graph, m.graph.node(0), rule)
    return [n.op_type for n in m.graph], _verify(proto, m, inputs=feeds, dims=None, atol=atol, rtol=rtol, seed=seed)
