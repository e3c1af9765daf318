"""Serve what you deployed: an Open Inference Protocol v2 server, Triton model repositories, KServe manifests, and a
load generator to measure them.

- :func:`start_server`: serve a model (``.onnx``, OpenVINO ``.xml``, a ``deploy`` output folder or a Triton
  repository) on KServe's ModelServer in a child process bound to 127.0.0.1: health, metadata, infer (JSON and
  binary tensors) over REST and gRPC, every bad request a 400 with one line, optional dynamic batching, and
  ``/v2/models/NAME/stats``. Returns a :class:`Server` handle (``url``, ``grpc_url``, ``pid``, ``stop()``).
- :func:`write_triton_repository`: a Triton model repository (``NAME/config.pbtxt``, ``NAME/1/model.onnx`` or a
  Python-backend ``model.py``) and a KServe ``inferenceservice.yaml`` beside it; ``config.pbtxt`` is checked against
  Triton's protobuf schema before it is written (:func:`validate_triton_config`).
- :func:`loadtest`: drive any v2 server (ours, Triton, KServe) with tritonclient at a bounded concurrency, count or
  duration: p50/p90/p99, throughput, errors.
"""

from onnxdeploy.serving._launch import (BACKENDS, DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT, ServedArtifact, Server,
                                        free_port, resolve_model, start_server)
from onnxdeploy.serving._loadtest import LoadTestReport, loadtest
from onnxdeploy.targets.triton import (TRITON_BACKENDS, TritonRepository, TritonTarget, kserve_manifest, triton_config,
                                       triton_target, validate_triton_config, write_triton_repository)

__all__ = [
    "BACKENDS", "DEFAULT_GRPC_PORT", "DEFAULT_HTTP_PORT", "LoadTestReport", "ServedArtifact", "Server",
    "TRITON_BACKENDS", "TritonRepository", "TritonTarget", "free_port", "kserve_manifest", "loadtest",
    "resolve_model", "start_server", "triton_config", "triton_target", "validate_triton_config",
    "write_triton_repository"]
