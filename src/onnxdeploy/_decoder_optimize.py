"""Optimize a decoder language model (KV cache) for decoding on onnxruntime: the optimize pipeline with the onnxscript
rewriter's onnxruntime fusions on (RMS/SkipSimplifiedLayerNormalization, rotary embedding, SDPA -> MultiHeadAttention
or GroupQueryAttention, ...), verified at a prefill and at a decode step with consistent cache inputs.

``optimize --preset decoder`` (:func:`optimize_decoder`): the general pipeline keeps these fusions off on the CPU
(measured no faster on encoders); a decoder's step is what they are for. The report lists the fusions that fired
(the contrib ops in the result, not the rewriter's intermediate counts: a rotary fusion that no later fusion consumes
is inlined back).

transformers 5.x computes the rotary angles as ``position_ids[..., None] * inv_freq`` (a Mul); onnxscript 0.7's
cos/sin-cache fusion only knows transformers 4.x's ``inv_freq[None, :, None] @ position_ids[:, None, :]`` + Transpose,
so its RotaryEmbedding (com.microsoft, with a cos/sin cache) never formed and GroupQueryAttention (which consumes two
of them) never fired: the attention became MultiHeadAttention. :func:`canonical_rotary_freqs` rewrites the first form
into the second (exact: a MatMul over K=1 is the same product) before the fusions, so RotaryEmbedding feeds
GroupQueryAttention (with ``seqlens_k``/``total_sequence_length`` computed from ``attention_mask`` inside the graph:
the interface keeps its names).
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


def _const_array(value):
    return None if value is None or value.const_value is None else value.const_value.numpy()


def _rotary_angle_input(node: "ir.Node"):
    """(position_ids value [B, S], inv_freq array [E]) when ``node`` is ``Mul(Cast(Unsqueeze(position_ids, -1)),
    inv_freq)`` (either operand order), else None."""
    import numpy as np

    for pos, freq in (node.inputs, tuple(reversed(node.inputs))):
        inv = _const_array(freq)
        cast = pos.producer() if pos is not None else None
        if inv is None or inv.ndim != 1 or cast is None or cast.op_type != "Cast":
            continue
        unsqueeze = cast.inputs[0].producer() if cast.inputs[0] is not None else None
        if unsqueeze is None or unsqueeze.op_type != "Unsqueeze" or len(unsqueeze.inputs) < 2:
            continue
        axes = _const_array(unsqueeze.inputs[1])
        source = unsqueeze.inputs[0]
        if axes is None or source.shape is None or len(source.shape) != 2 or \
                [int(a) % 3 for a in np.ravel(axes)] != [2]:
            continue
        return source, inv
    return None


def canonical_rotary_freqs(model: "ir.Model") -> int:
    """Rewrite transformers 5.x's rotary angles ``Mul(Cast(Unsqueeze(position_ids, -1)), inv_freq)`` [B, S, E] into
    ``Transpose(MatMul(inv_freq[1, E, 1], Cast(Unsqueeze(position_ids, 1))), [0, 2, 1])``, the form onnxscript's
    cos/sin-cache fusion matches (the same products: exact). Edits ``model`` in place; returns the rewrites."""
    import numpy as np
    import onnx_ir as ir

    graph, count = model.graph, 0
    for node in list(graph):
        if node.op_type != "Mul" or node.domain not in ("", "ai.onnx") or node.outputs[0] in graph.outputs:
            continue
        found = _rotary_angle_input(node)
        if found is None:
            continue
        positions, inv = found
        name = node.name or f"rotary_{count}"
        inv3 = ir.Value(name=f"{name}_inv_freq_1E1", shape=ir.Shape([1, inv.size, 1]),
                        type=ir.TensorType(ir.DataType.FLOAT),
                        const_value=ir.tensor(inv.astype(np.float32).reshape(1, -1, 1), name=f"{name}_inv_freq_1E1"))
        axis = ir.Value(name=f"{name}_axis_1", const_value=ir.tensor(np.asarray([1], np.int64), name=f"{name}_axis_1"))
        graph.register_initializer(inv3)
        graph.register_initializer(axis)
        unsqueeze = ir.node("Unsqueeze", [positions, axis], name=f"{name}_positions_B1S")
        cast = ir.node("Cast", [unsqueeze.outputs[0]], attributes={"to": ir.DataType.FLOAT}, name=f"{name}_cast")
        matmul = ir.node("MatMul", [inv3, cast.outputs[0]], name=f"{name}_freqs_BES")
        transpose = ir.node("Transpose", [matmul.outputs[0]], attributes={"perm": [0, 2, 1]}, name=f"{name}_freqs")
        graph.insert_before(node, [unsqueeze, cast, matmul, transpose])
        old = node.outputs[0]
        transpose.outputs[0].shape, transpose.outputs[0].type = old.shape, old.type
        old.replace_all_uses_with(transpose.outputs[0])
        graph.remove(node, safe=True)
        count += 1
    return count


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
    from onnxdeploy._generate import require_decoder, verification_sets
    from onnxdeploy._optimize import optimize

    start = time.perf_counter()
    path = isinstance(model, (str, bytes)) or hasattr(model, "__fspath__")
    original = load_mapped(model) if path else as_model(model)
    signature = require_decoder(original)
    work = load_mapped(model) if path else _copy(original)  # the original stays the reference of the decode step
    rotary = canonical_rotary_freqs(work)
    (prefill_label, prefill), (decode_label, decode) = verification_sets(
        signature, seed=seed, prompt=prompt_length, past=past_length)
    result = optimize(work, for_runtime="onnxruntime", ort_fusions=True, level=level, verify=verify,
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
    if rotary:
        report.notes.append(f"rotary angles rewritten to the form the cos/sin-cache fusion matches ({rotary}x: "
                            "transformers 5.x's Mul -> MatMul + Transpose, exact)")
    report.notes.append(f"decoder preset: {signature.layers} layers, KV cache {signature.kv_heads} heads x "
                        f"{signature.head_dim}; verified at a prefill and a decode step")
    report.seconds = time.perf_counter() - start
    return result


def _copy(model: "ir.Model") -> "ir.Model":
    """A copy of an in-memory model to rewrite (the caller's model is never edited)."""
    import onnx_ir as ir

    return ir.serde.deserialize_model(ir.serde.serialize_model(model))


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
