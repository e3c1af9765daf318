"""One input description and one verifier, used by every verb that transforms or compares models.

:class:`Inputs` says what to feed (files, an ``.npz`` or ``test_data_set_N`` folder, arrays, sizes for symbolic dims,
per-input shapes with dtypes, a seed). :class:`Verifier` runs a reference once per input set and checks candidates
against it; :func:`verify` is the one-shot form. Both models are judged as they run (no extra outputs), at two
shapes when dims are symbolic, with the metric of the candidate's precision (:class:`onnxdeploy._numerics.Tolerance`),
and a candidate whose interface (input/output names, dtypes, symbolic dims) differs from the reference's fails unless
the caller allows that change.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from onnxdeploy._numerics import Comparison, Tolerance, compare_outputs, resolve_tolerance
from onnxdeploy._run import Inputs, dims_label, symbolic_input_dims, verification_plans  # noqa: F401 - re-exported
from onnxdeploy.errors import OnnxDeployError, UserInputError

if TYPE_CHECKING:
    import onnx_ir as ir

    from onnxdeploy._run import InputSpec

logger = logging.getLogger(__name__)

Runner = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
"""Anything that runs a model: feeds by input name -> outputs by output name."""


# ---------------------------------------------------------------- interface


def _specs(model: Any) -> tuple[list["InputSpec"], list["InputSpec"]]:
    from onnxdeploy._run import input_specs, output_specs

    proto = _structure(model)
    return input_specs(proto), output_specs(proto)


def _structure(model: Any):
    import onnx_ir as ir

    from onnxdeploy._run import model_structure

    if isinstance(model, ir.Model):
        return _header_only(model)
    if isinstance(model, (bytes, bytearray, memoryview)):  # a serialized model: its structure, weights skipped
        import onnx

        from onnxdeploy._io import structure_bytes

        return onnx.ModelProto.FromString(structure_bytes(model)[0])
    return model_structure(model)


def _header_only(model: "ir.Model"):
    """A ModelProto of ``model``'s declared inputs and outputs only (no nodes, no weights): enough for specs."""
    import onnx
    import onnx_ir as ir

    graph = model.graph
    inits = set(graph.initializers)
    header = onnx.GraphProto(name=graph.name or "graph")
    header.input.extend(ir.serde.serialize_value(v) for v in graph.inputs if v.name not in inits)
    header.output.extend(ir.serde.serialize_value(v) for v in graph.outputs)
    return onnx.ModelProto(ir_version=model.ir_version, graph=header)


def interface_changes(reference: Any, candidate: Any) -> list[str]:
    """How ``candidate``'s declared inputs and outputs differ from ``reference``'s: names, dtypes, ranks, symbolic dims
    that became fixed (or fixed dims that became symbolic) and fixed dims whose size changed. One line per change."""
    ref_in, ref_out = _specs(reference)
    got_in, got_out = _specs(candidate)
    return _spec_changes("input", ref_in, got_in) + _spec_changes("output", ref_out, got_out)


def _spec_changes(kind: str, ref: Sequence["InputSpec"], got: Sequence["InputSpec"]) -> list[str]:
    changes = []
    got_by_name = {s.name: s for s in got}
    ref_names = [s.name for s in ref]
    for name in ref_names:
        if name not in got_by_name:
            changes.append(f"names: {kind} {name!r} is gone")
    for s in got:
        if s.name not in ref_names:
            changes.append(f"names: new {kind} {s.name!r}")
    for r in ref:
        g = got_by_name.get(r.name)
        if g is None:
            continue
        if r.dtype != g.dtype:
            changes.append(f"dtypes: {kind} {r.name!r} is {g.dtype}, was {r.dtype}")
        if r.shape is None or g.shape is None:
            continue
        if len(r.shape) != len(g.shape):
            changes.append(f"dims: {kind} {r.name!r} has rank {len(g.shape)}, was {len(r.shape)}")
            continue
        for axis, (a, b) in enumerate(zip(r.shape, g.shape)):
            if isinstance(a, str) and isinstance(b, int):
                changes.append(f"dims: {kind} {r.name!r} dim {axis} is fixed to {b}, was symbolic {a!r}")
            elif isinstance(a, int) and isinstance(b, str):
                changes.append(f"dims: {kind} {r.name!r} dim {axis} is symbolic {b!r}, was fixed to {a}")
            elif isinstance(a, int) and isinstance(b, int) and a != b:
                changes.append(f"dims: {kind} {r.name!r} dim {axis} is {b}, was {a}")
    return changes


# ---------------------------------------------------------------- runners

