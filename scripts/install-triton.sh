#!/usr/bin/env bash
# A separate virtual environment with NVIDIA's PyTriton, whose wheel ships a real `tritonserver` binary (Python
# backend only). It needs numpy<2, which the main .venv cannot take, so it lives in .venv-triton beside it.
# Used by tests/test_triton_repo.py (skipped without it) to run the Triton repository that `onnxdeploy convert
# --target triton --triton-backend python` writes. Usage: scripts/install-triton.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-triton}"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet nvidia-pytriton onnxruntime "numpy<2"
BIN="$("$VENV/bin/python" -c 'import pytriton, pathlib; print(pathlib.Path(pytriton.__file__).parent / "tritonserver" / "bin" / "tritonserver")')"
test -x "$BIN" || { echo "tritonserver binary not found at $BIN" >&2; exit 1; }
echo "tritonserver: $BIN"
