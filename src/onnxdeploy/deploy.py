"""``deploy(source, target=..., output_dir=...)``: PyTorch or ONNX -> verified artefact for a target, with a report.

Steps: export (PyTorch sources) -> check -> optimize -> legalize -> quantize (if asked) -> convert -> benchmark.
After every step that changes the model, its outputs are compared with the reference (the first ONNX model on
onnxruntime, itself checked against PyTorch by ``export``). Each step's artefact is written to the output folder as
it is produced, so a failing step stops the pipeline with a clear message and leaves the earlier artefacts,
``deploy.json`` and ``report.html`` behind. Steps whose module is not importable are reported as unavailable.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from onnxdeploy.errors import OnnxDeployError, UserInputError

STEPS = ("export", "check", "optimize", "legalize", "quantize", "convert", "benchmark")
EXAMPLE_DIMS = {"batch": 1, "height": 64, "width": 64}


class DeployStepFailed(OnnxDeployError):
    """A deploy step failed; the artefacts of the earlier steps are kept."""


@dataclass
class StepResult:
    name: str
    status: str  # ok, failed, skipped, unavailable
    seconds: float = 0.0
    message: str = ""
    artifact: str | None = None
    parity: Any = None  # numerics.Comparison
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 4),
            "message": self.message,
            "artifact": self.artifact,
            "parity": self.parity.to_dict() if self.parity is not None else None,
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
    inputs: dict[str, list[int]] = field(default_factory=dict)
    seconds: float = 0.0
    report_html: str | None = None
    final_artifact: str | None = None

    @property
    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps if s.status == "failed"), None)

    @property
    def passed(self) -> bool:
        return self.failed_step is None and all(s.parity is None or s.parity.passed for s in self.steps)

    def to_dict(self) -> dict:
        failed = self.failed_step
        return {
            "source": self.source,
            "target": self.target,
            "output_dir": self.output_dir,
            "passed": self.passed,
            "failed_step": failed.name if failed else None,
            "seconds": round(self.seconds, 3),
            "final_artifact": self.final_artifact,
            "report_html": self.report_html,
            "inputs": self.inputs,
            "steps": [s.to_dict() for s in self.steps],
            "latency": self.latency,
            "ops_before": self.ops_before,
            "ops_after": self.ops_after,
            "changes": self.changes,
        }


class StepUnavailable(Exception):
    pass


def _import(step: str, module: str, name: str):
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise StepUnavailable(f"step {step} unavailable: {module}.{name} cannot be imported ({err})") from err


def op_histogram(model) -> dict[str, int]:
    from onnxdeploy import io

    proto = io.as_proto(model)
    return dict(sorted(Counter(n.op_type for n in proto.graph.node).items()))


def _describe_changes(before: Mapping[str, int], after: Mapping[str, int]) -> list[str]:
    lines = []
    for op in sorted(set(before) | set(after)):
        a, b = before.get(op, 0), after.get(op, 0)
        if a != b:
            lines.append(f"{op}: {a} -> {b}")
    return lines


def _diff_text(a_path: Path, b_path: Path) -> list[str]:
    """What changed between two models: ``onnxdeploy.diff`` when available, else op counts."""
    counts = _describe_changes(op_histogram(a_path), op_histogram(b_path))
    try:
        from onnxdeploy.diff import diff as model_diff
    except ImportError:
        return counts
    try:
        result = model_diff(str(a_path), str(b_path), compare_values=False)
    except Exception as err:  # noqa: BLE001 - the diff is garnish in the report, never a reason to fail
        return counts + [f"(onnxdeploy.diff failed: {err})"]
    lines = [f"summary: {result.summary()}"] + counts
    for c in result.changes[:150]:
        detail = f" ({c.before} -> {c.after})" if c.before or c.after else ""
        lines.append(f"{c.section} {c.kind}: {c.name}{detail}")
    if len(result.changes) > 150:
        lines.append(f"... {len(result.changes) - 150} more changes")
    return lines


def _load_source(source) -> tuple[str, Any]:
    """("onnx", path) or ("torch", TorchTarget) or ("example", ...)."""
    if source is None:
        try:
            import torch  # noqa: F401

            from onnxdeploy.examples import conv_bn_silu_torch
            from onnxdeploy.torch_target import TorchTarget

            module, _ = conv_bn_silu_torch()
            import torch as _t

            return "torch", TorchTarget(module, (_t.randn(1, 3, 64, 64),), None, "onnxdeploy.examples:conv_bn_silu_torch")
        except ImportError:
            return "example-onnx", None
    if isinstance(source, (str, os.PathLike)):
        text = str(source)
        if Path(text).is_file() or text.endswith(".onnx"):
            return "onnx", Path(text)
        from onnxdeploy.torch_target import load_torch_target, looks_like_target

        if looks_like_target(text):
            return "torch", load_torch_target(text)
        raise UserInputError(f"{text}: not an .onnx file or a PyTorch target",
                             hint="give model.onnx or package.module:factory")
    return "onnx", source


def deploy(
    source=None,
    *,
    target: str = "onnxruntime",
    output_dir: str | os.PathLike = "deploy-out",
    quantize: str | None = None,
    dims: Mapping[str, int] | None = None,
    optimize: bool = True,
    benchmark: bool = True,
    bench_seconds: float = 1.0,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    seed: int = 0,
    on_step: Callable[[str, str], None] | None = None,
) -> DeployReport:
    """Run the deploy pipeline on ``source`` (``.onnx`` path, ModelProto/ir.Model, ``pkg.mod:factory`` or None).

    Writes ``output_dir`` with one artefact per step, ``deploy.json`` and ``report.html``; returns the report.
    Raises :class:`DeployStepFailed` (after writing the report) when a step fails.
    """
    from onnxdeploy import io
    from onnxdeploy.targets import get_target

    if quantize not in (None, "static", "dynamic"):
        raise UserInputError(f"--quantize must be static or dynamic, got {quantize!r}")
    t = get_target(target)
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out} is a file; deploy writes a folder")
    out.mkdir(parents=True, exist_ok=True)
    notify = on_step or (lambda _step, _status: None)
    started = time.perf_counter()
    kind, src = _load_source(source)
    report = DeployReport(str(source) if source is not None else "built-in example (conv_bn_silu)", t.name, str(out))
    state: dict[str, Any] = {"dims": dict(dims or {})}
    if source is None:
        state["dims"] = {**EXAMPLE_DIMS, **state["dims"]}

    def run_step(name: str, fn: Callable[[], StepResult | None]) -> bool:
        notify(name, "start")
        t0 = time.perf_counter()
        try:
            result = fn() or StepResult(name, "ok")
        except StepUnavailable as err:
            result = StepResult(name, "unavailable", message=str(err))
        except Exception as err:  # noqa: BLE001 - every failure becomes the step's message
            msg = err.message if isinstance(err, OnnxDeployError) else f"{type(err).__name__}: {err}"
            result = StepResult(name, "failed", message=str(msg).splitlines()[0] if str(msg) else type(err).__name__)
            result.details["hint"] = getattr(err, "hint", None)
        result.seconds = time.perf_counter() - t0
        report.steps.append(result)
        notify(name, result.status)
        return result.status != "failed"

    def compare(path: Path, label: str, *, quantized: bool = False):
        from onnxdeploy.numerics import compare_outputs
        from onnxdeploy.run import create_session, run_session

        got = run_session(create_session(str(path), threads=1), _feeds_for(path, state["feeds"]))
        tol = dict(atol=max(atol, 0.1), rtol=max(rtol, 0.1)) if quantized else dict(atol=atol, rtol=rtol)
        return compare_outputs(state["reference"], got, label=label, **tol)

    def set_current(path: Path) -> None:
        state["current"] = path
        report.final_artifact = str(path)

    # ------------------------------------------------------------------ export / load
    def step_export() -> StepResult:
        path = out / "01-model.onnx"
        if kind == "torch":
            export = _import("export", "onnxdeploy.export", "export")
            tt = src
            dynamic = {"input": {0: "batch", 2: "height", 3: "width"}} if source is None else None
            names = ["input"] if source is None else None
            rep = export(tt.module, tt.example_inputs if tt.example_kwargs is None else tt.example_kwargs, path,
                         input_names=names, output_names=["values"] if source is None else None, dynamic=dynamic)
            parity = rep.parity[0] if rep.parity else None
            res = StepResult("export", "ok", artifact=str(path), parity=parity,
                             message=f"exported with {rep.exporter} (opset {rep.opset}), verified against PyTorch",
                             details=rep.to_dict())
        elif kind == "example-onnx":
            from onnxdeploy.examples import conv_bn_silu

            io.save(conv_bn_silu(), path)
            res = StepResult("export", "skipped", artifact=str(path),
                             message="torch is not installed: using the built-in ONNX example conv_bn_silu")
        else:
            io.save(io.as_model(src), path)
            res = StepResult("export", "skipped", artifact=str(path), message="source is ONNX: copied, not exported")
        _prepare_reference(path)
        set_current(path)
        report.ops_before = op_histogram(path)
        return res

    def _prepare_reference(path: Path) -> None:
        from onnxdeploy.run import create_session, prepare_inputs, run_session

        feeds = prepare_inputs(str(path), dims=state["dims"], seed=seed)
        state["feeds"] = feeds
        state["reference"] = run_session(create_session(str(path), threads=1), feeds)
        report.inputs = {k: list(v.shape) for k, v in feeds.items()}

    def step_check() -> StepResult:
        from onnxdeploy.check import check

        rep = check(state["current"], t)
        status = "ok"
        msg = rep.summary()
        return StepResult("check", status, message=msg, details=rep.to_dict())

    def step_optimize() -> StepResult:
        if not optimize:
            return StepResult("optimize", "skipped", message="--no-optimize")
        opt = _import("optimize", "onnxdeploy.optimize", "optimize")
        path = out / "02-optimized.onnx"
        result = opt(str(state["current"]), dims=state["dims"] or None, verify=True, atol=atol, rtol=rtol)
        io.save(result.model, path)
        parity = compare(path, "optimized vs reference")
        set_current(path)
        before, after = result.report.before, result.report.after
        msg = f"{getattr(before, 'nodes', '?')} -> {getattr(after, 'nodes', '?')} nodes"
        return StepResult("optimize", "ok", artifact=str(path), parity=parity, message=msg,
                          details=result.report.to_dict())

    def step_legalize() -> StepResult:
        from onnxdeploy.legalize import legalize

        path = out / "03-legalized.onnx"
        result = legalize(str(state["current"]), t, output=path, dims=state["dims"], atol=atol, rtol=rtol,
                          inputs=_feeds_for_path(state["current"]), keep_partial=True)
        rep = result.report
        parity = compare(path, "legalized vs reference")
        set_current(path)
        details = rep.to_dict()
        if not rep.legal:
            left = [f"{p.what} ({', '.join(p.nodes)})" for p in rep.remaining if p.severity == "error"]
            raise DeployStepFailed(f"{t.name} cannot take the model, and legalize cannot fix: {'; '.join(left)}",
                                   hint="replace those operators in the source model, or choose another target")
        msg = ("no change needed" if not rep.changed else
               f"rules {rep.rules_applied or '{}'}, opset {rep.opset_before}->{rep.opset_after}, "
               f"{len(rep.int64_changes)} int64 change(s)")
        return StepResult("legalize", "ok", artifact=str(path), parity=parity, message=msg, details=details)

    def step_quantize() -> StepResult:
        if not quantize:
            return StepResult("quantize", "skipped", message="not asked (--quantize static|dynamic)")
        q = _import("quantize", "onnxdeploy.quantize", "quantize")
        path = out / "04-quantized.onnx"
        rep = q(str(state["current"]), path, mode=quantize, dims=state["dims"], seed=seed)
        parity = compare(path, "quantized vs reference", quantized=True)
        set_current(path)
        cos = rep.cosine
        return StepResult("quantize", "ok", artifact=str(path), parity=parity,
                          message=f"{quantize} int8, cosine {cos:.4f}" if cos is not None else f"{quantize} int8",
                          details=rep.to_dict())

    def step_convert() -> StepResult:
        from onnxdeploy.numerics import compare_outputs
        from onnxdeploy.targets import convert

        base = out / f"05-model-{t.name}"
        rep = convert(str(state["current"]), t, base.with_suffix(t.suffix), verify=False, dims=state["dims"])
        parity = None
        if rep.converted and t.name != "onnxruntime":
            from onnxdeploy.targets import run_artifact

            got = run_artifact(rep.files[0], _feeds_for(state["current"], state["feeds"]), t.name)
            loose = quantize is not None
            parity = compare_outputs(state["reference"], got, atol=max(atol, 0.1) if loose else atol,
                                     rtol=max(rtol, 0.1) if loose else rtol, label=f"{t.name} vs reference")
            report.final_artifact = rep.files[0]
        msg = f"wrote {', '.join(Path(f).name for f in rep.files)}"
        if rep.command and not rep.converted:
            msg += f"; not converted here, run: {rep.command}"
        res = StepResult("convert", "ok" if rep.converted else "skipped", artifact=rep.files[0] if rep.files else None,
                         parity=parity, message=msg, details=rep.to_dict())
        state["artifact"] = rep.files[0] if rep.converted else None
        return res

    def step_benchmark() -> StepResult:
        if not benchmark:
            return StepResult("benchmark", "skipped", message="--no-bench")
        rows = []
        candidates = [("reference (onnxruntime)", str(out / "01-model.onnx"), "onnxruntime")]
        for name, fname in (("optimized", "02-optimized.onnx"), ("legalized", "03-legalized.onnx"),
                            ("quantized", "04-quantized.onnx")):
            if (out / fname).exists():
                candidates.append((f"{name} (onnxruntime)", str(out / fname), "onnxruntime"))
        if state.get("artifact") and t.name != "onnxruntime":
            candidates.append((f"{t.name} artefact", state["artifact"], t.name))
        for label, path, engine in candidates:
            rows.append({"model": label, "path": path, "engine": engine,
                         **time_model(path, engine, _feeds_for(path, state["feeds"]), seconds=bench_seconds)})
        report.latency = rows
        best = min(rows, key=lambda r: r["p50_ms"])
        return StepResult("benchmark", "ok", message=f"fastest: {best['model']} p50 {best['p50_ms']:.3f} ms",
                          details={"rows": rows})

    def _feeds_for_path(path: Path):
        return _feeds_for(path, state["feeds"])

    steps = [("export", step_export), ("check", step_check), ("optimize", step_optimize),
             ("legalize", step_legalize), ("quantize", step_quantize), ("convert", step_convert),
             ("benchmark", step_benchmark)]
    failed = None
    for name, fn in steps:
        if not run_step(name, fn):
            failed = report.steps[-1]
            break
        last = report.steps[-1]
        if last.parity is not None and not last.parity.passed:
            last.status = "failed"
            last.message = f"outputs differ from the reference: {last.parity.summary()}"
            failed = last
            break
    if "current" in state:
        report.ops_after = op_histogram(state["current"])
        report.changes = _diff_text(out / "01-model.onnx", state["current"]) if (out / "01-model.onnx").exists() \
            else []
    report.seconds = time.perf_counter() - started
    _write_outputs(report, out, state.get("current"))
    if failed is not None:
        raise DeployStepFailed(f"deploy stopped at step '{failed.name}': {failed.message}",
                               hint=(failed.details.get("hint") or "") +
                               (" " if failed.details.get("hint") else "") +
                               f"earlier artefacts and the report are in {out}/")
    return report


def _feeds_for(path, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference feeds, cast to the dtypes ``path`` declares (legalize may narrow int64 inputs to int32)."""
    from onnxdeploy.run import input_specs

    p = Path(path)
    if p.suffix != ".onnx":
        return dict(feeds)
    out = {}
    for spec in input_specs(str(p)):
        arr = feeds[spec.name]
        out[spec.name] = arr.astype(spec.dtype) if arr.dtype != spec.dtype else arr
    return out


