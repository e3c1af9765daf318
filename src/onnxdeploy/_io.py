"""Model I/O: safe loading (external data checked before any byte is read) and atomic saving.

- :func:`load_proto` parses the graph without reading external weights (fast, small memory), for ``inspect``.
- :func:`load` returns an ``onnx_ir.Model`` whose external tensors are memory-mapped lazily.
- :func:`save` writes the model (and its external data) through temporary files and commits with ONE rename: the
  model file's. The data file gets a name unique to the write (``<name>.<pid>-<8 hex>.data``), so a killed or
  failed write never leaves the previous model with new data; the previous data file is removed after the commit.
- :func:`check_output_path` is the one output-path guard every writer goes through: it refuses a destination that is
  (or whose data file would be) a file this operation read, a folder, or in a missing or read-only folder.

External-data references are refused when absolute, when they escape the model's folder (``..``, symlinks), when
they are hard links, devices, FIFOs or sockets, and when the file is missing or shorter than the tensor needs (the
ONNX loader CVEs 2022-2026: path traversal, symlink and hard-link escapes, out-of-bounds reads), wherever the tensor
lives: initializers, sparse initializers, tensor attributes (Constant), If/Loop/Scan bodies and model-local
functions, at any depth.

Temporary files start with ``.onnxdeploy-tmp-<pid>-``; the next write into the same folder removes those of
processes that no longer run.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
import secrets
import shutil
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator, Union

from onnxdeploy._protowire import (
    GRAPH_INITIALIZER_TAG,
    MODEL_GRAPH_TAG,
    TENSOR_RAW_DATA_TAG,
    encode_varint,
    fields,
    length_delimited,
    read_varint,
)
from onnxdeploy.errors import InvalidModelError, ModelFileError, OnnxDeployError, UnsafeModelError, UserInputError

if TYPE_CHECKING:
    import onnx
    import onnx_ir as ir

ModelLike = Union[str, os.PathLike, "onnx.ModelProto", "ir.Model"]

PROTOBUF_LIMIT = 2**31 - 1
EXTERNAL_THRESHOLD = 1_800_000_000  # above this many tensor bytes, save() switches to external data
SIZE_THRESHOLD_BYTES = 1024  # tensors at least this large go to the external-data file
TMP_PREFIX = ".onnxdeploy-tmp-"  # every temporary file or folder io creates: TMP_PREFIX + "<pid>-<hex>-..."
PAUSE_ENV = "ONNXDEPLOY_TEST_PAUSE_AT"  # tests: sleep at a named write stage so a kill lands there


@dataclass(frozen=True)
class ExternalRef:
    """One tensor's reference into an external-data file."""

    tensor: str
    location: str
    offset: int
    length: int | None


# ---------------------------------------------------------------- the files this operation read


class _Registry:
    def __init__(self) -> None:
        self.real: dict[str, str] = {}  # real path -> path as given
        self.ids: dict[tuple[int, int], str] = {}  # (st_dev, st_ino) -> path as given


_registry = _Registry()


