"""Deployment targets: what each engine supports, how to convert a model for it, and how to run the result.

>>> from onnxdeploy import targets
>>> targets.check("model.onnx", "openvino").supported
>>> targets.convert("model.onnx", "openvino", "out/model.xml").parity.summary()
>>> targets.run_artifact("out/model.xml", feeds)          # target guessed from the suffix
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from onnxdeploy.errors import OutputsDisagree, UnsupportedError, UserInputError
from onnxdeploy.targets.base import (PRECISION_CHOICES, PRECISIONS, SUFFIXES, TARGET_NAMES, TARGETS,  # noqa: F401
                                     CheckReport, ConvertReport, Problem, Target, check_precision, get_target,
                                     normalize_precision, target_for_artifact)

if TYPE_CHECKING:
    import numpy as np

    from onnxdeploy._io import ModelLike
    from onnxdeploy._numerics import Comparison, Tolerance
    from onnxdeploy._verify import Inputs

def check(model: "ModelLike", target: str | Target = "onnxruntime", **options) -> CheckReport:
    """Every op, dtype and opset problem of ``model`` on ``target`` (see :func:`onnxdeploy._check.check`)."""
    from onnxdeploy._check import check as _check

    return _check(model, target, **options)


def run_artifact(path: str | os.PathLike, feeds: Mapping[str, "np.ndarray"], target: str | None = None
                 ) -> dict[str, "np.ndarray"]:
    """Run a converted artefact (``.onnx``, ``.xml``, ``.ort``, ``.engine``) on its engine; outputs by name."""
    p = Path(path)
    if not p.exists():
        raise UserInputError(f"{p}: no such file")
    t = get_target(target or target_for_artifact(p))
    if t.name == "ascend":
        raise UnsupportedError("cannot run Ascend models here: ATC/ACL (CANN) is not installed",
                               hint="run the .om with the ACL tools (msame or ais_bench) on an Ascend machine")
    return t.run(p, feeds)


@dataclass
class BackendRun:
    """Outputs of a model or converted artefact run on a target's engine, and their parity with onnxruntime."""

    target: str
    outputs: dict
    inputs: dict
    parity: "Comparison | None"
    precision: str = "fp32"

    def to_dict(self) -> dict:
        from onnxdeploy._run import array_summary

        return {
            "target": self.target,
            "precision": self.precision,
            "inputs": {k: array_summary(v) for k, v in self.inputs.items()},
            "outputs": {k: array_summary(v) for k, v in self.outputs.items()},
            "parity": self.parity.to_dict() if self.parity is not None else None,
        }


