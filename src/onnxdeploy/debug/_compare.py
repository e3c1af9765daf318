"""Model vs model: the verdict from both models as they run (real outputs, no extra outputs), and the
intermediate tensors, captured in separate runs with :func:`probe` and paired by :mod:`._pairing`, to localize a
divergence."""

from __future__ import annotations

import os
import time
from typing import Mapping, Sequence

import numpy as np

from onnxdeploy import _io as io
from onnxdeploy.debug._graph import main_values, unknown_name_error
from onnxdeploy.debug._pairing import base_dir_of, candidate_pairs, settle
from onnxdeploy.debug._probe import ALL, ProbeResult, Selection, probe
from onnxdeploy.debug._result import CompareResult, TensorMatch, Unmatched, map_inputs, model_label
from onnxdeploy.debug._torch import compare_torch
from onnxdeploy.errors import UserInputError
from onnxdeploy._numerics import Comparison
from onnxdeploy._run import Inputs
from onnxdeploy._torch_target import looks_like_target

def compare(
    a: io.ModelLike,
    b: io.ModelLike | None = None,
    *,
    tensors: Selection = None,
    outputs_only: bool = False,
    inputs: "Inputs | Mapping[str, np.ndarray] | None" = None,
    input_files: Mapping[str, str | os.PathLike] | None = None,
    npz: str | os.PathLike | None = None,
    dims: Mapping[str, int] | None = None,
    shapes: Mapping[str, Sequence] | None = None,
    seed: int = 0,
    providers: Sequence[str] | None = None,
    providers_b: Sequence[str] | None = None,
    optimization_level: str | None = None,
    optimization_level_b: str | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    check: bool = False,
) -> CompareResult:
    """Compare ``b`` to the reference ``a`` on the same inputs.

    The verdict (``result.passed``, ``result.verdict``) comes from the graph outputs of both models run as they are.
    Intermediate tensors (all matched ones, or A's ``tensors``; none with ``outputs_only``) are captured in separate
    runs and only localize: ``result.first_divergence`` is the first of them beyond tolerance when the verdict fails.

    ``a`` may be a PyTorch target (``pkg.mod:factory``, ``file.py:factory``) and ``b`` its ONNX export: then each
    module call's output is compared to the ONNX tensor the exporter attributes to it. Without ``b``, ``a`` is
    compared with itself on ``providers_b`` / ``optimization_level_b``. ``check=True`` raises
    :class:`OutputsDisagree` when the outputs differ beyond tolerance.

    ``inputs`` (an :class:`~onnxdeploy._run.Inputs`, or arrays by name) says what to feed; the older keywords
    ``input_files``, ``npz``, ``dims``, ``shapes``, ``seed`` still work and are folded into it.
    """
    given = Inputs.merge(inputs, files=input_files, npz=npz, dims=dims, shapes=shapes, seed=seed)
    if isinstance(a, str) and looks_like_target(a) and not os.path.exists(a):
        if b is None:
            raise UserInputError("comparing a PyTorch target needs an ONNX model as the second argument",
                                 hint=f"onnxdeploy compare {a} model.onnx")
        if tensors not in (None, ALL) or outputs_only or providers_b or optimization_level_b:
            raise UserInputError("PyTorch vs ONNX compares every mapped module; --tensor, --outputs-only, "
                                 "--provider-b and --opt-level-b apply to two ONNX models")
        result = compare_torch(a, b, inputs=given, providers=providers, atol=atol, rtol=rtol)
    else:
        result, _, _ = compare_onnx(
            a, b, tensors=tensors, outputs_only=outputs_only, inputs=given, providers=providers, providers_b=providers_b,
            optimization_level=optimization_level, optimization_level_b=optimization_level_b, atol=atol, rtol=rtol)
    if check:
        result.check()
    return result


def _final_verdict(a, b, feeds_a, feeds_b, *, providers, providers_b, optimization_level, optimization_level_b,
                   atol: float, rtol: float, label: str) -> tuple[Comparison, dict[str, np.ndarray]]:
    """Run both models unmodified (no extra outputs) and compare their graph outputs: this decides pass/fail.

    Outputs are paired by name, else by position when both have as many. Returns the comparison and A's outputs.
    (The single place to swap in the shared ``verify`` once it exists.)"""
    from onnxdeploy._run import create_session, run_session
    from onnxdeploy._run import Inputs
    from onnxdeploy._verify import verify

    session_a = create_session(a, providers=providers, optimization_level=optimization_level)
    session_b = create_session(b, providers=providers_b or providers,
                               optimization_level=optimization_level_b or optimization_level)
    outputs_a = [o.name for o in session_a.get_outputs()]
    outputs_b = [o.name for o in session_b.get_outputs()]
    names = {n: n for n in outputs_a if n in outputs_b}
    if len(names) < len(outputs_a) and len(outputs_a) == len(outputs_b):
        names = dict(zip(outputs_a, outputs_b))
    out_a: dict[str, np.ndarray] = {}

    def run_a(_feeds):
        out_a.update(run_session(session_a, feeds_a))
        return out_a

    def run_b(_feeds):
        out_b = run_session(session_b, feeds_b)
        return {name_a: out_b[name_b] for name_a, name_b in names.items()}

    verdict = verify(run_a, None, Inputs(arrays=feeds_a), atol=atol, rtol=rtol, specs_from=a,
                     candidate_runner=run_b, interface="ignore", label=label)
    if verdict.errors:
        raise UserInputError(f"{label}: {verdict.errors[0]}")
    comparison = verdict.comparisons[0]
    comparison.missing += [n for n in outputs_a if n not in names]
    return comparison, out_a


