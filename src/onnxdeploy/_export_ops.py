"""Custom operator mappings for ``onnxdeploy._export``: one registry that works with both torch.onnx exporters.

A mapping turns one PyTorch operator into ONNX: a single ONNX op (``torch.asinh`` -> ``Asinh``), a composition of
ONNX ops, or an op in a custom domain (declared in the model's opset imports). Write the mapping once; onnxdeploy
installs it as an onnxscript function in the dynamo exporter's ``custom_translation_table`` and as a symbolic function
(``torch.onnx.register_custom_op_symbolic``) for the TorchScript exporter, only for the duration of one export::

    from onnxdeploy._export import register_op, custom_op

    register_op(torch.asinh, "Asinh")                       # 1:1
    register_op("mylib::fast_gelu", "Gelu", domain="com.microsoft")   # custom domain, version 1

    @custom_op("aten::asinh")                               # a composition: log(x + sqrt(x*x + 1))
    def asinh(g, x):
        return g.op("Log", g.op("Add", x, g.op("Sqrt", g.op("Add", g.op("Mul", x, x), g.const(1.0, like=x)))))

A mapping function receives a builder ``g`` and the operator's arguments (tensors, then Python values for the
non-tensor arguments). ``g.op(name, *inputs, outputs=1, **attributes)`` adds one node (``name`` may be
``"domain::Op"``); ``g.const(value, like=tensor)`` makes a constant with ``tensor``'s dtype.

This module imports torch lazily: importing it never needs torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from onnxdeploy.errors import UserInputError


@dataclass
class OpMapping:
    """How one torch operator (``namespace::name``, optionally ``.overload``) becomes ONNX."""

    torch_op: str
    onnx_op: str | None = None
    domain: str = ""
    version: int = 1
    function: Callable | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if self.function is not None:
            return "composition"
        return "custom-domain op" if self.domain else "onnx op"

    def describe(self) -> str:
        if self.function is not None:
            return f"{self.torch_op} -> {getattr(self.function, '__name__', 'function')}()"
        target = f"{self.domain}::{self.onnx_op} (v{self.version})" if self.domain else str(self.onnx_op)
        return f"{self.torch_op} -> {target}"

    def to_dict(self) -> dict:
        return {"torch_op": self.torch_op, "kind": self.kind, "onnx_op": self.onnx_op, "domain": self.domain,
                "version": self.version, "mapping": self.describe()}

    def build(self, g: "Builder", *args, **kwargs):
        if self.function is not None:
            return self.function(g, *args, **kwargs)
        tensors = [a for a in args if g.is_tensor(a)]
        name = f"{self.domain}::{self.onnx_op}" if self.domain else self.onnx_op
        return g.op(name, *tensors, **self.attributes)


_REGISTRY: dict[str, OpMapping] = {}


def op_name(torch_op: Any) -> str:
    """``namespace::name`` or ``namespace::name.overload`` for an OpOverload, packet, string or ``torch.<fn>``."""
    if isinstance(torch_op, str):
        text = torch_op.strip()
        if "::" not in text:
            if "." in text and text.split(".")[0] in ("torch", "aten"):
                text = text.split(".", 1)[1]
            text = f"aten::{text}"
        ns, _, rest = text.partition("::")
        if not ns or not rest or not rest.replace(".", "").replace("_", "").isalnum():
            raise UserInputError(f"{torch_op!r} is not an operator name", hint="write namespace::name, e.g. aten::asinh")
        return text
    schema = getattr(torch_op, "_schema", None)
    if schema is not None:  # OpOverload
        overload = getattr(torch_op, "_overloadname", "default") or "default"
        return f"{schema.name}.{overload}"
    qualified = getattr(torch_op, "_qualified_op_name", None)
    if qualified:  # OpOverloadPacket
        return qualified
    name = getattr(torch_op, "__name__", None)
    module = getattr(torch_op, "__module__", "") or ""
    if name and (module.startswith("torch") or module == "" or module is None):
        import torch

        if hasattr(torch.ops.aten, name):
            return f"aten::{name}"
    raise UserInputError(
        f"cannot tell which torch operator {torch_op!r} is",
        hint="pass torch.ops.<namespace>.<name>[.<overload>] or a string such as 'aten::asinh'",
    )


def register_op(
    torch_op: Any,
    onnx_op: str | None = None,
    *,
    domain: str = "",
    version: int = 1,
    function: Callable | None = None,
    attributes: dict[str, Any] | None = None,
) -> OpMapping:
    """Map ``torch_op`` to the ONNX op ``onnx_op`` (in ``domain``), or to what ``function(g, *args)`` builds.

    The mapping is used by every later :func:`onnxdeploy._export.export` call; :func:`unregister_op` removes it.
    """
    if (onnx_op is None) == (function is None):
        raise UserInputError("register_op needs exactly one of onnx_op or function",
                             hint="register_op(torch.asinh, 'Asinh') or use @custom_op for a composition")
    if onnx_op is not None and "::" in onnx_op:
        domain, _, onnx_op = onnx_op.partition("::")
    if domain in ("ai.onnx",):
        domain = ""
    mapping = OpMapping(op_name(torch_op), onnx_op, domain, int(version), function, dict(attributes or {}))
    _REGISTRY[mapping.torch_op] = mapping
    return mapping


def custom_op(torch_op: Any, *, domain: str = "", version: int = 1) -> Callable[[Callable], Callable]:
    """Decorator: register ``fn(g, *args, **kwargs)`` as the ONNX translation of ``torch_op``; returns ``fn``.

    ``domain``/``version`` declare the custom domain the function's ops use (it is added to the opset imports).
    """

    def decorate(fn: Callable) -> Callable:
        mapping = register_op(torch_op, function=fn, version=version)
        mapping.domain = domain
        fn.mapping = mapping  # type: ignore[attr-defined]
        return fn

    return decorate


def unregister_op(torch_op: Any) -> None:
    """Remove the mapping of ``torch_op`` (an unknown op is an error naming the registered ones)."""
    name = op_name(torch_op)
    if name not in _REGISTRY:
        raise UserInputError(f"no mapping registered for {name}", hint=f"registered: {', '.join(_REGISTRY) or 'none'}")
    del _REGISTRY[name]


def registered_ops() -> list[OpMapping]:
    return list(_REGISTRY.values())


def collect(custom_ops: Any) -> list[OpMapping]:
    """The global registry plus ``custom_ops`` (a list of OpMapping, or a dict torch_op -> onnx op name/function)."""
    merged = dict(_REGISTRY)
    if custom_ops is None:
        return list(merged.values())
    items = custom_ops.items() if isinstance(custom_ops, dict) else [(m, None) for m in custom_ops]
    for key, value in items:
        if isinstance(key, OpMapping):
            mapping = key
        elif callable(value) and not isinstance(value, str):
            mapping = OpMapping(op_name(key), function=value)
        elif isinstance(value, OpMapping):
            mapping = value
        else:
            domain, _, op = str(value).rpartition("::")
            mapping = OpMapping(op_name(key), op, domain)
        merged[mapping.torch_op] = mapping
    return list(merged.values())


def domains(mappings: list[OpMapping]) -> dict[str, int]:
    return {m.domain: m.version for m in mappings if m.domain}


# --------------------------------------------------------------------------------------------- builders
class Builder:
    """What a mapping function builds with. Subclasses target one exporter."""

    def op(self, name: str, *inputs, outputs: int = 1, **attributes):  # pragma: no cover - interface
        raise NotImplementedError

    def const(self, value, *, like=None):  # pragma: no cover - interface
        raise NotImplementedError

    def is_tensor(self, value) -> bool:  # pragma: no cover - interface
        raise NotImplementedError


def _split(name: str, default_domain: str = "") -> tuple[str, str]:
    if "::" in name:
        domain, _, op = name.partition("::")
        return ("" if domain in ("ai.onnx", "onnx") else domain), op
    return default_domain, name


class DynamoBuilder(Builder):
    """Builds with onnxscript ops inside the dynamo exporter's tracing evaluator."""

    def __init__(self, opset: int, versions: dict[str, int]):
        self.opset = opset
        self.versions = versions

    def is_tensor(self, value) -> bool:
        return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, (int, float, bool))

    def op(self, name: str, *inputs, outputs: int = 1, **attributes):
        from onnxscript import values

        domain, op_type = _split(name)
        if not domain:
            opset = values.Opset("", self.opset)
            schema_op = opset[op_type]
            if schema_op is None:
                raise UserInputError(f"ONNX has no operator {op_type!r} in opset {self.opset}")
            return schema_op(*inputs, **attributes)
        version = self.versions.get(domain, 1)
        opset = values.Opset(domain, version)
        found = opset[op_type]
        if found is not None:
            return found(*inputs, **attributes)
        schema = _adhoc_schema(op_type, domain, version, len(inputs), outputs, attributes)
        return values.Op(opset, op_type, schema)(*inputs, **attributes)

    def const(self, value, *, like=None):
        import numpy as np
        import onnx_ir as ir
        from onnxscript import values

        dtype = None
        if like is not None and getattr(like, "dtype", None) is not None:
            dtype = like.dtype.numpy() if hasattr(like.dtype, "numpy") else None
        arr = np.asarray(value, dtype=dtype)
        return values.Opset("", self.opset).Constant(value=ir.tensor(arr))


