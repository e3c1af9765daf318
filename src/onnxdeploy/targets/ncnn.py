"""ncnn: convert ONNX to ncnn's ``.param`` + ``.bin`` with ``pnnx`` and run them with the ``ncnn`` Python package.

pnnx (a native tool) runs in a child process (:func:`onnxdeploy._proc.run_child`) inside a private folder: it writes
a handful of side files (``.pnnx.param``, ``_pnnx.py``, ``_ncnn.py``, ``.pnnx.onnx``, ...); only the ``.param``, the
``.bin`` and ``<name>.io.json`` (the ONNX names, dtypes and batch axes of the blobs) are published.

ncnn's traps, handled here: its blobs drop the batch axis (pnnx says per blob which axis, ``batch_index``; a
``(1, 128)`` mask keeps its leading 1), so inputs are fed and outputs read back in ONNX shapes, and a batch above 1 is
run one item at a time; with 2 threads its OpenMP runtime busy-waits (1.15 s vs 0.1 s per run measured), so the
passive wait policy is set before ncnn is imported; ncnn has no int -> float cast, so an integer input read only
through a Cast to float (the attention mask after ``legalize``) is fed as float.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from onnxdeploy.errors import UnsupportedError, require
from onnxdeploy.targets.base import Target

CONVERT_TIMEOUT_S = 600.0
_INSTALL = "pip install 'onnxdeploy[ncnn]'"
# pnnx names layers it could not lower to ncnn after the PyTorch/ONNX op: ncnn then refuses to load the .param
_UNLOWERED = re.compile(r"^(torch\.|Tensor\.|F\.|nn\.|aten::|prim::|pnnx\.|GatherND\b|ScatterND\b)")


def import_ncnn():
    """The ncnn module, with OpenMP's passive wait policy set first (libgomp reads it once, when ncnn loads)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return require("ncnn", extra="ncnn", purpose="running an ncnn model")


