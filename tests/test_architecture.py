"""The package's shape: layers point one way (no import cycle, including imports inside functions), no private name
imported across modules, CLI modules import only the CLI helpers and the public API, functions stay readable."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "onnxdeploy"
MAX_FUNCTION_LINES = 120


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(modules: dict[str, ast.Module]) -> dict[str, set[tuple[str, str | None]]]:
    """module -> {(imported module, imported name or None)} for every import in the package, at any depth."""
    packages = {name for name in modules if (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()}
    out: dict[str, set[tuple[str, str | None]]] = {}
    for name, tree in modules.items():
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {(a.name, None) for a in node.names if a.name.startswith("onnxdeploy")}
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, node, name in packages)
                if not target.startswith("onnxdeploy"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add((sub, None) if sub in modules else (target, alias.name))
        out[name] = found
    return out


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports under ``if TYPE_CHECKING:`` (not executed: no runtime dependency)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    lines.add(inner.lineno)
    return lines


def _graph(modules: dict[str, ast.Module]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    packages = {name for name in modules if (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()}
    for name, tree in modules.items():
        skip = _type_checking_only(tree)
        edges = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, node, name in packages)
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:
                        edges.add(sub)
                    elif target in modules:
                        edges.add(target)
        edges.discard(name)
        # a package's __init__ that re-exports lazily is not a dependency of its submodules
        graph[name] = {e for e in edges if e != "onnxdeploy"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return result


def private_cross_imports(modules: dict[str, ast.Module]) -> list[str]:
    out = []
    for name, found in _imports(modules).items():
        for target, imported in sorted(found, key=str):
            if imported and imported.startswith("_") and not imported.startswith("__") and target != name:
                out.append(f"{name} imports {target}.{imported}")
    return out


def long_functions(modules: dict[str, ast.Module]) -> list[str]:
    out = []
    for name, tree in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    out.append(f"{name}.{node.name}: {length} lines")
    return out


def test_no_import_cycle():
    assert cycles(_graph(_modules())) == []


def test_no_private_name_imported_across_modules():
    assert private_cross_imports(_modules()) == []


PUBLIC_FOR_CLI = ("onnxdeploy", "onnxdeploy.cli.common", "onnxdeploy.cli.output", "onnxdeploy.targets",
                  "onnxdeploy.debug", "onnxdeploy.errors", "onnxdeploy.examples", "onnxdeploy.serving")


def test_cli_modules_import_only_cli_helpers_and_the_public_api():
    """The CLI is a skin: its modules import the flat public API (``from onnxdeploy import optimize``), the public
    subpackages and the two CLI helper modules, never an implementation module or another subcommand."""
    modules = _modules()
    packages = {name for name in modules if (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()}
    bad = []
    for name, tree in modules.items():
        if not name.startswith("onnxdeploy.cli.") or name == "onnxdeploy.cli.main":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(name, node, name in packages)
                if not target.startswith("onnxdeploy"):
                    continue
                if target == "onnxdeploy.cli" and all(a.name in ("common", "output") for a in node.names):
                    continue
                if target not in PUBLIC_FOR_CLI:
                    bad.append(f"{name} imports {target}")
                elif target == "onnxdeploy":
                    bad += [f"{name} imports onnxdeploy.{a.name}" for a in node.names if a.name.startswith("_")]
            elif isinstance(node, ast.Import):
                bad += [f"{name} imports {a.name}" for a in node.names
                        if a.name.startswith("onnxdeploy") and a.name not in PUBLIC_FOR_CLI]
    assert bad == []


def test_serving_is_the_layer_after_the_pipeline():
    """``onnxdeploy.serving`` (servers, load tests) builds on the pipeline and the targets; nothing below it imports
    it: only the CLI and serving itself do (the flat ``__init__`` loads it lazily, by name)."""
    bad = [f"{name} imports {target}" for name, found in _imports(_modules()).items()
           if not name.startswith(("onnxdeploy.serving", "onnxdeploy.cli")) and name != "onnxdeploy"
           for target, _ in found if target == "onnxdeploy.serving" or target.startswith("onnxdeploy.serving.")]
    assert bad == []


def test_functions_are_readable():
    assert long_functions(_modules()) == []


if __name__ == "__main__":  # a summary for the closing note: python tests/test_architecture.py
    mods = _modules()
    graph = _graph(mods)
    print("cycles:", cycles(graph))
    print("private cross-imports:", len(private_cross_imports(mods)))
    for line in private_cross_imports(mods):
        print("  ", line)
    print("functions over", MAX_FUNCTION_LINES, "lines:", long_functions(mods))
    sizes = sorted(((sum(1 for _ in open(PACKAGE.parent / (n.replace('.', '/') + ('/__init__.py' if (PACKAGE.parent / n.replace('.', '/')).is_dir() else '.py')))), n) for n in mods), reverse=True)[:8]
    print("largest modules:", ", ".join(f"{n} ({c})" for c, n in sizes))
