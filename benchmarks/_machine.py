"""The machine line every benchmark result starts with: cores, CPU model, ISA features, peaks, package versions.

A thin layer over :func:`onnxdeploy.machine_report` (``onnxdeploy doctor`` prints the same facts), kept so that the
benchmarks' ``from _machine import machine`` goes on working.
"""

from __future__ import annotations

import importlib.metadata as metadata
import platform

from onnxdeploy import machine_report

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")


def _cpuinfo(key: str) -> str:
    """The first value of ``key`` in /proc/cpuinfo ("" when absent)."""
    if key == "model name":
        return _cpu().model
    if key == "flags":
        return " ".join(sorted(_cpu().flags))
    from pathlib import Path

    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), "")


def _cpu():
    return machine_report(with_targets=False).cpu


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine(*packages: str, flags: bool = False) -> str:
    """E.g. ``2 CPUs (nproc), AMD EPYC ...; Python 3.11.7; onnx 1.23.2, onnxruntime 1.32.0``; with ``flags``, the
    ISA features (AMX, AVX-512, VNNI, ...) and the theoretical fp32/bf16/int8 peaks follow the CPU."""
    cpu = _cpu()
    line = f"{cpu.logical_cpus} CPUs (`nproc`), {cpu.model}"
    if flags:
        have = [f for f in CPU_FLAGS if f in cpu.flags]
        line += f", flags: {' '.join(have) or 'none of ' + '/'.join(CPU_FLAGS)}"
        line += f"; peaks: {peaks_text()}"
    versions = ", ".join(f"{p} {_version(p)}" for p in packages)
    return f"{line}; Python {platform.python_version()}" + (f"; {versions}" if versions else "")


def peaks_text() -> str:
    """``fp32 333 GFLOP/s, bf16 5325 GFLOP/s (AMX-BF16 tiles), int8 10650 GOP/s (AMX-INT8 tiles) at 2.60 GHz x 2``."""
    report = machine_report(with_targets=False)
    parts = []
    for p in report.peaks:
        if p.gflops is None:
            continue
        unit = "GOP/s" if p.precision == "int8" else "GFLOP/s"
        parts.append(f"{p.precision} {p.gflops:.0f} {unit} ({p.how.split(';')[0].split(':')[0].split(',')[0]})")
    cpu = report.cpu
    clock = f"{cpu.clock_ghz:.2f} GHz" if cpu.clock_ghz else "unknown clock"
    return ", ".join(parts) + f", at {clock} x {cpu.peak_cores} cores (theoretical; `onnxdeploy doctor` says how)"


def fraction_of_peak(flops_per_second: float, precision: str) -> str:
    """``"12.3% of the bf16 peak"``: achieved throughput against this machine's theoretical peak."""
    peak, _ = machine_report(with_targets=False).peak_flops(precision)
    return f"{100 * flops_per_second / peak:.1f}% of the {precision} peak" if peak else "peak unknown"