def compare_onnx(a, b, *, tensors=None, outputs_only=False, inputs: "Inputs | None" = None, providers=None,
                 providers_b=None, optimization_level=None, optimization_level_b=None, atol=1e-4,
                 rtol=1e-3) -> tuple[CompareResult, ProbeResult | None, ProbeResult | None]:
    """:func:`compare` for two ONNX models; also returns both probes (the reduce step reuses the arrays, and B's
    feeds as ``probe_b.inputs``)."""
    from onnxdeploy._run import input_specs, prepare_inputs

    start = time.perf_counter()
    if b is None:
        if not providers_b and not optimization_level_b:
            raise UserInputError("compare needs a second model, or a second provider or optimization level for the "
                                 "same model", hint="onnxdeploy compare a.onnx b.onnx, or "
                                 "onnxdeploy compare a.onnx --provider cpu --provider-b cuda")
        b = a
    label_a = model_label(a, "A")
    label_b = model_label(b, "B") if b is not a else f"{label_a} on {', '.join(providers_b or ['cpu'])}"
    model_a = io.as_proto(a)
    model_b = io.as_proto(b) if b is not a else model_a
    sites_a = main_values(model_a)
    wanted = None
    if tensors not in (None, ALL):
        wanted = [tensors] if isinstance(tensors, str) else list(tensors)
        for name in wanted:
            if name not in sites_a:
                raise unknown_name_error(name, [s for s, v in sites_a.items() if v.kind == "node"])
    candidates, unmatched = candidate_pairs(model_a, model_b, base_a=base_dir_of(a), base_b=base_dir_of(b))
    if wanted is not None:
        by_a = {c.a: c for c in candidates}
        for name in wanted:
            if name not in by_a:
                raise UserInputError(f"tensor {name!r} of {label_a} has no counterpart in {label_b}",
                                     hint="no tensor of the same name, node name, or op and position")
    if not candidates and not outputs_only:
        raise UserInputError(
            f"cannot match any tensor of {label_b} to {label_a}",
            hint="the models share no tensor names, node names, op sequence or graph outputs; are they the same "
                 "network?")

    feeds_a = prepare_inputs(model_a, inputs=inputs)  # the protos parsed above: no second read of either file
    feeds_b = feeds_a if b is a else map_inputs(feeds_a, input_specs(model_a), input_specs(model_b), label_a, label_b)
    verdict, _ = _final_verdict(a, b, feeds_a, feeds_b, providers=providers, providers_b=providers_b,
                                optimization_level=optimization_level, optimization_level_b=optimization_level_b,
                                atol=atol, rtol=rtol, label=f"{label_a} vs {label_b}")
    if outputs_only:
        matches = [TensorMatch(d.name, d.name, sites_a[d.name].node if d.name in sites_a else None,
                               sites_a[d.name].op if d.name in sites_a else None, "output", d)
                   for d in verdict.diffs]
        result = CompareResult(label_a, label_b, matches, atol, rtol, "onnx", [], time.perf_counter() - start,
                               feeds_a, verdict)
        return result, None, None

    # intermediates: both sides captured with every needed tensor exposed (separate runs; they only localize)
    names_a = [c.a for c in candidates]
    if wanted is not None:
        keep = set(wanted)
        candidates = [c for c in candidates if c.a in keep]
        unmatched = {}
    same_shape_pool = wanted is None  # value pairing looks among all of A's tensors only when all are captured
    probe_a = probe(a, tensors=list(dict.fromkeys([*(c.a for c in candidates), *(unmatched if same_shape_pool
                                                                                  else [])])),
                    inputs=feeds_a, providers=providers, optimization_level=optimization_level)
    probe_b = probe(b, tensors=list(dict.fromkeys(c.b for c in candidates)), inputs=feeds_b,
                    providers=providers_b if providers_b else providers,
                    optimization_level=optimization_level_b or optimization_level)
    order_a = [n for n, s in sites_a.items() if s.kind == "node"]
    settled = settle(candidates, unmatched, probe_a.tensors, probe_b.tensors, order_a, atol=atol, rtol=rtol)
    matches: list[TensorMatch] = []
    missing: list[Unmatched] = []
    for s in settled:
        if s.b is None or s.diff is None:
            missing.append(Unmatched(s.a, s.reason))
            continue
        site = sites_a[s.a]
        matches.append(TensorMatch(s.a, s.b, site.node, site.op, s.how, s.diff, s.note))
    seen = {m.name for m in matches} | {u.name for u in missing}
    if wanted is None:
        missing.extend(Unmatched(n, "not captured") for n in names_a if n not in seen)
    result = CompareResult(label_a, label_b, matches, atol, rtol, "onnx", missing, time.perf_counter() - start,
                           feeds_a, verdict)
    return result, probe_a, probe_b
