"""Recipes: YAML/JSON edit lists, replayed on a re-exported model with different names; errors name the step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest
import yaml

from onnxdeploy._build import GraphBuilder
from onnxdeploy.cli.main import main
from onnxdeploy._edit import Editor
from onnxdeploy.errors import UserInputError
from onnxdeploy._recipes import apply_recipe, dump_recipe, load_recipe
from onnxdeploy._run import run

RECIPE = """
edits:
  - replace_node: {node: "op:Sigmoid", op: HardSigmoid}
  - insert_after: {tensor: "op:Mul", op: Cast, attrs: {to: float16}}
  - expose: "glob:*bn*out*"
  - set_dims: {dims: {batch: 2}}
  - cleanup: {}
"""


def conv_bn_silu(names: dict[str, str]) -> ir.Model:
    """Conv + BN + SiLU with the same weights; ``names`` chooses every tensor and node name (a 're-export')."""
    rng = np.random.default_rng(0)
    g = GraphBuilder("m", opset=17)
    x = g.input(names["input"], "float32", ["batch", 3, 8, 8])
    w = g.initializer(names["w"], rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    y = g.op("Conv", x, w, name=names["conv"], outputs=[names["conv_out"]], pads=[1, 1, 1, 1])
    stats = [g.initializer(names["w"] + f".bn{i}", rng.uniform(0.5, 1.5, 4).astype(np.float32)) for i in range(4)]
    y = g.op("BatchNormalization", y, *stats, name=names["bn"], outputs=[names["bn_out"]])
    s = g.op("Sigmoid", y, name=names["sig"])
    g.output(g.op("Mul", y, s, name=names["mul"]), names["output"])
    return g.build()


ORIGINAL = {"input": "input", "w": "conv.weight", "conv": "/conv/Conv", "conv_out": "conv_out",
            "bn": "/bn/BatchNormalization", "bn_out": "bn_out", "sig": "/act/Sigmoid", "mul": "/act/Mul",
            "output": "values"}
REEXPORTED = {"input": "images", "w": "model.0.weight", "conv": "/model.0/Conv_12", "conv_out": "onnx::Conv_45",
              "bn": "/model.1/bn/BatchNormalization_3", "bn_out": "/model.1/bn/output_0",
              "sig": "/model.2/Sigmoid_7", "mul": "/model.2/Mul_8", "output": "output0"}


@pytest.fixture
def recipe_path(tmp_path: Path) -> Path:
    path = tmp_path / "fix.yaml"
    path.write_text(RECIPE)
    return path


def test_recipe_replays_on_reexported_model(recipe_path, tmp_path):
    outputs = []
    for names in (ORIGINAL, REEXPORTED):
        src = tmp_path / f"{names['input']}.onnx"
        ir.save(conv_bn_silu(names), src)
        e = apply_recipe(Editor(src), recipe_path)
        report = e.save(tmp_path / f"{names['input']}.fixed.onnx")
        assert [s.op for s in report.steps] == ["replace_node", "insert_after", "expose", "set_dims", "cleanup"]
        assert [n.op_type for n in e.graph] == ["Conv", "BatchNormalization", "HardSigmoid", "Mul", "Cast"]
        assert [v.name for v in e.graph.outputs] == [names["output"], names["bn_out"]]
        assert e.graph.outputs[0].dtype == ir.DataType.FLOAT16
        assert list(e.graph.outputs[0].shape) == [2, 4, 8, 8]
        x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
        result = run(tmp_path / f"{names['input']}.fixed.onnx", {names["input"]: x})
        outputs.append([result[v.name] for v in e.graph.outputs])
    for a, b in zip(*outputs):
        np.testing.assert_array_equal(a, b)


def test_json_recipe_and_scalar_shorthand(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps([{"rename_tensor": {"tensor": "values", "new": "y"}}, {"toposort": None}]))
    src = tmp_path / "m.onnx"
    ir.save(conv_bn_silu(ORIGINAL), src)
    e = apply_recipe(Editor(src), path)
    assert e.graph.outputs[0].name == "y"
    report = e.finish()
    assert report.verifications[0].status == "passed"


def test_selector_matching_nothing_names_step_and_closest(tmp_path, recipe_path):
    src = tmp_path / "m.onnx"
    ir.save(conv_bn_silu(ORIGINAL), src)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- delete_node: {node: /act/Sigmod}\n")
    with pytest.raises(UserInputError, match=r"bad.yaml: step 1 \(delete_node\): no node matches '/act/Sigmod'") as e:
        apply_recipe(Editor(src), bad)
    assert "/act/Sigmoid" in e.value.hint
    bad.write_text("- expose: 'glob:*batchnorm*'\n")
    with pytest.raises(UserInputError, match="no tensor matches 'glob:\\*batchnorm\\*'"):
        apply_recipe(Editor(src), bad)


def test_malformed_recipes(tmp_path):
    src = tmp_path / "m.onnx"
    ir.save(conv_bn_silu(ORIGINAL), src)
    cases = {
        "- delet_node: {node: x}\n": "unknown edit 'delet_node'",
        "- delete_node: {nod: x}\n": "delete_node has no argument 'nod'",
        "- insert_after: {tensor: x}\n": "insert_after needs op",
        "delete_node: x\n": "a recipe must be a list",
        "- [1, 2]\n": "step 1 must be a mapping with one key",
        "- {a: 1\n": "not a valid recipe",
    }
    for text, message in cases.items():
        path = tmp_path / "r.yaml"
        path.write_text(text)
        with pytest.raises(UserInputError, match=message):
            apply_recipe(Editor(src), path)
    with pytest.raises(UserInputError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.yaml")


def test_save_recipe_round_trip(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    ir.save(conv_bn_silu(ORIGINAL), src)
    rc = main(["edit", str(src), "-o", str(tmp_path / "a.onnx"), "--insert-after", "op:Mul", "--op", "Cast",
               "--attr", "to=float16", "--rename", "input=images", "--save-recipe", str(tmp_path / "r.yaml")])
    assert rc == 0, " ".join(capsys.readouterr().err.split())
    steps = yaml.safe_load((tmp_path / "r.yaml").read_text())["edits"]
    assert steps == [{"rename_tensor": {"tensor": "input", "new": "images"}},
                     {"insert_after": {"tensor": "op:Mul", "op": "Cast", "attrs": {"to": "float16"}}}]
    ir.save(conv_bn_silu(REEXPORTED), tmp_path / "re.onnx")
    rc = main(["edit", str(tmp_path / "re.onnx"), "-o", str(tmp_path / "b.onnx"), "--recipe", str(tmp_path / "r.yaml")])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 1 and "no tensor matches 'input'" in err and "closest tensor names" in err


def test_dump_recipe_json(tmp_path):
    path = dump_recipe([{"cleanup": {}}], tmp_path / "r.json")
    assert json.loads(path.read_text()) == {"edits": [{"cleanup": {}}]}