def _adhoc_schema(op_type: str, domain: str, version: int, n_inputs: int, n_outputs: int, attributes: dict):
    """An OpSchema for an op in a custom domain that ONNX does not know (so onnxscript can record it)."""
    import onnx

    OpSchema = onnx.defs.OpSchema
    types = [f"tensor({t})" for t in ("float", "double", "float16", "bfloat16", "int8", "int16", "int32", "int64",
                                       "uint8", "bool")]

    def attr_type(v):
        if isinstance(v, bool) or isinstance(v, int):
            return OpSchema.AttrType.INT
        if isinstance(v, float):
            return OpSchema.AttrType.FLOAT
        if isinstance(v, str):
            return OpSchema.AttrType.STRING
        if isinstance(v, (list, tuple)) and v and all(isinstance(i, int) for i in v):
            return OpSchema.AttrType.INTS
        if isinstance(v, (list, tuple)):
            return OpSchema.AttrType.FLOATS
        return OpSchema.AttrType.TENSOR

    return OpSchema(
        op_type,
        domain,
        version,
        inputs=[OpSchema.FormalParameter(f"input{i}", "T") for i in range(n_inputs)],
        outputs=[OpSchema.FormalParameter(f"output{i}", "T") for i in range(n_outputs)],
        type_constraints=[("T", types, "any tensor")],
        attributes=[OpSchema.Attribute(k, attr_type(v), "") for k, v in attributes.items()],
    )


