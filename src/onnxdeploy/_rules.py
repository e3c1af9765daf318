"""Legalization rules as data: an operator a target lacks -> an equivalent composition of basic operators.

:data:`RULES` maps ``op`` (or ``domain::op``) to a :class:`Rule`; :func:`applicable_rule` picks the rule a target can
take, :func:`apply_rule` rewrites one node. ``check`` reads them to say what ``legalize`` can fix; ``legalize`` applies
them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from onnxdeploy.errors import UserInputError

if TYPE_CHECKING:
    import onnx_ir as ir

    from onnxdeploy.targets.base import Target


# ------------------------------------------------------------------------------------------------ rules
@dataclass(frozen=True)
class Rule:
    op: str
    describe: str
    uses: frozenset[str]
    build: Callable  # (B, node) -> output value
    domain: str = ""  # "com.microsoft": onnxruntime's contrib ops, e.g. in a model optimized for onnxruntime
    min_opset: int = 1  # the composition needs this default-domain opset (e.g. LayerNormalization: 17)

    @property
    def key(self) -> str:
        return f"{self.domain}::{self.op}" if self.domain else self.op


class _B:
    """Tiny builder over ``onnx_ir.tape.Tape``: constants take the dtype of the value they combine with."""

    def __init__(self, dtype) -> None:
        import onnx_ir as ir

        self.tape = ir.tape.Tape()
        self.np_dtype = dtype.numpy() if dtype is not None else np.float32

    def c(self, value: float):
        import onnx_ir as ir

        return self.tape.op("Constant", [], attributes={"value": ir.tensor(np.array(value, dtype=self.np_dtype))})

    def __getattr__(self, op: str):
        return lambda *inputs, **attrs: self.tape.op(op, list(inputs), attributes=attrs or None)


def _attr(node, name: str, default: float) -> float:
    a = node.attributes.get(name)
    return a.value if a is not None else default


def _softplus(b: _B, x):  # max(x, 0) + log(1 + exp(-|x|)): no overflow
    return b.Add(b.Max(x, b.c(0.0)), b.Log(b.Add(b.c(1.0), b.Exp(b.Neg(b.Abs(x))))))


def _gelu(b: _B, node):
    x = node.inputs[0]
    if node.attributes.get("approximate") is not None and node.attributes["approximate"].value == "tanh":
        return _gelu_tanh(b, x)
    return _gelu_erf(b, x)


def _gelu_erf(b: _B, x):
    return b.Mul(b.Mul(x, b.c(0.5)), b.Add(b.c(1.0), b.Erf(b.Div(x, b.c(math.sqrt(2.0))))))


def _gelu_tanh(b: _B, x):
    inner = b.Mul(b.c(math.sqrt(2.0 / math.pi)), b.Add(x, b.Mul(b.c(0.044715), b.Mul(x, b.Mul(x, x)))))
    return b.Mul(b.Mul(x, b.c(0.5)), b.Add(b.c(1.0), b.Tanh(inner)))


def _plus_optional(b: _B, x, *others):
    for other in others:
        if other is not None:
            x = b.Add(x, other)
    return x


def _input(node, i: int):
    return node.inputs[i] if len(node.inputs) > i else None


def _skip_layer_norm(b: _B, node):
    """SkipLayerNormalization(input, skip, gamma, beta?, bias?) -> LayerNormalization(input + skip + bias)."""
    summed = _plus_optional(b, b.Add(node.inputs[0], node.inputs[1]), _input(node, 4))
    gamma, beta = node.inputs[2], _input(node, 3)
    return b.LayerNormalization(*([summed, gamma] + ([beta] if beta is not None else [])), axis=-1,
                                epsilon=_attr(node, "epsilon", 1e-12))


_FUSED_ACTIVATIONS = {"Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "HardSigmoid"}


def _fused_conv(b: _B, node):
    """FusedConv(X, W, B?, Z?) = activation(Conv(X, W, B) + Z), the activation named by an attribute."""
    attrs = {k: a.value for k, a in node.attributes.items() if k not in ("activation", "activation_params")}
    conv = b.Conv(*[v for v in node.inputs[:3] if v is not None], **attrs)
    y = _plus_optional(b, conv, _input(node, 3))
    act = node.attributes["activation"].value if "activation" in node.attributes else "Relu"
    params = list(node.attributes["activation_params"].value) if "activation_params" in node.attributes else []
    if act == "LeakyRelu":
        return b.LeakyRelu(y, alpha=params[0] if params else 0.01)
    if act == "HardSigmoid":
        return b.HardSigmoid(y, alpha=params[0] if params else 0.2, beta=params[1] if len(params) > 1 else 0.5)
    if act == "Clip":
        return b.Clip(y, b.c(params[0]), b.c(params[1]))
    if act not in _FUSED_ACTIVATIONS:
        raise UserInputError(f"FusedConv {node.name!r}: unknown activation {act!r}")
    return getattr(b, act)(y)


def _hardsigmoid(b: _B, x, alpha: float, beta: float):
    return b.Max(b.Min(b.Add(b.Mul(x, b.c(alpha)), b.c(beta)), b.c(1.0)), b.c(0.0))


def _elu_like(b: _B, x, alpha: float, scale_in: float = 1.0):
    e = b.Exp(b.Mul(x, b.c(scale_in)) if scale_in != 1.0 else x)
    return b.Add(b.Max(x, b.c(0.0)), b.Min(b.Mul(b.c(alpha), b.Sub(e, b.c(1.0))), b.c(0.0)))


_X = lambda n: n.inputs[0]  # noqa: E731

CONTRIB_DOMAIN = "com.microsoft"
_CONTRIB = CONTRIB_DOMAIN

RULES: dict[str, Rule] = {r.key: r for r in [
    Rule("Asinh", "Asinh(x) -> Log(x + Sqrt(x*x + 1))", frozenset({"Log", "Add", "Sqrt", "Mul"}),
         lambda b, n: b.Log(b.Add(_X(n), b.Sqrt(b.Add(b.Mul(_X(n), _X(n)), b.c(1.0)))))),
    Rule("Acosh", "Acosh(x) -> Log(x + Sqrt(x*x - 1))", frozenset({"Log", "Add", "Sqrt", "Mul", "Sub"}),
         lambda b, n: b.Log(b.Add(_X(n), b.Sqrt(b.Sub(b.Mul(_X(n), _X(n)), b.c(1.0)))))),
    Rule("Atanh", "Atanh(x) -> 0.5 * Log((1 + x) / (1 - x))", frozenset({"Log", "Add", "Sub", "Div", "Mul"}),
         lambda b, n: b.Mul(b.c(0.5), b.Log(b.Div(b.Add(b.c(1.0), _X(n)), b.Sub(b.c(1.0), _X(n)))))),
    Rule("Sinh", "Sinh(x) -> (Exp(x) - Exp(-x)) / 2", frozenset({"Exp", "Neg", "Sub", "Mul"}),
         lambda b, n: b.Mul(b.Sub(b.Exp(_X(n)), b.Exp(b.Neg(_X(n)))), b.c(0.5))),
    Rule("Cosh", "Cosh(x) -> (Exp(x) + Exp(-x)) / 2", frozenset({"Exp", "Neg", "Add", "Mul"}),
         lambda b, n: b.Mul(b.Add(b.Exp(_X(n)), b.Exp(b.Neg(_X(n)))), b.c(0.5))),
    Rule("Tan", "Tan(x) -> Sin(x) / Cos(x)", frozenset({"Sin", "Cos", "Div"}),
         lambda b, n: b.Div(b.Sin(_X(n)), b.Cos(_X(n)))),
    Rule("Gelu", "Gelu(x) -> 0.5*x*(1 + Erf(x/sqrt(2))) (tanh form for approximate='tanh')",
         frozenset({"Mul", "Add", "Div", "Erf", "Tanh"}), _gelu),
    Rule("HardSigmoid", "HardSigmoid(x) -> Max(Min(alpha*x + beta, 1), 0)", frozenset({"Max", "Min", "Add", "Mul"}),
         lambda b, n: _hardsigmoid(b, _X(n), _attr(n, "alpha", 0.2), _attr(n, "beta", 0.5))),
    Rule("HardSwish", "HardSwish(x) -> x * Max(Min(x/6 + 0.5, 1), 0)", frozenset({"Max", "Min", "Add", "Mul"}),
         lambda b, n: b.Mul(_X(n), _hardsigmoid(b, _X(n), 1.0 / 6.0, 0.5))),
    Rule("Softplus", "Softplus(x) -> Max(x, 0) + Log(1 + Exp(-|x|))",
         frozenset({"Max", "Add", "Log", "Exp", "Neg", "Abs"}), lambda b, n: _softplus(b, _X(n))),
    Rule("Mish", "Mish(x) -> x * Tanh(Softplus(x))", frozenset({"Max", "Add", "Log", "Exp", "Neg", "Abs", "Tanh",
                                                                   "Mul"}),
         lambda b, n: b.Mul(_X(n), b.Tanh(_softplus(b, _X(n))))),
    Rule("Softsign", "Softsign(x) -> x / (1 + |x|)", frozenset({"Div", "Add", "Abs"}),
         lambda b, n: b.Div(_X(n), b.Add(b.c(1.0), b.Abs(_X(n))))),
    Rule("Elu", "Elu(x) -> Max(x, 0) + Min(alpha*(Exp(x) - 1), 0)", frozenset({"Max", "Min", "Add", "Sub", "Mul",
                                                                                 "Exp"}),
         lambda b, n: _elu_like(b, _X(n), _attr(n, "alpha", 1.0))),
    Rule("Celu", "Celu(x) -> Max(x, 0) + Min(alpha*(Exp(x/alpha) - 1), 0)",
         frozenset({"Max", "Min", "Add", "Sub", "Mul", "Exp"}),
         lambda b, n: _elu_like(b, _X(n), _attr(n, "alpha", 1.0), 1.0 / _attr(n, "alpha", 1.0))),
    Rule("Selu", "Selu(x) -> gamma * (Max(x, 0) + Min(alpha*(Exp(x) - 1), 0))",
         frozenset({"Max", "Min", "Add", "Sub", "Mul", "Exp"}),
         lambda b, n: b.Mul(b.c(_attr(n, "gamma", 1.0507009873554805)),
                            _elu_like(b, _X(n), _attr(n, "alpha", 1.6732632423543772)))),
    Rule("LeakyRelu", "LeakyRelu(x) -> Where(x < 0, alpha*x, x)", frozenset({"Where", "Less", "Mul"}),
         lambda b, n: b.Where(b.Less(_X(n), b.c(0.0)), b.Mul(_X(n), b.c(_attr(n, "alpha", 0.01))), _X(n))),
    Rule("ThresholdedRelu", "ThresholdedRelu(x) -> Where(x > alpha, x, 0)", frozenset({"Where", "Greater"}),
         lambda b, n: b.Where(b.Greater(_X(n), b.c(_attr(n, "alpha", 1.0))), _X(n), b.c(0.0))),
    Rule("Reciprocal", "Reciprocal(x) -> 1 / x", frozenset({"Div"}), lambda b, n: b.Div(b.c(1.0), _X(n))),
    Rule("GreaterOrEqual", "GreaterOrEqual(a, b) -> Not(Less(a, b))", frozenset({"Not", "Less"}),
         lambda b, n: b.Not(b.Less(n.inputs[0], n.inputs[1]))),
    Rule("LessOrEqual", "LessOrEqual(a, b) -> Not(Greater(a, b))", frozenset({"Not", "Greater"}),
         lambda b, n: b.Not(b.Greater(n.inputs[0], n.inputs[1]))),
    # onnxruntime's contrib ops (what `optimize --for-runtime onnxruntime` or its transformer optimizer leave)
    Rule("Gelu", "com.microsoft Gelu(x) -> 0.5*x*(1 + Erf(x/sqrt(2)))", frozenset({"Mul", "Add", "Div", "Erf"}),
         lambda b, n: _gelu_erf(b, _X(n)), domain=_CONTRIB),
    Rule("BiasGelu", "BiasGelu(a, bias) -> Gelu(a + bias), erf form", frozenset({"Mul", "Add", "Div", "Erf"}),
         lambda b, n: _gelu_erf(b, b.Add(n.inputs[0], n.inputs[1])), domain=_CONTRIB),
    Rule("FastGelu", "FastGelu(x, bias?) -> Gelu(x + bias), tanh form", frozenset({"Mul", "Add", "Tanh"}),
         lambda b, n: _gelu_tanh(b, _plus_optional(b, _X(n), _input(n, 1))), domain=_CONTRIB),
    Rule("QuickGelu", "QuickGelu(x) -> x * Sigmoid(alpha*x)", frozenset({"Mul", "Sigmoid"}),
         lambda b, n: b.Mul(_X(n), b.Sigmoid(b.Mul(_X(n), b.c(_attr(n, "alpha", 1.702))))), domain=_CONTRIB),
    Rule("SkipLayerNormalization", "SkipLayerNormalization -> LayerNormalization(input + skip + bias)",
         frozenset({"Add", "LayerNormalization"}), _skip_layer_norm, domain=_CONTRIB, min_opset=17),
    Rule("FusedConv", "FusedConv -> Conv (+ Z) + its activation", frozenset({"Conv", "Add"}), _fused_conv,
         domain=_CONTRIB),
]}


def applicable_rule(op: str, target: "Target | None", domain: str = "") -> Rule | None:
    """The rule for ``op`` (of ``domain``) if the target has every operator the composition uses."""
    rule = RULES.get(f"{domain}::{op}" if domain not in ("", "ai.onnx") else op)
    if rule is None or target is None:
        return rule
    supported = target.supported_ops()
    if supported is None or all(("", u) in supported for u in rule.uses):
        return rule
    return None


def rule_fits(node: "ir.Node", rule: Rule, opset: int) -> bool:
    """The composition replaces the node's first output: its other outputs must be unused (SkipLayerNormalization's
    mean and variance); and the model's opset must have the ops it uses."""
    extra = node.outputs[1:]
    return opset >= rule.min_opset and not any(o.uses() or o.is_graph_output() for o in extra)