# Verification sessions run the graph as written (no onnxruntime graph rewrites of their own) and read the weights
# in place: every large initializer is handed to onnxruntime as an OrtValue over the model's own numpy buffer
# (`SessionOptions.add_initializer`), so a session costs the graph's serialization, not a copy of the weights, and
# the reference and every candidate share the weights they have in common. Prepacking is off for the same reason.
VERIFY_LEVEL = "disable"
_SHARE_MIN_BYTES = 1024
_SHARED_FILE = "onnxdeploy-shared-weights.bin"  # placeholder location of shared initializers (never read)
_SHARE_DTYPES = frozenset(np.dtype(t) for t in ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                                                "uint8", "uint16", "uint32", "uint64", "bool"))


class SharedWeightSession:
    """An onnxruntime session over an ``ir.Model`` whose large weights are the model's own buffers (no copy)."""

    def __init__(self, model: "ir.Model", providers: Sequence[str] | None = None, *,
                 optimization_level: str = VERIFY_LEVEL) -> None:
        from onnxdeploy._bounds import check_loops
        from onnxdeploy._run import create_session

        check_loops(model)  # a Loop that would run for ever is refused before onnxruntime starts it
        self.keep: list = []  # the arrays and OrtValues the session reads; alive as long as the session
        data, names = self._serialize_sharing(model)
        if names and optimization_level == VERIFY_LEVEL:
            self.session = self._shared_session(data, names, providers)
            if self.session is not None:
                return
        self.keep = []
        source = data if not names else model
        self.session = create_session(source, providers=providers, optimization_level=optimization_level)

    def _serialize_sharing(self, model: "ir.Model") -> tuple[bytes, list[str]]:
        import onnx_ir as ir
        import onnxruntime as ort

        swapped: list = []
        names: list[str] = []
        graph_inputs = {v.name for v in model.graph.inputs}
        try:
            for value in model.graph.initializers.values():
                tensor = value.const_value
                if tensor is None or value.name in graph_inputs or tensor.nbytes < _SHARE_MIN_BYTES:
                    continue
                try:
                    if np.dtype(tensor.dtype.numpy()) not in _SHARE_DTYPES:
                        continue
                    array = np.ascontiguousarray(tensor.numpy())
                    ortvalue = ort.OrtValue.ortvalue_from_numpy(array)
                except Exception:  # noqa: BLE001 - a tensor that cannot be shared stays in the graph
                    continue
                self.keep += [array, ortvalue]
                names.append(value.name)
                swapped.append((value, tensor))
                value.const_value = ir.ExternalTensor(_SHARED_FILE, 0, tensor.nbytes, tensor.dtype,
                                                      shape=tensor.shape, name=value.name)
            from onnxdeploy._io import external_base_dir, inline_external_data

            # the remaining external tensors (small ones, subgraphs, functions) are read from the model's folder,
            # never from the current directory
            data = inline_external_data(ir.serde.serialize_model(model), external_base_dir(model),
                                        keep={_SHARED_FILE}).SerializeToString()
        finally:
            for value, tensor in swapped:
                value.const_value = tensor
        return data, names

    def _shared_session(self, data: bytes, names: list[str], providers):
        import onnxruntime as ort

        from onnxdeploy._run import resolve_providers

        options = ort.SessionOptions()
        options.log_severity_level = 4
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.add_session_config_entry("session.disable_prepacking", "1")
        options.enable_cpu_mem_arena = False  # exact allocations, freed as soon as a tensor is dead
        for name, ortvalue in zip(names, self.keep[1::2]):
            options.add_initializer(name, ortvalue)
        with tempfile.TemporaryDirectory(prefix="onnxdeploy-verify-") as tmp:
            # onnxruntime checks that the placeholder file exists, then uses the initializers given above
            Path(tmp, _SHARED_FILE).touch()
            options.add_session_config_entry("session.model_external_initializers_file_folder_path", tmp)
            try:
                return ort.InferenceSession(data, sess_options=options, providers=resolve_providers(providers))
            except Exception as err:  # noqa: BLE001 - e.g. a kernel that wants a weight's bytes at load time
                logger.debug("shared-weight session failed (%s); using a self-contained one", err)
                return None

    def run(self, feeds: Mapping[str, np.ndarray], names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        from onnxdeploy._run import run_session

        return run_session(self.session, feeds, names)

    __call__ = run


def onnxruntime_runner(model: Any, *, providers: Sequence[str] | None = None,
                       optimization_level: str = VERIFY_LEVEL) -> Runner:
    """A runner over ``model`` (path, ModelProto or ir.Model) on onnxruntime, graph as written by default."""
    import onnx_ir as ir

    from onnxdeploy._run import create_session, run_session

    if isinstance(model, ir.Model):
        return SharedWeightSession(model, providers, optimization_level=optimization_level)
    session = create_session(model, providers=providers, optimization_level=optimization_level)
    return lambda feeds: run_session(session, feeds)


def _runner(model: Any, runner: Runner | None, providers) -> Runner:
    if runner is not None:
        return runner
    return model if _is_runner(model) else onnxruntime_runner(model, providers=providers)


# ---------------------------------------------------------------- verification


@dataclass
class Verification:
    """The verdict on a candidate: one comparison per input set, interface changes, notes, and the metric used."""

    label: str
    comparisons: list[Comparison] = field(default_factory=list)
    interface_changes: list[str] = field(default_factory=list)
    allowed_changes: list[str] = field(default_factory=list)  # changes the caller asked for (not failures)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # input sets the candidate could not run on
    shapes: list[str] = field(default_factory=list)  # the input sets, e.g. "batch=1", "the given inputs"
    metric: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return (bool(self.comparisons) and not self.interface_changes and not self.errors
                and all(c.passed for c in self.comparisons))

    @property
    def max_abs(self) -> float:
        return max((c.max_abs for c in self.comparisons), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((c.max_rel for c in self.comparisons), default=0.0)

    @property
    def flags(self) -> list[str]:
        return list(dict.fromkeys(flag for c in self.comparisons for flag in c.flags))

    def failures(self) -> list[str]:
        """One line per reason the verdict is not 'passed'."""
        lines = [f"interface changed: {c}" for c in self.interface_changes]
        lines += self.errors
        for c in self.comparisons:
            if not c.passed:
                lines.append(c.summary())
        if not self.comparisons and not self.errors:
            lines.append("nothing was compared")
        return lines

    def summary(self) -> str:
        status = "passed" if self.passed else "FAILED"
        where = f" at {len(self.comparisons)} input sets" if len(self.comparisons) > 1 else ""
        head = f"{self.label + ': ' if self.label else ''}{status}{where} ({self.metric}; max abs {self.max_abs:.3g})"
        extra = [f"interface changed: {c}" for c in self.interface_changes] + list(self.errors)
        extra += [f"asked for: {c}" for c in self.allowed_changes]
        extra += [f"warning: {f}" for f in self.flags]
        return "; ".join([head, *extra])

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "passed": self.passed,
            "metric": self.metric,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "interface_changes": list(self.interface_changes),
            "allowed_changes": list(self.allowed_changes),
            "flags": self.flags,
            "notes": list(self.notes),
            "errors": list(self.errors),
            "shapes": list(self.shapes),
            "seconds": self.seconds,
            "comparisons": [c.to_dict() for c in self.comparisons],
        }

    def raise_if_failed(self, *, hint: str | None = None) -> None:
        """Raise :class:`~onnxdeploy.errors.OutputsDisagree` (exit code 3) unless the verdict passed."""
        from onnxdeploy.errors import OutputsDisagree

        if not self.passed:
            raise OutputsDisagree(self.failures()[0], hint=hint)


def _first_line(err: BaseException) -> str:
    text = getattr(err, "message", None) or str(err) or type(err).__name__
    return text.strip().splitlines()[0][:400] if text.strip() else type(err).__name__


class Verifier:
    """Runs a reference once per input set (outputs cached) and checks candidates against it.

    ``reference`` is an ONNX model (path, ModelProto, ir.Model: run on onnxruntime as written) or a runner
    (callable feeds -> outputs: PyTorch, another engine, fixed expected outputs) with ``specs_from`` naming an ONNX
    model that declares the inputs. Input sets come from ``inputs`` (:class:`Inputs`): the given tensors at one shape,
    or synthesized ones at two assignments of the symbolic dims; if the reference cannot run at the small sizes, the
    default sizes are tried. ``interface`` is ``"same"`` (any change of the declared interface fails), ``"ignore"``,
    or a collection of the change kinds the caller asked for (``{"dims"}`` after ``--fix-dims``)."""

    def __init__(self, reference: Any, inputs: Inputs | Mapping[str, np.ndarray] | None = None, *,
                 tolerance: Tolerance | None = None, atol: float | None = None, rtol: float | None = None,
                 specs_from: Any = None, providers: Sequence[str] | None = None,
                 interface: str | Iterable[str] = "same", output_names: Sequence[str] | None = None,
                 reference_name: str = "original") -> None:
        start = time.perf_counter()
        self.reference_name = reference_name
        self.reference = reference
        self.inputs = Inputs.coerce(inputs)
        self.tolerance = resolve_tolerance(tolerance, atol, rtol)
        self.providers = providers
        self.interface = interface
        self.structure = specs_from if specs_from is not None else reference
        if _is_runner(self.structure):
            raise UserInputError("verify: a runner as reference needs specs_from=<an ONNX model declaring its inputs>")
        self.specs, self.out_specs = _specs(self.structure)
        self.output_names = list(output_names) if output_names else None
        self.notes: list[str] = []
        self._sets: list[tuple[str, dict, dict]] | None = None
        self.seconds = time.perf_counter() - start

    @property
    def interface(self) -> str | frozenset[str]:
        """``"same"``, ``"ignore"``, or the change kinds asked for."""
        return self._interface

    @interface.setter
    def interface(self, value: str | Iterable[str]) -> None:
        self._interface = value if value in ("same", "ignore") else frozenset(value)

    @property
    def allowed(self) -> frozenset[str]:
        return self._interface if isinstance(self._interface, frozenset) else frozenset()

    @property
    def sets(self) -> list[tuple[str, dict, dict]]:
        """(label, feeds, reference outputs) per input set, computed on first use."""
        if self._sets is None:
            start = time.perf_counter()
            self._sets = self._reference_sets()
            self.seconds += time.perf_counter() - start
        return self._sets

    def _reference_sets(self) -> list[tuple[str, dict, dict]]:
        runner = _runner(self.reference, None, self.providers)
        failures: list[tuple[str, str]] = []
        for plan in self.inputs.plans(self.specs, vary="dims" not in self.allowed):
            sets = []
            for dims in plan:
                label = "the given inputs" if self.inputs.given else dims_label(dims)
                try:
                    feeds = self.inputs.feeds(self.structure, dims=dims, specs=self.specs)
                    outputs = dict(runner(feeds))
                except UserInputError:
                    raise
                except Exception as err:  # noqa: BLE001 - the reference itself cannot run at these sizes
                    failures.append((label, _first_line(err)))
                    continue
                if self.output_names:
                    outputs = {k: outputs[k] for k in self.output_names if k in outputs}
                sets.append((label, feeds, outputs))
            if sets:
                self.notes += [f"not verified at {label}: the reference fails there ({error})"
                               for label, error in failures]
                return sets
        tried = "; ".join(f"at {label}: {error}" for label, error in failures)
        which = "the given" if self.inputs.given else "synthesized"
        raise UserInputError(f"cannot verify: the {self.reference_name} model does not run on {which} inputs ({tried})",
                             hint="give the sizes it needs with --dim NAME=VALUE or real inputs with --inputs, "
                                  "or pass --no-verify")

    def check(self, candidate: Any, *, label: str = "", runner: Runner | None = None,
              names: Mapping[str, str] | None = None) -> Verification:
        """Run ``candidate`` (an ONNX model, or anything with ``runner``) on every input set and judge it."""
        start = time.perf_counter()
        result = Verification(label, metric=self.tolerance.metric_name, notes=list(self.notes))
        if self.interface != "ignore" and candidate is not None and not _is_runner(candidate):
            for change in interface_changes(self.structure, candidate):
                kind = change.partition(":")[0]
                (result.allowed_changes if kind in self.allowed else result.interface_changes).append(change)
        sets = self.sets
        try:
            run = _runner(candidate, runner, self.providers)
        except OnnxDeployError as err:
            result.errors.append(f"the candidate cannot be loaded: {_first_line(err)}")
            sets = []
        for set_label, feeds, ref in sets:
            result.shapes.append(set_label)
            try:
                got = dict(run(feeds))
            except Exception as err:  # noqa: BLE001 - a candidate that fails where the reference runs has failed
                result.errors.append(f"the candidate fails at {set_label}: {_first_line(err)}")
                continue
            result.comparisons.append(compare_outputs(ref, got, tolerance=self.tolerance, names=names,
                                                      label=f"{label} @ {set_label}" if label else set_label))
        result.seconds = time.perf_counter() - start  # the check's own time; the reference's is self.seconds
        return result


def _is_runner(model: Any) -> bool:
    """A callable (feeds -> outputs) rather than a model: it has no declared interface of its own."""
    return callable(model) and not isinstance(model, (str, os.PathLike, bytes, bytearray, memoryview))


def read_expected(path: str | os.PathLike, structure: Any) -> dict[str, np.ndarray]:
    """Expected outputs from an ``.npz`` or a ``test_data_set_N`` folder (``output_K.pb``, named by position of the
    outputs ``structure`` declares)."""
    from onnxdeploy._run import output_specs, read_npz, read_test_data_dir

    p = Path(path)
    if p.is_dir():
        expected = read_test_data_dir(p, output_specs(_structure(structure)), "output")
        if not expected:
            raise UserInputError(f"--expect {p}: no output_K.pb files in this folder")
        return expected
    if p.suffix == ".npz" or not p.exists():
        return read_npz(p)
    raise UserInputError(f"--expect {p}: give an .npz file or a test_data_set folder")


def check_expected(outputs: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray], *,
                   feeds: Mapping[str, np.ndarray], structure: Any, tolerance: Tolerance | None = None,
                   atol: float | None = None, rtol: float | None = None, label: str = "expected vs run"
                   ) -> Verification:
    """Judge outputs a model produced on ``feeds`` against expected ones (``run --expect``), with the verifier's
    metric and flags. An expected name the model does not declare is a :class:`UserInputError`."""
    from onnxdeploy._run import output_specs
    from onnxdeploy._suggest import did_you_mean

    declared = [s.name for s in output_specs(_structure(structure))] or list(outputs)
    for name in expected:
        if name not in declared and name not in outputs:
            raise UserInputError(f"--expect: the model has no output named {name!r}", hint=did_you_mean(name, declared))
    result = verify(lambda _feeds: dict(expected), None, Inputs(arrays=dict(feeds)), tolerance=tolerance, atol=atol,
                    rtol=rtol, specs_from=structure, candidate_runner=lambda _feeds: dict(outputs), interface="ignore",
                    label=label)
    for comparison in result.comparisons:  # one input set, named by the caller's label
        comparison.label = label
    return result


