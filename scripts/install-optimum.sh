#!/usr/bin/env bash
# optimum's ONNX exporter (optimum-onnx) as a peer for benchmarks/llm.py, in its own venv: it needs
# transformers<4.58 while .venv has transformers 5.x. benchmarks/llm.py uses .venv-optimum when it exists and
# reports the peer as not run (with this reason) otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-optimum
.venv-optimum/bin/pip install --upgrade pip
.venv-optimum/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 || \
  .venv-optimum/bin/pip install torch==2.13.0
.venv-optimum/bin/pip install optimum-onnx onnxruntime
.venv-optimum/bin/optimum-cli export onnx --help >/dev/null && echo "optimum-onnx ready in .venv-optimum"
