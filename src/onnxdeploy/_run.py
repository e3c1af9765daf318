"""Run models on onnxruntime: input specs, input files, seeded input synthesis, validation, sessions.

Every command that runs a model (run, probe, compare, optimize/quantize verification, bench) goes through
:func:`prepare_inputs` and :func:`create_session`, so the same flags mean the same thing everywhere.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from onnxdeploy.errors import ModelFileError, OnnxDeployError, UnsupportedError, UserInputError
from onnxdeploy._io import ModelLike, as_proto
from onnxdeploy._llm import cache_layout

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort

Dim = "int | str | None"


@dataclass(frozen=True)
class InputSpec:
    """A graph input that must be fed: name, numpy dtype, and dims (int, symbolic name, or None if unknown)."""

    name: str
    dtype: np.dtype
    shape: tuple | None  # None: rank unknown

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": str(self.dtype), "shape": None if self.shape is None else list(self.shape)}


def _np_dtype(elem_type: int) -> np.dtype:
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def _dims(type_proto) -> tuple | None:
    tensor = type_proto.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims = []
    for d in tensor.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def input_specs(model: ModelLike) -> list[InputSpec]:
    """The inputs a caller must feed (graph inputs that are not initializers)."""
    proto = as_proto(model)
    inits = {t.name for t in proto.graph.initializer}
    specs = []
    for vi in proto.graph.input:
        if vi.name in inits:
            continue
        if not vi.type.HasField("tensor_type"):
            raise UserInputError(f"input {vi.name!r} is not a tensor; only tensor inputs are supported")
        specs.append(InputSpec(vi.name, _np_dtype(vi.type.tensor_type.elem_type), _dims(vi.type)))
    return specs


def output_specs(model: ModelLike) -> list[InputSpec]:
    proto = as_proto(model)
    return [
        InputSpec(vi.name, _np_dtype(vi.type.tensor_type.elem_type), _dims(vi.type))
        for vi in proto.graph.output
        if vi.type.HasField("tensor_type")
    ]


# ---------------------------------------------------------------- input files


def read_tensor_file(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.npy`` array or a serialized ``TensorProto`` (``.pb``, the ONNX test-data layout)."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such input file")
    from onnxdeploy._io import note_read

    note_read(p)  # no writer of this operation may replace it
    if p.suffix == ".npy":
        try:
            return np.load(p, allow_pickle=False)
        except (ValueError, EOFError) as err:
            raise ModelFileError(f"{p}: not a valid .npy file ({err})") from err
    if p.suffix == ".pb":
        import onnx
        from google.protobuf.message import DecodeError
        from onnx import numpy_helper

        tensor = onnx.TensorProto()
        try:
            tensor.ParseFromString(p.read_bytes())
        except (DecodeError, ValueError, TypeError) as err:
            raise ModelFileError(f"{p}: not a valid TensorProto .pb file ({err})") from err
        if tensor.data_location == onnx.TensorProto.EXTERNAL:  # never follow a path written in an input file
            raise ModelFileError(f"{p}: the tensor's data is in an external file", hint="save it as .npy")
        try:
            return numpy_helper.to_array(tensor)
        except (ValueError, TypeError, NotImplementedError, KeyError) as err:
            raise ModelFileError(f"{p}: not a valid TensorProto .pb file ({err})") from err
    raise UserInputError(f"{p}: unsupported input file type {p.suffix!r}", hint="use .npy, .pb or --inputs FILE.npz")


def read_tensor_name(path: str | os.PathLike) -> str | None:
    """The tensor name stored in a TensorProto ``.pb`` file (None for .npy or unnamed tensors)."""
    p = Path(path)
    if p.suffix != ".pb":
        return None
    import onnx

    tensor = onnx.TensorProto()
    tensor.ParseFromString(p.read_bytes())
    return tensor.name or None


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such file")
    from onnxdeploy._io import note_read

    note_read(p)  # no writer of this operation may replace it
    import zipfile
    import zlib

    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, KeyError) as err:
        raise ModelFileError(f"{p}: not a valid .npz file ({err or type(err).__name__})") from err


def read_test_data_dir(folder: str | os.PathLike, specs: Sequence[InputSpec], prefix: str) -> dict[str, np.ndarray]:
    """Read ``<prefix>_K.pb`` files of an ONNX test-data folder, named by the tensor name or by position."""
    files = sorted(Path(folder).glob(f"{prefix}_*.pb"), key=lambda f: int(f.stem.split("_")[-1]))
    result = {}
    for i, f in enumerate(files):
        name = read_tensor_name(f) or (specs[i].name if i < len(specs) else f.stem)
        result[name] = read_tensor_file(f)
    return result


# ---------------------------------------------------------------- synthesis and validation


DEFAULT_TOKENS = 128
DEFAULT_IMAGE_SIDE = 224


def default_dim(spec: InputSpec, axis: int) -> int:
    """The size a synthesized input gets for a symbolic or unknown dim that ``--dim`` does not set.

    Batch (axis 0) 1; the sequence axis of a rank-2 integer input (token ids, masks) 128; the spatial axes of a
    rank-4 float input (NCHW images) 224; anything else 1. Every command that synthesizes inputs uses these.
    """
    rank = len(spec.shape or ())
    if axis == 0:
        return 1
    if spec.dtype.kind in "iub" and rank == 2 and axis == 1:
        return DEFAULT_TOKENS
    if spec.dtype.kind == "f" and rank == 4 and axis >= 2:
        return DEFAULT_IMAGE_SIDE
    return 1


def default_dims(specs: Sequence[InputSpec], dims: Mapping[str, int] | None = None) -> dict[str, int]:
    """``dims`` completed with :func:`default_dim` for every other symbolic dim of ``specs`` (first use wins)."""
    out: dict[str, int] = {}
    for spec in specs:
        for axis, d in enumerate(spec.shape or ()):
            if isinstance(d, str) and d not in out:
                out[d] = default_dim(spec, axis)
    layout = cache_layout(specs)  # a decoder with a KV cache: past 16 unless set, total = past + sequence
    if layout is not None:
        return layout.fit(dims or {}, out)
    out.update(dims or {})
    return out


def _resolve_shape(spec: InputSpec, dims: Mapping[str, int], shape: Sequence | None) -> tuple[int, ...]:
    if shape is not None:
        resolved = []
        for i, d in enumerate(shape):
            if isinstance(d, str):
                if d not in dims:
                    raise UserInputError(f"--shape {spec.name}: dim {i} is {d!r}; give a number")
                d = dims[d]
            resolved.append(int(d))
        return tuple(resolved)
    if spec.shape is None:
        raise UserInputError(
            f"input {spec.name!r} has no declared shape", hint=f"give one with --shape {spec.name}=1x3x224x224"
        )
    resolved = []
    for axis, d in enumerate(spec.shape):
        if isinstance(d, int):
            resolved.append(d)
        elif isinstance(d, str) and d in dims:
            resolved.append(dims[d])
        else:
            resolved.append(default_dim(spec, axis))
    return tuple(resolved)


def _random_array(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dtype.kind in "iu":
        return rng.integers(0, 4, size=shape).astype(dtype)
    if dtype.kind == "f" or dtype.kind == "V":
        return rng.standard_normal(size=shape).astype(dtype)
    if dtype.kind == "c":
        return (rng.standard_normal(size=shape) + 1j * rng.standard_normal(size=shape)).astype(dtype)
    if dtype.kind in "OSU":
        return np.full(shape, "a", dtype=object)
    raise UserInputError(f"cannot synthesize inputs of dtype {dtype}", hint="pass the input with --input NAME=FILE")


def synthesize_inputs(
    model: ModelLike,
    *,
    dims: Mapping[str, int] | None = None,
    shapes: Mapping[str, Sequence] | None = None,
    seed: int = 0,
    specs: Sequence[InputSpec] | None = None,
    dtypes: Mapping[str, np.dtype] | None = None,
) -> dict[str, np.ndarray]:
    """Seeded random inputs from the declared dtypes and shapes.

    Symbolic dims take ``dims[name]``, else the size of :func:`default_dims` (a dim named in several inputs gets
    one size); ``shapes[input]`` overrides one input's shape. Floats are standard
    normal; integers are small non-negative values (safe as indices); booleans random. Inputs whose role is known
    get values that make the model run (see :func:`input_roles`): a Resize ``roi`` is empty (or the identity box
    when its length is fixed), Resize/Upsample ``scales`` are ones (same size), Resize ``sizes`` is the data
    input's shape, and integer or boolean inputs named like ``*mask*`` are ones.
    """
    if specs is None:
        model = as_proto(model)
        specs = input_specs(model)
    specs = list(specs)
    layout = cache_layout(specs)  # a decoder with a KV cache: mask of past + sequence ones, positions past..
    dims = default_dims(specs, dims)
    shapes = dict(shapes or {})
    check_input_names(shapes, specs, "--shape")
    roles = input_roles(model)
    rng = np.random.default_rng(seed)
    result: dict[str, np.ndarray] = {}
    check_synthesis_size(specs, dims, shapes, dtypes)
    for s in specs:
        shape = _resolve_shape(s, dims, shapes.get(s.name))
        value = _random_array(rng, np.dtype((dtypes or {}).get(s.name, s.dtype)), shape)  # always drawn, so other inputs don't depend on roles
        if s.name not in shapes:
            value = _role_value(roles.get(s.name), s, shape, value, result, dims, shapes, specs)
            fitted = layout.values(s.name, dims, s.dtype) if layout is not None else None
            value = fitted if fitted is not None else value
        result[s.name] = value
    return result


MAX_SYNTHESIZED_INPUT_BYTES = 2**31
MAX_SYNTHESIZED_TOTAL_BYTES = 4 * 2**30


def check_synthesis_size(specs: Sequence[InputSpec], dims: Mapping[str, int], shapes: Mapping[str, Sequence],
                         dtypes: Mapping[str, np.dtype] | None = None) -> None:
    """Refuse to synthesize an input above 2 GiB, or inputs above 4 GiB together, before allocating anything."""
    total = 0
    for s in specs:
        shape = _resolve_shape(s, dims, shapes.get(s.name))
        if any(d < 0 for d in shape):
            raise UserInputError(f"input {s.name!r}: negative dim in shape {_fmt_shape(shape)}",
                                 hint=f"give its shape with --shape {s.name}=... or --dim NAME=SIZE")
        dtype = np.dtype((dtypes or {}).get(s.name, s.dtype))
        size = max(dtype.itemsize, 8 if dtype.kind in "OSU" else 1)
        for d in shape:
            size *= d
        total += size
        if size > MAX_SYNTHESIZED_INPUT_BYTES:
            raise UserInputError(
                f"input {s.name!r} of shape {_fmt_shape(shape)} ({dtype}) would take {size / 2**30:.3g} GiB, "
                f"more than the {MAX_SYNTHESIZED_INPUT_BYTES // 2**30} GiB this tool synthesizes",
                hint=f"give a smaller shape with --shape {s.name}=... or --dim NAME=SIZE, or pass the input with "
                     f"--input {s.name}=FILE.npy")
    if total > MAX_SYNTHESIZED_TOTAL_BYTES:
        raise UserInputError(
            f"the synthesized inputs would take {total / 2**30:.3g} GiB together, more than "
            f"{MAX_SYNTHESIZED_TOTAL_BYTES // 2**30} GiB",
            hint="give smaller shapes with --shape NAME=... or --dim NAME=SIZE")


def input_roles(model: ModelLike) -> dict[str, tuple[str, int, str]]:
    """Graph inputs consumed by an operator input whose values matter: {input: (op type, index, data input)}."""
    import onnx

    if not isinstance(model, onnx.ModelProto) and not isinstance(model, (str, os.PathLike)):
        try:  # an ir.Model: read its nodes directly instead of serializing its weights
            graph = model.graph
            graph_inputs = {v.name for v in graph.inputs}
            nodes = [(n.op_type, n.domain, [v.name if v is not None else "" for v in n.inputs]) for n in graph]
        except AttributeError:
            return {}
    else:
        try:
            proto = as_proto(model)
        except OnnxDeployError:
            return {}
        graph_inputs = {vi.name for vi in proto.graph.input}
        nodes = [(n.op_type, n.domain, list(n.input)) for n in proto.graph.node]
    roles: dict[str, tuple[str, int, str]] = {}
    for op_type, domain, inputs in nodes:
        if domain not in ("", "ai.onnx") or op_type not in ("Resize", "Upsample"):
            continue
        for index, name in enumerate(inputs):
            if index and name in graph_inputs:
                roles.setdefault(name, (op_type, index, inputs[0]))
        if op_type == "Resize" and len(inputs) > 3 and inputs[3] and inputs[2] in roles:
            roles[inputs[2]] = ("Resize", -2, inputs[0])  # scales must be empty when sizes is given
    return roles


def _role_value(role, spec, shape, value, done, dims, shapes, specs) -> np.ndarray:
    dtype = spec.dtype
    if role is None:
        if dtype.kind in "biu" and "mask" in spec.name.lower():
            return np.ones(shape, dtype=dtype)
        return value
    op, index, data = role
    if op == "Resize" and index == 1:  # roi: only used by tf_crop_and_resize
        n = int(np.prod(shape)) if shape else 0
        if spec.shape and all(isinstance(d, int) and d > 0 for d in spec.shape) and n % 2 == 0:
            return np.concatenate([np.zeros(n // 2), np.ones(n // 2)]).astype(dtype).reshape(shape)
        return np.zeros((0,), dtype=dtype)
    if (op == "Resize" and index == 2) or (op == "Upsample" and index == 1):
        return np.ones(shape, dtype=dtype)
    if op == "Resize" and index == -2:
        return np.zeros((0,), dtype=dtype)
    if op == "Resize" and index == 3 and dtype.kind in "iu":
        if data in done:
            return np.asarray(done[data].shape, dtype=dtype)
        for other in specs:
            if other.name == data:
                try:
                    return np.asarray(_resolve_shape(other, dims, shapes.get(data)), dtype=dtype)
                except UserInputError:
                    break
    return value


def check_input_names(given: Mapping[str, object], specs: Sequence[InputSpec], option: str) -> None:
    known = [s.name for s in specs]
    for name in given:
        if name not in known:
            from onnxdeploy._suggest import did_you_mean

            raise UserInputError(f"{option}: the model has no input named {name!r}",
                                 hint=did_you_mean(name, known, what="inputs"))


def validate_inputs(specs: Sequence[InputSpec], feeds: Mapping[str, np.ndarray]) -> None:
    """Refuse unknown or missing inputs, wrong dtypes, wrong ranks, and shapes that contradict fixed dims."""
    check_input_names(feeds, specs, "input")
    for spec in specs:
        if spec.name not in feeds:
            raise UserInputError(
                f"missing input {spec.name!r} ({spec.dtype}, shape {_fmt_shape(spec.shape)})",
                hint=f"pass --input {spec.name}=FILE.npy, or leave all inputs out to synthesize them",
            )
        arr = np.asarray(feeds[spec.name])
        if arr.dtype != spec.dtype:
            raise UserInputError(
                f"input {spec.name!r} has dtype {arr.dtype}, the model expects {spec.dtype}",
                hint=f"convert it, e.g. np.asarray(x, dtype=np.{spec.dtype})",
            )
        if spec.shape is None or (len(spec.shape) == 0 and arr.size == 0 and arr.ndim == 1):
            continue  # an empty 1-D tensor for a scalar input is onnxruntime's "not given" (e.g. Resize roi)
        if arr.ndim != len(spec.shape):
            raise UserInputError(
                f"input {spec.name!r} has rank {arr.ndim} (shape {_fmt_shape(arr.shape)}), "
                f"the model expects rank {len(spec.shape)} ({_fmt_shape(spec.shape)})"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
            if isinstance(want, int) and want != got:
                raise UserInputError(
                    f"input {spec.name!r} has shape {_fmt_shape(arr.shape)}, but dim {axis} is fixed to {want} "
                    f"(model expects {_fmt_shape(spec.shape)})"
                )


def _fmt_shape(shape) -> str:
    if shape is None:
        return "?"
    return "x".join("?" if d is None else str(d) for d in shape) or "scalar"


# ---------------------------------------------------------------- inputs


@dataclass
class Inputs:
    """What to feed a model: given tensors (files, an ``.npz`` or ``test_data_set_N`` folder, arrays) first; anything
    not given is synthesized, seeded, at ``dims`` (symbolic dim -> size) and ``shapes`` (input -> dims, or
    ``(dims, dtype)``). ``fixed=True`` means the user gave every size (no second verification shape)."""

    files: Mapping[str, str | os.PathLike] = field(default_factory=dict)
    npz: str | os.PathLike | None = None
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)
    dims: Mapping[str, int] = field(default_factory=dict)
    shapes: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0

    @classmethod
    def coerce(cls, value: "Inputs | Mapping[str, np.ndarray] | None") -> "Inputs":
        """An :class:`Inputs` from an Inputs, a dict of arrays (given tensors) or None (all synthesized)."""
        if value is None:
            return cls()
        if isinstance(value, Inputs):
            return value
        return cls(arrays=dict(value))

    @property
    def given(self) -> bool:
        """Whether any tensor is given (then the model is verified on exactly those, at one shape)."""
        return bool(self.files or self.npz is not None or self.arrays)

    def shape_dims(self) -> dict[str, list]:
        """``shapes`` without dtypes: input -> dims."""
        return {k: list(_split_typed(v)[0]) for k, v in self.shapes.items()}

    def dtypes(self) -> dict[str, np.dtype]:
        """Inputs whose dtype the user set with ``NAME=SHAPE:DTYPE``."""
        out = {}
        for k, v in self.shapes.items():
            dtype = _split_typed(v)[1]
            if dtype is not None:
                out[k] = np.dtype(dtype)
        return out

    def feeds(self, model: Any, *, dims: Mapping[str, int] | None = None,
              specs: Sequence[InputSpec] | None = None) -> dict[str, np.ndarray]:
        """The feeds for ``model`` (path, proto, ir.Model): given tensors, the rest synthesized at ``dims`` (default:
        this object's dims), validated against the declared inputs."""
        return prepare_inputs(model, inputs=dict(self.arrays), input_files=dict(self.files), npz=self.npz,
                              dims={**self.dims, **(dims or {})}, shapes=self.shape_dims(), seed=self.seed,
                              specs=specs, dtypes=self.dtypes())

    def plans(self, specs: "Sequence[InputSpec]", *, vary: bool = True) -> list[list[dict[str, int]]]:
        """Dims assignments to verify at, cheapest plan first (see :func:`verification_plans`); one assignment when
        tensors are given. Sizes the user gave (``dims``) are verified as given, and, with ``vary`` (the candidate
        keeps those dims symbolic), also at a second size, so a model that only works at one size is caught."""
        if self.given:
            return [[dict(self.dims)]]
        shaped = set(self.shapes)
        names = symbolic_input_dims(s for s in specs if s.name not in shaped)
        plans = verification_plans(specs, names, self.dims)
        given = [n for n in names if n in self.dims]
        if vary and given and plans == [[dict(self.dims)]]:
            other = {**self.dims, **{n: 2 if self.dims[n] == 1 else max(1, self.dims[n] * 3 // 4) for n in given}}
            if other != dict(self.dims):
                plans = [[dict(self.dims), other]]
        return plans

    def with_dims(self, dims: Mapping[str, int]) -> "Inputs":
        return Inputs(self.files, self.npz, self.arrays, {**self.dims, **dims}, self.shapes, self.seed)

    @classmethod
    def merge(cls, inputs: "Inputs | Mapping[str, np.ndarray] | None", *,
              files: Mapping[str, str | os.PathLike] | None = None, npz: str | os.PathLike | None = None,
              dims: Mapping[str, int] | None = None, shapes: Mapping[str, Any] | None = None,
              seed: int | None = None) -> "Inputs":
        """One :class:`Inputs` from ``inputs`` (an Inputs, arrays by name or None) and the older loose keywords the
        verbs still accept; a keyword given wins over the same field of ``inputs``. Loose ``shapes`` are plain dims
        (a tuple such as ``(4, "seq")`` is never read as dims plus a dtype)."""
        base = cls.coerce(inputs)
        return cls(files={**base.files, **(files or {})}, npz=npz if npz is not None else base.npz,
                   arrays=base.arrays, dims={**base.dims, **(dims or {})},
                   shapes={**base.shapes, **{k: list(v) for k, v in (shapes or {}).items()}},
                   seed=seed if seed else base.seed)


def _split_typed(value: Any) -> tuple[Sequence, Any]:
    if isinstance(value, tuple) and len(value) == 2 and (value[1] is None or isinstance(value[1], (str, np.dtype, type))):
        return value[0], value[1]
    return value, None


def symbolic_input_dims(specs: Iterable[InputSpec]) -> list[str]:
    """Names of the symbolic dims of the given input specs, in order of first appearance."""
    names: list[str] = []
    for spec in specs:
        for d in spec.shape or ():
            if isinstance(d, str) and d not in names:
                names.append(d)
    return names


def verification_plans(specs: Sequence[InputSpec], names: Sequence[str],
                       dims: Mapping[str, int]) -> list[list[dict[str, int]]]:
    """Input sizes to verify at, cheapest plan first: each plan is two different assignments of the free symbolic
    dims (one assignment when all are fixed). Small sizes first (batch-like dims 1 and 2, others 16 and 24); then
    the sizes every command synthesizes by default (``run.default_dims``: tokens 128, image sides 224) and a second
    set at 3/4 of them, for models that need their real sizes (position tables, fixed windows)."""
    free = [n for n in names if n not in dims]
    if not free:
        return [[dict(dims)]]
    full = default_dims(specs, dims)
    small = [{**dims, **{n: 1 if full[n] == 1 else 16 for n in free}},
             {**dims, **{n: 2 if full[n] == 1 else 24 for n in free}}]
    real = [{**dims, **{n: full[n] for n in free}},
            {**dims, **{n: 2 if full[n] == 1 else max(8, full[n] * 3 // 4) for n in free}}]
    plans = [small, real] if real[0] != small[0] else [small]
    layout = cache_layout(specs)  # a KV-cache decoder: a prompt chunk and a decode step, total = past + sequence
    return layout.adjust_plans(plans, dims) if layout is not None else plans


def dims_label(assignment: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in assignment.items()) or "static shapes"



def prepare_inputs(
    model: ModelLike,
    *,
    inputs: "Inputs | Mapping[str, np.ndarray] | None" = None,
    input_files: Mapping[str, str | os.PathLike] | None = None,
    npz: str | os.PathLike | None = None,
    dims: Mapping[str, int] | None = None,
    shapes: Mapping[str, Sequence] | None = None,
    seed: int = 0,
    specs: Sequence[InputSpec] | None = None,
    dtypes: Mapping[str, np.dtype] | None = None,
) -> dict[str, np.ndarray]:
    """Collect feeds from arrays, files and an .npz (or an ONNX ``test_data_set_N`` folder of ``input_K.pb``);
    synthesize whatever is still missing (``dtypes`` overrides a synthesized input's dtype); validate all.

    ``inputs`` is arrays by name, or the one input description (:class:`Inputs`), whose fields then fill the
    keywords not given."""
    if isinstance(inputs, Inputs):
        given = Inputs.merge(inputs, files=input_files, npz=npz, dims=dims, shapes=shapes, seed=seed)
        inputs, input_files, npz, dims, shapes, seed = (dict(given.arrays), given.files, given.npz, given.dims,
                                                        given.shape_dims(), given.seed)
        dtypes = {**given.dtypes(), **(dtypes or {})}
    if specs is None or isinstance(model, (str, os.PathLike)):
        model = model_structure(model)  # parse once (a file without its weights): specs, synthesis and roles share it
    specs = list(specs) if specs is not None else input_specs(model)
    feeds: dict[str, np.ndarray] = {}
    if npz is not None and Path(npz).is_dir():
        feeds.update(read_test_data_dir(npz, specs, "input"))
        if not feeds:
            raise UserInputError(f"--inputs {npz}: no input_K.pb files in this folder")
    elif npz is not None:
        feeds.update(read_npz(npz))
    check_input_names(input_files or {}, specs, "--input")  # a misspelt name is named before any file is read
    for name, path in (input_files or {}).items():
        feeds[name] = read_tensor_file(path)
    feeds.update(inputs or {})
    check_input_names(feeds, specs, "input")
    missing = [s for s in specs if s.name not in feeds]
    layout = cache_layout(specs) if missing and feeds else None
    if layout is not None:  # the synthesized rest of a KV-cache decoder's inputs matches the given tensors
        dims = layout.fit({**layout.given_dims(feeds), **(dims or {})})
    if missing:
        feeds.update(synthesize_inputs(model, dims=dims, shapes=shapes, seed=seed, specs=missing, dtypes=dtypes))
    validate_inputs(specs, feeds)
    return feeds


# ---------------------------------------------------------------- sessions

_PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}


def resolve_providers(providers: Sequence[str] | None) -> list[str]:
    """Map short names (cpu, cuda, ...) to onnxruntime provider names; refuse ones this build lacks."""
    import onnxruntime as ort

    if not providers:
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    resolved = []
    for p in providers:
        full = _PROVIDER_ALIASES.get(p.lower(), p)
        if full not in available:
            raise UserInputError(
                f"execution provider {p!r} is not available in this onnxruntime build",
                hint=f"available: {', '.join(available)}",
            )
        resolved.append(full)
    return resolved


def create_session(
    model: ModelLike,
    *,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    optimization_level: str | None = None,
    profile: bool = False,
    config: Mapping[str, str] | None = None,
) -> "ort.InferenceSession":
    """An onnxruntime session for a path, a ModelProto, an ``ir.Model`` (external data resolved from its folder) or
    the bytes of a serialized ModelProto with embedded weights (no second serialization). ``config``: session config
    entries (``{"session.intra_op.allow_spinning": "0"}``)."""
    import onnxruntime as ort

    ort.set_default_logger_severity(4)  # failures surface as SessionError; don't also print ORT's own log line
    options = ort.SessionOptions()
    options.log_severity_level = 4
    if threads:
        options.intra_op_num_threads = threads
    if optimization_level:
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization_level]
    if profile:
        options.enable_profiling = True
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    provider_list = resolve_providers(providers)
    from onnxdeploy._bounds import check_loops

    if isinstance(model, (str, os.PathLike)):
        check_loops(model_structure(model), what=str(model))  # validates the file and its external data first
        source: object = str(model)
    elif isinstance(model, (bytes, bytearray)):  # an already serialized ModelProto (embedded weights)
        source = bytes(model)
    else:
        check_loops(model)  # a Loop that would run for ever is refused before onnxruntime starts it
        source, base_dir = _serialize_for_session(model)
        if base_dir:
            options.add_session_config_entry("session.model_external_initializers_file_folder_path", base_dir)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=provider_list)
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
        raise session_error(err) from err


def _serialize_for_session(model) -> tuple[bytes, str | None]:
    import onnx_ir as ir

    base_dir = None
    if isinstance(model, ir.Model):
        from onnxdeploy._io import external_base_dir

        base_dir = external_base_dir(model)  # subgraphs and functions included: never the current directory
        proto = ir.serde.serialize_model(model)
    else:
        proto = model
    data = proto.SerializeToString()
    return data, (str(base_dir) if base_dir else None)


class SessionError(OnnxDeployError, RuntimeError):
    """onnxruntime refused to load or run the model."""


_ORT_SOURCE_LOCATION = re.compile(r"/onnxruntime_src/\S+:\d+ (?:[\w:~<>]+\([^)]*\)(?: const)? )?")


def session_error(err: Exception) -> SessionError:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    text = text.replace("[ONNXRuntimeError] : ", "")
    text = _ORT_SOURCE_LOCATION.sub("", text)  # "/onnxruntime_src/...h:91 onnxruntime::F(args) ": noise for users
    hint = None
    if "NOT_IMPLEMENTED" in text or "Could not find an implementation" in text:
        hint = "an operator or dtype is not supported by onnxruntime; `onnxdeploy check` lists them"
    return SessionError(f"onnxruntime: {text}", hint=hint)


@dataclass
class RunResult:
    """Outputs of one run and what was noticed about them."""

    outputs: dict[str, np.ndarray]
    inputs: dict[str, np.ndarray]
    seconds: float
    warnings: list[str] = field(default_factory=list)
    expected: object = None  # an onnxdeploy._verify.Verification against expected outputs (``run --expect``)

    def to_dict(self) -> dict:
        return {
            "seconds": self.seconds,
            "warnings": self.warnings,
            "inputs": {k: array_summary(v) for k, v in self.inputs.items()},
            "outputs": {k: array_summary(v) for k, v in self.outputs.items()},
            "expected": self.expected.to_dict() if self.expected is not None else None,
        }


def array_summary(arr: np.ndarray) -> dict:
    summary: dict = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
    if arr.size and arr.dtype.kind in "biuf":
        a = arr.astype(np.float64)
        summary.update(min=float(np.nanmin(a)), max=float(np.nanmax(a)), mean=float(np.nanmean(a)))
    return summary


def run_session(
    session: "ort.InferenceSession", feeds: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Run a session and return outputs by name; onnxruntime failures become :class:`SessionError`."""
    names = list(output_names) if output_names else [o.name for o in session.get_outputs()]
    import threading

    import onnxruntime as ort

    limit = run_timeout_s()
    run_options = ort.RunOptions()
    stopped = threading.Event()

    def _stop() -> None:  # onnxruntime checks the flag between kernels and Loop iterations
        stopped.set()
        run_options.terminate = True

    watchdog = threading.Timer(limit, _stop)
    watchdog.daemon = True
    watchdog.start()
    try:
        values = session.run(names, dict(feeds), run_options)
    except Exception as err:
        if stopped.is_set():
            raise UnsupportedError(f"the onnxruntime run did not finish within {limit:g} s and was stopped",
                                   hint=f"set {RUN_TIMEOUT_ENV}=SECONDS for a longer limit, or pass --no-verify "
                                        "to skip running the model") from err
        error = session_error(err)
        if error.hint is None:
            shapes = ", ".join(f"{k}={_fmt_shape(getattr(v, 'shape', ()))}" for k, v in feeds.items())
            error.hint = (f"the inputs were {shapes}; synthesized inputs give symbolic dims default sizes (batch 1, "
                          "tokens 128, image sides 224, else 1) unless told: pass real sizes with --dim NAME=N or "
                          "--shape INPUT=AxB..., or real inputs")
        raise error from err
    finally:
        watchdog.cancel()
    return dict(zip(names, values))


RUN_TIMEOUT_ENV = "ONNXDEPLOY_RUN_TIMEOUT"
DEFAULT_RUN_TIMEOUT_S = 600.0


def run_timeout_s() -> float:
    """The longest one onnxruntime run may take (``ONNXDEPLOY_RUN_TIMEOUT`` seconds, default 600)."""
    try:
        value = float(os.environ.get(RUN_TIMEOUT_ENV, DEFAULT_RUN_TIMEOUT_S))
    except ValueError:
        return DEFAULT_RUN_TIMEOUT_S
    return value if value > 0 else DEFAULT_RUN_TIMEOUT_S


def shape_warnings(model: ModelLike, outputs: Mapping[str, np.ndarray]) -> list[str]:
    """Outputs whose real shape contradicts a fixed dim the model declares (e.g. 1x32x512x512 vs 510x510)."""
    warnings = []
    for spec in output_specs(model):
        arr = outputs.get(spec.name)
        if arr is None or spec.shape is None:
            continue
        declared = spec.shape
        if len(declared) != arr.ndim or any(isinstance(d, int) and d != g for d, g in zip(declared, arr.shape)):
            warnings.append(
                f"output {spec.name!r} has shape {_fmt_shape(arr.shape)} but the model declares {_fmt_shape(declared)}"
            )
    return warnings


def model_structure(model: ModelLike) -> "onnx.ModelProto":
    """The model's proto; for a file, parsed and validated without reading large weights (enough for specs)."""
    if isinstance(model, (str, os.PathLike)):
        from onnxdeploy._io import load_structure

        return load_structure(model)[0]
    return as_proto(model)


def run_model(
    model: ModelLike,
    inputs: "Inputs | Mapping[str, np.ndarray] | None" = None,
    *,
    input_files: Mapping[str, str | os.PathLike] | None = None,
    npz: str | os.PathLike | None = None,
    dims: Mapping[str, int] | None = None,
    shapes: Mapping[str, Sequence] | None = None,
    seed: int = 0,
    providers: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dtypes: Mapping[str, np.dtype] | None = None,
) -> RunResult:
    """Prepare inputs, run once on onnxruntime, and report outputs, timing and declared-shape warnings."""
    proto = model_structure(model)
    feeds = prepare_inputs(proto, inputs=inputs, input_files=input_files, npz=npz, dims=dims, shapes=shapes, seed=seed,
                           dtypes=dtypes)
    session = create_session(model if isinstance(model, (str, os.PathLike)) else proto, providers=providers)
    start = time.perf_counter()
    outputs = run_session(session, feeds, output_names)
    seconds = time.perf_counter() - start
    return RunResult(outputs, feeds, seconds, shape_warnings(proto, outputs))


def run(model: ModelLike, inputs: Mapping[str, np.ndarray] | None = None, **options) -> dict[str, np.ndarray]:
    """Run ``model`` on onnxruntime and return its outputs by name (missing inputs are synthesized, seeded)."""
    return run_model(model, inputs, **options).outputs
