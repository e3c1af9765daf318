"""TFLite / LiteRT: convert ONNX to a ``.tflite`` flatbuffer with onnx2tf, run it with ``ai_edge_litert``.

tensorflow (with onnx2tf and tf_keras) is needed only to convert, and runs in a child process
(:func:`onnxdeploy._proc.run_child`) with its logs silenced; running needs only ``ai-edge-litert``. Handled here so
the user does not meet them:

- onnx2tf fetches a calibration ``.npy`` from the network for 3-channel image inputs, even for fp32: the file it
  looks for is written into the child's working folder first (and int8 calibration goes through its custom-data
  option), so the conversion never touches the network.
- TFLite has no ``Erf`` builtin: onnx2tf's pseudo-Erf replacement is switched on when the model has one.
- onnx2tf turns channels-first inputs (rank 3-5) into channels-last: :meth:`TFLiteTarget.run` transposes inputs and
  outputs so callers see the ONNX layout. The mapping (ONNX name -> TFLite tensor, permutation) is measured once
  after conversion and stored beside the artefact as ``<model>.tflite.json``.

Precisions: ``fp32``, ``fp16`` (fp16 weights) and ``int8``: full-integer (int8 weights and activations, float
input/output) when calibration samples are given, dynamic-range (int8 weights) otherwise; the notes say which.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from onnxdeploy.errors import MissingDependencyError, UnsupportedError, UserInputError, require
from onnxdeploy.targets.base import ArtifactCache, Target

CONVERT_TIMEOUT_S = 1800.0
# the sample file onnx2tf downloads for 3-channel image inputs unless it is in the working folder
CALIBRATION_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"
LAYOUT_FORMAT = "onnxdeploy-tflite-layout/1"
_CONVERT_MODULES = ("onnx2tf", "tensorflow", "tf_keras")
_FILES = {"fp32": "_float32.tflite", "fp16": "_float16.tflite", "int8-full": "_integer_quant.tflite",
          "int8-dynamic": "_dynamic_range_quant.tflite"}


class TFLiteTarget(Target):
    name = "tflite"
    description = "TensorFlow Lite / LiteRT flatbuffer (.tflite): onnx2tf converts, ai-edge-litert runs"
    opsets = (7, 20)
    dtypes = frozenset({"float32", "float16", "int8", "uint8", "int16", "int32", "int64", "bool"})
    suffix = ".tflite"
    source = "onnx2tf (conversion, needs tensorflow) + ai_edge_litert.interpreter (runtime)"
    precisions = ("fp32", "fp16", "int8")
    needs_float_mask = True  # legalize rewrites boolean attention masks into additive float masks

    def available(self) -> tuple[bool, str]:
        import importlib.util

        missing = [m for m in ("ai_edge_litert", *_CONVERT_MODULES) if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"missing {', '.join(missing)} (pip install 'onnxdeploy[tflite]')"
        return True, ""

    # ------------------------------------------------------------------ convert
    def convert(self, model_path: Path, output: Path, *, precision: str = "fp32",
                calibration: Sequence[Mapping[str, np.ndarray]] | None = None):
        import importlib.util
        import tempfile

        from onnxdeploy._io import load_proto

        require("ai_edge_litert", extra="tflite", purpose="running a TFLite model")
        for module in _CONVERT_MODULES:
            if importlib.util.find_spec(module) is None:
                raise MissingDependencyError(
                    f"converting to TFLite needs the '{module}' package, which is not installed",
                    hint="pip install 'onnxdeploy[tflite]' (tensorflow is needed to convert only, not to run)")
        proto = load_proto(model_path)
        kind = precision if precision != "int8" else ("int8-full" if calibration else "int8-dynamic")
        erf = any(n.op_type == "Erf" for n in proto.graph.node) or any(
            n.op_type == "Erf" for f in proto.functions for n in f.node)
        notes = []
        with tempfile.TemporaryDirectory(prefix="onnxdeploy-onnx2tf-") as work:
            spec = _child_spec(model_path, Path(work), kind, erf, calibration, proto)
            built = _run_onnx2tf(spec, Path(work))
            tflite = self.artifact_path(output)
            os.replace(built, tflite)
        layout = measure_layout(model_path, tflite)
        layout["precision"], layout["build"] = precision, kind
        sidecar = layout_path(tflite)
        sidecar.write_text(json.dumps(layout, indent=1))
        transposed = [e["name"] for e in layout["inputs"] if e["perm"]]
        if transposed:
            notes.append(f"channels-last inputs in the .tflite ({', '.join(transposed)}): transposed at run time, "
                         f"layout in {sidecar.name}")
        if erf:
            notes.append("Erf replaced by onnx2tf's pseudo-Erf (TFLite has no Erf builtin)")
        notes.append({"fp32": "fp32 (onnx2tf float32 build)", "fp16": "fp16 weights, computed in fp32 on CPU",
                      "int8-full": f"int8 full-integer: int8 weights and activations calibrated on "
                                   f"{len(calibration or [])} sample(s); float32 input/output",
                      "int8-dynamic": "int8 dynamic-range: int8 weights, activations quantized at run time (no "
                                      "calibration given; pass calibration samples for full-integer int8)"}[kind])
        return [tflite, sidecar], notes, None

    # ------------------------------------------------------------------ run
    def run(self, artifact: Path, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        interp, lock = _interpreter(Path(artifact))
        layout = read_layout(Path(artifact))
        with lock:
            return _invoke(interp, layout, feeds)

    def interface(self, artifact: Path, reference):
        """A header-only ModelProto of the artefact's inputs and outputs in ONNX layout (names from the stored
        layout, dtypes and dims from the .tflite), for :func:`onnxdeploy._verify.interface_changes`."""
        import onnx
        from onnx import helper

        from onnxdeploy._run import model_structure

        interp, _ = _interpreter(Path(artifact))
        layout = read_layout(Path(artifact))
        details = {"input": interp.get_input_details(), "output": interp.get_output_details()}
        values = []
        for kind in ("input", "output"):
            entries = layout[kind + "s"] if layout else [
                {"name": d["name"], "index": d["index"], "perm": None} for d in details[kind]]
            by_index = {d["index"]: d for d in details[kind]}
            for e in entries:
                d = by_index[e["index"]]
                dims = [int(x) for x in d.get("shape_signature", d["shape"])]
                if e["perm"]:  # the tflite dims in ONNX order
                    perm = e["perm"] if kind == "output" else list(np.argsort(e["perm"]))
                    dims = [dims[p] for p in perm]
                dtype = helper.np_dtype_to_tensor_dtype(np.dtype(d["dtype"]))
                values.append((kind, helper.make_tensor_value_info(
                    e["name"], dtype, [x if x >= 0 else "dynamic" for x in dims])))
        graph = onnx.GraphProto(name="artefact")
        graph.input.extend(v for k, v in values if k == "input")
        graph.output.extend(v for k, v in values if k == "output")
        return onnx.ModelProto(ir_version=model_structure(reference).ir_version or 8, graph=graph)


# ---------------------------------------------------------------- conversion in a child process


def _child_spec(model_path: Path, work: Path, kind: str, erf: bool, calibration, proto) -> dict:
    """What the child passes to ``onnx2tf.convert``; writes the sample and calibration files into ``work``."""
    import re

    from onnxdeploy._run import input_specs

    rng = np.random.default_rng(0)
    np.save(work / CALIBRATION_SAMPLE, rng.random((20, 128, 128, 3), dtype=np.float32))  # never downloaded
    spec = {"model": str(Path(model_path).resolve()), "out": str(work / "out"), "erf": erf, "kind": kind,
            "dynamic_range": kind == "int8-dynamic", "integer": kind == "int8-full", "calibration": None}
    if kind == "int8-full":
        specs = input_specs(proto)
        not_float = [s.name for s in specs if not np.issubdtype(s.dtype, np.floating)]
        if not_float:
            raise UnsupportedError(
                f"TFLite full-integer int8 calibrates float inputs only; {', '.join(not_float)} "
                f"{'is' if len(not_float) == 1 else 'are'} not float",
                hint="build int8 without calibration samples for dynamic-range int8 (int8 weights)")
        entries = []
        for i, s in enumerate(specs):
            if any(s.name not in sample for sample in calibration):
                raise UserInputError(f"a calibration sample has no input {s.name!r}",
                                     hint="give every model input in each calibration sample")
            data = np.concatenate([np.asarray(sample[s.name], dtype=np.float32) for sample in calibration])
            if 3 <= data.ndim <= 5:
                data = data.transpose(channels_last(data.ndim))  # onnx2tf takes calibration data channels-last
            path = work / f"calibration_{i}.npy"
            np.save(path, data)
            entries.append([re.sub("^/", "wa/", s.name.replace(":", "__")), str(path)])
        spec["calibration"] = entries
    return spec


def _run_onnx2tf(spec: dict, work: Path) -> Path:
    from onnxdeploy._proc import run_child

    (work / "spec.json").write_text(json.dumps(spec))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0", CUDA_VISIBLE_DEVICES="",
               PYTHONWARNINGS="ignore", ABSL_MIN_LOG_LEVEL="3")
    proc = run_child([sys.executable, "-m", "onnxdeploy.targets.tflite", str(work / "spec.json")], cwd=work,
                     env=env, timeout=CONVERT_TIMEOUT_S, what="onnx2tf (TFLite conversion)")
    if proc.returncode != 0:
        raise UnsupportedError(f"onnx2tf could not convert the model: {_reason(proc.stdout + proc.stderr, proc)}",
                               hint="run `onnxdeploy convert MODEL --target tflite --debug`; onnxdeploy legalize "
                                    "--target tflite may rewrite the blocking operator")
    suffix = _FILES[spec["kind"]]
    built = Path(spec["out"]) / (Path(spec["model"]).stem + suffix)  # onnx2tf names files after the model
    if not built.exists():
        raise UnsupportedError(f"onnx2tf wrote no {built.name}: {_reason(proc.stdout + proc.stderr, proc)}")
    return built


def _reason(text: str, proc=None) -> str:
    """Why onnx2tf failed, from its (colored, info-level) output: its error line, else the stage it was in and how
    the process ended (a signal, with its peak memory: the kernel's OOM killer leaves no output at all)."""
    import re
    import resource
    import signal

    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("W0000", "I0000", "WARNING: All log"))]
    flagged = [ln for ln in lines if ln.startswith("ERROR") or "Error:" in ln or "Error(" in ln]
    stages = [ln.split(" started")[0] for ln in lines if re.search(r" started\s*=+$", ln)]
    where = f" during onnx2tf's {stages[-1]!r} stage" if stages else ""
    code = getattr(proc, "returncode", None)
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # GiB (ru_maxrss is in KiB)
        why = " (most likely out of memory: the kernel's OOM killer)" if -code == signal.SIGKILL else ""
        return f"the converter was killed by {name}{why}{where}, peak memory {peak:.1f} GiB"
    if flagged:
        return flagged[-1][:400] + where
    return f"exit code {code}{where}: {(lines or ['no output'])[-1][:300]}"


