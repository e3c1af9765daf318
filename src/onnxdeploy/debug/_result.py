"""What a comparison returns: the verdict on the real outputs (the models as they run) and, to localize a
divergence, the intermediate tensors matched between both sides. Shared by model-vs-model and PyTorch-vs-ONNX."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from onnxdeploy.errors import UserInputError
from onnxdeploy._numerics import Comparison, TensorDiff

@dataclass
class TensorMatch:
    """One tensor of the reference (A) and its counterpart in the candidate (B), with their difference."""

    name: str  # A's tensor name (PyTorch vs ONNX: the module path, ``path#k`` for its k-th call)
    other: str  # B's tensor name
    node: str | None  # the node producing it (A's node; PyTorch vs ONNX: the ONNX node)
    op: str | None
    how: str  # how the pair was matched: name, output, node, position, value, name_scope, node_name
    diff: TensorDiff
    note: str = ""  # e.g. "producer changed: Conv -> Conv (weights)" when the pair was checked by value

    @property
    def passed(self) -> bool:
        return self.diff.passed

    def to_dict(self) -> dict:
        return {"name": self.name, "other": self.other, "node": self.node, "op": self.op, "how": self.how,
                **{k: v for k, v in self.diff.to_dict().items() if k not in ("name", "note")},
                "note": "; ".join(x for x in (self.note, self.diff.note) if x)}


@dataclass
class Unmatched:
    """A tensor (or module call) of A with no counterpart in B that can be trusted, and why."""

    name: str
    reason: str

    def to_dict(self) -> dict:
        return {"name": self.name, "reason": self.reason}


@dataclass
class CompareResult:
    """The verdict (real outputs of both models, each run unmodified) and the matched intermediate tensors.

    ``passed`` comes from ``verdict`` only. The intermediates (captured in separate runs that expose every tensor
    as an output, which can change the runtime's fusions) only localize: ``first_divergence`` is the first of them
    beyond tolerance when the verdict fails; when it passes, differing intermediates are ``notes``, not failures.
    """

    label_a: str
    label_b: str
    matches: list[TensorMatch]
    atol: float
    rtol: float
    kind: str = "onnx"  # "onnx" (model vs model) or "torch" (PyTorch module vs ONNX)
    unmatched: list[Unmatched] = field(default_factory=list)  # A's tensors with no trusted counterpart in B
    seconds: float = 0.0
    inputs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    verdict: Comparison | None = None  # the graph outputs, models run as they are

    @property
    def passed(self) -> bool:
        if self.verdict is not None:
            return self.verdict.passed
        return all(m.passed for m in self.matches)

    @property
    def first_divergence(self) -> TensorMatch | None:
        """The first intermediate beyond tolerance, when the verdict fails (None when it passes)."""
        if self.passed:
            return None
        return next((m for m in self.matches if not m.passed), None)

    def failures(self) -> list[TensorMatch]:
        return [m for m in self.matches if not m.passed]

    @property
    def notes(self) -> list[str]:
        """What is worth knowing beside the verdict (intermediates that differ while the outputs agree)."""
        notes = []
        differing = self.failures()
        if self.passed and differing:
            names = ", ".join(repr(m.name) for m in differing[:3]) + (" ..." if len(differing) > 3 else "")
            notes.append(
                f"{len(differing)} intermediate {self._what()} differ ({names}) while the outputs agree: exposing "
                "every tensor as an output changes what the runtime fuses (e.g. int8 kernels), so intermediates only "
                "localize a divergence, they do not decide the verdict")
        if not self.passed and not differing:
            notes.append(
                f"no matched intermediate {self._what()[:-1]} differs although the outputs do: the difference appears "
                "only when the models run as they are (e.g. onnxruntime fuses differently when every tensor is an "
                "output); try --opt-level disable on both sides")
        return notes

    def _what(self) -> str:
        return "modules" if self.kind == "torch" else "tensors"

    def _where(self, m: TensorMatch) -> str:
        if self.kind == "torch":
            return f"module {m.name!r} (ONNX tensor {m.other!r})"
        if m.node:
            return f"tensor {m.name!r} ({m.op} node {m.node!r})"
        return f"tensor {m.name!r} (unnamed {m.op} node)"

    def summary(self) -> str:
        tol = f"atol {self.atol:g}, rtol {self.rtol:g}"
        verdict = self.verdict
        if self.passed:
            worst = verdict.max_abs if verdict is not None else max((m.diff.max_abs for m in self.matches),
                                                                    default=0.0)
            count = len(verdict.diffs) if verdict is not None else 0
            outs = ("1 output agrees" if count == 1 else f"{count} outputs agree") if verdict else "outputs agree"
            return f"{outs} (max abs {worst:.3g}; {tol}); {len(self.matches)} matched {self._what()} compared"
        if verdict is not None:
            bad = verdict.failures()
            text = ", ".join(f"{d.name!r} (max abs {d.max_abs:.3g}, cosine {d.cosine:.6f})" for d in bad[:3])
            if verdict.missing:
                text += (", " if text else "") + "missing " + ", ".join(verdict.missing)
            head = f"outputs differ: {text} ({tol})"
        else:
            head = f"{len(self.failures())} of {len(self.matches)} matched {self._what()} differ ({tol})"
        first = self.first_divergence
        if first is None:
            return f"{head}; no matched intermediate {self._what()[:-1]} differs"
        return (f"{head}; first divergence: {self._where(first)}: max abs {first.diff.max_abs:.3g}, "
                f"max rel {first.diff.max_rel:.3g}, cosine {first.diff.cosine:.6f}")

    def check(self) -> None:
        """Raise :class:`OutputsDisagree` (exit code 3) unless the verdict passed."""
        from onnxdeploy.errors import OutputsDisagree

        if self.passed:
            return
        if self.first_divergence is None:
            hint = ("no intermediate says where: the runtime computes the models differently when every tensor is "
                    "exposed as an output (e.g. int8 fusions); --opt-level disable on both sides tells whether an "
                    "optimization causes it")
        else:
            hint = ("`onnxdeploy reduce A B -o repro.onnx` extracts the smallest subgraph that still disagrees"
                    if self.kind == "onnx" else None)
        raise OutputsDisagree(self.summary(), hint=hint)

    def to_dict(self) -> dict:
        first = self.first_divergence
        return {
            "a": self.label_a,
            "b": self.label_b,
            "kind": self.kind,
            "passed": self.passed,
            "atol": self.atol,
            "rtol": self.rtol,
            "summary": self.summary(),
            "outputs": self.verdict.to_dict() if self.verdict is not None else None,
            "first_divergence": first.to_dict() if first else None,
            "notes": self.notes,
            "seconds": self.seconds,
            "unmatched": [u.to_dict() for u in self.unmatched],
            "tensors": [m.to_dict() for m in self.matches],
        }


def model_label(model: object, default: str) -> str:
    return str(model) if isinstance(model, (str, os.PathLike)) else default


def map_inputs(feeds: Mapping[str, np.ndarray], specs_a, specs_b, label_a: str, label_b: str) -> dict:
    """A's feeds under B's input names: by name, else by position when both have as many inputs."""
    names_a = [s.name for s in specs_a]
    names_b = [s.name for s in specs_b]
    if set(names_b) <= set(feeds):
        return {n: feeds[n] for n in names_b}
    if len(names_a) == len(names_b):
        return {nb: feeds[na] for na, nb in zip(names_a, names_b)}
    raise UserInputError(
        f"cannot feed {label_b} the inputs of {label_a}: inputs {names_b} vs {names_a}",
        hint="the models must take the same inputs (by name, or the same number in the same order)")
