"""onnxruntime mobile: the ``.ort`` flatbuffer format plus a reduced operator config for a minimal build.

Conversion is what ``python -m onnxruntime.tools.convert_onnx_models_to_ort`` does (a session that saves the
basic-optimized graph in ORT format, with no CPU-specific layout transforms), followed by
``onnxruntime.tools.ort_format_model.create_config_from_models`` which writes the ``required_operators.config``
that ``build.sh --minimal_build --include_ops_by_config`` takes to build a runtime with only those kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from onnxdeploy.targets.onnxruntime import OnnxRuntimeTarget


class OrtMobileTarget(OnnxRuntimeTarget):
    name = "ort-mobile"
    description = "onnxruntime mobile/minimal build: .ort format + reduced operator config"
    suffix = ".ort"
    source = "CPU kernels of the installed onnxruntime (a minimal build keeps the subset in the operator config)"

    def convert(self, model_path: Path, output: Path, *, precision: str = "fp32", calibration=None):
        import logging
        import os
        import shutil
        import tempfile

        import onnxruntime as ort
        from onnxruntime.tools.ort_format_model import create_config_from_models

        logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
        ort_path = self.artifact_path(output)
        config = ort_path.with_name(ort_path.stem + ".required_operators.config")
        tmp_dir = Path(tempfile.mkdtemp(prefix=".onnxdeploy-ort-", dir=ort_path.parent))
        notes: list[str] = []
        try:
            if precision != "fp32":  # the int8/fp16 ONNX model of the onnxruntime target, then its .ort form
                reduced = tmp_dir / f"model-{precision}.onnx"
                _, notes, _ = OnnxRuntimeTarget().convert(model_path, reduced, precision=precision,
                                                          calibration=calibration)
                model_path = reduced
            so = ort.SessionOptions()
            so.log_severity_level = 3
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # portable, no NCHWc
            so.optimized_model_filepath = str(tmp_dir / ort_path.name)
            so.add_session_config_entry("session.save_model_format", "ORT")
            ort.InferenceSession(str(_without_initializer_inputs(Path(model_path), tmp_dir)), sess_options=so,
                                 providers=["CPUExecutionProvider"])
            create_config_from_models([tmp_dir / ort_path.name], tmp_dir / config.name, enable_type_reduction=False)
            os.replace(tmp_dir / config.name, config)
            os.replace(tmp_dir / ort_path.name, ort_path)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        ops = [line for line in config.read_text().splitlines() if line and not line.startswith("#")]
        notes = [*notes, f"reduced operator config: {'; '.join(ops)}"]
        command = f"./build.sh --minimal_build --include_ops_by_config {config}"
        return [ort_path, config], notes, command

    def run(self, artifact: Path, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runner(artifact, threads=1)(feeds)

    def runner(self, artifact: Path, *, threads: int | None = 1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = int(threads)
        sess = ort.InferenceSession(str(artifact), sess_options=so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return lambda feeds: dict(zip(names, sess.run(names, dict(feeds))))


def _without_initializer_inputs(model_path: Path, tmp_dir: Path) -> Path:
    """IR < 4 models list initializers as graph inputs; the ORT format then keeps some of them as required inputs
    nobody feeds. Such a model is rewritten (IR 4, initializers only) into ``tmp_dir``; others are used as they are."""
    import onnx

    from onnxdeploy import _io as io

    proto = io.load_proto(model_path)
    names = {t.name for t in proto.graph.initializer}
    if not any(i.name in names for i in proto.graph.input):
        return model_path
    proto = io.load_proto(model_path, load_weights=True)
    keep = [i for i in proto.graph.input if i.name not in names]
    del proto.graph.input[:]
    proto.graph.input.extend(keep)
    proto.ir_version = max(proto.ir_version, 4)
    out = tmp_dir / "model-ir4.onnx"
    onnx.save(proto, str(out))  # a scratch file inside tmp_dir, removed with it
    return out
