"""`onnxdeploy loadtest`: measure an Open Inference Protocol v2 server (ours, Triton, KServe) with tritonclient."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import PANEL_DEPLOY, JsonOpt

EXAMPLES = """[b]Examples[/b]

  onnxdeploy loadtest 127.0.0.1:8000 --model resnet50 --concurrency 8 --duration 30

  onnxdeploy loadtest 127.0.0.1:8001 --model resnet50 --protocol grpc --requests 1000"""


def loadtest(
    url: Annotated[str, typer.Argument(metavar="SERVER_URL", help="HOST:PORT or http://HOST:PORT of the server.",
                                       show_default=False)],
    model: Annotated[str, typer.Option("--model", help="Name of the served model.", show_default=False)],
    concurrency: Annotated[int, typer.Option("--concurrency", help="Requests in flight at once (1-1024).")] = 1,
    requests: Annotated[Optional[int], typer.Option("--requests", help="Send N requests (default 100).")] = None,
    duration: Annotated[Optional[float], typer.Option(
        "--duration", help="Seconds of timed requests (instead of --requests).")] = None,
    protocol: Annotated[str, typer.Option("--protocol", help="http or grpc.")] = "http",
    batch: Annotated[int, typer.Option("--batch", help="Batch size for symbolic batch dims (rows per request).")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed for synthesized inputs.")] = 0,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow a server that is not on this "
                                                                       "machine.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Send bounded load and print p50/p90/p99 latency, throughput and errors."""
    from onnxdeploy.cli import output as out
    from onnxdeploy.serving import loadtest as loadtest_api

    report = loadtest_api(url, model, concurrency=concurrency, requests=requests, duration=duration,
                          protocol=protocol, batch=batch, seed=seed, allow_remote=allow_remote)
    if as_json:
        out.print_json(report)
    else:
        def ms(v):
            return "-" if v is None else f"{v:.2f}"

        out.show(out.table(f"{report.model} at {report.url} ({report.protocol})",
                           ["concurrency", "requests", "errors", "seconds", "req/s", "p50 ms", "p90 ms", "p99 ms"],
                           [[report.concurrency, report.requests, report.errors, f"{report.seconds:.2f}",
                             f"{report.throughput:.1f}", ms(report.p50_ms), ms(report.p90_ms), ms(report.p99_ms)]]))
        for sample in report.error_samples:
            out.warn(f"error: {sample}")
    if report.errors:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("loadtest", epilog=EXAMPLES, rich_help_panel=PANEL_DEPLOY)(loadtest)
