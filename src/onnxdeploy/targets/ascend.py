"""Huawei Ascend (CANN): a support check against the operators the ATC converter accepts, and the ``atc`` command.

ATC (part of the CANN toolkit) converts ONNX (``--framework=5``) to an offline model (``.om``) for an Ascend SoC.
It is not installable here, so ``convert`` writes the ONNX model ready for ATC and prints the command to run on a
machine with CANN; nothing here claims an ``.om`` file was produced.

:data:`ATC_ONNX_OPS` is transcribed from Huawei's "ATC ONNX operator support list" (CANN documentation on
hiascend.com, "ONNX算子规格清单", CANN 7.x/8.x community edition); check it against your CANN version.
ATC reads ONNX opsets 8 to 18 (same documents). AI Core kernels compute in fp16/fp32/int8/int32; int64 tensors
are narrowed by ATC with a precision warning, so onnxdeploy casts them to int32 beforehand (``legalize``).
"""

from __future__ import annotations

from pathlib import Path

from onnxdeploy.targets.base import Target

ATC_ONNX_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization BitShift Cast Ceil Celu
Clip Compress Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div
Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather GatherElements GatherND Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample HardSigmoid HardSwish Hardmax
Identity If InstanceNormalization IsInf IsNaN LRN LSTM LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax
Loop LpNormalization MatMul MatMulInteger Max MaxPool MaxRoiPool MaxUnpool Mean MeanVarianceNormalization Min Mod Mul
Neg NonMaxSuppression NonZero Not OneHot Or PRelu Pad Pow QLinearConv QLinearMatMul QuantizeLinear RNN RandomNormal
RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp
ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RoiAlign
Round ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign
SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where
Xor
""".split())

DEFAULT_SOC = "Ascend310P3"


class AscendTarget(Target):
    name = "ascend"
    description = "Huawei Ascend offline model (.om) via ATC; support check only (CANN is not installed here)"
    opsets = (8, 18)
    dtypes = frozenset({"float32", "float16", "int8", "uint8", "int16", "int32", "bool"})
    suffix = ".onnx"
    source = "Huawei CANN docs: ATC ONNX operator support list (hiascend.com), transcribed into ATC_ONNX_OPS"
    soc_version = DEFAULT_SOC

    def supported_ops(self) -> set[tuple[str, str]]:
        return {("", op) for op in ATC_ONNX_OPS}

    def available(self) -> tuple[bool, str]:
        import shutil

        if shutil.which("atc"):
            return True, ""
        return False, "ATC (Huawei CANN toolkit) is not installed here; onnxdeploy prints the command to run it"

    def command(self, model_path: Path, output: Path, input_shape: str | None = None) -> str:
        out = Path(output)
        stem = out.with_suffix("") if out.suffix else out
        shape = f' --input_shape="{input_shape}"' if input_shape else ""
        return (f"atc --model={model_path} --framework=5 --output={stem} "
                f"--soc_version={self.soc_version}{shape}")

    def convert(self, model_path: Path, output: Path, *, precision: str = "fp32", calibration=None):
        from onnxdeploy import _io as io
        from onnxdeploy._run import input_specs

        onnx_path = Path(output).with_suffix(".onnx")
        if Path(model_path).resolve() != onnx_path.resolve():
            io.save(io.load(model_path), onnx_path)
        shapes, dynamic = [], False
        dims = getattr(self, "dims", None) or {}
        for spec in input_specs(onnx_path):
            if spec.shape is not None:
                vals = [d if isinstance(d, int) else dims.get(d, -1) if isinstance(d, str) else -1 for d in spec.shape]
                dynamic = dynamic or -1 in vals
                shapes.append(f"{spec.name}:" + ",".join(map(str, vals)))
        cmd = self.command(onnx_path, Path(output).with_suffix(".om"), ";".join(shapes) or None)
        ok, why = self.available()
        notes = [why or "atc found on PATH; run the command to produce the .om"]
        notes.append("ATC is not run by onnxdeploy: no .om file was produced")
        if dynamic:
            notes.append("ATC needs fixed input shapes (or --dynamic_dims): give the symbolic dims with --dim NAME=N")
        return [onnx_path], notes, cmd
