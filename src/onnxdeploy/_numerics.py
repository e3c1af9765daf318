"""Numeric comparison of outputs: the one tolerance check every verified transformation uses.

:class:`Tolerance` is the policy: fp32 candidates are judged elementwise (``|got - ref| <= atol + rtol * |ref|``),
fp16/bf16/int8 candidates by metrics that fit them (cosine, relative L2, top-1 agreement of logits-like outputs),
with per-output overrides. :func:`diff_tensor` measures one tensor in a single streaming pass over cache-sized
chunks (about the cost of numpy's one-pass ``abs(a - b)``, a few MB of scratch whatever the size) and flags what
makes an agreement meaningless: a constant (e.g. all-zero) reference, NaN or Inf in one model only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Iterable, Mapping, Union

import numpy as np

DEFAULT_ATOL = 1e-4
"""Absolute tolerance of every verification unless the user gives one: the one place the default lives."""
DEFAULT_RTOL = 1e-3
"""Relative tolerance of every verification unless the user gives one."""

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# Metric thresholds of a candidate of each precision, when the user does not give them. fp32 uses atol/rtol only.
_METRIC_DEFAULTS: dict[str, dict[str, float | None]] = {
    "fp32": {"min_cosine": None, "max_rel_l2": None, "min_top1": None},
    "fp16": {"min_cosine": 0.999, "max_rel_l2": 1e-2, "min_top1": None},
    "bf16": {"min_cosine": 0.999, "max_rel_l2": 1e-2, "min_top1": None},
    "int8": {"min_cosine": 0.99, "max_rel_l2": 0.1, "min_top1": 0.9},
}
_PRECISION_ALIASES = {"float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16",
                      "uint8": "int8", "qdq": "int8", "quantized": "int8"}


def _num(x: float) -> str:
    """``1e-4``, ``0.001`` -> ``1e-3``, ``0.999``, ``0.01``: short and exact enough for a metric's name."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    if abs(x) < 1e-2 or abs(x) >= 1e5:
        mantissa, exp = f"{x:.3g}".split("e") if "e" in f"{x:.3g}" else (f"{x:.3e}".split("e"))
        mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
        return f"{mantissa}e{int(exp)}"
    return f"{x:g}"


ToleranceLike = Union["Tolerance", Mapping[str, Any], str]


