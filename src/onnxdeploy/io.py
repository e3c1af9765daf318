"""Model I/O: safe loading (external data checked before any byte is read) and atomic saving.

- :func:`load_proto` parses the graph without reading external weights (fast, small memory), for ``inspect``.
- :func:`load` returns an ``onnx_ir.Model`` whose external tensors are memory-mapped lazily.
- :func:`save` writes the model and its external data into a private temporary folder next to the output, then
  renames them into place, so a failure never leaves a half-written output and never touches unrelated files.

External-data references are refused when absolute, when they escape the model's folder (``..``, symlinks), when
they are hard links, and when the file is missing or shorter than the tensor needs (the ONNX loader CVEs
2022-2026: path traversal, symlink and hard-link escapes, out-of-bounds reads).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Union

from onnxdeploy._protowire import (
    GRAPH_INITIALIZER_TAG,
    MODEL_GRAPH_TAG,
    TENSOR_RAW_DATA_TAG,
    fields,
    length_delimited,
    read_varint,
)
from onnxdeploy.errors import ModelFileError, UnsafeModelError, UserInputError

if TYPE_CHECKING:
    import onnx
    import onnx_ir as ir

ModelLike = Union[str, os.PathLike, "onnx.ModelProto", "ir.Model"]

PROTOBUF_LIMIT = 2**31 - 1
EXTERNAL_THRESHOLD = 1_800_000_000  # above this many tensor bytes, save() switches to external data
SIZE_THRESHOLD_BYTES = 1024  # tensors at least this large go to the external-data file


@dataclass(frozen=True)
class ExternalRef:
    """One tensor's reference into an external-data file."""

    tensor: str
    location: str
    offset: int
    length: int | None


# ---------------------------------------------------------------- reading


def _check_model_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p}: no such file", hint="check the path")
    if p.is_dir():
        raise ModelFileError(f"{p}: is a folder, not an .onnx file")
    if not os.access(p, os.R_OK):
        raise ModelFileError(f"{p}: permission denied")
    if p.stat().st_size == 0:
        raise ModelFileError(f"{p}: the file is empty, not an ONNX model")
    return p


def load_proto(path: str | os.PathLike, *, load_weights: bool = False) -> "onnx.ModelProto":
    """Parse an ONNX file into a ModelProto, checking its external-data references first.

    With ``load_weights=False`` (the default) external data stays on disk: enough for inspection, cheap for
    models of any size. Raises :class:`ModelFileError` or :class:`UnsafeModelError` with a one-line reason.
    """
    import onnx
    from google.protobuf.message import DecodeError

    p = _check_model_path(path)
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as err:
        raise ModelFileError(
            f"{p}: not a valid ONNX model (truncated or corrupt protobuf: {err})",
            hint="re-export or re-download the file",
        ) from err
    _check_is_onnx(proto, p)
    check_external_data(proto, p.parent)
    if load_weights and any(True for _ in external_refs(proto)):
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(proto, str(p.parent))
    return proto


def _check_is_onnx(proto: "onnx.ModelProto", path: Path) -> None:
    if proto.ir_version <= 0 or not proto.HasField("graph"):
        raise ModelFileError(
            f"{path}: not an ONNX model (no IR version or graph)", hint="pass a .onnx file exported by an ONNX tool"
        )


def load(path: str | os.PathLike) -> "ir.Model":
    """Load a model as an ``onnx_ir.Model``; external tensors are checked, then memory-mapped on first use."""
    from onnx_ir import external_data, serde

    proto = load_proto(path)
    model = serde.deserialize_model(proto)
    external_data.set_base_dir(model.graph, str(Path(path).parent))
    return model


def as_model(model: ModelLike) -> "ir.Model":
    """Return an ``ir.Model`` for a path, a ModelProto or an ``ir.Model`` (the latter returned as is)."""
    import onnx
    import onnx_ir as ir

    if isinstance(model, ir.Model):
        return model
    if isinstance(model, onnx.ModelProto):
        return ir.serde.deserialize_model(model)
    if isinstance(model, (str, os.PathLike)):
        return load(model)
    raise UserInputError(f"expected a path, an onnx.ModelProto or an onnx_ir.Model, got {type(model).__name__}")


