"""One error tree for onnxdeploy.

A user mistake raises a subclass of :class:`OnnxDeployError`. The CLI turns it into one line (plus a hint) and a
non-zero exit code; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_USER_ERROR = 1
EXIT_MISMATCH = 3


class OnnxDeployError(Exception):
    """Base class of every error a user can cause. ``hint`` says how to fix it."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ModelFileError(OnnxDeployError, OSError):
    """A model file (or one of its external-data files) is missing, unreadable, corrupt or not ONNX."""


class UnsafeModelError(OnnxDeployError, ValueError):
    """A model refers to files outside its folder (absolute paths, '..', symlinks, hard links)."""


class InvalidModelError(OnnxDeployError, ValueError):
    """A model fails the ONNX checker or shape inference, or an edit would make it invalid."""


class UserInputError(OnnxDeployError, ValueError):
    """A bad argument: unknown node or tensor name, wrong shape or dtype, malformed option."""


class UnsupportedError(OnnxDeployError, ValueError):
    """An operator, dtype or feature the requested tool or target does not support."""


class MissingDependencyError(OnnxDeployError, ImportError):
    """An optional dependency is not installed; the hint names the extra to install."""


class OutputsDisagree(OnnxDeployError):
    """Two computations that must agree differ beyond tolerance. Has its own exit code for CI gating."""

    exit_code = EXIT_MISMATCH


def require(module: str, *, extra: str, purpose: str):
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"{purpose} needs the '{module}' package, which is not installed",
            hint=f"pip install 'onnxdeploy[{extra}]'",
        ) from err


# ---------------------------------------------------------------- OS and library errors -> one line
#
# Errors raised by the OS, protobuf, onnx, onnx-ir, onnxscript, onnxruntime or OpenVINO while reading, converting or
# running a model are not bugs of ours: the CLI turns them into one line naming the file (and the tensor when known)
# with :func:`translate`. Everything else (a KeyError in our own logic, ...) keeps its traceback. One table, one place.

import errno as _errno
import os as _os
import sys as _sys
from typing import Callable, NamedTuple

_OS_ERRORS = {
    _errno.ENAMETOOLONG: ("file name too long", "use a shorter file or folder name"),
    _errno.EACCES: ("permission denied", "check the file's permissions, or write the output to another folder (-o)"),
    _errno.EPERM: ("operation not permitted", "write the output to another folder (-o)"),
    _errno.EROFS: ("read-only file system", "write the output to a writable folder (-o)"),
    _errno.ENOSPC: ("no space left on the device", "free some space or write the output elsewhere (-o)"),
    _errno.EDQUOT: ("disk quota exceeded", "free some space or write the output elsewhere (-o)"),
    _errno.ENOENT: ("no such file or directory", "check the path"),
    _errno.ELOOP: ("too many levels of symbolic links (a symlink loop?)", "give the real path of the file"),
    _errno.EISDIR: ("is a directory", "give a file path"),
    _errno.ENOTDIR: ("a part of the path is not a directory", "check the path"),
    _errno.EEXIST: ("already exists", "remove it or choose another path"),
    _errno.EXDEV: ("cannot move across file systems", "write the output on the same file system"),
    _errno.EFBIG: ("file too large", "write the output elsewhere"),
    _errno.EMFILE: ("too many open files", "raise the limit with `ulimit -n`"),
    _errno.EIO: ("input/output error", "check the disk or the device"),
    _errno.ENXIO: ("no such device or address", "give a regular file"),
    _errno.EINVAL: ("invalid argument", "give a regular file"),
}

_LIBRARIES = ("onnx", "onnx_ir", "onnxscript", "google", "onnxruntime", "openvino", "onnxsim", "onnxslim",
              "onnxconverter_common", "onnx_graphsurgeon", "polygraphy")
_MAX_MESSAGE = 400


class ErrorRule(NamedTuple):
    """``matches(exc)`` -> the rule applies; ``build(exc, subject)`` -> ``(message, hint)``."""

    name: str
    matches: Callable[[BaseException], bool]
    build: Callable[[BaseException, str | None], tuple[str, str | None]]