class NcnnTarget(Target):
    name = "ncnn"
    description = "ncnn (.param/.bin via pnnx), CPU"
    opsets = (7, 23)
    dtypes = frozenset({"float32", "float16", "int32", "int64"})
    suffix = ".param"
    source = "pnnx (ONNX -> ncnn); ncnn refuses layers pnnx leaves unlowered"
    precisions = ("fp32", "fp16")
    needs_float_mask = True  # legalize rewrites boolean attention masks into additive float masks
    needs_embed_gather = True  # legalize writes embedding Gathers in the form pnnx lowers to Embed
    needs_static_dims = True  # pnnx leaves shape arithmetic over symbolic dims unlowered: deploy fixes --dim
    threads = 1
    slower_because = "ncnn runs a batch above 1 one item at a time (its blobs have no batch axis)"

    def available(self) -> tuple[bool, str]:
        import importlib.util

        missing = [m for m in ("ncnn", "pnnx") if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"the {' and '.join(missing)} package(s) are not installed ({_INSTALL})"
        return True, ""

    # ------------------------------------------------------------------ convert
    def convert(self, model_path: Path, output: Path, *, precision: str = "fp32",
                calibration: Sequence[Mapping[str, np.ndarray]] | None = None):
        pnnx = require("pnnx", extra="ncnn", purpose="converting to ncnn")
        param = self.artifact_path(output)
        with tempfile.TemporaryDirectory(prefix="onnxdeploy-pnnx-") as tmp:
            work = Path(tmp)
            src, io_spec = _prepare(model_path, work / "model.onnx", getattr(self, "dims", None) or {})
            files = {k: work / f"model.{k}" for k in ("pnnxparam", "pnnxbin", "pnnxpy", "pnnxonnx", "ncnnparam",
                                                     "ncnnbin", "ncnnpy")}
            argv = [*self.command_prefix, pnnx.EXEC_PATH, str(src), "fp16=" + ("1" if precision == "fp16" else "0"),
                    *(f"{k}={v}" for k, v in files.items()), *_shape_args(io_spec)]
            from onnxdeploy._proc import run_child

            proc = run_child(argv, cwd=work, timeout=CONVERT_TIMEOUT_S, what="pnnx")
            if proc.returncode != 0 or not files["ncnnparam"].exists():
                raise UnsupportedError(f"pnnx could not convert the model: {_last_line(proc.stdout + proc.stderr)}",
                                       hint="run `onnxdeploy check MODEL --target ncnn` for the operators")
            text = files["ncnnparam"].read_text()
            bad = sorted({ln.split()[0] for ln in text.splitlines()[2:] if ln and _UNLOWERED.match(ln.split()[0])})
            if bad:
                raise UnsupportedError(f"ncnn has no layer for {', '.join(bad)} (left by pnnx)",
                                       hint="run `onnxdeploy legalize MODEL --target ncnn` (boolean attention masks)"
                                            " or fix the input sizes (--fix-dims --dim NAME=VALUE) so shape "
                                            "arithmetic folds away")
            _blob_axes(files["ncnnpy"].read_text(), io_spec)
            shutil.move(files["ncnnparam"], param)
            shutil.move(files["ncnnbin"], param.with_suffix(".bin"))
        io_json = param.with_suffix(".io.json")
        io_json.write_text(json.dumps(io_spec, indent=1))
        notes = ["converted by pnnx " + ("with fp16 weights" if precision == "fp16" else "with fp32 weights (fp16=0)")]
        if io_spec.get("float_inputs"):
            notes.append("integer inputs read only as float are fed as float: " + ", ".join(io_spec["float_inputs"]))
        return [param, param.with_suffix(".bin"), io_json], notes, None

    command_prefix: tuple[str, ...] = ()  # e.g. ("unshare", "-rn") to run pnnx without any network (tests)

    # ------------------------------------------------------------------ run
    def run(self, artifact: Path, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        net, spec = _net(str(artifact), os.path.getmtime(artifact), int(self.threads))
        missing = [i["name"] for i in spec["inputs"] if i["name"] not in feeds]
        if missing:
            raise UnsupportedError(f"{artifact}: no value for the input(s) {', '.join(missing)}")
        arrays = {i["name"]: np.asarray(feeds[i["name"]]) for i in spec["inputs"]}
        batch = {a.shape[0] for a in arrays.values() if a.ndim}
        if len(batch) == 1 and (n := batch.pop()) > 1 and all(a.ndim for a in arrays.values()):
            parts = [self._run_one(net, spec, {k: a[b:b + 1] for k, a in arrays.items()}) for b in range(n)]
            return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
        return self._run_one(net, spec, arrays)

    @staticmethod
    def _run_one(net, spec: dict, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        ncnn = import_ncnn()
        kept = []  # ncnn reads the numpy buffers while it runs: keep every array (and Mat) alive until the end
        ex = net.create_extractor()
        for i in spec["inputs"]:
            a = np.ascontiguousarray(arrays[i["name"]].astype(i["feed_dtype"], copy=False))
            if i["batch_index"] == 233 and a.ndim == 2:
                a = a[None]  # a blob pnnx keeps whole (the (1, S) mask) is read as (1, 1, S): ncnn's trap
            # clone: a Mat over a numpy buffer has no refcount, and ncnn dereferences it when an in-place layer
            # (UnaryOp, BinaryOp with a scalar: the mask arithmetic) reads an input blob directly: a segfault
            mat = ncnn.Mat(a, batch_index=i["batch_index"]).clone()
            kept += [a, mat]
            ex.input(i["blob"], mat)
        out = {}
        for o in spec["outputs"]:
            rc, mat = ex.extract(o["blob"])
            if rc != 0:
                raise UnsupportedError(f"ncnn failed to compute {o['name']!r} (error {rc})")
            arr = np.array(mat.numpy(batch_index=o["batch_index"]), copy=True)
            while arr.ndim < o["rank"]:
                arr = arr[None]
            while arr.ndim > o["rank"] and arr.shape[0] == 1:
                arr = arr[0]  # a (1, S) input fed as (1, 1, S) gives its elementwise outputs that extra axis
            out[o["name"]] = arr.astype(o["dtype"], copy=False)
        del kept
        return out

    def interface(self, artifact: Path, reference):
        """The ONNX names the artefact's blobs stand for (its ``.io.json``), typed as in ``reference``."""
        from onnxdeploy.targets.mnn import header_from_names

        spec = json.loads(Path(artifact).with_suffix(".io.json").read_text())
        return header_from_names(reference, [i["name"] for i in spec["inputs"]], [o["name"] for o in spec["outputs"]])


@functools.lru_cache(maxsize=4)
def _net(path: str, mtime: float, threads: int):
    ncnn = import_ncnn()
    side = Path(path).with_suffix(".io.json")
    if not side.exists():
        raise UnsupportedError(f"{path}: {side.name} is missing (written by `onnxdeploy convert --target ncnn`)",
                               hint="convert the model again, or keep the .io.json beside the .param")
    spec = json.loads(side.read_text())
    net = ncnn.Net()
    for flag in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage"):
        setattr(net.opt, flag, False)  # compute in fp32 (an fp16 .bin is widened on load)
    net.opt.num_threads = threads
    net.opt.openmp_blocktime = 0
    if net.load_param(path) != 0 or net.load_model(str(Path(path).with_suffix(".bin"))) != 0:
        raise UnsupportedError(f"ncnn could not load {path}")
    return net, spec


def _prepare(model_path: Path, out: Path, dims: Mapping[str, int]):
    """A copy of the model for pnnx (integer inputs read only through Cast-to-float made float inputs) and the
    I/O description: names, dtypes, ranks and the shapes pnnx converts at (``dims`` or the verifier's two sizes)."""
    import onnx_ir as ir

    from onnxdeploy._io import load, save
    from onnxdeploy._run import input_specs, output_specs, verification_plans

    model = load(model_path)
    model.ir_version = min(model.ir_version, 10)  # pnnx embeds an onnxruntime that reads IR <= 13 (onnx 1.23 writes 14)
    float_inputs = []
    for v in model.graph.inputs:
        users = [u for u, _ in v.uses()]
        if v.dtype is not None and v.dtype.is_integer() and users and all(
                u.op_type == "Cast" and u.attributes["to"].value == ir.DataType.FLOAT for u in users):
            v.dtype = ir.DataType.FLOAT
            for u in users:
                u.outputs[0].replace_all_uses_with(v)
            float_inputs.append(v.name)
    if float_inputs:
        from onnx_ir.passes.common import RemoveUnusedNodesPass

        RemoveUnusedNodesPass()(model)
    save(model, out)
    specs = input_specs(out)
    names = [n for s in specs for n in s.shape if isinstance(n, str)]
    plan = verification_plans(specs, list(dict.fromkeys(names)), dict(dims))[0]
    shapes = [[[d if isinstance(d, int) else a[d] for d in s.shape] for s in specs] for a in plan]
    spec = {"inputs": [{"name": s.name, "blob": f"in{k}", "dtype": str(np.dtype(s.dtype)),
                        "feed_dtype": "float32" if np.dtype(s.dtype).kind == "f" else "int32",
                        "rank": len(s.shape), "batch_index": 233} for k, s in enumerate(specs)],
            "outputs": [{"name": s.name, "blob": f"out{k}", "dtype": str(np.dtype(s.dtype)), "rank": len(s.shape),
                         "batch_index": 233} for k, s in enumerate(output_specs(out))],
            "shapes": shapes, "float_inputs": float_inputs}
    return out, spec


def _shape_args(spec: dict) -> list[str]:
    def one(shapes):
        kinds = ["f32" if i["feed_dtype"] == "float32" else "i64" if i["dtype"] == "int64" else "i32"
                 for i in spec["inputs"]]
        return ",".join(f"[{','.join(map(str, s))}]{k}" for s, k in zip(shapes, kinds))

    args = [f"inputshape={one(spec['shapes'][0])}"]
    if len(spec["shapes"]) > 1 and spec["shapes"][1] != spec["shapes"][0]:
        args.append(f"inputshape2={one(spec['shapes'][1])}")
    return args


def _blob_axes(ncnn_py: str, spec: dict) -> None:
    """Read the batch axis pnnx chose for each blob from the script it wrote (``ncnn.Mat(x, batch_index=K)``)."""
    ins = dict(re.findall(r'ex\.input\("(\w+)", ncnn\.Mat\(\w+\.numpy\(\), batch_index=(\d+)\)', ncnn_py))
    outs = dict(re.findall(r'(\w+)\.numpy\(batch_index=(\d+)\)', ncnn_py))
    for i in spec["inputs"]:
        i["batch_index"] = int(ins.get(i["blob"], 233))
    for o in spec["outputs"]:
        o["batch_index"] = int(outs.get(o["blob"], 233))


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if any(w in ln.lower() for w in ("error", "fail", "not support", "unsupported"))]
    return (errors or lines or ["no output"])[-1]