def apply_rule(graph: "ir.Graph", node: "ir.Node", rule: Rule) -> None:
    """Replace ``node`` in ``graph`` by the rule's composition (in place)."""
    import onnx_ir as ir

    b = _B(node.inputs[0].dtype if node.inputs and node.inputs[0] is not None else None)
    out = rule.build(b, node)
    base = node.name or node.op_type
    taken = {n.name for n in graph}
    for i, new in enumerate(b.tape.nodes):
        name, k = f"{base}/legalized/{new.op_type}_{i}", 1
        while name in taken:  # unnamed nodes of one op type share a base
            name, k = f"{base}/legalized/{new.op_type}_{i}_{k}", k + 1
        new.name = name
        taken.add(name)
    ir.convenience.replace_nodes_and_values(graph, node, [node], list(b.tape.nodes), [node.outputs[0]], [out])


__all__ = ["CONTRIB_DOMAIN", "RULES", "Rule", "applicable_rule", "apply_rule", "rule_fits"]


# ------------------------------------------------------------------------------------------------ attention masks
# transformers exports the attention mask as boolean logic: Cast(mask -> bool), Equal/Not/And/Or, Expand/GatherND
# to broadcast it, then Where(mask, 0, -big) (or Where(mask, scores, -inf)). ncnn, TFLite and ExecuTorch's int8 flow
# have no bool tensors; the same values computed in float 0/1 arithmetic (And -> Mul, Or -> Max, Not -> 1 - x,
# Where(c, a, b) -> c*a + (1 - c)*b) give the additive float mask those engines take, bit for bit.
MASK_RULE = "attention-mask"
MASK_RULE_DESCRIBE = ("boolean attention mask (Cast/Equal/And/Where on bool) -> additive float mask "
                      "((1 - mask) * min, And -> Mul, Where -> c*a + (1-c)*b)")
