"""TensorRT: build and run an engine where a GPU and the ``tensorrt`` package exist; elsewhere, a support check.

The operator data is the onnx-tensorrt parser's table (``docs/operators.md`` of github.com/onnx/onnx-tensorrt,
TensorRT 10.x): every standard ONNX operator is accepted except the ones listed in :data:`UNSUPPORTED` (marked
"N" there: sequences, optionals, strings, training and ML-domain operators, integer-arithmetic quantized ops).
Building and running go through Polygraphy (``polygraphy.backend.trt``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping

import numpy as np

from onnxdeploy.errors import UnsupportedError
from onnxdeploy.targets.base import Target, onnx_ops

# onnx-tensorrt docs/operators.md (TensorRT 10.x), operators marked "N" (not supported by the parser)
UNSUPPORTED = frozenset({
    "Adagrad", "Adam", "Bernoulli", "Col2Im", "ConcatFromSequence", "ConvInteger", "DFT", "Det",
    "Gradient", "ImageDecoder", "MatMulInteger", "Momentum", "Multinomial", "NegativeLogLikelihoodLoss",
    "Optional", "OptionalGetElement", "OptionalHasElement", "QLinearConv", "QLinearMatMul", "RegexFullMatch",
    "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength",
    "SequenceMap", "SoftmaxCrossEntropyLoss", "SplitToSequence", "StringConcat", "StringNormalizer", "StringSplit",
    "TfIdfVectorizer", "Unique", "MelWeightMatrix", "CenterCropPad",
})


def gpu_present() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    from onnxdeploy._proc import ChildTimeout, run_child

    try:
        return run_child(["nvidia-smi", "-L"], timeout=10).returncode == 0
    except (OSError, ChildTimeout):
        return False


class TensorRTTarget(Target):
    name = "tensorrt"
    description = "NVIDIA TensorRT engine (.engine), needs a GPU and the tensorrt package"
    opsets = (9, 22)  # onnx-tensorrt README for TensorRT 10.x
    dtypes = frozenset({"float32", "float16", "bfloat16", "int8", "uint8", "int32", "int64", "bool"})
    suffix = ".engine"
    source = "onnx-tensorrt docs/operators.md (TensorRT 10.x): all ai.onnx operators except the ones marked N"

    def supported_ops(self) -> set[tuple[str, str]]:
        return {(d, op) for d, op in onnx_ops(self.opsets[1]) if op not in UNSUPPORTED}

    def available(self) -> tuple[bool, str]:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return False, "cannot build a TensorRT engine here: the tensorrt package is not installed"
        if not gpu_present():
            return False, "cannot build a TensorRT engine here: no NVIDIA GPU (nvidia-smi) on this machine"
        return True, ""

    def command(self, model_path: Path, output: Path) -> str:
        return f"trtexec --onnx={model_path} --saveEngine={self.artifact_path(output)}"

    def convert(self, model_path: Path, output: Path, *, precision: str = "fp32", calibration=None):
        ok, why = self.available()
        if not ok:
            raise UnsupportedError(why, hint=f"on a machine with a GPU run: {self.command(model_path, output)}")
        from polygraphy.backend.trt import CreateConfig, engine_from_network, network_from_onnx_path, save_engine

        engine = engine_from_network(network_from_onnx_path(str(model_path)),
                                     config=CreateConfig(fp16=precision == "fp16"))
        path = self.artifact_path(output)
        save_engine(engine, str(path))
        return [path], [f"built with TensorRT through Polygraphy, {precision}"], self.command(model_path, output)

    @property
    def precisions(self) -> tuple[str, ...]:  # type: ignore[override]
        """fp32, and fp16 (TensorRT's --fp16 builder flag) where an engine can be built here."""
        return ("fp32", "fp16") if self.available()[0] else ("fp32",)

    def run(self, artifact: Path, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok, why = self.available()
        if not ok:
            raise UnsupportedError(why)
        from polygraphy.backend.common import BytesFromPath
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        with TrtRunner(EngineFromBytes(BytesFromPath(str(artifact)))) as runner:
            return {k: np.asarray(v) for k, v in runner.infer(dict(feeds)).items()}
