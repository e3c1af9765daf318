"""``deploy(source, target=..., output_dir=...)``: PyTorch or ONNX -> verified artefact for a target, with a report.

The pipeline is data: :data:`PIPELINE`, a list of step objects (export, check, optimize, legalize, quantize, convert,
benchmark) run in order over one :class:`DeployContext`; each returns a :class:`StepResult`. Any step but export can
be skipped by name (``skip={"optimize"}``, ``deploy --skip optimize``).

After every step that writes a model, the artefact is judged against the reference (the first ONNX model, itself
checked against PyTorch by ``export``) with :class:`onnxdeploy._verify.Verifier`: outputs at two shapes when dims are
symbolic, and its declared interface (input/output names, dtypes, which dims are symbolic). A step whose artefact
changed the interface fails, unless the change was asked for (``fix_dims=True`` for dims, a target without int64 for
int64 -> int32). ``dims`` are sizes for verification and benchmarking only; they stay symbolic unless ``fix_dims``.
Each artefact is written to the output folder as it is produced, so a failing step stops the pipeline with a clear
message and leaves the earlier artefacts, ``deploy.json`` and ``report.html`` behind.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from onnxdeploy.errors import OnnxDeployError, UnsupportedError, UserInputError
from onnxdeploy._suggest import close_names

EXAMPLE_NAME = "built-in example (conv_bn_silu)"
EXAMPLE_DYNAMIC = {"input": {0: "batch", 2: "height", 3: "width"}}
EXAMPLE_BENCH_DIMS = {"batch": 1, "height": 64, "width": 64}


class DeployStepFailed(OnnxDeployError):
    """A deploy step failed; the artefacts of the earlier steps are kept. ``report`` is the :class:`DeployReport`."""

    report: "DeployReport | None" = None


class StepUnavailable(Exception):
    """The module a step needs cannot be imported."""


# ---------------------------------------------------------------- results


@dataclass
class StepResult:
    """What one step did: status (passed, failed, skipped, unavailable), its artefact and its verification."""

    name: str
    status: str = "passed"
    seconds: float = 0.0
    message: str = ""
    artifact: str | None = None
    verification: Any = None  # onnxdeploy._verify.Verification
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @property
    def interface_changes(self) -> list[str]:
        return list(getattr(self.verification, "interface_changes", None) or [])

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 4),
            "message": self.message,
            "artifact": self.artifact,
            "verification": self.verification.to_dict() if self.verification is not None else None,
            "interface_changes": self.interface_changes,
            "notes": self.notes,
            "details": self.details,
        }


@dataclass
class DeployReport:
    source: str
    target: str
    output_dir: str
    steps: list[StepResult] = field(default_factory=list)
    latency: list[dict] = field(default_factory=list)
    ops_before: dict[str, int] = field(default_factory=dict)
    ops_after: dict[str, int] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    inputs: dict[str, list] = field(default_factory=dict)  # the declared inputs of the reference (symbolic dims named)
    bench_inputs: dict[str, list[int]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    report_html: str | None = None
    final_artifact: str | None = None
    generation: dict | None = None  # a decoder's greedy generation per model (tokens/s, parity per step)

    @property
    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps if s.status == "failed"), None)

    @property
    def passed(self) -> bool:
        return self.failed_step is None and all(s.verification is None or s.verification.passed for s in self.steps)

    @property
    def headline(self) -> str:
        """One line for the top of every rendering: passed, or the failed step and why (interface first)."""
        failed = self.failed_step
        if failed is None:
            verified = [s.name for s in self.steps if s.verification is not None and s.name != "export"]
            torch = any(s.name == "export" and s.verification is not None for s in self.steps)
            return ("passed: " + ("export verified against PyTorch; " if torch else "")
                    + f"{', '.join(verified) or 'no step'} verified against the exported model, interface included")
        if failed.interface_changes:
            return (f"FAILED at step {failed.name}: the artefact's interface changed: "
                    + "; ".join(failed.interface_changes))
        return f"FAILED at step {failed.name}: {failed.message}"

    def to_dict(self) -> dict:
        failed = self.failed_step
        return {
            "source": self.source,
            "target": self.target,
            "output_dir": self.output_dir,
            "passed": self.passed,
            "headline": self.headline,
            "failed_step": failed.name if failed else None,
            "interface_changes": failed.interface_changes if failed else [],
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "final_artifact": self.final_artifact,
            "report_html": self.report_html,
            "inputs": self.inputs,
            "bench_inputs": self.bench_inputs,
            "steps": [s.to_dict() for s in self.steps],
            "latency": self.latency,
            "ops_before": self.ops_before,
            "ops_after": self.ops_after,
            "changes": self.changes,
            "generation": self.generation,
        }


# ---------------------------------------------------------------- context


@dataclass
class DeployContext:
    """Everything the steps share: options, the reference, the current model, the verifier and the report."""

    kind: str  # "torch" or "onnx"
    loaded: Any  # TorchTarget, or a path / ModelProto / ir.Model
    target: Any  # onnxdeploy.targets.base.Target
    out: Path
    report: DeployReport
    quantize: str | None = None
    dims: dict[str, int] = field(default_factory=dict)
    bench_dims: dict[str, int] = field(default_factory=dict)
    fix_dims: bool = False
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)
    input_names: list[str] | None = None
    output_names: list[str] | None = None
    atol: float = 1e-4
    rtol: float = 1e-3
    seed: int = 0
    bench_seconds: float = 1.0
    given: Any = None  # onnxdeploy._verify.Inputs: tensors the user gave (files, .npz, test_data_set), shapes
    reference: Path | None = None  # 01-model.onnx
    current: Path | None = None  # the latest ONNX model
    artifact: str | None = None  # the target engine's artefact, once converted
    verifier: Any = None  # onnxdeploy._verify.Verifier over the reference
    allowed: set[str] = field(default_factory=set)  # interface change kinds asked for ("dims", "dtypes")
    candidates: list[tuple[str, str, str]] = field(default_factory=list)  # (label, path, engine) to benchmark
    runners: dict[tuple[str, str], Callable] = field(default_factory=dict)  # one session / compiled model per artefact
    precision: str = "fp32"  # the artefact's precision, or "auto" (onnxdeploy._precision picks by measurement)
    precision_options: dict = field(default_factory=dict)  # targets ("auto"), calibration, min_cosine, max_top1_drop
    task: str | None = None  # "text-generation": a decoder LM with its KV cache (export, optimize, quantize, generate)
    max_new_tokens: int = 32  # a decoder's greedy generation in the benchmark step

    def inputs(self, dims: Mapping[str, int]):
        """The one input description of this deploy: what the user gave, at ``dims``, with this seed."""
        from onnxdeploy._verify import Inputs

        given = self.given if self.given is not None else Inputs()
        return Inputs(given.files, given.npz, given.arrays, {**given.dims, **dims}, given.shapes, self.seed)

    def verifier_for(self, *, quantized: bool = False, precision: str | None = None):
        """The verifier over the reference; int8 candidates get a looser one (reference runs cached per verifier),
        bf16/fp16 artefacts (``precision``) their precision's metric."""
        from onnxdeploy._verify import Verifier

        loose = quantized or self.quantize is not None and any(n == "quantized" for n, _, _ in self.candidates)
        key = "int8" if loose or precision == "int8" else precision or "fp32"
        cache = self.__dict__.setdefault("_verifiers", {})
        if key not in cache:
            from onnxdeploy._numerics import Tolerance

            # int8 candidates are judged by the int8 metric (cosine, relative L2, top-1), not an fp32 atol
            tolerance = Tolerance(precision=key, atol=self.atol, rtol=self.rtol)
            cache[key] = Verifier(str(self.reference), self.inputs(self.dims), tolerance=tolerance)
        verifier = cache[key]
        verifier.interface = set(self.allowed) or "same"
        return verifier

    def runner(self, path, engine: str = "onnxruntime") -> Callable[[Mapping[str, np.ndarray]], dict]:
        """The runner over ``path`` on ``engine``, feeds cast to its declared dtypes; loaded (compiled) once, so the
        step that verifies an artefact and the benchmark that times it share one session."""
        key = (str(path), engine)
        if key not in self.runners:
            self.runners[key] = casting_runner(engine_runner(str(path), engine), path)
        return self.runners[key]

    def verify_onnx(self, path: Path, label: str, *, quantized: bool = False):
        """Judge an ONNX artefact: interface and outputs against the reference, on onnxruntime."""
        verifier = self.verifier_for(quantized=quantized)
        return verifier.check(str(path), label=label, runner=self.runner(path))

    def advance(self, path: Path, label: str, *, bench: bool = True) -> None:
        """``path`` is the current model now; ``bench``: time it too (False when it is the previous model unchanged)."""
        self.current = path
        self.report.final_artifact = str(path)
        if bench:
            self.candidates.append((label, str(path), "onnxruntime"))


