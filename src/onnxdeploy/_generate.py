"""Greedy generation with a KV-cache decoder on onnxruntime, and its agreement with a reference: the one generation
loop of onnxdeploy (``onnxdeploy generate``, ``quantize --weights``' token agreement, deploy's Generate step and
``benchmarks/llm.py`` all run it).

:func:`generate` runs the prompt once (prefill: past length 0), then one decode step per new token, feeding each
step's ``present.N.key/value`` back as ``past_key_values.N.key/value`` (the convention of :mod:`onnxdeploy._llm`)
without a copy: the presents stay onnxruntime values bound as the next step's pasts (IOBinding); only the last
position's logits come back to numpy. With ``reference`` it generates with the reference too and compares step by
step (:func:`onnxdeploy._numerics.diff_tensor`): the reference is PyTorch (a target, module or transformers config
with the same weights: transformers' greedy ``generate``) or another ONNX decoder (the fp32 model a quantized one came
from). While both sides have produced the same tokens the decode-step logits are compared; after a first difference
the model is teacher-forced (fed the reference's tokens, one prefill pass) so later steps stay comparable:
``agreement`` is the share of new tokens identical before the first difference, ``token_agreement`` the share of
steps whose argmax agrees under teacher forcing.

The decoder interface helpers (:func:`decoder_signature`, :func:`cache_feeds`, :func:`verification_sets`) give the
consistent feeds a prefill and a decode step are verified at (``optimize --preset decoder``, ``quantize --weights``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from onnxdeploy._llm import cache_layout, past_name, present_name
from onnxdeploy.errors import UserInputError

DEFAULT_PROMPT_LENGTH = 8
DEFAULT_NEW_TOKENS = 16


# ---------------------------------------------------------------- the decoder's interface


@dataclass(frozen=True)
class DecoderSignature:
    """The cache convention of a decoder model: its layers, cache shape and the optional inputs it declares."""

    layers: int
    kv_heads: int
    head_dim: int
    cache_dtype: np.dtype
    vocab: int | None
    position_ids: bool
    attention_mask: bool
    input_ids_dtype: np.dtype

    def past_names(self) -> list[str]:
        return [past_name(i, kind) for i in range(self.layers) for kind in ("key", "value")]

    def present_names(self) -> list[str]:
        return [present_name(i, kind) for i in range(self.layers) for kind in ("key", "value")]


def _interface(model: Any) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """(inputs, outputs) of ``model`` by name -> (numpy dtype, shape with ints and dim names); an ``ir.Model`` is
    read as it is (no serialization of its weights)."""
    import onnx_ir as ir

    if isinstance(model, ir.Model):
        def spec(v):
            shape = None if v.shape is None else tuple(d if isinstance(d, int) else getattr(d, "value", None)
                                                      for d in v.shape)
            return np.dtype(v.dtype.numpy()) if v.dtype is not None else None, shape

        inits = set(model.graph.initializers)
        return ({v.name: spec(v) for v in model.graph.inputs if v.name not in inits},
                {v.name: spec(v) for v in model.graph.outputs})
    from onnxdeploy._run import input_specs, model_structure, output_specs

    structure = model_structure(model)
    return ({s.name: (s.dtype, s.shape) for s in input_specs(structure)},
            {s.name: (s.dtype, s.shape) for s in output_specs(structure)})


def decoder_signature(model: Any) -> DecoderSignature | None:
    """The cache convention of ``model`` (path, ModelProto, ir.Model), or None when it does not follow it."""
    from types import SimpleNamespace

    ins, outs = _interface(model)
    # the inputs' side of the convention is _llm's (the one that input synthesis follows); outputs are checked here
    layout = cache_layout([SimpleNamespace(name=n, dtype=d, shape=s) for n, (d, s) in ins.items()])
    if layout is None or "input_ids" not in ins or "logits" not in outs:
        return None
    layers = layout.layers
    names = [(past_name(i, k), present_name(i, k)) for i in range(layers) for k in ("key", "value")]
    if any(p not in ins or q not in outs for p, q in names):
        return None
    dtype, shape = ins[past_name(0, "key")]
    if not all(isinstance(d, int) for d in (shape[1], shape[3])):
        return None
    logits = outs["logits"][1]
    vocab = logits[-1] if logits and isinstance(logits[-1], int) else None
    return DecoderSignature(layers, shape[1], shape[3], np.dtype(dtype), vocab, "position_ids" in ins,
                            "attention_mask" in ins, np.dtype(ins["input_ids"][0]))


def require_decoder(model: Any, what: str | None = None) -> DecoderSignature:
    """:func:`decoder_signature`, or a one-line :class:`UserInputError` naming the model's inputs."""
    signature = decoder_signature(model)
    if signature is None:
        what = what or (str(model) if isinstance(model, (str, os.PathLike)) else "the model")
        ins = ", ".join(_interface(model)[0])
        raise UserInputError(f"{what} is not a decoder with a KV cache (inputs: {ins}; needs input_ids and "
                             "past_key_values.N.key/value of [batch, heads, past, head_dim] with fixed heads and "
                             "head_dim, outputs logits and present.N.key/value)",
                             hint="export it with: onnxdeploy export TARGET -o model.onnx --task text-generation "
                                  "--with-past")
    return signature


