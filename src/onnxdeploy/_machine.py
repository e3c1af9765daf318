"""Know the machine: CPU model, cores, ISA features, installed engines and extras, and theoretical peaks.

Everything here reads files and package metadata; nothing imports an engine (torch, onnxruntime, openvino, ...), so
``onnxdeploy doctor`` answers in a fraction of a second. The CPU comes from ``/proc/cpuinfo`` (model, vendor,
family, flags, sockets and cores) and ``/sys/devices/system/cpu/cpu0/cpufreq`` (the clock); packages from
``importlib.metadata``; targets from the registry in :mod:`onnxdeploy.targets.base`.

Theoretical peaks (:func:`peak_flops`) are ``flops per cycle per core x cores x clock``, with the per-core figure
from the ISA and stated assumptions:

- fp32: vector lanes (16 with AVX-512F, 8 with AVX2, 4 with SSE) x 2 (an FMA is two flops) x FMA units per core
  (2 on Intel server cores with AVX-512 and on AVX2 cores; 1 for a 512-bit unit on AMD Zen 4, which runs 512-bit
  instructions as two 256-bit halves);
- bf16: AMX tiles, 1024 flops/cycle/core; else AVX512-BF16's dot product (2 bf16 pairs per fp32 lane, so 2x fp32);
  else none (bf16 is converted to fp32, the fp32 peak);
- fp16: AMX-FP16, 1024 flops/cycle/core; else AVX512-FP16 (32 lanes, 2x fp32); else F16C conversion to fp32;
- int8: AMX tiles, 2048 ops/cycle/core; else VNNI's 4-way dot product (4x fp32 on the same width), AVX512-VNNI
  or AVX-VNNI (256-bit); else AVX2/AVX-512BW's three-instruction sequence (4/3 of fp32).

The clock is cpufreq's ``base_frequency``, else ``cpuinfo_max_freq``, else the highest ``cpu MHz`` of
/proc/cpuinfo, else the ``@ 2.60GHz`` of the model name; the cores are the physical cores this process may run on.
Real kernels reach a fraction of these figures; benchmarks quote throughput as a fraction of them.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# display name -> /proc/cpuinfo flag
ISA_FEATURES: dict[str, str] = {
    "AMX-BF16": "amx_bf16", "AMX-INT8": "amx_int8", "AMX-TILE": "amx_tile", "AMX-FP16": "amx_fp16",
    "AVX512F": "avx512f", "AVX512BW": "avx512bw", "AVX512-BF16": "avx512_bf16", "AVX512-FP16": "avx512_fp16",
    "AVX512-VNNI": "avx512_vnni", "AVX-VNNI": "avx_vnni", "AVX2": "avx2", "FMA": "fma", "F16C": "f16c",
    "NEON": "asimd", "SVE": "sve",
}
# (name shown, role, distributions that provide it: the first installed one counts)
PACKAGES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("onnx", "core", ("onnx",)),
    ("onnx-ir", "core", ("onnx-ir", "onnx_ir")),
    ("onnxscript", "core", ("onnxscript",)),
    ("numpy", "core", ("numpy",)),
    ("onnxruntime", "engine", ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")),
    ("openvino", "engine", ("openvino", "openvino-nightly")),
    ("nncf", "engine", ("nncf",)),
    ("torch", "engine", ("torch",)),
    ("mnn", "engine", ("MNN", "mnn")),
    ("ncnn", "engine", ("ncnn",)),
    ("pnnx", "engine", ("pnnx",)),
    ("tensorflow", "engine", ("tensorflow", "tensorflow-cpu", "tensorflow-intel")),
    ("ai-edge-litert", "engine", ("ai-edge-litert", "ai-edge-litert-nightly")),
    ("executorch", "engine", ("executorch",)),
    ("tensorrt", "engine", ("tensorrt", "tensorrt-cu12")),
    ("onnxruntime-genai", "engine", ("onnxruntime-genai",)),
    ("optimum", "extra", ("optimum",)),
    ("kserve", "extra", ("kserve",)),
    ("tritonclient", "extra", ("tritonclient",)),
    ("pillow", "extra", ("pillow", "Pillow")),
    ("transformers", "extra", ("transformers",)),
)
# targets whose available() imports the engine: judged by the presence of these modules instead (never imported)
TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "openvino": ("openvino",), "tensorrt": ("tensorrt",), "onnxruntime": ("onnxruntime",),
    "ort-mobile": ("onnxruntime",), "mnn": ("MNN",), "ncnn": ("ncnn",), "pnnx": ("pnnx",),
    "tflite": ("ai_edge_litert", "tensorflow"), "litert": ("ai_edge_litert", "tensorflow"),
    "executorch": ("executorch",), "torch": ("torch",), "triton": ("tritonclient",),
}
_CPUINFO = Path("/proc/cpuinfo")
_CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq")


@dataclass
class CPU:
    """What the processor is and what it can do (from /proc/cpuinfo and cpufreq)."""

    model: str
    vendor: str
    family: int | None
    architecture: str
    physical_cores: int | None  # distinct (socket, core) pairs; None when /proc/cpuinfo does not say
    logical_cpus: int  # what the OS shows (os.cpu_count)
    affinity: int  # logical CPUs this process may run on
    sockets: int | None
    flags: frozenset[str] = frozenset()
    clock_ghz: float | None = None
    clock_source: str = "unknown"

    @property
    def features(self) -> dict[str, bool]:
        return {name: flag in self.flags for name, flag in ISA_FEATURES.items()}

    @property
    def peak_cores(self) -> int:
        """The cores a peak counts: physical cores this process may use (hyperthreads share one core's units)."""
        cores = self.physical_cores or self.logical_cpus
        return max(1, min(cores, self.affinity))

    def to_dict(self) -> dict:
        return {"model": self.model, "vendor": self.vendor, "family": self.family, "architecture": self.architecture,
                "physical_cores": self.physical_cores, "logical_cpus": self.logical_cpus, "affinity": self.affinity,
                "sockets": self.sockets, "clock_ghz": self.clock_ghz, "clock_source": self.clock_source,
                "features": self.features}


@dataclass
class Package:
    name: str
    role: str  # "core", "engine" or "extra"
    version: str | None  # None: not installed
    distribution: str | None = None  # the distribution that provides it (e.g. tensorflow-cpu)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class TargetStatus:
    name: str
    available: bool
    how: str  # "probed" (the target's own cheap check) or "package check" (located, not imported)
    reason: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Peak:
    precision: str
    flops_per_cycle_per_core: float
    gflops: float | None  # None when the clock is unknown
    how: str  # the unit that computes it and the assumptions

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class MachineReport:
    """The machine a result was measured on: CPU, ISA features, installed engines, targets, theoretical peaks."""

    cpu: CPU
    python: str
    system: str
    packages: list[Package] = field(default_factory=list)
    targets: list[TargetStatus] = field(default_factory=list)
    peaks: list[Peak] = field(default_factory=list)

    @property
    def features(self) -> dict[str, bool]:
        return self.cpu.features

    def installed(self, role: str | None = None) -> dict[str, str]:
        return {p.name: p.version for p in self.packages if p.version and (role is None or p.role == role)}

    def peak_flops(self, precision: str) -> tuple[float | None, str]:
        """``(FLOP/s, how)``: the theoretical peak for ``precision`` and the assumptions behind it."""
        return peak_flops(precision, self.cpu)

    def summary(self) -> str:
        """One line: ``2 cores (2 logical), Intel(R) Xeon(R) ..., AMX-BF16 AMX-INT8 ...; fp32 peak 333 GFLOP/s``."""
        have = " ".join(name for name, ok in self.features.items() if ok) or "no SIMD features listed"
        fp32 = next((p for p in self.peaks if p.precision == "fp32"), None)
        peak = f"; fp32 peak {fp32.gflops:.0f} GFLOP/s" if fp32 and fp32.gflops else ""
        cores = self.cpu.physical_cores or "?"
        return f"{cores} cores ({self.cpu.logical_cpus} logical), {self.cpu.model}, {have}{peak}"

    def to_dict(self) -> dict:
        return {"cpu": self.cpu.to_dict(), "python": self.python, "system": self.system,
                "packages": [p.to_dict() for p in self.packages], "targets": [t.to_dict() for t in self.targets],
                "peaks": [p.to_dict() for p in self.peaks], "summary": self.summary()}


# ---------------------------------------------------------------- the CPU


def _records(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per logical CPU."""
    records, current = [], {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                records.append(current)
            current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip()] = value.strip()
    if current:
        records.append(current)
    return records


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _clock(records: Sequence[Mapping[str, str]], model: str, cpufreq: Path | None) -> tuple[float | None, str]:
    """The clock peaks are computed at (GHz), and where it was read."""
    if cpufreq is not None:
        for name in ("base_frequency", "cpuinfo_max_freq"):
            text = _read(cpufreq / name)
            if text and text.strip().isdigit() and int(text) > 0:
                return int(text) / 1e6, f"{cpufreq / name}"
    mhz = [float(r["cpu MHz"]) for r in records if re.fullmatch(r"[0-9.]+", r.get("cpu MHz", ""))]
    if mhz and max(mhz) > 0:
        return max(mhz) / 1000, "/proc/cpuinfo 'cpu MHz'; no cpufreq here"
    match = re.search(r"@\s*([0-9.]+)\s*GHz", model)
    if match:
        return float(match.group(1)), "the model name's nominal clock"
    return None, "unknown (no cpufreq, no 'cpu MHz' in /proc/cpuinfo)"


def read_cpu(cpuinfo: str | None = None, *, cpufreq: str | os.PathLike | None = None,
             logical_cpus: int | None = None, affinity: int | None = None) -> CPU:
    """The CPU as /proc/cpuinfo (or the given text, for tests) describes it; the clock from ``cpufreq`` (a folder
    like ``/sys/devices/system/cpu/cpu0/cpufreq``; by default that one when ``cpuinfo`` is not given)."""
    this_machine = cpuinfo is None
    text = (_read(_CPUINFO) or "") if this_machine else cpuinfo
    records = _records(text)
    first = records[0] if records else {}
    model = first.get("model name") or first.get("Model") or platform.processor() or "unknown CPU"
    flags = frozenset((first.get("flags") or first.get("Features") or "").split())
    cores = {(r.get("physical id", "0"), r["core id"]) for r in records if "core id" in r}
    sockets = {r["physical id"] for r in records if "physical id" in r}
    physical = len(cores) or None
    if physical is None and first.get("cpu cores", "").isdigit():
        physical = int(first["cpu cores"]) * max(1, len(sockets))
    logical = logical_cpus or (os.cpu_count() if this_machine else len(records)) or 1
    if affinity is None:
        affinity = len(os.sched_getaffinity(0)) if this_machine and hasattr(os, "sched_getaffinity") else logical
    folder = Path(cpufreq) if cpufreq is not None else (_CPUFREQ if this_machine else None)
    clock, source = _clock(records, model, folder)
    family = first.get("cpu family", "")
    return CPU(model=model, vendor=first.get("vendor_id", "unknown"), family=int(family) if family.isdigit() else None,
               architecture=platform.machine() if this_machine else ("x86_64" if "vendor_id" in first else "unknown"),
               physical_cores=physical, logical_cpus=logical, affinity=affinity, sockets=len(sockets) or None,
               flags=flags, clock_ghz=clock, clock_source=source)


# ---------------------------------------------------------------- peaks


def _fp32_per_cycle(cpu: CPU) -> tuple[int, int, str]:
    """(fp32 lanes, FMA units, words) for one core."""
    f = cpu.flags
    if "avx512f" in f:
        if cpu.vendor == "AuthenticAMD" and cpu.family == 25:
            return 16, 1, "AVX-512 FMA, 16 fp32 lanes x 1 unit/core (Zen 4 splits 512-bit ops in two 256-bit halves)"
        return 16, 2, "AVX-512 FMA: 16 fp32 lanes x 2 FMA units/core (assumed, as on Xeon Gold/Platinum)"
    if "avx2" in f and "fma" in f:
        return 8, 2, "AVX2 FMA, 8 fp32 lanes x 2 units/core (assumed)"
    if "asimd" in f:
        return 4, 2, "NEON FMA, 4 fp32 lanes x 2 units/core (assumed)"
    return 4, 1, "SSE, 4 fp32 lanes, 1 multiply + 1 add per cycle (no FMA)"


def _per_cycle(precision: str, cpu: CPU) -> tuple[float, str]:
    """Flops (ops for int8) per cycle per core for ``precision``, and the unit that computes them."""
    lanes, units, fp32_words = _fp32_per_cycle(cpu)
    fp32 = lanes * 2 * units
    f = cpu.flags
    if precision == "fp32":
        return fp32, fp32_words
    if precision == "bf16":
        if {"amx_bf16", "amx_tile"} <= f:
            return 1024, "AMX-BF16 tiles, 1024 flops/cycle/core"
        if "avx512_bf16" in f:
            return 2 * fp32, f"AVX512-BF16 dot products (2 bf16 pairs per fp32 lane) on the {fp32_words}"
        return fp32, "no bf16 unit: bf16 is computed in fp32 (" + fp32_words + ")"
    if precision == "fp16":
        if {"amx_fp16", "amx_tile"} <= f:
            return 1024, "AMX-FP16 tiles, 1024 flops/cycle/core"
        if "avx512_fp16" in f:
            return 2 * fp32, f"AVX512-FP16, 32 fp16 lanes on the {fp32_words}"
        return fp32, "no fp16 arithmetic: fp16 is converted to fp32 (" + ("F16C; " if "f16c" in f else "") + \
            fp32_words + ")"
    if precision == "int8":
        if {"amx_int8", "amx_tile"} <= f:
            return 2048, "AMX-INT8 tiles, 2048 ops/cycle/core"
        if "avx512_vnni" in f and lanes == 16:
            return 4 * fp32, f"AVX512-VNNI 4-way int8 dot products on the {fp32_words}"
        if "avx_vnni" in f:
            return 4 * 8 * 2 * 2, "AVX-VNNI (256-bit) 4-way int8 dot products, 2 units/core (assumed)"
        return 4 * fp32 / 3, f"no VNNI: int8 via pmaddubsw/pmaddwd/paddd (3 instructions per 4-way dot) on the " \
            f"{fp32_words}"
    raise ValueError(f"unknown precision {precision!r}; one of {', '.join(PRECISIONS)}")


def peak_flops(precision: str, cpu: CPU | None = None) -> tuple[float | None, str]:
    """``(FLOP/s or None, how)``: the theoretical peak of ``cpu`` (this machine's by default) for ``precision``
    (fp32, bf16, fp16, int8: int8 counts ops), with the unit, cores, clock and its source in ``how``."""
    from onnxdeploy.errors import UserInputError

    if precision not in PRECISIONS:
        from onnxdeploy._suggest import did_you_mean

        raise UserInputError(f"unknown precision {precision!r}", hint=did_you_mean(precision, PRECISIONS,
                                                                                 what="precisions"))
    cpu = cpu or read_cpu()
    per_cycle, unit = _per_cycle(precision, cpu)
    cores = cpu.peak_cores
    if cpu.clock_ghz is None:
        return None, f"{unit}; x {cores} cores; clock {cpu.clock_source}"
    value = per_cycle * cores * cpu.clock_ghz * 1e9
    return value, f"{unit}; x {cores} cores x {cpu.clock_ghz:.2f} GHz (clock: {cpu.clock_source})"


def peaks(cpu: CPU) -> list[Peak]:
    rows = []
    for precision in PRECISIONS:
        value, how = peak_flops(precision, cpu)
        rows.append(Peak(precision, _per_cycle(precision, cpu)[0], None if value is None else value / 1e9, how))
    return rows


# ---------------------------------------------------------------- packages and targets


def package_version(*distributions: str) -> tuple[str | None, str | None]:
    """``(version, distribution)`` of the first installed distribution (metadata only, nothing imported)."""
    for dist in distributions:
        try:
            return metadata.version(dist), dist
        except metadata.PackageNotFoundError:
            continue
    return None, None


def packages() -> list[Package]:
    return [Package(name, role, *package_version(*dists)) for name, role, dists in PACKAGES]


def _module_present(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None  # a top-level name: located, not imported
    except (ImportError, ValueError):
        return False


def target_status() -> list[TargetStatus]:
    """Each registered target: its own ``available()`` when that is cheap (it does not import an engine), else
    whether the engine's package is installed (located, never imported)."""
    from onnxdeploy.targets.base import TARGET_NAMES, get_target

    rows = []
    for name in TARGET_NAMES:
        modules = TARGET_MODULES.get(name)
        if modules:
            present = [m for m in modules if _module_present(m)]
            reason = "" if present else f"{' or '.join(modules)}: not installed"
            rows.append(TargetStatus(name, bool(present), "package check", reason))
            continue
        ok, why = get_target(name).available()
        rows.append(TargetStatus(name, ok, "probed", why))
    return rows


def machine_report(*, cpuinfo: str | None = None, cpufreq: str | os.PathLike | None = None,
                   with_targets: bool = True) -> MachineReport:
    """This machine (or the CPU ``cpuinfo`` text describes): CPU, ISA features, packages, targets and peaks."""
    cpu = read_cpu(cpuinfo, cpufreq=cpufreq)
    return MachineReport(
        cpu=cpu,
        python=platform.python_version(),
        system=f"{platform.system()} {platform.release()}",
        packages=packages(),
        targets=target_status() if with_targets else [],
        peaks=peaks(cpu),
    )