# ---------------------------------------------------------------- runners and interfaces


def onnx_runner(path) -> Callable[[Mapping[str, np.ndarray]], dict]:
    """A single-threaded onnxruntime session over ``path`` with onnxruntime's default graph optimizations: the model
    as a user runs it, verified and timed on the same session (:meth:`DeployContext.runner`)."""
    from onnxdeploy._run import create_session, run_session

    session = create_session(str(path), threads=1)
    return lambda feeds: run_session(session, feeds)


def casting_runner(run: Callable, path) -> Callable[[Mapping[str, np.ndarray]], dict]:
    """``run`` with feeds cast to the dtypes ``path`` declares (legalize may narrow int64 inputs to int32)."""
    from onnxdeploy._run import input_specs

    dtypes = {s.name: np.dtype(s.dtype) for s in input_specs(str(path))} if str(path).endswith(".onnx") else {}

    def cast(feeds):
        return run({k: (v.astype(dtypes[k]) if k in dtypes and v.dtype != dtypes[k] else v) for k, v in feeds.items()})

    return cast


def engine_runner(path: str, engine: str) -> Callable[[Mapping[str, np.ndarray]], dict]:
    """A runner over a converted artefact that loads (compiles) it once: for verification and timing alike."""
    if engine == "triton":  # a Triton repository folder: the model file inside, on its own engine
        from onnxdeploy.targets.triton import repository_model

        inner_path, inner_engine = repository_model(path)
        return engine_runner(str(inner_path), inner_engine)
    if engine == "openvino":
        import openvino as ov

        from onnxdeploy.targets.openvino import compile_artifact, compiled_runner

        compiled = compile_artifact(path, threads=1)  # with the compile config the IR was built with (f32 by default)
        return compiled_runner(compiled)  # one infer request, reused
    if engine == "onnxruntime":
        return onnx_runner(path)
    if engine == "ort-mobile":  # an .ort flatbuffer: onnxruntime reads it, onnx cannot
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.log_severity_level = 1, 3
        session = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        return lambda feeds: dict(zip([o.name for o in session.get_outputs()], session.run(None, dict(feeds))))
    from onnxdeploy.targets import run_artifact

    return lambda feeds: run_artifact(path, feeds, engine)


def op_histogram(model) -> dict[str, int]:
    from onnxdeploy import _io as io

    proto = io.as_proto(model)
    return dict(sorted(Counter(n.op_type for n in proto.graph.node).items()))