def cache_feeds(signature: DecoderSignature, *, batch: int = 1, past: int = 0, sequence: int = 4, seed: int = 0,
                token_ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Consistent feeds: ``sequence`` new tokens after a cache of ``past`` (random values), a mask of past +
    sequence ones, positions past..past+sequence-1."""
    rng = np.random.default_rng(seed)
    vocab = signature.vocab or 100
    ids = token_ids if token_ids is not None else rng.integers(0, vocab, (batch, sequence))
    feeds: dict[str, np.ndarray] = {"input_ids": np.asarray(ids).astype(signature.input_ids_dtype)}
    batch, sequence = feeds["input_ids"].shape
    feeds.update(_step_feeds(signature, batch, past, sequence))
    shape = (batch, signature.kv_heads, past, signature.head_dim)
    for name in signature.past_names():
        feeds[name] = (rng.standard_normal(shape) * 0.5).astype(signature.cache_dtype)
    return feeds


def _step_feeds(signature: DecoderSignature, batch: int, past: int, sequence: int) -> dict[str, np.ndarray]:
    """The mask (past + sequence ones) and positions (past..past+sequence-1) of a step, for the inputs declared."""
    feeds = {}
    if signature.attention_mask:
        feeds["attention_mask"] = np.ones((batch, past + sequence), np.int64)
    if signature.position_ids:
        feeds["position_ids"] = np.broadcast_to(np.arange(past, past + sequence, dtype=np.int64),
                                                (batch, sequence)).copy()
    return feeds


def verification_sets(signature: DecoderSignature, *, seed: int = 0, prompt: int = DEFAULT_PROMPT_LENGTH,
                      past: int = 6, batch: int = 2) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The two input sets a decoder is verified at: a prefill (no past, ``prompt`` tokens) and a decode step (one
    token after ``past`` cached ones). The decode step has 4x the batch: a logits metric over rows (top-1) needs
    more than one row to mean anything."""
    return [(f"prefill (batch={batch}, past_sequence=0, sequence={prompt})",
             cache_feeds(signature, batch=batch, past=0, sequence=prompt, seed=seed)),
            (f"decode step (batch={4 * batch}, past_sequence={past}, sequence=1)",
             cache_feeds(signature, batch=4 * batch, past=past, sequence=1, seed=seed + 1))]


def default_prompt(signature: DecoderSignature, length: int = DEFAULT_PROMPT_LENGTH, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(t) for t in rng.integers(1, signature.vocab or 100, length)]


# ---------------------------------------------------------------- results


@dataclass
class GenerationStep:
    """One new token: the model's choice, the reference's, and how far apart their logits were at that step
    (``forced_token``: the model's choice when fed the reference's tokens so far; the same as ``token`` until the
    generations first differ)."""

    step: int
    token: int
    reference_token: int | None = None
    max_abs: float | None = None
    cosine: float | None = None
    forced_token: int | None = None
    teacher_forced: bool = False  # the logits compared came from a teacher-forced pass (after a first difference)

    @property
    def agrees(self) -> bool | None:
        if self.reference_token is None or self.forced_token is None:
            return None
        return self.forced_token == self.reference_token

    def to_dict(self) -> dict:
        return {"step": self.step, "token": self.token, "reference_token": self.reference_token,
                "max_abs": self.max_abs, "cosine": self.cosine, "forced_token": self.forced_token,
                "teacher_forced": self.teacher_forced, "agrees": self.agrees}


@dataclass
class GenerationReport:
    """What :func:`generate` did: the tokens, their timing and, with a reference, the agreement with it."""

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
    reference_kind: str | None = None  # "pytorch" or "onnx"
    logits: list[np.ndarray] = field(default_factory=list, repr=False)  # last-position logits per step (not saved)

    @property
    def matching(self) -> int | None:
        """New tokens identical to the reference's before the first difference (None without a reference)."""
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
        """Share of the new tokens identical to the reference's before the first difference."""
        if self.reference_tokens is None:
            return None
        return self.matching / max(len(self.reference_tokens), 1)

    @property
    def first_divergence(self) -> int | None:
        """The first step (0-based) where the generations differ; None when identical or without a reference."""
        if self.reference_tokens is None or self.tokens == self.reference_tokens:
            return None
        return self.matching

    @property
    def token_agreement(self) -> float | None:
        """Share of steps whose argmax equals the reference's token, teacher-forced (fed the reference's tokens)."""
        votes = [s.agrees for s in self.steps if s.agrees is not None]
        return sum(votes) / len(votes) if votes else None

    @property
    def max_abs(self) -> float | None:
        values = [s.max_abs for s in self.steps if s.max_abs is not None]
        return max(values) if values else None

    @property
    def min_cosine(self) -> float | None:
        values = [s.cosine for s in self.steps if s.cosine is not None and not np.isnan(s.cosine)]
        return min(values) if values else None

    @property
    def mean_cosine(self) -> float | None:
        values = [s.cosine for s in self.steps if s.cosine is not None and not np.isnan(s.cosine)]
        return float(np.mean(values)) if values else None

    @property
    def passed(self) -> bool | None:
        return None if self.reference_tokens is None else self.tokens == self.reference_tokens

    def to_dict(self) -> dict:
        return {"model": self.model, "prompt_ids": self.prompt_ids, "tokens": self.tokens,
                "ttft_s": self.ttft_s, "decode_tokens_per_s": self.decode_tokens_per_s, "session_s": self.session_s,
                "reference": self.reference, "reference_kind": self.reference_kind,
                "reference_tokens": self.reference_tokens, "reference_ttft_s": self.reference_ttft_s,
                "reference_tokens_per_s": self.reference_tokens_per_s,
                "matching": self.matching, "agreement": self.agreement, "first_divergence": self.first_divergence,
                "token_agreement": self.token_agreement, "passed": self.passed, "max_abs": self.max_abs,
                "min_cosine": self.min_cosine, "mean_cosine": self.mean_cosine,
                "steps": [s.to_dict() for s in self.steps]}


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


# ---------------------------------------------------------------- the loop


class Decoder:
    """An onnxruntime session over a KV-cache decoder and the one greedy loop over it (:meth:`greedy`).

    ``signature`` overrides the one read from the model (a model whose head size is symbolic, as onnxruntime-genai's
    builder writes them). ``spinning`` (default off): onnxruntime's intra-op threads busy-wait between runs; between
    decode steps there is Python work, and on a machine shared with other jobs the spinning threads fight for the
    cores: measured on the 112M Llama int4 (2 cores, load ~3), a decode step took 12-18 ms spinning, 4-7 ms not."""

    def __init__(self, model, *, providers=None, threads=None, signature: DecoderSignature | None = None,
                 spinning: bool = False) -> None:
        from onnxdeploy._run import create_session

        self.name = str(model) if isinstance(model, (str, os.PathLike)) else "<model>"
        self.signature = signature or require_decoder(model)
        t0 = time.perf_counter()
        self.session = create_session(model, providers=providers, threads=threads,
                                      config=None if spinning else {"session.intra_op.allow_spinning": "0"})
        self.session_s = time.perf_counter() - t0
        self.output_names = ["logits", *self.signature.present_names()]

    def empty_cache(self, batch: int = 1) -> dict[str, np.ndarray]:
        sig = self.signature
        return {name: np.zeros((batch, sig.kv_heads, 0, sig.head_dim), dtype=sig.cache_dtype)
                for name in sig.past_names()}

    def _bind_step(self, binding, ids: np.ndarray, past_length: int) -> list[np.ndarray]:
        """Bind ids, mask and positions of a step (the arrays returned must outlive the run)."""
        arrays = {"input_ids": ids.astype(self.signature.input_ids_dtype, copy=False),
                  **_step_feeds(self.signature, ids.shape[0], past_length, ids.shape[1])}
        for name, value in arrays.items():
            binding.bind_cpu_input(name, value)
        return list(arrays.values())

    def greedy(self, prompt: Sequence[int], new_tokens: int) -> tuple[list[int], list[np.ndarray], float, float]:
        """(tokens, last-position logits per step, seconds to the first token, decode tokens/s): the prompt in one
        prefill, then one step per token; each step's presents are bound as the next step's pasts as onnxruntime
        values (no copy to numpy)."""
        binding = self.session.io_binding()
        past_names = self.signature.past_names()
        ids = np.asarray([list(prompt)], dtype=np.int64)
        tokens: list[int] = []
        logits: list[np.ndarray] = []
        length, ttft = 0, 0.0
        t0 = time.perf_counter()
        cache: list = list(self.empty_cache().values())
        for step in range(new_tokens):
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
            alive = self._bind_step(binding, ids, length)
            for name, value in zip(past_names, cache):
                if isinstance(value, np.ndarray):
                    binding.bind_cpu_input(name, value)
                else:
                    binding.bind_ortvalue_input(name, value)
            for name in self.output_names:
                binding.bind_output(name, "cpu")
            self.session.run_with_iobinding(binding)
            outputs = list(binding.get_outputs())
            del alive
            last = np.asarray(outputs[0].numpy()[0, -1], dtype=np.float32)
            logits.append(last)
            tokens.append(int(np.argmax(last)))
            cache = list(outputs[1:])
            length += ids.shape[1]
            ids = np.asarray([[tokens[-1]]], dtype=np.int64)
            if step == 0:
                ttft = time.perf_counter() - t0
                t0 = time.perf_counter()
        seconds = time.perf_counter() - t0
        rate = (new_tokens - 1) / seconds if new_tokens > 1 and seconds > 0 else 0.0
        return tokens, logits, ttft, rate

    def forced_logits(self, prompt: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        """The logits of the positions that predict ``tokens`` after ``prompt``, in one prefill pass: [len(tokens), V]."""
        ids = np.asarray([list(prompt) + list(tokens[:-1])], dtype=np.int64)
        feeds = {"input_ids": ids.astype(self.signature.input_ids_dtype), **self.empty_cache(),
                 **_step_feeds(self.signature, 1, 0, ids.shape[1])}
        logits = self.session.run(["logits"], feeds)[0][0]
        return np.asarray(logits[len(prompt) - 1:], dtype=np.float32)


def _run(decoder: Decoder, prompt: list[int], new_tokens: int) -> GenerationReport:
    tokens, logits, ttft, rate = decoder.greedy(prompt, new_tokens)
    return GenerationReport(model=decoder.name, prompt_ids=prompt, tokens=tokens, ttft_s=ttft,
                            decode_tokens_per_s=rate, session_s=decoder.session_s,
                            steps=[GenerationStep(i, t) for i, t in enumerate(tokens)], logits=logits)


def is_onnx_reference(reference: Any) -> bool:
    """Whether ``reference`` names an ONNX model (an ``.onnx`` path, a ModelProto or an ir.Model), not PyTorch."""
    if isinstance(reference, (str, os.PathLike)):
        return os.fspath(reference).endswith(".onnx")
    return type(reference).__name__ in ("ModelProto", "Model") and type(reference).__module__.startswith(
        ("onnx", "onnx_ir"))


def generate(model, prompt_ids: str | Sequence[int], *, max_new_tokens: int = 16, reference: Any = None,
             providers: Sequence[str] | None = None, threads: int | None = None,
             signature: DecoderSignature | None = None) -> GenerationReport:
    """Greedy generation of ``max_new_tokens`` tokens after ``prompt_ids`` with a KV-cache decoder on onnxruntime
    (``model``: path, ModelProto or ir.Model following :mod:`onnxdeploy._llm`'s convention); returns a
    :class:`GenerationReport` with time to first token and decode tokens/s. ``reference`` adds the reference's
    greedy tokens, their agreement and the per-step logits error: a PyTorch module, a transformers config (random
    weights from seed 0), a target string such as ``hf:llama?...&seed=0`` with the same weights, or another ONNX
    decoder (``.onnx`` path, ModelProto, ir.Model; e.g. the fp32 model a quantized one came from)."""
    prompt = parse_prompt_ids(prompt_ids)
    if max_new_tokens < 1:
        raise UserInputError(f"max_new_tokens is {max_new_tokens}; generate at least 1 token")
    decoder = model if isinstance(model, Decoder) else Decoder(model, providers=providers, threads=threads,
                                                                 signature=signature)
    vocab = decoder.signature.vocab
    if vocab is not None and max(prompt) >= vocab:
        raise UserInputError(f"prompt id {max(prompt)} is outside the model's vocabulary of {vocab} tokens",
                             hint=f"use ids below {vocab}")
    report = _run(decoder, prompt, max_new_tokens)
    if reference is not None:
        ref = reference if isinstance(reference, GenerationReport) else reference_generation(
            reference, prompt, max_new_tokens, providers=providers, threads=threads)
        report.reference, report.reference_kind = ref.model, ref.reference_kind
        report.reference_ttft_s, report.reference_tokens_per_s = ref.ttft_s or None, ref.decode_tokens_per_s
        compare_steps(report, decoder, ref.tokens, ref.logits)
    return report


def reference_generation(reference: Any, prompt_ids: str | Sequence[int], max_new_tokens: int, *,
                         providers: Sequence[str] | None = None, threads: int | None = None) -> GenerationReport:
    """The reference side of :func:`generate`, run once so that several models can be compared to it (pass the
    result as ``generate(..., reference=it)``): PyTorch's greedy ``generate`` (a module, config or target string;
    ``decode_tokens_per_s`` is then new tokens per second of the whole call) or an ONNX decoder's greedy loop.
    ``reference_kind`` says which ("pytorch" or "onnx")."""
    prompt = parse_prompt_ids(prompt_ids)
    if isinstance(reference, Decoder) or is_onnx_reference(reference):
        ref = reference if isinstance(reference, Decoder) else Decoder(reference, providers=providers,
                                                                       threads=threads)
        report = _run(ref, prompt, max_new_tokens)
        report.model = os.fspath(reference) if isinstance(reference, (str, os.PathLike)) else ref.name
        report.reference_kind = "onnx"
        return report
    from onnxdeploy._export import causal_lm

    tokens, logits, ttft, rate = _torch_greedy(causal_lm(reference), prompt, max_new_tokens)
    name = reference if isinstance(reference, str) else type(reference).__name__
    return GenerationReport(model=name, prompt_ids=prompt, tokens=tokens, ttft_s=ttft or 0.0,
                            decode_tokens_per_s=rate, logits=logits, reference_kind="pytorch")


def compare_steps(report: GenerationReport, decoder: Decoder, ref_tokens: list[int],
                  ref_logits: list[np.ndarray]) -> None:
    """Fill ``report``'s steps with the reference's tokens and the logits error per step: the decode-step logits
    while both generations are the same, teacher-forced logits (``decoder`` fed the reference's tokens) after."""
    from onnxdeploy._numerics import diff_tensor

    report.reference_tokens = list(ref_tokens)
    forced = None
    same = True
    for i, step in enumerate(report.steps):
        step.reference_token = ref_tokens[i] if i < len(ref_tokens) else None
        if i >= len(ref_logits) or step.reference_token is None:
            continue
        if same:
            got, step.forced_token = report.logits[i], step.token
        else:
            if forced is None:
                forced = decoder.forced_logits(report.prompt_ids, ref_tokens[:len(report.steps)])
            got, step.teacher_forced = forced[i], True
            step.forced_token = int(np.argmax(got))
        diff = diff_tensor("logits", np.asarray(ref_logits[i], np.float32), got)
        step.max_abs, step.cosine = float(diff.max_abs), float(diff.cosine)
        same = same and step.token == step.reference_token


def compare_generation(reference: Any, candidate: Any, *, prompt: Sequence[int] | None = None,
                       new_tokens: int = DEFAULT_NEW_TOKENS, threads: int | None = None) -> GenerationReport:
    """Greedy-generate with an ONNX ``candidate`` decoder (e.g. int4 weights) and an ONNX ``reference`` (its fp32
    model) from ``prompt`` (default: :func:`default_prompt`) and compare them step by step: :func:`generate` with
    ``reference``."""
    cand = candidate if isinstance(candidate, Decoder) else Decoder(candidate, threads=threads)
    ref = reference if isinstance(reference, Decoder) else Decoder(reference, threads=threads)
    prompt = list(prompt) if prompt is not None else default_prompt(cand.signature)
    return generate(cand, prompt, max_new_tokens=new_tokens, reference=ref)


def decode_speed(model: Any, *, prompt: Sequence[int], new_tokens: int = 32, repeats: int = 3,
                 threads: int | None = None, signature: DecoderSignature | None = None) -> GenerationReport:
    """The fastest of ``repeats`` greedy runs (a short first run warms up), for a decode tokens/s figure."""
    decoder = model if isinstance(model, Decoder) else Decoder(model, threads=threads, signature=signature)
    prompt = list(prompt)
    decoder.greedy(prompt, min(new_tokens, 4))
    runs = [_run(decoder, prompt, new_tokens) for _ in range(repeats)]
    return max(runs, key=lambda g: g.decode_tokens_per_s)


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


__all__ = ["Decoder", "DecoderSignature", "GenerationReport", "GenerationStep", "cache_feeds", "compare_generation",
           "compare_steps", "decode_speed", "decoder_signature", "default_prompt", "generate", "is_onnx_reference",
           "parse_prompt_ids", "reference_generation", "require_decoder", "verification_sets"]
