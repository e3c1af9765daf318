"""Decoder language models with a KV cache: the calling convention, its layout in an ONNX model, inputs that fit it.

The convention (optimum's ``text-generation-with-past``): inputs ``input_ids`` [batch, sequence], ``attention_mask``
[batch, total_sequence], ``position_ids`` [batch, sequence] and ``past_key_values.N.key/value`` [batch, kv_heads,
past_sequence, head_dim]; outputs ``logits`` [batch, sequence, vocab] and ``present.N.key/value`` [batch, kv_heads,
total_sequence, head_dim], with total_sequence = past_sequence + sequence. One model serves the prefill (past length
0) and every decode step (present fed back as past).

:func:`cache_layout` recognizes the convention in a model's declared inputs; :meth:`CacheLayout.fit` makes a dims
assignment consistent (total = past + sequence) and :meth:`CacheLayout.values` gives the inputs whose values matter
(mask of ones, positions P..P+S-1), so every verb that synthesizes inputs feeds such a model what it can run on.
:func:`cache_module` wraps a PyTorch causal LM (transformers 5.x ``DynamicCache`` API) into a module with exactly these
flat inputs and outputs, which is what ``export(..., task="text-generation")`` exports.

This module imports only numpy and the error tree at top level (``_run`` uses it); torch is imported inside functions.
"""

from __future__ import annotations

import inspect as _inspect
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from onnxdeploy.errors import UserInputError

TASKS = ("text-generation", "text-generation-with-past")
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
POSITION_IDS = "position_ids"
LOGITS = "logits"
BATCH, SEQUENCE, PAST_SEQUENCE, TOTAL_SEQUENCE = "batch", "sequence", "past_sequence", "total_sequence"
DEFAULT_PAST = 16  # the past length synthesized inputs get when --dim does not set it
_PAST = re.compile(r"past_key_values\.(\d+)\.(key|value)$")


def past_name(layer: int, kind: str) -> str:
    return f"past_key_values.{layer}.{kind}"


def present_name(layer: int, kind: str) -> str:
    return f"present.{layer}.{kind}"


# ---------------------------------------------------------------- the layout of an ONNX model


