"""`onnxdeploy edit`: graph surgery from flags or a replayable recipe, checked and verified before writing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import (
    PANEL_EDIT,
    AtolOpt,
    DimOpt,
    InputOpt,
    InputsOpt,
    JsonOpt,
    ModelArg,
    RtolOpt,
    SeedOpt,
    ShapeOpt,
)

EXAMPLES = """[b]Examples[/b]

  onnxdeploy edit model.onnx -o out.onnx --delete-node add

  onnxdeploy edit model.onnx -o out.onnx --insert-after output --op Cast --attr to=int64

  onnxdeploy edit model.onnx -o out.onnx --rename input=images --set-shape images=1x3xHxW --cleanup

  onnxdeploy edit model.onnx -o out.onnx --extract-inputs conv_input --extract-outputs conv_output

  onnxdeploy edit model.onnx -o out.onnx --delete-node 'op:Identity' --save-recipe fix.yaml

  onnxdeploy edit reexported.onnx -o out.onnx --recipe fix.yaml

[b]Order[/b] of command-line edits: recipe, rename, set-shape/set-dim, input/output dtype, delete, insert,
replace, expose, remove-output, extract, cleanup, opset. Selectors: exact name, op:TYPE, re:REGEX or a glob."""

_Many = Optional[list[str]]
OutOpt = Annotated[Path, typer.Option("--output", "-o", help="Where to write the edited model.", show_default=False)]
DeleteOpt = Annotated[_Many, typer.Option("--delete-node", help="Delete a node and bypass it. Repeatable.")]
KeepOpt = Annotated[Optional[str], typer.Option("--keep-input", help="With --delete-node: the input that "
                                                "replaces the deleted output (name or index).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="With --delete-node: bypass even when types differ.")]
AfterOpt = Annotated[Optional[str], typer.Option("--insert-after", help="Insert --op reading this tensor; its "
                                                 "consumers and graph outputs read the new node.")]
BeforeOpt = Annotated[Optional[str], typer.Option("--insert-before", help="Insert --op between this tensor and "
                                                  "its consumers (--consumer to choose one).")]
ConsumerOpt = Annotated[Optional[str], typer.Option("--consumer", help="With --insert-before: only this node.")]
ReplaceOpt = Annotated[Optional[str], typer.Option("--replace-node", help="Change this node's op (--op) and/or "
                                                   "attributes (--attr).")]
OpOpt = Annotated[Optional[str], typer.Option("--op", help="Op type for --insert-after/--insert-before/"
                                              "--replace-node.")]
AttrOpt = Annotated[_Many, typer.Option("--attr", help="KEY=VALUE attribute for --op, e.g. to=int64. Repeatable.")]
NameOpt = Annotated[Optional[str], typer.Option("--name", help="Name of the inserted node.")]
RenameOpt = Annotated[_Many, typer.Option("--rename", help="OLD=NEW: rename a tensor and/or node. Repeatable.")]
SetShapeOpt = Annotated[_Many, typer.Option("--set-shape", help="INPUT=1x3xHxW: set an input's shape (names "
                                            "are symbolic dims). Repeatable.")]
SetDimOpt = Annotated[_Many, typer.Option("--set-dim", help="DIM=VALUE: fix or rename a symbolic dim. Repeatable.")]
InDtypeOpt = Annotated[_Many, typer.Option("--input-dtype", help="INPUT=float16: change an input's dtype "
                                           "(a Cast is inserted). Repeatable.")]
OutDtypeOpt = Annotated[_Many, typer.Option("--output-dtype", help="OUTPUT=float16: change an output's dtype "
                                            "(a Cast is inserted). Repeatable.")]
ExposeOpt = Annotated[_Many, typer.Option("--expose", help="Make a tensor a graph output. Repeatable.")]
RemoveOutOpt = Annotated[_Many, typer.Option("--remove-output", help="Remove a graph output. Repeatable.")]
ExInOpt = Annotated[_Many, typer.Option("--extract-inputs", help="Tensors where the extracted subgraph starts.")]
ExOutOpt = Annotated[_Many, typer.Option("--extract-outputs", help="Tensors where the extracted subgraph ends.")]
CleanupOpt = Annotated[bool, typer.Option("--cleanup", help="Remove dead nodes, unused inputs/initializers, "
                                          "duplicate constants; sort topologically.")]
OpsetOpt = Annotated[Optional[int], typer.Option("--opset", help="Convert to this opset (onnx version converter).")]
RecipeOpt = Annotated[Optional[Path], typer.Option("--recipe", help="YAML/JSON list of edits to apply first.")]
SaveRecipeOpt = Annotated[Optional[Path], typer.Option("--save-recipe", help="Write the applied edits as a "
                                                       "recipe (.yaml or .json).")]
NoVerifyOpt = Annotated[bool, typer.Option("--no-verify", help="Skip the numeric check of edits that must "
                                           "preserve outputs.")]


def edit(
    model: ModelArg,
    output: OutOpt,
    delete_node: DeleteOpt = None,
    keep_input: KeepOpt = None,
    force: ForceOpt = False,
    insert_after: AfterOpt = None,
    insert_before: BeforeOpt = None,
    consumer: ConsumerOpt = None,
    replace_node: ReplaceOpt = None,
    op: OpOpt = None,
    attr: AttrOpt = None,
    name: NameOpt = None,
    rename: RenameOpt = None,
    set_shape: SetShapeOpt = None,
    set_dim: SetDimOpt = None,
    input_dtype: InDtypeOpt = None,
    output_dtype: OutDtypeOpt = None,
    expose: ExposeOpt = None,
    remove_output: RemoveOutOpt = None,
    extract_inputs: ExInOpt = None,
    extract_outputs: ExOutOpt = None,
    cleanup: CleanupOpt = False,
    opset: OpsetOpt = None,
    recipe: RecipeOpt = None,
    save_recipe: SaveRecipeOpt = None,
    input: InputOpt = None,  # noqa: A002
    inputs: InputsOpt = None,
    dim: DimOpt = None,
    shape: ShapeOpt = None,
    seed: SeedOpt = 0,
    atol: AtolOpt = 1e-4,
    rtol: RtolOpt = 1e-3,
    no_verify: NoVerifyOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete, insert, replace, rename, reshape, retype, expose, extract, clean up, convert opset."""
    from onnxdeploy.cli.common import parse_key_values
    from onnxdeploy.errors import UserInputError

    steps: list[dict] = []
    for item in rename or []:
        old, new = _pair(item, "--rename")
        steps.append({"rename": {"old": old, "new": new}})
    for key, value in parse_key_values(set_shape, option="--set-shape").items():
        steps.append({"set_shape": {"input": key, "shape": value}})
    if set_dim:
        dims = parse_key_values(set_dim, option="--set-dim")
        steps.append({"set_dims": {"dims": {k: int(v) if v.isdigit() else v for k, v in dims.items()}}})
    for key, value in parse_key_values(input_dtype, option="--input-dtype").items():
        steps.append({"set_input_dtype": {"input": key, "dtype": value}})
    for key, value in parse_key_values(output_dtype, option="--output-dtype").items():
        steps.append({"set_output_dtype": {"output": key, "dtype": value}})
    if (keep_input or force) and not delete_node:
        raise UserInputError("--keep-input and --force go with --delete-node")
    for node in delete_node or []:
        args: dict = {"node": node}
        if keep_input is not None:
            args["keep_input"] = keep_input
        if force:
            args["force"] = True
        steps.append({"delete_node": args})
    targets = [t for t in (insert_after, insert_before, replace_node) if t]
    if len(targets) > 1:
        raise UserInputError("give one of --insert-after, --insert-before, --replace-node per command",
                             hint="use a --recipe for several")
    attrs = parse_key_values(attr, option="--attr")
    if (op or attrs or name) and not targets:
        raise UserInputError("--op/--attr/--name go with --insert-after, --insert-before or --replace-node")
    if consumer and not insert_before:
        raise UserInputError("--consumer goes with --insert-before")
    if insert_after or insert_before:
        if not op:
            raise UserInputError("--insert-after/--insert-before need --op", hint="e.g. --op Cast --attr to=int64")
        args = {"tensor": insert_after or insert_before, "op": op}
        if attrs:
            args["attrs"] = attrs
        if name:
            args["name"] = name
        if insert_before and consumer:
            args["consumer"] = consumer
        steps.append({"insert_after" if insert_after else "insert_before": args})
    if replace_node:
        args = {"node": replace_node}
        if op:
            args["op"] = op
        if attrs:
            args["attrs"] = attrs
        steps.append({"replace_node": args})
    steps += [{"expose": {"tensor": t}} for t in expose or []]
    steps += [{"remove_output": {"output": o}} for o in remove_output or []]
    if extract_inputs or extract_outputs:
        if not extract_outputs:
            raise UserInputError("--extract-inputs needs --extract-outputs")
        steps.append({"extract": {"inputs": _split(extract_inputs), "outputs": _split(extract_outputs)}})
    if cleanup:
        steps.append({"cleanup": {}})
    if opset is not None:
        steps.append({"convert_opset": {"opset": opset}})
    if not steps and recipe is None:
        raise UserInputError("no edit given", hint="see `onnxdeploy edit --help`, or pass --recipe FILE")
    _run(model, output, steps, recipe, save_recipe, (input, inputs, dim, shape, seed), atol, rtol, no_verify, as_json)


