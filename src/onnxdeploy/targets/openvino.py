"""OpenVINO: convert to OpenVINO IR (``.xml`` + ``.bin``) and run on the CPU plugin.

Support is asked of OpenVINO itself: its ONNX frontend converts what it knows and leaves ``ONNXFrameworkNode``
placeholders for operators it cannot convert (``FrontEnd.convert_partially``), then ``Core.query_model`` says which
of the converted operations the CPU plugin implements.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from onnxdeploy.errors import UnsupportedError, require
from onnxdeploy.targets.base import Target


QUERY_TIMEOUT_S = 300.0


class OpenVINOTarget(Target):
    name = "openvino"
    description = "OpenVINO IR (.xml/.bin), CPU plugin"
    opsets = (7, 22)  # ONNX frontend of OpenVINO 2025/2026 (docs: "Supported Operations - ONNX")
    dtypes = frozenset({"float32", "float16", "bfloat16", "float64", "int8", "uint8", "int16", "uint16", "int32",
                        "uint32", "int64", "uint64", "bool"})
    suffix = ".xml"
    source = "openvino ONNX frontend (convert_partially) + Core.query_model(model, 'CPU')"

    def available(self) -> tuple[bool, str]:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return False, "the openvino package is not installed (pip install 'onnxdeploy[openvino]')"
        return True, ""

    def query(self, model_path: Path) -> tuple[dict[str, list[str]], list[str]]:
        """``({op_type: [nodes]} the frontend could not convert, [ops the CPU plugin refuses])``.

        Runs in a subprocess: OpenVINO's frontend can crash the process on some unsupported graphs.
        """
        import json
        import sys

        from onnxdeploy._proc import run_child
        from onnxdeploy._bounds import check_subgraph_depth
        from onnxdeploy._io import load_proto

        check_subgraph_depth(load_proto(model_path))  # OpenVINO's frontend takes exponential time on deep nests
        # own process group, killed on timeout, on exit, on SIGTERM/SIGINT and (Linux) when this process is killed
        proc = run_child([sys.executable, "-m", "onnxdeploy.targets.openvino", str(model_path)],
                         timeout=QUERY_TIMEOUT_S, what="the OpenVINO support check")
        if proc.returncode != 0:
            why = f"signal {-proc.returncode}" if proc.returncode < 0 else _engine_reason(proc.stderr)
            raise UnsupportedError(f"OpenVINO failed on the model: {why}",
                                   hint="run `onnxdeploy check MODEL --target openvino --debug` for details")
        try:
            data = json.loads(proc.stdout)
        except ValueError as err:
            raise UnsupportedError("OpenVINO failed on the model: its support check gave no result") from err
        self.query_warning = data.get("warning")
        return data["missing"], data["refused"]

    @staticmethod
    def query_in_process(model_path: Path) -> tuple[dict[str, list[str]], list[str]]:
        ov = require("openvino", extra="openvino", purpose="checking a model for OpenVINO")
        from openvino.frontend import FrontEndManager

        fe = FrontEndManager().load_by_framework("onnx")
        input_model = fe.load(str(model_path))  # must outlive `partial`: its framework nodes point into it
        partial = fe.convert_partially(input_model)
        missing: dict[str, list[str]] = {}
        for op in partial.get_ordered_ops():
            if op.get_type_name() == "ONNXFrameworkNode":
                attrs = op.get_attributes()
                key = f"{attrs.get('ONNX_META_domain') or ''}::{attrs.get('ONNX_META_type', '?')}".lstrip(":")
                missing.setdefault(key, []).append(op.get_friendly_name())
        refused: list[str] = []
        if not missing:
            try:
                supported = ov.Core().query_model(partial, "CPU")
            except RuntimeError as err:  # e.g. the CPU plugin's int8 (LPT) passes on a QDQ graph read as is
                with offline():  # no telemetry (ovc sends it otherwise)
                    converted = ov.convert_model(str(model_path))  # what `convert` writes: more transformations
                supported = ov.Core().query_model(converted, "CPU")  # raises when this fails as well
                partial = converted
                OpenVINOTarget._last_warning = (
                    "the CPU plugin fails on the .onnx file read directly (" + _engine_reason(str(err))
                    + ") but runs the IR that `onnxdeploy convert --target openvino` writes: deploy the .xml")
            refused = [f"{op.get_type_name()}:{op.get_friendly_name()}" for op in partial.get_ordered_ops()
                       if op.get_friendly_name() not in supported]
        return missing, refused

    @property
    def precisions(self) -> tuple[str, ...]:  # type: ignore[override]
        """fp32 always; bf16/fp16 where the CPU plugin computes them (AMX/AVX512-BF16, AVX512-FP16); int8 with NNCF."""
        caps = cpu_capabilities()
        out = ["fp32"] + [p for p, cap in (("bf16", "BF16"), ("fp16", "FP16")) if cap in caps]
        if _has_nncf():
            out.append("int8")
        return tuple(out)

    def convert(self, model_path: Path, output: Path, *, precision: str = "fp32", calibration=None):
        ov = require("openvino", extra="openvino", purpose="converting to OpenVINO IR")
        notes: list[str] = []
        with offline():
            try:
                model = ov.convert_model(str(model_path))
            except Exception as err:  # noqa: BLE001 - OpenVINO raises OpConversionFailure and plain RuntimeError
                first = str(err).strip().splitlines()
                raise UnsupportedError(f"OpenVINO could not convert the model: {first[0] if first else err}",
                                       hint="run `onnxdeploy check MODEL --target openvino` for the operators") from err
            shape_note = shapes_note(model)
            if precision == "int8":
                model = nncf_int8(model, model_path, calibration, notes)
        hint = INFERENCE_HINTS[precision]
        config = record_compile_config(model, hint)
        model.set_rt_info(precision, ["onnxdeploy", "precision"])
        notes.append(f"precision {precision}: compiled with " + ", ".join(f"{k} {v}" for k, v in config.items())
                     + " (stored in the IR's rt_info, applied by `onnxdeploy run`/bench/deploy; OpenVINO's own "
                     "compile_model does not read them: pass them as its config)")
        notes.append(shape_note)
        xml = self.artifact_path(output)  # inside convert()'s private staging folder: published from there
        ov.save_model(model, str(xml), compress_to_fp16=False)
        notes.append("weights kept in fp32 (compress_to_fp16=False)" if precision != "int8"
                     else f"int8 (NNCF post-training quantization); the rest runs at {hint}")
        return [xml, xml.with_suffix(".bin")], notes, None

    def run(self, artifact: Path, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run_compiled(compile_artifact(artifact, threads=1), feeds)

    def artifact_precision(self, artifact: Path) -> str | None:
        return artifact_precision(Path(artifact))[0]

    def runner(self, artifact: Path, *, threads: int | None = 1):
        return compiled_runner(compile_artifact(artifact, threads=threads))


# INFERENCE_PRECISION_HINT per precision. int8: what NNCF leaves in float (LayerNorm, Softmax, GELU, the attention
# subgraph) runs at f32, not at bf16 (OpenVINO's default on this CPU): BERT-base int8 1x128 ran ~10% faster so (the
# same compiled models in both orders of one interleaved run, 2 threads), ResNet-50 int8 the same within the noise
# (AMX-INT8 convolutions are ~95% of its time), and f32 is the closer of the two.
INFERENCE_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}

# The CPU plugin configuration every artefact is compiled with, recorded in the IR's rt_info at build time
# (record_compile_config) so the artefact runs the same wherever onnxdeploy compiles it, whatever OpenVINO's defaults
# of the day; INFERENCE_NUM_THREADS is the runner's choice. LATENCY with one stream: one request at a time with every
# thread on it. Pinning stays on (OpenVINO's default): off measured the same within the noise on the loaded 2-core
# machine (BERT-base and ResNet-50 int8, both orders in one interleaved run).
COMPILE_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "ENABLE_CPU_PINNING": "YES"}
COMPILE_KEYS = ("INFERENCE_PRECISION_HINT", *COMPILE_CONFIG)


def record_compile_config(model, hint: str) -> dict[str, str]:
    """Store the configuration ``model`` is to be compiled with (``hint`` + :data:`COMPILE_CONFIG`) in its rt_info
    (``onnxdeploy/compile/KEY``; the hint also under ``runtime_options``); returns it."""
    config = {"INFERENCE_PRECISION_HINT": hint, **COMPILE_CONFIG}
    for key, value in config.items():
        model.set_rt_info(value, ["onnxdeploy", "compile", key])
    model.set_rt_info(hint, ["runtime_options", "INFERENCE_PRECISION_HINT"])
    return config


def recorded_compile_config(model) -> dict[str, str]:
    """The compile configuration an IR records (:func:`record_compile_config`); an IR of an older build records
    only its precision hint (``runtime_options``), f32 when none."""
    config = {}
    for key in COMPILE_KEYS:
        if model.has_rt_info(["onnxdeploy", "compile", key]):
            config[key] = _rt_str(model, ["onnxdeploy", "compile", key])
    if "INFERENCE_PRECISION_HINT" not in config:
        config["INFERENCE_PRECISION_HINT"] = "f32"
        if model.has_rt_info(["runtime_options", "INFERENCE_PRECISION_HINT"]):
            config["INFERENCE_PRECISION_HINT"] = _rt_str(model, ["runtime_options", "INFERENCE_PRECISION_HINT"])
    return config


def shapes_note(model) -> str:
    """One line on the IR's input shapes: static (compiled once for them), or which inputs keep dynamic dims (as the
    ONNX model declares them; OpenVINO then compiles shape-agnostic kernels and re-plans per shape)."""
    dynamic = [p.get_any_name() for p in model.inputs if p.get_partial_shape().is_dynamic]
    if not dynamic:
        return "input shapes static: " + ", ".join(f"{p.get_any_name()} {p.get_partial_shape()}" for p in model.inputs)
    return (f"dynamic dims kept as the ONNX model declares them ({', '.join(dynamic)}): OpenVINO compiles "
            f"shape-agnostic kernels ({DYNAMIC_COST}); `deploy`/`optimize` with `--fix-dims --dim NAME=SIZE` make "
            "them static")


DYNAMIC_COST = "BERT-base int8 1x128 measured ~1.1x slower than static"


def offline():
    """A context in which OpenVINO's converter and NNCF send no telemetry: both check ``disable_in_ci`` through the
    ``CI`` variable (openvino_telemetry) and NNCF reads ``NNCF_CI`` when imported. Restored on exit."""
    import contextlib
    import os

    @contextlib.contextmanager
    def guard():
        saved = {k: os.environ.get(k) for k in ("CI", "NNCF_CI")}
        os.environ["CI"], os.environ["NNCF_CI"] = "true", "1"
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    return guard()


def cpu_capabilities() -> tuple[str, ...]:
    """The CPU plugin's OPTIMIZATION_CAPABILITIES (``BF16``, ``FP16``, ``INT8``, ...); empty without OpenVINO."""
    global _CAPS
    if _CAPS is None:
        try:
            import openvino as ov

            _CAPS = tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        except Exception:  # noqa: BLE001 - no openvino, or no CPU plugin: fp32 only
            _CAPS = ()
    return _CAPS


