"""The server process: KServe's ModelServer (Open Inference Protocol v2 over REST and gRPC) bound to the address
asked for (127.0.0.1 by default; KServe binds 0.0.0.0 in its code), with one model running on :class:`Engine`.

REST inference (``POST /v2/models/NAME/infer``, JSON and the binary tensor extension) is decoded here, before KServe's
own route: every malformed or mismatched request gets a 400 with one line, and binary tensors stay ``np.frombuffer``
views (KServe's decoder turns them into Python lists). Health, metadata, the model repository API and gRPC are
KServe's; gRPC requests reach :meth:`ServedModel.predict` and the same checks. ``GET /v2/models/NAME/stats`` returns
counts and latency percentiles in Triton's statistics shape.

Run as ``python -m onnxdeploy.serving._server CONFIG_JSON`` by :func:`onnxdeploy.serving.start_server`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import sys
import time
from typing import Any

import numpy as np

from onnxdeploy.serving._engine import (INLINE_BELOW_S, V2_DTYPES, BadRequest, Batcher, Engine, Stats,
                                        v2_datatype)

MAX_BODY_BYTES = 1 << 30  # a request body larger than this is refused (413) before it is read
_ids = itertools.count(1)


class ServedModel:
    """The engine, its batcher and statistics; ``infer(feeds)`` is the one inference path of REST and gRPC."""

    def __init__(self, name: str, engine: Engine, max_batch: int = 0):
        self.name, self.engine, self.stats = name, engine, Stats()
        self.batcher = Batcher(engine, max_batch, self.stats) if max_batch and max_batch > 1 else None
        self.call_s: float | None = None  # moving average of one engine call

    def _timed(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        t0 = time.perf_counter()
        outputs = self.engine.infer(feeds)
        return outputs, time.perf_counter() - t0

    async def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.call_s is not None and self.call_s < INLINE_BELOW_S:
            outputs, elapsed = self._timed(feeds)
        else:
            outputs, elapsed = await asyncio.get_running_loop().run_in_executor(None, self._timed, feeds)
        self.call_s = elapsed if self.call_s is None else 0.9 * self.call_s + 0.1 * elapsed
        self.stats.record_execution(_rows(feeds), elapsed)
        return outputs

    async def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        ok = False
        try:
            self.engine.check(feeds)
            if self.batcher is not None:
                outputs = await self.batcher.submit(feeds)
            else:
                outputs = await self._run(feeds)
            ok = True
            return outputs
        finally:
            self.stats.record(time.perf_counter() - start, ok)

    def metadata(self) -> dict:
        return {"name": self.name, "versions": ["1"], "platform": f"onnxdeploy_{self.engine.backend}",
                "inputs": [s.to_dict() for s in self.engine.inputs],
                "outputs": [s.to_dict() for s in self.engine.outputs]}


def _rows(feeds) -> int:
    first = next(iter(feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


# ---------------------------------------------------------------- REST: decode, check, encode


def _tensor(entry: Any, body: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    """One input of a v2 request (JSON ``data`` or binary bytes at ``offset``): (name, array, next offset)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise BadRequest("each input needs a 'name', a 'datatype' and a 'shape'")
    name, datatype, shape = entry["name"], entry.get("datatype"), entry.get("shape")
    if datatype not in V2_DTYPES:
        raise BadRequest(f"input {name!r}: datatype {datatype!r} is not one of {', '.join(V2_DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise BadRequest(f"input {name!r}: shape must be a list of non-negative integers, got {shape!r}")
    dtype = np.dtype(V2_DTYPES[datatype])
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    params = entry.get("parameters") or {}
    if "data" in entry:
        if nbytes > MAX_BODY_BYTES:
            raise BadRequest(f"input {name!r}: shape {shape} declares {nbytes} bytes, over the limit of "
                             f"{MAX_BODY_BYTES}")
        try:
            array = np.asarray(entry["data"], dtype=dtype)
        except (TypeError, ValueError) as err:
            raise BadRequest(f"input {name!r}: data is not {datatype}: {err}") from err
        if array.size != count:
            raise BadRequest(f"input {name!r}: shape {shape} needs {count} values, data has {array.size}")
        return name, array.reshape(shape), offset
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest(f"input {name!r} has neither 'data' nor a 'binary_data_size' parameter")
    if size != nbytes:
        raise BadRequest(f"input {name!r}: binary_data_size is {size} bytes, shape {shape} of {datatype} needs "
                         f"{nbytes}")
    if offset + size > len(body):
        raise BadRequest(f"input {name!r}: the body is truncated: {size} bytes declared at offset {offset}, "
                         f"{len(body) - offset} present")
    array = np.frombuffer(body[offset:offset + size], dtype=dtype).reshape(shape)
    return name, array, offset + size


def decode_request(body: bytes, header_length: str | None) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON header and the input arrays of a v2 REST request; :class:`BadRequest` for anything malformed."""
    if header_length is None:
        json_end = len(body)
    else:
        try:
            json_end = int(header_length)
        except ValueError as err:
            raise BadRequest(f"Inference-Header-Content-Length is not an integer: {header_length!r}") from err
        if not 0 <= json_end <= len(body):
            raise BadRequest(f"Inference-Header-Content-Length is {json_end}, the body has {len(body)} bytes")
    try:
        header = json.loads(bytes(body[:json_end]) or b"null")
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest(f"the request is not valid JSON: {err}") from err
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise BadRequest("the request needs an 'inputs' list")
    view, offset, feeds = memoryview(body), json_end, {}
    for entry in header["inputs"]:
        name, array, offset = _tensor(entry, view, offset)
        if name in feeds:
            raise BadRequest(f"input {name!r} is given twice")
        feeds[name] = array
    if offset != len(body):
        raise BadRequest(f"{len(body) - offset} bytes of the body follow the last input's data")
    return header, feeds


def encode_response(model: ServedModel, header: dict, outputs: dict[str, np.ndarray]) -> tuple[bytes, dict]:
    """The v2 response (JSON, with binary tensors appended where asked) and its headers."""
    requested = header.get("outputs")
    params = header.get("parameters") if isinstance(header.get("parameters"), dict) else {}
    default_binary = bool(params.get("binary_data_output", False))
    if requested:
        if not isinstance(requested, list) or not all(isinstance(r, dict) and "name" in r for r in requested):
            raise BadRequest("'outputs' must be a list of {'name': ...}")
        unknown = [r["name"] for r in requested if r["name"] not in outputs]
        if unknown:
            raise BadRequest(f"unknown output {unknown[0]!r}; the model has {', '.join(outputs)}")
        wanted = [(r["name"], bool((r.get("parameters") or {}).get("binary_data", default_binary)))
                  for r in requested]
    else:
        wanted = [(name, default_binary) for name in outputs]
    entries, blobs = [], []
    for name, binary in wanted:
        array = np.ascontiguousarray(outputs[name])
        entry = {"name": name, "datatype": v2_datatype(array.dtype), "shape": list(array.shape)}
        if binary:
            blob = array.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.ravel().tolist()
        entries.append(entry)
    response_id = header.get("id") or str(next(_ids))
    text = json.dumps({"model_name": model.name, "model_version": "1", "id": str(response_id),
                       "outputs": entries}).encode()
    if not blobs:
        return text, {"content-type": "application/json"}
    return text + b"".join(blobs), {"content-type": "application/octet-stream",
                                    "inference-header-content-length": str(len(text))}


def add_routes(app, models: dict[str, ServedModel]) -> None:
    """Our REST infer and stats routes, registered before KServe's so that they answer first."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    def error(status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    def lookup(name: str) -> ServedModel | None:
        return models.get(name)

    async def infer(request: Request) -> Response:
        name = request.path_params["model_name"]
        model = lookup(name)
        if model is None:
            return error(404, f"unknown model {name!r}; this server has {', '.join(models)}")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return error(413, f"the body declares {declared} bytes, over the limit of {MAX_BODY_BYTES}")
        if request.headers.get("content-encoding", "identity") not in ("identity", ""):
            return error(400, "compressed request bodies are not supported: send them uncompressed")
        body = await request.body()
        try:
            header, feeds = decode_request(body, request.headers.get("inference-header-content-length"))
            outputs = await model.infer(feeds)
            content, headers = encode_response(model, header, outputs)
        except BadRequest as err:
            return error(400, str(err))
        return Response(content, headers=headers)

    async def stats(request: Request) -> Response:
        name = request.path_params["model_name"]
        model = lookup(name)
        if model is None:
            return error(404, f"unknown model {name!r}; this server has {', '.join(models)}")
        return JSONResponse(model.stats.to_dict(name))

    async def metadata(request: Request) -> Response:
        name = request.path_params["model_name"]
        model = lookup(name)
        if model is None:
            return error(404, f"unknown model {name!r}; this server has {', '.join(models)}")
        return JSONResponse(model.metadata())

    app.add_route("/v2/models/{model_name}", metadata, methods=["GET"])
    app.add_route("/v2/models/{model_name}/versions/{version}", metadata, methods=["GET"])
    for path in ("/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{version}/infer"):
        app.add_route(path, infer, methods=["POST"])
    for path in ("/v2/models/{model_name}/stats", "/v2/models/{model_name}/versions/{version}/stats"):
        app.add_route(path, stats, methods=["GET"])


# ---------------------------------------------------------------- KServe glue


def kserve_model(served: ServedModel):
    """A :class:`kserve.Model` over ``served``: metadata for the v2 metadata routes, ``predict`` for gRPC."""
    import kserve
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferOutput, InferResponse

    class ServedKServeModel(kserve.Model):
        def __init__(self):
            super().__init__(served.name)
            self.ready = True

        def load(self) -> bool:
            self.ready = True
            return True

        def get_input_types(self):
            return [s.to_dict() for s in served.engine.inputs]

        def get_output_types(self):
            return [s.to_dict() for s in served.engine.outputs]

        async def predict(self, payload, headers=None):
            try:
                feeds = {}
                for tensor in payload.inputs:
                    if tensor.datatype not in V2_DTYPES:
                        raise BadRequest(f"input {tensor.name!r}: datatype {tensor.datatype!r} is not supported")
                    feeds[tensor.name] = tensor.as_numpy()
                outputs = await served.infer(feeds)
            except (BadRequest, ValueError, TypeError) as err:
                raise InvalidInput(str(err).splitlines()[0] if str(err) else type(err).__name__) from err
            result = []
            for name, array in outputs.items():
                array = np.ascontiguousarray(array)
                out = InferOutput(name=name, shape=list(array.shape), datatype=v2_datatype(array.dtype))
                out.set_data_from_numpy(array, binary_data=True)
                result.append(out)
            return InferResponse(model_name=served.name, infer_outputs=result, response_id=payload.id or
                                 str(next(_ids)))

    return ServedKServeModel()


def serve_forever(config: dict) -> None:
    """Build the engine and run KServe's server on ``config['host']`` until SIGTERM/SIGINT."""
    sys.argv = sys.argv[:1]  # kserve parses sys.argv when imported: keep ours away from it
    import kserve
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.model_server import app
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.rest.server import RESTServer

    engine = Engine(config["model"], backend=config.get("backend", "onnxruntime"), threads=config.get("threads"))
    served = ServedModel(config["name"], engine, config.get("max_batch", 0))
    host = config.get("host", "127.0.0.1")

    class BoundGRPCServer(GRPCServer):
        async def start(self, max_workers):
            from concurrent import futures

            from grpc import aio
            from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
            from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
            from kserve.protocol.grpc.servicer import InferenceServicer

            self._server = aio.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                                      interceptors=(ExceptionToStatusInterceptor(),),
                                      options=[("grpc.max_send_message_length", MAX_BODY_BYTES),
                                               ("grpc.max_receive_message_length", MAX_BODY_BYTES)])
            grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
                InferenceServicer(self._data_plane, self._model_repository_extension), self._server)
            self._server.add_insecure_port(f"{'[' + host + ']' if ':' in host else host}:{self._port}")
            await self._server.start()
            await self._server.wait_for_termination()

    class BoundModelServer(kserve.ModelServer):
        def start(self, models) -> None:
            self._register_and_check_atleast_one_model_is_ready(models)
            self._rest_server = RESTServer(FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension,
                                           self.http_port, grace_period=self.grace_period,
                                           timeout_keep_alive=self.timeout_keep_alive)
            self._rest_server.config.host = host  # KServe hard-codes 0.0.0.0
            self.servers.append(self._rest_server.start())
            if self.enable_grpc:
                self._grpc_server = BoundGRPCServer(self.grpc_port, self.dataplane, self.model_repository_extension,
                                                    kwargs={}, grace_period=self.grace_period)
                self.servers.append(self._grpc_server.start(self.max_threads))
            self.setup_event_loop()
            self.register_signal_handler()
            asyncio.run(self._serve())

    add_routes(app, {served.name: served})
    grpc_port = config.get("grpc_port")
    server = BoundModelServer(http_port=config["http_port"], grpc_port=grpc_port or 0, enable_grpc=bool(grpc_port),
                              grace_period=1, enable_latency_logging=False, workers=1,
                              max_threads=config.get("grpc_threads", 4))
    server.start([kserve_model(served)])


if __name__ == "__main__":
    import logging
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.basicConfig(level=os.environ.get("ONNXDEPLOY_SERVE_LOG", "WARNING"))
    serve_forever(json.loads(sys.argv[1]))
