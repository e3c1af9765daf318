"""``--precision auto``: the fastest artefact that meets an accuracy budget, chosen by measurement.

:func:`choose_precision` builds the model's artefact at every precision each target builds here
(:attr:`onnxdeploy.targets.base.Target.precisions`; ``target="auto"`` iterates the target registry, so an engine added
there joins by itself, and skips the ones not available here with the reason), through
:func:`onnxdeploy.targets.convert` (each artefact verified with its precision's metric). It then judges every
candidate on held-out inputs against onnxruntime fp32 with :class:`onnxdeploy._verify.Verifier` and the budget
(``min_cosine``, ``max_top1_drop``), times the ones within it together with bench's one interleaved timer
(:func:`onnxdeploy._bench.time_interleaved`, onnxruntime fp32 first as the baseline), and keeps the fastest.

Inputs: calibration samples (int8 builds) and held-out samples (accuracy) are disjoint: real ones split from
``calibration`` (a :func:`onnxdeploy._calibration.load_calibration` spec) unless ``held_out`` is given, otherwise
seeded synthesized inputs with different seeds.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from onnxdeploy.errors import OnnxDeployError, UserInputError

AUTO = "auto"
DEFAULT_MIN_COSINE = 0.999
SYNTHESIZED_SAMPLES = 8
CALIBRATION_SEED = 1000  # synthesized calibration samples use seeds from here; held-out ones from the given seed

Feeds = Mapping[str, np.ndarray]


# ---------------------------------------------------------------- budget


def parse_top1_drop(value: str | float | None) -> float | None:
    """``"0.5%"`` -> 0.005, ``0.005`` -> 0.005; None stays None."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        drop = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError as err:
        raise UserInputError(f"--max-top1-drop {value!r}: expected a percentage such as 0.5% or a fraction such as "
                             "0.005") from err
    if not 0 <= drop < 1:
        raise UserInputError(f"--max-top1-drop {value!r}: must be between 0% and 100%")
    return drop


@dataclass
class Budget:
    """How far a candidate may drift from onnxruntime fp32 on the held-out inputs: cosine of every output at least
    ``min_cosine``, and (logits-like outputs) top-1 agreement at least ``1 - max_top1_drop``."""

    min_cosine: float = DEFAULT_MIN_COSINE
    max_top1_drop: float | None = None

    def __post_init__(self) -> None:
        if not 0 < float(self.min_cosine) <= 1:
            raise UserInputError(f"--min-cosine {self.min_cosine}: must be in (0, 1]", hint="e.g. --min-cosine 0.999")
        self.min_cosine = float(self.min_cosine)
        self.max_top1_drop = parse_top1_drop(self.max_top1_drop)

    def tolerance(self, precision: str):
        """The :class:`~onnxdeploy._numerics.Tolerance` a ``precision`` candidate is judged with: its precision's
        metric with the budget's thresholds. Cosine is scale-blind, so relative L2 stays bounded too, at the looser of
        the precision's default and what the cosine budget implies (sqrt(2 (1 - cosine)) x 1.5); top-1 agreement
        counts only when the budget names it (an argmax over hidden states means nothing)."""
        import math

        from onnxdeploy._numerics import Tolerance

        default = Tolerance(precision=precision)
        rel_l2 = max(default.max_rel_l2 or 0.0, 1.5 * math.sqrt(2 * (1 - self.min_cosine)))
        if self.max_top1_drop is None:
            # metrics without top-1: a Tolerance of precision "fp32" has no metric defaults, so no copy of it (the
            # verifier takes one per output) fills in int8's default top-1 0.9 again
            return Tolerance(min_cosine=self.min_cosine, max_rel_l2=rel_l2 or None)
        return Tolerance(precision=precision, min_cosine=self.min_cosine, max_rel_l2=rel_l2 or None,
                         min_top1=1.0 - self.max_top1_drop)

    def describe(self) -> str:
        top1 = "" if self.max_top1_drop is None else f", top-1 agreement >= {100 * (1 - self.max_top1_drop):.4g}%"
        return f"cosine >= {self.min_cosine:g}{top1}"

    def to_dict(self) -> dict:
        return {"min_cosine": self.min_cosine, "max_top1_drop": self.max_top1_drop, "text": self.describe()}