def first_line(text: object, limit: int = _MAX_MESSAGE) -> str:
    """The first non-empty line of ``text`` (control characters shown escaped), at most ``limit`` characters."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[0] if lines else ""
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
    line = line.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates print
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _type_module(exc: BaseException) -> str:
    return type(exc).__module__ or ""


def _innermost_package(exc: BaseException) -> str:
    """The top-level package of the innermost Python frame the exception passed through ('' when unknown)."""
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "") or ""
    return module.split(".")[0]


def _innermost_module(exc: BaseException) -> str:
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_globals.get("__name__", "") or ""


def _from_library(exc: BaseException) -> bool:
    return (_type_module(exc).split(".")[0] in _LIBRARIES and _type_module(exc) != "builtins") or \
        _innermost_package(exc) in _LIBRARIES


def _tensor_name(exc: BaseException) -> str | None:
    """The name of the tensor being read when ``exc`` was raised, when one of the frames holds one."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames[-12:]):
        for key in ("tensor", "initializer", "value", "self"):
            obj = frame.f_locals.get(key)
            if obj is None or type(obj).__module__.split(".")[0] not in ("onnx", "onnx_ir"):
                continue
            if "Tensor" not in type(obj).__name__ and key != "tensor":
                continue
            name = getattr(obj, "name", None)
            if isinstance(name, bytes):
                name = name.decode("utf-8", "backslashreplace")
            if isinstance(name, str) and name:
                return name
    return None


def _where(exc: BaseException, subject: str | None) -> str:
    """``'FILE: '`` or ``'FILE: tensor 'T': '`` for the start of a message."""
    parts = []
    if subject:
        parts.append(first_line(subject))
    tensor = _tensor_name(exc)
    if tensor:
        parts.append(f"tensor {first_line(tensor)!r}")
    return ": ".join(parts) + ": " if parts else ""


def _os_message(exc: BaseException, subject: str | None) -> tuple[str, str | None]:
    assert isinstance(exc, OSError)
    what, hint = _OS_ERRORS.get(exc.errno, (None, None))
    what = what or first_line(exc.strerror or exc) or type(exc).__name__
    name = exc.filename if exc.filename is not None else subject
    if isinstance(name, (bytes, _os.PathLike)):
        name = _os.fsdecode(name)
    where = f"{first_line(name)}: " if name else ""
    if exc.filename2 is not None:
        where = f"{first_line(name)} -> {first_line(_os.fsdecode(exc.filename2))}: "
    if isinstance(exc, BrokenPipeError):
        return "output closed early (broken pipe)", None
    return f"{where}{what}", hint


def _decode_message(exc: BaseException, subject: str | None) -> tuple[str, str | None]:
    detail = first_line(exc)
    return (f"{_where(exc, subject)}not a valid ONNX protobuf file" + (f" ({detail})" if detail else ""),
            "the file is truncated, corrupt or not an ONNX model")


def _ort_message(exc: BaseException, subject: str | None) -> tuple[str, str | None]:
    import re

    detail = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", first_line(exc))
    return (f"{_where(exc, subject)}onnxruntime failed ({type(exc).__name__}): {detail}",
            "run `onnxdeploy check MODEL` to see what the model needs")


def _openvino_message(exc: BaseException, subject: str | None) -> tuple[str, str | None]:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # OpenVINO's messages start with "Exception from src/...cpp:NN:" and put the reason on a later line
    useful = [ln for ln in lines if not ln.startswith(("Exception from src", "Check '")) and not ln.endswith(".cpp")]
    detail = first_line(useful[-1] if useful else (lines[-1] if lines else type(exc).__name__))
    return f"{_where(exc, subject)}OpenVINO failed: {detail}", "run `onnxdeploy check MODEL --target openvino`"