def note_read(path: str | os.PathLike) -> None:
    """Record that the current operation reads ``path``: no writer of this operation may replace it."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except (OSError, ValueError):
        return
    _registry.real.setdefault(real, str(path))
    _registry.ids.setdefault((st.st_dev, st.st_ino), str(path))


def forget_reads() -> None:
    """Start a new operation: forget the files read so far."""
    global _registry
    _registry = _Registry()


@contextlib.contextmanager
def operation() -> Iterator[None]:
    """Scope of one operation (a CLI command): the files it reads are protected from its writers, then forgotten."""
    global _registry
    saved, _registry = _registry, _Registry()
    try:
        yield
    finally:
        _registry = saved


def _read_by_operation(path: str) -> str | None:
    """The input (as given) that ``path`` is, by real path or by file identity (hard links), else None."""
    real = os.path.realpath(path)
    if real in _registry.real:
        return _registry.real[real]
    try:
        st = os.stat(real)
    except (OSError, ValueError):
        return None
    return _registry.ids.get((st.st_dev, st.st_ino))


def _os_error(path: object, err: OSError, doing: str = "cannot write") -> ModelFileError:
    reason = err.strerror or str(err)
    hints = {errno.ENAMETOOLONG: "use a shorter file name", errno.EROFS: "write to a writable folder",
             errno.EACCES: "write to a folder you may write to", errno.EPERM: "write to a folder you may write to",
             errno.ENOSPC: "free some disk space or write elsewhere", errno.ELOOP: "fix the symbolic link loop"}
    return ModelFileError(f"{path}: {doing} ({reason})", hint=hints.get(err.errno))


def check_output_path(path: str | os.PathLike, *, allow_overwrite_input: bool = False) -> Path:
    """The output-path guard every writer goes through; returns the real destination path.

    Refuses (:class:`UserInputError`, one line and a hint) a destination that is a folder, whose folder does not exist
    or is not writable, or that is a file this operation read: an input
    model, one of its external-data files, an input tensor file or a recipe, however the path is spelled (``..``,
    ``.``, symbolic links, hard links). ``allow_overwrite_input=True`` lets the API replace an input deliberately
    (the CLI never does).
    """
    given = str(path)
    if not given or "\0" in given:
        raise UserInputError(f"invalid output path {given!r}", hint="give a file name such as out.onnx")
    out = Path(given)
    try:
        if out.is_dir():
            raise UserInputError(f"{out} is a folder; give a file name such as {out / 'model.onnx'}")
        folder = out.parent if str(out.parent) else Path(".")
        if not folder.exists():
            raise UserInputError(f"{folder}: output folder does not exist", hint=f"mkdir -p {folder}")
        if not folder.is_dir():
            raise UserInputError(f"{folder}: not a folder", hint="choose an output path inside a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UserInputError(f"{folder}: output folder is not writable", hint="choose another output folder")
        real = Path(os.path.realpath(folder)) / out.name
        if real.parts[:2] in (("/", "proc"), ("/", "sys"), ("/", "dev")):
            raise UserInputError(f"{out}: cannot write under /{real.parts[1]}", hint="choose an ordinary folder")
        os.lstat(folder)  # ENAMETOOLONG / ELOOP surface here, as one line
        if len(out.name.encode("utf-8", "surrogateescape")) > 255:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
    except OSError as err:
        raise _os_error(out, err) from err
    if not allow_overwrite_input:
        hit = _read_by_operation(given)
        if hit is not None:
            same = os.path.realpath(given) == os.path.realpath(hit)
            raise UserInputError(f"the output {given} would overwrite {'the input' if same else 'an input file'} {hit}",
                                 hint="choose another -o path; inputs are never modified")
        if real.is_file() and _referenced_elsewhere(real.parent, real.name, skip=real):
            raise UserInputError(f"{out} would overwrite the external data of another model in {real.parent}",
                                 hint="choose another -o path; that model would be corrupted")
    return real


# ---------------------------------------------------------------- temporary files, stale ones, test pauses


def pause_point(stage: str) -> None:
    """Tests only: with ``ONNXDEPLOY_TEST_PAUSE_AT=<stage>``, say so on stderr and sleep, so a kill lands here."""
    if os.environ.get(PAUSE_ENV) == stage:
        sys.stderr.write(f"onnxdeploy-paused-at: {stage}\n")
        sys.stderr.flush()
        time.sleep(float(os.environ.get("ONNXDEPLOY_TEST_PAUSE_SECONDS", "120")))


def _tmp_name(name: str = "") -> str:
    return f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}"


_TMP_RE = re.compile(re.escape(TMP_PREFIX) + r"(\d+)-")
_DATA_RE = re.compile(r"\.(\d+)-[0-9a-f]{8}\.data$")


_inflight: set[str] = set()  # names of the data files this process is writing right now


def _alive(pid: int, name: str = "") -> bool:
    if pid == os.getpid():
        return name in _inflight or name.startswith(TMP_PREFIX)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _mentions(model_file: Path, needle: bytes) -> bool:
    """Whether the bytes of ``needle`` occur in ``model_file`` (a cheap, conservative "does it reference it")."""
    try:
        with open(model_file, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                return False
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return mm.find(needle) >= 0
    except (OSError, ValueError):
        return True  # unreadable: assume it does


def _referenced_elsewhere(folder: Path, name: str, skip: Path | None = None) -> bool:
    """Whether any model file in ``folder`` (other than ``skip``) names the data file ``name`` as an external-data
    location (the serialized ``value`` field of a location entry: tag, length, bytes; so ``out.onnx`` does not match
    ``out.onnx.data``)."""
    raw = name.encode("utf-8", "surrogateescape")
    needle = b"\x12" + encode_varint(len(raw)) + raw
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return True
    for entry in entries:
        if entry.name.startswith(TMP_PREFIX) or entry.name == name:
            continue
        if skip is not None and entry.name == skip.name:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
        except OSError:
            continue
        if not entry.name.lower().endswith((".onnx", ".onnx_data", ".pb", ".ort")) and "onnx" not in entry.name:
            continue
        if _mentions(Path(entry.path), needle):
            return True
    return False


def clean_stale(folder: str | os.PathLike) -> list[str]:
    """Remove what killed writes left in ``folder``: temp files of processes that no longer run, and data files
    written by such a process that no model in the folder references. Returns the names removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if m is None:
            m2 = _DATA_RE.search(entry.name)
            if m2 is None or _alive(int(m2.group(1)), entry.name):
                continue
            try:
                if not entry.is_file(follow_symlinks=False) or _referenced_elsewhere(Path(folder), entry.name):
                    continue
                os.unlink(entry.path)
                removed.append(entry.name)
            except OSError:
                pass
            continue
        if _alive(int(m.group(1)), entry.name):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
            removed.append(entry.name)
        except OSError:
            pass
    return removed