_TS_SUFFIX = {bool: "i", int: "i", float: "f", str: "s"}


class TorchScriptBuilder(Builder):
    """Builds with the TorchScript exporter's GraphContext (``g.op`` with typed attribute suffixes)."""

    def __init__(self, g, versions: dict[str, int]):
        self.g = g
        self.versions = versions

    def is_tensor(self, value) -> bool:
        import torch

        return isinstance(value, torch._C.Value)

    def op(self, name: str, *inputs, outputs: int = 1, **attributes):
        domain, op_type = _split(name)
        qualified = f"{domain}::{op_type}" if domain else op_type
        attrs = {}
        for key, value in attributes.items():
            if isinstance(value, (list, tuple)):
                suffix = "i" if all(isinstance(v, int) for v in value) else ("s" if value and isinstance(value[0], str) else "f")
            else:
                suffix = _TS_SUFFIX.get(type(value), "t")
            attrs[f"{key}_{suffix}"] = value
        typed = [self.const(v, like=next((i for i in inputs if self.is_tensor(i)), None)) if not self.is_tensor(v) and v is not None else v
                 for v in inputs]
        return self.g.op(qualified, *typed, outputs=outputs, **attrs)

    def const(self, value, *, like=None):
        import torch

        dtype = None
        if like is not None:
            try:
                from torch.onnx._internal.torchscript_exporter import _type_utils

                dtype = _type_utils.JitScalarType.from_value(like).dtype()
            except Exception:  # noqa: BLE001 - unknown type: let torch infer
                dtype = None
        return self.g.op("Constant", value_t=torch.tensor(value, dtype=dtype))


