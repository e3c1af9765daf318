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
                converted = ov.convert_model(str(model_path))  # what `convert` writes: more graph transformations
                supported = ov.Core().query_model(converted, "CPU")  # raises when this fails as well
                partial = converted
                OpenVINOTarget._last_warning = (
                    "the CPU plugin fails on the .onnx file read directly (" + _engine_reason(str(err))
                    + ") but runs the IR that `onnxdeploy convert --target openvino` writes: deploy the .xml")
            refused = [f"{op.get_type_name()}:{op.get_friendly_name()}" for op in partial.get_ordered_ops()
                       if op.get_friendly_name() not in supported]
        return missing, refused

    def convert(self, model_path: Path, output: Path):
        ov = require("openvino", extra="openvino", purpose="converting to OpenVINO IR")
        try:
            model = ov.convert_model(str(model_path))
        except Exception as err:  # noqa: BLE001 - OpenVINO raises OpConversionFailure and plain RuntimeError
            first = str(err).strip().splitlines()
            raise UnsupportedError(f"OpenVINO could not convert the model: {first[0] if first else err}",
                                   hint="run `onnxdeploy check MODEL --target openvino` for the operators") from err
        xml = self.artifact_path(output)  # inside convert()'s private staging folder: published from there
        ov.save_model(model, str(xml), compress_to_fp16=False)
        return [xml, xml.with_suffix(".bin")], ["weights kept in fp32 (compress_to_fp16=False)"], None

    def run(self, artifact: Path, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        ov = require("openvino", extra="openvino", purpose="running an OpenVINO IR model")
        core = ov.Core()
        compiled = core.compile_model(str(artifact), "CPU", {"INFERENCE_NUM_THREADS": 1,
                                                             "INFERENCE_PRECISION_HINT": "f32"})
        return run_compiled(compiled, feeds)


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


def run_compiled(compiled, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    request = compiled.create_infer_request()
    by_name = {}
    for port in compiled.inputs:
        for name in port.get_names():
            if name in feeds:
                by_name[port] = feeds[name]
    result = request.infer(by_name)
    out = {}
    for port in compiled.outputs:
        for name in port.get_names() or {port.get_any_name()}:  # every tensor name the port carries
            out[name] = np.asarray(result[port])
    return out


if __name__ == "__main__":  # the subprocess of OpenVINOTarget.query
    import json
    import sys

    missing, refused = OpenVINOTarget.query_in_process(Path(sys.argv[1]))
    sys.stdout.write(json.dumps({"missing": missing, "refused": refused,
                                 "warning": getattr(OpenVINOTarget, "_last_warning", None)}))
