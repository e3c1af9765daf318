"""`onnxdeploy export`: export a PyTorch model to ONNX with named dynamic dims and verified parity."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import (PANEL_EXPORT, AtolOpt, DynamicOpt, InputsOpt, JsonOpt, OutputOpt, RtolOpt, SeedOpt,
                                   parse_dynamic)

EXAMPLES = """[b]Examples[/b]

  onnxdeploy export mymodels.py:build -o model.onnx --shape input=1x3x224x224 --dynamic input:0=batch,2=height,3=width

  onnxdeploy export lm.py:build -o lm.onnx --shape tokens=4x32:int64 --dynamic tokens:0=batch,1=sequence

  onnxdeploy export mypkg.models:resnet -o resnet.onnx --exporter torchscript --opset 17 --json

  onnxdeploy export model.py:build -o m.onnx --input-names input --output-names values --atol 1e-3 --no-verify

  onnxdeploy export "hf:llama?hidden_size=64&num_hidden_layers=2" -o llm.onnx --task text-generation --with-past"""

TargetArg = Annotated[str, typer.Argument(metavar="TARGET", help="package.module:factory, path/to/file.py:factory, or "
                                          "hf:ARCH?key=value&... / hf:config.json / hf:FOLDER (a transformers causal "
                                          "LM from its config, random weights; never downloaded).", show_default=False)]
TaskOpt = Annotated[Optional[str], typer.Option(
    "--task", help="text-generation: a decoder LM with its KV cache (inputs input_ids, attention_mask, position_ids, "
    "past_key_values.N.key/value; outputs logits, present.N.key/value), verified at a prefill and a decode step. "
    "Example inputs are made from the model. Default for hf: targets.")]
WithPastOpt = Annotated[bool, typer.Option("--with-past/--no-past", help="With --task text-generation: cache inputs "
                                           "and outputs (one model for prefill and decode), or none.")]
ShapesOpt = Annotated[
    Optional[list[str]],
    typer.Option("--shape", "--shapes", help="NAME=1x3x224x224[:dtype]: shape (and dtype: int64, int32, float16, "
                 "bool, ...; default float32) of a random example input, when the factory returns only a module. "
                 "Repeatable, in forward() order; trtexec's NAME:1x3x224x224,NAME2:... also works."),
]
InputFilesOpt = Annotated[
    Optional[list[str]],
    typer.Option("--input", "-i", help="NAME=FILE: an example input from a .npy or TensorProto .pb file. "
                 "Repeatable. (NAME=SHAPE still works here for now; it is --shape now.)"),
]


def _names(items: list[str] | None) -> list[str] | None:
    if not items:
        return None
    return [n.strip() for item in items for n in item.split(",") if n.strip()]


def export(
    target: TargetArg,
    output: OutputOpt,
    inputs: InputFilesOpt = None,
    npz: InputsOpt = None,
    shape: ShapesOpt = None,
    dynamic: DynamicOpt = None,
    opset: Annotated[Optional[int], typer.Option("--opset", help="ONNX opset (default: the exporter's).")] = None,
    input_names: Annotated[Optional[list[str]], typer.Option("--input-names", help="Input names, comma separated.")] = None,
    output_names: Annotated[Optional[list[str]], typer.Option("--output-names", help="Output names, comma separated.")] = None,
    exporter: Annotated[str, typer.Option("--exporter", help="dynamo, torchscript or auto (dynamo, then torchscript).")] = "auto",
    atol: AtolOpt = 1e-4,
    rtol: RtolOpt = 1e-3,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the onnxruntime vs PyTorch check.")] = False,
    keep_on_mismatch: Annotated[bool, typer.Option("--keep-on-mismatch", help="Write the model even when outputs disagree.")] = False,
    seed: SeedOpt = 0,
    task: TaskOpt = None,
    with_past: WithPastOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Export a PyTorch model to ONNX; check dynamic dims and verify outputs with onnxruntime."""
    from onnxdeploy.cli import output as out
    from onnxdeploy.errors import OutputsDisagree, UserInputError, require

    require("torch", extra="torch", purpose="onnxdeploy export")
    from onnxdeploy import example_hint, random_inputs
    from onnxdeploy import export as export_api
    from onnxdeploy import load_torch_target

    if task is not None or target.startswith("hf:"):
        if shape or inputs or npz or dynamic or input_names or output_names:
            out.warn("--task text-generation makes its own inputs, names and dims; --shape/--input/--inputs/"
                     "--dynamic/--input-names/--output-names are ignored")
        _export_task(out, target, output, task or "text-generation", with_past=with_past, opset=opset,
                     exporter=exporter, verify=not no_verify, atol=atol, rtol=rtol,
                     keep_on_mismatch=keep_on_mismatch, seed=seed, as_json=as_json)
        return
    files, shapes = _example_options(out, inputs, shape)
    given = _read_inputs(npz)
    names = _names(input_names)
    with out.progress() as bar:
        task = bar.add_task("load target", total=None)
        loaded = load_torch_target(target)
        if loaded.example_inputs is not None or loaded.example_kwargs is not None:
            example = loaded.example_inputs if loaded.example_kwargs is None else loaded.example_kwargs
            if shapes or files or given:
                out.warn("the factory returned example inputs; --shape/--input/--inputs are ignored")
        else:
            if not shapes and not files and not given:
                raise UserInputError(f"{target} returned only a module, so export needs example inputs",
                                     hint=f"add {example_hint(loaded.module)}")
            made = {**given, **_read_files(files), **random_inputs(shapes, module=loaded.module, seed=seed)}
            order = _forward_order(loaded.module, list(dict.fromkeys([*given, *files, *shapes])))
            example = tuple(made[n] for n in order)
            names = names or order

        def phase(name: str) -> None:
            bar.update(task, description=name)

        try:
            report = export_api(
                loaded.module, example, output, input_names=names, output_names=_names(output_names),
                dynamic=parse_dynamic(dynamic), opset=opset, exporter=exporter, verify=not no_verify, atol=atol,
                rtol=rtol, keep_on_mismatch=keep_on_mismatch, on_phase=phase,
            )
        except OutputsDisagree as err:
            report = getattr(err, "report", None)
            if report is not None and not as_json:
                bar.stop()
                _show(out, report)
            elif report is not None:
                out.print_json(report)
            raise
    if as_json:
        out.print_json(report)
    else:
        _show(out, report)


