"""`onnxdeploy run`: run a model on onnxruntime with given or synthesized inputs; save or check its outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import (
    PANEL_MODEL,
    AtolOpt,
    DimOpt,
    InputOpt,
    InputsOpt,
    JsonOpt,
    ModelArg,
    ProviderOpt,
    RtolOpt,
    SeedOpt,
    ShapeOpt,
)

EXAMPLES = """[b]Examples[/b]

  onnxdeploy run model.onnx

  onnxdeploy run model.onnx --input input=x.npy --dim batch=4 -o out.npz

  onnxdeploy run model.onnx --inputs test_data_set_0 --expect test_data_set_0

  onnxdeploy run model.onnx --inputs inputs.npz --expect expected.npz --atol 1e-5 --json

  onnxdeploy run model.xml --reference model.onnx       (OpenVINO IR, parity with onnxruntime)

  onnxdeploy run model.onnx --backend openvino"""


def run(
    model: ModelArg,
    input: InputOpt = None,
    inputs: InputsOpt = None,
    dim: DimOpt = None,
    shape: ShapeOpt = None,
    seed: SeedOpt = 0,
    provider: ProviderOpt = None,
    output_path: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Save the outputs to this .npz file.", show_default=False)
    ] = None,
    expect: Annotated[
        Optional[Path],
        typer.Option("--expect", help="Expected outputs: an .npz, or a test_data_set folder (output_K.pb)."),
    ] = None,
    atol: AtolOpt = 1e-4,
    rtol: RtolOpt = 1e-3,
    backend: Annotated[
        Optional[str],
        typer.Option("--backend", "-b", help="Run on a target's engine instead (openvino, ort-mobile, ...); "
                     "a converted artefact (.xml, .ort, .mnn, .param, .tflite, .pte) picks its own. Parity with "
                     "onnxruntime is reported."),
    ] = None,
    reference: Annotated[
        Optional[Path],
        typer.Option("--reference", help="With --backend on a converted artefact: the ONNX it came from."),
    ] = None,
    precision: Annotated[
        Optional[str],
        typer.Option("--precision", help="Precision to build: fp32, bf16, fp16 or int8, with --backend. An .onnx model is built "
                     "at that precision for the engine first; a converted artefact runs at the precision it records. "
                     "Parity is judged by the precision's metric."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a model on onnxruntime (missing inputs are synthesized, seeded) and show its outputs."""
    import numpy as np

    from onnxdeploy.targets import SUFFIXES

    if backend is not None or (model.suffix.lower() in SUFFIXES and model.suffix.lower() != ".onnx"):
        return _run_on_backend(model, backend, reference, input, inputs, dim, shape, seed, atol, rtol, as_json,
                               precision)
    if precision is not None and precision.lower() not in ("fp32", "float32"):
        from onnxdeploy.errors import UserInputError

        raise UserInputError(f"--precision {precision} needs --backend: onnxruntime runs the model as it is",
                             hint="add --backend openvino (or another engine), or convert with --precision first")

    from onnxdeploy.cli import output
    from onnxdeploy.cli.common import inputs_from, providers_from
    from onnxdeploy.errors import OutputsDisagree, UserInputError
    from onnxdeploy import atomic_write_bytes
    from onnxdeploy import run_checked

    if output_path is not None and output_path.suffix != ".npz":
        raise UserInputError(f"-o {output_path}: outputs are saved as .npz", hint=f"use -o {output_path.stem}.npz")
    result = run_checked(model, inputs_from(input, inputs, dim, shape, seed), expect=expect,
                         providers=providers_from(provider), atol=atol, rtol=rtol)
    verdict = result.expected
    failed = verdict is not None and not verdict.passed
    if output_path is not None and not failed:  # a failed command leaves no output behind
        import io as _stdio

        buffer = _stdio.BytesIO()
        np.savez(buffer, **{k: _npz_safe(v) for k, v in result.outputs.items()})
        atomic_write_bytes(output_path, buffer.getvalue())

    if as_json:
        output.print_json(result)
    else:
        for message in result.warnings:
            output.warn(message)
        _render(result, output)
        if verdict is not None:
            _render_comparison(verdict, output)
        if output_path is not None:
            output.info(f"{'not saved' if failed else 'saved'} {len(result.outputs)} outputs to {output_path}")
    if failed:
        shapes_differ = any(d.note.startswith("shape") for c in verdict.comparisons for d in c.failures())
        raise OutputsDisagree(
            f"outputs differ from {expect} beyond tolerance ({verdict.failures()[0]})",
            hint="check that the inputs are the ones the expected outputs came from" if shapes_differ
            else "loosen --atol/--rtol if the difference is expected",
        )


def _run_on_backend(model, backend, reference, input, inputs, dim, shape, seed, atol, rtol, as_json,
                    precision=None) -> None:
    from onnxdeploy import targets
    from onnxdeploy.cli import output
    from onnxdeploy.cli.common import inputs_from

    given = inputs_from(input, inputs, dim, shape, seed)
    result = targets.run_on_backend(
        model, backend, reference=reference, atol=atol, rtol=rtol, input_files=dict(given.files), npz=given.npz,
        dims=dict(given.dims), shapes=given.shape_dims(), seed=given.seed, precision=precision,
    )
    if as_json:
        output.print_json(result)
        return
    _render(result, output, caption=f"{result.target} run" + (f" ({result.precision})" if result.precision != "fp32"
                                                               else ""))
    if result.parity is not None:
        _render_comparison(result.parity, output, title="Parity with onnxruntime")


def _npz_safe(arr):
    """An output as an array .npz stores without pickling: string tensors (object arrays) become unicode arrays."""
    import numpy as np

    arr = np.asarray(arr)
    if arr.dtype != object:
        return arr
    flat = [v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v) for v in arr.ravel().tolist()]
    return np.asarray(flat, dtype=str).reshape(arr.shape)


def _render(result, output, caption: str | None = None) -> None:
    rows = []
    for name, arr in result.outputs.items():
        rows.append([name, "x".join(map(str, arr.shape)) or "scalar", str(arr.dtype), *_stats(arr)])
    output.show(
        output.table(
            "Outputs",
            ["name", "shape", "dtype", "min", "max", "mean"],
            rows,
            caption=caption or f"onnxruntime run: {result.seconds * 1000:.1f} ms",
        )
    )


def _render_comparison(verdict, output, title: str = "Expected outputs") -> None:
    rows = []
    for comparison in verdict.comparisons:
        rows += [[d.name, f"{d.max_abs:.3g}", f"{d.max_rel:.3g}", "n/a" if d.cosine is None else f"{d.cosine:.6f}",
                  "yes" if d.passed else "NO", "; ".join(x for x in [d.note, *getattr(d, "flags", [])] if x)]
                 for d in comparison.diffs]
        rows += [[name, "", "", "", "NO", "not produced by the model"] for name in comparison.missing]
    output.show(output.table(title, ["name", "max abs", "max rel", "cosine", "within tol", "note"], rows,
                             caption=verdict.summary()))


def _stats(arr) -> list[str]:
    import numpy as np

    if not arr.size or arr.dtype.kind not in "biuf":
        return ["", "", ""]
    a = arr.astype(np.float64)
    return [f"{np.nanmin(a):.6g}", f"{np.nanmax(a):.6g}", f"{np.nanmean(a):.6g}"]


def register(app: typer.Typer) -> None:
    app.command("run", epilog=EXAMPLES, rich_help_panel=PANEL_MODEL)(run)