_CAPS: tuple[str, ...] | None = None


def _has_nncf() -> bool:
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def artifact_precision(artifact: Path) -> tuple[str, str]:
    """(precision, INFERENCE_PRECISION_HINT) an IR was built with (its rt_info); ("fp32", "f32") when it says none."""
    import openvino as ov

    model = ov.Core().read_model(str(artifact))
    hint, precision = "f32", "fp32"
    if model.has_rt_info(["runtime_options", "INFERENCE_PRECISION_HINT"]):
        hint = _rt_str(model, ["runtime_options", "INFERENCE_PRECISION_HINT"])
    if model.has_rt_info(["onnxdeploy", "precision"]):
        precision = _rt_str(model, ["onnxdeploy", "precision"])
    return precision, hint


def _rt_str(model, path: list[str]) -> str:
    value = model.get_rt_info(path)
    return str(value.astype(str) if hasattr(value, "astype") else value)


def compile_artifact(artifact, *, threads: int | None = 1, hint: str | None = None):
    """The IR compiled on the CPU plugin with the configuration it was built with (:func:`recorded_compile_config`:
    its precision hint, LATENCY, one stream, pinning on), ``threads`` inference threads (None: OpenVINO's
    default); ``hint`` overrides the precision hint."""
    ov = require("openvino", extra="openvino", purpose="running an OpenVINO IR model")
    core = ov.Core()
    model = core.read_model(str(artifact))
    config: dict = recorded_compile_config(model)
    if hint is not None:
        config["INFERENCE_PRECISION_HINT"] = hint
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return core.compile_model(model, "CPU", config)