_BOOL_LOGIC = {"And": "Mul", "Or": "Max"}
_MOVES = {"Expand": 1, "Reshape": 1, "Unsqueeze": 1, "Squeeze": 1, "Slice": 1, "Gather": 1, "GatherND": 1,
          "GatherElements": 1, "Transpose": 1, "Tile": 1, "Identity": 1, "Flatten": 1, "Concat": None}
_INT_COMPARE = {"Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual"}


def bool_mask_wheres(graph: "ir.Graph") -> list["ir.Node"]:
    """The Where nodes that select float values with a boolean condition (the attention-mask pattern)."""
    import onnx_ir as ir

    return [n for n in graph if n.op_type == "Where" and n.domain in ("", "ai.onnx")
            and n.inputs[0] is not None and n.inputs[0].dtype == ir.DataType.BOOL
            and n.outputs[0].dtype in (ir.DataType.FLOAT, ir.DataType.FLOAT16)]


class _MaskRewriter:
    """Rebuilds the boolean region feeding a Where in float 0/1 arithmetic (new nodes; the old ones die unused)."""

    def __init__(self, graph: "ir.Graph", dtype) -> None:
        import onnx_ir as ir

        self.graph, self.ir = graph, ir
        self.dtype = dtype
        self.np_dtype = dtype.numpy()
        self.memo: dict[int, "ir.Value"] = {}
        self.nodes: list["ir.Node"] = []

    def op(self, op_type: str, inputs: list, **attrs) -> "ir.Value":
        node = self.ir.node(op_type, inputs, attributes=attrs or None)
        node.outputs[0].dtype = self.dtype
        self.nodes.append(node)
        return node.outputs[0]

    def const(self, value) -> "ir.Value":
        return self.op("Constant", [], value=self.ir.tensor(np.asarray(value, dtype=self.np_dtype)))

    def finite(self, value: "ir.Value") -> "ir.Value":
        """A float constant with -inf/+inf replaced by the dtype's min/max (0 * -inf would be NaN); else as is."""
        tensor = self.ir.convenience.get_const_tensor(value)
        if tensor is None:
            return value
        arr = tensor.numpy()
        if not np.isinf(arr).any():
            return value
        info = np.finfo(arr.dtype)
        return self.const(np.clip(np.nan_to_num(arr, posinf=info.max, neginf=info.min), info.min, info.max))

    def to_float(self, value: "ir.Value") -> "ir.Value":
        """``value`` (bool) as 0/1 floats."""
        key = id(value)
        if key not in self.memo:
            self.memo[key] = self._convert(value)
        return self.memo[key]

    def _convert(self, value: "ir.Value") -> "ir.Value":
        tensor = self.ir.convenience.get_const_tensor(value)
        if tensor is not None:
            return self.const(tensor.numpy().astype(self.np_dtype))
        node = value.producer()
        op = node.op_type if node is not None and node.domain in ("", "ai.onnx") else None
        if op == "Cast":
            src = node.inputs[0]
            f = src if src.dtype == self.dtype else self.op("Cast", [src], to=self.dtype)
            return self.op("Min", [self.op("Abs", [f]), self.const(1.0)])  # nonzero -> 1 (exact for integers)
        if op in _BOOL_LOGIC:
            return self.op(_BOOL_LOGIC[op], [self.to_float(node.inputs[0]), self.to_float(node.inputs[1])])
        if op == "Not":
            return self.op("Sub", [self.const(1.0), self.to_float(node.inputs[0])])
        if op in _INT_COMPARE and all(v is not None and v.dtype is not None and v.dtype.is_integer()
                                      for v in node.inputs):
            return self._compare(op, node)
        if op in _MOVES and node.outputs[0] is value:
            return self._move(node)
        return self.op("Cast", [value], to=self.dtype)  # anything else: computed as bool, then cast

    def _compare(self, op: str, node) -> "ir.Value":
        a, b = (self.op("Cast", [v], to=self.dtype) for v in node.inputs[:2])
        if op == "Equal":
            return self.op("Sub", [self.const(1.0), self.op("Min", [self.op("Abs", [self.op("Sub", [a, b])]),
                                                                   self.const(1.0)])])
        diff = self.op("Sub", [a, b] if op in ("Greater", "GreaterOrEqual") else [b, a])
        if op.endswith("OrEqual"):
            diff = self.op("Add", [diff, self.const(1.0)])
        return self.op("Max", [self.op("Min", [diff, self.const(1.0)]), self.const(0.0)])  # integers: exact

    def _move(self, node) -> "ir.Value":
        data_slots = range(len(node.inputs)) if _MOVES[node.op_type] is None else range(_MOVES[node.op_type])
        inputs = [self.to_float(v) if i in data_slots and v is not None else v for i, v in enumerate(node.inputs)]
        if node.op_type == "GatherND":
            reshaped = self._identity_gather(node, inputs[0])
            if reshaped is not None:
                return reshaped
        attrs = {k: a.value for k, a in node.attributes.items()}
        return self.op(node.op_type, inputs, **attrs)

    def _identity_gather(self, node, data) -> "ir.Value | None":
        """GatherND(data, constant indices) that reads every element of ``data`` once, in order: a Reshape."""
        indices = self.ir.convenience.get_const_tensor(node.inputs[1])
        shape = node.inputs[0].shape
        if indices is None or shape is None or not shape.is_static() or node.attributes.get("batch_dims") is not None \
                and node.attributes["batch_dims"].value != 0:
            return None
        idx = indices.numpy()
        dims = tuple(int(d) for d in shape)
        if idx.shape[-1] != len(dims) or int(np.prod(idx.shape[:-1])) != int(np.prod(dims)):
            return None
        flat = np.ravel_multi_index(tuple(np.moveaxis(idx, -1, 0)), dims)
        if not np.array_equal(flat.ravel(), np.arange(flat.size)):
            return None
        target = self.ir.tensor(np.array(idx.shape[:-1], dtype=np.int64))
        return self.op("Reshape", [data, self.op_int("Constant", value=target)])

    def op_int(self, op_type: str, **attrs) -> "ir.Value":
        node = self.ir.node(op_type, [], attributes=attrs)
        self.nodes.append(node)
        return node.outputs[0]

    def where(self, node) -> "ir.Value":
        c = self.to_float(node.inputs[0])
        a, b = self.finite(node.inputs[1]), self.finite(node.inputs[2])
        keep = self.op("Sub", [self.const(1.0), c])
        parts = [self.op("Mul", [c, a]) if not _is_zero(self.ir, a) else None,
                 self.op("Mul", [keep, b]) if not _is_zero(self.ir, b) else None]
        parts = [p for p in parts if p is not None]
        return parts[0] if len(parts) == 1 else self.op("Add", parts) if parts else self.op("Mul", [c, self.const(0.0)])