@contextlib.contextmanager
def _atomic_file(out: Path, folder: Path) -> Iterator[BinaryIO]:
    """A new temporary file in ``folder``, renamed over ``out`` when the block succeeds, removed when it fails (an
    OSError becomes a one-line :class:`ModelFileError`)."""
    tmp = folder / _tmp_name(out.name[:100])
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        raise _os_error(out, err) from err
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        ordinary_permissions(tmp)
        pause_point("tmp-written")
        os.replace(tmp, out)  # the commit
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, OnnxDeployError):
            raise _os_error(out, err) from err
        raise


# ---------------------------------------------------------------- reading


def check_model_path(path: str | os.PathLike) -> Path:
    """A readable, non-empty regular file (checked with ``os.stat`` before anything opens it: a FIFO, a device such
    as /dev/zero, a folder or a symbolic link loop is a one-line :class:`ModelFileError`). The file is noted as read
    by this operation (:func:`check_output_path` then refuses to write over it)."""
    p = Path(path)
    if "\0" in str(p):
        raise ModelFileError(f"{str(p)!r}: invalid file name (NUL byte)")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise ModelFileError(f"{p}: no such file", hint="check the path") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ModelFileError(f"{p}: symbolic link loop", hint="fix the link or give the file itself") from None
        raise _os_error(p, err, "cannot open") from err
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(f"{p}: is a folder, not an .onnx file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise ModelFileError(f"{p}: is {kind}, not an .onnx file", hint="give a model file")
    if not os.access(p, os.R_OK):
        raise ModelFileError(f"{p}: permission denied")
    if st.st_size == 0:
        raise ModelFileError(f"{p}: the file is empty, not an ONNX model")
    note_read(p)
    return p


def load_proto(path: str | os.PathLike, *, load_weights: bool = False) -> "onnx.ModelProto":
    """Parse an ONNX file into a ModelProto, checking its external-data references first.

    With ``load_weights=False`` (the default) external data stays on disk: enough for inspection, cheap for
    models of any size. Raises :class:`ModelFileError` or :class:`UnsafeModelError` with a one-line reason.
    """
    import onnx
    from google.protobuf.message import DecodeError

    p = check_model_path(path)
    try:
        with open(p, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):  # swapped since the check
                raise ModelFileError(f"{p}: not a regular file")
            data = fh.read(min(st.st_size, PROTOBUF_LIMIT) + 1)
        proto = onnx.ModelProto()
        proto.ParseFromString(data)
        del data
    except OSError as err:
        if isinstance(err, OnnxDeployError):
            raise
        raise _os_error(p, err, "cannot read") from err
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError, RecursionError) as err:
        raise ModelFileError(
            f"{p}: not a valid ONNX model (truncated or corrupt protobuf: {_first(err)})",
            hint="re-export or re-download the file",
        ) from err
    _check_is_onnx(proto, p)
    note_read(p)
    check_external_data(proto, p.parent)
    if load_weights and any(True for _ in external_refs(proto)):
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(proto, str(p.parent))
        except (OSError, ValueError) as err:
            raise ModelFileError(f"{p}: cannot read its external data ({_first(err)})") from err
    return proto