@dataclass
class Tolerance:
    """How close a candidate's outputs must be to the reference's, by the candidate's precision, per output.

    ``precision="fp32"`` (default) judges elementwise: pass iff ``|got - ref| <= atol + rtol * |ref|`` everywhere.
    ``"fp16"``/``"bf16"`` pass when ``cosine >= min_cosine`` (0.999) and ``rel L2 <= max_rel_l2`` (1e-2);
    ``"int8"`` when cosine >= 0.99, rel L2 <= 0.1 and, for logits-like outputs (float, rank >= 2, last dim > 1),
    top-1 agreement >= ``min_top1`` (0.9). A candidate within atol/rtol elementwise always passes; NaN/Inf in one
    model only always fails; a constant reference output is judged by atol/rtol only (no metric means anything
    there). Setting any metric threshold on fp32 judges by that metric too. ``per_output`` maps an output name to a
    Tolerance, a dict of fields to override (``{"atol": 1e-2}``) or a precision name (``"int8"``).
    """

    precision: str = "fp32"
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    min_cosine: float | None = None
    max_rel_l2: float | None = None
    min_top1: float | None = None
    per_output: dict[str, ToleranceLike] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from onnxdeploy.errors import UserInputError

        precision = _PRECISION_ALIASES.get(str(self.precision).lower(), str(self.precision).lower())
        if precision not in PRECISIONS:
            from onnxdeploy._suggest import close_names

            close = close_names(str(self.precision), PRECISIONS, n=2)
            raise UserInputError(f"unknown precision {self.precision!r}" +
                                 (f"; did you mean {' or '.join(map(repr, close))}?" if close else ""),
                                 hint=f"use one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.atol = DEFAULT_ATOL if self.atol is None else float(self.atol)
        self.rtol = DEFAULT_RTOL if self.rtol is None else float(self.rtol)
        if self.atol < 0 or self.rtol < 0 or math.isnan(self.atol) or math.isnan(self.rtol):
            raise UserInputError(f"tolerances must be >= 0 (atol {self.atol:g}, rtol {self.rtol:g})",
                                 hint="e.g. --atol 1e-4 --rtol 1e-3")
        for key, value in _METRIC_DEFAULTS[precision].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self.per_output = dict(self.per_output or {})

    @property
    def uses_metrics(self) -> bool:
        """True when outputs are judged by cosine / rel L2 / top-1 (not only atol/rtol)."""
        return any(v is not None for v in (self.min_cosine, self.max_rel_l2, self.min_top1))

    @property
    def metric_name(self) -> str:
        """The metric in words, e.g. ``max abs/rel within atol 1e-4 + rtol 1e-3`` or ``cosine >= 0.999, rel L2 <= 0.01``."""
        return self.metric_for(top1=True)

    def metric_for(self, *, top1: bool) -> str:
        """:attr:`metric_name` for one output: ``top1=False`` leaves out top-1 (the output is not logits-like)."""
        if not self.uses_metrics:
            return f"max abs/rel within atol {_num(self.atol)} + rtol {_num(self.rtol)}"
        parts = []
        if self.min_cosine is not None:
            parts.append(f"cosine >= {_num(self.min_cosine)}")
        if self.max_rel_l2 is not None:
            parts.append(f"rel L2 <= {_num(self.max_rel_l2)}")
        if top1 and self.min_top1 is not None:
            parts.append(f"top-1 >= {_num(self.min_top1)}")
        return ", ".join(parts) or f"max abs/rel within atol {_num(self.atol)} + rtol {_num(self.rtol)}"

    def for_output(self, name: str) -> "Tolerance":
        """The tolerance of output ``name``: its ``per_output`` entry over this one, or this one."""
        base = replace(self, per_output={})
        if name not in self.per_output:
            return base
        return self._override(base, self.per_output[name], name)

    @staticmethod
    def _override(base: "Tolerance", spec: ToleranceLike, name: str) -> "Tolerance":
        from onnxdeploy.errors import UserInputError

        if isinstance(spec, Tolerance):
            return replace(spec, per_output={})
        if isinstance(spec, str):
            return Tolerance(precision=spec, atol=base.atol, rtol=base.rtol)
        if isinstance(spec, Mapping):
            known = {f.name for f in fields(Tolerance)} - {"per_output"}
            unknown = [k for k in spec if k not in known]
            if unknown:
                from onnxdeploy._suggest import close_names

                close = close_names(unknown[0], sorted(known), n=1)
                raise UserInputError(f"unknown tolerance field {unknown[0]!r} for output {name!r}" +
                                     (f"; did you mean {close[0]!r}?" if close else ""),
                                     hint=f"fields: {', '.join(sorted(known))}")
            if "precision" in spec:  # a new precision brings its own metric defaults
                kwargs = {"atol": base.atol, "rtol": base.rtol}
                kwargs.update(spec)
                return Tolerance(**kwargs)
            return replace(base, **spec)
        raise UserInputError(f"per-output tolerance for {name!r} must be a Tolerance, a dict or a precision name, "
                             f"not {type(spec).__name__}")

    def check_names(self, names: Iterable[str]) -> None:
        """Raise :class:`~onnxdeploy.errors.UserInputError` naming the closest outputs when a ``per_output`` key
        matches no output in ``names``."""
        from onnxdeploy.errors import UserInputError

        names = list(names)
        for key in self.per_output:
            if key not in names:
                from onnxdeploy._suggest import close_names

                close = close_names(key, names)
                raise UserInputError(f"per-output tolerance names {key!r}, which is not an output" +
                                     (f"; did you mean {', '.join(map(repr, close))}?" if close else ""),
                                     hint=f"outputs: {', '.join(names[:10])}" + (" ..." if len(names) > 10 else ""))

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "per_output"}
        d["metric"] = self.metric_name
        d["per_output"] = {k: self.for_output(k).to_dict() for k in self.per_output}
        return d


