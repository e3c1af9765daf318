"""onnxdeploy's own graph passes, for rewrites that onnx-ir's passes and the onnxscript rewriter lack.

One small ``onnx_ir`` pass class per module; each docstring lists its rules. Each returns a :class:`CountedResult`
(an ``onnx_ir`` PassResult whose ``details`` say how often its rules fired). :mod:`onnxdeploy._optimize` runs them.
"""

from __future__ import annotations

from onnxdeploy.passes._util import CountedResult, counted
from onnxdeploy.passes.conv_activation import FuseConvActivationPass
from onnxdeploy.passes.conv_bn import FuseConvBatchNormPass
from onnxdeploy.passes.fold_remaining import FoldRemainingConstantsPass
from onnxdeploy.passes.gemm_reshape import ReshapeGemmToMatMulPass
from onnxdeploy.passes.matmul_add_gemm import MatMulAddToGemmPass
from onnxdeploy.passes.merge_matmul import MergeParallelMatMulPass
from onnxdeploy.passes.redundant_chains import RemoveRedundantChainsPass
from onnxdeploy.passes.shape_folding import FoldPartialShapesPass

__all__ = [
    "CountedResult",
    "FoldPartialShapesPass",
    "FoldRemainingConstantsPass",
    "FuseConvActivationPass",
    "FuseConvBatchNormPass",
    "MatMulAddToGemmPass",
    "MergeParallelMatMulPass",
    "RemoveRedundantChainsPass",
    "ReshapeGemmToMatMulPass",
    "counted",
]
