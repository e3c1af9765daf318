"""Seeded generator of the fuzz corpus: malicious, malformed and hostile models, input files, recipes and command lines.

A `Case` knows how to build its files into a `Layout` (a fresh folder per run):

    root/model/    the model's folder: model.onnx, its data files, input files, recipes
    root/outside/  secret.bin: canary bytes (float32 31337.25) that a model must never be able to read
    root/cwd/      the scratch working directory; holds canaries named like the data files (w.data, ...) so that
                   a relative location resolved against the current directory instead of the model's folder shows
    root/out/      where outputs go by default

A `Run` is one case with one verb and its argument template ({model}, {mdir}, {out}, {outside}, {root}, {cwd}).
`sample_runs()` is the fast default sample (~60 runs, cheap verbs); `full_runs()` is the whole corpus (>= 2,000 runs:
every hand-written case with every verb it applies to, plus N seeded mutations of onnx's backend test models).
Everything is deterministic for a given seed; building a case takes milliseconds (the 100k-node chain: ~1 s).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

CANARY_VALUE = 31337.25
CANARY_BYTES = np.full(4096, CANARY_VALUE, dtype=np.float32).tobytes()  # 16 KiB: any offset/length within reads it
CANARY_NEEDLE = np.full(4, CANARY_VALUE, dtype=np.float32).tobytes()  # what we look for in outputs
# what we look for in printed output (run/probe values and statistics): 31337.25 as printed by numpy/rich
CANARY_TEXT = r"31337\.|3\.1337\d*e\+0?4|3\.134e\+0?4"
CWD_CANARY_NAMES = ("w.data", "model.onnx.data", "secret.bin", "data.bin", "c.data")
PWNED = "PWNED"  # a file a pickle / YAML payload creates in the cwd if it is ever executed

ALL_VERBS = (
    "inspect", "run", "probe", "edit", "optimize", "quantize", "legalize", "check", "convert", "bench", "render",
    "compare", "diff",
)  # fmt: skip
VERB_ARGS: dict[str, tuple[str, ...]] = {
    "inspect": ("{model}",),
    "run": ("{model}", "-o", "{out}/outputs.npz"),
    "probe": ("{model}", "-o", "{out}/probe.npz"),
    "edit": ("{model}", "-o", "{out}/edited.onnx", "--cleanup"),
    "optimize": ("{model}", "-o", "{out}/optimized.onnx"),
    "quantize": ("{model}", "-o", "{out}/int8.onnx", "--no-measure", "--samples", "2"),
    "legalize": ("{model}", "-o", "{out}/legal.onnx"),
    "check": ("{model}",),
    "convert": ("{model}", "--target", "onnxruntime", "-o", "{out}/converted.onnx"),
    "bench": ("{model}", "-n", "2", "--warmup", "1"),
    "render": ("{model}", "-o", "{out}/graph.svg"),
    "compare": ("{model}", "{model}"),
    "diff": ("{model}", "{model}"),
}
# options whose value is a path the command writes
OUTPUT_FLAGS = ("-o", "--output", "--svg", "--save-recipe")
# verbs that verify their result numerically by default (exit 0 must come with a verification line); `convert
# --target onnxruntime` is not one: its artefact is the ONNX model itself
VERIFYING_VERBS = ("edit", "optimize", "quantize", "legalize")
DIM_VERBS = ("inspect", "run", "probe", "optimize", "legalize", "convert", "bench", "compare", "quantize")
INPUT_VERBS = ("run", "probe", "compare", "optimize", "edit", "quantize")
OUTPUT_VERBS = ("run", "probe", "edit", "optimize", "quantize", "legalize", "convert", "render", "bench")


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def mdir(self) -> Path:
        return self.root / "model"

    @property
    def model(self) -> Path:
        return self.mdir / "model.onnx"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    @property
    def out(self) -> Path:
        return self.root / "out"

    def create(self) -> dict[str, str]:
        """The four folders and the canaries; returns the default placeholders."""
        for d in (self.mdir, self.outside, self.cwd, self.out):
            d.mkdir(parents=True, exist_ok=True)
        (self.outside / "secret.bin").write_bytes(CANARY_BYTES)
        for name in CWD_CANARY_NAMES:
            (self.cwd / name).write_bytes(CANARY_BYTES)
        return {
            "model": str(self.model), "mdir": str(self.mdir), "out": str(self.out), "outside": str(self.outside),
            "root": str(self.root), "cwd": str(self.cwd),
        }  # fmt: skip


Builder = Callable[[Layout], "dict[str, str] | None"]


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    build: Builder
    verbs: tuple[str, ...] = ALL_VERBS
    args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # per-verb argument template (replaces default)
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # per-verb arguments appended to the default
    slow: bool = False

    def argv(self, verb: str) -> tuple[str, ...]:
        base = self.args.get(verb, VERB_ARGS[verb])
        return (verb, *base, *self.extra.get(verb, ()))


@dataclass(frozen=True)
class Run:
    case: Case
    verb: str

    @property
    def id(self) -> str:
        return f"{self.case.id}::{self.verb}"

    @property
    def category(self) -> str:
        return self.case.category

    def argv_template(self) -> tuple[str, ...]:
        return self.case.argv(self.verb)


# ------------------------------------------------------------------------------------------------- model builders


def _vi(name: str, dims, elem=T.FLOAT):
    return h.make_tensor_value_info(name, elem, list(dims))


def _model(graph, functions=(), opset: int = 17) -> onnx.ModelProto:
    opsets = [h.make_opsetid("", opset)]
    if functions:
        opsets.append(h.make_opsetid("local", 1))
    m = h.make_model(graph, opset_imports=opsets, functions=list(functions), producer_name="onnxdeploy-fuzz")
    m.ir_version = 8
    return m


def _weights(n: int = 16, shape=(4, 4), name: str = "w") -> onnx.TensorProto:
    return nh.from_array(np.linspace(-1, 1, n, dtype=np.float32).reshape(shape), name)


def tiny(w: onnx.TensorProto | None = None, dims=("batch", 4)) -> onnx.ModelProto:
    """x[batch, 4] @ w[4, 4] -> Relu -> z, and w itself as a second output (so w's bytes reach every output)."""
    w = w if w is not None else _weights()
    nodes = [h.make_node("MatMul", ["x", "w"], ["y"], name="matmul"), h.make_node("Relu", ["y"], ["z"], name="relu"),
             h.make_node("Identity", ["w"], ["w_copy"], name="copy")]  # fmt: skip
    outputs = [_vi("z", dims), _vi("w_copy", [4, 4])]
    return _model(h.make_graph(nodes, "fuzz", [_vi("x", dims)], outputs, [w]))


def _externalize(t: onnx.TensorProto, location, offset=None, length=None) -> onnx.TensorProto:
    for f in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "string_data", "uint64_data"):
        t.ClearField(f)
    t.data_location = T.EXTERNAL
    del t.external_data[:]
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        if value is not None:
            e = t.external_data.add()
            e.key, e.value = key, str(value)
    return t


