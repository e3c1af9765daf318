"""`onnxdeploy deploy`: PyTorch or ONNX -> checked, optimized, legalized, converted, verified, benchmarked.

`onnxdeploy demo` (the seed article's steps in brief, then deploy of the built-in example) lives here too: it renders
a deploy report, and CLI modules do not import each other."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import (
    DEFAULT_TARGET,
    PANEL_DEPLOY,
    AtolOpt,
    CalibrationOpt,
    DimOpt,
    DynamicOpt,
    InputOpt,
    InputsOpt,
    JsonOpt,
    RtolOpt,
    SeedOpt,
    ShapeOpt,
    TargetOpt,
)

EXAMPLES = """[b]Examples[/b]

  onnxdeploy deploy --target openvino -o out        [dim](built-in example, dims batch x 3 x height x width kept)[/dim]

  onnxdeploy deploy mypkg.models:make_model --dynamic input:0=batch,2=height,3=width --target openvino -o out

  onnxdeploy deploy model.onnx --target ort-mobile -o out --quantize dynamic --skip optimize

  onnxdeploy deploy model.onnx -o out --dim batch=1 --fix-dims        [dim](batch becomes static: 1)[/dim]

  onnxdeploy deploy model.onnx -t openvino --precision auto --min-cosine 0.999 -o out   [dim](fastest within the budget)[/dim]

  onnxdeploy deploy model.onnx -t auto --precision auto --max-top1-drop 0.5% -c calib.npz -o out

  onnxdeploy deploy "hf:llama?hidden_size=64&num_hidden_layers=2" --task text-generation --quantize int4 -o out   [dim](decoder LM: KV cache, fusions, int4 weights, tokens/s and token agreement)[/dim]"""

PrecisionOpt = Annotated[str, typer.Option(
    "--precision", help="Precision to build: fp32, bf16, fp16, int8 (what the target builds here), or auto: build every one, judge "
    "each on held-out inputs, keep the fastest within --min-cosine / --max-top1-drop. --target auto: every installed "
    "engine.")]
MinCosineOpt = Annotated[Optional[float], typer.Option(
    "--min-cosine", help="Accuracy budget: with --precision auto, the lowest cosine to onnxruntime fp32 accepted (default 0.999).")]
MaxTop1DropOpt = Annotated[Optional[str], typer.Option(
    "--max-top1-drop", help="With --precision auto: the most top-1 agreement lost, e.g. 0.5% (logits outputs).")]
SkipOpt = Annotated[
    Optional[list[str]],
    typer.Option("--skip", help="Skip a step by name; repeatable. Steps: check, optimize, legalize, quantize, "
                 "convert, benchmark."),
]
FixDimsOpt = Annotated[
    bool, typer.Option("--fix-dims", help="Make the --dim sizes static in the artefacts. Without it, --dim only gives "
                       "the sizes to verify and benchmark at, and a step that fixes a dim fails."),
]


def deploy(
    source: Annotated[Optional[str], typer.Argument(metavar="[SOURCE]", help="An .onnx file or a PyTorch target pkg.mod:factory; "
                                                         "none: the built-in example.", show_default=False)] = None,
    target: TargetOpt = DEFAULT_TARGET,
    output_dir: Annotated[Path, typer.Option("--output", "-o", help="Folder for artefacts and the report.")]
    = Path("deploy-out"),
    quantize: Annotated[Optional[str], typer.Option(
        "--quantize", help="static or dynamic int8; int4 or int8 weight-only (MatMulNBits, for decoder LMs).")] = None,
    task: Annotated[Optional[str], typer.Option(
        "--task", help="text-generation: a decoder LM with its KV cache (implied by a hf: source or an ONNX decoder): "
        "export with the cache, optimize --preset decoder, greedy generation against PyTorch.")] = None,
    max_new_tokens: Annotated[int, typer.Option(
        "--max-new-tokens", help="New tokens to generate (decoders): greedy, benchmarked and compared with PyTorch.")] = 32,
    dynamic: DynamicOpt = None,
    input: InputOpt = None,
    inputs: InputsOpt = None,
    dim: DimOpt = None,
    shape: ShapeOpt = None,
    fix_dims: FixDimsOpt = False,
    seed: SeedOpt = 0,
    atol: AtolOpt = 1e-4,
    rtol: RtolOpt = 1e-3,
    skip: SkipOpt = None,
    bench_seconds: Annotated[float, typer.Option("--bench-seconds", help="Seconds of timing per model.")] = 0.5,
    precision: PrecisionOpt = "fp32",
    min_cosine: MinCosineOpt = None,
    max_top1_drop: MaxTop1DropOpt = None,
    calibration: CalibrationOpt = None,
    no_optimize: Annotated[bool, typer.Option("--no-optimize", hidden=True, help="Old spelling of --skip optimize.")]
    = False,
    no_bench: Annotated[bool, typer.Option("--no-bench", hidden=True, help="Old spelling of --skip benchmark.")]
    = False,
    as_json: JsonOpt = False,
) -> None:
    """Run export -> check -> optimize -> legalize -> quantize -> convert -> benchmark, verifying every step."""
    from onnxdeploy.cli import output as out
    from onnxdeploy.cli.common import calibration_from, inputs_from, parse_dynamic

    steps = list(skip or [])
    for flag, step in ((no_optimize, "optimize"), (no_bench, "benchmark")):
        if flag:
            out.warn(f"--no-{'bench' if step == 'benchmark' else step} is now --skip {step}")
            steps.append(step)
    given = inputs_from(input, inputs, dim, shape, seed)
    if (min_cosine is not None or max_top1_drop is not None) and precision != "auto" and target != "auto":
        out.warn("--min-cosine/--max-top1-drop apply to --precision auto (or --target auto); a fixed precision is "
                 "judged by its own metric")
    report = run_deploy(source, target=target, output_dir=output_dir, quantize=quantize, dims=dict(given.dims),
                        fix_dims=fix_dims, dynamic=parse_dynamic(dynamic), skip=steps, bench_seconds=bench_seconds,
                        seed=seed, atol=atol, rtol=rtol, inputs=given if given.given or given.shapes else None,
                        quiet=as_json, as_json=as_json, precision=precision, min_cosine=min_cosine,
                        max_top1_drop=max_top1_drop, calibration=calibration_from(calibration, seed=seed), task=task,
                        max_new_tokens=max_new_tokens)
    if as_json:
        out.print_json(report)
    else:
        show_report(report)


def run_deploy(source, *, quiet: bool = False, as_json: bool = False, **options):
    """Call :func:`onnxdeploy._deploy.deploy` with a live line per step on stderr; on a failed step, show the report
    (verdict first) before the error."""
    from onnxdeploy.cli import output as out
    from onnxdeploy import DeployStepFailed
    from onnxdeploy import deploy as deploy_api

    marks = {"passed": "[green]passed[/green]", "failed": "[red]FAILED[/red]", "skipped": "[yellow]skipped[/yellow]",
             "unavailable": "[yellow]unavailable[/yellow]"}
    with out.progress() as progress:
        tasks: dict[str, int] = {}

        def on_step(step: str, status: str) -> None:
            if status == "start":
                tasks[step] = progress.add_task(f"{step} ...", total=None)
                return
            progress.remove_task(tasks.pop(step))
            if not quiet:
                progress.console.print(f"  {step:<10} {marks.get(status, status)}")

        try:
            return deploy_api(source, on_step=on_step, **options)
        except DeployStepFailed as err:
            progress.stop()
            if err.report is not None:
                out.print_json(err.report) if as_json else show_report(err.report)
            raise


def show_report(report) -> None:
    from onnxdeploy.cli import output as out

    out.show(("" if report.passed else "[red]") + report.headline.replace("[", "\\[") +
             ("" if report.passed else "[/red]"), markup=True)
    rows = []
    for s in report.steps:
        v = s.verification
        verdict = "" if v is None else ("match" if v.passed else
                                        ("INTERFACE CHANGED" if s.interface_changes else "MISMATCH"))
        shapes = len(getattr(v, "comparisons", [])) if v is not None else ""
        rows.append([s.name, s.status, f"{s.seconds:.2f}", verdict, shapes,
                     "" if v is None else f"{v.max_abs:.3g}", "; ".join([s.message, *s.notes])])
    out.show(out.table(f"deploy {report.source} -> {report.target}",
                       ["step", "status", "s", "verified", "shapes", "max abs", "message"], rows))
    show_precision_choice(report)
    show_generation(report)
    if report.latency:
        shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in report.bench_inputs.items())
        out.show(out.table(f"latency (1 thread, {shapes})", ["model", "engine", "p50 ms", "p90 ms", "runs"],
                           [[r["model"], r["engine"], f"{r['p50_ms']:.3f}", f"{r['p90_ms']:.3f}", r["iterations"]]
                            for r in report.latency]))
    inputs = ", ".join(f"{k}: {'x'.join(map(str, v))}" for k, v in report.inputs.items())
    out.show(f"inputs:   {inputs}")
    out.show(f"artefact: {report.final_artifact}")
    out.show(f"report:   {report.report_html}  ({report.seconds:.1f} s)")


def show_generation(report) -> None:
    """A decoder's greedy generation per model: tokens/s, time to first token, parity; then agreement per step."""
    from onnxdeploy.cli import output as out

    g = report.generation
    if not g or not g["rows"]:
        return
    ref = "PyTorch" if g["reference_kind"] == "pytorch" else "reference ONNX"
    out.show(out.table(
        f"generation (greedy, {g['new_tokens']} new tokens after {len(g['prompt_ids'])}, {g['threads']} thread; "
        f"parity vs {ref})",
        ["model", "weights", "decode tok/s", "vs fp32", "first token ms", f"tokens = {ref}", "steps agree",
         "logits max abs", "min cosine"],
        [[r["model"], r["weights"], f"{r['decode_tokens_per_s']:.1f}", _f(r["speedup"], ".2f", "x"),
          f"{r['ttft_ms']:.1f}", "yes" if r["identical"] else f"no (from step {r['first_divergence']})",
          _f(r["token_agreement"] and 100 * r["token_agreement"], ".0f", "%"), _f(r["max_abs"], ".3g"),
          _f(r["min_cosine"], ".6f")] for r in g["rows"]]))
    steps = [[str(i), str(t)] + [f"{r['steps'][i]['forced_token']}{'' if r['steps'][i]['agrees'] else ' x'} "
                                 f"({_f(r['steps'][i]['cosine'], '.4f')})" for r in g["rows"]]
             for i, t in enumerate(g["reference_tokens"])]
    out.show(out.table(f"token agreement per step ({ref} token; each model's token, teacher-forced after a first "
                       "difference, x = differs, (logits cosine))", ["step", ref, *[r["model"] for r in g["rows"]]],
                       steps))