@dataclass
class CacheLayout:
    """Where a model keeps its KV cache: the names of its dims (str when symbolic, int when fixed) and inputs."""

    layers: int
    past_inputs: list[str]
    batch: str | int | None = BATCH
    sequence: str | int | None = SEQUENCE
    past: str | int | None = PAST_SEQUENCE
    total: str | int | None = TOTAL_SEQUENCE
    has_ids: bool = True
    has_mask: bool = True
    has_positions: bool = True
    cache_shapes: dict[str, list] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"layers": self.layers, "batch": self.batch, "sequence": self.sequence, "past": self.past,
                "total": self.total, "past_inputs": list(self.past_inputs)}

    def fit(self, dims: Mapping[str, int], defaults: Mapping[str, int] | None = None) -> dict[str, int]:
        """``dims`` with the cache dims made consistent: past P and sequence S from ``dims`` (else ``defaults``;
        past :data:`DEFAULT_PAST` unless set), total = P + S; given total and S (or P), the other is derived."""
        out = {**(defaults or {}), **dims}
        seq, past, total = (d if isinstance(d, str) else None for d in (self.sequence, self.past, self.total))
        if past and past not in dims:
            out[past] = (max(int(dims[total]) - int(dims[seq]), 0) if total in dims and seq in dims
                         else DEFAULT_PAST)
        if seq and seq not in dims and total and total in dims and past:
            out[seq] = max(int(dims[total]) - int(out[past]), 1)
        s = out.get(seq) if seq else self.sequence
        p = out.get(past) if past else self.past
        if total and isinstance(s, int) and isinstance(p, int):
            out[total] = int(p) + int(s)
        return out

    def sizes(self, dims: Mapping[str, int], feeds: Mapping[str, np.ndarray] | None = None) -> tuple[int, int, int]:
        """(batch, past, sequence) under ``dims`` (or read from given ``feeds``)."""
        feeds = feeds or {}

        def size(dim, name, axis, default):
            if name in feeds:
                return int(np.asarray(feeds[name]).shape[axis])
            if isinstance(dim, int):
                return dim
            return int(dims.get(dim, default)) if dim else default

        first_past = self.past_inputs[0] if self.past_inputs else ""
        batch = size(self.batch, INPUT_IDS if INPUT_IDS in feeds else first_past, 0, 1)
        past = size(self.past, first_past, 2, 0)
        sequence = size(self.sequence, INPUT_IDS if self.has_ids else POSITION_IDS, 1, 1)
        return batch, past, sequence

    def given_dims(self, feeds: Mapping[str, np.ndarray]) -> dict[str, int]:
        """The dims that given input tensors set (so the synthesized rest matches them)."""
        out: dict[str, int] = {}
        for name, axis, dim in [(INPUT_IDS, 0, self.batch), (INPUT_IDS, 1, self.sequence),
                                (POSITION_IDS, 1, self.sequence), (ATTENTION_MASK, 1, self.total)]:
            if name in feeds and isinstance(dim, str):
                out.setdefault(dim, int(np.asarray(feeds[name]).shape[axis]))
        for name in self.past_inputs:
            if name in feeds:
                shape = np.asarray(feeds[name]).shape
                for axis, dim in ((0, self.batch), (2, self.past)):
                    if isinstance(dim, str) and len(shape) > axis:
                        out.setdefault(dim, int(shape[axis]))
        return out

    def values(self, name: str, dims: Mapping[str, int], dtype: np.dtype) -> np.ndarray | None:
        """The value an input whose values matter gets (mask of P+S ones, positions P..P+S-1); None otherwise."""
        batch, past, sequence = self.sizes(dims)
        if name == ATTENTION_MASK:
            return np.ones((batch, past + sequence), dtype=dtype)
        if name == POSITION_IDS:
            return np.broadcast_to(np.arange(past, past + sequence, dtype=dtype), (batch, sequence)).copy()
        return None

    def adjust_plans(self, plans: list[list[dict[str, int]]], dims: Mapping[str, int]) -> list[list[dict[str, int]]]:
        """The verifier's plans with the cache dims made consistent: a prompt chunk (batch 1, past 16, sequence 16)
        then a decode step (batch 2, past 24, sequence 1); dims the user set keep their sizes."""
        out: list[list[dict[str, int]]] = []
        for plan in plans:
            fitted = []
            for i, assignment in enumerate(plan):
                batch, past, sequence = ((1, 16, 16), (2, 24, 1))[min(i, 1)]
                chosen = dict(assignment)
                for name, size in ((self.batch, batch), (self.sequence, sequence), (self.past, past)):
                    if isinstance(name, str) and name not in dims:
                        chosen[name] = size
                if isinstance(self.total, str) and self.total not in dims:
                    chosen.pop(self.total, None)
                elif isinstance(self.total, str) and isinstance(self.past, str) and self.past not in dims:
                    chosen.pop(self.past, None)  # the user's total: past = total - sequence
                fitted.append(self.fit(chosen))
            if fitted not in out:
                out.append(fitted)
        return out


def _dim(spec, axis: int):
    shape = getattr(spec, "shape", None)
    if shape is None or len(shape) <= axis:
        return None
    return shape[axis]


def cache_layout(specs: Sequence[Any]) -> CacheLayout | None:
    """The KV-cache layout of a model from its input specs (``run.InputSpec``: name, dtype, shape), or None when
    the inputs do not follow the convention (no ``past_key_values.N.key/value`` pairs of rank 4)."""
    by_name = {s.name: s for s in specs}
    past = sorted((n for n in by_name if _PAST.match(n)),
                  key=lambda n: (int(_PAST.match(n).group(1)), _PAST.match(n).group(2)))
    if not past or any(len(by_name[n].shape or ()) != 4 for n in past):
        return None
    layers = {int(_PAST.match(n).group(1)) for n in past}
    first = by_name[past[0]]
    ids = by_name.get(INPUT_IDS)
    mask = by_name.get(ATTENTION_MASK)
    positions = by_name.get(POSITION_IDS)
    tokens = ids if ids is not None else positions
    return CacheLayout(
        layers=len(layers), past_inputs=past,
        batch=_dim(first, 0), past=_dim(first, 2),
        sequence=_dim(tokens, 1) if tokens is not None else None,
        total=_dim(mask, 1) if mask is not None else None,
        has_ids=ids is not None, has_mask=mask is not None, has_positions=positions is not None,
        cache_shapes={n: list(by_name[n].shape) for n in past},
    )


