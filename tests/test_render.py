"""Pictures: the static SVG/HTML drawing and Netron serving."""

from __future__ import annotations

import urllib.request

import pytest

from onnxdeploy.errors import UserInputError
from onnxdeploy._render import render, render_svg, serve_netron, stop_netron


def test_svg_has_a_box_per_node_and_shapes_on_edges(resize_conv_add_path):
    svg = render_svg(resize_conv_add_path)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    for text in (">Resize<", ">Conv<", ">Add<", ">resize<", "1x3x256x256", "32x3x3x3", ">output<"):
        assert text in svg, text
    import xml.dom.minidom

    xml.dom.minidom.parseString(svg)  # well-formed


def test_render_writes_svg_and_html(conv_bn_silu_path, tmp_path):
    assert "BatchNormalization" in render(conv_bn_silu_path, tmp_path / "g.svg").read_text()
    html = render(conv_bn_silu_path, tmp_path / "g.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html


def test_render_refuses_other_suffixes(conv_bn_silu_path, tmp_path):
    with pytest.raises(UserInputError, match="must be .svg or .html"):
        render(conv_bn_silu_path, tmp_path / "g.png")


def test_cli_render(conv_bn_silu_path, tmp_path, capsys):
    from onnxdeploy.cli.main import main

    assert main(["render", str(conv_bn_silu_path), "-o", str(tmp_path / "g.svg")]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "g.svg").exists()


def test_netron_serves_the_model_on_localhost(conv_bn_silu_path):
    url = serve_netron(conv_bn_silu_path, port=0)
    try:
        assert url.startswith("http://localhost:")
        assert urllib.request.urlopen(url, timeout=10).status == 200
    finally:
        stop_netron()
