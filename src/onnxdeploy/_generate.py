"""Greedy generation with a KV-cache decoder on onnxruntime, checked against PyTorch's ``generate``.

:func:`generate` runs the prompt once (prefill: past length 0), then one decode step per new token, feeding each
step's ``present.N.key/value`` back as ``past_key_values.N.key/value`` (the convention of :mod:`onnxdeploy._llm`).
With ``reference`` (a PyTorch target, module or transformers config with the same weights) it runs PyTorch's greedy
``generate`` on the same prompt and reports token agreement and, step by step, the logits' max error and cosine
(:func:`onnxdeploy._numerics.diff_tensor`), compared while both sides have generated the same tokens.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from onnxdeploy.errors import UserInputError


@dataclass
class GenerationStep:
    """One new token: ONNX's and PyTorch's choice, and how far apart their logits were at that step."""

    step: int
    token: int
    reference_token: int | None = None
    max_abs: float | None = None  # None once the two sides have generated different tokens (contexts differ)
    cosine: float | None = None

    def to_dict(self) -> dict:
        return {"step": self.step, "token": self.token, "reference_token": self.reference_token,
                "max_abs": self.max_abs, "cosine": self.cosine}


@dataclass
class GenerationReport:
    """What :func:`generate` did: the tokens, their timing and, with a reference, the agreement with PyTorch."""

    model: str
    prompt_ids: list[int]
    tokens: list[int]
    ttft_s: float  # time to first token: the prefill, logits to token
    decode_tokens_per_s: float  # tokens after the first, per second of decode steps
    session_s: float = 0.0
    reference: str | None = None
    reference_tokens: list[int] | None = None
    reference_ttft_s: float | None = None
    reference_tokens_per_s: float | None = None  # PyTorch: new tokens per second of its whole generate call
    steps: list[GenerationStep] = field(default_factory=list)

    @property
    def matching(self) -> int | None:
        """New tokens identical to PyTorch's before the first difference (None without a reference)."""
        if self.reference_tokens is None:
            return None
        count = 0
        for a, b in zip(self.tokens, self.reference_tokens):
            if a != b:
                break
            count += 1
        return count

    @property
    def agreement(self) -> float | None:
        """Share of the new tokens identical to PyTorch's before the first difference."""
        if self.reference_tokens is None:
            return None
        return self.matching / max(len(self.reference_tokens), 1)

    @property
    def max_abs(self) -> float | None:
        values = [s.max_abs for s in self.steps if s.max_abs is not None]
        return max(values) if values else None

    @property
    def min_cosine(self) -> float | None:
        values = [s.cosine for s in self.steps if s.cosine is not None and not np.isnan(s.cosine)]
        return min(values) if values else None

    @property
    def passed(self) -> bool | None:
        return None if self.reference_tokens is None else self.tokens == self.reference_tokens

    def to_dict(self) -> dict:
        return {"model": self.model, "prompt_ids": self.prompt_ids, "tokens": self.tokens,
                "ttft_s": self.ttft_s, "decode_tokens_per_s": self.decode_tokens_per_s, "session_s": self.session_s,
                "reference": self.reference, "reference_tokens": self.reference_tokens,
                "reference_ttft_s": self.reference_ttft_s,
                "reference_tokens_per_s": self.reference_tokens_per_s,
                "matching": self.matching, "agreement": self.agreement, "passed": self.passed,
                "max_abs": self.max_abs, "min_cosine": self.min_cosine, "steps": [s.to_dict() for s in self.steps]}


