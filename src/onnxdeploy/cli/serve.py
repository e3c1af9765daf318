"""`onnxdeploy serve`: serve a model on the Open Inference Protocol v2 (KServe's ModelServer, REST + gRPC)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import PANEL_DEPLOY, JsonOpt

EXAMPLES = """[b]Examples[/b]

  onnxdeploy serve model.onnx

  onnxdeploy serve deploy-out/ --max-batch 8

  onnxdeploy serve model.xml --port 9000 --grpc-port 9001

  curl -s localhost:8000/v2/models/model/stats"""

ServeModelArg = Annotated[Path, typer.Argument(
    metavar="MODEL_OR_DEPLOY_DIR", show_default=False,
    help="An .onnx or OpenVINO .xml model, a `deploy` output folder, or a Triton repository.")]


def serve(
    model: ServeModelArg,
    host: Annotated[str, typer.Option("--host", help="Address to bind (another than loopback only when asked).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to serve on (HTTP; 0: a free one).")] = 8000,
    grpc_port: Annotated[int, typer.Option("--grpc-port", help="gRPC port (0: a free one).")] = 8001,
    no_grpc: Annotated[bool, typer.Option("--no-grpc", help="Serve HTTP only.")] = False,
    backend: Annotated[Optional[str], typer.Option(
        "--backend", "-b", help="Run on a target's engine: onnxruntime or openvino (default: the artefact's).")]
    = None,
    max_batch: Annotated[int, typer.Option(
        "--max-batch", help="Batch concurrent requests along the first dim, up to N rows (0: off).")] = 0,
    name: Annotated[Optional[str], typer.Option("--model-name", help="Model name clients use (default: the file's).")]
    = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="onnxruntime intra-op threads (default: "
                                                                      "onnxruntime's).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Serve MODEL on REST and gRPC (health, metadata, infer, binary tensors, /stats) until Ctrl-C."""
    import time

    from onnxdeploy.cli import output as out
    from onnxdeploy.serving import start_server

    server = start_server(model, host=host, port=port, grpc_port=grpc_port, backend=backend, max_batch=max_batch,
                          name=name, threads=threads, grpc=not no_grpc)
    try:
        if as_json:
            out.print_json(server.to_dict())
        else:
            rows = [["model", f"{server.model.name} ({server.model.backend}: {server.model.path})"],
                    ["HTTP", f"http://{server.url}/v2/models/{server.model.name}/infer"],
                    ["gRPC", server.grpc_url or "off"],
                    ["stats", f"http://{server.url}/v2/models/{server.model.name}/stats"],
                    ["batching", f"up to {max_batch}" if max_batch > 1 else "off"],
                    ["pid / log", f"{server.pid} / {server.log}"]]
            out.show(out.table("onnxdeploy serve", ["", ""], rows))
            out.info("serving; Ctrl-C stops the server")
        while server.alive():
            time.sleep(0.5)
        out.warn(f"the server exited: {server.log_tail(1)}")
        raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def register(app: typer.Typer) -> None:
    app.command("serve", epilog=EXAMPLES, rich_help_panel=PANEL_DEPLOY)(serve)
