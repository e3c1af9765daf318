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
    typer.Option("--shape", help="INPUT=1x3x224x224: the shape of one synthesized input. Repeatable."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for synthesized inputs.")]
ProviderOpt = Annotated[
    Optional[list[str]],
    typer.Option("--provider", "-p", help="onnxruntime execution provider, e.g. cpu, cuda. Repeatable."),
]
ProviderBOpt = Annotated[
    Optional[list[str]], typer.Option("--provider-b", help="Execution provider(s) for B. Repeatable.")
]
OptLevelOpt = Annotated[
    Optional[str],
    typer.Option("--opt-level", help="onnxruntime graph optimizations: disable, basic, extended, all."),
]
OptLevelBOpt = Annotated[Optional[str], typer.Option("--opt-level-b", help="onnxruntime graph optimizations for B.")]
AtolOpt = Annotated[float, typer.Option("--atol", help="Absolute tolerance.")]
RtolOpt = Annotated[float, typer.Option("--rtol", help="Relative tolerance.")]


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
        dims.append(int(part) if part.isdigit() else part)
    return dims


def parse_shapes(items: list[str] | None, *, option: str = "--shape") -> dict[str, list[int | str]]:
    return {name: parse_shape(value, option=option) for name, value in parse_key_values(items, option=option).items()}


def parse_dims(items: list[str] | None) -> dict[str, int]:
    dims: dict[str, int] = {}
    for name, value in parse_key_values(items, option="--dim").items():
        if not value.isdigit():
            raise UserInputError(f"--dim {name}={value}: the value must be a non-negative integer")
        dims[name] = int(value)
    return dims


def providers_from(items: list[str] | None) -> list[str] | None:
    return list(items) if items else None


def input_options(input_: list[str] | None, inputs: Path | None, dim: list[str] | None, shape: list[str] | None,
                  seed: int) -> dict:
    """The keyword arguments every debug verb takes for its inputs, parsed from the shared options."""
    return {
        "input_files": parse_key_values(input_, option="--input"),
        "npz": inputs,
        "dims": parse_dims(dim),
        "shapes": parse_shapes(shape),
        "seed": seed,
    }


def check_opt_level(value: str | None, option: str = "--opt-level") -> str | None:
    levels = ("disable", "basic", "extended", "all")
    if value is not None and value not in levels:
        raise UserInputError(f"{option} {value!r} is not a level", hint=f"use one of {', '.join(levels)}")
    return value