# ---------------------------------------------------------------- results


@dataclass
class Candidate:
    """One artefact: target x precision, how it was built, its accuracy on the held-out inputs and its latency.

    ``status``: ``ok`` (within the budget, timed), ``rejected`` (outside the budget), ``failed`` (did not build or
    run), ``skipped`` (the target or precision is not available here). ``runner`` (feeds -> outputs) may be given
    directly (tests inject candidates that way); otherwise it is loaded from ``path`` on ``target``'s engine."""

    target: str
    precision: str
    status: str = "pending"
    reason: str = ""
    path: str | None = None
    files: list[str] = field(default_factory=list)
    size_bytes: int = 0
    build_seconds: float = 0.0
    build_check: str = ""  # the artefact's own verification (targets.convert), one line
    accuracy: Any = None  # onnxdeploy._verify.Verification on the held-out inputs
    p50_ms: float | None = None
    p90_ms: float | None = None
    runs: int = 0
    speedup: float | None = None  # baseline p50 / this p50 (interleaved, per block)
    achieved_gflops: float | None = None
    peak_gflops: float | None = None
    notes: list[str] = field(default_factory=list)
    runner: Callable[[Feeds], Mapping[str, np.ndarray]] | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.target} {self.precision}"

    @property
    def cosine(self) -> float | None:
        comps = getattr(self.accuracy, "comparisons", None) or []
        return min((c.min_cosine for c in comps if c.min_cosine is not None), default=None)

    @property
    def top1(self) -> float | None:
        comps = getattr(self.accuracy, "comparisons", None) or []
        return min((c.min_top1 for c in comps if c.min_top1 is not None), default=None)

    @property
    def fraction_of_peak(self) -> float | None:
        if self.achieved_gflops is None or not self.peak_gflops:
            return None
        return self.achieved_gflops / self.peak_gflops

    def to_dict(self) -> dict:
        return {
            "target": self.target, "precision": self.precision, "label": self.label, "status": self.status,
            "reason": self.reason, "path": self.path, "files": self.files, "size_bytes": self.size_bytes,
            "build_seconds": round(self.build_seconds, 3), "build_check": self.build_check,
            "cosine": self.cosine, "top1": self.top1, "p50_ms": self.p50_ms, "p90_ms": self.p90_ms,
            "runs": self.runs, "speedup": self.speedup, "achieved_gflops": self.achieved_gflops,
            "peak_gflops": self.peak_gflops, "fraction_of_peak": self.fraction_of_peak, "notes": self.notes,
            "accuracy": self.accuracy.to_dict() if self.accuracy is not None else None,
        }


@dataclass
class PrecisionChoice:
    """Every candidate (precision x latency x accuracy x size), the winner and why it won."""

    model: str
    budget: Budget
    candidates: list[Candidate]
    winner: Candidate | None = None
    why: str = ""
    baseline_ms: float | None = None
    held_out: int = 0
    held_out_source: str = ""
    calibration: int = 0
    calibration_source: str = ""
    threads: int | None = 1
    flops: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "model": self.model, "budget": self.budget.to_dict(),
            "winner": self.winner.label if self.winner else None,
            "winner_path": self.winner.path if self.winner else None, "why": self.why,
            "baseline": "onnxruntime fp32", "baseline_ms": self.baseline_ms, "held_out": self.held_out,
            "held_out_source": self.held_out_source, "calibration": self.calibration,
            "calibration_source": self.calibration_source, "threads": self.threads, "flops": self.flops,
            "seconds": round(self.seconds, 3), "candidates": [c.to_dict() for c in self.candidates],
        }

    def rows(self) -> list[list[str]]:
        """The table the CLI prints: one row per candidate."""
        out = []
        for c in self.candidates:
            mark = "<- chosen" if c is self.winner else ""
            out.append([c.label, c.status, _num(c.p50_ms, ".3f"), _num(c.speedup and 1 / c.speedup, ".2f", "x"),
                        _num(c.cosine, ".6f"), _num(c.top1 and 100 * c.top1, ".1f", "%"), _size(c.size_bytes),
                        _num(c.fraction_of_peak and 100 * c.fraction_of_peak, ".1f", "%"),
                        mark or c.reason])
        return out


