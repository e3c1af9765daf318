"""ExecuTorch: build a ``.pte`` program from the PyTorch module (not from ONNX), lowered to XNNPACK, and run it.

``torch.export.export`` -> ``executorch.exir.to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])``
-> ``.pte``; :mod:`executorch.runtime` runs it. int8 uses the XNNPACK quantizer through PT2E (``prepare_pt2e`` /
``convert_pt2e``): static (int8 weights and activations, calibrated) when calibration samples are given, dynamic
(int8 weights, activations quantized at run time) otherwise.

A ``.pte`` has no input/output names: the names (those of the ONNX export, when there is one) are stored beside it as
``<model>.pte.json`` and :meth:`ExecuTorchTarget.run` takes feeds by those names (by position without it).

>>> from onnxdeploy.targets.executorch import convert_module
>>> convert_module(module, (x,), "model.pte", reference="model.onnx").parity.summary()
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from onnxdeploy.errors import OutputsDisagree, UnsupportedError, UserInputError, require
from onnxdeploy.targets.base import ArtifactCache, ConvertReport, Target

SIDECAR_FORMAT = "onnxdeploy-executorch-io/1"
NEEDS_MODULE = "ExecuTorch converts from the PyTorch module, not from an ONNX file"
NEEDS_MODULE_HINT = "onnxdeploy deploy pkg.mod:factory --target executorch (a PyTorch target: the module and its inputs)"
# torch ScalarType codes (executorch TensorInfo.dtype()) -> ONNX TensorProto element types
_SCALAR_TO_ONNX = {0: 2, 1: 3, 2: 5, 3: 6, 4: 7, 5: 10, 6: 1, 7: 11, 11: 9, 15: 16}


class ExecuTorchTarget(Target):
    name = "executorch"
    description = "ExecuTorch program (.pte), XNNPACK delegate, built from the PyTorch module"
    suffix = ".pte"
    dtypes = frozenset({"float32", "float16", "bfloat16", "int8", "uint8", "int16", "int32", "int64", "bool"})
    source = "torch.export + executorch.exir (XnnpackPartitioner); runs on executorch.runtime"
    precisions = ("fp32", "int8")
    converts_onnx = False

    def available(self) -> tuple[bool, str]:
        import importlib.util

        if importlib.util.find_spec("executorch") is None:
            return False, "the executorch package is not installed (pip install 'onnxdeploy[executorch]')"
        return True, ""

    def convert(self, model_path: Path, output: Path, *, precision: str = "fp32",
                calibration: Sequence[Mapping[str, np.ndarray]] | None = None):
        raise UnsupportedError(f"{NEEDS_MODULE} ({Path(model_path).name})", hint=NEEDS_MODULE_HINT)

    def run(self, artifact: Path, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        method, lock, io = _method(Path(artifact))
        names = io.get("inputs") or list(feeds)
        missing = [n for n in names if n not in feeds]
        if missing:
            raise UserInputError(f"no input named {missing[0]!r} for the ExecuTorch program",
                                 hint="inputs: " + ", ".join(names))
        torch = require("torch", extra="executorch", purpose="running an ExecuTorch program")
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names]
        with lock:
            outs = method.execute(args)
        out_names = io.get("outputs") or []
        if len(out_names) != len(outs):
            out_names = [f"output_{i}" for i in range(len(outs))]
        return {n: np.array(o.detach().numpy() if hasattr(o, "detach") else o) for n, o in zip(out_names, outs)}

    def interface(self, artifact: Path, reference):
        """A header-only ModelProto: names from the sidecar, dtypes and sizes from the program's method metadata."""
        import onnx
        from onnx import helper

        from onnxdeploy._run import model_structure

        method, _, io = _method(Path(artifact))
        meta = method.metadata
        values = {}
        for kind, count, get in (("input", meta.num_inputs(), meta.input_tensor_meta),
                                 ("output", meta.num_outputs(), meta.output_tensor_meta)):
            names = io.get(kind + "s") or [f"{kind}_{i}" for i in range(count)]
            infos = [get(i) for i in range(count)]
            values[kind] = [helper.make_tensor_value_info(n, _SCALAR_TO_ONNX.get(int(t.dtype()), 0), list(t.sizes()))
                            for n, t in zip(names, infos)]
        graph = onnx.GraphProto(name="artefact")
        graph.input.extend(values["input"])
        graph.output.extend(values["output"])
        return onnx.ModelProto(ir_version=model_structure(reference).ir_version or 8, graph=graph)


