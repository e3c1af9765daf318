"""Judge decoder language models with a KV cache on onnxruntime: feeds that fit the cache convention, a timed greedy
loop, and the comparison of two decoders (fp32 and a fused or quantized one) token by token.

The convention is the one ``onnxdeploy export --task text-generation --with-past``, optimum and onnxruntime-genai's
model builder write: inputs ``input_ids``, ``attention_mask`` (past + new tokens), optionally ``position_ids``, and
``past_key_values.N.key/value`` of shape ``[batch, kv_heads, past_sequence, head_dim]``; outputs ``logits`` and
``present.N.key/value``. :func:`decoder_signature` recognises it (None for any other model).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from onnxdeploy.errors import UserInputError

if TYPE_CHECKING:
    import onnxruntime as ort

_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")
DEFAULT_PROMPT_LENGTH = 8
DEFAULT_NEW_TOKENS = 16


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
        return [f"past_key_values.{i}.{kind}" for i in range(self.layers) for kind in ("key", "value")]

    def present_names(self) -> list[str]:
        return [f"present.{i}.{kind}" for i in range(self.layers) for kind in ("key", "value")]


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
    ins, outs = _interface(model)
    past = {(int(m.group(1)), m.group(2)): ins[n] for n in ins if (m := _PAST.match(n))}
    if "input_ids" not in ins or "logits" not in outs or not past:
        return None
    layers = 1 + max(i for i, _ in past)
    if any((i, k) not in past or f"present.{i}.{k}" not in outs for i in range(layers) for k in ("key", "value")):
        return None
    dtype, shape = past[(0, "key")]
    if shape is None or len(shape) != 4 or not all(isinstance(d, int) for d in (shape[1], shape[3])):
        return None
    logits = outs["logits"][1]
    vocab = logits[-1] if logits and isinstance(logits[-1], int) else None
    return DecoderSignature(layers, shape[1], shape[3], np.dtype(dtype), vocab, "position_ids" in ins,
                            "attention_mask" in ins, np.dtype(ins["input_ids"][0]))


def require_decoder(model: Any, what: str = "the model") -> DecoderSignature:
    signature = decoder_signature(model)
    if signature is None:
        raise UserInputError(f"{what} is not a decoder with a KV cache (no input_ids + past_key_values.N.key/value "
                             "inputs, logits + present.N.key/value outputs)",
                             hint="export it with: onnxdeploy export TARGET --task text-generation --with-past")
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
    if signature.attention_mask:
        feeds["attention_mask"] = np.ones((batch, past + sequence), np.int64)
    if signature.position_ids:
        feeds["position_ids"] = np.broadcast_to(np.arange(past, past + sequence, dtype=np.int64),
                                                (batch, sequence)).copy()
    shape = (batch, signature.kv_heads, past, signature.head_dim)
    for name in signature.past_names():
        feeds[name] = (rng.standard_normal(shape) * 0.5).astype(signature.cache_dtype)
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


def decode_session(model: Any, *, threads: int | None = None, providers: Sequence[str] | None = None
                   ) -> "ort.InferenceSession":
    """A session as deployment runs it (onnxruntime's graph optimizations on)."""
    from onnxdeploy._run import create_session

    return create_session(model, providers=providers, threads=threads, optimization_level="all")


@dataclass
class Generation:
    """A greedy generation: the new tokens, the last-position logits of each step, and its timing."""

    tokens: list[int]
    logits: list[np.ndarray] = field(repr=False)
    first_token_s: float
    decode_s: float

    @property
    def decode_tokens_per_s(self) -> float | None:
        steps = len(self.tokens) - 1
        return steps / self.decode_s if steps > 0 and self.decode_s > 0 else None

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "first_token_s": self.first_token_s, "decode_s": self.decode_s,
                "decode_tokens_per_s": self.decode_tokens_per_s}


def greedy(session: "ort.InferenceSession", signature: DecoderSignature, prompt_ids: Sequence[int],
           new_tokens: int = DEFAULT_NEW_TOKENS) -> Generation:
    """Greedy decoding of ``new_tokens`` after ``prompt_ids`` (batch 1) with the KV cache on ``session``."""
    feeds = cache_feeds(signature, past=0, token_ids=np.asarray([list(prompt_ids)]))
    outputs = ["logits", *signature.present_names()]
    tokens: list[int] = []
    step_logits: list[np.ndarray] = []
    past_len, first, start = 0, 0.0, time.perf_counter()
    for step in range(new_tokens):
        result = session.run(outputs, feeds)
        last = np.asarray(result[0][0, -1], dtype=np.float32)
        token = int(np.argmax(last))
        tokens.append(token)
        step_logits.append(last)
        if step == 0:
            first = time.perf_counter() - start
            start = time.perf_counter()
        past_len += feeds["input_ids"].shape[1]
        feeds = {"input_ids": np.asarray([[token]], dtype=signature.input_ids_dtype)}
        if signature.attention_mask:
            feeds["attention_mask"] = np.ones((1, past_len + 1), np.int64)
        if signature.position_ids:
            feeds["position_ids"] = np.asarray([[past_len]], np.int64)
        feeds.update(zip(signature.past_names(), result[1:]))
    return Generation(tokens, step_logits, first, time.perf_counter() - start if new_tokens > 1 else 0.0)


