"""Deployment targets: what each engine supports, how to convert a model for it, and how to run the result.

>>> from onnxdeploy import targets
>>> targets.check("model.onnx", "openvino").supported
>>> targets.convert("model.onnx", "openvino", "out/model.xml").parity.summary()
>>> targets.run_artifact("out/model.xml", feeds)          # target guessed from the suffix
"""

from __future__ import annotations

import difflib
import os
import time
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from onnxdeploy.errors import OnnxDeployError, OutputsDisagree, UnsupportedError, UserInputError
from onnxdeploy.targets.base import CheckReport, ConvertReport, Problem, Target

if TYPE_CHECKING:
    import numpy as np

    from onnxdeploy.io import ModelLike
    from onnxdeploy.numerics import Comparison

TARGET_NAMES = ("onnxruntime", "openvino", "ort-mobile", "tensorrt", "ascend")
_CLASSES = {
    "onnxruntime": ("onnxdeploy.targets.onnxruntime", "OnnxRuntimeTarget"),
    "openvino": ("onnxdeploy.targets.openvino", "OpenVINOTarget"),
    "ort-mobile": ("onnxdeploy.targets.ort_mobile", "OrtMobileTarget"),
    "tensorrt": ("onnxdeploy.targets.tensorrt", "TensorRTTarget"),
    "ascend": ("onnxdeploy.targets.ascend", "AscendTarget"),
}
TARGETS = TARGET_NAMES  # the names `--target` accepts
SUFFIXES = {".onnx": "onnxruntime", ".xml": "openvino", ".ort": "ort-mobile", ".engine": "tensorrt",
            ".plan": "tensorrt", ".om": "ascend"}