# ---------------------------------------------------------------- the PyTorch side


def check_task(task: str) -> bool:
    """Validate an export task; returns whether it implies the cache (``text-generation-with-past``)."""
    if task not in TASKS:
        from onnxdeploy._suggest import did_you_mean

        raise UserInputError(f"unknown task {task!r}", hint=did_you_mean(task, TASKS, what="tasks"))
    return task.endswith("-with-past")


def _cache_keyword(model) -> str:
    try:
        params = _inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _cache_tensors(cache) -> list[tuple[Any, Any]]:
    """(key, value) per layer from a transformers Cache (``.layers``) or a legacy tuple of pairs."""
    if cache is None:
        return []
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    return [(pair[0], pair[1]) for pair in cache]


def _outputs(result) -> tuple[Any, Any]:
    """(logits, cache) from a model output (ModelOutput with .logits and .cache/.past_key_values, or a tuple)."""
    if isinstance(result, (tuple, list)):
        return result[0], result[1] if len(result) > 1 else None
    cache = getattr(result, "cache", None)
    if cache is None:
        cache = getattr(result, "past_key_values", None)
    return result.logits, cache


def _make_cache(model, pairs):
    from transformers import DynamicCache

    config = getattr(model, "config", None)
    try:
        return DynamicCache(ddp_cache_data=pairs, config=config) if config is not None else DynamicCache(pairs)
    except TypeError:
        return DynamicCache(pairs)


@dataclass
class CacheInfo:
    """What a probe run of a causal LM told: layer count, per-layer cache shape (kv heads, head dim), vocab, dtype."""

    layers: int
    kv_heads: list[int]
    head_dims: list[int]
    vocab: int
    dtype: Any  # torch.dtype of the cache
    token_bound: int  # exclusive upper bound of safe token ids

    def to_dict(self) -> dict:
        return {"layers": self.layers, "kv_heads": self.kv_heads, "head_dims": self.head_dims, "vocab": self.vocab,
                "dtype": str(self.dtype).replace("torch.", "")}


def cache_module(model, *, with_past: bool = True):
    """(module, CacheInfo): ``model`` (a causal LM taking ``input_ids``, ``attention_mask``, ``position_ids`` and a
    cache) wrapped so that its forward takes flat tensors ``(input_ids, attention_mask, position_ids, *past)`` and
    returns ``(logits, *present)`` (``with_past=False``: no past in, logits only out)."""
    import torch

    keyword = _cache_keyword(model)

    class CausalLMWithCache(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.model = inner

        def forward(self, input_ids, attention_mask, position_ids, *past):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
            if with_past:
                kwargs[keyword] = _make_cache(self.model, [(past[i], past[i + 1]) for i in range(0, len(past), 2)])
            logits, cache = _outputs(self.model(**kwargs, use_cache=with_past))
            if not with_past:
                return logits
            return (logits, *[t for pair in _cache_tensors(cache) for t in pair])

    wrapper = CausalLMWithCache(model).eval()
    return wrapper, probe_cache(model, keyword)


def probe_cache(model, keyword: str | None = None) -> CacheInfo:
    """Run ``model`` on 3 tokens with an empty cache and read the cache it returns."""
    import torch

    keyword = keyword or _cache_keyword(model)
    bound = _token_bound(model)
    ids = torch.zeros((1, 3), dtype=torch.int64)
    try:
        with torch.inference_mode():
            result = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                           position_ids=torch.arange(3).unsqueeze(0), **{keyword: _make_cache(model, None)},
                           use_cache=True)
        logits, cache = _outputs(result)
    except Exception as err:  # not this calling convention
        raise UserInputError(
            f"the model does not follow the text-generation calling convention: {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}"[:300],
            hint="its forward must take input_ids, attention_mask, position_ids and a transformers Cache "
                 "(cache= or past_key_values=), and return logits and the updated cache") from err
    pairs = _cache_tensors(cache)
    if not pairs or any(k is None or k.dim() != 4 for k, _ in pairs):
        raise UserInputError("the model returned no KV cache of [batch, heads, sequence, head_dim] tensors",
                             hint="pass use_cache=True through to the decoder, or export with with_past=False")
    return CacheInfo(layers=len(pairs), kv_heads=[int(k.shape[1]) for k, _ in pairs],
                     head_dims=[int(k.shape[3]) for k, _ in pairs], vocab=int(logits.shape[-1]),
                     dtype=pairs[0][0].dtype, token_bound=min(bound, int(logits.shape[-1])))