def _describe_changes(before: Mapping[str, int], after: Mapping[str, int]) -> list[str]:
    return [f"{op}: {before.get(op, 0)} -> {after.get(op, 0)}" for op in sorted(set(before) | set(after))
            if before.get(op, 0) != after.get(op, 0)]


def _diff_text(a_path: Path, b_path: Path, ops_a: Mapping[str, int], ops_b: Mapping[str, int]) -> list[str]:
    """What changed between two models (their op counts given): ``onnxdeploy._diff`` when available, else op counts."""
    counts = _describe_changes(ops_a, ops_b)
    try:
        from onnxdeploy._diff import diff as model_diff
    except ImportError:
        return counts
    try:
        result = model_diff(str(a_path), str(b_path), compare_values=False)
    except Exception as err:  # noqa: BLE001 - the diff is garnish in the report, never a reason to fail
        return counts + [f"(onnxdeploy._diff failed: {err})"]
    lines = [f"summary: {result.summary()}"] + counts
    for c in result.changes[:150]:
        detail = f" ({c.before} -> {c.after})" if c.before or c.after else ""
        lines.append(f"{c.section} {c.kind}: {c.name}{detail}")
    if len(result.changes) > 150:
        lines.append(f"... {len(result.changes) - 150} more changes")
    return lines


def _import(step: str, module: str, name: str):
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise StepUnavailable(f"step {step} unavailable: {module}.{name} cannot be imported ({err})") from err


# ---------------------------------------------------------------- steps


class Step:
    """One pipeline step: ``name`` (what ``--skip`` takes), a one-line ``description``, ``run(ctx) -> StepResult``."""

    name = ""
    description = ""
    skippable = True

    def run(self, ctx: DeployContext) -> StepResult:  # pragma: no cover - interface
        raise NotImplementedError


class Export(Step):
    name, description, skippable = "export", "PyTorch -> ONNX (verified against PyTorch); an ONNX source is copied", False

    def run(self, ctx: DeployContext) -> StepResult:
        from onnxdeploy import _io as io
        from onnxdeploy._run import input_specs
        from onnxdeploy._verify import Verification

        path = ctx.out / "01-model.onnx"
        if ctx.kind == "torch":
            export = _import("export", "onnxdeploy._export", "export")
            tt = ctx.loaded
            if ctx.task:  # a decoder LM: its own inputs, names and dims (the KV-cache convention)
                rep = export(tt.module, path=path, task=ctx.task, atol=ctx.atol, rtol=ctx.rtol, seed=ctx.seed)
            else:
                rep = export(tt.module, tt.example_inputs if tt.example_kwargs is None else tt.example_kwargs, path,
                             input_names=ctx.input_names, output_names=ctx.output_names, dynamic=ctx.dynamic or None,
                             atol=ctx.atol, rtol=ctx.rtol)
            kept = ("KV cache (prefill and decode step)" if ctx.task else "fixed shapes (no --dynamic)"
                    if not ctx.dynamic else "dynamic dims " + "; ".join(
                        f"{k}: {', '.join(f'{i}={n}' for i, n in v.items())}" for k, v in ctx.dynamic.items()))
            res = StepResult(self.name, artifact=str(path), details=rep.to_dict(),
                             message=f"exported with {rep.exporter} (opset {rep.opset}), {kept}, verified against "
                                     f"PyTorch at {len(rep.parity)} shape(s)")
            # export already failed if a dim named dynamic came out static or PyTorch and onnxruntime disagree;
            # its parity per shape is the step's verdict
            res.verification = Verification("ONNX vs PyTorch", list(rep.parity), metric=f"atol {ctx.atol:g}, rtol "
                                            f"{ctx.rtol:g}", shapes=[c.label for c in rep.parity])
        else:
            io.save(io.as_model(ctx.loaded), path)
            res = StepResult(self.name, "skipped", artifact=str(path), message="source is ONNX: copied, not exported")
        ctx.reference = path
        ctx.report.inputs = {s.name: list(s.shape or []) for s in input_specs(str(path))}
        ctx.report.ops_before = op_histogram(path)
        ctx.advance(path, "reference")
        return res


class Check(Step):
    name, description = "check", "every op, dtype and opset problem of the model on the target"

    def run(self, ctx: DeployContext) -> StepResult:
        from onnxdeploy._check import check

        rep = check(ctx.current, ctx.target)
        return StepResult(self.name, message=rep.summary(), details=rep.to_dict())


class Optimize(Step):
    name, description = "optimize", "fold, fuse and clean up (onnxdeploy optimize)"

    def run(self, ctx: DeployContext) -> StepResult:
        from onnxdeploy import _io as io

        path = ctx.out / "02-optimized.onnx"
        if ctx.task:  # a decoder: onnxruntime's contrib-op fusions, verified at a prefill and a decode step
            auto = "decoder: optimize --preset decoder (onnxruntime attention/normalization fusions)"
            result = _import("optimize", "onnxdeploy._decoder_optimize", "optimize_decoder")(
                str(ctx.current), seed=ctx.seed)
        else:
            opt = _import("optimize", "onnxdeploy._optimize", "optimize")
            auto = _auto_fix_dims(ctx)
            given = ctx.inputs(ctx.dims)
            result = opt(str(ctx.current), dims=ctx.dims or None, fix_dims=ctx.fix_dims, verify=True, atol=ctx.atol,
                         rtol=ctx.rtol, seed=ctx.seed, inputs=given.feeds(str(ctx.current)) if given.given else None)
        io.save(result.model, path)
        before, after = result.report.before, result.report.after
        res = StepResult(self.name, artifact=str(path), message=f"{before.nodes} -> {after.nodes} nodes",
                         notes=([auto] if auto else []) + list(result.report.notes), details=result.report.to_dict())
        res.verification = ctx.verify_onnx(path, "optimized vs reference")
        ctx.advance(path, "optimized")
        return res


