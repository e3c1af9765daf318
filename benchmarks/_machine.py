"""The machine line every benchmark result starts with: cores, CPU model, Python and package versions."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
from pathlib import Path

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_tile")


def _cpuinfo(key: str) -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), "")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine(*packages: str, flags: bool = False) -> str:
    """E.g. ``2 CPUs (nproc), AMD EPYC ...; Python 3.11.7; onnx 1.23.2, onnxruntime 1.32.0``."""
    cpu = _cpuinfo("model name") or platform.processor() or "unknown CPU"
    line = f"{os.cpu_count()} CPUs (`nproc`), {cpu}"
    if flags:
        have = [f for f in _cpuinfo("flags").split() if f in CPU_FLAGS]
        line += f", flags: {' '.join(have) or 'none of ' + '/'.join(CPU_FLAGS)}"
    versions = ", ".join(f"{p} {_version(p)}" for p in packages)
    return f"{line}; Python {platform.python_version()}" + (f"; {versions}" if versions else "")
