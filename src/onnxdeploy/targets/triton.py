"""Triton Inference Server: a model repository (``NAME/config.pbtxt`` + ``NAME/1/model.onnx``) and a KServe
``inferenceservice.yaml`` beside it, so that the folder goes to a cluster as it is.

``config.pbtxt`` is filled from the model (inputs, outputs, dims with -1 where dynamic, ``max_batch_size`` when every
input and output has a dynamic first dim, dynamic batching) and from its latency measured here (the batching queue
delay, the CPU instance count), then parsed back with Triton's own schema (``tritonclient.grpc.model_config_pb2``
and protobuf's text parser) and checked before it is written. Triton backends:

- ``onnxruntime`` (default): ``1/model.onnx`` for Triton's onnxruntime backend (NVIDIA's container has it).
- ``python``: ``1/model.py`` running onnxruntime on ``1/model.onnx``, for servers with the Python backend only
  (PyTriton's ``tritonserver``); it batches the requests Triton hands it.
- ``openvino``: ``1/model.xml`` + ``model.bin`` for Triton's OpenVINO backend.

The artefact is the repository folder; ``run`` executes the model it holds (the generated ``model.py`` included,
against a stand-in for ``triton_python_backend_utils``), so ``convert`` verifies it like any engine's artefact.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from onnxdeploy.errors import UserInputError, require
from onnxdeploy.targets.base import Target

TRITON_BACKENDS = ("onnxruntime", "python", "openvino")
DEFAULT_MAX_BATCH = 8
TRITON_DTYPES = {"bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
                 "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
                 "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64",
                 "object": "TYPE_STRING"}
STORAGE_URI_PLACEHOLDER = "s3://YOUR-BUCKET/PATH/TO/THIS/REPOSITORY"

PYTHON_MODEL = '''"""Triton Python backend model written by onnxdeploy: runs 1/model.onnx on onnxruntime (CPU).

Triton hands execute() every request of a dynamic batch; when the model batches (max_batch_size > 0) they are
stacked along the first dim, run once and split back."""

import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        folder = os.path.join(args["model_repository"], args["model_version"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("ONNXDEPLOY_THREADS", "0"))
        self.session = ort.InferenceSession(os.path.join(folder, "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.batching = MAX_BATCH_SIZE > 0

    def _run(self, feeds):
        return dict(zip(self.outputs, self.session.run(None, feeds)))

    def execute(self, requests):
        try:
            feeds = [{n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs} for r in requests]
        except Exception as err:  # noqa: BLE001
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(f"bad input: {err}")) for _ in requests]
        same = all({k: (v.shape[1:], v.dtype) for k, v in f.items()} ==
                   {k: (v.shape[1:], v.dtype) for k, v in feeds[0].items()} for f in feeds)
        if self.batching and len(feeds) > 1 and same:
            rows = [f[self.inputs[0]].shape[0] for f in feeds]
            out = self._run({n: np.concatenate([f[n] for f in feeds]) for n in self.inputs})
            bounds = np.cumsum([0] + rows)
            results = [{k: v[a:b] for k, v in out.items()} for a, b in zip(bounds[:-1], bounds[1:])]
        else:
            results = []
            for f in feeds:
                try:
                    results.append(self._run(f))
                except Exception as err:  # noqa: BLE001
                    results.append(err)
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(r).splitlines()[0]))
                if isinstance(r, Exception) else
                pb_utils.InferenceResponse([pb_utils.Tensor(k, np.ascontiguousarray(v)) for k, v in r.items()])
                for r in results]

    def finalize(self):
        self.session = None
'''


@dataclass
class TritonRepository:
    """A written repository: its folder, the model's folder in it, the config and the manifest."""

    root: str
    name: str
    backend: str
    config: str
    manifest: str
    files: list[str]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def model_name_for(path: str | os.PathLike) -> str:
    """A Triton/KServe-friendly model name from a file name (a deploy step file names its folder instead)."""
    p = Path(path)
    stem = p.parent.name if re.match(r"^\d\d-", p.stem) else p.stem
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-") or "model"