def _auto_fix_dims(ctx: DeployContext) -> str | None:
    """A target that needs static shapes (``needs_static_dims``: ncnn's pnnx leaves shape arithmetic over symbolic
    dims unlowered) gets the sizes the user gave (``--dim``, or ``--shape`` of inputs with symbolic dims) fixed, as
    ``--fix-dims`` would; returns the note saying so (None when nothing was fixed)."""
    if ctx.fix_dims or not getattr(ctx.target, "needs_static_dims", False):
        return None
    dims = dict(ctx.dims)
    if ctx.given is not None and ctx.given.shapes:
        from onnxdeploy._run import input_specs

        shapes = ctx.given.shape_dims()
        for spec in input_specs(str(ctx.current)):
            for d, n in zip(spec.shape, shapes.get(spec.name, [])):
                if isinstance(d, str) and isinstance(n, int):
                    dims.setdefault(d, n)
    if not dims:
        return None
    ctx.dims, ctx.fix_dims = dims, True
    ctx.bench_dims = {**ctx.bench_dims, **dims}
    ctx.__dict__.pop("_verifiers", None)  # verify at the fixed sizes from here on
    ctx.allowed.add("dims")
    return (f"{ctx.target.name} needs static shapes (its converter cannot lower shape arithmetic over symbolic "
            f"dims): fixed {', '.join(f'{k}={v}' for k, v in dims.items())} from --dim/--shape, as --fix-dims does")


class Legalize(Step):
    name, description = "legalize", "rewrite what the target lacks (rules, opset, int64 -> int32)"

    def run(self, ctx: DeployContext) -> StepResult:
        from onnxdeploy._legalize import legalize

        path = ctx.out / "03-legalized.onnx"
        result = legalize(str(ctx.current), ctx.target, output=path, verify=False, keep_partial=True)
        rep = result.report
        res = StepResult(self.name, artifact=str(path), details=rep.to_dict())
        if rep.int64_changes:
            ctx.allowed.add("dtypes")
            res.notes.append(f"{ctx.target.name} has no int64: int64 inputs/outputs narrowed to int32 (asked for by "
                             "the target)")
        res.verification = ctx.verify_onnx(path, "legalized vs reference")
        ctx.advance(path, "legalized", bench=rep.changed)
        if not rep.legal:
            left = [f"{p.what} ({', '.join(p.nodes)})" for p in rep.remaining if p.severity == "error"]
            raise DeployStepFailed(f"{ctx.target.name} cannot take the model, and legalize cannot fix: "
                                   f"{'; '.join(left)}",
                                   hint="replace those operators in the source model, or choose another target")
        res.message = ("no change needed" if not rep.changed else
                       f"rules {rep.rules_applied or '{}'}, opset {rep.opset_before}->{rep.opset_after}, "
                       f"{len(rep.int64_changes)} int64 change(s)")
        return res


class Quantize(Step):
    name, description = "quantize", "int8 (--quantize static|dynamic) or int4/int8 weights (--quantize int4|int8)"

    def run(self, ctx: DeployContext) -> StepResult:
        if not ctx.quantize:
            return StepResult(self.name, "skipped", message="not asked (--quantize static|dynamic|int4|int8)")
        if ctx.quantize in WEIGHT_ONLY:
            return _quantize_weights(ctx, self.name)
        q = _import("quantize", "onnxdeploy._quantize", "quantize")
        path = ctx.out / "04-quantized.onnx"
        rep = q(str(ctx.current), path, mode=ctx.quantize, dims=ctx.bench_dims or None, seed=ctx.seed,
                measure=False)  # the benchmark step times every candidate anyway
        cos = rep.cosine
        res = StepResult(self.name, artifact=str(path), details=rep.to_dict(),
                         message=f"{ctx.quantize} int8, cosine {cos:.4f}" if cos is not None else f"{ctx.quantize} int8")
        res.verification = ctx.verify_onnx(path, "quantized vs reference", quantized=True)
        ctx.advance(path, "quantized")
        return res


WEIGHT_ONLY = ("int4", "int8")  # --quantize values for weight-only MatMulNBits (onnxdeploy quantize --weights)
QUANTIZE_MODES = ("static", "dynamic", *WEIGHT_ONLY)


def _quantize_weights(ctx: DeployContext, name: str) -> StepResult:
    """Weight-only int4/int8 (``quantize --weights``): judged by the weight metric against the model it quantizes
    (itself verified against the reference) at a prefill and a decode step for a decoder; generation is compared in
    the benchmark step."""
    qw = _import(name, "onnxdeploy._weight_quant", "quantize_weights")
    path = ctx.out / f"04-{ctx.quantize}-weights.onnx"
    rep = qw(str(ctx.current), path, weights=ctx.quantize, accuracy_level=4, generate=False, measure=False,
             seed=ctx.seed)  # beyond the weight metric: OutputsDisagree, nothing written, the step fails
    res = StepResult(name, artifact=str(path), details=rep.to_dict(),
                     message=f"{ctx.quantize} weights (MatMulNBits {rep.quantized}/{rep.matmuls}, block "
                             f"{rep.block_size}, accuracy level 4), logits cosine {rep.logits_cosine:.4f}, "
                             f"size {rep.input_bytes / 1e6:.2f} -> {rep.output_bytes / 1e6:.2f} MB")
    res.verification = rep.verification
    res.notes.append(f"verified by the {ctx.quantize} weight metric ({rep.verification.metric}) against its input, "
                     "the model of the previous step (itself verified against the reference)")
    ctx.advance(path, f"{ctx.quantize} weights")
    return res