def _ts_python(value):
    """A TorchScript constant Value as a Python value (tensors stay Values)."""
    import torch

    if not isinstance(value, torch._C.Value):
        return value
    kind = value.type().kind()
    node = value.node()
    if node.kind() not in ("prim::Constant", "onnx::Constant"):
        return value
    if node.hasAttribute("value"):
        attr_kind = node.kindOf("value")
        if attr_kind in ("s", "i", "f"):
            return getattr(node, attr_kind)("value")
        if attr_kind in ("ss", "is", "fs"):
            return list(getattr(node, attr_kind)("value"))
    if kind == "TensorType":
        return value
    if kind == "NoneType":
        return None
    from torch.onnx._internal.torchscript_exporter import symbolic_helper

    desc = {"IntType": "i", "FloatType": "f", "StringType": "s", "BoolType": "b"}.get(kind)
    if desc is None and kind == "ListType":
        desc = "is"
    if desc is None:
        return value
    try:
        return symbolic_helper._maybe_get_const(value, desc)
    except Exception:  # noqa: BLE001
        return value


# --------------------------------------------------------------------------------------------- installation
def dynamo_table(mappings: list[OpMapping], opset: int) -> dict:
    """``custom_translation_table`` entries (OpOverload -> python function) for the dynamo exporter."""
    import torch

    table = {}
    versions = domains(mappings)
    for mapping in mappings:
        ns, _, rest = mapping.torch_op.partition("::")
        name, _, overload = rest.partition(".")
        packet = getattr(getattr(torch.ops, ns, None), name, None)
        if packet is None:
            raise UserInputError(f"torch has no operator {mapping.torch_op}", hint="check the namespace and name")
        overloads = [overload] if overload else list(packet.overloads())
        for ov in overloads:
            target = getattr(packet, ov)

            def translate(*args, _mapping=mapping, **kwargs):
                return _mapping.build(DynamoBuilder(opset, versions), *args, **kwargs)

            translate.__name__ = f"onnxdeploy_{ns}_{name}_{ov}"
            table[target] = translate
    return table


def install_torchscript(mappings: list[OpMapping], opset: int) -> list[str]:
    """Register symbolic functions with the TorchScript exporter; returns the names to pass to :func:`uninstall`."""
    import torch

    versions = domains(mappings)
    names = []
    for mapping in mappings:
        qualified = mapping.torch_op.split(".")[0]

        def symbolic(g, *args, _mapping=mapping):
            return _mapping.build(TorchScriptBuilder(g, versions), *[_ts_python(a) for a in args])

        torch.onnx.register_custom_op_symbolic(qualified, symbolic, opset)
        names.append(qualified)
    return names


def uninstall_torchscript(names: list[str], opset: int) -> None:
    import torch

    for name in names:
        try:
            torch.onnx.unregister_custom_op_symbolic(name, opset)
            from torch.onnx._internal.torchscript_exporter import registration

            group = registration.registry.get_function_group(name)
            if group is not None:
                try:
                    group.get_min_supported()
                except ValueError:  # nothing left: drop the empty group so the exporter reports the op as missing
                    registration.registry._registry.pop(name, None)
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass
