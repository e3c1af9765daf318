"""Weight-only quantization: int4 or int8 block-wise weights with onnxruntime's ``MatMulNBitsQuantizer``
(MatMul -> ``com.microsoft.MatMulNBits``), for decoder language models above all: their decode step reads every
weight once per token, so 4-bit weights cut the bytes read (and the time) roughly by the compression.

The result is judged through the verifier with the int8-style tolerance (cosine, rel L2, top-1 on logits), at two
input sets (for a decoder: a prefill and a decode step with a cache); for a decoder it also greedy-generates with
both models and reports per-step token agreement and logits cosine (teacher-forced), and decode tokens/s of both.
Nothing is written when verification fails (unless ``verify=False``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from onnxdeploy._io import ModelLike, as_proto
from onnxdeploy.errors import OutputsDisagree, UnsupportedError, UserInputError

if TYPE_CHECKING:
    import onnx

    from onnxdeploy._generate import GenerationReport
    from onnxdeploy._numerics import Tolerance
    from onnxdeploy._verify import Verification

log = logging.getLogger(__name__)

WEIGHTS = {"int4": 4, "int8": 8}
BLOCK_SIZES = (16, 32, 64, 128, 256)
ACCURACY_LEVELS = (0, 1, 2, 3, 4)  # MatMulNBits: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8 compute
DEFAULT_BLOCK_SIZE = 32
# The verifier's int8-style metric (cosine, rel L2, top-1 on logits); 4-bit weights carry ~16x the rounding error of
# 8-bit ones, so their bounds are wider (measured on random-weight Llama/Qwen2 configs: logits cosine 0.98-0.995, top-1
# 0.6-0.9: random weights give near-flat logits whose argmax flips on near-ties, so top-1 is a weak signal there).
TOLERANCES: dict[str, dict[str, float]] = {
    "int8": {"min_cosine": 0.99, "max_rel_l2": 0.1, "min_top1": 0.9},
    "int4": {"min_cosine": 0.97, "max_rel_l2": 0.25, "min_top1": 0.5},
}


@dataclass
class WeightQuantReport:
    """What :func:`quantize_weights` did and how close the result stays to the original."""

    weights: str
    block_size: int
    symmetric: bool
    accuracy_level: int | None
    quantized: int  # MatMulNBits nodes in the result
    matmuls: int  # MatMul nodes with a constant weight in the original
    input_bytes: int
    output_bytes: int
    verification: "Verification | None"
    generation: "GenerationReport | None" = None  # the quantized model's greedy run, the fp32 one as reference
    fp32_speed: "GenerationReport | None" = None
    quantized_speed: "GenerationReport | None" = None
    output: str | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def cosine(self) -> float | None:
        """The lowest cosine of any output to the original's (the verifier's metric)."""
        values = [d.cosine for c in (self.verification.comparisons if self.verification else ())
                  for d in c.diffs if not math.isnan(d.cosine)]
        return min(values) if values else None

    @property
    def logits_cosine(self) -> float | None:
        values = [d.cosine for c in (self.verification.comparisons if self.verification else ())
                  for d in c.diffs if d.name == "logits" and not math.isnan(d.cosine)]
        return min(values) if values else self.cosine

    @property
    def token_agreement(self) -> float | None:
        return self.generation.token_agreement if self.generation else None

    @property
    def speedup(self) -> float | None:
        a = self.fp32_speed and self.fp32_speed.decode_tokens_per_s
        b = self.quantized_speed and self.quantized_speed.decode_tokens_per_s
        return b / a if a and b else None

    @property
    def size_ratio(self) -> float | None:
        return self.input_bytes / self.output_bytes if self.output_bytes else None

    def to_dict(self) -> dict:
        return {
            "weights": self.weights, "block_size": self.block_size, "symmetric": self.symmetric,
            "accuracy_level": self.accuracy_level, "quantized": self.quantized, "matmuls": self.matmuls,
            "input_bytes": self.input_bytes, "output_bytes": self.output_bytes, "size_ratio": self.size_ratio,
            "cosine": self.cosine, "logits_cosine": self.logits_cosine, "token_agreement": self.token_agreement,
            "verification": self.verification.to_dict() if self.verification else None,
            "generation": self.generation.to_dict() if self.generation else None,
            "fp32_decode_tokens_per_s": self.fp32_speed.decode_tokens_per_s if self.fp32_speed else None,
            "quantized_decode_tokens_per_s": self.quantized_speed.decode_tokens_per_s if self.quantized_speed
            else None,
            "speedup": self.speedup, "output": self.output, "seconds": self.seconds, "warnings": self.warnings,
        }


def _check_options(weights: str, block_size: int, accuracy_level: int | None) -> int:
    from onnxdeploy._suggest import did_you_mean

    if weights not in WEIGHTS:
        raise UserInputError(f"--weights {weights}: not a weight type; {did_you_mean(weights, list(WEIGHTS))}",
                             hint="choose int4 or int8")
    if block_size not in BLOCK_SIZES:
        raise UserInputError(f"--block-size {block_size}: MatMulNBits takes a power of two from 16 to 256",
                             hint="e.g. --block-size 32 (more accurate) or 128 (smaller, faster)")
    if accuracy_level is not None and accuracy_level not in ACCURACY_LEVELS:
        raise UserInputError(f"--accuracy-level {accuracy_level}: must be 0-4",
                             hint="4 computes in int8 (fastest on CPU), 1 in fp32; omit it for onnxruntime's default")
    return WEIGHTS[weights]


def _constant_matmuls(proto: "onnx.ModelProto") -> int:
    consts = {t.name for t in proto.graph.initializer}
    return sum(1 for n in proto.graph.node if n.op_type == "MatMul" and n.domain in ("", "ai.onnx")
               and len(n.input) > 1 and n.input[1] in consts)


def _short_k_matmuls(proto: "onnx.ModelProto", block_size: int) -> list[str]:
    """Names of the MatMuls whose constant weight has fewer input rows (K) than one block: padded to a block and
    given one scale, their values would be crushed (e.g. the rotary cos/sin cache's ``positions @ inv_freq``, K=1,
    whose frequencies span 1 to 1e-4). Unnamed ones get a name here (``proto`` is the quantizer's copy)."""
    dims = {t.name: list(t.dims) for t in proto.graph.initializer}
    names = []
    for i, node in enumerate(proto.graph.node):
        if node.op_type == "MatMul" and len(node.input) > 1 and len(dims.get(node.input[1], [])) == 2 \
                and dims[node.input[1]][0] < block_size:
            node.name = node.name or f"matmul_short_k_{i}"
            names.append(node.name)
    return names


def _run_quantizer(proto: "onnx.ModelProto", bits: int, block_size: int, symmetric: bool,
                   accuracy_level: int | None, exclude_nodes: Sequence[str]) -> "onnx.ModelProto":
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    work = onnx.ModelProto()
    work.CopyFrom(proto)  # the quantizer edits the proto it is given in place
    exclude_nodes = [*exclude_nodes, *_short_k_matmuls(work, block_size)]
    ort_log = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = ort_log.level
    ort_log.setLevel(logging.WARNING)  # one INFO line per MatMul otherwise
    try:
        quantizer = MatMulNBitsQuantizer(work, bits=bits, block_size=block_size, is_symmetric=symmetric,
                                         accuracy_level=accuracy_level, nodes_to_exclude=list(exclude_nodes),
                                         op_types_to_quantize=("MatMul",))
        quantizer.process()
    finally:
        ort_log.setLevel(level)
    return quantizer.model.model


def weight_tolerance(weights: str, signature=None, *, min_cosine: float | None = None) -> "Tolerance":
    """The int8-style :class:`~onnxdeploy._numerics.Tolerance` for ``weights``; a decoder's cache outputs
    (``present.N.key/value``) are judged by cosine and rel L2 only (top-1 means nothing for them)."""
    from onnxdeploy._numerics import Tolerance

    bounds = dict(TOLERANCES[weights])
    if min_cosine is not None:
        bounds["min_cosine"] = min_cosine
    per_output = {name: {"min_top1": 0.0} for name in (signature.present_names() if signature else ())}
    return Tolerance(precision="int8", per_output=per_output, **bounds)


def _verify(original: Any, quantized: Any, *, seed: int, signature, tolerance) -> "Verification":
    """The verifier's verdict: at a prefill and a decode step for a decoder, else at two synthesized shapes."""
    from onnxdeploy._generate import verification_sets
    from onnxdeploy._verify import Inputs, verify

    if signature is None:
        return verify(original, quantized, Inputs(seed=seed), tolerance=tolerance, label="quantized")
    result = None
    for label, feeds in verification_sets(signature, seed=seed):
        one = verify(original, quantized, Inputs(arrays=feeds), tolerance=tolerance, label="quantized")
        for comparison in one.comparisons:
            comparison.label = label
        one.shapes = [label]
        if result is None:
            result = one
        else:
            result.comparisons += one.comparisons
            result.errors += one.errors
            result.shapes += one.shapes
            result.seconds += one.seconds
    return result


def quantize_weights(
    model: ModelLike,
    output: str | os.PathLike | None,
    *,
    weights: str = "int4",
    block_size: int = DEFAULT_BLOCK_SIZE,
    symmetric: bool = True,
    accuracy_level: int | None = None,
    exclude_nodes: Sequence[str] = (),
    verify: bool = True,
    min_cosine: float | None = None,
    generate: bool = True,
    measure: bool = True,
    new_tokens: int = 16,
    prompt_ids: Sequence[int] | None = None,
    threads: int | None = None,
    seed: int = 0,
) -> WeightQuantReport:
    """Quantize ``model``'s constant MatMul weights to ``weights`` (``int4``/``int8``) in blocks of ``block_size``
    along the input dim with onnxruntime's ``MatMulNBitsQuantizer`` (``symmetric`` or with zero points;
    ``accuracy_level`` the MatMulNBits compute type: 4 = int8, fastest on x86 CPUs). Verified with the int8-style
    :class:`~onnxdeploy._numerics.Tolerance` of :data:`TOLERANCES` (``min_cosine`` overrides its cosine bound;
    raises :class:`OutputsDisagree`, nothing written, unless ``verify=False``). For a decoder with a KV cache, ``generate`` compares greedy generations of ``new_tokens``
    (per-step token agreement, logits cosine) and ``measure`` times decode tokens/s of both models."""
    started = time.perf_counter()
    bits = _check_options(weights, block_size, accuracy_level)
    from onnxdeploy._io import check_output_path, save
    from onnxdeploy._generate import decoder_signature

    if output is not None:
        check_output_path(output)
    proto = as_proto(model, load_weights=True)
    matmuls = _constant_matmuls(proto)
    if not matmuls:
        raise UnsupportedError("nothing to quantize: the model has no MatMul with a constant weight",
                               hint="weight-only quantization targets MatMul weights; try --mode dynamic instead")
    input_bytes = proto.ByteSize()
    quantized = _run_quantizer(proto, bits, block_size, symmetric, accuracy_level, exclude_nodes)
    count = sum(1 for n in quantized.graph.node if n.op_type == "MatMulNBits")
    if not count:
        raise UnsupportedError(f"onnxruntime's quantizer replaced none of the {matmuls} MatMuls",
                               hint="their weights may be smaller than --block-size, or all excluded")
    signature = decoder_signature(proto)
    report = WeightQuantReport(weights, block_size, symmetric, accuracy_level, count, matmuls, input_bytes,
                               quantized.ByteSize(), None)
    if count < matmuls:
        report.warnings.append(f"{matmuls - count} of {matmuls} MatMuls kept in fp32 (excluded, K below one "
                               "block such as the rotary cache's positions @ inv_freq, or K not a multiple the "
                               "kernel takes)")
    tolerance = weight_tolerance(weights, signature, min_cosine=min_cosine)
    report.verification = _verify(proto, quantized, seed=seed, signature=signature, tolerance=tolerance)
    if verify and not report.verification.passed:
        raise OutputsDisagree(f"{weights} weights drift too far from fp32: {report.verification.failures()[0]}",
                              hint="try --block-size 16, --weights int8, or --no-verify to write it anyway")
    if signature is not None and (generate or measure):
        _generation(report, proto, quantized, signature, new_tokens=new_tokens, prompt_ids=prompt_ids,
                    threads=threads, generate=generate, measure=measure, seed=seed)
    if output is not None:
        report.output = str(save(quantized, output))
        report.output_bytes = Path(output).stat().st_size
    report.seconds = time.perf_counter() - started
    return report


def _generation(report: WeightQuantReport, proto, quantized, signature, *, new_tokens: int, prompt_ids,
                threads: int | None, generate: bool, measure: bool, seed: int) -> None:
    """Greedy generations of both models through :func:`onnxdeploy._generate.generate` (the fp32 model as the
    reference: token agreement per step, teacher-forced after a first difference, logits cosine per step) and the
    decode tokens/s of both."""
    from onnxdeploy._generate import Decoder, decode_speed, default_prompt, generate as generate_tokens

    prompt = list(prompt_ids) if prompt_ids else default_prompt(signature, seed=seed)
    reference = Decoder(proto, threads=threads, signature=signature)
    candidate = Decoder(quantized, threads=threads, signature=signature)
    if generate:
        report.generation = generate_tokens(candidate, prompt, max_new_tokens=new_tokens, reference=reference)
    if measure:
        report.fp32_speed = decode_speed(reference, prompt=prompt, new_tokens=max(new_tokens, 8))
        report.quantized_speed = decode_speed(candidate, prompt=prompt, new_tokens=max(new_tokens, 8))