def parse_prompt_ids(text: str | Sequence[int]) -> list[int]:
    """``"1,2,3"`` (or a list of ints) -> [1, 2, 3]; non-empty, non-negative integers."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]
        try:
            ids = [int(p) for p in parts]
        except ValueError as err:
            raise UserInputError(f"--prompt-ids {text!r}: token ids are integers separated by commas",
                                 hint="e.g. --prompt-ids 1,2,3") from err
    else:
        ids = [int(t) for t in text]
    if not ids or any(t < 0 for t in ids):
        raise UserInputError(f"prompt ids {ids} must be a non-empty list of non-negative integers",
                             hint="e.g. --prompt-ids 1,2,3")
    return ids


class _Decoder:
    """An onnxruntime session over a KV-cache decoder, with the feeds of a prefill and of a decode step."""

    def __init__(self, model, *, providers=None, threads=None) -> None:
        from onnxdeploy._llm import cache_layout
        from onnxdeploy._run import create_session, input_specs, model_structure, output_specs

        structure = model_structure(model)
        specs = input_specs(structure)
        self.layout = cache_layout(specs)
        if self.layout is None or not self.layout.has_ids:
            raise UserInputError(
                f"{model if isinstance(model, (str, os.PathLike)) else 'the model'} is not a decoder with a KV cache "
                f"(inputs: {', '.join(s.name for s in specs)})",
                hint="export it with: onnxdeploy export TARGET -o model.onnx --task text-generation --with-past")
        self.specs = {s.name: s for s in specs}
        outputs = [s.name for s in output_specs(structure)]
        self.presents = {name.replace("past_key_values.", "present.", 1): name for name in self.layout.past_inputs}
        missing = [p for p in self.presents if p not in outputs]
        if "logits" not in outputs or missing:
            raise UserInputError(f"the model's outputs ({', '.join(outputs)}) lack "
                                 f"{', '.join((['logits'] if 'logits' not in outputs else []) + missing)}",
                                 hint="export it with --task text-generation --with-past")
        logits_shape = next(s.shape for s in output_specs(structure) if s.name == "logits") or ()
        self.vocab = logits_shape[-1] if logits_shape and isinstance(logits_shape[-1], int) else None
        for name in self.layout.past_inputs:
            shape = self.specs[name].shape
            if not (isinstance(shape[1], int) and isinstance(shape[3], int)):
                raise UserInputError(f"input {name} has symbolic heads or head size ({shape}); cannot start a cache")
        t0 = time.perf_counter()
        self.session = create_session(model, providers=providers, threads=threads)
        self.session_s = time.perf_counter() - t0
        self.output_names = ["logits", *self.presents]

    def empty_cache(self, batch: int = 1) -> dict[str, np.ndarray]:
        return {name: np.zeros((batch, self.specs[name].shape[1], 0, self.specs[name].shape[3]),
                               dtype=self.specs[name].dtype) for name in self.layout.past_inputs}

    def step(self, ids: np.ndarray, past: dict[str, np.ndarray], past_length: int):
        """Run ``ids`` [batch, sequence] after ``past_length`` cached positions: (logits, the new cache)."""
        batch, sequence = ids.shape
        feeds = {"input_ids": ids.astype(self.specs["input_ids"].dtype, copy=False), **past}
        if self.layout.has_mask:
            feeds["attention_mask"] = np.ones((batch, past_length + sequence), dtype=self.specs["attention_mask"].dtype)
        if self.layout.has_positions:
            positions = np.arange(past_length, past_length + sequence, dtype=self.specs["position_ids"].dtype)
            feeds["position_ids"] = np.broadcast_to(positions, (batch, sequence)).copy()
        results = self.session.run(self.output_names, feeds)
        cache = {self.presents[name]: value for name, value in zip(self.output_names[1:], results[1:])}
        return results[0], cache


def generate(model, prompt_ids: str | Sequence[int], *, max_new_tokens: int = 16, reference: Any = None,
             providers: Sequence[str] | None = None, threads: int | None = None) -> GenerationReport:
    """Greedy generation of ``max_new_tokens`` tokens after ``prompt_ids`` with a KV-cache decoder on onnxruntime
    (``model``: path, ModelProto or ir.Model following :mod:`onnxdeploy._llm`'s convention); returns a
    :class:`GenerationReport` with time to first token and decode tokens/s. ``reference`` (a PyTorch module, a
    transformers config (random weights from seed 0), or a target string such as ``hf:llama?...&seed=0`` with the
    same weights) adds PyTorch's greedy tokens, their agreement and the per-step logits error."""
    prompt = parse_prompt_ids(prompt_ids)
    if max_new_tokens < 1:
        raise UserInputError(f"max_new_tokens is {max_new_tokens}; generate at least 1 token")
    decoder = _Decoder(model, providers=providers, threads=threads)
    if decoder.vocab is not None and max(prompt) >= decoder.vocab:
        raise UserInputError(f"prompt id {max(prompt)} is outside the model's vocabulary of {decoder.vocab} tokens",
                             hint=f"use ids below {decoder.vocab}")
    tokens, logits, ttft, rate = _greedy(decoder, prompt, max_new_tokens)
    report = GenerationReport(model=str(model) if isinstance(model, (str, os.PathLike)) else "<model>",
                              prompt_ids=prompt, tokens=tokens, ttft_s=ttft, decode_tokens_per_s=rate,
                              session_s=decoder.session_s, steps=[GenerationStep(i, t) for i, t in enumerate(tokens)])
    if reference is not None:
        _compare_reference(report, logits, reference)
    return report


def _greedy(decoder: _Decoder, prompt: list[int], max_new_tokens: int):
    """(tokens, last-position logits per step, seconds to the first token, decode tokens per second)."""
    ids = np.asarray([prompt], dtype=np.int64)
    t0 = time.perf_counter()
    out, cache = decoder.step(ids, decoder.empty_cache(), 0)
    last = out[0, -1].astype(np.float32)
    tokens = [int(np.argmax(last))]
    ttft = time.perf_counter() - t0
    logits = [last]
    length = len(prompt)
    t0 = time.perf_counter()
    for _ in range(max_new_tokens - 1):
        out, cache = decoder.step(np.asarray([[tokens[-1]]], dtype=np.int64), cache, length)
        length += 1
        last = out[0, -1].astype(np.float32)
        logits.append(last)
        tokens.append(int(np.argmax(last)))
    seconds = time.perf_counter() - t0
    rate = (max_new_tokens - 1) / seconds if max_new_tokens > 1 and seconds > 0 else 0.0
    return tokens, logits, ttft, rate


def _compare_reference(report: GenerationReport, logits: list[np.ndarray], reference: Any) -> None:
    from onnxdeploy._export import causal_lm
    from onnxdeploy._numerics import diff_tensor

    module = causal_lm(reference)
    ref_tokens, ref_logits, ttft, rate = _torch_greedy(module, report.prompt_ids, len(report.tokens))
    report.reference = reference if isinstance(reference, str) else type(reference).__name__
    report.reference_tokens = ref_tokens
    report.reference_ttft_s, report.reference_tokens_per_s = ttft, rate
    same = True
    for i, step in enumerate(report.steps):
        step.reference_token = ref_tokens[i] if i < len(ref_tokens) else None
        if same and i < len(ref_logits):  # the contexts are the same up to the first differing token
            diff = diff_tensor("logits", ref_logits[i], logits[i])
            step.max_abs, step.cosine = float(diff.max_abs), float(diff.cosine)
        same = same and step.token == step.reference_token


def _torch_greedy(module, prompt: list[int], max_new_tokens: int):
    """PyTorch's greedy tokens and per-step logits: transformers' ``generate`` when the module has it (end-of-text
    stopping off, so both sides make the same number of tokens), else a cache loop over the calling convention."""
    import torch

    ids = torch.tensor([prompt], dtype=torch.int64)
    if hasattr(module, "generate") and hasattr(module, "generation_config"):
        import copy

        config = copy.deepcopy(module.generation_config)
        config.eos_token_id = None
        config.pad_token_id = config.pad_token_id if config.pad_token_id is not None else 0
        config.do_sample, config.num_beams, config.max_new_tokens, config.min_new_tokens = False, 1, max_new_tokens, None
        config.max_length = None
        config.output_logits, config.return_dict_in_generate = True, True
        for name in ("temperature", "top_p", "top_k"):
            setattr(config, name, None)
        saved = module.generation_config
        module.generation_config = config  # generate fills unset fields from it: end-of-text must stay unset
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                out = module.generate(ids, attention_mask=torch.ones_like(ids), generation_config=copy.deepcopy(config))
        finally:
            module.generation_config = saved
        total = time.perf_counter() - t0
        tokens = [int(t) for t in out.sequences[0, len(prompt):]]
        logits = [step[0].float().numpy() for step in out.logits]
        return tokens, logits, None, (len(tokens) / total if total > 0 else 0.0)
    return _torch_loop(module, prompt, max_new_tokens)


def _torch_loop(module, prompt: list[int], max_new_tokens: int):
    import torch

    from onnxdeploy._llm import cache_module

    wrapper, info = cache_module(module)
    layers = info.layers
    ids = torch.tensor([prompt], dtype=torch.int64)
    past = [torch.zeros((1, info.kv_heads[i // 2], 0, info.head_dims[i // 2]), dtype=info.dtype)
            for i in range(2 * layers)]
    tokens, logits, length = [], [], 0
    t0 = time.perf_counter()
    ttft = 0.0
    with torch.inference_mode():
        for step in range(max_new_tokens):
            sequence = ids.shape[1]
            result = wrapper(ids, torch.ones((1, length + sequence), dtype=torch.int64),
                             torch.arange(length, length + sequence).unsqueeze(0), *past)
            last = result[0][0, -1].float()
            logits.append(last.numpy())
            tokens.append(int(torch.argmax(last)))
            past, length, ids = list(result[1:]), length + sequence, torch.tensor([[tokens[-1]]])
            if step == 0:
                ttft = time.perf_counter() - t0
                t0 = time.perf_counter()
    seconds = time.perf_counter() - t0
    return tokens, logits, ttft, ((max_new_tokens - 1) / seconds if max_new_tokens > 1 and seconds > 0 else 0.0)


__all__ = ["GenerationReport", "GenerationStep", "generate", "parse_prompt_ids"]