ROW_HEADERS = ["candidate", "status", "p50 ms", "vs ort fp32", "cosine", "top-1", "size", "of peak", "note"]


def _num(x, spec: str, unit: str = "") -> str:
    return "" if x is None else format(x, spec) + unit


def _size(n: int) -> str:
    return "" if not n else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


# ---------------------------------------------------------------- plan


def plan_candidates(targets: str | Sequence[str], precision: str = AUTO) -> list[Candidate]:
    """One :class:`Candidate` per (target, precision) to build; unavailable ones come back ``skipped`` with the
    reason. ``targets="auto"`` is every target of the registry (``targets.base.TARGET_NAMES``)."""
    from onnxdeploy.targets.base import TARGET_NAMES, get_target, normalize_precision

    precision = normalize_precision(precision)
    names = list(TARGET_NAMES) if targets == AUTO else [targets] if isinstance(targets, str) else list(targets)
    out: list[Candidate] = []
    for name in names:
        try:
            t = get_target(name)
        except (OnnxDeployError, ImportError, AttributeError) as err:
            if targets == AUTO:  # a registry line whose module cannot be imported here: skip it, say why
                out.append(Candidate(name, precision, "skipped", f"target {name} cannot be loaded here: "
                                     f"{getattr(err, 'message', None) or err}"))
                continue
            raise
        ok, why = _usable(t)
        wanted = list(t.precisions) if precision == AUTO else [precision]
        if not ok:
            out.append(Candidate(t.name, "/".join(wanted), "skipped", why))
            continue
        for p in wanted:
            if p in t.precisions:
                out.append(Candidate(t.name, p))
            else:
                out.append(Candidate(t.name, p, "skipped", f"{t.name} builds {', '.join(t.precisions)} here"))
    if not any(c.status == "pending" for c in out):
        reasons = "; ".join(f"{c.label}: {c.reason}" for c in out)
        raise UserInputError(f"no candidate can be built here ({reasons})",
                             hint="install an engine (`onnxdeploy doctor` lists them) or choose another --target")
    return out


def _usable(t) -> tuple[bool, str]:
    try:
        ok, why = t.available()
    except Exception as err:  # noqa: BLE001 - an engine whose import fails is unavailable, not fatal
        return False, f"{type(err).__name__}: {err}"
    if ok and t.name == "ascend":
        return False, "its artefact cannot run here (no CANN), so it cannot be measured"
    if ok and not getattr(t, "converts_onnx", True):
        return False, (f"{t.name} builds from the PyTorch module, not from ONNX: "
                       f"`onnxdeploy deploy pkg.mod:factory --target {t.name} --precision ...`")
    return ok, why


# ---------------------------------------------------------------- samples


@dataclass
class Samples:
    calibration: list[dict]
    held_out: list[dict]
    calibration_source: str
    held_out_source: str


