"""One set of CLI habits (docs/cli.md), checked on the full typer app: a flag means the same thing in every verb, the
verbs that run a model take the same input options, arguments say what they are, one name for the onnxruntime
optimization level, one default target, deprecated spellings still work with a note, and tables piped into a log
never break a cell across lines.

typer vendors its own click: options are recognised by their attributes (``opts``, ``secondary_opts``,
``param_type_name``), never by isinstance of click classes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from onnxdeploy.cli.common import DEFAULT_TARGET, DEPRECATED_SPELLINGS, rewrite_deprecated
from onnxdeploy.cli.main import app, main

# Every short flag, and the one long flag it stands for in every verb that has it.
SHORT_FLAGS = {
    "-o": "--output",
    "-i": "--input",
    "-t": "--target",
    "-b": "--backend",
    "-p": "--provider",
    "-d": "--dynamic",
    "-n": "--iterations",
    "-c": "--calibration",
}

# The meaning of every long flag that more than one verb has: its help text must match (case-insensitive, searched
# from the start). A flag reused for another meaning fails here; a new shared flag must be added with its meaning.
MEANINGS = {
    "--output": r"^(where to write|write|save|folder for)",
    "--input": r"^NAME=FILE\b",
    "--inputs": r"^an \.npz file holding the inputs by name",
    "--dim": r"^NAME=VALUE: give a symbolic dim a value",
    "--shape": r"^(INPUT|NAME)=1x3x224x224\[:DTYPE\]",
    "--shapes": r"^(INPUT|NAME)=1x3x224x224\[:DTYPE\]",
    "--seed": r"^seed for synthesized inputs",
    "--calibration": r"^calibration data: an \.npz",  # cli.common.CalibrationOpt
    "--fix-dims": r"^make the --dim sizes static",
    "--dynamic": r"^NAME:0=batch,2=height: name dims of an input or output dynamic",
    "--target": r"^deployment target: onnxruntime, openvino",
    "--provider": r"^onnxruntime execution provider",
    "--precision": r"^precision to build: fp32, bf16, fp16",
    "--task": r"^text-generation: a decoder LM with its KV cache",
    "--max-new-tokens": r"^new tokens to generate",
    "--min-cosine": r"^accuracy budget: .*lowest cosine",
    "--provider-b": r"^onnxruntime execution provider for CANDIDATE",
    "--opt-level": r"^onnxruntime graph optimizations: disable, basic, extended, all",
    "--opt-level-b": r"^onnxruntime graph optimizations for CANDIDATE",
    "--threads": r"^onnxruntime intra-op threads",
    "--atol": r"^absolute tolerance",
    "--rtol": r"^relative tolerance",
    "--no-verify": r"^(skip|write even)",  # the verb's own check is skipped (quantize: written even when it drifts)
    "--keep-on-mismatch": r"^(write|keep) the (model|artefact) (even )?when (outputs disagree|it disagrees)",
    "--opset": r"^(convert to this opset|onnx opset)",
    "--tensor": r"^(a tensor to capture, by name|show only this intermediate tensor)",
    "--all": r"^(capture|show) every",
    "--json": r"^print the result as json instead of tables",
    "--skip": r"^skip a step by name",
    "--port": r"^port to serve on",
    "--backend": r"^run on a target's engine",
    "--duration": r"^seconds of timed (runs|requests)",
    "--batch": r"^batch size for symbolic batch dims",
    "--reference": r"^(with --backend on a converted artefact: the onnx it came from|pytorch model with the same "
                   r"weights)",  # the model whose outputs are the reference
}

INPUT_GROUP = {"--input", "--inputs", "--dim", "--shape", "--seed"}
# Verbs without the whole input group, the flags they lack, and why. A verb listed here that gains a flag, or one
# not listed that lacks one, fails the test: the table stays true.
WITHOUT_INPUT_GROUP = {
    "check": (INPUT_GROUP, "a static check of ops and dtypes against a target: runs nothing"),
    "diff": (INPUT_GROUP, "compares graphs and initializers: runs nothing"),
    "example": (INPUT_GROUP, "writes a built-in model: runs nothing"),
    "render": (INPUT_GROUP, "draws the graph: runs nothing"),
    "view": (INPUT_GROUP, "serves the graph to netron: runs nothing"),
    "demo": (INPUT_GROUP, "runs the built-in examples on their own fixed inputs"),
    "inspect": (INPUT_GROUP - {"--dim"}, "runs nothing; --dim only fills symbolic dims in the shapes it lists"),
    "export": ({"--dim"}, "a PyTorch model has no symbolic dim before export: --dynamic names them, and --shape, "
                          "--input or --inputs give the example's sizes"),
    "doctor": (INPUT_GROUP, "describes this machine: takes no model"),
    "serve": (INPUT_GROUP, "a server: its inputs come in requests, checked against the model"),
    "loadtest": (INPUT_GROUP - {"--seed"}, "drives a server whose metadata gives the inputs; --seed seeds them"),
    "generate": (INPUT_GROUP, "its inputs are the prompt ids (--prompt-ids) and the cache it grows step by step"),
    "quantize": ({"--input", "--inputs"}, "its data is --calibration (many samples, some held out for the check): "
                                          "one --input sample would neither calibrate nor verify"),
}

# The only spelling of the onnxruntime graph optimization level; these others must not be visible options.
OPT_LEVEL = "--opt-level"
OTHER_OPT_LEVEL_SPELLINGS = {"--optimization-level", "--ort-opt-level", "--graph-optimization-level", "--ort-level"}
# `optimize --level` is onnxdeploy's own optimization level (which passes run), not onnxruntime's: only there.
LEVEL_VERBS = {"optimize"}
# Verbs whose --target has no fixed default, and why.
TARGET_DEFAULT_EXCEPTIONS = {"convert": "the target is the one the output's suffix names (.xml openvino, ...)"}


@pytest.fixture(scope="module")
def commands() -> dict:
    return dict(typer.main.get_command(app).commands)


def _options(command) -> list:
    return [p for p in command.params if getattr(p, "param_type_name", None) == "option"]


def _arguments(command) -> list:
    return [p for p in command.params if getattr(p, "param_type_name", None) == "argument"]


def _spellings(option) -> list[str]:
    return [*option.opts, *option.secondary_opts]


def _long(option) -> str:
    return next(o for o in option.opts if o.startswith("--"))


def _visible_flags(command) -> set[str]:
    return {s for o in _options(command) if not getattr(o, "hidden", False) for s in _spellings(o)}


def test_every_verb_is_walked(commands):
    assert {"run", "probe", "compare", "reduce", "bench", "optimize", "quantize", "export", "convert", "legalize",
            "deploy", "check", "diff", "edit", "inspect"} <= set(commands)


def test_a_short_flag_means_one_long_flag_everywhere(commands):
    wrong = []
    for verb, command in commands.items():
        for option in _options(command):
            for short in (s for s in _spellings(option) if not s.startswith("--")):
                if SHORT_FLAGS.get(short) != _long(option):
                    wrong.append(f"{verb} {short} is {_long(option)} (the table says {SHORT_FLAGS.get(short)})")
    assert not wrong, "\n".join(wrong)


def test_a_long_flag_has_its_short_flag_in_every_verb(commands):
    short_of = {long: short for short, long in SHORT_FLAGS.items()}
    missing = [f"{verb} {_long(o)} lacks {short_of[_long(o)]}" for verb, command in commands.items()
               for o in _options(command) if _long(o) in short_of and short_of[_long(o)] not in o.opts
               # a short flag still rewritten to its old meaning in this verb waits for the end of that notice
               and (verb, short_of[_long(o)]) not in DEPRECATED_SPELLINGS]
    assert not missing, "\n".join(missing)


def test_a_long_flag_means_one_thing_everywhere(commands):
    verbs_of: dict[str, set[str]] = {}
    for verb, command in commands.items():
        for option in _options(command):
            for flag in (s for s in _spellings(option) if s.startswith("--")):
                verbs_of.setdefault(flag, set()).add(verb)
    shared = {flag for flag, verbs in verbs_of.items() if len(verbs) > 1}
    unlisted = sorted(shared - set(MEANINGS))
    assert not unlisted, f"flags in several verbs without a meaning in MEANINGS: {unlisted} ({verbs_of})"
    wrong = []
    for verb, command in commands.items():
        for option in _options(command):
            for flag in (s for s in _spellings(option) if s in MEANINGS):
                if not re.search(MEANINGS[flag], option.help or "", re.IGNORECASE):
                    wrong.append(f"{verb} {flag}: {option.help!r} does not match {MEANINGS[flag]!r}")
    assert not wrong, "\n".join(wrong)


def test_verbs_that_run_a_model_take_the_input_group(commands):
    wrong = []
    for verb, command in commands.items():
        lacks = INPUT_GROUP - _visible_flags(command)
        expected = WITHOUT_INPUT_GROUP.get(verb, (set(), ""))[0]
        if lacks != expected:
            wrong.append(f"{verb} lacks {sorted(lacks)}, WITHOUT_INPUT_GROUP says {sorted(expected)}")
    assert not wrong, "\n".join(wrong)
    assert set(WITHOUT_INPUT_GROUP) <= set(commands)


def test_the_input_group_is_the_shared_options(commands):
    """--shape takes --shapes (trtexec's spelling) too, and --input is NAME=FILE, in every verb."""
    for verb, command in commands.items():
        for option in _options(command):
            if "--shape" in option.opts:
                assert "--shapes" in option.opts, verb
            if "--input" in option.opts:
                assert option.help.startswith("NAME=FILE"), verb


def test_arguments_say_what_they_are(commands):
    wrong = []
    for verb, command in commands.items():
        for argument in _arguments(command):
            metavar = (argument.metavar or argument.name.upper()).strip("[].")
            if not re.fullmatch(r"[A-Z][A-Z_]{3,}", metavar):
                wrong.append(f"{verb} {argument.metavar!r}")
    assert not wrong, "argument names must be words (MODEL_A, REFERENCE, CANDIDATE): " + ", ".join(wrong)


def test_diff_compare_and_reduce_name_their_two_models(commands):
    def names(verb):
        return [a.metavar.strip("[]") for a in _arguments(commands[verb])]

    assert names("diff") == ["MODEL_A", "MODEL_B"]
    assert names("compare") == ["REFERENCE", "CANDIDATE"]
    assert names("reduce") == ["REFERENCE", "CANDIDATE"]


def test_one_name_for_the_opt_level(commands):
    wrong = []
    for verb, command in commands.items():
        flags = _visible_flags(command)
        wrong += [f"{verb} {f}" for f in sorted(flags & OTHER_OPT_LEVEL_SPELLINGS)]
        if "--level" in flags and verb not in LEVEL_VERBS:
            wrong.append(f"{verb} --level")
        for option in _options(command):  # a hidden old spelling must name the new one
            if getattr(option, "hidden", False) and set(_spellings(option)) & OTHER_OPT_LEVEL_SPELLINGS:
                assert OPT_LEVEL in (option.help or ""), f"{verb}: {option.help!r} does not name {OPT_LEVEL}"
    assert not wrong, f"the onnxruntime optimization level is {OPT_LEVEL} everywhere: " + ", ".join(wrong)


def test_the_default_target_is_the_one_default(commands):
    defaults = {verb: o.default for verb, command in commands.items() for o in _options(command)
                if "--target" in o.opts}
    assert {"check", "legalize", "convert", "deploy"} <= set(defaults)
    for verb, default in defaults.items():
        if verb in TARGET_DEFAULT_EXCEPTIONS:
            assert default is None, verb
            help_text = next(o.help for o in _options(commands[verb]) if "--target" in o.opts)
            assert "suffix" in help_text, f"{verb} --target must say its default comes from the output's suffix"
        else:
            assert default == DEFAULT_TARGET, f"{verb} --target defaults to {default!r}, not {DEFAULT_TARGET!r}"


# ---------------------------------------------------------------- deprecated spellings


def test_deprecated_spellings_are_gone_from_their_verbs_and_name_a_real_flag(commands):
    for (verb, old), new in DEPRECATED_SPELLINGS.items():
        spellings = {s for o in _options(commands[verb]) for s in _spellings(o)}
        assert old not in spellings, f"{verb} still has {old}: remove it (the rewrite keeps it working)"
        assert new in spellings, f"{verb} has no {new}"


def test_rewrite_deprecated_replaces_old_spellings_with_a_note():
    argv, notes = rewrite_deprecated(["--debug", "bench", "m.onnx", "-t", "5", "-b8", "--optimization-level=all",
                                      "-b", "1", "--", "-t"])
    assert argv == ["--debug", "bench", "m.onnx", "--duration", "5", "--batch=8", "--opt-level=all", "--batch", "1",
                    "--", "-t"]
    assert notes == ["`bench -t` is now `bench --duration`; the old spelling will be removed",
                     "`bench -b` is now `bench --batch`; the old spelling will be removed",
                     "`bench --optimization-level` is now `bench --opt-level`; the old spelling will be removed"]
    assert rewrite_deprecated(["probe", "m.onnx", "-tconv_out"]) == (
        ["probe", "m.onnx", "--tensor=conv_out"], ["`probe -t` is now `probe --tensor`; the old spelling will be removed"])


def test_rewrite_deprecated_leaves_the_current_meaning_alone():
    for argv in (["run", "m.onnx", "-b", "openvino"], ["check", "m.onnx", "-t", "openvino"],
                 ["deploy", "m.onnx", "-t", "openvino"], ["probe", "m.onnx", "--tensor", "x"], ["--help"], []):
        assert rewrite_deprecated(argv) == (argv, [])


def test_old_short_flag_still_works_with_a_note(resize_conv_add_path, capsys):
    """Needs main() to call rewrite_deprecated before dispatch (the hook in cli/main.py)."""
    import json

    assert main(["probe", str(resize_conv_add_path), "-t", "conv_output", "--json"]) == 0
    captured = capsys.readouterr()
    assert [t["name"] for t in json.loads(captured.out)["tensors"]] == ["conv_output"]
    assert "`probe -t` is now `probe --tensor`" in captured.err


# ---------------------------------------------------------------- tables in logs


def _tiny_values_model(path: Path, name: str) -> None:
    import onnx
    from onnx import TensorProto, helper

    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [1e-6])
    node = helper.make_node("Mul", ["x", "scale"], [name], name="scale_by_a_millionth_" + "n" * 30)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4])], [scale])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_tables_do_not_wrap_cells_when_stdout_is_not_a_terminal(tmp_path):
    """Needs the cli/output.py change for non-terminals (no wrapped line or cell; docs/cli.md, 'Output')."""
    import numpy as np

    name = "model/backbone/stage_4/block_2/attention/output_projection/scaled_output_0"
    model = tmp_path / "tiny.onnx"
    _tiny_values_model(model, name)
    np.savez(tmp_path / "x.npz", x=np.array([[9.537, 1.234, 5.678, 3.21]], dtype=np.float32))
    env = {**os.environ, "COLUMNS": "60", "OMP_NUM_THREADS": "1", "TERM": "dumb"}
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run([sys.executable, "-m", "onnxdeploy.cli.main", "probe", str(model), "--inputs",
                           str(tmp_path / "x.npz")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for text in ("9.537e-06", "1.234e-06", "9.537", "1.234", name, str(model)):
        assert any(text in line for line in lines), f"{text!r} is split across lines:\n{proc.stdout}"
    assert not any(re.search(r"\de-?\s*$", line) for line in lines), proc.stdout  # a number cut after its 'e'