def show_precision_choice(report) -> None:
    """The candidates of --precision auto (precision x latency x accuracy x size) and why the winner won."""
    from onnxdeploy.cli import output as out

    choice = next((s.details.get("precision_choice") for s in report.steps
                   if s.details and s.details.get("precision_choice")), None)
    if not choice:
        return
    rows = []
    for c in choice["candidates"]:
        speed = c["p50_ms"] / choice["baseline_ms"] if c["p50_ms"] and choice.get("baseline_ms") else None
        size = c["size_bytes"] / 1e6 if c["size_bytes"] else None
        rows.append([c["label"], c["status"], _f(c["p50_ms"], ".3f"), _f(speed, ".2f", "x"), _f(c["cosine"], ".6f"),
                     _f(c["top1"] and 100 * c["top1"], ".1f", "%"), _f(size, ".2f", " MB"),
                     "<- chosen" if c["label"] == choice["winner"] else c["reason"]])
    out.show(out.table(f"precision candidates (held out: {choice['held_out_source']}; budget "
                       f"{choice['budget']['text']})",
                       ["candidate", "status", "p50 ms", "vs ort fp32", "cosine", "top-1", "size", "note"], rows))
    out.show(f"chosen:   {choice['why']}")


def _f(x, spec: str, unit: str = "") -> str:
    return "" if x is None else format(x, spec) + unit


