"""Debug numerics: capture intermediate tensors, compare models (ONNX or PyTorch) layer by layer, reduce a mismatch.

- :func:`probe`: any or all intermediate tensors of a model in one onnxruntime session (bounded batches with a
  memory budget), as a dict, optionally streamed to an .npz.
- :func:`compare`: two ONNX models (or one on two providers), or a PyTorch target against its ONNX export, tensor by
  tensor; names the first tensor (or module) beyond tolerance.
- :func:`reduce`: the smallest subgraph whose outputs still disagree, saved as a standalone model with its inputs.
"""

from onnxdeploy.debug._compare import CompareResult, TensorMatch, compare
from onnxdeploy.debug._probe import ALL, ProbeResult, SkippedTensor, TensorInfo, probe
from onnxdeploy.debug._reduce import ReduceResult, reduce

__all__ = ["ALL", "CompareResult", "ProbeResult", "ReduceResult", "SkippedTensor", "TensorInfo", "TensorMatch",
           "compare", "probe", "reduce"]