def _token_bound(model) -> int:
    import torch

    bound = getattr(getattr(model, "config", None), "vocab_size", None) or 2**31
    for sub in model.modules():
        if isinstance(sub, torch.nn.Embedding):
            return min(int(bound), int(sub.num_embeddings))
    return int(bound)


def io_names(info: CacheInfo, *, with_past: bool = True) -> tuple[list[str], list[str]]:
    """(input names, output names) of the exported model."""
    inputs = [INPUT_IDS, ATTENTION_MASK, POSITION_IDS]
    outputs = [LOGITS]
    if with_past:
        for i in range(info.layers):
            inputs += [past_name(i, "key"), past_name(i, "value")]
            outputs += [present_name(i, "key"), present_name(i, "value")]
    return inputs, outputs


def dynamic_dims(info: CacheInfo, *, with_past: bool = True) -> dict[str, dict[int, str]]:
    """The named dims of every input and output: batch, sequence, past_sequence, total_sequence."""
    dims = {INPUT_IDS: {0: BATCH, 1: SEQUENCE}, ATTENTION_MASK: {0: BATCH, 1: TOTAL_SEQUENCE},
            POSITION_IDS: {0: BATCH, 1: SEQUENCE}, LOGITS: {0: BATCH, 1: SEQUENCE}}
    if with_past:
        for i in range(info.layers):
            for kind in ("key", "value"):
                dims[past_name(i, kind)] = {0: BATCH, 2: PAST_SEQUENCE}
                dims[present_name(i, kind)] = {0: BATCH, 2: TOTAL_SEQUENCE}
    else:
        dims[ATTENTION_MASK] = {0: BATCH, 1: SEQUENCE}
    return dims


def torch_feeds(info: CacheInfo, *, batch: int, past: int, sequence: int, seed: int = 0,
                with_past: bool = True) -> dict[str, Any]:
    """Consistent example tensors by input name: random tokens, mask of past+sequence ones, positions past.., random
    cache of ``past`` positions."""
    import torch

    g = torch.Generator().manual_seed(seed)
    total = past + sequence if with_past else sequence
    start = past if with_past else 0
    feeds = {INPUT_IDS: torch.randint(0, max(info.token_bound, 1), (batch, sequence), generator=g),
             ATTENTION_MASK: torch.ones((batch, total), dtype=torch.int64),
             POSITION_IDS: torch.arange(start, start + sequence, dtype=torch.int64).expand(batch, sequence).contiguous()}
    if with_past:
        for i in range(info.layers):
            for kind in ("key", "value"):
                shape = (batch, info.kv_heads[i], past, info.head_dims[i])
                feeds[past_name(i, kind)] = torch.randn(shape, generator=g).to(info.dtype)
    return feeds


def torch_runner(module, input_names: Sequence[str], output_names: Sequence[str]):
    """A verifier runner (feeds by name -> outputs by name) over the wrapped PyTorch module."""
    import torch

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in input_names]
        with torch.inference_mode():
            result = module(*tensors)
        result = result if isinstance(result, (tuple, list)) else (result,)
        return {n: t.detach().float().numpy() if t.dtype == torch.bfloat16 else t.detach().numpy()
                for n, t in zip(output_names, result)}

    return run


__all__ = ["ATTENTION_MASK", "BATCH", "CacheInfo", "CacheLayout", "DEFAULT_PAST", "INPUT_IDS", "LOGITS",
           "PAST_SEQUENCE", "POSITION_IDS", "SEQUENCE", "TASKS", "TOTAL_SEQUENCE", "cache_layout", "cache_module",
           "check_task", "dynamic_dims", "io_names", "past_name", "present_name", "probe_cache",
           "torch_feeds", "torch_runner"]