def _child_main(spec_path: str) -> None:
    """In the child: one ``onnx2tf.convert`` call, its output silenced (the parent reads the files)."""
    import logging

    spec = json.loads(Path(spec_path).read_text())
    logging.disable(logging.WARNING)
    import onnx2tf

    calibration = [[name, path, 0.0, 1.0] for name, path in (spec["calibration"] or [])] or None
    if not spec["integer"]:
        # onnx2tf builds fp32/fp16/dynamic-range .tflite files from the concrete function; only full-integer reads
        # back the saved_model it writes first. Writing it took minutes and 13+ GiB for BERT-base: skip it
        import tensorflow as tf

        tf.saved_model.save = lambda *args, **kwargs: None
    onnx2tf.convert(  # info level: its stage lines tell the parent where a failed conversion stopped
        input_onnx_file_path=spec["model"], output_folder_path=spec["out"], non_verbose=False, verbosity="info",
        output_dynamic_range_quantized_tflite=spec["dynamic_range"], output_integer_quantized_tflite=spec["integer"],
        custom_input_op_name_np_data_path=calibration, quant_type="per-channel",
        replace_to_pseudo_operators=["erf"] if spec["erf"] else None)


# ---------------------------------------------------------------- layout and running


def channels_last(rank: int) -> list[int]:
    """ONNX channels-first -> channels-last permutation (NCHW -> NHWC) for ``rank``."""
    return [0, *range(2, rank), 1]


