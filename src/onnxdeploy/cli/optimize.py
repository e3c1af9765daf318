"""`onnxdeploy optimize`: fold, fuse and clean up a model, verified against the original."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import (
    PANEL_OPTIMIZE,
    AtolOpt,
    DimOpt,
    InputOpt,
    InputsOpt,
    JsonOpt,
    ModelArg,
    OutputOpt,
    ProviderOpt,
    RtolOpt,
    SeedOpt,
    ShapeOpt,
)

EXAMPLES = """[b]Examples[/b]

  onnxdeploy optimize model.onnx -o model.opt.onnx

  onnxdeploy optimize bert.onnx -o bert.ort.onnx --for-runtime onnxruntime

  onnxdeploy optimize model.onnx -o out.onnx --dim batch=1 --verify-each --json   [dim](verify at batch 1)[/dim]

  onnxdeploy optimize model.onnx -o out.onnx --dim batch=1 --fix-dims   [dim](batch becomes static: 1)[/dim]

  onnxdeploy optimize model.onnx -o out.onnx --inputs test_data_set_0   [dim](verify on real inputs)[/dim]

  onnxdeploy optimize model.onnx -o out.onnx --skip merge-matmul   [dim](run every step but that one)[/dim]

  onnxdeploy optimize llm.onnx -o llm.opt.onnx --preset decoder   [dim](KV-cache decoder: onnxruntime fusions)[/dim]"""

# The step names of onnxdeploy._optimize.STEP_NAMES (this module may not import it: `onnxdeploy --help` stays fast);
# tests/test_optimize.py checks that the two lists agree.
STEPS = ("fold, fold-rest, fold-shapes, conv-bn, chains, reshape-gemm, matmul-add-gemm, cse, merge-matmul, identity, "
         "dedup-initializers, dead-code, ort-fusions, conv-activation, toposort, onnxruntime")

RuntimeOpt = Annotated[
    Optional[str],
    typer.Option("--for-runtime", help="Also apply this runtime's fusions and offline optimizer: onnxruntime."),
]
LevelOpt = Annotated[
    str,
    typer.Option("--level", help="basic (folding, cleanup), extended (+ fusions) or all (+ onnxruntime layout "
                 "transforms with --for-runtime)."),
]
VerifyEachOpt = Annotated[
    bool, typer.Option("--verify-each", help="Check outputs after every pass; skip (and name) a pass that breaks them.")
]
NoVerifyOpt = Annotated[bool, typer.Option("--no-verify", help="Skip the final comparison with the original.")]
OrtFusionsOpt = Annotated[
    Optional[bool],
    typer.Option("--ort-fusions/--no-ort-fusions",
                 help="With --for-runtime onnxruntime: the onnxscript rewriter's onnxruntime fusions (attention, "
                      "SkipLayerNormalization, ...). Default: on for GPU providers only (on the CPU they measured "
                      "no faster than onnxruntime's own fusions).", show_default=False),
]
FixDimsOpt = Annotated[
    bool, typer.Option("--fix-dims", help="Make the --dim sizes static in the written model (shape computations then "
                       "fold). Without it, --dim only gives the sizes to verify at and the dims stay symbolic."),
]
SkipOpt = Annotated[
    Optional[list[str]],
    typer.Option("--skip", help=f"Skip a step by name; repeatable. Steps: {STEPS}.", show_default=False),
]
PresetOpt = Annotated[
    Optional[str],
    typer.Option("--preset", help="decoder: a KV-cache decoder LM for onnxruntime (onnxruntime fusions on, on the CPU "
                 "too; verified at a prefill and a decode step; lists the fusions that fired).", show_default=False),
]
FoldLimitOpt = Annotated[
    int, typer.Option("--fold-limit", help="Largest constant (bytes) that folding may create.", show_default=True)
]


def optimize(
    model: ModelArg,
    output: OutputOpt,
    dim: DimOpt = None,
    fix_dims: FixDimsOpt = False,
    for_runtime: RuntimeOpt = None,
    level: LevelOpt = "all",
    verify_each: VerifyEachOpt = False,
    no_verify: NoVerifyOpt = False,
    atol: AtolOpt = 1e-4,
    rtol: RtolOpt = 1e-3,
    fold_limit: FoldLimitOpt = 1 << 20,
    provider: ProviderOpt = None,
    ort_fusions: OrtFusionsOpt = None,
    skip: SkipOpt = None,
    preset: PresetOpt = None,
    input_: InputOpt = None,
    inputs: InputsOpt = None,
    shape: ShapeOpt = None,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Fold constants and shapes, fuse, remove redundant nodes; verify outputs; print a before/after table."""
    import onnxdeploy as io
    from onnxdeploy.cli import output as out
    from onnxdeploy.cli.common import parse_dims, providers_from
    from onnxdeploy import check_optimize_skip as check_skip
    from onnxdeploy import optimize as optimize_api

    io.check_model_path(model)  # before the slow work: the output is never the input, however spelled
    io.check_output_path(output)
    check_skip(skip or ())  # a misspelt step name fails before the inputs are read
    if preset is not None:
        return _preset(model, output, preset, level=level, no_verify=no_verify, atol=atol, rtol=rtol,
                       provider=provider, skip=skip, seed=seed, as_json=as_json)
    dims = parse_dims(dim)
    feeds = None
    if input_ or inputs or shape:  # tensors or shapes given: verify on exactly those (else at two synthesized sizes)
        from onnxdeploy.cli.common import inputs_from

        feeds = inputs_from(input_, inputs, dim, shape, seed).feeds(model)
    result = optimize_api(
        model,
        dims=dims,
        fix_dims=fix_dims,
        inputs=feeds,
        for_runtime=for_runtime,
        level=level,
        verify=not no_verify,
        verify_each=verify_each,
        atol=atol,
        rtol=rtol,
        fold_limit_bytes=fold_limit,
        providers=providers_from(provider),
        ort_fusions=ort_fusions,
        skip=tuple(skip or ()),
        seed=seed,
    )
    io.save(result.model, output)
    if as_json:
        data = result.to_dict()
        data["output"] = str(output)
        data["output_bytes"] = output.stat().st_size
        out.print_json(data)
        return
    _show(result.report, model.stat().st_size, output.stat().st_size, str(output))