def run_checked(model: Any, inputs: "Inputs | Mapping[str, np.ndarray] | None" = None, *,
                expect: str | os.PathLike | Mapping[str, np.ndarray] | None = None,
                providers: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
                tolerance: Tolerance | None = None, atol: float | None = None, rtol: float | None = None):
    """Run ``model`` once on onnxruntime (:func:`onnxdeploy._run.run_model`) and, with ``expect`` (an ``.npz``, a
    ``test_data_set_N`` folder or arrays), judge its outputs against the expected ones: ``result.expected``."""
    from onnxdeploy._run import model_structure, run_model

    given = Inputs.coerce(inputs)
    structure = model_structure(model)
    expected = None
    if expect is not None:
        expected = dict(expect) if isinstance(expect, Mapping) else read_expected(expect, structure)
    result = run_model(model, given, providers=providers, output_names=output_names)
    if expected is not None:
        result.expected = check_expected(result.outputs, expected, feeds=result.inputs, structure=structure,
                                         tolerance=tolerance, atol=atol, rtol=rtol)
    return result


def verify(reference: Any, candidate: Any, inputs: Inputs | Mapping[str, np.ndarray] | None = None, *,
           tolerance: Tolerance | None = None, atol: float | None = None, rtol: float | None = None,
           reference_runner: Runner | None = None, candidate_runner: Runner | None = None,
           specs_from: Any = None, providers: Sequence[str] | None = None,
           interface: str | Iterable[str] = "same", label: str = "") -> Verification:
    """Judge ``candidate`` against ``reference`` on ``inputs``: both run as they are, at two shapes when dims are
    symbolic, with the metric of ``tolerance``'s precision; a changed interface fails unless ``interface`` allows it.

    Models are paths, ModelProtos or ir.Models (run on onnxruntime); ``reference_runner``/``candidate_runner`` run
    them elsewhere (PyTorch, OpenVINO, ...). Returns a :class:`Verification`; it raises only when the reference
    itself cannot run (:class:`~onnxdeploy.errors.UserInputError`)."""
    if specs_from is None and reference_runner is not None and not _is_runner(reference):
        specs_from = reference  # the model declares the inputs; the runner runs it elsewhere
    verifier = Verifier(reference_runner or reference, inputs, tolerance=tolerance, atol=atol, rtol=rtol,
                        specs_from=specs_from, providers=providers, interface=interface)
    return verifier.check(candidate, label=label, runner=candidate_runner)


__all__ = ["Inputs", "Runner", "check_expected", "read_expected", "run_checked", "SharedWeightSession", "Verification", "Verifier", "dims_label", "interface_changes",
           "onnxruntime_runner", "symbolic_input_dims", "verification_plans", "verify", "OnnxDeployError"]
