"""Numeric comparison of outputs: the one tolerance check every verified transformation uses."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping

import numpy as np


@dataclass
class TensorDiff:
    """How far one tensor is from its reference."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    max_abs: float
    max_rel: float
    mean_abs: float
    cosine: float
    passed: bool
    note: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass
class Comparison:
    """Per-tensor differences between a reference and a candidate, with the tolerances used."""

    diffs: list[TensorDiff]
    atol: float
    rtol: float
    label: str = ""
    missing: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.missing and all(d.passed for d in self.diffs)

    @property
    def max_abs(self) -> float:
        return max((d.max_abs for d in self.diffs), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((d.max_rel for d in self.diffs), default=0.0)

    def failures(self) -> list[TensorDiff]:
        return [d for d in self.diffs if not d.passed]

    def summary(self) -> str:
        status = "match" if self.passed else "MISMATCH"
        worst = f"max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}"
        extra = f"; missing {', '.join(self.missing)}" if self.missing else ""
        return f"{self.label + ': ' if self.label else ''}{status} ({worst}; atol {self.atol:g}, rtol {self.rtol:g}){extra}"

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "passed": self.passed,
            "atol": self.atol,
            "rtol": self.rtol,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "missing": self.missing,
            "tensors": [d.to_dict() for d in self.diffs],
        }


def diff_tensor(name: str, ref: np.ndarray, got: np.ndarray, *, atol: float, rtol: float) -> TensorDiff:
    """Compare two arrays elementwise: pass when ``|got - ref| <= atol + rtol * |ref|`` everywhere.

    ``max_rel`` divides by ``|ref|`` floored at ``atol``, so elements near zero do not report absurd ratios.
    """
    ref = np.asarray(ref)
    got = np.asarray(got)
    if ref.shape != got.shape:
        return TensorDiff(name, tuple(got.shape), str(got.dtype), float("inf"), float("inf"), float("inf"), 0.0,
                          False, f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}")
    if ref.dtype.kind in "OSU" or got.dtype.kind in "OSU":
        equal = bool(np.array_equal(ref, got))
        return TensorDiff(name, tuple(ref.shape), str(got.dtype), 0.0 if equal else float("inf"),
                          0.0 if equal else float("inf"), 0.0, 1.0 if equal else 0.0, equal)
    if ref.size == 0:
        return TensorDiff(name, tuple(ref.shape), str(got.dtype), 0.0, 0.0, 0.0, 1.0, True)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _diff_numeric(name, ref, got, atol=atol, rtol=rtol)


_CHUNK = 1 << 16  # elements per step: float64 temporaries of about 5 MB in all, whatever the tensor's size


def _diff_numeric(name: str, ref: np.ndarray, got: np.ndarray, *, atol: float, rtol: float) -> TensorDiff:
    """The statistics of :func:`diff_tensor`, accumulated chunk by chunk (GPT-2's 26 MB logits took +370 MB at
    once)."""
    ref_flat, got_flat = ref.reshape(-1), got.reshape(-1)
    max_abs = max_rel = err_sum = dot = ref_sq = got_sq = 0.0
    ok = True
    same_finite = True
    for start in range(0, ref_flat.size, _CHUNK):
        r = ref_flat[start:start + _CHUNK].astype(np.float64)
        g = got_flat[start:start + _CHUNK].astype(np.float64)
        both_nan = np.isnan(r) & np.isnan(g)
        same_inf = np.isinf(r) & (r == g)
        err = np.where(both_nan | same_inf, 0.0, np.abs(g - r))
        err[np.isnan(err)] = np.inf
        rel = np.where(err == 0, 0.0, err / np.maximum(np.abs(r), max(atol, 1e-12)))  # |ref| floored at atol
        rel[np.isinf(err)] = np.inf
        ok = ok and bool((err <= atol + rtol * np.abs(np.where(np.isfinite(r), r, 0.0))).all())
        finite = np.isfinite(r) & np.isfinite(g)
        rf, gf = r[finite], g[finite]
        dot += float(np.dot(rf, gf))
        ref_sq += float(np.dot(rf, rf))
        got_sq += float(np.dot(gf, gf))
        same_finite = same_finite and bool(np.array_equal(rf, gf))
        max_abs = max(max_abs, float(err.max()))
        max_rel = max(max_rel, float(rel.max()))
        err_sum += float(err.sum())
    denom = float(np.sqrt(ref_sq) * np.sqrt(got_sq))
    cosine = dot / denom if denom > 0 else (1.0 if same_finite else 0.0)
    note = "" if ref.dtype == got.dtype else f"dtype {got.dtype} != reference {ref.dtype}"
    return TensorDiff(name, tuple(ref.shape), str(got.dtype), max_abs, max_rel, err_sum / ref_flat.size, cosine,
                      ok, note)


def compare_outputs(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    *,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    label: str = "",
    names: Mapping[str, str] | None = None,
) -> Comparison:
    """Compare candidate outputs to reference outputs by name (``names`` maps reference -> candidate names)."""
    diffs, missing = [], []
    for name, ref in reference.items():
        other = (names or {}).get(name, name)
        if other not in candidate:
            missing.append(name)
            continue
        diffs.append(diff_tensor(name, ref, candidate[other], atol=atol, rtol=rtol))
    return Comparison(diffs, atol, rtol, label, missing)
