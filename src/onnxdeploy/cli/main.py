"""Entry point: discovers the subcommand modules and is the one error boundary of the CLI.

Each module in ``onnxdeploy.cli`` that defines ``register(app)`` adds its command(s). Those modules import only the
standard library, typer and :mod:`onnxdeploy.cli.common` at top level, so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from typing import Annotated, Optional

import typer

import onnxdeploy
from onnxdeploy.errors import OnnxDeployError

DEBUG_ENV = "ONNXDEPLOY_DEBUG"


def _defer_rich_markdown() -> None:
    """typer.rich_utils imports rich.markdown (and markdown-it: ~80 ms, a quarter of `--help`) but uses it only in
    "markdown" markup mode, which we do not use. Put a stand-in module in its place that loads the real one on
    first real use (any attribute other than ``Markdown``, or instantiating ``Markdown``)."""
    import types

    if "rich.markdown" in sys.modules:
        return

    def _real():
        sys.modules.pop("rich.markdown", None)
        real = importlib.import_module("rich.markdown")
        import rich

        rich.markdown = real  # type: ignore[attr-defined]
        return real

    class Markdown:
        def __new__(cls, *args, **kwargs):
            return _real().Markdown(*args, **kwargs)

    class _Deferred(types.ModuleType):
        def __getattr__(self, name: str):
            if name.startswith("__"):  # the import system probes __path__ etc.: not a real use
                raise AttributeError(name)
            return getattr(_real(), name)

    stub = _Deferred("rich.markdown")
    stub.Markdown = Markdown  # type: ignore[attr-defined]
    sys.modules["rich.markdown"] = stub


_defer_rich_markdown()

_APP_SETTINGS = dict(
    name="onnxdeploy",
    help="PyTorch -> ONNX -> optimized ONNX -> target engine, verified at every step.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)
app = typer.Typer(**_APP_SETTINGS)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"onnxdeploy {onnxdeploy.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = None,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


# The order of --help: the deployment path, from looking at a model to shipping it.
COMMAND_ORDER = [
    "inspect", "run", "example", "render", "view",
    "edit", "diff",
    "export",
    "probe", "compare", "reduce",
    "optimize", "quantize", "bench",
    "check", "legalize", "convert", "deploy", "demo",
]


def _register_commands() -> None:
    import onnxdeploy.cli as package

    skip = {"main", "common", "output"}
    names = [m.name for m in pkgutil.iter_modules(package.__path__) if m.name not in skip and not m.name.startswith("_")]
    rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
    for name in sorted(names, key=lambda n: (rank.get(n, len(rank)), n)):
        module = importlib.import_module(f"onnxdeploy.cli.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_commands()


def _app_for(argv: list[str] | None) -> typer.Typer:
    """The app to run: for ``onnxdeploy CMD ...``, one with only CMD, so that typer does not build (and evaluate the
    annotations of) every other command's parameters on each start-up (~50-100 ms); the full app otherwise."""
    args = sys.argv[1:] if argv is None else argv
    command = next((a for a in args if not a.startswith("-")), None)
    wanted = [c for c in app.registered_commands if command is not None and c.name == command]
    if not wanted:
        return app
    single = typer.Typer(**_APP_SETTINGS)
    single.registered_callback = app.registered_callback
    single.registered_commands = wanted
    return single


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and a non-zero exit code."""
    from onnxdeploy.cli import output
    from onnxdeploy.cli.common import rewrite_deprecated
    from onnxdeploy._io import operation

    argv, notes = rewrite_deprecated(sys.argv[1:] if argv is None else argv)  # old spellings work, with a note
    for note in notes:
        output.warn(note)
    try:
        with operation():  # the files this command reads are protected from its writers (io.check_output_path)
            _app_for(argv)(args=argv, prog_name="onnxdeploy", standalone_mode=False)
    except OnnxDeployError as err:
        if os.environ.get(DEBUG_ENV):
            raise
        output.error(err.message, err.hint)
        return err.exit_code
    except typer.Exit as exit_:
        return exit_.exit_code
    except KeyboardInterrupt:
        output.error("interrupted")
        return 130
    except Exception as err:  # click usage errors and aborts
        import click

        usage_errors: tuple = (click.ClickException,)
        aborts: tuple = (click.exceptions.Abort,)
        try:  # typer >= 0.2x vendors its own click: its usage errors are not click's classes
            from typer._click.exceptions import ClickException as TyperClickException
            from typer.exceptions import Abort as TyperAbort

            usage_errors, aborts = usage_errors + (TyperClickException,), aborts + (TyperAbort,)
        except ImportError:
            pass
        if isinstance(err, usage_errors):
            err.show()
            return err.exit_code
        if isinstance(err, aborts):
            return 1
        from onnxdeploy.errors import translate

        known = translate(err, subject=_subject(argv))  # OS and library errors; None for a bug of ours
        if known is None or os.environ.get(DEBUG_ENV):
            raise
        output.error(known.message, known.hint)
        return known.exit_code
    return 0


def _subject(argv: list[str] | None) -> str | None:
    """The file a command works on, for error messages: its first argument that names an existing path."""
    args = sys.argv[1:] if argv is None else argv
    positional = [a for a in args if not a.startswith("-")][1:]
    for arg in positional:
        try:
            if os.path.lexists(arg):
                return arg
        except (OSError, ValueError):
            continue
    return positional[0] if positional else None


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