class Convert(Step):
    name, description = "convert", "write the target engine's artefact and run it"

    def run(self, ctx: DeployContext) -> StepResult:
        from onnxdeploy.targets import artifact_interface, convert

        t = ctx.target
        if ctx.precision == "auto" or ctx.precision_options.get("targets") == "auto":
            return _import("convert", "onnxdeploy._precision", "deploy_choice")(ctx, StepResult(self.name))
        if t.name == "executorch":  # built from the PyTorch module, not from the ONNX model
            return _convert_executorch(ctx, self.name)
        base = ctx.out / f"05-model-{t.name}"
        rep = convert(str(ctx.current), t, base.with_suffix(t.suffix), verify=False, dims=ctx.bench_dims,
                      precision=ctx.precision, calibration=ctx.precision_options.get("calibration_samples"))
        msg = f"wrote {', '.join(Path(f).name for f in rep.files)}"
        if rep.command and not rep.converted:
            msg += f"; not converted here, run: {rep.command}"
        res = StepResult(self.name, "passed" if rep.converted else "skipped",
                         artifact=rep.files[0] if rep.files else None, message=msg, details=rep.to_dict())
        if not rep.converted:
            return res
        ctx.artifact = rep.files[0]
        ctx.report.final_artifact = rep.files[0]
        if t.name == "onnxruntime" and ctx.precision == "fp32":
            return res
        header = rep.files[0] if t.suffix == ".onnx" else artifact_interface(rep.files[0], t.name, ctx.reference)
        res.verification = ctx.verifier_for(precision=ctx.precision).check(
            header, label=f"{t.name} {ctx.precision} vs reference", runner=ctx.runner(rep.files[0], t.name))
        if header is None:
            res.notes.append(f"the {t.name} artefact's declared interface cannot be read here: outputs only")
        ctx.candidates.append((f"{t.name} {ctx.precision} artefact" if ctx.precision != "fp32" else f"{t.name} artefact",
                               rep.files[0], t.name))
        return res


def _convert_executorch(ctx: DeployContext, name: str) -> StepResult:
    """The .pte from the PyTorch module (int8: static, calibrated on the given samples or on synthesized inputs
    with --quantize static, else dynamic), verified against PyTorch and the reference export on onnxruntime."""
    from dataclasses import replace

    from onnxdeploy.targets.executorch import NEEDS_MODULE, NEEDS_MODULE_HINT, convert_module

    if ctx.kind != "torch":
        raise UnsupportedError(NEEDS_MODULE, hint=NEEDS_MODULE_HINT)
    tt, given = ctx.loaded, ctx.inputs(ctx.dims)
    precision = "int8" if ctx.precision == "int8" or ctx.quantize else "fp32"
    calibration = ctx.precision_options.get("calibration_samples")
    if precision == "int8" and not calibration and ctx.quantize == "static":
        calibration = [replace(given, seed=ctx.seed + i).feeds(str(ctx.reference)) for i in range(8)]
    rep = convert_module(tt.module, tt.example_inputs, ctx.out / "05-model-executorch.pte",
                         example_kwargs=tt.example_kwargs, reference=ctx.reference, precision=precision,
                         calibration=calibration, inputs=given, interface=set(ctx.allowed) or "same")
    files = ", ".join(Path(f).name for f in rep.files)
    res = StepResult(name, artifact=rep.files[0], details=rep.to_dict(),
                     message=f"wrote {files} ({precision}; {'; '.join(rep.notes)})")
    res.verification = rep.parity
    ctx.artifact = ctx.report.final_artifact = rep.files[0]
    ctx.candidates.append((f"executorch {precision} artefact", rep.files[0], "executorch"))
    return res


class Benchmark(Step):
    name, description = "benchmark", "latency of every model on its engine, one thread"

    def run(self, ctx: DeployContext) -> StepResult:
        if ctx.task:
            return _benchmark_decoder(ctx, self.name)
        feeds = ctx.inputs(ctx.bench_dims).feeds(str(ctx.reference))
        ctx.report.bench_inputs = {k: list(v.shape) for k, v in feeds.items()}
        rows = []
        for label, path, engine in ctx.candidates:
            timing = time_runner(ctx.runner(path, engine), feeds, seconds=ctx.bench_seconds)
            ctx.runners.pop((path, engine), None)  # each session is freed once timed
            rows.append({"model": f"{label} ({engine})" if engine == "onnxruntime" else label, "path": path,
                         "engine": engine, **timing})
        ctx.report.latency = rows
        best = min(rows, key=lambda r: r["p50_ms"])
        shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in ctx.report.bench_inputs.items())
        versus = engine_vs_onnxruntime(rows, ctx.target)
        return StepResult(self.name, message=f"fastest: {best['model']} p50 {best['p50_ms']:.3f} ms at {shapes}"
                          + (f"; {versus['statement']}" if versus else ""), details={"rows": rows,
                                                                                   "vs_onnxruntime": versus})