# ---------------------------------------------------------------- build from the module


def sidecar_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".json")


def build_pte(module, example_inputs: tuple | None, output: str | os.PathLike, *, example_kwargs: dict | None = None,
              precision: str = "fp32", calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
              input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None
              ) -> tuple[list[Path], list[str]]:
    """Write ``output`` (``.pte``) and its ``.pte.json`` names from ``module`` on ``example_inputs``/``example_kwargs``;
    returns (files, notes). ``precision`` ``"int8"``: static int8 calibrated on ``calibration`` (feed dicts by input
    name), dynamic int8 without it. Not verified: :func:`convert_module` verifies."""
    torch = require("torch", extra="executorch", purpose="building an ExecuTorch program")
    require("executorch", extra="executorch", purpose="building an ExecuTorch program")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from onnxdeploy._io import atomic_write_bytes, atomic_write_text

    if precision not in ExecuTorchTarget.precisions:
        raise UnsupportedError(f"target executorch cannot build {precision} here; it builds fp32, int8",
                               hint="use --precision fp32 or --precision int8")
    args = tuple(example_inputs or ())
    kwargs = dict(example_kwargs or {})
    names = list(input_names) if input_names else (list(kwargs) or [f"input_{i}" for i in range(len(args))])
    module = module.eval()
    notes = []
    with torch.no_grad():
        if precision == "int8":
            module, note = _quantize(module, args, kwargs, names, calibration)
            notes.append(note)
        try:
            program = torch.export.export(module, args, kwargs or None, strict=False)
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
        except Exception as err:  # noqa: BLE001 - torch.export and exir raise many kinds
            first = str(err).strip().splitlines()
            raise UnsupportedError(f"ExecuTorch could not lower the module: {first[0] if first else type(err).__name__}",
                                   hint="torch.export must capture the module; see `onnxdeploy export --debug`") from err
    delegated = sum(1 for n in lowered.exported_program().graph.nodes
                    if n.op == "call_function" and "executorch_call_delegate" in str(n.target))
    notes.append(f"{delegated} XNNPACK-delegated subgraph(s)" if delegated else "nothing delegated to XNNPACK: "
                 "portable kernels only (slow)")
    out = Path(output)
    out = out if out.suffix == ".pte" else out.with_suffix(".pte")
    atomic_write_bytes(out, lowered.buffer)
    side = sidecar_path(out)
    atomic_write_text(side, json.dumps({"format": SIDECAR_FORMAT, "inputs": names,
                                        "outputs": list(output_names or []), "precision": precision}, indent=1))
    return [out, side], notes


def _feed_call(module, names: Sequence[str], kwargs: bool, feeds: Mapping[str, np.ndarray]):
    import torch

    tensors = {n: torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names}
    return module(**tensors) if kwargs else module(*[tensors[n] for n in names])


