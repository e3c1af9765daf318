"""`onnxdeploy doctor`: this machine's CPU, ISA features, theoretical peaks, installed engines and targets."""

from __future__ import annotations

from typing import Annotated

import typer

from onnxdeploy.cli.common import PANEL_MODEL, JsonOpt

EXAMPLES = """[b]Examples[/b]

  onnxdeploy doctor

  onnxdeploy doctor --json > machine.json

  onnxdeploy doctor --no-targets   [dim](CPU and packages only)[/dim]"""


def doctor(
    targets: Annotated[
        bool, typer.Option("--targets/--no-targets", help="Check which deployment targets this machine has.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Show the CPU (cores, clock, AMX/AVX-512/VNNI features), its theoretical peak per precision, the installed
    engines and extras with versions, and the targets available here. Imports no engine: it answers at once."""
    from onnxdeploy.cli import output
    from onnxdeploy import machine_report

    report = machine_report(with_targets=targets)
    if as_json:
        output.print_json(report)
        return
    render(report, output)


def _machine_rows(report) -> list[list[str]]:
    cpu = report.cpu
    cores = f"{cpu.physical_cores or '?'} physical, {cpu.logical_cpus} logical, {cpu.affinity} usable by this process"
    if cpu.sockets:
        cores += f", {cpu.sockets} socket{'s' * (cpu.sockets != 1)}"
    clock = f"{cpu.clock_ghz:.2f} GHz" if cpu.clock_ghz else "unknown"
    return [
        ["CPU", cpu.model],
        ["vendor / family", f"{cpu.vendor} / {cpu.family if cpu.family is not None else '?'} ({cpu.architecture})"],
        ["cores", cores],
        ["clock", f"{clock} (from {cpu.clock_source})"],
        ["Python", report.python],
        ["system", report.system],
    ]


def render(report, output) -> None:
    """Print a :class:`~onnxdeploy.MachineReport` as tables."""
    features = report.features
    have = [name for name, ok in features.items() if ok]
    lacks = [name for name, ok in features.items() if not ok]
    isa = [["present", " ".join(have) or "-"], ["absent", " ".join(lacks) or "-"]]
    peaks = [[p.precision, f"{p.gflops:,.0f}" if p.gflops is not None else "unknown",
              f"{p.flops_per_cycle_per_core:g}", p.how.split("; x ")[0]] for p in report.peaks]
    cpu = report.cpu
    clock = f"{cpu.clock_ghz:.2f} GHz" if cpu.clock_ghz else "an unknown clock"
    caption = f"peak = per cycle per core x {cpu.peak_cores} cores x {clock}; real kernels reach a fraction of it"
    packages = [[p.name, p.role, p.version or "not installed"] for p in report.packages]
    tables = [
        output.table("Machine", ["", "value"], _machine_rows(report)),
        output.table("ISA features (/proc/cpuinfo)", ["", "features"], isa),
        output.table("Theoretical peak per precision (int8: ops)", ["precision", "GFLOP/s", "per cycle per core",
                                                                   "unit (assumptions)"], peaks, caption=caption),
        output.table("Engines and extras", ["package", "role", "version"], packages),
    ]
    if report.targets:
        tables.append(output.table("Targets", ["target", "available", "checked by", "why not"],
                                   [[t.name, "yes" if t.available else "no", t.how, t.reason]
                                    for t in report.targets]))
    output.show(*tables)


def register(app: typer.Typer) -> None:
    app.command("doctor", epilog=EXAMPLES, rich_help_panel=PANEL_MODEL)(doctor)