def _benchmark_decoder(ctx: DeployContext, name: str) -> StepResult:
    """A decoder's benchmark: greedy generation with every ONNX model (one thread): decode tokens/s, time to first
    token, and parity per step against PyTorch (a PyTorch source) or the reference ONNX model: token agreement and
    logits error. An fp32 model whose tokens differ from the reference's fails the step."""
    gen = _import(name, "onnxdeploy._generate", "generate")
    reference_generation = _import(name, "onnxdeploy._generate", "reference_generation")
    default_prompt = _import(name, "onnxdeploy._generate", "default_prompt")
    require_decoder = _import(name, "onnxdeploy._generate", "require_decoder")
    prompt = default_prompt(require_decoder(str(ctx.reference)), seed=ctx.seed)
    n = ctx.max_new_tokens
    ref = reference_generation(ctx.loaded.module if ctx.kind == "torch" else str(ctx.reference), prompt, n, threads=1)
    rows, failed = [], []
    for label, path, engine in ctx.candidates:
        if engine != "onnxruntime":
            continue
        gen(path, prompt, max_new_tokens=2, threads=1)  # warm-up (allocations, first-run costs)
        g = gen(path, prompt, max_new_tokens=n, reference=ref, threads=1)
        quantized = label.endswith("weights") or label == "quantized"
        rows.append({"model": label, "path": path, "weights": ctx.quantize if quantized else "fp32",
                     "decode_tokens_per_s": g.decode_tokens_per_s, "ttft_ms": g.ttft_s * 1e3,
                     "agreement": g.agreement, "token_agreement": g.token_agreement, "identical": g.passed,
                     "first_divergence": g.first_divergence, "max_abs": g.max_abs, "min_cosine": g.min_cosine,
                     "tokens": g.tokens, "steps": [s.to_dict() for s in g.steps]})
        if not quantized and not g.passed:
            failed.append(f"{label}: tokens differ from {ref.reference_kind}'s from step {g.first_divergence}")
    base = next((r["decode_tokens_per_s"] for r in rows if r["weights"] == "fp32"), None)
    for r in rows:
        r["speedup"] = r["decode_tokens_per_s"] / base if base else None
    ctx.report.generation = {"prompt_ids": prompt, "new_tokens": n, "threads": 1, "reference": ref.model,
                             "reference_kind": ref.reference_kind, "reference_tokens": ref.tokens,
                             "reference_tokens_per_s": ref.decode_tokens_per_s, "rows": rows}
    best = max(rows, key=lambda r: r["decode_tokens_per_s"])
    msg = (f"greedy {n} tokens, 1 thread: fastest {best['model']} {best['decode_tokens_per_s']:.1f} tokens/s; "
           + "; ".join(f"{r['model']}: {r['matching_text']}" for r in _with_matching(rows, ref.reference_kind)))
    res = StepResult(name, message=msg, details={"generation": ctx.report.generation})
    if failed:
        res.status, res.message = "failed", "generation differs: " + "; ".join(failed)
        res.details["hint"] = "compare the per-step logits error in the report; near-ties flip tokens on random weights"
    return res


def _with_matching(rows: list[dict], kind: str) -> list[dict]:
    for r in rows:
        r["matching_text"] = ("tokens = " + ("PyTorch" if kind == "pytorch" else "reference") if r["identical"]
                              else f"{r['token_agreement']:.0%} steps agree (teacher-forced)")
    return rows


def engine_vs_onnxruntime(rows: list[dict], target) -> dict | None:
    """The engine artefact's p50 against onnxruntime's on the ONNX model it was converted from (same inputs, one
    thread each), with a plain statement: faster, or slower and why where the target knows (``slower_because``)."""
    art = next((r for r in rows if r["engine"] not in ("onnxruntime",)), None)
    ort_rows = [r for r in rows if r["engine"] == "onnxruntime"]
    if art is None or not ort_rows:
        return None
    ref = ort_rows[-1]  # the last ONNX model: the one the artefact was converted from
    ratio = art["p50_ms"] / ref["p50_ms"] if ref["p50_ms"] else float("inf")
    name = getattr(target, "name", str(target))
    if ratio > 1.05:
        why = getattr(target, "slower_because", "") or "no cause is known to onnxdeploy"
        text = (f"the {name} artefact is SLOWER than onnxruntime: p50 {art['p50_ms']:.3f} ms vs "
                f"{ref['p50_ms']:.3f} ms ({ratio:.2f}x); why: {why}")
    else:
        text = (f"the {name} artefact runs at {ratio:.2f}x onnxruntime's p50 ({art['p50_ms']:.3f} ms vs "
                f"{ref['p50_ms']:.3f} ms{', faster' if ratio < 0.95 else ', on par'})")
    return {"engine": name, "p50_ms": art["p50_ms"], "onnxruntime_model": ref["model"],
            "onnxruntime_p50_ms": ref["p50_ms"], "ratio": ratio, "slower": ratio > 1.05, "statement": text}


PIPELINE: tuple[Step, ...] = (Export(), Check(), Optimize(), Legalize(), Quantize(), Convert(), Benchmark())
STEPS = tuple(s.name for s in PIPELINE)


def time_runner(run: Callable[[Mapping[str, np.ndarray]], Any], feeds: Mapping[str, np.ndarray], *,
                seconds: float = 1.0, warmup: int = 3, max_runs: int = 2000) -> dict:
    """Latency (ms) of ``run(feeds)`` with bench's one timer (:func:`onnxdeploy._bench.time_interleaved`): p50, p90,
    mean, min, iterations (at least 5 runs, then up to ``seconds``)."""
    from onnxdeploy._bench import latency_stats, time_interleaved

    feeds = dict(feeds)
    timings = time_interleaved([lambda: run(feeds)], warmup=warmup, duration=seconds)
    times = list(timings[0])[:max_runs]
    while len(times) < 5:
        times += list(time_interleaved([lambda: run(feeds)], warmup=0, iterations=5 - len(times))[0])
    stats = latency_stats("model", None, times)
    return {"iterations": stats.iterations, "p50_ms": stats.p50, "p90_ms": stats.p90, "mean_ms": stats.mean,
            "min_ms": stats.min, "threads": 1}


# ---------------------------------------------------------------- driver