def ext_tensor(name="w", location="w.data", offset=None, length=None, shape=(4, 4), dtype=None) -> onnx.TensorProto:
    t = _weights(int(np.prod(shape)), shape, name)
    _externalize(t, location, offset, length)
    if dtype is not None:
        t.data_type = dtype
    return t


def save(m: onnx.ModelProto, path: Path) -> None:
    path.write_bytes(m.SerializeToString())


def _good_data(path: Path, n: int = 16) -> None:
    path.write_bytes(np.linspace(-1, 1, n, dtype=np.float32).tobytes())


# --------------------------------------------------------------------------------------- malicious external data


def _ext_case(location, setup=None, offset=None, length=None, dtype=None) -> Builder:
    def build(L: Layout):
        if setup:
            setup(L)
        loc = location(L) if callable(location) else location
        save(tiny(ext_tensor("w", loc, offset, length, dtype=dtype)), L.model)

    return build


def _symlink(target, link: Path) -> None:
    os.symlink(target, link)


def _socket_at(path: Path) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(str(path))
    finally:
        s.close()


def _padded_data(L: Layout) -> None:
    (L.mdir / "w.data").write_bytes(b"\0" * 64 + np.linspace(-1, 1, 16, dtype=np.float32).tobytes())


def external_data_cases() -> list[Case]:
    c = "external-data"
    good = lambda L: _good_data(L.mdir / "w.data")  # noqa: E731
    specs = {
        "valid": ("w.data", good, {}),
        "valid-offset": ("w.data", _padded_data, {"offset": 64, "length": 64}),
        "absolute": (lambda L: str(L.outside / "secret.bin"), None, {}),
        "dotdot": ("../outside/secret.bin", None, {}),
        "dotdot-inner": ("sub/../../outside/secret.bin", lambda L: (L.mdir / "sub").mkdir(), {}),
        "symlink-file": ("w.data", lambda L: _symlink("../outside/secret.bin", L.mdir / "w.data"), {}),
        "symlink-dir": ("sub/secret.bin", lambda L: _symlink("../outside", L.mdir / "sub"), {}),
        "symlink-absolute": ("w.data", lambda L: _symlink(str(L.outside / "secret.bin"), L.mdir / "w.data"), {}),
        "hardlink": ("w.data", lambda L: os.link(L.outside / "secret.bin", L.mdir / "w.data"), {}),
        "dev-zero": ("/dev/zero", None, {}),
        "dev-urandom-symlink": ("w.data", lambda L: _symlink("/dev/urandom", L.mdir / "w.data"), {}),
        "fifo": ("w.data", lambda L: os.mkfifo(L.mdir / "w.data"), {}),
        "socket": ("w.data", lambda L: _socket_at(L.mdir / "w.data"), {}),
        "directory": ("w.data", lambda L: (L.mdir / "w.data").mkdir(), {}),
        "symlink-loop": ("w.data", lambda L: _symlink("w.data", L.mdir / "w.data"), {}),
        "missing": ("w.data", None, {}),  # present only in the cwd (a canary)
        "too-short": ("w.data", lambda L: (L.mdir / "w.data").write_bytes(b"\1" * 10), {}),
        "huge-offset": ("w.data", good, {"offset": 10**15}),
        "huge-length": ("w.data", good, {"length": 10**15}),
        "negative-offset": ("w.data", good, {"offset": -64}),
        "length-mismatch": ("w.data", good, {"length": 8}),
        "empty-length": ("w.data", good, {"length": ""}),
        "non-numeric-length": ("w.data", good, {"length": "sixty-four"}),
        "non-numeric-offset": ("w.data", good, {"offset": "0x40"}),
        "long-name": ("a" * 300, None, {}),
        "long-path": ("/".join(["d" * 200] * 25) + "/w.data", None, {}),
        "empty-location": ("", None, {}),
        "dot-location": (".", None, {}),
        "nul-location": ("w.data\x00../../outside/secret.bin", good, {}),
        "string-dtype": ("w.data", good, {"dtype": T.STRING}),
        "undefined-dtype": ("w.data", good, {"dtype": T.UNDEFINED}),
    }
    cases = []
    for name, (loc, setup, kw) in specs.items():
        cases.append(Case(f"ext-{name}", c, _ext_case(loc, setup, **kw)))

    def no_location(L: Layout):
        t = _weights()
        t.ClearField("raw_data")
        t.data_location = T.EXTERNAL
        e = t.external_data.add()
        e.key, e.value = "length", "64"
        save(tiny(t), L.model)

    cases.append(Case("ext-no-location-key", c, no_location))
    return cases


# ------------------------------------------------------------------------ external tensors wherever a tensor lives


def _c_ext(location: str) -> onnx.TensorProto:
    return ext_tensor("c", location, shape=(4,))


def _sparse(location: str) -> onnx.SparseTensorProto:
    values = ext_tensor("c", location, shape=(2,))
    indices = nh.from_array(np.array([0, 2], dtype=np.int64), "c_indices")
    return h.make_sparse_tensor(values, indices, [4])


def _const(out: str, location: str, name="const") -> onnx.NodeProto:
    return h.make_node("Constant", [], [out], name=name, value=_c_ext(location))