def _first(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _check_is_onnx(proto: "onnx.ModelProto", path: Path) -> None:
    if proto.ir_version <= 0 or not proto.HasField("graph"):
        raise ModelFileError(
            f"{path}: not an ONNX model (no IR version or graph)", hint="pass a .onnx file exported by an ONNX tool"
        )
    check_utf8_names(proto, path)


def _main_graph_names(graph) -> Iterator[tuple[str, object]]:
    for kind, values in (("input", graph.input), ("output", graph.output), ("initializer", graph.initializer)):
        for v in values:
            yield kind, v.name
    for node in graph.node:
        yield "node", node.name
        for name in node.input:
            yield "node input", name
        for name in node.output:
            yield "node output", name


def check_utf8_names(proto: "onnx.ModelProto", path: str | os.PathLike = "model") -> None:
    """Refuse a main graph whose names are not UTF-8 (ONNX requires it; protobuf hands them over as bytes, which
    onnxruntime and every printer then fail on)."""
    for kind, name in _main_graph_names(proto.graph):
        if isinstance(name, bytes):
            shown = name.decode("utf-8", "backslashreplace")
            raise InvalidModelError(f"{path}: the {kind} name '{shown}' is not valid UTF-8 (ONNX names must be)",
                                    hint="fix the name in the tool that wrote the model, then export it again")


def _deserialize(proto: "onnx.ModelProto", path: Path) -> "ir.Model":
    from onnx_ir import serde

    try:
        return serde.deserialize_model(proto)
    except NotImplementedError as err:
        from onnxdeploy.errors import UnsupportedError

        raise UnsupportedError(f"{path}: {_first(err)}", hint="onnx-ir cannot represent this model") from err
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path}: malformed model ({_first(err)})") from err


def load(path: str | os.PathLike) -> "ir.Model":
    """Load a model as an ``onnx_ir.Model``; external tensors are checked, then memory-mapped on first use."""
    proto = load_proto(path)
    model = _deserialize(proto, Path(path))
    set_base_dir(model, Path(path).parent)
    return model


def _ir_tensors(model: "ir.Model") -> Iterator:
    import onnx_ir as ir

    from onnxdeploy._bounds import all_graphs

    for g in all_graphs(model):
        for value in getattr(g, "initializers", {}).values():
            if value.const_value is not None:
                yield value.const_value
        for node in g:
            for attr in node.attributes.values():
                if attr.is_ref() or attr.value is None:
                    continue
                if attr.type == ir.AttributeType.TENSOR:
                    yield attr.value
                elif attr.type == ir.AttributeType.TENSORS:
                    yield from attr.value


def set_base_dir(model: "ir.Model", folder: str | os.PathLike) -> None:
    """Resolve every external tensor of ``model`` (subgraphs and functions included) against ``folder``, never
    against the current directory."""
    import onnx_ir as ir

    base = os.path.abspath(folder)
    for tensor in _ir_tensors(model):
        if isinstance(tensor, ir.ExternalTensor):
            tensor.base_dir = base


def external_base_dir(model: "ir.Model") -> str | None:
    """The folder the external tensors of ``model`` resolve against (anywhere in the model), None when it has none."""
    import onnx_ir as ir

    for tensor in _ir_tensors(model):
        if isinstance(tensor, ir.ExternalTensor) and tensor.base_dir:
            return str(tensor.base_dir)
    return None


def inline_external_data(proto: "onnx.ModelProto", base_dir: str | os.PathLike | None, *,
                         keep: frozenset[str] | set[str] = frozenset()) -> "onnx.ModelProto":
    """Move the bytes of every external tensor (anywhere in ``proto``) into the proto, in place, reading them from
    ``base_dir`` after :func:`check_external_data`'s checks, never from the current directory. Locations in ``keep``
    stay external. For a serialized model handed to onnxruntime or the onnx C API."""
    import onnx

    external = [(where, t) for where, t in tensor_sites(proto) if t.data_location == onnx.TensorProto.EXTERNAL
                and {e.key: e.value for e in t.external_data}.get("location") not in keep]
    if not external:
        return proto
    if base_dir is None:
        raise ModelFileError(f"tensor {external[0][1].name!r} refers to external data but the model has no folder",
                             hint="load the model from its file")
    probe = onnx.ModelProto()
    probe.graph.initializer.extend(t for _, t in external)
    check_external_data(probe, base_dir)
    for where, tensor in external:
        ref = _ref(tensor, where)
        need = ref.length if ref.length is not None else (_tensor_nbytes(tensor) or 0)
        with open(Path(base_dir) / ref.location, "rb") as fh:
            fh.seek(ref.offset)
            raw = fh.read(need)
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
        tensor.raw_data = raw
    return proto


def as_model(model: ModelLike) -> "ir.Model":
    """Return an ``ir.Model`` for a path, a ModelProto or an ``ir.Model`` (the latter returned as is)."""
    import onnx
    import onnx_ir as ir

    if isinstance(model, ir.Model):
        return model
    if isinstance(model, onnx.ModelProto):
        return _deserialize(model, Path("<model>"))
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