def check_skip(skip: Iterable[str], steps: Iterable[Step] = PIPELINE) -> set[str]:
    """The step names in ``skip``, validated: an unknown name is a one-line error naming the closest step."""
    steps = list(steps)
    names = [s.name for s in steps]
    required = {s.name for s in steps if not s.skippable}
    chosen = set()
    for name in skip:
        if name not in names:
            close = close_names(name, names, n=1)
            raise UserInputError(f"--skip {name}: no such step" + (f"; did you mean {close[0]}?" if close else ""),
                                 hint=f"steps: {', '.join(names)}")
        if name in required:
            raise UserInputError(f"--skip {name}: every later step needs its model", hint="it cannot be skipped")
        chosen.add(name)
    return chosen


def _load_source(source) -> tuple[str, Any, str]:
    """(kind, loaded, label): ("torch", TorchTarget) or ("onnx", path/model)."""
    if source is None:
        try:
            import torch
        except ImportError:
            from onnxdeploy.examples import conv_bn_silu

            return "onnx", conv_bn_silu(), EXAMPLE_NAME + ", as ONNX: torch is not installed"
        from onnxdeploy.examples import conv_bn_silu_torch
        from onnxdeploy._torch_target import TorchTarget

        module, _ = conv_bn_silu_torch()
        example = (torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)),)
        return "torch", TorchTarget(module, example, None, "onnxdeploy.examples:conv_bn_silu_torch"), EXAMPLE_NAME
    if isinstance(source, (str, os.PathLike)):
        text = str(source)
        if Path(text).is_file() or text.endswith(".onnx"):
            return "onnx", Path(text), text
        from onnxdeploy._torch_target import load_torch_target, looks_like_target

        if looks_like_target(text):
            return "torch", load_torch_target(text), text
        raise UserInputError(f"{text}: not an .onnx file or a PyTorch target",
                             hint="give model.onnx or package.module:factory")
    return "onnx", source, type(source).__name__


def _run_step(step: Step, ctx: DeployContext, skip: set[str]) -> StepResult:
    if step.name in skip:
        return StepResult(step.name, "skipped", message=f"--skip {step.name}")
    t0 = time.perf_counter()
    try:
        result = step.run(ctx)
    except StepUnavailable as err:
        result = StepResult(step.name, "unavailable", message=str(err))
    except Exception as err:  # noqa: BLE001 - every failure becomes the step's message
        msg = err.message if isinstance(err, OnnxDeployError) else f"{type(err).__name__}: {err}"
        result = StepResult(step.name, "failed", message=str(msg).splitlines()[0] if str(msg) else type(err).__name__)
        result.details["hint"] = getattr(err, "hint", None)
    result.seconds = time.perf_counter() - t0
    v = result.verification
    if result.status != "failed" and v is not None and not v.passed:
        result.status = "failed"
        changes = result.interface_changes
        result.message = (f"the artefact's interface changed: {'; '.join(changes)}" if changes
                          else f"outputs differ from the reference: {v.summary()}")
        result.details["hint"] = ("pass --fix-dims to make the --dim sizes static on purpose" if changes else None)
    return result


def run_pipeline(ctx: DeployContext, steps: Iterable[Step] = PIPELINE, *, skip: set[str] = frozenset(),
                 on_step: Callable[[str, str], None] | None = None) -> StepResult | None:
    """Run ``steps`` over ``ctx`` in order, recording each result; returns the failed step's result (or None)."""
    notify = on_step or (lambda _step, _status: None)
    for step in steps:
        notify(step.name, "start")
        result = _run_step(step, ctx, skip)
        ctx.report.steps.append(result)
        notify(step.name, result.status)
        if result.status == "failed":
            return result
    return None