@dataclass
class TensorDiff:
    """How far one tensor is from its reference, the metric that judged it, and what makes the verdict doubtful.

    ``cosine`` and ``rel_l2`` are NaN where undefined (a constant reference: agreement with it says nothing);
    ``top1`` is the fraction of rows whose argmax on the last axis agrees, None unless the output is logits-like.
    ``flags`` are loud, human warnings (constant reference, NaN/Inf in one model only, why a metric failed).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    max_abs: float
    max_rel: float
    mean_abs: float
    cosine: float
    passed: bool
    note: str = ""
    rel_l2: float = 0.0
    top1: float | None = None
    nonfinite_ref: int = 0
    nonfinite_got: int = 0
    constant: bool = False
    metric: str = ""
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        for key in ("cosine", "rel_l2", "top1"):  # NaN is not JSON: undefined is null
            if isinstance(d[key], float) and math.isnan(d[key]):
                d[key] = None
        return d


@dataclass
class Comparison:
    """Per-tensor differences between a reference and a candidate, with the tolerance used."""

    diffs: list[TensorDiff]
    atol: float
    rtol: float
    label: str = ""
    missing: list[str] = field(default_factory=list)
    tolerance: Tolerance | None = None

    @property
    def passed(self) -> bool:
        return not self.missing and all(d.passed for d in self.diffs)

    @property
    def max_abs(self) -> float:
        return max((d.max_abs for d in self.diffs), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((d.max_rel for d in self.diffs), default=0.0)

    @property
    def min_cosine(self) -> float | None:
        """The lowest defined cosine (None when no tensor has one)."""
        return min((d.cosine for d in self.diffs if not math.isnan(d.cosine)), default=None)

    @property
    def max_rel_l2(self) -> float | None:
        return max((d.rel_l2 for d in self.diffs if not math.isnan(d.rel_l2)), default=None)

    @property
    def min_top1(self) -> float | None:
        return min((d.top1 for d in self.diffs if d.top1 is not None), default=None)

    @property
    def metric(self) -> str:
        return (self.tolerance or Tolerance(atol=self.atol, rtol=self.rtol)).metric_name

    @property
    def flags(self) -> list[str]:
        """Every tensor's flags, as ``name: message``."""
        return [f"{d.name}: {flag}" for d in self.diffs for flag in d.flags]

    def failures(self) -> list[TensorDiff]:
        return [d for d in self.diffs if not d.passed]

    def summary(self) -> str:
        status = "match" if self.passed else "MISMATCH"
        worst = f"max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}"
        if self.tolerance is not None and (self.tolerance.uses_metrics or any(
                self.tolerance.for_output(k).uses_metrics for k in self.tolerance.per_output)):
            cos, l2, top1 = self.min_cosine, self.max_rel_l2, self.min_top1
            worst += (f", cosine {'n/a' if cos is None else f'{cos:.5f}'}, rel L2 {'n/a' if l2 is None else f'{l2:.3g}'}"
                      + (f", top-1 {top1:.3f}" if top1 is not None else ""))
        extra = f"; missing {', '.join(self.missing)}" if self.missing else ""
        flags = "".join(f"; WARNING {f}" for f in self.flags)
        return f"{self.label + ': ' if self.label else ''}{status} ({worst}; {self.metric}){extra}{flags}"

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "passed": self.passed,
            "atol": self.atol,
            "rtol": self.rtol,
            "metric": self.metric,
            "tolerance": (self.tolerance or Tolerance(atol=self.atol, rtol=self.rtol)).to_dict(),
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "min_cosine": self.min_cosine,
            "max_rel_l2": self.max_rel_l2,
            "min_top1": self.min_top1,
            "missing": self.missing,
            "flags": self.flags,
            "tensors": [d.to_dict() for d in self.diffs],
        }


def resolve_tolerance(tolerance: Tolerance | None, atol: float | None = None, rtol: float | None = None) -> Tolerance:
    """The one tolerance default: ``tolerance`` (``atol``/``rtol`` override its), else fp32 at the defaults."""
    if tolerance is None:
        return Tolerance(atol=DEFAULT_ATOL if atol is None else atol, rtol=DEFAULT_RTOL if rtol is None else rtol)
    if atol is not None or rtol is not None:
        return replace(tolerance, atol=tolerance.atol if atol is None else atol,
                       rtol=tolerance.rtol if rtol is None else rtol)
    return tolerance