def tensor_sites(proto: "onnx.ModelProto") -> Iterator[tuple[str, "onnx.TensorProto"]]:
    """Every TensorProto in the model with where it lives: initializers and sparse initializers (values and
    indices) of every graph, tensor attributes (``value``, ``sparse_value``, ``tensors`` lists) of every node, in
    If/Loop/Scan bodies at any depth and in model-local functions. Iterative: no recursion limit."""
    stack: list[tuple[str, object]] = [("", proto.graph)]
    stack += [(f"function {f.name!r}", f) for f in proto.functions]
    while stack:
        where, g = stack.pop()
        for t in getattr(g, "initializer", ()):
            yield where, t
        for sp in getattr(g, "sparse_initializer", ()):
            yield where, sp.values
            yield where, sp.indices
        for node in g.node:
            here = f"{where + ', ' if where else ''}node {node.name or node.op_type!r}"
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield here, attr.t
                yield from ((here, t) for t in attr.tensors)
                if attr.HasField("sparse_tensor"):
                    yield here, attr.sparse_tensor.values
                    yield here, attr.sparse_tensor.indices
                for sp in attr.sparse_tensors:
                    yield here, sp.values
                    yield here, sp.indices
                if attr.HasField("g"):
                    stack.append((f"{here} attribute {attr.name!r}", attr.g))
                stack.extend((f"{here} attribute {attr.name!r}", sub) for sub in attr.graphs)


def _ref(tensor: "onnx.TensorProto", where: str = "") -> ExternalRef:
    name = f"tensor {tensor.name!r}" + (f" ({where})" if where else "")
    info = {entry.key: entry.value for entry in tensor.external_data}
    for key in ("offset", "length"):
        if key in info and not re.fullmatch(r"[0-9]+", info[key].strip() or "x"):
            if info[key].strip().startswith("-") and re.fullmatch(r"-[0-9]+", info[key].strip()):
                raise UnsafeModelError(f"{name}: negative external-data offset or length")
            raise UnsafeModelError(f"{name}: malformed external-data {key} {info[key][:40]!r} (not a number)")
    offset = int(info.get("offset", "0").strip())
    length = int(info["length"].strip()) if "length" in info else None
    return ExternalRef(tensor.name, info.get("location", ""), offset, length)