def compiled_runner(compiled):
    """feeds -> outputs over ``compiled`` with one infer request reused across calls (OpenVINO's pattern: no request
    and buffers set up per call; on ResNet-50 int8 the saving is within the noise of a loaded machine); the outputs
    are copies."""
    request = compiled.create_infer_request()
    return lambda feeds: run_compiled(compiled, feeds, request=request)


def nncf_int8(model, model_path: Path, calibration, notes: list[str]):
    """NNCF post-training int8 of the OpenVINO ``model`` on ``calibration`` (feed dicts; synthesized when None),
    with ``ModelType.TRANSFORMER`` for transformer models."""
    import logging

    require("nncf", extra="openvino", purpose="int8 quantization for OpenVINO (NNCF)")
    import nncf

    from onnxdeploy._run import synthesize_inputs

    logging.getLogger("nncf").setLevel(logging.ERROR)
    if not calibration:
        calibration = [synthesize_inputs(str(model_path), seed=i) for i in range(8)]
        notes.append("int8 calibrated on 8 synthesized inputs: pass --calibration with real inputs for real accuracy")
    samples = [_by_port(model, feeds) for feeds in calibration]
    kind = _model_kind(model_path)
    options = {"model_type": nncf.ModelType.TRANSFORMER} if kind == "transformer" else {}
    import contextlib
    import io

    try:  # NNCF draws rich progress bars on stdout: kept off our output (and --json)
        with contextlib.redirect_stdout(io.StringIO()):
            quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples), **options)
    except Exception as err:  # noqa: BLE001 - NNCF raises many kinds
        first = str(err).strip().splitlines()
        raise UnsupportedError(f"NNCF could not quantize the model: {first[0] if first else type(err).__name__}",
                               hint="try --precision bf16, or onnxruntime int8 (--target onnxruntime)") from err
    notes.append(f"int8: nncf.quantize on {len(samples)} calibration sample(s)"
                 + (", model_type TRANSFORMER" if options else f" (model kind {kind})"))
    return quantized


