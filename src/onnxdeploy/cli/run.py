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
    inputs: Annotated[
        Optional[Path],
        typer.Option("--inputs", help="An .npz file with all inputs by name, or a test_data_set folder (input_K.pb)."),
    ] = None,
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
                     "a converted artefact (.xml, .ort) picks its own. Parity with onnxruntime is reported."),
    ] = None,
    reference: Annotated[
        Optional[Path],
        typer.Option("--reference", help="With --backend on a converted artefact: the ONNX it came from."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a model on onnxruntime (missing inputs are synthesized, seeded) and show its outputs."""
    import numpy as np

    if backend is not None or model.suffix.lower() in (".xml", ".ort", ".engine", ".plan", ".om"):
        return _run_on_backend(model, backend, reference, input, inputs, dim, shape, seed, atol, rtol, as_json)

    from onnxdeploy.cli import output
    from onnxdeploy.cli.common import parse_dims, parse_key_values, parse_shapes, providers_from
    from onnxdeploy.errors import OutputsDisagree, UserInputError
    from onnxdeploy.inspect import load_structure
    from onnxdeploy.io import atomic_write_bytes
    from onnxdeploy.numerics import compare_outputs
    from onnxdeploy.run import _check_names, input_specs, output_specs, run_model

    if output_path is not None and output_path.suffix != ".npz":
        raise UserInputError(f"-o {output_path}: outputs are saved as .npz", hint=f"use -o {output_path.stem}.npz")
    if output_path is not None and not output_path.absolute().parent.is_dir():
        raise UserInputError(f"-o {output_path}: the folder {output_path.parent} does not exist",
                             hint=f"mkdir -p {output_path.parent}")
    files = parse_key_values(input, option="--input")
    proto = load_structure(model)[0]  # names, dtypes and shapes only: weights are left to onnxruntime
    _check_names(files, input_specs(proto), "--input")
    expected = _read_expected(expect, output_specs(proto)) if expect is not None else None

    result = run_model(
        model,
        input_files=files,
        npz=inputs,
        dims=parse_dims(dim),
        shapes=parse_shapes(shape),
        seed=seed,
        providers=providers_from(provider),
    )
    comparison = None
    if expected is not None:
        unknown = sorted(set(expected) - set(result.outputs))
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], list(result.outputs), n=3)
            raise UserInputError(
                f"--expect {expect}: the model has no output named {unknown[0]!r}",
                hint=f"did you mean {', '.join(close)}?" if close else f"outputs are: {', '.join(result.outputs)}",
            )
        comparison = compare_outputs(expected, result.outputs, atol=atol, rtol=rtol, label="expected vs run")
    failed = comparison is not None and not comparison.passed
    if output_path is not None and not failed:  # a failed command leaves no output behind
        import io as _stdio

        buffer = _stdio.BytesIO()
        np.savez(buffer, allow_pickle=False, **{k: _npz_safe(v) for k, v in result.outputs.items()})  # built whole
        atomic_write_bytes(output_path, buffer.getvalue())  # before a byte reaches the destination

    if as_json:
        data = result.to_dict()
        data["comparison"] = comparison.to_dict() if comparison is not None else None
        output.print_json(data)
    else:
        for message in result.warnings:
            output.warn(message)
        _render(result, output)
        if comparison is not None:
            _render_comparison(comparison, output)
        if output_path is not None:
            output.info(f"{'not saved' if failed else 'saved'} {len(result.outputs)} outputs to {output_path}")
    if failed:
        worst = comparison.failures()[0] if comparison.failures() else None
        detail = f"{worst.name}: {worst.note}" if worst is not None and worst.note else comparison.summary()
        shapes_differ = worst is not None and worst.note.startswith("shape")
        raise OutputsDisagree(
            f"outputs differ from {expect} beyond tolerance ({detail})",
            hint="check that the inputs are the ones the expected outputs came from" if shapes_differ
            else "loosen --atol/--rtol if the difference is expected",
        )


def _run_on_backend(model, backend, reference, input, inputs, dim, shape, seed, atol, rtol, as_json) -> None:
    from onnxdeploy import targets
    from onnxdeploy.cli import output
    from onnxdeploy.cli.common import parse_dims, parse_key_values, parse_shapes

    result = targets.run_on_backend(
        model, backend, reference=reference, atol=atol, rtol=rtol,
        input_files=parse_key_values(input, option="--input"), npz=inputs,
        dims=parse_dims(dim), shapes=parse_shapes(shape), seed=seed,
    )
    if as_json:
        output.print_json(result)
        return
    _render(result, output, caption=f"{result.target} run")
    if result.parity is not None:
        _render_comparison(result.parity, output, title="Parity with onnxruntime")


def _read_expected(expect: Path, specs) -> dict:
    from onnxdeploy.errors import UserInputError
    from onnxdeploy.run import read_npz, read_test_data_dir

    if expect.is_dir():
        expected = read_test_data_dir(expect, specs, "output")
        if not expected:
            raise UserInputError(f"--expect {expect}: no output_K.pb files in this folder")
        return expected
    if expect.suffix == ".npz" or not expect.exists():
        return read_npz(expect)
    raise UserInputError(f"--expect {expect}: give an .npz file or a test_data_set folder")


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


def _render_comparison(comparison, output, title: str = "Expected outputs") -> None:
    rows = [
        [d.name, f"{d.max_abs:.3g}", f"{d.max_rel:.3g}", f"{d.cosine:.6f}", "yes" if d.passed else "NO",
         d.note]
        for d in comparison.diffs
    ]
    rows += [[name, "", "", "", "NO", "not produced by the model"] for name in comparison.missing]
    output.show(output.table(title, ["name", "max abs", "max rel", "cosine", "within tol", "note"], rows,
                             caption=comparison.summary()))


def _stats(arr) -> list[str]:
    import numpy as np

    if not arr.size or arr.dtype.kind not in "biuf":
        return ["", "", ""]
    a = arr.astype(np.float64)
    return [f"{np.nanmin(a):.6g}", f"{np.nanmax(a):.6g}", f"{np.nanmean(a):.6g}"]


def register(app: typer.Typer) -> None:
    app.command("run", epilog=EXAMPLES, rich_help_panel=PANEL_MODEL)(run)
