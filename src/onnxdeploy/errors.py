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