def channels_first(rank: int) -> list[int]:
    """The inverse of :func:`channels_last` (NHWC -> NCHW)."""
    return [0, rank - 1, *range(1, rank - 1)]


def layout_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".json")


def read_layout(artifact: Path) -> dict | None:
    """The ONNX <-> TFLite mapping stored beside ``artifact`` at conversion, or None for a foreign .tflite."""
    path = layout_path(artifact)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data if data.get("format") == LAYOUT_FORMAT else None


def _fits(shape, dims) -> bool:
    return len(shape) == len(dims) and all(int(d) < 0 or int(d) == int(s) for s, d in zip(shape, dims))


def measure_layout(model_path: Path, tflite: Path) -> dict:
    """Which TFLite tensor is which ONNX input/output, and the permutation between them: inputs by name (then
    order) and shape; outputs by running both on the same inputs and taking the closest of the fitting tensors."""
    import onnxruntime as ort

    from onnxdeploy._run import synthesize_inputs

    feeds = synthesize_inputs(model_path, seed=0)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model_path), sess_options=so, providers=["CPUExecutionProvider"])
    ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    interp = _load_interpreter(tflite)
    details = interp.get_input_details()
    inputs = []
    for i, (name, arr) in enumerate(feeds.items()):
        def clean(n):
            return n.removeprefix("serving_default_").rsplit(":", 1)[0].replace("__", ":").replace("wa/", "/", 1)
        named = [d for d in details if clean(d["name"]) in (name, name.replace(":", "__"))]
        d = named[0] if named else details[i]
        sig = d.get("shape_signature", d["shape"])
        perm = channels_last(arr.ndim) if 3 <= arr.ndim <= 5 and _fits(arr.transpose(
            channels_last(arr.ndim)).shape, sig) else None
        if perm is None and not _fits(arr.shape, sig):
            raise UnsupportedError(f"the .tflite input {d['name']} (shape {list(sig)}) does not match the ONNX input "
                                   f"{name} (shape {list(arr.shape)})")
        inputs.append({"name": name, "tflite": d["name"], "index": int(d["index"]), "perm": perm})
    layout = {"format": LAYOUT_FORMAT, "inputs": inputs, "outputs": [
        {"name": d["name"], "tflite": d["name"], "index": int(d["index"]), "perm": None}
        for d in interp.get_output_details()]}
    got = _invoke(interp, layout, feeds, raw=True)
    layout["outputs"] = _match_outputs(ref, got, {d["index"]: d["name"] for d in interp.get_output_details()})
    return layout