def as_proto(model: ModelLike, *, load_weights: bool = False) -> "onnx.ModelProto":
    """Return a ModelProto for a path, a ModelProto (as is) or an ``ir.Model`` (serialized)."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_proto(model, load_weights=load_weights)
    import onnx_ir as ir

    if isinstance(model, ir.Model):
        return ir.serde.serialize_model(model)
    raise UserInputError(f"expected a path, an onnx.ModelProto or an onnx_ir.Model, got {type(model).__name__}")


def _all_tensors(proto: "onnx.ModelProto") -> Iterator["onnx.TensorProto"]:
    from onnx.external_data_helper import _get_all_tensors

    yield from _get_all_tensors(proto)


def external_refs(proto: "onnx.ModelProto") -> Iterator[ExternalRef]:
    """Every external-data reference in the model, subgraphs and functions included."""
    import onnx

    for tensor in _all_tensors(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        try:
            offset = int(info.get("offset", 0) or 0)
            length = int(info["length"]) if info.get("length") else None
        except ValueError as err:
            raise UnsafeModelError(f"tensor {tensor.name!r}: malformed external-data offset/length") from err
        if offset < 0 or (length is not None and length < 0):
            raise UnsafeModelError(f"tensor {tensor.name!r}: negative external-data offset or length")
        yield ExternalRef(tensor.name, info.get("location", ""), offset, length)


def _expected_nbytes(proto: "onnx.ModelProto") -> dict[str, int]:
    import onnx
    from onnx import helper

    sizes: dict[str, int] = {}
    for tensor in _all_tensors(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        try:
            np_dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
        except (KeyError, ValueError):
            continue
        count = 1
        for d in tensor.dims:
            count *= d
        bits = {onnx.TensorProto.INT4: 4, onnx.TensorProto.UINT4: 4}.get(tensor.data_type)
        sizes[tensor.name] = (count * bits + 7) // 8 if bits else count * np_dtype.itemsize
    return sizes


def check_external_data(proto: "onnx.ModelProto", base_dir: str | os.PathLike) -> None:
    """Refuse external-data references that are unsafe or that point at missing or too-short files."""
    base = Path(base_dir)
    base_real = Path(os.path.realpath(base))
    expected = None
    sizes: dict[str, int] = {}
    for ref in external_refs(proto):
        where = f"tensor {ref.tensor!r}: external-data location {ref.location!r}"
        loc = ref.location
        if not loc:
            raise UnsafeModelError(f"tensor {ref.tensor!r}: external data without a location")
        if "\0" in loc:
            raise UnsafeModelError(f"{where} contains a NUL byte")
        if os.path.isabs(loc) or loc.startswith(("/", "\\")) or (len(loc) > 1 and loc[1] == ":"):
            raise UnsafeModelError(f"{where} is an absolute path", hint="external data must sit in the model's folder")
        parts = loc.replace("\\", "/").split("/")
        if ".." in parts:
            raise UnsafeModelError(f"{where} escapes the model's folder ('..')")
        target = base.joinpath(*parts)
        probe = base
        for part in parts:
            probe = probe / part
            if probe.is_symlink():
                raise UnsafeModelError(f"{where} goes through a symbolic link", hint="copy the data file instead")
        real = Path(os.path.realpath(target))
        if base_real != real and base_real not in real.parents:
            raise UnsafeModelError(f"{where} resolves outside the model's folder")
        if loc not in sizes:
            try:
                st = target.stat()
            except FileNotFoundError:
                raise ModelFileError(f"{where}: file not found next to the model") from None
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeModelError(f"{where} is not a regular file")
            if st.st_nlink > 1:
                raise UnsafeModelError(f"{where} is a hard link", hint="copy the data file instead of linking it")
            sizes[loc] = st.st_size
        size = sizes[loc]
        if ref.length is None:
            if expected is None:
                expected = _expected_nbytes(proto)
            need = expected.get(ref.tensor)
        else:
            need = ref.length
        end = ref.offset + (need or 0)
        if ref.offset > size or end > size:
            raise ModelFileError(
                f"{where}: file is too short ({size} bytes, the tensor needs bytes {ref.offset}..{end})",
                hint="the data file is truncated or belongs to another model",
            )


# ---------------------------------------------------------------- writing


def _initializer_bytes(model: "ir.Model") -> tuple[int, bool]:
    """Total bytes of initializers in all graphs, and whether any of them lives in external data."""
    import onnx_ir as ir

    total, has_external = 0, False
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if tensor is None:
                continue
            total += tensor.nbytes
            has_external = has_external or isinstance(tensor, ir.ExternalTensor)
    return total, has_external


def data_file_name(path: str | os.PathLike) -> str:
    """The external-data file name :func:`save` uses for ``path``: ``<file name>.data``."""
    return Path(path).name + ".data"


def _referenced_locations(path: Path) -> set[str]:
    try:
        import onnx

        return {ref.location for ref in external_refs(onnx.load(str(path), load_external_data=False))}
    except Exception:  # an unreadable previous output owns nothing
        return set()


def save(
    model: ModelLike,
    path: str | os.PathLike,
    *,
    external_data: bool | None = None,
    size_threshold_bytes: int = SIZE_THRESHOLD_BYTES,
) -> Path:
    """Write ``model`` to ``path`` atomically; return the path.

    ``external_data=None`` chooses: external data (``<name>.data`` beside the model) when the model already has
    external tensors or its weights would approach protobuf's 2 GB limit, embedded otherwise. The data file is
    written only under that name, inside the output's folder, and only over a file that is absent or that the
    previous output at ``path`` referenced; the model and data appear together or not at all. Embedded weights
    are written tensor by tensor from their buffers (no second copy of the weights in memory).
    """
    import onnx_ir as ir

    out = Path(path)
    if out.is_dir():
        raise UserInputError(f"{out} is a folder; give a file name such as {out / 'model.onnx'}")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.exists():
        raise UserInputError(f"{folder}: output folder does not exist", hint=f"mkdir -p {folder}")
    if isinstance(model, (str, os.PathLike)):
        model = load(model)
    elif not isinstance(model, ir.Model):
        model = as_model(model)

    total, has_external = _initializer_bytes(model)
    use_external = external_data if external_data is not None else (has_external or total > EXTERNAL_THRESHOLD)
    if not use_external:
        return _write_embedded(model, out, folder)
    data_name = data_file_name(out)
    data_path = folder / data_name
    if data_path.exists() and data_name not in _referenced_locations(out):
        raise UserInputError(
            f"{data_path} already exists and is not the data file of {out}; refusing to overwrite it",
            hint="remove it or choose another output name",
        )
    if data_path.is_symlink():
        raise UserInputError(f"{data_path} is a symbolic link; refusing to write through it")

    tmp_dir = Path(tempfile.mkdtemp(prefix=".onnxdeploy-", dir=folder))
    try:
        tmp_model = tmp_dir / out.name
        ir.save(model, tmp_model, external_data=data_name, size_threshold_bytes=size_threshold_bytes)
        tmp_data = tmp_dir / data_name
        if tmp_data.exists() and data_name in _referenced_locations(tmp_model):  # no empty, orphan data files
            ordinary_permissions(tmp_data)
            os.replace(tmp_data, data_path)
        ordinary_permissions(tmp_model)
        os.replace(tmp_model, out)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return out


def ordinary_permissions(path: str | os.PathLike) -> None:
    """An ordinary new file's permissions (0666 minus the umask), not mkstemp's 0600 or a copied source's mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes to ``path`` through a temporary file in the same folder and a rename."""
    out = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent if str(out.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        ordinary_permissions(tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


# ---------------------------------------------------------------- memory-mapped loading (embedded weights)


MAP_THRESHOLD_BYTES = 1024  # load_mapped: embedded tensors at least this large are views into the mapped file


def _mappable_raw_data(buf, start: int, end: int) -> tuple[int, int, int, tuple[int, ...], int, int] | None:
    """For a TensorProto in ``buf[start:end]`` with raw_data: (data_type, raw start, raw end, dims, field start,
    field end) when its bytes can be viewed in place, else None."""
    dims: list[int] = []
    data_type = 0
    raw = None
    for number, wire, first, payload, stop in fields(buf, start, end):
        if number == 1:  # dims: packed or not
            if wire == 2:
                pos = payload
                while pos < stop:
                    d, pos = read_varint(buf, pos)
                    dims.append(d)
            elif wire == 0:
                dims.append(read_varint(buf, payload)[0])
        elif number == 2 and wire == 0:
            data_type = read_varint(buf, payload)[0]
        elif number == 9 and wire == 2:
            raw = (payload, stop, first)
        elif number in (3, 13, 14):  # segments or external data: leave to the ordinary loader
            return None
    if raw is None or raw[1] - raw[0] < MAP_THRESHOLD_BYTES:
        return None
    return data_type, raw[0], raw[1], tuple(dims), raw[2], raw[1]


def load_mapped(path: str | os.PathLike) -> "ir.Model":
    """Like :func:`load`, but embedded weights are not copied: each large initializer of the main graph becomes a
    read-only numpy view into a memory map of the file, read from disk only when used.

    Loading a 400 MB model then costs the graph's parse (milliseconds) instead of two copies of every weight
    (the file's bytes and the parsed protobuf). The checks of :func:`load` apply (external data is validated,
    then memory-mapped lazily as usual). Falls back to :func:`load` for anything unusual (a model over protobuf's
    limit, a non-standard encoding).
    """
    import mmap

    import numpy as np
    import onnx
    import onnx_ir as ir
    from google.protobuf.message import DecodeError
    from onnx_ir import external_data, serde

    p = _check_model_path(path)
    with open(p, "rb") as fh:
        try:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return load(p)
    try:
        buf = memoryview(mm)
        graph_field = None
        for number, wire, first, payload, stop in fields(buf, 0, len(mm)):
            if number == 7 and wire == 2:
                graph_field = (first, payload, stop)
        if graph_field is None:
            buf.release()
            return load(p)
        mapped: dict[int, tuple[int, int, int, tuple[int, ...]]] = {}  # index among initializers -> data
        graph_parts: list = []
        last = graph_field[1]
        index = 0
        for number, wire, first, payload, stop in fields(buf, graph_field[1], graph_field[2]):
            if number != 5 or wire != 2:
                continue
            info = _mappable_raw_data(buf, payload, stop)
            if info is not None:
                data_type, raw_start, raw_end, dims, raw_first, raw_stop = info
                dtype = ir.DataType(data_type)
                if dtype.bitwidth % 8 == 0 and dtype != ir.DataType.STRING:
                    count = 1
                    for d in dims:
                        count *= d
                    if count * dtype.bitwidth // 8 == raw_end - raw_start:
                        stripped = bytes(buf[payload:raw_first]) + bytes(buf[raw_stop:stop])
                        graph_parts.append(buf[last:first])
                        graph_parts.append(length_delimited(GRAPH_INITIALIZER_TAG, len(stripped)) + stripped)
                        last = stop
                        mapped[index] = (data_type, raw_start, raw_end, dims)
            index += 1
        graph_parts.append(buf[last:graph_field[2]])
        graph_bytes = b"".join(bytes(part) for part in graph_parts)
        head = bytes(buf[: graph_field[0]]) + bytes(buf[graph_field[2]:])
        buf.release()
        proto = onnx.ModelProto()
        proto.ParseFromString(head + length_delimited(MODEL_GRAPH_TAG, len(graph_bytes)) + graph_bytes)
    except (ValueError, IndexError, DecodeError):
        return load(p)
    _check_is_onnx(proto, p)
    check_external_data(proto, p.parent)
    model = serde.deserialize_model(proto)
    external_data.set_base_dir(model.graph, str(p.parent))
    names = [t.name for t in proto.graph.initializer]
    for i, (data_type, raw_start, raw_end, dims) in mapped.items():
        value = model.graph.initializers.get(names[i])
        if value is None:
            continue
        dtype = ir.DataType(data_type)
        np_dtype = np.dtype(dtype.numpy()).newbyteorder("<")
        array = np.frombuffer(mm, dtype=np_dtype, count=(raw_end - raw_start) // np_dtype.itemsize,
                              offset=raw_start).reshape(dims)
        old = value.const_value
        value.const_value = ir.Tensor(array, dtype=dtype, name=names[i],
                                      doc_string=getattr(old, "doc_string", None))
    return model


def _write_embedded(model: "ir.Model", out: Path, folder: Path) -> Path:
    """Write ``model`` with embedded weights to ``out`` atomically, with the least memory.

    One ordinary ModelProto: the graph is serialized without its initializers, then each initializer is written on
    its own, a large tensor's bytes straight from its numpy buffer (a memory-mapped tensor of :func:`load_mapped`
    included) without a protobuf copy. Peak memory is the model plus one small tensor header.
    """
    import numpy as np
    import onnx
    import onnx_ir as ir

    graph = model.graph
    values = list(graph.initializers.values())
    for value in values:
        graph.initializers.pop(value.name)
    try:
        proto = ir.serde.serialize_model(model)
    finally:
        for value in values:
            graph.initializers.add(value)
    names = {v.name for v in values}
    kept_info = [vi for vi in proto.graph.value_info if vi.name not in names]
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(kept_info)
    graph_bytes = proto.graph.SerializeToString()
    proto.ClearField("graph")
    head = proto.SerializeToString()

    def large_array(value):
        """The numpy array of a large tensor whose bytes are written straight from its buffer, else None."""
        tensor = value.const_value
        if isinstance(tensor, ir.TensorProtoTensor) and tensor.raw.name == value.name and not tensor.raw.external_data:
            return None
        dtype = tensor.dtype
        if (tensor.nbytes < MAP_THRESHOLD_BYTES or dtype.bitwidth % 8 or dtype == ir.DataType.STRING
                or isinstance(tensor, ir.ExternalTensor)):
            return None
        array = tensor.numpy()
        if array.dtype.itemsize * 8 != dtype.bitwidth or array.size * array.dtype.itemsize != tensor.nbytes:
            return None
        return array

    def header(value, array) -> bytes:
        tensor = value.const_value
        proto = onnx.TensorProto(name=value.name, dims=list(array.shape), data_type=int(tensor.dtype))
        if tensor.doc_string:
            proto.doc_string = tensor.doc_string
        return proto.SerializeToString()

    def pieces(value) -> list:
        """The TensorProto of ``value`` as byte pieces; a large tensor's data is a view of its buffer."""
        tensor = value.const_value
        if isinstance(tensor, ir.TensorProtoTensor) and tensor.raw.name == value.name and not tensor.raw.external_data:
            return [tensor.raw.SerializeToString()]
        array = large_array(value)
        if array is not None:
            array = np.ascontiguousarray(array)
            if array.dtype.byteorder == ">":
                array = array.astype(array.dtype.newbyteorder("<"))
            data = array.reshape(-1).view(np.uint8).data
            return [header(value, array), length_delimited(TENSOR_RAW_DATA_TAG, len(data)), data]
        tp = ir.serde.serialize_tensor(tensor)
        tp.name = value.name
        return [tp.SerializeToString()]

    def size(value) -> int:
        tensor = value.const_value
        if isinstance(tensor, ir.TensorProtoTensor) and tensor.raw.name == value.name and not tensor.raw.external_data:
            return tensor.raw.ByteSize()
        array = large_array(value)
        if array is not None:  # sized without copying a non-contiguous array
            return len(header(value, array)) + len(length_delimited(TENSOR_RAW_DATA_TAG, array.nbytes)) + array.nbytes
        return sum(len(part) for part in pieces(value))

    # two passes over the tensors: sizes first (headers only: cheap), then the bytes
    sizes = [size(value) for value in values]
    graph_len = len(graph_bytes) + sum(len(length_delimited(GRAPH_INITIALIZER_TAG, n)) + n for n in sizes)
    if len(head) + len(length_delimited(MODEL_GRAPH_TAG, graph_len)) + graph_len > PROTOBUF_LIMIT:
        raise UserInputError(f"{out}: model exceeds protobuf's 2 GB limit", hint="save with external data")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(head)
            fh.write(length_delimited(MODEL_GRAPH_TAG, graph_len))
            fh.write(graph_bytes)
            for value, n in zip(values, sizes):
                fh.write(length_delimited(GRAPH_INITIALIZER_TAG, n))
                for part in pieces(value):
                    fh.write(part)
        ordinary_permissions(tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
