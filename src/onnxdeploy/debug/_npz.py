"""An .npz written one array at a time (so a dump larger than memory works), renamed into place when complete."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from onnxdeploy.errors import UserInputError
from onnxdeploy._io import ordinary_permissions


def storable(array: np.ndarray) -> np.ndarray:
    """The array as np.load can read it back without pickle: strings as unicode, ml_dtypes floats as float32."""
    if array.dtype.kind == "O":
        return array.astype(str)
    if array.dtype.kind == "V" or type(array.dtype).__module__.startswith("ml_dtypes"):
        return array.astype(np.int8 if "int" in str(array.dtype) else np.float32)
    return array


class NpzWriter:
    """``with NpzWriter(path) as w: w.write(name, array)``; on error nothing is left behind."""

    def __init__(self, path: str | os.PathLike) -> None:
        from onnxdeploy._io import TMP_PREFIX, check_output_path

        self.path = Path(path)
        if self.path.is_dir():
            raise UserInputError(f"{self.path} is a folder; give a file name such as {self.path / 'dump.npz'}")
        check_output_path(self.path)  # never an input of this operation, a folder that exists and is writable
        folder = self.path.parent if str(self.path.parent) else Path(".")
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", suffix=".npz", dir=folder)
        os.close(fd)
        self._tmp = Path(tmp)
        self._zip = zipfile.ZipFile(self._tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.names: list[str] = []
        self.bytes = 0

    def write(self, name: str, array: np.ndarray) -> None:
        array = storable(np.asarray(array))
        with self._zip.open(name + ".npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, array, allow_pickle=False)
        self.names.append(name)
        self.bytes += array.nbytes

    def close(self) -> Path:
        self._zip.close()
        ordinary_permissions(self._tmp)
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._zip.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "NpzWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