def run_on_backend(
    artifact: str | os.PathLike,
    backend: str | None = None,
    *,
    reference: str | os.PathLike | None = None,
    verify: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    precision: str | None = None,
    **input_options,
) -> BackendRun:
    """Run ``artifact`` (an .onnx or a converted .xml/.ort/...) on ``backend`` and compare with onnxruntime.

    Inputs come from ``input_options`` (as :func:`onnxdeploy._run.prepare_inputs`) and follow the ONNX model: the
    artefact itself when it is ``.onnx``, else ``reference`` (the ONNX file it was converted from), which is
    required. Beyond ``atol``/``rtol`` (or, at ``precision`` bf16/fp16/int8, that precision's metric) raises
    :class:`OutputsDisagree`. ``precision`` with an ``.onnx`` artefact builds the engine's artefact at that precision
    first (unverified: this run is the check); a converted artefact is judged at the precision it records.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="onnxdeploy-run-") as tmp:
        return _run_on_backend(Path(artifact), backend, Path(tmp), reference=reference, verify=verify, atol=atol,
                               rtol=rtol, precision=precision, **input_options)


def _run_on_backend(path: Path, backend, tmp: Path, *, reference, verify, atol, rtol, precision, **input_options):
    from onnxdeploy._numerics import Tolerance
    from onnxdeploy._run import prepare_inputs

    target = get_target(backend or target_for_artifact(path))
    recorded = target.artifact_precision(path) if path.exists() and path.suffix != ".onnx" else None
    precision = normalize_precision(precision or recorded)
    if path.suffix == ".onnx" and precision != "fp32":
        check_precision(target, precision)
        built = convert(path, target, tmp / f"model{target.suffix}", verify=False, precision=precision)
        reference, path = reference or path, Path(built.files[0])
    onnx_model = Path(reference) if reference is not None else (path if path.suffix == ".onnx" else None)
    if onnx_model is None:
        raise UserInputError(f"{path}: the {target.name} artefact carries no ONNX input description",
                             hint="pass --reference model.onnx, the ONNX file it was converted from")
    feeds = prepare_inputs(onnx_model, **input_options)
    outputs = run_artifact(path, feeds, target.name)
    parity = None
    if verify and not (target.name == "onnxruntime" and onnx_model == path):
        from onnxdeploy._verify import Inputs, verify as verify_models

        parity = verify_models(onnx_model, onnx_model, Inputs(arrays=feeds),
                               tolerance=Tolerance(precision=precision, atol=atol, rtol=rtol),
                               interface="ignore", candidate_runner=lambda _feeds: outputs,
                               label=f"{target.name} {precision} vs onnxruntime" if precision != "fp32" else
                               f"{target.name} vs onnxruntime")
        if not parity.passed:
            raise OutputsDisagree(f"{target.name} outputs differ from onnxruntime: {parity.failures()[0]}",
                                  hint="loosen --atol/--rtol if the difference is expected")
    return BackendRun(target.name, outputs, feeds, parity, precision)


def convert(
    model: "ModelLike",
    target: str | Target,
    output: str | os.PathLike,
    *,
    verify: bool = True,
    inputs: "Inputs | Mapping[str, np.ndarray] | None" = None,
    dims: Mapping[str, int] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    seed: int = 0,
    keep_on_mismatch: bool = False,
    precision: str = "fp32",
    calibration: "list[Mapping[str, np.ndarray]] | None" = None,
    tolerance: "Tolerance | None" = None,
) -> ConvertReport:
    """Convert ``model`` for ``target`` at ``output`` and compare the artefact's outputs with onnxruntime's.

    ``precision`` (one of the target's :attr:`Target.precisions`; others are refused naming those) selects what the
    artefact computes in; ``calibration`` (a list of feed dicts) feeds int8 builds. The artefact is judged with
    ``tolerance``, by default ``Tolerance(precision=precision, atol=atol, rtol=rtol)``: elementwise for fp32, cosine /
    rel L2 (/ top-1 for int8) otherwise. The artefact is written to a private folder beside ``output``, verified there, and only then renamed into
    place. Raises :class:`OutputsDisagree` (or :class:`UnsupportedError` when the artefact does not run) with
    nothing left behind, unless ``keep_on_mismatch`` moves the files into place for inspection.
    """
    import tempfile

    t = get_target(target)
    precision = check_precision(t, precision)
    out = Path(output)
    if out.is_dir() and not t.suffix:  # the artefact is a folder (a Triton repository): written whole, never merged
        raise UserInputError(f"{out} already exists; {t.name} writes a new folder",
                             hint=f"choose a folder that does not exist yet, e.g. {out}-{t.name}")
    if out.is_dir():
        raise UserInputError(f"{out} is a folder; give a file name such as {out / ('model' + t.suffix)}")
    if not (out.parent if str(out.parent) else Path(".")).exists():
        raise UserInputError(f"{out.parent}: output folder does not exist", hint=f"mkdir -p {out.parent}")
    start = time.perf_counter()
    folder = out.parent if str(out.parent) else Path(".")
    with tempfile.TemporaryDirectory(prefix="onnxdeploy-convert-") as tmp, \
            tempfile.TemporaryDirectory(prefix=f".onnxdeploy-tmp-{os.getpid()}-convert-", dir=folder) as staging:
        report = _convert_and_verify(model, t, out, Path(tmp), Path(staging), start, verify=verify, inputs=inputs,
                                     dims=dims, atol=atol, rtol=rtol, seed=seed, keep_on_mismatch=keep_on_mismatch,
                                     precision=precision, calibration=calibration, tolerance=tolerance)
    return report


def artifact_interface(path: str | os.PathLike, engine: str, reference):
    """A header-only ModelProto (declared inputs and outputs, no nodes) of a non-ONNX artefact, for
    :func:`onnxdeploy._verify.interface_changes`; None when the engine's artefact cannot be read here. A target
    with an ``interface(artifact, reference)`` method answers for itself."""
    t = get_target(engine)
    if hasattr(t, "interface"):
        return t.interface(Path(path), reference)
    import numpy as np
    import onnx
    from onnx import helper

    from onnxdeploy._run import model_structure

    ref = model_structure(reference).graph
    out_names = [o.name for o in ref.output]
    if engine == "openvino":
        import openvino as ov

        model = ov.Core().read_model(str(path))
        ports = [("input", p) for p in model.inputs] + [("output", p) for p in model.outputs]

        def describe(kind, port):
            names = port.get_names()
            wanted = [n for n in (out_names if kind == "output" else [i.name for i in ref.input]) if n in names]
            dims = [d.get_length() if d.is_static else "dynamic" for d in port.get_partial_shape()]
            dtype = helper.np_dtype_to_tensor_dtype(np.dtype(port.get_element_type().to_dtype()))
            return kind, helper.make_tensor_value_info(wanted[0] if wanted else port.get_any_name(), dtype, dims)

        values = [describe(k, p) for k, p in ports]
    elif engine == "ort-mobile":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        kinds = {"tensor(float)": 1, "tensor(uint8)": 2, "tensor(int8)": 3, "tensor(int32)": 6, "tensor(int64)": 7,
                 "tensor(bool)": 9, "tensor(float16)": 10, "tensor(double)": 11}
        values = [(kind, helper.make_tensor_value_info(
            a.name, kinds.get(a.type, 0), [d if isinstance(d, int) else "dynamic" for d in (a.shape or [])]))
                  for kind, args in (("input", sess.get_inputs()), ("output", sess.get_outputs())) for a in args]
    else:
        return None
    graph = onnx.GraphProto(name="artefact")
    graph.input.extend(v for k, v in values if k == "input")
    graph.output.extend(v for k, v in values if k == "output")
    return onnx.ModelProto(ir_version=model_structure(reference).ir_version or 8, graph=graph)


def _verify_artifact(src: Path, artifact: Path, t: Target, *, inputs, dims, atol, rtol, seed, notes: list[str],
                     precision: str = "fp32", tolerance=None):
    """The artefact on its engine against the ONNX source on onnxruntime (:func:`onnxdeploy._verify.verify`), at two
    shapes when dims are symbolic, with the metric of ``precision`` (or ``tolerance``)."""
    import numpy as np

    from onnxdeploy._numerics import Tolerance
    from onnxdeploy._run import output_specs
    from onnxdeploy._verify import Inputs, verify

    if tolerance is None and precision != "fp32":
        tolerance = Tolerance(precision=precision, atol=atol, rtol=rtol)
    if tolerance is not None:
        given = Inputs.merge(inputs, dims=dims, seed=seed)
        header = str(artifact) if Path(artifact).suffix == ".onnx" else artifact_interface(artifact, t.name, src)
        if header is None:
            notes.append(f"the {t.name} artefact's declared interface cannot be read here: only its outputs are checked")
        return verify(src, header, given, tolerance=tolerance, label=f"{t.name} {precision} vs onnxruntime fp32",
                      candidate_runner=lambda feeds: run_artifact(artifact, feeds, t.name))
    if any(s.dtype == np.float16 for s in output_specs(src)) and (atol < 1e-2 or rtol < 1e-2):
        atol, rtol = max(atol, 1e-2), max(rtol, 1e-2)  # two engines' fp16 roundings differ by ~1e-3
        notes.append(f"float16 outputs: compared with atol {atol:g}, rtol {rtol:g}")
    given = Inputs.merge(inputs, dims=dims, seed=seed)
    header = artifact_interface(artifact, t.name, src)
    if header is None:
        notes.append(f"the {t.name} artefact's declared interface cannot be read here: only its outputs are checked")
    return verify(src, header, given, atol=atol, rtol=rtol, label=f"{t.name} vs onnxruntime",
                  candidate_runner=lambda feeds: run_artifact(artifact, feeds, t.name))


def _publish(files: list[Path], staging: Path, folder: Path) -> list[Path]:
    from onnxdeploy._io import check_output_path

    placed = []
    finals = [folder / f.relative_to(staging) if staging in f.parents else f for f in files]
    for final, f in zip(finals, files):
        if final != f:
            check_output_path(final)  # never an input (the model, its data file) of this operation
    for final, f in zip(finals, files):
        if final != f:
            os.replace(f, final)
        placed.append(final)
    return placed


def _convert_and_verify(model, t: Target, out: Path, tmp: Path, staging: Path, start: float, *, verify, inputs,
                        dims, atol, rtol, seed, keep_on_mismatch, precision="fp32", calibration=None,
                        tolerance=None) -> ConvertReport:
    from onnxdeploy import _io as io

    folder = out.parent if str(out.parent) else Path(".")
    if isinstance(model, (str, os.PathLike)):
        src = Path(model)
        io.as_proto(src)  # validate the file first
    else:
        src = Path(tmp) / "model.onnx"
        io.save(io.as_model(model), src)
    if dims:
        t.dims = dict(dims)  # used by targets that must print fixed shapes (ascend)
    staged, notes, command = t.convert(src, staging / out.name, precision=precision, calibration=calibration)
    staged = [Path(f) for f in staged]
    final = [folder / f.relative_to(staging) if staging in f.parents else f for f in staged]
    if command:
        command = command.replace(str(staging / out.name), str(out)).replace(str(staging), str(folder))
    seconds = time.perf_counter() - start
    report = ConvertReport(t.name, str(final[0]) if final else None, [str(f) for f in final],
                           converted=t.name != "ascend", seconds=seconds, command=command, notes=list(notes),
                           precision=precision)
    files = staged
    kept = "files kept for inspection: " + ", ".join(report.files) if keep_on_mismatch else \
        "nothing was written; --keep-on-mismatch keeps the artefact for inspection"
    same_model = t.name == "onnxruntime" and precision == "fp32" and tolerance is None  # the ONNX file itself
    if verify and report.converted and not same_model:
        report.parity = _verify_artifact(src, files[0], t, inputs=inputs, dims=dims, atol=atol, rtol=rtol,
                                         seed=seed, notes=report.notes, precision=precision, tolerance=tolerance)
        if not report.parity.passed:
            if keep_on_mismatch:
                _publish(files, staging, folder)
            if report.parity.errors and not report.parity.comparisons:
                raise UnsupportedError(f"the {t.name} artefact does not run: {report.parity.errors[0]}",
                                       hint=f"{kept}; --no-verify skips this run")
            raise OutputsDisagree(f"{t.name} artefact differs from onnxruntime: {report.parity.failures()[0]}",
                                  hint=kept)
    _publish(files, staging, folder)
    return report


__all__ = ["PRECISIONS", "PRECISION_CHOICES", "check_precision", "normalize_precision", "SUFFIXES", "TARGET_NAMES", "artifact_interface", "TARGETS", "CheckReport", "ConvertReport", "Problem", "Target", "check", "convert", "get_target",
           "run_artifact", "run_on_backend", "target_for_artifact", "BackendRun"]
