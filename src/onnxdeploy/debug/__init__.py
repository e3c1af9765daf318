"""Debug numerics: capture intermediate tensors, compare models (ONNX or PyTorch) layer by layer, reduce a mismatch.

- :func:`probe`: any or all intermediate tensors of a model in one onnxruntime session (bounded batches with a
  memory budget), as a dict, optionally streamed to an .npz.
- :func:`compare`: two ONNX models (or one on two providers), or a PyTorch target against its ONNX export: the
  verdict from the real outputs of both as they run; matched intermediate tensors (or module calls) name the first
  one beyond tolerance.
- :func:`reduce`: the smallest subgraph whose outputs still disagree, saved as a standalone model with its inputs.
"""

from onnxdeploy.debug._compare import compare
from onnxdeploy.debug._probe import ALL, ProbeResult, SkippedTensor, TensorInfo, probe
from onnxdeploy.debug._reduce import ReduceResult, reduce
from onnxdeploy.debug._result import CompareResult, TensorMatch, Unmatched

__all__ = ["ALL", "CompareResult", "ProbeResult", "ReduceResult", "SkippedTensor", "TensorInfo", "TensorMatch",
           "Unmatched", "compare", "probe", "reduce"]