def _library_message(exc: BaseException, subject: str | None) -> tuple[str, str | None]:
    package = _type_module(exc).split(".")[0]
    if package in ("builtins", "") or package not in _LIBRARIES:
        package = _innermost_package(exc) or "a library"
    package = {"onnx_ir": "onnx-ir", "google": "protobuf"}.get(package, package)
    cause = _root_cause(exc)
    detail = first_line(cause) or type(cause).__name__
    kind = "unsupported" if isinstance(cause, NotImplementedError) else "invalid model"
    return (f"{_where(exc, subject)}{kind}: {detail} ({package}: {type(cause).__name__})",
            "the model uses something this tool cannot handle; `onnxdeploy check MODEL` lists the problems")


def _is_decode_error(exc: BaseException) -> bool:
    return any(c.__name__ == "DecodeError" and (c.__module__ or "").startswith("google") for c in type(exc).__mro__)


def _is_onnxruntime_error(exc: BaseException) -> bool:
    return _type_module(exc).startswith("onnxruntime")


def _is_openvino_error(exc: BaseException) -> bool:
    if not isinstance(exc, RuntimeError) or isinstance(exc, (RecursionError, NotImplementedError)):
        return False
    if _type_module(exc).startswith("openvino") or _innermost_package(exc) == "openvino":
        return True
    return _innermost_module(exc) == "onnxdeploy.targets.openvino" or str(exc).startswith("Exception from src/")


def _is_library_error(exc: BaseException) -> bool:
    if isinstance(exc, (ValueError, NotImplementedError, TypeError, IndexError, EOFError, RuntimeError)) and _from_library(exc):
        return True  # includes UnicodeDecodeError (a ValueError) on invalid UTF-8 names
    # an error type a library defines: onnx's checker/shape inference (onnx.onnx_cpp2py_export.checker.
    # ValidationError), onnx-ir's SerdeError (wrapping the real cause), onnxscript's errors, ...
    return isinstance(exc, Exception) and _type_module(exc).split(".")[0] in _LIBRARIES \
        and _type_module(exc).split(".")[0] not in ("onnxruntime", "openvino")


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost explicitly chained cause (onnx-ir's SerdeError says only where it failed; its cause says why)."""
    seen = set()
    while exc.__cause__ is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__
    return exc


ERROR_RULES: list[ErrorRule] = [
    ErrorRule("os", lambda e: isinstance(e, OSError) and not _is_onnxruntime_error(e), _os_message),
    ErrorRule("protobuf", _is_decode_error, _decode_message),
    ErrorRule("onnxruntime", _is_onnxruntime_error, _ort_message),
    ErrorRule("openvino", _is_openvino_error, _openvino_message),
    ErrorRule("library", _is_library_error, _library_message),
    ErrorRule("os", lambda e: isinstance(e, RuntimeError) and str(e).startswith("Symlink loop"),
              lambda e, s: (f"{str(e).removeprefix('Symlink loop from ').strip(chr(39))}: a loop of symbolic links",
                            "point the path at a real file")),  # pathlib's resolve() on Python < 3.13
    ErrorRule("memory", lambda e: isinstance(e, MemoryError),
              lambda e, s: (f"{_where(e, s)}out of memory", "use smaller shapes (--shape/--dim) or a smaller model")),
    ErrorRule("recursion", lambda e: isinstance(e, RecursionError),
              lambda e, s: (f"{_where(e, s)}the model is nested too deeply to process",
                            "subgraphs (If/Loop/Scan bodies) nest too deep")),
]


def translate(exc: BaseException, *, subject: str | None = None) -> OnnxDeployError | None:
    """The one-line :class:`OnnxDeployError` for an OS or library error, or None when ``exc`` is a bug of ours.

    ``subject`` names the file being worked on (the CLI passes the model argument); OS errors name their own file.
    """
    if isinstance(exc, OnnxDeployError):
        return exc
    for rule in ERROR_RULES:
        try:
            matched = rule.matches(exc)
        except Exception:  # noqa: BLE001 - a predicate must never hide the original error
            matched = False
        if matched:
            message, hint = rule.build(exc, subject)
            error = ModelFileError(message, hint=hint) if rule.name in ("os", "protobuf") else \
                InvalidModelError(message, hint=hint)
            error.__cause__ = exc
            return error
    return None
