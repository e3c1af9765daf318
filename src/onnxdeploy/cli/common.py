"""Shared CLI options (same flag, same meaning everywhere) and small parsers.

Only the standard library and typer are imported here: this module is on the start-up path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from onnxdeploy.errors import UserInputError

PANEL_MODEL = "Inspect and run"
PANEL_EDIT = "Build and edit"
PANEL_EXPORT = "Export"
PANEL_DEBUG = "Debug numerics"
PANEL_OPTIMIZE = "Optimize and measure"
PANEL_DEPLOY = "Deploy"

ModelArg = Annotated[Path, typer.Argument(metavar="MODEL", help="Path to an .onnx model.", show_default=False)]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Where to write the result.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of tables.")]
InputOpt = Annotated[
    Optional[list[str]],
    typer.Option("--input", "-i", help="NAME=FILE with FILE a .npy or TensorProto .pb file. Repeatable."),
]
InputsOpt = Annotated[Optional[Path], typer.Option("--inputs", help="An .npz file holding the inputs by name, or an ONNX test_data_set_N folder (input_K.pb).")]
DimOpt = Annotated[
    Optional[list[str]],
    typer.Option("--dim", help="NAME=VALUE: give a symbolic dim a value everywhere. Repeatable."),
]
ShapeOpt = Annotated[
    Optional[list[str]],
    typer.Option("--shape", "--shapes", help="INPUT=1x3x224x224[:DTYPE] (e.g. tokens=4x32:int64): the shape, and "
                 "optionally the dtype, of one synthesized input. Repeatable; --shapes as trtexec spells it."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for synthesized inputs.")]
ProviderOpt = Annotated[
    Optional[list[str]],
    typer.Option("--provider", "-p", help="onnxruntime execution provider, e.g. cpu, cuda. Repeatable."),
]
ProviderBOpt = Annotated[
    Optional[list[str]], typer.Option("--provider-b", help="onnxruntime execution provider for CANDIDATE (the second model). Repeatable.")
]
OptLevelOpt = Annotated[
    Optional[str],
    typer.Option("--opt-level", help="onnxruntime graph optimizations: disable, basic, extended, all."),
]
OptLevelBOpt = Annotated[Optional[str], typer.Option("--opt-level-b", help="onnxruntime graph optimizations for CANDIDATE (the second model).")]
TARGET_HELP = "onnxruntime, openvino, ort-mobile, tensorrt or ascend."
DEFAULT_TARGET = "onnxruntime"  # the one default of every verb that takes --target
TargetOpt = Annotated[str, typer.Option("--target", "-t", help=f"Deployment target: {TARGET_HELP}")]
TargetFromSuffixOpt = Annotated[Optional[str], typer.Option(
    "--target", "-t", help=f"Deployment target: {TARGET_HELP} Default: the one the output's suffix names "
                           "(.xml openvino, .ort ort-mobile, .onnx onnxruntime, .engine tensorrt, .om ascend).")]
AtolOpt = Annotated[float, typer.Option("--atol", help="Absolute tolerance.")]
RtolOpt = Annotated[float, typer.Option("--rtol", help="Relative tolerance.")]
# calibration data, the same flags wherever int8 is built (quantize, deploy, convert): see calibration_from()
CalibrationOpt = Annotated[Optional[Path], typer.Option(
    "--calibration", "-c", help="Calibration data: an .npz (one array per input, samples along axis 0), an .npy, a "
    "folder of .npy/.pb files or of test_data_set_K folders, or a folder of images (.jpg/.png/.bmp; needs "
    "onnxdeploy[images]).")]
ImageSizeOpt = Annotated[Optional[str], typer.Option(
    "--image-size", help="Calibration images: HxW or one side (default: the model input's static dims).")]
MeanOpt = Annotated[Optional[str], typer.Option(
    "--mean", help="Calibration images: mean per channel on [0,1] pixels, e.g. 0.485,0.456,0.406 (default: "
    "ImageNet's, or the model's metadata).")]
StdOpt = Annotated[Optional[str], typer.Option(
    "--std", help="Calibration images: std per channel, e.g. 0.229,0.224,0.225 (default: ImageNet's).")]
LayoutOpt = Annotated[Optional[str], typer.Option(
    "--layout", help="Calibration images: NCHW or NHWC (default: from the input's shape).")]


def parse_key_values(items: list[str] | None, *, option: str) -> dict[str, str]:
    """Parse repeated ``KEY=VALUE`` options; a malformed item is a :class:`UserInputError`."""
    result: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.rpartition("=")
        if not sep or not key or not value:
            raise UserInputError(f"{option} expects NAME=VALUE, got {item!r}", hint=f"e.g. {option} input=x.npy")
        result[key] = value
    return result


def parse_shape(text: str, *, option: str = "--shape") -> list[int | str]:
    """Parse ``1x3x224x224`` (a dim may be a name, e.g. ``batchx3x224x224``) into a list of dims."""
    dims: list[int | str] = []
    for part in text.lower().replace(",", "x").split("x") if text else []:
        part = part.strip()
        if not part:
            raise UserInputError(f"{option}: empty dim in shape {text!r}", hint="write shapes like 1x3x224x224")
        dims.append(int(part) if part.isascii() and part.isdigit() else part)
    return dims


DTYPES = {  # the :dtype suffix of a typed shape -> numpy dtype name
    "float32": "float32", "float": "float32", "fp32": "float32", "f32": "float32",
    "float16": "float16", "half": "float16", "fp16": "float16", "f16": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float64": "float64", "double": "float64", "fp64": "float64", "f64": "float64",
    "int64": "int64", "long": "int64", "i64": "int64",
    "int32": "int32", "int": "int32", "i32": "int32",
    "int16": "int16", "i16": "int16", "int8": "int8", "i8": "int8",
    "uint8": "uint8", "u8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
    "bool": "bool",
}


def parse_typed_shape(text: str, *, option: str = "--shape") -> tuple[list[int | str], str | None]:
    """Parse ``1x3x224x224`` or ``4x32:int64`` into ``(dims, numpy dtype name or None)``."""
    shape, sep, dtype = text.rpartition(":") if ":" in text else (text, "", "")
    if sep:
        key = dtype.strip().lower()
        if key not in DTYPES:
            from onnxdeploy import did_you_mean

            raise UserInputError(f"{option}: unknown dtype {dtype!r} in {text!r}",
                                 hint=did_you_mean(key, DTYPES, what="dtypes"))
        return parse_shape(shape, option=option), DTYPES[key]
    return parse_shape(text, option=option), None


def parse_typed_shapes(items: list[str] | None, *, option: str = "--shape") -> dict[str, tuple[list[int | str], str | None]]:
    """Parse repeated ``NAME=4x32[:dtype]`` options into ``{name: (dims, dtype or None)}``, in the given order.

    trtexec's spelling works too: ``NAME:1x3x224x224,NAME2:4x32`` (one item, comma separated, ``:`` after the name,
    an optional ``:dtype`` after the dims)."""
    normal: list[str] = []
    for item in items or []:
        if "=" in item or ":" not in item:
            normal.append(item)
            continue
        for part in filter(None, (p.strip() for p in item.split(","))):
            name, sep, rest = part.partition(":")
            if not sep or not name or not rest:
                raise UserInputError(f"{option} expects NAME=1x3x224x224[:dtype] (or trtexec's NAME:1x3x224x224), "
                                     f"got {item!r}", hint=f"e.g. {option} input=1x3x224x224")
            normal.append(f"{name}={rest}")
    return {name: parse_typed_shape(value, option=option)
            for name, value in parse_key_values(normal, option=option).items()}


def parse_dims(items: list[str] | None) -> dict[str, int]:
    dims: dict[str, int] = {}
    for name, value in parse_key_values(items, option="--dim").items():
        if not (value.isascii() and value.isdigit()):  # str.isdigit alone accepts '²', which int() refuses
            raise UserInputError(f"--dim {name}={value}: the value must be a non-negative integer")
        dims[name] = int(value)
    return dims


DynamicOpt = Annotated[
    Optional[list[str]],
    typer.Option("--dynamic", "-d", help="NAME:0=batch,2=height: name dims of an input or output dynamic. Repeatable."),
]


def parse_dynamic(items: list[str] | None) -> dict[str, dict[int, str]]:
    """Parse repeated ``NAME:INDEX=DIM[,INDEX=DIM]`` (``--dynamic``) into ``{name: {index: dim name}}``."""
    result: dict[str, dict[int, str]] = {}
    for item in items or []:
        name, sep, spec = item.partition(":")
        if not sep or not name or not spec:
            raise UserInputError(f"--dynamic expects NAME:INDEX=DIM[,INDEX=DIM], got {item!r}",
                                 hint="e.g. --dynamic input:0=batch,2=height,3=width")
        axes = result.setdefault(name, {})
        for part in spec.split(","):
            index, eq, dim = part.partition("=")
            if not eq or not index.strip().lstrip("-").isdigit() or not dim.strip():
                raise UserInputError(f"--dynamic {item}: {part!r} is not INDEX=NAME", hint="e.g. 0=batch")
            axes[int(index)] = dim.strip()
    return result


def providers_from(items: list[str] | None) -> list[str] | None:
    return list(items) if items else None


def inputs_from(input_: list[str] | None, inputs: Path | None, dim: list[str] | None, shape: list[str] | None,
                seed: int = 0):
    """The one input description (:class:`onnxdeploy.Inputs`) from the shared options --input, --inputs,
    --dim, --shape and --seed: every verb that runs a model builds its inputs here."""
    from onnxdeploy import Inputs

    shapes = parse_typed_shapes(shape, option="--shape")
    return Inputs(files=parse_key_values(input_, option="--input"), npz=inputs, dims=parse_dims(dim),
                  shapes=shapes, seed=seed)


def calibration_from(path: Path | None, image_size: str | None = None, mean: str | None = None,
                     std: str | None = None, layout: str | None = None, *, limit: int | None = None, seed: int = 0):
    """The calibration spec (:class:`onnxdeploy.Calibration`, or None) from --calibration and the image options."""
    if path is None:
        given = [f for f, v in (("--image-size", image_size), ("--mean", mean), ("--std", std), ("--layout", layout))
                 if v is not None]
        if given:
            raise UserInputError(f"{', '.join(given)} only apply to --calibration images",
                                 hint="pass --calibration FOLDER_OF_IMAGES")
        return None
    from onnxdeploy import Calibration

    def floats(text: str | None, option: str):
        try:
            return None if text is None else tuple(float(x) for x in text.split(","))
        except ValueError as err:
            raise UserInputError(f"{option} {text!r}: expected numbers separated by commas") from err

    size = None
    if image_size is not None:
        parts = image_size.lower().split("x")
        if not all(p.isdigit() for p in parts) or len(parts) > 2:
            raise UserInputError(f"--image-size {image_size!r}: expected HxW or one side, e.g. 224x224 or 224")
        size = (int(parts[0]), int(parts[-1]))
    return Calibration(path, limit=limit, seed=seed, image_size=size, mean=floats(mean, "--mean"),
                       std=floats(std, "--std"), layout=layout)


def check_opt_level(value: str | None, option: str = "--opt-level") -> str | None:
    levels = ("disable", "basic", "extended", "all")
    if value is not None and value not in levels:
        raise UserInputError(f"{option} {value!r} is not a level", hint=f"use one of {', '.join(levels)}")
    return value


def node_names_text(nodes: list[str], n: int = 3) -> str:
    """The first ``n`` node names (the JSON output has more), so one problem stays a few lines tall."""
    if len(nodes) <= n:
        return ", ".join(nodes)
    listed = [x for x in nodes if not x.startswith("... ")]
    more = sum(int(x.split()[1]) for x in nodes if x.startswith("... ")) + len(listed) - n
    return ", ".join(nodes[:n]) + f", ... {more} more"


# ---------------------------------------------------------------- deprecated spellings
# One meaning per flag across verbs (docs/cli.md): `-t` is --target and `-b` is --backend everywhere. The spellings
# that meant something else keep working for a while: main() rewrites them before dispatch and prints a note naming
# the new flag. (verb, old spelling) -> new spelling; an old short flag may carry its value glued on (`-t5`).
DEPRECATED_SPELLINGS: dict[tuple[str, str], str] = {
    ("probe", "-t"): "--tensor",
    ("compare", "-t"): "--tensor",
    ("bench", "-t"): "--duration",
    ("bench", "-b"): "--batch",
    ("bench", "--optimization-level"): "--opt-level",
}
DEPRECATED_SHORT = {key: new for key, new in DEPRECATED_SPELLINGS.items() if not key[1].startswith("--")}


def rewrite_deprecated(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` with the verb's deprecated spellings (:data:`DEPRECATED_SPELLINGS`) replaced by the current ones, and
    one note per replaced spelling naming the new flag. The verb is the first argument not starting with ``-`` (the
    root options take no value); only what follows it is touched, up to ``--``. Other verbs pass through unchanged.

    >>> rewrite_deprecated(["bench", "m.onnx", "-t", "5", "-b8"])[0]
    ['bench', 'm.onnx', '--duration', '5', '--batch=8']"""
    args = list(argv)
    verb_at = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
    if verb_at is None:
        return args, []
    verb = args[verb_at]
    table = {old: new for (v, old), new in DEPRECATED_SPELLINGS.items() if v == verb}
    if not table:
        return args, []
    out, notes, seen = args[: verb_at + 1], [], set()
    i = verb_at + 1
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out.extend(args[i:])
            break
        old, new, glued = _match_deprecated(arg, table)
        if old is None:
            out.append(arg)
        else:
            out.append(new if glued is None else f"{new}={glued}")
            if old not in seen:
                seen.add(old)
                notes.append(f"`{verb} {old}` is now `{verb} {new}`; the old spelling will be removed")
        i += 1
    return out, notes


def _match_deprecated(arg: str, table: dict[str, str]) -> tuple[str | None, str | None, str | None]:
    """(old spelling, new spelling, value glued to the old spelling or None) when ``arg`` is a deprecated spelling."""
    if arg in table:
        return arg, table[arg], None
    for old, new in table.items():
        if old.startswith("--") and arg.startswith(old + "="):
            return old, new, arg[len(old) + 1:]
        if not old.startswith("--") and len(old) == 2 and arg.startswith(old) and len(arg) > 2 and arg[2] != "-":
            value = arg[2:]
            return old, new, value[1:] if value.startswith("=") else value
    return None, None, None
