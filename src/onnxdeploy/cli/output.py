"""The one place that prints: rich tables for people, JSON for programs."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

_console = None
_err_console = None


PLAIN_WIDTH = 1 << 20  # not a terminal: wide enough that no line and no cell is ever wrapped


def console():
    """stdout's console. When stdout is not a terminal (CI logs, pipes, files) nothing wraps: lines stay greppable."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(highlight=False, soft_wrap=False)
        if not _console.is_terminal:
            _console = Console(highlight=False, soft_wrap=False, width=PLAIN_WIDTH)
    return _console


def plain_output() -> bool:
    """Whether stdout is not a terminal: tables print as plain aligned columns (see :func:`show`)."""
    return not console().is_terminal


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


def plain(value: Any) -> str:
    """``value`` as printable text: bytes (invalid UTF-8 names) and lone surrogates shown as escapes, never raising."""
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "backslashreplace")
    else:
        text = str(value)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _text(value: Any):
    """A cell, title or message as a rich Text that is never parsed as markup (a node named ``[/red]`` prints as is);
    rich renderables (e.g. from :func:`styled`) pass through."""
    from rich.text import Text

    if value is None or isinstance(value, str) or isinstance(value, (bytes, bytearray)) or not hasattr(
            value, "__rich_console__") and not hasattr(value, "__rich__"):
        return Text(plain(value))
    return value


def styled(text: Any, style: str):
    """``text`` printed with a rich style (e.g. ``"red"``), its characters taken literally: use it for table cells
    that need colour instead of writing markup."""
    from rich.text import Text

    return Text(plain(text), style=style)


MAX_TABLE_ROWS = 200  # rich lays out ~300 rows a second: a 100k-node model's table would take minutes


def table(title: Any, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, caption: Any = None,
          max_rows: int | None = MAX_TABLE_ROWS):
    """Build a rich Table. Cells are text taken literally (no markup: names and paths print as they are); None shows
    as an empty cell; use :func:`styled` for a coloured cell. Past ``max_rows`` rows the table ends with a row
    saying how many more there are (``--json`` lists them all)."""
    from rich.table import Table

    t = Table(title=None if title is None else _text(title), caption=None if caption is None else _text(caption),
              title_justify="left", show_lines=False)
    for col in columns:
        t.add_column(_text(col), overflow="fold")
    shown = 0
    more = 0
    for row in rows:
        if max_rows is not None and shown >= max_rows:
            more += 1
            continue
        t.add_row(*(_text("" if cell is None else cell) for cell in row))
        shown += 1
    if more:
        t.add_row(*([styled(f"... {more} more rows (--json lists all)", "dim")] + [""] * (len(columns) - 1)))
    return t


def show(*renderables: Any, markup: bool = False) -> None:
    """Print tables or lines on stdout. Strings print literally; ``markup=True`` for text we wrote with rich markup
    (never for text holding a path or a name from a model)."""
    for item in renderables:
        if isinstance(item, (str, bytes)):
            if markup:
                console().print(plain(item))
            else:
                console().print(_text(item))
        elif plain_output() and _is_table(item):
            _show_plain(item)
        else:
            console().print(item)


def _is_table(item: Any) -> bool:
    from rich.table import Table

    return isinstance(item, Table)


def _show_plain(t) -> None:
    """A table as plain aligned columns, for logs and pipes: no box, no trailing spaces, title and caption on lines of
    their own (rich would wrap them to the table's width), cells never wrapped (the console is :data:`PLAIN_WIDTH`
    wide)."""
    title, caption, box, show_edge, pad_edge = t.title, t.caption, t.box, t.show_edge, t.pad_edge
    t.title = t.caption = t.box = None
    t.show_edge = t.pad_edge = False
    try:
        with console().capture() as captured:
            for item in (title, t, caption):
                if item is not None:
                    console().print(item if item is t else _text(item))
    finally:
        t.title, t.caption, t.box, t.show_edge, t.pad_edge = title, caption, box, show_edge, pad_edge
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    sys.stdout.flush()


def info(message: Any) -> None:
    """A status line for people, on stderr so stdout stays clean for --json. Printed literally (no markup)."""
    err_console().print(_text(message))


def warn(message: Any) -> None:
    from rich.text import Text

    err_console().print(Text.assemble(("warning:", "yellow"), " ", plain(message)))


def error(message: str, hint: str | None = None) -> None:
    from rich.markup import escape

    err_console().print(f"[red]error:[/red] {escape(plain(message))}")
    if hint:
        err_console().print(f"[dim]hint:[/dim] {escape(plain(hint))}")


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


def fmt_num(value: float | None) -> str:
    """A measured number in 4 significant digits ("" for None): errors, stats."""
    return "" if value is None else f"{value:.4g}"



def fmt_ratio(speedup: float | None) -> str:
    """A speed ratio in words, never a bare factor: 2.9 -> "2.90x faster", 0.77 -> "1.30x slower"."""
    from onnxdeploy import ratio_words  # the API's wording, so messages and tables read alike

    return ratio_words(speedup)