def _place_graph(place: str, loc: str) -> onnx.ModelProto:
    x, z = _vi("x", [4]), _vi("z", [4])
    add = _plus_c("x", "c", "z")
    if place == "sparse-initializer":
        g = h.make_graph(add, "g", [x], [z], sparse_initializer=[_sparse(loc)])
        return _model(g)
    if place == "constant-value":
        return _model(h.make_graph([_const("c", loc), *add], "g", [x], [z]))
    if place == "constant-sparse-value":
        node = h.make_node("Constant", [], ["c"], name="const", sparse_value=_sparse(loc))
        return _model(h.make_graph([node, *add], "g", [x], [z]))
    if place == "tensor-attribute":  # ConstantOfShape's value attribute
        shape = h.make_node("Constant", [], ["s"], name="shape", value=nh.from_array(np.array([4], np.int64)))
        node = h.make_node("ConstantOfShape", ["s"], ["c"], name="cos", value=ext_tensor("v", loc, shape=(1,)))
        return _model(h.make_graph([shape, node, *add], "g", [x], [z]))
    if place == "if-branch":
        return _model(h.make_graph([_true("flag"), _if("flag", loc, "c"), *add], "g", [x], [z]))
    if place == "if-branch-initializer":
        then = h.make_graph([h.make_node("Identity", ["c_init"], ["t"])], "then", [], [_vi("t", [4])],
                            [_rename(_c_ext(loc), "c_init")])  # fmt: skip
        other = h.make_graph([h.make_node("Identity", ["x"], ["e"])], "else", [], [_vi("e", [4])])
        node = h.make_node("If", ["flag"], ["c"], name="if", then_branch=then, else_branch=other)
        return _model(h.make_graph([_true("flag"), node, *add], "g", [x], [z]))
    if place == "loop-body":
        return _model(h.make_graph(_loop_nodes(loc, "x", "z"), "g", [x], [z]))
    if place == "scan-body":
        body = h.make_graph(
            [_const("c", loc), *_plus_c("s_in", "c", "s_out", "s"), *_plus_c("x_in", "c", "y", "y")],
            "body", [_vi("s_in", [4]), _vi("x_in", [4])], [_vi("s_out", [4]), _vi("y", [4])],
        )  # fmt: skip
        xs = _vi("xs", [2, 4])
        node = h.make_node("Scan", ["x", "xs"], ["z", "ys"], name="scan", body=body, num_scan_inputs=1)
        return _model(h.make_graph([node], "g", [x, xs], [z, _vi("ys", [2, 4])]))
    if place in ("function", "function-if", "function-loop-if"):
        if place == "function":
            body = [_const("c", loc), *_plus_c("X", "c", "Y")]
            fn_inputs = ["X"]
        elif place == "function-if":
            body = [_if("F", loc, "c"), *_plus_c("X", "c", "Y")]
            fn_inputs = ["X", "F"]
        else:
            body = _loop_nodes(loc, "X", "Y", inner_if=True)
            fn_inputs = ["X", "F"]
        fn = h.make_function("local", "AddC", fn_inputs, ["Y"], body, [h.make_opsetid("", 17)])
        inputs = ["x"] + (["flag"] if len(fn_inputs) == 2 else [])
        node = h.make_node("AddC", inputs, ["z"], name="addc", domain="local")
        nodes = ([_true("flag")] if len(fn_inputs) == 2 else []) + [node]
        return _model(h.make_graph(nodes, "g", [x], [z]), functions=[fn])
    raise ValueError(place)


def _true(name: str) -> onnx.NodeProto:
    return h.make_node("Constant", [], [name], name=f"{name}_const", value=nh.from_array(np.array(True)))


def _plus_c(x: str, c: str, out: str, tag: str = "") -> list[onnx.NodeProto]:
    """out = x * 0 + c: exactly c (the canary's bytes, if c came from outside), whatever x is."""
    zero = nh.from_array(np.zeros(1, np.float32), f"zero{tag}")
    return [h.make_node("Constant", [], [f"zero{tag}"], value=zero),
            h.make_node("Mul", [x, f"zero{tag}"], [f"x0{tag}"]),
            h.make_node("Add", [f"x0{tag}", c], [out])]  # fmt: skip


def _rename(t: onnx.TensorProto, name: str) -> onnx.TensorProto:
    t.name = name
    return t


def _if(cond: str, loc: str, out: str) -> onnx.NodeProto:
    then = h.make_graph([_const("t", loc, "then_const")], "then", [], [_vi("t", [4])])
    zeros = nh.from_array(np.zeros(4, np.float32), "zeros")
    other = h.make_graph([h.make_node("Constant", [], ["e"], value=zeros)], "else", [], [_vi("e", [4])])
    return h.make_node("If", [cond], [out], name="if", then_branch=then, else_branch=other)


