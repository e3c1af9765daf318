"""What every deployment target declares (opsets, operators, dtypes) and the two things it can do: convert and run.

A :class:`Target` is a small class per engine. ``supported_ops()`` returns the ``(domain, op_type)`` pairs the
engine accepts (``None`` when it cannot be known here), ``dtypes`` the element types it computes with, ``opsets``
the range of default-domain opsets it reads. ``convert`` writes the engine's artefact, ``run`` executes one.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from onnxdeploy.errors import UnsupportedError, UserInputError
from onnxdeploy._suggest import did_you_mean

# ONNX element types by their lower-case names, as in onnx_ir.DataType names
ALL_DTYPES = (
    "float32", "float16", "bfloat16", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
    "int64", "uint64", "bool", "string",
)


@dataclass
class Problem:
    """One reason a target refuses (or may refuse) a model, with the nodes or values that have it."""

    kind: str  # "op", "dtype", "opset", "domain"
    what: str  # the op type, dtype name or opset
    nodes: list[str]
    detail: str
    fix: str | None = None  # the legalize step that can fix it, when one exists
    severity: str = "error"  # "error" (the target refuses) or "warning" (converted with a cast or fallback)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class CheckReport:
    """Everything that stands between a model and a target."""

    target: str
    model: str
    opset: int | None
    problems: list[Problem]
    notes: list[str] = field(default_factory=list)
    ops_checked: int = 0
    can_convert_here: bool = True
    convert_note: str = ""

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def supported(self) -> bool:
        return not self.errors

    @property
    def fixable(self) -> list[Problem]:
        return [p for p in self.errors if p.fix]

    def summary(self) -> str:
        if self.supported:
            return f"{self.target}: supported ({self.ops_checked} nodes checked)"
        unfix = len(self.errors) - len(self.fixable)
        return (f"{self.target}: {len(self.errors)} problem(s), {len(self.fixable)} fixable by `onnxdeploy legalize`,"
                f" {unfix} not")

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "model": self.model,
            "opset": self.opset,
            "supported": self.supported,
            "summary": self.summary(),
            "ops_checked": self.ops_checked,
            "can_convert_here": self.can_convert_here,
            "convert_note": self.convert_note,
            "problems": [p.to_dict() for p in self.problems],
            "notes": self.notes,
        }


@dataclass
class ConvertReport:
    """What :func:`onnxdeploy.targets.convert` wrote and how close the artefact is to onnxruntime."""

    target: str
    output: str | None
    files: list[str]
    converted: bool
    seconds: float
    parity: object | None = None  # numerics.Comparison against onnxruntime on the ONNX input
    command: str | None = None  # the command to run elsewhere (ascend, tensorrt without GPU)
    notes: list[str] = field(default_factory=list)
    precision: str = "fp32"  # what the artefact computes in; parity was judged with this precision's metric

    def metric_values(self) -> str:
        """The measured figures of the precision's metric, worst over the input sets: ``cosine 0.99999, rel L2
        0.0021, top-1 100%`` (bf16/fp16/int8) or ``max abs 1.7e-06, max rel 3e-05`` (fp32); "" when not verified."""
        comps = list(getattr(self.parity, "comparisons", None) or [])
        if not comps:
            return ""
        if self.precision == "fp32":
            return (f"max abs {max(c.max_abs for c in comps):.3g}, max rel {max(c.max_rel for c in comps):.3g}")
        cos = [c.min_cosine for c in comps if c.min_cosine is not None]
        l2 = [c.max_rel_l2 for c in comps if c.max_rel_l2 is not None]
        top1 = [c.min_top1 for c in comps if c.min_top1 is not None]
        parts = ([f"cosine {min(cos):.6f}"] if cos else []) + ([f"rel L2 {max(l2):.3g}"] if l2 else [])
        return ", ".join(parts + ([f"top-1 {100 * min(top1):.1f}%"] if top1 else []))

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "precision": self.precision,
            "metric_values": self.metric_values(),
            "output": self.output,
            "files": self.files,
            "converted": self.converted,
            "seconds": round(self.seconds, 4),
            "parity": self.parity.to_dict() if self.parity is not None else None,
            "command": self.command,
            "notes": self.notes,
        }


class Target:
    """Base class: override the class attributes and ``supported_ops``/``convert``/``run`` as the engine allows."""

    name = ""
    description = ""
    opsets: tuple[int, int] = (7, 23)
    dtypes: frozenset[str] = frozenset(ALL_DTYPES)
    suffix = ".onnx"
    source = ""  # where the operator list comes from
    converts_onnx = True  # False: builds from the PyTorch module (ExecuTorch), so `--target auto` on ONNX skips it
    # The precisions ``convert`` can build on this machine (a subset of PRECISIONS), fp32 first. A target that builds
    # more overrides this (class attribute, or a property when it depends on the machine or installed packages).
    precisions: tuple[str, ...] = ("fp32",)

    # ------------------------------------------------------------------ support
    def supported_ops(self) -> set[tuple[str, str]] | None:
        return None

    def op_dtype_problem(self, node, opset: int) -> str | None:
        """A reason this node's input/output dtypes are not implemented, or None (targets with per-op data)."""
        return None

    def available(self) -> tuple[bool, str]:
        """Whether this machine can convert to (and run) the target, and why not."""
        return True, ""

    @property
    def has_int64(self) -> bool:
        return "int64" in self.dtypes

    # ------------------------------------------------------------------ convert and run
    def artifact_path(self, output: str | os.PathLike) -> Path:
        out = Path(output)
        return out if out.suffix == self.suffix else out.with_suffix(self.suffix)

    def convert(self, model_path: Path, output: Path, *, precision: str = "fp32",
                calibration: Sequence[Mapping[str, np.ndarray]] | None = None
                ) -> tuple[list[Path], list[str], str | None]:
        """Write the artefact for the ONNX file ``model_path``; return (files, notes, command).

        ``precision`` is one of :attr:`precisions` (``targets.convert`` refuses others before calling this);
        ``calibration`` is a list of feed dicts (input name -> array) for int8 builds, or None (then the target
        synthesizes what it needs, or refuses int8 with a hint to pass ``--calibration``).
        """
        raise UnsupportedError(f"target {self.name!r} cannot convert models")

    def run(self, artifact: Path, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise UnsupportedError(f"target {self.name!r} cannot run artefacts on this machine")

    def artifact_precision(self, artifact: Path) -> str | None:
        """The precision ``artifact`` was built at when the artefact records it (OpenVINO's rt_info), else None."""
        return None

    def runner(self, artifact: Path, *, threads: int | None = 1):
        """A callable ``feeds -> outputs`` over ``artifact`` loaded (compiled) once, for verifying and timing many
        runs (``deploy --precision auto``). Default: :meth:`run` per call; override to load once."""
        return lambda feeds: self.run(Path(artifact), feeds)

    def info(self) -> dict:
        ok, why = self.available()
        ops = self.supported_ops()
        return {
            "name": self.name,
            "description": self.description,
            "opsets": list(self.opsets),
            "dtypes": sorted(self.dtypes),
            "operators": None if ops is None else len(ops),
            "artifact": self.suffix,
            "precisions": list(self.precisions),
            "available_here": ok,
            "why_not": why,
            "source": self.source,
        }


PRECISIONS = ("fp32", "bf16", "fp16", "int8")
"""Every precision ``--precision`` names (``auto`` picks among a target's :attr:`Target.precisions`)."""
PRECISION_CHOICES = PRECISIONS + ("auto",)


def normalize_precision(precision: str | None) -> str:
    """``"FP16"``/``"float16"``/``"half"`` -> ``"fp16"``, ``None`` -> ``"fp32"``; an unknown name is an error naming the
    closest ones."""
    if precision is None:
        return "fp32"
    aliases = {"float32": "fp32", "f32": "fp32", "float": "fp32", "float16": "fp16", "f16": "fp16", "half": "fp16",
               "bfloat16": "bf16", "qint8": "int8", "i8": "int8", "u8": "int8", "uint8": "int8"}
    key = str(precision).strip().lower()
    key = aliases.get(key, key)
    if key not in PRECISION_CHOICES:
        raise UserInputError(f"unknown precision {precision!r}",
                             hint=did_you_mean(str(precision), PRECISION_CHOICES, what="precisions"))
    return key


def check_precision(target: "Target", precision: str | None) -> str:
    """``precision`` normalized, or one line naming the precisions ``target`` builds here."""
    p = normalize_precision(precision)
    if p == "auto":
        raise UserInputError("precision 'auto' picks among several artefacts; convert builds one",
                             hint="use `onnxdeploy deploy --precision auto`, or one of "
                                  + ", ".join(target.precisions))
    if p not in target.precisions:
        raise UnsupportedError(f"target {target.name} cannot build {p} here; it builds "
                               + ", ".join(target.precisions),
                               hint=f"use --precision {' or --precision '.join(target.precisions)}")
    return p


class ArtifactCache:
    """Engine objects (interpreters, loaded programs) built once per artefact file version (path, mtime, size), for
    engines that load slowly; at most ``size`` kept. Thread-safe."""

    def __init__(self, size: int = 8):
        self.size = size
        self._items: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def get(self, path: str | os.PathLike, load):
        """``load(path)``'s result for this version of the file, built on first use; a missing file is one line."""
        path = Path(path)
        if not path.exists():
            raise UserInputError(f"{path}: no such file")
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
        with self._lock:
            if key not in self._items:
                if len(self._items) >= self.size:
                    self._items.clear()
                self._items[key] = load(path)
            return self._items[key]


def onnx_ops(opset: int, domain: str = "") -> set[tuple[str, str]]:
    """Every op the onnx package defines in ``domain`` at ``opset`` (the fallback operator list)."""
    from onnx import defs

    out = set()
    for schema in defs.get_all_schemas_with_history():
        if schema.domain == domain and schema.since_version <= opset and not schema.deprecated:
            out.add((domain, schema.name))
    return out


def has_function_body(op: str, opset: int, domain: str = "") -> bool:
    """True when ONNX defines ``op`` as a function (runtimes that inline functions run it without a kernel)."""
    from onnx import defs

    try:
        schema = defs.get_schema(op, opset, domain)
    except Exception:  # noqa: BLE001
        return False
    return bool(schema.has_function or schema.has_context_dependent_function)


def first_names(names: Sequence[str], n: int = 8) -> list[str]:
    return list(names[:n]) + ([f"... {len(names) - n} more"] if len(names) > n else [])


# ---------------------------------------------------------------- the one table of target names

TARGET_NAMES = ("onnxruntime", "openvino", "ort-mobile", "tensorrt", "ascend", "mnn", "ncnn", "tflite", "executorch", "triton")
_CLASSES = {
    "onnxruntime": ("onnxdeploy.targets.onnxruntime", "OnnxRuntimeTarget"),
    "openvino": ("onnxdeploy.targets.openvino", "OpenVINOTarget"),
    "ort-mobile": ("onnxdeploy.targets.ort_mobile", "OrtMobileTarget"),
    "tensorrt": ("onnxdeploy.targets.tensorrt", "TensorRTTarget"),
    "ascend": ("onnxdeploy.targets.ascend", "AscendTarget"),
    "mnn": ("onnxdeploy.targets.mnn", "MNNTarget"),
    "ncnn": ("onnxdeploy.targets.ncnn", "NcnnTarget"),
    "tflite": ("onnxdeploy.targets.tflite", "TFLiteTarget"),
    "executorch": ("onnxdeploy.targets.executorch", "ExecuTorchTarget"),
    "triton": ("onnxdeploy.targets.triton", "TritonTarget"),  # a model repository folder (no suffix)
}
TARGETS = TARGET_NAMES  # the names `--target` accepts
SUFFIXES = {".onnx": "onnxruntime", ".xml": "openvino", ".ort": "ort-mobile", ".engine": "tensorrt",
            ".plan": "tensorrt", ".om": "ascend", ".mnn": "mnn", ".param": "ncnn",
            ".tflite": "tflite", ".pte": "executorch"}


def get_target(name: str | Target) -> Target:
    """The :class:`Target` called ``name``; an unknown name is an error naming the closest ones."""
    import importlib

    if isinstance(name, Target):
        return name
    key = str(name).lower().replace("_", "-")
    key = {"ort": "onnxruntime", "ov": "openvino", "trt": "tensorrt", "cann": "ascend", "mobile": "ort-mobile"}.get(
        key, key)
    if key not in _CLASSES:
        raise UserInputError(f"unknown target {name!r}", hint=did_you_mean(str(name), TARGET_NAMES, what="targets"))
    module, cls = _CLASSES[key]
    return getattr(importlib.import_module(module), cls)()


def target_for_artifact(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise UserInputError(f"{path}: cannot tell the target from the suffix {suffix or '(none)'}",
                             hint=f"pass the target explicitly; known suffixes: {', '.join(SUFFIXES)}")
    return SUFFIXES[suffix]


