"""Quantize models to int8 with onnxruntime's quantization tools, verified and timed against fp32.

Defaults are chosen by model type, from what measured fastest on x86 CPUs with AVX-512 VNNI:

- convolutional nets: static QDQ, uint8 activations, int8 per-channel weights (onnxruntime's u8s8 kernels; int8
  activations or dynamic quantization run slower than fp32 there);
- transformers (MatMul-heavy): onnxruntime's transformer optimizer (LayerNorm/GELU/bias fusions; skipped over
  2 GB, where it holds several copies of the weights), then dynamic int8 of everything but convolutions (a ViT's
  patch embedding runs slower as ConvInteger than in float).

Every run pre-processes with ``quant_pre_process``, evaluates the result against fp32 on held-out inputs (never the
calibration ones: max abs error, cosine similarity, top-1 agreement for logits) and times both models with bench's
timer (:func:`onnxdeploy._bench.measure_ratio`: interleaved blocks, same session options, until the speedup's ~99%
interval is within 10% or the time budget runs out, then reported as noisy), so that ``bench fp32.onnx int8.onnx``
measures the same figure. In ``auto`` mode a quantized model slower than fp32 (by the median) makes us try the other
mode and keep the faster; when the best is slower beyond the noise (the interval's upper bound below 1) nothing is
written (:class:`~onnxdeploy.errors.UnsupportedError`: the default never hands back a model slower than the input);
an explicit ``mode`` writes its result with a loud warning. Outputs are written atomically, and only after
verification passed.

A result "runs quantized" when it holds a compute op in integer arithmetic (:data:`INTEGER_KERNELS`: QLinearConv,
MatMulInteger, MatMulNBits, QAttention, ...) or, in QDQ format, a quantizable op (:data:`QUANTIZABLE_OPS`, or a
Gather from a float table) fed by a DequantizeLinear. Q/DQ pairs around Add or Relu alone do not count. A model with
no quantizable op, one whose quantizable nodes are all excluded, or a result with no quantized op is refused: nothing
is written.
"""

from __future__ import annotations

import contextlib
import fnmatch
import gc
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from onnxdeploy._bench import RatioMeasurement, noisy_note, ratio_words
from onnxdeploy._calibration import load_calibration  # noqa: F401  (also its public home for older callers)
from onnxdeploy.errors import OutputsDisagree, UnsupportedError, UserInputError
from onnxdeploy._io import ModelLike, as_proto

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

MODES = ("auto", "static", "dynamic")
QTYPES = ("int8", "uint8")
DEFAULT_SAMPLES = 16
DEFAULT_HELDOUT = 4
DEFAULT_MIN_COSINE = 0.99
MEASURE_SECONDS = 10.0  # budget per attempt for timing until the speedup is stable
SYNTHESIZED_WARNING = (
    "calibrating on synthesized random inputs; real data calibrates better (pass --calibration FILE.npz or a folder)"
)
_CONV_OPS = {"Conv", "ConvTranspose"}
_MATMUL_OPS = {"MatMul", "Gemm"}
_FUSION_OPS = {"Softmax", "LayerNormalization", "ReduceMean", "Erf", "Gelu", "Tanh"}  # what the fusions start from
QUANTIZABLE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "Attention", "LSTM", "GRU",
                             "EmbedLayerNormalization"})  # and Gather from a float table: quantizable_nodes()
INTEGER_KERNELS = frozenset({  # ops that compute in int8/uint8 (or n-bit) arithmetic, in any domain
    "QLinearConv", "QLinearMatMul", "QGemm", "QAttention", "QEmbedLayerNormalization", "MatMulInteger",
    "ConvInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM", "MatMulNBits",
    "MatMulBnb4", "GatherBlockQuantized", "QOrderedMatMul", "QOrderedAttention", "QOrderedLongformerAttention",
})
_QUANT_OPS = INTEGER_KERNELS | {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearAdd",
                                "QLinearMul", "QLinearConcat", "QLinearGlobalAveragePool", "QLinearSigmoid",
                                "QLinearLeakyRelu", "QLinearSoftmax", "QLinearAveragePool"}


@dataclass
class OutputError:
    """How far one quantized output is from fp32, over all held-out inputs."""

    name: str
    max_abs: float
    mean_abs: float
    cosine: float  # NaN when it says nothing (a constant output)
    top1_agreement: float | None  # fraction of argmax matches, for outputs that look like class logits
    passed: bool = True  # within the agreement asked for (--min-cosine), under the shared int8 metric
    flags: list[str] = field(default_factory=list)  # constant output, NaN/Inf appearing, ...

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["cosine"] = None if self.cosine != self.cosine else self.cosine
        return d


@dataclass(frozen=True)
class QuantizeOptions:
    """Every option of :func:`quantize`, checked once (see its doc)."""

    mode: str = "auto"
    calibration: object = None
    per_channel: bool | None = None
    weight_type: str = "int8"
    activation_type: str | None = None
    exclude_nodes: tuple[str, ...] = ()
    exclude_ops: tuple[str, ...] = ()
    samples: int | None = None
    heldout: int | None = None
    dims: Mapping[str, int] | None = None
    shapes: Mapping[str, Sequence] | None = None
    seed: int = 0
    threads: int | None = None
    transformer_fusion: bool | None = None
    verify: bool = True
    measure: bool = True
    min_cosine: float = DEFAULT_MIN_COSINE
    measure_seconds: float = MEASURE_SECONDS
    extra_options: Mapping[str, object] | None = None

    def validate(self) -> None:
        if self.mode not in MODES:
            raise UserInputError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        _qtype(self.weight_type, "--weight-type")
        _qtype(self.activation_type, "--activation-type")
        if self.samples is not None and self.samples < 1:
            raise UserInputError(f"--samples must be at least 1, got {self.samples}")


