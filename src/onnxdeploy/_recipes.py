"""Edit recipes: a YAML or JSON list of :class:`~onnxdeploy._edit.Editor` calls, replayable on re-exported models.

    # fix.yaml
    edits:
      - delete_node: {node: "op:Add"}                       # by op type: survives renamed nodes
      - insert_after: {tensor: "glob:*output", op: Cast, attrs: {to: int64}}
      - rename_tensor: {tensor: "re:^input", new: images}
      - cleanup: {}

A step is a mapping with one key (the editor method) whose value is a mapping of its arguments, or a single value
for its first argument (``- toposort: {}``, ``- remove_output: logits``). The top level is either the list itself or
a mapping with an ``edits`` list.
"""

from __future__ import annotations

import difflib
import inspect
import json
import os
import reprlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from onnxdeploy.errors import OnnxDeployError, UserInputError

if TYPE_CHECKING:
    from onnxdeploy._edit import Editor

OPERATIONS = (
    "delete_node", "insert_after", "insert_before", "replace_node", "rename", "rename_node", "rename_tensor",
    "set_shape", "set_dims", "set_input_dtype", "set_output_dtype", "expose", "remove_output", "extract", "cleanup",
    "toposort", "convert_opset",
)


MAX_RECIPE_BYTES = 1 << 20
MAX_YAML_ALIASES = 100
MAX_YAML_NODES = 100_000


class RecipeTooComplex(ValueError):
    """A YAML document with too many aliases or nodes (an alias bomb)."""


def safe_load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses more than MAX_YAML_ALIASES aliases or MAX_YAML_NODES nodes while composing,
    so an alias bomb ("billion laughs") is refused before any expansion."""
    import yaml

    class _BoundedLoader(yaml.SafeLoader):
        aliases = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_YAML_ALIASES:
                    raise RecipeTooComplex(f"more than {MAX_YAML_ALIASES} YAML aliases (an alias bomb?)")
            return super().compose_node(parent, index)

        def compose_document(self):
            node = super().compose_document()
            if _expanded_size(node) > MAX_YAML_NODES:
                raise RecipeTooComplex(f"the YAML expands to more than {MAX_YAML_NODES} values (an alias bomb?)")
            return node

    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _expanded_size(root) -> int:
    """How many values a composed YAML node becomes once its aliases are expanded (computed without expanding)."""
    import yaml

    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        if not done and id(node) in open_:
            raise RecipeTooComplex("the YAML refers to itself (a recursive alias)")
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            sizes[id(node)] = 1
            continue
        if done:
            sizes[id(node)] = min(1 + sum(sizes.get(id(c), 1) for c in children), 1 << 62)
            open_.discard(id(node))
        else:
            open_.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def load_recipe(path: str | os.PathLike) -> list[dict]:
    """Read a recipe file (.yaml/.yml or .json) into a list of steps; malformed files are a UserInputError."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"{p}: no such recipe file")
    from onnxdeploy._io import note_read

    note_read(p)  # no writer of this operation (--save-recipe, -o) may replace it
    with open(p, "rb") as f:  # bounded read: a recipe is a few lines, not /dev/zero behind a symlink
        raw = f.read(MAX_RECIPE_BYTES + 1)
    if len(raw) > MAX_RECIPE_BYTES:
        raise UserInputError(f"{p}: recipe larger than {MAX_RECIPE_BYTES // 1024 // 1024} MB",
                             hint="a recipe is a short YAML or JSON list of edits")
    try:
        text = raw.decode("utf-8")
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = safe_load_yaml(text)
    except RecipeTooComplex as err:
        raise UserInputError(f"{p}: {err}", hint="write each step out; a recipe needs no YAML aliases") from err
    except Exception as err:  # yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError, RecursionError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserInputError(f"{p}: not a valid recipe ({first})", hint="a recipe is a YAML or JSON list") from err
    return normalize(data, source=str(p))


def normalize(data: Any, *, source: str = "recipe") -> list[dict]:
    """Check the recipe's structure and return ``[{op: {arg: value}}, ...]``."""
    if isinstance(data, Mapping) and "edits" in data:
        data = data["edits"]
    if data is None:
        data = []
    if not isinstance(data, list):
        raise UserInputError(f"{source}: a recipe must be a list of edits (or a mapping with an 'edits' list)")
    steps = []
    for i, item in enumerate(data, 1):
        if not isinstance(item, Mapping) or len(item) != 1:
            raise UserInputError(f"{source}: step {i} must be a mapping with one key, the edit, got {reprlib.repr(item)}",
                                 hint="e.g. - delete_node: {node: add}")
        (op, args), = item.items()
        if op not in OPERATIONS:
            close = difflib.get_close_matches(str(op), OPERATIONS, n=3)
            raise UserInputError(f"{source}: step {i}: unknown edit {op!r}",
                                 hint=f"did you mean {', '.join(close)}?" if close else
                                 f"edits: {', '.join(OPERATIONS)}")
        steps.append({op: args})
    return steps


def _bind(editor: "Editor", op: str, args: Any, where: str) -> tuple:
    method = getattr(editor, op)
    params = [p for p in inspect.signature(method).parameters.values()]
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        if not params:
            raise UserInputError(f"{where}: {op} takes no arguments, got {reprlib.repr(args)}")
        args = {params[0].name: args}
    known = {p.name for p in params}
    unknown = [k for k in args if k not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=2)
        raise UserInputError(f"{where}: {op} has no argument {unknown[0]!r}",
                             hint=f"did you mean {', '.join(close)}?" if close else
                             f"{op} takes: {', '.join(sorted(known)) or 'nothing'}")
    missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in args]
    if missing:
        raise UserInputError(f"{where}: {op} needs {', '.join(missing)}")
    return method, dict(args)


def apply_recipe(editor: "Editor", steps: Sequence[Mapping[str, Any]] | str | os.PathLike, *,
                 source: str | None = None) -> "Editor":
    """Apply each step in order; an error says which step failed and why."""
    if isinstance(steps, (str, os.PathLike)):
        source = source or str(steps)
        steps = load_recipe(steps)
    else:
        source = source or "recipe"
        steps = normalize(list(steps), source=source)
    for i, step in enumerate(steps, 1):
        (op, args), = step.items()
        where = f"{source}: step {i} ({op})" if source != "command line" else op.replace("_", "-")
        method, kwargs = _bind(editor, op, args, where)
        try:
            method(**kwargs)
        except OnnxDeployError as err:
            err.message = f"{where}: {err.message}"
            err.args = (err.message,)
            raise
    return editor


def dump_recipe(steps: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write steps as YAML (.yaml/.yml) or JSON (other suffixes), atomically."""
    from onnxdeploy._io import atomic_write_text

    p = Path(path)
    data = {"edits": [dict(s) for s in steps]}
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    else:
        text = json.dumps(data, indent=2) + "\n"
    return atomic_write_text(p, text)
