"""MNN: convert ONNX to ``.mnn`` with MNN's own converter and run it with MNN's Python runtime.

The converter is MNN's C++ converter called through its Python extension (``_tools.mnnconvert``) in a child process
(:func:`onnxdeploy._proc.run_child`): a converter crash or hang does not take us down. The ``mnnconvert``/``mnn``
console scripts are never used: on first use they install a logging SDK and send machine and model details to a
remote service (``MNN/tools/utils/log.py``); the extension function itself does neither.

Operator support comes from the converter (``--OP`` lists the ONNX operators it converts). ``int8`` is MNN's weight
quantization (``--weightQuantBits 8``): int8 weights, float activations.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from onnxdeploy.errors import UnsupportedError, require
from onnxdeploy.targets.base import Target

CONVERT_TIMEOUT_S = 600.0
_INSTALL = "pip install 'onnxdeploy[mnn]'"


class MNNTarget(Target):
    name = "mnn"
    description = "MNN (.mnn), CPU; int8 = weight quantization"
    opsets = (7, 23)
    dtypes = frozenset({"float32", "float16", "int8", "uint8", "int32", "int64", "bool"})
    suffix = ".mnn"
    source = "MNN converter (MNNConvert -f ONNX --OP, through MNN's Python extension)"
    precisions = ("fp32", "int8")
    threads = 1  # MNN CPU threads used by run(); benchmarks set 2
    slower_because = ("MNN's x86 CPU kernels trail onnxruntime's MLAS on matmul-heavy graphs (see "
                      "benchmarks/results/engines.md); int8 here is weight-only: weights are widened at run time, "
                      "which saves size, not time")

    def available(self) -> tuple[bool, str]:
        import importlib.util

        if importlib.util.find_spec("MNN") is None or importlib.util.find_spec("_tools") is None:
            return False, f"the MNN package is not installed ({_INSTALL})"
        return True, ""

    def supported_ops(self) -> set[tuple[str, str]] | None:
        if not self.available()[0]:
            return None
        return {("", op) for op in converter_ops()}

    # ------------------------------------------------------------------ convert
    def convert(self, model_path: Path, output: Path, *, precision: str = "fp32",
                calibration: Sequence[Mapping[str, np.ndarray]] | None = None):
        require("MNN", extra="mnn", purpose="converting to MNN")
        out = self.artifact_path(output)
        args = ["-f", "ONNX", "--modelFile", str(model_path), "--MNNModel", str(out), "--bizCode", "onnxdeploy"]
        notes = ["converted by MNN's converter module in a child process (no console script, no logging SDK)"]
        if precision == "int8":
            args += ["--weightQuantBits", "8"]
            notes.append("int8: MNN weight quantization (int8 weights, per channel, symmetric; float activations)")
            if calibration:
                notes.append("calibration data is not used: MNN's weight quantization needs none")
        proc = _converter(args, what="the MNN converter")
        if proc.returncode != 0 or not out.exists():
            raise UnsupportedError(f"MNN could not convert the model: {_reason(proc.stdout + proc.stderr)}",
                                   hint="run `onnxdeploy check MODEL --target mnn` for the operators")
        return [out], notes, None

    # ------------------------------------------------------------------ run
    def run(self, artifact: Path, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        mnn = require("MNN", extra="mnn", purpose="running an MNN model")
        F = mnn.expr
        module, in_names, out_names = _module(str(artifact), os.path.getmtime(artifact), int(self.threads))
        missing = [n for n in in_names if n not in feeds]
        if missing:
            raise UnsupportedError(f"{artifact}: no value for the MNN input(s) {', '.join(missing)}")
        # the arrays must stay alive while MNN reads them: MNN's const() may alias the numpy buffer
        arrays = [_mnn_array(feeds[n]) for n in in_names]
        values = [F.const(a, list(a.shape), F.NCHW, _mnn_dtype(F, a)) for a in arrays]
        outputs = module.forward(values)
        result = {}
        for name, var in zip(out_names, outputs):
            if var.data_format == F.NC4HW4:
                var = F.convert(var, F.NCHW)
            result[name] = np.array(var.read(), copy=True)
        del values, arrays
        return result

    def interface(self, artifact: Path, reference):
        """The artefact's declared input and output names (from the .mnn), with the reference's dtypes and dims for
        names the artefact keeps (MNN does not store ONNX types); None without MNN."""
        if not self.available()[0]:
            return None
        _, in_names, out_names = _module(str(artifact), os.path.getmtime(artifact), int(self.threads))
        return header_from_names(reference, in_names, out_names)


def header_from_names(reference, in_names: Sequence[str], out_names: Sequence[str]):
    """A header-only ModelProto with ``in_names``/``out_names``; types and dims copied from ``reference`` where a name
    matches (an unknown name gets an undefined type, so the verifier reports it)."""
    import onnx

    from onnxdeploy._run import model_structure

    ref = model_structure(reference)
    by_name = {v.name: v for v in [*ref.graph.input, *ref.graph.output]}

    def value(name: str):
        return by_name[name] if name in by_name else onnx.helper.make_tensor_value_info(name, 0, None)

    graph = onnx.GraphProto(name="artefact")
    graph.input.extend(value(n) for n in in_names)
    graph.output.extend(value(n) for n in out_names)
    return onnx.ModelProto(ir_version=ref.ir_version or 8, graph=graph)


def _mnn_array(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.int64 or a.dtype == np.bool_:
        a = a.astype(np.int32)  # MNN computes integers in int32 (its converter narrows int64)
    elif a.dtype == np.float64 or a.dtype == np.float16:
        a = a.astype(np.float32)
    return np.ascontiguousarray(a)


def _mnn_dtype(F, a: np.ndarray):
    return {np.dtype(np.int32): F.int, np.dtype(np.uint8): F.uint8, np.dtype(np.int8): F.int8}.get(a.dtype, F.float)


@functools.lru_cache(maxsize=4)
def _module(path: str, mtime: float, threads: int):
    """The loaded MNN module of ``path`` (cached per file version and thread count) and its I/O names."""
    import MNN

    info = MNN.nn.load_module_from_file(path, [], []).get_info()
    ins, outs = list(info["inputNames"]), list(info["outputNames"])
    module = MNN.nn.load_module_from_file(path, ins, outs, thread_num=threads,
                                          precision_mode=MNN.expr.PrecisionMode.High)
    return module, ins, outs


@functools.lru_cache(maxsize=1)
def converter_ops() -> frozenset[str]:
    """The ONNX operators MNN's converter converts (``MNNConvert -f ONNX --OP``), asked once per process."""
    proc = _converter(["-f", "ONNX", "--OP"], what="the MNN operator list", timeout=120.0)
    lines = [ln.strip() for ln in proc.stdout.splitlines()]
    if "Dump ONNX support Ops" in lines:
        lines = lines[lines.index("Dump ONNX support Ops") + 1:]
    ops = frozenset(ln for ln in lines if ln and ln.replace("_", "").isalnum() and ln[0].isupper())
    if not ops:
        raise UnsupportedError(f"MNN's converter did not list its operators: {_reason(proc.stdout + proc.stderr)}")
    return ops


def _converter(args: list[str], *, what: str, timeout: float = CONVERT_TIMEOUT_S):
    from onnxdeploy._proc import run_child

    return run_child([sys.executable, "-m", "onnxdeploy.targets.mnn", json.dumps(args)], timeout=timeout,
                     what=what)


def _reason(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "device supports" not in ln]
    errors = [ln for ln in lines if any(w in ln.lower() for w in ("error", "not support", "fail", "can't"))]
    return (errors or lines or ["no output"])[-1]


def _main(args: list[str]) -> int:
    """The child process: MNN's converter through its extension module, never its console scripts."""
    import _tools  # MNN's converter extension; importing it sends nothing anywhere

    ok = _tools.mnnconvert(["MNNConvert", *args])
    return 0 if ok in (True, 0, None) else 1


if __name__ == "__main__":
    sys.exit(_main(json.loads(sys.argv[1])))
