"""Optimize a decoder language model (KV cache) for decoding on onnxruntime: the optimize pipeline with the onnxscript
rewriter's onnxruntime fusions on (RMS/SkipSimplifiedLayerNormalization, rotary embedding, SDPA -> MultiHeadAttention
or GroupQueryAttention, ...), verified at a prefill and at a decode step with consistent cache inputs.

``optimize --preset decoder`` (:func:`optimize_decoder`): the general pipeline keeps these fusions off on the CPU
(measured no faster on encoders); a decoder's step is what they are for. The report lists the fusions that fired
(the contrib ops in the result, not the rewriter's intermediate counts: a rotary fusion that no later fusion consumes
is inlined back).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from onnxdeploy._io import ModelLike
from onnxdeploy.errors import OutputsDisagree, UserInputError

if TYPE_CHECKING:
    import onnx_ir as ir

    from onnxdeploy._optimize import OptimizeResult

PRESETS = ("decoder",)
# fp32 re-associations (fused attention, normalizations): logits of a few units agree to ~1e-5 relative
DECODER_ATOL = 1e-3
DECODER_RTOL = 1e-3
# steps the preset skips: our chain cleanup rewrites the RMSNorm subgraphs of torch's export (5 rewrites on a 2-layer
# Llama) so that the SkipSimplifiedLayerNormalization fusion no longer matches them
DECODER_SKIP = ("chains",)


def check_preset(preset: str) -> str:
    """``preset`` if it names one of :data:`PRESETS`, else a one-line :class:`UserInputError` with the closest."""
    from onnxdeploy._suggest import did_you_mean

    if preset not in PRESETS:
        raise UserInputError(f"--preset {preset}: no such preset; {did_you_mean(preset, list(PRESETS), what='presets')}",
                             hint="presets: " + ", ".join(PRESETS))
    return preset


def _contrib(key: str) -> bool:
    """An op of :class:`ModelStats.ops` that onnxruntime adds to ONNX: ``com.microsoft.X``, or an op of the default
    domain that the ONNX standard does not define (onnxruntime's ``SimplifiedLayerNormalization``)."""
    import onnx

    if "." in key:
        return key.startswith("com.microsoft.")
    return not onnx.defs.has(key)


def fused_ops(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """The onnxruntime contrib ops (counts of :class:`ModelStats.ops`) the result gained, by op type."""
    gained = Counter({k: v for k, v in after.items() if _contrib(k)})
    gained.subtract({k: v for k, v in before.items() if _contrib(k)})
    return {k.rsplit(".", 1)[-1]: v for k, v in gained.most_common() if v > 0}


def optimize_decoder(
    model: ModelLike,
    *,
    level: str = "all",
    verify: bool = True,
    atol: float = DECODER_ATOL,
    rtol: float = DECODER_RTOL,
    providers: Sequence[str] | None = None,
    skip: Iterable[str] | None = None,
    seed: int = 0,
    prompt_length: int = 8,
    past_length: int = 6,
) -> "OptimizeResult":
    """Optimize a decoder with a KV cache for onnxruntime (``onnxdeploy optimize --preset decoder``).

    Runs :func:`onnxdeploy.optimize` with ``for_runtime="onnxruntime"`` and the onnxruntime fusions on, verified on a
    prefill (past 0, ``prompt_length`` tokens) and then on a decode step (one token after ``past_length`` cached
    ones) with fp32 ``atol``/``rtol``. ``skip`` (step names) defaults to :data:`DECODER_SKIP`.
    The report's notes name the fusions that fired.
    Raises :class:`OutputsDisagree` when the result differs at either step."""
    from onnxdeploy._io import as_model, load_mapped
    from onnxdeploy._llm_eval import require_decoder, verification_sets
    from onnxdeploy._optimize import optimize

    start = time.perf_counter()
    original = load_mapped(model) if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__") else as_model(model)
    signature = require_decoder(original)
    (prefill_label, prefill), (decode_label, decode) = verification_sets(
        signature, seed=seed, prompt=prompt_length, past=past_length)
    result = optimize(original, for_runtime="onnxruntime", ort_fusions=True, level=level, verify=verify,
                      atol=atol, rtol=rtol, providers=providers, skip=DECODER_SKIP if skip is None else tuple(skip),
                      seed=seed, inputs=prefill)
    report = result.report
    for comparison in report.verification:
        comparison.label = prefill_label
    if verify:
        _check_decode_step(original, result.model, decode, decode_label, atol=atol, rtol=rtol, providers=providers,
                           verification=report.verification)
    fired = fused_ops(report.before.ops, report.after.ops)
    report.notes.append("fusions fired: " + (", ".join(f"{k} {v}" for k, v in fired.items()) if fired else
                                             "none (no pattern of onnxruntime's contrib ops matched)"))
    report.notes.append(f"decoder preset: {signature.layers} layers, KV cache {signature.kv_heads} heads x "
                        f"{signature.head_dim}; verified at a prefill and a decode step")
    report.seconds = time.perf_counter() - start
    return result


def _check_decode_step(original: "ir.Model", optimized: "ir.Model", feeds, label: str, *, atol: float, rtol: float,
                       providers, verification: list) -> None:
    from onnxdeploy._verify import Inputs, verify

    verdict = verify(original, optimized, Inputs(arrays=feeds), atol=atol, rtol=rtol, providers=providers,
                     label="optimized")
    for comparison in verdict.comparisons:
        comparison.label = label
    verification += verdict.comparisons
    if not verdict.passed:
        raise OutputsDisagree(f"the optimized decoder differs at a decode step: {verdict.failures()[0]}",
                              hint="loosen --atol/--rtol if this error is acceptable, or --skip ort-fusions")