def _kind(dtype: np.dtype) -> str:
    """numpy's kind letter, with ml_dtypes' floats (bfloat16, float8_*) as ``f`` and int4/uint4 as ``i``."""
    # ml_dtypes >= 0.6 has its own dtype classes; older ones register plain numpy dtypes of its scalar types
    if dtype.kind != "V" or "ml_dtypes" not in (type(dtype).__module__ + getattr(dtype.type, "__module__", "")):
        return dtype.kind
    return "f" if "float" in dtype.name else "i"


def diff_tensor(name: str, ref: np.ndarray, got: np.ndarray, *, atol: float | None = None, rtol: float | None = None,
                tolerance: Tolerance | None = None) -> TensorDiff:
    """Compare ``got`` to ``ref`` under ``tolerance`` (or fp32 ``atol``/``rtol``; given both, atol/rtol override).

    Elementwise, ``|got - ref| <= atol + rtol * |ref|``, NaN == NaN and equal infinities counting as equal;
    ``max_rel`` divides by ``|ref|`` floored at ``atol``, so elements near zero do not report absurd ratios.
    Integer and bool outputs must be equal. One streaming pass over cache-sized chunks: bounded memory.
    """
    tol = resolve_tolerance(tolerance, atol, rtol)
    ref = np.asarray(ref)
    got = np.asarray(got)
    if ref.shape != got.shape:
        return TensorDiff(name, tuple(got.shape), str(got.dtype), math.inf, math.inf, math.inf, math.nan, False,
                          f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}", rel_l2=math.inf,
                          metric=tol.metric_for(top1=False),
                          flags=[f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}"])
    kr, kg = _kind(ref.dtype), _kind(got.dtype)
    if kr not in "biuf" or kg not in "biuf":
        equal = bool(np.array_equal(ref, got))
        return TensorDiff(name, tuple(ref.shape), str(got.dtype), 0.0 if equal else math.inf,
                          0.0 if equal else math.inf, 0.0 if equal else math.inf, math.nan, equal,
                          rel_l2=0.0 if equal else math.inf, metric="exact equality")
    if ref.size == 0:
        return TensorDiff(name, tuple(ref.shape), str(got.dtype), 0.0, 0.0, 0.0, math.nan, True, rel_l2=math.nan,
                          metric=tol.metric_for(top1=False), flags=["output is empty (0 elements): nothing compared"])
    with np.errstate(invalid="ignore", over="ignore", divide="ignore", under="ignore"):
        return _Stream(name, ref, got, tol, exact=kr in "biu" and kg in "biu").run()


_CHUNK = 1 << 16  # elements per step: r, g and 3 scratch chunks of float32 stay in a 2 MB L2 cache
_MAX_ROW = 1 << 18  # rows up to this long are kept whole in a chunk, for top-1 agreement in the same pass
_CHEAP_ROW = 256  # numpy's row-wise argmax costs about one pass from rows this long; short rows cost 10-50x more


def _row_argmax(x: np.ndarray) -> np.ndarray:
    """argmax over the last axis of a 2-D chunk; two columns by one comparison (numpy's argmax is slow there)."""
    if x.shape[1] == 2:
        return np.greater(x[:, 1], x[:, 0]) | (np.isnan(x[:, 1]) & ~np.isnan(x[:, 0]))
    return x.argmax(axis=1)