def _by_port(model, feeds: Mapping[str, np.ndarray]) -> dict:
    out = {}
    for port in model.inputs:
        name = next((n for n in port.get_names() if n in feeds), None)
        if name is not None:
            out[port.get_any_name()] = np.asarray(feeds[name])
    return out


def _model_kind(model_path: Path) -> str:
    from onnxdeploy import _io as io
    from onnxdeploy._quantize import model_kind

    proto = io.load_proto(model_path)
    ops = {n.op_type for n in proto.graph.node}
    if "Softmax" in ops and ({"LayerNormalization", "ReduceMean"} & ops) and "MatMul" in ops:
        return "transformer"  # attention: Softmax over MatMul scores, layer norms
    return model_kind(proto)


def _engine_reason(stderr: str) -> str:
    """The informative part of an OpenVINO exception: the failing transformation and node, and the check."""
    import re

    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    where = next((ln for ln in lines if "CALLBACK HAS THROWN" in ln), None)
    last = lines[-1] if lines else "?"
    if where:
        m = re.match(r"\[(\w+)\].*?node: \S+ (\S+)", where)
        if m:
            return f"{m.group(1)} on node {m.group(2)} in the CPU plugin: {last}"
    return last


def run_compiled(compiled, feeds: Mapping[str, np.ndarray], *, request=None) -> dict[str, np.ndarray]:
    """Run ``compiled`` once on ``feeds`` (by tensor name); ``request`` reuses an infer request (outputs copied out
    of it), a fresh one otherwise."""
    request = request if request is not None else compiled.create_infer_request()
    by_name = {}
    for port in compiled.inputs:
        for name in port.get_names():
            if name in feeds:
                by_name[port] = feeds[name]
    result = request.infer(by_name)
    out = {}
    for port in compiled.outputs:
        value = np.array(result[port])  # a copy: the request's buffers are overwritten by its next run
        for name in port.get_names() or {port.get_any_name()}:  # every tensor name the port carries
            out[name] = value
    return out


if __name__ == "__main__":  # the subprocess of OpenVINOTarget.query
    import json
    import sys

    with offline():
        missing, refused = OpenVINOTarget.query_in_process(Path(sys.argv[1]))
    sys.stdout.write(json.dumps({"missing": missing, "refused": refused,
                                 "warning": getattr(OpenVINOTarget, "_last_warning", None)}))