def time_model(path: str, engine: str, feeds: Mapping[str, np.ndarray], *, seconds: float = 1.0,
               warmup: int = 3) -> dict:
    """Latency (ms) of one model on its engine, single-threaded: p50, p90, mean, min, iterations."""
    if engine == "openvino":
        import openvino as ov

        from onnxdeploy.targets.openvino import run_compiled

        compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"})
        fn = lambda: run_compiled(compiled, feeds)  # noqa: E731
    elif engine in ("onnxruntime", "ort-mobile"):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        fn = lambda: sess.run(None, dict(feeds))  # noqa: E731
    else:
        from onnxdeploy.targets import run_artifact

        fn = lambda: run_artifact(path, feeds, engine)  # noqa: E731
    for _ in range(warmup):
        fn()
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < 5 or (time.perf_counter() < deadline and len(times) < 2000):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    arr = np.array(times)
    return {"iterations": len(times), "p50_ms": float(np.percentile(arr, 50)), "p90_ms": float(np.percentile(arr, 90)),
            "mean_ms": float(arr.mean()), "min_ms": float(arr.min()), "threads": 1}


def _write_outputs(report: DeployReport, out: Path, current) -> None:
    import json

    from onnxdeploy.io import atomic_write_text
    from onnxdeploy.report import deploy_html

    graph_svg = None
    if current is not None:
        try:
            from onnxdeploy.render import render_svg

            graph_svg = render_svg(current, title=Path(current).name)
        except Exception as err:  # noqa: BLE001 - a picture is not worth failing the report
            graph_svg = f"<p>graph picture unavailable: {err}</p>"
    report.report_html = str(out / "report.html")
    atomic_write_text(out / "deploy.json", json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    atomic_write_text(out / "report.html", deploy_html(report, graph_svg))
