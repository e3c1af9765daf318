"""Shared fixtures: small models written to a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest

from onnxdeploy import examples

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def resize_conv_add_path(tmp_path: Path) -> Path:
    """The seed article's resize_conv_add.onnx (weights as graph inputs, declared output 1x32x512x512)."""
    path = tmp_path / "resize_conv_add.onnx"
    onnx.save(examples.resize_conv_add(), path)
    return path


@pytest.fixture
def conv_bn_silu_path(tmp_path: Path) -> Path:
    """Conv + BatchNorm + SiLU with symbolic batch/height/width and initializers."""
    path = tmp_path / "conv_bn_silu.onnx"
    onnx.save(examples.conv_bn_silu(), path)
    return path