def deploy(
    source=None,
    *,
    target: str = "onnxruntime",
    output_dir: str | os.PathLike = "deploy-out",
    quantize: str | None = None,
    dims: Mapping[str, int] | None = None,
    fix_dims: bool = False,
    dynamic: Mapping[str, Mapping[int, str]] | None = None,
    skip: Iterable[str] = (),
    optimize: bool = True,
    benchmark: bool = True,
    bench_seconds: float = 0.5,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    seed: int = 0,
    inputs: Any = None,
    on_step: Callable[[str, str], None] | None = None,
    precision: str = "fp32",
    calibration: Any = None,
    min_cosine: float | None = None,
    max_top1_drop: str | float | None = None,
    task: str | None = None,
    max_new_tokens: int = 32,
) -> DeployReport:
    """Run :data:`PIPELINE` on ``source`` (``.onnx`` path, ModelProto/ir.Model, ``pkg.mod:factory`` or None for the
    built-in example, exported with its dynamic dims batch x 3 x height x width).

    ``dynamic`` names dims of a PyTorch source dynamic, as in :func:`onnxdeploy._export.export`. ``dims`` are the
    sizes to verify and benchmark at; they stay symbolic unless ``fix_dims``. ``inputs`` (an
    :class:`onnxdeploy._verify.Inputs` or arrays by name) gives real inputs for every step's verification and the
    benchmark. ``skip`` names steps to skip
    (``optimize=False``/``benchmark=False`` are the old spellings of ``skip={"optimize"}``/``{"benchmark"}``).
    ``precision`` (fp32, bf16, fp16, int8: one the target builds; ``auto``: every one, the fastest within
    ``min_cosine``/``max_top1_drop`` on held-out inputs, see :mod:`onnxdeploy._precision`; ``target="auto"``: across
    the installed engines) with ``calibration`` for int8 builds.
    ``task="text-generation"`` (implied by a ``hf:`` source and by an ONNX decoder with a KV cache): export with
    the cache, ``optimize --preset decoder``, ``quantize`` ``int4``/``int8`` weight-only, and a benchmark of greedy
    generation (``max_new_tokens``; tokens/s, time to first token, token agreement per step against PyTorch).
    Writes ``output_dir`` with one artefact per step, ``deploy.json`` and ``report.html``; returns the report.
    Raises :class:`DeployStepFailed` (after writing the report; ``err.report``) when a step fails.
    """
    from onnxdeploy.targets import get_target

    if quantize not in (None, *QUANTIZE_MODES):
        raise UserInputError(f"--quantize must be static, dynamic, int4 or int8, got {quantize!r}",
                             hint="static/dynamic: int8 activations and weights; int4/int8: weight-only (MatMulNBits)")
    skipped = check_skip([*skip, *(["optimize"] if not optimize else []), *(["benchmark"] if not benchmark else [])])
    if fix_dims and not dims:
        raise UserInputError("--fix-dims needs the sizes to fix", hint="add --dim NAME=VALUE for each dim to fix")
    from onnxdeploy.targets.base import check_precision, normalize_precision

    precision_options = {"calibration": calibration, "min_cosine": min_cosine, "max_top1_drop": max_top1_drop,
                         "targets": "auto" if target == "auto" else None}
    t = get_target("onnxruntime" if target == "auto" else target)  # auto: legalized for onnxruntime, then each engine
    precision = normalize_precision(precision)
    if precision == "auto":
        from onnxdeploy._precision import Budget

        Budget(*([min_cosine] if min_cosine is not None else []), max_top1_drop=max_top1_drop)  # refused up front
    if precision != "auto" and target != "auto":
        check_precision(t, precision)
        if calibration is not None and precision == "int8":
            from onnxdeploy._calibration import load_calibration

            precision_options["calibration_samples"] = list(load_calibration(calibration, source)) \
                if isinstance(source, (str, os.PathLike)) and str(source).endswith(".onnx") else None
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out} is a file; deploy writes a folder")
    kind, loaded, label = _load_source(source)
    task = _decoder_task(task, kind, loaded, source)
    if t.name == "executorch" and kind != "torch":
        from onnxdeploy.targets.executorch import NEEDS_MODULE, NEEDS_MODULE_HINT

        raise UnsupportedError(NEEDS_MODULE, hint=NEEDS_MODULE_HINT)
    if dynamic and kind != "torch":
        raise UserInputError("--dynamic applies to a PyTorch source; an ONNX model keeps the dims it declares",
                             hint="give a PyTorch target (package.module:factory), or drop --dynamic")
    out.mkdir(parents=True, exist_ok=True)
    dims = dict(dims or {})
    example = source is None
    ctx = DeployContext(
        kind, loaded, t, out, DeployReport(label, t.name, str(out), skipped=sorted(skipped)), quantize=quantize,
        dims=dims, bench_dims={**(EXAMPLE_BENCH_DIMS if example else {}), **dims}, fix_dims=fix_dims,
        dynamic={k: dict(v) for k, v in (dynamic or (EXAMPLE_DYNAMIC if example else {})).items()},
        input_names=["input"] if example else None, output_names=["values"] if example else None,
        atol=atol, rtol=rtol, seed=seed, bench_seconds=bench_seconds, allowed={"dims"} if fix_dims else set(),
        given=_given_inputs(inputs), precision=precision, precision_options=precision_options, task=task,
        max_new_tokens=max_new_tokens)
    if target == "auto":
        ctx.report.target = "auto"
    started = time.perf_counter()
    failed = run_pipeline(ctx, skip=skipped, on_step=on_step)
    report = ctx.report
    if ctx.current is not None:
        report.ops_after = op_histogram(ctx.current)
        report.changes = (_diff_text(ctx.reference, ctx.current, report.ops_before, report.ops_after)
                          if ctx.reference is not None else [])
    report.seconds = time.perf_counter() - started
    _write_outputs(report, out, ctx.current)
    if failed is not None:
        hint = failed.details.get("hint")
        err = DeployStepFailed(f"deploy stopped at step '{failed.name}': {failed.message}",
                               hint=(f"{hint}; " if hint else "") + f"earlier artefacts and the report are in {out}/")
        err.report = report
        raise err
    return report


def _decoder_task(task: str | None, kind: str, loaded, source) -> str | None:
    """``text-generation`` for a decoder with its KV cache: asked for, a ``hf:`` source, or an ONNX decoder."""
    if task is not None:
        from onnxdeploy._llm import check_task

        check_task(task)
        if kind == "onnx" and _import("deploy", "onnxdeploy._generate", "decoder_signature")(loaded) is None:
            _import("deploy", "onnxdeploy._generate", "require_decoder")(loaded)  # the one-line error
        return "text-generation"
    if kind == "torch" and isinstance(source, str) and source.startswith("hf:"):
        return "text-generation"
    if kind == "onnx":
        try:
            return "text-generation" if _import("deploy", "onnxdeploy._generate", "decoder_signature")(loaded) \
                else None
        except Exception:  # noqa: BLE001 - an unreadable model fails in the export step, with its own message
            return None
    return None


def _given_inputs(inputs):
    from onnxdeploy._verify import Inputs

    return None if inputs is None else Inputs.coerce(inputs)


def _write_outputs(report: DeployReport, out: Path, current) -> None:
    import json

    from onnxdeploy._io import atomic_write_text
    from onnxdeploy._report import deploy_html

    graph_svg = None
    if current is not None:
        try:
            from onnxdeploy._render import render_svg

            graph_svg = render_svg(current, title=Path(current).name)
        except Exception as err:  # noqa: BLE001 - a picture is not worth failing the report
            graph_svg = f"<p>graph picture unavailable: {err}</p>"
    report.report_html = str(out / "report.html")
    data = report.to_dict()
    atomic_write_text(out / "deploy.json", json.dumps(data, indent=2, default=str) + "\n")
    atomic_write_text(out / "report.html", deploy_html(data, graph_svg))
