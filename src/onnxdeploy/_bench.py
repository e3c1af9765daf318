"""Benchmark models on onnxruntime: latency percentiles and throughput, several models interleaved, op profiles.

Models are timed in turns (blocks of runs of each in turn) so that a noisy machine slows them all alike and the ratios
stay meaningful; :func:`time_interleaved` is the package's one latency timer, and :func:`measure_ratio` (used by
``quantize``) times two models with it until their ratio is stable. ``profile=True`` runs a separate profiling session per model (its overhead never pollutes the
timings) and sums onnxruntime's per-node kernel times by op type; :func:`profile_svg` draws them as a bar chart.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from onnxdeploy.errors import UserInputError
from onnxdeploy._io import ModelLike, as_proto

DEFAULT_ITERATIONS = 50
DEFAULT_WARMUP = 5
PROFILE_RUNS = 10


@dataclass
class LatencyStats:
    """Latency of one model at one batch size, in milliseconds."""

    model: str
    batch: int | None
    iterations: int
    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    max: float
    std: float
    throughput: float  # samples (batch items) per second, from the mean latency
    vs_first: "RatioMeasurement | None" = None  # how many times faster than the first model (same batch size)
    inputs: dict[str, str] = field(default_factory=dict)  # input name -> shape timed ("1x3x224x224")

    @property
    def speedup(self) -> float | None:
        """How many times faster than the first model (< 1: slower); None for the first model itself."""
        return self.vs_first.speedup if self.vs_first else None

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d.update(vs_first=self.vs_first.to_dict() if self.vs_first else None, speedup=self.speedup)
        return d


@dataclass
class OpTime:
    """Time spent in one op type during the profiled runs."""

    op_type: str
    ms: float  # per run
    calls: int  # kernel calls per run
    percent: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class BenchReport:
    results: list[LatencyStats]
    settings: dict
    profiles: dict[str, list[OpTime]] = field(default_factory=dict)
    svg: str | None = None
    warnings: list[str] = field(default_factory=list)

    def by_model(self) -> dict[str, list[LatencyStats]]:
        out: dict[str, list[LatencyStats]] = {}
        for r in self.results:
            out.setdefault(r.model, []).append(r)
        return out

    def to_dict(self) -> dict:
        return {
            "settings": self.settings,
            "results": [r.to_dict() for r in self.results],
            "profiles": {m: [o.to_dict() for o in ops] for m, ops in self.profiles.items()},
            "svg": self.svg,
            "warnings": self.warnings,
        }


# ---------------------------------------------------------------- statistics


def latency_stats(model: str, batch: int | None, seconds: Sequence[float]) -> LatencyStats:
    """Percentiles (linear interpolation), mean, spread and throughput of per-run times in seconds."""
    if not len(seconds):
        raise UserInputError("no timed runs", hint="give --iterations of at least 1 or a longer --duration")
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    mean = float(ms.mean())
    items = batch or 1
    return LatencyStats(
        model=model,
        batch=batch,
        iterations=int(ms.size),
        p50=p50,
        p90=p90,
        p99=p99,
        mean=mean,
        min=float(ms.min()),
        max=float(ms.max()),
        std=float(ms.std()),
        throughput=items * 1000.0 / mean if mean > 0 else float("inf"),
    )


INTERLEAVE_BLOCK = 3  # timed runs per turn when several models take turns
TARGET_SPREAD = 0.10  # a ratio is stable once its ~99% interval is within 10% of it
MIN_BLOCKS = 5
MAX_STABLE_SECONDS = 30.0  # bench of several models with neither --iterations nor --duration: budget to stabilize

clock: Callable[[], float] = time.perf_counter  # the one clock every latency here is read from (tests replace it)


@dataclass
class Timings:
    """Per-run seconds of each runner, grouped by the block (one turn of every runner) they were timed in."""

    blocks: list[list[list[float]]] = field(default_factory=list)  # blocks[k][i]: runner i's seconds in block k
    seconds: float = 0.0  # wall time of the timed blocks

    def runs(self, i: int) -> list[float]:
        return [t for block in self.blocks for t in block[i]]

    def __len__(self) -> int:  # the number of runners
        return len(self.blocks[0]) if self.blocks else 0

    def __getitem__(self, i: int) -> list[float]:
        return self.runs(i)

    def __iter__(self):
        return iter([self.runs(i) for i in range(len(self))])


@dataclass
class RatioMeasurement:
    """How many times faster model B runs than model A: the median over interleaved blocks of (A's block median /
    B's block median), with a distribution-free ~99% interval of that median (order statistics)."""

    speedup: float  # > 1: B is faster
    low: float
    high: float
    a_ms: float  # median of all A runs
    b_ms: float
    blocks: int
    runs: int  # timed runs of each model
    seconds: float
    drift: float = 0.0  # |median of the first half of the blocks - of the second half| / median: the machine changed
    target_spread: float = TARGET_SPREAD

    @property
    def spread(self) -> float:
        """Width of the interval relative to the median (0.10: the speedup is known within 10%)."""
        return (self.high - self.low) / self.speedup if self.speedup > 0 else float("inf")

    @property
    def noisy(self) -> bool:
        """The interval is wider than ``target_spread``, or the two halves of the run disagree by more (blocks are
        not independent on a loaded machine: its load comes in spells, which a narrow interval can hide)."""
        return self.spread > self.target_spread or self.drift > self.target_spread

    @property
    def slower(self) -> bool:
        """B is slower than A beyond the noise: even the interval's upper bound is below 1."""
        return self.high < 1.0

    def to_dict(self) -> dict:
        return {**self.__dict__, "spread": self.spread, "noisy": self.noisy}


def median_interval(values: Sequence[float], confidence_z: float = 2.58) -> tuple[float, float, float]:
    """Median of ``values`` and a ~99% distribution-free interval for it: the order statistics ranked
    n/2 -+ z*sqrt(n)/2 (the binomial's normal approximation; with 5 values it spans min..max). 99%, not 95%: the
    timer looks after every block and stops at the first narrow interval, which makes a 95% one too optimistic
    (simulated: 95th-percentile error 6% at 95%, 3.6% at 99%, for a 10% target)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    n = v.size
    half = confidence_z * np.sqrt(n) / 2
    lo = max(0, int(np.floor(n / 2 - half)))
    hi = min(n - 1, int(np.ceil(n / 2 + half)) - 1)
    return float(np.median(v)), float(v[lo]), float(v[hi])


def ratio_of(timings: Timings, a: int = 0, b: int = 1, *, target_spread: float = TARGET_SPREAD) -> RatioMeasurement:
    """The speedup of runner ``b`` over runner ``a`` from interleaved timings (see :class:`RatioMeasurement`)."""
    per_block = [float(np.median(blk[a]) / np.median(blk[b])) for blk in timings.blocks if blk[a] and blk[b]]
    if not per_block:
        raise UserInputError("no timed runs", hint="give --iterations of at least 1 or a longer --duration")
    mid, low, high = median_interval(per_block)
    half = len(per_block) // 2
    drift = abs(float(np.median(per_block[:half])) - float(np.median(per_block[half:]))) / mid if half >= 2 else 0.0
    return RatioMeasurement(
        speedup=mid, low=low, high=high, drift=drift,
        a_ms=float(np.median(timings.runs(a))) * 1000.0, b_ms=float(np.median(timings.runs(b))) * 1000.0,
        blocks=len(per_block), runs=len(timings.runs(b)), seconds=timings.seconds, target_spread=target_spread,
    )


@dataclass
class StopRule:
    """When :func:`time_interleaved` stops: after ``iterations`` timed runs of each runner; or once ``seconds``
    have passed; or, with ``target_spread``, once every runner's ratio to the first is known within that spread
    (``seconds`` is then the budget, after which the ratio is reported as noisy). Never before ``min_blocks``
    (one for a fixed count or duration) and never after ``max_blocks``."""

    iterations: int | None = None
    seconds: float | None = None
    target_spread: float | None = None
    min_blocks: int = 1
    max_blocks: int | None = None

    def fraction(self, timings: Timings, runs: int) -> float:
        """How far along the loop is (1.0: stop)."""
        n = len(timings.blocks)
        if n < self.min_blocks:
            return n / self.min_blocks * 0.99
        if self.max_blocks is not None and n >= self.max_blocks:
            return 1.0
        done = [runs / self.iterations] if self.iterations is not None else []
        if self.seconds is not None:
            done.append(timings.seconds / self.seconds)
        if self.target_spread is not None and len(timings) > 1:
            if not any(ratio_of(timings, 0, i, target_spread=self.target_spread).noisy for i in range(1, len(timings))):
                return 1.0
        return min(1.0, max(done, default=1.0))


def time_interleaved(
    runners: Sequence[Callable[[], object]],
    *,
    warmup: int = DEFAULT_WARMUP,
    iterations: int | None = None,
    duration: float | None = None,
    stop: StopRule | None = None,
    on_step: Callable[[float], None] | None = None,
    block: int = INTERLEAVE_BLOCK,
) -> Timings:
    """The one latency timer: time each runner in turns (blocks); ``warmup`` untimed rounds first.

    With several runners each turn is one untimed settling run then ``block`` timed runs: the previous model's
    onnxruntime threads keep spinning for a moment after its run and slow the next model's first run (BERT-base int8
    vs fp32 at 2 threads on 2 cores: 2.00x strictly alternating, 2.84x in blocks, 2.79x each timed alone;
    ``benchmarks/interleave.py``). Turns share the machine's drift, which is what interleaving is for; ratios are
    taken per block (:func:`ratio_of`). Stops after ``iterations`` timed runs per runner, or once ``duration``
    seconds have passed (at least one turn each), or by ``stop`` (e.g. once the ratios are stable); with none of
    them, :data:`DEFAULT_ITERATIONS`. ``on_step(fraction_done)`` after each block.
    """
    if iterations is not None and iterations < 1:
        raise UserInputError(f"iterations must be at least 1, got {iterations}")
    if duration is not None and duration <= 0:
        raise UserInputError(f"duration must be positive, got {duration}")
    if stop is None:
        stop = StopRule(iterations=iterations if iterations or duration else DEFAULT_ITERATIONS, seconds=duration)
    for _ in range(max(0, warmup)):
        for run in runners:
            run()
    several = len(runners) > 1
    per_turn = max(1, block) if several else 1
    timings, runs = Timings(), 0
    start = clock()
    while True:
        want = per_turn if stop.iterations is None else min(per_turn, stop.iterations - runs)
        timings.blocks.append([_time_turn(run, want, settle=several) for run in runners])
        runs += want
        timings.seconds = clock() - start
        fraction = stop.fraction(timings, runs)
        if on_step:
            on_step(fraction)
        if fraction >= 1.0:
            return timings


def _time_turn(run: Callable[[], object], count: int, *, settle: bool) -> list[float]:
    if settle:
        run()
    times = []
    for _ in range(count):
        t0 = clock()
        run()
        times.append(clock() - t0)
    return times


def timed_runner(session, feeds: Mapping[str, np.ndarray]) -> Callable[[], object]:
    """One checked run (an onnxruntime failure becomes :class:`~onnxdeploy._run.SessionError`), then a bare
    ``session.run``: what is timed is onnxruntime, not our error handling or run watchdog."""
    from onnxdeploy._run import run_session

    feeds = dict(feeds)
    run_session(session, feeds)
    return lambda: session.run(None, feeds)


def measure_ratio(
    session_a,
    session_b,
    feeds: Mapping[str, np.ndarray],
    *,
    min_blocks: int = MIN_BLOCKS,
    max_blocks: int | None = 1000,
    max_seconds: float = 10.0,
    target_spread: float = TARGET_SPREAD,
    warmup: int = DEFAULT_WARMUP,
) -> RatioMeasurement:
    """How many times faster ``session_b`` runs ``feeds`` than ``session_a``, timed in interleaved blocks until the
    ratio is known within ``target_spread`` (at least ``min_blocks``) or ``max_seconds`` run out (then ``noisy``)."""
    runners = [timed_runner(s, feeds) for s in (session_a, session_b)]
    stop = StopRule(seconds=max_seconds, target_spread=target_spread, min_blocks=min_blocks, max_blocks=max_blocks)
    return ratio_of(time_interleaved(runners, warmup=warmup, stop=stop), target_spread=target_spread)


# ---------------------------------------------------------------- inputs


def batch_dims(model: ModelLike) -> dict[str, str | int | None]:
    """The leading dim of each input (a symbolic name, a fixed size, or None when unknown)."""
    from onnxdeploy._run import input_specs

    return {s.name: (s.shape[0] if s.shape else None) for s in input_specs(model)}


def _dims_for_batch(proto, batch: int | None, dims: Mapping[str, int], label: str) -> dict[str, int]:
    dims = dict(dims)
    if batch is None:
        return dims
    for name, d0 in batch_dims(proto).items():
        if isinstance(d0, str):
            dims[d0] = batch
        elif isinstance(d0, int) and d0 != batch:
            raise UserInputError(
                f"{label}: input {name!r} has a fixed batch dim of {d0}; cannot run batch size {batch}",
                hint="export the model with a symbolic batch dim, or leave --batch out",
            )
    return dims


# ---------------------------------------------------------------- profiling


def parse_profile(path: str | os.PathLike, *, skip_runs: int = 0) -> tuple[list[OpTime], int]:
    """Kernel time by op type from an onnxruntime profile (``*_kernel_time`` node events), sorted, longest first.

    The first ``skip_runs`` runs (warm-up) are left out. Each op type's time is the median over the counted runs
    (robust to a run disturbed by other processes). Returns the op times and the number of runs counted.
    """
    events = json.loads(Path(path).read_text())
    if isinstance(events, dict):  # some versions wrap the list
        events = events.get("traceEvents", [])
    runs = sorted(
        (float(ev.get("ts", 0)), float(ev.get("ts", 0)) + float(ev.get("dur", 0)))
        for ev in events
        if ev.get("name") == "model_run"
    )
    counted = runs[skip_runs:] if len(runs) > skip_runs else runs[-1:]
    if not counted:  # no run markers: everything is one run
        counted = [(float("-inf"), float("inf"))]
    per_run: list[dict[str, float]] = [{} for _ in counted]
    calls: dict[str, int] = {}
    starts = [r[0] for r in counted]
    for ev in events:
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        ts = float(ev.get("ts", 0))
        k = int(np.searchsorted(starts, ts, side="right")) - 1
        if k < 0 or ts > counted[k][1]:
            continue
        op = (ev.get("args") or {}).get("op_name", "?")
        per_run[k][op] = per_run[k].get(op, 0.0) + float(ev.get("dur", 0)) / 1000.0
        calls[op] = calls.get(op, 0) + 1
    n = len(counted)
    medians = {op: float(np.median([r.get(op, 0.0) for r in per_run])) for op in calls}
    grand = sum(medians.values()) or 1.0
    ops = [OpTime(op, ms, calls[op] // n, 100.0 * ms / grand) for op, ms in medians.items()]
    return sorted(ops, key=lambda o: -o.ms), n


def _profile(model, feeds, *, providers, threads, optimization_level, warmup: int, runs: int) -> list[OpTime]:
    """Profile ``runs`` steady-state runs (after ``warmup``) in a separate session; the trace file is removed."""
    from onnxdeploy._run import create_session, run_session

    session = create_session(
        model, providers=providers, threads=threads, optimization_level=optimization_level, profile=True
    )
    warmup = max(1, warmup)  # the first run of a session allocates; never count it
    for _ in range(warmup + runs):
        run_session(session, feeds)
    produced = Path(session.end_profiling())
    try:
        ops, _ = parse_profile(produced, skip_runs=warmup)
    finally:
        produced.unlink(missing_ok=True)
    return ops


def profile_svg(profiles: Mapping[str, Sequence[OpTime]], *, top: int = 12, title: str = "Time per op type") -> str:
    """A self-contained SVG horizontal bar chart of per-op-type time, one block per model."""
    from xml.sax.saxutils import escape

    width, label_w, bar_w, row_h = 760, 200, 420, 20
    palette = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2"]
    blocks = []
    y = 40
    rows_svg: list[str] = []
    for m_index, (model, ops) in enumerate(profiles.items()):
        shown = list(ops)[:top]
        rest = list(ops)[top:]
        if rest:
            shown.append(OpTime("(other)", sum(o.ms for o in rest), sum(o.calls for o in rest),
                                sum(o.percent for o in rest)))
        longest = max((o.ms for o in shown), default=0.0) or 1.0
        total = sum(o.ms for o in ops)
        rows_svg.append(
            f'<text x="10" y="{y}" font-weight="bold">{escape(model)} ({total:.2f} ms per run in kernels)</text>'
        )
        y += 10
        color = palette[m_index % len(palette)]
        for o in shown:
            w = max(1.0, bar_w * o.ms / longest)
            rows_svg.append(
                f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end">{escape(o.op_type)}</text>'
                f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{color}">'
                f"<title>{escape(o.op_type)}: {o.ms:.3f} ms, {o.calls} calls</title></rect>"
                f'<text x="{label_w + w + 6:.1f}" y="{y + 14}">{o.ms:.2f} ms ({o.percent:.1f}%)</text>'
            )
            y += row_h
        y += 24
    height = y
    blocks.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'
    )
    blocks.append(f'<rect width="{width}" height="{height}" fill="white"/>')
    blocks.append(f'<text x="10" y="20" font-size="15" font-weight="bold">{escape(title)}</text>')
    blocks.extend(rows_svg)
    blocks.append("</svg>")
    return "\n".join(blocks) + "\n"


# ---------------------------------------------------------------- the verb


def _label(model: ModelLike, index: int, used: set[str]) -> str:
    if isinstance(model, (str, os.PathLike)):
        label = Path(model).name
    else:
        label = f"model{index}"
    base, k = label, 2
    while label in used:
        label = f"{base}#{k}"
        k += 1
    used.add(label)
    return label


def bench(
    models: Sequence[ModelLike] | ModelLike,
    *,
    warmup: int = DEFAULT_WARMUP,
    iterations: int | None = None,
    duration: float | None = None,
    threads: int | None = None,
    batch_sizes: Sequence[int] | None = None,
    providers: Sequence[str] | None = None,
    optimization_level: str | None = None,
    dims: Mapping[str, int] | None = None,
    shapes: Mapping[str, Sequence] | None = None,
    inputs: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    profile: bool = False,
    profile_runs: int = PROFILE_RUNS,
    svg: str | os.PathLike | None = None,
    labels: Sequence[str] | None = None,
    on_progress: Callable[[str, float], None] | None = None,
) -> BenchReport:
    """Time one or more models on onnxruntime, interleaved, at one or more batch sizes.

    Each batch size sets every symbolic leading (batch) dim; inputs are synthesized (seeded) unless ``inputs`` are
    given, and models with the same input specs get the same arrays. ``duration`` is seconds per batch size for all
    models together. The first model is the reference of each result's ``vs_first`` (:class:`RatioMeasurement`, the
    timer :func:`measure_ratio` uses); with several models and neither ``iterations`` nor ``duration``, timing goes
    on past :data:`DEFAULT_ITERATIONS` runs until those ratios are stable (or :data:`MAX_STABLE_SECONDS`). ``profile=True`` adds per-op-type
    kernel times; ``svg`` writes them as a bar chart (atomically).
    """
    from onnxdeploy._io import atomic_write_text
    from onnxdeploy._run import create_session

    if isinstance(models, (str, os.PathLike)) or not isinstance(models, Sequence):
        models = [models]
    models = list(models)
    if not models:
        raise UserInputError("no model to benchmark", hint="give at least one .onnx file")
    if labels is not None and len(labels) != len(models):
        raise UserInputError(f"{len(labels)} labels for {len(models)} models")
    for b in batch_sizes or []:
        if b < 1:
            raise UserInputError(f"batch size must be at least 1, got {b}")
    used: set[str] = set()
    names = list(labels) if labels else [_label(m, i, used) for i, m in enumerate(models)]
    protos = [as_proto(m) for m in models]
    sessions = [
        create_session(m, providers=providers, threads=threads, optimization_level=optimization_level) for m in models
    ]
    batches: list[int | None] = list(batch_sizes) if batch_sizes else [None]

    results: list[LatencyStats] = []
    feeds_by_batch: dict[int | None, list[dict]] = {}
    stop = default_stop_rule(iterations, duration, len(models))
    for b_index, batch in enumerate(batches):
        feeds_by_batch[batch] = _batch_feeds(names, protos, batch, inputs=inputs, dims=dims, shapes=shapes, seed=seed)
        runners = [timed_runner(s, f) for s, f in zip(sessions, feeds_by_batch[batch])]

        def step(fraction: float, b_index=b_index, batch=batch) -> None:
            if on_progress:
                on_progress(f"batch {batch}" if batch else "timing", (b_index + fraction) / len(batches))

        timings = time_interleaved(runners, warmup=warmup, iterations=iterations, duration=duration, stop=stop,
                                   on_step=step)
        results.extend(_batch_stats(names, batch, timings, feeds_by_batch[batch]))

    profiles: dict[str, list[OpTime]] = {}
    svg_path = None
    if profile:
        for i, (name, model) in enumerate(zip(names, models)):
            if on_progress:
                on_progress(f"profiling {name}", 1.0)
            profiles[name] = _profile(
                model if isinstance(model, (str, os.PathLike)) else protos[i], feeds_by_batch[batches[0]][i],
                providers=providers, threads=threads, optimization_level=optimization_level,
                warmup=min(warmup, 3), runs=profile_runs,
            )
        if svg is not None:
            svg_path = str(atomic_write_text(svg, profile_svg(profiles)))
    elif svg is not None:
        raise UserInputError("an SVG chart needs profiling", hint="add --profile")

    settings = {
        "models": names,
        "warmup": warmup,
        "iterations": iterations if iterations is not None or duration is not None else DEFAULT_ITERATIONS,
        "duration": duration,
        "threads": threads,
        "batch_sizes": [b for b in batches if b is not None],
        "providers": [p for p in (providers or ["cpu"])],
        "optimization_level": optimization_level or "all",
        "interleaved": len(models) > 1,
        "until_stable": stop is not None,
    }
    if settings["until_stable"]:
        settings["iterations"] = None
    report = BenchReport(results, settings, profiles, svg_path)
    if inputs is None:
        report.warnings = _defaulted_dims(protos, dims or {}, shapes or {})
    report.warnings += [_noisy_warning(r) for r in results if r.vs_first and r.vs_first.noisy]
    return report


def _batch_feeds(names, protos, batch: int | None, *, inputs, dims, shapes, seed: int) -> list[dict]:
    """Inputs of each model at one batch size; models with the same input specs get the same arrays."""
    from onnxdeploy._run import input_specs, prepare_inputs

    feeds_list: list[dict] = []
    cache: dict[str, dict] = {}
    for name, proto in zip(names, protos):
        key = repr([s.to_dict() for s in input_specs(proto)])
        if key not in cache:
            d = _dims_for_batch(proto, batch, dims or {}, name)
            cache[key] = prepare_inputs(proto, inputs=inputs, dims=d, shapes=shapes, seed=seed)
        feeds_list.append(cache[key])
    return feeds_list


def _batch_stats(names, batch: int | None, timings: Timings, feeds_list: list[dict]) -> list[LatencyStats]:
    stats = [latency_stats(n, batch, timings.runs(i)) for i, n in enumerate(names)]
    for i, (s, f) in enumerate(zip(stats, feeds_list)):
        s.vs_first = ratio_of(timings, 0, i) if i else None
        s.inputs = {k: "x".join(map(str, getattr(v, "shape", ()))) or "scalar" for k, v in f.items()}
    return stats


def default_stop_rule(iterations: int | None, duration: float | None, models: int) -> StopRule | None:
    """Several models and neither a count nor a duration: at least the default runs, then until every ratio to
    the first is stable (or :data:`MAX_STABLE_SECONDS` ran out)."""
    if models < 2 or iterations is not None or duration is not None:
        return None
    return StopRule(seconds=MAX_STABLE_SECONDS, target_spread=TARGET_SPREAD,
                    min_blocks=-(-DEFAULT_ITERATIONS // INTERLEAVE_BLOCK))


def ratio_words(speedup: float | None) -> str:
    """A speed ratio in words, never a bare factor: 2.9 -> "2.90x faster", 0.77 -> "1.30x slower" (the time ratio
    turned around, so both read as "N times"); ``speedup`` is how many times faster than the reference."""
    if speedup is None or speedup != speedup or speedup <= 0:
        return ""
    if speedup >= 1:
        return f"{speedup:.2f}x faster"
    return f"{1 / speedup:.2f}x slower"


def noisy_note(m: RatioMeasurement) -> str:
    """Why a speed ratio is called noisy, in words."""
    drift = f", the halves of the run differ by {m.drift:.0%}" if m.drift > m.target_spread else ""
    return (f"its ~99% interval is {ratio_words(m.low)} to {ratio_words(m.high)} ({m.spread:.0%} wide{drift}, over "
            f"{m.blocks} blocks of interleaved runs; stable means within {m.target_spread:.0%})")


def _noisy_warning(r: LatencyStats) -> str:
    batch = f" at batch {r.batch}" if r.batch else ""
    return f"the speed of {r.model}{batch} relative to the first model is noisy: {noisy_note(r.vs_first)}"


def _defaulted_dims(protos, dims: Mapping[str, int], shapes: Mapping) -> list[str]:
    """Symbolic dims (other than a leading batch dim) that synthesized inputs set to their default size (tokens
    128, image sides 224, else 1) because nobody gave a value."""
    from onnxdeploy._run import default_dims, input_specs

    seen: dict[str, int] = {}
    for proto in protos:
        specs = [s for s in input_specs(proto) if s.name not in shapes]
        sizes = default_dims(specs, dims)
        for spec in specs:
            for axis, d in enumerate(spec.shape or ()):
                if isinstance(d, str) and d not in dims and axis > 0 and d not in seen:
                    seen[d] = sizes[d]
    if not seen:
        return []
    timed = ", ".join(f"{d}={n}" for d, n in seen.items())
    return [f"symbolic dim(s) timed at default sizes: {timed} (nobody gave a value); real sizes time very "
            f"differently: --dim {next(iter(seen))}=N"]