def external_refs(proto: "onnx.ModelProto") -> Iterator[ExternalRef]:
    """Every external-data reference in the model, subgraphs, functions and attributes included."""
    import onnx

    for where, tensor in tensor_sites(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield _ref(tensor, where)


def without_external_data(proto: "onnx.ModelProto") -> "onnx.ModelProto":
    """``proto`` with every external tensor (anywhere in the model) replaced by zeros held in the proto, in place.

    For the ONNX checker and other onnx C APIs given a proto: they resolve external locations against the current
    directory, not the model's folder, so they would fail on a valid model or read an unrelated file of that name.
    io's own checks validate the references instead. Tensors over 64 KiB keep their type but get one element.
    """
    import onnx

    for _, tensor in tensor_sites(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
        need = _tensor_nbytes(tensor)
        if need is None or need > 65536:
            del tensor.dims[:]
            tensor.dims.append(1)
            need = _tensor_nbytes(tensor) or 1
        tensor.raw_data = bytes(need)
    return proto


def _tensor_nbytes(tensor: "onnx.TensorProto") -> int | None:
    """Bytes the tensor's data needs, from its dtype and dims; None when unknown."""
    import onnx

    bits = {onnx.TensorProto.INT4: 4, onnx.TensorProto.UINT4: 4, onnx.TensorProto.BOOL: 8}.get(tensor.data_type)
    if bits is None:
        try:
            import onnx_ir as ir

            bits = ir.DataType(tensor.data_type).bitwidth
        except (ValueError, TypeError, NotImplementedError):
            return None
    count = 1
    for d in tensor.dims:
        count *= d
    return (count * bits + 7) // 8


def check_external_data(proto: "onnx.ModelProto", base_dir: str | os.PathLike) -> None:
    """Refuse external-data references that are unsafe or that point at missing or too-short files, wherever the
    tensor lives; note each data file as read by this operation."""
    import onnx

    base = Path(base_dir)
    base_real = Path(os.path.realpath(base))
    sizes: dict[str, int] = {}
    for where_in, tensor in tensor_sites(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        ref = _ref(tensor, where_in)
        name = f"tensor {ref.tensor!r}" + (f" ({where_in})" if where_in else "")
        where = f"{name}: external-data location {ref.location[:200]!r}"
        loc = ref.location
        if not loc:
            raise UnsafeModelError(f"{name}: external data without a location")
        if tensor.data_type in (onnx.TensorProto.UNDEFINED, onnx.TensorProto.STRING):
            kind = "a string" if tensor.data_type == onnx.TensorProto.STRING else "an undefined"
            raise UnsafeModelError(f"{name}: {kind} tensor cannot be stored as external data")
        if any(d < 0 for d in tensor.dims):
            raise UnsafeModelError(f"{name}: negative dimension in {list(tensor.dims)}")
        if "\0" in loc:
            raise UnsafeModelError(f"{where} contains a NUL byte")
        if os.path.isabs(loc) or loc.startswith(("/", "\\")) or (len(loc) > 1 and loc[1] == ":"):
            raise UnsafeModelError(f"{where} is an absolute path", hint="external data must sit in the model's folder")
        parts = loc.replace("\\", "/").split("/")
        if ".." in parts:
            raise UnsafeModelError(f"{where} escapes the model's folder ('..')")
        parts = [part for part in parts if part not in ("", ".")]
        if not parts:
            raise UnsafeModelError(f"{where} names no file")
        target = base.joinpath(*parts)
        try:
            if loc not in sizes:
                probe = base
                for part in parts:
                    probe = probe / part
                    if stat.S_ISLNK(os.lstat(probe).st_mode):
                        raise UnsafeModelError(f"{where} goes through a symbolic link",
                                               hint="copy the data file instead")
                real = Path(os.path.realpath(target))
                if base_real != real and base_real not in real.parents:
                    raise UnsafeModelError(f"{where} resolves outside the model's folder")
                st = os.stat(target)
                if not stat.S_ISREG(st.st_mode):
                    raise UnsafeModelError(f"{where} is not a regular file (a folder, device, FIFO or socket)")
                if st.st_nlink > 1:
                    raise UnsafeModelError(f"{where} is a hard link", hint="copy the data file instead of linking it")
                sizes[loc] = st.st_size
                note_read(target)
        except FileNotFoundError:
            raise ModelFileError(f"{where}: file not found next to the model") from None
        except OSError as err:
            if isinstance(err, OnnxDeployError):
                raise
            raise ModelFileError(f"{where}: {err.strerror or err}") from None
        size = sizes[loc]
        need = _tensor_nbytes(tensor)
        if ref.length is not None and need is not None and ref.length < need:
            raise ModelFileError(f"{where}: length {ref.length} is shorter than the tensor's {need} bytes",
                                 hint="the model file is corrupt")
        span = ref.length if ref.length is not None else (need or 0)
        end = ref.offset + span
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
    """A fresh external-data file name for a write of ``path``: ``<file name>.<pid>-<8 hex>.data``, unique to the
    write, so that the model file's rename is the write's only commit."""
    return f"{Path(path).name}.{os.getpid()}-{secrets.token_hex(4)}.data"


def data_files(path: str | os.PathLike) -> list[Path]:
    """The external-data files the model at ``path`` references (beside it), without reading weights."""
    p = Path(path)
    return [p.parent / loc for loc in sorted(_referenced_locations(p))]


def _referenced_locations(path: Path) -> set[str]:
    """The external-data locations the model file at ``path`` references; empty when unreadable or absent."""
    try:
        import onnx

        if not path.is_file():
            return set()
        return {ref.location for ref in external_refs(onnx.load(str(path), load_external_data=False))}
    except Exception:  # noqa: BLE001 - an unreadable previous output owns nothing
        return set()


def _ours(old: str, out: Path) -> bool:
    """A data file name :func:`save` writes for ``out`` (a plain file beside it): current or legacy spelling."""
    return "/" not in old and "\\" not in old and (
        old == out.name + ".data" or re.fullmatch(re.escape(out.name) + r"\.\d+-[0-9a-f]{8}\.data", old) is not None)


def _remove_replaced_data(folder: Path, out: Path, old: set[str], keep: str | None) -> None:
    """After the commit: remove the data files the replaced model referenced, when no other model in the folder
    (the new one included) references them and no input of this operation is one of them."""
    for name in old:
        if name == keep or not _ours(name, out):
            continue
        candidate = folder / name
        if _read_by_operation(str(candidate)) is not None:
            continue
        try:
            if not stat.S_ISREG(os.lstat(candidate).st_mode):
                continue
        except OSError:
            continue
        if _referenced_elsewhere(folder, name):
            continue
        with contextlib.suppress(OSError):
            os.unlink(candidate)


def save(
    model: ModelLike,
    path: str | os.PathLike,
    *,
    external_data: bool | None = None,
    size_threshold_bytes: int = SIZE_THRESHOLD_BYTES,
    allow_overwrite_input: bool = False,
) -> Path:
    """Write ``model`` to ``path`` atomically; return the path.

    ``external_data=None`` chooses: external data (a ``<name>.<pid>-<hex>.data`` file beside the model, named
    uniquely for this write) when the model already has external tensors or its weights would approach protobuf's
    2 GB limit, embedded otherwise. Everything is written to temporary files first; the rename of the model file is
    the only commit, so a failure or a kill leaves the previous output whole. The data file of the replaced model is
    removed afterwards unless another model in the folder references it. The destination goes through
    :func:`check_output_path` (never an input of this operation unless ``allow_overwrite_input``). Embedded weights
    are written tensor by tensor from their buffers (no second copy of the weights in memory).
    """
    import onnx_ir as ir

    out = Path(path)
    model = as_model(model)  # first: a model read from a path is then an input the guard protects
    check_output_path(out, allow_overwrite_input=allow_overwrite_input)
    folder = out.parent if str(out.parent) else Path(".")
    clean_stale(folder)

    total, has_external = _initializer_bytes(model)
    use_external = external_data if external_data is not None else (has_external or total > EXTERNAL_THRESHOLD)
    old = _referenced_locations(out)
    if not use_external:
        _write_embedded(model, out, folder)
        _remove_replaced_data(folder, out, old, None)
        return out
    data_name = data_file_name(out)
    data_path = folder / data_name
    if os.path.lexists(data_path):  # a fresh name (a pid and 32 random bits): never an input, a link or a folder
        raise UserInputError(f"{data_path} already exists; refusing to overwrite it", hint="try again")

    try:
        tmp_dir = folder / _tmp_name("save")
        os.mkdir(tmp_dir, 0o700)
    except OSError as err:
        raise _os_error(out, err) from err
    committed = False
    _inflight.add(data_name)
    try:
        tmp_model = tmp_dir / out.name
        try:
            ir.save(model, tmp_model, external_data=data_name, size_threshold_bytes=size_threshold_bytes)
        except OSError as err:
            raise _os_error(out, err) from err
        tmp_data = tmp_dir / data_name
        pause_point("tmp-written")
        wrote_data = tmp_data.exists() and data_name in _referenced_locations(tmp_model)  # no orphan data files
        if wrote_data:
            ordinary_permissions(tmp_data)
            os.replace(tmp_data, data_path)  # a new name: nothing the previous model reads changes
            pause_point("data-renamed")
        ordinary_permissions(tmp_model)
        try:
            os.replace(tmp_model, out)  # THE commit
        except BaseException:
            if wrote_data:
                with contextlib.suppress(OSError):
                    os.unlink(data_path)
            raise
        committed = True
        pause_point("committed")
    finally:
        _inflight.discard(data_name)
        shutil.rmtree(tmp_dir, ignore_errors=True)
    if committed:
        _remove_replaced_data(folder, out, old, data_name)
    return out


def ordinary_permissions(path: str | os.PathLike) -> None:
    """An ordinary new file's permissions (0666 minus the umask), not mkstemp's 0600 or a copied source's mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, allow_overwrite_input: bool = False) -> Path:
    """Write bytes to ``path`` through a temporary file in the same folder and a rename (guarded by
    :func:`check_output_path`)."""
    out = Path(path)
    check_output_path(out, allow_overwrite_input=allow_overwrite_input)
    folder = out.parent if str(out.parent) else Path(".")
    clean_stale(folder)
    with _atomic_file(out, folder) as fh:
        fh.write(data)
    return out


def atomic_write_text(path: str | os.PathLike, text: str, *, allow_overwrite_input: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8", "surrogateescape"),
                              allow_overwrite_input=allow_overwrite_input)


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
    import numpy as np
    import onnx
    import onnx_ir as ir
    from google.protobuf.message import DecodeError

    p = check_model_path(path)
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
    note_read(p)
    check_external_data(proto, p.parent)
    model = _deserialize(proto, p)
    set_base_dir(model, p.parent)
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

    def as_is(value) -> bool:
        """The tensor is a TensorProto already (same name, embedded): written as it is."""
        tensor = value.const_value
        return isinstance(tensor, ir.TensorProtoTensor) and tensor.raw.name == value.name and not tensor.raw.external_data

    def large_array(value):
        """The numpy array of a large tensor whose bytes are written straight from its buffer, else None."""
        tensor = value.const_value
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
        if as_is(value):
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
        if as_is(value):
            return value.const_value.raw.ByteSize()
        array = large_array(value)
        if array is not None:  # sized without copying a non-contiguous array
            return len(header(value, array)) + len(length_delimited(TENSOR_RAW_DATA_TAG, array.nbytes)) + array.nbytes
        return sum(len(part) for part in pieces(value))

    # two passes over the tensors: sizes first (headers only: cheap), then the bytes
    sizes = [size(value) for value in values]
    graph_len = len(graph_bytes) + sum(len(length_delimited(GRAPH_INITIALIZER_TAG, n)) + n for n in sizes)
    if len(head) + len(length_delimited(MODEL_GRAPH_TAG, graph_len)) + graph_len > PROTOBUF_LIMIT:
        raise UserInputError(f"{out}: model exceeds protobuf's 2 GB limit", hint="save with external data")
    with _atomic_file(out, folder) as fh:
        fh.write(head)
        fh.write(length_delimited(MODEL_GRAPH_TAG, graph_len))
        fh.write(graph_bytes)
        for value, n in zip(values, sizes):
            fh.write(length_delimited(GRAPH_INITIALIZER_TAG, n))
            for part in pieces(value):
                fh.write(part)
    pause_point("committed")
    return out


# ---------------------------------------------------------------- structure-only loading

STRIP_BYTES = 4096  # embedded tensors above this size are read for their header only
# field numbers: ModelProto.graph = 7; GraphProto.initializer = 5; TensorProto data fields
_GRAPH, _INITIALIZER = 7, 5
TENSOR_DATA_FIELDS = {4, 5, 6, 7, 9, 10, 11}  # float_data int32_data string_data int64_data raw_data double uint64


def structure_bytes(buf) -> tuple[bytes, dict[str, int]]:
    """Re-encode a serialized ModelProto without the data of large main-graph initializers.

    Returns the new serialization and {initializer name: stripped data bytes}.
    """
    stripped: dict[str, int] = {}
    parts: list = []
    for number, wire, fstart, payload, fend in fields(buf, 0, len(buf)):
        if number != _GRAPH or wire != 2:
            parts.append(buf[fstart:fend])
            continue
        graph_parts: list = []
        for gnum, gwire, gstart, gpay, gend in fields(buf, payload, fend):
            if gnum != _INITIALIZER or gwire != 2 or gend - gpay <= STRIP_BYTES:
                graph_parts.append(buf[gstart:gend])
                continue
            kept: list = []
            data_bytes = 0
            name = b""
            for tnum, twire, tstart, tpay, tend in fields(buf, gpay, gend):
                if tnum in TENSOR_DATA_FIELDS and twire == 2:
                    data_bytes += tend - tpay
                    continue
                if tnum == 8 and twire == 2:
                    name = bytes(buf[tpay:tend])
                kept.append(buf[tstart:tend])
            tensor = b"".join(kept)
            graph_parts.append(length_delimited(GRAPH_INITIALIZER_TAG, len(tensor)) + tensor)
            stripped[name.decode("utf-8", "replace")] = data_bytes
        graph = b"".join(graph_parts)
        parts.append(length_delimited(MODEL_GRAPH_TAG, len(graph)) + graph)
    return b"".join(parts), stripped


def load_structure(path: str | os.PathLike) -> tuple["onnx.ModelProto", dict[str, int]]:
    """Parse a model file without reading the data of large embedded tensors or of external data.

    The file and its external-data references are validated exactly as :func:`onnxdeploy._io.load_proto` does.
    Returns the proto (large initializers keep name, dims and dtype but no data) and {name: data bytes skipped}.
    """
    import onnx
    from google.protobuf.message import DecodeError

    p = check_model_path(path)
    try:
        with open(p, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            data, stripped = structure_bytes(mm)  # mmap slices are bytes copies: skipped data is never touched
        proto = onnx.ModelProto.FromString(data)
    except (ValueError, IndexError, DecodeError, OSError, RuntimeError):
        # not a well-formed protobuf: let the regular loader produce its one-line error
        return load_proto(p), {}
    _check_is_onnx(proto, p)
    check_external_data(proto, p.parent)
    return proto, stripped
