"""onnxruntime (CPU execution provider): the default target and the reference every other target is compared to.

Supported operators and dtypes come from the kernels this onnxruntime build registers
(``onnxruntime.capi._pybind_state.get_all_opkernel_def()``), so the check matches what a session will accept.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Mapping

import numpy as np

from onnxdeploy.targets.base import Target

PROVIDER = "CPUExecutionProvider"


@functools.lru_cache(maxsize=4)
def kernel_table(provider: str = PROVIDER) -> dict[tuple[str, str], list[tuple[int, int, dict]]]:
    """``(domain, op) -> [(since_min, since_max, type_constraints)]`` for one execution provider."""
    from onnxruntime.capi import _pybind_state as C

    table: dict[tuple[str, str], list[tuple[int, int, dict]]] = {}
    for k in C.get_all_opkernel_def():
        if k.provider != provider:
            continue
        domain = "" if k.domain == "ai.onnx" else k.domain
        lo, hi = k.version_range
        table.setdefault((domain, k.op_name), []).append((lo, hi, dict(k.type_constraints)))
    return table


def ort_type(dtype) -> str:
    """onnxruntime's spelling of an ``onnx_ir.DataType``: ``tensor(float)``."""
    return f"tensor({dtype.name.lower()})"


class OnnxRuntimeTarget(Target):
    name = "onnxruntime"
    description = "onnxruntime, CPU execution provider (the reference)"
    suffix = ".onnx"
    source = "kernels registered by the installed onnxruntime (get_all_opkernel_def)"
    provider = PROVIDER

    @property
    def opsets(self) -> tuple[int, int]:  # type: ignore[override]
        starts = [lo for (d, _), ks in kernel_table(self.provider).items() if d == "" for lo, _, _ in ks]
        return (7, max(starts) if starts else 21)

    expands_functions = True  # ops ONNX defines as functions (Mish, Celu, ...) run through their body

    def supported_ops(self) -> set[tuple[str, str]]:
        return set(kernel_table(self.provider)) | {("", "Constant")}  # Constant is folded, it has no kernel

    def runs_upcast(self, node, opset: int) -> bool:
        """float16 inputs with no float16 kernel: onnxruntime's InsertCastTransformer runs them in float32."""
        return self._dtype_mismatch(node, opset, upcast=True) is not None

    def op_dtype_problem(self, node, opset: int) -> str | None:
        return self._dtype_mismatch(node, opset, upcast=False)

    def _dtype_mismatch(self, node, opset: int, *, upcast: bool) -> str | None:
        """The first input whose dtype no kernel takes; ``upcast`` selects float16 inputs whose float32 kernel
        exists (onnxruntime inserts Casts around those nodes, so they run) instead of the real refusals."""
        from onnx import defs

        kernels = kernel_table(self.provider).get((node.domain, node.op_type))
        if not kernels:
            return None  # reported as an unsupported op
        try:
            schema = defs.get_schema(node.op_type, opset, node.domain)
        except Exception:  # noqa: BLE001 - contrib ops have no onnx schema
            return None
        since = schema.since_version
        matching = [k for k in kernels if k[0] <= since <= k[1]]
        if not matching:
            if upcast:
                return None
            versions = ", ".join(f"{lo}-{hi if hi < 10**6 else 'latest'}" for lo, hi in sorted({(k[0], k[1]) for k in kernels}))
            return f"no kernel for {node.op_type} version {since} (kernels exist for versions {versions})"
        formals = list(schema.inputs)
        for i, value in enumerate(node.inputs):
            if value is None or value.dtype is None or not formals:
                continue
            formal = formals[min(i, len(formals) - 1)]
            allowed: set[str] = set()
            known = False
            for _, _, tc in matching:
                if formal.type_str in tc:
                    known = True
                    allowed.update(tc[formal.type_str])
            if known and ort_type(value.dtype) not in allowed:
                castable = value.dtype.name == "FLOAT16" and "tensor(float)" in allowed
                if castable != upcast:
                    continue
                return (f"input {i} ({value.name}) is {value.dtype.name.lower()}; the CPU kernel takes "
                        f"{', '.join(sorted(t[7:-1] for t in allowed))}")
        return None

    precisions = ("fp32", "fp16", "int8")

    def convert(self, model_path: Path, output: Path, *, precision: str = "fp32", calibration=None):
        from onnxdeploy import _io as io

        if precision == "int8":
            return self._int8(Path(model_path), Path(output), calibration)
        if precision == "fp16":
            return self._fp16(Path(model_path), Path(output))
        if Path(model_path).resolve() != Path(output).resolve():
            io.save(io.load(model_path), output)
        return [output], ["the ONNX model itself is the onnxruntime artefact"], None

    @staticmethod
    def _int8(model_path: Path, output: Path, calibration):
        """Static/dynamic int8 by :func:`onnxdeploy.quantize` (its choice by model kind); judged by the caller."""
        from onnxdeploy._quantize import quantize

        rep = quantize(str(model_path), output, calibration=calibration or None, verify=False, measure=False)
        notes = [f"int8 by onnxdeploy.quantize: {rep.mode} ({rep.format}), {rep.model_kind} model, calibration "
                 f"{rep.calibration}"]
        notes += [str(w) for w in rep.warnings][:3]
        return [output], notes, None

    @staticmethod
    def _fp16(model_path: Path, output: Path):
        """float16 weights and compute, float32 inputs/outputs (onnxruntime.transformers.float16, keep_io_types)."""
        from onnxruntime.transformers.float16 import convert_float_to_float16

        from onnxdeploy import _io as io

        proto = io.load_proto(model_path, load_weights=True)
        half = convert_float_to_float16(proto, keep_io_types=True, disable_shape_infer=False)
        io.save(half, output)
        return [output], ["fp16 weights and compute, fp32 inputs and outputs (keep_io_types); onnxruntime's CPU "
                          "kernels upcast ops they lack in fp16"], None

    def run(self, artifact: Path, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from onnxdeploy._run import create_session, run_session

        return run_session(create_session(str(artifact), threads=1), feeds)

    def runner(self, artifact: Path, *, threads: int | None = 1):
        from onnxdeploy._run import create_session, run_session

        session = create_session(str(artifact), threads=threads)
        return lambda feeds: run_session(session, feeds)