def _measure_ms(model_path: Path, feeds: Mapping[str, np.ndarray], seconds: float = 0.5) -> float | None:
    """p50 latency (ms) of one onnxruntime call (one thread) by bench's one timer, or None when the model does not
    run here."""
    from onnxdeploy._bench import latency_stats, time_interleaved
    from onnxdeploy._run import create_session

    try:
        session, feeds = create_session(str(model_path), threads=1), dict(feeds)
        timings = time_interleaved([lambda: session.run(None, feeds)], warmup=1, duration=seconds)
        return latency_stats(model_path.name, None, timings.runs(0)).p50
    except Exception:  # noqa: BLE001 - the config is still written, with defaults
        return None


def triton_config(
    model_path: str | os.PathLike,
    *,
    name: str,
    backend: str = "onnxruntime",
    max_batch: int = DEFAULT_MAX_BATCH,
    latency_ms: float | None = None,
    instances: int | None = None,
    notes: list[str] | None = None,
) -> str:
    """The ``config.pbtxt`` text for the ONNX model at ``model_path``, validated (:func:`validate_triton_config`)."""
    from onnxdeploy._run import input_specs, output_specs

    if backend not in TRITON_BACKENDS:
        from onnxdeploy._suggest import did_you_mean

        raise UserInputError(f"unknown Triton backend {backend!r}",
                             hint=did_you_mean(backend, TRITON_BACKENDS, what="Triton backends"))
    notes = notes if notes is not None else []
    ins, outs = input_specs(str(model_path)), output_specs(str(model_path))
    batched = max_batch > 0 and all(s.shape and not isinstance(s.shape[0], int) for s in [*ins, *outs])
    if max_batch > 0 and not batched:
        notes.append("max_batch_size 0: not every input and output has a dynamic first dim, so Triton cannot batch")

    def tensor(s, kind: str) -> list[str]:
        dtype = np.dtype(s.dtype).name if np.dtype(s.dtype).kind != "O" else "object"
        if dtype not in TRITON_DTYPES:
            raise UserInputError(f"{kind} {s.name!r} is {dtype}: Triton has no such type")
        dims = [d if isinstance(d, int) and d >= 0 else -1 for d in (s.shape or [])]
        dims = dims[1:] if batched else dims
        return [f"{kind} {{", f"  name: {_quote(s.name)}", f"  data_type: {TRITON_DTYPES[dtype]}",
                f"  dims: [ {', '.join(map(str, dims))} ]" if dims else "  dims: [ 1 ]",
                *(["  reshape: { shape: [ ] }"] if not dims else []), "}"]

    lines = [f"name: {_quote(name)}", f"backend: {_quote(backend)}", f"max_batch_size: {max_batch if batched else 0}"]
    for s in ins:
        lines += tensor(s, "input")
    for s in outs:
        lines += tensor(s, "output")
    if batched:
        # wait for a batch at most a quarter of one inference (0.1 ms - 10 ms): latency at low load barely moves
        delay_us = int(min(10_000, max(100, (latency_ms or 2.0) * 250)))
        preferred = sorted({b for b in (max_batch // 2, max_batch) if b > 1})
        lines += ["dynamic_batching {", f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]",
                  f"  max_queue_delay_microseconds: {delay_us}", "}"]
        notes.append(f"dynamic batching up to {max_batch}, queue delay {delay_us} us"
                     + (f" (a quarter of the measured {latency_ms:.2f} ms)" if latency_ms else ""))
    if instances is None:
        cpus = os.cpu_count() or 1
        # a fast model is bound by the server's overhead: one instance; a slow one gets one per two cores
        instances = 1 if latency_ms is not None and latency_ms < 1.0 else max(1, min(4, cpus // 2))
    lines += ["instance_group [", f"  {{ count: {instances}, kind: KIND_CPU }}", "]"]
    text = "\n".join(lines) + "\n"
    validate_triton_config(text)
    return text


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def validate_triton_config(text: str, *, source: str = "config.pbtxt"):
    """Parse ``text`` with Triton's ``ModelConfig`` schema (bad field names and enum values are refused by protobuf's
    text parser) and check what Triton checks when it loads a model; return the parsed message."""
    pb2 = require("tritonclient.grpc.model_config_pb2", extra="serve", purpose="checking a Triton config.pbtxt")
    from google.protobuf import text_format

    config = pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as err:
        raise UserInputError(f"{source}: {str(err).splitlines()[0]}",
                             hint="see Triton's model_config.proto for the fields and enum values") from err
    problems = []
    if not config.name:
        problems.append("no model name")
    if not (config.backend or config.platform):
        problems.append("neither a backend nor a platform")
    if config.max_batch_size < 0:
        problems.append(f"max_batch_size is {config.max_batch_size}")
    if config.HasField("dynamic_batching") and config.max_batch_size == 0:
        problems.append("dynamic_batching needs max_batch_size > 0")
    if not config.input or not config.output:
        problems.append("no inputs" if not config.input else "no outputs")
    names = [t.name for t in [*config.input, *config.output]]
    if len(set(names)) != len(names):
        problems.append("a tensor name appears twice")
    for t in [*config.input, *config.output]:
        if t.data_type == pb2.DataType.TYPE_INVALID:
            problems.append(f"{t.name}: no data_type")
        if any(d < -1 or d == 0 for d in t.dims):
            problems.append(f"{t.name}: dims {list(t.dims)} (each > 0, or -1 for dynamic)")
    for group in config.instance_group:
        if group.count < 1:
            problems.append(f"instance_group count {group.count}")
    if problems:
        raise UserInputError(f"{source}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if problems[1:] else ""))
    return config


def kserve_manifest(name: str, *, storage_uri: str = STORAGE_URI_PLACEHOLDER, cpu: str = "1",
                    memory: str = "2Gi") -> str:
    """A KServe ``InferenceService`` serving the repository with KServe's Triton runtime (``storageUri`` is the
    repository folder, uploaded to a bucket: replace the placeholder)."""
    service = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63] or "model"
    if not service[0].isalpha():
        service = f"m-{service}"[:63]
    return f"""# KServe InferenceService for the Triton model repository in this folder (written by onnxdeploy).
# 1. Upload this folder (with {name}/config.pbtxt inside) to object storage KServe can read.
# 2. Set storageUri below to that location, then: kubectl apply -f inferenceservice.yaml
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {service}
spec:
  predictor:
    model:
      modelFormat:
        name: triton
      protocolVersion: v2
      runtime: kserve-tritonserver
      storageUri: {storage_uri}
      args:
        - --strict-model-config=true
      resources:
        requests:
          cpu: "{cpu}"
          memory: {memory}
        limits:
          cpu: "{cpu}"
          memory: {memory}
"""


def write_triton_repository(
    model: str | os.PathLike,
    output: str | os.PathLike,
    *,
    name: str | None = None,
    backend: str = "onnxruntime",
    max_batch: int = DEFAULT_MAX_BATCH,
    instances: int | None = None,
    storage_uri: str = STORAGE_URI_PLACEHOLDER,
    measure: bool = True,
) -> TritonRepository:
    """Write a Triton model repository for the ONNX file ``model`` at the new folder ``output`` (staged beside it,
    renamed into place when complete): ``NAME/config.pbtxt``, ``NAME/1/...`` and ``inferenceservice.yaml``."""
    from onnxdeploy._io import as_proto

    src, out = Path(model), Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserInputError(f"{out} already exists", hint="give a new folder for the Triton repository")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise UserInputError(f"{out.parent}: output folder does not exist", hint=f"mkdir -p {out.parent}")
    as_proto(src)  # a readable model, or one line saying why not
    name = name or model_name_for(src)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise UserInputError(f"model name {name!r}: use letters, digits, '_', '-' and '.'")
    notes: list[str] = []
    latency = None
    if measure:
        from onnxdeploy._run import synthesize_inputs

        try:
            latency = _measure_ms(src, synthesize_inputs(str(src), dims={}))
        except Exception:  # noqa: BLE001 - no latency: the defaults apply
            latency = None
    config = triton_config(src, name=name, backend=backend, max_batch=max_batch, latency_ms=latency,
                           instances=instances, notes=notes)
    if latency is not None:
        notes.append(f"measured {latency:.2f} ms per inference (onnxruntime, one thread, batch as declared)")
    parent = out.parent if str(out.parent) else Path(".")
    with tempfile.TemporaryDirectory(prefix=f".onnxdeploy-tmp-{os.getpid()}-triton-", dir=parent) as staging:
        root = Path(staging) / "repo"
        _fill(root, src, name, backend, config, max_batch, storage_uri, notes)
        if out.exists():
            out.rmdir()
        os.replace(root, out)
    files = sorted(str(p) for p in out.rglob("*") if p.is_file())
    return TritonRepository(str(out), name, backend, str(out / name / "config.pbtxt"),
                            str(out / "inferenceservice.yaml"), files, notes)


def _fill(root: Path, src: Path, name: str, backend: str, config: str, max_batch: int, storage_uri: str,
          notes: list[str]) -> None:
    from onnxdeploy._io import atomic_write_text, load, save

    version = root / name / "1"
    version.mkdir(parents=True)
    if backend == "openvino":
        from onnxdeploy.targets.openvino import OpenVINOTarget

        OpenVINOTarget().convert(src, version / "model.xml")
    else:
        save(load(str(src)), version / "model.onnx")
    if backend == "python":
        batch = max_batch if "max_batch_size: 0" not in config else 0
        atomic_write_text(version / "model.py", PYTHON_MODEL.replace("MAX_BATCH_SIZE > 0", f"{batch} > 0"))
        notes.append("Python backend: model.py runs onnxruntime, which the server's Python environment must have")
    atomic_write_text(root / name / "config.pbtxt", config)
    atomic_write_text(root / "inferenceservice.yaml", kserve_manifest(name, storage_uri=storage_uri))


# ---------------------------------------------------------------- running a repository here (verification)


def find_model_folder(repository: Path) -> Path:
    """The one ``NAME/`` folder (with ``config.pbtxt``) of a repository."""
    found = sorted(p.parent for p in Path(repository).glob("*/config.pbtxt"))
    if len(found) != 1:
        raise UserInputError(f"{repository}: expected one model folder with a config.pbtxt, found {len(found)}")
    return found[0]


def _fake_pb_utils() -> types.ModuleType:
    """A stand-in for ``triton_python_backend_utils`` with what the generated model.py uses."""
    pb = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name, array):
            self._name, self._array = name, np.asarray(array)

        def name(self):
            return self._name

        def as_numpy(self):
            return self._array

    class TritonError(Exception):
        def message(self):
            return str(self)

    class InferenceResponse:
        def __init__(self, output_tensors=(), error=None):
            self.tensors, self.error = list(output_tensors), error

    def get_input_tensor_by_name(request, name):
        return Tensor(name, request[name]) if name in request else None

    pb.Tensor, pb.TritonError, pb.InferenceResponse = Tensor, TritonError, InferenceResponse
    pb.get_input_tensor_by_name = get_input_tensor_by_name
    return pb


def run_python_model(model_folder: Path, feeds_list: Sequence[Mapping[str, np.ndarray]]) -> list[dict]:
    """Run the generated ``1/model.py`` as Triton would (initialize, one execute with these requests)."""
    import importlib.util

    previous = sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = _fake_pb_utils()
    try:
        spec = importlib.util.spec_from_file_location(f"_triton_model_{id(feeds_list)}",
                                                      model_folder / "1" / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        instance = module.TritonPythonModel()
        instance.initialize({"model_repository": str(model_folder), "model_version": "1"})
        responses = instance.execute([dict(f) for f in feeds_list])
    finally:
        if previous is None:
            sys.modules.pop("triton_python_backend_utils", None)
        else:
            sys.modules["triton_python_backend_utils"] = previous
    out = []
    for r in responses:
        if r.error is not None:
            raise UserInputError(f"the generated model.py failed: {r.error}")
        out.append({t.name(): t.as_numpy() for t in r.tensors})
    return out


def repository_model(repository: str | os.PathLike) -> tuple[Path, str]:
    """The model file of a repository's version 1 and the engine that runs it here (onnxruntime or openvino)."""
    version = find_model_folder(Path(repository)) / "1"
    return (version / "model.xml", "openvino") if (version / "model.xml").exists() else \
        (version / "model.onnx", "onnxruntime")


class TritonTarget(Target):
    name = "triton"
    description = "Triton Inference Server model repository (config.pbtxt + model) and a KServe InferenceService"
    suffix = ""
    source = "onnxruntime (Triton's onnxruntime backend runs the same ONNX file)"
    precisions = ("fp32",)

    def __init__(self, backend: str = "onnxruntime", *, max_batch: int = DEFAULT_MAX_BATCH,
                 model_name: str | None = None):
        if backend not in TRITON_BACKENDS:
            from onnxdeploy._suggest import did_you_mean

            raise UserInputError(f"unknown Triton backend {backend!r}",
                                 hint=did_you_mean(backend, TRITON_BACKENDS, what="Triton backends"))
        self.triton_backend, self.max_batch, self.model_name = backend, max_batch, model_name

    def available(self) -> tuple[bool, str]:
        try:
            import tritonclient.grpc.model_config_pb2  # noqa: F401
        except ImportError:
            return False, "tritonclient is not installed (pip install 'onnxdeploy[serve]')"
        return True, ""

    def artifact_path(self, output: str | os.PathLike) -> Path:
        return Path(output)

    def convert(self, model_path: Path, output: Path, *, precision: str = "fp32", calibration=None):
        repo = write_triton_repository(model_path, self.artifact_path(output), backend=self.triton_backend,
                                       max_batch=self.max_batch, name=self.model_name or model_name_for(model_path))
        return [Path(repo.root)], [*repo.notes, f"KServe manifest: {Path(repo.manifest).name} (set storageUri)"], None

    def interface(self, artifact: Path, reference):
        """What Triton will serve, read back from the written ``config.pbtxt`` (names, dtypes, dims; the batch dim
        implied by ``max_batch_size > 0`` counts as dynamic), as a header-only ModelProto."""
        import onnx
        from onnx import helper

        from onnxdeploy._run import model_structure

        folder = find_model_folder(Path(artifact))
        config = validate_triton_config((folder / "config.pbtxt").read_text(), source=str(folder / "config.pbtxt"))
        pb2 = sys.modules["tritonclient.grpc.model_config_pb2"]  # imported by validate_triton_config
        onnx_types = {name[len("TYPE_"):]: value for name, value in pb2.DataType.items()}
        by_name = {"FP32": "FLOAT", "FP16": "FLOAT16", "FP64": "DOUBLE", "BF16": "BFLOAT16", "STRING": "STRING"}

        def value(t):
            kind = pb2.DataType.Name(t.data_type)[len("TYPE_"):]
            dtype = getattr(onnx.TensorProto, by_name.get(kind, kind), 0) if kind in onnx_types else 0
            dims = (["dynamic"] if config.max_batch_size > 0 else []) + [d if d > 0 else "dynamic" for d in t.dims]
            return helper.make_tensor_value_info(t.name, dtype, dims)

        graph = onnx.GraphProto(name="triton")
        graph.input.extend(value(t) for t in config.input)
        graph.output.extend(value(t) for t in config.output)
        return onnx.ModelProto(ir_version=model_structure(reference).ir_version or 8, graph=graph)

    def runner(self, artifact: Path, *, threads: int | None = 1):
        """The repository's model loaded once on the engine its backend names (the python backend runs onnxruntime)."""
        from onnxdeploy.targets.base import get_target

        model, engine = repository_model(artifact)
        return get_target(engine).runner(model, threads=threads)

    def run(self, artifact: Path, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        folder = find_model_folder(Path(artifact))
        version = folder / "1"
        if (version / "model.py").exists():
            return run_python_model(folder, [feeds])[0]
        if (version / "model.xml").exists():
            from onnxdeploy.targets.openvino import OpenVINOTarget

            return OpenVINOTarget().run(version / "model.xml", feeds)
        from onnxdeploy.targets.onnxruntime import OnnxRuntimeTarget

        return OnnxRuntimeTarget().run(version / "model.onnx", feeds)


__all__ = [
    "TRITON_BACKENDS", "TritonRepository", "TritonTarget", "find_model_folder", "kserve_manifest", "model_name_for",
    "repository_model", "run_python_model", "triton_target", "triton_config", "validate_triton_config",
    "write_triton_repository"]


def triton_target(target, backend: str) -> TritonTarget:
    """The Triton target with ``backend`` (``--triton-backend``); an error when ``target`` is another target."""
    from onnxdeploy.targets.base import get_target

    if get_target(target).name != "triton":
        raise UserInputError("--triton-backend applies to --target triton", hint="add --target triton")
    return TritonTarget(backend)