@dataclass
class Attempt:
    """One quantization configuration that was tried: its model, error against fp32, speed, and verdict."""

    mode: str  # "static" or "dynamic"
    activation_type: str | None
    weight_type: str
    per_channel: bool
    path: Path | None = None  # the quantized model, in the scratch folder (gone once quantize returns)
    transformer_fusions: dict[str, int] | None = None
    excluded_nodes: list[str] = field(default_factory=list)
    quantized_ops: dict[str, int] = field(default_factory=dict)  # Q/DQ and integer kernels, by op type
    quantized_nodes: dict[str, int] = field(default_factory=dict)  # compute ops that run quantized (see module doc)
    outputs: list[OutputError] = field(default_factory=list)
    speed: RatioMeasurement | None = None  # fp32 (A) vs this attempt (B)
    rejected: str | None = None  # why it cannot be the result

    @property
    def speedup(self) -> float | None:
        return self.speed.speedup if self.speed else None

    @property
    def cosine(self) -> float | None:
        return min((o.cosine for o in self.outputs if o.cosine == o.cosine), default=None)

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("path", "outputs", "speed")}
        d.update(speedup=self.speedup, cosine=self.cosine, speed=self.speed.to_dict() if self.speed else None)
        return d


@dataclass
class QuantizeReport:
    """What :func:`quantize` did. The written model's settings, error and speed are those of ``attempts[0]`` (the
    chosen :class:`Attempt`), read through properties rather than copied."""

    output: str | None
    model_kind: str  # "cnn", "transformer" or "other"
    calibration: str
    calibration_samples: int
    heldout_samples: int
    decision: str  # why this model was written (auto mode: on which figure)
    input_bytes: int
    output_bytes: int
    seconds: float
    threads: int | None
    attempts: list[Attempt]  # the chosen one first
    warnings: list[str] = field(default_factory=list)
    calibration_details: str = ""  # how the calibration data was read (file layout; image resize/normalize)

    @property
    def best(self) -> Attempt:
        return self.attempts[0]

    @property
    def mode(self) -> str:  # "static" or "dynamic" (what was written)
        return self.best.mode

    @property
    def format(self) -> str:
        return "QDQ" if self.mode == "static" else "dynamic (DynamicQuantizeLinear + integer MatMul)"

    @property
    def activation_type(self) -> str | None:
        return self.best.activation_type

    @property
    def weight_type(self) -> str:
        return self.best.weight_type

    @property
    def per_channel(self) -> bool:
        return self.best.per_channel

    @property
    def excluded_nodes(self) -> list[str]:
        return self.best.excluded_nodes

    @property
    def transformer_fusions(self) -> dict[str, int] | None:
        return self.best.transformer_fusions

    @property
    def quantized_ops(self) -> dict[str, int]:
        return self.best.quantized_ops

    @property
    def quantized_nodes(self) -> dict[str, int]:
        return self.best.quantized_nodes

    @property
    def outputs(self) -> list[OutputError]:
        return self.best.outputs

    @property
    def speed(self) -> RatioMeasurement | None:
        """fp32 vs int8, interleaved until stable (``speed.noisy`` when it never was)."""
        return self.best.speed

    @property
    def cosine(self) -> float | None:
        return self.best.cosine

    @property
    def max_abs(self) -> float | None:
        return max((o.max_abs for o in self.outputs), default=None)

    @property
    def top1_agreement(self) -> float | None:
        values = [o.top1_agreement for o in self.outputs if o.top1_agreement is not None]
        return min(values) if values else None

    @property
    def speedup(self) -> float | None:
        """How many times faster the int8 model runs than fp32 (< 1: slower); the median of interleaved blocks."""
        return self.best.speedup

    @property
    def noisy(self) -> bool:
        return bool(self.speed and self.speed.noisy)

    @property
    def fp32_ms(self) -> float | None:
        return self.speed.a_ms if self.speed else None

    @property
    def quantized_ms(self) -> float | None:
        return self.speed.b_ms if self.speed else None

    @property
    def size_ratio(self) -> float | None:
        return self.output_bytes / self.input_bytes if self.input_bytes else None

    def to_dict(self) -> dict:
        return dict(
            output=self.output, model_kind=self.model_kind, mode=self.mode, format=self.format,
            activation_type=self.activation_type, weight_type=self.weight_type, per_channel=self.per_channel,
            calibration=self.calibration, calibration_details=self.calibration_details,
            calibration_samples=self.calibration_samples,
            heldout_samples=self.heldout_samples, excluded_nodes=self.excluded_nodes,
            transformer_fusions=self.transformer_fusions, quantized_ops=self.quantized_ops,
            quantized_nodes=self.quantized_nodes, decision=self.decision, input_bytes=self.input_bytes,
            output_bytes=self.output_bytes, seconds=self.seconds, threads=self.threads, warnings=self.warnings,
            cosine=self.cosine, max_abs=self.max_abs, top1_agreement=self.top1_agreement, speedup=self.speedup,
            noisy=self.noisy, fp32_ms=self.fp32_ms, quantized_ms=self.quantized_ms, size_ratio=self.size_ratio,
            speed=self.speed.to_dict() if self.speed else None,
            outputs=[o.to_dict() for o in self.outputs],
            attempts=[a.to_dict() for a in self.attempts],
        )


# ---------------------------------------------------------------- what runs quantized


def _float_initializers(proto: "onnx.ModelProto") -> set[str]:
    return {t.name for t in proto.graph.initializer if t.data_type in (1, 10, 11, 16)}  # float, fp16, double, bf16


def quantizable_nodes(proto: "onnx.ModelProto") -> list["onnx.NodeProto"]:
    """The nodes onnxruntime's quantizers turn into int8 compute: :data:`QUANTIZABLE_OPS`, and Gathers from a float
    table (embeddings)."""
    tables = _float_initializers(proto)
    return [n for n in proto.graph.node if n.op_type in QUANTIZABLE_OPS
            or (n.op_type == "Gather" and n.input and n.input[0] in tables)]


def quantized_nodes(proto: "onnx.ModelProto") -> dict[str, int]:
    """Compute nodes that run quantized, by op type: integer kernels (:data:`INTEGER_KERNELS`), and in QDQ
    models the quantizable ops (:func:`quantizable_nodes`) with an input from a DequantizeLinear. Q/DQ pairs
    around other ops (Add, Relu, ...) alone do not make a model int8."""
    from collections import Counter

    dequantized = {o for n in proto.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    found = Counter(n.op_type for n in proto.graph.node if n.op_type in INTEGER_KERNELS)
    found.update(n.op_type for n in quantizable_nodes(proto) if any(i in dequantized for i in n.input))
    return dict(sorted(found.items()))


def _op_counts(nodes) -> str:
    from collections import Counter

    return ", ".join(f"{op} {k}" for op, k in sorted(Counter(n.op_type for n in nodes).items()))


def _refuse_nothing_to_quantize(proto: "onnx.ModelProto", opts: QuantizeOptions) -> None:
    """Before any work: no op onnxruntime quantizes, or every such node excluded by the user."""
    candidates = quantizable_nodes(proto)
    if not candidates:
        raise UnsupportedError(
            "nothing to quantize: the model has no Conv, ConvTranspose, MatMul, Gemm, Attention, LSTM, GRU or "
            f"embedding Gather, the ops onnxruntime quantizes (it has {_op_counts(proto.graph.node)}); "
            "nothing written",
            hint="int8 pays off where the weights and the arithmetic are: keep this model in fp32",
        )
    kept = [n for n in candidates if n.op_type not in opts.exclude_ops
            and not any(n.name and fnmatch.fnmatchcase(n.name, p) for p in opts.exclude_nodes)]
    if not kept:
        raise UserInputError(
            f"nothing to quantize: every node onnxruntime would quantize ({_op_counts(candidates)}) is excluded by "
            "--exclude-node/--exclude-op; nothing written",
            hint="exclude fewer nodes, or keep the model in fp32",
        )


# ---------------------------------------------------------------- model type


def model_kind(model: ModelLike) -> str:
    """``cnn`` when convolutions carry most of the weights, ``transformer`` when MatMul/Gemm do, else ``other``."""
    proto = as_proto(model)
    sizes = {t.name: int(np.prod(t.dims)) if t.dims else 1 for t in proto.graph.initializer}
    conv = mm = 0
    for node in proto.graph.node:
        weight = max((sizes.get(i, 0) for i in node.input[1:2]), default=0)
        if node.op_type in _CONV_OPS:
            conv += max(weight, 1)
        elif node.op_type in _MATMUL_OPS:
            mm += weight
    if conv == 0 and mm == 0:
        return "other"
    return "cnn" if conv >= mm else "transformer"


# ---------------------------------------------------------------- calibration and evaluation data


def _index_ranges(proto: "onnx.ModelProto") -> dict[str, int]:
    """For integer inputs used as Gather indices into an initializer table: the table's size (e.g. a vocabulary)."""
    tables = {t.name: int(t.dims[0]) for t in proto.graph.initializer if t.dims}
    ranges: dict[str, int] = {}
    for node in proto.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[0] in tables:
            ranges[node.input[1]] = min(ranges.get(node.input[1], 1 << 62), tables[node.input[0]])
    return ranges


def _refuse_unquantizable(proto: "onnx.ModelProto") -> None:
    """Already-quantized and float16 models: onnxruntime's quantizer fails on them with internal errors."""
    quant = _quant_op_counts(proto)
    if quant:
        found = ", ".join(f"{op} {n}" for op, n in sorted(quant.items()))
        raise UserInputError(f"the model is already quantized ({found})",
                             hint="quantize the float32 model it was made from")
    fp16 = [t.name for t in proto.graph.initializer if t.data_type == 10]  # TensorProto.FLOAT16
    if fp16:
        raise UserInputError(f"the model has float16 weights ({len(fp16)} initializers, e.g. {fp16[0]!r}); "
                             "onnxruntime quantizes float32 models",
                             hint="quantize the float32 model (before its fp16 conversion)")


def _standard_opset(proto: "onnx.ModelProto") -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13)


def _initializer_inputs(proto: "onnx.ModelProto") -> set[str]:
    names = {t.name for t in proto.graph.initializer}
    return {i.name for i in proto.graph.input if i.name in names}


def _drop_initializer_inputs(proto: "onnx.ModelProto") -> None:
    """IR < 4 lists initializers as graph inputs; the quantizer would leave them as inputs nobody feeds. The model
    becomes IR 4 at least, where initializers need not be inputs (onnxruntime's calibrator adds such initializers)."""
    drop = _initializer_inputs(proto)
    if drop:
        keep = [i for i in proto.graph.input if i.name not in drop]
        del proto.graph.input[:]
        proto.graph.input.extend(keep)
    proto.ir_version = max(proto.ir_version, 4)


def _upgrade_opset(proto: "onnx.ModelProto", warnings: list[str]) -> "onnx.ModelProto":
    """Opset < 13 to 13: per-channel QDQ needs the ``axis`` of Quantize/DequantizeLinear (opset 13)."""
    import onnx

    opset = _standard_opset(proto)
    if opset >= 13:
        return proto
    try:
        upgraded = onnx.version_converter.convert_version(proto, 13)
    except Exception:  # noqa: BLE001 - keep the original; the quantizer will say what fails
        return proto
    warnings.append(f"opset {opset} converted to 13 (per-channel int8 needs it); the written model uses opset 13")
    return upgraded


def _needs_rewrite(proto: "onnx.ModelProto") -> bool:
    return _standard_opset(proto) < 13 or proto.ir_version < 4 or bool(_initializer_inputs(proto))


def _quantizer_input(model: ModelLike, proto: "onnx.ModelProto", folder: Path,
                     warnings: list[str]) -> tuple[Path, "onnx.ModelProto"]:
    """The file onnxruntime's tools read, and its graph (weights not loaded): the user's own file when it needs
    no change, else a copy in ``folder`` at opset 13 and IR 4 or later without initializer inputs. The weights of
    a file are read into memory only to rewrite them; the user's file and ModelProto are never changed."""
    import onnx

    if isinstance(model, (str, os.PathLike)) and not _needs_rewrite(proto):
        return Path(model).resolve(), proto  # absolute: onnxruntime's tools run inside the scratch folder
    if isinstance(model, (str, os.PathLike)):
        full = as_proto(model, load_weights=True)
    else:
        full = onnx.ModelProto()
        full.CopyFrom(proto)
    full = _upgrade_opset(full, warnings)  # the opset converter may add IR 3 style initializer inputs
    _drop_initializer_inputs(full)
    path = folder / "input.onnx"
    _save_tmp(full, path)
    del full
    return path, onnx.load(str(path), load_external_data=False)


def _runnable_dims(path: str, proto: "onnx.ModelProto", dims: Mapping[str, int], shapes, seed: int,
                   threads: int | None, warnings: list[str]) -> dict[str, int]:
    """The default sizes for synthesized data (sequence 128, image 224), halved until the model runs.

    A model exported with a position table shorter than 128 (or a fixed window) fails on the defaults; the user's
    own ``--dim`` values are never changed. Returns ``dims`` unchanged when no defaulted dim exists.
    """
    from onnxdeploy._run import SessionError, create_session, default_dims, input_specs, run_session

    specs = input_specs(proto)
    full = default_dims(specs, dims)
    tunable = {d: v for d, v in full.items() if d not in dims and v > 1}
    if not tunable:
        return dict(dims)
    try:
        session = create_session(path, threads=threads)
    except SessionError:
        return dict(dims)  # the real run reports it
    trial = dict(full)
    first_error = None
    while True:
        try:
            run_session(session, synthesize_samples(proto, 1, dims=trial, shapes=shapes, seed=seed)[0])
            break
        except SessionError as err:
            first_error = first_error or err
            if all(trial[d] <= 8 for d in tunable):
                given = ", ".join(f"{d}={full[d]}" for d in tunable)
                raise UserInputError(f"the model does not run on synthesized inputs ({given}, down to 8): "
                                     f"{first_error.message}",
                                     hint="give the sizes with --dim NAME=N, or real data with --calibration") from err
            trial.update({d: max(8, trial[d] // 2) for d in tunable})
    if trial != full:
        changed = ", ".join(f"{d}={trial[d]}" for d in tunable)
        warnings.append(f"the default sizes ({', '.join(f'{d}={full[d]}' for d in tunable)}) do not run on this "
                        f"model; synthesized data uses {changed} (set them with --dim)")
    return trial


def synthesize_samples(
    model: ModelLike, count: int, *, dims: Mapping[str, int] | None = None, shapes=None, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """``count`` seeded input sets drawn like real data: floats standard normal, token ids within the vocabulary
    (from the embedding table), attention masks all ones."""
    from onnxdeploy._run import default_dims, input_specs, synthesize_inputs

    proto = as_proto(model)
    specs = input_specs(proto)
    full_dims = default_dims(specs, dims)
    ranges = _index_ranges(proto)
    samples = []
    for k in range(count):
        feeds = synthesize_inputs(proto, dims=full_dims, shapes=shapes, seed=seed + k, specs=specs)
        rng = np.random.default_rng(seed + k)
        for s in specs:
            if s.dtype.kind not in "iu":
                continue
            if "mask" in s.name.lower():
                feeds[s.name] = np.ones_like(feeds[s.name])
            elif s.name in ranges:
                feeds[s.name] = rng.integers(0, ranges[s.name], size=feeds[s.name].shape).astype(s.dtype)
        samples.append(feeds)
    return samples


# ---------------------------------------------------------------- exclusions


def _dynamic_op_types(kind: str) -> list[str] | None:
    """What dynamic quantization covers: all it can for CNNs (asked for explicitly), and no Conv in a transformer:
    ConvInteger is slow on CPU (ViT-base's patch embedding: 2.06x fp32 with it, 2.71x with it kept in float)."""
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    if kind != "transformer":
        return None
    return [op for op in IntegerOpsRegistry if op not in _CONV_OPS]


def _resolve_exclusions(
    proto: "onnx.ModelProto", original: "onnx.ModelProto", patterns: Sequence[str], op_types: Sequence[str]
) -> list[str]:
    """Node names of ``proto`` matching the name patterns (globs) or op types; unknown names/ops are errors."""
    from onnxdeploy._suggest import close_names

    names = [n.name for n in proto.graph.node if n.name]
    original_names = {n.name for n in original.graph.node if n.name}
    excluded: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits and not any(fnmatch.fnmatchcase(n, pattern) for n in original_names):
            close = close_names(pattern, sorted(original_names | set(names)))
            raise UserInputError(
                f"--exclude-node {pattern!r} matches no node",
                hint=f"did you mean {', '.join(close)}?" if close else "`onnxdeploy inspect MODEL` lists node names",
            )
        excluded.extend(h for h in hits if h not in excluded)
    present = sorted({n.op_type for n in proto.graph.node} | {n.op_type for n in original.graph.node})
    for op in op_types:
        if op not in present:
            close = close_names(op, present)
            raise UserInputError(
                f"--exclude-op {op!r}: the model has no {op} node",
                hint=f"did you mean {', '.join(close)}?" if close else f"op types present: {', '.join(present)}",
            )
        excluded.extend(n.name for n in proto.graph.node if n.op_type == op and n.name and n.name not in excluded)
    return excluded


_PROBABILITY_OPS = ("Softmax", "LogSoftmax")


_PASSTHROUGH_OPS = ("Identity", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _output_softmax_nodes(proto: "onnx.ModelProto") -> list[str]:
    """Named Softmax/LogSoftmax nodes whose output is a graph output (directly or through Identity, Reshape, ...):
    kept in fp32 by default. Quantizing a probability vector to 8 bits loses most small probabilities (a flat one
    entirely), and the op costs next to nothing."""
    producer = {o: n for n in proto.graph.node for o in n.output}
    found = []
    for output in proto.graph.output:
        node = producer.get(output.name)
        while node is not None and node.op_type in _PASSTHROUGH_OPS and node.input:
            node = producer.get(node.input[0])
        if node is not None and node.op_type in _PROBABILITY_OPS and node.name and node.name not in found:
            found.append(node.name)
    return found


# ---------------------------------------------------------------- evaluation


def _looks_like_logits(arr: np.ndarray, name: str) -> bool:
    if arr.dtype.kind != "f" or arr.ndim < 2 or arr.shape[-1] < 2:
        return False
    return arr.ndim == 2 or "logit" in name.lower()


def _nonfinite_warnings(outputs: Sequence[Mapping[str, np.ndarray]]) -> list[str]:
    """A warning per float output the fp32 model itself computes NaN or inf for (compared only where finite)."""
    counts: dict[str, int] = {}
    for sample in outputs:
        for name, value in sample.items():
            value = np.asarray(value)
            if value.dtype.kind == "f":
                counts[name] = counts.get(name, 0) + int((~np.isfinite(value)).sum())
    return [f"the fp32 model's output {name!r} has {n} NaN/inf values on these inputs (outside its domain?); the "
            "error is measured where it is finite: give real data with --calibration"
            for name, n in counts.items() if n]


def output_errors(reference: Sequence[Mapping[str, np.ndarray]], got: Sequence[Mapping[str, np.ndarray]], *,
                  min_cosine: float | None = None) -> list[OutputError]:
    """Max/mean abs error, cosine similarity and top-1 agreement per numeric output, over all samples together,
    measured by the shared numerics (:func:`onnxdeploy.compare_outputs` under the int8 :class:`Tolerance`): a
    constant output gets no cosine (NaN) and a flag, NaN/Inf appearing in one model fails, never a perfect score."""
    from onnxdeploy._numerics import Tolerance, diff_tensor

    # judged by cosine (the user's --min-cosine); top-1 and relative L2 are reported, not judged, as before
    tolerance = Tolerance(precision="int8", min_cosine=min_cosine if min_cosine is not None else DEFAULT_MIN_COSINE,
                          max_rel_l2=float("inf"), min_top1=0.0)
    errors = []
    for name in reference[0]:
        ref = [np.asarray(r[name]) for r in reference]
        if ref[0].dtype.kind not in "biuf":  # strings (and maps or sequences) are not quantized
            continue
        out = [np.asarray(g[name]) for g in got]
        same = all(x.shape == ref[0].shape for x in [*ref, *out])
        a = np.stack(ref) if same else np.concatenate([x.ravel() for x in ref])
        b = np.stack(out) if same else np.concatenate([x.ravel() for x in out])
        d = diff_tensor(name, a, b.astype(a.dtype, copy=False) if b.dtype != a.dtype else b, tolerance=tolerance)
        top1 = d.top1 if _looks_like_logits(ref[0], name) else None
        errors.append(OutputError(name, d.max_abs, d.mean_abs, d.cosine, top1, d.passed, list(d.flags)))
    return errors


def _qtype(name: str | None, option: str):
    from onnxruntime.quantization import QuantType

    if name is None:
        return None
    key = str(name).lower().replace("q", "")
    if key not in QTYPES:
        raise UserInputError(f"{option} must be int8 or uint8, got {name!r}")
    return QuantType.QInt8 if key == "int8" else QuantType.QUInt8


def _file_bytes(path: str | os.PathLike) -> int:
    p = Path(path)
    total = p.stat().st_size
    try:
        from onnxdeploy._io import external_refs, load_proto

        total += sum({ref.location: (p.parent / ref.location).stat().st_size for ref in external_refs(load_proto(p))}.values())
    except Exception:  # sizes are informative only
        pass
    return total


_LARGE_PROTO_BYTES = 1_800_000_000  # onnxruntime's tools save such models with external data


def _is_large(proto: "onnx.ModelProto") -> bool:
    """Near or over protobuf's 2 GB limit (where ``ByteSize()`` itself fails)."""
    try:
        return proto.ByteSize() > _LARGE_PROTO_BYTES
    except Exception:  # noqa: BLE001 - EncodeError: too large to serialize
        return True


def _save_tmp(proto: "onnx.ModelProto", path: Path) -> None:
    import onnx

    if _is_large(proto):
        onnx.save(proto, str(path), save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save(proto, str(path))


class _DropPreprocessAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider to run pre-processing")


@contextlib.contextmanager
def _quiet_onnxruntime_tools():
    """onnxruntime's Python tools log advice and shape-inference notes (``unsupported broadcast between ...``) that
    reach the user's terminal through logging's last-resort handler; the quantizers also log advice to pre-process
    on the root logger (which makes Python add a stderr handler to it). We pre-process when onnxruntime can and say
    so ourselves when it cannot, so only their errors are let through."""
    root, tools = logging.getLogger(), logging.getLogger("onnxruntime")
    guard, drop, level = logging.NullHandler(), _DropPreprocessAdvice(), tools.level
    root.addHandler(guard)  # a root with a handler is not given basicConfig's stderr handler
    root.addFilter(drop)
    tools.setLevel(logging.ERROR)
    try:
        yield
    finally:
        tools.setLevel(level)
        root.removeFilter(drop)
        root.removeHandler(guard)


@contextlib.contextmanager
def _in_dir(folder: Path):
    """Run onnxruntime's tools inside our scratch folder: when its symbolic shape inference gives up it saves
    ``sym_shape_infer_temp.onnx`` and a ``<uuid>.data`` file into the current directory (the user's)."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _preprocess(src: Path, dst: Path, warnings: list[str], *, large: bool = False) -> Path:
    """onnxruntime's quantization pre-processing (shape inference, basic graph optimizations), falling back step
    by step. A model over 2 GB is written with external data and skips symbolic shape inference, which cannot
    read it and would first spend minutes and several copies of the weights in memory finding that out."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    attempts = ({}, {"skip_symbolic_shape": True}, {"skip_symbolic_shape": True, "skip_optimization": True})
    external = {}
    if large:
        attempts = attempts[1:]
        external = {"save_as_external_data": True, "all_tensors_to_one_file": True,
                    "external_data_location": dst.name + ".data"}
    for kwargs in attempts:
        try:
            with _in_dir(dst.parent), _quiet_onnxruntime_tools():
                quant_pre_process(str(src), str(dst), **kwargs, **external)
            gc.collect()
            return dst
        except Exception as err:  # symbolic shape inference fails on some graphs; fall back step by step
            log.debug("quant_pre_process %s failed: %s", kwargs, err)
    warnings.append("onnxruntime's quantization pre-processing failed; quantizing the model as given")
    return src


def _transformer_fusions(src: Path, dst: Path, warnings: list[str], *,
                         large: bool = False) -> tuple[Path, dict[str, int] | None]:
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        with _in_dir(dst.parent), _quiet_onnxruntime_tools():
            optimized = optimize_model(str(src), model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
        stats = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
        optimized.save_model_to_file(str(dst), use_external_data_format=large)
        del optimized
        gc.collect()  # its graph holds reference cycles: several copies of the weights until collected
        return dst, stats
    except Exception as err:
        warnings.append(f"onnxruntime's transformer optimizer failed ({type(err).__name__}); quantizing without it")
        return src, None


def _reader(samples: Sequence[Mapping[str, np.ndarray]]):
    """A CalibrationDataReader over a list of feeds."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([dict(s) for s in samples])

        def get_next(self):
            return next(self._it, None)

    return Reader()


def _session(path: str | os.PathLike, opts: QuantizeOptions):
    """The session a model is both evaluated and timed in (fp32 and each attempt alike: the same options)."""
    from onnxdeploy._run import create_session

    return create_session(str(path), threads=opts.threads)


def _run_all(session, samples: Sequence[Mapping[str, np.ndarray]]) -> list[dict]:
    from onnxdeploy._run import run_session

    return [run_session(session, s) for s in samples]


def _measure(fp32, quantized, feeds: Mapping[str, np.ndarray], opts: QuantizeOptions) -> RatioMeasurement:
    """fp32 vs quantized sessions (same options), timed by bench's timer until the ratio is stable."""
    from onnxdeploy._bench import measure_ratio

    return measure_ratio(fp32, quantized, feeds, max_seconds=opts.measure_seconds)


# ---------------------------------------------------------------- the verb


@dataclass
class _Source:
    """What every attempt starts from."""

    fp32_path: str  # the fp32 model the reference outputs and timings come from
    path: Path  # the quantizer's input (the user's file, or a rewritten copy)
    proto: "onnx.ModelProto"  # its graph, weights not loaded
    pre: Path  # after onnxruntime's pre-processing
    kind: str
    large: bool
    input_bytes: int
    folder: Path  # scratch


@dataclass
class _Data:
    """Calibration samples and held-out samples (never the same ones), fp32's outputs on the held-out ones, and
    the fp32 session they came from (reused to time every attempt)."""

    calibration: list[dict]
    heldout: list[dict]
    source: str
    reference: list[dict] | None
    fp32_session: object = None
    details: str = ""  # how the calibration data was read (file layout; image resize/normalize/layout)


def _check_output(model: ModelLike, output) -> None:
    if output is None:
        return
    out = Path(output)
    if out.is_dir():
        raise UserInputError(f"{out} is a folder; give a file name such as {out / 'model.int8.onnx'}")
    if not (out.parent if str(out.parent) else Path(".")).exists():
        raise UserInputError(f"{out.parent}: output folder does not exist", hint=f"mkdir -p {out.parent}")
    if isinstance(model, (str, os.PathLike)) and out.resolve() == Path(model).resolve():
        raise UserInputError("the output would overwrite the input model", hint="choose another -o path")


def _source(model: ModelLike, proto: "onnx.ModelProto", opts: QuantizeOptions, folder: Path,
            warnings: list[str]) -> _Source:
    path, proto = _quantizer_input(model, proto, folder, warnings)
    fp32_path = str(model) if isinstance(model, (str, os.PathLike)) else str(path)
    size = _file_bytes(path)
    large = size > _LARGE_PROTO_BYTES
    kind = model_kind(proto)
    if large and opts.transformer_fusion is None and kind == "transformer":
        warnings.append("model over 2 GB: onnxruntime's transformer fusions are skipped (they hold several copies "
                        "of the weights: 14 GB for a 2.4 GB model; on BERT-base they changed the int8 speed by "
                        "about 2%); run them with --transformer-fusion")
    pre = _preprocess(path, folder / "pre.onnx", warnings, large=large)
    input_bytes = size if Path(fp32_path).resolve() == path else _file_bytes(fp32_path)
    return _Source(fp32_path, path, proto, pre, kind, large, input_bytes, folder)


def _data(src: _Source, opts: QuantizeOptions, warnings: list[str]) -> _Data:
    if opts.calibration is None:
        count = opts.samples or DEFAULT_SAMPLES
        dims = _runnable_dims(str(src.path), src.proto, opts.dims or {}, opts.shapes, opts.seed, opts.threads,
                              warnings)
        calib = synthesize_samples(src.proto, count, dims=dims, shapes=opts.shapes, seed=opts.seed)
        held = synthesize_samples(src.proto, opts.heldout or DEFAULT_HELDOUT, dims=dims, shapes=opts.shapes,
                                  seed=opts.seed + 10_000)
        source = f"synthesized ({count} seeded samples)"
        details = ""
    else:
        loaded = _load_calibration(opts, src.proto)
        calib, held = _split_heldout(loaded, opts.heldout, warnings)
        if opts.samples is not None:
            calib = calib[: opts.samples]
        cal = opts.calibration
        source = str(cal) if isinstance(cal, (str, os.PathLike)) or hasattr(cal, "load") else type(cal).__name__
        details = loaded.description
    fp32 = _session(src.fp32_path, opts) if (opts.verify or opts.measure) else None
    reference = _run_all(fp32, held) if fp32 is not None else None
    warnings += _nonfinite_warnings(reference or [])
    return _Data(calib, held, source, reference, fp32, details)


def _load_calibration(opts: QuantizeOptions, model: "onnx.ModelProto"):
    """The user's calibration data; with ``samples`` N (and no limit of its own), a seeded subset of N plus the
    held-out ones is read, so that a folder of 50,000 images is not."""
    import dataclasses

    from onnxdeploy._calibration import Calibration

    limit = None if opts.samples is None else opts.samples + (opts.heldout if opts.heldout is not None else 8)
    cal = opts.calibration
    if isinstance(cal, Calibration):
        return load_calibration(cal if cal.limit is not None else dataclasses.replace(cal, limit=limit), model)
    if isinstance(cal, (str, os.PathLike)):
        return load_calibration(cal, model, limit=limit, seed=opts.seed)
    return load_calibration(cal, model)  # arrays or feeds given in Python: all of them, as before


def _split_heldout(data: list[dict], heldout: int | None, warnings: list[str]) -> tuple[list[dict], list[dict]]:
    n_held = heldout if heldout is not None else min(8, max(1, len(data) // 5))
    if len(data) < 2 or n_held < 1 or n_held >= len(data):
        warnings.append("no held-out samples: the error is measured on calibration data (give more samples)")
        return data, data[: max(1, min(len(data), n_held or DEFAULT_HELDOUT))]
    return data[: len(data) - n_held], data[len(data) - n_held :]


def _first_mode(mode: str, kind: str, ops: set[str]) -> str:
    if mode != "auto":
        return mode
    if kind == "other":
        return "dynamic" if ops & _MATMUL_OPS and not ops & _CONV_OPS else "static"
    return "static" if kind == "cnn" else "dynamic"


def _attempt(q_mode: str, src: _Source, data: _Data, opts: QuantizeOptions, warnings: list[str]) -> Attempt:
    """Quantize in ``q_mode``, then (unless it quantized nothing) compare with fp32 and time it."""
    import onnx

    static = q_mode == "static"
    attempt = Attempt(q_mode, opts.activation_type or "uint8" if static else None, str(opts.weight_type),
                      opts.per_channel if opts.per_channel is not None else static)
    fuse = opts.transformer_fusion if opts.transformer_fusion is not None else (
        src.kind == "transformer" and not static and not src.large
        and bool(_FUSION_OPS & {n.op_type for n in src.proto.graph.node}))
    base, attempt.transformer_fusions = (
        _transformer_fusions(src.pre, src.folder / f"fused-{q_mode}.onnx", warnings, large=src.large)
        if fuse else (src.pre, None))
    base_proto = onnx.load(str(base), load_external_data=False)
    attempt.excluded_nodes = _resolve_exclusions(base_proto, src.proto, opts.exclude_nodes, opts.exclude_ops)
    attempt.excluded_nodes += [n for n in _output_softmax_nodes(base_proto) if n not in attempt.excluded_nodes]
    attempt.path = _run_quantizer(attempt, base, src, data, opts)
    q_proto = onnx.load(str(attempt.path), load_external_data=False)
    attempt.quantized_ops = _quant_op_counts(q_proto)
    attempt.quantized_nodes = quantized_nodes(q_proto)
    if not attempt.quantized_nodes:
        attempt.rejected = (f"{q_mode} quantization left every op in float (of {_op_counts(quantizable_nodes(base_proto))}"
                            f"{', excluded: ' + str(len(attempt.excluded_nodes)) if attempt.excluded_nodes else ''})")
        return attempt
    quantized = _session(attempt.path, opts) if data.fp32_session is not None else None
    if data.reference is not None:
        attempt.outputs = output_errors(data.reference, _run_all(quantized, data.heldout), min_cosine=opts.min_cosine)
    if opts.measure:
        attempt.speed = _measure(data.fp32_session, quantized, data.heldout[0], opts)
    return attempt


def _run_quantizer(attempt: Attempt, base: Path, src: _Source, data: _Data, opts: QuantizeOptions) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_dynamic, quantize_static

    q_path = src.folder / f"quantized-{attempt.mode}.onnx"
    common = dict(weight_type=_qtype(opts.weight_type, "--weight-type"), per_channel=attempt.per_channel,
                  nodes_to_exclude=attempt.excluded_nodes, use_external_data_format=src.large)
    with _quiet_onnxruntime_tools():
        if attempt.mode == "static":
            quantize_static(
                str(base), str(q_path), _reader(data.calibration), quant_format=QuantFormat.QDQ,
                activation_type=_qtype(attempt.activation_type, "--activation-type"),
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, **(opts.extra_options or {})},
                **common,
            )
        else:
            quantize_dynamic(str(base), str(q_path), op_types_to_quantize=_dynamic_op_types(src.kind),
                             extra_options=dict(opts.extra_options or {}), **common)
    gc.collect()
    return q_path


def _quant_op_counts(proto: "onnx.ModelProto") -> dict[str, int]:
    from collections import Counter

    return dict(sorted(Counter(n.op_type for n in proto.graph.node if n.op_type in _QUANT_OPS).items()))


def _attempts(src: _Source, data: _Data, opts: QuantizeOptions, warnings: list[str]) -> list[Attempt]:
    """The first mode for this model; in auto mode also the other one when the first quantized nothing or ran
    slower than fp32 (by the median)."""
    first = _first_mode(opts.mode, src.kind, {n.op_type for n in src.proto.graph.node})
    attempts = [_attempt(first, src, data, opts, warnings)]
    a = attempts[0]
    if opts.mode == "auto" and (a.rejected or (a.speedup is not None and a.speedup < 1.0)):
        other = "dynamic" if first == "static" else "static"
        why = a.rejected or f"ran {ratio_words(a.speedup)} than fp32 here"
        warnings.append(f"{why}; trying {other}")
        attempts.append(_attempt(other, src, data, opts, warnings))
    return attempts


def _choose(attempts: list[Attempt], opts: QuantizeOptions, warnings: list[str]) -> tuple[list[Attempt], str]:
    """The attempts, the one to write first (fastest by median), and the decision in words. Refused: nothing
    quantized; in auto mode, a result slower than fp32 beyond the noise (the interval's upper bound below 1)."""
    usable = sorted((a for a in attempts if not a.rejected), key=lambda a: -(a.speedup or 0.0))
    if not usable:
        raise UnsupportedError(
            f"nothing to quantize: {'; '.join(a.rejected for a in attempts)}; nothing written",
            hint="onnxruntime quantizes Conv, MatMul, Gemm and similar ops with float weights; "
            "check --exclude-node/--exclude-op, or keep the model in fp32",
        )
    ordered = usable + [a for a in attempts if a.rejected]
    best, speed = usable[0], usable[0].speed
    if speed is None:
        return ordered, f"wrote {best.mode}; its speed was not measured"
    words = f"{ratio_words(speed.speedup)} than fp32"
    noisy = f" (a noisy figure: {noisy_note(speed)})" if speed.noisy else ""
    if opts.mode != "auto":
        if speed.speedup < 1.0:
            warnings.append(f"THE QUANTIZED MODEL IS {words.upper()} on this machine; keep the fp32 model, or try "
                            "--mode static with uint8 activations (this CPU's int8 kernels may be missing)")
        return ordered, f"wrote {best.mode} as asked (--mode {best.mode}): {words}{noisy}"
    if speed.slower:
        tried = ", ".join(f"{a.mode} {ratio_words(a.speedup)}" for a in usable)
        raise UnsupportedError(
            f"no int8 variant runs faster than fp32 here ({tried} than fp32); nothing written",
            hint="keep the fp32 model, or write one anyway with --mode static or --mode dynamic",
        )
    if speed.speedup < 1.0:
        warnings.append(f"{best.mode} measured {words}, but within the noise ({noisy_note(speed)}): written; "
                        "time both with `onnxdeploy bench` on a quiet machine before deploying it")
        return ordered, f"auto: wrote {best.mode}, {words} but not beyond the noise (a noisy figure)"
    if speed.noisy:
        warnings.append(f"the speed measurement is noisy: {noisy_note(speed)}; the decision to write "
                        f"{best.mode} was made on a noisy figure")
    return ordered, f"auto: wrote {best.mode}, {words}{noisy}"


def _check_agreement(best: Attempt, opts: QuantizeOptions) -> None:
    failed = [o for o in best.outputs if not o.passed]
    if not opts.verify or not failed:
        return
    worst = failed[0]
    why = f"cosine similarity {worst.cosine:.4f} to fp32 (below {opts.min_cosine}" if worst.cosine == worst.cosine \
        else f"{'; '.join(worst.flags) or 'no agreement'} (cosine says nothing here"
    raise OutputsDisagree(
        f"quantized output {worst.name!r} has {why}; max abs error {worst.max_abs:.4g}); nothing written",
        hint="calibrate with real data, exclude sensitive nodes (--exclude-node/--exclude-op), use "
        "--per-channel, or accept it with --min-cosine",
    )


def _write(best: Attempt, output) -> tuple[str | None, int]:
    import onnx

    from onnxdeploy._io import save

    if output is None:
        return None, _file_bytes(best.path)
    written = str(save(onnx.load(str(best.path)), output))
    return written, _file_bytes(written)


def _report(attempts: list[Attempt], decision: str, src: _Source, data: _Data, opts: QuantizeOptions,
            written: tuple[str | None, int], seconds: float, warnings: list[str]) -> QuantizeReport:
    best = attempts[0]
    static = best.mode == "static"
    if opts.calibration is None and static:
        warnings.insert(0, SYNTHESIZED_WARNING)
    warnings += [f"output {o.name!r}: {flag}" for o in best.outputs for flag in o.flags]
    return QuantizeReport(
        output=written[0],
        model_kind=src.kind,
        calibration=data.source if static else "not needed (dynamic)",
        calibration_details=data.details if static else "",
        calibration_samples=len(data.calibration) if static else 0,
        heldout_samples=len(data.heldout),
        decision=decision,
        input_bytes=src.input_bytes,
        output_bytes=written[1],
        seconds=seconds,
        threads=opts.threads,
        attempts=attempts,
        warnings=warnings,
    )


def quantize(
    model: ModelLike,
    output: str | os.PathLike | None,
    *,
    mode: str = "auto",
    calibration=None,
    per_channel: bool | None = None,
    weight_type: str = "int8",
    activation_type: str | None = None,
    exclude_nodes: Sequence[str] = (),
    exclude_ops: Sequence[str] = (),
    samples: int | None = None,
    heldout: int | None = None,
    dims: Mapping[str, int] | None = None,
    shapes: Mapping[str, Sequence] | None = None,
    seed: int = 0,
    threads: int | None = None,
    transformer_fusion: bool | None = None,
    verify: bool = True,
    measure: bool = True,
    min_cosine: float = DEFAULT_MIN_COSINE,
    measure_seconds: float = MEASURE_SECONDS,
    extra_options: Mapping[str, object] | None = None,
    weights: str | None = None,
    block_size: int = 32,
    symmetric: bool = True,
    accuracy_level: int | None = None,
) -> QuantizeReport:
    """Quantize ``model`` to int8, check it against fp32 on held-out inputs, time it, and write it to ``output``.

    ``mode``: ``auto`` (by model type; see the module doc), ``static`` (QDQ, calibrated) or ``dynamic``.
    ``calibration``: an ``.npz`` path, a folder of ``.npy``/``.pb`` files (or of sample folders), a folder of images,
    a :class:`~onnxdeploy.Calibration` (a source with its image options), a dict of stacked arrays, a list of feed
    dicts (see :func:`~onnxdeploy.load_calibration`), or None to synthesize ``samples`` seeded inputs (with a
    warning). Some samples are held out for evaluation (``heldout``, default a fifth up to 8). ``exclude_nodes`` are node-name globs,
    ``exclude_ops`` op types kept in fp32. With ``verify`` a cosine below ``min_cosine`` raises
    :class:`OutputsDisagree` and nothing is written; ``output=None`` quantizes and measures without writing.
    ``measure_seconds`` is the budget for timing each attempt until its speedup is stable (else reported noisy).
    A model where nothing would run quantized raises :class:`UnsupportedError` (or :class:`UserInputError` when
    the user excluded it all) and writes nothing.

    ``weights="int4"``/``"int8"`` quantizes the MatMul weights only, block-wise (``block_size``, ``symmetric``,
    ``accuracy_level``), to onnxruntime's MatMulNBits: :func:`onnxdeploy.quantize_weights`, which returns a
    :class:`~onnxdeploy.WeightQuantReport` (for decoders: token agreement, logits cosine, decode tokens/s).
    """
    if weights is not None:  # weight-only: onnxdeploy._weight_quant (its own int4/int8 bounds unless min_cosine given)
        from onnxdeploy._weight_quant import quantize_weights

        return quantize_weights(model, output, weights=weights, block_size=block_size, symmetric=symmetric,
                                accuracy_level=accuracy_level, exclude_nodes=exclude_nodes, verify=verify,
                                measure=measure, threads=threads, seed=seed,
                                min_cosine=None if min_cosine == DEFAULT_MIN_COSINE else min_cosine)
    opts = QuantizeOptions(
        mode=mode, calibration=calibration, per_channel=per_channel, weight_type=weight_type,
        activation_type=activation_type, exclude_nodes=tuple(exclude_nodes), exclude_ops=tuple(exclude_ops),
        samples=samples, heldout=heldout, dims=dims, shapes=shapes, seed=seed, threads=threads,
        transformer_fusion=transformer_fusion, verify=verify, measure=measure, min_cosine=min_cosine,
        measure_seconds=measure_seconds, extra_options=extra_options,
    )
    return quantize_with(model, output, opts)


def quantize_with(model: ModelLike, output: str | os.PathLike | None, opts: QuantizeOptions) -> QuantizeReport:
    """:func:`quantize` with its options as one :class:`QuantizeOptions`."""
    started = time.perf_counter()  # the command's wall time (latencies come from bench's timer)
    opts.validate()
    _check_output(model, output)
    proto = as_proto(model)  # the graph; a file's weights stay on disk
    from onnxdeploy._bounds import check_subgraph_depth

    check_subgraph_depth(proto, what=str(model) if isinstance(model, (str, os.PathLike)) else "the model")
    _refuse_unquantizable(proto)
    _refuse_nothing_to_quantize(proto, opts)
    warnings: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="onnxdeploy-quantize-"))
    try:
        src = _source(model, proto, opts, folder, warnings)
        data = _data(src, opts, warnings)
        attempts, decision = _choose(_attempts(src, data, opts, warnings), opts, warnings)
        _check_agreement(attempts[0], opts)
        written = _write(attempts[0], output)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return _report(attempts, decision, src, data, opts, written, time.perf_counter() - started, warnings)
