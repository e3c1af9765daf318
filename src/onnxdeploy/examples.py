"""Built-in example models, so every command can be tried without bringing a model.

- :func:`resize_conv_add`: the seed article's hand-built graph (Resize -> Conv -> Add), weights as graph inputs,
  and its declared output shape 1x32x512x512 (the real one is 1x32x510x510).
- :func:`conv_bn_silu`: the article's Conv2d(3->32, k3, pad1) + BatchNorm2d + SiLU as ONNX with random weights and
  a dynamic batch, height and width (no torch needed); :func:`conv_bn_silu_torch` gives the PyTorch module.
"""

from __future__ import annotations

import numpy as np


def resize_conv_add(*, opset: int = 13):
    """The seed article's ``resize_conv_add_graph`` exactly as it builds it (as an ``onnx.ModelProto``)."""
    import onnx
    from onnx import TensorProto, helper

    inputs = [
        helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 256, 256]),
        helper.make_tensor_value_info("roi", TensorProto.FLOAT, []),
        helper.make_tensor_value_info("scales", TensorProto.FLOAT, [4]),
        helper.make_tensor_value_info("conv_weight", TensorProto.FLOAT, [32, 3, 3, 3]),
        helper.make_tensor_value_info("conv_bias", TensorProto.FLOAT, [32]),
        helper.make_tensor_value_info("add_input", TensorProto.FLOAT, [1]),
    ]
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 32, 512, 512])
    nodes = [
        helper.make_node("Resize", ["input", "roi", "scales"], ["conv_input"], name="resize"),
        helper.make_node("Conv", ["conv_input", "conv_weight", "conv_bias"], ["conv_output"], name="conv"),
        helper.make_node("Add", ["conv_output", "add_input"], ["output"], name="add"),
    ]
    graph = helper.make_graph(nodes, "resize_conv_add_graph", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def resize_conv_add_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs the article feeds: scales [1, 1, 2, 2] (so Resize gives 1x3x512x512)."""
    rng = np.random.default_rng(seed)
    return {
        "input": rng.standard_normal((1, 3, 256, 256), dtype=np.float32),
        "roi": np.array([], dtype=np.float32),
        "scales": np.array([1, 1, 2, 2], dtype=np.float32),
        "conv_weight": rng.standard_normal((32, 3, 3, 3), dtype=np.float32),
        "conv_bias": rng.standard_normal((32,), dtype=np.float32),
        "add_input": rng.standard_normal((1,), dtype=np.float32),
    }


def conv_bn_silu(*, opset: int = 17, seed: int = 0):
    """Conv(3->32, k3, pad1) + BatchNormalization + SiLU (Sigmoid, Mul) with dims batch/height/width symbolic."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = {
        "conv.weight": rng.standard_normal((32, 3, 3, 3), dtype=np.float32) * 0.2,
        "conv.bias": rng.standard_normal((32,), dtype=np.float32) * 0.1,
        "bn.weight": rng.uniform(0.5, 1.5, 32).astype(np.float32),
        "bn.bias": rng.standard_normal((32,), dtype=np.float32) * 0.1,
        "bn.running_mean": rng.standard_normal((32,), dtype=np.float32) * 0.1,
        "bn.running_var": rng.uniform(0.5, 1.5, 32).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["conv_out"], name="/conv/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["conv_out", "bn.weight", "bn.bias", "bn.running_mean",
                                                "bn.running_var"], ["bn_out"], name="/bn/BatchNormalization"),
        helper.make_node("Sigmoid", ["bn_out"], ["sig_out"], name="/act/Sigmoid"),
        helper.make_node("Mul", ["bn_out", "sig_out"], ["values"], name="/act/Mul"),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_bn_silu",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("values", TensorProto.FLOAT, ["batch", 32, "height", "width"])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="onnxdeploy")
    onnx.checker.check_model(model)
    return model


def conv_bn_silu_torch():
    """The article's PyTorch module (needs torch) and its example input 5x3x640x640 -- factory for ``export``."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    module = nn.Sequential()
    module.add_module("conv", nn.Conv2d(3, 32, 3, padding=1))
    module.add_module("bn", nn.BatchNorm2d(32))
    module.add_module("act", nn.SiLU())
    module.eval()
    return module, (torch.randn(5, 3, 640, 640),)


EXAMPLES = {
    "resize_conv_add": resize_conv_add,
    "conv_bn_silu": conv_bn_silu,
}