def _is_zero(ir, value) -> bool:
    tensor = ir.convenience.get_const_tensor(value)
    return tensor is not None and not np.any(tensor.numpy())


def rewrite_bool_masks(model: "ir.Model") -> int:
    """Rewrite every boolean-mask Where (and the bool logic feeding it) of the main graph into float arithmetic, in
    place; returns how many Where nodes were rewritten. Exact: 0/1 floats, finite constants for +-inf."""
    from onnx_ir.passes.common import RemoveUnusedNodesPass

    graph = model.graph
    wheres = bool_mask_wheres(graph)
    rewriters: dict = {}
    for i, node in enumerate(wheres):
        dtype = node.outputs[0].dtype
        rw = rewriters.setdefault(dtype, _MaskRewriter(graph, dtype))
        start = len(rw.nodes)
        out = rw.where(node)
        new = rw.nodes[start:]
        for k, n in enumerate(new):
            n.name = f"{node.name or 'Where'}/mask_as_float/{n.op_type}_{k}"
        graph.insert_before(node, new)
        out.name = node.outputs[0].name
        node.outputs[0].name = f"{out.name}__bool_where"
        out.shape = node.outputs[0].shape
        node.outputs[0].replace_all_uses_with(out, replace_graph_outputs=True)
    if wheres:
        RemoveUnusedNodesPass()(model)
    return len(wheres)