def _loop_nodes(loc: str, x: str, out: str, inner_if: bool = False) -> list[onnx.NodeProto]:
    if inner_if:
        inner = [_true("flag_in"), _if("flag_in", loc, "c")]
    else:
        inner = [_const("c", loc)]
    body = h.make_graph(
        inner + [*_plus_c("v_in", "c", "v_out"), h.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [_vi("i", [], T.INT64), _vi("cond_in", [], T.BOOL), _vi("v_in", [4])],
        [_vi("cond_out", [], T.BOOL), _vi("v_out", [4])],
    )  # fmt: skip
    m = h.make_node("Constant", [], ["M"], value=nh.from_array(np.array(1, np.int64)))
    cond = h.make_node("Constant", [], ["cond"], value=nh.from_array(np.array(True)))
    return [m, cond, h.make_node("Loop", ["M", "cond", x], [out], name="loop", body=body)]


PLACES = (
    "sparse-initializer", "constant-value", "constant-sparse-value", "tensor-attribute", "if-branch",
    "if-branch-initializer", "loop-body", "scan-body", "function", "function-if", "function-loop-if",
)  # fmt: skip


def tensor_place_cases() -> list[Case]:
    """Every place a tensor lives, three ways: escaping the folder, present only in the cwd, and valid."""
    cases = []
    for place in PLACES:
        for flavour, loc in (("escape", "../outside/secret.bin"), ("cwd-only", "c.data"), ("valid", "c.data")):

            def build(L: Layout, place=place, loc=loc, flavour=flavour):
                if flavour == "valid":
                    _good_data(L.mdir / "c.data", 4)
                save(_place_graph(place, loc), L.model)

            cases.append(Case(f"place-{place}-{flavour}", "tensor-places", build))
    return cases


# ------------------------------------------------------------------------------------------ malformed protobufs


def _valid_bytes() -> bytes:
    return tiny().SerializeToString()


def _nested_if(depth: int, cond: str = "flag") -> onnx.ModelProto:
    """If nested `depth` deep, each then-branch holding the next If; the innermost adds 1 to x."""
    one = nh.from_array(np.ones(4, np.float32), "one")
    inner_then = h.make_graph([h.make_node("Constant", [], ["one_c"], value=one),
                               h.make_node("Add", ["x", "one_c"], ["r0"])], "then0", [], [_vi("r0", [4])])  # fmt: skip
    for level in range(1, depth + 1):
        identity = h.make_node("Identity", ["x"], [f"e{level}"])
        other = h.make_graph([identity], f"else{level}", [], [_vi(f"e{level}", [4])])
        node = h.make_node("If", [cond], [f"r{level}"], name=f"if{level}", then_branch=inner_then, else_branch=other)
        inner_then = h.make_graph([node], f"then{level}", [], [_vi(f"r{level}", [4])])
    outer = inner_then.node[0]
    outer.output[0] = "z"
    return _model(h.make_graph([outer], "nested", [_vi("x", [4]), _vi(cond, [], T.BOOL)], [_vi("z", [4])]))


def _field(num: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    key, n, length = num << 3 | 2, len(payload), b""
    while True:
        byte, n = n & 0x7F, n >> 7
        length += bytes([byte | (0x80 if n else 0)])
        if not n:
            break
    return _varint(key) + length + payload


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _nested_if_bytes(depth: int) -> bytes:
    """A model with If nested `depth` deep, written on the wire directly (onnx's protobuf refuses to build it)."""
    vi = _vi("r", [4]).SerializeToString()
    other = _field(1, h.make_node("Identity", ["x"], ["r"]).SerializeToString()) + _field(2, b"else") + _field(12, vi)
    graph = other
    for level in range(depth):
        attrs = b"".join(
            _field(5, _field(1, name) + _field(6, g) + _varint(20 << 3) + _varint(5))
            for name, g in ((b"then_branch", graph), (b"else_branch", other))
        )
        node = _field(1, b"flag") + _field(2, b"r") + _field(4, b"If") + attrs
        graph = _field(1, node) + _field(2, b"g%d" % level) + _field(12, vi)
    graph += _field(11, _vi("x", [4]).SerializeToString()) + _field(11, _vi("flag", [], T.BOOL).SerializeToString())
    head = _model(h.make_graph([], "g", [], [])).SerializeToString()
    m = onnx.ModelProto()
    m.ParseFromString(head)
    m.ClearField("graph")
    return m.SerializeToString() + _field(7, graph)


def malformed_cases(seed: int) -> list[Case]:
    c = "malformed-protobuf"
    rng = random.Random(f"{seed}:malformed")
    rand = bytes(rng.getrandbits(8) for _ in range(1024))
    valid = _valid_bytes()

    def writer(data: bytes) -> Builder:
        return lambda L: L.model.write_bytes(data)

    def deep(L: Layout):
        L.model.write_bytes(_nested_if_bytes(120))

    return [
        Case("proto-truncated-half", c, writer(valid[: len(valid) // 2])),
        Case("proto-truncated-1", c, writer(valid[:-1])),
        Case("proto-random-bytes", c, writer(rand)),
        Case("proto-empty-file", c, writer(b"")),
        Case("proto-garbage-appended", c, writer(valid + rand[:64])),
        Case("proto-huge-length-prefix", c, writer(b"\x3a\xff\xff\xff\xff\x0f" + valid)),
        Case("proto-text-file", c, writer(b"this is not a model\n" * 10)),
        Case("proto-npz-as-model", c, lambda L: np.savez(L.model.with_suffix(".npz"), x=np.zeros(3)) or  # noqa
             os.replace(L.model.with_suffix(".npz"), L.model)),  # fmt: skip
        Case("proto-nested-120", c, deep),
    ]


# ------------------------------------------------------------------------------------------------------ names

_PLACEHOLDER = b"QQNAMEQQ"
_INVALID = b"\xff\xfeQ\xc3(Q\xed\xa0"  # same length: the protobuf lengths stay right


def _named(name: str, where: str) -> onnx.ModelProto:
    m = tiny()
    if where == "node":
        m.graph.node[0].name = name
    elif where == "input":
        m.graph.input[0].name = name
        m.graph.node[0].input[0] = name
    elif where == "output":
        m.graph.output[0].name = name
        m.graph.node[1].output[0] = name
    elif where == "initializer":
        m.graph.initializer[0].name = name
        m.graph.node[0].input[1] = name
        m.graph.node[2].input[0] = name
    return m


def name_cases() -> list[Case]:
    cases = []
    for where in ("node", "input", "output", "initializer"):

        def build(L: Layout, where=where):
            data = _named(_PLACEHOLDER.decode(), where).SerializeToString()
            L.model.write_bytes(data.replace(_PLACEHOLDER, _INVALID))

        cases.append(Case(f"name-invalid-utf8-{where}", "invalid-utf8-names", build))
    markup = {"node": "[/red]", "input": "[bold red]x[/]", "output": "[/]", "initializer": "[link=file:///etc]w[/link]"}
    for where, name in markup.items():
        cases.append(Case(f"name-markup-{where}", "markup-names",
                          lambda L, where=where, name=name: save(_named(name, where), L.model)))  # fmt: skip
    odd = {"ansi": "\x1b[2J\x1b[31mred", "path": "../../../outside/evil", "empty-node": "", "long": "n" * 5000}
    for label, name in odd.items():
        where = "node" if label in ("empty-node", "ansi") else "output"
        cases.append(Case(f"name-{label}", "markup-names",
                          lambda L, where=where, name=name: save(_named(name, where), L.model)))  # fmt: skip
    return cases


# ------------------------------------------------------------------------------------------------ bounded work


def _loop_bomb(trip: int) -> onnx.ModelProto:
    body = h.make_graph(
        [h.make_node("Constant", [], ["one"], value=nh.from_array(np.ones(4, np.float32))),
         h.make_node("Add", ["v_in", "one"], ["v_out"]), h.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [_vi("i", [], T.INT64), _vi("cond_in", [], T.BOOL), _vi("v_in", [4])],
        [_vi("cond_out", [], T.BOOL), _vi("v_out", [4])],
    )  # fmt: skip
    inits = [nh.from_array(np.array(trip, np.int64), "M"), nh.from_array(np.array(True), "cond"),
             nh.from_array(np.zeros(4, np.float32), "v0")]  # fmt: skip
    nodes = [h.make_node("Loop", ["M", "cond", "v0"], ["v"], name="loop", body=body),
             h.make_node("Add", ["x", "v"], ["z"], name="add")]  # fmt: skip
    return _model(h.make_graph(nodes, "loop_bomb", [_vi("x", [4])], [_vi("z", [4])], inits))


def _fold_huge() -> onnx.ModelProto:
    inits = [nh.from_array(np.ones(1, np.float32), "one"), nh.from_array(np.array([10**6, 10**6], np.int64), "shape")]
    nodes = [h.make_node("Expand", ["one", "shape"], ["big"], name="expand"),
             h.make_node("ReduceSum", ["big"], ["s"], name="sum", keepdims=0),
             h.make_node("Add", ["x", "s"], ["z"], name="add")]  # fmt: skip
    return _model(h.make_graph(nodes, "fold_huge", [_vi("x", [4])], [_vi("z", [4])], inits))


def _chain(n: int) -> onnx.ModelProto:
    nodes = [h.make_node("Relu", [f"t{i}" if i else "x"], [f"t{i + 1}" if i + 1 < n else "z"], name=f"relu{i}")
             for i in range(n)]  # fmt: skip
    return _model(h.make_graph(nodes, "chain", [_vi("x", [1, 4])], [_vi("z", [1, 4])]))


def bounded_work_cases() -> list[Case]:
    c = "bounded-work"
    return [
        Case("work-loop-1e12", c, lambda L: save(_loop_bomb(10**12), L.model)),
        Case("work-if-nested-30", c, lambda L: save(_nested_if(30), L.model)),
        Case("work-fold-4tb", c, lambda L: save(_fold_huge(), L.model)),
        Case("work-dims-1e12", c, lambda L: save(tiny(dims=(10**12, 4)), L.model)),
        Case("work-dims-2e31", c, lambda L: save(tiny(dims=(2**31, 4)), L.model)),
        Case("work-chain-100k", c, lambda L: save(_chain(100_000), L.model), slow=True),
    ]


# ------------------------------------------------------------------------------------------------- model paths


def model_path_cases() -> list[Case]:
    c = "model-path"

    def at(path_fn, setup=None) -> Builder:
        def build(L: Layout):
            if setup:
                setup(L)
            return {"model": str(path_fn(L))}

        return build

    def loop(L: Layout):
        _symlink("loop.onnx", L.model)
        _symlink("model.onnx", L.mdir / "loop.onnx")

    return [
        Case("path-fifo", c, at(lambda L: L.model, lambda L: os.mkfifo(L.model))),
        Case("path-dev-zero", c, at(lambda L: "/dev/zero")),
        Case("path-dev-urandom", c, at(lambda L: "/dev/urandom")),
        Case("path-directory", c, at(lambda L: L.model, lambda L: L.model.mkdir())),
        Case("path-symlink-loop", c, at(lambda L: L.model, loop)),
        Case("path-dangling-symlink", c, at(lambda L: L.model, lambda L: _symlink("nowhere.onnx", L.model))),
        Case("path-socket", c, at(lambda L: L.model, lambda L: _socket_at(L.model))),
        Case("path-missing", c, at(lambda L: L.mdir / "missing.onnx")),
        Case("path-long-name", c, at(lambda L: L.mdir / ("m" * 300 + ".onnx"))),
        Case("path-markup", c, at(lambda L: L.mdir / "[red]m[bold].onnx",
                                  lambda L: save(tiny(), L.mdir / "[red]m[bold].onnx"))),  # fmt: skip
        Case("path-proc-self-environ", c, at(lambda L: "/proc/self/environ")),
    ]


# ----------------------------------------------------------------------------------------------- input files


class _Pickled:
    """Unpickling this creates the PWNED file in the current directory."""

    def __reduce__(self):
        return (open, (PWNED, "w"))


def input_file_cases(seed: int) -> list[Case]:
    c = "input-files"
    rng = random.Random(f"{seed}:inputs")
    rand = bytes(rng.getrandbits(8) for _ in range(512))

    def model_then(write) -> Builder:
        def build(L: Layout):
            save(tiny(dims=(1, 4)), L.model)
            write(L)

        return build

    def npz_pickle(L: Layout):
        arr = np.empty(1, dtype=object)
        arr[0] = _Pickled()
        np.savez(L.mdir / "in.npz", x=arr)

    def npz_bad_member(L: Layout):
        with zipfile.ZipFile(L.mdir / "in.npz", "w") as z:
            z.writestr("x.npy", b"\x93NUMPY\x01\x00" + rand[:100])

    def pb_huge(L: Layout):
        t = onnx.TensorProto(name="x", data_type=T.FLOAT, dims=[10**12, 4])
        (L.mdir / "in.pb").write_bytes(t.SerializeToString())

    def tds_corrupt(L: Layout):
        (L.mdir / "test_data_set_0").mkdir()
        (L.mdir / "test_data_set_0" / "input_0.pb").write_bytes(rand)

    npz, pb, tds = "{mdir}/in.npz", "{mdir}/in.pb", "{mdir}/test_data_set_0"
    specs = {
        "npz-random": (lambda L: (L.mdir / "in.npz").write_bytes(rand), npz),
        "npz-pickle": (npz_pickle, npz),
        "npz-bad-member": (npz_bad_member, npz),
        "npz-wrong-shape": (lambda L: np.savez(L.mdir / "in.npz", x=np.ones((3, 3))), npz),
        "npz-wrong-name": (lambda L: np.savez(L.mdir / "in.npz", nope=np.ones((1, 4), np.float32)), npz),
        "npz-fifo": (lambda L: os.mkfifo(L.mdir / "in.npz"), npz),
        "pb-random": (lambda L: (L.mdir / "in.pb").write_bytes(rand), "x=" + pb),
        "pb-huge-dims": (pb_huge, "x=" + pb),
        "npy-random": (lambda L: (L.mdir / "in.npy").write_bytes(rand), "x={mdir}/in.npy"),
        "npy-dev-zero": (lambda L: None, "x=/dev/zero"),
        "test-data-set-corrupt": (tds_corrupt, tds),
    }
    cases = []
    for name, (write, ref) in specs.items():
        single = "=" in ref
        extra = {}
        for verb in INPUT_VERBS:
            if verb == "quantize":
                if single:
                    continue
                extra[verb] = ("-c", ref)
            else:
                extra[verb] = ("-i", ref) if single else ("--inputs", ref)
        cases.append(Case(f"input-{name}", c, model_then(write), verbs=tuple(extra), extra=extra))
    return cases


# ----------------------------------------------------------------------------------------------------- recipes

_ALIAS_BOMB = "\n".join(
    ["a: &a [" + ",".join(["lol"] * 10) + "]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10) + "]" for i in range(9)]
    + ["edits: *j"]
)


def recipe_cases() -> list[Case]:
    c = "recipes"
    recipes = {
        "alias-bomb": _ALIAS_BOMB,
        "python-tag": f"- !!python/object/apply:os.system ['touch {PWNED}']\n",
        "python-name": "- !!python/name:os.system\n",
        "invalid-yaml": "- delete_node: [unclosed\n",
        "mapping": "delete_node: relu\n",
        "unknown-edit": "- explode: relu\n",
        "unknown-node": "- delete_node: no_such_node\n",
        "markup": "- delete_node: '[/red]'\n",
        "huge": "- rename: {" + ", ".join(f"a{i}: b{i}" for i in range(200_000)) + "}\n",
    }
    cases = []
    for name, text in recipes.items():

        def build(L: Layout, text=text):
            save(tiny(), L.model)
            (L.mdir / "recipe.yaml").write_text(text)

        args = {"edit": ("{model}", "-o", "{out}/edited.onnx", "--recipe", "{mdir}/recipe.yaml")}
        cases.append(Case(f"recipe-{name}", c, build, verbs=("edit",), args=args))
    for name, path, setup in (("fifo", "{mdir}/recipe.yaml", lambda L: os.mkfifo(L.mdir / "recipe.yaml")),
                              ("dev-zero", "/dev/zero", None)):  # fmt: skip

        def build(L: Layout, setup=setup):
            save(tiny(), L.model)
            if setup:
                setup(L)

        cases.append(Case(f"recipe-{name}", c, build, verbs=("edit",),
                          args={"edit": ("{model}", "-o", "{out}/edited.onnx", "--recipe", path)}))  # fmt: skip
    return cases


# ------------------------------------------------------------------------------------------------ output paths

_OUT_EXT = {"run": ".npz", "probe": ".npz", "render": ".svg", "bench": ".svg"}


def _with_output(verb: str, path: str) -> tuple[str, ...]:
    """The verb's default arguments with its output replaced by `path` (bench: --profile --svg PATH)."""
    if verb == "bench":
        return ("{model}", "-n", "2", "--warmup", "1", "--profile", "--svg", path)
    args = list(VERB_ARGS[verb])
    i = args.index("-o")
    args[i + 1] = path
    return tuple(args)


def output_path_cases() -> list[Case]:
    c = "output-paths"

    def ext_model(L: Layout):
        _good_data(L.mdir / "w.data")
        save(tiny(ext_tensor("w", "w.data")), L.model)

    def companion(L: Layout):
        ext_model(L)
        _good_data(L.mdir / "out.onnx.data")
        save(tiny(ext_tensor("w", "out.onnx.data")), L.mdir / "other.onnx")

    def markup_dir(L: Layout):
        ext_model(L)
        (L.out / "[").mkdir()

    def symlink_out(L: Layout):
        ext_model(L)
        _symlink("../model/model.onnx", L.out / "link.onnx")

    def previous(L: Layout):
        ext_model(L)
        (L.out / "prev.onnx").write_bytes(b"previous result")

    specs = {
        "is-input": (ext_model, lambda v: "{model}"),
        "is-data-file": (ext_model, lambda v: "{mdir}/w.data"),
        "alias": (ext_model, lambda v: "{mdir}/../model/./model.onnx"),
        "relative-alias": (ext_model, lambda v: "../model/model.onnx"),
        "companion-data": (companion, lambda v: "{mdir}/out.onnx" if v not in _OUT_EXT else "{mdir}/out.onnx.data"),
        "proc": (ext_model, lambda v: "/proc/fuzz/out" + _OUT_EXT.get(v, ".onnx")),
        "read-only": (ext_model, lambda v: "/sys/fuzz-out" + _OUT_EXT.get(v, ".onnx")),
        "markup": (markup_dir, lambda v: "{out}/[/x]" + _OUT_EXT.get(v, ".onnx")),
        "too-long": (ext_model, lambda v: "{out}/" + "o" * 300 + _OUT_EXT.get(v, ".onnx")),
        "directory": (ext_model, lambda v: "{out}"),
        "parent-is-file": (ext_model, lambda v: "{model}/x" + _OUT_EXT.get(v, ".onnx")),
        "symlink-to-input": (symlink_out, lambda v: "{out}/link.onnx"),
        "previous-kept": (previous, lambda v: "{out}/prev.onnx"),
    }
    cases = []
    for name, (setup, path) in specs.items():
        args = {verb: _with_output(verb, path(verb)) for verb in OUTPUT_VERBS}
        cases.append(Case(f"out-{name}", c, setup, verbs=OUTPUT_VERBS, args=args))
    recipe_args = {"edit": ("{model}", "-o", "{out}/edited.onnx", "--rename", "z=zz", "--save-recipe", "{model}")}
    cases.append(Case("out-save-recipe-is-input", c, ext_model, verbs=("edit",), args=recipe_args))
    return cases


# ------------------------------------------------------------------------------------------- command-line values


def cli_arg_cases() -> list[Case]:
    c = "cli-args"
    specs = {
        "dim-superscript": ("--dim", "batch=²"),
        "dim-arabic-indic": ("--dim", "batch=٣"),
        "dim-huge": ("--dim", "batch=1000000000000"),
        "dim-negative": ("--dim", "batch=-1"),
        "dim-zero": ("--dim", "batch=0"),
        "dim-markup": ("--dim", "[/red]=1"),
        "dim-empty": ("--dim", "="),
    }
    cases = []
    for name, extra_args in specs.items():
        cases.append(Case(f"arg-{name}", c, lambda L: save(tiny(), L.model), verbs=DIM_VERBS,
                          extra={v: extra_args for v in DIM_VERBS}))  # fmt: skip
    shape_verbs = ("run", "probe", "bench", "quantize", "compare")
    cases.append(Case("arg-shape-huge", c, lambda L: save(tiny(), L.model), verbs=shape_verbs,
                      extra={v: ("--shape", "x=100000x100000") for v in shape_verbs}))  # fmt: skip
    return cases


def baseline_cases() -> list[Case]:
    def ext(L: Layout):
        _good_data(L.mdir / "w.data")
        save(tiny(ext_tensor("w", "w.data")), L.model)

    return [
        Case("baseline-inline", "baseline", lambda L: save(tiny(), L.model)),
        Case("baseline-external", "baseline", ext),
    ]


# ------------------------------------------------------------------------------- mutations of backend test models


def backend_models(max_bytes: int = 256_000) -> list[Path]:
    """onnx's backend test models (node/ when the wheel ships it, else simple/pytorch-*/real), small ones only."""
    data = Path(onnx.__file__).parent / "backend" / "test" / "data"
    folders = ["node"] if (data / "node").is_dir() else ["simple", "pytorch-operator", "pytorch-converted", "real"]
    models = [p for f in folders for p in sorted((data / f).glob("*/model.onnx")) if p.stat().st_size <= max_bytes]
    return models


MUTATIONS = (
    "flip-bytes", "truncate", "dims", "dtype", "attribute", "drop-input", "rename", "duplicate", "opset",
    "test-data", "drop-initializer", "op-type", "external",
)  # fmt: skip


def _mutate(m: onnx.ModelProto, op: str, rng: random.Random, L: Layout) -> onnx.ModelProto | bytes:
    g = m.graph
    if op in ("flip-bytes", "truncate"):
        data = bytearray(m.SerializeToString())
        if not data:
            return bytes(data)
        if op == "truncate":
            return bytes(data[: rng.randrange(len(data))])
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        return bytes(data)
    if op == "dims":
        vis = [*g.input, *g.output, *g.value_info]
        values = [0, -1, 10**12, 2**31, 2**63 - 1, rng.randint(2, 100)]
        if vis and rng.random() < 0.7:
            vi = rng.choice(vis)
            dims = vi.type.tensor_type.shape.dim
            if len(dims):
                d = dims[rng.randrange(len(dims))]
                if rng.random() < 0.2:
                    d.dim_param = rng.choice(["N", "[/red]", ""])
                else:
                    d.dim_value = rng.choice(values)
            else:
                vi.type.tensor_type.shape.dim.add().dim_value = rng.choice(values)
        elif g.initializer:
            t = rng.choice(g.initializer)
            if len(t.dims):
                t.dims[rng.randrange(len(t.dims))] = rng.choice(values)
            else:
                t.dims.append(rng.choice(values))
        return m
    if op == "dtype":
        elem = rng.randrange(0, 26)
        if g.initializer and rng.random() < 0.4:
            rng.choice(g.initializer).data_type = elem
        elif len(g.input) or len(g.output):
            vi = rng.choice([*g.input, *g.output])
            vi.type.tensor_type.elem_type = elem
        return m
    if op == "attribute":
        nodes = [n for n in _all_nodes(g) if n.attribute]
        if not nodes:
            return _mutate(m, "dims", rng, L)
        a = rng.choice(rng.choice(nodes).attribute)
        if a.type == onnx.AttributeProto.INT:
            a.i = rng.choice([-1, 0, 10**12, -(2**63), 2**63 - 1, 7])
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = rng.choice([float("nan"), float("inf"), -1e38, 0.0])
        elif a.type == onnx.AttributeProto.INTS:
            a.ints.extend([rng.choice([-1, 0, 10**9])])
        elif a.type == onnx.AttributeProto.STRING:
            a.s = rng.choice([b"", b"\xff\xfe", b"[/red]", b"x" * 1000])
        elif a.type == onnx.AttributeProto.TENSOR:
            a.t.data_type = rng.randrange(0, 26)
        else:
            a.type = rng.randrange(0, 15)
        return m
    if op == "drop-input":
        nodes = [n for n in g.node if n.input]
        if nodes:
            n = rng.choice(nodes)
            i = rng.randrange(len(n.input))
            if rng.random() < 0.5:
                del n.input[i]
            else:
                n.input[i] = ""
        elif len(g.input):
            del g.input[rng.randrange(len(g.input))]
        return m
    if op == "rename":
        nodes = [n for n in g.node if n.input or n.output]
        if nodes:
            n = rng.choice(nodes)
            field_ = n.input if (n.input and rng.random() < 0.5) or not n.output else n.output
            field_[rng.randrange(len(field_))] = rng.choice(["renamed", "[/red]", "", "x" * 300])
        return m
    if op == "duplicate":
        if g.node and rng.random() < 0.6:
            g.node.append(onnx.NodeProto.FromString(rng.choice(g.node).SerializeToString()))
        elif len(g.input):
            g.input.append(onnx.ValueInfoProto.FromString(g.input[0].SerializeToString()))
        return m
    if op == "opset":
        if m.opset_import:
            m.opset_import[0].version = rng.choice([0, 1, 6, 25, 9999])
        m.ir_version = rng.choice([m.ir_version, 0, 3, 99])
        return m
    if op == "test-data":
        pbs = sorted((L.mdir / "test_data_set_0").glob("*.pb"))
        if pbs:
            p = rng.choice(pbs)
            data = bytearray(p.read_bytes())
            if data and rng.random() < 0.5:
                for _ in range(rng.randint(1, 4)):
                    i = rng.randrange(len(data))
                    data[i] ^= 1 << rng.randrange(8)
            else:
                data = data[: rng.randrange(len(data) + 1)]
            p.write_bytes(bytes(data))
        return m
    if op == "drop-initializer":
        if g.initializer:
            del g.initializer[rng.randrange(len(g.initializer))]
        return m
    if op == "op-type":
        if g.node:
            n = rng.choice(g.node)
            choice = rng.random()
            if choice < 0.4:
                n.op_type = rng.choice(["NoSuchOp", "[/red]", "", "Loop", "If", "Conv"])
            elif choice < 0.7:
                n.domain = rng.choice(["com.evil", "ai.onnx.ml", "local"])
            else:
                n.attribute.append(h.make_attribute(rng.choice(["axis", "[/red]", "body"]), rng.choice([1, 2.0, "s"])))
        return m
    if op == "external":
        tensors = list(g.initializer)
        loc = rng.choice(["../outside/secret.bin", "w.data", "/dev/zero", "secret.bin", "a" * 300, ""])
        if tensors:
            t = rng.choice(tensors)
        else:
            t = nh.from_array(np.ones(4, np.float32), "extra_w")
            g.initializer.append(t)
        _externalize(t, loc, rng.choice([None, 0, 10**15]), rng.choice([None, "", 16]))
        return m
    raise ValueError(op)


def _all_nodes(g: onnx.GraphProto):
    for n in g.node:
        yield n
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(a.g)
            for sub in a.graphs:
                yield from _all_nodes(sub)


def mutation_cases(n: int, seed: int, verbs_per_case: int = 1) -> list[Case]:
    models = backend_models()
    if not models:
        return []
    cases = []
    for i in range(n):
        rng = random.Random(f"{seed}:mutation:{i}")
        src = models[rng.randrange(len(models))]
        op = MUTATIONS[i % len(MUTATIONS)]
        verbs = tuple(ALL_VERBS[(verbs_per_case * i + k) % len(ALL_VERBS)] for k in range(verbs_per_case))
        has_data = (src.parent / "test_data_set_0").is_dir()
        extra = {}
        if has_data:
            for verb in ("run", "probe", "compare", "optimize", "edit"):
                extra[verb] = ("--inputs", "{mdir}/test_data_set_0")

        def build(L: Layout, src=src, op=op, i=i):
            if (src.parent / "test_data_set_0").is_dir():
                shutil.copytree(src.parent / "test_data_set_0", L.mdir / "test_data_set_0")
            m = onnx.load(src, load_external_data=False)
            result = _mutate(m, op, random.Random(f"{seed}:mutate:{i}"), L)
            if isinstance(result, bytes):
                L.model.write_bytes(result)
            else:
                try:
                    data = result.SerializeToString()
                except Exception:  # noqa: BLE001 - an unserializable mutation: keep the original
                    data = src.read_bytes()
                L.model.write_bytes(data)

        name = f"mut-{i:04d}-{op}-{src.parent.name.removeprefix('test_')}"
        cases.append(Case(name, f"mutation/{op}", build, verbs=verbs, extra=extra))
    return cases


# ---------------------------------------------------------------------------------------------------- corpora


def hand_cases(seed: int = 0, slow: bool = True) -> list[Case]:
    cases = (
        baseline_cases() + external_data_cases() + tensor_place_cases() + malformed_cases(seed) + name_cases()
        + bounded_work_cases() + model_path_cases() + input_file_cases(seed) + recipe_cases()
        + output_path_cases() + cli_arg_cases()
    )  # fmt: skip
    return [c for c in cases if slow or not c.slow]


def full_runs(mutations: int = 500, seed: int = 0, slow: bool = True) -> list[Run]:
    """The whole corpus: every hand-written case with each verb it applies to, plus seeded backend mutations (one
    verb each, the verbs in turn)."""
    cases = hand_cases(seed, slow) + mutation_cases(mutations, seed)
    return [Run(case, verb) for case in cases for verb in case.verbs]


# The default sample: one or two runs per category with the cheap verbs (inspect/check/diff/render/run), the runs
# that hit each bug class of the issue at least once, and a handful of mutations.
SAMPLE = (
    ("baseline-external", "optimize"), ("baseline-inline", "run"),
    ("ext-absolute", "inspect"), ("ext-dotdot", "run"), ("ext-symlink-file", "run"), ("ext-missing", "run"),
    ("ext-fifo", "check"), ("ext-dev-zero", "diff"), ("ext-empty-length", "check"),
    ("ext-long-name", "inspect"), ("ext-string-dtype", "diff"), ("ext-undefined-dtype", "run"),
    ("place-sparse-initializer-escape", "run"), ("place-constant-value-cwd-only", "run"),
    ("place-if-branch-escape", "run"), ("place-loop-body-cwd-only", "run"), ("place-function-if-cwd-only", "run"),
    ("place-function-loop-if-escape", "diff"), ("place-tensor-attribute-escape", "run"),
    ("proto-truncated-half", "inspect"), ("proto-random-bytes", "check"),
    ("name-invalid-utf8-node", "inspect"), ("name-invalid-utf8-output", "render"), ("name-markup-node", "render"),
    ("work-loop-1e12", "check"), ("work-dims-1e12", "run"),
    ("path-fifo", "inspect"), ("path-dev-urandom", "inspect"), ("path-directory", "check"),
    ("path-symlink-loop", "inspect"),
    ("input-npz-random", "run"), ("input-npz-pickle", "run"),
    ("recipe-alias-bomb", "edit"), ("recipe-python-tag", "edit"),
    ("out-is-input", "render"), ("out-alias", "run"), ("out-is-data-file", "probe"), ("out-markup", "render"),
    ("out-proc", "run"), ("out-save-recipe-is-input", "edit"),
    ("arg-dim-superscript", "inspect"),
)  # fmt: skip
SAMPLE_MUTATIONS = 5


def sample_runs(seed: int = 0) -> list[Run]:
    by_id = {c.id: c for c in hand_cases(seed, slow=False)}
    runs = [Run(by_id[case_id], verb) for case_id, verb in SAMPLE]
    cheap = ("inspect", "check", "diff", "run")
    for i, case in enumerate(mutation_cases(SAMPLE_MUTATIONS, seed, verbs_per_case=1)):
        runs.append(Run(case, cheap[i % len(cheap)]))
    return runs