DEMO_EXAMPLES = """[b]Examples[/b]

  onnxdeploy demo

  onnxdeploy demo -o /tmp/demo --target openvino"""


def demo(
    output_dir: Annotated[Path, typer.Option("--output", "-o", help="Folder for the demo's outputs.")]
    = Path("demo-out"),
    target: TargetOpt = DEFAULT_TARGET,
) -> None:
    """Build, run and print the article's graph, then deploy the built-in Conv-BN-SiLU and write a report."""
    from onnxdeploy import examples
    import onnxdeploy as io
    from onnxdeploy.cli import output as out
    from onnxdeploy import run_model

    output_dir.mkdir(parents=True, exist_ok=True)
    out.show("[b]1. Build the article's graph[/b] (Resize -> Conv -> Add, weights as inputs) with onnx.helper", markup=True)
    seed_path = io.save(examples.resize_conv_add(), output_dir / "resize_conv_add.onnx")
    out.show(f"   saved {seed_path} (checked with onnx.checker)")
    out.show("[b]2. Run it with onnxruntime[/b] (scales \\[1, 1, 2, 2])", markup=True)
    result = run_model(seed_path, examples.resize_conv_add_inputs())
    for name, arr in result.outputs.items():
        out.show(f"   {name}: shape {'x'.join(map(str, arr.shape))}, mean {float(arr.mean()):.4f}")
    for w in result.warnings:
        out.warn(w)
    out.show("[b]3. Its nodes[/b]", markup=True)
    proto = io.load_proto(seed_path)
    out.show(out.table(None, ["node", "op", "inputs", "outputs"],
                       [[n.name, n.op_type, ", ".join(n.input), ", ".join(n.output)] for n in proto.graph.node]))
    out.show(f"[b]4. Deploy the article's Conv-BN-SiLU to {target}[/b] (export with dynamic batch, height and width, "
             "check, optimize, legalize, convert, verify at two shapes, benchmark)", markup=True)
    report = run_deploy(None, target=target, output_dir=output_dir / "deploy")
    show_report(report)
    out.show(f"\nOpen the report: {Path(report.report_html).resolve()}")


def register(app: typer.Typer) -> None:
    app.command("deploy", epilog=EXAMPLES, rich_help_panel=PANEL_DEPLOY)(deploy)
    app.command("demo", epilog=DEMO_EXAMPLES, rich_help_panel=PANEL_DEPLOY)(demo)
