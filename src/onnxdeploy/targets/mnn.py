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
        import tempfile

        require("MNN", extra="mnn", purpose="converting to MNN")
        out = self.artifact_path(output)
        notes = ["converted by MNN's converter module in a child process (no console script, no logging SDK)"]
        with tempfile.TemporaryDirectory(prefix="onnxdeploy-mnn-") as work:
            source, gelus = model_path, 0
            if precision == "fp32":  # MNN's fused GELU kernel is approximate: convert the exact erf form instead
                source, gelus = exact_gelu(model_path, Path(work))
            if gelus:
                notes.append(f"GELU x{gelus} converted as x*0.5*(1+erf(x/sqrt(2))) with --useGeluApproximation 0: "
                             f"MNN's GELU kernel is approximate (max abs {GELU_KERNEL_ERROR:.1e} from the exact "
                             f"GELU), which put a 12-layer BERT-base 1.06e-3 off onnxruntime")
            proc = self._convert(source, out, precision, calibration, notes, exact_erf=bool(gelus))
        if proc.returncode != 0 or not out.exists():
            raise UnsupportedError(f"MNN could not convert the model: {_reason(proc.stdout + proc.stderr)}",
                                   hint="run `onnxdeploy check MODEL --target mnn` for the operators")
        return [out], notes, None

    @staticmethod
    def _convert(source: Path, out: Path, precision: str, calibration, notes: list, *, exact_erf: bool):
        args = ["-f", "ONNX", "--modelFile", str(source), "--MNNModel", str(out), "--bizCode", "onnxdeploy"]
        if exact_erf:  # without it MNN's converter fuses the erf form back into its approximate GELU
            args += ["--useGeluApproximation", "0"]
        if precision == "int8":
            args += ["--weightQuantBits", "8"]
            notes.append("int8: MNN weight quantization (int8 weights, per channel, symmetric; float activations)")
            if calibration:
                notes.append("calibration data is not used: MNN's weight quantization needs none")
        return _converter(args, what="the MNN converter")

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


# max abs difference between MNN 3.6.1's GELU kernel (ONNX Gelu, or the erf form it fuses) and the exact GELU over
# [-6, 6] (onnxruntime: 4.5e-7); measured with MNN's CPU backend at precision High and Normal alike
GELU_KERNEL_ERROR = 4.7e-4


def exact_gelu(model_path: Path, work: Path) -> tuple[Path, int]:
    """``model_path`` with every exact ``Gelu`` (``approximate="none"``, float32) of the main graph written as
    ``Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5)``, saved in ``work``; ``(model_path, 0)`` when there is none.
    MNN keeps that form exact when converted with ``--useGeluApproximation 0``, while its GELU kernel is not."""
    import math

    from onnx import TensorProto, helper

    from onnxdeploy._io import load_proto, save

    header = load_proto(model_path)
    if not any(_exact_gelu_node(n) for n in header.graph.node):
        return model_path, 0
    proto = load_proto(model_path, load_weights=True)
    types = {v.name: v.type.tensor_type.elem_type for v in [*proto.graph.input, *proto.graph.value_info]}
    nodes, count, prefix = [], 0, "onnxdeploy_mnn_gelu"
    for node in proto.graph.node:
        if not _exact_gelu_node(node) or types.get(node.input[0], TensorProto.FLOAT) != TensorProto.FLOAT:
            nodes.append(node)
            continue
        x, y, k = node.input[0], node.output[0], f"{prefix}_{count}"
        nodes += [helper.make_node("Div", [x, f"{prefix}_sqrt2"], [f"{k}_d"], name=f"{k}_div"),
                  helper.make_node("Erf", [f"{k}_d"], [f"{k}_e"], name=f"{k}_erf"),
                  helper.make_node("Add", [f"{k}_e", f"{prefix}_one"], [f"{k}_a"], name=f"{k}_add"),
                  helper.make_node("Mul", [x, f"{k}_a"], [f"{k}_m"], name=f"{k}_mul"),
                  helper.make_node("Mul", [f"{k}_m", f"{prefix}_half"], [y], name=f"{k}_half")]
        count += 1
    if not count:
        return model_path, 0
    proto.graph.initializer.extend(helper.make_tensor(f"{prefix}_{n}", TensorProto.FLOAT, [], [v])
                                   for n, v in (("sqrt2", math.sqrt(2.0)), ("one", 1.0), ("half", 0.5)))
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    out = work / Path(model_path).name
    save(proto, out)
    return out, count


def _exact_gelu_node(node) -> bool:
    approx = next((a.s for a in node.attribute if a.name == "approximate"), b"none")
    return node.op_type == "Gelu" and node.domain in ("", "ai.onnx") and approx == b"none"


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