def _export_task(out, target, output, task, *, as_json, **options) -> None:
    from onnxdeploy import export as export_api
    from onnxdeploy.errors import OutputsDisagree

    with out.progress() as bar:
        step = bar.add_task("load model", total=None)
        try:
            report = export_api(target, output, task=task,
                                on_phase=lambda name: bar.update(step, description=name), **options)
        except OutputsDisagree as err:
            report = getattr(err, "report", None)
            if report is not None:
                bar.stop()
                out.print_json(report) if as_json else _show(out, report)
            raise
    if as_json:
        out.print_json(report)
    else:
        _show(out, report)


def _looks_like_shape(value: str) -> bool:
    import re

    return bool(re.fullmatch(r"\s*\d+(\s*[x,]\s*\d+)*\s*(:\s*\w+)?\s*", value)) or value.strip() == ""


def _example_options(out, inputs: list[str] | None, shape: list[str] | None):
    """(files by name, typed shapes by name) from --input NAME=FILE and --shape NAME=DIMS[:dtype].

    ``--input NAME=SHAPE`` was export's spelling before --shape: it still works, with a note naming the new flag."""
    from onnxdeploy.cli.common import parse_key_values, parse_typed_shape, parse_typed_shapes

    files: dict[str, str] = {}
    legacy: dict[str, tuple] = {}
    for name, value in parse_key_values(inputs, option="--input").items():
        if _looks_like_shape(value):
            legacy[name] = parse_typed_shape(value, option="--input")
        else:
            files[name] = value
    if legacy:
        spelled = " ".join(f"--shape {n}={v}" for n, v in parse_key_values(inputs, option="--input").items()
                           if n in legacy)
        out.warn(f"--input NAME=SHAPE is now --shape NAME=SHAPE[:dtype] ({spelled}); --input takes NAME=FILE "
                 "as in the other verbs")
    shapes = {**legacy, **parse_typed_shapes(shape, option="--shape")}
    both = sorted(set(files) & set(shapes))
    if both:
        from onnxdeploy.errors import UserInputError

        raise UserInputError(f"input {both[0]!r} is given both as a file (--input) and as a shape (--shape)",
                             hint="give each input once")
    return files, shapes