def _preset(model, output, preset: str, *, level: str, no_verify: bool, atol: float, rtol: float, provider, skip,
            seed: int, as_json: bool) -> None:
    """``--preset decoder``: :func:`onnxdeploy.optimize_decoder` (its own input sets and tolerance defaults)."""
    import onnxdeploy as io
    from onnxdeploy.cli import output as out
    from onnxdeploy.cli.common import providers_from

    io.check_optimize_preset(preset)
    given = {"atol": atol, "rtol": rtol} if (atol, rtol) != (1e-4, 1e-3) else {}  # else the preset's own
    result = io.optimize_decoder(model, level=level, verify=not no_verify, providers=providers_from(provider),
                                 skip=tuple(skip) if skip else None, seed=seed, **given)
    io.save(result.model, output)
    if as_json:
        out.print_json({**result.to_dict(), "preset": preset, "output": str(output),
                        "output_bytes": output.stat().st_size})
        return
    _show(result.report, model.stat().st_size, output.stat().st_size, str(output))


def _show(report, size_before: int, size_after: int, path: str) -> None:
    from onnxdeploy.cli import output as out

    before, after = report.before, report.after
    ops = sorted(set(before.ops) | set(after.ops), key=lambda k: (-before.ops.get(k, 0), k))
    rows = [["nodes", before.nodes, after.nodes, after.nodes - before.nodes]]
    rows += [[f"  {op}", before.ops.get(op, 0), after.ops.get(op, 0), after.ops.get(op, 0) - before.ops.get(op, 0)]
             for op in ops]
    rows.append(["parameters", out.fmt_count(before.parameters), out.fmt_count(after.parameters), ""])
    rows.append(["parameter bytes", out.fmt_bytes(before.parameter_bytes), out.fmt_bytes(after.parameter_bytes), ""])
    rows.append(["file size", out.fmt_bytes(size_before), out.fmt_bytes(size_after), ""])
    out.show(out.table(f"optimize ({report.level}{', for ' + report.for_runtime if report.for_runtime else ''})",
                       ["", "before", "after", "change"], rows))
    steps = [[p.name, "skipped" if p.skipped else ("changed" if p.modified else "-"),
              p.nodes_after if p.nodes_after is not None else "", f"{p.seconds:.2f}",
              p.error or p.reason or _details(p.details)] for p in report.passes]
    out.show(out.table("passes", ["pass", "result", "nodes after", "seconds", "notes"], steps))
    for record in (r for r in report.skipped if r.error):
        out.warn(f"skipped pass {record.name}: {record.error}")
    for note in report.notes:
        out.info(note)
    for comparison in report.verification:
        out.info(f"verified {comparison.summary()}")
    if not report.verification:
        out.warn("not verified (--no-verify)")
    out.info(f"wrote {path} in {report.seconds:.1f} s")


def _details(details: dict) -> str:
    if "fusions" in details:
        return ", ".join(f"{k} {v}" for k, v in details["fusions"].items())
    if details.get("rewrites"):
        return f"{details['rewrites']} rewrites"
    if details.get("nodes_removed"):
        return f"{details['nodes_removed']} nodes removed"
    return ""


def register(app: typer.Typer) -> None:
    app.command("optimize", epilog=EXAMPLES, rich_help_panel=PANEL_OPTIMIZE)(optimize)