def _pair(item: str, option: str) -> tuple[str, str]:
    from onnxdeploy.errors import UserInputError

    old, sep, new = item.partition("=")
    if not sep or not old or not new:
        raise UserInputError(f"{option} expects OLD=NEW, got {item!r}")
    return old, new


def _split(items: list[str] | None) -> list[str]:
    return [part for item in items or [] for part in item.split(",") if part]


def _run(model, output, steps, recipe, save_recipe, input_options, atol, rtol, no_verify, as_json) -> None:
    from onnxdeploy.cli import output as out
    from onnxdeploy.cli.common import inputs_from
    from onnxdeploy import Editor
    from onnxdeploy import apply_recipe, dump_recipe
    import onnxdeploy as io

    io.check_model_path(model)  # before any work: no output is the input, however spelled
    io.check_output_path(output)
    if save_recipe is not None:
        io.check_output_path(save_recipe)
    spec = inputs_from(*input_options)  # --input/--inputs/--dim/--shape given: verify on exactly those feeds
    feeds = spec.feeds(model) if spec.given or spec.dims or spec.shapes else {}
    editor = Editor(model, verify=not no_verify, atol=atol, rtol=rtol, seed=spec.seed, inputs=feeds)
    if recipe is not None:
        apply_recipe(editor, recipe)
    apply_recipe(editor, steps, source="command line")
    report = editor.save(output)
    if save_recipe is not None:
        dump_recipe(report.recipe(), save_recipe)
    if as_json:
        out.print_json(report)
        return
    rows = [[i, s.op, s.summary] for i, s in enumerate(report.steps, 1)]
    out.show(out.table(f"edit {model.name}", ["#", "edit", "what was done"], rows))
    for note in report.notes:
        out.info(f"note: {note}")
    out.info("checked: ONNX checker and strict shape inference passed")
    for v in report.verifications:
        (out.warn if v.status == "skipped" else out.info)(f"verified {v.summary()}" if v.status != "skipped"
                                                           else f"not verified: {v.summary()}")
    if no_verify:
        out.warn("numerics not verified (--no-verify)")
    elif not report.verifications:
        out.info("numerics: no edit here must preserve outputs (nothing to verify)")
    if save_recipe is not None:
        out.info(f"recipe written to {save_recipe}")
    out.info(f"wrote {output}")


def register(app: typer.Typer) -> None:
    app.command("edit", epilog=EXAMPLES, rich_help_panel=PANEL_EDIT)(edit)