def get_target(name: str | Target) -> Target:
    """The :class:`Target` called ``name``; an unknown name is an error naming the closest ones."""
    import importlib

    if isinstance(name, Target):
        return name
    key = str(name).lower().replace("_", "-")
    key = {"ort": "onnxruntime", "ov": "openvino", "trt": "tensorrt", "cann": "ascend", "mobile": "ort-mobile"}.get(
        key, key)
    if key not in _CLASSES:
        close = difflib.get_close_matches(str(name), TARGET_NAMES, n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else f"targets are: {', '.join(TARGET_NAMES)}"
        raise UserInputError(f"unknown target {name!r}", hint=hint)
    module, cls = _CLASSES[key]
    return getattr(importlib.import_module(module), cls)()


def check(model: "ModelLike", target: str | Target = "onnxruntime", **options) -> CheckReport:
    """Every op, dtype and opset problem of ``model`` on ``target`` (see :func:`onnxdeploy.check.check`)."""
    from onnxdeploy.check import check as _check

    return _check(model, target, **options)


def target_for_artifact(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise UserInputError(f"{path}: cannot tell the target from the suffix {suffix or '(none)'}",
                             hint=f"pass the target explicitly; known suffixes: {', '.join(SUFFIXES)}")
    return SUFFIXES[suffix]


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

    def to_dict(self) -> dict:
        from onnxdeploy.run import _array_summary

        return {
            "target": self.target,
            "inputs": {k: _array_summary(v) for k, v in self.inputs.items()},
            "outputs": {k: _array_summary(v) for k, v in self.outputs.items()},
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
    **input_options,
) -> BackendRun:
    """Run ``artifact`` (an .onnx or a converted .xml/.ort/...) on ``backend`` and compare with onnxruntime.

    Inputs come from ``input_options`` (as :func:`onnxdeploy.run.prepare_inputs`) and follow the ONNX model: the
    artefact itself when it is ``.onnx``, else ``reference`` (the ONNX file it was converted from), which is
    required. Beyond ``atol``/``rtol`` raises :class:`OutputsDisagree`.
    """
    from onnxdeploy.numerics import compare_outputs
    from onnxdeploy.run import create_session, prepare_inputs, run_session

    path = Path(artifact)
    target = get_target(backend or target_for_artifact(path))
    onnx_model = Path(reference) if reference is not None else (path if path.suffix == ".onnx" else None)
    if onnx_model is None:
        raise UserInputError(f"{path}: the {target.name} artefact carries no ONNX input description",
                             hint="pass --reference model.onnx, the ONNX file it was converted from")
    feeds = prepare_inputs(onnx_model, **input_options)
    outputs = run_artifact(path, feeds, target.name)
    parity = None
    if verify and not (target.name == "onnxruntime" and onnx_model == path):
        expected = run_session(create_session(str(onnx_model)), feeds)
        parity = compare_outputs(expected, outputs, atol=atol, rtol=rtol, label=f"{target.name} vs onnxruntime")
        if not parity.passed:
            raise OutputsDisagree(f"{target.name} outputs differ from onnxruntime: {parity.summary()}",
                                  hint="loosen --atol/--rtol if the difference is expected")
    return BackendRun(target.name, outputs, feeds, parity)


def convert(
    model: "ModelLike",
    target: str | Target,
    output: str | os.PathLike,
    *,
    verify: bool = True,
    inputs: Mapping[str, "np.ndarray"] | None = None,
    dims: Mapping[str, int] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    seed: int = 0,
    keep_on_mismatch: bool = False,
) -> ConvertReport:
    """Convert ``model`` for ``target`` at ``output`` and compare the artefact's outputs with onnxruntime's.

    The artefact is written to a private folder beside ``output``, verified there, and only then renamed into
    place. Raises :class:`OutputsDisagree` (or :class:`UnsupportedError` when the artefact does not run) with
    nothing left behind, unless ``keep_on_mismatch`` moves the files into place for inspection.
    """
    import tempfile

    t = get_target(target)
    out = Path(output)
    if out.is_dir():
        raise UserInputError(f"{out} is a folder; give a file name such as {out / ('model' + t.suffix)}")
    if not (out.parent if str(out.parent) else Path(".")).exists():
        raise UserInputError(f"{out.parent}: output folder does not exist", hint=f"mkdir -p {out.parent}")
    start = time.perf_counter()
    folder = out.parent if str(out.parent) else Path(".")
    with tempfile.TemporaryDirectory(prefix="onnxdeploy-convert-") as tmp, \
            tempfile.TemporaryDirectory(prefix=".onnxdeploy-convert-", dir=folder) as staging:
        report = _convert_and_verify(model, t, out, Path(tmp), Path(staging), start, verify=verify, inputs=inputs,
                                     dims=dims, atol=atol, rtol=rtol, seed=seed, keep_on_mismatch=keep_on_mismatch)
    return report


def _publish(files: list[Path], staging: Path, folder: Path) -> list[Path]:
    placed = []
    for f in files:
        final = folder / f.relative_to(staging) if staging in f.parents else f
        if final != f:
            os.replace(f, final)
        placed.append(final)
    return placed


def _convert_and_verify(model, t: Target, out: Path, tmp: Path, staging: Path, start: float, *, verify, inputs,
                        dims, atol, rtol, seed, keep_on_mismatch) -> ConvertReport:
    import numpy as np

    from onnxdeploy import io
    from onnxdeploy.numerics import compare_outputs
    from onnxdeploy.run import create_session, prepare_inputs, run_session

    folder = out.parent if str(out.parent) else Path(".")
    if isinstance(model, (str, os.PathLike)):
        src = Path(model)
        io.as_proto(src)  # validate the file first
    else:
        src = Path(tmp) / "model.onnx"
        io.save(io.as_model(model), src)
    if dims:
        t.dims = dict(dims)  # used by targets that must print fixed shapes (ascend)
    staged, notes, command = t.convert(src, staging / out.name)
    staged = [Path(f) for f in staged]
    final = [folder / f.relative_to(staging) if staging in f.parents else f for f in staged]
    if command:
        command = command.replace(str(staging / out.name), str(out)).replace(str(staging), str(folder))
    seconds = time.perf_counter() - start
    report = ConvertReport(t.name, str(final[0]) if final else None, [str(f) for f in final],
                           converted=t.name != "ascend", seconds=seconds, command=command, notes=list(notes))
    files = staged
    kept = "files kept for inspection: " + ", ".join(report.files) if keep_on_mismatch else \
        "nothing was written; --keep-on-mismatch keeps the artefact for inspection"
    if verify and report.converted and t.name != "onnxruntime":
        feeds = prepare_inputs(src, inputs=inputs, dims=dims, seed=seed)
        reference = run_session(create_session(str(src), threads=1), feeds)
        try:
            got = run_artifact(files[0], feeds, t.name)
        except OnnxDeployError:
            raise
        except Exception as err:  # noqa: BLE001 - the engine's own exception types
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            if keep_on_mismatch:
                _publish(files, staging, folder)
            raise UnsupportedError(f"the {t.name} artefact does not run: {first[:300]}",
                                   hint=f"{kept}; --no-verify skips this run") from err
        if any(np.asarray(v).dtype == np.float16 for v in reference.values()) and (atol < 1e-2 or rtol < 1e-2):
            atol, rtol = max(atol, 1e-2), max(rtol, 1e-2)  # two engines' fp16 roundings differ by ~1e-3
            report.notes.append(f"float16 outputs: compared with atol {atol:g}, rtol {rtol:g}")
        report.parity = compare_outputs(reference, got, atol=atol, rtol=rtol, label=f"{t.name} vs onnxruntime")
        if not report.parity.passed:
            if keep_on_mismatch:
                _publish(files, staging, folder)
            raise OutputsDisagree(f"{t.name} artefact differs from onnxruntime: {report.parity.summary()}",
                                  hint=kept)
    _publish(files, staging, folder)
    return report


__all__ = ["TARGETS", "CheckReport", "ConvertReport", "Problem", "Target", "check", "convert", "get_target",
           "run_artifact", "run_on_backend", "target_for_artifact", "BackendRun"]