__all__ += ["MASK_RULE", "MASK_RULE_DESCRIBE", "bool_mask_wheres", "rewrite_bool_masks"]

# pnnx lowers an ONNX embedding lookup to ncnn's Embed only in the exact form Gather(table, ids) with no attributes
# (its F.embedding pattern lists none; the exporters write axis=0 explicitly); otherwise it keeps a Gather layer,
# which ncnn does not have. Dropping the default-valued attribute is exact.
EMBED_RULE = "embedding-gather"
EMBED_RULE_DESCRIBE = ("embedding lookup Gather(constant 2-D table, ids, axis=0) -> the same Gather without its "
                       "default axis attribute (the form pnnx lowers to ncnn's Embed)")


def embedding_gathers(graph: "ir.Graph") -> list["ir.Node"]:
    """Gather nodes that look up rows of a constant 2-D table with computed ids and say ``axis=0`` explicitly."""
    import onnx_ir as ir

    def fits(n) -> bool:
        table, ids = (list(n.inputs) + [None, None])[:2]
        axis = n.attributes.get("axis")
        return (table is not None and ids is not None and axis is not None and axis.value == 0
                and len(n.attributes) == 1 and table.const_value is not None and len(table.const_value.shape) == 2
                and ids.const_value is None and ids.dtype in (ir.DataType.INT64, ir.DataType.INT32))

    return [n for n in graph if n.op_type == "Gather" and n.domain in ("", "ai.onnx") and fits(n)]


def rewrite_embedding_gathers(model: "ir.Model") -> int:
    """Drop the explicit ``axis=0`` of every embedding-lookup Gather of the main graph, in place; returns how many."""
    nodes = embedding_gathers(model.graph)
    for n in nodes:
        del n.attributes["axis"]
    return len(nodes)


__all__ += ["EMBED_RULE", "EMBED_RULE_DESCRIBE", "embedding_gathers", "rewrite_embedding_gathers"]