def _quantize(module, args: tuple, kwargs: dict, names: Sequence[str], calibration) -> tuple[Any, str]:
    """PT2E int8 with the XNNPACK quantizer: static with calibration samples, dynamic without."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    class Quantizer(XNNPACKQuantizer):
        def transform_for_annotation(self, model):
            return integer_scalars_kept(super().transform_for_annotation(model))

    dynamic = not calibration
    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
    # dynamic int8 is for the Linear layers only: quantizing globally also observes index tensors (attention masks)
    quantizer = (Quantizer().set_module_type(torch.nn.Linear, config) if dynamic
                 else Quantizer().set_global(config))
    captured = torch.export.export(module, args, kwargs or None, strict=False).module()
    prepared = prepare_pt2e(captured, quantizer)
    if dynamic:
        prepared(*args, **kwargs)
        return convert_pt2e(prepared), ("int8 dynamic: int8 weights, activations quantized at run time (no "
                                        "calibration given; give samples for static int8)")
    for sample in calibration:
        missing = [n for n in names if n not in sample]
        if missing:
            raise UserInputError(f"a calibration sample has no input {missing[0]!r}",
                                 hint="give every model input in each calibration sample: " + ", ".join(names))
        _feed_call(prepared, names, bool(kwargs), sample)
    return convert_pt2e(prepared), (f"int8 static: int8 weights and activations (XNNPACK quantizer, per-channel), "
                                    f"calibrated on {len(calibration)} sample(s)")


def integer_scalars_kept(model):
    """Undo the XNNPACK quantizer's scalar -> float constant rewrite on integer arithmetic.

    ``XNNPACKQuantizer.transform_for_annotation`` turns every scalar operand of ``aten.add``/``aten.mul`` into a
    ``torch.tensor(float(x))`` buffer, also when the other operand is an integer tensor: transformers' mask code
    (``arange(seq) + past_length`` used as an index) then yields a float index and the prepared graph fails with
    "IndexError: tensors used as indices must be long, int, byte or bool tensors". Such constants get the dtype
    of the integer result back (the value is an integer scalar, so the cast is exact)."""
    import torch

    changed = False
    for node in model.graph.nodes:
        val = node.meta.get("val")
        if node.op != "call_function" or node.target not in (torch.ops.aten.add.Tensor, torch.ops.aten.mul.Tensor) \
                or not isinstance(val, torch.Tensor) or val.dtype.is_floating_point:
            continue
        for arg in node.args:
            if not (isinstance(arg, torch.fx.Node) and arg.op == "get_attr"
                    and str(arg.target).startswith("_tensor_constant_")):
                continue
            const = getattr(model, arg.target)
            if const.dtype.is_floating_point and const.dim() == 0:
                fixed = const.to(val.dtype)
                setattr(model, arg.target, fixed)
                if "val" in arg.meta:
                    arg.meta["val"] = arg.meta["val"].fake_mode.from_tensor(fixed, static_shapes=True)
                changed = True
    if changed:
        model.recompile()
    return model


def torch_runner(module, names: Sequence[str], output_names: Sequence[str] | None, *, kwargs: bool = False):
    """Feeds by name -> the module's flattened outputs by name (the reference for a .pte)."""
    import torch
    from torch.utils import _pytree

    def run(feeds):
        with torch.no_grad():
            leaves = [t for t in _pytree.tree_leaves(_feed_call(module, names, kwargs, feeds))
                      if isinstance(t, torch.Tensor)]
        keys = list(output_names or [])
        keys = keys if len(keys) == len(leaves) else [f"output_{i}" for i in range(len(leaves))]
        return {k: t.detach().numpy() for k, t in zip(keys, leaves)}

    return run


def _header(names: Sequence[str], feeds: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]):
    """A header-only ModelProto declaring the module's inputs/outputs (when there is no ONNX export)."""
    import onnx
    from onnx import helper

    graph = onnx.GraphProto(name="module")
    for target, values in ((graph.input, {n: feeds[n] for n in names}), (graph.output, outputs)):
        target.extend(helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.asarray(a).dtype),
                                                    list(np.shape(a))) for n, a in values.items())
    return onnx.ModelProto(ir_version=8, graph=graph, opset_import=[helper.make_opsetid("", 17)])