class _Stream:
    """The statistics of :func:`diff_tensor`, accumulated over chunks.

    Fast path per chunk (all finite): ``d = g - r``, three BLAS dots (r.r, r.d, d.d: cosine and rel L2 without
    cancellation), ``|d|`` max and sum, ``max_rel``; the elementwise check is skipped when ``max |d| <= atol`` and
    otherwise done in the working dtype with a safety margin, rechecked exactly in float64 only where the margin
    is too thin. A chunk with NaN/Inf (or an overflow) goes through an exact float64 path.
    """

    def __init__(self, name: str, ref: np.ndarray, got: np.ndarray, tol: Tolerance, *, exact: bool) -> None:
        self.name, self.ref, self.got, self.tol, self.exact = name, ref, got, tol, exact
        both32 = all(a.dtype.itemsize <= 4 and _kind(a.dtype) == "f" or a.dtype.itemsize <= 2 for a in (ref, got))
        self.wdt = np.dtype(np.float32 if both32 and not exact else np.float64)
        self.n = ref.size
        last = ref.shape[-1] if ref.ndim >= 2 else 0
        # Top-1 agreement applies to logits-like outputs (float, rank >= 2, last dim > 1); it is measured when the
        # tolerance asks for it, or when rows are long enough (>= 256) for numpy's row-wise argmax to be cheap.
        self.logits = (not exact and _kind(ref.dtype) == "f" and ref.ndim >= 2 and last > 1
                       and (tol.min_top1 is not None or last >= _CHEAP_ROW))
        self.last = last
        self.rows_in_loop = self.logits and last <= _MAX_ROW
        self.step = max(1, _CHUNK // last) * last if self.rows_in_loop else _CHUNK
        self.step = min(self.step, self.n)
        self.ok = True
        self.max_abs = self.max_rel = self.err_sum = 0.0
        self.rr = self.rd = self.dd = 0.0
        self.ref_nan = self.ref_inf = self.got_nan = self.got_inf = 0
        self.new_nan = self.new_inf = self.lost = 0
        self.top1_agree = 0
        self.first_r = self.first_g = None
        self.const_r = self.const_g = True
        atol, rtol = tol.atol, tol.rtol
        self.floor = max(atol, 1e-12)
        self.atol_safe = atol * (1 - 1e-6)
        self.margin_ok = atol >= 1e-30  # below, float32 products may be subnormal: check in float64 directly
        self.atol_w, self.rtol_w = self.wdt.type(atol * (1 - 1e-6)), self.wdt.type(rtol * (1 - 1e-6))

    @staticmethod
    def _flat(a: np.ndarray):
        return a.reshape(-1) if a.flags.c_contiguous else None

    def _chunk(self, a: np.ndarray, flat, start: int, stop: int, buf: np.ndarray) -> np.ndarray:
        part = flat[start:stop] if flat is not None else a.flat[start:stop]  # .flat slices copy only the chunk
        if part.dtype == self.wdt:
            return part
        out = buf[:stop - start]
        np.copyto(out, part, casting="unsafe")
        return out

    def run(self) -> TensorDiff:
        ref, got, step, wdt = self.ref, self.got, self.step, self.wdt
        fr, fg = self._flat(ref), self._flat(got)
        rbuf = np.empty(step, wdt) if ref.dtype != wdt and not self.exact else None
        gbuf = np.empty(step, wdt) if got.dtype != wdt and not self.exact else None
        d, t, u = np.empty(step, wdt), np.empty(step, wdt), np.empty(step, wdt)
        b = np.empty(step, bool)
        # The first elements, in the dtype the chunks are compared in (raw integers: no float rounding).
        self.first_r = ref.flat[0] if self.exact else np.asarray(ref.flat[0]).astype(wdt)[()]
        self.first_g = got.flat[0] if self.exact else np.asarray(got.flat[0]).astype(wdt)[()]
        for start in range(0, self.n, step):
            stop = min(self.n, start + step)
            k = stop - start
            if self.exact:  # integers and bools: compared as they are, cast only where they differ
                r = fr[start:stop] if fr is not None else ref.flat[start:stop]
                g = fg[start:stop] if fg is not None else got.flat[start:stop]
                self._exact_chunk(r, g)
            else:
                r = self._chunk(ref, fr, start, stop, rbuf)
                g = self._chunk(got, fg, start, stop, gbuf)
                self._float_chunk(r, g, d[:k], t[:k], u[:k], b[:k])
            if self.const_r:
                self.const_r = bool(r.min() == self.first_r and r.max() == self.first_r)
            if self.const_g:
                self.const_g = bool(g.min() == self.first_g and g.max() == self.first_g)
            if self.rows_in_loop:
                rows = k // self.last
                self.top1_agree += int(np.count_nonzero(_row_argmax(r.reshape(rows, self.last))
                                                        == _row_argmax(g.reshape(rows, self.last))))
        if self.logits and not self.rows_in_loop:
            self._top1_by_row(fr, fg)
        return self._result()

    # ------------------------------------------------------------ chunks
    def _exact_chunk(self, r: np.ndarray, g: np.ndarray) -> None:
        if np.array_equal(r, g):
            rf = r.astype(np.float64)
            self.rr += float(np.dot(rf, rf))
            return
        self.ok = False
        self._slow_chunk(r, g)

    def _float_chunk(self, r: np.ndarray, g: np.ndarray, d: np.ndarray, t: np.ndarray, u: np.ndarray,
                     b: np.ndarray) -> None:
        np.subtract(g, r, out=d)
        rr, rd, dd = float(np.dot(r, r)), float(np.dot(r, d)), float(np.dot(d, d))
        np.abs(d, out=d)
        m = float(d.max())
        if not (math.isfinite(m) and math.isfinite(rr) and math.isfinite(rd) and math.isfinite(dd)):
            self._slow_chunk(r, g)  # NaN/Inf in either, or an overflow of the working dtype
            return
        self.rr += rr
        self.rd += rd
        self.dd += dd
        self.err_sum += float(d.sum())
        if m > self.max_abs:
            self.max_abs = m
        np.abs(r, out=t)
        if m / self.floor > self.max_rel:  # the chunk may hold a larger relative error
            rel = np.maximum(t, self.floor, out=u)
            np.divide(d, rel, out=rel)
            mr = float(rel.max())
            if not math.isfinite(mr):  # float32 overflow of err / floor: redo in float64
                mr = float((d.astype(np.float64) / np.maximum(np.abs(r.astype(np.float64)), self.floor)).max())
            if mr > self.max_rel:
                self.max_rel = mr
        if self.ok and m > self.atol_safe:
            certain = False
            if self.margin_ok:
                np.multiply(t, self.rtol_w, out=t)
                np.add(t, self.atol_w, out=t)
                certain = bool(np.less_equal(d, t, out=b).all())
            if not certain:
                r64, g64 = r.astype(np.float64), g.astype(np.float64)
                self.ok = bool((np.abs(g64 - r64) <= self.tol.atol + self.tol.rtol * np.abs(r64)).all())

    def _slow_chunk(self, r: np.ndarray, g: np.ndarray) -> None:
        """Exact float64 statistics of a chunk with NaN/Inf (or an overflow in the working dtype)."""
        atol, rtol = self.tol.atol, self.tol.rtol
        r64, g64 = r.astype(np.float64), g.astype(np.float64)
        rn, gn = np.isnan(r64), np.isnan(g64)
        ri, gi = np.isinf(r64), np.isinf(g64)
        rfin, gfin = ~(rn | ri), ~(gn | gi)
        self.ref_nan += int(rn.sum())
        self.ref_inf += int(ri.sum())
        self.got_nan += int(gn.sum())
        self.got_inf += int(gi.sum())
        self.new_nan += int((gn & ~rn).sum())
        self.new_inf += int((gi & (g64 != r64)).sum())
        self.lost += int((~rfin & gfin).sum())
        equal = (rn & gn) | (ri & (r64 == g64))
        err = np.abs(g64 - r64)
        err[equal] = 0.0
        err[np.isnan(err)] = np.inf
        rel = np.where(err == 0, 0.0, err / np.maximum(np.abs(r64), self.floor))
        rel[np.isinf(err)] = np.inf
        if self.ok and not self.exact:
            self.ok = bool((err <= atol + rtol * np.abs(np.where(rfin, r64, 0.0))).all())
        both = rfin & gfin
        rf, gf = r64[both], g64[both]
        df = gf - rf
        self.rr += float(np.dot(rf, rf))
        self.rd += float(np.dot(rf, df))
        self.dd += float(np.dot(df, df))
        self.max_abs = max(self.max_abs, float(err.max()))
        self.max_rel = max(self.max_rel, float(rel.max()))
        self.err_sum += float(err.sum())

    def _top1_by_row(self, fr, fg) -> None:
        """Top-1 agreement of rows too long to keep whole in a chunk: one row at a time (argmax allocates nothing)."""
        last = self.last
        for start in range(0, self.n, last):
            r = fr[start:start + last] if fr is not None else self.ref.flat[start:start + last]
            g = fg[start:start + last] if fg is not None else self.got.flat[start:start + last]
            self.top1_agree += int(r.argmax() == g.argmax())

    # ------------------------------------------------------------ verdict
    def _result(self) -> TensorDiff:
        tol, n = self.tol, self.n
        rr, rd, dd = self.rr, self.rd, self.dd
        gg = rr + 2 * rd + dd
        constant = n > 1 and self.const_r
        if constant or rr <= 0:
            cosine = math.nan if (constant or gg <= 0) else 0.0
        elif gg <= 0:
            cosine = 0.0
        elif dd == 0:
            cosine = 1.0
        else:
            x = max(0.0, rr * dd - rd * rd) / (rr * gg)  # 1 - cos^2, without cancellation near cos = 1
            cosine = math.copysign(math.sqrt(max(0.0, 1 - x)), rr + rd) if x < 0.5 else (rr + rd) / math.sqrt(rr * gg)
            cosine = max(-1.0, min(1.0, cosine))
        rel_l2 = math.sqrt(dd / rr) if rr > 0 else (0.0 if dd == 0 and not constant else math.nan)
        top1 = self.top1_agree / (n // self.last) if self.logits else None
        mismatched_nonfinite = self.new_nan + self.new_inf + self.lost
        flags: list[str] = []
        if constant:
            flags.append(f"reference output is constant (all {float(self.first_r):g}): agreement says nothing")
        elif n > 1 and self.const_g and not self.exact:
            flags.append(f"candidate output is constant (all {float(self.first_g):g}) where the reference varies")
        if self.new_nan:
            flags.append(f"candidate has {self.new_nan} NaN where the reference has none")
        if self.new_inf:
            flags.append(f"candidate has {self.new_inf} Inf where the reference has none")
        if self.lost:
            flags.append(f"candidate is finite at {self.lost} positions where the reference has NaN/Inf")
        if self.ref_nan or self.ref_inf:
            what = " and ".join(f"{c} {w}" for c, w in ((self.ref_nan, "NaN"), (self.ref_inf, "Inf")) if c)
            flags.append(f"reference output has {what} itself")
        by_metrics = tol.uses_metrics and not constant and not self.exact
        metric = tol.metric_for(top1=self.logits) if by_metrics else (
            "exact equality" if self.exact else Tolerance(atol=tol.atol, rtol=tol.rtol).metric_name)
        passed = self.ok
        if by_metrics and not self.ok and not mismatched_nonfinite:
            reasons = []
            if tol.min_cosine is not None and not cosine >= tol.min_cosine:
                reasons.append(f"cosine {cosine:.5f} < {_num(tol.min_cosine)}")
            if tol.max_rel_l2 is not None and not rel_l2 <= tol.max_rel_l2:
                reasons.append(f"rel L2 {rel_l2:.3g} > {_num(tol.max_rel_l2)}")
            if tol.min_top1 is not None and top1 is not None and not top1 >= tol.min_top1:
                reasons.append(f"top-1 agreement {top1:.3f} < {_num(tol.min_top1)}")
            passed = not reasons
            flags.extend(reasons)
        note = "" if self.ref.dtype == self.got.dtype else f"dtype {self.got.dtype} != reference {self.ref.dtype}"
        return TensorDiff(self.name, tuple(self.ref.shape), str(self.got.dtype), self.max_abs, self.max_rel,
                          self.err_sum / n, cosine, passed, note, rel_l2=rel_l2, top1=top1,
                          nonfinite_ref=self.ref_nan + self.ref_inf, nonfinite_got=self.got_nan + self.got_inf,
                          constant=constant, metric=metric, flags=flags)


def compare_outputs(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    label: str = "",
    names: Mapping[str, str] | None = None,
    tolerance: Tolerance | None = None,
) -> Comparison:
    """Compare candidate outputs to reference outputs by name (``names`` maps reference -> candidate names).

    ``tolerance`` is the policy (default: fp32 with :data:`DEFAULT_ATOL`/:data:`DEFAULT_RTOL`); ``atol``/``rtol``
    alone build an fp32 one, and given with ``tolerance`` override its. A ``per_output`` key that names no
    reference output raises :class:`~onnxdeploy.errors.UserInputError` naming the closest.
    """
    tol = resolve_tolerance(tolerance, atol, rtol)
    tol.check_names(reference)
    diffs, missing = [], []
    for name, ref in reference.items():
        other = (names or {}).get(name, name)
        if other not in candidate:
            missing.append(name)
            continue
        diffs.append(diff_tensor(name, ref, candidate[other], tolerance=tol.for_output(name)))
    return Comparison(diffs, tol.atol, tol.rtol, label, missing, tol)