def default_prompt(signature: DecoderSignature, length: int = DEFAULT_PROMPT_LENGTH, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(t) for t in rng.integers(1, signature.vocab or 100, length)]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denom) if denom else (1.0 if np.array_equal(a, b) else 0.0)


@dataclass
class StepAgreement:
    """One generation step: the tokens both models chose and the cosine of their logits (teacher-forced: the
    candidate runs on the reference's tokens, so a step stays comparable after a first disagreement)."""

    step: int
    reference_token: int
    candidate_token: int
    cosine: float

    @property
    def agrees(self) -> bool:
        return self.reference_token == self.candidate_token

    def to_dict(self) -> dict:
        return {**self.__dict__, "agrees": self.agrees}


@dataclass
class GenerationComparison:
    """A candidate decoder against a reference one on the same prompt: free-running greedy tokens of both, and
    per-step agreement and logits cosine with the candidate fed the reference's tokens."""

    prompt: list[int]
    reference: Generation
    candidate: Generation
    steps: list[StepAgreement]

    @property
    def identical(self) -> bool:
        return self.reference.tokens == self.candidate.tokens

    @property
    def token_agreement(self) -> float:
        """Share of steps whose argmax agrees (teacher-forced)."""
        return sum(s.agrees for s in self.steps) / len(self.steps) if self.steps else 1.0

    @property
    def first_divergence(self) -> int | None:
        """The first step where the free-running generations differ (None: identical)."""
        pairs = zip(self.reference.tokens, self.candidate.tokens)
        return next((i for i, (a, b) in enumerate(pairs) if a != b), None)

    @property
    def min_cosine(self) -> float:
        return min((s.cosine for s in self.steps), default=1.0)

    @property
    def mean_cosine(self) -> float:
        return float(np.mean([s.cosine for s in self.steps])) if self.steps else 1.0

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "identical": self.identical, "token_agreement": self.token_agreement,
                "first_divergence": self.first_divergence, "min_cosine": self.min_cosine,
                "mean_cosine": self.mean_cosine, "reference": self.reference.to_dict(),
                "candidate": self.candidate.to_dict(), "steps": [s.to_dict() for s in self.steps]}


def teacher_forced_logits(session: "ort.InferenceSession", signature: DecoderSignature, prompt: Sequence[int],
                          tokens: Sequence[int]) -> np.ndarray:
    """The logits of the positions that predict ``tokens`` after ``prompt``, in one prefill pass: [len(tokens), V]."""
    ids = np.asarray([list(prompt) + list(tokens[:-1])])
    logits = session.run(["logits"], cache_feeds(signature, past=0, token_ids=ids))[0][0]
    return np.asarray(logits[len(prompt) - 1:], dtype=np.float32)


def compare_generation(reference: "ort.InferenceSession", candidate: "ort.InferenceSession",
                       signature: DecoderSignature, *, prompt: Sequence[int] | None = None,
                       new_tokens: int = DEFAULT_NEW_TOKENS) -> GenerationComparison:
    """Greedy-generate with both sessions from ``prompt`` and compare them step by step."""
    prompt = list(prompt) if prompt is not None else default_prompt(signature)
    ref = greedy(reference, signature, prompt, new_tokens)
    got = greedy(candidate, signature, prompt, new_tokens)
    forced = teacher_forced_logits(candidate, signature, prompt, ref.tokens)
    steps = [StepAgreement(i, ref.tokens[i], int(np.argmax(forced[i])), _cosine(ref.logits[i], forced[i]))
             for i in range(len(ref.tokens))]
    return GenerationComparison(prompt, ref, got, steps)


def decode_speed(session: "ort.InferenceSession", signature: DecoderSignature, *, prompt: Sequence[int],
                 new_tokens: int = 32, repeats: int = 3) -> Generation:
    """The fastest of ``repeats`` greedy runs (first run warms up), for a decode tokens/s figure."""
    greedy(session, signature, prompt, min(new_tokens, 4))
    runs = [greedy(session, signature, prompt, new_tokens) for _ in range(repeats)]
    return min(runs, key=lambda g: g.decode_s)