def convert_module(module, example_inputs: tuple | None, output: str | os.PathLike, *,
                   example_kwargs: dict | None = None, reference: str | os.PathLike | None = None,
                   precision: str = "fp32", calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
                   input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
                   inputs=None, tolerance=None, verify: bool = True, interface="same") -> ConvertReport:
    """Build the ``.pte`` of ``module`` (staged beside ``output``), verify it against the PyTorch module (and against
    onnxruntime on ``reference``, the ONNX export, when given) with the ``precision``'s :class:`Tolerance`, then
    publish it. Raises :class:`OutputsDisagree` with nothing written when it disagrees. The program has the static
    shapes of the example inputs: a symbolic dim of ``reference`` is an interface change unless ``interface`` allows
    ``"dims"`` (``deploy --fix-dims``)."""
    import shutil
    import tempfile

    from onnxdeploy._numerics import Tolerance
    from onnxdeploy._run import input_specs, output_specs
    from onnxdeploy._verify import Inputs, verify as verify_models
    from onnxdeploy._io import check_output_path

    start = time.perf_counter()
    out = Path(output)
    out = out if out.suffix == ".pte" else out.with_suffix(".pte")
    if reference is not None:
        input_names = input_names or [s.name for s in input_specs(str(reference))]
        output_names = output_names or [s.name for s in output_specs(str(reference))]
    folder = out.parent if str(out.parent) else Path(".")
    staging = Path(tempfile.mkdtemp(prefix=f".onnxdeploy-tmp-{os.getpid()}-pte-", dir=folder))
    try:
        files, notes = build_pte(module, example_inputs, staging / out.name, example_kwargs=example_kwargs,
                                 precision=precision, calibration=calibration, input_names=input_names,
                                 output_names=output_names)
        names = json.loads(sidecar_path(files[0]).read_text())["inputs"]
        report = ConvertReport("executorch", str(out), [str(folder / f.name) for f in files], converted=True,
                               seconds=time.perf_counter() - start, notes=notes, precision=precision)
        if verify:
            tol = tolerance or Tolerance(precision=precision)
            ref_run = torch_runner(module, names, output_names, kwargs=bool(example_kwargs))
            given = Inputs.coerce(inputs) if inputs is not None else Inputs(arrays=_example_feeds(
                names, example_inputs, example_kwargs))
            specs = str(reference) if reference is not None else _header(names, given.arrays, ref_run(given.arrays))
            header = ExecuTorchTarget().interface(files[0], specs)
            pte_run = lambda feeds: ExecuTorchTarget().run(files[0], feeds)  # noqa: E731
            report.parity = verify_models(specs, header, given, tolerance=tol, reference_runner=ref_run,
                                          candidate_runner=pte_run, label=f"executorch {precision} vs PyTorch",
                                          interface=interface)
            checks = [report.parity]
            if reference is not None:
                ort = verify_models(str(reference), header, given, tolerance=tol, candidate_runner=pte_run,
                                    label=f"executorch {precision} vs onnxruntime", interface=interface)
                report.notes.append(f"vs onnxruntime on {Path(reference).name}: {ort.summary()}")
                checks.append(ort)
            failed = [c for c in checks if not c.passed]
            if failed:
                raise OutputsDisagree(f"executorch artefact differs: {failed[0].failures()[0]}",
                                      hint="nothing was written")
        for f in files:
            check_output_path(folder / f.name)  # never onto an input
        for f in files:
            os.replace(f, folder / f.name)
        report.seconds = time.perf_counter() - start
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _example_feeds(names: Sequence[str], args: tuple | None, kwargs: dict | None) -> dict[str, np.ndarray]:
    values = list(kwargs.values()) if kwargs else list(args or ())
    return {n: v.detach().numpy() if hasattr(v, "detach") else np.asarray(v) for n, v in zip(names, values)}


# ---------------------------------------------------------------- loading


_PROGRAMS = ArtifactCache()


def _load_method(path: Path) -> tuple:
    runtime = require("executorch.runtime", extra="executorch", purpose="running an ExecuTorch program")
    program = runtime.Runtime.get().load_program(str(path))
    side = sidecar_path(path)
    io = json.loads(side.read_text()) if side.exists() else {}
    io = io if io.get("format") == SIDECAR_FORMAT else {}
    return program.load_method("forward"), threading.Lock(), io, program  # the program outlives its method


def _method(path: Path):
    """(forward method, lock, names) of a .pte, loaded once per file version."""
    method, lock, io, _ = _PROGRAMS.get(path, _load_method)
    return method, lock, io