def split_samples(model, *, calibration=None, held_out=None, dims: Mapping[str, int] | None = None, seed: int = 0,
                  held_out_count: int | None = None) -> Samples:
    """Calibration and held-out samples, disjoint: ``held_out`` as given (feed dicts or a calibration spec);
    else split from ``calibration`` (a quarter held out, at most 64); else synthesized with different seeds."""
    from onnxdeploy._calibration import load_calibration, split_holdout
    from onnxdeploy._run import synthesize_inputs

    def synth(n, first):
        return [synthesize_inputs(model, dims=dims, seed=first + i) for i in range(n)]

    calib = list(load_calibration(calibration, model)) if calibration is not None else None
    calib_src = f"{len(calib)} given samples" if calib is not None else ""
    if held_out is not None:
        held = [dict(s) for s in held_out] if isinstance(held_out, (list, tuple)) else \
            list(load_calibration(held_out, model))
        held_src = f"{len(held)} given held-out samples"
    elif calib is not None and len(calib) >= 2:
        count = held_out_count or min(64, max(1, len(calib) // 4))
        calib, held = split_holdout(calib, count if count < len(calib) else 0.25)
        held_src = f"{len(held)} of the given samples, held out of calibration"
        calib_src = f"the other {len(calib)} given samples"
    else:
        held = synth(held_out_count or SYNTHESIZED_SAMPLES, seed)
        held_src = f"{len(held)} synthesized samples (seeds {seed}..{seed + len(held) - 1})"
    if calib is None or not calib:
        calib = synth(SYNTHESIZED_SAMPLES, CALIBRATION_SEED + seed)
        calib_src = (f"{len(calib)} synthesized samples (seeds {CALIBRATION_SEED + seed}..); pass --calibration for "
                     "real ones")
    return Samples(calib, held, calib_src, held_src)


# ---------------------------------------------------------------- build, judge, time


def build(model_path: Path, cand: Candidate, out_dir: Path, samples: Samples, *, dims=None, seed: int = 0,
          budget: Budget | None = None) -> None:
    """Build ``cand``'s artefact through :func:`onnxdeploy.targets.convert` (verified with its precision's metric at
    the budget's thresholds on the first held-out sample, interface included) and load its runner; a failure marks
    it ``failed``/``rejected`` with the reason."""
    from onnxdeploy.errors import OutputsDisagree
    from onnxdeploy.targets import convert, get_target

    t = get_target(cand.target)
    output = out_dir / f"{t.name}-{cand.precision}{t.suffix}"
    start = time.perf_counter()
    try:
        rep = convert(str(model_path), t, output, precision=cand.precision, calibration=samples.calibration,
                      inputs=samples.held_out[0], dims=dims, seed=seed,
                      tolerance=(budget or Budget()).tolerance(cand.precision))
        cand.path, cand.files = rep.output, list(rep.files)
        cand.size_bytes = sum(Path(f).stat().st_size for f in rep.files if Path(f).exists())
        cand.build_check = rep.parity.summary() if rep.parity is not None else "the ONNX model itself"
        cand.notes += list(rep.notes)
        cand.runner = t.runner(Path(rep.output), threads=None)
    except OutputsDisagree as err:
        cand.status, cand.reason = "rejected", f"its own check failed: {err.message}"
    except Exception as err:  # noqa: BLE001 - one candidate failing never stops the others
        cand.status, cand.reason = "failed", (getattr(err, "message", None) or f"{type(err).__name__}: {err}")
        cand.reason = str(cand.reason).splitlines()[0][:300]
    cand.build_seconds = time.perf_counter() - start


def stacked_runner(run: Callable[[Feeds], Mapping[str, np.ndarray]]) -> Callable[[Feeds], dict]:
    """``run`` over a stack of samples (axis 0 = the sample), outputs stacked the same way: N held-out samples are
    judged as one input set, so cosine covers them all and top-1 agreement counts per sample."""
    def go(feeds: Feeds) -> dict:
        n = len(next(iter(feeds.values())))
        outs = [dict(run({k: v[i] for k, v in feeds.items()})) for i in range(n)]
        return {k: np.stack([np.asarray(o[k]) for o in outs]) for k in outs[0]}

    return go


def held_out_verifier(model_path: Path, held_out: Sequence[Feeds], *, threads: int | None = None):
    """A :class:`~onnxdeploy._verify.Verifier` of onnxruntime fp32 over the stacked held-out samples (the largest
    group of one shape), reused for every candidate; returns (verifier, samples used)."""
    import onnx
    from onnx import helper

    from onnxdeploy._verify import Inputs, Verifier
    from onnxdeploy.targets.onnxruntime import OnnxRuntimeTarget

    groups: dict[tuple, list] = {}
    for s in held_out:
        groups.setdefault(tuple((k, v.shape, str(v.dtype)) for k, v in sorted(s.items())), []).append(s)
    used = max(groups.values(), key=len)
    stacked = {k: np.stack([np.asarray(s[k]) for s in used]) for k in used[0]}
    header = onnx.ModelProto(ir_version=8, opset_import=[helper.make_opsetid("", 17)],
                             graph=helper.make_graph([], "held-out", [
                                 helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype),
                                                               ["samples", *v.shape[1:]])
                                 for k, v in stacked.items()], []))
    ref = stacked_runner(OnnxRuntimeTarget().runner(model_path, threads=threads))
    verifier = Verifier(ref, Inputs(arrays=stacked), specs_from=header, interface="ignore",
                        reference_name="onnxruntime fp32")
    return verifier, len(used)


def judge(cand: Candidate, verifier, budget: Budget) -> None:
    """Judge ``cand`` on the held-out inputs with the budget; outside it -> ``rejected`` with the figure."""
    verifier.tolerance = budget.tolerance(cand.precision)
    cand.accuracy = verifier.check(None, runner=stacked_runner(cand.runner), label=f"{cand.label} on held-out")
    if cand.accuracy.passed:
        cand.status = "ok"
        return
    cand.status = "rejected"
    cos, top1 = cand.cosine, cand.top1
    if cos is not None and cos < budget.min_cosine:
        cand.reason = f"cosine {cos:.6f} < {budget.min_cosine:g}"
    elif top1 is not None and budget.max_top1_drop is not None and top1 < 1 - budget.max_top1_drop:
        cand.reason = f"top-1 agreement {100 * top1:.2f}% < {100 * (1 - budget.max_top1_drop):.4g}%"
    else:
        cand.reason = (cand.accuracy.failures() or ["outside the budget"])[0][:300]


# onnxruntime's intra-op threads keep spinning for a while after a run, and the runner that follows pays for it even
# after time_interleaved's one settling run when its runs are short: OpenVINO int8 ResNet-50 right after onnxruntime
# fp32 (2 threads, loaded 2-core machine) 27.7-32 ms vs 16-20 ms for the same compiled model in later turns, 20.5 ms
# after an idle turn of 50 ms. So an idle runner (its timings discarded) follows every onnxruntime-family runner.
SPIN_DOWN_S = 0.05
SPINNING_ENGINES = ("onnxruntime", "ort-mobile")


def measure(cands: Sequence[Candidate], reference, feeds: Feeds, *, seconds: float = 1.0, warmup: int = 3,
            baseline: Candidate | None = None) -> float:
    """Time ``reference`` (a runner) and every candidate's runner together with bench's one interleaved timer; fills p50/p90,
    runs and the speedup over the baseline (and the ``baseline`` candidate's figures when it is one); returns the
    baseline's p50 (ms). An idle turn of :data:`SPIN_DOWN_S` follows the reference and every onnxruntime candidate
    (see there), so no candidate is timed while onnxruntime's threads still spin."""
    from onnxdeploy._bench import latency_stats, ratio_of, time_interleaved

    feeds = dict(feeds)
    runners, where = [], []  # where[i]: the index in `runners` of the reference (0) and of candidate i (1..)
    for run, engine in [(reference, "onnxruntime"), *((c.runner, c.target) for c in cands)]:
        where.append(len(runners))
        runners.append(lambda r=run: r(feeds))
        if engine in SPINNING_ENGINES:
            runners.append(lambda: time.sleep(SPIN_DOWN_S))
    timings = time_interleaved(runners, warmup=warmup, duration=seconds)
    while len(timings.blocks) < 5:  # enough blocks for a ratio
        timings.blocks += time_interleaved(runners, warmup=0, iterations=3).blocks
    for i, c in enumerate(cands, start=1):
        stats = latency_stats(c.label, None, timings.runs(where[i]))
        c.p50_ms, c.p90_ms, c.runs = stats.p50, stats.p90, stats.iterations
        c.speedup = ratio_of(timings, 0, where[i]).speedup
    stats = latency_stats("baseline", None, timings.runs(0))
    if baseline is not None:
        baseline.p50_ms, baseline.p90_ms, baseline.runs, baseline.speedup = stats.p50, stats.p90, stats.iterations, 1.0
    return stats.p50


def pick(cands: Sequence[Candidate], budget: Budget, baseline_ms: float | None) -> tuple[Candidate | None, str]:
    """The fastest candidate within the budget (by p50), and why it won in one sentence."""
    ok = [c for c in cands if c.status == "ok" and c.p50_ms is not None]
    if not ok:
        return None, f"no candidate meets the budget ({budget.describe()})"
    best = min(ok, key=lambda c: c.p50_ms)
    ratio = f", {best.p50_ms / baseline_ms:.2f}x onnxruntime fp32's {baseline_ms:.3f} ms" if baseline_ms else ""
    faster = [c for c in cands if c.status == "rejected" and c.p50_ms is not None and c.p50_ms < best.p50_ms]
    why = (f"{best.label} is the fastest of {len(ok)} candidate(s) within the budget ({budget.describe()}): p50 "
           f"{best.p50_ms:.3f} ms{ratio}, cosine {_num(best.cosine, '.6f') or 'n/a'}")
    if len(ok) > 1:
        second = sorted(ok, key=lambda c: c.p50_ms)[1]
        why += f"; next: {second.label} at {second.p50_ms:.3f} ms"
    rejected = [c for c in cands if c.status == "rejected"]
    if rejected:
        why += "; outside the budget: " + ", ".join(f"{c.label} ({c.reason})" for c in rejected)
    if faster:
        why += " (" + ", ".join(c.label for c in faster) + " would have been faster)"
    return best, why


def attach_peak(cand: Candidate, flops: int | None, threads: int | None) -> None:
    """Achieved GFLOP/s of ``cand`` (the model's FLOPs per run / p50) and the machine's peak for its precision,
    scaled to the threads used."""
    if not flops or not cand.p50_ms:
        return
    cand.achieved_gflops = flops / (cand.p50_ms / 1000.0) / 1e9
    try:
        from onnxdeploy._machine import peak_flops, read_cpu

        cpu = read_cpu()
        peak, _ = peak_flops(cand.precision, cpu)
        cores = max(1, int(getattr(cpu, "peak_cores", 1) or 1))
    except Exception:  # noqa: BLE001 - no peak known for this CPU: the fraction is left out
        return
    if peak:
        cand.peak_gflops = peak / 1e9 * min(cores, threads or cores) / cores


def model_flops(model_path: Path, feeds: Feeds) -> int | None:
    """FLOPs of one run at the shapes of ``feeds`` (:func:`onnxdeploy._inspect.inspect`)."""
    try:
        from onnxdeploy._inspect import inspect
        from onnxdeploy._run import input_specs

        dims = {}
        for spec in input_specs(str(model_path)):
            for d, n in zip(spec.shape or [], np.shape(feeds.get(spec.name, ()))):
                if isinstance(d, str):
                    dims[d] = int(n)
        return int(inspect(str(model_path), dims=dims).flops) or None
    except Exception:  # noqa: BLE001 - FLOPs are garnish
        return None


# ---------------------------------------------------------------- driver


def choose_precision(
    model,
    *,
    target: str | Sequence[str] = "onnxruntime",
    precision: str = AUTO,
    output_dir: str | os.PathLike = "precision-out",
    calibration=None,
    held_out=None,
    held_out_count: int | None = None,
    min_cosine: float = DEFAULT_MIN_COSINE,
    max_top1_drop: str | float | None = None,
    dims: Mapping[str, int] | None = None,
    threads: int | None = 1,
    bench_seconds: float = 1.0,
    seed: int = 0,
    extra_candidates: Sequence[Candidate] = (),
    on_progress: Callable[[str], None] | None = None,
) -> PrecisionChoice:
    """Build ``model`` (an .onnx path, ModelProto or ir.Model) for ``target`` (a name, a list, or ``"auto"``: every
    installed engine) at ``precision`` (``"auto"``: every precision each builds here), judge each candidate on
    held-out inputs with the budget (``min_cosine``; ``max_top1_drop`` as ``"0.5%"`` or 0.005), time the ones within
    it interleaved against onnxruntime fp32 (``threads`` each; None: the engine's default) and keep the fastest.

    Artefacts go to ``output_dir`` (one file set per candidate). ``extra_candidates`` (with ``runner`` set) join the
    judging and timing as they are. Returns a :class:`PrecisionChoice`; raises nothing for a candidate that fails
    (it is listed with the reason), :class:`UserInputError` when no candidate can be built here."""
    from onnxdeploy import _io as io

    started = time.perf_counter()
    say = on_progress or (lambda _msg: None)
    budget = Budget(min_cosine, max_top1_drop)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, (str, os.PathLike)):
        model_path, label = Path(model), str(model)
        io.as_proto(model_path)  # a clear error for a bad file, before any engine sees it
    else:
        model_path, label = out / "source.onnx", type(model).__name__
        io.save(io.as_model(model), model_path)
    cands = plan_candidates(target, precision)
    samples = split_samples(str(model_path), calibration=calibration, held_out=held_out, dims=dims, seed=seed,
                            held_out_count=held_out_count)
    for c in cands:
        if c.status == "pending":
            say(f"building {c.label}")
            build(model_path, c, out, samples, dims=dims, seed=seed, budget=budget)
    verifier, used = held_out_verifier(model_path, samples.held_out, threads=threads)
    extra = list(extra_candidates)
    for c in [*cands, *extra]:
        if c.runner is not None and c.status in ("pending", "ok"):
            say(f"judging {c.label} on {used} held-out samples")
            judge(c, verifier, budget)
    timed = [c for c in [*cands, *extra] if c.status == "ok"]
    choice = PrecisionChoice(label, budget, [*cands, *extra], held_out=used, held_out_source=samples.held_out_source,
                             calibration=len(samples.calibration), calibration_source=samples.calibration_source,
                             threads=threads)
    if timed:
        say(f"timing {len(timed)} candidate(s) interleaved")
        _reload_runners(timed, threads)
        from onnxdeploy.targets.onnxruntime import OnnxRuntimeTarget

        same = next((c for c in timed if c.target == "onnxruntime" and c.precision == "fp32" and c.path), None)
        baseline = same.runner if same else OnnxRuntimeTarget().runner(model_path, threads=threads)
        others = [c for c in timed if c is not same]  # onnxruntime fp32 itself is the baseline, timed once
        choice.baseline_ms = measure(others, baseline, samples.held_out[0], seconds=bench_seconds, baseline=same)
        choice.flops = model_flops(model_path, samples.held_out[0])
        for c in timed:
            attach_peak(c, choice.flops, threads)
    choice.winner, choice.why = pick(choice.candidates, budget, choice.baseline_ms)
    choice.seconds = time.perf_counter() - started
    return choice


def deploy_choice(ctx, res):
    """The deploy pipeline's convert step with ``--precision auto`` / ``--target auto``: :func:`choose_precision` on
    the current model (held out: the inputs the user gave, if any), the winner becomes the artefact. ``ctx`` is the
    :class:`onnxdeploy._deploy.DeployContext`, ``res`` the step's empty result, filled and returned."""
    opts = ctx.precision_options
    given = ctx.given
    held_out = [given.feeds(str(ctx.current))] if given is not None and given.given else None
    budget = {k: opts[k] for k in ("min_cosine", "max_top1_drop") if opts.get(k) is not None}
    choice = choose_precision(str(ctx.current), target=opts.get("targets") or ctx.target.name,
                              precision=ctx.precision, output_dir=ctx.out / "05-candidates",
                              calibration=opts.get("calibration"), held_out=held_out, dims=ctx.bench_dims or None,
                              threads=1, bench_seconds=ctx.bench_seconds, seed=ctx.seed, **budget)
    res.details = {"precision_choice": choice.to_dict()}
    res.message = choice.why
    winner = choice.winner
    if winner is None:
        res.status = "failed"
        res.details["hint"] = "loosen --min-cosine / --max-top1-drop, or give real --calibration data"
        return res
    res.artifact = winner.path
    res.verification = winner.accuracy
    ctx.artifact = ctx.report.final_artifact = winner.path
    if winner.path != str(ctx.current):
        ctx.candidates.append((f"{winner.label} (chosen)", winner.path, winner.target))
    return res


def _reload_runners(cands: Sequence[Candidate], threads: int | None) -> None:
    """The runners that time: built candidates reloaded with ``threads`` (judging used the engine's default)."""
    from onnxdeploy.targets import get_target

    for c in cands:
        if c.path is not None:
            c.runner = get_target(c.target).runner(Path(c.path), threads=threads)


__all__ = ["AUTO", "deploy_choice", "Budget", "Candidate", "PrecisionChoice", "ROW_HEADERS", "choose_precision", "parse_top1_drop",
           "plan_candidates", "split_samples"]
