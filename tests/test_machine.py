"""The machine report (`onnxdeploy doctor`): CPU facts read from /proc/cpuinfo, peaks computed from the ISA, packages
from metadata, and no engine imported on the way."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onnxdeploy import MachineReport, machine_report, peak_flops
from onnxdeploy._machine import ISA_FEATURES, read_cpu
from onnxdeploy.cli.main import main
from onnxdeploy.errors import UserInputError

CPUINFO = Path("/proc/cpuinfo")
ROOT = Path(__file__).resolve().parents[1]


def _fake(flags: str, *, logical: int = 2, cores_per_socket: int | None = None, mhz: str | None = "2600.000",
          model: str = "Intel(R) Xeon(R) Platinum 8480+", vendor: str = "GenuineIntel", family: int = 6) -> str:
    """A /proc/cpuinfo text: ``logical`` CPUs, two hyperthreads per core when ``cores_per_socket`` is smaller."""
    cores = cores_per_socket or logical
    blocks = []
    for i in range(logical):
        lines = [f"processor\t: {i}", f"vendor_id\t: {vendor}", f"cpu family\t: {family}", f"model name\t: {model}",
                 "physical id\t: 0", f"siblings\t: {logical}", f"core id\t: {i % cores}", f"cpu cores\t: {cores}"]
        if mhz is not None:
            lines.append(f"cpu MHz\t\t: {mhz}")
        lines.append(f"flags\t\t: fpu sse sse2 {flags}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


SAPPHIRE_RAPIDS = "avx f16c fma avx2 avx512f avx512bw avx512_vnni avx_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8"


@pytest.mark.skipif(not CPUINFO.exists(), reason="no /proc/cpuinfo on this system")
def test_the_report_lists_the_flags_proc_cpuinfo_has():
    flags = set(next(line for line in CPUINFO.read_text().splitlines() if line.startswith(("flags", "Features")))
                .split(":", 1)[1].split())
    report = machine_report(with_targets=False)
    assert report.features == {name: flag in flags for name, flag in ISA_FEATURES.items()}
    assert report.cpu.logical_cpus == os.cpu_count()
    assert report.cpu.affinity == len(os.sched_getaffinity(0))
    model = next(line for line in CPUINFO.read_text().splitlines() if line.startswith("model name"))
    assert report.cpu.model == model.split(":", 1)[1].strip()
    assert {p.precision for p in report.peaks} == {"fp32", "bf16", "fp16", "int8"}


def test_peak_math_on_a_fake_sapphire_rapids():
    cpu = read_cpu(_fake(SAPPHIRE_RAPIDS), logical_cpus=2, affinity=2)
    assert (cpu.physical_cores, cpu.clock_ghz) == (2, 2.6)
    fp32, how = peak_flops("fp32", cpu)
    assert fp32 == pytest.approx(16 * 2 * 2 * 2 * 2.6e9)  # lanes x FMA flops x units x cores x clock = 332.8 GFLOP/s
    assert "2 FMA units" in how and "2 cores" in how and "2.60 GHz" in how and "cpu MHz" in how
    bf16, how = peak_flops("bf16", cpu)
    assert bf16 == pytest.approx(1024 * 2 * 2.6e9) and "AMX-BF16" in how
    int8, how = peak_flops("int8", cpu)
    assert int8 == pytest.approx(2048 * 2 * 2.6e9) and "AMX-INT8" in how
    fp16, how = peak_flops("fp16", cpu)
    assert fp16 == pytest.approx(2 * fp32) and "AVX512-FP16" in how


def test_peak_math_without_amx_and_on_avx2_only():
    cooper = read_cpu(_fake("avx fma avx2 avx512f avx512bw avx512_vnni avx512_bf16", logical=4), affinity=4)
    fp32 = peak_flops("fp32", cooper)[0]
    assert peak_flops("bf16", cooper)[0] == pytest.approx(2 * fp32)
    int8, how = peak_flops("int8", cooper)
    assert int8 == pytest.approx(4 * fp32) and "AVX512-VNNI" in how
    zen3 = read_cpu(_fake("avx fma f16c avx2", logical=8, model="AMD EPYC 7763 64-Core Processor",
                          vendor="AuthenticAMD", family=25), affinity=8)
    fp32, how = peak_flops("fp32", zen3)
    assert fp32 == pytest.approx(8 * 2 * 2 * 8 * 2.6e9) and "AVX2" in how
    value, how = peak_flops("bf16", zen3)
    assert value == fp32 and "no bf16 unit" in how
    assert peak_flops("int8", zen3)[1].startswith("no VNNI")
    zen4 = read_cpu(_fake("avx fma avx2 avx512f avx512_vnni avx512_bf16", logical=2, vendor="AuthenticAMD",
                          family=25), affinity=2)
    assert peak_flops("fp32", zen4)[0] == pytest.approx(16 * 2 * 1 * 2 * 2.6e9)  # one 512-bit unit's worth


def test_hyperthreads_and_affinity_bound_the_cores_a_peak_counts(tmp_path):
    cpu = read_cpu(_fake("avx fma avx2", logical=8, cores_per_socket=4), affinity=8)
    assert (cpu.physical_cores, cpu.logical_cpus, cpu.peak_cores) == (4, 8, 4)
    assert read_cpu(_fake("avx fma avx2", logical=8, cores_per_socket=4), affinity=2).peak_cores == 2


def test_the_clock_comes_from_cpufreq_then_cpuinfo_then_the_model_name(tmp_path):
    (tmp_path / "base_frequency").write_text("2100000\n")
    cpu = read_cpu(_fake("fma avx2"), cpufreq=tmp_path)
    assert cpu.clock_ghz == 2.1 and cpu.clock_source.endswith("base_frequency")
    assert "2.10 GHz" in peak_flops("fp32", cpu)[1]
    cpu = read_cpu(_fake("fma avx2", mhz=None, model="Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz"))
    assert (cpu.clock_ghz, cpu.clock_source) == (2.1, "the model name's nominal clock")
    cpu = read_cpu(_fake("fma avx2", mhz=None, model="Some CPU"))
    value, how = peak_flops("fp32", cpu)
    assert value is None and "unknown" in how


def test_an_unknown_precision_names_the_closest():
    with pytest.raises(UserInputError, match="unknown precision 'bf61'") as info:
        peak_flops("bf61")
    assert "bf16" in info.value.hint


def test_amx_peaks_on_this_cpu():
    report = machine_report(with_targets=False)
    if not (report.features["AMX-BF16"] and report.features["AMX-INT8"]):
        pytest.skip(f"this CPU ({report.cpu.model}) has no AMX: bf16/int8 peaks come from AVX-512/VNNI instead")
    value, how = report.peak_flops("bf16")
    assert value == pytest.approx(1024 * report.cpu.peak_cores * report.cpu.clock_ghz * 1e9)
    assert how.startswith("AMX-BF16 tiles")
    assert report.peak_flops("int8")[0] == pytest.approx(2 * value)


def test_packages_come_from_metadata_and_targets_are_listed():
    report = machine_report()
    assert isinstance(report, MachineReport)
    versions = {p.name: p.version for p in report.packages}
    assert versions["onnx"] == importlib.metadata.version("onnx")
    assert {"onnxruntime", "openvino", "nncf", "torch", "mnn", "ncnn", "pnnx", "tensorflow", "ai-edge-litert",
            "executorch", "kserve", "tritonclient", "optimum", "onnxruntime-genai"} <= set(versions)
    if importlib.util.find_spec("tensorflow") is not None:
        assert versions["tensorflow"] is not None  # tensorflow-cpu counts
    targets = {t.name: t for t in report.targets}
    assert targets["onnxruntime"].available
    assert targets["openvino"].available == (importlib.util.find_spec("openvino") is not None)
    d = report.to_dict()
    assert d["cpu"]["features"] == report.features and "fp32 peak" in d["summary"]


def test_doctor_prints_the_machine(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    report = machine_report(with_targets=False)
    for text in ("ISA features", "Theoretical peak", "Engines and extras", "Targets", "onnxruntime", "fp32",
                 report.cpu.model):
        assert text in out
    assert main(["doctor", "--json", "--no-targets"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cpu"]["features"] == report.features and data["targets"] == []
    assert [p["precision"] for p in data["peaks"]] == ["fp32", "bf16", "fp16", "int8"]


def test_doctor_imports_no_engine():
    code = ("import sys; from onnxdeploy.cli.main import main; rc = main(['doctor', '--json']); "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'openvino', 'tensorflow', 'nncf', 'MNN', 'ncnn', "
            "'onnx_ir', 'PIL', 'tritonclient', 'executorch') if m in sys.modules), rc, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.stderr.strip().splitlines()[-1] == "[] 0", proc.stderr


def test_the_benchmarks_machine_line_still_works():
    spec = importlib.util.spec_from_file_location("bench_machine", ROOT / "benchmarks" / "_machine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    line = module.machine("onnx", flags=True)
    assert line.startswith(f"{os.cpu_count()} CPUs (`nproc`), ") and f"onnx {importlib.metadata.version('onnx')}" in line
    assert "fp32" in line and "GFLOP/s" in line
    assert module._version("no-such-package") == "not installed"