def _read_files(files: dict[str, str]) -> dict:
    import torch

    from onnxdeploy import read_tensor_file

    return {name: torch.from_numpy(read_tensor_file(path).copy()) for name, path in files.items()}


def _read_inputs(path) -> dict:
    """--inputs: example inputs by name from an .npz, or the input_K.pb files of an ONNX test_data_set folder."""
    if path is None:
        return {}
    import torch

    from onnxdeploy import read_npz, read_test_data_dir

    arrays = read_test_data_dir(path, [], "input") if path.is_dir() else read_npz(path)
    return {name: torch.from_numpy(array.copy()) for name, array in arrays.items()}


def _forward_order(module, names: list[str]) -> list[str]:
    """``names`` in forward()'s argument order when they all are its arguments, else as given."""
    import inspect

    try:
        params = [p.name for p in inspect.signature(module.forward).parameters.values()]
    except (TypeError, ValueError):
        return names
    if all(n in params for n in names):
        return sorted(names, key=params.index)
    return names


def _show(out, report) -> None:
    dims = "; ".join(f"{k}: " + ", ".join(f"{i}={n}" for i, n in v.items()) for k, v in report.dynamic_dims.items())
    out.show(out.table(
        f"Exported {report.path}" if report.kept else "Export (no file written)",
        ["field", "value"],
        ([["task", report.task]] if report.task else [])
        + ([["cache", ", ".join(f"{k} {v}" for k, v in report.cache.items())]] if report.cache else [])
        + [["exporter", f"{report.exporter} ({report.exporter_reason})"], ["opset", str(report.opset)],
         ["inputs", ", ".join(report.input_names)], ["outputs", ", ".join(report.output_names)],
         ["dynamic dims", dims or "none"],
         ["output dims", "; ".join(f"{k}: [{', '.join(map(str, v))}]" for k, v in report.output_dims.items())],
         ["seconds", ", ".join(f"{k} {v:.2f}" for k, v in report.seconds.items() if "." not in k)]]
        + ([["custom ops", "; ".join(report.custom_ops)]] if report.custom_ops else []),
    ))
    if report.parity:
        rows = [[c.label, name, f"{max(d.max_abs for d in ds):.3g}", f"{max(d.max_rel for d in ds):.3g}",
                 "ok" if all(d.passed for d in ds) else "MISMATCH"]
                for c in report.parity for name, ds in _grouped(c.diffs, report.task).items()]
        out.show(out.table(f"Parity with PyTorch (atol {report.parity[0].atol:g}, rtol {report.parity[0].rtol:g})",
                           ["shape", "output", "max abs", "max rel", "status"], rows))
    else:
        out.warn("not verified (--no-verify)")


def _grouped(diffs, task) -> dict:
    """Diffs by output; an LM's present.N.key/value are one row (``present.* (8)``) so the table stays short."""
    groups: dict = {}
    presents = [d for d in diffs if task and d.name.startswith("present.")]
    for d in diffs:
        if d not in presents:
            groups[d.name] = [d]
    if presents:
        groups[f"present.* ({len(presents)})"] = presents
    return groups


def register(app: typer.Typer) -> None:
    app.command("export", epilog=EXAMPLES, rich_help_panel=PANEL_EXPORT)(export)
