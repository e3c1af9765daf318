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
from typing import TYPE_CHECKING, Mapping

from onnxdeploy.errors import OutputsDisagree, UnsupportedError, UserInputError
from onnxdeploy.targets.base import CheckReport, ConvertReport, Problem, Target

if TYPE_CHECKING:
    import numpy as np

    from onnxdeploy.io import ModelLike

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
) -> ConvertReport:
    """Convert ``model`` for ``target`` at ``output`` and compare the artefact's outputs with onnxruntime's.

    Raises :class:`OutputsDisagree` when the artefact differs beyond ``atol``/``rtol`` (the files stay, so they
    can be inspected; the report names them).
    """
    import tempfile

    from onnxdeploy import io
    from onnxdeploy.numerics import compare_outputs
    from onnxdeploy.run import create_session, prepare_inputs, run_session

    t = get_target(target)
    out = Path(output)
    if out.is_dir():
        raise UserInputError(f"{out} is a folder; give a file name such as {out / ('model' + t.suffix)}")
    if not (out.parent if str(out.parent) else Path(".")).exists():
        raise UserInputError(f"{out.parent}: output folder does not exist", hint=f"mkdir -p {out.parent}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="onnxdeploy-convert-") as tmp:
        if isinstance(model, (str, os.PathLike)):
            src = Path(model)
            io.as_proto(src)  # validate the file first
        else:
            src = Path(tmp) / "model.onnx"
            io.save(io.as_model(model), src)
        if dims:
            t.dims = dict(dims)  # used by targets that must print fixed shapes (ascend)
        files, notes, command = t.convert(src, out)
        seconds = time.perf_counter() - start
        report = ConvertReport(t.name, str(files[0]) if files else None, [str(f) for f in files],
                               converted=t.name != "ascend", seconds=seconds, command=command, notes=list(notes))
        if verify and report.converted and t.name != "onnxruntime":
            feeds = prepare_inputs(src, inputs=inputs, dims=dims, seed=seed)
            reference = run_session(create_session(str(src), threads=1), feeds)
            got = run_artifact(files[0], feeds, t.name)
            report.parity = compare_outputs(reference, got, atol=atol, rtol=rtol, label=f"{t.name} vs onnxruntime")
            if not report.parity.passed:
                raise OutputsDisagree(f"{t.name} artefact differs from onnxruntime: {report.parity.summary()}",
                                      hint=f"files kept for inspection: {', '.join(report.files)}")
    return report


__all__ = ["TARGETS", "CheckReport", "ConvertReport", "Problem", "Target", "check", "convert", "get_target",
           "run_artifact", "target_for_artifact"]