def _match_outputs(ref: dict, got: dict[int, np.ndarray], names: dict[int, str]) -> list[dict]:
    outputs, free = [], dict(got)
    for name, want in ref.items():
        best = None
        for index, arr in free.items():
            perms = [None] + ([channels_first(arr.ndim)] if 3 <= arr.ndim <= 5 else [])
            for perm in perms:
                cand = arr if perm is None else arr.transpose(perm)
                if cand.shape != want.shape:
                    continue
                err = float(np.nanmax(np.abs(cand.astype(np.float64) - want.astype(np.float64)))) if want.size else 0.0
                if best is None or err < best[0]:
                    best = (err, index, perm)
        if best is None:
            raise UnsupportedError(f"no .tflite output matches the ONNX output {name} (shape {list(want.shape)})")
        free.pop(best[1])
        outputs.append({"name": name, "tflite": names[best[1]], "index": int(best[1]), "perm": best[2]})
    return outputs


_INTERPRETERS = ArtifactCache()


def _load_interpreter(path: Path):
    interpreter = require("ai_edge_litert.interpreter", extra="tflite", purpose="running a TFLite model")
    with _quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
        interp = interpreter.Interpreter(model_path=str(path), num_threads=int(os.environ.get("ONNXDEPLOY_THREADS",
                                                                                                "1")))
        interp.allocate_tensors()
    return interp


def _interpreter(path: Path):
    """One interpreter per artefact file (reused while the file is unchanged), with a lock for its tensors."""
    return _INTERPRETERS.get(path, lambda p: (_load_interpreter(p), threading.Lock()))


def _invoke(interp, layout: dict | None, feeds: Mapping[str, np.ndarray], raw: bool = False) -> dict:
    details = interp.get_input_details()
    by_index = {d["index"]: d for d in details}
    if layout is None:  # a .tflite we did not build: feeds by order, channels-last when the shape says so
        names = list(feeds)
        entries = [{"name": names[i], "index": d["index"], "perm": None} for i, d in enumerate(details)]
        for e in entries:
            arr = np.asarray(feeds[e["name"]])
            if not _fits(arr.shape, by_index[e["index"]]["shape_signature"]) and 3 <= arr.ndim <= 5:
                e["perm"] = channels_last(arr.ndim)
    else:
        entries = layout["inputs"]
    arrays = {}
    for e in entries:
        if e["name"] not in feeds:
            raise UserInputError(f"no input named {e['name']!r} for the TFLite model")
        arr = np.asarray(feeds[e["name"]])
        arr = arr.transpose(e["perm"]) if e["perm"] else arr
        arrays[e["index"]] = np.ascontiguousarray(arr, dtype=by_index[e["index"]]["dtype"])
    if any(tuple(by_index[i]["shape"]) != a.shape for i, a in arrays.items()):
        for i, a in arrays.items():
            interp.resize_tensor_input(i, list(a.shape))
        interp.allocate_tensors()
    for i, a in arrays.items():
        interp.set_tensor(i, a)
    interp.invoke()
    out_details = interp.get_output_details()
    if raw:
        return {d["index"]: np.array(interp.get_tensor(d["index"])) for d in out_details}
    if layout is None:
        return {d["name"]: np.array(interp.get_tensor(d["index"])) for d in out_details}
    out = {}
    for e in layout["outputs"]:
        arr = np.array(interp.get_tensor(e["index"]))
        out[e["name"]] = arr.transpose(e["perm"]) if e["perm"] else arr
    return out


class _quiet_stderr:
    """Silence the C++ runtime's messages on file descriptor 2 for the duration of the block."""

    def __enter__(self):
        try:
            sys.stderr.flush()
            self.saved = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        except OSError:
            self.saved = None
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            os.dup2(self.saved, 2)
            os.close(self.saved)
        return False


if __name__ == "__main__":  # the child process of TFLiteTarget.convert
    _child_main(sys.argv[1])
