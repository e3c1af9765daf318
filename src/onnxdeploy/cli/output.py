"""The one place that prints: rich tables for people, JSON for programs."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

_console = None
_err_console = None


def console():
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(highlight=False, soft_wrap=False)
    return _console


def err_console():
    global _err_console
    if _err_console is None:
        from rich.console import Console

        _err_console = Console(stderr=True, highlight=False, soft_wrap=True)
    return _err_console


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def print_json(data: Any) -> None:
    """Print ``data`` (or ``data.to_dict()``) as indented JSON on stdout."""
    if hasattr(data, "to_dict"):
        data = data.to_dict()
    sys.stdout.write(json.dumps(data, indent=2, default=_jsonable) + "\n")


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, caption: str | None = None):
    """Build a rich Table; cells are converted with ``str`` (None shows as an empty cell)."""
    from rich.table import Table

    t = Table(title=title, caption=caption, title_justify="left", show_lines=False)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*("" if cell is None else str(cell) for cell in row))
    return t


def show(*renderables: Any) -> None:
    for item in renderables:
        console().print(item)


def info(message: str) -> None:
    """A status line for people, on stderr so stdout stays clean for --json."""
    err_console().print(message)


def warn(message: str) -> None:
    err_console().print(f"[yellow]warning:[/yellow] {message}")


def error(message: str, hint: str | None = None) -> None:
    from rich.markup import escape

    err_console().print(f"[red]error:[/red] {escape(message)}")
    if hint:
        err_console().print(f"[dim]hint:[/dim] {escape(hint)}")


def progress():
    """A transient progress display on stderr for long work: ``with progress() as p: task = p.add_task(...)``."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err_console(),
        transient=True,
    )


def fmt_bytes(n: int | float | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_count(n: int | float | None) -> str:
    if n is None:
        return ""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(int(n))
