"""Optimize a model: constant and shape folding, fusions, cleanup; verified against the original.

The pipeline is a list of named steps built on the onnxscript optimizer and rewriter, onnx-ir's common passes and
our own passes (:mod:`onnxdeploy.passes`); ``for_runtime="onnxruntime"`` adds the onnxscript rewriter's onnxruntime
fusions (attention, (Skip)LayerNormalization, GELU, bias fusions), FusedConv/FusedGemm, and onnxruntime's offline
optimizer. Outputs are compared with the original's on the same inputs (at two shapes when dims stay symbolic);
``verify_each`` checks after every step and skips a step that breaks numerics, naming it in the report.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from onnxdeploy.errors import OutputsDisagree, UserInputError
from onnxdeploy._io import ModelLike, as_model, load_mapped
from onnxdeploy._numerics import Comparison

if TYPE_CHECKING:
    import onnx_ir as ir

    from onnxdeploy._verify import Verification

logger = logging.getLogger(__name__)

LEVELS = ("basic", "extended", "all")
_PROVIDER_CPU = "cpu"  # "cpu" or "CPUExecutionProvider"
RUNTIMES = ("onnxruntime",)
DEFAULT_FOLD_LIMIT_BYTES = 1 << 20  # a folded constant larger than this (net of the inputs it frees) is not stored
_FOLD_INPUT_LIMIT_ELEMENTS = 1 << 24


# ---------------------------------------------------------------- report


@dataclass
class ModelStats:
    """Size of a model: nodes by op type, parameters and an estimate of the saved file size."""

    nodes: int
    ops: dict[str, int]
    parameters: int
    parameter_bytes: int
    file_size: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class PassRecord:
    """One pipeline step: whether it changed the model, how long it took, and why it was skipped (if it was)."""

    name: str
    description: str
    modified: bool = False
    seconds: float = 0.0
    nodes_after: int | None = None
    skipped: bool = False
    error: str | None = None
    details: dict = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    reason: str | None = None  # why a step that did not fail was skipped ("as asked": ``skip=``, ``--skip``)

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "comparisons"}
        d["comparisons"] = [c.to_dict() for c in self.comparisons]
        return d


@dataclass
class OptimizeReport:
    """What :func:`optimize` did: before/after stats, the steps, and the verification against the original."""

    before: ModelStats
    after: ModelStats
    passes: list[PassRecord]
    verification: list[Comparison]
    level: str
    for_runtime: str | None
    dims: dict[str, int]
    seconds: float
    notes: list[str] = field(default_factory=list)
    verify_seconds: float = 0.0
    fixed_dims: dict[str, int] = field(default_factory=dict)  # dims made static on request (``fix_dims=True``)

    @property
    def skipped(self) -> list[PassRecord]:
        return [p for p in self.passes if p.skipped]

    @property
    def verified(self) -> bool | None:
        return None if not self.verification else all(c.passed for c in self.verification)

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "for_runtime": self.for_runtime,
            "dims": self.dims,
            "fixed_dims": self.fixed_dims,
            "seconds": self.seconds,
            "verify_seconds": self.verify_seconds,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "passes": [p.to_dict() for p in self.passes],
            "skipped": [{"name": p.name, "error": p.error, "reason": p.reason} for p in self.skipped],
            "verified": self.verified,
            "verification": [c.to_dict() for c in self.verification],
            "notes": self.notes,
        }


@dataclass
class OptimizeResult:
    model: "ir.Model"
    report: OptimizeReport

    def to_dict(self) -> dict:
        return self.report.to_dict()


def _op_key(node: "ir.Node") -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


def model_stats(model: "ir.Model") -> ModelStats:
    """Count nodes by op type (subgraphs included) and parameter bytes (a shared tensor counts once)."""
    import onnx_ir as ir

    ops: Counter = Counter()
    tensors: dict[int, Any] = {}
    graph_bytes = 0
    for graph in model.graphs():
        for value in graph.initializers.values():
            if value.const_value is not None:
                tensors[id(value.const_value)] = value.const_value
        for node in graph:
            ops[_op_key(node)] += 1
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                attr = node.attributes.get("value")
                if attr is not None and attr.type == ir.AttributeType.TENSOR:
                    tensors[id(attr.value)] = attr.value
            graph_bytes += 40 + 24 * (len(node.inputs) + len(node.outputs)) + 16 * len(node.attributes)
    parameters = sum(int(t.size) for t in tensors.values())
    nbytes = sum(int(t.nbytes) for t in tensors.values())
    return ModelStats(sum(ops.values()), dict(ops.most_common()), parameters, nbytes, nbytes + graph_bytes)


# ---------------------------------------------------------------- steps


@dataclass
class StepResult:
    """What one step did: the (possibly new) model, whether it changed it, and its counts (``{"rewrites": 3}``,
    ``{"fusions": {"SkipLayerNormalization": 12}}``, ...), which the report shows per step."""

    model: "ir.Model"
    modified: bool
    details: dict = field(default_factory=dict)


@dataclass
class Step:
    """A named pipeline step: ``run(model)`` returns a :class:`StepResult`. ``name`` is what ``skip=`` takes."""

    name: str
    description: str
    run: Callable[["ir.Model"], StepResult]


def _pass_step(name: str, description: str, make: Callable[[], Any]) -> Step:
    """A step running the onnx-ir pass ``make()`` builds; a :class:`onnxdeploy.passes.CountedResult`'s details (how
    often the pass's rules fired) become the step's."""

    def run(model):
        from onnxdeploy.passes import CountedResult

        result = make()(model)
        details = dict(result.details) if isinstance(result, CountedResult) else {}
        return StepResult(result.model, result.modified, details)

    return Step(name, description, run)


def _onnxscript_optimizer(fold_limit_bytes: int) -> Step:
    def run(model):
        from onnxdeploy.passes.rewrite import optimize_ir

        before = _node_count(model)
        # its "Evaluation failed" warnings are noise for users: fold-rest evaluates those nodes on onnxruntime
        fold_logger = logging.getLogger("onnxscript.optimizer._constant_folding")
        level = fold_logger.level
        fold_logger.setLevel(logging.ERROR)
        try:
            optimize_ir(
                model,
                input_size_limit=max(_FOLD_INPUT_LIMIT_ELEMENTS, fold_limit_bytes // 4),
                output_size_limit=max(1, fold_limit_bytes // 4),
            )
        finally:
            fold_logger.setLevel(level)
        after = _node_count(model)
        return StepResult(model, after != before, {"nodes_removed": before - after} if after != before else {})

    return Step("fold", "onnxscript optimizer: constant and shape folding (size-limited), default rewrite rules", run)


def _fold_rest(fold_limit_bytes: int) -> Step:
    def run(model):
        from onnxdeploy.passes import FoldRemainingConstantsPass

        result = FoldRemainingConstantsPass(max(1, fold_limit_bytes // 4))(model)
        if result.modified:  # what became constant can unlock the optimizer's rules (e.g. Pad into Conv)
            _onnxscript_optimizer(fold_limit_bytes).run(model)
        return StepResult(model, result.modified, dict(result.details))

    return Step("fold-rest", "evaluate the remaining all-constant nodes (size-limited), then fold again", run)


def _fold_shapes(fold_limit_bytes: int) -> Step:
    def run(model):
        from onnxdeploy.passes import FoldPartialShapesPass

        result = FoldPartialShapesPass()(model)
        if result.modified:  # folded shape vectors unlock the optimizer's rules (Reshape to itself -> Identity, ...)
            _onnxscript_optimizer(fold_limit_bytes).run(model)
        return StepResult(model, result.modified, dict(result.details))

    return Step("fold-shapes", "fold shape arithmetic over static dims, keeping only the symbolic parts, then fold "
                "again", run)


def _ort_fusions() -> Step:
    def run(model):
        from onnxscript.rewriter.ort_fusions import optimize_for_ort

        model, counts = optimize_for_ort(model)
        counts = {k: v for k, v in counts.items() if v}
        return StepResult(model, bool(counts), {"fusions": counts})

    return Step("ort-fusions", "onnxscript rewriter's onnxruntime fusions (attention, LayerNorm, GELU, bias)", run)


_ORT_LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def _ort_offline(level: str, providers: Sequence[str] | None) -> Step:
    def run(model):
        import onnx_ir as ir
        import onnxruntime as ort

        from onnxdeploy._run import resolve_providers

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _ORT_LEVELS[level])
        # the optimized weights stay mapped after the folder is removed (POSIX), so cleanup errors are ignored
        with tempfile.TemporaryDirectory(prefix="onnxdeploy-ort-", ignore_cleanup_errors=True) as tmp:
            src, out = _save_external(model, tmp), Path(tmp, "out.onnx")
            _release_mapped_pages(model)  # onnxruntime reads its own copy; ours re-fault from disk if needed
            options.add_session_config_entry("session.optimized_model_external_initializers_file_name", "out.data")
            options.optimized_model_filepath = str(out)
            ort.InferenceSession(src, sess_options=options, providers=resolve_providers(providers))
            new = ir.load(out)
            # keep the weights memory-mapped: a mapping outlives the deleted file, so nothing is copied
            for graph in new.graphs():
                for value in graph.initializers.values():
                    tensor = value.const_value
                    if isinstance(tensor, ir.ExternalTensor):
                        value.const_value = ir.Tensor(tensor.numpy(), dtype=tensor.dtype, name=value.name)
        return StepResult(new, True, {"level": level})

    return Step("onnxruntime", f"onnxruntime offline optimizer (level {level})", run)


def _release_mapped_pages(model: "ir.Model") -> None:
    """Drop the resident pages of the read-only file mappings behind ``model``'s weights (``io.load_mapped``,
    ``ir.ExternalTensor``). The data stays valid (it is read back from the file on the next access); the process
    just stops holding it while another reader (onnxruntime's offline optimizer) maps its own copy."""
    import mmap

    import onnx_ir as ir

    if not hasattr(mmap, "MADV_DONTNEED"):
        return
    seen: set[int] = set()
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            base = getattr(tensor, "raw", None) if isinstance(tensor, ir.ExternalTensor) else None
            if isinstance(tensor, ir.Tensor):
                base = tensor.raw
                while base is not None and not isinstance(base, mmap.mmap):
                    base = getattr(base, "base", None) if not isinstance(base, memoryview) else base.obj
            if isinstance(base, mmap.mmap) and id(base) not in seen:
                seen.add(id(base))
                try:
                    with memoryview(base) as view:
                        if not view.readonly:  # a writable or copy-on-write mapping may hold changes: keep it
                            continue
                    base.madvise(mmap.MADV_DONTNEED)
                except (OSError, ValueError):  # a closed mapping: nothing to release
                    pass


def _node_count(model: "ir.Model") -> int:
    from onnxdeploy._bounds import node_count

    return node_count(model)  # twice per step: model.graphs() costs ~0.5 s a call on 100k nodes


@dataclass(frozen=True)
class PipelineOptions:
    """What selects the steps of :data:`PIPELINE` and configures them (:func:`optimize`'s options)."""

    level: str = "all"
    for_runtime: str | None = None
    fold_limit_bytes: int = DEFAULT_FOLD_LIMIT_BYTES
    providers: tuple[str, ...] | None = None
    ort_fusions: bool = False

    @property
    def fuses(self) -> bool:
        return self.level in ("extended", "all")

    @property
    def for_ort(self) -> bool:
        return self.for_runtime == "onnxruntime"


@dataclass(frozen=True)
class StepSpec:
    """One entry of :data:`PIPELINE`: a step's name, when it runs (``when(options)``) and how it is built."""

    name: str
    when: Callable[[PipelineOptions], bool]
    make: Callable[[PipelineOptions], Step]


def _ours(name: str, description: str, cls: str, when: Callable[[PipelineOptions], bool]) -> StepSpec:
    """A step running one of our passes (:mod:`onnxdeploy.passes`, imported when the step is built)."""

    def make(_options: PipelineOptions) -> Step:
        from onnxdeploy import passes

        return _pass_step(name, description, getattr(passes, cls))

    return StepSpec(name, when, make)


def _common(name: str, description: str, *classes: str,
            when: Callable[[PipelineOptions], bool] | None = None) -> StepSpec:
    """A step running onnx-ir's common passes ``classes`` in order."""

    def make(_options: PipelineOptions) -> Step:
        import onnx_ir.passes.common as common

        if len(classes) == 1:
            return _pass_step(name, description, getattr(common, classes[0]))
        return _pass_step(name, description, lambda: _Sequential(*(getattr(common, c)() for c in classes)))

    return StepSpec(name, when or _always, make)


def _always(_options: PipelineOptions) -> bool:
    return True


def _fuses_without_runtime(o: PipelineOptions) -> bool:
    return o.fuses and o.for_runtime is None


def _fuses_for_ort(o: PipelineOptions) -> bool:
    return o.fuses and o.for_ort


EXTRA_PASSES = "<extra passes>"  # where :func:`optimize`'s ``extra_passes`` run, each as a step named after the pass

_MERGE = ("merge-matmul", "MatMuls of one input -> one MatMul + Split", "MergeParallelMatMulPass")

# The pipeline, in order: the steps a level, runtime and options select (like onnxscript's _DEFAULT_REWRITE_RULES,
# a list, not branches). merge-matmul runs before the cleanup, or for onnxruntime after its fusions (which look for
# separate Q/K/V MatMuls).
PIPELINE: tuple[StepSpec | str, ...] = (
    StepSpec("fold", _always, lambda o: _onnxscript_optimizer(o.fold_limit_bytes)),
    StepSpec("fold-rest", _always, lambda o: _fold_rest(o.fold_limit_bytes)),
    StepSpec("fold-shapes", _always, lambda o: _fold_shapes(o.fold_limit_bytes)),
    _ours("conv-bn", "fold BatchNormalization into Conv (any constant bias)", "FuseConvBatchNormPass",
          lambda o: o.fuses),
    _ours("chains", "remove redundant Reshape/Transpose/Cast/Squeeze chains", "RemoveRedundantChainsPass", _always),
    _ours("reshape-gemm", "Reshape -> Gemm -> Reshape on 3-D input -> MatMul + Add", "ReshapeGemmToMatMulPass",
          lambda o: o.fuses),
    _ours("matmul-add-gemm", "2-D MatMul + bias Add, or of a transposed weight -> Gemm", "MatMulAddToGemmPass",
          lambda o: o.fuses),
    _common("cse", "merge duplicate subexpressions", "CommonSubexpressionEliminationPass", when=lambda o: o.fuses),
    _ours(*_MERGE, _fuses_without_runtime),
    EXTRA_PASSES,
    _common("identity", "remove Identity nodes", "IdentityEliminationPass"),
    _common("dedup-initializers", "merge identical initializers", "DeduplicateInitializersPass"),
    _common("dead-code", "remove unused nodes, initializers, functions, opsets",
            "RemoveUnusedNodesPass", "RemoveUnusedFunctionsPass", "RemoveUnusedOpsetsPass"),
    StepSpec("ort-fusions", lambda o: _fuses_for_ort(o) and o.ort_fusions, lambda o: _ort_fusions()),
    _ours(*_MERGE, _fuses_for_ort),
    _ours("conv-activation", "Conv/Gemm + activation -> FusedConv/FusedGemm", "FuseConvActivationPass",
          _fuses_for_ort),
    _common("toposort", "topological sort", "TopologicalSortPass"),
    StepSpec("onnxruntime", lambda o: o.for_ort, lambda o: _ort_offline(o.level, o.providers)),
)
STEP_NAMES: tuple[str, ...] = tuple(dict.fromkeys(s.name for s in PIPELINE if isinstance(s, StepSpec)))


def extra_pass_name(extra: Any) -> str:
    """The step name of an extra pass: its ``name`` attribute, else its class name."""
    return getattr(extra, "name", None) or type(extra).__name__


def pipeline(
    *,
    level: str = "all",
    for_runtime: str | None = None,
    fold_limit_bytes: int = DEFAULT_FOLD_LIMIT_BYTES,
    providers: Sequence[str] | None = None,
    extra_passes: Sequence[Any] = (),
    ort_fusions: bool = False,
) -> list[Step]:
    """The steps :func:`optimize` runs, in order: those of :data:`PIPELINE` that these options select
    (``extra_passes`` are onnx-ir passes run after the fusions, each a step named by :func:`extra_pass_name`)."""
    options = PipelineOptions(level, for_runtime, fold_limit_bytes, tuple(providers) if providers else None,
                              ort_fusions)
    steps: list[Step] = []
    for spec in PIPELINE:
        if spec == EXTRA_PASSES:
            steps += [_pass_step(extra_pass_name(extra), f"extra pass {i + 1}", lambda extra=extra: extra)
                      for i, extra in enumerate(extra_passes)]
        elif spec.when(options):
            steps.append(spec.make(options))
    return steps


def check_skip(skip: Iterable[str], extra_passes: Sequence[Any] = ()) -> set[str]:
    """The step names in ``skip`` (:data:`STEP_NAMES` and the extra passes' names), validated: a name that matches
    none is a one-line :class:`UserInputError` naming the closest steps."""
    from onnxdeploy._suggest import did_you_mean

    known = [*STEP_NAMES, *(extra_pass_name(e) for e in extra_passes)]
    chosen = set()
    for name in skip:
        if name not in known:
            raise UserInputError(f"--skip {name}: no such optimize step; {did_you_mean(name, known, what='steps')}",
                                 hint="steps: " + ", ".join(known))
        chosen.add(name)
    return chosen


def _skip_notes(skip: set[str], steps: Sequence[Step], level: str, for_runtime: str | None) -> list[str]:
    """A note naming the asked-for skips that are steps, but not of the pipeline these options select."""
    absent = sorted(skip - {s.name for s in steps})
    if not absent:
        return []
    return [f"--skip {', '.join(absent)}: not a step at these options (level {level}"
            f"{', for ' + for_runtime if for_runtime else ''}): nothing to skip"]


def _Sequential(*passes):  # noqa: N802 - reads like the class it builds
    import onnx_ir as ir

    return ir.passes.Sequential(*passes)


# ---------------------------------------------------------------- dims and verification


def symbolic_dims(model: "ir.Model") -> list[str]:
    """Names of the symbolic dims of the graph inputs, in order of first appearance."""
    names: list[str] = []
    for value in model.graph.inputs:
        for d in value.shape or ():
            name = getattr(d, "value", None)
            if isinstance(name, str) and name not in names:
                names.append(name)
    return names


def check_dim_names(model: "ir.Model", dims: Mapping[str, int]) -> None:
    """Raise :class:`UserInputError` (naming the closest dims) for a name in ``dims`` that no graph input has."""
    from onnxdeploy._suggest import did_you_mean

    known = symbolic_dims(model)
    for name in dims:
        if name not in known:
            raise UserInputError(f"--dim {name}: the model's inputs have no symbolic dim named {name!r}",
                                 hint=did_you_mean(name, known, what="symbolic dims"))


def fix_dims(model: "ir.Model", dims: Mapping[str, int]) -> None:
    """Give symbolic dims fixed values on every value of the model that mentions them (in place); the names are
    :func:`check_dim_names`'s (:func:`optimize` checks them first)."""
    import onnx_ir as ir

    def fixed(shape):
        if shape is None:
            return None
        new = [dims.get(d.value, d) if isinstance(getattr(d, "value", None), str) else d for d in shape]
        return ir.Shape(new)

    for graph in model.graphs():
        values = list(graph.inputs) + list(graph.outputs)
        for node in graph:
            values.extend(node.outputs)
        for value in values:
            if value.shape is not None:
                value.shape = fixed(value.shape)


class _Verifier:
    """The optimize pipeline's checks: :class:`onnxdeploy._verify.Verifier` over the original (at two shapes when dims
    stay symbolic, the interface kept unless dims are fixed on request). The original's runs happen on a background
    thread while the passes run (onnxruntime releases the GIL); the first check waits for them."""

    def __init__(self, original: "ir.Model", dims: Mapping[str, int], *, atol: float, rtol: float, seed: int,
                 providers: Sequence[str] | None, inputs: Mapping[str, np.ndarray] | None = None,
                 fixed: bool = False) -> None:
        import threading

        from onnxdeploy._run import SessionError
        from onnxdeploy._verify import Inputs, Verifier, onnxruntime_runner

        try:  # the one session of the original: fails early, with the reason, if onnxruntime cannot load it
            reference = onnxruntime_runner(original, providers=providers)
        except SessionError as err:
            raise UserInputError(f"cannot verify: onnxruntime cannot load the original model ({err.message})",
                                 hint="pass --no-verify to optimize without the check") from err
        given = Inputs(arrays=dict(inputs or {}), dims=dict(dims), seed=seed)
        self.verifier = Verifier(reference, given, specs_from=original, atol=atol, rtol=rtol, providers=providers,
                                 interface={"dims"} if fixed else "same")
        self.check_seconds = 0.0
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = threading.Thread(target=self._reference_runs, daemon=True,
                                                                 name="onnxdeploy-reference")
        self._thread.start()

    def _reference_runs(self) -> None:
        try:
            self.verifier.sets  # noqa: B018 - computes and caches the original's outputs
        except BaseException as err:  # noqa: BLE001 - re-raised on the caller's thread
            self._error = err

    @property
    def sets(self) -> list:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error
        return self.verifier.sets

    @property
    def notes(self) -> list[str]:
        return self.verifier.notes

    @property
    def seconds(self) -> float:
        return self.verifier.seconds + self.check_seconds

    def check(self, model: "ir.Model", label: str) -> "Verification":
        self.sets  # noqa: B018
        start = time.perf_counter()
        try:
            return self.verifier.check(model, label=label)
        finally:
            self.check_seconds += time.perf_counter() - start


def _save_external(model: "ir.Model", folder: str) -> str:
    """Write ``model`` with its weights in an external-data file: several times faster than one protobuf."""
    import onnx_ir as ir

    path = os.path.join(folder, "model.onnx")
    ir.save(model, path, external_data="model.data")
    return path


# ---------------------------------------------------------------- driver


def _run_steps(model: "ir.Model", steps: Sequence[Step], verifier: _Verifier | None, exclude: set[str],
               skip: set[str] = frozenset()) -> tuple["ir.Model", list[PassRecord], str | None]:
    """Run the steps but those in ``skip`` (recorded as skipped as asked) and ``exclude`` (crashed before); with a
    verifier, check after each and skip failing ones. Returns a crashed step's name."""
    records = []
    declared = [None if v.shape is None else v.shape.copy() for v in model.graph.outputs]
    for step in steps:
        record = PassRecord(step.name, step.description)
        records.append(record)
        if step.name in skip:
            record.skipped, record.reason = True, "as asked"
            continue
        if step.name in exclude:
            record.skipped = True
            continue
        snapshot = model.clone() if verifier is not None else None
        start = time.perf_counter()
        try:
            result = step.run(model)
        except Exception as err:  # noqa: BLE001 - a crashing step is reported and skipped, never shipped
            logger.debug("step %s failed", step.name, exc_info=True)
            record.seconds = time.perf_counter() - start
            record.skipped, record.error = True, f"{type(err).__name__}: {err}".splitlines()[0][:500]
            if snapshot is None:
                return model, records, step.name
            model = snapshot
            continue
        new = result.model
        keep_declared_output_dims(new, declared)
        if result.modified and _make_weights_contiguous(new):
            _release_mapped_pages(new)  # the copied weights' file pages: re-read from disk if still needed
        record.seconds = time.perf_counter() - start
        record.modified, record.details = bool(result.modified), dict(result.details)
        if verifier is not None and result.modified:
            verdict = verifier.check(new, step.name)
            record.comparisons = verdict.comparisons
            error = None if verdict.passed else verdict.failures()[0]
            if error:
                record.skipped, record.error = True, f"broke numerics: {error}"
                model = snapshot
                continue
        model = new
        record.nodes_after = _node_count(model)
    return model, records, None


def keep_declared_output_dims(model: "ir.Model", declared: Sequence[Any]) -> int:
    """Give back the graph outputs' symbolic dims that a step's shape inference made static (a TorchScript export
    declares ``[batch, dim_1, 768]`` where the sequence is always 128): the interface stays as declared. Returns how
    many outputs were restored."""
    restored = 0
    for value, shape in zip(model.graph.outputs, declared):
        now = value.shape
        if shape is None or now is None or len(now) != len(shape) or now == shape:
            continue
        if any(not isinstance(d, int) and isinstance(n, int) for d, n in zip(shape, now)):
            value.shape = shape.copy()
            restored += 1
    return restored


def _make_weights_contiguous(model: "ir.Model") -> int:
    """Copy each weight that a step left as a strided numpy view (e.g. a folded Transpose) into its own buffer, once;
    otherwise every verification session and the writer copy it again (0.44 s per session on ViT-base). Returns how
    many weights were copied."""
    import onnx_ir as ir

    copied = 0
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if type(tensor) is ir.Tensor and isinstance(tensor.raw, np.ndarray) and not tensor.raw.flags.c_contiguous:
                value.const_value = ir.Tensor(_contiguous_copy(tensor.raw), dtype=tensor.dtype, name=tensor.name,
                                              doc_string=tensor.doc_string)
                copied += 1
    return copied


def _contiguous_copy(array: np.ndarray, block: int = 256) -> np.ndarray:
    """A C-contiguous copy; a 2-D view (a transposed weight) is copied in square tiles, about 2x numpy's speed."""
    if array.ndim != 2:
        return np.ascontiguousarray(array)
    out = np.empty(array.shape, array.dtype)
    rows, cols = array.shape
    for i in range(0, rows, block):
        for j in range(0, cols, block):
            out[i:i + block, j:j + block] = array[i:i + block, j:j + block]
    return out


def _prepare(original: "ir.Model", dims: Mapping[str, int]) -> "ir.Model":
    work = original.clone()
    _initializers_out_of_inputs(work)
    if dims:
        fix_dims(work, dims)
    return work


_MIN_IR_VERSION = 4  # initializers need not be graph inputs


def _initializers_out_of_inputs(model: "ir.Model") -> int:
    """IR < 4 lists every initializer as a graph input; passes add initializers that are not, which such a model
    may not hold (onnxruntime refuses it). Those inputs are dropped (they are constants: nobody feeds them) and the
    IR version raised to 4. Returns how many inputs were dropped."""
    if model.ir_version >= _MIN_IR_VERSION:
        return 0
    graph = model.graph
    dropped = [v for v in graph.inputs if v.name in graph.initializers]
    for value in dropped:
        graph.inputs.remove(value)
    model.ir_version = _MIN_IR_VERSION
    return len(dropped)


def optimize(
    model: ModelLike,
    *,
    dims: Mapping[str, int] | None = None,
    for_runtime: str | None = None,
    level: str = "all",
    verify: bool = True,
    verify_each: bool = False,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    fold_limit_bytes: int = DEFAULT_FOLD_LIMIT_BYTES,
    providers: Sequence[str] | None = None,
    extra_passes: Sequence[Any] = (),
    seed: int = 0,
    ort_fusions: bool | None = None,
    inputs: Mapping[str, np.ndarray] | None = None,
    fix_dims: bool = False,
    skip: Iterable[str] = (),
) -> OptimizeResult:
    """Optimize ``model`` (a path, ModelProto or ``ir.Model``, never modified) and verify the result.

    ``dims`` gives symbolic dims the sizes to verify at; the result keeps them symbolic unless ``fix_dims=True``
    makes them static (shape computations then fold; the report's ``fixed_dims`` and notes say so). ``level`` is
    ``basic`` (folding and cleanup), ``extended`` or ``all`` (plus fusions; with ``for_runtime="onnxruntime"``
    also the onnxruntime level of its offline optimizer: ``all`` adds layout transforms specific to this CPU).
    ``verify_each`` checks outputs after every step and skips a step that breaks them; otherwise the result is
    checked once at the end, and on a mismatch the pipeline is re-run with per-step checks to find and skip
    the culprit. Raises :class:`OutputsDisagree` when the result still differs beyond ``atol``/``rtol``.

    ``inputs`` (all the graph's inputs by name, e.g. from :func:`onnxdeploy._run.prepare_inputs`) are what the
    original and the result are compared on, instead of synthesized inputs at two sizes: for models whose inputs
    must hold valid values (shapes, indices) or whose real data matters.

    ``ort_fusions`` (with ``for_runtime="onnxruntime"``) adds the onnxscript rewriter's onnxruntime fusions
    (MultiHeadAttention, SkipLayerNormalization, ...). ``None`` turns them on only for providers other than the
    CPU: on the CPU they measured 3-5% slower than onnxruntime's own load-time fusions on ViT-base and no faster
    on BERT-base and GPT-2 (``benchmarks/optimize.py``), while fused attention is what GPU providers are fast at.

    ``skip`` names steps not to run (:data:`STEP_NAMES`, or an extra pass's name), e.g. ``skip=("fold-rest",)``;
    the report lists each as skipped "as asked". A name that matches no step raises :class:`UserInputError`.
    """
    if level not in LEVELS:
        raise UserInputError(f"unknown level {level!r}", hint=f"choose one of {', '.join(LEVELS)}")
    if for_runtime is not None and for_runtime not in RUNTIMES:
        raise UserInputError(f"unknown runtime {for_runtime!r}", hint=f"choose one of {', '.join(RUNTIMES)}")
    skip = check_skip([skip] if isinstance(skip, str) else skip, extra_passes)
    if fold_limit_bytes < 0:
        raise UserInputError("fold_limit_bytes must be >= 0")
    start = time.perf_counter()
    original = _load(model)
    dims = dict(dims or {})
    check_dim_names(original, dims)
    fixed = dims if fix_dims else {}
    before = model_stats(original)
    if ort_fusions is None:
        ort_fusions = any(_PROVIDER_CPU not in p.lower() for p in providers or ())
    steps = pipeline(level=level, for_runtime=for_runtime, fold_limit_bytes=fold_limit_bytes,
                     providers=providers, extra_passes=extra_passes, ort_fusions=ort_fusions)
    work = _prepare(original, fixed)
    verifier = None
    notes = _skip_notes(skip, steps, level, for_runtime)
    if original.ir_version < _MIN_IR_VERSION:
        dropped = sum(1 for v in original.graph.inputs if v.name in original.graph.initializers)
        notes.append(f"IR version {original.ir_version} -> {_MIN_IR_VERSION}: the {dropped} initializers that were also "
                     "graph inputs are constants now (no longer inputs)")
    if dims and not fixed:
        notes.append("verified at " + ", ".join(f"{k}={v}" for k, v in dims.items())
                     + "; these dims stay symbolic (fix_dims=True, --fix-dims, makes them static)")
    if fixed:
        notes.append("dims fixed as asked (fix_dims): " + ", ".join(f"{k}={v}" for k, v in fixed.items())
                     + "; these inputs and outputs are static now")
    if for_runtime and not ort_fusions and level != "basic":
        notes.append("the onnxscript onnxruntime fusions are off for the CPU (measured no faster than onnxruntime's "
                     "own fusions); --ort-fusions turns them on")
    if verify or verify_each:
        verifier = _Verifier(original, dims, atol=atol, rtol=rtol, seed=seed, providers=providers,
                             inputs=inputs, fixed=bool(fixed))
        if verify_each:
            verifier.sets  # noqa: B018 - the first step's check needs the original's outputs now

    exclude: set[str] = set()
    crash_records: list[PassRecord] = []
    while True:
        work, records, crashed = _run_steps(work, steps, verifier if verify_each else None, exclude, skip)
        if crashed is None:
            break
        crash_records.append(next(r for r in records if r.name == crashed))
        exclude.add(crashed)
        work = _prepare(original, fixed)
    _merge_crashes(records, crash_records)
    if verifier is not None:
        verifier.sets  # noqa: B018 - waits for the original's runs; raises when it runs on no input set
        notes += verifier.notes

    comparisons: list[Comparison] = []
    if verify:
        comparisons, error = _final_check(verifier, work)
        if error and not verify_each:
            notes.append(f"the optimized model failed verification ({error}); "
                         "re-ran with a check after every step to find the step that broke it")
            # with a check after every step a crash is skipped on the spot: give crashed steps another chance
            # (a step often crashes only on what an earlier, faulty step produced)
            work, records, _ = _run_steps(_prepare(original, fixed), steps, verifier, set(), skip)
            comparisons, error = _final_check(verifier, work)
        if error:
            raise OutputsDisagree(
                f"the optimized model's outputs differ from the original's: {error}",
                hint="loosen --atol/--rtol if this error is acceptable, or try --level basic",
            )
    for record in records:
        if record.skipped and record.error:
            logger.warning("skipped step %s: %s", record.name, record.error)
    report = OptimizeReport(before, model_stats(work), records, comparisons, level, for_runtime, dims,
                            time.perf_counter() - start, notes, verifier.seconds if verifier else 0.0, dict(fixed))
    return OptimizeResult(work, report)


def _load(model: ModelLike) -> "ir.Model":
    """The model to optimize; a file's embedded weights are memory-mapped, not copied (see ``io.load_mapped``)."""
    if isinstance(model, (str, os.PathLike)):
        return load_mapped(model)
    return as_model(model)


def _final_check(verifier: _Verifier, model: "ir.Model") -> tuple[list[Comparison], str | None]:
    """Judge the final model; a model onnxruntime refuses to load, or a changed interface, fails the check."""
    verdict = verifier.check(model, "optimized")
    return verdict.comparisons, (None if verdict.passed else verdict.failures()[0])


def _merge_crashes(records: list[PassRecord], crashes: list[PassRecord]) -> None:
    by_name = {c.name: c for c in crashes}
    for i, record in enumerate(records):
        if record.name in by_name:
            records[i] = by_name[record.name]
